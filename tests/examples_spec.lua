-- examples_spec.lua: every example in scripts/ runs to exit 0 and prints
-- what it should.  An example is any scripts/*.lua except the helpers
-- that other scripts start (*_child.lua); each runs under the interpreter
-- running this spec (shm.exepath()), bounded in time.  Examples with no
-- entry in EXPECT below are only required to exit 0.
local shm = require "shm"
local ipc = require "data.ipc"

local TIMEOUT = ipc.ASAN and 240 or 120

-- script -> { args, patterns its stdout must match (Lua patterns) }
local EXPECT = {
  ["head.lua"] = { {}, { "both children read the text" } },
  ["pingpong.lua"] = { { "2000" }, {
    "\nchannel +2000 round trips in [%d.]+ s: [%d.]+ us per round trip, counter ok\n",
    "\nfutex +2000 round trips in [%d.]+ s: [%d.]+ us per round trip, counter ok\n" } },
  ["pipeline.lua"] = { { "5000" }, {
    "pipeline: 5000 items through 3 processes and 2 channels",
    "every item once, in order; sum of squares 41679167500 as expected" } },
  ["crash_recovery.lua"] = { {}, {
    "mutex_lock says owner_died: the peer died holding the lock",
    "rolled back the half%-done move",
    "killed by signal 9 after 99 moves; I made %d+; a %+ b = 1000 again, the mutex works",
    "the producer exited %(signaled 9%) while I waited in recv",
    "restarting it at 1235",
    "all 3000 messages arrived exactly once, in order, across 2 producer%(s%)" } },
}

local function examples()
  local list = {}
  local p = assert(io.popen("ls scripts/*.lua 2>/dev/null"))
  for path in p:lines() do
    if not path:match("_child%.lua$") then list[#list + 1] = path end
  end
  p:close()
  table.sort(list)
  return list
end

describe("scripts/", function()
  local list = examples()

  it("has the examples of the IPC toolkit", function()
    local names = {}
    for _, path in ipairs(list) do names[path:match("[^/]+$")] = true end
    for name in pairs(EXPECT) do assert.is_true(names[name], "missing scripts/" .. name) end
  end)

  for _, path in ipairs(list) do
    local name = path:match("[^/]+$")
    local e = EXPECT[name] or { {}, {} }
    it(name .. " " .. table.concat(e[1], " ") .. " exits 0 with the expected output", function()
      local argv = { shm.exepath(), path }
      for _, a in ipairs(e[1]) do argv[#argv + 1] = a end
      local c = ipc.spawn(argv)
      local ok, how, code, out, err = pcall(ipc.reap, c, TIMEOUT)
      if not ok then ipc.cleanup(c) error(how) end
      assert.equal("exited", how, err)
      assert.equal(0, code, ("stdout:\n%s\nstderr:\n%s"):format(out, err))
      out = "\n" .. out
      for _, pattern in ipairs(e[2]) do
        assert.truthy(out:find(pattern), ("%s lacks %q; stdout:\n%s"):format(name, pattern, out))
      end
    end)
  end
end)
