--- Retention (DESIGN §8): which cache entries to delete, and deleting
-- them.  Entries group by layer name exactly (layer-<name>-<16 hex>);
-- unnamed layer-<16 hex> entries form one group; the newest `keep` of
-- each group stay, and so do protected tags and entries younger than
-- `min_age`.  Tags of any other shape are never touched.
local log = require "clayer.log"
local proc = require "clayer.proc"

local M = {}

M.KEEP, M.MIN_AGE = 3, 600

local UNNAMED = "\0unnamed"

--- The name and key of a layer tag: name (nil for layer-<key>), key; or
-- nothing when `tag` is no layer tag.
function M.parse(tag)
   if type(tag) ~= "string" then return nil end
   local key = tag:match("^layer%-(%x+)$")
   if key and #key == 16 and key == key:lower() then return nil, key end
   local name
   name, key = tag:match("^layer%-([%w_.-]+)%-(%x+)$")
   if name and #key == 16 and key == key:lower() then return name, key end
   return nil
end

local function group_of(tag)
   local name, key = M.parse(tag)
   if not key then return nil end
   return name or UNNAMED
end

local function now_ns()
   return math.floor(proc.time() * 1e9)
end

-- The options of select and reasons with their defaults.
local function settings(opts)
   local keep = math.tointeger(opts.keep) or M.KEEP
   return { keep = keep < 0 and 0 or keep,
      min_age = tonumber(opts.min_age) or M.MIN_AGE,
      now = opts.now or now_ns(), protect = opts.protect or {} }
end

-- Call visit(e, i, n, group, wanted, age) for each entry: i its index in
-- entries, n its rank in its group (by name), newest first, wanted
-- whether the group is one opts asks for, age in seconds.
local function each_ranked(entries, opts, o, visit)
   local groups = {}
   for i, e in ipairs(entries) do
      local g = type(e) == "table" and group_of(e.tag)
      if g then
         groups[g] = groups[g] or {}
         table.insert(groups[g], { e = e, i = i })
      end
   end
   for g, list in pairs(groups) do
      table.sort(list, function(a, b)
         local ta, tb = a.e.created_at or 0, b.e.created_at or 0
         if ta ~= tb then return ta > tb end
         return a.e.tag > b.e.tag
      end)
      local wanted = (opts.name == nil and not opts.unnamed)
         or (opts.name ~= nil and g == opts.name)
         or (opts.name == nil and opts.unnamed and g == UNNAMED)
      for n, it in ipairs(list) do
         visit(it.e, it.i, n, g, wanted,
            (o.now - (it.e.created_at or o.now)) / 1e9)
      end
   end
end

--- The entries to delete.
-- @param entries array of {tag, created_at (ns), size}
-- @param opts keep (default 3), name (only that group), unnamed (only
--   the unnamed group), min_age (seconds, default 600), now (ns),
--   protect ({[tag] = true})
-- @return array of entries (a subset of `entries`, in their order)
function M.select(entries, opts)
   opts = opts or {}
   local o = settings(opts)
   local doomed = {}
   each_ranked(entries, opts, o, function(e, i, n, _, wanted, age)
      if wanted and n > o.keep and not o.protect[e.tag]
         and age >= o.min_age then
         doomed[#doomed + 1] = { e = e, i = i }
      end
   end)
   table.sort(doomed, function(a, b) return a.i < b.i end)
   local out = {}
   for k, it in ipairs(doomed) do out[k] = it.e end
   return out
end

--- Why select keeps each entry it keeps: {[tag] = {code, text}}, code
-- one of "name" (not in the group asked for), "protected" (applied here,
-- or just published), "keep" (among the newest `keep` of its name),
-- "young" (younger than min_age), "policy" (select would delete it, but
-- the policy's retention function did not choose it).  The first that
-- applies, in that order.
-- @param entries, opts as select
function M.reasons(entries, opts)
   opts = opts or {}
   local o = settings(opts)
   local out = {}
   each_ranked(entries, opts, o, function(e, _, n, g, wanted, age)
      local label = g == UNNAMED and "the unnamed layers" or "'" .. g .. "'"
      local r
      if not wanted then
         r = { "name", opts.name and ("another name than --name %s")
            :format(opts.name) or "a named layer (only unnamed ones "
            .. "are pruned here)" }
      elseif o.protect[e.tag] then
         r = { "protected", "applied on this machine (or just "
            .. "published): never pruned" }
      elseif n <= o.keep then
         r = { "keep", ("among the newest %d of %s (keep %d)")
            :format(o.keep, label, o.keep) }
      elseif age < o.min_age then
         r = { "young", ("younger than the minimum age, %s (%s old)")
            :format(M.duration(o.min_age), M.duration(age)) }
      else
         r = { "policy", "not chosen by the policy's retention function" }
      end
      out[e.tag] = { code = r[1], text = r[2] }
   end)
   return out
end

--- A duration for a message: "45 s", "10 min", "3 h", "2 d".
function M.duration(seconds)
   seconds = math.max(0, math.floor(seconds))
   if seconds < 120 then return seconds .. " s" end
   if seconds < 7200 then return seconds // 60 .. " min" end
   if seconds < 172800 then return seconds // 3600 .. " h" end
   return seconds // 86400 .. " d"
end

--- Apply retention to a backend.
-- @param opts as select, plus dry_run, policy (its `retention`
--   function, when set, chooses instead of select; it gets (entries,
--   opts) and the default last), prefix (default "layer-")
-- @return {deleted = {tags}, kept = {tags}, failed = {{tag, err}},
--   dry_run, immutable, drafts = {tags}, reasons = {[tag] = {code,
--   text}} for each kept tag (see M.reasons; also "immutable" and
--   "failed")}, or nil, err
function M.prune(backend, opts)
   opts = opts or {}
   local policy = opts.policy or {}
   local o = {}
   for k, v in pairs(opts) do o[k] = v end
   if o.keep == nil then o.keep = policy.keep end
   if o.min_age == nil then o.min_age = policy.min_age end
   o.now = o.now or now_ns()
   o.protect = o.protect or {}
   local entries, err = backend:list(o.prefix or "layer-")
   if not entries then return nil, err end
   local chosen
   if type(policy.retention) == "function" then
      chosen = policy.retention(entries, o, M.select)
   else
      chosen = M.select(entries, o)
   end
   if type(chosen) ~= "table" then
      return nil, "policy.retention must return a list of entries"
   end
   -- only listed layer entries, never protected or young ones
   local by_tag = {}
   for _, e in ipairs(entries) do by_tag[e.tag] = e end
   local doomed, set = {}, {}
   local min_age = tonumber(o.min_age) or M.MIN_AGE
   for _, c in ipairs(chosen) do
      local tag = type(c) == "table" and c.tag or c
      local e = by_tag[tag]
      if e and not set[tag] and group_of(tag) and not o.protect[tag]
         and (o.now - (e.created_at or o.now)) / 1e9 >= min_age then
         set[tag] = true
         doomed[#doomed + 1] = tag
      end
   end
   local result = { deleted = {}, kept = {}, failed = {}, drafts = {},
      dry_run = o.dry_run and true or false }
   local immutable = false
   for _, e in ipairs(entries) do
      if e.immutable then immutable = true end
   end
   if immutable and #doomed > 0 then
      log.warn(("%s has immutable releases: pruning deletes nothing, since "
         .. "GitHub reserves a deleted immutable release's tag forever and "
         .. "that layer could never be published again (%d entries left "
         .. "over the retention policy)"):format(backend.uri, #doomed))
      result.immutable = true
      result.would_delete = doomed
      doomed, set = {}, {}
   end
   for _, tag in ipairs(doomed) do
      if o.dry_run then
         result.deleted[#result.deleted + 1] = tag
      else
         local ok, derr = backend:delete(tag)
         if ok then
            result.deleted[#result.deleted + 1] = tag
         else
            set[tag] = nil
            result.failed[#result.failed + 1] = { tag = tag, error = derr }
            log.warn(("could not delete %s: %s"):format(tag, tostring(derr)))
         end
      end
   end
   local why = M.reasons(entries, o)
   local failed = {}
   for _, f in ipairs(result.failed) do failed[f.tag] = f.error end
   local held = {}
   for _, tag in ipairs(result.would_delete or {}) do held[tag] = true end
   result.reasons = {}
   for _, e in ipairs(entries) do
      if group_of(e.tag) and not set[e.tag] then
         result.kept[#result.kept + 1] = e.tag
         local r = why[e.tag] or { code = "policy", text = "not chosen" }
         if failed[e.tag] then
            r = { code = "failed", text = "could not be deleted: "
               .. tostring(failed[e.tag]) }
         elseif held[e.tag] then
            r = { code = "immutable", text = "the repository has immutable "
               .. "releases: nothing is deleted" }
         end
         result.reasons[e.tag] = r
      end
   end
   -- drafts that killed publishers left behind
   if backend.stale_drafts and not immutable then
      local drafts = backend:stale_drafts(o.prefix or "layer-") or {}
      for _, d in ipairs(drafts) do
         if o.dry_run or backend:delete_draft(d) then
            result.drafts[#result.drafts + 1] = d.tag
         end
      end
   end
   return result
end

return M
