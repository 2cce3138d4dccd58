/* errno.c: placeholder until the subsystem lands. */
#include "shm.h"

void shm_errno_open(lua_State *L) { (void)L; }

int shm_fail(lua_State *L, const char *call, const char *arg, int err) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s(%s): E%d", call, arg ? arg : "", err);
  lua_pushinteger(L, err);
  return 3;
}

const char *shm_errno_name(int err) { (void)err; return NULL; }
