-- scripts/pingpong.lua: two processes bounce a counter back and forth.
--
--   channel  through two shm.channel rings (lua/shm/channel.lua): the host
--            sends n, the peer answers n + 1, the host sends that + 1 ...
--   futex    through one 32-bit word: each side stores the next value and
--            futex_wakes, then futex_waits for the other's answer
--
-- The peer is this same script run by the same interpreter with the memfd
-- as its descriptor 3.  Prints the mean round-trip time of each mode and
-- checks the counter ends at 2N.
--
-- usage: shmlua scripts/pingpong.lua [N [channel|futex|both]]   (N: 20000)
-- Exits non-zero on a wrong counter, or when the peer does not answer
-- within 10 seconds (every wait here is bounded).
local shm = require "shm"
local channel = require "shm.channel"

shm.cdef "struct pingpong_word { uint32_t value; uint32_t pad[15]; };"

local CH1, CH2, WORD, SIZE = 0, 8192, 16384, 16384 + 64
local STOP = 0xFFFFFFFF
local T = 10                     -- seconds any one wait may take

local function fail(fmt, ...)
  io.stderr:write("pingpong: ", fmt:format(...), "\n")
  os.exit(1)
end

-- ---- the peer: answers every value with the next one
if arg[1] == "--peer" then
  local m = assert(shm.mmap(nil, SIZE, shm.PROT_READ | shm.PROT_WRITE, shm.MAP_SHARED, 3, 0))
  if arg[2] == "channel" then
    local rx, tx = channel.attach(m, CH1), channel.attach(m, CH2)
    while true do
      local msg, err, code = rx:recv(T)
      if not msg then
        if code == shm.EPIPE then break end
        fail("peer: %s", err)
      end
      assert(tx:send(tostring(tonumber(msg) + 1), T))
    end
  else
    local w = shm.view(m, "struct pingpong_word", WORD)
    local v = 0
    while true do
      while shm.atomic_load(w, "value") == v do
        local ok, err, code = shm.futex_wait(w, "value", v, T)
        if not ok and code == shm.ETIMEDOUT then fail("peer: %s", err) end
      end
      v = shm.atomic_load(w, "value")
      if v == STOP then break end
      v = v + 1
      shm.atomic_store(w, "value", v)
      shm.futex_wake(w, "value")
    end
  end
  os.exit(0)
end

-- ---- the host
local n = math.tointeger(tonumber(arg[1] or "20000"))
local modes = arg[2] or "both"
if not n or n < 1 or not (modes == "channel" or modes == "futex" or modes == "both") then
  io.stderr:write("usage: shmlua scripts/pingpong.lua [N [channel|futex|both]]\n")
  os.exit(2)
end
local interp = arg[-1] or shm.exepath()

local fd = assert(shm.memfd_create("pingpong", 0))
assert(shm.ftruncate(fd, SIZE))
local m <close> = assert(shm.mmap(nil, SIZE, shm.PROT_READ | shm.PROT_WRITE, shm.MAP_SHARED, fd, 0))

-- Runs one mode: starts the peer, times n round trips; returns seconds.
local function run(mode)
  local tx, rx, w
  if mode == "channel" then
    tx, rx = channel.new(m, CH1, 4096), channel.new(m, CH2, 4096)
  else
    w = shm.view(m, "struct pingpong_word", WORD)
    shm.atomic_store(w, "value", 0)
  end
  local pid = assert(shm.spawn({ interp, arg[0], "--peer", mode }, { fds = { [3] = fd } }))
  -- one round trip (v -> v + 2) through the mode's medium
  local function round(v)
    if mode == "channel" then
      assert(tx:send(tostring(v + 1), T))
      return tonumber(assert(rx:recv(T)))
    end
    shm.atomic_store(w, "value", v + 1)
    shm.futex_wake(w, "value")
    while shm.atomic_load(w, "value") == v + 1 do
      local ok, e, code = shm.futex_wait(w, "value", v + 1, T)
      if not ok and code == shm.ETIMEDOUT then error(e) end
    end
    return shm.atomic_load(w, "value")
  end
  local t0, t1
  local ok, err = pcall(function()
    local v = round(0)   -- untimed: the peer's start-up is not the point
    t0 = shm.clock()
    for _ = 1, n do v = round(v) end
    t1 = shm.clock()
    if v ~= 2 * (n + 1) then error(("counter is %d, expected %d"):format(v, 2 * (n + 1))) end
  end)
  if mode == "channel" then tx:close() else
    shm.atomic_store(w, "value", STOP)
    shm.futex_wake(w, "value")
  end
  local how, code = shm.wait(pid, T)
  if not how then shm.kill(pid, shm.SIGKILL) shm.wait(pid, T) end
  if not ok then fail("%s: %s", mode, tostring(err)) end
  if how ~= "exited" or code ~= 0 then fail("%s: the peer %s %s", mode, tostring(how), tostring(code)) end
  return (t1 - t0) / 1e9
end

for _, mode in ipairs(modes == "both" and { "channel", "futex" } or { modes }) do
  local dt = run(mode)
  print(("%-8s %d round trips in %.3f s: %.2f us per round trip, counter ok")
        :format(mode, n, dt, dt / n * 1e6))
end
shm.close(fd)
