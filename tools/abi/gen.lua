-- tools/abi/gen.lua SEED COUNT OUTDIR
--
-- Writes a random C header of COUNT declarations (OUTDIR/abi.h), a probe
-- program that includes it and prints, as gcc lays things out, the size and
-- alignment of every type, the offset of every member, the first and last
-- bit of every bit-field and the value of every enum constant
-- (OUTDIR/probe.c), and the list of those questions (OUTDIR/manifest.txt)
-- that tools/abi/check.c answers from shmlua's own parser and layout engine.
-- The two outputs must be identical.  Same SEED, same files.
--
-- What it covers: every integer spelling and stdint/stddef name, floats,
-- pointers, function pointers (and arrays of them), multi-dimensional
-- arrays sized by literals, macros, enum constants and sizeof/_Alignof/
-- offsetof expressions, structs and unions nested, named and anonymous,
-- bit-fields of every integer type (named, unnamed, zero-width), packed and
-- aligned attributes on records, members and typedefs, _Alignas, _Atomic,
-- const/volatile, flexible array members, enums with constant expressions
-- (packed and 64-bit ones too), typedef chains, forward declarations,
-- comments and preprocessor lines, prototypes that a parser must skip.

local seed, count, outdir = tonumber(arg[1]), tonumber(arg[2]), arg[3]
if not (seed and count and outdir) then
  io.stderr:write("usage: lua5.4 tools/abi/gen.lua SEED COUNT OUTDIR\n")
  os.exit(2)
end
math.randomseed(seed)
local R = math.random
local function chance(p) return R() < p end
local function pick(t) return t[R(#t)] end

local header, manifest, probe = {}, {}, {}
local function H(s) header[#header + 1] = s end
local function ask(line, code)
  manifest[#manifest + 1] = line
  probe[#probe + 1] = code
end

local uid = 0
local function fresh(prefix)
  uid = uid + 1
  return prefix .. uid
end

---------------------------------------------------------------- C integers
-- Constant expressions are generated together with their value, computed
-- with C's types (i: int, u: unsigned int, l: long, ul: unsigned long),
-- so that nothing undefined (overflow, division by zero, bad shifts) is
-- ever written.  A value is {v = integer, t = type}.

local I32MIN, I32MAX, U32MAX = -2147483648, 2147483647, 4294967295
local function unsigned(t) return t == "u" or t == "ul" end
local function wide(t) return t == "l" or t == "ul" end
local function common(a, b)
  if a == "ul" or b == "ul" then return "ul" end
  if a == "l" or b == "l" then return "l" end
  if a == "u" or b == "u" then return "u" end
  return "i"
end
local function conv(v, t)              -- wraps like gcc
  if t == "u" then return v & 0xffffffff end
  if t == "i" then
    v = v & 0xffffffff
    if v > I32MAX then v = v - 0x100000000 end
    return v
  end
  return v                             -- l, ul: 64-bit patterns
end
local function udiv(a, b)              -- unsigned 64-bit a // b, a % b
  if b < 0 then
    if math.ult(a, b) then return 0, a end
    return 1, a - b
  end
  if a >= 0 then return a // b, a % b end
  local q = ((a >> 1) // b) << 1
  local r = a - q * b
  if not math.ult(r, b) then q, r = q + 1, r - b end
  return q, r
end
local function fits(v, t)
  if t == "i" then return v >= I32MIN and v <= I32MAX end
  return true
end

-- Returns the value of a op b, or nil when C leaves it undefined.
local function binop(op, a, b)
  if op == "&&" then return {v = (a.v ~= 0 and b.v ~= 0) and 1 or 0, t = "i"} end
  if op == "||" then return {v = (a.v ~= 0 or b.v ~= 0) and 1 or 0, t = "i"} end
  if op == "<<" or op == ">>" then
    local w = wide(a.t) and 64 or 32
    if b.v < 0 or b.v >= w then return nil end
    if op == "<<" then
      if not unsigned(a.t) then
        -- keep clear of what C99 leaves undefined: negative operands and
        -- shifting bits past the sign bit
        if a.v < 0 or (w == 32 and (a.v << b.v) > I32MAX) or
           (w == 64 and b.v > 0 and (a.v >> (63 - b.v)) ~= 0) then return nil end
      end
      return {v = conv(a.v << b.v, a.t), t = a.t}
    end
    if unsigned(a.t) then return {v = conv(a.v >> b.v, a.t), t = a.t} end
    if a.v < 0 then return nil end         -- implementation-defined: avoid
    return {v = a.v >> b.v, t = a.t}
  end
  local t = common(a.t, b.t)
  local x, y = conv(a.v, t), conv(b.v, t)
  local function cmp(lt, eq)
    local r
    if op == "<" then r = lt elseif op == ">" then r = not lt and not eq
    elseif op == "<=" then r = lt or eq elseif op == ">=" then r = not lt
    elseif op == "==" then r = eq else r = not eq end
    return {v = r and 1 or 0, t = "i"}
  end
  if op == "<" or op == ">" or op == "<=" or op == ">=" or op == "==" or op == "!=" then
    if unsigned(t) then return cmp(math.ult(x, y), x == y) end
    return cmp(x < y, x == y)
  end
  if op == "&" then return {v = conv(x & y, t), t = t} end
  if op == "|" then return {v = conv(x | y, t), t = t} end
  if op == "^" then return {v = conv(x ~ y, t), t = t} end
  if unsigned(t) then
    if op == "+" then return {v = conv(x + y, t), t = t} end
    if op == "-" then return {v = conv(x - y, t), t = t} end
    if op == "*" then return {v = conv(x * y, t), t = t} end
    if y == 0 then return nil end
    local q, r = udiv(x, y)
    return {v = conv(op == "/" and q or r, t), t = t}
  end
  local r
  if op == "+" then r = x + y
    if (y > 0 and r < x) or (y < 0 and r > x) then return nil end
  elseif op == "-" then r = x - y
    if (y < 0 and r < x) or (y > 0 and r > x) then return nil end
  elseif op == "*" then
    if x ~= 0 and (math.abs(x) > 0x7fffffff or math.abs(y) > 0x7fffffff) then return nil end
    r = x * y
  else
    if y == 0 or (y == -1 and x == math.mininteger) then return nil end
    if t == "i" and y == -1 and x == I32MIN then return nil end
    r = x // y
    if (x % y ~= 0) and ((x < 0) ~= (y < 0)) then r = r + 1 end   -- C truncates
    if op == "%" then r = x - r * y end
  end
  if not fits(r, t) then return nil end
  return {v = r, t = t}
end

local consts = {}   -- {name=, v=, t=} known enum constants and macros
local escapes = {["'\\n'"] = 10, ["'\\0'"] = 0, ["'\\x41'"] = 65, ["'\\101'"] = 65}

local function literal()
  local v = R(0, 60)
  local k = R(10)
  if k == 1 then return ("0x%X"):format(v), {v = v, t = "i"} end
  if k == 2 then return ("0%o"):format(v), {v = v, t = "i"} end
  if k == 3 then return tostring(v) .. "U", {v = v, t = "u"} end
  if k == 4 then return tostring(v) .. pick({"L", "l", "LL"}), {v = v, t = "l"} end
  if k == 5 then return tostring(v) .. pick({"UL", "ul", "uLL", "LLU"}), {v = v, t = "ul"} end
  if k == 6 then
    local c = pick({"A", "z", "0", " ", "~"})
    return "'" .. c .. "'", {v = c:byte(), t = "i"}
  end
  if k == 7 then
    local e = pick({"'\\n'", "'\\0'", "'\\x41'", "'\\101'"})
    return e, {v = escapes[e], t = "i"}
  end
  return tostring(v), {v = v, t = "i"}
end

local function leaf()
  if #consts > 0 and chance(0.35) then
    local c = pick(consts)
    return c.name, {v = c.v, t = c.t}
  end
  return literal()
end

local binops = {"+", "-", "*", "/", "%", "<<", ">>", "&", "|", "^", "<", ">",
                "<=", ">=", "==", "!=", "&&", "||"}

-- An expression of depth <= d with its value; nil after too many tries.
local function expr(d)
  if d <= 0 or chance(0.3) then return leaf() end
  for _ = 1, 20 do
    local k = R(10)
    if k <= 6 then
      local op = pick(binops)
      local at, av = expr(d - 1)
      local bt, bv = expr(d - 1)
      if at and bt then
        if op == "<<" or op == ">>" then bt, bv = tostring(R(0, 12)), {v = 0, t = "i"}; bv.v = tonumber(bt) end
        local r = binop(op, av, bv)
        if r then return "(" .. at .. " " .. op .. " " .. bt .. ")", r end
      end
    elseif k == 7 then
      local at, av = expr(d - 1)
      if at then
        local op = pick({"-", "~", "!", "+"})
        local r
        if op == "-" then
          if unsigned(av.t) then r = {v = conv(-av.v, av.t), t = av.t}
          elseif av.v ~= math.mininteger and fits(-av.v, av.t) then r = {v = -av.v, t = av.t} end
        elseif op == "~" then r = {v = conv(~av.v, av.t), t = av.t}
        elseif op == "!" then r = {v = av.v == 0 and 1 or 0, t = "i"}
        else r = av end
        if r then return op .. "(" .. at .. ")", r end
      end
    elseif k == 8 then
      local ct, cv = expr(d - 1)
      local at, av = expr(d - 1)
      local bt, bv = expr(d - 1)
      if ct and at and bt then
        local t = common(av.t, bv.t)
        local v = cv.v ~= 0 and av or bv
        return "(" .. ct .. " ? " .. at .. " : " .. bt .. ")", {v = conv(v.v, t), t = t}
      end
    elseif k == 9 then
      local s = pick({{"char", 1}, {"short", 2}, {"int", 4}, {"long", 8},
                      {"long double", 16}, {"uint16_t", 2}, {"int64_t", 8}})
      local op = chance(0.5) and "sizeof" or "_Alignof"
      return op .. "(" .. s[1] .. ")", {v = s[2], t = "ul"}
    else
      local at, av = expr(d - 1)
      if at then
        local c = pick({{"unsigned char", 1, false}, {"signed char", 1, true},
                        {"unsigned short", 2, false}, {"short", 2, true},
                        {"int", 4, true}, {"unsigned", 4, false}})
        local bits = c[2] * 8
        local v = av.v & ((1 << bits) - 1)
        if c[3] and v >= (1 << (bits - 1)) then v = v - (1 << bits) end
        return "((" .. c[1] .. ")" .. at .. ")", {v = v, t = (c[2] == 4 and not c[3]) and "u" or "i"}
      end
    end
  end
  return leaf()
end

-- A small non-negative size expression with its value (array dimensions).
local size_exprs = {}      -- sizeof/alignof/offsetof texts of earlier types
local function dim()
  local k = R(12)
  if k <= 4 then local n = R(1, 4); return tostring(n), n end
  if k == 5 then return "0", 0 end
  if k <= 8 then
    local good = {}
    for _, c in ipairs(consts) do
      if c.v >= 1 and c.v <= 6 and c.t ~= "ul" then good[#good + 1] = c end
    end
    if #good > 0 then local c = pick(good); return c.name, c.v end
  end
  if k <= 10 and #size_exprs > 0 then
    local m = R(2, 4)
    return "(" .. pick(size_exprs) .. " % " .. m .. " + 1)", m   -- at most m
  end
  for _ = 1, 10 do
    local t, v = expr(2)
    if v and not (unsigned(v.t) and v.v < 0) and v.v >= 0 and v.v <= 5 then
      return t, v.v
    end
  end
  return "3", 3
end

------------------------------------------------------------------- types
-- A type is {abs = abstract spelling usable in sizeof/casts,
-- decl = function(inner) -> declaration of `inner` with this type,
-- bits = bit-field width limit (integers only), ub = size upper bound,
-- noarray, fam, record, scalar, align = known alignment or nil}.

local function simple(spell, size, align, extra)
  local t = {abs = spell, ub = size, align = align, scalar = true}
  t.decl = function(inner) return spell .. " " .. inner end
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

local int_spellings = {
  {{"char"}, 1, true},
  {{"signed char", "char signed"}, 1, true},
  {{"unsigned char", "char unsigned"}, 1, false},
  {{"short", "short int", "signed short", "short signed int", "int short"}, 2, true},
  {{"unsigned short", "unsigned short int", "short unsigned", "int unsigned short"}, 2, false},
  {{"int", "signed", "signed int", "int signed"}, 4, true},
  {{"unsigned", "unsigned int", "int unsigned"}, 4, false},
  {{"long", "long int", "signed long", "int long", "long signed int"}, 8, true},
  {{"unsigned long", "long unsigned int", "unsigned long int", "int long unsigned"}, 8, false},
  {{"long long", "long long int", "signed long long", "long int long"}, 8, true},
  {{"unsigned long long", "long long unsigned int", "unsigned long long int"}, 8, false},
  {{"int8_t", "int_least8_t", "int_fast8_t"}, 1, true},
  {{"uint8_t", "uint_least8_t", "uint_fast8_t"}, 1, false},
  {{"int16_t", "int_least16_t"}, 2, true},
  {{"uint16_t", "uint_least16_t"}, 2, false},
  {{"int32_t", "int_least32_t", "wchar_t", "pid_t"}, 4, true},
  {{"uint32_t", "uint_least32_t", "uid_t", "gid_t", "mode_t"}, 4, false},
  {{"int64_t", "int_least64_t", "int_fast16_t", "int_fast32_t", "int_fast64_t",
    "intptr_t", "intmax_t", "ssize_t", "ptrdiff_t", "off_t"}, 8, true},
  {{"uint64_t", "uint_least64_t", "uint_fast16_t", "uint_fast32_t", "uint_fast64_t",
    "uintptr_t", "uintmax_t", "size_t"}, 8, false},
}

local function int_type()
  local e = pick(int_spellings)
  return simple(pick(e[1]), e[2], e[2], {bits = e[2] * 8, signed = e[3]})
end

local other_scalars = {
  {"float", 4, 4}, {"double", 8, 8}, {"long double", 16, 16},
  {"double long", 16, 16}, {"_Bool", 1, 1, 1}, {"bool", 1, 1, 1},
  {"void *", 8, 8}, {"char *", 8, 8}, {"const char *", 8, 8},
  {"__int128", 16, 16}, {"unsigned __int128", 16, 16},
  {"pthread_mutex_t", 40, 8}, {"pthread_cond_t", 48, 8}, {"sem_t", 32, 8},
  {"max_align_t", 32, 16}, {"atomic_int", 4, 4}, {"atomic_long", 8, 8},
  {"atomic_bool", 1, 1}, {"atomic_ullong", 8, 8},
}

local named = {}        -- earlier types usable by value: records, typedefs, enums
local bitfield_types = {}

local function scalar_type()
  if chance(0.65) then return int_type() end
  local s = pick(other_scalars)
  return simple(s[1], s[2], s[3], {bits = s[4]})
end

local function any_type(byvalue)
  if #named > 0 and chance(0.4) then
    for _ = 1, 5 do
      local t = pick(named)
      if not (byvalue and (t.fam or t.ub > 20000)) then return t end
    end
  end
  return scalar_type()
end

local function pointer_to(t)
  local p = {ub = 8, align = 8, scalar = true}
  if t.arraylike then
    p.decl = function(inner) return t.decl("(*" .. inner .. ")") end
  else
    p.decl = function(inner) return t.decl("*" .. inner) end
  end
  p.abs = p.decl(""):gsub("%s+$", "")
  return p
end

local function param_list()
  local n = R(0, 3)
  if n == 0 then return pick({"void", ""}) end
  local ps = {}
  for i = 1, n do
    local t = any_type(false)
    if t.fam then t = pointer_to(t) end
    ps[i] = t.decl(chance(0.3) and fresh("p") or ""):gsub("%s+$", "")
  end
  if chance(0.15) then ps[#ps + 1] = "..." end
  return table.concat(ps, ", ")
end

local function funcptr_type()
  local ret = pick({"void", "int", "char *", "unsigned long", "double"})
  if #named > 0 and chance(0.3) then
    local t = pick(named)
    if t.record then ret = t.abs .. " *" end
  end
  local params = param_list()
  local p = {ub = 8, align = 8, scalar = true}
  p.decl = function(inner) return ret .. " (*" .. inner .. ")(" .. params .. ")" end
  p.abs = p.decl("")
  p.arraylike = true        -- a pointer to it needs the parentheses kept
  return p
end

local function array_of(t, dims)
  local a = {arraylike = true, ub = t.ub, align = t.align}
  local suffix = ""
  for _, d in ipairs(dims) do
    suffix = suffix .. "[" .. d[1] .. "]"
    a.ub = a.ub * math.max(d[2], 1)
  end
  a.decl = function(inner) return t.decl(inner .. suffix) end
  a.abs = a.decl(""):gsub("%s+$", "")
  return a
end

----------------------------------------------------------------- records

local function align_attr()
  if chance(0.2) then return "aligned" end
  return ("aligned(%d)"):format(pick({1, 2, 4, 8, 16, 32, 64}))
end

local function attr(list)
  return "__attribute__((" .. table.concat(list, ", ") .. "))"
end

local function width_for(bits)
  local k = R(6)
  if k == 1 then return 1 end
  if k == 2 then return bits end
  if k == 3 then return math.max(1, bits - 1) end
  if k == 4 then return math.min(bits, pick({7, 8, 9, 15, 16, 17, 31, 32, 33})) end
  return R(1, bits)
end

local gen_record

-- One member (or several lines) for a record body.  Appends probe entries
-- {path, bitfield} to `entries`.  Returns the C text.
local function gen_member(depth, entries, is_union)
  local k = R(100)
  if k <= 20 then                                  -- bit-field
    local t
    if #bitfield_types > 0 and chance(0.25) then t = pick(bitfield_types)
    elseif chance(0.1) then t = simple(pick({"_Bool", "bool"}), 1, 1, {bits = 1})
    else t = int_type() end
    local q = chance(0.15) and "volatile " or ""
    if chance(0.2) then
      local w = chance(0.4) and 0 or width_for(t.bits)
      return q .. t.decl(": " .. w) .. ";"
    end
    local name = fresh("b")
    local a = ""
    if chance(0.08) then a = " " .. attr({"packed"}) end
    if chance(0.05) then a = " " .. attr({("aligned(%d)"):format(pick({1, 2, 4, 8}))}) end
    entries[#entries + 1] = {path = name, bitfield = true, bool = t.bits == 1}
    return q .. t.decl(name .. " : " .. width_for(t.bits)) .. a .. ";"
  end
  if k <= 30 and depth < 3 then                    -- nested record
    local sub = {}
    local anon = chance(0.4)
    local text = gen_record(depth + 1, chance(0.35), (not anon and chance(0.4)) and fresh("N") or nil, sub)
    if anon then                                    -- anonymous member
      for _, e in ipairs(sub) do entries[#entries + 1] = e end
      return text .. ";"
    end
    local name = fresh("m")
    local dims = ""
    if chance(0.2) then dims = "[" .. R(1, 3) .. "]" end
    entries[#entries + 1] = {path = name}
    if dims == "" then
      for _, e in ipairs(sub) do
        entries[#entries + 1] = {path = name .. "." .. e.path, bitfield = e.bitfield, bool = e.bool}
      end
    elseif dims ~= "[1]" and #sub > 0 and not sub[1].bitfield then
      entries[#entries + 1] = {path = name .. "[1]." .. sub[1].path}
    end
    return text .. " " .. name .. dims .. ";"
  end
  local name = fresh("m")
  local t
  if k <= 40 then                                  -- array
    local el = any_type(true)
    if el.noarray or el.ub > 4000 then el = int_type() end
    local dims = {}
    for i = 1, (chance(0.6) and 1 or R(2, 3)) do
      local text, v = dim()
      dims[i] = {text, v}
    end
    t = array_of(el, dims)
  elseif k <= 48 then                              -- pointers
    local kk = R(5)
    if kk == 1 then t = funcptr_type()
    elseif kk == 2 then
      local f = funcptr_type()
      local n = R(1, 4)
      local d = f.decl
      t = {ub = 8 * n, arraylike = true}
      t.decl = function(inner) return d(inner .. "[" .. n .. "]") end
    elseif kk == 3 then t = pointer_to(pointer_to(any_type(false)))
    elseif kk == 4 then
      local tag = fresh("Undef")
      t = simple("struct " .. tag .. " *", 8, 8)
    else t = pointer_to(array_of(int_type(), {{"3", 3}})) end
  else
    t = any_type(true)
  end
  local pre, post = "", ""
  if t.scalar and chance(0.12) then pre = pick({"const ", "volatile ", "const volatile "}) end
  if t.scalar and t.bits and t.bits > 1 and chance(0.08) then
    if chance(0.5) then
      pre = "_Atomic "
    else
      local abs = t.abs
      local nt = {decl = function(inner) return "_Atomic(" .. abs .. ") " .. inner end}
      t = nt
    end
  end
  if t.align and not is_union and chance(0.06) then
    pre = pre .. "_Alignas(" .. math.max(t.align, pick({1, 2, 4, 8, 16, 32})) .. ") "
  elseif t.align and chance(0.03) then
    pre = pre .. "_Alignas(" .. t.abs .. ") "
  end
  if chance(0.08) then post = " " .. attr({"packed"}) end
  if chance(0.06) then post = post .. " " .. attr({align_attr()}) end
  entries[#entries + 1] = {path = name}
  return pre .. t.decl(name) .. post .. ";"
end

-- A struct or union specifier with its body; `entries` gets the probe
-- paths of its members (anonymous members flattened).
gen_record = function(depth, is_union, tag, entries)
  local kw = is_union and "union" or "struct"
  local pre, post = {}, {}
  if chance(0.15) then pre[#pre + 1] = "packed" end
  if chance(0.1) then post[#post + 1] = "packed" end
  if chance(0.12) then (chance(0.5) and pre or post)[#pre + 1] = align_attr() end
  local head = kw
  if #pre > 0 then head = head .. " " .. attr(pre) end
  if tag then head = head .. " " .. tag end
  local body = {}
  local n = R(1, depth == 0 and 8 or 4)
  local named_members = 0
  for i = 1, n do
    local before = #entries
    body[#body + 1] = "  " .. string.rep("  ", depth) .. gen_member(depth, entries, is_union)
    if #entries > before then named_members = named_members + 1 end
  end
  if named_members == 0 then
    local name = fresh("m")
    body[#body + 1] = "  " .. string.rep("  ", depth) .. "int " .. name .. ";"
    entries[#entries + 1] = {path = name}
  end
  if not is_union and chance(0.12) then
    local el = any_type(true)
    if el.noarray or el.fam or el.ub > 4000 then el = int_type() end
    local name = fresh("fam")
    body[#body + 1] = "  " .. string.rep("  ", depth) .. el.decl(name .. "[]") .. ";"
    entries[#entries + 1] = {path = name}
    entries.fam = true
  end
  local text = head .. " {\n" .. table.concat(body, "\n") .. "\n" .. string.rep("  ", depth) .. "}"
  if #post > 0 then text = text .. " " .. attr(post) end
  return text
end

----------------------------------------------------------------- probing

local function probe_type(name)
  ask("T\t" .. name, ('printf("T\\t%%s\\t%%zu %%zu\\n", "%s", sizeof(%s), _Alignof(%s));'):format(name, name, name))
end

local function probe_members(tname, entries)
  for _, e in ipairs(entries) do
    if e.bitfield then
      ask("B\t" .. tname .. "\t" .. e.path,
        ('{ %s v; memset(&v, 0, sizeof v); v.%s = %s; bits("%s", "%s", &v, sizeof v); }')
          :format(tname, e.path, e.bool and "1" or "-1", tname, e.path))
    else
      ask("F\t" .. tname .. "\t" .. e.path,
        ('printf("F\\t%%s\\t%%s\\t%%zu\\n", "%s", "%s", offsetof(%s, %s));')
          :format(tname, e.path, tname, e.path))
    end
  end
end

local function record_type(spell, entries, rtype)
  local t = {abs = spell, ub = 0, record = true, fam = entries.fam, scalar = false}
  t.decl = function(inner) return spell .. " " .. inner end
  t.ub = rtype and rtype.ub or 100000
  return t
end

-- A rough upper bound of a record's size, so nested arrays of records stay
-- small: counts each generated line at 64 bytes plus nested records.
local function estimate(text)
  local n = 0
  for _ in text:gmatch(";") do n = n + 1 end
  return n * 64
end

------------------------------------------------------------ declarations

local function decl_record()
  local is_union = chance(0.25)
  local tag = fresh(is_union and "U" or "S")
  local entries = {}
  local text = gen_record(0, is_union, tag, entries)
  local spell = (is_union and "union " or "struct ") .. tag
  local typedef
  if chance(0.3) then
    typedef = fresh("TS")
    H("typedef " .. text .. " " .. typedef .. ";")
  else
    H(text .. ";")
  end
  local t = record_type(spell, entries)
  t.ub = estimate(text)
  probe_type(spell)
  probe_members(spell, entries)
  named[#named + 1] = t
  if typedef then
    local tt = record_type(typedef, entries)
    tt.ub = t.ub
    probe_type(typedef)
    named[#named + 1] = tt
  end
  if not entries.fam then
    size_exprs[#size_exprs + 1] = "sizeof(" .. spell .. ")"
    size_exprs[#size_exprs + 1] = "_Alignof(" .. spell .. ")"
    if entries[1] and not entries[1].bitfield and not entries[1].path:find("%[") then
      size_exprs[#size_exprs + 1] = "offsetof(" .. spell .. ", " .. entries[1].path .. ")"
    end
    if chance(0.3) then probe_type(spell .. " *") end
    if chance(0.2) then probe_type(spell .. "[2]") end
  end
end

local function decl_anon_typedef()
  local is_union = chance(0.3)
  local entries = {}
  local text = gen_record(0, is_union, nil, entries)
  local name = fresh("TA")
  H("typedef " .. text .. " " .. name .. ";")
  probe_type(name)
  probe_members(name, entries)
  local t = record_type(name, entries)
  t.ub = estimate(text)
  named[#named + 1] = t
end

local function decl_enum()
  local tag = fresh("E")
  local items, n = {}, R(1, 6)
  local packed = chance(0.15)
  local vals = {}
  local prev
  for i = 1, n do
    local name = tag .. "_" .. i
    local text, v
    local k = R(10)
    if k <= 4 or i == 1 and k <= 5 then
      text, v = expr(3)
      if v and unsigned(v.t) and v.t == "ul" and v.v < 0 then text = nil end
      if v and packed and (v.v < -100000 or v.v > 100000) then text = nil end
    elseif k == 6 and not packed then
      local big = pick({{"0x80000000", 0x80000000, "u"}, {"-1", -1, "i"},
                        {"0x100000000", 0x100000000, "l"}, {"-2147483648", -2147483648, "l"},
                        {"4294967295U", 4294967295, "u"}, {"(1L << 40)", 1 << 40, "l"}})
      text, v = big[1], {v = big[2], t = big[3]}
    end
    local item = name
    -- the implicit next value must not overflow its type (gcc: error)
    if not text and prev and (prev == I32MAX or prev == U32MAX or prev < I32MIN or prev > U32MAX) then
      text, v = tostring(R(0, 9)), {t = "i"}
      v.v = tonumber(text)
    end
    if text then
      item = name .. " = " .. text
      prev = v.v
    else
      prev = (prev or -1) + 1
    end
    items[#items + 1] = item
    vals[#vals + 1] = {name = name, v = prev}
    ask("E\t" .. name, ('printf("E\\t%%s\\t%%lld\\n", "%s", (long long)%s);'):format(name, name))
  end
  local head = "enum " .. (packed and attr({"packed"}) .. " " or "") .. tag
  local text = head .. " { " .. table.concat(items, ", ") .. (chance(0.3) and ", " or " ") .. "}"
  local lo, hi = 0, 0
  for _, c in ipairs(vals) do
    lo = math.min(lo, c.v)
    hi = math.max(hi, c.v)
  end
  local size = 4
  if lo < I32MIN or hi > U32MAX or (lo < 0 and hi > I32MAX) then size = 8 end
  if packed then
    if lo >= -128 and hi <= 255 and not (lo < 0 and hi > 127) then size = 1
    elseif lo >= -32768 and hi <= 65535 and not (lo < 0 and hi > 32767) then size = 2 end
  end
  for _, c in ipairs(vals) do
    if c.v >= I32MIN and c.v <= I32MAX then consts[#consts + 1] = {name = c.name, v = c.v, t = "i"} end
  end
  if chance(0.3) then
    local td = fresh("TE")
    H("typedef " .. text .. " " .. td .. ";")
    probe_type(td)
  else
    H(text .. ";")
  end
  probe_type("enum " .. tag)
  local t = simple("enum " .. tag, size, size, {bits = size * 8})
  named[#named + 1] = t
  bitfield_types[#bitfield_types + 1] = t
end

local function decl_define()
  local name = fresh("N")
  local text, v = expr(2)
  if not v or v.t ~= "i" or v.v < 0 or v.v > 1000 then text, v = tostring(R(1, 8)), {v = 0, t = "i"}; v.v = tonumber(text) end
  H("#define " .. name .. " " .. text)
  consts[#consts + 1] = {name = name, v = v.v, t = "i"}
end

local function decl_typedef()
  local name = fresh("T")
  local k = R(8)
  local t
  if k <= 3 then
    local base = chance(0.7) and int_type() or any_type(true)
    if base.fam then base = int_type() end
    local a = ""
    local noarray = base.noarray
    if chance(0.35) and base.ub > 0 then
      local n = pick({1, 2, 4, 8, 16, 32})
      a = " " .. attr({("aligned(%d)"):format(n)})
      -- gcc rejects arrays whose element size is not a multiple of the
      -- element alignment; sizes of records are only estimated here
      if not (base.scalar and base.ub % n == 0) and n > 1 then noarray = true end
    end
    local q = (base.scalar and chance(0.15)) and "const " or ""
    H("typedef " .. q .. base.decl(name) .. a .. ";")
    t = simple(name, base.ub, nil, {bits = (q == "" and base.bits) or nil, noarray = noarray,
                                   fam = base.fam, record = base.record, scalar = base.scalar})
    if base.bits and q == "" and chance(0.5) then bitfield_types[#bitfield_types + 1] = t end
  elseif k == 4 then
    local f = funcptr_type()
    H("typedef " .. f.decl(name) .. ";")
    t = simple(name, 8, 8)
  elseif k == 5 then
    local el = any_type(true)
    if el.noarray or el.fam or el.ub > 4000 then el = int_type() end
    local text, v = dim()
    H("typedef " .. el.decl(name .. "[" .. text .. "]") .. ";")
    t = simple(name, el.ub * math.max(v, 1), nil, {noarray = el.noarray})
  elseif k == 6 then
    local base = any_type(false)
    H("typedef " .. pointer_to(base).decl(name) .. ";")
    t = simple(name, 8, 8)
  elseif k == 7 then
    local fname = fresh("FN")
    H("typedef int " .. fname .. "(" .. param_list() .. ");")
    H("typedef " .. fname .. " *" .. name .. ";")
    t = simple(name, 8, 8)
  else
    local base = any_type(true)
    if base.fam then base = int_type() end
    H("typedef " .. base.decl(name) .. ";")
    t = simple(name, base.ub, base.align, {bits = base.bits, noarray = base.noarray,
                                          record = base.record, scalar = base.scalar})
  end
  probe_type(name)
  named[#named + 1] = t
end

local function decl_noise()
  local k = R(9)
  if k == 1 then H("/* a comment with struct X { int y; } inside */")
  elseif k == 2 then H("// line comment: typedef int nope;")
  elseif k == 3 then H("extern int " .. fresh("fn") .. "(const char *fmt, ...);")
  elseif k == 4 then H("static inline int " .. fresh("fn") .. "(int x) { return x + 1; }")
  elseif k == 5 then H("extern " .. pick({"int", "double", "struct " .. fresh("Ext") .. " *"}) .. " " .. fresh("var") .. ";")
  elseif k == 6 then H("#if 0\nthis is not C at all { ;\n#endif")
  elseif k == 7 then H("#ifdef __x86_64__\ntypedef int " .. (function() local n = fresh("X64"); named[#named + 1] = simple(n, 4, 4, {bits = 32}); probe_type(n); return n end)() .. ";\n#else\ntypedef char broken;\n#endif")
  elseif k == 8 then
    local tag = fresh("FW")
    H("struct " .. tag .. ";")
    H("typedef struct " .. tag .. " " .. tag .. "_t;")
    H("struct " .. tag .. "_user { struct " .. tag .. " *p; " .. tag .. "_t *q; };")
    H("struct " .. tag .. " { int a; " .. tag .. "_t *self; };")
    probe_type("struct " .. tag)
    probe_type(tag .. "_t")
    probe_members("struct " .. tag, {{path = "a"}, {path = "self"}})
  else H("__extension__ typedef unsigned long long " .. fresh("ull") .. ";") end
end

H("/* generated by tools/abi/gen.lua " .. seed .. " " .. count .. " */")
H("#include <stdint.h>\n#include <stddef.h>\n#include <stdbool.h>\n#include <stdatomic.h>")
H("#include <pthread.h>\n#include <semaphore.h>\n#include <sys/types.h>\n#include <wchar.h>")
for _ = 1, count do
  local k = R(100)
  if k <= 45 then decl_record()
  elseif k <= 55 then decl_anon_typedef()
  elseif k <= 67 then decl_enum()
  elseif k <= 73 then decl_define()
  elseif k <= 92 then decl_typedef()
  else decl_noise() end
end

local function write(name, text)
  local f = assert(io.open(outdir .. "/" .. name, "w"))
  f:write(text)
  f:close()
end

write("abi.h", table.concat(header, "\n") .. "\n")
write("manifest.txt", table.concat(manifest, "\n") .. "\n")
write("probe.c", table.concat({
  "/* generated by tools/abi/gen.lua: gcc's answers to manifest.txt */",
  "#include <stdio.h>", "#include <string.h>", '#include "abi.h"', "",
  "static void bits(const char *t, const char *p, const void *v, size_t n) {",
  "  const unsigned char *b = v;",
  "  long first = -1, last = -1;",
  "  for (size_t i = 0; i < n * 8; i++)",
  "    if ((b[i / 8] >> (i % 8)) & 1) { if (first < 0) first = (long)i; last = (long)i; }",
  '  printf("B\\t%s\\t%s\\t%ld %ld\\n", t, p, first, last);',
  "}", "",
  "int main(void) {",
  table.concat(probe, "\n"),
  "  return 0;", "}", ""}, "\n"))
