-- scripts/pipeline.lua: producer -> transformer -> consumer, three
-- processes joined by two shm.channel rings in one memfd.
--
--   producer     sends the numbers 1..N as text on channel A, then closes A
--   transformer  receives each n from A, sends "n n*n" on channel B; when A
--                reports EPIPE (closed and drained) it closes B
--   consumer     (this process) receives from B until EPIPE and checks
--                that every n arrived once, in order, with its square
--
-- End of stream is the channel's close: a closed ring is drained before
-- recv reports EPIPE, so nothing in flight is lost.  Producer and
-- transformer are this script again (same interpreter), given the memfd as
-- their descriptor 3.
--
-- usage: shmlua scripts/pipeline.lua [N]     (N: 50000)
-- Exits non-zero if a result is wrong or a stage fails or stalls (every
-- wait is bounded by 10 seconds).
local shm = require "shm"
local channel = require "shm.channel"

local A, B, CAP = 0, 8192, 4096
local SIZE = B + channel.size(CAP)
local T = 10

local function fail(fmt, ...)
  io.stderr:write("pipeline: ", fmt:format(...), "\n")
  os.exit(1)
end

local function map(fd)
  return assert(shm.mmap(nil, SIZE, shm.PROT_READ | shm.PROT_WRITE, shm.MAP_SHARED, fd, 0))
end

-- ---- the two child stages
if arg[1] == "--producer" then
  local out = channel.attach(map(3), A)
  for i = 1, tonumber(arg[2]) do
    local ok, err = out:send(tostring(i), T)
    if not ok then fail("producer: %s", err) end
  end
  out:close()
  os.exit(0)
elseif arg[1] == "--transformer" then
  local m = map(3)
  local inp, out = channel.attach(m, A), channel.attach(m, B)
  local count = 0
  while true do
    local msg, err, code = inp:recv(T)
    if not msg then
      if code == shm.EPIPE then break end
      fail("transformer: %s", err)
    end
    local n = math.tointeger(tonumber(msg))
    local ok, err2 = out:send(("%d %d"):format(n, n * n), T)
    if not ok then fail("transformer: %s", err2) end
    count = count + 1
  end
  out:close()
  io.stderr:write(("transformer: %d items, input closed, output closed\n"):format(count))
  os.exit(0)
end

-- ---- the consumer, which starts the others
local n = math.tointeger(tonumber(arg[1] or "50000"))
if not n or n < 1 then
  io.stderr:write("usage: shmlua scripts/pipeline.lua [N]\n")
  os.exit(2)
end
local interp = arg[-1] or shm.exepath()
local fd = assert(shm.memfd_create("pipeline", 0))
assert(shm.ftruncate(fd, SIZE))
local m <close> = map(fd)
local inp = channel.new(m, B, CAP)
channel.new(m, A, CAP)

local t0 = shm.clock()
local pids = {}
for _, role in ipairs { "--transformer", "--producer" } do
  pids[#pids + 1] = assert(shm.spawn({ interp, arg[0], role, tostring(n) }, { fds = { [3] = fd } }))
end

local expect, sum, problem = 1, 0, nil
while true do
  local msg, err, code = inp:recv(T)
  if not msg then
    if code ~= shm.EPIPE then problem = err end
    break
  end
  local a, b = msg:match("^(%d+) (%d+)$")
  a, b = math.tointeger(tonumber(a)), math.tointeger(tonumber(b))
  if a ~= expect or b ~= a * a then
    problem = ("item %d: got %q"):format(expect, msg)
    break
  end
  sum = sum + b
  expect = expect + 1
end
local dt = (shm.clock() - t0) / 1e9

for _, pid in ipairs(pids) do
  local how, code = shm.wait(pid, T)
  if not how then shm.kill(pid, shm.SIGKILL) shm.wait(pid, T) end
  if how ~= "exited" or code ~= 0 then problem = problem or ("a stage %s %s"):format(how, code) end
end
shm.close(fd)
if problem then fail("%s", problem) end
local want = n * (n + 1) * (2 * n + 1) // 6
if expect - 1 ~= n or sum ~= want then
  fail("received %d items, sum of squares %d, expected %d and %d", expect - 1, sum, n, want)
end
print(("pipeline: %d items through 3 processes and 2 channels in %.3f s (%.0f items/s)")
      :format(n, dt, n / dt))
print(("pipeline: every item once, in order; sum of squares %d as expected"):format(sum))
