--- One layer: a Containerfile, its key and tag, and the ways to get it
-- onto this machine: restore from a cache, build and publish, or both.
local build = require "clayer.build"
local cache = require "clayer.cache"
local cf = require "clayer.containerfile"
local cleanup = require "clayer.cleanup"
local fs = require "clayer.fs"
local json = require "clayer.json"
local log = require "clayer.log"
local policy_mod = require "clayer.policy"
local proc = require "clayer.proc"
local retention = require "clayer.retention"
local snapshot = require "clayer.snapshot"
local state = require "clayer.state"
local tar = require "clayer.tar"

local M = {}

local Layer = {}
Layer.__index = Layer

M.VERSION = require("clayer.embedded").version

--- The default layer name of a Containerfile path (DESIGN §5):
-- Containerfile -> base, Containerfile.X -> x, otherwise the file's stem.
function M.default_name(path)
   local base = path:match("([^/]+)$") or path
   local name
   if base == "Containerfile" then
      name = "base"
   elseif base:match("^Containerfile%.(.+)$") then
      name = base:match("^Containerfile%.(.+)$")
   else
      name = base:gsub("%.[^.]*$", "")
   end
   return M.clean_name(name)
end

--- Lower-case, characters outside [a-z0-9_-] become '-', no leading or
-- trailing '-'.
function M.clean_name(name)
   name = name:lower():gsub("[^a-z0-9_-]", "-")
   return (name:gsub("^%-+", ""):gsub("%-+$", ""))
end

-- $PWD only when it names "." (a caller may pass a stale one): shim.cwd
local function abspath(p)
   if p:sub(1, 1) == "/" then return p end
   return build.join(require("clayer.shim").cwd(), p)
end

--- Make a layer.
-- @param o file (required), name, cache (URI), salt, build_args (table),
--   root (a prefix; default "/"), policy (a loaded policy table),
--   policy_file, no_build, no_push, cache_opts ({token, token_file,
--   cacert}), state_dir; any other key is an error
-- @return layer, or nil, err, "usage"|"parse"
local OPTIONS = {
   file = true, name = true, cache = true, salt = true, build_args = true,
   root = true, policy = true, policy_file = true, no_build = true,
   no_push = true, cache_opts = true, state_dir = true,
}

function M.new(o)
   assert(type(o) == "table" and type(o.file) == "string",
      "layer{file = PATH, ...} expected")
   for k in pairs(o) do
      if not OPTIONS[k] then
         return nil, ("layer: unknown option '%s'"):format(tostring(k)),
            "usage"
      end
   end
   local self = setmetatable({}, Layer)
   self.file = abspath(o.file)
   self.dir = self.file:match("^(.*)/[^/]*$")
   if self.dir == "" then self.dir = "/" end
   self.display = o.file
   if o.name ~= nil and not tostring(o.name):match("^[%w_.-]+$") then
      return nil, ("invalid layer name '%s': use letters, digits, '_', "
         .. "'-' and '.'"):format(tostring(o.name)), "usage"
   end
   self.name = o.name
   self.salt = o.salt
   self.build_args = o.build_args or {}
   local root = o.root or "/"
   self.root = root == "/" and "" or abspath(root):gsub("/+$", "")
   local err
   self.policy = o.policy
   if not self.policy then
      self.policy, err = policy_mod.load(o.policy_file, self.dir)
      if not self.policy then return nil, err, "usage" end
   end
   self.cache_uri = o.cache or os.getenv("CLAYER_CACHE")
   if self.cache_uri == "" then self.cache_uri = nil end
   self.cache_uri = self.cache_uri or self.policy.cache or cache.default_uri()
   self.cache_opts = o.cache_opts or {}
   self.no_build, self.no_push = o.no_build, o.no_push
   self.state_dir = o.state_dir or state.dir(self.root)
   if self.root ~= "" then
      local st = fs.stat(self.root)
      if not st or st.type ~= "dir" then
         return nil, ("--root %s: not a folder"):format(self.root), "usage"
      end
   end
   -- a cache URI that cannot work is a usage error, before anything runs
   local _, cerr = self:open_cache()
   if cerr then return nil, cerr, "usage" end

   local text, rerr = cf.read(self.file)
   if not text then return nil, rerr, "usage" end
   self.text = text
   -- hostile input must give a one-line error, never a Lua error
   local pok, doc, perr = pcall(cf.parse, text, self.display,
      { unknown = self.policy.unknown_instruction })
   cleanup.reraise_interrupt(pok, doc)
   if not pok then
      return nil, ("%s: %s"):format(self.display, tostring(doc)), "parse"
   end
   if not doc then return nil, perr, "parse" end
   self.doc = doc
   for _, w in ipairs(doc.warnings or {}) do log.warn(w) end
   local plan, plerr = build.plan(doc, self:context())
   if not plan then return nil, plerr, "parse" end
   self.plan = plan
   -- a trial key (compose may add chain keys later, so it is not kept)
   local kok, kerr = pcall(self.key, self)
   cleanup.reraise_interrupt(kok, kerr)
   self._key, self._full, self._extras = nil, nil, nil
   if not kok then return nil, tostring(kerr), "parse" end
   if self.policy.resolve_refs then
      local ok, referr = self:resolve_refs()
      if not ok then return nil, referr, "cache" end
   end
   return self
end

--- Policy resolve_refs: pin every `FETCH github:` source to the commit
-- its ref names now; the commits go into the key (ref:SRC=SHA) and the
-- build downloads exactly them.
function Layer:resolve_refs()
   self.refs = {}
   for _, src in ipairs(self.plan.fetches or {}) do
      if src:match("^github:") then
         local sha, err = build.resolve_ref(src, self:context())
         if not sha then
            return nil, self.display .. ": FETCH " .. src .. ": " .. err
         end
         self.refs[src] = sha
      end
   end
   return true
end

function Layer:context()
   return { file = self.display, dir = self.dir, root = self.root,
      build_args = self.build_args, policy = self.policy,
      escape = self.doc and self.doc.escape,
      token = self.cache_opts.token, token_file = self.cache_opts.token_file,
      cacert = self.cache_opts.cacert, refs = self.refs }
end

--- The key and its parts.
-- @return key (16 hex), full digest (64 hex), extras string
function Layer:key()
   if not self._key then
      local inputs = {}
      if self.salt and self.salt ~= "" then inputs.salt = self.salt end
      if next(self.plan.args) then inputs.args = self.plan.args end
      if next(self.plan.copies) then inputs.copies = self.plan.copies end
      if self.chain and next(self.chain) then inputs.chains = self.chain end
      if self.refs and next(self.refs) then inputs.refs = self.refs end
      inputs = self.policy.key_extras(inputs) or inputs
      local extras = cf.extras(inputs)
      local key, full = cf.key(self.text, extras)
      if not key then
         error(self.display .. ": " .. tostring(full), 0)
      end
      self._key, self._full, self._extras = key, full, extras
   end
   return self._key, self._full, self._extras
end

--- The cache tag: layer-<key>, or layer-<name>-<key>.
function Layer:tag()
   local key = self:key()
   if self.name then return ("layer-%s-%s"):format(self.name, key) end
   return "layer-" .. key
end

local function now_rfc3339()
   return os.date("!%Y-%m-%dT%H:%M:%SZ")
end

--- This machine's platform, read below the root.
function Layer:platform()
   local u = proc.uname()
   local text = fs.read(self.root .. "/etc/os-release")
      or fs.read(self.root .. "/usr/lib/os-release") or ""
   local function field(k)
      local v = text:match("\n" .. k .. "=([^\n]*)")
         or text:match("^" .. k .. "=([^\n]*)")
      return v and (v:gsub('^"(.*)"$', "%1")) or ""
   end
   return { arch = u.machine, os_id = field("ID"),
      os_version = field("VERSION_ID") }
end

local function new_report(self, action)
   return { name = self.name, tag = self:tag(), key = (self:key()),
      file = self.display, action = action, bytes = 0, files = 0,
      timings = {} }
end

local function timed(report, phase, f, ...)
   local t0 = proc.clock()
   local a, b, c = f(...)
   report.timings[phase] = (report.timings[phase] or 0) + proc.clock() - t0
   return a, b, c
end

-- Put back a root that a killed restore left half-written.
local function recover(self)
   local journal = self.state_dir .. "/journal"
   if not fs.exists(journal) then return true end
   local ok, n = tar.recover(journal)
   if not ok then return nil, "rolling back an interrupted restore: " .. n end
   log.warn(("an interrupted restore was rolled back (%d paths put back)")
      :format(n))
   return true
end

--- Hold the state lock for the duration of f.
function Layer:locked(f)
   if self._lock then return f() end
   local lock, err = state.lock(self.state_dir)
   if not lock then return nil, "state lock: " .. tostring(err), "failed" end
   self._lock = lock
   local ok, a, b, c = pcall(function()
      local rok, rerr = recover(self)
      if not rok then return nil, rerr, "failed" end
      return f()
   end)
   self._lock = nil
   lock:close()
   if not ok then error(a, 0) end
   return a, b, c
end

function Layer:open_cache()
   if not self._cache then
      local o = { policy = self.policy }
      for k, v in pairs(self.cache_opts) do o[k] = v end
      local c, err = cache.open(self.cache_uri, o)
      if not c then return nil, err end
      self._cache = c
   end
   return self._cache
end

local function record(self, report, meta, env)
   local st = state.load(self.state_dir)
   local pairs_ = {}
   if env then
      pairs_ = env
   elseif meta and type(meta.env) == "table" then
      for k, v in pairs(meta.env) do
         -- a name that is not a variable name would run as shell code
         -- in `eval "$(clayer env)"`: it never becomes state
         if state.valid_name(k) and type(v) == "string" then
            pairs_[#pairs_ + 1] = { k, v }
         else
            log.warn(("%s: layer.json: ignoring ENV with an invalid "
               .. "variable name '%s'"):format(report.tag,
               state.printable(k)))
         end
      end
      table.sort(pairs_, function(a, b) return a[1] < b[1] end)
   end
   -- the key's inputs besides the file (the --build-arg values an ARG
   -- declares, and --salt), so that `clayer status` computes the same
   -- key and suggests the same command
   local args = {}
   for k, v in pairs(self.plan.args or {}) do args[k] = v end
   state.record(st, {
      name = self.name or json.null, tag = report.tag, key = report.key,
      file = self.file,
      -- the backend's own URI: dir: paths absolute, "~" expanded
      cache = self._cache and self._cache.uri or self.cache_uri,
      salt = (self.salt and self.salt ~= "") and self.salt or nil,
      build_args = next(args) and args or nil,
      archive_sha256 = meta and meta.archive_sha256 or json.null,
      time = now_rfc3339(), files = report.files, env = pairs_,
      workdir = meta and meta.workdir or json.null,
   })
   return state.save(self.state_dir, st, self.policy.profile_d
      and self.root .. "/etc/profile.d/clayer.sh" or nil)
end

--- Whether this layer's tag is already applied here.
function Layer:applied()
   local st = state.load(self.state_dir)
   return state.find(st, self:tag()) ~= nil
end

local function is_hex64(v)
   return type(v) == "string" and #v == 64 and v:match("^%x+$") ~= nil
end

local function is_count(v)
   return math.type(v) == "integer" and v >= 0
      or math.type(v) == "float" and v >= 0 and v < 2 ^ 53 and v % 1 == 0
end

--- What is wrong with a cache entry's layer.json (decoded), or nil when
-- it can be used: a hostile or damaged entry is a corrupt entry, never
-- a Lua error.
function M.check_meta(meta)
   if type(meta) ~= "table" then return "not a JSON object" end
   local function opt(v) return v == nil or v == json.null end
   if not (opt(meta.archive_sha256) or is_hex64(meta.archive_sha256)) then
      return "archive_sha256 is not 64 hex digits"
   end
   if not (opt(meta.archive_size) or is_count(meta.archive_size)) then
      return "archive_size is not a non-negative integer"
   end
   local parts = meta.parts
   if type(parts) ~= "table" or #parts == 0 then
      return "parts is not a non-empty array"
   end
   for k in pairs(parts) do
      if math.type(k) ~= "integer" or k < 1 or k > #parts then
         return "parts is not an array"
      end
   end
   for i, p in ipairs(parts) do
      if type(p) ~= "table" then
         return ("parts[%d] is not an object"):format(i)
      elseif type(p.name) ~= "string" then
         return ("parts[%d].name is not a string"):format(i)
      elseif not (opt(p.size) or is_count(p.size)) then
         return ("parts[%d].size is not a non-negative integer"):format(i)
      elseif not (opt(p.sha256) or is_hex64(p.sha256)) then
         return ("parts[%d].sha256 is not 64 hex digits"):format(i)
      end
   end
   if not opt(meta.platform) then
      if type(meta.platform) ~= "table" then
         return "platform is not an object"
      end
      for k, v in pairs(meta.platform) do
         if type(k) ~= "string" or type(v) ~= "string" then
            return "platform has a field that is not a string"
         end
      end
   end
   if not opt(meta.env) then
      if type(meta.env) ~= "table" then return "env is not an object" end
      for k, v in pairs(meta.env) do
         if type(k) ~= "string" or type(v) ~= "string" then
            return "env has a value that is not a string"
         end
      end
   end
   if not (opt(meta.workdir) or type(meta.workdir) == "string") then
      return "workdir is not a string"
   end
   return nil
end

-- Restore from the cache, without building.
-- @return report, or nil, err, code ("miss", "cache", "corrupt", "failed")
function Layer:_restore(report, force)
   if not force and self:applied() then
      report.action = "skipped"
      log.info("%s: already applied", report.tag)
      return report
   end
   local c, err = self:open_cache()
   if not c then return nil, err, "cache" end
   local meta
   if self.prefetched then
      meta = self.prefetched.meta
   else
      meta, err = timed(report, "resolve", c.find, c, report.tag)
   end
   if not meta then
      if err then return nil, err, "cache" end
      return nil, ("%s: not in %s (this key was never published there; "
         .. "check --cache and --name, or build it)"):format(report.tag,
         c.uri), "miss"
   end
   local bad = M.check_meta(meta)
   if bad then
      return nil, ("%s: layer.json: %s"):format(report.tag, bad), "corrupt"
   end
   -- a JSON null is an absent field
   for _, k in ipairs { "archive_sha256", "archive_size", "platform", "env",
         "workdir" } do
      if meta[k] == json.null then meta[k] = nil end
   end
   for _, p in ipairs(meta.parts) do
      if p.size == json.null then p.size = nil end
      if p.sha256 == json.null then p.sha256 = nil end
   end
   if not meta.legacy then
      local here = self:platform()
      local p = meta.platform or {}
      if (p.arch and p.arch ~= here.arch)
         or (p.os_id and p.os_id ~= here.os_id) then
         log.warn(("%s was built on %s/%s; this machine is %s/%s: "
            .. "treating it as a miss"):format(report.tag, tostring(p.os_id),
            tostring(p.arch), here.os_id, here.arch))
         return nil, report.tag .. ": built for another platform", "miss"
      end
   end
   local sources
   if self.prefetched and self.prefetched.meta == meta then
      -- compose downloaded the parts while the layers before extracted
      sources, err = timed(report, "download", self.prefetched.wait)
      if not sources then
         log.warn(("%s: prefetch failed (%s); downloading again")
            :format(report.tag, err))
      end
   end
   if not sources then
      sources, err = c:sources(report.tag, meta)
      if not sources then return nil, err, "corrupt" end
   end
   report.download_started = self.prefetched and self.prefetched.started
      or proc.clock()
   log.info("restoring %s from %s", report.tag, c.uri)
   local parts = {}
   for i, p in ipairs(meta.parts or {}) do
      parts[i] = { sha256 = p.sha256, size = p.size }
   end
   local fs_root = self.root == "" and "/" or self.root
   fs.mkdirp(self.state_dir, 493)
   -- a download that fails midway (reset, stall) is rolled back by the
   -- extractor and tried again from the start, a bounded number of times
   local http_policy = self.policy.http or {}
   local tries = 1 + (tonumber(http_policy.retries) or 0)
   local wait = tonumber(http_policy.backoff) or 1
   local res, xerr, code
   for attempt = 1, tries do
      local bar = log.progress("download and extract", meta.archive_size
         or (meta.parts and meta.parts[1] and meta.parts[1].size))
      -- one phase, "extract": from a remote cache the archive is unpacked
      -- as it streams in, so downloading is part of it (only compose's
      -- prefetch, above, is a "download" of its own)
      res, xerr, code = timed(report, "extract", tar.extract, {
         root = fs_root, source = sources,
         format = meta.legacy and "gzip" or "zstd",
         sha256 = meta.archive_sha256, size = meta.archive_size,
         parts = not meta.legacy and parts or nil,
         journal = self.state_dir .. "/journal",
         allow_special = self.policy.allow_special,
         names = self.want_paths,
         progress = bar.update,
      })
      bar.done(res and res.size)
      local network = not res and code == "io"
         and tostring(xerr):find("http: ", 1, true)
      if not network or attempt == tries then break end
      log.warn(("%s: %s; trying again in %g s (%d of %d)"):format(report.tag,
         xerr, wait, attempt + 1, tries))
      proc.sleep(wait)
      wait = wait * 2
      sources, err = c:sources(report.tag, meta)
      if not sources then return nil, err, "corrupt" end
   end
   report.extract_finished = proc.clock()
   if not res then
      return nil, ("%s: %s"):format(report.tag, xerr),
         (code == "interrupted" or code == "space") and "failed" or "corrupt"
   end
   for _, w in ipairs(res.warnings or {}) do log.warn(w) end
   report.action = "hit"
   report.bytes, report.files = res.bytes, res.files
   report.paths = res.names
   local env = nil
   if meta.legacy then env = self.plan.env end
   local ok, serr = record(self, report, meta, env)
   if not ok then return nil, "saving state: " .. serr, "failed" end
   return report
end

-- Run the Containerfile and snapshot what it changed.
-- @return changes, build result, or nil, err, code
function Layer:_run(report)
   local exclude = {}
   local c = self:open_cache()
   if c and c.path and self.root == "" then exclude[#exclude + 1] = c.path end
   if self.root == "" then
      local sd = self.state_dir
      if sd:sub(1, 1) == "/" then exclude[#exclude + 1] = sd end
   end
   log.info("building %s (%s)", self.display, report.tag)
   local snap, err = timed(report, "scan", snapshot.begin, {
      root = self.root, policy = self.policy, extra = self.plan.snapshot,
      all = self.plan.all, exclude_extra = exclude })
   if not snap then return nil, err, "failed" end
   local res
   res, err = timed(report, "build", build.run, self.doc, self:context())
   if not res then return nil, err, "failed" end
   local changes
   changes, err = timed(report, "scan", snap.finish, snap)
   if not changes then return nil, err, "failed" end
   return changes, res
end

-- Archive the change set and publish it.  A failed publish is a warning:
-- the built system stays, and nothing is recorded as cached.
function Layer:_publish(report, changes, res)
   local c0 = self:open_cache()
   -- the folder goes on an error or an interrupt too (clayer.cleanup)
   local ok, err = cleanup.with_tmpdir("clayer-build-", function(tmp)
      local threads = self.policy.zstd_threads
      local bar = log.progress("compress")
      local ar, aerr = timed(report, "compress", tar.create, {
         output = tmp .. "/layer.tar.zst", root = self.root,
         entries = changes.entries, level = self.policy.zstd_level,
         threads = threads and threads > 0 and threads or nil,
         part_size = self.policy.part_size or (c0 and c0.part_size),
         allow_special = self.policy.allow_special,
         progress = bar.update,
      })
      bar.done(ar and ar.bytes)
      if not ar then return nil, "archiving the layer: " .. aerr end
      report.bytes, report.files = ar.bytes, ar.files
      report.archive_size = ar.size
      local key, full, extras = self:key()
      local env = {}
      for _, kv in ipairs(res.env) do env[kv[1]] = kv[2] end
      local meta = {
         format = "clayer-layer/1", name = self.name or json.null,
         key = key, tag = report.tag, key_sha256 = full, extras = extras,
         created = now_rfc3339(), clayer_version = M.VERSION,
         platform = self:platform(), archive_sha256 = ar.sha256,
         archive_size = ar.size, parts = json.array(ar.parts),
         files = ar.files, bytes = ar.bytes, env = env,
         workdir = res.workdir,
      }
      local wok, werr = fs.write_atomic(tmp .. "/layer.json",
         json.encode(meta, { pretty = true }) .. "\n", 420)
      if not wok then return nil, werr end
      local c, cerr = self:open_cache()
      if not c then return nil, cerr end
      local status, perr = timed(report, "upload", c.publish, c, report.tag,
         tmp, meta)
      if not status then return nil, perr end
      if status == "exists" then
         log.info("%s is already in %s; the published entry wins",
            report.tag, c.uri)
      else
         log.info("published %s to %s (%s)", report.tag, c.uri,
            log.size(ar.size))
      end
      report.published = true
      if status == "published" then self:_retain(c) end
      return true
   end)
   if not ok then
      log.warn("the layer was built but not saved to the cache: " .. err)
      report.published = false
   end
   return ok
end

-- Apply the retention policy after a publish; a failure is a warning.
function Layer:_retain(c)
   local protect = { [self:tag()] = true }
   for _, l in ipairs(state.load(self.state_dir).layers) do
      protect[l.tag] = true
   end
   local ok, res, err = pcall(retention.prune, c, { name = self.name,
      unnamed = self.name == nil, protect = protect, policy = self.policy,
      keep = self.policy.keep, min_age = self.policy.min_age })
   -- SIGINT/SIGTERM stop clayer; only retention's own failures warn
   cleanup.reraise_interrupt(ok, res)
   if not ok or not res then
      log.warn("retention after publish: " .. tostring(ok and err or res))
   elseif #(res.deleted or {}) > 0 then
      log.info("retention: deleted %s", table.concat(res.deleted, ", "))
   end
end

-- Build, then publish unless told not to, then record the layer applied.
function Layer:_build(report, publish)
   for _, l in ipairs(state.load(self.state_dir).layers) do
      local same = self.name and l.name == self.name
         or (not self.name and l.file == self.file)
      if same then
         log.warn(("%s is already applied here (%s): the snapshot holds "
            .. "only what changes on top of it; build in a fresh container "
            .. "for a complete layer"):format(self.display, l.tag))
         break
      end
   end
   local changes, res, code = self:_run(report)
   if not changes then return nil, res, code end
   if #changes.entries == 0 then
      log.warn(self.display .. ": the build changed nothing: the layer is "
         .. "empty")
   end
   report.action = "built"
   report.files = #changes.entries
   if self.want_paths then
      report.paths = {}
      for _, e in ipairs(changes.entries) do
         if not e.whiteout and e.type ~= "dir" then
            report.paths[#report.paths + 1] = e.path
         end
      end
   end
   log.info("%d added, %d modified, %d deleted",
      changes.added + changes.typechanged, changes.modified, changes.deleted)
   -- the secret scan (lua/clayer/secrets.lua): a layer holding the live
   -- token or credentials is not published and the command fails; the
   -- built system stays and is recorded as applied
   local refusal = publish
      and require("clayer.secrets").check_layer(self, changes, res.env)
   if refusal then
      report.published = false
      record(self, report, nil, res.env)
      return nil, refusal, "failed"
   end
   if publish then self:_publish(report, changes, res) end
   local ok, err = record(self, report, nil, res.env)
   if not ok then return nil, "saving state: " .. err, "failed" end
   return report
end

--- Restore from the cache; no build on a miss.
-- @return report, or nil, err, report (report.code says why)
function Layer:restore()
   local report = new_report(self, "failed")
   local r, err, code = self:locked(function()
      return self:_restore(report)
   end)
   if r then return r end
   report.code = code
   return nil, err, report
end

local function build_entry(self, publish)
   local report = new_report(self, "failed")
   local r, err, code = self:locked(function()
      return self:_build(report, publish)
   end)
   if r then return r end
   report.code = code
   return nil, err, report
end

--- Build and publish (publishes even on a hit; a published tag wins).
function Layer:build_and_push()
   return build_entry(self, not self.no_push)
end

--- Build and snapshot; publish nothing.
function Layer:build_only()
   return build_entry(self, false)
end

--- Restore from the cache; on a miss, an unusable cache or a corrupt
-- entry, build (unless no_build) and publish (unless no_push).  With
-- `force`, a layer already applied is applied again (compose does this
-- for the layers after one whose key changed).
function Layer:restore_or_build(force)
   local report = new_report(self, "failed")
   local r, err, code = self:locked(function()
      local rr, rerr, rcode = self:_restore(report, force)
      if rr then return rr end
      if rcode == "failed" then return nil, rerr, rcode end
      if self.no_build then
         return nil, rerr, rcode == "corrupt" and "failed" or "cache"
      end
      if rcode == "miss" then
         log.info("%s: cache miss; building", report.tag)
      else
         log.warn(rerr .. "; building instead")
      end
      report.timings = {}
      return self:_build(report, not self.no_push)
   end)
   if r then return r end
   report.code = code
   return nil, err, report
end

return M
