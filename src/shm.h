/*
 * shm.h: what the subsystems of the shm module share.
 *
 * Each subsystem lives in its own file (fd.c, mapping.c, errno.c, view.c,
 * atomic.c, proc.c) and exports one registration function, called by
 * luaopen_shm in shm.c with the module table on top of the stack.  Nothing
 * here is visible outside the module: the build uses -fvisibility=hidden and
 * only luaopen_shm carries SHM_EXPORT.
 */
#ifndef SHM_H
#define SHM_H

#include <stddef.h>
#include <stdint.h>

#include "lua.h"
#include "lauxlib.h"

#define SHM_EXPORT __attribute__((visibility("default")))
#define SHM_VERSION "shmlua 0.1.0"

/* ---- subsystem registration: each adds its functions to the table on top */
void shm_errno_open(lua_State *L);   /* errno.c   */
void shm_fd_open(lua_State *L);      /* fd.c      */
void shm_map_open(lua_State *L);     /* mapping.c */
void shm_view_open(lua_State *L);    /* view.c    */
void shm_atomic_open(lua_State *L);  /* atomic.c  */
void shm_proc_open(lua_State *L);    /* proc.c    */
void shm_channel_open(lua_State *L); /* channel.c */
void shm_lua_open(lua_State *L);     /* generated from lua/shm: package.preload */

/* ---- results and errors (errno.c) */

/*
 * Pushes the io-style failure triple nil, "call(arg): ENAME: text", err and
 * returns 3, so a binding ends with `return shm_fail(L, "shm_open", name, e)`.
 * `arg` may be NULL ("call: ENAME: text").  Pass errno saved right after the
 * failing call: Lua API calls may overwrite it.
 */
int shm_fail(lua_State *L, const char *call, const char *arg, int err);
/* "EEXIST" for EEXIST; NULL for a number that is no errno. */
const char *shm_errno_name(int err);

/* ---- small helpers (shm.c) */
typedef struct ShmConst {
  const char *name;
  lua_Integer value;
} ShmConst;

/* Sets every constant of the NULL-terminated list into the table at `t`. */
void shm_setconsts(lua_State *L, int t, const ShmConst *c);
/* A non-negative integer that fits size_t; raises otherwise ("size expected"). */
size_t shm_checksize(lua_State *L, int arg);
/* Same, optional with default. */
size_t shm_optsize(lua_State *L, int arg, size_t def);
/* A descriptor: an integer in [0, INT_MAX]; raises otherwise. */
int shm_checkfd(lua_State *L, int arg);
/* An int-range integer; raises if the value does not fit a C int. */
int shm_checkint(lua_State *L, int arg);
int shm_optint(lua_State *L, int arg, int def);

/* ---- mappings (mapping.c) */
#define SHM_MAPPING "shm.mapping"

typedef struct Mapping {
  unsigned char *addr;          /* NULL once unmapped, replaced or faulted */
  size_t size;                  /* length asked for (bytes addressable)    */
  int prot;                     /* current protection: PROT_* bits         */
  int flags;                    /* MAP_* flags given to mmap               */
  struct Mapping *prev, *next;  /* the process-wide list of live mappings  */
  /* mapping.c's own: what to munmap, kept after addr is cleared by a fault */
  unsigned char *base;
  size_t maplen;                /* size rounded up to whole pages          */
} Mapping;

/* The mapping at `idx`, live or not; NULL if it is not a shm.mapping. */
Mapping *shm_tomapping(lua_State *L, int idx);
/* The live mapping at `idx`; raises if it is not one or has been unmapped. */
Mapping *shm_checkmapping(lua_State *L, int idx);
/*
 * Raises unless bytes [off, off+len) of the live mapping `m` may be read
 * (write == 0) or written (write != 0) under its current protection.
 */
void shm_checkaccess(lua_State *L, const Mapping *m, size_t off, size_t len,
                     int write);
/* The live mapping that holds all of [addr, addr+len), or NULL. */
Mapping *shm_findmapping(uintptr_t addr, size_t len);
/*
 * Pushes the shm.mapping userdata of the live mapping `m` (found with
 * shm_findmapping, say) so a view can keep it alive.  Pushes nil if `m`
 * is not live.
 */
void shm_pushmapping(lua_State *L, const Mapping *m);
/*
 * After a bulk access through a mapping: raises if the access faulted
 * (SIGBUS: the object is shorter than the mapping).  The SIGBUS handler
 * installed by mapping.c replaces the faulting page with zeros so the access
 * completes, and marks the mapping dead (addr = NULL).
 */
void shm_checkfault(lua_State *L, const Mapping *m, const char *what);
/*
 * After a single access through m: did it fault (the handler cleared
 * m->addr)?  The barrier keeps the compiler from moving the access past
 * this load.
 */
static inline int shm_faulted(const Mapping *m) {
  __asm__ __volatile__("" ::: "memory");
  return *(unsigned char *const volatile *)&m->addr == NULL;
}

/* ---- addresses (view.c) */

/*
 * An address from an integer, a mapping, a view or a pointer at `idx`:
 * stores it in *out and returns 1; returns 0 (touching nothing) for any other
 * value.  nil is not an address here: callers decide what nil means.
 */
int shm_toaddress(lua_State *L, int idx, uintptr_t *out);

/*
 * For atomic.c: field `name` (the string at name_idx) of the view at
 * view_idx.  Raises if the value is not a view, the field is unknown, the
 * mapping is gone, or its protection forbids reading (write == 0) or
 * writing (write != 0).  Returns the field's address, its type and, if m
 * is not NULL, the mapping it lies in (for shm_faulted after the access).
 */
struct CType;
void *shm_view_field(lua_State *L, int view_idx, int name_idx,
                     const struct CType **type, int write, const Mapping **m);

/* For atomic.c's messages: the type of a field known to exist, found
 * without looking at the mapping (which may be gone by then). */
const struct CType *shm_view_field_type(lua_State *L, int view_idx,
                                        int name_idx);

/*
 * For atomic.c, the fast path of shm_view_field for args (view 1, name 2):
 * the address of a naturally aligned integer field of 1/2/4/8 bytes in a
 * live mapping with the protection asked for, with its size, sign and
 * mapping; or
 * NULL, and the caller takes shm_view_field (which raises if it must).
 */
void *shm_view_int(lua_State *L, int write, int *size, int *sign,
                   const Mapping **m);

/* ---- the adaptive wait (atomic.c), with the channel's sleep flags */

/*
 * Waits until the 32-bit word *p no longer holds `old` (timeout_ns < 0:
 * forever; 0: one look) as shm.wait_change does (spins, yields, then
 * sleeps), but sleeps on the futex word *f, whose value fv it reads before
 * raising the flag *sleeping to fv + 1 (and leaves it raised), for one
 * sleeper per word (channel.c); the notifier must change *f after every
 * change of *p and then call shm_notify32_clear on f, which lowers the
 * flag when it wakes.  Returns 0 with the new value in *newval, ETIMEDOUT,
 * or the errno of a failed FUTEX_WAIT (EINTR...).  Sets *raised to 1 if it
 * raised the flag (it may still be raised), else leaves it alone.
 */
int shm_wait32_on(uint32_t *p, uint32_t old, uint32_t *f, int64_t timeout_ns,
                  uint32_t *sleeping, uint32_t *newval, int *raised);
/*
 * Stores x into *p (seq_cst); if *sleeping says that a process sleeps on
 * another value than x, lowers it and wakes every sleeper on p.  Returns
 * the number woken, or -1 with errno set.
 */
long shm_notify32_clear(uint32_t *p, uint32_t x, uint32_t *sleeping);

/* A spin-wait hint to the CPU (pause on x86, yield on arm64). */
static inline void shm_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield" ::: "memory");
#else
  __asm__ __volatile__("" ::: "memory");
#endif
}

#endif
