-- view_spec: ctypes (shm.cdef, typeof, sizeof, alignof, offsetof, struct)
-- and views (shm.view): every field kind both ways, range checks, errors,
-- protection and lifetime.
local shm = require "shm"
local helper = require "helper"

local RW = shm.PROT_READ | shm.PROT_WRITE

-- an anonymous shared mapping: nothing to unlink
local function anon(size, prot)
  return assert(shm.mmap(nil, size or 4096, prot or RW,
                         shm.MAP_SHARED | shm.MAP_ANONYMOUS, -1, 0))
end

-- the error message of f(...), which must fail
local function err(f, ...)
  local ok, e = pcall(f, ...)
  assert(not ok, "expected an error")
  return tostring(e)
end

shm.cdef [[
  enum VColor { V_RED = 1, V_GREEN = 2, V_BLUE = -3 };
  struct VInner { int16_t a; uint8_t b[3]; double d; };
  union VNum { uint32_t u; float f; uint8_t bytes[4]; };
  struct VAll {
    int8_t i8; uint8_t u8; int16_t i16; uint16_t u16;
    int32_t i32; uint32_t u32; int64_t i64; uint64_t u64;
    float f; double d; long double ld;
    bool flag; _Bool flag2;
    char name[8]; unsigned char uname[4]; signed char sname[4];
    enum VColor color;
    struct VInner inner;
    struct VInner inners[3];
    int32_t grid[2][3];
    union VNum num;
    char c;
    void *p;
  };
  struct VBits {
    unsigned a : 3;
    signed b : 5;
    unsigned c : 12;
    _Bool d : 1;
    uint64_t e : 40;
    int64_t f : 64;
  };
  struct VKw { int32_t end; int32_t in; int32_t repeat; int32_t function; };
  struct VPacked { uint8_t x; uint64_t y; uint16_t z; } __attribute__((packed));
  struct VBig { uint32_t data[40]; };
  struct VFwd;
  struct VAnon { int32_t tag; union { int32_t i; float f; }; struct { int16_t x, y; }; };
]]

describe("ctypes", function()
  it("typeof gives one interned object per type, shown as ctype<...>", function()
    local t = shm.typeof("struct VAll")
    assert.are.equal(t, shm.typeof("struct VAll"))
    assert.are.equal(t, shm.typeof(t))
    assert.are.equal("ctype<struct VAll>", tostring(t))
    assert.are.equal("ctype<uint32_t[16]>", tostring(shm.typeof("uint32_t[16]")))
    assert.are_not.equal(t, shm.typeof("struct VInner"))
  end)

  it("sizeof, alignof and offsetof agree with gcc", function()
    assert.are.equal(16, shm.sizeof("struct VInner"))
    assert.are.equal(8, shm.alignof("struct VInner"))
    assert.are.equal(64, shm.sizeof("uint32_t[16]"))
    assert.are.equal(4, shm.alignof(shm.typeof("uint32_t[16]")))
    assert.are.equal(11, shm.sizeof("struct VPacked"))
    assert.are.equal(1, shm.alignof("struct VPacked"))
    assert.are.equal(1, shm.offsetof("struct VPacked", "y"))
    assert.are.equal(8, shm.offsetof("struct VInner", "d"))
    assert.are.equal(2, shm.offsetof("struct VInner", "b"))
    assert.are.equal(4, shm.offsetof("struct VInner", "b[2]"))
    assert.are.equal(shm.offsetof("struct VAll", "inners") + 16 + 8,
                     shm.offsetof("struct VAll", "inners[1].d"))
    assert.are.equal(shm.offsetof("struct VAll", "grid") + 4 * 4,
                     shm.offsetof("struct VAll", "grid[1][1]"))
    assert.are.equal(4, shm.offsetof("struct VAnon", "i"))
    assert.are.equal(10, shm.offsetof("struct VAnon", "y"))
    assert.are.equal(4, shm.sizeof("enum VColor"))
    assert.are.equal(8, shm.sizeof("void *"))
  end)

  it("raises for unknown types, fields and incomplete types", function()
    assert.truthy(err(shm.typeof, "struct NoSuchThing"):find("typeof:", 1, true))
    assert.truthy(err(shm.offsetof, "struct VInner", "zz"):find("no field 'zz'", 1, true))
    assert.truthy(err(shm.offsetof, "struct VBits", "a"):find("bit-field", 1, true))
    assert.truthy(err(shm.sizeof, "struct VFwd"):find("incomplete", 1, true))
    assert.truthy(err(shm.typeof, 42):find("ctype or C type name", 1, true))
  end)

  it("cdef reports the line and column of a syntax error", function()
    local e = err(shm.cdef, "struct Ok1 { int a; };\nstruct Bad { int a b; };")
    assert.truthy(e:find("cdef: line 2, column %d+"), e)
  end)

  it("enum constants", function()
    assert.are.equal(-3, shm.enum_value("V_BLUE"))
    assert.is_nil(shm.enum_value("V_NOPE"))
  end)

  it("shm.struct lays out a record like gcc", function()
    local t = shm.struct("VBuilt", {
      { "Addr", "void *" },
      { "MemSize", "uintptr_t" },
      { "flags", "uint32_t", bits = 3 },
      { "more", "uint32_t", bits = 7 },
      { "words", "uint32_t[4]" },
      { "inner", shm.typeof("struct VInner") },
    })
    assert.are.equal("ctype<struct VBuilt>", tostring(t))
    assert.are.equal(t, shm.typeof("struct VBuilt"))
    assert.are.equal(8, shm.offsetof(t, "MemSize"))
    assert.are.equal(20, shm.offsetof(t, "words"))
    assert.are.equal(40, shm.offsetof(t, "inner"))
    assert.are.equal(56, shm.sizeof(t))
    local m = anon()
    local v = shm.view(m, t)
    v.flags, v.more = 7, 100
    assert.are.equal(7, v.flags)
    assert.are.equal(100, v.more)
    assert.are.equal(7 | (100 << 3), string.unpack("<I4", m:read(16, 4)))
    m:unmap()
  end)

  it("shm.struct: packed and union options, and its errors", function()
    local p = shm.struct("VBuiltPacked", { { "x", "uint8_t" }, { "y", "uint32_t" } }, { packed = true })
    assert.are.equal(5, shm.sizeof(p))
    local u = shm.struct("VBuiltUnion", { { "x", "uint8_t" }, { "y", "double" } }, { union = true })
    assert.are.equal(8, shm.sizeof(u))
    assert.are.equal(0, shm.offsetof(u, "y"))
    assert.truthy(err(shm.struct, "VBuiltDup", { { "x", "int" }, { "x", "int" } }):find("struct:", 1, true))
    assert.truthy(err(shm.struct, "VBuiltBadType", { { "x", "no_such_t" } }):find("typeof:", 1, true))
    assert.truthy(err(shm.struct, "VBuiltBadField", { "x" }):find("field 1", 1, true))
  end)
end)

describe("views", function()
  local m, v
  before_each(function()
    m = anon()
    v = shm.view(m, "struct VAll")
  end)
  after_each(function()
    pcall(shm.munmap, m)
  end)

  it("read and write every integer width at its limits", function()
    local cases = {
      { "i8", -128, 127 }, { "u8", 0, 255 }, { "i16", -32768, 32767 },
      { "u16", 0, 65535 }, { "i32", -2147483648, 2147483647 },
      { "u32", 0, 4294967295 }, { "i64", math.mininteger, math.maxinteger },
    }
    for _, c in ipairs(cases) do
      local f, lo, hi = c[1], c[2], c[3]
      v[f] = lo
      assert.are.equal(lo, v[f])
      v[f] = hi
      assert.are.equal(hi, v[f])
      assert.is_true(math.type(v[f]) == "integer")
    end
    -- the bytes are C's: little-endian at the field's offset
    v.i32 = -2
    assert.are.equal(-2, string.unpack("<i4", m:read(shm.offsetof("struct VAll", "i32"), 4)))
    v.u16 = 0xBEEF
    assert.are.equal(0xBEEF, string.unpack("<I2", m:read(shm.offsetof("struct VAll", "u16"), 2)))
  end)

  it("uint64 reads as the Lua integer with the same bit pattern", function()
    v.u64 = -1   -- any Lua integer: its bit pattern
    assert.are.equal(-1, v.u64)
    assert.are.equal(string.rep("\255", 8), m:read(shm.offsetof("struct VAll", "u64"), 8))
    v.u64 = 2^63          -- integral floats in [0, 2^64)
    assert.are.equal(math.mininteger, v.u64)
    assert.is_true(math.ult(math.maxinteger, v.u64))
    v.u64 = 2^64 - 2048
    assert.are.equal(-2048, v.u64)
    v.u64 = 12345
    assert.are.equal(12345, v.u64)
    assert.truthy(err(function() v.u64 = 2^64 end):find("field 'u64' (uint64_t)", 1, true))
    assert.truthy(err(function() v.u64 = -1.0 end):find("field 'u64'", 1, true))
    assert.truthy(err(function() v.u64 = 1.5 end):find("got 1.5", 1, true))
    v.i64 = -2^63
    assert.are.equal(math.mininteger, v.i64)
    assert.truthy(err(function() v.i64 = 2^63 end):find("field 'i64'", 1, true))
  end)

  it("range errors name the field, its type, the range and the value", function()
    assert.are.equal("field 'u8' (uint8_t) expects an integer in 0..255, got 300",
                     err(function() v.u8 = 300 end):match("field.*"))
    assert.truthy(err(function() v.i8 = -129 end):find("-128..127, got -129", 1, true))
    assert.truthy(err(function() v.u32 = -1 end):find("0..4294967295, got -1", 1, true))
    assert.truthy(err(function() v.i16 = 2.5 end):find("got 2.5", 1, true))
    assert.truthy(err(function() v.i32 = "twelve" end):find('got string "twelve"', 1, true))
    v.i32 = "12"   -- a numeral converts, as luaL_checkinteger takes it
    assert.are.equal(12, v.i32)
    assert.truthy(err(function() v.i32 = nil end):find("got nil", 1, true))
    assert.truthy(err(function() v.d = "x" end):find("field 'd' (double) expects a number", 1, true))
    assert.truthy(err(function() v.flag = 1 end):find("expects a boolean", 1, true))
    v.i16 = 7.0   -- an integral float is an integer
    assert.are.equal(7, v.i16)
    assert.are.equal(0, v.u8)   -- the failed writes wrote nothing
  end)

  it("floats, long double, booleans and enums", function()
    v.f = 1.5
    assert.are.equal(1.5, v.f)
    v.f = 0.1
    assert.are_not.equal(0.1, v.f)   -- rounded to float
    assert.is_true(math.abs(v.f - 0.1) < 1e-7)
    v.f = 1 / 0
    assert.are.equal(1 / 0, v.f)
    assert.truthy(err(function() v.f = 1e300 end):find("float range", 1, true))
    v.d = -2.25e300
    assert.are.equal(-2.25e300, v.d)
    v.d = 3   -- integers convert
    assert.are.equal(3.0, v.d)
    assert.are.equal("float", math.type(v.d))
    v.ld = 0.5
    assert.are.equal(0.5, v.ld)
    assert.is_false(v.flag)
    v.flag = true
    v.flag2 = true
    assert.is_true(v.flag)
    assert.is_true(v.flag2)
    v.flag = false
    assert.is_false(v.flag)
    v.color = shm.enum_value("V_BLUE")
    assert.are.equal(-3, v.color)
    v.c = -5   -- char is signed on x86-64
    assert.are.equal(-5, v.c)
  end)

  it("char[N] fields are strings up to the first NUL", function()
    assert.are.equal("", v.name)
    v.name = "hi"
    assert.are.equal("hi", v.name)
    v.name = "12345678"   -- exactly N bytes: no terminator, as C allows
    assert.are.equal("12345678", v.name)
    v.name = "ab"         -- NUL-padded: nothing of the old value remains
    assert.are.equal("ab\0\0\0\0\0\0", m:read(shm.offsetof("struct VAll", "name"), 8))
    v.uname = "\255\1"
    assert.are.equal("\255\1", v.uname)
    v.sname = "xyzw"
    assert.are.equal("xyzw", v.sname)
    assert.truthy(err(function() v.name = "123456789" end)
      :find("field 'name' (char[8]) expects a string of at most 8 bytes, got string \"123456789\"", 1, true))
    assert.truthy(err(function() v.name = string.rep("x", 40) end):find("got a string of 40 bytes", 1, true))
    assert.truthy(err(function() v.name = 5 end):find("field 'name'", 1, true))
  end)

  it("nested structs and arrays are sub-views sharing the mapping", function()
    local inner = v.inner
    inner.a = -2
    inner.d = 3.25
    assert.are.equal(-2, v.inner.a)
    assert.are.equal(3.25, v.inner.d)
    assert.are.equal(3, #v.inner.b)
    v.inner.b[0], v.inner.b[2] = 1, 3
    assert.are.equal(1, v.inner.b[0])
    assert.are.equal(3, v.inner.b[2])
    assert.are.equal(3, #v.inners)
    v.inners[2].d = 9.5
    assert.are.equal(9.5, v.inners[2].d)
    assert.are.equal(9.5, string.unpack("<d", m:read(shm.offsetof("struct VAll", "inners[2].d"), 8)))
    assert.are.equal(2, #v.grid)
    assert.are.equal(3, #v.grid[1])
    v.grid[1][2] = 12
    assert.are.equal(12, v.grid[1][2])
    assert.are.equal(shm.addressof(m) + shm.offsetof("struct VAll", "grid[1][2]"),
                     shm.addressof(v.grid, 1) + 8)
    assert.are.equal(v.inner, v.inner)   -- __eq: same type, same place
    assert.are_not.equal(v.inners[0], v.inners[1])
  end)

  it("arrays index from 0 and refuse indexes outside 0..n-1", function()
    local b = v.inner.b
    assert.truthy(err(function() return b[3] end):find("index 3 out of range for uint8_t[3] (0..2)", 1, true))
    assert.truthy(err(function() return b[-1] end):find("out of range", 1, true))
    assert.truthy(err(function() b[3] = 1 end):find("out of range", 1, true))
    assert.truthy(err(function() return b.x end):find("index expected", 1, true))
    assert.truthy(err(function() b[0] = 256 end):find("element [0] (uint8_t) expects an integer in 0..255", 1, true))
  end)

  it("a union shows every member over the same bytes", function()
    v.num.f = 1.5
    assert.are.equal(0x3fc00000, v.num.u)
    assert.are.equal(0x3f, v.num.bytes[3])
  end)

  it("anonymous members are reached through their fields", function()
    local a = shm.view(m, "struct VAnon")
    a.f = 2.0
    a.y = -7
    assert.are.equal(0x40000000, a.i)
    assert.are.equal(-7, a.y)
  end)

  it("a nested struct or array is assigned from a table or a view", function()
    v.inner = { a = 5, b = { 7, 8 }, d = 0.5 }
    assert.are.equal(5, v.inner.a)
    assert.are.equal(7, v.inner.b[0])
    assert.are.equal(8, v.inner.b[1])
    assert.are.equal(0, v.inner.b[2])   -- fields not named become zero, as in C
    v.inners[1] = v.inner                -- a view of the same type: a copy
    assert.are.equal(5, v.inners[1].a)
    assert.are.equal(0.5, v.inners[1].d)
    v.inner.a = 6
    assert.are.equal(5, v.inners[1].a)
    v.grid = { { 1, 2, 3 }, { 4, 5, 6 } }
    assert.are.equal(6, v.grid[1][2])
    -- a bad value anywhere leaves the destination as it was
    assert.truthy(err(function() v.inner = { a = 1, d = "x" } end):find("field 'd'", 1, true))
    assert.are.equal(6, v.inner.a)
    assert.truthy(err(function() v.inner = { zz = 1 } end):find("struct VInner has no field 'zz'", 1, true))
    assert.truthy(err(function() v.inner.b = { 1, 2, 3, 4 } end):find("4 elements given for uint8_t[3]", 1, true))
    assert.truthy(err(function() v.inner = v.num end):find("got a view of union VNum", 1, true))
    assert.truthy(err(function() v.inner = 1 end):find("expects a table or a view of struct VInner", 1, true))
  end)

  it("bit-fields hold exactly their bits; signed ones sign-extend", function()
    local b = shm.view(m, "struct VBits")
    b.a, b.b, b.c, b.d, b.e = 5, -11, 4095, true, 0xABCDEF0123
    assert.are.equal(5, b.a)
    assert.are.equal(-11, b.b)
    assert.are.equal(4095, b.c)
    assert.is_true(b.d)
    assert.are.equal(0xABCDEF0123, b.e)
    -- a: bits 0-2, b: bits 3-7, c: bits 8-19, d: bit 20
    local w = string.unpack("<I4", m:read(0, 4))
    assert.are.equal(5, w & 7)
    assert.are.equal((-11) & 31, (w >> 3) & 31)
    assert.are.equal(4095, (w >> 8) & 4095)
    assert.are.equal(1, (w >> 20) & 1)
    b.b = -16
    assert.are.equal(-16, b.b)
    b.b = 15
    assert.are.equal(15, b.b)
    assert.are.equal(5, b.a)        -- neighbours untouched
    assert.are.equal(4095, b.c)
    b.f = math.mininteger
    assert.are.equal(math.mininteger, b.f)
    assert.truthy(err(function() b.a = 8 end):find("field 'a' (unsigned int) expects an integer in 0..7, got 8", 1, true))
    assert.truthy(err(function() b.b = 16 end):find("-16..15, got 16", 1, true))
    assert.truthy(err(function() b.d = 1 end):find("expects a boolean", 1, true))
  end)

  it("packed records read and write unaligned fields", function()
    local p = shm.view(m, "struct VPacked", 0)
    p.y = 0x0102030405060708
    p.z = 0xFFFF
    assert.are.equal(0x0102030405060708, p.y)
    assert.are.equal("\8\7\6\5\4\3\2\1", m:read(1, 8))
    local q = shm.view(m, "struct VPacked", 1)   -- alignment 1: any offset
    q.x = 9
    assert.are.equal(9, p.y & 0xff)
  end)

  it("field names that are Lua keywords work", function()
    local k = shm.view(m, "struct VKw")
    k["end"], k["in"], k["repeat"], k["function"] = 1, 2, 3, 4
    assert.are.equal(1, k["end"])
    assert.are.equal(2, k["in"])
    assert.are.equal(3, k["repeat"])
    assert.are.equal(4, k["function"])
  end)

  it("unknown fields raise naming the type and the field", function()
    assert.truthy(err(function() return v.nope end):find("struct VAll has no field 'nope'", 1, true))
    assert.truthy(err(function() v.nope = 1 end):find("struct VAll has no field 'nope'", 1, true))
    local long = string.rep("x", 60)
    assert.truthy(err(function() return v[long] end):find("has no field '" .. long .. "'", 1, true))
    assert.truthy(err(function() return v[1] end):find("struct VAll", 1, true))
    assert.truthy(err(function() return v[true] end):find("field name expected, got boolean", 1, true))
  end)

  it("names longer than Lua's short strings still find their field", function()
    local name = "a_field_name_that_is_longer_than_forty_characters_for_sure"
    shm.cdef("struct VLong { int32_t " .. name .. "; int32_t after; };")
    local l = shm.view(m, "struct VLong")
    l[name] = 41
    assert.are.equal(41, l[name])
    assert.are.equal(41, string.unpack("<i4", m:read(0, 4)))
  end)

  it("has fields only: no methods, and a protected metatable", function()
    assert.truthy(err(function() return v.read end):find("no field 'read'", 1, true))
    assert.are.equal("shm.view", getmetatable(v))
    assert.has_error(function() setmetatable(v, {}) end)
    assert.are.equal("userdata", type(v))
  end)

  it("tostring shows the type and every field", function()
    shm.cdef "struct VShow { uint32_t n; double x; char s[6]; void *p; int8_t arr[20]; struct VInner in2; };"
    local s = shm.view(m, "struct VShow")
    s.n, s.x, s.s, s.p = 42, 1.5, "a\"b", 0x1000
    s.arr[0], s.arr[19] = -1, 19
    local str = tostring(s)
    assert.truthy(str:find("^struct VShow { n = 42, x = 1.5, s = \"a\\\"b\", p = 0x1000, arr = { %-1, 0, "), str)
    assert.truthy(str:find("... (4 more)", 1, true), str)
    assert.truthy(str:find("in2 = { a = 0, b = { 0, 0, 0 }, d = 0.0 } }$"), str)
    s.p = nil
    assert.truthy(tostring(s):find("p = NULL", 1, true))
  end)

  it("pairs iterates fields in order, arrays from 0", function()
    v.i8, v.u8 = 1, 2
    local names, n = {}, 0
    for k, val in pairs(v) do
      n = n + 1
      names[n] = k
      if k == "u8" then assert.are.equal(2, val) end
    end
    assert.are.same({ "i8", "u8", "i16", "u16" }, { names[1], names[2], names[3], names[4] })
    assert.are.equal("p", names[n])
    local idx = {}
    for i, x in pairs(v.inner.b) do idx[#idx + 1] = i end
    assert.are.same({ 0, 1, 2 }, idx)
  end)

  it("a flexible array member reaches to the end of the mapping", function()
    shm.cdef "struct VFlex { uint32_t n; uint16_t data[]; };"
    local f = shm.view(m, "struct VFlex")
    assert.are.equal((4096 - 4) // 2, #f.data)
    f.data[#f.data - 1] = 7
    assert.are.equal(7, string.unpack("<I2", m:read(4094, 2)))
    assert.truthy(err(function() return f.data[#f.data] end):find("out of range", 1, true))
    assert.truthy(tostring(f):find("data = { ... }", 1, true))
    assert.are.equal(4096 - 4, shm.sizeof(f.data))
  end)

  it("survives a collector that never pauses", function()
    collectgarbage("incremental", 1, 100)   -- pause 1%: always collecting
    local ok, e = pcall(function()
      for i = 1, 200 do
        local sub = shm.view(m, "struct VAll").inners[i % 3]
        sub.a = i
        sub.b[i % 3] = i % 256
        assert(sub.a == i and shm.view(m, "struct VAll").inners[i % 3].b[i % 3] == i % 256)
        v.p = sub
        assert(tostring(v):find("inners", 1, true))
      end
    end)
    collectgarbage("incremental", 200, 100)
    assert(ok, e)
  end)

  it("# of a struct view raises; # of an array view is its length", function()
    assert.truthy(err(function() return #v end):find("not an array", 1, true))
    assert.are.equal(40, #shm.view(m, "struct VBig").data)
    assert.are.equal(16, #shm.view(m, "uint32_t[16]"))
  end)
end)

describe("shm.view arguments", function()
  local m
  before_each(function() m = anon(4096) end)
  after_each(function() pcall(shm.munmap, m) end)

  it("view of an array type at an offset", function()
    local a = shm.view(m, "uint32_t[4]", 8)
    a[3] = 77
    assert.are.equal(77, string.unpack("<I4", m:read(8 + 12, 4)))
    assert.are.equal(shm.addressof(m) + 8, shm.addressof(a))
  end)

  it("refuses what is not a live mapping, a bad type, a bad offset", function()
    assert.has_error(function() shm.view({}, "struct VInner") end)
    assert.has_error(function() shm.view(nil, "struct VInner") end)
    assert.truthy(err(shm.view, m, "uint32_t"):find("struct, union or array", 1, true))
    assert.truthy(err(shm.view, m, "struct VFwd"):find("incomplete", 1, true))
    assert.truthy(err(shm.view, m, "struct NoSuch"):find("typeof:", 1, true))
    assert.truthy(err(shm.view, m, "struct VInner", 4096 - 8):find("does not fit", 1, true))
    assert.truthy(err(shm.view, m, "struct VInner", 5000):find("outside", 1, true))
    assert.truthy(err(shm.view, m, "struct VInner", 4):find("misaligned for struct VInner (alignment 8)", 1, true))
    assert.has_error(function() shm.view(m, "struct VInner", -8) end)
    assert.has_no.errors(function() shm.view(m, "struct VInner", 4096 - 16) end)
    m:unmap()
    assert.truthy(err(shm.view, m, "struct VInner"):find("unmapped", 1, true))
  end)
end)

describe("view lifetime and protection", function()
  local name, fd
  before_each(function()
    name = helper.name("view")
    fd = assert(shm.shm_open(name, shm.O_RDWR | shm.O_CREAT | shm.O_EXCL, 384))
    assert(shm.ftruncate(fd, 4096))
  end)
  after_each(function()
    shm.close(fd)
    shm.shm_unlink(name)
  end)

  it("use after m:unmap() raises", function()
    local m = assert(shm.mmap(nil, 4096, RW, shm.MAP_SHARED, fd, 0))
    local v = shm.view(m, "struct VInner")
    local sub = shm.view(m, "struct VAll").inners
    v.a = 1
    m:unmap()
    assert.are.equal("view of struct VInner: mapping is unmapped", err(function() return v.a end):match("view of.*"))
    assert.truthy(err(function() v.a = 2 end):find("mapping is unmapped", 1, true))
    assert.truthy(err(function() return sub[0] end):find("mapping is unmapped", 1, true))
    assert.truthy(tostring(v):find("unmapped", 1, true))
    assert.truthy(err(shm.addressof, v):find("unmapped", 1, true))
  end)

  it("a view of a read-only mapping refuses writes", function()
    local w = assert(shm.mmap(nil, 4096, RW, shm.MAP_SHARED, fd, 0))
    shm.view(w, "struct VInner").a = 12
    local m = assert(shm.mmap(nil, 4096, shm.PROT_READ, shm.MAP_SHARED, fd, 0))
    local v = shm.view(m, "struct VInner")
    assert.are.equal(12, v.a)
    assert.truthy(err(function() v.a = 1 end):find("view of struct VInner: mapping is not writable", 1, true))
    assert.truthy(err(function() v.b[0] = 1 end):find("not writable", 1, true))
    assert.are.equal(12, v.a)
    m:unmap()
    w:unmap()
  end)

  it("after mprotect(PROT_NONE) reads raise; after PROT_READ|WRITE they work", function()
    local m = assert(shm.mmap(nil, 4096, RW, shm.MAP_SHARED, fd, 0))
    local v = shm.view(m, "struct VInner")
    v.a = 3
    assert(shm.mprotect(m, shm.PROT_NONE))
    assert.truthy(err(function() return v.a end):find("mapping is not readable", 1, true))
    assert.truthy(err(function() v.a = 4 end):find("mapping is not writable", 1, true))
    assert.truthy(tostring(v):find("not readable", 1, true))
    assert(shm.mprotect(m, shm.PROT_READ))
    assert.are.equal(3, v.a)
    assert.truthy(err(function() v.a = 4 end):find("not writable", 1, true))
    assert(shm.mprotect(m, RW))
    v.a = 4
    assert.are.equal(4, v.a)
    m:unmap()
  end)

  it("a view keeps its mapping alive after the mapping is dropped", function()
    local v = shm.view(assert(shm.mmap(nil, 4096, RW, shm.MAP_SHARED, fd, 0)), "struct VAll")
    local inner = v.inner
    v = nil
    collectgarbage()
    collectgarbage()
    inner.a = 99
    assert.are.equal(99, inner.a)
    -- another mapping of the object sees the write
    local m2 = assert(shm.mmap(nil, 4096, shm.PROT_READ, shm.MAP_SHARED, fd, 0))
    assert.are.equal(99, shm.view(m2, "struct VAll").inner.a)
    m2:unmap()
  end)

  it("a truncated object makes the access raise, not crash (SIGBUS)", function()
    local m = assert(shm.mmap(nil, 8192, RW, shm.MAP_SHARED, fd, 0))
    local big = shm.view(m, "struct VInner", 4096)   -- beyond the 4096-byte object
    assert.truthy(err(function() return big.d end):find("SIGBUS", 1, true))
    assert.truthy(err(function() return big.d end):find("mapping faulted", 1, true))
    m:unmap()
    assert.truthy(err(function() return big.d end):find("mapping is unmapped", 1, true))
  end)
end)

describe("views and the collector", function()
  shm.cdef "struct GcProbe { int32_t a; int32_t b; };"

  it("live views keep working while thousands of others are collected", function()
    local m = anon(4096)
    local keep = shm.view(m, "struct GcProbe")
    keep.a = 5
    for i = 1, 5000 do
      local t = shm.view(m, "struct GcProbe", 8)
      t.b = i
      if i % 1000 == 0 then collectgarbage() end
    end
    collectgarbage()
    assert.equal(5, keep.a)
    assert.equal(5000, shm.view(m, "struct GcProbe", 8).b)
  end)

  it("a view resurrected after its finalizer raises instead of being trusted", function()
    local m = anon(4096)
    local saved
    do
      local v = shm.view(m, "struct GcProbe")
      assert.equal(0, v.a)        -- v is now the view the hot path trusts
      setmetatable({ v = v }, { __gc = function(t) saved = t.v end })
    end
    collectgarbage()
    collectgarbage()
    assert.is_not_nil(saved)
    assert.truthy(err(function() return saved.a end):find("shm.view", 1, true))
    assert.truthy(err(function() saved.a = 1 end):find("shm.view", 1, true))
  end)
end)
