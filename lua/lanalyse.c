/* lanalyse.c - core.analyse(path [, opts]): the QC analysis of a file
 * (core/analyse.c, mb_analyse_file) as a Lua table.
 *
 *   local a = core.analyse("master.wav", { columns = 400, points = 600,
 *                                          bands = 120 })
 *
 * Levels are numbers in dB; the level of silence is -math.huge. Figures
 * that do not apply are nil: correlation and mono_drop of a mono file (and
 * correlation when a channel is silent, mono_drop when the stereo signal
 * has no integrated loudness), plr when the integrated loudness is -inf,
 * bits for lossy or companded encodings. Errors (a bad option, a missing
 * or unreadable file) raise "analyse: <message naming the file>". */
#include <math.h>
#include <string.h>

#include "lmoonbus.h"

#define ANALYSIS_MT "moonbus.analysis"

/* Errors are raised with lua_error on a pushed message: no position
 * information (as lmoonbus.c: `moonbus run` adds the user's script line). */

/* The options: integers, unknown keys refused (with a "did you mean"). The
 * ranges repeat mb_analyse_opts's (mb.h) so the message can name the
 * option rather than the file. */
static void get_opts(lua_State *L, int idx, mb_analyse_opts *o) {
  static const char *const keys[] = {"columns", "points", "bands"};
  static const int lo[] = {16, 1, 2}, hi[] = {4000, 1000000, 4000};
  int *dst[] = {&o->columns, &o->points, &o->bands};
  memset(o, 0, sizeof *o);
  if (lua_isnoneornil(L, idx))
    return;
  if (!lua_istable(L, idx)) {
    lua_pushfstring(L, "analyse: options must be a table, got %s",
                    luaL_typename(L, idx));
    lua_error(L);
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
    int ki = -1;
    for (int i = 0; i < 3; i++)
      if (strcmp(k, keys[i]) == 0)
        ki = i;
    if (ki < 0) {
      const char *s = mb_suggest(k, keys, 3);
      if (s)
        lua_pushfstring(L, "analyse: unknown option '%s'; did you mean '%s'?",
                        k, s);
      else
        lua_pushfstring(L,
                        "analyse: unknown option '%s' (known: columns, "
                        "points, bands)",
                        k);
      lua_error(L);
    }
    /* a number with an integral value (400 or 400.0; not "400") */
    int isint = 0;
    lua_Integer v =
        lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &isint) : 0;
    if (!isint || v < lo[ki] || v > hi[ki]) {
      lua_pushfstring(L,
                      "analyse: %s must be a whole number from %d to %d, "
                      "got %s",
                      k, lo[ki], hi[ki], luaL_tolstring(L, -1, NULL));
      lua_error(L);
    }
    *dst[ki] = (int)v;
    lua_pop(L, 1);
  }
}

/* The result lives in a userdata until the table is built, so a memory
 * error while building it cannot leak the C arrays. */
static int analysis_gc(lua_State *L) {
  mb_analysis_free(luaL_checkudata(L, 1, ANALYSIS_MT));
  return 0;
}

/* A figure: NaN (does not apply) leaves the field nil. */
static void set_num(lua_State *L, const char *k, double v) {
  if (isnan(v))
    return;
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static void set_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static void set_list(lua_State *L, const char *k, const double *v, int n) {
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushnumber(L, v[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, k);
}

/* Waveform values rounded to 4 decimals (1e-4 of full scale, -80 dB: finer
 * than any plot; keeps the JSON of 800 values short). */
static void set_wave(lua_State *L, const char *k, const float *v, int n) {
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushnumber(L, floor((double)v[i] * 1e4 + 0.5) / 1e4);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, k);
}

int mb_lua_analyse(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  mb_analyse_opts o;
  get_opts(L, 2, &o);
  lua_settop(L, 2);
  mb_analysis *a = lua_newuserdatauv(L, sizeof *a, 0); /* index 3 */
  memset(a, 0, sizeof *a);
  if (luaL_newmetatable(L, ANALYSIS_MT)) {
    lua_pushcfunction(L, analysis_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  char err[MB_ERRLEN];
  if (mb_analyse_file(path, &o, a, err, sizeof err)) {
    lua_pushfstring(L, "analyse: %s", err);
    return lua_error(L);
  }

  lua_createtable(L, 0, 40);
  lua_pushstring(L, path);
  lua_setfield(L, -2, "path");
  set_int(L, "rate", a->rate);
  set_int(L, "channels", a->channels);
  set_int(L, "frames", a->frames);
  set_num(L, "duration", a->duration);
  if (a->bits)
    set_int(L, "bits", a->bits);
  lua_pushboolean(L, a->is_float);
  lua_setfield(L, -2, "float");
  lua_pushstring(L, a->format);
  lua_setfield(L, -2, "format");

  set_num(L, "integrated", a->integrated);
  set_num(L, "lra", a->lra);
  set_num(L, "true_peak", a->true_peak);
  set_num(L, "sample_peak", a->sample_peak);
  set_num(L, "plr", a->plr);
  set_num(L, "short_term_max", a->short_term_max);
  set_num(L, "rms", a->rms);
  set_list(L, "rms_channels", a->rms_channels, a->channels);
  set_int(L, "clipped", a->clipped);
  set_int(L, "clip_runs", a->clip_runs);
  set_num(L, "dc", a->dc);
  set_num(L, "dc_db", a->dc_db);
  set_list(L, "dc_channels", a->dc_channels, a->channels);
  set_num(L, "correlation", a->correlation);
  set_num(L, "mono_drop", a->mono_drop);
  set_num(L, "head_silence", a->head_silence);
  set_num(L, "tail_silence", a->tail_silence);
  set_num(L, "silence_threshold", a->silence_threshold);

  lua_createtable(L, 0, 2);
  set_wave(L, "min", a->wave_min, a->columns);
  set_wave(L, "max", a->wave_max, a->columns);
  lua_setfield(L, -2, "wave");

  lua_createtable(L, 0, 2);
  set_num(L, "interval", a->short_interval);
  set_list(L, "values", a->short_term, a->n_short);
  lua_setfield(L, -2, "short_term");

  lua_createtable(L, 0, 3);
  set_list(L, "freq", a->freq, a->bands);
  set_list(L, "db", a->spectrum, a->bands);
  set_int(L, "fft_size", a->fft_size);
  lua_setfield(L, -2, "spectrum");

  mb_analysis_free(a); /* now; __gc later finds it empty */
  return 1;
}
