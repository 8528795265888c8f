/*
 * tar_extract.c: tar.extract and tar.recover: safe extraction of a
 * tar+zstd (or tar+gzip) archive into a root R (DESIGN §3).
 *
 * Every member path resolves inside R as if R were "/": its parent
 * folder is opened with openat2(RESOLVE_IN_ROOT) on R, missing folders
 * are made one by one, and the last component is handled with *at()
 * calls that never follow it.  Whatever is replaced or deleted is first
 * moved into the rollback journal (tar_journal.c), so a failure puts R
 * back as it was.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "tar_internal.h"

/* Flags of member paths in the set. */
#define P_WHITEOUT  2    /* this archive removed what was there */

/* Flags of inodes in the inode set. */
#define I_MINE      4    /* made or kept as a member of this archive */
#define I_ANC       8    /* a folder holding members of this archive */
#define I_CREATED  16    /* a folder made by this run */
#define I_META     32    /* an old folder whose metadata is journaled */

/* A folder member whose metadata is set at the end, deepest first. */
struct dir_meta {
  char *rel;
  mode_t mode;
  uid_t uid;
  gid_t gid;
  struct timespec ts[2];
  size_t depth, index;
};

/* One extraction. */
struct tar_x {
  struct archive *a;
  struct tar_in *in;
  struct tar_journal j;
  int jopen;
  struct tar_set set;       /* whiteout'ed paths */
  struct tar_iset inodes;   /* made or passed by this run */
  int rootfd;
  struct stat root_st;
  int owners, allow_special;
  uid_t euid;
  gid_t egid;
  long long max_bytes, bytes, files;
  unsigned gen;            /* folders moved into the journal so far */
  struct dir_meta *dirs;
  size_t ndirs, capdirs;
  char *pc_rel;            /* the last parent folder opened, and its fd */
  char *pc_canon;          /* its canonical path (tar_openat2_canon) */
  int pc_fd;
  struct stat pc_st;
  int pc_touched;          /* its metadata is journaled or it is new */
  long dropped, chown_failed, xattr_failed;
  char first_chown[256], first_xattr[256];
  char **warn;
  size_t nwarn;
  int want_names;          /* opts.names: list the non-folder members */
  char **names;
  size_t nnames, capnames;
  const char *member;      /* name as in the archive, for messages */
  int archive_failed;      /* libarchive failed: ask the input why */
  const char *code;
  char msg[1024];
};

/* Remember a member's name for opts.names (best effort: no memory, no
   name). */
static void add_name(struct tar_x *x, const char *rel)
{
  if(x->nnames == x->capnames) {
    size_t cap = x->capnames ? 2 * x->capnames : 256;
    char **n = realloc(x->names, cap * sizeof(*n));

    if(!n)
      return;
    x->names = n;
    x->capnames = cap;
  }
  x->names[x->nnames] = strdup(rel);
  if(x->names[x->nnames])
    x->nnames++;
}

/* Record the failure of the current member; return -1. */
static int xfail(struct tar_x *x, const char *code, const char *fmt, ...)
  __attribute__((format(printf, 3, 4)));
static int xfail(struct tar_x *x, const char *code, const char *fmt, ...)
{
  va_list ap;
  int n;

  if(x->code)
    return -1;
  x->code = code;
  if(x->member)
    n = snprintf(x->msg, sizeof(x->msg), "tar.extract: %s: ", x->member);
  else
    n = snprintf(x->msg, sizeof(x->msg), "tar.extract: ");
  if(n < 0 || (size_t)n >= sizeof(x->msg))
    n = 0;
  va_start(ap, fmt);
  vsnprintf(x->msg + n, sizeof(x->msg) - (size_t)n, fmt, ap);
  va_end(ap);
  return -1;
}

/* A failed system call: "space" when the disk is full, else "io". */
static int xerrno(struct tar_x *x, const char *what)
{
  int err = errno;

  return xfail(x, err == ENOSPC || err == EDQUOT ? "space" : "io",
               "%s: %s", what, strerror(err));
}

static void xwarn(struct tar_x *x, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));
static void xwarn(struct tar_x *x, const char *fmt, ...)
{
  char buf[1024], **w;
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  w = realloc(x->warn, (x->nwarn + 1) * sizeof(*w));
  if(!w)
    return;
  x->warn = w;
  w[x->nwarn] = strdup(buf);
  if(w[x->nwarn])
    x->nwarn++;
}

/* The set item of an inode, added when add. */
static struct tar_inode *inode(struct tar_x *x, const struct stat *st,
                               int add)
{
  return tar_iset_get(&x->inodes, st->st_dev, st->st_ino, add);
}

/* Add flags to the inode st. */
static int mark_st(struct tar_x *x, const struct stat *st, unsigned flags)
{
  struct tar_inode *it = inode(x, st, 1);

  if(!it)
    return xfail(x, "io", "out of memory");
  it->flags |= flags;
  return 0;
}

/* Add flags to the inode of fd (or of name in fd when name). */
static int mark(struct tar_x *x, int fd, const char *name, unsigned flags)
{
  struct stat st;

  if(name ? fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) : fstat(fd, &st))
    return xerrno(x, "stat");
  return mark_st(x, &st, flags);
}

/* Journal the metadata of folder fd (at rel) before its first change. */
static int touch(struct tar_x *x, int fd, const char *rel)
{
  struct tar_inode *it;
  struct stat st;

  if(fstat(fd, &st))
    return xerrno(x, "stat");
  it = inode(x, &st, 1);
  if(!it)
    return xfail(x, "io", "out of memory");
  if(it->flags & (I_CREATED | I_META))
    return 0;
  it->flags |= I_META;
  if(tj_meta(&x->j, rel, &st))
    return xerrno(x, "journal");
  return 0;
}

/* Touch the cached parent folder, once. */
static int touch_parent(struct tar_x *x)
{
  if(x->pc_touched)
    return 0;
  if(touch(x, x->pc_fd, x->pc_canon))
    return -1;
  x->pc_touched = 1;
  return 0;
}

static void pc_drop(struct tar_x *x)
{
  if(x->pc_fd >= 0)
    close(x->pc_fd);
  x->pc_fd = -1;
  free(x->pc_rel);
  x->pc_rel = NULL;
  free(x->pc_canon);
  x->pc_canon = NULL;
}

/*
 * The entry at canonical path rel (lstat st) was moved away: the next
 * member opens its parent again if the cached one was below it, or if
 * it was a symlink (the cached member path may have gone through it).
 * The fd and canonical path stay valid for the current member.
 */
static void pc_forget(struct tar_x *x, const char *rel, const struct stat *st)
{
  size_t n = strlen(rel);

  if(x->pc_canon && (S_ISLNK(st->st_mode) ||
     (!strncmp(x->pc_canon, rel, n) &&
      (x->pc_canon[n] == '\0' || x->pc_canon[n] == '/')))) {
    free(x->pc_rel);
    x->pc_rel = NULL;
  }
}

/*
 * Move name (in folder pfd at prel; lstat st) into the journal.  Moving
 * a folder may put folders checked by walk_up inside the journal.
 */
static int move_old(struct tar_x *x, int pfd, const char *prel,
                    const char *name, const struct stat *st)
{
  if(tj_move(&x->j, pfd, prel, name))
    return xerrno(x, "journal");
  if(S_ISDIR(st->st_mode))
    x->gen++;
  return 0;
}

/* One folder of walk_up: refuse the journal, mark the rest; 1 stops. */
static int visit_ancestor(void *arg, const struct stat *st)
{
  struct tar_x *x = arg;
  struct tar_inode *it;

  if(tj_is_journal(&x->j, st))
    return xfail(x, "refused", "inside clayer's state or journal folder");
  it = inode(x, st, 1);
  if(!it)
    return xfail(x, "io", "out of memory");
  /* checked before, and no folder went into the journal since */
  if((it->flags & I_ANC) && it->gen == x->gen)
    return 1;
  it->flags |= I_ANC;
  it->gen = x->gen;
  return 0;
}

/*
 * Walk up from the new parent folder fd to R: refuse the journal, and
 * mark each folder as holding members (for opaque whiteouts).
 */
static int walk_up(struct tar_x *x, int fd)
{
  int r = tar_walk_up(fd, x->root_st.st_dev, x->root_st.st_ino,
                      visit_ancestor, x);

  if(r == -2)
    return xerrno(x, "stat");
  return r < 0 ? -1 : 0;
}

/*
 * Make the missing folders of prel one by one; return its fd, and its
 * canonical path in *canon.  parent is the canonical path of cur, the
 * one the journal records.
 */
static int make_parents(struct tar_x *x, const char *prel, char **canon)
{
  const char *p = prel, *end;
  char *prefix = NULL, *comp = NULL, *parent = NULL, *fcanon = NULL;
  struct stat st;
  int cur, fd = -1;

  cur = tar_openat2_canon(x->rootfd, "", O_PATH | O_DIRECTORY, &parent);
  for(; cur >= 0 && *p; p = *end ? end + 1 : end) {
    end = strchrnul(p, '/');
    free(prefix);
    free(comp);
    prefix = strndup(prel, (size_t)(end - prel));
    comp = strndup(p, (size_t)(end - p));
    if(!prefix || !comp) {
      xfail(x, "io", "out of memory");
      break;
    }
    fd = tar_openat2_canon(x->rootfd, prefix, O_PATH | O_DIRECTORY,
                           &fcanon);
    if(fd < 0 && errno == ENOENT &&
       !fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW)) {
      xfail(x, "refused", "%s is a symlink to nothing", prefix);
      break;
    }
    if(fd < 0 && errno == ENOENT) {
      if(fstat(cur, &st) || tj_protected(&x->j, &st, comp) ||
         walk_up(x, cur)) {
        xfail(x, "refused", "inside clayer's state or journal folder");
        break;
      }
      fcanon = tar_join(parent, comp);
      if(!fcanon) {
        xfail(x, "io", "out of memory");
        break;
      }
      if(touch(x, cur, parent) || tj_created(&x->j, fcanon)) {
        xerrno(x, "journal");
        break;
      }
      if(mkdirat(cur, comp, 0755) || fchmodat(cur, comp, 0755, 0)) {
        xerrno(x, prefix);
        break;
      }
      fd = openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if(fd >= 0 && mark(x, fd, NULL, I_CREATED))
        break;
    }
    if(fd < 0) {
      if(errno == ENOTDIR || errno == ELOOP)
        xfail(x, "refused", "%s is not a folder", prefix);
      else
        xerrno(x, prefix);
      break;
    }
    close(cur);
    cur = fd;
    fd = -1;
    free(parent);
    parent = fcanon;
    fcanon = NULL;
  }
  free(prefix);
  free(comp);
  free(fcanon);
  if(fd >= 0)
    close(fd);
  if(!parent && cur >= 0 && !x->code)
    xfail(x, "io", "out of memory");
  if(x->code && cur >= 0) {
    close(cur);
    cur = -1;
  }
  if(cur >= 0)
    *canon = parent;
  else
    free(parent);
  return cur;
}

/* Open (making it) the parent folder prel of a member; cached. */
static int open_parent(struct tar_x *x, const char *prel)
{
  char *canon = NULL;
  int fd;

  if(x->pc_rel && !strcmp(x->pc_rel, prel))
    return x->pc_fd;
  pc_drop(x);
  /* the canonical path, once per parent: what the journal records */
  fd = tar_openat2_canon(x->rootfd, prel, O_PATH | O_DIRECTORY, &canon);
  if(fd < 0 && (errno == ENOENT || errno == ENOTDIR))
    fd = make_parents(x, prel, &canon);
  else if(fd < 0)
    return xerrno(x, *prel ? prel : "/");
  if(fd < 0)
    return -1;
  x->pc_rel = strdup(prel);
  x->pc_canon = canon;
  if(!x->pc_rel) {
    close(fd);
    return xfail(x, "io", "out of memory");
  }
  x->pc_fd = fd;
  x->pc_touched = 0;
  if(fstat(fd, &x->pc_st))
    return xerrno(x, "stat");
  if(walk_up(x, fd))
    return -1;
  return fd;
}

/* The times of a member: atime when the archive has it, and mtime. */
static void entry_times(struct archive_entry *e, struct timespec *ts)
{
  ts[0].tv_sec = 0;
  ts[0].tv_nsec = UTIME_OMIT;
  ts[1] = ts[0];
  if(archive_entry_atime_is_set(e)) {
    ts[0].tv_sec = archive_entry_atime(e);
    ts[0].tv_nsec = archive_entry_atime_nsec(e);
  }
  if(archive_entry_mtime_is_set(e)) {
    ts[1].tv_sec = archive_entry_mtime(e);
    ts[1].tv_nsec = archive_entry_mtime_nsec(e);
  }
}

/* The permission bits to set: without setuid/setgid unless owners. */
static mode_t entry_perm(struct tar_x *x, struct archive_entry *e)
{
  mode_t perm = archive_entry_perm(e) & 07777;

  return x->owners ? perm : perm & ~(mode_t)06000;
}

/* Set the owner of fd (or of name in fd), or count why not. */
static void set_owner(struct tar_x *x, int fd, const char *name,
                      uid_t uid, gid_t gid, mode_t perm)
{
  int r;

  if(!x->owners) {
    if(uid != x->euid || gid != x->egid || (perm & 06000))
      x->dropped++;
    return;
  }
  if(name)
    r = fchownat(fd, name, uid, gid, AT_SYMLINK_NOFOLLOW);
  else
    r = fchown(fd, uid, gid);
  if(r && !x->chown_failed++)
    snprintf(x->first_chown, sizeof(x->first_chown), "%s: %u:%u: %s",
             x->member, (unsigned)uid, (unsigned)gid, strerror(errno));
}

/* Whether the run sets extended attribute name: user.* only without
   owners (a non-root run could set no other). */
static int xattr_wanted(struct tar_x *x, const char *name)
{
  return x->owners || !strncmp(name, "user.", 5);
}

/* Count an extended attribute not set (errno), for the summary. */
static void xattr_failed(struct tar_x *x, const char *name)
{
  if(!x->xattr_failed++)
    snprintf(x->first_xattr, sizeof(x->first_xattr), "%s: %s: %s",
             x->member, name, strerror(errno));
}

/* Set the extended attributes of the member on fd. */
static void set_xattrs(struct tar_x *x, int fd, struct archive_entry *e)
{
  const char *name;
  const void *value;
  size_t size;

  archive_entry_xattr_reset(e);
  while(archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
    if(!xattr_wanted(x, name))
      continue;
    if(fsetxattr(fd, name, value, size, 0))
      xattr_failed(x, name);
  }
}

/* Write the data of a regular file member to the new fd. */
static int write_data(struct tar_x *x, int fd, struct archive_entry *e)
{
  const void *buf;
  size_t size, done;
  la_int64_t off, end = 0;
  ssize_t n;
  int r;

  for(;;) {
    if(clayer_interrupted)
      return xfail(x, "interrupted", "interrupted");
    r = archive_read_data_block(x->a, &buf, &size, &off);
    if(r == ARCHIVE_EOF)
      break;
    if(r < ARCHIVE_WARN) {
      x->archive_failed = 1;
      return -1;
    }
    if(x->bytes + (long long)size > x->max_bytes)
      return xfail(x, "space", "over the bound of %lld bytes written",
                   x->max_bytes);
    for(done = 0; done < size; done += (size_t)n) {
      n = pwrite(fd, (const char *)buf + done, size - done,
                 off + (off_t)done);
      if(n < 0 && errno == EINTR)
        n = 0;
      else if(n < 0)
        return xerrno(x, "write");
    }
    x->bytes += (long long)size;
    if(size && off + (la_int64_t)size > end)
      end = off + (la_int64_t)size;
  }
  /* holes at the end of a sparse file */
  if(archive_entry_size_is_set(e) && end != archive_entry_size(e) &&
     ftruncate(fd, archive_entry_size(e)))
    return xerrno(x, "truncate");
  return 0;
}

/* Create a regular file member: new inode, data, owner, mode, times. */
static int make_file(struct tar_x *x, int pfd, const char *base,
                     struct archive_entry *e)
{
  struct timespec ts[2];
  struct stat st;
  mode_t perm = entry_perm(x, e);
  int fd, r = -1;

  fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
              O_CLOEXEC, 0600);
  if(fd < 0)
    return xerrno(x, "create");
  if(write_data(x, fd, e))
    goto out;
  set_owner(x, fd, NULL, archive_entry_uid(e), archive_entry_gid(e), perm);
  if(fchmod(fd, perm)) {
    xerrno(x, "chmod");
    goto out;
  }
  set_xattrs(x, fd, e);
  entry_times(e, ts);
  if(futimens(fd, ts) || fstat(fd, &st)) {
    xerrno(x, "utimens");
    goto out;
  }
  r = mark_st(x, &st, I_MINE);
out:
  close(fd);
  return r;
}

/*
 * Check a hardlink member's target: a regular file this archive
 * extracted, still there (the inode found at the target's path, resolved
 * inside R, is one this run made).  Opens its folder into *tfd; *tname
 * points into *tnorm (freed by the caller).
 */
static int link_target(struct tar_x *x, const char *target, char **tnorm,
                       int *tfd, const char **tname, struct stat *tst)
{
  struct tar_inode *it;
  char *slash;

  *tnorm = malloc(strlen(target) + 1);
  if(!*tnorm)
    return xfail(x, "io", "out of memory");
  if(tar_normalize(target, *tnorm, 0))
    return xfail(x, "refused", "hardlink to %s, outside the root", target);
  slash = strrchr(*tnorm, '/');
  if(slash)
    *slash = '\0';
  *tfd = tar_openat2(x->rootfd, slash ? *tnorm : "", O_PATH | O_DIRECTORY);
  if(slash)
    *slash = '/';
  *tname = slash ? slash + 1 : *tnorm;
  it = NULL;
  /* a file this run moved into the journal is its own no more */
  if(*tfd >= 0 && !fstatat(*tfd, *tname, tst, AT_SYMLINK_NOFOLLOW) &&
     S_ISREG(tst->st_mode) && !tj_inside(&x->j, *tfd))
    it = inode(x, tst, 0);
  if(!it || !(it->flags & I_MINE))
    return xfail(x, "refused", "hardlink to %s, which is not a file "
                 "extracted from this archive", target);
  return 0;
}

/* Create a symlink, device, FIFO or socket member. */
static int make_other(struct tar_x *x, int pfd, const char *base,
                      struct archive_entry *e, mode_t type)
{
  struct timespec ts[2];
  mode_t perm = entry_perm(x, e);

  if(type == AE_IFLNK) {
    const char *target = archive_entry_symlink(e);

    if(!target)
      return xfail(x, "format", "symlink without a target");
    if(symlinkat(target, pfd, base))
      return xerrno(x, "symlink");
  }
  else {
    if(mknodat(pfd, base, type | 0600, archive_entry_rdev(e)))
      return xerrno(x, "mknod");
  }
  set_owner(x, pfd, base, archive_entry_uid(e), archive_entry_gid(e), perm);
  if(type != AE_IFLNK && fchmodat(pfd, base, perm, 0))
    return xerrno(x, "chmod");
  entry_times(e, ts);
  if(utimensat(pfd, base, ts, AT_SYMLINK_NOFOLLOW))
    return xerrno(x, "utimens");
  return mark(x, pfd, base, I_MINE);
}

/* A member that is not a folder: replace whatever is at rel (prel and
   rel: canonical paths, as the journal records them). */
static int put_nondir(struct tar_x *x, int pfd, const char *prel,
                      const char *rel, const char *base,
                      struct archive_entry *e)
{
  const char *hard = archive_entry_hardlink(e), *tname = NULL;
  mode_t type = archive_entry_filetype(e);
  char *tnorm = NULL;
  struct stat st, tst;
  int tfd = -1, r = -1;

  if(hard && link_target(x, hard, &tnorm, &tfd, &tname, &tst))
    goto out;
  if(!fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW)) {
    if(hard && st.st_dev == tst.st_dev && st.st_ino == tst.st_ino) {
      r = 0;   /* a link to itself: already there */
      goto out;
    }
    if(touch_parent(x) || move_old(x, pfd, prel, base, &st))
      goto out;
    pc_forget(x, rel, &st);
  }
  else if(errno != ENOENT) {
    xerrno(x, "stat");
    goto out;
  }
  else if(touch_parent(x))
    goto out;
  if(tj_created(&x->j, rel)) {
    xerrno(x, "journal");
    goto out;
  }
  if(hard) {
    if(linkat(tfd, tname, pfd, base, 0)) {
      xerrno(x, "link");
      goto out;
    }
    r = 0;   /* the inode is already this archive's */
  }
  else if(type == AE_IFREG || type == 0)
    r = make_file(x, pfd, base, e);
  else
    r = make_other(x, pfd, base, e, type);
out:
  if(tfd >= 0)
    close(tfd);
  free(tnorm);
  return r;
}

/* Remember a folder member's metadata for the end. */
static int add_dir(struct tar_x *x, const char *rel, struct archive_entry *e)
{
  struct dir_meta *d;
  const char *p;

  if(x->ndirs == x->capdirs) {
    size_t cap = x->capdirs ? x->capdirs * 2 : 64;

    d = realloc(x->dirs, cap * sizeof(*d));
    if(!d)
      return xfail(x, "io", "out of memory");
    x->dirs = d;
    x->capdirs = cap;
  }
  d = &x->dirs[x->ndirs];
  d->rel = strdup(rel);
  if(!d->rel)
    return xfail(x, "io", "out of memory");
  d->mode = entry_perm(x, e);
  d->uid = archive_entry_uid(e);
  d->gid = archive_entry_gid(e);
  entry_times(e, d->ts);
  d->index = x->ndirs++;
  d->depth = 0;
  for(p = rel; *p; p++)
    d->depth += *p == '/';
  return 0;
}

/*
 * Set the extended attributes of a folder member now.  On an old folder
 * each name is journaled first (its value or its absence): its metadata
 * is journaled only in finish_dirs, and a rollback must take back what
 * the archive set.  A name whose old value cannot be read is not set (a
 * warning, as a name the folder refuses).  A folder this run made goes
 * away whole instead.
 */
static int dir_xattrs(struct tar_x *x, const char *rel,
                      struct archive_entry *e)
{
  struct stat st;
  const char *name;
  const void *value;
  size_t size;
  int fd, made, r;

  if(!archive_entry_xattr_count(e))
    return 0;
  fd = tar_openat2(x->rootfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  if(fd < 0)
    return 0;   /* an old symlink it followed: left as it is */
  if(fstat(fd, &st)) {
    close(fd);
    return xerrno(x, "stat");
  }
  made = inode(x, &st, 0) && (inode(x, &st, 0)->flags & I_CREATED);
  /* an access ACL (system.posix_acl_access) rewrites the mode bits too:
     journal the old folder's mode, owner and times first */
  if(!made && touch(x, fd, rel)) {
    close(fd);
    return -1;
  }
  archive_entry_xattr_reset(e);
  while(archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
    if(!xattr_wanted(x, name))
      continue;
    r = made ? 0 : tj_xattr(&x->j, fd, rel, name);
    if(r < 0) {
      xerrno(x, "journal");
      close(fd);
      return -1;
    }
    if(r > 0 || fsetxattr(fd, name, value, size, 0))
      xattr_failed(x, name);
  }
  close(fd);
  return 0;
}

/*
 * A folder member: keep an old folder, follow an old symlink to a folder
 * (unless this archive whiteout'ed it), replace anything else.  prel
 * and rel are canonical (journaled), arel is the member's path.
 */
static int put_dir(struct tar_x *x, int pfd, const char *prel,
                   const char *rel, const char *arel, const char *base,
                   struct archive_entry *e)
{
  struct tar_item *it;
  struct stat st;
  int fd, make = 0;

  if(fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW)) {
    if(errno != ENOENT)
      return xerrno(x, "stat");
    make = 1;
  }
  else if(S_ISDIR(st.st_mode)) {
    if(x->euid && (st.st_mode & 0700) != 0700) {
      /* an old read-only folder: writable until the end (B12) */
      fd = tar_openat2(x->rootfd, rel, O_PATH | O_DIRECTORY);
      if(fd < 0)
        return xerrno(x, "open");
      if(touch(x, fd, rel) ||
         fchmodat(pfd, base, (st.st_mode & 07777) | 0700, 0)) {
        close(fd);
        return x->code ? -1 : xerrno(x, "chmod");
      }
      close(fd);
    }
  }
  else {
    it = tar_set_get(&x->set, arel, 0);
    fd = -1;
    if(S_ISLNK(st.st_mode) && !(it && (it->flags & P_WHITEOUT)))
      fd = tar_openat2(x->rootfd, rel, O_PATH | O_DIRECTORY);
    if(fd >= 0)
      close(fd);   /* follow it, as /lib -> usr/lib */
    else {
      if(touch_parent(x) || move_old(x, pfd, prel, base, &st))
        return -1;
      pc_forget(x, rel, &st);
      make = 1;
    }
  }
  if(make) {
    if(touch_parent(x) || tj_created(&x->j, rel))
      return x->code ? -1 : xerrno(x, "journal");
    if(mkdirat(pfd, base, 0700))
      return xerrno(x, "mkdir");
    if(mark(x, pfd, base, I_CREATED))
      return -1;
  }
  if(mark(x, pfd, base, I_MINE))
    return -1;
  if(!make && x->j.nmade && !fstatat(pfd, base, &st, 0))
    tj_claim(&x->j, &st);
  if(dir_xattrs(x, rel, e))
    return -1;
  return add_dir(x, arel, e);
}

/* Move name (in folder fd at drel; lstat st) into the journal. */
static int remove_old(struct tar_x *x, int fd, const char *drel,
                      const char *name, const struct stat *st)
{
  char *rel = tar_join(drel, name);

  if(!rel)
    return xfail(x, "io", "out of memory");
  if(touch(x, fd, drel) || move_old(x, fd, drel, name, st)) {
    free(rel);
    return -1;
  }
  pc_forget(x, rel, st);
  free(rel);
  return 0;
}

/* The names in folder fd, NULL-terminated; NULL with errno. */
static char **dir_names(int fd)
{
  char **names = NULL, **n;
  size_t count = 0;
  struct dirent *de;
  int dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;

  if(!d) {
    if(dfd >= 0)
      close(dfd);
    return NULL;
  }
  names = calloc(1, sizeof(*names));
  while(names && (de = readdir(d))) {
    if(!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    n = realloc(names, (count + 2) * sizeof(*n));
    if(!n)
      break;
    names = n;
    names[count] = strdup(de->d_name);
    if(names[count])
      names[++count] = NULL;
  }
  closedir(d);
  return names;
}

/*
 * An opaque folder: move away every old entry below fd (at drel) that
 * is not a member of this archive, keeping the journal.
 */
static int opaque_dir(struct tar_x *x, int fd, const char *drel)
{
  struct tar_inode *it;
  struct stat dst, st;
  char **names, *crel;
  int cfd, r = 0;
  size_t i;

  if(fstat(fd, &dst))
    return xerrno(x, "stat");
  if(tj_is_journal(&x->j, &dst))
    return 0;
  names = dir_names(fd);
  if(!names)
    return xerrno(x, drel);
  for(i = 0; names[i] && !r; i++) {
    if(fstatat(fd, names[i], &st, AT_SYMLINK_NOFOLLOW))
      continue;
    it = inode(x, &st, 0);
    if(tj_protected(&x->j, &dst, names[i]) ||
       (it && (it->flags & (I_MINE | I_ANC)))) {
      if(!S_ISDIR(st.st_mode))
        continue;
      cfd = openat(fd, names[i], O_PATH | O_DIRECTORY | O_NOFOLLOW |
                   O_CLOEXEC);
      crel = tar_join(drel, names[i]);
      if(cfd >= 0 && crel)
        r = opaque_dir(x, cfd, crel);
      if(cfd >= 0)
        close(cfd);
      free(crel);
      continue;
    }
    r = remove_old(x, fd, drel, names[i], &st);
  }
  for(i = 0; names[i]; i++)
    free(names[i]);
  free(names);
  return r;
}

/* A whiteout member dir/.wh.NAME or dir/.wh..wh..opq. */
static int whiteout(struct tar_x *x, const char *prel, const char *base)
{
  const char *name = base + 4;
  struct tar_inode *in;
  struct tar_item *it;
  struct stat pst, st;
  char *rel, *canon = NULL;
  int pfd, r = 0;

  if(strcmp(base, ".wh..wh..opq") && (!*name || !strncmp(name, ".wh.", 4)))
    return 0;   /* a bare ".wh." or another marker: not a whiteout */
  pfd = tar_openat2_canon(x->rootfd, prel, O_PATH | O_DIRECTORY, &canon);
  if(pfd < 0)
    return errno == ENOENT || errno == ENOTDIR ? 0 : xerrno(x, "open");
  if(fstat(pfd, &pst) || tj_inside(&x->j, pfd)) {
    close(pfd);
    free(canon);
    return x->code ? -1 : xfail(x, "refused", "inside clayer's state or journal folder");
  }
  if(!strcmp(base, ".wh..wh..opq")) {
    r = opaque_dir(x, pfd, canon);
    close(pfd);
    free(canon);
    return r;
  }
  rel = tar_join(prel, name);
  it = rel ? tar_set_get(&x->set, rel, 1) : NULL;
  if(!it) {
    close(pfd);
    free(rel);
    free(canon);
    return xfail(x, "io", "out of memory");
  }
  it->flags |= P_WHITEOUT;
  if(tj_protected(&x->j, &pst, name))
    r = xfail(x, "refused", "would remove the journal folder");
  else if(!fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW)) {
    in = inode(x, &st, 0);
    if(!in || !(in->flags & (I_MINE | I_ANC)))   /* not this archive's */
      r = remove_old(x, pfd, canon, name, &st);
  }
  close(pfd);
  free(rel);
  free(canon);
  return r;
}

static int is_special(mode_t type)
{
  return type == AE_IFCHR || type == AE_IFBLK || type == AE_IFIFO ||
         type == AE_IFSOCK;
}

/* Extract one member. */
static int put_member(struct tar_x *x, struct archive_entry *e)
{
  const char *name = archive_entry_pathname(e), *base;
  mode_t type = archive_entry_filetype(e);
  char *rel, *prel, *slash, *crel = NULL;
  int pfd, r = -1;

  x->member = name ? name : "?";
  if(!name || !*name)
    return xfail(x, "refused", "member without a name");
  rel = malloc(strlen(name) + 1);
  prel = malloc(strlen(name) + 1);
  if(!rel || !prel) {
    xfail(x, "io", "out of memory");
    goto out;
  }
  if(tar_normalize(name, rel, 0)) {
    xfail(x, "refused", "member name climbs out of the root");
    goto out;
  }
  r = 0;
  if(!*rel)
    goto out;   /* the root itself: R's metadata is not the layer's */
  strcpy(prel, rel);
  slash = strrchr(prel, '/');
  base = slash ? rel + (slash - prel) + 1 : rel;
  if(slash)
    *slash = '\0';
  else
    prel[0] = '\0';
  if(!strncmp(base, ".wh.", 4)) {
    r = whiteout(x, prel, base);
    goto out;
  }
  r = -1;
  if(!archive_entry_hardlink(e) && is_special(type) && !x->allow_special) {
    xfail(x, "refused", "device, FIFO or socket refused (allow_special "
          "is off)");
    goto out;
  }
  pfd = open_parent(x, prel);
  if(pfd < 0)
    goto out;
  /* a folder member over an ancestor of the journal only updates its
     metadata; anything else there would replace the journal */
  if(tj_protected(&x->j, &x->pc_st, base) &&
     (archive_entry_hardlink(e) || type != AE_IFDIR ||
      tj_is_inside_parent(&x->j, &x->pc_st) ||
      !strncmp(base, ".clayer-journal.", 16))) {
    xfail(x, "refused", "would replace the journal folder");
    goto out;
  }
  /* the journal records canonical paths: the parent's, and base */
  crel = tar_join(x->pc_canon, base);
  if(!crel)
    xfail(x, "io", "out of memory");
  else if(!archive_entry_hardlink(e) && type == AE_IFDIR)
    r = put_dir(x, pfd, x->pc_canon, crel, rel, base, e);
  else
    r = put_nondir(x, pfd, x->pc_canon, crel, base, e);
  if(!r)
    x->files++;
  if(!r && x->want_names && type != AE_IFDIR)
    add_name(x, rel);
out:
  free(rel);
  free(prel);
  free(crel);
  return r;
}

static int dir_order(const void *pa, const void *pb)
{
  const struct dir_meta *a = pa, *b = pb;

  if(a->depth != b->depth)
    return a->depth > b->depth ? -1 : 1;
  return a->index < b->index ? -1 : a->index > b->index;
}

/* Set the owners, modes and times of folder members, deepest first. */
static int finish_dirs(struct tar_x *x)
{
  char *canon;
  size_t i;
  int fd;

  if(x->ndirs)
    qsort(x->dirs, x->ndirs, sizeof(*x->dirs), dir_order);
  for(i = 0; i < x->ndirs; i++) {
    struct dir_meta *d = &x->dirs[i];

    x->member = d->rel;
    fd = tar_openat2_canon(x->rootfd, d->rel, O_RDONLY | O_DIRECTORY |
                           O_NOFOLLOW, &canon);
    if(fd < 0 && (errno == ENOENT || errno == ENOTDIR || errno == ELOOP))
      continue;   /* replaced later, or an old symlink it followed */
    if(fd < 0)
      return xerrno(x, "open");
    if(touch(x, fd, canon)) {
      free(canon);
      close(fd);
      return -1;
    }
    free(canon);
    set_owner(x, fd, NULL, d->uid, d->gid, d->mode);
    if(fchmod(fd, d->mode) || futimens(fd, d->ts)) {
      close(fd);
      return xerrno(x, "chmod");
    }
    close(fd);
  }
  x->member = NULL;
  return 0;
}

/* The summary warnings. */
static void summary(struct tar_x *x)
{
  if(x->dropped)
    xwarn(x, "tar.extract: owners and setuid/setgid bits not restored "
          "(owners is off) for %ld members", x->dropped);
  if(x->chown_failed)
    xwarn(x, "tar.extract: could not set the owner of %ld members "
          "(first: %s)", x->chown_failed, x->first_chown);
  if(x->xattr_failed)
    xwarn(x, "tar.extract: could not set extended attributes of %ld "
          "members (first: %s)", x->xattr_failed, x->first_xattr);
}

/* Read every header and extract its member; 0 at the archive's end. */
static int run(struct tar_x *x, enum tar_format fmt)
{
  struct archive_entry *e;
  int r, first = 1;

  if(tar_in_open(x->in, fmt, &x->a)) {
    x->archive_failed = 1;
    return -1;
  }
  for(;;) {
    x->member = NULL;
    if(clayer_interrupted)
      return xfail(x, "interrupted", "interrupted");
    r = archive_read_next_header(x->a, &e);
    if(first && r >= ARCHIVE_WARN &&
       tar_in_check_filter(x->in, x->a, fmt)) {
      x->archive_failed = 1;
      return -1;
    }
    first = 0;
    x->in->started = r >= ARCHIVE_WARN;
    if(r == ARCHIVE_EOF)
      break;
    if(r < ARCHIVE_WARN) {
      x->archive_failed = 1;
      return -1;
    }
    /* names are restored as the bytes they are: no locale needed */
    if(r == ARCHIVE_WARN && archive_error_string(x->a) &&
       !strstr(archive_error_string(x->a), "can't be converted from"))
      xwarn(x, "tar.extract: %s: %s", archive_entry_pathname(e),
            archive_error_string(x->a));
    if(put_member(x, e))
      return -1;
  }
  if(tar_in_drain(x->in)) {
    x->archive_failed = 1;
    return -1;
  }
  return finish_dirs(x);
}

/* Free what the extraction holds. */
static void x_free(struct tar_x *x)
{
  size_t i;

  pc_drop(x);
  if(x->a)
    archive_read_free(x->a);
  x->a = NULL;
  tar_in_free(x->in);
  if(x->jopen)
    tj_close(&x->j);
  x->jopen = 0;
  if(x->rootfd >= 0)
    close(x->rootfd);
  x->rootfd = -1;
  tar_set_free(&x->set);
  tar_iset_free(&x->inodes);
  for(i = 0; i < x->ndirs; i++)
    free(x->dirs[i].rel);
  free(x->dirs);
  x->dirs = NULL;
  x->ndirs = 0;
  for(i = 0; i < x->nwarn; i++)
    free(x->warn[i]);
  free(x->warn);
  x->warn = NULL;
  x->nwarn = 0;
  for(i = 0; i < x->nnames; i++)
    free(x->names[i]);
  free(x->names);
  x->names = NULL;
  x->nnames = x->capnames = 0;
}

/* The default bound: free space of R's filesystem minus 1% of its size. */
static long long free_space(int fd)
{
  struct statvfs vfs;
  long long avail, size;

  if(fstatvfs(fd, &vfs))
    return -1;
  avail = (long long)vfs.f_bavail * (long long)vfs.f_frsize;
  size = (long long)vfs.f_blocks * (long long)vfs.f_frsize;
  avail -= size / 100;
  return avail > 0 ? avail : 0;
}

/* Open R and the journal, recovering a journal left by a killed run. */
static int x_open(struct tar_x *x, const char *root, const char *journal,
                  char *rootreal)
{
  char err[512];
  long n;
  int r;

  if(!realpath(root, rootreal))
    return xerrno(x, root);
  x->rootfd = open(rootreal, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if(x->rootfd < 0 || fstat(x->rootfd, &x->root_st))
    return xerrno(x, root);
  if(x->max_bytes < 0)
    x->max_bytes = free_space(x->rootfd);
  r = tj_open(&x->j, rootreal, x->rootfd, journal, err, sizeof(err));
  if(r == 1) {
    r = tj_replay(x->j.dir, &n, err, sizeof(err));
    if(r) {
      tj_close(&x->j);
      return xfail(x, r == -2 ? "busy" : "io", "%s", err);
    }
    xwarn(x, "tar.extract: rolled back an interrupted extraction "
          "(%ld paths put back)", n);
    tj_close(&x->j);
    r = tj_open(&x->j, rootreal, x->rootfd, journal, err, sizeof(err));
  }
  if(r) {
    tj_close(&x->j);
    return xfail(x, "io", "%s", r == 1 ? "journal in use" : err);
  }
  x->jopen = 1;
  return 0;
}

/* Push the result table of a finished extraction. */
static int push_result(lua_State *L, struct tar_x *x)
{
  size_t i;

  lua_createtable(L, 0, 5);
  lua_pushinteger(L, x->files);
  lua_setfield(L, -2, "files");
  lua_pushinteger(L, x->bytes);
  lua_setfield(L, -2, "bytes");
  lua_pushstring(L, x->in->sha);
  lua_setfield(L, -2, "sha256");
  lua_pushinteger(L, x->in->total);
  lua_setfield(L, -2, "size");
  lua_createtable(L, (int)x->nwarn, 0);
  for(i = 0; i < x->nwarn; i++) {
    lua_pushstring(L, x->warn[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "warnings");
  if(x->want_names) {
    lua_createtable(L, (int)x->nnames, 0);
    for(i = 0; i < x->nnames; i++) {
      lua_pushfstring(L, "/%s", x->names[i]);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "names");
  }
  return 1;
}

/*
 * tar.extract(opts): extract opts.source into opts.root safely, with a
 * rollback journal.  Returns {files, bytes, sha256, size, warnings} or
 * nil, err, code; on failure R is put back as it was.  Nothing is kept
 * from the options after the call.
 */
int clayer_tar_extract(lua_State *L)
{
  static const char *const known[] = {
    "root", "source", "format", "sha256", "size", "parts", "journal",
    "allow_special", "max_bytes", "progress", "owners", "names", NULL
  };
  char rootreal[PATH_MAX], err[512];
  const char *root, *journal;
  enum tar_format fmt;
  struct tar_in in;
  struct tar_x x;
  long n;

  tar_check_options(L, 1, known);
  root = clayer_optstring(L, 1, "root", NULL);
  if(!root)
    return luaL_error(L, "option 'root' is required");
  journal = clayer_optstring(L, 1, "journal", NULL);
  memset(&x, 0, sizeof(x));
  x.rootfd = x.pc_fd = -1;
  x.euid = geteuid();
  x.egid = getegid();
  x.allow_special = clayer_optboolean(L, 1, "allow_special", 0);
  x.owners = clayer_optboolean(L, 1, "owners", x.euid == 0);
  x.max_bytes = clayer_optinteger(L, 1, "max_bytes", -1);
  x.want_names = clayer_optboolean(L, 1, "names", 0);
  fmt = tar_in_parse(L, 1, &in, "tar.extract");
  x.in = &in;
  if(x_open(&x, root, journal, rootreal)) {
    x_free(&x);
    return clayer_fail(L, x.code, "%s", x.msg);
  }
  if(run(&x, fmt)) {
    if(x.archive_failed || in.code) {
      tar_in_fail(&in, x.a);
      x.code = in.code;
      snprintf(x.msg, sizeof(x.msg), "%s", in.msg);
    }
    pc_drop(&x);
    if(tj_rollback(&x.j, &n, err, sizeof(err))) {
      size_t len = strlen(x.msg);

      snprintf(x.msg + len, sizeof(x.msg) - len, "; rollback failed, "
               "journal kept: %s", err);
    }
    x_free(&x);
    return clayer_fail(L, x.code, "%s", x.msg);
  }
  pc_drop(&x);
  if(tj_commit(&x.j))
    xwarn(&x, "tar.extract: could not remove the journal %s: %s", x.j.dir,
          strerror(errno));
  summary(&x);
  push_result(L, &x);
  x_free(&x);
  return 1;
}

/*
 * tar.recover(journal): roll back what a killed tar.extract left.
 * Returns true, n (paths put back) or nil, err; true, 0 when there is
 * no journal.
 */
int clayer_tar_recover(lua_State *L)
{
  const char *dir = luaL_checkstring(L, 1);
  char err[512];
  long n = 0;
  int r;

  if(!tj_pending(dir)) {
    struct stat st;

    if(!stat(dir, &st) && S_ISDIR(st.st_mode) && rmdir(dir) &&
        errno != ENOTEMPTY)
      return clayer_errno(L, dir, errno);
    lua_pushboolean(L, 1);
    lua_pushinteger(L, 0);
    return 2;
  }
  r = tj_replay(dir, &n, err, sizeof(err));
  if(r)
    return clayer_fail(L, r == -2 ? "busy" : "io", "tar.recover: %s", err);
  lua_pushboolean(L, 1);
  lua_pushinteger(L, n);
  return 2;
}
