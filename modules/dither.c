/* dither.c - requantise to 16, 20 or 24 bits with TPDF dither, flat or
 * noise-shaped by error feedback.
 *
 * Quantiser (all in units of the target LSB, S = 2^(bits-1) per full scale):
 *   v = x S - sum_k c_k e[n-k]        (error feedback, k = 1..N, c[k-1] in
 *                                      the code; no sum for "tpdf")
 *   q = round(v + d)                  d: TPDF, two uniforms, +-1 LSB peak
 *   e = q - v                         the total requantisation error
 *   y = min(max(q, -S), S - 1) / S    on the file writer's grid, saturated
 * so y S - x S = E(z) e with E(z) = 1 - sum c_k z^-k, and e is white with
 * variance 1/6 (dither) + 1/12 (rounding) = 1/4 LSB^2 whatever the input
 * (Lipshitz, Wannamaker & Vanderkooy, "Quantization and dither: a
 * theoretical survey", JAES 40(5), 1992): flat TPDF gives 0.25 LSB^2 white,
 * a shaped curve 0.25 |E|^2.
 *
 * Stability near full scale: e is taken before the output saturation, so
 * |e| <= 1.5 LSB always (0.5 rounding + 1 dither) and the fed-back term is
 * bounded by 1.5 sum |c_k| LSB (32 LSB for "f-weighted" at 44.1 kHz); x S is
 * clamped to +-(S + 2 + 1.5 sum |c_k|) before the quantiser (far enough
 * out that an over-full-scale input still gives the largest code), and the
 * saturation error is never fed back, so overloads cannot wind the loop
 * up. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mb_module.h"

enum { P_BITS, P_SHAPE, P_SEED, P_BLANK };
enum { SH_TPDF, SH_LIGHT, SH_E, SH_F, SH_COUNT };

#define NTAP 9     /* longest error-feedback filter */
#define CHUNK 256  /* frames of dither made at once (on the stack) */
#define GRID 4096  /* frequency points of the 48 kHz design */

static const char *const shape_names[] = {"tpdf", "light", "e-weighted",
                                          "f-weighted", NULL};

/* Published 44.1 kHz error-feedback coefficients c_k of
 * E(z) = 1 - sum c_k z^-k (minimum phase, so mean log |E|^2 = 0):
 *   light:      Wannamaker's 3-tap F-weighted filter,
 *   e-weighted: the 5-tap E-weighted filter of Lipshitz, Wannamaker and
 *               Vanderkooy, "Minimally audible noise shaping", JAES 39(11),
 *               1991,
 *   f-weighted: Wannamaker's 9-tap F-weighted filter,
 * both Wannamaker filters from "Psychoacoustically optimal noise shaping",
 * JAES 40(7/8), 1992. */
static const int shape_taps[SH_COUNT] = {0, 3, 5, 9};
static const double ref44[SH_COUNT][NTAP] = {
    [SH_LIGHT] = {1.623, -0.982, 0.109},
    [SH_E] = {2.033, -2.165, 1.959, -1.590, 0.6149},
    [SH_F] = {2.412, -3.370, 3.937, -4.174, 3.353, -2.205, 1.281, -0.569,
              0.0847},
};

/* The error-feedback state of one channel (see shape_chunk). */
typedef struct {
  double b[NTAP + 1]; /* b[1 .. N-1]: contributions of past e' */
  double ep;          /* e'[n-1] */
  double dh[NTAP];    /* dithers of frames n-9 .. n-1 */
} chan_state;

typedef struct {
  int nch, bits, shape, ntap;
  int fallback; /* a curve was asked for at a rate without one: TPDF used */
  uint32_t seed;
  int blank;       /* digital silence in, digital silence out */
  int64_t blanked; /* frames written as silence by `blank` */
  double scale, inv; /* S and 1/S */
  double top, bot;   /* largest and smallest code, LSB */
  double lim;        /* |x S| is clamped to this before quantising */
  double c[NTAP];    /* feedback coefficients in use */
  chan_state ch[MB_MAX_CHANNELS];
  int64_t clipped;
} dither_state;

/* ---- noise: a counter-based generator ----------------------------------
 * Each sample's 32 random bits are a bijective integer hash of its absolute
 * frame number and a per-channel key, so the noise depends on where a
 * sample is, never on how the render was cut into blocks. The hash is
 * "lowbias32" (C. Wellons, hash-prospector, 2018: xor-shift / multiply
 * constants searched for the lowest avalanche bias). Being a bijection,
 * over 2^32 frames every 32-bit value occurs once, so the two 16-bit
 * halves are exactly independent and uniform over a period. */
static inline uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}

/* The key of channel c for frames whose upper 32 bits are hi. */
static uint32_t channel_key(uint32_t seed, int c, uint32_t hi) {
  return mix32(mix32(seed ^ (0x9e3779b9u * (uint32_t)(c + 1))) ^ mix32(hi));
}

/* TPDF in LSB from 32 random bits: the sum of two uniforms on
 * {0 .. 65535} / 65536 minus its mean; -1 < d < 1, variance 1/6. */
static inline double tpdf(uint32_t h) {
  return (double)((int32_t)(h & 0xffffu) + (int32_t)(h >> 16) - 65535) *
         0x1p-16;
}

/* Round to nearest (ties to even) without libm: roundsd where SSE4.1 is
 * available, otherwise 1.5 * 2^52 added and taken away (exact for
 * |v| < 2^51; ours stay below 2^24). Both give the same result. */
static inline double rnd(double v) {
#if defined(__SSE4_1__) || defined(__aarch64__)
  return __builtin_rint(v);
#else
  const double m = 6755399441055744.0; /* not folded: no -ffast-math */
  return (v + m) - m;
#endif
}

/* ---- curve design (control thread) -------------------------------------
 * At 48 kHz the same curve is fitted anew: the target noise spectrum is the
 * 44.1 kHz filter's |E44(f)|^2 in Hz (held at its 22.05 kHz value up to
 * 24 kHz), and E48 is the order-N linear-prediction error filter of a
 * process with power spectrum 1 / |E44(f)|^2 (autocorrelation by the
 * midpoint rule on GRID points, Levinson-Durbin recursion). Prediction
 * error filters whiten their process, so |E48|^2 follows |E44|^2 in shape;
 * the recursion keeps every reflection coefficient below 1, so E48 is
 * minimum phase (the optimum of Gerzon & Craven, "Optimal noise shaping and
 * dither of digital signals", AES preprint 2822, 1989). At 44.1 kHz the
 * same fit returns the published coefficients (an all-pole spectrum of
 * order N is matched exactly), which tests/modules/test_dither.c checks. */
static void design(const double *c44, int n, double fs, double *out) {
  double r[NTAP + 1] = {0};
  for (int g = 0; g < GRID; g++) {
    const double f = (g + 0.5) / GRID * fs / 2;
    const double w44 = 2 * M_PI * (f < 22050 ? f : 22050) / 44100;
    double re = 1, im = 0;
    for (int k = 1; k <= n; k++) {
      re -= c44[k - 1] * cos(w44 * k);
      im += c44[k - 1] * sin(w44 * k);
    }
    const double p = 1 / (re * re + im * im);
    const double w = 2 * M_PI * f / fs;
    for (int k = 0; k <= n; k++) r[k] += p * cos(w * k);
  }
  double a[NTAP + 1] = {0}, t[NTAP + 1];
  double err = r[0];
  for (int i = 1; i <= n; i++) {
    double acc = r[i];
    for (int j = 1; j < i; j++) acc -= a[j] * r[i - j];
    const double k = acc / err;
    memcpy(t, a, sizeof t);
    a[i] = k;
    for (int j = 1; j < i; j++) a[j] = t[j] - k * t[i - j];
    err *= 1 - k * k;
  }
  for (int k = 0; k < NTAP; k++) out[k] = k < n ? a[k + 1] : 0;
}

/* [control] Exported for tests/modules/test_dither.c (no header: nothing
 * else needs them). mb_dither_fit: the fit above for any rate (n taps
 * returned). mb_dither_curve: the coefficients the module uses for a shape
 * at a rate (published at 44.1 kHz, fitted at 48 kHz); returns the tap
 * count, 0 when the rate has no curve (TPDF). c holds NTAP = 9 values. */
int mb_dither_fit(int shape, double rate, double *c);
int mb_dither_curve(int shape, double rate, double *c);

int mb_dither_fit(int shape, double rate, double *c) {
  memset(c, 0, sizeof(double) * NTAP);
  if (shape <= SH_TPDF || shape >= SH_COUNT) return 0;
  design(ref44[shape], shape_taps[shape], rate, c);
  return shape_taps[shape];
}

int mb_dither_curve(int shape, double rate, double *c) {
  memset(c, 0, sizeof(double) * NTAP);
  if (shape <= SH_TPDF || shape >= SH_COUNT) return 0;
  if (fabs(rate - 44100) < 0.5) {
    memcpy(c, ref44[shape], sizeof(double) * NTAP);
    return shape_taps[shape];
  }
  if (fabs(rate - 48000) < 0.5) return mb_dither_fit(shape, 48000, c);
  return 0;
}

/* ---- processing --------------------------------------------------------
 * Work goes in chunks of CHUNK frames through fixed-size local arrays: the
 * loops over a whole chunk vectorise (their trip count is a multiple of any
 * vector width, and locals cannot alias the caller's buffers, which may be
 * the same memory); a short last chunk is padded with silence. */

typedef struct {
  double S, inv, top, bot, lim;
} grid;

/* xs[i] = x S clamped to +-lim (NaN to 0), d[i] the dither. (Two simple
 * loops: GCC 12 at -O2 vectorises each, not their fusion.) */
static void prepare(const grid *g, const float *x, int m, uint32_t lo,
                    uint32_t key, double *xs, double *d) {
  float xb[CHUNK];
  memcpy(xb, x, sizeof(float) * (size_t)m);
  memset(xb + m, 0, sizeof(float) * (size_t)(CHUNK - m));
  const double S = g->S, lim = g->lim;
  for (int i = 0; i < CHUNK; i++) {
    double v = xb[i] * S;
    v = v > lim ? lim : v;
    v = v < -lim ? -lim : v;
    xs[i] = v == v ? v : 0;
  }
  for (int i = 0; i < CHUNK; i++) d[i] = tpdf(mix32((lo + (uint32_t)i) ^ key));
}

/* Saturate the codes q to the grid, write m of them as float, return how
 * many were saturated. */
static int emit(const grid *g, const double *q, float *y, int m) {
  float yb[CHUNK];
  const double top = g->top, bot = g->bot, inv = g->inv;
  int clipped = 0;
  for (int i = 0; i < CHUNK; i++) {
    double v = q[i];
    clipped += (i < m) & ((v > top) | (v < bot));
    v = v > top ? top : v < bot ? bot : v;
    yb[i] = (float)(v * inv);
  }
  memcpy(y, yb, sizeof(float) * (size_t)m);
  return clipped;
}

/* Flat TPDF: q = round(x S + d). */
static int tpdf_chunk(const grid *g, const float *x, float *y, int m,
                      uint32_t lo, uint32_t key) {
  double xs[CHUNK], d[CHUNK];
  prepare(g, x, m, lo, key, xs, d);
  for (int i = 0; i < CHUNK; i++) xs[i] = rnd(xs[i] + d[i]);
  return emit(g, xs, y, m);
}

/* Error feedback for K = 1 or 2 channels at once (two independent chains
 * keep the CPU busy during each one's rounding latency), N taps; both are
 * compile-time constants where it is called.
 *
 * The error splits as e = e' + d, e' = q - u the rounding error of
 * u = v + d. The dither's share of the feedback, sum c_t d[n-1-t], needs
 * no recursion: it is subtracted for the whole chunk at once (vectorised),
 * giving p = x S + d - sum c_t d[n-1-t]. The recursion on e' is run in
 * transposed form: b[j] holds what the e' up to n-2 contribute to frame
 * n-1+j, so u = p - b[1] - c_0 e'[n-1], and the critical path per frame is
 * e'[n-1] -> one multiply-add -> rounding -> one subtraction. */
static inline __attribute__((always_inline)) int
shape_chunk(const grid *g, chan_state *cs, const double *c, int K, int N,
            const float *const *x, float *const *y, int m, uint32_t lo,
            const uint32_t *key) {
  double xs[2][CHUNK], dd[2][NTAP + CHUNK], b[2][NTAP + 1], ep[2];
  for (int k = 0; k < K; k++) {
    /* dd: the last N dithers of the previous chunk, then this chunk's */
    memcpy(dd[k], cs[k].dh, sizeof(double) * NTAP);
    prepare(g, x[k], m, lo, key[k], xs[k], dd[k] + NTAP);
    for (int i = 0; i < CHUNK; i++) xs[k][i] += dd[k][NTAP + i];
    for (int t = 0; t < N; t++) {
      const double ct = c[t];
      const double *dt = dd[k] + NTAP - 1 - t;
      for (int i = 0; i < CHUNK; i++) xs[k][i] -= ct * dt[i];
    }
    for (int j = 1; j < N; j++) b[k][j] = cs[k].b[j];
    b[k][N] = 0;
    ep[k] = cs[k].ep;
  }
  /* unrolled, so the accumulators live in registers */
  for (int i = 0; i < m; i++) {
#pragma GCC unroll 2
    for (int k = 0; k < K; k++) {
      const double u = (xs[k][i] - b[k][1]) - c[0] * ep[k];
      const double q = rnd(u);
#pragma GCC unroll 9
      for (int j = 1; j < N; j++) b[k][j] = b[k][j + 1] + c[j] * ep[k];
      ep[k] = q - u;
      xs[k][i] = q;
    }
  }
  int clipped = 0;
  for (int k = 0; k < K; k++) {
    for (int j = 1; j < N; j++) cs[k].b[j] = b[k][j];
    cs[k].ep = ep[k];
    memcpy(cs[k].dh, dd[k] + m, sizeof(double) * NTAP);
    clipped += emit(g, xs[k], y[k], m);
  }
  return clipped;
}

static int shape_any(const grid *g, chan_state *es, const double *c,
                     int K, int N, const float *const *x, float *const *y,
                     int m, uint32_t lo, const uint32_t *key) {
  if (K == 2) {
    if (N == 3) return shape_chunk(g, es, c, 2, 3, x, y, m, lo, key);
    if (N == 5) return shape_chunk(g, es, c, 2, 5, x, y, m, lo, key);
    return shape_chunk(g, es, c, 2, 9, x, y, m, lo, key);
  }
  if (N == 3) return shape_chunk(g, es, c, 1, 3, x, y, m, lo, key);
  if (N == 5) return shape_chunk(g, es, c, 1, 5, x, y, m, lo, key);
  return shape_chunk(g, es, c, 1, 9, x, y, m, lo, key);
}

static void process(void *st, const mb_block *b) {
  dither_state *s = st;
  const int n = b->frames, nch = s->nch;
  const grid g = {s->scale, s->inv, s->top, s->bot, s->lim};
  int64_t cl = 0;
  for (int i = 0; i < n;) {
    /* a chunk of frames sharing the upper 32 bits of their frame number */
    const int64_t p = b->pos + i;
    const int64_t to_wrap = (int64_t)((((uint64_t)p >> 32) + 1) << 32) - p;
    int m = n - i < CHUNK ? n - i : CHUNK;
    if (m > to_wrap) m = (int)to_wrap;
    const uint32_t lo = (uint32_t)p, hi = (uint32_t)((uint64_t)p >> 32);
    /* blank: which frames are silent on every channel, read before the
     * output (which may share the input's memory) is written */
    unsigned char silent[CHUNK];
    int any_silent = 0;
    if (s->blank) {
      for (int j = 0; j < m; j++) silent[j] = 1;
      for (int c = 0; c < nch; c++) {
        const float *x = b->in[0][c] + i;
        for (int j = 0; j < m; j++) silent[j] &= x[j] == 0.0f;
      }
      for (int j = 0; j < m; j++) any_silent |= silent[j];
    }
    for (int c0 = 0; c0 < nch; c0 += 2) {
      const int K = nch - c0 >= 2 ? 2 : 1;
      uint32_t key[2];
      const float *x[2];
      float *y[2];
      for (int k = 0; k < K; k++) {
        key[k] = channel_key(s->seed, c0 + k, hi);
        x[k] = b->in[0][c0 + k] + i;
        y[k] = b->out[c0 + k] + i;
      }
      if (s->ntap == 0) {
        for (int k = 0; k < K; k++)
          cl += tpdf_chunk(&g, x[k], y[k], m, lo, key[k]);
      } else {
        cl += shape_any(&g, s->ch + c0, s->c, K, s->ntap, x, y, m, lo, key);
      }
    }
    if (any_silent) {
      for (int c = 0; c < nch; c++) {
        float *y = b->out[c] + i;
        for (int j = 0; j < m; j++) y[j] = silent[j] ? 0.0f : y[j];
      }
      for (int j = 0; j < m; j++) s->blanked += silent[j];
    }
    i += m;
  }
  s->clipped += cl;
}

static void reset(void *st) {
  dither_state *s = st;
  memset(s->ch, 0, sizeof s->ch);
  s->clipped = 0;
  s->blanked = 0;
}

static mb_status create(void *st, const mb_config *c, char *err,
                        size_t errlen) {
  dither_state *s = st;
  const int bits = (int)c->values[P_BITS];
  if (bits != 16 && bits != 20 && bits != 24) {
    snprintf(err, errlen, "bits = %d is not a supported depth (16, 20 or 24)",
             bits);
    return MB_ERR_ARG;
  }
  const int shape = (int)c->values[P_SHAPE];
  if (shape < 0 || shape >= SH_COUNT) {
    snprintf(err, errlen, "shape %d is not a known curve", shape);
    return MB_ERR_ARG;
  }
  s->nch = c->in_channels[0];
  s->bits = bits;
  s->seed = (uint32_t)c->values[P_SEED];
  s->blank = c->values[P_BLANK] != 0;
  s->scale = ldexp(1.0, bits - 1);
  s->inv = 1 / s->scale;
  s->top = s->scale - 1;
  s->bot = -s->scale;
  s->ntap = mb_dither_curve(shape, c->rate, s->c);
  /* beyond full scale by more than the feedback can pull back: an input
   * over full scale always gives the largest code */
  s->lim = s->scale + 2;
  for (int k = 0; k < NTAP; k++) s->lim += 1.5 * fabs(s->c[k]);
  s->shape = s->ntap ? shape : SH_TPDF;
  s->fallback = shape != SH_TPDF && s->ntap == 0;
  reset(s);
  return MB_OK;
}

static int results(const void *st, const char **names, double *values,
                   int max) {
  const dither_state *s = st;
  const char *nm[] = {"clipped", "fallback_tpdf", "shape_used", "bits",
                      "blanked"};
  const double val[] = {(double)s->clipped, s->fallback, s->shape, s->bits,
                        (double)s->blanked};
  int k = 0;
  for (; k < 5 && k < max; k++) names[k] = nm[k], values[k] = val[k];
  return k;
}

static const mb_port_desc inputs[] = {{.name = "in"}};

static const mb_param_desc params[] = {
    [P_BITS] = {.id = "bits", .unit = "bits", .type = MB_PARAM_INT,
                .min = 16, .max = 24, .def = 16,
                .flags = MB_PARAM_STRUCTURAL,
                .help = "target depth: 16, 20 or 24"},
    [P_SHAPE] = {.id = "shape", .unit = "", .type = MB_PARAM_ENUM,
                 .min = 0, .max = SH_COUNT - 1, .def = SH_TPDF,
                 .flags = MB_PARAM_STRUCTURAL, .choices = shape_names,
                 .help = "tpdf (flat) or a noise-shaping curve: light, "
                         "e-weighted, f-weighted (44.1/48 kHz)"},
    [P_SEED] = {.id = "seed", .unit = "", .type = MB_PARAM_INT, .min = 0,
                .max = 999999, .def = 0, .flags = MB_PARAM_STRUCTURAL,
                .help = "noise seed; the same seed gives the same render"},
    [P_BLANK] = {.id = "blank", .unit = "", .type = MB_PARAM_BOOL, .def = 0,
                 .flags = MB_PARAM_STRUCTURAL,
                 .help = "write digital silence where the input is digital "
                         "silence (CD gaps)"},
};

const mb_module_desc mb_mod_dither = {
    .id = "dither",
    .summary = "requantise to 16/20/24 bits with TPDF or noise-shaped dither",
    .doc =
        "Rounds to the `bits` grid (k / 2^(bits-1): what a 16- or 24-bit "
        "file stores exactly; 20 bits goes into a 24-bit or float file) "
        "after adding triangular (TPDF, +-1 LSB) dither, saturating at the "
        "largest code ((2^(bits-1) - 1) / 2^(bits-1)) so nothing clips in "
        "the file writer. Flat `tpdf` leaves white noise of 1/4 LSB^2 (1/6 "
        "dither + 1/12 rounding) whose level and spectrum do not depend on "
        "the signal. The noise-shaping curves feed the error back through "
        "a psychoacoustically weighted filter, moving the noise out of the "
        "ear's most sensitive region (2-5 kHz, 15-25 dB under flat TPDF) "
        "towards the top of the band: `light` is Wannamaker's 3-tap "
        "F-weighted filter (+6.6 dB total noise power), `e-weighted` the "
        "5-tap E-weighted filter of Lipshitz, Wannamaker and Vanderkooy "
        "(+12 dB), `f-weighted` Wannamaker's 9-tap F-weighted filter (+18 "
        "dB). Their published coefficients are for 44.1 kHz; at 48 kHz each "
        "curve is refitted to the same response in Hz. Other rates have no "
        "curve: a shaped request falls back to flat TPDF and the result "
        "`fallback_tpdf` is 1. The fed-back error is taken before the "
        "output saturation (at most 1.5 LSB), so the loop stays bounded at "
        "and beyond full scale. The noise is a hash of the frame number and "
        "`seed`: renders repeat exactly and do not depend on the block "
        "size. Results: `clipped` (samples saturated), `fallback_tpdf`, "
        "`shape_used` (index into the shape list actually used, 0 = tpdf), "
        "`bits`, `blanked`. `blank` writes exact zeros for every frame "
        "whose input is exactly zero on all channels (auto-blanking: the "
        "gaps of a CD image stay digital silence; the noise-shaping state "
        "runs on as if dithered), and counts them in `blanked`. Place it "
        "last, after any gain or limiting.",
    .inputs = inputs,
    .n_inputs = 1,
    .has_output = 1,
    .params = params,
    .n_params = 4,
    .state_size = sizeof(dither_state),
    .create = create,
    .process = process,
    .reset = reset,
    .results = results,
};
