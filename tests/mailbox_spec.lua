-- mailbox_spec.lua: the request/reply mailbox of lua/shm/mailbox.lua: its
-- layout, bad arguments, timeouts and close in one process, and a client
-- (the spec) calling a server child (the running interpreter, sharing a
-- memfd as descriptor 3): replies answer their own requests, also after a
-- call timed out and after the server was killed and replaced; and the C
-- peer tests/c/mailbox_peer.c (build/peers/mailbox_peer) as either side,
-- which speaks the protocol from its own copy of struct shm_mailbox.  Every
-- wait on a child is bounded; children left running after a failure are
-- killed.
local shm = require "shm"
local mailbox = require "shm.mailbox"
local ipc = require "data.ipc"
local u = require "data.shmtest"
local fail, raises = u.assert_fail, u.assert_raises

local EPIPE, ETIMEDOUT = shm.EPIPE, shm.ETIMEDOUT
local SIZE = 1 << 16
local CTL = 32768          -- a control word for the tests, away from the mailbox

-- The server child's loop: serve `n` calls (nil: until EPIPE), answering
-- request r with reverse(r) .. "#" .. its call number.
local SERVER = [[
  shm.cdef("struct mb_ctl { uint32_t go; uint32_t served; };")
  local ctl = shm.view(m, "struct mb_ctl", %d)
  local mb = mailbox.attach(m, 0)
  local n, limit = 0, %s
  while not limit or n < limit do
    local req, err, code = mb:receive(30)
    if not req then
      if code == shm.EPIPE then break end
      die("receive: %%s", err)
    end
    n = n + 1
    %s
    mb:reply(req:reverse() .. "#" .. n)
    shm.atomic_store(ctl, "served", n)
  end
  print("served " .. n)
]]

describe("mailbox", function()
  local fd, m, children, ctl

  before_each(function()
    fd, m = ipc.shared(SIZE)
    children = {}
    pcall(shm.cdef, "struct mb_ctl { uint32_t go; uint32_t served; };")
    ctl = shm.view(m, "struct mb_ctl", CTL)
  end)

  after_each(function()
    for _, c in ipairs(children) do ipc.cleanup(c) end
    pcall(shm.munmap, m)
    shm.close(fd)
  end)

  -- A server child; `extra` runs between receive and reply.
  local function server(limit, extra)
    local c = ipc.spawn_lua(fd, SERVER, CTL, limit and tostring(limit) or "nil", extra or "")
    children[#children + 1] = c
    return c
  end

  -- Waits (bounded) until the control word `f` holds at least `want`.
  local function await(f, want)
    local deadline = shm.clock() + 30e9
    while shm.atomic_load(ctl, f) < want do
      assert.is_true(shm.clock() < deadline, f .. " never reached " .. want)
      shm.wait_change(ctl, f, shm.atomic_load(ctl, f), 0.05)
    end
  end

  describe("in one process", function()
    it("has a 64-byte header followed by the request and reply areas", function()
      assert.equal(64, mailbox.HEADER)
      assert.equal(64, shm.sizeof("struct shm_mailbox"))
      assert.equal(8, shm.offsetof("struct shm_mailbox", "state"))
      assert.equal(64 + 2 * 100, mailbox.size(100))
      local mb = mailbox.new(m, 64, 100)
      local v = shm.view(m, "struct shm_mailbox", 64)
      assert.equal(mailbox.MAGIC, v.magic)
      assert.equal(100, v.capacity)
      assert.equal(mailbox.IDLE, v.state)
      assert.equal(100, mailbox.attach(m, 64).cap)
      assert.equal(mb.cap, 100)
    end)

    it("receive and call time out with the ETIMEDOUT triple", function()
      local mb = mailbox.new(m, 0, 64)
      local t0 = shm.clock()
      fail("mailbox:receive", ETIMEDOUT, mb:receive(0.1))
      local dt = (shm.clock() - t0) / 1e9
      assert.is_true(dt >= 0.09 and dt < 2, "waited " .. dt)
      t0 = shm.clock()
      fail("mailbox:call", ETIMEDOUT, mb:call("anyone?", 0.1))   -- no server
      dt = (shm.clock() - t0) / 1e9
      assert.is_true(dt >= 0.09 and dt < 2, "waited " .. dt)
      -- the request stays posted: a server arriving now sees it
      assert.equal("anyone?", mb:receive(0))
    end)

    it("a reply without a pending request raises", function()
      local mb = mailbox.new(m, 0, 64)
      raises("reply without a pending request", mb.reply, mb, "x")
    end)

    it("raises for bad arguments", function()
      local mb = mailbox.new(m, 0, 16)
      raises("request must be a string, got number", mb.call, mb, 1)
      raises("request of 17 bytes exceeds the capacity of 16", mb.call, mb, ("x"):rep(17))
      raises("timeout must be nil or a number", mb.call, mb, "x", -1)
      raises("timeout must be nil or a number", mb.receive, mb, "1")
      raises("handler function", mb.serve, mb, "not a function")
      raises("capacity", mailbox.new, m, 0, 0)
      raises("capacity", mailbox.new, m, 0, 1.5)
      raises("does not fit", mailbox.new, m, 0, SIZE)
      raises("offset", mailbox.new, m, 3, 16)
      assert.equal(mailbox.IDLE, shm.view(m, "struct shm_mailbox").state)
    end)

    it("attach raises on garbage", function()
      raises("bad magic", mailbox.attach, m, 0)
      m:write(0, ("\x5A"):rep(256))
      raises("bad magic", mailbox.attach, m, 0)
      local v = shm.view(m, "struct shm_mailbox", 0)
      v.magic = mailbox.MAGIC
      v.capacity = SIZE
      raises("corrupt", mailbox.attach, m, 0)
      v.capacity = 0
      raises("corrupt", mailbox.attach, m, 0)
      raises("no mailbox", mailbox.attach, m, SIZE - 8)
    end)

    it("close makes both sides fail with EPIPE", function()
      local mb = mailbox.new(m, 0, 64)
      mb:close()
      local t0 = shm.clock()
      fail("mailbox:receive", EPIPE, mb:receive(5))
      fail("mailbox:call", EPIPE, mb:call("x", 5))
      fail("mailbox:receive", EPIPE, mb:serve(function(r) return r end, 5))
      assert.is_true((shm.clock() - t0) / 1e9 < 1)
    end)
  end)

  describe("with a server process", function()
    it("answers many calls, each with its own reply", function()
      local mb = mailbox.new(m, 0, 256)
      local c = server(nil)
      for i = 1, 500 do
        local req = ("req-%d-"):format(i) .. ("r"):rep(i % 200)
        local rep = assert(mb:call(req, 20))
        assert.equal(req:reverse() .. "#" .. i, rep)
      end
      assert.equal("#501", mb:call("", 20))
      mb:close()
      assert.equal("served 501\n", ipc.expect_ok(c, 30))
    end)

    it("serve runs the handler on each request", function()
      local mb = mailbox.new(m, 0, 64)
      local c = ipc.spawn_lua(fd, [[
        local mb = mailbox.attach(m, 0)
        for i = 1, 3 do assert(mb:call("n" .. i, 20) == "N" .. i) end
        mb:close()
      ]])
      children[#children + 1] = c
      for _ = 1, 3 do assert.is_true(mb:serve(string.upper, 20)) end
      fail("mailbox:receive", EPIPE, mb:serve(string.upper, 20))
      ipc.expect_ok(c, 30)
    end)

    it("after a call timed out, the next call gets its own reply", function()
      local mb = mailbox.new(m, 0, 64)
      -- the server holds its first reply until ctl.go is set
      local c = server(3, [[
        if n == 1 then
          local deadline = shm.clock() + 30e9
          while shm.atomic_load(ctl, "go") == 0 do
            if shm.clock() > deadline then die("never told to go") end
            shm.wait_change(ctl, "go", 0, 0.05)
          end
        end]])
      fail("mailbox:call", ETIMEDOUT, mb:call("first", 0.2))
      shm.notify(ctl, "go", 1)
      -- waits out the stale request, drops its reply, then posts its own
      assert.equal("dnoces#2", mb:call("second", 20))
      assert.equal("driht#3", mb:call("third", 20))
      assert.equal("served 3\n", ipc.expect_ok(c, 30))
    end)

    it("a server killed between receive and reply is replaced; the request is served again", function()
      local mb = mailbox.new(m, 0, 64)
      -- this server receives, then stops forever before replying
      local dead = server(nil, [[
        shm.atomic_store(ctl, "go", 1)
        shm.sleep(60)]])
      fail("mailbox:call", ETIMEDOUT, mb:call("lost", 0.2))
      await("go", 1)
      shm.kill(dead.pid, shm.SIGKILL)
      local how, sig = ipc.reap(dead, 30)
      assert.equal("signaled", how)
      assert.equal(shm.SIGKILL, sig)
      local c = server(2)
      -- the successor answers the pending "lost" first (at least once)
      assert.equal("wen#2", mb:call("new", 20))
      assert.equal("served 2\n", ipc.expect_ok(c, 30))
      await("served", 2)
    end)
  end)

  -- What the spec and tests/c/mailbox_peer.c agree on (its header comment
  -- has the full text): request(i) is le32(i) .. a slice of ipc.BLOCK, cut
  -- to i * 613 % (cap + 1) bytes (every length 0..cap once in cap + 1
  -- calls); answer(r) is r reversed, each byte XOR 0x5A, twice, cut to cap.
  describe("with the C peer", function()
    local CAP, OFF, N = 1000, 4096, 3000  -- 613 does not divide 1001
    local XOR = {}
    for b = 0, 255 do XOR[string.char(b)] = string.char(b ~ 0x5A) end

    local function request(i, cap)
      local off, len = i * 7919 % 2048, i * 613 % (cap + 1)
      return (string.pack("<I4", i) .. ipc.BLOCK:sub(off + 1, off + cap - 4)):sub(1, len)
    end
    local function answer(r, cap)
      local t = r:reverse():gsub(".", XOR)
      return (t .. t):sub(1, cap)
    end

    -- Asserts that reply `got` is answer(req), saying how it differs in
    -- text (the strings are binary: no dump of them).
    local function check_answer(req, got, what)
      local want = answer(req, CAP)
      if got == want then return end
      if type(got) ~= "string" then
        error(("%s: no reply (%s)"):format(what, tostring(got)), 2)
      end
      local k = 1
      while got:byte(k) == want:byte(k) do k = k + 1 end
      error(("%s (%d-byte request): a %d-byte reply, expected %d; first difference at byte %d")
            :format(what, #req, #got, #want, k - 1), 2)
    end

    local function spawn_peer(...)
      local c = ipc.spawn({ ipc.peers .. "mailbox_peer", ... }, fd)
      children[#children + 1] = c
      return c
    end

    -- The next request from the C client c: bounded (20 s), and a client
    -- that died meanwhile is reported at once, with its stderr.
    local function receive_from(mb, c)
      local deadline = shm.clock() + 20e9
      while true do
        local req, err, code = mb:receive(0.2)
        if req then return req end
        if code ~= ETIMEDOUT or shm.clock() > deadline then error(err, 2) end
        local how, x = shm.wait(c.pid, 0)
        if how then
          c.done = true
          ipc.cleanup(c)   -- reads what is left of its stdout and stderr
          error(("the C client %s %s; stderr: %s"):format(how, tostring(x), c.stderr), 2)
        end
      end
    end

    -- Serves `n` calls of the C client c in this process, checking that
    -- call i brings request(i); returns the set of request lengths seen.
    local function serve_c_client(mb, c, n)
      local lengths = {}
      for i = 1, n do
        local req = receive_from(mb, c)
        if req ~= request(i, CAP) then
          error(("call %d: got a %d-byte request (seq %s), expected request(%d) of %d bytes")
                :format(i, #req, tostring(#req >= 4 and string.unpack("<I4", req)), i,
                        #request(i, CAP)))
        end
        lengths[#req] = true
        assert.is_true(mb:reply(answer(req, CAP)))
      end
      return lengths
    end

    local function all_lengths(lengths)
      for len = 0, CAP do
        assert.is_true(lengths[len], "no request of " .. len .. " bytes")
      end
    end

    it("agrees on the header layout (the peer asserts the same offsets)", function()
      for f, off in pairs { magic = 0, capacity = 4, state = 8, waiters = 12, closed = 16,
                            req_len = 20, rep_len = 24, seq = 28 } do
        assert.equal(off, shm.offsetof("struct shm_mailbox", f), f)
      end
      assert.equal(0x584f424d, mailbox.MAGIC)
    end)

    it("a Lua client calls a C server: every reply answers its own request", function()
      local mb = mailbox.new(m, OFF, CAP)
      local c = spawn_peer("server", tostring(OFF), tostring(N))
      local lengths = {}
      for i = 1, N do
        local req = request(i, CAP)
        local rep, err = mb:call(req, 20)
        assert(rep, err)
        check_answer(req, rep, "call " .. i)
        lengths[#req] = true
      end
      all_lengths(lengths)
      assert.equal(("served %d requests\n"):format(N), ipc.expect_ok(c, 60))
      local v = shm.view(m, "struct shm_mailbox", OFF)
      assert.equal(mailbox.IDLE, v.state)
      assert.equal(N, v.seq)
    end)

    it("a C client calls a Lua server: every reply answers its own request", function()
      local mb = mailbox.new(m, OFF, CAP)
      local c = spawn_peer("client", tostring(OFF), tostring(N))
      all_lengths(serve_c_client(mb, c, N))
      assert.equal(("called %d, dropped 0 stale replies\n"):format(N), ipc.expect_ok(c, 60))
      local v = shm.view(m, "struct shm_mailbox", OFF)
      assert.equal(N, v.seq)
      -- the client set IDLE after copying its last reply, before exiting
      assert.equal(mailbox.IDLE, v.state)
      fail("mailbox:receive", ETIMEDOUT, mb:receive(0))
    end)

    it("a C client and a C server talk through a mailbox Lua made", function()
      mailbox.new(m, OFF, CAP)
      local s = spawn_peer("server", tostring(OFF), "2000")
      local c = spawn_peer("client", tostring(OFF), "2000")
      assert.equal("called 2000, dropped 0 stale replies\n", ipc.expect_ok(c, 60))
      assert.equal("served 2000 requests\n", ipc.expect_ok(s, 60))
    end)

    -- Waits (bounded) until a peer sleeps on state: waiters is not zero.
    local function await_sleeper(v)
      local deadline = shm.clock() + 20e9
      while shm.atomic_load(v, "waiters") == 0 do
        assert.is_true(shm.clock() < deadline, "the C peer never went to sleep")
        shm.wait_change(v, "waiters", 0, 0.01)
      end
    end

    it("a C peer asleep on the futex is woken by the Lua side", function()
      local mb = mailbox.new(m, OFF, CAP)
      local v = shm.view(m, "struct shm_mailbox", OFF)
      -- the server sleeps waiting for a request; each call wakes it
      local s = spawn_peer("server", tostring(OFF), "3")
      for i = 1, 3 do
        await_sleeper(v)
        local req = request(i, CAP)
        check_answer(req, (mb:call(req, 20)), "call " .. i)
      end
      assert.equal("served 3 requests\n", ipc.expect_ok(s, 30))
      -- the client sleeps waiting for the reply; each reply wakes it
      local c = spawn_peer("client", tostring(OFF), "3")
      for i = 1, 3 do
        local req = receive_from(mb, c)
        assert.equal(request(i, CAP), req)
        await_sleeper(v)
        assert.is_true(mb:reply(answer(req, CAP)))
      end
      assert.equal("called 3, dropped 0 stale replies\n", ipc.expect_ok(c, 30))
      assert.equal(0, v.waiters)
    end)

    it("the C client waits out a stale request and drops its reply", function()
      local mb = mailbox.new(m, OFF, CAP)
      -- a call that timed out leaves its request posted
      fail("mailbox:call", ETIMEDOUT, mb:call("stale request", 0))
      local c = spawn_peer("client", tostring(OFF), "3")
      assert.equal("stale request", receive_from(mb, c))
      assert.is_true(mb:reply("stale reply"))
      serve_c_client(mb, c, 3)
      assert.equal("called 3, dropped 1 stale replies\n", ipc.expect_ok(c, 30))
    end)

    it("the C client drops a reply nobody collected", function()
      local mb = mailbox.new(m, OFF, CAP)
      fail("mailbox:call", ETIMEDOUT, mb:call("orphan", 0))
      assert.equal("orphan", mb:receive(0))
      assert.is_true(mb:reply("never read"))       -- state REPLY, nobody collects
      local c = spawn_peer("client", tostring(OFF), "2")
      serve_c_client(mb, c, 2)
      assert.equal("called 2, dropped 1 stale replies\n", ipc.expect_ok(c, 30))
    end)

    it("a C server started late answers the pending request first", function()
      local mb = mailbox.new(m, OFF, CAP)
      fail("mailbox:call", ETIMEDOUT, mb:call("lost", 0.05))  -- no server yet
      local c = spawn_peer("server", tostring(OFF), "3")
      for i = 1, 2 do
        local req = request(i, CAP)
        check_answer(req, (mb:call(req, 20)), "call " .. i)
      end
      assert.equal("served 3 requests\n", ipc.expect_ok(c, 30))
    end)

    it("close ends the C server (exit 0) and the C client (exit 4)", function()
      local mb = mailbox.new(m, OFF, CAP)
      local s = spawn_peer("server", tostring(OFF), "1000")
      for i = 1, 5 do
        local req = request(i, CAP)
        check_answer(req, (mb:call(req, 20)), "call " .. i)
      end
      mb:close()
      assert.equal("served 5 requests (closed)\n", ipc.expect_ok(s, 30))

      mb = mailbox.new(m, OFF, CAP)
      local c = spawn_peer("client", tostring(OFF), "1000")
      serve_c_client(mb, c, 5)
      mb:close()
      local how, code, _, err = ipc.reap(c, 30)
      assert.equal("exited", how)
      assert.equal(4, code, err)
      assert.matches("mailbox closed at call 6 of 1000", err, 1, true)
    end)

    it("the C peer refuses a header that is not a mailbox", function()
      local function refused(pattern, ...)
        local how, code, out, err = ipc.reap(spawn_peer(...), 30)
        assert.equal("exited", how)
        assert.equal(2, code, err)
        assert.equal("", out)
        assert.matches(pattern, err, 1, true)
      end
      -- nothing there yet (zeros), then garbage
      refused("no mailbox at offset 4096 (bad magic 0)", "server", tostring(OFF), "1")
      m:write(OFF, ("\x5A"):rep(256))
      refused("no mailbox at offset 4096 (bad magic 0x5a5a5a5a)", "client", tostring(OFF), "1")
      -- the right magic, a capacity that does not fit, then none
      local v = shm.view(m, "struct shm_mailbox", OFF)
      v.magic = mailbox.MAGIC
      v.capacity = SIZE
      refused("mailbox at offset 4096 is corrupt (capacity 65536", "server", tostring(OFF), "1")
      v.capacity = 0
      refused("is corrupt (capacity 0", "client", tostring(OFF), "1")
      refused("no mailbox at offset 65536", "server", tostring(SIZE), "1")
      refused("no mailbox at offset 4098", "server", "4098", "1")
      refused("OFFSET must be a non-negative decimal number", "server", "-4", "1")
      refused("unknown mode 'serve'", "serve", "0", "1")
      -- a mailbox too large for the client's request(i)
      mailbox.new(m, 0, 4000)
      refused("capacity of at most 2052, not 4000", "client", "0", "1")
      -- nothing was posted by any of them
      assert.equal(mailbox.IDLE, shm.view(m, "struct shm_mailbox", 0).state)
    end)
  end)
end)
