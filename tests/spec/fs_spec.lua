--- clayer.fs: small file calls, locks, tree scans, manifests and diffs.
local lu = require "luaunit"
local h = require "helper"
local fs = require "clayer.fs"

local ENOENT, EBUSY, ENOTDIR, EISDIR, EINVAL = 2, 16, 20, 21, 22
local EACCES, ENOSPC, ENOTEMPTY, ELOOP = 13, 28, 39, 40

--- Run a Lua script in a fresh clayer-lua, after an optional command
-- prefix (unshare, setpriv); returns its output and exit status.
local function run_lua(dir, code, prefix)
   local file = dir .. "/script.lua"
   h.write(file, code)
   return h.sh((prefix or "") .. " " .. h.q(h.bin) .. " " .. h.q(file))
end

--- A command prefix that runs setup (a shell line that may use "$D", the
-- folder dir) in a private mount namespace, then the rest of the line.
local function unshared(dir, setup)
   return "D=" .. h.q(dir) .. " unshare -m sh -c '" .. setup
      .. " && exec \"$0\" \"$@\"'"
end

--- Run shell commands inside dir; fail the test when they fail.
local function shell(dir, cmd)
   local out, code = h.sh("cd " .. h.q(dir) .. " && " .. cmd)
   lu.assertEquals(code, 0, out)
   return out
end

local function set_of(list)
   local s = {}
   for _, v in ipairs(list) do s[v] = true end
   return s
end

--- A scan of folder dir as the logical root "/".
local function scan_tree(dir, opts)
   opts = opts or {}
   return assert(fs.scan(opts.roots or {"/"}, {
      root = dir, exclude = opts.exclude, xdev = opts.xdev,
   }))
end

---------------------------------------------------------------------------
TestFsCalls = {}

function TestFsCalls:tearDown()
   h.cleanup()
end

function TestFsCalls:test_stat_and_lstat_entries()
   local d = h.tmpdir()
   h.write(d .. "/f", "hello")
   shell(d, "chown 12:34 f && chmod 4751 f && ln -s f l && mkfifo p")
   local e = assert(fs.stat(d .. "/f"))
   lu.assertEquals(e.type, "file")
   lu.assertEquals(e.mode, tonumber("4751", 8))
   lu.assertEquals({e.uid, e.gid, e.size, e.nlink}, {12, 34, 5, 1})
   local out = shell(d, "stat -c '%i %Y %Z %d' f")
   local ino, mt, ct, dev = out:match("(%d+) (%d+) (%d+) (%d+)")
   lu.assertEquals(e.ino, tonumber(ino))
   lu.assertEquals(e.dev, tonumber(dev))
   lu.assertEquals(e.mtime // 1000000000, tonumber(mt))
   lu.assertEquals(e.ctime // 1000000000, tonumber(ct))
   lu.assertNil(e.target)
   local l = assert(fs.lstat(d .. "/l"))
   lu.assertEquals(l.type, "link")
   lu.assertEquals(l.target, "f")
   lu.assertEquals(fs.stat(d .. "/l").type, "file")
   lu.assertEquals(fs.lstat(d .. "/p").type, "fifo")
   lu.assertEquals(fs.lstat(d).type, "dir")
   lu.assertEquals(fs.lstat("/dev/null").type, "chr")
end

function TestFsCalls:test_stat_missing()
   local d = h.tmpdir()
   for _, f in ipairs({fs.stat, fs.lstat, fs.read, fs.readlink}) do
      local v, err, code = f(d .. "/nope")
      lu.assertNil(v)
      lu.assertEquals(err, d .. "/nope: No such file or directory")
      lu.assertEquals(code, ENOENT)
   end
   -- a dangling link: lstat works, stat does not
   shell(d, "ln -s nowhere dl")
   lu.assertEquals(fs.lstat(d .. "/dl").target, "nowhere")
   lu.assertEquals(select(3, fs.stat(d .. "/dl")), ENOENT)
end

function TestFsCalls:test_exists()
   local d = h.tmpdir()
   shell(d, "ln -s nowhere dl && touch f")
   lu.assertTrue(fs.exists(d .. "/f"))
   lu.assertTrue(fs.exists(d .. "/dl"))
   lu.assertFalse(fs.exists(d .. "/nope"))
   lu.assertFalse(fs.exists(d .. "/f/x"))
end

function TestFsCalls:test_read()
   local d = h.tmpdir()
   local data = "a\0b\n" .. string.rep("x", 300000)
   h.write(d .. "/f", data)
   h.write(d .. "/empty", "")
   lu.assertEquals(fs.read(d .. "/f"), data)
   lu.assertEquals(fs.read(d .. "/empty"), "")
   lu.assertEquals(fs.read("/proc/self/comm"), "clayer-lua\n")
   local v, err, code = fs.read(d)
   lu.assertNil(v)
   lu.assertStrContains(err, d .. ": ")
   lu.assertEquals(code, EISDIR)
end

function TestFsCalls:test_write_atomic()
   local d = h.tmpdir()
   local p = d .. "/f"
   lu.assertTrue(fs.write_atomic(p, "one"))
   lu.assertEquals(h.read(p), "one")
   lu.assertEquals(fs.stat(p).mode, tonumber("644", 8))
   local ino = fs.stat(p).ino
   lu.assertTrue(fs.write_atomic(p, "two\0", tonumber("600", 8)))
   lu.assertEquals(h.read(p), "two\0")
   lu.assertEquals(fs.stat(p).mode, tonumber("600", 8))
   lu.assertNotEquals(fs.stat(p).ino, ino)   -- replaced, not rewritten
   -- over a symlink: the link is replaced, its target untouched
   h.write(d .. "/target", "keep")
   shell(d, "ln -s target l")
   lu.assertTrue(fs.write_atomic(d .. "/l", "new"))
   lu.assertEquals(fs.lstat(d .. "/l").type, "file")
   lu.assertEquals(h.read(d .. "/target"), "keep")
   lu.assertEquals(fs.dir(d), {"f", "l", "target"})
end

function TestFsCalls:test_write_atomic_failures_leave_nothing()
   local d = h.tmpdir()
   h.write(d .. "/file", "x")
   local v, err, code = fs.write_atomic(d .. "/file/sub", "data")
   lu.assertNil(v)
   lu.assertEquals(err, d .. "/file/sub: Not a directory")
   lu.assertEquals(code, ENOTDIR)
   v, err, code = fs.write_atomic(d .. "/missing/f", "data")
   lu.assertStrContains(err, d .. "/missing")
   lu.assertNil(v)
   lu.assertEquals(code, ENOENT)
   lu.assertEquals(fs.dir(d), {"file"})
end

function TestFsCalls:test_write_atomic_full_disk_removes_temp()
   local d = h.tmpdir()
   local m = d .. "/m"
   assert(fs.mkdirp(m))
   -- a 64 KiB tmpfs in a private mount namespace; nothing leaks out
   local out = run_lua(d, ([[
      local fs = require "clayer.fs"
      local m = %q
      assert(fs.write_atomic(m .. "/f", "old"))
      print(fs.write_atomic(m .. "/f", string.rep("x", 1 << 20)))
      print(table.concat(fs.dir(m), ","), fs.read(m .. "/f"))
   ]]):format(m), unshared(d,
      "mount -t tmpfs -o size=64k tmpfs \"$D/m\""))
   lu.assertEquals(out, ("nil\t%s/f: No space left on device\t%d\n"
      .. "f\told\n"):format(m, ENOSPC))
   lu.assertEquals(fs.dir(m), {})
end

function TestFsCalls:test_mkdirp()
   local d = h.tmpdir()
   lu.assertTrue(fs.mkdirp(d .. "/a/b//c/"))
   lu.assertEquals(fs.stat(d .. "/a/b/c").type, "dir")
   lu.assertTrue(fs.mkdirp(d .. "/a/b/c"))     -- existing is fine
   lu.assertTrue(fs.mkdirp(d .. "/m/n", tonumber("700", 8)))
   lu.assertEquals(fs.stat(d .. "/m/n").mode, tonumber("700", 8))
   h.write(d .. "/f", "")
   local v, err, code = fs.mkdirp(d .. "/f/x")
   lu.assertNil(v)
   lu.assertEquals(err, d .. "/f/x: Not a directory")
   lu.assertEquals(code, ENOTDIR)
   lu.assertEquals(select(3, fs.mkdirp(d .. "/f")), ENOTDIR)
end

function TestFsCalls:test_rename_and_remove()
   local d = h.tmpdir()
   h.write(d .. "/a", "x")
   lu.assertTrue(fs.rename(d .. "/a", d .. "/b"))
   lu.assertEquals(h.read(d .. "/b"), "x")
   local v, err, code = fs.rename(d .. "/a", d .. "/c")
   lu.assertNil(v)
   lu.assertStrContains(err, d .. "/a -> " .. d .. "/c: ")
   lu.assertEquals(code, ENOENT)
   shell(d, "ln -s b l && mkdir e && mkdir -p full/x")
   lu.assertTrue(fs.remove(d .. "/l"))
   lu.assertTrue(fs.exists(d .. "/b"))
   lu.assertTrue(fs.remove(d .. "/b"))
   lu.assertTrue(fs.remove(d .. "/e"))
   v, err, code = fs.remove(d .. "/full")
   lu.assertNil(v)
   lu.assertStrContains(err, d .. "/full: ")
   lu.assertEquals(code, ENOTEMPTY)
   lu.assertEquals(select(3, fs.remove(d .. "/nope")), ENOENT)
   lu.assertEquals(fs.dir(d), {"full"})
end

function TestFsCalls:test_rmtree_never_follows_links()
   local d = h.tmpdir()
   shell(d, "mkdir -p outside t/a/b t/ro && echo keep > outside/f && "
      .. "ln -s ../outside t/a/out && ln -s " .. h.q(d) .. "/outside t/abs && "
      .. "touch t/a/b/f t/ro/f && mkfifo t/p && chmod 500 t/ro && "
      .. "chmod 0 t/a/b")
   lu.assertTrue(fs.rmtree(d .. "/t"))
   lu.assertFalse(fs.exists(d .. "/t"))
   lu.assertEquals(h.read(d .. "/outside/f"), "keep\n")
   lu.assertTrue(fs.rmtree(d .. "/t"))         -- missing is fine
   h.write(d .. "/file", "")
   lu.assertTrue(fs.rmtree(d .. "/file"))
   shell(d, "ln -s outside link")
   lu.assertTrue(fs.rmtree(d .. "/link"))
   lu.assertEquals(fs.dir(d), {"outside"})
   lu.assertEquals(fs.dir(d .. "/outside"), {"f"})
end

function TestFsCalls:test_rmtree_read_only_folders_as_non_root()
   local d = h.tmpdir()
   shell(d, "chmod 755 . && mkdir -p t/top/a/b t/top/c && "
      .. "touch t/top/a/b/f t/top/c/g && chown -R 65534:65534 t && "
      .. "chmod 500 t/top t/top/a t/top/a/b && chmod 0 t/top/c")
   local out = run_lua(d, ("print(require('clayer.fs').rmtree(%q))")
      :format(d .. "/t/top"),
      "setpriv --reuid=65534 --regid=65534 --clear-groups")
   lu.assertEquals(out, "true\n")
   lu.assertEquals(fs.dir(d .. "/t"), {})
end

function TestFsCalls:test_rmtree_stops_at_mount_points()
   local d = h.tmpdir()
   shell(d, "mkdir -p t/m && touch t/x")
   local out = run_lua(d, ([[
      local fs = require "clayer.fs"
      local t = %q
      assert(fs.write_atomic(t .. "/m/precious", "data"))
      print(fs.rmtree(t))
      print(fs.read(t .. "/m/precious"))
   ]]):format(d .. "/t"), unshared(d,
      "mount -t tmpfs tmpfs \"$D/t/m\""))
   lu.assertEquals(out, ("nil\t%s/t/m: Device or resource busy\t%d\ndata\n")
      :format(d, EBUSY))
end

function TestFsCalls:test_symlink_readlink_chmod()
   local d = h.tmpdir()
   lu.assertTrue(fs.symlink("../some/where", d .. "/l"))
   lu.assertEquals(fs.readlink(d .. "/l"), "../some/where")
   local v, err, code = fs.symlink("x", d .. "/l")
   lu.assertNil(v)
   lu.assertStrContains(err, d .. "/l: File exists")
   lu.assertEquals(code, 17)
   h.write(d .. "/f", "")
   v, err, code = fs.readlink(d .. "/f")
   lu.assertStrContains(err, d .. "/f")
   lu.assertNil(v)
   lu.assertEquals(code, EINVAL)
   lu.assertTrue(fs.chmod(d .. "/f", tonumber("2711", 8)))
   lu.assertEquals(fs.stat(d .. "/f").mode, tonumber("2711", 8))
   lu.assertEquals(select(3, fs.chmod(d .. "/nope", 0)), ENOENT)
   lu.assertErrorMsgContains("number expected", fs.chmod, d .. "/f")
   lu.assertErrorMsgContains("mode out of range", fs.chmod, d .. "/f",
      tonumber("10000", 8))
end

function TestFsCalls:test_dir_sorted_by_bytes()
   local d = h.tmpdir()
   shell(d, "touch b a B a.b 'a b' && mkdir c && touch c/x && ln -s a .h")
   lu.assertEquals(fs.dir(d), {".h", "B", "a", "a b", "a.b", "b", "c"})
   lu.assertEquals(fs.dir(d .. "/c"), {"x"})
   local v, err, code = fs.dir(d .. "/nope")
   lu.assertNil(v)
   lu.assertStrContains(err, d .. "/nope: ")
   lu.assertEquals(code, ENOENT)
   lu.assertEquals(select(3, fs.dir(d .. "/b")), ENOTDIR)
end

function TestFsCalls:test_mkdtemp()
   local d = h.tmpdir()
   local a = assert(fs.mkdtemp(d .. "/x-"))
   local b = assert(fs.mkdtemp(d .. "/x-"))
   lu.assertStrMatches(a, d:gsub("%p", "%%%0") .. "/x%-%w%w%w%w%w%w")
   lu.assertNotEquals(a, b)
   lu.assertEquals(fs.stat(a).type, "dir")
   lu.assertEquals(fs.stat(a).mode, tonumber("700", 8))
   local v, err, code = fs.mkdtemp(d .. "/nope/x-")
   lu.assertNil(v)
   lu.assertStrContains(err, d .. "/nope/x-: ")
   lu.assertEquals(code, ENOENT)
end

function TestFsCalls:test_copy()
   local d = h.tmpdir()
   local data = string.rep("0123456789", 50000) .. "\0end"
   h.write(d .. "/src", data)
   shell(d, "chmod 751 src && chown 5:6 src && touch -d @1000 src")
   lu.assertTrue(fs.copy(d .. "/src", d .. "/dst"))
   local e = fs.stat(d .. "/dst")
   lu.assertEquals(h.read(d .. "/dst"), data)
   lu.assertEquals(e.mode, tonumber("751", 8))
   lu.assertEquals({e.uid, e.gid}, {0, 0})     -- nothing else preserved
   lu.assertNotEquals(e.mtime, 1000 * 1000000000)
   h.write(d .. "/dst", string.rep("y", 2000000))   -- truncated on copy
   lu.assertTrue(fs.copy(d .. "/src", d .. "/dst", tonumber("600", 8)))
   lu.assertEquals(h.read(d .. "/dst"), data)
   lu.assertEquals(fs.stat(d .. "/dst").mode, tonumber("600", 8))
   -- a symlink at dst is not written through
   shell(d, "ln -s victim l && touch victim")
   local v, err, code = fs.copy(d .. "/src", d .. "/l")
   lu.assertNil(v)
   lu.assertStrContains(err, d .. "/l: ")
   lu.assertEquals(code, ELOOP)
   lu.assertEquals(h.read(d .. "/victim"), "")
   v, err = fs.copy(d, d .. "/x")
   lu.assertNil(v)
   lu.assertEquals(err, d .. ": not a regular file")
   lu.assertEquals(select(3, fs.copy(d .. "/nope", d .. "/x")), ENOENT)
   lu.assertFalse(fs.exists(d .. "/x"))
end

function TestFsCalls:test_lock_busy_and_release()
   local d = h.tmpdir()
   local p = d .. "/lock"
   local lk = assert(fs.lock(p))
   lu.assertEquals(fs.stat(p).mode, tonumber("644", 8))
   local _, code = h.sh("flock -n " .. h.q(p) .. " true")
   lu.assertEquals(code, 1)
   -- another clayer-lua asking without waiting is told "busy"
   local out = run_lua(d, ("print(require('clayer.fs').lock(%q, false))")
      :format(p))
   lu.assertEquals(out, "nil\t" .. p .. ": locked by another process\tbusy\n")
   -- a second open file description conflicts in this process too
   local v, err, why = fs.lock(p, false)
   lu.assertNil(v)
   lu.assertEquals(err, p .. ": locked by another process")
   lu.assertEquals(why, "busy")
   lk:close()
   lk:close()                                  -- idempotent
   _, code = h.sh("flock -n " .. h.q(p) .. " true")
   lu.assertEquals(code, 0)
   do
      local _held <close> = assert(fs.lock(p, false)) -- luacheck: ignore 211
      lu.assertEquals(select(3, fs.lock(p, false)), "busy")
   end
   lu.assertNotNil(fs.lock(p, false))          -- released by <close>
   collectgarbage()
   collectgarbage()
   lu.assertEquals(select(2, h.sh("flock -n " .. h.q(p) .. " true")), 0)
   lu.assertEquals(select(3, fs.lock(d .. "/no/lock")), ENOENT)
end

--- Seconds since boot, to 1/100 s.
local function uptime()
   return tonumber(fs.read("/proc/uptime"):match("^(%S+)"))
end

function TestFsCalls:test_lock_waits_for_holder()
   local d = h.tmpdir()
   local p = d .. "/lock"
   local holder = io.popen("flock " .. h.q(p) .. " sh -c 'touch "
      .. h.q(d .. "/held") .. "; sleep 0.3'")
   for _ = 1, 200 do
      if fs.exists(d .. "/held") then break end
      os.execute("sleep 0.01")
   end
   lu.assertEquals(select(3, fs.lock(p, false)), "busy")
   local t0 = uptime()
   local lk = assert(fs.lock(p))               -- waits for the holder
   lu.assertTrue(uptime() - t0 >= 0.1)
   lk:close()
   holder:close()
end

function TestFsCalls:test_statvfs()
   local d = h.tmpdir()
   local s = assert(fs.statvfs(d))
   lu.assertTrue(s.size > 0)
   lu.assertTrue(s.avail >= 0 and s.avail <= s.size)
   local out = shell(d, "df -B1 --output=size,avail . | tail -n 1")
   local size = out:match("(%d+)")
   lu.assertEquals(s.size, tonumber(size))
   local v, err, code = fs.statvfs(d .. "/nope")
   lu.assertNil(v)
   lu.assertStrContains(err, d .. "/nope: ")
   lu.assertEquals(code, ENOENT)
end

function TestFsCalls:test_misuse_raises()
   lu.assertErrorMsgContains("string expected", fs.stat)
   lu.assertErrorMsgContains("string expected", fs.write_atomic, "/tmp/x")
   lu.assertErrorMsgContains("table expected", fs.scan, "/")
   lu.assertErrorMsgContains("unknown option 'roots'", fs.scan, {"/"},
      {roots = 1})
   lu.assertErrorMsgContains("not an absolute path", fs.scan, {"etc"})
   lu.assertErrorMsgContains("must be a string", fs.scan, {"/", 3})
   lu.assertErrorMsgContains("option 'xdev'", fs.scan, {"/nope"},
      {xdev = "no"})
   lu.assertErrorMsgContains("boolean expected", fs.lock, "/tmp/x", 0)
   lu.assertErrorMsgContains("clayer.fs.manifest expected", fs.diff, {}, {})
end

---------------------------------------------------------------------------
TestFsScan = {}

function TestFsScan:tearDown()
   h.cleanup()
end

function TestFsScan:test_tree_entries()
   local d = h.tmpdir()
   shell(d, "mkdir -p dir/sub && printf hello > dir/file && "
      .. "chmod 640 dir/file && chown 12:34 dir/file && chmod 750 dir && "
      .. "ln -s dir/file link && ln -s nowhere dangling && mkfifo fifo && "
      .. "touch setuid && chmod 4755 setuid")
   local m = scan_tree(d)
   lu.assertEquals(m:paths(), {"/", "/dangling", "/dir", "/dir/file",
      "/dir/sub", "/fifo", "/link", "/setuid"})
   lu.assertEquals(m:count(), 8)
   local f = m:get("/dir/file")
   lu.assertEquals({f.type, f.mode, f.uid, f.gid, f.size, f.nlink},
      {"file", tonumber("640", 8), 12, 34, 5, 1})
   local real = fs.lstat(d .. "/dir/file")
   for _, k in ipairs({"mtime", "ctime", "ino", "dev"}) do
      lu.assertEquals(f[k], real[k], k)
   end
   lu.assertNil(f.target)
   lu.assertEquals(m:get("/dir").type, "dir")
   lu.assertEquals(m:get("/dir").mode, tonumber("750", 8))
   lu.assertEquals(m:get("/dir").nlink, 3)
   lu.assertEquals(m:get("/link").target, "dir/file")
   lu.assertEquals(m:get("/link").size, #"dir/file")
   lu.assertEquals(m:get("/dangling").target, "nowhere")
   lu.assertEquals(m:get("/fifo").type, "fifo")
   lu.assertEquals(m:get("/setuid").mode, tonumber("4755", 8))
   lu.assertEquals(m:get("/").type, "dir")
   lu.assertNil(m:get("/nope"))
   lu.assertNil(m:get("/dir/"))
   lu.assertEquals(m:skipped(), {})
end

function TestFsScan:test_real_paths_without_root()
   local d = h.tmpdir()
   shell(d, "mkdir a && touch a/f")
   local m = assert(fs.scan({d .. "/a"}))
   lu.assertEquals(m:paths(), {d .. "/a", d .. "/a/f"})
end

function TestFsScan:test_sorted_by_bytes_of_full_path()
   local d = h.tmpdir()
   shell(d, "mkdir -p a/b a/B && touch a/b-c a/b.d a/b/c a/B/x")
   local m = scan_tree(d)
   lu.assertEquals(m:paths(), {"/", "/a", "/a/B", "/a/B/x", "/a/b",
      "/a/b-c", "/a/b.d", "/a/b/c"})
end

function TestFsScan:test_excludes_and_nested_root()
   local d = h.tmpdir()
   shell(d, "mkdir -p a/cache a/b/cache b/skip home/u1/.cache var/cache/apt "
      .. "var/cache/x/sub && touch a/x a/cache/y a/b/cache/k b/keep "
      .. "b/skip/z home/u1/.cache/f home/u1/doc var/cache/apt/pkg "
      .. "var/cache/x/keep var/cache/x/sub/f var/cache/top")
   local exclude = {"/*/cache", "/b/skip/", "/home/*/.cache", "/var/cache",
      "/var/cache/x/sub"}
   local m = scan_tree(d, {roots = {"/", "/var/cache/x"}, exclude = exclude})
   -- /var/cache is excluded, but it leads to a root: it is recorded and
   -- walked toward that root only
   lu.assertEquals(m:paths(), {"/", "/a", "/a/b", "/a/b/cache",
      "/a/b/cache/k", "/a/x", "/b", "/b/keep", "/home", "/home/u1",
      "/home/u1/doc", "/var", "/var/cache", "/var/cache/x",
      "/var/cache/x/keep"})
   -- the nested root alone
   m = scan_tree(d, {roots = {"/var/cache/x"}, exclude = exclude})
   lu.assertEquals(m:paths(), {"/var/cache/x", "/var/cache/x/keep"})
   -- a root that is itself excluded is still scanned
   m = scan_tree(d, {roots = {"/b/skip"}, exclude = exclude})
   lu.assertEquals(m:paths(), {"/b/skip", "/b/skip/z"})
end

function TestFsScan:test_overlapping_roots_no_duplicates()
   local d = h.tmpdir()
   shell(d, "mkdir -p b/c && touch b/c/f b/g h")
   local want = scan_tree(d):paths()
   lu.assertEquals(#want, 6)
   for _, roots in ipairs({{"/", "/b"}, {"/b", "/"}, {"/b/c", "/", "//b/"},
                           {"/", "/"}, {"/h", "/"}}) do
      lu.assertEquals(scan_tree(d, {roots = roots}):paths(), want)
   end
   lu.assertEquals(scan_tree(d, {roots = {"/b/c", "/b/c/f", "/h"}}):paths(),
      {"/b/c", "/b/c/f", "/h"})
end

function TestFsScan:test_missing_root_and_link_root()
   local d = h.tmpdir()
   shell(d, "mkdir real && touch real/f && ln -s real l && touch file")
   lu.assertEquals(scan_tree(d, {roots = {"/nope"}}):count(), 0)
   lu.assertEquals(scan_tree(d, {roots = {"/file/x", "/nope"}}):paths(), {})
   local m = scan_tree(d, {roots = {"/l", "/file"}})
   lu.assertEquals(m:paths(), {"/file", "/l"})
   lu.assertEquals(m:get("/l").target, "real")
   lu.assertEquals(assert(fs.scan({"/nope"}, {root = d .. "/"})):count(), 0)
end

function TestFsScan:test_permission_error_fails_scan()
   local d = h.tmpdir()
   shell(d, "chmod 755 . && mkdir -p t/ok t/secret && touch t/secret/f && "
      .. "chmod 700 t/secret")
   local out = run_lua(d, ([[
      local fs = require "clayer.fs"
      print(fs.scan({"/t/ok"}, {root = %q}):count())
      print(fs.scan({"/t"}, {root = %q}))
   ]]):format(d, d), "setpriv --reuid=65534 --regid=65534 --clear-groups")
   lu.assertEquals(out, ("1\nnil\t%s/t/secret: Permission denied\t%d\n")
      :format(d, EACCES))
end

function TestFsScan:test_xdev_records_mount_point_only()
   local d = h.tmpdir()
   shell(d, "mkdir -p t/mnt t/deep/m2 && touch t/f")
   local out = run_lua(d, ([[
      local fs = require "clayer.fs"
      local t = %q
      assert(fs.write_atomic(t .. "/mnt/inside", "x"))
      assert(fs.mkdirp(t .. "/deep/m2/sub"))
      local function show(m)
         print(table.concat(m:paths(), " "))
         print("skipped: " .. table.concat(m:skipped(), " "))
      end
      show(fs.scan({"/"}, {root = t}))
      show(fs.scan({"/"}, {root = t, xdev = false}))
      show(fs.scan({"/", "/mnt"}, {root = t}))
      print(fs.scan({"/"}, {root = t}):get("/mnt").dev ~=
            fs.lstat(t).dev)
   ]]):format(d .. "/t"), unshared(d,
      "mount -t tmpfs tmpfs \"$D/t/mnt\" && "
      .. "mount -t tmpfs tmpfs \"$D/t/deep/m2\""))
   lu.assertEquals(out,
      "/ /deep /deep/m2 /f /mnt\n"
      .. "skipped: /deep/m2 /mnt\n"
      .. "/ /deep /deep/m2 /deep/m2/sub /f /mnt /mnt/inside\n"
      .. "skipped: \n"
      .. "/ /deep /deep/m2 /f /mnt /mnt/inside\n"
      .. "skipped: /deep/m2\n"
      .. "true\n")
   lu.assertEquals(fs.dir(d .. "/t/mnt"), {})   -- nothing leaked
end

function TestFsScan:test_hardlink_groups()
   local d = h.tmpdir()
   shell(d, "mkdir -p t/d t/c other && touch t/a1 t/b1 t/single t/lone && "
      .. "ln t/a1 t/a2 && ln t/a1 t/d/a3 && ln t/b1 t/c/b2 && "
      .. "ln t/single other/x && ln -s a1 t/sl && mkdir t/e")
   local m = scan_tree(d .. "/t")
   lu.assertEquals(m:get("/a1").nlink, 3)
   lu.assertEquals(m:hardlinks(), {{"/a1", "/a2", "/d/a3"}, {"/b1", "/c/b2"}})
   lu.assertEquals(scan_tree(d .. "/t", {roots = {"/d", "/c"}}):hardlinks(),
      {})
end

function TestFsScan:test_manifest_close()
   local d = h.tmpdir()
   local m = scan_tree(d)
   lu.assertEquals(m:count(), 1)
   m:close()
   m:close()
   lu.assertErrorMsgContains("closed manifest", m.count, m)
   lu.assertErrorMsgContains("closed manifest", fs.diff, m, m)
   do
      local scoped <close> = scan_tree(d)
      m = scoped
   end
   lu.assertErrorMsgContains("closed manifest", m.paths, m)
end

function TestFsScan:test_diff_detects_every_kind_of_change()
   local d = h.tmpdir()
   shell(d, "mkdir sub && echo same > keep && echo x > del && "
      .. "printf aaaa > rewrite && touch mode own f2d hl sub/inner && "
      .. "ln -s t1 link")
   local before = scan_tree(d)
   -- let the coarse kernel clock tick, so that ctimes differ
   os.execute("sleep 0.02")
   local mt = before:get("/rewrite").mtime
   shell(d, ("touch new && rm del && printf bbbb > rewrite && "
      .. "touch -d @%d.%09d rewrite && chmod 600 mode && "
      .. "chown 1234:1234 own && ln -sfn t2 link && rm f2d && mkdir f2d && "
      .. "ln hl sub/hl2"):format(mt // 1000000000, mt % 1000000000))
   local after = scan_tree(d)
   local r = after:get("/rewrite")
   lu.assertEquals({r.mtime, r.size, r.ino},
      {mt, 4, before:get("/rewrite").ino})
   lu.assertEquals(fs.diff(before, after), {
      added = {"/new", "/sub/hl2"},
      deleted = {"/del"},
      typechanged = {"/f2d"},
      modified = {"/", "/hl", "/link", "/mode", "/own", "/rewrite", "/sub"},
   })
   lu.assertEquals(fs.diff(after, after), {added = {}, deleted = {},
      typechanged = {}, modified = {}})
   local back = fs.diff(after, before)
   lu.assertEquals(back.added, {"/del"})
   lu.assertEquals(back.deleted, {"/new", "/sub/hl2"})
end

function TestFsScan:test_20000_files_match_find()
   local d = h.tmpdir()
   assert(fs.mkdirp(d .. "/t"))
   -- on a tmpfs of its own, so that making the files is quick
   local out = run_lua(d, ([[
      local fs = require "clayer.fs"
      local m = assert(fs.scan({"/"}, {root = %q}))
      print(m:count(), m:get("/d7/l").target)
      assert(fs.write_atomic(%q, table.concat(m:paths(), "\n") .. "\n"))
   ]]):format(d .. "/t", d .. "/paths"), unshared(d,
      "mount -t tmpfs tmpfs \"$D/t\" && cd \"$D/t\" && "
      .. "for i in $(seq 0 99); do mkdir d$i && (cd d$i && "
      .. "touch $(seq -f f%g 0 199) && ln -s f1 l); done && "
      .. "mkdir -p \"sp ace/x\" && touch \"sp ace/x/y\" && "
      .. "find . -xdev | LC_ALL=C sort > ../find"))
   local want = {}
   for line in h.read(d .. "/find"):gmatch("[^\n]+") do
      want[#want + 1] = line == "." and "/" or line:sub(2)
   end
   lu.assertTrue(#want > 20000)
   lu.assertEquals(out, ("%d\tf1\n"):format(#want))
   local got = {}
   for line in h.read(d .. "/paths"):gmatch("[^\n]+") do
      got[#got + 1] = line
   end
   lu.assertEquals(got, want)
   lu.assertTrue(set_of(got)["/sp ace/x/y"])
end

function TestFsScan:test_200000_entries_time_and_memory()
   local d = h.tmpdir()
   assert(fs.mkdirp(d .. "/t"))
   local out = run_lua(d, ([[
      local fs = require "clayer.fs"
      local t0 = os.clock()
      local m = assert(fs.scan({"/"}, {root = %q}))
      local t1 = os.clock()
      local hwm = fs.read("/proc/self/status"):match("VmHWM:%%s*(%%d+)")
      print(m:count(), t1 - t0, hwm)
   ]]):format(d .. "/t"), unshared(d,
      "mount -t tmpfs tmpfs \"$D/t\" && cd \"$D/t\" && "
      .. "for i in $(seq 0 199); do mkdir d$i && (cd d$i && "
      .. "touch $(seq -f long-file-name-%g 0 998)); done"))
   local count, secs, kb = out:match("^(%d+)\t(%S+)\t(%d+)\n$")
   lu.assertEquals(tonumber(count), 200001, out)
   print(("\n  fs.scan of 200001 entries: %.2f s CPU, peak RSS %d MB")
      :format(tonumber(secs), tonumber(kb) // 1024))
   lu.assertTrue(tonumber(kb) < 100 * 1024)
end
