/*
 * proc_fdpeer: the C side of descriptor passing, for tests/proc_spec.lua.
 * On the Unix socket at descriptor 3 it
 *   1. receives one message carrying descriptors (SCM_RIGHTS) and writes
 *      the message's payload into the first descriptor received;
 *   2. makes a pipe, writes "from-c" into it, and sends the read end back
 *      with the payload "back".
 * Exit status: 0 on success, 10+ the step that failed.
 */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
  char data[256];
  union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int) * 8)]; } ctl;
  struct iovec iov = { data, sizeof data };
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl.buf;
  msg.msg_controllen = sizeof ctl.buf;
  ssize_t n = recvmsg(3, &msg, 0);
  if (n <= 0) return 11;
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  if (c == NULL || c->cmsg_type != SCM_RIGHTS) return 12;
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  if (write(fd, data, (size_t)n) != n) return 13;
  close(fd);

  int pp[2];
  if (pipe(pp) < 0) return 14;
  if (write(pp[1], "from-c", 6) != 6) return 15;
  close(pp[1]);
  memset(&msg, 0, sizeof msg);
  memset(&ctl, 0, sizeof ctl);
  iov.iov_base = "back";
  iov.iov_len = 4;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl.buf;
  msg.msg_controllen = CMSG_SPACE(sizeof(int));
  c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &pp[0], sizeof(int));
  if (sendmsg(3, &msg, 0) != 4) return 16;
  return 0;
}
