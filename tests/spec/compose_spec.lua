--- Compose: named layers in order below --root scratch roots.
local lu = require "luaunit"
local h = require "helper"
local json = require "clayer.json"

TestCompose = {}

function TestCompose:tearDown()
   h.cleanup()
end

local function setup()
   local top = h.tmpdir()
   h.make_root(top .. "/base")
   os.execute("mkdir -p " .. top .. "/ctx")
   h.write(top .. "/ctx/Containerfile",
      "ENV LAYER=base WHO=base\nRUN echo base > /etc/who && echo b > /etc/b\n")
   h.write(top .. "/ctx/Containerfile.sci",
      "ENV WHO=sci\nRUN echo sci > /etc/who && echo s > /etc/s\n")
   h.write(top .. "/ctx/tools.Containerfile",
      "ENV WHO=tools TOOLS=1\nRUN echo tools > /etc/who && echo t > /etc/t\n")
   return top
end

local FILES = "Containerfile Containerfile.sci tools.Containerfile"

local function compose(top, root, extra)
   return h.clayer("compose " .. FILES .. " --json --cache dir:" .. top
      .. "/cache --root " .. top .. "/" .. root .. " " .. (extra or ""),
      "cd " .. top .. "/ctx &&")
end

local function json_of(out)
   local obj = json.decode(out:match("(%b{})%s*$") or "")
   assert(obj, out)
   return obj
end

local function applied(top, root)
   local st = json.decode(h.read(top .. "/" .. root
      .. "/var/lib/clayer/applied.json"))
   local tags = {}
   for i, l in ipairs(st.layers) do tags[i] = l.name end
   return tags, st
end

function TestCompose:test_order_names_and_later_layers_win()
   local top = setup()
   os.execute("cp -a " .. top .. "/base " .. top .. "/r1")
   local out, code = compose(top, "r1")
   lu.assertEquals(code, 0, out)
   local obj = json_of(out)
   lu.assertEquals(#obj.layers, 3)
   lu.assertEquals(obj.layers[1].name, "base")
   lu.assertEquals(obj.layers[2].name, "sci")
   lu.assertEquals(obj.layers[3].name, "tools")
   for i = 1, 3 do lu.assertEquals(obj.layers[i].action, "built") end
   lu.assertEquals(h.read(top .. "/r1/etc/who"), "tools\n")
   lu.assertEquals((applied(top, "r1")), { "base", "sci", "tools" })
   -- a fresh root restores all three from the cache, in order
   os.execute("cp -a " .. top .. "/base " .. top .. "/r2")
   out, code = compose(top, "r2")
   lu.assertEquals(code, 0, out)
   obj = json_of(out)
   for i = 1, 3 do lu.assertEquals(obj.layers[i].action, "hit") end
   lu.assertEquals(h.read(top .. "/r2/etc/who"), "tools\n")
   lu.assertEquals(h.read(top .. "/r2/etc/b"), "b\n")
   lu.assertEquals(h.read(top .. "/r2/etc/s"), "s\n")
   -- /etc/who comes from all three; the last one wins
   local shadow
   for _, s in ipairs(obj.shadowed) do
      if s.path == "/etc/who" then shadow = s end
   end
   lu.assertNotNil(shadow, out)
   lu.assertEquals(shadow.winner, "tools")
   -- the environment: later layers win
   local env = h.clayer("env --root " .. top .. "/r2")
   lu.assertStrContains(env, "export WHO='tools'\n")
   lu.assertStrContains(env, "export LAYER='base'\n")
   -- nothing changed: every layer is skipped
   out = compose(top, "r2")
   obj = json_of(out)
   for i = 1, 3 do lu.assertEquals(obj.layers[i].action, "skipped") end
end

function TestCompose:test_changed_layer_reapplies_it_and_the_ones_after()
   local top = setup()
   os.execute("cp -a " .. top .. "/base " .. top .. "/r1")
   local out, code = compose(top, "r1")
   lu.assertEquals(code, 0, out)
   h.write(top .. "/ctx/Containerfile.sci",
      "ENV WHO=sci2\nRUN echo sci2 > /etc/who && echo s2 > /etc/s\n")
   out, code = compose(top, "r1")
   lu.assertEquals(code, 0, out)
   local obj = json_of(out)
   lu.assertEquals(obj.layers[1].action, "skipped")
   lu.assertEquals(obj.layers[2].action, "built")
   lu.assertEquals(obj.layers[3].action, "hit")    -- re-applied, not rebuilt
   lu.assertEquals(h.read(top .. "/r1/etc/who"), "tools\n")
   lu.assertEquals(h.read(top .. "/r1/etc/s"), "s2\n")
   lu.assertEquals((applied(top, "r1")), { "base", "sci", "tools" })
   -- status: no drift now; an edit shows as drift with exit 4
   local sout, scode = h.clayer("status --root " .. top .. "/r1")
   lu.assertEquals(scode, 0, sout)
   h.write(top .. "/ctx/tools.Containerfile", "ENV WHO=tools3\n")
   sout, scode = h.clayer("status --root " .. top .. "/r1")
   lu.assertEquals(scode, 4, sout)
   lu.assertStrContains(sout, "rebuild it in a fresh container: clayer build")
   lu.assertStrContains(sout, "--name tools --cache dir:")
end

function TestCompose:test_failure_stops_and_state_lists_what_was_applied()
   local top = setup()
   os.execute("cp -a " .. top .. "/base " .. top .. "/r1")
   h.write(top .. "/ctx/Containerfile.sci", "RUN exit 7\n")
   local out, code = compose(top, "r1")
   lu.assertEquals(code, 1, out)
   lu.assertStrContains(out, "layer sci")
   lu.assertEquals((applied(top, "r1")), { "base" })
   lu.assertNil(h.read(top .. "/r1/etc/t"))
end

function TestCompose:test_duplicate_names_and_explicit_names()
   local top = setup()
   os.execute("cp -a " .. top .. "/base " .. top .. "/r1")
   local out, code = h.clayer("compose Containerfile Containerfile "
      .. "--cache dir:" .. top .. "/cache --root " .. top .. "/r1",
      "cd " .. top .. "/ctx &&")
   lu.assertEquals(code, 2, out)
   lu.assertStrContains(out, "two layers named 'base'")
   out, code = h.clayer("compose Containerfile tools.Containerfile "
      .. "--name py:tools.Containerfile --json --no-push --cache dir:" .. top
      .. "/cache --root " .. top .. "/r1", "cd " .. top .. "/ctx &&")
   lu.assertEquals(code, 0, out)
   local obj = json_of(out)
   lu.assertEquals(obj.layers[2].name, "py")
   lu.assertStrMatches(obj.layers[2].tag, "layer%-py%-%x+")
end

function TestCompose:test_manifest_and_chain_keys()
   local top = setup()
   os.execute("cp -a " .. top .. "/base " .. top .. "/r1")
   h.write(top .. "/ctx/layers.lua", [[
      return { layers = { "Containerfile",
         { file = "Containerfile.sci", name = "science" } } }
   ]])
   local out, code = h.clayer("compose --json --no-push --cache dir:" .. top
      .. "/cache --root " .. top .. "/r1", "cd " .. top .. "/ctx &&")
   lu.assertEquals(code, 0, out)
   local obj = json_of(out)
   lu.assertEquals(obj.layers[2].name, "science")
   local key_sci = obj.layers[2].key
   -- with chain_keys, the second layer's key covers the first's
   h.write(top .. "/ctx/clayer.policy.lua", "return { chain_keys = true }")
   os.execute("cp -a " .. top .. "/base " .. top .. "/r2")
   out, code = h.clayer("compose --json --no-push --cache dir:" .. top
      .. "/cache --root " .. top .. "/r2", "cd " .. top .. "/ctx &&")
   lu.assertEquals(code, 0, out)
   obj = json_of(out)
   lu.assertNotEquals(obj.layers[2].key, key_sci)
end

function TestCompose:test_lua_api_and_profile_d()
   local top = setup()
   os.execute("cp -a " .. top .. "/base " .. top .. "/r1")
   h.write(top .. "/ctx/clayer.policy.lua", "return { profile_d = true }")
   h.write(top .. "/boot.lua", ([[
      local clayer = require "clayer"
      local res, err = clayer.compose { "%s/ctx/Containerfile",
         { file = "%s/ctx/Containerfile.sci", name = "science" },
         cache = "dir:%s/cache", root = "%s/r1" }
      assert(res, err)
      for _, r in ipairs(res.layers) do print(r.name, r.action) end
   ]]):format(top, top, top, top))
   local out, code = h.sh(h.q(h.bin) .. " " .. top .. "/boot.lua")
   lu.assertEquals(code, 0, out)
   lu.assertStrContains(out, "base\tbuilt\n")
   lu.assertStrContains(out, "science\tbuilt\n")
   local profile = h.read(top .. "/r1/etc/profile.d/clayer.sh")
   lu.assertNotNil(profile)
   lu.assertStrContains(profile, "export WHO='sci'\n")
   -- a login shell reading it gets the values
   out = h.sh(". " .. top .. "/r1/etc/profile.d/clayer.sh; echo \"$LAYER\"")
   lu.assertEquals(out, "base\n")
end
