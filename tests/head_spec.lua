-- The seed's example (scripts/head.lua): a Lua host writes struct Head into a
-- memfd and two children, one Lua and one C, map it at the address the
-- header names and follow TextPtr.
local helper = require "helper"

describe("scripts/head.lua", function()
  it("both children print the host's text and the host exits 0", function()
    local text = "head-spec text " .. tostring(os.time())
    local out, code = helper.run(("timeout 60 %q scripts/head.lua %q"):format(helper.shmlua, text))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("lua child:[^\n]*" .. text:gsub("%p", "%%%0")), out)
    assert.truthy(out:find("c child:[^\n]*" .. text:gsub("%p", "%%%0")), out)
    assert.truthy(out:find("both children read the text", 1, true), out)
  end)

  it("prints the header with its fields", function()
    local out, code = helper.run(("timeout 60 %q scripts/head.lua"):format(helper.shmlua))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("struct Head { Addr = 0x%x+, MemSize = %d+, TextSize = %d+, TextPtr = 0x%x+ }"), out)
  end)
end)
