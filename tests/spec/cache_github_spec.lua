--- The github: cache backend against tests/fixtures/fakegithub.py.
local lu = require "luaunit"
local h = require "helper"
local gh = require "clayer.cache.github"
local cache = require "clayer.cache"
local hash = require "clayer.hash"
local http = require "clayer.http"
local json = require "clayer.json"
local log = require "clayer.log"
local proc = require "clayer.proc"
local retention = require "clayer.retention"
local tar = require "clayer.tar"

local q = h.q
local TOKEN = "ghp_clayerSpecToken0123456789abcdef"
local KEY = "0123456789abcdef"

-- Scaled-down waits: nothing in this file waits for real.
local function policy(extra)
   local p = {
      http = { connect_timeout = 2, idle_timeout = 1, retries = 2,
         backoff = 0.001 },
      github = { wait_scale = 0.001, max_wait = 1, max_backoff = 0.01,
         secondary_wait = 60 },
   }
   for k, v in pairs(extra or {}) do p.github[k] = v end
   return p
end

-- The fake lives for the whole file: started by the first test that
-- needs it, stopped in teardownClass (and by --lifetime).
local ghfake = require "ghfake"
local fake = {}

local function start()
   fake = ghfake.start()
   return fake
end

local function control(req)
   local res = assert(http.request { url = start().api .. "/_control",
      method = "POST", body = json.encode(req),
      headers = { ["Content-Type"] = "application/json" } })
   assert(res.status < 300, "control: " .. tostring(res.body))
   return json.decode(res.body)
end

local function get(path)
   local res = assert(http.request { url = start().api .. path })
   return json.decode(res.body), res
end

local function server_log(reset)
   return (get("/_log" .. (reset and "?reset=1" or "")))
end

local counter = 0
--- A fresh repository; returns "owner/name".
local function new_repo(o)
   counter = counter + 1
   local name = ("spec/r%d-%d"):format(counter, proc.getpid())
   o = o or {}
   control { op = "repo", repo = name, private = o.private or false,
      immutable = o.immutable or false }
   return name
end

local function releases_of(repo)
   local st = get("/_state")
   local r = st[repo:lower()]
   local out = {}
   for _, rel in pairs(r.releases) do out[#out + 1] = rel end
   table.sort(out, function(a, b) return a.id < b.id end)
   return out, r
end

local function backend(repo, pol, o)
   o = o or {}
   o.policy = pol or policy()
   return assert(cache.open("github:" .. repo, o))
end

--- A scratch tree, archived with tar.create (parts when part_size is
-- set) into a stage folder with layer.json.  Returns stage, meta, tree.
local function stage_layer(tag, part_size, bytes)
   local dir = h.tmpdir()
   local tree = dir .. "/tree"
   assert(h.sh(("mkdir -p %s/opt/t %s/stage && printf 'hello\\n' > "
      .. "%s/opt/t/a && head -c %d /dev/urandom > %s/opt/t/big"):format(
      q(tree), q(dir), q(tree), bytes or 5000, q(tree))))
   local ar = assert(tar.create { output = dir .. "/stage/layer.tar.zst",
      root = tree, part_size = part_size, level = 1, entries = {
         { path = "/opt" }, { path = "/opt/t" }, { path = "/opt/t/a" },
         { path = "/opt/t/big" } } })
   local meta = { format = "clayer-layer/1", tag = tag, key = KEY,
      archive_sha256 = ar.sha256, archive_size = ar.size,
      parts = json.array(ar.parts), files = ar.files, bytes = ar.bytes,
      env = {} }
   h.write(dir .. "/stage/layer.json", json.encode(meta))
   return dir .. "/stage", meta, tree
end

local function restore(b, tag, meta, root)
   root = root or h.tmpdir() .. "/R"
   os.execute("mkdir -p " .. q(root))
   local srcs = assert(b:sources(tag, meta))
   local parts = {}
   for i, p in ipairs(meta.parts) do
      parts[i] = { sha256 = p.sha256, size = p.size }
   end
   local res, err, code = tar.extract { root = root, source = srcs,
      format = meta.legacy and "gzip" or "zstd",
      sha256 = meta.archive_sha256, size = meta.archive_size,
      parts = not meta.legacy and parts or nil,
      journal = root .. ".journal" }
   return res and root, err, code
end

local function same_file(a, b)
   return hash.file(a) == hash.file(b)
end

local function count(list, f)
   local n = 0
   for _, e in ipairs(list) do
      if f(e) then n = n + 1 end
   end
   return n
end

TestCacheGithub = {}

function TestCacheGithub:setUp()
   start()
   proc.setenv("CLAYER_GITHUB_API", fake.api)
   proc.setenv("GH_TOKEN", TOKEN)
   proc.setenv("GITHUB_TOKEN", nil)
   control { op = "clear_faults" }
   control { op = "scope", write = true }
end

function TestCacheGithub:tearDown()
   proc.setenv("CLAYER_GITHUB_API", nil)
   proc.setenv("GH_TOKEN", nil)
   h.cleanup()
end

function TestCacheGithub.teardownClass()
   ghfake.stop()
   fake = {}
end

function TestCacheGithub:test_build_publish_find_restore()
   local repo = new_repo()
   local b = backend(repo)
   lu.assertEquals(b.uri, "github:" .. repo)
   local tag = "layer-base-" .. KEY
   local m, err = b:find(tag)
   lu.assertNil(m)
   lu.assertNil(err)
   local stage, meta, tree = stage_layer(tag)
   server_log(true)
   lu.assertEquals(b:publish(tag, stage, meta), "published")
   local found = assert(b:find(tag))
   lu.assertEquals(found.archive_sha256, meta.archive_sha256)
   lu.assertEquals(found.tag, tag)
   lu.assertTrue(found.created_at > 0)
   local root = assert(restore(b, tag, found))
   lu.assertTrue(same_file(root .. "/opt/t/big", tree .. "/opt/t/big"))
   lu.assertEquals(h.read(root .. "/opt/t/a"), "hello\n")
   -- what went over the wire
   local L = server_log()
   local api, uploads, storage = 0, 0, 0
   for _, e in ipairs(L) do
      if e.port == "storage" then
         storage = storage + 1
         lu.assertFalse(e.auth, "the token followed the redirect")
         lu.assertEquals(e.content_type, json.null)
      else
         lu.assertTrue(e.auth)
         lu.assertEquals(e.user_agent, "clayer")
         lu.assertEquals(e.api_version, "2022-11-28")
      end
      if e.port == "uploads" then
         uploads = uploads + 1
         lu.assertEquals(e.content_type, "application/octet-stream")
         lu.assertNotStrContains(e.path, "{")
         lu.assertNotStrContains(e.path, "label")
         lu.assertStrMatches(e.path, "/repos/" .. repo:gsub("%-", "%%-")
            .. "/releases/%d+/assets%?name=layer%.[a-z.]+")
      end
      if e.port == "api" then
         api = api + 1
         lu.assertNotStrContains(e.path, "/releases/latest")
         if e.path:match("/releases/assets/") then
            lu.assertEquals(e.accept, "application/octet-stream")
         else
            lu.assertEquals(e.accept, "application/vnd.github+json")
         end
      end
   end
   lu.assertEquals(uploads, 2)
   lu.assertEquals(storage, 2)     -- layer.json and the archive
   -- one published release, no drafts, the tag exists
   local rels = releases_of(repo)
   lu.assertEquals(#rels, 1)
   lu.assertFalse(rels[1].draft)
   local _, res = get("/repos/" .. repo .. "/git/ref/tags/" .. tag)
   lu.assertEquals(res.status, 200)
   -- a second publish of the same tag: the published one wins
   local stage2, meta2 = stage_layer(tag)
   lu.assertEquals(b:publish(tag, stage2, meta2), "exists")
   lu.assertEquals(#releases_of(repo), 1)
end

function TestCacheGithub:test_miss_and_unknown_repository()
   local repo = new_repo()
   local b = backend(repo)
   local m, err = b:find("layer-" .. KEY)
   lu.assertNil(m)
   lu.assertNil(err)
   local nb = backend("spec/does-not-exist")
   m, err = nb:find("layer-" .. KEY)
   lu.assertNil(m)
   lu.assertStrContains(err, "repository not found")
   -- a private repository without a token is the same 404: say so
   local priv = new_repo { private = true }
   proc.setenv("GH_TOKEN", nil)
   m, err = backend(priv):find("layer-" .. KEY)
   lu.assertNil(m)
   lu.assertStrContains(err, "set GH_TOKEN")
end

function TestCacheGithub:test_public_repository_reads_without_token()
   local repo = new_repo()
   local tag = "layer-" .. KEY
   local stage, meta = stage_layer(tag)
   lu.assertEquals(backend(repo):publish(tag, stage, meta), "published")
   proc.setenv("GH_TOKEN", nil)
   local b = backend(repo)
   lu.assertNil(b.token)
   local found = assert(b:find(tag))
   assert(restore(b, tag, found))
   local _, err = b:publish(tag, stage, meta)
   lu.assertStrContains(err, "needs a token")
end

function TestCacheGithub:test_draft_is_a_miss()   -- C2
   local repo = new_repo()
   local tag = "layer-" .. KEY
   control { op = "release", repo = repo, tag = tag, draft = true,
      assets = { { name = "layer.json", data = json.encode { tag = tag,
         parts = { { name = "layer.tar.zst", size = 1 } } } },
         { name = "layer.tar.zst", data = "x" } } }
   local b = backend(repo)
   lu.assertNil((b:find(tag)))
   lu.assertEquals(#b:list("layer-"), 0)   -- drafts are no entries
end

function TestCacheGithub:test_lookup_is_exact()   -- D1
   local repo = new_repo()
   local b = backend(repo)
   local gpu = "layer-py-gpu-" .. KEY
   local stage, meta = stage_layer(gpu)
   lu.assertEquals(b:publish(gpu, stage, meta), "published")
   server_log(true)
   local m, err = b:find("layer-py-" .. KEY)
   lu.assertNil(m)
   lu.assertNil(err)
   m, err = b:find("layer-py-" .. KEY:sub(1, 15))
   lu.assertNil(m)
   lu.assertNil(err)
   for _, e in ipairs(server_log()) do
      lu.assertNotEquals(e.port, "storage", "nothing may be downloaded")
      lu.assertNotStrContains(e.path, "/releases/assets/")
   end
   lu.assertEquals(assert(b:find(gpu)).tag, gpu)
   -- retention for "py" leaves "py-gpu" alone
   local r = assert(retention.prune(b, { name = "py", keep = 0,
      min_age = 0 }))
   lu.assertEquals(r.deleted, {})
   lu.assertEquals(r.kept, { gpu })
end

function TestCacheGithub:test_race_one_winner_no_draft_left()   -- D4
   local repo = new_repo()
   local tag = "layer-race-" .. KEY
   local a, b = backend(repo), backend(repo)
   local sa, ma = stage_layer(tag)
   local sb, mb = stage_layer(tag)
   -- b creates its draft, then a publishes the whole tag before b's
   -- uploads finish
   local real = b._upload
   local a_status
   b._upload = function(this, ...)
      if a_status == nil then
         a_status = a:publish(tag, sa, ma)
         local rels = releases_of(repo)
         lu.assertEquals(#rels, 2)        -- a's release and b's draft
      end
      return real(this, ...)
   end
   local status, err = b:publish(tag, sb, mb)
   lu.assertEquals(a_status, "published")
   lu.assertEquals(status, "exists", err)
   local rels = releases_of(repo)
   lu.assertEquals(#rels, 1)
   lu.assertFalse(rels[1].draft)
   -- the entry that won is a's, complete
   local found = assert(backend(repo):find(tag))
   lu.assertEquals(found.archive_sha256, ma.archive_sha256)
   assert(restore(backend(repo), tag, found))
end

function TestCacheGithub:test_two_processes_race()   -- D4, for real
   local repo = new_repo()
   local tag = "layer-race2-" .. KEY
   local dir = h.tmpdir()
   local script = dir .. "/pub.lua"
   h.write(script, ([[
      package.path = "tests/spec/?.lua;" .. package.path
      local cache = require "clayer.cache"
      local json = require "clayer.json"
      local b = assert(cache.open("github:%s", { policy = {
         http = { retries = 2, backoff = 0.001 } } }))
      local stage = arg[1]
      local meta = json.decode(io.open(stage .. "/layer.json"):read("a"))
      local st, err = b:publish("%s", stage, meta)
      io.open(arg[2], "w"):write(tostring(st or err)):close()
   ]]):format(repo, tag))
   local cmds = {}
   for i = 1, 2 do
      local stage = stage_layer(tag)
      cmds[i] = ("%s %s %s %s/out%d"):format(q(h.bin), q(script), q(stage),
         q(dir), i)
   end
   h.sh(cmds[1] .. " & " .. cmds[2] .. " & wait")
   local outs = { h.read(dir .. "/out1"), h.read(dir .. "/out2") }
   table.sort(outs)
   lu.assertEquals(outs, { "exists", "published" })
   local rels = releases_of(repo)
   lu.assertEquals(#rels, 1)
   lu.assertFalse(rels[1].draft)
   assert(backend(repo):find(tag))
end

function TestCacheGithub:test_upload_dies_midway()
   local repo = new_repo()
   local tag = "layer-" .. KEY
   local stage, meta, tree = stage_layer(tag, nil, 100000)
   local pol = policy()
   pol.http.retries = 0
   control { op = "fault", kind = "die", count = 1,
      match = "/assets", after = 1000 }
   local b = backend(repo, pol)
   local status, err = b:publish(tag, stage, meta)
   lu.assertNil(status)
   lu.assertStrContains(err, "uploading layer.tar.zst")
   lu.assertEquals(#releases_of(repo), 0)   -- no draft, no release
   lu.assertNil((b:find(tag)))
   -- the next attempt is not blocked by anything
   lu.assertEquals(b:publish(tag, stage, meta), "published")
   local root = assert(restore(b, tag, assert(b:find(tag))))
   lu.assertTrue(same_file(root .. "/opt/t/big", tree .. "/opt/t/big"))
end

function TestCacheGithub:test_upload_dies_then_retry_within_publish()  -- C1
   local repo = new_repo()
   local tag = "layer-" .. KEY
   local stage, meta = stage_layer(tag, nil, 100000)
   control { op = "fault", kind = "die", count = 1,
      match = "/assets", after = 1000 }
   local b = backend(repo)
   server_log(true)
   lu.assertEquals(b:publish(tag, stage, meta), "published")
   local L = server_log()
   lu.assertEquals(count(L, function(e)
      return e.port == "uploads" and e.path:match("name=layer.tar.zst$")
   end), 2)
   lu.assertEquals(count(L, function(e)   -- the broken "starter" asset
      return e.method == "DELETE" and e.path:match("/releases/assets/")
   end), 1)
   local rels = releases_of(repo)
   lu.assertEquals(#rels, 1)
   local names = {}
   for _, a in ipairs(rels[1].assets) do
      lu.assertEquals(a.state, "uploaded")
      names[#names + 1] = a.name
   end
   table.sort(names)
   lu.assertEquals(names, { "layer.json", "layer.tar.zst" })
   assert(restore(b, tag, assert(b:find(tag))))
end

function TestCacheGithub:test_answer_lost_after_upload()   -- C1
   local repo = new_repo()
   local tag = "layer-" .. KEY
   local stage, meta = stage_layer(tag)
   control { op = "fault", kind = "lost", count = 1,
      match = "/assets" }
   local b = backend(repo)
   server_log(true)
   lu.assertEquals(b:publish(tag, stage, meta), "published")
   local L = server_log()
   -- the asset GitHub kept is found the same: no DELETE, no second POST
   lu.assertEquals(count(L, function(e)
      return e.port == "uploads" and e.path:match("name=layer.tar.zst$")
   end), 1)
   lu.assertEquals(count(L, function(e) return e.method == "DELETE" end), 0)
   assert(restore(b, tag, assert(b:find(tag))))
end

function TestCacheGithub:test_upload_url_template()   -- C8
   local repo = new_repo()
   local rel = control { op = "release", repo = repo, draft = true,
      tag = "layer-" .. KEY, assets = {} }
   lu.assertStrContains(rel.upload_url, "{?name,label}")
   local b = backend(repo)
   local stage = stage_layer("layer-" .. KEY)
   server_log(true)
   local a = assert(b:_upload(rel, "layer-base+gpu.tar.zst",
      stage .. "/layer.json"))
   lu.assertEquals(a.name, "layer-base+gpu.tar.zst")
   local L = server_log()
   lu.assertEquals(#L, 1)
   lu.assertStrMatches(L[1].path, "/repos/[^?{}]+/releases/%d+/assets"
      .. "%?name=layer%-base%%2Bgpu%.tar%.zst")
end

function TestCacheGithub:test_parts_in_order()   -- C4
   local repo = new_repo()
   local pol = policy { asset_limit = 40000 }
   lu.assertEquals(gh.part_size({ policy = pol }), 40000)
   local b = backend(repo, pol)
   lu.assertEquals(b.part_size, 40000)
   local tag = "layer-parts-" .. KEY
   local stage, meta, tree = stage_layer(tag, b.part_size, 150000)
   lu.assertTrue(#meta.parts >= 3, "expected 3+ parts")
   lu.assertEquals(b:publish(tag, stage, meta), "published")
   local found = assert(b:find(tag))
   lu.assertEquals(#found.parts, #meta.parts)
   local root = assert(restore(b, tag, found))
   lu.assertTrue(same_file(root .. "/opt/t/big", tree .. "/opt/t/big"))
   -- parts out of order fail the digest check, so the order above counts
   local swapped = json.decode(json.encode(found))
   swapped.parts[1], swapped.parts[2] = swapped.parts[2], swapped.parts[1]
   local ok, _, code = restore(b, tag, swapped)
   lu.assertNil(ok)
   lu.assertNotNil(code)
end

function TestCacheGithub:test_oversized_file_sends_nothing()   -- C4
   local repo = new_repo()
   local tag = "layer-" .. KEY
   local stage, meta = stage_layer(tag, nil, 100000)
   local b = backend(repo, policy { asset_limit = 10000 })
   server_log(true)
   local status, err = b:publish(tag, stage, meta)
   lu.assertNil(status)
   lu.assertStrContains(err, "asset limit of 10000 bytes")
   lu.assertEquals(#server_log(), 0)
end

function TestCacheGithub:test_original_tools_tarball()
   local repo = new_repo()
   local dir = h.tmpdir()
   assert(h.sh(("mkdir -p %s/src/opt/old && echo legacy > "
      .. "%s/src/opt/old/file && tar -czf %s/layer.tar.gz -C %s/src opt")
      :format(q(dir), q(dir), q(dir), q(dir))))
   local tag = "layer-mojo-" .. KEY
   control { op = "release", repo = repo, tag = tag, prerelease = true,
      assets = { { name = "layer.tar.gz", path = dir .. "/layer.tar.gz" } } }
   local b = backend(repo)
   local meta = assert(b:find(tag))
   lu.assertTrue(meta.legacy)
   lu.assertEquals(meta.tag, tag)
   lu.assertEquals(meta.parts[1].name, "layer.tar.gz")
   lu.assertEquals(meta.parts[1].size,
      tonumber((h.sh("stat -c %s " .. q(dir .. "/layer.tar.gz")))))
   lu.assertTrue(meta.created_at > 0)
   local root = assert(restore(b, tag, meta))
   lu.assertEquals(h.read(root .. "/opt/old/file"), "legacy\n")
   -- it counts for retention like any other entry
   lu.assertEquals(b:list("layer-")[1].tag, tag)
end

function TestCacheGithub:test_retention_over_two_pages()   -- C5, C7
   local repo = new_repo()
   -- 7 entries, 4 per page: mojo x5, mojo-gpu x2, newest first by age
   local tags = {}
   for i = 1, 5 do
      tags[#tags + 1] = { ("layer-mojo-%015x%d"):format(0, i), i * 1000 }
   end
   tags[#tags + 1] = { "layer-mojo-gpu-" .. KEY, 6000 }
   tags[#tags + 1] = { "layer-mojo-gpu-" .. KEY:reverse(), 7000 }
   for _, t in ipairs(tags) do
      control { op = "release", repo = repo, tag = t[1], age = t[2],
         assets = { { name = "layer.tar.gz", data = "x" } } }
   end
   local b = backend(repo, policy { per_page = 4 })
   server_log(true)
   local list = assert(b:list("layer-"))
   lu.assertEquals(#list, 7)
   lu.assertEquals(list[1].tag, tags[1][1])
   lu.assertEquals(list[7].tag, tags[7][1])
   local L = server_log()
   lu.assertEquals(#L, 2)
   lu.assertStrContains(L[2].path, "/repositories/")   -- Link, verbatim
   lu.assertStrContains(L[2].path, "page=2")
   local r = assert(retention.prune(b, { name = "mojo", keep = 2,
      min_age = 600 }))
   table.sort(r.deleted)
   lu.assertEquals(r.deleted, { tags[3][1], tags[4][1], tags[5][1] })
   local left = assert(b:list("layer-"))
   lu.assertEquals(#left, 4)
   for _, t in ipairs(r.deleted) do
      local _, res = get("/repos/" .. repo .. "/git/ref/tags/" .. t)
      lu.assertEquals(res.status, 404, "tag " .. t .. " was left behind")
   end
   local _, res = get("/repos/" .. repo .. "/git/ref/tags/" .. tags[1][1])
   lu.assertEquals(res.status, 200)
end

function TestCacheGithub:test_rate_limits_then_success()   -- C6
   local repo = new_repo()
   local b = backend(repo)
   local tag = "layer-" .. KEY
   local cases = {
      { kind = "primary", reset_in = 100, min = 0.1 },
      { kind = "secondary", retry_after = 150, min = 0.15 },
      { kind = "secondary", min = 0.06 },          -- 60 s without hints
      { kind = "429", retry_after = 120, min = 0.12 },
   }
   for _, c in ipairs(cases) do
      server_log(true)
      control { op = "fault", kind = c.kind, count = 1, match = "/tags/",
         reset_in = c.reset_in, retry_after = c.retry_after }
      local t0 = proc.clock()
      local m, err = b:find(tag)
      local dt = proc.clock() - t0
      lu.assertNil(m)
      lu.assertNil(err, c.kind)
      lu.assertTrue(dt >= c.min * 0.9, ("%s: waited only %.3f s")
         :format(c.kind, dt))
      lu.assertTrue(dt < 5)
      lu.assertEquals(count(server_log(), function(e)
         return e.path:find("/tags/", 1, true) ~= nil end), 2)
   end
end

function TestCacheGithub:test_rate_limit_beyond_bound_fails_at_once()
   local repo = new_repo()
   local b = backend(repo)
   backend(repo):find("layer-" .. KEY)   -- repository known
   server_log(true)
   control { op = "fault", kind = "primary", count = 1, match = "/tags/",
      reset_in = 3600 }
   local m, err = b:find("layer-" .. KEY)
   lu.assertNil(m)
   lu.assertStrContains(err, "rate limit")
   lu.assertStrContains(err, "github.max_wait")
   lu.assertEquals(#server_log(), 1)
   -- secondary limits that never end: bounded number of attempts
   control { op = "fault", kind = "secondary", count = 10, match = "/tags/",
      retry_after = 1 }
   server_log(true)
   m, err = backend(repo, policy { rate_retries = 2 }):find("layer-" .. KEY)
   lu.assertNil(m)
   lu.assertStrContains(err, "github.rate_retries")
   lu.assertEquals(#server_log(), 3)
end

function TestCacheGithub:test_5xx_then_success_and_giving_up()
   local repo = new_repo()
   local tag = "layer-" .. KEY
   local stage, meta = stage_layer(tag)
   local b = backend(repo)
   control { op = "fault", kind = "status", status = 502, count = 2,
      match = "/releases" }
   lu.assertEquals(b:publish(tag, stage, meta), "published")
   control { op = "fault", kind = "status", status = 500, count = 5,
      match = "/tags/" }
   server_log(true)
   local m, err = b:find(tag)
   lu.assertNil(m)
   lu.assertStrContains(err, "HTTP 500")
   lu.assertStrContains(err, "after 3 attempts")
   lu.assertEquals(#server_log(), 3)
   control { op = "clear_faults" }
   assert(b:find(tag))
end

-- A published layer of `bytes` random bytes (the archive is about as
-- big): backend, tag, meta found, tree, and the archive's storage path
-- ("/blob/ID", for faults' match and the log).
local function published(bytes, pol)
   local repo = new_repo()
   local tag = "layer-" .. KEY
   local stage, meta, tree = stage_layer(tag, nil, bytes)
   local b = backend(repo, pol)
   lu.assertEquals(b:publish(tag, stage, meta), "published")
   local found = assert(b:find(tag))
   local rel = releases_of(repo)[1]
   local blob
   for _, a in ipairs(rel.assets) do
      if a.name == "layer.tar.zst" then
         blob = "/blob/" .. math.tointeger(a.id)
      end
   end
   return b, tag, found, tree, assert(blob)
end

-- The requests for the storage path blob since the last log reset.
local function blob_gets(blob)
   local out = {}
   for _, e in ipairs(server_log()) do
      if e.port == "storage" and e.path:find(blob .. "?", 1, true) == 1 then
         out[#out + 1] = e
      end
   end
   return out
end

-- A download that resets after 1 MB goes on from there (one resume, the
-- redirect asked for again), and the first megabyte is sent once.
function TestCacheGithub:test_reset_download_resumes()
   local b, tag, found, tree, blob = published(3 * 1048576)
   control { op = "fault", kind = "reset", count = 1, match = blob,
      after = 1048576 }
   server_log(true)
   local root = assert(restore(b, tag, found))
   lu.assertTrue(same_file(root .. "/opt/t/big", tree .. "/opt/t/big"))
   local L = server_log()
   local g = blob_gets(blob)
   lu.assertEquals(#g, 2)
   lu.assertEquals(g[1].range, json.null)
   lu.assertEquals(g[1].sent, 1048576)
   local at = tonumber(g[2].range:match("^bytes=(%d+)%-$"))
   lu.assertTrue(at > 0 and at <= 1048576, g[2].range)
   lu.assertEquals(g[2].status, 206)
   lu.assertEquals(g[2].sent, found.archive_size - at)
   for _, e in ipairs(g) do lu.assertFalse(e.auth) end
   -- each time through the API, with the token, and its redirect
   lu.assertEquals(count(L, function(e)
      return e.port == "api" and e.path:match("/releases/assets/%d+$")
         and e.auth and e.accept == "application/octet-stream"
   end), 2)
end

function TestCacheGithub:test_stalled_download_resumes()   -- D3
   local b, tag, found, tree, blob = published(200000)
   control { op = "fault", kind = "stall", count = 1, match = blob,
      after = 100000 }
   server_log(true)
   local t0 = proc.clock()
   local root = assert(restore(b, tag, found))
   lu.assertTrue(proc.clock() - t0 < 5)
   lu.assertTrue(same_file(root .. "/opt/t/big", tree .. "/opt/t/big"))
   local g = blob_gets(blob)
   lu.assertEquals(#g, 2)
   lu.assertEquals(g[2].range, "bytes=100000-")
end

-- Stalls every time: `retries` resumes, then the stream fails, and the
-- scratch root stays as it was: nothing half-applied.
function TestCacheGithub:test_stalled_download_gives_up()   -- D3
   local pol = policy()
   pol.http.retries = 1
   local b, tag, found, _, blob = published(200000, pol)
   control { op = "fault", kind = "stall", count = 99, match = blob,
      after = 100000 }
   server_log(true)
   local t0 = proc.clock()
   local root, err = restore(b, tag, found)
   lu.assertNil(root)
   lu.assertStrContains(err, "no data for 1 seconds (at byte 200000, "
      .. "after 1 resume)")
   lu.assertTrue(proc.clock() - t0 < 10)
   lu.assertEquals(#blob_gets(blob), 2)
   local rest = h.sh("ls -A " .. q(h._dirs[#h._dirs] .. "/R"))
   lu.assertEquals(rest, "")
   -- a second download of the same entry (the restore's whole retry)
   -- does not resume: the two together stay bounded
   server_log(true)
   root, err = restore(b, tag, found)
   lu.assertNil(root)
   lu.assertNotStrContains(err, "resume")
   lu.assertEquals(#blob_gets(blob), 1)
end

function TestCacheGithub:test_resume_when_storage_ignores_range()
   local b, tag, found, tree, blob = published(3 * 1048576)
   control { op = "fault", kind = "reset", count = 1, match = blob,
      after = 1048576 }
   control { op = "fault", kind = "norange", count = 1, match = blob }
   server_log(true)
   local root = assert(restore(b, tag, found))
   lu.assertTrue(same_file(root .. "/opt/t/big", tree .. "/opt/t/big"))
   local g = blob_gets(blob)
   lu.assertEquals(#g, 2)
   lu.assertStrMatches(g[2].range, "bytes=%d+%-")
   lu.assertEquals(g[2].status, 200)            -- all again, skipped
   lu.assertEquals(g[2].sent, found.archive_size)
end

function TestCacheGithub:test_resume_with_wrong_content_range_fails()
   local b, tag, found, _, blob = published(3 * 1048576)
   local root = h.tmpdir() .. "/R"
   assert(h.sh(("mkdir -p %s/opt/t && echo mine > %s/opt/t/a")
      :format(q(root), q(root))))
   local before = h.sh("cd " .. q(root) .. " && find . -ls | sort")
   control { op = "fault", kind = "reset", count = 1, match = blob,
      after = 1048576 }
   control { op = "fault", kind = "badrange", count = 1, match = blob }
   server_log(true)
   local ok, err, code = restore(b, tag, found, root)
   lu.assertNil(ok)
   lu.assertEquals(code, "io")
   lu.assertStrContains(err, "resuming at byte ")
   lu.assertStrContains(err, "Content-Range is 'bytes ")
   lu.assertEquals(#blob_gets(blob), 2)
   lu.assertEquals(h.sh("cd " .. q(root) .. " && find . -ls | sort"), before)
   lu.assertEquals(h.read(root .. "/opt/t/a"), "mine\n")
end

function TestCacheGithub:test_bad_token_and_missing_scope()
   local repo = new_repo()
   proc.setenv("GH_TOKEN", "ghp_wrongwrongwrong")
   local m, err = backend(repo):find("layer-" .. KEY)
   lu.assertNil(m)
   lu.assertStrContains(err, "bad token (GH_TOKEN/GITHUB_TOKEN/--token-file)")
   lu.assertNotStrContains(err, "ghp_wrongwrongwrong")
   proc.setenv("GH_TOKEN", TOKEN)
   control { op = "scope", write = false }
   local tag = "layer-" .. KEY
   local stage, meta = stage_layer(tag)
   local st
   st, err = backend(repo):publish(tag, stage, meta)
   lu.assertNil(st)
   lu.assertStrContains(err, "contents: write")
   lu.assertNotStrContains(err, "rate limit")
   lu.assertEquals(#releases_of(repo), 0)
end

function TestCacheGithub:test_token_sources()
   local dir = h.tmpdir()
   h.write(dir .. "/tok", "  ghp_fromfile_123456\n")
   proc.setenv("GH_TOKEN", nil)
   local b = backend("o/r", nil, { token_file = dir .. "/tok" })
   lu.assertEquals(b.token, "ghp_fromfile_123456")
   proc.setenv("GITHUB_TOKEN", "ghp_github_token_1")
   lu.assertEquals(backend("o/r", nil, { token_file = dir .. "/tok" }).token,
      "ghp_github_token_1")
   proc.setenv("GH_TOKEN", "ghp_gh_token_2")
   lu.assertEquals(backend("o/r").token, "ghp_gh_token_2")
   lu.assertEquals(backend("o/r", nil, { token = "ghp_flag_3" }).token,
      "ghp_flag_3")
   proc.setenv("GITHUB_TOKEN", nil)
   proc.setenv("GH_TOKEN", nil)
   local c, err = cache.open("github:o/r", { token_file = dir .. "/none" })
   lu.assertNil(c)
   lu.assertStrContains(err, "--token-file")
   c, err = cache.open("github:justone", {})
   lu.assertNil(c)
   lu.assertStrContains(err, "OWNER/REPO")
   -- never over plain http, except to loopback
   proc.setenv("GH_TOKEN", TOKEN)
   proc.setenv("CLAYER_GITHUB_API", "http://github.example.invalid")
   c, err = cache.open("github:o/r", {})
   lu.assertNil(c)
   lu.assertStrContains(err, "plain http")
   lu.assertNotStrContains(err, TOKEN)
   proc.setenv("CLAYER_GITHUB_API", "http://localhost:1")
   assert(cache.open("github:o/r", {}))
   -- the token is registered as a secret
   lu.assertEquals(log.redact("x " .. TOKEN .. " y"), "x *** y")
end

function TestCacheGithub:test_immutable_releases()   -- C9
   local repo = new_repo { immutable = true }
   local tag = "layer-imm-" .. KEY
   local stage, meta = stage_layer(tag)
   local b = backend(repo)
   lu.assertEquals(b:publish(tag, stage, meta), "published")
   local found = assert(b:find(tag))
   assert(restore(b, tag, found))
   local rel = releases_of(repo)[1]
   lu.assertTrue(rel.immutable)
   -- a published immutable release takes no new asset: no retry, the
   -- message names the setting
   local full = assert(b:release(tag))
   server_log(true)
   local a, err = b:_upload(full, "extra.bin", stage .. "/layer.json")
   lu.assertNil(a)
   lu.assertStrContains(err, "immutable releases")
   lu.assertStrContains(err, "release immutability")
   lu.assertEquals(#server_log(), 1)
   -- retention deletes nothing and warns; delete refuses
   for i = 1, 3 do
      control { op = "release", repo = repo, tag = ("layer-imm-%015x%d")
         :format(0, i), age = 5000 + i, assets = { { name = "layer.tar.gz",
         data = "x" } } }
   end
   local _, rels = nil, releases_of(repo)
   for _, r in ipairs(rels) do lu.assertNotNil(r) end
   local nwarn = #log.warnings
   local r = assert(retention.prune(b, { keep = 1, min_age = 0 }))
   lu.assertEquals(r.deleted, {})
   lu.assertTrue(r.immutable)
   lu.assertEquals(#r.would_delete, 3)
   lu.assertTrue(#log.warnings > nwarn)
   lu.assertStrContains(log.warnings[#log.warnings], "immutable")
   lu.assertEquals(#releases_of(repo), 4)
   local ok
   ok, err = b:delete(tag)
   lu.assertNil(ok)
   lu.assertStrContains(err, "immutable")
end

function TestCacheGithub:test_abandoned_drafts_are_pruned()
   local repo = new_repo()
   local tag = "layer-" .. KEY
   control { op = "release", repo = repo, tag = tag, draft = true,
      age = 2 * 86400, assets = {} }
   control { op = "release", repo = repo, tag = "layer-" .. KEY:reverse(),
      draft = true, age = 10, assets = {} }
   local b = backend(repo)
   local r = assert(retention.prune(b, { dry_run = true }))
   lu.assertEquals(r.drafts, { tag })
   lu.assertEquals(#releases_of(repo), 2)
   r = assert(retention.prune(b, {}))
   lu.assertEquals(r.drafts, { tag })
   lu.assertEquals(#releases_of(repo), 1)
end

-- The CLI with -v: the token is in no line of output and in no process's
-- command line while the run is on.
function TestCacheGithub:test_token_not_in_output_or_cmdline()
   local repo = new_repo()
   local dir = h.tmpdir()
   -- a Containerfile whose layer is in the cache
   h.write(dir .. "/Containerfile", "FROM scratch\nENV A=1\n")
   local key = h.clayer("hash " .. q(dir .. "/Containerfile")):match("%x+")
   lu.assertEquals(#key, 16)
   local tag = "layer-" .. key
   local stage, meta = stage_layer(tag)
   lu.assertEquals(backend(repo):publish(tag, stage, meta), "published")
   h.write(dir .. "/policy.lua", "return { http = { retries = 1, "
      .. "backoff = 0.001, idle_timeout = 5 } }\n")
   -- every API request of the run waits 0.3 s, so there is time to look
   control { op = "fault", kind = "delay", seconds = 0.3, count = 20 }
   local link = h.bin:gsub("clayer%-lua$", "clayer")
   local run = ("cd %s && CLAYER_STATE_DIR=%s/state %s restore -v "
      .. "--no-build --repo %s --root %s/R --policy %s/policy.lua "
      .. "Containerfile >%s/out 2>&1; echo $? >%s/rc"):format(q(dir),
      q(dir), q(link), q(repo), q(dir), q(dir), q(dir), q(dir))
   os.execute("mkdir -p " .. q(dir .. "/R"))
   h.sh("(" .. run .. ") >/dev/null 2>&1 &")
   local looked = 0
   local t0 = proc.clock()
   while not h.read(dir .. "/rc") and proc.clock() - t0 < 20 do
      local ls = io.popen("ls /proc")
      for pid in ls:lines() do
         if pid:match("^%d+$") then
            local f = io.open("/proc/" .. pid .. "/cmdline", "rb")
            local cmd = f and f:read("a")
            if f then f:close() end
            if cmd and cmd ~= "" then
               looked = looked + 1
               lu.assertNotStrContains(cmd, TOKEN)
            end
         end
      end
      ls:close()
      proc.sleep(0.05)
   end
   local out = h.read(dir .. "/out") or ""
   lu.assertEquals((h.read(dir .. "/rc") or ""):gsub("%s", ""), "0", out)
   lu.assertTrue(looked > 0)
   lu.assertNotStrContains(out, TOKEN)
   lu.assertStrContains(out, "GET " .. fake.api)
   lu.assertStrContains(out, "<redacted>")
   lu.assertEquals(h.read(dir .. "/R/opt/t/a"), "hello\n")
   for _, e in ipairs(server_log()) do
      if e.port == "storage" then lu.assertFalse(e.auth) end
   end
   -- and ls/prune -v say nothing of it either
   out = h.clayer("-v ls --repo " .. q(repo))
   lu.assertStrContains(out, tag)
   lu.assertNotStrContains(out, TOKEN)
   out = h.clayer("-v prune --dry-run --repo " .. q(repo))
   lu.assertNotStrContains(out, TOKEN)
end
