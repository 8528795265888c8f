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
   print(("  two 1-second downloads, overlapped: %.2f s"):format(elapsed))
end
