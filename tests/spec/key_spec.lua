--- The cache key and its extras: the original tool's vectors, and more.
local lu = require "luaunit"
local cf = require "clayer.containerfile"
local hash = require "clayer.hash"

local FIXTURES = (os.getenv("CLAYER_REPO") or ".") .. "/tests/fixtures/keys/"

-- {==================================================================
-- A pure-Lua SHA-256, used only while clayer.hash has no sha256 yet.
-- ===================================================================

local K256 = {
   0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1,
   0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
   0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
   0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
   0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147,
   0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
   0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
   0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
   0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
   0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
   0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}

local function rotr(x, n)
   return ((x >> n) | (x << (32 - n))) & 0xffffffff
end

local function lua_sha256(msg)
   local h = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 }
   local len = #msg
   msg = msg .. "\128" .. ("\0"):rep((55 - len) % 64)
      .. string.pack(">I8", len * 8)
   for chunk = 1, #msg, 64 do
      local w = { string.unpack(">" .. ("I4"):rep(16), msg, chunk) }
      for i = 17, 64 do
         local a, b = w[i - 15], w[i - 2]
         local s0 = rotr(a, 7) ~ rotr(a, 18) ~ (a >> 3)
         local s1 = rotr(b, 17) ~ rotr(b, 19) ~ (b >> 10)
         w[i] = (w[i - 16] + s0 + w[i - 7] + s1) & 0xffffffff
      end
      local a, b, c, d, e, f, g, hh = table.unpack(h)
      for i = 1, 64 do
         local t1 = hh + (rotr(e, 6) ~ rotr(e, 11) ~ rotr(e, 25))
            + ((e & f) ~ (~e & g)) + K256[i] + w[i]
         local t2 = (rotr(a, 2) ~ rotr(a, 13) ~ rotr(a, 22))
            + ((a & b) ~ (a & c) ~ (b & c))
         hh, g, f, e = g, f, e, (d + t1) & 0xffffffff
         d, c, b, a = c, b, a, (t1 + t2) & 0xffffffff
      end
      for i, v in ipairs({ a, b, c, d, e, f, g, hh }) do
         h[i] = (h[i] + v) & 0xffffffff
      end
   end
   return string.format(("%08x"):rep(8), table.unpack(h))
end

-- }==================================================================

local function read(path)
   local f = assert(io.open(path, "rb"))
   local s = f:read("a")
   f:close()
   return s
end

-- Rows of expected.txt: {key, file, salt}.
local function vectors()
   local rows = {}
   for line in read(FIXTURES .. "expected.txt"):gmatch("[^\n]+") do
      if not line:match("^#") then
         local key, file, salt = line:match("^(%x+)%s+(%S+)%s*(%S*)$")
         rows[#rows + 1] = { key = key, file = file, salt = salt }
      end
   end
   return rows
end

TestKey = {}

function TestKey:setUp()
   self.saved = hash.sha256
   if not hash.sha256 then hash.sha256 = lua_sha256 end
end

function TestKey:tearDown()
   hash.sha256 = self.saved
end

function TestKey:test_sha256_in_use_is_right()
   lu.assertEquals(hash.sha256("abc"), "ba7816bf8f01cfea414140de5dae2223"
      .. "b00361a396177a9cb410ff61f20015ad")
   lu.assertEquals(lua_sha256(("a"):rep(1000)), hash.sha256(("a"):rep(1000)))
end

function TestKey:test_every_vector_of_the_original_tool()
   local rows = vectors()
   lu.assertTrue(#rows >= 14)
   for _, row in ipairs(rows) do
      local text = read(FIXTURES .. row.file)
      local key, full = cf.key(text, row.salt)
      lu.assertEquals(key, row.key, row.file .. " salt=" .. row.salt)
      lu.assertEquals(full:sub(1, 16), key)
      lu.assertStrMatches(full, ("%x"):rep(64))
   end
end

function TestKey:test_salted_rows_differ_from_unsalted()
   local text = read(FIXTURES .. "lf.Containerfile")
   lu.assertNotEquals(cf.key(text, "abc123"), cf.key(text))
   lu.assertEquals(cf.key(text, ""), cf.key(text))
end

function TestKey:test_python_strip_set()
   local base = cf.key("RUN x")
   lu.assertEquals(base, "af713cb29ab184e5")
   lu.assertEquals(cf.key("\x1cRUN x\x1f"), base)         -- \x1c-\x1f strip
   lu.assertEquals(cf.key("\xe3\x80\x80RUN x\xe2\x80\xa9"), base)
   lu.assertEquals(cf.key("\xc2\x85\x0b\x0cRUN x\xe1\x9a\x80"), base)
   lu.assertEquals(cf.key("\xe2\x80\x8bRUN x"), "9bc3c88aebb52834")
   lu.assertEquals(cf.key("\xef\xbb\xbfRUN x"), "15a0d454a774ddfd")
end

function TestKey:test_inner_whitespace_and_newlines()
   lu.assertEquals(cf.key("RUN a\r\nRUN b"), cf.key("RUN a\nRUN b"))
   lu.assertEquals(cf.key("RUN a\rRUN b"), cf.key("RUN a\nRUN b"))
   lu.assertNotEquals(cf.key("RUN a\n\nRUN b"), cf.key("RUN a\nRUN b"))
   lu.assertNotEquals(cf.key("RUN  a"), cf.key("RUN a"))
end

function TestKey:test_extras_appended_as_salt()
   local key, full = cf.key("RUN x\n", "arg:A=1\nsalt:s")
   lu.assertEquals(full, "c097784c165c98fd0f1ba4acdc07b230"
      .. "145caabd538afda5d90510943385d7ac")
   lu.assertEquals(key, "c097784c165c98fd")
end

function TestKey:test_invalid_utf8_is_refused()
   for _, bad in ipairs({ "RUN \xff", "\xc0\xaf", "\xed\xa0\x80",
                          "RUN \xe2\x82" }) do
      local key, err = cf.key(bad)
      lu.assertNil(key)
      lu.assertEquals(err, "not valid UTF-8")
   end
end

TestExtras = {}

function TestExtras:test_no_inputs()
   lu.assertEquals(cf.extras({}), "")
   lu.assertEquals(cf.extras(), "")
   lu.assertEquals(cf.extras({ salt = "" }), "")
   lu.assertEquals(cf.extras({ args = {}, copies = {}, refs = {} }), "")
end

function TestExtras:test_salt_alone_is_the_original_form()
   lu.assertEquals(cf.extras({ salt = "abc123" }), "abc123")
end

function TestExtras:test_sorted_lines()
   lu.assertEquals(cf.extras({ args = { B = "2", A = "1" } }),
      "arg:A=1\narg:B=2")
   lu.assertEquals(cf.extras({
      salt = "s",
      refs = { ["github:o/r@main"] = "c0ffee" },
      copies = { ["files/b.txt"] = "bb", ["files/a.txt"] = "aa" },
      args = { VERSION = "2" },
   }), "arg:VERSION=2\ncopy:files/a.txt=aa\ncopy:files/b.txt=bb\n"
      .. "ref:github:o/r@main=c0ffee\nsalt:s")
end

function TestExtras:test_byte_order_not_locale_order()
   lu.assertEquals(cf.extras({ args = { a = "1", B = "2", ["\xc3\xa9"] = "3",
      _ = "4" } }), "arg:B=2\narg:_=4\narg:a=1\narg:\xc3\xa9=3")
end

function TestExtras:test_extras_change_the_key()
   local saved = hash.sha256
   hash.sha256 = hash.sha256 or lua_sha256
   local text = "ENV PYVER=3.12\nRUN x\n"
   local k1 = cf.key(text, cf.extras({ args = { PYVER = "3.12" } }))
   local k2 = cf.key(text, cf.extras({ args = { PYVER = "3.13" } }))
   local k3 = cf.key(text, cf.extras({ args = { PYVER = "3.12" } }))
   hash.sha256 = saved
   lu.assertNotEquals(k1, k2)
   lu.assertEquals(k1, k3)
end
