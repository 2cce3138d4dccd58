-- fd_spec.lua: descriptors and shared-memory objects (src/fd.c): shm_open,
-- shm_unlink, shm_anonymous, memfd_create, ftruncate, close, fstat, fchown,
-- fchmod, fcntl, add_seals, get_seals, getpagesize and the constants.
local shm = require "shm"
local helper = require "helper"
local u = require "data.shmtest"
local E, fail, raises = u.E, u.assert_fail, u.assert_raises

local function oct(s) return tonumber(s, 8) end
local RW = shm.PROT_READ | shm.PROT_WRITE
local PS = shm.getpagesize()

describe("fd.c", function()
  local names, fds = {}, {}
  local fd_start

  -- A fresh object name, unlinked after the test whatever happens.
  local function name(tag)
    local n = helper.name(tag)
    names[#names + 1] = n
    return n
  end
  -- Remembers an fd so after_each closes it; passes every result through.
  local function track(fd, ...)
    if math.type(fd) == "integer" then fds[fd] = true end
    return fd, ...
  end
  -- Closes an fd the test owns, now (after_each will not touch it again).
  local function closefd(fd)
    fds[fd] = nil
    assert.is_true(shm.close(fd))
  end
  local function create(tag, mode)
    local n = name(tag)
    local fd = track(assert(shm.shm_open(n, shm.O_RDWR | shm.O_CREAT | shm.O_EXCL,
                                         mode or oct("600"))))
    return fd, n
  end
  local function sealable()
    return track(assert(shm.memfd_create("fd-spec", shm.MFD_ALLOW_SEALING)))
  end
  -- An fd number that is certainly closed: opened, then closed.
  local function closed_fd()
    local fd = assert(shm.memfd_create("closed"))
    assert.is_true(shm.close(fd))
    return fd
  end

  setup(function() fd_start = u.fd_count() end)

  after_each(function()
    for fd in pairs(fds) do shm.close(fd) end
    fds = {}
    for _, n in ipairs(names) do shm.shm_unlink(n) end
    names = {}
  end)

  describe("shm_open and shm_unlink", function()
    it("create an object in /dev/shm and remove it", function()
      local fd, n = create("open")
      assert.equal("integer", math.type(fd))
      assert.is_true(fd >= 0)
      local f = io.open("/dev/shm" .. n, "rb")
      assert.is_not_nil(f)
      f:close()
      local st = assert(shm.fstat(fd))
      assert.equal(shm.S_IFREG, st.mode & shm.S_IFMT)
      assert.equal(oct("600"), st.mode & oct("7777"))
      assert.equal(0, st.size)
      assert.equal(1, st.nlink)
      assert.is_true(shm.shm_unlink(n))
      assert.is_nil(io.open("/dev/shm" .. n, "rb"))
      assert.equal(0, assert(shm.fstat(fd)).nlink)   -- the fd still works
    end)

    it("opens close-on-exec, with oflag O_RDWR and mode 0600 by default", function()
      local n = name("default")
      local fd = track(assert(shm.shm_open(n, shm.O_RDWR | shm.O_CREAT)))
      assert.equal(shm.FD_CLOEXEC, shm.fcntl(fd, shm.F_GETFD) & shm.FD_CLOEXEC)
      assert.equal(oct("600"), assert(shm.fstat(fd)).mode & oct("7777"))
      local again = track(assert(shm.shm_open(n)))
      assert.equal(shm.O_RDWR, shm.fcntl(again, shm.F_GETFL) & shm.O_ACCMODE)
      assert.equal(shm.FD_CLOEXEC, shm.fcntl(again, shm.F_GETFD) & shm.FD_CLOEXEC)
    end)

    it("two descriptors of one name are one object", function()
      local fd, n = create("same")
      local other = track(assert(shm.shm_open(n, shm.O_RDONLY)))
      assert.is_true(shm.ftruncate(fd, 3 * PS))
      local a, b = assert(shm.fstat(fd)), assert(shm.fstat(other))
      assert.equal(3 * PS, b.size)
      assert.equal(a.ino, b.ino)
      assert.equal(a.dev, b.dev)
      assert.equal(shm.O_RDONLY, shm.fcntl(other, shm.F_GETFL) & shm.O_ACCMODE)
    end)

    it("O_TRUNC empties an existing object", function()
      local fd, n = create("trunc")
      assert.is_true(shm.ftruncate(fd, PS))
      local again = track(assert(shm.shm_open(n, shm.O_RDWR | shm.O_TRUNC)))
      assert.equal(0, assert(shm.fstat(again)).size)
    end)

    it("fail with EEXIST under O_CREAT|O_EXCL when the name exists", function()
      local _, n = create("excl")
      fail("shm_open(" .. n .. ")", E.EEXIST,
           track(shm.shm_open(n, shm.O_RDWR | shm.O_CREAT | shm.O_EXCL, oct("600"))))
    end)

    it("fail with ENOENT for a missing name", function()
      local n = name("missing")
      fail("shm_open(" .. n .. ")", E.ENOENT, track(shm.shm_open(n, shm.O_RDWR)))
      fail("shm_unlink(" .. n .. ")", E.ENOENT, shm.shm_unlink(n))
    end)

    it("shm_unlink twice fails the second time with ENOENT", function()
      local _, n = create("unlink2")
      assert.is_true(shm.shm_unlink(n))
      fail("shm_unlink(" .. n .. ")", E.ENOENT, shm.shm_unlink(n))
    end)

    it("fail with EINVAL for names glibc refuses", function()
      local flags = shm.O_RDWR | shm.O_CREAT
      fail("shm_open(/a/b)", E.EINVAL, track(shm.shm_open("/a/b", flags)))
      fail("shm_open()", E.EINVAL, track(shm.shm_open("", flags)))
      fail("shm_open(/)", E.EINVAL, track(shm.shm_open("/", flags)))
      -- glibc's shm_unlink does not check the name: the lookup fails instead
      fail("shm_unlink(/a/b)", { E.EINVAL, E.ENOENT }, shm.shm_unlink("/a/b"))
      local long = "/" .. ("n"):rep(300)
      fail("shm_open(" .. long .. ")", { E.EINVAL, E.ENAMETOOLONG },
           track(shm.shm_open(long, flags)))
    end)

    it("raise on bad arguments", function()
      local n = name("badargs")
      raises("string expected", shm.shm_open)
      raises("string expected", shm.shm_open, {})
      raises("NUL", shm.shm_open, n .. "\0tail", shm.O_RDWR | shm.O_CREAT)
      raises("NUL", shm.shm_unlink, n .. "\0tail")
      raises("number expected", shm.shm_open, n, "rw")
      raises("number has no integer representation", shm.shm_open, n, 1.5)
      raises("out of range", shm.shm_open, n, 1 << 40)
      raises("mode", shm.shm_open, n, shm.O_RDWR | shm.O_CREAT, -1)
      raises("mode", shm.shm_open, n, shm.O_RDWR | shm.O_CREAT, oct("10000"))
      raises("string expected", shm.shm_unlink)
      -- none of those created anything
      assert.is_nil(io.open("/dev/shm" .. n, "rb"))
      assert.is_nil(io.open("/dev/shm" .. n .. "tail", "rb"))
    end)
  end)

  describe("shm_anonymous", function()
    it("gives a close-on-exec memfd that allows sealing", function()
      local fd = track(assert(shm.shm_anonymous()))
      assert.equal("integer", math.type(fd))
      assert.equal(shm.FD_CLOEXEC, shm.fcntl(fd, shm.F_GETFD) & shm.FD_CLOEXEC)
      assert.equal(0, shm.get_seals(fd))
      local st = assert(shm.fstat(fd))
      assert.equal(0, st.size)
      assert.equal(shm.S_IFREG, st.mode & shm.S_IFMT)
      assert.is_true(shm.add_seals(fd, shm.F_SEAL_SHRINK))
      assert.equal(shm.F_SEAL_SHRINK, shm.get_seals(fd))
    end)

    it("gives a new object every call", function()
      local a, b = track(assert(shm.shm_anonymous())), track(assert(shm.shm_anonymous()))
      assert.are_not.equal(a, b)
      assert.are_not.equal(assert(shm.fstat(a)).ino, assert(shm.fstat(b)).ino)
    end)
  end)

  describe("memfd_create", function()
    it("is close-on-exec and unsealable by default", function()
      local fd = track(assert(shm.memfd_create("plain")))
      assert.equal(shm.FD_CLOEXEC, shm.fcntl(fd, shm.F_GETFD) & shm.FD_CLOEXEC)
      assert.equal(shm.F_SEAL_SEAL, shm.get_seals(fd))
      fail("add_seals(" .. fd .. ")", E.EPERM, shm.add_seals(fd, shm.F_SEAL_GROW))
    end)

    it("allows sealing with MFD_ALLOW_SEALING, still close-on-exec", function()
      local fd = sealable()
      assert.equal(0, shm.get_seals(fd))
      assert.equal(shm.FD_CLOEXEC, shm.fcntl(fd, shm.F_GETFD) & shm.FD_CLOEXEC)
    end)

    it("names the object after its name (seen in /proc/self/fd)", function()
      local tag = u.tag("memfdname")
      local fd = track(assert(shm.memfd_create(tag)))
      local f = assert(io.popen("readlink /proc/" .. u.pid() .. "/fd/" .. fd))
      local link = f:read("a")
      f:close()
      assert.truthy(link:find("/memfd:" .. tag, 1, true), link)
    end)

    it("fails with EINVAL for unknown flags or a name too long", function()
      fail("memfd_create(x)", E.EINVAL, track(shm.memfd_create("x", 0x40000000)))
      local long = ("m"):rep(250)   -- the kernel allows 249 bytes
      fail("memfd_create(" .. long .. ")", E.EINVAL, track(shm.memfd_create(long)))
      track(assert(shm.memfd_create(("m"):rep(249))))
    end)

    it("raises on bad arguments", function()
      raises("string expected", shm.memfd_create)
      raises("string expected", shm.memfd_create, {})
      raises("NUL", shm.memfd_create, "a\0b")
      raises("number expected", shm.memfd_create, "x", "cloexec")
      raises("out of range", shm.memfd_create, "x", 1 << 40)
    end)
  end)

  describe("ftruncate", function()
    it("sets the size, up and down", function()
      local fd = create("ftrunc")
      assert.is_true(shm.ftruncate(fd, 5 * PS + 1))
      assert.equal(5 * PS + 1, assert(shm.fstat(fd)).size)
      assert.is_true(shm.ftruncate(fd, 7))
      assert.equal(7, assert(shm.fstat(fd)).size)
      assert.is_true(shm.ftruncate(fd, 0))
      assert.equal(0, assert(shm.fstat(fd)).size)
    end)

    it("fails with EBADF on a closed fd", function()
      local fd = closed_fd()
      fail("ftruncate(" .. fd .. ")", E.EBADF, shm.ftruncate(fd, PS))
    end)

    it("fails with EINVAL on a descriptor not open for writing", function()
      local _, n = create("ftrunc-ro")
      local ro = track(assert(shm.shm_open(n, shm.O_RDONLY)))
      fail("ftruncate(" .. ro .. ")", E.EINVAL, shm.ftruncate(ro, PS))
    end)

    it("raises on bad arguments", function()
      local fd = create("ftrunc-bad")
      raises("non-negative", shm.ftruncate, fd, -1)
      raises("number expected", shm.ftruncate, fd)
      raises("number has no integer representation", shm.ftruncate, fd, 0.5)
      raises("not a file descriptor", shm.ftruncate, -1, 0)
      raises("not a file descriptor", shm.ftruncate, 1 << 40, 0)
      raises("number expected", shm.ftruncate, "fd", 0)
      assert.equal(0, assert(shm.fstat(fd)).size)
    end)
  end)

  describe("close", function()
    it("closes once; the second time fails with EBADF", function()
      local fd = assert(shm.memfd_create("close2"))
      assert.is_true(shm.close(fd))
      fail("close(" .. fd .. ")", E.EBADF, shm.close(fd))
      fail("fstat(" .. fd .. ")", E.EBADF, shm.fstat(fd))
    end)

    it("raises on bad arguments", function()
      raises("number expected", shm.close)
      raises("number expected", shm.close, "three")
      raises("not a file descriptor", shm.close, -1)
      raises("not a file descriptor", shm.close, 1 << 33)
      raises("number has no integer representation", shm.close, 3.5)
    end)
  end)

  describe("fstat", function()
    it("reports every field with its type", function()
      local fd = create("fstat")
      assert.is_true(shm.ftruncate(fd, 3 * PS))
      local st = assert(shm.fstat(fd))
      for _, k in ipairs { "size", "mode", "uid", "gid", "ino", "dev", "nlink",
                           "blksize", "blocks" } do
        assert.equal("integer", math.type(st[k]), k)
      end
      for _, k in ipairs { "atime", "mtime", "ctime" } do
        assert.equal("number", type(st[k]), k)
        assert.is_true(st[k] > 1e9, k)   -- seconds since 1970, after 2001
      end
      assert.equal(3 * PS, st.size)
      assert.is_true(st.blksize > 0)
      assert.is_true(st.blocks >= 0)
    end)

    it("sees ownership as the creating user", function()
      local out = helper.run("id -u; id -g")
      local uid, gid = out:match("^(%d+)%s+(%d+)")
      local st = assert(shm.fstat(create("owner")))
      assert.equal(tonumber(uid), st.uid)
      assert.equal(tonumber(gid), st.gid)
    end)

    it("fails with EBADF on a closed fd", function()
      local fd = closed_fd()
      fail("fstat(" .. fd .. ")", E.EBADF, shm.fstat(fd))
    end)

    it("raises on bad arguments", function()
      raises("number expected", shm.fstat)
      raises("not a file descriptor", shm.fstat, -3)
    end)
  end)

  describe("fchmod", function()
    it("changes the mode bits", function()
      local fd = create("chmod")
      assert.is_true(shm.fchmod(fd, oct("640")))
      local st = assert(shm.fstat(fd))
      assert.equal(oct("640"), st.mode & oct("7777"))
      assert.equal(shm.S_IFREG, st.mode & shm.S_IFMT)
      assert.is_true(shm.fchmod(fd, shm.S_IRUSR))
      assert.equal(shm.S_IRUSR, assert(shm.fstat(fd)).mode & oct("7777"))
    end)

    it("fails with EBADF on a closed fd", function()
      local fd = closed_fd()
      fail("fchmod(" .. fd .. ")", E.EBADF, shm.fchmod(fd, oct("600")))
    end)

    it("raises on bad arguments", function()
      local fd = create("chmod-bad")
      raises("mode", shm.fchmod, fd, -1)
      raises("mode", shm.fchmod, fd, oct("10000"))
      raises("number expected", shm.fchmod, fd)
      raises("number expected", shm.fchmod, fd, "rw")
      assert.equal(oct("600"), assert(shm.fstat(fd)).mode & oct("7777"))
    end)
  end)

  describe("fchown", function()
    it("to the own uid and gid succeeds, and -1 keeps an id", function()
      local fd = create("chown")
      local st = assert(shm.fstat(fd))
      assert.is_true(shm.fchown(fd, st.uid, st.gid))
      assert.is_true(shm.fchown(fd, -1, -1))
      local after = assert(shm.fstat(fd))
      assert.equal(st.uid, after.uid)
      assert.equal(st.gid, after.gid)
    end)

    it("to another user works as root and fails with EPERM otherwise", function()
      local fd = create("chown-other")
      local st = assert(shm.fstat(fd))
      if st.uid == 0 then
        assert.is_true(shm.fchown(fd, 12345, -1))
        local after = assert(shm.fstat(fd))
        assert.equal(12345, after.uid)
        assert.equal(st.gid, after.gid)
      else
        fail("fchown(" .. fd .. ")", E.EPERM, shm.fchown(fd, st.uid + 1, -1))
      end
    end)

    it("fails with EBADF on a closed fd", function()
      local fd = closed_fd()
      fail("fchown(" .. fd .. ")", E.EBADF, shm.fchown(fd, -1, -1))
    end)

    it("raises on bad arguments", function()
      local fd = create("chown-bad")
      raises("uid", shm.fchown, fd, -2, 0)
      raises("uid", shm.fchown, fd, 1 << 32, 0)
      raises("gid", shm.fchown, fd, 0, -2)
      raises("gid", shm.fchown, fd, 0, 1 << 32)
      raises("number expected", shm.fchown, fd, 0)
    end)
  end)

  describe("fcntl", function()
    it("gets and sets descriptor flags", function()
      local fd = track(assert(shm.memfd_create("fcntl")))
      assert.equal(shm.FD_CLOEXEC, shm.fcntl(fd, shm.F_GETFD))
      assert.equal(0, shm.fcntl(fd, shm.F_SETFD, 0))
      assert.equal(0, shm.fcntl(fd, shm.F_GETFD))
      assert.equal(0, shm.fcntl(fd, shm.F_SETFD, shm.FD_CLOEXEC))
      assert.equal(shm.FD_CLOEXEC, shm.fcntl(fd, shm.F_GETFD))
      assert.equal(shm.O_RDWR, shm.fcntl(fd, shm.F_GETFL) & shm.O_ACCMODE)
    end)

    it("duplicates at or above a number", function()
      local fd = track(assert(shm.memfd_create("dup")))
      local dup = track(shm.fcntl(fd, shm.F_DUPFD_CLOEXEC, 100))
      assert.is_true(dup >= 100)
      assert.equal(shm.FD_CLOEXEC, shm.fcntl(dup, shm.F_GETFD))
      assert.equal(assert(shm.fstat(fd)).ino, assert(shm.fstat(dup)).ino)
    end)

    it("adds and reads seals", function()
      local fd = sealable()
      assert.equal(0, shm.fcntl(fd, shm.F_ADD_SEALS, shm.F_SEAL_GROW))
      assert.equal(shm.F_SEAL_GROW, shm.fcntl(fd, shm.F_GET_SEALS))
    end)

    it("raises for commands it does not support", function()
      local fd = track(assert(shm.memfd_create("fcntl-bad")))
      raises("unsupported fcntl command", shm.fcntl, fd, 5)     -- F_GETLK
      raises("unsupported fcntl command", shm.fcntl, fd, 6, 0)  -- F_SETLK
      raises("unsupported fcntl command", shm.fcntl, fd, 36)    -- F_OFD_GETLK
      raises("unsupported fcntl command", shm.fcntl, fd, 99999)
      raises("out of range", shm.fcntl, fd, 1 << 40)
      raises("number expected", shm.fcntl, fd)
      raises("number expected", shm.fcntl, fd, shm.F_SETFD)     -- argument missing
      raises("out of range", shm.fcntl, fd, shm.F_SETFD, 1 << 40)
      assert.equal(shm.FD_CLOEXEC, shm.fcntl(fd, shm.F_GETFD))
    end)

    it("fails with EBADF on a closed fd and EINVAL on a bad argument", function()
      local fd = closed_fd()
      fail("fcntl(" .. fd .. ")", E.EBADF, shm.fcntl(fd, shm.F_GETFD))
      local open = track(assert(shm.memfd_create("fcntl-inval")))
      fail("fcntl(" .. open .. ")", E.EINVAL, track(shm.fcntl(open, shm.F_DUPFD, -1)))
    end)
  end)

  describe("seals", function()
    it("accumulate and read back", function()
      local fd = sealable()
      assert.is_true(shm.add_seals(fd, shm.F_SEAL_SHRINK))
      assert.is_true(shm.add_seals(fd, shm.F_SEAL_GROW))
      assert.equal(shm.F_SEAL_SHRINK | shm.F_SEAL_GROW, shm.get_seals(fd))
    end)

    it("F_SEAL_GROW: growing fails with EPERM, shrinking works", function()
      local fd = sealable()
      assert.is_true(shm.ftruncate(fd, 2 * PS))
      assert.is_true(shm.add_seals(fd, shm.F_SEAL_GROW))
      fail("ftruncate(" .. fd .. ")", E.EPERM, shm.ftruncate(fd, 3 * PS))
      assert.equal(2 * PS, assert(shm.fstat(fd)).size)
      assert.is_true(shm.ftruncate(fd, 2 * PS))
      assert.is_true(shm.ftruncate(fd, PS))
      assert.equal(PS, assert(shm.fstat(fd)).size)
    end)

    it("F_SEAL_SHRINK: shrinking fails with EPERM, growing works", function()
      local fd = sealable()
      assert.is_true(shm.ftruncate(fd, 2 * PS))
      assert.is_true(shm.add_seals(fd, shm.F_SEAL_SHRINK))
      fail("ftruncate(" .. fd .. ")", E.EPERM, shm.ftruncate(fd, PS))
      fail("ftruncate(" .. fd .. ")", E.EPERM, shm.ftruncate(fd, 0))
      assert.is_true(shm.ftruncate(fd, 4 * PS))
      assert.equal(4 * PS, assert(shm.fstat(fd)).size)
    end)

    it("F_SEAL_WRITE fails with EBUSY while a writable shared mapping exists", function()
      local fd = sealable()
      assert.is_true(shm.ftruncate(fd, PS))
      local m = assert(shm.mmap(nil, PS, RW, shm.MAP_SHARED, fd, 0))
      assert.is_true(m:write(0, "before"))
      fail("add_seals(" .. fd .. ")", E.EBUSY, shm.add_seals(fd, shm.F_SEAL_WRITE))
      assert.equal(0, shm.get_seals(fd))
      m:unmap()
      assert.is_true(shm.add_seals(fd, shm.F_SEAL_WRITE))
      -- sealed: no writable shared mapping any more, a read-only one is fine
      fail("mmap(", E.EPERM, shm.mmap(nil, PS, RW, shm.MAP_SHARED, fd, 0))
      local ro = assert(shm.mmap(nil, PS, shm.PROT_READ, shm.MAP_SHARED, fd, 0))
      assert.equal("before", ro:read(0, 6))
      fail("mprotect", E.EACCES, shm.mprotect(ro, RW))
      assert.equal("r--", tostring(ro):match(", (...), shared$"))
      ro:unmap()
      -- a private writable mapping copies on write and leaves the object alone
      local priv = assert(shm.mmap(nil, PS, RW, shm.MAP_PRIVATE, fd, 0))
      assert.is_true(priv:write(0, "AFTER!"))
      ro = assert(shm.mmap(nil, PS, shm.PROT_READ, shm.MAP_SHARED, fd, 0))
      assert.equal("before", ro:read(0, 6))
      priv:unmap()
      ro:unmap()
    end)

    it("F_SEAL_FUTURE_WRITE keeps existing mappings writable, refuses new ones", function()
      local fd = sealable()
      assert.is_true(shm.ftruncate(fd, PS))
      local m = assert(shm.mmap(nil, PS, RW, shm.MAP_SHARED, fd, 0))
      assert.is_true(shm.add_seals(fd, shm.F_SEAL_FUTURE_WRITE))
      assert.is_true(m:write(0, "still"))
      assert.equal("still", m:read(0, 5))
      fail("mmap(", E.EPERM, shm.mmap(nil, PS, RW, shm.MAP_SHARED, fd, 0))
      m:unmap()
    end)

    it("F_SEAL_SEAL forbids further seals", function()
      local fd = sealable()
      assert.is_true(shm.add_seals(fd, shm.F_SEAL_SEAL))
      fail("add_seals(" .. fd .. ")", E.EPERM, shm.add_seals(fd, shm.F_SEAL_GROW))
      assert.equal(shm.F_SEAL_SEAL, shm.get_seals(fd))
    end)

    it("fail with EPERM on a memfd without MFD_ALLOW_SEALING or a named object", function()
      local plain = track(assert(shm.memfd_create("nosealing", 0)))
      fail("add_seals(" .. plain .. ")", E.EPERM, shm.add_seals(plain, shm.F_SEAL_GROW))
      local named = create("seal-named")
      fail("add_seals(" .. named .. ")", E.EPERM, shm.add_seals(named, shm.F_SEAL_GROW))
    end)

    it("fail with EINVAL for unknown seal bits and EBADF on a closed fd", function()
      local fd = sealable()
      fail("add_seals(" .. fd .. ")", E.EINVAL, shm.add_seals(fd, 0x4000))
      local gone = closed_fd()
      fail("add_seals(" .. gone .. ")", E.EBADF, shm.add_seals(gone, shm.F_SEAL_GROW))
      fail("get_seals(" .. gone .. ")", E.EBADF, shm.get_seals(gone))
    end)

    it("raise on bad arguments", function()
      local fd = sealable()
      raises("number expected", shm.add_seals, fd)
      raises("number expected", shm.add_seals, fd, "grow")
      raises("out of range", shm.add_seals, fd, 1 << 40)
      raises("not a file descriptor", shm.add_seals, -1, shm.F_SEAL_GROW)
      raises("not a file descriptor", shm.get_seals, -1)
      raises("number expected", shm.get_seals)
      assert.equal(0, shm.get_seals(fd))
    end)
  end)

  describe("getpagesize", function()
    it("is the system page size", function()
      local out = helper.run("getconf PAGESIZE")
      assert.equal(tonumber(out:match("%d+")), shm.getpagesize())
      assert.equal("integer", math.type(shm.getpagesize()))
      assert.equal(0, PS & (PS - 1))
    end)
  end)

  describe("constants", function()
    it("carry the Linux values under their C names", function()
      local want = {
        O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_ACCMODE = 3, O_CREAT = 0x40,
        O_EXCL = 0x80, O_TRUNC = 0x200, O_CLOEXEC = 0x80000,
        S_IRWXU = oct("700"), S_IRUSR = oct("400"), S_IWUSR = oct("200"),
        S_IXUSR = oct("100"), S_IRGRP = oct("40"), S_IROTH = oct("4"),
        S_IFMT = oct("170000"), S_IFREG = oct("100000"),
        MFD_CLOEXEC = 1, MFD_ALLOW_SEALING = 2, MFD_HUGETLB = 4,
        F_DUPFD = 0, F_GETFD = 1, F_SETFD = 2, F_GETFL = 3, F_SETFL = 4,
        F_DUPFD_CLOEXEC = 1030, F_ADD_SEALS = 1033, F_GET_SEALS = 1034,
        F_SEAL_SEAL = 1, F_SEAL_SHRINK = 2, F_SEAL_GROW = 4, F_SEAL_WRITE = 8,
        F_SEAL_FUTURE_WRITE = 16, FD_CLOEXEC = 1,
      }
      for k, v in pairs(want) do assert.equal(v, shm[k], k) end
      for _, k in ipairs { "O_APPEND", "O_NONBLOCK", "O_NOFOLLOW", "O_DIRECTORY",
                           "O_SYNC", "O_DSYNC", "O_NOCTTY", "S_IWGRP", "S_IXGRP",
                           "S_IRWXG", "S_IRWXO", "S_IWOTH", "S_IXOTH", "S_ISUID",
                           "S_ISGID", "S_ISVTX", "S_IFDIR", "S_IFCHR", "S_IFBLK",
                           "S_IFIFO", "S_IFLNK", "S_IFSOCK", "F_GETOWN", "F_SETOWN",
                           "F_GETSIG", "F_SETSIG", "F_GETLEASE", "F_SETLEASE",
                           "F_NOTIFY", "F_GETPIPE_SZ", "F_SETPIPE_SZ" } do
        assert.equal("integer", math.type(shm[k]), k)
      end
    end)
  end)

  it("leaves no descriptor open (last test of the file)", function()
    for fd in pairs(fds) do shm.close(fd) end
    fds = {}
    collectgarbage()
    assert.equal(fd_start, u.fd_count())
  end)
end)
