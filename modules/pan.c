/* pan.c - place a mono signal in the stereo field, or balance a stereo one,
 * with a choice of pan law. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dsp/ramp.h"
#include "mb_module.h"

enum { P_PAN, P_LAW };
enum { LAW_0, LAW_3, LAW_45, LAW_6 };

/* While the position moves, the gains follow it in straight segments of
 * this many frames (exact at each segment's end), so a slow sweep keeps
 * the law's curve without a sin() per frame. */
#define SEG 32

typedef struct {
  int nin; /* 1: pan, 2: balance */
  int law;
  mb_ramp pos;    /* pan position, -1..1 */
  mb_ramp gl, gr; /* gains now, linear */
} pan_state;

/* Mono-to-stereo gains of each law at position p. */
static void law_gains(int law, double p, double *l, double *r) {
  const double a = 0.5 * (1 - p), b = 0.5 * (1 + p); /* linear, -6 dB */
  /* constant power, -3 dB: sin rather than cos so each end is exactly 0 */
  const double sl = sin(0.5 * M_PI * a), sr = sin(0.5 * M_PI * b);
  switch (law) {
  case LAW_0:
    *l = fmin(1.0, 1 - p);
    *r = fmin(1.0, 1 + p);
    break;
  case LAW_3:
    *l = sl, *r = sr;
    break;
  case LAW_45: /* geometric mean of -3 and -6: -4.5 dB at centre */
    *l = sqrt(sl * a), *r = sqrt(sr * b);
    break;
  default:
    *l = a, *r = b;
    break;
  }
}

/* Gains applied at position p: the law for a mono input; for stereo, the
 * law divided by its centre value (unity at centre) and capped at 1, so
 * the side panned to stays at unity and the other follows the law. */
static void gains(const pan_state *s, double p, double *l, double *r) {
  law_gains(s->law, p, l, r);
  if (s->nin == 2) {
    double l0, r0;
    law_gains(s->law, 0.0, &l0, &r0);
    *l = fmin(1.0, *l / l0);
    *r = fmin(1.0, *r / r0);
  }
}

static inline float ftz(double v) {
  return fabs(v) < 1.1754943508222875e-38 ? 0.0f : (float)v;
}

static int channels(const mb_config *c, char *err, size_t errlen) {
  const int n = c->in_channels[0];
  if (n == 1 || n == 2) return 2;
  snprintf(err, errlen, "pan takes mono or stereo, got %d channels", n);
  return -1;
}

static void settle(pan_state *s, int ramp) {
  double l, r;
  gains(s, s->pos.target, &l, &r);
  mb_ramp_to(&s->gl, l, ramp);
  mb_ramp_to(&s->gr, r, ramp);
}

static mb_status create(void *st, const mb_config *c, char *err,
                        size_t errlen) {
  pan_state *s = st;
  (void)err, (void)errlen;
  s->nin = c->in_channels[0];
  s->law = (int)c->values[P_LAW];
  mb_ramp_init(&s->pos, c->values[P_PAN]);
  double l, r;
  gains(s, s->pos.value, &l, &r);
  mb_ramp_init(&s->gl, l);
  mb_ramp_init(&s->gr, r);
  return MB_OK;
}

static void set_param(void *st, int idx, double v, int ramp) {
  pan_state *s = st;
  if (idx == P_PAN) mb_ramp_to(&s->pos, v, ramp);
  if (idx == P_LAW) s->law = (int)v;
  if (mb_ramp_active(&s->pos)) {
    /* restart segments from the gains as they are now */
    s->gl.left = s->gr.left = 0;
  } else {
    settle(s, ramp);
  }
}

static void process(void *st, const mb_block *b) {
  pan_state *s = st;
  const int n = b->frames, nin = s->nin;
  const float *const *in = b->in[0];
  float *l = b->out[0], *r = b->out[1];
  const float *il = in[0], *ir = in[nin - 1];
  int i = 0;
  for (; i < n && (s->gl.left > 0 || s->pos.left > 0); i++) {
    if (s->gl.left == 0) {
      const int seg = s->pos.left < SEG ? s->pos.left : SEG;
      double tl, tr;
      gains(s, mb_ramp_skip(&s->pos, seg), &tl, &tr);
      mb_ramp_to(&s->gl, tl, seg);
      mb_ramp_to(&s->gr, tr, seg);
    }
    const double gl = mb_ramp_next(&s->gl), gr = mb_ramp_next(&s->gr);
    const double xl = il[i], xr = ir[i];
    l[i] = ftz(xl * gl);
    r[i] = ftz(xr * gr);
  }
  if (i == n) return;
  const float gl = (float)s->gl.value, gr = (float)s->gr.value;
  if (nin == 2 && gl == 1.0f && gr == 1.0f) { /* centre: bit-exact */
    if (l != il) memcpy(l + i, il + i, sizeof(float) * (size_t)(n - i));
    if (r != ir) memcpy(r + i, ir + i, sizeof(float) * (size_t)(n - i));
    return;
  }
  for (; i < n; i++) {
    const float xl = il[i], xr = ir[i];
    l[i] = ftz(xl * gl);
    r[i] = ftz(xr * gr);
  }
}

static void reset(void *st) {
  pan_state *s = st;
  mb_ramp_init(&s->pos, s->pos.target);
  settle(s, 0);
}

static const mb_port_desc inputs[] = {{.name = "in"}};

static const char *const law_choices[] = {"0", "-3", "-4.5", "-6", NULL};

static const mb_param_desc params[] = {
    [P_PAN] = {.id = "pan", .unit = "", .type = MB_PARAM_NUMBER, .min = -1,
               .max = 1, .def = 0, .flags = MB_PARAM_SMOOTH,
               .help = "position: -1 left, 0 centre, 1 right"},
    [P_LAW] = {.id = "law", .unit = "dB", .type = MB_PARAM_ENUM, .min = 0,
               .max = 3, .def = LAW_3, .flags = MB_PARAM_SMOOTH,
               .choices = law_choices,
               .help = "level of each side at centre (mono input): 0, -3 "
                       "(constant power), -4.5, -6 (linear)"},
};

const mb_module_desc mb_mod_pan = {
    .id = "pan",
    .summary = "pan mono to stereo, or balance stereo",
    .doc = "A mono input becomes stereo, placed by `pan` (-1 left .. 1 "
           "right) with the chosen law, named by each side's level at "
           "centre: \"-3\" is constant power (L = cos, R = sin of "
           "(p+1)pi/4), \"-6\" is linear (L = (1-p)/2, R = (1+p)/2), "
           "\"-4.5\" the geometric mean of those two, and \"0\" keeps both "
           "sides at unity at centre (L = min(1, 1-p), R = min(1, 1+p)). "
           "At either end the far side is exactly silent. A stereo input "
           "is balanced: the side panned towards stays at unity and the "
           "other is attenuated by the law divided by its centre value "
           "(for \"-3\", L = sqrt(2) cos((p+1)pi/4) when p > 0), so centre "
           "passes bit-exact under every law. Position changes and "
           "automation move smoothly along the law's curve; other channel "
           "counts are an error.",
    .inputs = inputs,
    .n_inputs = 1,
    .has_output = 1,
    .params = params,
    .n_params = 2,
    .state_size = sizeof(pan_state),
    .channels = channels,
    .create = create,
    .set_param = set_param,
    .process = process,
    .reset = reset,
};
