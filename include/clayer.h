/*
 * clayer.h: declarations shared by the C runtime of clayer-lua.
 *
 * Each src/<module>.c file implements one Lua module, `clayer.<module>`,
 * and exports luaopen_clayer_<module>.  Lua-facing functions raise errors
 * only for programming mistakes; operational failures return
 * nil, message[, code] (see clayer_fail and clayer_errno).
 */
#ifndef CLAYER_H
#define CLAYER_H

#include <stddef.h>
#include <sys/types.h>

#include <lua.h>
#include <lauxlib.h>

#define CLAYER_VERSION "0.1.0"

int luaopen_clayer_hash(lua_State *L);
int luaopen_clayer_fs(lua_State *L);
int luaopen_clayer_proc(lua_State *L);
int luaopen_clayer_tar(lua_State *L);
int luaopen_clayer_http(lua_State *L);
int luaopen_clayer_json(lua_State *L);

/* tar.create lives in tar_write.c; tar.c registers it. */
int clayer_tar_create(lua_State *L);

/* Put the C modules above into package.preload as "clayer.<name>". */
void clayer_preload(lua_State *L);

/*
 * A pull stream of bytes that one module produces and another consumes
 * without Lua in between: clayer.http's download streams feed
 * clayer.tar's extractor through it.  A userdata that carries a source
 * has it as its first member and its metatable is named in
 * CLAYER_SOURCE_TYPES below.
 *
 * read() points *buf at the next bytes and returns how many; 0 means the
 * end of the stream, -1 an error whose text error() returns.  The bytes
 * stay valid until the next call.
 */
typedef struct clayer_source {
  ssize_t (*read)(struct clayer_source *src, const void **buf);
  const char *(*error)(struct clayer_source *src);
} clayer_source;

#define CLAYER_HTTP_STREAM "clayer.http.stream"

/* The source in userdata at index idx, or NULL when it is none. */
clayer_source *clayer_tosource(lua_State *L, int idx);

/* Push nil, "what: strerror(err)", err; return 3.  EINTR after SIGINT or
   SIGTERM gives nil, "what: interrupted", "interrupted" instead. */
int clayer_errno(lua_State *L, const char *what, int err);

/* Push nil, formatted message, code (code may be NULL); return 3. */
int clayer_fail(lua_State *L, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Read an optional field of the options table at index idx.  Missing or
 * nil fields give the default; a field of the wrong type raises an error
 * naming it.
 */
const char *clayer_optstring(lua_State *L, int idx, const char *field,
                             const char *def);
lua_Integer clayer_optinteger(lua_State *L, int idx, const char *field,
                              lua_Integer def);
lua_Number clayer_optnumber(lua_State *L, int idx, const char *field,
                            lua_Number def);
int clayer_optboolean(lua_State *L, int idx, const char *field, int def);

/*
 * Set by SIGINT and SIGTERM.  Long C loops (extraction, archiving, scans)
 * check it and fail with "interrupted" so that Lua can clean up.
 */
#include <signal.h>
extern volatile sig_atomic_t clayer_interrupted;

/* Lowercase hex of n bytes into out, which holds 2 * n + 1 bytes. */
void clayer_hex(const unsigned char *bytes, size_t n, char *out);

#endif
