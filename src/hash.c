/*
 * hash.c: the clayer.hash module, SHA-256 through OpenSSL's EVP API.
 *
 * hash.sha256(s) and hash.file(path) give a lowercase hex digest at once;
 * hash.new() gives a context (clayer.hash.ctx) to feed piece by piece.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "clayer.h"

#define HASH_CTX "clayer.hash.ctx"
#define HASH_CHUNK (128 * 1024)         /* bytes read per file read() */
#define HASH_HEXLEN (2 * 32)

typedef struct {
  EVP_MD_CTX *md;                       /* NULL once closed */
} hash_ctx;


/* Finish a copy of md into hex (HASH_HEXLEN + 1 bytes); md stays usable. */
static int hexdigest_of(EVP_MD_CTX *md, char *hex)
{
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_MD_CTX *copy = EVP_MD_CTX_new();
  int ok;

  if(copy == NULL)
    return 0;
  ok = EVP_MD_CTX_copy_ex(copy, md) && EVP_DigestFinal_ex(copy, digest, &len);
  EVP_MD_CTX_free(copy);
  if(ok)
    clayer_hex(digest, len, hex);
  return ok;
}


/* hash.sha256(s): the 64-character hex digest of string s. */
static int hash_sha256(lua_State *L)
{
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  char hex[2 * EVP_MAX_MD_SIZE + 1];

  if(!EVP_Digest(s, n, digest, &len, EVP_sha256(), NULL))
    return luaL_error(L, "hash.sha256: EVP_Digest failed");
  clayer_hex(digest, len, hex);
  lua_pushstring(L, hex);
  return 1;
}


/*
 * hash.file(path): the hex digest of the file's bytes, read in chunks, or
 * nil, "path: why", errno.
 */
static int hash_file(lua_State *L)
{
  const char *path = luaL_checkstring(L, 1);
  char hex[HASH_HEXLEN + 1];
  EVP_MD_CTX *md;
  unsigned char *buf;
  ssize_t n;
  int fd, err = 0, ok;

  fd = open(path, O_RDONLY | O_CLOEXEC);
  if(fd < 0)
    return clayer_errno(L, path, errno);
  buf = malloc(HASH_CHUNK);
  md = EVP_MD_CTX_new();
  if(buf == NULL || md == NULL || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
    free(buf);
    EVP_MD_CTX_free(md);
    close(fd);
    return luaL_error(L, "hash.file: out of memory");
  }
  for(;;) {
    n = read(fd, buf, HASH_CHUNK);
    if(n < 0 && errno == EINTR && !clayer_interrupted)
      continue;                         /* else: give up, "interrupted" */
    if(n <= 0) {
      if(n < 0)
        err = errno;
      break;
    }
    EVP_DigestUpdate(md, buf, (size_t)n);
  }
  close(fd);
  free(buf);
  ok = !err && hexdigest_of(md, hex);
  EVP_MD_CTX_free(md);
  if(err)
    return clayer_errno(L, path, err);
  if(!ok)
    return luaL_error(L, "hash.file: EVP digest failed");
  lua_pushstring(L, hex);
  return 1;
}


/* The open context at idx; raises when it is closed. */
static hash_ctx *check_ctx(lua_State *L, int idx)
{
  hash_ctx *c = luaL_checkudata(L, idx, HASH_CTX);

  if(c->md == NULL)
    luaL_error(L, "attempt to use a closed hash context");
  return c;
}


/* hash.new(): a fresh SHA-256 context, owned by the returned userdata. */
static int hash_new(lua_State *L)
{
  hash_ctx *c = lua_newuserdatauv(L, sizeof(*c), 0);

  c->md = NULL;                         /* closed until fully built */
  luaL_setmetatable(L, HASH_CTX);
  c->md = EVP_MD_CTX_new();
  if(c->md == NULL)
    return luaL_error(L, "hash.new: out of memory");
  if(!EVP_DigestInit_ex(c->md, EVP_sha256(), NULL)) {
    EVP_MD_CTX_free(c->md);
    c->md = NULL;
    return luaL_error(L, "hash.new: EVP_DigestInit_ex failed");
  }
  return 1;
}


/* ctx:update(s): feeds s; returns ctx for chaining. */
static int ctx_update(lua_State *L)
{
  hash_ctx *c = check_ctx(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);

  if(!EVP_DigestUpdate(c->md, s, n))
    return luaL_error(L, "hash: EVP_DigestUpdate failed");
  lua_settop(L, 1);
  return 1;
}


/* ctx:hexdigest(): the digest so far; the context can take more input. */
static int ctx_hexdigest(lua_State *L)
{
  hash_ctx *c = check_ctx(L, 1);
  char hex[HASH_HEXLEN + 1];

  if(!hexdigest_of(c->md, hex))
    return luaL_error(L, "hash: EVP digest failed");
  lua_pushstring(L, hex);
  return 1;
}


/* ctx:close(), __gc, __close: frees the EVP context; safe to repeat. */
static int ctx_close(lua_State *L)
{
  hash_ctx *c = luaL_checkudata(L, 1, HASH_CTX);

  if(c->md) {
    EVP_MD_CTX_free(c->md);
    c->md = NULL;
  }
  return 0;
}


static int ctx_tostring(lua_State *L)
{
  hash_ctx *c = luaL_checkudata(L, 1, HASH_CTX);

  lua_pushfstring(L, "%s (%s)", HASH_CTX, c->md ? "open" : "closed");
  return 1;
}


static const luaL_Reg hash_funcs[] = {
  {"sha256",    hash_sha256},
  {"file",      hash_file},
  {"new",       hash_new},
  {NULL, NULL}
};

static const luaL_Reg ctx_methods[] = {
  {"update",    ctx_update},
  {"hexdigest", ctx_hexdigest},
  {"close",     ctx_close},
  {NULL, NULL}
};

static const luaL_Reg ctx_meta[] = {
  {"__gc",       ctx_close},
  {"__close",    ctx_close},
  {"__tostring", ctx_tostring},
  {"__index",    NULL},                 /* set below */
  {NULL, NULL}
};

int luaopen_clayer_hash(lua_State *L)
{
  luaL_newmetatable(L, HASH_CTX);
  luaL_setfuncs(L, ctx_meta, 0);
  luaL_newlib(L, ctx_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newlib(L, hash_funcs);
  return 1;
}
