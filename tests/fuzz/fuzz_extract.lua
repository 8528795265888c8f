--- Fuzz driver: tar.extract of arbitrary bytes (zstd or gzip) into a
-- scratch root.  check(data) raises when the extractor raises, returns an
-- undocumented error, writes anything outside the root, leaves a failed
-- root other than as it was, or leaves its journal behind.
--
-- An input whose first byte is 0x01 is a plain tar after that byte: the
-- driver fixes the checksum of every ustar header in it and wraps it in a
-- zstd frame of raw blocks, so that mutations reach the extractor's own
-- logic instead of dying in the decompressor or on a header checksum.
-- Any other input is extracted as it is (format "auto": zstd or gzip).
local fs = require "clayer.fs"
local tar = require "clayer.tar"

local M = {}

-- The error codes tar.extract documents (docs/RUNTIME.md).
local CODES = { digest = true, truncated = true, format = true,
   refused = true, space = true, io = true, interrupted = true }

local area, root, input, before

-- A name on one line: control characters and backslashes escaped, so
-- that a member named "x\ny" cannot pass for two lines of the listing.
local function one_line(s)
   return (s:gsub("[%c\\]", function(c)
      return ("\\%03d"):format(c:byte())
   end))
end

-- Every path below dir (not following links), with type, mode, size and
-- link target; `skip` names top-level entries left out.
local function listing(dir, skip, out, prefix)
   out = out or {}
   prefix = prefix or ""
   for _, name in ipairs(fs.dir(dir) or {}) do
      if not (skip and skip[name]) then
         local p = dir .. "/" .. name
         local st = fs.lstat(p)
         if st then
            out[#out + 1] = ("%s%s %s %o %d %s"):format(prefix,
               one_line(name), st.type, st.mode,
               st.type == "file" and st.size or 0, one_line(st.target or ""))
            if st.type == "dir" then
               listing(p, nil, out, prefix .. one_line(name) .. "/")
            end
         end
      end
   end
   return table.concat(out, "\n")
end

-- Set the checksum of every 512-byte block that looks like a ustar
-- header.
local function fix_checksums(t)
   local out = {}
   for off = 1, #t, 512 do
      local b = t:sub(off, off + 511)
      if #b == 512 and b:sub(258, 262) == "ustar" then
         b = b:sub(1, 148) .. "        " .. b:sub(157)
         local sum = 0
         for i = 1, 512 do sum = sum + b:byte(i) end
         b = b:sub(1, 148) .. ("%06o\0 "):format(sum) .. b:sub(157)
      end
      out[#out + 1] = b
   end
   return table.concat(out)
end

--- A zstd frame holding `t` in raw blocks, without a checksum.
function M.zstd_raw(t)
   local out = { string.pack("<I4", 0xFD2FB528), "\0\x58" }
   local n = #t
   local off = 1
   repeat
      local b = t:sub(off, off + 65535)
      off = off + #b
      local last = off > n and 1 or 0
      out[#out + 1] = string.pack("<I3", last | (#b << 3)) .. b
   until off > n
   return table.concat(out)
end

--- The bytes to extract for a fuzz input (see the top of this file).
function M.archive(data)
   local first = data:byte(1)
   if first == 1 then
      return M.zstd_raw(fix_checksums(data:sub(2)))
   end
   return data
end

--- Make the scratch area: AREA/a/b/c/R is the root; AREA/outside holds
-- files an escape would overwrite; AREA/a/b/c/in is the input.  The
-- root sits four levels down, so "../../../../x" still lands in AREA.
function M.setup(base)
   base = base or (fs.stat("/dev/shm") and "/dev/shm" or "/tmp")
   area = assert(fs.mkdtemp(base .. "/clayer-fuzz-"))
   local deep = area .. "/a/b/c"
   root = deep .. "/R"
   input = deep .. "/in"
   assert(fs.mkdirp(root, 493))
   assert(fs.mkdirp(area .. "/outside/etc", 493))
   fs.write_atomic(area .. "/outside/etc/passwd", "root:x:0:0\n", 420)
   fs.write_atomic(area .. "/a/keep", "keep\n", 420)
   assert(fs.symlink("../outside/etc", area .. "/a/b/etc"))
   before = nil
   before = M.outside()
   return area
end

--- Remove the scratch area.
function M.teardown()
   if area then fs.rmtree(area) end
   area = nil
end

--- The listing of everything in the area but the root and the input.
function M.outside()
   -- everything in AREA except the root and the input file
   local saved = {}
   local l = listing(area, nil)
   for line in l:gmatch("[^\n]+") do
      if not line:match("^a/b/c/R[/ ]") and not line:match("^a/b/c/in ") then
         saved[#saved + 1] = line
      end
   end
   return table.concat(saved, "\n")
end

--- Extract `data` and check the invariants; raises on a violation.
function M.check(data)
   assert(area, "setup() first")
   assert(fs.write_atomic(input, M.archive(data), 420))
   local ok, res, err, code = pcall(tar.extract, { root = root,
      source = input, format = "auto", max_bytes = 64 * 1024 * 1024 })
   if not ok then
      error("tar.extract raised: " .. tostring(res), 0)
   end
   if res == nil then
      if type(err) ~= "string" or not CODES[code] then
         error(("undocumented failure: %s (%s)"):format(tostring(err),
            tostring(code)), 0)
      end
      if not err:find("^tar%.extract: ") then
         error("message without the 'tar.extract: ' prefix: " .. err, 0)
      end
      local left = listing(root)
      if left ~= "" then
         error("a failed extraction left the root changed:\n" .. left, 0)
      end
   elseif type(res) ~= "table" or math.type(res.files) ~= "integer" then
      error("tar.extract returned " .. tostring(res), 0)
   end
   local now = M.outside()
   if now ~= before then
      error("something outside the root changed:\nbefore:\n" .. before
         .. "\nafter:\n" .. now, 0)
   end
   if fs.exists(root .. "/var/lib/clayer/journal") then
      error("the journal was left behind", 0)
   end
   local rok, rerr = fs.rmtree(root)
   if not rok then error("cleaning the root: " .. tostring(rerr), 0) end
   assert(fs.mkdirp(root, 493))
end

return M
