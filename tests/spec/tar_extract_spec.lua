--- clayer.tar: safe extraction (DESIGN §3, cases B1-B15), the journal,
-- tar.recover and tar.list.
local lu = require "luaunit"
local h = require "helper"
local tar = require "clayer.tar"

-- The cases file's helper.py, prepended to every archive recipe.
local HELPER = [[
import io, os, tarfile, time

def entry(tf, name, kind="file", data=b"", mode=0o644, link="", uid=0,
          gid=0, uname="", gname="", mtime=None, pax=None, dev=(0, 0)):
    ti = tarfile.TarInfo(name)
    ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = mode, uid, gid, uname, gname
    ti.mtime = 1700000000 if mtime is None else mtime
    if pax:
        ti.pax_headers = dict(pax)
    if kind == "file":
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
        return
    ti.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE,
               "hard": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE,
               "fifo": tarfile.FIFOTYPE}[kind]
    ti.linkname = link
    ti.devmajor, ti.devminor = dev
    tf.addfile(ti)

def archive(path, fmt=tarfile.PAX_FORMAT):
    return tarfile.open(path, "w", format=fmt)
]]

local T = {}   -- spec helpers

--- Run a shell command; fail the test when it fails.
function T.run(cmd)
   local out, code = h.sh(cmd)
   if code ~= 0 then
      error("command failed (" .. tostring(code) .. "): " .. cmd .. "\n"
         .. out, 2)
   end
   return out
end

--- Write a tar with Python at dir/name.tar; compress it with `comp`
-- ("zstd" default, "gzip", "xz" or "none"); return the archive's path.
function T.make(dir, name, body, comp)
   local py = dir .. "/" .. name .. ".py"
   local path = dir .. "/" .. name .. ".tar"
   h.write(py, HELPER .. "OUT = " .. string.format("%q", path) .. "\n"
      .. body)
   T.run("python3 " .. h.q(py))
   comp = comp or "zstd"
   if comp == "zstd" then
      T.run("zstd -q -f --rm " .. h.q(path))
      return path .. ".zst"
   elseif comp == "gzip" then
      T.run("gzip -f " .. h.q(path))
      return path .. ".gz"
   elseif comp == "xz" then
      T.run("xz -f " .. h.q(path))
      return path .. ".xz"
   end
   return path
end

--- A listing of everything under dir (without dir itself, and without
-- the subtree `skip` when given): type, mode, owner, size, mtime, link
-- and content digest of every entry.
function T.listing(dir, skip)
   local prune = skip and ("-path ./" .. skip .. " -prune -o ") or ""
   return T.run("cd " .. h.q(dir) .. " && { find . -mindepth 1 " .. prune
      .. "-printf '%y %m %U:%G %s %T@ %n %p -> %l\\n' | LC_ALL=C sort;"
      .. " find . " .. prune .. "-type f -exec sha256sum {} + |"
      .. " LC_ALL=C sort; }")
end

--- A scratch area: area/R is the root, the rest of area is "outside".
function T.area()
   local area = h.tmpdir()
   T.run("chmod 755 " .. h.q(area) .. " && mkdir " .. h.q(area .. "/R"))
   return area, area .. "/R"
end

--- Snapshot of the area outside R, and of R.
function T.snap(area)
   return { outside = T.listing(area, "R"),
            root = T.listing(area .. "/R") }
end

--- Assert that nothing outside R changed since snapshot s.
function T.outside_same(area, s)
   lu.assertEquals(T.listing(area, "R"), s.outside)
end

--- Assert that R and the outside are exactly as in s, no journal left.
function T.all_same(area, s)
   T.outside_same(area, s)
   lu.assertEquals(T.listing(area .. "/R"), s.root)
end

function T.stat(path, fmt)
   return (T.run("stat -c " .. h.q(fmt) .. " " .. h.q(path))
      :gsub("\n$", ""))
end

--- Run a Lua chunk in a child clayer-lua (as user 65534 when nobody).
function T.child(_, code, nobody)
   local dir = h.tmpdir()
   T.run("chmod 755 " .. h.q(dir))
   local script = dir .. "/child.lua"
   h.write(script, "local tar = require 'clayer.tar'\n"
      .. "local json = require 'clayer.json'\n" .. code)
   local prefix = nobody
      and "setpriv --reuid=65534 --regid=65534 --clear-groups " or ""
   -- "; true": the subshell reaps the child, so "Killed" is captured
   return h.sh(prefix .. h.q(h.bin) .. " " .. h.q(script) .. "; true")
end

local function extract(R, source, opts)
   opts = opts or {}
   opts.root = R
   opts.source = source
   return tar.extract(opts)
end

--- Extract src into R, expect it refused with a message holding `want`,
-- and nothing in the area changed; `what` names the case in failures.
function T.refused(area, R, src, want, what)
   local s = T.snap(area)
   local r, err, code = extract(R, src)
   lu.assertNil(r, what)
   lu.assertEquals(code, "refused", what)
   lu.assertStrContains(err, want, what)
   T.all_same(area, s)
   return err
end

-- Round trip -------------------------------------------------------------

TestTarExtract = {}

function TestTarExtract:test_round_trip()
   local area, R = T.area()
   local a = T.make(area, "rt", [[
with archive(OUT) as tf:
    entry(tf, "usr/", "dir", mode=0o755, mtime=1000000000)
    entry(tf, "usr/bin/", "dir", mode=0o750,
          pax={"mtime": "981173106"})
    entry(tf, "usr/bin/a", data=b"same\n", mode=0o755,
          pax={"mtime": "981173106.789012345"})
    entry(tf, "usr/bin/b", "hard", link="usr/bin/a")
    entry(tf, "usr/bin/c", "sym", link="a")
    entry(tf, "usr/bin/abs", "sym", link="/etc/alternatives/editor")
    entry(tf, "etc/conf", data=b"x" * 5000, mode=0o600)
    entry(tf, "./etc/empty", data=b"", mode=0o640)
]])
   local s = T.snap(area)
   local r, err = extract(R, a)
   lu.assertNil(err)
   lu.assertEquals(r.files, 8)
   lu.assertEquals(r.bytes, 5005)
   lu.assertEquals(#r.sha256, 64)
   lu.assertEquals(r.sha256, T.run("sha256sum " .. h.q(a)):sub(1, 64))
   lu.assertEquals(r.size, tonumber(T.stat(a, "%s")))
   lu.assertEquals(r.warnings, {})
   lu.assertEquals(h.read(R .. "/usr/bin/a"), "same\n")
   lu.assertEquals(T.stat(R .. "/usr/bin/a", "%a %h %y"),
      "755 2 " .. T.run("TZ=UTC date -d @981173106 '+%Y-%m-%d %H:%M:%S'")
         :gsub("\n", "") .. ".789012345 +0000")
   lu.assertEquals(T.stat(R .. "/usr/bin/a", "%i"),
      T.stat(R .. "/usr/bin/b", "%i"))
   lu.assertEquals(T.run("readlink " .. R .. "/usr/bin/c"), "a\n")
   lu.assertEquals(T.run("readlink " .. R .. "/usr/bin/abs"),
      "/etc/alternatives/editor\n")
   lu.assertEquals(T.stat(R .. "/usr/bin", "%a %Y"), "750 981173106")
   lu.assertEquals(T.stat(R .. "/usr", "%Y"), "1000000000")
   lu.assertEquals(T.stat(R .. "/etc/conf", "%a %s"), "600 5000")
   lu.assertEquals(T.stat(R .. "/etc/empty", "%a %s"), "640 0")
   lu.assertFalse(io.open(R .. "/var") ~= nil)   -- no journal left
   T.outside_same(area, s)
end

function TestTarExtract:test_list()
   local area = T.area()
   local a = T.make(area, "ls", [[
with archive(OUT) as tf:
    entry(tf, "d/", "dir", mode=0o755, mtime=5)
    entry(tf, "d/f", data=b"abc", mode=0o4711, uid=7, gid=8,
          pax={"mtime": "6.5"})
    entry(tf, "d/l", "sym", link="f")
    entry(tf, "d/h", "hard", link="d/f")
]])
   local l = assert(tar.list { source = a })
   lu.assertEquals(#l, 4)
   lu.assertEquals(l[1].name, "d/")
   lu.assertEquals(l[1].type, "dir")
   lu.assertEquals(l[1].mtime, 5000000000)
   lu.assertEquals(l[2].type, "file")
   lu.assertEquals(l[2].size, 3)
   lu.assertEquals(l[2].mode, tonumber("4711", 8))
   lu.assertEquals(l[2].uid, 7)
   lu.assertEquals(l[2].gid, 8)
   lu.assertEquals(l[2].mtime, 6500000000)
   lu.assertEquals(l[3].type, "link")
   lu.assertEquals(l[3].target, "f")
   lu.assertEquals(l[4].type, "hardlink")
   lu.assertEquals(l[4].target, "d/f")
   local _, err, code = tar.list { source = a, sha256 = ("0"):rep(64) }
   lu.assertEquals(code, "digest")
   lu.assertStrContains(err, "tar.list: ")
end

function TestTarExtract:test_misuse_raises()
   lu.assertErrorMsgContains("root", tar.extract, { source = "x" })
   lu.assertErrorMsgContains("unknown option 'bogus'", tar.extract,
      { root = "/tmp", source = "x", bogus = 1 })
   lu.assertErrorMsgContains("format", tar.extract,
      { root = "/tmp", source = "x", format = "xz" })
   lu.assertErrorMsgContains("sha256", tar.extract,
      { root = "/tmp", source = "x", sha256 = "abc" })
   lu.assertErrorMsgContains("source", tar.list, { source = {} })
   lu.assertErrorMsgContains("source", tar.list, { source = true })
end

-- Hostile archives (B1-B14) ---------------------------------------------

function TestTarExtract:test_b1_names_climbing_out_are_refused()
   local area, R = T.area()
   local a = T.make(area, "b1", [[
with archive(OUT) as tf:
    entry(tf, "ok.txt", data=b"fine")
    entry(tf, "../b1-escape.txt", data=b"x")
    entry(tf, "etc/../../b1-escape2.txt", data=b"x")
    entry(tf, "/b1-abs.txt", data=b"x")
]])
   T.refused(area, R, a, "tar.extract: ../b1-escape.txt: ")

   local a2 = T.make(area, "b1b", [[
with archive(OUT) as tf:
    entry(tf, "etc/../../b1-escape2.txt", data=b"x")
]])
   T.refused(area, R, a2, "etc/../../b1-escape2.txt")

   -- an absolute name means R plus that name; a harmless ".." stays in
   local a3 = T.make(area, "b1c", [[
with archive(OUT) as tf:
    entry(tf, "/b1-abs.txt", data=b"abs")
    entry(tf, "/usr/../b1-dots.txt", data=b"dots")
]])
   local s = T.snap(area)
   assert(extract(R, a3))
   lu.assertEquals(h.read(R .. "/b1-abs.txt"), "abs")
   lu.assertEquals(h.read(R .. "/b1-dots.txt"), "dots")
   T.outside_same(area, s)
end

function TestTarExtract:test_b2_symlink_then_member_through_it()
   local area, R = T.area()
   T.run("mkdir " .. h.q(area .. "/outside"))
   local a = T.make(area, "b2", string.format([[
with archive(OUT) as tf:
    entry(tf, "escape", "sym", link=%q)
    entry(tf, "escape/pwned", data=b"PWNED\n")
]], area .. "/outside"))
   T.refused(area, R, a, "escape/pwned")

   -- when the link's target exists inside R, the member lands there
   T.run("mkdir -p " .. h.q(R .. area .. "/outside"))
   local s = T.snap(area)
   assert(extract(R, a))
   lu.assertEquals(h.read(R .. area .. "/outside/pwned"), "PWNED\n")
   lu.assertEquals(T.run("readlink " .. h.q(R .. "/escape")),
      area .. "/outside\n")
   T.outside_same(area, s)
end

function TestTarExtract:test_b2_symlink_to_etc()
   local area, R = T.area()
   local a = T.make(area, "etc", [[
with archive(OUT) as tf:
    entry(tf, "sysconf", "sym", link="/etc")
    entry(tf, "sysconf/clayer-spec-pwned", data=b"PWNED\n")
]])
   local s = T.snap(area)
   local _, err, code = extract(R, a)
   lu.assertEquals(code, "refused")
   lu.assertStrContains(err, "sysconf/clayer-spec-pwned")
   T.all_same(area, s)
   T.run("mkdir " .. h.q(R .. "/etc"))
   assert(extract(R, a))
   lu.assertEquals(h.read(R .. "/etc/clayer-spec-pwned"), "PWNED\n")
   lu.assertNil(io.open("/etc/clayer-spec-pwned"))
   T.outside_same(area, s)
end

function TestTarExtract:test_b2_across_two_archives()
   local area, R = T.area()
   T.run("mkdir " .. h.q(area .. "/victim"))
   local a1 = T.make(area, "l1", string.format([[
with archive(OUT) as tf:
    entry(tf, "conf", "sym", link="../../../../../../..%s/victim")
]], area))
   local a2 = T.make(area, "l2", [[
with archive(OUT) as tf:
    entry(tf, "conf/settings", data=b"PWNED\n")
]])
   local s = T.snap(area)
   assert(extract(R, a1))
   local r, err, code = extract(R, a2)
   lu.assertNil(r)
   lu.assertEquals(code, "refused")
   lu.assertStrContains(err, "conf/settings")
   T.outside_same(area, s)
   -- resolved as if R were /: lands in R's own copy of the folder
   T.run("mkdir -p " .. h.q(R .. area .. "/victim"))
   assert(extract(R, a2))
   lu.assertEquals(h.read(R .. area .. "/victim/settings"), "PWNED\n")
   T.outside_same(area, s)
end

function TestTarExtract:test_b3_hardlinks()
   local area, R = T.area()
   h.write(area .. "/victim.txt", "ORIGINAL\n")
   h.write(R .. "/old.txt", "OLD\n")
   local a = T.make(area, "b3", [[
with archive(OUT) as tf:
    entry(tf, "innocent.txt", "hard", link="../victim.txt")
    entry(tf, "innocent.txt", data=b"PWNED\n")
]])
   T.refused(area, R, a, "innocent.txt")
   lu.assertEquals(h.read(area .. "/victim.txt"), "ORIGINAL\n")

   -- a file that is in R but not in this archive is no target either
   local a2 = T.make(area, "b3b", [[
with archive(OUT) as tf:
    entry(tf, "grab", "hard", link="old.txt")
]])
   T.refused(area, R, a2, "tar.extract: grab: hardlink to old.txt")

   local ok = T.make(area, "b3ok", [[
with archive(OUT) as tf:
    entry(tf, "usr/bin/a", data=b"same\n")
    entry(tf, "usr/bin/b", "hard", link="usr/bin/a")
]])
   assert(extract(R, ok))
   lu.assertEquals(T.stat(R .. "/usr/bin/b", "%h"), "2")
   lu.assertEquals(h.read(R .. "/usr/bin/b"), "same\n")
end

function TestTarExtract:test_b3_hardlink_targets_are_inodes_of_this_archive()
   local area, R = T.area()
   T.run("cd " .. h.q(R) .. " && mkdir -p usr/lib && ln -s usr/lib lib")
   -- a chain, and a target named through the root's symlinked folder
   local ok = T.make(area, "chain", [[
with archive(OUT) as tf:
    entry(tf, "usr/lib/a.so", data=b"lib\n")
    entry(tf, "b", "hard", link="usr/lib/a.so")
    entry(tf, "c", "hard", link="b")
    entry(tf, "d", "hard", link="lib/a.so")
]])
   assert(extract(R, ok))
   lu.assertEquals(T.stat(R .. "/usr/lib/a.so", "%h"), "4")
   lu.assertEquals(h.read(R .. "/d"), "lib\n")

   -- a target this archive replaced with a symlink, a folder, the root: refused, and R is as before
   for name, body in pairs({
      relinked = [[
    entry(tf, "t", data=b"x\n")
    entry(tf, "t", "sym", link="/etc/passwd")
    entry(tf, "grab", "hard", link="t")
]],
      folder = [[
    entry(tf, "t", "dir", mode=0o755)
    entry(tf, "grab", "hard", link="t")
]],
      root = [[
    entry(tf, "grab", "hard", link=".")
]],
      -- the first t, moved into the journal when the second replaced it
      journal = [[
    entry(tf, "t", data=b"x\n")
    entry(tf, "t", data=b"y\n")
    entry(tf, "grab", "hard", link="var/lib/clayer/journal/00000001")
]],
   }) do
      local a = T.make(area, "bad-" .. name,
         "with archive(OUT) as tf:\n" .. body)
      T.refused(area, R, a, "grab: hardlink to", name)
   end
end

function TestTarExtract:test_b4_file_over_symlink_and_back()
   local area, R = T.area()
   T.run("cd " .. h.q(R) .. " && mkdir -p etc usr/share/zoneinfo"
      .. " && echo TZDATA > usr/share/zoneinfo/UTC"
      .. " && ln -s ../usr/share/zoneinfo/UTC etc/localtime"
      .. " && echo REGULAR > etc/mirror")
   local a = T.make(area, "b4", [[
with archive(OUT) as tf:
    entry(tf, "etc/localtime", data=b"COPIED\n")
    entry(tf, "etc/mirror", "sym", link="localtime")
]])
   local s = T.snap(area)
   assert(extract(R, a))
   lu.assertEquals(T.stat(R .. "/etc/localtime", "%F"), "regular file")
   lu.assertEquals(h.read(R .. "/etc/localtime"), "COPIED\n")
   lu.assertEquals(h.read(R .. "/usr/share/zoneinfo/UTC"), "TZDATA\n")
   lu.assertEquals(T.run("readlink " .. R .. "/etc/mirror"), "localtime\n")
   T.outside_same(area, s)
end

function TestTarExtract:test_dir_member_over_symlink_to_dir()
   local area, R = T.area()
   T.run("cd " .. h.q(R) .. " && mkdir -p usr/lib && ln -s usr/lib lib")
   local a = T.make(area, "lib", [[
with archive(OUT) as tf:
    entry(tf, "lib/", "dir", mode=0o755)
    entry(tf, "lib/x.so", data=b"so")
]])
   assert(extract(R, a))
   lu.assertEquals(T.run("readlink " .. R .. "/lib"), "usr/lib\n")
   lu.assertEquals(h.read(R .. "/usr/lib/x.so"), "so")

   -- a whiteout for the link makes the folder real (B6)
   local a2 = T.make(area, "lib2", [[
with archive(OUT) as tf:
    entry(tf, ".wh.lib")
    entry(tf, "lib/", "dir", mode=0o755)
    entry(tf, "lib/y.so", data=b"y")
]])
   assert(extract(R, a2))
   lu.assertEquals(T.stat(R .. "/lib", "%F"), "directory")
   lu.assertEquals(T.run("ls " .. R .. "/lib"), "y.so\n")
   lu.assertEquals(T.run("ls " .. R .. "/usr/lib"), "x.so\n")
end

function TestTarExtract:test_b6_type_changes()
   local area, R = T.area()
   T.run("cd " .. h.q(R) .. " && mkdir -p opt/tool app/releases/v1"
      .. " && touch opt/tool/a opt/tool/b app/releases/v1/old.txt"
      .. " && ln -s /app/releases/v1 app/current && echo f > opt/plain"
      .. " && mkdir opt/dir2 && touch opt/dir2/z")
   local a = T.make(area, "b6", [[
with archive(OUT) as tf:
    entry(tf, "app/.wh.current")
    entry(tf, "app/current/", "dir")
    entry(tf, "app/current/file", data=b"new\n")
    entry(tf, "opt/.wh.tool")
    entry(tf, "opt/dir2", data=b"file now\n")
    entry(tf, "opt/plain/", "dir")
    entry(tf, "opt/plain/inside", data=b"i")
    entry(tf, "opt/tool", data=b"v2\n")
]])
   local s = T.snap(area)
   assert(extract(R, a))
   lu.assertEquals(h.read(R .. "/opt/tool"), "v2\n")
   lu.assertEquals(h.read(R .. "/opt/dir2"), "file now\n")
   lu.assertEquals(h.read(R .. "/opt/plain/inside"), "i")
   lu.assertEquals(T.stat(R .. "/app/current", "%F"), "directory")
   lu.assertEquals(T.run("ls " .. R .. "/app/current"), "file\n")
   lu.assertEquals(T.run("ls " .. R .. "/app/releases/v1"), "old.txt\n")
   T.outside_same(area, s)
end

function TestTarExtract:test_special_files_refused()
   local area, R = T.area()
   local dev = T.make(area, "dev", [[
with archive(OUT) as tf:
    entry(tf, "dev/null", "chr", mode=0o666, dev=(1, 3))
]])
   local fifo = T.make(area, "fifo", [[
with archive(OUT) as tf:
    entry(tf, "run/pipe", "fifo", mode=0o600)
]])
   local s = T.snap(area)
   local r, err, code = extract(R, dev)
   lu.assertNil(r)
   lu.assertEquals(code, "refused")
   lu.assertStrContains(err, "tar.extract: dev/null: ")
   r, err, code = extract(R, fifo)
   lu.assertNil(r)
   lu.assertEquals(code, "refused")
   lu.assertStrContains(err, "run/pipe")
   T.all_same(area, s)
   assert(extract(R, fifo, { allow_special = true }))
   lu.assertEquals(T.stat(R .. "/run/pipe", "%F %a"), "fifo 600")
end

local B9 = [[
with archive(OUT) as tf:
    entry(tf, "usr/local/bin/b9-named", data=b"#!/bin/sh\n", mode=0o4755,
          uid=4321, gid=4321, uname="root", gname="root")
    entry(tf, "usr/local/bin/b9-sgid", data=b"x", mode=0o2755)
    entry(tf, "srv/b9-sticky/", "dir", mode=0o1777)
    entry(tf, "srv/owned/", "dir", mode=0o2750, uid=4321, gid=4322)
]]

function TestTarExtract:test_b9_owners_as_root()
   if T.run("id -u") ~= "0\n" then
      return lu.skip("needs root")
   end
   local area, R = T.area()
   local a = T.make(area, "b9", B9)
   local r = assert(extract(R, a))
   lu.assertEquals(r.warnings, {})
   lu.assertEquals(T.stat(R .. "/usr/local/bin/b9-named", "%u:%g %a"),
      "4321:4321 4755")
   lu.assertEquals(T.stat(R .. "/usr/local/bin/b9-sgid", "%u:%g %a"),
      "0:0 2755")
   lu.assertEquals(T.stat(R .. "/srv/b9-sticky", "%a"), "1777")
   lu.assertEquals(T.stat(R .. "/srv/owned", "%u:%g %a"), "4321:4322 2750")
end

function TestTarExtract:test_b9_owners_as_non_root()
   local area, R = T.area()
   local a = T.make(area, "b9", B9)
   T.run("chown 65534:65534 " .. h.q(R))
   local out = T.child(area, string.format([[
local r, err, code = tar.extract { root = %q, source = %q }
print(r and json.encode(r.warnings) or err)
]], R, a), true)
   lu.assertStrContains(out, "owners and setuid/setgid bits not restored")
   lu.assertEquals(select(2, out:gsub("tar%.extract:", "")), 1)
   lu.assertEquals(T.stat(R .. "/usr/local/bin/b9-named", "%u:%g %a"),
      "65534:65534 755")
   lu.assertEquals(T.stat(R .. "/usr/local/bin/b9-sgid", "%a"), "755")
   lu.assertEquals(T.stat(R .. "/srv/b9-sticky", "%a"), "1777")
   lu.assertEquals(T.stat(R .. "/srv/owned", "%u:%g %a"),
      "65534:65534 750")
end

function TestTarExtract:test_b8_long_names_and_targets()
   local area, R = T.area()
   local body = [[
d = "opt/" + "d" * 120 + "/" + "e" * 120
with archive(OUT, FMT) as tf:
    entry(tf, d + "/f.txt", data=b"deep\n")
    entry(tf, "opt/b8-longlink", "sym", link="/" + "t" * 150)
    entry(tf, "opt/" + "n" * 255, data=b"")
    entry(tf, "x/" + "/".join(["p" * 99] * 3), data=b"300")
    entry(tf, "opt/hl", "hard", link=d + "/f.txt")
]]
   for _, fmt in ipairs { "PAX_FORMAT", "GNU_FORMAT" } do
      local a = T.make(area, "b8" .. fmt,
         "FMT = tarfile." .. fmt .. "\n" .. body)
      T.run("rm -rf " .. h.q(R) .. " && mkdir " .. h.q(R))
      assert(extract(R, a))
      local d = R .. "/opt/" .. ("d"):rep(120) .. "/" .. ("e"):rep(120)
      lu.assertEquals(h.read(d .. "/f.txt"), "deep\n")
      lu.assertEquals(T.run("readlink " .. R .. "/opt/b8-longlink"),
         "/" .. ("t"):rep(150) .. "\n")
      lu.assertNotNil(io.open(R .. "/opt/" .. ("n"):rep(255)))
      local p = ("p"):rep(99)
      lu.assertEquals(h.read(R .. "/x/" .. p .. "/" .. p .. "/" .. p),
         "300")
      lu.assertEquals(T.stat(R .. "/opt/hl", "%h"), "2")
      lu.assertEquals(T.run("find " .. h.q(R) .. " -name '*LongLink*'"),
         "")
   end
end

function TestTarExtract:test_b11_sparse_file()
   local area, R = T.area()
   T.run("cd " .. h.q(area) .. " && mkdir src && truncate -s 1G src/b11.img"
      .. " && printf END | dd of=src/b11.img bs=1 seek=1073741821"
      .. " conv=notrunc status=none"
      .. " && tar --sparse --format=pax -C src -cf - b11.img"
      .. " | zstd -q > b11.tar.zst")
   lu.assertTrue(tonumber(T.stat(area .. "/b11.tar.zst", "%s")) < 65536)
   local r = assert(extract(R, area .. "/b11.tar.zst"))
   lu.assertTrue(r.bytes < 65536)
   lu.assertEquals(T.stat(R .. "/b11.img", "%s"), "1073741824")
   lu.assertEquals(T.run("tail -c 3 " .. R .. "/b11.img"), "END")
   lu.assertEquals(T.run("head -c 4096 " .. R .. "/b11.img | tr -d '\\0'"
      .. " | wc -c"), "0\n")
   lu.assertTrue(tonumber(T.stat(R .. "/b11.img", "%b")) < 1024)
end

function TestTarExtract:test_b12_read_only_folders_as_non_root()
   local area, R = T.area()
   local a = T.make(area, "b12", [[
with archive(OUT) as tf:
    entry(tf, "opt/", "dir", mode=0o755)
    entry(tf, "opt/ro/", "dir", mode=0o555)
    entry(tf, "opt/ro/sub/", "dir", mode=0o555)
    entry(tf, "opt/ro/sub/f", data=b"data\n", mode=0o444)
]])
   T.run("chown 65534:65534 " .. h.q(R))
   local code = string.format([[
local r, err = tar.extract { root = %q, source = %q }
print(r and "ok" or err)
]], R, a)
   lu.assertEquals(T.child(area, code, true), "ok\n")
   lu.assertEquals(h.read(R .. "/opt/ro/sub/f"), "data\n")
   lu.assertEquals(T.stat(R .. "/opt/ro", "%a"), "555")
   lu.assertEquals(T.stat(R .. "/opt/ro/sub", "%a"), "555")
   -- a second time over the same tree
   lu.assertEquals(T.child(area, code, true), "ok\n")
   lu.assertEquals(h.read(R .. "/opt/ro/sub/f"), "data\n")
   lu.assertEquals(T.stat(R .. "/opt/ro/sub", "%a %U"), "555 nobody")
   -- and a failure after it puts the read-only folders back
   local before = T.listing(R)
   lu.assertStrContains(T.child(area, string.format([[
local r, err, c = tar.extract { root = %q, source = %q,
   sha256 = string.rep("0", 64) }
print(c)
]], R, a), true), "digest")
   lu.assertEquals(T.listing(R), before)
end

function TestTarExtract:test_b7_whiteouts_and_opaque_folders()
   local area, R = T.area()
   T.run("cd " .. h.q(R) .. " && mkdir -p srv/keep/deep etc opt/cache"
      .. " && touch srv/keep/old srv/keep/deep/x etc/motd etc/issue"
      .. " opt/cache/1 opt/cache/2")
   local a = T.make(area, "b7", [[
with archive(OUT) as tf:
    entry(tf, "srv/keep/new", data=b"n\n")
    entry(tf, "srv/keep/.wh..wh..opq")
    entry(tf, "etc/.wh.", data=b"")
    entry(tf, "etc/.wh.motd")
    entry(tf, "opt/.wh.cache")
    entry(tf, "opt/cache/", "dir")
    entry(tf, "opt/cache/new", data=b"fresh\n")
    entry(tf, "nothing/.wh.here")
]])
   local s = T.snap(area)
   assert(extract(R, a))
   lu.assertEquals(T.run("ls -A " .. R .. "/srv/keep"), "new\n")
   lu.assertEquals(T.run("ls -A " .. R .. "/etc"), "issue\n")
   lu.assertEquals(T.run("ls -A " .. R .. "/opt/cache"), "new\n")
   lu.assertEquals(T.run("find " .. h.q(R) .. " -name '.wh.*'"), "")
   lu.assertFalse(io.open(R .. "/nothing") ~= nil)
   T.outside_same(area, s)
end

function TestTarExtract:test_b14_times_with_nanoseconds()
   local area, R = T.area()
   local a = T.make(area, "b14", [[
with archive(OUT) as tf:
    entry(tf, "opt/b14-old", data=b"", pax={"mtime": "981173106.789012345"})
    entry(tf, "opt/b14dir/", "dir", mtime=981173106)
    entry(tf, "opt/b14dir/f", data=b"x\n")
    entry(tf, "opt/b14dir/sub/", "dir", mtime=981173000)
    entry(tf, "opt/b14dir/sub/g", data=b"g\n")
]])
   assert(extract(R, a))
   lu.assertEquals(T.stat(R .. "/opt/b14-old", "%.9Y"),
      "981173106.789012345")
   lu.assertEquals(T.stat(R .. "/opt/b14dir", "%.9Y"),
      "981173106.000000000")
   lu.assertEquals(T.stat(R .. "/opt/b14dir/sub", "%Y"), "981173000")
end

local function populated(area, R)
   T.run("cd " .. h.q(R) .. " && mkdir -p etc usr/bin var/lib"
      .. " && echo one > etc/one && echo bin > usr/bin/tool"
      .. " && ln -s one etc/link && touch -d @1000 etc usr/bin")
   local a = T.make(area, "good", [[
with archive(OUT) as tf:
    entry(tf, "etc/", "dir", mode=0o700, mtime=5)
    entry(tf, "etc/one", data=b"replaced\n")
    entry(tf, "etc/link", data=b"no longer a link\n")
    entry(tf, "usr/bin/", "dir", mode=0o700)
    entry(tf, "usr/bin/tool", data=os.urandom(300000))
    entry(tf, "usr/bin/new", data=os.urandom(300000))
    entry(tf, "opt/x/y", data=b"y")
]])
   return a, T.run("sha256sum " .. h.q(a)):sub(1, 64),
      tonumber(T.stat(a, "%s"))
end

-- HTTP streams as sources --------------------------------------------------

local SERVER = [[
import functools, http.server, os, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                            directory=sys.argv[1])
handler.log_message = lambda *a: None
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
srv.serve_forever()
]]

--- Serve dir on 127.0.0.1; return the base URL and the server's pid.
local function serve(dir)
   local py, portfile = dir .. "/server.py", dir .. "/port"
   h.write(py, SERVER)
   local pid = T.run("python3 " .. h.q(py) .. " " .. h.q(dir) .. " "
      .. h.q(portfile) .. " >/dev/null 2>&1 & echo $!"):match("%d+")
   for _ = 1, 200 do
      if h.read(portfile) then break end
      T.run("sleep 0.02")
   end
   return "http://127.0.0.1:" .. assert(h.read(portfile)) .. "/", pid
end

function TestTarExtract:test_http_streams()
   local ok, http = pcall(require, "clayer.http")
   if not ok or not http.open then
      return lu.skip("clayer.http.open not available")
   end
   local area, R = T.area()
   local a, sha, size = populated(area, R)
   T.run("cd " .. h.q(area) .. " && head -c 300000 " .. h.q(a)
      .. " > p0 && tail -c +300001 " .. h.q(a) .. " > p1 && head -c "
      .. (size // 2) .. " " .. h.q(a) .. " > half")
   local url, pid = serve(area)
   self.server = pid
   local s = T.snap(area)
   local r, err, code = extract(R, http.open { url = url .. "half" },
      { sha256 = sha, size = size })
   lu.assertNil(r)
   lu.assertEquals(code, "truncated", err)
   T.all_same(area, s)
   r, err = extract(R, http.open { url = url .. "nothing" })
   lu.assertNil(r)
   lu.assertStrContains(err, "404")
   T.all_same(area, s)
   r = assert(extract(R, { http.open { url = url .. "p0" },
      http.open { url = url .. "p1" } }, { sha256 = sha, size = size }))
   lu.assertEquals(r.sha256, sha)
   lu.assertEquals(h.read(R .. "/etc/one"), "replaced\n")
end

function TestTarExtract:tearDown()
   if self.server then
      os.execute("kill " .. self.server)
      self.server = nil
   end
   h.cleanup()
end

-- Corruption (B15) --------------------------------------------------------

function TestTarExtract:test_corruption_rolls_back()
   local area, R = T.area()
   local a, sha, size = populated(area, R)
   local cut = area .. "/cut.tar.zst"
   local flip = area .. "/flip.tar.zst"
   T.run("head -c " .. (size // 2) .. " " .. h.q(a) .. " > " .. h.q(cut))
   T.run("cp " .. h.q(a) .. " " .. h.q(flip) .. " && printf 'Z' | dd of="
      .. h.q(flip) .. " bs=1 seek=" .. (size - 100)
      .. " conv=notrunc status=none")
   local s = T.snap(area)
   local cases = {
      { cut, { sha256 = sha, size = size }, "truncated" },
      { cut, {}, "truncated" },
      { flip, { sha256 = sha, size = size }, "digest" },
      { flip, {}, "format" },
      { a, { sha256 = ("ab"):rep(32) }, "digest" },
      { a, { size = size + 1 }, "truncated" },
      { a, { size = size - 1 }, "digest" },
   }
   for i, c in ipairs(cases) do
      local r, err, code = extract(R, c[1], c[2])
      lu.assertNil(r, "case " .. i)
      lu.assertEquals(code, c[3], "case " .. i .. ": " .. tostring(err))
      lu.assertStrContains(err, "tar.extract: ")
      T.all_same(area, s)
   end
   local r = assert(extract(R, a, { sha256 = sha, size = size }))
   lu.assertEquals(r.sha256, sha)
   lu.assertEquals(h.read(R .. "/etc/link"), "no longer a link\n")
end

function TestTarExtract:test_parts()
   local area, R = T.area()
   local a, sha, size = populated(area, R)
   T.run("cd " .. h.q(area) .. " && split -b 200000 -d -a 3 "
      .. h.q(a) .. " part.")
   local parts, expect = {}, {}
   for name in T.run("ls " .. h.q(area) .. " | grep '^part'"):gmatch("%S+")
   do
      local p = area .. "/" .. name
      parts[#parts + 1] = p
      expect[#expect + 1] = { sha256 = T.run("sha256sum " .. h.q(p))
         :sub(1, 64), size = tonumber(T.stat(p, "%s")) }
   end
   lu.assertTrue(#parts >= 3)
   local s = T.snap(area)
   local missing = { parts[1], parts[3] }
   local r, err, code = extract(R, missing, { parts = expect })
   lu.assertNil(r)
   lu.assertEquals(code, "digest")
   lu.assertStrContains(err, "part 2")
   T.all_same(area, s)
   r, err, code = extract(R, { parts[1], parts[2] },
      { parts = expect, sha256 = sha })
   lu.assertNil(r)
   lu.assertEquals(code, "truncated")
   lu.assertStrContains(err, "missing")
   T.all_same(area, s)
   r = assert(extract(R, parts, { parts = expect, sha256 = sha,
      size = size }))
   lu.assertEquals(r.sha256, sha)
   lu.assertEquals(r.size, size)
   lu.assertEquals(h.read(R .. "/opt/x/y"), "y")
end

local function many(area, R)
   T.run("cd " .. h.q(R) .. " && mkdir -p data/a data/b && for i in "
      .. "$(seq 100 199); do echo old$i > data/a/f$i; done"
      .. " && ln -s a data/link && chmod 750 data/b")
   return T.make(area, "many", [[
with archive(OUT) as tf:
    for d in "ab":
        for i in range(100, 300):
            entry(tf, "data/%s/f%d" % (d, i), data=os.urandom(20000))
    entry(tf, "data/link/", "dir")
]])
end

function TestTarExtract:test_journal_on_another_filesystem()
   local area, R = T.area()
   if T.stat("/dev/shm", "%d") == T.stat(area, "%d") then
      return lu.skip("/dev/shm is on the same filesystem")
   end
   local a = many(area, R)
   local j = "/dev/shm/clayer-spec-journal-" .. T.run("echo $$"):sub(1, -2)
   local s = T.snap(area)
   local r, _, code = extract(R, a, { journal = j,
      sha256 = ("0"):rep(64) })
   lu.assertNil(r)
   lu.assertEquals(code, "digest")
   T.all_same(area, s)
   lu.assertNil(io.open(j))
   -- killed: the saved entries wait beside their targets
   T.child(area, string.format([[
local pid = io.open("/proc/self/stat"):read("n")
tar.extract { root = %q, source = %q, journal = %q,
   progress = function(n)
      if n > 3000000 then os.execute("kill -9 " .. pid) end
   end }
]], R, a, j))
   lu.assertStrContains(T.run("find " .. h.q(R) .. " -name "
      .. "'.clayer-journal.*'"), ".clayer-journal.")
   local ok, n = tar.recover(j)
   lu.assertTrue(ok)
   lu.assertTrue(n > 0)
   T.all_same(area, s)
   assert(extract(R, a, { journal = j }))
   lu.assertEquals(T.run("find " .. h.q(R) .. " -name "
      .. "'.clayer-journal.*'"), "")
   lu.assertEquals(T.stat(R .. "/data/a/f100", "%s"), "20000")
   lu.assertNil(io.open(j))
end

function TestTarExtract:test_max_bytes_bound()
   local area, R = T.area()
   local a = populated(area, R)
   local s = T.snap(area)
   local r, err, code = extract(R, a, { max_bytes = 400000 })
   lu.assertNil(r)
   lu.assertEquals(code, "space")
   lu.assertStrContains(err, "usr/bin/new")
   T.all_same(area, s)
end

function TestTarExtract:test_refused_formats()
   local area, R = T.area()
   local body = [[
with archive(OUT) as tf:
    entry(tf, "f", data=b"x")
]]
   local plain = T.make(area, "plain", body, "none")
   local xz = T.make(area, "xz", body, "xz")
   local gz = T.make(area, "gz", body, "gzip")
   h.write(area .. "/f", "x")
   T.run("cd " .. h.q(area) .. " && zip -q z.zip f")
   local s = T.snap(area)
   for _, src in ipairs { plain, xz, area .. "/z.zip", gz } do
      local r, err, code = extract(R, src)
      lu.assertNil(r)
      lu.assertEquals(code, "format", src .. ": " .. tostring(err))
      T.all_same(area, s)
   end
   assert(extract(R, gz, { format = "gzip" }))
   lu.assertEquals(h.read(R .. "/f"), "x")
   T.run("rm " .. h.q(R .. "/f"))
   assert(extract(R, gz, { format = "auto" }))
   lu.assertEquals(h.read(R .. "/f"), "x")
   local _, _, code = extract(R, plain, { format = "auto" })
   lu.assertEquals(code, "format")
end

-- The journal and tar.recover ---------------------------------------------

function TestTarExtract:test_killed_run_is_recovered()
   local area, R = T.area()
   local a = many(area, R)
   local s = T.snap(area)
   local out = T.child(area, string.format([[
local pid = io.open("/proc/self/stat"):read("n")
local calls = 0
tar.extract { root = %q, source = %q, progress = function(n)
   calls = calls + 1
   if calls == 4 then os.execute("kill -9 " .. pid) end
end }
print("not killed")
]], R, a))
   lu.assertNotStrContains(out, "not killed")
   local journal = R .. "/var/lib/clayer/journal"
   lu.assertNotNil(io.open(journal .. "/log"))
   lu.assertNotEquals(T.listing(R), s.root)
   local ok, n = tar.recover(journal)
   lu.assertTrue(ok)
   lu.assertTrue(n > 10)
   T.all_same(area, s)
   lu.assertEquals({ tar.recover(journal) }, { true, 0 })
end

function TestTarExtract:test_interrupted_run_rolls_back()
   local area, R = T.area()
   local a = many(area, R)
   local s = T.snap(area)
   local out = T.child(area, string.format([[
local pid = io.open("/proc/self/stat"):read("n")
local calls = 0
local r, err, code = tar.extract { root = %q, source = %q,
   progress = function(n)
      calls = calls + 1
      if calls == 3 then os.execute("kill -TERM " .. pid) end
   end }
print(code, err)
]], R, a))
   lu.assertStrContains(out, "interrupted")
   T.all_same(area, s)
end

local function kill_midway(area, R, a)
   T.child(area, string.format([[
local pid = io.open("/proc/self/stat"):read("n")
tar.extract { root = %q, source = %q, progress = function(n)
   if n > 2000000 then os.execute("kill -9 " .. pid) end
end }
]], R, a))
   lu.assertNotNil(io.open(R .. "/var/lib/clayer/journal/log"))
end

function TestTarExtract:test_live_journal_is_busy()
   local area, R = T.area()
   local a = many(area, R)
   local journal = R .. "/var/lib/clayer/journal"
   local seen
   local r = assert(extract(R, a, { progress = function()
      if not seen then seen = { tar.recover(journal) } end
   end }))
   lu.assertEquals(r.files, 401)
   lu.assertNil(seen[1])
   lu.assertStrContains(seen[2], "in use")
   lu.assertEquals(seen[3], "busy")
end

function TestTarExtract:test_leftover_journal_is_rolled_back_first()
   local area, R = T.area()
   local a = many(area, R)
   local s = T.snap(area)
   kill_midway(area, R, a)
   local r, _, code = extract(R, a, { sha256 = ("0"):rep(64) })
   lu.assertNil(r)
   lu.assertEquals(code, "digest")
   T.all_same(area, s)
   kill_midway(area, R, a)
   r = assert(extract(R, a))
   lu.assertStrContains(r.warnings[1], "rolled back")
   lu.assertEquals(T.stat(R .. "/data/a/f299", "%s"), "20000")
   lu.assertNil(io.open(R .. "/var"))
end

function TestTarExtract:test_journal_option_and_protection()
   local area, R = T.area()
   local a = T.make(area, "j", [[
with archive(OUT) as tf:
    entry(tf, "var/lib/clayer/journal/log", data=b"root /\n")
]])
   T.refused(area, R, a, "var/lib/clayer/journal/log")
   -- a symlink into a folder saved in the journal
   T.run("mkdir " .. h.q(R .. "/a") .. " && echo keep > " .. h.q(R .. "/a/k"))
   local a2 = T.make(area, "j2", [[
with archive(OUT) as tf:
    entry(tf, "a/", "dir")
    entry(tf, "a/f", data=b"x")
    entry(tf, "a", data=b"now a file")
    entry(tf, "s", "sym", link="/var/lib/clayer/journal/00000001")
    entry(tf, "s/evil", data=b"x")
]])
   T.refused(area, R, a2,
      "tar.extract: s/evil: inside clayer's state or journal folder")
   local j = area .. "/J"
   local r = assert(extract(R, a, { journal = j }))
   lu.assertEquals(r.files, 1)
   lu.assertEquals(h.read(R .. "/var/lib/clayer/journal/log"), "root /\n")
   lu.assertNil(io.open(j))
end

-- The journal records canonical paths --------------------------------------

--- A fresh R/usr/bin with files, X11 -> . (as Debian ships) and up -> ..
local function bin_with_links(R)
   T.run("rm -rf " .. h.q(R) .. " && mkdir -p " .. h.q(R .. "/usr/bin")
      .. " && cd " .. h.q(R .. "/usr/bin")
      .. " && for f in ls cat cp mv rm sh; do echo $f > $f; done"
      .. " && ln -s . X11 && ln -s .. up && touch -d @1000000000 . ..")
end

function TestTarExtract:test_paths_through_symlinks_roll_back()
   local area, R = T.area()
   local cases = {
      'entry(tf, "usr/bin/X11/.wh..wh..opq")',
      'entry(tf, "usr/bin/X11/X11", data=b"f")',
      'entry(tf, "usr/bin/X11/.wh.X11")',
      'entry(tf, "usr/bin/X11/.wh.X11")\n'
         .. '    entry(tf, "usr/bin/X11/new", data=b"n")',
      'entry(tf, "usr/bin/up/bin", data=b"f")',
      'entry(tf, "usr/bin/up/.wh.bin")',
      'entry(tf, "usr/bin/up/.wh..wh..opq")',
      'entry(tf, "usr/bin/X11/d/", "dir")\n'
         .. '    entry(tf, "usr/bin/X11/d/f", data=b"f")\n'
         .. '    entry(tf, "usr/bin/.wh.X11")',
   }
   for i, body in ipairs(cases) do
      bin_with_links(R)
      local a = T.make(area, "canon" .. i, "with archive(OUT) as tf:\n    "
         .. body .. '\n    entry(tf, "../x", data=b"x")\n')
      local s = T.snap(area)
      local r, err, code = extract(R, a)
      lu.assertNil(r, "case " .. i)
      lu.assertEquals(code, "refused", "case " .. i .. ": " .. tostring(err))
      lu.assertNotStrContains(err, "rollback failed")
      T.all_same(area, s)
   end
end

function TestTarExtract:test_saved_path_beside_too_long_is_refused()
   local area, R = T.area()
   if T.stat("/dev/shm", "%d") == T.stat(area, "%d") then
      return lu.skip("/dev/shm is on the same filesystem")
   end
   -- a folder whose path in R is 4085 bytes: f fits in PATH_MAX, the
   -- saved f/.clayer-journal.PID/00000001 beside it does not
   local parts = {}
   for i = 1, 16 do parts[i] = ("d"):rep(250) end
   parts[17] = ("e"):rep(69)
   local deep = table.concat(parts, "/")
   lu.assertEquals(#deep, 4085)
   T.run("cd " .. h.q(R) .. " && python3 -c 'import os, sys\n"
      .. "for p in sys.argv[1].split(\"/\"): os.mkdir(p); os.chdir(p)\n"
      .. "open(\"f\", \"w\").write(\"orig\")' " .. deep)
   local a = T.make(area, "long", "with archive(OUT) as tf:\n"
      .. "    entry(tf, " .. ("%q"):format(deep .. "/f")
      .. ", data=b\"new\")\n    entry(tf, \"../x\", data=b\"x\")\n")
   local j = "/dev/shm/clayer-spec-journal-" .. T.run("echo $$"):sub(1, -2)
   local s = T.snap(area)
   local r, err = extract(R, a, { journal = j })
   lu.assertNil(r)
   lu.assertNotStrContains(err, "rollback failed")
   T.all_same(area, s)
   lu.assertNil(io.open(j))
end
