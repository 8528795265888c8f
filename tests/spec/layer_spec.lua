--- Build, publish and restore whole layers below --root scratch roots:
-- the CLI, snapshot, archive, dir: cache and state working together.
local lu = require "luaunit"
local h = require "helper"

TestLayer = {}

function TestLayer:tearDown()
   h.cleanup()
end

local function listing(root)
   return h.sh("cd " .. root .. " && find . -path ./var/lib/clayer -prune "
      .. "-o -printf '%p %y %m %U %G %s %l\\n' | sort && "
      .. "find . -path ./var/lib/clayer -prune -o -type f -print0 | "
      .. "sort -z | xargs -0 sha256sum")
end

local CF = [[
# a layer built below --root
ENV A="x y" B=$A-2
ARG FLAVOR=plain
WORKDIR /opt/app
COPY data.txt ./
RUN rm /etc/gone && rm -rf /data/dir && echo new > /etc/new \
 && ln -s /etc/new /opt/app/link && ln /etc/new /opt/app/hard \
 && chmod 0750 /opt/app/data.txt && echo "$FLAVOR" > /opt/app/flavor \
 && rm /data/typechange && mkdir /data/typechange && echo in > /data/typechange/f
]]

local function setup()
   local top = h.tmpdir()
   local base = top .. "/base"
   h.make_root(base)
   os.execute("mkdir -p " .. top .. "/ctx")
   h.write(top .. "/ctx/Containerfile", CF)
   h.write(top .. "/ctx/data.txt", "copied\n")
   return top, base
end

local function clayer(top, args)
   return h.clayer(args .. " --cache dir:" .. top .. "/cache", "cd "
      .. top .. "/ctx &&")
end

function TestLayer:test_build_then_restore_into_a_fresh_root()
   local top, base = setup()
   os.execute("cp -a " .. base .. " " .. top .. "/r1")
   os.execute("cp -a " .. base .. " " .. top .. "/r2")
   local out, code = clayer(top, "build Containerfile --root " .. top .. "/r1")
   lu.assertEquals(code, 0, out)
   lu.assertEquals(h.read(top .. "/r1/opt/app/flavor"), "plain\n")
   local tags = h.sh("ls " .. top .. "/cache")
   lu.assertStrMatches(tags, "layer%-%x+\n")

   out, code = clayer(top, "restore Containerfile --no-build --root "
      .. top .. "/r2")
   lu.assertEquals(code, 0, out)
   lu.assertEquals(listing(top .. "/r2"), listing(top .. "/r1"))
   lu.assertNil(h.read(top .. "/r2/etc/gone"))
   lu.assertNil(h.read(top .. "/r2/data/dir/sub/f"))
   lu.assertEquals(h.read(top .. "/r2/data/typechange/f"), "in\n")

   out, code = clayer(top, "restore Containerfile --no-build --root "
      .. top .. "/r2")
   lu.assertEquals(code, 0)
   lu.assertStrContains(out, "already applied")

   out = h.clayer("env --root " .. top .. "/r2")
   lu.assertStrContains(out, "export A='x y'\n")
   lu.assertStrContains(out, "export B='-2'\n")
   lu.assertNotStrContains(out, "FLAVOR")
end

function TestLayer:test_corrupt_archive_leaves_root_as_it_was()
   local top, base = setup()
   os.execute("cp -a " .. base .. " " .. top .. "/r1")
   os.execute("cp -a " .. base .. " " .. top .. "/r3")
   local out, code = clayer(top, "build Containerfile --root " .. top .. "/r1")
   lu.assertEquals(code, 0, out)
   local before = listing(top .. "/r3")
   -- flip one byte in the middle of the archive
   h.sh("f=$(ls " .. top .. "/cache/*/layer.tar.zst); s=$(stat -c %s $f); "
      .. "printf '\\377' | dd of=$f bs=1 seek=$((s / 2)) conv=notrunc "
      .. "2>/dev/null")
   out, code = clayer(top, "restore Containerfile --no-build --root "
      .. top .. "/r3")
   lu.assertEquals(code, 1, out)
   lu.assertEquals(listing(top .. "/r3"), before)
   lu.assertEquals(h.sh("clayer_state=" .. top .. "/r3/var/lib/clayer; "
      .. "cat $clayer_state/applied.json 2>/dev/null | grep -c layer-"), "0\n")
end

function TestLayer:test_miss_with_no_build_exits_3()
   local top, base = setup()
   os.execute("cp -a " .. base .. " " .. top .. "/r1")
   os.execute("mkdir " .. top .. "/cache")   -- a cache without that key
   local out, code = clayer(top, "restore Containerfile --no-build --root "
      .. top .. "/r1")
   lu.assertEquals(code, 3, out)
   lu.assertStrContains(out, "not in dir:")
end

function TestLayer:test_hash_inspect_and_names()
   local top = setup()
   local out, code = clayer(top, "hash Containerfile")
   lu.assertEquals(code, 0)
   lu.assertStrMatches(out, "%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x%x\n")
   local key = out:sub(1, 16)
   out = clayer(top, "inspect Containerfile --name py")
   lu.assertStrContains(out, "tag  layer-py-" .. key)
   out = clayer(top, "inspect Containerfile --json")
   local json = require "clayer.json"
   local obj = assert(json.decode(out))
   lu.assertEquals(obj.instructions[1].op, "ENV")
   lu.assertEquals(obj.tag, "layer-" .. key)
   -- a build arg changes the key and shows in the extras
   out = clayer(top, "hash Containerfile --build-arg FLAVOR=fancy")
   lu.assertNotEquals(out:sub(1, 16), key)
end

function TestLayer:test_bad_usage_exits_2()
   local _, code = h.clayer("frobnicate")
   lu.assertEquals(code, 2)
   _, code = h.clayer("build")
   lu.assertEquals(code, 2)
   local out
   out, code = h.clayer("build /nonexistent/Containerfile")
   lu.assertEquals(code, 2)
   lu.assertStrContains(out, "/nonexistent/Containerfile")
end

function TestLayer:test_progress_on_a_terminal_only()
   local top, base = setup()
   os.execute("cp -a " .. base .. " " .. top .. "/r1")
   os.execute("cp -a " .. base .. " " .. top .. "/r2")
   os.execute("cp -a " .. base .. " " .. top .. "/r3")
   h.sh("head -c 8000000 /dev/urandom > " .. top .. "/ctx/data.txt")
   local out, code = clayer(top, "build Containerfile --root " .. top .. "/r1")
   lu.assertEquals(code, 0, out)
   -- under a pty: one line redrawn with bytes, rate and ETA
   local link = h.bin:gsub("clayer%-lua$", "clayer")
   out = h.sh("cd " .. top .. "/ctx && script -qc " .. h.q(h.q(link)
      .. " restore Containerfile --no-build --cache dir:" .. top
      .. "/cache --root " .. top .. "/r2") .. " /dev/null")
   lu.assertStrContains(out, "\r\27[Kclayer: download and extract ")
   lu.assertStrMatches(out, ".*MiB/s.*")
   -- not a terminal: plain lines, nothing redrawn
   out = clayer(top, "restore Containerfile --no-build --root " .. top
      .. "/r3")
   lu.assertNotStrContains(out, "\r")
   lu.assertStrContains(out, "restored layer-")
end

-- A stale $PWD (a caller that changed folder without updating it) does
-- not pick the Containerfile or --root: they were once resolved against
-- it, running a/ctx/Containerfile into a/R from b/ctx.
function TestLayer:test_stale_pwd_is_not_trusted()
   local top = h.tmpdir()
   for _, w in ipairs { "a", "b" } do
      h.make_root(top .. "/" .. w .. "/R")
      h.sh("mkdir -p " .. top .. "/" .. w .. "/ctx")
      h.write(top .. "/" .. w .. "/ctx/Containerfile", "COPY f /etc/which\n")
      h.write(top .. "/" .. w .. "/ctx/f", w .. "\n")
   end
   local out, code = h.clayer("build Containerfile --root ../R --cache dir:"
      .. top .. "/cache", "cd " .. h.q(top .. "/b/ctx") .. " && PWD="
      .. h.q(top .. "/a/ctx"))
   lu.assertEquals(code, 0, out)
   lu.assertEquals(h.read(top .. "/b/R/etc/which"), "b\n")
   lu.assertNil(h.read(top .. "/a/R/etc/which"))
   -- a $PWD that names "." through a symlink is kept (as shells do)
   h.sh("ln -s b " .. top .. "/l")
   out, code = h.clayer("build Containerfile --root ../R --no-push "
      .. "--cache dir:" .. top .. "/cache", "cd " .. h.q(top .. "/l/ctx")
      .. " && PWD=" .. h.q(top .. "/l/ctx"))
   lu.assertEquals(code, 0, out)
   lu.assertStrContains(h.read(top .. "/b/R/var/lib/clayer/applied.json"),
      top .. "/l/ctx/Containerfile")
end

-- SIGTERM during the retention run after publish stops clayer (exit
-- 130): it was once turned into a warning and the build exited 0.
-- Another retention error stays a warning.
function TestLayer:test_sigterm_during_retention_is_not_swallowed()
   local top = h.tmpdir()
   h.make_root(top .. "/R")
   h.sh("mkdir -p " .. top .. "/ctx")
   h.write(top .. "/ctx/Containerfile", "COPY f /etc/f\n")
   h.write(top .. "/ctx/f", "x\n")
   h.write(top .. "/term.lua", "return { retention = function()\n"
      .. "   os.execute('kill -TERM ' .. require('clayer.proc').getpid())\n"
      .. "   for _ = 1, 1e7 do end\n"
      .. "   return {}\nend }\n")
   h.write(top .. "/bad.lua", "return { retention = function()\n"
      .. "   error('boom')\nend }\n")
   local out, code = h.clayer("build Containerfile --root ../R --policy "
      .. top .. "/term.lua --cache dir:" .. top .. "/cache",
      "cd " .. h.q(top .. "/ctx") .. " &&")
   lu.assertEquals(code, 130, out)
   lu.assertNotStrContains(out, "retention after publish")
   h.sh("rm -rf " .. top .. "/cache " .. top .. "/R && mkdir " .. top .. "/R")
   h.make_root(top .. "/R")
   out, code = h.clayer("build Containerfile --root ../R --policy "
      .. top .. "/bad.lua --cache dir:" .. top .. "/cache",
      "cd " .. h.q(top .. "/ctx") .. " &&")
   lu.assertEquals(code, 0, out)
   lu.assertStrContains(out, "warning: retention after publish: ")
   lu.assertStrContains(out, "boom")
end
