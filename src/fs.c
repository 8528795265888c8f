/*
 * fs.c: the clayer.fs module, small file system calls.
 *
 * stat, read, atomic writes, folders, links, a recursive remove that never
 * follows symlinks, copies and flock(2) locks.  The tree scan, manifests
 * and their diff live in fs_scan.c.  Failures return nil, "path: why",
 * errno.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fs_internal.h"

#define FS_LOCK "clayer.fs.lock"
#define FS_CHUNK (128 * 1024)           /* bytes per read() in copy */

typedef struct {
  int fd;                               /* -1 once closed */
} fs_lock;

/* A growing string for paths built while walking a tree. */
typedef struct {
  char *s;
  size_t len;
  size_t cap;
} strbuf;


static int sb_put(strbuf *b, size_t at, const char *s, size_t n)
{
  if(at + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    char *p;

    while(cap < at + n + 1)
      cap *= 2;
    p = realloc(b->s, cap);
    if(p == NULL)
      return -1;
    b->s = p;
    b->cap = cap;
  }
  memcpy(b->s + at, s, n);
  b->len = at + n;
  b->s[b->len] = '\0';
  return 0;
}

static lua_Integer checkmode(lua_State *L, int idx, lua_Integer def)
{
  lua_Integer mode = luaL_optinteger(L, idx, def);

  luaL_argcheck(L, mode >= 0 && mode <= 07777, idx, "mode out of range");
  return mode;
}

static const char *type_name(mode_t mode)
{
  switch(mode & S_IFMT) {
  case S_IFREG:
    return "file";
  case S_IFDIR:
    return "dir";
  case S_IFLNK:
    return "link";
  case S_IFIFO:
    return "fifo";
  case S_IFSOCK:
    return "sock";
  case S_IFCHR:
    return "chr";
  case S_IFBLK:
    return "blk";
  }
  return "unknown";
}

/* Nanoseconds since the epoch, saturated: a file can carry any time. */
static int64_t ts_ns(const struct timespec *t)
{
  if(t->tv_sec >= INT64_MAX / 1000000000)
    return INT64_MAX;
  if(t->tv_sec < INT64_MIN / 1000000000)
    return INT64_MIN;
  return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

void fs_entry_fill(fs_entry *e, const struct stat *st)
{
  e->ino = st->st_ino;
  e->dev = st->st_dev;
  e->size = st->st_size;
  e->mtime = ts_ns(&st->st_mtim);
  e->ctime = ts_ns(&st->st_ctim);
  e->mode = st->st_mode;
  e->uid = st->st_uid;
  e->gid = st->st_gid;
  e->nlink = st->st_nlink > UINT32_MAX ? UINT32_MAX : st->st_nlink;
}

void fs_push_entry(lua_State *L, const fs_entry *e, const char *target)
{
  lua_createtable(L, 0, 11);
  lua_pushstring(L, type_name(e->mode));
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, e->mode & 07777);
  lua_setfield(L, -2, "mode");
  lua_pushinteger(L, e->uid);
  lua_setfield(L, -2, "uid");
  lua_pushinteger(L, e->gid);
  lua_setfield(L, -2, "gid");
  lua_pushinteger(L, e->size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, e->mtime);
  lua_setfield(L, -2, "mtime");
  lua_pushinteger(L, e->ctime);
  lua_setfield(L, -2, "ctime");
  lua_pushinteger(L, (lua_Integer)e->ino);
  lua_setfield(L, -2, "ino");
  lua_pushinteger(L, (lua_Integer)e->dev);
  lua_setfield(L, -2, "dev");
  lua_pushinteger(L, e->nlink);
  lua_setfield(L, -2, "nlink");
  if(target) {
    lua_pushstring(L, target);
    lua_setfield(L, -2, "target");
  }
}

/* Read link p into a malloc'd string, or NULL with errno set. */
static char *read_link(int dfd, const char *p)
{
  char buf[PATH_MAX + 1];
  ssize_t n = readlinkat(dfd, p, buf, sizeof(buf) - 1);
  char *s;

  if(n < 0)
    return NULL;
  buf[n] = '\0';
  s = strdup(buf);
  if(s == NULL)
    errno = ENOMEM;
  return s;
}


/* fs.stat(p), fs.lstat(p): entry table (lstat adds target for links). */
static int do_stat(lua_State *L, int follow)
{
  const char *p = luaL_checkstring(L, 1);
  struct stat st;
  fs_entry e;
  char *target = NULL;

  if((follow ? stat(p, &st) : lstat(p, &st)) < 0)
    return clayer_errno(L, p, errno);
  if(S_ISLNK(st.st_mode) && (target = read_link(AT_FDCWD, p)) == NULL)
    return clayer_errno(L, p, errno);
  fs_entry_fill(&e, &st);
  fs_push_entry(L, &e, target);
  free(target);
  return 1;
}

static int fs_stat(lua_State *L)
{
  return do_stat(L, 1);
}

static int fs_lstat(lua_State *L)
{
  return do_stat(L, 0);
}


/* fs.exists(p): whether lstat(p) succeeds. */
static int fs_exists(lua_State *L)
{
  struct stat st;

  lua_pushboolean(L, lstat(luaL_checkstring(L, 1), &st) == 0);
  return 1;
}


/* fs.read(p): the file's content as a string, or nil, err, errno. */
static int fs_read(lua_State *L)
{
  const char *p = luaL_checkstring(L, 1);
  struct stat st;
  size_t len = 0, cap;
  char *buf = NULL, *nb;
  ssize_t n;
  int fd, err = 0;

  fd = open(p, O_RDONLY | O_CLOEXEC);
  if(fd < 0)
    return clayer_errno(L, p, errno);
  if(fstat(fd, &st) < 0)
    err = errno;
  cap = (!err && st.st_size > 0) ? (size_t)st.st_size + 1 : 4096;
  while(!err) {
    if(len == cap || buf == NULL) {
      cap = buf ? cap * 2 : cap;
      nb = realloc(buf, cap);
      if(nb == NULL) {
        err = ENOMEM;
        break;
      }
      buf = nb;
    }
    n = read(fd, buf + len, cap - len);
    if(n < 0 && errno == EINTR && !clayer_interrupted)
      continue;                         /* else: give up, "interrupted" */
    if(n < 0)
      err = errno;
    else if(n == 0)
      break;
    else
      len += n;
  }
  close(fd);
  if(err) {
    free(buf);
    return clayer_errno(L, p, err);
  }
  lua_pushlstring(L, buf ? buf : "", len);
  free(buf);
  return 1;
}

static int write_all(int fd, const char *data, size_t len)
{
  while(len > 0) {
    ssize_t n = write(fd, data, len);

    if(n < 0 && errno == EINTR && !clayer_interrupted)
      continue;
    if(n < 0)
      return -1;
    data += n;
    len -= n;
  }
  return 0;
}

/* Write to fd, fsync, set mode and close it; errno on failure. */
static int finish_file(int fd, const char *data, size_t len, mode_t mode)
{
  int err = 0;

  if(write_all(fd, data, len) < 0 || fsync(fd) < 0 || fchmod(fd, mode) < 0)
    err = errno;
  if(close(fd) < 0 && !err)
    err = errno;
  return err;
}

/* fsync the folder holding path (a string we may modify). */
static int sync_parent(char *path)
{
  char *slash = strrchr(path, '/');
  const char *dir = ".";
  int fd, err = 0;

  if(slash == path)
    dir = "/";
  else if(slash) {
    *slash = '\0';
    dir = path;
  }
  fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if(fd < 0)
    return errno;
  if(fsync(fd) < 0 && errno != EINVAL)
    err = errno;
  close(fd);
  return err;
}

/*
 * fs.write_atomic(p, data [, mode]): true once data is in a temp file
 * next to p, synced and renamed over p, and the folder synced; or nil,
 * err, errno with no temp file left behind.  mode defaults to 0644.
 */
static int fs_write_atomic(lua_State *L)
{
  size_t len, plen;
  const char *p = luaL_checklstring(L, 1, &plen);
  const char *data = luaL_checklstring(L, 2, &len);
  mode_t mode = checkmode(L, 3, 0644);
  const char *slash = strrchr(p, '/');
  size_t dlen = slash ? (size_t)(slash - p) + 1 : 0;
  char *tmp;
  int fd, err;

  tmp = malloc(plen + 16);
  if(tmp == NULL)
    return clayer_errno(L, p, ENOMEM);
  /* dir/.name.XXXXXX: hidden, in the same folder so rename is atomic */
  memcpy(tmp, p, dlen);
  tmp[dlen] = '.';
  memcpy(tmp + dlen + 1, p + dlen, plen - dlen);
  memcpy(tmp + plen + 1, ".XXXXXX", 8);
  fd = mkostemp(tmp, O_CLOEXEC);
  if(fd < 0) {
    err = errno;
    free(tmp);
    return clayer_errno(L, p, err);
  }
  err = finish_file(fd, data, len, mode);
  if(!err && rename(tmp, p) < 0)
    err = errno;
  if(err) {
    unlink(tmp);
    free(tmp);
    return clayer_errno(L, p, err);
  }
  err = sync_parent(tmp);
  free(tmp);
  if(err)
    return clayer_errno(L, p, err);
  lua_pushboolean(L, 1);
  return 1;
}


/* fs.mkdirp(p [, mode]): true once p and its parents are folders. */
static int fs_mkdirp(lua_State *L)
{
  size_t len, i;
  const char *p = luaL_checklstring(L, 1, &len);
  mode_t mode = checkmode(L, 2, 0755);
  struct stat st;
  char *buf = strdup(p);
  int err = 0;

  if(buf == NULL)
    return clayer_errno(L, p, ENOMEM);
  for(i = 1; i <= len && !err; i++) {
    if(buf[i] != '/' && buf[i] != '\0')
      continue;
    if(buf[i - 1] == '/')
      continue;
    buf[i] = '\0';
    if(mkdir(buf, mode) < 0 && errno != EEXIST)
      err = errno;
    buf[i] = p[i];
  }
  free(buf);
  if(!err && stat(p, &st) < 0)
    err = errno;
  if(!err && !S_ISDIR(st.st_mode))
    err = ENOTDIR;
  if(err)
    return clayer_errno(L, p, err);
  lua_pushboolean(L, 1);
  return 1;
}


/* fs.rename(a, b): true, or nil, "a -> b: why", errno. */
static int fs_rename(lua_State *L)
{
  const char *a = luaL_checkstring(L, 1);
  const char *b = luaL_checkstring(L, 2);

  if(rename(a, b) < 0) {
    int err = errno;

    return clayer_errno(L, lua_pushfstring(L, "%s -> %s", a, b), err);
  }
  lua_pushboolean(L, 1);
  return 1;
}


/* fs.remove(p): true once the file, link or empty folder p is gone. */
static int fs_remove(lua_State *L)
{
  const char *p = luaL_checkstring(L, 1);

  if(remove(p) < 0)
    return clayer_errno(L, p, errno);
  lua_pushboolean(L, 1);
  return 1;
}

/*
 * Remove folder `name` in pfd (st: its lstat) and everything below it;
 * path holds its full path for messages.  Folders we may not write are
 * made u+rwx first.  A folder on another device than dev is refused with
 * EBUSY rather than emptied.  Returns 0 or an errno, with path naming the
 * entry that failed.
 */
static int rm_dir(int pfd, const char *name, const struct stat *st, dev_t dev,
                  strbuf *path)
{
  size_t len = path->len;
  struct dirent *de;
  struct stat cst;
  DIR *d;
  int fd, err = 0;

  if(st->st_dev != dev)
    return EBUSY;
  if((st->st_mode & 0700) != 0700 &&
     fchmodat(pfd, name, (st->st_mode & 07777) | 0700, 0) < 0)
    return errno == ENOENT ? 0 : errno;
  fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if(fd < 0)
    return errno == ENOENT ? 0 : errno;
  d = fdopendir(fd);
  if(d == NULL) {
    err = errno;
    close(fd);
    return err;
  }
  while(!err && (de = readdir(d)) != NULL) {
    const char *n = de->d_name;

    if(n[0] == '.' && (!n[1] || (n[1] == '.' && !n[2])))
      continue;
    if(sb_put(path, len, "/", 1) < 0 || sb_put(path, len + 1, n, strlen(n)))
      err = ENOMEM;
    else if(de->d_type != DT_DIR && de->d_type != DT_UNKNOWN &&
            unlinkat(fd, n, 0) == 0)
      continue;
    else if(fstatat(fd, n, &cst, AT_SYMLINK_NOFOLLOW) < 0)
      err = errno == ENOENT ? 0 : errno;
    else if(S_ISDIR(cst.st_mode))
      err = rm_dir(fd, n, &cst, dev, path);
    else if(unlinkat(fd, n, 0) < 0 && errno != ENOENT)
      err = errno;
  }
  closedir(d);
  if(err)
    return err;
  path->len = len;
  path->s[len] = '\0';
  if(unlinkat(pfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
    return errno;
  return 0;
}

/*
 * fs.rmtree(p): true once p and everything below it are gone (a missing
 * p is fine).  Symlinks are removed, never followed; mount points below
 * p are not emptied (nil, "mountpoint: Device or resource busy", EBUSY).
 */
static int fs_rmtree(lua_State *L)
{
  size_t len;
  const char *p = luaL_checklstring(L, 1, &len);
  strbuf path = {NULL, 0, 0};
  struct stat st;
  int err = 0;

  if(lstat(p, &st) < 0) {
    if(errno == ENOENT)
      err = 0;
    else
      err = errno;
  }
  else if(!S_ISDIR(st.st_mode)) {
    if(unlink(p) < 0 && errno != ENOENT)
      err = errno;
  }
  else if(sb_put(&path, 0, p, len) < 0)
    err = ENOMEM;
  else
    err = rm_dir(AT_FDCWD, p, &st, st.st_dev, &path);
  if(err) {
    lua_pushstring(L, path.s ? path.s : p);
    free(path.s);
    return clayer_errno(L, lua_tostring(L, -1), err);
  }
  free(path.s);
  lua_pushboolean(L, 1);
  return 1;
}


/* fs.symlink(target, p): true once p is a link to target. */
static int fs_symlink(lua_State *L)
{
  const char *target = luaL_checkstring(L, 1);
  const char *p = luaL_checkstring(L, 2);

  if(symlink(target, p) < 0)
    return clayer_errno(L, p, errno);
  lua_pushboolean(L, 1);
  return 1;
}


/* fs.readlink(p): the link's text. */
static int fs_readlink(lua_State *L)
{
  const char *p = luaL_checkstring(L, 1);
  char *s = read_link(AT_FDCWD, p);

  if(s == NULL)
    return clayer_errno(L, p, errno);
  lua_pushstring(L, s);
  free(s);
  return 1;
}


/* fs.chmod(p, mode): true; follows symlinks as chmod(2) does. */
static int fs_chmod(lua_State *L)
{
  const char *p = luaL_checkstring(L, 1);
  mode_t mode = (luaL_checkinteger(L, 2), checkmode(L, 2, 0));

  if(chmod(p, mode) < 0)
    return clayer_errno(L, p, errno);
  lua_pushboolean(L, 1);
  return 1;
}

static int cmp_names(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* fs.dir(p): names in folder p, without . and .., sorted by bytes. */
static int fs_dir(lua_State *L)
{
  const char *p = luaL_checkstring(L, 1);
  char **names = NULL, **nn;
  size_t n = 0, cap = 0, i;
  struct dirent *de;
  DIR *d = opendir(p);
  int err = 0;

  if(d == NULL)
    return clayer_errno(L, p, errno);
  while(!err && (errno = 0, de = readdir(d)) != NULL) {
    const char *s = de->d_name;

    if(s[0] == '.' && (!s[1] || (s[1] == '.' && !s[2])))
      continue;
    if(n == cap) {
      cap = cap ? cap * 2 : 32;
      nn = realloc(names, cap * sizeof(*names));
      if(nn == NULL) {
        err = ENOMEM;
        break;
      }
      names = nn;
    }
    if((names[n] = strdup(s)) == NULL)
      err = ENOMEM;
    else
      n++;
  }
  if(!err && errno)
    err = errno;
  closedir(d);
  if(!err) {
    if(n)
      qsort(names, n, sizeof(*names), cmp_names);
    lua_createtable(L, (int)n, 0);
  }
  for(i = 0; i < n; i++) {
    if(!err) {
      lua_pushstring(L, names[i]);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    free(names[i]);
  }
  free(names);
  if(err)
    return clayer_errno(L, p, err);
  return 1;
}


/* fs.mkdtemp(prefix): the path of a new folder prefix + 6 characters. */
static int fs_mkdtemp(lua_State *L)
{
  const char *prefix = luaL_checkstring(L, 1);
  char *buf = lua_newuserdatauv(L, strlen(prefix) + 7, 0);

  strcpy(buf, prefix);
  strcat(buf, "XXXXXX");
  if(mkdtemp(buf) == NULL)
    return clayer_errno(L, prefix, errno);
  lua_pushstring(L, buf);
  return 1;
}

/* Copy all bytes of in to out; errno on failure. */
static int copy_bytes(int in, int out)
{
  char *buf = NULL;
  ssize_t n;
  int err = 0;

  for(;;) {
    n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
    if(n > 0)
      continue;
    if(n == 0)
      return 0;
    if(errno == EINTR && !clayer_interrupted)
      continue;
    if(errno != EXDEV && errno != ENOSYS && errno != EINVAL &&
       errno != EOPNOTSUPP)
      return errno;
    break;
  }
  buf = malloc(FS_CHUNK);
  if(buf == NULL)
    return ENOMEM;
  while(!err) {
    n = read(in, buf, FS_CHUNK);
    if(n < 0 && errno == EINTR && !clayer_interrupted)
      continue;
    if(n < 0)
      err = errno;
    else if(n == 0)
      break;
    else if(write_all(out, buf, n) < 0)
      err = errno;
  }
  free(buf);
  return err;
}

/*
 * fs.copy(src, dst [, mode]): true once dst holds the bytes of regular
 * file src with mode (default: src's permission bits).  Nothing else is
 * preserved; dst is not followed if it is a symlink.
 */
static int fs_copy(lua_State *L)
{
  const char *src = luaL_checkstring(L, 1);
  const char *dst = luaL_checkstring(L, 2);
  lua_Integer mode = lua_isnoneornil(L, 3) ? -1 : checkmode(L, 3, 0);
  const char *what = src;
  struct stat st;
  int in, out, err = 0;

  in = open(src, O_RDONLY | O_CLOEXEC);
  if(in < 0)
    return clayer_errno(L, src, errno);
  if(fstat(in, &st) < 0)
    err = errno;
  else if(!S_ISREG(st.st_mode)) {
    close(in);
    return clayer_fail(L, NULL, "%s: not a regular file", src);
  }
  if(mode < 0)
    mode = st.st_mode & 07777;
  out = err ? -1 : open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
                        O_CLOEXEC, 0600);
  if(!err && out < 0) {
    err = errno;
    what = dst;
  }
  if(!err) {
    err = copy_bytes(in, out);
    if(!err && fchmod(out, (mode_t)mode) < 0)
      err = errno;
    if(close(out) < 0 && !err)
      err = errno;
    if(err) {
      unlink(dst);
      what = dst;
    }
  }
  close(in);
  if(err)
    return clayer_errno(L, what, err);
  lua_pushboolean(L, 1);
  return 1;
}


/*
 * fs.lock(p [, wait]): a clayer.fs.lock holding flock(LOCK_EX) on p
 * (created 0644).  With wait == false a held lock gives nil, msg, "busy"
 * at once.  The lock ends with :close() or collection.
 */
static int fs_lockfile(lua_State *L)
{
  const char *p = luaL_checkstring(L, 1);
  fs_lock *lk;
  int wait = 1, fd;

  if(!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TBOOLEAN);
    wait = lua_toboolean(L, 2);
  }
  lk = lua_newuserdatauv(L, sizeof(*lk), 0);

  lk->fd = -1;
  luaL_setmetatable(L, FS_LOCK);
  fd = open(p, O_RDWR | O_CREAT | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0644);
  if(fd < 0)
    return clayer_errno(L, p, errno);
  lk->fd = fd;
  while(flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) < 0) {
    int err = errno;

    if(err == EINTR && !clayer_interrupted)
      continue;
    close(fd);
    lk->fd = -1;
    if(err == EWOULDBLOCK)
      return clayer_fail(L, "busy", "%s: locked by another process", p);
    if(err == EINTR)
      return clayer_fail(L, "interrupted", "%s: interrupted", p);
    return clayer_errno(L, p, err);
  }
  return 1;
}

/* lock:close(), __gc, __close: release the lock; safe to repeat. */
static int lock_release(lua_State *L)
{
  fs_lock *lk = luaL_checkudata(L, 1, FS_LOCK);

  if(lk->fd >= 0) {
    close(lk->fd);
    lk->fd = -1;
  }
  return 0;
}


/* fs.statvfs(p): {avail = bytes free to users, size = bytes in all}. */
static int fs_statvfs(lua_State *L)
{
  const char *p = luaL_checkstring(L, 1);
  struct statvfs sv;

  if(statvfs(p, &sv) < 0)
    return clayer_errno(L, p, errno);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)(sv.f_bavail * sv.f_frsize));
  lua_setfield(L, -2, "avail");
  lua_pushinteger(L, (lua_Integer)(sv.f_blocks * sv.f_frsize));
  lua_setfield(L, -2, "size");
  return 1;
}


static const luaL_Reg fs_funcs[] = {
  {"stat", fs_stat},
  {"lstat", fs_lstat},
  {"exists", fs_exists},
  {"read", fs_read},
  {"write_atomic", fs_write_atomic},
  {"mkdirp", fs_mkdirp},
  {"rename", fs_rename},
  {"remove", fs_remove},
  {"rmtree", fs_rmtree},
  {"symlink", fs_symlink},
  {"readlink", fs_readlink},
  {"chmod", fs_chmod},
  {"dir", fs_dir},
  {"mkdtemp", fs_mkdtemp},
  {"copy", fs_copy},
  {"lock", fs_lockfile},
  {"scan", fs_scan},
  {"diff", fs_diff},
  {"statvfs", fs_statvfs},
  {NULL, NULL}
};

static const luaL_Reg lock_methods[] = {
  {"close", lock_release},
  {NULL, NULL}
};

static const luaL_Reg lock_meta[] = {
  {"__gc", lock_release},
  {"__close", lock_release},
  {NULL, NULL}
};

int luaopen_clayer_fs(lua_State *L)
{
  luaL_newmetatable(L, FS_LOCK);
  luaL_setfuncs(L, lock_meta, 0);
  luaL_newlib(L, lock_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  fs_manifest_register(L);
  luaL_newlib(L, fs_funcs);
  return 1;
}
