--- The secret scan before publishing: a layer that holds the live token,
-- a credential file or a private key is refused, naming the files.
-- The policy's `secrets.allow` lists paths (or fnmatch patterns, or
-- folders) whose credential files and keys may be published; the live
-- token is refused everywhere.  Files over `secrets.max_size` bytes are
-- judged by their path alone.
local fs = require "clayer.fs"
local log = require "clayer.log"

local M = {}

M.CHUNK = 65536
M.DEFAULT_MAX_SIZE = 16 * 1024 * 1024

-- Credential files recognised by the end of their path.  `needs` lists
-- Lua patterns one of which the content must match for the file to count
-- (nil: the path alone is enough).
local CREDENTIALS = {
   { tail = "/.netrc", why = "credential file" },
   { tail = "/_netrc", why = "credential file" },
   { tail = "/.git-credentials", why = "credential file" },
   { tail = "/.config/git/credentials", why = "credential file" },
   { tail = "/.config/gh/hosts.yml", why = "GitHub CLI credentials" },
   { tail = "/.aws/credentials", why = "AWS credentials" },
   { tail = "/.config/gcloud/credentials.db", why = "gcloud credentials" },
   { tail = "/.config/gcloud/access_tokens.db", why = "gcloud credentials" },
   { tail = "/.config/gcloud/application_default_credentials.json",
      why = "gcloud credentials" },
   { tail = "/.azure/accessTokens.json", why = "Azure CLI credentials" },
   { tail = "/.azure/msal_token_cache.json", why = "Azure CLI credentials" },
   { tail = "/.docker/config.json", why = "Docker registry credentials",
      needs = { '"auth"%s*:%s*"[^"]', '"identitytoken"%s*:%s*"[^"]' } },
   { tail = "/.pypirc", why = "PyPI credentials" },
   { tail = "/.npmrc", why = "npm auth token",
      needs = { "_authToken%s*=%s*[^%s]", "_auth%s*=%s*[^%s]",
         "_password%s*=%s*[^%s]" } },
}

-- SSH private keys by name.
local KEY_NAMES = {
   id_rsa = true, id_dsa = true, id_ecdsa = true, id_ed25519 = true,
   ["id_ecdsa_sk"] = true, ["id_ed25519_sk"] = true,
}

-- The marker of a PEM private key: "-----BEGIN ... PRIVATE KEY-----".
local PEM_TAIL = "PRIVATE KEY-----"
local PEM = "%-%-%-%-%-BEGIN [%w ]-PRIVATE KEY%-%-%-%-%-"
local PEM_MAX = 64   -- longest marker we look for

--- An fnmatch(3) pattern (FNM_PATHNAME: `*`, `?` and `[...]` never match
-- '/') as an anchored Lua pattern.
function M.glob(p)
   local out, i = { "^" }, 1
   while i <= #p do
      local c = p:sub(i, i)
      if c == "*" then
         out[#out + 1] = "[^/]*"
      elseif c == "?" then
         out[#out + 1] = "[^/]"
      elseif c == "[" and p:find("]", i + 2, true) then
         local j = p:find("]", i + 2, true)
         local body = p:sub(i + 1, j - 1)
         local neg = body:match("^[!^]")
         if neg then body = body:sub(2) end
         body = body:gsub("[%%%]%^]", "%%%0")
         out[#out + 1] = "[" .. (neg and "^" or "") .. body .. "]"
         i = j
      elseif c == "\\" and i < #p then
         i = i + 1
         out[#out + 1] = "%" .. p:sub(i, i)
      else
         out[#out + 1] = c:gsub("%W", "%%%0")
      end
      i = i + 1
   end
   out[#out + 1] = "$"
   return table.concat(out)
end

--- Whether `path` is allowed by the list: an exact path, a folder above
-- it, or an fnmatch pattern matching it.
function M.allowed(path, allow)
   for _, a in ipairs(allow or {}) do
      if type(a) == "string" and a ~= "" then
         if a:find("[%*%?%[]") then
            if path:match(M.glob(a)) then return true end
         else
            local dir = a:gsub("/+$", "")
            if path == a or path:sub(1, #dir + 1) == dir .. "/" then
               return true
            end
         end
      end
   end
   return false
end

-- Why a path is a credential file or key by name alone, and the pattern
-- its content must match (nil: none).
local function by_path(path)
   for _, c in ipairs(CREDENTIALS) do
      if path:sub(-#c.tail) == c.tail then return c.why, c.needs end
   end
   local base = path:match("([^/]*)$")
   if KEY_NAMES[base] then return "SSH private key" end
   return nil
end

-- Whether s matches one of the patterns.
local function any(s, patterns)
   for _, p in ipairs(patterns) do
      if s:find(p) then return true end
   end
   return false
end

-- Read the file in chunks, looking for the tokens, a PEM private key
-- marker and, when given, the Lua patterns `needs` (each searched within
-- a window of two chunks).
-- @return {token = bool, pem = bool, needs = bool}, or nil, err
local function read_scan(file, tokens, needs)
   local f, err = io.open(file, "rb")
   if not f then return nil, err end
   local keep = PEM_MAX
   for _, t in ipairs(tokens) do keep = math.max(keep, #t) end
   keep = keep - 1
   if needs then keep = math.max(keep, M.CHUNK) end
   local found = { token = false, pem = false, needs = false }
   local tail = ""
   while true do
      local chunk = f:read(M.CHUNK)
      if not chunk then break end
      -- each window starts with the end of the one before, so a token or
      -- marker split across two chunks is still found
      local s = tail .. chunk
      if not found.token then
         for _, t in ipairs(tokens) do
            if s:find(t, 1, true) then
               found.token = true
               break
            end
         end
      end
      if not found.pem and s:find(PEM_TAIL, 1, true) and s:find(PEM) then
         found.pem = true
      end
      if needs and not found.needs then found.needs = any(s, needs) end
      if found.token and found.pem and (found.needs or not needs) then
         break
      end
      tail = #s > keep and s:sub(-keep) or s
   end
   f:close()
   return found
end

--- Scan the entries about to be published.
-- @param entries the change set's entries ({path, whiteout, type})
-- @param root the prefix on disk ("" for /)
-- @param policy the policy (uses policy.secrets.allow, .max_size)
-- @param opts {tokens = {...}}: live token values to look for
-- @return nil when clean, or an array of {path = P, why = W}
function M.scan(entries, root, policy, opts)
   root = root or ""
   local conf = (policy and policy.secrets) or {}
   local allow = conf.allow or {}
   local max_size = conf.max_size or M.DEFAULT_MAX_SIZE
   local tokens = {}
   for _, t in ipairs((opts and opts.tokens) or {}) do
      if type(t) == "string" then
         t = t:gsub("^%s+", ""):gsub("%s+$", "")
         if #t >= 8 then tokens[#tokens + 1] = t end
      end
   end
   local function has_token(s)
      for _, t in ipairs(tokens) do
         if type(s) == "string" and s:find(t, 1, true) then return true end
      end
      return false
   end
   -- a path shown in the refusal never shows the token itself
   local function shown(s)
      return log.redact(s, tokens)
   end
   local found, seen = {}, {}
   for _, e in ipairs(entries) do
      local path = e.path
      local st = not e.whiteout and fs.lstat(root .. path)
      -- the archive holds names and symlink targets too
      if has_token(path) then
         found[#found + 1] = { path = shown(path),
            why = "its name contains the live token" }
      elseif st and st.type == "link" and has_token(st.target
            or fs.readlink(root .. path)) then
         found[#found + 1] = { path = path,
            why = "symlink target contains the live token" }
      elseif st and st.type == "file" then
         local id = st.dev .. ":" .. st.ino
         local ok_path = M.allowed(path, allow)
         local why, needs
         if not ok_path then why, needs = by_path(path) end
         -- a file too big to read, unreadable, or read before under
         -- another name (a hardlink) is judged by its path
         local r = seen[id]
         if r then
            r = { token = r.token, pem = r.pem, needs = true }
         elseif st.size > max_size or (ok_path and #tokens == 0) then
            r = { token = false, pem = false, needs = true }
         else
            r = read_scan(root .. path, tokens, needs)
               or { token = false, pem = false, needs = true }
         end
         seen[id] = r
         local reasons = {}
         if r.token then reasons[#reasons + 1] = "contains the live token" end
         if why and (not needs or r.needs) then
            reasons[#reasons + 1] = why
         elseif r.pem and not ok_path then
            reasons[#reasons + 1] = "private key"
         end
         if #reasons > 0 then
            found[#found + 1] = { path = path,
               why = table.concat(reasons, "; ") }
         end
      end
   end
   if #found == 0 then return nil end
   return found
end

--- The message for a refusal.
function M.message(found)
   local parts = {}
   for _, f in ipairs(found) do
      parts[#parts + 1] = ("%s (%s)"):format(f.path, f.why)
   end
   return "refusing to publish: " .. table.concat(parts, ", ")
      .. "; the layer was built but not published (a path the policy's "
      .. "secrets.allow lists may be published, the live token never)"
end

local function trim(s)
   return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

--- The live token values: GH_TOKEN, GITHUB_TOKEN, and the cache
-- options' token and token_file, and `extra` values.
function M.live_tokens(cache_opts, extra)
   local out = {}
   local function add(v)
      if type(v) == "string" and trim(v) ~= "" then out[#out + 1] = trim(v) end
   end
   add(os.getenv("GH_TOKEN"))
   add(os.getenv("GITHUB_TOKEN"))
   cache_opts = cache_opts or {}
   add(cache_opts.token)
   if cache_opts.token_file then add(fs.read(cache_opts.token_file)) end
   for _, v in ipairs(extra or {}) do add(v) end
   return out
end

-- Which of the key's extras lines ("arg:K=V", "salt:S", or the salt
-- alone) holds a token: a description naming the input, not the value.
local function extras_culprit(extras, tokens)
   for line in (extras .. "\n"):gmatch("([^\n]*)\n") do
      for _, t in ipairs(tokens) do
         if line:find(t, 1, true) then
            local kind, name = line:match("^(%a+):([^=]*)=")
            if kind == "arg" and not name:find(t, 1, true) then
               return "build arg " .. name
            end
            if kind == "salt" or not kind then return "the salt" end
            return kind .. " input"
         end
      end
   end
   return nil
end

--- The live token in what layer.json, applied.json and env.sh carry:
-- the ENV values and the key's extras (build args, salt).
-- @param env {{K, V}...} the build's ENV
-- @param extras the key's extras string
-- @return nil when clean, or the refusal message (names, never values)
function M.check_values(tokens, env, extras)
   local found = {}
   for _, kv in ipairs(env or {}) do
      for _, t in ipairs(tokens) do
         if type(kv[2]) == "string" and kv[2]:find(t, 1, true) then
            found[#found + 1] = "ENV " .. tostring(kv[1])
            break
         end
      end
   end
   local x = type(extras) == "string" and extras_culprit(extras, tokens)
   if x then found[#found + 1] = x .. " (in the key's extras)" end
   if #found == 0 then return nil end
   return "refusing to publish: the live token is in "
      .. table.concat(found, ", ") .. "; it would be written into "
      .. "layer.json; the layer was built but not published"
end

--- The scan of a layer about to be published (called by layer.lua).
-- @param l the layer (root, policy, cache_opts, an open cache's token)
-- @param changes the change set
-- @param env optional: the build's ENV {{K, V}...}; its values and the
--   key's extras are checked for the live token too
-- @return nil when clean, or the refusal message
function M.check_layer(l, changes, env)
   local tokens = {}
   for _, t in ipairs(M.live_tokens(l.cache_opts,
         { l._cache and l._cache.token })) do
      if #t >= 8 then tokens[#tokens + 1] = t end
   end
   if #tokens > 0 then
      local _, _, extras = l:key()
      local msg = M.check_values(tokens, env, extras)
      if msg then return msg end
   end
   local found = M.scan(changes.entries, l.root, l.policy,
      { tokens = tokens })
   return found and M.message(found) or nil
end

return M
