--- Messages: errors, warnings, notes and verbose lines on stderr, one line
-- each, prefixed "clayer: "; secrets registered with log.secret() are
-- replaced by "***" in everything printed.
local M = {}

M.QUIET, M.NORMAL, M.VERBOSE = 0, 1, 2
M.level = M.NORMAL
M.warnings = {}

local secrets = {}

--- Register a value that must never be printed.
function M.secret(value)
   if type(value) == "string" and #value >= 4 then
      secrets[#secrets + 1] = value
   end
end

--- Replace every registered secret in s.
function M.redact(s)
   s = tostring(s)
   for _, v in ipairs(secrets) do
      local i, j = s:find(v, 1, true)
      while i do
         s = s:sub(1, i - 1) .. "***" .. s:sub(j + 1)
         i, j = s:find(v, i + 3, true)
      end
   end
   return s
end

local function emit(line)
   io.stderr:write("clayer: ", M.redact(line), "\n")
   io.stderr:flush()
end

function M.error(msg)
   emit(msg)
end

--- A warning; `msg` may already carry "FILE:LINE:COL: warning: ".
function M.warn(msg)
   msg = M.redact(msg)
   M.warnings[#M.warnings + 1] = msg
   if M.level >= M.NORMAL then
      emit(msg:find(": warning: ", 1, true) and msg or "warning: " .. msg)
   end
end

--- A note shown at normal level.
function M.info(fmt, ...)
   if M.level >= M.NORMAL then emit(fmt:format(...)) end
end

--- Whether verbose output is on (check before formatting much).
function M.verbose_on()
   return M.level >= M.VERBOSE
end

function M.verbose(fmt, ...)
   if M.level >= M.VERBOSE then emit(fmt:format(...)) end
end

--- Output of a command clayer runs, passed through at normal level.
function M.output(line)
   if M.level >= M.NORMAL then
      io.stderr:write(M.redact(line), "\n")
   end
end

--- Human-readable size.
function M.size(n)
   local units = { "B", "KiB", "MiB", "GiB", "TiB" }
   local i = 1
   while n >= 1024 and i < #units do
      n = n / 1024
      i = i + 1
   end
   return i == 1 and ("%d B"):format(n) or ("%.1f %s"):format(n, units[i])
end

return M
