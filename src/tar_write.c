/*
 * tar_write.c: tar.create, the archive writer of clayer.tar.
 *
 * libarchive formats a PAX tar with no compression filter and no block
 * padding; every byte it produces goes to the zstd stream writer below
 * (the zw_* functions), which compresses with libzstd on worker threads,
 * hashes the compressed bytes (whole stream and each part) and writes
 * them to part files named "x.tmp" that are renamed into place only when
 * the whole archive is done.  The zw_* functions touch neither Lua nor
 * libarchive, so the same writer can feed other sinks later.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>
#include <zstd.h>

#include "clayer.h"

#define TAR_WRITER "clayer.tar.writer"
#define READ_SIZE ((size_t)1 << 20)     /* bytes per read() of file data */
#define OUT_SIZE ((size_t)1 << 20)      /* compressed bytes per write() */
#define BLOCK_SIZE (1 << 20)            /* libarchive's output blocks */
#define PROGRESS_STEP ((uint64_t)64 << 20)
#define MAX_PARTS 1000                  /* .000 to .999 */
#define MSG_SIZE 1024
#define HOLE_STEP ((int64_t)1 << 30)    /* archive_write_data takes <2 GiB */

/* ------------------------------------------------------------------ */
/* The zstd stream writer: compress, hash, cut into parts, write.      */
/* ------------------------------------------------------------------ */

typedef struct {
  char *path;                   /* final name */
  char *tmp;                    /* path .. ".tmp", written first */
  uint64_t size;
  unsigned char sha[32];
  int state;                    /* 0 nothing, 1 tmp exists, 2 renamed */
} zw_part;

typedef struct {
  ZSTD_CCtx *cctx;
  unsigned char *out;           /* compressed bytes not yet emitted */
  size_t outpos;
  EVP_MD_CTX *all;              /* SHA-256 of the whole stream */
  EVP_MD_CTX *cur;              /* of the current part; NULL unsplit */
  char *output;
  uint64_t part_size;           /* 0: one file, output itself */
  uint64_t size;                /* compressed bytes so far */
  unsigned char sha[32];
  zw_part *parts;
  int nparts, capparts;
  int fd;                       /* the open part, or -1 */
  char msg[MSG_SIZE];           /* the first failure */
  int err;                      /* its errno, or 0 */
} zw;

static int zw_fail(zw *z, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int zw_fail(zw *z, int err, const char *fmt, ...)
{
  va_list ap;

  if(!z->msg[0]) {
    va_start(ap, fmt);
    vsnprintf(z->msg, sizeof(z->msg), fmt, ap);
    va_end(ap);
    z->err = err;
  }
  return -1;
}

static int zw_open_part(zw *z);

static int zw_zstd(zw *z, size_t r)
{
  if(!ZSTD_isError(r))
    return 0;
  return zw_fail(z, 0, "zstd: %s", ZSTD_getErrorName(r));
}

/*
 * Set up the compressor and open the first part (so that an unwritable
 * output fails at once); later parts open when their first byte comes.
 */
static int zw_init(zw *z, const char *output, uint64_t part_size,
                   int level, int threads)
{
  memset(z, 0, sizeof(*z));
  z->fd = -1;
  z->part_size = part_size;
  z->output = strdup(output);
  z->cctx = ZSTD_createCCtx();
  z->out = malloc(OUT_SIZE);
  z->all = EVP_MD_CTX_new();
  if(part_size)
    z->cur = EVP_MD_CTX_new();
  if(!z->output || !z->cctx || !z->out || !z->all || (part_size && !z->cur))
    return zw_fail(z, ENOMEM, "tar.create: %s", strerror(ENOMEM));
  if(!EVP_DigestInit_ex(z->all, EVP_sha256(), NULL))
    return zw_fail(z, 0, "tar.create: SHA-256 unavailable");
  /* The window stays the level's default: any decoder's limits take it. */
  if(zw_zstd(z, ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_compressionLevel,
                                       level)) ||
     zw_zstd(z, ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_checksumFlag, 1)) ||
     zw_zstd(z, ZSTD_CCtx_setParameter(z->cctx, ZSTD_c_nbWorkers, threads)))
    return -1;
  return zw_open_part(z);
}

static char *zw_concat(const char *a, const char *b)
{
  size_t na = strlen(a), nb = strlen(b);
  char *s = malloc(na + nb + 1);

  if(s) {
    memcpy(s, a, na);
    memcpy(s + na, b, nb + 1);
  }
  return s;
}

static int zw_open_part(zw *z)
{
  zw_part *p;
  char suffix[16];

  if(z->part_size && z->nparts >= MAX_PARTS)
    return zw_fail(z, EFBIG, "%s: more than %d parts; raise part_size",
                   z->output, MAX_PARTS);
  if(z->nparts == z->capparts) {
    int cap = z->capparts ? 2 * z->capparts : 8;
    zw_part *np = realloc(z->parts, cap * sizeof(*np));
    if(!np)
      return zw_fail(z, ENOMEM, "tar.create: %s", strerror(ENOMEM));
    z->parts = np;
    z->capparts = cap;
  }
  p = &z->parts[z->nparts++];
  memset(p, 0, sizeof(*p));
  if(z->part_size)
    snprintf(suffix, sizeof(suffix), ".%03d", z->nparts - 1);
  else
    suffix[0] = '\0';
  p->path = zw_concat(z->output, suffix);
  p->tmp = p->path ? zw_concat(p->path, ".tmp") : NULL;
  if(!p->tmp)
    return zw_fail(z, ENOMEM, "tar.create: %s", strerror(ENOMEM));
  z->fd = open(p->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if(z->fd < 0)
    return zw_fail(z, errno, "%s: %s", p->tmp, strerror(errno));
  p->state = 1;
  if(z->cur && !EVP_DigestInit_ex(z->cur, EVP_sha256(), NULL))
    return zw_fail(z, 0, "tar.create: SHA-256 unavailable");
  return 0;
}

static int zw_close_part(zw *z)
{
  zw_part *p = &z->parts[z->nparts - 1];
  int fd = z->fd;

  z->fd = -1;
  if(z->cur && !EVP_DigestFinal_ex(z->cur, p->sha, NULL))
    return zw_fail(z, 0, "tar.create: SHA-256 failed");
  if(close(fd))
    return zw_fail(z, errno, "%s: %s", p->tmp, strerror(errno));
  return 0;
}

static int zw_write_all(zw *z, const unsigned char *buf, size_t n)
{
  while(n > 0) {
    ssize_t w = write(z->fd, buf, n);
    if(w < 0) {
      if(errno == EINTR)
        continue;
      return zw_fail(z, errno, "%s: %s", z->parts[z->nparts - 1].tmp,
                     strerror(errno));
    }
    buf += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Hash compressed bytes and write them, cutting parts at exact sizes. */
static int zw_emit(zw *z, const unsigned char *buf, size_t n)
{
  if(n && !EVP_DigestUpdate(z->all, buf, n))
    return zw_fail(z, 0, "tar.create: SHA-256 failed");
  while(n > 0) {
    zw_part *p;
    size_t chunk = n;

    if(z->fd < 0 && zw_open_part(z))
      return -1;
    p = &z->parts[z->nparts - 1];
    if(z->part_size && chunk > z->part_size - p->size)
      chunk = (size_t)(z->part_size - p->size);
    if(zw_write_all(z, buf, chunk))
      return -1;
    if(z->cur && !EVP_DigestUpdate(z->cur, buf, chunk))
      return zw_fail(z, 0, "tar.create: SHA-256 failed");
    p->size += chunk;
    z->size += chunk;
    buf += chunk;
    n -= chunk;
    if(z->part_size && p->size == z->part_size && zw_close_part(z))
      return -1;
  }
  return 0;
}

static int zw_flush(zw *z)
{
  size_t n = z->outpos;

  z->outpos = 0;
  return zw_emit(z, z->out, n);
}

/* Compress n bytes of input. */
static int zw_write(zw *z, const void *buf, size_t n)
{
  ZSTD_inBuffer in = {buf, n, 0};

  if(z->msg[0])
    return -1;
  while(in.pos < in.size) {
    ZSTD_outBuffer out = {z->out, OUT_SIZE, z->outpos};
    size_t r = ZSTD_compressStream2(z->cctx, &out, &in, ZSTD_e_continue);

    z->outpos = out.pos;
    if(zw_zstd(z, r))
      return -1;
    if(z->outpos == OUT_SIZE && zw_flush(z))
      return -1;
  }
  return 0;
}

/* End the frame, close the last part and rename every part into place. */
static int zw_finish(zw *z)
{
  int i;

  if(z->msg[0])
    return -1;
  for(;;) {
    ZSTD_inBuffer in = {NULL, 0, 0};
    ZSTD_outBuffer out = {z->out, OUT_SIZE, z->outpos};
    size_t r = ZSTD_compressStream2(z->cctx, &out, &in, ZSTD_e_end);

    z->outpos = out.pos;
    if(zw_zstd(z, r))
      return -1;
    if(r == 0)
      break;
    if(zw_flush(z))
      return -1;
  }
  if(zw_flush(z))
    return -1;
  if(z->fd >= 0 && zw_close_part(z))
    return -1;
  if(!EVP_DigestFinal_ex(z->all, z->sha, NULL))
    return zw_fail(z, 0, "tar.create: SHA-256 failed");
  if(!z->part_size && z->nparts == 1)
    memcpy(z->parts[0].sha, z->sha, sizeof(z->sha));
  for(i = 0; i < z->nparts; i++) {
    zw_part *p = &z->parts[i];
    if(rename(p->tmp, p->path))
      return zw_fail(z, errno, "%s: %s", p->path, strerror(errno));
    p->state = 2;
  }
  return 0;
}

/* Remove every file written so far (temporary or renamed). */
static void zw_abort(zw *z)
{
  int i;

  if(z->fd >= 0) {
    close(z->fd);
    z->fd = -1;
  }
  for(i = 0; i < z->nparts; i++) {
    zw_part *p = &z->parts[i];
    if(p->state == 1)
      unlink(p->tmp);
    else if(p->state == 2)
      unlink(p->path);
    p->state = 0;
  }
}

/* Free memory and worker threads; the files stay as they are. */
static void zw_free(zw *z)
{
  int i;

  if(z->fd >= 0) {
    close(z->fd);
    z->fd = -1;
  }
  ZSTD_freeCCtx(z->cctx);
  z->cctx = NULL;
  EVP_MD_CTX_free(z->all);
  EVP_MD_CTX_free(z->cur);
  z->all = z->cur = NULL;
  for(i = 0; i < z->nparts; i++) {
    free(z->parts[i].path);
    free(z->parts[i].tmp);
  }
  free(z->parts);
  free(z->out);
  free(z->output);
  z->parts = NULL;
  z->out = NULL;
  z->output = NULL;
  z->nparts = z->capparts = 0;
}

/* ------------------------------------------------------------------ */
/* Hardlink detection: (dev, ino) of files written so far -> name.     */
/* ------------------------------------------------------------------ */

typedef struct {
  dev_t dev;
  ino_t ino;
  char *name;                   /* NULL: empty slot */
} link_slot;

typedef struct {
  link_slot *slots;
  size_t cap, n;                /* cap is a power of two */
} link_table;

static size_t link_hash(dev_t dev, ino_t ino, size_t cap)
{
  uint64_t h = (uint64_t)ino * 0x9E3779B97F4A7C15ULL ^ (uint64_t)dev;

  return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

static link_slot *link_find(link_table *t, dev_t dev, ino_t ino)
{
  size_t i;

  if(!t->cap)
    return NULL;
  i = link_hash(dev, ino, t->cap);
  while(t->slots[i].name) {
    if(t->slots[i].dev == dev && t->slots[i].ino == ino)
      return &t->slots[i];
    i = (i + 1) & (t->cap - 1);
  }
  return &t->slots[i];
}

static int link_grow(link_table *t)
{
  link_table n;
  size_t i;

  n.cap = t->cap ? 2 * t->cap : 64;
  n.n = t->n;
  n.slots = calloc(n.cap, sizeof(*n.slots));
  if(!n.slots)
    return -1;
  for(i = 0; i < t->cap; i++) {
    if(t->slots[i].name)
      *link_find(&n, t->slots[i].dev, t->slots[i].ino) = t->slots[i];
  }
  free(t->slots);
  *t = n;
  return 0;
}

/* Remember name for (dev, ino); 0, or -1 when out of memory. */
static int link_add(link_table *t, dev_t dev, ino_t ino, const char *name)
{
  link_slot *s;

  if(2 * (t->n + 1) > t->cap && link_grow(t))
    return -1;
  s = link_find(t, dev, ino);
  s->name = strdup(name);
  if(!s->name)
    return -1;
  s->dev = dev;
  s->ino = ino;
  t->n++;
  return 0;
}

static void link_free(link_table *t)
{
  size_t i;

  for(i = 0; i < t->cap; i++)
    free(t->slots[i].name);
  free(t->slots);
  t->slots = NULL;
  t->cap = t->n = 0;
}

/* ------------------------------------------------------------------ */
/* The archive writer: one member per listed entry.                    */
/* ------------------------------------------------------------------ */

enum { KIND_PATH, KIND_WHITEOUT, KIND_OPAQUE };

typedef struct {
  char *s;
  size_t cap;
} strbuf;

typedef struct {
  int64_t off, len;
} region;

typedef struct {
  zw z;
  struct archive *a;
  struct archive_entry *e;
  link_table links;
  unsigned char *buf;           /* READ_SIZE bytes of file data */
  strbuf disk, name, lnk, xlist, xval;
  region *map;
  size_t nmap, capmap;
  int allow_special;
  int open;                     /* z was set up: zw_free needed */
  int committed;                /* the output is final: keep it */
  int in_data;                  /* between a file's header and its end */
  int discard;                  /* failed: drop what libarchive writes */
  uint64_t files, bytes, next_progress;
  lua_State *L;
  int progress;                 /* stack index of the callback, or 0 */
  int lua_error;                /* the callback raised: error on top */
  const char *code;             /* failure code when not an errno */
} writer;

static int wfail(writer *w, const char *code, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int wfail(writer *w, const char *code, int err, const char *fmt, ...)
{
  va_list ap;

  if(!w->z.msg[0]) {
    va_start(ap, fmt);
    vsnprintf(w->z.msg, sizeof(w->z.msg), fmt, ap);
    va_end(ap);
    w->z.err = err;
    w->code = code;
  }
  return -1;
}

static int wfail_errno(writer *w, const char *what, int err)
{
  return wfail(w, NULL, err, "%s: %s", what, strerror(err));
}

static int wfail_archive(writer *w, const char *name)
{
  const char *why = archive_error_string(w->a);

  return wfail(w, NULL, archive_errno(w->a) > 0 ? archive_errno(w->a) : 0,
               "tar.create: %s: %s", name, why ? why : "archive error");
}

static int sb_reserve(writer *w, strbuf *b, size_t n)
{
  char *s;
  size_t cap;

  if(n <= b->cap)
    return 0;
  cap = b->cap ? b->cap : 256;
  while(cap < n)
    cap *= 2;
  s = realloc(b->s, cap);
  if(!s)
    return wfail_errno(w, "tar.create", ENOMEM);
  b->s = s;
  b->cap = cap;
  return 0;
}

/* libarchive's write callback: everything goes into the zstd stream. */
static la_ssize_t archive_out(struct archive *a, void *ud, const void *buf,
                              size_t n)
{
  writer *w = ud;

  if(w->discard)
    return (la_ssize_t)n;
  if(zw_write(&w->z, buf, n)) {
    archive_set_error(a, w->z.err ? w->z.err : EIO, "%s", w->z.msg);
    return -1;
  }
  return (la_ssize_t)n;
}

/* Call progress(bytes) when a step was crossed (or at the end). */
static int report(writer *w, int force)
{
  lua_State *L = w->L;

  if(!w->progress || (!force && w->bytes < w->next_progress))
    return 0;
  w->next_progress = w->bytes + PROGRESS_STEP;
  lua_pushvalue(L, w->progress);
  lua_pushinteger(L, (lua_Integer)w->bytes);
  if(lua_pcall(L, 1, 0, 0) != LUA_OK) {
    w->lua_error = 1;
    return wfail(w, NULL, 0, "tar.create: progress callback failed");
  }
  return 0;
}

static int check_interrupt(writer *w)
{
  if(clayer_interrupted)
    return wfail(w, "interrupted", 0, "tar.create: interrupted");
  return 0;
}

/*
 * The member name of a logical path: no leading or trailing '/', with
 * ".wh." or "/.wh..wh..opq" for whiteouts and opaque markers.
 */
static int member_name(writer *w, const char *path, int kind)
{
  const char *p = path + strspn(path, "/");
  size_t len = strlen(p), dir;
  const char *base;

  while(len > 0 && p[len - 1] == '/')
    len--;
  if(sb_reserve(w, &w->name, len + 32))
    return -1;
  if(kind == KIND_PATH) {
    if(len == 0)
      strcpy(w->name.s, ".");
    else {
      memcpy(w->name.s, p, len);
      w->name.s[len] = '\0';
    }
  }
  else if(kind == KIND_OPAQUE) {
    memcpy(w->name.s, p, len);
    strcpy(w->name.s + len, len ? "/.wh..wh..opq" : ".wh..wh..opq");
  }
  else {
    base = memrchr(p, '/', len);
    dir = base ? (size_t)(base - p) + 1 : 0;
    memcpy(w->name.s, p, dir);
    memcpy(w->name.s + dir, ".wh.", 4);
    memcpy(w->name.s + dir + 4, p + dir, len - dir);
    w->name.s[len + 4] = '\0';
  }
  return 0;
}

static int put_header(writer *w)
{
  int r = archive_write_header(w->a, w->e);

  /* WARN is a name stored as raw bytes (hdrcharset=BINARY): fine. */
  if(r < ARCHIVE_WARN)
    return wfail_archive(w, w->name.s);
  return 0;
}

static int finish_member(writer *w)
{
  if(archive_write_finish_entry(w->a) < ARCHIVE_WARN)
    return wfail_archive(w, w->name.s);
  w->files++;
  return 0;
}

/* An empty regular member owned by root, mode 0644, mtime now. */
static int write_marker(writer *w)
{
  struct timespec now;

  clock_gettime(CLOCK_REALTIME, &now);
  archive_entry_clear(w->e);
  archive_entry_copy_pathname(w->e, w->name.s);
  archive_entry_set_mode(w->e, AE_IFREG | 0644);
  archive_entry_set_uid(w->e, 0);
  archive_entry_set_gid(w->e, 0);
  archive_entry_set_size(w->e, 0);
  archive_entry_set_mtime(w->e, now.tv_sec, 0);
  if(put_header(w))
    return -1;
  return finish_member(w);
}

static int wanted_xattr(const char *name)
{
  return !strncmp(name, "user.", 5) || !strncmp(name, "security.", 9) ||
         !strncmp(name, "trusted.", 8);
}

/* Add the user, security and trusted xattrs of fd (or disk path). */
static int add_xattrs(writer *w, int fd, const char *disk)
{
  ssize_t n, v;
  char *name;
  int tries = 0;

  for(;;) {
    n = fd >= 0 ? flistxattr(fd, NULL, 0) : llistxattr(disk, NULL, 0);
    if(n < 0 && (errno == ENOTSUP || errno == ENOSYS))
      return 0;
    if(n < 0)
      return wfail_errno(w, disk, errno);
    if(n == 0)
      return 0;
    if(sb_reserve(w, &w->xlist, (size_t)n + 1))
      return -1;
    n = fd >= 0 ? flistxattr(fd, w->xlist.s, w->xlist.cap)
                : llistxattr(disk, w->xlist.s, w->xlist.cap);
    if(n >= 0)
      break;
    if(errno != ERANGE || ++tries > 5)
      return wfail_errno(w, disk, errno);
  }
  for(name = w->xlist.s; name < w->xlist.s + n; name += strlen(name) + 1) {
    if(!wanted_xattr(name))
      continue;
    for(tries = 0;; tries++) {
      v = fd >= 0 ? fgetxattr(fd, name, NULL, 0)
                  : lgetxattr(disk, name, NULL, 0);
      if(v >= 0 && sb_reserve(w, &w->xval, (size_t)v + 1))
        return -1;
      if(v > 0)
        v = fd >= 0 ? fgetxattr(fd, name, w->xval.s, w->xval.cap)
                    : lgetxattr(disk, name, w->xval.s, w->xval.cap);
      if(v >= 0 || errno != ERANGE || tries > 5)
        break;
    }
    if(v < 0 && errno == ENODATA)
      continue;                 /* removed meanwhile */
    if(v < 0)
      return wfail(w, NULL, errno, "%s: xattr %s: %s", disk, name,
                   strerror(errno));
    archive_entry_xattr_add_entry(w->e, name, w->xval.s, (size_t)v);
  }
  return 0;
}

static int map_add(writer *w, int64_t off, int64_t len)
{
  if(w->nmap == w->capmap) {
    size_t cap = w->capmap ? 2 * w->capmap : 16;
    region *m = realloc(w->map, cap * sizeof(*m));
    if(!m)
      return wfail_errno(w, "tar.create", ENOMEM);
    w->map = m;
    w->capmap = cap;
  }
  w->map[w->nmap].off = off;
  w->map[w->nmap].len = len;
  w->nmap++;
  return 0;
}

/*
 * The data regions of a file with fewer blocks than its size suggests,
 * from SEEK_DATA/SEEK_HOLE, into w->map.  An empty map means "not
 * sparse": no holes found, or the filesystem cannot tell.
 */
static int sparse_map(writer *w, int fd, const struct stat *st)
{
  int64_t pos = 0, size = st->st_size;

  w->nmap = 0;
  if(size == 0 || (int64_t)st->st_blocks * 512 >= size)
    return 0;
  while(pos < size) {
    off_t data = lseek(fd, pos, SEEK_DATA), hole;

    if(data < 0 && errno == ENXIO)
      break;                    /* a hole up to the end */
    if(data < 0) {
      w->nmap = 0;
      return 0;                 /* no SEEK_DATA here: store it whole */
    }
    if(data >= size)
      break;
    hole = lseek(fd, data, SEEK_HOLE);
    if(hole < 0) {
      w->nmap = 0;
      return 0;
    }
    if(hole > size)
      hole = size;
    if(map_add(w, data, hole - data))
      return -1;
    pos = hole;
  }
  if(w->nmap == 1 && w->map[0].off == 0 && w->map[0].len == size)
    w->nmap = 0;
  else if(w->nmap == 0 && map_add(w, size, 0))
    return -1;                  /* all hole: one empty region at the end */
  return 0;
}

/* Read len bytes at off (or sequentially when off < 0) into archive. */
static int copy_data(writer *w, int fd, const char *disk, int64_t off,
                     int64_t len)
{
  while(len > 0) {
    size_t want = len < (int64_t)READ_SIZE ? (size_t)len : READ_SIZE;
    ssize_t n = off < 0 ? read(fd, w->buf, want)
                        : pread(fd, w->buf, want, off);
    if(n < 0 && errno == EINTR && !clayer_interrupted)
      continue;
    if(n < 0)
      return wfail_errno(w, disk, errno);
    if(n == 0)
      return wfail(w, NULL, 0, "%s: file shrank while being archived",
                   disk);
    if(archive_write_data(w->a, w->buf, (size_t)n) < n)
      return wfail_archive(w, w->name.s);
    if(off >= 0)
      off += n;
    len -= n;
    w->bytes += (uint64_t)n;
    if(check_interrupt(w) || report(w, 0))
      return -1;
  }
  return 0;
}

/* Skip a hole: libarchive counts it off without reading the buffer. */
static int skip_hole(writer *w, int64_t len)
{
  while(len > 0) {
    size_t n = len > HOLE_STEP ? HOLE_STEP : (size_t)len;
    if(archive_write_data(w->a, w->buf, n) < (la_ssize_t)n)
      return wfail_archive(w, w->name.s);
    len -= (int64_t)n;
    w->bytes += n;
  }
  return 0;
}

static int write_file_data(writer *w, int fd, const char *disk,
                           int64_t size)
{
  size_t i;
  int64_t pos = 0;

  if(w->nmap == 0)
    return copy_data(w, fd, disk, -1, size);
  /* One call per hole or data chunk: libarchive 3.6's sparse writer
   * must not see a write that spans a region boundary. */
  for(i = 0; i < w->nmap; i++) {
    if(w->map[i].off > pos && skip_hole(w, w->map[i].off - pos))
      return -1;
    if(copy_data(w, fd, disk, w->map[i].off, w->map[i].len))
      return -1;
    pos = w->map[i].off + w->map[i].len;
  }
  return pos < size ? skip_hole(w, size - pos) : 0;
}

static int read_symlink(writer *w, const char *disk, const struct stat *st)
{
  size_t want = st->st_size > 0 ? (size_t)st->st_size + 1 : 256;

  for(;;) {
    ssize_t n;

    if(sb_reserve(w, &w->lnk, want))
      return -1;
    n = readlink(disk, w->lnk.s, w->lnk.cap);
    if(n < 0)
      return wfail_errno(w, disk, errno);
    if((size_t)n < w->lnk.cap) {
      w->lnk.s[n] = '\0';
      archive_entry_copy_symlink(w->e, w->lnk.s);
      return 0;
    }
    want = 2 * w->lnk.cap;
  }
}

/* lstat (or open and fstat, for files) and check what may be stored. */
static int stat_entry(writer *w, const char *disk, struct stat *st, int *fd)
{
  if(lstat(disk, st))
    return wfail_errno(w, disk, errno);
  if(S_ISREG(st->st_mode)) {
    *fd = open(disk, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if(*fd < 0)
      return wfail_errno(w, disk, errno);
    if(fstat(*fd, st))
      return wfail_errno(w, disk, errno);
    if(!S_ISREG(st->st_mode))
      return wfail(w, NULL, 0, "%s: changed while being archived", disk);
  }
  else if(S_ISSOCK(st->st_mode))
    return wfail(w, "refused", 0, "%s: a socket cannot be archived", disk);
  else if(!S_ISDIR(st->st_mode) && !S_ISLNK(st->st_mode) &&
          !w->allow_special)
    return wfail(w, "refused", 0,
                 "%s: special file (fifo or device) not allowed", disk);
  return 0;
}

static int write_path_body(writer *w, const char *disk, int fd,
                           const struct stat *st)
{
  link_slot *first = NULL;

  archive_entry_clear(w->e);
  archive_entry_copy_pathname(w->e, w->name.s);
  archive_entry_set_mode(w->e, st->st_mode);
  archive_entry_set_uid(w->e, st->st_uid);
  archive_entry_set_gid(w->e, st->st_gid);
  archive_entry_set_mtime(w->e, st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
  if(!S_ISDIR(st->st_mode) && st->st_nlink > 1) {
    first = link_find(&w->links, st->st_dev, st->st_ino);
    if(first && first->name) {
      archive_entry_copy_hardlink(w->e, first->name);
      archive_entry_set_size(w->e, 0);
      if(put_header(w))
        return -1;
      return finish_member(w);
    }
    if(link_add(&w->links, st->st_dev, st->st_ino, w->name.s))
      return wfail_errno(w, "tar.create", ENOMEM);
  }
  if(S_ISLNK(st->st_mode) && read_symlink(w, disk, st))
    return -1;
  if(S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
    archive_entry_set_rdev(w->e, st->st_rdev);
  if(add_xattrs(w, fd, disk))
    return -1;
  w->nmap = 0;
  if(S_ISREG(st->st_mode)) {
    size_t i;

    archive_entry_set_size(w->e, st->st_size);
    if(sparse_map(w, fd, st))
      return -1;
    for(i = 0; i < w->nmap; i++)
      archive_entry_sparse_add_entry(w->e, w->map[i].off, w->map[i].len);
    if(st->st_size > (off_t)READ_SIZE)
      posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  }
  if(put_header(w))
    return -1;
  w->in_data = 1;
  if(S_ISREG(st->st_mode) && write_file_data(w, fd, disk, st->st_size))
    return -1;
  w->in_data = 0;
  return finish_member(w);
}

/* Write the member for one listed entry. */
static int write_entry(writer *w, const char *root, const char *path,
                       int kind)
{
  struct stat st;
  size_t nr = strlen(root), np = strlen(path);
  int fd = -1, r;

  if(check_interrupt(w) || member_name(w, path, kind))
    return -1;
  if(kind != KIND_PATH)
    return write_marker(w);
  if(sb_reserve(w, &w->disk, nr + np + 1))
    return -1;
  memcpy(w->disk.s, root, nr);
  memcpy(w->disk.s + nr, path, np + 1);
  r = stat_entry(w, w->disk.s, &st, &fd);
  if(r == 0)
    r = write_path_body(w, w->disk.s, fd, &st);
  if(fd >= 0)
    close(fd);
  return r;
}

/* Release everything; remove the output unless it was committed. */
static void writer_release(writer *w)
{
  if(w->a) {
    /* Closing frees libarchive 3.6's output buffer, which a failed
     * archive leaks; but it would pad an unfinished file with zeros. */
    w->discard = 1;
    if(w->in_data)
      archive_write_fail(w->a);
    else
      archive_write_close(w->a);
    archive_write_free(w->a);
    w->a = NULL;
  }
  if(w->e) {
    archive_entry_free(w->e);
    w->e = NULL;
  }
  if(w->open) {
    if(!w->committed)
      zw_abort(&w->z);
    zw_free(&w->z);
    w->open = 0;
  }
  link_free(&w->links);
  free(w->buf);
  free(w->disk.s);
  free(w->name.s);
  free(w->lnk.s);
  free(w->xlist.s);
  free(w->xval.s);
  free(w->map);
  w->buf = NULL;
  w->map = NULL;
  memset(&w->disk, 0, sizeof(w->disk));
  memset(&w->name, 0, sizeof(w->name));
  memset(&w->lnk, 0, sizeof(w->lnk));
  memset(&w->xlist, 0, sizeof(w->xlist));
  memset(&w->xval, 0, sizeof(w->xval));
}

static int writer_gc(lua_State *L)
{
  writer_release(luaL_checkudata(L, 1, TAR_WRITER));
  return 0;
}

static int writer_open(writer *w, const char *output, uint64_t part_size,
                       int level, int threads)
{
  w->open = 1;
  if(zw_init(&w->z, output, part_size, level, threads))
    return -1;
  w->buf = malloc(READ_SIZE);
  w->e = archive_entry_new();
  w->a = archive_write_new();
  if(!w->buf || !w->e || !w->a)
    return wfail_errno(w, "tar.create", ENOMEM);
  /* Big blocks gather the small header writes into few zstd calls (large
   * data writes pass through); the last block is not padded, so the
   * archive ends right after the two zero blocks of the trailer. */
  /* SCHILY.xattr only: GNU tar, Python and libarchive all read it. */
  if(archive_write_set_format_pax(w->a) != ARCHIVE_OK ||
     archive_write_set_format_option(w->a, "pax", "xattrheader",
                                     "SCHILY") != ARCHIVE_OK ||
     archive_write_set_bytes_per_block(w->a, BLOCK_SIZE) != ARCHIVE_OK ||
     archive_write_set_bytes_in_last_block(w->a, 1) != ARCHIVE_OK ||
     archive_write_open(w->a, w, NULL, archive_out, NULL) != ARCHIVE_OK)
    return wfail_archive(w, output);
  return 0;
}

static int writer_close(writer *w)
{
  int r = archive_write_close(w->a);

  if(r != ARCHIVE_OK)
    return wfail_archive(w, w->z.output);
  if(zw_finish(&w->z))
    return -1;
  w->committed = 1;
  return 0;
}

/* ------------------------------------------------------------------ */
/* Lua: options, entries, result.                                      */
/* ------------------------------------------------------------------ */

static void check_options(lua_State *L)
{
  static const char *const known[] = {
    "output", "root", "entries", "level", "threads", "part_size",
    "progress", "allow_special", NULL
  };
  int i;

  lua_pushnil(L);
  while(lua_next(L, 1)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ?
                    lua_tostring(L, -2) : NULL;
    for(i = 0; k && known[i] && strcmp(k, known[i]); i++)
      ;
    if(!k || !known[i])
      luaL_error(L, "tar.create: unknown option '%s'",
                 k ? k : luaL_typename(L, -2));
    lua_pop(L, 1);
  }
}

/* Read entry i of the table at idx: its path and kind; raise when bad. */
static const char *get_entry(lua_State *L, int idx, lua_Integer i, int *kind)
{
  const char *path;
  size_t len;
  int wh, op;

  if(lua_geti(L, idx, i) != LUA_TTABLE)
    luaL_error(L, "tar.create: entries[%d]: table expected, got %s",
               (int)i, luaL_typename(L, -1));
  if(lua_getfield(L, -1, "path") != LUA_TSTRING)
    luaL_error(L, "tar.create: entries[%d].path: string expected, got %s",
               (int)i, luaL_typename(L, -1));
  path = lua_tolstring(L, -1, &len);
  if(len == 0 || strlen(path) != len)
    luaL_error(L, "tar.create: entries[%d].path: empty or holds a NUL",
               (int)i);
  lua_getfield(L, -2, "whiteout");
  lua_getfield(L, -3, "opaque");
  if(!lua_isnoneornil(L, -2) && !lua_isboolean(L, -2))
    luaL_error(L, "tar.create: entries[%d].whiteout: boolean expected",
               (int)i);
  if(!lua_isnoneornil(L, -1) && !lua_isboolean(L, -1))
    luaL_error(L, "tar.create: entries[%d].opaque: boolean expected",
               (int)i);
  wh = lua_toboolean(L, -2);
  op = lua_toboolean(L, -1);
  if(wh && op)
    luaL_error(L, "tar.create: entries[%d]: whiteout and opaque", (int)i);
  if(wh && path[strspn(path, "/")] == '\0')
    luaL_error(L, "tar.create: entries[%d]: whiteout of the root",
               (int)i);
  *kind = wh ? KIND_WHITEOUT : op ? KIND_OPAQUE : KIND_PATH;
  lua_pop(L, 4);                /* path stays alive in the entry table */
  return path;
}

static void push_result(lua_State *L, writer *w)
{
  char hex[65];
  int i;

  lua_createtable(L, 0, 5);
  clayer_hex(w->z.sha, 32, hex);
  lua_pushstring(L, hex);
  lua_setfield(L, -2, "sha256");
  lua_pushinteger(L, (lua_Integer)w->z.size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)w->files);
  lua_setfield(L, -2, "files");
  lua_pushinteger(L, (lua_Integer)w->bytes);
  lua_setfield(L, -2, "bytes");
  lua_createtable(L, w->z.nparts, 0);
  for(i = 0; i < w->z.nparts; i++) {
    zw_part *p = &w->z.parts[i];
    const char *base = strrchr(p->path, '/');

    lua_createtable(L, 0, 3);
    lua_pushstring(L, base ? base + 1 : p->path);
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, (lua_Integer)p->size);
    lua_setfield(L, -2, "size");
    clayer_hex(p->sha, 32, hex);
    lua_pushstring(L, hex);
    lua_setfield(L, -2, "sha256");
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "parts");
}

/* Push nil, message, code (errno or string) for a failed writer. */
static int push_failure(lua_State *L, writer *w)
{
  lua_pushnil(L);
  lua_pushstring(L, w->z.msg[0] ? w->z.msg : "tar.create: failed");
  if(w->code)
    lua_pushstring(L, w->code);
  else if(w->z.err)
    lua_pushinteger(L, w->z.err);
  else
    lua_pushnil(L);
  return 3;
}

typedef struct {
  const char *output, *root;
  lua_Integer level, threads, part_size, n;
  int allow_special;
  int progress;                 /* stack index of the callback, or 0 */
  int entries;                  /* stack index of the entries table */
} create_opts;

/* Read and check every option and entry; raise on misuse. */
static void get_options(lua_State *L, create_opts *o)
{
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  ZSTD_bounds wb = ZSTD_cParam_getBounds(ZSTD_c_nbWorkers);
  lua_Integer i;
  int kind;

  check_options(L);
  o->output = clayer_optstring(L, 1, "output", NULL);
  if(!o->output || !*o->output)
    luaL_error(L, "tar.create: option 'output' is required");
  o->root = clayer_optstring(L, 1, "root", "");
  o->level = clayer_optinteger(L, 1, "level", 3);
  if(o->level < ZSTD_minCLevel() || o->level > ZSTD_maxCLevel())
    luaL_error(L, "tar.create: level %d out of range %d..%d",
               (int)o->level, ZSTD_minCLevel(), ZSTD_maxCLevel());
  o->threads = clayer_optinteger(L, 1, "threads", cpus > 0 ? cpus : 1);
  if(o->threads < 0)
    luaL_error(L, "tar.create: threads must be 0 or more");
  if(!ZSTD_isError(wb.error) && o->threads > wb.upperBound)
    o->threads = wb.upperBound;
  o->part_size = clayer_optinteger(L, 1, "part_size", -1);
  if(o->part_size == 0 || o->part_size < -1)
    luaL_error(L, "tar.create: part_size must be positive");
  if(o->part_size < 0)
    o->part_size = 0;
  o->allow_special = clayer_optboolean(L, 1, "allow_special", 0);
  o->progress = 0;
  if(lua_getfield(L, 1, "progress") != LUA_TNIL) {
    if(!lua_isfunction(L, -1))
      luaL_error(L, "tar.create: option 'progress': function expected");
    o->progress = lua_gettop(L);
  }
  if(lua_getfield(L, 1, "entries") != LUA_TTABLE)
    luaL_error(L, "tar.create: option 'entries': table expected");
  o->entries = lua_gettop(L);
  o->n = luaL_len(L, o->entries);
  for(i = 1; i <= o->n; i++)
    get_entry(L, o->entries, i, &kind);
}

/* A writer in a userdata whose __gc releases it if an error escapes. */
static writer *new_writer(lua_State *L)
{
  writer *w = lua_newuserdatauv(L, sizeof(*w), 0);

  memset(w, 0, sizeof(*w));
  if(luaL_newmetatable(L, TAR_WRITER)) {
    lua_pushcfunction(L, writer_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  w->L = L;
  w->next_progress = PROGRESS_STEP;
  return w;
}

/*
 * tar.create(opts): write the entries as a zstd-compressed PAX tar.
 * Returns {sha256, size, files, bytes, parts} or nil, err, code; on
 * failure no output file is left.  Everything allocated belongs to a
 * private userdata whose __gc releases it (and removes partial output)
 * should a Lua error escape; an error raised by the progress callback
 * is raised again once the output is removed.
 */
int clayer_tar_create(lua_State *L)
{
  create_opts o;
  writer *w;
  lua_Integer i;
  int kind, r;

  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  get_options(L, &o);
  w = new_writer(L);
  w->progress = o.progress;
  w->allow_special = o.allow_special;
  r = writer_open(w, o.output, (uint64_t)o.part_size, (int)o.level,
                  (int)o.threads);
  for(i = 1; r == 0 && i <= o.n; i++) {
    const char *path = get_entry(L, o.entries, i, &kind);
    r = write_entry(w, o.root, path, kind);
  }
  if(r == 0)
    r = report(w, 1);
  if(r == 0)
    r = writer_close(w);
  if(w->lua_error) {
    writer_release(w);
    return lua_error(L);        /* the callback's error is on top */
  }
  if(r == 0)
    push_result(L, w);
  else
    push_failure(L, w);
  writer_release(w);
  return r == 0 ? 1 : 3;
}
