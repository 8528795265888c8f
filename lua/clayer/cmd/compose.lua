--- clayer compose FILE... | --manifest FILE: restore or build several
-- named layers in order.
local compose = require "clayer.compose"
local fs = require "clayer.fs"
local log = require "clayer.log"
local policy_mod = require "clayer.policy"

local M = {}

-- The layers the command line names: FILEs (a .lua FILE is a manifest),
-- --name NAME:PATH, or --manifest FILE, or ./layers.lua.
local function specs_of(p)
   local specs, names = {}, {}
   for _, item in ipairs(p.opts.names or {}) do
      local n, path = item:match("^([^:]+):(.+)$")
      if not n then return nil, "compose: --name takes NAME:PATH" end
      names[path] = n
   end
   local manifest = p.opts.manifest
   if not manifest and #p.args == 1 and p.args[1]:match("%.lua$") then
      manifest = p.args[1]
   end
   if not manifest and #p.args == 0 then
      if fs.exists("layers.lua") then manifest = "layers.lua" end
   end
   if manifest then
      return compose.load_manifest(manifest)
   end
   if #p.args == 0 then
      return nil, "compose needs FILE... or a layers.lua manifest"
   end
   for _, f in ipairs(p.args) do
      if not fs.exists(f) then
         return nil, f .. ": No such file or directory"
      end
      specs[#specs + 1] = { file = f, name = names[f] }
      names[f] = nil
   end
   local stray = next(names)
   if stray then
      return nil, "compose: --name names " .. stray .. ", which is not listed"
   end
   return specs
end

function M.run(p, cli)
   local specs, mcache = specs_of(p)
   if not specs then return nil, mcache, "usage" end
   local args = {}
   for _, kv in ipairs(p.opts["build-arg"]) do
      local k, v = kv:match("^([^=]+)=(.*)$")
      if not k then return nil, "--build-arg needs K=V: " .. kv, "usage" end
      args[k] = v
   end
   local pol, perr = policy_mod.load(p.opts.policy,
      specs[1].file:match("^(.*)/") or ".")
   if not pol then return nil, perr, "usage" end
   local layers, err, code = compose.layers(specs, {
      cache = cli.cache_uri(p.opts) or mcache, salt = p.opts.salt,
      build_args = args, root = p.opts.root, policy = pol,
      no_build = p.opts["no-build"],
      no_push = p.opts["no-push"] or p.opts["no-cache"],
      cache_opts = cli.cache_opts(p),
   })
   if not layers then return nil, err, code end
   local res, rerr, rres = compose.run(layers)
   local out = res or rres
   if p.opts.json then
      local obj = cli.summary("compose", res ~= nil, out.layers, rerr,
         out.code)
      obj.shadowed = require("clayer.json").array(out.shadowed or {})
      cli.print_json(obj)
   end
   if out.shadowed and #out.shadowed > 0 then
      local first = out.shadowed[1]
      log.info("%d file(s) come from more than one layer; the later layer "
         .. "wins (e.g. %s: %s over %s)", #out.shadowed, first.path,
         first.winner, first.layers[1])
   end
   if not res then return nil, rerr, out.code end
   local counts = {}
   for _, r in ipairs(out.layers) do
      counts[#counts + 1] = ("%s %s"):format(r.name, r.action)
   end
   log.info("composed %d layers: %s", #out.layers, table.concat(counts, ", "))
   return cli.EXIT.OK
end

return M
