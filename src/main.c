/* main.c: temporary host; replaced by the real one. */
#include <stdio.h>
#include "lualib.h"
#include "shm.h"
int luaopen_shm(lua_State *L);
int main(int argc, char **argv) {
  lua_State *L = luaL_newstate();
  int i;
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_shm);
  lua_setfield(L, -2, "shm");
  lua_pop(L, 1);
  lua_createtable(L, argc, 0);
  for (i = 0; i < argc; i++) { lua_pushstring(L, argv[i]); lua_rawseti(L, -2, i - 1); }
  lua_setglobal(L, "arg");
  if (argc > 2 && argv[1][0] == '-' && argv[1][1] == 'e') {
    if (luaL_dostring(L, argv[2])) { fprintf(stderr, "shmlua: %s\n", lua_tostring(L, -1)); return 1; }
  } else if (argc > 1 && luaL_dofile(L, argv[1])) { fprintf(stderr, "shmlua: %s\n", lua_tostring(L, -1)); return 1; }
  lua_close(L);
  return 0;
}
