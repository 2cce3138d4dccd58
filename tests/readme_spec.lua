-- Every ```lua snippet of README.md runs, as it is, in a fresh shmlua.
local helper = require "helper"

local function snippets()
  local f = assert(io.open("README.md"))
  local text = f:read("a")
  f:close()
  local list = {}
  for code in text:gmatch("```lua\n(.-)```") do list[#list + 1] = code end
  return list
end

describe("README", function()
  local list = snippets()

  it("has Lua snippets", function()
    assert.is_true(#list >= 3)
  end)

  for i, code in ipairs(list) do
    it("snippet " .. i .. " runs", function()
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      f:write(code)
      f:close()
      local out, code_ = helper.run(("%q %q"):format(helper.shmlua, path))
      os.remove(path)
      assert.are.equal(0, code_, out)
    end)
  end
end)
