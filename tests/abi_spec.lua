-- abi_spec: the C type model (src/layout.c, src/cparse.c) against gcc.
--
-- The key test is differential: tools/abi/gen.lua writes a random header,
-- gcc compiles a probe that prints every size, alignment, member offset,
-- bit-field position and enum value it contains, and tools/abi/check.c
-- (built from the module's own layout.c and cparse.c, no Lua) prints the
-- same lines from cu_parse/cu_typeof.  Both must agree line for line.
-- SHMLUA_ABI_SEED and SHMLUA_ABI_COUNT choose a longer run; FUZZ=1 also
-- runs the libFuzzer harness for FUZZ_SECONDS (default 20).
local helper = require "helper"

local dir = helper.build .. "/abi"
local check = dir .. "/check"

local function sh(cmd)
  local out, code = helper.run(cmd)
  return out, code
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function read_lines(path)
  local t = {}
  for line in assert(io.open(path)):lines() do t[#t + 1] = line end
  return t
end

-- Builds the check driver (with the sanitizers in `make asan` runs), once.
local built = false
local function build_check()
  if built then return end
  built = true
  assert(os.execute("mkdir -p " .. dir))
  local cc = os.getenv("SHMLUA_ASAN")
      and "clang -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
      or "gcc"
  local out, code = sh(cc .. " -std=gnu11 -O1 -g -Wall -Wextra -Werror -Isrc -o " .. check ..
                       " tools/abi/check.c src/layout.c src/cparse.c")
  assert(code == 0, "building the check driver failed:\n" .. out)
end

-- Runs the check driver with the given arguments (a list), returns stdout.
local function run_check(args)
  local q = {}
  for i, a in ipairs(args) do q[i] = "'" .. a:gsub("'", "'\\''") .. "'" end
  local out = sh(check .. " " .. table.concat(q, " "))
  return out
end

-- gcc and shmlua answer manifest `m` about header `h` in directory d;
-- returns the number of lines compared and the list of differences.
local function differential(d, h, m)
  if h then write(d .. "/abi.h", h) end
  if m then
    write(d .. "/manifest.txt", m)
    local out, code = sh("lua5.4 tools/abi/gen.lua --probe " .. d .. "/manifest.txt " .. d)
    assert(code == 0, out)
  end
  local out, code = sh("gcc -w -o " .. d .. "/probe " .. d .. "/probe.c")
  assert(code == 0, "gcc rejected the probe:\n" .. out)
  out, code = sh(d .. "/probe > " .. d .. "/gcc.txt")
  assert(code == 0, out)
  out = sh(check .. " " .. d .. "/abi.h " .. d .. "/manifest.txt > " .. d .. "/mine.txt")
  local want, got = read_lines(d .. "/gcc.txt"), read_lines(d .. "/mine.txt")
  local diffs = {}
  for i = 1, math.max(#want, #got) do
    if want[i] ~= got[i] then
      diffs[#diffs + 1] = ("gcc:    %s\nshmlua: %s"):format(want[i] or "(none)", got[i] or "(none)")
    end
  end
  return #want, diffs, out
end

describe("type model against gcc", function()
  lazy_setup(build_check)

  it("agrees on every line for a few hundred random declarations", function()
    local seed = tonumber(os.getenv("SHMLUA_ABI_SEED")) or 20240611
    local count = tonumber(os.getenv("SHMLUA_ABI_COUNT")) or 300
    local d = dir .. "/random"
    assert(os.execute("mkdir -p " .. d))
    local out, code = sh(("lua5.4 tools/abi/gen.lua %d %d %s"):format(seed, count, d))
    assert(code == 0, out)
    local n, diffs, err = differential(d)
    print(("\nabi: seed %d, %d declarations, %d lines compared, %d mismatches")
          :format(seed, count, n, #diffs))
    assert(n > count, "too few lines compared: " .. n .. "\n" .. err)
    assert(#diffs == 0, table.concat(diffs, "\n", 1, math.min(#diffs, 10)))
  end)

  it("lays out the project's header, pthread and atomic types as gcc does", function()
    local d = dir .. "/real"
    assert(os.execute("mkdir -p " .. d))
    local n, diffs = differential(d, [[
#include <stdint.h>
#include <stddef.h>
#include <stdatomic.h>
#include <pthread.h>
#include <semaphore.h>
struct Head { void *Addr; uintptr_t MemSize; uintptr_t TextSize; char *TextPtr; };
struct Locked {
  char tag;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  sem_t sem;
  atomic_int counter;
  _Atomic(long) total;
  _Atomic struct { char a[2]; } pair;
  max_align_t any;
  long double ld;
  char tail;
};
struct Bits {
  unsigned ready : 1, : 3, kind : 4;
  int : 0;
  long long big : 40;
  unsigned char small : 7;
  _Bool flag : 1;
};
struct __attribute__((packed)) Wire { uint8_t op; uint32_t len; uint16_t crc : 12; uint64_t id; };
struct Nested { int n; union { float f; uint32_t u; }; struct { char c; double d; } inner; char data[]; };
#define SLOTS 8
enum Limits { MAXN = SLOTS * 4, MASK = MAXN - 1, SHIFTED = 1 << 10, NEG = -5, CH = 'x' };
struct Table { int rows[SLOTS][MAXN / 8]; void (*cb[SLOTS])(int, char *); };
]], table.concat({
      "T\tstruct Head", "F\tstruct Head\tAddr", "F\tstruct Head\tMemSize",
      "F\tstruct Head\tTextSize", "F\tstruct Head\tTextPtr",
      "T\tstruct Locked", "F\tstruct Locked\tlock", "F\tstruct Locked\tcond",
      "F\tstruct Locked\tsem", "F\tstruct Locked\tcounter", "F\tstruct Locked\ttotal",
      "F\tstruct Locked\tpair", "F\tstruct Locked\tany", "F\tstruct Locked\tld",
      "F\tstruct Locked\ttail", "T\tpthread_mutex_t", "T\tpthread_cond_t", "T\tsem_t",
      "T\tmax_align_t", "T\tatomic_llong",
      "T\tstruct Bits", "B\tstruct Bits\tready", "B\tstruct Bits\tkind",
      "B\tstruct Bits\tbig", "B\tstruct Bits\tsmall", "B\tstruct Bits\tflag",
      "T\tstruct Wire", "F\tstruct Wire\tlen", "B\tstruct Wire\tcrc", "F\tstruct Wire\tid",
      "T\tstruct Nested", "F\tstruct Nested\tf", "F\tstruct Nested\tinner.d",
      "F\tstruct Nested\tdata", "E\tMAXN", "E\tMASK", "E\tSHIFTED", "E\tNEG", "E\tCH",
      "T\tstruct Table", "F\tstruct Table\tcb", "T\tenum Limits",
    }, "\n") .. "\n")
    assert.are.equal(42, n)
    assert(#diffs == 0, table.concat(diffs, "\n"))
  end)
end)

describe("C declaration parser", function()
  lazy_setup(build_check)

  it("spells type names as C writes them", function()
    local out = run_check({"-s", "typedef struct { int a; } Anon; struct Head { void *Addr; };",
      "-t", "long unsigned int", "-t", "unsigned", "-t", "uint32_t[16]", "-t", "int[2][3]",
      "-t", "char *", "-t", "void (*)(int)", "-t", "const char *const *", "-t", "int (*)[3]",
      "-t", "void (*[4])(int, char *)", "-t", "struct Head", "-t", "struct Head *", "-t", "Anon",
      "-t", "_Atomic(int)", "-t", "long long int signed", "-t", "double long"})
    assert.are.equal([[
ok
long unsigned int: 'unsigned long' size 8 align 8
unsigned: 'unsigned int' size 4 align 4
uint32_t[16]: 'uint32_t[16]' size 64 align 4
int[2][3]: 'int[2][3]' size 24 align 4
char *: 'char *' size 8 align 8
void (*)(int): 'void (*)(int)' size 8 align 8
const char *const *: 'const char *const *' size 8 align 8
int (*)[3]: 'int (*)[3]' size 8 align 8
void (*[4])(int, char *): 'void (*[4])(int, char *)' size 32 align 8
struct Head: 'struct Head' size 8 align 8
struct Head *: 'struct Head *' size 8 align 8
Anon: 'Anon' size 4 align 4
_Atomic(int): '_Atomic int' size 4 align 4
long long int signed: 'long long' size 8 align 8
double long: 'long double' size 16 align 16
]], out)
  end)

  it("reports errors with line, column and what was expected", function()
    local cases = {
      {"struct S { int x }", "line 1, column 18: expected ';' or ',' after member near '}'"},
      {"struct S { foo_t x; };", "line 1, column 12: unknown type name 'foo_t'"},
      {"struct A {\n  int a;\n  char b[3;\n};", "line 3, column 11: expected ']' near ';'"},
      {"enum { A = 2147483647 + 1 };", "line 1, column 23: integer overflow in constant expression"},
      {"enum { B = 1 / 0 };", "line 1, column 14: division by zero in constant expression"},
      {"enum { C = 1 << 40 };", "line 1, column 14: shift count out of range in constant expression"},
      {"enum { E = 0x1ffffffffffffffffff };", "line 1, column 12: integer constant is too large"},
      {"enum { F = 2147483647, G };", "line 1, column 24: overflow in enumeration values"},
      {"/* never closed", "line 1, column 1: unterminated comment"},
      {"#if 1\nstruct Q { int q; };", "line 2, column 21: unterminated #if"},
      {"#error no way", "line 1, column 2: #error no way"},
      {"struct T {\n  int y;\n  int x : 33; };", "line 3, column 7: width of 'x' (33) exceeds its type 'int'"},
      {"struct U { int a; int a; };", "line 1, column 1: duplicate member 'a'"},
      {"struct V { char c[]; };", "line 1, column 1: flexible array member 'c' in a struct with no named members"},
      {"struct X { int a; struct Fwd f; };", "line 1, column 30: member 'f' has incomplete type 'struct Fwd'"},
      {"typedef unsigned int size_t;", "line 1, column 22: conflicting redefinition of typedef 'size_t': unsigned long vs unsigned int"},
      {"int x[-1];", "line 1, column 7: size of array is negative"},
      {"struct Y { int x; } z", "line 1, column 22: expected ';' or ',' after declarator at end of input"},
      {"#pragma pack(1)", "line 1, column 2: #pragma pack is not supported: use __attribute__((packed)) and aligned(N)"},
      {"struct Z { int x __attribute__((aligned(3))); };", "line 1, column 41: requested alignment 3 is not a positive power of 2"},
      {"union W { int x; };\nstruct W { int y; };", "line 2, column 1: 'W' defined as wrong kind of tag (union W)"},
    }
    for _, c in ipairs(cases) do
      assert.are.equal("error: " .. c[2] .. "\n", run_check({"-s", c[1]}))
    end
  end)

  it("accepts an identical redefinition and names the field of a conflicting one", function()
    local head = "struct Head { void *Addr; uintptr_t MemSize; uintptr_t TextSize; char *TextPtr; };"
    local out = run_check({"-s", head, "-s", head,
                           "-s", (head:gsub("uintptr_t MemSize", "unsigned long MemSize")),
                           "-s", (head:gsub("uintptr_t MemSize", "uint32_t MemSize"))})
    assert.are.equal("ok\nok\nok\nerror: line 1, column 1: conflicting redefinition of struct Head: " ..
                     "field 'MemSize': uintptr_t at offset 8 vs uint32_t at offset 8\n", out)
  end)

  it("keeps nothing of a call that fails", function()
    local out = run_check({"-s", "#define KEEP 3\nstruct A { int x; }; enum { E1 = 7 }; typedef int T; struct B { int y; } oops",
                           "-t", "struct A", "-t", "T", "-v", "E1", "-t", "char[KEEP]",
                           "-s", "struct A { char c; }; enum { E1 = 8 }; typedef char T;",
                           "-t", "struct A", "-v", "E1"})
    assert.are.equal([[
error: line 2, column 78: expected ';' or ',' after declarator at end of input
struct A: error: line 1, column 1: unknown struct A
T: error: line 1, column 1: unknown type name 'T'
E1: unknown
char[KEEP]: error: line 1, column 6: 'KEEP' is not a constant
ok
struct A: 'struct A' size 1 align 1
E1 = 8
]], out)
  end)

  it("completes forward declarations and reads real headers", function()
    local out = run_check({"-s", [[
#ifndef DEMO_H
#define DEMO_H 1
#include <stdio.h>
#define N 16
#define PACKED __attribute__((__packed__))
#ifdef __cplusplus
extern "C" {
#endif
typedef struct node node_t;              /* forward, then completed */
struct list { node_t *head, *tail; size_t len; };
struct node { node_t *next; char name[N]; };
#if defined(__x86_64__) && N > 8
typedef struct PACKED { uint8_t op; uint32_t arg; } insn_t;
#else
typedef struct { int broken; } insn_t;
#endif
extern int list_push(struct list *l, FILE *log, const char *fmt, ...);
static inline int twice(int x) { return 2 * x; }
__extension__ extern long long counter;
_Static_assert(sizeof(insn_t) == 5, "packed");
#ifdef __cplusplus
}
#endif
#endif
]], "-t", "struct node", "-t", "node_t", "-t", "insn_t", "-l", "struct list", "-t", "char[N]"})
    assert.are.equal([[
ok
struct node: 'struct node' size 24 align 8
node_t: 'struct node' size 24 align 8
insn_t: 'insn_t' size 5 align 1
head: struct node * at 0
tail: struct node * at 8
len: size_t at 16
char[N]: 'char[16]' size 16 align 1
]], out)
  end)

  it("refuses pathological input without crashing", function()
    local deep = string.rep("(", 5000) .. "1" .. string.rep(")", 5000)
    local out = run_check({"-s", "enum { A = " .. deep .. " };",
                           "-s", "int " .. string.rep("*", 200) .. "p;",
                           "-s", "int " .. string.rep("*", 20000) .. "p;",
                           "-s", string.rep("struct { ", 3000),
                           "-s", "#define X X\nint a[X];",
                           "-s", "\1\2\255"})
    local lines = {}
    for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.equal(6, #lines)
    assert.truthy(lines[1]:match("nesting too deep"))
    assert.are.equal("ok", lines[2])   -- a long pointer chain is fine
    assert.truthy(lines[3]:match("declarator too complex"))
    assert.truthy(lines[4]:match("nesting too deep"))
    assert.truthy(lines[5]:match("'X' is not a constant"))
    assert.truthy(lines[6]:match("^error: line 1, column 1: "))
  end)
end)

describe("parser fuzzing", function()
  it("survives libFuzzer for FUZZ_SECONDS when FUZZ is set", function()
    if not os.getenv("FUZZ") then
      pending("set FUZZ=1 to run the fuzzer")
      return
    end
    local secs = tonumber(os.getenv("FUZZ_SECONDS")) or 20
    local out, code = sh("make -s fuzz FUZZ_SECONDS=" .. secs)
    assert(code == 0, out:sub(-3000))
    assert.truthy(out:match("Done %d+ runs"))
  end)
end)
