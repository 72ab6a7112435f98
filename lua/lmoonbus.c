/* lmoonbus.c - moonbus.core: graphs and nodes as Lua objects.
 *
 * A graph is a full userdata owning the mb_graph; its user value is a table
 * holding the node objects, the control callbacks and the hosts of `lua`
 * nodes. A node is a full userdata (graph, index) whose user value is its
 * graph, so a node keeps its graph alive and collection order can never
 * leave a node pointing at freed memory. After g:close() every call on the
 * graph or its nodes raises "graph is closed".
 *
 * Errors raised here carry no position: `moonbus run` adds the position of
 * the user's script line that led to them (see main.c). */
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "lmoonbus.h"

#define GRAPH_MT "moonbus.graph"
#define NODE_MT "moonbus.node"

/* user value slots of a graph */
enum { UV_NODES = 1, UV_TIMERS, UV_HOSTS };

typedef struct timer {
  double interval; /* seconds */
  int64_t k;       /* next firing: frame round(k * interval * rate) */
  int fn;          /* index into the timers table */
} timer;

typedef struct lgraph {
  mb_graph *g;
  lua_State *L; /* during render */
  timer *timers;
  int n_timers;
  lua_host **hosts; /* `lua` nodes */
  int n_hosts;
  volatile int stop; /* set by a failing `lua` node or SIGINT */
  char *cb_err;      /* error from a control callback */
  int progress;      /* draw a progress bar */
  double t0, last_draw;
} lgraph;

typedef struct lnode {
  lgraph *lg;
  int index;
} lnode;

/* ---- errors ------------------------------------------------------------- */

/* Raise `fmt` as an error without position information. */
static int fail(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return lua_error(L);
}

static int edit_distance(const char *a, const char *b) {
  int la = (int)strlen(a), lb = (int)strlen(b);
  if (la > 63 || lb > 63) return 99;
  int prev[64], cur[64];
  for (int j = 0; j <= lb; j++) prev[j] = j;
  for (int i = 1; i <= la; i++) {
    cur[0] = i;
    for (int j = 1; j <= lb; j++) {
      int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
      int del = prev[j] + 1, ins = cur[j - 1] + 1;
      cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
    }
    memcpy(prev, cur, sizeof(int) * (lb + 1));
  }
  return prev[lb];
}

const char *mb_suggest(const char *word, const char *const *cand, int n) {
  const char *best = NULL;
  int bd = 2 + (int)strlen(word) / 4;
  for (int i = 0; i < n; i++) {
    int d = edit_distance(word, cand[i]);
    if (d < bd || (d == bd && !best)) {
      if (d <= bd) {
        bd = d;
        best = cand[i];
      }
    }
  }
  return best;
}

/* ", did you mean 'x'?" or "" */
static const char *hint(lua_State *L, const char *word,
                        const char *const *cand, int n) {
  const char *s = mb_suggest(word, cand, n);
  if (!s) return "";
  return lua_pushfstring(L, "; did you mean '%s'?", s);
}

/* ---- modules ------------------------------------------------------------ */

static const mb_module_desc *find_module(const char *id) {
  if (strcmp(id, mb_mod_lua.id) == 0) return &mb_mod_lua;
  return mb_module_find(id);
}

static int module_ids(const char **ids, int max) {
  int n = 0;
  for (int i = 0; mb_modules[i] && n < max - 1; i++) ids[n++] = mb_modules[i]->id;
  ids[n++] = mb_mod_lua.id;
  return n;
}

static const char *type_name(mb_param_type t) {
  switch (t) {
  case MB_PARAM_NUMBER: return "number";
  case MB_PARAM_INT: return "integer";
  case MB_PARAM_BOOL: return "boolean";
  case MB_PARAM_ENUM: return "choice";
  default: return "string";
  }
}

/* Push a description of one parameter. */
static void push_param_info(lua_State *L, const mb_param_desc *p) {
  lua_createtable(L, 0, 10);
  lua_pushstring(L, p->id);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, type_name(p->type));
  lua_setfield(L, -2, "type");
  lua_pushstring(L, p->unit ? p->unit : "");
  lua_setfield(L, -2, "unit");
  lua_pushstring(L, p->help ? p->help : "");
  lua_setfield(L, -2, "help");
  if (p->type == MB_PARAM_NUMBER || p->type == MB_PARAM_INT) {
    lua_pushnumber(L, p->min);
    lua_setfield(L, -2, "min");
    lua_pushnumber(L, p->max);
    lua_setfield(L, -2, "max");
    if (p->type == MB_PARAM_INT) lua_pushinteger(L, (lua_Integer)p->def);
    else lua_pushnumber(L, p->def);
    lua_setfield(L, -2, "default");
    lua_pushstring(L, p->scale == MB_SCALE_LOG ? "log" : "linear");
    lua_setfield(L, -2, "scale");
  } else if (p->type == MB_PARAM_BOOL) {
    lua_pushboolean(L, p->def != 0);
    lua_setfield(L, -2, "default");
  } else if (p->type == MB_PARAM_ENUM) {
    lua_newtable(L);
    for (int i = 0; p->choices && p->choices[i]; i++) {
      lua_pushstring(L, p->choices[i]);
      lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "choices");
    lua_pushstring(L, p->choices[(int)p->def]);
    lua_setfield(L, -2, "default");
  }
  lua_pushboolean(L, (p->flags & MB_PARAM_SMOOTH) != 0);
  lua_setfield(L, -2, "smoothed");
  lua_pushboolean(L, !(p->flags & MB_PARAM_STRUCTURAL) &&
                         p->type != MB_PARAM_STRING);
  lua_setfield(L, -2, "automatable");
}

static void push_module_info(lua_State *L, const mb_module_desc *m) {
  lua_createtable(L, 0, 8);
  lua_pushstring(L, m->id);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, m->summary);
  lua_setfield(L, -2, "summary");
  lua_pushstring(L, m->doc);
  lua_setfield(L, -2, "doc");
  lua_newtable(L);
  for (int i = 0; i < m->n_inputs; i++) {
    lua_pushstring(L, m->inputs[i].name);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "inputs");
  lua_pushboolean(L, m->has_output);
  lua_setfield(L, -2, "output");
  lua_pushboolean(L, (m->flags & MB_MODULE_OFFLINE_ONLY) != 0);
  lua_setfield(L, -2, "offline_only");
  if (m->list_option) {
    lua_pushstring(L, m->list_option);
    lua_setfield(L, -2, "list_option");
    lua_pushinteger(L, m->list_max);
    lua_setfield(L, -2, "list_max");
  }
  lua_createtable(L, m->n_params, 0);
  for (int i = 0; i < m->n_params; i++) {
    push_param_info(L, &m->params[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "params");
}

/* core.modules() -> list of module descriptions */
static int l_modules(lua_State *L) {
  const char *ids[128];
  int n = module_ids(ids, 128);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    push_module_info(L, find_module(ids[i]));
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* ---- graph -------------------------------------------------------------- */

static lgraph *check_graph(lua_State *L, int idx) {
  lgraph *lg = luaL_checkudata(L, idx, GRAPH_MT);
  if (!lg->g) fail(L, "graph is closed");
  return lg;
}

static lnode *check_node(lua_State *L, int idx) {
  lnode *n = luaL_testudata(L, idx, NODE_MT);
  if (!n)
    fail(L, "expected a node (from g:add), got %s", luaL_typename(L, idx));
  if (!n->lg->g) fail(L, "graph is closed");
  if (mb_node_removed(n->lg->g, n->index))
    fail(L, "node %s was removed", mb_node_name(n->lg->g, n->index));
  return n;
}

static void free_hosts(lua_State *L, lgraph *lg) {
  for (int i = 0; i < lg->n_hosts; i++) {
    lua_host *h = lg->hosts[i];
    if (L) {
      luaL_unref(L, LUA_REGISTRYINDEX, h->fn);
      luaL_unref(L, LUA_REGISTRYINDEX, h->block);
    }
    free(h->err);
    free(h);
  }
  free(lg->hosts);
  lg->hosts = NULL;
  lg->n_hosts = 0;
}

static int graph_close(lua_State *L) {
  lgraph *lg = luaL_checkudata(L, 1, GRAPH_MT);
  if (lg->g && (mb_graph_rendering(lg->g) || mb_graph_playing(lg->g)))
    return fail(L, "cannot close a graph while it %s",
                mb_graph_playing(lg->g) ? "plays" : "renders");
  mb_graph_free(lg->g);
  lg->g = NULL;
  free_hosts(L, lg);
  free(lg->timers);
  lg->timers = NULL;
  lg->n_timers = 0;
  free(lg->cb_err);
  lg->cb_err = NULL;
  return 0;
}

static int graph_tostring(lua_State *L) {
  lgraph *lg = luaL_checkudata(L, 1, GRAPH_MT);
  if (!lg->g) lua_pushstring(L, "moonbus graph (closed)");
  else
    lua_pushfstring(L, "moonbus graph (%d nodes, %d Hz, block %d)",
                    mb_graph_count(lg->g), (int)mb_graph_rate(lg->g),
                    mb_graph_block(lg->g));
  return 1;
}

/* core.graph(rate, block) */
static int l_graph(lua_State *L) {
  lua_Number rate = luaL_optnumber(L, 1, 0);
  lua_Integer block = luaL_optinteger(L, 2, 0);
  if (rate != 0 && (rate < 1000 || rate > 768000))
    return fail(L, "graph: rate = %f Hz is out of range (1000 .. 768000 Hz)",
                (double)rate);
  if (block != 0 && (block < 16 || block > 65536))
    return fail(L, "graph: block = %d frames is out of range (16 .. 65536)",
                (int)block);
  lgraph *lg = lua_newuserdatauv(L, sizeof *lg, 3);
  memset(lg, 0, sizeof *lg);
  luaL_setmetatable(L, GRAPH_MT);
  for (int uv = UV_NODES; uv <= UV_HOSTS; uv++) {
    lua_newtable(L);
    lua_setiuservalue(L, -2, uv);
  }
  mb_status st;
  lg->g = mb_graph_new(rate, (int)block, &st);
  if (!lg->g) return fail(L, "graph: cannot create (status %d)", st);
  return 1;
}

/* Set one parameter from the Lua value at stack index vi. */
static void set_param(lua_State *L, lgraph *lg, int node, int p, int vi) {
  mb_graph *g = lg->g;
  const mb_module_desc *m = mb_node_module(g, node);
  const mb_param_desc *d = &m->params[p];
  const char *nn = mb_node_name(g, node);
  mb_status st = MB_OK;
  int t = lua_type(L, vi);
  switch (d->type) {
  case MB_PARAM_STRING:
    if (t != LUA_TSTRING)
      fail(L, "%s: %s must be a string, got %s", nn, d->id,
           luaL_typename(L, vi));
    st = mb_node_set_string(g, node, p, lua_tostring(L, vi));
    break;
  case MB_PARAM_BOOL:
    if (t != LUA_TBOOLEAN)
      fail(L, "%s: %s must be true or false, got %s", nn, d->id,
           luaL_typename(L, vi));
    st = mb_node_set(g, node, p, lua_toboolean(L, vi));
    break;
  case MB_PARAM_ENUM: {
    const char *s = t == LUA_TSTRING || t == LUA_TNUMBER ? lua_tostring(L, vi)
                                                         : NULL;
    int n = 0, found = -1;
    while (d->choices[n]) {
      if (s && strcmp(s, d->choices[n]) == 0) found = n;
      n++;
    }
    if (found < 0) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (int i = 0; i < n; i++) {
        if (i) luaL_addstring(&b, ", ");
        luaL_addchar(&b, '"');
        luaL_addstring(&b, d->choices[i]);
        luaL_addchar(&b, '"');
      }
      luaL_pushresult(&b);
      const char *choices = lua_tostring(L, -1); /* stays on the stack */
      if (!s)
        fail(L, "%s: %s must be one of %s, got %s", nn, d->id, choices,
             luaL_typename(L, vi));
      const char *h = hint(L, s, d->choices, n);
      fail(L, "%s: %s = \"%s\" is not one of %s%s", nn, d->id, s, choices,
           h);
    }
    st = mb_node_set(g, node, p, found);
    break;
  }
  default:
    if (t != LUA_TNUMBER)
      fail(L, "%s: %s must be a number%s%s, got %s", nn, d->id,
           d->unit && *d->unit ? " in " : "", d->unit ? d->unit : "",
           luaL_typename(L, vi));
    st = mb_node_set(g, node, p, lua_tonumber(L, vi));
  }
  if (st) fail(L, "%s", mb_graph_error(g));
}

/* Raise "unknown parameter" with a suggestion. */
static int unknown_key(lua_State *L, const char *what, const char *nn,
                       const mb_module_desc *m, const char *key,
                       const char *const *extra, int n_extra) {
  const char *cand[1100];
  int n = 0;
  for (int i = 0; i < m->n_params && n < 1000; i++) cand[n++] = m->params[i].id;
  for (int i = 0; i < n_extra; i++) cand[n++] = extra[i];
  if (m->list_option) cand[n++] = m->list_option;
  return fail(L, "unknown %s '%s' for %s%s", what, key, nn,
              hint(L, key, cand, n));
}

/* opts.bands = { {type=..., freq=...}, ... } -> type1, freq1, ... */
static void set_list_option(lua_State *L, lgraph *lg, int node, int ti) {
  const mb_module_desc *m = mb_node_module(lg->g, node);
  const char *nn = mb_node_name(lg->g, node);
  if (!lua_istable(L, ti))
    fail(L, "%s: %s must be a list of tables", nn, m->list_option);
  lua_Integer n = luaL_len(L, ti);
  if (n > m->list_max)
    fail(L, "%s: %s has %d entries, at most %d", nn, m->list_option, (int)n,
         m->list_max);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, ti, i);
    int ei = lua_gettop(L);
    if (lua_istable(L, ei)) {
      lua_pushnil(L);
      while (lua_next(L, ei)) {
        if (lua_type(L, -2) != LUA_TSTRING)
          fail(L, "%s: %s[%d] keys must be names", nn, m->list_option, (int)i);
        const char *k = lua_tostring(L, -2);
        char flat[96];
        snprintf(flat, sizeof flat, "%s%d", k, (int)i);
        int p = mb_module_param_index(m, flat);
        if (p < 0) {
          /* suggest among the entry's field names */
          const char *fields[64];
          int nf = 0;
          char buf[64][32];
          for (int q = 0; q < m->n_params && nf < 64; q++) {
            const char *id = m->params[q].id;
            size_t l = strlen(id);
            char suffix[16];
            snprintf(suffix, sizeof suffix, "%d", 1);
            if (l > 1 && strcmp(id + l - 1, suffix) == 0 &&
                !(l > 2 && id[l - 2] >= '0' && id[l - 2] <= '9')) {
              snprintf(buf[nf], sizeof buf[nf], "%.*s", (int)(l - 1), id);
              fields[nf] = buf[nf];
              nf++;
            }
          }
          fail(L, "unknown field '%s' in %s[%d] for %s%s", k, m->list_option,
               (int)i, nn, hint(L, k, fields, nf));
        }
        set_param(L, lg, node, p, lua_gettop(L));
        lua_pop(L, 1);
      }
    } else if (lua_isnumber(L, ei)) {
      /* a list of numbers: crossovers = {200, 2000} -> crossover1, ... */
      char flat[96];
      size_t l = strlen(m->list_option);
      snprintf(flat, sizeof flat, "%.*s%d",
               (int)(l > 1 && m->list_option[l - 1] == 's' ? l - 1 : l),
               m->list_option, (int)i);
      int p = mb_module_param_index(m, flat);
      if (p < 0) fail(L, "%s: %s[%d] must be a table", nn, m->list_option, (int)i);
      set_param(L, lg, node, p, ei);
    } else {
      /* a list of numbers when `<singular>1` is a parameter */
      char flat[96];
      size_t l = strlen(m->list_option);
      snprintf(flat, sizeof flat, "%.*s1",
               (int)(l > 1 && m->list_option[l - 1] == 's' ? l - 1 : l),
               m->list_option);
      fail(L, "%s: %s[%d] must be a %s, got %s", nn, m->list_option, (int)i,
           mb_module_param_index(m, flat) >= 0 ? "number" : "table",
           luaL_typename(L, ei));
    }
    lua_settop(L, ei - 1);
  }
}

/* g:add(kind, opts) */
static int graph_add(lua_State *L) {
  lgraph *lg = check_graph(L, 1);
  const char *kind = luaL_checkstring(L, 2);
  if (!lua_isnoneornil(L, 3) && !lua_istable(L, 3))
    return fail(L, "add: options for %s must be a table, got %s", kind,
                luaL_typename(L, 3));
  const mb_module_desc *m = find_module(kind);
  if (!m) {
    const char *ids[128];
    int n = module_ids(ids, 128);
    return fail(L, "unknown module '%s'%s", kind, hint(L, kind, ids, n));
  }
  const char *name = NULL;
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "name");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
      return fail(L, "add: name must be a string");
    name = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  lua_host *host = NULL;
  if (m == &mb_mod_lua) {
    if (!lua_istable(L, 3)) return fail(L, "lua: give a process function");
    lua_getfield(L, 3, "process");
    if (!lua_isfunction(L, -1))
      return fail(L, "lua: process must be a function, got %s",
                  luaL_typename(L, -1));
    lua_host **hs = realloc(lg->hosts, (lg->n_hosts + 1) * sizeof *hs);
    if (!hs) return fail(L, "out of memory");
    lg->hosts = hs;
    host = calloc(1, sizeof *host);
    if (!host) return fail(L, "out of memory");
    host->fn = luaL_ref(L, LUA_REGISTRYINDEX);
    host->block = LUA_NOREF;
    /* g:latency() may compile before any render: the node needs a state
     * from the start (render sets the one it runs in) */
    host->L = L;
    host->stop = &lg->stop;
    lg->hosts[lg->n_hosts++] = host;
  }
  mb_status st;
  int node = mb_graph_add(lg->g, m, name, host, &st);
  if (node < 0) return fail(L, "%s", mb_graph_error(lg->g));
  if (host) host->name = mb_node_name(lg->g, node);
  lnode *nd = lua_newuserdatauv(L, sizeof *nd, 1);
  nd->lg = lg;
  nd->index = node;
  luaL_setmetatable(L, NODE_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  int ni = lua_gettop(L);
  lua_getiuservalue(L, 1, UV_NODES);
  lua_pushvalue(L, ni);
  lua_rawseti(L, -2, node + 1);
  lua_pop(L, 1);
  if (lua_istable(L, 3)) {
    const char *nn = mb_node_name(lg->g, node);
    static const char *const extra_lua[] = {"name", "process"};
    static const char *const extra[] = {"name"};
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      if (lua_type(L, -2) != LUA_TSTRING)
        return fail(L, "%s: option keys must be names, got %s", nn,
                    luaL_typename(L, -2));
      const char *k = lua_tostring(L, -2);
      int p = mb_module_param_index(m, k);
      if (p >= 0) set_param(L, lg, node, p, lua_gettop(L));
      else if (m->list_option && strcmp(k, m->list_option) == 0)
        set_list_option(L, lg, node, lua_gettop(L));
      else if (strcmp(k, "name") && !(host && strcmp(k, "process") == 0))
        return unknown_key(L, "option", nn, m, k, host ? extra_lua : extra,
                           host ? 2 : 1);
      lua_pop(L, 1);
    }
  }
  if ((m->flags & (MB_MODULE_FILE_SOURCE | MB_MODULE_FILE_SINK))) {
    int p = mb_module_param_index(m, "path");
    if (p >= 0 && !mb_node_get_string(lg->g, node, p))
      return fail(L, "%s: give a path", mb_node_name(lg->g, node));
  }
  lua_settop(L, ni);
  return 1;
}

/* Input port index of `to` by name (nil: the first). */
static int port_index(lua_State *L, lgraph *lg, int to, int idx) {
  const mb_module_desc *m = mb_node_module(lg->g, to);
  if (lua_isnoneornil(L, idx)) return 0;
  const char *name = luaL_checkstring(L, idx);
  const char *names[MB_MAX_PORTS];
  for (int p = 0; p < m->n_inputs; p++) {
    names[p] = m->inputs[p].name;
    if (strcmp(name, names[p]) == 0) return p;
  }
  if (m->n_inputs == 0)
    return fail(L, "%s has no inputs", mb_node_name(lg->g, to));
  return fail(L, "%s has no input '%s'%s", mb_node_name(lg->g, to), name,
              hint(L, name, names, m->n_inputs));
}

/* g:connect(a, b [, port]) */
static int graph_connect(lua_State *L) {
  lgraph *lg = check_graph(L, 1);
  lnode *a = check_node(L, 2), *b = check_node(L, 3);
  if (a->lg != lg || b->lg != lg)
    return fail(L, "connect: node belongs to another graph");
  int port = port_index(L, lg, b->index, 4);
  if (mb_graph_connect(lg->g, a->index, b->index, port))
    return fail(L, "%s", mb_graph_error(lg->g));
  lua_settop(L, 3);
  return 1;
}

/* g:every(seconds, fn) */
static int graph_every(lua_State *L) {
  lgraph *lg = check_graph(L, 1);
  lua_Number sec = luaL_checknumber(L, 2);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  if (!(sec > 0) || !isfinite(sec))
    return fail(L, "every: interval must be > 0 seconds, got %f", (double)sec);
  if (mb_graph_rendering(lg->g))
    return fail(L, "every: cannot add a callback during a render");
  timer *t = realloc(lg->timers, (lg->n_timers + 1) * sizeof *t);
  if (!t) return fail(L, "out of memory");
  lg->timers = t;
  lua_getiuservalue(L, 1, UV_TIMERS);
  lua_pushvalue(L, 3);
  lua_rawseti(L, -2, lg->n_timers + 1);
  lg->timers[lg->n_timers] = (timer){.interval = sec, .fn = lg->n_timers + 1};
  lg->n_timers++;
  return 0;
}

static int64_t timer_frame(const timer *t, double rate) {
  return (int64_t)llround((double)t->k * t->interval * rate);
}

static int64_t next_control(void *ud, int64_t pos) {
  lgraph *lg = ud;
  double rate = mb_graph_rate(lg->g);
  int64_t next = INT64_MAX;
  for (int i = 0; i < lg->n_timers; i++) {
    timer *t = &lg->timers[i];
    while (timer_frame(t, rate) < pos) t->k++;
    int64_t f = timer_frame(t, rate);
    if (f < next) next = f;
  }
  return next;
}

/* Message handler for callbacks run by the render: a message without a
 * position gets the one of the innermost Lua line (the callback's own, or
 * a function it called). */
static int callback_error(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) return 1;
  const char *c = strchr(msg, ':');
  if (c && c[1] >= '0' && c[1] <= '9') return 1; /* has "chunk:line:" */
  lua_Debug ar;
  for (int level = 1; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "Sl", &ar);
    if (ar.currentline > 0) {
      lua_pushfstring(L, "%s:%d: %s", ar.short_src, ar.currentline, msg);
      return 1;
    }
  }
  return 1;
}

/* Call the function on top of the stack with nargs arguments under
 * callback_error; on failure return a malloc'd "chunk:line: <what>: msg". */
char *mb_lua_call(lua_State *L, int nargs, const char *what) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, callback_error);
  lua_insert(L, base);
  int st = lua_pcall(L, nargs, 0, base);
  lua_remove(L, base);
  if (st == LUA_OK) return NULL;
  const char *msg = lua_tostring(L, -1);
  if (!msg) msg = "(error object is not a string)";
  /* keep the position first: "file:12: what: message" */
  size_t pos = 0;
  const char *c = strchr(msg, ':');
  if (c && c[1] >= '0' && c[1] <= '9') {
    const char *d = c + 1;
    while (*d >= '0' && *d <= '9') d++;
    if (*d == ':') pos = (size_t)(d - msg) + 1;
  }
  size_t len = strlen(msg) + strlen(what) + 8;
  char *out = malloc(len);
  if (out) {
    if (pos)
      snprintf(out, len, "%.*s %s: %s", (int)pos, msg, what,
               msg + pos + (msg[pos] == ' '));
    else
      snprintf(out, len, "%s: %s", what, msg);
  }
  lua_pop(L, 1);
  return out;
}

static mb_status control(void *ud, int64_t pos) {
  lgraph *lg = ud;
  lua_State *L = lg->L;
  double rate = mb_graph_rate(lg->g);
  lua_getiuservalue(L, 1, UV_TIMERS); /* the graph is at index 1 in render */
  int ti = lua_gettop(L);
  for (int i = 0; i < lg->n_timers; i++) {
    timer *t = &lg->timers[i];
    if (timer_frame(t, rate) != pos) continue;
    t->k++;
    lua_rawgeti(L, ti, t->fn);
    lua_pushnumber(L, (double)pos / rate);
    char what[64];
    snprintf(what, sizeof what, "control callback at %.3f s",
             (double)pos / rate);
    char *e = mb_lua_call(L, 1, what);
    if (e) {
      free(lg->cb_err);
      lg->cb_err = e;
      lua_settop(L, ti - 1);
      return mb_graph_fail(lg->g, MB_ERR_ARG, "%s", e);
    }
  }
  lua_settop(L, ti - 1);
  return MB_OK;
}

static void progress(void *ud, int64_t done, int64_t total) {
  lgraph *lg = ud;
  if (!lg->progress) return;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  double t = ts.tv_sec + ts.tv_nsec * 1e-9;
  /* only renders that take a while get a bar, redrawn 10 times a second */
  if (t - lg->t0 < 1.0 || t - lg->last_draw < 0.1) return;
  if (done >= total && lg->last_draw == 0) return;
  lg->last_draw = t;
  double frac = total > 0 ? (double)done / total : 0;
  char bar[31];
  int fill = (int)(frac * 30);
  for (int i = 0; i < 30; i++) bar[i] = i < fill ? '=' : ' ';
  bar[30] = 0;
  double rate = mb_graph_rate(lg->g);
  fprintf(stderr, "\r[%s] %3d%%  %.1f / %.1f s  %.0fx", bar,
          (int)(frac * 100), done / rate, total / rate,
          (done / rate) / (t - lg->t0));
  fflush(stderr);
}

static volatile int *sigint_flag;
static void on_sigint(int sig) {
  (void)sig;
  if (sigint_flag) *sigint_flag = 1;
}

static void set_number(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static double to_db(double x) { return x > 0 ? 20 * log10(x) : -HUGE_VAL; }

/* `moonbus live` makes g:render() play (with these device options). */
static int live_mode;
static mb_play_opts live_defaults;
static char live_device[256];

/* core.set_live{device=, block=, latency=}: g:render() plays from now on */
static int l_set_live(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  live_mode = 1;
  memset(&live_defaults, 0, sizeof live_defaults);
  lua_getfield(L, 1, "device");
  if (lua_isstring(L, -1)) {
    snprintf(live_device, sizeof live_device, "%s", lua_tostring(L, -1));
    live_defaults.device = live_device;
  }
  lua_getfield(L, 1, "block");
  live_defaults.frames = (int)luaL_optinteger(L, -1, 0);
  lua_getfield(L, 1, "latency");
  live_defaults.latency = luaL_optnumber(L, -1, 0);
  return 0;
}

/* The options of g:render{} and g:play{}, checked; the table at index 2. */
static void run_options(lua_State *L, lgraph *lg, int play, mb_play_opts *o) {
  static const char *const keys[] = {"duration", "tail",    "progress",
                                     "block",    "latency", "device"};
  const int nkeys = play ? 6 : 3;
  const char *what = play ? "play" : "render";
  lg->progress = isatty(2);
  if (lua_isnil(L, 2)) return;
  if (!lua_istable(L, 2)) fail(L, "%s: options must be a table", what);
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
    int ki = -1;
    for (int i = 0; i < nkeys; i++)
      if (strcmp(k, keys[i]) == 0) ki = i;
    if (ki < 0)
      fail(L, "unknown option '%s' for %s%s", k, what, hint(L, k, keys, nkeys));
    if (ki == 2) {
      lg->progress = lg->progress && lua_toboolean(L, -1);
    } else if (ki == 5) {
      if (!lua_isstring(L, -1))
        fail(L, "play: device must be a name or a number");
      o->device = lua_tostring(L, -1); /* the table keeps it alive */
    } else if (ki == 3) {
      lua_Integer b = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : -1;
      if (b < 16 || b > 8192)
        fail(L, "play: block must be a whole number of frames (16 .. 8192)");
      o->frames = (int)b;
    } else {
      if (!lua_isnumber(L, -1) || !(lua_tonumber(L, -1) > 0))
        fail(L, "%s: %s must be a number of seconds > 0", what, k);
      double v = lua_tonumber(L, -1);
      if (ki == 0) o->duration = v;
      else if (ki == 1) o->tail_cap = v;
      else o->latency = v;
    }
    lua_pop(L, 1);
  }
}

/* Push the files a render or play wrote: { {path, frames, clipped, peak} }
 * as the `outputs` field of the table on top, warning about clipping. */
static void push_outputs(lua_State *L, lgraph *lg) {
  lua_newtable(L);
  int k = 0;
  for (int i = 0; i < mb_graph_count(lg->g); i++) {
    mb_output_stats os;
    if (mb_node_output_stats(lg->g, i, &os)) continue;
    lua_createtable(L, 0, 5);
    lua_pushstring(L, os.path);
    lua_setfield(L, -2, "path");
    lua_pushinteger(L, os.frames);
    lua_setfield(L, -2, "frames");
    lua_pushinteger(L, os.clipped);
    lua_setfield(L, -2, "clipped");
    set_number(L, "peak", to_db(os.peak));
    lua_rawseti(L, -2, ++k);
    if (os.clipped > 0)
      fprintf(stderr,
              "moonbus: warning: %s: %lld samples clipped (peak %+.2f dBFS)\n",
              os.path, (long long)os.clipped, to_db(os.peak));
  }
  lua_setfield(L, -2, "outputs");
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

/* g:render{duration=, tail=, progress=} and g:play{... block=, latency=,
 * device=} -> stats */
static int graph_run(lua_State *L, int play) {
  lgraph *lg = check_graph(L, 1);
  /* before touching any state: the running render owns it */
  if (mb_graph_rendering(lg->g) || mb_graph_playing(lg->g))
    return fail(L, "%s: the graph is already %s (called from a control "
                   "callback or a lua node?)",
                play ? "play" : "render",
                mb_graph_playing(lg->g) ? "playing" : "rendering");
  lua_settop(L, 2);
  mb_play_opts o;
  if (play && live_mode) o = live_defaults;
  else memset(&o, 0, sizeof o);
  run_options(L, lg, play, &o);
  /* the `lua` nodes run in this state */
  for (int i = 0; i < lg->n_hosts; i++) {
    lg->hosts[i]->L = L;
    free(lg->hosts[i]->err);
    lg->hosts[i]->err = NULL;
  }
  free(lg->cb_err);
  lg->cb_err = NULL;
  for (int i = 0; i < lg->n_timers; i++) lg->timers[i].k = 0;
  lg->L = L;
  lg->stop = 0;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lg->t0 = ts.tv_sec + ts.tv_nsec * 1e-9;
  lg->last_draw = 0;
  if (lg->n_timers || play) {
    o.next_control = next_control;
    o.control = control;
  }
  o.progress = progress;
  o.ud = lg;
  o.interrupt = &lg->stop;
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  volatile int *prev_flag = sigint_flag;
  sigint_flag = &lg->stop;
  sigaction(SIGINT, &sa, &old);
  mb_render_stats stats;
  mb_play_stats ps;
  mb_status st;
  if (play) {
    st = mb_graph_play(lg->g, &o, &ps);
  } else {
    mb_render_opts ro = {.duration = o.duration, .tail_cap = o.tail_cap,
                         .next_control = o.next_control,
                         .control = o.control, .progress = o.progress,
                         .ud = o.ud, .interrupt = o.interrupt};
    st = mb_graph_render(lg->g, &ro, &stats);
  }
  sigaction(SIGINT, &old, NULL);
  sigint_flag = prev_flag;
  lg->L = NULL;
  if (lg->last_draw > 0) fprintf(stderr, "\r%60s\r", "");
  if (st) {
    for (int i = 0; i < lg->n_hosts; i++)
      if (lg->hosts[i]->err) return fail(L, "%s", lg->hosts[i]->err);
    if (lg->cb_err) return fail(L, "%s", lg->cb_err);
    return fail(L, "%s", mb_graph_error(lg->g));
  }
  lua_createtable(L, 0, 16);
  set_number(L, "rate", mb_graph_rate(lg->g));
  if (play) {
    set_int(L, "frames", ps.frames);
    set_number(L, "seconds", ps.seconds);
    set_number(L, "wall", ps.wall);
    set_int(L, "latency", ps.latency);
    set_number(L, "device_latency", ps.out_latency);
    set_int(L, "block", ps.buffer);
    set_int(L, "callbacks", ps.callbacks);
    set_int(L, "xruns", ps.xruns);
    set_int(L, "underruns", ps.underruns);
    set_int(L, "dropped", ps.dropped);
    set_int(L, "swaps", ps.swaps);
    lua_pushboolean(L, ps.interrupted);
    lua_setfield(L, -2, "interrupted");
    lua_pushstring(L, ps.device);
    lua_setfield(L, -2, "device");
    /* the run's summary: what a live run must always report */
    char dl[48] = "unknown";
    if (ps.out_latency >= 0)
      snprintf(dl, sizeof dl, "%.1f ms", ps.out_latency * 1000);
    fprintf(stderr,
            "moonbus: played %.2f s on %s (%d-frame buffers, output latency "
            "%s, graph latency %d frames): %lld xruns, %lld frames of late "
            "file input%s\n",
            ps.seconds, ps.device, ps.buffer, dl, ps.latency,
            (long long)ps.xruns, (long long)ps.underruns,
            ps.interrupted ? "; stopped by interrupt" : "");
  } else {
    set_int(L, "frames", stats.frames);
    set_number(L, "seconds", stats.seconds);
    set_number(L, "wall", stats.wall);
    set_number(L, "realtime", stats.realtime);
    set_int(L, "latency", stats.latency);
  }
  push_outputs(L, lg);
  return 1;
}

static int graph_render(lua_State *L) { return graph_run(L, live_mode); }
static int graph_play(lua_State *L) { return graph_run(L, 1); }

/* g:remove(node) */
static int graph_remove(lua_State *L) {
  lgraph *lg = check_graph(L, 1);
  lnode *n = check_node(L, 2);
  if (n->lg != lg) return fail(L, "remove: node belongs to another graph");
  if (mb_graph_remove(lg->g, n->index)) return fail(L, "%s", mb_graph_error(lg->g));
  return 0;
}

/* g:disconnect(a, b [, port]) */
static int graph_disconnect(lua_State *L) {
  lgraph *lg = check_graph(L, 1);
  lnode *a = check_node(L, 2), *b = check_node(L, 3);
  if (a->lg != lg || b->lg != lg)
    return fail(L, "disconnect: node belongs to another graph");
  int port = lua_isnoneornil(L, 4) ? -1 : port_index(L, lg, b->index, 4);
  if (mb_graph_disconnect(lg->g, a->index, b->index, port))
    return fail(L, "%s", mb_graph_error(lg->g));
  return 0;
}

/* core.key_mode(on) -> true when stdin is a terminal, now reading keys one
 * at a time without echo (on) or back to lines (off). */
static struct termios saved_tty;
static int tty_raw;
static int l_key_mode(lua_State *L) {
  int on = lua_toboolean(L, 1);
  if (on && !tty_raw && isatty(0) && tcgetattr(0, &saved_tty) == 0) {
    struct termios t = saved_tty;
    t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    t.c_cc[VMIN] = 0;
    t.c_cc[VTIME] = 0;
    tty_raw = tcsetattr(0, TCSANOW, &t) == 0;
  } else if (!on && tty_raw) {
    tcsetattr(0, TCSANOW, &saved_tty);
    tty_raw = 0;
  }
  lua_pushboolean(L, tty_raw);
  return 1;
}

/* core.key() -> the next key pressed, or nil (never waits) */
static int l_key(lua_State *L) {
  struct pollfd pf = {.fd = 0, .events = POLLIN};
  char c;
  if (poll(&pf, 1, 0) == 1 && read(0, &c, 1) == 1) {
    lua_pushlstring(L, &c, 1);
    return 1;
  }
  return 0;
}

/* core.interrupt(): stop the running render or play as Ctrl-C would */
static int l_interrupt(lua_State *L) {
  (void)L;
  if (sigint_flag) *sigint_flag = 1;
  return 0;
}

/* core.devices() -> { {index, name, host, inputs, outputs, default_rate,
 * default_input, default_output}, ... } */
static int l_devices(lua_State *L) {
  mb_device_info list[128];
  char err[MB_ERRLEN];
  int n = mb_devices(list, 128, err, sizeof err);
  if (n < 0) return fail(L, "%s", err);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_createtable(L, 0, 8);
    set_int(L, "index", list[i].index);
    lua_pushstring(L, list[i].name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, list[i].host);
    lua_setfield(L, -2, "host");
    set_int(L, "inputs", list[i].inputs);
    set_int(L, "outputs", list[i].outputs);
    set_number(L, "default_rate", list[i].default_rate);
    lua_pushboolean(L, list[i].is_default_in);
    lua_setfield(L, -2, "default_input");
    lua_pushboolean(L, list[i].is_default_out);
    lua_setfield(L, -2, "default_output");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* g:latency() -> frames */
static int graph_latency(lua_State *L) {
  lgraph *lg = check_graph(L, 1);
  int frames;
  if (mb_graph_latency(lg->g, &frames)) return fail(L, "%s", mb_graph_error(lg->g));
  lua_pushinteger(L, frames);
  return 1;
}

/* g:nodes() iterator: for node in g:nodes() */
static int nodes_iter(lua_State *L) {
  lua_Integer i = luaL_checkinteger(L, lua_upvalueindex(2)) + 1;
  lua_pushinteger(L, i);
  lua_replace(L, lua_upvalueindex(2));
  lua_rawgeti(L, lua_upvalueindex(1), i);
  return 1;
}

static int graph_nodes(lua_State *L) {
  check_graph(L, 1);
  lua_getiuservalue(L, 1, UV_NODES);
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, nodes_iter, 2);
  return 1;
}

static int graph_index(lua_State *L) {
  lgraph *lg = luaL_checkudata(L, 1, GRAPH_MT);
  const char *k = luaL_checkstring(L, 2);
  if (lg->g && strcmp(k, "rate") == 0) {
    lua_pushnumber(L, mb_graph_rate(lg->g));
    return 1;
  }
  if (lg->g && strcmp(k, "block") == 0) {
    lua_pushinteger(L, mb_graph_block(lg->g));
    return 1;
  }
  luaL_getmetafield(L, 1, "methods");
  lua_getfield(L, -1, k);
  return 1;
}

static int graph_gc(lua_State *L) {
  lgraph *lg = luaL_checkudata(L, 1, GRAPH_MT);
  mb_graph_free(lg->g);
  lg->g = NULL;
  free_hosts(NULL, lg); /* the registry refs go with the state */
  free(lg->timers);
  lg->timers = NULL;
  free(lg->cb_err);
  lg->cb_err = NULL;
  return 0;
}

/* ---- nodes -------------------------------------------------------------- */

/* Push a parameter's current value as Lua sees it. */
static void push_value(lua_State *L, mb_graph *g, int node, int p) {
  const mb_param_desc *d = &mb_node_module(g, node)->params[p];
  double v = mb_node_get(g, node, p);
  switch (d->type) {
  case MB_PARAM_STRING: {
    const char *s = mb_node_get_string(g, node, p);
    if (s) lua_pushstring(L, s);
    else lua_pushnil(L);
    break;
  }
  case MB_PARAM_BOOL: lua_pushboolean(L, v != 0); break;
  case MB_PARAM_ENUM: lua_pushstring(L, d->choices[(int)v]); break;
  case MB_PARAM_INT: lua_pushinteger(L, (lua_Integer)v); break;
  default: lua_pushnumber(L, v);
  }
}

static int node_index(lua_State *L) {
  lnode *n = luaL_checkudata(L, 1, NODE_MT);
  const char *k = luaL_checkstring(L, 2);
  luaL_getmetafield(L, 1, "methods");
  lua_getfield(L, -1, k);
  if (!lua_isnil(L, -1)) return 1;
  if (!n->lg->g) return fail(L, "graph is closed");
  mb_graph *g = n->lg->g;
  const mb_module_desc *m = mb_node_module(g, n->index);
  int p = mb_module_param_index(m, k);
  if (p >= 0) {
    push_value(L, g, n->index, p);
    return 1;
  }
  if (strcmp(k, "name") == 0) {
    lua_pushstring(L, mb_node_name(g, n->index));
    return 1;
  }
  if (strcmp(k, "module") == 0) {
    lua_pushstring(L, m->id);
    return 1;
  }
  if (strcmp(k, "channels") == 0) {
    lua_pushinteger(L, mb_node_channels(g, n->index));
    return 1;
  }
  const char *names[64];
  double values[64];
  int nr = mb_node_results(g, n->index, names, values, 64);
  for (int i = 0; i < nr; i++)
    if (strcmp(names[i], k) == 0) {
      lua_pushnumber(L, values[i]);
      return 1;
    }
  static const char *const extra[] = {"name", "module", "channels",
                                      "automate", "params", "results"};
  return unknown_key(L, "field", mb_node_name(g, n->index), m, k, extra, 6);
}

static int node_newindex(lua_State *L) {
  lnode *n = check_node(L, 1);
  const char *k = luaL_checkstring(L, 2);
  const mb_module_desc *m = mb_node_module(n->lg->g, n->index);
  int p = mb_module_param_index(m, k);
  if (p < 0)
    return unknown_key(L, "parameter", mb_node_name(n->lg->g, n->index), m, k,
                       NULL, 0);
  set_param(L, n->lg, n->index, p, 3);
  return 0;
}

static int node_tostring(lua_State *L) {
  lnode *n = luaL_checkudata(L, 1, NODE_MT);
  if (!n->lg->g) lua_pushstring(L, "moonbus node (graph closed)");
  else
    lua_pushfstring(L, "moonbus node %s (%s)", mb_node_name(n->lg->g, n->index),
                    mb_node_module(n->lg->g, n->index)->id);
  return 1;
}

static mb_curve check_curve(lua_State *L, int idx, const char *nn, int k) {
  if (lua_isnoneornil(L, idx)) return MB_CURVE_LINEAR;
  static const char *const names[] = {"linear", "exponential", "hold"};
  const char *s = lua_tostring(L, idx);
  for (int i = 0; s && i < 3; i++)
    if (strcmp(s, names[i]) == 0) return (mb_curve)i;
  if (s && strcmp(s, "exp") == 0) return MB_CURVE_EXP;
  fail(L, "%s: automation point %d: curve must be \"linear\", "
          "\"exponential\" or \"hold\", got %s%s",
       nn, k, s ? s : luaL_typename(L, idx), s ? hint(L, s, names, 3) : "");
  return MB_CURVE_LINEAR;
}

/* node:automate(param, { {t, v [, curve]}, ... }) */
static int node_automate(lua_State *L) {
  lnode *n = check_node(L, 1);
  mb_graph *g = n->lg->g;
  const char *k = luaL_checkstring(L, 2);
  const mb_module_desc *m = mb_node_module(g, n->index);
  const char *nn = mb_node_name(g, n->index);
  int p = mb_module_param_index(m, k);
  if (p < 0) return unknown_key(L, "parameter", nn, m, k, NULL, 0);
  luaL_checktype(L, 3, LUA_TTABLE);
  lua_Integer cnt = luaL_len(L, 3);
  mb_point *pts = lua_newuserdatauv(L, (cnt ? cnt : 1) * sizeof *pts, 0);
  const mb_param_desc *d = &m->params[p];
  for (lua_Integer i = 1; i <= cnt; i++) {
    lua_rawgeti(L, 3, i);
    if (!lua_istable(L, -1))
      return fail(L, "%s: %s automation point %d must be {seconds, value}", nn,
                  k, (int)i);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    lua_rawgeti(L, -3, 3);
    if (!lua_isnumber(L, -3))
      return fail(L, "%s: %s automation point %d: time must be a number", nn,
                  k, (int)i);
    pts[i - 1].time = lua_tonumber(L, -3);
    if (d->type == MB_PARAM_ENUM && lua_type(L, -2) == LUA_TSTRING) {
      int c = 0, found = -1;
      for (; d->choices[c]; c++)
        if (strcmp(d->choices[c], lua_tostring(L, -2)) == 0) found = c;
      if (found < 0)
        return fail(L, "%s: %s automation point %d: \"%s\" is not a choice",
                    nn, k, (int)i, lua_tostring(L, -2));
      pts[i - 1].value = found;
    } else if (d->type == MB_PARAM_BOOL && lua_isboolean(L, -2)) {
      pts[i - 1].value = lua_toboolean(L, -2);
    } else if (lua_isnumber(L, -2)) {
      pts[i - 1].value = lua_tonumber(L, -2);
    } else {
      return fail(L, "%s: %s automation point %d: value must be a number", nn,
                  k, (int)i);
    }
    pts[i - 1].curve = check_curve(L, -1, nn, (int)i);
    if (d->type != MB_PARAM_NUMBER && pts[i - 1].curve != MB_CURVE_HOLD)
      pts[i - 1].curve = MB_CURVE_HOLD; /* choices and switches step */
    lua_pop(L, 4);
  }
  if (mb_node_automate(g, n->index, p, pts, (int)cnt))
    return fail(L, "%s", mb_graph_error(g));
  lua_settop(L, 1);
  return 1;
}

/* for name, value, info in node:params() */
static int params_iter(lua_State *L) {
  lnode *n = check_node(L, lua_upvalueindex(1));
  lua_Integer i = lua_tointeger(L, lua_upvalueindex(2));
  const mb_module_desc *m = mb_node_module(n->lg->g, n->index);
  if (i >= m->n_params) return 0;
  lua_pushinteger(L, i + 1);
  lua_replace(L, lua_upvalueindex(2));
  lua_pushstring(L, m->params[i].id);
  push_value(L, n->lg->g, n->index, (int)i);
  push_param_info(L, &m->params[i]);
  return 3;
}

static int node_params(lua_State *L) {
  check_node(L, 1);
  lua_pushvalue(L, 1);
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, params_iter, 2);
  return 1;
}

/* node:results() -> table of an analyser's results (empty otherwise) */
static int node_results(lua_State *L) {
  lnode *n = check_node(L, 1);
  const char *names[64];
  double values[64];
  int nr = mb_node_results(n->lg->g, n->index, names, values, 64);
  lua_createtable(L, 0, nr);
  for (int i = 0; i < nr; i++) {
    lua_pushnumber(L, values[i]);
    lua_setfield(L, -2, names[i]);
  }
  return 1;
}

/* ---- measure ------------------------------------------------------------ */

/* core.measure(path [, { true_peak = false }]): without the true peak
 * (then absent) the pass is about twice as fast. */
static int l_measure(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int tp = 1;
  if (!lua_isnoneornil(L, 2)) {
    if (!lua_istable(L, 2))
      return fail(L, "measure: options must be a table, got %s",
                  luaL_typename(L, 2));
    static const char *const keys[] = {"true_peak"};
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      const char *k =
          lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
      if (strcmp(k, "true_peak") != 0) {
        const char *hint = mb_suggest(k, keys, 1);
        return fail(L, "measure: unknown option '%s'%s%s%s", k,
                    hint ? "; did you mean '" : " (known: true_peak)",
                    hint ? hint : "", hint ? "'?" : "");
      }
      if (!lua_isboolean(L, -1))
        return fail(L, "measure: true_peak must be true or false, got %s",
                    luaL_typename(L, -1));
      tp = lua_toboolean(L, -1);
      lua_pop(L, 1);
    }
  }
  mb_measurement m;
  char err[MB_ERRLEN];
  if (mb_measure_loudness(path, &m, tp, err, sizeof err))
    return fail(L, "%s", err);
  lua_createtable(L, 0, 10);
  lua_pushstring(L, path);
  lua_setfield(L, -2, "path");
  set_number(L, "integrated", m.integrated);
  set_number(L, "lra", m.lra);
  if (tp) set_number(L, "true_peak", m.true_peak);
  set_number(L, "sample_peak", m.sample_peak);
  set_number(L, "momentary_max", m.momentary_max);
  set_number(L, "short_term_max", m.short_term_max);
  set_number(L, "duration", m.duration);
  lua_pushinteger(L, m.rate);
  lua_setfield(L, -2, "rate");
  lua_pushinteger(L, m.channels);
  lua_setfield(L, -2, "channels");
  lua_pushinteger(L, m.frames);
  lua_setfield(L, -2, "frames");
  return 1;
}

/* core.suggest(word, list) -> nearest name or nil */
static int l_suggest(lua_State *L) {
  const char *word = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 2);
  if (n > 4096) n = 4096;
  const char **cand = lua_newuserdatauv(L, (n ? n : 1) * sizeof *cand, 0);
  int k = 0;
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    if (lua_type(L, -1) == LUA_TSTRING) cand[k++] = lua_tostring(L, -1);
    lua_pop(L, 1); /* the strings stay alive in the list */
  }
  const char *s = mb_suggest(word, cand, k);
  if (s) lua_pushstring(L, s);
  else lua_pushnil(L);
  return 1;
}

/* core.same_file(a, b) -> true when both paths name one file (or would:
 * a path that does not exist yet is compared by its resolved folder). */
static int l_same_file(lua_State *L) {
  const char *a = luaL_checkstring(L, 1), *b = luaL_checkstring(L, 2);
  lua_pushboolean(L, mb_same_file(a, b));
  return 1;
}

/* core.writable(path) -> true when the extension names a format the
 * output node writes; else false and a message naming the extension. */
static int l_writable(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  if (mb_writer_format_for(path)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_pushfstring(L, "cannot write '%s': unknown or missing extension "
                     "(use .wav, .aif, .aiff, .flac, .mp3, .ogg or .opus)",
                  path);
  return 2;
}

/* ---- open --------------------------------------------------------------- */

static const luaL_Reg graph_methods[] = {
    {"add", graph_add},         {"connect", graph_connect},
    {"every", graph_every},     {"render", graph_render},
    {"play", graph_play},       {"remove", graph_remove},
    {"disconnect", graph_disconnect},
    {"latency", graph_latency}, {"nodes", graph_nodes},
    {"close", graph_close},     {NULL, NULL}};

static const luaL_Reg node_methods[] = {{"automate", node_automate},
                                        {"params", node_params},
                                        {"results", node_results},
                                        {NULL, NULL}};

static const luaL_Reg lib[] = {{"graph", l_graph},
                               {"modules", l_modules},
                               {"measure", l_measure},
                               {"suggest", l_suggest},
                               {"same_file", l_same_file},
                               {"writable", l_writable},
                               {"devices", l_devices},
                               {"key_mode", l_key_mode},
                               {"key", l_key},
                               {"interrupt", l_interrupt},
                               {"set_live", l_set_live},
                               {"analyse", mb_lua_analyse},
                               {NULL, NULL}};

int luaopen_moonbus_core(lua_State *L) {
  if (luaL_newmetatable(L, GRAPH_MT)) {
    luaL_newlib(L, graph_methods);
    lua_setfield(L, -2, "methods");
    lua_pushcfunction(L, graph_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, graph_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, graph_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, graph_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, NODE_MT)) {
    luaL_newlib(L, node_methods);
    lua_setfield(L, -2, "methods");
    lua_pushcfunction(L, node_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, node_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, node_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  luaL_newlib(L, lib);
  luaL_setfuncs(L, mb_lua_sys, 0);
  /* method tables, so the Lua half can add methods (g:chain) */
  luaL_getmetatable(L, GRAPH_MT);
  lua_getfield(L, -1, "methods");
  lua_setfield(L, -3, "Graph");
  lua_pop(L, 1);
  luaL_getmetatable(L, NODE_MT);
  lua_getfield(L, -1, "methods");
  lua_setfield(L, -3, "Node");
  lua_pop(L, 1);
  lua_pushstring(L, MB_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}
