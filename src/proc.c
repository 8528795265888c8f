/*
 * proc.c: the clayer.proc module, child processes and a few system calls.
 *
 * proc.run forks a child in its own process group with stdout and stderr
 * merged into one pipe.  It waits on a close-on-exec pipe until the child
 * has exec'd or said why it could not, then polls the output pipe, the
 * child's stdin (when a string is fed) and a pidfd for the exit.  Each
 * output line goes to an optional Lua callback and a ring of the last
 * lines; a timeout or an interrupt stops the whole group.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#include "clayer.h"

#define PROC_RUN "clayer.proc.run"      /* internal: a running child */
#define READ_CHUNK (64 * 1024)
#define MAX_LINE (256 * 1024)           /* longer lines are cut there */
#define KILL_GRACE 2.0                  /* seconds between TERM and KILL */
#define DRAIN_AFTER_EXIT 1.0            /* seconds to read a lingering pipe */

extern char **environ;

/* What the child reports through the error pipe before _exit(127). */
enum { STEP_EXEC, STEP_CHROOT, STEP_CHDIR, STEP_SETUP };

typedef struct {
  int step;
  int err;
} child_error;

typedef struct {
  char *data;
  size_t len, cap;
} buffer;

/* One run: owned by a userdata so that an error frees it all. */
typedef struct {
  pid_t pid;                            /* 0 when none or reaped */
  int status;                           /* from waitpid once reaped */
  int out;                              /* read end of stdout+stderr */
  int in;                               /* write end of stdin, or -1 */
  int err;                              /* read end of the exec report */
  int pidfd;                            /* readable at exit, or -1 */
  buffer line;                          /* the partial last line */
  buffer capture;                       /* everything, when opts.capture */
} run_state;

/* What the child needs, prepared before fork (no allocation after). */
typedef struct {
  char **argv;
  char **envp;
  const char *cwd;
  const char *root;                     /* chroot folder, or NULL */
  int in, out, err;                     /* child ends; err: report pipe */
} child_spec;


static double now_mono(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void close_fd(int *fd)
{
  if(*fd >= 0) {
    close(*fd);
    *fd = -1;
  }
}

static int buf_add(buffer *b, const char *s, size_t n)
{
  size_t cap;
  char *p;

  if(n == 0)
    return 0;
  if(b->len + n > b->cap) {
    cap = b->cap ? b->cap : 4096;
    while(cap < b->len + n)
      cap *= 2;
    p = realloc(b->data, cap);
    if(p == NULL)
      return -1;
    b->data = p;
    b->cap = cap;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
  return 0;
}

/*
 * Reap the child if it has ended (or wait for it when block is set).
 * EINTR is retried even after SIGINT/SIGTERM: a blocking wait comes only
 * after SIGKILL, and the child must be reaped before we go on.
 */
static int reap(run_state *st, int block)
{
  pid_t r;

  if(st->pid <= 0)
    return 1;
  do
    r = waitpid(st->pid, &st->status, block ? 0 : WNOHANG);
  while(r < 0 && errno == EINTR);
  if(r == st->pid || (r < 0 && errno == ECHILD)) {
    st->pid = 0;
    close_fd(&st->pidfd);
    return 1;
  }
  return 0;
}

/* Kill the child's group at once, reap it and free everything. */
static void release(run_state *st)
{
  if(st->pid > 0) {
    kill(-st->pid, SIGKILL);
    reap(st, 1);
  }
  close_fd(&st->out);
  close_fd(&st->in);
  close_fd(&st->err);
  close_fd(&st->pidfd);
  free(st->line.data);
  free(st->capture.data);
  memset(&st->line, 0, sizeof(st->line));
  memset(&st->capture, 0, sizeof(st->capture));
}

static int run_gc(lua_State *L)
{
  release(luaL_checkudata(L, 1, PROC_RUN));
  return 0;
}

/* SIGTERM to the group, SIGKILL after the grace period; then reaped. */
static void stop_group(run_state *st)
{
  double until = now_mono() + KILL_GRACE;
  pid_t group = st->pid;

  if(group <= 0)
    return;
  kill(-group, SIGTERM);
  while(!reap(st, 0) && now_mono() < until)
    poll(NULL, 0, 20);
  /* the leader may be gone while members that ignore SIGTERM (a
     background job with `trap '' TERM`) live on: wait for the group to
     empty, then kill what is left of it */
  while(kill(-group, 0) == 0 && now_mono() < until)
    poll(NULL, 0, 20);
  kill(-group, SIGKILL);
  release(st);
}


/* ---- the child ---- */

static void child_fail(int fd, int step)
{
  child_error ce;

  ce.step = step;
  ce.err = errno;
  while(write(fd, &ce, sizeof(ce)) < 0 && errno == EINTR)
    ;
  _exit(127);
}

/* Point fd `to` at `from`, keeping it open across exec. */
static int move_fd(int from, int to)
{
  if(from == to)
    return fcntl(to, F_SETFD, 0);
  return dup2(from, to) < 0 ? -1 : 0;
}

/*
 * Runs between fork and exec: async-signal-safe calls only.  The parent
 * forked with SIGINT and SIGTERM blocked: back to their default actions
 * before unblocking, so that one sent meanwhile kills the child instead
 * of running the parent's handler in it.
 */
static void child_main(const child_spec *c)
{
  sigset_t none;

  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGPIPE, SIG_DFL);
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  setpgid(0, 0);
  if(move_fd(c->in, 0) || move_fd(c->out, 1) || move_fd(c->out, 2))
    child_fail(c->err, STEP_SETUP);
  if(c->err != 3 && dup3(c->err, 3, O_CLOEXEC) < 0)
    child_fail(c->err, STEP_SETUP);
  close_range(4, ~0U, 0);               /* no leaked descriptors */
  if(c->root) {
    if(chroot(c->root))
      child_fail(3, STEP_CHROOT);
    if(chdir(c->cwd ? c->cwd : "/"))
      child_fail(3, STEP_CHDIR);
  }
  else if(c->cwd && chdir(c->cwd))
    child_fail(3, STEP_CHDIR);
  environ = c->envp;                    /* execvpe searches its PATH */
  execvpe(c->argv[0], c->argv, c->envp);
  child_fail(3, STEP_EXEC);
}


/* ---- the parent: options ---- */

static const char *const run_options[] = {
  "env", "cwd", "chroot", "timeout", "on_line", "tail_lines", "capture",
  "shell", "stdin", NULL
};

/* Raise on an option proc.run does not know. */
static void check_options(lua_State *L, int idx)
{
  int i;

  if(lua_isnoneornil(L, idx))
    return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while(lua_next(L, idx)) {
    lua_pop(L, 1);
    for(i = 0; run_options[i]; i++)
      if(lua_type(L, -1) == LUA_TSTRING &&
         strcmp(lua_tostring(L, -1), run_options[i]) == 0)
        break;
    if(run_options[i] == NULL)
      luaL_error(L, "proc.run: unknown option '%s'", luaL_tolstring(L, -1,
                 NULL));
  }
}

/* A NULL-terminated array in a userdata left on the stack. */
static char **new_strv(lua_State *L, size_t n)
{
  char **v = lua_newuserdatauv(L, (n + 1) * sizeof(char *), 0);

  memset(v, 0, (n + 1) * sizeof(char *));
  return v;
}

/* Push the shell prefix for string commands: opts.shell or the default. */
static void push_shell(lua_State *L, int opts)
{
  int t = LUA_TNIL;

  if(lua_istable(L, opts))
    t = lua_getfield(L, opts, "shell");
  else
    lua_pushnil(L);
  if(t == LUA_TNIL) {
    lua_pop(L, 1);
    lua_createtable(L, 2, 0);
    lua_pushstring(L, "/bin/sh");
    lua_rawseti(L, -2, 1);
    lua_pushstring(L, "-c");
    lua_rawseti(L, -2, 2);
  }
  else if(t != LUA_TTABLE)
    luaL_error(L, "option 'shell': table expected, got %s",
               luaL_typename(L, -1));
  if(lua_rawlen(L, -1) == 0)
    luaL_error(L, "option 'shell': empty array");
}

/* Add the value on top to the array at keep (popping it). */
static void keep_top(lua_State *L, int keep)
{
  lua_rawseti(L, keep, (lua_Integer)lua_rawlen(L, keep) + 1);
}

/*
 * argv for cmd at index 1: the array itself, or the shell prefix plus the
 * string.  The array and its strings stay alive in the table at `keep`.
 */
static char **build_argv(lua_State *L, int opts, int keep)
{
  size_t n, pre = 0, i;
  char **argv;
  int src = 1;

  if(lua_type(L, 1) == LUA_TSTRING) {
    push_shell(L, opts);
    src = lua_gettop(L);
    pre = lua_rawlen(L, src);
  }
  else
    luaL_argexpected(L, lua_istable(L, 1), 1, "string or array");
  n = lua_rawlen(L, src);
  luaL_argcheck(L, n > 0, 1, "empty argv");
  argv = new_strv(L, pre ? pre + 1 : n);
  keep_top(L, keep);
  for(i = 0; i < n; i++) {
    if(lua_rawgeti(L, src, (lua_Integer)i + 1) != LUA_TSTRING)
      luaL_error(L, "proc.run: %s[%d] is not a string",
                 pre ? "shell" : "argv", (int)i + 1);
    argv[i] = (char *)lua_tostring(L, -1);
    keep_top(L, keep);
  }
  if(pre) {
    argv[pre] = (char *)lua_tostring(L, 1);
    lua_pop(L, 1);                      /* the shell table */
  }
  return argv;
}

/* envp from opts.env ("k=v" strings kept in `keep`), or environ. */
static char **build_envp(lua_State *L, int opts, int keep)
{
  size_t n = 0, i = 0;
  char **envp;

  if(!lua_istable(L, opts) || lua_getfield(L, opts, "env") == LUA_TNIL) {
    if(lua_istable(L, opts))
      lua_pop(L, 1);
    return environ;
  }
  if(!lua_istable(L, -1))
    luaL_error(L, "option 'env': table expected, got %s",
               luaL_typename(L, -1));
  lua_pushnil(L);
  while(lua_next(L, -2)) {
    lua_pop(L, 1);
    n++;
  }
  envp = new_strv(L, n);
  lua_rawseti(L, keep, (lua_Integer)lua_rawlen(L, keep) + 1);
  lua_pushnil(L);
  while(lua_next(L, -2)) {
    if(lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
      luaL_error(L, "option 'env': string keys and values expected");
    envp[i++] = (char *)lua_pushfstring(L, "%s=%s", lua_tostring(L, -2),
                                        lua_tostring(L, -1));
    lua_rawseti(L, keep, (lua_Integer)lua_rawlen(L, keep) + 1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);                        /* the env table */
  return envp;
}


/* ---- the parent: the loop ---- */

typedef struct {
  lua_State *L;
  run_state *st;
  int on_line;                          /* stack index of the callback, or 0 */
  int tail;                             /* stack index of the ring */
  lua_Integer tail_max, lines;
  int capture;
} sink;

/* One output line: into the ring, then to on_line.  Raises cleanly. */
static void emit(sink *s, const char *p, size_t n)
{
  lua_State *L = s->L;

  if(s->tail_max > 0) {
    lua_pushlstring(L, p, n);
    lua_rawseti(L, s->tail, s->lines % s->tail_max + 1);
  }
  s->lines++;
  if(s->on_line) {
    lua_pushvalue(L, s->on_line);
    lua_pushlstring(L, p, n);
    if(lua_pcall(L, 1, 0, 0) != LUA_OK) {
      release(s->st);                   /* no zombie, no open pipe */
      lua_error(L);
    }
  }
}

/* Split freshly read bytes into lines; keep the rest for later. */
static void feed(sink *s, const char *p, size_t n)
{
  buffer *b = &s->st->line;
  const char *nl;
  size_t take;

  if(s->capture && buf_add(&s->st->capture, p, n))
    luaL_error(s->L, "proc.run: out of memory");
  while(n > 0) {
    nl = memchr(p, '\n', n);
    take = nl ? (size_t)(nl - p) : n;
    if(take > MAX_LINE - b->len)
      take = MAX_LINE - b->len;
    if(buf_add(b, p, take))
      luaL_error(s->L, "proc.run: out of memory");
    p += take;
    n -= take;
    if(n > 0 && *p == '\n') {
      p++;
      n--;
    }
    else if(b->len < MAX_LINE)
      break;                            /* no newline yet */
    emit(s, b->data ? b->data : "", b->len);
    b->len = 0;
  }
}

/* The last line when it had no newline. */
static void flush(sink *s)
{
  buffer *b = &s->st->line;

  if(b->len > 0) {
    emit(s, b->data, b->len);
    b->len = 0;
  }
}

/* write() that turns SIGPIPE into EPIPE for this call only. */
static ssize_t write_nosigpipe(int fd, const char *p, size_t n)
{
  static const struct timespec zero = {0, 0};
  sigset_t pipe_set, old;
  ssize_t r;
  int e;

  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  r = write(fd, p, n);
  e = errno;
  if(r < 0 && e == EPIPE)
    sigtimedwait(&pipe_set, NULL, &zero);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  errno = e;
  return r;
}

/*
 * Wait until the child has exec'd (EOF on the close-on-exec pipe) or has
 * reported why it could not; the reason becomes an output line.  -1 when
 * SIGINT or SIGTERM came first (a child stuck before exec), else 0.
 */
static int read_report(sink *s, char **argv, const char *cwd,
                       const char *root)
{
  child_error ce;
  const char *what;
  ssize_t n;
  int e;

  do {
    n = read(s->st->err, &ce, sizeof(ce));
    e = n < 0 ? errno : 0;
  } while(e == EINTR && !clayer_interrupted);
  close_fd(&s->st->err);
  if(e == EINTR)
    return -1;
  if(n != (ssize_t)sizeof(ce))
    return 0;                           /* EOF: exec succeeded */
  switch(ce.step) {
  case STEP_EXEC:
    what = lua_pushfstring(s->L, "exec: %s: %s", argv[0], strerror(ce.err));
    break;
  case STEP_CHROOT:
    what = lua_pushfstring(s->L, "chroot: %s: %s", root, strerror(ce.err));
    break;
  case STEP_CHDIR:
    what = lua_pushfstring(s->L, "chdir: %s: %s", cwd ? cwd : "/",
                           strerror(ce.err));
    break;
  default:
    what = lua_pushfstring(s->L, "dup2: %s", strerror(ce.err));
    break;
  }
  emit(s, what, strlen(what));
  lua_pop(s->L, 1);
  return 0;
}

/*
 * Read what is there; at EOF close the pipe and flush the last line.
 * The pipe does not block, so EINTR is retried (at most `rounds` times).
 */
static void read_output(sink *s)
{
  char buf[READ_CHUNK];
  ssize_t n;
  int rounds = 16;                      /* then give the others a turn */

  while(rounds-- > 0) {
    n = read(s->st->out, buf, sizeof(buf));
    if(n > 0) {
      feed(s, buf, (size_t)n);
      continue;
    }
    if(n < 0 && errno == EINTR)
      continue;
    if(n < 0 && errno == EAGAIN)
      return;
    close_fd(&s->st->out);              /* EOF or a read error */
    flush(s);
    return;
  }
}

/* Write the next piece of stdin; close it when all is written or refused. */
static void write_input(run_state *st, const char *data, size_t len,
                        size_t *pos)
{
  ssize_t n = 0;

  if(*pos < len)
    n = write_nosigpipe(st->in, data + *pos, len - *pos);
  if(n > 0)
    *pos += (size_t)n;
  if(*pos >= len || (n < 0 && errno != EAGAIN && errno != EINTR))
    close_fd(&st->in);
}

static int ms_until(double t, double now)
{
  double d = (t - now) * 1000.0;

  return d <= 0 ? 0 : d > 1e6 ? 1000000 : (int)d + 1;
}

/* Add fd to the poll set when open; its index there, or -1. */
static int watch(struct pollfd *pfd, int *n, int fd, short events)
{
  if(fd < 0)
    return -1;
  pfd[*n].fd = fd;
  pfd[*n].events = events;
  pfd[*n].revents = 0;
  return (*n)++;
}

static int min_ms(int a, int b)
{
  return a < b ? a : b;
}


/* Child ends of the pipes, closed in the parent once forked. */
typedef struct {
  int in, out, err;
} child_ends;

static void close_ends(child_ends *e)
{
  close_fd(&e->in);
  close_fd(&e->out);
  close_fd(&e->err);
}

/* Make the pipes; 0 or an errno.  Parent ends go into st. */
static int open_pipes(run_state *st, child_ends *e, int feed_stdin)
{
  int fds[2];

  if(pipe2(fds, O_CLOEXEC))
    return errno;
  st->out = fds[0];
  e->out = fds[1];
  if(pipe2(fds, O_CLOEXEC))
    return errno;
  st->err = fds[0];
  e->err = fds[1];
  if(feed_stdin) {
    if(pipe2(fds, O_CLOEXEC))
      return errno;
    e->in = fds[0];
    st->in = fds[1];
    fcntl(st->in, F_SETFL, O_NONBLOCK);
  }
  else if((e->in = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
    return errno;
  fcntl(st->out, F_SETFL, O_NONBLOCK);
  return 0;
}

/* Push the ring's lines, oldest first, as an array. */
static void push_tail(sink *s)
{
  lua_Integer n = s->lines < s->tail_max ? s->lines : s->tail_max;
  lua_Integer first = s->lines - n, i;

  lua_createtable(s->L, (int)n, 0);
  for(i = 0; i < n; i++) {
    lua_rawgeti(s->L, s->tail, (first + i) % s->tail_max + 1);
    lua_rawseti(s->L, -2, i + 1);
  }
}

/* Push {code, signal, timed_out, tail, output} for a finished child. */
static void push_result(sink *s, int timed_out)
{
  lua_State *L = s->L;
  int status = s->st->status;

  lua_createtable(L, 0, 5);
  if(WIFEXITED(status)) {
    lua_pushinteger(L, WEXITSTATUS(status));
    lua_setfield(L, -2, "code");
  }
  else if(WIFSIGNALED(status)) {
    lua_pushinteger(L, WTERMSIG(status));
    lua_setfield(L, -2, "signal");
  }
  lua_pushboolean(L, timed_out);
  lua_setfield(L, -2, "timed_out");
  push_tail(s);
  lua_setfield(L, -2, "tail");
  if(s->capture) {
    lua_pushlstring(L, s->st->capture.data ? s->st->capture.data : "",
                    s->st->capture.len);
    lua_setfield(L, -2, "output");
  }
}

/*
 * proc.run(cmd [, opts]): runs cmd (argv array, or a string for the
 * shell) to the end.  Returns a result table, or nil, err, errno when no
 * child could be started, or nil, "interrupted", "interrupted".
 */
static int proc_run(lua_State *L)
{
  child_spec spec;
  child_ends ends = {-1, -1, -1};
  run_state *st;
  sink s;
  const char *input = NULL;
  size_t input_len = 0, input_pos = 0;
  double timeout, deadline = 0, kill_at = 0, exited_at = 0, now;
  int timed_out = 0, e, keep, n, wait_ms;
  struct pollfd pfd[4];
  int idx_out, idx_in;
  pid_t pid = -1;
  sigset_t stop_sigs, old_mask;

  lua_settop(L, 2);
  if(lua_type(L, 1) != LUA_TSTRING)
    luaL_checktype(L, 1, LUA_TTABLE);
  check_options(L, 2);
  memset(&s, 0, sizeof(s));
  s.L = L;
  spec.cwd = clayer_optstring(L, 2, "cwd", NULL);
  spec.root = clayer_optstring(L, 2, "chroot", NULL);
  timeout = clayer_optnumber(L, 2, "timeout", 0);
  s.tail_max = clayer_optinteger(L, 2, "tail_lines", 20);
  luaL_argcheck(L, s.tail_max >= 0, 2, "tail_lines must not be negative");
  s.capture = clayer_optboolean(L, 2, "capture", 0);
  if(lua_istable(L, 2)) {
    if(lua_getfield(L, 2, "stdin") == LUA_TSTRING)
      input = lua_tolstring(L, -1, &input_len);   /* opts holds it */
    else if(!lua_isnil(L, -1))
      luaL_error(L, "option 'stdin': string expected, got %s",
                 luaL_typename(L, -1));
    lua_pop(L, 1);
    if(lua_getfield(L, 2, "on_line") == LUA_TFUNCTION)
      s.on_line = lua_gettop(L);
    else if(!lua_isnil(L, -1))
      luaL_error(L, "option 'on_line': function expected, got %s",
                 luaL_typename(L, -1));
  }
  lua_newtable(L);
  keep = lua_gettop(L);
  lua_newtable(L);
  s.tail = lua_gettop(L);
  spec.argv = build_argv(L, 2, keep);
  spec.envp = build_envp(L, 2, keep);

  st = lua_newuserdatauv(L, sizeof(*st), 0);
  memset(st, 0, sizeof(*st));
  st->out = st->in = st->err = st->pidfd = -1;
  luaL_setmetatable(L, PROC_RUN);
  s.st = st;

  e = open_pipes(st, &ends, input != NULL);
  if(e == 0) {
    spec.in = ends.in;
    spec.out = ends.out;
    spec.err = ends.err;
    sigemptyset(&stop_sigs);
    sigaddset(&stop_sigs, SIGINT);
    sigaddset(&stop_sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_sigs, &old_mask);   /* see child_main */
    pid = fork();
    if(pid == 0)
      child_main(&spec);
    e = pid < 0 ? errno : 0;
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
  }
  close_ends(&ends);
  if(e) {
    release(st);
    return clayer_errno(L, "proc.run: fork", e);
  }
  setpgid(pid, pid);                    /* also done in the child: no race */
  st->pid = pid;
  st->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if(read_report(&s, spec.argv, spec.cwd, spec.root) < 0) {  /* exec wait */
    stop_group(st);
    return clayer_fail(L, "interrupted", "interrupted");
  }
  if(input_len == 0)
    close_fd(&st->in);

  now = now_mono();
  if(timeout > 0)
    deadline = now + timeout;
  for(;;) {
    if(st->pid > 0 && reap(st, 0))
      exited_at = now;
    if(st->pid == 0 && (st->out < 0 || now - exited_at > DRAIN_AFTER_EXIT))
      break;                            /* done, or a daemon keeps the pipe */
    if(clayer_interrupted) {
      stop_group(st);
      return clayer_fail(L, "interrupted", "interrupted");
    }
    if(deadline > 0 && !timed_out && now >= deadline && st->pid > 0) {
      timed_out = 1;
      kill(-pid, SIGTERM);
      kill_at = now + KILL_GRACE;
    }
    if(kill_at > 0 && now >= kill_at) {
      kill(-pid, SIGKILL);
      kill_at = 0;
    }

    wait_ms = st->pid == 0 ? ms_until(exited_at + DRAIN_AFTER_EXIT, now)
              : st->pidfd >= 0 ? 250 : st->out >= 0 ? 100 : 10;
    if(deadline > 0 && !timed_out)
      wait_ms = min_ms(wait_ms, ms_until(deadline, now));
    if(kill_at > 0)
      wait_ms = min_ms(wait_ms, ms_until(kill_at, now));
    n = 0;
    idx_out = watch(pfd, &n, st->out, POLLIN);
    idx_in = watch(pfd, &n, st->in, POLLOUT);
    watch(pfd, &n, st->pidfd, POLLIN);     /* wakes us at exit */
    if(poll(pfd, (nfds_t)n, wait_ms) > 0) {
      if(idx_in >= 0 && pfd[idx_in].revents)
        write_input(st, input, input_len, &input_pos);
      if(idx_out >= 0 && pfd[idx_out].revents)
        read_output(&s);
    }
    now = now_mono();
  }
  close_fd(&st->out);
  flush(&s);
  push_result(&s, timed_out);
  release(st);
  return 1;
}


/* proc.getenv(): a new table of the whole environment. */
static int proc_getenv(lua_State *L)
{
  char **e;
  const char *eq;

  lua_newtable(L);
  for(e = environ; e && *e; e++) {
    eq = strchr(*e, '=');
    if(eq == NULL)
      continue;
    lua_pushlstring(L, *e, (size_t)(eq - *e));
    lua_pushstring(L, eq + 1);
    lua_rawset(L, -3);
  }
  return 1;
}


/* proc.setenv(k, v): sets k, or removes it when v is nil; true. */
static int proc_setenv(lua_State *L)
{
  const char *k = luaL_checkstring(L, 1);
  const char *v = luaL_optstring(L, 2, NULL);

  luaL_argcheck(L, *k && strchr(k, '=') == NULL, 1, "bad variable name");
  if(v ? setenv(k, v, 1) : unsetenv(k))
    return clayer_errno(L, k, errno);
  lua_pushboolean(L, 1);
  return 1;
}


/* proc.uname(): {machine, sysname, release, version, nodename}. */
static int proc_uname(lua_State *L)
{
  struct utsname u;

  if(uname(&u))
    return clayer_errno(L, "uname", errno);
  lua_createtable(L, 0, 5);
  lua_pushstring(L, u.machine);
  lua_setfield(L, -2, "machine");
  lua_pushstring(L, u.sysname);
  lua_setfield(L, -2, "sysname");
  lua_pushstring(L, u.release);
  lua_setfield(L, -2, "release");
  lua_pushstring(L, u.version);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, u.nodename);
  lua_setfield(L, -2, "nodename");
  return 1;
}


/* proc.getuid(), proc.getpid(): integers. */
static int proc_getuid(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)getuid());
  return 1;
}

static int proc_getpid(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}


/* proc.isatty(fd): whether descriptor fd is a terminal. */
static int proc_isatty(lua_State *L)
{
  lua_Integer fd = luaL_checkinteger(L, 1);

  lua_pushboolean(L, fd >= 0 && fd <= INT_MAX && isatty((int)fd));
  return 1;
}


/* proc.clock(): monotonic seconds; proc.time(): seconds since the epoch. */
static int proc_clock(lua_State *L)
{
  lua_pushnumber(L, now_mono());
  return 1;
}

static int proc_time(lua_State *L)
{
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
  return 1;
}


/* proc.sleep(s): true after s seconds, or nil, "interrupted", ... early. */
static int proc_sleep(lua_State *L)
{
  lua_Number secs = luaL_checknumber(L, 1);
  struct timespec ts;

  luaL_argcheck(L, secs >= 0 && secs < 1e9, 1, "bad duration");
  ts.tv_sec = (time_t)secs;
  ts.tv_nsec = (long)((secs - (lua_Number)ts.tv_sec) * 1e9);
  while(nanosleep(&ts, &ts) < 0 && errno == EINTR)
    if(clayer_interrupted)
      return clayer_fail(L, "interrupted", "interrupted");
  lua_pushboolean(L, 1);
  return 1;
}


static const luaL_Reg proc_funcs[] = {
  {"run",    proc_run},
  {"getenv", proc_getenv},
  {"setenv", proc_setenv},
  {"uname",  proc_uname},
  {"getuid", proc_getuid},
  {"getpid", proc_getpid},
  {"isatty", proc_isatty},
  {"clock",  proc_clock},
  {"time",   proc_time},
  {"sleep",  proc_sleep},
  {NULL, NULL}
};

int luaopen_clayer_proc(lua_State *L)
{
  luaL_newmetatable(L, PROC_RUN);
  lua_pushcfunction(L, run_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newlib(L, proc_funcs);
  return 1;
}
