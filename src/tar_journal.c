/*
 * tar_journal.c: the rollback journal of tar.extract (DESIGN §3).
 *
 * The journal is a folder J holding the entries an extraction moved out
 * of the way, and J/log, one record per line, written before each
 * action:
 *
 *   root <R>                       first line, absolute
 *   jmade <path>                   an ancestor of J made for it
 *   jtime <path> <atime> <mtime>   J's nearest older ancestor's times
 *   created <rel>                  about to create rel
 *   moved <rel> <saved>            about to rename rel to saved
 *   meta <rel> <mode> <uid> <gid> <atime> <mtime>
 *                                  about to change an old folder
 *   xattr <rel> <name> =<hex>      about to set extended attribute name
 *   xattr <rel> <name> -           of an old folder, which held the
 *                                  value <hex> (uppercase, "=" alone
 *                                  for an empty value), or none ("-")
 *   undone <N>                     the replay undid line N (0 = root)
 *
 * rel is relative to R ("." for R) and canonical: the real path of the
 * entry when the record was written, no symlink on the way (a path
 * through a symlink stops resolving when that symlink itself was moved
 * into the journal, as `usr/bin/X11 -> .`).  A record is marked undone only
 * when its undo worked or there was nothing to undo; the first failing
 * undo stops the replay and keeps J for the next one.  saved is
 * absolute when in J, else
 * relative to R (a `.clayer-journal.<pid>` folder beside the target,
 * when J is on another filesystem).  Paths and names are
 * percent-escaped.  A rollback replays the log backwards, then removes
 * J.  Undoing an xattr record sets or removes one name: running it again
 * (a replay killed before its "undone" mark) gives the same folder.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "tar_internal.h"

#define DEFAULT_JOURNAL "var/lib/clayer/journal"

int tar_rmtree_at(int dfd, const char *name)
{
  struct dirent *de;
  struct stat st;
  int fd, err = 0;
  DIR *d;

  if(fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW))
    return errno == ENOENT ? 0 : -1;
  if(!S_ISDIR(st.st_mode))
    return unlinkat(dfd, name, 0) && errno != ENOENT ? -1 : 0;
  if((st.st_mode & 0700) != 0700)
    fchmodat(dfd, name, (st.st_mode & 07777) | 0700, 0);
  fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if(fd < 0)
    return -1;
  d = fdopendir(fd);
  if(!d) {
    close(fd);
    return -1;
  }
  while((de = readdir(d))) {
    if(!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    if(tar_rmtree_at(fd, de->d_name) && !err)
      err = errno;
  }
  closedir(d);
  if(err) {
    errno = err;
    return -1;
  }
  return unlinkat(dfd, name, AT_REMOVEDIR) && errno != ENOENT ? -1 : 0;
}

/* Make room for n more bytes in the record buffer at *len. */
static int line_room(struct tar_journal *j, size_t len, size_t n)
{
  char *p;

  if(len + n + 1 <= j->linecap)
    return 0;
  p = realloc(j->line, (len + n + 1) * 2);
  if(!p)
    return -1;
  j->line = p;
  j->linecap = (len + n + 1) * 2;
  return 0;
}

/* Append " <escaped s>" to the record. */
static int line_path(struct tar_journal *j, size_t *len, const char *s)
{
  static const char hex[] = "0123456789ABCDEF";

  if(line_room(j, *len, 3 * strlen(s) + 2))
    return -1;
  j->line[(*len)++] = ' ';
  if(!*s)
    j->line[(*len)++] = '.';
  for(; *s; s++) {
    unsigned char c = (unsigned char)*s;

    if(c <= 0x20 || c == '%' || c == 0x7f) {
      j->line[(*len)++] = '%';
      j->line[(*len)++] = hex[c >> 4];
      j->line[(*len)++] = hex[c & 15];
    }
    else
      j->line[(*len)++] = (char)c;
  }
  return 0;
}

/* Append formatted text to the record. */
static int line_text(struct tar_journal *j, size_t *len, const char *fmt,
                     ...) __attribute__((format(printf, 3, 4)));
static int line_text(struct tar_journal *j, size_t *len, const char *fmt,
                     ...)
{
  va_list ap;
  int n;

  if(line_room(j, *len, 128))
    return -1;
  va_start(ap, fmt);
  n = vsnprintf(j->line + *len, 128, fmt, ap);
  va_end(ap);
  if(n < 0 || n >= 128)
    return -1;
  *len += (size_t)n;
  return 0;
}

/* Write the record with its newline. */
static int line_write(struct tar_journal *j, size_t len)
{
  size_t off = 0;
  ssize_t n;

  j->line[len++] = '\n';
  while(off < len) {
    n = write(j->logfd, j->line + off, len - off);
    if(n < 0 && errno == EINTR)
      continue;
    if(n < 0)
      return -1;
    off += (size_t)n;
  }
  return 0;
}

/*
 * Whether the replay could not open path (ENAMETOOLONG): the action it
 * is about is refused up front rather than left impossible to undo.
 */
static int too_long(const char *path)
{
  if(strlen(path) < PATH_MAX)
    return 0;
  errno = ENAMETOOLONG;
  return 1;
}

/* Write "word path". */
static int record1(struct tar_journal *j, const char *word, const char *p)
{
  size_t len = 0;

  if(line_text(j, &len, "%s", word) || line_path(j, &len, p))
    return -1;
  return line_write(j, len);
}

int tj_created(struct tar_journal *j, const char *rel)
{
  if(too_long(rel))
    return -1;
  return record1(j, "created", rel);
}

/* Nanoseconds since the epoch, saturated: a file can carry any time. */
static long long ns(const struct timespec *t)
{
  if(t->tv_sec >= LLONG_MAX / 1000000000LL)
    return LLONG_MAX;
  if(t->tv_sec < LLONG_MIN / 1000000000LL)
    return LLONG_MIN;
  return (long long)t->tv_sec * 1000000000LL + t->tv_nsec;
}

/* The timespec of v nanoseconds (tv_nsec in [0, 1e9), also before 1970). */
static struct timespec ns_ts(long long v)
{
  struct timespec t;

  t.tv_sec = v / 1000000000LL;
  t.tv_nsec = v % 1000000000LL;
  if(t.tv_nsec < 0) {
    t.tv_sec--;
    t.tv_nsec += 1000000000LL;
  }
  return t;
}

int tj_meta(struct tar_journal *j, const char *rel, const struct stat *st)
{
  size_t len = 0;

  if(too_long(rel))
    return -1;
  if(line_text(j, &len, "meta") || line_path(j, &len, rel) ||
     line_text(j, &len, " %o %u %u %lld %lld", st->st_mode & 07777,
               (unsigned)st->st_uid, (unsigned)st->st_gid, ns(&st->st_atim),
               ns(&st->st_mtim)))
    return -1;
  return line_write(j, len);
}

/*
 * The value of extended attribute name: a malloc'ed buffer and its size
 * in *n, or NULL with errno (ENODATA: no such name).  Reads from fd, or
 * from path without following it when fd < 0.
 */
void *tar_get_xattr(int fd, const char *path, const char *name,
                    ssize_t *n)
{
  void *v = NULL;

  for(;;) {   /* ERANGE: the value grew between the two calls */
    ssize_t size = fd >= 0 ? fgetxattr(fd, name, NULL, 0)
                           : lgetxattr(path, name, NULL, 0);
    void *p;

    if(size < 0)
      break;
    p = realloc(v, (size_t)size + 1);
    if(!p)
      break;
    v = p;
    *n = fd >= 0 ? fgetxattr(fd, name, v, (size_t)size)
                 : lgetxattr(path, name, v, (size_t)size);
    if(*n >= 0)
      return v;
    if(errno != ERANGE)
      break;
  }
  {
    int save = errno;

    free(v);
    errno = save;
  }
  return NULL;
}

int tj_xattr(struct tar_journal *j, int fd, const char *rel,
             const char *name)
{
  static const char hex[] = "0123456789ABCDEF";
  unsigned char *v;
  ssize_t n = 0, i;
  size_t len = 0;
  int r = -1;

  if(too_long(rel))
    return -1;
  v = tar_get_xattr(fd, NULL, name, &n);
  /* ENOTSUP: the filesystem has none, so setting it will fail too */
  if(!v && errno != ENODATA && errno != ENOTSUP)
    return 1;
  if(line_text(j, &len, "xattr") || line_path(j, &len, rel) ||
     line_path(j, &len, name) || line_room(j, len, 2 * (size_t)n + 3))
    goto out;
  j->line[len++] = ' ';
  j->line[len++] = v ? '=' : '-';
  for(i = 0; v && i < n; i++) {
    j->line[len++] = hex[v[i] >> 4];
    j->line[len++] = hex[v[i] & 15];
  }
  r = line_write(j, len);
out:
  free(v);
  return r;
}

char *tar_join(const char *parent, const char *name)
{
  size_t a = strlen(parent), b = strlen(name);
  char *p = malloc(a + b + 2);

  if(!p)
    return NULL;
  memcpy(p, parent, a);
  if(a && parent[a - 1] != '/')
    p[a++] = '/';
  memcpy(p + a, name, b + 1);
  return p;
}

/*
 * Save a folder that cannot be renamed (overlayfs lower layer): copy it
 * to a temporary name, rename the copy to `saved`, log the move, then
 * remove the original.  A kill before the log line leaves a stray copy in
 * the fallback folder (removed with it); a kill after it is undone like a
 * rename.
 */
static int copy_aside(struct tar_journal *j, int pfd, const char *rel,
                      const char *savedrel, const char *name,
                      const char *saved)
{
  char tmp[128];
  size_t len = 0;

  snprintf(tmp, sizeof(tmp), "%s.copy", saved);
  if(tar_copy_tree_at(pfd, name, pfd, tmp) ||
     renameat(pfd, tmp, pfd, saved)) {
    int save = errno;

    tar_rmtree_at(pfd, tmp);
    errno = save;
    return -1;
  }
  if(line_text(j, &len, "moved") || line_path(j, &len, rel) ||
     line_path(j, &len, savedrel) || line_write(j, len))
    return -1;
  return tar_rmtree_at(pfd, name);
}

/* Save name (in pfd) beside itself: J is on another filesystem. */
static int move_beside(struct tar_journal *j, int pfd, const char *prel,
                       const char *rel, const char *name, const char *seq)
{
  char fb[64], saved[96];
  char *fbrel, *savedrel, **list;
  struct stat st;
  size_t len = 0;
  int r = -1;

  snprintf(fb, sizeof(fb), ".clayer-journal.%ld", (long)getpid());
  snprintf(saved, sizeof(saved), "%s/%s", fb, seq);
  fbrel = tar_join(prel, fb);
  savedrel = tar_join(prel, saved);
  /* a saved path the replay could not open would look like a rename
     that never happened: refuse before anything is logged */
  if(!fbrel || !savedrel || too_long(savedrel))
    goto out;
  if(fstatat(pfd, fb, &st, AT_SYMLINK_NOFOLLOW)) {
    struct stat *sts;

    list = realloc(j->fallback, (j->nfallback + 1) * sizeof(*list));
    if(list)
      j->fallback = list;
    sts = realloc(j->fallback_st, (j->nfallback + 1) * sizeof(*sts));
    if(sts)
      j->fallback_st = sts;
    if(!list || !sts || tj_created(j, fbrel))
      goto out;
    if(mkdirat(pfd, fb, 0700) ||
       fstatat(pfd, fb, &sts[j->nfallback], AT_SYMLINK_NOFOLLOW))
      goto out;
    list[j->nfallback++] = fbrel;
    fbrel = NULL;
  }
  if(line_text(j, &len, "moved") || line_path(j, &len, rel) ||
     line_path(j, &len, savedrel) || line_write(j, len))
    goto out;
  r = renameat(pfd, name, pfd, saved);
  /* the log line of a rename that never happened is skipped on replay */
  if(r && errno == EXDEV && fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0
     && S_ISDIR(st.st_mode))
    r = copy_aside(j, pfd, rel, savedrel, name, saved);
out:
  free(fbrel);
  free(savedrel);
  return r;
}

int tj_move(struct tar_journal *j, int pfd, const char *prel,
            const char *name)
{
  char seq[32], *rel, *saved = NULL;
  size_t len = 0;
  int r = -1;

  snprintf(seq, sizeof(seq), "%08lu", ++j->seq);
  rel = tar_join(prel, name);
  saved = tar_join(j->dir, seq);
  if(!rel || !saved || too_long(rel) || too_long(saved))
    goto out;
  if(line_text(j, &len, "moved") || line_path(j, &len, rel) ||
     line_path(j, &len, saved) || line_write(j, len))
    goto out;
  r = renameat(pfd, name, j->dfd, seq);
  if(r && errno == EXDEV)
    r = move_beside(j, pfd, prel, rel, name, seq);
out:
  free(rel);
  free(saved);
  return r;
}

int tj_protected(struct tar_journal *j, const struct stat *parent,
                 const char *name)
{
  size_t i;

  if(parent->st_dev == j->dev && parent->st_ino == j->ino)
    return 1;
  if(!strncmp(name, ".clayer-journal.", 16))
    return 1;
  for(i = 0; i < j->nchain; i++)
    if(parent->st_dev == j->chain[i].dev &&
       parent->st_ino == j->chain[i].ino && !strcmp(name, j->chain[i].name))
      return 1;
  return 0;
}

int tj_is_inside_parent(struct tar_journal *j, const struct stat *parent)
{
  return parent->st_dev == j->dev && parent->st_ino == j->ino;
}

int tj_is_journal(struct tar_journal *j, const struct stat *st)
{
  size_t i;

  if(st->st_dev == j->dev && st->st_ino == j->ino)
    return 1;
  /* the journal's parent is clayer's state folder (applied.json, the
     lock): no member may write into it either */
  if(j->nchain && st->st_dev == j->chain[0].dev &&
     st->st_ino == j->chain[0].ino &&
     !(st->st_dev == j->root_dev && st->st_ino == j->root_ino))
    return 1;   /* (unless the journal sits right in R) */
  for(i = 0; i < j->nfallback; i++)
    if(st->st_dev == j->fallback_st[i].st_dev &&
       st->st_ino == j->fallback_st[i].st_ino)
      return 1;
  return 0;
}

int tar_walk_up(int fd, dev_t rdev, ino_t rino,
                int (*visit)(void *arg, const struct stat *st), void *arg)
{
  struct stat st, prev;
  int cur = dup(fd), up, depth, r = 0;

  memset(&prev, 0, sizeof(prev));
  for(depth = 0; cur >= 0 && depth < 4096; depth++) {
    if(fstat(cur, &st)) {
      r = -2;
      break;
    }
    if((r = visit(arg, &st)) != 0)
      break;
    if((st.st_dev == rdev && st.st_ino == rino) ||
       (depth && st.st_dev == prev.st_dev && st.st_ino == prev.st_ino))
      break;
    prev = st;
    up = openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
    close(cur);
    cur = up;
  }
  if(cur >= 0)
    close(cur);
  return r;
}

static int visit_journal(void *arg, const struct stat *st)
{
  return tj_is_journal(arg, st);
}

int tj_inside(struct tar_journal *j, int fd)
{
  if(!j->nchain && !j->nfallback)
    return 0;
  return tar_walk_up(fd, j->root_dev, j->root_ino, visit_journal, j) == 1;
}

/* The real path of an open fd, or NULL. */
static char *fd_path(int fd)
{
  char link[64], buf[PATH_MAX];
  ssize_t n;

  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  n = readlink(link, buf, sizeof(buf) - 1);
  if(n <= 0)
    return NULL;
  buf[n] = '\0';
  return strdup(buf);
}

/* Remember the times of folder fd: J's removal will change them. */
static int keep_times(struct tar_journal *j, int fd)
{
  struct stat st;

  if(j->timed)
    return 0;
  if(fstat(fd, &st))
    return -1;
  j->timed = fd_path(fd);
  j->times[0] = st.st_atim;
  j->times[1] = st.st_mtim;
  return j->timed ? 0 : -1;
}

/*
 * Open (making it, 0700, with missing ancestors 0755) the folder path
 * below base, resolved inside base when inroot.  Returns an O_PATH fd.
 */
static int make_dir(struct tar_journal *j, int base, const char *path,
                    int inroot)
{
  const char *p = path, *end;
  char *prefix = NULL, *comp = NULL;
  int cur, fd = -1, last;

  cur = openat(base, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  for(; cur >= 0 && *p; p = *end ? end + 1 : end) {
    end = strchrnul(p, '/');
    if(end == p)
      continue;
    last = !*end;
    free(prefix);
    free(comp);
    prefix = strndup(path, (size_t)(end - path));
    comp = strndup(p, (size_t)(end - p));
    if(!prefix || !comp)
      goto fail;
    if(inroot)
      fd = tar_openat2(base, prefix, O_PATH | O_DIRECTORY);
    else
      fd = openat(cur, comp, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if(fd < 0 && errno == ENOENT) {
      if(keep_times(j, cur) || mkdirat(cur, comp, last ? 0700 : 0755))
        goto fail;
      fd = openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if(fd >= 0 && !last) {
        char **m = realloc(j->made, (j->nmade + 1) * sizeof(*m));

        if(!m)
          goto fail;
        j->made = m;
        m[j->nmade] = fd_path(fd);
        if(!m[j->nmade++])
          goto fail;
      }
    }
    if(fd < 0 || (last && keep_times(j, cur)))
      goto fail;
    close(cur);
    cur = fd;
    fd = -1;
  }
  free(prefix);
  free(comp);
  return cur;
fail:
  free(prefix);
  free(comp);
  if(fd >= 0)
    close(fd);
  if(cur >= 0)
    close(cur);
  return -1;
}

/* The chain of (folder, child name) pairs from R down to J. */
static int make_chain(struct tar_journal *j)
{
  char *copy = strdup(j->dir), *slash;
  struct stat st;

  if(!copy)
    return -1;
  while((slash = strrchr(copy, '/'))) {
    struct tar_link *c;

    *slash = '\0';
    if(stat(*copy ? copy : "/", &st))
      break;
    c = realloc(j->chain, (j->nchain + 1) * sizeof(*c));
    if(!c)
      break;
    j->chain = c;
    c[j->nchain].dev = st.st_dev;
    c[j->nchain].ino = st.st_ino;
    c[j->nchain].name = strdup(slash + 1);
    if(!c[j->nchain++].name)
      break;
    if(st.st_dev == j->root_dev && st.st_ino == j->root_ino) {
      free(copy);
      return 0;
    }
  }
  free(copy);
  while(j->nchain)   /* J is not below R: nothing to protect */
    free(j->chain[--j->nchain].name);
  return 0;
}

/* Write the header records. */
static int write_header(struct tar_journal *j, const char *root)
{
  size_t i, len = 0;

  if(record1(j, "root", root))
    return -1;
  for(i = 0; i < j->nmade; i++)
    if(record1(j, "jmade", j->made[i]))
      return -1;
  if(!j->timed)
    return 0;
  if(line_text(j, &len, "jtime") || line_path(j, &len, j->timed) ||
     line_text(j, &len, " %lld %lld", ns(&j->times[0]), ns(&j->times[1])))
    return -1;
  return line_write(j, len);
}

/*
 * Open the journal at path (NULL: R/var/lib/clayer/journal, made inside
 * R) for root R.  Returns 0, 1 when J holds the log of an unfinished
 * run (j->dir is set; replay it and open again), -1 with err.
 */
int tj_open(struct tar_journal *j, const char *root, int rootfd,
            const char *path, char *err, size_t errlen)
{
  struct stat st;
  int base = AT_FDCWD;

  memset(j, 0, sizeof(*j));
  j->dfd = j->logfd = -1;
  j->rootfd = rootfd;
  if(fstat(rootfd, &st))
    goto fail;
  j->root_dev = st.st_dev;
  j->root_ino = st.st_ino;
  if(!path)
    base = rootfd;
  else if(path[0] == '/') {
    base = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    path++;
  }
  j->dfd = make_dir(j, base, path ? path : DEFAULT_JOURNAL, !path);
  if(base >= 0 && base != rootfd)
    close(base);
  if(j->dfd < 0 || fstat(j->dfd, &st))
    goto fail;
  j->dev = st.st_dev;
  j->ino = st.st_ino;
  j->dir = fd_path(j->dfd);
  if(!j->dir)
    goto fail;
  j->logfd = openat(j->dfd, "log", O_WRONLY | O_CREAT | O_EXCL | O_APPEND |
                    O_CLOEXEC, 0600);
  if(j->logfd < 0 && errno == EEXIST)
    return 1;
  /* held until the end: a second run must not roll back a live one */
  if(j->logfd < 0 || flock(j->logfd, LOCK_EX | LOCK_NB) ||
     make_chain(j) || write_header(j, root))
    goto fail;
  return 0;
fail:
  snprintf(err, errlen, "journal %s: %s", j->dir ? j->dir :
           path ? path : DEFAULT_JOURNAL, strerror(errno));
  return -1;
}

/* Remove J's folder at the real path dir. */
static int remove_dir(const char *dir)
{
  char *copy = strdup(dir), *slash;
  int pfd, r = -1;

  if(!copy)
    return -1;
  slash = strrchr(copy, '/');
  if(slash) {
    *slash = '\0';
    pfd = open(*copy ? copy : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if(pfd >= 0) {
      r = tar_rmtree_at(pfd, slash + 1);
      close(pfd);
    }
  }
  free(copy);
  return r;
}

/* Remove J and the ancestors made for it; put back the older one's times. */
static int remove_journal(const char *dir, char **made, size_t nmade,
                          const char *timed, const struct timespec *times)
{
  int r = remove_dir(dir);

  while(nmade--)
    if(made[nmade])
      rmdir(made[nmade]);   /* kept when not empty: the archive used it */
  if(timed)
    utimensat(AT_FDCWD, timed, times, AT_SYMLINK_NOFOLLOW);
  return r;
}

int tj_commit(struct tar_journal *j)
{
  struct stat st;
  size_t i;
  int r = 0;

  if(j->logfd >= 0)
    close(j->logfd);
  j->logfd = -1;
  /* the commit point: without its log, a journal is only litter, so a
     kill from here on can never roll back a finished extraction */
  {
    char *log = tar_join(j->dir, "log");

    if(!log || (unlink(log) && errno != ENOENT))
      r = -1;
    free(log);
  }
  if(j->timed && !stat(j->timed, &st)) {
    j->times[0] = st.st_atim;
    j->times[1] = st.st_mtim;
  }
  for(i = 0; i < j->nfallback; i++) {
    char *copy = strdup(j->fallback[i]), *slash;
    int pfd;

    if(!copy)
      continue;
    slash = strrchr(copy, '/');
    if(slash)
      *slash = '\0';
    pfd = tar_openat2(j->rootfd, slash ? copy : "", O_PATH | O_DIRECTORY);
    if(pfd >= 0) {
      r |= tar_rmtree_at(pfd, slash ? slash + 1 : copy);
      close(pfd);
    }
    free(copy);
  }
  r |= remove_journal(j->dir, j->made, j->nmade, j->timed, j->times);
  return r;
}

void tj_claim(struct tar_journal *j, const struct stat *dir)
{
  struct stat st;
  size_t i;

  for(i = 0; i < j->nmade; i++)
    if(j->made[i] && !stat(j->made[i], &st) && st.st_dev == dir->st_dev &&
       st.st_ino == dir->st_ino) {
      free(j->made[i]);
      j->made[i] = NULL;
    }
}

int tj_rollback(struct tar_journal *j, long *n, char *err, size_t errlen)
{
  if(j->logfd >= 0)
    close(j->logfd);
  j->logfd = -1;
  return tj_replay(j->dir, n, err, errlen);
}

void tj_close(struct tar_journal *j)
{
  size_t i;

  if(j->logfd >= 0)
    close(j->logfd);
  if(j->dfd >= 0)
    close(j->dfd);
  for(i = 0; i < j->nchain; i++)
    free(j->chain[i].name);
  for(i = 0; i < j->nmade; i++)
    free(j->made[i]);
  for(i = 0; i < j->nfallback; i++)
    free(j->fallback[i]);
  free(j->chain);
  free(j->made);
  free(j->fallback);
  free(j->fallback_st);
  free(j->timed);
  free(j->dir);
  free(j->line);
  memset(j, 0, sizeof(*j));
  j->dfd = j->logfd = -1;
}

int tj_pending(const char *dir)
{
  char *log = tar_join(dir, "log");
  int r;

  if(!log)
    return 0;
  r = access(log, F_OK) == 0;
  free(log);
  return r;
}

/* Replay ----------------------------------------------------------------- */

/* Undo percent-escapes of the word at *p in place; advance *p past it. */
static char *word(char **p)
{
  char *s = *p, *out, *w;

  while(*s == ' ')
    s++;
  if(!*s)
    return NULL;
  w = out = s;
  for(; *s && *s != ' '; s++) {
    if(s[0] == '%' && s[1] && s[2]) {
      char h[3] = { s[1], s[2], 0 };

      *out++ = (char)strtol(h, NULL, 16);
      s += 2;
    }
    else
      *out++ = *s;
  }
  if(*s)
    s++;
  *out = '\0';
  *p = s;
  return w;
}

struct replay {
  int rootfd;
  long n;
  char *err;
  size_t errlen;
};

/* Keep the first error of the replay; return -1. */
static int replay_err(struct replay *rp, const char *what, const char *p)
{
  if(!rp->err[0])
    snprintf(rp->err, rp->errlen, "%s %s: %s", what, p, strerror(errno));
  return -1;
}

/* Open the parent of rel inside R; *name points at its last part. */
static int parent_of(struct replay *rp, char *rel, char **name)
{
  char *slash = strrchr(rel, '/');
  int fd;

  if(!slash) {
    *name = rel;
    return tar_openat2(rp->rootfd, "", O_PATH | O_DIRECTORY);
  }
  *slash = '\0';
  fd = tar_openat2(rp->rootfd, rel, O_PATH | O_DIRECTORY);
  *slash = '/';
  *name = slash + 1;
  return fd;
}

/*
 * The undo functions return 0 when the record is undone or there was
 * nothing to undo (the replay marks it), -1 when it failed (the replay
 * stops and keeps the journal: a later one retries it).
 */
static int undo_created(struct replay *rp, char *rel)
{
  char *name;
  int pfd = parent_of(rp, rel, &name), r = 0;

  /* ENOENT, ENOTDIR: no rel there, never made or already removed */
  if(pfd < 0)
    return errno == ENOENT || errno == ENOTDIR ? 0 :
           replay_err(rp, "created", rel);
  if(!faccessat(pfd, name, F_OK, AT_SYMLINK_NOFOLLOW)) {
    if(tar_rmtree_at(pfd, name))
      r = replay_err(rp, "created", rel);
    else
      rp->n++;
  }
  else if(errno != ENOENT)
    r = replay_err(rp, "created", rel);
  close(pfd);
  return r;
}

static int undo_moved(struct replay *rp, char *rel, char *saved)
{
  char *name, *sname;
  int pfd, sfd, r = 0;

  if(saved[0] == '/') {
    char *slash = strrchr(saved, '/');

    *slash = '\0';
    sfd = open(*saved ? saved : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    *slash = '/';
    sname = slash + 1;
  }
  else
    sfd = parent_of(rp, saved, &sname);
  /* the folder of the saved entry is always there (J, or the fallback
     folder made before this record): one that does not resolve is a
     failure, never "nothing to undo" */
  if(sfd < 0)
    return replay_err(rp, "moved", saved);
  if(faccessat(sfd, sname, F_OK, AT_SYMLINK_NOFOLLOW)) {
    /* ENOENT: the rename never happened, or a replay killed before its
       mark already put it back */
    if(errno != ENOENT)
      r = replay_err(rp, "moved", saved);
    close(sfd);
    return r;
  }
  pfd = parent_of(rp, rel, &name);
  if(pfd < 0 || tar_rmtree_at(pfd, name) ||
     renameat(sfd, sname, pfd, name))
    r = replay_err(rp, "moved", rel);
  else
    rp->n++;
  if(pfd >= 0)
    close(pfd);
  close(sfd);
  return r;
}

static int undo_meta(struct replay *rp, char *rel, char *rest)
{
  unsigned mode, uid, gid;
  long long at, mt;
  struct timespec ts[2];
  struct stat st;
  int fd;

  int r = 0;

  if(sscanf(rest, "%o %u %u %lld %lld", &mode, &uid, &gid, &at, &mt) != 5)
    return 0;   /* not a record this replay can act on */
  fd = tar_openat2(rp->rootfd, strcmp(rel, ".") ? rel : "",
                   O_RDONLY | O_DIRECTORY);
  if(fd < 0)
    return replay_err(rp, "meta", rel);
  ts[0] = ns_ts(at);
  ts[1] = ns_ts(mt);
  /* each step only when something differs: a folder whose change
     failed (procfs, a read-only mount) is already as recorded, and
     asking again would fail the rollback for nothing */
  if(fstat(fd, &st))
    r = replay_err(rp, "meta", rel);
  else {
    int owner = st.st_uid != uid || st.st_gid != gid;

    /* a chown may clear setuid/setgid bits: then chmod in any case */
    if((owner && fchown(fd, uid, gid)) ||
       ((owner || (st.st_mode & 07777) != mode) && fchmod(fd, mode)) ||
       ((ns(&st.st_atim) != at || ns(&st.st_mtim) != mt) &&
        futimens(fd, ts)))
      r = replay_err(rp, "meta", rel);
  }
  close(fd);
  return r;
}

static int hexval(char c)
{
  return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ?
         c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Put back one extended attribute of an old folder: its value, or none. */
static int undo_xattr(struct replay *rp, char *rel, char *rest)
{
  char *name = word(&rest), *val = name ? word(&rest) : NULL;
  size_t i, n;
  int fd, r, absent;

  if(!val || (strcmp(val, "-") && val[0] != '=') || strlen(val + 1) % 2)
    return 0;   /* not a record this replay can act on */
  absent = val[0] == '-';
  /* the value is decoded in place: byte i comes from val[1 + 2i] */
  n = strlen(val + 1) / 2;
  for(i = 0; !absent && i < n; i++) {
    int hi = hexval(val[1 + 2 * i]), lo = hexval(val[2 + 2 * i]);

    if(hi < 0 || lo < 0)
      return 0;
    val[i] = (char)(hi << 4 | lo);
  }
  fd = tar_openat2(rp->rootfd, strcmp(rel, ".") ? rel : "",
                   O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if(fd < 0)
    return replay_err(rp, "xattr", rel);
  if(absent)
    r = fremovexattr(fd, name) && errno != ENODATA && errno != ENOTSUP;
  else
    r = fsetxattr(fd, name, val, n, 0) != 0;
  if(r)
    replay_err(rp, "xattr", rel);
  close(fd);
  return r ? -1 : 0;
}

/*
 * Read the whole log at dir/log, locked into *fd; NULL with errno when
 * there is none, or EWOULDBLOCK when a live run holds it.
 */
static char *read_log(const char *dir, int *fd_out)
{
  char *path = tar_join(dir, "log"), *buf = NULL, *p;
  size_t len = 0, cap = 0;
  ssize_t n;
  int fd;

  *fd_out = -1;
  if(!path)
    return NULL;
  fd = open(path, O_RDWR | O_CLOEXEC);
  free(path);
  if(fd < 0)
    return NULL;
  if(flock(fd, LOCK_EX | LOCK_NB)) {
    close(fd);
    errno = EWOULDBLOCK;
    return NULL;
  }
  for(;;) {
    if(len + 65536 + 1 > cap) {
      cap = (len + 65536 + 1) * 2;
      p = realloc(buf, cap);
      if(!p)
        break;
      buf = p;
    }
    n = read(fd, buf + len, cap - len - 1);
    if(n < 0 && errno == EINTR)
      continue;
    if(n <= 0)
      break;
    len += (size_t)n;
  }
  *fd_out = fd;
  if(buf) {
    size_t whole = len;

    while(len && buf[len - 1] != '\n')   /* an unfinished record: undone */
      len--;
    buf[len] = '\0';
    /* cut it from the file too, or the replay's first "undone" mark would
       be appended to it and lost with it */
    if(len != whole && ftruncate(fd, (off_t)len)) {
      free(buf);
      return NULL;
    }
  }
  return buf;
}

/* Split buf into lines in place; return how many. */
static size_t split_lines(char *buf, char ***out)
{
  size_t n = 0, cap = 0;
  char **lines = NULL, *p = buf, *nl;

  while(*p) {
    nl = strchr(p, '\n');
    if(!nl)
      break;
    *nl = '\0';
    if(n == cap) {
      char **l = realloc(lines, (cap = cap ? cap * 2 : 256) * sizeof(*l));

      if(!l)
        break;
      lines = l;
    }
    lines[n++] = p;
    p = nl + 1;
  }
  *out = lines;
  return n;
}

int tj_replay(const char *dir, long *n, char *err, size_t errlen)
{
  struct replay rp = { -1, 0, err, errlen };
  char *buf, **lines = NULL, **made = NULL, *timed = NULL, *root, *p;
  char *done = NULL, *logpath = tar_join(dir, "log");
  struct timespec times[2];
  size_t i, count, nmade = 0;
  int lockfd, r, wfd = -1;

  err[0] = '\0';
  *n = 0;
  if(!logpath) {
    snprintf(err, errlen, "journal %s: out of memory", dir);
    return -1;
  }
  buf = read_log(dir, &lockfd);
  if(!buf) {
    if(lockfd >= 0)
      close(lockfd);
    free(logpath);
    if(errno == EWOULDBLOCK) {
      snprintf(err, errlen, "journal %s: in use by a running extraction",
               dir);
      return -2;
    }
    if(errno != ENOENT) {
      snprintf(err, errlen, "journal %s: %s", dir, strerror(errno));
      return -1;
    }
    return remove_dir(dir) && errno != ENOENT ? -1 : 0;
  }
  count = split_lines(buf, &lines);
  if(!count) {   /* killed before its first record: nothing was done */
    free(logpath);
    free(lines);
    free(buf);
    close(lockfd);
    return remove_dir(dir) && errno != ENOENT ? -1 : 0;
  }
  p = lines[0];
  root = word(&p);
  if(!root || strcmp(root, "root") || !(root = word(&p)) ||
     (rp.rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0) {
    snprintf(err, errlen, "journal %s: no usable root record", dir);
    free(logpath);
    free(lines);
    free(buf);
    close(lockfd);
    return -1;
  }
  made = calloc(count, sizeof(*made));
  /* A replay may itself be killed.  Each record it has undone is marked
     with an "undone N" record appended to the log, so that the next
     replay skips it: undoing "created X" twice would remove the
     original X that the "moved" record before it had put back. */
  done = calloc(count, 1);
  wfd = open(logpath, O_WRONLY | O_APPEND | O_CLOEXEC);
  for(i = 1; done && i < count; i++) {
    unsigned long long k;

    if(!strncmp(lines[i], "undone ", 7) &&
       sscanf(lines[i] + 7, "%llu", &k) == 1 && k < count)
      done[k] = 1;
  }
  if(wfd < 0)   /* no mark could be written: undo nothing */
    snprintf(err, errlen, "journal %s: %s", dir, strerror(errno));
  /* A record is marked undone only once undone (or with nothing to
     undo).  The first that fails stops the replay, keeping J and every
     saved entry: undoing the records before it (say the "created" of
     the fallback folder holding it) could destroy what it saved. */
  for(i = count; made && done && !err[0] && i-- > 1;) {
    char *kind, *a, *b;
    int acted = 1, r1 = 0;

    if(done[i] || !strncmp(lines[i], "undone ", 7))
      continue;
    p = lines[i];
    kind = word(&p);
    a = kind ? word(&p) : NULL;
    if(!a)
      continue;
    if(!strcmp(kind, "created"))
      r1 = undo_created(&rp, a);
    else if(!strcmp(kind, "moved") && (b = word(&p)))
      r1 = undo_moved(&rp, a, b);
    else if(!strcmp(kind, "meta"))
      r1 = undo_meta(&rp, a, p);
    else if(!strcmp(kind, "xattr"))
      r1 = undo_xattr(&rp, a, p);
    else
      acted = 0;
    if(r1) {
      size_t len = strlen(err);

      snprintf(err + len, errlen - len, " (journal %s, line %zu, kept)",
               dir, i + 1);
      break;
    }
    if(acted) {
      char mark[32];
      int len = snprintf(mark, sizeof(mark), "undone %zu\n", i);

      if(write(wfd, mark, (size_t)len) != len) {
        replay_err(&rp, "mark", lines[i]);
        break;
      }
      continue;
    }
    if(!strcmp(kind, "jmade"))
      made[nmade++] = a;
    else if(!strcmp(kind, "jtime")) {
      long long at, mt;

      if(sscanf(p, "%lld %lld", &at, &mt) == 2) {
        timed = a;
        times[0] = ns_ts(at);
        times[1] = ns_ts(mt);
      }
    }
  }
  close(rp.rootfd);
  *n = rp.n;
  if(wfd >= 0)
    close(wfd);
  if(!made || !done)
    snprintf(err, errlen, "journal %s: out of memory", dir);
  if(!err[0]) {
    /* made[] holds the ancestors deepest first: reverse for removal */
    for(i = 0; i < nmade / 2; i++) {
      char *t = made[i];

      made[i] = made[nmade - 1 - i];
      made[nmade - 1 - i] = t;
    }
    if(remove_journal(dir, made, nmade, timed, times))
      snprintf(err, errlen, "journal %s: %s", dir, strerror(errno));
  }
  r = err[0] ? -1 : 0;
  close(lockfd);
  free(done);
  free(logpath);
  free(made);
  free(lines);
  free(buf);
  return r;
}
