--- Crashes and failed saves (issue 7, case D13): SIGKILL during publish
-- to a dir: cache never leaves a half entry that find, ls or restore
-- take for a layer; a publish that fails (read-only cache, no space for
-- the archive) keeps the build, exits 0 with a warning, leaves no
-- temporary files and records nothing as cached.
local lu = require "luaunit"
local h = require "helper"

TestRobust = {}

local shm = {}   -- scratch folders outside /tmp, removed in tearDown

function TestRobust:tearDown()
   for _, d in ipairs(shm) do os.execute("rm -rf " .. h.q(d)) end
   shm = {}
   h.cleanup()
end

-- A scratch root with /bin/sh, a context whose Containerfile COPYs a
-- file of `mib` MiB of random bytes, and `top`/r as a fresh copy of the
-- root.
local function setup(mib, top)
   top = top or h.tmpdir()
   h.make_root(top .. "/base")
   h.sh("mkdir -p " .. top .. "/ctx && head -c " .. mib .. "M /dev/urandom > "
      .. top .. "/ctx/big && cp -a " .. top .. "/base " .. top .. "/r")
   h.write(top .. "/ctx/Containerfile",
      "COPY big /opt/big\nRUN echo built > /etc/built\n")
   return top
end

-- The shell line that runs clayer ARGS in the context folder (with
-- "exec", ARGS: clayer replaces the shell, so its pid is the shell's).
local function cmd(top, args, more)
   local link = h.bin:gsub("clayer%-lua$", "clayer")
   local exec = ""
   if args == "exec" then exec, args = "exec ", more end
   return "cd " .. h.q(top .. "/ctx") .. " && " .. exec .. h.q(link) .. " "
      .. args
end

-- Every tag folder in a dir: cache is whole: layer.json names parts
-- that are there with the sizes it gives.
local function assert_whole(cache)
   local json = require "clayer.json"
   local fs = require "clayer.fs"
   for _, name in ipairs(fs.dir(cache) or {}) do
      if name:sub(1, 1) ~= "." then
         local meta = json.decode(h.read(cache .. "/" .. name .. "/layer.json")
            or "")
         lu.assertIsTable(meta, name .. " has no layer.json")
         for _, p in ipairs(meta.parts) do
            local st = fs.stat(cache .. "/" .. name .. "/" .. p.name)
            lu.assertNotNil(st, name .. ": part " .. p.name .. " missing")
            lu.assertEquals(st.size, p.size)
         end
      end
   end
end

function TestRobust:test_sigkill_during_publish_leaves_no_half_entry()
   -- the cache is on another filesystem than /var/tmp, so publish copies
   -- the archive into CACHE/.tmp-TAG-PID before renaming it into place
   local area = h.sh("mktemp -d /dev/shm/clayer-spec.XXXXXX"):gsub("%s+$", "")
   shm[#shm + 1] = area
   local top = setup(48)
   local cache = area .. "/cache"
   local killed = false
   for _ = 1, 4 do
      local out = h.sh("bash -c " .. h.q(cmd(top, "exec", "build Containerfile "
         .. "--cache dir:" .. cache .. " --root " .. top .. "/r -q")
         .. " & pid=$!\n"
         .. "while kill -0 $pid 2>/dev/null; do\n"
         .. "  set -- " .. h.q(cache) .. "/.tmp-*\n"
         .. "  if [ -e \"$1\" ]; then kill -9 $pid; echo killed; break; fi\n"
         .. "done\nwait $pid"))
      assert_whole(cache)
      if out:find("killed") and h.sh("ls " .. cache) == "" then
         killed = true
         break
      end
      -- the build won the race: start again from a fresh root and cache
      h.sh("rm -rf " .. cache .. " " .. top .. "/r && cp -a " .. top
         .. "/base " .. top .. "/r")
   end
   lu.assertTrue(killed, "never killed inside the publish window")
   -- a leftover .tmp- folder, and no tag folder
   lu.assertStrMatches(h.sh("ls -A " .. cache), "%.tmp%-layer%-%x+%-%d+\n")
   -- find: a miss; ls: nothing; state: nothing applied
   local out, code = h.sh(cmd(top, "restore Containerfile --no-build --cache "
      .. "dir:" .. cache .. " --root " .. top .. "/r"))
   lu.assertEquals(code, 3, out)
   lu.assertStrContains(out, "not in dir:")
   out, code = h.sh(cmd(top, "ls --cache dir:" .. cache))
   lu.assertEquals(code, 0, out)
   lu.assertStrContains(out, "no layers in dir:")
   lu.assertNil((h.read(top .. "/r/var/lib/clayer/applied.json") or "")
      :find('"tag"'))
   -- the next run builds and publishes beside the leftover
   out, code = h.sh(cmd(top, "build Containerfile --cache dir:" .. cache
      .. " --root " .. top .. "/r"))
   lu.assertEquals(code, 0, out)
   lu.assertStrContains(out, "published layer-")
   assert_whole(cache)
   h.sh("cp -a " .. top .. "/base " .. top .. "/r2")
   out, code = h.sh(cmd(top, "restore Containerfile --no-build --cache dir:"
      .. cache .. " --root " .. top .. "/r2"))
   lu.assertEquals(code, 0, out)
   lu.assertEquals(h.read(top .. "/r2/etc/built"), "built\n")
end

-- Run `script` in a private mount namespace whose /var/tmp is a fresh
-- tmpfs of `size`; the script's output ends with the /var/tmp listing.
local function in_namespace(size, script)
   return h.sh("unshare -m sh -c " .. h.q("mount --make-rprivate / && "
      .. "mount -t tmpfs -o size=" .. size .. " tmpfs /var/tmp && {\n"
      .. script .. "\n}; echo \"status=$?\"; echo \"vartmp=[$(ls -A "
      .. "/var/tmp)]\""))
end

-- After a failed save: exit 0, the warning, nothing in /var/tmp,
-- nothing cached, the build in place; the next boot (a fresh root with
-- the cache usable again) retries the save.
local function assert_failed_save(top, out, why)
   lu.assertStrContains(out, "status=0\n")
   lu.assertStrContains(out, "warning: the layer was built but not saved "
      .. "to the cache: ")
   lu.assertStrContains(out, why)
   lu.assertStrContains(out, "vartmp=[]\n")
   lu.assertStrContains(out, '"published": false')
   lu.assertEquals(h.sh("ls -A " .. top .. "/cache"), "")
   lu.assertEquals(h.read(top .. "/r/etc/built"), "built\n")
   h.sh("cp -a " .. top .. "/base " .. top .. "/r2")
   local out2, code = h.sh(cmd(top, "restore Containerfile --cache dir:"
      .. top .. "/cache --root " .. top .. "/r2"))
   lu.assertEquals(code, 0, out2)
   lu.assertStrContains(out2, "cache miss; building")
   lu.assertStrContains(out2, "published layer-")
end

function TestRobust:test_d13_read_only_cache_folder()
   local top = setup(1)
   h.sh("mkdir " .. top .. "/cache")
   local out = in_namespace("64m", "mount --bind " .. top .. "/cache "
      .. top .. "/cache && mount -o remount,bind,ro " .. top .. "/cache && "
      .. cmd(top, "build Containerfile --json --cache dir:" .. top
      .. "/cache --root " .. top .. "/r"))
   assert_failed_save(top, out, "Read-only file system")
end

function TestRobust:test_d13_no_space_for_the_archive()
   local top = setup(4)
   h.sh("mkdir " .. top .. "/cache")
   local out = in_namespace("1m", cmd(top, "build Containerfile --json "
      .. "--cache dir:" .. top .. "/cache --root " .. top .. "/r"))
   assert_failed_save(top, out, "No space left on device")
end

-- A folder dated before 1970 is put back exactly when a restore fails
-- (the journal once turned -0.5 s into a negative tv_nsec: EINVAL, and
-- the rollback failed with the journal kept).
function TestRobust:test_rollback_of_a_folder_dated_before_1970()
   local tar = require "clayer.tar"
   local top = h.tmpdir()
   h.sh("mkdir -p " .. top .. "/R/d && touch -d @-0.5 " .. top .. "/R/d")
   h.write(top .. "/mk.py", "import io, tarfile\n"
      .. "tf = tarfile.open('" .. top .. "/a.tar', 'w', "
      .. "format=tarfile.PAX_FORMAT)\n"
      .. "for name in ('d/new', '../evil'):\n"
      .. "    ti = tarfile.TarInfo(name); ti.size = 1\n"
      .. "    tf.addfile(ti, io.BytesIO(b'x'))\n"
      .. "tf.close()\n")
   local out, code = h.sh("python3 " .. top .. "/mk.py && zstd -q --rm "
      .. top .. "/a.tar")
   lu.assertEquals(code, 0, out)
   local before = h.sh("cd " .. top .. "/R && find . -printf '%p %T@\\n'")
   lu.assertStrContains(before, "./d -")
   local res, err, why = tar.extract { root = top .. "/R",
      source = top .. "/a.tar.zst" }
   lu.assertNil(res)
   lu.assertEquals(why, "refused")
   lu.assertNotStrContains(err, "rollback failed")
   lu.assertEquals(h.sh("cd " .. top .. "/R && find . -printf '%p %T@\\n'"),
      before)
end

-- SIGTERM at the moment `probe` (a shell glob) first exists, during a
-- build to dir:CACHE with TMPDIR=TMP: {out, killed}.  The build is
-- repeated from a fresh root when it wins the race.
local function term_when(top, cache, tmp, probe)
   for _ = 1, 4 do
      local out = h.sh("bash -c " .. h.q("export TMPDIR=" .. h.q(tmp) .. "; "
         .. cmd(top, "exec", "build Containerfile --cache dir:" .. cache
         .. " --root " .. top .. "/r -q")
         .. " & pid=$!\n"
         .. "while kill -0 $pid 2>/dev/null; do\n"
         .. "  set -- " .. probe .. "\n"
         .. "  if [ -e \"$1\" ]; then kill -TERM $pid; echo killed; break; fi\n"
         .. "done\nwait $pid; echo \"status=$?\""))
      if out:find("killed") and h.sh("ls " .. cache .. " 2>/dev/null") == ""
      then
         return out, true
      end
      h.sh("rm -rf " .. cache .. " " .. top .. "/r && cp -a " .. top
         .. "/base " .. top .. "/r")
   end
   return nil, false
end

-- SIGTERM while publish copies the archive into the cache (another
-- filesystem), and while it compresses: exit 130, no CACHE/.tmp-*, no
-- TMPDIR/clayer-build-* (both were once left behind).
function TestRobust:test_sigterm_during_publish_leaves_no_temporary_files()
   local area = h.sh("mktemp -d /dev/shm/clayer-spec.XXXXXX"):gsub("%s+$", "")
   shm[#shm + 1] = area
   local top = setup(48)
   local cache, tmp = area .. "/cache", top .. "/tmp"
   h.sh("mkdir " .. tmp)
   for _, probe in ipairs { h.q(cache) .. "/.tmp-*",
         h.q(tmp) .. "/clayer-build-*" } do
      local out, killed = term_when(top, cache, tmp, probe)
      lu.assertTrue(killed, "never killed at " .. probe)
      lu.assertStrContains(out, "status=130\n")
      lu.assertEquals(h.sh("ls -A " .. cache .. " 2>/dev/null"), "", probe)
      lu.assertEquals(h.sh("ls -A " .. tmp), "", probe)
      h.sh("rm -rf " .. cache .. " " .. top .. "/r && cp -a " .. top
         .. "/base " .. top .. "/r")
   end
end

-- What killed runs left in a dir: cache (.tmp-TAG-PID, .del-TAG-PID) is
-- removed by ls, prune and publish once its process is gone and nothing
-- wrote to it for 10 minutes; a live process's, or a fresh one, stays.
function TestRobust:test_stale_leftovers_are_swept()
   local top = h.tmpdir()
   local cache = top .. "/cache"
   local sleeper = h.sh("sleep 60 >/dev/null 2>&1 & echo $!"):gsub("%s+$", "")
   local dead = h.sh("sh -c 'echo $$'"):gsub("%s+$", "")
   local old = "touch -d '2 hours ago' "
   h.sh("mkdir -p " .. cache .. "/.tmp-layer-ab12-" .. dead .. " "
      .. cache .. "/.del-layer-x-1-" .. dead .. " "
      .. cache .. "/.tmp-layer-cd34-" .. sleeper .. " "
      .. cache .. "/.tmp-layer-ef56-" .. dead .. "0000"
      .. " && echo x > " .. cache .. "/.tmp-layer-ab12-" .. dead .. "/f && "
      .. old .. cache .. "/.tmp-layer-ab12-" .. dead .. "/f " .. cache
      .. "/.tmp-layer-ab12-" .. dead .. " && " .. old .. cache .. "/.del-*"
      .. " && " .. old .. cache .. "/.tmp-layer-cd34-" .. sleeper)
   local out, code = h.clayer("ls --cache dir:" .. cache)
   h.sh("kill " .. sleeper)
   lu.assertEquals(code, 0, out)
   -- pid DEAD0000 is no pid but the folder is fresh: it stays
   lu.assertEquals(h.sh("ls -A " .. cache), ".tmp-layer-cd34-" .. sleeper
      .. "\n.tmp-layer-ef56-" .. dead .. "0000\n")
end
