/* lsys.c - operating-system helpers for the batch runner. */
#include "lmoonbus.h"

const luaL_Reg mb_lua_sys[] = {{NULL, NULL}};
