--- Compose against a github: cache: later layers download while earlier
-- ones extract (measured from the layers' own marks).
local lu = require "luaunit"
local h = require "helper"
local gh = require "ghfake"
local http = require "clayer.http"
local json = require "clayer.json"
local proc = require "clayer.proc"

TestComposeGithub = {}

function TestComposeGithub:setUp()
   local fake = gh.start()
   proc.setenv("CLAYER_GITHUB_API", fake.api)
   proc.setenv("GH_TOKEN", gh.TOKEN)
   gh.control { op = "clear_faults" }
end

function TestComposeGithub:tearDown()
   proc.setenv("CLAYER_GITHUB_API", nil)
   proc.setenv("GH_TOKEN", nil)
   h.cleanup()
end

function TestComposeGithub.teardownClass()
   gh.stop()
end

local function compose(top, repo, root)
   local out, code = h.clayer("compose Containerfile Containerfile.two "
      .. "--json --cache github:" .. repo .. " --root " .. top .. "/" .. root,
      "cd " .. top .. "/ctx &&")
   local obj = json.decode(out:match("(%b{})%s*$") or "")
   return obj, out, code
end

function TestComposeGithub:test_next_layer_downloads_while_this_one_extracts()
   local top = h.tmpdir()
   h.make_root(top .. "/base")
   os.execute("mkdir -p " .. top .. "/ctx")
   h.write(top .. "/ctx/Containerfile", "RUN echo one > /etc/one\n")
   h.write(top .. "/ctx/Containerfile.two", "RUN echo two > /etc/two\n")
   local repo = gh.new_repo()
   os.execute("cp -a " .. top .. "/base " .. top .. "/r1")
   local obj, out, code = compose(top, repo, "r1")
   lu.assertEquals(code, 0, out)
   lu.assertEquals(obj.layers[2].action, "built")

   -- every archive download now waits 1 s at the storage host
   gh.control { op = "fault", kind = "delay", seconds = 1, count = 10,
      port = "storage" }
   gh.log(true)
   os.execute("cp -a " .. top .. "/base " .. top .. "/r2")
   local t0 = proc.clock()
   obj, out, code = compose(top, repo, "r2")
   local elapsed = proc.clock() - t0
   lu.assertEquals(code, 0, out)
   lu.assertEquals(obj.layers[1].action, "hit")
   lu.assertEquals(obj.layers[2].action, "hit")
   lu.assertEquals(h.read(top .. "/r2/etc/two"), "two\n")
   -- layer two's download began before layer one finished extracting
   lu.assertTrue(obj.layers[2].download_started
      < obj.layers[1].extract_finished, out)
   -- each layer.json and each archive was downloaded once (4 in all):
   -- the prefetched copy was used, not fetched again
   local storage = 0
   for _, r in ipairs(gh.log()) do
      if r.port == "storage" then storage = storage + 1 end
   end
   lu.assertEquals(storage, 4)
   print(("  two layers, every download delayed 1 s: %.2f s"):format(elapsed))
end

-- The storage paths ("/blob/ID") of the archives in repo, biggest first.
local function archive_paths(repo)
   local st = json.decode(assert(http.request {
      url = gh.start().api .. "/_state" }).body)
   local list = {}
   for _, rel in pairs(st[repo:lower()].releases) do
      for _, a in ipairs(rel.assets) do
         if a.name ~= "layer.json" then
            list[#list + 1] = a
         end
      end
   end
   table.sort(list, function(a, b) return a.size > b.size end)
   for i, a in ipairs(list) do list[i] = "/blob/" .. math.tointeger(a.id) end
   return list
end

-- A scratch context whose Containerfile copies a `size`-byte random blob
-- (it does not compress: the archive is about that big), built into the
-- cache once.  Returns top, a function running clayer in ctx, a function
-- saying whether a root has the blob, and the archive's storage path
-- ("/blob/ID": faults match it, layer.json's downloads pass).
local function built_blob(size, policy)
   local top = h.tmpdir()
   h.make_root(top .. "/base")
   os.execute("mkdir -p " .. top .. "/ctx")
   h.sh("head -c " .. size .. " /dev/urandom > " .. top .. "/ctx/blob")
   h.write(top .. "/ctx/Containerfile", "COPY blob /opt/blob\n")
   h.write(top .. "/ctx/clayer.policy.lua", "return { http = { "
      .. policy .. " } }")
   local repo = gh.new_repo()
   local function clayer(args)
      return h.clayer(args .. " --cache github:" .. repo,
         "cd " .. top .. "/ctx &&")
   end
   os.execute("cp -a " .. top .. "/base " .. top .. "/r1")
   local out, code = clayer("build Containerfile --root " .. top .. "/r1")
   lu.assertEquals(code, 0, out)
   local function same(root)
      return h.sh("cmp " .. top .. "/ctx/blob " .. root .. "/opt/blob && "
         .. "echo same") == "same\n"
   end
   return top, clayer, same, archive_paths(repo)[1]
end

-- The storage requests for path `blob` since the last log reset (which
-- this makes): {range, status, sent, ...}.
local function gets(blob)
   local out = {}
   for _, r in ipairs(gh.log(true)) do
      if r.port == "storage" and r.path:find(blob .. "?", 1, true) == 1 then
         out[#out + 1] = r
      end
   end
   return out
end

-- A restore whose download resets after 1 MB goes on from there: one
-- resume, no rollback, the first megabyte sent once.
function TestComposeGithub:test_reset_download_resumes()
   local size = 3 * 1024 * 1024
   local top, clayer, same, blob = built_blob(size, "retries = 2, backoff = 0.01")
   gh.control { op = "fault", kind = "reset", count = 1, port = "storage",
      match = blob, after = 1024 * 1024 }
   os.execute("cp -a " .. top .. "/base " .. top .. "/r2")
   gh.log(true)
   local out, code = clayer("restore Containerfile --no-build --root "
      .. top .. "/r2")
   lu.assertEquals(code, 0, out)
   lu.assertTrue(same(top .. "/r2"))
   local _, resumes = out:gsub("; resume %d of 2 at byte %d+ in", "")
   lu.assertEquals(resumes, 1, out)
   lu.assertStrContains(out, "resume 1 of 2 at byte ")
   lu.assertNotStrContains(out, "trying again")
   local g = gets(blob)
   lu.assertEquals(#g, 2, out)
   lu.assertEquals(g[1].range, json.null)
   lu.assertEquals(g[1].sent, 1024 * 1024)
   local at = tonumber(g[2].range:match("^bytes=(%d+)%-$"))
   lu.assertTrue(at > 0 and at <= 1024 * 1024, g[2].range)
   lu.assertEquals(g[2].status, 206)
   lu.assertTrue(g[2].sent < size)
   print(("  reset after 1 MB: the storage sent %d bytes for an archive "
      .. "of about %d (resumed at byte %d)"):format(g[1].sent + g[2].sent,
      size, at))
end

-- D3: a download that stalls times out and resumes; one that breaks every
-- time resumes a bounded number of times, then the restore's own retries
-- start from the beginning, then it fails (--no-build: 1) or builds.
function TestComposeGithub:test_stalled_download_resumes_then_gives_up()
   local size = 300000
   local top, clayer, same, blob = built_blob(size,
      "idle_timeout = 1, retries = 2, backoff = 0.01")
   -- the archive download stalls once, after part of the bytes
   gh.control { op = "fault", kind = "stall", count = 1, port = "storage",
      match = blob, after = 100000 }
   os.execute("cp -a " .. top .. "/base " .. top .. "/r2")
   gh.log(true)
   local out, code = clayer("restore Containerfile --no-build --root "
      .. top .. "/r2")
   lu.assertEquals(code, 0, out)
   lu.assertStrContains(out, "no data for 1 seconds; resume 1 of 2 at "
      .. "byte 100000 in")
   lu.assertNotStrContains(out, "trying again")
   lu.assertTrue(same(top .. "/r2"))
   local g = gets(blob)
   lu.assertEquals(#g, 2, out)
   lu.assertEquals(g[2].range, "bytes=100000-")

   -- every download stalls: 2 resumes, then 2 retries from the start
   -- without resuming, then a failure; root untouched
   gh.control { op = "fault", kind = "stall", count = 99, port = "storage",
      match = blob, after = 100000 }
   os.execute("cp -a " .. top .. "/base " .. top .. "/r3")
   local before = h.sh("cd " .. top .. "/r3 && find . | sort")
   gh.log(true)
   out, code = clayer("restore Containerfile --no-build --root "
      .. top .. "/r3")
   lu.assertEquals(code, 1, out)
   local _, n = out:gsub("trying again", "")
   lu.assertEquals(n, 2, out)
   _, n = out:gsub("; resume %d of 2 at byte", "")
   lu.assertEquals(n, 2, out)
   lu.assertStrContains(out, "no data for 1 seconds (at byte 300000, "
      .. "after 2 resumes)")
   lu.assertEquals(#gets(blob), 5, out)
   lu.assertEquals(h.sh("cd " .. top .. "/r3 && find . -path "
      .. "./var/lib/clayer -prune -o -print | sort"), before)
end

-- Resets every time, without --no-build: the layer is built instead.
function TestComposeGithub:test_reset_every_time_then_builds()
   local size = 300000
   local top, clayer, same, blob = built_blob(size, "retries = 1, backoff = 0.01")
   gh.control { op = "fault", kind = "reset", count = 99, port = "storage",
      match = blob, after = 100000 }
   os.execute("cp -a " .. top .. "/base " .. top .. "/r2")
   gh.log(true)
   local out, code = clayer("restore Containerfile --json --root "
      .. top .. "/r2")
   lu.assertEquals(code, 0, out)
   local obj = json.decode(out:match("(%b{})%s*$") or "")
   lu.assertEquals(obj.layers[1].action, "built", out)
   lu.assertTrue(same(top .. "/r2"))
   -- one resume, one retry from the start: 3 archive requests
   lu.assertEquals(#gets(blob), 3, out)
   lu.assertStrContains(out, "after 1 resume)")
end

-- compose prefetches the next layer on a thread (http.start): a download
-- that resets there resumes too, and the prefetched copy is used.
function TestComposeGithub:test_prefetch_resumes()
   local top = h.tmpdir()
   h.make_root(top .. "/base")
   os.execute("mkdir -p " .. top .. "/ctx")
   h.write(top .. "/ctx/one", "one\n")
   h.sh("head -c 1000000 /dev/urandom > " .. top .. "/ctx/blob")
   h.write(top .. "/ctx/Containerfile", "COPY one /etc/one\n")
   h.write(top .. "/ctx/Containerfile.two", "COPY blob /opt/blob\n")
   h.write(top .. "/ctx/clayer.policy.lua", "return { http = { "
      .. "retries = 2, backoff = 0.01 } }")
   local repo = gh.new_repo()
   os.execute("cp -a " .. top .. "/base " .. top .. "/r1")
   local _, out, code = compose(top, repo, "r1")
   lu.assertEquals(code, 0, out)
   local blob = archive_paths(repo)[1]        -- layer two's
   gh.control { op = "fault", kind = "reset", count = 1, port = "storage",
      match = blob, after = 300000 }
   gh.log(true)
   os.execute("cp -a " .. top .. "/base " .. top .. "/r2")
   local obj
   obj, out, code = compose(top, repo, "r2")
   lu.assertEquals(code, 0, out)
   lu.assertEquals(obj.layers[2].action, "hit", out)
   lu.assertStrMatches(out, ".*layer%.tar%.zst%.000: Recv failure: "
      .. "Connection reset by peer; resume 1 of 2 at byte %d+ in .*")
   lu.assertNotStrContains(out, "prefetch failed")
   lu.assertTrue(obj.layers[2].download_started
      < obj.layers[1].extract_finished, out)
   lu.assertEquals(h.sh("cmp " .. top .. "/ctx/blob " .. top
      .. "/r2/opt/blob && echo same"), "same\n")
   local g = gets(blob)
   lu.assertEquals(#g, 2, out)
   lu.assertEquals(g[1].range, json.null)
   lu.assertStrMatches(g[2].range, "bytes=%d+%-")
end
