--- clayer prune [--keep N] [--name N] [--dry-run] [--json]: apply the
-- retention policy (DESIGN §8) to a cache.
local cache = require "clayer.cache"
local json = require "clayer.json"
local log = require "clayer.log"
local policy_mod = require "clayer.policy"
local retention = require "clayer.retention"
local state = require "clayer.state"

local M = {}

--- Open the cache the command line names (shared with `ls`).
-- @return backend, policy; or nil, err, code
function M.open(p, cli)
   local pol, perr = policy_mod.load(p.opts.policy)
   if not pol then return nil, perr, "usage" end
   local uri = cli.cache_uri(p.opts) or os.getenv("CLAYER_CACHE")
   if uri == "" then uri = nil end
   uri = uri or pol.cache or cache.default_uri()
   local o = cli.cache_opts(p)
   o.policy = pol
   local c, err = cache.open(uri, o)
   if not c then return nil, err, "cache" end
   return c, pol
end

function M.run(p, cli)
   if #p.args > 0 then
      return nil, "usage: clayer prune [--keep N] [--name NAME] [--dry-run] "
         .. "[--json]", "usage"
   end
   local keep
   if p.opts.keep ~= nil then
      keep = math.tointeger(tonumber(p.opts.keep))
      if not keep or keep < 0 then
         return nil, "--keep needs a whole number >= 0: " .. p.opts.keep,
            "usage"
      end
   end
   local c, pol, code = M.open(p, cli)
   if not c then return nil, pol, code end
   local protect = {}
   local st = state.load(state.dir(cli.root_of(p)))
   for _, l in ipairs(st.layers or {}) do
      if type(l.tag) == "string" then protect[l.tag] = true end
   end
   local res, err = retention.prune(c, { keep = keep, name = p.opts.name,
      dry_run = p.opts["dry-run"], protect = protect, policy = pol })
   if not res then
      if p.opts.json then
         cli.print_json({ command = "prune", ok = false, cache = c.uri,
            error = err, warnings = json.array(log.warnings) })
      end
      return nil, err, "cache"
   end
   local ok = #res.failed == 0
   if p.opts.json then
      cli.print_json({ command = "prune", ok = ok, cache = c.uri,
         dry_run = res.dry_run, deleted = json.array(res.deleted),
         kept = json.array(res.kept), drafts = json.array(res.drafts),
         failed = json.array(res.failed),
         immutable = res.immutable or false,
         warnings = json.array(log.warnings),
         error = ok and json.null or "some entries could not be deleted" })
   else
      local verb = res.dry_run and "would delete" or "deleted"
      for _, tag in ipairs(res.deleted) do
         io.stdout:write(verb, " ", tag, "\n")
      end
      for _, tag in ipairs(res.drafts) do
         io.stdout:write(verb, " ", tag, " (abandoned draft)\n")
      end
      log.info("%s: %s %d, kept %d", c.uri, verb, #res.deleted, #res.kept)
   end
   if not ok then
      return nil, ("%s: %d entries could not be deleted"):format(c.uri,
         #res.failed), "cache"
   end
   return cli.EXIT.OK
end

return M
