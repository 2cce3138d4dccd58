/*
 * pingpong.c: the C baselines for the IPC benchmarks.  Two processes (a
 * parent and a forked child) share one 32-bit counter in a MAP_SHARED memfd
 * mapping and bounce it: the parent stores an odd value and waits for the
 * next even one, the child waits for the odd value and stores the next even
 * one.  One exchange of both is a round trip.
 *
 * Modes, i.e. how a side waits for the counter to change:
 *   spin    spin on an atomic load with a pause instruction; no syscalls
 *   futex   FUTEX_WAIT (shared, no private flag); the storer always calls
 *           FUTEX_WAKE
 *   hybrid  spin up to 4000 pauses, then FUTEX_WAIT; the storer calls
 *           FUTEX_WAKE only when a waiter count says someone may sleep
 *           (the protocol of shm.notify / shm.wait_change, see src/atomic.c)
 * Placements:
 *   cross   parent pinned to CPU A, child to CPU B (sched_setaffinity)
 *   same    both pinned to CPU A
 *   none    no pinning: wherever the scheduler (or `taskset`) puts them
 *
 * Each (mode, placement) runs RUNS times; a run is N round trips, or fewer
 * if it reaches the per-run time limit (spinning on one core can take a
 * whole time slice per exchange).  Prints the median of the runs' mean round
 * trip in ns, and min/max of the run means.
 *
 * Usage: pingpong [-m spin|futex|hybrid|all] [-p cross|same|none|all]
 *                 [-c A,B] [-n N] [-r RUNS] [-t SECONDS_PER_RUN]
 * A,B default to the first two CPUs this process may run on, so that it
 * also works under `taskset`; with one CPU, cross-core is skipped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STOP 0xFFFFFFFFu /* the parent's "no more rounds" value (odd) */
#define HYBRID_SPIN 4000

enum { SPIN, FUTEX, HYBRID };
static const char *mode_names[] = { "spin", "futex", "hybrid" };
enum { CROSS, SAME, NONE };
static const char *place_names[] = { "cross-core", "same-core", "unpinned" };

/* The shared page: the counter and the sleeper count on separate lines. */
struct Shared {
  _Alignas(64) uint32_t seq;
  _Alignas(64) uint32_t waiters;
};

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static long futex(uint32_t *addr, int op, uint32_t val) {
  return syscall(SYS_futex, addr, op, val, NULL, NULL, 0);
}

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* Blocks until s->seq != old (by `mode`); returns the new value. */
static uint32_t wait_change(struct Shared *s, int mode, uint32_t old) {
  uint32_t v;
  int i;
  switch (mode) {
  case SPIN:
    while ((v = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE)) == old) cpu_relax();
    return v;
  case FUTEX:
    while ((v = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE)) == old)
      futex(&s->seq, FUTEX_WAIT, old);
    return v;
  default: /* HYBRID */
    for (i = 0; i < HYBRID_SPIN; i++) {
      if ((v = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE)) != old) return v;
      cpu_relax();
    }
    for (;;) {
      /* announce, re-check, sleep: pairs with notify's store-then-load */
      __atomic_add_fetch(&s->waiters, 1, __ATOMIC_SEQ_CST);
      if ((v = __atomic_load_n(&s->seq, __ATOMIC_SEQ_CST)) == old)
        futex(&s->seq, FUTEX_WAIT, old);
      __atomic_sub_fetch(&s->waiters, 1, __ATOMIC_SEQ_CST);
      if ((v = __atomic_load_n(&s->seq, __ATOMIC_SEQ_CST)) != old) return v;
    }
  }
}

/* Stores v into s->seq and wakes a sleeper if `mode` may have one. */
static void notify(struct Shared *s, int mode, uint32_t v) {
  switch (mode) {
  case SPIN:
    __atomic_store_n(&s->seq, v, __ATOMIC_RELEASE);
    break;
  case FUTEX:
    __atomic_store_n(&s->seq, v, __ATOMIC_RELEASE);
    futex(&s->seq, FUTEX_WAKE, INT_MAX);
    break;
  default:
    __atomic_store_n(&s->seq, v, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&s->waiters, __ATOMIC_SEQ_CST) != 0)
      futex(&s->seq, FUTEX_WAKE, INT_MAX);
  }
}

static int pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    fprintf(stderr, "pingpong: sched_setaffinity(cpu %d): %s\n", cpu,
            strerror(errno));
    return -1;
  }
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/*
 * One (mode, placement) measurement: forks the echoing child, runs `runs`
 * runs, prints one line.  Returns 0, or -1 if something failed.
 */
static int measure(struct Shared *s, int mode, int place, int cpu_a,
                   int cpu_b, long n, int runs, double limit_s) {
  cpu_set_t saved;
  double means[64], rounds[64];
  pid_t pid;
  int r, status, rc = 0;
  uint32_t seq = 0;

  sched_getaffinity(0, sizeof saved, &saved);
  s->seq = 0;
  s->waiters = 0;
  if (place != NONE && pin(cpu_a) != 0) return -1;
  pid = fork();
  if (pid < 0) {
    perror("pingpong: fork");
    return -1;
  }
  if (pid == 0) { /* the echo side: odd in, next even out, until STOP */
    uint32_t v = 0;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (place == CROSS && pin(cpu_b) != 0) _exit(1);
    for (;;) {
      v = wait_change(s, mode, v);
      if (v == STOP) _exit(0);
      notify(s, mode, v + 1);
      v = v + 1;
    }
  }
  for (r = 0; r < runs; r++) {
    double t0 = now_ns(), t1;
    long i, next_check = 0;
    for (i = 0; i < n; i++) {
      notify(s, mode, seq + 1);
      seq = wait_change(s, mode, seq + 1);
      if (i >= next_check) { /* every round while rounds are slow */
        double dt = now_ns() - t0;
        if (dt > limit_s * 1e9) {
          i++;
          break;
        }
        next_check = i + (dt / (double)(i + 1) < 1e5 ? 64 : 1);
      }
    }
    t1 = now_ns();
    means[r] = (t1 - t0) / (double)i;
    rounds[r] = (double)i;
  }
  notify(s, mode, STOP);
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0) {
    fprintf(stderr, "pingpong: the child failed\n");
    rc = -1;
  }
  sched_setaffinity(0, sizeof saved, &saved);
  if (rc != 0) return rc;
  {
    double sorted[64], rmin = rounds[0];
    memcpy(sorted, means, sizeof(double) * (size_t)runs);
    qsort(sorted, (size_t)runs, sizeof(double), cmp_double);
    for (r = 1; r < runs; r++)
      if (rounds[r] < rmin) rmin = rounds[r];
    printf("%-6s %-10s", mode_names[mode], place_names[place]);
    if (place == CROSS) printf(" (cpu %d,%d)", cpu_a, cpu_b);
    else if (place == SAME) printf(" (cpu %d)  ", cpu_a);
    else printf("          ");
    printf(" median %10.0f ns/round trip  (runs %d, min %.0f, max %.0f, "
           "%s%.0f round trips a run)\n",
           sorted[runs / 2], runs, sorted[0], sorted[runs - 1],
           rmin < (double)n ? "time-limited, >= " : "", rmin);
  }
  fflush(stdout);
  return 0;
}

static int parse_choice(const char *arg, const char **names, int count) {
  int i;
  if (strcmp(arg, "all") == 0) return -1;
  for (i = 0; i < count; i++)
    if (strcmp(arg, names[i]) == 0 || strncmp(arg, names[i], 4) == 0) return i;
  fprintf(stderr, "pingpong: unknown choice '%s'\n", arg);
  exit(2);
}

int main(int argc, char **argv) {
  static const char *places_short[] = { "cross", "same", "none" };
  int mode = -1, place = -1, cpu_a = -1, cpu_b = -1, runs = 5, opt, m, p;
  int ncpu, fd, failed = 0;
  long n = 0;
  double limit_s = 1.0;
  cpu_set_t avail;
  struct Shared *s;

  while ((opt = getopt(argc, argv, "m:p:c:n:r:t:h")) != -1) {
    switch (opt) {
    case 'm': mode = parse_choice(optarg, mode_names, 3); break;
    case 'p': place = parse_choice(optarg, places_short, 3); break;
    case 'c':
      if (sscanf(optarg, "%d,%d", &cpu_a, &cpu_b) != 2) {
        fprintf(stderr, "pingpong: -c wants A,B\n");
        return 2;
      }
      break;
    case 'n': n = atol(optarg); break;
    case 'r': runs = atoi(optarg); break;
    case 't': limit_s = atof(optarg); break;
    default:
      fprintf(stderr, "usage: pingpong [-m spin|futex|hybrid|all] "
              "[-p cross|same|none|all] [-c A,B] [-n N] [-r RUNS] "
              "[-t SECONDS_PER_RUN]\n");
      return opt == 'h' ? 0 : 2;
    }
  }
  if (runs < 1) runs = 1;
  if (runs > 64) runs = 64;

  if (sched_getaffinity(0, sizeof avail, &avail) != 0) CPU_ZERO(&avail);
  ncpu = CPU_COUNT(&avail);
  printf("pingpong: %d CPU(s) available to this process\n", ncpu);
  if (cpu_a < 0) { /* default: the first two CPUs we may run on */
    int c;
    for (c = 0; c < CPU_SETSIZE; c++) {
      if (!CPU_ISSET(c, &avail)) continue;
      if (cpu_a < 0) cpu_a = c;
      else if (cpu_b < 0) cpu_b = c;
    }
  }

  fd = memfd_create("pingpong", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, sizeof(struct Shared)) != 0) {
    perror("pingpong: memfd");
    return 1;
  }
  s = mmap(NULL, sizeof(struct Shared), PROT_READ | PROT_WRITE, MAP_SHARED,
           fd, 0);
  if (s == MAP_FAILED) {
    perror("pingpong: mmap");
    return 1;
  }
  close(fd);

  for (p = 0; p < 3; p++) {
    if (place >= 0 && p != place) continue;
    if (p == CROSS && ncpu < 2) {
      printf("cross-core: skipped: only %d CPU is available to this process\n",
             ncpu);
      continue;
    }
    if (p != NONE && (cpu_a < 0 || cpu_a >= CPU_SETSIZE ||
                      !CPU_ISSET(cpu_a, &avail))) {
      printf("%s: skipped: CPU %d is not available\n", place_names[p], cpu_a);
      continue;
    }
    if (p == CROSS && (cpu_b < 0 || cpu_b >= CPU_SETSIZE ||
                       !CPU_ISSET(cpu_b, &avail) || cpu_b == cpu_a)) {
      printf("cross-core: skipped: CPU %d is not available as the second "
             "CPU\n", cpu_b);
      continue;
    }
    for (m = 0; m < 3; m++) {
      long rounds = n;
      if (mode >= 0 && m != mode) continue;
      if (rounds <= 0) rounds = m == FUTEX ? 20000 : 200000;
      if (measure(s, m, p, cpu_a, cpu_b, rounds, runs, limit_s) != 0)
        failed = 1;
    }
  }
  return failed;
}
