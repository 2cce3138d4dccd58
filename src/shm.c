/*
 * shm.c: luaopen_shm, the one exported symbol of the module, and the small
 * argument helpers every subsystem uses.
 */
#include <limits.h>
#include <stdint.h>

#include "shm.h"

void shm_setconsts(lua_State *L, int t, const ShmConst *c) {
  t = lua_absindex(L, t);
  for (; c->name != NULL; c++) {
    lua_pushinteger(L, c->value);
    lua_setfield(L, t, c->name);
  }
}

size_t shm_checksize(lua_State *L, int arg) {
  lua_Integer n = luaL_checkinteger(L, arg);
  luaL_argcheck(L, n >= 0, arg, "size must be non-negative");
  return (size_t)n;
}

size_t shm_optsize(lua_State *L, int arg, size_t def) {
  return lua_isnoneornil(L, arg) ? def : shm_checksize(L, arg);
}

int shm_checkint(lua_State *L, int arg) {
  lua_Integer n = luaL_checkinteger(L, arg);
  luaL_argcheck(L, n >= INT_MIN && n <= INT_MAX, arg, "out of range for a C int");
  return (int)n;
}

int shm_optint(lua_State *L, int arg, int def) {
  return lua_isnoneornil(L, arg) ? def : shm_checkint(L, arg);
}

int shm_checkfd(lua_State *L, int arg) {
  lua_Integer n = luaL_checkinteger(L, arg);
  luaL_argcheck(L, n >= 0 && n <= INT_MAX, arg, "not a file descriptor");
  return (int)n;
}

/* require "shm": a fresh table with every subsystem's functions. */
SHM_EXPORT int luaopen_shm(lua_State *L);
SHM_EXPORT int luaopen_shm(lua_State *L) {
  lua_newtable(L);
  lua_pushliteral(L, SHM_VERSION);
  lua_setfield(L, -2, "_VERSION");
  shm_errno_open(L);
  shm_fd_open(L);
  shm_map_open(L);
  shm_view_open(L);
  shm_atomic_open(L);
  shm_proc_open(L);
  shm_channel_open(L);
  shm_lua_open(L);
  return 1;
}
