-- scripts/crash_recovery.lua: a peer dies mid-protocol; the survivor
-- notices without hanging and recovers.  Two stories, each with a peer
-- that is this script again, given the memfd as descriptor 3:
--
-- 1. Robust mutex.  Two accounts in shared memory hold 1000 between them;
--    both processes move money under a process-shared robust mutex, the
--    mover writing an undo record (the old balances, pending = 1) before
--    touching them.  The peer kills itself (SIGKILL) half-way through a move,
--    holding the lock.  The survivor's next mutex_lock returns
--    "owner_died": it rolls back the half-done move from the undo record,
--    calls mutex_consistent, unlocks, and the invariant holds again.
--
-- 2. A channel producer killed while the consumer waits in recv.  The
--    consumer waits in short slices and watches a pidfd of the producer;
--    when that reports the exit it drains what the producer had published
--    (a message is sent once head is published), reaps it (killed by
--    signal 9) and starts a new producer from the next sequence number.
--    Every message 1..N arrives exactly once, in order.
--
-- usage: shmlua scripts/crash_recovery.lua
-- Exits 0 when both recoveries worked; every wait is bounded (10 s).
local shm = require "shm"
local channel = require "shm.channel"

shm.cdef [[
struct bank {
  pthread_mutex_t mu;
  int64_t a, b;          /* the invariant: a + b == 1000                 */
  int64_t undo_a, undo_b;/* undo record: the balances before the move   */
  uint32_t pending;      /* 1 while a move is under way                  */
  uint32_t moves;        /* the locker's moves completed                 */
};
]]

local BANK, CH, CAP = 0, 4096, 1024
local SIZE = CH + channel.size(CAP)
local T = 10
local CRASH_AT = 100         -- the locker dies during its move number 100
local TOTAL, DIE_AFTER = 3000, 1234

local function fail(fmt, ...)
  io.stderr:write("crash_recovery: ", fmt:format(...), "\n")
  os.exit(1)
end

local function map(fd)
  return assert(shm.mmap(nil, SIZE, shm.PROT_READ | shm.PROT_WRITE, shm.MAP_SHARED, fd, 0))
end

local function crash() shm.kill(shm.getpid(), shm.SIGKILL) end

-- ---- peers
if arg[1] == "--locker" then
  local bank = shm.view(map(3), "struct bank", BANK)
  for i = 1, CRASH_AT do
    assert(shm.mutex_lock(bank, "mu", T) == true)
    bank.undo_a, bank.undo_b, bank.pending = bank.a, bank.b, 1  -- undo record first
    local amount = bank.a >= bank.b and 7 or -7                -- from the richer one
    bank.a = bank.a - amount
    if i == CRASH_AT then crash() end       -- dies holding the lock, half-way
    bank.b = bank.b + amount
    bank.pending, bank.moves = 0, bank.moves + 1
    assert(shm.mutex_unlock(bank, "mu"))
  end
  os.exit(3)                                -- not reached
elseif arg[1] == "--producer" then
  local tx = channel.attach(map(3), CH)
  local first, last = tonumber(arg[2]), tonumber(arg[3])
  for i = first, last do
    assert(tx:send(tostring(i), T))
    if i == DIE_AFTER then crash() end      -- dies with the ring part full
  end
  tx:close()
  os.exit(0)
end

local interp = arg[-1] or shm.exepath()
local fd = assert(shm.memfd_create("crash_recovery", 0))
assert(shm.ftruncate(fd, SIZE))
local m <close> = map(fd)

local function spawn(...)
  return assert(shm.spawn({ interp, arg[0], ... }, { fds = { [3] = fd } }))
end

-- Reaps pid (bounded); returns how and the code or signal.
local function reap(pid)
  local how, code = shm.wait(pid, T)
  if not how then
    shm.kill(pid, shm.SIGKILL)
    shm.wait(pid, T)
    fail("peer %d still running after %d s", pid, T)
  end
  return how, code
end

-- ---- 1. the robust mutex
do
  local bank = shm.view(m, "struct bank", BANK)
  assert(shm.mutex_init(bank, "mu"))
  bank.a, bank.b = 1000, 0
  local pid = spawn("--locker")
  local mine, deadline = 0, shm.clock() + T * 1e9
  while true do
    local r, err = shm.mutex_lock(bank, "mu", T)
    if not r then fail("mutex_lock: %s", err) end
    if r == "owner_died" then
      print(("survivor: mutex_lock says owner_died: the peer died holding the lock "
             .. "(a=%d b=%d, a + b = %d, pending=%d)"):format(bank.a, bank.b, bank.a + bank.b,
                                                               bank.pending))
      if bank.pending == 1 then          -- roll the half-done move back
        bank.a, bank.b, bank.pending = bank.undo_a, bank.undo_b, 0
        print(("survivor: rolled back the half-done move: a=%d b=%d"):format(bank.a, bank.b))
      end
      assert(shm.mutex_consistent(bank, "mu"))
      assert(shm.mutex_unlock(bank, "mu"))
      break
    end
    -- a live peer never leaves a move half done outside the lock
    if bank.a + bank.b ~= 1000 or bank.pending ~= 0 then
      fail("invariant broken under the lock: a=%d b=%d", bank.a, bank.b)
    end
    if bank.b > bank.a then                   -- the survivor's own move:
      bank.b, bank.a = bank.b - 1, bank.a + 1 -- 1 from the richer account
    else
      bank.a, bank.b = bank.a - 1, bank.b + 1
    end
    mine = mine + 1
    assert(shm.mutex_unlock(bank, "mu"))
    if shm.clock() > deadline then fail("the peer never crashed") end
  end
  local how, sig = reap(pid)
  if how ~= "signaled" or sig ~= shm.SIGKILL then fail("the locker %s %s", how, sig) end
  -- the mutex is usable again, and the books balance
  assert(shm.mutex_lock(bank, "mu", T) == true, "the mutex did not recover")
  local a, b, moves = bank.a, bank.b, bank.moves
  assert(shm.mutex_unlock(bank, "mu"))
  if a + b ~= 1000 then fail("after recovery a=%d b=%d", a, b) end
  print(("survivor: the locker was killed by signal %d after %d moves; I made %d; "
         .. "a + b = %d again, the mutex works"):format(sig, moves, mine, a + b))
end

-- ---- 2. a producer killed while the consumer waits
do
  local rx = channel.new(m, CH, CAP)
  local pid = spawn("--producer", 1, TOTAL)
  local pidfd = assert(shm.pidfd_open(pid))
  local expect, restarts = 1, 0
  while true do
    local msg, err, code = rx:recv(0.05)
    if msg then
      if tonumber(msg) ~= expect then fail("expected %d, got %s", expect, msg) end
      expect = expect + 1
    elseif code == shm.EPIPE then
      break
    elseif code ~= shm.ETIMEDOUT then
      fail("recv: %s", err)
    elseif shm.poll_fd(pidfd, "r", 0):find("r") then
      -- the producer is gone: take what it published, then replace it
      local drained = 0
      while true do
        local left = rx:try_recv()
        if not left then break end
        if tonumber(left) ~= expect then fail("expected %d, got %s", expect, left) end
        expect, drained = expect + 1, drained + 1
      end
      local how, sig = reap(pid)
      shm.close(pidfd)
      print(("survivor: the producer exited (%s %d) while I waited in recv; "
             .. "%d more published messages drained; restarting it at %d")
            :format(how, sig, drained, expect))
      if restarts > 0 then fail("the second producer died too") end
      restarts = restarts + 1
      pid = spawn("--producer", expect, TOTAL)
      pidfd = assert(shm.pidfd_open(pid))
    end
  end
  local how, code = reap(pid)
  shm.close(pidfd)
  if how ~= "exited" or code ~= 0 then fail("the second producer %s %s", how, code) end
  if expect - 1 ~= TOTAL then fail("received %d messages, expected %d", expect - 1, TOTAL) end
  print(("survivor: all %d messages arrived exactly once, in order, across %d producer(s)")
        :format(TOTAL, restarts + 1))
end
shm.close(fd)
