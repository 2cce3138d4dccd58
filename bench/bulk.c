/*
 * bulk.c: the baseline for bench/bulk.lua: C memcpy of SIZE bytes into and
 * out of a MAP_SHARED memfd mapping whose pages exist, as shmlua's m:write
 * and m:read do.  Prints the median GB/s of REPS runs of each direction.
 * Usage: bulk [MiB [reps]]
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  size_t size = (size_t)(argc > 1 ? atoi(argv[1]) : 64) << 20;
  int reps = argc > 2 ? atoi(argv[2]) : 15, i;
  double wr[100], rd[100];
  int fd = memfd_create("bulk", MFD_CLOEXEC);
  unsigned char *m, *src, *dst;
  if (fd < 0 || ftruncate(fd, (off_t)size) != 0) return perror("memfd"), 1;
  m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  src = malloc(size);
  dst = malloc(size);
  if (m == MAP_FAILED || !src || !dst) return perror("alloc"), 1;
  if (reps > 100) reps = 100;
  memset(src, 'x', size);
  memset(dst, 0, size);
  memset(m, 0, size);
  for (i = 0; i < reps; i++) {
    double t = now();
    memcpy(m, src, size);
    wr[i] = (double)size / (now() - t) / 1e9;
    t = now();
    memcpy(dst, m, size);
    rd[i] = (double)size / (now() - t) / 1e9;
  }
  qsort(wr, (size_t)reps, sizeof *wr, cmp);
  qsort(rd, (size_t)reps, sizeof *rd, cmp);
  printf("%.3f %.3f\n", wr[reps / 2], rd[reps / 2]);
  return dst[size / 2] == 'x' ? 0 : 1;
}
