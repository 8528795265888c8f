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
   -- a URI that cannot name a cache is bad usage, as for build (exit 2)
   local c, err = cache.open(uri, o)
   if not c then return nil, err, "usage" end
   return c, pol
end

-- Short words for each reason, for the summary line.
local SHORT = {
   keep = "among the newest %d per name",
   young = "younger than %s (min_age)",
   protected = "applied here",
   name = "of other names",
   policy = "not chosen by the policy",
   immutable = "immutable releases",
   failed = "could not be deleted",
}

--- " (2 among the newest 1 per name, 3 younger than 10 min (min_age))":
-- how many entries were kept for each reason, or "" when none were.
function M.why_kept(res, pol, keep)
   local counts, order = {}, {}
   for _, tag in ipairs(res.kept) do
      local code = res.reasons and res.reasons[tag] and res.reasons[tag].code
      if code then
         if not counts[code] then order[#order + 1] = code end
         counts[code] = (counts[code] or 0) + 1
      end
   end
   if #order == 0 then return "" end
   local rank = { protected = 1, keep = 2, young = 3, name = 4, policy = 5,
      immutable = 6, failed = 7 }
   table.sort(order, function(a, b) return rank[a] < rank[b] end)
   local parts = {}
   for _, code in ipairs(order) do
      local fmt = SHORT[code] or code
      local what
      if code == "keep" then
         what = fmt:format(keep or pol.keep or retention.KEEP)
      elseif code == "young" then
         what = fmt:format(retention.duration(tonumber(pol.min_age)
            or retention.MIN_AGE))
      else
         what = fmt
      end
      parts[#parts + 1] = ("%d %s"):format(counts[code], what)
   end
   return " (" .. table.concat(parts, ", ") .. ")"
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
            error = log.redact(err), code = "cache",
            warnings = json.array(log.warnings) })
      end
      return nil, err, "cache"
   end
   local ok = #res.failed == 0
   local codes = {}
   for tag, r in pairs(res.reasons or {}) do codes[tag] = r.code end
   if p.opts.json then
      cli.print_json({ command = "prune", ok = ok, cache = c.uri,
         dry_run = res.dry_run, deleted = json.array(res.deleted),
         kept = json.array(res.kept), kept_reasons = codes,
         drafts = json.array(res.drafts),
         failed = json.array(res.failed),
         immutable = res.immutable or false,
         warnings = json.array(log.warnings),
         error = ok and json.null or "some entries could not be deleted",
         code = not ok and "cache" or nil })
   else
      local verb = res.dry_run and "would delete" or "deleted"
      for _, tag in ipairs(res.deleted) do
         io.stdout:write(verb, " ", tag, "\n")
      end
      for _, tag in ipairs(res.drafts) do
         io.stdout:write(verb, " ", tag, " (abandoned draft)\n")
      end
      for _, tag in ipairs(res.kept) do
         local r = res.reasons and res.reasons[tag]
         if r then log.verbose("kept %s: %s", tag, r.text) end
      end
      log.info("%s: %s %d, kept %d%s", c.uri, verb, #res.deleted, #res.kept,
         M.why_kept(res, pol, keep))
   end
   if not ok then
      return nil, ("%s: %d entries could not be deleted"):format(c.uri,
         #res.failed), "cache"
   end
   return cli.EXIT.OK
end

return M
