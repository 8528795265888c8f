/*
 * hash.c: the clayer.hash module.
 */
#include "clayer.h"

static const luaL_Reg hash_funcs[] = {
  {NULL, NULL}
};

int luaopen_clayer_hash(lua_State *L)
{
  luaL_newlib(L, hash_funcs);
  return 1;
}
