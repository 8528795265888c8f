--- The dir: backend: PATH/<tag>/{layer.json, layer.tar.zst[.NNN]}.
-- An entry is published by renaming a finished temporary folder, so a
-- reader never sees half an entry; a tag already published wins.
local cleanup = require "clayer.cleanup"
local fs = require "clayer.fs"
local json = require "clayer.json"
local proc = require "clayer.proc"

local Dir = {}
Dir.__index = Dir

local M = {}

--- PATH with a leading "~" or "~/" replaced by $HOME, as a shell would;
-- "~user" is refused (clayer does not look users up).
-- @return path, or nil, err
function M.expand_home(path)
   if path:sub(1, 1) ~= "~" then return path end
   local rest = path:sub(2)
   if rest ~= "" and rest:sub(1, 1) ~= "/" then
      return nil, ("dir:%s: '~%s' is not supported; write the folder's "
         .. "full path"):format(path, rest:match("^[^/]*"))
   end
   local home = os.getenv("HOME")
   if not home or home == "" then
      return nil, ("dir:%s: HOME is not set, so '~' means nothing; write "
         .. "the folder's full path"):format(path)
   end
   return home .. rest
end

function M.new(path, opts)
   if path == "" then return nil, "dir: cache needs a path: dir:PATH" end
   local err
   path, err = M.expand_home(path)
   if not path then return nil, err end
   if path:sub(1, 1) ~= "/" then
      -- $PWD may be stale: shim.cwd trusts it only when it names "."
      path = require("clayer.shim").cwd() .. "/" .. path
   end
   path = path:gsub("/+$", "")
   return setmetatable({ path = path, uri = "dir:" .. path,
      opts = opts }, Dir)
end

local function valid_tag(tag)
   return type(tag) == "string" and tag:match("^[%w][%w._+-]*$") ~= nil
end

--- Look up a tag.
-- @return meta (layer.json, or a stand-in for the original tool's
-- layer.tar.gz), nil on a miss, or nil, err when the cache is unusable
--- Whether the cache folder is there: a missing folder or a path that is
-- no folder is an unusable cache, said plainly, never a miss.
-- @return true, or nil, err
function Dir:check()
   local st, err, errno = fs.stat(self.path)
   if not st then
      if fs.lstat(self.path) then
         return nil, ("%s: the cache folder %s is a dangling symlink")
            :format(self.uri, self.path)
      end
      if errno ~= 2 then   -- anything but ENOENT: say what it was
         return nil, ("%s: cannot use the cache folder: %s"):format(self.uri,
            tostring(err))
      end
      return nil, ("%s: the cache folder %s does not exist"):format(self.uri,
         self.path)
   end
   if st.type ~= "dir" then
      return nil, ("%s: %s is not a folder (a dir: cache is a folder)")
         :format(self.uri, self.path)
   end
   return true
end

function Dir:find(tag)
   if not valid_tag(tag) then return nil, "invalid tag: " .. tostring(tag) end
   local dir = self.path .. "/" .. tag
   local usable, why = self:check()
   if not usable then return nil, why end
   local text = fs.read(dir .. "/layer.json")
   if text then
      local ok, meta, err = pcall(json.decode, text)
      cleanup.reraise_interrupt(ok, meta)   -- never a cache miss
      if not ok then meta, err = nil, meta end
      if type(meta) ~= "table" or getmetatable(meta) ~= nil then
         -- a scalar, null or an array: unusable, never a Lua error
         return nil, dir .. "/layer.json: " .. (err and tostring(err)
            or "not a JSON object")
      end
      meta.created_at = meta.created_at or fs.stat(dir).mtime
      return meta
   end
   local gz = fs.stat(dir .. "/layer.tar.gz")
   if gz then
      return { format = "legacy", tag = tag, legacy = true,
         parts = { { name = "layer.tar.gz", size = gz.size } },
         created_at = gz.mtime }
   end
   return nil
end

--- The byte sources of an entry's archive, in order.
function Dir:sources(tag, meta)
   local out = {}
   for i, p in ipairs(meta.parts or {}) do
      if not p.name or p.name:find("/", 1, true) then
         return nil, "layer.json: bad part name"
      end
      local file = self.path .. "/" .. tag .. "/" .. p.name
      if not fs.exists(file) then
         return nil, ("%s: part %d is missing"):format(file, i)
      end
      out[i] = file
   end
   return out
end

--- Publish the files of folder `src` (layer.json and the archive parts)
-- as `tag`.  The files are moved when they can be.
-- @return "published" or "exists", or nil, err
function Dir:publish(tag, src, meta)
   if not valid_tag(tag) then return nil, "invalid tag: " .. tostring(tag) end
   local st = fs.stat(self.path)
   if st and st.type ~= "dir" then return nil, select(2, self:check()) end
   local ok, err = fs.mkdirp(self.path, 493)
   if not ok then
      return nil, ("%s: cannot make the cache folder: %s"):format(self.uri,
         tostring(err))
   end
   local final = self.path .. "/" .. tag
   if fs.exists(final) then return "exists" end
   self:sweep()
   local tmp = ("%s/.tmp-%s-%d"):format(self.path, tag, proc.getpid())
   fs.rmtree(tmp)
   ok, err = fs.mkdirp(tmp, 493)
   if not ok then return nil, err end
   -- the folder goes on any failure, an interrupt included; after the
   -- rename it is gone and removing it is a no-op
   return cleanup.always(function() fs.rmtree(tmp) end, function()
      local names = { "layer.json" }
      for _, p in ipairs(meta.parts) do names[#names + 1] = p.name end
      for _, name in ipairs(names) do
         local from, to = src .. "/" .. name, tmp .. "/" .. name
         if not fs.rename(from, to) then
            local cok, cerr = fs.copy(from, to, 420)
            if not cok then return nil, cerr end
         end
      end
      local rok, rerr = fs.rename(tmp, final)
      if not rok then
         if fs.exists(final) then return "exists" end
         return nil, rerr
      end
      return "published"
   end)
end

-- How long a leftover must have been left alone before sweep removes it
-- (a pid in another pid namespace sharing the cache looks dead here).
local STALE_SECONDS = 600

-- Whether process `pid` runs here; nil when that cannot be told.
local function alive(pid)
   if not fs.exists("/proc/self") then return nil end
   return fs.exists("/proc/" .. pid)
end

-- The newest mtime (ns) of folder `path` and what is directly in it.
local function newest(path)
   local st = fs.lstat(path)
   local t = st and st.mtime or 0
   for _, name in ipairs(fs.dir(path) or {}) do
      local fst = fs.lstat(path .. "/" .. name)
      if fst and fst.mtime > t then t = fst.mtime end
   end
   return t
end

--- Remove what killed runs left: .tmp-TAG-PID (a publish) and
-- .del-TAG-PID (a delete) whose process is gone and that nothing wrote
-- to for STALE_SECONDS.  Best effort: a read-only cache keeps them.
-- @return the names removed
function Dir:sweep()
   local removed = {}
   local now = math.floor(proc.time() * 1e9)
   for _, name in ipairs(fs.dir(self.path) or {}) do
      local pid = name:match("^%.tmp%-.+%-(%d+)$")
         or name:match("^%.del%-.+%-(%d+)$")
      local path = self.path .. "/" .. name
      if pid and tonumber(pid) ~= proc.getpid() and alive(pid) == false
         and now - newest(path) > STALE_SECONDS * 1e9
         and fs.rmtree(path) then
         removed[#removed + 1] = name
      end
   end
   return removed
end

--- The entries whose tag starts with `prefix`: {tag, created_at (ns),
-- size}, newest first.
function Dir:list(prefix)
   prefix = prefix or ""
   local ok, err = self:check()
   if not ok then return nil, err end
   self:sweep()   -- ls and prune clean what killed publishers left
   local names = fs.dir(self.path)
   local out = {}
   for _, name in ipairs(names or {}) do
      if name:sub(1, #prefix) == prefix and name:sub(1, 1) ~= "." then
         local st = fs.stat(self.path .. "/" .. name)
         if st and st.type == "dir" then
            local size = 0
            for _, f in ipairs(fs.dir(self.path .. "/" .. name) or {}) do
               local fst = fs.stat(self.path .. "/" .. name .. "/" .. f)
               size = size + (fst and fst.size or 0)
            end
            out[#out + 1] = { tag = name, created_at = st.mtime, size = size }
         end
      end
   end
   table.sort(out, function(a, b) return a.created_at > b.created_at end)
   return out
end

function Dir:delete(tag)
   if not valid_tag(tag) then return nil, "invalid tag: " .. tostring(tag) end
   -- rename first, so a reader never sees a half-deleted entry
   local dead = ("%s/.del-%s-%d"):format(self.path, tag, proc.getpid())
   local ok, err = fs.rename(self.path .. "/" .. tag, dead)
   if not ok then return nil, err end
   return fs.rmtree(dead)
end

return M
