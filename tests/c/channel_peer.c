/*
 * channel_peer.c: a C program that joins the shm.channel protocol, version
 * 2 (lua/shm/channel.lua), to prove that a channel made by shmlua can be
 * used from C with nothing but the struct declaration and the rules below.
 *
 *   channel_peer consume N MAXPAY [OFFSET [FIRST]]
 *       receives N messages from the channel at OFFSET of the memfd at
 *       descriptor 3 and checks each is message(FIRST + i) (the format of
 *       tests/data/ipc.lua: seq, Adler-32, a slice of the LCG block); prints
 *       "consumed N messages, B bytes" and exits 0, else says what was wrong
 *       on stderr and exits 1.
 *   channel_peer produce N MAXPAY [OFFSET [FIRST]]
 *       sends message(FIRST) .. message(FIRST + N - 1), then closes the
 *       channel (the consumer drains the ring, then sees EPIPE).
 *   channel_peer peek 1 MAXPAY [OFFSET [FIRST]]
 *       copies and checks the next message, then exits 3 WITHOUT publishing
 *       tail: what a consumer killed inside recv leaves behind.
 *
 * Protocol (channel.lua has the full text): head and tail count bytes mod
 * 2^32; the producer owns head and tail_seen, the consumer tail.  The ring
 * (zeroed at creation) holds records at 4-byte aligned positions: a 32-bit
 * stamp word, the payload, padding to 4.  The stamp is 0 where nothing is
 * written yet, n + 1 for n payload bytes, and WRAP (0xFFFFFFFF) for "the
 * record is at offset 0".  A send at p = head, ending at q:
 *   1. waits for room (judged from tail_seen; tail is read, and kept in
 *      tail_seen, only when tail_seen says there is none);
 *   2. stores 0 at q, where the consumer will stop next;
 *   3. writes the payload (when wrapping: the record and its stamp at 0);
 *   4. stores the stamp at p (release): the message is sent;
 *   5. stores head = q and, if head_waiters is neither 0 nor q + 1, lowers
 *      it to 0 and FUTEX_WAKEs head.
 * The consumer at t = tail loads the stamp at t (acquire): 0 is empty; it
 * copies the record out, then stores tail past it and wakes tail the same
 * way (tail_waiters).  It never reads head to find a message; it
 * sleeps on head only, because step 5 changes head after every stamp.
 * Every wait is bounded: 20 s without progress is a failure (exit 2).
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

/* The layout of lua/shm/channel.lua, copied: it is our own protocol. */
struct shm_channel {
  uint32_t magic;         /* CHANNEL_MAGIC once initialised               */
  uint32_t capacity;      /* bytes of ring after the header, power of two */
  uint32_t msg_size;      /* every message has this size; 0: any size     */
  uint32_t closed;        /* set to 1 by either side                      */
  uint32_t pad0[12];
  uint32_t head;          /* bytes published by the producer, mod 2^32    */
  uint32_t head_waiters;  /* 0, or 1 + the head a consumer sleeps on     */
  uint32_t tail_seen;     /* the producer's last look at tail             */
  uint32_t pad1[13];
  uint32_t tail;          /* bytes consumed by the consumer, mod 2^32     */
  uint32_t tail_waiters;  /* 0, or 1 + the tail a producer sleeps on     */
  uint32_t pad2[14];
};

#define CHANNEL_MAGIC 0x334e4843u /* "CHN3": version 3 of the protocol */
#define WRAP 0xFFFFFFFFu           /* stamp: the record is at offset 0   */
#define STALL_NS 20000000000LL     /* no progress for this long: give up */

_Static_assert(sizeof(struct shm_channel) == 192, "channel header size");
_Static_assert(offsetof(struct shm_channel, head) == 64, "head offset");
_Static_assert(offsetof(struct shm_channel, tail_seen) == 72, "tail_seen offset");
_Static_assert(offsetof(struct shm_channel, tail) == 128, "tail offset");

static struct shm_channel *ch;
static unsigned char *ring;
static uint32_t cap, mask, maxmsg;
static unsigned char block[4096];

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

__attribute__((format(printf, 2, 3), noreturn))
static void die(int code, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "channel_peer: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(code);
}

/* The LCG block of tests/data/ipc.lua. */
static void make_block(void) {
  uint32_t x = 1;
  for (int i = 0; i < 4096; i++) {
    x = (x * 1103515245u + 12345u) & 0x7fffffffu;
    block[i] = (unsigned char)((x >> 16) & 255);
  }
}

static uint32_t adler32(const unsigned char *p, size_t n) {
  uint32_t a = 1, b = 0;
  for (size_t i = 0; i < n; i++) {
    a = (a + p[i]) % 65521;
    b = (b + a) % 65521;
  }
  return (b << 16) | a;
}

/* message(seq) into buf (at least 8 + 4096 bytes); returns its length. */
static size_t message(uint64_t seq, uint32_t maxpay, unsigned char *buf) {
  uint32_t off = (uint32_t)(seq * 7919 % 2048);
  uint32_t len = (uint32_t)(((seq * 2654435761u) >> 16) % ((uint64_t)maxpay + 1));
  uint32_t s = (uint32_t)seq, sum = adler32(block + off, len);
  for (int i = 0; i < 4; i++) {  /* little-endian, as string.pack("<I4") */
    buf[i] = (unsigned char)(s >> (8 * i));
    buf[4 + i] = (unsigned char)(sum >> (8 * i));
  }
  memcpy(buf + 8, block + off, len);
  return 8 + (size_t)len;
}

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* The stamp word at ring position pos (a multiple of 4 below cap). */
static uint32_t *stamp_at(uint32_t pos) { return (uint32_t *)(void *)(ring + pos); }

/* Bytes a record of n payload bytes takes: the stamp, the payload, padding. */
static uint32_t record_size(uint32_t n) { return (n + 7) & ~3u; }

/*
 * Waits until *watch != old: spins a little, yields a little, then sleeps
 * on the futex word *sleep in 50 ms slices.  To sleep it reads *sleep
 * (seen), raises its flag *waiters to seen + 1, looks at *watch once more
 * and FUTEX_WAITs on seen only if *watch still holds `old`; the peer
 * changes *watch, then *sleep (seq_cst), then reads *waiters (seq_cst) and,
 * unless it is 0 or the value it just stored + 1, lowers it and wakes, so
 * either the peer sees the flag and wakes us, or the wait finds *sleep
 * changed and returns at once: no wake-up is lost.  (A flag of the stored
 * value + 1 belongs to a sleeper that read that value, so it waits for a
 * later store.)  The producer watches and sleeps on tail; the consumer
 * watches a stamp and sleeps on head.  Only one process of a kind ever
 * sleeps on a word, and this one is not asleep: a raised flag was left by
 * a predecessor killed in its sleep or by an earlier wait of ours, and is
 * lowered (so the peer makes no useless wake call).
 * Returns the new value of *watch; or `old` once the channel is closed
 * (the caller decides); exits (code 2) when nothing changed for STALL_NS.
 */
static uint32_t wait_change(uint32_t *watch, uint32_t old, uint32_t *sleep,
                            uint32_t *waiters) {
  uint32_t v;
  int64_t start = now_ns();
  for (int i = 0; i < 4000; i++) {
    if ((v = __atomic_load_n(watch, __ATOMIC_ACQUIRE)) != old) return v;
    cpu_relax();
  }
  for (int i = 0; i < 8; i++) {
    sched_yield();
    if ((v = __atomic_load_n(watch, __ATOMIC_ACQUIRE)) != old) return v;
  }
  if (__atomic_load_n(waiters, __ATOMIC_RELAXED) != 0)
    __atomic_store_n(waiters, 0, __ATOMIC_SEQ_CST);
  for (;;) {
    struct timespec ts = {0, 50000000};
    if (__atomic_load_n(&ch->closed, __ATOMIC_SEQ_CST))
      return __atomic_load_n(watch, __ATOMIC_ACQUIRE);
    uint32_t seen = __atomic_load_n(sleep, __ATOMIC_SEQ_CST);
    __atomic_store_n(waiters, seen + 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(watch, __ATOMIC_SEQ_CST) == old)
      syscall(SYS_futex, sleep, FUTEX_WAIT, seen, &ts, NULL, 0);
    if ((v = __atomic_load_n(watch, __ATOMIC_ACQUIRE)) != old) return v;
    if (now_ns() - start > STALL_NS) die(2, "no progress for %lld s (value %u)",
                                         STALL_NS / 1000000000, old);
  }
}

/* Stores v into *p and wakes the peer if it may sleep on another value. */
static void notify(uint32_t *p, uint32_t v, uint32_t *waiters) {
  __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
  uint32_t w = __atomic_load_n(waiters, __ATOMIC_SEQ_CST);
  if (w == 0 || w == v + 1) return;
  __atomic_compare_exchange_n(waiters, &w, 0, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  syscall(SYS_futex, p, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/*
 * Consumer: waits for the record at tail, copies it out and checks it is
 * message(seq); publishes tail past it unless `peek`.  Returns the message
 * length.
 */
static size_t consume_one(uint64_t seq, uint32_t maxpay, int peek) {
  static unsigned char got[8 + 4096], want[8 + 4096];
  uint32_t tail = __atomic_load_n(&ch->tail, __ATOMIC_RELAXED); /* ours */
  uint32_t pos = tail & mask;
  uint32_t stamp = __atomic_load_n(stamp_at(pos), __ATOMIC_ACQUIRE);
  if (stamp == 0) stamp = wait_change(stamp_at(pos), 0, &ch->head, &ch->head_waiters);
  if (stamp == 0) die(4, "channel closed before message %llu", (unsigned long long)seq);
  if (stamp == WRAP) {  /* the record did not fit before the end */
    if (pos == 0) die(1, "corrupt wrap stamp at offset 0");
    tail += cap - pos;
    pos = 0;
    stamp = __atomic_load_n(stamp_at(0), __ATOMIC_ACQUIRE);
    if (stamp == 0 || stamp == WRAP) die(1, "corrupt stamp %#x at offset 0 after a wrap", stamp);
  }
  uint32_t n = stamp - 1;
  if (n > maxmsg || n > sizeof got || pos + record_size(n) > cap)
    die(1, "corrupt stamp %#x at %u", stamp, pos);
  memcpy(got, ring + pos + 4, n);
  size_t wn = message(seq, maxpay, want);
  if (n < 8) die(1, "message %llu too short (%u bytes)", (unsigned long long)seq, n);
  uint32_t gseq, gsum;
  memcpy(&gseq, got, 4);
  memcpy(&gsum, got + 4, 4);
  if (gseq != (uint32_t)seq) die(1, "expected seq %llu, got %u", (unsigned long long)seq, gseq);
  if (adler32(got + 8, n - 8) != gsum) die(1, "seq %llu: checksum fails (%u bytes)",
                                           (unsigned long long)seq, n);
  if (n != wn || memcmp(got, want, n) != 0)
    die(1, "seq %llu: content differs (%u bytes)", (unsigned long long)seq, n);
  if (!peek) notify(&ch->tail, tail + record_size(n), &ch->tail_waiters);
  return n;
}

/*
 * Producer, before its first send: a producer killed between storing a
 * stamp (step 4) and publishing head (step 5) left head behind messages
 * that are sent.  Walks the stamps from head to the first 0 (the one step
 * 2 stored) and publishes head there, even if it did not move: one killed
 * after storing head and before its wake-up may have left the consumer
 * asleep.  Returns head.
 */
static uint32_t recover_head(uint32_t head) {
  uint32_t walked = 0, start = head;
  for (;;) {
    uint32_t pos = head & mask, stamp = __atomic_load_n(stamp_at(pos), __ATOMIC_ACQUIRE);
    uint32_t step;
    if (stamp == 0) break;
    if (stamp == WRAP && pos != 0)
      step = cap - pos;
    else if (stamp != WRAP && stamp - 1 <= maxmsg && pos + record_size(stamp - 1) <= cap)
      step = record_size(stamp - 1);
    else
      die(1, "corrupt stamp %#x at %u after head", stamp, pos);
    walked += step;
    if (walked > cap) die(1, "no free stamp in the ring after head %u", start);
    head += step;
  }
  notify(&ch->head, head, &ch->head_waiters);
  return head;
}

/* Producer: sends message(seq), waiting for room. */
static void produce_one(uint64_t seq, uint32_t maxpay) {
  static unsigned char buf[8 + 4096];
  static int recovered;
  uint32_t n = (uint32_t)message(seq, maxpay, buf);
  uint32_t rec = record_size(n);
  uint32_t head = __atomic_load_n(&ch->head, __ATOMIC_RELAXED); /* ours */
  if (n > maxmsg) die(1, "message of %u bytes exceeds %u", n, maxmsg);
  if (!recovered) {
    head = recover_head(head);
    recovered = 1;
  }
  uint32_t pos = head & mask, left = cap - pos;
  uint32_t skip = rec <= left ? 0 : left;  /* bytes left unused at the end */
  uint32_t want = skip + rec + 4;          /* and the next record's stamp  */

  /* 1. room, judged from tail_seen; tail is read only when that says no */
  uint32_t tail = __atomic_load_n(&ch->tail_seen, __ATOMIC_RELAXED); /* ours */
  if (head - tail > cap || cap - (head - tail) < want) {
    tail = __atomic_load_n(&ch->tail, __ATOMIC_ACQUIRE);
    for (;;) {
      if (head - tail > cap) die(1, "corrupt indices (head %u, tail %u)", head, tail);
      if (cap - (head - tail) >= want) break;
      tail = wait_change(&ch->tail, tail, &ch->tail, &ch->tail_waiters);
      if (__atomic_load_n(&ch->closed, __ATOMIC_SEQ_CST))
        die(4, "channel closed by the consumer at message %llu", (unsigned long long)seq);
    }
    __atomic_store_n(&ch->tail_seen, tail, __ATOMIC_RELAXED);
  }

  uint32_t at = skip ? 0 : pos;  /* where the record goes */
  uint32_t next = head + skip + rec;
  /* 2. the consumer will stop at the next record's stamp */
  __atomic_store_n(stamp_at(next & mask), 0, __ATOMIC_RELAXED);
  /* 3. the payload; when wrapping, the record's stamp at 0 too */
  memcpy(ring + at + 4, buf, n);
  if (skip) __atomic_store_n(stamp_at(0), n + 1, __ATOMIC_RELAXED);
  /* 4. the stamp at head, after everything above: the message is sent */
  __atomic_store_n(stamp_at(pos), skip ? WRAP : n + 1, __ATOMIC_RELEASE);
  /* 5. publish head, waking the consumer if it sleeps */
  notify(&ch->head, next, &ch->head_waiters);
}

int main(int argc, char **argv) {
  struct stat st;
  if (argc < 4) {
    fprintf(stderr, "usage: channel_peer consume|produce|peek N MAXPAY [OFFSET [FIRST]]\n");
    return 2;
  }
  const char *mode = argv[1];
  uint64_t n = strtoull(argv[2], NULL, 10);
  uint32_t maxpay = (uint32_t)strtoul(argv[3], NULL, 10);
  size_t offset = argc > 4 ? strtoull(argv[4], NULL, 10) : 0;
  uint64_t first = argc > 5 ? strtoull(argv[5], NULL, 10) : 1;
  if (maxpay > 2048) die(2, "MAXPAY %u above 2048", maxpay);
  make_block();
  if (fstat(3, &st) != 0) die(2, "fstat(3): %s", strerror(errno));
  unsigned char *base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, 3, 0);
  if (base == MAP_FAILED) die(2, "mmap: %s", strerror(errno));
  if (offset % 4 != 0 || offset + sizeof *ch > (size_t)st.st_size)
    die(2, "offset %zu outside the object of %lld bytes", offset, (long long)st.st_size);
  ch = (struct shm_channel *)(base + offset);
  if (__atomic_load_n(&ch->magic, __ATOMIC_ACQUIRE) != CHANNEL_MAGIC)
    die(2, "no version 3 channel at offset %zu (magic %#x)", offset, ch->magic);
  cap = ch->capacity;
  if (cap < 64 || (cap & (cap - 1)) != 0 || offset + sizeof *ch + cap > (size_t)st.st_size)
    die(2, "corrupt channel (capacity %u)", cap);
  mask = cap - 1;
  maxmsg = cap / 2 - 4;
  ring = base + offset + sizeof *ch;

  if (strcmp(mode, "consume") == 0 || strcmp(mode, "peek") == 0) {
    int peek = mode[0] == 'p';
    uint64_t bytes = 0;
    for (uint64_t i = 0; i < n; i++) bytes += consume_one(first + i, maxpay, peek);
    if (peek) return 3;
    printf("consumed %llu messages, %llu bytes\n", (unsigned long long)n,
           (unsigned long long)bytes);
  } else if (strcmp(mode, "produce") == 0) {
    if (ch->msg_size != 0)
      die(2, "the channel carries only %u-byte messages; this peer sends any size",
          ch->msg_size);
    for (uint64_t i = 0; i < n; i++) produce_one(first + i, maxpay);
    __atomic_store_n(&ch->closed, 1, __ATOMIC_SEQ_CST);
    syscall(SYS_futex, &ch->head, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    printf("produced %llu messages\n", (unsigned long long)n);
  } else {
    die(2, "unknown mode '%s'", mode);
  }
  return 0;
}
