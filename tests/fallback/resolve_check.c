/*
 * resolve_check: src/tar_resolve.c against a table of lookups inside a
 * root R full of hostile symlinks, and, where this kernel has openat2,
 * the kernel's openat2(RESOLVE_IN_ROOT) against the same table, so the
 * table is openat2's behaviour and not only what the walk happens to do.
 * Next to R lies a folder `outside` with the same name as one inside R:
 * a walk that climbs out of R lands on the wrong inode and fails.
 * Prints one "ok"/"not ok" line per check and "resolve: N passed, N
 * failed"; exits 1 on a failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/openat2.h>

#include "tar_internal.h"

#define P   (O_PATH | O_DIRECTORY)
#define PN  (O_PATH | O_NOFOLLOW)
#define RD  (O_RDONLY | O_DIRECTORY)
#define RN  (O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
#define RF  O_RDONLY
#define RFN (O_RDONLY | O_NOFOLLOW)

struct lookup {
  const char *path;
  int flags;
  const char *want;     /* path below R of the inode reached (lstat), */
  int err;              /* or, when want is NULL, the errno */
};

static char long_name[NAME_MAX + 2];

static const struct lookup table[] = {
  { "", P, NULL, ENOENT },
  { ".", P, ".", 0 },
  { "/", P, ".", 0 },
  { "..", P, ".", 0 },
  { "../../..", RD, ".", 0 },
  { "a/b/c", P, "a/b/c", 0 },
  { "/a/b/c", RN, "a/b/c", 0 },
  { "a//b/./c/", P, "a/b/c", 0 },
  { "a/b/c/../..", P, "a", 0 },
  { "../outside", P, "outside", 0 },
  { "a/../../outside", RN, "outside", 0 },
  { "up", P, ".", 0 },
  { "up/outside", P, "outside", 0 },
  { "upout", RD, "outside", 0 },
  { "upout/../../outside", P, "outside", 0 },
  { "a/b/climb", P, "outside", 0 },
  { "a/b/climb/secret", RF, "outside/secret", 0 },
  { "a/b/back/b/c", P, "a/b/c", 0 },
  { "a/b/absup", P, "a", 0 },
  { "abs/c", P, "a/b/c", 0 },
  { "abs/../..", P, ".", 0 },
  { "etclink", P, "etc", 0 },
  { "etclink", RD, "etc", 0 },
  { "etclink", RN, NULL, ENOTDIR },
  { "etclink", PN, "etclink", 0 },
  { "etclink/passwd", RF, "etc/passwd", 0 },
  { "etclink/passwd", P, NULL, ENOTDIR },
  { "a/f", P, NULL, ENOTDIR },
  { "a/f", RF, "a/f", 0 },
  { "a/f/", RF, NULL, ENOTDIR },
  { "a/f/x", P, NULL, ENOTDIR },
  { "a/f/..", P, NULL, ENOTDIR },
  { "tofile", RF, "a/f", 0 },
  { "tofile", RFN, NULL, ELOOP },
  { "tofile", RN, NULL, ENOTDIR },
  { "tofile/", RF, NULL, ENOTDIR },
  { "todir", PN, "todir", 0 },
  { "todir/", PN, "a/b", 0 },
  { "todir/.", RN, "a/b", 0 },
  { "todir/..", P, "a", 0 },
  { "dangling", P, NULL, ENOENT },
  { "dangling", PN, "dangling", 0 },
  { "loop1", P, NULL, ELOOP },
  { "loop1/x", P, NULL, ELOOP },
  { "self", PN, "self", 0 },
  { "self", RD, NULL, ELOOP },
  { "l39", P, "a", 0 },            /* 40 links: the most followed */
  { "l39/b", P, "a/b", 0 },
  { "l40", P, NULL, ELOOP },       /* 41 */
  { "dotdot", P, ".", 0 },
  { "dotdot/a", RN, "a", 0 },
  { "slash", P, ".", 0 },
  { "slash/a/b", P, "a/b", 0 },
  { "trail", P, "a/b", 0 },
  { "trail", PN, "trail", 0 },
  { "missing", P, NULL, ENOENT },
  { "missing/..", P, NULL, ENOENT },
  { "a/b/c/missing/x", P, NULL, ENOENT },
  { long_name, P, NULL, ENAMETOOLONG },
};

static int passed, failed;
static int report = 1;        /* where the lines go */

static void check(int ok, const char *who, const struct lookup *l,
                  const char *why)
{
  const char *name = l->path == long_name ? "<256 x's>" : l->path;

  if(ok)
    passed++;
  else
    failed++;
  dprintf(report, "%s - %s: \"%s\" flags 0%o%s%s\n", ok ? "ok" : "not ok",
          who, name, l->flags, why ? ": " : "", why ? why : "");
}

static int kernel_openat2(int dirfd, const char *path, int flags)
{
  struct open_how how;
  long fd;

  memset(&how, 0, sizeof(how));
  how.flags = (unsigned long long)(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  do
    fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
  while(fd < 0 && errno == EAGAIN);
  return (int)fd;
}

/* Run one lookup and compare with what the table wants. */
static void one(const char *who, int (*open_fn)(int, const char *, int),
                int rootfd, const struct lookup *l)
{
  struct stat got, want;
  char why[200];
  int fd = open_fn(rootfd, l->path, l->flags);

  if(!l->want) {
    if(fd >= 0) {
      close(fd);
      check(0, who, l, "opened, wanted an error");
      return;
    }
    snprintf(why, sizeof(why), "errno %s, wanted %s", strerror(errno),
             strerror(l->err));
    check(errno == l->err, who, l, errno == l->err ? NULL : why);
    return;
  }
  if(fd < 0) {
    snprintf(why, sizeof(why), "%s, wanted %s", strerror(errno), l->want);
    check(0, who, l, why);
    return;
  }
  if(fstat(fd, &got) || fstatat(rootfd, l->want, &want, AT_SYMLINK_NOFOLLOW)) {
    close(fd);
    check(0, who, l, "stat failed");
    return;
  }
  close(fd);
  snprintf(why, sizeof(why), "reached another inode than %s", l->want);
  if(got.st_dev == want.st_dev && got.st_ino == want.st_ino)
    check(1, who, l, NULL);
  else
    check(0, who, l, why);
}

static int make_tree(const char *top)
{
  static const char *const links[][2] = {
    { "up", "../../.." }, { "upout", "../outside" }, { "abs", "/a/b" },
    { "etclink", "/etc" }, { "loop1", "loop2" }, { "loop2", "loop1" },
    { "self", "self" }, { "dangling", "nowhere" }, { "tofile", "a/f" },
    { "todir", "a/b" }, { "dotdot", ".." }, { "a/b/back", "../../a" },
    { "a/b/climb", "../../../../outside" }, { "a/b/absup", "/../../a" },
    { "slash", "/" }, { "trail", "a/b/" },
  };
  char cmd[PATH_MAX + 200], name[16], target[16];
  size_t i;

  snprintf(cmd, sizeof(cmd), "cd '%s' && mkdir -p outside root/a/b/c "
           "root/etc root/outside && echo no > outside/secret && "
           "echo yes > root/outside/secret && echo f > root/a/f && "
           "echo p > root/etc/passwd", top);
  if(system(cmd))
    return -1;
  snprintf(cmd, sizeof(cmd), "%s/root", top);
  if(chdir(cmd))
    return -1;
  for(i = 0; i < sizeof(links) / sizeof(links[0]); i++)
    if(symlink(links[i][1], links[i][0]))
      return -1;
  /* l00 -> a, l01 -> l00, ... l40 -> l39 */
  for(i = 0; i <= 40; i++) {
    snprintf(name, sizeof(name), "l%02zu", i);
    snprintf(target, sizeof(target), i ? "l%02zu" : "a", i - 1);
    if(symlink(target, name))
      return -1;
  }
  return 0;
}

/* The lowest free descriptor: a leak in the walk moves it. */
static int lowest_free(void)
{
  int fd = dup(0);

  if(fd >= 0)
    close(fd);
  return fd;
}

int main(void)
{
  char top[] = "/tmp/clayer-resolve.XXXXXX", cmd[PATH_MAX];
  struct open_how how;
  size_t i, n = sizeof(table) / sizeof(table[0]);
  int rootfd, kernel, before;

  memset(long_name, 'x', NAME_MAX + 1);
  if(!mkdtemp(top) || make_tree(top)) {
    perror("resolve_check: making the tree");
    return 1;
  }
  rootfd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if(rootfd < 0) {
    perror("resolve_check: root");
    return 1;
  }
  memset(&how, 0, sizeof(how));
  kernel = syscall(SYS_openat2, AT_FDCWD, "/", &how, 0) < 0 &&
           errno == EINVAL;
  if(!kernel)
    dprintf(report, "resolve: no openat2 here (%s): the walk alone is "
            "checked\n", strerror(errno));
  before = lowest_free();
  for(i = 0; i < n; i++) {
    one("walk", tar_resolve_in_root, rootfd, &table[i]);
    if(kernel)
      one("openat2", kernel_openat2, rootfd, &table[i]);
  }
  if(lowest_free() != before) {
    failed++;
    dprintf(report, "not ok - the walk leaks descriptors\n");
  }
  /* again with descriptors 0 and 1 free, so the walk's own (and the one
     it returns) get those numbers */
  report = dup(1);
  if(report < 0 || close(0) || close(1)) {
    perror("resolve_check: freeing 0 and 1");
    return 1;
  }
  for(i = 0; i < n; i++)
    one("walk, 0 and 1 free", tar_resolve_in_root, rootfd, &table[i]);
  if(dup2(report, 1) != 1 || open("/dev/null", O_RDONLY) != 0) {
    perror("resolve_check: restoring 0 and 1");
    return 1;
  }
  close(report);
  report = 1;
  close(rootfd);
  if(chdir("/") == 0) {
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
    if(system(cmd))
      fprintf(stderr, "resolve_check: could not remove %s\n", top);
  }
  dprintf(report, "resolve: %d passed, %d failed\n", passed, failed);
  return failed != 0;
}
