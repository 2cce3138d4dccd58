-- bench/view_luajit.lua: the LuaJIT FFI baseline of bench/view_bench.lua.
-- Run as `luajit -joff bench/view_luajit.lua [N [REPS]]` (the interpreter,
-- as PUC Lua is).  The same struct, over an mmap'd page, the same loops.
-- Prints "name ns" lines: medians of REPS runs, ns per loop iteration.
local ffi = require "ffi"
ffi.cdef [[
struct S { uint64_t a; double d; int32_t i; };
void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset);
]]
local N = tonumber(arg[1]) or 2000000
local REPS = tonumber(arg[2]) or 7
local PROT_RW, MAP_SHARED_ANON = 3, 0x01 + 0x20
local p = ffi.C.mmap(nil, 4096, PROT_RW, MAP_SHARED_ANON, -1, 0)
assert(ffi.cast("intptr_t", p) ~= -1, "mmap failed")
local x = ffi.cast("struct S *", p)

local loops = {
  { "uint64_t rw", function(n) for _ = 1, n do x.a = x.a + 1 end end },
  { "double rw", function(n) for _ = 1, n do x.d = x.d + 1 end end },
  { "int32_t rw", function(n) for _ = 1, n do x.i = x.i + 1 end end },
}
for _, l in ipairs(loops) do
  local t = {}
  for r = 1, REPS do
    local c = os.clock()
    l[2](N)
    t[r] = (os.clock() - c) / N * 1e9
  end
  table.sort(t)
  print(("%s %.1f"):format(l[1], t[math.floor((#t + 1) / 2)]))
end
