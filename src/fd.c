/*
 * fd.c: descriptors and shared-memory objects, as integer fds like C and
 * the Go package posix: shm_open, shm_unlink, shm_anonymous, memfd_create,
 * ftruncate, close, fstat, fchown, fchmod, fcntl, seals, getpagesize.
 *
 * Every descriptor this module opens is close-on-exec: a child started with
 * shm.spawn inherits exactly the descriptors it is given (opts.fds).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shm.h"

/* The fd at `arg` as a string, for error messages: "ftruncate(3): ...". */
static const char *fd_arg(int fd, char buf[16]) {
  snprintf(buf, 16, "%d", fd);
  return buf;
}

/*
 * The name at `arg`: a string without NUL bytes.  C would see only the part
 * before the first NUL and act on another object, so such a name raises.
 */
static const char *fd_checkname(lua_State *L, int arg) {
  size_t len;
  const char *name = luaL_checklstring(L, arg, &len);
  luaL_argcheck(L, strlen(name) == len, arg, "name contains a NUL byte");
  return name;
}

/* Pushes fd, or the failure triple when fd < 0 (errno saved by the caller). */
static int fd_result(lua_State *L, int fd, int e, const char *call,
                     const char *arg) {
  if (fd < 0) return shm_fail(L, call, arg, e);
  lua_pushinteger(L, fd);
  return 1;
}

static int fd_ok(lua_State *L, int rc, const char *call, int fd) {
  char b[16];
  if (rc != 0) {
    int e = errno;
    return shm_fail(L, call, fd_arg(fd, b), e);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/*
 * shm.shm_open(name [, oflag [, mode]]) -> fd
 * oflag defaults to O_RDWR, mode to 0600; O_CLOEXEC is always added.
 */
static int fd_shm_open(lua_State *L) {
  const char *name = fd_checkname(L, 1);
  int oflag = shm_optint(L, 2, O_RDWR);
  lua_Integer mode = luaL_optinteger(L, 3, 0600);
  int fd, e;
  luaL_argcheck(L, mode >= 0 && mode <= 07777, 3, "mode expected (0..07777)");
  fd = shm_open(name, oflag | O_CLOEXEC, (mode_t)mode);
  e = errno;
  return fd_result(L, fd, e, "shm_open", name);
}

/* shm.shm_unlink(name) -> true */
static int fd_shm_unlink(lua_State *L) {
  const char *name = fd_checkname(L, 1);
  if (shm_unlink(name) != 0) return shm_fail(L, "shm_unlink", name, errno);
  lua_pushboolean(L, 1);
  return 1;
}

/*
 * shm.shm_anonymous() -> fd: a shared-memory object with no name, as the Go
 * package's ShmAnonymous: a memfd that allows sealing, close-on-exec.
 */
static int fd_shm_anonymous(lua_State *L) {
  int fd = memfd_create("shm_anonymous", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  int e = errno;
  return fd_result(L, fd, e, "shm_anonymous", NULL);
}

/*
 * shm.memfd_create(name [, flags]) -> fd; MFD_CLOEXEC is always added, as
 * shm_open adds O_CLOEXEC (see the top of this file).
 */
static int fd_memfd_create(lua_State *L) {
  const char *name = fd_checkname(L, 1);
  int flags = shm_optint(L, 2, 0);
  int fd = memfd_create(name, (unsigned)flags | MFD_CLOEXEC);
  int e = errno;
  return fd_result(L, fd, e, "memfd_create", name);
}

/* shm.ftruncate(fd, length) -> true */
static int fd_ftruncate(lua_State *L) {
  int fd = shm_checkfd(L, 1);
  lua_Integer len = luaL_checkinteger(L, 2);
  luaL_argcheck(L, len >= 0, 2, "length must be non-negative");
  return fd_ok(L, ftruncate(fd, (off_t)len), "ftruncate", fd);
}

/* shm.close(fd) -> true */
static int fd_close(lua_State *L) {
  int fd = shm_checkfd(L, 1);
  return fd_ok(L, close(fd), "close", fd);
}

#define SETINT(name, v) (lua_pushinteger(L, (lua_Integer)(v)), lua_setfield(L, -2, name))
#define SETNUM(name, ts) \
  (lua_pushnumber(L, (lua_Number)(ts).tv_sec + (lua_Number)(ts).tv_nsec * 1e-9), \
   lua_setfield(L, -2, name))

/*
 * shm.fstat(fd) -> { size, mode, uid, gid, ino, dev, nlink, atime, mtime,
 * ctime, blksize, blocks }; times are seconds as floats.
 */
static int fd_fstat(lua_State *L) {
  int fd = shm_checkfd(L, 1);
  struct stat st;
  char b[16];
  if (fstat(fd, &st) != 0) {
    int e = errno;
    return shm_fail(L, "fstat", fd_arg(fd, b), e);
  }
  lua_createtable(L, 0, 12);
  SETINT("size", st.st_size);
  SETINT("mode", st.st_mode);
  SETINT("uid", st.st_uid);
  SETINT("gid", st.st_gid);
  SETINT("ino", st.st_ino);
  SETINT("dev", st.st_dev);
  SETINT("nlink", st.st_nlink);
  SETNUM("atime", st.st_atim);
  SETNUM("mtime", st.st_mtim);
  SETNUM("ctime", st.st_ctim);
  SETINT("blksize", st.st_blksize);
  SETINT("blocks", st.st_blocks);
  return 1;
}

/* shm.fchown(fd, uid, gid) -> true; -1 keeps an id as it is. */
static int fd_fchown(lua_State *L) {
  int fd = shm_checkfd(L, 1);
  lua_Integer uid = luaL_checkinteger(L, 2), gid = luaL_checkinteger(L, 3);
  luaL_argcheck(L, uid >= -1 && uid <= 0xffffffffLL, 2, "uid expected");
  luaL_argcheck(L, gid >= -1 && gid <= 0xffffffffLL, 3, "gid expected");
  return fd_ok(L, fchown(fd, (uid_t)uid, (gid_t)gid), "fchown", fd);
}

/* shm.fchmod(fd, mode) -> true */
static int fd_fchmod(lua_State *L) {
  int fd = shm_checkfd(L, 1);
  lua_Integer mode = luaL_checkinteger(L, 2);
  luaL_argcheck(L, mode >= 0 && mode <= 07777, 2, "mode expected (0..07777)");
  return fd_ok(L, fchmod(fd, (mode_t)mode), "fchmod", fd);
}

/*
 * shm.fcntl(fd, cmd [, arg]) -> the call's integer result.
 * Only commands whose argument is an integer (or none) are accepted; those
 * taking a pointer (locks, owner_ex, ...) raise instead of guessing.
 */
static int fd_fcntl(lua_State *L) {
  int fd = shm_checkfd(L, 1);
  int cmd = shm_checkint(L, 2), rc;
  char b[16];
  switch (cmd) {
  case F_GETFD: case F_GETFL: case F_GET_SEALS: case F_GETPIPE_SZ:
  case F_GETOWN: case F_GETSIG: case F_GETLEASE:
    rc = fcntl(fd, cmd);
    break;
  case F_DUPFD: case F_DUPFD_CLOEXEC: case F_SETFD: case F_SETFL:
  case F_ADD_SEALS: case F_SETPIPE_SZ: case F_SETOWN: case F_SETSIG:
  case F_SETLEASE: case F_NOTIFY:
    rc = fcntl(fd, cmd, shm_checkint(L, 3));
    break;
  default:
    return luaL_argerror(L, 2, "unsupported fcntl command (only commands "
                         "taking an integer argument are supported)");
  }
  if (rc == -1) {
    int e = errno;
    return shm_fail(L, "fcntl", fd_arg(fd, b), e);
  }
  lua_pushinteger(L, rc);
  return 1;
}

/* shm.add_seals(fd, seals) -> true */
static int fd_add_seals(lua_State *L) {
  int fd = shm_checkfd(L, 1);
  int seals = shm_checkint(L, 2);
  return fd_ok(L, fcntl(fd, F_ADD_SEALS, seals) == -1 ? -1 : 0, "add_seals", fd);
}

/* shm.get_seals(fd) -> seals (integer) */
static int fd_get_seals(lua_State *L) {
  int fd = shm_checkfd(L, 1);
  int rc = fcntl(fd, F_GET_SEALS);
  char b[16];
  if (rc == -1) {
    int e = errno;
    return shm_fail(L, "get_seals", fd_arg(fd, b), e);
  }
  lua_pushinteger(L, rc);
  return 1;
}

static int fd_getpagesize(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)sysconf(_SC_PAGESIZE));
  return 1;
}

static const luaL_Reg fd_funcs[] = {
  {"shm_open", fd_shm_open},         {"shm_unlink", fd_shm_unlink},
  {"shm_anonymous", fd_shm_anonymous}, {"memfd_create", fd_memfd_create},
  {"ftruncate", fd_ftruncate},       {"close", fd_close},
  {"fstat", fd_fstat},               {"fchown", fd_fchown},
  {"fchmod", fd_fchmod},             {"fcntl", fd_fcntl},
  {"add_seals", fd_add_seals},       {"get_seals", fd_get_seals},
  {"getpagesize", fd_getpagesize},   {NULL, NULL}
};

#define C(x) {#x, x}
static const ShmConst fd_consts[] = {
  C(O_RDONLY), C(O_WRONLY), C(O_RDWR), C(O_CREAT), C(O_EXCL), C(O_TRUNC),
  C(O_APPEND), C(O_NONBLOCK), C(O_CLOEXEC), C(O_NOFOLLOW), C(O_DIRECTORY),
  C(O_SYNC), C(O_DSYNC), C(O_NOCTTY), C(O_ACCMODE),
  C(S_IRWXU), C(S_IRUSR), C(S_IWUSR), C(S_IXUSR), C(S_IRWXG), C(S_IRGRP),
  C(S_IWGRP), C(S_IXGRP), C(S_IRWXO), C(S_IROTH), C(S_IWOTH), C(S_IXOTH),
  C(S_ISUID), C(S_ISGID), C(S_ISVTX), C(S_IFMT), C(S_IFREG), C(S_IFDIR),
  C(S_IFCHR), C(S_IFBLK), C(S_IFIFO), C(S_IFLNK), C(S_IFSOCK),
  C(MFD_CLOEXEC), C(MFD_ALLOW_SEALING), C(MFD_HUGETLB),
  C(F_DUPFD), C(F_DUPFD_CLOEXEC), C(F_GETFD), C(F_SETFD), C(F_GETFL),
  C(F_SETFL), C(F_GETOWN), C(F_SETOWN), C(F_GETSIG), C(F_SETSIG),
  C(F_GETLEASE), C(F_SETLEASE), C(F_NOTIFY), C(F_GETPIPE_SZ), C(F_SETPIPE_SZ),
  C(F_ADD_SEALS), C(F_GET_SEALS), C(F_SEAL_SEAL), C(F_SEAL_SHRINK),
  C(F_SEAL_GROW), C(F_SEAL_WRITE), C(F_SEAL_FUTURE_WRITE), C(FD_CLOEXEC),
  {NULL, 0}
};
#undef C

void shm_fd_open(lua_State *L) {
  luaL_setfuncs(L, fd_funcs, 0);
  shm_setconsts(L, -1, fd_consts);
}
