/*
 * startup.c: start-up time of `PROG -e ''` for each PROG given, measured by
 * fork+exec+wait, interleaved round-robin so that machine noise hits every
 * program alike.  Prints each program's median in microseconds and its
 * ratio to the first (the baseline).  Usage: startup RUNS PROG...
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double run_once(const char *prog) {
  double t = now();
  int st;
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    execl(prog, prog, "-e", "", (char *)NULL);
    _exit(127);
  }
  if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    fprintf(stderr, "startup: %s failed\n", prog);
    exit(1);
  }
  return now() - t;
}

int main(int argc, char **argv) {
  int runs = argc > 1 ? atoi(argv[1]) : 300, n = argc - 2, i, j;
  double *t;
  if (n < 1 || runs < 1) return fprintf(stderr, "usage: startup RUNS PROG...\n"), 2;
  t = calloc((size_t)runs * (size_t)n, sizeof *t);
  for (j = 0; j < n; j++) run_once(argv[2 + j]); /* warm the page cache */
  for (i = 0; i < runs; i++)
    for (j = 0; j < n; j++) t[j * runs + i] = run_once(argv[2 + j]);
  for (j = 0; j < n; j++) qsort(t + j * runs, (size_t)runs, sizeof *t, cmp);
  for (j = 0; j < n; j++)
    printf("%-32s %8.1f us  %5.2fx\n", argv[2 + j], t[j * runs + runs / 2],
           t[j * runs + runs / 2] / t[runs / 2]);
  return 0;
}
