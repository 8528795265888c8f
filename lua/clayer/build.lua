--- Execute a parsed Containerfile on the live system (or chrooted below
-- --root): ENV, ARG, RUN, FETCH, COPY, ADD, WORKDIR, SHELL, SNAPSHOT.
-- Every failure is one line, "FILE:LINE:COL: message".
local cf = require "clayer.containerfile"
local cleanup = require "clayer.cleanup"
local fs = require "clayer.fs"
local hash = require "clayer.hash"
local http = require "clayer.http"
local proc = require "clayer.proc"
local tar = require "clayer.tar"
local log = require "clayer.log"

local M = {}

-- {==================================================================
-- Paths
-- ===================================================================

local function split(path)
   local parts = {}
   for part in path:gmatch("[^/]+") do parts[#parts + 1] = part end
   return parts
end

--- Join a path onto a folder, POSIX style, and normalize it; the result
-- is absolute and never climbs above "/".
function M.join(base, path)
   local full = path:sub(1, 1) == "/" and path or (base .. "/" .. path)
   local parts = {}
   for _, part in ipairs(split(full)) do
      if part == ".." then
         parts[#parts] = nil
      elseif part ~= "." then
         parts[#parts + 1] = part
      end
   end
   return "/" .. table.concat(parts, "/")
end

--- Resolve a logical absolute path below root ("" for /) as the kernel
-- would inside a chroot at root: every symlink in it is followed (the
-- last component only when follow_last), "/" and ".." stay inside root.
-- @return the logical path (no symlink in its existing part), or nil, err
function M.resolve(root, path, follow_last)
   local done, todo = {}, split(path)
   local hops = 0
   while #todo > 0 do
      local c = table.remove(todo, 1)
      if c == ".." then
         done[#done] = nil
      elseif c ~= "." then
         local cur = "/" .. table.concat(done, "/")
         cur = (cur == "/" and "" or cur) .. "/" .. c
         local st
         if #todo > 0 or follow_last then st = fs.lstat(root .. cur) end
         if st and st.type == "link" then
            hops = hops + 1
            if hops > 40 then
               return nil, path .. ": too many levels of symbolic links"
            end
            local target = st.target or fs.readlink(root .. cur) or ""
            if target:sub(1, 1) == "/" then done = {} end
            local t = split(target)
            for i = #t, 1, -1 do table.insert(todo, 1, t[i]) end
         else
            done[#done + 1] = c
         end
      end
   end
   return "/" .. table.concat(done, "/")
end

local function under(path, top)
   return path == top or top == "/" or path:sub(1, #top + 1) == top .. "/"
end

-- The path of name inside the folder dir (no doubled "/").
local function child(dir, name)
   return (dir:gsub("/+$", "")) .. "/" .. name
end

local function basename(p)
   return p:match("([^/]+)/*$") or p
end

local function dirname(p)
   local d = p:match("^(.*)/[^/]*$")
   if not d or d == "" then return "/" end
   return d
end

-- Make the folder real (a path on disk) and its missing parents, 0755.
-- @return the folders made, outermost first, or nil, err
local function mkdirs(real)
   local made = {}
   local p = real
   while p ~= "/" and p ~= "" and not fs.exists(p) do
      table.insert(made, 1, p)
      p = dirname(p)
   end
   if #made == 0 then
      local st = fs.stat(real)
      if st and st.type ~= "dir" then return nil, real .. ": not a folder" end
      return made
   end
   local ok, err = fs.mkdirp(real, 493)
   if not ok then return nil, err end
   return made
end

-- }==================================================================

-- {==================================================================
-- Variables
-- ===================================================================

-- Variables seen by substitution and RUN: ENV values first, then ARG
-- values, then the process environment (Docker starts from the image's).
local function new_scope(build_args)
   local s = { env = {}, env_order = {}, args = {}, base = proc.getenv(),
      build_args = build_args or {}, declared = {} }
   s.view = setmetatable({}, { __index = function(_, k)
      local v = s.env[k]
      if v == nil then v = s.args[k] end
      if v == nil then v = s.base[k] end
      return v
   end })
   s.workdir = "/"
   s.shell = { "/bin/sh", "-c" }
   return s
end

local function where(ctx, ins)
   return ("%s:%d:%d"):format(ctx.file, ins.line, ins.col or 1)
end

local function fail(ctx, ins, fmt, ...)
   local msg = select("#", ...) > 0 and fmt:format(...) or fmt
   return nil, where(ctx, ins) .. ": " .. msg:gsub("[\r\n]+", " ")
end

local function expand(ctx, scope, ins, raw)
   local v, err = cf.expand(raw, scope.view, ctx.escape)
   if not v then return fail(ctx, ins, "%s", err) end
   return v
end

--- The environment RUN gets: the process's, the policy's run_env, ARG
-- values, then ENV values, each overriding the one before.
local function run_env(ctx, scope)
   local env = {}
   for k, v in pairs(scope.base) do env[k] = v end
   for k, v in pairs(ctx.policy and ctx.policy.run_env or {}) do
      env[k] = tostring(v)
   end
   for k, v in pairs(scope.args) do env[k] = v end
   for k, v in pairs(scope.env) do env[k] = v end
   return env
end

-- }==================================================================

-- {==================================================================
-- Simple instructions
-- ===================================================================

local ops = {}

function ops.ENV(ctx, scope, ins)
   local values = {}
   for i, pair in ipairs(ins.pairs) do
      local v, err = expand(ctx, scope, ins, pair[2])
      if not v then return nil, err end
      values[i] = v
   end
   -- references on the line saw the values from before it
   for i, pair in ipairs(ins.pairs) do
      if scope.env[pair[1]] == nil then
         scope.env_order[#scope.env_order + 1] = pair[1]
      end
      scope.env[pair[1]] = values[i]
   end
   return true
end

-- ARG: --build-arg wins, then the default; declared without either, the
-- variable keeps the value an earlier ARG gave it (unset otherwise).
function ops.ARG(ctx, scope, ins)
   scope.declared[ins.name] = true
   local v = scope.build_args[ins.name]
   if v == nil and ins.default then
      local err
      v, err = expand(ctx, scope, ins, ins.default)
      if not v then return nil, err end
   end
   if v ~= nil then scope.args[ins.name] = tostring(v) end
   return true
end

function ops.WORKDIR(ctx, scope, ins)
   local p, err = expand(ctx, scope, ins, ins.path)
   if not p then return nil, err end
   scope.workdir = M.join(scope.workdir, p)
   if scope.planning then return true end
   local logical, rerr = M.resolve(ctx.root, scope.workdir, true)
   if not logical then return fail(ctx, ins, "WORKDIR: %s", rerr) end
   local ok, merr = mkdirs(ctx.root .. logical)
   if not ok then return fail(ctx, ins, "WORKDIR: %s", merr) end
   return true
end

function ops.SHELL(_, scope, ins)
   scope.shell = ins.argv
   return true
end

function ops.SNAPSHOT()
   return true   -- collected before the build starts (M.plan)
end

-- }==================================================================

-- {==================================================================
-- RUN
-- ===================================================================

-- The program a RUN starts: its interpreter line's for a heredoc script,
-- argv[1] for the exec form, else the shell (SHELL, default /bin/sh).
local function run_program(scope, ins)
   if ins.exec then return ins.exec[1] end
   if ins.script then
      return (ins.script:match("^#![ \t]*([^ \t\n]+)"))
   end
   return scope.shell[1]
end

-- Why the program a RUN starts cannot run below the root, or nil.  A
-- missing shell would otherwise show only as the child's "exec: ...: No
-- such file or directory" and exit status 127.  Names without a "/" are
-- found through PATH at exec time and not checked here.
local function missing_program(ctx, prog)
   if type(prog) ~= "string" or prog:sub(1, 1) ~= "/" then return nil end
   local in_root = ctx.root == "" and "" or " in the root " .. ctx.root
   local logical = M.resolve(ctx.root, prog, true)
   -- resolved inside the root: no symlink left for stat to follow out
   local st = logical and fs.stat(ctx.root .. logical)
   if not st then return ("%s not found%s"):format(prog, in_root) end
   if st.type ~= "file" then
      return ("%s is not a file%s"):format(prog, in_root)
   end
   if st.mode & 73 == 0 then
      return ("%s is not executable%s"):format(prog, in_root)
   end
   return nil
end

local function run_command(ctx, scope, ins, cmd)
   local policy = ctx.policy or {}
   local opts = {
      env = run_env(ctx, scope),
      cwd = scope.workdir,
      timeout = policy.run_timeout,
      tail_lines = policy.tail_lines or 20,
      on_line = log.output,
   }
   if type(cmd) == "string" then opts.shell = scope.shell end
   if ctx.root ~= "" then opts.chroot = ctx.root end
   if log.verbose_on() then
      log.verbose("run: %s", type(cmd) == "table"
         and table.concat(cmd, " ") or cmd)
   end
   local r, err = proc.run(cmd, opts)
   if not r then return fail(ctx, ins, "RUN: %s", err) end
   if r.code == 0 then return true end
   if log.level < log.NORMAL then
      for _, line in ipairs(r.tail) do io.stderr:write(line, "\n") end
   end
   local why
   if r.timed_out then
      why = "timed out"
   elseif r.signal then
      why = "killed by signal " .. r.signal
   else
      why = "exit status " .. tostring(r.code)
   end
   return fail(ctx, ins, "RUN failed (%s)", why)
end

-- The argv the kernel would build for a script's "#!" line.
local function shebang(script, path)
   local line = script:match("^#!([^\n]*)") or ""
   local interp, rest = line:match("^[ \t]*([^ \t]+)[ \t]*(.-)[ \t]*$")
   if not interp then return { path } end
   if rest ~= "" then return { interp, rest, path } end
   return { interp, path }
end

function ops.RUN(ctx, scope, ins)
   local missing = missing_program(ctx, run_program(scope, ins))
   if missing then return fail(ctx, ins, "RUN: %s", missing) end
   if ins.exec then return run_command(ctx, scope, ins, ins.exec) end
   if not ins.script then return run_command(ctx, scope, ins, ins.cmd) end
   -- a heredoc with its own interpreter line runs as a script file (through
   -- its interpreter, as the kernel would: /tmp may be mounted noexec)
   local tmp = ctx.root .. "/tmp"
   if not fs.exists(tmp) then fs.mkdirp(tmp, 1023) end
   local dir, err = fs.mkdtemp(tmp .. "/clayer-run-")
   if not dir then return fail(ctx, ins, "RUN: %s", err) end
   local file = dir .. "/script"
   -- the folder goes on an interrupt too
   return cleanup.always(function() fs.rmtree(dir) end, function()
      local ok, werr = fs.write_atomic(file, ins.script, 493)
      if not ok then return fail(ctx, ins, "RUN: %s", werr) end
      return run_command(ctx, scope, ins,
         shebang(ins.script, file:sub(#ctx.root + 1)))
   end)
end

-- }==================================================================

-- {==================================================================
-- Archives and downloads
-- ===================================================================

local COMPRESSORS = {
   { "\x1f\x8b", "gzip" }, { "BZh", "bzip2" },
   { "\xfd7zXZ\0", "xz" }, { "\x28\xb5\x2f\xfd", "zstd" },
}

--- Whether a file is a tar archive, plain or compressed with gzip, bzip2,
-- xz or zstd, judged by its content.
function M.is_tar(file)
   local f = io.open(file, "rb")
   if not f then return false end
   local head = f:read(512) or ""
   f:close()
   if head:sub(258, 262) == "ustar" then return true end
   for _, m in ipairs(COMPRESSORS) do
      if head:sub(1, #m[1]) == m[1] then
         -- a fixed script; the program and the file are its arguments
         local r = proc.run({ "/bin/sh", "-c",
            '"$0" -dc -- "$1" 2>/dev/null | head -c 262 | tail -c 5',
            m[2], file }, { capture = true, tail_lines = 1 })
         return r ~= nil and r.output == "ustar"
      end
   end
   return false
end

-- Run GNU tar to unpack file into the folder dir.
local function gnu_untar(file, dir, extra)
   local argv = { "tar", "-x", "--no-overwrite-dir", "-f", file, "-C", dir }
   for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
   local r, err = proc.run(argv, { tail_lines = 5 })
   if not r then return nil, err end
   if r.code ~= 0 then
      return nil, "tar: " .. table.concat(r.tail, "; ")
   end
   return true
end

local scratch

-- Below --root, GNU tar (running on the host) would follow an absolute
-- symlink of the root out of it.  So unpack into a scratch folder first,
-- then bring the files in through clayer's own extractor, which resolves
-- every path inside the root.
local function untar_in_root(ctx, file, logical, extra)
   local tmp, err = scratch()
   if not tmp then return nil, err end
   return cleanup.always(function() fs.rmtree(tmp) end, function()
      local stage = tmp .. "/tree"
      local mok, merr = fs.mkdirp(stage .. logical, 493)
      if not mok then return nil, merr end
      local uok, uerr = gnu_untar(file, stage .. logical, extra)
      if not uok then return nil, uerr end
      local m, serr = fs.scan({ logical }, { root = stage, xdev = false })
      if not m then return nil, serr end
      local entries = {}
      for _, p in ipairs(m:paths()) do
         if p ~= logical then entries[#entries + 1] = { path = p } end
      end
      if #entries == 0 then return true end
      local ar, aerr = tar.create { output = tmp .. "/in.tar.zst",
         root = stage, entries = entries, level = 1 }
      if not ar then return nil, aerr end
      local res, xerr = tar.extract { root = ctx.root,
         source = tmp .. "/in.tar.zst", sha256 = ar.sha256,
         journal = ctx.root .. "/var/lib/clayer/journal" }
      if not res then return nil, xerr end
      return true
   end)
end

-- Unpack a tar archive (compression found by content) into the folder
-- `logical` of the root; extra: more tar arguments.
local function untar(ctx, file, logical, extra)
   if ctx.root == "" then
      return gnu_untar(file, logical, extra)
   end
   return untar_in_root(ctx, file, logical, extra)
end

-- A temporary folder for downloads, outside the root.
function scratch()
   local t = os.getenv("TMPDIR")
   local d = t and t:sub(1, 1) == "/" and fs.mkdtemp(cleanup.tmp_root()
      .. "/clayer-fetch-")
   d = d or fs.mkdtemp("/tmp/clayer-fetch-")
   if not d then d = fs.mkdtemp("/var/tmp/clayer-fetch-") end
   if not d then return nil, "cannot make a temporary folder in /tmp" end
   return d
end

-- Put the downloaded file at target (a path on disk), whatever the
-- filesystems, with mode.
local function place(file, target, mode)
   local st = fs.lstat(target)
   if st and st.type == "dir" then
      return nil, target .. ": is a folder"
   elseif st then
      fs.remove(target)
   end
   if not fs.rename(file, target) then
      local ok, err = fs.copy(file, target, mode)
      if not ok then return nil, err end
   end
   return fs.chmod(target, mode)
end

local function percent_decode(s)
   return (s:gsub("%%(%x%x)", function(h)
      return string.char(tonumber(h, 16))
   end))
end

-- The name a URL's content is saved under: its last path segment.
local function url_name(url)
   local path = url:gsub("[?#].*$", ""):match("^%a[%w+.-]*://[^/]*(.*)$")
      or ""
   local name = percent_decode(path:match("([^/]+)/*$") or "")
   if name == "" or name == "." or name == ".." or name:find("/", 1, true)
   then
      return nil
   end
   return name
end

local function token(ctx)
   if ctx.token and ctx.token ~= "" then return ctx.token end
   if ctx.token_file then
      local t = fs.read(ctx.token_file)
      if t then return (t:gsub("%s+$", "")) end
   end
   for _, k in ipairs { "GH_TOKEN", "GITHUB_TOKEN" } do
      local t = os.getenv(k)
      if t and t ~= "" then return t end
   end
   return nil
end

--- Resolve FETCH's source to a URL, request headers and whether it is a
-- GitHub tarball; nil when it is neither http(s) nor github:.
function M.fetch_url(src, ctx)
   local owner, repo, ref = src:match(
      "^github:([%w._-]+)/([%w._-]+)(.*)$")
   if not owner then
      if src:match("^[hH][tT][tT][pP][sS]?://[^/]") then
         return src, {}, false
      end
      return nil
   end
   if ref ~= "" and not ref:match("^@[^%s]+$") then return nil end
   -- policy resolve_refs: the commit the key was computed with
   local pinned = ctx and ctx.refs and ctx.refs[src]
   if pinned then ref = "@" .. pinned end
   local api = os.getenv("CLAYER_GITHUB_API")
   if not api or api == "" then api = "https://api.github.com" end
   local url = ("%s/repos/%s/%s/tarball"):format(api:gsub("/+$", ""),
      owner, repo)
   if ref ~= "" then
      local segs = {}
      for seg in ref:sub(2):gmatch("[^/]+") do
         segs[#segs + 1] = http.escape(seg)
      end
      url = url .. "/" .. table.concat(segs, "/")
   end
   local headers = { ["Accept"] = "application/vnd.github+json",
      ["User-Agent"] = "clayer" }
   local t = token(ctx or {})
   if t then
      local loopback = url:match("^http://127%.") or
         url:match("^http://localhost[:/]") or url:match("^http://%[::1%]")
      if url:match("^https://") or loopback then
         headers["Authorization"] = "Bearer " .. t
      end
   end
   return url, headers, true
end

--- The commit a `github:OWNER/REPO[@REF]` FETCH source names now (the
-- default branch without REF), through the API.
-- @return 40-hex sha, or nil, err
function M.resolve_ref(src, ctx)
   local owner, repo, ref = src:match("^github:([%w._-]+)/([%w._-]+)@?(.*)$")
   if not owner then return nil, src .. ": not a github: source" end
   local url, headers = M.fetch_url(("github:%s/%s"):format(owner, repo), ctx)
   url = url:gsub("/tarball$", "/commits/" .. (ref ~= "" and
      http.escape(ref) or "HEAD"))
   headers["Accept"] = "application/vnd.github.sha"
   local hp = ctx.policy and ctx.policy.http or {}
   local res, err = http.request { url = url, headers = headers,
      connect_timeout = hp.connect_timeout, idle_timeout = hp.idle_timeout,
      cacert = ctx.cacert }
   if not res then return nil, err end
   local sha = res.status == 200 and res.body and res.body:match("^(%x+)%s*$")
   if not sha or #sha ~= 40 then
      return nil, ("resolving %s: HTTP %d"):format(src, res.status)
   end
   return sha:lower()
end

-- Download url into the file; check its sha256 when expected is set.
local function download(ctx, url, headers, file, expected)
   local hp = ctx.policy and ctx.policy.http or {}
   log.verbose("GET %s", url)
   local res, err = http.request { url = url, headers = headers,
      output = file, connect_timeout = hp.connect_timeout,
      idle_timeout = hp.idle_timeout, cacert = ctx.cacert }
   if not res then return nil, err end
   if res.status < 200 or res.status > 299 then
      return nil, ("%s: HTTP %d"):format(url, res.status)
   end
   if expected then
      local got = hash.file(file)
      if got ~= expected:lower() then
         return nil, ("%s: sha256 mismatch: expected %s, got %s")
            :format(url, expected:lower(), tostring(got))
      end
   end
   return true
end

function ops.FETCH(ctx, scope, ins)
   local src, err = expand(ctx, scope, ins, ins.src)
   if not src then return nil, err end
   local dest
   dest, err = expand(ctx, scope, ins, ins.dest)
   if not dest then return nil, err end
   if dest == "" then return fail(ctx, ins, "FETCH: empty DEST") end
   dest = M.join(scope.workdir, dest)
   local url, headers, github = M.fetch_url(src, ctx)
   if not url then
      return fail(ctx, ins, "FETCH: not an http(s) URL or "
         .. "github:OWNER/REPO[@REF]: %s", src)
   end
   local flags = ins.flags or {}
   local tmp
   tmp, err = scratch()
   if not tmp then return fail(ctx, ins, "FETCH: %s", err) end
   local file = tmp .. "/download"
   local ok, why = cleanup.always(function() fs.rmtree(tmp) end, function()
      -- nothing below DEST changes before the download is whole and checked
      local dok, derr = download(ctx, url, headers, file, flags.sha256)
      if not dok then return nil, derr end
      local logical, rerr = M.resolve(ctx.root, dest, true)
      if not logical then return nil, rerr end
      local real = ctx.root .. logical
      local tarball = flags.extract ~= "no" and M.is_tar(file)
      if github and not tarball then
         return nil, url .. ": not a tar archive"
      end
      local mok, merr = mkdirs(real)
      if not mok then return nil, merr end
      if tarball then
         local strip = (flags.strip_components or 0) + (github and 1 or 0)
         local extra = { "--no-same-owner" }
         if strip > 0 then
            extra[#extra + 1] = "--strip-components=" .. strip
         end
         local uok, uerr = untar(ctx, file, logical, extra)
         if not uok then return nil, "unpacking " .. url .. ": " .. uerr end
         return true
      end
      local name = url_name(url)
      if not name then return nil, url .. ": no file name in the URL" end
      local mode = flags.chmod and tonumber(flags.chmod, 8) or 420
      return place(file, child(real, name), mode)
   end)
   if not ok then return fail(ctx, ins, "FETCH %s", why) end
   return true
end

-- }==================================================================

-- {==================================================================
-- Glob patterns (Go's path/filepath.Match)
-- ===================================================================

-- The characters of s (UTF-8 sequences; other bytes one by one).
local function chars(s)
   local out, i = {}, 1
   while i <= #s do
      local c = s:match("^[\xc2-\xf4][\x80-\xbf]*", i)
      if not c or not utf8.len(c) then c = s:sub(i, i) end
      out[#out + 1] = c
      i = i + #c
   end
   return out
end

local function code(c)
   return utf8.len(c) == 1 and utf8.codepoint(c) or c:byte()
end

--- Whether a pattern has glob characters (Go's hasMeta).
function M.has_meta(p)
   return p:find("[%*%?%[\\]") ~= nil
end

-- Compile one path component of a pattern into tokens, or nil, err
-- (Go's ErrBadPattern cases).
local function compile(pat)
   local p, toks, i = chars(pat), {}, 1
   local bad = "syntax error in pattern"
   local function esc()   -- Go's getEsc
      local c = p[i]
      if c == nil or c == "-" or c == "]" then return nil end
      if c == "\\" then
         i = i + 1
         c = p[i]
         if c == nil then return nil end
      end
      i = i + 1
      if p[i] == nil then return nil end
      return code(c)
   end
   while i <= #p do
      local c = p[i]
      if c == "*" then
         toks[#toks + 1] = { t = "star" }
         i = i + 1
      elseif c == "?" then
         toks[#toks + 1] = { t = "any" }
         i = i + 1
      elseif c == "[" then
         i = i + 1
         local class = { t = "class", ranges = {} }
         if p[i] == "^" then
            class.neg = true
            i = i + 1
         end
         while true do
            if p[i] == "]" and #class.ranges > 0 then
               i = i + 1
               break
            end
            local lo = esc()
            if not lo then return nil, bad end
            local hi = lo
            if p[i] == "-" then
               i = i + 1
               hi = esc()
               if not hi then return nil, bad end
            end
            class.ranges[#class.ranges + 1] = { lo, hi }
         end
         toks[#toks + 1] = class
      else
         if c == "\\" then
            i = i + 1
            c = p[i]
            if c == nil then return nil, bad end
         end
         toks[#toks + 1] = { t = "lit", c = c }
         i = i + 1
      end
   end
   return toks
end

-- Go's chunks: runs of tokens, each after a run of stars (or none).
local function chunks(toks)
   local out, cur = {}, nil
   for _, tok in ipairs(toks) do
      if tok.t == "star" then
         if not (cur and cur.star and #cur.toks == 0) then
            cur = { star = true, toks = {} }
            out[#out + 1] = cur
         end
      else
         if not cur then
            cur = { star = false, toks = {} }
            out[#out + 1] = cur
         end
         cur.toks[#cur.toks + 1] = tok
      end
   end
   return out
end

-- Whether the star-free tokens match s at si: the index after, or nil.
local function match_chunk(toks, s, si)
   for _, tok in ipairs(toks) do
      local c = s[si]
      if c == nil then return nil end
      if tok.t == "lit" then
         if c ~= tok.c then return nil end
      elseif tok.t == "any" then
         if c == "/" then return nil end
      else
         local cp, hit = code(c), false
         for _, r in ipairs(tok.ranges) do
            if r[1] <= cp and cp <= r[2] then hit = true end
         end
         if hit == (tok.neg or false) then return nil end
      end
      si = si + 1
   end
   return si
end

-- Go's Match loop: each chunk at the leftmost place its star allows (a
-- star does not cross "/"); the last chunk must end the name.  No
-- backtracking to an earlier chunk, so O(#pattern * #name) at worst.
local function match_chunks(list, s)
   local si, n = 1, #s
   for k, ch in ipairs(list) do
      local last = k == #list
      if ch.star and #ch.toks == 0 then   -- a trailing star
         for i = si, n do
            if s[i] == "/" then return false end
         end
         return true
      end
      local t = match_chunk(ch.toks, s, si)
      if not (t and (t == n + 1 or not last)) then
         t = nil
         local i = si
         while ch.star and i <= n and s[i] ~= "/" do
            local u = match_chunk(ch.toks, s, i + 1)
            if u and (u == n + 1 or not last) then
               t = u
               break
            end
            i = i + 1
         end
         if not t then return false end
      end
      si = t
   end
   return si == n + 1
end

--- Go's filepath.Match: `*` is any run of characters but "/", `?` one
-- character but "/", `[...]` a class; meant for one path component.
-- @return true/false, or nil, "syntax error in pattern"
function M.match(pattern, name)
   local toks, err = compile(pattern)
   if not toks then return nil, err end
   return match_chunks(chunks(toks), chars(name))
end

-- }==================================================================

-- {==================================================================
-- COPY and ADD
-- ===================================================================

-- The source types COPY and ADD take (symlinks are resolved first).
local COPYABLE = { file = true, dir = true }

local function is_url(s)
   return s:match("^[hH][tT][tT][pP][sS]?://") ~= nil
end

-- The real folder of the build context, symlinks resolved.
local function context_dir(ctx)
   if not ctx._cdir then
      ctx._cdir = M.resolve("", ctx.dir, true) or ctx.dir
   end
   return ctx._cdir
end

-- Where a context path (relative to the context folder) really is; nil,
-- err when it leads outside the folder through a symlink.
local function inside(ctx, rel)
   local top = context_dir(ctx)
   local real, err = M.resolve("", top .. "/" .. rel, true)
   if not real then return nil, err end
   if not under(real, top) then
      return nil, ("%s: points outside the build context (%s)")
         :format(rel, ctx.dir)
   end
   return real
end

--- The context files a COPY/ADD source names, sorted: each {rel, real}
-- (rel relative to the context folder, real the file on disk, symlinks
-- resolved).  A source that matches nothing gives an empty list.
-- @return list, or nil, err (an escape, a bad pattern)
function M.sources(ctx, src)
   local parts = {}
   for _, part in ipairs(split(src)) do
      if part == ".." then
         if #parts == 0 then
            return nil, src .. ": outside the build context (" .. ctx.dir
               .. ")"
         end
         parts[#parts] = nil
      elseif part ~= "." then
         parts[#parts + 1] = part
      end
   end
   -- walk the components, expanding patterns against the folders' entries
   -- (as Go's filepath.Glob: a candidate that leads outside the context
   -- is an error only when it is part of the result, below)
   local glob = M.has_meta(src)
   local found = { "" }
   for _, part in ipairs(parts) do
      local next_found = {}
      for _, rel in ipairs(found) do
         if M.has_meta(part) then
            local real = inside(ctx, rel)
               or context_dir(ctx) .. "/" .. rel
            local st = fs.stat(real)
            if st and st.type == "dir" then
               for _, name in ipairs(fs.dir(real) or {}) do
                  local hit, perr = M.match(part, name)
                  if hit == nil then return nil, src .. ": " .. perr end
                  if hit then
                     next_found[#next_found + 1] = rel == "" and name
                        or rel .. "/" .. name
                  end
               end
            else
               local _, perr = M.match(part, "")
               if perr then return nil, src .. ": " .. perr end
            end
         else
            next_found[#next_found + 1] = rel == "" and part
               or rel .. "/" .. part
         end
      end
      found = next_found
   end
   table.sort(found)
   local out = {}
   for _, rel in ipairs(found) do
      local real, err = inside(ctx, rel)
      if not real then
         -- a glob's candidate that is not there (Go's Lstat fails) is no
         -- match: `*/f` past `evil -> /etc/passwd`
         if glob and not fs.exists(context_dir(ctx) .. "/" .. rel) then
            goto continue
         end
         return nil, err
      end
      if fs.exists(real) then
         out[#out + 1] = { rel = rel == "" and "." or rel, real = real }
      end
      ::continue::
   end
   return out
end

-- Read NAME:x:ID:... files below the root.
local function id_of(ctx, file, name)
   local text = fs.read(ctx.root .. file)
   if not text then return nil end
   for line in text:gmatch("[^\n]+") do
      local n, id = line:match("^([^:]*):[^:]*:(%d+):")
      if n == name then return tonumber(id) end
   end
   return nil
end

-- --chown=USER[:GROUP]: numeric ids, or names looked up in the root's
-- /etc/passwd and /etc/group; a user alone gives the same number as gid.
local function parse_chown(ctx, spec)
   local user, group = spec:match("^([^:]*):(.*)$")
   if not user then user = spec end
   if user == "" then return nil, "--chown needs a user" end
   local uid = user:match("^%d+$") and tonumber(user)
      or id_of(ctx, "/etc/passwd", user)
   if not uid then
      return nil, ("--chown: no user %s in %s/etc/passwd"):format(user,
         ctx.root)
   end
   local gid = uid
   if group and group ~= "" then
      gid = group:match("^%d+$") and tonumber(group)
         or id_of(ctx, "/etc/group", group)
      if not gid then
         return nil, ("--chown: no group %s in %s/etc/group"):format(group,
            ctx.root)
      end
   end
   return uid .. ":" .. gid
end

-- Run argv with the paths appended, in batches.
local function each_batch(argv, paths)
   local i = 1
   while i <= #paths do
      local a = { table.unpack(argv) }
      for k = i, math.min(i + 199, #paths) do a[#a + 1] = paths[k] end
      i = i + 200
      local r, err = proc.run(a, { tail_lines = 5 })
      if not r then return nil, err end
      if r.code ~= 0 then
         return nil, argv[1] .. ": " .. table.concat(r.tail, "; ")
      end
   end
   return true
end

-- Give the copied paths (on disk) their --chmod and --chown.
local function finish_paths(how, paths)
   if how.mode then
      for _, p in ipairs(paths) do
         local st = fs.lstat(p)
         if st and st.type ~= "link" then
            local ok, err = fs.chmod(p, how.mode)
            if not ok then return nil, err end
         end
      end
   end
   if how.owner and #paths > 0 then
      return each_batch({ "chown", "-h", how.owner, "--" }, paths)
   end
   return true
end

local CP = { "cp", "-a", "--no-preserve=ownership" }

-- Copy the folder src's contents into the folder target (on disk).
local function copy_dir(src, target, how)
   local made, err = mkdirs(target)
   if not made then return nil, err end
   local done = {}
   if #made > 0 then
      local st = fs.stat(src)
      fs.chmod(target, how.mode or (st and st.mode) or 493)
      if how.owner then
         local ok, cerr = each_batch({ "chown", "-h", how.owner, "--" }, made)
         if not ok then return nil, cerr end
      end
   end
   local names = fs.dir(src) or {}
   local children = {}
   for k, n in ipairs(names) do children[k] = src .. "/" .. n end
   local argv = { table.unpack(CP) }
   argv[#argv + 1] = "-t"
   argv[#argv + 1] = target
   argv[#argv + 1] = "--"
   local ok, cerr = each_batch(argv, children)
   if not ok then return nil, cerr end
   if how.mode or how.owner then
      local m = fs.scan({ "/" }, { root = src, xdev = false })
      if not m then return nil, src .. ": cannot list" end
      for _, p in ipairs(m:paths()) do
         if p ~= "/" then done[#done + 1] = target .. p end
      end
      m:close()
   end
   return finish_paths(how, done)
end

-- Copy the file src to the path target (on disk), replacing what is there
-- unless it is a folder.
local function copy_file(src, target, how)
   local made, err = mkdirs(dirname(target))
   if not made then return nil, err end
   if how.owner and #made > 0 then
      local ok, cerr = each_batch({ "chown", "-h", how.owner, "--" }, made)
      if not ok then return nil, cerr end
   end
   local argv = { table.unpack(CP) }
   for _, a in ipairs { "--remove-destination", "-T", "--", src, target } do
      argv[#argv + 1] = a
   end
   local r = proc.run(argv, { tail_lines = 5 })
   if not r or r.code ~= 0 then
      return nil, "cp: " .. table.concat(r and r.tail or {}, "; ")
   end
   return finish_paths(how, { target })
end

-- ADD URL: download it (never unpacked), mode 0600 unless --chmod.
local function add_url(ctx, url, target_of, how, flags)
   local tmp, err = scratch()
   if not tmp then return nil, err end
   local file = tmp .. "/download"
   return cleanup.always(function() fs.rmtree(tmp) end, function()
      local sum = flags.checksum
      if sum then
         sum = sum:match("^sha256:(%x+)$")
         if not sum or #sum ~= 64 then
            return nil, "--checksum must be sha256:<64 hex digits>"
         end
      end
      local dok, derr = download(ctx, url, {}, file, sum)
      if not dok then return nil, derr end
      local name = url_name(url)
      local target = target_of(name)
      if not target then return nil, url .. ": no file name in the URL" end
      local made, merr = mkdirs(dirname(target))
      if not made then return nil, merr end
      local pok, perr = place(file, target, how.mode or 384)
      if not pok then return nil, perr end
      if not how.owner then return true end
      made[#made + 1] = target
      return finish_paths({ owner = how.owner }, made)
   end)
end

local function copy(ctx, scope, ins)
   local op, flags = ins.op, ins.flags or {}
   local dest, err = expand(ctx, scope, ins, ins.dest)
   if not dest then return nil, err end
   local to_dir = dest == "" or dest == "." or dest:sub(-1) == "/"
      or dest:sub(-2) == "/."
   local logical = M.join(scope.workdir, dest)
   local how = {}
   if flags.chmod then how.mode = tonumber(flags.chmod, 8) end
   if flags.chown then
      local spec
      spec, err = expand(ctx, scope, ins, flags.chown)
      if not spec then return nil, err end
      how.owner, err = parse_chown(ctx, spec)
      if not how.owner then return fail(ctx, ins, "%s %s", op, err) end
   end
   -- every source first: nothing is copied when one is missing
   local items = {}
   for _, raw in ipairs(ins.srcs) do
      local src
      src, err = expand(ctx, scope, ins, raw)
      if not src then return nil, err end
      if op == "ADD" and is_url(src) then
         items[#items + 1] = { url = src }
      else
         local list
         list, err = M.sources(ctx, src)
         if not list then return fail(ctx, ins, "%s %s", op, err) end
         if #list == 0 then
            return fail(ctx, ins, "%s %s: no such file or directory in the "
               .. "build context (%s)", op, src, ctx.dir)
         end
         for _, s in ipairs(list) do items[#items + 1] = s end
      end
   end
   if #items > 1 and not to_dir then
      return fail(ctx, ins, "when using %s with more than one source file, "
         .. "the destination must be a directory and end with a /", op)
   end
   local real_logical
   real_logical, err = M.resolve(ctx.root, logical, true)
   if not real_logical then return fail(ctx, ins, "%s %s", op, err) end
   local real = ctx.root .. real_logical
   local function target_of(name)
      local st = fs.stat(real)
      if to_dir or (st and st.type == "dir") then
         return name and child(real, name)
      end
      return real
   end
   for _, it in ipairs(items) do
      local ok, why
      if it.url then
         ok, why = add_url(ctx, it.url, target_of, how, flags)
         why = why and it.url .. ": " .. why
      else
         local st = fs.stat(it.real)
         if not st or not COPYABLE[st.type] then
            return fail(ctx, ins, "%s %s: not a regular file or folder", op,
               it.rel)
         end
         if st.type == "dir" then
            ok, why = copy_dir(it.real, real, how)
         elseif op == "ADD" and M.is_tar(it.real) then
            local made
            made, why = mkdirs(real)
            if made then
               ok, why = untar(ctx, it.real, real_logical,
                  { "--numeric-owner" })
            end
         else
            ok, why = copy_file(it.real, target_of(basename(it.rel)), how)
         end
         why = why and it.rel .. ": " .. why
      end
      if not ok then return fail(ctx, ins, "%s %s", op, why) end
   end
   return true
end

ops.COPY = copy
ops.ADD = copy

--- The digest of a COPY/ADD source for the key: a file's bytes, or a
-- folder's sorted listing of relative paths, modes and contents.  A
-- FIFO, socket or device is never opened (reading it could block).
-- @return 64 hex, or nil[, err]
function M.source_digest(path)
   local st = fs.stat(path)
   if not st then return nil end
   if st.type == "file" then return hash.file(path) end
   if st.type ~= "dir" then
      return nil, path .. ": not a regular file or folder"
   end
   local m = fs.scan({ "/" }, { root = path, xdev = false })
   if not m then return nil end
   local h = hash.new()
   for _, p in ipairs(m:paths()) do
      local e = m:get(p)
      h:update(p):update("\0"):update(("%o"):format(e.mode)):update("\0")
      if e.type == "file" then
         h:update(hash.file(path .. p) or "")
      elseif e.type == "link" then
         h:update("->" .. tostring(e.target))
      else
         h:update(e.type)
      end
      h:update("\n")
   end
   m:close()
   return h:hexdigest()
end

-- }==================================================================

-- {==================================================================
-- Plan and run
-- ===================================================================

--- Walk the instructions without running them: variables as a build
-- would see them, for SNAPSHOT paths and the key's extras.  A COPY/ADD
-- source outside the build context is an error here, before anything
-- runs.
-- @param ctx as for M.run
-- @return {snapshot = {paths}, all = {paths}, copies = {REL = SHA256},
--   args = {K = V} (the --build-arg values an ARG declares),
--   env = {{K, V}...}, unused = {names of --build-arg no ARG declares}},
--   or nil, "FILE:LINE:COL: message"
function M.plan(doc, ctx)
   ctx.root = ctx.root or ""
   local scope = new_scope(ctx.build_args)
   scope.planning = true
   local out = { snapshot = {}, all = {}, copies = {}, args = {},
      unused = {}, fetches = {} }
   for _, ins in ipairs(doc.instructions) do
      local op = ins.op
      if op == "ENV" or op == "ARG" or op == "WORKDIR" then
         local ok, err = ops[op](ctx, scope, ins)
         if not ok then return nil, err end
         if op == "ARG" and scope.build_args[ins.name] ~= nil then
            out.args[ins.name] = tostring(scope.build_args[ins.name])
         end
      elseif op == "SNAPSHOT" then
         local p, err = expand(ctx, scope, ins, ins.path)
         if not p then return nil, err end
         p = M.join(scope.workdir, p)
         table.insert(ins.all and out.all or out.snapshot, p)
      elseif op == "COPY" or op == "ADD" then
         for _, raw in ipairs(ins.srcs) do
            local src, err = expand(ctx, scope, ins, raw)
            if not src then return nil, err end
            if not (op == "ADD" and is_url(src)) then
               local list
               list, err = M.sources(ctx, src)
               if not list then return fail(ctx, ins, "%s %s", op, err) end
               if #list == 0 then
                  -- found before anything runs, as Docker does
                  return fail(ctx, ins, "%s %s: no such file in the build "
                     .. "context %s", op, src, ctx.dir)
               end
               for _, s in ipairs(list) do
                  local st = fs.stat(s.real)
                  if st and not COPYABLE[st.type] then
                     return fail(ctx, ins, "%s %s: not a regular file or "
                        .. "folder", op, s.rel)
                  end
                  out.copies[s.rel] = M.source_digest(s.real) or "missing"
               end
            end
         end
      elseif op == "FETCH" then
         for i, raw in ipairs { ins.src, ins.dest } do
            local v, err = expand(ctx, scope, ins, raw)
            if err then return nil, err end
            if i == 1 then out.fetches[#out.fetches + 1] = v end
         end
      end
   end
   for k in pairs(scope.build_args) do
      if not scope.declared[k] then out.unused[#out.unused + 1] = k end
   end
   table.sort(out.unused)
   out.env = {}
   for _, k in ipairs(scope.env_order) do
      out.env[#out.env + 1] = { k, scope.env[k] }
   end
   return out
end

-- Before anything runs: when the first instruction that can change the
-- root is a RUN (only ENV, ARG, WORKDIR, SHELL and SNAPSHOT before it),
-- nothing can bring its program in first, so a missing one fails now.
local SETTING = { ENV = true, ARG = true, WORKDIR = true, SHELL = true,
   SNAPSHOT = true }

local function precheck(ctx, doc)
   local shell = { "/bin/sh", "-c" }
   for _, ins in ipairs(doc.instructions) do
      if ins.op == "SHELL" then shell = ins.argv end
      if ins.op == "RUN" then
         local missing = missing_program(ctx,
            run_program({ shell = shell }, ins))
         if missing then return fail(ctx, ins, "RUN: %s", missing) end
         return true
      end
      if not (SETTING[ins.op] or ins.ignored) and ops[ins.op] then
         return true
      end
   end
   return true
end

--- Run every instruction in order.
-- @param ctx file (the name in messages), dir (the Containerfile's
--   folder: the build context), root ("" or a prefix), build_args
--   {K = V}, policy, escape, optional token, token_file, cacert
-- @return {env = {{K, V}...}, workdir}, or nil, "FILE:LINE:COL: message"
function M.run(doc, ctx)
   ctx.root = ctx.root or ""
   local scope = new_scope(ctx.build_args)
   local ready, why = precheck(ctx, doc)
   if not ready then return nil, why end
   for _, ins in ipairs(doc.instructions) do
      local f = ops[ins.op]
      if f then
         if ins.op ~= "RUN" then
            log.verbose("%s:%d: %s", ctx.file, ins.line, ins.op)
         end
         local ok, err = f(ctx, scope, ins)
         if not ok then return nil, err end
      elseif not ins.ignored then
         log.warn(("%s: warning: %s is not supported; skipped")
            :format(where(ctx, ins), ins.op))
      end
   end
   local unused = {}
   for k in pairs(scope.build_args) do
      if not scope.declared[k] then unused[#unused + 1] = k end
   end
   if #unused > 0 then
      table.sort(unused)
      log.warn(("%s: warning: build arguments no ARG declares: %s")
         :format(ctx.file, table.concat(unused, ", ")))
   end
   local env = {}
   for _, k in ipairs(scope.env_order) do
      env[#env + 1] = { k, scope.env[k] }
   end
   return { env = env, workdir = scope.workdir }
end

return M
