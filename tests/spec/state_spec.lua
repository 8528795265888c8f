--- State: applied.json, env.sh quoting, the lock.
local lu = require "luaunit"
local h = require "helper"
local state = require "clayer.state"

TestState = {}

function TestState:tearDown()
   h.cleanup()
end

function TestState:test_env_quoting_survives_the_shell()
   local dir = h.tmpdir()
   local st = state.load(dir)
   local odd = "a b 'q' \"d\" $HOME `x` \\ \nline2"
   state.record(st, { name = "base", tag = "layer-base-1", key = "1",
      env = { { "ODD", odd }, { "PLAIN", "p" } } })
   assert(state.save(dir, st))
   local out = h.sh(". " .. dir .. "/env.sh; printf '%s|%s' \"$ODD\" \"$PLAIN\"")
   lu.assertEquals(out, odd .. "|p")
end

function TestState:test_later_layers_win_and_record_replaces()
   local st = { layers = {} }
   state.record(st, { name = "a", tag = "layer-a-1", env = { { "X", "1" } } })
   state.record(st, { name = "b", tag = "layer-b-1", env = { { "X", "2" } } })
   lu.assertEquals(state.environment(st).X, "2")
   state.record(st, { name = "a", tag = "layer-a-2", env = { { "Y", "y" } } })
   lu.assertEquals(#st.layers, 2)
   lu.assertEquals(st.layers[1].tag, "layer-a-2")
   lu.assertNotNil(state.find(st, "layer-b-1"))
end

function TestState:test_load_missing_and_corrupt()
   local dir = h.tmpdir()
   lu.assertEquals(#state.load(dir).layers, 0)
   h.write(dir .. "/applied.json", "{not json")
   lu.assertEquals(#state.load(dir).layers, 0)
end

function TestState:test_second_locker_waits_and_says_so()
   local dir = h.tmpdir()
   local lock = assert(state.lock(dir))
   local script = dir .. "/l.lua"
   h.write(script, ([[
      local state = require "clayer.state"
      local t0 = require("clayer.proc").clock()
      local l = assert(state.lock(%q))
      print(("waited %%.1f"):format(require("clayer.proc").clock() - t0))
   ]]):format(dir))
   local p = io.popen(h.q(h.bin) .. " " .. script .. " 2>&1")
   require("clayer.proc").sleep(0.5)
   lock:close()
   local out = p:read("a")
   p:close()
   lu.assertStrContains(out, "waiting for another clayer run")
   local waited = tonumber(out:match("waited ([%d.]+)"))
   lu.assertTrue(waited >= 0.3)
end
