--- Policy: defaults, list edits, function wrapping, file lookup.
local lu = require "luaunit"
local h = require "helper"
local policy = require "clayer.policy"

TestPolicy = {}

function TestPolicy:tearDown()
   h.cleanup()
end

function TestPolicy:test_scalars_replace()
   local p = policy.merge(policy.defaults(), { zstd_level = 9 })
   lu.assertEquals(p.zstd_level, 9)
   lu.assertEquals(p.keep, 3)
end

function TestPolicy:test_list_replaced_or_edited()
   local p = policy.merge(policy.defaults(), { watch = { "/opt" } })
   lu.assertEquals(p.watch, { "/opt" })
   p = policy.merge(policy.defaults(),
      { exclude = { add = { "/opt/x" }, remove = { "/tmp" } } })
   local set = {}
   for _, e in ipairs(p.exclude) do set[e] = true end
   lu.assertTrue(set["/opt/x"])
   lu.assertNil(set["/tmp"])
   lu.assertTrue(set["/proc"])
end

function TestPolicy:test_nested_tables_merge()
   local p = policy.merge(policy.defaults(), { http = { retries = 7 } })
   lu.assertEquals(p.http.retries, 7)
   lu.assertEquals(p.http.connect_timeout, 30)
end

function TestPolicy:test_function_gets_default_last()
   local p = policy.merge(policy.defaults(), {
      key_extras = function(inputs, default)
         local r = default(inputs)
         r.salt = "policy"
         return r
      end })
   lu.assertEquals(p.key_extras({}).salt, "policy")
end

function TestPolicy:test_file_beside_containerfile()
   local dir = h.tmpdir()
   h.write(dir .. "/clayer.policy.lua", "return { keep = 5 }")
   local p = assert(policy.load(nil, dir))
   lu.assertEquals(p.keep, 5)
   lu.assertEquals(p.file, dir .. "/clayer.policy.lua")
end

function TestPolicy:test_bad_file_is_an_error()
   local dir = h.tmpdir()
   h.write(dir .. "/p.lua", "return 42")
   local p, err = policy.load(dir .. "/p.lua")
   lu.assertNil(p)
   lu.assertStrContains(err, "must return a table")
end
