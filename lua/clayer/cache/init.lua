--- Cache backends, chosen by the URI scheme: dir:PATH, github:OWNER/REPO.
-- Every backend has find(tag), sources(tag, meta), publish(tag, dir,
-- meta), list(prefix) and delete(tag).
local proc = require "clayer.proc"

local M = {}

--- The default cache: dir:/var/cache/clayer for root, else
-- dir:~/.cache/clayer.
function M.default_uri()
   if proc.getuid() == 0 then return "dir:/var/cache/clayer" end
   return "dir:" .. (os.getenv("HOME") or "/tmp") .. "/.cache/clayer"
end

--- Open the backend for a URI.
-- @return backend, or nil, err
function M.open(uri, opts)
   local scheme, rest = tostring(uri):match("^([%a][%w+.-]*):(.*)$")
   if not scheme then
      -- a bare path (/x, or ~/x as a shell would have expanded it) is a
      -- dir: cache
      if tostring(uri):match("^[/~]") then
         scheme, rest = "dir", uri
      else
         return nil, "unknown cache backend: " .. tostring(uri)
      end
   end
   local ok, backend = pcall(require, "clayer.cache." .. scheme)
   require("clayer.cleanup").reraise_interrupt(ok, backend)
   if not ok or scheme == "init" then
      return nil, "unknown cache backend: " .. scheme
         .. " (in '" .. tostring(uri) .. "')"
   end
   return backend.new(rest, opts or {})
end

return M
