/*
 * main.c: the clayer-lua host.
 *
 * clayer-lua behaves like the lua interpreter with the clayer modules
 * preloaded: the C modules of this runtime, and the Lua policy scripts
 * compiled into the binary.  Scripts on disk win over the embedded ones
 * ($CLAYER_LUA_PATH, then ~/.config/clayer/lua), so users can edit policy
 * without rebuilding.  Called through a link named "clayer", it runs the
 * command line interface in lua/clayer/cli.lua.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lualib.h>

#include "clayer.h"

struct script {
  const char *name;               /* module name: "clayer.cli" */
  const char *path;               /* relative path: "clayer/cli.lua" */
  const unsigned char *data;
  size_t size;
};

extern const struct script clayer_scripts[];   /* generated: embedded.c */

volatile sig_atomic_t clayer_interrupted = 0;

static const char *progname = "clayer-lua";
static lua_State *global_L;
static pthread_t main_thread;

#define MAX_OVERRIDES 2
static char *overrides[MAX_OVERRIDES];
static int n_overrides;


static void report(const char *msg)
{
  fprintf(stderr, "%s: %s\n", progname, msg);
  fflush(stderr);
}


/* Turn SIGINT and SIGTERM into a Lua error at the next instruction. */
static void stop_hook(lua_State *L, lua_Debug *ar)
{
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted");
}

static void on_signal(int sig);

/* Handle SIGINT and SIGTERM with `handler`; flags 0 or SA_RESTART. */
static void set_handlers(void (*handler)(int), int flags)
{
  struct sigaction sa;

  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sa.sa_flags = flags;
  sigemptyset(&sa.sa_mask);
  sigaddset(&sa.sa_mask, SIGINT);        /* one handler at a time */
  sigaddset(&sa.sa_mask, SIGTERM);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

/*
 * The first SIGINT or SIGTERM sets clayer_interrupted and arms the hook.
 * The handler is installed without SA_RESTART, so a call blocked in the
 * kernel (open of a FIFO, read of a pipe, flock, waitpid) returns EINTR,
 * and the runtime's loops give up with "interrupted" instead of retrying.
 * A signal another thread took (a download's, the decompression's) is
 * passed on to the main thread, the one that may be blocked.
 *
 * Later signals change nothing: the hook is not armed again and from then
 * on calls restart, so that the cleanup that follows the first one (Lua
 * error handlers, a restore's rollback) is not cut short.  SIGKILL still
 * stops clayer at once; the rollback journal puts the root back on the
 * next run.
 */
static void on_signal(int sig)
{
  int saved = errno;

  if(!pthread_equal(pthread_self(), main_thread))
    pthread_kill(main_thread, sig);
  else if(!clayer_interrupted) {
    clayer_interrupted = 1;
    lua_sethook(global_L, stop_hook,
                LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
    set_handlers(on_signal, SA_RESTART);
  }
  errno = saved;
}


static int msghandler(lua_State *L)
{
  const char *msg = lua_tostring(L, 1);

  if(msg == NULL) {
    if(luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  if(getenv("CLAYER_TRACEBACK") || strstr(msg, "interrupted") == NULL)
    luaL_traceback(L, L, msg, 1);
  return 1;
}


/* Call the function below nargs arguments; report an error.  */
static int docall(lua_State *L, int nargs, int nres)
{
  int status;
  int base = lua_gettop(L) - nargs;

  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  global_L = L;
  set_handlers(on_signal, clayer_interrupted ? SA_RESTART : 0);
  status = lua_pcall(L, nargs, nres, base);
  if(!clayer_interrupted)               /* else: later ones stay ignored */
    set_handlers(SIG_DFL, 0);
  lua_remove(L, base);
  return status;
}


static int check(lua_State *L, int status)
{
  if(status != LUA_OK) {
    report(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return status == LUA_OK;
}


/* An override folder counts only when nobody else can write into it. */
static void add_override(const char *dir)
{
  struct stat st;
  char vpath[4096];
  FILE *f;

  if(dir == NULL || *dir == '\0' || n_overrides == MAX_OVERRIDES)
    return;
  if(stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
    return;
  if((st.st_mode & (S_IWGRP | S_IWOTH)) ||
     (st.st_uid != geteuid() && st.st_uid != 0)) {
    fprintf(stderr, "clayer: warning: ignoring Lua override folder %s: "
            "writable by others or owned by another user\n", dir);
    return;
  }
  snprintf(vpath, sizeof vpath, "%s/clayer/VERSION", dir);
  f = fopen(vpath, "r");
  if(f) {
    char v[64] = "";
    if(fgets(v, sizeof v, f))
      v[strcspn(v, "\r\n")] = '\0';
    fclose(f);
    if(strcmp(v, CLAYER_VERSION) != 0)
      fprintf(stderr, "clayer: warning: Lua override folder %s was written "
              "for clayer %s; this is clayer %s\n", dir, v, CLAYER_VERSION);
  }
  overrides[n_overrides++] = strdup(dir);
}


static void find_overrides(void)
{
  const char *home = getenv("HOME");
  char buf[4096];

  add_override(getenv("CLAYER_LUA_PATH"));
  if(home) {
    snprintf(buf, sizeof buf, "%s/.config/clayer/lua", home);
    add_override(buf);
  }
}


/* A file of an override folder, and the folder holding it, must not be
   writable by others either. */
static int trusted(const char *file)
{
  char dir[4608];
  char *slash;
  struct stat st;

  snprintf(dir, sizeof dir, "%s", file);
  slash = strrchr(dir, '/');
  if(slash)
    *slash = '\0';
  for(const char *p = file; p; p = p == file ? dir : NULL) {
    if(stat(p, &st) != 0 || (st.st_mode & (S_IWGRP | S_IWOTH)) ||
       (st.st_uid != geteuid() && st.st_uid != 0)) {
      fprintf(stderr, "clayer: warning: ignoring %s: it or its folder is "
              "writable by others or owned by another user\n", file);
      return 0;
    }
  }
  return 1;
}


static int load_file(lua_State *L, const char *name, const char *file)
{
  if(luaL_loadfilex(L, file, "t") != LUA_OK)
    return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s",
                      name, file, lua_tostring(L, -1));
  lua_pushstring(L, file);
  return 2;
}


/*
 * package.searchers entry for "clayer" and "clayer.*": the override
 * folders first, then the copy compiled into the binary.
 */
static int search_clayer(lua_State *L)
{
  const char *name = luaL_checkstring(L, 1);
  const struct script *s;
  char rel[512], file[4608];
  size_t i;
  int d;

  if(strcmp(name, "clayer") != 0 && strncmp(name, "clayer.", 7) != 0)
    return 0;
  if(strlen(name) >= sizeof rel - 16)
    return 0;
  for(i = 0; name[i]; i++)
    rel[i] = name[i] == '.' ? '/' : name[i];
  rel[i] = '\0';
  for(d = 0; d < n_overrides; d++) {
    snprintf(file, sizeof file, "%s/%s.lua", overrides[d], rel);
    if(access(file, R_OK) == 0 && trusted(file))
      return load_file(L, name, file);
    snprintf(file, sizeof file, "%s/%s/init.lua", overrides[d], rel);
    if(access(file, R_OK) == 0 && trusted(file))
      return load_file(L, name, file);
  }
  for(s = clayer_scripts; s->name; s++) {
    if(strcmp(s->name, name) == 0) {
      lua_pushfstring(L, "@%s", s->path);
      if(luaL_loadbufferx(L, (const char *)s->data, s->size,
                          lua_tostring(L, -1), "t") != LUA_OK)
        return luaL_error(L, "error loading embedded module '%s':\n\t%s",
                          name, lua_tostring(L, -1));
      lua_pushfstring(L, "[embedded] %s", s->path);
      return 2;
    }
  }
  lua_pushfstring(L, "no embedded script '%s'", name);
  return 1;
}


/* clayer.embedded: the scripts compiled in, for 'clayer scripts export'. */
static int embedded_list(lua_State *L)
{
  const struct script *s;

  lua_newtable(L);
  for(s = clayer_scripts; s->name; s++) {
    lua_pushlstring(L, (const char *)s->data, s->size);
    lua_setfield(L, -2, s->path);
  }
  return 1;
}


static int luaopen_clayer_embedded(lua_State *L)
{
  lua_newtable(L);
  lua_pushcfunction(L, embedded_list);
  lua_setfield(L, -2, "scripts");
  lua_pushstring(L, CLAYER_VERSION);
  lua_setfield(L, -2, "version");
  lua_newtable(L);
  for(int d = 0; d < n_overrides; d++) {
    lua_pushstring(L, overrides[d]);
    lua_rawseti(L, -2, d + 1);
  }
  lua_setfield(L, -2, "overrides");
  return 1;
}


static void open_clayer(lua_State *L)
{
  clayer_preload(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_clayer_embedded);
  lua_setfield(L, -2, "clayer.embedded");
  lua_pop(L, 1);

  /* package.searchers: preload, clayer, then the usual Lua and C paths */
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchers");
  for(lua_Integer i = luaL_len(L, -1); i >= 2; i--) {
    lua_rawgeti(L, -1, i);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushcfunction(L, search_clayer);
  lua_rawseti(L, -2, 2);
  lua_pop(L, 2);
}


static void create_arg_table(lua_State *L, char **argv, int argc, int script)
{
  lua_createtable(L, argc - script - 1, script + 1);
  for(int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}


static int run_script(lua_State *L, const char *file, char **argv,
                      int argc, int script)
{
  int status, n;

  if(file && strcmp(file, "-") == 0)
    file = NULL;
  status = luaL_loadfile(L, file);
  if(status == LUA_OK) {
    n = argc - script - 1;
    luaL_checkstack(L, n + 3, "too many arguments to script");
    for(int i = script + 1; i < argc; i++)
      lua_pushstring(L, argv[i]);
    status = docall(L, n, 0);
  }
  return check(L, status);
}


static int run_require(lua_State *L, const char *spec)
{
  const char *eq = strchr(spec, '=');
  const char *global = spec, *mod = spec;

  if(eq) {
    mod = eq + 1;
    lua_pushlstring(L, spec, eq - spec);
    global = lua_tostring(L, -1);
  }
  lua_getglobal(L, "require");
  lua_pushstring(L, mod);
  if(!check(L, docall(L, 1, 1)))
    return 0;
  lua_setglobal(L, eq ? global : mod);
  if(eq)
    lua_pop(L, 1);
  return 1;
}


static void usage(void)
{
  fprintf(stderr,
          "usage: %s [options] [script [args]]\n"
          "  -e stat   execute string 'stat'\n"
          "  -l mod    require library 'mod' into global 'mod'\n"
          "  -v        show version information\n"
          "  --        stop handling options\n"
          "  -         execute stdin and stop handling options\n"
          "Called as 'clayer', it runs the clayer command line.\n",
          progname);
}


/* The lua(1)-style front: options, then a script or stdin. */
static int lua_main(lua_State *L, int argc, char **argv)
{
  int i, ran = 0;

  for(i = 1; i < argc; i++) {
    const char *a = argv[i];
    if(a[0] != '-' || strcmp(a, "-") == 0)
      break;
    if(strcmp(a, "--") == 0) {
      i++;
      break;
    }
    if(strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) {
      printf("clayer-lua %s (%s)\n", CLAYER_VERSION, LUA_RELEASE);
      ran = 1;
    }
    else if(strcmp(a, "-e") == 0 || strcmp(a, "-l") == 0) {
      const char *v = argv[++i];
      if(v == NULL) {
        usage();
        return 2;
      }
      create_arg_table(L, argv, argc, 0);
      if(a[1] == 'e') {
        if(!check(L, luaL_loadstring(L, v)) || !check(L, docall(L, 0, 0)))
          return 1;
        ran = 1;
      }
      else if(!run_require(L, v))
        return 1;
    }
    else if(strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage();
      return 0;
    }
    else {
      usage();
      return 2;
    }
  }
  if(i < argc) {
    create_arg_table(L, argv, argc, i);
    return run_script(L, argv[i], argv, argc, i) ? 0 : 1;
  }
  if(!ran) {
    create_arg_table(L, argv, argc, argc - 1);
    return run_script(L, NULL, argv, argc, argc - 1) ? 0 : 1;
  }
  return 0;
}


/* The 'clayer' front: cli.main(args) returns the exit status. */
static int cli_main(lua_State *L, int argc, char **argv)
{
  int status;

  create_arg_table(L, argv, argc, 0);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "clayer.cli");
  if(!check(L, docall(L, 1, 1)))
    return 1;
  lua_getfield(L, -1, "main");
  lua_createtable(L, argc - 1, 0);
  for(int i = 1; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  if(!check(L, docall(L, 1, 1)))
    return 1;
  status = (int)luaL_optinteger(L, -1, 0);
  return status;
}


int main(int argc, char **argv)
{
  const char *base = strrchr(argv[0], '/');
  lua_State *L;
  int status;

  base = base ? base + 1 : argv[0];
  main_thread = pthread_self();
  L = luaL_newstate();
  if(L == NULL) {
    report("cannot create state: not enough memory");
    return 1;
  }
  luaL_openlibs(L);
  find_overrides();
  open_clayer(L);
  if(strcmp(base, "clayer") == 0) {
    progname = "clayer";
    status = cli_main(L, argc, argv);
  }
  else
    status = lua_main(L, argc, argv);
  if(status != 0 && clayer_interrupted)
    status = 130;                       /* as the CLI: 128 + SIGINT */
  fflush(stdout);
  lua_close(L);
  return status;
}
