/*
 * view.c: the Lua face of the type system.
 *
 *   shm.cdef, shm.typeof, shm.sizeof, shm.alignof, shm.offsetof, shm.struct,
 *   shm.enum_value                              ctypes (userdata shm.ctype)
 *   shm.view(m, t [, off])                      views  (userdata shm.view)
 *   pointer fields, shm.cast                    pointers (userdata shm.pointer)
 *   shm.addressof, shm.string, shm.copy, shm.fill
 *
 * Ownership.  One CUniverse per lua_State lives in the registry (a userdata
 * whose __gc frees it); every CType belongs to it.  Each CType that reaches
 * Lua gets exactly one shm.ctype userdata, cached for good in a registry
 * table keyed by the CType's address, and that userdata holds the type's
 * accessor table (TypeInfo) in Lua-allocated memory.  Views and pointers
 * keep raw pointers to a TypeInfo and its CType: both live until lua_close.
 * A view's only uservalue is its mapping userdata, so the Mapping stays
 * allocated (and mapped, unless unmapped explicitly) while the view lives.
 *
 * Speed.  A field access is the one hot path of the project: __index and
 * __newindex take the view with lua_touserdata (checked by its length and a
 * magic word, never luaL_checkudata), the key as the char pointer of the
 * Lua string (short strings are interned, so a field name reaching __index
 * is always the same pointer as the name anchored when the TypeInfo was
 * built), find that pointer in its first-probe slot of a hash sized so that
 * no two fields share a slot, and switch on the slot's accessor kind.  Those
 * four Lua API calls are the floor of this design (bench/noop.c measures it;
 * the rest of the path costs a few percent on top).  Anything else (names
 * longer than Lua's short strings, aggregates, strings, pointers, bit-fields,
 * values out of range, errors) takes the general path: a probing hash, then
 * strcmp, then one switch over every accessor kind.
 *
 * Safety.  Every access checks, at the time of the access, that the mapping
 * is live and that its current protection allows it, and afterwards that no
 * SIGBUS turned it dead (mapping.c's handler clears m->addr).  Loads and
 * stores go through memcpy: fields of packed records may be unaligned.
 * Nothing reads or writes memory outside a live mapping of this process:
 * views are bounds-checked when made, pointers whenever followed.
 *
 * 64-bit integers.  Lua integers are 64-bit signed.  A uint64_t field reads
 * as the Lua integer with the same bit pattern (values >= 2^63 read as
 * negative numbers, as string.unpack("J") does; compare with math.ult).
 * Writing a 64-bit field accepts any Lua integer (its bit pattern) and
 * integral floats in [0, 2^64) (uint64_t) or [-2^63, 2^63) (int64_t).
 */
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "ctype.h"
#include "shm.h"

#define VIEW_MT "shm.view"
#define PTR_MT "shm.pointer"
#define CTYPE_MT "shm.ctype"
#define UNIVERSE_KEY "shm.universe"   /* registry: the Universe userdata    */
#define CTYPES_KEY "shm.ctypes"       /* registry: CType* -> shm.ctype       */
#define DECLS_KEY "shm.decls"         /* registry: decl string -> shm.ctype  */
#define NAMES_KEY "shm.fieldnames"    /* registry: anchors field-name strings */

#define VIEW_MAGIC 0x56494557u   /* "VIEW" */
#define PTR_MAGIC 0x50545221u    /* "PTR!" */
#define CTYPE_MAGIC 0x43545950u  /* "CTYP" */

#define SHOW_MAX 16              /* array elements tostring shows          */
#define SHOW_DEPTH 8             /* nesting tostring shows                 */

#define unlikely(x) __builtin_expect(!!(x), 0)
#define likely(x) __builtin_expect(!!(x), 1)

/* ------------------------------------------------------------------ types */

/* What an accessor does: one case of the switch in val_read/val_store. */
enum {
  K_I8, K_U8, K_I16, K_U16, K_I32, K_U32, K_I64, K_U64,
  K_BOOL, K_F32, K_F64, K_F80,
  K_CHARS,   /* char[N]: a Lua string up to the first NUL                  */
  K_PTR,     /* a pointer: shm.pointer, nil for NULL                       */
  K_BITS,    /* a bit-field                                                */
  K_AGG,     /* struct, union or array: a sub-view                         */
  K_BAD      /* void, functions, odd sizes: cannot be read or written      */
};

#define F_SIGNED 1   /* K_BITS: sign-extend                               */
#define F_BOOL 2     /* K_BITS: a _Bool bit-field, read as a boolean      */

struct TypeInfo;

/* How to read and write one value: a field, an array element, a target. */
typedef struct Acc {
  const char *key;          /* anchored field name; NULL for elements     */
  const CType *type;        /* the value's type                           */
  size_t off;               /* from the start of the enclosing object     */
  size_t size;              /* bytes touched                              */
  unsigned char kind, flags, bitoff, bitwidth;
  struct TypeInfo *sub;     /* K_AGG: info of the type, made lazily        */
} Acc;

/*
 * The hot path's view of a field: what __index/__newindex need for numbers,
 * in one 16-byte slot of a hash on the key pointer, so that finding and
 * accessing a field is one dependent load.  Fields the fast path does not
 * handle (aggregates, strings, pointers, bit-fields, offsets past 4 GiB)
 * have kind K_BAD here and take the general path.
 */
typedef struct Slot {
  const char *key;          /* the anchored name; slot_empty when unused  */
  uint32_t off;
  unsigned char kind;
} Slot;

static const char slot_empty[1];   /* never the address of a Lua string */

/* Per CType, built once: the accessors of a record, or of an array element. */
typedef struct TypeInfo {
  const CType *t;
  Acc self;                 /* a value of type t at offset 0              */
  Acc elem;                 /* arrays: one element at offset 0            */
  Acc *acc;                 /* records: named fields, in order            */
  size_t nacc;
  const Acc **slot;         /* records: hash on the key pointer           */
  Slot *fast;               /* records: the same hash, for the hot path   */
  size_t mask;
  unsigned shift;
  int built;
} TypeInfo;

typedef struct CTypeObj {
  uint32_t magic;
  TypeInfo info;
} CTypeObj;

typedef struct View {
  uint32_t magic;
  unsigned shift;           /* records: ti->shift and ti->fast, copied    */
  const Slot *fast;         /* here to save a load; NULL for arrays       */
  Mapping *m;               /* kept alive by the uservalue                */
  size_t off;               /* of the view in the mapping                 */
  TypeInfo *ti;
  size_t count;             /* arrays: elements (flexible: what fits)     */
} View;

typedef struct Pointer {
  uint32_t magic;
  uintptr_t addr;           /* never 0: NULL reads as nil                 */
  const CType *ptype;       /* the pointer type; ptype->elem the target   */
  TypeInfo *ti;             /* the target's, made when first followed     */
} Pointer;

typedef struct Universe {
  CUniverse *cu;
} Universe;

/* --------------------------------------------------------- the universe */

static int universe_gc(lua_State *L) {
  Universe *u = (Universe *)lua_touserdata(L, 1);
  if (u->cu != NULL) cu_free(u->cu);
  u->cu = NULL;
  return 0;
}

static CUniverse *universe(lua_State *L) {
  Universe *u;
  lua_getfield(L, LUA_REGISTRYINDEX, UNIVERSE_KEY);
  u = (Universe *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (u == NULL || u->cu == NULL) luaL_error(L, "shm: the type universe is gone");
  return u->cu;
}

/* --------------------------------------------------- accessor tables */

/* "char", "signed char", "unsigned char", qualifiers aside: text. */
static int is_char_type(const CType *t) {
  const char *n = t->name;
  if (t->kind != CK_INT || t->size != 1 || n == NULL) return 0;
  for (;;) {
    if (strncmp(n, "const ", 6) == 0) n += 6;
    else if (strncmp(n, "volatile ", 9) == 0) n += 9;
    else break;
  }
  return strcmp(n, "char") == 0 || strcmp(n, "signed char") == 0 ||
         strcmp(n, "unsigned char") == 0;
}

/* Fills `a` for a value of type t at off (bit-field if bitwidth > 0). */
static void acc_init(Acc *a, const CType *t, size_t off, unsigned bitoff,
                     unsigned bitwidth) {
  memset(a, 0, sizeof *a);
  a->type = t;
  a->off = off;
  a->size = t->size;
  a->kind = K_BAD;
  if (bitwidth > 0) {
    a->kind = K_BITS;
    a->bitoff = (unsigned char)bitoff;
    a->bitwidth = (unsigned char)bitwidth;
    a->size = (bitoff + bitwidth + 7) / 8;
    if (t->kind == CK_BOOL) a->flags = F_BOOL;
    else if (t->is_signed) a->flags = F_SIGNED;
    if (bitwidth > 64 || a->size > 9) a->kind = K_BAD;
    return;
  }
  switch (t->kind) {
  case CK_BOOL:
    if (t->size == 1) a->kind = K_BOOL;
    break;
  case CK_INT: case CK_ENUM:
    switch (t->size) {
    case 1: a->kind = t->is_signed ? K_I8 : K_U8; break;
    case 2: a->kind = t->is_signed ? K_I16 : K_U16; break;
    case 4: a->kind = t->is_signed ? K_I32 : K_U32; break;
    case 8: a->kind = t->is_signed ? K_I64 : K_U64; break;
    default: break;
    }
    break;
  case CK_FLOAT:
    if (t->size == 4) a->kind = K_F32;
    else if (t->size == 8) a->kind = K_F64;
    else if (t->size == sizeof(long double)) a->kind = K_F80;
    break;
  case CK_POINTER:
    if (t->size == sizeof(uintptr_t)) a->kind = K_PTR;
    break;
  case CK_ARRAY:
    if (t->elem != NULL && is_char_type(t->elem) && !t->flexible)
      a->kind = K_CHARS;
    else if (t->elem != NULL)
      a->kind = K_AGG;
    break;
  case CK_STRUCT: case CK_UNION:
    a->kind = K_AGG;
    break;
  default:
    break;
  }
}

/* The anchored copy of `name`: the pointer every short string equal to it has. */
static const char *anchor_name(lua_State *L, const char *name) {
  const char *k;
  lua_getfield(L, LUA_REGISTRYINDEX, NAMES_KEY);
  lua_pushstring(L, name);
  k = lua_tostring(L, -1);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  return k;
}

static size_t hash_key(const char *k, unsigned shift) {
  return (size_t)(((uint64_t)(uintptr_t)k * 0x9E3779B97F4A7C15ull) >> shift);
}

/* Named fields of record t, anonymous members flattened, from base. */
static size_t count_fields(const CType *t) {
  size_t i, n = 0;
  for (i = 0; i < t->nfields; i++) {
    const CField *f = &t->fields[i];
    if (f->name != NULL) n++;
    else if (f->type->kind == CK_STRUCT || f->type->kind == CK_UNION)
      n += count_fields(f->type);
  }
  return n;
}

static void flatten(lua_State *L, TypeInfo *ti, const CType *t, size_t base) {
  size_t i;
  for (i = 0; i < t->nfields; i++) {
    const CField *f = &t->fields[i];
    if (f->name != NULL) {
      Acc *a = &ti->acc[ti->nacc++];
      acc_init(a, f->type, base + f->offset, f->bit_offset, f->bit_width);
      a->key = anchor_name(L, f->name);
    } else if (f->type->kind == CK_STRUCT || f->type->kind == CK_UNION) {
      flatten(L, ti, f->type, base + f->offset);
    }
  }
}

/*
 * Builds the TypeInfo of the ctype object at the top of the stack (records:
 * the accessor array and the hash, userdata kept in the object's
 * uservalues).  Raises for an incomplete record, leaving it unbuilt so that
 * a later completion (a cdef defining the struct) can still be used.
 */
static void info_build(lua_State *L, CTypeObj *o) {
  TypeInfo *ti = &o->info;
  const CType *t = ti->t;
  acc_init(&ti->self, t, 0, 0, 0);
  if (t->kind == CK_ARRAY && t->elem != NULL) {
    acc_init(&ti->elem, t->elem, 0, 0, 0);
    ti->built = 1;
    return;
  }
  if (t->kind == CK_STRUCT || t->kind == CK_UNION) {
    size_t n, nslot, i;
    unsigned bits;
    if (!t->complete) luaL_error(L, "%s is an incomplete type", t->name);
    n = count_fields(t);
    ti->acc = (Acc *)lua_newuserdatauv(L, (n ? n : 1) * sizeof(Acc), 0);
    ti->nacc = 0;
    flatten(L, ti, t, 0);
    lua_setiuservalue(L, -2, 1);
    /* the smallest table, at most half full, in which every field has its
     * own first-probe slot (the fast path looks nowhere else); past 64
     * slots a field, with linear probing the general path finds it */
    for (nslot = 4, bits = 2; nslot < 2 * n; nslot <<= 1) bits++;
    for (;; nslot <<= 1, bits++) {
      int clash = 0;
      unsigned char *seen;
      if (nslot >= 64 * (n ? n : 1) || bits >= 24) break;
      seen = (unsigned char *)calloc(nslot, 1);
      if (seen == NULL) break;
      for (i = 0; i < n && !clash; i++) {
        size_t h = hash_key(ti->acc[i].key, 64 - bits);
        clash = seen[h]++;
      }
      free(seen);
      if (!clash) break;
    }
    ti->slot = (const Acc **)lua_newuserdatauv(L, nslot * sizeof(Acc *), 0);
    memset(ti->slot, 0, nslot * sizeof(Acc *));
    ti->mask = nslot - 1;
    ti->shift = 64 - bits;
    for (i = 0; i < ti->nacc; i++) {
      size_t h = hash_key(ti->acc[i].key, ti->shift);
      while (ti->slot[h] != NULL) h = (h + 1) & ti->mask;
      ti->slot[h] = &ti->acc[i];
    }
    lua_setiuservalue(L, -2, 2);
    ti->fast = (Slot *)lua_newuserdatauv(L, nslot * sizeof(Slot), 0);
    for (i = 0; i < nslot; i++) {
      const Acc *a = ti->slot[i];
      int direct = a != NULL && a->off <= UINT32_MAX &&
                   hash_key(a->key, ti->shift) == i &&
                   (a->kind <= K_F64);
      ti->fast[i].key = a != NULL && direct ? a->key : slot_empty;
      ti->fast[i].off = direct ? (uint32_t)a->off : 0;
      ti->fast[i].kind = direct ? a->kind : K_BAD;
    }
    lua_setiuservalue(L, -2, 3);
  }
  ti->built = 1;
}

/* Pushes the one shm.ctype object of t, making it the first time. */
static CTypeObj *push_ctype(lua_State *L, const CType *t) {
  CTypeObj *o;
  lua_getfield(L, LUA_REGISTRYINDEX, CTYPES_KEY);
  if (lua_rawgetp(L, -1, t) == LUA_TUSERDATA) {
    o = (CTypeObj *)lua_touserdata(L, -1);
    lua_remove(L, -2);
    return o;
  }
  lua_pop(L, 1);
  o = (CTypeObj *)lua_newuserdatauv(L, sizeof(CTypeObj), 3);
  memset(o, 0, sizeof *o);
  o->magic = CTYPE_MAGIC;
  o->info.t = t;
  luaL_setmetatable(L, CTYPE_MT);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, -3, t);
  lua_remove(L, -2);
  return o;
}

/* The built TypeInfo of t (stack unchanged); raises for incomplete records. */
static TypeInfo *info_of(lua_State *L, const CType *t) {
  CTypeObj *o = push_ctype(L, t);
  if (!o->info.built) info_build(L, o);
  lua_pop(L, 1);
  return &o->info;
}

static CTypeObj *to_ctype(lua_State *L, int idx) {
  CTypeObj *o = (CTypeObj *)lua_touserdata(L, idx);
  if (o != NULL && lua_rawlen(L, idx) == sizeof(CTypeObj) &&
      o->magic == CTYPE_MAGIC && luaL_testudata(L, idx, CTYPE_MT) != NULL)
    return o;
  return NULL;
}

/*
 * The view this thread validated last.  A full userdata at that address is
 * that view until the view's __gc (view_gc) runs: Lua frees a finalized
 * object's memory only after its finalizer, so the address cannot be reused
 * by anything else before view_gc forgets it.  The hot paths then skip
 * lua_rawlen and the magic (about 8% of a field access).  view_gc also
 * clears the magic, so a view resurrected by another object's finalizer
 * fails the full check instead of becoming "last" again.
 */
static __thread const View *last_view;

static inline __attribute__((always_inline)) View *to_view(lua_State *L,
                                                           int idx) {
  View *v = (View *)lua_touserdata(L, idx);
  if (likely(v == last_view && v != NULL)) return v;
  if (v != NULL && lua_rawlen(L, idx) == sizeof(View) && v->magic == VIEW_MAGIC) {
    last_view = v;
    return v;
  }
  return NULL;
}

static int view_gc(lua_State *L) {
  View *v = (View *)lua_touserdata(L, 1);
  if (v != NULL && lua_rawlen(L, 1) == sizeof(View)) {
    if (v == last_view) last_view = NULL;
    v->magic = 0;
  }
  return 0;
}

static Pointer *to_pointer(lua_State *L, int idx) {
  Pointer *p = (Pointer *)lua_touserdata(L, idx);
  if (p != NULL && lua_rawlen(L, idx) == sizeof(Pointer) && p->magic == PTR_MAGIC)
    return p;
  return NULL;
}

/*
 * A type argument: a shm.ctype, or a C type name given to cu_typeof (cached
 * per string: a name that resolved once always names the same CType).
 * Raises "typeof: ..." when the name is not a type.
 */
static const CType *check_type(lua_State *L, int idx) {
  CTypeObj *o = to_ctype(L, idx);
  const char *decl;
  const CType *t;
  char err[256];
  if (o != NULL) return o->info.t;
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_typeerror(L, idx, "ctype or C type name");
  decl = lua_tostring(L, idx);
  lua_getfield(L, LUA_REGISTRYINDEX, DECLS_KEY);
  lua_pushvalue(L, idx);
  if (lua_rawget(L, -2) == LUA_TUSERDATA) {
    t = ((CTypeObj *)lua_touserdata(L, -1))->info.t;
    lua_pop(L, 2);
    return t;
  }
  lua_pop(L, 1);
  err[0] = '\0';
  t = cu_typeof(universe(L), decl, err, sizeof err);
  if (t == NULL) luaL_error(L, "typeof: %s", err[0] ? err : decl);
  lua_pushvalue(L, idx);
  push_ctype(L, t);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  return t;
}

/* ------------------------------------------------------- error messages */

/* "field 'x'", "element [3]" or "value": what a value error is about. */
static void push_what(lua_State *L, const Acc *a, int keyidx) {
  if (a->key != NULL)
    lua_pushfstring(L, "field '%s'", a->key);
  else if (keyidx != 0 && lua_isinteger(L, keyidx))
    lua_pushfstring(L, "element [%I]", (lua_Integer)lua_tointeger(L, keyidx));
  else
    lua_pushliteral(L, "value");
}

/* Raises "<what> (<type>) expects <expects>, got <value>". */
static int bad_value(lua_State *L, const Acc *a, int keyidx, int validx,
                     const char *expects) {
  const char *what, *got;
  validx = lua_absindex(L, validx);
  push_what(L, a, keyidx);
  what = lua_tostring(L, -1);
  if (lua_type(L, validx) == LUA_TNUMBER)
    got = luaL_tolstring(L, validx, NULL);
  else if (lua_type(L, validx) == LUA_TSTRING && lua_rawlen(L, validx) <= 32)
    got = lua_pushfstring(L, "string \"%s\"", lua_tostring(L, validx));
  else if (lua_type(L, validx) == LUA_TSTRING)
    got = lua_pushfstring(L, "a string of %I bytes",
                          (lua_Integer)lua_rawlen(L, validx));
  else
    got = luaL_typename(L, validx);
  return luaL_error(L, "%s (%s) expects %s, got %s", what, a->type->name,
                    expects, got);
}

static const char *prot_problem(const Mapping *m, int prot) {
  if (m->addr == NULL)
    return m->base != NULL ? "mapping faulted (SIGBUS: past the end of its object)"
                           : "mapping is unmapped";
  return prot == PROT_WRITE ? "mapping is not writable"
                            : "mapping is not readable";
}

static int view_dead(lua_State *L, const View *v, int prot) {
  return luaL_error(L, "view of %s: %s", v->ti->t->name, prot_problem(v->m, prot));
}

static int faulted_error(lua_State *L, const CType *t) {
  return luaL_error(L, "view of %s: SIGBUS: the mapping reaches past the end "
                    "of its object (shorter than the mapping, or truncated "
                    "since); the mapping is now unusable", t->name);
}

/* ------------------------------------------------------------ values */

static void push_pointer(lua_State *L, uintptr_t addr, const CType *ptype,
                         TypeInfo *ti) {
  Pointer *p = (Pointer *)lua_newuserdatauv(L, sizeof(Pointer), 0);
  p->magic = PTR_MAGIC;
  p->addr = addr;
  p->ptype = ptype;
  p->ti = ti;
  luaL_setmetatable(L, PTR_MT);
}

/*
 * Pushes a new view of ti's type at offset off of mapping m; the mapping
 * userdata is at stack index `anchor`.  count: elements of an array view.
 */
static View *push_view(lua_State *L, Mapping *m, size_t off, TypeInfo *ti,
                       size_t count, int anchor) {
  View *v;
  anchor = lua_absindex(L, anchor);
  v = (View *)lua_newuserdatauv(L, sizeof(View), 1);
  v->magic = VIEW_MAGIC;
  v->m = m;
  v->off = off;
  v->ti = ti;
  v->count = count;
  v->fast = ti->fast;
  v->shift = ti->shift;
  luaL_setmetatable(L, VIEW_MT);
  lua_pushvalue(L, anchor);
  lua_setiuservalue(L, -2, 1);
  return v;
}

/* Elements of an array of type t at offset off of m (flexible: what fits). */
static size_t array_count(const CType *t, const Mapping *m, size_t off) {
  size_t es;
  if (!t->flexible) return t->count;
  es = t->elem != NULL ? t->elem->size : 0;
  if (es == 0 || off >= m->size) return 0;
  return (m->size - off) / es;
}

/*
 * The sub-view for the K_AGG value `a` at offset off of m.  anchor > 0: the
 * stack index of a view (its uservalue is the mapping); anchor == 0: find
 * the mapping userdata with shm_pushmapping.
 */
static void push_sub(lua_State *L, Acc *a, Mapping *m, size_t off, int anchor) {
  if (a->sub == NULL) a->sub = info_of(L, a->type);
  if (anchor > 0) lua_getiuservalue(L, anchor, 1);
  else shm_pushmapping(L, m);
  if (lua_isnil(L, -1)) luaL_error(L, "%s: mapping is unmapped", a->type->name);
  push_view(L, m, off, a->sub, array_count(a->type, m, off), -1);
  lua_remove(L, -2);
}

typedef unsigned __int128 u128;

static u128 bits_load(const unsigned char *p, size_t n) {
  unsigned char b[16] = {0};
  u128 x;
  memcpy(b, p, n);
  memcpy(&x, b, sizeof x);   /* little-endian */
  return x;
}

static void bits_store(unsigned char *p, size_t n, u128 x) {
  unsigned char b[16];
  memcpy(b, &x, sizeof x);
  memcpy(p, b, n);
}

/*
 * Pushes the value `a` describes at byte offset off of the live, readable
 * mapping m (the caller checked); raises afterwards if the access faulted.
 * anchor: as for push_sub.
 */
static int val_read(lua_State *L, Acc *a, Mapping *m, size_t off, int anchor) {
  const unsigned char *p = m->addr + off + a->off;
  switch (a->kind) {
  case K_I8:  { int8_t x;   memcpy(&x, p, 1); lua_pushinteger(L, x); break; }
  case K_U8:  { uint8_t x;  memcpy(&x, p, 1); lua_pushinteger(L, x); break; }
  case K_I16: { int16_t x;  memcpy(&x, p, 2); lua_pushinteger(L, x); break; }
  case K_U16: { uint16_t x; memcpy(&x, p, 2); lua_pushinteger(L, x); break; }
  case K_I32: { int32_t x;  memcpy(&x, p, 4); lua_pushinteger(L, x); break; }
  case K_U32: { uint32_t x; memcpy(&x, p, 4); lua_pushinteger(L, x); break; }
  case K_I64: { int64_t x;  memcpy(&x, p, 8); lua_pushinteger(L, x); break; }
  case K_U64: { uint64_t x; memcpy(&x, p, 8);
                lua_pushinteger(L, (lua_Integer)x); break; }
  case K_BOOL: lua_pushboolean(L, *p != 0); break;
  case K_F32: { float x;  memcpy(&x, p, 4); lua_pushnumber(L, x); break; }
  case K_F64: { double x; memcpy(&x, p, 8); lua_pushnumber(L, x); break; }
  case K_F80: { long double x; memcpy(&x, p, sizeof x);
                lua_pushnumber(L, (lua_Number)x); break; }
  case K_CHARS: {
    const unsigned char *z = (const unsigned char *)memchr(p, 0, a->size);
    lua_pushlstring(L, (const char *)p, z != NULL ? (size_t)(z - p) : a->size);
    break;
  }
  case K_PTR: {
    uintptr_t x;
    memcpy(&x, p, sizeof x);
    if (shm_faulted(m)) return faulted_error(L, a->type);
    if (x == 0) lua_pushnil(L);
    else push_pointer(L, x, a->type, NULL);
    return 1;
  }
  case K_BITS: {
    u128 raw = bits_load(p, a->size) >> a->bitoff;
    uint64_t mask = a->bitwidth == 64 ? ~(uint64_t)0
                                      : (((uint64_t)1 << a->bitwidth) - 1);
    uint64_t x = (uint64_t)raw & mask;
    if (shm_faulted(m)) return faulted_error(L, a->type);
    if (a->flags & F_BOOL) lua_pushboolean(L, x != 0);
    else if ((a->flags & F_SIGNED) && a->bitwidth < 64 &&
             (x >> (a->bitwidth - 1)) != 0)
      lua_pushinteger(L, (lua_Integer)(x | ~mask));
    else lua_pushinteger(L, (lua_Integer)x);
    return 1;
  }
  case K_AGG:
    push_sub(L, a, m, off + a->off, anchor);
    return 1;
  default:
    return luaL_error(L, "%s: a value of type %s cannot be read",
                      a->key ? a->key : "value", a->type->name);
  }
  if (unlikely(shm_faulted(m))) return faulted_error(L, a->type);
  return 1;
}

/* An integer for a field of range [lo, hi]; raises naming the field. */
static lua_Integer want_int(lua_State *L, const Acc *a, int keyidx, int validx,
                            lua_Integer lo, lua_Integer hi) {
  int ok = 0;
  lua_Integer n = lua_tointegerx(L, validx, &ok);
  if (!ok || n < lo || n > hi) {
    char ex[96];
    snprintf(ex, sizeof ex, "an integer in %lld..%lld", (long long)lo,
             (long long)hi);
    bad_value(L, a, keyidx, validx, ex);
  }
  return n;
}

/* A 64-bit pattern: any integer, or an integral float in range. */
static uint64_t want_int64(lua_State *L, const Acc *a, int keyidx, int validx,
                           int is_signed) {
  int ok;
  lua_Integer n = lua_tointegerx(L, validx, &ok);
  lua_Number f;
  if (ok && (is_signed || n >= 0 || lua_isinteger(L, validx)))
    return (uint64_t)n;
  f = lua_tonumberx(L, validx, &ok);
  if (ok) {
    if (is_signed && f >= -9223372036854775808.0 && f < 9223372036854775808.0 &&
        (lua_Number)(int64_t)f == f)
      return (uint64_t)(int64_t)f;
    if (!is_signed && f >= 0 && f < 18446744073709551616.0 &&
        (lua_Number)(uint64_t)f == f)
      return (uint64_t)f;
  }
  bad_value(L, a, keyidx, validx, is_signed ?
            "an integer (or an integral float in [-2^63, 2^63))" :
            "an integer (its 64-bit pattern) or an integral float in [0, 2^64)");
  return 0;
}

static lua_Number want_number(lua_State *L, const Acc *a, int keyidx,
                              int validx) {
  int ok;
  lua_Number f = lua_tonumberx(L, validx, &ok);
  if (!ok) bad_value(L, a, keyidx, validx, "a number");
  return f;
}

static void fill_table(lua_State *L, Acc *a, unsigned char *p, int tidx);

/* Source bytes for an aggregate assigned from a view of the same type. */
static const unsigned char *agg_source(lua_State *L, const Acc *a, int keyidx,
                                       int validx) {
  View *s = to_view(L, validx);
  const CType *st;
  if (s == NULL) {
    char ex[160];
    snprintf(ex, sizeof ex, "a table or a view of %s", a->type->name);
    bad_value(L, a, keyidx, validx, ex);
  }
  st = s->ti->t;
  if (st != a->type && (st->size != a->type->size || st->kind != a->type->kind ||
                        strcmp(st->name, a->type->name) != 0)) {
    char ex[160];
    snprintf(ex, sizeof ex, "a table or a view of %s", a->type->name);
    push_what(L, a, keyidx);
    luaL_error(L, "%s (%s) expects %s, got a view of %s", lua_tostring(L, -1),
               a->type->name, ex, st->name);
  }
  if (s->m->addr == NULL || !(s->m->prot & PROT_READ)) view_dead(L, s, PROT_READ);
  return s->m->addr + s->off;
}

/*
 * Stores the Lua value at validx into p (a->off already added) as `a`
 * describes.  p is either live memory the caller checked for writing, or
 * (staged) a zeroed scratch buffer, the only case in which a table may be
 * given for an aggregate.  Converts and checks first, then stores.
 */
static void val_store(lua_State *L, Acc *a, unsigned char *p, int keyidx,
                      int validx, int staged) {
  switch (a->kind) {
  case K_I8:  { int8_t x = (int8_t)want_int(L, a, keyidx, validx, INT8_MIN, INT8_MAX);
                memcpy(p, &x, 1); break; }
  case K_U8:  { uint8_t x = (uint8_t)want_int(L, a, keyidx, validx, 0, UINT8_MAX);
                memcpy(p, &x, 1); break; }
  case K_I16: { int16_t x = (int16_t)want_int(L, a, keyidx, validx, INT16_MIN, INT16_MAX);
                memcpy(p, &x, 2); break; }
  case K_U16: { uint16_t x = (uint16_t)want_int(L, a, keyidx, validx, 0, UINT16_MAX);
                memcpy(p, &x, 2); break; }
  case K_I32: { int32_t x = (int32_t)want_int(L, a, keyidx, validx, INT32_MIN, INT32_MAX);
                memcpy(p, &x, 4); break; }
  case K_U32: { uint32_t x = (uint32_t)want_int(L, a, keyidx, validx, 0, UINT32_MAX);
                memcpy(p, &x, 4); break; }
  case K_I64: { uint64_t x = want_int64(L, a, keyidx, validx, 1);
                memcpy(p, &x, 8); break; }
  case K_U64: { uint64_t x = want_int64(L, a, keyidx, validx, 0);
                memcpy(p, &x, 8); break; }
  case K_BOOL:
    if (lua_type(L, validx) != LUA_TBOOLEAN)
      bad_value(L, a, keyidx, validx, "a boolean");
    *p = (unsigned char)lua_toboolean(L, validx);
    break;
  case K_F32: {
    lua_Number f = want_number(L, a, keyidx, validx);
    float x;
    if (!isinf(f) && (f > FLT_MAX || f < -FLT_MAX))
      bad_value(L, a, keyidx, validx, "a number within float range");
    x = (float)f;
    memcpy(p, &x, 4);
    break;
  }
  case K_F64: { double x = (double)want_number(L, a, keyidx, validx);
                memcpy(p, &x, 8); break; }
  case K_F80: { long double x = (long double)want_number(L, a, keyidx, validx);
                memcpy(p, &x, sizeof x); break; }
  case K_CHARS: {
    size_t n;
    const char *s;
    if (lua_type(L, validx) != LUA_TSTRING ||
        (lua_tolstring(L, validx, &n), n > a->size)) {
      char ex[96];
      snprintf(ex, sizeof ex, "a string of at most %zu bytes", a->size);
      bad_value(L, a, keyidx, validx, ex);
    }
    s = lua_tolstring(L, validx, &n);
    memcpy(p, s, n);
    memset(p + n, 0, a->size - n);
    break;
  }
  case K_PTR: {
    uintptr_t x = 0;
    if (!lua_isnil(L, validx) && !shm_toaddress(L, validx, &x))
      bad_value(L, a, keyidx, validx,
                "an address (nil, integer, pointer, view or mapping)");
    memcpy(p, &x, sizeof x);
    break;
  }
  case K_BITS: {
    uint64_t mask = a->bitwidth == 64 ? ~(uint64_t)0
                                      : (((uint64_t)1 << a->bitwidth) - 1);
    uint64_t x;
    u128 raw;
    if (a->flags & F_BOOL) {
      if (lua_type(L, validx) != LUA_TBOOLEAN)
        bad_value(L, a, keyidx, validx, "a boolean");
      x = (uint64_t)lua_toboolean(L, validx);
    } else if (a->bitwidth == 64) {
      x = want_int64(L, a, keyidx, validx, a->flags & F_SIGNED);
    } else if (a->flags & F_SIGNED) {
      lua_Integer lim = (lua_Integer)1 << (a->bitwidth - 1);
      x = (uint64_t)want_int(L, a, keyidx, validx, -lim, lim - 1) & mask;
    } else {
      x = (uint64_t)want_int(L, a, keyidx, validx, 0, (lua_Integer)mask);
    }
    raw = bits_load(p, a->size);
    raw &= ~((u128)mask << a->bitoff);
    raw |= (u128)x << a->bitoff;
    bits_store(p, a->size, raw);
    break;
  }
  case K_AGG:
    if (lua_type(L, validx) == LUA_TTABLE && staged) {
      fill_table(L, a, p, validx);
    } else {
      const unsigned char *src = agg_source(L, a, keyidx, validx);
      memmove(p, src, a->size);
    }
    break;
  default:
    luaL_error(L, "%s: a value of type %s cannot be written",
               a->key ? a->key : "value", a->type->name);
  }
}

static Acc *rec_find(const TypeInfo *ti, const char *k);
static Acc *rec_find_slow(const TypeInfo *ti, const char *k);

/*
 * Fills the zeroed scratch p (the aggregate `a` describes) from the table at
 * tidx: records by field name, arrays from a Lua list (element 0 is t[1]).
 */
static void fill_table(lua_State *L, Acc *a, unsigned char *p, int tidx) {
  TypeInfo *ti;
  tidx = lua_absindex(L, tidx);
  if (a->sub == NULL) a->sub = info_of(L, a->type);
  ti = a->sub;
  luaL_checkstack(L, 4, "nested too deeply");
  if (a->type->kind == CK_ARRAY) {
    size_t i, n = lua_rawlen(L, tidx), es = ti->elem.size;
    if (a->type->flexible)
      luaL_error(L, "%s: a flexible array cannot be assigned", a->type->name);
    if (n > a->type->count)
      luaL_error(L, "%s: %I elements given for %s", a->key ? a->key : "value",
                 (lua_Integer)n, a->type->name);
    for (i = 0; i < n; i++) {
      lua_pushinteger(L, (lua_Integer)i);
      lua_rawgeti(L, tidx, (lua_Integer)i + 1);
      val_store(L, &ti->elem, p + i * es, lua_gettop(L) - 1, lua_gettop(L), 1);
      lua_pop(L, 2);
    }
    return;
  }
  lua_pushnil(L);
  while (lua_next(L, tidx) != 0) {
    Acc *f = NULL;
    if (lua_type(L, -2) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -2);
      f = rec_find(ti, k);
      if (f == NULL) f = rec_find_slow(ti, k);
      if (f == NULL) luaL_error(L, "%s has no field '%s'", ti->t->name, k);
    } else {
      luaL_error(L, "%s: field names expected in the table, got a %s key",
                 ti->t->name, luaL_typename(L, -2));
    }
    val_store(L, f, p + f->off, lua_gettop(L) - 1, lua_gettop(L), 1);
    lua_pop(L, 1);
  }
}

/*
 * Stores the value at validx into the value `a` at offset off of m, which
 * the caller has checked to be live and writable.  A table for an aggregate
 * is staged in a zeroed scratch buffer first (C compound-literal semantics:
 * fields not named become zero) and copied only once all of it converted,
 * re-checking the mapping since building the buffer may have run the GC.
 */
static void val_write(lua_State *L, Acc *a, Mapping *m, size_t off, int keyidx,
                      int validx, const CType *owner) {
  if (a->kind == K_AGG && lua_type(L, validx) == LUA_TTABLE) {
    unsigned char *buf = (unsigned char *)lua_newuserdatauv(L, a->size, 0);
    memset(buf, 0, a->size);
    val_store(L, a, buf, keyidx, validx, 1);
    if (m->addr == NULL || !(m->prot & PROT_WRITE))
      luaL_error(L, "view of %s: %s", owner->name, prot_problem(m, PROT_WRITE));
    memcpy(m->addr + off + a->off, buf, a->size);
    lua_pop(L, 1);
  } else {
    val_store(L, a, m->addr + off + a->off, keyidx, validx, 0);
  }
  if (unlikely(shm_faulted(m))) faulted_error(L, owner);
}

/* ------------------------------------------------------- field lookup */

static inline __attribute__((always_inline)) Acc *
rec_find(const TypeInfo *ti, const char *k) {
  size_t h = hash_key(k, ti->shift);
  const Acc *a;
  while ((a = ti->slot[h]) != NULL) {
    if (a->key == k) return (Acc *)a;
    h = (h + 1) & ti->mask;
  }
  return NULL;
}

/* For names that are not the anchored pointer (long strings). */
static Acc *rec_find_slow(const TypeInfo *ti, const char *k) {
  size_t i;
  for (i = 0; i < ti->nacc; i++)
    if (strcmp(ti->acc[i].key, k) == 0) return &ti->acc[i];
  return NULL;
}

static int no_field(lua_State *L, const TypeInfo *ti, int keyidx) {
  if (lua_type(L, keyidx) == LUA_TSTRING)
    return luaL_error(L, "%s has no field '%s'", ti->t->name,
                      lua_tostring(L, keyidx));
  return luaL_error(L, "%s: field name expected, got %s", ti->t->name,
                    luaL_typename(L, keyidx));
}

/*
 * The accessor for key keyidx of view v, and in *off the offset in the
 * mapping that the accessor's own offset is relative to.  Raises for
 * unknown fields and out-of-range indexes.
 */
static inline Acc *view_key(lua_State *L, View *v, int keyidx, size_t *off) {
  TypeInfo *ti = v->ti;
  if (ti->slot != NULL) {
    const char *k = lua_tolstring(L, keyidx, NULL);
    Acc *a;
    if (k != NULL && (a = rec_find(ti, k)) != NULL) {
      *off = v->off;
      return a;
    }
    if (lua_type(L, keyidx) == LUA_TSTRING && (a = rec_find_slow(ti, k)) != NULL) {
      *off = v->off;
      return a;
    }
    no_field(L, ti, keyidx);
    return NULL;
  } else {
    int ok;
    lua_Integer i = lua_tointegerx(L, keyidx, &ok);
    if (unlikely(!ok || (lua_Unsigned)i >= v->count)) {
      if (!ok || lua_type(L, keyidx) != LUA_TNUMBER)
        luaL_error(L, "%s: index expected, got %s", ti->t->name,
                   lua_type(L, keyidx) == LUA_TSTRING ? lua_tostring(L, keyidx)
                                                      : luaL_typename(L, keyidx));
      luaL_error(L, "index %I out of range for %s (0..%I)", i, ti->t->name,
                 (lua_Integer)v->count - 1);
    }
    *off = v->off + (size_t)i * ti->elem.size;
    return &ti->elem;
  }
}

/* ---------------------------------------------------------- view API */

/* The general paths of __index and __newindex: every kind, every error. */
static __attribute__((noinline, cold)) int view_index_slow(lua_State *L,
                                                           View *v) {
  size_t off;
  Acc *a;
  if (v == NULL || lua_rawlen(L, 1) != sizeof(View) || v->magic != VIEW_MAGIC)
    return luaL_typeerror(L, 1, VIEW_MT);
  a = view_key(L, v, 2, &off);
  if (unlikely(v->m->addr == NULL || !(v->m->prot & PROT_READ)))
    return view_dead(L, v, PROT_READ);
  return val_read(L, a, v->m, off, 1);
}

static __attribute__((noinline, cold)) int view_newindex_slow(lua_State *L,
                                                              View *v) {
  size_t off;
  Acc *a;
  if (v == NULL || lua_rawlen(L, 1) != sizeof(View) || v->magic != VIEW_MAGIC)
    return luaL_typeerror(L, 1, VIEW_MT);
  a = view_key(L, v, 2, &off);
  if (unlikely(v->m->addr == NULL || !(v->m->prot & PROT_WRITE)))
    return view_dead(L, v, PROT_WRITE);
  val_write(L, a, v->m, off, 2, 3, v->ti->t);
  return 0;
}

/*
 * The byte offset in the mapping of key 2 of view v, with the accessor kind
 * in *kind, when the fast path handles it (a number or boolean field whose
 * anchored name sits in its own slot, or an element in range); (size_t)-1
 * sends the caller to the general path, which finds the rest or raises.
 */
static inline __attribute__((always_inline)) size_t
view_key_fast(lua_State *L, const View *v, int *kind) {
  if (likely(v->fast != NULL)) {
    const char *k = lua_tolstring(L, 2, NULL);
    const Slot *s = &v->fast[hash_key(k, v->shift)];
    if (unlikely(s->key != k)) return (size_t)-1;
    *kind = s->kind;
    return v->off + s->off;
  } else {
    int ok;
    lua_Integer i = lua_tointegerx(L, 2, &ok);
    if (unlikely(!ok || (lua_Unsigned)i >= v->count)) return (size_t)-1;
    *kind = v->ti->elem.kind;
    return v->off + (size_t)i * v->ti->elem.size;
  }
}

/*
 * __index(view, key): the field's value (sub-views for aggregates).
 * The hot path: numbers and booleans straight from here, calling nothing
 * but the Lua API to fetch the view, check its length, fetch the key and
 * push the result.
 */
static int view_index(lua_State *L) {
  View *v = to_view(L, 1);
  const unsigned char *p;
  Mapping *m;
  size_t off;
  int kind;
  if (unlikely(v == NULL))
    return view_index_slow(L, (View *)lua_touserdata(L, 1));
  off = view_key_fast(L, v, &kind);
  m = v->m;
  if (unlikely(off == (size_t)-1 || m->addr == NULL || !(m->prot & PROT_READ)))
    return view_index_slow(L, v);
  p = m->addr + off;
  switch (kind) {
  case K_I8:  { int8_t x;   memcpy(&x, p, 1); lua_pushinteger(L, x); break; }
  case K_U8:  { uint8_t x;  memcpy(&x, p, 1); lua_pushinteger(L, x); break; }
  case K_I16: { int16_t x;  memcpy(&x, p, 2); lua_pushinteger(L, x); break; }
  case K_U16: { uint16_t x; memcpy(&x, p, 2); lua_pushinteger(L, x); break; }
  case K_I32: { int32_t x;  memcpy(&x, p, 4); lua_pushinteger(L, x); break; }
  case K_U32: { uint32_t x; memcpy(&x, p, 4); lua_pushinteger(L, x); break; }
  case K_I64: case K_U64: { int64_t x; memcpy(&x, p, 8);
                            lua_pushinteger(L, (lua_Integer)x); break; }
  case K_BOOL: lua_pushboolean(L, *p != 0); break;
  case K_F32: { float x;  memcpy(&x, p, 4); lua_pushnumber(L, x); break; }
  case K_F64: { double x; memcpy(&x, p, 8); lua_pushnumber(L, x); break; }
  default:
    return view_index_slow(L, v);
  }
  if (unlikely(shm_faulted(m))) return faulted_error(L, v->ti->t);
  return 1;
}

/*
 * __newindex(view, key, value): converts, range-checks and stores.  The hot
 * path takes integers and floats that fit; anything else (out of range,
 * wrong type, other kinds) goes the general way, which raises or stores.
 */
static int view_newindex(lua_State *L) {
  View *v = to_view(L, 1);
  unsigned char *p;
  Mapping *m;
  size_t off;
  int ok, kind;
  if (unlikely(v == NULL))
    return view_newindex_slow(L, (View *)lua_touserdata(L, 1));
  off = view_key_fast(L, v, &kind);
  m = v->m;
  if (unlikely(off == (size_t)-1 || m->addr == NULL || !(m->prot & PROT_WRITE)))
    return view_newindex_slow(L, v);
  p = m->addr + off;
  switch (kind) {
#define STORE_INT(T, lo, hi) { \
      lua_Integer n = lua_tointegerx(L, 3, &ok); \
      T x; \
      if (unlikely(!ok || n < (lo) || n > (hi))) return view_newindex_slow(L, v); \
      x = (T)n; \
      memcpy(p, &x, sizeof x); \
      break; }
  case K_I8:  STORE_INT(int8_t, INT8_MIN, INT8_MAX)
  case K_U8:  STORE_INT(uint8_t, 0, UINT8_MAX)
  case K_I16: STORE_INT(int16_t, INT16_MIN, INT16_MAX)
  case K_U16: STORE_INT(uint16_t, 0, UINT16_MAX)
  case K_I32: STORE_INT(int32_t, INT32_MIN, INT32_MAX)
  case K_U32: STORE_INT(uint32_t, 0, UINT32_MAX)
  case K_I64:
    STORE_INT(int64_t, LUA_MININTEGER, LUA_MAXINTEGER)
  case K_U64: {   /* any integer; but -1.0 is no float in [0, 2^64) */
    lua_Integer n = lua_tointegerx(L, 3, &ok);
    if (unlikely(!ok || (n < 0 && !lua_isinteger(L, 3))))
      return view_newindex_slow(L, v);
    memcpy(p, &n, sizeof n);
    break;
  }
#undef STORE_INT
  case K_F64: {
    double x = (double)lua_tonumberx(L, 3, &ok);
    if (unlikely(!ok)) return view_newindex_slow(L, v);
    memcpy(p, &x, sizeof x);
    break;
  }
  default:
    return view_newindex_slow(L, v);
  }
  if (unlikely(shm_faulted(m))) return faulted_error(L, v->ti->t);
  return 0;
}

static int view_len(lua_State *L) {
  View *v = to_view(L, 1);
  if (v == NULL) return luaL_typeerror(L, 1, VIEW_MT);
  if (v->ti->t->kind != CK_ARRAY)
    return luaL_error(L, "attempt to get the length of %s (not an array)",
                      v->ti->t->name);
  lua_pushinteger(L, (lua_Integer)v->count);
  return 1;
}

/* __eq: same type at the same place. */
static int view_eq(lua_State *L) {
  View *a = (View *)luaL_testudata(L, 1, VIEW_MT);
  View *b = (View *)luaL_testudata(L, 2, VIEW_MT);
  int eq = a != NULL && b != NULL && a->ti->t == b->ti->t && a->count == b->count;
  if (eq) {
    if (a->m->addr != NULL && b->m->addr != NULL)
      eq = a->m->addr + a->off == b->m->addr + b->off;
    else
      eq = a->m == b->m && a->off == b->off;
  }
  lua_pushboolean(L, eq);
  return 1;
}

/* Iterator of __pairs: fields in declaration order, or indexes 0..n-1. */
static int view_next(lua_State *L) {
  View *v = to_view(L, 1);
  TypeInfo *ti;
  Acc *a;
  size_t off;
  if (v == NULL) return luaL_typeerror(L, 1, VIEW_MT);
  ti = v->ti;
  if (ti->slot != NULL) {
    size_t i = 0;
    if (!lua_isnoneornil(L, 2)) {
      const char *k = lua_tostring(L, 2);
      a = k != NULL ? rec_find(ti, k) : NULL;
      if (a == NULL && k != NULL) a = rec_find_slow(ti, k);
      if (a == NULL) return no_field(L, ti, 2);
      i = (size_t)(a - ti->acc) + 1;
    }
    if (i >= ti->nacc) return 0;
    a = &ti->acc[i];
    off = v->off;
    lua_pushstring(L, a->key);
  } else {
    lua_Integer i = lua_isnoneornil(L, 2) ? 0 : luaL_checkinteger(L, 2) + 1;
    if (i < 0 || (size_t)i >= v->count) return 0;
    a = &ti->elem;
    off = v->off + (size_t)i * a->size;
    lua_pushinteger(L, i);
  }
  if (v->m->addr == NULL || !(v->m->prot & PROT_READ)) return view_dead(L, v, PROT_READ);
  val_read(L, a, v->m, off, 1);
  return 2;
}

static int view_pairs(lua_State *L) {
  if (to_view(L, 1) == NULL) return luaL_typeerror(L, 1, VIEW_MT);
  lua_pushcfunction(L, view_next);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

/* ---- tostring */

static void add_quoted(luaL_Buffer *b, const unsigned char *s, size_t n) {
  size_t i;
  luaL_addchar(b, '"');
  for (i = 0; i < n; i++) {
    unsigned char c = s[i];
    if (c == '"' || c == '\\') {
      luaL_addchar(b, '\\');
      luaL_addchar(b, (char)c);
    } else if (c == '\n') {
      luaL_addstring(b, "\\n");
    } else if (c < 32 || c >= 127) {
      char e[8];
      snprintf(e, sizeof e, "\\%u", (unsigned)c);
      luaL_addstring(b, e);
    } else {
      luaL_addchar(b, (char)c);
    }
  }
  luaL_addchar(b, '"');
}

static void show_agg(lua_State *L, luaL_Buffer *b, TypeInfo *ti,
                     const unsigned char *p, size_t count, int depth);

/* Appends the value `a` describes at p (a copy of the mapping's bytes). */
static void show_value(lua_State *L, luaL_Buffer *b, Acc *a,
                       const unsigned char *p, int depth) {
  char s[64];
  p += a->off;
  switch (a->kind) {
  case K_I8: case K_U8: case K_I16: case K_U16: case K_I32: case K_U32:
  case K_I64: {
    lua_Integer x = 0;
    switch (a->kind) {
    case K_I8:  { int8_t y;   memcpy(&y, p, 1); x = y; break; }
    case K_U8:  { uint8_t y;  memcpy(&y, p, 1); x = y; break; }
    case K_I16: { int16_t y;  memcpy(&y, p, 2); x = y; break; }
    case K_U16: { uint16_t y; memcpy(&y, p, 2); x = y; break; }
    case K_I32: { int32_t y;  memcpy(&y, p, 4); x = y; break; }
    case K_U32: { uint32_t y; memcpy(&y, p, 4); x = y; break; }
    default:    { int64_t y;  memcpy(&y, p, 8); x = y; break; }
    }
    snprintf(s, sizeof s, "%lld", (long long)x);
    luaL_addstring(b, s);
    break;
  }
  case K_U64: {
    uint64_t y;
    memcpy(&y, p, 8);
    snprintf(s, sizeof s, "%llu", (unsigned long long)y);
    luaL_addstring(b, s);
    break;
  }
  case K_BOOL: luaL_addstring(b, *p ? "true" : "false"); break;
  case K_F32: case K_F64: case K_F80: {
    lua_Number x;
    if (a->kind == K_F32) { float y; memcpy(&y, p, 4); x = y; }
    else if (a->kind == K_F64) { double y; memcpy(&y, p, 8); x = y; }
    else { long double y; memcpy(&y, p, sizeof y); x = (lua_Number)y; }
    lua_pushnumber(L, x);
    luaL_tolstring(L, -1, NULL);
    lua_remove(L, -2);
    luaL_addvalue(b);
    break;
  }
  case K_CHARS: {
    const unsigned char *z = (const unsigned char *)memchr(p, 0, a->size);
    add_quoted(b, p, z != NULL ? (size_t)(z - p) : a->size);
    break;
  }
  case K_PTR: {
    uintptr_t x;
    memcpy(&x, p, sizeof x);
    if (x == 0) luaL_addstring(b, "NULL");
    else { snprintf(s, sizeof s, "0x%" PRIxPTR, x); luaL_addstring(b, s); }
    break;
  }
  case K_BITS: {
    uint64_t mask = a->bitwidth == 64 ? ~(uint64_t)0
                                      : (((uint64_t)1 << a->bitwidth) - 1);
    uint64_t x = (uint64_t)(bits_load(p, a->size) >> a->bitoff) & mask;
    if (a->flags & F_BOOL) luaL_addstring(b, x ? "true" : "false");
    else {
      if ((a->flags & F_SIGNED) && a->bitwidth < 64 && (x >> (a->bitwidth - 1)))
        snprintf(s, sizeof s, "%lld", (long long)(x | ~mask));
      else if (a->flags & F_SIGNED)
        snprintf(s, sizeof s, "%lld", (long long)x);
      else
        snprintf(s, sizeof s, "%llu", (unsigned long long)x);
      luaL_addstring(b, s);
    }
    break;
  }
  case K_AGG:
    if (a->sub == NULL) a->sub = info_of(L, a->type);
    if (a->type->flexible)   /* its length is the mapping's business */
      luaL_addstring(b, "{ ... }");
    else
      show_agg(L, b, a->sub, p, a->type->count, depth + 1);
    break;
  default:
    luaL_addstring(b, "?");
  }
}

static void show_agg(lua_State *L, luaL_Buffer *b, TypeInfo *ti,
                     const unsigned char *p, size_t count, int depth) {
  size_t i;
  if (depth > SHOW_DEPTH) {
    luaL_addstring(b, "{...}");
    return;
  }
  if (ti->slot != NULL ? ti->nacc == 0 : count == 0) {
    luaL_addstring(b, "{}");
    return;
  }
  luaL_addstring(b, "{ ");
  if (ti->slot != NULL) {
    for (i = 0; i < ti->nacc; i++) {
      if (i > 0) luaL_addstring(b, ", ");
      luaL_addstring(b, ti->acc[i].key);
      luaL_addstring(b, " = ");
      show_value(L, b, &ti->acc[i], p, depth);
    }
  } else {
    for (i = 0; i < count && i < SHOW_MAX; i++) {
      if (i > 0) luaL_addstring(b, ", ");
      show_value(L, b, &ti->elem, p + i * ti->elem.size, depth);
    }
    if (count > SHOW_MAX) {
      char s[48];
      snprintf(s, sizeof s, ", ... (%zu more)", count - SHOW_MAX);
      luaL_addstring(b, s);
    }
  }
  luaL_addstring(b, " }");
}

/*
 * __tostring: "struct Head { Addr = 0x20000000000, MemSize = 16384, ... }".
 * The bytes are copied out first (one bounded memcpy), so formatting, which
 * allocates, never touches the mapping.  A dead or unreadable view says so
 * rather than raising, so print() of it still works.
 */
static int view_tostring(lua_State *L) {
  View *v = to_view(L, 1);
  const CType *t;
  size_t size, shown;
  unsigned char *copy;
  luaL_Buffer b;
  if (v == NULL) return luaL_typeerror(L, 1, VIEW_MT);
  t = v->ti->t;
  size = t->kind == CK_ARRAY ? v->count * v->ti->elem.size : t->size;
  shown = size;
  if (t->kind == CK_ARRAY && v->count > SHOW_MAX) shown = SHOW_MAX * v->ti->elem.size;
  copy = (unsigned char *)lua_newuserdatauv(L, shown > 0 ? shown : 1, 0);
  if (v->m->addr == NULL || !(v->m->prot & PROT_READ)) {
    lua_pushfstring(L, "%s (%s)", t->name, prot_problem(v->m, PROT_READ));
    return 1;
  }
  memcpy(copy, v->m->addr + v->off, shown);
  if (shm_faulted(v->m)) return faulted_error(L, t);
  luaL_buffinit(L, &b);
  luaL_addstring(&b, t->name);
  luaL_addchar(&b, ' ');
  show_agg(L, &b, v->ti, copy, v->count, 0);
  luaL_pushresult(&b);
  return 1;
}

/*
 * shm.view(m, t [, offset]) -> view of type t (ctype or name) at offset
 * (default 0) of the live mapping m.  Raises unless t is a complete struct,
 * union or array type, the view lies inside the mapping, and offset is
 * aligned for t.
 */
static int view_new(lua_State *L) {
  Mapping *m = shm_checkmapping(L, 1);
  const CType *t = check_type(L, 2);
  size_t off = shm_optsize(L, 3, 0), size, count = 0;
  TypeInfo *ti;
  if (t->kind != CK_STRUCT && t->kind != CK_UNION && t->kind != CK_ARRAY)
    return luaL_argerror(L, 2, lua_pushfstring(L, "a struct, union or array "
                         "type expected, got %s", t->name));
  if (t->kind != CK_ARRAY && !t->complete)
    return luaL_argerror(L, 2, lua_pushfstring(L, "%s is an incomplete type",
                                               t->name));
  ti = info_of(L, t);
  if (off > m->size)
    return luaL_argerror(L, 3, "offset outside the mapping");
  if (t->kind == CK_ARRAY) {
    count = array_count(t, m, off);
    size = count * ti->elem.size;
  } else {
    size = t->size;
  }
  if (size > m->size - off)
    return luaL_error(L, "view of %s (%I bytes) at offset %I does not fit "
                      "the mapping of %I bytes", t->name, (lua_Integer)size,
                      (lua_Integer)off, (lua_Integer)m->size);
  if (t->align > 1 && ((uintptr_t)(m->addr + off)) % t->align != 0)
    return luaL_error(L, "offset %I is misaligned for %s (alignment %I)",
                      (lua_Integer)off, t->name, (lua_Integer)t->align);
  push_view(L, m, off, ti, count, 1);
  return 1;
}

/* ------------------------------------------------------------ pointers */

static const CType *ptr_target(lua_State *L, Pointer *p, TypeInfo **ti) {
  const CType *tt = p->ptype->elem;
  if (tt == NULL || tt->kind == CK_VOID || tt->kind == CK_FUNC)
    luaL_error(L, "cannot follow %s (no target type; use shm.cast)",
               p->ptype->name);
  if ((tt->kind == CK_STRUCT || tt->kind == CK_UNION) && !tt->complete)
    luaL_error(L, "cannot follow %s: %s is incomplete", p->ptype->name, tt->name);
  if (tt->size == 0)
    luaL_error(L, "cannot follow %s: %s has no size", p->ptype->name, tt->name);
  if (p->ti == NULL) p->ti = info_of(L, tt);
  *ti = p->ti;
  return tt;
}

/* The live mapping holding [addr, addr+len), checked for prot; raises. */
static Mapping *find_live(lua_State *L, uintptr_t addr, size_t len, int prot,
                          const char *what) {
  Mapping *m = shm_findmapping(addr, len);
  char a[32];
  if (m != NULL && (m->prot & prot)) return m;
  snprintf(a, sizeof a, "0x%" PRIxPTR, addr);
  if (m == NULL)
    luaL_error(L, "%s %s does not point into a live mapping (%I byte%s from "
               "there needed)", what, a, (lua_Integer)len, len == 1 ? "" : "s");
  luaL_error(L, "%s %s: %s", what, a, prot_problem(m, prot));
  return NULL;
}

/*
 * The accessor for key keyidx of pointer p and, in *m and *off, where the
 * value it is relative to lies: p[i] is element i of an array at p,
 * p.field a field of the record p points to (the whole record must lie in
 * one live mapping).
 */
static Acc *ptr_key(lua_State *L, Pointer *p, int keyidx, int prot, Mapping **m,
                    size_t *off) {
  TypeInfo *ti;
  const CType *tt = ptr_target(L, p, &ti);
  uintptr_t addr;
  Acc *a;
  if (lua_type(L, keyidx) == LUA_TNUMBER) {
    int ok;
    lua_Integer i = lua_tointegerx(L, keyidx, &ok);
    __int128 d;
    if (!ok) luaL_error(L, "%s: integer index expected", p->ptype->name);
    d = (__int128)i * (__int128)tt->size + (__int128)p->addr;
    if (d <= 0 || d > (__int128)UINTPTR_MAX)
      luaL_error(L, "%s: index %I leaves the address space", p->ptype->name, i);
    addr = (uintptr_t)d;
    a = &ti->self;
  } else if (lua_type(L, keyidx) == LUA_TSTRING && ti->slot != NULL) {
    const char *k = lua_tostring(L, keyidx);
    a = rec_find(ti, k);
    if (a == NULL) a = rec_find_slow(ti, k);
    if (a == NULL) no_field(L, ti, keyidx);
    addr = p->addr;
  } else {
    luaL_error(L, "%s: %s key on a pointer to %s", p->ptype->name,
               luaL_typename(L, keyidx), tt->name);
    return NULL;
  }
  *m = find_live(L, addr, tt->size, prot, "pointer");
  *off = addr - (uintptr_t)(*m)->addr;
  return a;
}

static Pointer *check_pointer(lua_State *L, int idx) {
  Pointer *p = to_pointer(L, idx);
  if (p == NULL) luaL_typeerror(L, idx, PTR_MT);
  return p;
}

static int ptr_index(lua_State *L) {
  Pointer *p = check_pointer(L, 1);
  Mapping *m;
  size_t off;
  Acc *a = ptr_key(L, p, 2, PROT_READ, &m, &off);
  return val_read(L, a, m, off, 0);
}

static int ptr_newindex(lua_State *L) {
  Pointer *p = check_pointer(L, 1);
  Mapping *m;
  size_t off;
  Acc *a = ptr_key(L, p, 2, PROT_WRITE, &m, &off);
  val_write(L, a, m, off, 2, 3, p->ptype->elem);
  return 0;
}

static int ptr_tostring(lua_State *L) {
  Pointer *p = check_pointer(L, 1);
  char s[32];
  snprintf(s, sizeof s, "0x%" PRIxPTR, p->addr);
  lua_pushfstring(L, "pointer<%s>: %s", p->ptype->name, s);
  return 1;
}

static int ptr_eq(lua_State *L) {
  Pointer *a = to_pointer(L, 1), *b = to_pointer(L, 2);
  lua_pushboolean(L, a != NULL && b != NULL && a->addr == b->addr &&
                     a->ptype->elem == b->ptype->elem);
  return 1;
}

/* p + n, n + p, p - n: pointer arithmetic in units of the target's size. */
static int ptr_arith(lua_State *L, int sign) {
  Pointer *p = to_pointer(L, 1);
  int nidx = 2;
  lua_Integer n;
  const CType *tt;
  __int128 d;
  if (p == NULL && sign > 0) { p = to_pointer(L, 2); nidx = 1; }
  if (p == NULL) return luaL_typeerror(L, 1, PTR_MT);
  n = luaL_checkinteger(L, nidx);
  tt = p->ptype->elem;
  if (tt == NULL || tt->size == 0)
    return luaL_error(L, "arithmetic on %s (target has no size)", p->ptype->name);
  d = (__int128)p->addr + (__int128)sign * (__int128)n * (__int128)tt->size;
  if (d < 0 || d > (__int128)UINTPTR_MAX)
    return luaL_error(L, "%s: arithmetic leaves the address space", p->ptype->name);
  if (d == 0) lua_pushnil(L);
  else push_pointer(L, (uintptr_t)d, p->ptype, p->ti);
  return 1;
}

static int ptr_add(lua_State *L) { return ptr_arith(L, 1); }
static int ptr_sub(lua_State *L) { return ptr_arith(L, -1); }

/*
 * shm.cast(t, x) -> pointer: x (integer, pointer, view, mapping) as a
 * pointer of type t (a pointer type; any other type t means "t *").  nil
 * for address 0.
 */
static int view_cast(lua_State *L) {
  const CType *t = check_type(L, 1);
  uintptr_t addr = 0;
  if (!lua_isnil(L, 2) && !shm_toaddress(L, 2, &addr))
    return luaL_typeerror(L, 2, "address (integer, pointer, view or mapping)");
  if (t->kind != CK_POINTER) {
    t = cu_pointer_to(universe(L), (CType *)t);
    if (t == NULL) return luaL_error(L, "not enough memory");
  }
  if (addr == 0) lua_pushnil(L);
  else push_pointer(L, addr, t, NULL);
  return 1;
}

/* ------------------------------------------------------------ addresses */

int shm_toaddress(lua_State *L, int idx, uintptr_t *out) {
  void *u;
  if (lua_isinteger(L, idx)) {
    *out = (uintptr_t)lua_tointeger(L, idx);
    return 1;
  }
  if ((u = lua_touserdata(L, idx)) == NULL || lua_islightuserdata(L, idx))
    return 0;
  {
    View *v = to_view(L, idx);
    Pointer *p;
    Mapping *m;
    if (v != NULL) {
      if (v->m->addr == NULL)
        luaL_error(L, "view of %s: mapping is unmapped", v->ti->t->name);
      *out = (uintptr_t)(v->m->addr + v->off);
      return 1;
    }
    if ((p = to_pointer(L, idx)) != NULL) {
      *out = p->addr;
      return 1;
    }
    if ((m = shm_tomapping(L, idx)) != NULL) {
      if (m->addr == NULL) luaL_error(L, "mapping is unmapped");
      *out = (uintptr_t)m->addr;
      return 1;
    }
  }
  return 0;
}

void *shm_view_field(lua_State *L, int view_idx, int name_idx,
                     const struct CType **type, int write, const Mapping **m) {
  View *v = to_view(L, view_idx);
  int prot = write ? PROT_WRITE : PROT_READ;
  size_t off;
  Acc *a;
  if (v == NULL) luaL_typeerror(L, view_idx, VIEW_MT);
  view_idx = lua_absindex(L, view_idx);
  a = view_key(L, v, name_idx, &off);
  if (a->kind == K_BITS)
    luaL_error(L, "field '%s' of %s is a bit-field: it has no address",
               a->key ? a->key : "?", v->ti->t->name);
  if (v->m->addr == NULL || !(v->m->prot & prot)) view_dead(L, v, prot);
  *type = a->type;
  if (m != NULL) *m = v->m;
  return v->m->addr + off + a->off;
}

/*
 * The C type of field `name` (at name_idx) of the view at view_idx, known
 * to exist, for atomic.c's messages.  Unlike shm_view_field it does not
 * look at the mapping, which a finalizer run by the message's own
 * allocations may have unmapped: the message stays the one it was.
 */
const struct CType *shm_view_field_type(lua_State *L, int view_idx,
                                        int name_idx) {
  size_t off;
  return view_key(L, to_view(L, view_idx), name_idx, &off)->type;
}

/*
 * atomic.c's hot path: the integer field (or element) named by the value
 * at 2 of the view at 1, found in the fast slots, naturally aligned, in a
 * live mapping that allows reading (write == 0) or writing.  Returns its
 * address and sets *size (1, 2, 4, 8), *sign and *mp; returns NULL for anything
 * else, and the caller takes shm_view_field, which finds the rest or
 * raises the right error.
 */
void *shm_view_int(lua_State *L, int write, int *size, int *sign,
                   const Mapping **mp) {
  View *v = to_view(L, 1);
  Mapping *m;
  size_t off;
  int kind, k;
  unsigned char *p;
  if (unlikely(v == NULL)) return NULL;
  off = view_key_fast(L, v, &kind);
  m = v->m;
  if (unlikely(off == (size_t)-1 || kind < K_I8 || kind > K_U64 || m->addr == NULL ||
               !(m->prot & (write ? PROT_WRITE : PROT_READ))))
    return NULL;
  k = kind - K_I8; /* I8 U8 I16 U16 I32 U32 I64 U64 */
  p = m->addr + off;
  *size = 1 << (k >> 1);
  *sign = !(k & 1);
  if (((uintptr_t)p & (uintptr_t)(*size - 1)) != 0) return NULL;
  *mp = m;
  return p;
}

/* shm.addressof(x [, field]) -> integer address of a view (or one of its
 * fields), pointer or mapping. */
static int view_addressof(lua_State *L) {
  uintptr_t a;
  if (!lua_isnoneornil(L, 2)) {
    View *v = to_view(L, 1);
    size_t off;
    Acc *f;
    if (v == NULL) return luaL_typeerror(L, 1, VIEW_MT);
    f = view_key(L, v, 2, &off);
    if (f->kind == K_BITS)
      return luaL_error(L, "field '%s' of %s is a bit-field: it has no address",
                        f->key ? f->key : "?", v->ti->t->name);
    if (v->m->addr == NULL) return view_dead(L, v, PROT_READ);
    lua_pushinteger(L, (lua_Integer)(uintptr_t)(v->m->addr + off + f->off));
    return 1;
  }
  if (lua_isinteger(L, 1) || !shm_toaddress(L, 1, &a))
    return luaL_typeerror(L, 1, "view, pointer or mapping");
  lua_pushinteger(L, (lua_Integer)a);
  return 1;
}

static uintptr_t check_address(lua_State *L, int idx) {
  uintptr_t a = 0;
  if (!shm_toaddress(L, idx, &a))
    luaL_typeerror(L, idx, "address (integer, pointer, view or mapping)");
  return a;
}

/*
 * shm.string(x [, len]) -> string: len bytes at address x (a view, pointer,
 * mapping or integer), which must lie in a live readable mapping.  Without
 * len: up to the first NUL, or the end of the mapping.
 */
static int view_string(lua_State *L) {
  uintptr_t a = check_address(L, 1);
  Mapping *m;
  if (lua_isnoneornil(L, 2)) {
    const unsigned char *p, *z;
    size_t room;
    m = find_live(L, a, 1, PROT_READ, "address");
    p = (const unsigned char *)a;
    room = m->size - (size_t)(a - (uintptr_t)m->addr);
    z = (const unsigned char *)memchr(p, 0, room);
    lua_pushlstring(L, (const char *)p, z != NULL ? (size_t)(z - p) : room);
  } else {
    size_t len = shm_checksize(L, 2);
    if (len == 0) {
      lua_pushliteral(L, "");
      return 1;
    }
    m = find_live(L, a, len, PROT_READ, "address");
    lua_pushlstring(L, (const char *)a, len);
  }
  shm_checkfault(L, m, "shm.string");
  return 1;
}

/*
 * shm.copy(dst, src [, len]) -> true: memmove of len bytes; dst an address
 * in a live writable mapping, src a string (len defaults to its length) or
 * an address in a live readable mapping.
 */
static int view_copy(lua_State *L) {
  uintptr_t d = check_address(L, 1);
  Mapping *dm, *sm = NULL;
  const void *src;
  size_t len;
  if (lua_type(L, 2) == LUA_TSTRING) {
    size_t n;
    src = lua_tolstring(L, 2, &n);
    len = shm_optsize(L, 3, n);
    luaL_argcheck(L, len <= n, 3, "longer than the string");
  } else {
    uintptr_t s = check_address(L, 2);
    len = shm_checksize(L, 3);
    if (len == 0) { lua_pushboolean(L, 1); return 1; }
    sm = find_live(L, s, len, PROT_READ, "source");
    src = (const void *)s;
  }
  if (len == 0) { lua_pushboolean(L, 1); return 1; }
  dm = find_live(L, d, len, PROT_WRITE, "destination");
  memmove((void *)d, src, len);
  if (sm != NULL) shm_checkfault(L, sm, "shm.copy");
  shm_checkfault(L, dm, "shm.copy");
  lua_pushboolean(L, 1);
  return 1;
}

/* shm.fill(dst, byte, len) -> true: memset inside a live writable mapping. */
static int view_fill(lua_State *L) {
  uintptr_t d = check_address(L, 1);
  lua_Integer c = luaL_checkinteger(L, 2);
  size_t len = shm_checksize(L, 3);
  Mapping *m;
  luaL_argcheck(L, c >= 0 && c <= 255, 2, "byte expected (0..255)");
  if (len > 0) {
    m = find_live(L, d, len, PROT_WRITE, "destination");
    memset((void *)d, (int)c, len);
    shm_checkfault(L, m, "shm.fill");
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* -------------------------------------------------------------- ctypes */

/* shm.cdef(src): declares what the C source declares; raises on errors. */
static int view_cdef(lua_State *L) {
  size_t len;
  const char *src = luaL_checklstring(L, 1, &len);
  char err[512];
  err[0] = '\0';
  if (cu_parse(universe(L), src, len, err, sizeof err) != 0)
    return luaL_error(L, "cdef: %s", err);
  return 0;
}

/* shm.typeof(decl) -> ctype (the same object every time for a type). */
static int view_typeof(lua_State *L) {
  const CType *t = check_type(L, 1);
  push_ctype(L, t);
  return 1;
}

/* A type argument, or the type of a view. */
static const CType *type_or_view(lua_State *L, int idx, const View **vp) {
  View *v = to_view(L, idx);
  *vp = v;
  if (v != NULL) return v->ti->t;
  return check_type(L, idx);
}

/* shm.sizeof(t) for a ctype, a type name or a view (a view of a flexible
 * array: the bytes it covers). */
static int view_sizeof(lua_State *L) {
  const View *v;
  const CType *t = type_or_view(L, 1, &v);
  if (v != NULL && t->kind == CK_ARRAY) {
    lua_pushinteger(L, (lua_Integer)(v->count * v->ti->elem.size));
    return 1;
  }
  if ((t->kind == CK_STRUCT || t->kind == CK_UNION) && !t->complete)
    return luaL_error(L, "sizeof: %s is an incomplete type", t->name);
  if (t->kind == CK_VOID || t->kind == CK_FUNC)
    return luaL_error(L, "sizeof: %s has no size", t->name);
  lua_pushinteger(L, (lua_Integer)t->size);
  return 1;
}

static int view_alignof(lua_State *L) {
  const View *v;
  const CType *t = type_or_view(L, 1, &v);
  if ((t->kind == CK_STRUCT || t->kind == CK_UNION) && !t->complete)
    return luaL_error(L, "alignof: %s is an incomplete type", t->name);
  lua_pushinteger(L, (lua_Integer)t->align);
  return 1;
}

/*
 * shm.offsetof(t, path) -> bytes from the start of t: path is a field
 * name, or a designator as C's offsetof takes it: "a.b", "arr[3].x".
 */
static int view_offsetof(lua_State *L) {
  const View *v;
  const CType *t = type_or_view(L, 1, &v);
  const char *path = luaL_checkstring(L, 2), *s = path;
  size_t total = 0;
  char name[256];
  for (;;) {
    if (*s == '[') {
      char *end;
      unsigned long long i = strtoull(s + 1, &end, 0);
      if (end == s + 1 || *end != ']')
        return luaL_error(L, "offsetof: bad index in '%s'", path);
      if (t->kind != CK_ARRAY)
        return luaL_error(L, "offsetof: %s is not an array ('%s')", t->name, path);
      if (!t->flexible && i >= t->count)
        return luaL_error(L, "offsetof: index %I out of range for %s",
                          (lua_Integer)i, t->name);
      total += (size_t)i * t->elem->size;
      t = t->elem;
      s = end + 1;
    } else {
      size_t n = strcspn(s, ".[");
      size_t off;
      const CField *f;
      if (n == 0 || n >= sizeof name)
        return luaL_error(L, "offsetof: bad field path '%s'", path);
      memcpy(name, s, n);
      name[n] = '\0';
      if (t->kind != CK_STRUCT && t->kind != CK_UNION)
        return luaL_error(L, "offsetof: %s has no field '%s'", t->name, name);
      f = ct_field(t, name, &off);
      if (f == NULL)
        return luaL_error(L, "offsetof: %s has no field '%s'", t->name, name);
      if (f->bit_width > 0)
        return luaL_error(L, "offsetof: field '%s' is a bit-field", name);
      total += off;
      t = f->type;
      s += n;
    }
    if (*s == '\0') break;
    if (*s == '.') s++;
  }
  lua_pushinteger(L, (lua_Integer)total);
  return 1;
}

/*
 * shm.struct(name, fields [, opts]) -> ctype.  name: a tag ("Foo", or
 * "struct Foo" / "union Foo"), or nil for an anonymous record.  fields: a
 * list of { name, type [, bits = n] [, align = n] [, packed = true] }, type
 * a ctype or a C type name; name false for an anonymous member.
 * opts: { packed = bool, union = bool, align = n }.
 */
static int view_struct(lua_State *L) {
  const char *tag = luaL_optstring(L, 1, NULL);
  int is_union = 0, packed = 0;
  size_t align_as = 0, n, i;
  CFieldSpec *fs;
  CType *t;
  char err[512];
  luaL_checktype(L, 2, LUA_TTABLE);
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 3, "packed"); packed = lua_toboolean(L, -1); lua_pop(L, 1);
    lua_getfield(L, 3, "union"); is_union = lua_toboolean(L, -1); lua_pop(L, 1);
    lua_getfield(L, 3, "align");
    if (!lua_isnil(L, -1)) align_as = shm_checksize(L, -1);
    lua_pop(L, 1);
  }
  if (tag != NULL) {
    if (strncmp(tag, "struct ", 7) == 0) tag += 7;
    else if (strncmp(tag, "union ", 6) == 0) { tag += 6; is_union = 1; }
  }
  n = lua_rawlen(L, 2);
  fs = (CFieldSpec *)lua_newuserdatauv(L, (n ? n : 1) * sizeof *fs, 0);
  memset(fs, 0, (n ? n : 1) * sizeof *fs);
  for (i = 0; i < n; i++) {
    int top = lua_gettop(L);
    if (lua_rawgeti(L, 2, (lua_Integer)i + 1) != LUA_TTABLE)
      return luaL_error(L, "struct: field %I: a table {name, type} expected",
                        (lua_Integer)i + 1);
    lua_rawgeti(L, -1, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      fs[i].name = lua_tostring(L, -1);   /* anchored by the fields table */
    } else if (lua_toboolean(L, -1)) {
      return luaL_error(L, "struct: field %I: name must be a string (or false)",
                        (lua_Integer)i + 1);
    }
    lua_rawgeti(L, top + 1, 2);
    fs[i].type = (CType *)check_type(L, lua_gettop(L));
    lua_getfield(L, top + 1, "bits");
    fs[i].bit_width = -1;
    if (!lua_isnil(L, -1)) {
      int ok;
      lua_Integer w = lua_tointegerx(L, -1, &ok);
      if (!ok || w < 0 || w > 64)
        return luaL_error(L, "struct: field %I: bits must be 0..64",
                          (lua_Integer)i + 1);
      fs[i].bit_width = (int)w;
    }
    lua_getfield(L, top + 1, "align");
    if (!lua_isnil(L, -1)) fs[i].align_as = shm_checksize(L, lua_gettop(L));
    lua_getfield(L, top + 1, "packed");
    fs[i].packed = lua_toboolean(L, -1);
    lua_settop(L, top);
  }
  err[0] = '\0';
  t = cu_define_record(universe(L), is_union, tag, fs, n, packed, align_as,
                       err, sizeof err);
  if (t == NULL) return luaL_error(L, "struct: %s", err);
  push_ctype(L, t);
  return 1;
}

/* shm.enum_value(name) -> integer, or nil if no enum constant has it. */
static int view_enum_value(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  long long v;
  if (cu_enum_value(universe(L), name, &v)) lua_pushinteger(L, (lua_Integer)v);
  else lua_pushnil(L);
  return 1;
}

static int ctype_tostring(lua_State *L) {
  CTypeObj *o = to_ctype(L, 1);
  if (o == NULL) return luaL_typeerror(L, 1, CTYPE_MT);
  lua_pushfstring(L, "ctype<%s>", o->info.t->name);
  return 1;
}

/* ---------------------------------------------------------- registration */

static const luaL_Reg view_meta[] = {
  {"__index", view_index},   {"__newindex", view_newindex},
  {"__len", view_len},       {"__eq", view_eq},
  {"__pairs", view_pairs},   {"__tostring", view_tostring},
  {"__gc", view_gc},         {NULL, NULL}
};

static const luaL_Reg ptr_meta[] = {
  {"__index", ptr_index},   {"__newindex", ptr_newindex},
  {"__eq", ptr_eq},         {"__add", ptr_add},
  {"__sub", ptr_sub},       {"__tostring", ptr_tostring},
  {NULL, NULL}
};

static const luaL_Reg ctype_meta[] = {
  {"__tostring", ctype_tostring},
  {NULL, NULL}
};

static const luaL_Reg view_funcs[] = {
  {"cdef", view_cdef},           {"typeof", view_typeof},
  {"sizeof", view_sizeof},       {"alignof", view_alignof},
  {"offsetof", view_offsetof},   {"struct", view_struct},
  {"enum_value", view_enum_value},
  {"view", view_new},            {"cast", view_cast},
  {"addressof", view_addressof}, {"string", view_string},
  {"copy", view_copy},           {"fill", view_fill},
  {NULL, NULL}
};

/* A metatable that scripts cannot fetch or change (__metatable). */
static void new_meta(lua_State *L, const char *name, const luaL_Reg *l) {
  if (luaL_newmetatable(L, name)) {
    luaL_setfuncs(L, l, 0);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
}

void shm_view_open(lua_State *L) {
  /* one universe per lua_State; a second require reuses it, since views
   * and ctypes made by the first point into it */
  if (lua_getfield(L, LUA_REGISTRYINDEX, UNIVERSE_KEY) != LUA_TUSERDATA) {
    Universe *u;
    lua_pop(L, 1);
    u = (Universe *)lua_newuserdatauv(L, sizeof(Universe), 0);
    u->cu = NULL;
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, universe_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    u->cu = cu_new();   /* NULL (out of memory): universe() raises on use */
    lua_setfield(L, LUA_REGISTRYINDEX, UNIVERSE_KEY);
  } else {
    lua_pop(L, 1);
  }
  luaL_getsubtable(L, LUA_REGISTRYINDEX, CTYPES_KEY);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, DECLS_KEY);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, NAMES_KEY);
  lua_pop(L, 3);
  new_meta(L, VIEW_MT, view_meta);
  new_meta(L, PTR_MT, ptr_meta);
  new_meta(L, CTYPE_MT, ctype_meta);
  luaL_setfuncs(L, view_funcs, 0);
}

