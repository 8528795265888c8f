--- The clayer command line: argument parsing, the commands, exit codes.
local fs = require "clayer.fs"
local json = require "clayer.json"
local layer = require "clayer.layer"
local log = require "clayer.log"
local proc = require "clayer.proc"
local state = require "clayer.state"

local M = {}

--- Exit statuses (DESIGN §2).
M.EXIT = { OK = 0, FAILED = 1, USAGE = 2, CACHE = 3, DRIFT = 4,
   INTERRUPTED = 130 }

local USAGE = [[
usage: clayer [options] COMMAND [args]

commands:
  build FILE        run FILE, snapshot what changed, publish to the cache
  restore FILE      restore FILE's layer from the cache; build it on a miss
  hash FILE         print the cache key
  inspect FILE      print the parsed instructions, key and tag
  compose FILE...   restore or build several named layers in order
                    (or a layers.lua manifest; --name NAME:PATH)
  status            applied layers, and drift from their Containerfiles
  env               print the environment of the applied layers
  ls                list the layers in a cache
  prune             apply the retention policy to a cache
  shim FILE         print shell code that records installs into FILE
  scripts export DIR  write the embedded Lua scripts to DIR

options:
  --cache URI       cache: dir:PATH (or /PATH, ~/PATH) or github:OWNER/REPO
                    (env CLAYER_CACHE)
  --repo OWNER/REPO same as --cache github:OWNER/REPO
  --token-file F    GitHub token from a file (else GH_TOKEN, GITHUB_TOKEN)
  --cacert F        CA bundle (env CLAYER_CA_BUNDLE)
  --keep N, --dry-run  prune: how many to keep per name; show only
  --manifest FILE   compose: layer list (default layers.lua)
  --name NAME       layer name (tag layer-NAME-KEY)
  --salt S          extra key input
  --build-arg K=V   ARG value (repeatable)
  --no-build        restore: a miss fails instead of building
  --no-push         build and snapshot, publish nothing (alias --no-cache)
  --root DIR        work below DIR instead of /
  --policy FILE     policy file
  --format sh|json  env: output form
  --json            one JSON object on stdout
  -q, -v            quiet (errors only), verbose
  --version, --help
]]

-- Options that take a value, and the flags.
local with_value = {
   cache = true, repo = true, name = true, salt = true, ["build-arg"] = true,
   root = true, keep = true, manifest = true, ["token-file"] = true,
   token = true, cacert = true, policy = true, format = true,
}
local flags = {
   ["no-build"] = true, ["no-push"] = true, ["no-cache"] = true,
   ["dry-run"] = true, json = true, help = true, version = true,
}

--- Parse argv into {command, args = {...}, opts = {...}}.
-- @return parsed, or nil, err, what was parsed before the error
function M.parse(argv)
   local out = { args = {}, opts = { ["build-arg"] = {} } }
   local i = 1
   while i <= #argv do
      local a = argv[i]
      if a == "--" then
         for j = i + 1, #argv do out.args[#out.args + 1] = argv[j] end
         break
      elseif a == "-q" then
         out.opts.quiet = true
      elseif a == "-v" then
         out.opts.verbose = true
      elseif a == "-h" then
         out.opts.help = true
      elseif a:sub(1, 2) == "--" then
         local name, value = a:sub(3):match("^([^=]+)=(.*)$")
         name = name or a:sub(3)
         if with_value[name] then
            if value == nil then
               i = i + 1
               value = argv[i]
               if value == nil then
                  return nil, "option --" .. name .. " needs a value", out
               end
            end
            if name == "build-arg" then
               table.insert(out.opts[name], value)
            elseif name == "name" then
               out.opts.names = out.opts.names or {}
               table.insert(out.opts.names, value)
               out.opts.name = value
            else
               out.opts[name] = value
            end
         elseif flags[name] then
            if value ~= nil then
               return nil, "option --" .. name .. " takes no value", out
            end
            out.opts[name] = true
         else
            return nil, "unknown option: " .. a, out
         end
      elseif a:sub(1, 1) == "-" and a ~= "-" then
         return nil, "unknown option: " .. a, out
      elseif not out.command then
         out.command = a
      else
         out.args[#out.args + 1] = a
      end
      i = i + 1
   end
   return out
end

function M.cache_uri(opts)
   if opts.cache then return opts.cache end
   if opts.repo then return "github:" .. opts.repo end
   return nil
end

local function build_args(opts)
   local t = {}
   for _, kv in ipairs(opts["build-arg"]) do
      local k, v = kv:match("^([^=]+)=(.*)$")
      if not k then return nil, "--build-arg needs K=V: " .. kv end
      t[k] = v
   end
   return t
end

local function one_file(p)
   if #p.args ~= 1 then
      return nil, p.command .. " needs one FILE"
   end
   local file = p.args[1]
   if not fs.exists(file) then
      return nil, file .. ": No such file or directory"
   end
   return file
end

--- The layer named by the command line (one FILE and the options).
function M.make_layer(p, file)
   local err
   if not file then
      file, err = one_file(p)
      if not file then return nil, err, "usage" end
   end
   local args
   args, err = build_args(p.opts)
   if not args then return nil, err, "usage" end
   return layer.new {
      file = file, name = p.opts.name, cache = M.cache_uri(p.opts),
      salt = p.opts.salt, build_args = args, root = p.opts.root,
      policy_file = p.opts.policy, no_build = p.opts["no-build"],
      no_push = p.opts["no-push"] or p.opts["no-cache"],
      cache_opts = M.cache_opts(p),
   }
end

--- Options every cache backend gets from the command line.
function M.cache_opts(p)
   return { token = p.opts.token, token_file = p.opts["token-file"],
      cacert = p.opts.cacert }
end

function M.code_for(code)
   if code == "usage" or code == "parse" then return M.EXIT.USAGE end
   if code == "cache" or code == "miss" then return M.EXIT.CACHE end
   if code == "interrupted" then return M.EXIT.INTERRUPTED end
   return M.EXIT.FAILED
end

--- Whether this run printed its --json object already.
M.json_printed = false

function M.print_json(obj)
   M.json_printed = true
   io.stdout:write(json.encode(obj, { pretty = true }), "\n")
end

--- The --json object of a command that failed before it printed its own
-- (bad option, bad cache URI, Containerfile error...): the same
-- `command`, `ok`, `error` and `warnings` as every --json object, and
-- `code`, why it failed (usage, parse, cache, failed, interrupted: the
-- codes M.code_for maps to exit statuses).
function M.error_object(command, err, code)
   return { command = command or json.null, ok = false,
      error = log.redact(err), code = code or "failed",
      warnings = json.array(log.warnings) }
end

function M.summary(command, ok, reports, err, code)
   -- download_started and extract_finished are proc.clock() readings
   -- (monotonic); JSON gives them as wall-clock epoch seconds, one offset
   -- for all, so they still compare exactly with each other
   local offset = proc.time() - proc.clock()
   local function wall(mono)
      return type(mono) == "number" and mono + offset or nil
   end
   local layers = {}
   for _, r in ipairs(reports) do
      layers[#layers + 1] = { name = r.name or json.null, tag = r.tag,
         key = r.key, action = r.action, bytes = r.bytes, files = r.files,
         published = r.published,
         download_started = wall(r.download_started),
         extract_finished = wall(r.extract_finished) }
   end
   local timings = {}
   for _, r in ipairs(reports) do
      for k, v in pairs(r.timings or {}) do
         timings[k] = (timings[k] or 0) + v
      end
   end
   local obj = { command = command, ok = ok, layers = json.array(layers),
      timings = timings, warnings = json.array(log.warnings),
      error = err and log.redact(err) or json.null }
   if not ok then obj.code = code or "failed" end
   return obj
end

local commands = {}

-- build, restore: run one layer through one of its methods.
local function layer_command(method)
   return function(p)
      local l, err, code = M.make_layer(p)
      if not l then return nil, err, code end
      local t0 = os.time()
      local report, rerr, rreport = l[method](l)
      local r = report or rreport
      if p.opts.json then
         M.print_json(M.summary(p.command, report ~= nil, { r }, rerr,
            r.code))
      end
      if not report then return nil, rerr, r.code end
      if report.action == "built" or report.action == "hit" then
         local total = 0
         for _, v in pairs(report.timings) do total = total + v end
         log.info("%s %s: %d files, %s, %.1f s", report.action == "hit"
            and "restored" or "built", report.tag, report.files,
            log.size(report.bytes or 0), math.max(total, os.time() - t0))
      end
      return M.EXIT.OK
   end
end

commands.build = layer_command("build_and_push")
commands.restore = layer_command("restore_or_build")

function commands.hash(p)
   local l, err, code = M.make_layer(p)
   if not l then return nil, err, code end
   if p.opts.json then
      M.print_json({ command = "hash", ok = true, file = l.display,
         key = (l:key()), tag = l:tag(), error = json.null,
         warnings = json.array(log.warnings) })
   else
      io.stdout:write(l:key(), "\n")
   end
   return M.EXIT.OK
end

function commands.inspect(p)
   local l, err, code = M.make_layer(p)
   if not l then return nil, err, code end
   local key, full, extras = l:key()
   if p.opts.json then
      local list = {}
      for _, ins in ipairs(l.doc.instructions) do
         list[#list + 1] = { op = ins.op, line = ins.line, col = ins.col,
            args = json.array(ins.args or {}) }
      end
      M.print_json({ command = "inspect", ok = true, file = l.display,
         key = key, key_sha256 = full, extras = extras, tag = l:tag(),
         name = l.name or json.null, instructions = json.array(list),
         error = json.null, warnings = json.array(log.warnings) })
      return M.EXIT.OK
   end
   for _, ins in ipairs(l.doc.instructions) do
      local args = ins.args or {}
      if ins.exec then args = { json.encode(json.array(ins.exec)) } end
      io.stdout:write(("%4d  %-9s %s%s\n"):format(ins.line, ins.op,
         table.concat(args, " "), ins.ignored and "   (ignored)" or ""))
   end
   io.stdout:write(("key  %s\ntag  %s\n"):format(key, l:tag()))
   if extras ~= "" then
      io.stdout:write("extras ", (extras:gsub("\n", "; ")), "\n")
   end
   return M.EXIT.OK
end

function M.root_of(p)
   local root = p.opts.root or "/"
   if root == "/" then return "" end
   return root:gsub("/+$", "")
end

function commands.env(p)
   local st = state.load(state.dir(M.root_of(p)))
   local format = p.opts.format or (p.opts.json and "json") or "sh"
   if format == "sh" then
      io.stdout:write(state.env_sh(st))
   elseif format == "json" then
      local env = state.environment(st)
      io.stdout:write(json.encode(env, { pretty = true }), "\n")
   else
      return nil, "--format takes sh or json", "usage"
   end
   return M.EXIT.OK
end

-- A word for a shell command line: as it is when that is safe, else
-- single-quoted.
local function shell_word(s)
   s = tostring(s)
   if s:match("^[%w@%%+=:,./_-]+$") then return s end
   return state.shell_quote(s)
end

-- The command that rebuilds an applied layer: its file, name and cache,
-- and the options its key and place depend on (root, salt, build args,
-- policy), so it gives the key status computed.
local function rebuild_command(row, o)
   local words = { "clayer", "build", shell_word(row.file) }
   local function add(opt, v)
      words[#words + 1] = opt
      words[#words + 1] = shell_word(v)
   end
   if type(row.name) == "string" then add("--name", row.name) end
   if type(row.cache) == "string" then add("--cache", row.cache) end
   if o.root then add("--root", o.root) end
   if o.salt then add("--salt", o.salt) end
   local names = {}
   for k in pairs(o.build_args) do names[#names + 1] = k end
   table.sort(names)
   for _, k in ipairs(names) do
      add("--build-arg", k .. "=" .. o.build_args[k])
   end
   if o.policy then add("--policy", o.policy) end
   return table.concat(words, " ")
end

-- The salt and build args to compute an applied layer's key with: those
-- given to status, else those it was applied with (applied.json).
local function key_inputs(l, p, given)
   local salt = p.opts.salt
   if salt == nil and type(l.salt) == "string" and l.salt ~= "" then
      salt = l.salt
   end
   local args = given
   if not next(args) and type(l.build_args) == "table" then
      args = {}
      for k, v in pairs(l.build_args) do
         if type(k) == "string" and type(v) == "string" then args[k] = v end
      end
   end
   return salt, args
end

function commands.status(p)
   local root = M.root_of(p)
   local given, aerr = build_args(p.opts)
   if not given then return nil, aerr, "usage" end
   local st = state.load(state.dir(root))
   local rows, drift = {}, false
   for _, l in ipairs(st.layers) do
      local row = { name = l.name, tag = l.tag, key = l.key, file = l.file,
         time = l.time, files = l.files, cache = l.cache }
      if type(l.file) == "string" and fs.exists(l.file) then
         local salt, args = key_inputs(l, p, given)
         local nl, lerr = layer.new { file = l.file,
            name = l.name ~= json.null and l.name or nil,
            root = root ~= "" and root or nil, salt = salt,
            build_args = args, policy_file = p.opts.policy }
         if nl then
            row.current_key = (nl:key())
            row.drift = row.current_key ~= l.key
            if row.drift then
               row.rebuild = rebuild_command(row, { salt = salt,
                  build_args = args, policy = p.opts.policy,
                  root = nl.root ~= "" and nl.root or nil })
            end
         else
            row.drift = true
            row.error = lerr
         end
      else
         row.drift = true
         row.missing = true
      end
      if row.drift then drift = true end
      rows[#rows + 1] = row
   end
   if p.opts.json then
      M.print_json({ command = "status", ok = true, drift = drift,
         layers = json.array(rows), error = json.null,
         warnings = json.array(log.warnings) })
   else
      if #rows == 0 then io.stdout:write("no layers applied\n") end
      for _, r in ipairs(rows) do
         local what = "up to date"
         if r.missing then
            what = "Containerfile missing: " .. tostring(r.file)
         elseif r.error then
            what = "cannot compute its key now: " .. r.error
         elseif r.drift then
            what = ("changed since applied (key %s); rebuild it in a "
               .. "fresh container: %s"):format(r.current_key, r.rebuild)
            if p.opts.root then
               -- this root holds the old layer: a build on it would
               -- snapshot only the difference
               what = what .. "\n  (with --root: on a fresh copy of the "
                  .. "base root, not this one, which holds the old layer)"
            end
         end
         io.stdout:write(("%s  %s  %s\n"):format(r.tag, r.time or "", what))
      end
   end
   return drift and M.EXIT.DRIFT or M.EXIT.OK
end

function commands.scripts(p)
   if p.args[1] ~= "export" or #p.args ~= 2 then
      return nil, "usage: clayer scripts export DIR", "usage"
   end
   local dir = p.args[2]
   local scripts = require("clayer.embedded").scripts()
   local names = {}
   for path in pairs(scripts) do names[#names + 1] = path end
   table.sort(names)
   for _, path in ipairs(names) do
      local file = dir .. "/" .. path
      local ok, err = fs.mkdirp(file:match("^(.*)/"), 493)
      if ok then ok, err = fs.write_atomic(file, scripts[path], 420) end
      if not ok then return nil, err, "failed" end
   end
   local ok, err = fs.write_atomic(dir .. "/clayer/VERSION",
      layer.VERSION .. "\n", 420)
   if not ok then return nil, err, "failed" end
   io.stdout:write(("wrote %d scripts to %s\n"):format(#names, dir))
   return M.EXIT.OK
end

-- Whether argv asks for --json (also when it could not be parsed).
local function wants_json(argv)
   for _, a in ipairs(argv) do
      if a == "--" then return false end
      if a == "--json" then return true end
   end
   return false
end

--- Run the command line; returns the exit status.
function M.main(argv)
   local json_mode = wants_json(argv)
   -- a failure: the one-line error on stderr and, with --json, the JSON
   -- object on stdout unless the command printed its own
   local function failed(command, msg, code, hint)
      log.error(msg)
      if hint then io.stderr:write("try 'clayer --help'\n") end
      if json_mode and not M.json_printed then
         M.print_json(M.error_object(command, msg, code))
      end
      return M.code_for(code)
   end
   local p, err, partial = M.parse(argv)
   if not p then
      return failed(partial and partial.command, err, "usage", true)
   end
   if p.opts.quiet then log.level = log.QUIET end
   if p.opts.verbose then log.level = log.VERBOSE end
   if p.opts.version then
      io.stdout:write("clayer ", layer.VERSION, "\n")
      return M.EXIT.OK
   end
   if json_mode and not (p.opts.help or p.command) then
      return failed(nil, "no command given", "usage", true)
   end
   if p.opts.help or not p.command then
      io.stdout:write(USAGE)
      return p.command and M.EXIT.OK or (p.opts.help and 0 or M.EXIT.USAGE)
   end
   if p.opts.token then
      log.secret(p.opts.token)
      log.warn("--token is visible to every process on this machine; "
         .. "use GH_TOKEN or --token-file")
   end
   for _, k in ipairs { "GH_TOKEN", "GITHUB_TOKEN" } do
      log.secret(os.getenv(k))
   end
   local f = commands[p.command]
   if not f and p.command:match("^[a-z]+$") then
      -- further commands live in clayer.cmd.<name>, each with run(p, cli)
      local ok, mod = pcall(require, "clayer.cmd." .. p.command)
      -- SIGINT/SIGTERM while loading: not "unknown command"
      require("clayer.cleanup").reraise_interrupt(ok, mod)
      if ok then f = function(q) return mod.run(q, M) end end
   end
   if not f then
      return failed(p.command, "unknown command: " .. p.command, "usage",
         true)
   end
   if p.opts.root == "" then
      return failed(p.command, "--root needs a folder (an empty value is "
         .. "not one)", "usage", true)
   end
   local ok, status, msg, code = pcall(f, p)
   if not ok and tostring(status):match("interrupted$") then
      -- SIGINT/SIGTERM: the C side raises "...: interrupted"
      return failed(p.command, "interrupted", "interrupted")
   end
   if not ok then
      local st = failed(p.command, "internal error: " .. tostring(status),
         "failed")
      io.stderr:write("clayer: this is a bug; please report it with the "
         .. "command that caused it\n")
      return st
   end
   if status == nil and code == "interrupted" then
      return failed(p.command, "interrupted", "interrupted")
   end
   if status == nil then
      return failed(p.command, msg, code)
   end
   return status
end

return M
