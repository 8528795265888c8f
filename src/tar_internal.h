/*
 * tar_internal.h: what the files of clayer.tar's reader share: the
 * compressed input (tar.c), the extractor (tar_extract.c) and the
 * rollback journal (tar_journal.c).
 */
#ifndef CLAYER_TAR_INTERNAL_H
#define CLAYER_TAR_INTERNAL_H

#include <sys/stat.h>
#include <sys/types.h>

#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>

#include "clayer.h"

/* One part of the compressed input: a file or a clayer_source. */
struct tar_part {
  const char *path;        /* file to read, or NULL */
  clayer_source *src;      /* pull stream, or NULL */
  char want_sha[65];       /* expected hex digest, or "" */
  long long want_size;     /* expected size, or -1 */
};

/* The compressed input: every part in order, hashed as it passes. */
struct tar_in {
  struct tar_part *parts;
  size_t nparts;           /* sources */
  size_t nwant;            /* entries of the `parts` option */
  size_t cur;              /* part being read */
  int fd;                  /* open file of the current part, or -1 */
  unsigned char *buf;
  EVP_MD_CTX *whole, *part;
  long long total, partsize;
  char want_sha[65];       /* whole stream, or "" */
  long long want_size;     /* whole stream, or -1 */
  int eof;                 /* every part was read and checked */
  int started;             /* a header was read */
  const char *what;        /* "tar.extract" or "tar.list", for messages */
  lua_State *L;
  int progress;            /* stack index of the options when they hold a
                              progress function, or 0 */
  const char *code;        /* failure found by the reader, or NULL */
  char msg[512];
  char sha[65];            /* digest of the whole stream once eof */
  struct tar_pipe *pipe;   /* zstd: reading, hashing and decompressing on
                              a thread of its own (tar.c), or NULL */
};

/* Ask for the archive's compression: zstd, gzip or either. */
enum tar_format { TAR_ZSTD = 1, TAR_GZIP = 2, TAR_AUTO = 3 };

/*
 * tar.c: the input.  tar_in_parse reads `source`, `format`, `sha256`,
 * `size`, `parts` and `progress` from the options at idx (raising on
 * misuse) and pushes one userdata that owns the part list; the strings
 * stay owned by the options table.  tar_in_open gives an archive reading
 * through it; tar_in_fail decides the code of a libarchive failure.
 */
enum tar_format tar_in_parse(lua_State *L, int idx, struct tar_in *in,
                             const char *what);
int tar_in_open(struct tar_in *in, enum tar_format fmt, struct archive **ap);
int tar_in_check_filter(struct tar_in *in, struct archive *a,
                        enum tar_format fmt);
void tar_in_fail(struct tar_in *in, struct archive *a);
int tar_in_drain(struct tar_in *in);
void tar_in_free(struct tar_in *in);
void tar_check_options(lua_State *L, int idx, const char *const *known);

/* A set of strings with flags: the member paths an archive whiteouts. */
struct tar_item {
  char *key;
  unsigned flags;
};

struct tar_set {
  struct tar_item *items;
  size_t cap, n;
  char **pool;             /* key storage: 256 KiB blocks, freed together */
  size_t npool, pool_used;
};

struct tar_item *tar_set_get(struct tar_set *s, const char *key, int add);
void tar_set_free(struct tar_set *s);

/*
 * A set of inodes with flags: everything an extraction made and the
 * folders it went through.  One 24-byte slot per inode and no key to
 * allocate, since a restore of many small files keeps one per file.
 */
struct tar_inode {
  dev_t dev;
  ino_t ino;
  unsigned flags;          /* 0: a free slot */
  unsigned gen;
};

struct tar_iset {
  struct tar_inode *items;
  size_t cap, n;
};

#define TAR_INODE_USED 0x80000000u   /* in flags of every item */

struct tar_inode *tar_iset_get(struct tar_iset *s, dev_t dev, ino_t ino,
                               int add);
void tar_iset_free(struct tar_iset *s);

/* The rollback journal (DESIGN §3). */
struct tar_journal {
  char *dir;               /* real absolute path of the journal folder */
  int dfd;                 /* the folder */
  int logfd;               /* its append-only log */
  int rootfd;              /* R */
  dev_t root_dev;
  ino_t root_ino;
  unsigned long seq;       /* names of the saved entries */
  dev_t dev;               /* the journal folder's identity */
  ino_t ino;
  struct tar_link {        /* the chain from R down to the journal */
    dev_t dev;
    ino_t ino;
    char *name;
  } *chain;
  size_t nchain;
  char **made;             /* ancestors of the journal created for it */
  size_t nmade;
  char *timed;             /* the deepest ancestor that was there */
  struct timespec times[2];
  char **fallback;         /* R-relative `.clayer-journal.<pid>` folders */
  struct stat *fallback_st;
  size_t nfallback;
  char *line;              /* log record buffer */
  size_t linecap;
};

int tj_open(struct tar_journal *j, const char *root, int rootfd,
            const char *path, char *err, size_t errlen);
int tj_created(struct tar_journal *j, const char *rel);
int tj_meta(struct tar_journal *j, const char *rel, const struct stat *st);
/* Journal the value (or absence) of extended attribute name of the old
   folder fd at rel, before it is set: 0, 1 when that value cannot be
   read (errno; do not set it), -1 when the journal fails (errno). */
int tj_xattr(struct tar_journal *j, int fd, const char *rel,
             const char *name);
int tj_move(struct tar_journal *j, int pfd, const char *prel,
            const char *name);
/*
 * Call visit(arg, st) for the folder fd and each folder above it, up to
 * the folder (rdev, rino) or /.  visit returns 0 to go on, anything else
 * to stop with that value.  Returns visit's last answer, or -2 when a
 * folder could not be stat'ed (errno).
 */
int tar_walk_up(int fd, dev_t rdev, ino_t rino,
                int (*visit)(void *arg, const struct stat *st), void *arg);

/* Whether parent is the journal folder itself. */
int tj_is_inside_parent(struct tar_journal *j, const struct stat *parent);
int tj_protected(struct tar_journal *j, const struct stat *parent,
                 const char *name);
int tj_is_journal(struct tar_journal *j, const struct stat *st);
int tj_inside(struct tar_journal *j, int fd);
void tj_claim(struct tar_journal *j, const struct stat *dir);
int tj_commit(struct tar_journal *j);
int tj_rollback(struct tar_journal *j, long *n, char *err, size_t errlen);
void tj_close(struct tar_journal *j);
/* Roll back the journal at dir: 0, -1 failed, -2 held by a live run. */
int tj_replay(const char *dir, long *n, char *err, size_t errlen);
int tj_pending(const char *dir);

/* tar_copy.c: copy folder name in sfd to dname in dfd, keeping modes,
   owners, times, extended attributes and inner hard links; 0 or -1. */
int tar_copy_tree_at(int sfd, const char *name, int dfd, const char *dname);

/* The value of extended attribute name (malloc'ed, size in *n), read
   from fd, or from path without following it when fd < 0; NULL with
   errno (ENODATA: no such name). */
void *tar_get_xattr(int fd, const char *path, const char *name,
                    ssize_t *n);

/* Path helpers shared by the extractor and the journal. */
/*
 * Normalize a member name into out (as large as name): components joined
 * by '/', without "." and empty ones, ".." applied; a leading '/' means
 * R.  A ".." above R: -1, or R itself when clamp.
 */
int tar_normalize(const char *name, char *out, int clamp);
int tar_openat2(int dirfd, const char *path, int flags);
/*
 * tar_resolve.c: what openat2(RESOLVE_IN_ROOT) gives, walked in
 * userspace; tar_openat2 uses it where openat2 is missing or blocked.
 * Lookups only (O_CREAT, O_TMPFILE: EINVAL); errors as openat2's.
 */
int tar_resolve_in_root(int dirfd, const char *path, int flags);
/*
 * tar_openat2, and the canonical path of what it opened into *canon
 * (malloc'ed): relative to dirfd, without symlinks, "." or "..", ""
 * for dirfd itself.  The journal records such paths: a path through a
 * symlink stops resolving once the symlink is moved away.
 */
int tar_openat2_canon(int dirfd, const char *path, int flags, char **canon);
int tar_rmtree_at(int dfd, const char *name);
/* parent + "/" + name in a new string (no slash after "" or after a
   trailing slash); NULL when out of memory. */
char *tar_join(const char *parent, const char *name);

/* tar_extract.c: tar.extract and tar.recover. */
int clayer_tar_extract(lua_State *L);
int clayer_tar_recover(lua_State *L);

#endif
