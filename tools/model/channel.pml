/*
 * tools/model/channel.pml: a SPIN model of version 3 of the SPSC channel
 * protocol ("CHN3", described at the top of lua/shm/channel.lua): records
 * published by a per-record stamp word, a 0 terminator stored ahead of
 * each record, the producer's cached tail_seen, head stored after the
 * stamp, the consumer waiting on the stamp but sleeping on head, the
 * producer sleeping on tail; with -DCRASH, a producer killed at any point
 * of a send and its successor's repair of head.
 *
 * One producer sends NMSG messages with sequence numbers 1..NMSG over a
 * ring of CAP words (CAP = 4 words = 16 bytes).  A record is a stamp word
 * plus 0 or 1 payload word (records of 1..2 words: the channel's maximum
 * message is capacity/2 - 4 bytes = 4 bytes here).  The stamp is 0 for
 * "nothing written here yet", l + 1 for a record of l payload words (so
 * the stamp is also the record's length in words), WRAP when the record
 * did not fit before the end of the ring and starts at offset 0.  The
 * payload word is the message's sequence number.  The ring starts zeroed;
 * the sizes (1,0,1,1,0,1,1,0,1,1 payload words) wrap three times, so later
 * laps find the stamps and payloads of earlier laps in the ring: stale
 * contents are possible, and a missing terminator is caught.  Indices
 * count words; they never reach 256 in a run, so the 2^32 modulus is not
 * exercised (the code only uses differences of indices and index mod
 * capacity, which are the same here).
 *
 * One send at p = head (q = where the next record starts, rec = 1 + l,
 * want = rec plus the words skipped when wrapping):
 *   1. room: h + want + 1 - tail_seen <= CAP (the 1: the terminator word);
 *      only if not, tail_seen = tail, and while still no room wait on tail;
 *   2. ring[q] = 0;
 *   3. the payload (when wrapping: payload and stamp at offset 0);
 *   4. ring[p] = stamp (when wrapping: WRAP) -- the message is sent;
 *   5. head = q; wake head if head_waiters says a consumer sleeps on
 *      another value than q.
 * The consumer at t = tail waits until the stamp at t is not 0, follows a
 * WRAP to offset 0, checks and "copies" the record, then stores tail past
 * it and wakes tail if tail_waiters says a producer sleeps on another
 * value.  head_waiters and tail_waiters are flags (one sleeper per word):
 * 0, or 1 + the value of the word the sleeper sleeps on (read before it
 * raised the flag).  The sleeper raises its flag, the waker lowers it
 * (compare-and-swap) when it wakes, so a sleeper taking its time to wake
 * up costs one wake, not one per store meanwhile.  A sleeper on the value
 * just stored read it before raising its flag, so it re-checked after
 * that store and waits for a later one: waking it (and lowering its flag)
 * would lose that later wake-up (mutant 9).
 *
 * Memory model: every shared access is sequentially consistent (one SPIN
 * step each).  The C code uses release stores / acquire loads for the
 * stamps and indices and seq_cst for the sleep flags' Dekker protocol
 * (store head / tail, then load the flag; raise the flag, then re-check);
 * SC is the strongest reading of those orders, so the model does not show
 * what weaker hardware orders would do.  Words are written
 * whole (no byte tearing within a word).
 *
 * Sleep/wake: FUTEX_WAIT's compare and sleep are one atomic step (csleep /
 * psleep set only if the word still holds the expected value), a wake
 * clears csleep / psleep.  The consumer sleeps as channel.lua says: h =
 * head, head_waiters = h + 1, re-check the stamp at t, FUTEX_WAIT(&head,
 * h).  The producer: fv = tail, tail_waiters = fv + 1, re-read tail, and
 * if there is still no room FUTEX_WAIT(&tail, fv).  Neither lowers its
 * own flag.
 * The C waits also time out (50 ms slices); the model has no timeouts, so
 * a lost wake-up shows as a deadlock (invalid end state) instead of being
 * masked.  The spinning/yielding phase before a sleep is not modelled (it
 * only re-reads the same words).
 *
 * Checks: the consumer asserts, for its s-th message, that message s was
 * sent (its stamp stored: ghost `sent`), that it reads it where it was
 * stamped (ghost `at`), its length and its payload (the sequence number):
 * no loss, duplicate, reordering, stale or torn record; pan's invalid
 * end-state check finds deadlocks and lost wake-ups; init asserts that
 * every run ends with all NMSG messages received.
 *
 * Crash (-DCRASH): once per run, the producer may die in a send: after
 * step 1, 2, 3, 4 (the stamp stored, head not), after storing head but
 * before the wake, or in its sleep on tail (leaving its flag raised in
 * tail_waiters).  A successor then starts and sends sent+1 .. NMSG (every
 * message whose stamp was stored counts as sent; one it died writing
 * before its stamp is sent again, with another size: a successor's sizes
 * are the complement, 0,1,0,0,1,...).  Its first send repairs head: it
 * walks the stamps from head to the first 0 (following WRAP to offset 0),
 * stores head there and wakes head if head_waiters != 0, even when head
 * did not move (a consumer may sleep on the old head value; mutants 7,
 * 8); and it clears a stale tail_waiters before raising it.
 * The consumer's assertions then say that nothing sent is lost or
 * duplicated and nothing unsent is received.  A crash is only taken while
 * the successor has a message to send (sent < NMSG): with no later send
 * nothing repairs head, and a consumer asleep on head would need its
 * 50 ms timeout, which the model does not have.
 *
 * Mutations (spin -DMUT=n; each must make pan report an error):
 *   1  step 2 omitted (no 0 terminator): the consumer reads a stale stamp
 *      of an earlier lap (assertion);
 *   2  the consumer sleeps without re-checking the stamp after raising
 *      head_waiters (lost wake-up: invalid end state);
 *   3  the stamp is stored before the payload (torn record: assertion);
 *   4  (with -DCRASH) the successor does not walk the stamps: it writes
 *      over a sent record (assertion or invalid end state);
 *   5  room check without the terminator's word: the terminator can
 *      overwrite the unconsumed stamp at tail (invalid end state);
 *   6  head stored (and the consumer woken) before the stamp (lost
 *      wake-up: invalid end state);
 *   7  (with -DCRASH) the successor's repair stores head without waking
 *      a consumer asleep on head (invalid end state: the consumer sleeps
 *      on the old head while the successor waits for room);
 *   8  (with -DCRASH) the repair publishes and wakes only when the walk
 *      moved head: a predecessor killed after storing head and before
 *      its wake leaves a consumer asleep that nothing wakes while the
 *      successor waits for room (invalid end state; in C the consumer's
 *      50 ms timeout slice would end that sleep late, not lose data);
 *   9  a waker lowers the flag and wakes whatever value the sleeper sleeps
 *      on: a wake meant for a message the consumer already took lowers
 *      the flag it raised to wait for the next one, whose publish then
 *      wakes nobody (invalid end state).
 * 4, 7 and 8 only change the successor, so without -DCRASH they verify.
 */
#ifndef MUT
#define MUT 0
#endif
#define CAP 4
#define NMSG 10
#define WRAP 255

byte ring[CAP];                /* zeroed, as channel.new() leaves it */
byte head = 0, tail = 0, tail_seen = 0;
byte head_waiters = 0, tail_waiters = 0;
bit csleep = 0, psleep = 0;    /* consumer asleep on head, producer on tail */
byte received = 0;
byte sent = 0;                 /* ghost: messages whose stamp is stored */
byte at[NMSG + 1];             /* ghost: where message s was stamped */
byte size[NMSG + 1];           /* ghost: its payload length */
bit crashed = 0, pgone = 0;

/* payload length (words) of message s: 1,0,1,1,0,1,1,0,1,1 (wraps three
 * times); a successor sends the complement (0,1,0,0,1,...), so a message
 * its predecessor died writing is sent again with another size */
inline plen(s, l) { l = ((s % 3) == 2 -> 0 : 1); l = (successor -> 1 - l : l) }

/* room for want words at h plus the terminator word (mutant 5: without) */
#if MUT == 5
#define ROOM(t) (h + want - (t) <= CAP)
#else
#define ROOM(t) (h + want + 1 - (t) <= CAP)
#endif

/* the producer may die here (once a run, if a successor has work) */
#ifdef CRASH
#define CANDIE (!crashed && sent < NMSG)
#define CRASHPOINT if :: CANDIE -> crashed = 1; goto gone :: true -> skip fi
#else
#define CRASHPOINT skip
#endif

/* after storing x into the word: if the flag f says that a sleeper waits
 * on another value than x, lower it (compare-and-swap) and wake (sleep =
 * 0); a sleeper on x itself waits for a later store (mutant 9: lower and
 * wake for any raised flag) */
inline wake(f, sleep, x) {
  was = f;
#if MUT == 9
  if
  :: was != 0 ->
#else
  if
  :: was != 0 && was != x + 1 ->
#endif
    atomic { if :: f == was -> f = 0 :: else -> skip fi };
    sleep = 0
  :: else -> skip
  fi;
  was = 0   /* (locals are reset after use: fewer states) */
}

/* store head = q, then wake the consumer if it raised its flag */
inline publish_head(v) {
  head = v;
  wake(head_waiters, csleep, v)
}

/* store stamp v at p: message s (payload length l) is sent; the ghosts
 * are updated in the same step */
inline stamp(p, v) {
  d_step { ring[(p) % CAP] = v; sent++; at[s] = p; size[s] = l; assert(sent == s) }
}

proctype producer(byte s0; bit successor) {
  byte s = s0, l, rec, pos, room, want, h, was, fv;
  h = head;
  if
  :: successor ->   /* first send of a new producer: repair head */
#if MUT != 4
    do
    :: l = ring[h % CAP];
       if
       :: l == 0 -> break
       :: l == WRAP -> h = h + CAP - h % CAP
       :: else -> h = h + l     /* a stamp is its record's length */
       fi
    od;
    l = 0;
#endif
#if MUT == 7
    head = h            /* WRONG: no wake */
#elif MUT == 8
    if :: h != head -> publish_head(h) :: else -> skip fi   /* WRONG: only if moved */
#else
    publish_head(h)
#endif
  :: else -> skip
  fi;
  do
  :: s > NMSG -> break
  :: else ->
    plen(s, l);
    rec = 1 + l;
    pos = h % CAP;
    room = CAP - pos;
    want = (rec <= room -> rec : room + rec);
    /* 1. room, from tail_seen; re-read tail only when it says no room */
    if
    :: ROOM(tail_seen) -> skip
    :: else ->
      tail_seen = tail;
      do
      :: ROOM(tail_seen) -> break
      :: else ->   /* wait on tail while it holds tail_seen */
        /* a flag already raised is a dead predecessor's: clear it */
        if :: tail_waiters != 0 -> tail_waiters = 0 :: else -> skip fi;
        fv = tail;
        tail_waiters = fv + 1;
        /* re-check, then FUTEX_WAIT(&tail, fv) */
        tail_seen = tail;
        if
        :: ROOM(tail_seen) -> skip
        :: else ->
          atomic { if :: tail == fv -> psleep = 1 :: else -> skip fi };
#ifdef CRASH
          if
          :: psleep == 0
          :: CANDIE ->   /* dies asleep: its flag stays raised */
            atomic { crashed = 1; psleep = 0 }; goto gone
          fi;
#else
          psleep == 0;
#endif
          tail_seen = tail
        fi;
        fv = 0
      od
    fi;
    CRASHPOINT;
#if MUT == 6
    publish_head(h + want);   /* WRONG: head before the stamp */
#endif
    /* 2. the terminator where the next record will start */
#if MUT != 1
    ring[(h + want) % CAP] = 0;
#endif
    CRASHPOINT;
#if MUT == 3
    /* WRONG: 4. before 3. */
    if
    :: rec > room -> ring[0] = rec; stamp(h, WRAP)
    :: else -> stamp(h, rec)
    fi;
    if :: l > 0 -> ring[(h + want - 1) % CAP] = s :: else -> skip fi;
#else
    /* 3. the payload (and, when wrapping, the stamp at offset 0) */
    if :: l > 0 -> ring[(h + want - 1) % CAP] = s :: else -> skip fi;
    if :: rec > room -> ring[0] = rec :: else -> skip fi;
    CRASHPOINT;
    /* 4. the stamp at p: sent */
    if
    :: rec > room -> stamp(h, WRAP)
    :: else -> stamp(h, rec)
    fi;
#endif
    CRASHPOINT;
    /* 5. publish head, wake the consumer if it raised its flag */
#if MUT != 6
    head = h + want;
    CRASHPOINT;
    wake(head_waiters, csleep, h + want);
#endif
    h = h + want;
    s++
  od;
gone:
  pgone = 1
}

proctype consumer() {
  byte s = 1, st, pos, h, t, was;
  do
  :: s > NMSG -> break
  :: else ->
    pos = t % CAP;
    /* wait until the stamp at t is not 0; sleep on head */
    do
    :: st = ring[pos];
       if
       :: st != 0 -> break
       :: else ->
         h = head;
         head_waiters = h + 1;
#if MUT == 2
         atomic { if :: head == h -> csleep = 1 :: else -> skip fi };   /* WRONG: no re-check */
         csleep == 0;
#else
         if
         :: ring[pos] != 0 -> skip
         :: else ->
           atomic { if :: head == h -> csleep = 1 :: else -> skip fi };
           csleep == 0
         fi;
#endif
         h = 0
       fi
    od;
    assert(s <= sent);                 /* message s was sent ... */
    assert(at[s] == t);                /* ... here: no stale, lost or duplicate record */
    if
    :: st == WRAP -> t = t + CAP - pos; pos = 0; st = ring[0]
    :: else -> skip
    fi;
    assert(st == size[s] + 1);          /* its length */
    if :: st > 1 -> assert(ring[pos + 1] == s) :: else -> skip fi;  /* not torn */
    received++;
    t = t + st;
    tail = t;                          /* publish after the copy */
    wake(tail_waiters, psleep, t);
    st = 0;
    s++
  od
}

init {
  atomic { run producer(1, 0); run consumer() };
#ifdef CRASH
  pgone;
  if
  :: crashed -> run producer(sent + 1, 1)
  :: else -> skip
  fi;
#endif
  _nr_pr == 1 -> assert(received == NMSG)
}
