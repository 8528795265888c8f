--- Shared helpers for the specs: scratch folders, the binary, shell runs.
local M = {}

M.bin = os.getenv("CLAYER_BIN") or "build/clayer-lua"
M.repo = os.getenv("CLAYER_REPO") or "."

--- Quote a string for /bin/sh.
function M.q(s)
   return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- Run a shell command; return its output (stdout and stderr) and status.
function M.sh(cmd)
   local p = assert(io.popen("(" .. cmd .. ") 2>&1"))
   local out = p:read("a")
   local _, _, code = p:close()
   return out, code
end

--- Make a fresh scratch folder under /tmp and return its path.
function M.tmpdir()
   local out = M.sh("mktemp -d /tmp/clayer-spec.XXXXXX")
   local dir = out:gsub("%s+$", "")
   M._dirs = M._dirs or {}
   M._dirs[#M._dirs + 1] = dir
   return dir
end

--- Remove every scratch folder made so far.
function M.cleanup()
   for _, d in ipairs(M._dirs or {}) do
      os.execute("rm -rf " .. M.q(d))
   end
   M._dirs = {}
end

function M.write(path, data)
   local f = assert(io.open(path, "wb"))
   f:write(data)
   f:close()
end

function M.read(path)
   local f = io.open(path, "rb")
   if not f then return nil end
   local s = f:read("a")
   f:close()
   return s
end

--- Run the clayer CLI with a shell-quoted argument string.
function M.clayer(args, env)
   local link = M.bin:gsub("clayer%-lua$", "clayer")
   return M.sh((env or "") .. " " .. M.q(link) .. " " .. args)
end

-- A tiny root with /bin/sh and a few tools (and their libraries), so RUN
-- can run chrooted into it.
function M.make_root(dir)
   local out, code = M.sh("R=" .. M.q(dir) .. [[
      set -e
      mkdir -p $R/etc $R/tmp $R/var/lib
      for t in /bin/sh /bin/rm /bin/mkdir /bin/ln /bin/chmod /bin/cat \
               /bin/echo /bin/touch /bin/mv; do
         mkdir -p $R$(dirname $t)
         cp -L $t $R$t
         for lib in $(ldd $t | grep -o '/[^ ]*'); do
            cp -L --parents $lib $R
         done
      done
      cp /etc/os-release $R/etc/os-release
      printf 'keep\n' > $R/etc/keep
      printf 'gone\n' > $R/etc/gone
      mkdir -p $R/data/dir/sub && echo x > $R/data/dir/sub/f
      echo turn-me-into-a-dir > $R/data/typechange
   ]])
   assert(code == 0, out)
end

return M
