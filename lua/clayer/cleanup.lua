--- Cleanups that run whatever happens, and interrupts that are never
-- swallowed.  SIGINT/SIGTERM arrive as a Lua error ("...: interrupted",
-- raised by src/main.c's hook), which skips any cleanup written after a
-- call; run the call through `always` instead.
local fs = require "clayer.fs"

local M = {}

--- Whether a Lua error value is the interrupt (the pattern cli.lua uses).
function M.is_interrupt(err)
   return tostring(err):match("interrupted$") ~= nil
end

--- After a pcall that turns errors into warnings: raise the interrupt
-- again, so SIGINT/SIGTERM still stop clayer (exit 130).
function M.reraise_interrupt(ok, err)
   if not ok and M.is_interrupt(err) then error(err, 0) end
end

--- Run f(...), then finally() whether f returned or raised; an error
-- (the interrupt included) is raised again after finally.
-- @return what f returns
function M.always(finally, f, ...)
   local r = table.pack(pcall(f, ...))
   local fok, ferr = pcall(finally)
   if not fok then
      -- the interrupt fires once: when it cut finally short, run it again
      if M.is_interrupt(ferr) then finally() end
      if r[1] then error(ferr, 0) end
   end
   if not r[1] then error(r[2], 0) end
   return table.unpack(r, 2, r.n)
end

--- The folder for big temporary files: $TMPDIR when it is set, else
-- /var/tmp (a disk, where /tmp may be a small tmpfs), as podman does.
function M.tmp_root()
   local d = os.getenv("TMPDIR")
   if d and d:sub(1, 1) == "/" then return (d:gsub("(.)/+$", "%1")) end
   return "/var/tmp"
end

--- Run f(dir, ...) with a new folder TMP_ROOT/<name>XXXXXX that is
-- removed afterwards, on an error or an interrupt too.
-- @return what f returns, or nil, err when no folder could be made
function M.with_tmpdir(name, f, ...)
   local root = M.tmp_root()
   local dir, err = fs.mkdtemp(root .. "/" .. name)
   if not dir and root == "/var/tmp" then
      fs.mkdirp(root, 1023)
      dir, err = fs.mkdtemp(root .. "/" .. name)
   end
   if not dir then
      return nil, ("cannot make a temporary folder in %s: %s"):format(root,
         tostring(err))
   end
   return M.always(function() fs.rmtree(dir) end, f, dir, ...)
end

return M
