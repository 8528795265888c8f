/*
 * http.c: the clayer.http module.
 */
#include "clayer.h"

static const luaL_Reg http_funcs[] = {
  {NULL, NULL}
};

int luaopen_clayer_http(lua_State *L)
{
  luaL_newlib(L, http_funcs);
  return 1;
}
