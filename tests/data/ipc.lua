-- tests/data/ipc.lua: what channel_spec, mailbox_spec, stress_spec and
-- examples_spec share: shared memfds, child processes with bounded waits,
-- and the checked message format that Lua and tests/c/channel_peer.c both
-- speak.  require "data.ipc" (LUA_PATH holds tests/?.lua, in children too).
local shm = require "shm"
local M = {}

M.RW = shm.PROT_READ | shm.PROT_WRITE
M.ASAN = os.getenv("SHMLUA_ASAN") ~= nil
M.build = os.getenv("SHMLUA_BUILD") or "build"
M.peers = M.build .. "/peers/"

-- A fresh memfd of `size` bytes and a shared mapping of it: fd, mapping.
function M.shared(size)
  local fd = assert(shm.memfd_create("ipc_spec", 0))
  assert(shm.ftruncate(fd, size))
  local m = assert(shm.mmap(nil, size, M.RW, shm.MAP_SHARED, fd, 0))
  return fd, m
end

-- What every Lua child runs first: the modules, the memfd at descriptor 3
-- mapped whole as `m`, and die(fmt, ...) that reports on stderr, exit 1.
M.PRELUDE = [[
local shm = require "shm"
local channel = require "shm.channel"
local mailbox = require "shm.mailbox"
local ipc = require "data.ipc"
local m = assert(shm.mmap(nil, assert(shm.fstat(3)).size,
                          shm.PROT_READ | shm.PROT_WRITE, shm.MAP_SHARED, 3, 0))
local function die(...) io.stderr:write("child: ", string.format(...), "\n") os.exit(1) end
]]

-- Starts argv with `fd` (if any) as its descriptor 3 and its stdout and
-- stderr in pipes; returns a child record for reap/expect_ok/cleanup.
-- Children should write little (a pipe holds 64 KiB until reaped).
function M.spawn(argv, fd)
  local pid, pipes = assert(shm.spawn(argv, { fds = fd and { [3] = fd } or nil,
                                              stdout = "pipe", stderr = "pipe" }))
  return { pid = pid, out = pipes.stdout, err = pipes.stderr }
end

-- Starts the running interpreter on PRELUDE .. code:format(...).
function M.spawn_lua(fd, code, ...)
  return M.spawn({ shm.exepath(), "-e", M.PRELUDE .. code:format(...) }, fd)
end

-- Reads what is left in pipe `fd` (bounded: 2 s of silence ends it), closes it.
local function slurp(fd)
  local parts, deadline = {}, shm.clock() + 5e9
  while shm.clock() < deadline do
    local ready = shm.poll_fd(fd, "r", 2)
    if not ready or ready == "" then break end
    local s = shm.read_fd(fd, 65536)
    if not s or s == "" then break end
    parts[#parts + 1] = s
  end
  shm.close(fd)
  return table.concat(parts)
end

local function drain(c)
  if c.out then c.stdout, c.out = slurp(c.out), nil end
  if c.err then c.stderr, c.err = slurp(c.err), nil end
  return c.stdout or "", c.stderr or ""
end

-- Waits at most `timeout` seconds for the child: how ("exited" or
-- "signaled"), code, its stdout, its stderr.  A child still running then
-- is killed and an error raised.
function M.reap(c, timeout)
  local how, code = shm.wait(c.pid, timeout or 60)
  if not how then
    shm.kill(c.pid, shm.SIGKILL)
    shm.wait(c.pid, 5)
    c.done = true
    local _, err = drain(c)
    error(("child %d still running after %d s; stderr: %s")
          :format(c.pid, timeout or 60, err), 2)
  end
  c.done = true
  local out, err = drain(c)
  return how, code, out, err
end

-- Reaps and asserts a clean exit 0 (the child's stderr in the message);
-- returns its stdout.
function M.expect_ok(c, timeout)
  local how, code, out, err = M.reap(c, timeout)
  if how ~= "exited" or code ~= 0 then
    error(("child %d %s %s; stderr: %s"):format(c.pid, how, tostring(code), err), 2)
  end
  return out
end

-- Kills and reaps a child that may still run (cleanup after a failure).
function M.cleanup(c)
  if c and not c.done then
    shm.kill(c.pid, shm.SIGKILL)
    shm.wait(c.pid, 5)
    c.done = true
  end
  if c then drain(c) end
end

-- ---- the checked message format (also in tests/c/channel_peer.c)
--
-- message(seq) = seq (uint32 LE) .. adler32(payload) (uint32 LE) .. payload
-- payload = BLOCK[off .. off+len) with off = seq*7919 % 2048 and
-- len = ((seq * 2654435761) >> 16) % (maxpay + 1): every message differs
-- in content and most in length, so a lost, repeated, reordered or torn
-- one cannot pass for the expected one.  BLOCK is 4096 bytes of the LCG
-- x = (x * 1103515245 + 12345) mod 2^31 from x = 1, byte (x >> 16) & 255.
local BLOCK, P1, Q = {}, { [0] = 0 }, { [0] = 0 }
do
  local x = 1
  for i = 1, 4096 do
    x = (x * 1103515245 + 12345) & 0x7fffffff
    local b = (x >> 16) & 255
    BLOCK[i] = string.char(b)
    P1[i] = P1[i - 1] + b       -- prefix sums, so adler32 of any slice is O(1)
    Q[i] = Q[i - 1] + i * b
  end
  BLOCK = table.concat(BLOCK)
end
M.BLOCK = BLOCK

-- Adler-32 of BLOCK bytes off+1 .. off+len (1-based), from the prefix sums.
function M.adler_slice(off, len)
  local e = off + len
  local s1 = P1[e] - P1[off]
  local w = (e + 1) * s1 - (Q[e] - Q[off])   -- sum of (len - k + 1) * x_k
  return (((len + w) % 65521) << 16) | ((1 + s1) % 65521)
end

-- Adler-32 of any string (slow; for tests of the above).
function M.adler32(s)
  local a, b = 1, 0
  for i = 1, #s do
    a = (a + s:byte(i)) % 65521
    b = (b + a) % 65521
  end
  return (b << 16) | a
end

function M.payload_shape(seq, maxpay)
  return seq * 7919 % 2048, ((seq * 2654435761) >> 16) % (maxpay + 1)
end

-- The message of sequence number seq (payloads of 0..maxpay bytes).
function M.message(seq, maxpay)
  local off, len = M.payload_shape(seq, maxpay)
  return string.pack("<I4I4", seq & 0xFFFFFFFF, M.adler_slice(off, len))
         .. BLOCK:sub(off + 1, off + len)
end

-- The sequence number a message claims (nil if it is too short).
function M.seq_of(msg)
  if #msg < 8 then return nil end
  return (string.unpack("<I4", msg))
end

-- Explains how msg differs from message(seq): nil when it does not.
function M.check(msg, seq, maxpay)
  local want = M.message(seq, maxpay)
  if msg == want then return nil end
  if type(msg) ~= "string" then return ("seq %d: got %s"):format(seq, type(msg)) end
  local got = M.seq_of(msg)
  if got ~= (seq & 0xFFFFFFFF) then
    return ("expected seq %d, got %s (%d bytes)"):format(seq, tostring(got), #msg)
  end
  if #msg ~= #want then
    return ("seq %d: %d bytes, expected %d"):format(seq, #msg, #want)
  end
  return ("seq %d: torn (content differs%s)"):format(seq,
    M.adler32(msg:sub(9)) == string.unpack("<I4", msg, 5) and "" or ", checksum fails")
end

return M
