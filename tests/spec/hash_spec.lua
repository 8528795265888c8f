--- clayer.hash: SHA-256 of strings, files and incremental contexts.
local lu = require "luaunit"
local h = require "helper"
local hash = require "clayer.hash"

local EMPTY =
   "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
local ABC =
   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
-- FIPS 180-2 vector: "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
local LONG_IN = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
local LONG =
   "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"

TestHash = {}

function TestHash:tearDown()
   h.cleanup()
end

function TestHash:test_known_vectors()
   lu.assertEquals(hash.sha256(""), EMPTY)
   lu.assertEquals(hash.sha256("abc"), ABC)
   lu.assertEquals(hash.sha256(LONG_IN), LONG)
end

function TestHash:test_binary_string_with_nul()
   lu.assertNotEquals(hash.sha256("a\0b"), hash.sha256("a"))
   lu.assertEquals(#hash.sha256("a\0b"), 64)
end

function TestHash:test_file_matches_sha256sum()
   local dir = h.tmpdir()
   local path = dir .. "/big"
   -- several read chunks, with an odd tail
   local parts = {}
   for i = 1, 3000 do
      parts[i] = string.format("line %05d %s\n", i, ("x"):rep(i % 97))
   end
   h.write(path, table.concat(parts))
   local out = h.sh("sha256sum " .. h.q(path))
   lu.assertEquals(hash.file(path), out:match("^(%x+)"))
   lu.assertEquals(hash.file(path), hash.sha256(h.read(path)))
end

function TestHash:test_empty_file()
   local dir = h.tmpdir()
   h.write(dir .. "/e", "")
   lu.assertEquals(hash.file(dir .. "/e"), EMPTY)
end

function TestHash:test_missing_file_returns_errno()
   local d, err, code = hash.file("/nonexistent/clayer-hash")
   lu.assertNil(d)
   lu.assertEquals(err, "/nonexistent/clayer-hash: No such file or directory")
   lu.assertEquals(code, 2)
end

function TestHash:test_file_is_a_folder()
   local d, err, code = hash.file(h.tmpdir())
   lu.assertNil(d)
   lu.assertStrContains(err, "Is a directory")
   lu.assertEquals(code, 21)
end

function TestHash:test_incremental_equals_one_shot()
   local ctx = hash.new()
   lu.assertEquals(ctx:hexdigest(), EMPTY)
   lu.assertIs(ctx:update("ab"), ctx)
   ctx:update(""):update("c")
   lu.assertEquals(ctx:hexdigest(), ABC)
   -- the context stays usable after a digest
   ctx:update(LONG_IN:sub(4))
   lu.assertEquals(ctx:hexdigest(), hash.sha256("abc" .. LONG_IN:sub(4)))
   ctx:close()
end

function TestHash:test_many_pieces()
   local ctx = hash.new()
   local all = {}
   for i = 1, 1000 do
      local piece = tostring(i):rep(i % 7 + 1)
      ctx:update(piece)
      all[#all + 1] = piece
   end
   lu.assertEquals(ctx:hexdigest(), hash.sha256(table.concat(all)))
end

function TestHash:test_closed_context_raises()
   local ctx = hash.new()
   ctx:close()
   ctx:close()   -- idempotent
   lu.assertErrorMsgContains("closed", ctx.update, ctx, "x")
   lu.assertErrorMsgContains("closed", ctx.hexdigest, ctx)
end

function TestHash:test_to_be_closed()
   local saved
   do
      local ctx <close> = hash.new()
      saved = ctx
      ctx:update("abc")
   end
   lu.assertErrorMsgContains("closed", saved.hexdigest, saved)
end

function TestHash:test_misuse_raises()
   lu.assertError(hash.sha256, nil)
   lu.assertError(hash.sha256, {})
   lu.assertError(hash.new().update, hash.new(), {})
   lu.assertError(hash.new().update, {}, "x")
end
