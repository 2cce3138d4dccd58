--- shm.mailbox: request/reply between two processes through shared memory.
--
--   local mailbox = require "shm.mailbox"
--   local mb = mailbox.new(m, offset, capacity)   -- creates (either side)
--   local mb = mailbox.attach(m, offset)          -- joins
--   client: mb:call(request [, timeout_s])  -> reply | nil, msg, errno
--   server: mb:receive([timeout_s])         -> request | nil, msg, errno
--           mb:reply(reply)                 -> true
--           mb:serve(handler [, timeout_s]) -- receive, reply(handler(req))
--   mb:close()                              -- the peer's waits fail (EPIPE)
--
-- One client and one server.  timeout_s: nil waits forever, else seconds
-- (a number >= 0; anything else raises).  Failures are io-style triples,
-- "mailbox:call: ETIMEDOUT: Connection timed out"; a request or reply that
-- is not a string or is longer than `capacity` raises, as does a reply
-- without a pending request.
--
-- Layout: `struct shm_mailbox` (shm.cdef below, so a C program can join),
-- then `capacity` bytes for the request and `capacity` for the reply.
-- `state` is the futex word: IDLE -> REQUEST (client) -> REPLY (server)
-- -> IDLE (client, once it has copied the reply).  Each transition is
-- published with shm.notify after the data it covers is written, and
-- waited for with shm.wait_change, so both sides spin while the peer is
-- quick and sleep when it is not (src/atomic.c).  `seq` counts calls.
--
-- Timeouts and restarts: a call that timed out leaves its request posted.
-- The next call first lets the server answer it (waiting while the state
-- is REQUEST) and drops that stale reply (state REPLY outside a call), so
-- a reply always answers the request of the same call.  The same holds
-- when the client died mid-call and a new one attached.  A server killed
-- between receive and reply leaves the request posted: its successor
-- receives it again (at-least-once execution of that request).
--
-- Changes from the first version: a call after a timed-out call used to
-- wait for IDLE forever (the stale reply was never dropped); failure
-- messages name the errno; timeouts and reply lengths are checked.
local shm = require "shm"

shm.cdef [[
struct shm_mailbox {
  uint32_t magic;       /* MAILBOX_MAGIC once initialised          */
  uint32_t capacity;    /* bytes of each of the two areas          */
  uint32_t state;       /* 0 idle, 1 request posted, 2 reply posted */
  uint32_t waiters;     /* processes asleep on state               */
  uint32_t closed;      /* set to 1 by either side                 */
  uint32_t req_len;
  uint32_t rep_len;
  uint32_t seq;         /* calls made so far, mod 2^32             */
  uint32_t pad[8];
};
]]

local M = {}
M.MAGIC = 0x584f424d   -- "MBOX"
M.HEADER = shm.sizeof("struct shm_mailbox")
M.IDLE, M.REQUEST, M.REPLY = 0, 1, 2
local SLICE = 0.05

local Mailbox = {}
Mailbox.__index = Mailbox

--- Bytes a mailbox with areas of `capacity` bytes takes in a mapping.
function M.size(capacity)
  return M.HEADER + 2 * capacity
end

local function setup(m, offset, v)
  return setmetatable({ m = m, v = v, cap = v.capacity,
    req = offset + M.HEADER, rep = offset + M.HEADER + v.capacity }, Mailbox)
end

local function check_offset(offset)
  if math.type(offset) ~= "integer" or offset < 0 or offset % 4 ~= 0 then
    error("mailbox offset must be a non-negative multiple of 4", 3)
  end
end

--- Creates a mailbox at `offset` of mapping m (zeroing its header), with
-- request and reply areas of `capacity` bytes each.
function M.new(m, offset, capacity)
  check_offset(offset)
  if math.type(capacity) ~= "integer" or capacity < 1 or capacity > 0x7fffffff then
    error("mailbox capacity must be a positive integer below 2^31", 2)
  end
  if offset + M.size(capacity) > #m then
    error("mailbox does not fit in the mapping", 2)
  end
  local v = shm.view(m, "struct shm_mailbox", offset)
  shm.fill(v, 0, M.HEADER)
  v.capacity = capacity
  shm.atomic_store(v, "magic", M.MAGIC)
  return setup(m, offset, v)
end

--- Joins the mailbox another process created at `offset` of m; raises if
-- there is none (bad magic) or its header makes no sense.
function M.attach(m, offset)
  check_offset(offset)
  if offset + M.HEADER > #m then
    error(("no mailbox at offset %d (the mapping has %d bytes)"):format(offset, #m), 2)
  end
  local v = shm.view(m, "struct shm_mailbox", offset)
  if shm.atomic_load(v, "magic") ~= M.MAGIC then
    error(("no mailbox at offset %d (bad magic)"):format(offset), 2)
  end
  if v.capacity < 1 or offset + M.size(v.capacity) > #m then
    error(("mailbox at offset %d is corrupt"):format(offset), 2)
  end
  return setup(m, offset, v)
end

local EPIPE, ETIMEDOUT = shm.EPIPE or 32, shm.ETIMEDOUT or 110

-- The failure triple: nil, "mailbox:<op>: ENAME: text", errno.
local function fail(op, e, text)
  local name = shm.errno_name and shm.errno_name(e) or tostring(e)
  return nil, ("mailbox:%s: %s: %s"):format(op, name, text or shm.strerror(e)), e
end

local function check_timeout(timeout)
  if timeout ~= nil and (type(timeout) ~= "number" or not (timeout >= 0)) then
    error("mailbox: timeout must be nil or a number of seconds >= 0", 3)
  end
end

local function deadline_of(timeout)
  if timeout == nil or timeout >= 1e9 then return nil end
  return shm.clock() + math.floor(timeout * 1e9)
end

-- Waits until state is `want` (or, with want2, either); returns the state,
-- or the failure triple of `op` on timeout (deadline in ns) or close.
local function wait_for(self, op, deadline, want, want2)
  local v = self.v
  local s = shm.atomic_load(v, "state")
  while s ~= want and s ~= want2 do
    if shm.atomic_load(v, "closed") ~= 0 then
      -- a state posted just before the close still counts
      s = shm.atomic_load(v, "state")
      if s == want or s == want2 then break end
      return fail(op, EPIPE, "mailbox closed")
    end
    local slice = SLICE
    if deadline then
      local left = (deadline - shm.clock()) / 1e9
      if left <= 0 then return fail(op, ETIMEDOUT) end
      if left < slice then slice = left end
    end
    s = shm.wait_change(v, "state", s, slice, "waiters") or shm.atomic_load(v, "state")
  end
  return s
end

local function check(self, s, what)
  if type(s) ~= "string" then
    error(("mailbox: %s must be a string, got %s"):format(what, type(s)), 3)
  end
  if #s > self.cap then
    error(("mailbox: %s of %d bytes exceeds the capacity of %d"):format(what, #s, self.cap), 3)
  end
end

--- Client: posts request, waits for the reply (timeout_s covers both).
function Mailbox:call(request, timeout)
  check(self, request, "request")
  check_timeout(timeout)
  local v = self.v
  local deadline = deadline_of(timeout)
  -- IDLE, or REPLY: the stale answer to a call that timed out (or whose
  -- client died); a stale REQUEST is waited out, then its reply dropped
  local s, err, code = wait_for(self, "call", deadline, M.IDLE, M.REPLY)
  if not s then return nil, err, code end
  if s == M.REPLY then shm.notify(v, "state", M.IDLE, "waiters") end
  if shm.atomic_load(v, "closed") ~= 0 then return fail("call", EPIPE, "mailbox closed") end
  self.m:write(self.req, request)
  v.req_len = #request
  v.seq = (v.seq + 1) & 0xFFFFFFFF
  shm.notify(v, "state", M.REQUEST, "waiters")
  s, err, code = wait_for(self, "call", deadline, M.REPLY)
  if not s then return nil, err, code end
  local n = v.rep_len
  if n > self.cap then error("mailbox: corrupt reply length " .. n, 2) end
  local reply = self.m:read(self.rep, n)
  shm.notify(v, "state", M.IDLE, "waiters")
  return reply
end

--- Server: waits for the next request.
function Mailbox:receive(timeout)
  check_timeout(timeout)
  local ok, err, code = wait_for(self, "receive", deadline_of(timeout), M.REQUEST)
  if not ok then return nil, err, code end
  local n = self.v.req_len
  if n > self.cap then error("mailbox: corrupt request length " .. n, 2) end
  return self.m:read(self.req, n)
end

--- Server: answers the request just received.
function Mailbox:reply(reply)
  check(self, reply, "reply")
  local v = self.v
  if shm.atomic_load(v, "state") ~= M.REQUEST then
    error("mailbox: reply without a pending request", 2)
  end
  self.m:write(self.rep, reply)
  v.rep_len = #reply
  shm.notify(v, "state", M.REPLY, "waiters")
  return true
end

--- Server: one round: receive, then reply with handler(request).
function Mailbox:serve(handler, timeout)
  if type(handler) ~= "function" and not (getmetatable(handler) or {}).__call then
    error("mailbox: serve expects a handler function", 2)
  end
  local req, err, code = self:receive(timeout)
  if not req then return nil, err, code end
  return self:reply(handler(req))
end

--- Closes the mailbox for both sides; sleepers notice within 50 ms.
function Mailbox:close()
  shm.atomic_store(self.v, "closed", 1)
  shm.futex_wake(self.v, "state", "all")
end

return M
