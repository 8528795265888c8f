--- tar.create: zstd PAX archives checked with zstd, GNU tar and Python.
local lu = require "luaunit"
local h = require "helper"
local tar = require "clayer.tar"

local q, sh = h.q, h.sh

-- A 300-byte logical path (the member name without the leading '/').
local LONG = ("a"):rep(100) .. "/" .. ("b"):rep(100) .. "/" .. ("c"):rep(98)
local NL = "new\nline"
local UTF = "\195\188n\195\175 \226\130\172"          -- "ünï €"
local NS_FILE = "1700000000.123456789"
local NS_DIR = "1600000000.000000001"

--- Run a shell command; fail the test unless it exits 0.
local function run(cmd)
   local out, code = sh(cmd)
   if code ~= 0 then
      lu.fail(cmd .. "\nexited " .. tostring(code) .. ":\n" .. out)
   end
   return out
end

local function trim(s)
   return (s:gsub("%s+$", ""))
end

local function sha256sum(path)
   return run("sha256sum " .. q(path)):match("^(%x+)")
end

local function file_size(path)
   return tonumber(trim(run("stat -c %s " .. q(path))))
end

local function python(dir, code, args)
   h.write(dir .. "/.helper.py", code)
   return run("python3 " .. q(dir .. "/.helper.py") .. " " .. args)
end

--- Make the scratch tree under dir/root; return root and the entries.
local function build_tree(dir)
   local root = dir .. "/root"
   run(table.concat({
      "set -e",
      "mkdir -p " .. q(root) .. " && cd " .. q(root),
      "mkdir d odd sgid",
      "chmod 0750 odd && chmod 02755 sgid",
      ": > d/empty",
      "printf 'hello\\n' > d/a",
      "chown 1234:5678 d/a",
      "head -c 20000000 /dev/urandom > d/big",
      "truncate -s 30M d/sparse",
      "printf DATA | dd of=d/sparse bs=1 seek=10485760 conv=notrunc "
         .. "2>/dev/null",
      "ln -s ../d/a odd/link",
      "ln -s /nonexistent/target odd/dangling",
      "ln d/a odd/hard",
      "echo space > 'with space'",
      "echo newline > " .. q(NL),
      "echo utf8 > " .. q(UTF),
      "mkdir -p " .. q(LONG:match("^(.*)/")),
      "echo long > " .. q(LONG),
   }, "\n"))
   python(dir, [[
import os, sys
r = sys.argv[1]
os.setxattr(r + "/d/a", "user.test", b"xattr value")
os.utime(r + "/d/a", ns=(0, 1700000000123456789))
os.utime(r + "/odd", ns=(0, 1600000000000000001))
]], q(root))
   local entries = {
      {path = "/d"}, {path = "/d/empty"}, {path = "/d/a"}, {path = "/d/big"},
      {path = "/d/sparse"}, {path = "/odd"}, {path = "/sgid"},
      {path = "/odd/link"}, {path = "/odd/dangling"}, {path = "/odd/hard"},
      {path = "/with space"}, {path = "/" .. NL}, {path = "/" .. UTF},
      {path = "/" .. LONG},
      {path = "/gone", whiteout = true},
      {path = "/d/old", whiteout = true},
      {path = "/odd", opaque = true},
   }
   return root, entries
end

-- name, tarfile type, mode, uid, gid, link target, in archive order.
local EXPECTED = {
   {"d", "5", 493, 0, 0, ""},
   {"d/empty", "0", 420, 0, 0, ""},
   {"d/a", "0", 420, 1234, 5678, ""},
   {"d/big", "0", 420, 0, 0, ""},
   {"d/sparse", "0", 420, 0, 0, ""},
   {"odd", "5", 488, 0, 0, ""},
   {"sgid", "5", 1517, 0, 0, ""},
   {"odd/link", "2", 511, 0, 0, "../d/a"},
   {"odd/dangling", "2", 511, 0, 0, "/nonexistent/target"},
   {"odd/hard", "1", 420, 1234, 5678, "d/a"},
   {"with space", "0", 420, 0, 0, ""},
   {NL, "0", 420, 0, 0, ""},
   {UTF, "0", 420, 0, 0, ""},
   {LONG, "0", 420, 0, 0, ""},
   {".wh.gone", "0", 420, 0, 0, ""},
   {"d/.wh.old", "0", 420, 0, 0, ""},
   {"odd/.wh..wh..opq", "0", 420, 0, 0, ""},
}

local PY_LIST = [==[
import io, subprocess, sys, tarfile, urllib.parse
data = subprocess.run(["zstd", "-dc", sys.argv[1]], check=True,
                      capture_output=True).stdout
def q(s):
    return urllib.parse.quote(s, safe="/.", errors="surrogateescape")
with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as t:
    for m in t:
        xattrs = ";".join(k[13:] + "=" + q(v)
                          for k, v in sorted(m.pax_headers.items())
                          if k.startswith("SCHILY.xattr."))
        print("\t".join([q(m.name), m.type.decode(), str(m.mode),
                         str(m.uid), str(m.gid), q(m.linkname),
                         m.pax_headers.get("mtime", ""), str(m.size),
                         "1" if m.sparse else "0", xattrs]))
]==]

local function unquote(s)
   return (s:gsub("%%(%x%x)", function(x)
      return string.char(tonumber(x, 16))
   end))
end

--- Members of a .tar.zst as Python's tarfile sees them.
local function py_members(dir, archive)
   local out = python(dir, PY_LIST, q(archive))
   local members = {}
   for line in out:gmatch("[^\n]+") do
      local f = {}
      for field in (line .. "\t"):gmatch("([^\t]*)\t") do
         f[#f + 1] = field
      end
      members[#members + 1] = {
         name = unquote(f[1]), type = f[2], mode = tonumber(f[3]),
         uid = tonumber(f[4]), gid = tonumber(f[5]), link = unquote(f[6]),
         mtime = f[7], size = tonumber(f[8]), sparse = f[9] == "1",
         xattrs = unquote(f[10]),
      }
   end
   return members
end

--- Lines of `tar -tvv --numeric-owner` (GNU tar) for a .tar.zst.
local function gnu_members(archive)
   local out = run("zstd -dc " .. q(archive) .. " | LC_ALL=C.UTF-8 "
      .. "tar -tvv --numeric-owner -f - 2>/dev/null")
   local members = {}
   for line in out:gmatch("[^\n]+") do
      local perms, uid, gid, rest =
         line:match("^(%S+) (%d+)/(%d+)%s+%d+ %S+ %S+ (.*)$")
      lu.assertNotNil(perms, line)
      local name, link = rest:match("^(.-) %-> (.*)$")
      if not name then name, link = rest:match("^(.-) link to (.*)$") end
      members[#members + 1] = {perms = perms, uid = tonumber(uid),
         gid = tonumber(gid), name = name or rest, link = link}
   end
   return members
end

local function create(opts)
   local r, err, code = tar.create(opts)
   lu.assertNotNil(r, tostring(err) .. " " .. tostring(code))
   return r
end

TestTarCreate = {}

function TestTarCreate:tearDown()
   h.cleanup()
end

function TestTarCreate:test_python_sees_every_member_in_order()
   local dir = h.tmpdir()
   local root, entries = build_tree(dir)
   local out = dir .. "/layer.tar.zst"
   local r = create({output = out, root = root, entries = entries})
   run("zstd -q -t " .. q(out))
   local m = py_members(dir, out)
   lu.assertEquals(#m, #EXPECTED)
   for i, e in ipairs(EXPECTED) do
      local got = m[i]
      lu.assertEquals({got.name, got.type, got.mode, got.uid, got.gid,
         got.link}, e, "member " .. i)
   end
   lu.assertEquals(m[3].mtime, NS_FILE)
   lu.assertEquals(m[6].mtime, NS_DIR)
   lu.assertEquals(m[3].xattrs, "user.test=xattr value")
   lu.assertEquals(m[4].size, 20000000)
   lu.assertTrue(m[5].sparse)
   lu.assertEquals(m[5].size, 30 * 1048576)
   lu.assertFalse(m[4].sparse)
   lu.assertEquals(r.files, #EXPECTED)
   -- file bytes: hello, big, sparse (logical), and four small files
   lu.assertEquals(r.bytes, 6 + 20000000 + 30 * 1048576 + 6 + 8 + 5 + 5)
end

function TestTarCreate:test_gnu_tar_lists_types_modes_owners_links()
   local dir = h.tmpdir()
   local root, entries = build_tree(dir)
   local out = dir .. "/layer.tar.zst"
   create({output = out, root = root, entries = entries})
   local m = gnu_members(out)
   lu.assertEquals(#m, #EXPECTED)
   local kinds = {["0"] = "-", ["1"] = "h", ["2"] = "l", ["5"] = "d"}
   for i, e in ipairs(EXPECTED) do
      local name = e[1]:gsub("\n", "\\n") .. (e[2] == "5" and "/" or "")
      lu.assertEquals(m[i].name, name)
      lu.assertEquals(m[i].perms:sub(1, 1), kinds[e[2]], name)
      lu.assertEquals({m[i].uid, m[i].gid}, {e[4], e[5]}, name)
      if e[6] ~= "" then lu.assertEquals(m[i].link, e[6]) end
   end
   lu.assertEquals(m[6].perms, "drwxr-x---")
   lu.assertEquals(m[7].perms, "drwxr-sr-x")
   lu.assertEquals(m[3].perms, "-rw-r--r--")
end

function TestTarCreate:test_gnu_tar_extracts_identical_files()
   local dir = h.tmpdir()
   local root, entries = build_tree(dir)
   local out = dir .. "/layer.tar.zst"
   create({output = out, root = root, entries = entries})
   local x = dir .. "/x"
   run("mkdir " .. q(x) .. " && zstd -dc " .. q(out)
      .. " | tar --xattrs --xattrs-include='*' -xf - -C " .. q(x)
      .. " 2>/dev/null")
   for _, p in ipairs({"d/empty", "d/a", "d/big", "d/sparse", "with space",
      NL, UTF, LONG, "odd/hard"}) do
      lu.assertEquals(sha256sum(x .. "/" .. p), sha256sum(root .. "/" .. p),
         p)
   end
   lu.assertEquals(trim(run("readlink " .. q(x .. "/odd/dangling"))),
      "/nonexistent/target")
   lu.assertEquals(trim(run("stat -c %i " .. q(x .. "/odd/hard"))),
      trim(run("stat -c %i " .. q(x .. "/d/a"))))
   lu.assertEquals(trim(run("stat -c %a " .. q(x .. "/sgid"))), "2755")
   -- the holes came back as holes
   local blocks = tonumber(trim(run("stat -c %b " .. q(x .. "/d/sparse"))))
   lu.assertTrue(blocks * 512 < 1048576, "blocks " .. blocks)
   local xattr = python(dir, [[
import os, sys
print(os.getxattr(sys.argv[1], "user.test").decode())
]], q(x .. "/d/a"))
   lu.assertEquals(xattr, "xattr value\n")
   lu.assertEquals(trim(run("stat -c %y " .. q(x .. "/d/a"))):sub(1, 29),
      trim(run("stat -c %y " .. q(root .. "/d/a"))):sub(1, 29))
end

function TestTarCreate:test_digest_and_size_match_the_file()
   local dir = h.tmpdir()
   local root, entries = build_tree(dir)
   local out = dir .. "/layer.tar.zst"
   local r = create({output = out, root = root, entries = entries})
   lu.assertEquals(r.sha256, sha256sum(out))
   lu.assertEquals(r.size, file_size(out))
   lu.assertEquals(r.parts, {{name = "layer.tar.zst", size = r.size,
      sha256 = r.sha256}})
   lu.assertEquals(trim(run("ls " .. q(dir))), "layer.tar.zst\nroot")
end

function TestTarCreate:test_split_parts_concatenate_to_the_archive()
   local dir = h.tmpdir()
   local root, all = build_tree(dir)
   local entries = {}                   -- no markers: their mtime is now
   for _, e in ipairs(all) do
      if not e.whiteout and not e.opaque then entries[#entries + 1] = e end
   end
   local out = dir .. "/out/layer.tar.zst"
   run("mkdir " .. q(dir .. "/out"))
   local whole = create({output = dir .. "/whole.tar.zst", root = root,
      entries = entries, threads = 1})
   local part = 3 * 1048576
   local r = create({output = out, root = root, entries = entries,
      part_size = part, threads = 1})
   lu.assertTrue(#r.parts >= 6, "parts: " .. #r.parts)
   local total, names = 0, {}
   for i, p in ipairs(r.parts) do
      local path = dir .. "/out/" .. p.name
      lu.assertEquals(p.name, ("layer.tar.zst.%03d"):format(i - 1))
      lu.assertEquals(p.size, file_size(path))
      lu.assertEquals(p.sha256, sha256sum(path))
      lu.assertTrue(p.size <= part)
      if i < #r.parts then lu.assertEquals(p.size, part) end
      total = total + p.size
      names[#names + 1] = q(path)
   end
   lu.assertEquals(total, r.size)
   lu.assertNil(h.read(out))            -- output itself is not written
   local cat = dir .. "/cat.tar.zst"
   run("cat " .. table.concat(names, " ") .. " > " .. q(cat))
   lu.assertEquals(sha256sum(cat), r.sha256)
   lu.assertEquals(r.sha256, whole.sha256)   -- same bytes as unsplit
   run("zstd -q -t " .. q(cat))
   lu.assertEquals(#py_members(dir, cat), #EXPECTED - 3)
end

function TestTarCreate:test_missing_path_fails_and_leaves_nothing()
   local dir = h.tmpdir()
   local root = dir .. "/root"
   run("mkdir -p " .. q(dir .. "/out") .. " " .. q(root)
      .. " && head -c 3000000 /dev/urandom > " .. q(root .. "/big"))
   for _, part in ipairs({false, 65536}) do
      local r, err, code = tar.create({
         output = dir .. "/out/layer.tar.zst", root = root,
         part_size = part or nil,
         entries = {{path = "/big"}, {path = "/nope"}},
      })
      lu.assertNil(r)
      lu.assertEquals(err, root .. "/nope: No such file or directory")
      lu.assertEquals(code, 2)
      lu.assertEquals(run("ls -A " .. q(dir .. "/out")), "")
   end
end

function TestTarCreate:test_progress_error_raises_and_leaves_nothing()
   local dir = h.tmpdir()
   local root = dir .. "/root"
   run("mkdir -p " .. q(dir .. "/out") .. " " .. q(root)
      .. " && head -c 100000 /dev/urandom > " .. q(root .. "/f"))
   local seen = {}
   local ok, err = pcall(tar.create, {
      output = dir .. "/out/x.tar.zst", root = root, part_size = 1000,
      entries = {{path = "/f"}},
      progress = function(n)
         seen[#seen + 1] = n
         error("stop here")
      end,
   })
   lu.assertFalse(ok)
   lu.assertStrContains(tostring(err), "stop here")
   lu.assertEquals(seen, {100000})
   lu.assertEquals(run("ls -A " .. q(dir .. "/out")), "")
end

function TestTarCreate:test_special_files_need_allow_special()
   local dir = h.tmpdir()
   local root = dir .. "/root"
   run("mkdir -p " .. q(root) .. " && mkfifo " .. q(root .. "/fifo"))
   local out = dir .. "/f.tar.zst"
   local r, err, code = tar.create({output = out, root = root,
      entries = {{path = "/fifo"}}})
   lu.assertNil(r)
   lu.assertStrContains(err, root .. "/fifo")
   lu.assertEquals(code, "refused")
   lu.assertNil(h.read(out))
   local entries = {{path = "/fifo"}}
   local _, mk = sh("mknod " .. q(root .. "/null") .. " c 1 3")
   if mk == 0 then entries[2] = {path = "/null"} end
   create({output = out, root = root, entries = entries,
      allow_special = true})
   local m = py_members(dir, out)
   lu.assertEquals({m[1].name, m[1].type}, {"fifo", "6"})
   if mk == 0 then lu.assertEquals({m[2].name, m[2].type}, {"null", "3"}) end
end

function TestTarCreate:test_unwritable_output_fails_with_errno()
   local dir = h.tmpdir()
   local r, err, code = tar.create({output = dir .. "/no/such/x.tar.zst",
      root = dir, entries = {{path = "/"}}})
   lu.assertNil(r)
   lu.assertStrContains(err, dir .. "/no/such/x.tar.zst")
   lu.assertStrContains(err, "No such file or directory")
   lu.assertEquals(code, 2)
end

function TestTarCreate:test_threads_one_and_two_give_valid_archives()
   local dir = h.tmpdir()
   local root, entries = build_tree(dir)
   for _, t in ipairs({0, 1, 2}) do
      local out = dir .. "/t" .. t .. ".tar.zst"
      local r = create({output = out, root = root, entries = entries,
         threads = t})
      run("zstd -q -t " .. q(out))
      lu.assertEquals(r.sha256, sha256sum(out))
      lu.assertEquals(#gnu_members(out), #EXPECTED)
   end
end

function TestTarCreate:test_level_changes_the_size()
   local dir = h.tmpdir()
   local root = dir .. "/root"
   run("mkdir -p " .. q(root) .. " && for i in $(seq 1 2000); do "
      .. "seq $i 40000 | head -c 4000; done > " .. q(root .. "/text"))
   local sizes = {}
   for _, level in ipairs({1, 19}) do
      sizes[level] = create({output = dir .. "/l" .. level .. ".tar.zst",
         root = root, entries = {{path = "/text"}}, level = level}).size
   end
   lu.assertTrue(sizes[19] < sizes[1], sizes[19] .. " vs " .. sizes[1])
end

function TestTarCreate:test_misuse_raises()
   local function raises(opts, what)
      local ok, err = pcall(tar.create, opts)
      lu.assertFalse(ok)
      lu.assertStrContains(err, what)
   end
   local e = {{path = "/x"}}
   raises({output = "/tmp/x", entries = e, bogus = 1}, "unknown option")
   raises({entries = e}, "output")
   raises({output = "/tmp/x"}, "entries")
   raises({output = "/tmp/x", entries = {"/x"}}, "entries[1]")
   raises({output = "/tmp/x", entries = {{path = 1}}}, "path")
   raises({output = "/tmp/x", entries = e, level = 99}, "level")
   raises({output = "/tmp/x", entries = e, part_size = 0}, "part_size")
   raises({output = "/tmp/x", entries = e, progress = 1}, "function")
end

function TestTarCreate:test_speed_against_gnu_tar_and_zstd()
   local dir = h.tmpdir()
   local root = dir .. "/root"
   -- 100 MB of random data and 100 MB of system files, 100 + 2000 files
   run(table.concat({
      "set -e",
      "mkdir -p " .. q(root .. "/r") .. " " .. q(root .. "/c") .. " "
         .. q(root .. "/s"),
      "for i in $(seq 10); do head -c 10000000 /dev/urandom > "
         .. q(root .. "/r") .. "/r$i; done",
      "find /usr/lib /usr/share -type f -size +100k 2>/dev/null | sort | "
         .. "xargs cat 2>/dev/null | head -c 108000000 > " .. q(dir .. "/c"),
      "cd " .. q(root .. "/c") .. " && head -c 100000000 " .. q(dir .. "/c")
         .. " | split -b 1000000 - big.",
      "cd " .. q(root .. "/s") .. " && tail -c 8000000 " .. q(dir .. "/c")
         .. " | split -a 3 -b 4000 - small.",
      "rm " .. q(dir .. "/c"),
   }, "\n"))
   local entries = {}
   for line in run("cd " .. q(root) .. " && find . | LC_ALL=C sort")
      :gmatch("[^\n]+") do
      if line ~= "." then entries[#entries + 1] = {path = line:sub(2)} end
   end
   local function now()
      return tonumber(trim(run("date +%s%N"))) / 1e9
   end
   run("cat " .. q(root) .. "/*/* > /dev/null")        -- warm the cache
   local t0 = now()
   local r = create({output = dir .. "/c.tar.zst", root = root,
      entries = entries})
   local t1 = now()
   run("tar -I 'zstd -T0 -3' -cf " .. q(dir .. "/g.tar.zst") .. " -C "
      .. q(root) .. " .")
   local t2 = now()
   print(("\n  tar.create: %.2f s, %d MB; tar -I 'zstd -T0 -3': %.2f s, "
      .. "%d MB; ratio %.2f"):format(t1 - t0, r.size // 1000000, t2 - t1,
      file_size(dir .. "/g.tar.zst") // 1000000, (t1 - t0) / (t2 - t1)))
   lu.assertTrue(r.bytes >= 200000000)
end
