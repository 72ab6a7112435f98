/* eq.c - parametric EQ: up to 16 bands of Audio EQ Cookbook filters,
 * each automatable, in double precision; minimum phase (the biquad
 * cascade) or linear phase (an FIR with the cascade's magnitude, run by
 * the FFT convolution kernel). */
/* GCC 12's -O2 uses the "very cheap" vectoriser cost model, which refuses
 * the linear-phase design loops over the frequency grid (they need an
 * epilogue); the dynamic model vectorises them. It changes no rounding
 * (no reassociation). clang needs nothing. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=dynamic")
#endif

#include <fftw3.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dsp/biquad.h"
#include "dsp/fftconv.h"
#include "mb_module.h"

#define NBANDS 16
#define MAXSEC 4 /* 48 dB/oct = 8th order = four biquads */
/* Coefficients are recomputed every CTL_STEP frames during a ramp, counted
 * from the ramp's start, so the result does not depend on block splits. */
#define CTL_STEP 16
/* History is flushed (values below 1e-80 set to zero) every FLUSH_STEP
 * frames counted from create/reset, again independent of block size. */
#define FLUSH_STEP 1024

enum { F_TYPE, F_FREQ, F_GAIN, F_Q, F_SLOPE, NFIELD };
enum { P_PHASE = NBANDS * NFIELD, P_LENGTH, NPARAMS };
enum { PH_MINIMUM, PH_LINEAR };
/* Linear phase: fraction of the FIR tapered by the Tukey window (half at
 * each end). The zero-phase response of a smooth |H| decays exponentially,
 * so a mostly flat window keeps its body intact (little smoothing of |H|);
 * the taper only hides the truncation. */
#define LIN_TAPER 0.1

enum {
  T_OFF, T_BELL, T_LOWSHELF, T_HIGHSHELF, T_HIGHPASS, T_LOWPASS, T_NOTCH,
  T_BANDPASS, T_TILT, NTYPES
};

/* A parameter ramp that can be read at any frame: value after e of n
 * frames, linear (gain in dB) or geometric (freq, q); exactly `to` at the
 * end. */
typedef struct pramp {
  double from, to;
  int n, e, geo;
} pramp;

typedef struct band {
  int type, slope;
  pramp freq, gain, q;
  int seg_left; /* frames left in the current control step of a ramp */
  int nsec, first1; /* layout: sections, and whether the first is 1st order */
  int ident;        /* every section is exactly H = 1 */
  int quiet;        /* history is all zero */
  mb_biquad c[MAXSEC];
  mb_biquad_state st[MAXSEC];
} band;

/* Linear phase: the FIR design buffers and the convolver, all made in
 * create() so that a redesign during process() allocates nothing. */
typedef struct linear {
  int taps, centre; /* odd FIR length; its centre (taps - 1)/2 */
  int nd;           /* design grid: FFT size, a power of two >= 2 taps */
  int dirty;        /* a parameter moved since the FIR was built */
  mb_fftconv *conv;
  fftw_plan plan;     /* c2r of nd points: |H| (zero phase) -> h0 */
  fftw_complex *spec; /* nd/2 + 1 bins */
  double *h0;         /* nd: zero-phase impulse response, circular */
  double *phi;        /* nd/2 + 1: sin^2(w/2) at each bin */
  double *pw;         /* nd/2 + 1: |H|^2 being accumulated */
  float *win;         /* taps: Tukey window / nd (the c2r is unnormalised) */
  float *fir;         /* taps */
} linear;

typedef struct eq_state {
  double rate;
  int nch;
  int flush_left;
  band b[NBANDS];
  linear lin; /* lin.conv is NULL in minimum phase */
} eq_state;

/* --- parameter ramps -------------------------------------------------- */

static double pr_at(const pramp *r, int e) {
  if (e >= r->n) return r->to;
  const double t = (double)e / r->n;
  return r->geo ? r->from * pow(r->to / r->from, t)
                : r->from + (r->to - r->from) * t;
}

static int pr_left(const pramp *r) { return r->n - r->e; }

static void pr_init(pramp *r, double v, int geo) {
  r->from = r->to = v;
  r->n = r->e = 0;
  r->geo = geo;
}

static void pr_to(pramp *r, double v, int frames) {
  r->from = pr_at(r, r->e);
  r->to = v;
  r->n = frames > 0 ? frames : 0;
  r->e = 0;
}

static void pr_advance(pramp *r, int k) {
  r->e = r->e + k < r->n ? r->e + k : r->n;
}

/* --- band design -------------------------------------------------------- */

/* Filter order of a high/low-pass: slope / 6 dB per octave. */
static int order_of(int slope) { return slope / 6; }

static void layout(int type, int slope, int *nsec, int *first1) {
  *first1 = 0;
  switch (type) {
  case T_OFF: *nsec = 0; break;
  case T_TILT: *nsec = 1, *first1 = 1; break;
  case T_HIGHPASS:
  case T_LOWPASS: {
    const int n = order_of(slope);
    *nsec = (n + 1) / 2, *first1 = n % 2;
    break;
  }
  default: *nsec = 1; break;
  }
}

/* Coefficients for frequency f, gain g dB and quality q. */
static void design(band *b, double rate, double f, double g, double q) {
  /* The table allows 10..96000 Hz; keep f below Nyquist at any rate. */
  f = fmin(fmax(f, 1.0), 0.49 * rate);
  mb_biquad *c = b->c;
  switch (b->type) {
  case T_OFF: break;
  case T_BELL: mb_biquad_peak(c, rate, f, q, g); break;
  case T_LOWSHELF: mb_biquad_lowshelf(c, rate, f, q, g); break;
  case T_HIGHSHELF: mb_biquad_highshelf(c, rate, f, q, g); break;
  case T_NOTCH: mb_biquad_notch(c, rate, f, q); break;
  case T_BANDPASS: mb_biquad_bandpass(c, rate, f, q); break;
  case T_TILT: mb_biquad_tilt1(c, rate, f, g); break;
  case T_HIGHPASS:
  case T_LOWPASS: {
    const int hp = b->type == T_HIGHPASS, n = order_of(b->slope);
    if (n == 2) { /* 12 dB/oct: the cookbook filter with the band's Q */
      (hp ? mb_biquad_highpass : mb_biquad_lowpass)(c, rate, f, q);
      break;
    }
    int k = 0;
    if (n % 2) (hp ? mb_biquad_highpass1 : mb_biquad_lowpass1)(&c[k++], rate, f);
    for (int j = 0; j < n / 2; j++, k++)
      (hp ? mb_biquad_highpass : mb_biquad_lowpass)(&c[k], rate, f,
                                                     mb_butterworth_q(n, j));
    break;
  }
  }
  b->ident = 1;
  for (int k = 0; k < b->nsec; k++) b->ident &= mb_biquad_is_identity(&c[k]);
}

static int ramping(const band *b) {
  return pr_left(&b->freq) > 0 || pr_left(&b->gain) > 0 || pr_left(&b->q) > 0;
}

/* Start a control step now: it lasts until the next CTL_STEP boundary or
 * the end of the earliest-ending ramp, and uses the parameter values at its
 * end, so a ramp's last step lands exactly on its target. */
static void start_step(band *b, double rate) {
  int len = 0;
  if (b->type != T_OFF && ramping(b)) {
    len = CTL_STEP;
    const pramp *r[3] = {&b->freq, &b->gain, &b->q};
    for (int i = 0; i < 3; i++)
      if (pr_left(r[i]) > 0 && pr_left(r[i]) < len) len = pr_left(r[i]);
  }
  b->seg_left = len;
  if (b->type == T_OFF) return;
  design(b, rate, pr_at(&b->freq, b->freq.e + len),
         pr_at(&b->gain, b->gain.e + len), pr_at(&b->q, b->q.e + len));
}

static void clear_band(band *b) {
  for (int k = 0; k < MAXSEC; k++) mb_biquad_clear(&b->st[k]);
  b->quiet = 1;
}

/* Type and slope jump; the history survives unless the sections change. */
static void set_shape(band *b, int type, int slope) {
  int n0, f0, n1, f1;
  layout(b->type, b->slope, &n0, &f0);
  layout(type, slope, &n1, &f1);
  b->type = type, b->slope = slope;
  b->nsec = n1, b->first1 = f1;
  if (n0 != n1 || f0 != f1) clear_band(b);
}

static int slope_of(double v) {
  int s = (int)lround(v / 6.0) * 6;
  return s < 6 ? 6 : s > 48 ? 48 : s;
}

static int type_of(double v) {
  int t = (int)lround(v);
  return t < 0 || t >= NTYPES ? T_OFF : t;
}

/* --- processing ----------------------------------------------------------- */

/* Run frames off..off+n-1 through every band that is not off and not an
 * exact identity with empty history (skipping those is bit-exact). */
static void run(eq_state *s, const mb_block *blk, int off, int n) {
  const mb_biquad *c[NBANDS * MAXSEC];
  mb_biquad_state *st[NBANDS * MAXSEC];
  int nsec = 0;
  for (int i = 0; i < NBANDS; i++) {
    band *b = &s->b[i];
    if (b->type == T_OFF || (b->ident && b->quiet)) continue;
    b->quiet = 0;
    for (int k = 0; k < b->nsec; k++, nsec++) c[nsec] = &b->c[k], st[nsec] = &b->st[k];
  }
  const float *const *in = blk->in[0];
  float *const *out = blk->out;
  const int nch = blk->out_channels;
  if (nsec == 0) {
    for (int ch = 0; ch < nch; ch++)
      if (out[ch] != in[ch])
        memcpy(out[ch] + off, in[ch] + off, sizeof(float) * (size_t)n);
    return;
  }
  mb_biquad_cascade(c, st, nsec, in, out, nch, off, n);
}

static void flush(eq_state *s) {
  for (int i = 0; i < NBANDS; i++) {
    band *b = &s->b[i];
    if (b->type == T_OFF || b->quiet) continue;
    int live = 0;
    for (int k = 0; k < b->nsec; k++) live |= mb_biquad_flush(&b->st[k], s->nch);
    b->quiet = !live;
  }
}

/* --- linear phase ------------------------------------------------------ */

/* |H(e^jw)|^2 of a section as a polynomial in phi = sin^2(w/2) (the Audio
 * EQ Cookbook's form): numerator (b0 + b1 + b2)^2 - 4 (b0 b1 + 4 b0 b2 +
 * b1 b2) phi + 16 b0 b2 phi^2, denominator likewise with (1, a1, a2). No
 * cancellation near DC, where cos(w) forms lose the low bands. */
static void section_power(const mb_biquad *c, const double *restrict phi,
                          double *restrict pw, int n) {
  const double n0 = (c->b0 + c->b1 + c->b2) * (c->b0 + c->b1 + c->b2);
  const double n1 = -4 * (c->b0 * c->b1 + 4 * c->b0 * c->b2 + c->b1 * c->b2);
  const double n2 = 16 * c->b0 * c->b2;
  const double d0 = (1 + c->a1 + c->a2) * (1 + c->a1 + c->a2);
  const double d1 = -4 * (c->a1 + 4 * c->a2 + c->a1 * c->a2);
  const double d2 = 16 * c->a2;
  for (int i = 0; i < n; i++) {
    const double p = phi[i];
    pw[i] *= (n0 + p * (n1 + p * n2)) / (d0 + p * (d1 + p * d2));
  }
}

/* Build the FIR from the bands' current parameters (frequency sampling):
 * |H| = product of the sections' magnitudes on the nd-point grid, zero
 * phase, inverse FFT, centred at taps/2 and windowed. Hands it to the
 * convolver, crossfaded or at once. [audio] (no allocation) */
static void lin_build(eq_state *s, int crossfade) {
  linear *L = &s->lin;
  const int nb = L->nd / 2 + 1;
  for (int i = 0; i < nb; i++) L->pw[i] = 1;
  for (int j = 0; j < NBANDS; j++) {
    band *b = &s->b[j];
    if (b->type == T_OFF) continue;
    design(b, s->rate, pr_at(&b->freq, b->freq.e), pr_at(&b->gain, b->gain.e),
           pr_at(&b->q, b->q.e));
    for (int k = 0; k < b->nsec; k++)
      section_power(&b->c[k], L->phi, L->pw, nb);
  }
  for (int i = 0; i < nb; i++) {
    L->spec[i][0] = sqrt(fmax(L->pw[i], 0.0));
    L->spec[i][1] = 0;
  }
  fftw_execute(L->plan);
  /* fir[n] = h0[n - centre] (circular index), windowed and scaled by 1/nd */
  const int C = L->centre, nd = L->nd;
  for (int n = 0; n < L->taps; n++) {
    const int t = n - C < 0 ? n - C + nd : n - C;
    L->fir[n] = (float)(L->h0[t] * L->win[n]);
  }
  mb_fftconv_set_ir(L->conv, 0, L->fir, L->taps, crossfade);
  L->dirty = 0;
}

/* Frames are convolved in chunks that end on the convolver's block grid;
 * ramps advance with the frames, and where a block is about to be computed
 * and a parameter has moved, the FIR is rebuilt from the values at that
 * frame and crossfaded in over the block's B output frames. The grid
 * counts from create/reset, so results do not depend on block size. */
static void process_linear(eq_state *s, const mb_block *blk) {
  linear *L = &s->lin;
  const int nch = blk->out_channels;
  int i = 0;
  while (i < blk->frames) {
    const int until = mb_fftconv_until_block(L->conv);
    const int k = blk->frames - i < until ? blk->frames - i : until;
    for (int j = 0; j < NBANDS; j++) {
      band *b = &s->b[j];
      if (!ramping(b)) continue;
      pr_advance(&b->freq, k);
      pr_advance(&b->gain, k);
      pr_advance(&b->q, k);
      if (b->type != T_OFF) L->dirty = 1;
    }
    if (k == until && L->dirty) lin_build(s, 1);
    const float *ip[MB_MAX_CHANNELS];
    float *op[MB_MAX_CHANNELS];
    for (int ch = 0; ch < nch; ch++)
      ip[ch] = blk->in[0][ch] + i, op[ch] = blk->out[ch] + i;
    mb_fftconv_process(L->conv, ip, op, k);
    i += k;
  }
}

static void lin_free(linear *L) {
  mb_fftconv_free(L->conv);
  if (L->plan) fftw_destroy_plan(L->plan);
  if (L->spec) fftw_free(L->spec);
  if (L->h0) fftw_free(L->h0);
  if (L->phi) fftw_free(L->phi);
  if (L->pw) fftw_free(L->pw);
  if (L->win) fftw_free(L->win);
  if (L->fir) fftw_free(L->fir);
  memset(L, 0, sizeof *L);
}

/* Sizes: taps = 2 round(length rate / 2000) + 1 (odd, so the centre is a
 * whole frame); convolver block B = the smallest power of two >= 64 with
 * 4 B >= taps (at most four partitions: about the fastest, measured in
 * tests/modules/test_fftconv.c); design grid nd = the smallest power of
 * two >= 2 taps (time aliasing of the zero-phase response beyond +-taps/2
 * is what the window removes anyway). [control] */
static mb_status lin_create(eq_state *s, double length_ms, char *err,
                            size_t errlen) {
  linear *L = &s->lin;
  L->taps = 2 * (int)lround(length_ms * s->rate / 2000.0) + 1;
  L->centre = (L->taps - 1) / 2;
  int B = 64;
  while (4 * B < L->taps) B *= 2;
  L->nd = 2;
  while (L->nd < 2 * L->taps) L->nd *= 2;
  const int nb = L->nd / 2 + 1;
  L->conv = mb_fftconv_new(s->nch, 1, L->taps, B);
  L->spec = fftw_malloc(sizeof(fftw_complex) * (size_t)nb);
  L->h0 = fftw_malloc(sizeof(double) * (size_t)L->nd);
  L->phi = fftw_malloc(sizeof(double) * (size_t)nb);
  L->pw = fftw_malloc(sizeof(double) * (size_t)nb);
  L->win = fftw_malloc(sizeof(float) * (size_t)L->taps);
  L->fir = fftw_malloc(sizeof(float) * (size_t)L->taps);
  if (L->conv && L->spec && L->h0)
    L->plan = fftw_plan_dft_c2r_1d(L->nd, L->spec, L->h0, FFTW_ESTIMATE);
  if (!L->plan || !L->phi || !L->pw || !L->win || !L->fir) {
    snprintf(err, errlen,
             "phase = \"linear\": out of memory for a %d-tap FIR "
             "(length = %g ms)", L->taps, length_ms);
    lin_free(L);
    return MB_ERR_NOMEM;
  }
  for (int i = 0; i < nb; i++) {
    const double sh = sin(M_PI * i / L->nd); /* sin(w/2), w = 2 pi i/nd */
    L->phi[i] = sh * sh;
  }
  /* Tukey window (scipy.signal.windows.tukey, sym): cosine tapers over
   * LIN_TAPER (M - 1)/2 frames at each end, 1 between. */
  const double M1 = L->taps - 1, edge = LIN_TAPER * M1 / 2;
  for (int n = 0; n < L->taps; n++) {
    const double d = n < M1 - n ? n : M1 - n; /* frames from the nearer end */
    const double w = d >= edge ? 1.0 : 0.5 * (1 - cos(M_PI * d / edge));
    L->win[n] = (float)(w / L->nd);
  }
  return MB_OK;
}

static void process(void *st, const mb_block *blk) {
  eq_state *s = st;
  if (!blk->in[0]) { /* nothing connected: silence */
    for (int ch = 0; ch < blk->out_channels; ch++)
      memset(blk->out[ch], 0, sizeof(float) * (size_t)blk->frames);
    return;
  }
  if (s->lin.conv) {
    process_linear(s, blk);
    return;
  }
  int i = 0;
  while (i < blk->frames) {
    /* Chunk up to the next control step or flush, whichever comes first. */
    int k = blk->frames - i;
    if (s->flush_left < k) k = s->flush_left;
    for (int j = 0; j < NBANDS; j++)
      if (s->b[j].seg_left > 0 && s->b[j].seg_left < k) k = s->b[j].seg_left;
    run(s, blk, i, k);
    i += k;
    for (int j = 0; j < NBANDS; j++) {
      band *b = &s->b[j];
      if (!ramping(b)) continue;
      pr_advance(&b->freq, k);
      pr_advance(&b->gain, k);
      pr_advance(&b->q, k);
      if (b->seg_left > 0 && (b->seg_left -= k) == 0 && ramping(b))
        start_step(b, s->rate);
    }
    if ((s->flush_left -= k) == 0) {
      flush(s);
      s->flush_left = FLUSH_STEP;
    }
  }
}

/* --- descriptor glue ------------------------------------------------------ */

static void set_param(void *st, int idx, double v, int ramp) {
  eq_state *s = st;
  if (idx < 0 || idx >= P_PHASE) return; /* phase: minimum only for now */
  band *b = &s->b[idx / NFIELD];
  switch (idx % NFIELD) {
  case F_TYPE: set_shape(b, type_of(v), b->slope); break;
  case F_SLOPE: set_shape(b, b->type, slope_of(v)); break;
  case F_FREQ: pr_to(&b->freq, v, ramp); break;
  case F_GAIN: pr_to(&b->gain, v, ramp); break;
  case F_Q: pr_to(&b->q, v, ramp); break;
  }
  if (s->lin.conv) {
    s->lin.dirty = 1; /* the FIR follows at the next block (process_linear) */
    return;
  }
  start_step(b, s->rate);
}

static void reset(void *st) {
  eq_state *s = st;
  for (int i = 0; i < NBANDS; i++) {
    band *b = &s->b[i];
    pr_init(&b->freq, b->freq.to, 1);
    pr_init(&b->gain, b->gain.to, 0);
    pr_init(&b->q, b->q.to, 1);
    clear_band(b);
    start_step(b, s->rate);
  }
  s->flush_left = FLUSH_STEP;
  if (s->lin.conv) {
    mb_fftconv_reset(s->lin.conv);
    lin_build(s, 0);
  }
}

static mb_status create(void *st, const mb_config *c, char *err,
                        size_t errlen) {
  eq_state *s = st;
  s->rate = c->rate;
  s->nch = c->out_channels;
  if (lround(c->values[P_PHASE]) == PH_LINEAR) {
    mb_status st2 = lin_create(s, c->values[P_LENGTH], err, errlen);
    if (st2 != MB_OK) return st2;
  }
  for (int i = 0; i < NBANDS; i++) {
    band *b = &s->b[i];
    const double *v = c->values + i * NFIELD;
    b->type = T_OFF; /* so that set_shape sees a change of layout */
    b->slope = 12;
    set_shape(b, type_of(v[F_TYPE]), slope_of(v[F_SLOPE]));
    pr_init(&b->freq, v[F_FREQ], 1);
    pr_init(&b->gain, v[F_GAIN], 0);
    pr_init(&b->q, v[F_Q], 1);
  }
  reset(s);
  return MB_OK;
}

static void destroy(void *st) { lin_free(&((eq_state *)st)->lin); }

/* Linear phase: the FIR's centre plus the convolver's block. */
static int latency(const void *st) {
  const eq_state *s = st;
  return s->lin.conv ? s->lin.centre + mb_fftconv_latency(s->lin.conv) : 0;
}

static const char *const type_names[] = {
    "off", "bell", "lowshelf", "highshelf", "highpass", "lowpass",
    "notch", "bandpass", "tilt", NULL};
static const char *const phase_names[] = {"minimum", "linear", NULL};

#define BAND(i)                                                             \
  {.id = "type" #i, .unit = "", .type = MB_PARAM_ENUM, .min = 0,            \
   .max = NTYPES - 1, .def = T_OFF, .choices = type_names,                  \
   .help = "band " #i " filter type"},                                      \
  {.id = "freq" #i, .unit = "Hz", .type = MB_PARAM_NUMBER, .min = 10,       \
   .max = 96000, .def = 1000, .scale = MB_SCALE_LOG, .flags = MB_PARAM_SMOOTH,\
   .help = "band " #i " frequency (held below 0.49 x rate)"},               \
  {.id = "gain" #i, .unit = "dB", .type = MB_PARAM_NUMBER, .min = -30,      \
   .max = 30, .def = 0, .flags = MB_PARAM_SMOOTH,                           \
   .help = "band " #i " gain (bell, shelves, tilt)"},                       \
  {.id = "q" #i, .unit = "", .type = MB_PARAM_NUMBER, .min = 0.1, .max = 40, \
   .def = 0.7071, .scale = MB_SCALE_LOG, .flags = MB_PARAM_SMOOTH,          \
   .help = "band " #i " quality (not tilt, nor passes above 12 dB/oct)"},   \
  {.id = "slope" #i, .unit = "dB/oct", .type = MB_PARAM_INT, .min = 6,      \
   .max = 48, .def = 12,                                                    \
   .help = "band " #i " high/low-pass slope, a multiple of 6"}

static const mb_param_desc params[] = {
    BAND(1),  BAND(2),  BAND(3),  BAND(4),  BAND(5),  BAND(6),
    BAND(7),  BAND(8),  BAND(9),  BAND(10), BAND(11), BAND(12),
    BAND(13), BAND(14), BAND(15), BAND(16),
    [P_PHASE] = {.id = "phase", .unit = "", .type = MB_PARAM_ENUM, .min = 0,
                 .max = 1, .def = PH_MINIMUM, .choices = phase_names,
                 .flags = MB_PARAM_STRUCTURAL,
                 .help = "minimum (biquads) or linear (FIR, adds latency)"},
    [P_LENGTH] = {.id = "length", .unit = "ms", .type = MB_PARAM_NUMBER,
                  .min = 10, .max = 2000, .def = 300, .scale = MB_SCALE_LOG,
                  .flags = MB_PARAM_STRUCTURAL,
                  .help = "linear phase: FIR length (resolution at low "
                          "frequencies)"},
};
_Static_assert(sizeof params / sizeof params[0] == NPARAMS, "param table");

static const mb_port_desc inputs[] = {{.name = "in"}};

const mb_module_desc mb_mod_eq = {
    .id = "eq",
    .summary = "parametric EQ, 16 bands, minimum or linear phase",
    .doc =
        "Up to 16 bands in series (band 1 first), each the bilinear "
        "transform of an analog prototype prewarped at freq (so the analog "
        "response holds exactly at freq), computed in double precision; "
        "freq is held below 0.49 x rate. With w0 = 2 pi freq/rate, alpha = "
        "sin(w0)/(2 q) and A = 10^(gain/40), the second-order types are the "
        "Audio EQ Cookbook's (R. Bristow-Johnson): bell = peakingEQ (gain "
        "dB at freq), lowshelf and highshelf = lowShelf/highShelf with this "
        "Q-form alpha (gain dB past the shelf, gain/2 at freq), notch = "
        "notch, bandpass = BPF with constant 0 dB peak gain; these ignore "
        "slope, and notch and bandpass ignore gain. highpass and lowpass "
        "ignore gain and have slope 6..48 dB/oct (rounded to a multiple of "
        "6, order n = slope/6): 12 is the cookbook HPF/LPF with q; 6 is "
        "the first-order s/(s+1) or 1/(s+1); 18 to 48 are Butterworth of "
        "order n, a first-order section when n is odd and cookbook HPF/LPF "
        "biquads with Q = 1/(2 cos psi), psi = (2k+1) pi/(2n), k = 0.. "
        "(even n) or psi = k pi/n, k = 1..(n-1)/2 (odd n); every slope but "
        "12 ignores q and is -3.01 dB at freq. tilt is first order, "
        "H(s) = (a s + 1)/(s + a) with a = 10^(gain/40) and s normalised "
        "to 2 pi freq, prewarped: -gain/2 dB at DC, 0 dB at freq, +gain/2 "
        "dB at Nyquist; it ignores q and slope. Changes of freq, gain and q "
        "ramp (freq and q geometrically, gain linearly in dB) with the "
        "coefficients recomputed every 16 frames; type and slope change at "
        "once. In minimum phase, bands that are off, and bands that are "
        "exactly flat (0 dB bell, shelf or tilt) before any signal, pass "
        "the input bit-exact. "
        "phase = \"minimum\" (default) runs these biquads. phase = "
        "\"linear\" runs an FIR with the same magnitude (the product of "
        "the same band designs' |H|, so both modes measure the same) and "
        "no phase shift beyond a pure delay: the FIR is built by frequency "
        "sampling (|H| on a grid of nd points, nd the power of two at or "
        "above 2 taps; inverse FFT; centred; Tukey window tapering 5 % at "
        "each end) with taps = 2 round(length x rate / 2000) + 1, and run "
        "by uniformly partitioned FFT convolution in blocks of B frames, B "
        "the smallest power of two >= 64 with 4 B >= taps. Its latency, "
        "reported to the graph (which compensates it: files stay aligned), "
        "is (taps - 1)/2 + B frames, 11296 at 48 kHz with the default "
        "length of 300 ms. At that length the response is within 0.1 dB of "
        "the analytic one from 30 Hz to 20 kHz wherever that is above -80 "
        "dB, for bands as steep as a 30 Hz 48 dB/oct high-pass or a 30 Hz "
        "q 2 bell; bands that ring longer (a higher q low down) need a "
        "longer length. A notch's null is filled in (|H| has a corner "
        "there that a finite FIR cannot follow): to about 0.45/(bw T), bw = "
        "freq/q in Hz and T = length in s (-44 dB for q 4 at 1 kHz), and "
        "the 0.1 dB holds where the response is 20 dB above that. Flat "
        "bands give the delayed input within float rounding (peak error "
        "-124 dB, rms -138 dB re full scale), not bit-exact. In linear "
        "phase, changes of freq, gain, q, "
        "type and slope (hand-set or automated, ramped as above) are "
        "sampled once per block, at the frame where a block is computed: "
        "the FIR is rebuilt from the values there (no allocation: buffers "
        "and FFT plans are made at creation) and the block's B output "
        "frames crossfade linearly from the old FIR's output to the new "
        "one's, so changes do not click; they lag the minimum-phase ones by "
        "up to B frames; a rebuild costs about as much as filtering "
        "0.4 s of stereo (measured at 48 kHz), so a parameter moving all "
        "the time makes the linear eq about 5 times slower. phase and "
        "length re-create the node. The eq reports no tail: a rendered file "
        "keeps its input's length (the filters' brief ringing past the last "
        "sample is not rendered), as with sox and ffmpeg.",
    .inputs = inputs,
    .n_inputs = 1,
    .has_output = 1,
    .params = params,
    .n_params = NPARAMS,
    .list_option = "bands",
    .list_max = NBANDS,
    .state_size = sizeof(eq_state),
    .create = create,
    .set_param = set_param,
    .process = process,
    .reset = reset,
    .latency = latency,
    .destroy = destroy,
};
