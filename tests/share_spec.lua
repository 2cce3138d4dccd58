-- share_spec.lua: two processes share memory through src/fd.c and
-- src/mapping.c: a named object opened by name in a child, and a memfd the
-- child inherits as descriptor 3 (shm.spawn / shm.wait from src/proc.c).
-- The child is `shmlua -e CODE`: it maps, checks, writes a reply into the
-- shared memory and exits with a code saying what went wrong (0: nothing).
-- Every wait is bounded; a child still running then is killed.
local shm = require "shm"
local helper = require "helper"
local u = require "data.shmtest"
local E, fail, raises = u.E, u.assert_fail, u.assert_raises

local PS = shm.getpagesize()
local RW = shm.PROT_READ | shm.PROT_WRITE
local TIMEOUT = 30     -- seconds; a sanitizer build starts slowly
local REPLY = 2048     -- where the child writes its reply

-- The child's prelude: `reply(text, code)` writes text at REPLY (when the
-- mapping `m` exists) and exits with code.
local PRELUDE = ([[
local shm = require "shm"
local m
local function reply(text, code)
  if m then m:write(%d, text .. "\0") end
  if code ~= 0 then io.stderr:write("child: ", text, "\n") end
  os.exit(code)
end
]]):format(REPLY)

-- Runs `code` (after the prelude, with `fmt` arguments) in a child shmlua
-- with spawn options `opts`; returns how it ended and its code or signal.
local function child(opts, code, ...)
  local src = PRELUDE .. code:format(...)
  local pid, err = shm.spawn({ helper.shmlua, "-e", src }, opts)
  assert(pid, err)
  local how, status, e = shm.wait(pid, TIMEOUT)
  if how == nil then
    shm.kill(pid, 9)
    shm.wait(pid, 5)
    error(("child %d still running after %d s (%s, %s)"):format(pid, TIMEOUT, status, e))
  end
  return how, status
end

-- The reply the child left at REPLY (up to its NUL).
local function reply_of(m)
  return (m:read(REPLY, 256):match("^[^\0]*"))
end

local spawn_it = shm.spawn and it or pending

describe("two processes", function()
  local fds, names, kept = {}, {}, {}
  local fd_start

  local function name(tag)
    local n = helper.name(tag)
    names[#names + 1] = n
    return n
  end
  local function track(fd) fds[fd] = true return fd end
  local function keep(m) kept[#kept + 1] = m return m end
  -- A random-ish token, so a stale object could not pass for a fresh one.
  local function token(what)
    return ("%s-%d-%d"):format(what, u.pid(), math.random(1, 1 << 30))
  end

  setup(function() fd_start = u.fd_count() end)

  after_each(function()
    for _, m in ipairs(kept) do pcall(shm.munmap, m) end
    kept = {}
    for fd in pairs(fds) do shm.close(fd) end
    fds = {}
    for _, n in ipairs(names) do shm.shm_unlink(n) end
    names = {}
  end)

  spawn_it("a named object written by the parent is read by a child", function()
    local n, tok = name("share"), token("named")
    local fd = track(assert(shm.shm_open(n, shm.O_RDWR | shm.O_CREAT | shm.O_EXCL)))
    assert.is_true(shm.ftruncate(fd, PS))
    local m = keep(assert(shm.mmap(nil, PS, RW, shm.MAP_SHARED, fd, 0)))
    m:write(0, tok)
    local how, code = child(nil, [[
      local fd, msg = shm.shm_open(%q, shm.O_RDWR)
      if not fd then reply(msg, 2) end
      local st = assert(shm.fstat(fd))
      if st.size ~= %d then reply("size " .. st.size, 3) end
      m = assert(shm.mmap(nil, st.size, shm.PROT_READ | shm.PROT_WRITE,
                          shm.MAP_SHARED, fd, 0))
      local got = m:read(0, %d)
      if got ~= %q then reply("read " .. got, 4) end
      reply("pong " .. got, 0)
    ]], n, PS, #tok, tok)
    assert.equal("exited", how)
    assert.equal(0, code, reply_of(m))
    assert.equal("pong " .. tok, reply_of(m))
  end)

  spawn_it("a child that finds no such name reports ENOENT", function()
    local n = name("absent")
    local how, code = child(nil, [[
      local fd, msg, e = shm.shm_open(%q, shm.O_RDWR)
      if fd then reply("opened", 1) end
      os.exit(e)
    ]], n)
    assert.equal("exited", how)
    assert.equal(E.ENOENT, code)
  end)

  spawn_it("a child's unlink removes the name, not the parent's mapping", function()
    local n, tok = name("unlinked"), token("unlink")
    local fd = track(assert(shm.shm_open(n, shm.O_RDWR | shm.O_CREAT | shm.O_EXCL)))
    assert.is_true(shm.ftruncate(fd, PS))
    local m = keep(assert(shm.mmap(nil, PS, RW, shm.MAP_SHARED, fd, 0)))
    m:write(0, tok)
    local how, code = child(nil, [[
      local ok, msg = shm.shm_unlink(%q)
      os.exit(ok and 0 or 5)
    ]], n)
    assert.equal("exited", how)
    assert.equal(0, code)
    fail("shm_open(" .. n .. ")", E.ENOENT, shm.shm_open(n, shm.O_RDWR))
    assert.equal(tok, m:read(0, #tok))
  end)

  spawn_it("a memfd inherited as descriptor 3 is the same object", function()
    local tag, tok = u.tag("fd3"), token("fd3")
    local fd = track(assert(shm.memfd_create(tag, shm.MFD_ALLOW_SEALING)))
    assert.is_true(shm.ftruncate(fd, 2 * PS))
    local m = keep(assert(shm.mmap(nil, 2 * PS, RW, shm.MAP_SHARED, fd, 0)))
    m:write(0, tok)
    m:write(PS, "second page")
    -- a descriptor the child is not given: it must not have it
    local other = track(assert(shm.memfd_create("not-given")))
    local hidden = track(shm.fcntl(other, shm.F_DUPFD_CLOEXEC, 60))
    local how, code = child({ fds = { [3] = fd } }, [[
      local st, msg = shm.fstat(3)
      if not st then reply(msg, 2) end
      if st.ino ~= %d or st.size ~= %d then reply("another object", 3) end
      m = assert(shm.mmap(nil, st.size, shm.PROT_READ | shm.PROT_WRITE,
                          shm.MAP_SHARED, 3, 0))
      if m:read(0, %d) ~= %q then reply("read " .. m:read(0, 40), 4) end
      if m:read(%d, 11) ~= "second page" then reply("page 2", 5) end
      local leak, _, e = shm.fstat(%d)
      if leak or e ~= %d then reply("inherited fd %d", 6) end
      reply("pong " .. m:read(0, %d), 0)
    ]], assert(shm.fstat(fd)).ino, 2 * PS, #tok, tok, PS, hidden, E.EBADF, hidden, #tok)
    assert.equal("exited", how)
    assert.equal(0, code, reply_of(m))
    assert.equal("pong " .. tok, reply_of(m))
  end)

  spawn_it("seals set by the parent hold in the child", function()
    local fd = track(assert(shm.memfd_create(u.tag("sealed"), shm.MFD_ALLOW_SEALING)))
    assert.is_true(shm.ftruncate(fd, PS))
    do
      local w <close> = assert(shm.mmap(nil, PS, RW, shm.MAP_SHARED, fd, 0))
      w:write(0, "frozen")
    end
    local seals = shm.F_SEAL_WRITE | shm.F_SEAL_GROW | shm.F_SEAL_SHRINK | shm.F_SEAL_SEAL
    assert.is_true(shm.add_seals(fd, seals))
    local how, code = child({ fds = { [3] = fd } }, [[
      if shm.get_seals(3) ~= %d then os.exit(2) end
      local w, _, e = shm.mmap(nil, %d, shm.PROT_READ | shm.PROT_WRITE, shm.MAP_SHARED, 3, 0)
      if w or e ~= %d then os.exit(3) end
      local ok, _, e2 = shm.ftruncate(3, 0)
      if ok or e2 ~= %d then os.exit(4) end
      local r = assert(shm.mmap(nil, %d, shm.PROT_READ, shm.MAP_SHARED, 3, 0))
      os.exit(r:read(0, 6) == "frozen" and 0 or 5)
    ]], seals, PS, E.EPERM, E.EPERM, PS)
    assert.equal("exited", how)
    assert.equal(0, code)
  end)

  spawn_it("a child truncating the object makes the parent's next access raise", function()
    local fd = track(assert(shm.memfd_create(u.tag("trunc"))))
    assert.is_true(shm.ftruncate(fd, PS))
    local m = keep(assert(shm.mmap(nil, PS, RW, shm.MAP_SHARED, fd, 0)))
    m:write(0, "alive")
    local how, code = child({ fds = { [3] = fd } }, [[
      os.exit(shm.ftruncate(3, 0) and 0 or 2)
    ]])
    assert.equal("exited", how)
    assert.equal(0, code)
    assert.equal(0, assert(shm.fstat(fd)).size)
    raises("SIGBUS", m.read, m, 0, 5)
    raises("faulted", m.read, m, 0, 5)
  end)

  it("leaves no descriptor open (last test of the file)", function()
    for _, m in ipairs(kept) do pcall(shm.munmap, m) end
    kept = {}
    for fd in pairs(fds) do shm.close(fd) end
    fds = {}
    collectgarbage()
    assert.equal(fd_start, u.fd_count())
  end)
end)
