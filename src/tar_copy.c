/*
 * tar_copy.c: a copy of a folder tree that keeps what a rename would:
 * modes, owners, times, extended attributes and the hard links inside
 * it.  The journal uses it where a folder cannot be renamed into it
 * (overlayfs lower layers, EXDEV).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "tar_internal.h"

/* Copy what is left of in to out with read and write; bytes copied. */
static ssize_t copy_plain(int in, int out)
{
  char buf[65536];
  ssize_t total = 0, n;

  while((n = read(in, buf, sizeof(buf))) > 0) {
    char *p = buf;

    while(n > 0) {
      ssize_t w = write(out, p, (size_t)n);

      if(w < 0)
        return -1;
      p += w;
      n -= w;
      total += w;
    }
  }
  return n < 0 ? -1 : total;
}

/* An inode with more than one link, once copied: where its copy is. */
struct copied {
  dev_t dev;
  ino_t ino;
  char *path;              /* relative to the copy's top folder */
};

/* One copy_tree run: the copy's top folder and the linked inodes. */
struct copy_ctx {
  int topfd;               /* the copy's top folder, or -1 */
  struct copied *items;    /* open addressing on (dev, ino) */
  size_t cap, n;
  char *path;              /* the entry being copied, from the top */
  size_t plen, pcap;
};

/* The slot of (dev, ino): its entry, or the empty one to fill. */
static struct copied *copied_slot(struct copy_ctx *c, dev_t dev, ino_t ino)
{
  size_t k = ((size_t)ino * 0x9E3779B97F4A7C15ULL ^ (size_t)dev) &
             (c->cap - 1);

  while(c->items[k].path && (c->items[k].dev != dev ||
                             c->items[k].ino != ino))
    k = (k + 1) & (c->cap - 1);
  return &c->items[k];
}

/* Where the inode of st was copied, or NULL. */
static const char *copied_find(struct copy_ctx *c, const struct stat *st)
{
  return c->cap ? copied_slot(c, st->st_dev, st->st_ino)->path : NULL;
}

/* Remember that the inode of st was copied to c->path. */
static int copied_add(struct copy_ctx *c, const struct stat *st)
{
  struct copied *it;

  if((c->n + 1) * 4 > c->cap * 3) {   /* at most 3/4 full */
    struct copied *old = c->items;
    size_t i, oldcap = c->cap;

    c->cap = oldcap ? oldcap * 2 : 64;
    c->items = calloc(c->cap, sizeof(*c->items));
    if(!c->items) {
      c->items = old;
      c->cap = oldcap;
      return -1;
    }
    for(i = 0; i < oldcap; i++)
      if(old[i].path)
        *copied_slot(c, old[i].dev, old[i].ino) = old[i];
    free(old);
  }
  it = copied_slot(c, st->st_dev, st->st_ino);
  it->path = strdup(c->path);
  if(!it->path)
    return -1;
  it->dev = st->st_dev;
  it->ino = st->st_ino;
  c->n++;
  return 0;
}

/* Append name to c->path; return the length to cut it back to. */
static ssize_t path_push(struct copy_ctx *c, const char *name)
{
  size_t old = c->plen, n = strlen(name);

  if(c->plen + n + 2 > c->pcap) {
    char *p = realloc(c->path, (c->plen + n + 2) * 2);

    if(!p)
      return -1;
    c->path = p;
    c->pcap = (c->plen + n + 2) * 2;
  }
  if(old)
    c->path[c->plen++] = '/';
  memcpy(c->path + c->plen, name, n + 1);
  c->plen += n;
  return (ssize_t)old;
}

static void path_pop(struct copy_ctx *c, size_t old)
{
  c->plen = old;
  c->path[old] = '\0';
}

/* Set one extended attribute on fd out, or on path when out < 0. */
static int put_xattr(int out, const char *path, const char *name,
                     const void *v, size_t n)
{
  void *cur;
  ssize_t curn = 0;
  int save, same;

  if(!(out >= 0 ? fsetxattr(out, name, v, n, 0)
                : lsetxattr(path, name, v, n, 0)))
    return 0;
  /* refused but already there (a SELinux label the new entry got
     anyway) is a copy too; a name that needs a privilege the run lacks
     (EPERM) is dropped, as the owner is by fchown, and so is one the
     filesystem decides itself (EOPNOTSUPP: a context= mount option) */
  save = errno;
  cur = tar_get_xattr(out, path, name, &curn);
  same = cur && (size_t)curn == n && !memcmp(cur, v, n);
  free(cur);
  errno = save;
  return same || save == EPERM || save == EOPNOTSUPP ? 0 : -1;
}

/*
 * Copy the extended attributes of an entry, from fd in to fd out, or
 * (in < 0: a symlink or a device node, which cannot be opened safely)
 * from name in sfd to dname in dfd by a /proc/self/fd path, not
 * following the entry.  Without /proc those are left out.
 */
static int copy_xattrs(int sfd, const char *name, int in, int dfd,
                       const char *dname, int out)
{
  char spath[320], dpath[320], *list = NULL, *p;
  ssize_t n = 0;
  int r = 0;

  snprintf(spath, sizeof(spath), "/proc/self/fd/%d/%s", sfd, name);
  snprintf(dpath, sizeof(dpath), "/proc/self/fd/%d/%s", dfd, dname);
  for(;;) {   /* ERANGE: a name was added between the two calls */
    ssize_t size = in >= 0 ? flistxattr(in, NULL, 0)
                           : llistxattr(spath, NULL, 0);

    if(size <= 0) {
      free(list);
      return size < 0 && errno != ENOTSUP &&
             !(in < 0 && errno == ENOENT) ? -1 : 0;
    }
    p = realloc(list, (size_t)size);
    if(!p)
      break;
    list = p;
    n = in >= 0 ? flistxattr(in, list, (size_t)size)
                : llistxattr(spath, list, (size_t)size);
    if(n >= 0 || errno != ERANGE)
      break;
  }
  if(!list || n < 0)
    r = -1;
  for(p = list; r == 0 && p < list + n; p += strlen(p) + 1) {
    ssize_t vn = 0;
    void *v = tar_get_xattr(in, spath, p, &vn);

    if(!v && errno == ENODATA)
      continue;   /* removed meanwhile */
    if(!v || put_xattr(out, dpath, p, v, (size_t)vn))
      r = -1;
    free(v);
  }
  if(r) {
    int save = errno;

    free(list);
    errno = save;
    return -1;
  }
  free(list);
  return 0;
}

/* Copy the data of regular file fd in to fd out. */
static int copy_data(int in, int out, off_t left)
{
  while(left > 0) {
    ssize_t n = copy_file_range(in, NULL, out, NULL, (size_t)left, 0);

    if(n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                 errno == EOPNOTSUPP))
      n = copy_plain(in, out);   /* overlayfs across filesystems */
    if(n <= 0) {
      if(n == 0)
        errno = EIO;
      return -1;
    }
    left -= n;
  }
  return 0;
}

/*
 * The owner, extended attributes, mode and times of a copied folder or
 * file (fd out).  The extended attributes come after fchown, which
 * clears security.capability, after the folder's entries, which would
 * inherit a default ACL set earlier, and before fchmod, which could make
 * the copy read-only to a non-root owner setting user.* names.
 */
static int copy_meta(const struct stat *st, int sfd, const char *name,
                     int in, int out)
{
  struct timespec times[2];

  times[0] = st->st_atim;
  times[1] = st->st_mtim;
  if(fchown(out, st->st_uid, st->st_gid) && errno != EPERM)
    return -1;
  if(copy_xattrs(sfd, name, in, -1, "", out) ||
     fchmod(out, st->st_mode & 07777) || futimens(out, times))
    return -1;
  return 0;
}

static int copy_entry(struct copy_ctx *c, int sfd, const char *name,
                      int dfd, const char *dname);

/* Copy the folder name in sfd (lstat st) to the new dname in dfd. */
static int copy_dir(struct copy_ctx *c, const struct stat *st, int sfd,
                    const char *name, int dfd, const char *dname)
{
  struct dirent *de;
  int in, out, r = 0, save;
  DIR *d;

  if(mkdirat(dfd, dname, 0700))
    return -1;
  in = openat(sfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  out = openat(dfd, dname, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
               O_CLOEXEC);
  d = in >= 0 ? fdopendir(in) : NULL;
  if(d && out >= 0 && c->topfd < 0)
    c->topfd = fcntl(out, F_DUPFD_CLOEXEC, 0);
  if(!d || out < 0 || c->topfd < 0) {
    save = errno;
    if(d)
      closedir(d);
    else if(in >= 0)
      close(in);
    if(out >= 0)
      close(out);
    errno = save;
    return -1;
  }
  while(r == 0 && (de = readdir(d)) != NULL) {
    ssize_t old;

    if(!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    old = path_push(c, de->d_name);
    if(old < 0)
      r = -1;
    else {
      r = copy_entry(c, dirfd(d), de->d_name, out, de->d_name);
      path_pop(c, (size_t)old);
    }
  }
  if(r == 0)
    r = copy_meta(st, sfd, name, dirfd(d), out);
  save = errno;
  closedir(d);
  close(out);
  errno = save;
  return r;
}

/* Copy the regular file name in sfd (lstat st) to the new dname in dfd. */
static int copy_file(const struct stat *st, int sfd, const char *name,
                     int dfd, const char *dname)
{
  int in, out, r, save;

  in = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if(in < 0)
    return -1;
  out = openat(dfd, dname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
               O_CLOEXEC, 0600);
  if(out < 0) {
    save = errno;
    close(in);
    errno = save;
    return -1;
  }
  r = copy_data(in, out, st->st_size) ||
      copy_meta(st, sfd, name, in, out) ? -1 : 0;
  save = errno;
  close(in);
  close(out);
  errno = save;
  return r;
}

/* Copy a symlink, fifo or device node name in sfd to dname in dfd. */
static int copy_node(const struct stat *st, int sfd, const char *name,
                     int dfd, const char *dname)
{
  struct timespec times[2];

  times[0] = st->st_atim;
  times[1] = st->st_mtim;
  if(S_ISLNK(st->st_mode)) {
    char target[PATH_MAX + 1];
    ssize_t n = readlinkat(sfd, name, target, PATH_MAX);

    if(n < 0)
      return -1;
    target[n] = '\0';
    if(symlinkat(target, dfd, dname))
      return -1;
  }
  else if(mknodat(dfd, dname, st->st_mode, st->st_rdev))
    return -1;
  fchownat(dfd, dname, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW);
  if(copy_xattrs(sfd, name, -1, dfd, dname, -1) ||
     (!S_ISLNK(st->st_mode) &&   /* the umask, and bits chown cleared */
      fchmodat(dfd, dname, st->st_mode & 07777, 0)))
    return -1;
  return utimensat(dfd, dname, times, AT_SYMLINK_NOFOLLOW);
}

/* Copy one entry of the tree (c->path: where, from the copy's top). */
static int copy_entry(struct copy_ctx *c, int sfd, const char *name,
                      int dfd, const char *dname)
{
  struct stat st;
  const char *first;
  int r;

  if(fstatat(sfd, name, &st, AT_SYMLINK_NOFOLLOW))
    return -1;
  if(S_ISDIR(st.st_mode))
    return copy_dir(c, &st, sfd, name, dfd, dname);
  /* a second name of a copied inode: a link to the copy (or, when that
     fails, EMLINK or a path too long, a copy of its own) */
  first = st.st_nlink > 1 ? copied_find(c, &st) : NULL;
  if(first && !linkat(c->topfd, first, dfd, dname, 0))
    return 0;
  r = S_ISREG(st.st_mode) ? copy_file(&st, sfd, name, dfd, dname)
                          : copy_node(&st, sfd, name, dfd, dname);
  if(r == 0 && st.st_nlink > 1 && !first)
    r = copied_add(c, &st);
  return r;
}

/*
 * Copy the folder `name` in sfd to `dname` in dfd: folders, files, links
 * and nodes, with modes, owners, times and extended attributes, and hard
 * links inside it kept as links between the copies.  For overlayfs,
 * which refuses to rename a folder of a lower layer (EXDEV) unless
 * mounted with redirect_dir.  Returns 0 or -1 with errno set.
 */
int tar_copy_tree_at(int sfd, const char *name, int dfd,
                     const char *dname)
{
  struct copy_ctx c;
  size_t i;
  int r, save;

  memset(&c, 0, sizeof(c));
  c.topfd = -1;
  c.path = calloc(1, 1);
  r = c.path ? copy_entry(&c, sfd, name, dfd, dname) : -1;
  save = errno;
  if(c.topfd >= 0)
    close(c.topfd);
  for(i = 0; i < c.cap; i++)
    free(c.items[i].path);
  free(c.items);
  free(c.path);
  errno = save;
  return r;
}
