/*
 * tar_resolve.c: openat2(RESOLVE_IN_ROOT) done in userspace, for when
 * the kernel has no openat2 (before 5.6), a seccomp profile blocks it,
 * or a tool such as valgrind 3.19 does not know it.
 *
 * The path is walked one component at a time from the root with
 * openat(O_PATH | O_NOFOLLOW), so the kernel never follows a symlink
 * (nor a magic link: a /proc inside R is just folders and symlinks
 * inside R).  A symlink is read and its text spliced in front of what is
 * left: an absolute target starts again at the root.  ".." is never the
 * kernel's: the walk keeps the names of the folders it went through and
 * opens the parent again from the root by those names, so ".." cannot
 * climb out of R even from a folder someone renamed out of it, and ".."
 * at the root stays at the root.  As in the kernel, at most 40
 * symlinks are followed (ELOOP), a symlink that is not the last
 * component, or is followed by a slash, is always followed, and the last
 * one is followed unless the flags hold O_NOFOLLOW.
 *
 * Only lookups: O_CREAT and O_TMPFILE are refused (EINVAL), since the
 * extractor creates with *at() calls on the folder this gives.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/openat2.h>

#include "tar_internal.h"

#define MAX_LINKS 40          /* the kernel's MAXSYMLINKS */
#define GO_ON     (-2)        /* step: the walk goes on */

struct walk {
  int root;                   /* the caller's dirfd, never closed */
  int cur;                    /* folder reached: root or an fd we own */
  char *names;                /* folders below root, each NUL-ended */
  size_t nlen, ncap;
  char *rest;                 /* what is left to resolve (owned) */
  int links;                  /* symlinks followed so far */
  int canon;                  /* keep the final name in names too */
};

static void set_cur(struct walk *w, int fd)
{
  if(w->cur != w->root)
    close(w->cur);
  w->cur = fd;
}

/* Append name to the names of the folders went through. */
static int add_name(struct walk *w, const char *name)
{
  size_t n = strlen(name) + 1;

  if(w->nlen + n > w->ncap) {
    size_t cap = w->ncap ? w->ncap * 2 : 256;
    char *p;

    while(cap < w->nlen + n)
      cap *= 2;
    p = realloc(w->names, cap);
    if(!p) {
      errno = ENOMEM;
      return -1;
    }
    w->names = p;
    w->ncap = cap;
  }
  memcpy(w->names + w->nlen, name, n);
  w->nlen += n;
  return 0;
}

/* Step into the folder `name` of cur (already opened as fd). */
static int push(struct walk *w, const char *name, int fd)
{
  if(add_name(w, name)) {
    close(fd);
    return -1;
  }
  set_cur(w, fd);
  return 0;
}

/*
 * "..": drop the last folder and open its parent again from the root by
 * name.  Each of those names was a folder when we went through it; one
 * that is now a symlink or gone fails the lookup (ENOTDIR, ENOENT).
 */
static int pop(struct walk *w)
{
  size_t i = 0;

  if(!w->nlen)
    return 0;                 /* ".." of the root is the root */
  w->nlen--;                  /* the last name's NUL */
  while(w->nlen && w->names[w->nlen - 1])
    w->nlen--;
  set_cur(w, w->root);
  while(i < w->nlen) {
    const char *name = w->names + i;
    int fd = openat(w->cur, name,
                    O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);

    if(fd < 0)
      return -1;
    set_cur(w, fd);
    i += strlen(name) + 1;
  }
  return 0;
}

/*
 * The symlink fd (at the component that ended before `after`) is
 * followed: what is left becomes its text, then a slash and `after`
 * when the link was not the last component.
 */
static int follow_link(struct walk *w, int fd, const char *after, int last)
{
  char target[PATH_MAX];
  size_t tlen, alen = last ? 0 : strlen(after);
  ssize_t n;
  char *rest;

  if(++w->links > MAX_LINKS) {
    errno = ELOOP;
    return -1;
  }
  n = readlinkat(fd, "", target, sizeof(target));
  if(n < 0)
    return -1;
  if(n == 0 || (size_t)n == sizeof(target)) {
    errno = n ? ENAMETOOLONG : ENOENT;
    return -1;
  }
  tlen = (size_t)n;
  rest = malloc(tlen + alen + 2);
  if(!rest) {
    errno = ENOMEM;
    return -1;
  }
  memcpy(rest, target, tlen);
  if(!last) {
    rest[tlen++] = '/';
    memcpy(rest + tlen, after, alen);
  }
  rest[tlen + alen] = 0;
  free(w->rest);
  w->rest = rest;
  if(*rest == '/') {          /* absolute: R is "/" */
    w->nlen = 0;
    set_cur(w, w->root);
  }
  return 0;
}

/*
 * One component `name` of cur; `after` is what follows its slash (last:
 * no slash followed).  Returns GO_ON when the walk goes on (into a
 * folder, or into a symlink's text, in which case *p is reset), the
 * final fd when it ends here, or -1.
 */
static int step(struct walk *w, char *name, const char *after, int last,
                int flags, const char **p)
{
  struct stat st;
  int fd;

  if(last && (flags & O_NOFOLLOW))
    return openat(w->cur, name, flags | O_CLOEXEC);
  if(!last) {
    /* the common case in one call: a folder */
    fd = openat(w->cur, name, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
    if(fd >= 0)
      return push(w, name, fd) ? -1 : GO_ON;
    if(errno != ENOTDIR)
      return -1;
  }
  fd = openat(w->cur, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if(fd < 0)
    return -1;
  if(fstat(fd, &st)) {
    close(fd);
    return -1;
  }
  if(S_ISLNK(st.st_mode)) {
    int r = follow_link(w, fd, after, last);

    close(fd);
    *p = w->rest;
    return r ? -1 : GO_ON;
  }
  if(last && (flags & ~(O_DIRECTORY | O_CLOEXEC)) == O_PATH) {
    /* what the caller asked for, already open */
    if(!(flags & O_DIRECTORY) || S_ISDIR(st.st_mode))
      return fd;
    close(fd);
    errno = ENOTDIR;
    return -1;
  }
  if(last) {
    /* open it for real, still never through a symlink swapped in */
    close(fd);
    return openat(w->cur, name, flags | O_NOFOLLOW | O_CLOEXEC);
  }
  if(!S_ISDIR(st.st_mode)) {
    close(fd);
    errno = ENOTDIR;
    return -1;
  }
  return push(w, name, fd) ? -1 : GO_ON;
}

static int walk(struct walk *w, int flags)
{
  const char *p = w->rest;

  for(;;) {
    char name[NAME_MAX + 1];
    const char *end;
    size_t len;
    int last, r;

    while(*p == '/')
      p++;
    if(!*p)                   /* "", ".", "..", or a trailing slash */
      return openat(w->cur, ".", flags | O_CLOEXEC);
    end = strchrnul(p, '/');
    len = (size_t)(end - p);
    if(len > NAME_MAX) {
      errno = ENAMETOOLONG;
      return -1;
    }
    memcpy(name, p, len);
    name[len] = 0;
    last = !*end;
    p = last ? end : end + 1;
    if(!strcmp(name, "."))
      continue;
    if(!strcmp(name, "..")) {
      if(pop(w))
        return -1;
      continue;
    }
    r = step(w, name, p, last, flags, &p);
    if(r >= 0 && w->canon && add_name(w, name)) {
      close(r);
      return -1;
    }
    if(r != GO_ON)
      return r;
  }
}

/* The walk of tar_resolve_in_root; with canon, the real path reached
   (names joined by '/', "" for the root) into *canon. */
static int resolve(int dirfd, const char *path, int flags, char **canon)
{
  struct walk w;
  int fd, err;

  if((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
    errno = EINVAL;
    return -1;
  }
  if(!*path) {
    errno = ENOENT;
    return -1;
  }
  if(strlen(path) >= PATH_MAX) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memset(&w, 0, sizeof(w));
  w.root = w.cur = dirfd;
  w.canon = canon != NULL;
  w.rest = strdup(path);
  if(!w.rest) {
    errno = ENOMEM;
    return -1;
  }
  fd = walk(&w, flags);
  err = errno;
  if(fd >= 0 && canon) {
    size_t i;

    *canon = malloc(w.nlen + 1);
    if(!*canon) {
      close(fd);
      fd = -1;
      err = ENOMEM;
    }
    else {
      for(i = 0; i < w.nlen; i++)   /* "a\0b\0" -> "a/b" */
        (*canon)[i] = w.names[i] ? w.names[i] : '/';
      (*canon)[w.nlen ? w.nlen - 1 : 0] = '\0';
    }
  }
  set_cur(&w, w.root);
  free(w.names);
  free(w.rest);
  errno = err;
  return fd;
}

int tar_resolve_in_root(int dirfd, const char *path, int flags)
{
  return resolve(dirfd, path, flags, NULL);
}

/*
 * Whether this process can call openat2, asked once.  A call with a size
 * below the first struct open_how is refused by the kernel's openat2
 * before anything else (EINVAL); any other answer comes from a kernel
 * without it (ENOSYS), a seccomp filter (ENOSYS, EPERM, EACCES...) or a
 * tool that does not know it, and means the userspace walk instead.
 */
static int have_openat2(void)
{
  static int known;           /* 0: not asked, 1: yes, 2: no */
  int k = __atomic_load_n(&known, __ATOMIC_RELAXED);

  if(!k) {
    struct open_how how;
    int err = errno;

    memset(&how, 0, sizeof(how));
    k = (syscall(SYS_openat2, AT_FDCWD, "/", &how, 0) < 0 &&
         errno == EINVAL) ? 1 : 2;
    errno = err;
    __atomic_store_n(&known, k, __ATOMIC_RELAXED);
  }
  return k == 1;
}

int tar_openat2(int dirfd, const char *path, int flags)
{
  struct open_how how;
  long fd;

  if(!*path)
    path = ".";
  if(!have_openat2())
    return tar_resolve_in_root(dirfd, path, flags);
  memset(&how, 0, sizeof(how));
  how.flags = (unsigned long long)(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  do
    fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
  while(fd < 0 && errno == EAGAIN);
  return (int)fd;
}

int tar_normalize(const char *name, char *out, int clamp)
{
  const char *p = name, *end;
  size_t len = 0, n;

  for(; *p; p = *end ? end + 1 : end) {
    end = strchrnul(p, '/');
    n = (size_t)(end - p);
    if(n == 0 || (n == 1 && p[0] == '.'))
      continue;
    if(n == 2 && p[0] == '.' && p[1] == '.') {
      if(!len && !clamp)
        return -1;
      while(len && out[len - 1] != '/')
        len--;
      if(len)
        len--;
      continue;
    }
    if(len)
      out[len++] = '/';
    memcpy(out + len, p, n);
    len += n;
  }
  out[len] = '\0';
  return 0;
}

/* path normalized lexically, ".." of the root being the root: right
   only for a path without symlinks.  NULL with errno. */
static char *lexical(const char *path)
{
  char *out = malloc(strlen(path) + 1);

  if(!out) {
    errno = ENOMEM;
    return NULL;
  }
  tar_normalize(path, out, 1);
  return out;
}

int tar_openat2_canon(int dirfd, const char *path, int flags, char **canon)
{
  struct open_how how;
  long fd;

  *canon = NULL;
  if(!*path)
    path = ".";
  if(!have_openat2())
    return resolve(dirfd, path, flags, canon);
  /* the common case in one call: no symlink on the way (ELOOP: one) */
  memset(&how, 0, sizeof(how));
  how.flags = (unsigned long long)(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS;
  do
    fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
  while(fd < 0 && errno == EAGAIN);
  if(fd < 0 && errno == ELOOP)
    return resolve(dirfd, path, flags, canon);
  if(fd >= 0) {
    *canon = lexical(path);
    if(!*canon) {
      close((int)fd);
      errno = ENOMEM;
      return -1;
    }
  }
  return (int)fd;
}
