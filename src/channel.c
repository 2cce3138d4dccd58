/*
 * channel.c: the send/recv hot path of shm.channel (lua/shm/channel.lua)
 * in C, one Lua->C call a message.
 *
 *   shm.channel_send(hv, msg [, timeout_s])    -> true | nil, msg, errno
 *   shm.channel_try_send(hv, msg)              -> true | false | nil, msg, EPIPE
 *   shm.channel_send_batch(hv, list [, timeout_s]) -> count | nil, msg, errno, count
 *   shm.channel_recv(hv [, timeout_s])         -> msg | nil, msg, errno
 *   shm.channel_try_recv(hv)                   -> msg | nil | nil, msg, EPIPE
 *   shm.channel_recv_batch(hv, max [, timeout_s]) -> list | nil, msg, errno
 *   shm.channel_bind(hv) -> the six above bound to hv, taking the channel
 *                           object (any value) in place of hv: methods
 *
 * hv is a view of the channel's header (struct shm_channel, declared in
 * channel.lua; the layout and the protocol, version 3, are described
 * there).  These functions keep no state but the header: each call reads
 * its indices from shared memory, so a successor that attaches after a
 * kill carries on from them.  The producer writes the next record's 0
 * stamp, the payload, then the record's stamp (the message is sent), then
 * publishes head (shm_notify32_clear); the consumer learns of a record
 * from its stamp, copies the message into a Lua string, then publishes
 * tail: never before the copy, so a kill cannot lose or duplicate a
 * message except as channel.lua's header says.  The first send through a
 * binding (every unbound send) first repairs a head left behind a stamp by
 * a producer killed between the two.
 *
 * Nothing read from shared memory is trusted.  The header is checked
 * every unbound call, and once, at channel_bind, for the bound functions
 * (the methods), which keep the capacity and msg_size they checked (the
 * protocol never changes them; a later change in shared memory cannot make
 * a bound call leave the ring): the magic, that the capacity is a power of
 * two from 64 to 2^30, that header and ring lie inside one live writable
 * mapping (shm_findmapping), that msg_size is at most capacity/2 - 4.
 * Every call checks that the mapping is still live and writable, that
 * record lengths are at most capacity/2 - 4, that indices are 4-aligned and
 * no further apart than the capacity, and that a record lies inside the
 * ring.  A corrupt channel raises; it is never read or written out of
 * bounds.  (Keeping the header's first line out of the bound calls' path
 * also matters for speed: reading it every call cost the consumer a cache
 * miss a message, 13% of its throughput, as the producer's writes to the
 * adjacent head line pull it away.)  A fault on a truncated object (SIGBUS, handled by mapping.c)
 * raises after the copy, before publishing.
 *
 * Errors raised for misuse carry the position of the caller (of the method,
 * when bound), as error(msg, 2) in Lua would.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "shm.h"

#define CHANNEL_MAGIC 0x334e4843u /* "CHN3": version 3 of the protocol */
#define WRAP 0xFFFFFFFFu          /* stamp: the ring ends here */
#define SLICE_NS 50000000         /* sleepers look at `closed` this often */
#define ROOM_PAUSE_NS 1000        /* see has_room and wait_data */

/* The helpers of send and recv: inlined, which took a send+recv pair from
 * 1400 to 1193 instructions (callgrind) and raised send/recv throughput. */
#define HOT static inline __attribute__((always_inline))

/* The layout of struct shm_channel in channel.lua. */
typedef struct Chan {
  uint32_t magic;
  uint32_t capacity;
  uint32_t msg_size;
  uint32_t closed;
  uint32_t pad0[12];
  uint32_t head;
  uint32_t head_waiters; /* 0, or 1 + the head a sleeping consumer sleeps on */
  uint32_t tail_seen;
  uint32_t pad1[13];
  uint32_t tail;
  uint32_t tail_waiters; /* 0, or 1 + the tail a sleeping producer sleeps on */
  uint32_t pad2[14];
} Chan;

_Static_assert(sizeof(Chan) == 192, "struct shm_channel is 192 bytes");
_Static_assert(offsetof(Chan, head) == 64, "head at 64");
_Static_assert(offsetof(Chan, tail) == 128, "tail at 128");

/*
 * What a bound function remembers of its view (upvalue 3): the view's
 * mapping, kept alive by the view in upvalue 2, and the header's offset in
 * it; the header is at m->addr + off while the mapping is live.  cap and
 * fixed: the capacity and msg_size checked at bind time (header and ring
 * lie in m).  repaired: a send through this binding has checked head
 * against the stamps.  full: see has_room.  streaming: see wait_data.
 * raised: see wait_word.
 */
typedef struct Bound {
  const Mapping *m;
  size_t off;
  uint32_t cap, fixed;
  int repaired;
  int full;      /* the last look at tail found the ring nearly full */
  int streaming; /* the last recv found its message without waiting */
  int raised[2]; /* head_waiters, tail_waiters may be raised by us or a
                  * predecessor (not looked at since this binding raised it) */
} Bound;

/* One call's checked picture of the channel. */
typedef struct Ring {
  Chan *h;
  unsigned char *data;  /* the ring: capacity bytes after the header */
  uint32_t cap, mask;
  uint32_t max;         /* the longest message: cap/2 - 4 */
  uint32_t fixed;       /* msg_size: 0, or the size of every message */
  const Mapping *m;     /* the live mapping holding header and ring */
  Bound *b;             /* the binding, or NULL for an unbound call */
} Ring;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Raises "<position of the Lua caller>: <fmt ...>", as luaL_error. */
static int ch_error(lua_State *L, const char *fmt, ...) {
  va_list ap;
  luaL_where(L, 1);
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_concat(L, 2);
  return lua_error(L);
}

/* The failure triple of operation `op`: EPIPE reads "channel closed". */
static int ch_fail(lua_State *L, const char *op, int err) {
  if (err != EPIPE) {
    lua_pushfstring(L, "channel:%s", op);
    return shm_fail(L, lua_tostring(L, -1), NULL, err);
  }
  lua_pushnil(L);
  lua_pushfstring(L, "channel:%s: EPIPE: channel closed", op);
  lua_pushinteger(L, EPIPE);
  return 3;
}

/*
 * Checks the header view (upvalue 2 of a bound function, else argument 1)
 * through its "magic" field (the string in upvalue 1) and fills *r from
 * shared memory; raises for a value that is not a live writable view of a
 * sane channel.
 */
static void ring_check_unbound(lua_State *L, Ring *r);

HOT void ring_check(lua_State *L, Ring *r) {
  Bound *b = (Bound *)lua_touserdata(L, lua_upvalueindex(3));
  if (__builtin_expect(b != NULL && b->m->addr != NULL &&
      (b->m->prot & (PROT_READ | PROT_WRITE)) == (PROT_READ | PROT_WRITE), 1)) {
    /* live, readable and writable; the header was checked at bind */
    Chan *h = (Chan *)(b->m->addr + b->off);
    r->m = b->m;
    r->h = h;
    r->data = (unsigned char *)h + sizeof(Chan);
    r->cap = b->cap;
    r->mask = b->cap - 1;
    r->max = b->cap / 2 - 4;
    r->fixed = b->fixed;
    r->b = b;
    return;
  }
  ring_check_unbound(L, r);
}

/* ring_check for unbound calls, and bound ones whose mapping is gone. */
static __attribute__((noinline)) void ring_check_unbound(lua_State *L, Ring *r) {
  const struct CType *t;
  int vidx = lua_type(L, lua_upvalueindex(2)) == LUA_TNONE ? 1 : lua_upvalueindex(2);
  Chan *h = (Chan *)shm_view_field(L, vidx, lua_upvalueindex(1), &t, 1, NULL);
  uint32_t cap, fixed;
  if (((uintptr_t)h & 3) != 0)
    ch_error(L, "channel: the header is not 4-byte aligned");
  if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != CHANNEL_MAGIC)
    ch_error(L, "channel: not a channel header (bad magic)");
  cap = __atomic_load_n(&h->capacity, __ATOMIC_RELAXED);
  fixed = __atomic_load_n(&h->msg_size, __ATOMIC_RELAXED);
  if (cap < 64 || cap > (1u << 30) || (cap & (cap - 1)) != 0 || fixed > cap / 2 - 4)
    ch_error(L, "channel: corrupt header (capacity %I, msg_size %I)",
             (lua_Integer)cap, (lua_Integer)fixed);
  r->m = shm_findmapping((uintptr_t)h, sizeof(Chan) + (size_t)cap);
  if (r->m == NULL || (r->m->prot & (PROT_READ | PROT_WRITE)) != (PROT_READ | PROT_WRITE))
    ch_error(L, "channel: header and ring of %I bytes do not lie in one live "
             "writable mapping (corrupt capacity?)", (lua_Integer)cap);
  r->h = h;
  r->data = (unsigned char *)h + sizeof(Chan);
  r->cap = cap;
  r->mask = cap - 1;
  r->max = cap / 2 - 4;
  r->fixed = fixed;
  r->b = NULL; /* (a bound call gets here only if shm_view_field did not
                * raise for its dead or read-only mapping: it runs unbound) */
}

/* An optional timeout at idx: -1 for none (nil, or >= 1e9 s), else ns. */
HOT int64_t opt_timeout(lua_State *L, int idx) {
  lua_Number s = 0;
  if (lua_isnoneornil(L, idx)) return -1;
  if (lua_type(L, idx) != LUA_TNUMBER || !((s = lua_tonumber(L, idx)) >= 0))
    ch_error(L, "channel: timeout must be nil or a number of seconds >= 0");
  if (s >= 1e9) return -1;
  return (int64_t)(s * 1e9);
}

/* The deadline of a wait starting now for timeout tns (-1: none). */
static int64_t deadline_of(int64_t tns) {
  return tns < 0 ? -1 : now_ns() + tns;
}

/*
 * The message at idx, checked against the channel (a string, of the fixed
 * size if there is one, at most max bytes); raises otherwise.
 */
HOT const char *check_msg(lua_State *L, int idx, const Ring *r, size_t *n) {
  const char *s;
  if (lua_type(L, idx) != LUA_TSTRING)
    ch_error(L, "channel: message must be a string, got %s",
             lua_typename(L, lua_type(L, idx) == LUA_TNONE ? LUA_TNIL : lua_type(L, idx)));
  s = lua_tolstring(L, idx, n);
  if (r->fixed != 0 && *n != r->fixed)
    ch_error(L, "channel: messages are %I bytes, got %I", (lua_Integer)r->fixed,
             (lua_Integer)*n);
  if (*n > r->max)
    ch_error(L, "channel: message of %I bytes exceeds the maximum of %I",
             (lua_Integer)*n, (lua_Integer)r->max);
  return s;
}

HOT uint32_t rec_of(size_t n) { return (uint32_t)((n + 7) & ~(size_t)3); }

HOT int is_closed(const Ring *r) {
  return __atomic_load_n(&r->h->closed, __ATOMIC_ACQUIRE) != 0;
}

/* An index this side owns (relaxed: only this side writes it), checked. */
HOT uint32_t own_index(lua_State *L, uint32_t *p, const char *name) {
  uint32_t v = __atomic_load_n(p, __ATOMIC_RELAXED);
  if ((v & 3) != 0)
    ch_error(L, "channel: corrupt %s index %I (not a multiple of 4)", name,
             (lua_Integer)v);
  return v;
}

/* Bytes in use between tail and head; raises if more than the capacity. */
HOT uint32_t used_of(lua_State *L, const Ring *r, uint32_t head, uint32_t tail) {
  uint32_t used = head - tail;
  if (used > r->cap)
    ch_error(L, "channel: corrupt indices (head %I, tail %I, capacity %I)",
             (lua_Integer)head, (lua_Integer)tail, (lua_Integer)r->cap);
  return used;
}

/* The stamp word at ring position pos (any index: taken modulo the ring). */
HOT uint32_t *stamp_at(const Ring *r, uint32_t pos) {
  return (uint32_t *)(void *)(r->data + (pos & r->mask));
}

/*
 * Waits until the word *p (the stamp at tail, or tail itself) is no longer
 * `old`, in slices of at most SLICE_NS, until `deadline` (ns; -1: never) or
 * the channel is closed; sleeps on the futex word *f (head for a stamp,
 * tail itself for tail), raising the flag *sleeping (shm_wait32_on; the
 * peer lowers it when it wakes).  Only one process of a kind ever sleeps
 * on a word, and this one is not asleep, so a raised flag of its kind was
 * left by a predecessor killed in its sleep, or by this process in a wait
 * that ended without a wake: it is lowered first, so that the peer does
 * not make a useless wake call.
 *
 * A binding looks at the flag only when it may be raised: on its first
 * wait of the kind (a predecessor's), and after a wait of its own that
 * raised it.  Looking at every wait would read the line the peer writes
 * head or tail on, at every message: in a ping-pong across CPUs that cost
 * about 0.23 us a round trip of 1.1 (bench/ipc_bench.lua).  Unbound calls
 * look every time.  Skipping the look costs at most one useless wake by
 * the peer (which lowers the flag), never a lost one: the flag is a hint
 * to the waker, and a sleeper raises its own before it re-checks *p.
 * Returns 0 with the new value in *nv, EPIPE or ETIMEDOUT.
 */
static int wait_word(const Ring *r, uint32_t *p, uint32_t old, uint32_t *f,
                     uint32_t *sleeping, int64_t deadline, uint32_t *nv) {
  int dummy = 1, *raised = &dummy;
  if (r->b != NULL) raised = &r->b->raised[sleeping == &r->h->head_waiters ? 0 : 1];
  if (*raised) {
    if (__atomic_load_n(sleeping, __ATOMIC_RELAXED) != 0)
      __atomic_store_n(sleeping, 0, __ATOMIC_SEQ_CST);
    *raised = 0;
  }
  for (;;) {
    int64_t slice = SLICE_NS;
    if (is_closed(r)) return EPIPE;
    if (deadline >= 0) {
      int64_t left = deadline - now_ns();
      if (left <= 0) return ETIMEDOUT;
      if (left < slice) slice = left;
    }
    if (shm_wait32_on(p, old, f, slice, sleeping, nv, raised) == 0) return 0;
    /* a slice ran out, or EINTR: look at closed and the clock again */
  }
}

/* ---- the producer */

/*
 * Room a record of rec bytes needs at head: the record, a wrap skip when it
 * does not fit before the ring's end, and the next record's 0 stamp.
 */
HOT uint32_t want_of(const Ring *r, uint32_t head, uint32_t rec) {
  uint32_t room = r->cap - (head & r->mask);
  return (rec <= room ? rec : room + rec) + 4;
}

/*
 * Whether `want` bytes are free at head: judged from tail_seen (a value
 * tail had, so never more room than there is), then, only if that says
 * no, from tail itself, which is remembered in tail_seen.  Raises for
 * corrupt indices.
 *
 * A producer that keeps the ring full would otherwise read tail for every
 * message and find room for that one message: tail's line then crosses
 * the CPUs twice a message (the consumer's publish must take it back),
 * which costs the consumer, the side that limits throughput, about a
 * cache miss a message.  So a binding whose last look at tail found the
 * ring nearly full (less than a quarter free beyond what it needed) and
 * that is allowed to wait (not try_send, not a zero timeout) first spins
 * ROOM_PAUSE_NS without touching tail: the consumer, which has most of the
 * ring to read, frees several records meanwhile, and the producer then
 * writes them in one go.  This raised send/recv throughput by about 10%
 * (bench/ipc_bench.lua).  The cost: such a send may return up to 1 us
 * later than it could have (also once after the consumer drained the ring
 * while the producer was away, as full is only updated on a look).
 */
HOT int has_room(lua_State *L, const Ring *r, uint32_t head, uint32_t want,
             int may_pause) {
  uint32_t seen = __atomic_load_n(&r->h->tail_seen, __ATOMIC_RELAXED), t, room;
  if (head - seen <= r->cap && r->cap - (head - seen) >= want) return 1;
  if (may_pause && r->b != NULL && r->b->full) {
    int64_t until = now_ns() + ROOM_PAUSE_NS;
    while (now_ns() < until) shm_cpu_relax();
  }
  t = __atomic_load_n(&r->h->tail, __ATOMIC_ACQUIRE);
  if (t != seen) __atomic_store_n(&r->h->tail_seen, t, __ATOMIC_RELAXED);
  room = r->cap - used_of(L, r, head, t);
  if (r->b != NULL) r->b->full = room < want + r->cap / 4;
  return room >= want;
}

/*
 * Waits for `want` bytes of room at head, sleeping on tail.  *deadline is
 * computed on the first wait from tns.  Returns 0, EPIPE or ETIMEDOUT.
 */
static int wait_room(lua_State *L, const Ring *r, uint32_t head, uint32_t want,
                     int64_t tns, int64_t *deadline) {
  uint32_t t = __atomic_load_n(&r->h->tail, __ATOMIC_ACQUIRE);
  while (r->cap - used_of(L, r, head, t) < want) {
    int err;
    if (*deadline == -2) *deadline = deadline_of(tns);
    err = wait_word(r, &r->h->tail, t, &r->h->tail, &r->h->tail_waiters,
                    *deadline, &t);
    if (err != 0) return err;
  }
  __atomic_store_n(&r->h->tail_seen, t, __ATOMIC_RELAXED);
  return 0;
}

/* Publishes head (the consumer is woken if it sleeps). */
HOT void publish_head(const Ring *r, uint32_t head) {
  shm_notify32_clear(&r->h->head, head, &r->h->head_waiters);
}

/*
 * The producer's head, checked.  The first send through a binding (every
 * unbound send) walks the stamps from head to the first 0: a predecessor
 * killed after stamping a record and before publishing head left head
 * behind it (the message was sent).  The walk stops at the 0 that every
 * send stores ahead of its record; it raises for a stamp that makes no
 * sense or runs past the capacity, so it ends.
 */
HOT uint32_t producer_head(lua_State *L, const Ring *r) {
  uint32_t head = own_index(L, &r->h->head, "head"), h;
  if (r->b != NULL && r->b->repaired) return head;
  /* tail may be past head here: the consumer took the records the
   * predecessor stamped; so the walk is bounded by the capacity, and tail
   * checked against where it ends */
  for (h = head;;) {
    uint32_t pos = h & r->mask, w = __atomic_load_n(stamp_at(r, h), __ATOMIC_ACQUIRE);
    if (w == 0) break;
    if (w == WRAP ? pos == 0 : w - 1 > r->max || pos + rec_of(w - 1) > r->cap)
      ch_error(L, "channel: corrupt stamp %I at offset %I after head",
               (lua_Integer)w, (lua_Integer)pos);
    h += w == WRAP ? r->cap - pos : rec_of(w - 1);
    if (h - head > r->cap)
      ch_error(L, "channel: corrupt stamps after head %I (more than the capacity)",
               (lua_Integer)head);
  }
  used_of(L, r, h, __atomic_load_n(&r->h->tail, __ATOMIC_ACQUIRE));
  /* publish even when head did not move: a predecessor killed after
   * storing head and before its wake-up left the consumer asleep
   * (tools/model/channel.pml, mutant 8) */
  shm_checkfault(L, r->m, "channel:send");
  publish_head(r, h);
  if (r->b != NULL) r->b->repaired = 1;
  return h;
}

/*
 * Writes the record of msg (n bytes) at head, which has room for it (see
 * want_of): the next record's 0 stamp, the payload, then the stamp, with
 * release (a wrap marker at head when the record goes to offset 0, after
 * that record's stamp).  Returns the head after it, not yet published.
 */
HOT uint32_t put(const Ring *r, uint32_t head, const char *msg, size_t n) {
  uint32_t pos = head & r->mask, room = r->cap - pos, rec = rec_of(n);
  uint32_t *at = stamp_at(r, head);
  int wrap = rec > room;
  if (wrap) { /* the record goes to offset 0 */
    head += room;
    pos = 0;
  }
  __atomic_store_n(stamp_at(r, head + rec), 0, __ATOMIC_RELAXED);
  if (n > 0) memcpy(r->data + pos + 4, msg, n);
  if (wrap) {
    __atomic_store_n(stamp_at(r, 0), (uint32_t)n + 1, __ATOMIC_RELEASE);
    __atomic_store_n(at, WRAP, __ATOMIC_RELEASE);
  } else {
    __atomic_store_n(at, (uint32_t)n + 1, __ATOMIC_RELEASE);
  }
  return head + rec;
}

/*
 * The body of send and try_send (op): sends the message at 2, waiting for
 * room at most the timeout at 3 (try_send: not at all, and a full ring
 * gives false instead of ETIMEDOUT).
 */
static int send_one(lua_State *L, const char *op, int try) {
  Ring r;
  size_t n;
  const char *msg;
  int64_t tns, deadline = -2;
  uint32_t head, want;
  ring_check(L, &r);
  msg = check_msg(L, 2, &r, &n);
  tns = try ? 0 : opt_timeout(L, 3);
  if (is_closed(&r)) return ch_fail(L, op, EPIPE);
  head = producer_head(L, &r);
  want = want_of(&r, head, rec_of(n));
  if (!has_room(L, &r, head, want, tns != 0)) {
    int err;
    if (try) {
      lua_pushboolean(L, 0);
      return 1;
    }
    if ((err = wait_room(L, &r, head, want, tns, &deadline)) != 0)
      return ch_fail(L, op, err);
  }
  head = put(&r, head, msg, n);
  shm_checkfault(L, r.m, try ? "channel:try_send" : "channel:send");
  publish_head(&r, head);
  lua_pushboolean(L, 1);
  return 1;
}

/*
 * shm.channel_send(hv, msg [, timeout_s]) -> true | nil, msg, errno
 * Sends msg, waiting for room at most timeout_s (nil: forever).
 */
static int channel_send(lua_State *L) { return send_one(L, "send", 0); }

/*
 * shm.channel_try_send(hv, msg) -> true | false | nil, msg, EPIPE
 * Sends msg if there is room now; false when the ring is full.
 */
static int channel_try_send(lua_State *L) { return send_one(L, "try_send", 1); }

/*
 * shm.channel_send_batch(hv, list [, timeout_s])
 *   -> #list | nil, msg, errno, count sent
 * Checks every message first, then sends them in order (each is sent once
 * its stamp is stored), publishing head once per run of messages that fit
 * (before each wait for room, and at the end), so a sleeping consumer is
 * woken once per run.
 */
static int channel_send_batch(lua_State *L) {
  Ring r;
  lua_Integer count, i;
  int64_t tns, deadline = -2;
  uint32_t head, published;
  ring_check(L, &r);
  if (lua_type(L, 2) != LUA_TTABLE)
    ch_error(L, "channel: send_batch expects a list of strings, got %s",
             lua_typename(L, lua_type(L, 2) == LUA_TNONE ? LUA_TNIL : lua_type(L, 2)));
  tns = opt_timeout(L, 3);
  count = (lua_Integer)lua_rawlen(L, 2);
  for (i = 1; i <= count; i++) {
    size_t n;
    lua_rawgeti(L, 2, i);
    check_msg(L, -1, &r, &n);
    lua_pop(L, 1);
  }
  if (is_closed(&r)) {
    ch_fail(L, "send_batch", EPIPE);
    lua_pushinteger(L, 0);
    return 4;
  }
  head = published = producer_head(L, &r);
  for (i = 1; i <= count; i++) {
    size_t n;
    const char *msg;
    uint32_t want;
    lua_rawgeti(L, 2, i);
    msg = lua_tolstring(L, -1, &n);
    want = want_of(&r, head, rec_of(n));
    if (!has_room(L, &r, head, want, tns != 0)) {
      int err;
      if (head != published) { /* publish what fits before waiting */
        shm_checkfault(L, r.m, "channel:send_batch");
        publish_head(&r, head);
        published = head;
      }
      err = wait_room(L, &r, head, want, tns, &deadline);
      if (err != 0) {
        ch_fail(L, "send_batch", err);
        lua_pushinteger(L, i - 1);
        return 4;
      }
    }
    head = put(&r, head, msg, n);
    lua_pop(L, 1);
  }
  shm_checkfault(L, r.m, "channel:send_batch");
  if (head != published) publish_head(&r, head);
  lua_pushinteger(L, count);
  return 1;
}

/* ---- the consumer */

/*
 * Waits until the stamp at tail is not 0: returns 0 with it in *w, or
 * EPIPE (closed, and only once the ring is empty) or ETIMEDOUT.  Sleeps
 * on head (see channel.lua).
 *
 * A consumer that keeps up with a streaming producer finds the ring empty
 * every few messages and then watches the stamp the producer is about to
 * write: the lines the producer writes are the ones the consumer reads
 * just then, and each message costs the producer a cache miss or two
 * (with its publish's full fence waiting for them).  Both then run at the
 * producer's slowed pace, and stay there: send/recv of 64-byte messages
 * ran at 4.5-6 M/s in those runs, against about 10 M/s in runs where the
 * ring kept some slack.  So a binding whose last recv found its message
 * at once (a stream, not a reply awaited) and that now finds the ring
 * empty first spins ROOM_PAUSE_NS without looking, as has_room does for a
 * full ring: the producer gets several messages ahead, on lines the
 * consumer then reads after it, not while it writes them.  send/recv went
 * from 4.8-7.1 M/s to 7.0-8.8 M/s (8 interleaved pairs).  The cost: a
 * message that arrives within 1 us after a burst was drained may be
 * received up to 1 us later (never past the recv's timeout).  A recv that
 * had to wait does not pause the next time, so a client that awaits each
 * reply never pauses; a server whose requests come faster than it answers
 * them may.
 */
HOT int wait_data(const Ring *r, uint32_t tail, int64_t tns, uint32_t *w) {
  int err;
  int64_t deadline;
  uint32_t *p = stamp_at(r, tail);
  if ((*w = __atomic_load_n(p, __ATOMIC_ACQUIRE)) != 0) {
    if (r->b != NULL) r->b->streaming = 1;
    return 0;
  }
  deadline = deadline_of(tns);
  if (r->b != NULL && r->b->streaming) {
    r->b->streaming = 0;
    if (tns != 0) { /* the pause, within the timeout */
      int64_t until = now_ns() + ROOM_PAUSE_NS;
      if (deadline >= 0 && deadline < until) until = deadline;
      while (now_ns() < until) shm_cpu_relax();
      if ((*w = __atomic_load_n(p, __ATOMIC_ACQUIRE)) != 0) return 0;
    }
  }
  err = wait_word(r, p, 0, &r->h->head, &r->h->head_waiters, deadline, w);
  if (err != 0) { /* closed (or timed out): hand out what is still there */
    if ((*w = __atomic_load_n(p, __ATOMIC_ACQUIRE)) == 0) return err;
  }
  return 0;
}

/*
 * Checks the record at *t, whose stamp w is not 0: stores its payload's
 * offset in the ring in *pos, moves *t past it and returns the payload's
 * length.  Raises for a corrupt record.
 */
HOT uint32_t take_record(lua_State *L, const Ring *r, uint32_t *t, uint32_t w,
                         uint32_t *pos) {
  uint32_t p = *t & r->mask, skip = 0, n, rec;
  if (w == WRAP) {
    if (p == 0) ch_error(L, "channel: corrupt wrap marker at offset 0");
    skip = r->cap - p;
    p = 0;
    w = __atomic_load_n(stamp_at(r, 0), __ATOMIC_ACQUIRE);
    if (w == 0 || w == WRAP)
      ch_error(L, "channel: corrupt stamp %I at offset 0 after a wrap marker",
               (lua_Integer)w);
  }
  n = w - 1;
  if (n > r->max || (r->fixed != 0 && n != r->fixed))
    ch_error(L, "channel: corrupt record length %I at offset %I",
             (lua_Integer)n, (lua_Integer)p);
  rec = rec_of(n);
  if (p + rec > r->cap)
    ch_error(L, "channel: corrupt record of %I bytes at offset %I (past the "
             "ring's end)", (lua_Integer)n, (lua_Integer)p);
  *t += skip + rec;
  *pos = p + 4;
  return n;
}

/* Publishes tail (the producer is woken if it sleeps). */
HOT void publish_tail(const Ring *r, uint32_t tail) {
  shm_notify32_clear(&r->h->tail, tail, &r->h->tail_waiters);
}

/* Pushes the record at *tail (stamp w) as a string; moves *tail past it. */
HOT void push_record(lua_State *L, const Ring *r, uint32_t *tail, uint32_t w) {
  uint32_t pos, n = take_record(L, r, tail, w, &pos);
  lua_pushlstring(L, (const char *)r->data + pos, n);
}

/*
 * shm.channel_recv(hv [, timeout_s]) -> msg | nil, msg, errno
 * Receives the next message, waiting at most timeout_s (nil: forever);
 * EPIPE once the channel is closed and empty.  tail is published after the
 * message is copied into the Lua string.
 */
static int channel_recv(lua_State *L) {
  Ring r;
  int64_t tns;
  uint32_t w, tail;
  int err;
  ring_check(L, &r);
  tns = opt_timeout(L, 2);
  tail = own_index(L, &r.h->tail, "tail");
  if ((err = wait_data(&r, tail, tns, &w)) != 0) return ch_fail(L, "recv", err);
  push_record(L, &r, &tail, w);
  shm_checkfault(L, r.m, "channel:recv");
  publish_tail(&r, tail);
  return 1;
}

/*
 * shm.channel_try_recv(hv) -> msg | nil (empty) | nil, msg, EPIPE (closed
 * and empty).
 */
static int channel_try_recv(lua_State *L) {
  Ring r;
  uint32_t w, tail;
  ring_check(L, &r);
  tail = own_index(L, &r.h->tail, "tail");
  w = __atomic_load_n(stamp_at(&r, tail), __ATOMIC_ACQUIRE);
  if (w == 0) {
    if (!is_closed(&r)) {
      lua_pushnil(L);
      return 1;
    }
    /* closed: a message stamped before the close is still handed out */
    w = __atomic_load_n(stamp_at(&r, tail), __ATOMIC_ACQUIRE);
    if (w == 0) return ch_fail(L, "try_recv", EPIPE);
  }
  push_record(L, &r, &tail, w);
  shm_checkfault(L, r.m, "channel:try_recv");
  publish_tail(&r, tail);
  return 1;
}

/*
 * shm.channel_recv_batch(hv, max [, timeout_s]) -> list | nil, msg, errno
 * Receives up to max messages (at least one, waiting for it as recv does)
 * and publishes tail once for all of them.
 */
static int channel_recv_batch(lua_State *L) {
  Ring r;
  lua_Integer most = 0, k = 0;
  int64_t tns;
  uint32_t w, tail;
  int err;
  ring_check(L, &r);
  if (!lua_isinteger(L, 2) || (most = lua_tointeger(L, 2)) < 1)
    ch_error(L, "channel: recv_batch expects a maximum count >= 1");
  tns = opt_timeout(L, 3);
  tail = own_index(L, &r.h->tail, "tail");
  if ((err = wait_data(&r, tail, tns, &w)) != 0) return ch_fail(L, "recv_batch", err);
  { /* a size hint from head (it may lag; the loop follows the stamps) */
    uint32_t used = __atomic_load_n(&r.h->head, __ATOMIC_RELAXED) - tail;
    uint32_t guess = (used > r.cap ? 0 : used / (r.fixed ? rec_of(r.fixed) : 8)) + 1;
    lua_createtable(L, most < guess ? (int)most : guess > 4096 ? 4096 : (int)guess, 0);
  }
  do {
    push_record(L, &r, &tail, w);
    lua_rawseti(L, -2, ++k);
  } while (k < most && (w = __atomic_load_n(stamp_at(&r, tail), __ATOMIC_ACQUIRE)) != 0);
  shm_checkfault(L, r.m, "channel:recv_batch");
  publish_tail(&r, tail);
  return 1;
}

static const luaL_Reg funcs[] = {
  {"channel_send", channel_send},
  {"channel_try_send", channel_try_send},
  {"channel_send_batch", channel_send_batch},
  {"channel_recv", channel_recv},
  {"channel_try_recv", channel_try_recv},
  {"channel_recv_batch", channel_recv_batch},
  {NULL, NULL}
};

/*
 * shm.channel_bind(hv) -> send, try_send, send_batch, recv, try_recv,
 * recv_batch: the six functions bound to the header view hv, taking any
 * value (the channel object) where the unbound ones take hv, so that they
 * serve as the methods themselves (one Lua->C call a message, no Lua
 * wrapper).  Checks that hv is a channel header now; every call checks
 * again.
 */
static int channel_bind(lua_State *L) {
  Ring r;
  Bound *b;
  int i, bidx;
  ring_check(L, &r);
  b = (Bound *)lua_newuserdatauv(L, sizeof *b, 0);
  bidx = lua_gettop(L);
  b->m = r.m; /* the view's mapping: the one live mapping holding it */
  b->off = (size_t)((unsigned char *)r.h - r.m->addr);
  b->cap = r.cap;
  b->fixed = r.fixed;
  b->repaired = 0;
  b->full = 0;
  b->streaming = 0;
  b->raised[0] = b->raised[1] = 1;
  for (i = 0; funcs[i].name != NULL; i++) { /* all six share b */
    lua_pushliteral(L, "magic");
    lua_pushvalue(L, 1);
    lua_pushvalue(L, bidx);
    lua_pushcclosure(L, funcs[i].func, 3);
  }
  return i;
}

/* Adds the channel functions to the table on top. */
void shm_channel_open(lua_State *L) {
  lua_pushliteral(L, "magic"); /* upvalue 1: the field ring_check reads */
  luaL_setfuncs(L, funcs, 1);
  lua_pushliteral(L, "magic");
  lua_pushcclosure(L, channel_bind, 1);
  lua_setfield(L, -2, "channel_bind");
}
