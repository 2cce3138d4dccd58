-- pointer_spec: pointer fields and values (shm.pointer), shm.cast,
-- shm.addressof, and the bounds-checked byte movers shm.string, shm.copy,
-- shm.fill: nothing may touch memory outside a live mapping.
local shm = require "shm"

local RW = shm.PROT_READ | shm.PROT_WRITE

local function anon(size, prot)
  return assert(shm.mmap(nil, size or 4096, prot or RW,
                         shm.MAP_SHARED | shm.MAP_ANONYMOUS, -1, 0))
end

-- a page with unmapped neighbours, so that running off it reaches no mapping
local function isolated()
  local big = anon(3 * 4096)
  return assert(shm.mmap(big:addr() + 4096, 4096, RW,
                         shm.MAP_SHARED | shm.MAP_ANONYMOUS | shm.MAP_FIXED, -1, 0))
end

local function err(f, ...)
  local ok, e = pcall(f, ...)
  assert(not ok, "expected an error")
  return tostring(e)
end

shm.cdef [[
  struct PNode { int32_t value; struct PNode *next; char *text; void *any;
                 int32_t *nums; void (*fn)(int); struct PNode **pp; };
  struct PHead { void *Addr; uintptr_t MemSize; uintptr_t TextSize; char *TextPtr; };
]]

describe("pointers", function()
  local m, n
  before_each(function()
    m = isolated()
    n = shm.view(m, "struct PNode")
  end)
  after_each(function() pcall(shm.munmap, m) end)

  it("NULL reads as nil and nil writes NULL", function()
    assert.is_nil(n.next)
    n.any = 0x1234
    assert.is_not_nil(n.any)
    n.any = nil
    assert.is_nil(n.any)
    assert.are.equal(string.rep("\0", 8), m:read(shm.offsetof("struct PNode", "any"), 8))
  end)

  it("writes accept an integer, a pointer, a view or a mapping", function()
    n.any = 0x20000000000
    assert.are.equal(0x20000000000, shm.addressof(n.any))
    n.any = m
    assert.are.equal(m:addr(), shm.addressof(n.any))
    n.next = n
    assert.are.equal(m:addr(), shm.addressof(n.next))
    n.text = n.next
    assert.are.equal(m:addr(), shm.addressof(n.text))
    local other = shm.view(m, "struct PNode", 64)
    n.next = other
    assert.are.equal(m:addr() + 64, shm.addressof(n.next))
    assert.are.equal(m:addr() + 64, string.unpack("<J", m:read(8, 8)))
    assert.truthy(err(function() n.next = "x" end)
      :find("field 'next' (struct PNode *) expects an address (nil, integer, pointer, view or mapping), got string \"x\"", 1, true))
    assert.truthy(err(function() n.next = {} end):find("got table", 1, true))
  end)

  it("tostring shows the pointer type and address", function()
    n.next = 0x20000000000
    assert.are.equal("pointer<struct PNode *>: 0x20000000000", tostring(n.next))
    assert.are.equal(n.next, n.next)   -- __eq: same address, same target
  end)

  it("follows into the mapping: p[0], p.field, p[i], chains", function()
    local second = shm.view(m, "struct PNode", 64)
    second.value = 2
    n.value = 1
    n.next = second
    second.next = n
    assert.are.equal(2, n.next.value)
    assert.are.equal(1, n.next.next.value)
    assert.are.equal(2, n.next[0].value)
    assert.are.equal(second, n.next[0])      -- the followed struct is a view
    n.next.value = 20                        -- writes through the pointer
    assert.are.equal(20, second.value)
    -- an int32_t * walks an array
    local nums = shm.view(m, "int32_t[8]", 256)
    for i = 0, 7 do nums[i] = i * i end
    n.nums = nums
    assert.are.equal(49, n.nums[7])
    n.nums[3] = -3
    assert.are.equal(-3, nums[3])
    -- char * and shm.string
    m:write(512, "hello\0world")
    n.text = m:ptr(512)
    assert.are.equal(string.byte("h"), n.text[0])
    assert.are.equal("hello", shm.string(n.text))
    assert.are.equal("hello\0wor", shm.string(n.text, 9))
    -- pointer arithmetic in units of the target
    assert.are.equal(36, (n.nums + 6)[0])
    assert.are.equal(m:addr() + 256 + 4 * 6, shm.addressof(n.nums + 6))
    assert.are.equal(m:addr() + 256, shm.addressof((n.nums + 6) - 6))
    -- a pointer to a pointer
    n.pp = m:ptr(8)   -- the address of n.next
    assert.are.equal(20, n.pp[0].value)
  end)

  it("following outside every live mapping raises", function()
    n.next = 0x10        -- nothing of ours there
    assert.truthy(err(function() return n.next.value end)
      :find("pointer 0x10 does not point into a live mapping", 1, true))
    assert.truthy(err(function() n.next.value = 1 end):find("does not point into a live mapping", 1, true))
    -- partly inside: the last bytes of the mapping hold less than a struct PNode
    n.next = m:addr() + 4096 - 8
    assert.truthy(err(function() return n.next.value end):find("does not point into a live mapping", 1, true))
    n.nums = m
    assert.are.equal(0, n.nums[1023])
    assert.truthy(err(function() return n.nums[1024] end):find("does not point into a live mapping", 1, true))
    assert.truthy(err(function() return n.nums[-1] end):find("does not point into a live mapping", 1, true))
    assert.truthy(err(function() return n.nums[-1024] end):find("does not point into a live mapping", 1, true))
    assert.truthy(err(function() return n.nums[math.maxinteger] end):find("address space", 1, true))
    assert.truthy(err(shm.string, 0x10, 4):find("does not point into a live mapping", 1, true))
  end)

  it("follows into a different live mapping, and not after it is unmapped", function()
    local m2 = anon(4096)
    local far = shm.view(m2, "struct PNode", 128)
    far.value = 77
    n.next = far
    assert.are.equal(77, n.next.value)
    local got = n.next[0]          -- a view anchoring the other mapping
    assert.are.equal(77, got.value)
    m2:unmap()
    assert.truthy(err(function() return n.next.value end):find("does not point into a live mapping", 1, true))
    assert.truthy(err(function() return got.value end):find("unmapped", 1, true))
  end)

  it("a followed view keeps the target mapping alive", function()
    local m2 = anon(4096)
    shm.view(m2, "struct PNode").value = 5
    n.next = m2
    local target = n.next[0]
    m2 = nil
    collectgarbage()
    collectgarbage()
    assert.are.equal(5, target.value)
  end)

  it("respects the protection of the mapping pointed into", function()
    local ro = anon(4096)
    shm.view(ro, "struct PNode").value = 8
    assert(shm.mprotect(ro, shm.PROT_READ))
    n.next = ro
    assert.are.equal(8, n.next.value)
    assert.truthy(err(function() n.next.value = 1 end):find("not writable", 1, true))
    assert(shm.mprotect(ro, shm.PROT_NONE))
    assert.truthy(err(function() return n.next.value end):find("not readable", 1, true))
    ro:unmap()
  end)

  it("void * and function pointers cannot be followed, but can be cast", function()
    n.any = m
    n.value = 31
    assert.truthy(err(function() return n.any[0] end):find("cannot follow void *", 1, true))
    n.fn = 0x1000
    assert.truthy(err(function() return n.fn[0] end):find("cannot follow", 1, true))
    local p = shm.cast("struct PNode *", n.any)
    assert.are.equal(31, p.value)
    assert.are.equal("pointer<struct PNode *>", tostring(p):match("^[^:]*"))
    assert.are.equal(31, shm.cast("struct PNode", m).value)   -- "T" means "T *"
    assert.are.equal(31, shm.cast("int32_t *", m:addr())[0])
    assert.is_nil(shm.cast("void *", 0))
    assert.truthy(err(shm.cast, "void *", "x"):find("address", 1, true))
  end)

  it("unknown fields and bad keys on pointers raise", function()
    n.next = n
    assert.truthy(err(function() return n.next.nope end):find("struct PNode has no field 'nope'", 1, true))
    n.nums = m
    assert.truthy(err(function() return n.nums.x end):find("key on a pointer to int32_t", 1, true))
    assert.truthy(err(function() return n.nums[1.5] end):find("integer index expected", 1, true))
  end)
end)

describe("addresses and bulk moves", function()
  local m
  before_each(function() m = anon(4096) end)
  after_each(function() pcall(shm.munmap, m) end)

  it("shm.addressof gives the address of a view, a field, a pointer, a mapping", function()
    local h = shm.view(m, "struct PHead", 32)
    assert.are.equal(m:addr(), shm.addressof(m))
    assert.are.equal(m:addr() + 32, shm.addressof(h))
    assert.are.equal(m:addr() + 32 + 24, shm.addressof(h, "TextPtr"))
    h.TextPtr = 0x5000
    assert.are.equal(0x5000, shm.addressof(h.TextPtr))
    assert.has_error(function() shm.addressof(5) end)
    assert.has_error(function() shm.addressof("x") end)
    m:unmap()
    assert.truthy(err(shm.addressof, m):find("unmapped", 1, true))
  end)

  it("shm.string copies bytes out of a live readable mapping only", function()
    m:write(100, "abcdef")
    assert.are.equal("abc", shm.string(m:addr() + 100, 3))
    assert.are.equal("", shm.string(m, 0))
    assert.are.equal(4096, #shm.string(m, 4096))
    assert.truthy(err(shm.string, m, 4097):find("does not point into a live mapping", 1, true))
    assert.truthy(err(shm.string, m:addr() + 4090, 7):find("does not point into a live mapping", 1, true))
    assert.has_error(function() shm.string(m, -1) end)
    assert.has_error(function() shm.string({}, 1) end)
    -- without a length: up to a NUL or the end of the mapping
    m:fill(0, 4096, 65)
    assert.are.equal(4096 - 10, #shm.string(m:addr() + 10))
  end)

  it("shm.copy and shm.fill stay inside live writable mappings", function()
    local m2 = anon(4096)
    assert.is_true(shm.copy(m, "hello"))
    assert.are.equal("hello", m:read(0, 5))
    shm.copy(m:addr() + 10, "abcdef", 3)
    assert.are.equal("abc", m:read(10, 3))
    shm.copy(m2, m, 16)
    assert.are.equal(m:read(0, 16), m2:read(0, 16))
    shm.copy(m:addr() + 1, m, 5)   -- overlapping: memmove
    assert.are.equal("hhello", m:read(0, 6))
    assert.is_true(shm.fill(m:addr() + 4000, 0x7f, 96))
    assert.are.equal(string.rep("\127", 96), m:read(4000, 96))
    assert.truthy(err(shm.fill, m:addr() + 4000, 0, 97):find("does not point into a live mapping", 1, true))
    assert.truthy(err(shm.fill, m, 256, 1):find("byte expected", 1, true))
    assert.truthy(err(shm.copy, m:addr() + 4090, "1234567"):find("does not point into a live mapping", 1, true))
    assert.truthy(err(shm.copy, m, m2:addr() + 4000, 100):find("does not point into a live mapping", 1, true))
    assert.truthy(err(shm.copy, m, "abc", 4):find("longer than the string", 1, true))
    assert.truthy(err(shm.copy, 0x10, "abc"):find("does not point into a live mapping", 1, true))
    assert(shm.mprotect(m2, shm.PROT_READ))
    assert.truthy(err(shm.copy, m2, "x"):find("not writable", 1, true))
    assert.truthy(err(shm.fill, m2, 0, 1):find("not writable", 1, true))
    shm.copy(m, m2, 4)   -- reading from it is fine
    m2:unmap()
    assert.truthy(err(shm.copy, m2, "x"):find("unmapped", 1, true))
  end)
end)
