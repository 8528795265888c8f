--- The fake GitHub server (tests/fixtures/fakegithub.py) for specs that
-- drive clayer through a github: cache.
local h = require "helper"
local http = require "clayer.http"
local json = require "clayer.json"
local proc = require "clayer.proc"

local M = { TOKEN = "ghp_clayerSpecToken0123456789abcdef" }

local fake = {}

--- Start the server once; returns {api = URL, ports = {...}}.
function M.start()
   if fake.api then return fake end
   fake.dir = h.sh("mktemp -d /tmp/clayer-gh.XXXXXX"):gsub("%s+$", "")
   h.write(fake.dir .. "/token", M.TOKEN .. "\n")
   local pf = fake.dir .. "/ports"
   local out = h.sh(("python3 %s --port-file %s --token-file %s "
      .. "--lifetime 300 >%s 2>&1 & echo $!"):format(
      h.q(h.repo .. "/tests/fixtures/fakegithub.py"), h.q(pf),
      h.q(fake.dir .. "/token"), h.q(fake.dir .. "/server.log")))
   fake.pid = assert(out:match("%d+"))
   for _ = 1, 200 do
      local text = h.read(pf)
      local ports = text and json.decode(text)
      if type(ports) == "table" then
         fake.ports = ports
         fake.api = "http://127.0.0.1:" .. math.tointeger(ports.api)
         return fake
      end
      proc.sleep(0.02)
   end
   error("fakegithub.py did not start: " .. tostring(
      h.read(fake.dir .. "/server.log")))
end

--- Stop the server and remove its folder.
function M.stop()
   if fake.pid then os.execute("kill " .. fake.pid .. " 2>/dev/null") end
   if fake.dir then os.execute("rm -rf " .. h.q(fake.dir)) end
   fake = {}
end

--- POST a control request (see fakegithub.py's header).
function M.control(req)
   local res = assert(http.request { url = M.start().api .. "/_control",
      method = "POST", body = json.encode(req),
      headers = { ["Content-Type"] = "application/json" } })
   assert(res.status < 300, "control: " .. tostring(res.body))
   return json.decode(res.body)
end

--- The request log since the last reset.
function M.log(reset)
   local res = assert(http.request { url = M.start().api .. "/_log"
      .. (reset and "?reset=1" or "") })
   return json.decode(res.body)
end

local counter = 0
--- A fresh public repository; returns "owner/name".
function M.new_repo()
   counter = counter + 1
   local name = ("spec/c%d-%d"):format(counter, proc.getpid())
   M.control { op = "repo", repo = name }
   return name
end

return M
