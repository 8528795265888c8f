--- clayer.proc: child processes, their output, timeouts and helpers.
local lu = require "luaunit"
local h = require "helper"
local proc = require "clayer.proc"

-- How many processes have `marker` in their command line (pgrep -f).
local function count_procs(marker)
   -- the bracket keeps pgrep from matching the shell that runs it
   local pat = "[" .. marker:sub(1, 1) .. "]" .. marker:sub(2)
   local out = h.sh("pgrep -f " .. h.q(pat) .. " || true")
   local n = 0
   for _ in out:gmatch("%d+") do n = n + 1 end
   return n
end

-- How many pipes this process has open, counted by a child of proc.run
-- that waits for the end of its stdin: by then the parent has settled and
-- holds one pipe of its own for this run, the output.
local function open_pipes()
   collectgarbage()
   collectgarbage()
   local r = proc.run({"/bin/sh", "-c", "cat >/dev/null; exec find "
      .. "/proc/" .. proc.getpid() .. "/fd -lname 'pipe:*'"},
      {stdin = "x", capture = true})
   local n = 0
   for _ in r.output:gmatch("\n") do n = n + 1 end
   return n
end

TestProc = {}

function TestProc:tearDown()
   h.cleanup()
end

function TestProc:test_exit_code_and_merged_output()
   local r = assert(proc.run("echo out; echo err >&2; exit 3"))
   lu.assertEquals(r.code, 3)
   lu.assertNil(r.signal)
   lu.assertFalse(r.timed_out)
   lu.assertEquals(r.tail, {"out", "err"})
   lu.assertNil(r.output)
end

function TestProc:test_killed_by_signal()
   local r = assert(proc.run("kill -9 $$"))
   lu.assertNil(r.code)
   lu.assertEquals(r.signal, 9)
   lu.assertFalse(r.timed_out)
end

function TestProc:test_timeout_kills_the_group()
   local marker = "clayer-spec-timeout-" .. proc.getpid()
   local t0 = proc.clock()
   -- a child of the shell in the background: only a group kill gets it
   local r = assert(proc.run("(exec -a " .. marker .. " sleep 30) & exec -a "
      .. marker .. " sleep 30",
      {shell = {"/bin/bash", "-c"}, timeout = 0.3}))
   local elapsed = proc.clock() - t0
   lu.assertTrue(r.timed_out)
   lu.assertEquals(r.signal, 15)
   lu.assertTrue(elapsed < 5, "took " .. elapsed)
   lu.assertTrue(elapsed >= 0.3)
   lu.assertEquals(count_procs(marker), 0)
end

function TestProc:test_timeout_escalates_to_sigkill()
   local t0 = proc.clock()
   local r = assert(proc.run({"/bin/bash", "-c",
      "trap '' TERM; while :; do sleep 0.05; done"}, {timeout = 0.2}))
   local elapsed = proc.clock() - t0
   lu.assertTrue(r.timed_out)
   lu.assertEquals(r.signal, 9)
   lu.assertTrue(elapsed >= 2 and elapsed < 5, "took " .. elapsed)
end

function TestProc:test_on_line_gets_lines_in_order()
   local got = {}
   local r = assert(proc.run("seq 1 500; printf 'last-no-newline'",
      {on_line = function(line) got[#got + 1] = line end}))
   lu.assertEquals(r.code, 0)
   lu.assertEquals(#got, 501)
   for i = 1, 500 do lu.assertEquals(got[i], tostring(i)) end
   lu.assertEquals(got[501], "last-no-newline")
end

function TestProc:test_empty_lines_are_lines()
   local got = {}
   proc.run("printf 'a\\n\\nb\\n'",
      {on_line = function(line) got[#got + 1] = line end})
   lu.assertEquals(got, {"a", "", "b"})
end

function TestProc:test_tail_keeps_last_n()
   local r = assert(proc.run("seq 1 1000", {tail_lines = 3}))
   lu.assertEquals(r.tail, {"998", "999", "1000"})
   r = assert(proc.run("seq 1 30"))
   lu.assertEquals(#r.tail, 20)
   lu.assertEquals(r.tail[1], "11")
   r = assert(proc.run("seq 1 5", {tail_lines = 0}))
   lu.assertEquals(r.tail, {})
   r = assert(proc.run("seq 1 2", {tail_lines = 5}))
   lu.assertEquals(r.tail, {"1", "2"})
end

function TestProc:test_capture_returns_all_bytes()
   local r = assert(proc.run({"printf", "a\\nb\\0c"}, {capture = true}))
   lu.assertEquals(r.output, "a\nb\0c")
   local big = assert(proc.run("head -c 300000 /dev/zero | tr '\\0' x",
      {capture = true}))
   lu.assertEquals(#big.output, 300000)
end

function TestProc:test_env_replaces_environment()
   local r = assert(proc.run({"env"}, {env = {FOO = "bar baz",
      PATH = "/usr/bin:/bin"}, capture = true}))
   local lines = {}
   for l in r.output:gmatch("[^\n]+") do lines[#lines + 1] = l end
   table.sort(lines)
   lu.assertEquals(lines, {"FOO=bar baz", "PATH=/usr/bin:/bin"})
end

function TestProc:test_argv_uses_path_from_env()
   local dir = h.tmpdir()
   h.write(dir .. "/only-here", "#!/bin/sh\necho found-it\n")
   os.execute("chmod 755 " .. h.q(dir .. "/only-here"))
   local r = assert(proc.run({"only-here"}, {env = {PATH = dir}}))
   lu.assertEquals(r.code, 0)
   lu.assertEquals(r.tail, {"found-it"})
   r = assert(proc.run({"only-here"}, {env = {PATH = "/usr/bin"}}))
   lu.assertEquals(r.code, 127)
end

function TestProc:test_default_env_is_current()
   proc.setenv("CLAYER_SPEC_VAR", "v1")
   lu.assertEquals(proc.getenv().CLAYER_SPEC_VAR, "v1")
   local r = assert(proc.run("echo $CLAYER_SPEC_VAR"))
   lu.assertEquals(r.tail, {"v1"})
   proc.setenv("CLAYER_SPEC_VAR", nil)
   lu.assertNil(proc.getenv().CLAYER_SPEC_VAR)
   lu.assertNil(os.getenv("CLAYER_SPEC_VAR"))
end

function TestProc:test_cwd()
   local dir = h.tmpdir()
   local r = assert(proc.run({"pwd"}, {cwd = dir}))
   lu.assertEquals(r.tail, {dir})
   r = assert(proc.run({"pwd"}, {cwd = dir .. "/missing"}))
   lu.assertEquals(r.code, 127)
   lu.assertStrContains(r.tail[1], "chdir: ")
   lu.assertStrContains(r.tail[1], "No such file or directory")
end

function TestProc:test_argv_argument_with_space_is_one_argument()
   local r = assert(proc.run({"/bin/sh", "-c", 'echo "$#:$1"', "sh",
      "a b  c"}))
   lu.assertEquals(r.tail, {"1:a b  c"})
end

function TestProc:test_missing_executable_is_127()
   local r = assert(proc.run({"clayer-no-such-program"}))
   lu.assertEquals(r.code, 127)
   lu.assertEquals(r.tail,
      {"exec: clayer-no-such-program: No such file or directory"})
   r = assert(proc.run({"/nonexistent/prog"}))
   lu.assertEquals(r.code, 127)
end

function TestProc:test_stdin_is_dev_null_by_default()
   local t0 = proc.clock()
   local r = assert(proc.run({"cat"}, {timeout = 10}))
   lu.assertEquals(r.code, 0)
   lu.assertFalse(r.timed_out)
   lu.assertEquals(r.tail, {})
   lu.assertTrue(proc.clock() - t0 < 5)
   r = assert(proc.run("readlink /proc/self/fd/0"))
   lu.assertEquals(r.tail, {"/dev/null"})
end

function TestProc:test_stdin_string_is_fed()
   local r = assert(proc.run({"cat"}, {stdin = "one\ntwo"}))
   lu.assertEquals(r.tail, {"one", "two"})
   -- larger than a pipe buffer while the child also writes: no deadlock
   local big = ("0123456789abcdef"):rep(65536)
   r = assert(proc.run({"cat"}, {stdin = big, capture = true,
      timeout = 20}))
   lu.assertFalse(r.timed_out)
   lu.assertEquals(r.output, big)
   -- a child that does not read it
   r = assert(proc.run({"true"}, {stdin = big}))
   lu.assertEquals(r.code, 0)
end

function TestProc:test_error_in_on_line_propagates_and_leaves_no_child()
   local marker = "clayer-spec-online-" .. proc.getpid()
   local before = open_pipes()
   local ok, err = pcall(proc.run,
      "echo first; exec -a " .. marker .. " sleep 30",
      {shell = {"/bin/bash", "-c"},
       on_line = function(line) error("stop at " .. line, 0) end})
   lu.assertFalse(ok)
   lu.assertEquals(err, "stop at first")
   lu.assertEquals(count_procs(marker), 0)
   lu.assertEquals(open_pipes(), before)
   -- no zombie left behind either
   local kids = h.sh("ps -o stat= --ppid " .. proc.getpid())
   lu.assertNotStrContains(kids, "Z")
end

function TestProc:test_chroot_into_root()
   if proc.getuid() ~= 0 then
      lu.skip("chroot needs root")
   end
   local r = assert(proc.run({"pwd"}, {chroot = "/", cwd = "/usr"}))
   lu.assertEquals(r.code, 0)
   lu.assertEquals(r.tail, {"/usr"})
   r = assert(proc.run({"pwd"}, {chroot = "/"}))
   lu.assertEquals(r.tail, {"/"})
   r = assert(proc.run({"true"}, {chroot = "/nonexistent-root"}))
   lu.assertEquals(r.code, 127)
   lu.assertStrContains(r.tail[1], "chroot: /nonexistent-root: ")
end

function TestProc:test_custom_shell()
   local r = assert(proc.run("echo $0 $1", {shell = {"/bin/sh", "-c"}}))
   lu.assertEquals(r.tail, {"/bin/sh"})
   r = assert(proc.run("x", {shell = {"/bin/echo", "via"}}))
   lu.assertEquals(r.tail, {"via x"})
end

function TestProc:test_no_descriptor_leaks_into_child()
   local dir = h.tmpdir()
   local f = assert(io.open(dir .. "/held", "w"))   -- not close-on-exec
   local r = assert(proc.run("ls /proc/self/fd", {capture = true}))
   f:close()
   local fds = {}
   for fd in r.output:gmatch("%d+") do fds[#fds + 1] = tonumber(fd) end
   table.sort(fds)
   -- 0, 1, 2 and the one ls opened to read the folder
   lu.assertTrue(#fds <= 4, r.output)
end

function TestProc:test_misuse_raises()
   lu.assertErrorMsgContains("unknown option", proc.run, "true",
      {bogus = 1})
   lu.assertError(proc.run, {})
   lu.assertError(proc.run, 42)
   lu.assertError(proc.run, {"echo", 1})
   lu.assertError(proc.run, "true", {timeout = "soon"})
   lu.assertError(proc.run, "true", {on_line = "x"})
   lu.assertError(proc.run, "true", {env = {A = {}}})
end

function TestProc:test_small_helpers()
   local u = proc.uname()
   lu.assertEquals(u.sysname, "Linux")
   lu.assertEquals(u.machine, (h.sh("uname -m"):gsub("%s+$", "")))
   lu.assertEquals(proc.getuid(), tonumber((h.sh("id -u"))))
   lu.assertEquals(math.type(proc.getpid()), "integer")
   lu.assertFalse(proc.isatty(-1))
   lu.assertFalse(proc.isatty(99))
   lu.assertTrue(math.abs(proc.time() - os.time()) < 2)
   local t0 = proc.clock()
   lu.assertTrue(proc.sleep(0.05))
   local dt = proc.clock() - t0
   lu.assertTrue(dt >= 0.05 and dt < 1, dt)
   lu.assertEquals(math.type(proc.clock()), "float")
end
