/*
 * fuzz.c: the libFuzzer harness for clayer's targets.
 *
 * Each target is a Lua driver, tests/fuzz/<target>.lua, returning a table
 * with setup() and check(data).  check raises when clayer misbehaves (an
 * error it does not document, a write outside the scratch root...); the
 * harness then aborts, so libFuzzer saves the input.  The same drivers run
 * under the normal binary in tests/spec/fuzz_replay_spec.lua.
 *
 * The Lua interpreter is not instrumented, so a line hook feeds the
 * line-to-line edges taken in clayer's own scripts (lua/clayer/) to
 * libFuzzer through its extra-counters section: the Containerfile parser
 * is Lua, and without this the fuzzer would be blind to it.
 *
 * Built by tests/fuzz/run with -DFUZZ_TARGET=\"name\" and
 * -DFUZZ_REPO=\"/path/to/repo\".
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "clayer.h"

volatile sig_atomic_t clayer_interrupted = 0;

static lua_State *L;
static int check_ref = LUA_NOREF;
static unsigned long runs;

#define LUA_COV_SIZE 65536
__attribute__((section("__libfuzzer_extra_counters")))
static unsigned char lua_cov[LUA_COV_SIZE];

/* Count the edge (previous line, this line) of clayer's scripts. */
static void line_hook(lua_State *S, lua_Debug *ar)
{
  static const char *last_src;
  static int last_ours;
  static unsigned prev;
  unsigned cur;

  if(!lua_getinfo(S, "S", ar))
    return;
  if(ar->source != last_src) {
    last_src = ar->source;
    last_ours = strstr(ar->source, "/lua/clayer/") != NULL;
  }
  if(!last_ours)
    return;
  cur = ((unsigned)(uintptr_t)ar->source * 2654435761u) ^
        ((unsigned)ar->currentline * 40503u);
  cur &= LUA_COV_SIZE - 1;
  lua_cov[(cur ^ prev) & (LUA_COV_SIZE - 1)]++;
  prev = cur >> 1;
}

static void die(const char *what)
{
  fprintf(stderr, "fuzz: %s: %s\n", what,
          L && lua_isstring(L, -1) ? lua_tostring(L, -1) : "?");
  abort();
}


/* At exit: the driver's teardown (removes its scratch area). */
static void teardown(void)
{
  lua_getfield(L, LUA_REGISTRYINDEX, "fuzz.driver");
  lua_getfield(L, -1, "teardown");
  if(lua_isfunction(L, -1))
    lua_pcall(L, 0, 0, 0);
  lua_settop(L, 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  const char *repo = getenv("CLAYER_REPO");

  (void)argc;
  (void)argv;
  if(repo == NULL)
    repo = FUZZ_REPO;
  L = luaL_newstate();
  if(L == NULL)
    abort();
  luaL_openlibs(L);
  clayer_preload(L);
  /* package.path: the repository's scripts and the drivers */
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s/tests/fuzz/?.lua",
                  repo, repo, repo);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushstring(L, "fuzz_" FUZZ_TARGET);
  if(lua_pcall(L, 1, 1, 0) != LUA_OK)
    die("loading the driver");
  lua_getfield(L, -1, "setup");
  if(lua_pcall(L, 0, 0, 0) != LUA_OK)
    die("setup");
  lua_getfield(L, -1, "check");
  check_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_setfield(L, LUA_REGISTRYINDEX, "fuzz.driver");
  atexit(teardown);
  lua_sethook(L, line_hook, LUA_MASKLINE, 0);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
  lua_pushlstring(L, (const char *)data, size);
  if(lua_pcall(L, 1, 0, 0) != LUA_OK)
    die("check");
  if(++runs % 64 == 0)
    lua_gc(L, LUA_GCCOLLECT);
  return 0;
}
