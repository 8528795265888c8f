/*
 * tar.c: the clayer.tar module: registration, the compressed input that
 * tar.extract and tar.list read (files, clayer_source streams, or an
 * array of them as one stream, hashed as the bytes pass), and tar.list.
 * tar.create lives in tar_write.c, tar.extract and tar.recover in
 * tar_extract.c.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zstd.h>

#include "tar_internal.h"

#define TAR_BUFSIZE (1 << 20)   /* file reads: large, few syscalls */
#define PIPE_BLOCK (1 << 20)    /* decompressed bytes handed over at once */
#define PIPE_DEPTH 4            /* blocks in flight */

/* Raise on an option that is not in the NULL-terminated list known. */
void tar_check_options(lua_State *L, int idx, const char *const *known)
{
  size_t i;

  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while(lua_next(L, idx)) {
    lua_pop(L, 1);
    if(lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "options: string keys expected");
    for(i = 0; known[i]; i++)
      if(!strcmp(known[i], lua_tostring(L, -1)))
        break;
    if(!known[i])
      luaL_error(L, "unknown option '%s'", lua_tostring(L, -1));
  }
}

/* Copy a 64-hex digest, lowercased, into out; raise when malformed. */
static void check_sha(lua_State *L, const char *s, const char *field,
                      char *out)
{
  size_t i;

  for(i = 0; s[i] && i < 64; i++) {
    if(!isxdigit((unsigned char)s[i]))
      break;
    out[i] = (char)tolower((unsigned char)s[i]);
  }
  if(i != 64 || s[i])
    luaL_error(L, "option '%s': 64 hex digits expected", field);
  out[64] = '\0';
}

/* Fill part p from the source value at the top of the stack. */
static void parse_source(lua_State *L, struct tar_part *p)
{
  if(lua_type(L, -1) == LUA_TSTRING) {
    p->path = lua_tostring(L, -1);
    return;
  }
  p->src = clayer_tosource(L, -1);
  if(!p->src)
    luaL_error(L, "option 'source': path or stream expected, got %s",
               luaL_typename(L, -1));
}

/* The expected digests of `parts` (table at the top of the stack). */
static void parse_parts(lua_State *L, struct tar_in *in)
{
  size_t i, n = lua_rawlen(L, -1);

  if(n < in->nparts)
    luaL_error(L, "option 'parts': %d entries for %d sources", (int)n,
               (int)in->nparts);
  in->nwant = n;
  for(i = 0; i < in->nparts; i++) {
    struct tar_part *p = &in->parts[i];

    if(lua_rawgeti(L, -1, (lua_Integer)i + 1) != LUA_TTABLE)
      luaL_error(L, "option 'parts': tables expected");
    if(lua_getfield(L, -1, "sha256") == LUA_TSTRING)
      check_sha(L, lua_tostring(L, -1), "parts.sha256", p->want_sha);
    else if(!lua_isnil(L, -1))
      luaL_error(L, "option 'parts': sha256 must be a string");
    lua_pop(L, 1);
    p->want_size = clayer_optinteger(L, lua_gettop(L), "size", -1);
    lua_pop(L, 1);
  }
}

enum tar_format tar_in_parse(lua_State *L, int idx, struct tar_in *in,
                             const char *what)
{
  const char *fmt, *sha;
  size_t i, n = 1;
  int array;

  memset(in, 0, sizeof(*in));
  in->fd = -1;
  in->want_size = -1;
  in->what = what;
  in->L = L;
  lua_getfield(L, idx, "source");
  array = lua_type(L, -1) == LUA_TTABLE;
  if(array)
    n = lua_rawlen(L, -1);
  else if(lua_isnil(L, -1))
    luaL_error(L, "option 'source' is required");
  if(n == 0)
    luaL_error(L, "option 'source': empty array");
  in->parts = lua_newuserdatauv(L, n * sizeof(*in->parts), 0);
  memset(in->parts, 0, n * sizeof(*in->parts));
  in->nparts = n;
  lua_insert(L, -2);   /* keep the userdata below the source */
  for(i = 0; i < n; i++) {
    in->parts[i].want_size = -1;
    if(array)
      lua_rawgeti(L, -1, (lua_Integer)i + 1);
    else
      lua_pushvalue(L, -1);
    parse_source(L, &in->parts[i]);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if(lua_getfield(L, idx, "parts") == LUA_TTABLE)
    parse_parts(L, in);
  else if(!lua_isnil(L, -1))
    luaL_error(L, "option 'parts': table expected");
  lua_pop(L, 1);
  sha = clayer_optstring(L, idx, "sha256", NULL);
  if(sha)
    check_sha(L, sha, "sha256", in->want_sha);
  in->want_size = clayer_optinteger(L, idx, "size", -1);
  if(lua_getfield(L, idx, "progress") == LUA_TFUNCTION)
    in->progress = lua_absindex(L, idx);
  else if(!lua_isnil(L, -1))
    luaL_error(L, "option 'progress': function expected");
  lua_pop(L, 1);
  fmt = clayer_optstring(L, idx, "format", "zstd");
  if(!strcmp(fmt, "zstd"))
    return TAR_ZSTD;
  if(!strcmp(fmt, "gzip"))
    return TAR_GZIP;
  if(!strcmp(fmt, "auto"))
    return TAR_AUTO;
  return (enum tar_format)luaL_error(L, "option 'format': zstd, gzip or "
                                     "auto expected, got '%s'", fmt);
}

/* Record the first failure of the input; return -1. */
static int in_fail(struct tar_in *in, const char *code, const char *fmt,
                   ...) __attribute__((format(printf, 3, 4)));
static int in_fail(struct tar_in *in, const char *code, const char *fmt,
                   ...)
{
  va_list ap;
  int n;

  if(in->code)
    return -1;
  in->code = code;
  n = snprintf(in->msg, sizeof(in->msg), "%s: ", in->what);
  va_start(ap, fmt);
  vsnprintf(in->msg + n, sizeof(in->msg) - (size_t)n, fmt, ap);
  va_end(ap);
  return -1;
}

/* Finish a digest context into 64 hex digits and reset it. */
static void finish_sha(EVP_MD_CTX *ctx, char *hex)
{
  unsigned char md[32];
  unsigned int len = 0;

  EVP_DigestFinal_ex(ctx, md, &len);
  clayer_hex(md, 32, hex);
  EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
}

/* Name of part i for messages. */
static const char *part_name(struct tar_in *in, size_t i)
{
  return in->parts[i].path ? in->parts[i].path : "stream";
}

/* The current part ended: check it against `parts`, go to the next. */
static int part_end(struct tar_in *in)
{
  struct tar_part *p = &in->parts[in->cur];
  char hex[65];

  if(in->fd >= 0)
    close(in->fd);
  in->fd = -1;
  finish_sha(in->part, hex);
  if(p->want_size >= 0 && in->partsize < p->want_size)
    return in_fail(in, "truncated", "part %zu (%s): %lld bytes, expected "
                   "%lld", in->cur + 1, part_name(in, in->cur),
                   in->partsize, p->want_size);
  if(p->want_size >= 0 && in->partsize > p->want_size)
    return in_fail(in, "digest", "part %zu (%s): %lld bytes, expected "
                   "%lld", in->cur + 1, part_name(in, in->cur),
                   in->partsize, p->want_size);
  if(p->want_sha[0] && strcmp(hex, p->want_sha))
    return in_fail(in, "digest", "part %zu (%s): sha256 %s, expected %s",
                   in->cur + 1, part_name(in, in->cur), hex, p->want_sha);
  in->cur++;
  in->partsize = 0;
  return 0;
}

/* Every part was read: check the whole stream. */
static int stream_end(struct tar_in *in)
{
  finish_sha(in->whole, in->sha);
  in->eof = 1;
  if(in->nwant > in->nparts)
    return in_fail(in, "truncated", "part %zu of %zu missing",
                   in->nparts + 1, in->nwant);
  if(in->want_size >= 0 && in->total < in->want_size)
    return in_fail(in, "truncated", "archive is %lld bytes, expected %lld",
                   in->total, in->want_size);
  if(in->want_size >= 0 && in->total > in->want_size)
    return in_fail(in, "digest", "archive is %lld bytes, expected %lld",
                   in->total, in->want_size);
  if(in->want_sha[0] && strcmp(in->sha, in->want_sha))
    return in_fail(in, "digest", "sha256 %s, expected %s", in->sha,
                   in->want_sha);
  return 0;
}

/* Read some bytes of the current part into *out; 0 at its end. */
static ssize_t part_read(struct tar_in *in, const void **out)
{
  struct tar_part *p = &in->parts[in->cur];
  ssize_t n;

  if(p->src) {
    n = p->src->read(p->src, out);
    if(n < 0)
      return in_fail(in, "io", "%s", p->src->error(p->src));
    return n;
  }
  if(in->fd < 0) {
    in->fd = open(p->path, O_RDONLY | O_CLOEXEC);
    if(in->fd < 0)
      return in_fail(in, "io", "%s: %s", p->path, strerror(errno));
    posix_fadvise(in->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  }
  do
    n = read(in->fd, in->buf, TAR_BUFSIZE);
  while(n < 0 && errno == EINTR && !clayer_interrupted);
  if(n < 0 && errno == EINTR)
    return in_fail(in, "interrupted", "interrupted");
  if(n < 0)
    return in_fail(in, "io", "%s: %s", p->path, strerror(errno));
  *out = in->buf;
  return n;
}

/* Tell the progress function how far the stream is: total bytes. */
static int report(struct tar_in *in, long long total)
{
  lua_State *L = in->L;

  if(!in->progress)
    return 0;
  lua_getfield(L, in->progress, "progress");
  lua_pushinteger(L, total);
  if(lua_pcall(L, 1, 0, 0) != LUA_OK) {
    in_fail(in, "interrupted", "progress: %s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  return 0;
}

/* The next bytes of the compressed stream, hashed and checked: > 0 at
   *out, 0 at the end, -1 failed.  No Lua: the pipe's thread calls it. */
static ssize_t raw_next(struct tar_in *in, const void **out)
{
  ssize_t n;

  for(;;) {
    if(in->code)
      return -1;
    if(in->eof)
      return 0;
    if(clayer_interrupted)
      return in_fail(in, "interrupted", "interrupted");
    if(in->cur >= in->nparts) {
      if(stream_end(in))
        return -1;
      continue;
    }
    n = part_read(in, out);
    if(n < 0)
      return -1;
    if(n == 0) {
      if(part_end(in))
        return -1;
      continue;
    }
    EVP_DigestUpdate(in->whole, *out, (size_t)n);
    EVP_DigestUpdate(in->part, *out, (size_t)n);
    in->total += n;
    in->partsize += n;
    if(in->want_size >= 0 && in->total > in->want_size)
      return in_fail(in, "digest", "archive is over %lld bytes, expected "
                     "%lld", in->total - 1, in->want_size);
    return n;
  }
}

/* {==================================================================
 * The pipe: for zstd archives, a thread reads the parts, hashes them and
 * decompresses, while the calling thread parses and writes the members
 * (libarchive then reads plain tar).  Blocks of decompressed bytes go
 * through a small bounded queue.  Only the calling thread runs Lua
 * (progress), and it reads the input's failure only after the thread
 * has said it is done.
 * ===================================================================
 */
struct pipe_block {
  unsigned char *data;
  size_t len;
  long long total;         /* compressed bytes read so far */
};

struct tar_pipe {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct pipe_block q[PIPE_DEPTH];
  size_t head, count;
  int done;                /* the thread finished: in->code says how */
  int stop;                /* the reader gives up: the thread stops */
  unsigned char *held;     /* the block the reader has now */
};

/* Hand a filled block to the reader, which owns it from now on (freed
   here when the reader gave up); 0, or -1 when told to stop. */
static int pipe_put(struct tar_pipe *pp, unsigned char *data, size_t len,
                    long long total)
{
  pthread_mutex_lock(&pp->mu);
  while(pp->count == PIPE_DEPTH && !pp->stop)
    pthread_cond_wait(&pp->cv, &pp->mu);
  if(pp->stop) {
    pthread_mutex_unlock(&pp->mu);
    free(data);
    return -1;
  }
  pp->q[(pp->head + pp->count) % PIPE_DEPTH] =
    (struct pipe_block){ data, len, total };
  pp->count++;
  pthread_cond_broadcast(&pp->cv);
  pthread_mutex_unlock(&pp->mu);
  return 0;
}

static void *pipe_main(void *arg)
{
  struct tar_in *in = arg;
  struct tar_pipe *pp = in->pipe;
  ZSTD_DStream *z = ZSTD_createDStream();
  unsigned char *out = NULL;
  size_t olen = 0, zr = 1;
  int bad = 0;             /* not zstd data: read on, for the digest */

  if(!z)
    in_fail(in, "io", "out of memory");
  for(;;) {
    const void *p;
    ssize_t n = z ? raw_next(in, &p) : -1;
    ZSTD_inBuffer ib;

    if(n <= 0) {
      if(n == 0 && !bad && zr != 0)
        in_fail(in, "truncated", "truncated archive: the zstd stream "
                "ends in the middle of a frame");
      break;
    }
    ib = (ZSTD_inBuffer){ p, (size_t)n, 0 };
    while(!bad && ib.pos < ib.size) {
      ZSTD_outBuffer ob;

      if(!out && !(out = malloc(PIPE_BLOCK))) {
        in_fail(in, "io", "out of memory");
        goto end;
      }
      ob = (ZSTD_outBuffer){ out, PIPE_BLOCK, olen };
      zr = ZSTD_decompressStream(z, &ob, &ib);
      olen = ob.pos;
      if(ZSTD_isError(zr)) {
        bad = 1;
        snprintf(in->msg, sizeof(in->msg), "%s", ZSTD_getErrorName(zr));
        break;
      }
      if(olen == PIPE_BLOCK) {
        int r = pipe_put(pp, out, olen, in->total);   /* takes out */

        out = NULL;
        olen = 0;
        if(r)
          goto end;
      }
    }
  }
  if(olen && !in->code && !bad) {
    pipe_put(pp, out, olen, in->total);   /* takes out, even when told to
                                             stop */
    out = NULL;
  }
  if(bad && !in->code) {
    char why[sizeof(in->msg)];

    snprintf(why, sizeof(why), "%s", in->msg);
    in->msg[0] = '\0';
    in_fail(in, "format", "not a zstd-compressed tar (%s)", why);
  }
end:
  free(out);
  ZSTD_freeDStream(z);
  pthread_mutex_lock(&pp->mu);
  pp->done = 1;
  pthread_cond_broadcast(&pp->cv);
  pthread_mutex_unlock(&pp->mu);
  return NULL;
}

/* The reader's side: the next block, 0 at the end, -1 failed. */
static ssize_t pipe_next(struct tar_in *in, const void **out)
{
  struct tar_pipe *pp = in->pipe;
  struct pipe_block b;

  free(pp->held);
  pp->held = NULL;
  pthread_mutex_lock(&pp->mu);
  while(!pp->count && !pp->done)
    pthread_cond_wait(&pp->cv, &pp->mu);
  if(!pp->count) {
    pthread_mutex_unlock(&pp->mu);
    return in->code ? -1 : 0;
  }
  b = pp->q[pp->head];
  pp->head = (pp->head + 1) % PIPE_DEPTH;
  pp->count--;
  pthread_cond_broadcast(&pp->cv);
  pthread_mutex_unlock(&pp->mu);
  pp->held = b.data;
  *out = b.data;
  if(report(in, b.total))
    return -1;
  return (ssize_t)b.len;
}

static int pipe_start(struct tar_in *in)
{
  struct tar_pipe *pp = calloc(1, sizeof(*pp));

  if(!pp)
    return in_fail(in, "io", "out of memory");
  pthread_mutex_init(&pp->mu, NULL);
  pthread_cond_init(&pp->cv, NULL);
  in->pipe = pp;
  if(pthread_create(&pp->thread, NULL, pipe_main, in)) {
    in->pipe = NULL;
    pthread_mutex_destroy(&pp->mu);
    pthread_cond_destroy(&pp->cv);
    free(pp);
    return in_fail(in, "io", "cannot start the reader thread");
  }
  return 0;
}

/* Stop the thread (when it is not done yet) and free the pipe. */
static void pipe_end(struct tar_in *in)
{
  struct tar_pipe *pp = in->pipe;
  size_t i;

  if(!pp)
    return;
  pthread_mutex_lock(&pp->mu);
  pp->stop = 1;
  pthread_cond_broadcast(&pp->cv);
  pthread_mutex_unlock(&pp->mu);
  pthread_join(pp->thread, NULL);
  for(i = 0; i < pp->count; i++)
    free(pp->q[(pp->head + i) % PIPE_DEPTH].data);
  free(pp->held);
  pthread_mutex_destroy(&pp->mu);
  pthread_cond_destroy(&pp->cv);
  free(pp);
  in->pipe = NULL;
}

/* }================================================================== */

/* The next bytes for libarchive: > 0 at *out, 0 at the end, -1 failed. */
static ssize_t in_next(struct tar_in *in, const void **out)
{
  ssize_t n;

  if(in->pipe)
    return pipe_next(in, out);
  n = raw_next(in, out);
  if(n > 0 && report(in, in->total))
    return -1;
  return n;
}

static la_ssize_t in_read(struct archive *a, void *ud, const void **out)
{
  struct tar_in *in = ud;
  ssize_t n = in_next(in, out);

  if(n < 0) {
    archive_set_error(a, EIO, "%s", in->msg);
    return -1;
  }
  return n;
}

int tar_in_drain(struct tar_in *in)
{
  const void *p;
  ssize_t n;

  while((n = in_next(in, &p)) > 0)
    ;
  return (int)n;
}

int tar_in_open(struct tar_in *in, enum tar_format fmt, struct archive **ap)
{
  struct archive *a;

  *ap = NULL;
  in->buf = malloc(TAR_BUFSIZE);
  in->whole = EVP_MD_CTX_new();
  in->part = EVP_MD_CTX_new();
  a = archive_read_new();
  if(!in->buf || !in->whole || !in->part || !a) {
    if(a)
      archive_read_free(a);
    return in_fail(in, "io", "out of memory");
  }
  EVP_DigestInit_ex(in->whole, EVP_sha256(), NULL);
  EVP_DigestInit_ex(in->part, EVP_sha256(), NULL);
  archive_read_support_format_tar(a);
  if(fmt == TAR_ZSTD) {
    /* decompressed on the pipe's thread; libarchive reads plain tar */
    *ap = a;
    if(pipe_start(in))
      return -1;
  }
  else if(fmt & TAR_ZSTD)
    archive_read_support_filter_zstd(a);
  if(fmt & TAR_GZIP)
    archive_read_support_filter_gzip(a);
  *ap = a;
  if(archive_read_open(a, in, NULL, in_read, NULL) != ARCHIVE_OK) {
    tar_in_fail(in, a);
    return -1;
  }
  return 0;
}

int tar_in_check_filter(struct tar_in *in, struct archive *a,
                        enum tar_format fmt)
{
  int code = archive_filter_code(a, 0);

  if(in->pipe && archive_filter_count(a) == 1)
    return 0;   /* the pipe decompressed zstd: nothing else gets there */
  if(!in->pipe && archive_filter_count(a) == 2 &&
     ((code == ARCHIVE_FILTER_ZSTD && (fmt & TAR_ZSTD)) ||
      (code == ARCHIVE_FILTER_GZIP && (fmt & TAR_GZIP))))
    return 0;
  return in_fail(in, "format", "not a %s-compressed tar (%s)",
                 fmt == TAR_ZSTD ? "zstd" : fmt == TAR_GZIP ? "gzip" :
                 "zstd- or gzip", archive_filter_name(a, 0));
}

/*
 * libarchive failed.  A failure the input found itself wins; otherwise
 * read the rest so that the digest and size say whether the bytes were
 * wrong; otherwise the stream ended early after a good header
 * (truncated) or is not a readable archive (format).
 */
void tar_in_fail(struct tar_in *in, struct archive *a)
{
  const char *why = archive_error_string(a);
  char text[256];
  int ended;

  snprintf(text, sizeof(text), "%s", why ? why : "unreadable archive");
  if(in->pipe) {
    /* the thread's state is ours only once it is done: drain first */
    if(tar_in_drain(in) < 0 || in->code)
      return;
    ended = 1;
  }
  else {
    ended = in->cur >= in->nparts;
    if(in->code || tar_in_drain(in) < 0)
      return;
  }
  if(ended && in->started)
    in_fail(in, "truncated", "truncated archive: %s", text);
  else
    in_fail(in, "format", "%s", text);
}

void tar_in_free(struct tar_in *in)
{
  pipe_end(in);   /* first: the thread uses everything below */
  if(in->fd >= 0)
    close(in->fd);
  in->fd = -1;
  free(in->buf);
  in->buf = NULL;
  EVP_MD_CTX_free(in->whole);
  EVP_MD_CTX_free(in->part);
  in->whole = in->part = NULL;
}

/* The type name of an entry, as fs.lstat names types. */
static const char *entry_type(struct archive_entry *e)
{
  if(archive_entry_hardlink(e))
    return "hardlink";
  switch(archive_entry_filetype(e)) {
  case AE_IFDIR: return "dir";
  case AE_IFLNK: return "link";
  case AE_IFIFO: return "fifo";
  case AE_IFCHR: return "chr";
  case AE_IFBLK: return "blk";
  case AE_IFSOCK: return "sock";
  default: return "file";
  }
}

/* An archive's mtime in nanoseconds, saturated (archives may say anything). */
static lua_Integer mtime_ns(time_t sec, long nsec)
{
  if(sec >= LUA_MAXINTEGER / 1000000000)
    return LUA_MAXINTEGER;
  if(sec < LUA_MININTEGER / 1000000000)
    return LUA_MININTEGER;
  return (lua_Integer)sec * 1000000000 + nsec;
}

/* Push the list table of one entry. */
static void push_entry(lua_State *L, struct archive_entry *e)
{
  const char *target = archive_entry_hardlink(e);

  if(!target)
    target = archive_entry_symlink(e);
  lua_createtable(L, 0, 8);
  lua_pushstring(L, archive_entry_pathname(e));
  lua_setfield(L, -2, "name");
  lua_pushstring(L, entry_type(e));
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, archive_entry_size(e));
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, archive_entry_perm(e) & 07777);
  lua_setfield(L, -2, "mode");
  lua_pushinteger(L, archive_entry_uid(e));
  lua_setfield(L, -2, "uid");
  lua_pushinteger(L, archive_entry_gid(e));
  lua_setfield(L, -2, "gid");
  lua_pushinteger(L, mtime_ns(archive_entry_mtime(e),
                              archive_entry_mtime_nsec(e)));
  lua_setfield(L, -2, "mtime");
  if(target) {
    lua_pushstring(L, target);
    lua_setfield(L, -2, "target");
  }
}

/*
 * tar.list(opts): an array of {name, type, size, mode, uid, gid, mtime,
 * target} for the archive in opts.source (same input options as
 * tar.extract), or nil, err, code.  Nothing is written to disk.
 */
static int tar_list(lua_State *L)
{
  static const char *const known[] = {
    "source", "format", "sha256", "size", "parts", "progress", NULL
  };
  struct archive_entry *e;
  struct archive *a;
  struct tar_in in;
  enum tar_format fmt;
  int r, first = 1;
  lua_Integer n = 0;

  tar_check_options(L, 1, known);
  fmt = tar_in_parse(L, 1, &in, "tar.list");
  lua_newtable(L);
  if(tar_in_open(&in, fmt, &a) == 0) {
    for(;;) {
      r = archive_read_next_header(a, &e);
      if(first && r >= ARCHIVE_WARN && tar_in_check_filter(&in, a, fmt))
        break;
      first = 0;
      in.started = r >= ARCHIVE_WARN;
      if(r == ARCHIVE_EOF) {
        tar_in_drain(&in);
        break;
      }
      if(r < ARCHIVE_WARN) {
        tar_in_fail(&in, a);
        break;
      }
      push_entry(L, e);
      lua_rawseti(L, -2, ++n);
    }
  }
  if(a)
    archive_read_free(a);
  tar_in_free(&in);
  if(in.code)
    return clayer_fail(L, in.code, "%s", in.msg);
  return 1;
}

static const luaL_Reg tar_funcs[] = {
  {"create", clayer_tar_create},
  {"extract", clayer_tar_extract},
  {"recover", clayer_tar_recover},
  {"list", tar_list},
  {NULL, NULL}
};

int luaopen_clayer_tar(lua_State *L)
{
  luaL_newlib(L, tar_funcs);
  return 1;
}
