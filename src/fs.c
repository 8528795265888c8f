/*
 * fs.c: the clayer.fs module.
 */
#include "clayer.h"

static const luaL_Reg fs_funcs[] = {
  {NULL, NULL}
};

int luaopen_clayer_fs(lua_State *L)
{
  luaL_newlib(L, fs_funcs);
  return 1;
}
