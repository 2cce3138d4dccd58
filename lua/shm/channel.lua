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
-- channel, has another size raises.  A record takes 4 + n bytes rounded up
-- to 4, and a ring of capacity c holds c - 4 bytes of records (the word
-- after the last record is kept 0); a maximal message always fits in an
-- empty ring.
--
-- The layout is `struct shm_channel` (declared below with shm.cdef, so a C
-- program can join; tests/c/channel_peer.c does): a 192-byte header, then
-- `capacity` bytes of ring, zeroed by new().  head and tail count bytes
-- written and consumed, modulo 2^32; the producer owns head and tail_seen,
-- the consumer owns tail.  Each of the three 64-byte lines of the header
-- is written by one side only (bar the sleep flags, raised by a side
-- about to sleep), so a message in flight moves no header line between
-- the CPUs.
--
-- Records, at 4-byte aligned positions: a 32-bit stamp word (host byte
-- order), the payload, padding to 4 bytes.  The stamp is 0 while nothing
-- is written there, n + 1 for a record of n payload bytes, and 0xFFFFFFFF
-- for "the ring ends here, the record is at offset 0" (written when a
-- record does not fit in the bytes left before the end).  A fixed-size
-- channel (msg_size > 0) has the same records.  Protocol of one send at
-- position p = head (rec = 4 + n rounded up to 4; q = where the next
-- record will start):
--   1. room: head + (wrap skip) + rec + 4 - tail <= capacity, judged from
--      tail_seen, re-reading tail (and storing it in tail_seen) only when
--      tail_seen says there is no room: the producer does not touch the
--      consumer's line while the ring has room (and, when its last look
--      found the ring nearly full, a method that may wait spins 1 us
--      before looking again, so that it finds room for several records,
--      not one: src/channel.c, has_room);
--   2. store 0 at q (the next record's stamp: the consumer will stop there);
--   3. write the payload (at 0 + 4 when wrapping, whose stamp is also
--      written before step 4);
--   4. store the stamp at p (release): the message is sent;
--   5. store head = q (seq_cst), load head_waiters (seq_cst); if it is
--      neither 0 nor q + 1, lower it (compare-and-swap to 0) and FUTEX_WAKE
--      head.
-- The consumer at position t = tail loads the stamp at t (acquire): 0 means
-- empty; otherwise it copies the record out, then stores tail past it
-- (seq_cst), loads tail_waiters and wakes tail the same way.
-- So the consumer learns of a message from the line that holds it, and
-- never reads head on its way: one cache line crosses a CPU per message.
-- The consumer waits for a stamp adaptively (spin and yield looking at the
-- stamp, after a 1 us pause without looking when its last recv found its
-- message at once: a consumer that keeps up with a stream would otherwise
-- watch the very lines the producer writes, slowing both; then, to sleep,
-- it reads head (h), raises its flag head_waiters to h + 1, re-checks the
-- stamp and FUTEX_WAITs on head == h, which step 5 changes after any
-- stamp); the producer waits for room on tail the same
-- way, sleeping on tail itself with tail_waiters (shm_wait32_on and
-- shm_notify32_clear in src/atomic.c, which say why this is sound).  The
-- flags are not counts: the waker lowers a flag when it wakes, so a
-- sleeper slow to wake up costs the waker one FUTEX_WAKE, not one per
-- message meanwhile (as counts did: the two sides then settled at a
-- fraction of their speed).  A flag of q + 1 is left alone: that sleeper
-- read q, so it waits for a later store.  Only the consumer ever sleeps on
-- head and only the producer on tail, so a side that starts waiting lowers
-- a flag of its own kind that is still raised (left by a predecessor
-- killed in its sleep, or by its own wait that ended without a wake); a
-- method looks at the flag only when it may be raised (its first wait of
-- the kind, or after a wait of its own that raised it), as reading it at
-- every wait pulls the line the peer writes head or tail on.  A sleeper
-- notices close() within 50 ms.
--
-- The send/recv paths are C (src/channel.c: shm.channel_send(hv, msg
-- [, timeout_s]), channel_try_send, channel_send_batch, channel_recv,
-- channel_try_recv, channel_recv_batch, all on the header view hv; the
-- methods are these bound to hv by shm.channel_bind): one Lua->C call a
-- message.  They keep no state but the header: each call reads the
-- indices from it and checks everything it reads from shared memory
-- (indices and stamps; the magic, capacity and msg_size, and that header
-- and ring lie in one live mapping, every unbound call, and once when
-- bound: the methods keep the capacity and msg_size they checked, which
-- the protocol never changes, and check every call that the mapping is
-- still live and writable), so a corrupt channel raises instead of
-- reading or writing outside the ring.
--
-- Crash recovery, exactly: a message is sent once its stamp is stored
-- (step 4) and consumed once recv has published tail (after copying the
-- message out, before returning it).  Either side may be killed at any
-- point and a successor attach and carry on: the ring is never torn by a
-- kill.  A producer killed between steps 4 and 5 leaves head one record
-- behind its last stamp; the first send of a successor (the first through
-- each channel object) walks the stamps from head to the 0 that step 2
-- left and publishes head there, so the message stands.  A producer killed
-- before step 4 has not sent that message.  A consumer killed inside recv
-- before the publish leaves the message for its successor (no loss, no
-- duplicate); a consumer killed after the publish and before its caller
-- recorded the message has lost that one message.  So a consumer that
-- records each message right after recv returns sees, across successors,
-- a strictly increasing sequence with no duplicates and at most one
-- message missing per kill (tests/stress_spec.lua checks exactly that,
-- and that a producer killed and restarted loses and duplicates nothing
-- it was told was sent).  recv_batch publishes once per batch, so a
-- consumer's kill may lose up to the whole batch.
--
-- Changes from the first version: failure messages name the errno; timeouts
-- are checked; try_recv tells a closed channel from an empty one; new and
-- attach check that the channel fits the mapping and that msg_size is sane;
-- stale waiter counts of a killed peer are cleared; send_batch/recv_batch;
-- the hot paths moved to C, which checks the shared header on every call;
-- version 2 (magic "CHN2"): per-record stamps instead of the consumer
-- reading head, tail_seen, the ring zeroed by new(); version 3 (magic
-- "CHN3", same layout): head_waiters and tail_waiters are flags the waker
-- lowers, not counts (a version 2 peer would count into a flag: so the
-- magic changed).
--
-- The fields m, hv, cap, max and fixed of a channel are for reading only.
-- bench/ipc_bench.lua measures a channel against a C prototype of the same
-- protocol (bench/ipc/chanproto.c).
local shm = require "shm"

shm.cdef [[
struct shm_channel {
  uint32_t magic;         /* CHANNEL_MAGIC once initialised               */
  uint32_t capacity;      /* bytes of ring after the header, power of two */
  uint32_t msg_size;      /* every message has this size; 0: any size     */
  uint32_t closed;        /* set to 1 by either side                      */
  uint32_t pad0[12];
  uint32_t head;          /* bytes published by the producer, mod 2^32    */
  uint32_t head_waiters;  /* 0, or 1 + the head a consumer sleeps on     */
  uint32_t tail_seen;     /* the producer's last look at tail             */
  uint32_t pad1[13];
  uint32_t tail;          /* bytes consumed by the consumer, mod 2^32     */
  uint32_t tail_waiters;  /* 0, or 1 + the tail a producer sleeps on     */
  uint32_t pad2[14];
};
]]

local atomic_load, atomic_store = shm.atomic_load, shm.atomic_store
local channel_bind = shm.channel_bind
local mtype, error = math.type, error

local M = {}
M.MAGIC = 0x334e4843        -- "CHN3" (version 3 of the protocol)
M.HEADER = shm.sizeof("struct shm_channel")
local HEADER = M.HEADER
local M32 = 0xFFFFFFFF

--- Bytes a channel of `capacity` takes in a mapping.
function M.size(capacity)
  return HEADER + capacity
end

--- The largest message a channel of `capacity` carries.
function M.max_message(capacity)
  return capacity // 2 - 4
end

-- The channel object over header view hv at `offset` of m.  Its send/recv
-- methods are C functions bound to hv (shm.channel_bind, src/channel.c),
-- which take the channel object where the unbound ones take hv:
--   ch:send(msg [, timeout_s])        ch:recv([timeout_s])
--   ch:try_send(msg)                  ch:try_recv()
--   ch:send_batch(list [, timeout_s]) ch:recv_batch(most [, timeout_s])
-- send_batch publishes head once per run of messages that fit (the
-- consumer is woken once per run) and checks every message before sending
-- any; recv_batch publishes tail once for all it returns.
local function setup(m, offset, hv)
  local cap = hv.capacity
  local ch = { m = m, hv = hv, cap = cap, max = cap // 2 - 4, fixed = hv.msg_size }
  ch.send, ch.try_send, ch.send_batch, ch.recv, ch.try_recv, ch.recv_batch =
    channel_bind(hv)

  --- Closes the channel for both sides; sleepers notice within 50 ms.
  function ch.close()
    atomic_store(hv, "closed", 1)
    shm.futex_wake(hv, "head", "all")
    shm.futex_wake(hv, "tail", "all")
  end

  --- Bytes published and not yet consumed (0 while a killed producer's
  -- last records are consumed and its successor has not sent yet: tail is
  -- then past head).
  function ch.pending_bytes()
    local d = (atomic_load(hv, "head") - atomic_load(hv, "tail")) & M32
    return d <= cap and d or 0
  end

  return ch
end

local function check_offset(offset, level)
  if mtype(offset) ~= "integer" or offset < 0 or offset % 4 ~= 0 then
    error("channel offset must be a non-negative multiple of 4", level + 1)
  end
end

--- Creates a channel at `offset` of mapping m (zeroing header and ring).
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
  m:fill(offset, HEADER + capacity)
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
