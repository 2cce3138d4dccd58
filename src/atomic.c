/*
 * atomic.c: atomics, futexes, an adaptive wait and robust mutexes on the
 * fields of views.
 *
 * Every function takes a view and a field name first; view.c's
 * shm_view_field resolves them (liveness and protection included) and
 * hands back the address and the C type.  This file only checks what the
 * operation itself needs (an integer of 1/2/4/8 bytes, naturally aligned; a
 * 32-bit one for futexes; a pthread_mutex_t for mutexes) and then makes one
 * GCC __atomic builtin, futex syscall or pthread call.
 *
 *   shm.atomic_load(v, f [, order])               -> value
 *   shm.atomic_store(v, f, x [, order])           -> nothing
 *   shm.atomic_exchange(v, f, x [, order])        -> old
 *   shm.atomic_add/_sub/_and/_or/_xor(v, f, n [, order]) -> old
 *   shm.atomic_cas(v, f, expected, desired [, order]) -> ok, old
 *   shm.atomic_fence([order])
 *   shm.futex_wait(v, f, expected [, timeout_s])  -> true | nil, msg, errno
 *   shm.futex_wake(v, f [, n | "all"])            -> number woken
 *   shm.wait_change(v, f, old [, timeout_s [, waiters]]) -> new | nil,msg,errno
 *   shm.notify(v, f, x [, waiters])               -> number woken
 *   shm.atomic_ref(v, f) -> r, the field bound for hot loops: the same
 *   operations as functions of r, called with a dot and the arguments
 *   that follow v, f above: r.load([order]), r.store(x [, order]),
 *   r.exchange, r.fetch_add/_sub/_and/_or/_xor(n [, order]), r.cas,
 *   r.futex_wait, r.futex_wake, r.wait_change, r.notify
 *   shm.mutex_init / mutex_lock / mutex_trylock / mutex_unlock /
 *   mutex_consistent (v, m ...)
 *
 * Orders are "seq_cst" (the default), "acquire", "release", "acq_rel" and
 * "relaxed", as in C11; an order an operation cannot have (a store with
 * "acquire", a load with "release") raises.
 *
 * Values: what is stored (store, exchange, cas, futex and wait values) must
 * fit the field's C type, signed or unsigned (uint64_t fields take any Lua
 * integer: its bit pattern).  The operand of add/sub/and/or/xor is a bit
 * pattern of the field's width: any value that fits the signed or the
 * unsigned type of that width (so atomic_add(u8, -1) decrements and
 * atomic_and(i32, 0xffff0000) masks).  Arithmetic wraps around as in C on
 * unsigned types.  Results are read back as the field's type reads them: a
 * uint64_t above math.maxinteger comes back negative, as Lua integers wrap.
 *
 * Faults: a field on a page past the end of its object (truncated under
 * the mapping) raises SIGBUS at the access; mapping.c's handler lets it
 * complete on zeros and marks the mapping dead, and every function here
 * then raises, as a view access does (check_fault), instead of returning
 * what the page of zeros held.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "ctype.h"
#include "shm.h"

/* ---- small helpers */

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static long futex_call(uint32_t *addr, int op, uint32_t val,
                       const struct timespec *ts) {
  return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

/*
 * An optional timeout in seconds at `idx`: nil/none (or math.huge) is "no
 * timeout" and returns -1; otherwise the number of nanoseconds, >= 0.
 * Raises for a negative number or NaN.
 */
static int64_t opt_timeout(lua_State *L, int idx) {
  lua_Number t;
  if (lua_isnoneornil(L, idx)) return -1;
  t = luaL_checknumber(L, idx);
  luaL_argcheck(L, t >= 0, idx, "timeout must be a non-negative number of seconds");
  if (t >= 1e9) return -1; /* 30 years: as good as forever, and no overflow */
  return (int64_t)(t * 1e9);
}

static struct timespec ns_to_timespec(int64_t ns) {
  struct timespec ts;
  ts.tv_sec = (time_t)(ns / 1000000000);
  ts.tv_nsec = (long)(ns % 1000000000);
  return ts;
}

/* ---- memory orders */

enum { OP_LOAD, OP_STORE, OP_RMW };

/*
 * The memory order at `idx` (nil/none: seq_cst) for an operation of class
 * `op`; raises for an unknown name or one the operation cannot have.  All
 * five names are seven bytes long, so this is one length test and at most
 * five 7-byte compares, and only when an order is given.
 */
static int check_order(lua_State *L, int idx, int op) {
  static const struct { const char *name; int mo; } orders[] = {
    {"seq_cst", __ATOMIC_SEQ_CST}, {"acquire", __ATOMIC_ACQUIRE},
    {"release", __ATOMIC_RELEASE}, {"relaxed", __ATOMIC_RELAXED},
    {"acq_rel", __ATOMIC_ACQ_REL}};
  size_t len, i;
  const char *s;
  int mo = -1;
  if (lua_isnoneornil(L, idx)) return __ATOMIC_SEQ_CST;
  if (lua_type(L, idx) != LUA_TSTRING)
    luaL_typeerror(L, idx, "memory order (\"seq_cst\", \"acquire\", "
                   "\"release\", \"acq_rel\" or \"relaxed\")");
  s = lua_tolstring(L, idx, &len);
  if (len == 7)
    for (i = 0; i < sizeof orders / sizeof orders[0]; i++)
      if (memcmp(s, orders[i].name, 7) == 0) mo = orders[i].mo;
  if (mo < 0)
    return luaL_argerror(L, idx, lua_pushfstring(L,
        "unknown memory order '%s' (seq_cst, acquire, release, acq_rel or "
        "relaxed)", s));
  if (op == OP_LOAD && (mo == __ATOMIC_RELEASE || mo == __ATOMIC_ACQ_REL))
    return luaL_argerror(L, idx, lua_pushfstring(L,
        "memory order '%s' is invalid for a load (relaxed, acquire or "
        "seq_cst)", s));
  if (op == OP_STORE && (mo == __ATOMIC_ACQUIRE || mo == __ATOMIC_ACQ_REL))
    return luaL_argerror(L, idx, lua_pushfstring(L,
        "memory order '%s' is invalid for a store (relaxed, release or "
        "seq_cst)", s));
  return mo;
}

/* ---- integer fields */

typedef struct Field {
  void *p;        /* the field's address                     */
  int size;       /* 1, 2, 4 or 8                            */
  int sign;       /* the C type is signed                    */
  const Mapping *m; /* the mapping it lies in                */
  const CType *t; /* NULL when found by the fast path        */
  int vidx, nidx; /* where the view and the field's name are: 1 and 2, or
                   * the upvalues of a bound ref (atomic_ref) */
} Field;

/* The name of field f, for messages: its key (an array index is a number,
 * pushed as a string rather than converted in place). */
static const char *field_name(lua_State *L, const Field *f) {
  if (lua_type(L, f->nidx) == LUA_TSTRING) return lua_tostring(L, f->nidx);
  return lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, f->nidx));
}

/*
 * Field at (view vidx, name nidx) as an integer fit for atomics, for reading
 * (write == 0) or writing.  Raises for anything else: not an integer or
 * enum of 1/2/4/8 bytes, or not naturally aligned (a packed struct).  A
 * bit-field is refused by shm_view_field itself or here by its type name.
 */
static void int_field(lua_State *L, int vidx, int nidx, int write, Field *f) {
  const CType *t;
  f->vidx = vidx;
  f->nidx = nidx;
  if (vidx == 1 && nidx == 2 &&
      (f->p = shm_view_int(L, write, &f->size, &f->sign, &f->m)) != NULL) {
    f->t = NULL; /* looked up only for an error message: field_type */
    return;
  }
  f->p = shm_view_field(L, vidx, nidx, &t, write, &f->m);
  f->t = t;
  if ((t->kind != CK_INT && t->kind != CK_ENUM) ||
      (t->size != 1 && t->size != 2 && t->size != 4 && t->size != 8))
    luaL_error(L, "field '%s' (%s) is not an integer field: atomics need an "
               "integer or enum of 1, 2, 4 or 8 bytes", field_name(L, f),
               t->name ? t->name : "?");
  f->size = (int)t->size;
  f->sign = t->is_signed;
  if (((uintptr_t)f->p & (uintptr_t)(f->size - 1)) != 0)
    luaL_error(L, "field '%s' is not naturally aligned for atomics",
               field_name(L, f));
}

/* A 32-bit integer field, 4-aligned: what a futex word must be. */
static uint32_t *futex_field(lua_State *L, int vidx, int nidx, int write,
                             Field *f) {
  const CType *t;
  f->vidx = vidx;
  f->nidx = nidx;
  if (vidx == 1 && nidx == 2 &&
      (f->p = shm_view_int(L, write, &f->size, &f->sign, &f->m)) != NULL &&
      f->size == 4) {
    f->t = NULL;
    return (uint32_t *)f->p;
  }
  f->p = shm_view_field(L, vidx, nidx, &t, write, &f->m);
  f->t = t;
  if ((t->kind != CK_INT && t->kind != CK_ENUM) || t->size != 4)
    luaL_error(L, "field '%s' (%s) is not a 32-bit integer field: futexes "
               "need one", field_name(L, f), t->name ? t->name : "?");
  f->size = 4;
  f->sign = t->is_signed;
  if (((uintptr_t)f->p & 3) != 0)
    luaL_error(L, "field '%s' is not 4-byte aligned: futexes need that",
               field_name(L, f));
  return (uint32_t *)f->p;
}

/*
 * After `fn` accessed field f (at arg 2): raises if the access faulted, as
 * a view access does.  SIGBUS: the object behind the mapping is shorter
 * than the mapping (truncated, say); mapping.c's handler let the access
 * complete on a page of zeros, so what was read or written was not the
 * object's, and marked the mapping dead.
 */
static void check_fault(lua_State *L, const Field *f, const char *fn) {
  if (__builtin_expect(shm_faulted(f->m), 0))
    shm_checkfault(L, f->m, lua_pushfstring(L, "%s(%s)", fn, field_name(L, f)));
}

/*
 * A futex call on field f failed with EFAULT: if that is because the page
 * lies past the end of the object, raise as check_fault does (reading the
 * word makes the SIGBUS happen); else the caller reports EFAULT.
 */
static void futex_fault(lua_State *L, const Field *f, const char *fn) {
  (void)__atomic_load_n((const uint32_t *)f->p, __ATOMIC_RELAXED);
  check_fault(L, f, fn);
}

/*
 * The C type of field f, for messages: the fast path leaves it unknown.
 * Found without looking at the mapping, so that a finalizer that unmaps it
 * while the message is built does not change the message.
 */
static const char *field_type(lua_State *L, const Field *f) {
  const CType *t = f->t;
  if (t == NULL) t = shm_view_field_type(L, f->vidx, f->nidx);
  return t->name ? t->name : "?";
}

/*
 * The integer at `idx` as the bits to store into field `f`.  With
 * pattern == 0 the value must fit the field's C type; with pattern != 0
 * (operands of add/sub/and/or/xor) anything that fits the signed or the
 * unsigned type of that width.  Raises otherwise.
 */
static uint64_t check_value(lua_State *L, int idx, const Field *f,
                            int pattern) {
  int bits = f->size * 8, ok = 0;
  lua_Integer x = 0, lo = LUA_MININTEGER, hi = LUA_MAXINTEGER;
  if (bits < 64) {
    lo = (f->sign || pattern) ? -((lua_Integer)1 << (bits - 1)) : 0;
    hi = (f->sign && !pattern) ? ((lua_Integer)1 << (bits - 1)) - 1
                               : ((lua_Integer)1 << bits) - 1;
  }
  if (lua_type(L, idx) == LUA_TNUMBER) x = lua_tointegerx(L, idx, &ok);
  if (!ok || x < lo || x > hi) {
    const char *got = lua_type(L, idx) == LUA_TNUMBER
                          ? luaL_tolstring(L, idx, NULL)
                          : luaL_typename(L, idx);
    luaL_error(L, "field '%s' (%s) expects an integer in %I..%I, got %s",
               field_name(L, f), field_type(L, f),
               (LUAI_UACINT)lo, (LUAI_UACINT)hi, got);
  }
  return (uint64_t)x;
}

/* Pushes the low f->size bytes of `raw` as the field's type reads them. */
static void push_value(lua_State *L, uint64_t raw, const Field *f) {
  lua_Integer v;
  switch (f->size) {
  case 1: v = f->sign ? (lua_Integer)(int8_t)raw : (lua_Integer)(uint8_t)raw; break;
  case 2: v = f->sign ? (lua_Integer)(int16_t)raw : (lua_Integer)(uint16_t)raw; break;
  case 4: v = f->sign ? (lua_Integer)(int32_t)raw : (lua_Integer)(uint32_t)raw; break;
  default: v = (lua_Integer)raw; break;
  }
  lua_pushinteger(L, v);
}

/*
 * The builtins want a constant memory order (GCC silently treats any other
 * as seq_cst), so each operation is spelled out per order and per size.
 */
#define BY_ORDER(mo, X)                                                      \
  switch (mo) {                                                              \
  case __ATOMIC_RELAXED: X(__ATOMIC_RELAXED);                                \
  case __ATOMIC_ACQUIRE: X(__ATOMIC_ACQUIRE);                                \
  case __ATOMIC_RELEASE: X(__ATOMIC_RELEASE);                                \
  case __ATOMIC_ACQ_REL: X(__ATOMIC_ACQ_REL);                                \
  default: X(__ATOMIC_SEQ_CST);                                              \
  }

#define LOAD_SIZED(MO)                                                       \
  switch (size) {                                                            \
  case 1: return __atomic_load_n((uint8_t *)p, MO);                          \
  case 2: return __atomic_load_n((uint16_t *)p, MO);                         \
  case 4: return __atomic_load_n((uint32_t *)p, MO);                         \
  default: return __atomic_load_n((uint64_t *)p, MO);                        \
  }

static uint64_t do_load(void *p, int size, int mo) {
  switch (mo) { /* loads: relaxed, acquire, seq_cst only */
  case __ATOMIC_RELAXED: LOAD_SIZED(__ATOMIC_RELAXED);
  case __ATOMIC_ACQUIRE: LOAD_SIZED(__ATOMIC_ACQUIRE);
  default: LOAD_SIZED(__ATOMIC_SEQ_CST);
  }
}

#define STORE_SIZED(MO)                                                      \
  switch (size) {                                                            \
  case 1: __atomic_store_n((uint8_t *)p, (uint8_t)v, MO); return;            \
  case 2: __atomic_store_n((uint16_t *)p, (uint16_t)v, MO); return;          \
  case 4: __atomic_store_n((uint32_t *)p, (uint32_t)v, MO); return;          \
  default: __atomic_store_n((uint64_t *)p, v, MO); return;                   \
  }

static void do_store(void *p, int size, uint64_t v, int mo) {
  switch (mo) { /* stores: relaxed, release, seq_cst only */
  case __ATOMIC_RELAXED: STORE_SIZED(__ATOMIC_RELAXED);
  case __ATOMIC_RELEASE: STORE_SIZED(__ATOMIC_RELEASE);
  default: STORE_SIZED(__ATOMIC_SEQ_CST);
  }
}

enum { RMW_XCHG, RMW_ADD, RMW_SUB, RMW_AND, RMW_OR, RMW_XOR };
static const char *const rmw_name[] = {"atomic_exchange", "atomic_add", "atomic_sub",
                                       "atomic_and", "atomic_or", "atomic_xor"};

#define FETCH_SIZED(fn, MO)                                                  \
  switch (size) {                                                            \
  case 1: return __atomic_##fn((uint8_t *)p, (uint8_t)v, MO);                \
  case 2: return __atomic_##fn((uint16_t *)p, (uint16_t)v, MO);              \
  case 4: return __atomic_##fn((uint32_t *)p, (uint32_t)v, MO);              \
  default: return __atomic_##fn((uint64_t *)p, v, MO);                       \
  }
#define XCHG_MO(MO) FETCH_SIZED(exchange_n, MO)
#define ADD_MO(MO) FETCH_SIZED(fetch_add, MO)
#define SUB_MO(MO) FETCH_SIZED(fetch_sub, MO)
#define AND_MO(MO) FETCH_SIZED(fetch_and, MO)
#define OR_MO(MO) FETCH_SIZED(fetch_or, MO)
#define XOR_MO(MO) FETCH_SIZED(fetch_xor, MO)

/* One read-modify-write; returns the old bits. */
static uint64_t do_rmw(void *p, int size, int op, uint64_t v, int mo) {
  switch (op) {
  case RMW_XCHG: BY_ORDER(mo, XCHG_MO)
  case RMW_ADD: BY_ORDER(mo, ADD_MO)
  case RMW_SUB: BY_ORDER(mo, SUB_MO)
  case RMW_AND: BY_ORDER(mo, AND_MO)
  case RMW_OR: BY_ORDER(mo, OR_MO)
  default: BY_ORDER(mo, XOR_MO)
  }
}

/* C11: the failure order of a CAS is the success order without release. */
#define CAS_T(T, MO, FAIL)                                                   \
  {                                                                          \
    T e = (T)*expected;                                                      \
    int ok = __atomic_compare_exchange_n((T *)p, &e, (T)desired, 0, MO, FAIL); \
    *expected = (uint64_t)e;                                                 \
    return ok;                                                               \
  }
#define CAS_SIZED(MO, FAIL)                                                  \
  switch (size) {                                                            \
  case 1: CAS_T(uint8_t, MO, FAIL)                                           \
  case 2: CAS_T(uint16_t, MO, FAIL)                                          \
  case 4: CAS_T(uint32_t, MO, FAIL)                                          \
  default: CAS_T(uint64_t, MO, FAIL)                                         \
  }

/* Strong CAS; stores the value found into *expected; returns success. */
static int do_cas(void *p, int size, uint64_t *expected, uint64_t desired,
                  int mo) {
  switch (mo) {
  case __ATOMIC_RELAXED: CAS_SIZED(__ATOMIC_RELAXED, __ATOMIC_RELAXED)
  case __ATOMIC_ACQUIRE: CAS_SIZED(__ATOMIC_ACQUIRE, __ATOMIC_ACQUIRE)
  case __ATOMIC_RELEASE: CAS_SIZED(__ATOMIC_RELEASE, __ATOMIC_RELAXED)
  case __ATOMIC_ACQ_REL: CAS_SIZED(__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)
  default: CAS_SIZED(__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)
  }
}

/* ---- Lua functions: atomics
 *
 * Each operation is a body taking the field and the stack index `a` of its
 * first argument after the field: 3 for shm.atomic_*(v, f, ...), 1 for the
 * functions of a bound ref (r.op(...); see atomic_ref).  Inlined: both
 * callers are hot.
 */
#define HOT static inline __attribute__((always_inline))

/* load: the order at a (none, top < a: seq_cst, without looking at it) */
HOT int load_at(lua_State *L, Field *f, int a, int top) {
  int mo = top < a ? __ATOMIC_SEQ_CST : check_order(L, a, OP_LOAD);
  uint64_t x = do_load(f->p, f->size, mo);
  check_fault(L, f, "atomic_load");
  push_value(L, x, f);
  return 1;
}

/* store: the value at a, the order at a + 1 (top: the stack's top) */
HOT int store_at(lua_State *L, Field *f, int a, int top) {
  uint64_t x = check_value(L, a, f, 0);
  int mo = top <= a ? __ATOMIC_SEQ_CST : check_order(L, a + 1, OP_STORE);
  do_store(f->p, f->size, x, mo);
  check_fault(L, f, "atomic_store");
  return 0;
}

/* a read-modify-write: the operand at a, the order at a + 1; the old value */
HOT int rmw_at(lua_State *L, Field *f, int a, int op) {
  uint64_t x = check_value(L, a, f, op != RMW_XCHG);
  int mo = check_order(L, a + 1, OP_RMW);
  x = do_rmw(f->p, f->size, op, x, mo);
  check_fault(L, f, rmw_name[op]);
  push_value(L, x, f);
  return 1;
}

/* cas: expected at a, desired at a + 1, the order at a + 2; ok, old */
HOT int cas_at(lua_State *L, Field *f, int a) {
  uint64_t expected = check_value(L, a, f, 0), desired = check_value(L, a + 1, f, 0);
  int mo = check_order(L, a + 2, OP_RMW);
  int ok = do_cas(f->p, f->size, &expected, desired, mo);
  check_fault(L, f, "atomic_cas");
  lua_pushboolean(L, ok);
  push_value(L, expected, f);
  return 2;
}

/*
 * shm.atomic_load(v, f [, order]) -> the field's value.  Without an order
 * (two arguments) it skips the order's check: spin loops call this most.
 */
static int atomic_load(lua_State *L) {
  Field f;
  int top = lua_gettop(L);
  if (top == 2 &&
      (f.p = shm_view_int(L, 0, &f.size, &f.sign, &f.m)) != NULL) {
    f.t = NULL;
    f.vidx = 1;
    f.nidx = 2;
  } else {
    int_field(L, 1, 2, 0, &f);
  }
  return load_at(L, &f, 3, top);
}

/* shm.atomic_store(v, f, x [, order]): no results.  As atomic_load, a
 * faster way without an order. */
static int atomic_store(lua_State *L) {
  Field f;
  int top = lua_gettop(L);
  if (top == 3 &&
      (f.p = shm_view_int(L, 1, &f.size, &f.sign, &f.m)) != NULL) {
    f.t = NULL;
    f.vidx = 1;
    f.nidx = 2;
  } else {
    int_field(L, 1, 2, 1, &f);
  }
  return store_at(L, &f, 3, top);
}

/* The read-modify-writes: (v, f, operand [, order]) -> old value. */
static int rmw(lua_State *L, int op) {
  Field f;
  int_field(L, 1, 2, 1, &f);
  return rmw_at(L, &f, 3, op);
}

static int atomic_exchange(lua_State *L) { return rmw(L, RMW_XCHG); }
static int atomic_add(lua_State *L) { return rmw(L, RMW_ADD); }
static int atomic_sub(lua_State *L) { return rmw(L, RMW_SUB); }
static int atomic_and(lua_State *L) { return rmw(L, RMW_AND); }
static int atomic_or(lua_State *L) { return rmw(L, RMW_OR); }
static int atomic_xor(lua_State *L) { return rmw(L, RMW_XOR); }

/*
 * shm.atomic_cas(v, f, expected, desired [, order]) -> ok, old
 * A strong compare-and-swap: ok is true when the field held `expected` and
 * now holds `desired`; old is what the field held either way.
 */
static int atomic_cas(lua_State *L) {
  Field f;
  int_field(L, 1, 2, 1, &f);
  return cas_at(L, &f, 3);
}

/* shm.atomic_fence([order]): a thread fence of that order. */
static int atomic_fence(lua_State *L) {
  switch (check_order(L, 1, OP_RMW)) {
  case __ATOMIC_RELAXED: break; /* C11: no effect */
  case __ATOMIC_ACQUIRE: __atomic_thread_fence(__ATOMIC_ACQUIRE); break;
  case __ATOMIC_RELEASE: __atomic_thread_fence(__ATOMIC_RELEASE); break;
  case __ATOMIC_ACQ_REL: __atomic_thread_fence(__ATOMIC_ACQ_REL); break;
  default: __atomic_thread_fence(__ATOMIC_SEQ_CST); break;
  }
  return 0;
}

/* ---- futexes */

/*
 * shm.futex_wait(v, f, expected [, timeout_s]) -> true | nil, msg, errno
 * Sleeps while the 32-bit field holds `expected` (FUTEX_WAIT, shared: the
 * field may be mapped at different addresses in different processes).
 * true means woken, which includes spurious wake-ups: callers re-check the
 * value and wait again.  EAGAIN: the value differed already; ETIMEDOUT:
 * timeout_s passed (measured on CLOCK_MONOTONIC); EINTR: a signal.
 */
static int futex_wait_at(lua_State *L, Field *f, int a) {
  uint32_t expected = (uint32_t)check_value(L, a, f, 0);
  int64_t tns = opt_timeout(L, a + 1);
  struct timespec ts = ns_to_timespec(tns < 0 ? 0 : tns);
  if (futex_call((uint32_t *)f->p, FUTEX_WAIT, expected, tns < 0 ? NULL : &ts) != 0) {
    int e = errno;
    if (e == EFAULT) futex_fault(L, f, "futex_wait");
    return shm_fail(L, "futex_wait", field_name(L, f), e);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int futex_wait(lua_State *L) {
  Field f;
  futex_field(L, 1, 2, 0, &f);
  return futex_wait_at(L, &f, 3);
}

/* The wake count at `idx`: default 1, "all" or anything >= INT_MAX is all. */
static int wake_count(lua_State *L, int idx) {
  lua_Integer n;
  if (lua_isnoneornil(L, idx)) return 1;
  if (lua_type(L, idx) == LUA_TSTRING) {
    const char *s = lua_tostring(L, idx);
    if (strcmp(s, "all") == 0) return INT_MAX;
    return luaL_argerror(L, idx, "count (integer >= 0) or \"all\" expected");
  }
  n = luaL_checkinteger(L, idx);
  luaL_argcheck(L, n >= 0, idx, "count must be non-negative");
  return n > INT_MAX ? INT_MAX : (int)n;
}

/*
 * shm.futex_wake(v, f [, n]) -> number of sleepers woken
 * Wakes up to n (default 1; "all" or math.maxinteger: every) processes
 * sleeping in futex_wait on the field.  Changes nothing in memory: store
 * the new value first.
 */
static int futex_wake_at(lua_State *L, Field *f, int a) {
  long r = futex_call((uint32_t *)f->p, FUTEX_WAKE, (uint32_t)wake_count(L, a), NULL);
  if (r < 0) {
    int e = errno;
    if (e == EFAULT) futex_fault(L, f, "futex_wake");
    return shm_fail(L, "futex_wake", field_name(L, f), e);
  }
  lua_pushinteger(L, r);
  return 1;
}

static int futex_wake(lua_State *L) {
  Field f;
  futex_field(L, 1, 2, 0, &f);
  return futex_wake_at(L, &f, 3);
}

/* ---- the adaptive wait: wait_change and notify
 *
 * Protocol (both sides must agree on whether a waiters field is used):
 *
 *   waiter:  wait_change(v, "f", old [, timeout_s [, "waiters"]])
 *            returns as soon as f != old, with the new value.
 *   waker:   notify(v, "f", new [, "waiters"])
 *            stores new into f, then wakes every sleeper on f.
 *
 * "waiters" names another integer field of the same view, initially 0,
 * that counts processes about to sleep or sleeping on f.  With it, notify
 * makes the FUTEX_WAKE syscall only when the count is not zero, which is
 * what makes a spinning exchange cost no syscall at all.  Without it notify
 * always calls FUTEX_WAKE (correct, one syscall slower).
 *
 * Why no wake-up is lost: the sleeping side does
 *     W1: waiters += 1   (seq_cst RMW)
 *     R1: load f         (seq_cst)  -- sleep only if it still equals old
 *     FUTEX_WAIT(f, old) -- the kernel re-checks f == old atomically
 * and notify does
 *     W2: store f = new  (seq_cst)
 *     R2: load waiters   (seq_cst)  -- FUTEX_WAKE if non-zero
 * All four are seq_cst, so they occur in one total order.  If R2 reads 0,
 * W1 comes after R2, hence after W2, so R1 sees the new value and the
 * waiter does not sleep.  If R1 sees old, W2 comes after R1, hence after
 * W1, so R2 sees a non-zero count and notify wakes; should the wake come
 * before the waiter is asleep, FUTEX_WAIT finds f != old and returns
 * EAGAIN at once.  The waiter decrements the count after waking.
 *
 * Limits: a change from old to something and back to old between two
 * looks is not seen (ABA): use a counter that only moves forward (32-bit
 * wrap takes 2^32 notifications).  A waiter killed while asleep leaves the
 * count raised; notify then makes a harmless extra syscall.
 *
 * Waiting strategy, per call: spin on the value with a pause instruction
 * for up to a spin budget (nanoseconds), then sched_yield a few times, then
 * FUTEX_WAIT (with what remains of the timeout), in a loop.  Spinning wins
 * by two orders of magnitude when the peer runs on another CPU, and is a
 * disaster when the peer shares ours: it burns the time slice the peer
 * needs (bench/pingpong.c measures both).  So the budget adapts, per field
 * address (a small per-thread table):
 *   - a wait satisfied while spinning keeps the budget (or raises it to
 *     twice the time that spin took), unless the spin overran its budget,
 *     which means this process was preempted while spinning: the CPU is
 *     shared, so that counts as a spin that ran out.  A spin satisfied
 *     within its first few pauses changes nothing and reads no clock: as
 *     many pauses as take less than SPIN_MIN_NS / 2 (timed once per
 *     thread: quiet_pauses), so such a spin cannot raise a budget of
 *     SPIN_MIN_NS (1 us) or more, and a clock reading (30 ns here) at the
 *     moment the value changes lies on the round trip's critical path.
 *     Here a pause takes 16-20 ns and most of a channel's waits across cores
 *     end within 8 to 24 pauses: 25-30 quiet pauses instead of a fixed 16
 *     made its round trip 25 ns (4%) faster.  The price: a preemption
 *     within those first pauses goes unnoticed (the budget stays as it
 *     was, and the next spin that runs out halves it);
 *   - a spin that ran out halves it, down to zero (straight to yielding);
 *   - a wait satisfied right after a sched_yield that returned quickly
 *     (nobody else ran on this CPU: the peer made progress elsewhere)
 *     doubles it again (from zero: to the minimum).
 * On one core the peer only ever progresses while we yield or sleep, and a
 * yield that lets it run is slow, so the budget falls to zero and stays
 * there; the sched_yield then hands the CPU straight to the peer.
 *
 * The yields adapt too.  A wait that yielded in vain, slept, and got its
 * answer only after more than SLOW_PEER_NS (200 us) learnt that the peer
 * is slow: yielding does not help, and sleeping hands the CPU to a peer
 * that shares it as well as yielding does.  So the next waits that get as
 * far as yielding go straight to sleep instead: 4 of them, then 8, ... up
 * to 64 after each such wait; a wait satisfied while yielding, or within
 * SLOW_PEER_NS all told, ends that.  A useless yield phase costs up to
 * YIELD_MAX_NS of CPU: with a peer answering in 0.5 ms, wait_change cost
 * 19 us of CPU a wait against 10 for a plain futex_wait loop; now the
 * same as that loop (atomic_spec checks it).  Answers that come sooner
 * keep the yields: when wake-ups are slow (tens of us, on a VM whose host
 * is busy) both sides of an exchange can fall asleep in every round, and
 * a yield that catches an answer is how they get out of it; skipping the
 * yields there too made those rounds worse (in a few interleaved rounds
 * with steal time: 20-36 us round trips, against 15-23 us).
 */

#define SPIN_MAX_NS 20000  /* about the cost of a cross-CPU futex wake-up */
#define SPIN_MIN_NS 1000
#define SPIN_START_NS 5000
#define YIELD_MAX 16       /* yields before sleeping ...                   */
#define YIELD_MAX_NS 10000 /* ... or this long, whichever comes first      */
#define FAST_YIELD_NS 1500 /* a sched_yield this quick switched to nobody  */
#define SKIP_MIN 4         /* waits that skip yielding after a useless     */
#define SKIP_MAX 64        /* yield phase: doubling from SKIP_MIN          */
#define SLOW_PEER_NS 200000 /* ... if the answer took longer than this     */
#define ADAPT_SLOTS 64

typedef struct Adapt {
  uintptr_t addr;
  int64_t budget; /* spin budget in ns */
  int skip;       /* the next waits that sleep without yielding first */
  int period;     /* the skip set by the last useless yield phase, or 0 */
} Adapt;

static __thread Adapt adapt_table[ADAPT_SLOTS];

static Adapt *adapt_for(const void *p) {
  uintptr_t a = (uintptr_t)p;
  uint32_t h = (uint32_t)(a >> 2) * 2654435761u;
  Adapt *s = &adapt_table[h >> 26]; /* 64 slots */
  if (s->addr != a) {
    s->addr = a;
    s->budget = SPIN_START_NS;
    s->skip = s->period = 0;
  }
  return s;
}

/* The next skip after a failed try: SKIP_MIN, then doubling to SKIP_MAX. */
static int backoff(int period) {
  return period == 0 ? SKIP_MIN : period * 2 > SKIP_MAX ? SKIP_MAX : period * 2;
}

/*
 * After a wait that slept (having yielded in vain, or skipped yielding):
 * an answer (or timeout) that came within SLOW_PEER_NS ends the skipping;
 * a later one, after yields in vain, means yielding was pointless by far,
 * so the next waits skip it.
 */
static void after_sleep(Adapt *st, int64_t t0, int skipped) {
  if (now_ns() - t0 <= SLOW_PEER_NS) st->skip = st->period = 0;
  else if (!skipped) st->skip = st->period = backoff(st->period);
}

/*
 * How many pauses a spin may take before a change it sees is worth a clock
 * reading (see above): as many as take less than SPIN_MIN_NS / 2, timed
 * once per thread over QUIET_MAX pauses, between 1 and QUIET_MAX (a timing
 * that was preempted only makes the number smaller: the spins then read
 * the clock sooner than they need to).  25 to 30 here (16-20 ns a pause).
 * The timing costs a thread's first spinning wait about 1.3 us, once.
 */
#define QUIET_MAX 64
static __thread int quiet_n; /* 0: not timed yet */

static int quiet_pauses(void) {
  if (quiet_n == 0) {
    int64_t t = now_ns(), q;
    for (int i = 0; i < QUIET_MAX; i++) shm_cpu_relax();
    t = now_ns() - t;
    q = t <= 0 ? QUIET_MAX : QUIET_MAX * (SPIN_MIN_NS / 2) / t;
    quiet_n = q < 1 ? 1 : q > QUIET_MAX ? QUIET_MAX : (int)q;
  }
  return quiet_n;
}

static void halve(Adapt *st) {
  st->budget = st->budget / 2 < SPIN_MIN_NS ? 0 : st->budget / 2;
}

/* An optional field name at `idx` for the waiter count, or 0 if none. */
static int opt_waiters(lua_State *L, int idx, int write, const Field *f,
                       Field *w) {
  if (lua_isnoneornil(L, idx)) return 0;
  int_field(L, f->vidx, idx, write, w);
  if ((char *)w->p < (char *)f->p + f->size &&
      (char *)f->p < (char *)w->p + w->size)
    luaL_argerror(L, idx, "the waiters field must not overlap the value field");
  return 1;
}

/*
 * The adaptive wait itself, for wait_change and channel.c: waits until the
 * 32-bit word *p no longer holds `old` (timeout_ns < 0: forever; 0: one
 * look), counting itself in the integer at `w` (wsize bytes: 1/2/4/8; NULL:
 * none) while it sleeps, or, with `flag` not NULL, raising w (4 bytes) to
 * fv + 1 and setting *flag to 1, for the channel (see shm_wait32_on); on
 * the futex word *f (NULL: on p),
 * which also keys the spin budget.  Returns 0 with the new
 * value in *newval, or ETIMEDOUT, or the errno of a failed FUTEX_WAIT
 * (EINTR...).
 */
static int wait_core(uint32_t *p, uint32_t old, uint32_t *f, int64_t tns,
                     void *w, int wsize, int *flag, uint32_t *newval) {
  uint32_t v;
  int64_t t0, deadline, t, budget;
  int k, err, skipped = 0;
  Adapt *st;
  long r;

  if ((v = __atomic_load_n(p, __ATOMIC_ACQUIRE)) != old) goto changed;
  if (tns == 0) return ETIMEDOUT;
  t0 = now_ns();
  deadline = tns < 0 ? INT64_MAX : t0 + tns;
  st = adapt_for(f != NULL ? f : p); /* a stable address to learn on */

  /* 1. spin, checking the clock every 16 pauses */
  budget = st->budget;
  if (budget > 0) {
    int64_t end = deadline - t0 < budget ? deadline : t0 + budget;
    int quiet = quiet_pauses();
    for (k = 1;; k++) {
      shm_cpu_relax();
      if ((v = __atomic_load_n(p, __ATOMIC_ACQUIRE)) != old) {
        if (k < quiet) goto changed; /* too soon to change the budget */
        t = now_ns() - t0;
        if (t > budget + SPIN_MIN_NS) /* preempted while spinning: the CPU */
          halve(st);                  /* is shared */
        else if (2 * t > st->budget)
          st->budget = 2 * t > SPIN_MAX_NS ? SPIN_MAX_NS : 2 * t;
        goto changed;
      }
      if ((k & 15) == 0 && now_ns() >= end) break;
    }
    halve(st);
  }

  /* 2. yield: hands the CPU to the peer if it shares ours (unless yields
   * have been useless lately) */
  if (st->skip > 0) {
    st->skip--;
    skipped = 1;
  } else {
    for (k = 0; k < YIELD_MAX; k++) {
      int64_t t1 = now_ns();
      if (t1 >= deadline) return ETIMEDOUT;
      if (t1 - t0 > YIELD_MAX_NS + budget) break;
      sched_yield();
      if ((v = __atomic_load_n(p, __ATOMIC_ACQUIRE)) != old) {
        if (now_ns() - t1 < FAST_YIELD_NS)
          st->budget = st->budget == 0 ? SPIN_MIN_NS
                     : st->budget * 2 > SPIN_MAX_NS ? SPIN_MAX_NS : st->budget * 2;
        st->period = 0;
        goto changed;
      }
    }
  }

  /* 3. sleep: on p itself, or on f, read before the count goes up */
  for (;;) {
    struct timespec ts, *tsp = NULL;
    uint32_t fv = old;
    if (tns >= 0) {
      t = deadline - now_ns();
      if (t <= 0) {
        err = ETIMEDOUT;
        break;
      }
      ts = ns_to_timespec(t);
      tsp = &ts;
    }
    if (f != NULL) fv = __atomic_load_n(f, __ATOMIC_SEQ_CST);
    if (w != NULL) {
      if (flag != NULL) {
        do_store(w, wsize, (uint32_t)(fv + 1), __ATOMIC_SEQ_CST);
        *flag = 1;
      } else {
        do_rmw(w, wsize, RMW_ADD, 1, __ATOMIC_SEQ_CST);
      }
    }
    r = 0;
    err = 0;
    if (__atomic_load_n(p, __ATOMIC_SEQ_CST) == old) {
      r = futex_call(f != NULL ? f : p, FUTEX_WAIT, fv, tsp);
      err = errno;
    }
    if (w != NULL && flag == NULL) do_rmw(w, wsize, RMW_SUB, 1, __ATOMIC_SEQ_CST);
    if ((v = __atomic_load_n(p, __ATOMIC_ACQUIRE)) != old) {
      err = 0;
      break;
    }
    if (r != 0 && err != EAGAIN) break; /* ETIMEDOUT, EINTR... */
    /* woken, spuriously or by an ABA change: look again */
  }
  after_sleep(st, t0, skipped);
  if (err != 0) return err;

changed:
  *newval = v;
  return 0;
}

/*
 * The channel's wait (src/channel.c): as wait_change, but sleeps on the
 * futex word *f instead of *p, for a protocol whose notifier, after
 * changing *p, always changes *f and then wakes f (channel.c: the consumer
 * watches a record's stamp and sleeps on head), and with one sleeper per
 * word, so *sleeping is a flag, not a count: fv, the value of *f it will
 * sleep on, is read first, then the flag is raised to fv + 1, then *p is
 * re-checked; the flag is left raised, and the waker lowers it when it
 * wakes (shm_notify32_clear).  The argument above holds with the flag for
 * the count and f's store after p's: a change of *p after the re-check
 * comes with a change of *f that either makes FUTEX_WAIT(f, fv) return
 * EAGAIN or is followed by a wake that sees the flag.
 */
int shm_wait32_on(uint32_t *p, uint32_t old, uint32_t *f, int64_t timeout_ns,
                  uint32_t *sleeping, uint32_t *newval, int *raised) {
  return wait_core(p, old, f, timeout_ns, sleeping, 4, raised, newval);
}

/*
 * The notify core: stores x into *p (seq_cst) and wakes every sleeper on
 * it, only if the count at `w` (wsize bytes; NULL: none) is not zero.
 * Returns the number woken, or -1 with errno set.
 */
static long notify_core(uint32_t *p, uint32_t x, void *w, int wsize) {
  __atomic_store_n(p, x, __ATOMIC_SEQ_CST);
  if (w != NULL && do_load(w, wsize, __ATOMIC_SEQ_CST) == 0) return 0;
  return futex_call(p, FUTEX_WAKE, INT_MAX, NULL);
}

/*
 * The channel's notify: stores x into *p (seq_cst); if the flag *sleeping
 * says that a process sleeps (or is about to) on another value of *p than
 * x, lowers the flag (compare-and-swap) and wakes every sleeper on p.
 *
 * Why a flag the waker lowers: a sleeper takes a while to wake up
 * (microseconds, tens of them when its CPU is idle), and a count it lowers
 * itself once awake makes every store meanwhile a FUTEX_WAKE syscall.  A
 * producer doing that for every message slows to the syscall's speed; the
 * consumer then catches up and sleeps again, and the two settle at a
 * fraction of their speed: bench/ipc_bench.lua saw runs at a tenth, with a
 * million FUTEX_WAKEs a second; lowered by the waker, the flag costs one
 * wake per sleep.
 *
 * Why not for a sleeper on x itself: it read x, the value this call
 * stored, before raising its flag, so its re-check came after this store;
 * it waits for a later one, and lowering its flag here, with a wake that
 * comes before it sleeps, would let that later store wake nobody
 * (tools/model/channel.pml, mutant 9).  Any other value is not *p's any
 * more, so that sleeper's FUTEX_WAIT returns at once or is woken here.
 */
long shm_notify32_clear(uint32_t *p, uint32_t x, uint32_t *sleeping) {
  uint32_t v;
  __atomic_store_n(p, x, __ATOMIC_SEQ_CST);
  v = __atomic_load_n(sleeping, __ATOMIC_SEQ_CST);
  if (v == 0 || v == x + 1) return 0;
  __atomic_compare_exchange_n(sleeping, &v, 0, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return futex_call(p, FUTEX_WAKE, INT_MAX, NULL);
}

/*
 * shm.wait_change(v, f, old [, timeout_s [, waiters]])
 *   -> the new value | nil, msg, ETIMEDOUT (or EINTR)
 * Waits until the 32-bit field f no longer holds `old`; see the protocol
 * above.  timeout_s 0 only looks once.
 */
static int wait_change_at(lua_State *L, Field *f, int a) {
  Field w;
  uint32_t *p = (uint32_t *)f->p;
  uint32_t old = (uint32_t)check_value(L, a, f, 0), v = 0;
  int64_t tns = opt_timeout(L, a + 1);
  int has_w = opt_waiters(L, a + 2, 1, f, &w), err;
  (void)__atomic_load_n(p, __ATOMIC_RELAXED); /* a fault shows before the wait */
  if (has_w) (void)do_load(w.p, w.size, __ATOMIC_RELAXED); /* (the same mapping) */
  check_fault(L, f, "wait_change");
  err = wait_core(p, old, NULL, tns, has_w ? w.p : NULL, has_w ? w.size : 4, NULL, &v);
  check_fault(L, f, "wait_change");
  if (err != 0) return shm_fail(L, "wait_change", field_name(L, f), err);
  push_value(L, v, f);
  return 1;
}

static int wait_change(lua_State *L) {
  Field f;
  futex_field(L, 1, 2, 0, &f);
  return wait_change_at(L, &f, 3);
}

/*
 * shm.notify(v, f, x [, waiters]) -> number of sleepers woken
 * Stores x into the 32-bit field f (seq_cst) and wakes every process
 * sleeping on it; with a waiters field, only when it is not zero (then
 * returns 0 without a syscall).  See the protocol above.
 */
static int notify_at(lua_State *L, Field *f, int a) {
  Field w;
  uint32_t x = (uint32_t)check_value(L, a, f, 0);
  int has_w = opt_waiters(L, a + 1, 0, f, &w);
  long r = notify_core((uint32_t *)f->p, x, has_w ? w.p : NULL, has_w ? w.size : 4);
  int e = errno;
  check_fault(L, f, "notify");
  if (r < 0) return shm_fail(L, "notify", field_name(L, f), e);
  lua_pushinteger(L, r);
  return 1;
}

static int notify(lua_State *L) {
  Field f;
  futex_field(L, 1, 2, 1, &f);
  return notify_at(L, &f, 3);
}

/* ---- bound refs
 *
 * shm.atomic_ref(v, f) -> r: field f of view v (an integer fit for atomics,
 * checked now as shm.atomic_load checks it), with the operations above as
 * functions of r taking what follows v, f: r.load([order]),
 * r.store(x [, order]), r.exchange(x [, order]),
 * r.fetch_add/_sub/_and/_or/_xor(n [, order]), r.cas(expected, desired
 * [, order]), r.futex_wait(expected [, timeout_s]), r.futex_wake([n]),
 * r.wait_change(old [, timeout_s [, waiters]]), r.notify(x [, waiters]).
 * Same checks, results and errors; what they save is finding the field by
 * name at every call.  They are called with a dot, not as methods: a hot
 * loop takes them into locals (local load = r.load) and then makes one
 * Lua->C call an operation with nothing looked up (no self, no field
 * name): a store+load pair in a Lua loop takes 668 instructions against
 * 927 by name and 513 for an unchecked load/store by address (callgrind),
 * and a spin ping-pong between two processes is 37-64 ns (about 10%)
 * faster a round trip than by name (20 interleaved pairs of cells).
 *
 * Each function is a C closure over: the Ref (upvalue 1: the mapping, the
 * field's offset in it, its size and sign), the view (2: it keeps the
 * mapping alive) and the key (3).  A mapping never moves or shrinks while
 * it is live (it is unmapped or replaced, and then its addr is NULL), so a
 * function finds the field at m->addr + off while the mapping is live with
 * the protection it needs; otherwise it resolves the field from
 * the view and the key as the shm.atomic_* functions do, which raises the
 * same error they would (or finds the field, if the protection is back).
 */
typedef struct Ref {
  const Mapping *m;
  size_t off;
  int size, sign;
} Ref;

/* The field of the bound ref whose function runs, for reading or writing, as
 * a futex word (32 bits) or any integer. */
HOT void ref_field(lua_State *L, int write, int futex, Field *f) {
  const Ref *r = (const Ref *)lua_touserdata(L, lua_upvalueindex(1));
  const Mapping *m = r->m;
  if (__builtin_expect(m->addr != NULL && (m->prot & (write ? PROT_WRITE : PROT_READ)) &&
                       (!futex || r->size == 4), 1)) {
    f->p = m->addr + r->off;
    f->size = r->size;
    f->sign = r->sign;
    f->m = m;
    f->t = NULL;
    f->vidx = lua_upvalueindex(2);
    f->nidx = lua_upvalueindex(3);
    return;
  }
  if (futex) futex_field(L, lua_upvalueindex(2), lua_upvalueindex(3), write, f);
  else int_field(L, lua_upvalueindex(2), lua_upvalueindex(3), write, f);
}

/* A function of a ref: the field (write, futex) and the body it calls with
 * its arguments (from 1). */
#define REF_FN(name, write, futex, call)                                 \
  static int ref_##name(lua_State *L) {                                      \
    Field f;                                                                 \
    ref_field(L, write, futex, &f);                                          \
    return call;                                                             \
  }
REF_FN(load, 0, 0, load_at(L, &f, 1, lua_gettop(L)))
REF_FN(store, 1, 0, store_at(L, &f, 1, lua_gettop(L)))
REF_FN(exchange, 1, 0, rmw_at(L, &f, 1, RMW_XCHG))
REF_FN(fetch_add, 1, 0, rmw_at(L, &f, 1, RMW_ADD))
REF_FN(fetch_sub, 1, 0, rmw_at(L, &f, 1, RMW_SUB))
REF_FN(fetch_and, 1, 0, rmw_at(L, &f, 1, RMW_AND))
REF_FN(fetch_or, 1, 0, rmw_at(L, &f, 1, RMW_OR))
REF_FN(fetch_xor, 1, 0, rmw_at(L, &f, 1, RMW_XOR))
REF_FN(cas, 1, 0, cas_at(L, &f, 1))
REF_FN(futex_wait, 0, 1, futex_wait_at(L, &f, 1))
REF_FN(futex_wake, 0, 1, futex_wake_at(L, &f, 1))
REF_FN(wait_change, 0, 1, wait_change_at(L, &f, 1))
REF_FN(notify, 1, 1, notify_at(L, &f, 1))

static int atomic_ref(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"load", ref_load}, {"store", ref_store}, {"exchange", ref_exchange},
    {"fetch_add", ref_fetch_add}, {"fetch_sub", ref_fetch_sub},
    {"fetch_and", ref_fetch_and}, {"fetch_or", ref_fetch_or},
    {"fetch_xor", ref_fetch_xor}, {"cas", ref_cas},
    {"futex_wait", ref_futex_wait}, {"futex_wake", ref_futex_wake},
    {"wait_change", ref_wait_change}, {"notify", ref_notify},
    {NULL, NULL}
  };
  Field f;
  Ref *r;
  int i, ridx;
  int_field(L, 1, 2, 0, &f); /* raises unless a readable integer fit for atomics */
  lua_settop(L, 2);
  r = (Ref *)lua_newuserdatauv(L, sizeof *r, 0);
  ridx = lua_gettop(L);
  r->m = f.m;
  r->off = (size_t)((unsigned char *)f.p - f.m->addr);
  r->size = f.size;
  r->sign = f.sign;
  lua_createtable(L, 0, (int)(sizeof fns / sizeof fns[0]) - 1);
  for (i = 0; fns[i].name != NULL; i++) {
    lua_pushvalue(L, ridx);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, fns[i].func, 3);
    lua_setfield(L, -2, fns[i].name);
  }
  return 1;
}

/* ---- robust process-shared mutexes
 *
 * A pthread_mutex_t field, initialised by mutex_init as process-shared,
 * robust and error-checking (relocking it returns EDEADLK instead of
 * hanging; unlocking one you do not hold returns EPERM).
 *
 * Robust mutexes carry a hazard that has nothing to do with the lock
 * itself: glibc keeps the robust mutexes a thread holds in a linked list
 * whose links live inside the mutexes (in the shared memory), and it
 * writes through those links on every robust lock and unlock.  If the
 * memory of a held mutex goes away (the mapping is unmapped or replaced)
 * or its bytes are overwritten (a view write, another process), glibc
 * would write through a dangling or forged pointer and crash.  So this
 * file records, per thread, which mutexes it holds (in lock order, which
 * is glibc's list order) and before each robust call drops the records
 * whose memory is gone and rewrites every link from the records.  This
 * assumes the thread holds robust mutexes only through these functions.
 * The list layout is glibc's on 64-bit targets (__PTHREAD_MUTEX_HAVE_PREV):
 * each link points at the __next member of the neighbour, or at the
 * thread's robust list head (from get_robust_list, kernel ABI).
 */

#define HELD_MAX 64
#define HELD_TABLE "shm.atomic.held" /* registry: mutex address -> mapping */

typedef struct Held {
  pthread_mutex_t *mu;
  const Mapping *map;
} Held;

static __thread Held held[HELD_MAX];
static __thread int nheld;
static pthread_mutexattr_t mutex_attr;
static int mutex_kind; /* __kind of a mutex made with mutex_attr */

#if defined(__GLIBC__) && defined(__PTHREAD_MUTEX_HAVE_PREV) && \
    __PTHREAD_MUTEX_HAVE_PREV
#define ROBUST_LINKS 1
static __thread void **robust_head; /* &robust_list_head.list, or NULL */
static __thread int robust_head_known;

static void **robust_head_addr(void) {
  if (!robust_head_known) {
    struct robust_list_head *h = NULL;
    size_t len = 0;
    if (syscall(SYS_get_robust_list, 0, &h, &len) == 0 && h != NULL)
      robust_head = (void **)&h->list;
    robust_head_known = 1;
  }
  return robust_head;
}

static void *link_of(pthread_mutex_t *mu) { return &mu->__data.__list.__next; }
#endif

static int held_find(const pthread_mutex_t *mu) {
  int i;
  for (i = 0; i < nheld; i++)
    if (held[i].mu == mu) return i;
  return -1;
}

/* Forgets record i, and the mapping reference that kept it alive. */
static void held_remove(lua_State *L, int i) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, HELD_TABLE);
  lua_pushnil(L);
  lua_rawsetp(L, -2, held[i].mu);
  lua_pop(L, 1);
  memmove(&held[i], &held[i + 1], sizeof(Held) * (size_t)(nheld - i - 1));
  nheld--;
}

/*
 * Before any robust call: forget held mutexes whose memory is no longer
 * the writable mapping they were locked in, then make glibc's list (the
 * links inside the mutexes and the head) exactly the records.
 */
static void held_sync(lua_State *L) {
  int i;
  for (i = nheld - 1; i >= 0; i--) {
    const Mapping *m = shm_findmapping((uintptr_t)held[i].mu, sizeof(pthread_mutex_t));
    if (m != held[i].map || !(m->prot & PROT_WRITE)) held_remove(L, i);
  }
#ifdef ROBUST_LINKS
  {
    void **head = robust_head_addr();
    if (head == NULL) return;
    for (i = 0; i < nheld; i++) {
      struct __pthread_internal_list *l = &held[i].mu->__data.__list;
      void *next = i == 0 ? (void *)head : link_of(held[i - 1].mu);
      void *prev = i == nheld - 1 ? (void *)head : link_of(held[i + 1].mu);
      if ((void *)l->__next != next) l->__next = next;
      if ((void *)l->__prev != prev) l->__prev = prev;
    }
    {
      void *want = nheld > 0 ? link_of(held[nheld - 1].mu) : (void *)head;
      if (*head != want) *head = want;
    }
  }
#endif
}

/*
 * Records that this thread now holds `mu`, which lies in mapping `m`, and
 * keeps m's userdata alive (registry) until the unlock: a collected mapping
 * would be unmapped under a held lock.
 */
static void held_add(lua_State *L, pthread_mutex_t *mu, const Mapping *m) {
  int i = held_find(mu);
  if (i >= 0) held_remove(L, i);
  held[nheld].mu = mu;
  held[nheld].map = m;
  nheld++;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, HELD_TABLE);
  shm_pushmapping(L, m);
  lua_rawsetp(L, -2, mu);
  lua_pop(L, 1);
  held_sync(L); /* in case glibc's view and ours had drifted apart */
}

/*
 * The pthread_mutex_t field at (1, 2), checked for type and 8-alignment,
 * its mapping in *map.  With `inited`, also that mutex_init has made it
 * (its kind is ours): glibc is never handed bytes it did not format.
 */
static pthread_mutex_t *mutex_field(lua_State *L, int inited,
                                    const Mapping **map) {
  const CType *t;
  int kind;
  pthread_mutex_t *mu = (pthread_mutex_t *)shm_view_field(L, 1, 2, &t, 1, NULL);
  const char *name = lua_tostring(L, 2);
  if (t->size != sizeof(pthread_mutex_t) || t->name == NULL ||
      strcmp(t->name, "pthread_mutex_t") != 0)
    luaL_error(L, "field '%s' (%s) is not a pthread_mutex_t", name,
               t->name ? t->name : "?");
  if (((uintptr_t)mu & 7) != 0)
    luaL_error(L, "field '%s' is not 8-byte aligned: a pthread_mutex_t "
               "needs that", name);
  *map = shm_findmapping((uintptr_t)mu, sizeof *mu);
  if (*map == NULL)
    luaL_error(L, "field '%s' does not lie in a live mapping", name);
  kind = __atomic_load_n(&mu->__data.__kind, __ATOMIC_RELAXED);
  /* its last bytes too: a mutex may straddle the object's end */
  (void)__atomic_load_n((const uint64_t *)(void *)(mu + 1) - 1, __ATOMIC_RELAXED);
  if (shm_faulted(*map))
    shm_checkfault(L, *map, lua_pushfstring(L, "mutex '%s'", name));
  if (inited && kind != mutex_kind)
    luaL_error(L, "mutex '%s' is not initialised: call shm.mutex_init first",
               name);
  return mu;
}

/*
 * shm.mutex_init(v, m) -> true | nil, msg, errno
 * Formats the field as a process-shared, robust, error-checking mutex,
 * unlocked.  Only one process should do this, before any other uses it.
 */
static int mutex_init(lua_State *L) {
  const Mapping *map;
  pthread_mutex_t *mu = mutex_field(L, 0, &map);
  int i = held_find(mu), rc;
  if (i >= 0) {
    held_remove(L, i);
    held_sync(L);
  }
  rc = pthread_mutex_init(mu, &mutex_attr);
  if (rc != 0) return shm_fail(L, "pthread_mutex_init", lua_tostring(L, 2), rc);
  lua_pushboolean(L, 1);
  return 1;
}

/*
 * What lock and trylock return for rc, the result of `call` on mu: the
 * failure triple, or (held now, recorded) true, or "owner_died".
 */
static int lock_result(lua_State *L, pthread_mutex_t *mu, const Mapping *map,
                       int rc, const char *call) {
  if (rc != 0 && rc != EOWNERDEAD) return shm_fail(L, call, lua_tostring(L, 2), rc);
  held_add(L, mu, map);
  if (rc == EOWNERDEAD)
    lua_pushliteral(L, "owner_died");
  else
    lua_pushboolean(L, 1);
  return 1;
}

/*
 * shm.mutex_lock(v, m [, timeout_s])
 *   -> true | "owner_died" | nil, msg, errno
 * "owner_died": the previous owner died holding it; the caller holds it now,
 * should repair the data it guards and call shm.mutex_consistent (else the
 * next unlock makes the mutex unusable: ENOTRECOVERABLE).  Failures:
 * ETIMEDOUT (timeout_s on CLOCK_MONOTONIC), ENOTRECOVERABLE, EDEADLK (this
 * thread holds it already).
 */
static int mutex_lock(lua_State *L) {
  const Mapping *map;
  pthread_mutex_t *mu = mutex_field(L, 1, &map);
  int64_t tns = opt_timeout(L, 3);
  int rc;
  if (nheld >= HELD_MAX && held_find(mu) < 0)
    luaL_error(L, "too many mutexes held at once (%d)", HELD_MAX);
  held_sync(L);
  if (tns < 0) {
    rc = pthread_mutex_lock(mu);
  } else {
    struct timespec abs = ns_to_timespec(now_ns() + tns);
    rc = pthread_mutex_clocklock(mu, CLOCK_MONOTONIC, &abs);
  }
  return lock_result(L, mu, map, rc,
                     tns < 0 ? "pthread_mutex_lock" : "pthread_mutex_clocklock");
}

/*
 * shm.mutex_trylock(v, m) -> true | "owner_died" | false | nil, msg, errno
 * false: another owner holds it (EBUSY).
 */
static int mutex_trylock(lua_State *L) {
  const Mapping *map;
  pthread_mutex_t *mu = mutex_field(L, 1, &map);
  int rc;
  if (nheld >= HELD_MAX && held_find(mu) < 0)
    luaL_error(L, "too many mutexes held at once (%d)", HELD_MAX);
  held_sync(L);
  rc = pthread_mutex_trylock(mu);
  if (rc == EBUSY) {
    lua_pushboolean(L, 0);
    return 1;
  }
  return lock_result(L, mu, map, rc, "pthread_mutex_trylock");
}

/*
 * shm.mutex_unlock(v, m) -> true | nil, msg, errno
 * EPERM when this thread does not hold it (through this address).
 */
static int mutex_unlock(lua_State *L) {
  const Mapping *map;
  pthread_mutex_t *mu = mutex_field(L, 1, &map);
  int i, rc;
  held_sync(L);
  if ((i = held_find(mu)) < 0)
    return shm_fail(L, "pthread_mutex_unlock", lua_tostring(L, 2), EPERM);
  rc = pthread_mutex_unlock(mu);
  if (rc != 0)
    return shm_fail(L, "pthread_mutex_unlock", lua_tostring(L, 2), rc);
  held_remove(L, i);
  lua_pushboolean(L, 1);
  return 1;
}

/*
 * shm.mutex_consistent(v, m) -> true | nil, msg, errno
 * After "owner_died": marks the state repaired, so that the mutex stays
 * usable after the next unlock.  EINVAL if it is not in that state.
 */
static int mutex_consistent(lua_State *L) {
  const Mapping *map;
  pthread_mutex_t *mu = mutex_field(L, 1, &map);
  int rc = pthread_mutex_consistent(mu);
  if (rc != 0)
    return shm_fail(L, "pthread_mutex_consistent", lua_tostring(L, 2), rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* Builds the attribute every mutex_init uses and learns its __kind. */
static int mutex_setup(void) {
  static int done;
  pthread_mutex_t probe;
  if (done) return 0;
  if (pthread_mutexattr_init(&mutex_attr) != 0 ||
      pthread_mutexattr_setpshared(&mutex_attr, PTHREAD_PROCESS_SHARED) != 0 ||
      pthread_mutexattr_setrobust(&mutex_attr, PTHREAD_MUTEX_ROBUST) != 0 ||
      pthread_mutexattr_settype(&mutex_attr, PTHREAD_MUTEX_ERRORCHECK) != 0 ||
      pthread_mutex_init(&probe, &mutex_attr) != 0)
    return -1;
  mutex_kind = probe.__data.__kind;
  pthread_mutex_destroy(&probe);
  done = 1;
  return 0;
}

/* Adds the atomics, futex, wait and mutex functions to the table on top. */
void shm_atomic_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"atomic_load", atomic_load},
    {"atomic_store", atomic_store},
    {"atomic_exchange", atomic_exchange},
    {"atomic_add", atomic_add},
    {"atomic_sub", atomic_sub},
    {"atomic_and", atomic_and},
    {"atomic_or", atomic_or},
    {"atomic_xor", atomic_xor},
    {"atomic_cas", atomic_cas},
    {"atomic_fence", atomic_fence},
    {"futex_wait", futex_wait},
    {"futex_wake", futex_wake},
    {"wait_change", wait_change},
    {"notify", notify},
    {"atomic_ref", atomic_ref},
    {"mutex_init", mutex_init},
    {"mutex_lock", mutex_lock},
    {"mutex_trylock", mutex_trylock},
    {"mutex_unlock", mutex_unlock},
    {"mutex_consistent", mutex_consistent},
    {NULL, NULL}
  };
  if (mutex_setup() != 0) luaL_error(L, "shm: cannot set up mutex attributes");
  luaL_setfuncs(L, funcs, 0);
}
