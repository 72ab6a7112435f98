/* lmodule.c - the `lua` module: a Lua function that processes blocks.
 *
 * The prototyping escape hatch. It calls Lua from process(), so it is
 * offline only (MB_MODULE_OFFLINE_ONLY): live playback refuses it. The
 * function sees `block[c][i]` (1-based), `block.channels`, `block.frames`,
 * `block.rate`, `block.time` and changes the samples in place; output =
 * the block after the call. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lmoonbus.h"

#define BLOCK_MT "moonbus.block"
#define CHANNEL_MT "moonbus.channel"

enum { P_CHANNELS, P_LATENCY, P_TAIL };

typedef struct lchannel {
  float *data;
  int frames;
  int index;
} lchannel;

typedef struct lblock {
  int channels, frames;
  double rate;
  double time;
  lchannel *chan[MB_MAX_CHANNELS];
} lblock;

typedef struct lua_state_mod {
  lua_host *h;
  int in_ch, out_ch, latency;
  int64_t tail; /* frames */
  double rate;
  float *buf; /* out_ch x max_frames: the block the function edits */
  int max_frames;
  lblock *blk;
} lua_state_mod;

static int channel_index(lua_State *L) {
  lchannel *c = luaL_checkudata(L, 1, CHANNEL_MT);
  if (lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "n") == 0) {
    lua_pushinteger(L, c->frames);
    return 1;
  }
  lua_Integer i = luaL_checkinteger(L, 2);
  if (i < 1 || i > c->frames)
    return luaL_error(L, "block[%d][%d]: sample index out of range 1..%d",
                      c->index, (int)i, c->frames);
  lua_pushnumber(L, c->data[i - 1]);
  return 1;
}

static int channel_newindex(lua_State *L) {
  lchannel *c = luaL_checkudata(L, 1, CHANNEL_MT);
  lua_Integer i = luaL_checkinteger(L, 2);
  lua_Number v = luaL_checknumber(L, 3);
  if (i < 1 || i > c->frames)
    return luaL_error(L, "block[%d][%d]: sample index out of range 1..%d",
                      c->index, (int)i, c->frames);
  c->data[i - 1] = (float)v;
  return 0;
}

static int channel_len(lua_State *L) {
  lchannel *c = luaL_checkudata(L, 1, CHANNEL_MT);
  lua_pushinteger(L, c->frames);
  return 1;
}

static int block_index(lua_State *L) {
  lblock *b = luaL_checkudata(L, 1, BLOCK_MT);
  if (lua_type(L, 2) == LUA_TNUMBER) {
    lua_Integer c = lua_tointeger(L, 2);
    if (c < 1 || c > b->channels)
      return luaL_error(L, "block[%d]: channel out of range 1..%d", (int)c,
                        b->channels);
    lua_getiuservalue(L, 1, 1);
    lua_rawgeti(L, -1, c);
    return 1;
  }
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "channels") == 0) lua_pushinteger(L, b->channels);
  else if (strcmp(k, "frames") == 0) lua_pushinteger(L, b->frames);
  else if (strcmp(k, "rate") == 0) lua_pushnumber(L, b->rate);
  else if (strcmp(k, "time") == 0) lua_pushnumber(L, b->time);
  else lua_pushnil(L);
  return 1;
}

static int block_len(lua_State *L) {
  lblock *b = luaL_checkudata(L, 1, BLOCK_MT);
  lua_pushinteger(L, b->channels);
  return 1;
}

/* Build the block userdata and its channel objects once. [control] */
static lblock *make_block(lua_State *L, int channels) {
  if (luaL_newmetatable(L, CHANNEL_MT)) {
    lua_pushcfunction(L, channel_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, channel_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, channel_len);
    lua_setfield(L, -2, "__len");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, BLOCK_MT)) {
    lua_pushcfunction(L, block_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, block_len);
    lua_setfield(L, -2, "__len");
  }
  lua_pop(L, 1);
  lblock *b = lua_newuserdatauv(L, sizeof *b, 1);
  memset(b, 0, sizeof *b);
  luaL_setmetatable(L, BLOCK_MT);
  lua_createtable(L, channels, 0);
  for (int c = 0; c < channels; c++) {
    lchannel *ch = lua_newuserdatauv(L, sizeof *ch, 0);
    memset(ch, 0, sizeof *ch);
    ch->index = c + 1;
    luaL_setmetatable(L, CHANNEL_MT);
    b->chan[c] = ch;
    lua_rawseti(L, -2, c + 1);
  }
  lua_setiuservalue(L, -2, 1);
  b->channels = channels;
  return b;
}

static int channels(const mb_config *c, char *err, size_t errlen) {
  int want = (int)c->values[P_CHANNELS];
  if (want > 0) return want;
  if (c->in_channels[0] > 0) return c->in_channels[0];
  snprintf(err, errlen, "give `channels` when nothing is connected");
  return -1;
}

static mb_status create(void *st, const mb_config *c, char *err,
                        size_t errlen) {
  lua_state_mod *s = st;
  s->h = c->host;
  s->in_ch = c->in_channels[0];
  s->out_ch = c->out_channels;
  s->latency = (int)c->values[P_LATENCY];
  s->tail = (int64_t)llround(c->values[P_TAIL] * c->rate);
  s->rate = c->rate;
  s->max_frames = c->max_frames;
  if (!s->h || !s->h->L) {
    snprintf(err, errlen, "no process function");
    return MB_ERR_ARG;
  }
  s->buf = calloc((size_t)s->out_ch * c->max_frames, sizeof(float));
  if (!s->buf) return MB_ERR_NOMEM;
  lua_State *L = s->h->L;
  s->blk = make_block(L, s->out_ch);
  if (s->h->block != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, s->h->block);
  s->h->block = luaL_ref(L, LUA_REGISTRYINDEX);
  for (int ch = 0; ch < s->out_ch; ch++)
    s->blk->chan[ch]->data = s->buf + (size_t)ch * c->max_frames;
  s->blk->rate = c->rate;
  return MB_OK;
}

static void process(void *st, const mb_block *b) {
  lua_state_mod *s = st;
  lua_host *h = s->h;
  const int n = b->frames;
  for (int ch = 0; ch < s->out_ch; ch++) {
    float *d = s->buf + (size_t)ch * s->max_frames;
    if (b->in[0] && b->in_channels[0] > 0) {
      int src = ch < b->in_channels[0] ? ch : b->in_channels[0] - 1;
      memcpy(d, b->in[0][src], n * sizeof(float));
    } else {
      memset(d, 0, n * sizeof(float));
    }
    s->blk->chan[ch]->frames = n;
  }
  s->blk->frames = n;
  s->blk->time = (double)b->pos / s->rate;
  if (!h->err) {
    lua_State *L = h->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->fn);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->block);
    char what[128];
    snprintf(what, sizeof what, "%s: process", h->name);
    /* Remember the first error and stop the render at this block's end;
     * the binding raises it. */
    h->err = mb_lua_call(L, 1, what);
    if (h->err && h->stop) *h->stop = 1;
  }
  for (int ch = 0; ch < s->out_ch; ch++)
    memcpy(b->out[ch], s->buf + (size_t)ch * s->max_frames, n * sizeof(float));
}

static int latency(const void *st) {
  return ((const lua_state_mod *)st)->latency;
}

static int64_t tail(const void *st) {
  return ((const lua_state_mod *)st)->tail;
}

static void destroy(void *st) {
  lua_state_mod *s = st;
  free(s->buf);
}

static const mb_port_desc inputs[] = {{.name = "in", .flags = MB_PORT_OPTIONAL}};

static const mb_param_desc params[] = {
    [P_CHANNELS] = {.id = "channels", .unit = "", .type = MB_PARAM_INT,
                    .min = 0, .max = MB_MAX_CHANNELS, .def = 0,
                    .flags = MB_PARAM_STRUCTURAL,
                    .help = "output channels; 0 = as many as the input"},
    [P_LATENCY] = {.id = "latency", .unit = "frames", .type = MB_PARAM_INT,
                   .min = 0, .max = 1 << 24, .def = 0,
                   .flags = MB_PARAM_STRUCTURAL,
                   .help = "latency the function adds (look-ahead), so the "
                           "graph can align around it"},
    [P_TAIL] = {.id = "tail", .unit = "s", .type = MB_PARAM_NUMBER, .min = 0,
                .max = 3600, .def = 0, .flags = MB_PARAM_STRUCTURAL,
                .help = "how long it keeps sounding after its input ends "
                        "(echoes, reverb): the render continues that long"},
};

const mb_module_desc mb_mod_lua = {
    .id = "lua",
    .summary = "process blocks with a Lua function (offline only)",
    .doc = "The prototyping escape hatch: `process` is called once per block "
           "with `block`, where `block[c][i]` is sample i of channel c "
           "(1-based) and `block.channels`, `block.frames`, `block.rate` "
           "and `block.time` (seconds) describe it; change the samples in "
           "place. Input channels beyond `channels` are dropped; missing "
           "ones repeat the last. A function that delays its signal declares "
           "it with `latency` (frames) so parallel paths stay aligned; one "
           "that keeps sounding after its input ends (an echo, a reverb) "
           "declares `tail` (seconds) so the render continues that long "
           "(capped by render{tail}). "
           "Offline only: live playback refuses it.",
    .inputs = inputs,
    .n_inputs = 1,
    .has_output = 1,
    .params = params,
    .n_params = 3,
    .state_size = sizeof(lua_state_mod),
    .flags = MB_MODULE_OFFLINE_ONLY,
    .channels = channels,
    .create = create,
    .process = process,
    .latency = latency,
    .tail = tail,
    .destroy = destroy,
};
