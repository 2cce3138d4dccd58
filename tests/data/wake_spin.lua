-- tests/data/wake_spin.lua: run by atomic_spec.lua as
--   taskset -c A shmlua tests/data/wake_spin.lua B
-- A request/reply exchange across two CPUs (this process on A, a child on
-- B) in which the child always sleeps (futex_wait) until a request wakes
-- it, works 30 us, and answers.  After waking the child, this process
-- waits for the answer with wait_change: src/atomic.c then spins up to
-- LONG_SPIN_NS (50 us) instead of its usual budget, so that it is still
-- awake when the answer comes.  Prints one line:
--   "eligible E slept S"
-- E: the rounds whose request did wake the child and whose answer came
-- within 40 us of the request; S: those of them in which this process
-- fell asleep all the same (the child's notify had to wake it).
local shm = require "shm"
local D = [[struct WakeSpin { uint32_t word; uint32_t waiters; uint64_t replied;
                              uint8_t woke[400]; };]]
shm.cdef(D)
local N = 400
local fd = assert(shm.memfd_create("wake_spin", 0))
assert(shm.ftruncate(fd, 4096))
local m = assert(shm.mmap(nil, 4096, shm.PROT_READ | shm.PROT_WRITE, shm.MAP_SHARED, fd, 0))
local v = shm.view(m, "struct WakeSpin")
local pid = assert(shm.spawn({ "taskset", "-c", arg[1], shm.exepath(), "-e", ([==[
  local shm = require "shm"
  shm.cdef(%q)
  local m = assert(shm.mmap(nil, 4096, shm.PROT_READ | shm.PROT_WRITE, shm.MAP_SHARED, 3, 0))
  local v = shm.view(m, "struct WakeSpin")
  local seq, limit = 0, shm.clock() + 60e9
  while true do
    local x = shm.atomic_load(v, "word")
    while x == seq do
      assert(shm.clock() < limit, "no request for 60 s")
      shm.futex_wait(v, "word", seq, 1)
      x = shm.atomic_load(v, "word")
    end
    if x == 0xffffffff then break end
    local t = shm.clock() + 30000
    while shm.clock() < t do end          -- 30 us of work
    seq = x + 1
    v.replied = shm.clock()
    v.woke[x // 2] = shm.notify(v, "word", seq, "waiters")
  end
]==]):format(D) }, { fds = { [3] = fd } }))

local seq, rounds = 0, {}
for i = 0, N - 1 do
  local t = shm.clock() + 50000
  while shm.clock() < t do end            -- let the child fall asleep
  local t0 = shm.clock()
  local w = assert(shm.notify(v, "word", seq + 1))
  seq = assert(shm.wait_change(v, "word", seq + 1, 10, "waiters"))
  rounds[i] = { woke = w, latency = v.replied - t0 }
end
shm.notify(v, "word", 0xffffffff)
assert(shm.wait(pid, 10) == "exited")
local eligible, slept = 0, 0
for i = 0, N - 1 do
  if rounds[i].woke > 0 and rounds[i].latency < 40000 then
    eligible = eligible + 1
    if v.woke[i] > 0 then slept = slept + 1 end
  end
end
print(("eligible %d slept %d"):format(eligible, slept))
