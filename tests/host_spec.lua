-- host_spec.lua: the shmlua program itself (src/main.c), run as a process.
-- Every run is bounded by `timeout`, reads stdin from a file (or /dev/null)
-- and has LUA_INIT* removed from its environment unless a test sets them.
local helper = require "helper"
local BIN = helper.shmlua

local temps = {}

-- A fresh temporary path (the file exists, empty), removed in after_each.
local function tmp(suffix)
  local base = os.tmpname()
  temps[#temps + 1] = base
  if suffix then
    local p = base .. suffix
    temps[#temps + 1] = p
    return p
  end
  return base
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

local function readall(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Runs shmlua with the list `args`.  opts.stdin: text fed on stdin;
-- opts.env: extra environment variables.  Returns stdout, stderr, exit code.
local function run(args, opts)
  opts = opts or {}
  local cmd = { "timeout 20 env -u LUA_INIT -u LUA_INIT_5_4" }
  for k, v in pairs(opts.env or {}) do cmd[#cmd + 1] = k .. "=" .. q(v) end
  cmd[#cmd + 1] = q(opts.bin or BIN)
  for _, a in ipairs(args) do cmd[#cmd + 1] = q(a) end
  local errf = tmp()
  local inf = opts.stdin and write(tmp(), opts.stdin) or "/dev/null"
  cmd[#cmd + 1] = "<" .. q(inf) .. " 2>" .. q(errf)
  local f = assert(io.popen(table.concat(cmd, " "), "r"))
  local out = f:read("a")
  local _, _, code = f:close()
  return out, readall(errf), code
end

-- The message prefix: the program name as invoked (argv[0]), as in lua.
local function prefixed(err)
  return err:sub(1, #BIN + 2) == BIN .. ": "
end

after_each(function()
  for _, p in ipairs(temps) do os.remove(p) end
  temps = {}
end)

describe("shmlua host", function()
  describe("exit status", function()
    it("is 0 when everything runs", function()
      local out, err, code = run({ "-e", "io.write('ok')" })
      assert.are.equal("ok", out)
      assert.are.equal("", err)
      assert.are.equal(0, code)
    end)

    it("is 1 after an error, with prefix and traceback on stderr", function()
      local out, err, code = run({ "-e", "local function f() error('boom') end f()" })
      assert.are.equal(1, code)
      assert.are.equal("", out)
      assert.is_true(prefixed(err), err)
      assert.truthy(err:find("(command line):1: boom", 1, true), err)
      assert.truthy(err:find("stack traceback:", 1, true), err)
      assert.truthy(err:find("'f'", 1, true), err)   -- the frame of f
    end)

    it("follows os.exit", function()
      local _, _, code = run({ "-e", "os.exit(3)" })
      assert.are.equal(3, code)
      _, _, code = run({ "-e", "os.exit(false)" })
      assert.are.equal(1, code)
      _, _, code = run({ "-e", "os.exit(true, true)" })
      assert.are.equal(0, code)
    end)

    it("is 1 with a usage message for a bad option", function()
      for _, args in ipairs({ { "-x" }, { "--x" }, { "-e" }, { "-l" }, { "-vx" }, { "-e", "-i" } }) do
        local out, err, code = run(args)
        assert.are.equal(1, code)
        assert.are.equal("", out)
        assert.is_true(prefixed(err), err)
        assert.truthy(err:find("usage:", 1, true), err)
      end
    end)
  end)

  describe("-e", function()
    it("runs several statements in order, glued or separate", function()
      local out, _, code = run({ "-e", "x = 1", "-ex = x * 10", "-e", "io.write(x)" })
      assert.are.equal("10", out)
      assert.are.equal(0, code)
    end)

    it("stops at the first failing statement", function()
      local out, err, code = run({ "-e", "io.write('a')", "-e", "error('stop')", "-e", "io.write('b')" })
      assert.are.equal("a", out)
      assert.truthy(err:find("stop", 1, true))
      assert.are.equal(1, code)
    end)

    it("reports a syntax error without running anything", function()
      local out, err, code = run({ "-e", "x = = 1" })
      assert.are.equal("", out)
      assert.is_true(prefixed(err), err)
      assert.truthy(err:find("(command line):1:", 1, true), err)
      assert.are.equal(1, code)
    end)
  end)

  describe("-l", function()
    local path
    before_each(function()
      path = tmp()
      -- LUA_PATH pattern <tmp>_?.lua: module "hostmod" lives in <tmp>_hostmod.lua
      temps[#temps + 1] = path .. "_hostmod.lua"
      write(path .. "_hostmod.lua", "return { v = (X or 0) + 42 }")
    end)

    it("requires a module into a global of its name", function()
      local out, _, code = run({ "-l", "hostmod", "-e", "io.write(hostmod.v)" },
        { env = { LUA_PATH = path .. "_?.lua" } })
      assert.are.equal("42", out)
      assert.are.equal(0, code)
    end)

    it("takes g=mod and a glued argument", function()
      local out, _, code = run({ "-lg=hostmod", "-e", "io.write(g.v, tostring(hostmod))" },
        { env = { LUA_PATH = path .. "_?.lua" } })
      assert.are.equal("42nil", out)
      assert.are.equal(0, code)
    end)

    it("runs in order with -e", function()
      local out = run({ "-e", "X = 100", "-l", "hostmod", "-e", "io.write(hostmod.v)" },
        { env = { LUA_PATH = path .. "_?.lua" } })
      assert.are.equal("142", out)
    end)

    it("fails with exit 1 for a missing module", function()
      local out, err, code = run({ "-l", "no_such_module_x", "-e", "io.write('ran')" })
      assert.are.equal("", out)
      assert.truthy(err:find("module 'no_such_module_x' not found", 1, true), err)
      assert.are.equal(1, code)
    end)
  end)

  describe("arg and ...", function()
    local script
    before_each(function()
      script = write(tmp(".lua"), [[
        local t = {}
        for i = -3, #arg do t[#t + 1] = tostring(arg[i]) end
        io.write(table.concat(t, "|"), "\n", select("#", ...), ":", table.concat({ ... }, ","))
      ]])
    end)

    it("puts the script at 0, its args after, interpreter and options before", function()
      local out, _, code = run({ "-e", "x=1", script, "a", "b c" })
      assert.are.equal(0, code)
      assert.are.equal(table.concat({ BIN, "-e", "x=1", script, "a", "b c" }, "|")
        .. "\n2:a,b c", out)
    end)

    it("gives the script no ... when it has no arguments", function()
      local out = run({ script })
      assert.are.equal("nil|nil|" .. BIN .. "|" .. script .. "\n0:", out)
    end)

    it("puts the interpreter at 0 when there is no script", function()
      local out = run({ "-e", "io.write(arg[0], ' ', arg[1], ' ', arg[2], ' ', #arg)" })
      assert.are.equal(BIN .. " -e io.write(arg[0], ' ', arg[1], ' ', arg[2], ' ', #arg) 2", out)
    end)

    it("stops handling options after --", function()
      local out, _, code = run({ "--", script, "-e", "--" })
      assert.are.equal(0, code)
      assert.are.equal(table.concat({ "nil", BIN, "--", script, "-e", "--" }, "|")
        .. "\n2:-e,--", out)
    end)

    it("passes the current arg table: a script sees changes made by -e", function()
      local out = run({ "-e", "arg[1] = 'changed'", script, "orig" })
      assert.truthy(out:find("\n1:changed$"), out)
      local _, err, code = run({ "-e", "arg = nil", script })
      assert.truthy(err:find("'arg' is not a table", 1, true), err)
      assert.are.equal(1, code)
    end)
  end)

  describe("stdin", function()
    it("runs stdin for '-' and gives it the arguments", function()
      local out, _, code = run({ "-", "x", "y" },
        { stdin = "io.write(arg[0], ':', table.concat({ ... }, ','))" })
      assert.are.equal("-:x,y", out)
      assert.are.equal(0, code)
    end)

    it("runs stdin when there is no script and stdin is no terminal", function()
      local out, _, code = run({}, { stdin = "io.write('from stdin')" })
      assert.are.equal("from stdin", out)
      assert.are.equal(0, code)
      out, _, code = run({ "--" }, { stdin = "io.write('after dashes')" })
      assert.are.equal("after dashes", out)
      assert.are.equal(0, code)
    end)

    it("does not read stdin after -e or -v", function()
      local out = run({ "-e", "io.write('e')" }, { stdin = "io.write('stdin')" })
      assert.are.equal("e", out)
      out = run({ "-v" }, { stdin = "io.write('stdin')" })
      assert.truthy(out:match("^shmlua [^\n]*\n$"), out)
    end)

    it("names a stdin chunk 'stdin' in errors", function()
      local _, err, code = run({ "-" }, { stdin = "error('in stdin')" })
      assert.truthy(err:find("stdin:1: in stdin", 1, true), err)
      assert.are.equal(1, code)
    end)
  end)

  describe("memory", function()
    -- src/main.c's allocator serves blocks of up to 256 bytes from free
    -- lists of 16-byte classes and moves a block that changes between small
    -- and large: every size on both sides of those borders, reused after
    -- collections, must keep its bytes.
    it("keeps every object's contents across sizes, resizes and reuse", function()
      local script = [[
        local strings, tables = {}, {}
        for round = 1, 3 do
          for n = 0, 600 do
            local c = string.char(65 + (n + round) % 26)
            strings[n] = c:rep(n)
            local t = {}
            for i = 1, n % 97 do t[i] = i * round end
            for i = 1, n % 13 do t["k" .. i] = n end
            tables[n] = t
          end
          collectgarbage()
          for n = 0, 600 do
            local c = string.char(65 + (n + round) % 26)
            assert(strings[n] == c:rep(n), "string " .. n)
            local t = tables[n]
            for i = 1, n % 97 do assert(t[i] == i * round, "table " .. n) end
            for i = 1, n % 13 do assert(t["k" .. i] == n, "key " .. n) end
            for i = n % 97, 1, -1 do t[i] = nil end  -- shrinks at the next rehash
            t.x = 1
          end
          local big = ("z"):rep(3 << 20)
          assert(#big == 3 << 20 and big:sub(-1) == "z")
          strings = {}
          collectgarbage()
        end
        print("ok")
      ]]
      local out, err, code = run({ "-" }, { stdin = script })
      assert.are.equal("", err)
      assert.are.equal(0, code)
      assert.are.equal("ok\n", out)
    end)
  end)

  describe("-v", function()
    it("prints the shmlua and Lua versions", function()
      local out, err, code = run({ "-v" })
      assert.truthy(out:match("^shmlua %d+%.%d+%.%d+ %(Lua 5%.4%.%d+%)\n$"), out)
      assert.are.equal("", err)
      assert.are.equal(0, code)
    end)

    it("prints before running -e", function()
      local out = run({ "-e", "io.write('after')", "-v" })
      assert.truthy(out:match("^shmlua .*\nafter$"), out)
    end)
  end)

  describe("-W", function()
    it("turns warnings on", function()
      local _, err = run({ "-W", "-e", "warn('careful')" })
      assert.truthy(err:find("Lua warning: careful", 1, true), err)
      _, err = run({ "-e", "warn('careful')" })
      assert.are.equal("", err)
    end)

    it("joins a message's pieces and obeys @on and @off", function()
      local _, err = run({ "-e", "warn('@on') warn('a', 'b', 'c') warn('@off') warn('hidden') "
                                 .. "warn('@on') warn('@other') warn('shown')" })
      assert.are.equal("Lua warning: abc\nLua warning: shown\n", err)
    end)
  end)

  describe("environment", function()
    it("runs LUA_INIT as a string before -e", function()
      local out, _, code = run({ "-e", "io.write(' ', INIT)" },
        { env = { LUA_INIT = "INIT = 'set'; io.write('init')" } })
      assert.are.equal("init set", out)
      assert.are.equal(0, code)
    end)

    it("runs LUA_INIT=@file", function()
      local f = write(tmp(), "io.write('from file')")
      local out = run({ "-e", "" }, { env = { LUA_INIT = "@" .. f } })
      assert.are.equal("from file", out)
    end)

    it("prefers LUA_INIT_5_4 over LUA_INIT", function()
      local out = run({ "-e", "" },
        { env = { LUA_INIT = "io.write('plain')", LUA_INIT_5_4 = "io.write('versioned')" } })
      assert.are.equal("versioned", out)
    end)

    it("stops when LUA_INIT fails", function()
      local out, err, code = run({ "-e", "io.write('ran')" },
        { env = { LUA_INIT = "error('init failed')" } })
      assert.are.equal("", out)
      assert.truthy(err:find("LUA_INIT:1: init failed", 1, true), err)
      assert.are.equal(1, code)
      _, err, code = run({ "-e", "" }, { env = { LUA_INIT = "@/nonexistent/init.lua" } })
      assert.truthy(err:find("cannot open /nonexistent/init.lua", 1, true), err)
      assert.are.equal(1, code)
    end)

    it("-E ignores LUA_INIT, LUA_PATH and LUA_CPATH", function()
      local out, _, code = run({ "-E", "-e", "io.write(package.path, ';', package.cpath)" },
        { env = { LUA_INIT = "io.write('INITRAN')", LUA_PATH = "/nowhere-p/?.lua",
                  LUA_CPATH = "/nowhere-c/?.so" } })
      assert.are.equal(0, code)
      assert.is_nil(out:find("INITRAN", 1, true), out)
      assert.is_nil(out:find("nowhere", 1, true), out)
      assert.truthy(out:find("?.lua", 1, true), out)
      out = run({ "-e", "io.write(package.path)" }, { env = { LUA_PATH = "/nowhere-p/?.lua" } })
      assert.are.equal("/nowhere-p/?.lua", out)
    end)
  end)

  describe("scripts and errors", function()
    it("runs a script with a #! line", function()
      local s = write(tmp(".lua"), "#!/usr/bin/env shmlua\nio.write('shebang ok')\n")
      local out, _, code = run({ s })
      assert.are.equal("shebang ok", out)
      assert.are.equal(0, code)
    end)

    it("reports a syntax error in the script", function()
      local s = write(tmp(".lua"), "io.write('x')\nlocal = 1\n")
      local out, err, code = run({ s })
      assert.are.equal("", out)
      assert.is_true(prefixed(err), err)
      assert.truthy(err:find(s .. ":2:", 1, true), err)
      assert.are.equal(1, code)
    end)

    it("reports a runtime error in the script with its traceback", function()
      local s = write(tmp(".lua"), "local function inner() local x = nil; return x.y end\ninner()\n")
      local _, err, code = run({ s })
      assert.is_true(prefixed(err), err)
      assert.truthy(err:find(s .. ":1: attempt to index", 1, true), err)
      assert.truthy(err:find("stack traceback:", 1, true), err)
      assert.truthy(err:find(s .. ":2: in main chunk", 1, true), err)
      assert.are.equal(1, code)
    end)

    it("reports a missing script file", function()
      local out, err, code = run({ "/nonexistent/script.lua", "a" })
      assert.are.equal("", out)
      assert.is_true(prefixed(err), err)
      assert.truthy(err:find("cannot open /nonexistent/script.lua", 1, true), err)
      assert.are.equal(1, code)
    end)

    it("describes non-string error objects", function()
      local _, err, code = run({ "-e", "error({})" })
      assert.truthy(err:find("(error object is a table value)", 1, true), err)
      assert.are.equal(1, code)
      _, err = run({ "-e", "error()" })
      assert.truthy(err:find("(error object is a nil value)", 1, true), err)
      _, err, code = run({ "-e",
        "error(setmetatable({}, { __tostring = function() return 'custom error' end }))" })
      assert.are.equal(BIN .. ": custom error\n", err)
      assert.are.equal(1, code)
      _, err = run({ "-e", "error(42)" })
      assert.truthy(err:find(BIN .. ": 42\n", 1, true), err)
    end)

    it("turns SIGINT into an 'interrupted!' error", function()
      -- The script signals itself (its pid from /proc/self), then loops: the
      -- handler set by the host must stop the loop.  timeout bounds the run.
      local out, err, code = run({ "-e", [[
        local pid = io.open("/proc/self/stat"):read("n")
        assert(io.popen("kill -INT " .. pid)):close()
        local n = 0
        while true do n = n + 1 end
        io.write("not interrupted")]] })
      assert.are.equal("", out)
      assert.is_true(prefixed(err), err)
      assert.truthy(err:find("interrupted!", 1, true), err)
      assert.are.equal(1, code)
    end)
  end)

  describe("shm module", function()
    it("is preloaded, not loaded, and require works", function()
      local out, err, code = run({ "-e",
        "io.write(tostring(package.loaded.shm), ' ', type(package.preload.shm), ' ')\n" ..
        "local shm = require 'shm'; io.write(shm._VERSION, ' ', tostring(shm.getpagesize() > 0))" })
      assert.are.equal("", err)
      assert.are.equal(0, code)
      assert.truthy(out:match("^nil function shmlua %S+ true$"), out)
    end)
  end)

  describe("REPL (-i with piped stdin)", function()
    it("prints the version, expression values, and '= expr'", function()
      local out, err, code = run({ "-i" }, { stdin = "1+1\n= 2*3\n'a', nil, 3\n" })
      assert.are.equal("", err)
      assert.are.equal(0, code)
      assert.truthy(out:match("^shmlua [^\n]*\n"), out)
      assert.truthy(out:find("> 2\n> 6\n> a\tnil\t3\n> \n$"), out)
    end)

    it("continues incomplete statements with '>> '", function()
      local out, err, code = run({ "-i" },
        { stdin = "function f(x)\n  return x * 7\nend\nf(6)\nt = {\n1,\n2 }\n#t\n" })
      assert.are.equal("", err)
      assert.are.equal(0, code)
      assert.truthy(out:find("> >> >> > 42\n", 1, true), out)
      assert.truthy(out:find("> >> >> > 2\n", 1, true), out)
    end)

    it("reports errors and keeps going", function()
      local out, err, code = run({ "-i" }, { stdin = "error('oops')\n10 + 1\nx = = 2\n'still'\n" })
      assert.are.equal(0, code)
      assert.truthy(err:find("stdin:1: oops", 1, true), err)
      assert.truthy(err:find("stack traceback:", 1, true), err)
      assert.truthy(err:find("unexpected symbol", 1, true), err)
      assert.is_false(prefixed(err), err)   -- no program name inside the REPL
      assert.truthy(out:find("> 11\n", 1, true), out)
      assert.truthy(out:find("> still\n", 1, true), out)
    end)

    it("reports a statement left incomplete at end of input", function()
      local out, err, code = run({ "-i" }, { stdin = "for i = 1, 2 do\n" })
      assert.are.equal(0, code)
      assert.truthy(err:find("near <eof>", 1, true), err)
      assert.truthy(out:find("> >> > \n$"), out)   -- the last prompt meets EOF
    end)

    it("uses _PROMPT and _PROMPT2", function()
      local out = run({ "-i" }, { stdin = "_PROMPT = 'P1 '; _PROMPT2 = 'P2 '\ndo\nend\n" })
      assert.truthy(out:find("> P1 P2 P1 \n$"), out)
    end)

    it("runs after the script and sees its globals; require 'shm' works", function()
      local s = write(tmp(".lua"), "G = 'from script'\n")
      local out, err, code = run({ "-i", s },
        { stdin = "G\nshm = require 'shm'\nshm._VERSION\n" })
      assert.are.equal("", err)
      assert.are.equal(0, code)
      assert.truthy(out:find("> from script\n", 1, true), out)
      assert.truthy(out:find("> > shmlua", 1, true), out)
    end)

    it("reports a failing print", function()
      local _, err, code = run({ "-i" }, { stdin = "print = nil\n1\n2\n" })
      assert.are.equal(0, code)
      assert.truthy(err:find("error calling 'print'", 1, true), err)
    end)

    it("starts by itself, with the version, when stdin is a terminal", function()
      -- build/peers/ptyrun runs the host on a new pseudo-terminal, types the
      -- line after the first prompt, then the terminal's end-of-file.  The
      -- tty echoes the input line, so only what the host prints is checked.
      local ptyrun = helper.build .. "/peers/ptyrun"
      local f = assert(io.popen(q(ptyrun) .. " 20 'print(6 * 7)\n' " .. q(BIN) .. " 2>&1"))
      local out = f:read("a")
      local _, _, code = f:close()
      assert.are.equal(0, code, out)
      assert.truthy(out:find("shmlua %d+%.%d+%.%d+ %(Lua 5%.4"), out)
      assert.truthy(out:find("\n42\r?\n"), out)   -- the echoed line, then its result
    end)

    it("handles a line longer than Lua's buffer size", function()
      local long = ("x"):rep(20000)
      local out, err = run({ "-i" }, { stdin = "#'" .. long .. "'\n" })
      assert.are.equal("", err)
      assert.truthy(out:find("> 20000\n", 1, true), out)
    end)
  end)
end)
