/*
 * json.c: the clayer.json module.
 */
#include "clayer.h"

static const luaL_Reg json_funcs[] = {
  {NULL, NULL}
};

int luaopen_clayer_json(lua_State *L)
{
  luaL_newlib(L, json_funcs);
  return 1;
}
