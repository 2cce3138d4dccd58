-- stress_spec.lua: the channel and the mailbox under load, across real
-- processes.  Every message carries a sequence number, an Adler-32 of its
-- payload and a payload whose length and content follow from the sequence
-- number (tests/data/ipc.lua), so the receiver checks that none is lost,
-- duplicated, reordered or torn.
--
--   SHMLUA_STRESS=N   messages per channel run (default 200000; 100000 in
--                     the sanitizer build, SHMLUA_ASAN set)
--   SHMLUA_SEED=S     the seed of the random kill points (printed)
--
-- What the kill test checks is what lua/shm/channel.lua promises: tail is
-- published after the copy, before recv returns.  A consumer that records
-- each message right after recv returns, killed anywhere and replaced by a
-- new one that attaches and carries on, gives a combined record that is
-- strictly increasing, has no duplicate, every message checked intact, and
-- misses at most one message per kill (one whose tail was published but
-- that was not recorded yet); the last consumer receives up to the end.
-- Figures go to stderr.  Every wait is bounded; children are killed on
-- failure.
local shm = require "shm"
local channel = require "shm.channel"
local mailbox = require "shm.mailbox"
local ipc = require "data.ipc"

local N = tonumber(os.getenv("SHMLUA_STRESS") or "") or (ipc.ASAN and 100000 or 200000)
local SEED = tonumber(os.getenv("SHMLUA_SEED") or "") or (shm.clock() % 1000003)
local MAXPAY = 200
local CAP = 4096
-- a generous bound on any one run: 20 s plus 100 us a message (sanitizer: 4x)
local LIMIT = (20 + N * 1e-4) * (ipc.ASAN and 4 or 1)

local function report(fmt, ...)
  io.stderr:write("stress: ", fmt:format(...), "\n")
end

-- The producer's side (this process): sends message(first .. last) mixing
-- send, try_send and send_batch.
local function produce(tx, first, last, timeout)
  local seq = first
  while seq <= last do
    local op = seq % 16
    if op == 14 then
      local batch = {}
      for i = seq, math.min(last, seq + seq % 7) do batch[#batch + 1] = ipc.message(i, MAXPAY) end
      local sent, err = tx:send_batch(batch, timeout)
      assert(sent == #batch, err)
      seq = seq + #batch
    else
      local msg = ipc.message(seq, MAXPAY)
      if op < 12 or not tx:try_send(msg) then assert(tx:send(msg, timeout)) end
      seq = seq + 1
    end
  end
end

-- The consumer's loop, for Lua children: receives message(first ..) with
-- recv, try_recv and (with batch > 0) recv_batch of up to `batch` mixed,
-- checks each, calls record(seq) after each, stops at EPIPE or after
-- `count`; returns how many it got.
local CONSUMER = [[
local function consume(rx, first, count, maxpay, record, batch)
  local seq, k = first, 0
  local function take(msg)
    local e = ipc.check(msg, seq, maxpay)
    if e then die("%s", e) end
    record(seq)
    seq, k = seq + 1, k + 1
  end
  while not count or k < count do
    local op = k % 13
    if op == 5 and batch > 0 then
      local list, err, code = rx:recv_batch(1 + k % batch, 60)
      if not list then
        if code == shm.EPIPE then break end
        die("recv_batch: %s", err)
      end
      for i = 1, #list do take(list[i]) end
    else
      local msg = op == 9 and rx:try_recv() or nil
      if not msg then
        local err, code
        msg, err, code = rx:recv(60)
        if not msg then
          if code == shm.EPIPE then break end
          die("recv: %s", err)
        end
      end
      take(msg)
    end
  end
  return k
end
]]

-- Kill points: `kills` distinct random sequence numbers in 2 .. total - 1,
-- sorted.
local function kill_points(kills, total)
  local at, points = {}, {}
  while #points < kills do
    local p = math.random(2, total - 1)
    if not at[p] then at[p] = true points[#points + 1] = p end
  end
  table.sort(points)
  return points
end

describe("stress", function()
  local fd, m, children

  before_each(function()
    fd, m = ipc.shared(1 << 20)
    children = {}
    math.randomseed(SEED)
  end)

  after_each(function()
    for _, c in ipairs(children) do ipc.cleanup(c) end
    pcall(shm.munmap, m)
    shm.close(fd)
  end)

  -- A Lua child running PRELUDE, CONSUMER, then code:format(...).
  local function spawn_lua(code, ...)
    local c = ipc.spawn({ shm.exepath(), "-e", ipc.PRELUDE .. CONSUMER .. code:format(...) }, fd)
    children[#children + 1] = c
    return c
  end
  local function spawn_peer(...)
    local c = ipc.spawn({ ipc.peers .. "channel_peer", ... }, fd)
    children[#children + 1] = c
    return c
  end

  it(("carries %d messages from shmlua to shmlua intact"):format(N), function()
    local tx = channel.new(m, 0, CAP)
    local c = spawn_lua([[
      local n = consume(channel.attach(m, 0), 1, nil, %d, function() end, 5)
      print(n)
    ]], MAXPAY)
    local t0 = shm.clock()
    produce(tx, 1, N, 60)
    tx:close()
    assert.equal(tostring(N) .. "\n", ipc.expect_ok(c, LIMIT))
    local dt = (shm.clock() - t0) / 1e9
    report("%d messages shmlua -> shmlua (0..%d byte payloads, %d-byte ring) in %.2f s: %.0f msg/s",
           N, MAXPAY, CAP, dt, N / dt)
  end)

  it(("carries %d messages from shmlua to a C consumer intact"):format(N), function()
    local tx = channel.new(m, 0, CAP)
    local c = spawn_peer("consume", tostring(N), tostring(MAXPAY))
    local t0 = shm.clock()
    produce(tx, 1, N, 60)
    assert.matches("^consumed " .. N .. " messages", ipc.expect_ok(c, LIMIT))
    local dt = (shm.clock() - t0) / 1e9
    report("%d messages shmlua -> C in %.2f s: %.0f msg/s", N, dt, N / dt)
  end)

  it(("carries %d messages from a C producer to shmlua intact"):format(N), function()
    local rx = channel.new(m, 0, CAP)
    local c = spawn_peer("produce", tostring(N), tostring(MAXPAY))
    local t0 = shm.clock()
    local got = 0
    for seq = 1, N do
      local msg = assert(rx:recv(60))
      local e = ipc.check(msg, seq, MAXPAY)
      if e then error(e) end
      got = got + 1
    end
    local ok, _, code = rx:recv(60)
    assert.is_nil(ok)
    assert.equal(shm.EPIPE, code)
    ipc.expect_ok(c, LIMIT)
    local dt = (shm.clock() - t0) / 1e9
    assert.equal(N, got)
    report("%d messages C -> shmlua in %.2f s: %.0f msg/s", N, dt, N / dt)
  end)

  it("loses at most one message per killed consumer, and none is repeated", function()
    local total = math.max(2000, N // 4)
    local kills = ipc.ASAN and 6 or 16
    local SLOTS = 4096 * 64        -- the consumers' records, after the channel
    shm.cdef [[struct stress_slot { uint32_t first; uint32_t last; uint32_t done; uint32_t pad; };]]
    local slots = shm.view(m, ("struct stress_slot[%d]"):format(kills + 1), SLOTS)
    local tx = channel.new(m, 0, CAP)
    local function consumer(i)
      return spawn_lua([[
        shm.cdef "struct stress_slot { uint32_t first; uint32_t last; uint32_t done; uint32_t pad; };"
        local slot = shm.view(m, "struct stress_slot[%d]", %d)[%d]
        local rx = channel.attach(m, 0)
        -- where the ring says to go on: the next message's sequence number
        local msg = assert(rx:recv(60))
        local first = ipc.seq_of(msg)
        local e = ipc.check(msg, first, %d)
        if e then die("first message: %%s", e) end
        shm.atomic_store(slot, "first", first)
        shm.atomic_store(slot, "last", first)
        -- recv and try_recv only: recv_batch publishes once per batch, so
        -- a kill could lose a whole batch
        consume(rx, first + 1, nil, %d, function(seq) shm.atomic_store(slot, "last", seq) end, 0)
        shm.atomic_store(slot, "done", 1)
      ]], kills + 1, SLOTS, i, MAXPAY, MAXPAY)
    end
    local points = kill_points(kills, total)
    local c = consumer(0)
    local t0, k, seq = shm.clock(), 1, 1
    for i = 1, kills do
      produce(tx, seq, points[i] - 1, 60)
      seq = points[i]
      shm.kill(c.pid, shm.SIGKILL)
      local how, sig, _, err = ipc.reap(c, 30)
      assert.equal("signaled", how, "consumer " .. k - 1 .. " died on its own: " .. err)
      assert.equal(shm.SIGKILL, sig)
      c = consumer(i)
      k = k + 1
    end
    produce(tx, seq, total, 60)
    tx:close()
    ipc.expect_ok(c, LIMIT)
    local dt = (shm.clock() - t0) / 1e9
    -- the combined record
    assert.equal(1, slots[kills].done, "the last consumer did not finish")
    assert.equal(total, slots[kills].last)
    local prev, lost, since_prev, gaps = 0, 0, 1, {}
    for i = 0, kills do
      local s = slots[i]
      if s.first ~= 0 then
        assert.is_true(s.first > prev, ("consumer %d starts at %d, at or before %d"):format(i, s.first, prev))
        assert.is_true(s.last >= s.first)
        local gap = s.first - prev - 1
        assert.is_true(gap <= since_prev,
          ("consumer %d starts at %d: %d lost after %d, with %d kill(s) between")
          :format(i, s.first, gap, prev, since_prev))
        lost = lost + gap
        gaps[#gaps + 1] = gap
        prev, since_prev = s.last, 1
      else
        since_prev = since_prev + 1
      end
    end
    assert.is_true(lost <= kills)
    report("%d messages, consumer killed %d times at random points: %d lost (gaps %s), "
           .. "none repeated or torn, %.2f s", total, kills, lost, table.concat(gaps, ","), dt)
    report("seed %d (SHMLUA_SEED to repeat)", SEED)
  end)

  it("goes on after a killed producer: nothing lost or torn, at most the message in flight repeated", function()
    local total = math.max(2000, N // 4)
    local kills = ipc.ASAN and 6 or 16
    local PROGRESS = 4096 * 64      -- the producers' shared progress, after the channel
    shm.cdef [[struct stress_progress { uint32_t last; uint32_t done; };]]
    local progress = shm.view(m, "struct stress_progress", PROGRESS)
    local rx = channel.new(m, 0, CAP)
    local function producer()
      -- each producer goes on after the last message a predecessor recorded
      -- as sent; one killed inside send may have sent that message or not
      return spawn_lua([[
        shm.cdef "struct stress_progress { uint32_t last; uint32_t done; };"
        local progress = shm.view(m, "struct stress_progress", %d)
        local tx = channel.attach(m, 0)
        for seq = shm.atomic_load(progress, "last") + 1, %d do
          local msg = ipc.message(seq, %d)
          if seq %% 4 ~= 0 or not tx:try_send(msg) then assert(tx:send(msg, 60)) end
          shm.atomic_store(progress, "last", seq)
        end
        shm.atomic_store(progress, "done", 1)
      ]], PROGRESS, total, MAXPAY)
    end
    local points = kill_points(kills, total)
    local c = producer()
    local t0, k, prev, repeats, kills_since = shm.clock(), 1, 0, 0, 0
    while prev < total do            -- plain checks: luassert is slow per message
      local msg, err = rx:recv(60)
      if not msg then error(err) end
      local seq = ipc.seq_of(msg)
      local e = ipc.check(msg, seq, MAXPAY)
      if e then error(("message %d: %s"):format(seq, e)) end
      if seq == prev then            -- the message in flight at a kill, again
        if kills_since == 0 then
          error(("%d repeated with no kill since the last repeat"):format(seq))
        end
        repeats, kills_since = repeats + 1, 0
      elseif seq ~= prev + 1 then
        error(("got %d after %d"):format(seq, prev))
      end
      prev = seq
      if points[k] and seq >= points[k] then
        shm.kill(c.pid, shm.SIGKILL)
        local how, sig, _, e = ipc.reap(c, 30)
        if how == "signaled" then
          assert.equal(shm.SIGKILL, sig)
          kills_since = kills_since + 1
          c = producer()
        else                          -- it had already sent everything
          assert.equal("exited", how, e)
          assert.equal(0, sig, e)
          c = nil
        end
        k = k + 1
      end
    end
    if c then ipc.expect_ok(c, LIMIT) end
    assert.equal(1, progress.done)
    assert.is_nil(rx:try_recv())
    local dt = (shm.clock() - t0) / 1e9
    report("%d messages, producer killed %d times at random points: none lost or torn, "
           .. "%d repeated (the message in flight), %.2f s", total, k - 1, repeats, dt)
  end)

  it("answers many mailbox calls, each with its own reply", function()
    local calls = math.max(1000, N // 10)
    local mb = mailbox.new(m, 0, 512)
    local c = spawn_lua([[
      local mb = mailbox.attach(m, 0)
      local n = 0
      while true do
        local req, err, code = mb:receive(60)
        if not req then
          if code == shm.EPIPE then break end
          die("receive: %%s", err)
        end
        n = n + 1
        local seq = ipc.seq_of(req)
        local e = ipc.check(req, seq, 300)
        if e then die("request: %%s", e) end
        mb:reply(ipc.message(seq + 1, 300))
      end
      print(n)
    ]])
    local t0 = shm.clock()
    for i = 1, calls do
      local seq = i * 3
      local rep = assert(mb:call(ipc.message(seq, 300), 60))
      local e = ipc.check(rep, seq + 1, 300)
      if e then error(e) end
    end
    local dt = (shm.clock() - t0) / 1e9
    mb:close()
    assert.equal(calls .. "\n", ipc.expect_ok(c, LIMIT))
    report("%d mailbox calls in %.2f s: %.1f us a call", calls, dt, dt / calls * 1e6)
  end)
end)
