--- Compose: several named layers restored or built in order, later layers
-- winning.  When a layer's key changed since it was applied, it and every
-- layer after it are applied again, so later layers still win.
local fs = require "clayer.fs"
local http = require "clayer.http"
local layer = require "clayer.layer"
local proc = require "clayer.proc"
local log = require "clayer.log"
local state = require "clayer.state"

local M = {}

--- Read a layer manifest (layers.lua): a Lua file returning either a list
-- of layers or {layers = {...}, cache = URI}; a layer is a path or
-- {file = PATH, name = NAME}.  Paths are relative to the manifest.
-- @return specs, cache URI or nil; or nil, err
function M.load_manifest(path)
   local chunk, err = loadfile(path, "t", {})
   if not chunk then return nil, err end
   local ok, t = pcall(chunk)
   require("clayer.cleanup").reraise_interrupt(ok, t)
   if not ok then return nil, path .. ": " .. tostring(t) end
   if type(t) ~= "table" then
      return nil, path .. ": a layer manifest must return a table"
   end
   local list = t.layers or t
   local dir = path:match("^(.*)/[^/]*$") or "."
   local specs = {}
   for i, v in ipairs(list) do
      local spec = type(v) == "string" and { file = v } or v
      if type(spec) ~= "table" or type(spec.file) ~= "string" then
         return nil, ("%s: layer %d: a path or {file = PATH, name = NAME} "
            .. "expected"):format(path, i)
      end
      local file = spec.file
      if file:sub(1, 1) ~= "/" then file = dir .. "/" .. file end
      specs[i] = { file = file, name = spec.name }
   end
   if #specs == 0 then return nil, path .. ": no layers listed" end
   return specs, t.cache
end

--- Make the layers of a compose, checking their names.
-- @param specs array of {file, name}
-- @param opts options for layer.new shared by all layers
-- @return array of layers, or nil, err, code
function M.layers(specs, opts)
   local out, seen = {}, {}
   for i, spec in ipairs(specs) do
      local o = {}
      for k, v in pairs(opts) do o[k] = v end
      o.file = spec.file
      o.name = spec.name or layer.default_name(spec.file)
      if o.name == "" then
         return nil, spec.file .. ": cannot make a layer name from it; "
            .. "use --name NAME:PATH", "usage"
      end
      if seen[o.name] then
         return nil, ("two layers named '%s': %s and %s"):format(o.name,
            seen[o.name], spec.file), "usage"
      end
      seen[o.name] = spec.file
      local l, err, code = layer.new(o)
      if not l then return nil, err, code end
      out[i] = l
   end
   -- policy chain_keys: each key covers the keys of the layers before it
   if out[1] and out[1].policy.chain_keys then
      local chain = {}
      for _, l in ipairs(out) do
         l.chain = {}
         for k, v in pairs(chain) do l.chain[k] = v end
         chain[l.name] = (l:key())
      end
   end
   return out
end

-- Files that more than one layer of this run provides, and the winner.
local function shadowing(reports)
   local owner, out = {}, {}
   for _, r in ipairs(reports) do
      for _, p in ipairs(r.paths or {}) do
         local prev = owner[p]
         if prev and prev ~= r.name then
            out[#out + 1] = { path = p, layers = { prev, r.name },
               winner = r.name }
         end
         owner[p] = r.name
      end
      r.paths = nil
   end
   table.sort(out, function(a, b) return a.path < b.path end)
   return out
end

-- Start downloading a layer's parts to a spool folder, so that it
-- overlaps the extraction of the layer before it.  Only backends that
-- can describe their downloads (requests) are prefetched; a local dir:
-- cache needs none.  Sets l.prefetched = {meta, started, wait, close}.
local function prefetch(l)
   local c = l:open_cache()
   if not (c and c.requests) then return end
   local meta = c:find(l:tag())
   if type(meta) ~= "table" or layer.check_meta(meta) then return end
   local reqs = c:requests(l:tag(), meta)
   if not reqs then return end
   local dir = fs.mkdtemp("/var/tmp/clayer-prefetch-")
   if not dir then return end
   local transfers, files = {}, {}
   for i, req in ipairs(reqs) do
      req.output = ("%s/part.%03d"):format(dir, i)
      req.verbose = nil
      files[i] = req.output
      transfers[i] = http.start(req)
   end
   local pre = { meta = meta, started = proc.clock(), dir = dir }
   function pre.wait()
      for i, t in ipairs(transfers) do
         local res, err = t:wait()
         if not res then return nil, err end
         if res.status ~= 200 then
            return nil, ("part %d: HTTP %d"):format(i, res.status)
         end
      end
      return files
   end
   function pre.close()
      for _, t in ipairs(transfers) do t:close() end
      fs.rmtree(dir)
   end
   l.prefetched = pre
end

--- Restore or build the layers in order.
-- @return {layers = {reports}, shadowed = {...}}, or nil, err,
--   {layers = ..., code = ...}
function M.run(layers)
   local reports = {}
   local first = layers[1]
   local result = { layers = reports }
   local r, err, code = first:locked(function()
      for _, l in ipairs(layers) do l._lock = first._lock end
      local st = state.load(first.state_dir)
      -- the first layer whose applied tag differs, and all after it, apply
      local from = #layers + 1
      for i, l in ipairs(layers) do
         local a = st.layers[i]
         if not (a and a.tag == l:tag()) then
            from = i
            break
         end
      end
      if from <= #layers and #st.layers >= from then
         local keep = {}
         for i = 1, from - 1 do keep[i] = st.layers[i] end
         st.layers = keep
         local ok, serr = state.save(first.state_dir, st)
         if not ok then return nil, "saving state: " .. serr, "failed" end
      end
      for i, l in ipairs(layers) do
         if i < from then
            log.info("%s: already applied", l:tag())
            reports[i] = { name = l.name, tag = l:tag(), key = (l:key()),
               action = "skipped", bytes = 0, files = 0, timings = {} }
         else
            -- the next layer downloads while this one extracts
            local nxt = layers[i + 1]
            if nxt and not nxt.prefetched and not nxt.no_prefetch then
               prefetch(nxt)
            end
            l.want_paths = true
            local rep, lerr, lrep = l:restore_or_build(true)
            if l.prefetched then l.prefetched.close() end
            reports[i] = rep or lrep
            if not rep then
               reports[i].action = "failed"
               return nil, ("layer %s (%s): %s"):format(l.name, l.display,
                  lerr), lrep.code
            end
         end
      end
      return true
   end)
   for _, l in ipairs(layers) do
      l._lock = nil
      if l.prefetched then l.prefetched.close() end
   end
   result.shadowed = shadowing(reports)
   if not r then
      result.code = code
      return nil, err, result
   end
   return result
end

return M
