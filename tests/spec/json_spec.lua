--- clayer.json: encode/decode through jansson, null and array marks.
local lu = require "luaunit"
local json = require "clayer.json"

TestJson = {}

function TestJson:test_keys_sorted_compact()
   lu.assertEquals(json.encode({b = 1, a = 2, c = {z = true, y = false}}),
      '{"a":2,"b":1,"c":{"y":false,"z":true}}')
end

function TestJson:test_pretty_indents_by_two()
   lu.assertEquals(json.encode({b = {1, 2}, a = "x"}, {pretty = true}),
      '{\n  "a": "x",\n  "b": [\n    1,\n    2\n  ]\n}')
end

function TestJson:test_scalars()
   lu.assertEquals(json.encode(true), "true")
   lu.assertEquals(json.encode(nil), "null")
   lu.assertEquals(json.encode(json.null), "null")
   lu.assertEquals(json.encode("a\"b\n"), '"a\\"b\\n"')
   lu.assertEquals(json.decode("42"), 42)
   lu.assertEquals(json.decode('"x"'), "x")
   lu.assertEquals(json.decode("false"), false)
end

function TestJson:test_integers_and_floats()
   lu.assertEquals(json.encode({1, 2.5, 3.0, -7}), "[1,2.5,3.0,-7]")
   lu.assertEquals(json.encode(0.1), "0.1")
   local v = json.decode("[1, 1.0, -3, 1e2, 9007199254740993]")
   lu.assertEquals(math.type(v[1]), "integer")
   lu.assertEquals(math.type(v[2]), "float")
   lu.assertEquals(math.type(v[3]), "integer")
   lu.assertEquals(math.type(v[4]), "float")
   lu.assertEquals(v[5], 9007199254740993)
   lu.assertEquals(math.type(v[5]), "integer")
   lu.assertEquals(json.decode(json.encode(math.maxinteger)), math.maxinteger)
   for _, f in ipairs({0.1, 1 / 3, math.pi, 1e300, 5e-324, -2.5e-7}) do
      lu.assertEquals(json.decode(json.encode(f)), f)
   end
end

function TestJson:test_null_sentinel()
   lu.assertEquals(type(json.null), "userdata")
   local v = json.decode('{"a":null,"b":[null,1]}')
   lu.assertIs(v.a, json.null)
   lu.assertIs(v.b[1], json.null)
   lu.assertEquals(json.encode(v), '{"a":null,"b":[null,1]}')
end

function TestJson:test_empty_array_vs_object()
   lu.assertEquals(json.encode({}), "{}")
   lu.assertEquals(json.encode(json.array({})), "[]")
   lu.assertEquals(json.encode({a = {}, b = json.array({})}),
      '{"a":{},"b":[]}')
   local v = json.decode('{"a":[],"o":{}}')
   lu.assertTrue(json.is_array(v.a))
   lu.assertFalse(json.is_array(v.o))
   lu.assertFalse(json.is_array(v))
   lu.assertEquals(json.encode(v), '{"a":[],"o":{}}')
end

function TestJson:test_array_mark()
   local t = {}
   lu.assertIs(json.array(t), t)
   lu.assertTrue(json.is_array(t))
   lu.assertFalse(json.is_array({}))
   lu.assertFalse(json.is_array("x"))
   lu.assertError(json.array, setmetatable({}, {}))
end

function TestJson:test_nested_unicode_round_trip()
   local v = {
      name = "héllo wörld ✓ 😀",
      nested = {list = {1, {deep = {"x", "y"}}, "z"}, n = -0.5},
      esc = "tab\tquote\"back\\slash\1",
   }
   local s = json.encode(v)
   lu.assertEquals(json.decode(s), v)
   lu.assertStrContains(s, "héllo wörld ✓ 😀")   -- not \u-escaped
   lu.assertEquals(json.decode('"\\u00e9\\ud83d\\ude00"'), "é😀")
   lu.assertEquals(json.decode(json.encode("a\0b")), "a\0b")
end

function TestJson:test_decode_error_has_line_and_col()
   local v, err = json.decode('{\n  "a": 1,\n  "b": tru\n}')
   lu.assertNil(v)
   lu.assertStrMatches(err, "json: line 3 col %d+: .+")
   v, err = json.decode('{"a":1')
   lu.assertNil(v)
   lu.assertStrMatches(err, "json: line 1 col %d+: .+")
   v, err = json.decode("")
   lu.assertNil(v)
   lu.assertStrContains(err, "json: line ")
   lu.assertNil((json.decode("[1,]")))
end

function TestJson:test_decode_too_deep_fails_cleanly()
   local v, err = json.decode(("["):rep(100000) .. ("]"):rep(100000))
   lu.assertNil(v)
   lu.assertStrContains(err, "depth")
end

function TestJson:test_encode_raises_on_bad_values()
   lu.assertErrorMsgContains("function", json.encode, {f = print})
   lu.assertErrorMsgContains("function", json.encode, print)
   lu.assertErrorMsgContains("NaN", json.encode, {0 / 0})
   lu.assertErrorMsgContains("infinite", json.encode, math.huge)
   lu.assertErrorMsgContains("mixed", json.encode, {1, 2, x = 3})
   lu.assertErrorMsgContains("sparse", json.encode, {1, nil, 3})
   lu.assertErrorMsgContains("keys", json.encode, {[true] = 1})
   lu.assertErrorMsgContains("UTF-8", json.encode, "\xff")
   local t = {}
   t.self = t
   lu.assertErrorMsgContains("cycle", json.encode, t)
end

function TestJson:test_shared_subtable_is_not_a_cycle()
   local shared = {1}
   lu.assertEquals(json.encode({a = shared, b = shared}),
      '{"a":[1],"b":[1]}')
end

function TestJson:test_encode_depth_limit()
   local deep = {}
   local cur = deep
   for _ = 1, 5000 do
      cur[1] = {}
      cur = cur[1]
   end
   lu.assertErrorMsgContains("nesting", json.encode, deep)
end

function TestJson:test_misuse_raises()
   lu.assertError(json.decode, nil)
   lu.assertError(json.encode)
   lu.assertError(json.encode, {}, {pretty = "yes"})
   lu.assertErrorMsgContains("unknown option", json.encode, {}, {indent = 2})
end
