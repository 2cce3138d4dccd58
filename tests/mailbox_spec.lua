-- mailbox_spec.lua: the request/reply mailbox of lua/shm/mailbox.lua: its
-- layout, bad arguments, timeouts and close in one process, and a client
-- (the spec) calling a server child (the running interpreter, sharing a
-- memfd as descriptor 3): replies answer their own requests, also after a
-- call timed out and after the server was killed and replaced.  Every wait
-- on a child is bounded; children left running after a failure are killed.
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
end)
