/* multiband.c - multiband compressor: Linkwitz-Riley 4 crossovers (2 to 5
 * bands that sum to an all-pass), a compressor per band (the shared gain
 * engine, modules/dsp/dynamics), per-band bypass and solo, stereo or
 * mid/side. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsp/crossover.h"
#include "dsp/dynamics.h"
#include "dsp/ramp.h"
#include "mb_module.h"

#define NB (MB_XOVER_MAX + 1) /* bands */
/* Frames per internal chunk: the band signals and gains of a chunk stay in
 * the L1 cache (5 bands x 2 channels x 2 buffers x 1 KiB). */
#define CH 256
_Static_assert(CH % 4 == 0, "chunks are whole 4-float vectors");

enum { F_THRESHOLD, F_RATIO, F_ATTACK, F_RELEASE, F_KNEE, F_MAKEUP, F_BYPASS,
       F_SOLO, NFIELD };
enum {
  P_XO1 = 0, /* crossover1..4 */
  P_BAND = MB_XOVER_MAX, /* band fields, NFIELD per band */
  P_MODE = P_BAND + NB * NFIELD,
  P_LINK,
  P_DETECTOR,
  P_RMS_WINDOW,
  NPARAMS
};
enum { MODE_STEREO, MODE_MS };

/* With no crossover given: three bands, a common split for mastering. */
static const double default_xo[] = {200, 2000};

typedef struct band {
  mb_dyn dyn;
  mb_dyn_config cfg;
  mb_gramp makeup; /* linear gain */
  mb_ramp byp;     /* 1 = bypassed: the band passes with gain 1 */
  mb_ramp w;       /* 0 = muted because another band is soloed */
  int solo;
  int filled;      /* ca/cb hold the constants fa/fb over all CH frames */
  float fa, fb;
} band;

typedef struct mband_state {
  double rate;
  int nch, nb, mode;
  mb_crossover xo;
  band b[NB];
  float *mem;
  float *bandbuf[NB][MB_MAX_CHANNELS]; /* CH frames each */
  float *gain[NB][MB_MAX_CHANNELS];
  float *msbuf[2];
  float *ca[NB], *cb[NB]; /* per-frame gain terms A, B (see run_chunk) */
} mband_state;

static const char *const modes[] = {"stereo", "ms", NULL};
static const char *const detectors[] = {"peak", "rms", NULL};

static inline float ftz(float v) { return fabsf(v) < FLT_MIN ? 0.0f : v; }

/* --- parameters --------------------------------------------------------- */

/* The crossovers given: a leading run of non-zero values. Returns the count
 * (0: none given) or -1 with a message. */
static int crossovers_of(const double *v, double *f, char *err,
                         size_t errlen) {
  int n = 0;
  while (n < MB_XOVER_MAX && v[P_XO1 + n] != 0) {
    f[n] = v[P_XO1 + n];
    n++;
  }
  for (int i = n; i < MB_XOVER_MAX; i++)
    if (v[P_XO1 + i] != 0) {
      snprintf(err, errlen,
               "crossover%d is %g Hz but crossover%d is not set (0): give "
               "crossovers in order, e.g. crossovers = {200, 2000}",
               i + 1, v[P_XO1 + i], n + 1);
      return -1;
    }
  return n;
}

static int channels(const mb_config *c, char *err, size_t errlen) {
  const int n = c->in_channels[0];
  if (n <= 0) {
    snprintf(err, errlen, "nothing connected to in");
    return -1;
  }
  if ((int)c->values[P_MODE] == MODE_MS && n != 2) {
    snprintf(err, errlen, "mode \"ms\" takes stereo, got %d channel%s", n,
             n == 1 ? "" : "s");
    return -1;
  }
  return n;
}

static void apply_cfg(band *b) { mb_dyn_set(&b->dyn, &b->cfg); }

/* Solo: with any band soloed, the others fade out over `ramp` frames. */
static void update_solo(mband_state *s, int ramp) {
  int any = 0;
  for (int i = 0; i < s->nb; i++) any |= s->b[i].solo;
  for (int i = 0; i < s->nb; i++) {
    band *b = &s->b[i];
    const double t = !any || b->solo ? 1.0 : 0.0;
    if (b->w.target != t) mb_ramp_to(&b->w, t, ramp);
  }
}

static void destroy(void *st) {
  mband_state *s = st;
  free(s->mem);
  s->mem = NULL;
}

static mb_status create(void *st, const mb_config *c, char *err,
                        size_t errlen) {
  mband_state *s = st;
  const double *v = c->values;
  double f[MB_XOVER_MAX];
  int n = crossovers_of(v, f, err, errlen);
  if (n < 0) return MB_ERR_ARG;
  if (n == 0) {
    n = (int)(sizeof default_xo / sizeof default_xo[0]);
    memcpy(f, default_xo, sizeof default_xo);
  }
  s->rate = c->rate;
  s->nch = c->out_channels;
  s->nb = n + 1;
  s->mode = (int)v[P_MODE];
  mb_status st2 = mb_crossover_init(&s->xo, c->rate, s->nch, f, n, err, errlen);
  if (st2) return st2;
  for (int i = 0; i < NB; i++) {
    band *b = &s->b[i];
    const double *bv = v + P_BAND + i * NFIELD;
    b->cfg = (mb_dyn_config){
        .kind = MB_DYN_COMPRESS,
        .threshold = bv[F_THRESHOLD],
        .ratio = bv[F_RATIO],
        .knee = bv[F_KNEE],
        .attack = bv[F_ATTACK],
        .release = bv[F_RELEASE],
        .detector = v[P_DETECTOR] ? MB_DYN_RMS : MB_DYN_PEAK,
        .rms_window = v[P_RMS_WINDOW],
        /* mid and side are compressed separately */
        .link = s->mode == MODE_MS ? 0 : v[P_LINK],
    };
    mb_dyn_init(&b->dyn, c->rate, s->nch, &b->cfg);
    mb_gramp_init(&b->makeup, mb_db_to_lin(bv[F_MAKEUP]));
    mb_ramp_init(&b->byp, bv[F_BYPASS] != 0);
    mb_ramp_init(&b->w, 1);
    b->solo = bv[F_SOLO] != 0;
  }
  update_solo(s, 0);
  const size_t nb = (size_t)s->nb, nc = (size_t)s->nch;
  s->mem = calloc(2 * nb * nc * CH + 2 * CH + 2 * nb * CH, sizeof(float));
  if (!s->mem) {
    snprintf(err, errlen, "out of memory");
    return MB_ERR_NOMEM;
  }
  float *p = s->mem;
  for (size_t b = 0; b < nb; b++)
    for (size_t k = 0; k < nc; k++) {
      s->bandbuf[b][k] = p, p += CH;
      s->gain[b][k] = p, p += CH;
    }
  s->msbuf[0] = p, p += CH;
  s->msbuf[1] = p, p += CH;
  for (size_t b = 0; b < nb; b++) {
    s->ca[b] = p, p += CH;
    s->cb[b] = p, p += CH;
  }
  return MB_OK;
}

static void set_param(void *st, int idx, double v, int ramp) {
  mband_state *s = st;
  if (idx >= P_BAND && idx < P_MODE) {
    const int i = (idx - P_BAND) / NFIELD;
    band *b = &s->b[i];
    switch ((idx - P_BAND) % NFIELD) {
    case F_THRESHOLD: b->cfg.threshold = v; break;
    case F_RATIO: b->cfg.ratio = v; break;
    case F_ATTACK: b->cfg.attack = v; break;
    case F_RELEASE: b->cfg.release = v; break;
    case F_KNEE: b->cfg.knee = v; break;
    case F_MAKEUP: mb_gramp_to(&b->makeup, mb_db_to_lin(v), ramp); return;
    case F_BYPASS: mb_ramp_to(&b->byp, v != 0, ramp); return;
    case F_SOLO:
      b->solo = v != 0;
      update_solo(s, ramp);
      return;
    }
    apply_cfg(b);
    return;
  }
  for (int i = 0; i < NB; i++) {
    band *b = &s->b[i];
    switch (idx) {
    case P_LINK: b->cfg.link = s->mode == MODE_MS ? 0 : v; break;
    case P_DETECTOR: b->cfg.detector = v ? MB_DYN_RMS : MB_DYN_PEAK; break;
    case P_RMS_WINDOW: b->cfg.rms_window = v; break;
    default: return;
    }
    apply_cfg(b);
  }
}

/* --- processing ----------------------------------------------------------- */

static int ramping(const band *b) {
  return b->makeup.left > 0 || b->byp.left > 0 || b->w.left > 0;
}

/* Four floats per vector (GCC vector extension; 16 bytes, the baseline
 * x86-64 and ARM register width, so no ABI change without AVX): the
 * per-frame loops below use it explicitly, since -O2 leaves loops with a
 * remainder and possibly aliased pointers scalar. */
typedef float v4f __attribute__((vector_size(16)));
typedef int v4i __attribute__((vector_size(16)));

static inline v4f ld4(const float *p) {
  v4f v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline void st4(float *p, v4f v) { memcpy(p, &v, sizeof v); }

/* Zero where |v| < FLT_MIN (the exponent field is zero): no subnormals. */
static inline v4f ftz4(v4f v) {
  const v4i b = (v4i)v;
  return (v4f)(b & ~((b & 0x7fffffff) < 0x00800000));
}

/* One chunk: frames off..off+m-1 of the block, m <= CH, and no ramp ends
 * inside it (so what is decided per chunk is decided per frame). */
static void run_chunk(mband_state *s, const mb_block *blk, int off, int m) {
  const int nch = s->nch, nb = s->nb, ms = s->mode == MODE_MS;
  const float *src[MB_MAX_CHANNELS] = {0};
  if (ms) { /* M = (L + R)/2, S = (L - R)/2 */
    const float *l = blk->in[0][0] + off, *r = blk->in[0][1] + off;
    float *mid = s->msbuf[0], *side = s->msbuf[1];
    const v4f h = {0.5f, 0.5f, 0.5f, 0.5f};
    int k = 0;
    for (; k + 4 <= m; k += 4) {
      const v4f a = ld4(l + k), b = ld4(r + k);
      st4(mid + k, h * (a + b));
      st4(side + k, h * (a - b));
    }
    for (; k < m; k++) {
      mid[k] = 0.5f * (l[k] + r[k]);
      side[k] = 0.5f * (l[k] - r[k]);
    }
    src[0] = mid, src[1] = side;
  } else {
    for (int c = 0; c < nch; c++) src[c] = blk->in[0][c] + off;
  }
  float *const *bands[NB] = {0};
  for (int b = 0; b < nb; b++) bands[b] = s->bandbuf[b];
  mb_crossover_split(&s->xo, src, bands, m);

  /* Gains, and per frame and band the terms of out = sum over bands of
   * band x (A + B g): A = w byp (the bypassed share), B = w (1 - byp)
   * makeup; w is the solo weight. */
  int act[NB], na = 0;
  for (int i = 0; i < nb; i++) {
    band *b = &s->b[i];
    float *ca = s->ca[i], *cb = s->cb[i];
    const float *const *x = (const float *const *)s->bandbuf[i];
    if (ramping(b)) {
      mb_dyn_process(&b->dyn, x, s->gain[i], m);
      for (int k = 0; k < m; k++) {
        const double w = mb_ramp_next(&b->w), y = mb_ramp_next(&b->byp);
        const double mk = mb_gramp_next(&b->makeup);
        ca[k] = (float)(w * y);
        cb[k] = (float)(w * (1 - y) * mk);
      }
      b->filled = 0;
    } else {
      const double w = b->w.value, y = b->byp.value;
      const float A = (float)(w * y), B = (float)(w * (1 - y) * b->makeup.value);
      if (A == 0.0f && B == 0.0f) continue; /* muted by a solo elsewhere */
      if (y != 1) /* a fully bypassed band's compressor rests */
        mb_dyn_process(&b->dyn, x, s->gain[i], m);
      if (!b->filled || b->fa != A || b->fb != B) {
        const v4f a = {A, A, A, A}, bb = {B, B, B, B};
        for (int k = 0; k < CH; k += 4) st4(ca + k, a), st4(cb + k, bb);
        b->filled = 1, b->fa = A, b->fb = B;
      }
    }
    act[na++] = i;
  }
  /* The input has been read (split, M/S): the output may be the same
   * buffer. In M/S mode the sums are M and S, decoded below. A last
   * partial vector is computed whole (the scratch buffers hold CH frames)
   * and stored lane by lane: every frame takes the same arithmetic (and
   * multiply-add contraction) wherever the block boundaries fall. */
  for (int c = 0; c < nch; c++) {
    float *y = blk->out[c] + off;
    for (int k = 0; k < m; k += 4) {
      v4f acc = {0};
      for (int j = 0; j < na; j++) {
        const int i = act[j];
        acc += ld4(s->bandbuf[i][c] + k) *
               (ld4(s->ca[i] + k) + ld4(s->cb[i] + k) * ld4(s->gain[i][c] + k));
      }
      if (!ms) acc = ftz4(acc);
      if (k + 4 <= m)
        st4(y + k, acc);
      else
        for (int q = 0; q < m - k; q++) y[k + q] = acc[q];
    }
  }
  if (ms) { /* L = M + S, R = M - S */
    float *l = blk->out[0] + off, *r = blk->out[1] + off;
    int k = 0;
    for (; k + 4 <= m; k += 4) {
      const v4f a = ld4(l + k), b = ld4(r + k);
      st4(l + k, ftz4(a + b));
      st4(r + k, ftz4(a - b));
    }
    for (; k < m; k++) {
      const float a = l[k], b = r[k];
      l[k] = ftz(a + b);
      r[k] = ftz(a - b);
    }
  }
}

static void process(void *st, const mb_block *blk) {
  mband_state *s = st;
  if (!blk->in[0]) { /* nothing connected: silence */
    for (int c = 0; c < blk->out_channels; c++)
      memset(blk->out[c], 0, sizeof(float) * (size_t)blk->frames);
    return;
  }
  int i = 0;
  while (i < blk->frames) {
    int k = blk->frames - i < CH ? blk->frames - i : CH;
    for (int j = 0; j < s->nb; j++) {
      const band *b = &s->b[j];
      if (b->makeup.left > 0 && b->makeup.left < k) k = b->makeup.left;
      if (b->byp.left > 0 && b->byp.left < k) k = b->byp.left;
      if (b->w.left > 0 && b->w.left < k) k = b->w.left;
    }
    run_chunk(s, blk, i, k);
    i += k;
  }
}

static void reset(void *st) {
  mband_state *s = st;
  mb_crossover_reset(&s->xo);
  for (int i = 0; i < NB; i++) {
    band *b = &s->b[i];
    mb_dyn_reset(&b->dyn);
    mb_gramp_init(&b->makeup, b->makeup.target);
    mb_ramp_init(&b->byp, b->byp.target);
    mb_ramp_init(&b->w, b->w.target);
  }
}

static int results(const void *st, const char **names, double *values,
                   int max) {
  static const char *const per_band[NB] = {
      "max_gain_reduction1", "max_gain_reduction2", "max_gain_reduction3",
      "max_gain_reduction4", "max_gain_reduction5"};
  const mband_state *s = st;
  int n = 0;
  double all = 0;
  for (int i = 0; i < s->nb; i++) all = fmax(all, s->b[i].dyn.max_gr);
  if (n < max) names[n] = "max_gain_reduction", values[n++] = all;
  for (int i = 0; i < s->nb && n < max; i++)
    names[n] = per_band[i], values[n++] = s->b[i].dyn.max_gr;
  return n;
}

/* --- descriptor ------------------------------------------------------------ */

#define XO(i)                                                               \
  {.id = "crossover" #i, .unit = "Hz", .type = MB_PARAM_NUMBER, .min = 0,   \
   .max = 96000, .def = 0, .flags = MB_PARAM_STRUCTURAL,                    \
   .help = "crossover i (0 = none); 10 Hz .. below 0.45 x rate, rising"}

#define BAND(i)                                                             \
  {.id = "threshold" #i, .unit = "dB", .type = MB_PARAM_NUMBER, .min = -80, \
   .max = 0, .def = -18,                                                    \
   .help = "band i: level where compression starts (knee centre)"},         \
  {.id = "ratio" #i, .unit = "", .type = MB_PARAM_NUMBER, .min = 1,         \
   .max = 100, .def = 2, .scale = MB_SCALE_LOG,                             \
   .help = "band i: dB in per dB out above the threshold"},                 \
  {.id = "attack" #i, .unit = "ms", .type = MB_PARAM_NUMBER, .min = 0,      \
   .max = 500, .def = 10,                                                   \
   .help = "band i: time constant of the reduction growing"},               \
  {.id = "release" #i, .unit = "ms", .type = MB_PARAM_NUMBER, .min = 1,     \
   .max = 5000, .def = 150, .scale = MB_SCALE_LOG,                          \
   .help = "band i: time constant of the reduction shrinking"},             \
  {.id = "knee" #i, .unit = "dB", .type = MB_PARAM_NUMBER, .min = 0,        \
   .max = 24, .def = 6,                                                     \
   .help = "band i: soft knee width around the threshold; 0 = hard"},      \
  {.id = "makeup" #i, .unit = "dB", .type = MB_PARAM_NUMBER, .min = -24,    \
   .max = 24, .def = 0, .flags = MB_PARAM_SMOOTH,                           \
   .help = "band i: gain after compression"},                               \
  {.id = "bypass" #i, .unit = "", .type = MB_PARAM_BOOL, .min = 0,          \
   .max = 1, .def = 0, .flags = MB_PARAM_SMOOTH,                            \
   .help = "band i: pass unprocessed (no compression, no makeup)"},         \
  {.id = "solo" #i, .unit = "", .type = MB_PARAM_BOOL, .min = 0, .max = 1,  \
   .def = 0, .flags = MB_PARAM_SMOOTH,                                      \
   .help = "band i: output only the soloed bands"}

static const mb_param_desc params[] = {
    XO(1), XO(2), XO(3), XO(4),
    BAND(1), BAND(2), BAND(3), BAND(4), BAND(5),
    [P_MODE] = {.id = "mode", .unit = "", .type = MB_PARAM_ENUM, .min = 0,
                .max = 1, .def = MODE_STEREO, .choices = modes,
                .flags = MB_PARAM_STRUCTURAL,
                .help = "stereo (channels linked by link) or ms (mid and "
                        "side compressed separately)"},
    [P_LINK] = {.id = "link", .unit = "", .type = MB_PARAM_NUMBER, .min = 0,
                .max = 1, .def = 1,
                .help = "0 channels independent .. 1 same gain on all "
                        "(stereo mode)"},
    [P_DETECTOR] = {.id = "detector", .unit = "", .type = MB_PARAM_ENUM,
                    .min = 0, .max = 1, .def = 0, .choices = detectors,
                    .help = "peak (|x|) or rms (sine reads its peak)"},
    [P_RMS_WINDOW] = {.id = "rms_window", .unit = "ms",
                      .type = MB_PARAM_NUMBER, .min = 1, .max = 1000,
                      .def = 20, .scale = MB_SCALE_LOG,
                      .help = "RMS detector's averaging time constant"},
};
_Static_assert(sizeof params / sizeof params[0] == NPARAMS, "param table");

static const mb_port_desc inputs[] = {{.name = "in"}};

const mb_module_desc mb_mod_multiband = {
    .id = "multiband",
    .summary = "multiband compressor, 2 to 5 Linkwitz-Riley bands",
    .doc =
        "Splits the signal into 2 to 5 bands at 1 to 4 crossover "
        "frequencies (`crossovers = {200, 2000}` sets crossover1, "
        "crossover2; strictly increasing, 10 Hz up to below 0.45 x rate; "
        "with none given the split is 200 and 2000 Hz) and compresses each "
        "band on its own. Each crossover is a 4th-order Linkwitz-Riley "
        "pair: low 1/D(s)^2 and high s^4/D(s)^2 with D(s) = s^2 + sqrt2 s "
        "+ 1 (squared 2nd-order Butterworth; both -6.02 dB at the "
        "crossover), bilinear transform prewarped at the crossover, double "
        "precision. Band i is the low side of crossover i taken from the "
        "high side of the crossovers below it, and goes through the "
        "all-pass (low + high) of each crossover above it, so the bands sum "
        "to an all-pass: with every band at unity the output's magnitude "
        "is flat (phase is not). Per band i: threshold<i>, ratio<i>, "
        "knee<i>, attack<i>, release<i> and the detector are the "
        "compressor's (same gain engine and curve: see compressor), "
        "makeup<i> is applied after it; bypass<i> passes the band with "
        "gain 1 (no compression, no makeup); solo<i> outputs only the "
        "soloed bands. Switches and makeup changes ramp (10 ms when set by "
        "hand during a render); threshold, ratio, knee and times move the "
        "curve at once (the gain is smoothed anyway). mode \"stereo\" "
        "links the channels' gains per band by `link` (any channel count); "
        "mode \"ms\" (stereo only) compresses mid (L + R)/2 and side (L - "
        "R)/2 separately (link unused) and decodes L = M + S, R = M - S. "
        "No latency, no tail. Results: `max_gain_reduction`, the largest "
        "reduction in dB (positive) of any band during the render, and "
        "max_gain_reduction<i> per band (a fully bypassed band's "
        "compressor rests and adds nothing).",
    .inputs = inputs,
    .n_inputs = 1,
    .has_output = 1,
    .params = params,
    .n_params = NPARAMS,
    .list_option = "crossovers",
    .list_max = MB_XOVER_MAX,
    .state_size = sizeof(mband_state),
    .channels = channels,
    .create = create,
    .set_param = set_param,
    .process = process,
    .reset = reset,
    .results = results,
    .destroy = destroy,
};
