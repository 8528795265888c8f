--- Case D2: the cache key moves when any input moves, and only then.
local lu = require "luaunit"
local h = require "helper"
local gh = require "ghfake"
local build = require "clayer.build"
local cf = require "clayer.containerfile"
local proc = require "clayer.proc"

TestKeyInputs = {}

function TestKeyInputs:setUp()
   proc.setenv("CLAYER_GITHUB_API", gh.start().api)
   proc.setenv("GH_TOKEN", gh.TOKEN)
end

function TestKeyInputs:tearDown()
   proc.setenv("CLAYER_GITHUB_API", nil)
   proc.setenv("GH_TOKEN", nil)
   h.cleanup()
end

function TestKeyInputs.teardownClass()
   gh.stop()
end

local SHA_A = string.rep("a", 40)
local SHA_B = string.rep("b", 40)

local function key(dir, extra)
   local out, code = h.clayer("hash Containerfile " .. (extra or ""),
      "cd " .. dir .. " &&")
   assert(code == 0, out)
   return out:match("^(%x+)\n$") or error(out)
end

function TestKeyInputs:test_key_moves_with_every_input()
   local repo = gh.new_repo()
   gh.control { op = "branch", repo = repo, name = "main", sha = SHA_A,
      default = true }
   local dir = h.tmpdir()
   local text = ("ENV PYVER=3.12\nFETCH github:%s@main /opt/tool\n"
      .. "RUN /opt/tool/install.sh \"$PYVER\"\n"):format(repo)
   h.write(dir .. "/Containerfile", text)

   -- by default the key is the original tool's: the text alone
   local k0 = key(dir)
   lu.assertEquals(k0, (cf.key(text, "")))
   lu.assertEquals(key(dir), k0)                   -- stable

   -- resolve_refs: the commit main points to is part of the key
   h.write(dir .. "/clayer.policy.lua", "return { resolve_refs = true }")
   local k1 = key(dir)
   lu.assertNotEquals(k1, k0)
   lu.assertEquals(key(dir), k1)                   -- stable
   lu.assertEquals(k1, (cf.key(text, cf.extras {
      refs = { ["github:" .. repo .. "@main"] = SHA_A } })))
   gh.control { op = "branch", repo = repo, name = "main", sha = SHA_B }
   local k2 = key(dir)
   lu.assertNotEquals(k2, k1)                      -- the branch moved

   -- the text: a changed ENV value, a line the shim appended
   h.write(dir .. "/Containerfile", text:gsub("3%.12", "3.13"))
   local k3 = key(dir)
   lu.assertNotEquals(k3, k2)
   h.write(dir .. "/Containerfile", text .. "RUN uv pip install --system rich\n")
   lu.assertNotEquals(key(dir), k2)
   lu.assertNotEquals(key(dir), k3)

   -- a ref that cannot be resolved is an error, not a silent old key
   h.write(dir .. "/Containerfile",
      ("FETCH github:%s@nosuchbranch /opt/tool\n"):format(repo))
   local out, code = h.clayer("hash Containerfile", "cd " .. dir .. " &&")
   lu.assertEquals(code, 3, out)
   lu.assertStrContains(out, "nosuchbranch")
end

function TestKeyInputs:test_build_downloads_the_pinned_commit()
   local src = "github:o/r@main"
   local url = build.fetch_url(src, { refs = { [src] = SHA_A } })
   lu.assertStrMatches(url, ".*/repos/o/r/tarball/" .. SHA_A)
   url = build.fetch_url(src, {})
   lu.assertStrMatches(url, ".*/repos/o/r/tarball/main")
end
