/*
 * no_openat2 [-e ENOSYS|EPERM] COMMAND [ARG...]: run COMMAND with
 * openat2 failing as on a kernel before 5.6 (ENOSYS, the default) or
 * under an older Docker seccomp profile (EPERM).  A seccomp filter does
 * it, so the COMMAND's children inherit it too; every other system call
 * goes through.  tests/run uses it to run the extractor's specs on the
 * userspace walk (src/tar_resolve.c).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#else
#error "no_openat2: add this machine's AUDIT_ARCH"
#endif

#ifndef SYS_openat2
#define SYS_openat2 437       /* the same number on every architecture */
#endif

static int install(unsigned err)
{
  struct sock_filter f[] = {
    /* another architecture's calls (none here) go through */
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (err & SECCOMP_RET_DATA)),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };

  /* root may filter without no_new_privs, which would stop a test from
     running a setuid program; anyone else needs it */
  if(!prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
    return 0;
  if(errno != EACCES || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
    return -1;
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

int main(int argc, char **argv)
{
  unsigned err = ENOSYS;
  int i = 1;

  if(argc > 2 && !strcmp(argv[1], "-e")) {
    if(!strcmp(argv[2], "EPERM"))
      err = EPERM;
    else if(strcmp(argv[2], "ENOSYS")) {
      fprintf(stderr, "no_openat2: -e takes ENOSYS or EPERM\n");
      return 2;
    }
    i = 3;
  }
  if(i >= argc) {
    fprintf(stderr, "usage: no_openat2 [-e ENOSYS|EPERM] COMMAND [ARG...]\n");
    return 2;
  }
  if(install(err)) {
    perror("no_openat2: seccomp filter");
    return 1;
  }
  execvp(argv[i], argv + i);
  fprintf(stderr, "no_openat2: %s: %s\n", argv[i], strerror(errno));
  return 127;
}
