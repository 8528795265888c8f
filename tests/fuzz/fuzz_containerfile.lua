--- Fuzz driver: the Containerfile parser, word expansion and the key.
-- check(data) raises when containerfile.lua raises, or fails other than
-- by its documented `nil, message` returns.
local cf = require "clayer.containerfile"

local M = {}

local VARS = { A = "x", B = "", HOME = "/root", ["a_1"] = "y z" }

function M.setup() end
function M.teardown() end

local function call(what, f, ...)
   local ok, a, b, c = pcall(f, ...)
   if not ok then error(what .. " raised: " .. tostring(a), 0) end
   return a, b, c
end

-- expand(raw) gives a string, or nil, message, offset.
local function expand(raw, escape)
   local v, err, pos = call("expand", cf.expand, raw, VARS, escape)
   if v == nil then
      if type(err) ~= "string" or math.type(pos) ~= "integer" then
         error(("expand: undocumented failure: %s, %s"):format(tostring(err),
            tostring(pos)), 0)
      end
   elseif type(v) ~= "string" then
      error("expand returned a " .. type(v), 0)
   end
end

-- Every string a parsed instruction holds that build.lua expands.
local function words(ins)
   local out = {}
   for _, a in ipairs(ins.args or {}) do out[#out + 1] = a end
   for _, k in ipairs { "path", "dest", "default" } do
      if type(ins[k]) == "string" then out[#out + 1] = ins[k] end
   end
   for _, s in ipairs(ins.srcs or {}) do out[#out + 1] = s end
   for _, p in ipairs(ins.pairs or {}) do out[#out + 1] = p[2] end
   for _, v in pairs(ins.flags or {}) do
      if type(v) == "string" then out[#out + 1] = v end
   end
   return out
end

--- Parse, expand and key `data`; raises on a violation.
function M.check(data)
   for _, unknown in ipairs { "error", "warn" } do
      local doc, err = call("parse", cf.parse, data, "Containerfile",
         { unknown = unknown })
      if doc == nil then
         if type(err) ~= "string" or err == "" then
            error("parse: nil without a message", 0)
         end
      else
         if type(doc.instructions) ~= "table" then
            error("parse: no instruction list", 0)
         end
         for _, ins in ipairs(doc.instructions) do
            if type(ins.op) ~= "string" or math.type(ins.line) ~= "integer"
            then
               error("parse: an instruction without op or line", 0)
            end
            for _, w in ipairs(words(ins)) do expand(w, doc.escape) end
         end
      end
   end
   expand(data, "\\")
   expand(data, "`")
   local key, full = call("key", cf.key, data, "salt")
   if key ~= nil and not (type(key) == "string" and #key == 16
      and type(full) == "string" and #full == 64) then
      error("key: bad result", 0)
   elseif key == nil and type(full) ~= "string" then
      error("key: nil without a message", 0)
   end
end

return M
