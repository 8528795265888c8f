--- What is applied on this machine: applied.json, env.sh and the lock.
-- The state folder is $CLAYER_STATE_DIR, else /var/lib/clayer for root
-- (below --root when given), else ~/.local/state/clayer.
local fs = require "clayer.fs"
local json = require "clayer.json"
local proc = require "clayer.proc"
local log = require "clayer.log"

local M = {}

--- The state folder for a root prefix ("" for /).
function M.dir(root)
   local env = os.getenv("CLAYER_STATE_DIR")
   if env and env ~= "" then return env end
   root = root or ""
   if root ~= "" or proc.getuid() == 0 then
      return root .. "/var/lib/clayer"
   end
   return (os.getenv("HOME") or "/tmp") .. "/.local/state/clayer"
end

--- Take the lock that serializes clayer runs on this machine.  A second
-- run waits, and says so.
-- @return lock handle, or nil, err
function M.lock(dir)
   local ok, err = fs.mkdirp(dir, 493)
   if not ok then return nil, err end
   local path = dir .. "/lock"
   local lock, msg, code = fs.lock(path, false)
   if lock then return lock end
   if code ~= "busy" then return nil, msg end
   log.info("waiting for another clayer run to finish (lock %s)", path)
   return fs.lock(path, true)
end

--- Read applied.json; a missing file is an empty state.
function M.load(dir)
   local text = fs.read(dir .. "/applied.json")
   if not text then return { format = "clayer-state/1", layers = {} } end
   local st, err = json.decode(text)
   if type(st) ~= "table" or type(st.layers) ~= "table" then
      log.warn(("%s/applied.json is unreadable (%s); starting afresh")
         :format(dir, err or "not a state file"))
      return { format = "clayer-state/1", layers = {} }
   end
   return st
end

--- Quote a value for POSIX sh, single-quote style.
function M.shell_quote(v)
   return "'" .. tostring(v):gsub("'", "'\\''") .. "'"
end

--- s for a one-line message: control bytes shown as '?'.
function M.printable(s)
   return (tostring(s):gsub("%c", "?"))
end

--- Whether s is a valid shell variable name ([A-Za-z_][A-Za-z0-9_]*).
function M.valid_name(s)
   return type(s) == "string" and s:match("^[A-Za-z_][A-Za-z0-9_]*$") ~= nil
end

--- The environment of the applied layers, later layers winning.  A pair
-- whose name is not a valid variable name, or whose value is not a
-- string, is skipped with a warning: it is never emitted.
-- @return table name -> value, and the names in first-set order
function M.environment(st)
   local env, order = {}, {}
   for _, l in ipairs(st.layers) do
      local list = type(l.env) == "table" and l.env or {}
      for _, pair in ipairs(list) do
         local k, v = type(pair) == "table" and pair[1],
            type(pair) == "table" and pair[2]
         if not M.valid_name(k) then
            log.warn(("applied layer %s: skipping ENV with an invalid "
               .. "variable name '%s'"):format(tostring(l.tag),
               M.printable(k)))
         elseif type(v) ~= "string" then
            log.warn(("applied layer %s: skipping ENV %s: its value is "
               .. "not a string"):format(tostring(l.tag), k))
         else
            if env[k] == nil then order[#order + 1] = k end
            env[k] = v
         end
      end
   end
   return env, order
end

--- `export K='V'` lines for the applied layers.
function M.env_sh(st)
   local env, order = M.environment(st)
   local out = {}
   for _, k in ipairs(order) do
      out[#out + 1] = ("export %s=%s\n"):format(k, M.shell_quote(env[k]))
   end
   return table.concat(out)
end

--- Write applied.json and env.sh atomically; with `profile`, also that
-- file (policy profile_d: /etc/profile.d/clayer.sh below the root), so
-- new login shells get the layers' ENV.
function M.save(dir, st, profile)
   local ok, err = fs.mkdirp(dir, 493)
   if not ok then return nil, err end
   for _, l in ipairs(st.layers) do json.array(l.env or {}) end
   json.array(st.layers)
   ok, err = fs.write_atomic(dir .. "/applied.json",
      json.encode(st, { pretty = true }) .. "\n", 420)
   if not ok then return nil, err end
   ok, err = fs.write_atomic(dir .. "/env.sh", M.env_sh(st), 420)
   if not ok or not profile then return ok, err end
   fs.mkdirp(profile:match("^(.*)/"), 493)
   return fs.write_atomic(profile, "# written by clayer: the applied "
      .. "layers' ENV\n" .. M.env_sh(st), 420)
end

--- The applied layer with this tag, and its index, or nil.
function M.find(st, tag)
   for i, l in ipairs(st.layers) do
      if l.tag == tag then return l, i end
   end
   return nil
end

--- Record a layer as applied: it replaces an entry of the same name (or
-- the same tag for unnamed layers) in place, else it is appended.
function M.record(st, entry)
   for i, l in ipairs(st.layers) do
      if (entry.name and l.name == entry.name) or l.tag == entry.tag then
         st.layers[i] = entry
         return
      end
   end
   st.layers[#st.layers + 1] = entry
end

return M
