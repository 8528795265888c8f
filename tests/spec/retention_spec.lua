--- Retention: which entries go (select) and pruning a backend.
local lu = require "luaunit"
local h = require "helper"
local policy = require "clayer.policy"
local retention = require "clayer.retention"

local NOW = 1800000000 * 1000000000
local MIN = 60 * 1000000000

local function key(i)
   return ("%016x"):format(i)
end

-- An entry `minutes` old.
local function e(tag, minutes)
   return { tag = tag, created_at = NOW - minutes * MIN, size = 10 }
end

local function tags(list)
   local out = {}
   for i, x in ipairs(list) do out[i] = x.tag end
   table.sort(out)
   return out
end

local function sel(entries, opts)
   opts = opts or {}
   opts.now = opts.now or NOW
   return tags(retention.select(entries, opts))
end

TestRetentionSelect = {}

function TestRetentionSelect:tearDown()
   h.cleanup()
end

function TestRetentionSelect:test_parse()
   lu.assertEquals({ retention.parse("layer-" .. key(1)) },
      { nil, key(1) })
   lu.assertEquals({ retention.parse("layer-mojo-" .. key(1)) },
      { "mojo", key(1) })
   lu.assertEquals({ retention.parse("layer-mojo-gpu-" .. key(1)) },
      { "mojo-gpu", key(1) })
   lu.assertEquals({ retention.parse("layer-" .. key(1) .. "-" .. key(2)) },
      { key(1), key(2) })
   for _, bad in ipairs { "layer-0123", "layer-mojo-0123", "v1.0",
      "layer-" .. key(1):upper():gsub("0", "A"), "layer--" .. key(1),
      "layer-" .. key(1) .. "0", "xlayer-" .. key(1), "layer-a b-" .. key(1),
      "layer-mojo-" .. key(1) .. ".tar" } do
      lu.assertNil((select(2, retention.parse(bad))), bad)
   end
end

function TestRetentionSelect:test_keep_newest_per_name_exactly()
   local list = {}
   for i = 1, 5 do list[#list + 1] = e("layer-mojo-" .. key(i), 100 * i) end
   for i = 1, 4 do
      list[#list + 1] = e("layer-mojo-gpu-" .. key(i), 100 * i)
   end
   lu.assertEquals(sel(list, { keep = 3 }), {
      "layer-mojo-" .. key(4), "layer-mojo-" .. key(5),
      "layer-mojo-gpu-" .. key(4) })
   -- pruning mojo never touches mojo-gpu, and the other way round
   lu.assertEquals(sel(list, { keep = 3, name = "mojo" }), {
      "layer-mojo-" .. key(4), "layer-mojo-" .. key(5) })
   lu.assertEquals(sel(list, { keep = 1, name = "mojo-gpu" }), {
      "layer-mojo-gpu-" .. key(2), "layer-mojo-gpu-" .. key(3),
      "layer-mojo-gpu-" .. key(4) })
   lu.assertEquals(sel(list, { keep = 1, name = "moj" }), {})
   lu.assertEquals(sel(list, { keep = 1, name = "gpu" }), {})
end

function TestRetentionSelect:test_newest_by_created_at_not_order()
   local list = { e("layer-a-" .. key(1), 1000), e("layer-a-" .. key(2), 20),
      e("layer-a-" .. key(3), 500) }
   lu.assertEquals(sel(list, { keep = 1, min_age = 0 }),
      { "layer-a-" .. key(1), "layer-a-" .. key(3) })
   lu.assertEquals(sel(list, { keep = 2, min_age = 0 }),
      { "layer-a-" .. key(1) })
end

function TestRetentionSelect:test_unnamed_group()
   local list = {}
   for i = 1, 4 do list[#list + 1] = e("layer-" .. key(i), 100 * i) end
   list[#list + 1] = e("layer-x-" .. key(9), 900)
   list[#list + 1] = e("layer-x-" .. key(8), 800)
   lu.assertEquals(sel(list, { keep = 2 }), { "layer-" .. key(3),
      "layer-" .. key(4) })
   lu.assertEquals(sel(list, { keep = 1 }), { "layer-" .. key(2),
      "layer-" .. key(3), "layer-" .. key(4), "layer-x-" .. key(9) })
   lu.assertEquals(sel(list, { keep = 2, unnamed = true }),
      { "layer-" .. key(3), "layer-" .. key(4) })
   lu.assertEquals(sel(list, { keep = 0, unnamed = true }), {
      "layer-" .. key(1), "layer-" .. key(2), "layer-" .. key(3),
      "layer-" .. key(4) })
end

function TestRetentionSelect:test_other_tags_are_never_selected()
   local list = { e("v1.0", 9999), e("layer-short-1234", 9999),
      e("clayer-cache", 9999), e("layer-" .. key(1), 9999),
      e("layer-" .. key(2), 9998) }
   lu.assertEquals(sel(list, { keep = 0 }),
      { "layer-" .. key(1), "layer-" .. key(2) })
end

function TestRetentionSelect:test_min_age()
   local list = { e("layer-m-" .. key(1), 1), e("layer-m-" .. key(2), 5),
      e("layer-m-" .. key(3), 9), e("layer-m-" .. key(4), 11),
      e("layer-m-" .. key(5), 60) }
   -- default 600 s: the 5 and 9 minute old ones stay though over keep
   lu.assertEquals(sel(list, { keep = 1 }),
      { "layer-m-" .. key(4), "layer-m-" .. key(5) })
   lu.assertEquals(sel(list, { keep = 1, min_age = 30 * 60 }),
      { "layer-m-" .. key(5) })
   lu.assertEquals(sel(list, { keep = 1, min_age = 0 }), {
      "layer-m-" .. key(2), "layer-m-" .. key(3), "layer-m-" .. key(4),
      "layer-m-" .. key(5) })
   -- exactly min_age old may go
   lu.assertEquals(sel({ e("layer-" .. key(1), 1), e("layer-" .. key(2), 10) },
      { keep = 1, min_age = 600 }), { "layer-" .. key(2) })
end

function TestRetentionSelect:test_protect()
   local list = {}
   for i = 1, 5 do list[#list + 1] = e("layer-p-" .. key(i), 100 * i) end
   lu.assertEquals(sel(list, { keep = 2, protect = {
      ["layer-p-" .. key(4)] = true, ["layer-p-" .. key(1)] = true } }),
      { "layer-p-" .. key(3), "layer-p-" .. key(5) })
   lu.assertEquals(sel(list, { keep = 0, protect = {
      ["layer-p-" .. key(1)] = true } }), { "layer-p-" .. key(2),
      "layer-p-" .. key(3), "layer-p-" .. key(4), "layer-p-" .. key(5) })
end

function TestRetentionSelect:test_defaults_and_result_shape()
   local list = {}
   for i = 1, 6 do list[#list + 1] = e("layer-d-" .. key(i), 100 * i) end
   local out = retention.select(list, { now = NOW })
   lu.assertEquals(#out, 3)                 -- keep 3 by default
   lu.assertIs(out[1], list[4])             -- the entries themselves,
   lu.assertIs(out[3], list[6])             -- in their input order
   lu.assertEquals(retention.select({}, {}), {})
end

-- An in-memory backend.
local function mem(entries, fail)
   local b = { uri = "mem:", deleted = {}, entries = entries }
   function b:list(prefix)
      local out = {}
      for _, x in ipairs(self.entries) do
         if x.tag:sub(1, #prefix) == prefix then out[#out + 1] = x end
      end
      return out
   end
   function b:delete(tag)
      if fail and fail[tag] then return nil, "boom" end
      self.deleted[#self.deleted + 1] = tag
      return true
   end
   return b
end

TestRetentionPrune = {}

function TestRetentionPrune:test_prune_and_dry_run()
   local list = {}
   for i = 1, 4 do list[#list + 1] = e("layer-n-" .. key(i), 100 * i) end
   local b = mem(list)
   local r = assert(retention.prune(b, { keep = 2, now = NOW,
      dry_run = true }))
   lu.assertEquals(r.deleted, { "layer-n-" .. key(3), "layer-n-" .. key(4) })
   lu.assertTrue(r.dry_run)
   lu.assertEquals(b.deleted, {})
   r = assert(retention.prune(b, { keep = 2, now = NOW }))
   lu.assertEquals(b.deleted, { "layer-n-" .. key(3), "layer-n-" .. key(4) })
   lu.assertEquals(r.kept, { "layer-n-" .. key(1), "layer-n-" .. key(2) })
end

function TestRetentionPrune:test_policy_keep_and_min_age()
   local list = {}
   for i = 1, 4 do list[#list + 1] = e("layer-n-" .. key(i), 100 * i) end
   local pol = policy.defaults()
   pol.keep, pol.min_age = 1, 250 * 60
   local r = assert(retention.prune(mem(list), { now = NOW, policy = pol,
      dry_run = true }))
   lu.assertEquals(r.deleted, { "layer-n-" .. key(3), "layer-n-" .. key(4) })
   -- an explicit keep wins over the policy's
   r = assert(retention.prune(mem(list), { now = NOW, policy = pol,
      keep = 3, dry_run = true }))
   lu.assertEquals(r.deleted, { "layer-n-" .. key(4) })
end

function TestRetentionPrune:test_user_policy_function()
   local list = {}
   for i = 1, 4 do list[#list + 1] = e("layer-u-" .. key(i), 100 * i) end
   list[#list + 1] = e("layer-" .. key(7), 1)       -- young
   list[#list + 1] = e("v2", 1000)                  -- no layer
   local seen
   local pol = policy.merge(policy.defaults(), {
      retention = function(entries, opts, default)
         seen = { n = #entries, keep = opts.keep, default = default }
         -- everything, even what must stay: prune filters
         return entries
      end,
   })
   local b = mem(list)
   local r = assert(retention.prune(b, { keep = 2, now = NOW, policy = pol,
      protect = { ["layer-u-" .. key(2)] = true } }))
   lu.assertEquals(seen.n, 5)       -- the "layer-" prefix lists
   lu.assertEquals(seen.keep, 2)
   lu.assertEquals(type(seen.default), "function")
   table.sort(b.deleted)
   lu.assertEquals(b.deleted, { "layer-u-" .. key(1), "layer-u-" .. key(3),
      "layer-u-" .. key(4) })
   lu.assertEquals(#r.kept, 2)
   -- the default it gets is select
   local pol2 = policy.merge(policy.defaults(), {
      retention = function(entries, opts, default)
         local out = default(entries, opts)
         return { out[1] }
      end,
   })
   b = mem(list)
   retention.prune(b, { keep = 1, now = NOW, policy = pol2 })
   lu.assertEquals(#b.deleted, 1)
   lu.assertStrContains(b.deleted[1], "layer-u-")
   -- a function returning garbage is an error
   local pol3 = policy.merge(policy.defaults(),
      { retention = function() return 42 end })
   local ok, err = retention.prune(mem(list), { policy = pol3, now = NOW })
   lu.assertNil(ok)
   lu.assertStrContains(err, "retention")
end

function TestRetentionPrune:test_failures_and_immutable()
   local list = {}
   for i = 1, 4 do list[#list + 1] = e("layer-f-" .. key(i), 100 * i) end
   local b = mem(list, { ["layer-f-" .. key(3)] = true })
   local r = assert(retention.prune(b, { keep = 1, now = NOW }))
   lu.assertEquals(r.deleted, { "layer-f-" .. key(2), "layer-f-" .. key(4) })
   lu.assertEquals(r.failed[1].tag, "layer-f-" .. key(3))
   lu.assertEquals(r.kept, { "layer-f-" .. key(1), "layer-f-" .. key(3) })
   list[1].immutable = true
   b = mem(list)
   r = assert(retention.prune(b, { keep = 1, now = NOW }))
   lu.assertEquals(b.deleted, {})
   lu.assertTrue(r.immutable)
   lu.assertEquals(#r.would_delete, 3)
   -- a listing that fails is an error
   b.list = function() return nil, "unreachable" end
   local ok, err = retention.prune(b, {})
   lu.assertNil(ok)
   lu.assertEquals(err, "unreachable")
end
