/*
 * ptyrun SECONDS INPUT PROGRAM [ARG...]: runs PROGRAM on a new
 * pseudo-terminal (its stdin, stdout and stderr; its controlling tty),
 * copies everything it prints to our stdout, and once it has printed a
 * "> " prompt, types INPUT followed by the terminal's end-of-file
 * character.  Exits with PROGRAM's exit status, or 124 if it has not
 * finished within SECONDS (it is killed), 125 on a set-up failure.
 *
 * Lets tests/host_spec.lua check that the host starts its REPL by itself
 * when stdin is a terminal, without depending on how script(1) forwards
 * end-of-file from a pipe.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: ptyrun SECONDS INPUT PROGRAM [ARG...]\n");
    return 125;
  }
  double deadline = now() + atof(argv[1]);
  const char *input = argv[2];

  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
    perror("ptyrun: posix_openpt");
    return 125;
  }
  const char *slave_name = ptsname(master);
  if (slave_name == NULL) { perror("ptyrun: ptsname"); return 125; }

  pid_t pid = fork();
  if (pid < 0) { perror("ptyrun: fork"); return 125; }
  if (pid == 0) {
    setsid();
    int s = open(slave_name, O_RDWR);   /* becomes the controlling tty */
    if (s < 0) _exit(125);
    ioctl(s, TIOCSCTTY, 0);
    dup2(s, 0); dup2(s, 1); dup2(s, 2);
    if (s > 2) close(s);
    execvp(argv[3], argv + 3);
    _exit(127);
  }

  char eof = 4;                          /* ^D unless the tty says otherwise */
  int typed = 0, status = 0, exited = 0;
  char seen[2] = { 0, 0 };               /* last two bytes printed */
  for (;;) {
    double left = deadline - now();
    if (left <= 0) break;
    struct pollfd p = { .fd = master, .events = POLLIN };
    int r = poll(&p, 1, (int)(left * 1000) + 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) break;
    if (r == 0) continue;
    char buf[4096];
    ssize_t n = read(master, buf, sizeof buf);
    if (n <= 0) {                        /* EIO: every slave descriptor closed */
      if (waitpid(pid, &status, 0) == pid) exited = 1;
      break;
    }
    fwrite(buf, 1, (size_t)n, stdout);
    fflush(stdout);
    for (ssize_t i = 0; i < n; i++) { seen[0] = seen[1]; seen[1] = buf[i]; }
    if (!typed && seen[0] == '>' && seen[1] == ' ') {
      struct termios t;
      if (tcgetattr(master, &t) == 0 && t.c_cc[VEOF] != 0) eof = (char)t.c_cc[VEOF];
      if (write_all(master, input, strlen(input)) != 0 || write_all(master, &eof, 1) != 0) {
        perror("ptyrun: write");
        break;
      }
      typed = 1;
    }
  }
  if (!exited) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    fprintf(stderr, "ptyrun: %s did not finish within %s s\n", argv[3], argv[1]);
    return 124;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}
