/*
 * mapping.c: shm.mmap and the shm.mapping userdata.
 *
 * A Mapping is created closed (addr == NULL) with its metatable first and
 * only then mapped, so __gc is always safe (the liolib pattern).  One
 * idempotent routine, map_release, serves m:unmap(), shm.munmap, __gc and
 * __close.
 *
 * Safety rules, the reason this file exists rather than a thin wrapper:
 * - every byte access goes through shm_checkaccess: bounds, liveness and the
 *   protection the mapping currently has (mprotect updates it);
 * - a MAP_FIXED mapping never replaces memory that is not one of this
 *   runtime's own live mappings (mmap_fixed); replacing our own invalidates
 *   the old mapping objects;
 * - touching a page past the end of the object (the object was shorter than
 *   the mapping, or another process truncated it) raises SIGBUS; the handler
 *   puts a zero page there so the access completes, marks the mapping dead,
 *   and the access then raises (shm_checkfault).
 *
 * The list of live mappings is process-wide and not thread-safe: a
 * lua_State and its mappings belong to one thread.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shm.h"

#ifndef MADV_SOFT_OFFLINE
#define MADV_SOFT_OFFLINE 101 /* <linux/mman.h>; glibc's header lacks it */
#endif

#define LIVE_TABLE "shm.mapping.live" /* registry: Mapping* -> userdata (weak) */

static Mapping *live_head;
static size_t page_size;
static struct sigaction old_bus;
static int bus_installed;

static size_t page_round(size_t n) {
  return (n + page_size - 1) & ~(page_size - 1);
}

static void live_link(Mapping *m) {
  m->prev = NULL;
  m->next = live_head;
  if (live_head != NULL) live_head->prev = m;
  live_head = m;
}

static void live_unlink(Mapping *m) {
  if (m->prev != NULL) m->prev->next = m->next;
  else if (live_head == m) live_head = m->next;
  if (m->next != NULL) m->next->prev = m->prev;
  m->prev = m->next = NULL;
}

/*
 * SIGBUS inside one of our mappings: the object behind it is shorter than
 * the page touched.  Map a private zero page over the faulting page so the
 * interrupted access can finish, and mark the mapping dead; callers check
 * with shm_checkfault and raise.  Anything else goes to the handler that was
 * there before (or the default action, which ends the process as it would
 * have without us).
 */
static void map_sigbus(int sig, siginfo_t *si, void *ctx) {
  uintptr_t a = (uintptr_t)si->si_addr;
  Mapping *m;
  for (m = live_head; m != NULL; m = m->next) {
    uintptr_t b = (uintptr_t)m->base;
    if (b != 0 && a >= b && a - b < m->maplen) {
      void *page = (void *)(a & ~(uintptr_t)(page_size - 1));
      if (mmap(page, page_size, PROT_READ | PROT_WRITE,
               MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) != MAP_FAILED) {
        m->addr = NULL;
        return;
      }
      break;
    }
  }
  if (old_bus.sa_flags & SA_SIGINFO) {
    old_bus.sa_sigaction(sig, si, ctx);
  } else if (old_bus.sa_handler != SIG_IGN && old_bus.sa_handler != SIG_DFL) {
    old_bus.sa_handler(sig);
  } else {
    signal(SIGBUS, SIG_DFL); /* returning re-runs the access: default action */
  }
}

static void install_sigbus(void) {
  struct sigaction sa;
  if (bus_installed) return;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = map_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGBUS, &sa, &old_bus) == 0) bus_installed = 1;
}

/* ---- the C API of shm.h */

Mapping *shm_tomapping(lua_State *L, int idx) {
  return (Mapping *)luaL_testudata(L, idx, SHM_MAPPING);
}

Mapping *shm_checkmapping(lua_State *L, int idx) {
  Mapping *m = (Mapping *)luaL_checkudata(L, idx, SHM_MAPPING);
  if (m->addr == NULL)
    luaL_argerror(L, idx, m->base != NULL
                  ? "mapping faulted (SIGBUS: past the end of its object)"
                  : "mapping is unmapped");
  return m;
}

static const char *prot_string(int prot, char buf[4]) {
  buf[0] = (prot & PROT_READ) ? 'r' : '-';
  buf[1] = (prot & PROT_WRITE) ? 'w' : '-';
  buf[2] = (prot & PROT_EXEC) ? 'x' : '-';
  buf[3] = '\0';
  return buf;
}

/*
 * The end of [off, off+len) for error messages, saturated at the largest
 * Lua integer: both come from Lua as non-negative integers, and their sum
 * may overflow (signed overflow is undefined; UBSan aborts on it).
 */
static lua_Integer range_end(size_t off, size_t len) {
  if (off > (size_t)LUA_MAXINTEGER || len > (size_t)LUA_MAXINTEGER - off)
    return LUA_MAXINTEGER;
  return (lua_Integer)(off + len);
}

void shm_checkaccess(lua_State *L, const Mapping *m, size_t off, size_t len,
                     int write) {
  char p[4];
  if (m->addr == NULL) luaL_error(L, "mapping is unmapped");
  if (off > m->size || len > m->size - off)
    luaL_error(L, "range [%I, %I) is outside the mapping of %I bytes",
               (lua_Integer)off, range_end(off, len), (lua_Integer)m->size);
  if (len == 0) return;
  if (write && !(m->prot & PROT_WRITE))
    luaL_error(L, "mapping is not writable (protection %s)",
               prot_string(m->prot, p));
  if (!write && !(m->prot & PROT_READ))
    luaL_error(L, "mapping is not readable (protection %s)",
               prot_string(m->prot, p));
}

void shm_checkfault(lua_State *L, const Mapping *m, const char *what) {
  if (m->addr == NULL)
    luaL_error(L, "%s: SIGBUS: the mapping reaches past the end of its object "
               "(shorter than the mapping, or truncated since); the mapping "
               "is now unusable", what);
}

Mapping *shm_findmapping(uintptr_t addr, size_t len) {
  Mapping *m;
  for (m = live_head; m != NULL; m = m->next) {
    uintptr_t a = (uintptr_t)m->addr;
    if (a != 0 && addr >= a && addr - a <= m->size && len <= m->size - (addr - a))
      return m;
  }
  return NULL;
}

void shm_pushmapping(lua_State *L, const Mapping *m) {
  if (m == NULL || m->addr == NULL) {
    lua_pushnil(L);
    return;
  }
  lua_getfield(L, LUA_REGISTRYINDEX, LIVE_TABLE);
  lua_rawgetp(L, -1, m);
  lua_remove(L, -2);
}

/* ---- lifetime */

/* Unmaps (if still mapped) and forgets `m`; safe to call any number of times. */
static void map_release(Mapping *m) {
  if (m->base != NULL) munmap(m->base, m->maplen);
  live_unlink(m);
  m->addr = m->base = NULL;
}

static Mapping *map_new(lua_State *L) {
  Mapping *m = (Mapping *)lua_newuserdatauv(L, sizeof(Mapping), 0);
  memset(m, 0, sizeof *m);
  luaL_setmetatable(L, SHM_MAPPING);
  return m;
}

/* Records a freshly mapped `m` (userdata on top) as live. */
static void map_register(lua_State *L, Mapping *m, void *p, size_t len,
                         int prot, int flags) {
  m->addr = m->base = (unsigned char *)p;
  m->size = len;
  m->maplen = page_round(len);
  m->prot = prot;
  m->flags = flags;
  live_link(m);
  lua_getfield(L, LUA_REGISTRYINDEX, LIVE_TABLE);
  lua_pushvalue(L, -2);
  lua_rawsetp(L, -2, m);
  lua_pop(L, 1);
}

/* The live mapping of ours holding address a, or NULL. */
static Mapping *own_at(uintptr_t a) {
  Mapping *m;
  for (m = live_head; m != NULL; m = m->next) {
    uintptr_t b = (uintptr_t)m->base;
    if (m->addr != NULL && a >= b && a < b + m->maplen) return m;
  }
  return NULL;
}

/* The lowest start of a live mapping of ours in (a, end), else end. */
static uintptr_t next_own(uintptr_t a, uintptr_t end) {
  Mapping *m;
  for (m = live_head; m != NULL; m = m->next) {
    uintptr_t b = (uintptr_t)m->base;
    if (m->addr != NULL && b > a && b < end) end = b;
  }
  return end;
}

/*
 * Claims the gaps of [a, a+len) (page-aligned) that none of our mappings
 * covers, each with a PROT_NONE placeholder mapped MAP_FIXED_NOREPLACE: it
 * fails if a gap holds anything (foreign memory).  Returns 1 when every gap
 * was free and is now claimed (the caller's MAP_FIXED replaces the
 * placeholders), else 0 with the placeholders it made removed again.
 * undo != 0 only removes the placeholders of a claim that succeeded.
 */
static int claim_gaps(uintptr_t a, size_t len, int undo) {
  uintptr_t x = a, end = a + len;
  while (x < end) {
    Mapping *m = own_at(x);
    uintptr_t gap_end;
    void *p;
    if (m != NULL) {
      x = (uintptr_t)m->base + m->maplen;
      continue;
    }
    gap_end = next_own(x, end);
    if (undo) {
      munmap((void *)x, gap_end - x);
    } else {
      p = mmap((void *)x, gap_end - x, PROT_NONE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
      if (p != (void *)x) {
        if (p != MAP_FAILED) munmap(p, gap_end - x); /* taken as a hint */
        if (x > a) claim_gaps(a, x - a, 1);
        return 0;
      }
    }
    x = gap_end;
  }
  return 1;
}

/*
 * The fixed mapping at [a, a+len) replaced some of our mappings: they become
 * dead objects, and whatever part of them lay outside the new range is
 * unmapped so that nothing leaks.
 */
static void invalidate_overlapping(uintptr_t a, size_t len, const Mapping *keep) {
  Mapping *m, *next;
  uintptr_t end = a + len;
  for (m = live_head; m != NULL; m = next) {
    uintptr_t b = (uintptr_t)m->base, e = b + m->maplen;
    next = m->next;
    if (m == keep || b == 0 || e <= a || b >= end) continue;
    if (b < a) munmap((void *)b, a - b);
    if (e > end) munmap((void *)end, e - end);
    m->base = m->addr = NULL;
    live_unlink(m);
  }
}

/*
 * mmap with MAP_FIXED that cannot replace foreign memory: first
 * MAP_FIXED_NOREPLACE; if the range is taken, and every page of it is
 * either one of our own mappings or free (claimed by claim_gaps), replace
 * them (MAP_FIXED; the caller invalidates the replaced objects);
 * otherwise fail with EEXIST, having changed nothing.
 */
static void *mmap_fixed(void *addr, size_t len, int prot, int flags, int fd,
                        off_t off) {
  int base = flags & ~MAP_FIXED;
  void *p = mmap(addr, len, prot, base | MAP_FIXED_NOREPLACE, fd, off);
  if (p != MAP_FAILED && p != addr) { /* a kernel that took it as a hint */
    munmap(p, len);
    errno = EEXIST;
    return MAP_FAILED;
  }
  if (p != MAP_FAILED || errno != EEXIST) return p;
  if (!claim_gaps((uintptr_t)addr, page_round(len), 0)) {
    errno = EEXIST;
    return MAP_FAILED;
  }
  p = mmap(addr, len, prot, base | MAP_FIXED, fd, off);
  if (p == MAP_FAILED) { /* bad fd, offset...: give the gaps back */
    int e = errno;
    claim_gaps((uintptr_t)addr, page_round(len), 1);
    errno = e;
  }
  return p;
}

/*
 * shm.mmap(addr, length, prot, flags [, fd [, offset]]) -> mapping
 * addr: nil/0, or an address (integer, mapping, view, pointer): a hint, or
 * exact with MAP_FIXED / MAP_FIXED_NOREPLACE.  fd defaults to -1 (for
 * MAP_ANONYMOUS), offset to 0.  Fails with the io triple.
 */
static int map_mmap(lua_State *L) {
  uintptr_t addr = 0;
  size_t len;
  int prot, flags, fd, e;
  lua_Integer off;
  void *p;
  char argbuf[64];
  Mapping *m;

  if (!lua_isnoneornil(L, 1) && !shm_toaddress(L, 1, &addr))
    luaL_typeerror(L, 1, "address (integer, mapping, view or pointer) or nil");
  len = shm_checksize(L, 2);
  luaL_argcheck(L, len > 0, 2, "length must be positive");
  luaL_argcheck(L, len <= (size_t)PTRDIFF_MAX - page_size, 2, "length too large");
  prot = shm_checkint(L, 3);
  flags = shm_checkint(L, 4);
  fd = lua_isnoneornil(L, 5) ? -1 : shm_checkint(L, 5);
  off = luaL_optinteger(L, 6, 0);
  luaL_argcheck(L, off >= 0, 6, "offset must be non-negative");
  if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE))
    luaL_argcheck(L, addr != 0, 1, "MAP_FIXED needs an address");

  m = map_new(L);
  if ((flags & MAP_FIXED) && !(flags & MAP_FIXED_NOREPLACE))
    p = mmap_fixed((void *)addr, len, prot, flags, fd, (off_t)off);
  else
    p = mmap((void *)addr, len, prot, flags, fd, (off_t)off);
  if (p == MAP_FAILED) {
    e = errno;
    snprintf(argbuf, sizeof argbuf, "0x%" PRIxPTR ", %zu", addr, len);
    return shm_fail(L, "mmap", argbuf, e);
  }
  if (flags & MAP_FIXED) invalidate_overlapping((uintptr_t)p, page_round(len), NULL);
  map_register(L, m, p, len, prot, flags);
  return 1;
}

/* m:unmap() / shm.munmap(m): true; raises if already unmapped. */
static int map_unmap(lua_State *L) {
  Mapping *m = (Mapping *)luaL_checkudata(L, 1, SHM_MAPPING);
  if (m->base == NULL) luaL_argerror(L, 1, "mapping is unmapped");
  map_release(m);  /* a faulted mapping (addr NULL, base kept) too */
  lua_pushboolean(L, 1);
  return 1;
}

static int map_gc(lua_State *L) {
  map_release((Mapping *)luaL_checkudata(L, 1, SHM_MAPPING));
  return 0;
}

/* An optional (offset, length) sub-range at idx, idx+1, page-aligned by the
 * caller's choice (the kernel reports EINVAL otherwise); default: all. */
static void opt_range(lua_State *L, Mapping *m, int idx, size_t *off,
                      size_t *len) {
  *off = shm_optsize(L, idx, 0);
  *len = shm_optsize(L, idx + 1, m->size - (*off <= m->size ? *off : m->size));
  if (*off > m->size || *len > m->size - *off)
    luaL_error(L, "range [%I, %I) is outside the mapping of %I bytes",
               (lua_Integer)*off, range_end(*off, *len), (lua_Integer)m->size);
}

/* The failure triple of `call` on [p, p + len), saying which range:
 * "call(0xADDRESS, LENGTH): ENAME: text", as mmap's. */
static int range_fail(lua_State *L, const char *call, const void *p, size_t len,
                      int err) {
  char arg[64];
  snprintf(arg, sizeof arg, "0x%" PRIxPTR ", %zu", (uintptr_t)p, len);
  return shm_fail(L, call, arg, err);
}

static int map_mprotect(lua_State *L) {
  Mapping *m = shm_checkmapping(L, 1);
  int prot = shm_checkint(L, 2);
  if (mprotect(m->base, m->maplen, prot) != 0)
    return range_fail(L, "mprotect", m->base, m->maplen, errno);
  m->prot = prot;
  lua_pushboolean(L, 1);
  return 1;
}

static int map_msync(lua_State *L) {
  Mapping *m = shm_checkmapping(L, 1);
  int flags = shm_optint(L, 2, MS_SYNC);
  size_t off, len;
  opt_range(L, m, 3, &off, &len);
  if (msync(m->addr + off, len, flags) != 0)
    return range_fail(L, "msync", m->addr + off, len, errno);
  lua_pushboolean(L, 1);
  return 1;
}

static int map_madvise(lua_State *L) {
  Mapping *m = shm_checkmapping(L, 1);
  int advice = shm_checkint(L, 2);
  size_t off, len;
  /* advice that damages memory for good is not for scripts */
  luaL_argcheck(L, advice != MADV_HWPOISON && advice != MADV_SOFT_OFFLINE, 2,
                "MADV_HWPOISON and MADV_SOFT_OFFLINE are not allowed");
  opt_range(L, m, 3, &off, &len);
  if (madvise(m->addr + off, len, advice) != 0)
    return range_fail(L, "madvise", m->addr + off, len, errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* m:mlock / m:munlock ([off, len]): fn on the range, named `call`. */
static int lock_range(lua_State *L, int (*fn)(const void *, size_t),
                      const char *call) {
  Mapping *m = shm_checkmapping(L, 1);
  size_t off, len;
  opt_range(L, m, 2, &off, &len);
  if (fn(m->addr + off, len) != 0)
    return range_fail(L, call, m->addr + off, len, errno);
  lua_pushboolean(L, 1);
  return 1;
}

static int map_mlock(lua_State *L) { return lock_range(L, mlock, "mlock"); }
static int map_munlock(lua_State *L) { return lock_range(L, munlock, "munlock"); }

static int map_mlockall(lua_State *L) {
  if (mlockall(shm_checkint(L, 1)) != 0)
    return shm_fail(L, "mlockall", NULL, errno);
  lua_pushboolean(L, 1);
  return 1;
}

static int map_munlockall(lua_State *L) {
  if (munlockall() != 0) return shm_fail(L, "munlockall", NULL, errno);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- methods */

static int map_addr(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)(uintptr_t)shm_checkmapping(L, 1)->addr);
  return 1;
}

static int map_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)shm_checkmapping(L, 1)->size);
  return 1;
}

/* m:read(off [, len]) -> string: len bytes (default: to the end). */
static int map_read(lua_State *L) {
  Mapping *m = shm_checkmapping(L, 1);
  size_t off = shm_checksize(L, 2);
  size_t len = shm_optsize(L, 3, off <= m->size ? m->size - off : 0);
  shm_checkaccess(L, m, off, len, 0);
  lua_pushlstring(L, (const char *)m->addr + off, len);
  shm_checkfault(L, m, "read");
  return 1;
}

/* m:write(off, str) -> true: copies all of str to offset off. */
static int map_write(lua_State *L) {
  Mapping *m = shm_checkmapping(L, 1);
  size_t off = shm_checksize(L, 2), len;
  const char *s = luaL_checklstring(L, 3, &len);
  unsigned char *dst;
  shm_checkaccess(L, m, off, len, 1);
  dst = m->addr + off;
  memcpy(dst, s, len);
  shm_checkfault(L, m, "write");
  lua_pushboolean(L, 1);
  return 1;
}

/* m:fill(off, len [, byte]) -> true: memset, byte defaults to 0. */
static int map_fill(lua_State *L) {
  Mapping *m = shm_checkmapping(L, 1);
  size_t off = shm_checksize(L, 2), len = shm_checksize(L, 3);
  lua_Integer b = luaL_optinteger(L, 4, 0);
  unsigned char *dst;
  luaL_argcheck(L, b >= 0 && b <= 255, 4, "byte expected (0..255)");
  shm_checkaccess(L, m, off, len, 1);
  dst = m->addr + off;
  memset(dst, (int)b, len);
  shm_checkfault(L, m, "fill");
  lua_pushboolean(L, 1);
  return 1;
}

/* m:ptr([off]) -> integer address of byte off (off may equal the size). */
static int map_ptr(lua_State *L) {
  Mapping *m = shm_checkmapping(L, 1);
  size_t off = shm_optsize(L, 2, 0);
  luaL_argcheck(L, off <= m->size, 2, "offset outside the mapping");
  lua_pushinteger(L, (lua_Integer)(uintptr_t)(m->addr + off));
  return 1;
}

static int map_len(lua_State *L) {
  return map_size(L);
}

static int map_tostring(lua_State *L) {
  Mapping *m = (Mapping *)luaL_checkudata(L, 1, SHM_MAPPING);
  char p[4];
  if (m->addr == NULL)
    lua_pushstring(L, m->base != NULL ? "shm.mapping (faulted: SIGBUS)"
                                      : "shm.mapping (unmapped)");
  else
    lua_pushfstring(L, "shm.mapping: %p, %I bytes, %s, %s", (void *)m->addr,
                    (lua_Integer)m->size, prot_string(m->prot, p),
                    (m->flags & MAP_SHARED) ? "shared" : "private");
  return 1;
}

static const luaL_Reg map_methods[] = {
  {"addr", map_addr},   {"size", map_size},   {"read", map_read},
  {"write", map_write}, {"fill", map_fill},   {"ptr", map_ptr},
  {"unmap", map_unmap}, {NULL, NULL}
};

static const luaL_Reg map_meta[] = {
  {"__gc", map_gc},   {"__close", map_gc}, {"__len", map_len},
  {"__tostring", map_tostring}, {"__index", NULL}, {"__name", NULL},
  {NULL, NULL}
};

static const luaL_Reg map_funcs[] = {
  {"mmap", map_mmap},         {"munmap", map_unmap},
  {"mprotect", map_mprotect}, {"msync", map_msync},
  {"madvise", map_madvise},   {"mlock", map_mlock},
  {"munlock", map_munlock},   {"mlockall", map_mlockall},
  {"munlockall", map_munlockall}, {NULL, NULL}
};

#define C(x) {#x, x}
static const ShmConst map_consts[] = {
  C(PROT_NONE), C(PROT_READ), C(PROT_WRITE), C(PROT_EXEC),
  C(MAP_SHARED), C(MAP_PRIVATE), C(MAP_SHARED_VALIDATE), C(MAP_FIXED),
  C(MAP_FIXED_NOREPLACE), C(MAP_ANONYMOUS), C(MAP_ANON), C(MAP_NORESERVE),
  C(MAP_POPULATE), C(MAP_LOCKED), C(MAP_HUGETLB), C(MAP_GROWSDOWN),
  C(MAP_NONBLOCK), C(MAP_STACK), C(MAP_SYNC),
  C(MS_ASYNC), C(MS_SYNC), C(MS_INVALIDATE),
  C(MADV_NORMAL), C(MADV_RANDOM), C(MADV_SEQUENTIAL), C(MADV_WILLNEED),
  C(MADV_DONTNEED), C(MADV_FREE), C(MADV_REMOVE), C(MADV_DONTFORK),
  C(MADV_DOFORK), C(MADV_MERGEABLE), C(MADV_UNMERGEABLE), C(MADV_HUGEPAGE),
  C(MADV_NOHUGEPAGE), C(MADV_DONTDUMP), C(MADV_DODUMP), C(MADV_WIPEONFORK),
  C(MADV_KEEPONFORK), C(MADV_COLD), C(MADV_PAGEOUT),
  C(MCL_CURRENT), C(MCL_FUTURE), C(MCL_ONFAULT),
  {NULL, 0}
};
#undef C

void shm_map_open(lua_State *L) {
  if (page_size == 0) page_size = (size_t)sysconf(_SC_PAGESIZE);
  install_sigbus();
  /* weak-valued table of live mappings, for shm_pushmapping */
  if (luaL_getsubtable(L, LUA_REGISTRYINDEX, LIVE_TABLE) == 0) {
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, SHM_MAPPING)) {
    luaL_setfuncs(L, map_meta, 0);
    luaL_newlib(L, map_methods);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, SHM_MAPPING);
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
  luaL_setfuncs(L, map_funcs, 0);
  shm_setconsts(L, -1, map_consts);
}
