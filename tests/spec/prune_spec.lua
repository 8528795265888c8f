--- clayer prune and clayer ls, through the CLI, on dir: and github:.
local lu = require "luaunit"
local h = require "helper"
local http = require "clayer.http"
local json = require "clayer.json"
local proc = require "clayer.proc"

local q = h.q
local TOKEN = "ghp_clayerPruneSpec0123456789"

local function key(i)
   return ("%016x"):format(i)
end

--- A dir: cache in a scratch folder with entries {tag, age in minutes}.
local function dir_cache(entries)
   local dir = h.tmpdir()
   local c = dir .. "/cache"
   os.execute("mkdir -p " .. q(c))
   local now = os.time()
   for _, e in ipairs(entries) do
      local d = c .. "/" .. e[1]
      assert(h.sh(("mkdir -p %s && printf 12345 > %s/layer.tar.zst && "
         .. "printf '{}' > %s/layer.json && touch -d @%d %s"):format(q(d),
         q(d), q(d), now - e[2] * 60, q(d))))
   end
   return dir, c
end

local function entries_of(c)
   local out = h.sh("ls " .. q(c))
   local t = {}
   for name in out:gmatch("%S+") do t[#t + 1] = name end
   return t
end

-- Run the CLI in dir with a private state folder; returns output, code.
local function clayer(dir, args, env)
   return h.clayer(args, "cd " .. q(dir) .. " && CLAYER_STATE_DIR="
      .. q(dir .. "/state") .. " CLAYER_POLICY= " .. (env or ""))
end

local function json_of(out)
   local s = out:match("(%b{})%s*$")
   local v = s and json.decode(s)
   lu.assertEquals(type(v), "table", out)
   return v
end

local SIX = {
   { "layer-mojo-" .. key(1), 60 }, { "layer-mojo-" .. key(2), 120 },
   { "layer-mojo-" .. key(3), 180 }, { "layer-mojo-gpu-" .. key(4), 240 },
   { "layer-mojo-gpu-" .. key(5), 300 }, { "layer-" .. key(6), 360 },
}

TestPruneDir = {}

function TestPruneDir:tearDown()
   h.cleanup()
end

function TestPruneDir:test_dry_run_then_prune()
   local dir, c = dir_cache(SIX)
   local out, code = clayer(dir, "prune --cache dir:" .. q(c)
      .. " --keep 1 --dry-run --json")
   lu.assertEquals(code, 0, out)
   local r = json_of(out)
   lu.assertEquals(r.command, "prune")
   lu.assertTrue(r.ok)
   lu.assertTrue(r.dry_run)
   table.sort(r.deleted)
   lu.assertEquals(r.deleted, { "layer-mojo-" .. key(2),
      "layer-mojo-" .. key(3), "layer-mojo-gpu-" .. key(5) })
   lu.assertEquals(#entries_of(c), 6)        -- nothing deleted
   out, code = clayer(dir, "prune --cache dir:" .. q(c) .. " --keep 1")
   lu.assertEquals(code, 0, out)
   lu.assertStrContains(out, "deleted layer-mojo-" .. key(3))
   lu.assertEquals(entries_of(c), { "layer-" .. key(6),
      "layer-mojo-" .. key(1), "layer-mojo-gpu-" .. key(4) })
end

function TestPruneDir:test_name_is_exact_and_default_keep()
   local dir, c = dir_cache(SIX)
   local out, code = clayer(dir, "prune --cache " .. q(c)
      .. " --keep 0 --name mojo-gpu")
   lu.assertEquals(code, 0, out)
   lu.assertEquals(entries_of(c), { "layer-" .. key(6),
      "layer-mojo-" .. key(1), "layer-mojo-" .. key(2),
      "layer-mojo-" .. key(3) })
   -- default: keep 3 per name, so nothing goes here
   out, code = clayer(dir, "prune --cache " .. q(c))
   lu.assertEquals(code, 0, out)
   lu.assertEquals(#entries_of(c), 4)
end

function TestPruneDir:test_applied_and_young_entries_stay()
   local dir, c = dir_cache { { "layer-a-" .. key(1), 3 },
      { "layer-a-" .. key(2), 100 }, { "layer-a-" .. key(3), 200 },
      { "layer-a-" .. key(4), 300 } }
   os.execute("mkdir -p " .. q(dir .. "/state"))
   h.write(dir .. "/state/applied.json", json.encode {
      format = "clayer-state/1", layers = { { tag = "layer-a-" .. key(3),
      key = key(3) } } })
   -- keep 0: the 3 minute old one and the applied one stay
   local out, code = clayer(dir, "prune --cache " .. q(c) .. " --keep 0")
   lu.assertEquals(code, 0, out)
   lu.assertEquals(entries_of(c), { "layer-a-" .. key(1),
      "layer-a-" .. key(3) })
end

function TestPruneDir:test_policy_retention_function()
   local dir, c = dir_cache(SIX)
   h.write(dir .. "/policy.lua", [[
return {
   retention = function(entries, opts, default)
      -- drop only unnamed entries, whatever keep says
      local out = {}
      for _, e in ipairs(entries) do
         if e.tag:match("^layer%-%x+$") then out[#out + 1] = e end
      end
      return out
   end,
}
]])
   local out, code = clayer(dir, "prune --cache " .. q(c) .. " --policy "
      .. q(dir .. "/policy.lua") .. " --keep 0")
   lu.assertEquals(code, 0, out)
   lu.assertEquals(#entries_of(c), 5)
   lu.assertNotStrContains(table.concat(entries_of(c), " "), "layer-" .. key(6))
end

function TestPruneDir:test_bad_usage()
   local dir, c = dir_cache(SIX)
   local out, code = clayer(dir, "prune --cache " .. q(c) .. " --keep x")
   lu.assertEquals(code, 2, out)
   lu.assertStrContains(out, "--keep")
   out, code = clayer(dir, "prune --cache " .. q(c) .. " extra")
   lu.assertEquals(code, 2, out)
   out, code = clayer(dir, "ls --cache s3:bucket")
   lu.assertEquals(code, 2, out)
   lu.assertStrContains(out, "unknown cache backend")
end

function TestPruneDir:test_ls()
   local dir, c = dir_cache(SIX)
   os.execute("mkdir -p " .. q(c .. "/not-a-layer"))
   local out, code = clayer(dir, "ls --cache dir:" .. q(c) .. " --json")
   lu.assertEquals(code, 0, out)
   local r = json_of(out)
   lu.assertEquals(r.command, "ls")
   lu.assertEquals(#r.layers, 6)
   local first = r.layers[1]
   lu.assertEquals(first.tag, "layer-mojo-" .. key(1))   -- newest first
   lu.assertEquals(first.name, "mojo")
   lu.assertEquals(first.key, key(1))
   lu.assertEquals(first.size, 7)
   lu.assertTrue(math.abs(first.age - 3600) < 120, tostring(first.age))
   lu.assertEquals(r.layers[6].name, json.null)
   out, code = clayer(dir, "ls --cache dir:" .. q(c))
   lu.assertEquals(code, 0, out)
   lu.assertStrContains(out, "NAME")
   lu.assertStrMatches(out, ".*mojo%-gpu%s+" .. key(4)
      .. "%s+7 B%s+4h%s+layer%-mojo%-gpu%-" .. key(4) .. ".*")
   local _, empty = dir_cache({})
   out, code = clayer(dir, "ls --cache dir:" .. q(empty))
   lu.assertEquals(code, 0, out)
   lu.assertStrContains(out, "no layers")
end

-- The same commands on the fake GitHub.
local fake = {}

local function start()
   if fake.api then return fake end
   fake.dir = h.sh("mktemp -d /tmp/clayer-prune.XXXXXX"):gsub("%s+$", "")
   h.write(fake.dir .. "/token", TOKEN)
   local pf = fake.dir .. "/ports"
   local out = h.sh(("python3 %s --port-file %s --token-file %s "
      .. "--lifetime 120 --repo o/r >/dev/null 2>&1 & echo $!"):format(
      q(h.repo .. "/tests/fixtures/fakegithub.py"), q(pf),
      q(fake.dir .. "/token")))
   fake.pid = assert(out:match("%d+"))
   for _ = 1, 200 do
      local text = h.read(pf)
      local ports = text and json.decode(text)
      if type(ports) == "table" then
         fake.api = "http://127.0.0.1:" .. math.tointeger(ports.api)
         return fake
      end
      proc.sleep(0.02)
   end
   error("fakegithub.py did not start")
end

local function control(req)
   local res = assert(http.request { url = start().api .. "/_control",
      method = "POST", body = json.encode(req) })
   assert(res.status < 300, tostring(res.body))
end

TestPruneGithub = {}

function TestPruneGithub:setUp()
   start()
   proc.setenv("CLAYER_GITHUB_API", fake.api)
   proc.setenv("GH_TOKEN", TOKEN)
end

function TestPruneGithub:tearDown()
   proc.setenv("CLAYER_GITHUB_API", nil)
   proc.setenv("GH_TOKEN", nil)
   h.cleanup()
end

function TestPruneGithub.teardownClass()
   if fake.pid then os.execute("kill " .. fake.pid .. " 2>/dev/null") end
   if fake.dir then os.execute("rm -rf " .. q(fake.dir)) end
   fake = {}
end

function TestPruneGithub:test_prune_and_ls()
   local repo = "o/p" .. proc.getpid()
   control { op = "repo", repo = repo }
   for _, e in ipairs(SIX) do
      control { op = "release", repo = repo, tag = e[1], age = e[2] * 60,
         assets = { { name = "layer.tar.gz", data = "abc" } } }
   end
   local dir = h.tmpdir()
   local out, code = clayer(dir, "ls --json --repo " .. q(repo))
   lu.assertEquals(code, 0, out)
   local r = json_of(out)
   lu.assertEquals(#r.layers, 6)
   lu.assertEquals(r.layers[1].name, "mojo")
   lu.assertEquals(r.layers[1].size, 3)
   out, code = clayer(dir, "prune --dry-run --json --keep 1 --name mojo "
      .. "--repo " .. q(repo))
   lu.assertEquals(code, 0, out)
   r = json_of(out)
   table.sort(r.deleted)
   lu.assertEquals(r.deleted, { "layer-mojo-" .. key(2),
      "layer-mojo-" .. key(3) })
   out, code = clayer(dir, "prune --keep 1 --name mojo --cache github:"
      .. q(repo))
   lu.assertEquals(code, 0, out)
   r = json_of(clayer(dir, "ls --json --repo " .. q(repo)))
   lu.assertEquals(#r.layers, 4)
   for _, l in ipairs(r.layers) do
      lu.assertNotEquals(l.tag, "layer-mojo-" .. key(2))
      lu.assertNotEquals(l.tag, "layer-mojo-" .. key(3))
   end
   lu.assertNotStrContains(out, TOKEN)
end

function TestPruneGithub:test_unusable_cache_is_exit_3()
   start()
   proc.setenv("GH_TOKEN", "ghp_not_the_right_one")
   local dir = h.tmpdir()
   local out, code = clayer(dir, "ls --repo o/r")
   lu.assertEquals(code, 3, out)
   lu.assertStrContains(out, "bad token")
   lu.assertNotStrContains(out, "ghp_not_the_right_one")
   proc.setenv("GH_TOKEN", TOKEN)
   h.write(dir .. "/policy.lua", "return { http = { backoff = 0.001 } }")
   out, code = clayer(dir, "prune --repo o/r --policy policy.lua",
      "CLAYER_GITHUB_API=http://127.0.0.1:1")
   lu.assertEquals(code, 3, out)
   lu.assertStrContains(out, "unreachable")
end
