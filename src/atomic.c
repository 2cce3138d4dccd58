/* atomic.c: placeholder until the subsystem lands. */
#include "shm.h"

void shm_atomic_open(lua_State *L) { (void)L; }
