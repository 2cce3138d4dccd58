-- proc_spec.lua: processes and descriptor passing (src/proc.c).
-- Every wait on a child is bounded; every test checks that it leaves no
-- descriptor open (it compares /proc/self/fd before and after).
local shm = require "shm"
local helper = require "helper"

local PEERS = helper.build .. "/peers/"
-- errno values (Linux), from the module where errno.c provides them.
local ENOENT = shm.ENOENT or 2
local ESRCH = shm.ESRCH or 3
local EBADF = shm.EBADF or 9
local ECHILD = shm.ECHILD or 10
local EACCES = shm.EACCES or 13
local EPERM = shm.EPERM or 1
local ENXIO = shm.ENXIO or 6
local EPIPE = shm.EPIPE or 32
local EMSGSIZE = shm.EMSGSIZE or 90
local ETIMEDOUT = shm.ETIMEDOUT or 110
local O_RDONLY = shm.O_RDONLY or 0
local O_WRONLY = shm.O_WRONLY or 1

-- The descriptors below 1024 open in this process, as "0 1 2 ...".  Asked
-- of the process itself: listing /proc/PID/fd from a child (popen) races
-- with the parent closing the child's end of the pipe.
local function open_fds()
  local fds = {}
  for fd = 0, 1023 do
    if shm.fcntl(fd, shm.F_GETFD) then fds[#fds + 1] = fd end
  end
  return table.concat(fds, " ")
end

-- Everything readable from fd until end of file, each wait bounded.
local function read_all(fd, timeout)
  local deadline = shm.clock() + math.floor((timeout or 5) * 1e9)
  local parts = {}
  while true do
    local left = (deadline - shm.clock()) / 1e9
    assert(left > 0, "read_all: timed out")
    local ready = assert(shm.poll_fd(fd, "r", left))
    assert(ready ~= "", "read_all: timed out")
    local s = assert(shm.read_fd(fd, 4096))
    if s == "" then break end
    parts[#parts + 1] = s
  end
  return table.concat(parts)
end

-- Waits for pid (bounded) and returns how, code.
local function reap(pid, timeout)
  local how, code = shm.wait(pid, timeout or 5)
  assert(how, code)
  return how, code
end

-- Runs argv with stdout captured: returns output, how, code.
local function capture(argv, opts)
  opts = opts or {}
  opts.stdout = "pipe"
  local pid, pipes = assert(shm.spawn(argv, opts))
  local out = read_all(pipes.stdout)
  shm.close(pipes.stdout)
  local how, code = reap(pid)
  return out, how, code
end

local function pipe()
  return assert(shm.pipe())
end

local function closeall(...)
  for _, fd in ipairs({...}) do assert(shm.close(fd)) end
end

-- Every test below also checks that it left no descriptor open.
local busted_it = it
local function it(name, fn)
  busted_it(name, function()
    local before = open_fds()
    fn()
    assert.are.equal(before, open_fds(), "descriptors left open by: " .. name)
  end)
end

describe("spawn and wait", function()
  it("reports exit codes", function()
    local pid = assert(shm.spawn({"/bin/sh", "-c", "exit 7"}))
    assert.is_true(math.type(pid) == "integer" and pid > 0)
    assert.are.same({"exited", 7}, {reap(pid)})
    pid = assert(shm.spawn({"sh", "-c", "exit 0"}))  -- found in PATH
    assert.are.same({"exited", 0}, {reap(pid)})
  end)

  it("reports a child killed by a signal", function()
    local pid = assert(shm.spawn({"sleep", "5"}))
    assert.is_true(shm.kill(pid, shm.SIGKILL))
    assert.are.same({"signaled", shm.SIGKILL}, {reap(pid)})
    pid = assert(shm.spawn({"sleep", "5"}))
    assert.is_true(shm.kill(pid))  -- SIGTERM by default
    assert.are.same({"signaled", shm.SIGTERM}, {reap(pid)})
  end)

  it("times out waiting and the child keeps running", function()
    local pid = assert(shm.spawn({"sleep", "5"}))
    local t0 = shm.clock()
    local ok, msg, err = shm.wait(pid, 0.1)
    local dt = (shm.clock() - t0) / 1e9
    assert.is_nil(ok)
    assert.are.equal(ETIMEDOUT, err)
    assert.truthy(msg:find("wait(" .. pid .. "): ", 1, true), msg)
    assert.is_true(dt >= 0.1 and dt < 3, "waited " .. dt)
    ok, msg, err = shm.wait(pid, 0)  -- just looks
    assert.is_nil(ok)
    assert.are.equal(ETIMEDOUT, err)
    assert.is_true(shm.kill(pid, 0))  -- still there
    assert.is_true(shm.kill(pid, shm.SIGKILL))
    assert.are.same({"signaled", shm.SIGKILL}, {reap(pid)})
  end)

  it("returns ECHILD for a process that is not its child", function()
    local ok, msg, err = shm.wait(1, 1)
    assert.is_nil(ok)
    assert.are.equal(ECHILD, err)
    assert.truthy(msg:find("wait(1)", 1, true), msg)
    local pid = assert(shm.spawn({"true"}))
    reap(pid)
    ok, msg, err = shm.wait(pid, 1)  -- already reaped
    assert.is_nil(ok)
    assert.are.equal(ECHILD, err)
  end)

  it("waits without a timeout", function()
    local pid = assert(shm.spawn({"sh", "-c", "exit 3"}))
    assert.are.same({"exited", 3}, {shm.wait(pid)})
  end)

  it("replaces the environment with opts.env, or inherits it", function()
    local out = capture({"/bin/sh", "-c", 'printf "%s|%s|%s" "$FOO" "$N" "${HOME-unset}"'},
                        {env = {FOO = "bar baz", N = 42}})
    assert.are.equal("bar baz|42|unset", out)
    out = capture({"/bin/sh", "-c", 'printf "%s" "$PATH"'})
    assert.are.equal(os.getenv("PATH"), out)
    out = capture({"/usr/bin/env"}, {env = {}})
    assert.are.equal("", out)
  end)

  it("runs the child in opts.cwd", function()
    assert.are.equal("/tmp\n", capture({"pwd"}, {cwd = "/tmp"}))
    assert.are.equal("/\n", capture({"/bin/sh", "-c", "pwd"}, {cwd = "/"}))
    local ok, msg, err = shm.spawn({"pwd"}, {cwd = "/nonexistent-shmlua-dir"})
    assert.is_nil(ok)
    assert.are.equal(ENOENT, err)
    assert.truthy(msg:find("chdir(/nonexistent-shmlua-dir)", 1, true), msg)
  end)

  it("gives descriptors at the chosen numbers", function()
    local ar, aw = pipe()
    local br, bw = pipe()
    local pid = assert(shm.spawn({"/bin/sh", "-c", "echo three >&3; echo four >&4"},
                                 {fds = {[3] = aw, [4] = bw}}))
    assert.are.same({"exited", 0}, {reap(pid)})
    closeall(aw, bw)
    assert.are.equal("three\n", read_all(ar))
    assert.are.equal("four\n", read_all(br))
    closeall(ar, br)
  end)

  it("gives a descriptor at the highest number the limit allows", function()
    local limit = tonumber((helper.run("ulimit -n")))
    local top = math.min(limit, 1048576) - 1
    local r, w = pipe()
    local pid = assert(shm.spawn({PEERS .. "proc_fdwrite", top .. ":top"}, {fds = {[top] = w}}))
    assert.are.same({"exited", 0}, {reap(pid)})
    shm.close(w)
    assert.are.equal("top", read_all(r))
    shm.close(r)
  end)

  it("handles a swap of descriptor numbers", function()
    local ar, aw = pipe()
    local br, bw = pipe()
    -- swapped targets
    local pid = assert(shm.spawn({"/bin/sh", "-c", "echo three >&3; echo four >&4"},
                                 {fds = {[3] = bw, [4] = aw}}))
    assert.are.same({"exited", 0}, {reap(pid)})
    -- sources that are each other's targets: the child's aw is the parent's
    -- bw and the other way round
    pid = assert(shm.spawn({PEERS .. "proc_fdwrite", aw .. ":x" .. aw, bw .. ":y" .. bw},
                           {fds = {[aw] = bw, [bw] = aw}}))
    assert.are.same({"exited", 0}, {reap(pid)})
    closeall(aw, bw)
    assert.are.equal("four\n" .. "y" .. bw, read_all(ar))
    assert.are.equal("three\n" .. "x" .. aw, read_all(br))
    closeall(ar, br)
  end)

  it("lets the child inherit nothing else", function()
    local r, w = pipe()
    -- a descriptor that is not close-on-exec must not leak either
    local f = io.open("/dev/null")
    assert.are.equal("0 1 2\n", capture({PEERS .. "proc_fdlist"}))
    assert.are.equal("0 1 2 5 17\n",
                     capture({PEERS .. "proc_fdlist"}, {fds = {[5] = w, [17] = r}}))
    -- fds may also name 0..2
    local out = capture({PEERS .. "proc_fdlist"}, {fds = {[0] = r, [9] = 0}})
    assert.are.equal("0 1 2 9\n", out)
    f:close()
    closeall(r, w)
  end)

  it("redirects stdin, stdout and stderr", function()
    local pid, pipes = assert(shm.spawn({"cat"}, {stdin = "pipe", stdout = "pipe"}))
    assert.are.same({"stdin", "stdout"}, (function()
      local k = {}
      for name in pairs(pipes) do k[#k + 1] = name end
      table.sort(k)
      return k
    end)())
    assert.are.equal(11, shm.write_fd(pipes.stdin, "hello world"))
    shm.close(pipes.stdin)
    assert.are.equal("hello world", read_all(pipes.stdout))
    shm.close(pipes.stdout)
    assert.are.same({"exited", 0}, {reap(pid)})

    pid, pipes = assert(shm.spawn({"/bin/sh", "-c", "echo out; echo err >&2"},
                                  {stdout = "null", stderr = "pipe", stdin = "null"}))
    assert.is_nil(pipes.stdout)
    assert.are.equal("err\n", read_all(pipes.stderr))
    shm.close(pipes.stderr)
    reap(pid)

    local r, w = pipe()
    pid = assert(shm.spawn({"echo", "to fd"}, {stdout = w, stderr = "inherit"}))
    shm.close(w)
    assert.are.equal("to fd\n", read_all(r))
    shm.close(r)
    reap(pid)

    -- stdin "null" reads as empty
    assert.are.equal("", capture({"cat"}, {stdin = "null"}))
  end)

  it("reports exec failure in the parent", function()
    local ok, msg, err = shm.spawn({"/nonexistent/prog", "x"})
    assert.is_nil(ok)
    assert.are.equal(ENOENT, err)
    assert.truthy(msg:find("spawn(/nonexistent/prog): ", 1, true), msg)
    if shm.errno_name then
      assert.are.equal("spawn(/nonexistent/prog): ENOENT: No such file or directory", msg)
    end
    ok, msg, err = shm.spawn({"no-such-program-shmlua"})
    assert.is_nil(ok)
    assert.are.equal(ENOENT, err)
    assert.truthy(msg:find("spawn(no-such-program-shmlua)", 1, true), msg)
    ok, msg, err = shm.spawn({"/etc/passwd"})  -- not executable
    assert.is_nil(ok)
    assert.are.equal(EACCES, err)
    -- a source descriptor that is not open
    ok, msg, err = shm.spawn({"true"}, {fds = {[3] = 100000}})
    assert.is_nil(ok)
    assert.are.equal(EBADF, err)
    assert.truthy(msg:find("descriptor 100000 as 3", 1, true), msg)
    -- pipes made for a failed spawn are closed (after_each counts)
    ok = shm.spawn({"/nonexistent/prog"}, {stdin = "pipe", stdout = "pipe", stderr = "null"})
    assert.is_nil(ok)
  end)

  it("raises on malformed arguments", function()
    assert.has_error(function() shm.spawn() end)
    assert.has_error(function() shm.spawn("sh") end)
    assert.has_error(function() shm.spawn({}) end, nil)
    assert.has_error(function() shm.spawn({""}) end)
    assert.has_error(function() shm.spawn({"sh", {}}) end)
    assert.has_error(function() shm.spawn({"sh", "a\0b"}) end)
    assert.has_error(function() shm.spawn({"sh"}, 5) end)
    assert.has_error(function() shm.spawn({"sh"}, {env = 1}) end)
    assert.has_error(function() shm.spawn({"sh"}, {env = {["A=B"] = "x"}}) end)
    assert.has_error(function() shm.spawn({"sh"}, {env = {[1] = "x"}}) end)
    assert.has_error(function() shm.spawn({"sh"}, {env = {A = {}}}) end)
    assert.has_error(function() shm.spawn({"sh"}, {cwd = 1}) end)
    assert.has_error(function() shm.spawn({"sh"}, {fds = {a = 1}}) end)
    assert.has_error(function() shm.spawn({"sh"}, {fds = {[3] = "x"}}) end)
    assert.has_error(function() shm.spawn({"sh"}, {fds = {[-1] = 1}}) end)
    assert.has_error(function() shm.spawn({"sh"}, {fds = {[3] = -1}}) end)
    assert.has_error(function() shm.spawn({"sh"}, {stdout = "bogus"}) end)
    assert.has_error(function() shm.spawn({"sh"}, {stdout = true}) end)
    assert.has_error(function() shm.spawn({"sh"}, {stdout = 1, fds = {[1] = 2}}) end)
    assert.has_error(function() shm.wait() end)
    assert.has_error(function() shm.wait(0) end)
    assert.has_error(function() shm.wait(-5) end)
    assert.has_error(function() shm.wait(1, -1) end)
    assert.has_error(function() shm.wait(1, 0 / 0) end)
  end)
end)

describe("signals and ids", function()
  local function pid_max()
    local f = assert(io.open("/proc/sys/kernel/pid_max"))
    local n = f:read("n")
    f:close()
    return n
  end

  it("gives this process's ids", function()
    local pid = shm.getpid()
    assert.are.equal("integer", math.type(pid))
    assert.are.equal(pid .. "\n", capture({"/bin/sh", "-c", "echo $PPID"}))
    local child, pipes = assert(shm.spawn({"/bin/sh", "-c", "echo $$"}, {stdout = "pipe"}))
    assert.are.equal(child .. "\n", read_all(pipes.stdout))
    shm.close(pipes.stdout)
    reap(child)
    local ppid = shm.getppid()
    assert.is_true(ppid > 0 and ppid ~= pid)
  end)

  it("sends signals and reports failures", function()
    assert.is_true(shm.kill(shm.getpid(), 0))
    local ok, msg, err = shm.kill(pid_max(), 0)
    assert.is_nil(ok)
    assert.are.equal(ESRCH, err)
    assert.truthy(msg:find("kill(" .. pid_max() .. ")", 1, true), msg)
    assert.has_error(function() shm.kill(-1, 0) end)
    assert.has_error(function() shm.kill(1, 99) end)
    assert.has_error(function() shm.kill(1, -1) end)
    assert.has_error(function() shm.kill("x") end)
    for name, n in pairs({SIGHUP = 1, SIGINT = 2, SIGQUIT = 3, SIGABRT = 6, SIGBUS = 7,
                          SIGKILL = 9, SIGUSR1 = 10, SIGSEGV = 11, SIGUSR2 = 12,
                          SIGPIPE = 13, SIGTERM = 15, SIGCHLD = 17, SIGCONT = 18,
                          SIGSTOP = 19}) do
      assert.are.equal(n, shm[name], name)
    end
  end)

  it("stops and continues a child", function()
    local pid = assert(shm.spawn({"sleep", "5"}))
    assert.is_true(shm.kill(pid, shm.SIGSTOP))
    local ok, _, err = shm.wait(pid, 0.05)  -- stopped is not ended
    assert.is_nil(ok)
    assert.are.equal(ETIMEDOUT, err)
    assert.is_true(shm.kill(pid, shm.SIGCONT))
    assert.is_true(shm.kill(pid, shm.SIGUSR1))
    assert.are.same({"signaled", shm.SIGUSR1}, {reap(pid)})
  end)

  it("knows the running executable", function()
    local exe = assert(shm.exepath())
    assert.are.equal("/", exe:sub(1, 1))
    local real = helper.run("readlink -f " .. (os.getenv("SHMLUA_STOCK")
      and "/proc/" .. shm.getpid() .. "/exe" or helper.shmlua)):gsub("\n$", "")
    assert.are.equal(real, exe)
    if os.getenv("SHMLUA_STOCK") then assert.truthy(exe:find("lua", 1, true), exe) end
  end)
end)

describe("clock and sleep", function()
  it("is monotonic in integer nanoseconds", function()
    local a = shm.clock()
    local b = shm.clock()
    assert.are.equal("integer", math.type(a))
    assert.is_true(b >= a)
    assert.is_true(a > 0)
  end)

  it("sleeps for the time asked", function()
    local t0 = shm.clock()
    assert.is_true(shm.sleep(0.05))
    local dt = (shm.clock() - t0) / 1e9
    assert.is_true(dt >= 0.05 and dt < 1, "slept " .. dt)
    t0 = shm.clock()
    shm.sleep(0)
    assert.is_true((shm.clock() - t0) / 1e9 < 0.5)
    assert.has_error(function() shm.sleep(-1) end)
    assert.has_error(function() shm.sleep(0 / 0) end)
    assert.has_error(function() shm.sleep("x") end)
  end)
end)

describe("descriptor passing", function()
  it("passes a pipe's write end within one process", function()
    local a, b = assert(shm.socketpair())
    local r, w = pipe()
    assert.are.equal(3, shm.send_fd(a, w, "abc"))
    shm.close(w)  -- only the received copy is left
    local payload, fds = shm.recv_fd(b)
    assert.are.equal("abc", payload)
    assert.are.equal(1, #fds)
    -- received close-on-exec
    if shm.fcntl then
      assert.are.equal(shm.FD_CLOEXEC, shm.fcntl(fds[1], shm.F_GETFD) & shm.FD_CLOEXEC)
    end
    assert.are.equal(5, shm.write_fd(fds[1], "hello"))
    shm.close(fds[1])
    assert.are.equal("hello", read_all(r))
    closeall(r, a, b)
  end)

  it("passes several descriptors with a payload", function()
    local a, b = assert(shm.socketpair())
    local r1, w1 = pipe()
    local r2, w2 = pipe()
    local r3, w3 = pipe()
    assert.are.equal(7, shm.send_fd(b, {w1, w2, w3}, "payload"))
    closeall(w1, w2, w3)
    local payload, fds = shm.recv_fd(a, 8, 100)
    assert.are.equal("payload", payload)
    assert.are.equal(3, #fds)
    for i, fd in ipairs(fds) do
      shm.write_fd(fd, "n" .. i)
      shm.close(fd)
    end
    assert.are.equal("n1", read_all(r1))
    assert.are.equal("n2", read_all(r2))
    assert.are.equal("n3", read_all(r3))
    closeall(r1, r2, r3, a, b)
  end)

  it("sends an empty payload as one NUL byte, received as empty", function()
    local a, b = assert(shm.socketpair("seqpacket"))
    local r, w = pipe()
    assert.are.equal(0, shm.send_fd(a, w))
    assert.are.equal(0, shm.send_fd(a, {}, ""))  -- no descriptors at all
    local payload, fds = shm.recv_fd(b)
    assert.are.equal("", payload)
    assert.are.equal(1, #fds)
    local payload2, none = shm.recv_fd(b)
    assert.are.equal("", payload2)
    assert.are.same({}, none)
    closeall(fds[1], r, w, a, b)
  end)

  it("closes what arrived when the control message is truncated", function()
    local a, b = assert(shm.socketpair())
    local before = open_fds()
    local r1, w1 = pipe()
    local r2, w2 = pipe()
    assert.are.equal(2, shm.send_fd(a, {r1, w1, r2, w2}, "xy"))
    closeall(r1, w1, r2, w2)
    local ok, msg, err = shm.recv_fd(b, 1)
    assert.is_nil(ok)
    assert.are.equal(EMSGSIZE, err)
    assert.truthy(msg:find("^recv_fd: control message truncated"), msg)
    assert.are.equal(before, open_fds())
    -- maxfds = 0 refuses any descriptor
    local r, w = pipe()
    shm.send_fd(a, r, "z")
    shm.close(r)
    ok, msg, err = shm.recv_fd(b, 0)
    assert.is_nil(ok)
    assert.are.equal(EMSGSIZE, err)
    shm.close(w)
    assert.are.equal(before, open_fds())
    closeall(a, b)
  end)

  it("tells the end of the stream apart from data", function()
    local a, b = assert(shm.socketpair())
    shm.send_fd(a, {}, "last")
    shm.close(a)
    local payload, fds = shm.recv_fd(b)
    assert.are.equal("last", payload)
    assert.are.same({}, fds)
    local ok, msg, err = shm.recv_fd(b)
    assert.is_nil(ok)
    assert.are.equal("recv_fd: connection closed", msg)
    assert.are.equal(0, err)
    shm.close(b)
  end)

  it("passes descriptors to and from a C program", function()
    local mine, theirs = assert(shm.socketpair())
    local r, w = pipe()
    local pid = assert(shm.spawn({PEERS .. "proc_fdpeer"}, {fds = {[3] = theirs}}))
    shm.close(theirs)
    assert.are.equal(8, shm.send_fd(mine, w, "to-c-ok!"))
    shm.close(w)
    assert.are.equal("to-c-ok!", read_all(r))
    assert.truthy(shm.poll_fd(mine, "r", 5):find("r"))
    local payload, fds = assert(shm.recv_fd(mine))
    assert.are.equal("back", payload)
    assert.are.equal(1, #fds)
    assert.are.equal("from-c", read_all(fds[1]))
    assert.are.same({"exited", 0}, {reap(pid)})
    closeall(fds[1], r, mine)
  end)

  it("returns the triple from the OS", function()
    local a, b = assert(shm.socketpair("dgram"))
    local r, w = pipe()
    shm.close(b)
    local ok, msg, err = shm.send_fd(a, w, "x")
    assert.is_nil(ok)
    assert.is_true(err > 0)
    assert.truthy(msg:find("send_fd(" .. a .. ")", 1, true), msg)
    closeall(a, r, w)
    ok, msg, err = shm.recv_fd(a)  -- closed now
    assert.is_nil(ok)
    assert.are.equal(EBADF, err)
    ok, _, err = shm.send_fd(a, 0, "x")
    assert.is_nil(ok)
    assert.are.equal(EBADF, err)
  end)

  it("raises on bad arguments", function()
    local many = {}
    for i = 1, 254 do many[i] = 0 end
    assert.has_error(function() shm.send_fd(0, many, "x") end)
    assert.has_error(function() shm.send_fd(0, {1, "x"}, "x") end)
    assert.has_error(function() shm.send_fd(0, "x", "x") end)
    assert.has_error(function() shm.send_fd(0, -1, "x") end)
    assert.has_error(function() shm.recv_fd(0, 254) end)
    assert.has_error(function() shm.recv_fd(0, -1) end)
    assert.has_error(function() shm.recv_fd(0, 1, 0) end)
    assert.has_error(function() shm.socketpair("raw") end)
    assert.has_error(function() shm.recv_fd() end)
  end)
end)

describe("pidfds and /proc descriptors", function()
  it("polls a pidfd, signals through it and waits", function()
    local pid = assert(shm.spawn({"sleep", "5"}))
    local pidfd = assert(shm.pidfd_open(pid))
    assert.are.equal("", shm.poll_fd(pidfd, "r", 0))  -- still running
    assert.is_true(shm.pidfd_send_signal(pidfd, shm.SIGKILL))
    assert.are.equal("r", shm.poll_fd(pidfd, "r", 5))  -- readable once it ended
    assert.are.same({"signaled", shm.SIGKILL}, {reap(pid)})
    shm.close(pidfd)
    local ok, msg, err = shm.pidfd_open(tonumber((helper.run("cat /proc/sys/kernel/pid_max"))))
    assert.is_nil(ok)
    assert.are.equal(ESRCH, err)
    assert.truthy(msg:find("^pidfd_open%("), msg)
    ok, _, err = shm.pidfd_send_signal(pidfd, 0)  -- closed now
    assert.is_nil(ok)
    assert.are.equal(EBADF, err)
    assert.has_error(function() shm.pidfd_open(0) end)
    assert.has_error(function() shm.pidfd_send_signal(0, 100) end)
  end)

  it("copies a child's descriptor with pidfd_getfd", function()
    local r, w = pipe()
    local pid = assert(shm.spawn({"sleep", "5"}, {fds = {[3] = w}}))
    shm.close(w)
    local pidfd = assert(shm.pidfd_open(pid))
    local fd, msg, err = shm.pidfd_getfd(pidfd, 3)
    if fd then
      assert.are.equal(4, shm.write_fd(fd, "copy"))
      shm.close(fd)
      -- a descriptor the child does not have (not 4: while the dynamic
      -- loader starts `sleep` it briefly opens the next free number)
      local ok
      ok, msg, err = shm.pidfd_getfd(pidfd, 1000)
      assert.is_nil(ok)
      assert.are.equal(EBADF, err)
    else
      assert.are.equal(EPERM, err, msg)  -- no ptrace permission here
    end
    shm.kill(pid, shm.SIGKILL)
    reap(pid)
    shm.close(pidfd)
    if fd then assert.are.equal("copy", read_all(r)) end
    shm.close(r)
  end)

  it("opens /proc/PID/fd/N afresh", function()
    local r, w = pipe()
    local w2 = assert(shm.open_proc_fd(shm.getpid(), w, O_WRONLY))
    assert.are_not.equal(w, w2)
    shm.write_fd(w2, "via proc")
    closeall(w, w2)
    assert.are.equal("via proc", read_all(r))
    local r2 = assert(shm.open_proc_fd(shm.getpid(), r, O_RDONLY))
    closeall(r, r2)
    local a, b = assert(shm.socketpair())
    local ok, msg, err = shm.open_proc_fd(shm.getpid(), a)  -- sockets refuse
    assert.is_nil(ok)
    assert.are.equal(ENXIO, err)
    assert.truthy(msg:find("/proc/" .. shm.getpid() .. "/fd/" .. a, 1, true), msg)
    closeall(a, b)
    ok, _, err = shm.open_proc_fd(shm.getpid(), 100000)
    assert.is_nil(ok)
    assert.are.equal(ENOENT, err)
    assert.has_error(function() shm.open_proc_fd(0, 1) end)
    assert.has_error(function() shm.open_proc_fd(1, -1) end)
  end)
end)

describe("read_fd, write_fd and poll_fd", function()
  it("reads and writes pipes, with EOF as an empty string", function()
    local r, w = pipe()
    assert.are.equal("w", shm.poll_fd(w, "w", 0))
    assert.are.equal("", shm.poll_fd(r, "r", 0.01))
    assert.are.equal(0, shm.write_fd(w, ""))
    assert.are.equal(6, shm.write_fd(w, "abcdef"))
    assert.are.equal("abc", shm.read_fd(r, 3))
    assert.are.equal("", shm.read_fd(r, 0))
    shm.close(w)
    assert.are.equal("def", shm.read_fd(r))
    assert.are.equal("", shm.read_fd(r))
    assert.truthy(shm.poll_fd(r, "r", 0):find("h"))
    shm.close(r)
  end)

  it("returns EPIPE instead of dying of SIGPIPE", function()
    local r, w = pipe()
    shm.close(r)
    local ok, msg, err = shm.write_fd(w, "nobody reads")
    assert.is_nil(ok)
    assert.are.equal(EPIPE, err)
    assert.truthy(msg:find("write(" .. w .. ")", 1, true), msg)
    shm.close(w)
  end)

  it("returns the triple for a closed descriptor and raises on misuse", function()
    local r, w = pipe()
    closeall(r, w)
    local ok, _, err = shm.read_fd(r, 1)
    assert.is_nil(ok)
    assert.are.equal(EBADF, err)
    ok, _, err = shm.write_fd(w, "x")
    assert.is_nil(ok)
    assert.are.equal(EBADF, err)
    ok, _, err = shm.poll_fd(r, "r", 0)
    assert.is_nil(ok)
    assert.are.equal(EBADF, err)
    assert.has_error(function() shm.read_fd(-1) end)
    assert.has_error(function() shm.read_fd(0, -1) end)
    assert.has_error(function() shm.write_fd(1) end)
    assert.has_error(function() shm.poll_fd(0, "x") end)
    assert.has_error(function() shm.poll_fd(0, "r", -1) end)
  end)
end)
