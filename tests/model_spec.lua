-- model_spec.lua: model-checks version 3 of the channel protocol with SPIN
-- (tools/model/channel.pml: stamps, 0 terminators, tail_seen, head stored
-- after the stamp, the consumer sleeping on head while it watches the
-- stamp, the sleepers' flags; with -DCRASH a producer killed inside a send
-- and its successor's repair of head).  The correct model must verify with
-- no errors, with and without crashes (no lost, duplicated, reordered,
-- stale or torn message; no deadlock or lost wake-up), and each mutant must
-- fail, which shows the checks can fail:
--   1 no 0 terminator (a stale stamp of an earlier lap is read),
--   2 the consumer sleeps without re-checking the stamp (lost wake-up),
--   3 stamp before payload (torn record),
--   4 the successor does not walk the stamps to repair head (-DCRASH),
--   5 room check without the terminator's word (overwrites a stamp),
--   6 head stored before the stamp (lost wake-up),
--   7 the successor's repair does not wake the consumer (-DCRASH),
--   8 the repair wakes only when it moved head (-DCRASH),
--   9 a waker lowers the sleeper's flag whatever value it sleeps on (a
--     stale wake takes the flag of the next wait: lost wake-up).
-- Pending when spin is not installed.
local MODEL = "tools/model/channel.pml"

local function sh_ok(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Generates, compiles and runs pan for mutation `mut` (with -DCRASH when
-- `crash`) in a fresh temp dir; returns pan's output.  Each step is
-- bounded by `timeout`.  pan.c is compiled without optimisation: the
-- models are small, and gcc -O2 takes longer than the search.
local function verify(mut, crash)
  local dir = assert(io.popen("mktemp -d"):read("l"))
  local model = q(os.getenv("PWD") .. "/" .. MODEL)
  local cmd = "cd " .. q(dir) .. " && timeout 30 spin -DMUT=" .. mut ..
              (crash and " -DCRASH" or "") .. " -a " .. model ..
              " >spin.out 2>&1 && timeout 60 gcc -O0 -DSAFETY -o pan pan.c >gcc.out 2>&1" ..
              " && timeout 60 ./pan -m100000 -w20 2>&1"
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  local log = ""
  for _, f in ipairs { "spin.out", "gcc.out" } do
    local fh = io.open(dir .. "/" .. f)
    if fh then log = log .. fh:read("a"); fh:close() end
  end
  os.execute("rm -rf " .. q(dir))
  return out .. log
end

local function errors_of(out)
  return tonumber(out:match("errors: (%d+)"))
end

local function stored_of(out)
  return tonumber(out:match("(%d+) states, stored"))
end

describe("channel model (SPIN)", function()
  local have_spin = sh_ok("command -v spin >/dev/null 2>&1") and
                    sh_ok("command -v gcc >/dev/null 2>&1")

  it("verifies the protocol, with and without a producer crash", function()
    if not have_spin then
      pending("spin is not installed (tools/deps.sh installs the Debian package spin)")
      return
    end
    local ok = verify(0, false)
    assert.equal(0, errors_of(ok), ok)
    assert.truthy(ok:match("invalid end states%s+%+"), ok)  -- deadlocks were checked
    local stored = stored_of(ok)
    assert.truthy(stored and stored > 1000, ok)              -- the model was explored

    local crash = verify(0, true)
    assert.equal(0, errors_of(crash), crash)
    assert.truthy(crash:match("invalid end states%s+%+"), crash)
    -- the crash branches and the successor's repair add states
    assert.truthy((stored_of(crash) or 0) > 2 * stored, crash)
  end)

  -- mut, crash variant, the errors pan may report first
  local ASSERT, DEADLOCK = "assertion violated", "invalid end state"
  local mutants = {
    { 1, false, { ASSERT } },
    { 2, false, { DEADLOCK } },
    { 3, false, { ASSERT } },
    { 4, true,  { ASSERT, DEADLOCK } },
    { 5, false, { DEADLOCK } },
    { 6, false, { DEADLOCK } },
    { 7, true,  { DEADLOCK } },
    { 8, true,  { DEADLOCK } },
    { 9, false, { DEADLOCK } },
  }

  it("catches every mutant", function()
    if not have_spin then
      pending("spin is not installed (tools/deps.sh installs the Debian package spin)")
      return
    end
    for _, m in ipairs(mutants) do
      local mut, crash, want = m[1], m[2], m[3]
      local out = verify(mut, crash)
      local label = ("MUT=%d%s\n"):format(mut, crash and " CRASH" or "")
      assert.truthy((errors_of(out) or 0) > 0, label .. out)
      local found = false
      for _, w in ipairs(want) do
        found = found or out:find("pan:1: " .. w, 1, true) ~= nil
      end
      assert.truthy(found, label .. out)
    end
  end)
end)
