/* mapping.c: placeholder until the subsystem lands. */
#include "shm.h"

void shm_map_open(lua_State *L) { (void)L; }

Mapping *shm_tomapping(lua_State *L, int idx) { return luaL_testudata(L, idx, SHM_MAPPING); }
Mapping *shm_checkmapping(lua_State *L, int idx) { return luaL_checkudata(L, idx, SHM_MAPPING); }
void shm_checkaccess(lua_State *L, const Mapping *m, size_t off, size_t len, int write) { (void)L; (void)m; (void)off; (void)len; (void)write; }
Mapping *shm_findmapping(uintptr_t addr, size_t len) { (void)addr; (void)len; return NULL; }
void shm_checkfault(lua_State *L, const Mapping *m, const char *what) { (void)L; (void)m; (void)what; }
