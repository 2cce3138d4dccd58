/*
 * mailbox_peer.c: a C program that joins the request/reply protocol of
 * lua/shm/mailbox.lua, to prove that a mailbox made by shmlua can be used
 * from C with nothing but the struct declaration and the rules below.
 *
 *   mailbox_peer server OFFSET COUNT
 *       serves COUNT requests of the mailbox at OFFSET of the memfd at
 *       descriptor 3, answering each with answer(request) (below); stops
 *       early, still with exit 0, when the mailbox is closed.  Prints
 *       "served N requests" (and " (closed)" when it stopped early).
 *   mailbox_peer client OFFSET COUNT
 *       makes COUNT calls, call i (from 1) sending request(i) and checking
 *       that the reply is answer(request(i)).  Prints "called N, dropped S
 *       stale replies" and exits 0; a wrong reply is reported on stderr,
 *       exit 1; a mailbox closed before the last call, exit 4.
 * Both exit 2 on bad arguments, a missing or corrupt mailbox, or a wait
 * that saw no progress for 20 s.
 *
 * What both sides agree on (tests/mailbox_spec.lua has the Lua copies):
 *   request(i): the 4 bytes of i (little-endian) followed by BLOCK bytes
 *       off .. off + capacity - 5, cut to L bytes, where off = i * 7919 %
 *       2048 and L = i * 613 % (capacity + 1): every length 0..capacity
 *       comes up once in capacity + 1 calls (613 is a prime; capacities
 *       whose capacity + 1 it divides are refused).  BLOCK is the 4096
 *       bytes of tests/data/ipc.lua: x = (x * 1103515245 + 12345) mod 2^31
 *       from x = 1, byte (x >> 16) & 255.  Needs capacity <= 2052.
 *   answer(r): r reversed, every byte XOR 0x5A, written twice and cut to
 *       the capacity: min(2 * #r, capacity) bytes, so the reply's length
 *       differs from the request's and a reply read with the request's
 *       length, or an echo, does not pass.
 *
 * Protocol (mailbox.lua has the full text).  The header is struct
 * shm_mailbox (64 bytes), then `capacity` bytes of request area, then
 * `capacity` bytes of reply area.  `state` is the futex word:
 *   IDLE 0 -> REQUEST 1 (the client, after writing the request and
 *   req_len) -> REPLY 2 (the server, after writing the reply and rep_len)
 *   -> IDLE (the client, after copying the reply out).
 * A call first waits for IDLE or REPLY: a REPLY then is stale, the answer
 * to a call that timed out or whose client died, and is dropped (state
 * back to IDLE) before the new request is written; a REQUEST then is a
 * stale request, which the server answers first.  So each reply answers
 * the request of its own call.  The server never writes the request
 * area, the client never writes the reply area, and each side touches
 * its area only in the states that belong to it.
 * Every transition is published by notify(): a seq_cst store of state,
 * then a seq_cst load of `waiters` and FUTEX_WAKE (shared, not private)
 * if it is not zero.  A side waits by spinning a little, yielding a
 * little, then sleeping: it adds 1 to `waiters`, looks at state once more
 * and FUTEX_WAITs only if it still holds the old value, then subtracts 1.
 * `closed`, set by either side, ends every wait (EPIPE in Lua): sleeps
 * are 50 ms slices, so it is seen even without a wake-up.  `seq` counts
 * calls; only the client writes it.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The layout of lua/shm/mailbox.lua, copied: it is our own protocol. */
struct shm_mailbox {
  uint32_t magic;    /* MAILBOX_MAGIC once initialised           */
  uint32_t capacity; /* bytes of each of the two areas           */
  uint32_t state;    /* 0 idle, 1 request posted, 2 reply posted */
  uint32_t waiters;  /* processes asleep on state                */
  uint32_t closed;   /* set to 1 by either side                  */
  uint32_t req_len;
  uint32_t rep_len;
  uint32_t seq;      /* calls made so far, mod 2^32              */
  uint32_t pad[8];
};

#define MAILBOX_MAGIC 0x584f424du /* "MBOX" */
#define IDLE 0u
#define REQUEST 1u
#define REPLY 2u
#define CLOSED UINT32_MAX          /* wait_state: the mailbox was closed */
#define STALL_NS 20000000000LL     /* no progress for this long: give up */
#define SPIN_NS 10000              /* spin this long before yielding     */
#define MAX_CLIENT_CAP 2052        /* request(i) slices the 4096-byte BLOCK */

_Static_assert(sizeof(struct shm_mailbox) == 64, "mailbox header size");
_Static_assert(offsetof(struct shm_mailbox, capacity) == 4, "capacity offset");
_Static_assert(offsetof(struct shm_mailbox, state) == 8, "state offset");
_Static_assert(offsetof(struct shm_mailbox, waiters) == 12, "waiters offset");
_Static_assert(offsetof(struct shm_mailbox, closed) == 16, "closed offset");
_Static_assert(offsetof(struct shm_mailbox, req_len) == 20, "req_len offset");
_Static_assert(offsetof(struct shm_mailbox, rep_len) == 24, "rep_len offset");
_Static_assert(offsetof(struct shm_mailbox, seq) == 28, "seq offset");

static struct shm_mailbox *mb;
static unsigned char *req_area, *rep_area;
static uint32_t cap;
static unsigned char block[4096];

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

__attribute__((format(printf, 2, 3), noreturn))
static void die(int code, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "mailbox_peer: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(code);
}

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* The LCG block of tests/data/ipc.lua. */
static void make_block(void) {
  uint32_t x = 1;
  for (int i = 0; i < 4096; i++) {
    x = (x * 1103515245u + 12345u) & 0x7fffffffu;
    block[i] = (unsigned char)((x >> 16) & 255);
  }
}

/* request(i) into buf (at least cap bytes); returns its length. */
static uint32_t request(uint32_t i, unsigned char *buf) {
  uint32_t off = (uint32_t)((uint64_t)i * 7919 % 2048);
  uint32_t len = (uint32_t)((uint64_t)i * 613 % ((uint64_t)cap + 1));
  for (uint32_t k = 0; k < len; k++)  /* le32(i), then the BLOCK slice */
    buf[k] = k < 4 ? (unsigned char)(i >> (8 * k)) : block[off + k - 4];
  return len;
}

/* answer(r) of the n bytes at r into out (at least cap bytes); returns
 * its length.  r and out must not overlap. */
static uint32_t answer(const unsigned char *r, uint32_t n, unsigned char *out) {
  uint32_t len = n > cap / 2 ? cap : 2 * n;
  for (uint32_t k = 0; k < len; k++)
    out[k] = r[n - 1 - k % n] ^ 0x5A;
  return len;
}

/*
 * Waits until state is `want` or `want2`; returns it, or CLOSED once the
 * mailbox is closed and state is neither.  Spins for SPIN_NS, yields a
 * few times, then sleeps on state in 50 ms slices, counted in `waiters`
 * (see the protocol above: the count goes up before the last look at
 * state, so a notify either sees it and wakes us, or changed state before
 * that look and FUTEX_WAIT returns at once).  Unlike channel_peer, a stale
 * non-zero count is left alone: client and server share it, so it may be
 * the live peer's.  Exits (code 2) after STALL_NS without the wanted state.
 */
static uint32_t wait_state(uint32_t want, uint32_t want2) {
  uint32_t s;
  int64_t start = now_ns();
  for (int k = 1;; k++) {
    if ((s = __atomic_load_n(&mb->state, __ATOMIC_ACQUIRE)) == want || s == want2) return s;
    cpu_relax();
    if ((k & 15) == 0 && now_ns() - start > SPIN_NS) break;
  }
  for (int k = 0; k < 8; k++) {
    sched_yield();
    if ((s = __atomic_load_n(&mb->state, __ATOMIC_ACQUIRE)) == want || s == want2) return s;
  }
  for (;;) {
    struct timespec ts = {0, 50000000};
    if (__atomic_load_n(&mb->closed, __ATOMIC_SEQ_CST) != 0) {
      /* a state posted before the close still counts (a last reply) */
      s = __atomic_load_n(&mb->state, __ATOMIC_ACQUIRE);
      return s == want || s == want2 ? s : CLOSED;
    }
    __atomic_add_fetch(&mb->waiters, 1, __ATOMIC_SEQ_CST);
    if ((s = __atomic_load_n(&mb->state, __ATOMIC_SEQ_CST)) != want && s != want2)
      syscall(SYS_futex, &mb->state, FUTEX_WAIT, s, &ts, NULL, 0);
    __atomic_sub_fetch(&mb->waiters, 1, __ATOMIC_SEQ_CST);
    if ((s = __atomic_load_n(&mb->state, __ATOMIC_ACQUIRE)) == want || s == want2) return s;
    if (now_ns() - start > STALL_NS)
      die(2, "no progress for %lld s (state %u, waiting for %u or %u)",
          STALL_NS / 1000000000, s, want, want2);
  }
}

/* Publishes state s (everything written before it goes with it) and wakes
 * the peer if it may sleep. */
static void notify(uint32_t s) {
  __atomic_store_n(&mb->state, s, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&mb->waiters, __ATOMIC_SEQ_CST) != 0)
    syscall(SYS_futex, &mb->state, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/*
 * Client: one call with the n bytes at req; the reply goes to rep (cap
 * bytes), its length to *rep_n.  Counts a dropped stale reply in *stale.
 * Returns 0, or -1 if the mailbox was closed (nothing left posted by us
 * unless the close came while our request was pending).
 */
static int call(const unsigned char *req, uint32_t n, unsigned char *rep,
                uint32_t *rep_n, unsigned *stale) {
  /* IDLE, or a stale REPLY to drop; a stale REQUEST is waited out */
  uint32_t s = wait_state(IDLE, REPLY);
  if (s == CLOSED) return -1;
  if (s == REPLY) {
    notify(IDLE);
    ++*stale;
  }
  if (__atomic_load_n(&mb->closed, __ATOMIC_SEQ_CST) != 0) return -1;
  memcpy(req_area, req, n);
  __atomic_store_n(&mb->req_len, n, __ATOMIC_RELAXED);
  __atomic_store_n(&mb->seq, __atomic_load_n(&mb->seq, __ATOMIC_RELAXED) + 1,
                   __ATOMIC_RELAXED); /* only the client writes seq */
  notify(REQUEST);
  if (wait_state(REPLY, REPLY) == CLOSED) return -1;
  uint32_t len = __atomic_load_n(&mb->rep_len, __ATOMIC_RELAXED);
  if (len > cap) die(1, "corrupt reply length %u (capacity %u)", len, cap);
  memcpy(rep, rep_area, len);
  *rep_n = len;
  notify(IDLE);
  return 0;
}

/* Server: answers up to count requests; returns how many, *closed set if
 * the mailbox was closed first. */
static uint64_t serve(uint64_t count, int *closed) {
  unsigned char *req = malloc(cap), *rep = malloc(cap);
  uint64_t done = 0;
  if (req == NULL || rep == NULL) die(2, "out of memory");
  *closed = 0;
  while (done < count) {
    if (wait_state(REQUEST, REQUEST) == CLOSED) {
      *closed = 1;
      break;
    }
    uint32_t n = __atomic_load_n(&mb->req_len, __ATOMIC_RELAXED);
    if (n > cap) die(1, "corrupt request length %u (capacity %u)", n, cap);
    memcpy(req, req_area, n);
    uint32_t len = answer(req, n, rep);
    memcpy(rep_area, rep, len);
    __atomic_store_n(&mb->rep_len, len, __ATOMIC_RELAXED);
    notify(REPLY);
    done++;
  }
  free(req);
  free(rep);
  return done;
}

/* Client: calls 1 .. count, checking each reply.  Exits. */
static int run_client(uint64_t count) {
  unsigned char *req = malloc(cap), *rep = malloc(cap), *want = malloc(cap);
  unsigned stale = 0;
  if (req == NULL || rep == NULL || want == NULL) die(2, "out of memory");
  if (cap > MAX_CLIENT_CAP) die(2, "the client needs a capacity of at most %u, not %u",
                                MAX_CLIENT_CAP, cap);
  if ((cap + 1) % 613 == 0) die(2, "capacity %u: 613 divides capacity + 1", cap);
  for (uint64_t i = 1; i <= count; i++) {
    uint32_t n = request((uint32_t)i, req), got = 0;
    if (call(req, n, rep, &got, &stale) != 0)
      die(4, "mailbox closed at call %llu of %llu", (unsigned long long)i,
          (unsigned long long)count);
    uint32_t wn = answer(req, n, want);
    if (got != wn)
      die(1, "call %llu (%u-byte request): reply of %u bytes, expected %u",
          (unsigned long long)i, n, got, wn);
    if (memcmp(rep, want, wn) != 0) {
      uint32_t k = 0;
      while (rep[k] == want[k]) k++;
      die(1, "call %llu (%u-byte request): reply differs at byte %u (%#x, expected %#x)",
          (unsigned long long)i, n, k, rep[k], want[k]);
    }
  }
  printf("called %llu, dropped %u stale replies\n", (unsigned long long)count, stale);
  free(req);
  free(rep);
  free(want);
  return 0;
}

/* Parses a decimal argument, or exits (code 2) naming it. */
static uint64_t number(const char *s, const char *what) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || s[0] == '-')
    die(2, "%s must be a non-negative decimal number, not '%s'", what, s);
  return v;
}

int main(int argc, char **argv) {
  struct stat st;
  if (argc != 4) {
    fprintf(stderr, "usage: mailbox_peer server|client OFFSET COUNT  (the memfd at fd 3)\n");
    return 2;
  }
  const char *mode = argv[1];
  uint64_t offset = number(argv[2], "OFFSET"), count = number(argv[3], "COUNT");
  if (strcmp(mode, "server") != 0 && strcmp(mode, "client") != 0)
    die(2, "unknown mode '%s'", mode);
  make_block();
  if (fstat(3, &st) != 0) die(2, "fstat(3): %s", strerror(errno));
  uint64_t size = (uint64_t)st.st_size;
  if (offset % 4 != 0 || offset > size || size - offset < sizeof *mb)
    die(2, "no mailbox at offset %llu (the object has %llu bytes)",
        (unsigned long long)offset, (unsigned long long)size);
  unsigned char *base = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, 3, 0);
  if (base == MAP_FAILED) die(2, "mmap: %s", strerror(errno));
  mb = (struct shm_mailbox *)(void *)(base + offset);
  uint32_t magic = __atomic_load_n(&mb->magic, __ATOMIC_ACQUIRE);
  if (magic != MAILBOX_MAGIC)
    die(2, "no mailbox at offset %llu (bad magic %#x)", (unsigned long long)offset, magic);
  cap = mb->capacity;
  if (cap < 1 || cap > 0x7fffffffu || (size - offset - sizeof *mb) / 2 < cap)
    die(2, "mailbox at offset %llu is corrupt (capacity %u, object of %llu bytes)",
        (unsigned long long)offset, cap, (unsigned long long)size);
  req_area = base + offset + sizeof *mb;
  rep_area = req_area + cap;

  if (mode[0] == 'c') return run_client(count);
  int closed;
  uint64_t done = serve(count, &closed);
  printf("served %llu requests%s\n", (unsigned long long)done, closed ? " (closed)" : "");
  return 0;
}
