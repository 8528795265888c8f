--- What a first-time user meets through the CLI: warnings that say only
-- what is true, one exit status and message per mistake, "~" in dir:
-- caches, missing or wrong cache folders named plainly, --json on every
-- failure, honest restore timings, status suggesting the command that
-- rebuilds, a missing shell in --root, and why prune keeps entries.
local lu = require "luaunit"
local h = require "helper"
local json = require "clayer.json"

local q = h.q

TestUsability = {}

function TestUsability:tearDown()
   h.cleanup()
end

-- A scratch folder with a root (ROOT), a build context (ctx) and a
-- Containerfile in it.
local function setup(cf)
   local top = h.tmpdir()
   h.make_root(top .. "/root")
   os.execute("mkdir -p " .. q(top .. "/ctx") .. " " .. q(top .. "/home"))
   h.write(top .. "/ctx/Containerfile", cf or "RUN echo hi > /etc/hi\n")
   return top
end

-- Run the CLI in top/ctx with a private state folder and HOME.
local function clayer(top, args, env)
   return h.clayer(args, "cd " .. q(top .. "/ctx") .. " && HOME="
      .. q(top .. "/home") .. " CLAYER_POLICY= " .. (env or ""))
end

-- Run the CLI; return stdout alone, stderr alone and the status.
local function split_run(top, args, env)
   local err = top .. "/stderr"
   local out, code = clayer(top, args .. " 2>" .. q(err), env)
   return out, h.read(err) or "", code
end

local function one_object(out)
   local ok, v = pcall(json.decode, out)
   lu.assertTrue(ok and type(v) == "table", "not one JSON object: " .. out)
   return v
end

function TestUsability:test_snapshot_path_below_an_exclusion_is_no_warning()
   local top = setup("RUN mkdir -p /var/cache/keepme && echo kept > "
      .. "/var/cache/keepme/f && echo lost > /var/cache/other\n"
      .. "SNAPSHOT /var/cache/keepme\n")
   local out, code = clayer(top, "build Containerfile --root ../root "
      .. "--cache dir:../cache")
   lu.assertEquals(code, 0, out)
   -- only what the layer really leaves out is listed
   lu.assertStrContains(out, "1 change(s) under excluded paths are not in "
      .. "the layer: /var/cache/other\n")
   lu.assertNotStrContains(out, "/var/cache/keepme/f")
   os.execute("cp -a " .. q(top .. "/root") .. " " .. q(top .. "/r2")
      .. " && rm -rf " .. q(top .. "/r2/var/cache") .. " "
      .. q(top .. "/r2/var/lib/clayer"))
   out, code = clayer(top, "restore Containerfile --no-build --root ../r2 "
      .. "--cache dir:../cache")
   lu.assertEquals(code, 0, out)
   lu.assertEquals(h.read(top .. "/r2/var/cache/keepme/f"), "kept\n")
   lu.assertNil(h.read(top .. "/r2/var/cache/other"))
end

function TestUsability:test_a_bad_cache_uri_is_exit_2_for_every_command()
   local top = setup()
   for _, cmd in ipairs { "build Containerfile", "restore Containerfile",
         "hash Containerfile", "inspect Containerfile",
         "compose Containerfile", "ls", "prune" } do
      local out, code = clayer(top, cmd .. " --root ../root --cache foo:x",
         "CLAYER_STATE_DIR=" .. q(top .. "/state"))
      lu.assertEquals(code, 2, cmd .. ": " .. out)
      lu.assertEquals(out, "clayer: unknown cache backend: foo (in "
         .. "'foo:x')\n", cmd)
   end
end

function TestUsability:test_tilde_in_a_dir_cache_is_home()
   local top = setup()
   local out, code = clayer(top, "build Containerfile --root ../root "
      .. "--cache 'dir:~/cache'")
   lu.assertEquals(code, 0, out)
   lu.assertStrContains(out, "published layer-")
   lu.assertStrContains(out, "dir:" .. top .. "/home/cache")
   lu.assertNil(h.read(top .. "/ctx/~/cache"))
   lu.assertEquals(h.sh("ls " .. q(top .. "/ctx")), "Containerfile\n")
   -- a bare ~/PATH is a dir: cache too
   out, code = clayer(top, "ls --cache '~/cache'")
   lu.assertEquals(code, 0, out)
   lu.assertStrContains(out, "layer-")
   -- ~user is refused, plainly, as bad usage
   out, code = clayer(top, "ls --cache 'dir:~bob/cache'")
   lu.assertEquals(code, 2, out)
   lu.assertStrContains(out, "'~bob' is not supported")
end

function TestUsability:test_a_missing_cache_folder_or_a_file_is_named()
   local top = setup()
   h.write(top .. "/afile", "x")
   for _, c in ipairs { { top .. "/no/such/cache", "does not exist" },
         { top .. "/afile", "is not a folder" } } do
      local out, code = clayer(top, "restore Containerfile --no-build "
         .. "--root ../root --cache dir:" .. q(c[1]))
      lu.assertEquals(code, 3, out)
      lu.assertStrContains(out, c[2])
      lu.assertNotStrContains(out, "never published")
      lu.assertEquals(select(2, out:gsub("\n", "")), 1, out)   -- one line
      out, code = clayer(top, "ls --cache dir:" .. q(c[1]))
      lu.assertEquals(code, 3, out)
      lu.assertStrContains(out, c[2])
      lu.assertNotStrContains(out, "no layers")
   end
   -- a cache failure does not fail a build, but the warning says why
   local out, code = clayer(top, "build Containerfile --root ../root "
      .. "--cache dir:" .. q(top .. "/afile"))
   lu.assertEquals(code, 0, out)
   lu.assertStrContains(out, "built but not saved to the cache: dir:"
      .. top .. "/afile: " .. top .. "/afile is not a folder")
end

function TestUsability:test_json_on_every_failure()
   local top = setup()
   h.write(top .. "/ctx/Bad", "RUN echo hi\nFROBNICATE x\n")
   local cases = {
      { "build Bad --json --root ../root", 2, "parse", "Bad:2:1" },
      { "build Containerfile --json --cache foo:x", 2, "usage",
        "unknown cache backend" },
      { "restore Containerfile --json --bogus", 2, "usage",
        "unknown option: --bogus" },
      { "ls --json --cache foo:x", 2, "usage", "unknown cache backend" },
      { "inspect Bad --json", 2, "parse", "FROBNICATE" },
      { "frobnicate --json", 2, "usage", "unknown command" },
      { "restore Containerfile --json --no-build --root ../root --cache "
        .. "dir:../missing", 3, "cache", "does not exist" },
   }
   for _, c in ipairs(cases) do
      local out, err, code = split_run(top, c[1])
      lu.assertEquals(code, c[2], c[1] .. ": " .. err)
      local obj = one_object(out)
      lu.assertFalse(obj.ok, c[1])
      lu.assertEquals(obj.code, c[3], c[1])
      lu.assertStrContains(obj.error, c[4])
      lu.assertEquals(type(obj.warnings), "table", c[1])
      lu.assertEquals(obj.command, c[1]:match("^%S+"), c[1])
      -- the one-line error is still on stderr
      lu.assertStrContains(err, "clayer: " .. obj.error .. "\n", false,
         c[1])
   end
end

function TestUsability:test_restore_timings_are_one_phase_and_wall_clock()
   local top = setup()
   local out, code = clayer(top, "build Containerfile --root ../root "
      .. "--cache dir:../cache")
   lu.assertEquals(code, 0, out)
   os.execute("cp -a " .. q(top .. "/root") .. " " .. q(top .. "/r2")
      .. " && rm -rf " .. q(top .. "/r2/var/lib/clayer"))
   local err
   out, err, code = split_run(top, "restore Containerfile --json --root "
      .. "../r2 --cache dir:../cache")
   lu.assertEquals(code, 0, err)
   local obj = one_object(out)
   lu.assertEquals(type(obj.timings.extract), "number")
   -- a dir: cache is read in place: nothing was downloaded on its own
   lu.assertNil(obj.timings.download)
   local l = obj.layers[1]
   local now = os.time()
   lu.assertTrue(math.abs(l.download_started - now) < 60,
      tostring(l.download_started))
   lu.assertTrue(l.extract_finished >= l.download_started)
   lu.assertTrue(math.abs(l.extract_finished - now) < 60)
end

function TestUsability:test_status_suggests_the_command_that_rebuilds()
   local top = setup("ARG FLAVOR=plain\nRUN echo $FLAVOR > /etc/flavor\n")
   local out, code = clayer(top, "build Containerfile --root ../root "
      .. "--salt 's 1' --build-arg FLAVOR=fancy --no-push")
   lu.assertEquals(code, 0, out)
   -- the salt and the build arg are part of the key status computes
   out, code = clayer(top, "status --root ../root")
   lu.assertEquals(code, 0, out)
   lu.assertStrContains(out, "up to date")
   h.write(top .. "/ctx/Containerfile",
      "ARG FLAVOR=plain\nRUN echo $FLAVOR-2 > /etc/flavor\n")
   out, code = clayer(top, "status --root ../root")
   lu.assertEquals(code, 4, out)
   -- the root status looked at holds the old layer: not the place to
   -- build the new one
   lu.assertStrContains(out, "(with --root: on a fresh copy of the base "
      .. "root, not this one, which holds the old layer)")
   local cmd = out:match("rebuild it in a fresh container: (clayer [^\n]*)")
   lu.assertNotNil(cmd, out)
   lu.assertStrContains(cmd, "--root " .. top .. "/root")
   lu.assertStrContains(cmd, "--salt 's 1'")
   lu.assertStrContains(cmd, "--build-arg FLAVOR=fancy")
   -- the suggested command builds the key status asked for
   local link = h.bin:gsub("clayer%-lua$", "clayer")
   out, code = h.sh("cd " .. q(top .. "/ctx") .. " && "
      .. q(link) .. cmd:sub(#"clayer" + 1) .. " --no-push")
   lu.assertEquals(code, 0, out)
   out, code = clayer(top, "status --root ../root")
   lu.assertEquals(code, 0, out)
   lu.assertEquals(h.read(top .. "/root/etc/flavor"), "fancy-2\n")
end

function TestUsability:test_a_root_without_its_shell_is_named()
   local top = setup("WORKDIR /w\nRUN echo hi\n")
   os.execute("mkdir " .. q(top .. "/empty"))
   local out, code = clayer(top, "build Containerfile --no-push --root "
      .. "../empty")
   lu.assertEquals(code, 1, out)
   lu.assertStrContains(out, "clayer: Containerfile:2:1: RUN: /bin/sh not "
      .. "found in the root " .. top .. "/empty\n")
   lu.assertNotStrContains(out, "exec:")
   -- checked before anything ran: WORKDIR made no /w
   lu.assertEquals(h.sh("test -e " .. q(top .. "/empty/w") .. " && echo ran "
      .. "|| echo nothing"), "nothing\n")
   -- a SHELL the root lacks, after something that ran
   h.write(top .. "/ctx/Containerfile",
      "RUN echo one > /etc/one\nSHELL [\"/bin/bash\", \"-c\"]\nRUN echo hi\n")
   out, code = clayer(top, "build Containerfile --no-push --root ../root")
   lu.assertEquals(code, 1, out)
   lu.assertStrContains(out, "Containerfile:3:1: RUN: /bin/bash not found "
      .. "in the root " .. top .. "/root\n")
end

function TestUsability:test_prune_says_why_it_kept_entries()
   local top = setup()
   local c = top .. "/cache"
   local now = os.time()
   for i = 1, 5 do
      local d = ("%s/layer-mojo-%016x"):format(c, i)
      os.execute(("mkdir -p %s && printf '{}' > %s/layer.json && "
         .. "touch -d @%d %s"):format(q(d), q(d), now - i * 60, q(d)))
   end
   local d = ("%s/layer-mojo-%016x"):format(c, 9)
   os.execute(("mkdir -p %s && touch -d @%d %s"):format(q(d), now - 7200,
      q(d)))
   local env = "CLAYER_STATE_DIR=" .. q(top .. "/state")
   local out, code = clayer(top, "prune -v --keep 1 --dry-run --cache "
      .. q(c), env)
   lu.assertEquals(code, 0, out)
   lu.assertStrContains(out, "would delete layer-mojo-0000000000000009\n")
   lu.assertStrContains(out, "kept layer-mojo-0000000000000001: among the "
      .. "newest 1 of 'mojo'")
   lu.assertStrContains(out, "kept layer-mojo-0000000000000002: younger "
      .. "than the minimum age, 10 min")
   lu.assertStrContains(out, "would delete 1, kept 5 (1 among the newest 1 "
      .. "per name, 4 younger than 10 min (min_age))\n")
   local err
   out, err, code = split_run(top, "prune --json --keep 1 --dry-run "
      .. "--cache " .. q(c), env)
   lu.assertEquals(code, 0, err)
   local obj = one_object(out)
   lu.assertEquals(obj.kept_reasons["layer-mojo-0000000000000001"], "keep")
   lu.assertEquals(obj.kept_reasons["layer-mojo-0000000000000005"], "young")
end
