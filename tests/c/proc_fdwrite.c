/*
 * proc_fdwrite FD:TEXT ...: writes each TEXT to descriptor FD, in order,
 * and exits 0; exits 3 if a write fails (the descriptor is not open).
 * Lets tests/proc_spec.lua check descriptors at any number, where sh's
 * redirections stop at 9.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    char *colon = strchr(argv[i], ':');
    if (colon == NULL) { fprintf(stderr, "usage: proc_fdwrite FD:TEXT...\n"); return 2; }
    int fd = atoi(argv[i]);
    size_t len = strlen(colon + 1);
    if (write(fd, colon + 1, len) != (ssize_t)len) { perror("write"); return 3; }
  }
  return 0;
}
