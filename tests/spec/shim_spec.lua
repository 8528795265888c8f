--- The install shim: argv -> RUN line (D8, D9, D10), the locked append,
-- the hook command and the shell code.
local lu = require "luaunit"
local h = require "helper"
local policy = require "clayer.policy"
local shim = require "clayer.shim"

-- The RUN command for argv in a context; warnings collected in ctx.warned.
local function line(argv, ctx)
   ctx = ctx or {}
   ctx.cwd = ctx.cwd or "/srv/proj"
   ctx.env = ctx.env or { PATH = "/nonexistent" }
   ctx.policy = ctx.policy or policy.defaults().shim
   ctx.warned = {}
   ctx.warn = function(m) ctx.warned[#ctx.warned + 1] = m end
   return shim.on_install(argv, ctx)
end

local function split(s)
   local t = {}
   for w in s:gmatch("%S+") do t[#t + 1] = w end
   return t
end

-- Run the hook command for argv (shell-quoted here) on FILE.
local function hook(file, argv, extra)
   local words = {}
   for i, a in ipairs(argv) do words[i] = h.q(a) end
   return h.clayer("hook install -- " .. table.concat(words, " "),
      (extra or "") .. " CLAYER_SHIM_FILE=" .. h.q(file) .. " PWD= ")
end

local function lines_of(text)
   local t = {}
   for l in text:gmatch("([^\n]*)\n") do t[#t + 1] = l end
   return t
end

TestShimQuote = {}

function TestShimQuote:test_matches_python_shlex_quote()
   local cases = { "", "plain", "a b", "it's", "numpy>=1.26,<3",
      "requests[socks]", 'pkg ; python_version>"3.8"', "@%+=:,./_-",
      "$HOME", "`x`", "a\\b", "~user", "*.whl", "é", "x'\"'y", "-e", "!" }
   local dir = h.tmpdir()
   h.write(dir .. "/in.json", require("clayer.json").encode(cases))
   local out = h.sh("/usr/bin/python3 -c 'import json, shlex, sys; "
      .. "print(json.dumps([shlex.quote(s) for s in json.load(sys.stdin)]))'"
      .. " < " .. h.q(dir .. "/in.json"))
   local want = require("clayer.json").decode(out)
   for i, s in ipairs(cases) do
      lu.assertEquals(shim.quote(s), want[i], "quote of " .. s)
   end
end

function TestShimQuote:tearDown()
   h.cleanup()
end

TestShimLine = {}

function TestShimLine:tearDown()
   h.cleanup()
end

function TestShimLine:test_d8_requoted_exactly()
   lu.assertEquals(line { "uv", "pip", "install", "numpy>=1.26,<3",
      "requests[socks]", 'pkg ; python_version>"3.8"' },
      "uv pip install --system 'numpy>=1.26,<3' 'requests[socks]' "
      .. "'pkg ; python_version>\"3.8\"'")
   lu.assertEquals(line { "uv", "pip", "install", "--upgrade",
      "rich==13.7.1" }, "uv pip install --system --upgrade rich==13.7.1")
end

function TestShimLine:test_d8_line_replays_in_sh()
   local dir = h.tmpdir()
   h.write(dir .. "/uv", "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' "
      .. "\"$a\"; done > \"$UV_LOG\"\n")
   h.sh("chmod +x " .. h.q(dir .. "/uv"))
   local cmd = line { "uv", "pip", "install", "numpy>=1.26,<3",
      "requests[socks]", 'pkg ; python_version>"3.8"', "it's" }
   local _, code = h.sh("cd " .. h.q(dir) .. " && PATH=" .. h.q(dir)
      .. ":$PATH UV_LOG=" .. h.q(dir .. "/log") .. " /bin/sh -c "
      .. h.q(cmd))
   lu.assertEquals(code, 0)
   lu.assertEquals(h.read(dir .. "/log"), "pip\ninstall\n--system\n"
      .. "numpy>=1.26,<3\nrequests[socks]\npkg ; python_version>\"3.8\"\n"
      .. "it's\n")
   local left = h.sh("ls " .. h.q(dir))
   lu.assertEquals(left, "log\nuv\n")   -- no file named =1.26,<3
end

function TestShimLine:test_quiet_and_output_flags_dropped()
   lu.assertEquals(line(split("uv -q pip install -v --no-progress "
      .. "--color=never x")), "uv pip install --system x")
   lu.assertEquals(line(split("pip install -qq --progress-bar off "
      .. "--disable-pip-version-check -U x")), "pip install -U x")
   lu.assertEquals(line(split("pip install -qU x")), "pip install -U x")
   lu.assertEquals(line(split("apt-get -yqq install --no-install-recommends "
      .. "hello")), "apt-get update && apt-get install -y "
      .. "--no-install-recommends hello")
   lu.assertEquals(line(split("apt-get install -q=2 --yes hello")),
      "apt-get update && apt-get install -y hello")
   lu.assertEquals(line(split("npm i --silent --no-fund -g --loglevel=error"
      .. " a@1")), "npm install -g a@1")
end

function TestShimLine:test_non_install_commands_ignored()
   for _, c in ipairs { "uv run x", "uv pip list", "uv --version",
      "uv pip install --dry-run x", "uv add x", "pip download x",
      "pip list", "pip install --dry-run x", "python3 script.py install",
      "python3 -m venv install", "apt-get update", "apt-get remove x",
      "apt-get -s install x", "apt install --download-only x",
      "apt-get install", "npm install lodash", "npm i", "npm run install",
      "npm install --dry-run -g x", "cargo install x" } do
      lu.assertNil(line(split(c)), c)
   end
end

function TestShimLine:test_d9_nested_requirements_inlined()
   local proj = h.tmpdir() .. "/srv/proj"
   h.sh("mkdir -p " .. h.q(proj .. "/requirements"))
   h.write(proj .. "/requirements/dev.txt", "-r base.txt\nrich==13.7.1\n")
   h.write(proj .. "/requirements/base.txt", "httpx==0.27.0\n")
   local ctx = { cwd = proj }
   lu.assertEquals(line({ "uv", "pip", "install", "-r",
      "requirements/dev.txt" }, ctx),
      "uv pip install --system httpx==0.27.0 rich==13.7.1")
   lu.assertEquals(ctx.warned, {})
   -- from another folder, with the file named by a relative path
   lu.assertEquals(line({ "pip", "install", "--requirement=proj/"
      .. "requirements/dev.txt" }, { cwd = proj:match("^(.*)/") }),
      "pip install httpx==0.27.0 rich==13.7.1")
end

function TestShimLine:test_requirement_file_details()
   local dir = h.tmpdir()
   h.sh("mkdir -p " .. h.q(dir .. "/req/common") .. " "
      .. h.q(dir .. "/wheels"))
   h.write(dir .. "/req/all.txt", table.concat({
      "# the whole set",
      "--index-url https://${IDX_TOKEN}@example.invalid/simple",
      "-r common/x.txt   # shared",
      "-c constraints.txt",
      "numpy>=1.26,<3 \\",
      "  ; python_version >= \"3.9\"",
      "",
      "pinned==1.0 --hash=sha256:abc",
      "./wheels/local-1.0-py3-none-any.whl",
      "-e ../lib",
      "-f ../wheels",
   }, "\r\n") .. "\r\n")
   h.write(dir .. "/req/common/x.txt", "-r ../all.txt\ncommon==2\n")
   local ctx = { cwd = dir }
   lu.assertEquals(line({ "pip", "install", "-r", "req/all.txt" }, ctx),
      "pip install --index-url "
      .. "\"https://${IDX_TOKEN}@example.invalid/simple\" common==2 "
      .. "'numpy>=1.26,<3   ; python_version >= \"3.9\"' pinned==1.0 "
      .. dir .. "/wheels/local-1.0-py3-none-any.whl -e "
      .. dir:match("^(.*)/") .. "/lib -f " .. dir .. "/wheels")
   -- the ${NAME} reference is left for the shell at replay time
   local word = "\"https://${IDX_TOKEN}@example.invalid/simple\""
   lu.assertEquals(h.sh("IDX_TOKEN='t k' /bin/sh -c " .. h.q("printf %s "
      .. word)), "https://t k@example.invalid/simple")
   local all = table.concat(ctx.warned, "\n")
   lu.assertStrContains(all, "constraints file constraints.txt dropped")
   lu.assertStrContains(all, "per-requirement options dropped")
   lu.assertStrContains(all, "SNAPSHOT --all " .. dir:match("^(.*)/")
      .. "/lib")
   -- an unreadable requirements file records nothing
   local cmd, err = line({ "uv", "pip", "install", "-r", "missing.txt" },
      { cwd = dir })
   lu.assertNil(cmd)
   lu.assertStrContains(err, "missing.txt")
   lu.assertNil(line({ "pip", "install", "-r", "/dev/fd/63" }, ctx))
end

function TestShimLine:test_uv_pip_sync_recorded_as_install()
   local dir = h.tmpdir()
   h.write(dir .. "/lock.txt", "a==1\nb==2\n")
   lu.assertEquals(line({ "uv", "pip", "sync", "lock.txt" }, { cwd = dir }),
      "uv pip install --system a==1 b==2")
end

function TestShimLine:test_d10_editable_absolute_with_warning()
   local ctx = { cwd = "/srv/mylib" }
   lu.assertEquals(line({ "uv", "pip", "install", "-e", "." }, ctx),
      "uv pip install --system -e /srv/mylib")
   lu.assertEquals(#ctx.warned, 1)
   lu.assertStrContains(ctx.warned[1], "/srv/mylib")
   lu.assertStrContains(ctx.warned[1], "SNAPSHOT --all /srv/mylib")
   -- already under a SNAPSHOT line: no warning
   ctx = { cwd = "/srv/mylib/sub", snapshots = { "/srv" } }
   lu.assertEquals(line({ "pip", "install", "-e", "..[dev]" }, ctx),
      "pip install -e '/srv/mylib[dev]'")
   lu.assertEquals(ctx.warned, {})
   lu.assertEquals(line { "pip", "install", "-e", "git+https://h.invalid/r" },
      "pip install -e git+https://h.invalid/r")
end

function TestShimLine:test_snapshot_lines_found_in_file()
   lu.assertEquals(shim.snapshots("RUN a\nSNAPSHOT /srv/mylib\n"
      .. "snapshot --all /opt/x\n"), { "/srv/mylib", "/opt/x" })
end

function TestShimLine:test_install_target()
   local dir = h.tmpdir()
   h.sh("mkdir -p " .. h.q(dir .. "/venv/bin") .. " " .. h.q(dir .. "/p/.venv")
      .. " " .. h.q(dir .. "/p/sub"))
   h.write(dir .. "/p/.venv/pyvenv.cfg", "home = /usr/bin\n")
   for _, t in ipairs { "pip", "pip3", "python3" } do
      h.write(dir .. "/venv/bin/" .. t, "#!/bin/sh\n")
   end
   h.sh("chmod +x " .. h.q(dir) .. "/venv/bin/*")
   local venv = { VIRTUAL_ENV = dir .. "/venv", PATH = dir .. "/venv/bin" }
   lu.assertEquals(line({ "uv", "pip", "install", "x" }, { env = venv }),
      "uv pip install --python " .. dir .. "/venv/bin/python x")
   lu.assertEquals(line({ "uv", "pip", "install", "--system", "x" },
      { env = venv }), "uv pip install --system x")
   lu.assertEquals(line({ "uv", "pip", "install", "x" },
      { env = { UV_SYSTEM_PYTHON = "1", VIRTUAL_ENV = "/v" } }),
      "uv pip install --system x")
   lu.assertEquals(line({ "uv", "pip", "install", "x" },
      { cwd = dir .. "/p/sub" }),
      "uv pip install --python " .. dir .. "/p/.venv/bin/python x")
   lu.assertEquals(line({ "pip", "install", "x" }, { env = venv }),
      dir .. "/venv/bin/python -m pip install x")
   lu.assertEquals(line({ "python3", "-m", "pip", "install", "-q", "x" },
      { env = venv }), dir .. "/venv/bin/python -m pip install x")
   -- a venv without its own pip3: the pip that ran is not the venv's
   h.sh("rm " .. h.q(dir .. "/venv/bin/pip3"))
   lu.assertEquals(line({ "pip3", "install", "x" }, { env = venv }),
      "pip3 install x")
   lu.assertEquals(line { "python3", "-m", "pip", "install", "x" },
      "python3 -m pip install x")
   lu.assertEquals(line { "pip", "install", "--user", "x" },
      "pip install --user x")
end

function TestShimLine:test_local_paths_made_absolute()
   local ctx = { cwd = "/work" }
   lu.assertEquals(line({ "pip", "install", "--target", "lib", "-t../t2",
      "dist/x-1.0-py3-none-any.whl", "./pkg[extra]", "y.tar.gz" }, ctx),
      "pip install --target /work/lib -t /t2 "
      .. "/work/dist/x-1.0-py3-none-any.whl '/work/pkg[extra]' "
      .. "/work/y.tar.gz")
   lu.assertEquals(#ctx.warned, 3)
   lu.assertEquals(line({ "apt", "install", "./x.deb", "curl" }, ctx),
      "apt-get update && apt-get install -y /work/x.deb curl")
   lu.assertEquals(line({ "npm", "install", "--global", "../tool" }, ctx),
      "npm install -g /tool")
end

function TestShimLine:test_apt_and_npm()
   lu.assertEquals(line { "apt", "install", "-t", "bookworm-backports",
      "-o", "Dpkg::Options::=--force-confnew", "git", "vim=2:9*" },
      "apt-get update && apt-get install -y -t bookworm-backports -o "
      .. "Dpkg::Options::=--force-confnew git 'vim=2:9*'")
   lu.assertEquals(line(split("npm install -g typescript")),
      "npm install -g typescript")
   lu.assertEquals(line(split("npm add --location=global @scope/x@^2")),
      "npm install -g '@scope/x@^2'")
end

function TestShimLine:test_uv_tool_install()
   lu.assertEquals(line(split("uv tool install -q ruff==0.5.0")),
      "uv tool install ruff==0.5.0")
end

function TestShimLine:test_line_breaks_refused()
   local cmd, err = line { "pip", "install", "a\nb" }
   lu.assertNil(cmd)
   lu.assertStrContains(err, "line break")
end

TestShimAppend = {}

function TestShimAppend:tearDown()
   h.cleanup()
end

function TestShimAppend:test_repeat_skipped()
   local f = h.tmpdir() .. "/Containerfile"
   h.write(f, "FROM x\nRUN a\n")
   lu.assertEquals(shim.append(f, "RUN a"), "repeat")
   lu.assertEquals(shim.append(f, "RUN b"), "recorded")
   lu.assertEquals(shim.append(f, "RUN b"), "repeat")
   lu.assertEquals(shim.append(f, "RUN a"), "recorded")
   h.write(f, h.read(f) .. "# a comment\n\n")
   lu.assertEquals(shim.append(f, "RUN a"), "repeat")
   lu.assertEquals(h.read(f), "FROM x\nRUN a\nRUN b\nRUN a\n# a comment\n\n")
end

function TestShimAppend:test_line_endings_kept()
   local dir = h.tmpdir()
   local cases = {
      { "FROM x\r\nRUN a\r\n", "FROM x\r\nRUN a\r\nRUN b\r\n" },
      { "FROM x\r\nRUN a", "FROM x\r\nRUN a\r\nRUN b\r\n" },
      { "FROM x", "FROM x\nRUN b\n" },
      { "FROM x\n", "FROM x\nRUN b\n" },
      { "", "RUN b\n" },
   }
   for i, c in ipairs(cases) do
      local f = dir .. "/C" .. i
      h.write(f, c[1])
      lu.assertEquals(shim.append(f, "RUN b"), "recorded")
      lu.assertEquals(h.read(f), c[2], "case " .. i)
   end
   lu.assertEquals(shim.append(dir .. "/new", "RUN b"), "recorded")
   lu.assertEquals(h.read(dir .. "/new"), "RUN b\n")
   -- a CRLF repeat is still a repeat
   lu.assertEquals(shim.append(dir .. "/C1", "RUN b"), "repeat")
end

function TestShimAppend:test_dangling_continuation_refused()
   local f = h.tmpdir() .. "/Containerfile"
   h.write(f, "RUN apt-get install \\\n")
   local ok, err = shim.append(f, "RUN b")
   lu.assertNil(ok)
   lu.assertStrContains(err, "continuation")
   lu.assertEquals(h.read(f), "RUN apt-get install \\\n")
end

TestShimHook = {}

function TestShimHook:tearDown()
   h.cleanup()
end

function TestShimHook:test_d8_through_the_hook_command()
   local dir = h.tmpdir()
   local f = dir .. "/Containerfile"
   h.write(f, "FROM debian\n")
   local out, code = hook(f, { "uv", "pip", "install", "numpy>=1.26,<3",
      "requests[socks]", 'pkg ; python_version>"3.8"' }, "cd / &&")
   lu.assertEquals(code, 0)
   lu.assertEquals(out, "")
   hook(f, { "uv", "pip", "install", "--upgrade", "rich==13.7.1" })
   hook(f, { "uv", "pip", "install", "-q", "--upgrade", "rich==13.7.1" })
   hook(f, { "uv", "pip", "list" })
   lu.assertEquals(h.read(f), "FROM debian\n"
      .. "RUN uv pip install --system 'numpy>=1.26,<3' 'requests[socks]' "
      .. "'pkg ; python_version>\"3.8\"'\n"
      .. "RUN uv pip install --system --upgrade rich==13.7.1\n")
end

function TestShimHook:test_concurrent_appends_keep_every_line()
   local dir = h.tmpdir()
   local f = dir .. "/Containerfile"
   h.write(f, "FROM x\r\n")
   local link = h.bin:gsub("clayer%-lua$", "clayer")
   local out, code = h.sh("cd " .. h.q(dir) .. " && for i in $(seq 1 20); "
      .. "do CLAYER_SHIM_FILE=Containerfile " .. h.q(link)
      .. " hook install -- pip install pkg$i & done; wait")
   lu.assertEquals(code, 0)
   lu.assertEquals(out, "")
   local text = h.read(f)
   local seen, n = {}, 0
   for l in text:gmatch("RUN pip install (pkg%d+)\r\n") do
      seen[l], n = true, n + 1
   end
   lu.assertEquals(n, 20)
   for i = 1, 20 do lu.assertTrue(seen["pkg" .. i], "pkg" .. i) end
   lu.assertEquals(#lines_of(text), 21)
end

function TestShimHook:test_failures_warn_once_and_exit_1()
   local dir = h.tmpdir()
   local out, code = hook(dir .. "/no/such/dir/Containerfile",
      { "pip", "install", "x" })
   lu.assertEquals(code, 1)
   lu.assertEquals(#lines_of(out), 1)
   lu.assertStrContains(out, "clayer: warning: pip not recorded in ")
   out, code = hook(dir .. "/C", { "pip", "install", "a\nb" })
   lu.assertEquals(code, 1)
   lu.assertStrContains(out, "line break")
   out, code = h.clayer("hook install -- pip install x",
      "CLAYER_SHIM_FILE=")
   lu.assertEquals(code, 2)
   lu.assertStrContains(out, "CLAYER_SHIM_FILE")
   out, code = h.clayer("hook frobnicate", "CLAYER_SHIM_FILE=x")
   lu.assertEquals(code, 2)
   lu.assertStrContains(out, "usage: clayer hook install")
end

function TestShimHook:test_warnings_reach_the_user()
   local dir = h.tmpdir()
   h.sh("mkdir -p " .. h.q(dir .. "/mylib"))
   local f = dir .. "/Containerfile"
   h.write(f, "FROM x\n")
   local out, code = hook(f, { "uv", "pip", "install", "-e", "." },
      "cd " .. h.q(dir .. "/mylib") .. " &&")
   lu.assertEquals(code, 0)
   lu.assertStrContains(out, "SNAPSHOT --all " .. dir .. "/mylib")
   lu.assertEquals(h.read(f), "FROM x\nRUN uv pip install --system -e "
      .. dir .. "/mylib\n")
   h.write(f, "SNAPSHOT --all " .. dir .. "/mylib\n")
   out = hook(f, { "pip", "install", "-e", "." },
      "cd " .. h.q(dir .. "/mylib") .. " &&")
   lu.assertEquals(out, "")
end

function TestShimHook:test_policy_on_install_overrides()
   local dir = h.tmpdir()
   local f = dir .. "/Containerfile"
   h.write(f, "FROM x\n")
   h.write(dir .. "/clayer.policy.lua", [[
return {
   on_install = function(argv, ctx, default)
      if argv[1] == "npm" then return nil end
      local cmd = default(argv, ctx)
      return cmd and cmd .. " # by policy"
   end,
   shim = { tools = { remove = { "npm" } }, announce = true },
}
]])
   lu.assertEquals(hook(f, { "pip", "install", "x" }), "clayer: recorded in "
      .. f .. ": RUN pip install x # by policy\n")
   hook(f, { "npm", "install", "-g", "x" })
   lu.assertEquals(h.read(f), "FROM x\nRUN pip install x # by policy\n")
   local out = h.clayer("shim " .. h.q(f))
   lu.assertStrContains(out, "function pip {")
   lu.assertNotStrContains(out, "function npm {")
end

TestShimShell = {}

function TestShimShell:tearDown()
   h.cleanup()
end

function TestShimShell:test_code_is_valid_and_embeds_absolute_paths()
   local dir = h.tmpdir()
   h.sh("mkdir -p " .. h.q(dir .. "/a b"))
   h.write(dir .. "/a b/Containerfile", "FROM x\n")
   local out, code = h.clayer("shim 'a b/Containerfile'",
      "cd " .. h.q(dir) .. " && PWD= ")
   lu.assertEquals(code, 0)
   lu.assertStrContains(out, "__clayer_shim_file='" .. dir
      .. "/a b/Containerfile'\n")
   for _, t in ipairs { "uv", "pip", "pip3", "python3", "apt-get", "apt",
      "npm" } do
      lu.assertStrContains(out, "function " .. t .. " {\n")
   end
   h.write(dir .. "/shim.sh", out)
   for _, sh in ipairs { "bash -n", "zsh -n" } do
      local msg, rc = h.sh(sh .. " " .. h.q(dir .. "/shim.sh"))
      lu.assertEquals(rc, 0, sh .. ": " .. msg)
   end
   local _, rc = h.clayer("shim")
   lu.assertEquals(rc, 2)
end

function TestShimShell:test_functions_pass_status_and_record()
   local dir = h.tmpdir()
   h.write(dir .. "/uv", "#!/bin/sh\necho \"uv says $*\"\n"
      .. "case \"$*\" in *fail*) exit 3;; esac\n")
   h.sh("chmod +x " .. h.q(dir .. "/uv"))
   h.write(dir .. "/Containerfile", "FROM x\n")
   for _, sh in ipairs { "bash", "zsh -f" } do
      local out, code = h.sh("cd " .. h.q(dir) .. " && PATH=" .. h.q(dir)
         .. ":$PATH " .. sh .. " -c " .. h.q(
         'eval "$(' .. h.q(h.bin:gsub("clayer%-lua$", "clayer"))
         .. ' shim Containerfile)"; cd /; uv pip install fail; echo "rc=$?"; '
         .. "uv pip install 'a<2'; echo \"rc=$?\"; type uv >/dev/null"))
      lu.assertEquals(code, 0, sh)
      lu.assertEquals(out, "uv says pip install fail\nrc=3\n"
         .. "uv says pip install a<2\nrc=0\n", sh)
   end
   lu.assertEquals(h.read(dir .. "/Containerfile"),
      "FROM x\nRUN uv pip install --system 'a<2'\n")
end

-- The hook resolves the shim file against the real working folder, not
-- a stale $PWD; a $PWD naming "." through a symlink is kept.
function TestShimShell:test_stale_pwd_is_not_trusted()
   local dir = h.tmpdir()
   h.sh("mkdir -p " .. dir .. "/a " .. dir .. "/b && ln -s b " .. dir .. "/l")
   for _, w in ipairs { "a", "b" } do
      h.write(dir .. "/" .. w .. "/Containerfile", "FROM x\n")
   end
   local out, code = h.sh("cd " .. h.q(dir .. "/b") .. " && PWD="
      .. h.q(dir .. "/a") .. " " .. h.q(h.bin) .. " -e "
      .. h.q("print(require('clayer.shim').cwd())"))
   lu.assertEquals(code, 0, out)
   lu.assertEquals(out, dir .. "/b\n")
   out = h.sh("cd " .. h.q(dir .. "/l") .. " && PWD=" .. h.q(dir .. "/l")
      .. " " .. h.q(h.bin) .. " -e "
      .. h.q("print(require('clayer.shim').cwd())"))
   lu.assertEquals(out, dir .. "/l\n")
   lu.assertEquals(shim.abspath("x", dir), dir .. "/x")
end
