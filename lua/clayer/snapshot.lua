--- What a build changed: manifests of the watched roots before and after,
-- and the change set that becomes the layer (DESIGN §6).
local fs = require "clayer.fs"
local log = require "clayer.log"

local M = {}

local Snap = {}
Snap.__index = Snap

local function under(path, top)
   return path == top or top == "/" or path:sub(1, #top + 1) == top .. "/"
end

local function has_glob(p)
   return p:find("[%*%?%[]") ~= nil
end

--- Start a snapshot: scan the watched roots.
-- @param opts root (prefix, "" for /), policy, extra (array of SNAPSHOT
--   paths), all (array of SNAPSHOT --all paths), exclude_extra (paths)
-- @return snapshot, or nil, err
function M.begin(opts)
   local policy = opts.policy
   local self = setmetatable({ root = opts.root or "" }, Snap)
   self.roots = {}
   for _, r in ipairs(policy.watch) do self.roots[#self.roots + 1] = r end
   for _, r in ipairs(opts.extra or {}) do self.roots[#self.roots + 1] = r end
   for _, r in ipairs(opts.all or {}) do self.roots[#self.roots + 1] = r end
   self.all = opts.all or {}
   self.exclude = {}
   for _, e in ipairs(policy.exclude) do self.exclude[#self.exclude + 1] = e end
   for _, e in ipairs(opts.exclude_extra or {}) do
      self.exclude[#self.exclude + 1] = e
   end
   -- excluded paths are still scanned on their own, to warn about changes
   -- a layer will not hold; pseudo filesystems never are
   self.watch_only = {}
   for _, e in ipairs(self.exclude) do
      local pseudo = false
      for _, p in ipairs(policy.pseudo) do
         if under(e, p) then pseudo = true end
      end
      if not pseudo and not has_glob(e) then
         self.watch_only[#self.watch_only + 1] = e
      end
   end
   self.allow_special = policy.allow_special
   local err
   self.before, err = self:scan()
   if not self.before then return nil, err end
   self.before_ex = fs.scan(self.watch_only, { root = self.root,
      exclude = policy.pseudo })
   return self
end

function Snap:scan()
   local t0 = os.clock()
   local m, err = fs.scan(self.roots, { root = self.root,
      exclude = self.exclude, xdev = true })
   if not m then return nil, "scan: " .. tostring(err) end
   if log.verbose_on() then
      log.verbose("scanned %d entries in %.2f s", m:count(), os.clock() - t0)
      for _, p in ipairs(m:skipped()) do
         log.verbose("not crossing into mount point %s", p)
      end
   end
   return m
end

local function topmost(paths)
   local out, last = {}, nil
   for _, p in ipairs(paths) do
      if not (last and under(p, last)) then
         out[#out + 1] = p
         last = p
      end
   end
   return out
end

-- Whether the layer holds a change at p: an added or modified entry is
-- kept itself; a deletion is covered by a whiteout of it or of a folder
-- above it.
local function in_layer(p, kind, keep, white)
   if kind ~= "deleted" then return keep[p] == true end
   local q = p
   while q and q ~= "" do
      if white[q] then return true end
      q = q:match("^(.*)/[^/]*$")
   end
   return false
end

-- Warn about changes under excluded paths that the layer does not hold
-- (a SNAPSHOT path below an excluded one is in the layer: not listed).
local function warn_excluded(self, keep, white)
   if not self.before_ex then return end
   local after = fs.scan(self.watch_only, { root = self.root,
      exclude = {} })
   if not after then return end
   local d = fs.diff(self.before_ex, after)
   local changed = {}
   for _, k in ipairs { "added", "modified", "deleted", "typechanged" } do
      for _, p in ipairs(d[k]) do
         local st = after:get(p) or self.before_ex:get(p)
         if not (st and st.type == "dir") and not in_layer(p, k, keep, white)
         then
            changed[#changed + 1] = p
         end
      end
   end
   if #changed > 0 then
      table.sort(changed)
      local first = {}
      for i = 1, math.min(3, #changed) do first[i] = changed[i] end
      log.warn(("%d change(s) under excluded paths are not in the layer: %s%s")
         :format(#changed, table.concat(first, ", "),
            #changed > 3 and ", ..." or ""))
   end
end

--- Scan again and compute the layer's entries.
-- @return {entries = {{path, whiteout=bool}...}, added, modified, deleted,
--   typechanged, files}, or nil, err
function Snap:finish()
   local after, err = self:scan()
   if not after then return nil, err end
   local d = fs.diff(self.before, after)
   local keep = {}            -- path -> true: store what is there now
   local white = {}           -- path -> true: a whiteout
   for _, p in ipairs(d.added) do keep[p] = true end
   for _, p in ipairs(d.modified) do keep[p] = true end
   for _, p in ipairs(d.typechanged) do
      keep[p] = true
      white[p] = true
   end
   for _, p in ipairs(topmost(d.deleted)) do white[p] = true end
   -- SNAPSHOT --all: everything below the path, changed or not
   for _, top in ipairs(self.all) do
      for _, p in ipairs(after:paths()) do
         if under(p, top) then keep[p] = true end
      end
   end
   -- a changed member of a hardlink group brings the whole group
   for _, group in ipairs(after:hardlinks()) do
      local any = false
      for _, p in ipairs(group) do if keep[p] then any = true end end
      if any then for _, p in ipairs(group) do keep[p] = true end end
   end
   -- a deleted folder's children need no whiteouts of their own
   local special = {}
   local list = {}
   for p in pairs(keep) do
      local st = after:get(p)
      if st and (st.type == "fifo" or st.type == "sock" or st.type == "chr"
         or st.type == "blk") and not self.allow_special then
         special[#special + 1] = p
      elseif p ~= "/" then
         list[#list + 1] = { path = p, type = st and st.type }
      end
   end
   for p in pairs(white) do
      list[#list + 1] = { path = p, whiteout = true }
   end
   -- sorted by path; a whiteout goes right before a new entry at its path
   table.sort(list, function(a, b)
      if a.path ~= b.path then return a.path < b.path end
      return a.whiteout and not b.whiteout
   end)
   if #special > 0 then
      table.sort(special)
      log.warn(("skipped %d socket(s), device(s) or FIFO(s): %s")
         :format(#special, table.concat(special, ", ", 1,
            math.min(3, #special))))
   end
   warn_excluded(self, keep, white)
   return {
      entries = list,
      added = #d.added, modified = #d.modified, deleted = #d.deleted,
      typechanged = #d.typechanged,
   }
end

return M
