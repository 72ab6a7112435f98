/* width.c - stereo width through mid/side, with mono bass. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dsp/biquad.h"
#include "dsp/ramp.h"
#include "mb_module.h"

enum { P_WIDTH, P_MONO_BELOW };

/* The side's high-pass: Linkwitz-Riley 4, i.e. the same Butterworth
 * second-order section (Q = 1/sqrt 2, Audio EQ Cookbook) run twice, in
 * transposed direct form II on the one side signal. */
static inline double hp_run(const mb_biquad *k, double *z, double x) {
  const double y = k->b0 * x + z[0];
  z[0] = k->b1 * x - k->a1 * y + z[1];
  z[1] = k->b2 * x - k->a2 * y;
  /* keep decaying state out of the subnormal range (-600 dB) */
  if (fabs(z[0]) < 1e-30) z[0] = 0;
  if (fabs(z[1]) < 1e-30) z[1] = 0;
  return y;
}

typedef struct {
  double rate;
  mb_ramp w;
  double mono_below; /* Hz, 0 = off */
  mb_biquad k;
  double z[2][2]; /* two cascaded sections */
} width_state;

static inline float ftz(double v) {
  return fabs(v) < 1.1754943508222875e-38 ? 0.0f : (float)v;
}

static int channels(const mb_config *c, char *err, size_t errlen) {
  if (c->in_channels[0] == 2) return 2;
  snprintf(err, errlen, "width takes stereo, got %d channels",
           c->in_channels[0]);
  return -1;
}

static void set_mono_below(width_state *s, double f) {
  if (f > 0.45 * s->rate) f = 0.45 * s->rate;
  if (s->mono_below <= 0 || f <= 0) memset(s->z, 0, sizeof s->z);
  s->mono_below = f;
  if (f > 0) mb_biquad_highpass(&s->k, s->rate, f, M_SQRT1_2);
}

static mb_status create(void *st, const mb_config *c, char *err,
                        size_t errlen) {
  width_state *s = st;
  s->rate = c->rate;
  if (c->values[P_MONO_BELOW] >= 0.45 * c->rate) {
    snprintf(err, errlen, "mono_below %g Hz is too high for %g Hz",
             c->values[P_MONO_BELOW], c->rate);
    return MB_ERR_ARG;
  }
  mb_ramp_init(&s->w, c->values[P_WIDTH]);
  set_mono_below(s, c->values[P_MONO_BELOW]);
  return MB_OK;
}

static void set_param(void *st, int idx, double v, int ramp) {
  width_state *s = st;
  if (idx == P_WIDTH) mb_ramp_to(&s->w, v, ramp);
  if (idx == P_MONO_BELOW) set_mono_below(s, v);
}

static void process(void *st, const mb_block *b) {
  width_state *s = st;
  const int n = b->frames;
  const float *il = b->in[0][0], *ir = b->in[0][1];
  float *l = b->out[0], *r = b->out[1];
  const int hp = s->mono_below > 0;
  if (!hp && !mb_ramp_active(&s->w) && s->w.value == 1.0) {
    if (l != il) memcpy(l, il, sizeof(float) * (size_t)n);
    if (r != ir) memcpy(r, ir, sizeof(float) * (size_t)n);
    return;
  }
  /* In double: M and S are exact, so width 1 gives back L and R exactly
   * and width 0 gives L == R == M. */
  for (int i = 0; i < n; i++) {
    const double w = mb_ramp_next(&s->w);
    const double x = il[i], y = ir[i];
    const double m = 0.5 * (x + y);
    double sd = 0.5 * (x - y);
    if (hp) sd = hp_run(&s->k, s->z[1], hp_run(&s->k, s->z[0], sd));
    l[i] = ftz(m + w * sd);
    r[i] = ftz(m - w * sd);
  }
}

static void reset(void *st) {
  width_state *s = st;
  mb_ramp_init(&s->w, s->w.target);
  memset(s->z, 0, sizeof s->z);
}

static const mb_port_desc inputs[] = {{.name = "in"}};

static const mb_param_desc params[] = {
    [P_WIDTH] = {.id = "width", .unit = "", .type = MB_PARAM_NUMBER,
                 .min = 0, .max = 2, .def = 1, .flags = MB_PARAM_SMOOTH,
                 .help = "side level: 0 mono, 1 unchanged, 2 double"},
    [P_MONO_BELOW] = {.id = "mono_below", .unit = "Hz",
                      .type = MB_PARAM_NUMBER, .min = 0, .max = 2000,
                      .def = 0,
                      .help = "side removed below this (LR4 high-pass); "
                              "0 = off"},
};

const mb_module_desc mb_mod_width = {
    .id = "width",
    .summary = "stereo width via mid/side, mono bass",
    .doc = "Splits stereo into M = (L + R) / 2 and S = (L - R) / 2, scales "
           "S by `width` and recombines: L = M + width S, R = M - width S. "
           "Width 0 is mono (L and R exactly equal), 1 passes bit-exact, 2 "
           "doubles the side. With `mono_below` above 0 the side first "
           "goes through a 4th-order Linkwitz-Riley high-pass (two "
           "Butterworth 2nd-order sections; -6 dB at the frequency, 24 "
           "dB/octave below), so the low end becomes mono while M is "
           "untouched. Width changes ramp smoothly; a mono_below change "
           "takes effect at once. Stereo only.",
    .inputs = inputs,
    .n_inputs = 1,
    .has_output = 1,
    .params = params,
    .n_params = 2,
    .state_size = sizeof(width_state),
    .channels = channels,
    .create = create,
    .set_param = set_param,
    .process = process,
    .reset = reset,
};
