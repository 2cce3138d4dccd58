/*
 * noop.c: the floors of a metamethod design, for bench/view_bench.lua.
 * A Lua C module; luaopen_noop returns two constructors:
 *   noop()   a userdata whose __index pushes 0 without looking at anything
 *            and whose __newindex does nothing: the floor of any design;
 *   floor()  a userdata whose metamethods make only the Lua API calls a
 *            safe view must make (lua_touserdata, lua_rawlen to check it,
 *            lua_tolstring for the key, lua_tointegerx or a push for the
 *            value) and nothing else: the floor of view.c's design.
 * Built by view_bench.lua into BUILD/noop.so.
 */
#include "lua.h"
#include "lauxlib.h"

#define FLOOR_SIZE 48

static int noop_index(lua_State *L) {
  lua_pushinteger(L, 0);
  return 1;
}

static int noop_newindex(lua_State *L) {
  (void)L;
  return 0;
}

static int floor_index(lua_State *L) {
  void *p = lua_touserdata(L, 1);
  const char *k;
  if (p == NULL || lua_rawlen(L, 1) != FLOOR_SIZE) return 0;
  k = lua_tolstring(L, 2, NULL);
  lua_pushinteger(L, k != NULL);
  return 1;
}

static int floor_newindex(lua_State *L) {
  void *p = lua_touserdata(L, 1);
  const char *k;
  lua_Integer n;
  int ok;
  if (p == NULL || lua_rawlen(L, 1) != FLOOR_SIZE) return 0;
  k = lua_tolstring(L, 2, NULL);
  n = lua_tointegerx(L, 3, &ok);
  *(lua_Integer *)p = n + (k != NULL) + ok;
  return 0;
}

static int new_of(lua_State *L, const char *mt) {
  lua_newuserdatauv(L, FLOOR_SIZE, 1);
  luaL_setmetatable(L, mt);
  return 1;
}

static int noop_new(lua_State *L) { return new_of(L, "bench.noop"); }
static int floor_new(lua_State *L) { return new_of(L, "bench.floor"); }

static void meta(lua_State *L, const char *name, lua_CFunction index,
                 lua_CFunction newindex) {
  if (luaL_newmetatable(L, name)) {
    lua_pushcfunction(L, index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, newindex);
    lua_setfield(L, -2, "__newindex");
  }
  lua_pop(L, 1);
}

int luaopen_noop(lua_State *L);
int luaopen_noop(lua_State *L) {
  meta(L, "bench.noop", noop_index, noop_newindex);
  meta(L, "bench.floor", floor_index, floor_newindex);
  lua_pushcfunction(L, noop_new);
  lua_pushcfunction(L, floor_new);
  return 2;
}
