/*
 * proc.c: processes and descriptor passing.
 *
 *   shm.spawn(argv [, opts])          fork + exec, descriptors mapped exactly
 *   shm.wait(pid [, timeout_s])       "exited", code | "signaled", signo
 *   shm.kill(pid [, sig])             and the SIG* constants
 *   shm.getpid(), shm.getppid(), shm.exepath()
 *   shm.clock(), shm.sleep(s)         CLOCK_MONOTONIC in nanoseconds
 *   shm.pipe(), shm.socketpair([type])
 *   shm.send_fd(sock, fds [, payload]), shm.recv_fd(sock [, maxfds [, maxlen]])
 *   shm.pidfd_open(pid), shm.pidfd_getfd(pidfd, fd),
 *   shm.pidfd_send_signal(pidfd, sig), shm.open_proc_fd(pid, fd [, flags])
 *   shm.write_fd(fd, s), shm.read_fd(fd [, n]), shm.poll_fd(fd, ev [, t])
 *
 * Every descriptor this file creates is close-on-exec, so a child started
 * by spawn (or by anyone else's exec) sees only what it was given.  Misuse
 * raises; a failing system call returns nil, "call(arg): ENAME: text", errno.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shm.h"

extern char **environ;

#define MAX_SEND_FDS 253          /* SCM_MAX_FD: the kernel's limit a message */
#define DEFAULT_READ 65536
#define DEFAULT_RECV 4096

/* ------------------------------------------------------------------ time */

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * A duration in seconds at `arg`: a finite non-negative number; raises
 * otherwise.  Returned in nanoseconds, saturated near 30 years so deadline
 * arithmetic never overflows.
 */
static int64_t check_seconds(lua_State *L, int arg) {
  lua_Number s = luaL_checknumber(L, arg);
  luaL_argcheck(L, s >= 0 && !isnan(s), arg, "duration must be a non-negative number");
  if (s > 1e9) return (int64_t)1e18;  /* also +inf: about 30 years */
  return (int64_t)(s * 1e9);
}

static struct timespec ns_to_ts(int64_t ns) {
  struct timespec ts;
  ts.tv_sec = (time_t)(ns / 1000000000);
  ts.tv_nsec = (long)(ns % 1000000000);
  return ts;
}

/* shm.clock() -> CLOCK_MONOTONIC in integer nanoseconds. */
static int proc_clock(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)mono_ns());
  return 1;
}

/*
 * shm.sleep(seconds) -> true.  Sleeps to an absolute monotonic deadline, so
 * a signal that interrupts the sleep costs nothing: it resumes for exactly
 * the time that remains.  Raises for a negative or NaN duration.
 */
static int proc_sleep(lua_State *L) {
  int64_t d = check_seconds(L, 1);
  struct timespec until = ns_to_ts(mono_ns() + d);
  int r;
  while ((r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL)) == EINTR)
    ;
  if (r != 0) return shm_fail(L, "sleep", NULL, r);
  lua_pushboolean(L, 1);
  return 1;
}

/* --------------------------------------------------------------- helpers */

/* A process id at `arg`: an integer in [1, INT_MAX]; raises otherwise. */
static pid_t check_pid(lua_State *L, int arg) {
  lua_Integer n = luaL_checkinteger(L, arg);
  luaL_argcheck(L, n > 0 && n <= INT_MAX, arg, "process id must be a positive integer");
  return (pid_t)n;
}

/* A signal number at `arg` (0 allowed: existence check); raises otherwise. */
static int check_signal(lua_State *L, int arg, int def) {
  int sig = lua_isnoneornil(L, arg) ? def : shm_checkint(L, arg);
  luaL_argcheck(L, sig >= 0 && sig < NSIG, arg, "not a signal number");
  return sig;
}

static const char *pid_string(lua_State *L, pid_t pid) {
  return lua_pushfstring(L, "%d", (int)pid);
}

static void close_keep_errno(int fd) {
  int e = errno;
  if (fd >= 0) close(fd);
  errno = e;
}

/* --------------------------------------------------------------- spawn */

/* One descriptor the child gets: `src` (parent's number) at `target`. */
typedef struct Redir {
  int target;
  int src;     /* >= 0 a descriptor; SRC_NULL / SRC_PIPE until acquired */
  int tmp;     /* the child's copy of src, at a number that is no target */
} Redir;

#define SRC_NULL (-1)
#define SRC_PIPE (-2)

/* What the child reports through the error pipe before it gives up. */
enum { STEP_ERRFD, STEP_DUP, STEP_DUP2, STEP_CHDIR, STEP_EXEC };
typedef struct ChildError {
  int step, index, err;
} ChildError;

typedef struct SpawnPlan {
  const char *prog;
  char **argv;
  char **envp;           /* NULL: inherit the parent's environment */
  const char *cwd;       /* NULL: stay */
  Redir *redir;          /* sorted by target */
  int nredir;
} SpawnPlan;

static void child_report(int fd, int step, int index, int err) {
  ChildError ce;
  ce.step = step;
  ce.index = index;
  ce.err = err;
  while (write(fd, &ce, sizeof ce) < 0 && errno == EINTR)
    ;
  _exit(127);
}

/* Marks every descriptor in [lo, hi] close-on-exec. */
static void child_cloexec_range(unsigned lo, unsigned hi) {
  if (lo > hi) return;
#ifdef SYS_close_range
  if (syscall(SYS_close_range, lo, hi, 4u /* CLOSE_RANGE_CLOEXEC */) == 0) return;
#endif
  /* Old kernel: walk the table; stop at the soft limit. */
  long max = sysconf(_SC_OPEN_MAX);
  if (max < 0 || max > 1048576) max = 1048576;
  for (unsigned fd = lo; fd <= hi && (long)fd < max; fd++) {
    int fl = fcntl((int)fd, F_GETFD);
    if (fl >= 0 && !(fl & FD_CLOEXEC)) fcntl((int)fd, F_SETFD, fl | FD_CLOEXEC);
  }
}

static int is_target(const SpawnPlan *p, int fd) {
  for (int i = 0; i < p->nredir; i++)
    if (p->redir[i].target == fd) return 1;
  return 0;
}

/*
 * A close-on-exec copy of `fd` at a number that is no target.  Copies that
 * land on a target are left open as placeholders (the dup2 to that target
 * replaces them later), so each retry takes a new number and the loop ends.
 * Searching from 3 rather than above the highest target keeps this working
 * when a target sits just under RLIMIT_NOFILE.
 */
static int child_dup_clear(const SpawnPlan *p, int fd) {
  for (;;) {
    int t = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (t < 0 || !is_target(p, t)) return t;
  }
}

/*
 * The child between fork and exec: only async-signal-safe calls, no
 * allocation.  Every source is first copied to a number that is no target,
 * so a mapping such as {[3]=4, [4]=3} cannot clobber a source before it is
 * used; then each copy is dup2'ed to its target (dup2 clears CLOEXEC on the
 * target only) and every other descriptor above 2 is made close-on-exec.
 * The error pipe, moved off the targets too, survives until exec closes it;
 * a failure writes a ChildError into it.
 */
static void spawn_child(const SpawnPlan *p, int errw) {
  int efd = is_target(p, errw) ? child_dup_clear(p, errw) : errw;
  if (efd < 0) child_report(errw, STEP_ERRFD, 0, errno);
  for (int i = 0; i < p->nredir; i++) {
    p->redir[i].tmp = child_dup_clear(p, p->redir[i].src);
    if (p->redir[i].tmp < 0) child_report(efd, STEP_DUP, i, errno);
  }
  for (int i = 0; i < p->nredir; i++)
    if (dup2(p->redir[i].tmp, p->redir[i].target) < 0)
      child_report(efd, STEP_DUP2, i, errno);
  unsigned lo = 3;
  for (int i = 0; i < p->nredir; i++) {
    unsigned t = (unsigned)p->redir[i].target;
    if (t < lo) continue;
    if (t > lo) child_cloexec_range(lo, t - 1);
    lo = t + 1;
  }
  child_cloexec_range(lo, ~0u);
  if (p->cwd != NULL && chdir(p->cwd) < 0) child_report(efd, STEP_CHDIR, 0, errno);
  execvpe(p->prog, p->argv, p->envp != NULL ? p->envp : environ);
  child_report(efd, STEP_EXEC, 0, errno);
}

/* A string element of argv: strings and numbers, anything else raises. */
static const char *argv_string(lua_State *L, int keep, int i) {
  lua_rawgeti(L, 1, i);
  if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
    luaL_error(L, "bad argument #1 to 'spawn' (argv[%d] must be a string, got %s)",
               i, luaL_typename(L, -1));
  const char *s = lua_tostring(L, -1);
  if (strlen(s) != lua_rawlen(L, -1))
    luaL_error(L, "bad argument #1 to 'spawn' (argv[%d] contains a NUL byte)", i);
  lua_rawseti(L, keep, i);  /* anchors the (converted) string */
  return s;
}

/* Builds the "NAME=value" list from opts.env (table at top); anchors in keep. */
static char **spawn_env(lua_State *L, int keep) {
  int t = lua_gettop(L), n = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) { n++; lua_pop(L, 1); }
  char **envp = lua_newuserdatauv(L, sizeof(char *) * ((size_t)n + 1), 0);
  lua_setfield(L, keep, "envp");
  int i = 0;
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "bad argument #2 to 'spawn' (env keys must be strings)");
    const char *k = lua_tostring(L, -2);
    if (*k == '\0' || strchr(k, '=') != NULL || strlen(k) != lua_rawlen(L, -2))
      luaL_error(L, "bad argument #2 to 'spawn' (bad env name '%s')", k);
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "bad argument #2 to 'spawn' (env.%s must be a string, got %s)",
                 k, luaL_typename(L, -1));
    lua_pushvalue(L, -1);  /* convert a copy, never the key's neighbour in place */
    size_t vl;
    const char *v = lua_tolstring(L, -1, &vl);
    if (strlen(v) != vl)
      luaL_error(L, "bad argument #2 to 'spawn' (env.%s contains a NUL byte)", k);
    envp[i] = (char *)lua_pushfstring(L, "%s=%s", k, v);
    lua_rawseti(L, keep, -1 - i);
    lua_pop(L, 2);
    i++;
  }
  envp[i] = NULL;
  return envp;
}

/* Adds one redirection; raises if `target` is already given. */
static void add_redir(lua_State *L, Redir *r, int *n, int target, int src) {
  for (int i = 0; i < *n; i++)
    if (r[i].target == target)
      luaL_error(L, "bad argument #2 to 'spawn' (descriptor %d given twice)", target);
  r[*n].target = target;
  r[*n].src = src;
  r[*n].tmp = -1;
  (*n)++;
}

/* opts.stdin/stdout/stderr: nil/"inherit", "null", "pipe" or a descriptor. */
static void spawn_stdio(lua_State *L, int opts, const char *name, int target,
                        Redir *r, int *n) {
  lua_getfield(L, opts, name);
  if (lua_type(L, -1) == LUA_TSTRING) {
    const char *s = lua_tostring(L, -1);
    if (strcmp(s, "null") == 0) add_redir(L, r, n, target, SRC_NULL);
    else if (strcmp(s, "pipe") == 0) add_redir(L, r, n, target, SRC_PIPE);
    else if (strcmp(s, "inherit") != 0)
      luaL_error(L, "bad argument #2 to 'spawn' (%s must be a descriptor, "
                 "\"null\", \"pipe\" or \"inherit\", got \"%s\")", name, s);
  } else if (lua_isinteger(L, -1)) {
    lua_Integer fd = lua_tointeger(L, -1);
    if (fd < 0 || fd > INT_MAX)
      luaL_error(L, "bad argument #2 to 'spawn' (%s: not a file descriptor)", name);
    add_redir(L, r, n, target, (int)fd);
  } else if (!lua_isnil(L, -1)) {
    luaL_error(L, "bad argument #2 to 'spawn' (%s must be a descriptor, "
               "\"null\", \"pipe\" or \"inherit\", got %s)", name, luaL_typename(L, -1));
  }
  lua_pop(L, 1);
}

/*
 * The parent's side of a failed child: turns its ChildError into the
 * failure triple after reaping it.
 */
static int spawn_failed(lua_State *L, const SpawnPlan *p, pid_t pid, const ChildError *ce) {
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
    ;
  const char *arg = p->prog;
  if ((ce->step == STEP_DUP || ce->step == STEP_DUP2) && ce->index >= 0 &&
      ce->index < p->nredir) {
    const Redir *r = &p->redir[ce->index];
    arg = lua_pushfstring(L, "%s: descriptor %d as %d", p->prog, r->src, r->target);
  } else if (ce->step == STEP_CHDIR) {
    return shm_fail(L, "spawn: chdir", p->cwd, ce->err);
  }
  return shm_fail(L, "spawn", arg, ce->err);
}

/*
 * shm.spawn(argv [, opts]) -> pid [, pipes]  |  nil, msg, errno
 *
 * argv: a non-empty list of strings (numbers are converted); argv[1] is the
 * program, searched in the parent's PATH when it has no slash (execvpe).
 * opts.env: name -> value, the child's whole environment (absent: inherit).
 * opts.cwd: the child's working directory.
 * opts.fds: { [n] = fd }: the child has the parent's `fd` at number n.
 * opts.stdin/stdout/stderr: a descriptor, "null", "pipe" or "inherit".
 * With any "pipe", a second result {stdin=w, stdout=r, stderr=r} holds the
 * parent's ends (close-on-exec; the caller closes them).
 * Every other descriptor above 2 is closed in the child at exec.  A failure
 * in the child before exec (exec itself, chdir, a bad source descriptor)
 * comes back here as the triple, e.g.
 * "spawn(prog): ENOENT: No such file or directory"; the child is reaped.
 * Raises for malformed arguments.
 */
static int proc_spawn(lua_State *L) {
  SpawnPlan p;
  memset(&p, 0, sizeof p);
  luaL_checktype(L, 1, LUA_TTABLE);
  int opts = 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    opts = 2;
  }
  lua_settop(L, 2);
  lua_newtable(L);
  int keep = lua_gettop(L);  /* anchors every string the child will see */

  lua_Integer argc = (lua_Integer)lua_rawlen(L, 1);
  luaL_argcheck(L, argc >= 1, 1, "argv must be a non-empty list of strings");
  luaL_argcheck(L, argc < INT_MAX / 2, 1, "argv too long");
  p.argv = lua_newuserdatauv(L, sizeof(char *) * ((size_t)argc + 1), 0);
  lua_rawseti(L, keep, 0);
  for (int i = 1; i <= (int)argc; i++) p.argv[i - 1] = (char *)argv_string(L, keep, i);
  p.argv[argc] = NULL;
  p.prog = p.argv[0];
  luaL_argcheck(L, *p.prog != '\0', 1, "argv[1] (the program) is empty");

  int nfds = 0;
  if (opts) {
    lua_getfield(L, opts, "env");
    if (lua_istable(L, -1)) p.envp = spawn_env(L, keep);
    else if (!lua_isnil(L, -1)) luaL_argerror(L, 2, "env must be a table");
    lua_pop(L, 1);
    lua_getfield(L, opts, "cwd");
    if (lua_type(L, -1) == LUA_TSTRING) {
      p.cwd = lua_tostring(L, -1);
      lua_setfield(L, keep, "cwd");  /* anchored */
    } else if (!lua_isnil(L, -1)) {
      luaL_argerror(L, 2, "cwd must be a string");
    } else {
      lua_pop(L, 1);
    }
    lua_getfield(L, opts, "fds");
    if (lua_istable(L, -1)) {
      lua_pushnil(L);
      while (lua_next(L, -2)) { nfds++; lua_pop(L, 1); }
    } else if (!lua_isnil(L, -1)) {
      luaL_argerror(L, 2, "fds must be a table { [n] = fd }");
    }
    lua_pop(L, 1);
  }
  p.redir = lua_newuserdatauv(L, sizeof(Redir) * ((size_t)nfds + 3), 0);
  lua_setfield(L, keep, "redir");
  if (opts) {
    lua_getfield(L, opts, "fds");
    if (lua_istable(L, -1)) {
      int t = lua_gettop(L);
      lua_pushnil(L);
      while (lua_next(L, t)) {
        if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 0 ||
            lua_tointeger(L, -2) > 1048575)
          luaL_argerror(L, 2, "fds keys must be descriptor numbers (integers >= 0)");
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 ||
            lua_tointeger(L, -1) > INT_MAX)
          luaL_error(L, "bad argument #2 to 'spawn' (fds[%d] must be a descriptor)",
                     (int)lua_tointeger(L, -2));
        add_redir(L, p.redir, &p.nredir, (int)lua_tointeger(L, -2),
                  (int)lua_tointeger(L, -1));
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
    spawn_stdio(L, opts, "stdin", 0, p.redir, &p.nredir);
    spawn_stdio(L, opts, "stdout", 1, p.redir, &p.nredir);
    spawn_stdio(L, opts, "stderr", 2, p.redir, &p.nredir);
  }
  /* Sort by target (few entries: insertion sort). */
  for (int i = 1; i < p.nredir; i++) {
    Redir r = p.redir[i];
    int j = i - 1;
    for (; j >= 0 && p.redir[j].target > r.target; j--) p.redir[j + 1] = p.redir[j];
    p.redir[j + 1] = r;
  }
  int npipes = 0;
  for (int i = 0; i < p.nredir; i++) npipes += p.redir[i].src == SRC_PIPE;
  int result = 0;
  if (npipes) {
    lua_createtable(L, 0, 3);
    result = lua_gettop(L);
  }

  /* From here on nothing raises until the descriptors are accounted for. */
  int devnull = -1, errp[2] = {-1, -1}, e = 0;
  int parent_end[3] = {-1, -1, -1}, child_end[3] = {-1, -1, -1};
  const char *fail_call = "spawn";
  const char *fail_arg = p.prog;
  for (int i = 0; i < p.nredir && e == 0; i++) {
    Redir *r = &p.redir[i];
    if (r->src == SRC_NULL) {
      if (devnull < 0) devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
      if (devnull < 0) { e = errno; fail_call = "open"; fail_arg = "/dev/null"; }
      r->src = devnull;
    } else if (r->src == SRC_PIPE) {
      int pp[2];
      if (pipe2(pp, O_CLOEXEC) < 0) { e = errno; fail_call = "pipe"; break; }
      int t = r->target;  /* 0, 1 or 2 */
      parent_end[t] = t == 0 ? pp[1] : pp[0];
      child_end[t] = t == 0 ? pp[0] : pp[1];
      r->src = child_end[t];
    }
  }
  /* A source that is not open: say so here, with both numbers. */
  int bad = -1;
  for (int i = 0; i < p.nredir && e == 0; i++)
    if (fcntl(p.redir[i].src, F_GETFD) < 0) { e = errno; bad = i; }
  if (e == 0 && pipe2(errp, O_CLOEXEC) < 0) { e = errno; fail_call = "pipe"; }
  pid_t pid = -1;
  if (e == 0) {
    pid = fork();
    if (pid == 0) spawn_child(&p, errp[1]);  /* never returns */
    if (pid < 0) { e = errno; fail_call = "fork"; }
  }
  ChildError ce;
  ssize_t got = 0;
  if (pid > 0) {
    close(errp[1]);
    errp[1] = -1;
    size_t have = 0;
    while (have < sizeof ce) {
      got = read(errp[0], (char *)&ce + have, sizeof ce - have);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) break;
      have += (size_t)got;
    }
    got = (ssize_t)have;
  }
  close_keep_errno(errp[0]);
  close_keep_errno(errp[1]);
  close_keep_errno(devnull);
  for (int t = 0; t < 3; t++) close_keep_errno(child_end[t]);
  if (e != 0 || got == (ssize_t)sizeof ce) {
    for (int t = 0; t < 3; t++) close_keep_errno(parent_end[t]);
    if (bad >= 0)
      fail_arg = lua_pushfstring(L, "%s: descriptor %d as %d", p.prog,
                                 p.redir[bad].src, p.redir[bad].target);
    if (e != 0) return shm_fail(L, fail_call, fail_arg, e);
    return spawn_failed(L, &p, pid, &ce);
  }
  lua_pushinteger(L, pid);
  if (!npipes) return 1;
  static const char *const names[3] = {"stdin", "stdout", "stderr"};
  for (int t = 0; t < 3; t++) {
    if (parent_end[t] < 0) continue;
    lua_pushinteger(L, parent_end[t]);
    lua_setfield(L, result, names[t]);
  }
  lua_pushvalue(L, result);
  return 2;
}

/* ---------------------------------------------------------------- wait */

#ifdef SYS_pidfd_open
static int sys_pidfd_open(pid_t pid, unsigned flags) {
  return (int)syscall(SYS_pidfd_open, pid, flags);
}
#else
static int sys_pidfd_open(pid_t pid, unsigned flags) {
  (void)pid; (void)flags;
  errno = ENOSYS;
  return -1;
}
#endif

/*
 * waitpid with a deadline: returns what waitpid returns (pid, or -1 with
 * errno), or 0 when `timeout_ns` passed first.  Sleeps in ppoll on a pidfd
 * (readable once the process has exited); where pidfd_open is missing it
 * polls waitpid with short sleeps growing from 1 ms to 20 ms.
 */
static pid_t wait_deadline(pid_t pid, int *st, int64_t timeout_ns) {
  pid_t r;
  while ((r = waitpid(pid, st, WNOHANG)) < 0 && errno == EINTR)
    ;
  if (r != 0 || timeout_ns <= 0) return r;
  int64_t deadline = mono_ns() + timeout_ns;
  int pfd = sys_pidfd_open(pid, 0);
  int64_t step = 1000000;
  for (;;) {
    int64_t left = deadline - mono_ns();
    if (left <= 0) break;
    if (pfd >= 0) {
      struct pollfd pf = {pfd, POLLIN, 0};
      struct timespec ts = ns_to_ts(left);
      if (ppoll(&pf, 1, &ts, NULL) < 0 && errno != EINTR) {
        close(pfd);  /* unexpected: fall back to polling */
        pfd = -1;
      }
    } else {
      struct timespec ts = ns_to_ts(left < step ? left : step);
      nanosleep(&ts, NULL);
      if (step < 20000000) step *= 2;
    }
    while ((r = waitpid(pid, st, WNOHANG)) < 0 && errno == EINTR)
      ;
    if (r != 0) break;
  }
  close_keep_errno(pfd);
  return r;
}

/*
 * shm.wait(pid [, timeout_s]) -> "exited", code | "signaled", signo
 * Reaps the child `pid`.  Without a timeout it blocks; with one (seconds,
 * 0 = just look) it returns nil, "wait(PID): ETIMEDOUT: ...", ETIMEDOUT when
 * the child is still running then (it keeps running, and can be waited for
 * again).  Not a child of ours: nil, "wait(PID): ECHILD: ...", ECHILD.
 * Stopped children are not reported; they are waited for until they end.
 */
static int proc_wait(lua_State *L) {
  pid_t pid = check_pid(L, 1);
  int64_t timeout = lua_isnoneornil(L, 2) ? -1 : check_seconds(L, 2);
  int st = 0;
  pid_t r;
  if (timeout < 0 || timeout >= (int64_t)1e18) {
    while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
      ;
  } else {
    r = wait_deadline(pid, &st, timeout);
  }
  if (r < 0) {
    int e = errno;
    return shm_fail(L, "wait", pid_string(L, pid), e);
  }
  if (r == 0) return shm_fail(L, "wait", pid_string(L, pid), ETIMEDOUT);
  if (WIFEXITED(st)) {
    lua_pushliteral(L, "exited");
    lua_pushinteger(L, WEXITSTATUS(st));
  } else {
    lua_pushliteral(L, "signaled");
    lua_pushinteger(L, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  }
  return 2;
}

/* ----------------------------------------------------- signals and ids */

/*
 * shm.kill(pid [, sig]) -> true | nil, msg, errno.  sig defaults to SIGTERM;
 * 0 only checks that the process exists.  pid may be negative (a process
 * group) but not -1: "every process we may signal" is never what a script
 * means, and raises.
 */
static int proc_kill(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  luaL_argcheck(L, pid != -1 && pid >= -(lua_Integer)INT_MAX && pid <= INT_MAX, 1,
                "process id out of range (-1 is refused)");
  int sig = check_signal(L, 2, SIGTERM);
  if (kill((pid_t)pid, sig) < 0) {
    int e = errno;
    return shm_fail(L, "kill", pid_string(L, (pid_t)pid), e);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int proc_getpid(lua_State *L) {
  lua_pushinteger(L, getpid());
  return 1;
}

static int proc_getppid(lua_State *L) {
  lua_pushinteger(L, getppid());
  return 1;
}

/* shm.exepath() -> absolute path of the running executable (/proc/self/exe). */
static int proc_exepath(lua_State *L) {
  char buf[PATH_MAX + 1];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf);
  if (n < 0) {
    int e = errno;
    return shm_fail(L, "readlink", "/proc/self/exe", e);
  }
  if ((size_t)n >= sizeof buf) return shm_fail(L, "readlink", "/proc/self/exe", ENAMETOOLONG);
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

/* ----------------------------------------------------------- pidfds */

/* shm.pidfd_open(pid) -> pidfd (close-on-exec) | nil, msg, errno. */
static int proc_pidfd_open(lua_State *L) {
  pid_t pid = check_pid(L, 1);
  int fd = sys_pidfd_open(pid, 0);
  if (fd < 0) {
    int e = errno;
    return shm_fail(L, "pidfd_open", pid_string(L, pid), e);
  }
  lua_pushinteger(L, fd);
  return 1;
}

/*
 * shm.pidfd_getfd(pidfd, targetfd) -> fd | nil, msg, errno.  A copy, in this
 * process and close-on-exec, of descriptor `targetfd` of the process behind
 * `pidfd`.  Needs ptrace permission over it (EPERM otherwise).
 */
static int proc_pidfd_getfd(lua_State *L) {
  int pidfd = shm_checkfd(L, 1);
  int target = shm_checkfd(L, 2);
#ifdef SYS_pidfd_getfd
  int fd = (int)syscall(SYS_pidfd_getfd, pidfd, target, 0u);
  int e = errno;
#else
  int fd = -1, e = ENOSYS;
  (void)pidfd;
#endif
  if (fd < 0) return shm_fail(L, "pidfd_getfd", lua_pushfstring(L, "%d", target), e);
  lua_pushinteger(L, fd);
  return 1;
}

/* shm.pidfd_send_signal(pidfd, sig) -> true | nil, msg, errno. */
static int proc_pidfd_send_signal(lua_State *L) {
  int pidfd = shm_checkfd(L, 1);
  int sig = check_signal(L, 2, SIGTERM);
#ifdef SYS_pidfd_send_signal
  long r = syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0u);
  int e = errno;
#else
  long r = -1;
  int e = ENOSYS;
  (void)pidfd; (void)sig;
#endif
  if (r < 0) return shm_fail(L, "pidfd_send_signal", lua_pushfstring(L, "%d", sig), e);
  lua_pushboolean(L, 1);
  return 1;
}

/*
 * shm.open_proc_fd(pid, fd [, flags]) -> newfd | nil, msg, errno.
 * Opens /proc/PID/fd/FD (flags default O_RDWR; O_CLOEXEC always added): a
 * fresh open of what that descriptor names, with its own file offset.
 * Sockets refuse this (ENXIO); pipes, files and memfds allow it.
 */
static int proc_open_proc_fd(lua_State *L) {
  pid_t pid = check_pid(L, 1);
  int fd = shm_checkfd(L, 2);
  int flags = shm_optint(L, 3, O_RDWR);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)pid, fd);
  int r = open(path, flags | O_CLOEXEC);
  if (r < 0) {
    int e = errno;
    return shm_fail(L, "open", path, e);
  }
  lua_pushinteger(L, r);
  return 1;
}

/* ------------------------------------------------- pipes and sockets */

/* shm.pipe() -> readfd, writefd (both close-on-exec) | nil, msg, errno. */
static int proc_pipe(lua_State *L) {
  int pp[2];
  if (pipe2(pp, O_CLOEXEC) < 0) return shm_fail(L, "pipe", NULL, errno);
  lua_pushinteger(L, pp[0]);
  lua_pushinteger(L, pp[1]);
  return 2;
}

/*
 * shm.socketpair([type]) -> fd1, fd2 | nil, msg, errno.  AF_UNIX, type
 * "stream" (default), "dgram" or "seqpacket"; both ends close-on-exec.
 */
static int proc_socketpair(lua_State *L) {
  static const char *const names[] = {"stream", "dgram", "seqpacket", NULL};
  static const int types[] = {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET};
  int t = types[luaL_checkoption(L, 1, "stream", names)];
  int sv[2];
  if (socketpair(AF_UNIX, t | SOCK_CLOEXEC, 0, sv) < 0)
    return shm_fail(L, "socketpair", NULL, errno);
  lua_pushinteger(L, sv[0]);
  lua_pushinteger(L, sv[1]);
  return 2;
}

/*
 * shm.send_fd(sock, fds [, payload]) -> bytes | nil, msg, errno.
 * Sends `payload` (default "") with the descriptors `fds` (one integer or a
 * list of up to 253; an empty list sends none) in one sendmsg.  The kernel
 * needs at least one byte of data to carry descriptors, so an empty payload
 * goes out as a single NUL byte, which recv_fd gives back as "" (a payload
 * of exactly "\0" therefore also arrives as "").  Returns the payload bytes
 * sent (0 for an empty payload); on a stream socket that may be short of
 * #payload, as with send(2), and the rest is the caller's to send.  Never
 * raises SIGPIPE.
 */
static int proc_send_fd(lua_State *L) {
  int sock = shm_checkfd(L, 1);
  int fds[MAX_SEND_FDS];
  int n = 0;
  if (lua_isinteger(L, 2)) {
    fds[n++] = shm_checkfd(L, 2);
  } else if (lua_istable(L, 2)) {
    lua_Unsigned len = lua_rawlen(L, 2);
    if (len > MAX_SEND_FDS)
      return luaL_error(L, "bad argument #2 to 'send_fd' (%d descriptors at most, got %d)",
                        MAX_SEND_FDS, (int)(len > INT_MAX ? INT_MAX : len));
    for (n = 0; n < (int)len; n++) {
      lua_rawgeti(L, 2, n + 1);
      lua_Integer v = lua_tointeger(L, -1);
      if (!lua_isinteger(L, -1) || v < 0 || v > INT_MAX)
        return luaL_error(L, "bad argument #2 to 'send_fd' (element %d is not a descriptor)",
                          n + 1);
      fds[n] = (int)v;
      lua_pop(L, 1);
    }
  } else {
    return luaL_typeerror(L, 2, "descriptor or list of descriptors");
  }
  size_t len;
  const char *payload = luaL_optlstring(L, 3, "", &len);
  char nul = 0;
  struct iovec iov;
  iov.iov_base = len ? (void *)payload : &nul;
  iov.iov_len = len ? len : 1;
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int) * MAX_SEND_FDS)];
  } ctl;
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (n > 0) {
    memset(&ctl, 0, sizeof ctl);
    msg.msg_control = ctl.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)n);
  }
  ssize_t r;
  while ((r = sendmsg(sock, &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR)
    ;
  if (r < 0) {
    int e = errno;
    return shm_fail(L, "send_fd", lua_pushfstring(L, "%d", sock), e);
  }
  lua_pushinteger(L, len ? r : 0);
  return 1;
}

/*
 * shm.recv_fd(sock [, maxfds [, maxlen]]) -> payload, fds [, truncated]
 * Receives one message of at most `maxlen` bytes (default 4096) carrying at
 * most `maxfds` descriptors (default 253), which arrive close-on-exec, in
 * the list `fds` (empty if none came).  A lone NUL byte is the empty payload
 * of send_fd and comes back as "".  A third result `true` says a datagram
 * was longer than maxlen and its tail was dropped.
 *   - more descriptors came than maxfds: the ones that arrived are closed,
 *     the kernel dropped the others: nil, "recv_fd: control message
 *     truncated (...)", EMSGSIZE.
 *   - the peer closed a stream or seqpacket socket: nil,
 *     "recv_fd: connection closed", 0 (errno 0: not a failure, the end).
 *   - a failing recvmsg: nil, "recv_fd(sock): ENAME: text", errno.
 */
static int proc_recv_fd(lua_State *L) {
  int sock = shm_checkfd(L, 1);
  lua_Integer maxfds = luaL_optinteger(L, 2, MAX_SEND_FDS);
  luaL_argcheck(L, maxfds >= 0 && maxfds <= MAX_SEND_FDS, 2, "must be in [0, 253]");
  size_t maxlen = shm_optsize(L, 3, DEFAULT_RECV);
  luaL_argcheck(L, maxlen >= 1 && maxlen <= (size_t)INT_MAX, 3, "must be in [1, INT_MAX]");
  /* Everything that allocates happens before descriptors can arrive. */
  lua_createtable(L, (int)maxfds, 0);
  int list = lua_gettop(L);
  luaL_Buffer b;
  char *data = luaL_buffinitsize(L, &b, maxlen);
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int) * MAX_SEND_FDS)];
  } ctl;
  struct iovec iov = {data, maxlen};
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (maxfds > 0) {
    msg.msg_control = ctl.buf;
    /* CMSG_LEN, not CMSG_SPACE: room for exactly maxfds descriptors. */
    msg.msg_controllen = CMSG_LEN(sizeof(int) * (size_t)maxfds);
  }
  ssize_t r;
  while ((r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
    ;
  if (r < 0) {
    int e = errno;
    return shm_fail(L, "recv_fd", lua_pushfstring(L, "%d", sock), e);
  }
  int nfds = 0;
  if (msg.msg_controllen > 0) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < k; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        lua_pushinteger(L, fd);
        lua_rawseti(L, list, ++nfds);
      }
    }
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    for (int i = 1; i <= nfds; i++) {
      lua_rawgeti(L, list, i);
      close((int)lua_tointeger(L, -1));
      lua_pop(L, 1);
    }
    lua_pushnil(L);
    lua_pushfstring(L, "recv_fd: control message truncated (%d descriptors "
                    "received and closed, the rest dropped by the kernel; "
                    "maxfds is %d)", nfds, (int)maxfds);
    lua_pushinteger(L, EMSGSIZE);
    return 3;
  }
  if (r == 0 && nfds == 0) {
    int type = SOCK_STREAM;
    socklen_t tl = sizeof type;
    getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &tl);
    if (type != SOCK_DGRAM) {
      lua_pushnil(L);
      lua_pushliteral(L, "recv_fd: connection closed");
      lua_pushinteger(L, 0);
      return 3;
    }
  }
  if (r == 1 && data[0] == '\0') r = 0;
  luaL_pushresultsize(&b, (size_t)r);
  lua_pushvalue(L, list);
  if (msg.msg_flags & MSG_TRUNC) {
    lua_pushboolean(L, 1);
    return 3;
  }
  return 2;
}

/* ---------------------------------------------------- plain read/write */

/*
 * shm.write_fd(fd, s) -> #s | nil, msg, errno.  Writes all of `s`,
 * retrying after short writes and EINTR.  SIGPIPE is held back for the
 * call: writing to a pipe nobody reads gives EPIPE, not a dead process.
 */
static int proc_write_fd(lua_State *L) {
  int fd = shm_checkfd(L, 1);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  sigset_t pipeset, old, pending;
  sigemptyset(&pipeset);
  sigaddset(&pipeset, SIGPIPE);
  sigpending(&pending);
  int was_pending = sigismember(&pending, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipeset, &old);
  size_t done = 0;
  int e = 0;
  while (done < len) {
    ssize_t w = write(fd, s + done, len - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      e = errno;
      break;
    }
    done += (size_t)w;
  }
  if (e == EPIPE && !was_pending) {
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipeset, NULL, &zero) < 0 && errno == EINTR)
      ;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (e != 0) return shm_fail(L, "write", lua_pushfstring(L, "%d", fd), e);
  lua_pushinteger(L, (lua_Integer)done);
  return 1;
}

/*
 * shm.read_fd(fd [, n]) -> string | nil, msg, errno.  One read(2) of at
 * most n bytes (default 65536), retried after EINTR; "" at end of file.
 */
static int proc_read_fd(lua_State *L) {
  int fd = shm_checkfd(L, 1);
  size_t n = shm_optsize(L, 2, DEFAULT_READ);
  luaL_argcheck(L, n <= (size_t)INT_MAX, 2, "too large");
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, n ? n : 1);
  ssize_t r;
  while ((r = read(fd, p, n)) < 0 && errno == EINTR)
    ;
  if (r < 0) {
    int e = errno;
    return shm_fail(L, "read", lua_pushfstring(L, "%d", fd), e);
  }
  luaL_pushresultsize(&b, (size_t)r);
  return 1;
}

/*
 * shm.poll_fd(fd, events [, timeout_s]) -> ready | nil, msg, errno.
 * `events` is a string of "r" (readable) and "w" (writable).  `ready` is a
 * string of what holds: "r", "w", "h" (hang-up), "e" (error), in that
 * order; "" when the timeout passed first.  Without a timeout it blocks.
 * A pidfd reads "r" once its process has exited.
 */
static int proc_poll_fd(lua_State *L) {
  int fd = shm_checkfd(L, 1);
  const char *ev = luaL_checkstring(L, 2);
  short events = 0;
  for (const char *c = ev; *c; c++) {
    if (*c == 'r') events |= POLLIN;
    else if (*c == 'w') events |= POLLOUT;
    else luaL_argerror(L, 2, "events: a string of 'r' and 'w'");
  }
  int64_t timeout = lua_isnoneornil(L, 3) ? -1 : check_seconds(L, 3);
  int64_t deadline = timeout >= 0 ? mono_ns() + timeout : 0;
  struct pollfd pf = {fd, events, 0};
  int r;
  for (;;) {
    struct timespec ts = {0, 0};
    if (timeout >= 0) {
      int64_t left = deadline - mono_ns();
      ts = ns_to_ts(left > 0 ? left : 0);
    }
    r = ppoll(&pf, 1, timeout >= 0 ? &ts : NULL, NULL);
    if (r >= 0 || errno != EINTR) break;
  }
  if (r < 0) {
    int e = errno;
    return shm_fail(L, "poll", lua_pushfstring(L, "%d", fd), e);
  }
  if (pf.revents & POLLNVAL) return shm_fail(L, "poll", lua_pushfstring(L, "%d", fd), EBADF);
  char out[4];
  int k = 0;
  if (pf.revents & POLLIN) out[k++] = 'r';
  if (pf.revents & POLLOUT) out[k++] = 'w';
  if (pf.revents & POLLHUP) out[k++] = 'h';
  if (pf.revents & POLLERR) out[k++] = 'e';
  lua_pushlstring(L, out, (size_t)k);
  return 1;
}

/* ------------------------------------------------------------ register */

static const ShmConst proc_consts[] = {
  {"SIGHUP", SIGHUP},   {"SIGINT", SIGINT},     {"SIGQUIT", SIGQUIT},
  {"SIGABRT", SIGABRT}, {"SIGBUS", SIGBUS},     {"SIGKILL", SIGKILL},
  {"SIGUSR1", SIGUSR1}, {"SIGSEGV", SIGSEGV},   {"SIGUSR2", SIGUSR2},
  {"SIGPIPE", SIGPIPE}, {"SIGALRM", SIGALRM},   {"SIGTERM", SIGTERM},
  {"SIGCHLD", SIGCHLD}, {"SIGCONT", SIGCONT},   {"SIGSTOP", SIGSTOP},
  {NULL, 0}
};

static const luaL_Reg proc_funcs[] = {
  {"spawn", proc_spawn},
  {"wait", proc_wait},
  {"kill", proc_kill},
  {"getpid", proc_getpid},
  {"getppid", proc_getppid},
  {"exepath", proc_exepath},
  {"clock", proc_clock},
  {"sleep", proc_sleep},
  {"pipe", proc_pipe},
  {"socketpair", proc_socketpair},
  {"send_fd", proc_send_fd},
  {"recv_fd", proc_recv_fd},
  {"pidfd_open", proc_pidfd_open},
  {"pidfd_getfd", proc_pidfd_getfd},
  {"pidfd_send_signal", proc_pidfd_send_signal},
  {"open_proc_fd", proc_open_proc_fd},
  {"write_fd", proc_write_fd},
  {"read_fd", proc_read_fd},
  {"poll_fd", proc_poll_fd},
  {NULL, NULL}
};

/* Adds the process functions and SIG* constants to the table on top. */
void shm_proc_open(lua_State *L) {
  luaL_setfuncs(L, proc_funcs, 0);
  shm_setconsts(L, -1, proc_consts);
}
