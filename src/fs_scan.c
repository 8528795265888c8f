/*
 * fs_scan.c: fs.scan, the manifest it builds, and fs.diff.
 *
 * The scan walks each root with openat, getdents64 and fstatat relative
 * to the folder's descriptor, so no entry costs a full path lookup.  Entries
 * are 64-byte records (fs_entry) whose paths and link targets live in one
 * string arena; at the end they are sorted by strcmp of the logical path,
 * which is the order of every array the manifest and the diff return.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs_internal.h"

#define SCAN_FD_DEPTH 64           /* folders deeper reopen by full path */
#define SCAN_RESTRICT 0x80000000u  /* stack flag: only walk toward roots */
#define SCAN_OPEN (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
#define SCAN_DENTS (64 * 1024)     /* getdents64 buffer */

typedef struct {
  fs_entry *ents;                  /* sorted by path once built */
  size_t n;
  char *arena;                     /* NUL-terminated paths and targets */
  size_t alen;
  uint32_t *skipped;               /* arena offsets of mount points */
  size_t nskipped;
  int closed;
} manifest;

typedef struct {
  const char *s;
  size_t len;
  int slashes;                     /* '/' count, or -1: try every path */
  int literal;
} pattern;

typedef struct {
  manifest *m;
  size_t ecap, acap, scap;
  const char *prefix;              /* on-disk prefix of logical paths */
  size_t prefixlen;
  pattern *roots;
  size_t nroots, cur;
  pattern *excl;
  size_t nexcl;
  int xdev;
  dev_t dev;                       /* device of the current root */
  char *path;                      /* logical path being looked at */
  size_t pcap;
  char *disk;                      /* prefix + path, for full-path opens */
  size_t dcap;
  char *dents;                     /* SCAN_DENTS bytes for getdents64 */
  uint32_t *stack;                 /* folders still to descend into */
  size_t stop, stcap;
  int err;                         /* errno of the failure */
  char *errpath;                   /* logical path it concerns */
} scan;


/* Make *p hold at least need items of size sz; -1 when out of memory. */
static int grow(void *pp, size_t *cap, size_t need, size_t sz)
{
  void **p = pp;
  size_t c = *cap ? *cap : 64;
  void *np;

  if(need <= *cap)
    return 0;
  while(c < need)
    c *= 2;
  np = realloc(*p, c * sz);
  if(np == NULL)
    return -1;
  *p = np;
  *cap = c;
  return 0;
}

/* Record err about path (len bytes, NULL: the scan); returns -1. */
static int fail(scan *s, int err, const char *path, size_t len)
{
  if(!s->err) {
    s->err = err;
    s->errpath = path ? strndup(path, len) : NULL;
  }
  return -1;
}

/* Add len bytes of str to the arena; the offset, or FS_NOTARGET. */
static uint32_t arena_add(scan *s, const char *str, size_t len)
{
  manifest *m = s->m;
  size_t off = m->alen;

  if(off + len + 1 >= UINT32_MAX) {
    fail(s, EOVERFLOW, NULL, 0);
    return FS_NOTARGET;
  }
  if(grow(&m->arena, &s->acap, off + len + 1, 1) < 0) {
    fail(s, ENOMEM, NULL, 0);
    return FS_NOTARGET;
  }
  memcpy(m->arena + off, str, len);
  m->arena[off + len] = '\0';
  m->alen = off + len + 1;
  return (uint32_t)off;
}

/* Record the entry at path; its index, or -1. */
static long add_entry(scan *s, const char *path, size_t len,
                      const struct stat *st, const char *target, size_t tlen)
{
  manifest *m = s->m;
  fs_entry *e;

  if(m->n >= SCAN_RESTRICT)
    return fail(s, EOVERFLOW, NULL, 0);
  if(grow(&m->ents, &s->ecap, m->n + 1, sizeof(*e)) < 0)
    return fail(s, ENOMEM, NULL, 0);
  e = &m->ents[m->n];
  fs_entry_fill(e, st);
  e->target = FS_NOTARGET;
  if((e->path = arena_add(s, path, len)) == FS_NOTARGET)
    return -1;
  if(target && (e->target = arena_add(s, target, tlen)) == FS_NOTARGET)
    return -1;
  return (long)m->n++;
}

static int is_other_root(scan *s, const char *path, size_t len)
{
  size_t i;

  for(i = 0; i < s->nroots; i++)
    if(i != s->cur && s->roots[i].len == len &&
       !memcmp(s->roots[i].s, path, len))
      return 1;
  return 0;
}

static int is_root_ancestor(scan *s, const char *path, size_t len)
{
  size_t i;

  for(i = 0; i < s->nroots; i++)
    if(s->roots[i].len > len && s->roots[i].s[len] == '/' &&
       !memcmp(s->roots[i].s, path, len))
      return 1;
  return 0;
}

/* Whether path (with `slashes` slashes) matches an exclude. */
static int excluded(scan *s, const char *path, size_t len, int slashes)
{
  size_t i;

  for(i = 0; i < s->nexcl; i++) {
    pattern *x = &s->excl[i];

    if(x->literal) {
      if(x->len == len && !memcmp(x->s, path, len))
        return 1;
    }
    else if((x->slashes < 0 || x->slashes == slashes) &&
            fnmatch(x->s, path, FNM_PATHNAME) == 0)
      return 1;
  }
  return 0;
}

/* The on-disk path of logical path, in s->disk; NULL when out of memory. */
static const char *disk_path(scan *s, const char *path, size_t len)
{
  if(grow(&s->disk, &s->dcap, s->prefixlen + len + 1, 1) < 0)
    return NULL;
  memcpy(s->disk, s->prefix, s->prefixlen);
  memcpy(s->disk + s->prefixlen, path, len + 1);
  return s->disk;
}

static int vanished(int err)
{
  return err == ENOENT || err == ENOTDIR || err == ELOOP;
}

/*
 * Record one entry `name` of the folder read through dfd, whose logical
 * path s->path has plen bytes.  Folders to descend into go on the stack.
 * Returns 0, or -1 on a failure recorded in s.
 */
static int visit(scan *s, int dfd, size_t plen, const char *name,
                 int slashes, int restricted)
{
  size_t nlen = strlen(name), off = plen == 1 ? 1 : plen + 1, len;
  char target[PATH_MAX + 1];
  ssize_t tlen = 0;
  struct stat st;
  long idx;

  if(grow(&s->path, &s->pcap, off + nlen + 1, 1) < 0)
    return fail(s, ENOMEM, NULL, 0);
  s->path[off - 1] = '/';
  memcpy(s->path + off, name, nlen + 1);
  len = off + nlen;
  if(s->nroots > 1 && is_other_root(s, s->path, len))
    return 0;                      /* that root's own walk records it */
  if(restricted) {
    if(!is_root_ancestor(s, s->path, len))
      return 0;
  }
  else if(s->nexcl && excluded(s, s->path, len, slashes)) {
    if(!is_root_ancestor(s, s->path, len))
      return 0;
    restricted = 1;
  }
  if(fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return errno == ENOENT ? 0 : fail(s, errno, s->path, len);
  if(S_ISLNK(st.st_mode)) {
    tlen = readlinkat(dfd, name, target, sizeof(target) - 1);
    if(tlen < 0)
      return errno == ENOENT ? 0 : fail(s, errno, s->path, len);
    target[tlen] = '\0';
  }
  idx = add_entry(s, s->path, len, &st, S_ISLNK(st.st_mode) ? target : NULL,
                  (size_t)tlen);
  if(idx < 0)
    return -1;
  if(!S_ISDIR(st.st_mode))
    return 0;
  if(s->xdev && st.st_dev != s->dev) {
    if(grow(&s->m->skipped, &s->scap, s->m->nskipped + 1,
            sizeof(uint32_t)) < 0)
      return fail(s, ENOMEM, NULL, 0);
    s->m->skipped[s->m->nskipped++] = s->m->ents[idx].path;
    return 0;
  }
  if(grow(&s->stack, &s->stcap, s->stop + 1, sizeof(uint32_t)) < 0)
    return fail(s, ENOMEM, NULL, 0);
  s->stack[s->stop++] = (uint32_t)idx | (restricted ? SCAN_RESTRICT : 0);
  return 0;
}

/*
 * Walk the folder open as dfd (taken over and closed) whose logical path
 * is s->path (plen bytes, `slashes` slashes).  The folder is read whole
 * with getdents64 into the shared buffer before any child is opened, so
 * one buffer serves every level.  Returns 0 or -1.
 */
static int walk(scan *s, int dfd, size_t plen, int slashes, int depth,
                int restricted)
{
  size_t base = s->stop, end, i;
  int cslashes = plen == 1 ? 1 : slashes + 1, rc = 0;
  ssize_t got, pos;

  if(clayer_interrupted) {
    close(dfd);
    return fail(s, EINTR, s->path, plen);
  }
  while(rc == 0 && (got = getdents64(dfd, s->dents, SCAN_DENTS)) != 0) {
    if(got < 0) {
      if(!vanished(errno))         /* a folder removed while we read it */
        rc = fail(s, errno, s->path, plen);
      break;
    }
    for(pos = 0; rc == 0 && pos < got; ) {
      struct dirent64 *de = (struct dirent64 *)(s->dents + pos);
      const char *n = de->d_name;

      pos += de->d_reclen;
      if(n[0] == '.' && (!n[1] || (n[1] == '.' && !n[2])))
        continue;
      rc = visit(s, dfd, plen, n, cslashes, restricted);
    }
  }
  if(rc == 0 && depth >= SCAN_FD_DEPTH) {
    close(dfd);                    /* bound the descriptors held */
    dfd = -1;
  }
  end = s->stop;
  for(i = base; rc == 0 && i < end; i++) {
    uint32_t v = s->stack[i];
    const char *cp = s->m->arena + s->m->ents[v & ~SCAN_RESTRICT].path;
    size_t clen = strlen(cp);
    const char *disk;
    int cfd;

    memcpy(s->path, cp, clen + 1);  /* s->path already held it */
    if(dfd >= 0)
      cfd = openat(dfd, s->path + (plen == 1 ? 1 : plen + 1), SCAN_OPEN);
    else if((disk = disk_path(s, s->path, clen)) == NULL)
      return fail(s, ENOMEM, NULL, 0);
    else
      cfd = open(disk, SCAN_OPEN);
    if(cfd < 0) {
      if(!vanished(errno))
        rc = fail(s, errno, s->path, clen);
      continue;
    }
    rc = walk(s, cfd, clen, cslashes, depth + 1, !!(v & SCAN_RESTRICT));
  }
  s->stop = base;
  if(dfd >= 0)
    close(dfd);
  return rc;
}

/* Record root r and walk it. */
static int scan_root(scan *s, const pattern *r)
{
  char target[PATH_MAX + 1];
  ssize_t tlen = 0;
  const char *disk = disk_path(s, r->s, r->len);
  struct stat st;
  int fd;

  if(disk == NULL)
    return fail(s, ENOMEM, NULL, 0);
  if(lstat(disk, &st) < 0)
    return vanished(errno) ? 0 : fail(s, errno, r->s, r->len);
  if(S_ISLNK(st.st_mode)) {
    tlen = readlink(disk, target, sizeof(target) - 1);
    if(tlen < 0)
      return vanished(errno) ? 0 : fail(s, errno, r->s, r->len);
    target[tlen] = '\0';
  }
  if(add_entry(s, r->s, r->len, &st, S_ISLNK(st.st_mode) ? target : NULL,
               (size_t)tlen) < 0)
    return -1;
  if(!S_ISDIR(st.st_mode))
    return 0;
  fd = open(disk, SCAN_OPEN);
  if(fd < 0)
    return vanished(errno) ? 0 : fail(s, errno, r->s, r->len);
  if(grow(&s->path, &s->pcap, r->len + 1, 1) < 0) {
    close(fd);
    return fail(s, ENOMEM, NULL, 0);
  }
  memcpy(s->path, r->s, r->len + 1);
  s->dev = st.st_dev;
  return walk(s, fd, r->len, r->slashes, 0, 0);
}

static int cmp_ents(const void *a, const void *b, void *arena)
{
  return strcmp((char *)arena + ((const fs_entry *)a)->path,
                (char *)arena + ((const fs_entry *)b)->path);
}

static int cmp_offs(const void *a, const void *b, void *arena)
{
  return strcmp((char *)arena + *(const uint32_t *)a,
                (char *)arena + *(const uint32_t *)b);
}

/* Sort the entries and mount points and drop duplicate paths. */
static void finish(manifest *m)
{
  size_t i, n = 0;
  void *p;

  if(m->n)
    qsort_r(m->ents, m->n, sizeof(*m->ents), cmp_ents, m->arena);
  for(i = 0; i < m->n; i++)
    if(n == 0 || strcmp(m->arena + m->ents[i].path,
                        m->arena + m->ents[n - 1].path))
      m->ents[n++] = m->ents[i];
  m->n = n;
  if(m->nskipped)
    qsort_r(m->skipped, m->nskipped, sizeof(uint32_t), cmp_offs, m->arena);
  for(i = n = 0; i < m->nskipped; i++)
    if(n == 0 || strcmp(m->arena + m->skipped[i],
                        m->arena + m->skipped[n - 1]))
      m->skipped[n++] = m->skipped[i];
  m->nskipped = n;
  if(m->n && (p = realloc(m->ents, m->n * sizeof(*m->ents))) != NULL)
    m->ents = p;
  if(m->alen && (p = realloc(m->arena, m->alen)) != NULL)
    m->arena = p;
}

/*
 * Copy a path from the Lua string at the top of the stack into a pattern:
 * repeated slashes squeezed, trailing ones dropped.  The copy lives in a
 * userdata left on the stack.
 */
static void to_pattern(lua_State *L, pattern *pt, int is_root)
{
  size_t len, i, n = 0;
  const char *src = lua_tolstring(L, -1, &len);
  char *dst = lua_newuserdatauv(L, len + 1, 0);

  for(i = 0; i < len; i++)
    if(src[i] != '/' || n == 0 || dst[n - 1] != '/')
      dst[n++] = src[i];
  while(n > 1 && dst[n - 1] == '/')
    n--;
  dst[n] = '\0';
  pt->s = dst;
  pt->len = n;
  pt->literal = strpbrk(dst, "*?[\\") == NULL;
  pt->slashes = 0;
  for(i = 0; i < n; i++)
    pt->slashes += dst[i] == '/';
  if(strpbrk(dst, "[\\"))
    pt->slashes = -1;
  if(is_root && dst[0] != '/')
    luaL_error(L, "scan: root '%s' is not an absolute path", src);
  lua_replace(L, -2);
}

/* Read an array of path strings at idx into userdata-backed patterns. */
static pattern *read_paths(lua_State *L, int idx, const char *what,
                           size_t *np, int is_root)
{
  lua_Integer n = luaL_len(L, idx), i;
  pattern *pts = lua_newuserdatauv(L, (n ? n : 1) * sizeof(*pts),
                                   (int)n + 1);
  size_t k = 0, j;

  for(i = 1; i <= n; i++) {
    if(lua_geti(L, idx, i) != LUA_TSTRING)
      luaL_error(L, "scan: %s[%d] must be a string", what, (int)i);
    to_pattern(L, &pts[k], is_root);
    lua_setiuservalue(L, -2, (int)i);
    for(j = 0; j < k; j++)         /* drop repeats */
      if(pts[j].len == pts[k].len && !memcmp(pts[j].s, pts[k].s, pts[k].len))
        break;
    if(j == k)
      k++;
  }
  *np = k;
  return pts;
}

static void check_opts(lua_State *L, int idx)
{
  if(lua_isnoneornil(L, idx))
    return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while(lua_next(L, idx)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ?
                    lua_tostring(L, -2) : "?";

    if(strcmp(k, "root") && strcmp(k, "exclude") && strcmp(k, "xdev"))
      luaL_error(L, "scan: unknown option '%s'", k);
    lua_pop(L, 1);
  }
}

static manifest *checkmanifest(lua_State *L, int idx)
{
  manifest *m = luaL_checkudata(L, idx, FS_MANIFEST);

  if(m->closed)
    luaL_error(L, "attempt to use a closed manifest");
  return m;
}

static void manifest_free(manifest *m)
{
  free(m->ents);
  free(m->arena);
  free(m->skipped);
  m->ents = NULL;
  m->arena = NULL;
  m->skipped = NULL;
  m->n = m->alen = m->nskipped = 0;
  m->closed = 1;
}


/*
 * fs.scan(roots, opts): a clayer.fs.manifest of every entry below the
 * logical paths in roots, or nil, "path: why", errno.  The manifest owns
 * its memory until :close() or collection.
 */
int fs_scan(lua_State *L)
{
  scan s;
  manifest *m;
  size_t i, plen;
  int rc = 0;

  memset(&s, 0, sizeof(s));
  lua_settop(L, 2);
  luaL_checktype(L, 1, LUA_TTABLE);
  check_opts(L, 2);
  s.prefix = clayer_optstring(L, 2, "root", "");
  plen = strlen(s.prefix);
  while(plen > 0 && s.prefix[plen - 1] == '/')
    plen--;
  s.prefixlen = plen;
  s.xdev = clayer_optboolean(L, 2, "xdev", 1);
  s.roots = read_paths(L, 1, "roots", &s.nroots, 1);
  if(!lua_isnoneornil(L, 2) && lua_getfield(L, 2, "exclude") != LUA_TNIL) {
    luaL_checktype(L, -1, LUA_TTABLE);
    s.excl = read_paths(L, lua_gettop(L), "exclude", &s.nexcl, 0);
  }
  s.dents = lua_newuserdatauv(L, SCAN_DENTS, 0);
  m = lua_newuserdatauv(L, sizeof(*m), 0);
  memset(m, 0, sizeof(*m));
  luaL_setmetatable(L, FS_MANIFEST);
  s.m = m;
  for(i = 0; rc == 0 && i < s.nroots; i++) {
    s.cur = i;
    rc = scan_root(&s, &s.roots[i]);
  }
  free(s.path);
  free(s.disk);
  free(s.stack);
  if(rc < 0) {
    const char *disk;

    manifest_free(m);
    if(s.err == EINTR) {
      free(s.errpath);
      return clayer_fail(L, "interrupted", "scan: interrupted");
    }
    disk = s.errpath ? lua_pushfstring(L, "%s%s", s.prefix, s.errpath)
                     : "scan";
    free(s.errpath);
    return clayer_errno(L, disk, s.err);
  }
  finish(m);
  return 1;
}

static const char *epath(const manifest *m, size_t i)
{
  return m->arena + m->ents[i].path;
}

static const char *etarget(const manifest *m, const fs_entry *e)
{
  return e->target == FS_NOTARGET ? NULL : m->arena + e->target;
}

/* Append p to the array at the top of the stack, counted by *n. */
static void append_path(lua_State *L, lua_Integer *n, const char *p)
{
  lua_pushstring(L, p);
  lua_rawseti(L, -2, ++*n);
}

/* m:count(): the number of entries. */
static int manifest_count(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)checkmanifest(L, 1)->n);
  return 1;
}

/* m:get(path): the entry table of path, or nil. */
static int manifest_get(lua_State *L)
{
  manifest *m = checkmanifest(L, 1);
  const char *p = luaL_checkstring(L, 2);
  size_t lo = 0, hi = m->n;

  while(lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(p, epath(m, mid));

    if(c == 0) {
      fs_push_entry(L, &m->ents[mid], etarget(m, &m->ents[mid]));
      return 1;
    }
    if(c < 0)
      hi = mid;
    else
      lo = mid + 1;
  }
  lua_pushnil(L);
  return 1;
}

/* m:paths(): sorted array of every path. */
static int manifest_paths(lua_State *L)
{
  manifest *m = checkmanifest(L, 1);
  size_t i;

  lua_createtable(L, m->n > INT_MAX ? INT_MAX : (int)m->n, 0);
  for(i = 0; i < m->n; i++) {
    lua_pushstring(L, epath(m, i));
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* m:skipped(): sorted array of mount points recorded, not descended. */
static int manifest_skipped(lua_State *L)
{
  manifest *m = checkmanifest(L, 1);
  size_t i;

  lua_createtable(L, (int)m->nskipped, 0);
  for(i = 0; i < m->nskipped; i++) {
    lua_pushstring(L, m->arena + m->skipped[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

static int same_inode(const manifest *m, uint32_t i, uint32_t j)
{
  return m->ents[i].dev == m->ents[j].dev && m->ents[i].ino == m->ents[j].ino;
}

static int cmp_inode(const void *a, const void *b, void *mp)
{
  const manifest *m = mp;
  uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
  const fs_entry *x = &m->ents[i], *y = &m->ents[j];

  if(x->dev != y->dev)
    return x->dev < y->dev ? -1 : 1;
  if(x->ino != y->ino)
    return x->ino < y->ino ? -1 : 1;
  return i < j ? -1 : i > j;
}

/* Order group starts (positions in idx) by the group's first entry. */
static int cmp_group(const void *a, const void *b, void *idx)
{
  uint32_t i = ((uint32_t *)idx)[*(const uint32_t *)a];
  uint32_t j = ((uint32_t *)idx)[*(const uint32_t *)b];

  return i < j ? -1 : i > j;
}

/*
 * m:hardlinks(): array of groups (sorted arrays of paths) of regular
 * files sharing (dev, ino) with nlink > 1, ordered by their first path.
 * Entries are sorted by path, so sorting indices sorts paths.
 */
static int manifest_hardlinks(lua_State *L)
{
  manifest *m = checkmanifest(L, 1);
  size_t i, j, n = 0, ng = 0;
  uint32_t *idx, *start;

  idx = lua_newuserdatauv(L, (m->n + 1) * 2 * sizeof(*idx), 0);
  for(i = 0; i < m->n; i++)
    if(S_ISREG(m->ents[i].mode) && m->ents[i].nlink > 1)
      idx[n++] = (uint32_t)i;
  qsort_r(idx, n, sizeof(*idx), cmp_inode, m);
  start = idx + m->n + 1;
  for(i = 0; i < n; i = j) {
    for(j = i + 1; j < n && same_inode(m, idx[i], idx[j]); j++)
      ;
    if(j - i > 1)
      start[ng++] = (uint32_t)i;
  }
  qsort_r(start, ng, sizeof(*start), cmp_group, idx);
  lua_createtable(L, (int)ng, 0);
  for(i = 0; i < ng; i++) {
    uint32_t s0 = start[i];
    lua_Integer k = 0;

    lua_newtable(L);
    for(j = s0; j < n && same_inode(m, idx[s0], idx[j]); j++)
      append_path(L, &k, epath(m, idx[j]));
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* m:close(), __gc, __close: free the manifest's memory; safe to repeat. */
static int manifest_close(lua_State *L)
{
  manifest *m = luaL_checkudata(L, 1, FS_MANIFEST);

  if(!m->closed)
    manifest_free(m);
  return 0;
}

/* Whether entries x (of a) and y (of b) of the same type differ. */
static int changed(const manifest *a, const fs_entry *x, const manifest *b,
                   const fs_entry *y)
{
  const char *tx = etarget(a, x), *ty = etarget(b, y);

  if((x->mode & 07777) != (y->mode & 07777) || x->uid != y->uid ||
     x->gid != y->gid || x->size != y->size || x->mtime != y->mtime ||
     x->ctime != y->ctime || x->ino != y->ino)
    return 1;
  if(!tx != !ty)
    return 1;
  return tx && strcmp(tx, ty) != 0;
}

static void append(lua_State *L, int t, lua_Integer *n, const char *p)
{
  lua_pushstring(L, p);
  lua_rawseti(L, t, ++*n);
}

/*
 * fs.diff(before, after): {added, modified, deleted, typechanged}, each a
 * sorted array of paths, from one merge of the two sorted manifests.
 */
int fs_diff(lua_State *L)
{
  manifest *a = checkmanifest(L, 1), *b = checkmanifest(L, 2);
  lua_Integer nadd = 0, nmod = 0, ndel = 0, ntype = 0;
  size_t i = 0, j = 0;
  int top = lua_gettop(L);

  lua_newtable(L);                 /* top + 1: added */
  lua_newtable(L);                 /* top + 2: modified */
  lua_newtable(L);                 /* top + 3: deleted */
  lua_newtable(L);                 /* top + 4: typechanged */
  while(i < a->n || j < b->n) {
    int c = i == a->n ? 1 : j == b->n ? -1 : strcmp(epath(a, i), epath(b, j));

    if(c < 0)
      append(L, top + 3, &ndel, epath(a, i++));
    else if(c > 0)
      append(L, top + 1, &nadd, epath(b, j++));
    else {
      const fs_entry *x = &a->ents[i], *y = &b->ents[j];

      if((x->mode & S_IFMT) != (y->mode & S_IFMT))
        append(L, top + 4, &ntype, epath(b, j));
      else if(changed(a, x, b, y))
        append(L, top + 2, &nmod, epath(b, j));
      i++;
      j++;
    }
  }
  lua_createtable(L, 0, 4);
  lua_pushvalue(L, top + 1);
  lua_setfield(L, -2, "added");
  lua_pushvalue(L, top + 2);
  lua_setfield(L, -2, "modified");
  lua_pushvalue(L, top + 3);
  lua_setfield(L, -2, "deleted");
  lua_pushvalue(L, top + 4);
  lua_setfield(L, -2, "typechanged");
  return 1;
}

static const luaL_Reg manifest_methods[] = {
  {"count", manifest_count},
  {"get", manifest_get},
  {"paths", manifest_paths},
  {"skipped", manifest_skipped},
  {"hardlinks", manifest_hardlinks},
  {"close", manifest_close},
  {NULL, NULL}
};

static const luaL_Reg manifest_meta[] = {
  {"__gc", manifest_close},
  {"__close", manifest_close},
  {NULL, NULL}
};

void fs_manifest_register(lua_State *L)
{
  luaL_newmetatable(L, FS_MANIFEST);
  luaL_setfuncs(L, manifest_meta, 0);
  luaL_newlib(L, manifest_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
