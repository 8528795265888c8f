--- The rollback journal: a replay that is itself killed can run again
-- without harm, and no archive member may write into clayer's state.
local lu = require "luaunit"
local h = require "helper"
local tar = require "clayer.tar"

TestJournal = {}

function TestJournal:tearDown()
   h.cleanup()
end

-- A root R with x, and a journal J below it as a killed run left it.
local function setup(x, saved, log)
   local R = h.tmpdir()
   local J = R .. "/var/lib/clayer/journal"
   os.execute("mkdir -p " .. J)
   h.write(R .. "/x", x)
   if saved then h.write(J .. "/00000001", saved) end
   h.write(J .. "/log", ("root %s\nmoved x %s/00000001\ncreated x\n")
      :format(R, J) .. (log or ""))
   return R, J
end

function TestJournal:test_replay_puts_back_what_was_replaced()
   local R, J = setup("new\n", "orig\n")
   assert(tar.recover(J))
   lu.assertEquals(h.read(R .. "/x"), "orig\n")
   lu.assertNil(h.read(J .. "/log"))
end

function TestJournal:test_replay_killed_midway_runs_again_safely()
   -- the first replay removed the new x, moved the original back, and
   -- was killed before it marked the move: created is marked undone
   local R, J = setup("orig\n", nil, "undone 2\n")
   assert(tar.recover(J))
   lu.assertEquals(h.read(R .. "/x"), "orig\n")
   -- killed after marking both: nothing left to do, nothing removed
   R, J = setup("orig\n", nil, "undone 2\nundone 1\n")
   assert(tar.recover(J))
   lu.assertEquals(h.read(R .. "/x"), "orig\n")
end

local function archive(dir, members)
   local py = { "import io, tarfile",
      ("tf = tarfile.open(%q, 'w', format=tarfile.PAX_FORMAT)")
         :format(dir .. "/a.tar") }
   for _, m in ipairs(members) do
      py[#py + 1] = ("ti = tarfile.TarInfo(%q)"):format(m.name)
      if m.link then
         py[#py + 1] = ("ti.type = tarfile.SYMTYPE; ti.linkname = %q")
            :format(m.link)
         py[#py + 1] = "tf.addfile(ti)"
      else
         py[#py + 1] = ("d = %q.encode(); ti.size = len(d); "
            .. "tf.addfile(ti, io.BytesIO(d))"):format(m.data or "")
      end
   end
   py[#py + 1] = "tf.close()"
   h.write(dir .. "/mk.py", table.concat(py, "\n") .. "\n")
   local out, code = h.sh("cd " .. dir .. " && python3 mk.py && "
      .. "zstd -q -f a.tar -o a.tar.zst")
   assert(code == 0, out)
   return dir .. "/a.tar.zst"
end

function TestJournal:test_members_cannot_write_clayers_state()
   local dir = h.tmpdir()
   local R = dir .. "/R"
   os.execute("mkdir -p " .. R .. "/var/lib/clayer " .. dir .. "/outside")
   h.write(R .. "/var/lib/clayer/applied.json", "{}")
   local cases = {
      { { name = "var/lib/clayer/lock", link = dir .. "/outside/x" } },
      { { name = "var/lib/clayer/applied.json", data = "{\"layers\":[]}" } },
      { { name = "var/lib/clayer/.wh.applied.json" } },
      { { name = "s", link = "/var/lib/clayer" },
        { name = "s/env.sh", data = "echo owned" } },
   }
   for i, members in ipairs(cases) do
      local src = archive(dir, members)
      local res, err, code = tar.extract { root = R, source = src,
         journal = R .. "/var/lib/clayer/journal" }
      lu.assertNil(res, "case " .. i)
      lu.assertEquals(code, "refused", "case " .. i .. ": " .. tostring(err))
      lu.assertStrContains(err, "state or journal folder")
      lu.assertEquals(h.read(R .. "/var/lib/clayer/applied.json"), "{}")
      lu.assertNil(h.read(R .. "/var/lib/clayer/env.sh"))
      lu.assertEquals(h.sh("ls -A " .. dir .. "/outside"), "")
   end
end

function TestJournal:test_journal_right_below_the_root_protects_only_itself()
   local dir = h.tmpdir()
   local R = dir .. "/R"
   os.execute("mkdir -p " .. R)
   local src = archive(dir, { { name = "opt/x", data = "x" } })
   local res, err = tar.extract { root = R, source = src,
      journal = R .. "/j" }
   lu.assertNotNil(res, err)
   lu.assertEquals(h.read(R .. "/opt/x"), "x")
   src = archive(dir, { { name = "j/log", data = "x" } })
   res, err = tar.extract { root = R, source = src, journal = R .. "/j" }
   lu.assertNil(res)
   lu.assertStrContains(err, "state or journal folder")
end

function TestJournal:test_failed_undo_keeps_the_journal_for_a_later_replay()
   -- d/x was moved into J, a file was made at d/y, then d was replaced
   -- by a file: putting x back fails, and must neither be marked undone
   -- nor lose the saved entry
   local R = h.tmpdir()
   local J = R .. "/var/lib/clayer/journal"
   os.execute("mkdir -p " .. J)
   h.write(R .. "/d", "a file in the way\n")
   h.write(J .. "/00000001", "orig\n")
   h.write(J .. "/log", ("root %s\nmoved d/x %s/00000001\ncreated d/y\n")
      :format(R, J))
   for _ = 1, 2 do
      local ok, err = tar.recover(J)
      lu.assertNil(ok)
      lu.assertStrContains(err, "moved d/x")
      lu.assertEquals(h.read(J .. "/00000001"), "orig\n")
      lu.assertNotNil(h.read(J .. "/log"))
   end
   -- the obstacle gone, a later replay retries the record
   os.execute("rm " .. R .. "/d && mkdir " .. R .. "/d")
   assert(tar.recover(J))
   lu.assertEquals(h.read(R .. "/d/x"), "orig\n")
   lu.assertNil(h.read(J .. "/log"))
end

-- A "meta" record of a folder that is already as recorded (its change
-- failed, as on procfs) is undone without touching it: here the replay
-- runs as a user who may not chmod the root-owned folder at all.
function TestJournal:test_meta_already_as_recorded_needs_no_change()
   local R = h.tmpdir()
   local J = R .. "/var/lib/clayer/journal"
   h.sh("mkdir -p " .. h.q(R .. "/d") .. " " .. h.q(J) .. " && chmod 755 "
      .. h.q(R .. "/d") .. " && chmod 755 " .. h.q(R) .. " "
      .. h.q(R .. "/var") .. " " .. h.q(R .. "/var/lib") .. " "
      .. h.q(R .. "/var/lib/clayer") .. " && chown -R 65534:65534 "
      .. h.q(R .. "/var/lib/clayer"))
   local at, mt = h.sh("python3 -c 'import os, sys; s = os.stat(sys.argv[1]);"
      .. " print(s.st_atime_ns, s.st_mtime_ns)' " .. h.q(R .. "/d"))
      :match("(%d+) (%d+)")
   h.write(J .. "/log", ("root %s\nmeta d 755 0 0 %s %s\n"):format(R, at,
      mt))
   h.sh("chown 65534:65534 " .. h.q(J .. "/log"))
   h.write(R .. "/rec.lua", ("local tar = require 'clayer.tar'\n"
      .. "print(tar.recover(%q))\n"):format(J))
   local out, code = h.sh("setpriv --reuid=65534 --regid=65534 "
      .. "--clear-groups " .. h.q(h.bin) .. " " .. h.q(R .. "/rec.lua")
      .. " 2>&1")
   lu.assertEquals(code, 0, out)
   lu.assertStrContains(out, "true")
   lu.assertNil(h.read(J .. "/log"))
end
