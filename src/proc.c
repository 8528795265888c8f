/*
 * proc.c: the clayer.proc module.
 */
#include "clayer.h"

static const luaL_Reg proc_funcs[] = {
  {NULL, NULL}
};

int luaopen_clayer_proc(lua_State *L)
{
  luaL_newlib(L, proc_funcs);
  return 1;
}
