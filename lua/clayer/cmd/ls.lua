--- clayer ls [--json]: the layers in a cache, with name, key, size and
-- age, newest first.
local json = require "clayer.json"
local log = require "clayer.log"
local proc = require "clayer.proc"
local retention = require "clayer.retention"

local M = {}

local function age(seconds)
   if seconds < 120 then return ("%ds"):format(seconds) end
   if seconds < 7200 then return ("%dm"):format(seconds // 60) end
   if seconds < 172800 then return ("%dh"):format(seconds // 3600) end
   return ("%dd"):format(seconds // 86400)
end

function M.run(p, cli)
   if #p.args > 0 then
      return nil, "usage: clayer ls [--json]", "usage"
   end
   local c, pol, code = require("clayer.cmd.prune").open(p, cli)
   if not c then return nil, pol, code end
   local entries, err = c:list("layer-")
   if not entries then return nil, err, "cache" end
   local now = proc.time()
   local rows = {}
   for _, e in ipairs(entries) do
      local name, key = retention.parse(e.tag)
      if key then
         local created = (e.created_at or 0) / 1e9
         rows[#rows + 1] = { tag = e.tag, name = name or json.null,
            key = key, size = e.size or 0,
            created = os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(created)),
            age = math.max(0, math.floor(now - created)) }
      end
   end
   if p.opts.json then
      cli.print_json({ command = "ls", ok = true, cache = c.uri,
         layers = json.array(rows), error = json.null,
         warnings = json.array(log.warnings) })
      return cli.EXIT.OK
   end
   if #rows == 0 then
      io.stdout:write("no layers in ", c.uri, "\n")
      return cli.EXIT.OK
   end
   io.stdout:write(("%-20s %-16s %10s %6s  %s\n"):format("NAME", "KEY",
      "SIZE", "AGE", "TAG"))
   for _, r in ipairs(rows) do
      io.stdout:write(("%-20s %-16s %10s %6s  %s\n"):format(
         r.name == json.null and "-" or r.name, r.key, log.size(r.size),
         age(r.age), r.tag))
   end
   return cli.EXIT.OK
end

return M
