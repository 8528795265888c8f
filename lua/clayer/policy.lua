--- Defaults for everything clayer decides, merged with the user's policy
-- file.  A policy file returns a table: scalars replace defaults; lists
-- replace the default list unless written { add = {...}, remove = {...} };
-- functions replace the default function and receive it as their last
-- argument.
local fs = require "clayer.fs"

local M = {}

--- The default policy.  Every field is documented in README.md.
function M.defaults()
   return {
      -- snapshot (DESIGN §6)
      watch = { "/" },
      exclude = {
         "/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp", "/var/cache",
         "/var/log", "/etc/resolv.conf", "/etc/hosts", "/etc/hostname",
         "/etc/machine-id", "/var/lib/dbus/machine-id",
         "/etc/ssh/ssh_host_*", "/root/.cache", "/home/*/.cache",
         "/root/.npm/_cacache", "/home/*/.npm/_cacache",
         "/var/lib/clayer", "/var/lib/apt/lists/lock",
         "/var/lib/dpkg/lock", "/var/lib/dpkg/lock-frontend",
         "/var/cache/apt/archives",
      },
      -- never scanned, not even to warn about changes
      pseudo = { "/proc", "/sys", "/dev", "/run" },
      allow_special = false,
      unknown_instruction = "error",
      -- RUN
      run_env = {
         PIP_BREAK_SYSTEM_PACKAGES = "1",
         UV_BREAK_SYSTEM_PACKAGES = "1",
      },
      run_timeout = nil,
      tail_lines = 20,
      -- archives
      zstd_level = 3,
      zstd_threads = 0,
      part_size = nil,
      -- cache
      cache = nil,
      keep = 3,
      min_age = 600,
      http = {
         connect_timeout = 30,   -- seconds to connect
         idle_timeout = 60,      -- seconds without a byte
         retries = 3,            -- retries after 5xx, resets, stalls
         backoff = 1,            -- first backoff, doubled each retry
      },
      -- GitHub Releases (fields missing here come from http)
      github = {
         max_backoff = 60,       -- longest single backoff
         max_wait = 300,         -- longest rate-limit wait accepted
         rate_retries = 4,       -- retries after rate limits
         secondary_wait = 60,    -- secondary limit without a hint
         wait_scale = 1,         -- multiplies server-requested waits
         per_page = 100,
         asset_limit = 2147483648 - 16777216,  -- bytes per asset
         draft_max_age = 86400,  -- prune drafts left by killed publishers
         request_timeout = 0,    -- total seconds per API call; 0: none
      },
      -- the secret scan before publishing (lua/clayer/secrets.lua):
      -- paths, folders or fnmatch patterns whose credential files and
      -- keys may be published (add to the list with { add = {...} }),
      -- and the largest file whose content is read
      secrets = {
         allow = { "/etc/ssl/private/ssl-cert-snakeoil.key" },
         max_size = 16 * 1024 * 1024,
      },
      -- pin FETCH github:OWNER/REPO@REF to the commit REF names at key
      -- time (one API call each): the key moves when the branch does
      resolve_refs = false,
      -- merge later layers' keys into each layer's key (compose)
      chain_keys = false,
      -- write /etc/profile.d/clayer.sh so login shells get the layers' ENV
      profile_d = false,
      -- the install shim (DESIGN §10, docs/SHIM.md)
      shim = {
         -- the shell functions `clayer shim` defines
         tools = { "uv", "pip", "pip3", "python3", "apt-get", "apt", "npm" },
         -- the shell calls the hook only when one argument is one of these
         verbs = { "install", "sync", "i", "add", "in", "ins", "inst",
            "insta", "instal", "isnt", "isnta", "isntal", "isntall" },
         -- output-only options left out of recorded lines, per tool
         -- family; "NAME=" is an option with a value
         drop = {
            uv = { "-q", "--quiet", "-v", "--verbose", "--no-progress",
               "--color=", "--no-color" },
            pip = { "-q", "--quiet", "-v", "--verbose", "--progress-bar=",
               "--no-color", "--log=", "--report=", "--root-user-action=",
               "--disable-pip-version-check",
               "--no-python-version-warning" },
            apt = { "-y", "--yes", "--assume-yes", "-q", "-q=", "--quiet",
               "--quiet=" },
            npm = { "-s", "--silent", "-q", "--quiet", "-d", "-dd", "-ddd",
               "--loglevel=", "--no-progress", "--progress=", "--no-fund",
               "--fund=", "--color=", "--no-color" },
         },
         -- options meaning nothing was installed: no line is recorded
         dry_run = {
            uv = { "--dry-run" },
            pip = { "--dry-run" },
            apt = { "-s", "--simulate", "--dry-run", "--just-print",
               "--recon", "--no-act", "-d", "--download-only",
               "--print-uris" },
            npm = { "--dry-run" },
         },
         -- print "recorded in FILE: RUN ..." after each recorded line
         announce = false,
      },
      -- functions
      key_extras = function(inputs) return inputs end,
      -- the RUN line for one install the shim saw (DESIGN §10)
      on_install = function(argv, ctx)
         return require("clayer.shim").on_install(argv, ctx)
      end,
      -- which cache entries to delete; see lua/clayer/retention.lua
      retention = function(entries, opts)
         return require("clayer.retention").select(entries, opts)
      end,
   }
end

local function is_list(t)
   return type(t) == "table" and (next(t) == nil or t[1] ~= nil)
end

local function merge_list(base, edit)
   if edit.add == nil and edit.remove == nil then return edit end
   local drop, out = {}, {}
   for _, v in ipairs(edit.remove or {}) do drop[v] = true end
   for _, v in ipairs(base or {}) do
      if not drop[v] then out[#out + 1] = v end
   end
   for _, v in ipairs(edit.add or {}) do out[#out + 1] = v end
   return out
end

--- Merge `user` over `base` (both tables) by the rules above.
function M.merge(base, user)
   for k, v in pairs(user) do
      local old = base[k]
      if type(v) == "function" and type(old) == "function" then
         local default = old
         base[k] = function(...)
            local args = table.pack(...)
            args[args.n + 1] = default
            return v(table.unpack(args, 1, args.n + 1))
         end
      elseif type(v) == "table" and (is_list(old) or v.add or v.remove) then
         base[k] = merge_list(old, v)
      elseif type(v) == "table" and type(old) == "table" then
         base[k] = M.merge(old, v)
      else
         base[k] = v
      end
   end
   return base
end

--- Where the policy file is: --policy, $CLAYER_POLICY, clayer.policy.lua
-- beside the Containerfile, ~/.config/clayer/policy.lua.
function M.find(explicit, cfdir)
   if explicit then return explicit end
   local env = os.getenv("CLAYER_POLICY")
   if env and env ~= "" then return env end
   if cfdir then
      local p = cfdir .. "/clayer.policy.lua"
      if fs.exists(p) then return p end
   end
   local home = os.getenv("HOME")
   if home then
      local p = home .. "/.config/clayer/policy.lua"
      if fs.exists(p) then return p end
   end
   return nil
end

--- Load the policy: the defaults merged with the file found, if any.
-- @return policy table, or nil, "FILE: why"
function M.load(explicit, cfdir)
   local p = M.defaults()
   local file = M.find(explicit, cfdir)
   if not file then return p end
   local chunk, err = loadfile(file, "t")
   if not chunk then return nil, err end
   local ok, user = pcall(chunk)
   require("clayer.cleanup").reraise_interrupt(ok, user)
   if not ok then return nil, file .. ": " .. tostring(user) end
   if type(user) ~= "table" then
      return nil, file .. ": a policy file must return a table"
   end
   p.file = file
   return M.merge(p, user)
end

return M
