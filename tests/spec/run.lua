--- Runs every tests/spec/*_spec.lua under LuaUnit in this clayer-lua.
-- SPEC=pattern (a Lua pattern) keeps only the spec files it matches.
package.path = "tests/spec/?.lua;" .. package.path
local lu = require "luaunit"

local pattern = os.getenv("SPEC")
local files = {}
local ls = assert(io.popen("ls tests/spec"))
for name in ls:lines() do
   if name:match("_spec%.lua$") and (not pattern or name:match(pattern)) then
      files[#files + 1] = name
   end
end
ls:close()

for _, name in ipairs(files) do
   dofile("tests/spec/" .. name)
end

local runner = lu.LuaUnit.new()
runner:setOutputType("text")
runner:runSuite("--verbose")
local r = runner.result
print(string.format("specs: %d passed, %d failed, %d skipped",
   r.successCount, r.notSuccessCount, r.skippedCount))
os.exit(r.notSuccessCount == 0 and 0 or 1)
