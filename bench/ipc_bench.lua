-- bench/ipc_bench.lua [BUILD_DIR]: round-trip latency and throughput
-- between two processes, shmlua against its C baselines, side by side in
-- one run (bench/run.sh runs it as `build/shmlua bench/ipc_bench.lua build`).
--
-- Round trips, each with the two processes pinned (taskset) to different
-- CPUs and to the same CPU:
--   C spin, C futex, C hybrid   BUILD_DIR/bench/pingpong (bench/pingpong.c)
--   shmlua spin                 r.store, then a loop of r.load, where
--                               r = shm.atomic_ref(view, "seq")
--   shmlua spin by name         the same with shm.atomic_store/atomic_load,
--                               which find the field by name at every call
--   Lua spin, unchecked         the same through chanproto.c's load32/store32:
--                               Lua->C calls on a raw address that check
--                               nothing, the floor under checked atomics
--   shmlua futex                r.notify (store, FUTEX_WAKE), r.futex_wait
--                               loop; and by name (shm.notify, futex_wait)
--   shmlua adaptive wait        notify / wait_change with a waiters field:
--                               the channel's waiting strategy, no message
--   channel                     ch:send / ch:recv through two shm.channel
--                               rings: the adaptive wait of src/atomic.c
--   socketpair                  the same 16-byte messages, write_fd/read_fd
-- Throughput of 64-byte messages, one direction, pinned to different CPUs:
--   channel send/recv, channel send_batch/recv_batch (64 a call), and a
--   socketpair written one message (or 64) per write_fd, read 64 KiB at a
--   time and cut into messages.
-- Also, for comparison, a C prototype of the channel's send/recv and
-- send_batch/recv_batch (bench/ipc/chanproto.c, built here into
-- BUILD_DIR/bench/chanproto.so): same protocol (version 3) and layout, one
-- C call per operation, but no checks and its indices kept in private
-- memory; it shows how much of the channel's cost is the protocol itself
-- (cache lines crossing CPUs) and how much the checked, stateless C path
-- of src/channel.c; and the same with a recv that makes no Lua string of
-- the message (it returns the length): what Lua 5.4's interning of a short
-- string (hashing every byte, <= 40 bytes) costs a round trip.
-- The shmlua sides are bench/ipc/peer.lua.  The bench runs in rounds:
-- each round runs every cell once (a run of up to SECONDS; spinning on one
-- CPU costs a time slice per exchange, so every run is capped in time), so
-- a cell and its baseline are measured seconds apart, not minutes: these
-- VMs change speed by up to 2x from one minute to the next.  Cells show
-- the median over the rounds of each run's mean; the targets are judged on
-- the median over the rounds of the ratio within each round (the ratio of
-- the medians is printed too):
--   shmlua spin <= 2.5x C spin, shmlua futex <= 1.2x C futex, channel <=
--   1.5x the better of shmlua spin and shmlua futex (per placement),
--   channel throughput >= 10x socketpair.
-- Two lines tell the state of the VM in each round: its steal time, and the
-- C spin round trip across the CPUs (about 0.03 us when the host runs the
-- two vCPUs on the two logical CPUs of one core, 0.2-0.3 us on two cores).
-- IPC_BENCH_RUNS / IPC_BENCH_SECONDS change the rounds (5) and the
-- seconds per run (0.25).
local shm = require "shm"
local channel = require "shm.channel"

local B = arg[1] or os.getenv("SHMLUA_BUILD") or "build"
local here = (arg[0] or ""):match("^(.*)/[^/]*$") or "."
local PEER = here .. "/ipc/peer.lua"
local EXE = shm.exepath()
local RUNS = tonumber(os.getenv("IPC_BENCH_RUNS") or "") or 5
local SECONDS = tonumber(os.getenv("IPC_BENCH_SECONDS") or "") or 0.25
local SIZE, CHA, CHB, RING = 1 << 20, 4096, 4096 + (1 << 18), 1 << 16  -- as in peer.lua

local function say(fmt, ...) io.write(fmt:format(...)) io.flush() end

-- ---- which CPUs
local function online_cpus()
  local f = io.popen("taskset -pc $$ 2>/dev/null")
  local out = f and f:read("a") or ""
  if f then f:close() end
  local list = out:match("list:%s*(%S+)")
  local cpus = {}
  for part in (list or ""):gmatch("[^,]+") do
    local a, b = part:match("^(%d+)%-(%d+)$")
    if a then for c = tonumber(a), tonumber(b) do cpus[#cpus + 1] = c end
    elseif tonumber(part) then cpus[#cpus + 1] = tonumber(part) end
  end
  return cpus
end
local cpus = online_cpus()
if #cpus == 0 then
  print("ipc_bench: taskset is missing or failed; cannot pin processes, skipped")
  return
end
local CPU_A, CPU_B = cpus[1], cpus[2]
local PLACES = { { "cross", CPU_A, CPU_B }, { "same", CPU_A, CPU_A } }
if not CPU_B then
  PLACES = { PLACES[2] }
  print("ipc_bench: one CPU available: same-core placement only")
end

-- ---- the C baselines
local function c_baseline(mode, place)
  local exe = B .. "/bench/pingpong"
  if not io.open(exe) then os.execute("make -s " .. exe .. " >/dev/null 2>&1") end
  local cmd = ("%s -m %s -p %s -c %d,%d -r %d -t %g 2>&1")
              :format(exe, mode, place, CPU_A, CPU_B or CPU_A, 1, SECONDS)
  local f = assert(io.popen(cmd))
  local out = f:read("a")
  f:close()
  local ns = out:match("median%s+([%d.]+) ns")
  local lo = out:match("min ([%d.]+)")
  local limited = out:find("time%-limited") ~= nil
  return tonumber(ns), limited, tonumber(lo)
end

-- ---- the C prototype of a channel (bench/ipc/chanproto.c), built here
local CHANPROTO = B .. "/bench/chanproto.so"
do
  local cmd = ("mkdir -p %q && ${CC:-cc} -std=gnu99 -O2 -fPIC -shared $(pkg-config --cflags lua5.4) "
               .. "-o %q %q 2>&1"):format(B .. "/bench", CHANPROTO, here .. "/ipc/chanproto.c")
  if not os.execute(cmd) then
    print("ipc_bench: could not build " .. CHANPROTO .. "; its rows are skipped")
    CHANPROTO = nil
  end
end

-- ---- the shmlua cells: two pinned bench/ipc/peer.lua processes
local function slurp(fd)
  local parts = {}
  while true do
    local ready = shm.poll_fd(fd, "r", 5)
    if not ready or ready == "" then break end
    local s = shm.read_fd(fd)
    if not s or s == "" then break end
    parts[#parts + 1] = s
  end
  shm.close(fd)
  return table.concat(parts)
end

-- Runs `mode` with roles (measurer, other) on CPUs a and b; returns the
-- measurer's line of results (nil and a message on failure).
local function cell(mode, roles, a, b)
  local fd = assert(shm.memfd_create("ipc_bench", 0))
  assert(shm.ftruncate(fd, SIZE))
  do
    local m <close> = assert(shm.mmap(nil, SIZE, shm.PROT_READ | shm.PROT_WRITE,
                                      shm.MAP_SHARED, fd, 0))
    local fixed = roles[1] == "recv" and 64 or 0   -- throughput: 64-byte messages
    channel.new(m, CHA, RING, fixed)
    channel.new(m, CHB, RING, fixed)
  end
  local s1, s2 = assert(shm.socketpair())
  local procs = {}
  -- the other side first, then the measurer
  for i, spec in ipairs { { roles[2], b, s2 }, { roles[1], a, s1 } } do
    local pid, pipes = assert(shm.spawn(
      { "taskset", "-c", tostring(spec[2]), EXE, PEER, mode, spec[1], "1",
        tostring(SECONDS), CHANPROTO or "" },
      { fds = { [3] = fd, [4] = spec[3] }, stdout = "pipe", stderr = "pipe" }))
    procs[i] = { pid = pid, out = pipes.stdout, err = pipes.stderr }
  end
  shm.close(s1)
  shm.close(s2)
  shm.close(fd)
  local limit = 60 + SECONDS * 4
  local result, problem
  for i = 2, 1, -1 do
    local p = procs[i]
    local how, code = shm.wait(p.pid, i == 2 and limit or 20)
    if not how then
      shm.kill(p.pid, shm.SIGKILL)
      shm.wait(p.pid, 5)
      problem = problem or ("%s %s did not finish"):format(mode, roles[3 - i])
    elseif how ~= "exited" or code ~= 0 then
      problem = problem or ("%s side %d %s %s"):format(mode, i, how, code)
    end
    local out, err = slurp(p.out), slurp(p.err)
    if i == 2 then result = out:match("^(%a+ [^\n]*)") end
    if err ~= "" then problem = problem or err end
  end
  if problem then return nil, problem end
  return result
end

local function rt_cell(mode, place)
  local line, err = cell(mode, { "ping", "echo" }, place[2], place[3])
  if not line then return nil, err end
  local med, lo, hi, fewest = line:match("^rt (%S+) (%S+) (%S+) (%S+)")
  return tonumber(med), tonumber(fewest), tonumber(lo), tonumber(hi)
end

local function tp_cell(mode, place)
  local line, err = cell(mode, { "recv", "send" }, place[3], place[2])
  if not line then return nil, err end
  local med, lo, hi = line:match("^tp (%S+) (%S+) (%S+)")
  return tonumber(med), tonumber(lo), tonumber(hi)
end

-- ---- measure, in rounds: each round runs every cell once (one run of up
-- to SECONDS), so that a cell and its baseline are measured seconds apart
-- and a machine that changes speed over the minute (these VMs do, by up to
-- 2x) moves both.  Cells keep their runs; ratios are taken per round.
local t_start = shm.clock()
say("ipc_bench: CPUs %s; %d rounds, every cell a run of up to %.2f s per round; "
    .. "medians over the rounds\n", table.concat(cpus, ","), RUNS, SECONDS)

local rows = {
  { key = "cspin", label = "C spin", c = "spin" },
  { key = "cfutex", label = "C futex", c = "futex" },
  { key = "chybrid", label = "C hybrid (spin, then futex)", c = "hybrid" },
  { key = "spin", label = "shmlua spin (atomic_ref load loop)", lua = "spin" },
  { key = "spin_name", label = "shmlua spin by name (atomic_load loop)", lua = "spin_name" },
  { key = "spin_raw", label = "Lua spin, unchecked load32/store32 (chanproto.c)",
    lua = "spin_raw", proto = true },
  { key = "futex", label = "shmlua futex (atomic_ref futex_wait/notify)", lua = "futex" },
  { key = "futex_name", label = "shmlua futex by name (futex_wait/notify)",
    lua = "futex_name" },
  { key = "wait", label = "shmlua adaptive wait (wait_change/notify)", lua = "wait" },
  { key = "channel", label = "shmlua channel (adaptive)", lua = "channel" },
  { key = "socket", label = "shmlua socketpair", lua = "socket" },
  { key = "cchannel", label = "C-prototype channel (chanproto.c)", lua = "cchannel",
    proto = true },
  { key = "cchannel_len", label = "C-prototype channel, recv makes no string",
    lua = "cchannel_len", proto = true },
}
local TP = {
  { key = "chan1", label = "channel send/recv" },
  { key = "chanb", label = "channel send_batch/recv_batch (64)" },
  { key = "cchan1", label = "C-prototype channel send/recv" },
  { key = "cchanb", label = "C-prototype send_batch/recv_batch" },
  { key = "sock1", label = "socketpair, one write per message" },
  { key = "sockb", label = "socketpair, 64 messages per write" },
}
local tplace = PLACES[1]

-- The machine's steal time: the share of its CPUs' time that the host of
-- this VM gave to something else (/proc/stat, field 8 of the "cpu" line);
-- nil where there is no such field.  Slow rounds on these VMs come with it.
local function cpu_ticks()
  local f = io.open("/proc/stat")
  local line = f and f:read("l")
  if f then f:close() end
  local t = {}
  for x in (line or ""):gmatch("%d+") do t[#t + 1] = tonumber(x) end
  if #t < 8 then return nil end
  local total = 0
  for i = 1, 8 do total = total + t[i] end  -- user .. steal (guest is in user)
  return total, t[8]
end
local steal = {}                            -- [round] = percent

-- R[key][place] = { runs = { [round] = ns }, note }; T[key] = { [round] = msgs/s }
local R, T = {}, {}
for _, row in ipairs(rows) do
  R[row.key] = {}
  for _, place in ipairs(PLACES) do R[row.key][place[1]] = { runs = {} } end
end
for _, row in ipairs(TP) do T[row.key] = {} end

for round = 1, RUNS do
  local total0, steal0 = cpu_ticks()
  for _, row in ipairs(rows) do
    for _, place in ipairs(PLACES) do
      local c = R[row.key][place[1]]
      if row.proto and not CHANPROTO then
        c.note = "not built"
      elseif not (c.note and c.note:match("^failed")) then
        local ns, x
        if row.c then
          ns, x = c_baseline(row.c, place[1])
          if x then c.note = "time-limited" end
        else
          ns, x = rt_cell(row.lua, place)
          if not ns then c.note = "failed: " .. tostring(x)
          elseif x < 2000 then c.note = ("time-limited, >= %d round trips a run"):format(x) end
        end
        c.runs[round] = ns
      end
    end
  end
  for _, row in ipairs(TP) do
    if row.key:match("^cchan") and not CHANPROTO then
      row.err = "not built"
    elseif not row.err then
      local rate, err = tp_cell(row.key, tplace)
      if rate then T[row.key][round] = rate else row.err = err end
    end
  end
  local total1, steal1 = cpu_ticks()
  if total0 and total1 > total0 then
    steal[round] = 100 * (steal1 - steal0) / (total1 - total0)
  end
end

local function median(list)
  local s = {}
  for _, x in pairs(list) do s[#s + 1] = x end
  if #s == 0 then return nil end
  table.sort(s)
  local n = #s
  return n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2, s[1], s[n]
end
for _, row in ipairs(rows) do
  for _, place in ipairs(PLACES) do
    local c = R[row.key][place[1]]
    c.ns, c.best = median(c.runs)
  end
end
for _, row in ipairs(TP) do
  row.rate, row.lo, row.hi = median(T[row.key])
  if not row.rate then row.lo = row.err end
end

-- ---- print
local function us(x)
  if not x then return "-" end
  if x >= 1e6 then return ("%.2f ms"):format(x / 1e6) end
  return ("%.2f us"):format(x / 1e3)
end

if #steal > 0 then
  local parts = {}
  for round = 1, #steal do parts[round] = ("%.0f%%"):format(steal[round]) end
  say("steal time per round (CPU time the VM's host gave to others): %s\n",
      table.concat(parts, " "))
end
-- The C spin round trip across the CPUs also tells where the host put the
-- two vCPUs: about 0.03 us means the two logical CPUs of one physical core
-- (SMT siblings, sharing its caches and its pipeline), 0.2-0.3 us two
-- cores.  The host moves them now and then, within seconds.
if PLACES[1][1] == "cross" then
  local parts = {}
  for round = 1, RUNS do
    local ns = R.cspin.cross.runs[round]
    parts[round] = ns and ("%.2f"):format(ns / 1e3) or "-"
  end
  say("C spin cross-core per round, us (about 0.03: the vCPUs ran on SMT siblings "
      .. "of one core): %s\n", table.concat(parts, " "))
end

say("\n== round trip between two processes (median over the rounds of a run's mean)\n")
say("%-50s", "")
for _, place in ipairs(PLACES) do
  say(" %16s", place[1] == "cross" and ("cross-core %d,%d"):format(place[2], place[3])
                                   or ("same-core %d"):format(place[2]))
end
say("\n")
local notes = {}
for _, row in ipairs(rows) do
  say("%-50s", row.label)
  for _, place in ipairs(PLACES) do
    local c = R[row.key][place[1]]
    local mark = ""
    if c.note then
      notes[#notes + 1] = ("%s, %s: %s"):format(row.label, place[1], c.note)
      mark = ("[%d]"):format(#notes)
    end
    say(" %16s", us(c.ns) .. mark)
  end
  say("\n")
end
for i, n in ipairs(notes) do say("  [%d] %s\n", i, n) end

local function ratio(a, b) return a and b and b > 0 and a / b or nil end
local function best(a, b) if not a then return b end if not b then return a end return math.min(a, b) end
local misses = {}
local checks = {
  { "shmlua spin / C spin", 2.5, "spin", "cspin" },
  { "shmlua futex / C futex", 1.2, "futex", "cfutex" },
  { "shmlua spin by name / C spin", nil, "spin_name", "cspin" },
  { "shmlua futex by name / C futex", nil, "futex_name", "cfutex" },
  { "Lua spin, unchecked / C spin", nil, "spin_raw", "cspin" },
  { "channel / better of shmlua spin, futex", 1.5, "channel", "lua" },
  { "adaptive wait / better of shmlua spin, futex", nil, "wait", "lua" },
  { "channel / adaptive wait", nil, "channel", "wait" },
  { "channel / C hybrid", nil, "channel", "chybrid" },
  { "socketpair / channel", nil, "socket", "channel" },
  { "C-prototype channel / better of spin, futex", nil, "cchannel", "lua" },
  { "C-prototype, recv makes no string / with", nil, "cchannel_len", "cchannel" },
}
-- A check's figure per round: numerator and denominator from the same
-- round (the denominator "lua": the better of shmlua spin and futex).
local function round_ratio(chk, p, round)
  local den
  if chk[4] == "lua" then den = best(R.spin[p].runs[round], R.futex[p].runs[round])
  else den = R[chk[4]][p].runs[round] end
  return ratio(R[chk[3]][p].runs[round], den)
end
-- What counts is the median of the per-round ratios (drift in the machine's
-- speed cancels within a round); the ratio of the medians is shown too.
for _, which in ipairs { "rounds", "medians" } do
  say("\n== %s (target)\n", which == "rounds" and "median of the per-round ratios"
                                                or "ratios of the medians")
  for _, chk in ipairs(checks) do
    say("%-50s", chk[1] .. (chk[2] and (" (<= %.1f)"):format(chk[2]) or ""))
    for _, place in ipairs(PLACES) do
      local p = place[1]
      local r
      if which == "rounds" then
        local per = {}
        for round = 1, RUNS do per[#per + 1] = round_ratio(chk, p, round) end
        r = median(per)
      else
        local den = chk[4] == "lua" and best(R.spin[p].ns, R.futex[p].ns) or R[chk[4]][p].ns
        r = ratio(R[chk[3]][p].ns, den)
      end
      local verdict = ""
      if chk[2] and r then
        verdict = r <= chk[2] and " ok" or " MISS"
        if r > chk[2] and which == "rounds" then
          misses[#misses + 1] = ("%s, %s: %.2f"):format(chk[1], p, r)
        end
      end
      say(" %16s", r and ("%.2f%s"):format(r, verdict) or "-")
    end
    say("\n")
  end
end

say("\n== throughput, 64-byte messages one direction, %s (median msgs/s)\n",
    tplace[1] == "cross" and ("cross-core %d,%d"):format(tplace[2], tplace[3]) or "same-core")
local base = TP[5].rate
for _, row in ipairs(TP) do
  if row.rate then
    say("%-50s %12.0f  (runs %.0f .. %.0f)  %6.2fx socketpair\n", row.label, row.rate,
        row.lo, row.hi, ratio(row.rate, base) or 0)
  else
    say("%-50s -   (%s)\n", row.label, tostring(row.lo))
  end
end
for _, k in ipairs { 1, 2 } do
  local per = {}
  for round = 1, RUNS do
    per[#per + 1] = ratio(T[TP[k].key][round], T.sock1[round])
  end
  local r = median(per)
  local ok = r and r >= 10
  say("%-50s %s\n", TP[k].label .. " / socketpair, median per round (>= 10)",
      r and ("%.2f%s"):format(r, ok and " ok" or " MISS") or "-")
  if r and not ok then misses[#misses + 1] = ("%s / socketpair: %.2f"):format(TP[k].label, r) end
end
-- how many rounds ran on a VM that was not calm: steal time of 5% or more,
-- or the two vCPUs on SMT siblings of one core (C spin across them under
-- 0.1 us); the cross-core figures of those rounds say more about the host
local busy, siblings = 0, 0
for round = 1, RUNS do
  if (steal[round] or 0) >= 5 then busy = busy + 1 end
  local ns = PLACES[1][1] == "cross" and R.cspin.cross.runs[round]
  if ns and ns < 100 then siblings = siblings + 1 end
end
say("\n%s; ipc_bench took %.0f s\n",
    #misses == 0 and "all targets hold" or ("targets missed: " .. table.concat(misses, "; ")),
    (shm.clock() - t_start) / 1e9)
if busy + siblings > 0 then
  say("the VM was not calm: %d of %d rounds had 5%% or more steal time, %d ran "
      .. "on SMT siblings\n", busy, RUNS, siblings)
end
