-- tests/data/shmtest.lua: what fd_spec, mapping_spec and share_spec share.
-- require "data.shmtest" (LUA_PATH holds tests/?.lua).
local shm = require "shm"
local assert = require "luassert"
local M = {}

-- errno numbers of x86-64 Linux, from the module when errno.c exports them.
M.E = {}
for name, n in pairs { EPERM = 1, ENOENT = 2, EBADF = 9, ENOMEM = 12,
                       EACCES = 13, EBUSY = 16, EEXIST = 17, EINVAL = 22,
                       ENAMETOOLONG = 36, ETIMEDOUT = 110 } do
  M.E[name] = shm[name] or n
end

-- Asserts that the results `...` of a call are the io-style failure triple
-- nil, "prefix...", err: the message starts with `prefix` ("call(arg)" or
-- just "call" for calls without an argument) and names the errno when the
-- module can name it.  `err` may be a list of acceptable errnos.
function M.assert_fail(prefix, err, ...)
  local n = select("#", ...)
  local v, msg, e = ...
  local info = debug.getinfo(2, "Sl")
  local at = ("%s:%d: "):format(info.short_src, info.currentline)
  assert.equal(3, n, at .. "expected the triple nil, msg, errno, got " .. tostring(v))
  assert.is_nil(v, at)
  assert.is_string(msg, at)
  assert.equal(prefix, msg:sub(1, #prefix), at .. "message: " .. tostring(msg))
  if type(err) == "table" then
    local found = false
    for _, x in ipairs(err) do found = found or x == e end
    assert.is_true(found, at .. "unexpected errno " .. tostring(e) .. ": " .. msg)
  else
    assert.equal(err, e, at .. msg)
  end
  if shm.errno_name then
    local name = shm.errno_name(e)
    assert.is_string(name, at)
    assert.truthy(msg:find(": " .. name .. ": ", 1, true), at .. msg)
  end
  return msg, e
end

-- Asserts that fn(...) raises, and that the message contains `pattern`
-- (a plain substring) when one is given.
function M.assert_raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  local info = debug.getinfo(2, "Sl")
  local at = ("%s:%d: "):format(info.short_src, info.currentline)
  assert.is_false(ok, at .. "expected an error, got " .. tostring(err))
  if pattern then
    assert.truthy(tostring(err):find(pattern, 1, true),
                  at .. "error '" .. tostring(err) .. "' lacks '" .. pattern .. "'")
  end
  return err
end

-- This process's id, from /proc/self/stat (works without proc.c).
function M.pid()
  if shm.getpid then return shm.getpid() end
  local f = assert(io.open("/proc/self/stat"))
  local pid = tonumber(f:read("a"):match("^(%d+)"))
  f:close()
  return pid
end

-- The number of open descriptors of this process, asked of the process
-- itself (F_GETFD on 0..1023) after a full collection, so that a file handle
-- a previous spec file dropped cannot close between two counts.  (Listing
-- /proc/PID/fd through a pipe raced with that pipe's own descriptors.)
function M.fd_count()
  collectgarbage()
  collectgarbage()
  local n = 0
  for fd = 0, 1023 do
    if shm.fcntl(fd, shm.F_GETFD) then n = n + 1 end
  end
  return n
end

-- The lines of /proc/self/maps as { lo, hi, perms, path } (addresses are
-- integers; the vsyscall page wraps to a negative one, use math.ult).
function M.maps()
  local list = {}
  for line in io.lines("/proc/self/maps") do
    local lo, hi, perms, path = line:match("^(%x+)%-(%x+) (%S+) %S+ %S+ %S+%s*(.*)$")
    list[#list + 1] = { lo = math.tointeger("0x" .. lo),
                        hi = math.tointeger("0x" .. hi), perms = perms, path = path }
  end
  return list
end

-- The maps entries that intersect [addr, addr+len).
function M.mapped(addr, len)
  local hits = {}
  for _, r in ipairs(M.maps()) do
    if math.ult(addr, r.hi) and math.ult(r.lo, addr + len) then hits[#hits + 1] = r end
  end
  return hits
end

-- The maps entries whose path contains `s` (a memfd shows as /memfd:NAME).
function M.mapped_named(s)
  local hits = {}
  for _, r in ipairs(M.maps()) do
    if r.path:find(s, 1, true) then hits[#hits + 1] = r end
  end
  return hits
end

-- A page-aligned address where `len` bytes are free right now: `preferred`
-- if nothing is mapped there, else one the kernel picks (mapped, then
-- released).
function M.free_address(len, preferred)
  if preferred and #M.mapped(preferred, len) == 0 then return preferred end
  local m = assert(shm.mmap(nil, len, shm.PROT_NONE,
                            shm.MAP_PRIVATE | shm.MAP_ANONYMOUS))
  local a = m:addr()
  m:unmap()
  return a
end

-- A unique memfd name for tracing mappings in /proc/self/maps.
local count = 0
function M.tag(what)
  count = count + 1
  return ("shmlua-%s-%d-%d"):format(what, M.pid(), count)
end

return M
