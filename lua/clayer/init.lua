--- clayer's public Lua API, for boot scripts:
--
--   local clayer = require "clayer"
--   local base = assert(clayer.layer { file = "Containerfile",
--                                      cache = "dir:/mnt/cache" })
--   assert(base:restore_or_build())
--
-- A layer's methods return a report on success, and nil, err, report on
-- failure.
local layer = require "clayer.layer"
local policy = require "clayer.policy"

local M = {}

M.version = require("clayer.embedded").version
M.policy = policy

--- A layer from a table: file (required), name, cache, salt, build_args,
-- root, policy_file, no_build, no_push.
-- @return layer, or nil, err
function M.layer(opts)
   local l, err = layer.new(opts)
   if not l then return nil, err end
   return l
end

--- Restore-or-build several Containerfiles in order, later layers winning.
-- opts: the files as an array, plus the options of M.layer for all of
-- them; names default to the files' default names.
-- @return {layers = {reports}}, or nil, err, {layers = {reports}}
function M.compose(opts)
   assert(type(opts) == "table" and #opts > 0,
      "compose{ FILE, ... } expected")
   local reports, seen = {}, {}
   for _, file in ipairs(opts) do
      local o = {}
      for k, v in pairs(opts) do
         if type(k) == "string" then o[k] = v end
      end
      o.file = file
      o.name = layer.default_name(file)
      if seen[o.name] then
         return nil, ("two layers named '%s': %s and %s"):format(o.name,
            seen[o.name], file), { layers = reports }
      end
      seen[o.name] = file
      local l, err = layer.new(o)
      if not l then return nil, err, { layers = reports } end
      local r, rerr, rr = l:restore_or_build()
      reports[#reports + 1] = r or rr
      if not r then
         return nil, ("layer %s: %s"):format(o.name, rerr), { layers = reports }
      end
   end
   return { layers = reports }
end

return M
