/*
 * proc_fdlist: prints the descriptors this process has open, ascending,
 * space separated ("0 1 2 5\n"), leaving out the one used to list them.
 * Used by tests/proc_spec.lua to check what shm.spawn lets a child inherit.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp(const void *a, const void *b) {
  return *(const int *)a - *(const int *)b;
}

int main(void) {
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL) { perror("opendir"); return 2; }
  int self = dirfd(d), fds[4096], n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL && n < 4096) {
    if (e->d_name[0] == '.') continue;
    int fd = atoi(e->d_name);
    if (fd != self) fds[n++] = fd;
  }
  closedir(d);
  qsort(fds, (size_t)n, sizeof fds[0], cmp);
  for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", fds[i]);
  printf("\n");
  return 0;
}
