-- bench/ipc/peer.lua MODE ROLE RUNS SECONDS [CHANPROTO_SO]: one side of an ipc_bench
-- measurement, started (pinned with taskset) by bench/ipc_bench.lua with
-- the shared memfd as descriptor 3 and, for the socket modes, its end of a
-- socketpair as descriptor 4.
--
-- Round trips (MODE spin | futex | wait | channel | socket; ROLE ping | echo):
--   spin     the counter word, through shm.atomic_ref(w, "seq"): stored
--            with its store and watched with a loop of its load
--   futex    the same word; the storer stores and always wakes (one
--            notify call, no waiters field), the waiter futex_waits while
--            the word holds the old value (as the C futex baseline of
--            bench/pingpong.c does)
--   spin_name, futex_name: the same through shm.atomic_load(w, "seq"),
--            shm.atomic_store, shm.notify and shm.futex_wait, which find
--            the field by its name at every call
--   wait     the same word, with the adaptive wait the channel uses and no
--            message: the storer notifies (shm.notify with the waiters
--            field), the waiter wait_changes (spin, yield, then futex)
--   channel  a 16-byte message through channel A, echoed back through
--            channel B (lua/shm/channel.lua: the adaptive wait)
--   socket   the same 16 bytes written to and read from a socketpair
-- ping runs RUNS runs of up to SECONDS each and prints one line:
--   "rt MEDIAN_NS MIN_NS MAX_NS FEWEST_ROUNDS"  (the runs' mean round trips)
--
-- cchannel is channel through the C prototype bench/ipc/chanproto.c (its
-- path is argument 5): what one C call per send and per recv would give.
-- spin_raw is spin with the C prototype's load32/store32 on the word's
-- address, which check nothing: the floor under any checked load/store.
-- cchannel_len is cchannel with recv_len, which takes the message without
-- making it a Lua string (the echo sends its own copy of the same 16
-- bytes): what making the string costs a round trip.
--
-- Throughput (MODE chan1 | chanb | cchan1 | sock1 | sockb; ROLE send |
-- recv), one direction, 64-byte messages for SECONDS per run:
--   chan1    ch:send / ch:recv, one message at a time
--   chanb    ch:send_batch / ch:recv_batch, 64 messages a call
--   cchan1   the C prototype's send / recv, one message at a time
--   cchanb   the C prototype's send_batch / recv_batch, 64 a call
--   sock1    write_fd of each message; the reader reads up to 64 KiB at a
--            time and cuts it into the 64-byte messages (string.sub)
--   sockb    write_fd of 64 messages at a time; the same reader
-- recv prints "tp MEDIAN MIN MAX" (messages/s of the runs).
local shm = require "shm"
local channel = require "shm.channel"

local mode, role = arg[1], arg[2]
local RUNS, SECONDS = tonumber(arg[3]) or 5, tonumber(arg[4]) or 0.3
-- the C prototype of bench/ipc/chanproto.c, for the modes cchannel, cchan*
local cp = arg[5] and arg[5] ~= "" and assert(package.loadlib(arg[5], "luaopen_chanproto"))()
local SIZE, CHA, CHB, RING = 1 << 20, 4096, 4096 + (1 << 18), 1 << 16
local STOP = 0xFFFFFFFF
local MSG16 = "0123456789abcdef"
local MSG64 = ("m"):rep(64)
local BATCH = 64

shm.cdef [[
struct ipcb { uint32_t seq; uint32_t pad0[15]; uint32_t ready; uint32_t pad1[15];
              uint32_t go; uint32_t pad2[15]; uint32_t waiters; uint32_t pad3[15]; };
]]
local m = assert(shm.mmap(nil, SIZE, shm.PROT_READ | shm.PROT_WRITE, shm.MAP_SHARED, 3, 0))
local w = shm.view(m, "struct ipcb", 0)
local function cp_open(off) return cp.open(shm.addressof(shm.view(m, "struct shm_channel", off))) end
local load, store = shm.atomic_load, shm.atomic_store
local fwait, fwake, notify, wait_change = shm.futex_wait, shm.futex_wake, shm.notify,
                                         shm.wait_change
local clock = shm.clock

local function ready()
  shm.notify(w, "ready", 1)
end

local function await_ready()
  local deadline = clock() + 30e9
  while load(w, "ready") == 0 do
    if clock() > deadline then error("the peer never got ready") end
    shm.wait_change(w, "ready", 0, 1)
  end
end

local function median(t)
  local s = {}
  for i, x in ipairs(t) do s[i] = x end
  table.sort(s)
  return s[(#s + 1) // 2], s[1], s[#s]
end

-- ---- round trips: ping's side of k rounds, per mode (v: the counter).
-- Each runs its k rounds in one loop, so that the harness adds no Lua call
-- per round trip (the C loop of bench/pingpong.c has none either).
local rounds = {}
local echoes = {}   -- the echo side of the modes that have their own

-- The spin and futex loops, one text each for every way of reaching the
-- word, so that each way runs the same loop with its own calls made
-- directly (a wrapper would add a Lua call per operation).  In the texts,
-- F(A) is a call with the way's leading arguments A and F(B x) one with
-- x after them.
local seq = shm.atomic_ref(w, "seq")
local ways = {
  [""] = { a = "", load = seq.load, store = seq.store, notify = seq.notify,
           wait = seq.futex_wait },
  _name = { a = 'w, "seq"', load = load, store = store, notify = notify, wait = fwait },
  _raw = { a = "SEQ", load = cp and cp.load32, store = cp and cp.store32 },
}
local PING = {
  spin = [[
    STORE(B n)
    repeat v = LOAD(A) until v ~= n]],
  futex = [[
    NOTIFY(B n)                 -- store, then FUTEX_WAKE (no waiters field)
    v = LOAD(A)
    while v == n do
      WAIT(B n)
      v = LOAD(A)
    end]],
}
local ECHO = {  -- the echo: its wait while the word holds v, and its answer
  spin = { "", "STORE(B v)" },
  futex = { "WAIT(B v)", "NOTIFY(B v)" },
}
local LOOPS = [[
local LOAD, STORE, NOTIFY, WAIT, w, SEQ, ready, STOP = ...
local function round(v, k)
  for _ = 1, k do
    local n = v + 1
PING
  end
  return v
end
local function echo()
  local v = 0
  ready()
  while true do
    local x = LOAD(A)
    while x == v do
      SLEEP
      x = LOAD(A)
    end
    if x == STOP then break end
    v = x + 1
    ANSWER
  end
end
return round, echo]]
for suffix, way in pairs(ways) do
  for kind, ping_text in pairs(PING) do
    if way.load and (kind == "spin" or way.wait) then
      local src = LOOPS:gsub("PING", ping_text):gsub("SLEEP", ECHO[kind][1])
                       :gsub("ANSWER", ECHO[kind][2])
                       :gsub("%(A%)", "(" .. way.a .. ")")
                       :gsub("%(B ", "(" .. (way.a == "" and "" or way.a .. ", "))
      local make = assert(_G.load(src, "=peer.lua " .. kind .. suffix))
      rounds[kind .. suffix], echoes[kind .. suffix] =
        make(way.load, way.store, way.notify, way.wait, w, shm.addressof(w, "seq"), ready, STOP)
    end
  end
end
function rounds.wait(v, k)
  for _ = 1, k do
    local n = v + 1
    notify(w, "seq", n, "waiters")
    v = wait_change(w, "seq", n, nil, "waiters")
  end
  return v
end
local tx, rx
-- cchannel, cchannel_len: the C prototype's send, then its recv or recv_len
local function cp_round(recv_name)
  return function(v, k)
    local send, recv = cp.send, cp[recv_name]
    for _ = 1, k do
      send(tx, MSG16)
      recv(rx)
    end
    return v + 2 * k
  end
end
rounds.cchannel, rounds.cchannel_len = cp_round("recv"), cp_round("recv_len")
function rounds.channel(v, k)
  for _ = 1, k do
    tx:send(MSG16)
    rx:recv()
  end
  return v + 2 * k
end
function rounds.socket(v, k)
  local write, read = shm.write_fd, shm.read_fd
  for _ = 1, k do
    write(4, MSG16)
    local got = #read(4, 16)
    while got < 16 do got = got + #read(4, 16 - got) end
  end
  return v + 2 * k
end

local function ping()
  if mode == "channel" then tx, rx = channel.attach(m, CHA), channel.attach(m, CHB) end
  if mode == "cchannel" or mode == "cchannel_len" then tx, rx = cp_open(CHA), cp_open(CHB) end
  await_ready()
  local round = rounds[mode]
  local v = round(0, 1)               -- one untimed round trip
  local means, fewest = {}, math.huge
  for r = 1, RUNS do
    local t0, i, k = clock(), 0, 1
    local limit = t0 + SECONDS * 1e9
    while true do
      v = round(v, k)
      i = i + k
      local t = clock()
      if t > limit then break end
      -- look at the clock every round while rounds are slow (same-core
      -- spinning: a time slice each), else every 64
      k = (t - t0) / i < 1e5 and 64 or 1
    end
    means[r] = (clock() - t0) / i
    if i < fewest then fewest = i end
  end
  if mode == "channel" then tx:close()
  elseif mode == "cchannel" or mode == "cchannel_len" then channel.attach(m, CHA):close()
  elseif mode == "socket" then shm.close(4)
  else
    store(w, "seq", STOP)
    fwake(w, "seq", "all")
  end
  local med, lo, hi = median(means)
  print(("rt %.1f %.1f %.1f %d"):format(med, lo, hi, fewest))
end

local function echo()
  if echoes[mode] then
    echoes[mode]()
  elseif mode == "wait" then
    local v = 0
    ready()
    while true do
      local x = wait_change(w, "seq", v, nil, "waiters")
      if x == STOP then break end
      v = x + 1
      notify(w, "seq", v, "waiters")
    end
  elseif mode == "channel" then
    local inp, out = channel.attach(m, CHA), channel.attach(m, CHB)
    ready()
    while true do
      local msg = inp:recv()
      if not msg then break end       -- EPIPE: closed by ping
      out:send(msg)
    end
  elseif mode == "cchannel" or mode == "cchannel_len" then
    local inp, out = cp_open(CHA), cp_open(CHB)
    local len = mode == "cchannel_len"  -- recv_len: send back our own 16 bytes
    local recv, send = len and cp.recv_len or cp.recv, cp.send
    ready()
    while true do
      local got = recv(inp)
      if not got then break end       -- closed by ping
      send(out, len and MSG16 or got)
    end
  else
    ready()
    while true do
      local s = shm.read_fd(4, 16)
      if not s or s == "" then break end
      shm.write_fd(4, s)
    end
  end
end

-- ---- throughput: the sender sends groups of BATCH (64) messages for
-- SECONDS per run, then an end group whose last message is the marker (a
-- 64-byte message starting with "E"), and waits until the receiver has
-- counted the run (`go`).  The receiver times each run from the end of the
-- first group to the marker and looks at the last message of each group
-- only: its own per-message work is the call that returns the message as
-- a string, so the figure is the transport's, not the bench loop's (a
-- string.byte a message costs about as much as a recv).  The channel (made
-- by ipc_bench.lua) is a fixed-size one of 64-byte messages.
local END64 = "E" .. ("m"):rep(63)

local function sender()
  local t, ct
  if mode == "chan1" or mode == "chanb" then t = channel.attach(m, CHA) end
  if mode == "cchan1" or mode == "cchanb" then t, ct = channel.attach(m, CHA), cp_open(CHA) end
  local batch = {}
  for i = 1, BATCH do batch[i] = MSG64 end
  local bulk = table.concat(batch)
  local endbatch = {}
  for i = 1, BATCH do endbatch[i] = i < BATCH and MSG64 or END64 end
  await_ready()
  for r = 1, RUNS do
    local limit = clock() + SECONDS * 1e9
    repeat
      if mode == "chan1" then
        for _ = 1, BATCH do t:send(MSG64) end
      elseif mode == "cchanb" then
        cp.send_batch(ct, batch)
      elseif ct then
        for _ = 1, BATCH do cp.send(ct, MSG64) end
      elseif mode == "chanb" then
        t:send_batch(batch)
      elseif mode == "sock1" then
        for _ = 1, BATCH do shm.write_fd(4, MSG64) end
      else
        shm.write_fd(4, bulk)
      end
    until clock() > limit
    -- the end group: BATCH messages, the last of them the marker
    if mode == "chanb" or mode == "cchanb" then
      if ct then cp.send_batch(ct, endbatch) else t:send_batch(endbatch) end
    elseif mode == "sockb" then
      shm.write_fd(4, table.concat(endbatch))
    else
      for i = 1, BATCH do
        if ct then cp.send(ct, endbatch[i]) elseif t then t:send(endbatch[i])
        else shm.write_fd(4, endbatch[i]) end
      end
    end
    local deadline = clock() + 30e9
    while load(w, "go") ~= r do
      if clock() > deadline then error("the receiver never finished run " .. r) end
      shm.wait_change(w, "go", load(w, "go"), 1)
    end
  end
  if t then t:close() else shm.close(4) end
end

local function receiver()
  local byte = string.byte
  local c, cc
  if mode == "chan1" or mode == "chanb" then c = channel.attach(m, CHA) end
  if mode == "cchan1" or mode == "cchanb" then cc = cp_open(CHA) end
  ready()
  local rates = {}
  local pending = ""
  -- each run: t0 when the first message arrives (not counted), t1 when the
  -- end marker does; n counts the messages in between
  for r = 1, RUNS do
    local n, t0, t1 = 0, nil, nil
    if mode == "chanb" or mode == "cchanb" then
      local recv_batch = cc and function() return cp.recv_batch(cc, BATCH) end
                         or function() return c:recv_batch(BATCH) end
      local list = recv_batch()
      t0 = clock()
      while byte(list[#list], 1) ~= 69 do
        list = recv_batch()
        n = n + #list
      end
      n = n - 1
    elseif c or cc then
      -- the sender sends groups of BATCH; the first is untimed, the last
      -- ends with the marker, so only the last message of a group is looked at
      local recv, obj = c and c.recv or cp.recv, c or cc
      local msg
      for _ = 1, BATCH do msg = recv(obj) end
      t0 = clock()
      repeat
        for _ = 2, BATCH do recv(obj) end
        msg = recv(obj)
        n = n + BATCH
      until byte(msg, 1) == 69
      n = n - 1
    else
      -- cut what arrives into 64-byte messages (a string each, as a
      -- channel's recv makes); the first group is untimed and, as above,
      -- only the last message of a group is looked at
      local idx, done = 0, false
      repeat
        local s = shm.read_fd(4, 65536)
        if pending ~= "" then s = pending .. s end
        local k = #s // 64
        for j = 0, k - 1 do
          local msg = s:sub(j * 64 + 1, j * 64 + 64)
          idx = idx + 1
          if idx % BATCH == 0 then
            if idx == BATCH then t0 = clock()
            elseif byte(msg, 1) == 69 then done = true break end   -- "E": the marker
          end
        end
        pending = s:sub(k * 64 + 1)
      until done
      n = idx - BATCH - 1
      pending = ""
    end
    t1 = clock()
    rates[r] = n / ((t1 - t0) / 1e9)
    shm.notify(w, "go", r)
  end
  local med, lo, hi = median(rates)
  print(("tp %.0f %.0f %.0f"):format(med, lo, hi))
end

if role == "ping" then ping()
elseif role == "echo" then echo()
elseif role == "send" then sender()
elseif role == "recv" then receiver()
else error("bench/ipc/peer.lua: unknown role " .. tostring(role)) end
