--- An extraction that stops while most of a zstd archive is still unread:
-- the decompression thread is then blocked on a full queue, and must let
-- go of its block without freeing it twice.  Each case runs in a child
-- clayer-lua, so a crash shows as its exit status instead of killing the
-- spec runner.
local lu = require "luaunit"
local h = require "helper"

TestEarlyStop = {}

function TestEarlyStop:tearDown()
   h.cleanup()
end

-- An archive: a small file, then `bad` (a member the extractor refuses,
-- or nil), then 32 MiB of random bytes in a file member.
local function archive(dir, bad)
   local py = dir .. "/mk.py"
   h.write(py, ([[
import io, os, tarfile
with tarfile.open(%q, "w", format=tarfile.PAX_FORMAT) as tf:
    def add(name, data):
        ti = tarfile.TarInfo(name); ti.size = len(data); ti.mode = 0o644
        tf.addfile(ti, io.BytesIO(data))
    add("ok.txt", b"ok\n")
    if %s:
        add(%q, b"x\n")
    add("pad", os.urandom(32 << 20))
]]):format(dir .. "/a.tar", bad and "True" or "False", bad or ""))
   local out, code = h.sh("python3 " .. h.q(py) .. " && zstd -q -1 --rm "
      .. h.q(dir .. "/a.tar"))
   assert(code == 0, out)
   return dir .. "/a.tar.zst"
end

-- Run tar.extract with `opts` (Lua source of extra fields) in a child;
-- return its output and exit status.
local function run(dir, src, opts)
   local script = dir .. "/x.lua"
   h.write(script, ([[
local tar = require "clayer.tar"
local r, err, code = tar.extract { root = %q, source = %q, %s }
io.write(tostring(r), " ", tostring(code), "\n")
]]):format(dir .. "/R", src, opts or ""))
   h.sh("rm -rf " .. h.q(dir .. "/R") .. " && mkdir " .. h.q(dir .. "/R"))
   return h.sh(h.q(h.bin) .. " " .. h.q(script) .. " 2>&1")
end

function TestEarlyStop:test_refused_member_early_in_a_big_archive()
   local dir = h.tmpdir()
   local src = archive(dir, "../escape")
   for _ = 1, 3 do
      local out, code = run(dir, src)
      lu.assertEquals(code, 0, out)
      lu.assertStrContains(out, "nil refused")
   end
   lu.assertEquals(h.sh("ls -A " .. h.q(dir .. "/R")), "")
end

function TestEarlyStop:test_byte_bound_hit_early_in_a_big_archive()
   local dir = h.tmpdir()
   local src = archive(dir, nil)
   for _ = 1, 3 do
      local out, code = run(dir, src, "max_bytes = 1000")
      lu.assertEquals(code, 0, out)
      lu.assertStrContains(out, "nil space")
   end
end
