-- bench/view_bench.lua [BUILD_DIR [N [REPS]]]: the cost of a view field
-- access, the project's hot path.
--
-- Loops of `x.f = x.f + 1` (one __index and one __newindex per iteration,
-- loop included) and of reads alone, for a uint64_t, a double and an int32_t
-- field, through:
--   table   a plain Lua table (no metamethod at all)
--   noop    a userdata whose C __index pushes 0 and __newindex does nothing
--           (bench/noop.c, built here): the floor of any metamethod design
--   floor   a userdata making only the Lua API calls a safe view must make
--           (bench/noop.c): touserdata, rawlen, tolstring, push/tointegerx
--   view    shm.view over a shared memfd mapping
-- and, when installed, LuaJIT FFI with the JIT off (bench/view_luajit.lua)
-- and Python ctypes over mmap (bench/view_ctypes.py), run as subprocesses.
-- Prints medians of REPS runs in ns per iteration and the ratio view/noop
-- (target: at most 1.5) measured in the same run, and the ratio of the best
-- runs, which a busy machine disturbs least.
local shm = require "shm"

local B = arg[1] or os.getenv("SHMLUA_BUILD") or "build"
local N = tonumber(arg[2]) or 300000
local REPS = tonumber(arg[3]) or 31
local here = (arg[0] or ""):match("^(.*)/[^/]*$") or "."

-- bench/noop.c -> B/noop.so with the flags of the module's build
local function build_noop()
  local so = B .. "/noop.so"
  local cmd = ("${CC:-cc} -std=c99 -O2 -g -fPIC -shared $(pkg-config --cflags lua5.4) " ..
               "-o %q %q"):format(so, here .. "/noop.c")
  assert(os.execute(cmd), "could not build " .. so)
  return assert(package.loadlib(so, "luaopen_noop"))()
end
local noop_new, floor_new = build_noop()

shm.cdef [[ struct BenchS { uint64_t a; double d; int32_t i; }; ]]
local fd = assert(shm.memfd_create("view_bench"))
assert(shm.ftruncate(fd, 4096))
local m <close> = assert(shm.mmap(nil, 4096, shm.PROT_READ | shm.PROT_WRITE, shm.MAP_SHARED, fd, 0))
shm.close(fd)

local subjects = {
  { "table", { a = 0, d = 0.0, i = 0 } },
  { "noop", noop_new() },
  { "floor", floor_new() },
  { "view", shm.view(m, "struct BenchS") },
}

-- one function per field and kind of loop, so every key is a constant
local loops = {
  { "uint64_t rw", function(x, n) for _ = 1, n do x.a = x.a + 1 end end },
  { "double rw",   function(x, n) for _ = 1, n do x.d = x.d + 1 end end },
  { "int32_t rw",  function(x, n) for _ = 1, n do x.i = x.i + 1 end end },
  { "uint64_t r",  function(x, n) local s = 0 for _ = 1, n do s = x.a end return s end },
  { "double r",    function(x, n) local s = 0 for _ = 1, n do s = x.d end return s end },
  { "int32_t r",   function(x, n) local s = 0 for _ = 1, n do s = x.i end return s end },
}

local function median(t) table.sort(t) return t[(#t + 1) // 2] end

-- ns per iteration of f(x, N), once
local function time1(f, x)
  local c = os.clock()
  f(x, N)
  return (os.clock() - c) / N * 1e9
end

-- medians over REPS rounds; each round times every subject in turn, so that
-- the load of a shared machine falls on all of them alike
local function measure_all(f)
  local t = {}
  for _, s in ipairs(subjects) do
    t[s[1]] = {}
    f(s[2], N // 10)                 -- warm up
  end
  for r = 1, REPS do
    for _, s in ipairs(subjects) do t[s[1]][r] = time1(f, s[2]) end
  end
  local res, best = {}, {}
  for k, v in pairs(t) do
    res[k] = median(v)
    best[k] = math.min(table.unpack(v))
  end
  return res, best
end

-- the subprocess baselines print "name ns" lines
local function external(cmd)
  local res = {}
  local p = io.popen(cmd .. " 2>/dev/null")
  if not p then return res end
  for line in p:lines() do
    local name, ns = line:match("^(.-) ([%d.]+)$")
    if name then res[name] = tonumber(ns) end
  end
  p:close()
  return res
end
local function have(prog) return os.execute("command -v " .. prog .. " >/dev/null 2>&1") end
local luajit = have("luajit") and external(("luajit -joff %q %d %d"):format(here .. "/view_luajit.lua", N, REPS)) or {}
local ctypes = have("python3") and external(("python3 %q %d %d"):format(here .. "/view_ctypes.py", N // 2, REPS)) or {}

local function cell(x) return x and ("%8.1f"):format(x) or "       -" end
print(("ns per iteration, median of %d runs of %d iterations (loop included)"):format(REPS, N))
print(("%-12s %8s %8s %8s %8s %8s %8s %10s %10s"):format("loop", "table", "noop", "floor", "view",
      "luajit", "ctypes", "view/noop", "(best)"))
local worst, worst_best = 0, 0
for _, l in ipairs(loops) do
  local r, b = measure_all(l[2])
  local ratio, rbest = r.view / r.noop, b.view / b.noop
  if l[1]:match("rw$") then
    worst = math.max(worst, ratio)
    worst_best = math.max(worst_best, rbest)
  end
  print(("%-12s %s %s %s %s %s %s %10.2f %10.2f"):format(l[1], cell(r.table), cell(r.noop),
        cell(r.floor), cell(r.view),
        cell(luajit[l[1]]), cell(ctypes[l[1]]), ratio, rbest))
end
print(("worst view/noop on read+write loops: %.2f of medians, %.2f of best runs (target <= 1.5)")
      :format(worst, worst_best))
