-- model_spec.lua: model-checks the channel's index protocol with SPIN
-- (tools/model/channel.pml): the correct model must verify with no errors
-- (no lost, duplicated, reordered or torn message; no deadlock or lost
-- wake-up), and each mutant (MUT=1: head published before the record is
-- written; MUT=2: a waiter sleeps without re-checking) must fail, which
-- shows the checks can fail.  Pending when spin is not installed.
local MODEL = "tools/model/channel.pml"

local function sh_ok(cmd)
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Generates, compiles and runs pan for mutation `mut` in a fresh temp dir;
-- returns pan's output.  Each step is bounded by `timeout`.
local function verify(mut)
  local dir = assert(io.popen("mktemp -d"):read("l"))
  local model = q(os.getenv("PWD") .. "/" .. MODEL)
  local cmd = "cd " .. q(dir) .. " && timeout 30 spin -DMUT=" .. mut .. " -a " .. model ..
              " >spin.out 2>&1 && timeout 60 gcc -O2 -DSAFETY -o pan pan.c >gcc.out 2>&1" ..
              " && timeout 30 ./pan -m100000 2>&1"
  local p = io.popen(cmd)
  local out = p:read("a")
  p:close()
  local fh, log = io.open(dir .. "/spin.out"), ""
  if fh then log = fh:read("a"); fh:close() end
  os.execute("rm -rf " .. q(dir))
  return out .. log
end

local function errors_of(out)
  return tonumber(out:match("errors: (%d+)"))
end

describe("channel model (SPIN)", function()
  local have_spin = sh_ok("command -v spin >/dev/null 2>&1") and
                    sh_ok("command -v gcc >/dev/null 2>&1")

  it("verifies the protocol and catches both mutants", function()
    if not have_spin then
      pending("spin is not installed (tools/deps.sh installs the Debian package spin)")
      return
    end
    local ok = verify(0)
    assert.equal(0, errors_of(ok), ok)
    assert.truthy(ok:match("invalid end states%s+%+"), ok)  -- deadlocks were checked
    local stored = tonumber(ok:match("(%d+) states, stored"))
    assert.truthy(stored and stored > 1000, ok)              -- the model was explored

    local m1 = verify(1)
    assert.truthy((errors_of(m1) or 0) > 0, m1)
    assert.truthy(m1:match("assertion violated"), m1)

    local m2 = verify(2)
    assert.truthy((errors_of(m2) or 0) > 0, m2)
    assert.truthy(m2:match("invalid end state"), m2)
  end)
end)
