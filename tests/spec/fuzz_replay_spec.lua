--- Replay the fuzzers' seed corpora and every saved crash input through
-- the same checks the libFuzzer targets run (tests/fuzz/fuzz_*.lua), with
-- the normal binary: no clang or libFuzzer needed.
local lu = require "luaunit"
local h = require "helper"
local fs = require "clayer.fs"

package.path = h.repo .. "/tests/fuzz/?.lua;" .. package.path

TestFuzzReplay = {}

-- Every file in the corpus and crash folders of a target.
local function inputs(target)
   local out = {}
   for _, kind in ipairs { "corpus", "crashes" } do
      local dir = h.repo .. "/tests/fuzz/" .. kind .. "/" .. target
      for _, name in ipairs(fs.dir(dir) or {}) do
         if name:sub(1, 1) ~= "." then out[#out + 1] = dir .. "/" .. name end
      end
   end
   return out
end

local function replay(target, min)
   local driver = require("fuzz_" .. target)
   local files = inputs(target)
   lu.assertTrue(#files >= min, target .. ": corpus missing")
   driver.setup()
   local failures = {}
   for _, file in ipairs(files) do
      local data = assert(h.read(file))
      local ok, err = pcall(driver.check, data)
      if not ok then
         failures[#failures + 1] = file .. ": " .. tostring(err)
      end
   end
   driver.teardown()
   lu.assertEquals(failures, {})
end

function TestFuzzReplay:test_extract_corpus()
   replay("extract", 10)
end

function TestFuzzReplay:test_containerfile_corpus()
   replay("containerfile", 10)
end

-- The checks themselves catch what they promise to.
function TestFuzzReplay:test_extract_check_catches_an_escape()
   local driver = require "fuzz_extract"
   local area = driver.setup()
   local ok = pcall(driver.check, "")
   lu.assertTrue(ok)
   -- something written outside the root, as an escape would
   h.write(area .. "/outside/etc/passwd", "pwned\n")
   local err
   ok, err = pcall(driver.check, "")
   driver.teardown()
   lu.assertFalse(ok)
   lu.assertStrContains(err, "something outside the root changed")
end

function TestFuzzReplay:test_containerfile_check_catches_a_raise()
   local driver = require "fuzz_containerfile"
   local cf = require "clayer.containerfile"
   local parse = cf.parse
   cf.parse = function() error("boom") end
   local ok, err = pcall(driver.check, "RUN x\n")
   cf.parse = parse
   lu.assertFalse(ok)
   lu.assertStrContains(err, "parse raised")
   lu.assertTrue(pcall(driver.check, "RUN x\nENV A=${B:-c}\n"))
end
