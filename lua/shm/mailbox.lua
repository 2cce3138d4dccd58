--- shm.mailbox: request/reply between two processes through shared memory.
--
--   local mailbox = require "shm.mailbox"
--   local mb = mailbox.new(m, offset, capacity)   -- creates (either side)
--   local mb = mailbox.attach(m, offset)          -- joins
--   client: mb:call(request [, timeout_s])  -> reply | nil, msg, errno
--   server: mb:receive([timeout_s])         -> request | nil, msg, errno
--           mb:reply(reply)
--           mb:serve(handler [, timeout_s]) -- receive, reply(handler(req))
--   mb:close()                              -- the peer's waits fail (EPIPE)
--
-- Layout: `struct shm_mailbox` (shm.cdef below, so a C program can join),
-- then `capacity` bytes for the request and `capacity` for the reply.
-- `state` is the futex word: IDLE -> REQUEST (client) -> REPLY (server)
-- -> IDLE (client, once it has copied the reply).  Each transition is
-- published with shm.notify after the data it covers is written, and
-- waited for with shm.wait_change, so both sides spin while the peer is
-- quick and sleep when it is not (src/atomic.c).  `seq` counts calls, so a
-- client can tell a reply from a stale one after a server restart.
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

function M.new(m, offset, capacity)
  if math.type(capacity) ~= "integer" or capacity < 1 then
    error("mailbox capacity must be a positive integer", 2)
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

function M.attach(m, offset)
  local v = shm.view(m, "struct shm_mailbox", offset)
  if shm.atomic_load(v, "magic") ~= M.MAGIC then
    error(("no mailbox at offset %d (bad magic)"):format(offset), 2)
  end
  if offset + M.size(v.capacity) > #m then
    error(("mailbox at offset %d is corrupt"):format(offset), 2)
  end
  return setup(m, offset, v)
end

-- Waits until state equals `want`; nil, msg, errno on timeout or close.
local function wait_for(self, want, timeout)
  local v = self.v
  local deadline = timeout and shm.clock() + math.floor(timeout * 1e9)
  local s = shm.atomic_load(v, "state")
  while s ~= want do
    if v.closed ~= 0 then return nil, "mailbox closed", shm.EPIPE end
    local slice = SLICE
    if deadline then
      local left = (deadline - shm.clock()) / 1e9
      if left <= 0 then return nil, "mailbox: ETIMEDOUT: timed out", shm.ETIMEDOUT end
      if left < slice then slice = left end
    end
    s = shm.wait_change(v, "state", s, slice, "waiters") or shm.atomic_load(v, "state")
  end
  return true
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
  local ok, err, code = wait_for(self, M.IDLE, timeout)
  if not ok then return nil, err, code end
  local v = self.v
  self.m:write(self.req, request)
  v.req_len = #request
  v.seq = (v.seq + 1) & 0xFFFFFFFF
  shm.notify(v, "state", M.REQUEST, "waiters")
  ok, err, code = wait_for(self, M.REPLY, timeout)
  if not ok then return nil, err, code end
  local reply = self.m:read(self.rep, v.rep_len)
  shm.notify(v, "state", M.IDLE, "waiters")
  return reply
end

--- Server: waits for the next request.
function Mailbox:receive(timeout)
  local ok, err, code = wait_for(self, M.REQUEST, timeout)
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
  local req, err, code = self:receive(timeout)
  if not req then return nil, err, code end
  return self:reply(handler(req))
end

function Mailbox:close()
  shm.atomic_store(self.v, "closed", 1)
  shm.futex_wake(self.v, "state", "all")
end

return M
