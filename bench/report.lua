--- bench/report.lua: medians, ratios and targets of a `make bench` run.
--
--   clayer-lua bench/report.lua MACHINE.tsv SAMPLES.tsv RESULTS.json
--       [README.md]
--
-- Prints the markdown tables, writes RESULTS.json, and replaces the part
-- of README.md between the bench-results markers.
local fs = require "clayer.fs"
local json = require "clayer.json"

local machine_file, samples_file, results_file, readme = arg[1], arg[2],
   arg[3], arg[4]

local function lines(path)
   local out = {}
   for l in assert(io.open(path)):lines() do out[#out + 1] = l end
   return out
end

local function split(l)
   local t = {}
   for f in (l .. "\t"):gmatch("([^\t]*)\t") do t[#t + 1] = f end
   return t
end

-- machine and workload facts
local machine, mismatches = {}, {}
for _, l in ipairs(lines(machine_file)) do
   local f = split(l)
   if f[1] == "mismatch" then
      mismatches[#mismatches + 1] = f[2] .. "/" .. f[3]
   else
      machine[f[1]] = tonumber(f[2]) and math.tointeger(tonumber(f[2]))
         or tonumber(f[2]) or f[2]
   end
end

-- samples: section -> contender -> {seconds, rss_kb, load}
local data, order = {}, {}
for _, l in ipairs(lines(samples_file)) do
   local f = split(l)
   local sec, con = f[1], f[2]
   if not data[sec] then
      data[sec] = {}
      order[#order + 1] = sec
   end
   local d = data[sec][con]
   if not d then
      d = { seconds = {}, rss_kb = {}, load = {}, cpu = {}, contender = con }
      data[sec][con] = d
      data[sec][#data[sec] + 1] = d
   end
   d.seconds[#d.seconds + 1] = tonumber(f[3])
   d.rss_kb[#d.rss_kb + 1] = math.tointeger(tonumber(f[4]))
   d.load[#d.load + 1] = tonumber(f[5])
   d.cpu[#d.cpu + 1] = tonumber(f[6])
end

local function median(t)
   local s = {}
   for i, v in ipairs(t) do s[i] = v end
   table.sort(s)
   local n = #s
   if n == 0 then return nil end
   if n % 2 == 1 then return s[(n + 1) // 2] end
   return (s[n // 2] + s[n // 2 + 1]) / 2
end

local function minmax(t)
   local lo, hi = math.huge, -math.huge
   for _, v in ipairs(t) do
      lo, hi = math.min(lo, v), math.max(hi, v)
   end
   return lo, hi
end

local function get(sec, con)
   local d = data[sec] and data[sec][con]
   if not d then return nil end
   d.median = d.median or median(d.seconds)
   d.median_cpu = d.median_cpu or median(d.cpu)
   -- GNU time counts CPU in 10 ms steps: useless for short runs
   if d.median and d.median < 0.2 then d.median_cpu = nil end
   d.median_rss_kb = d.median_rss_kb or median(d.rss_kb)
   d.max_rss_kb = d.max_rss_kb or select(2, minmax(d.rss_kb))
   return d
end

local function secs(v)
   if not v then return "–" end
   if v < 1 then return ("%.1f ms"):format(v * 1000) end
   return ("%.2f s"):format(v)
end

-- "4.94 s (CPU 5.10 s)"
local function wall_cpu(d)
   if not d.median_cpu then return secs(d.median) end
   return ("%s (CPU %s)"):format(secs(d.median), secs(d.median_cpu))
end

local function mb(kb) return ("%.1f MB"):format(kb / 1024) end

-- targets -------------------------------------------------------------
local rows = {}

local function row(what, clayer, other, ratio, target, met, note)
   rows[#rows + 1] = { what = what, clayer = clayer, other = other,
      ratio = ratio, target = target, met = met, note = note }
end

-- faster: other/clayer >= want; within: clayer/other <= want
local function compare(what, sec, other, kind, want, oname)
   local c, o = get(sec, "clayer"), get(sec, other)
   if not c or not o then return end
   local r, met, ratio
   if kind == "faster" then
      r = o.median / c.median
      met = r >= want
      ratio = ("%.2f× faster"):format(r)
   else
      r = c.median / o.median
      met = r <= want
      ratio = ("%.2f× its time"):format(r)
   end
   if c.median_cpu and o.median_cpu and o.median_cpu > 0 then
      ratio = ratio .. (kind == "faster" and (" (CPU: %.2f×)"):format(
         o.median_cpu / c.median_cpu) or (" (CPU: %.2f×)"):format(
         c.median_cpu / o.median_cpu))
   end
   row(what .. " vs " .. oname, wall_cpu(c), wall_cpu(o), ratio,
      kind == "faster" and ("≥ %g× faster"):format(want)
         or ("≤ %g× its time"):format(want), met,
      { ratio = r, clayer = c.median, other = o.median })
end

for _, fsn in ipairs { "tmpfs", "disk" } do
   local sec = "restore-" .. fsn
   compare("restore into " .. fsn, sec, "orig", "faster",
      fsn == "tmpfs" and 2 or 1, "original tool (curl to file, tar -xzf)")
   compare("restore into " .. fsn, sec, "hand", "within", 1.1,
      "hand pipeline (curl | tee sha256sum | tar -I zstd)")
end
compare("pack", "pack", "gzip", "faster", 8, "tar -czf")
compare("pack", "pack", "zstd", "within", 1.1, "tar -I 'zstd -T0' -cf")
compare("scan /usr", "scan", "find", "within", 1.0, "find -printf")

do
   local n = get("noop", "clayer")
   if n then
      local cpu = tonumber(machine.noop_cpu_ms)
      row("no-op restore (already applied)", secs(n.median),
         cpu and ("CPU time %.1f ms"):format(cpu) or "", "",
         "≤ 20 ms", n.median <= 0.020, { clayer = n.median,
            cpu_ms = cpu })
   end
end

-- peak memory of restores: 64 MB + 100 B per entry
local function memory(what, sec, entries)
   local d = get(sec, "clayer")
   if not d or not entries then return end
   local limit = 64 * 1048576 + 100 * entries
   row(("restore peak memory, %s (%d entries)"):format(what, entries),
      mb(d.max_rss_kb), "", "",
      ("≤ %s"):format(mb(limit / 1024)), d.max_rss_kb * 1024 <= limit,
      { max_rss_kb = d.max_rss_kb, limit_bytes = limit })
end
memory("tree, tmpfs", "restore-tmpfs", machine.tree_entries)
memory("tree, disk", "restore-disk", machine.tree_entries)
memory("D7 " .. tostring(machine.many_200000), "restore-200000",
   machine.many_200000 and machine.many_200000 + 2)
memory("D7 " .. tostring(machine.many_400000), "restore-400000",
   machine.many_400000 and machine.many_400000 + 2)

-- growth when the entry count doubles
for _, what in ipairs { "snapshot", "restore" } do
   local a, b = get(what .. "-200000", "clayer"), get(what .. "-400000",
      "clayer")
   if a and b then
      local r = b.median / a.median
      row(("D7 %s time, %d → %d empty files"):format(what,
         machine.many_200000, machine.many_400000),
         wall_cpu(a) .. " → " .. wall_cpu(b), "",
         ("%.2f×"):format(r), "≈ 2× (linear; ≤ 2.3×)", r <= 2.3,
         { ratio = r, first = a.median, second = b.median })
      local m = b.max_rss_kb / a.max_rss_kb
      row(("D7 %s peak memory, %d → %d"):format(what,
         machine.many_200000, machine.many_400000),
         mb(a.max_rss_kb) .. " → " .. mb(b.max_rss_kb), "",
         ("%.2f×"):format(m), "≤ 2× (linear)", m <= 2.05,
         { ratio = m, first = a.max_rss_kb, second = b.max_rss_kb })
   end
end

-- output --------------------------------------------------------------
local out = {}
local function p(s) out[#out + 1] = s end

p(("Machine: %s CPUs (%s), %s MB RAM, kernel %s, %s; disk %s. %s."):format(
   tostring(machine.nproc), tostring(machine.cpu), tostring(machine.mem_mb),
   tostring(machine.kernel), tostring(machine.os), tostring(machine.disk_fs),
   tostring(machine.date)))
p("")
p(("Workload: %s — %d files, %d entries, %.0f MB (scale %s); archives: "
   .. "clayer zstd %.0f MB, tar zstd %.0f MB, gzip %.0f MB. %s runs per "
   .. "contender, medians. Tools: %s.")
   :format(tostring(machine.tree):gsub("^.*/bench/", "bench/"),
   machine.tree_files or 0, machine.tree_entries or 0,
   (machine.tree_bytes or 0) / 1048576, tostring(machine.scale),
   (machine.archive_zstd_clayer or 0) / 1048576,
   (machine.archive_zstd_tar or 0) / 1048576,
   (machine.archive_gzip or 0) / 1048576, tostring(machine.runs),
   tostring(machine.tools)))
if #mismatches > 0 then
   p("")
   p("**Restored trees that differ from the source: "
      .. table.concat(mismatches, ", ") .. "**")
end
p("")
p("| target | clayer | other | ratio | target | met |")
p("|---|---|---|---|---|---|")
for _, r in ipairs(rows) do
   p(("| %s | %s | %s | %s | %s | %s |"):format(
      (r.what:gsub("|", "\\|")), r.clayer, r.other,
      r.ratio, r.target, r.met and "yes" or "**no**"))
end
p("")
p("| measurement | contender | median | min – max | CPU (median) | peak RSS "
   .. "| load avg (1 min) | runs |")
p("|---|---|---|---|---|---|---|---|")
for _, sec in ipairs(order) do
   for _, d in ipairs(data[sec]) do
      get(sec, d.contender)
      local lo, hi = minmax(d.seconds)
      local llo, lhi = minmax(d.load)
      p(("| %s | %s | %s | %s – %s | %s | %s | %.2f – %.2f | %d |"):format(
         sec, d.contender, secs(d.median), secs(lo), secs(hi),
         d.median_cpu and secs(d.median_cpu) or "–",
         mb(d.max_rss_kb), llo, lhi, #d.seconds))
   end
end
local text = table.concat(out, "\n") .. "\n"
io.stdout:write(text)

-- results.json
local measurements = {}
for _, sec in ipairs(order) do
   for _, d in ipairs(data[sec]) do
      measurements[#measurements + 1] = { section = sec,
         contender = d.contender, samples = json.array(d.seconds),
         rss_kb = json.array(d.rss_kb), load1 = json.array(d.load),
         cpu_seconds = json.array(d.cpu), median_cpu = d.median_cpu,
         median = d.median, median_rss_kb = d.median_rss_kb,
         max_rss_kb = d.max_rss_kb }
   end
end
local targets = {}
for _, r in ipairs(rows) do
   targets[#targets + 1] = { what = r.what, target = r.target, met = r.met,
      values = r.note }
end
machine.mismatches = json.array(mismatches)
assert(fs.write_atomic(results_file, json.encode({ machine = machine,
   measurements = json.array(measurements), targets = json.array(targets) },
   { pretty = true }) .. "\n", 420))

if readme then
   local old = fs.read(readme) or ""
   local b, e = "<!-- bench-results:begin -->", "<!-- bench-results:end -->"
   local i = old:find(b, 1, true)
   local j = old:find(e, 1, true)
   local new
   if i and j then
      new = old:sub(1, i + #b) .. "\n" .. text .. "\n" .. old:sub(j)
   else
      new = old .. "\n## Last run\n\n" .. b .. "\n\n" .. text .. "\n" .. e
         .. "\n"
   end
   assert(fs.write_atomic(readme, new, 420))
end
