/*
 * tools/model/channel.pml: a SPIN model of the SPSC channel's index
 * protocol (src/channel.c, src/atomic.c shm_wait32/shm_notify32).
 *
 * One producer sends NMSG messages with sequence numbers 1..NMSG over a
 * ring of CAP words (CAP = 4 words = 16 bytes); a record is a length word
 * plus 0 or 1 payload word (records of 1..2 words: the channel's maximum
 * message is capacity/2 - 4 bytes = 4 bytes here); a length of WRAP marks
 * the end of the ring when a record does not fit before it (the record
 * then starts at 0), as put()/take_record() do.  Indices count words; they
 * never reach 256 in a run, so the 2^32 modulus is not exercised (head -
 * tail is what the code uses, and it is the same here).
 *
 * Memory model: every shared access is sequentially consistent (one SPIN
 * step each).  The C code uses release stores / acquire loads for
 * head/tail and seq_cst for the waiters Dekker protocol (store the index,
 * load the waiters count / increment the count, load the index); SC is
 * the strongest reading of those orders and acceptable for this check.
 *
 * Sleep/wake: a waiter increments its waiters count, re-checks the index
 * and sleeps only if it is unchanged (the futex check and the sleep are one
 * atomic step, as FUTEX_WAIT is); the notifier stores the index, then
 * wakes the sleeper only if the count is non-zero.  The C waits also time
 * out (50 ms slices); the model has no timeouts, so a lost wake-up shows
 * as a deadlock (invalid end state) instead of being masked.
 *
 * Checks: the consumer asserts each message's length and payload (its
 * sequence number): no loss, duplicate, reordering or torn record; pan's
 * invalid-end-state check finds deadlocks / lost wake-ups.
 *
 * Mutations (spin -DMUT=n): 1 publishes head before writing the record
 * (must fail an assertion); 2 omits the waiter's re-check (must deadlock).
 */
#ifndef MUT
#define MUT 0
#endif
#define CAP 4
#define NMSG 5
#define WRAP 255

byte ring[CAP];
byte head = 0, tail = 0;
byte head_waiters = 0, tail_waiters = 0;
bit csleep = 0, psleep = 0;   /* consumer sleeps on head, producer on tail */
byte received = 0;

/* payload length (words) of message s: 1,0,1,1,0,... enough to wrap */
inline plen(s, l) { l = ((s % 3) == 2 -> 0 : 1) }

proctype producer() {
  byte s = 1, l, rec, pos, room, want, h, t;
  do
  :: s > NMSG -> break
  :: else ->
    plen(s, l);
    rec = 1 + l;
    h = head;
    pos = h % CAP;
    room = CAP - pos;
    want = (rec <= room -> rec : room + rec);
    t = tail;
    do
    :: CAP - (h - t) >= want -> break
    :: else ->   /* wait on tail while it holds t */
      tail_waiters++;
#if MUT == 2
      atomic { psleep = 1 };
#else
      atomic { if :: tail == t -> psleep = 1 :: else -> skip fi };
#endif
      psleep == 0;
      tail_waiters--;
      t = tail
    od;
#if MUT == 1
    head = h + want;   /* WRONG: published before the record is written */
    if :: head_waiters > 0 -> csleep = 0 :: else -> skip fi;
#endif
    if
    :: rec > room -> ring[pos] = WRAP; h = h + room; pos = 0
    :: else -> skip
    fi;
    ring[pos] = l;
    if :: l > 0 -> ring[pos + 1] = s :: else -> skip fi;
#if MUT != 1
    head = h + rec;    /* publish (release, seq_cst in notify) */
    if :: head_waiters > 0 -> csleep = 0 :: else -> skip fi;
#endif
    s++
  od
}

proctype consumer() {
  byte s = 1, l, el, pos, h, t, sk;
  do
  :: s > NMSG -> break
  :: else ->
    t = tail;
    h = head;
    do
    :: h != t -> break
    :: else ->   /* wait on head while it holds h */
      head_waiters++;
#if MUT == 2
      atomic { csleep = 1 };
#else
      atomic { if :: head == h -> csleep = 1 :: else -> skip fi };
#endif
      csleep == 0;
      head_waiters--;
      h = head
    od;
    pos = t % CAP;
    sk = 0;
    l = ring[pos];
    if
    :: l == WRAP -> sk = CAP - pos; pos = 0; l = ring[0]
    :: else -> skip
    fi;
    plen(s, el);
    assert(l == el);                       /* not torn, not another message */
    assert(sk + 1 + l <= h - t);         /* inside the published bytes */
    if :: l > 0 -> assert(ring[pos + 1] == s) :: else -> skip fi;
    received++;
    tail = t + sk + 1 + l;   /* publish after the copy */
    if :: tail_waiters > 0 -> psleep = 0 :: else -> skip fi;
    s++
  od
}

/* every run ends with all messages delivered */
init {
  atomic { run producer(); run consumer() };
  _nr_pr == 1 -> assert(received == NMSG)
}
