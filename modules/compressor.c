/* compressor.c - feed-forward compressor: peak/RMS detection, soft knee,
 * stereo link, look-ahead, external sidechain with high-pass, dry/wet. */
/* GCC 12's -O2 uses the "very cheap" vectoriser cost model, which refuses
 * loops needing an epilogue or an alias check: every per-block loop here.
 * The dynamic model vectorises them (4-5x faster); clang needs nothing. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=dynamic")
#endif

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsp/biquad.h"
#include "dsp/dynamics.h"
#include "dsp/ramp.h"
#include "mb_module.h"

enum {
  P_THRESHOLD, P_RATIO, P_ATTACK, P_RELEASE, P_KNEE, P_MAKEUP, P_AUTO_MAKEUP,
  P_DETECTOR, P_RMS_WINDOW, P_LINK, P_MIX, P_LOOKAHEAD, P_SC_HIGHPASS, NPARAMS
};
enum { IN, SC };

/* Sidechain filter history is flushed every FLUSH_STEP frames counted from
 * create/reset, so the result does not depend on block splits. */
#define FLUSH_STEP 1024
/* Auto makeup changes (threshold, ratio, knee moved during a render) ramp
 * over at least this long, even when the parameter itself jumps. */
#define MAKEUP_RAMP_S 0.010

typedef struct {
  double rate;
  int nch, max_frames;
  mb_dyn dyn;
  mb_dyn_config cfg;
  double makeup_db;
  int auto_makeup;
  mb_gramp makeup; /* linear */
  mb_ramp mix;
  int makeup_ramp_min;
  /* sidechain high-pass: 2nd-order Butterworth on the detector signal */
  double sc_hp; /* Hz, 0 = off */
  mb_biquad hp;
  mb_biquad_state hps;
  int64_t since_flush;
  /* look-ahead: the audio path is delayed by `la` frames, the detector not */
  int la, la_pos;
  float *ring;    /* nch * la */
  float *scratch; /* detector and gain signals (nch * max_frames each), the
                     per-frame mix coefficients (2 * max_frames) */
  float *det[MB_MAX_CHANNELS], *gain[MB_MAX_CHANNELS], *ca, *cb;
} comp_state;

static const char *const detectors[] = {"peak", "rms", NULL};

/* No subnormal output: a tiny input times a gain below 1 could be one. */
static inline float ftz(float v) {
  return fabsf(v) < 1.17549435e-38f ? 0.0f : v;
}

/* Half the reduction the curve gives at 0 dBFS: a stated, static estimate
 * of the level lost by material peaking near full scale. */
static double auto_makeup_db(const mb_dyn_config *c) {
  return -0.5 * mb_dyn_curve(c, 0.0, 0);
}

static double makeup_target(const comp_state *s) {
  return mb_db_to_lin(s->makeup_db +
                      (s->auto_makeup ? auto_makeup_db(&s->cfg) : 0));
}

static int channels(const mb_config *c, char *err, size_t errlen) {
  const int n = c->in_channels[IN], k = c->in_channels[SC];
  if (n <= 0) {
    snprintf(err, errlen, "nothing connected to in");
    return -1;
  }
  if (k > 1 && k != n) {
    snprintf(err, errlen,
             "sidechain has %d channels and in %d; they must match or the "
             "sidechain be mono",
             k, n);
    return -1;
  }
  return n;
}

static void set_hp(comp_state *s, double f) {
  if (s->sc_hp <= 0 || f <= 0) mb_biquad_clear(&s->hps);
  s->sc_hp = f;
  if (f > 0) mb_biquad_highpass(&s->hp, s->rate, f, M_SQRT1_2);
}

static void destroy(void *st) {
  comp_state *s = st;
  free(s->ring);
  free(s->scratch);
  s->ring = s->scratch = NULL;
}

static mb_status create(void *st, const mb_config *c, char *err,
                        size_t errlen) {
  comp_state *s = st;
  const double *v = c->values;
  s->rate = c->rate;
  s->nch = c->out_channels;
  s->max_frames = c->max_frames;
  if (v[P_SC_HIGHPASS] >= 0.45 * c->rate) {
    snprintf(err, errlen, "sc_highpass %g Hz is too high for %g Hz (below %g)",
             v[P_SC_HIGHPASS], c->rate, 0.45 * c->rate);
    return MB_ERR_ARG;
  }
  s->cfg = (mb_dyn_config){
      .kind = MB_DYN_COMPRESS,
      .threshold = v[P_THRESHOLD],
      .ratio = v[P_RATIO],
      .knee = v[P_KNEE],
      .range = 0,
      .attack = v[P_ATTACK],
      .release = v[P_RELEASE],
      .detector = v[P_DETECTOR] ? MB_DYN_RMS : MB_DYN_PEAK,
      .rms_window = v[P_RMS_WINDOW],
      .link = v[P_LINK],
  };
  mb_dyn_init(&s->dyn, c->rate, s->nch, &s->cfg);
  s->makeup_db = v[P_MAKEUP];
  s->auto_makeup = v[P_AUTO_MAKEUP] != 0;
  mb_gramp_init(&s->makeup, makeup_target(s));
  mb_ramp_init(&s->mix, v[P_MIX]);
  s->makeup_ramp_min = (int)lround(MAKEUP_RAMP_S * c->rate);
  s->sc_hp = 0;
  set_hp(s, v[P_SC_HIGHPASS]);
  s->la = (int)lround(v[P_LOOKAHEAD] * 1e-3 * c->rate);
  s->la_pos = 0;
  const size_t nf = (size_t)c->max_frames, nc = (size_t)s->nch;
  s->scratch = calloc(2 * nc * nf + 2 * nf, sizeof(float));
  if (s->la) s->ring = calloc(nc * (size_t)s->la, sizeof(float));
  if (!s->scratch || (s->la && !s->ring)) {
    destroy(s);
    snprintf(err, errlen, "out of memory");
    return MB_ERR_NOMEM;
  }
  for (size_t k = 0; k < nc; k++) {
    s->det[k] = s->scratch + k * nf;
    s->gain[k] = s->scratch + (nc + k) * nf;
  }
  s->ca = s->scratch + 2 * nc * nf;
  s->cb = s->ca + nf;
  return MB_OK;
}

static void set_param(void *st, int idx, double v, int ramp) {
  comp_state *s = st;
  int curve = 1;
  switch (idx) {
  case P_THRESHOLD: s->cfg.threshold = v; break;
  case P_RATIO: s->cfg.ratio = v; break;
  case P_KNEE: s->cfg.knee = v; break;
  case P_ATTACK: s->cfg.attack = v; curve = 0; break;
  case P_RELEASE: s->cfg.release = v; curve = 0; break;
  case P_DETECTOR:
    s->cfg.detector = v ? MB_DYN_RMS : MB_DYN_PEAK;
    curve = 0;
    break;
  case P_RMS_WINDOW: s->cfg.rms_window = v; curve = 0; break;
  case P_LINK: s->cfg.link = v; curve = 0; break;
  case P_SC_HIGHPASS: set_hp(s, v); return;
  case P_MIX: mb_ramp_to(&s->mix, v, ramp); return;
  case P_MAKEUP:
    s->makeup_db = v;
    mb_gramp_to(&s->makeup, makeup_target(s), ramp);
    return;
  case P_AUTO_MAKEUP:
    s->auto_makeup = v != 0;
    mb_gramp_to(&s->makeup, makeup_target(s),
                ramp > s->makeup_ramp_min ? ramp : s->makeup_ramp_min);
    return;
  default: return;
  }
  mb_dyn_set(&s->dyn, &s->cfg);
  if (curve && s->auto_makeup)
    mb_gramp_to(&s->makeup, makeup_target(s),
                ramp > s->makeup_ramp_min ? ramp : s->makeup_ramp_min);
}

/* Sidechain high-pass over frames [0, n) of src into s->det, flushing the
 * history at multiples of FLUSH_STEP frames since reset. */
static void run_hp(comp_state *s, const float *const *src, int n) {
  const mb_biquad *k[1] = {&s->hp};
  mb_biquad_state *h[1] = {&s->hps};
  int off = 0;
  while (off < n) {
    int m = n - off;
    const int64_t to_flush = FLUSH_STEP - s->since_flush;
    if (m > to_flush) m = (int)to_flush;
    mb_biquad_cascade(k, h, 1, src, s->det, s->nch, off, m);
    off += m;
    s->since_flush += m;
    if (s->since_flush == FLUSH_STEP) {
      mb_biquad_flush(&s->hps, s->nch);
      s->since_flush = 0;
    }
  }
}

static void process(void *st, const mb_block *b) {
  comp_state *s = st;
  const int n = b->frames, nch = s->nch;
  const float *const *x = b->in[IN];
  float *const *out = b->out;
  const float *src[MB_MAX_CHANNELS] = {0};
  const int k = b->in[SC] ? b->in_channels[SC] : 0;
  for (int c = 0; c < nch; c++)
    src[c] = k ? b->in[SC][k == 1 ? 0 : c] : x[c];
  if (s->sc_hp > 0) {
    run_hp(s, src, n);
    for (int c = 0; c < nch; c++) src[c] = s->det[c];
  }
  /* Gains first: every input is read before any output is written, so
   * in-place buffers work. */
  mb_dyn_process(&s->dyn, src, s->gain, n);

  /* Per frame: out = dry (1 - mix) + dry g makeup mix = dry (A + B g). */
  const int ramping = mb_ramp_active(&s->mix) || s->makeup.left > 0;
  float a = 0, bb = 0;
  if (ramping) {
    for (int i = 0; i < n; i++) {
      const double m = mb_ramp_next(&s->mix), mk = mb_gramp_next(&s->makeup);
      s->ca[i] = (float)(1 - m);
      s->cb[i] = (float)(m * mk);
    }
  } else {
    a = (float)(1 - s->mix.value);
    bb = (float)(s->mix.value * s->makeup.value);
  }
  for (int c = 0; c < nch; c++) {
    const float *xc = x[c], *g = s->gain[c];
    float *y = out[c];
    if (s->la) { /* out <- input delayed by la frames (in place is fine) */
      float *r = s->ring + (size_t)c * (size_t)s->la;
      int p = s->la_pos;
      for (int i = 0; i < n; i++) {
        const float v = xc[i];
        y[i] = r[p];
        r[p] = v;
        if (++p == s->la) p = 0;
      }
      xc = y;
    }
    if (ramping) {
      const float *ca = s->ca, *cb = s->cb;
      for (int i = 0; i < n; i++) y[i] = ftz(xc[i] * (ca[i] + cb[i] * g[i]));
    } else if (bb == 0.0f && a == 1.0f) { /* mix 0: dry, bit-exact */
      if (y != xc) memcpy(y, xc, sizeof(float) * (size_t)n);
    } else {
      for (int i = 0; i < n; i++) y[i] = ftz(xc[i] * (a + bb * g[i]));
    }
  }
  if (s->la) s->la_pos = (int)((s->la_pos + (int64_t)n) % s->la);
}

static void reset(void *st) {
  comp_state *s = st;
  mb_dyn_reset(&s->dyn);
  mb_gramp_init(&s->makeup, s->makeup.target);
  mb_ramp_init(&s->mix, s->mix.target);
  mb_biquad_clear(&s->hps);
  s->since_flush = 0;
  if (s->la) memset(s->ring, 0, sizeof(float) * (size_t)s->nch * (size_t)s->la);
  s->la_pos = 0;
}

static int latency(const void *st) { return ((const comp_state *)st)->la; }

static int results(const void *st, const char **names, double *values,
                   int max) {
  const comp_state *s = st;
  if (max < 1) return 0;
  names[0] = "max_gain_reduction";
  values[0] = s->dyn.max_gr;
  return 1;
}

static const mb_port_desc inputs[] = {
    [IN] = {.name = "in"},
    [SC] = {.name = "sidechain", .flags = MB_PORT_OPTIONAL},
};

static const mb_param_desc params[] = {
    [P_THRESHOLD] = {.id = "threshold", .unit = "dB", .type = MB_PARAM_NUMBER,
                     .min = -80, .max = 0, .def = -18,
                     .help = "level where compression starts (knee centre)"},
    [P_RATIO] = {.id = "ratio", .unit = "", .type = MB_PARAM_NUMBER,
                 .min = 1, .max = 100, .def = 2, .scale = MB_SCALE_LOG,
                 .help = "dB in per dB out above the threshold"},
    [P_ATTACK] = {.id = "attack", .unit = "ms", .type = MB_PARAM_NUMBER,
                  .min = 0, .max = 500, .def = 10,
                  .help = "time constant of the reduction growing"},
    [P_RELEASE] = {.id = "release", .unit = "ms", .type = MB_PARAM_NUMBER,
                   .min = 1, .max = 5000, .def = 150, .scale = MB_SCALE_LOG,
                   .help = "time constant of the reduction shrinking"},
    [P_KNEE] = {.id = "knee", .unit = "dB", .type = MB_PARAM_NUMBER,
                .min = 0, .max = 24, .def = 6,
                .help = "soft knee width around the threshold; 0 = hard"},
    [P_MAKEUP] = {.id = "makeup", .unit = "dB", .type = MB_PARAM_NUMBER,
                  .min = -24, .max = 24, .def = 0, .flags = MB_PARAM_SMOOTH,
                  .help = "gain after compression (wet path)"},
    [P_AUTO_MAKEUP] = {.id = "auto_makeup", .unit = "", .type = MB_PARAM_BOOL,
                       .min = 0, .max = 1, .def = 0,
                       .help = "add half the curve's reduction at 0 dBFS"},
    [P_DETECTOR] = {.id = "detector", .unit = "", .type = MB_PARAM_ENUM,
                    .min = 0, .max = 1, .def = 0, .choices = detectors,
                    .help = "peak (|x|) or rms (sine reads its peak)"},
    [P_RMS_WINDOW] = {.id = "rms_window", .unit = "ms",
                      .type = MB_PARAM_NUMBER, .min = 1, .max = 1000,
                      .def = 20, .scale = MB_SCALE_LOG,
                      .help = "RMS detector's averaging time constant"},
    [P_LINK] = {.id = "link", .unit = "", .type = MB_PARAM_NUMBER, .min = 0,
                .max = 1, .def = 1,
                .help = "0 channels independent .. 1 same gain on all"},
    [P_MIX] = {.id = "mix", .unit = "", .type = MB_PARAM_NUMBER, .min = 0,
               .max = 1, .def = 1, .flags = MB_PARAM_SMOOTH,
               .help = "0 dry only .. 1 compressed only (parallel)"},
    [P_LOOKAHEAD] = {.id = "lookahead", .unit = "ms", .type = MB_PARAM_NUMBER,
                     .min = 0, .max = 20, .def = 0,
                     .flags = MB_PARAM_STRUCTURAL,
                     .help = "delay of the audio against the detector "
                             "(reported latency)"},
    [P_SC_HIGHPASS] = {.id = "sc_highpass", .unit = "Hz",
                       .type = MB_PARAM_NUMBER, .min = 0, .max = 2000,
                       .def = 0,
                       .help = "detector high-pass (Butterworth, 12 dB/oct); "
                               "0 = off"},
};

const mb_module_desc mb_mod_compressor = {
    .id = "compressor",
    .summary = "feed-forward compressor with knee, link, look-ahead, sidechain",
    .doc =
        "Feed-forward compressor after Giannoulis, Massberg and Reiss (JAES "
        "2012). The detector reads the input, or the \"sidechain\" input "
        "when one is connected (mono or as many channels as \"in\"), "
        "optionally through a 2nd-order Butterworth high-pass "
        "(`sc_highpass`, so bass does not pump the mix). Level: `peak` is "
        "|x|; `rms` is a one-pole mean square with time constant "
        "`rms_window`, read so that a sine shows its peak level (AES17: a "
        "full-scale sine is 0 dBFS), hence a square reads 3.01 dB more in "
        "rms than in peak. Static curve, gain change in dB for level L: 0 "
        "below threshold T - knee/2; (1/ratio - 1)(L - T) above T + "
        "knee/2; in between the quadratic (1/ratio - 1)(L - T + knee/2)^2 "
        "/ (2 knee). The gain is smoothed in dB: after a level step up the "
        "reduction moves 1 - 1/e of its change in `attack` ms; after a "
        "step down to below the knee, 1 - 1/e of its change in `release` "
        "ms (a peak-hold stage refreshed at every waveform peak and "
        "released with `release` keeps steady tones ripple-free). `link` "
        "mixes each channel's own gain with the loudest channel's before "
        "smoothing: 1 gives all channels exactly the same gain, 0 "
        "independent channels. Output = dry (1 - mix) + compressed * "
        "makeup * mix, where dry is the input delayed like the compressed "
        "path: `mix` 0 passes the input bit-exact. `auto_makeup` adds half "
        "the curve's reduction at 0 dBFS to `makeup` (e.g. 4.5 dB at -18 "
        "dB, 2:1). `lookahead` delays the audio (not the detector) by "
        "round(lookahead rate / 1000) frames, reported as latency, so "
        "reduction starts that much before a transient. Makeup and mix "
        "changes ramp; threshold, ratio and knee move the curve at once "
        "(the gain is smoothed anyway, auto makeup ramps over 10 ms). "
        "Results: `max_gain_reduction`, the largest reduction in dB "
        "(positive) of the compressed path during the render.",
    .inputs = inputs,
    .n_inputs = 2,
    .has_output = 1,
    .params = params,
    .n_params = NPARAMS,
    .state_size = sizeof(comp_state),
    .channels = channels,
    .create = create,
    .set_param = set_param,
    .process = process,
    .reset = reset,
    .latency = latency,
    .results = results,
    .destroy = destroy,
};
