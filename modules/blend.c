/* blend.c - crossfade between a dry and a wet input (parallel processing). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dsp/ramp.h"
#include "mb_module.h"

enum { P_MIX };
enum { DRY, WET };

typedef struct {
  mb_ramp mix;
} blend_state;

static inline float ftz(double v) {
  return fabs(v) < 1.1754943508222875e-38 ? 0.0f : (float)v;
}

static int channels(const mb_config *c, char *err, size_t errlen) {
  const int d = c->in_channels[DRY], w = c->in_channels[WET];
  if (d == 0 && w == 0) {
    snprintf(err, errlen, "nothing connected to dry or wet");
    return -1;
  }
  if (d > 1 && w > 1 && d != w) {
    snprintf(err, errlen,
             "dry has %d channels and wet %d; they must match or one "
             "be mono",
             d, w);
    return -1;
  }
  return d > w ? d : w;
}

static mb_status create(void *st, const mb_config *c, char *err,
                        size_t errlen) {
  blend_state *s = st;
  (void)err, (void)errlen;
  mb_ramp_init(&s->mix, c->values[P_MIX]);
  return MB_OK;
}

static void set_param(void *st, int idx, double v, int ramp) {
  blend_state *s = st;
  if (idx == P_MIX) mb_ramp_to(&s->mix, v, ramp);
}

/* Channel c of a port: itself, the mono channel broadcast, or NULL for
 * silence (unconnected). */
static const float *port_ch(const mb_block *b, int p, int c) {
  if (!b->in[p] || b->in_channels[p] == 0) return NULL;
  return b->in[p][b->in_channels[p] == 1 ? 0 : c];
}

static void copy_or_zero(float *const *out, int nch, const mb_block *b,
                         int p, int from, int n) {
  for (int c = 0; c < nch; c++) {
    const float *x = port_ch(b, p, c);
    if (!x)
      memset(out[c] + from, 0, sizeof(float) * (size_t)(n - from));
    else if (out[c] != x)
      memcpy(out[c] + from, x + from, sizeof(float) * (size_t)(n - from));
  }
}

/* One frame: every input sample is read before any output is written, so
 * in-place buffers and a broadcast mono input cannot interfere. */
static inline void mix_frame(float *const *out, int nch, const float **dry,
                             const float **wet, int i, double m) {
  double d[MB_MAX_CHANNELS], w[MB_MAX_CHANNELS];
  for (int c = 0; c < nch; c++) d[c] = dry[c][i], w[c] = wet[c][i];
  for (int c = 0; c < nch; c++) out[c][i] = ftz(d[c] * (1 - m) + w[c] * m);
}

static void process(void *st, const mb_block *b) {
  blend_state *s = st;
  const int n = b->frames, nch = b->out_channels;
  float *const *out = b->out;
  const float *dry[MB_MAX_CHANNELS], *wet[MB_MAX_CHANNELS];
  for (int c = 0; c < nch; c++) {
    dry[c] = port_ch(b, DRY, c);
    wet[c] = port_ch(b, WET, c);
  }
  int i = 0;
  if (!dry[0] && !wet[0]) {
    copy_or_zero(out, nch, b, DRY, 0, n);
    return;
  }
  if (!dry[0] || !wet[0]) { /* one side silent: a gain on the other */
    const int p = dry[0] ? DRY : WET;
    const float **x = dry[0] ? dry : wet;
    for (; i < n && mb_ramp_active(&s->mix); i++) {
      const double m = mb_ramp_next(&s->mix), g = p == DRY ? 1 - m : m;
      double v[MB_MAX_CHANNELS];
      for (int c = 0; c < nch; c++) v[c] = x[c][i];
      for (int c = 0; c < nch; c++) out[c][i] = ftz(v[c] * g);
    }
    if (i == n) return;
    const double m = s->mix.value, g = p == DRY ? 1 - m : m;
    if (g == 1.0) {
      copy_or_zero(out, nch, b, p, i, n);
    } else if (g == 0.0) {
      copy_or_zero(out, nch, b, p == DRY ? WET : DRY, i, n);
    } else {
      for (; i < n; i++) {
        double v[MB_MAX_CHANNELS];
        for (int c = 0; c < nch; c++) v[c] = x[c][i];
        for (int c = 0; c < nch; c++) out[c][i] = ftz(v[c] * g);
      }
    }
    return;
  }
  for (; i < n && mb_ramp_active(&s->mix); i++)
    mix_frame(out, nch, dry, wet, i, mb_ramp_next(&s->mix));
  if (i == n) return;
  const double m = s->mix.value;
  if (m == 0.0) {
    copy_or_zero(out, nch, b, DRY, i, n); /* bit-exact */
  } else if (m == 1.0) {
    copy_or_zero(out, nch, b, WET, i, n);
  } else {
    for (; i < n; i++) mix_frame(out, nch, dry, wet, i, m);
  }
}

static void reset(void *st) {
  blend_state *s = st;
  mb_ramp_init(&s->mix, s->mix.target);
}

static const mb_port_desc inputs[] = {
    [DRY] = {.name = "dry", .flags = MB_PORT_OPTIONAL},
    [WET] = {.name = "wet", .flags = MB_PORT_OPTIONAL},
};

static const mb_param_desc params[] = {
    [P_MIX] = {.id = "mix", .unit = "", .type = MB_PARAM_NUMBER, .min = 0,
               .max = 1, .def = 0.5, .flags = MB_PARAM_SMOOTH,
               .help = "0 dry only .. 1 wet only"},
};

const mb_module_desc mb_mod_blend = {
    .id = "blend",
    .summary = "crossfade a dry and a wet input",
    .doc = "Mixes its two inputs, \"dry\" (the first) and \"wet\", "
           "linearly: out = dry (1 - mix) + wet mix. Mix 0 passes dry "
           "bit-exact and mix 1 passes wet bit-exact; changes ramp "
           "smoothly. Either input may be left unconnected (it counts as "
           "silence). The output has as many channels as the wider input; "
           "a mono input is used on every channel, other mismatches are an "
           "error. The graph aligns the two inputs in time, so a wet path "
           "with latency still lines up with the dry one.",
    .inputs = inputs,
    .n_inputs = 2,
    .has_output = 1,
    .params = params,
    .n_params = 1,
    .state_size = sizeof(blend_state),
    .channels = channels,
    .create = create,
    .set_param = set_param,
    .process = process,
    .reset = reset,
};
