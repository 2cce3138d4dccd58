-- roundtrip_spec: the same struct declared in C (tests/c/roundtrip.c) and
-- with shm.cdef.  The C peer reports its layout, writes known values that
-- Lua reads back field by field, and checks values Lua wrote; pointers are
-- real addresses because both processes map the object at the same place.
local shm = require "shm"
local helper = require "helper"

local RW = shm.PROT_READ | shm.PROT_WRITE
local PEER = helper.build .. "/peers/roundtrip"
local SIZE = 8192
local TEXT_OFF = 1024

shm.cdef [[
  enum Color { RED = 1, GREEN = 2, BLUE = -3 };
  struct Inner { int16_t a; uint8_t b[3]; double d; };
  union Num { uint32_t u; float f; uint8_t bytes[4]; };
  struct RT {
    int8_t i8; uint8_t u8; int16_t i16; uint16_t u16;
    int32_t i32; uint32_t u32; int64_t i64; uint64_t u64;
    float f; double d;
    bool flag;
    char name[16];
    enum Color color;
    unsigned bf_a : 3;
    signed bf_b : 5;
    unsigned bf_c : 12;
    _Bool bf_d : 1;
    uint64_t bf_e : 40;
    struct Inner inner;
    struct Inner inners[2];
    int32_t grid[2][3];
    union Num num;
    struct RT *self;
    char *text;
    void *nothing;
    long double ld;
    unsigned char raw[5];
  };
]]

-- runs the peer with the memfd as descriptor 3; returns how, code, output.
-- The peer prints far less than a pipe holds, so waiting first cannot block
-- it; the wait is bounded.
local function peer(fd, ...)
  local r, w = assert(shm.pipe())
  local pid = assert(shm.spawn({ PEER, ... }, { fds = { [3] = fd }, stdout = w, stderr = w }))
  shm.close(w)
  local how, code = shm.wait(pid, 30)
  if how == nil then shm.kill(pid, 9); shm.wait(pid, 5) end
  local out = {}
  repeat
    local s = assert(shm.read_fd(r, 4096))
    out[#out + 1] = s
  until s == ""
  shm.close(r)
  return how, code, table.concat(out)
end

describe("C <-> Lua round trip of struct RT", function()
  local fd, m, rt
  before_each(function()
    fd = assert(shm.memfd_create("roundtrip"))
    assert(shm.ftruncate(fd, SIZE))
    m = assert(shm.mmap(0x30000000000, SIZE, RW, shm.MAP_SHARED, fd, 0))
    rt = shm.view(m, "struct RT")
  end)
  after_each(function()
    pcall(shm.munmap, m)
    shm.close(fd)
  end)

  it("has the same layout in both languages", function()
    local how, code, out = peer(fd, "layout")
    assert.are.same({ "exited", 0 }, { how, code }, out)
    local n = 0
    for name, off, size in out:gmatch("(%w+) (%d+) (%d+)\n") do
      n = n + 1
      assert.are.equal(tonumber(off), shm.offsetof("struct RT", name), name)
      local v = rt[name]
      if getmetatable(v) == "shm.view" then   -- records and arrays
        assert.are.equal(tonumber(size), shm.sizeof(v), name)
      end
    end
    assert.are.equal(22, n)
    assert.are.equal(tonumber(out:match("sizeof (%d+)")), shm.sizeof("struct RT"))
    assert.are.equal(tonumber(out:match("alignof (%d+)")), shm.alignof("struct RT"))
  end)

  it("reads every field C wrote", function()
    local how, code, out = peer(fd, "write", tostring(m:addr()))
    assert.are.same({ "exited", 0 }, { how, code }, out)
    assert.are.equal(-128, rt.i8)
    assert.are.equal(255, rt.u8)
    assert.are.equal(-32768, rt.i16)
    assert.are.equal(65535, rt.u16)
    assert.are.equal(-2147483648, rt.i32)
    assert.are.equal(4294967295, rt.u32)
    assert.are.equal(math.mininteger, rt.i64)
    assert.are.equal(-1, rt.u64)            -- UINT64_MAX: the same bit pattern
    assert.are.equal(1.5, rt.f)
    assert.are.equal(-2.25e300, rt.d)
    assert.is_true(rt.flag)
    assert.are.equal("hello, world", rt.name)
    assert.are.equal(-3, rt.color)
    assert.are.equal(shm.enum_value("BLUE"), rt.color)
    assert.are.equal(5, rt.bf_a)
    assert.are.equal(-11, rt.bf_b)
    assert.are.equal(4095, rt.bf_c)
    assert.is_true(rt.bf_d)
    assert.are.equal(0xABCDEF0123, rt.bf_e)
    assert.are.equal(-2, rt.inner.a)
    assert.are.equal(1, rt.inner.b[0])
    assert.are.equal(2, rt.inner.b[1])
    assert.are.equal(3, rt.inner.b[2])
    assert.are.equal(3.25, rt.inner.d)
    assert.are.equal(10, rt.inners[0].a)
    assert.are.equal(11, rt.inners[1].a)
    assert.are.equal(200, rt.inners[1].b[2])
    assert.are.equal(-0.5, rt.inners[1].d)
    for i = 0, 1 do
      for j = 0, 2 do assert.are.equal(i * 10 + j - 5, rt.grid[i][j]) end
    end
    assert.are.equal(0x3fc00000, rt.num.u)
    assert.are.equal(1.5, rt.num.f)
    assert.are.equal(m:addr(), shm.addressof(rt.self))
    assert.are.equal(rt, rt.self[0])        -- follows to the same struct
    assert.are.equal(-128, rt.self.i8)
    assert.are.equal(m:addr() + TEXT_OFF, shm.addressof(rt.text))
    assert.are.equal("text from C", shm.string(rt.text))
    assert.is_nil(rt.nothing)
    assert.is_true(math.abs(rt.ld - 0.1) < 1e-15)
    assert.are.equal("\1", rt.raw)          -- unsigned char[5]: text up to the NUL
    assert.are.equal("\1\0\2\255\127", m:read(shm.offsetof("struct RT", "raw"), 5))
  end)

  it("C checks every field Lua wrote", function()
    rt.i8, rt.u8, rt.i16, rt.u16 = 127, 1, 32767, 2
    rt.i32, rt.u32, rt.i64 = 2147483647, 3, math.maxinteger
    rt.u64 = math.mininteger + 1            -- 0x8000000000000001
    rt.f, rt.d, rt.flag = -0.25, 6.5e-300, false
    rt.name = "from lua"
    rt.color = shm.enum_value("GREEN")
    rt.bf_a, rt.bf_b, rt.bf_c, rt.bf_d, rt.bf_e = 2, -16, 1234, false, 0xFFFFFFFFFF
    rt.inner = { a = 300, b = { 9, 8, 7 }, d = 1e10 }
    rt.inners[0].a = -1
    rt.inners[1] = { a = -2, d = 2.0 }
    rt.grid = { { 0, 1, 2 }, { 100, 101, 102 } }
    rt.num.f = 2.0
    rt.self = rt
    m:write(TEXT_OFF, "text from Lua\0")
    rt.text = m:ptr(TEXT_OFF)
    rt.nothing = m:addr() + 8
    rt.ld = 0.5
    rt.raw = "ab"
    local how, code, out = peer(fd, "check", tostring(m:addr()))
    assert.are.equal("all fields match\n", out)
    assert.are.same({ "exited", 0 }, { how, code }, out)
  end)

  it("the C check names the first field that differs", function()
    local how, code, out = peer(fd, "check", tostring(m:addr()))
    assert.are.same({ "exited", 1 }, { how, code })
    assert.truthy(out:find("mismatch: r->i8 == 127", 1, true), out)
  end)
end)
