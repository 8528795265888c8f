--- The install shim (DESIGN §10): shell functions that wrap package tools,
-- the default on_install hook that turns one successful install's argv
-- into a RUN line, and the locked append of that line to the Containerfile.
local cf = require "clayer.containerfile"
local fs = require "clayer.fs"
local proc = require "clayer.proc"

local M = {}

-- {==================================================================
-- Quoting
-- ===================================================================

--- Quote one word for /bin/sh exactly as Python's shlex.quote does.
function M.quote(s)
   s = tostring(s)
   if s == "" then return "''" end
   if not s:find("[^%w@%%+=:,./_-]") then return s end
   return "'" .. s:gsub("'", "'\"'\"'") .. "'"
end

--- Join words into one shell command line, as shlex.join does.  A word
-- may also be a table {sh = TEXT}: TEXT is written as it is.
function M.join(words)
   local out = {}
   for i, w in ipairs(words) do
      out[i] = type(w) == "table" and w.sh or M.quote(w)
   end
   return table.concat(out, " ")
end

-- A word that keeps ${NAME} references for the shell to expand at replay
-- time (pip expands them in requirement files, never on the command line),
-- so a token from the environment never lands in the Containerfile.
local function expanding(s)
   if not s:find("%${[%w_]+}") then return s end
   local out = s:gsub('[\\"`$]', "\\%0"):gsub("\\%$({[%w_]+})", "$%1")
   return { sh = '"' .. out .. '"' }
end

-- }==================================================================

-- {==================================================================
-- Paths and context
-- ===================================================================

-- POSIX join and normalize, never above "/" (the same rule as WORKDIR)
local join_path = require("clayer.build").join
M.join_path = join_path

local function dirname(p)
   return p:match("^(.*)/[^/]*$") or "."
end

local function under(path, dir)
   dir = dir:gsub("/+$", "")
   return path == dir or path:sub(1, #dir + 1) == dir .. "/" or dir == ""
end

--- The working directory: $PWD when it names the same folder as ".",
-- else what pwd -P says.
function M.cwd()
   local pwd = os.getenv("PWD")
   if pwd and pwd:sub(1, 1) == "/" then
      local a, b = fs.stat(pwd), fs.stat(".")
      if a and b and a.dev == b.dev and a.ino == b.ino then return pwd end
   end
   local r = proc.run({ "pwd", "-P" }, { capture = true })
   local out = r and r.code == 0 and r.output:gsub("%s+$", "")
   return out and out ~= "" and out or "/"
end

--- The absolute path of `p` (relative to the working directory).
function M.abspath(p, cwd)
   return join_path(cwd or M.cwd(), p)
end

-- The executable `name` would run as, found in the PATH of `env`.
local function which(name, env)
   if name:find("/") then return name end
   for dir in ((env and env.PATH) or ""):gmatch("[^:]+") do
      local st = fs.stat(dir .. "/" .. name)
      if st and st.type == "file" and st.mode & 73 ~= 0 then
         return dir .. "/" .. name
      end
   end
   return nil
end
M.which = which

--- SNAPSHOT paths of a Containerfile's text (raw, unexpanded).
function M.snapshots(text)
   local list = {}
   local doc = text and cf.parse(text, "Containerfile", { unknown = "warn" })
   if doc then
      for _, ins in ipairs(doc.instructions) do
         if ins.op == "SNAPSHOT" and ins.path then
            list[#list + 1] = ins.path
         end
      end
   elseif text then
      for line in text:gmatch("[^\r\n]+") do
         local p = line:match("^%s*[Ss][Nn][Aa][Pp][Ss][Hh][Oo][Tt]%s+(.-)%s*$")
         if p then list[#list + 1] = p:gsub("^%-%-all%s+", "") end
      end
   end
   return list
end

-- Warn once that the recorded line needs `path` at replay, unless a
-- SNAPSHOT line of the Containerfile already covers it.
local function needs(ctx, path, what)
   for _, s in ipairs(ctx.snapshots or {}) do
      if under(path, s) then return end
   end
   ctx.seen_needs = ctx.seen_needs or {}
   if ctx.seen_needs[path] then return end
   ctx.seen_needs[path] = true
   ctx.warn(("%s %s: a fresh machine needs it when the RUN line replays; "
      .. "add 'SNAPSHOT --all %s' to %s to keep it in the layer")
      :format(what, path, path, ctx.file or "the Containerfile"))
end

-- }==================================================================

-- {==================================================================
-- Argument models
-- ===================================================================

-- Options that take a value, per tool family (long names; short letters).
local VALUES = {
   pip = {
      long = { "requirement", "constraint", "editable", "target",
         "platform", "python-version", "implementation", "abi", "root",
         "prefix", "src", "upgrade-strategy", "config-settings",
         "global-option", "install-option", "no-binary", "only-binary",
         "progress-bar", "root-user-action", "report", "index-url",
         "extra-index-url", "find-links", "log", "proxy", "retries",
         "timeout", "exists-action", "trusted-host", "cert", "client-cert",
         "cache-dir", "python", "use-feature", "use-deprecated",
         "keyring-provider" },
      short = "rcetifC",
   },
   uv = {
      long = { "requirement", "requirements", "constraint", "constraints",
         "override", "overrides", "build-constraint", "build-constraints",
         "editable", "extra", "group", "python", "target", "prefix",
         "index-url", "extra-index-url", "index", "default-index",
         "find-links", "index-strategy", "keyring-provider",
         "upgrade-package", "reinstall-package", "refresh-package",
         "no-build-package", "no-binary-package", "no-binary",
         "only-binary", "resolution", "prerelease", "fork-strategy",
         "exclude-newer", "link-mode", "config-setting", "python-version",
         "python-platform", "cache-dir", "config-file", "color",
         "directory", "project", "allow-insecure-host", "torch-backend",
         "python-preference", "with", "with-requirements", "from" },
      short = "rcebpifPCtw",
   },
   apt = {
      long = { "option", "target-release", "default-release",
         "config-file", "host-architecture" },
      short = "otca",
   },
   npm = {
      long = { "registry", "prefix", "workspace", "tag", "location", "omit",
         "include", "install-strategy", "cache", "userconfig", "loglevel",
         "before", "otp", "color" },
      short = "w",
   },
}

for _, v in pairs(VALUES) do
   local set = {}
   for _, n in ipairs(v.long) do set["--" .. n] = true end
   for c in v.short:gmatch(".") do set["-" .. c] = true end
   v.set = set
end

-- Split argv into tokens: {opt = "--name", value = V, form = "sep" |
-- "eq" | "attached"} or {arg = TEXT}.  Everything after "--" is an arg.
local function tokenize(args, family)
   local takes = VALUES[family].set
   local out, i = {}, 1
   while i <= #args do
      local a = args[i]
      if a == "--" then
         for j = i + 1, #args do out[#out + 1] = { arg = args[j] } end
         break
      elseif a:sub(1, 2) == "--" and #a > 2 then
         local name, value = a:match("^(%-%-[^=]+)=(.*)$")
         if name then
            out[#out + 1] = { opt = name, value = value, form = "eq" }
         elseif takes[a] and args[i + 1] then
            out[#out + 1] = { opt = a, value = args[i + 1], form = "sep" }
            i = i + 1
         else
            out[#out + 1] = { opt = a }
         end
      elseif a:match("^%-%a=") then
         out[#out + 1] = { opt = a:sub(1, 2), value = a:sub(4), form = "eq" }
      elseif a:match("^%-%a") then
         -- a cluster of short options; a letter that takes a value ends it
         local j = 2
         while j <= #a do
            local o = "-" .. a:sub(j, j)
            if takes[o] then
               local rest = a:sub(j + 1)
               if rest ~= "" then
                  out[#out + 1] = { opt = o, value = rest,
                     form = "attached" }
               elseif args[i + 1] then
                  out[#out + 1] = { opt = o, value = args[i + 1],
                     form = "sep" }
                  i = i + 1
               else
                  out[#out + 1] = { opt = o }
               end
               break
            end
            out[#out + 1] = { opt = o }
            j = j + 1
         end
      else
         out[#out + 1] = { arg = a }
      end
      i = i + 1
   end
   return out
end
M.tokenize = tokenize

-- Turn tokens back into words.  A split cluster stays split ("-qU" whose
-- "-q" was dropped comes back as "-U"): both forms replay the same.
local function words(tokens)
   local out = {}
   for _, t in ipairs(tokens) do
      if t.arg then
         out[#out + 1] = t.word or t.arg
      elseif t.value == nil then
         out[#out + 1] = t.opt
      elseif t.form == "eq" then
         out[#out + 1] = t.word or (t.opt .. "=" .. t.value)
      elseif t.form == "attached" then
         out[#out + 1] = t.opt .. t.value
      else
         out[#out + 1] = t.opt
         out[#out + 1] = t.word or t.value
      end
   end
   return out
end

-- A set from a policy list.
local function set_of(list)
   local s = {}
   for _, v in ipairs(list or {}) do s[v] = true end
   return s
end

-- Drop output-only options (policy shim.drop[family]: "NAME" a flag,
-- "NAME=" an option with a value).  Returns nil when a dry-run option
-- (policy shim.dry_run[family]) says nothing was installed.
local function clean(tokens, ctx, family)
   local shim = ctx.policy or {}
   local drop = set_of((shim.drop or {})[family])
   local dry = set_of((shim.dry_run or {})[family])
   local out = {}
   for _, t in ipairs(tokens) do
      if t.opt and (dry[t.opt] or dry[t.opt .. "="]) then return nil end
      local gone = t.opt and ((t.value == nil and drop[t.opt])
         or (t.value ~= nil and drop[t.opt .. "="]))
      if not gone then out[#out + 1] = t end
   end
   return out
end

local function is_url(s)
   return s:match("^%a[%w+.-]*://") or s:match("^git%+") or
      s:match("^file:")
end

-- Does a requirement or package argument name a local file or folder?
local ARCHIVE = { "%.whl$", "%.tar%.gz$", "%.tgz$", "%.zip$", "%.tar%.bz2$",
   "%.tar%.xz$", "%.deb$", "%.tar$" }
local function is_local(s, cwd)
   if is_url(s) or s:find("%s@%s") or s:find("^[%w._-]+@") then
      return false
   end
   if s == "." or s == ".." or s:match("^%.%.?/") or s:match("^/")
      or s:match("^~") then
      return true
   end
   local bare = s:gsub("%[[^%]]*%]$", "")
   for _, pat in ipairs(ARCHIVE) do
      if bare:find(pat) then return true end
   end
   return bare:find("/") ~= nil and fs.exists(join_path(cwd, bare))
end

-- Absolute form of a local path argument, keeping an extras suffix.
local function absolute_arg(s, base)
   local path, extras = s:match("^(.-)(%[[^%]]*%])$")
   if not path then path, extras = s, "" end
   if path:match("^~/") and os.getenv("HOME") then
      path = os.getenv("HOME") .. path:sub(2)
   end
   return join_path(base, path) .. extras, join_path(base, path)
end

-- }==================================================================

-- {==================================================================
-- Requirement files (D9)
-- ===================================================================

-- Logical lines of a requirements file: continuations joined, comments
-- and blank lines dropped.
local function req_lines(text)
   local lines, cur = {}, nil
   for line in (text .. "\n"):gmatch("(.-)\r?\n") do
      cur = cur and (cur .. line) or line
      if cur:sub(-1) == "\\" then
         cur = cur:sub(1, -2)
      else
         local l = cur:gsub("^#.*$", ""):gsub("%s+#.*$", "")
         l = l:gsub("^%s+", ""):gsub("%s+$", "")
         if l ~= "" then lines[#lines + 1] = l end
         cur = nil
      end
   end
   if cur and cur:match("%S") then lines[#lines + 1] = cur end
   return lines
end

local inline_requirements

-- Tokens for a -r FILE (or uv pip sync FILE) of the command line or of a
-- requirement file, appended to `out`.  `base` resolves FILE.
local function requirement_file(out, file, base, ctx, family, seen)
   local path = join_path(base, file)
   if file == "-" or path:match("^/dev/") or path:match("^/proc/") then
      return nil, ("cannot read requirements from %s after the install "
         .. "consumed it"):format(file)
   end
   if path:match("%.toml$") or path:match("%.py$") or path:match("%.cfg$")
   then
      -- project metadata, not a requirements list: replay reads it
      needs(ctx, path, "requirement source")
      out[#out + 1] = { opt = "-r", value = path, form = "sep" }
      return true
   end
   if seen[path] then return true end
   seen[path] = true
   local text, err = fs.read(path)
   if not text then
      return nil, "cannot read requirements: " .. tostring(err)
   end
   return inline_requirements(out, text, path, ctx, family, seen)
end

local function editable(out, value, ctx, form)
   if is_url(value) then
      out[#out + 1] = { opt = "-e", value = value, form = form }
      return
   end
   local full, dir = absolute_arg(value, ctx.cwd)
   needs(ctx, dir, "editable install of")
   out[#out + 1] = { opt = "-e", value = full, form = "sep" }
end

function inline_requirements(out, text, path, ctx, family, seen)
   local dir = dirname(path)
   for n, line in ipairs(req_lines(text)) do
      local where = ("%s:%d"):format(path, n)
      if line:sub(1, 1) == "-" then
         local argv = {}
         for w in line:gmatch("%S+") do argv[#argv + 1] = w end
         for _, t in ipairs(tokenize(argv, family)) do
            local o = t.opt
            if o == "-r" or o == "--requirement" then
               local ok, err = requirement_file(out, t.value, dir, ctx,
                  family, seen)
               if not ok then return nil, where .. ": " .. err end
            elseif o == "-c" or o == "--constraint" then
               ctx.warn(("%s: constraints file %s dropped from the "
                  .. "recorded line"):format(where, t.value))
            elseif o == "-e" or o == "--editable" then
               editable(out, t.value, ctx)
            elseif (o == "-f" or o == "--find-links") and t.value
               and not is_url(t.value) then
               local full = join_path(dir, t.value)
               needs(ctx, full, "find-links folder")
               out[#out + 1] = { opt = o, value = full, form = "sep" }
            elseif t.opt then
               t.word = t.value and expanding(t.value)
               out[#out + 1] = t
            end
         end
      else
         local req, opts = line:match("^(.-)%s+(%-%-?%a.*)$")
         req = req or line
         if opts then
            ctx.warn(("%s: per-requirement options dropped from the "
               .. "recorded line: %s"):format(where, opts))
         end
         if is_local(req, ctx.cwd) then
            local full, p = absolute_arg(req, ctx.cwd)
            needs(ctx, p, "local package")
            out[#out + 1] = { arg = full }
         else
            out[#out + 1] = { arg = req, word = expanding(req) }
         end
      end
   end
   return true
end

-- Rewrite pip/uv install tokens: inline -r, absolute -e and local paths,
-- absolute path options, constraints dropped.  Returns tokens or nil, err.
local PATH_OPTS = set_of { "--target", "-t", "--prefix", "--root", "--src",
   "--cert", "--client-cert", "--override", "--overrides",
   "--build-constraint", "--build-constraints", "-b", "--config-file" }
local function python_args(tokens, ctx, family, files_positional)
   local out, seen = {}, {}
   for _, t in ipairs(tokens) do
      local o = t.opt
      if (o == "-r" or o == "--requirement" or o == "--requirements")
         and t.value then
         local ok, err = requirement_file(out, t.value, ctx.cwd, ctx,
            family, seen)
         if not ok then return nil, err end
      elseif (o == "-c" or o == "--constraint" or o == "--constraints")
         and t.value then
         ctx.warn(("constraints file %s dropped from the recorded line")
            :format(t.value))
      elseif (o == "-e" or o == "--editable") and t.value then
         editable(out, t.value, ctx, t.form)
      elseif (o == "-f" or o == "--find-links") and t.value
         and not is_url(t.value) then
         local full = join_path(ctx.cwd, t.value)
         needs(ctx, full, "find-links folder")
         out[#out + 1] = { opt = o, value = full, form = t.form }
      elseif PATH_OPTS[o] and t.value then
         local full = join_path(ctx.cwd, t.value)
         if o == "--override" or o == "--overrides" or o:match("^%-%-build")
            or o == "-b" then
            needs(ctx, full, "file")
         end
         out[#out + 1] = { opt = o, value = full,
            form = t.form == "attached" and "sep" or t.form }
      elseif (o == "--python" or o == "-p") and t.value
         and t.value:find("/") then
         out[#out + 1] = { opt = o, value = join_path(ctx.cwd, t.value),
            form = t.form == "attached" and "sep" or t.form }
      elseif t.arg and files_positional then
         local ok, err = requirement_file(out, t.arg, ctx.cwd, ctx, family,
            seen)
         if not ok then return nil, err end
      elseif t.arg and is_local(t.arg, ctx.cwd) then
         local full, p = absolute_arg(t.arg, ctx.cwd)
         needs(ctx, p, "local package")
         out[#out + 1] = { arg = full }
      else
         out[#out + 1] = t
      end
   end
   return out
end

-- }==================================================================

-- {==================================================================
-- Tools
-- ===================================================================

-- Index of the first positional token at or after `from`.
local function positional(tokens, from)
   for i = from or 1, #tokens do
      if tokens[i].arg then return i end
   end
   return nil
end

-- The virtual environment uv installs into when none is named: uv's own
-- order of discovery.
local function uv_target(tokens, ctx)
   for _, t in ipairs(tokens) do
      if t.opt == "--system" or t.opt == "--python" or t.opt == "-p"
         or t.opt == "--target" or t.opt == "--prefix" then
         return nil
      end
   end
   local env = ctx.env or {}
   local function set(v) return v and v ~= "" and v ~= "0" end
   if set(env.UV_PYTHON) then return { "--python", env.UV_PYTHON } end
   if set(env.UV_SYSTEM_PYTHON) then return { "--system" } end
   local venv = set(env.VIRTUAL_ENV) and env.VIRTUAL_ENV
      or set(env.CONDA_PREFIX) and env.CONDA_PREFIX
   if not venv then
      local dir = ctx.cwd
      while true do
         if fs.exists(dir .. "/.venv/pyvenv.cfg") then
            venv = join_path(dir, ".venv")
            break
         end
         if dir == "/" or dir == "" then break end
         dir = dirname(dir)
         if dir == "" then dir = "/" end
      end
   end
   if venv then return { "--python", venv .. "/bin/python" } end
   return { "--system" }
end

local NPM_INSTALL = set_of { "install", "i", "in", "ins", "inst", "insta",
   "instal", "isnt", "isnta", "isntal", "isntall", "add" }

local tools = {}

-- uv [global options] pip install|sync ...; uv tool install ...
function tools.uv(args, ctx)
   local tokens = clean(tokenize(args, "uv"), ctx, "uv")
   if not tokens then return nil end
   local a = positional(tokens)
   local b = a and positional(tokens, a + 1)
   if not b then return nil end
   local cmd, sub = tokens[a].arg, tokens[b].arg
   local head, rest = table.move(tokens, 1, a - 1, 1, {}), {}
   for i = a + 1, #tokens do
      if i ~= b then rest[#rest + 1] = tokens[i] end
   end
   if cmd == "tool" and sub == "install" then
      local out, err = python_args(rest, ctx, "uv")
      if not out then return nil, err end
      local w = { "uv" }
      for _, x in ipairs(words(head)) do w[#w + 1] = x end
      w[#w + 1] = "tool"
      w[#w + 1] = "install"
      for _, x in ipairs(words(out)) do w[#w + 1] = x end
      return M.join(w)
   end
   if cmd ~= "pip" or (sub ~= "install" and sub ~= "sync") then
      return nil
   end
   local out, err = python_args(rest, ctx, "uv", sub == "sync")
   if not out then return nil, err end
   local w = { "uv" }
   for _, x in ipairs(words(head)) do w[#w + 1] = x end
   w[#w + 1] = "pip"
   w[#w + 1] = "install"
   for _, x in ipairs(uv_target(out, ctx) or {}) do w[#w + 1] = x end
   for _, x in ipairs(words(out)) do w[#w + 1] = x end
   return M.join(w)
end

-- pip install ...; `prefix` is how pip was started ({"pip"},
-- {"python3", "-m", "pip"}); `exe` the executable name looked up in PATH.
local function pip(prefix, exe, args, ctx)
   local tokens = clean(tokenize(args, "pip"), ctx, "pip")
   if not tokens then return nil end
   local a = positional(tokens)
   if not a or tokens[a].arg ~= "install" then return nil end
   table.remove(tokens, a)
   local out, err = python_args(tokens, ctx, "pip")
   if not out then return nil, err end
   local w = {}
   local venv = ctx.env and ctx.env.VIRTUAL_ENV
   local path = which(exe, ctx.env)
   local explicit = false
   for _, t in ipairs(out) do
      if t.opt == "--python" then explicit = true end
   end
   if not explicit and venv and venv ~= "" and path
      and under(path, venv .. "/bin") then
      w = { venv .. "/bin/python", "-m", "pip" }
   else
      for _, x in ipairs(prefix) do w[#w + 1] = x end
   end
   w[#w + 1] = "install"
   for _, x in ipairs(words(out)) do w[#w + 1] = x end
   return M.join(w)
end

function tools.pip(args, ctx) return pip({ "pip" }, "pip", args, ctx) end
function tools.pip3(args, ctx) return pip({ "pip3" }, "pip3", args, ctx) end

-- python3 -m pip ...; anything else is not an install.
local function python(name)
   return function(args, ctx)
      if args[1] ~= "-m" or args[2] ~= "pip" then return nil end
      return pip({ name, "-m", "pip" }, name, table.move(args, 3, #args, 1,
         {}), ctx)
   end
end
tools.python3 = python("python3")
tools.python = python("python")

-- apt-get|apt [options] install PKGS -> apt-get update && apt-get install
function tools.apt(args, ctx)
   local tokens = clean(tokenize(args, "apt"), ctx, "apt")
   if not tokens then return nil end
   local a = positional(tokens)
   if not a or tokens[a].arg ~= "install" then return nil end
   table.remove(tokens, a)
   local opts, pkgs = {}, {}
   for _, t in ipairs(tokens) do
      if t.arg then
         if is_local(t.arg, ctx.cwd) then
            local full = join_path(ctx.cwd, t.arg)
            needs(ctx, full, "package file")
            pkgs[#pkgs + 1] = full
         else
            pkgs[#pkgs + 1] = t.arg
         end
      else
         opts[#opts + 1] = t
      end
   end
   if #pkgs == 0 then return nil end
   local w = { "apt-get", "install", "-y" }
   for _, x in ipairs(words(opts)) do w[#w + 1] = x end
   for _, x in ipairs(pkgs) do w[#w + 1] = x end
   return "apt-get update && " .. M.join(w)
end
tools["apt-get"] = tools.apt

-- npm install -g X; local installs belong to a project's package.json.
function tools.npm(args, ctx)
   local tokens = clean(tokenize(args, "npm"), ctx, "npm")
   if not tokens then return nil end
   local a = positional(tokens)
   if not a or not NPM_INSTALL[tokens[a].arg] then return nil end
   table.remove(tokens, a)
   local global, rest = false, {}
   for _, t in ipairs(tokens) do
      if t.opt == "-g" or (t.opt == "--global" and (t.value == nil
         or t.value == "true")) or (t.opt == "--location"
         and t.value == "global") then
         global = true
      elseif t.arg and is_local(t.arg, ctx.cwd) then
         local full = join_path(ctx.cwd, t.arg)
         needs(ctx, full, "local package")
         rest[#rest + 1] = { arg = full }
      elseif t.opt == "--prefix" and t.value then
         rest[#rest + 1] = { opt = t.opt, value = join_path(ctx.cwd,
            t.value), form = t.form }
      else
         rest[#rest + 1] = t
      end
   end
   if not global or not positional(rest) then return nil end
   local w = { "npm", "install", "-g" }
   for _, x in ipairs(words(rest)) do w[#w + 1] = x end
   return M.join(w)
end

--- The default on_install hook: the command of the RUN line that replays
-- one successful install, or nil when `argv` is not an install to record.
-- @param argv {TOOL, ARGS...} as the shell ran it
-- @param ctx {cwd, env, file, snapshots, policy = the shim settings,
--   warn = function(msg)}
-- @return command string, or nil, or nil, err (nothing recorded)
function M.on_install(argv, ctx)
   local tool = argv[1]
   local f = tools[tool and tool:match("[^/]*$")]
   if not f then return nil end
   for _, a in ipairs(argv) do
      if a:find("[\r\n]") then
         return nil, "an argument holds a line break; a Containerfile "
            .. "line cannot replay it"
      end
   end
   return f(table.move(argv, 2, #argv, 1, {}), ctx)
end

-- }==================================================================

-- {==================================================================
-- The Containerfile append
-- ===================================================================

-- The last instruction line of a file's text, and whether that line
-- continues (ends with the escape character).
local function tail_of(text)
   local escape = text:match("^%s*#%s*escape%s*=%s*(%S)") or "\\"
   local last
   for line in text:gsub("\r\n?", "\n"):gmatch("[^\n]+") do
      if line:match("%S") and not line:match("^%s*#") then last = line end
   end
   local trimmed = last and last:gsub("%s+$", "")
   return trimmed, trimmed and trimmed:sub(-1) == escape
end

--- Append `line` to the Containerfile `file` under a lock on the file,
-- keeping its line endings.  An immediate repeat of the last instruction
-- line is skipped.
-- @return "recorded" or "repeat", or nil, err
function M.append(file, line)
   local lock <close>, lerr = fs.lock(file)
   if not lock then return nil, lerr end
   local text = fs.read(file) or ""
   local last, continues = tail_of(text)
   if last == line then return "repeat" end
   if continues then
      return nil, file .. " ends with a line continuation; an appended "
         .. "line would join it"
   end
   local nl = text:find("\r\n", 1, true) and "\r\n" or "\n"
   local sep = (text == "" or text:sub(-1) == "\n") and "" or nl
   local f, err = io.open(file, "ab")
   if not f then return nil, err end
   local ok, werr = f:write(sep, line, nl)
   local cok, cerr = f:close()
   if not ok or not cok then return nil, file .. ": " .. (werr or cerr) end
   return "recorded"
end

--- Record one install in `file`: the policy's on_install makes the line,
-- append() writes it.
-- @param o {policy = loaded policy, cwd, env, warn}
-- @return "recorded" | "repeat" | "ignored", line; or nil, err
function M.record(file, argv, o)
   local text = fs.read(file)
   local pol = o.policy or {}
   local ctx = { cwd = o.cwd or M.cwd(), env = o.env or proc.getenv(),
      file = file, snapshots = M.snapshots(text), policy = pol.shim or {},
      warn = o.warn or function() end }
   local hook = pol.on_install or M.on_install
   local ok, cmd, err = pcall(hook, argv, ctx)
   require("clayer.cleanup").reraise_interrupt(ok, cmd)
   if not ok then return nil, "on_install: " .. tostring(cmd) end
   if cmd == nil then
      if err then return nil, err end
      return "ignored"
   end
   if type(cmd) ~= "string" or cmd:find("[\r\n]") then
      return nil, "on_install must return one line of text"
   end
   local line = "RUN " .. cmd
   local what, aerr = M.append(file, line)
   if not what then return nil, aerr end
   return what, line
end

-- }==================================================================

-- {==================================================================
-- Shell code
-- ===================================================================

local function shell_name(tool)
   return tool:match("^[%w_.-]+$") ~= nil
end

--- Shell code (bash and zsh) defining one function per tool of the policy
-- that runs the real tool and, when it succeeds, records the install.
-- @param o {file = absolute Containerfile path, bin = clayer command,
--   policy_file = path or nil, tools = {...}, verbs = {...}}
-- @return the code
function M.shell(o)
   local q = M.quote
   local hook = { "\"$__clayer_shim_bin\"" }
   if o.policy_file then
      hook[#hook + 1] = "--policy " .. q(o.policy_file)
   end
   local verbs = {}
   for _, v in ipairs(o.verbs or {}) do
      if v:match("^[%w_.-]+$") then verbs[#verbs + 1] = v end
   end
   local L = {
      "# clayer shim: record installs into " .. o.file,
      "# (bash, zsh; run clayer_unshim to remove these functions)",
      "__clayer_shim_file=" .. q(o.file),
      "__clayer_shim_bin=" .. q(o.bin),
      "function __clayer_shim_record {",
      "  local __clayer_rc",
      "  CLAYER_SHIM_FILE=$__clayer_shim_file " .. table.concat(hook, " ")
         .. " hook install -- \"$@\"",
      "  __clayer_rc=$?",
      "  case $__clayer_rc in",
      "    0|1) ;;",
      "    *) printf 'clayer: warning: %s not recorded in %s (exit %s)\\n' "
         .. "\"$1\" \"$__clayer_shim_file\" \"$__clayer_rc\" >&2 ;;",
      "  esac",
      "  return 0",
      "}",
      "function __clayer_shim_wants {",
      "  local __clayer_w",
      "  for __clayer_w in \"$@\"; do",
      "    case $__clayer_w in",
      "      " .. (#verbs > 0 and table.concat(verbs, "|") or "''")
         .. ") return 0 ;;",
      "    esac",
      "  done",
      "  return 1",
      "}",
   }
   local names = {}
   for _, tool in ipairs(o.tools or {}) do
      if shell_name(tool) then
         names[#names + 1] = tool
         local test = "__clayer_shim_wants \"$@\""
         if tool:match("^python") then
            test = "[ \"$1\" = -m ] && [ \"$2\" = pip ] && " .. test
         end
         L[#L + 1] = "function " .. tool .. " {"
         L[#L + 1] = "  command " .. tool .. " \"$@\" || return $?"
         L[#L + 1] = "  if " .. test .. "; then"
         L[#L + 1] = "    __clayer_shim_record " .. tool .. " \"$@\""
         L[#L + 1] = "  fi"
         L[#L + 1] = "  return 0"
         L[#L + 1] = "}"
      end
   end
   L[#L + 1] = "function clayer_unshim {"
   L[#L + 1] = "  unset -f " .. table.concat(names, " ")
      .. (#names > 0 and " " or "")
      .. "__clayer_shim_record __clayer_shim_wants clayer_unshim"
   L[#L + 1] = "  unset __clayer_shim_file __clayer_shim_bin"
   L[#L + 1] = "}"
   return table.concat(L, "\n") .. "\n"
end

-- }==================================================================

return M
