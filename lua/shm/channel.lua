--- shm.channel: a single-producer, single-consumer ring of messages in
-- shared memory, fast whether the peer runs on another core or on this one.
--
--   local channel = require "shm.channel"
--   local ch = channel.new(m, offset, capacity [, msg_size])   -- creates
--   local ch = channel.attach(m, offset)                       -- joins
--   ch:send(msg [, timeout_s])  -> true | nil, msg, errno (ETIMEDOUT, EPIPE)
--   ch:recv([timeout_s])        -> msg  | nil, msg, errno (ETIMEDOUT, EPIPE)
--   ch:try_send(msg) -> true | false | nil, msg, EPIPE
--   ch:try_recv()    -> msg  | nil (empty) | nil, msg, EPIPE (closed, empty)
--   ch:send_batch(list [, timeout_s]) -> count | nil, msg, errno, count
--   ch:recv_batch(max [, timeout_s])  -> list  | nil, msg, errno
--   ch:close()       -- either side: the peer's send/recv then fail with
--                       EPIPE (recv only once the ring is empty)
--   ch:pending_bytes()  -- bytes published and not yet consumed
--
-- timeout_s: nil waits forever, 0 only looks, else seconds (a number >= 0;
-- anything else raises).  Failures are io-style triples whose message reads
-- "channel:recv: ETIMEDOUT: Connection timed out".  A message that is not a
-- string, is longer than the maximum (capacity/2 - 4) or, on a fixed-size
-- channel, has another size raises.
--
-- The layout is `struct shm_channel` (declared below with shm.cdef, so a C
-- program can join; tests/c/channel_peer.c does): a 192-byte header, then
-- `capacity` bytes of ring.  head and tail count bytes written and consumed,
-- modulo 2^32; the producer owns head, the consumer owns tail.  A record is
-- a 32-bit length (host byte order), the payload, and padding to 4 bytes;
-- a length of 0xFFFFFFFF marks the end of the ring (the record starts at 0
-- instead), written when a record does not fit in the bytes left before the
-- end.  A fixed-size channel (msg_size > 0) has the same records.
-- The producer writes the record, then publishes head; the consumer reads
-- the record, then publishes tail.  Both publish with shm.notify, which
-- makes one futex syscall only when the peer sleeps (head_waiters,
-- tail_waiters), and wait with shm.wait_change, which spins, yields and
-- sleeps adaptively (src/atomic.c).  Only the consumer ever sleeps on head
-- and only the producer on tail, so a side that starts waiting knows that
-- a non-zero count of its own kind was left by a predecessor killed in its
-- sleep: it clears it once (so the peer stops making useless wake calls).
-- A sleeper notices close() within 50 ms (SLICE).
--
-- Crash recovery, exactly: a message is sent once send has published head
-- (its last step) and consumed once recv has published tail (after copying
-- the message out, before returning it).  Either side may be killed at any
-- point and a successor attach and carry on where the published index
-- says: the ring is never torn by a kill.  A producer killed inside send
-- has not sent that message; a consumer killed inside recv before the
-- publish leaves the message for its successor (no loss, no duplicate); a
-- consumer killed after the publish and before its caller recorded the
-- message has lost that one message.  So a consumer that records each
-- message right after recv returns sees, across successors, a strictly
-- increasing sequence with no duplicates and at most one message missing
-- per kill (tests/stress_spec.lua checks exactly that).  recv_batch
-- publishes once per batch, so a kill may lose up to the whole batch.
--
-- Changes from the first version: failure messages name the errno; timeouts
-- are checked; try_recv tells a closed channel from an empty one; new and
-- attach check that the channel fits the mapping and that msg_size is sane;
-- stale waiter counts of a killed peer are cleared; send_batch/recv_batch;
-- a fixed-size receiver finds records without reading their length word.
--
-- Speed: a channel is a table of closures over its state (upvalues), not
-- methods reading fields of self: in a ping-pong every table lookup shows
-- (valgrind counted 14% fewer instructions a send + recv this way).  The
-- fields m, hv, cap, max and fixed of a channel are for reading only.
-- send_batch reuses one table for the records of a run, so it holds on to
-- the strings of the last batch until the next one.  What is left is the
-- cost of the C calls a message needs (a view field write, m:write and
-- shm.notify to send; atomic_load, a view field read, m:read and
-- shm.notify to receive); bench/ipc_bench.lua measures against a C
-- prototype of the same protocol (bench/ipc/chanproto.c).
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

local atomic_load, atomic_store = shm.atomic_load, shm.atomic_store
local notify, wait_change, clock = shm.notify, shm.wait_change, shm.clock
local type, mtype, error = type, math.type, error
local concat, unpack, move = table.concat, string.unpack, table.move

local M = {}
M.MAGIC = 0x4e414843        -- "CHAN"
M.HEADER = shm.sizeof("struct shm_channel")
local HEADER = M.HEADER
local WRAP, M32 = 0xFFFFFFFF, 0xFFFFFFFF
-- Sleeping waiters wake at least this often to notice a closed channel.
local SLICE = 0.05
local EPIPE, ETIMEDOUT = shm.EPIPE or 32, shm.ETIMEDOUT or 110
-- record length words as strings (made on first use) and padding
local LEN = setmetatable({}, { __index = function(t, n)
  local s = string.pack("=I4", n)
  t[n] = s
  return s
end })
local PAD = { "\0", "\0\0", "\0\0\0" }

--- Bytes a channel of `capacity` takes in a mapping.
function M.size(capacity)
  return HEADER + capacity
end

--- The largest message a channel of `capacity` carries.
function M.max_message(capacity)
  return capacity // 2 - 4
end

-- The failure triple: nil, "channel:<op>: ENAME: text", errno.
local function fail(op, e, text)
  local name = shm.errno_name and shm.errno_name(e) or tostring(e)
  return nil, ("channel:%s: %s: %s"):format(op, name, text or shm.strerror(e)), e
end

local function closed(op)
  return fail(op, EPIPE, "channel closed")
end

local function check_timeout(timeout, level)
  if type(timeout) ~= "number" or not (timeout >= 0) then
    error("channel: timeout must be nil or a number of seconds >= 0", level + 1)
  end
end

local function deadline_of(timeout)
  if timeout == nil or timeout >= 1e9 then return nil end
  return clock() + math.floor(timeout * 1e9)
end

-- Raises for a message that is not a string, too long, or (fixed > 0) of
-- another size; returns its length.
local function check_msg(msg, fixed, max, level)
  if type(msg) ~= "string" then
    error("channel: message must be a string, got " .. type(msg), level + 1)
  end
  local n = #msg
  if fixed ~= 0 and n ~= fixed then
    error(("channel: messages are %d bytes, got %d"):format(fixed, n), level + 1)
  elseif n > max then
    error(("channel: message of %d bytes exceeds the maximum of %d"):format(n, max), level + 1)
  end
  return n
end

-- The channel object over header view hv at `offset` of m: a table of
-- closures sharing the local state below.
local function setup(m, offset, hv)
  local cap = hv.capacity
  local mask, fixed, max = cap - 1, hv.msg_size, cap // 2 - 4
  local data4 = offset + HEADER + 4          -- where the payload at ring 0 goes
  local words = shm.view(m, ("uint32_t[%d]"):format(cap // 4), offset + HEADER)
  local mwrite, mread = m.write, m.read
  -- the producer's head and last look at tail; the consumer's tail and
  -- last look at head (each side only uses its own pair)
  local head, tail = hv.head, hv.tail
  local head_seen, tail_seen = head, tail
  local cleared = {}                         -- waiter counts cleared, by name
  -- string.unpack formats cutting cnt fixed-size payloads out of a stretch
  -- of records read from just after the first length word
  local cuts = setmetatable({}, { __index = function(t, cnt)
    local rec = (fixed + 7) & ~3
    local one = ("c%d"):format(fixed)
    local f = one .. (("x"):rep(rec - fixed) .. one):rep(cnt - 1)
    t[cnt] = f
    return f
  end })

  -- Waits until field f of the header is no longer `old`, in slices,
  -- giving up at `deadline` (ns, or nil: never) or once the channel is
  -- closed.  Returns the new value, or the failure triple of `op`.
  local function wait(op, f, old, waiters, deadline)
    if not cleared[waiters] then
      -- first wait of this side: clear a count left by a killed predecessor
      if atomic_load(hv, waiters) ~= 0 then atomic_store(hv, waiters, 0) end
      cleared[waiters] = true
    end
    while true do
      if hv.closed ~= 0 then return closed(op) end
      local slice = SLICE
      if deadline then
        local left = (deadline - clock()) / 1e9
        if left <= 0 then return fail(op, ETIMEDOUT) end
        if left < slice then slice = left end
      end
      local v = wait_change(hv, f, old, slice, waiters)
      if v then return v end
    end
  end

  -- Waits for `want` bytes of room at head; true, or the failure triple.
  local function wait_room(op, want, deadline)
    local t = atomic_load(hv, "tail")
    while cap - ((head - t) & M32) < want do
      local err, code
      t, err, code = wait(op, "tail", t, "tail_waiters", deadline)
      if not t then return nil, err, code end
    end
    tail_seen = t
    return true
  end

  -- Writes msg (n bytes, a record of rec) at head, which has room, and
  -- advances head (not yet published).
  local function put(msg, n, rec)
    local pos = head & mask
    local room = cap - pos
    if rec > room then
      words[pos >> 2] = WRAP
      head, pos = head + room, 0
    end
    words[pos >> 2] = n
    if n > 0 then mwrite(m, data4 + pos, msg) end
    head = (head + rec) & M32
  end

  -- Room needed at head for a record of rec bytes (a wrap marker included).
  local function need(rec)
    local room = cap - (head & mask)
    return rec <= room and rec or room + rec
  end

  -- Waits until the ring holds something (h: head as just loaded);
  -- head_seen, or the failure triple (EPIPE only once a closed ring is
  -- empty).
  local function wait_data(op, timeout, h)
    if h == tail then
      local deadline = deadline_of(timeout)
      repeat
        local v, err, code = wait(op, "head", h, "head_waiters", deadline)
        if not v then
          -- closed: hand out what is still in the ring first
          h = atomic_load(hv, "head")
          if h == tail then return nil, err, code end
        else
          h = v
        end
      until h ~= tail
    end
    head_seen = h
    return h
  end

  -- Reads the record at position t (published) and returns the message
  -- and the position after it.
  local function read_record(t)
    local pos = t & mask
    local n = words[pos >> 2]
    if n == WRAP then
      t, pos = t + (cap - pos), 0
      n = words[0]
    end
    if n > max then
      error(("channel: corrupt record length %d at offset %d"):format(n, pos), 3)
    end
    return n > 0 and mread(m, data4 + pos, n) or "", (t + ((n + 7) & ~3)) & M32
  end

  local ch = { m = m, hv = hv, cap = cap, max = max, fixed = fixed }

  --- Sends msg, waiting for room at most timeout_s seconds (nil: forever).
  -- The hot path: put() and need() are written out here.
  function ch.send(_, msg, timeout)
    if type(msg) ~= "string" then check_msg(msg, fixed, max, 2) end
    local n = #msg
    if n > max or (fixed ~= 0 and n ~= fixed) then check_msg(msg, fixed, max, 2) end
    if timeout ~= nil then check_timeout(timeout, 2) end
    if hv.closed ~= 0 then return closed("send") end
    local rec = (n + 7) & ~3              -- 4 + n rounded up to 4
    local pos = head & mask
    local room = cap - pos
    local want = rec <= room and rec or room + rec
    if cap - ((head - tail_seen) & M32) < want then
      local ok, err, code = wait_room("send", want, deadline_of(timeout))
      if not ok then return nil, err, code end
    end
    if rec > room then
      words[pos >> 2] = WRAP
      head, pos = head + room, 0
    end
    words[pos >> 2] = n
    if n > 0 then mwrite(m, data4 + pos, msg) end
    head = (head + rec) & M32
    notify(hv, "head", head, "head_waiters")
    return true
  end

  --- Sends msg if there is room now: true, or false when the ring is full.
  function ch.try_send(_, msg)
    local n = check_msg(msg, fixed, max, 2)
    local rec = (n + 7) & ~3
    if hv.closed ~= 0 then return closed("try_send") end
    if cap - ((head - tail_seen) & M32) < need(rec) then
      tail_seen = atomic_load(hv, "tail")
      if cap - ((head - tail_seen) & M32) < need(rec) then return false end
    end
    put(msg, n, rec)
    notify(hv, "head", head, "head_waiters")
    return true
  end

  --- Sends every message of `list` in order, publishing head once per run
  -- of messages that fit, so the consumer is woken once per run rather
  -- than once per message; the records of a run go into the ring with one
  -- m:write.  Returns #list, or on timeout/close the failure triple
  -- followed by how many were sent (those stay sent).  Checks every
  -- message before sending any.
  local parts = {}      -- the records of the run being built (reused)
  function ch.send_batch(_, list, timeout)
    if type(list) ~= "table" then
      error("channel: send_batch expects a list of strings, got " .. type(list), 2)
    end
    if timeout ~= nil then check_timeout(timeout, 2) end
    local count = #list
    for i = 1, count do
      local msg = list[i]
      if type(msg) ~= "string" or #msg > max or (fixed ~= 0 and #msg ~= fixed) then
        check_msg(msg, fixed, max, 2)
      end
    end
    if hv.closed ~= 0 then
      local _, err, code = closed("send_batch")
      return nil, err, code, 0
    end
    local deadline, published = nil, head
    local np, start = 0, 0        -- parts in the run, and where it starts
    local pos = head & mask
    local free = cap - ((head - tail_seen) & M32)
    for i = 1, count do
      local msg = list[i]
      local n = #msg
      local rec = (n + 7) & ~3
      local room = cap - pos
      if rec > room or rec > free then  -- the ring's end, or not enough room
        if room == 0 then               -- the run ended exactly at the end
          if np > 0 then mwrite(m, data4 - 4 + start, concat(parts, "", 1, np)) np = 0 end
          pos, room = 0, cap
        end
        local want = rec <= room and rec or room + rec
        if want > free then
          tail_seen = atomic_load(hv, "tail")
          free = cap - ((head - tail_seen) & M32)
          if want > free then
            if np > 0 then mwrite(m, data4 - 4 + start, concat(parts, "", 1, np)) np = 0 end
            if head ~= published then   -- publish what fits before waiting
              published = head
              notify(hv, "head", head, "head_waiters")
            end
            deadline = deadline or deadline_of(timeout)
            local ok, err, code = wait_room("send_batch", want, deadline)
            if not ok then return nil, err, code, i - 1 end
            free = cap - ((head - tail_seen) & M32)
          end
        end
        if rec > room then              -- a wrap marker; the record goes at 0
          if np > 0 then mwrite(m, data4 - 4 + start, concat(parts, "", 1, np)) np = 0 end
          words[pos >> 2] = WRAP
          head, free, pos = (head + room) & M32, free - room, 0
        end
      end
      if np == 0 then start = pos end
      parts[np + 1], parts[np + 2] = LEN[n], msg
      np = np + 2
      if rec - 4 > n then
        np = np + 1
        parts[np] = PAD[rec - 4 - n]
      end
      head, pos, free = (head + rec) & M32, pos + rec, free - rec
    end
    if np > 0 then mwrite(m, data4 - 4 + start, concat(parts, "", 1, np)) end
    if head ~= published then notify(hv, "head", head, "head_waiters") end
    return count
  end

  --- Receives the next message, waiting at most timeout_s seconds (nil:
  -- forever).  The hot path: read_record() is written out here.
  function ch.recv(_, timeout)
    if timeout ~= nil then check_timeout(timeout, 2) end
    if head_seen == tail then
      local h = atomic_load(hv, "head")
      if h == tail then
        local err, code
        h, err, code = wait_data("recv", timeout, h)
        if not h then return nil, err, code end
      end
      head_seen = h
    end
    local n = fixed
    local pos = tail & mask
    if n ~= 0 then                        -- fixed size: where the record is
      if cap - pos < ((n + 7) & ~3) then  -- follows from its size, as the
        tail, pos = tail + (cap - pos), 0 -- producer wraps by the same rule
      end
    else
      n = words[pos >> 2]
      if n == WRAP then
        tail, pos = tail + (cap - pos), 0
        n = words[0]
      end
      if n > max then
        error(("channel: corrupt record length %d at offset %d"):format(n, pos), 2)
      end
    end
    local msg = n > 0 and mread(m, data4 + pos, n) or ""
    tail = (tail + ((n + 7) & ~3)) & M32
    notify(hv, "tail", tail, "tail_waiters")
    return msg
  end

  --- Receives a message if one is there: the message; nil when empty; the
  -- failure triple (EPIPE) when empty and closed.
  function ch.try_recv()
    if head_seen == tail then
      head_seen = atomic_load(hv, "head")
      if head_seen == tail then
        if hv.closed ~= 0 then return closed("try_recv") end
        return nil
      end
    end
    local msg
    msg, tail = read_record(tail)
    notify(hv, "tail", tail, "tail_waiters")
    return msg
  end

  --- Receives up to `most` messages (at least one, waiting for it as recv
  -- does), publishing tail once for all of them.  Returns a list.  On a
  -- fixed-size channel the records in one stretch of the ring are read
  -- with one m:read and cut apart.
  function ch.recv_batch(_, most, timeout)
    if mtype(most) ~= "integer" or most < 1 then
      error("channel: recv_batch expects a maximum count >= 1", 2)
    end
    if timeout ~= nil then check_timeout(timeout, 2) end
    if head_seen == tail then
      local h, err, code = wait_data("recv_batch", timeout, atomic_load(hv, "head"))
      if not h then return nil, err, code end
    end
    local list, k, t = nil, 0, tail
    if fixed ~= 0 then
      local rec = (fixed + 7) & ~3
      repeat
        local pos = t & mask
        if cap - pos < rec then t, pos = t + (cap - pos), 0 end   -- wrapped
        local stretch = (head_seen - t) & M32
        if stretch > cap - pos then stretch = cap - pos end
        local cnt = stretch // rec
        if cnt > most - k then cnt = most - k end
        -- the payloads of cnt records, cut apart by one string.unpack
        local got = { unpack(cuts[cnt], mread(m, data4 + pos, cnt * rec - 4)) }
        got[cnt + 1] = nil                -- unpack's next position
        if list then move(got, 1, cnt, k + 1, list) else list = got end
        k = k + cnt
        t = (t + cnt * rec) & M32
        if t == head_seen and k < most then head_seen = atomic_load(hv, "head") end
      until k >= most or t == head_seen
    else
      list = {}
      repeat
        local msg
        msg, t = read_record(t)
        k = k + 1
        list[k] = msg
        if t == head_seen and k < most then head_seen = atomic_load(hv, "head") end
      until k >= most or t == head_seen
    end
    tail = t
    notify(hv, "tail", tail, "tail_waiters")
    return list
  end

  --- Closes the channel for both sides; sleepers notice within 50 ms.
  function ch.close()
    atomic_store(hv, "closed", 1)
    shm.futex_wake(hv, "head", "all")
    shm.futex_wake(hv, "tail", "all")
  end

  --- Bytes published and not yet consumed.
  function ch.pending_bytes()
    return (atomic_load(hv, "head") - atomic_load(hv, "tail")) & M32
  end

  return ch
end

local function check_offset(offset, level)
  if mtype(offset) ~= "integer" or offset < 0 or offset % 4 ~= 0 then
    error("channel offset must be a non-negative multiple of 4", level + 1)
  end
end

--- Creates a channel at `offset` of mapping m (zeroing its header).
-- capacity: a power of two, at least 64; msg_size: 0 or nil for messages
-- of any size up to capacity/2 - 4 bytes, else the one size they all have.
function M.new(m, offset, capacity, msg_size)
  msg_size = msg_size or 0
  check_offset(offset, 2)
  if mtype(capacity) ~= "integer" or capacity < 64 or capacity > 1 << 30
     or capacity & (capacity - 1) ~= 0 then
    error("channel capacity must be a power of two from 64 to 2^30", 2)
  end
  if mtype(msg_size) ~= "integer" or msg_size < 0 or msg_size > capacity // 2 - 4 then
    error("channel msg_size must be 0 or at most capacity/2 - 4", 2)
  end
  if offset + HEADER + capacity > #m then
    error(("channel of %d bytes at offset %d does not fit in a mapping of %d bytes")
          :format(HEADER + capacity, offset, #m), 2)
  end
  local hv = shm.view(m, "struct shm_channel", offset)
  shm.fill(hv, 0, HEADER)
  hv.capacity, hv.msg_size = capacity, msg_size
  atomic_store(hv, "magic", M.MAGIC)
  return setup(m, offset, hv)
end

--- Joins the channel that another process created at `offset` of m.
-- Raises if there is none (bad magic) or its header makes no sense.
function M.attach(m, offset)
  check_offset(offset, 2)
  if offset + HEADER > #m then
    error(("no channel at offset %d (the mapping has %d bytes)"):format(offset, #m), 2)
  end
  local hv = shm.view(m, "struct shm_channel", offset)
  if atomic_load(hv, "magic") ~= M.MAGIC then
    error(("no channel at offset %d (bad magic)"):format(offset), 2)
  end
  local cap, size = hv.capacity, hv.msg_size
  if cap < 64 or cap > 1 << 30 or cap & (cap - 1) ~= 0 or offset + HEADER + cap > #m
     or size > cap // 2 - 4 then
    error(("channel at offset %d is corrupt (capacity %d, msg_size %d)")
          :format(offset, cap, size), 2)
  end
  return setup(m, offset, hv)
end

return M
