--- The clayer-lua host: lua(1)-style options and the embedded scripts.
local lu = require "luaunit"
local h = require "helper"

TestHost = {}

function TestHost:tearDown()
   h.cleanup()
end

function TestHost:test_e_runs_a_statement()
   local out, code = h.sh(h.q(h.bin) .. " -e 'print(1 + 1)'")
   lu.assertEquals(code, 0)
   lu.assertEquals(out, "2\n")
end

function TestHost:test_script_gets_args()
   local dir = h.tmpdir()
   h.write(dir .. "/s.lua", "print(arg[0] ~= nil, #arg, ...)")
   local out = h.sh(h.q(h.bin) .. " " .. dir .. "/s.lua a b")
   lu.assertEquals(out, "true\t2\ta\tb\n")
end

function TestHost:test_stdin_script()
   local out = h.sh("echo 'print(\"from stdin\")' | " .. h.q(h.bin) .. " -")
   lu.assertEquals(out, "from stdin\n")
end

function TestHost:test_error_reports_and_exits_1()
   local out, code = h.sh(h.q(h.bin) .. " -e 'error(\"boom\")'")
   lu.assertEquals(code, 1)
   lu.assertStrContains(out, "clayer-lua: ")
   lu.assertStrContains(out, "boom")
end

function TestHost:test_l_requires_module()
   local out = h.sh(h.q(h.bin) .. " -l clayer -e 'print(clayer.version)'")
   lu.assertStrMatches(out, "%d+%.%d+%.%d+\n")
end

function TestHost:test_override_folder_wins()
   local dir = h.tmpdir()
   os.execute("mkdir -p " .. dir .. "/clayer && chmod 755 " .. dir)
   h.write(dir .. "/clayer/init.lua", "return { version = 'overridden' }")
   local out = h.sh("CLAYER_LUA_PATH=" .. dir .. " " .. h.q(h.bin)
      .. " -e 'print(require(\"clayer\").version)'")
   lu.assertEquals(out, "overridden\n")
end

function TestHost:test_world_writable_override_is_ignored()
   local dir = h.tmpdir()
   os.execute("mkdir -p " .. dir .. "/clayer && chmod 777 " .. dir)
   h.write(dir .. "/clayer/init.lua", "return { version = 'overridden' }")
   local out = h.sh("CLAYER_LUA_PATH=" .. dir .. " " .. h.q(h.bin)
      .. " -e 'print(require(\"clayer\").version)'")
   lu.assertStrContains(out, "warning: ignoring Lua override folder")
   lu.assertNotStrContains(out, "overridden")
end

function TestHost:test_c_modules_preloaded()
   local out = h.sh(h.q(h.bin) .. " -e 'for _, m in ipairs{\"hash\",\"fs\","
      .. "\"proc\",\"tar\",\"http\",\"json\"} do "
      .. "io.write(type(require(\"clayer.\" .. m)), \" \") end'")
   lu.assertEquals(out, string.rep("table ", 6))
end

function TestHost:test_world_writable_file_in_override_is_ignored()
   local dir = h.tmpdir()
   os.execute("mkdir -p " .. dir .. "/clayer && chmod 755 " .. dir
      .. " && chmod 777 " .. dir .. "/clayer")
   h.write(dir .. "/clayer/init.lua", "return { version = 'overridden' }")
   local out = h.sh("CLAYER_LUA_PATH=" .. dir .. " " .. h.q(h.bin)
      .. " -e 'print(require(\"clayer\").version)'")
   lu.assertStrContains(out, "writable by others")
   lu.assertNotStrContains(out, "overridden")
   os.execute("chmod 755 " .. dir .. "/clayer && chmod 666 " .. dir
      .. "/clayer/init.lua")
   out = h.sh("CLAYER_LUA_PATH=" .. dir .. " " .. h.q(h.bin)
      .. " -e 'print(require(\"clayer\").version)'")
   lu.assertNotStrContains(out, "overridden")
end
