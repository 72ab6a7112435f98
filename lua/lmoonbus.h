/* lmoonbus.h - the Lua binding's shared pieces (lua/ only). */
#ifndef MB_LMOONBUS_H
#define MB_LMOONBUS_H

#include <lauxlib.h>
#include <lua.h>

#include "mb.h"

/* [control] Open the C half of the library: require "moonbus.core". */
int luaopen_moonbus_core(lua_State *L);

/* The `lua` module: a Lua function processing blocks (offline only). Its
 * host object, handed to create() through mb_config.host. */
typedef struct lua_host {
  lua_State *L;      /* state of the render that runs it */
  int fn;            /* registry ref of the process function */
  int block;         /* registry ref of the block userdata, or LUA_NOREF */
  char *err;         /* first error raised by the function, malloc'd */
  volatile int *stop; /* set when the function fails: stops the render */
  const char *name;  /* node name for messages */
} lua_host;

extern const mb_module_desc mb_mod_lua;

/* [control] Call the function below nargs arguments on L's stack; on an
 * error return "chunk:line: <what>: message" (malloc'd), else NULL. */
char *mb_lua_call(lua_State *L, int nargs, const char *what);

/* [control] Nearest candidate to `word` (edit distance <= 2 + len/4), or
 * NULL: for "did you mean" hints. */
const char *mb_suggest(const char *word, const char *const *candidates,
                       int n);

/* [control] core.analyse(path [, opts]): the QC analysis of a file
 * (lua/lanalyse.c). */
int mb_lua_analyse(lua_State *L);

/* [control] Operating-system helpers for the batch runner (lua/lsys.c):
 * fork, wait, stat, listdir, hashes, atomic writes. NULL-terminated. */
extern const luaL_Reg mb_lua_sys[];

#endif
