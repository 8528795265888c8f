--- The github: backend: one release per tag in OWNER/REPO (DESIGN §8).
-- Lookups go only through releases/tags/{tag}, so a draft is a miss.
-- Publishing creates a draft, uploads the assets, then publishes it: a
-- reader only ever sees complete releases, and repositories with
-- immutable releases work.  Every wait and bound comes from the policy
-- (policy.github, then policy.http, then the defaults below).
local fs = require "clayer.fs"
local hash = require "clayer.hash"
local http = require "clayer.http"
local json = require "clayer.json"
local log = require "clayer.log"
local proc = require "clayer.proc"

local M = {}

--- Defaults of the bounds this backend reads from policy.github (or
-- policy.http for the first four).
M.DEFAULTS = {
   connect_timeout = 30,      -- seconds to connect
   idle_timeout = 60,         -- seconds without a byte before giving up
   retries = 3,               -- retries after a 5xx, reset or stall
   backoff = 1,               -- first backoff in seconds, doubled each time
   max_backoff = 60,          -- cap on one backoff
   max_wait = 300,            -- longest rate-limit wait accepted (seconds)
   rate_retries = 4,          -- retries after rate limits (5 attempts)
   secondary_wait = 60,       -- wait for a secondary limit without hints
   wait_scale = 1,            -- factor on server-given waits (tests: small)
   per_page = 100,            -- page size of listings
   asset_limit = 2147483648 - 16 * 1048576,   -- bytes per asset
   draft_max_age = 86400,     -- prune deletes older drafts (killed runs)
   request_timeout = 0,       -- total seconds per API call (0: none)
}

local GH = {}
GH.__index = GH

local JSON_ACCEPT = "application/vnd.github+json"
local API_VERSION = "2022-11-28"
local SCOPE_FIX = "the token needs the 'contents: write' permission "
   .. "(fine-grained token) or the 'repo' scope (classic token) on "

local function bound(opts, k)
   local p = opts and opts.policy or {}
   local g, h = p.github or {}, p.http or {}
   local v = g[k]
   if v == nil then v = h[k] end
   if v == nil then v = M.DEFAULTS[k] end
   return v
end

--- The largest archive part this backend accepts, in bytes (for
-- tar.create's part_size).
function M.part_size(opts)
   return math.floor(bound(opts, "asset_limit"))
end

local function trim(s)
   return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

local function host_of(url)
   local auth = url:match("^%a[%w+.-]*://([^/?#]*)") or ""
   auth = auth:gsub("^.*@", "")
   local host = auth:match("^%[([^%]]*)%]") or auth:gsub(":%d*$", "")
   return host:lower()
end

local function loopback(host)
   return host == "localhost" or host == "::1"
      or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

--- Whether a token may go to url: https, or plain http to loopback.
local function token_ok(url)
   local scheme = (url:match("^(%a[%w+.-]*):") or ""):lower()
   if scheme == "https" then return true end
   return scheme == "http" and loopback(host_of(url))
end

local function find_token(opts)
   local function set(v) return type(v) == "string" and trim(v) ~= "" end
   if set(opts.token) then return trim(opts.token) end
   for _, k in ipairs { "GH_TOKEN", "GITHUB_TOKEN" } do
      local v = os.getenv(k)
      if set(v) then return trim(v) end
   end
   if opts.token_file then
      local text, err = fs.read(opts.token_file)
      if not text then return nil, "--token-file: " .. tostring(err) end
      if not set(text) then
         return nil, "--token-file: " .. opts.token_file .. " is empty"
      end
      return trim(text)
   end
   return false
end

--- Open the backend for "OWNER/REPO".
-- @param opts token, token_file, cacert, policy
-- @return backend, or nil, err
function M.new(rest, opts)
   opts = opts or {}
   local owner, repo = tostring(rest):match("^([%w_.-]+)/([%w_.-]+)$")
   if not owner then
      return nil, "github: cache needs OWNER/REPO: github:OWNER/REPO (got '"
         .. tostring(rest) .. "')"
   end
   local token, terr = find_token(opts)
   if token == nil then return nil, terr end
   if token then log.secret(token) end
   local api = os.getenv("CLAYER_GITHUB_API")
   if not api or api == "" then api = "https://api.github.com" end
   api = api:gsub("/+$", "")
   if not api:match("^https?://") then
      return nil, "CLAYER_GITHUB_API must be an http(s) URL: " .. api
   end
   if token and not token_ok(api) then
      return nil, ("refusing to send the GitHub token over plain http to "
         .. "%s (CLAYER_GITHUB_API): use https"):format(host_of(api))
   end
   local self = setmetatable({
      uri = "github:" .. owner .. "/" .. repo,
      owner = owner, repo = repo, api = api,
      base = ("/repos/%s/%s"):format(owner, repo),
      token = token or nil, cacert = opts.cacert, opts = opts,
      releases = {},
   }, GH)
   self.part_size = M.part_size(opts)
   return self
end

local function valid_tag(tag)
   return type(tag) == "string" and tag:match("^[%w][%w._+-]*$") ~= nil
end

--- An RFC 3339 UTC time ("2024-05-01T12:00:00Z") as nanoseconds since
-- the epoch, or nil.
function M.parse_time(s)
   local y, mo, d, hh, mm, ss = tostring(s):match(
      "^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)")
   if not y then return nil end
   y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
   -- days from civil (Howard Hinnant's algorithm)
   if mo <= 2 then y = y - 1 end
   local era = (y >= 0 and y or y - 399) // 400
   local yoe = y - era * 400
   local mp = (mo + 9) % 12
   local doy = (153 * mp + 2) // 5 + d - 1
   local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
   local days = era * 146097 + doe - 719468
   local secs = days * 86400 + tonumber(hh) * 3600 + tonumber(mm) * 60
      + tonumber(ss)
   return secs * 1000000000
end

local function now_s()
   return proc.time()
end

-- Sleep s seconds (already scaled and bounded by the caller).
local function pause(s)
   if s > 0 then
      local ok, err = proc.sleep(s)
      if not ok then return nil, err end
   end
   return true
end

function GH:headers(accept, extra)
   local h = {
      ["Accept"] = accept or JSON_ACCEPT,
      ["X-GitHub-Api-Version"] = API_VERSION,
      ["User-Agent"] = "clayer",
   }
   if self.token then h["Authorization"] = "Bearer " .. self.token end
   for k, v in pairs(extra or {}) do h[k] = v end
   return h
end

local function verbose_fn()
   if log.verbose_on() then
      return function(line) log.verbose("%s", line) end
   end
   return nil
end

-- The message GitHub put in an error body, if any.
local function body_message(res)
   local b = res.body and json.decode(res.body)
   if type(b) ~= "table" then return nil, nil end
   local msg = type(b.message) == "string" and b.message or nil
   return msg, b
end

local function short(url)
   return (url:gsub("^%a[%w+.-]*://[^/]*", ""):gsub("%?.*$", ""))
end

-- How long a rate-limited answer asks us to wait (seconds), or nil when
-- it is no rate limit.  `n` counts rate-limit retries so far.
function GH:rate_wait(res, n)
   local hd = res.headers or {}
   local msg = body_message(res) or ""
   local lower = msg:lower()
   local limited = res.status == 429 or hd["retry-after"] ~= nil
      or hd["x-ratelimit-remaining"] == "0"
      or lower:find("rate limit", 1, true) ~= nil
   if res.status ~= 403 and res.status ~= 429 then return nil end
   if not limited then return nil end
   local scale = bound(self.opts, "wait_scale")
   local ra = tonumber(hd["retry-after"])
   if ra then return math.max(0, ra) * scale end
   if hd["x-ratelimit-remaining"] == "0" and tonumber(hd["x-ratelimit-reset"])
   then
      return math.max(0, tonumber(hd["x-ratelimit-reset"]) - now_s() + 1)
         * scale
   end
   -- a secondary limit without hints: at least a minute, then doubling
   return bound(self.opts, "secondary_wait") * 2 ^ n * scale
end

-- Turn a final error answer into a message for the user.
function GH:explain(method, url, res)
   local msg = body_message(res)
   local what = ("%s %s: HTTP %d%s"):format(method, short(url), res.status,
      msg and (" (" .. msg .. ")") or "")
   if res.status == 401 then
      return ("%s: bad token (GH_TOKEN/GITHUB_TOKEN/--token-file): GitHub "
         .. "rejected it; %s"):format(self.uri, what)
   elseif res.status == 403 then
      local need = (res.headers or {})["x-accepted-github-permissions"]
      return ("%s: permission denied: %s%s%s; %s"):format(self.uri,
         SCOPE_FIX, self.owner .. "/" .. self.repo,
         need and (" (GitHub wants " .. need .. ")") or "",
         self.token and what or (what .. "; no token was set: set GH_TOKEN"))
   end
   return self.uri .. ": " .. what
end

--- One API call with retries.
-- @param o url (or path below the API base), method, body (table: JSON;
--   string), body_file, accept, headers, retry (false: none), follow
-- @return the response (any status that is not retried), or nil, err
function GH:call(o)
   local url = o.url or (self.api .. o.path)
   local method = o.method or "GET"
   if self.token and not token_ok(url) then
      return nil, ("%s: refusing to send the GitHub token over plain http "
         .. "to %s"):format(self.uri, host_of(url))
   end
   local extra = o.headers or {}
   local body = o.body
   if type(body) == "table" then
      body = json.encode(body)
      extra["Content-Type"] = "application/json"
   end
   local retries = o.retry == false and 0 or bound(self.opts, "retries")
   local rate_retries = bound(self.opts, "rate_retries")
   local backoff = bound(self.opts, "backoff")
   local tries, rate_tries = 0, 0
   while true do
      local res, err, code = http.request {
         url = url, method = method, headers = self:headers(o.accept, extra),
         body = body, body_file = o.body_file, follow = o.follow,
         connect_timeout = bound(self.opts, "connect_timeout"),
         idle_timeout = bound(self.opts, "idle_timeout"),
         timeout = o.timeout or bound(self.opts, "request_timeout"),
         cacert = self.cacert, verbose = verbose_fn(),
      }
      local why
      if not res then
         if code == "reset" or code == "timeout" or code == "connect" then
            why = "GitHub unreachable: " .. tostring(err)
         else
            return nil, ("%s: GitHub unreachable: %s"):format(self.uri,
               tostring(err)), code
         end
      elseif res.status >= 500 then
         if o.retry == false then return res end
         why = ("%s %s: HTTP %d"):format(method, short(url), res.status)
      else
         local rw = self:rate_wait(res, rate_tries)
         if not rw then return res end
         local max = bound(self.opts, "max_wait")
         if rw > max then
            return nil, ("%s: GitHub rate limit: it asks to wait %d s, "
               .. "more than the policy allows (github.max_wait = %d s)")
               :format(self.uri, math.ceil(rw), max), "ratelimit"
         elseif rate_tries >= rate_retries then
            return nil, ("%s: GitHub rate limit: still limited after %d "
               .. "waits (github.rate_retries = %d)"):format(self.uri,
               rate_tries, rate_retries), "ratelimit"
         end
         rate_tries = rate_tries + 1
         log.info("%s: GitHub rate limit; waiting %.3g s", self.uri, rw)
         local ok, perr = pause(rw)
         if not ok then return nil, perr, "interrupted" end
      end
      if why then
         if tries >= retries then
            return nil, ("%s: %s (after %d attempts)"):format(self.uri, why,
               tries + 1), code or "http"
         end
         local wait = math.min(backoff * 2 ^ tries,
            bound(self.opts, "max_backoff"))
         tries = tries + 1
         log.verbose("%s: %s; retry %d of %d in %.3g s", self.uri, why,
            tries, retries, wait)
         local ok, perr = pause(wait)
         if not ok then return nil, perr, "interrupted" end
      end
   end
end

-- A call whose answer must be one of the `ok` statuses; decodes JSON.
-- @return decoded body (or true when empty), response; or nil, err, code
function GH:expect(o, ok)
   local res, err, code = self:call(o)
   if not res then return nil, err, code end
   for _, s in ipairs(ok) do
      if res.status == s then
         if not res.body or res.body == "" then return true, res end
         local v, jerr = json.decode(res.body)
         if v == nil then
            return nil, ("%s: %s %s: %s"):format(self.uri, o.method or "GET",
               short(o.url or o.path), tostring(jerr)), "http"
         end
         return v, res
      end
   end
   return nil, self:explain(o.method or "GET", o.url or (self.api .. o.path),
      res), res.status, res
end

local function esc(s)
   return http.escape(s)
end

-- The repository is readable (so a 404 by tag is a plain miss).
function GH:check_repo()
   if self.repo_ok then return true end
   local v, err, code = self:expect({ path = self.base }, { 200 })
   if not v then
      if code == 404 then
         return nil, ("%s: repository not found, or the token cannot read "
            .. "it%s"):format(self.uri, self.token and ""
            or " (no token: set GH_TOKEN for a private repository)")
      end
      return nil, err
   end
   self.repo_ok = true
   return true
end

-- The published release of a tag: release table, nil on a miss, or nil,
-- err.
function GH:release(tag)
   local rel, err, code = self:expect({
      path = self.base .. "/releases/tags/" .. esc(tag) }, { 200 })
   if rel then
      if type(rel) ~= "table" or rel.tag_name ~= tag or rel.draft then
         return nil
      end
      self.repo_ok = true
      self.releases[tag] = rel
      return rel
   end
   if code == 404 then
      local ok, rerr = self:check_repo()
      if not ok then return nil, rerr end
      return nil
   end
   return nil, err
end

local function asset_named(rel, name)
   for _, a in ipairs(rel.assets or {}) do
      if a.name == name and (a.state == nil or a.state == "uploaded") then
         return a
      end
   end
   return nil
end

function GH:asset_url(a)
   return ("%s%s/releases/assets/%d"):format(self.api, self.base,
      math.tointeger(a.id) or 0)
end

--- Look up a tag.
-- @return meta (layer.json, or a stand-in for the original tool's
-- layer.tar.gz), nil on a miss, or nil, err when the cache is unusable
function GH:find(tag)
   if not valid_tag(tag) then return nil, "invalid tag: " .. tostring(tag) end
   local rel, err = self:release(tag)
   if not rel then return nil, err end
   local created = M.parse_time(rel.created_at) or 0
   local lj = asset_named(rel, "layer.json")
   if lj then
      local res
      res, err = self:call { url = self:asset_url(lj),
         accept = "application/octet-stream" }
      if not res then return nil, err end
      if res.status ~= 200 then
         return nil, self:explain("GET", self:asset_url(lj), res)
      end
      local meta, jerr = json.decode(res.body or "")
      if type(meta) ~= "table" then
         return nil, ("%s: %s/layer.json: %s"):format(self.uri, tag,
            tostring(jerr or "not an object"))
      end
      if meta.tag ~= nil and meta.tag ~= tag then
         return nil, ("%s: %s/layer.json names tag %s"):format(self.uri,
            tag, tostring(meta.tag))
      end
      meta.created_at = created
      return meta
   end
   local gz = asset_named(rel, "layer.tar.gz")
   if gz then
      return { format = "legacy", legacy = true, tag = tag,
         parts = { { name = "layer.tar.gz", size = gz.size } },
         created_at = created }
   end
   return nil, ("%s: release %s has neither layer.json nor layer.tar.gz")
      :format(self.uri, tag)
end

--- The byte sources of an entry's archive, in order: http.open streams
-- that download each part through the API (the redirect to the storage
-- host goes without the token).
function GH:sources(tag, meta)
   local reqs, err = self:requests(tag, meta)
   if not reqs then return nil, err end
   local out = {}
   for i, req in ipairs(reqs) do out[i] = http.open(req) end
   return out
end

-- How the download of part `name` of `tag` resumes when its body breaks
-- midway (http.open's resume): up to `retries` times, waiting `backoff`
-- doubled each time (at most `max_backoff`), each resume reported on
-- stderr.  Only the first download of an entry (its `meta` table) resumes:
-- when it gives up, the restore's whole-download retries (layer.lua,
-- http.retries) each start from byte 0 without resuming, so a part costs
-- at most 1 + retries requests here and one per retry there.
function GH:resume_opts(tag, meta, name)
   local first = not (self.downloads and self.downloads[meta])
   local note
   if log.level >= log.NORMAL then
      note = log.redact(("%s: %s: %s"):format(self.uri, tag, name))
   end
   return { tries = first and math.floor(bound(self.opts, "retries")) or 0,
      backoff = bound(self.opts, "backoff"),
      max_backoff = bound(self.opts, "max_backoff"), log = note }
end

--- The download requests of an entry's parts, in order: http.request
-- options (url, headers, timeouts, resume), for streaming or for
-- prefetching to a file (compose).
function GH:requests(tag, meta)
   local rel = self.releases[tag]
   if not rel then
      local err
      rel, err = self:release(tag)
      if not rel then return nil, err or (tag .. ": not in " .. self.uri) end
   end
   local out = {}
   for i, p in ipairs(meta.parts or {}) do
      local a = type(p.name) == "string" and asset_named(rel, p.name)
      if not a then
         return nil, ("%s: %s: part %d (%s) is missing"):format(self.uri, tag,
            i, tostring(p.name))
      end
      if p.size and a.size ~= p.size then
         return nil, ("%s: %s: part %s is %d bytes, layer.json says %d")
            :format(self.uri, tag, p.name, a.size, p.size)
      end
      local url = self:asset_url(a)
      if self.token and not token_ok(url) then
         return nil, "refusing to send the GitHub token over plain http"
      end
      out[i] = {
         url = url, headers = self:headers("application/octet-stream"),
         connect_timeout = bound(self.opts, "connect_timeout"),
         idle_timeout = bound(self.opts, "idle_timeout"),
         cacert = self.cacert, verbose = verbose_fn(),
         resume = self:resume_opts(tag, meta, p.name),
      }
   end
   self.downloads = self.downloads or setmetatable({}, { __mode = "k" })
   self.downloads[meta] = true
   return out
end

-- The assets of a release (all pages).
function GH:assets(rel)
   return self:pages(("%s/releases/%d/assets"):format(self.base,
      math.tointeger(rel.id)))
end

-- Every item of a paginated listing, following Link: rel="next" verbatim.
function GH:pages(path)
   local url = ("%s%s?per_page=%d"):format(self.api, path,
      bound(self.opts, "per_page"))
   local out, seen = {}, {}
   while url do
      if seen[url] then break end
      seen[url] = true
      local items, res = self:expect({ url = url }, { 200 })
      if not items then return nil, res end
      for _, it in ipairs(type(items) == "table" and items or {}) do
         out[#out + 1] = it
      end
      url = nil
      local link = res and res.headers and res.headers["link"]
      if link then
         for target, rel in link:gmatch('<([^>]*)>%s*;%s*rel="([^"]*)"') do
            if rel == "next" then url = target end
         end
      end
   end
   return out
end

function GH:delete_release(id)
   local ok, err, code = self:expect({ method = "DELETE",
      path = ("%s/releases/%d"):format(self.base, math.tointeger(id)) },
      { 204, 404 })
   if not ok then return nil, err, code end
   return true
end

local function immutable_msg(self)
   return ("%s: the repository has immutable releases (Settings > General "
      .. "> Releases > 'Enable release immutability'): a published release "
      .. "takes no new assets, and a deleted one's tag can never be used "
      .. "again"):format(self.uri)
end

-- Whether a 422 answer says an immutable release once held the tag.
local function reserved(res)
   local msg, b = body_message(res or {})
   local text = msg or ""
   if b and type(b.errors) == "table" then
      for _, e in ipairs(b.errors) do
         if type(e) == "table" and type(e.message) == "string" then
            text = text .. " " .. e.message
         end
      end
   end
   return text:lower():find("immutable", 1, true) ~= nil
end

-- Upload one file as asset `name` of release `rel` (a draft).
-- @return asset, or nil, err
function GH:_upload(rel, name, path, sha256)
   local st = fs.stat(path)
   if not st then return nil, path .. ": No such file or directory" end
   local limit = bound(self.opts, "asset_limit")
   if st.size > limit then
      return nil, ("%s: %s is %d bytes, over the asset limit of %d bytes "
         .. "(github.asset_limit); it must be split into parts")
         :format(self.uri, name, st.size, limit)
   end
   local url = tostring(rel.upload_url or ""):gsub("{[^}]*}$", "")
   if not url:match("^https?://") then
      return nil, self.uri .. ": release has no upload_url"
   end
   url = url .. "?name=" .. esc(name)
   local retries = bound(self.opts, "retries")
   local tries = 0
   -- An asset of this name is there already: the same bytes (an answer
   -- lost after GitHub stored them) are done (C1); anything else, such as
   -- the "starter" asset of a broken upload, is deleted.
   -- @return asset, false (nothing left), or nil, err
   local function settle()
      local list, lerr = self:assets(rel)
      if not list then return nil, lerr end
      for _, a in ipairs(list) do
         if a.name == name then
            if a.state == "uploaded" and a.size == st.size then
               sha256 = sha256 or hash.file(path)
               if sha256 and a.digest == "sha256:" .. sha256 then
                  return a
               end
            end
            local dok, derr = self:expect({ method = "DELETE",
               url = self:asset_url(a) }, { 204, 404 })
            if not dok then return nil, derr end
         end
      end
      return false
   end
   while true do
      local res, err, code = self:call { url = url, method = "POST",
         body_file = path, retry = false,
         headers = { ["Content-Type"] = "application/octet-stream" } }
      local why, taken
      if res and res.status == 201 then
         local a = json.decode(res.body or "")
         if type(a) ~= "table" or a.name ~= name then
            return nil, ("%s: upload of %s came back as %s"):format(self.uri,
               name, type(a) == "table" and tostring(a.name) or "garbage")
         end
         return a
      elseif res and res.status == 422 then
         local msg, b = body_message(res)
         local first = b and type(b.errors) == "table" and b.errors[1] or {}
         if (msg or ""):lower():find("immutable", 1, true) then
            return nil, immutable_msg(self) .. " (" .. msg .. ")"
         end
         if first.code ~= "already_exists" then
            return nil, self:explain("POST", url, res)
         end
         why, taken = "asset " .. name .. " already exists", true
         local a, serr = settle()
         if a then return a end
         if a == nil then return nil, serr end
      elseif res and res.status >= 500 then
         why = ("POST %s: HTTP %d"):format(short(url), res.status)
      elseif res then
         return nil, self:explain("POST", url, res)
      elseif code == "reset" or code == "timeout" or code == "connect" then
         why = err
      else
         return nil, err
      end
      if tries >= retries then
         return nil, ("%s: uploading %s: %s (after %d attempts)"):format(
            self.uri, name, tostring(why), tries + 1)
      end
      local wait = math.min(bound(self.opts, "backoff") * 2 ^ tries,
         bound(self.opts, "max_backoff"))
      tries = tries + 1
      log.verbose("%s: uploading %s: %s; retry %d of %d", self.uri, name,
         tostring(why), tries, retries)
      local ok, perr = pause(wait)
      if not ok then return nil, perr end
      if not taken then
         local a, serr = settle()
         if a then return a end
         if a == nil then return nil, serr end
      end
   end
end

--- Publish layer.json and the parts in folder `dir` as release `tag`.
-- @return "published", "exists" (a complete release with that tag won;
-- nothing of ours is left), or nil, err
function GH:publish(tag, dir, meta)
   if not valid_tag(tag) then return nil, "invalid tag: " .. tostring(tag) end
   if not self.token then
      return nil, ("publishing to %s needs a token: set GH_TOKEN or "
         .. "GITHUB_TOKEN, or use --token-file"):format(self.uri)
   end
   local files = {}
   for _, p in ipairs(meta.parts or {}) do
      if type(p.name) ~= "string" or p.name:find("/", 1, true) then
         return nil, "layer.json: bad part name"
      end
      files[#files + 1] = { name = p.name, sha256 = p.sha256 }
   end
   files[#files + 1] = { name = "layer.json" }
   -- check sizes first: nothing is sent when a file is over the limit
   local limit = bound(self.opts, "asset_limit")
   for _, f in ipairs(files) do
      local st = fs.stat(dir .. "/" .. f.name)
      if not st then
         return nil, dir .. "/" .. f.name .. ": No such file or directory"
      end
      if st.size > limit then
         return nil, ("%s: %s is %d bytes, over the asset limit of %d bytes "
            .. "(github.asset_limit); it must be split into parts "
            .. "(tar.create's part_size)"):format(self.uri, f.name, st.size,
            limit)
      end
   end
   local rel, err = self:release(tag)
   if rel then return "exists" end
   if err then return nil, err end
   local draft, code, res
   draft, err, code, res = self:expect({ method = "POST",
      path = self.base .. "/releases",
      body = { tag_name = tag, name = tag, draft = true, prerelease = true,
         body = "clayer layer " .. tag } }, { 201 })
   -- a 422 on create or publish: someone else's release holds the tag
   -- (theirs wins), or an immutable release once held it
   local function taken(why, answer)
      if self:release(tag) then return "exists" end
      if reserved(answer) then
         return nil, immutable_msg(self) .. ": " .. why
      end
      return nil, why
   end
   if not draft then
      if code == 422 then return taken(err, res) end
      return nil, err
   end
   local function upload_all()
      for _, f in ipairs(files) do
         local a, uerr = self:_upload(draft, f.name, dir .. "/" .. f.name,
            f.sha256)
         if not a then return nil, uerr end
      end
      return true
   end
   local ok, up, uerr = pcall(upload_all)
   if not ok or not up then
      -- no published entry, and no asset left to block the next attempt
      self:delete_release(draft.id)
      if not ok then error(up, 0) end
      return nil, uerr
   end
   local path = ("%s/releases/%d"):format(self.base, math.tointeger(draft.id))
   local done
   done, err, code, res = self:expect({ method = "PATCH", path = path,
      body = { draft = false } }, { 200 })
   if not done then
      if code ~= 422 then
         -- the answer may have been lost after GitHub published it
         local cur = self:expect({ path = path }, { 200 })
         if type(cur) == "table" and cur.draft == false then
            self.releases[tag] = cur
            return "published"
         end
      end
      self:delete_release(draft.id)
      if code == 422 then return taken(err, res) end
      return nil, err
   end
   self.releases[tag] = done
   return "published"
end

--- The entries whose tag starts with `prefix`: {tag, created_at (ns),
-- size, immutable}, newest first.  Drafts are left out.
function GH:list(prefix)
   prefix = prefix or ""
   local items, err = self:pages(self.base .. "/releases")
   if not items then return nil, err end
   self.listed = items      -- stale_drafts looks at the same listing
   local out = {}
   for _, r in ipairs(items) do
      if type(r) == "table" and type(r.tag_name) == "string" and not r.draft
         and r.tag_name:sub(1, #prefix) == prefix then
         local size = 0
         for _, a in ipairs(r.assets or {}) do size = size + (a.size or 0) end
         out[#out + 1] = { tag = r.tag_name, size = size,
            created_at = M.parse_time(r.created_at) or 0,
            immutable = r.immutable == true or nil }
      end
   end
   table.sort(out, function(a, b)
      if a.created_at ~= b.created_at then
         return a.created_at > b.created_at
      end
      return a.tag > b.tag
   end)
   return out
end

--- Drafts older than `max_age` seconds whose tag starts with `prefix`:
-- what killed publishers left behind.  {tag, id, created_at}.
function GH:stale_drafts(prefix, max_age)
   local items, err = self.listed, nil
   self.listed = nil
   if not items then items, err = self:pages(self.base .. "/releases") end
   if not items then return nil, err end
   local out, now = {}, now_s() * 1e9
   max_age = max_age or bound(self.opts, "draft_max_age")
   for _, r in ipairs(items) do
      if type(r) == "table" and r.draft and type(r.tag_name) == "string"
         and r.tag_name:sub(1, #(prefix or "")) == (prefix or "") then
         local t = M.parse_time(r.created_at) or now
         if now - t >= max_age * 1e9 then
            out[#out + 1] = { tag = r.tag_name, id = r.id, created_at = t }
         end
      end
   end
   return out
end

function GH:delete_draft(d)
   return self:delete_release(d.id)
end

--- Delete the release of `tag` and then its tag (C7).  A release of a
-- repository with immutable releases is refused: its tag would be
-- reserved forever.
-- @return true, or nil, err
function GH:delete(tag)
   if not valid_tag(tag) then return nil, "invalid tag: " .. tostring(tag) end
   local rel, err = self:release(tag)
   if not rel then return nil, err or (tag .. ": not in " .. self.uri) end
   if rel.immutable then
      return nil, immutable_msg(self) .. "; not deleting " .. tag
   end
   local ok
   ok, err = self:delete_release(rel.id)
   if not ok then return nil, err end
   self.releases[tag] = nil
   local rok, rerr, code = self:expect({ method = "DELETE",
      path = self.base .. "/git/refs/tags/" .. esc(tag) }, { 204 })
   if not rok and code ~= 422 and code ~= 404 then return nil, rerr end
   return true
end

return M
