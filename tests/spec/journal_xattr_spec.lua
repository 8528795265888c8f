--- The rollback journal and extended attributes: a failed restore takes
-- back what it set on an old folder (also when the replay is killed and
-- run again), and a folder copied aside on overlayfs (a lower-layer
-- folder cannot be renamed) comes back with its extended attributes and
-- hard links.
local lu = require "luaunit"
local h = require "helper"
local tar = require "clayer.tar"

TestJournalXattr = {}

function TestJournalXattr:tearDown()
   h.cleanup()
end

local function run(cmd)
   local out, code = h.sh(cmd)
   assert(code == 0, cmd .. "\n" .. out)
   return out
end

-- Run a Python 3 script (its text) with args; return its output.
local function python(dir, script, ...)
   h.write(dir .. "/script.py", script)
   local args = {}
   for _, a in ipairs { ... } do args[#args + 1] = h.q(a) end
   return run("python3 " .. h.q(dir .. "/script.py") .. " "
      .. table.concat(args, " "))
end

-- Prints "name=hex" for each extended attribute of each path (user.* and
-- trusted.*), sorted, one path per line.
local DUMP = [[
import os, sys
for p in sys.argv[1:]:
    names = sorted(n for n in os.listxattr(p, follow_symlinks=False)
                   if n.startswith(("user.", "trusted.")))
    print(p.rsplit("/", 1)[-1] + ":", " ".join(
        n + "=" + os.getxattr(p, n, follow_symlinks=False).hex()
        for n in names))
]]

local function xattrs(dir, path)
   return python(dir, DUMP, path)
end

local function hex(s)
   return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

-- Set extended attributes {name = value} on path.
local function setx(dir, path, attrs)
   local py = { "import os, sys" }
   for n, v in pairs(attrs) do
      py[#py + 1] = ("os.setxattr(sys.argv[1], %q, bytes.fromhex(%q))")
         :format(n, hex(v))
   end
   python(dir, table.concat(py, "\n") .. "\n", path)
end

-- Write dir/name.tar.zst from Python lines using entry(tf, ...): name,
-- kind ("file", "dir"), data, and xattrs {name: str} (SCHILY.xattr).
local function archive(dir, name, body)
   h.write(dir .. "/" .. name .. ".py", [[
import io, os, tarfile
def entry(tf, name, kind="file", data=b"", xattrs=None):
    ti = tarfile.TarInfo(name)
    ti.mtime = 1700000000
    ti.mode = 0o755 if kind == "dir" else 0o644
    if xattrs:
        ti.pax_headers = {"SCHILY.xattr." + k: v for k, v in xattrs.items()}
    if kind == "dir":
        ti.type = tarfile.DIRTYPE
        tf.addfile(ti)
    else:
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
tf = tarfile.open(]] .. ("%q"):format(dir .. "/" .. name .. ".tar")
      .. [[, "w", format=tarfile.PAX_FORMAT)
]] .. body .. "tf.close()\n")
   run("cd " .. h.q(dir) .. " && python3 " .. name .. ".py && zstd -q -f "
      .. "--rm " .. name .. ".tar")
   return dir .. "/" .. name .. ".tar.zst"
end

local is_root = run("id -u") == "0\n"

-- An old folder d with three names, one with bytes the log escapes and
-- one empty; as root also a trusted.* name (root sets every namespace).
local function old_folder(dir)
   local R = dir .. "/R"
   run("mkdir -p " .. h.q(R .. "/d"))
   setx(dir, R .. "/d", { ["user.a"] = "o r\0ig%\n", ["user.e"] = "",
      ["user.keep"] = "k" })
   if is_root then setx(dir, R .. "/d", { ["trusted.t"] = "old" }) end
   return R, xattrs(dir, R .. "/d")
end

local SETS = [[
entry(tf, "d/", "dir", xattrs={"user.a": "new", "user.b": "added",
                              "user.e": "x", "trusted.t": "new",
                              "trusted.n": "new"})
]]

function TestJournalXattr:test_failed_restore_puts_back_a_folders_xattrs()
   local dir = h.tmpdir()
   local R, before = old_folder(dir)
   lu.assertStrContains(before, "user.a=6f207200696725")
   lu.assertStrContains(before, "user.e= ")
   -- refused after the folder, and a wrong digest found at the very end
   local refused = archive(dir, "refused", SETS .. [[
entry(tf, "d/f", data=b"x")
entry(tf, "../evil", data=b"x")
]])
   local res, err, code = tar.extract { root = R, source = refused }
   lu.assertNil(res)
   lu.assertEquals(code, "refused", err)
   lu.assertEquals(xattrs(dir, R .. "/d"), before)
   lu.assertNil(h.read(R .. "/d/f"))
   local good = archive(dir, "good", SETS .. 'entry(tf, "d/f", data=b"x")\n')
   res, err, code = tar.extract { root = R, source = good,
      sha256 = ("0"):rep(64) }
   lu.assertNil(res)
   lu.assertEquals(code, "digest", err)
   lu.assertEquals(xattrs(dir, R .. "/d"), before)
   -- the same archive, whole: the new values are there
   assert(tar.extract { root = R, source = good })
   local after = xattrs(dir, R .. "/d")
   lu.assertStrContains(after, "user.a=" .. hex("new"))
   lu.assertStrContains(after, "user.b=" .. hex("added"))
   lu.assertStrContains(after, "user.keep=6b")
end

function TestJournalXattr:test_without_owners_only_user_names_change()
   if not is_root then return lu.skip("needs root") end
   local dir = h.tmpdir()
   local R, before = old_folder(dir)
   local a = archive(dir, "a", SETS .. [[
entry(tf, "d/f", data=b"x")
entry(tf, "../evil", data=b"x")
]])
   local res, err, code = tar.extract { root = R, source = a,
      owners = false }
   lu.assertNil(res)
   lu.assertEquals(code, "refused", err)
   lu.assertEquals(xattrs(dir, R .. "/d"), before)
end

function TestJournalXattr:test_killed_run_is_recovered_with_the_xattrs()
   local dir = h.tmpdir()
   local R, before = old_folder(dir)
   local a = archive(dir, "many", SETS .. [[
for i in range(300):
    entry(tf, "d/f%d" % i, data=os.urandom(20000))
]])
   h.write(dir .. "/child.lua", ([[
local tar = require "clayer.tar"
local pid = io.open("/proc/self/stat"):read("n")
tar.extract { root = %q, source = %q, progress = function(n)
   if n > 2000000 then os.execute("kill -9 " .. pid) end
end }
print("not killed")
]]):format(R, a))
   local out = h.sh(h.q(h.bin) .. " " .. h.q(dir .. "/child.lua") .. "; true")
   lu.assertNotStrContains(out, "not killed")
   local J = R .. "/var/lib/clayer/journal"
   lu.assertStrContains(h.read(J .. "/log"), "xattr d user.b -\n")
   lu.assertNotEquals(xattrs(dir, R .. "/d"), before)
   local ok, n = tar.recover(J)
   lu.assertTrue(ok, n)
   lu.assertEquals(xattrs(dir, R .. "/d"), before)
   lu.assertEquals(run("ls -A " .. h.q(R .. "/d")), "")
   lu.assertEquals({ tar.recover(J) }, { true, 0 })
end

-- The log of a run that set user.a and user.b on the old folder d, made
-- d/new, then set user.a again (a second member for d); `marks` are the
-- "undone" records a killed replay left.
local function killed_replay(marks, a, b)
   local dir = h.tmpdir()
   local R = dir .. "/R"
   local J = R .. "/var/lib/clayer/journal"
   run("mkdir -p " .. h.q(R .. "/d") .. " " .. h.q(J))
   local attrs = { ["user.a"] = a }
   if b then attrs["user.b"] = b end
   setx(dir, R .. "/d", attrs)
   h.write(J .. "/log", ("root %s\nxattr d user.a =%s\nxattr d user.b -\n"
      .. "created d/new\nxattr d user.a =%s\n"):format(R,
      hex("orig"):upper(), hex("first"):upper()) .. marks)
   local ok, err = tar.recover(J)
   lu.assertTrue(ok, err)
   lu.assertEquals(xattrs(dir, R .. "/d"), "d: user.a=" .. hex("orig") .. "\n")
   lu.assertNil(h.read(J .. "/log"))
end

function TestJournalXattr:test_replay_killed_midway_runs_again_safely()
   -- killed after undoing "created" and the second user.a
   killed_replay("undone 4\nundone 3\n", "first", "added")
   -- ... and after removing user.b, before marking it
   killed_replay("undone 4\nundone 3\n", "first")
   -- ... and after putting back user.a, before marking it
   killed_replay("undone 4\nundone 3\nundone 2\n", "orig")
end

-- Copy-aside on a real overlayfs ---------------------------------------

-- In a mount namespace: an overlayfs root M (lower L, without
-- redirect_dir, so that a lower folder cannot be renamed), a restore of
-- `src` into it, then DUMP of the paths (relative to M) and their
-- "inode links" pairs.
local function on_overlay(dir, src, paths)
   local child = dir .. "/child.lua"
   h.write(child, ([[
local tar = require "clayer.tar"
local res, err, code = tar.extract { root = %q, source = %q }
print("extract:", res and "ok" or code, err)
]]):format(dir .. "/M", src))
   h.write(dir .. "/dump.py", DUMP .. [[
for p in sys.argv[1:]:
    st = os.lstat(p)
    print(p.rsplit("/", 1)[-1], st.st_ino, st.st_nlink)
]])
   local list = {}
   for i, p in ipairs(paths) do list[i] = h.q(dir .. "/M/" .. p) end
   return h.sh("D=" .. h.q(dir) .. " unshare -m sh -c " .. h.q(
      "mount --make-rprivate / && mkdir -p $D/M $D/U $D/W && "
      .. "mount -t overlay overlay -o lowerdir=$D/L,upperdir=$D/U,"
      .. "workdir=$D/W,redirect_dir=off $D/M && "
      .. h.q(h.bin) .. " " .. h.q(child) .. " && "
      .. "python3 $D/dump.py " .. table.concat(list, " ")
      .. " && getcap $D/M/d/s/bin"))
end

function TestJournalXattr:test_copy_aside_keeps_xattrs_and_hard_links()
   local out, code = h.sh("unshare -m true")
   if code ~= 0 or not is_root then
      return lu.skip("needs root and mount namespaces: " .. out)
   end
   local dir = h.tmpdir()
   local L = dir .. "/L"
   -- d: a lower-layer folder with two links of f, a sub-folder, a
   -- binary with a file capability (owned by 1234: chown clears it)
   run("mkdir -p " .. h.q(L .. "/d/s") .. " && cd " .. h.q(L .. "/d")
      .. " && echo f > f && ln f s/g && ln -s f l && cp /bin/true s/bin"
      .. " && chown 1234:1234 s/bin && setcap cap_net_bind_service+ep s/bin")
   setx(dir, L .. "/d", { ["user.dir"] = "1", ["trusted.t"] = "2" })
   setx(dir, L .. "/d/f", { ["user.f"] = "3" })
   setx(dir, L .. "/d/s", { ["user.s"] = "4" })
   setx(dir, L .. "/d/s/bin", { ["user.bin"] = "5" })
   local paths = { "d", "d/f", "d/s", "d/s/g", "d/s/bin", "d/l" }
   -- the restore replaces d with a file, then fails: d was copied aside
   -- (a lower folder cannot be renamed), and the copy is renamed back
   local src = archive(dir, "a", [[
entry(tf, "d", data=b"now a file")
entry(tf, "../evil", data=b"x")
]])
   out = on_overlay(dir, src, paths)
   lu.assertStrContains(out, "extract:\trefused\t")
   lu.assertStrContains(out, "d: trusted.t=32 user.dir=31\n")
   lu.assertStrContains(out, "f: user.f=33\n")
   lu.assertStrContains(out, "s: user.s=34\n")
   lu.assertStrContains(out, "bin: user.bin=35\n")
   lu.assertStrContains(out, "cap_net_bind_service=ep")
   local f_ino = out:match("\nf (%d+) 2\n")
   lu.assertNotNil(f_ino, out)
   lu.assertStrContains(out, "\ng " .. f_ino .. " 2\n")
   -- the copy came back, not the lower folder: d is in the upper layer
   lu.assertNotNil(io.open(dir .. "/U/d/s/bin"), out)
   lu.assertEquals(run("stat -c %u " .. h.q(dir .. "/U/d/s/bin")), "1234\n")
end

-- An access ACL on an old folder changes its mode bits as well: a failed
-- restore (here a wrong digest, found only at the end) puts the mode back,
-- not just the attribute.
function TestJournalXattr:test_acl_mode_change_is_rolled_back()
   local dir = h.tmpdir()
   local R = dir .. "/R"
   run("mkdir -p " .. h.q(R .. "/secret") .. " && chmod 0700 "
      .. h.q(R .. "/secret"))
   python(dir, [[
import base64, io, os, struct, sys, tarfile
acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, 0xffffffff)
      for t, p in [(1, 7), (4, 7), (0x10, 7), (0x20, 7)])
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as tf:
    ti = tarfile.TarInfo("secret/"); ti.type = tarfile.DIRTYPE; ti.mode = 0o700
    ti.pax_headers = {"LIBARCHIVE.xattr.system.posix_acl_access":
                      base64.b64encode(acl).decode()}
    tf.addfile(ti)
    data = os.urandom(1 << 20)
    ti = tarfile.TarInfo("pad"); ti.size = len(data)
    tf.addfile(ti, io.BytesIO(data))
]], dir .. "/acl.tar")
   run("zstd -q --rm " .. h.q(dir .. "/acl.tar"))
   local r, err, code = tar.extract { root = R, source = dir .. "/acl.tar.zst",
      sha256 = ("0"):rep(64) }
   lu.assertNil(r)
   lu.assertEquals(code, "digest", err)
   lu.assertEquals(run("stat -c %a " .. h.q(R .. "/secret")), "700\n")
   lu.assertEquals(run("ls -A " .. h.q(R)), "secret\n")
end

-- A log whose last record was cut by a kill: the replay removes the
-- piece before it appends its "undone" marks, which would otherwise be
-- glued to it ("creaundone 2") and lost, and the record undone twice by
-- the next replay.  Here the replay fails on purpose at its last record
-- (a folder path through a file), so the journal stays to be read.
function TestJournalXattr:test_replay_cuts_a_half_written_last_record()
   local dir = h.tmpdir()
   local R = dir .. "/R"
   local J = R .. "/var/lib/clayer/journal"
   run("mkdir -p " .. h.q(J) .. " && echo file > " .. h.q(R .. "/f")
      .. " && echo new > " .. h.q(R .. "/X"))
   h.write(J .. "/log", ("root %s\nmeta f/sub 755 0 0 0 0\ncreated X\n"
      .. "crea"):format(R))
   local ok, err = tar.recover(J)
   lu.assertNil(ok)
   lu.assertStrContains(err, "f/sub")
   lu.assertNil(h.read(R .. "/X"))
   local log = h.read(J .. "/log")
   lu.assertNotStrContains(log, "crea\n")
   lu.assertNotStrContains(log, "creaundone")
   lu.assertStrContains(log, "\nundone 2\n")
end
