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

--- Replace every registered secret in s (or every value of the list
-- `values`, when given) by "***".
function M.redact(s, values)
   s = tostring(s)
   for _, v in ipairs(values or secrets) do
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

--- A progress display for one phase (download, extract, compress,
-- upload, scan).  On a terminal, one line redrawn at most ten times a
-- second with bytes, rate and ETA; elsewhere nothing until the end.
-- @return {update = function(bytes), done = function([bytes])}
function M.progress(phase, total)
   local proc = require "clayer.proc"
   local tty = M.level >= M.NORMAL and proc.isatty(2)
   local t0 = proc.clock()
   local last, shown = -1, false
   local p = {}
   local function line(n, now)
      local rate = n / math.max(now - t0, 1e-3)
      local text = ("clayer: %s %s"):format(phase, M.size(n))
      if total and total > 0 then
         text = text .. (" / %s"):format(M.size(total))
      end
      text = text .. ("  %s/s"):format(M.size(rate))
      if total and total > n and rate > 0 then
         text = text .. ("  ETA %ds"):format(math.ceil((total - n) / rate))
      end
      return text
   end
   function p.update(n)
      if not tty then return end
      local now = proc.clock()
      if now - last < 0.1 then return end
      last = now
      io.stderr:write("\r\27[K", line(n, now))
      io.stderr:flush()
      shown = true
   end
   function p.done(n)
      if tty and shown then
         io.stderr:write("\r\27[K")
         io.stderr:flush()
      end
      if n and M.level >= M.VERBOSE then
         M.verbose("%s: %s in %.2f s", phase, M.size(n), proc.clock() - t0)
      end
   end
   return p
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
