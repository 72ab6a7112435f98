/* lanalyse.c - core.analyse: placeholder until the QC analyser lands. */
#include "lmoonbus.h"

int mb_lua_analyse(lua_State *L) {
  return luaL_error(L, "analyse: not available yet");
}
