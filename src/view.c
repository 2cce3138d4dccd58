/* view.c: placeholder until the subsystem lands. */
#include "shm.h"

void shm_view_open(lua_State *L) { (void)L; }

int shm_toaddress(lua_State *L, int idx, uintptr_t *out) {
  Mapping *m;
  if (lua_isinteger(L, idx)) {
    *out = (uintptr_t)lua_tointeger(L, idx);
    return 1;
  }
  if ((m = shm_tomapping(L, idx)) != NULL) {
    *out = (uintptr_t)m->addr;
    return 1;
  }
  return 0;
}
