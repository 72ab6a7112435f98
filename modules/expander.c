/* expander.c - downward expander and gate with range, hold, hysteresis. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dsp/dynamics.h"
#include "mb_module.h"

enum {
  P_THRESHOLD, P_RATIO, P_RANGE, P_ATTACK, P_RELEASE, P_HOLD, P_HYSTERESIS,
  P_KNEE, P_DETECTOR, P_RMS_WINDOW, P_LINK, NPARAMS
};

#define CH 256

typedef struct {
  int nch;
  mb_dyn dyn;
  mb_dyn_config cfg;
  /* gains for one stretch of frames; process() works in stretches of CH */
  float gain[MB_MAX_CHANNELS][CH];
} exp_state;

static const char *const detectors[] = {"peak", "rms", NULL};

static inline float ftz(float v) {
  return fabsf(v) < 1.17549435e-38f ? 0.0f : v;
}

static mb_status create(void *st, const mb_config *c, char *err,
                        size_t errlen) {
  exp_state *s = st;
  const double *v = c->values;
  (void)err, (void)errlen;
  s->nch = c->out_channels;
  s->cfg = (mb_dyn_config){
      .kind = MB_DYN_EXPAND,
      .threshold = v[P_THRESHOLD],
      .ratio = v[P_RATIO],
      .knee = v[P_KNEE],
      .range = v[P_RANGE],
      .attack = v[P_ATTACK],
      .release = v[P_RELEASE],
      .hold = v[P_HOLD],
      .hysteresis = v[P_HYSTERESIS],
      .detector = v[P_DETECTOR] ? MB_DYN_RMS : MB_DYN_PEAK,
      .rms_window = v[P_RMS_WINDOW],
      .link = v[P_LINK],
  };
  mb_dyn_init(&s->dyn, c->rate, s->nch, &s->cfg);
  return MB_OK;
}

static void set_param(void *st, int idx, double v, int ramp) {
  exp_state *s = st;
  (void)ramp; /* the gain is smoothed anyway */
  switch (idx) {
  case P_THRESHOLD: s->cfg.threshold = v; break;
  case P_RATIO: s->cfg.ratio = v; break;
  case P_RANGE: s->cfg.range = v; break;
  case P_ATTACK: s->cfg.attack = v; break;
  case P_RELEASE: s->cfg.release = v; break;
  case P_HOLD: s->cfg.hold = v; break;
  case P_HYSTERESIS: s->cfg.hysteresis = v; break;
  case P_KNEE: s->cfg.knee = v; break;
  case P_DETECTOR: s->cfg.detector = v ? MB_DYN_RMS : MB_DYN_PEAK; break;
  case P_RMS_WINDOW: s->cfg.rms_window = v; break;
  case P_LINK: s->cfg.link = v; break;
  default: return;
  }
  mb_dyn_set(&s->dyn, &s->cfg);
}

static void process(void *st, const mb_block *b) {
  exp_state *s = st;
  const int nch = s->nch;
  float *g[MB_MAX_CHANNELS];
  for (int c = 0; c < nch; c++) g[c] = s->gain[c];
  for (int off = 0; off < b->frames; off += CH) {
    const int m = b->frames - off < CH ? b->frames - off : CH;
    const float *det[MB_MAX_CHANNELS];
    for (int c = 0; c < nch; c++) det[c] = b->in[0][c] + off;
    /* gains before output: in-place buffers work */
    mb_dyn_process(&s->dyn, det, g, m);
    for (int c = 0; c < nch; c++) {
      const float *x = det[c], *gc = g[c];
      float *y = b->out[c] + off;
      for (int i = 0; i < m; i++) y[i] = ftz(x[i] * gc[i]);
    }
  }
}

static void reset(void *st) {
  exp_state *s = st;
  mb_dyn_reset(&s->dyn);
}

static int results(const void *st, const char **names, double *values,
                   int max) {
  const exp_state *s = st;
  if (max < 1) return 0;
  names[0] = "max_gain_reduction";
  values[0] = s->dyn.max_gr;
  return 1;
}

static const mb_port_desc inputs[] = {{.name = "in"}};

static const mb_param_desc params[] = {
    [P_THRESHOLD] = {.id = "threshold", .unit = "dB", .type = MB_PARAM_NUMBER,
                     .min = -120, .max = 0, .def = -50,
                     .help = "level below which the gain falls (opens here)"},
    [P_RATIO] = {.id = "ratio", .unit = "", .type = MB_PARAM_NUMBER,
                 .min = 1, .max = 100, .def = 2, .scale = MB_SCALE_LOG,
                 .help = "dB out per dB in below the threshold; large = gate"},
    [P_RANGE] = {.id = "range", .unit = "dB", .type = MB_PARAM_NUMBER,
                 .min = 0.1, .max = 120, .def = 40,
                 .help = "largest reduction"},
    [P_ATTACK] = {.id = "attack", .unit = "ms", .type = MB_PARAM_NUMBER,
                  .min = 0, .max = 500, .def = 1,
                  .help = "time constant of opening (level rising)"},
    [P_RELEASE] = {.id = "release", .unit = "ms", .type = MB_PARAM_NUMBER,
                   .min = 1, .max = 5000, .def = 100, .scale = MB_SCALE_LOG,
                   .help = "time constant of closing (level falling)"},
    [P_HOLD] = {.id = "hold", .unit = "ms", .type = MB_PARAM_NUMBER,
                .min = 0, .max = 2000, .def = 10,
                .help = "wait after the last peak before releasing"},
    [P_HYSTERESIS] = {.id = "hysteresis", .unit = "dB",
                      .type = MB_PARAM_NUMBER, .min = 0, .max = 24, .def = 3,
                      .help = "closes this far below where it opens"},
    [P_KNEE] = {.id = "knee", .unit = "dB", .type = MB_PARAM_NUMBER,
                .min = 0, .max = 24, .def = 0,
                .help = "soft knee width around the threshold; 0 = hard"},
    [P_DETECTOR] = {.id = "detector", .unit = "", .type = MB_PARAM_ENUM,
                    .min = 0, .max = 1, .def = 0, .choices = detectors,
                    .help = "peak (|x|) or rms (sine reads its peak)"},
    [P_RMS_WINDOW] = {.id = "rms_window", .unit = "ms",
                      .type = MB_PARAM_NUMBER, .min = 1, .max = 1000,
                      .def = 20, .scale = MB_SCALE_LOG,
                      .help = "RMS detector's averaging time constant"},
    [P_LINK] = {.id = "link", .unit = "", .type = MB_PARAM_NUMBER, .min = 0,
                .max = 1, .def = 1,
                .help = "0 channels independent .. 1 loudest opens all"},
};

const mb_module_desc mb_mod_expander = {
    .id = "expander",
    .summary = "downward expander and gate with range, hold, hysteresis",
    .doc =
        "Downward expander (a gate at large ratios), on the engine of the "
        "compressor (same detectors: `peak` |x|, `rms` read so that a sine "
        "shows its peak level). Static curve, gain change in dB for level "
        "L and threshold T: 0 above T + knee/2; (ratio - 1)(L - T) below T "
        "- knee/2; the quadratic -(ratio - 1)(L - T - knee/2)^2 / (2 knee) "
        "in between; never below -range. Hysteresis: the gate opens when "
        "the level reaches `threshold` and then uses threshold - "
        "`hysteresis` as its curve's threshold until a held level (the "
        "last peak, kept `hold` ms, then released with `release`) falls "
        "below it, so a level wobbling around the threshold does not "
        "chatter. Timing: after a level rise the reduction shrinks 1 - 1/e "
        "of its change in `attack` ms; after the level falls it stays for "
        "`hold` ms after the last peak, then grows 1 - 1/e of its change "
        "in `release` ms. `link` 1 gives all channels the gain of the "
        "loudest (one loud channel keeps the gate open for all). Results: "
        "`max_gain_reduction`, the largest reduction in dB (positive) "
        "during the render. No latency.",
    .inputs = inputs,
    .n_inputs = 1,
    .has_output = 1,
    .params = params,
    .n_params = NPARAMS,
    .state_size = sizeof(exp_state),
    .create = create,
    .set_param = set_param,
    .process = process,
    .reset = reset,
    .results = results,
};
