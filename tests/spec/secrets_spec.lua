--- The secret scan before publishing: credential files, private keys,
-- the live token, the policy's allow list, and the refusal end to end.
local lu = require "luaunit"
local h = require "helper"
local policy = require "clayer.policy"
local secrets = require "clayer.secrets"

TestSecrets = {}

function TestSecrets:tearDown()
   h.cleanup()
end

local TOKEN = "ghp_0123456789abcdefABCDEFspecToken"

-- Write files below a scratch root: {path = content}; return the root
-- and the entries a snapshot would give.
local function tree(files)
   local root = h.tmpdir()
   local entries = {}
   for path, content in pairs(files) do
      h.sh("mkdir -p " .. h.q(root .. path:match("^(.*)/")))
      h.write(root .. path, content)
      entries[#entries + 1] = { path = path, type = "file" }
   end
   table.sort(entries, function(a, b) return a.path < b.path end)
   return root, entries
end

-- The scan's findings as path -> why.
local function scan(files, pol, tokens)
   local root, entries = tree(files)
   local found = secrets.scan(entries, root, pol or policy.defaults(),
      { tokens = tokens })
   local out = {}
   for _, f in ipairs(found or {}) do out[f.path] = f.why end
   return out, found
end

local PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n"
   .. "-----END OPENSSH PRIVATE KEY-----\n"

function TestSecrets:test_credential_files_by_path()
   local got = scan({
      ["/root/.netrc"] = "machine x login y password z\n",
      ["/home/u/.git-credentials"] = "https://u:p@example.invalid\n",
      ["/root/.config/gh/hosts.yml"] = "github.com:\n  oauth_token: x\n",
      ["/root/.aws/credentials"] = "[default]\naws_secret_access_key=x\n",
      ["/root/.config/gcloud/credentials.db"] = "SQLite",
      ["/root/.config/gcloud/application_default_credentials.json"] = "{}",
      ["/root/.azure/accessTokens.json"] = "[]",
      ["/root/.pypirc"] = "[pypi]\npassword = x\n",
      ["/root/.ssh/id_ed25519"] = "anything",
      ["/home/u/.ssh/id_rsa"] = "anything",
      ["/home/u/.ssh/id_rsa.pub"] = "ssh-rsa AAAA",
      ["/etc/clean.conf"] = "nothing to see\n",
   })
   lu.assertEquals(got, {
      ["/root/.netrc"] = "credential file",
      ["/home/u/.git-credentials"] = "credential file",
      ["/root/.config/gh/hosts.yml"] = "GitHub CLI credentials",
      ["/root/.aws/credentials"] = "AWS credentials",
      ["/root/.config/gcloud/credentials.db"] = "gcloud credentials",
      ["/root/.config/gcloud/application_default_credentials.json"] =
         "gcloud credentials",
      ["/root/.azure/accessTokens.json"] = "Azure CLI credentials",
      ["/root/.pypirc"] = "PyPI credentials",
      ["/root/.ssh/id_ed25519"] = "SSH private key",
      ["/home/u/.ssh/id_rsa"] = "SSH private key",
   })
end

function TestSecrets:test_docker_and_npm_only_with_credentials_inside()
   local got = scan({
      ["/root/.docker/config.json"] =
         '{"auths": {"ghcr.io": {"auth": "dTpw"}}}',
      ["/home/a/.docker/config.json"] =
         '{"auths": {"ghcr.io": {}}, "credsStore": "pass"}',
      ["/root/.npmrc"] = "//registry.npmjs.org/:_authToken=npm_abc\n",
      ["/home/a/.npmrc"] = "registry=http://127.0.0.1:4873/\n",
   })
   lu.assertEquals(got, {
      ["/root/.docker/config.json"] = "Docker registry credentials",
      ["/root/.npmrc"] = "npm auth token",
   })
end

function TestSecrets:test_private_key_content_anywhere()
   local got = scan({
      ["/opt/app/server.pem"] = "junk\n" .. PEM,
      ["/opt/app/rsa.key"] = "-----BEGIN RSA PRIVATE KEY-----\nMII\n",
      ["/opt/app/cert.pem"] = "-----BEGIN CERTIFICATE-----\nMII\n",
      ["/opt/app/public.pem"] = "-----BEGIN PUBLIC KEY-----\nMII\n",
   })
   lu.assertEquals(got, {
      ["/opt/app/server.pem"] = "private key",
      ["/opt/app/rsa.key"] = "private key",
   })
end

function TestSecrets:test_snakeoil_allowed_by_default_and_allow_list()
   local files = {
      ["/etc/ssl/private/ssl-cert-snakeoil.key"] = PEM,
      ["/etc/ssl/private/other.key"] = PEM,
      ["/srv/keys/a/test.pem"] = PEM,
      ["/srv/fixtures/deep/x/y.key"] = PEM,
      ["/root/.netrc"] = "machine m\n",
   }
   local got = scan(files)
   lu.assertNil(got["/etc/ssl/private/ssl-cert-snakeoil.key"])
   lu.assertEquals(got["/etc/ssl/private/other.key"], "private key")
   lu.assertEquals(got["/root/.netrc"], "credential file")
   -- a pattern, a folder and an exact path; `add` keeps the default
   local p = policy.merge(policy.defaults(), { secrets = { allow = {
      add = { "/srv/keys/*/*.pem", "/srv/fixtures", "/root/.netrc" } } } })
   got = scan(files, p)
   lu.assertEquals(got, { ["/etc/ssl/private/other.key"] = "private key" })
   -- a plain list replaces the default
   p = policy.merge(policy.defaults(), { secrets = { allow = { "/x" } } })
   got = scan(files, p)
   lu.assertEquals(got["/etc/ssl/private/ssl-cert-snakeoil.key"],
      "private key")
end

function TestSecrets:test_glob()
   lu.assertTrue(secrets.allowed("/a/b.pem", { "/a/*.pem" }))
   lu.assertFalse(secrets.allowed("/a/c/b.pem", { "/a/*.pem" }))
   lu.assertTrue(secrets.allowed("/a/k1", { "/a/k[0-9]" }))
   lu.assertFalse(secrets.allowed("/a/kx", { "/a/k[!x]" }))
   lu.assertTrue(secrets.allowed("/a/k.y", { "/a/?.y" }))
   lu.assertFalse(secrets.allowed("/a/kay", { "/a/k.y" }))
   lu.assertTrue(secrets.allowed("/a%b(c)", { "/a%b(c)" }))
   lu.assertTrue(secrets.allowed("/opt/x/y", { "/opt/x/" }))
   lu.assertFalse(secrets.allowed("/opt/xy", { "/opt/x" }))
end

function TestSecrets:test_live_token_anywhere_even_allowed()
   local p = policy.merge(policy.defaults(),
      { secrets = { allow = { "/opt/ok" } } })
   local got = scan({
      ["/opt/app/config"] = "token: " .. TOKEN .. "\n",
      ["/opt/ok/t"] = TOKEN,
      ["/opt/app/other"] = "ghp_0123456789",
      ["/root/.netrc"] = "password " .. TOKEN,
   }, p, { "  " .. TOKEN .. "\n", "short" })
   lu.assertEquals(got, {
      ["/opt/app/config"] = "contains the live token",
      ["/opt/ok/t"] = "contains the live token",
      ["/root/.netrc"] = "contains the live token; credential file",
   })
end

function TestSecrets:test_token_across_a_chunk_boundary_and_size_bound()
   local n = secrets.CHUNK
   local files = {}
   -- the token starts 5 bytes before the end of the first chunk
   files["/opt/split"] = ("a"):rep(n - 5) .. TOKEN .. ("b"):rep(n)
   -- a PEM marker split over the second boundary
   files["/opt/pem"] = ("a"):rep(2 * n - 10) .. PEM
   -- a token in the third chunk of a longer file
   files["/opt/late"] = ("c"):rep(2 * n + 7) .. TOKEN .. "\n"
   local got = scan(files, nil, { TOKEN })
   lu.assertEquals(got, {
      ["/opt/split"] = "contains the live token",
      ["/opt/pem"] = "private key",
      ["/opt/late"] = "contains the live token",
   })
   -- over max_size: not read, so nothing found in it
   local p = policy.merge(policy.defaults(),
      { secrets = { max_size = n } })
   got = scan(files, p, { TOKEN })
   lu.assertEquals(got, {})
end

function TestSecrets:test_whiteouts_links_and_hardlinks()
   local root, entries = tree({ ["/opt/a"] = TOKEN })
   h.sh("ln " .. h.q(root .. "/opt/a") .. " " .. h.q(root .. "/opt/b")
      .. " && ln -s /root/.netrc " .. h.q(root .. "/opt/l")
      .. " && mkdir -p " .. h.q(root .. "/root") .. " && ln -s /opt/a "
      .. h.q(root .. "/root/.netrc"))
   entries[#entries + 1] = { path = "/opt/b", type = "file" }
   entries[#entries + 1] = { path = "/opt/l", type = "link" }
   entries[#entries + 1] = { path = "/root/.netrc", type = "link" }
   entries[#entries + 1] = { path = "/root/.aws/credentials",
      whiteout = true }
   local found = secrets.scan(entries, root, policy.defaults(),
      { tokens = { TOKEN } })
   lu.assertEquals(found, {
      { path = "/opt/a", why = "contains the live token" },
      { path = "/opt/b", why = "contains the live token" },
   })
   lu.assertNil(secrets.scan({ { path = "/opt/l" } }, root,
      policy.defaults(), { tokens = { TOKEN } }))
end

function TestSecrets:test_live_tokens_sources()
   local dir = h.tmpdir()
   h.write(dir .. "/tok", "  from-file-token-value\n")
   local t = secrets.live_tokens({ token = "opt-token-value",
      token_file = dir .. "/tok" }, { "extra-token-value", "  " })
   local set = {}
   for _, v in ipairs(t) do set[v] = true end
   lu.assertTrue(set["from-file-token-value"])
   lu.assertTrue(set["opt-token-value"])
   lu.assertTrue(set["extra-token-value"])
   lu.assertNil(set[""])
   lu.assertStrContains(secrets.message({ { path = "/root/.netrc",
      why = "credential file" } }),
      "refusing to publish: /root/.netrc (credential file)")
end

-- End to end: a build below --root that leaves credentials is not
-- published and fails; allowed by the policy, it is published.
local function setup(cf)
   local top = h.tmpdir()
   h.make_root(top .. "/r")
   h.sh("mkdir -p " .. top .. "/ctx")
   h.write(top .. "/ctx/Containerfile", cf)
   return top
end

local function clayer(top, args, env)
   return h.clayer(args .. " --cache dir:" .. top .. "/cache --root "
      .. top .. "/r", (env and "export " .. env .. ";" or "") .. " cd "
      .. top .. "/ctx &&")
end

function TestSecrets:test_build_with_credentials_is_refused()
   local top = setup("RUN mkdir -p /root/.ssh && echo 'machine m' > "
      .. "/root/.netrc && echo key > /root/.ssh/id_rsa && echo ok > /etc/ok\n")
   local out, code = clayer(top, "build Containerfile")
   lu.assertEquals(code, 1, out)
   lu.assertStrContains(out, "clayer: refusing to publish: /root/.netrc "
      .. "(credential file), /root/.ssh/id_rsa (SSH private key)")
   -- nothing published, not even a temporary entry
   lu.assertEquals(h.sh("ls -A " .. top .. "/cache 2>/dev/null"), "")
   -- the build stays, and is recorded as applied
   lu.assertEquals(h.read(top .. "/r/etc/ok"), "ok\n")
   lu.assertStrContains(h.read(top .. "/r/var/lib/clayer/applied.json"),
      "layer-")
   -- allowed by the policy: published
   h.write(top .. "/ctx/clayer.policy.lua", "return { secrets = { allow = "
      .. "{ add = { '/root/.netrc', '/root/.ssh/id_*' } } } }\n")
   out, code = clayer(top, "build Containerfile")
   lu.assertEquals(code, 0, out)
   lu.assertStrMatches(h.sh("ls " .. top .. "/cache"), "layer%-%x+\n")
end

function TestSecrets:test_build_with_the_live_token_is_refused()
   local top = setup("RUN echo " .. TOKEN .. " > /etc/app.conf\n")
   local out, code = clayer(top, "build Containerfile", "GH_TOKEN=" .. TOKEN)
   lu.assertEquals(code, 1, out)
   lu.assertStrContains(out, "refusing to publish: /etc/app.conf "
      .. "(contains the live token)")
   lu.assertNotStrContains(out, TOKEN)
   lu.assertEquals(h.sh("ls -A " .. top .. "/cache 2>/dev/null"), "")
   -- without the token in the environment the same layer is fine
   out, code = clayer(top, "build Containerfile", "GH_TOKEN= GITHUB_TOKEN=")
   lu.assertEquals(code, 0, out)
end
