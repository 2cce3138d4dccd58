-- bench/bulk.lua BULK_BINARY: m:write and m:read of 64 MiB through a memfd
-- mapping whose pages exist, next to C memcpy on the same kind of mapping
-- (the program bench/bulk.c, run in the same invocation).  Prints medians.
local shm = require "shm"
local cbin = assert(arg[1], "usage: bulk.lua path/to/bulk")
local MiB, reps = 64, 15
local size = MiB << 20

local fd = assert(shm.memfd_create("bulk"))
assert(shm.ftruncate(fd, size))
local m <close> = assert(shm.mmap(nil, size, shm.PROT_READ | shm.PROT_WRITE, shm.MAP_SHARED, fd, 0))
shm.close(fd)
m:fill(0, size, 0)
local src = string.rep("x", size)

local function median(t) table.sort(t) return t[(#t + 1) // 2] end
local now = shm.clock and function() return shm.clock() / 1e9 end or os.clock

local wr, rd = {}, {}
for i = 1, reps do
  local t = now()
  m:write(0, src)
  wr[i] = size / (now() - t) / 1e9
  t = now()
  local s = m:read(0, size)
  rd[i] = size / (now() - t) / 1e9
  assert(#s == size)
  s = nil
end
local p = assert(io.popen(("%q %d %d"):format(cbin, MiB, reps)))
local cw, cr = p:read("n", "n")
p:close()
local lw, lr = median(wr), median(rd)
print(("%-28s %10s %10s %8s"):format("bulk copy, 64 MiB", "shmlua", "C memcpy", "ratio"))
print(("%-28s %7.2f GB/s %7.2f GB/s %7.2f"):format("m:write (Lua string -> map)", lw, cw, lw / cw))
print(("%-28s %7.2f GB/s %7.2f GB/s %7.2f"):format("m:read  (map -> Lua string)", lr, cr, lr / cr))
