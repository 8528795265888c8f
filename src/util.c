/*
 * util.c: small helpers every module of the runtime shares.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "clayer.h"

/* A call that SIGINT or SIGTERM cut short (EINTR: the handler does not
   restart calls) fails as "interrupted", not as a system error. */
int clayer_errno(lua_State *L, const char *what, int err)
{
  if(err == EINTR && clayer_interrupted)
    return clayer_fail(L, "interrupted", "%s: interrupted", what);
  lua_pushnil(L);
  lua_pushfstring(L, "%s: %s", what, strerror(err));
  lua_pushinteger(L, err);
  return 3;
}

int clayer_fail(lua_State *L, const char *code, const char *fmt, ...)
{
  va_list ap;

  lua_pushnil(L);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  if(code)
    lua_pushstring(L, code);
  else
    lua_pushnil(L);
  return 3;
}

clayer_source *clayer_tosource(lua_State *L, int idx)
{
  return luaL_testudata(L, idx, CLAYER_HTTP_STREAM);
}

static int optfield(lua_State *L, int idx, const char *field, int type)
{
  int t;

  if(lua_isnoneornil(L, idx))
    return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  t = lua_getfield(L, idx, field);
  if(t == LUA_TNIL) {
    lua_pop(L, 1);
    return 0;
  }
  if(t != type && !(type == LUA_TNUMBER && lua_isnumber(L, -1)))
    luaL_error(L, "option '%s': %s expected, got %s", field,
               lua_typename(L, type), luaL_typename(L, -1));
  return 1;
}

const char *clayer_optstring(lua_State *L, int idx, const char *field,
                             const char *def)
{
  const char *s;

  if(!optfield(L, idx, field, LUA_TSTRING))
    return def;
  s = lua_tostring(L, -1);
  lua_pop(L, 1);   /* the table still holds the string */
  return s;
}

lua_Integer clayer_optinteger(lua_State *L, int idx, const char *field,
                              lua_Integer def)
{
  lua_Integer v;
  int ok;

  if(!optfield(L, idx, field, LUA_TNUMBER))
    return def;
  v = lua_tointegerx(L, -1, &ok);
  if(!ok)
    luaL_error(L, "option '%s': integer expected", field);
  lua_pop(L, 1);
  return v;
}

lua_Number clayer_optnumber(lua_State *L, int idx, const char *field,
                            lua_Number def)
{
  lua_Number v;

  if(!optfield(L, idx, field, LUA_TNUMBER))
    return def;
  v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

int clayer_optboolean(lua_State *L, int idx, const char *field, int def)
{
  int v;

  if(!optfield(L, idx, field, LUA_TBOOLEAN))
    return def;
  v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

void clayer_hex(const unsigned char *bytes, size_t n, char *out)
{
  static const char digits[] = "0123456789abcdef";
  size_t i;

  for(i = 0; i < n; i++) {
    out[2 * i] = digits[bytes[i] >> 4];
    out[2 * i + 1] = digits[bytes[i] & 15];
  }
  out[2 * n] = '\0';
}

void clayer_preload(lua_State *L)
{
  static const luaL_Reg mods[] = {
    {"clayer.hash", luaopen_clayer_hash},
    {"clayer.fs", luaopen_clayer_fs},
    {"clayer.proc", luaopen_clayer_proc},
    {"clayer.tar", luaopen_clayer_tar},
    {"clayer.http", luaopen_clayer_http},
    {"clayer.json", luaopen_clayer_json},
    {NULL, NULL}
  };
  const luaL_Reg *m;

  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for(m = mods; m->name; m++) {
    lua_pushcfunction(L, m->func);
    lua_setfield(L, -2, m->name);
  }
  lua_pop(L, 1);
}
