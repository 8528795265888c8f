--- SIGTERM stops clayer-lua wherever it waits: in a system call (a FIFO,
-- a pipe, a lock), in a child process, in a download.  Each test starts
-- clayer-lua on a script that writes a ready file and then blocks, sends
-- SIGTERM once the file is there, and expects exit 130 within seconds
-- (timeout(1) sends SIGKILL after 10 s: 137).
local lu = require "luaunit"
local h = require "helper"

TestInterrupt = {}

function TestInterrupt:tearDown()
   h.cleanup()
end

-- In dir, start `cmd` in the background (its output into dir/out) under
-- timeout(1); once the shell test `ready` holds, send SIGTERM (`signals`
-- times, 0.5 s apart) to the pid `target` expands to, and wait.  Returns
-- the exit status, the seconds from the first SIGTERM to the exit, and
-- the output.
local function stop(dir, cmd, ready, target, signals)
   local out = h.sh("cd " .. h.q(dir) .. " && { timeout -s KILL 10 "
      .. cmd .. " > out 2>&1 & pid=$!; "
      .. "for i in $(seq 100); do " .. ready .. " && break; sleep 0.05; "
      .. "done; sleep 0.3; t0=$(date +%s.%N); kill -TERM " .. target .. "; "
      .. "for i in $(seq 2 " .. (signals or 1) .. "); do sleep 0.5; "
      .. "kill -TERM " .. target .. "; done; "
      .. "wait $pid; st=$?; t1=$(date +%s.%N); "
      .. "echo status=$st $t0 $t1; }")
   local status, t0, t1 = out:match("status=(%d+) ([%d.]+) ([%d.]+)")
   return tonumber(status), t1 and tonumber(t1) - tonumber(t0),
      h.read(dir .. "/out")
end

-- Run `script` (Lua text; READY and DIR are set for it) with clayer-lua;
-- SIGTERM goes to the pid the script writes into READY.
local function term(dir, script, signals)
   local file = dir .. "/script.lua"
   h.write(file, ("local READY, DIR = %q, %q\n"):format(dir .. "/ready", dir)
      .. script)
   return stop(dir, h.q(h.bin) .. " " .. h.q(file), "[ -e ready ]",
      "$(cat ready)", signals)
end

local function assert_stopped(status, secs, out)
   lu.assertEquals(status, 130, out)
   lu.assertTrue(secs < 5, "took " .. tostring(secs) .. " s")
   lu.assertStrContains(out, "interrupted")
end

local READY = [[
local function ready()
   local f = io.open(READY .. ".tmp", "w")
   f:write(io.open("/proc/self/stat"):read("n"))
   f:close()
   os.rename(READY .. ".tmp", READY)
end
]]

function TestInterrupt:test_open_of_a_fifo()
   local dir = h.tmpdir()
   h.sh("mkfifo " .. h.q(dir .. "/fifo"))
   assert_stopped(term(dir, READY .. [[
ready()
io.open(DIR .. "/fifo", "r")     -- no writer: open blocks
print("not interrupted")
]]))
end

function TestInterrupt:test_hash_of_a_fifo()
   local dir = h.tmpdir()
   h.sh("mkfifo " .. h.q(dir .. "/fifo"))
   assert_stopped(term(dir, READY .. [[
ready()
require("clayer.hash").file(DIR .. "/fifo")
print("not interrupted")
]]))
end

-- A read of a pipe whose writer stays silent: fs.read's loop retried
-- EINTR.
function TestInterrupt:test_read_of_a_silent_pipe()
   local dir = h.tmpdir()
   h.sh("mkfifo " .. h.q(dir .. "/fifo"))
   local writer = h.sh("{ exec 3> " .. h.q(dir .. "/fifo")
      .. "; exec sleep 30; } >/dev/null 2>&1 & echo $!"):match("%d+")
   local status, secs, out = term(dir, READY .. [[
ready()
require("clayer.fs").read(DIR .. "/fifo")
print("not interrupted")
]])
   h.sh("kill " .. writer)
   assert_stopped(status, secs, out)
end

-- A process holding flock(2) on path for 30 s; its pid, once it holds it.
local function hold(path)
   local pid = h.sh("{ flock 9 && exec sleep 30; } 9> " .. h.q(path)
      .. " >/dev/null 2>&1 & echo $!"):match("%d+")
   h.sh("for i in $(seq 100); do flock -n " .. h.q(path)
      .. " true || break; sleep 0.05; done")
   return pid
end

-- flock(2) restarts after a handler with SA_RESTART: a run waiting for
-- another run's lock could not be stopped.
function TestInterrupt:test_waiting_for_a_lock()
   local dir = h.tmpdir()
   local holder = hold(dir .. "/lock")
   local status, secs, out = term(dir, READY .. [[
local fs = require "clayer.fs"
ready()
fs.lock(DIR .. "/lock")
print("not interrupted")
]])
   h.sh("kill " .. holder)
   assert_stopped(status, secs, out)
end

-- The child gets SIGTERM too, and is reaped before clayer exits.
function TestInterrupt:test_child_process_is_stopped()
   local dir = h.tmpdir()
   local status, secs, out = term(dir, [[
require("clayer.proc").run({ "sh", "-c",
   "echo $$ > child; echo $PPID > r; mv r ready; exec sleep 1000" },
   { cwd = DIR })
print("not interrupted")
]])
   assert_stopped(status, secs, out)
   local child = assert(h.read(dir .. "/child")):match("%d+")
   local _, alive = h.sh("kill -0 " .. child)
   lu.assertNotEquals(alive, 0, "child " .. child .. " still runs")
end

-- A background job of the child that ignores SIGTERM is killed with the
-- group after the grace period, even though the child itself is gone.
function TestInterrupt:test_background_job_ignoring_sigterm_is_killed()
   local dir = h.tmpdir()
   local status, secs, out = term(dir, [[
require("clayer.proc").run({ "sh", "-c",
   "(trap '' TERM INT; echo $$ > /dev/null; exec sleep 1000) & "
   .. "echo $! > job; echo $PPID > r; mv r ready; wait" },
   { cwd = DIR })
print("not interrupted")
]])
   assert_stopped(status, secs, out)
   local job = assert(h.read(dir .. "/job")):match("%d+")
   -- gone, or a zombie waiting for whoever inherited it
   h.sh("sleep 0.2")
   local state = h.sh("ps -o stat= -p " .. job):match("%S")
   if state and state ~= "Z" then h.sh("kill -9 " .. job) end
   lu.assertTrue(state == nil or state == "Z",
      "background job " .. job .. " still runs (" .. tostring(state) .. ")")
end

-- A server on 127.0.0.1 that accepts and never answers (it ends by
-- itself after a minute): its pid and port.
local function silent_server(dir)
   local pid = h.sh("cd " .. h.q(dir) .. " && { python3 -c '"
      .. "import os, socket, time\n"
      .. "s = socket.socket(); s.bind((\"127.0.0.1\", 0)); s.listen(8)\n"
      .. "open(\"port.tmp\", \"w\").write(str(s.getsockname()[1]))\n"
      .. "os.rename(\"port.tmp\", \"port\")\n"
      .. "s.settimeout(60); c = s.accept(); time.sleep(60)' "
      .. ">/dev/null 2>&1 & echo $!; }"):match("%d+")
   h.sh("for i in $(seq 100); do [ -e " .. h.q(dir .. "/port")
      .. " ] && break; sleep 0.05; done")
   return pid, assert(h.read(dir .. "/port"))
end

function TestInterrupt:test_download_from_a_silent_server()
   local dir = h.tmpdir()
   local pid, port = silent_server(dir)
   local status, secs, out = term(dir, READY .. [[
ready()
require("clayer.http").request { url = "http://127.0.0.1:]] .. port
      .. [[/x", idle_timeout = 1000, connect_timeout = 1000 }
print("not interrupted")
]])
   h.sh("kill " .. pid)
   assert_stopped(status, secs, out)
end

-- The kernel may hand a process's signal to any of its threads.  Sent
-- to a download's thread while the main thread waits on a FIFO, it must
-- still end the wait.
function TestInterrupt:test_signal_taken_by_another_thread()
   local dir = h.tmpdir()
   local pid, port = silent_server(dir)
   h.sh("mkfifo " .. h.q(dir .. "/fifo"))
   local file = dir .. "/script.lua"
   h.write(file, ([[
local t = assert(require("clayer.http").start {
   url = "http://127.0.0.1:%s/x", output = %q, idle_timeout = 1000 })
io.open(%q, "w"):close()
io.open(%q, "r")
print("not interrupted")
]]):format(port, dir .. "/body", dir .. "/ready", dir .. "/fifo"))
   -- the one task of clayer-lua (under timeout) that is not the main one
   local status, secs, out = stop(dir, h.q(h.bin) .. " " .. h.q(file),
      "[ -e ready ]", "$(ls /proc/$(pgrep -P $pid)/task | "
      .. "grep -vx $(pgrep -P $pid) | head -n 1)")
   h.sh("kill " .. pid)
   assert_stopped(status, secs, out)
end

-- A second SIGTERM while the first is being handled changes nothing: the
-- cleanup after the first (here a second of Lua work) runs to its end.
function TestInterrupt:test_second_signal_does_not_cut_the_cleanup()
   local dir = h.tmpdir()
   local status, secs, out = term(dir, READY .. [[
local ok, err = pcall(function()
   ready()
   while true do end
end)
local t = os.clock()
while os.clock() - t < 1.2 do end   -- the second SIGTERM comes meanwhile
io.open(DIR .. "/cleaned", "w"):close()
error(err, 0)
]], 2)
   lu.assertNotNil(h.read(dir .. "/cleaned"), out)
   assert_stopped(status, secs, out)
end

-- The CLI waiting for the lock of another run on the same root.
function TestInterrupt:test_cli_waiting_for_the_state_lock()
   local dir = h.tmpdir()
   local state = dir .. "/root/var/lib/clayer"
   h.sh("mkdir -p " .. h.q(state) .. " " .. h.q(dir .. "/ctx"))
   h.write(dir .. "/ctx/Containerfile", "RUN touch /built\n")
   local holder = hold(state .. "/lock")
   local link = h.bin:gsub("clayer%-lua$", "clayer")
   local status, secs, out = stop(dir, "sh -c " .. h.q("cd ctx && exec "
      .. h.q(link) .. " build Containerfile --no-push --root ../root "
      .. "--cache dir:../cache"), "grep -q 'waiting for another' out",
      "$pid")
   h.sh("kill " .. holder)
   assert_stopped(status, secs, out)
   lu.assertStrContains(out, "clayer: interrupted\n")
   lu.assertNil(h.read(dir .. "/root/built"))
end
