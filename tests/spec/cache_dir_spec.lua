--- The dir: cache backend.
local lu = require "luaunit"
local h = require "helper"
local cache = require "clayer.cache"
local json = require "clayer.json"

TestCacheDir = {}

function TestCacheDir:tearDown()
   h.cleanup()
end

local function staged(dir, tag)
   local src = dir .. "/stage-" .. tag
   os.execute("mkdir -p " .. src)
   h.write(src .. "/layer.tar.zst", "archive-bytes")
   local meta = { tag = tag, parts = { { name = "layer.tar.zst", size = 13 } } }
   h.write(src .. "/layer.json", json.encode(meta))
   return src, meta
end

function TestCacheDir:test_publish_find_sources_list_delete()
   local dir = h.tmpdir()
   local c = assert(cache.open("dir:" .. dir .. "/c"))
   lu.assertNil(c:find("layer-abc"))
   local src, meta = staged(dir, "layer-abc")
   lu.assertEquals(c:publish("layer-abc", src, meta), "published")
   local found = assert(c:find("layer-abc"))
   lu.assertEquals(found.tag, "layer-abc")
   local srcs = assert(c:sources("layer-abc", found))
   lu.assertEquals(h.read(srcs[1]), "archive-bytes")
   local src2, meta2 = staged(dir, "layer-abc")
   lu.assertEquals(c:publish("layer-abc", src2, meta2), "exists")
   local l = c:list("layer-")
   lu.assertEquals(#l, 1)
   lu.assertEquals(l[1].tag, "layer-abc")
   assert(c:delete("layer-abc"))
   lu.assertNil(c:find("layer-abc"))
   lu.assertEquals(h.sh("ls -A " .. dir .. "/c"), "")
end

function TestCacheDir:test_original_tools_tarball_is_found()
   local dir = h.tmpdir()
   os.execute("mkdir -p " .. dir .. "/layer-0123456789abcdef")
   h.write(dir .. "/layer-0123456789abcdef/layer.tar.gz", "gz")
   local c = assert(cache.open("dir:" .. dir))
   local meta = assert(c:find("layer-0123456789abcdef"))
   lu.assertTrue(meta.legacy)
   lu.assertEquals(meta.parts[1].name, "layer.tar.gz")
end

function TestCacheDir:test_unknown_scheme_and_bad_tag()
   local c, err = cache.open("s3:bucket")
   lu.assertNil(c)
   lu.assertStrContains(err, "unknown cache backend: s3")
   c = assert(cache.open("dir:" .. h.tmpdir()))
   local m, ferr = c:find("../etc")
   lu.assertNil(m)
   lu.assertStrContains(ferr, "invalid tag")
end

function TestCacheDir:test_missing_part_is_reported()
   local dir = h.tmpdir()
   local c = assert(cache.open("dir:" .. dir))
   local src, meta = staged(dir, "layer-x")
   assert(c:publish("layer-x", src, meta))
   os.remove(dir .. "/layer-x/layer.tar.zst")
   local s, err = c:sources("layer-x", assert(c:find("layer-x")))
   lu.assertNil(s)
   lu.assertStrContains(err, "missing")
end
