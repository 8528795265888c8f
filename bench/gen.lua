--- bench/gen.lua: a deterministic synthetic tree shaped like a Python
-- site-packages, for `make bench`.
--
--   clayer-lua bench/gen.lua tree ROOT [SCALE]   ~50,000*SCALE files,
--       ~700*SCALE MB below ROOT/usr/local/lib/python3.11/site-packages
--   clayer-lua bench/gen.lua empty ROOT COUNT    COUNT empty files in
--       ROOT/opt/many (case D7)
--
-- Content is text-like (Python-ish source built from a vocabulary) so it
-- compresses like real code; .pyc files and half of the large files are
-- binary-ish (text, zero runs and random bytes mixed).  The same SCALE
-- gives the same paths, sizes and bytes on every run (math.randomseed
-- with a fixed seed; Lua 5.4's xoshiro256**).
local fs = require "clayer.fs"

local M = {}

local MB = 1048576

-- The vocabulary: identifiers made of syllables, keywords, punctuation.
local function vocabulary()
   local syl = { "ar", "be", "co", "de", "el", "fo", "ga", "hi", "in", "jo",
      "ka", "lo", "ma", "ne", "or", "pa", "qu", "re", "sa", "to", "un", "va",
      "wi", "xe", "yo", "ze", "get", "set", "val", "arr", "idx", "buf",
      "len", "str", "num", "obj", "cfg", "opt", "req", "res", "dat", "tmp" }
   local words = {}
   for _ = 1, 1500 do
      local n = math.random(2, 4)
      local w = {}
      for j = 1, n do w[j] = syl[math.random(#syl)] end
      local s = table.concat(w, math.random(3) == 1 and "_" or "")
      words[#words + 1] = s
   end
   return words
end

local KEYWORDS = { "def", "return", "if", "else", "for", "in", "import",
   "from", "class", "self", "None", "True", "False", "not", "and", "or",
   "with", "as", "try", "except", "raise", "yield", "lambda", "assert" }

local ENGLISH = { "the", "of", "a", "to", "is", "value", "returns", "when",
   "this", "that", "given", "object", "array", "list", "default", "used",
   "by", "see", "also", "parameter", "must", "be", "an", "if", "it", "not",
   "for", "with", "each", "number", "string", "raises", "error", "type" }

-- One line of Python-looking text.
local function line(words)
   local function w() return words[math.random(#words)] end
   local ind = string.rep("    ", math.random(0, 3))
   local r = math.random(12)
   if r == 1 then
      return ("%sdef %s(self, %s, %s=%s):"):format(ind, w(), w(), w(),
         KEYWORDS[math.random(10, 13)])
   elseif r == 2 then
      return ("%sreturn %s.%s(%s, %d)"):format(ind, w(), w(), w(),
         math.random(0, 999))
   elseif r == 3 then
      local t = {}
      for i = 1, math.random(4, 12) do t[i] = ENGLISH[math.random(#ENGLISH)] end
      return ind .. "# " .. table.concat(t, " ")
   elseif r == 4 then
      return ("from %s.%s import %s, %s"):format(w(), w(), w(), w())
   elseif r == 5 then
      return ("%sif %s is not None and %s > %d:"):format(ind, w(), w(),
         math.random(0, 99))
   elseif r == 6 then
      return ("class %s(%s):"):format(w():gsub("^%l", string.upper), w())
   elseif r == 7 then
      return ""
   elseif r == 8 then
      return ('%s%s = "%s %s %s"'):format(ind, w(), w(), w(), w())
   else
      return ("%s%s = %s.%s(%s[%d], %s=%s)"):format(ind, w(), w(), w(), w(),
         math.random(0, 9), w(), w())
   end
end

-- A pool of text (about `size` bytes) and one of random bytes.
local function pools(size)
   local words = vocabulary()
   local t, n = {}, 0
   while n < size do
      local l = line(words) .. "\n"
      t[#t + 1] = l
      n = n + #l
   end
   local text = table.concat(t)
   local r = {}
   for i = 1, MB // 8 do r[i] = string.pack("<j", math.random(0)) end
   return text, table.concat(r), words
end

local TEXT, RAND, WORDS

local function slice(pool, n)
   if n <= 0 then return "" end
   local out, got = {}, 0
   while got < n do
      local take = math.min(n - got, #pool // 2)
      local at = math.random(1, #pool - take + 1)
      out[#out + 1] = pool:sub(at, at + take - 1)
      got = got + take
   end
   return table.concat(out)
end

-- Text content of n bytes, starting with a line unique to `name`.
local function text(name, n)
   if n <= 0 then return "" end
   local head = ("# %s\n"):format(name)
   return (head .. slice(TEXT, n - #head)):sub(1, n)
end

-- Binary-ish content: pieces of text, zero runs and random bytes.
local function binary(name, n, rand_share)
   local out = { "\127ELF\2\1\1\0" .. name .. "\0" }
   local got = #out[1]
   while got < n do
      local k = math.random(256, 4096)
      local r = math.random()
      local piece
      if r < rand_share then
         piece = slice(RAND, k)
      elseif r < rand_share + 0.25 then
         piece = string.rep("\0", k)
      else
         piece = slice(TEXT, k)
      end
      out[#out + 1] = piece
      got = got + #piece
   end
   return table.concat(out):sub(1, n)
end

local function write(path, data)
   local f = assert(io.open(path, "wb"))
   assert(f:write(data))
   assert(f:close())
end

-- Log-normal size with the given median.
local function lognormal(median, sigma)
   local u1, u2 = math.random(), math.random()
   local z = math.sqrt(-2 * math.log(1 - u1)) * math.cos(2 * math.pi * u2)
   return median * math.exp(sigma * z)
end

--- Plan then write the site-packages tree.
function M.tree(root, scale)
   math.randomseed(20240501)
   TEXT, RAND, WORDS = pools(24 * MB)
   local nfiles = math.max(200, math.floor(50000 * scale + 0.5))
   local total = 700 * MB * scale
   local nlarge = math.max(4, math.floor(60 * scale + 0.5))
   local npkg = math.max(8, math.floor(350 * scale + 0.5))
   local sp = "/usr/local/lib/python3.11/site-packages"
   local dirs, files, links = { "/usr", "/usr/local", "/usr/local/lib",
      "/usr/local/lib/python3.11", sp }, {}, {}
   -- package shares: a few big packages, a long tail (Zipf)
   local weights, wsum = {}, 0
   for p = 1, npkg do
      weights[p] = 1 / p ^ 0.9
      wsum = wsum + weights[p]
   end
   local small = nfiles - nlarge
   local pkgs = {}
   for p = 1, npkg do
      local name = WORDS[p * 7 % #WORDS + 1] .. p
      local budget = math.max(8, math.floor(small * weights[p] / wsum))
      local top = sp .. "/" .. name
      local dist = ("%s/%s-%d.%d.%d.dist-info"):format(sp, name, p % 5,
         p % 13, p % 7)
      dirs[#dirs + 1] = top
      dirs[#dirs + 1] = dist
      pkgs[p] = { name = name, top = top, dirs = { top } }
      files[#files + 1] = { dist .. "/METADATA", "text",
         math.floor(lognormal(6000, 0.8)) }
      files[#files + 1] = { dist .. "/RECORD", "text", budget * 90 }
      files[#files + 1] = { dist .. "/WHEEL", "text", 110 }
      files[#files + 1] = { dist .. "/INSTALLER", "text", 4 }
      files[#files + 1] = { dist .. "/top_level.txt", "text", #name + 1 }
      local left = budget - 5
      local folder, infolder, depth = top, 0, 0
      local cache = nil
      while left > 0 do
         if infolder == 0 or infolder > math.random(8, 24) then
            -- a new (sub)package folder with its __init__.py and cache
            if depth >= 3 or math.random(3) == 1 then
               folder, depth = top, 0
            end
            folder = folder .. "/" .. WORDS[math.random(#WORDS)]
            depth = depth + 1
            if not pkgs[p].seen then pkgs[p].seen = {} end
            while pkgs[p].seen[folder] do folder = folder .. "x" end
            pkgs[p].seen[folder] = true
            dirs[#dirs + 1] = folder
            pkgs[p].dirs[#pkgs[p].dirs + 1] = folder
            cache = folder .. "/__pycache__"
            dirs[#dirs + 1] = cache
            files[#files + 1] = { folder .. "/__init__.py", "text",
               math.random(4) == 1 and math.floor(lognormal(800, 1)) or 0 }
            left, infolder = left - 1, 1
         end
         local mod = WORDS[math.random(#WORDS)] .. "_" .. left
         local r = math.random(20)
         if r == 1 then
            files[#files + 1] = { folder .. "/" .. mod .. ".pyi", "text",
               math.floor(lognormal(1500, 1)) }
            left = left - 1
         elseif r == 2 then
            files[#files + 1] = { folder .. "/" .. mod .. ".txt", "text",
               math.floor(lognormal(900, 1.2)) }
            left = left - 1
         else
            local n = math.floor(lognormal(3500, 1.1))
            files[#files + 1] = { folder .. "/" .. mod .. ".py", "text", n }
            files[#files + 1] = { cache .. "/" .. mod .. ".cpython-311.pyc",
               "pyc", math.floor(n * 0.6) + 200 }
            left = left - 2
         end
         infolder = infolder + 1
      end
   end
   -- scale the small files to ~55% of the total
   local sum = 0
   for _, f in ipairs(files) do sum = sum + f[3] end
   local k = total * 0.55 / sum
   for _, f in ipairs(files) do
      if f[3] > 200 then f[3] = math.min(math.floor(f[3] * k), 2 * MB) end
   end
   -- large files: half shared objects (binary-ish), half data/text
   local lsum = 0
   local lw = {}
   for i = 1, nlarge do
      lw[i] = 1 / i ^ 0.7
      lsum = lsum + lw[i]
   end
   for i = 1, nlarge do
      local p = pkgs[(i - 1) % math.min(npkg, 12) + 1]
      local n = math.floor(total * 0.45 * lw[i] / lsum)
      if i % 2 == 1 then
         local libs = p.top .. ".libs"
         if not p.libs then
            p.libs = true
            dirs[#dirs + 1] = libs
         end
         local so = ("lib%s%d-%08x.so.%d"):format(p.name, i,
            math.random(0, 0x7fffffff), i % 4)
         files[#files + 1] = { libs .. "/" .. so, "so", n }
         links[#links + 1] = { libs .. "/lib" .. p.name .. i .. ".so", so }
      else
         local d = p.dirs[math.random(#p.dirs)]
         local ext = ({ ".json", ".csv", ".py" })[i % 3 + 1]
         files[#files + 1] = { d .. "/data_" .. i .. ext, "text", n }
      end
   end
   -- write it
   for _, d in ipairs(dirs) do assert(fs.mkdirp(root .. d, 493)) end
   local bytes = 0
   for _, f in ipairs(files) do
      local data
      if f[2] == "text" then
         data = text(f[1], f[3])
      elseif f[2] == "pyc" then
         data = binary(f[1], f[3], 0.15)
      else
         data = binary(f[1], f[3], 0.35)
      end
      write(root .. f[1], data)
      bytes = bytes + #data
   end
   for _, l in ipairs(links) do assert(fs.symlink(l[2], root .. l[1])) end
   return { files = #files, dirs = #dirs, links = #links, bytes = bytes }
end

--- COUNT empty files in ROOT/opt/many (D7).
function M.empty(root, count)
   assert(fs.mkdirp(root .. "/opt/many", 493))
   local base = root .. "/opt/many/"
   for i = 1, count do
      local f = assert(io.open(base .. i, "wb"))
      f:close()
   end
   return { files = count, dirs = 2, links = 0, bytes = 0 }
end

if arg and arg[0] and arg[0]:match("gen%.lua$") then
   local what, root = arg[1], arg[2]
   if (what ~= "tree" and what ~= "empty") or not root then
      io.stderr:write("usage: gen.lua tree ROOT [SCALE] | empty ROOT COUNT\n")
      os.exit(2)
   end
   local r
   if what == "tree" then
      r = M.tree(root, tonumber(arg[3] or "1"))
   else
      r = M.empty(root, math.tointeger(tonumber(arg[3] or "200000")))
   end
   io.stdout:write(("%d files, %d folders, %d links, %d bytes\n"):format(
      r.files, r.dirs, r.links, r.bytes))
end

return M
