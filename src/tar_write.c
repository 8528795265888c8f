/*
 * tar_write.c: tar.create, the archive writer of clayer.tar.
 */
#include "clayer.h"

int clayer_tar_create(lua_State *L)
{
  return clayer_fail(L, NULL, "tar.create: not built yet");
}
