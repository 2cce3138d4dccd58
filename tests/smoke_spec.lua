local shm = require "shm"
describe("module", function()
  it("loads with a version", function()
    assert.is_string(shm._VERSION)
    assert.truthy(shm._VERSION:match("^shmlua"))
  end)
end)
