/*
 * noop.c: the floor of any metamethod design, for bench/view_bench.lua.
 * A Lua C module: require "noop" returns a function that makes a userdata
 * whose __index pushes 0 without looking at anything and whose __newindex
 * does nothing.  Built by view_bench.lua into BUILD/noop.so with the
 * module's own compiler flags.
 */
#include "lua.h"
#include "lauxlib.h"

static int noop_index(lua_State *L) {
  lua_pushinteger(L, 0);
  return 1;
}

static int noop_newindex(lua_State *L) {
  (void)L;
  return 0;
}

static int noop_new(lua_State *L) {
  lua_newuserdatauv(L, 64, 0);
  luaL_setmetatable(L, "bench.noop");
  return 1;
}

int luaopen_noop(lua_State *L);
int luaopen_noop(lua_State *L) {
  if (luaL_newmetatable(L, "bench.noop")) {
    lua_pushcfunction(L, noop_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, noop_newindex);
    lua_setfield(L, -2, "__newindex");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, noop_new);
  return 1;
}
