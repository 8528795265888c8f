--- clayer's public Lua API, for boot scripts:
--
--   local clayer = require "clayer"
--   local base = assert(clayer.layer { file = "Containerfile",
--                                      cache = "dir:/mnt/cache" })
--   assert(base:restore_or_build())
--
-- A layer's methods return a report on success, and nil, err, report on
-- failure.
local compose = require "clayer.compose"
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

--- Restore-or-build several Containerfiles in order, later layers
-- winning (clayer compose).  opts: the files as an array (paths, or
-- {file = PATH, name = NAME}), plus the options of M.layer for all of them;
-- names default to the files' default names.
-- @return {layers = {reports}, shadowed = {...}}, or nil, err, result
function M.compose(opts)
   assert(type(opts) == "table" and #opts > 0,
      "compose{ FILE, ... } expected")
   local specs, shared = {}, {}
   for i, v in ipairs(opts) do
      specs[i] = type(v) == "table" and v or { file = v }
   end
   for k, v in pairs(opts) do
      if type(k) == "string" then shared[k] = v end
   end
   local layers, err = compose.layers(specs, shared)
   if not layers then return nil, err, { layers = {} } end
   return compose.run(layers)
end

return M
