--- shm.channel: a single-producer, single-consumer ring of messages in
-- shared memory, fast whether the peer runs on another core or on this one.
--
--   local channel = require "shm.channel"
--   local ch = channel.new(m, offset, capacity [, msg_size])   -- creates
--   local ch = channel.attach(m, offset)                       -- joins
--   ch:send(msg [, timeout_s])  -> true | nil, msg, errno (ETIMEDOUT, EPIPE)
--   ch:recv([timeout_s])        -> msg  | nil, msg, errno (ETIMEDOUT, EPIPE)
--   ch:try_send(msg) -> true | false        ch:try_recv() -> msg | nil
--   ch:close()       -- either side: the peer's send/recv then fail with
--                       EPIPE (recv only once the ring is empty)
--
-- The layout is `struct shm_channel` (declared below with shm.cdef, so a C
-- program can join): a 192-byte header, then `capacity` bytes of ring.
-- head and tail count bytes written and consumed, modulo 2^32; the
-- producer owns head, the consumer owns tail.  A record is a 32-bit
-- little-endian length, the payload, and padding to 4 bytes; a length of
-- 0xFFFFFFFF marks the end of the ring (the next record starts at 0).
-- The producer writes the record, then publishes head; the consumer reads
-- the record, then publishes tail.  Both publish with shm.notify, which
-- makes one futex syscall only when the peer sleeps (head_waiters,
-- tail_waiters), and wait with shm.wait_change, which spins, yields and
-- sleeps adaptively (src/atomic.c).
--
-- Recovery: a consumer that dies and is restarted attaches again and goes
-- on at tail: a message is consumed when recv returns it (tail is
-- published after the copy), so a consumer killed inside recv loses
-- nothing; one killed after recv returned has taken that message with it.
local shm = require "shm"

shm.cdef [[
struct shm_channel {
  uint32_t magic;         /* CHANNEL_MAGIC once initialised               */
  uint32_t capacity;      /* bytes of ring after the header, power of two */
  uint32_t msg_size;      /* every message has this size; 0: any size     */
  uint32_t closed;        /* set to 1 by either side                      */
  uint32_t pad0[12];
  uint32_t head;          /* bytes published by the producer, mod 2^32    */
  uint32_t head_waiters;  /* consumers asleep on head                     */
  uint32_t pad1[14];
  uint32_t tail;          /* bytes consumed by the consumer, mod 2^32     */
  uint32_t tail_waiters;  /* producers asleep on tail                     */
  uint32_t pad2[14];
};
]]

local M = {}
M.MAGIC = 0x4e414843        -- "CHAN"
M.HEADER = shm.sizeof("struct shm_channel")
local WRAP, M32 = 0xFFFFFFFF, 0xFFFFFFFF
-- Sleeping waiters wake at least this often to notice a closed channel.
local SLICE = 0.05

local Channel = {}
Channel.__index = Channel

--- Bytes a channel of `capacity` takes in a mapping.
function M.size(capacity)
  return M.HEADER + capacity
end

local function setup(m, offset, hv)
  local cap = hv.capacity
  local ch = setmetatable({
    m = m, hv = hv, cap = cap, mask = cap - 1, fixed = hv.msg_size,
    data = offset + M.HEADER,
    words = shm.view(m, ("uint32_t[%d]"):format(cap // 4), offset + M.HEADER),
    max = cap // 2 - 4,
  }, Channel)
  ch.head, ch.tail = hv.head, hv.tail
  ch.head_seen, ch.tail_seen = ch.head, ch.tail
  return ch
end

--- Creates a channel at `offset` of mapping m (zeroing its header).
-- capacity: a power of two, at least 64; msg_size: 0 or nil for messages
-- of any size up to capacity/2 - 4 bytes, else the one size they all have.
function M.new(m, offset, capacity, msg_size)
  msg_size = msg_size or 0
  if math.type(capacity) ~= "integer" or capacity < 64 or capacity > 1 << 30
     or capacity & (capacity - 1) ~= 0 then
    error("channel capacity must be a power of two from 64 to 2^30", 2)
  end
  if math.type(msg_size) ~= "integer" or msg_size < 0 or msg_size > capacity // 2 - 4 then
    error("channel msg_size must be 0 or at most capacity/2 - 4", 2)
  end
  local hv = shm.view(m, "struct shm_channel", offset)
  shm.fill(hv, 0, M.HEADER)
  hv.capacity, hv.msg_size = capacity, msg_size
  shm.atomic_store(hv, "magic", M.MAGIC)
  return setup(m, offset, hv)
end

--- Joins the channel that another process created at `offset` of m.
function M.attach(m, offset)
  local hv = shm.view(m, "struct shm_channel", offset)
  if shm.atomic_load(hv, "magic") ~= M.MAGIC then
    error(("no channel at offset %d (bad magic)"):format(offset), 2)
  end
  local cap = hv.capacity
  if cap < 64 or cap & (cap - 1) ~= 0 or offset + M.HEADER + cap > #m then
    error(("channel at offset %d is corrupt (capacity %d)"):format(offset, cap), 2)
  end
  return setup(m, offset, hv)
end

local function deadline_of(timeout)
  if timeout == nil then return nil end
  return shm.clock() + math.floor(timeout * 1e9)
end

-- Waits until field f of the header is no longer `old`, in slices, giving
-- up at `deadline` (ns, or nil: never) or once the channel is closed.
local function wait(self, f, old, waiters, deadline)
  local hv = self.hv
  while true do
    if hv.closed ~= 0 then return nil, "channel closed", shm.EPIPE end
    local slice = SLICE
    if deadline then
      local left = (deadline - shm.clock()) / 1e9
      if left <= 0 then return nil, "channel: ETIMEDOUT: timed out", shm.ETIMEDOUT end
      if left < slice then slice = left end
    end
    local v = shm.wait_change(hv, f, old, slice, waiters)
    if v then return v end
  end
end

local function check_msg(self, msg)
  if type(msg) ~= "string" then
    error("channel: message must be a string, got " .. type(msg), 3)
  end
  local n = #msg
  if self.fixed ~= 0 and n ~= self.fixed then
    error(("channel: messages are %d bytes, got %d"):format(self.fixed, n), 3)
  elseif n > self.max then
    error(("channel: message of %d bytes exceeds the maximum of %d"):format(n, self.max), 3)
  end
  return n
end

-- Room needed at head for a record of rec bytes (a wrap marker included).
local function need(self, rec)
  local room = self.cap - (self.head & self.mask)
  return rec <= room and rec or room + rec
end

local function put(self, msg, n, rec)
  local head = self.head
  local pos = head & self.mask
  local room = self.cap - pos
  if rec > room then
    self.words[pos >> 2] = WRAP
    head, pos = head + room, 0
  end
  self.words[pos >> 2] = n
  if n > 0 then self.m:write(self.data + pos + 4, msg) end
  head = (head + rec) & M32
  self.head = head
  shm.notify(self.hv, "head", head, "head_waiters")
end

--- Sends msg, waiting for room at most timeout_s seconds (nil: forever).
function Channel:send(msg, timeout)
  local n = check_msg(self, msg)
  local rec = 4 + ((n + 3) & ~3)
  local want = need(self, rec)
  if self.hv.closed ~= 0 then return nil, "channel closed", shm.EPIPE end
  if self.cap - ((self.head - self.tail_seen) & M32) < want then
    local tail = shm.atomic_load(self.hv, "tail")
    local deadline = deadline_of(timeout)
    while self.cap - ((self.head - tail) & M32) < want do
      local t, err, code = wait(self, "tail", tail, "tail_waiters", deadline)
      if not t then return nil, err, code end
      tail = t
    end
    self.tail_seen = tail
  end
  put(self, msg, n, rec)
  return true
end

--- Sends msg if there is room now: true, or false when the ring is full.
function Channel:try_send(msg)
  local n = check_msg(self, msg)
  local rec = 4 + ((n + 3) & ~3)
  local want = need(self, rec)
  if self.hv.closed ~= 0 then return nil, "channel closed", shm.EPIPE end
  if self.cap - ((self.head - self.tail_seen) & M32) < want then
    self.tail_seen = shm.atomic_load(self.hv, "tail")
    if self.cap - ((self.head - self.tail_seen) & M32) < want then return false end
  end
  put(self, msg, n, rec)
  return true
end

local function take(self)
  local tail = self.tail
  local pos = tail & self.mask
  local words = self.words
  local n = words[pos >> 2]
  if n == WRAP then
    tail, pos = tail + (self.cap - pos), 0
    n = words[0]
  end
  if n > self.max then
    error(("channel: corrupt record length %d at offset %d"):format(n, pos), 3)
  end
  local msg = n > 0 and self.m:read(self.data + pos + 4, n) or ""
  tail = (tail + 4 + ((n + 3) & ~3)) & M32
  self.tail = tail
  shm.notify(self.hv, "tail", tail, "tail_waiters")
  return msg
end

--- Receives the next message, waiting at most timeout_s seconds (nil: forever).
function Channel:recv(timeout)
  if self.head_seen == self.tail then
    local head = shm.atomic_load(self.hv, "head")
    if head == self.tail then
      local deadline = deadline_of(timeout)
      repeat
        local h, err, code = wait(self, "head", head, "head_waiters", deadline)
        if not h then
          -- closed: hand out what is still in the ring first
          head = shm.atomic_load(self.hv, "head")
          if head == self.tail then return nil, err, code end
        else
          head = h
        end
      until head ~= self.tail
    end
    self.head_seen = head
  end
  return take(self)
end

--- Receives a message if one is there: the message, or nil when empty.
function Channel:try_recv()
  if self.head_seen == self.tail then
    self.head_seen = shm.atomic_load(self.hv, "head")
    if self.head_seen == self.tail then return nil end
  end
  return take(self)
end

--- Closes the channel for both sides; sleepers notice within 50 ms.
function Channel:close()
  shm.atomic_store(self.hv, "closed", 1)
  shm.futex_wake(self.hv, "head", "all")
  shm.futex_wake(self.hv, "tail", "all")
end

--- Messages waiting in the ring (bytes, as the consumer would see them).
function Channel:pending_bytes()
  return (shm.atomic_load(self.hv, "head") - shm.atomic_load(self.hv, "tail")) & M32
end

return M
