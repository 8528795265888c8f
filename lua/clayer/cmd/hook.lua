--- `clayer hook install -- TOOL ARGS...`: the shim's callback.  It records
-- one successful install as a RUN line in the Containerfile named by
-- $CLAYER_SHIM_FILE (the shim sets it to an absolute path).  Exit 0 when
-- the line was recorded or there was nothing to record; 1 with one
-- warning line when it could not be recorded.
local log = require "clayer.log"
local policy = require "clayer.policy"
local shim = require "clayer.shim"

local M = {}

--- Run the command.
-- @return exit status, or nil, err, code
function M.run(p)
   if p.args[1] ~= "install" or #p.args < 2 then
      return nil, "usage: clayer hook install -- TOOL ARGS...", "usage"
   end
   local file = os.getenv("CLAYER_SHIM_FILE")
   if not file or file == "" then
      return nil, "hook: CLAYER_SHIM_FILE names no Containerfile", "usage"
   end
   local cwd = shim.cwd()
   file = shim.abspath(file, cwd)
   local argv = table.move(p.args, 2, #p.args, 1, {})
   local function fail(why)
      log.warn(("%s not recorded in %s: %s"):format(argv[1], file, why))
      return 1
   end
   local pol, err = policy.load(p.opts.policy, file:match("^(.*)/"))
   if not pol then return fail(err) end
   local what, line = shim.record(file, argv, { policy = pol, cwd = cwd,
      warn = log.warn })
   if not what then return fail(line) end
   if what == "recorded" and pol.shim and pol.shim.announce then
      log.info("recorded in %s: %s", file, line)
   end
   return 0
end

return M
