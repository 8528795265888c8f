--- clayer.build: plan and run of Containerfiles without RUN below a
-- scratch root: ENV, ARG, WORKDIR, COPY, ADD and FETCH (from
-- tests/fixtures/httpd.py on 127.0.0.1), the files they write compared
-- byte for byte, and the key's extras.
local lu = require "luaunit"
local h = require "helper"
local build = require "clayer.build"
local cf = require "clayer.containerfile"
local policy = require "clayer.policy"
local proc = require "clayer.proc"
local fs = require "clayer.fs"
local hash = require "clayer.hash"

-- One server for the class, over state.www; stopped in teardownClass (and
-- by its own --lifetime should this process die first).
local state = {}

local function www()
   if not state.www then
      state.www = h.sh("mktemp -d /tmp/clayer-bspec.XXXXXX"):gsub("%s+$", "")
      local W = h.q(state.www)
      local out, code = h.sh("set -e; cd " .. W .. ";" .. [[
         mkdir -p src/tool-1.0/bin src/tool-1.0/share empty
         printf '#!/bin/sh\necho tool\n' > src/tool-1.0/bin/tool
         chmod 755 src/tool-1.0/bin/tool
         printf 'readme\n' > src/tool-1.0/share/README
         tar -C src -czf tool.tar.gz tool-1.0
         tar -C src -cjf tool.tar.bz2 tool-1.0
         tar -C src -cJf tool.tar.xz tool-1.0
         tar -C src --zstd -cf tool.tar.zst tool-1.0
         tar -C src -cf tool.tar tool-1.0
         printf 'just some text\n' > notes.txt
         printf 'just some text\n' | gzip -c > notes.txt.gz
         python3 -c 'import shutil; shutil.make_archive("tool", "zip", "src")'
         mkdir -p gh/repos/acme/tool/tarball
         tar -C src -czf gh/repos/acme/tool/tarball/v1 tool-1.0
         mkdir -p gh2/repos/acme/tool
         tar -C src -czf gh2/repos/acme/tool/tarball tool-1.0
      ]])
      assert(code == 0, out)
   end
   return state.www
end

local function base()
   if state.base then return state.base end
   local pf = www() .. "/.port"
   local out = h.sh(string.format(
      "python3 %s --bind 127.0.0.1 --port 0 --port-file %s --root %s "
         .. "--lifetime 120 >/dev/null 2>&1 & echo $!",
      h.q(h.repo .. "/tests/fixtures/httpd.py"), h.q(pf), h.q(www())))
   state.pid = assert(out:match("%d+"))
   for _ = 1, 200 do
      local port = h.read(pf)
      if port and port:match("^%d+") then
         state.base = "http://127.0.0.1:" .. port:match("^%d+")
         return state.base
      end
      proc.sleep(0.025)
   end
   error("httpd.py did not start")
end

TestBuild = {}

function TestBuild.teardownClass()
   if state.pid then os.execute("kill " .. state.pid .. " 2>/dev/null") end
   if state.www then os.execute("rm -rf " .. h.q(state.www)) end
   state = {}
end

function TestBuild:tearDown()
   h.cleanup()
end

-- A context folder with files, and an empty root.
local function area(files)
   local top = h.tmpdir()
   local ctx, root = top .. "/ctx", top .. "/root"
   assert(fs.mkdirp(ctx, 493) and fs.mkdirp(root, 493))
   for path, data in pairs(files or {}) do
      fs.mkdirp((ctx .. "/" .. path):match("^(.*)/"), 493)
      h.write(ctx .. "/" .. path, data)
   end
   return { top = top, ctx = ctx, root = root }
end

local function context(a, text, args)
   local doc, err = cf.parse(text, "Containerfile")
   assert(doc, err)
   return doc, { file = "Containerfile", dir = a.ctx, root = a.root,
      build_args = args or {}, policy = policy.defaults(),
      escape = doc.escape }
end

-- Plan and run text in area a; return the run's result and the plan.
local function build_ok(a, text, args)
   local doc, ctx = context(a, text, args)
   local plan, perr = build.plan(doc, ctx)
   lu.assertNotNil(plan, perr)
   local res, err = build.run(doc, ctx)
   lu.assertNotNil(res, err)
   return res, plan
end

-- Run text (the plan must pass) and return the error.
local function build_fails(a, text, args)
   local doc, ctx = context(a, text, args)
   local plan, perr = build.plan(doc, ctx)
   if not plan then return perr, "plan" end
   local res, err = build.run(doc, ctx)
   lu.assertNil(res, "the build should have failed")
   lu.assertStrMatches(err, "^Containerfile:%d+:%d+: [^\n]+$")
   return err, "run"
end

-- A sorted listing of the root: "path type mode" per entry.
local function listing(dir)
   return (h.sh("cd " .. h.q(dir) .. " && find . -mindepth 1 "
      .. "-printf '%p %y %m\\n' | sort"))
end

local function envmap(res)
   local t = {}
   for _, kv in ipairs(res.env) do t[kv[1]] = kv[2] end
   return t
end

-- {==================================================================
-- ENV, ARG, WORKDIR
-- ===================================================================

function TestBuild:test_env_pairs_see_values_from_before_the_line()
   local a = area()
   local res, plan = build_ok(a, [[
ENV SET=val EMPTY=
ENV R1=${SET:-d}/${EMPTY:-d}/${UNSET_X9:-d} R2=${SET-d}/${EMPTY-d}
ENV abc=hello
ENV abc=bye def=$abc
ENV GREETING hello   big  world
]])
   local e = envmap(res)
   lu.assertEquals(e.R1, "val/d/d")
   lu.assertEquals(e.R2, "val/")
   lu.assertEquals(e.EMPTY, "")
   lu.assertEquals(e.abc, "bye")
   lu.assertEquals(e.def, "hello")
   lu.assertEquals(e.GREETING, "hello   big  world")
   lu.assertEquals(res.env[1], { "SET", "val" })
   lu.assertEquals(#res.env, 7)
   lu.assertEquals(plan.env, res.env)
end

function TestBuild:test_arg_default_build_arg_and_undeclared_value()
   local a = area()
   local text = [[
ARG VERSION=1.2.3
ARG EMPTYDECL
ENV V1=${VERSION:-unset} V2=${VERSION-unset} V3=${EMPTYDECL-unset}
]]
   local res, plan = build_ok(a, text)
   local e = envmap(res)
   lu.assertEquals({ e.V1, e.V2, e.V3 }, { "1.2.3", "1.2.3", "unset" })
   lu.assertEquals(plan.args, {})
   lu.assertNil(e.VERSION)   -- ARG is not exported
   res, plan = build_ok(a, text, { VERSION = "2", OTHER = "x" })
   e = envmap(res)
   lu.assertEquals({ e.V1, e.V2, e.V3 }, { "2", "2", "unset" })
   lu.assertEquals(plan.args, { VERSION = "2" })
   lu.assertEquals(plan.unused, { "OTHER" })
   -- the key changes with a build arg, and not without one
   local k1 = cf.key(text, cf.extras {})
   local k2 = cf.key(text, cf.extras { args = plan.args })
   lu.assertNotEquals(k1, k2)
   lu.assertEquals(k1, cf.key(text))
end

function TestBuild:test_arg_redeclared_without_value_keeps_it_and_env_wins()
   local a = area()
   local res = build_ok(a, [[
ARG A=first
ARG A
ARG B=arg
ENV B=env
ENV OUT=$A-$B
]])
   lu.assertEquals(envmap(res).OUT, "first-env")
end

function TestBuild:test_workdir_relative_and_absolute_are_created()
   local a = area()
   local res = build_ok(a, [[
WORKDIR /opt/app
WORKDIR sub/dir
ENV D=x
WORKDIR ../$D
]])
   lu.assertEquals(res.workdir, "/opt/app/sub/x")
   lu.assertEquals(fs.stat(a.root .. "/opt/app/sub/dir").type, "dir")
   lu.assertEquals(fs.stat(a.root .. "/opt/app/sub/x").type, "dir")
end

function TestBuild:test_snapshot_paths_are_planned()
   local a = area()
   local _, plan = build_ok(a, [[
WORKDIR /var
SNAPSHOT cache/x
SNAPSHOT --all /srv/data
]])
   lu.assertEquals(plan.snapshot, { "/var/cache/x" })
   lu.assertEquals(plan.all, { "/srv/data" })
end

-- }==================================================================

-- {==================================================================
-- COPY
-- ===================================================================

function TestBuild:test_copy_file_rename_into_folder_and_trailing_slash()
   local a = area { ["a.txt"] = "alpha\n", ["sub/b.txt"] = "beta\0bin\n" }
   fs.mkdirp(a.root .. "/existing", 493)
   build_ok(a, [[
COPY a.txt /opt/renamed
COPY a.txt /opt/newdir/
COPY sub/b.txt /existing
WORKDIR /w
COPY ./sub/b.txt .
COPY a.txt rel/
]])
   lu.assertEquals(h.read(a.root .. "/opt/renamed"), "alpha\n")
   lu.assertEquals(h.read(a.root .. "/opt/newdir/a.txt"), "alpha\n")
   lu.assertEquals(h.read(a.root .. "/existing/b.txt"), "beta\0bin\n")
   lu.assertEquals(h.read(a.root .. "/w/b.txt"), "beta\0bin\n")
   lu.assertEquals(h.read(a.root .. "/w/rel/a.txt"), "alpha\n")
   lu.assertEquals(fs.stat(a.root .. "/opt/renamed").type, "file")
end

function TestBuild:test_copy_folder_copies_its_contents()
   local a = area { ["d/x"] = "x\n", ["d/deep/y"] = "y\n", ["d/.hidden"] = "h" }
   fs.symlink("x", a.ctx .. "/d/link")
   fs.chmod(a.ctx .. "/d/x", 448)
   fs.mkdirp(a.root .. "/usr/local", 493)
   build_ok(a, "COPY d /usr/local\nCOPY d /fresh\nCOPY d/ /slash/\n")
   for _, top in ipairs { "/usr/local", "/fresh", "/slash" } do
      lu.assertEquals(h.read(a.root .. top .. "/x"), "x\n")
      lu.assertEquals(h.read(a.root .. top .. "/deep/y"), "y\n")
      lu.assertEquals(h.read(a.root .. top .. "/.hidden"), "h")
      lu.assertEquals(fs.readlink(a.root .. top .. "/link"), "x")
      lu.assertEquals(fs.stat(a.root .. top .. "/x").mode, 448)
      lu.assertNil(fs.stat(a.root .. top .. "/d"))
   end
   -- an existing folder keeps its own mode
   lu.assertEquals(fs.stat(a.root .. "/usr/local").mode, 493)
end

function TestBuild:test_several_sources_need_a_folder_dest()
   local a = area { ["a"] = "A", ["b"] = "B" }
   local err = build_fails(a, "COPY a b /dest\n")
   lu.assertStrContains(err, "Containerfile:1:1: when using COPY with more "
      .. "than one source file, the destination must be a directory")
   lu.assertNil(fs.stat(a.root .. "/dest"))
   build_ok(a, "COPY a b /dest/\n")
   lu.assertEquals(h.read(a.root .. "/dest/a"), "A")
   lu.assertEquals(h.read(a.root .. "/dest/b"), "B")
end

function TestBuild:test_globs_follow_go_filepath_match()
   local a = area { ["one.txt"] = "1", ["two.txt"] = "2", [".dot.txt"] = "d",
      ["a1.md"] = "a1", ["b1.md"] = "b1", ["c1.md"] = "c1",
      ["lib/x.so"] = "x", ["lib/y.so"] = "y", ["lib/z.a"] = "z" }
   build_ok(a, [[
COPY *.txt /t/
COPY [ab]?.md /m/
COPY [^a]1.md /n/
COPY l*/*.so /so/
COPY t[a-w]o.txt /single
]])
   lu.assertEquals(listing(a.root .. "/t"),
      "./.dot.txt f 644\n./one.txt f 644\n./two.txt f 644\n")
   lu.assertEquals(listing(a.root .. "/m"), "./a1.md f 644\n./b1.md f 644\n")
   lu.assertEquals(listing(a.root .. "/n"), "./b1.md f 644\n./c1.md f 644\n")
   lu.assertEquals(listing(a.root .. "/so"), "./x.so f 644\n./y.so f 644\n")
   lu.assertEquals(h.read(a.root .. "/single"), "2")
   -- several matches into a file name is refused, as Docker does
   local err = build_fails(a, "COPY *.md /file\n")
   lu.assertStrContains(err, "more than one source file")
   err = build_fails(a, "COPY *.nothing /x/\n")
   lu.assertStrContains(err, "Containerfile:1:1: COPY *.nothing: no such file")
   err = build_fails(a, "COPY [a /x/\n")
   lu.assertStrContains(err, "syntax error in pattern")
end

function TestBuild:test_match_unit()
   local cases = {
      { "abc", "abc", true }, { "*", "abc", true }, { "*c", "abc", true },
      { "a*", "a", true }, { "a*b*c*d*e*", "axbxcxdxe", true },
      { "a?c", "abc", true }, { "a?c", "ac", false }, { "[a-c]x", "bx", true },
      { "[^a-c]x", "bx", false }, { "[^a-c]x", "dx", true },
      { "a\\*b", "a*b", true }, { "a\\*b", "axb", false },
      { "[\\]a]", "]", true }, { "*", ".hidden", true },
      { "?", "é", true }, { "[]a]", "a", "bad" }, { "[", "a", "bad" },
      { "a\\", "a", "bad" }, { "[a-]", "a", "bad" },
   }
   for _, c in ipairs(cases) do
      if c[3] ~= nil then
         local got, err = build.match(c[1], c[2])
         if c[3] == "bad" then
            lu.assertNil(got, c[1])
            lu.assertEquals(err, "syntax error in pattern")
         else
            lu.assertEquals(got, c[3], c[1] .. " ~ " .. c[2])
         end
      end
   end
end

-- Go's own table for filepath.Match (match_test.go), "/" cases included:
-- `*` and `?` never match "/", a class does; bad patterns fail whatever
-- the name.
function TestBuild:test_match_go_table()
   local bad = "bad"
   local cases = {
      { "", "", true }, { "", "a", false }, { "*", "", true },
      { "*", "/", false }, { "a*", "abc", true }, { "a*", "ab/c", false },
      { "a*/b", "abc/b", true }, { "a*/b", "a/c/b", false },
      { "a*b*c*d*e*/f", "axbxcxdxe/f", true },
      { "a*b*c*d*e*/f", "axbxcxdxexxx/f", true },
      { "a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false },
      { "a*b*c*d*e*/f", "axbxcxdxexxx/fff", false },
      { "a*b?c*x", "abxbbxdbxebxczzx", true },
      { "a*b?c*x", "abxbbxdbxebxczzy", false },
      { "ab[c]", "abc", true }, { "ab[b-d]", "abc", true },
      { "ab[e-g]", "abc", false }, { "ab[^c]", "abc", false },
      { "ab[^b-d]", "abc", false }, { "ab[^e-g]", "abc", true },
      { "a\\*b", "a*b", true }, { "a\\*b", "ab", false },
      { "a?b", "a\226\152\186b", true },
      { "a[^a]b", "a\226\152\186b", true },
      { "a???b", "a\226\152\186b", false },
      { "[a-\206\182]*", "\206\177", true },
      { "*[a-\206\182]", "A", false },
      { "a?b", "a/b", false }, { "a*b", "a/b", false },
      { "[\\]a]", "]", true }, { "[\\-]", "-", true },
      { "[x\\-]", "x", true }, { "[x\\-]", "-", true },
      { "[x\\-]", "z", false }, { "[\\-x]", "a", false },
      { "*x", "xxx", true },
      { "[]a]", "]", bad }, { "[-]", "-", bad }, { "[x-]", "z", bad },
      { "[-x]", "x", bad }, { "\\", "a", bad }, { "[a-b-c]", "a", bad },
      { "[", "a", bad }, { "[^", "a", bad }, { "[^bc", "a", bad },
      { "a[", "a", bad }, { "a[", "x", bad }, { "a/b[", "x", bad },
   }
   for _, c in ipairs(cases) do
      local got, err = build.match(c[1], c[2])
      if c[3] == bad then
         lu.assertNil(got, c[1])
         lu.assertEquals(err, "syntax error in pattern", c[1])
      else
         lu.assertEquals(got, c[3], c[1] .. " ~ " .. c[2])
         lu.assertNil(err, c[1])
      end
   end
end

-- Each star used to try every split of the rest of the name: this took
-- about n^10 / 10! steps, years for n = 200.  Now linear in each.
function TestBuild:test_match_many_stars_is_not_exponential()
   local stars = string.rep("a*", 10)
   local name = string.rep("a", 200)
   lu.assertFalse(build.match(stars .. "b", name))
   lu.assertTrue(build.match(stars .. "a", name))
   lu.assertTrue(build.match(stars, name))
   lu.assertFalse(build.match(stars .. "?b", name .. "/b"))
   lu.assertTrue(build.match(string.rep("*?", 50) .. "x", name .. "x"))
   lu.assertFalse(build.match(string.rep("*?", 50) .. "x", name))
end

function TestBuild:test_copy_escapes_are_refused_before_anything_runs()
   local a = area { ["in.txt"] = "in" }
   h.write(a.top .. "/secret", "secret\n")
   fs.symlink("../secret", a.ctx .. "/out-link")
   fs.symlink(a.top, a.ctx .. "/out-dir")
   fs.symlink("in.txt", a.ctx .. "/in-link")
   for _, src in ipairs { "../secret", "sub/../../secret", "out-link",
      "out-dir/secret", "out-*", "/../secret" } do
      local doc, ctx = context(a, "WORKDIR /w\nCOPY in.txt " .. src
         .. " /d/\n")
      local plan, err = build.plan(doc, ctx)
      lu.assertNil(plan, src)
      lu.assertStrMatches(err, "^Containerfile:2:1: COPY .*outside the "
         .. "build context.*")
      local res, rerr = build.run(doc, ctx)
      lu.assertNil(res)
      lu.assertStrMatches(rerr, "^Containerfile:2:1: .*")
   end
   lu.assertNil(fs.stat(a.root .. "/d"))
   -- a link inside the context is followed, and named as written
   build_ok(a, "COPY in-link sub/../in.txt /ok/\n")
   lu.assertEquals(h.read(a.root .. "/ok/in-link"), "in")
   lu.assertEquals(fs.lstat(a.root .. "/ok/in-link").type, "file")
   lu.assertEquals(h.read(a.root .. "/ok/in.txt"), "in")
end

function TestBuild:test_copy_chmod_and_chown_by_name_from_the_root()
   if proc.getuid() ~= 0 then return lu.skip("chown needs root") end
   local a = area { ["f"] = "f\n", ["d/g"] = "g\n" }
   fs.mkdirp(a.root .. "/etc", 493)
   h.write(a.root .. "/etc/passwd", "root:x:0:0::/root:/bin/sh\n"
      .. "app:x:4321:4000::/home/app:/bin/sh\n")
   h.write(a.root .. "/etc/group", "root:x:0:\nstaff:x:4555:\n")
   build_ok(a, [[
COPY --chmod=0751 --chown=app:staff f /o/f1
COPY --chown=app f /o/f2
COPY --chown=77:88 d /o/d
COPY --chmod=600 d /o/e/
]])
   local s = fs.stat(a.root .. "/o/f1")
   lu.assertEquals({ s.mode, s.uid, s.gid }, { 489, 4321, 4555 })
   s = fs.stat(a.root .. "/o/f2")
   lu.assertEquals({ s.uid, s.gid }, { 4321, 4321 })
   s = fs.stat(a.root .. "/o/d/g")
   lu.assertEquals({ s.uid, s.gid }, { 77, 88 })
   -- folders COPY makes get the owner too, as BuildKit does
   s = fs.stat(a.root .. "/o")
   lu.assertEquals({ s.uid, s.gid, s.mode }, { 4321, 4555, 493 })
   lu.assertEquals(fs.stat(a.root .. "/o/e/g").mode, 384)
   lu.assertEquals(h.read(a.root .. "/o/e/g"), "g\n")
   local err = build_fails(a, "COPY --chown=nobody9 f /x\n")
   lu.assertStrContains(err, "no user nobody9")
end

function TestBuild:test_copy_dest_symlink_stays_inside_the_root()
   local a = area { ["f"] = "f\n" }
   fs.mkdirp(a.root .. "/real/opt", 493)
   fs.symlink("/real/opt", a.root .. "/opt")
   build_ok(a, "COPY f /opt/tool/\nWORKDIR /opt/w\n")
   lu.assertEquals(h.read(a.root .. "/real/opt/tool/f"), "f\n")
   lu.assertEquals(fs.stat(a.root .. "/real/opt/w").type, "dir")
end

function TestBuild:test_copies_in_the_key_cover_every_glob_match()
   local a = area { ["a.txt"] = "A", ["b.txt"] = "B", ["d/x"] = "X" }
   local text = "ARG P=*.txt\nCOPY $P d /dest/\n"
   local doc, ctx = context(a, text)
   local plan = assert(build.plan(doc, ctx))
   lu.assertEquals(plan.copies["a.txt"], hash.sha256("A"))
   lu.assertEquals(plan.copies["b.txt"], hash.sha256("B"))
   lu.assertEquals(plan.copies["d"], build.source_digest(a.ctx .. "/d"))
   local k1 = cf.key(text, cf.extras { copies = plan.copies })
   h.write(a.ctx .. "/c.txt", "C")
   plan = assert(build.plan(doc, ctx))
   lu.assertEquals(plan.copies["c.txt"], hash.sha256("C"))
   local k2 = cf.key(text, cf.extras { copies = plan.copies })
   h.write(a.ctx .. "/d/x", "changed")
   plan = assert(build.plan(doc, ctx))
   local k3 = cf.key(text, cf.extras { copies = plan.copies })
   lu.assertNotEquals(k1, k2)
   lu.assertNotEquals(k2, k3)
   -- a file without COPY keeps the original tool's key
   lu.assertEquals(cf.key("ENV A=1\n", cf.extras {}), cf.key("ENV A=1\n"))
end

-- }==================================================================

-- {==================================================================
-- ADD
-- ===================================================================

function TestBuild:test_add_unpacks_local_tar_archives_of_every_kind()
   local w = www()
   local a = area()
   for _, f in ipairs { "tool.tar.gz", "tool.tar.bz2", "tool.tar.xz",
      "tool.tar.zst", "tool.tar", "notes.txt.gz", "tool.zip" } do
      os.execute("cp " .. h.q(w .. "/" .. f) .. " " .. h.q(a.ctx))
   end
   build_ok(a, [[
ADD tool.tar.gz /gz
ADD tool.tar.bz2 /bz2/
ADD tool.tar.xz /xz
ADD tool.tar.zst /zst
ADD tool.tar /plain
ADD notes.txt.gz /notes/
ADD tool.zip /zip/
COPY tool.tar.gz /copied/
]])
   local want = listing(w .. "/src")
   for _, d in ipairs { "gz", "bz2", "xz", "zst", "plain" } do
      lu.assertEquals(listing(a.root .. "/" .. d), want, d)
      lu.assertEquals(h.read(a.root .. "/" .. d .. "/tool-1.0/bin/tool"),
         "#!/bin/sh\necho tool\n")
   end
   lu.assertEquals(h.read(a.root .. "/notes/notes.txt.gz"),
      h.read(w .. "/notes.txt.gz"))
   lu.assertEquals(h.read(a.root .. "/zip/tool.zip"), h.read(w .. "/tool.zip"))
   lu.assertEquals(h.read(a.root .. "/copied/tool.tar.gz"),
      h.read(w .. "/tool.tar.gz"))
end

function TestBuild:test_add_url_downloads_without_unpacking()
   local b = base()
   local a = area()
   local sum = hash.file(www() .. "/tool.tar.gz")
   build_ok(a, ([[
ADD %s/files/tool.tar.gz /dl/
ADD %s/files/notes.txt /dl/renamed.txt
ADD --chmod=644 --checksum=sha256:%s %s/files/tool.tar.gz /dl/checked.tgz
]]):format(b, b, sum, b))
   lu.assertEquals(h.read(a.root .. "/dl/tool.tar.gz"),
      h.read(www() .. "/tool.tar.gz"))
   lu.assertEquals(fs.stat(a.root .. "/dl/tool.tar.gz").mode, 384)
   lu.assertEquals(h.read(a.root .. "/dl/renamed.txt"), "just some text\n")
   lu.assertEquals(fs.stat(a.root .. "/dl/checked.tgz").mode, 420)
   local err = build_fails(a, ("ADD --checksum=sha256:%s %s/files/notes.txt "
      .. "/dl/bad\n"):format(("0"):rep(64), b))
   lu.assertStrContains(err, "sha256 mismatch")
   lu.assertNil(fs.stat(a.root .. "/dl/bad"))
end

-- }==================================================================

-- {==================================================================
-- FETCH
-- ===================================================================

function TestBuild:test_fetch_unpacks_archives_found_by_content()
   local b = base()
   local a = area()
   build_ok(a, ([[
ENV BASE=%s/files
FETCH $BASE/tool.tar.gz /opt/gz
FETCH --strip-components=1 $BASE/tool.tar.xz /opt/xz
FETCH --strip-components=2 $BASE/tool.tar.bz2 /opt/bz2
FETCH $BASE/tool.tar.zst?x=1 /opt/zst
WORKDIR /opt
FETCH $BASE/tool.tar rel
]]):format(b))
   local want = listing(www() .. "/src")
   lu.assertEquals(listing(a.root .. "/opt/gz"), want)
   lu.assertEquals(listing(a.root .. "/opt/zst"), want)
   lu.assertEquals(listing(a.root .. "/opt/rel"), want)
   lu.assertEquals(listing(a.root .. "/opt/xz"),
      listing(www() .. "/src/tool-1.0"))
   lu.assertEquals(h.read(a.root .. "/opt/bz2/tool"), "#!/bin/sh\necho tool\n")
   lu.assertEquals(h.read(a.root .. "/opt/bz2/README"), "readme\n")
   lu.assertEquals(fs.stat(a.root .. "/opt/bz2/tool").mode, 493)
end

function TestBuild:test_fetch_saves_anything_else_under_its_url_name()
   local b = base()
   local a = area()
   build_ok(a, ([[
FETCH %s/files/tool.zip /opt/z
FETCH --chmod=0755 %s/files/notes.txt /usr/local/bin
FETCH --extract=no %s/files/tool.tar.gz /opt/raw
FETCH %s/files/notes.txt.gz /opt/gzipped-text
]]):format(b, b, b, b))
   lu.assertEquals(h.read(a.root .. "/opt/z/tool.zip"),
      h.read(www() .. "/tool.zip"))
   lu.assertEquals(h.read(a.root .. "/usr/local/bin/notes.txt"),
      "just some text\n")
   lu.assertEquals(fs.stat(a.root .. "/usr/local/bin/notes.txt").mode, 493)
   lu.assertEquals(h.read(a.root .. "/opt/raw/tool.tar.gz"),
      h.read(www() .. "/tool.tar.gz"))
   lu.assertEquals(h.read(a.root .. "/opt/gzipped-text/notes.txt.gz"),
      h.read(www() .. "/notes.txt.gz"))
end

function TestBuild:test_fetch_sha256_mismatch_leaves_dest_as_it_was()
   local b = base()
   local a = area()
   fs.mkdirp(a.root .. "/opt/keep", 493)
   h.write(a.root .. "/opt/keep/old", "old\n")
   local before = listing(a.root)
   local bad = ("ab"):rep(32)
   for _, dest in ipairs { "/opt/keep", "/opt/new" } do
      local err = build_fails(a, ("FETCH --sha256=%s %s/files/tool.tar.gz %s\n")
         :format(bad, b, dest))
      lu.assertStrContains(err, "Containerfile:1:1: FETCH ")
      lu.assertStrContains(err, "sha256 mismatch: expected " .. bad)
      lu.assertEquals(listing(a.root), before)
   end
   local good = hash.file(www() .. "/tool.tar.gz")
   build_ok(a, ("FETCH --sha256=%s %s/files/tool.tar.gz /opt/keep\n")
      :format(good:upper(), b))
   lu.assertEquals(h.read(a.root .. "/opt/keep/tool-1.0/share/README"),
      "readme\n")
   lu.assertEquals(h.read(a.root .. "/opt/keep/old"), "old\n")
   -- a failed request leaves it alone too
   before = listing(a.root)
   local err = build_fails(a, ("FETCH %s/files/none.tgz /opt/keep\n"):format(b))
   lu.assertStrContains(err, "HTTP 404")
   lu.assertEquals(listing(a.root), before)
   err = build_fails(a, "FETCH ftp://example.invalid/x /opt\n")
   lu.assertStrContains(err, "not an http(s) URL")
end

function TestBuild:test_fetch_github_through_the_api_tarball_endpoint()
   local b = base()
   local a = area()
   local old = os.getenv("CLAYER_GITHUB_API")
   proc.setenv("CLAYER_GITHUB_API", b .. "/files/gh")
   local ok, err = pcall(build_ok, a, "FETCH github:acme/tool@v1 /opt/t1\n")
   proc.setenv("CLAYER_GITHUB_API", b .. "/files/gh2")
   local ok2, err2 = pcall(build_ok, a, "FETCH github:acme/tool /opt/t2\n"
      .. "FETCH --strip-components=1 github:acme/tool /opt/t3\n")
   proc.setenv("CLAYER_GITHUB_API", old)
   lu.assertTrue(ok, err)
   lu.assertTrue(ok2, err2)
   local want = listing(www() .. "/src/tool-1.0")
   lu.assertEquals(listing(a.root .. "/opt/t1"), want)
   lu.assertEquals(listing(a.root .. "/opt/t2"), want)
   lu.assertEquals(listing(a.root .. "/opt/t3"),
      "./README f 644\n./tool f 755\n")
end

function TestBuild:test_fetch_url_and_token()
   local url, hd, gh = build.fetch_url("github:o/r@feature/x",
      { token = "tok123" })
   lu.assertTrue(gh)
   lu.assertStrMatches(url, ".*/repos/o/r/tarball/feature/x$")
   lu.assertEquals(hd.Authorization, "Bearer tok123")
   local old = os.getenv("CLAYER_GITHUB_API")
   proc.setenv("CLAYER_GITHUB_API", "http://example.invalid")
   url, hd = build.fetch_url("github:o/r", { token = "tok123" })
   proc.setenv("CLAYER_GITHUB_API", old)
   lu.assertEquals(url, "http://example.invalid/repos/o/r/tarball")
   lu.assertNil(hd.Authorization)   -- never in clear text to another host
   url, hd, gh = build.fetch_url("https://h.example/x.tgz", { token = "t" })
   lu.assertEquals(url, "https://h.example/x.tgz")
   lu.assertFalse(gh)
   lu.assertNil(hd.Authorization)
   lu.assertNil(build.fetch_url("file:///etc/passwd"))
end

-- }==================================================================

-- A glob's candidate that leads outside the context is refused only when
-- it is part of what COPY copies (Go's filepath.Glob skips what does not
-- match the next component): `*/*/f` and `**/f` once failed because of
-- an unrelated evil.txt -> /etc/passwd.
function TestBuild:test_glob_skips_outside_links_that_are_not_copied()
   local a = area { ["a/b/f"] = "f1", ["c/f"] = "f2" }
   fs.symlink("/etc/passwd", a.ctx .. "/evil.txt")
   h.sh("mkdir " .. h.q(a.top .. "/out") .. " && echo s > "
      .. h.q(a.top .. "/out/f"))
   build_ok(a, "COPY */*/f /g1/\nCOPY **/f /g2/\n")
   lu.assertEquals(h.read(a.root .. "/g1/f"), "f1")
   lu.assertEquals(h.read(a.root .. "/g2/f"), "f2")
   -- a link to an outside folder holding a match is part of the result
   fs.symlink(a.top .. "/out", a.ctx .. "/out-dir")
   for _, src in ipairs { "*/f", "out-*/f", "*.txt", "out-dir/*" } do
      local err = build_fails(a, "COPY " .. src .. " /x/\n")
      lu.assertStrContains(err, "outside the build context", src)
   end
   lu.assertNil(fs.stat(a.root .. "/x"))
end
