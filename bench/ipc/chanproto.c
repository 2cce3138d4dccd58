/*
 * bench/ipc/chanproto.c: a PROTOTYPE, for bench/ipc_bench.lua only, of what
 * lua/shm/channel.lua's send and recv cost as lean C calls.  It speaks
 * version 3 of the protocol on the same `struct shm_channel` (stamped
 * records, the wrap stamp, head published with the sleep-flag wake-up of
 * src/atomic.c's shm_notify32_clear, tail_seen) and waits the way
 * src/atomic.c's wait_change does (spin for an adaptive budget, then
 * sched_yield, then FUTEX_WAIT; yields skipped while the peer answers slowly), so
 * the benchmark can show the gap between the real implementation and a
 * bare one, measured rather than guessed.
 *
 *   local cp = package.loadlib(path, "luaopen_chanproto")()
 *   local ch = cp.open(address)     -- integer address of the header
 *   cp.send(ch, msg)                -- waits for room, never times out
 *   cp.recv(ch)                     -- -> msg, or nil once closed and empty
 *   cp.recv_len(ch)                 -- as recv, but -> the message's length:
 *                                      no Lua string is made (a diagnostic of
 *                                      what making it costs a round trip)
 *   cp.send_batch(ch, list)         -- every message, head published once
 *   cp.recv_batch(ch, max)          -- -> list of 1..max, tail published once
 *   cp.load32(address)              -- -> the uint32_t there (seq_cst)
 *   cp.store32(address, x)          -- stores x there (seq_cst)
 *
 * load32 and store32 check nothing at all: the least a Lua->C call can do
 * for an atomic load or store, so that ipc_bench can show the floor under
 * shmlua's atomics (which check the mapping, its protection and the value
 * on every call, and shm.atomic_load/atomic_store find the field by name).
 *
 * A send at p = head (rec = 4 + the payload padded to 4; q = where the next
 * record starts): waits for room (judged from tail_seen, reading tail only
 * when that says no), stores 0 at q, writes the payload (when wrapping, the
 * record and its stamp at offset 0), stores the stamp at p (release), then
 * publishes head = q.  A recv loads the stamp at tail (acquire; 0: empty,
 * WRAP: the record is at 0), copies the record out and publishes tail.
 * The consumer never reads head: it spins on the stamp and sleeps on head.
 *
 * Unlike src/channel.c, it keeps its indices in the Chan (head, tail and
 * tail_seen, read from the header by open) and checks nothing but record
 * lengths: it trusts the address and the header (a bench tool, loaded by
 * nothing else).  Built by ipc_bench.lua into BUILD/bench/chanproto.so.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "lauxlib.h"
#include "lua.h"

struct shm_channel {
  uint32_t magic, capacity, msg_size, closed;
  uint32_t pad0[12];
  uint32_t head, head_waiters, tail_seen;
  uint32_t pad1[13];
  uint32_t tail, tail_waiters;
  uint32_t pad2[14];
};

#define WRAP 0xFFFFFFFFu
#define SPIN_MAX_NS 20000
#define SPIN_MIN_NS 1000
#define YIELD_MAX 16
#define YIELD_MAX_NS 10000
#define FAST_YIELD_NS 1500
#define SKIP_MIN 4
#define SKIP_MAX 64
#define SLOW_PEER_NS 200000

/* What a kind of wait learnt (src/atomic.c's Adapt). */
typedef struct Adapt {
  int64_t budget;    /* spin budget in ns */
  int skip, period;  /* waits that skip yielding, and the last such skip */
} Adapt;

static int backoff(int period) {
  return period == 0 ? SKIP_MIN : period * 2 > SKIP_MAX ? SKIP_MAX : period * 2;
}

typedef struct Chan {
  struct shm_channel *h;
  unsigned char *ring;
  uint32_t cap, mask, max;
  uint32_t head, published, tail, tail_seen; /* published: head as last stored */
  int recovered;                             /* the first send walked the stamps */
  Adapt adapt[2];     /* waiting for a stamp, for tail */
} Chan;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void relax(void) { __builtin_ia32_pause(); }

/* as src/atomic.c's quiet_pauses: the pauses that take < SPIN_MIN_NS / 2 */
static int quiet_n;
static int quiet_pauses(void) {
  if (quiet_n == 0) {
    int64_t t = now_ns(), q;
    for (int i = 0; i < 64; i++) relax();
    t = now_ns() - t;
    q = t <= 0 ? 64 : 64 * (SPIN_MIN_NS / 2) / t;
    quiet_n = q < 1 ? 1 : q > 64 ? 64 : (int)q;
  }
  return quiet_n;
}

static uint32_t *stamp_at(Chan *c, uint32_t pos) {
  return (uint32_t *)(void *)(c->ring + pos);
}

/*
 * Waits until *watch != old (the rules of wait_change): spins, yields, then
 * sleeps on *sleep: reads it, raises the flag *waiters to the value read
 * + 1, re-checks *watch and FUTEX_WAITs on the value read (the peer
 * changes *watch, then *sleep, then reads *waiters and lowers it when it
 * wakes).  Returns the new value, or *watch as it is once the
 * channel is closed.
 */
static uint32_t wait_change(Chan *c, uint32_t *watch, uint32_t old, uint32_t *sleep,
                            uint32_t *waiters, Adapt *a) {
  uint32_t v;
  int64_t t0 = now_ns(), b = a->budget;
  int skipped = 0;
  if (b > 0) {
    int quiet = quiet_pauses();
    for (int k = 1;; k++) {
      relax();
      if ((v = __atomic_load_n(watch, __ATOMIC_ACQUIRE)) != old) {
        int64_t t;
        if (k < quiet) return v; /* as src/atomic.c: no clock, no change */
        t = now_ns() - t0;
        if (2 * t > a->budget) a->budget = 2 * t > SPIN_MAX_NS ? SPIN_MAX_NS : 2 * t;
        return v;
      }
      if ((k & 15) == 0 && now_ns() - t0 >= b) break;
    }
    a->budget = b / 2 < SPIN_MIN_NS ? 0 : b / 2;
  }
  if (a->skip > 0) {
    a->skip--;
    skipped = 1;
  } else {
    for (int k = 0; k < YIELD_MAX; k++) {
      int64_t t1 = now_ns();
      if (t1 - t0 > YIELD_MAX_NS + b) break;
      sched_yield();
      if ((v = __atomic_load_n(watch, __ATOMIC_ACQUIRE)) != old) {
        if (now_ns() - t1 < FAST_YIELD_NS)
          a->budget = a->budget == 0 ? SPIN_MIN_NS
                    : a->budget * 2 > SPIN_MAX_NS ? SPIN_MAX_NS : a->budget * 2;
        a->period = 0;
        return v;
      }
    }
  }
  /* one sleeper of a kind: a raised flag is a killed predecessor's or ours */
  if (__atomic_load_n(waiters, __ATOMIC_RELAXED) != 0)
    __atomic_store_n(waiters, 0, __ATOMIC_SEQ_CST);
  for (;;) {
    struct timespec ts = {0, 50000000};
    if (__atomic_load_n(&c->h->closed, __ATOMIC_SEQ_CST))
      return __atomic_load_n(watch, __ATOMIC_ACQUIRE);
    uint32_t seen = __atomic_load_n(sleep, __ATOMIC_SEQ_CST);
    __atomic_store_n(waiters, seen + 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(watch, __ATOMIC_SEQ_CST) == old)
      syscall(SYS_futex, sleep, FUTEX_WAIT, seen, &ts, NULL, 0);
    if ((v = __atomic_load_n(watch, __ATOMIC_ACQUIRE)) != old) break;
  }
  /* slept: a slow answer after yields in vain skips the next yields; a
   * quick one ends the skipping */
  if (now_ns() - t0 <= SLOW_PEER_NS) a->skip = a->period = 0;
  else if (!skipped) a->skip = a->period = backoff(a->period);
  return v;
}

/* Stores v into *p; wakes a sleeper on another value, lowering its flag. */
static void notify(uint32_t *p, uint32_t v, uint32_t *waiters) {
  uint32_t w;
  __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
  w = __atomic_load_n(waiters, __ATOMIC_SEQ_CST);
  if (w == 0 || w == v + 1) return;
  __atomic_compare_exchange_n(waiters, &w, 0, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  syscall(SYS_futex, p, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* Publishes c->head (step 5) if it moved since the last time. */
static void publish_head(Chan *c) {
  if (c->published == c->head) return;
  c->published = c->head;
  notify(&c->h->head, c->head, &c->h->head_waiters);
}

static int cp_open(lua_State *L) {
  struct shm_channel *h = (struct shm_channel *)(uintptr_t)luaL_checkinteger(L, 1);
  Chan *c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  c->h = h;
  c->ring = (unsigned char *)(h + 1);
  c->cap = h->capacity;
  c->mask = c->cap - 1;
  c->max = c->cap / 2 - 4;
  c->head = c->published = __atomic_load_n(&h->head, __ATOMIC_ACQUIRE);
  c->tail = c->tail_seen = __atomic_load_n(&h->tail, __ATOMIC_ACQUIRE);
  memset(c->adapt, 0, sizeof c->adapt);
  c->adapt[0].budget = c->adapt[1].budget = 5000;
  return 1;
}

/* Before the first send: walks the stamps from head to the first 0 (a
 * producer killed between a stamp and its head store) and publishes head
 * even if it did not move (one killed before its wake-up). */
static void recover(lua_State *L, Chan *c) {
  uint32_t walked = 0;
  for (;;) {
    uint32_t pos = c->head & c->mask, s = __atomic_load_n(stamp_at(c, pos), __ATOMIC_ACQUIRE);
    uint32_t step = s == WRAP ? c->cap - pos : (s + 6) & ~3u;
    if (s == 0) break;
    if ((s != WRAP && s - 1 > c->max) || (walked += step) > c->cap)
      luaL_error(L, "corrupt stamp after head");
    c->head += step;
  }
  c->published = c->head;
  notify(&c->h->head, c->head, &c->h->head_waiters);
  c->recovered = 1;
}

/* Waits for `want` bytes of room at head (unpublished records are
 * published before sleeping); 0 once closed. */
static int room_for(Chan *c, uint32_t want) {
  while (c->cap - (c->head - c->tail_seen) < want) {
    uint32_t t = __atomic_load_n(&c->h->tail, __ATOMIC_ACQUIRE);
    if (t == c->tail_seen) {
      publish_head(c);
      t = wait_change(c, &c->h->tail, t, &c->h->tail, &c->h->tail_waiters, &c->adapt[1]);
    }
    if (t == c->tail_seen) return 0; /* closed */
    c->tail_seen = t;
    __atomic_store_n(&c->h->tail_seen, t, __ATOMIC_RELAXED);
  }
  return 1;
}

/* Sends one record at head (steps 1 to 4); head not yet published. */
static int put(Chan *c, const char *s, size_t len) {
  uint32_t n = (uint32_t)len, rec = (n + 7) & ~3u;
  uint32_t pos = c->head & c->mask, left = c->cap - pos;
  uint32_t skip = rec <= left ? 0 : left, next = c->head + skip + rec;
  if (!room_for(c, skip + rec + 4)) return 0;
  __atomic_store_n(stamp_at(c, next & c->mask), 0, __ATOMIC_RELAXED);
  memcpy(c->ring + (skip ? 0 : pos) + 4, s, n);
  if (skip) __atomic_store_n(stamp_at(c, 0), n + 1, __ATOMIC_RELAXED);
  __atomic_store_n(stamp_at(c, pos), skip ? WRAP : n + 1, __ATOMIC_RELEASE);
  c->head = next;
  return 1;
}

static int cp_send(lua_State *L) {
  Chan *c = lua_touserdata(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  luaL_argcheck(L, c != NULL && len <= c->max, 2, "bad channel or message");
  if (!c->recovered) recover(L, c);
  if (__atomic_load_n(&c->h->closed, __ATOMIC_RELAXED) || !put(c, s, len)) return 0;
  publish_head(c);
  lua_pushboolean(L, 1);
  return 1;
}

static int cp_send_batch(lua_State *L) {
  Chan *c = lua_touserdata(L, 1);
  lua_Integer i, n;
  luaL_argcheck(L, c != NULL, 1, "channel expected");
  luaL_checktype(L, 2, LUA_TTABLE);
  if (!c->recovered) recover(L, c);
  n = (lua_Integer)lua_rawlen(L, 2);
  for (i = 1; i <= n; i++) {
    size_t len;
    const char *s;
    lua_rawgeti(L, 2, i);
    s = lua_tolstring(L, -1, &len);
    luaL_argcheck(L, s != NULL && len <= c->max, 2, "bad message");
    if (!put(c, s, len)) {
      publish_head(c);
      return 0;
    }
    lua_pop(L, 1);
  }
  publish_head(c);
  lua_pushinteger(L, n);
  return 1;
}

/* Waits for a stamp at tail: spins on it, sleeps on head; 0 once closed
 * and empty. */
static int data_ready(Chan *c) {
  uint32_t *st = stamp_at(c, c->tail & c->mask);
  if (__atomic_load_n(st, __ATOMIC_ACQUIRE) != 0) return 1;
  return wait_change(c, st, 0, &c->h->head, &c->h->head_waiters, &c->adapt[0]) != 0;
}

/* Pushes the record at tail (as a string, or as its length if `len`) and
 * advances tail (not yet published); returns 0, pushing nothing, if there
 * is none. */
static int take(lua_State *L, Chan *c, int len) {
  uint32_t pos = c->tail & c->mask, s = __atomic_load_n(stamp_at(c, pos), __ATOMIC_ACQUIRE);
  if (s == 0) return 0;
  if (s == WRAP) {
    c->tail += c->cap - pos;
    pos = 0;
    s = __atomic_load_n(stamp_at(c, 0), __ATOMIC_ACQUIRE);
  }
  if (s - 1 > c->max) luaL_error(L, "corrupt record");
  if (len) lua_pushinteger(L, s - 1);
  else lua_pushlstring(L, (const char *)c->ring + pos + 4, s - 1);
  c->tail += (s + 6) & ~3u;
  return 1;
}

static int recv_one(lua_State *L, int len) {
  Chan *c = lua_touserdata(L, 1);
  luaL_argcheck(L, c != NULL, 1, "channel expected");
  if (!data_ready(c) || !take(L, c, len)) return 0;
  notify(&c->h->tail, c->tail, &c->h->tail_waiters);
  return 1;
}

static int cp_recv(lua_State *L) { return recv_one(L, 0); }
static int cp_recv_len(lua_State *L) { return recv_one(L, 1); }

static int cp_recv_batch(lua_State *L) {
  Chan *c = lua_touserdata(L, 1);
  lua_Integer most = luaL_checkinteger(L, 2), k = 0;
  luaL_argcheck(L, c != NULL, 1, "channel expected");
  if (!data_ready(c)) return 0;
  lua_createtable(L, (int)(most < 256 ? most : 256), 0);
  while (k < most && take(L, c, 0)) lua_rawseti(L, -2, ++k);
  notify(&c->h->tail, c->tail, &c->h->tail_waiters);
  return 1;
}

static int cp_load32(lua_State *L) {
  uint32_t *p = (uint32_t *)(uintptr_t)lua_tointeger(L, 1);
  lua_pushinteger(L, __atomic_load_n(p, __ATOMIC_SEQ_CST));
  return 1;
}

static int cp_store32(lua_State *L) {
  uint32_t *p = (uint32_t *)(uintptr_t)lua_tointeger(L, 1);
  __atomic_store_n(p, (uint32_t)lua_tointeger(L, 2), __ATOMIC_SEQ_CST);
  return 0;
}

int luaopen_chanproto(lua_State *L);
int luaopen_chanproto(lua_State *L) {
  static const luaL_Reg f[] = {{"open", cp_open}, {"send", cp_send}, {"recv", cp_recv},
                              {"recv_len", cp_recv_len}, {"send_batch", cp_send_batch},
                              {"recv_batch", cp_recv_batch}, {"load32", cp_load32},
                              {"store32", cp_store32},
                              {NULL, NULL}};
  luaL_newlib(L, f);
  return 1;
}
