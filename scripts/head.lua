-- scripts/head.lua: the project's first demo (DESIGN.md, "The seed's example").
--
-- The host makes a memfd of 4 pages, maps it near 0x20000000000 and writes
--   struct Head { void *Addr; uintptr_t MemSize; uintptr_t TextSize; char *TextPtr; };
-- at offset 0: Addr is the mapping's own address, TextPtr points at the text
-- stored right after the header.  Two children inherit the fd as descriptor
-- 3: scripts/head_child.lua (run by this same interpreter) and the C program
-- scripts/head_child.c (built into build/peers/head_child).  Each maps one
-- header, reads Addr and MemSize, unmaps, maps the whole object again at
-- exactly Addr and follows TextPtr: raw pointers work across processes that
-- map the object at the same address.
--
-- usage: shmlua scripts/head.lua [text]
-- Exits non-zero if a child fails or does not finish within 10 seconds.
local shm = require "shm"

local HINT = 0x20000000000
local text = arg[1] or "Hello from the host, through a pointer in shared memory!"

shm.cdef [[
struct Head { void *Addr; uintptr_t MemSize; uintptr_t TextSize; char *TextPtr; };
]]

local here = (arg[0] or ""):match("^(.*)/[^/]*$") or "."
local build = os.getenv("SHMLUA_BUILD") or (here .. "/../build")
local interp = arg[-1] or shm.exepath()

local size = 4 * shm.getpagesize()
local fd = assert(shm.memfd_create("head", shm.MFD_CLOEXEC))
assert(shm.ftruncate(fd, size))
local m <close> = assert(shm.mmap(HINT, size, shm.PROT_READ | shm.PROT_WRITE,
                                  shm.MAP_SHARED, fd, 0))

-- the text right after the header, NUL-terminated for the C child
local textoff = shm.sizeof("struct Head")
assert(textoff + #text + 1 <= size, "text too long for the object")
m:write(textoff, text .. "\0")

local hdr = shm.view(m, "struct Head")
hdr.Addr = m                       -- the mapping's own address
hdr.MemSize = size
hdr.TextSize = #text
hdr.TextPtr = m:ptr(textoff)
print(("host:       mapped %d bytes at 0x%x (asked for 0x%x)"):format(size, m:addr(), HINT))
print("host:       " .. tostring(hdr))

local children = {
  { name = "lua child", argv = { interp, here .. "/head_child.lua" } },
  { name = "c child", argv = { build .. "/peers/head_child" } },
}
io.stdout:flush()
for _, c in ipairs(children) do
  c.pid = assert(shm.spawn(c.argv, { fds = { [3] = fd } }))
end

local failed = false
for _, c in ipairs(children) do
  local how, code = shm.wait(c.pid, 10)
  if how == nil then               -- timed out: code is the message
    shm.kill(c.pid, 9)
    shm.wait(c.pid, 5)
    print(("host:       %s did not finish: %s"):format(c.name, code))
    failed = true
  elseif how ~= "exited" or code ~= 0 then
    print(("host:       %s failed: %s %s"):format(c.name, how, code))
    failed = true
  end
end
shm.close(fd)
print(failed and "host:       FAILED" or "host:       both children read the text")
os.exit(failed and 1 or 0)
