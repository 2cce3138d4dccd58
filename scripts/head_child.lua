-- scripts/head_child.lua: the Lua child of scripts/head.lua.
-- Descriptor 3 is the host's memfd.  Maps one header's worth to read Addr
-- and MemSize, unmaps, maps MemSize bytes at exactly Addr, follows TextPtr
-- and prints the text.  Exits non-zero (with a message) on any failure.
local shm = require "shm"

shm.cdef [[
struct Head { void *Addr; uintptr_t MemSize; uintptr_t TextSize; char *TextPtr; };
]]

local FD = 3
local RW = shm.PROT_READ | shm.PROT_WRITE

local first = assert(shm.mmap(nil, shm.sizeof("struct Head"), shm.PROT_READ, shm.MAP_SHARED, FD, 0))
local h = shm.view(first, "struct Head")
local addr, size = shm.addressof(h.Addr), h.MemSize
first:unmap()

local m <close> = assert(shm.mmap(addr, size, RW, shm.MAP_SHARED | shm.MAP_FIXED, FD, 0))
assert(m:addr() == addr, "mapped at the wrong address")
local hdr = shm.view(m, "struct Head")
-- TextPtr is a raw pointer written by the host; it points into this mapping
-- because we mapped the object where the host did.
local text = shm.string(hdr.TextPtr, hdr.TextSize)
print(("lua child:  read %d bytes at 0x%x via TextPtr: %s"):format(#text, shm.addressof(hdr.TextPtr), text))
