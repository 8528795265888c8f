--- `clayer shim FILE`: print shell code (bash, zsh) that records installs
-- into FILE; use as  eval "$(clayer shim Containerfile)".
local fs = require "clayer.fs"
local log = require "clayer.log"
local policy = require "clayer.policy"
local proc = require "clayer.proc"
local shim = require "clayer.shim"

local M = {}

-- The command the shell functions call back: this program under the name
-- it was started with, as an absolute path where one can be found.
local function self_command(cwd)
   local name = arg and arg[0] or "clayer"
   if name:find("/") then return shim.join_path(cwd, name) end
   return shim.which(name, proc.getenv()) or name
end

--- Run the command.
-- @return exit status, or nil, err, code
function M.run(p)
   if #p.args ~= 1 then
      return nil, "usage: clayer shim FILE", "usage"
   end
   local cwd = shim.cwd()
   local file = shim.abspath(p.args[1], cwd)
   local st = fs.stat(file)
   if st and st.type == "dir" then
      return nil, file .. ": Is a directory", "usage"
   elseif not st then
      log.warn(file .. " does not exist yet; the first recorded install "
         .. "creates it")
   end
   local policy_file = p.opts.policy and shim.abspath(p.opts.policy, cwd)
   local pol, err = policy.load(policy_file, file:match("^(.*)/"))
   if not pol then return nil, err, "usage" end
   local settings = pol.shim or {}
   io.stdout:write(shim.shell { file = file, bin = self_command(cwd),
      policy_file = policy_file, tools = settings.tools,
      verbs = settings.verbs })
   return 0
end

return M
