--- Compose against a github: cache: later layers download while earlier
-- ones extract (measured from the layers' own marks).
local lu = require "luaunit"
local h = require "helper"
local gh = require "ghfake"
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

-- D3: a download that stalls times out, is rolled back and tried again,
-- a bounded number of times.
function TestComposeGithub:test_stalled_download_is_retried_then_given_up()
   local top = h.tmpdir()
   h.make_root(top .. "/base")
   os.execute("mkdir -p " .. top .. "/ctx")
   h.sh("head -c 300000 /dev/urandom > " .. top .. "/ctx/blob")
   h.write(top .. "/ctx/Containerfile", "COPY blob /opt/blob\n")
   h.write(top .. "/ctx/clayer.policy.lua", "return { http = { "
      .. "idle_timeout = 1, retries = 2, backoff = 0.01 } }")
   local repo = gh.new_repo()
   local function clayer(args)
      return h.clayer(args .. " --cache github:" .. repo,
         "cd " .. top .. "/ctx &&")
   end
   os.execute("cp -a " .. top .. "/base " .. top .. "/r1")
   local out, code = clayer("build Containerfile --root " .. top .. "/r1")
   lu.assertEquals(code, 0, out)

   -- the first archive download stalls after part of the bytes (the
   -- first storage request, layer.json's, is smaller than that and passes)
   gh.control { op = "fault", kind = "stall", count = 2, port = "storage",
      match = "/blob/", after = 100000 }
   os.execute("cp -a " .. top .. "/base " .. top .. "/r2")
   out, code = clayer("restore Containerfile --no-build --root "
      .. top .. "/r2")
   lu.assertEquals(code, 0, out)
   lu.assertStrContains(out, "trying again")
   lu.assertEquals(h.sh("cmp " .. top .. "/ctx/blob " .. top
      .. "/r2/opt/blob && echo same"), "same\n")

   -- every download stalls: three tries, then a failure; root untouched
   gh.control { op = "fault", kind = "stall", count = 10, port = "storage",
      match = "/blob/", after = 100000 }
   os.execute("cp -a " .. top .. "/base " .. top .. "/r3")
   local before = h.sh("cd " .. top .. "/r3 && find . | sort")
   out, code = clayer("restore Containerfile --no-build --root "
      .. top .. "/r3")
   lu.assertEquals(code, 1, out)
   local _, n = out:gsub("trying again", "")
   lu.assertEquals(n, 2)
   lu.assertEquals(h.sh("cd " .. top .. "/r3 && find . -path "
      .. "./var/lib/clayer -prune -o -print | sort"), before)
end
