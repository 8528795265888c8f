/*
 * tar.c: the clayer.tar module.
 */
#include "clayer.h"

static const luaL_Reg tar_funcs[] = {
  {"create", clayer_tar_create},
  {NULL, NULL}
};

int luaopen_clayer_tar(lua_State *L)
{
  luaL_newlib(L, tar_funcs);
  return 1;
}
