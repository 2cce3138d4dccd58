-- helper.lua: what specs share.  require "helper" (LUA_PATH includes tests/).
local shm = require "shm"
local M = {}

M.build = os.getenv("SHMLUA_BUILD") or "build"
M.shmlua = os.getenv("SHMLUA") or (M.build .. "/shmlua")

local counter = 0
-- A shared-memory name unique to this run and call: "/shmlua-test-<pid>-<n>".
-- Tests unlink what they create in after_each; tests/run.sh checks.
function M.name(tag)
  counter = counter + 1
  local pid = shm.getpid and shm.getpid() or tostring({}):match("0x(%x+)")
  return ("/shmlua-test-%s-%s-%d"):format(tag or "x", pid, counter)
end

-- Runs a shell command, returns its stdout, and the exit status.
function M.run(cmd)
  local f = assert(io.popen(cmd .. " 2>&1", "r"))
  local out = f:read("a")
  local ok, how, code = f:close()
  return out, code, how
end

return M
