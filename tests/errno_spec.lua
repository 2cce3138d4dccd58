-- errno_spec.lua: errno names, texts, advice and constants (src/errno.c),
-- and the "call(arg): ENAME: text" failure triple as real calls return it.
local shm = require "shm"
local helper = require "helper"

-- The errnos whose advice must be specific to shmlua's calls.
local ADVISED = {
  "EPERM", "ENOENT", "EINTR", "EIO", "EBADF", "EAGAIN", "ENOMEM", "EACCES",
  "EFAULT", "EBUSY", "EEXIST", "ENODEV", "ENOTDIR", "EINVAL", "ENFILE",
  "EMFILE", "ETXTBSY", "EFBIG", "ENOSPC", "ESPIPE", "EROFS", "ENAMETOOLONG",
  "ENOSYS", "EOVERFLOW", "ETIMEDOUT", "EOPNOTSUPP", "ECHILD", "ESRCH", "E2BIG",
  "ENOEXEC", "EPIPE", "ECONNREFUSED", "ENOTSOCK", "EMSGSIZE", "EOWNERDEAD",
  "ENOTRECOVERABLE", "EDEADLK", "ELOOP", "ENOTCONN", "EXDEV", "ENXIO",
}

-- Aliases: constants that share their number with another name.
local ALIASES = { EWOULDBLOCK = "EAGAIN", EDEADLOCK = "EDEADLK", ENOTSUP = "EOPNOTSUPP" }

-- Arguments that are not integers: each must raise, never return nil.
local BAD = { "x", "EEXIST", {}, true, 1.5, 0 / 0, math.huge, print }

local function errno_constants()
  local t = {}
  for k, v in pairs(shm) do
    if type(k) == "string" and k:match("^E[%u%d]+$") then t[k] = v end
  end
  return t
end

describe("errno constants", function()
  it("have the Linux numbers", function()
    assert.equal(1, shm.EPERM)
    assert.equal(2, shm.ENOENT)
    assert.equal(11, shm.EAGAIN)
    assert.equal(17, shm.EEXIST)
    assert.equal(22, shm.EINVAL)
    assert.equal(110, shm.ETIMEDOUT)
    assert.equal(95, shm.EOPNOTSUPP)
    assert.equal(130, shm.EOWNERDEAD)
    assert.equal(133, shm.EHWPOISON)
  end)

  it("alias the names they stand for", function()
    for alias, name in pairs(ALIASES) do
      assert.equal("integer", math.type(shm[alias]), alias)
      assert.equal(shm[name], shm[alias], alias)
    end
  end)

  it("are integers that name themselves", function()
    local n = 0
    for k, v in pairs(errno_constants()) do
      assert.is_true(math.type(v) == "integer", k)
      assert.equal(ALIASES[k] or k, shm.errno_name(v))
      n = n + 1
    end
    -- EPERM .. EHWPOISON minus the two unused numbers (41, 58), plus aliases.
    assert.is_true(n >= 131 + 3, "only " .. n .. " E* constants")
  end)

  it("cover every errno the C library has a text for", function()
    for i = 1, 133 do
      if i ~= 41 and i ~= 58 then
        assert.is_string(shm.errno_name(i), "errno " .. i)
        assert.equal(i, shm[shm.errno_name(i)])
      end
    end
  end)
end)

describe("shm.errno_name", function()
  it("names numbers", function()
    assert.equal("EPERM", shm.errno_name(1))
    assert.equal("ENOENT", shm.errno_name(2))
    assert.equal("EEXIST", shm.errno_name(17))
    assert.equal("EINVAL", shm.errno_name(22))
    assert.equal("ETIMEDOUT", shm.errno_name(110))
    assert.equal("EHWPOISON", shm.errno_name(133))
    assert.equal("EEXIST", shm.errno_name(17.0))
  end)

  it("gives the canonical name for aliases", function()
    assert.equal("EAGAIN", shm.errno_name(shm.EWOULDBLOCK))
    assert.equal("EDEADLK", shm.errno_name(shm.EDEADLOCK))
    assert.equal("EOPNOTSUPP", shm.errno_name(shm.ENOTSUP))
  end)

  it("returns nil for numbers that are no errno", function()
    for _, n in ipairs({ 0, -1, -17, 41, 58, 134, 4095, 1 << 31, 1 << 40,
                         math.maxinteger, math.mininteger }) do
      assert.is_nil(shm.errno_name(n), tostring(n))
    end
  end)

  it("raises for non-integers", function()
    for _, v in ipairs(BAD) do
      assert.has_error(function() shm.errno_name(v) end)
    end
    assert.has_error(function() shm.errno_name() end)
  end)
end)

describe("shm.strerror", function()
  it("gives the C library's text", function()
    assert.equal("Operation not permitted", shm.strerror(shm.EPERM))
    assert.equal("No such file or directory", shm.strerror(shm.ENOENT))
    assert.equal("File exists", shm.strerror(shm.EEXIST))
    assert.equal("Connection timed out", shm.strerror(shm.ETIMEDOUT))
  end)

  it("describes unknown numbers by number", function()
    assert.equal("Unknown error 9999", shm.strerror(9999))
    assert.equal("Unknown error 1099511627776", shm.strerror(1 << 40))
  end)

  it("raises for non-integers", function()
    for _, v in ipairs(BAD) do
      assert.has_error(function() shm.strerror(v) end)
    end
  end)
end)

describe("shm.errno_help", function()
  it("has specific advice for the errnos these calls produce", function()
    local seen = {}
    for _, name in ipairs(ADVISED) do
      local h = shm.errno_help(shm[name])
      assert.is_string(h, name)
      assert.is_true(#h >= 150 and #h <= 1000, name .. ": length " .. #h)
      assert.is_nil(h:find("is not an error that", 1, true), name .. " is generic")
      assert.is_truthy(h:match("%.$"), name .. " does not end a sentence")
      assert.is_nil(seen[h], name .. " repeats another errno's advice")
      seen[h] = true
    end
  end)

  it("talks about the calls that cause each errno", function()
    local function has(name, ...)
      local h = shm.errno_help(shm[name])
      for _, word in ipairs({ ... }) do
        assert.is_truthy(h:find(word, 1, true), name .. " help lacks " .. word)
      end
    end
    has("EEXIST", "O_EXCL", "shm.shm_unlink", "MAP_FIXED_NOREPLACE")
    has("EBUSY", "F_ADD_SEALS", "F_SEAL_WRITE", "seal")
    has("EPERM", "F_SEAL_SEAL", "MFD_ALLOW_SEALING")
    has("EAGAIN", "futex_wait", "RLIMIT_MEMLOCK")
    has("ETIMEDOUT", "futex_wait", "shm.wait")
    has("ENOENT", "O_CREAT")
    has("EMFILE", "ulimit -n", "shm.close")
    has("EINVAL", "MAP_FIXED", "page")
    has("ENOMEM", "not mapped")
    has("ECHILD", "shm.spawn")
    has("EACCES", "O_RDWR")
  end)

  it("gives aliases the advice of the name they stand for", function()
    assert.equal(shm.errno_help(shm.EAGAIN), shm.errno_help(shm.EWOULDBLOCK))
    assert.equal(shm.errno_help(shm.EOPNOTSUPP), shm.errno_help(shm.ENOTSUP))
  end)

  it("builds a generic paragraph for other errnos", function()
    local h = shm.errno_help(shm.EBFONT)
    assert.is_string(h)
    assert.is_truthy(h:find("EBFONT", 1, true))
    assert.is_truthy(h:find(shm.strerror(shm.EBFONT), 1, true))
    assert.is_truthy(h:find("man", 1, true))
    -- every known errno has some advice
    for i = 1, 133 do
      if shm.errno_name(i) then assert.is_string(shm.errno_help(i), tostring(i)) end
    end
  end)

  it("returns nil for numbers that are no errno", function()
    for _, n in ipairs({ 0, -1, 41, 9999, 1 << 40, math.mininteger }) do
      assert.is_nil(shm.errno_help(n), tostring(n))
    end
  end)

  it("raises for non-integers", function()
    for _, v in ipairs(BAD) do
      assert.has_error(function() shm.errno_help(v) end)
    end
  end)
end)

describe("the failure triple", function()
  local created = {}
  after_each(function()
    for _, n in ipairs(created) do shm.shm_unlink(n) end
    created = {}
  end)

  -- nil, "call(arg): ENAME: text", errno, with name and text from this module.
  local function check_triple(call, arg, want, ok, msg, e)
    assert.is_nil(ok)
    assert.equal(want, e)
    local head = arg and ("%s(%s)"):format(call, arg) or call
    assert.equal(("%s: %s: %s"):format(head, shm.errno_name(e), shm.strerror(e)), msg)
  end

  it("names call, argument, errno and text (shm_unlink of a missing name)", function()
    if not shm.shm_unlink then return pending("fd.c not built") end
    local name = helper.name("errno")
    check_triple("shm_unlink", name, shm.ENOENT, shm.shm_unlink(name))
  end)

  it("reports EEXIST for O_CREAT|O_EXCL on an existing object", function()
    if not shm.shm_open then return pending("fd.c not built") end
    local name = helper.name("errno")
    local flags = shm.O_CREAT | shm.O_EXCL | shm.O_RDWR
    local fd = assert(shm.shm_open(name, flags, 384))
    created[#created + 1] = name
    shm.close(fd)
    local ok, msg, e = shm.shm_open(name, flags, 384)
    check_triple("shm_open", name, shm.EEXIST, ok, msg, e)
    assert.equal("shm_open(" .. name .. "): EEXIST: File exists", msg)
    assert.is_truthy(shm.errno_help(e):find("O_EXCL", 1, true))
  end)

  it("leaves out the argument when the call has none (mprotect)", function()
    if not (shm.mmap and shm.mprotect) then return pending("mapping.c not built") end
    local name = helper.name("errno")
    local fd = assert(shm.shm_open(name, shm.O_CREAT | shm.O_EXCL | shm.O_RDWR, 384))
    created[#created + 1] = name
    assert(shm.ftruncate(fd, shm.getpagesize()))
    shm.close(fd)
    local ro = assert(shm.shm_open(name, shm.O_RDONLY))
    local m = assert(shm.mmap(nil, shm.getpagesize(), shm.PROT_READ, shm.MAP_SHARED, ro, 0))
    shm.close(ro)
    local ok, msg, e = shm.mprotect(m, shm.PROT_READ | shm.PROT_WRITE)
    shm.munmap(m)
    assert.is_nil(ok)
    assert.equal(shm.EACCES, e)
    assert.is_truthy(msg:match("^mprotect"))
    assert.is_truthy(msg:find(": EACCES: " .. shm.strerror(shm.EACCES), 1, true))
  end)
end)
