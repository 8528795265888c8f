--- clayer.http against tests/fixtures/httpd.py on 127.0.0.1.
local lu = require "luaunit"
local h = require "helper"
local http = require "clayer.http"
local json = require "clayer.json"

local MB = 1024 * 1024

-- The servers and their file root live for the whole class: started by the
-- first test that needs them, stopped in teardownClass (and by their own
-- --lifetime should this process die first).
local state = { servers = {} }

local function now()
   return tonumber((h.sh("date +%s.%N"))) or os.time()
end

local function root()
   if not state.root then
      state.root = h.sh("mktemp -d /tmp/clayer-http.XXXXXX"):gsub("%s+$", "")
      h.write(state.root .. "/hello.txt", "hello world\n")
      h.write(state.root .. "/digits.txt", "0123456789")
      local t = {}
      for i = 1, MB // 64 do
         t[i] = string.format("%063d\n", i)
      end
      h.write(state.root .. "/big.bin", table.concat(t))
   end
   return state.root
end

--- A self-signed certificate for 127.0.0.1: its PEM path and key path.
local function cert()
   local c, k = root() .. "/.cert.pem", root() .. "/.key.pem"
   if not h.read(c) then
      local out, code = h.sh("openssl req -x509 -newkey rsa:2048 -nodes "
         .. "-days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
         .. "-keyout " .. h.q(k) .. " -out " .. h.q(c))
      assert(code == 0, out)
   end
   return c, k
end

--- Start server n unless running (1 and 2: HTTP, 3: HTTPS with cert());
-- return its base URL.
local function server(n)
   n = n or 1
   local s = state.servers[n]
   if s then return s.base end
   local pf = root() .. "/.port" .. n
   local tls = ""
   if n == 3 then
      local c, k = cert()
      tls = " --cert " .. h.q(c) .. " --key " .. h.q(k)
   end
   local out = h.sh(string.format(
      "python3 %s --port 0 --port-file %s --root %s --lifetime 120%s "
         .. ">/dev/null 2>&1 & echo $!",
      h.q(h.repo .. "/tests/fixtures/httpd.py"), h.q(pf), h.q(root()), tls))
   s = { pid = assert(out:match("%d+")) }
   state.servers[n] = s
   for _ = 1, 100 do
      local port = h.read(pf)
      if port and port:match("^%d+\n$") then
         s.base = (n == 3 and "https" or "http") .. "://127.0.0.1:"
            .. port:match("%d+")
         return s.base
      end
      h.sh("sleep 0.05")
   end
   error("httpd.py did not start")
end

local function url(path, n)
   return server(n) .. path
end

local function sha256(path)
   return (h.sh("sha256sum " .. h.q(path)):match("^%x+"))
end

local function json_field(body, name)
   return body:match('"' .. name .. '": "([^"]*)"')
      or body:match('"' .. name .. '": (%d+)')
end

local function elapsed(f)
   local t0 = now()
   local r = table.pack(f())
   return now() - t0, table.unpack(r, 1, r.n)
end

TestHttp = {}

function TestHttp:tearDown()
   h.cleanup()
end

function TestHttp:teardownClass()
   for _, s in pairs(state.servers) do
      h.sh("kill " .. s.pid .. "; for i in $(seq 50); do kill -0 " .. s.pid
         .. " 2>/dev/null || break; sleep 0.05; done")
   end
   state.servers = {}
   if state.root then
      os.execute("rm -rf " .. h.q(state.root))
      state.root = nil
   end
end

function TestHttp:test_get_body_status_url()
   local r = assert(http.request { url = url("/files/hello.txt") })
   lu.assertEquals(r.status, 200)
   lu.assertEquals(r.body, "hello world\n")
   lu.assertEquals(r.url, url("/files/hello.txt"))
end

function TestHttp:test_headers_lowercased()
   local r = assert(http.request { url = url("/files/hello.txt") })
   lu.assertEquals(r.headers["content-length"], "12")
   lu.assertEquals(r.headers["content-type"], "application/octet-stream")
   lu.assertNil(r.headers["Content-Length"])
end

function TestHttp:test_head_has_headers_no_body()
   local r = assert(http.request { url = url("/files/big.bin"),
      method = "HEAD" })
   lu.assertEquals(r.status, 200)
   lu.assertEquals(r.body, "")
   lu.assertEquals(r.headers["content-length"], tostring(MB))
end

function TestHttp:test_404_is_data()
   local r, err = http.request { url = url("/status/404") }
   lu.assertNil(err)
   lu.assertEquals(r.status, 404)
   lu.assertEquals(r.body, "status 404\n")
end

function TestHttp:test_output_file()
   local out = h.tmpdir() .. "/big.bin"
   local r = assert(http.request { url = url("/files/big.bin"),
      output = out })
   lu.assertEquals(r.status, 200)
   lu.assertNil(r.body)
   lu.assertEquals(sha256(out), sha256(root() .. "/big.bin"))
end

function TestHttp:test_output_unwritable_is_write_error()
   local r, err, code = http.request { url = url("/files/hello.txt"),
      output = h.tmpdir() .. "/missing/dir/x" }
   lu.assertNil(r)
   lu.assertEquals(code, "write")
   lu.assertStrContains(err, "No such file or directory")
end

function TestHttp:test_sink_chunks_concatenate()
   local chunks = {}
   local r = assert(http.request { url = url("/files/big.bin"),
      sink = function(c) chunks[#chunks + 1] = c end })
   lu.assertNil(r.body)
   lu.assertTrue(#chunks > 1)
   lu.assertEquals(table.concat(chunks), h.read(root() .. "/big.bin"))
end

function TestHttp:test_sink_false_aborts()
   local calls = 0
   local r, err, code = http.request { url = url("/files/big.bin"),
      sink = function() calls = calls + 1; return false end }
   lu.assertNil(r)
   lu.assertEquals(code, "aborted")
   lu.assertStrContains(err, "http: " .. url("/files/big.bin") .. ": ")
   lu.assertEquals(calls, 1)
end

function TestHttp:test_sink_error_propagates()
   local ok, err = pcall(http.request, { url = url("/files/big.bin"),
      sink = function() error("boom in sink") end })
   lu.assertFalse(ok)
   lu.assertStrContains(tostring(err), "boom in sink")
end

function TestHttp:test_post_body()
   local dir = h.tmpdir()
   local body = ("abc\0def"):rep(1000)
   h.write(dir .. "/b", body)
   local r = assert(http.request { url = url("/echo"), method = "POST",
      body = body, headers = { ["Content-Type"] = "text/plain" } })
   lu.assertEquals(r.status, 200)
   lu.assertEquals(json_field(r.body, "method"), "POST")
   lu.assertEquals(json_field(r.body, "length"), tostring(#body))
   lu.assertEquals(json_field(r.body, "body_sha256"), sha256(dir .. "/b"))
   lu.assertStrContains(r.body, '"content-type": "text/plain"')
end

function TestHttp:test_body_file_upload()
   local r = assert(http.request { url = url("/echo"), method = "PUT",
      body_file = root() .. "/big.bin" })
   lu.assertEquals(json_field(r.body, "method"), "PUT")
   lu.assertEquals(json_field(r.body, "length"), tostring(MB))
   lu.assertEquals(json_field(r.body, "body_sha256"),
      sha256(root() .. "/big.bin"))
end

function TestHttp:test_missing_body_file_fails()
   local r, err, code = http.request { url = url("/echo"), method = "PUT",
      body_file = "/nonexistent/file" }
   lu.assertNil(r)
   lu.assertStrContains(err, "/nonexistent/file: No such file")
   lu.assertEquals(code, 2)
end

function TestHttp:test_redirects_followed()
   local r = assert(http.request { url = url("/redirect/3") })
   lu.assertEquals(r.status, 200)
   lu.assertEquals(r.body, "done\n")
   lu.assertEquals(r.url, url("/redirect/0"))
end

function TestHttp:test_follow_false_returns_redirect()
   local r = assert(http.request { url = url("/redirect/2"),
      follow = false })
   lu.assertEquals(r.status, 302)
   lu.assertEquals(r.headers.location, "/redirect/1")
end

function TestHttp:test_redirect_body_not_in_output()
   local out = h.tmpdir() .. "/o"
   assert(http.request { url = url("/redirect-to?url=/files/hello.txt"),
      output = out })
   lu.assertEquals(h.read(out), "hello world\n")
end

function TestHttp:test_redirect_loop_fails_http()
   local r, err, code = http.request { url = url("/loop") }
   lu.assertNil(r)
   lu.assertEquals(code, "http")
   lu.assertStrContains(err, "redirects")
end

function TestHttp:test_authorization_same_origin_kept()
   local r = assert(http.request {
      url = url("/redirect-to?url=" .. http.escape("/headers")),
      headers = { Authorization = "Bearer secret", ["X-Test"] = "1" } })
   lu.assertEquals(r.url, url("/headers"))
   lu.assertStrContains(r.body, '"authorization": "Bearer secret"')
   lu.assertStrContains(r.body, '"x-test": "1"')
end

function TestHttp:test_authorization_dropped_cross_origin()
   local other = url("/headers", 2)
   lu.assertNotEquals(server(2), server(1))
   local r = assert(http.request {
      url = url("/redirect-to?url=" .. http.escape(other)),
      headers = { authorization = "Bearer secret", ["X-Test"] = "1" } })
   lu.assertEquals(r.url, other)
   lu.assertNotStrContains(r.body, "authorization")
   lu.assertNotStrContains(r.body, "secret")
   lu.assertStrContains(r.body, '"x-test": "1"')
end

function TestHttp:test_connection_refused_is_connect()
   local port = h.sh("python3 -c 'import socket; s = socket.socket(); "
      .. "s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1]); "
      .. "s.close()'"):match("%d+")
   local r, err, code = http.request { url = "http://127.0.0.1:" .. port
      .. "/x" }
   lu.assertNil(r)
   lu.assertEquals(code, "connect")
   lu.assertStrContains(err, "http: http://127.0.0.1:" .. port .. "/x: ")
end

-- Signed storage URLs carry credentials in their query: messages keep
-- the parameter names and drop those values (and user:password@).
function TestHttp:test_messages_redact_signed_url_credentials()
   local port = h.sh("python3 -c 'import socket; s = socket.socket(); "
      .. "s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1]); "
      .. "s.close()'"):match("%d+")
   local r, err = http.request { url = "http://u:pw@127.0.0.1:" .. port
      .. "/a?X-Amz-Signature=S1&X-Amz-Credential=S2&sp=r&sig=S3"
      .. "&jwt=S4&response-content-type=x#frag" }
   lu.assertNil(r)
   lu.assertStrContains(err, "http: http://127.0.0.1:" .. port
      .. "/a?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&sp=r"
      .. "&sig=REDACTED&jwt=REDACTED&response-content-type=x#frag: ")
   for _, secret in ipairs { "S1", "S2", "S3", "S4", "pw" } do
      lu.assertNotStrContains(err, secret .. "&")
      lu.assertNotStrContains(err, ":" .. secret .. "@")
   end
end

function TestHttp:test_idle_timeout()
   server()
   local t, r, err, code = elapsed(function()
      return http.request { url = url("/stall?bytes=100"), idle_timeout = 1 }
   end)
   lu.assertNil(r)
   lu.assertEquals(code, "timeout")
   lu.assertNotNil(err)
   lu.assertTrue(t < 3, "took " .. t .. " s")
end

function TestHttp:test_total_timeout()
   server()
   local t, r, _, code = elapsed(function()
      return http.request { url = url("/slow?bytes=1000&rate=500"),
         timeout = 0.5 }
   end)
   lu.assertNil(r)
   lu.assertEquals(code, "timeout")
   lu.assertTrue(t < 1.5, "took " .. t .. " s")
end

function TestHttp:test_reset_midway()
   local r, err, code = http.request { url = url("/reset?bytes=50000") }
   lu.assertNil(r)
   lu.assertEquals(code, "reset")
   lu.assertNotNil(err)
end

function TestHttp:test_open_streams_chunks()
   local s = assert(http.open { url = url("/files/big.bin") })
   lu.assertNil(s:status())
   local chunks = {}
   for chunk in s.read, s do
      chunks[#chunks + 1] = chunk
   end
   lu.assertTrue(#chunks > 1)
   lu.assertEquals(table.concat(chunks), h.read(root() .. "/big.bin"))
   lu.assertEquals(s:status(), 200)
   lu.assertEquals(s:headers()["content-length"], tostring(MB))
   lu.assertNil(s:read())
   s:close()
   s:close()
   lu.assertErrorMsgContains("closed", s.read, s)
end

function TestHttp:test_open_follows_redirects()
   local s <close> = assert(http.open { url = url("/redirect/2") })
   lu.assertEquals(s:read(), "done\n")
   lu.assertNil(s:read())
   lu.assertEquals(s:status(), 200)
end

function TestHttp:test_open_404_fails()
   local s <close> = assert(http.open { url = url("/status/404") })
   local chunk, err, code = s:read()
   lu.assertNil(chunk)
   lu.assertEquals(code, "http")
   lu.assertStrContains(err, "HTTP 404")
end

function TestHttp:test_start_wait_overlap()
   local dir = h.tmpdir()
   local path = "/slow?bytes=3000&rate=4000"   -- 0.75 s each
   server()
   local t, r1, r2 = elapsed(function()
      local a = assert(http.start { url = url(path), output = dir .. "/a" })
      local b = assert(http.start { url = url(path), output = dir .. "/b" })
      return a:wait(), b:wait()
   end)
   lu.assertEquals(r1.status, 200)
   lu.assertEquals(r2.status, 200)
   lu.assertEquals(h.read(dir .. "/a"), ("x"):rep(3000))
   lu.assertEquals(h.read(dir .. "/b"), ("x"):rep(3000))
   lu.assertTrue(t < 1.4, "took " .. t .. " s: not overlapped")
end

function TestHttp:test_start_failure_and_close()
   local dir = h.tmpdir()
   local t = assert(http.start { url = url("/reset?bytes=100"),
      output = dir .. "/x" })
   local r, _, code = t:wait()
   lu.assertNil(r)
   lu.assertEquals(code, "reset")
   local stall = assert(http.start { url = url("/stall?bytes=1"),
      output = dir .. "/y" })
   local took = elapsed(function() stall:close() end)
   lu.assertTrue(took < 1, "close took " .. took .. " s")
   lu.assertErrorMsgContains("closed", stall.wait, stall)
end

function TestHttp:test_progress_called()
   local last, calls = nil, 0
   assert(http.request { url = url("/files/big.bin"),
      progress = function(dlnow, dltotal)
         calls = calls + 1
         last = { dlnow, dltotal }
      end })
   lu.assertTrue(calls > 0)
   lu.assertEquals(last, { MB, MB })
end

function TestHttp:test_verbose_redacts_authorization()
   local lines = {}
   assert(http.request { url = url("/redirect/1"),
      headers = { Authorization = "Bearer secret" },
      verbose = function(l) lines[#lines + 1] = l end })
   local all = table.concat(lines, "\n")
   lu.assertEquals(lines[1], "GET " .. url("/redirect/1"))
   lu.assertStrContains(all, "< 302")
   lu.assertStrContains(all, "GET " .. url("/redirect/0"))
   lu.assertStrContains(all, "< 200")
   lu.assertStrContains(all, "Authorization: <redacted>")
   lu.assertNotStrContains(all, "secret")
end

function TestHttp:test_resume_from_tail()
   local r = assert(http.request { url = url("/files/digits.txt"),
      resume_from = 6 })
   lu.assertEquals(r.status, 206)
   lu.assertEquals(r.body, "6789")
   local out = h.tmpdir() .. "/d"
   h.write(out, "012345garbage")
   r = assert(http.request { url = url("/files/digits.txt"),
      resume_from = 6, output = out })
   lu.assertEquals(r.status, 206)
   lu.assertEquals(h.read(out), "0123456789")
   r = assert(http.request { url = url("/files/digits.txt"),
      resume_from = 10, output = out })
   lu.assertEquals(r.status, 416)
   lu.assertEquals(h.read(out), "0123456789")
end

-- The /files requests server n saw since the last call (httpd.py /_log).
-- A break= fault hits the first requests of its exact URL: each test
-- below uses a URL of its own.
local function files_log(n)
   return json.decode(assert(http.request {
      url = url("/_log?reset=1", n) }).body)
end

-- Read stream s to its end: the body, or nil, err, code.
local function drain(s)
   local t = {}
   while true do
      local chunk, err, code = s:read()
      if not chunk then
         if err then return nil, err, code end
         return table.concat(t)
      end
      t[#t + 1] = chunk
   end
end

local FAST = { tries = 2, backoff = 0.001 }

function TestHttp:test_open_resumes_after_reset()
   files_log()
   local lines = {}
   local s <close> = assert(http.open {
      url = url("/files/big.bin?break=reset&after=300000"), resume = FAST,
      verbose = function(l) lines[#lines + 1] = l end })
   lu.assertEquals(drain(s), h.read(root() .. "/big.bin"))
   lu.assertEquals(s:status(), 200)           -- the first answer's
   lu.assertEquals(s:headers()["content-length"], tostring(MB))
   -- one resume: the second request asks for the rest, and gets only it
   local L = files_log()
   lu.assertEquals(#L, 2)
   lu.assertEquals(L[1].range, json.null)
   lu.assertEquals(L[1].sent, 300000)
   local at = tonumber(L[2].range:match("^bytes=(%d+)%-$"))
   lu.assertTrue(at and at > 0 and at <= 300000, L[2].range)
   lu.assertEquals(L[2].status, 206)
   lu.assertEquals(L[2].sent, MB - at)
   local all = table.concat(lines, "\n")
   lu.assertStrContains(all, ("resume 1 of 2 at byte %d in "):format(at))
   lu.assertStrContains(all, ("> Range: bytes=%d-"):format(at))
end

function TestHttp:test_open_resume_after_stall()
   files_log()
   local t, body = elapsed(function()
      local s <close> = assert(http.open {
         url = url("/files/big.bin?break=stall&after=200000"),
         idle_timeout = 1, resume = FAST })
      return drain(s)
   end)
   lu.assertEquals(body, h.read(root() .. "/big.bin"))
   lu.assertTrue(t < 4, "took " .. t .. " s")
   local L = files_log()
   lu.assertEquals(#L, 2)
   lu.assertStrMatches(L[2].range, "bytes=%d+%-")
end

function TestHttp:test_open_resume_skips_when_range_is_ignored()
   files_log()
   local s <close> = assert(http.open {
      url = url("/files/big.bin?break=reset&after=300000&range=ignore"),
      resume = FAST })
   lu.assertEquals(drain(s), h.read(root() .. "/big.bin"))
   local L = files_log()
   lu.assertEquals(#L, 2)
   lu.assertNotEquals(L[2].range, json.null)
   lu.assertEquals(L[2].status, 200)         -- all of it again, skipped
   lu.assertEquals(L[2].sent, MB)
end

function TestHttp:test_open_resume_wrong_content_range_fails()
   local s <close> = assert(http.open {
      url = url("/files/big.bin?break=reset&after=300000&range=shift"),
      resume = FAST })
   local body, err, code = drain(s)
   lu.assertNil(body)
   lu.assertEquals(code, "http")
   lu.assertStrContains(err, "resuming at byte ")
   lu.assertStrContains(err, "Content-Range is 'bytes ")
end

function TestHttp:test_open_resumes_are_bounded()
   files_log()
   local s <close> = assert(http.open {
      url = url("/files/big.bin?break=reset&after=100000&times=99"),
      resume = FAST })
   local body, err, code = drain(s)
   lu.assertNil(body)
   lu.assertEquals(code, "reset")
   lu.assertStrContains(err, "after 2 resumes)")
   lu.assertEquals(#files_log(), 3)
   -- nothing taken yet: no resume, the failure of today
   local s2 <close> = assert(http.open {
      url = url("/files/big.bin?break=reset&after=0"), resume = FAST })
   body, err, code = drain(s2)
   lu.assertNil(body)
   lu.assertEquals(code, "reset")
   lu.assertNotStrContains(err, "resume")
   lu.assertEquals(#files_log(), 1)
   -- an HTTP error status is no broken body either
   local s3 <close> = assert(http.open { url = url("/status/503"),
      resume = FAST })
   body, err, code = drain(s3)
   lu.assertNil(body)
   lu.assertEquals(code, "http")
   lu.assertStrContains(err, "HTTP 503")
end

-- A resume asks the first URL again: its redirect is followed anew, and
-- Authorization still stays with the origin it was given for.
function TestHttp:test_resume_follows_redirects_again()
   local target = url("/files/big.bin?break=reset&after=300000", 2)
   files_log(2)
   assert(http.request { url = url("/_stats?reset=1") })
   local s <close> = assert(http.open {
      url = url("/redirect-to?url=" .. http.escape(target)),
      headers = { Authorization = "Bearer secret" }, resume = FAST })
   lu.assertEquals(drain(s), h.read(root() .. "/big.bin"))
   local L = files_log(2)
   lu.assertEquals(#L, 2)
   lu.assertFalse(L[1].auth)
   lu.assertFalse(L[2].auth)
   lu.assertNotEquals(L[2].range, json.null)
   local stats = assert(http.request { url = url("/_stats") }).body
   lu.assertStrContains(stats, '"/redirect-to": 2')
end

function TestHttp:test_start_resumes_into_output()
   local out = h.tmpdir() .. "/big"
   files_log()
   local t = assert(http.start {
      url = url("/files/big.bin?break=reset&after=300000&to=file"),
      output = out,
      resume = FAST })
   local r = assert(t:wait())
   lu.assertEquals(r.status, 200)
   lu.assertEquals(sha256(out), sha256(root() .. "/big.bin"))
   lu.assertEquals({ t:progress() }, { MB, MB })
   lu.assertEquals(#files_log(), 2)
   t:close()
end

-- resume.log: one line per resume on stderr, as the CLI's log has them.
function TestHttp:test_resume_log_line_on_stderr()
   local script = ("local http = require 'clayer.http' "
      .. "local s = http.open { url = %q, resume = { tries = 1, "
      .. "backoff = 0.001, log = 'spec: big.bin' } } "
      .. "local n = 0 while true do local c, e = s:read() "
      .. "if not c then assert(not e, e) break end n = n + #c end "
      .. "io.write(n)"):format(url("/files/big.bin?break=reset&after=300000"
      .. "&log=1"))
   local out = h.sh(h.q(h.bin) .. " -e " .. h.q(script) .. " 2>&1")
   lu.assertStrMatches(out, "clayer: spec: big%.bin: [^\n]+; resume 1 of 1 "
      .. "at byte %d+ in 0%.001 s\n" .. MB)
end

function TestHttp:test_misuse_raises()
   lu.assertErrorMsgContains("unknown option", http.request,
      { url = url("/"), bogus = 1 })
   lu.assertErrorMsgContains("url", http.request, {})
   lu.assertErrorMsgContains("output", http.start, { url = url("/") })
   lu.assertErrorMsgContains("method", http.request,
      { url = url("/"), method = "BREW" })
   lu.assertErrorMsgContains("unknown option", http.open,
      { url = url("/"), output = "/tmp/x" })
   lu.assertErrorMsgContains("unknown option", http.request,
      { url = url("/"), resume = {} })
   lu.assertErrorMsgContains("unknown field 'retries'", http.open,
      { url = url("/"), resume = { retries = 1 } })
   lu.assertErrorMsgContains("option 'resume'", http.open,
      { url = url("/"), resume = { tries = -1 } })
end

function TestHttp:test_escape()
   lu.assertEquals(http.escape("a b/c?d=e&f~_.-"),
      "a%20b%2Fc%3Fd%3De%26f~_.-")
   lu.assertEquals(http.escape("\0\255"), "%00%FF")
end

function TestHttp:test_server_counts_requests()
   local base = url("/_stats?reset=1")
   assert(http.request { url = base })
   assert(http.request { url = url("/flaky/1/hello.txt") })
   local r = assert(http.request { url = url("/flaky/1/hello.txt") })
   lu.assertEquals(r.body, "hello world\n")
   local stats = assert(http.request { url = url("/_stats") }).body
   lu.assertStrContains(stats, '"/flaky/1/hello.txt": 2')
end

function TestHttp:test_tls_untrusted_then_cacert()
   local base = server(3)
   local r, err, code = http.request { url = base .. "/files/hello.txt",
      cacert = "/etc/ssl/certs/ca-certificates.crt" }
   lu.assertNil(r)
   lu.assertEquals(code, "tls")
   lu.assertStrContains(err, "http: " .. base .. "/files/hello.txt: ")
   r = assert(http.request { url = base .. "/files/hello.txt",
      cacert = (cert()) })
   lu.assertEquals(r.body, "hello world\n")
end

function TestHttp:test_cacert_from_environment()
   local base = server(3)
   local script = string.format("local r, e = require('clayer.http')"
      .. ".request{url = %q} io.write(r and r.body or e)",
      base .. "/files/hello.txt")
   local out = h.sh("CLAYER_CA_BUNDLE=" .. h.q((cert())) .. " "
      .. h.q(h.bin) .. " -e " .. h.q(script))
   lu.assertEquals(out, "hello world\n")
end

function TestHttp:test_proxy_from_environment()
   local target = url("/headers")
   local script = string.format("local r, e = require('clayer.http')"
      .. ".request{url = %q} io.write(r and r.body or e)", target)
   local run = h.q(h.bin) .. " -e " .. h.q(script)
   assert(http.request { url = url("/_stats?reset=1", 2) })
   local out = h.sh("http_proxy=" .. server(2) .. " NO_PROXY= no_proxy= "
      .. run)
   lu.assertStrContains(out, '"host": "' .. target:match("//([^/]+)"))
   local stats = assert(http.request { url = url("/_stats", 2) }).body
   lu.assertStrContains(stats, '"/headers": 1')
   out = h.sh("http_proxy=" .. server(2) .. " no_proxy=127.0.0.1 " .. run)
   lu.assertStrContains(out, '"host": "')
   stats = assert(http.request { url = url("/_stats", 2) }).body
   lu.assertStrContains(stats, '"/headers": 1')
end
