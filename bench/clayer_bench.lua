--- bench/clayer_bench.lua: clayer's side of `make bench`, run by
-- clayer-lua.
--
--   pack ROOT OUT.tar.zst [RESULT.json]
--       what a build does after the RUN steps, minus the scan before:
--       scan ROOT (snapshot.finish against an empty "before" manifest,
--       so fs.scan + fs.diff + the entry list), then tar.create with the
--       default policy (level 3, all cores, GitHub part size).  Writes
--       tar.create's result (sha256, size, parts) to RESULT.json.
--   scan ROOT...
--       fs.scan of the roots (one device each, nothing excluded); prints
--       the entry count.
--   publish CONTAINERFILE STAGE [EMPTY_ROOT]
--       publishes STAGE/layer.tar.zst* (described by STAGE/ar.json) as
--       the layer of CONTAINERFILE to the cache in $BENCH_CACHE through
--       the real github: backend; prints the tag.  EMPTY_ROOT is where the
--       platform is read, as a restore into an empty root will.
--   tag CONTAINERFILE
--       prints the tag of the layer.
local fs = require "clayer.fs"
local json = require "clayer.json"
local proc = require "clayer.proc"
local snapshot = require "clayer.snapshot"
local tar = require "clayer.tar"

local function die(msg)
   io.stderr:write("clayer_bench: ", tostring(msg), "\n")
   os.exit(1)
end

local cmd = arg[1]

if cmd == "pack" then
   local root, out, result = arg[2], arg[3], arg[4]
   if not root or not out then die("pack ROOT OUT [RESULT]") end
   local empty = assert(fs.mkdtemp((os.getenv("TMPDIR") or "/tmp")
      .. "/clayer-bench-empty."))
   local policy = { watch = { "/" }, exclude = {}, pseudo = {},
      allow_special = false }
   local t0 = proc.clock()
   -- the "before" scan sees an empty folder: everything is added
   local snap = assert(snapshot.begin { root = empty, policy = policy })
   fs.remove(empty)
   snap.root = root
   local t1 = proc.clock()
   local changes, err = snap:finish()
   if not changes then die(err) end
   local t2 = proc.clock()
   local ar, aerr = tar.create { output = out, root = root,
      entries = changes.entries, level = 3,
      threads = tonumber(os.getenv("BENCH_THREADS") or ""),
      part_size = require("clayer.cache.github").part_size({}) }
   if not ar then die(aerr) end
   local t3 = proc.clock()
   if result then
      ar.parts = json.array(ar.parts)
      assert(fs.write_atomic(result, json.encode(ar) .. "\n"))
   end
   io.stderr:write(("pack: %d entries; empty scan %.3f s, scan+diff %.3f s, "
      .. "tar.create %.3f s\n"):format(#changes.entries, t1 - t0, t2 - t1,
      t3 - t2))
elseif cmd == "scan" then
   local roots = {}
   for i = 2, #arg do roots[#roots + 1] = arg[i] end
   local m, err = fs.scan(roots, { xdev = true })
   if not m then die(err) end
   io.stdout:write(m:count(), "\n")
elseif cmd == "publish" or cmd == "tag" then
   local layer = require "clayer.layer"
   local file, stage, eroot = arg[2], arg[3], arg[4]
   local l, err = layer.new { file = file, cache = os.getenv("BENCH_CACHE"),
      root = eroot, no_build = true }
   if not l then die(err) end
   if cmd == "tag" then
      io.stdout:write(l:tag(), "\n")
      os.exit(0)
   end
   local ar = json.decode(assert(fs.read(stage .. "/ar.json")))
   local key, full, extras = l:key()
   local meta = {
      format = "clayer-layer/1", name = json.null, key = key,
      tag = l:tag(), key_sha256 = full, extras = extras,
      created = os.date("!%Y-%m-%dT%H:%M:%SZ"),
      clayer_version = layer.VERSION, platform = l:platform(),
      archive_sha256 = ar.sha256, archive_size = ar.size,
      parts = json.array(ar.parts), files = ar.files, bytes = ar.bytes,
      env = {}, workdir = json.null,
   }
   assert(fs.write_atomic(stage .. "/layer.json",
      json.encode(meta, { pretty = true }) .. "\n", 420))
   local c
   c, err = l:open_cache()
   if not c then die(err) end
   local status
   status, err = c:publish(l:tag(), stage, meta)
   if not status then die(err) end
   io.stdout:write(l:tag(), "\n")
elseif cmd == "urls" then
   -- urls API OWNER/REPO TAG NAME...: the storage (CDN) URL of each asset,
   -- as GitHub's redirect gives it, one a line
   local http = require "clayer.http"
   local api, repo, tag = arg[2], arg[3], arg[4]
   local res = assert(http.request { url = ("%s/repos/%s/releases/tags/%s")
      :format(api, repo, tag) })
   if res.status ~= 200 then die(tag .. ": HTTP " .. res.status) end
   local rel = json.decode(res.body)
   for i = 5, #arg do
      local found
      for _, a in ipairs(rel.assets) do
         if a.name == arg[i] then found = a end
      end
      if not found then die(tag .. ": no asset " .. arg[i]) end
      local r = assert(http.request { url = found.url, follow = false,
         headers = { Accept = "application/octet-stream" } })
      local loc = r.headers.location
      if r.status ~= 302 or not loc then die(arg[i] .. ": no redirect") end
      io.stdout:write(loc, "\n")
   end
else
   die("usage: clayer_bench.lua pack|scan|publish|tag|urls ...")
end
