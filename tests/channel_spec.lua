-- channel_spec.lua: the SPSC ring channel of lua/shm/channel.lua, in one
-- process (layout, sizes, wrap-around, full and empty rings, timeouts,
-- close, bad arguments, attaching to garbage) and across real processes:
-- the running interpreter (shm.exepath()) or the C peer
-- (build/peers/channel_peer) as the other side, sharing a memfd as their
-- descriptor 3.  Every wait on a child is bounded; a child left running
-- after a failure is killed.
local shm = require "shm"
local channel = require "shm.channel"
local ipc = require "data.ipc"
local u = require "data.shmtest"
local fail, raises = u.assert_fail, u.assert_raises

local EPIPE, ETIMEDOUT = shm.EPIPE, shm.ETIMEDOUT
local SIZE = 1 << 16

-- Seconds since t0 (a shm.clock() value).
local function since(t0) return (shm.clock() - t0) / 1e9 end

-- Polls (bounded: 30 s) until a child raises its sleep flag, the field
-- `field` of header view hv, which it does right before FUTEX_WAIT.
local function await_sleeper(hv, field)
  local deadline = shm.clock() + 30e9
  while shm.atomic_load(hv, field) == 0 do
    assert.is_true(shm.clock() < deadline, "the child never slept")
    shm.sleep(0.001)
  end
end

describe("channel", function()
  local fd, m, children

  before_each(function()
    fd, m = ipc.shared(SIZE)
    children = {}
  end)

  after_each(function()
    for _, c in ipairs(children) do ipc.cleanup(c) end
    pcall(shm.munmap, m)
    shm.close(fd)
  end)

  local function spawn_lua(code, ...)
    local c = ipc.spawn_lua(fd, code, ...)
    children[#children + 1] = c
    return c
  end
  local function spawn_peer(...)
    local c = ipc.spawn({ ipc.peers .. "channel_peer", ... }, fd)
    children[#children + 1] = c
    return c
  end

  describe("layout", function()
    it("is a 192-byte header with head and tail on their own cache lines", function()
      assert.equal(192, channel.HEADER)
      assert.equal(192, shm.sizeof("struct shm_channel"))
      assert.equal(64, shm.offsetof("struct shm_channel", "head"))
      assert.equal(68, shm.offsetof("struct shm_channel", "head_waiters"))
      assert.equal(128, shm.offsetof("struct shm_channel", "tail"))
      assert.equal(132, shm.offsetof("struct shm_channel", "tail_waiters"))
      assert.equal(192 + 4096, channel.size(4096))
      assert.equal(2044, channel.max_message(4096))
    end)

    it("new writes the header that attach and a C program read", function()
      local ch = channel.new(m, 1024, 256, 12)
      local hv = shm.view(m, "struct shm_channel", 1024)
      assert.equal(channel.MAGIC, hv.magic)
      assert.equal(256, hv.capacity)
      assert.equal(12, hv.msg_size)
      assert.equal(0, hv.head + hv.tail + hv.closed)
      assert(ch:send(("a"):rep(12)))
      -- the record: a 32-bit stamp (length + 1), then the payload, at the
      -- ring's start, and the next record's stamp zeroed
      assert.equal(13, string.unpack("=I4", m:read(1024 + 192, 4)))
      assert.equal(("a"):rep(12), m:read(1024 + 196, 12))
      assert.equal(0, string.unpack("=I4", m:read(1024 + 192 + 16, 4)))
      assert.equal(16, hv.head)
      local rx = channel.attach(m, 1024)
      assert.equal(12, rx.fixed)
      assert.equal(("a"):rep(12), rx:recv(0))
      assert.equal(16, hv.tail)
    end)
  end)

  describe("in one process", function()
    it("agrees with a plain FIFO over random operations on small rings", function()
      -- every operation, size and capacity mixed; a Lua list is the model
      local seed = os.time()
      math.randomseed(seed)
      for _, cap in ipairs { 64, 128, 256, 1024 } do
        for _, fixed in ipairs { 0, 12 } do
          local tx = channel.new(m, 0, cap, fixed)
          local rx = channel.attach(m, 0)
          local fifo, first, last, n = {}, 1, 0, 0
          local function rec(len) return 4 + (len + 3) // 4 * 4 end
          local function msg()
            n = n + 1
            local len = fixed > 0 and fixed or math.random(0, cap // 2 - 4)
            return (("%08d"):format(n) .. ("x"):rep(len)):sub(1, len)
          end
          for step = 1, 3000 do
            local op = math.random(6)
            local where = ("seed %d, cap %d, fixed %d, step %d"):format(seed, cap, fixed, step)
            if op == 1 or op == 2 then
              local s = msg()
              local pending = tx:pending_bytes()   -- records and wrap skips
              local ok = tx:try_send(s)
              if ok then last = last + 1 fifo[last] = s end
              -- a record, a wrap skip (< the record) and the next stamp
              -- always fit in 2 records' bytes: refusing that is wrong
              if not ok and pending + 2 * rec(#s) <= cap then error("refused with room: " .. where) end
            elseif op == 3 then
              local list = {}
              for i = 1, math.random(0, 3) do list[i] = msg() end
              local sent = select(4, tx:send_batch(list, 0)) or #list
              for i = 1, sent do last = last + 1 fifo[last] = list[i] end
            elseif op == 4 or op == 5 then
              local got = rx:try_recv()
              if got ~= fifo[first] then
                error(("try_recv %q, expected %q: %s"):format(tostring(got), tostring(fifo[first]), where))
              end
              if got then fifo[first] = nil first = first + 1 end
            else
              local k = math.random(1, 4)
              if first <= last then
                local list = assert(rx:recv_batch(k, 0))
                for i = 1, #list do
                  if list[i] ~= fifo[first] then error("recv_batch differs: " .. where) end
                  fifo[first] = nil first = first + 1
                end
                if #list < math.min(k, last - first + 1 + #list) then error("recv_batch short: " .. where) end
              end
            end
            if first > last and tx:pending_bytes() ~= 0 then error("pending after empty: " .. where) end
          end
          while first <= last do
            assert.equal(fifo[first], rx:recv(0))
            first = first + 1
          end
          assert.is_nil(rx:try_recv())
        end
      end
    end)

    it("carries messages of every size from 0 to the maximum, in order", function()
      local tx = channel.new(m, 0, 256)
      local rx = channel.attach(m, 0)
      assert.equal(124, tx.max)
      for n = 0, 124 do
        local msg = ("%c"):format(65 + n % 26):rep(n)
        assert.is_true(tx:send(msg, 1))
        assert.equal(msg, rx:recv(1))
      end
      assert.equal(0, tx:pending_bytes())
    end)

    it("wraps around the ring end, with a marker where a record did not fit", function()
      local tx = channel.new(m, 0, 64)        -- max message 28 bytes
      local rx = channel.attach(m, 0)
      local words = shm.view(m, "uint32_t[16]", channel.HEADER)
      -- 20-byte messages take 24-byte records: 0, 24, then 48 leaves 16
      -- bytes, too few: a marker at 48 and the record at 0
      assert(tx:send(("a"):rep(20)))
      assert(tx:send(("b"):rep(20)))
      assert.equal("a", rx:recv(0):sub(1, 1))
      assert.equal(("b"):rep(20), rx:recv(0))
      assert(tx:send(("c"):rep(20), 0))
      assert.equal(0xFFFFFFFF, words[12])
      assert.equal(21, words[0])           -- the stamp: length + 1
      assert.equal(0, words[6])            -- the next record's stamp, zeroed
      assert.equal(64 + 24, shm.atomic_load(tx.hv, "head"))
      assert.equal(("c"):rep(20), rx:recv(0))
      assert.equal(64 + 24, shm.atomic_load(tx.hv, "tail"))
      -- many laps with sizes that put records at every boundary
      local seq = 0
      for lap = 1, 400 do
        local n = lap % 29
        local msg = string.rep(string.char(lap % 256), n)
        assert.is_true(tx:send(msg, 1))
        if lap % 3 == 0 then assert.is_true(tx:send("", 1)) end
        assert.equal(msg, rx:recv(1))
        if lap % 3 == 0 then assert.equal("", rx:recv(1)) end
        seq = seq + 1
      end
      assert.equal(400, seq)
    end)

    it("fills to capacity - 4 (the next stamp's word), then try_send reports false", function()
      local tx = channel.new(m, 0, 64)
      local rx = channel.attach(m, 0)
      for i = 1, 3 do assert.is_true(tx:try_send(("%012d"):format(i))) end  -- 3 x 16
      assert.is_false(tx:try_send(("x"):rep(12)))     -- 16 + 4 > 16 free
      assert.is_true(tx:try_send("8 bytes!"))         -- 12 + 4 = 16: fits
      assert.equal(60, tx:pending_bytes())
      assert.is_false(tx:try_send(""))                -- 4 + 4 > 4 free
      assert.equal(("%012d"):format(1), rx:try_recv())
      -- at 60, a 16-byte record wraps: 4 skipped + 16 + 4 > 20 free
      assert.is_false(tx:try_send(("%012d"):format(4)))
      assert.equal(("%012d"):format(2), rx:try_recv())
      assert.is_true(tx:try_send(("%012d"):format(4)))
      assert.equal(("%012d"):format(3), rx:recv(0))
      assert.equal("8 bytes!", rx:recv(0))
      assert.equal(("%012d"):format(4), rx:recv(0))
      assert.equal(0, tx:pending_bytes())
    end)

    it("carries empty messages (15 fill a 64-byte ring)", function()
      local tx = channel.new(m, 0, 64)
      local rx = channel.attach(m, 0)
      for _ = 1, 15 do assert.is_true(tx:try_send("")) end
      assert.is_false(tx:try_send(""))
      for _ = 1, 15 do assert.equal("", rx:try_recv()) end
      assert.is_nil(rx:try_recv())
    end)

    it("takes the maximum size and raises one byte above it", function()
      local tx = channel.new(m, 0, 1024)
      local rx = channel.attach(m, 0)
      local big = ("m"):rep(508)
      assert.is_true(tx:send(big, 0))      -- a maximal record fits an empty ring
      assert.is_false(tx:try_send(big))    -- a second needs 4 bytes more
      assert.equal(big, rx:recv(0))
      for _ = 1, 4 do                      -- and fits wherever head is
        assert.is_true(tx:send(big, 0))
        assert.equal(big, rx:recv(0))
        assert.is_true(tx:send("odd", 0))
        assert.equal("odd", rx:recv(0))
      end
      raises("exceeds the maximum of 508", tx.send, tx, big .. "!")
      raises("exceeds the maximum of 508", tx.try_send, tx, big .. "!")
    end)

    it("fixed-size channels take that size only", function()
      local tx = channel.new(m, 0, 256, 16)
      local rx = channel.attach(m, 0)
      assert.is_true(tx:send(("z"):rep(16)))
      assert.equal(("z"):rep(16), rx:recv(0))
      raises("messages are 16 bytes, got 15", tx.send, tx, ("z"):rep(15))
      raises("messages are 16 bytes, got 0", tx.try_send, tx, "")
    end)

    it("try_recv on an empty ring returns a lone nil", function()
      local tx = channel.new(m, 0, 64)
      assert.equal(1, select("#", tx:try_recv()))
      assert.is_nil(tx:try_recv())
    end)

    it("times out with the ETIMEDOUT triple, within a bounded time", function()
      local tx = channel.new(m, 0, 64)
      local rx = channel.attach(m, 0)
      local t0 = shm.clock()
      fail("channel:recv", ETIMEDOUT, rx:recv(0.1))
      local dt = since(t0)
      assert.is_true(dt >= 0.09 and dt < 2, "waited " .. dt)
      t0 = shm.clock()
      fail("channel:recv", ETIMEDOUT, rx:recv(0))
      assert.is_true(since(t0) < 0.5)
      for _ = 1, 2 do assert(tx:send(("f"):rep(24), 0)) end   -- 2 x 28 bytes
      t0 = shm.clock()
      fail("channel:send", ETIMEDOUT, tx:send("x", 0.1))       -- needs 8 + 4
      dt = since(t0)
      assert.is_true(dt >= 0.09 and dt < 2, "waited " .. dt)
      -- the failed send changed nothing
      assert.equal(56, tx:pending_bytes())
      assert.equal(("f"):rep(24), rx:recv(0))
      assert.is_true(tx:send("x", 0))
    end)

    it("close: sends fail with EPIPE, receives drain the ring first", function()
      local tx = channel.new(m, 0, 256)
      local rx = channel.attach(m, 0)
      assert(tx:send("one"))
      assert(tx:send("two"))
      rx:close()
      fail("channel:send", EPIPE, tx:send("three"))
      fail("channel:try_send", EPIPE, tx:try_send("three"))
      assert.equal("one", rx:recv(1))
      assert.equal("two", rx:try_recv())
      local t0 = shm.clock()
      fail("channel:recv", EPIPE, rx:recv(5))
      fail("channel:recv", EPIPE, rx:recv())
      assert.is_true(since(t0) < 1)
      fail("channel:try_recv", EPIPE, rx:try_recv())
      tx:close()   -- twice is fine
      local ok, msg, code, sent = tx:send_batch({ "x" })
      assert.is_nil(ok)
      assert.equal("channel:send_batch: EPIPE: channel closed", msg)
      assert.equal(EPIPE, code)
      assert.equal(0, sent)
    end)

    it("raises for wrong types and bad timeouts", function()
      local tx = channel.new(m, 0, 256)
      raises("message must be a string, got number", tx.send, tx, 42)
      raises("message must be a string, got nil", tx.send, tx)
      raises("message must be a string, got table", tx.try_send, tx, {})
      raises("timeout must be nil or a number", tx.send, tx, "x", -1)
      raises("timeout must be nil or a number", tx.send, tx, "x", "soon")
      raises("timeout must be nil or a number", tx.recv, tx, 0 / 0)
      raises("timeout must be nil or a number", tx.recv, tx, {})
      raises("list of strings", tx.send_batch, tx, "x")
      raises("message must be a string, got boolean", tx.send_batch, tx, { "a", true })
      raises("maximum count", tx.recv_batch, tx, 0)
      assert.equal(0, tx:pending_bytes())   -- nothing half-sent
    end)

    it("new raises for bad capacities, sizes and offsets", function()
      raises("power of two", channel.new, m, 0, 100)
      raises("power of two", channel.new, m, 0, 32)
      raises("power of two", channel.new, m, 0, 1 << 31)
      raises("power of two", channel.new, m, 0, 64.0)
      raises("msg_size", channel.new, m, 0, 64, 29)
      raises("msg_size", channel.new, m, 0, 64, -1)
      raises("does not fit", channel.new, m, 0, SIZE)
      raises("does not fit", channel.new, m, SIZE - 192, 64)
      raises("offset", channel.new, m, -4, 64)
      raises("offset", channel.new, m, 2, 64)
    end)

    it("attach raises on garbage", function()
      raises("bad magic", channel.attach, m, 0)            -- zeros
      m:write(0, ("\xA5"):rep(4096))
      raises("bad magic", channel.attach, m, 0)
      raises("bad magic", channel.attach, m, 4)
      local hv = shm.view(m, "struct shm_channel", 0)
      hv.magic = channel.MAGIC
      hv.capacity, hv.msg_size = 100, 0
      raises("corrupt", channel.attach, m, 0)
      hv.capacity = SIZE                                   -- ring past the end
      raises("corrupt", channel.attach, m, 0)
      hv.capacity = 1 << 31
      raises("corrupt", channel.attach, m, 0)
      hv.capacity, hv.msg_size = 256, 200
      raises("corrupt", channel.attach, m, 0)
      raises("no channel", channel.attach, m, SIZE)
      raises("offset", channel.attach, m, "0")
    end)

    it("a corrupt record length raises instead of reading outside the ring", function()
      local tx = channel.new(m, 0, 256)
      local rx = channel.attach(m, 0)
      assert(tx:send("hello"))
      shm.view(m, "uint32_t[1]", channel.HEADER)[0] = 5001  -- stamp: length + 1
      raises("corrupt record length 5000", rx.recv, rx, 0)
    end)

    it("send_batch and recv_batch carry lists, waiting for room as needed", function()
      local tx = channel.new(m, 0, 256)
      local rx = channel.attach(m, 0)
      local list = {}
      for i = 1, 10 do list[i] = ("%d:"):format(i) .. ("b"):rep(i * 3) end
      assert.equal(10, tx:send_batch(list, 1))
      local got = rx:recv_batch(100, 1)
      assert.same(list, got)
      assert.equal(0, tx:send_batch({}))
      -- more than fits: the batch publishes what fits and times out with
      -- the count sent
      local big = {}
      for i = 1, 20 do big[i] = ("%02d"):format(i) .. ("q"):rep(60) end  -- 68-byte records
      local ok, msg, code, sent = tx:send_batch(big, 0.05)
      assert.is_nil(ok)
      assert.equal(ETIMEDOUT, code)
      assert.truthy(msg:find("channel:send_batch: ETIMEDOUT", 1, true))
      assert.equal(3, sent)
      got = rx:recv_batch(2, 0)
      assert.same({ big[1], big[2] }, got)
      assert.same({ big[3] }, rx:recv_batch(5, 0))
      fail("channel:recv_batch", ETIMEDOUT, rx:recv_batch(5, 0.01))
    end)

    it("batches keep every message intact over many laps, wraps and exact ends", function()
      for _, fixed in ipairs { 0, 60, 61 } do
        local tx = channel.new(m, 0, 1024, fixed)
        local rx = channel.attach(m, 0)
        local seq, got = 1, 1
        local function msg(i)
          local s = ipc.message(i, 120)
          if fixed > 0 then s = (s .. ("#"):rep(fixed)):sub(1, fixed) end
          return s
        end
        for round = 1, 600 do
          local batch = {}
          for i = 1, 1 + round % 7 do batch[i] = msg(seq + i - 1) end
          assert.equal(#batch, tx:send_batch(batch, 0))
          seq = seq + #batch
          -- receive with a mix of batch sizes, recv and try_recv
          while got < seq do
            local list = round % 3 == 0 and { assert(rx:recv(0)) }
                         or round % 3 == 1 and { assert(rx:try_recv()) }
                         or assert(rx:recv_batch(1 + round % 4, 0))
            for _, s in ipairs(list) do
              assert.equal(msg(got), s)
              got = got + 1
            end
          end
        end
        assert.equal(0, tx:pending_bytes())
      end
    end)

    it("using a channel whose mapping is gone raises", function()
      local tx = channel.new(m, 0, 256)
      m:unmap()
      assert.is_false(pcall(tx.send, tx, "x"))
      assert.is_false(pcall(tx.recv, tx, 0))
    end)

    it("survives collection of everything but the channel object", function()
      local tx = channel.new(m, 0, 256)
      local rx = channel.attach(m, 0)
      m = nil
      collectgarbage()
      collectgarbage()
      assert(tx:send("still here"))
      assert.equal("still here", rx:recv(0))
      m = tx.m
    end)

    it("a method lowers its sleeping flag only when it may be raised", function()
      -- A raised flag (left by a predecessor killed in its sleep) is
      -- lowered by the first wait of a new binding; after that, the
      -- binding looks at the flag again only after a wait of its own that
      -- raised it (reading it at every wait would pull the line the peer
      -- writes head on, message after message).
      local tx = channel.new(m, 0, 256)
      local rx = channel.attach(m, 0)
      local stale = shm.atomic_load(tx.hv, "head") + 7
      shm.atomic_store(tx.hv, "head_waiters", stale)
      assert.is_nil(rx:recv(0))                      -- first wait: lowered
      assert.equal(0, shm.atomic_load(tx.hv, "head_waiters"))
      shm.atomic_store(tx.hv, "head_waiters", stale)
      assert.is_nil(rx:recv(0))                      -- not looked at again
      assert.equal(stale, shm.atomic_load(tx.hv, "head_waiters"))
      assert(tx:send("x"))                           -- the send lowers it (one wake)
      assert.equal(0, shm.atomic_load(tx.hv, "head_waiters"))
      assert.equal("x", rx:recv(0))
      -- a wait that slept and timed out leaves its own flag raised...
      local _, _, code = rx:recv(0.05)
      assert.equal(ETIMEDOUT, code)
      assert.equal(shm.atomic_load(tx.hv, "head") + 1, shm.atomic_load(tx.hv, "head_waiters"))
      -- ...which the next wait lowers
      assert.is_nil(rx:recv(0))
      assert.equal(0, shm.atomic_load(tx.hv, "head_waiters"))
      -- a new binding looks on its first wait
      shm.atomic_store(tx.hv, "head_waiters", stale)
      assert.is_nil(channel.attach(m, 0):recv(0))
      assert.equal(0, shm.atomic_load(tx.hv, "head_waiters"))
    end)
  end)

  describe("across processes", function()
    it("a Lua child consumes what the parent sends, sizes 0..max", function()
      local tx = channel.new(m, 0, 512)
      local c = spawn_lua([[
        local rx = channel.attach(m, 0)
        for n = 0, 252 do
          local msg = assert(rx:recv(20))
          if msg ~= string.rep(string.char(n %% 256), n) then die("message %%d wrong", n) end
        end
        local ok, err, code = rx:recv(20)
        if ok or code ~= shm.EPIPE then die("expected EPIPE, got %%s", tostring(err)) end
        print("child got 253")
      ]])
      for n = 0, 252 do assert.is_true(tx:send(string.rep(string.char(n % 256), n), 20)) end
      tx:close()
      assert.equal("child got 253\n", ipc.expect_ok(c, 60))
    end)

    it("the parent consumes what a Lua child sends", function()
      local rx = channel.new(m, 0, 256)
      local c = spawn_lua([[
        local tx = channel.attach(m, 0)
        for i = 1, 2000 do assert(tx:send(ipc.message(i, 100), 20)) end
        tx:close()
      ]])
      for i = 1, 2000 do
        local msg = assert(rx:recv(20))
        assert.is_nil(ipc.check(msg, i, 100))
      end
      fail("channel:recv", EPIPE, rx:recv(20))
      ipc.expect_ok(c, 60)
    end)

    it("a consumer asleep on an empty ring is woken by a send", function()
      local tx = channel.new(m, 0, 256)
      local c = spawn_lua([[
        local rx = channel.attach(m, 0)
        local msg = assert(rx:recv(30))
        io.write(msg)
      ]])
      await_sleeper(tx.hv, "head_waiters")
      -- the flag says which head the consumer sleeps on (1 + head)
      assert.equal(shm.atomic_load(tx.hv, "head") + 1, shm.atomic_load(tx.hv, "head_waiters"))
      local t0 = shm.clock()
      assert(tx:send("wake up"))
      -- the send lowered it as it woke the consumer (which raises it again
      -- only to wait again, and it receives once): a second send would
      -- make no wake call
      assert.equal(0, shm.atomic_load(tx.hv, "head_waiters"))
      assert.equal("wake up", ipc.expect_ok(c, 30))
      assert.is_true(since(t0) < 5)
    end)

    it("a producer asleep on a full ring is woken by a receive", function()
      local rx = channel.new(m, 0, 64)
      local c = spawn_lua([[
        local tx = channel.attach(m, 0)
        for i = 1, 4 do assert(tx:send(("%%012d"):format(i), 30)) end
        assert(tx:send("fifth", 30))
      ]])
      await_sleeper(rx.hv, "tail_waiters")
      assert.equal(shm.atomic_load(rx.hv, "tail") + 1, shm.atomic_load(rx.hv, "tail_waiters"))
      assert.equal(48, rx:pending_bytes())   -- the fourth needs 16 + 4 bytes
      assert.equal(("%012d"):format(1), rx:recv(0))
      assert.equal(0, shm.atomic_load(rx.hv, "tail_waiters"))  -- lowered by the wake
      ipc.expect_ok(c, 30)
      for i = 2, 4 do assert.equal(("%012d"):format(i), rx:recv(0)) end
      assert.equal("fifth", rx:recv(0))
    end)

    it("close wakes a peer asleep in recv, which gets EPIPE", function()
      local tx = channel.new(m, 0, 256)
      local c = spawn_lua([[
        local rx = channel.attach(m, 0)
        local ok, err, code = rx:recv(30)
        if ok or code ~= shm.EPIPE then die("expected EPIPE, got %%s", tostring(err)) end
        io.write(err)
      ]])
      await_sleeper(tx.hv, "head_waiters")
      local t0 = shm.clock()
      tx:close()
      assert.equal("channel:recv: EPIPE: channel closed", ipc.expect_ok(c, 30))
      assert.is_true(since(t0) < 5)
    end)

    it("a C program consumes what shmlua sends (the layout is joinable)", function()
      local tx = channel.new(m, 4096, 1024)
      local c = spawn_peer("consume", "3000", "300", "4096")
      for i = 1, 3000 do assert.is_true(tx:send(ipc.message(i, 300), 20)) end
      assert.matches("^consumed 3000 messages", ipc.expect_ok(c, 60))
      assert.equal(0, tx:pending_bytes())
    end)

    it("shmlua consumes what a C program sends, then sees its close", function()
      local rx = channel.new(m, 0, 1024)
      local c = spawn_peer("produce", "3000", "300", "0", "17")
      for i = 17, 3016 do
        local msg = assert(rx:recv(20))
        assert.is_nil(ipc.check(msg, i, 300))
      end
      fail("channel:recv", EPIPE, rx:recv(20))
      assert.matches("^produced 3000", ipc.expect_ok(c, 60))
    end)

    it("a consumer killed after copying, before publishing tail, loses nothing", function()
      local tx = channel.new(m, 0, 1024)
      for i = 1, 5 do assert(tx:send(ipc.message(i, 200))) end
      -- the C peer copies and checks message 1, then exits without the publish
      local how, code = ipc.reap(spawn_peer("peek", "1", "200", "0", "1"), 30)
      assert.equal("exited", how)
      assert.equal(3, code)
      local rx = channel.attach(m, 0)
      for i = 1, 5 do assert.is_nil(ipc.check(rx:recv(0), i, 200)) end
      -- and one that consumed (published) two: its successor starts at 3
      for i = 6, 10 do assert(tx:send(ipc.message(i, 200))) end
      ipc.expect_ok(spawn_peer("consume", "2", "200", "0", "6"), 30)
      rx = channel.attach(m, 0)
      for i = 8, 10 do assert.is_nil(ipc.check(rx:recv(0), i, 200)) end
    end)
  end)

  describe("C functions (src/channel.c)", function()
    it("send and receive on the header view, as the methods do", function()
      local tx = channel.new(m, 0, 256)
      local hv = tx.hv
      assert.is_true(shm.channel_send(hv, "one"))
      assert.is_true(shm.channel_try_send(hv, ""))
      assert.equal(3, shm.channel_send_batch(hv, { "a", "bb", "ccc" }, 1))
      assert.equal("one", shm.channel_recv(hv, 1))
      assert.equal("", shm.channel_try_recv(hv))
      assert.same({ "a", "bb" }, shm.channel_recv_batch(hv, 2, 0))
      assert.same({ "ccc" }, shm.channel_recv_batch(hv, 10, 0))
      assert.is_nil(shm.channel_try_recv(hv))
      fail("channel:recv: ETIMEDOUT", ETIMEDOUT, shm.channel_recv(hv, 0))
      -- fill: try_send says false, send times out; the head stays put
      local n = 0
      while shm.channel_try_send(hv, ("%04d"):format(n)) do n = n + 1 end
      -- from 36 (what the first five took): 27 records to 252, a wrap
      -- marker, 3 more up to 4 bytes short of the tail
      assert.equal(31, n)
      fail("channel:send: ETIMEDOUT", ETIMEDOUT, shm.channel_send(hv, "x", 0))
      local v, msg, e, sent = shm.channel_send_batch(hv, { "x" }, 0)
      fail("channel:send_batch: ETIMEDOUT", ETIMEDOUT, v, msg, e)
      assert.equal(0, sent)
      for i = 0, n - 1 do assert.equal(("%04d"):format(i), shm.channel_recv(hv, 0)) end
      tx:close()
      fail("channel:send: EPIPE: channel closed", EPIPE, shm.channel_send(hv, "x"))
      fail("channel:recv: EPIPE: channel closed", EPIPE, shm.channel_recv(hv))
      fail("channel:try_recv: EPIPE", EPIPE, shm.channel_try_recv(hv))
      fail("channel:recv_batch: EPIPE", EPIPE, shm.channel_recv_batch(hv, 5))
    end)

    it("misuse raises at the caller's line", function()
      local tx = channel.new(m, 0, 256)
      local line = debug.getinfo(1, "l").currentline + 1
      local ok, err = pcall(function() local r = tx:send(42) return r end)
      assert.is_false(ok)
      assert.truthy(err:find(("channel_spec.lua:%d: channel: message must be a string"):format(line), 1, true), err)
    end)

    it("refuses what is not a channel header", function()
      channel.new(m, 0, 256)
      raises("bad magic", shm.channel_send, shm.view(m, "struct shm_channel", 1024), "x")
      raises("bad magic", shm.channel_recv, shm.view(m, "struct shm_channel", 1024), 0)
      raises(nil, shm.channel_send, m, "x")
      raises(nil, shm.channel_recv, shm.view(m, "uint32_t[4]", 0))
      raises(nil, shm.channel_try_recv, 42)
      raises("bad magic", shm.channel_bind, shm.view(m, "struct shm_channel", 1024))
      raises(nil, shm.channel_bind, m)
      -- bound: the first argument (the channel object) is ignored
      local send, _, _, recv = shm.channel_bind(shm.view(m, "struct shm_channel", 0))
      assert.is_true(send("anything", "bound"))
      assert.equal("bound", recv(nil))
      local hv = shm.view(m, "struct shm_channel", 0)
      local bsend, _, _, brecv = shm.channel_bind(hv)
      shm.mprotect(m, 0)                 -- PROT_NONE: no access at all
      raises(nil, bsend, nil, "x")
      raises(nil, brecv, nil, 0)
      raises(nil, shm.channel_send, hv, "x")
      shm.mprotect(m, shm.PROT_READ)
      raises(nil, bsend, nil, "x")
      raises(nil, brecv, nil, 0)
      raises(nil, shm.channel_try_recv, hv)
      shm.munmap(m)
      raises(nil, shm.channel_send, hv, "x")
      raises(nil, shm.channel_recv, hv, 0)
      raises(nil, bsend, nil, "x")
      raises(nil, brecv, nil, 0)
    end)

    it("checks the shared header on every unbound call", function()
      local tx = channel.new(m, 0, 256)
      local hv = tx.hv
      assert(shm.channel_send(hv, "fine"))
      hv.capacity = 100
      raises("corrupt header", shm.channel_send, hv, "x")
      raises("corrupt header", shm.channel_recv, hv, 0)
      hv.capacity = 1 << 20                -- past the end of the mapping
      raises("do not lie in one live", shm.channel_send, hv, "x")
      raises("do not lie in one live", shm.channel_try_recv, hv)
      raises("is corrupt", channel.attach, m, 0)
      hv.capacity = 256
      hv.msg_size = 200
      raises("corrupt header", shm.channel_send, hv, "x")
      raises("corrupt header", shm.channel_bind, hv)
      hv.msg_size = 0
      hv.magic = 0
      raises("bad magic", shm.channel_recv, hv, 0)
      hv.magic = channel.MAGIC
      assert.equal("fine", shm.channel_recv(hv, 0))
    end)

    it("bound methods keep the header they checked; shared memory cannot widen them", function()
      local tx = channel.new(m, 0, 256)
      local rx = channel.attach(m, 0)
      local hv = tx.hv
      m:fill(channel.HEADER + 256, 1024, 0x5a)   -- just past the ring
      hv.capacity = 1 << 20                -- would reach past the mapping
      hv.msg_size = 7
      hv.magic = 0
      local big = ("b"):rep(124)           -- the maximum of a 256-byte ring
      assert.is_true(tx:send(big, 0))
      raises("exceeds the maximum of 124", tx.send, tx, big .. "!")
      assert.equal(big, rx:recv(0))
      for i = 1, 100 do                    -- laps of the 256-byte ring only
        assert.is_true(tx:send(("%03d"):format(i) .. big:sub(4), 0))
        assert.equal(("%03d"):format(i), rx:recv(0):sub(1, 3))
      end
      assert.equal(("\x5a"):rep(1024), m:read(channel.HEADER + 256, 1024))
    end)

    it("checks indices and records read from shared memory", function()
      local tx = channel.new(m, 0, 256)
      local hv = tx.hv
      local ring = shm.view(m, "uint32_t[64]", channel.HEADER)
      hv.head = 6
      raises("not a multiple of 4", tx.send, tx, "x")
      hv.head = 0
      hv.tail = 2
      raises("not a multiple of 4", tx.recv, tx, 0)
      -- head further ahead of tail than the capacity
      hv.tail, hv.head = 0, 512
      raises("corrupt indices", tx.send, tx, "x")
      raises("corrupt indices", tx.try_send, tx, "x")
      -- a stamp claiming more than the maximum
      hv.head, hv.tail = 8, 0
      ring[0] = 200
      raises("corrupt record length 199", tx.recv, tx, 0)
      raises("corrupt record length 199", tx.recv_batch, tx, 4, 0)
      -- a record running past the end of the ring
      hv.head, hv.tail = 248 + 128, 248
      ring[62] = 101
      raises("past the ring's end", tx.try_recv, tx)
      -- a wrap marker at 0 is corrupt, never a loop
      hv.head, hv.tail = 8, 0
      ring[0] = 0xFFFFFFFF
      raises("corrupt wrap marker at offset 0", tx.recv, tx, 0)
      -- a wrap marker must lead to a record at 0
      hv.head, hv.tail = 256 + 8, 248
      ring[62], ring[0] = 0xFFFFFFFF, 0
      raises("corrupt stamp 0 at offset 0 after a wrap marker", tx.recv, tx, 0)
      ring[0] = 0xFFFFFFFF
      raises("corrupt stamp 4294967295 at offset 0", tx.recv, tx, 0)
      -- nothing was consumed by the failures
      assert.equal(248, hv.tail)
      -- the first send through a channel object walks the stamps after
      -- head; a nonsense stamp there raises
      for i = 0, 63 do ring[i] = 0 end
      hv.head, hv.tail = 0, 0
      ring[0] = 1000
      local tx2 = channel.attach(m, 0)
      raises("corrupt stamp 1000 at offset 0 after head", tx2.send, tx2, "x")
      -- stamps that run on past the capacity raise instead of looping
      for i = 0, 63 do ring[i] = 1 end      -- empty records everywhere
      local tx3 = channel.attach(m, 0)
      raises("corrupt stamps after head 0 (more than the capacity)", tx3.send, tx3, "x")
      assert.equal(0, hv.head)
      -- a head that the walk leaves further than the capacity from tail
      for i = 0, 63 do ring[i] = 0 end
      hv.head, hv.tail = 0, 1024
      local tx4 = channel.attach(m, 0)
      raises("corrupt indices", tx4.send, tx4, "x")
    end)

    it("a successor producer publishes the head a killed one left behind its stamp", function()
      local tx = channel.new(m, 0, 256)
      local rx = channel.attach(m, 0)
      assert(tx:send("one", 0))
      assert(tx:send("two", 0))
      -- as if killed after stamping "two" (8 bytes at 8) and before head
      shm.atomic_store(tx.hv, "head", 8)
      assert.equal(8, tx:pending_bytes())
      local successor = channel.attach(m, 0)
      assert(successor:send("three", 0))
      assert.equal(16 + 12, shm.atomic_load(tx.hv, "head"))
      assert.equal("one", rx:recv(0))
      assert.equal("two", rx:recv(0))
      assert.equal("three", rx:recv(0))
      assert.is_nil(rx:try_recv())
      -- killed again after stamping; the consumer takes the record before
      -- a successor comes: tail is past head until then
      assert(successor:send("3.5", 0))
      shm.atomic_store(tx.hv, "head", 28)
      assert.equal("3.5", rx:recv(0))
      assert.equal(0, tx:pending_bytes())
      local third = channel.attach(m, 0)
      assert(third:send("3.75", 0))
      assert.equal("3.75", rx:recv(0))
      shm.atomic_store(tx.hv, "head", 28)   -- as before "3.5" was sent
      shm.atomic_store(tx.hv, "tail", 28)
      shm.fill(shm.view(m, "uint32_t[64]", channel.HEADER), 0, 256)
      -- the unbound function checks every call
      assert(tx:send("four", 0))
      shm.atomic_store(tx.hv, "head", 28)
      assert(shm.channel_send(tx.hv, "five"))
      assert.equal(28 + 8 + 8, shm.atomic_load(tx.hv, "head"))
      assert.equal("four", rx:recv(0))
      assert.equal("five", rx:recv(0))
    end)

    it("a fixed-size channel wraps records by their size", function()
      local tx = channel.new(m, 0, 64, 12)   -- 16-byte records
      for round = 1, 10 do
        local list = {}
        for i = 1, 3 do list[i] = ("%06d%06d"):format(round, i) end
        assert.equal(3, tx:send_batch(list, 0))
        assert.same(list, tx:recv_batch(3, 0))
      end
    end)
  end)
end)
