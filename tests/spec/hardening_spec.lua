--- What a security tester broke, fixed: shell injection through ENV
-- names, malformed layer.json, hostile Containerfile input, FIFOs in the
-- build context, the live token in ENV and extras, SIGTERM, --root "".
local lu = require "luaunit"
local h = require "helper"
local json = require "clayer.json"

TestHardening = {}

function TestHardening:tearDown()
   h.cleanup()
end

local TOKEN = "ghp_hardeningSpecToken0123456789"

local CF = [[
ENV GOOD="a b"
RUN echo built > /etc/built
]]

-- A scratch top folder with a base root and a context holding `cf`.
local function setup(cf)
   local top = h.tmpdir()
   h.make_root(top .. "/base")
   os.execute("mkdir -p " .. top .. "/ctx")
   h.write(top .. "/ctx/Containerfile", cf or CF)
   return top
end

-- A fresh copy of the base root; its path.
local function fresh(top, name)
   os.execute("cp -a " .. top .. "/base " .. top .. "/" .. name)
   return top .. "/" .. name
end

-- Run the CLI in the context folder; `env` goes before the binary
-- (assignments, or a command such as timeout).
local function clayer(top, args, env)
   return h.clayer(args .. " --cache dir:" .. top .. "/cache",
      "cd " .. top .. "/ctx && " .. (env or ""))
end

-- Build once into r0; return the cache entry's folder.
local function built_entry(top)
   local out, code = clayer(top, "build Containerfile --root "
      .. fresh(top, "r0"))
   lu.assertEquals(code, 0, out)
   local tag = h.sh("ls " .. top .. "/cache"):gsub("%s+$", "")
   lu.assertStrMatches(tag, "layer%-%x+")
   return top .. "/cache/" .. tag
end

-- Edit the layer.json of an entry with f(meta) (or replace it by text).
local function edit(entry, f)
   if type(f) == "string" then
      h.write(entry .. "/layer.json", f)
      return
   end
   local meta = assert(json.decode(h.read(entry .. "/layer.json")))
   f(meta)
   h.write(entry .. "/layer.json", json.encode(meta))
end

local function no_internal_error(out)
   lu.assertNotStrContains(out, "internal error")
   lu.assertNotStrContains(out, "this is a bug")
end

-- 1. ENV and ARG names --------------------------------------------------

function TestHardening:test_parser_refuses_invalid_names()
   local top = setup()
   for _, case in ipairs {
      { 'ENV "X;echo hi;Y"=1\n', "CF:1:5: ENV: invalid variable name "
         .. "'X;echo hi;Y'" },
      { "ENV A=1 B;echo=2\n", "CF:1:9: ENV: invalid variable name "
         .. "'B;echo'" },
      { "ENV 1A x\n", "CF:1:5: ENV: invalid variable name '1A'" },
      { "ARG A$(id)=1\n", "CF:1:5: ARG: invalid variable name 'A$(id)'" },
   } do
      h.write(top .. "/ctx/CF", case[1])
      local out, code = clayer(top, "hash CF")
      lu.assertEquals(code, 2, out)
      lu.assertStrContains(out, case[2])
      no_internal_error(out)
   end
end

-- applied.json holding a hostile name (an older clayer, a hand edit)
function TestHardening:test_env_never_emits_an_invalid_name()
   local top = setup()
   local r = fresh(top, "r1")
   os.execute("mkdir -p " .. r .. "/var/lib/clayer")
   h.write(r .. "/var/lib/clayer/applied.json", json.encode {
      format = "clayer-state/1",
      layers = { { tag = "layer-x", env = {
         { "A=1;echo INJECTED;B", "v" }, { "GOOD", "it's" },
         { "$(touch /tmp/x)", "v" } } } } })
   local out, code = h.sh(h.q(h.bin:gsub("clayer%-lua$", "clayer"))
      .. " env --root " .. r .. " 2>/dev/null")
   lu.assertEquals(code, 0)
   lu.assertEquals(out, "export GOOD='it'\\''s'\n")
   out = h.clayer("env --root " .. r)
   lu.assertStrContains(out, "warning: applied layer layer-x: skipping ENV "
      .. "with an invalid variable name 'A=1;echo INJECTED;B'")
   -- and what the boot wrapper does runs no injected code
   out = h.sh("eval \"$(" .. h.q(h.bin:gsub("clayer%-lua$", "clayer"))
      .. " env --root " .. r .. " 2>/dev/null)\"; echo \"GOOD=$GOOD\"")
   lu.assertEquals(out, "GOOD=it's\n")
   out, code = h.clayer("env --format json --root " .. r .. " 2>/dev/null")
   lu.assertEquals(code, 0)
   lu.assertEquals(json.decode(out), { GOOD = "it's" })
end

function TestHardening:test_restore_ignores_invalid_names_in_layer_json()
   local top = setup()
   local entry = built_entry(top)
   edit(entry, function(m) m.env["A=1;echo INJECTED;B"] = "x" end)
   local r = fresh(top, "r1")
   local out, code = clayer(top, "restore Containerfile --no-build --root "
      .. r)
   lu.assertEquals(code, 0, out)
   lu.assertStrContains(out, "ignoring ENV with an invalid variable name "
      .. "'A=1;echo INJECTED;B'")
   lu.assertNotStrContains(h.read(r .. "/var/lib/clayer/applied.json"),
      "INJECTED")
   lu.assertEquals(h.read(r .. "/var/lib/clayer/env.sh"),
      "export GOOD='a b'\n")
end

-- 2. malformed layer.json ---------------------------------------------

function TestHardening:test_malformed_layer_json_is_a_corrupt_entry()
   local top = setup()
   local entry = built_entry(top)
   local good = h.read(entry .. "/layer.json")
   local cases = {
      { function(m) m.archive_sha256 = 5 end, "archive_sha256" },
      { function(m) m.archive_sha256 = "zz" end, "archive_sha256" },
      { function(m) m.archive_size = -1 end, "archive_size" },
      { function(m) m.archive_size = "big" end, "archive_size" },
      { function(m) m.parts = json.array({}) end, "parts" },
      { function(m) m.parts = "layer.tar.zst" end, "parts" },
      { function(m) m.parts = { 7 } end, "parts[1]" },
      { function(m) m.parts[1].name = { x = 1 } end, "parts[1].name" },
      { function(m) m.parts[1].size = 1.5 end, "parts[1].size" },
      { function(m) m.parts[1].sha256 = true end, "parts[1].sha256" },
      { function(m) m.platform = "linux" end, "platform" },
      { function(m) m.platform = { arch = 1 } end, "platform" },
      { function(m) m.env = json.array({ "A" }) end, "env" },
      { function(m) m.env = { A = { 1 } } end, "env" },
      { function(m) m.env = 3 end, "env" },
   }
   for i, case in ipairs(cases) do
      h.write(entry .. "/layer.json", good)
      edit(entry, case[1])
      local r = fresh(top, "n" .. i)
      local out, code = clayer(top, "restore Containerfile --no-build "
         .. "--root " .. r)
      lu.assertEquals(code, 1, "case " .. i .. ": " .. out)
      lu.assertStrContains(out, "layer.json: " .. case[2])
      no_internal_error(out)
      lu.assertNil(h.read(r .. "/etc/built"))
   end
   -- JSON nulls are absent fields: the entry restores (the parts' digests
   -- still check the archive)
   h.write(entry .. "/layer.json", good)
   edit(entry, function(m)
      m.archive_sha256, m.archive_size = json.null, json.null
      m.platform, m.env, m.workdir = json.null, json.null, json.null
   end)
   local r0 = fresh(top, "ok")
   local out0, code0 = clayer(top, "restore Containerfile --no-build "
      .. "--root " .. r0)
   lu.assertEquals(code0, 0, out0)
   lu.assertEquals(h.read(r0 .. "/etc/built"), "built\n")
   -- without --no-build: a warning, then a build
   h.write(entry .. "/layer.json", good)
   edit(entry, cases[7][1])
   local r = fresh(top, "b1")
   local out, code = clayer(top, "restore Containerfile --root " .. r)
   lu.assertEquals(code, 0, out)
   lu.assertStrContains(out, "layer.json: parts[1] is not an object; "
      .. "building instead")
   lu.assertEquals(h.read(r .. "/etc/built"), "built\n")
end

function TestHardening:test_layer_json_that_is_not_an_object()
   local top = setup()
   local entry = built_entry(top)
   for i, text in ipairs { "42", '"text"', "null", "[1, 2]", "{" } do
      edit(entry, text)
      local r = fresh(top, "n" .. i)
      local out, code = clayer(top, "restore Containerfile --no-build "
         .. "--root " .. r)
      lu.assertNotEquals(code, 0, out)
      lu.assertStrContains(out, "layer.json")
      no_internal_error(out)
   end
   local r = fresh(top, "b1")
   local out, code = clayer(top, "restore Containerfile --root " .. r)
   lu.assertEquals(code, 0, out)
   lu.assertEquals(h.read(r .. "/etc/built"), "built\n")
end

-- 3. hostile Containerfile input ----------------------------------------

function TestHardening:test_invalid_utf8_is_a_parse_error()
   local top = setup()
   local r = fresh(top, "r1")
   h.write(top .. "/ctx/CF", "RUN touch /ran\nRUN echo a\xff\n")
   for _, cmd in ipairs { "hash CF", "build CF --root " .. r,
         "restore CF --root " .. r } do
      local out, code = clayer(top, cmd)
      lu.assertEquals(code, 2, cmd .. ": " .. out)
      lu.assertEquals(out, "clayer: CF:2:11: not valid UTF-8\n")
   end
   lu.assertNil(h.read(r .. "/ran"))
   -- a surrogate encoded in UTF-8, and a truncated sequence at the end
   h.write(top .. "/ctx/CF", "ENV A=\xed\xa0\x80\n")
   local out, code = clayer(top, "hash CF")
   lu.assertEquals(code, 2, out)
   lu.assertStrContains(out, "CF:1:7: not valid UTF-8")
   h.write(top .. "/ctx/CF", "RUN x\xe2\x82")
   out, code = clayer(top, "hash CF")
   lu.assertEquals(code, 2, out)
   lu.assertStrContains(out, "CF:1:6: not valid UTF-8")
end

function TestHardening:test_deep_nesting_is_a_parse_error()
   local top = setup()
   h.write(top .. "/ctx/CF", "ENV A=" .. ("${A:-"):rep(200000) .. "\n")
   local out, code = clayer(top, "hash CF")
   lu.assertEquals(code, 2, out)
   lu.assertStrMatches(out, "clayer: CF:1:%d+: substitutions nested more "
      .. "than 64 deep\n")
   -- also in RUN-time expansions (WORKDIR, COPY) and within the bound
   h.write(top .. "/ctx/CF", "WORKDIR /" .. ("${A:-"):rep(100)
      .. ("}"):rep(100) .. "\n")
   out, code = clayer(top, "hash CF")
   lu.assertEquals(code, 2, out)
   lu.assertStrContains(out, "nested more than 64 deep")
   h.write(top .. "/ctx/CF", "ENV A=" .. ("${A:-"):rep(60) .. "x"
      .. ("}"):rep(60) .. "\n")
   out, code = clayer(top, "hash CF")
   lu.assertEquals(code, 0, out)
end

-- 4. FIFOs, sockets, devices in the context -----------------------------

function TestHardening:test_copy_of_a_fifo_is_refused()
   local top = setup()
   os.execute("mkfifo " .. top .. "/ctx/pipe && ln -s pipe "
      .. top .. "/ctx/lpipe && mknod " .. top .. "/ctx/null c 1 3")
   for _, case in ipairs {
      { "COPY pipe /x\n", "CF:1:1: COPY pipe: not a regular file or folder" },
      { "ADD lpipe /x\n", "CF:1:1: ADD lpipe: not a regular file or folder" },
      { "COPY p* /x/\n", "CF:1:1: COPY pipe: not a regular file or folder" },
      { "COPY null /x\n", "CF:1:1: COPY null: not a regular file or folder" },
   } do
      h.write(top .. "/ctx/CF", case[1])
      local out, code = clayer(top, "hash CF", "timeout -s KILL 20")
      lu.assertEquals(code, 2, out)
      lu.assertStrContains(out, case[2])
   end
   -- a folder holding a FIFO is hashed without opening it
   os.execute("mkdir " .. top .. "/ctx/d && mkfifo " .. top .. "/ctx/d/p")
   h.write(top .. "/ctx/CF", "COPY d /x\n")
   local out, code = clayer(top, "hash CF", "timeout -s KILL 20")
   lu.assertEquals(code, 0, out)
end

-- 5. the live token ----------------------------------------------------

function TestHardening:test_token_in_env_or_build_arg_is_not_published()
   local top = setup("ENV T=${GH_TOKEN} OTHER=x\nRUN echo hi > /etc/hi\n")
   local env = "GH_TOKEN=" .. TOKEN
   local r = fresh(top, "r1")
   local out, code = clayer(top, "build Containerfile --root " .. r, env)
   lu.assertEquals(code, 1, out)
   lu.assertStrContains(out, "refusing to publish: the live token is in "
      .. "ENV T")
   lu.assertNotStrContains(out, TOKEN)
   lu.assertEquals(h.sh("ls " .. top .. "/cache 2>/dev/null"), "")

   h.write(top .. "/ctx/Containerfile", "ARG TOK\nRUN echo hi > /etc/hi\n")
   out, code = clayer(top, "build Containerfile --root " .. fresh(top, "r2")
      .. " --build-arg TOK=" .. TOKEN, env)
   lu.assertEquals(code, 1, out)
   lu.assertStrContains(out, "the live token is in build arg TOK")
   lu.assertNotStrContains(out, TOKEN)
   out, code = clayer(top, "build Containerfile --root " .. fresh(top, "r3")
      .. " --salt x" .. TOKEN, env)
   lu.assertEquals(code, 1, out)
   lu.assertStrContains(out, "the live token is in the salt")
   lu.assertEquals(h.sh("ls " .. top .. "/cache 2>/dev/null"), "")
   -- without the token, the same builds publish
   out, code = clayer(top, "build Containerfile --root " .. fresh(top, "r4")
      .. " --build-arg TOK=" .. TOKEN)
   lu.assertEquals(code, 0, out)
end

function TestHardening:test_token_in_names_and_symlink_targets()
   local secrets = require "clayer.secrets"
   local root = h.tmpdir()
   os.execute("mkdir -p " .. root .. "/etc && ln -s /opt/" .. TOKEN .. " "
      .. root .. "/etc/link && touch " .. root .. "/etc/x" .. TOKEN .. "y"
      .. " && ln -s /etc/ok " .. root .. "/etc/fine")
   local found = secrets.scan({ { path = "/etc/link" },
      { path = "/etc/x" .. TOKEN .. "y" }, { path = "/etc/fine" },
      { path = "/etc/.wh." .. TOKEN, whiteout = true } }, root, {},
      { tokens = { TOKEN } })
   lu.assertEquals(found, {
      { path = "/etc/link", why = "symlink target contains the live token" },
      { path = "/etc/x***y", why = "its name contains the live token" },
      { path = "/etc/.wh.***", why = "its name contains the live token" },
   })
   lu.assertNil(secrets.scan({ { path = "/etc/link" } }, root, {},
      { tokens = { "ghp_someOtherToken0000" } }))
end

function TestHardening:test_json_error_is_redacted()
   local cli = require "clayer.cli"
   local log = require "clayer.log"
   log.secret(TOKEN)
   local s = cli.summary("build", false, {}, "RUN: " .. TOKEN .. ": failed")
   lu.assertEquals(s.error, "RUN: ***: failed")
   lu.assertEquals(cli.summary("build", true, {}, nil).error, json.null)
   -- end to end: a failing RUN that prints its command in the error
   local top = setup("RUN false " .. TOKEN .. "\n")
   local out = clayer(top, "build Containerfile --json --root "
      .. fresh(top, "r1") .. " 2>/dev/null", "GH_TOKEN=" .. TOKEN)
   local obj = json.decode(out)
   lu.assertEquals(type(obj), "table", out)
   lu.assertFalse(obj.ok)
   lu.assertNotStrContains(out, TOKEN)
end

-- 6. SIGTERM -----------------------------------------------------------

function TestHardening:test_sigterm_is_interrupted_130()
   local top = setup("RUN i=0; while [ $i -lt 3000000 ]; do i=$((i+1)); "
      .. "done\n")
   local r = fresh(top, "r1")
   local link = h.bin:gsub("clayer%-lua$", "clayer")
   local out = h.sh("cd " .. top .. "/ctx && { " .. h.q(link)
      .. " build Containerfile --no-push --root " .. r .. " > "
      .. top .. "/log 2>&1 & pid=$!; sleep 1; kill -TERM $pid; "
      .. "wait $pid; echo status=$?; }")
   lu.assertEquals(out, "status=130\n")
   local log = h.read(top .. "/log")
   lu.assertStrContains(log, "clayer: interrupted\n")
   no_internal_error(log)
end

-- 7. --root "" ----------------------------------------------------------

function TestHardening:test_empty_root_is_a_usage_error()
   local top = setup()
   for _, cmd in ipairs { "env --root ''", "status --root=",
         "build Containerfile --root ''", "restore Containerfile --root=",
         "hash Containerfile --root ''" } do
      local out, code = clayer(top, cmd)
      lu.assertEquals(code, 2, cmd .. ": " .. out)
      lu.assertStrContains(out, "--root needs a folder")
   end
   lu.assertNil(h.read(top .. "/ctx/etc/built"))
end

-- ADD of a local tarball below --root: an absolute symlink of the root
-- resolves inside the root, never to the host's path.
function TestHardening:test_add_tarball_stays_inside_the_root()
   local top = setup("ADD t.tar /opt/app/\n")
   local outside = top .. "/outside"
   os.execute("mkdir -p " .. outside .. " " .. top .. "/src/sub")
   h.write(top .. "/src/sub/pwned", "x")
   assert(h.sh("tar -C " .. top .. "/src -cf " .. top .. "/ctx/t.tar sub"))
   local root = fresh(top, "r1")
   -- the link's target exists in the root too, as /var/run -> /run does
   os.execute("mkdir -p " .. root .. "/opt/app " .. root .. outside
      .. " && ln -s " .. outside .. " " .. root .. "/opt/app/sub")
   local out, code = clayer(top, "build Containerfile --no-push --root "
      .. root)
   lu.assertEquals(code, 0, out)
   lu.assertEquals(h.sh("ls -A " .. outside), "")
   lu.assertEquals(h.read(root .. outside .. "/pwned"), "x")
end
