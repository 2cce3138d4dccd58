/*
 * errno.c: errno names, texts and advice, and the failure triple that every
 * binding returns when a system call fails (nil, "call(arg): ENAME: text",
 * errno).
 *
 * The name table is indexed by errno number, so shm_errno_name is one bounds
 * check and one load.  Every entry is guarded by #ifdef, so the file builds
 * with any libc; aliases (EWOULDBLOCK, EDEADLOCK, ENOTSUP) get an entry of
 * their own only where their number differs from the name they alias, and
 * otherwise exist only as constants (shm.EWOULDBLOCK == shm.EAGAIN).
 *
 * Nothing here keeps state: texts come from strerror_r into a buffer on the
 * caller's stack, so every function is safe to call from any thread.
 */
/* strerror_r needs POSIX 2001 when the build does not define _GNU_SOURCE. */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200112L
#endif

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "shm.h"

/* ---- the name table: errno_names[n] is "ENAME" or NULL */

#define N(e) [e] = #e,
static const char *const errno_names[] = {
#ifdef EPERM
N(EPERM)
#endif
#ifdef ENOENT
N(ENOENT)
#endif
#ifdef ESRCH
N(ESRCH)
#endif
#ifdef EINTR
N(EINTR)
#endif
#ifdef EIO
N(EIO)
#endif
#ifdef ENXIO
N(ENXIO)
#endif
#ifdef E2BIG
N(E2BIG)
#endif
#ifdef ENOEXEC
N(ENOEXEC)
#endif
#ifdef EBADF
N(EBADF)
#endif
#ifdef ECHILD
N(ECHILD)
#endif
#ifdef EAGAIN
N(EAGAIN)
#endif
#ifdef ENOMEM
N(ENOMEM)
#endif
#ifdef EACCES
N(EACCES)
#endif
#ifdef EFAULT
N(EFAULT)
#endif
#ifdef ENOTBLK
N(ENOTBLK)
#endif
#ifdef EBUSY
N(EBUSY)
#endif
#ifdef EEXIST
N(EEXIST)
#endif
#ifdef EXDEV
N(EXDEV)
#endif
#ifdef ENODEV
N(ENODEV)
#endif
#ifdef ENOTDIR
N(ENOTDIR)
#endif
#ifdef EISDIR
N(EISDIR)
#endif
#ifdef EINVAL
N(EINVAL)
#endif
#ifdef ENFILE
N(ENFILE)
#endif
#ifdef EMFILE
N(EMFILE)
#endif
#ifdef ENOTTY
N(ENOTTY)
#endif
#ifdef ETXTBSY
N(ETXTBSY)
#endif
#ifdef EFBIG
N(EFBIG)
#endif
#ifdef ENOSPC
N(ENOSPC)
#endif
#ifdef ESPIPE
N(ESPIPE)
#endif
#ifdef EROFS
N(EROFS)
#endif
#ifdef EMLINK
N(EMLINK)
#endif
#ifdef EPIPE
N(EPIPE)
#endif
#ifdef EDOM
N(EDOM)
#endif
#ifdef ERANGE
N(ERANGE)
#endif
#ifdef EDEADLK
N(EDEADLK)
#endif
#ifdef ENAMETOOLONG
N(ENAMETOOLONG)
#endif
#ifdef ENOLCK
N(ENOLCK)
#endif
#ifdef ENOSYS
N(ENOSYS)
#endif
#ifdef ENOTEMPTY
N(ENOTEMPTY)
#endif
#ifdef ELOOP
N(ELOOP)
#endif
#ifdef ENOMSG
N(ENOMSG)
#endif
#ifdef EIDRM
N(EIDRM)
#endif
#ifdef ECHRNG
N(ECHRNG)
#endif
#ifdef EL2NSYNC
N(EL2NSYNC)
#endif
#ifdef EL3HLT
N(EL3HLT)
#endif
#ifdef EL3RST
N(EL3RST)
#endif
#ifdef ELNRNG
N(ELNRNG)
#endif
#ifdef EUNATCH
N(EUNATCH)
#endif
#ifdef ENOCSI
N(ENOCSI)
#endif
#ifdef EL2HLT
N(EL2HLT)
#endif
#ifdef EBADE
N(EBADE)
#endif
#ifdef EBADR
N(EBADR)
#endif
#ifdef EXFULL
N(EXFULL)
#endif
#ifdef ENOANO
N(ENOANO)
#endif
#ifdef EBADRQC
N(EBADRQC)
#endif
#ifdef EBADSLT
N(EBADSLT)
#endif
#ifdef EBFONT
N(EBFONT)
#endif
#ifdef ENOSTR
N(ENOSTR)
#endif
#ifdef ENODATA
N(ENODATA)
#endif
#ifdef ETIME
N(ETIME)
#endif
#ifdef ENOSR
N(ENOSR)
#endif
#ifdef ENONET
N(ENONET)
#endif
#ifdef ENOPKG
N(ENOPKG)
#endif
#ifdef EREMOTE
N(EREMOTE)
#endif
#ifdef ENOLINK
N(ENOLINK)
#endif
#ifdef EADV
N(EADV)
#endif
#ifdef ESRMNT
N(ESRMNT)
#endif
#ifdef ECOMM
N(ECOMM)
#endif
#ifdef EPROTO
N(EPROTO)
#endif
#ifdef EMULTIHOP
N(EMULTIHOP)
#endif
#ifdef EDOTDOT
N(EDOTDOT)
#endif
#ifdef EBADMSG
N(EBADMSG)
#endif
#ifdef EOVERFLOW
N(EOVERFLOW)
#endif
#ifdef ENOTUNIQ
N(ENOTUNIQ)
#endif
#ifdef EBADFD
N(EBADFD)
#endif
#ifdef EREMCHG
N(EREMCHG)
#endif
#ifdef ELIBACC
N(ELIBACC)
#endif
#ifdef ELIBBAD
N(ELIBBAD)
#endif
#ifdef ELIBSCN
N(ELIBSCN)
#endif
#ifdef ELIBMAX
N(ELIBMAX)
#endif
#ifdef ELIBEXEC
N(ELIBEXEC)
#endif
#ifdef EILSEQ
N(EILSEQ)
#endif
#ifdef ERESTART
N(ERESTART)
#endif
#ifdef ESTRPIPE
N(ESTRPIPE)
#endif
#ifdef EUSERS
N(EUSERS)
#endif
#ifdef ENOTSOCK
N(ENOTSOCK)
#endif
#ifdef EDESTADDRREQ
N(EDESTADDRREQ)
#endif
#ifdef EMSGSIZE
N(EMSGSIZE)
#endif
#ifdef EPROTOTYPE
N(EPROTOTYPE)
#endif
#ifdef ENOPROTOOPT
N(ENOPROTOOPT)
#endif
#ifdef EPROTONOSUPPORT
N(EPROTONOSUPPORT)
#endif
#ifdef ESOCKTNOSUPPORT
N(ESOCKTNOSUPPORT)
#endif
#ifdef EOPNOTSUPP
N(EOPNOTSUPP)
#endif
#ifdef EPFNOSUPPORT
N(EPFNOSUPPORT)
#endif
#ifdef EAFNOSUPPORT
N(EAFNOSUPPORT)
#endif
#ifdef EADDRINUSE
N(EADDRINUSE)
#endif
#ifdef EADDRNOTAVAIL
N(EADDRNOTAVAIL)
#endif
#ifdef ENETDOWN
N(ENETDOWN)
#endif
#ifdef ENETUNREACH
N(ENETUNREACH)
#endif
#ifdef ENETRESET
N(ENETRESET)
#endif
#ifdef ECONNABORTED
N(ECONNABORTED)
#endif
#ifdef ECONNRESET
N(ECONNRESET)
#endif
#ifdef ENOBUFS
N(ENOBUFS)
#endif
#ifdef EISCONN
N(EISCONN)
#endif
#ifdef ENOTCONN
N(ENOTCONN)
#endif
#ifdef ESHUTDOWN
N(ESHUTDOWN)
#endif
#ifdef ETOOMANYREFS
N(ETOOMANYREFS)
#endif
#ifdef ETIMEDOUT
N(ETIMEDOUT)
#endif
#ifdef ECONNREFUSED
N(ECONNREFUSED)
#endif
#ifdef EHOSTDOWN
N(EHOSTDOWN)
#endif
#ifdef EHOSTUNREACH
N(EHOSTUNREACH)
#endif
#ifdef EALREADY
N(EALREADY)
#endif
#ifdef EINPROGRESS
N(EINPROGRESS)
#endif
#ifdef ESTALE
N(ESTALE)
#endif
#ifdef EUCLEAN
N(EUCLEAN)
#endif
#ifdef ENOTNAM
N(ENOTNAM)
#endif
#ifdef ENAVAIL
N(ENAVAIL)
#endif
#ifdef EISNAM
N(EISNAM)
#endif
#ifdef EREMOTEIO
N(EREMOTEIO)
#endif
#ifdef EDQUOT
N(EDQUOT)
#endif
#ifdef ENOMEDIUM
N(ENOMEDIUM)
#endif
#ifdef EMEDIUMTYPE
N(EMEDIUMTYPE)
#endif
#ifdef ECANCELED
N(ECANCELED)
#endif
#ifdef ENOKEY
N(ENOKEY)
#endif
#ifdef EKEYEXPIRED
N(EKEYEXPIRED)
#endif
#ifdef EKEYREVOKED
N(EKEYREVOKED)
#endif
#ifdef EKEYREJECTED
N(EKEYREJECTED)
#endif
#ifdef EOWNERDEAD
N(EOWNERDEAD)
#endif
#ifdef ENOTRECOVERABLE
N(ENOTRECOVERABLE)
#endif
#ifdef ERFKILL
N(ERFKILL)
#endif
#ifdef EHWPOISON
N(EHWPOISON)
#endif
#if defined(EWOULDBLOCK) && defined(EAGAIN) && EWOULDBLOCK != EAGAIN
N(EWOULDBLOCK)
#endif
#if defined(EDEADLOCK) && defined(EDEADLK) && EDEADLOCK != EDEADLK
N(EDEADLOCK)
#endif
#if defined(ENOTSUP) && defined(EOPNOTSUPP) && ENOTSUP != EOPNOTSUPP
N(ENOTSUP)
#endif
};
#undef N

#define ERRNO_COUNT ((int)(sizeof errno_names / sizeof errno_names[0]))

/* Aliases that share a number with a name of the table: constants only. */
static const ShmConst errno_aliases[] = {
#ifdef EWOULDBLOCK
  {"EWOULDBLOCK", EWOULDBLOCK},
#endif
#ifdef EDEADLOCK
  {"EDEADLOCK", EDEADLOCK},
#endif
#ifdef ENOTSUP
  {"ENOTSUP", ENOTSUP},
#endif
  {NULL, 0}
};

const char *shm_errno_name(int err) {
  return err > 0 && err < ERRNO_COUNT ? errno_names[err] : NULL;
}

/*
 * ---- advice: what usually causes an errno in the calls shmlua wraps
 * (shm_open, memfd_create, ftruncate, fstat, fchown, fchmod, fcntl and
 * seals, mmap, munmap, mprotect, msync, madvise, mlock, futex, spawn/wait,
 * descriptor passing) and what to do about it.  Errnos without an entry get
 * a generic paragraph built by errno_pushhelp.
 */
#define H(e, text) [e] = text,
static const char *const errno_helps[ERRNO_COUNT] = {
#ifdef EPERM
H(EPERM,
  "The operation is forbidden whatever the file permissions say. Most often "
  "a seal is in the way: ftruncate of a memfd sealed with F_SEAL_SHRINK or "
  "F_SEAL_GROW, a writable mmap of one sealed with F_SEAL_WRITE or "
  "F_SEAL_FUTURE_WRITE, or F_ADD_SEALS once F_SEAL_SEAL is set (memfds made "
  "without MFD_ALLOW_SEALING and shm_open objects start with it). Otherwise "
  "a privilege is missing: fchown to another user needs CAP_CHOWN, fchmod and "
  "shm_unlink of another user's object need ownership, mlock/mlockall with "
  "RLIMIT_MEMLOCK 0 and MAP_HUGETLB/MFD_HUGETLB need CAP_IPC_LOCK, and "
  "PROT_EXEC on a noexec mount is refused. Check shm.get_seals(fd) and "
  "`ulimit -l`, or create the memfd with shm.MFD_ALLOW_SEALING.")
#endif
#ifdef ENOENT
H(ENOENT,
  "Nothing of that name exists. shm_open without O_CREAT, or shm_unlink, "
  "found no object under /dev/shm: the creator has not run yet, has already "
  "unlinked it, or used a different name (names are '/name', case-sensitive). "
  "For spawn the program was not found (give a full path, e.g. arg[-1] for "
  "the running interpreter), and for descriptor passing the socket path does "
  "not exist yet. Create the object with O_CREAT first, or have the creator "
  "signal when it is ready instead of racing it.")
#endif
#ifdef ESRCH
H(ESRCH,
  "No process with that id exists any more. wait or a signal targeted a pid "
  "that has already exited and been reaped, or one this process never "
  "started. Keep the pid that shm.spawn returned and wait for it exactly "
  "once; after that the system may reuse the number for another process.")
#endif
#ifdef EINTR
H(EINTR,
  "A signal handler ran while the call was blocked, so the kernel returned "
  "early; the arguments were fine and nothing was done. It shows up in "
  "shm.futex_wait, shm.wait, blocking descriptor passing (sendmsg/recvmsg) "
  "and fcntl F_SETLKW. Retry the call, with the timeout reduced by the time "
  "already spent.")
#endif
#ifdef EIO
H(EIO,
  "A low-level I/O error on the file behind the descriptor. Memory objects "
  "(shm_open, memfd_create) practically never produce it; it comes from "
  "mappings of real files when msync, ftruncate or madvise MADV_WILLNEED "
  "cannot reach the storage, or from a device that went away. Check the "
  "kernel log (dmesg) and the file system; retrying rarely helps.")
#endif
#ifdef ENXIO
H(ENXIO,
  "The path or descriptor names something that cannot serve the request: "
  "opening a Unix socket's path as if it were a file, opening a FIFO with "
  "O_WRONLY|O_NONBLOCK while nobody reads it, or mmap of a device at an "
  "offset the device does not provide. Map memory objects (shm_open, "
  "memfd_create) or regular files, and connect to sockets rather than "
  "opening them.")
#endif
#ifdef E2BIG
H(E2BIG,
  "The argument list plus environment given to spawn is larger than execve "
  "accepts (ARG_MAX, typically 2 MiB in total and 128 KiB for one string). "
  "Put bulk data in a shared memory object or a file and pass the child only "
  "its name or descriptor (opts.fds).")
#endif
#ifdef ENOEXEC
H(ENOEXEC,
  "spawn found the file but the kernel cannot execute it: it is not an ELF "
  "binary for this machine and has no '#!' interpreter line (a bare Lua "
  "script, or a program built for another architecture). Run it through an "
  "interpreter, e.g. shm.spawn({arg[-1], \"child.lua\"}), or give it a "
  "'#!/usr/bin/env lua5.4' line and make it executable.")
#endif
#ifdef EBADF
H(EBADF,
  "The descriptor is not open, or not open the way the call needs. Usually "
  "it was closed already (shm.close twice, or before mmap), a number was "
  "mistaken, mmap got no valid fd without MAP_ANONYMOUS, or a descriptor "
  "named in spawn's opts.fds is not open in the parent; ftruncate also says "
  "EBADF for a descriptor opened O_RDONLY. A mapping stays valid after its "
  "descriptor is closed, so close fds once they are mapped and passed on, "
  "and never use a number after closing it.")
#endif
#ifdef ECHILD
H(ECHILD,
  "wait found no such child: the pid was not started by this process (a "
  "grandchild, or another program's process) or it has already been waited "
  "for. It also happens when SIGCHLD is ignored, which makes the kernel reap "
  "children on its own. Wait once for each pid that shm.spawn returned, in "
  "the process that spawned it.")
#endif
#ifdef EAGAIN
H(EAGAIN,
  "The resource is temporarily unavailable and trying again may succeed. "
  "From shm.futex_wait it is the normal 'value changed' answer: the word did "
  "not hold the expected value when the call started, so re-read it and "
  "decide whether to wait again. mlock and mmap return it when memory could "
  "not be locked (RLIMIT_MEMLOCK, see `ulimit -l`), fcntl F_SETLK when "
  "another process holds the lock, spawn when fork hits the process limit "
  "(RLIMIT_NPROC), and non-blocking socket calls when no message or "
  "descriptor is ready yet.")
#endif
#ifdef ENOMEM
H(ENOMEM,
  "Either memory ran out or, more often, an address range is not mapped. "
  "munmap, mprotect, msync, madvise and mlock say ENOMEM when part of "
  "[addr, addr+len) is not mapped in this process; mmap says it when the "
  "address space or the number of mappings (vm.max_map_count) is exhausted, "
  "when a fixed address lies beyond the CPU's address space, or when "
  "RLIMIT_DATA would be exceeded; mlock says it past RLIMIT_MEMLOCK. Check "
  "that lengths are in bytes rather than pages, release mappings you no "
  "longer need, and for locking raise `ulimit -l`.")
#endif
#ifdef EACCES
H(EACCES,
  "Permissions forbid the access. shm_open: the object's mode (see "
  "shm.fstat) does not grant this user the O_RDONLY/O_RDWR asked for, or "
  "O_TRUNC was given without write permission. mmap: the descriptor is not "
  "open for reading, or MAP_SHARED with PROT_WRITE was asked of a "
  "descriptor opened O_RDONLY (mprotect to PROT_WRITE on such a mapping "
  "fails the same way); spawn: the program file is not executable. Open "
  "with O_RDWR when you will write, and create objects with a mode every "
  "peer can use (shm.fchmod can fix it later).")
#endif
#ifdef EFAULT
H(EFAULT,
  "The kernel was handed an address outside this process's valid memory. "
  "shmlua checks addresses against live mappings before a call, so through "
  "the checked API this points at an 'unsafe' function given a bad address, "
  "a mapping that went away, or a bug in shmlua worth reporting. madvise "
  "MADV_POPULATE_READ/WRITE also says EFAULT when part of the mapping lies "
  "past the end of the object: ftruncate it to the mapped size first.")
#endif
#ifdef EBUSY
H(EBUSY,
  "The object is in use in a way that blocks the change. fcntl F_ADD_SEALS "
  "with F_SEAL_WRITE fails with EBUSY while any writable shared mapping of "
  "the memfd exists, in this or any other process: unmap those first, or "
  "use the seal F_SEAL_FUTURE_WRITE (Linux 5.1+), which lets existing "
  "mappings keep writing and only forbids new ones. msync with MS_INVALIDATE "
  "says EBUSY when part of the range is locked with mlock.")
#endif
#ifdef EEXIST
H(EEXIST,
  "shm_open with O_CREAT|O_EXCL found an object of that name already in "
  "/dev/shm: another process created it first, or a crashed earlier run left "
  "it behind. If it is stale, unlink it with shm.shm_unlink(name); to share "
  "it, open without O_EXCL; to avoid clashes, put the pid or a random part "
  "in the name. mmap with MAP_FIXED_NOREPLACE: the range [addr, addr+length) "
  "is already mapped (see /proc/self/maps), so pick another address, pass "
  "nil to let the kernel choose, or unmap what is there first. mmap with "
  "MAP_FIXED: part of the range holds memory that is not one of this "
  "runtime's live mappings (the Lua heap, the program, a library, a stack, "
  "a faulted mapping), which shmlua never replaces; free pages and our own "
  "mappings may be replaced.")
#endif
#ifdef EXDEV
H(EXDEV,
  "A link or rename crossed file systems: none of the shm calls returns it, "
  "but os.rename or a hard link between /dev/shm (a tmpfs) and another file "
  "system does. Copy the data and remove the original instead, or keep both "
  "names on the same file system.")
#endif
#ifdef ENODEV
H(ENODEV,
  "mmap was given a descriptor whose file cannot be memory-mapped: a pipe, "
  "a socket, a terminal, or a file system without mmap support. Map only "
  "memfds, shm_open objects and regular files; shm.fstat(fd).mode tells "
  "what the descriptor is.")
#endif
#ifdef ENOTDIR
H(ENOTDIR,
  "A component of a path is not a directory. Usually a spawn program path "
  "or a Unix socket path has a regular file where a directory was expected "
  "(e.g. \"child.lua/x\"); shm_open fails this way only when /dev/shm itself "
  "is not a directory. Check every component of the path; shm_open names "
  "are '/name' with no further slash.")
#endif
#ifdef EINVAL
H(EINVAL,
  "An argument is outside what the kernel accepts; alignment and flag "
  "combinations are the usual culprits. mmap: length 0, an offset that is "
  "not a multiple of shm.getpagesize(), an unaligned MAP_FIXED address, or "
  "neither MAP_SHARED nor MAP_PRIVATE; munmap, mprotect, msync, madvise: an "
  "unaligned address, unknown flags or advice, MS_SYNC with MS_ASYNC, "
  "MADV_DONTNEED on locked pages. shm_open: an empty name, a slash after "
  "the first character or more than 255 bytes; memfd_create: unknown MFD_ "
  "flags or a name over 249 bytes; ftruncate: a negative length or a "
  "descriptor that is not a writable regular file; F_ADD_SEALS/F_GET_SEALS: "
  "a file that is not a memfd or tmpfs file; futex: an address that is not "
  "4-byte aligned or a bad timeout. Compare each argument with the ERRORS "
  "section of the call's man page.")
#endif
#ifdef ENFILE
H(ENFILE,
  "The system-wide limit on open files (fs.file-max) is reached, so "
  "shm_open, memfd_create, a socket call or a received descriptor could not "
  "get a new file. Some process, possibly this one, leaks descriptors: close "
  "what you no longer need (a mapping stays valid after shm.close of its "
  "fd) and look at /proc/sys/fs/file-nr.")
#endif
#ifdef EMFILE
H(EMFILE,
  "This process has reached its limit of open descriptors (RLIMIT_NOFILE, "
  "see `ulimit -n`). Every shm_open, memfd_create, shm_anonymous and "
  "received descriptor holds one until shm.close; a mapping stays valid "
  "after its descriptor is closed, so close fds right after mmap. Raise the "
  "soft limit with `ulimit -n` only if you truly need that many at once.")
#endif
#ifdef ETXTBSY
H(ETXTBSY,
  "The file is a program that is open for writing while something tries to "
  "execute it, or is running while something tries to write or truncate "
  "it. spawn gets it when the executable (or a memfd holding one) is still "
  "open for writing, e.g. just written by this process. Close every write "
  "descriptor before spawning, or write to a new file and rename it into "
  "place.")
#endif
#ifdef EFBIG
H(EFBIG,
  "ftruncate asked for a size beyond what the file may have: more than the "
  "file system's maximum file size, or more than RLIMIT_FSIZE (`ulimit -f`). "
  "Check that the length is in bytes and is not a negative value turned "
  "into a huge one, and that the limit allows it.")
#endif
#ifdef ENOSPC
H(ENOSPC,
  "The file system holding the object is full. shm_open objects live in "
  "the tmpfs at /dev/shm, whose size is limited (often 64 MiB in containers, "
  "see `df -h /dev/shm`) and which can also run out of inodes when many "
  "objects exist; a sparse object that grows past the limit faults when its "
  "pages are touched. Remove stale objects (ls /dev/shm, then "
  "shm.shm_unlink), make objects smaller, or use memfd_create, which is not "
  "bound by /dev/shm's size.")
#endif
#ifdef ESPIPE
H(ESPIPE,
  "The descriptor is a pipe, FIFO or socket, and the operation needs a "
  "seekable file (an offset, lseek, pread/pwrite). Usually a pipe or socket "
  "end was passed where a shared memory descriptor was expected; size and "
  "map only memfds, shm_open objects or regular files.")
#endif
#ifdef EROFS
H(EROFS,
  "The object lives on a read-only file system: shm_open with O_CREAT, "
  "O_RDWR or O_TRUNC, shm_unlink, fchmod and fchown fail this way when "
  "/dev/shm is mounted read-only, as some sandboxes do. Use memfd_create, "
  "which needs no file system path, or give the sandbox a writable "
  "/dev/shm.")
#endif
#ifdef ENAMETOOLONG
H(ENAMETOOLONG,
  "A name or path is too long: a component over NAME_MAX (255 bytes) or a "
  "whole path over PATH_MAX (4096), typically a spawn program path or a "
  "Unix socket path. Use shorter names; note that current glibc reports an "
  "over-long shm_open name as EINVAL and memfd_create one over 249 bytes as "
  "EINVAL too.")
#endif
#ifdef ENOSYS
H(ENOSYS,
  "The kernel (or a sandbox's seccomp filter in front of it) does not "
  "implement the call: memfd_create needs Linux 3.17, and container "
  "runtimes may block calls such as mlock or memfd_create. Check `uname -r` "
  "and the sandbox's profile; shm_open objects plus shm_unlink right after "
  "creation are the usual fallback for a missing memfd_create.")
#endif
#ifdef EOVERFLOW
H(EOVERFLOW,
  "A value does not fit the type the kernel uses for it. mmap says "
  "EOVERFLOW when offset plus length overflows the file offset range (a "
  "negative or wrapped offset, or on 32-bit systems more than 4 GiB worth "
  "of pages), and fstat when a size or inode number does not fit struct "
  "stat in a 32-bit build. Check the arithmetic that produced the offset "
  "and length.")
#endif
#ifdef ETIMEDOUT
H(ETIMEDOUT,
  "A wait with a timeout ran out before the event happened: shm.futex_wait "
  "when nobody called futex_wake within timeout_s, shm.wait when the child "
  "was still running at the deadline. The call itself did nothing wrong: "
  "decide whether the peer is just slow (wait again), stuck or dead (check "
  "it with shm.wait, then stop it), or whether a wake-up was lost because "
  "the value was changed without a futex_wake.")
#endif
#ifdef EOPNOTSUPP
H(EOPNOTSUPP,
  "The object does not support this operation (ENOTSUP is the same "
  "number). mmap with MAP_SHARED_VALIDATE says it for flags the kernel or "
  "file system does not support, e.g. MAP_SYNC outside a DAX file system; "
  "socket calls say it for operations the socket type lacks, e.g. listen or "
  "accept on a socket pair. Drop the optional flag (plain MAP_SHARED), and "
  "pass descriptors over Unix stream or datagram sockets.")
#endif
#ifdef ENOTSOCK
H(ENOTSOCK,
  "A socket call (sending or receiving descriptors) got a descriptor that "
  "is not a socket: usually a shm or memfd descriptor passed where the "
  "socket belongs, or a socket number that was closed and then reused by "
  "another open. Check the argument order and that this side's socket end "
  "is still open.")
#endif
#ifdef EMSGSIZE
H(EMSGSIZE,
  "The message is too large to send in one piece: a datagram or seqpacket "
  "message bigger than the socket buffer or protocol limit, control data "
  "carrying descriptors included. Put bulk data in a shared mapping and "
  "send only small messages and the descriptors over the socket.")
#endif
#ifdef EPIPE
H(EPIPE,
  "The other end of the pipe or socket is closed: the peer exited or "
  "closed its end, so writing or sending (descriptors included) fails "
  "(this errno appears instead of death by SIGPIPE when that signal is "
  "ignored or MSG_NOSIGNAL is used). Check whether the peer is still alive "
  "with shm.wait(pid, 0) and treat EPIPE as the end of the conversation.")
#endif
#ifdef ECONNREFUSED
H(ECONNREFUSED,
  "Nobody is listening at that Unix socket address: the server has not "
  "called listen yet, has exited, or the path is a stale socket file from "
  "an earlier run. Start the listener before the client (or retry with a "
  "bounded timeout), remove stale socket files before binding, or between "
  "parent and child use a socket pair made before shm.spawn.")
#endif
#ifdef ENOTCONN
H(ENOTCONN,
  "The socket is not connected: a send or receive on a stream socket "
  "before connect or accept completed, or after shutdown. In descriptor "
  "passing it usually means the listening socket was used instead of the "
  "one accept returned. Connect first, use accept's descriptor, or use a "
  "socket pair made before spawning the child.")
#endif
#ifdef EOWNERDEAD
H(EOWNERDEAD,
  "The previous owner of a robust lock died while holding it. The caller "
  "now owns the lock, but the shared data it protects may be half-updated: "
  "check or repair it, then mark the lock consistent "
  "(pthread_mutex_consistent, or the protocol's own flag). If it cannot be "
  "repaired, release it unmarked so that later lockers get "
  "ENOTRECOVERABLE.")
#endif
#ifdef ENOTRECOVERABLE
H(ENOTRECOVERABLE,
  "The robust lock is permanently unusable: an owner died holding it and "
  "the next owner released it without marking the state consistent. Only "
  "reinitialising fixes it: once every process using it agrees, recreate "
  "the lock, usually with the whole shared object (shm.shm_unlink, then "
  "create it again).")
#endif
#ifdef EDEADLK
H(EDEADLK,
  "The kernel saw that the call would deadlock (EDEADLOCK is the same "
  "number): fcntl F_SETLKW record locks when two processes would wait for "
  "each other, or PI-futex locking when the caller already holds the lock. "
  "Take locks in one fixed order in every process, and never lock again "
  "what you already hold.")
#endif
#ifdef ELOOP
H(ELOOP,
  "Too many symbolic links, or one where none is allowed. glibc opens shm "
  "objects with O_NOFOLLOW, so shm_open fails with ELOOP when "
  "/dev/shm/<name> is a symbolic link (possibly planted by another user); "
  "a spawn program path or a Unix socket path with a link loop fails the "
  "same way. Look with `ls -l /dev/shm` and remove the link, or fix the "
  "path.")
#endif
};
#undef H

/*
 * The text for `err` in *buf (at least 128 bytes) or a static string; never
 * NULL.  strerror_r is the GNU variant under glibc with _GNU_SOURCE (returns
 * the text, possibly not in buf) and the XSI one elsewhere (fills buf).
 */
static const char *errno_text(int err, char *buf, size_t len) {
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
  return strerror_r(err, buf, len);
#else
  if (strerror_r(err, buf, len) != 0)
    snprintf(buf, len, "Unknown error %d", err);
  return buf;
#endif
}

int shm_fail(lua_State *L, const char *call, const char *arg, int err) {
  char textbuf[128], namebuf[24];
  const char *text = errno_text(err, textbuf, sizeof textbuf);
  const char *name = shm_errno_name(err);
  if (name == NULL) {
    snprintf(namebuf, sizeof namebuf, "E%d", err);
    name = namebuf;
  }
  lua_pushnil(L);
  if (arg != NULL)
    lua_pushfstring(L, "%s(%s): %s: %s", call, arg, name, text);
  else
    lua_pushfstring(L, "%s: %s: %s", call, name, text);
  lua_pushinteger(L, err);
  return 3;
}

/* ---- Lua functions */

/*
 * The errno number at `arg` as an int, or -1 when the integer is outside
 * the int range (no errno lives there).  Raises for a non-integer.
 */
static int errno_checknum(lua_State *L, int arg) {
  lua_Integer n = luaL_checkinteger(L, arg);
  return n >= 0 && n <= INT_MAX ? (int)n : -1;
}

/* shm.errno_name(n) -> "EEXIST", or nil for a number that is no errno. */
static int errno_name(lua_State *L) {
  const char *name = shm_errno_name(errno_checknum(L, 1));
  if (name == NULL)
    lua_pushnil(L);
  else
    lua_pushstring(L, name);
  return 1;
}

/* shm.strerror(n) -> the C library's text ("Unknown error n" if none). */
static int errno_strerror(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  char buf[128];
  if (n < INT_MIN || n > INT_MAX)
    lua_pushfstring(L, "Unknown error %I", (LUAI_UACINT)n);
  else
    lua_pushstring(L, errno_text((int)n, buf, sizeof buf));
  return 1;
}

/*
 * shm.errno_help(n) -> a paragraph on what causes errno n in these calls and
 * what to do; a generic one for errnos without an entry; nil for a number
 * that is no errno.
 */
static int errno_help(lua_State *L) {
  int err = errno_checknum(L, 1);
  const char *name = shm_errno_name(err);
  char buf[128];
  if (name == NULL) {
    lua_pushnil(L);
  } else if (errno_helps[err] != NULL) {
    lua_pushstring(L, errno_helps[err]);
  } else {
    lua_pushfstring(L,
        "%s (%s) is not an error that shm_open, memfd_create, mmap, fcntl or "
        "the other calls wrapped by shm usually return. The failure message "
        "names the call that failed: read the ERRORS section of its man page "
        "(man 2 <call>, or man 3 shm_open) for what %s means there, and check "
        "the arguments and the state of the descriptor or mapping you gave "
        "it.",
        name, errno_text(err, buf, sizeof buf), name);
  }
  return 1;
}

/*
 * Adds errno_name, strerror, errno_help and every E* constant (aliases
 * included) to the module table on top of the stack.
 */
void shm_errno_open(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"errno_name", errno_name},
    {"strerror", errno_strerror},
    {"errno_help", errno_help},
    {NULL, NULL}
  };
  int i;
  luaL_setfuncs(L, funcs, 0);
  for (i = 1; i < ERRNO_COUNT; i++) {
    if (errno_names[i] != NULL) {
      lua_pushinteger(L, i);
      lua_setfield(L, -2, errno_names[i]);
    }
  }
  shm_setconsts(L, -1, errno_aliases);
}
