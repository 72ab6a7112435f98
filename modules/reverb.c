/* reverb.c - algorithmic reverb: a 16-line feedback delay network (Jot).
 *
 * Per input channel: predelay -> four series allpass diffusers. Both
 * diffused signals are injected into 16 delay lines with orthogonal +-1/4
 * sign patterns. Each line's output goes through its absorption filter
 * (broadband gain, low shelf, high shelf: J.-M. Jot and A. Chaigne, "Digital
 * delay networks for designing artificial reverberators", AES 90th
 * convention, 1991), then through the 16 x 16 Hadamard matrix divided by 4
 * (orthogonal, so the loop itself is lossless), and back into the lines.
 * The left and right wet outputs are two rows of the same Hadamard product
 * (orthogonal sign patterns over all 16 lines: decorrelated late field).
 *
 * The 16 lines are the 16 lanes of one vector: the per-frame work
 * (filters, matrix, injection) is vector code, and the filters' recursion
 * runs along time, one frame after another, exactly as a scalar loop would:
 * results do not depend on how frames are grouped into blocks.
 *
 * Decay design: a line of d frames loses 60 d / (fs T) dB per pass for a
 * reverberation time T, so with g = 10^(-3 d / (fs T)) every band decays at
 * 60 dB per T whatever the line lengths (computed from the actual integer
 * lengths at the actual rate: the decay is rate independent). The shelves
 * change the loss per pass below low_freq and above high_freq to the
 * figures of rt60 x low_mult and rt60 x high_mult. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsp/simd.h" /* for its -Wpsabi note: vectors wider than the ABI's */
#include "mb_module.h"

/* GCC 12 at -O2 vectorises only loops whose trip count is a multiple of
 * the vector width (the "very cheap" cost model): the diffusers' and the
 * mix's loops run over any number of frames. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=dynamic")
#endif

enum {
  P_RT60,
  P_PREDELAY,
  P_SIZE,
  P_DAMPING,
  P_WIDTH,
  P_MIX,
  P_LOW_MULT,
  P_HIGH_MULT,
  P_LOW_FREQ,
  P_HIGH_FREQ,
  P_MOD_DEPTH,
  P_MOD_RATE,
  P_DIFFUSION,
  NPARAM
};

enum {
  NL = 16,    /* delay lines = vector lanes */
  NMOD = 4,   /* lines 0..3 have modulated (interpolated) lengths */
  NAP = 4,    /* diffusing allpasses per input channel */
  SEG = 256,  /* frames per internal segment (scratch size) */
  GATE = 4096 /* silence checks on this absolute frame grid */
};
/* Coefficients are recomputed on this absolute frame grid while a ramp
 * moves (the host's automation grid, MB_CONTROL_GRID, is also 32). */
enum { GRID = 32 };

/* Below this the state counts as silent: -200 dBFS. */
#define THR 1e-10f
/* tail(): frames for a decay of this many dB: from +40 dBFS (more than the
 * lines hold for full-scale program at ordinary settings) down to THR. A
 * state still above THR at the tail's end (a hotter input, or a long
 * resonance at extreme settings) is cleared anyway, by then 240 dB below
 * where it was when the input stopped. */
#define TAIL_DB 240.0
/* Largest per-pass loss designed (dB): keeps shelf gains finite. */
#define MAX_LOSS_DB 100.0
#define MOD_DEPTH_MAX_MS 2.0
/* Wet energy: the impulse response of each output channel carries
 * rt60 / WET_ENERGY_S seconds' worth of unit energy per input channel. */
#define WET_ENERGY_S 4.0

typedef float v16f __attribute__((vector_size(64)));

/* Line lengths at size 1 (ms), spread 31..97 ms, shuffled over the lanes so
 * each half of the vector holds short and long ones; the shortest (lane 4)
 * is not modulated. Rounded per rate to distinct primes (mutually prime
 * lengths: no common echo period). */
static const double line_ms[NL] = {67.3, 53.9, 79.1, 45.7, 31.1, 88.9,
                                   38.3, 59.6, 35.2, 97.0, 42.4, 72.8,
                                   33.4, 49.5, 83.6, 63.1};
/* Diffuser allpass lengths (ms) per input channel: distinct, so the two
 * channels' diffused signals differ. */
static const double ap_ms[2][NAP] = {{1.3, 2.9, 4.7, 7.1},
                                     {1.6, 3.3, 5.2, 6.7}};
/* Injection sign patterns (left, right): orthogonal (half the signs agree)
 * and neither a Hadamard row (the matrix spreads each over all 16 outputs,
 * none larger than 6/16 of the total), so no single line collects them. */
static const float inj[2][NL] = {
    {1, 1, -1, 1, -1, -1, 1, 1, -1, 1, 1, 1, -1, -1, 1, -1},
    {1, -1, -1, -1, -1, 1, 1, -1, 1, 1, -1, 1, 1, -1, -1, -1}};
/* Output rows of the Hadamard product (Sylvester order) */
enum { ROW_L = 5, ROW_R = 10 };

/* A ramp in closed form: the value k frames into it is from + (to - from)
 * k / len, the same number however the frames were split into blocks. */
typedef struct {
  double from, to;
  int len, at;
} lramp;

static double lr_at(const lramp *r, int k) {
  const int e = r->at + k;
  if (e >= r->len) return r->to;
  return r->from + (r->to - r->from) * ((double)e / r->len);
}
static void lr_init(lramp *r, double v) {
  r->from = r->to = v;
  r->len = r->at = 0;
}
static void lr_set(lramp *r, double v, int frames) {
  r->from = lr_at(r, 0);
  r->to = v;
  r->len = frames > 0 ? frames : 0;
  r->at = 0;
}
static int lr_moving(const lramp *r) { return r->at < r->len; }
static void lr_advance(lramp *r, int n) {
  if (r->at < r->len) r->at = r->at + n > r->len ? r->len : r->at + n;
}

/* Per-lane coefficients and filter state, 64-byte aligned (own block: the
 * host's state allocation is only malloc-aligned). */
typedef struct {
  v16f la1, la2, la3, lm1, lm2;      /* low shelf */
  v16f ha1, ha2, ha3, hm0, hm1, hm2; /* high shelf; broadband gain and the
                                      * matrix's 1/4 folded into hm* */
  v16f lic1, lic2, hic1, hic2;       /* SVF integrator states */
  v16f bl, br;                       /* injection gains */
} lanes;

typedef struct {
  double rate;
  int in_ch;
  /* structure (create) */
  int d[NL];             /* line lengths, frames */
  uint32_t mask[NL];     /* ring sizes - 1 (powers of two) */
  uint32_t off[NL];      /* ring offsets in lines[] */
  float *lines;          /* every ring, one block */
  size_t lines_n;
  int apd[2][NAP], app[2][NAP];
  float *ap[2][NAP];
  int pdn, pdp[2];       /* predelay frames, positions */
  float *pd[2];
  float *mem;            /* diffusers, predelay, scratch */
  float *rt;             /* NMOD x SEG: modulated lines' reads */
  float *mce;            /* SEG x NMOD allpass coefficients */
  int *mci;              /* SEG x NMOD integer delays */
  size_t mem_n;
  lanes *ln;
  float kout;            /* wet output gain (energy normalisation) */
  int seg_max;           /* frames a segment may span */
  int dmax;              /* longest line */
  /* parameters */
  double val[NPARAM];    /* latest values set */
  lramp rt60, lowm, highm, lowf, highf, diff; /* coefficient ramps */
  lramp depth, width, mix;                    /* per-frame ramps */
  int dirty, ended;
  double rot_c, rot_s;   /* LFO rotation per frame */
  /* running state */
  double lfo_c, lfo_s;
  float apg;             /* diffuser allpass coefficient */
  float apy[NMOD];       /* fractional-delay allpasses' last outputs */
  uint32_t w;            /* write counter, shared by every ring */
  int dormant;           /* state is all zero; waiting for input */
  int64_t quiet;         /* frames since an input sample >= THR */
  int64_t tail_now;      /* tail() for the current values */
} rv_state;

static inline float ftz(float v) { return fabsf(v) < FLT_MIN ? 0.0f : v; }

static int is_prime(int n) {
  if (n < 2) return 0;
  for (int k = 2; (long)k * k <= n; k++)
    if (n % k == 0) return 0;
  return 1;
}

/* The prime nearest to n (ties go up) not in used[0..nu). */
static int nearest_free_prime(int n, const int *used, int nu) {
  for (int dist = 0;; dist++) {
    for (int sgn = 1; sgn >= -1; sgn -= 2) {
      const int c = n + sgn * dist;
      int taken = 0;
      for (int k = 0; k < nu; k++) taken |= used[k] == c;
      if (!taken && is_prime(c)) return c;
      if (dist == 0) break;
    }
  }
}

static double high_mult_of(double high_mult, double damping) {
  /* 0 = from damping: each 0.5 of damping halves the treble's rt60 */
  return high_mult > 0 ? high_mult : pow(4.0, -damping);
}

/* Frames until the state has decayed through TAIL_DB at the slowest band,
 * plus what sits before the network (predelay, diffusers ringing). */
static int64_t tail_of(const rv_state *s, double t60, double lm, double hm,
                       double apg) {
  double tmax = t60;
  if (lm > 1) tmax = t60 * lm;
  if (t60 * hm > tmax) tmax = t60 * hm;
  double f = s->pdn + s->dmax + MOD_DEPTH_MAX_MS * 1e-3 * s->rate + 4 +
             ceil(TAIL_DB / 60.0 * tmax * s->rate);
  double apmax = 0;
  for (int c = 0; c < 2; c++) {
    double a = 0;
    for (int k = 0; k < NAP; k++) /* an allpass rings by apg per length */
      a += s->apd[c][k] *
           (apg > 0 ? ceil(TAIL_DB / (-20 * log10(apg))) + 1 : 1);
    if (a > apmax) apmax = a;
  }
  return (int64_t)(f + apmax);
}

/* [audio] Absorption filters and diffusion from the ramps' current values.
 * Low shelf and high shelf are Simper's trapezoidal state-variable filters
 * ("Linear trapezoidal integrated SVF", Cytomic 2013): Q = 1/sqrt 2, gain
 * midpoint (in dB) at the corner, monotonic; their LP/BP outputs stay
 * accurate in float at a few hundred Hz and 96 kHz, where a direct-form
 * biquad's poles near z = 1 would not. */
static void update_coefs(rv_state *s) {
  const double fs = s->rate, t60 = lr_at(&s->rt60, 0);
  const double tl = t60 * lr_at(&s->lowm, 0), th = t60 * lr_at(&s->highm, 0);
  double fl = lr_at(&s->lowf, 0), fh = lr_at(&s->highf, 0);
  if (fh > 0.45 * fs) fh = 0.45 * fs;
  if (fl > 0.45 * fs) fl = 0.45 * fs;
  const double kq = M_SQRT2, wl = tan(M_PI * fl / fs),
               wh = tan(M_PI * fh / fs);
  float c[11][NL];
  for (int i = 0; i < NL; i++) {
    const double ds = s->d[i] / fs;
    const double gm = fmax(-60 * ds / t60, -MAX_LOSS_DB);
    const double gl = fmax(-60 * ds / tl, -MAX_LOSS_DB);
    const double gh = fmax(-60 * ds / th, -MAX_LOSS_DB);
    double A = pow(10, (gl - gm) / 40), g = wl / sqrt(A);
    double a1 = 1 / (1 + g * (g + kq));
    c[0][i] = (float)a1;
    c[1][i] = (float)(g * a1);
    c[2][i] = (float)(g * g * a1);
    c[3][i] = (float)(kq * (A - 1));
    c[4][i] = (float)(A * A - 1);
    A = pow(10, (gh - gm) / 40), g = wh * sqrt(A);
    a1 = 1 / (1 + g * (g + kq));
    const double G = pow(10, gm / 20);
    c[5][i] = (float)a1;
    c[6][i] = (float)(g * a1);
    c[7][i] = (float)(g * g * a1);
    /* the matrix's 1/4 is folded in here (exact: a power of two) */
    c[8][i] = (float)(G * A * A) * 0.25f;
    c[9][i] = (float)(G * kq * (1 - A) * A) * 0.25f;
    c[10][i] = (float)(G * (1 - A * A)) * 0.25f;
  }
  v16f *dst[11] = {&s->ln->la1, &s->ln->la2, &s->ln->la3, &s->ln->lm1,
                   &s->ln->lm2, &s->ln->ha1, &s->ln->ha2, &s->ln->ha3,
                   &s->ln->hm0, &s->ln->hm1, &s->ln->hm2};
  for (int k = 0; k < 11; k++) memcpy(dst[k], c[k], sizeof(v16f));
  s->apg = (float)(0.8 * lr_at(&s->diff, 0));
  s->tail_now = tail_of(s, t60, lr_at(&s->lowm, 0), lr_at(&s->highm, 0),
                        s->apg);
}

/* Unnormalised 16-point Walsh-Hadamard transform (Sylvester order): four
 * butterfly stages, each lane x[j] +- x[j ^ stride]. */
static inline v16f hadamard(v16f x) {
  const v16f s8 = {1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1};
  const v16f s4 = {1, 1, 1, 1, -1, -1, -1, -1, 1, 1, 1, 1, -1, -1, -1, -1};
  const v16f s2 = {1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1};
  const v16f s1 = {1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1};
  x = x * s8 + __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15,
                                       0, 1, 2, 3, 4, 5, 6, 7);
  x = x * s4 + __builtin_shufflevector(x, x, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13,
                                       14, 15, 8, 9, 10, 11);
  x = x * s2 + __builtin_shufflevector(x, x, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11,
                                       8, 9, 14, 15, 12, 13);
  x = x * s1 + __builtin_shufflevector(x, x, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8,
                                       11, 10, 13, 12, 15, 14);
  return x;
}

/* Predelay and diffusers of one channel over k frames: x -> t. Each ring
 * is exactly its delay long, so a slot is read (the value from one length
 * ago) and rewritten in the same step: runs up to the ring's end are
 * element-wise loops without a carried dependency (vectorised). */
static void prestage(rv_state *s, int c, const float *x, float *t, int k) {
  if (s->pdn > 0) {
    float *pd = s->pd[c];
    int p = s->pdp[c];
    for (int j = 0; j < k;) {
      const int run = k - j < s->pdn - p ? k - j : s->pdn - p;
      float *restrict tt = t + j, *restrict pp = pd + p;
      const float *restrict xx = x + j;
      for (int q = 0; q < run; q++) {
        tt[q] = pp[q];
        pp[q] = xx[q];
      }
      j += run;
      p += run;
      if (p == s->pdn) p = 0;
    }
    s->pdp[c] = p;
  } else {
    memcpy(t, x, sizeof(float) * (size_t)k);
  }
  /* Schroeder allpass, lattice form: w = x - g v, y = g w + v, where v is
   * w from one length ago; H(z) = (g + z^-D) / (1 + g z^-D). */
  const float g = s->apg;
  for (int a = 0; a < NAP; a++) {
    float *buf = s->ap[c][a];
    const int len = s->apd[c][a];
    int p = s->app[c][a];
    for (int j = 0; j < k;) {
      const int run = k - j < len - p ? k - j : len - p;
      float *restrict tt = t + j, *restrict bb = buf + p;
      for (int q = 0; q < run; q++) {
        const float v = bb[q], wv = tt[q] - g * v;
        tt[q] = g * wv + v;
        bb[q] = wv;
      }
      j += run;
      p += run;
      if (p == len) p = 0;
    }
    s->app[c][a] = p;
  }
}

/* 16 x 16 transpose in registers: stage b exchanges bit b of the row and
 * column indices between rows i and i + b (blocks of b lanes). */
#define T8A 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define T8B 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define T4A 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define T4B 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define T2A 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define T2B 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define T1A 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define T1B 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31
#define TSTAGE(r, b, A, B)                                                   \
  for (int i = 0; i < NL; i++)                                              \
    if (!(i & (b))) {                                                        \
      const v16f x_ = r[i], y_ = r[i + (b)];                                 \
      r[i] = __builtin_shufflevector(x_, y_, A);                             \
      r[i + (b)] = __builtin_shufflevector(x_, y_, B);                       \
    }
static inline void transpose16(v16f *r) {
  TSTAGE(r, 8, T8A, T8B)
  TSTAGE(r, 4, T4A, T4B)
  TSTAGE(r, 2, T2A, T2B)
  TSTAGE(r, 1, T1A, T1B)
}

typedef double v4d __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));
typedef int v4i __attribute__((vector_size(16)));

/* The network's recursive per-frame work over n frame-major rows, in
 * place: line outputs -> absorption (low shelf, then high shelf with the
 * broadband gain). The matrix is not recursive along time: it runs
 * afterwards (hadamard16 on line-major blocks, hadamard on single rows). */
typedef struct {
  v16f la1, la2, la3, lm1, lm2, ha1, ha2, ha3, hm0, hm1, hm2;
  v16f lic1, lic2, hic1, hic2;
} net_regs;

static inline void rows(net_regs *g, v16f *r, int n) {
  for (int j = 0; j < n; j++) {
    const v16f v0 = r[j];
    v16f v3 = v0 - g->lic2;
    v16f v1 = g->la1 * g->lic1 + g->la2 * v3;
    v16f v2 = g->lic2 + g->la2 * g->lic1 + g->la3 * v3;
    g->lic1 = 2.0f * v1 - g->lic1;
    g->lic2 = 2.0f * v2 - g->lic2;
    const v16f y = v0 + g->lm1 * v1 + g->lm2 * v2;
    v3 = y - g->hic2;
    v1 = g->ha1 * g->hic1 + g->ha2 * v3;
    v2 = g->hic2 + g->ha2 * g->hic1 + g->ha3 * v3;
    g->hic1 = 2.0f * v1 - g->hic1;
    g->hic2 = 2.0f * v2 - g->hic2;
    r[j] = g->hm0 * y + g->hm1 * v1 + g->hm2 * v2;
  }
}

/* The same transform as hadamard() over 16 line-major vectors (r[q] holds
 * line q over 16 frames): lane j of a stage is x[j] + x[j ^ stride] for
 * the lower index and x[j ^ stride] - x[j] for the upper one, the same
 * single rounding of the same two terms, so the results are identical;
 * here the butterflies are plain vector adds, no shuffles. */
#define HSTAGE(r, b)                                                         \
  for (int i = 0; i < NL; i++)                                              \
    if (!(i & (b))) {                                                        \
      const v16f a_ = r[i], c_ = r[i + (b)];                                 \
      r[i] = a_ + c_;                                                        \
      r[i + (b)] = a_ - c_;                                                  \
    }
static inline void hadamard16(v16f *r) {
  HSTAGE(r, 8)
  HSTAGE(r, 4)
  HSTAGE(r, 2)
  HSTAGE(r, 1)
}

/* Each ring of size n (a power of two, at least 16) is followed by a
 * guard of GUARD floats holding a copy of its first 16: a run of 16 frames
 * read from any position is one load, never split at the wrap. */
enum { GUARD = 2 * NL };

/* Writes 16 frames at position p of a ring of size n, keeping the guard:
 * positions below 16 also go to the guard (the store may run past the
 * copy into the guard's spare half, which is never read nor checked by
 * gate(): what it holds depends on the block sizes), and a run
 * that crosses the end lands in the guard and is copied to the start. */
static inline void ring_put(float *ring, uint32_t n, uint32_t p, v16f v) {
  memcpy(ring + p, &v, sizeof v);
  if (p < NL) memcpy(ring + n + p, &v, sizeof v);
  if (p + NL > n)
    for (uint32_t i = 0; i < p + NL - n; i++) ring[i] = ring[n + i];
}

/* The network over k frames, k0 frames into the segment: diffused inputs
 * t0, t1 -> wet wl, wr. k never exceeds the shortest line (less the
 * modulation), so every sample read here was written before the call:
 * the line reads, the vector work and the line writes can each run over
 * blocks of 16 frames, turned between line-major (rings) and frame-major
 * (lanes) by register transposes. Per frame the arithmetic is the same as
 * one frame at a time. */
static void network(rv_state *s, const float *t0, const float *t1, float *wl,
                    float *wr, int k0, int k) {
  float *const buf = s->lines, *const mod = s->rt;
  const uint32_t w = s->w;
  /* Modulated lines. Length D = d + depth sin(phase), phases a quarter
   * turn apart, read through a first-order allpass fractional delay
   * (Thiran): integer part M and fraction f in [0.5, 1.5), coefficient
   * e = (1 - f) / (1 + f), y[n] = e x[n - M] + x[n - M - 1] - e y[n - 1].
   * Its magnitude is exactly 1 (a polynomial interpolator loses up to 3 dB
   * per pass at fs/3 and would shorten the treble's decay); both taps are
   * read from the line, so a step of M is seamless but for the previous
   * output, which is continuous in D. The four lines run as lanes. */
  {
    /* coefficients, the four lines as lanes */
    double lc = s->lfo_c, ls = s->lfo_s;
    const double rc = s->rot_c, rs = s->rot_s, fpm = s->rate * 1e-3;
    const int dmove = lr_moving(&s->depth);
    double dep = lr_at(&s->depth, k0) * fpm;
    const v4d dq = {s->d[0], s->d[1], s->d[2], s->d[3]};
    for (int j = 0; j < k; j++) {
      if (dmove) dep = lr_at(&s->depth, k0 + j) * fpm;
      const v4d lfo = {ls, lc, -ls, -lc};
      const v4d D = dq + dep * lfo;
      const v4i M = __builtin_convertvector(D - 0.5, v4i);
      const v4d f = D - __builtin_convertvector(M, v4d);
      const v4f e = __builtin_convertvector((1 - f) / (1 + f), v4f);
      memcpy(s->mce + j * NMOD, &e, sizeof e);
      memcpy(s->mci + j * NMOD, &M, sizeof M);
      /* LFO: rotation by 2 pi rate / fs per frame, in double */
      const double nc = lc * rc - ls * rs;
      ls = ls * rc + lc * rs;
      lc = nc;
    }
    s->lfo_c = lc, s->lfo_s = ls;
    /* the allpasses: four independent recursions per frame */
    const float *ef = s->mce;
    const int *mi = s->mci;
    float y[NMOD];
    memcpy(y, s->apy, sizeof y);
    for (int j = 0; j < k; j++)
      for (int q = 0; q < NMOD; q++) {
        const uint32_t m = s->mask[q],
                       at = w + (uint32_t)j - (uint32_t)mi[j * NMOD + q];
        const float *r = buf + s->off[q];
        y[q] = ef[j * NMOD + q] * (r[at & m] - y[q]) + r[(at - 1) & m];
        mod[q * SEG + j] = y[q];
      }
    memcpy(s->apy, y, sizeof y);
  }
  const lanes *L = s->ln;
  net_regs g = {L->la1,  L->la2,  L->la3,  L->lm1,  L->lm2,  L->ha1,
                L->ha2,  L->ha3,  L->hm0,  L->hm1,  L->hm2,  L->lic1,
                L->lic2, L->hic1, L->hic2};
  float bl[NL], br[NL];
  memcpy(bl, &L->bl, sizeof bl);
  memcpy(br, &L->br, sizeof br);
  const float kout = 4 * s->kout; /* the rows carry the matrix's 1/4 */
  v16f r[NL];
  int j0 = 0;
  for (; j0 + NL <= k; j0 += NL) {
    for (int q = 0; q < NMOD; q++)
      memcpy(&r[q], mod + q * SEG + j0, sizeof(v16f));
    for (int q = NMOD; q < NL; q++) /* the guard holds what a run wraps to */
      memcpy(&r[q],
             buf + s->off[q] +
                 ((w + (uint32_t)j0 - (uint32_t)s->d[q]) & s->mask[q]),
             sizeof(v16f));
    transpose16(r);
    rows(&g, r, NL);
    transpose16(r);
    hadamard16(r);
    /* r[q] is now 16 frames of matrix output q: taps and injection as
     * vectors over frames */
    v16f x0, x1;
    memcpy(&x0, t0 + j0, sizeof x0);
    memcpy(&x1, t1 + j0, sizeof x1);
    const v16f ol = r[ROW_L] * kout, orr = r[ROW_R] * kout;
    memcpy(wl + j0, &ol, sizeof ol);
    memcpy(wr + j0, &orr, sizeof orr);
    for (int q = 0; q < NL; q++) r[q] = r[q] + bl[q] * x0 + br[q] * x1;
    for (int q = 0; q < NL; q++)
      ring_put(buf + s->off[q], s->mask[q] + 1,
               (w + (uint32_t)j0) & s->mask[q], r[q]);
  }
  if (j0 < k) { /* the last frames, one row at a time */
    const int n = k - j0;
    float t[NL][NL];
    for (int q = 0; q < NL; q++)
      for (int j = 0; j < n; j++)
        t[j][q] = q < NMOD ? mod[q * SEG + j0 + j]
                           : buf[s->off[q] + ((w + (uint32_t)(j0 + j) -
                                               (uint32_t)s->d[q]) &
                                              s->mask[q])];
    memcpy(r, t, sizeof(float) * NL * (size_t)n);
    rows(&g, r, n);
    for (int j = 0; j < n; j++) r[j] = hadamard(r[j]);
    memcpy(t, r, sizeof(float) * NL * (size_t)n);
    for (int j = 0; j < n; j++) {
      wl[j0 + j] = t[j][ROW_L] * kout;
      wr[j0 + j] = t[j][ROW_R] * kout;
      for (int q = 0; q < NL; q++)
        t[j][q] = t[j][q] + bl[q] * t0[j0 + j] + br[q] * t1[j0 + j];
    }
    for (int q = 0; q < NL; q++)
      for (int j = 0; j < n; j++) {
        const uint32_t p = (w + (uint32_t)(j0 + j)) & s->mask[q];
        buf[s->off[q] + p] = t[j][q];
        if (p < NL) buf[s->off[q] + s->mask[q] + 1 + p] = t[j][q];
      }
  }
  lanes *Lw = s->ln;
  Lw->lic1 = g.lic1, Lw->lic2 = g.lic2, Lw->hic1 = g.hic1, Lw->hic2 = g.hic2;
  s->w = w + (uint32_t)k;
}

static int below(const float *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!(fabsf(p[i]) < THR)) return 0;
  return 1;
}

static void flush(rv_state *s) {
  memset(s->lines, 0, sizeof(float) * s->lines_n);
  memset(s->mem, 0, sizeof(float) * s->mem_n);
  const v16f z = {0};
  s->ln->lic1 = s->ln->lic2 = s->ln->hic1 = s->ln->hic2 = z;
  memset(s->apy, 0, sizeof s->apy);
  s->dormant = 1;
}

/* [audio] At a GATE grid point: once the input has been quiet, flush the
 * state to exact zeros when all of it is below THR, or when the quiet has
 * lasted the whole tail (a hot input: the remainder is 240 dB down). */
static void gate(rv_state *s) {
  if (s->dormant || s->quiet < GATE) return;
  if (s->quiet < s->tail_now - GATE) {
    const lanes *L = s->ln;
    float st[4 * NL];
    memcpy(st, &L->lic1, sizeof(v16f));
    memcpy(st + NL, &L->lic2, sizeof(v16f));
    memcpy(st + 2 * NL, &L->hic1, sizeof(v16f));
    memcpy(st + 3 * NL, &L->hic2, sizeof(v16f));
    if (!below(s->mem, (size_t)(s->rt - s->mem)) || !below(st, 4 * NL) ||
        !below(s->apy, NMOD))
      return;
    /* the rings only: a guard's spare half may hold stale values */
    for (int q = 0; q < NL; q++)
      if (!below(s->lines + s->off[q], (size_t)s->mask[q] + 1)) return;
  }
  flush(s);
}

/* The mono input feeds both diffusers at -3 dB, so its wet energy equals
 * that of one channel of a stereo input. */
static int channels(const mb_config *c, char *err, size_t errlen) {
  if (c->in_channels[0] == 1 || c->in_channels[0] == 2) return 2;
  snprintf(err, errlen,
           "reverb takes mono or stereo input (gives stereo), got %d "
           "channels",
           c->in_channels[0]);
  return -1;
}

static void destroy(void *st) {
  rv_state *s = st;
  free(s->lines);
  free(s->mem);
  free(s->ln);
  free(s->mci);
  s->mci = NULL;
  s->lines = s->mem = NULL;
  s->ln = NULL;
}

static void set_rot(rv_state *s, double hz) {
  s->rot_c = cos(2 * M_PI * hz / s->rate);
  s->rot_s = sin(2 * M_PI * hz / s->rate);
}

static mb_status create(void *st, const mb_config *c, char *err,
                        size_t errlen) {
  rv_state *s = st;
  const double fs = c->rate;
  s->rate = fs;
  s->in_ch = c->in_channels[0];
  for (int p = 0; p < NPARAM; p++) s->val[p] = c->values[p];
  /* size 0..1 scales every length by 4^(size - 1): x0.25 .. x1 */
  const double scale = pow(4.0, c->values[P_SIZE] - 1);
  const int depth_max = (int)ceil(MOD_DEPTH_MAX_MS * 1e-3 * fs);
  double dsum = 0;
  int dmin = 1 << 30;
  s->dmax = 0;
  s->lines_n = 0;
  for (int i = 0; i < NL; i++) {
    int want = (int)lround(line_ms[i] * 1e-3 * scale * fs);
    if (want < 8) want = 8;
    s->d[i] = nearest_free_prime(want, s->d, i);
    uint32_t size = 1;
    while (size < (uint32_t)(s->d[i] + depth_max + 4)) size <<= 1;
    s->mask[i] = size - 1;
    s->off[i] = (uint32_t)s->lines_n;
    s->lines_n += size + GUARD;
    dsum += s->d[i];
    if (s->d[i] < dmin) dmin = s->d[i];
    if (s->d[i] > s->dmax) s->dmax = s->d[i];
  }
  if (dmin <= depth_max + 4) {
    snprintf(err, errlen,
             "rate %g Hz is too low for the reverb's shortest line", fs);
    return MB_ERR_ARG;
  }
  int used[2 * NAP], nu = 0;
  size_t memn = 0;
  for (int ch = 0; ch < 2; ch++)
    for (int a = 0; a < NAP; a++) {
      int want = (int)lround(ap_ms[ch][a] * 1e-3 * fs);
      if (want < 2) want = 2;
      const int q = nearest_free_prime(want, used, nu);
      s->apd[ch][a] = used[nu++] = q;
      memn += (size_t)s->apd[ch][a];
    }
  s->pdn = (int)lround(c->values[P_PREDELAY] * 1e-3 * fs);
  memn += 2 * (size_t)s->pdn + 2 * NMOD * SEG + 4 * SEG;
  /* 64-byte aligned: rings (powers of two of at least 16 floats) and
   * guards are multiples of 16 floats, so a 16-frame block written at a
   * multiple of 16 is one aligned vector */
  s->lines = aligned_alloc(64, sizeof(float) * s->lines_n);
  if (s->lines) memset(s->lines, 0, sizeof(float) * s->lines_n);
  s->mem = calloc(memn, sizeof(float));
  s->ln = aligned_alloc(64, sizeof(lanes));
  s->mci = calloc(NMOD * SEG, sizeof(int));
  if (!s->lines || !s->mem || !s->ln || !s->mci) {
    destroy(s);
    snprintf(err, errlen, "out of memory");
    return MB_ERR_NOMEM;
  }
  memset(s->ln, 0, sizeof(lanes));
  s->mem_n = memn;
  float *p = s->mem;
  for (int ch = 0; ch < 2; ch++)
    for (int a = 0; a < NAP; a++) {
      s->ap[ch][a] = p;
      p += s->apd[ch][a];
    }
  s->pd[0] = p;
  s->pd[1] = p + s->pdn;
  s->rt = s->pd[1] + s->pdn; /* scratch from here on */
  s->mce = s->rt + NMOD * SEG;
  /* a segment never reads what it writes: shorter than every line */
  s->seg_max = SEG;
  if (s->seg_max > dmin - depth_max - 2) s->seg_max = dmin - depth_max - 2;
  /* Energy: with lossless mixing and uncorrelated lines of mean length
   * dm (s), the per-line power decays as exp(-2 ln(1000) t / T) and the
   * network holds sum(d) P; one output row (16 lanes, gain k each)
   * carries a total energy k^2 |b|^2 T / (2 ln(1000) dm). |b|^2 = 1 per
   * input channel here, so k^2 = 2 ln(1000) dm / WET_ENERGY_S gives
   * energy T / WET_ENERGY_S. */
  const double dm = dsum / NL / fs;
  s->kout = (float)sqrt(2 * log(1000.0) * dm / WET_ENERGY_S);
  const float bscale = s->in_ch == 1 ? (float)(0.25 * M_SQRT1_2) : 0.25f;
  for (int i = 0; i < NL; i++) {
    s->ln->bl[i] = inj[0][i] * bscale;
    s->ln->br[i] = inj[1][i] * bscale;
  }
  lr_init(&s->rt60, c->values[P_RT60]);
  lr_init(&s->lowm, c->values[P_LOW_MULT]);
  lr_init(&s->highm,
          high_mult_of(c->values[P_HIGH_MULT], c->values[P_DAMPING]));
  lr_init(&s->lowf, c->values[P_LOW_FREQ]);
  lr_init(&s->highf, c->values[P_HIGH_FREQ]);
  lr_init(&s->diff, c->values[P_DIFFUSION]);
  lr_init(&s->depth, c->values[P_MOD_DEPTH]);
  lr_init(&s->width, c->values[P_WIDTH]);
  lr_init(&s->mix, c->values[P_MIX]);
  set_rot(s, c->values[P_MOD_RATE]);
  s->lfo_c = 1, s->lfo_s = 0;
  s->dormant = 1;
  update_coefs(s);
  return MB_OK;
}

static void set_param(void *st, int idx, double v, int ramp) {
  rv_state *s = st;
  s->val[idx] = v;
  switch (idx) {
  case P_RT60: lr_set(&s->rt60, v, ramp); break;
  case P_LOW_MULT: lr_set(&s->lowm, v, ramp); break;
  case P_HIGH_MULT:
  case P_DAMPING:
    lr_set(&s->highm, high_mult_of(s->val[P_HIGH_MULT], s->val[P_DAMPING]),
           ramp);
    break;
  case P_LOW_FREQ: lr_set(&s->lowf, v, ramp); break;
  case P_HIGH_FREQ: lr_set(&s->highf, v, ramp); break;
  case P_DIFFUSION: lr_set(&s->diff, v, ramp); break;
  case P_MOD_DEPTH: lr_set(&s->depth, v, ramp); break;
  case P_MOD_RATE: set_rot(s, v); return; /* the phase stays continuous */
  case P_WIDTH: lr_set(&s->width, v, ramp); return;
  case P_MIX: lr_set(&s->mix, v, ramp); return;
  default: return; /* structural */
  }
  s->dirty = 1;
}

static lramp *coef_ramp(rv_state *s, int k) {
  lramp *r[] = {&s->rt60, &s->lowm, &s->highm, &s->lowf, &s->highf, &s->diff};
  return k < 6 ? r[k] : NULL;
}

/* Dry/wet and width over m frames: wet M/S scaled by width, then
 * out = dry (1 - mix) + wet mix. Every input sample of a frame is read
 * before its outputs are written (in-place and mono-broadcast safe). */
static void mix_out(rv_state *s, const float *x0, const float *x1, float *o0,
                    float *o1, const float *wl, const float *wr, int m) {
  if (!lr_moving(&s->mix) && !lr_moving(&s->width)) {
    const float mx = (float)s->mix.to, wd = (float)s->width.to;
    if (mx == 0.0f) { /* bit-exact dry */
      if (o1 != x1) memmove(o1, x1, sizeof(float) * (size_t)m);
      if (o0 != x0) memmove(o0, x0, sizeof(float) * (size_t)m);
      return;
    }
    const float a = 1 - mx, bd = mx * 0.5f * (1 + wd), bx = mx * 0.5f * (1 - wd);
    for (int j = 0; j < m; j++) {
      const float dl = x0[j], dr = x1[j], l = wl[j], r = wr[j];
      o0[j] = ftz(a * dl + bd * l + bx * r);
      o1[j] = ftz(a * dr + bx * l + bd * r);
    }
    return;
  }
  for (int j = 0; j < m; j++) {
    const float mx = (float)lr_at(&s->mix, j), wd = (float)lr_at(&s->width, j);
    const float a = 1 - mx, bd = mx * 0.5f * (1 + wd), bx = mx * 0.5f * (1 - wd);
    const float dl = x0[j], dr = x1[j], l = wl[j], r = wr[j];
    o0[j] = ftz(a * dl + bd * l + bx * r);
    o1[j] = ftz(a * dr + bx * l + bd * r);
  }
}

/* Last frame in [0, m) with an input sample at or above THR, or -1. */
static int last_loud(const float *x0, const float *x1, int m) {
  for (int j = m - 1; j >= 0; j--)
    if (!(fabsf(x0[j]) < THR) || !(fabsf(x1[j]) < THR)) return j;
  return -1;
}

static int first_loud(const float *x0, const float *x1, int m) {
  for (int j = 0; j < m; j++)
    if (!(fabsf(x0[j]) < THR) || !(fabsf(x1[j]) < THR)) return j;
  return m;
}

static void segment(rv_state *s, const float *x0, const float *x1, float *o0,
                    float *o1, int m) {
  float *t0 = s->mem + s->mem_n - 4 * SEG, *t1 = t0 + SEG, *wl = t1 + SEG,
        *wr = wl + SEG;
  int j0 = 0;
  if (s->dormant) { /* nothing in the state: wake at the first input */
    j0 = first_loud(x0, x1, m);
    memset(wl, 0, sizeof(float) * (size_t)j0);
    memset(wr, 0, sizeof(float) * (size_t)j0);
    if (j0 < m) s->dormant = 0, s->quiet = 0;
  }
  if (j0 < m) {
    const int k = m - j0, last = last_loud(x0 + j0, x1 + j0, k);
    s->quiet = last >= 0 ? k - 1 - last : s->quiet + k;
    prestage(s, 0, x0 + j0, t0, k);
    prestage(s, 1, x1 + j0, t1, k);
    network(s, t0, t1, wl + j0, wr + j0, j0, k);
  }
  mix_out(s, x0, x1, o0, o1, wl, wr, m);
}

static void process(void *st, const mb_block *b) {
  rv_state *s = st;
  const int n = b->frames;
  const float *x0 = b->in[0][0], *x1 = b->in[0][s->in_ch > 1 ? 1 : 0];
  float *o0 = b->out[0], *o1 = b->out[1];
  for (int i = 0; i < n;) {
    const int64_t pos = b->pos + i;
    int m = n - i;
    if (m > s->seg_max) m = s->seg_max;
    const int to_gate = GATE - (int)(pos % GATE);
    if (pos % GATE == 0) gate(s);
    if (m > to_gate) m = to_gate;
    /* Coefficients change only at frames that do not depend on the block
     * size: a set_param, the 32-frame grid while a ramp moves, a ramp's
     * end. */
    int moving = 0;
    for (int k = 0; k < 6; k++) {
      const lramp *r = coef_ramp(s, k);
      if (!lr_moving(r)) continue;
      moving = 1;
      if (m > r->len - r->at) m = r->len - r->at;
    }
    if (moving && m > GRID - (int)(pos % GRID)) m = GRID - (int)(pos % GRID);
    if (s->dirty || s->ended || (moving && pos % GRID == 0)) {
      update_coefs(s);
      s->dirty = s->ended = 0;
    }
    segment(s, x0 + i, x1 + i, o0 + i, o1 + i, m);
    for (int k = 0; k < 6; k++) {
      lramp *r = coef_ramp(s, k);
      if (!lr_moving(r)) continue;
      lr_advance(r, m);
      if (!lr_moving(r)) s->ended = 1;
    }
    lr_advance(&s->depth, m);
    lr_advance(&s->width, m);
    lr_advance(&s->mix, m);
    i += m;
  }
}

static void reset(void *st) {
  rv_state *s = st;
  lramp *all[] = {&s->rt60, &s->lowm, &s->highm, &s->lowf, &s->highf,
                  &s->diff, &s->depth, &s->width, &s->mix};
  for (size_t k = 0; k < sizeof all / sizeof *all; k++)
    lr_init(all[k], all[k]->to);
  flush(s);
  s->pdp[0] = s->pdp[1] = 0;
  memset(s->app, 0, sizeof s->app);
  s->w = 0;
  s->lfo_c = 1, s->lfo_s = 0;
  s->quiet = 0;
  s->dirty = s->ended = 0;
  update_coefs(s);
}

static int64_t tail(const void *st) {
  const rv_state *s = st;
  return s->tail_now;
}

static const mb_port_desc inputs[] = {{.name = "in"}};

static const mb_param_desc params[] = {
    [P_RT60] = {.id = "rt60", .unit = "s", .type = MB_PARAM_NUMBER,
                .min = 0.1, .max = 30, .def = 2, .scale = MB_SCALE_LOG,
                .flags = MB_PARAM_SMOOTH,
                .help = "decay time (60 dB) between low_freq and high_freq"},
    [P_PREDELAY] = {.id = "predelay", .unit = "ms", .type = MB_PARAM_NUMBER,
                    .min = 0, .max = 500, .def = 0,
                    .flags = MB_PARAM_STRUCTURAL,
                    .help = "delay before the reverb (re-creates the node)"},
    [P_SIZE] = {.id = "size", .unit = "", .type = MB_PARAM_NUMBER, .min = 0,
                .max = 1, .def = 0.5, .flags = MB_PARAM_STRUCTURAL,
                .help = "room size: line lengths x 4^(size - 1) (re-creates "
                        "the node)"},
    [P_DAMPING] = {.id = "damping", .unit = "", .type = MB_PARAM_NUMBER,
                   .min = 0, .max = 1, .def = 0.5, .flags = MB_PARAM_SMOOTH,
                   .help = "treble damping: high_mult = 4^-damping when "
                           "high_mult is 0"},
    [P_WIDTH] = {.id = "width", .unit = "", .type = MB_PARAM_NUMBER, .min = 0,
                 .max = 1, .def = 1, .flags = MB_PARAM_SMOOTH,
                 .help = "wet stereo width: 0 mono .. 1 full"},
    [P_MIX] = {.id = "mix", .unit = "", .type = MB_PARAM_NUMBER, .min = 0,
               .max = 1, .def = 0.25, .flags = MB_PARAM_SMOOTH,
               .help = "0 dry only .. 1 wet only"},
    [P_LOW_MULT] = {.id = "low_mult", .unit = "", .type = MB_PARAM_NUMBER,
                    .min = 0.1, .max = 4, .def = 1.2, .scale = MB_SCALE_LOG,
                    .flags = MB_PARAM_SMOOTH,
                    .help = "rt60 multiplier below low_freq"},
    [P_HIGH_MULT] = {.id = "high_mult", .unit = "", .type = MB_PARAM_NUMBER,
                     .min = 0, .max = 4, .def = 0, .flags = MB_PARAM_SMOOTH,
                     .help = "rt60 multiplier above high_freq; 0 = from "
                             "damping"},
    [P_LOW_FREQ] = {.id = "low_freq", .unit = "Hz", .type = MB_PARAM_NUMBER,
                    .min = 20, .max = 1000, .def = 250,
                    .scale = MB_SCALE_LOG, .flags = MB_PARAM_SMOOTH,
                    .help = "low band corner (half the low_mult change)"},
    [P_HIGH_FREQ] = {.id = "high_freq", .unit = "Hz",
                     .type = MB_PARAM_NUMBER, .min = 1000, .max = 20000,
                     .def = 6000, .scale = MB_SCALE_LOG,
                     .flags = MB_PARAM_SMOOTH,
                     .help = "high band corner (held below 0.45 x rate)"},
    [P_MOD_DEPTH] = {.id = "mod_depth", .unit = "ms",
                     .type = MB_PARAM_NUMBER, .min = 0,
                     .max = MOD_DEPTH_MAX_MS, .def = 0.4,
                     .flags = MB_PARAM_SMOOTH,
                     .help = "peak length change of 4 of the 16 lines"},
    [P_MOD_RATE] = {.id = "mod_rate", .unit = "Hz", .type = MB_PARAM_NUMBER,
                    .min = 0.01, .max = 5, .def = 0.6,
                    .scale = MB_SCALE_LOG,
                    .help = "modulation rate"},
    [P_DIFFUSION] = {.id = "diffusion", .unit = "", .type = MB_PARAM_NUMBER,
                     .min = 0, .max = 1, .def = 0.75,
                     .flags = MB_PARAM_SMOOTH,
                     .help = "input diffusers' allpass gain / 0.8"},
};

const mb_module_desc mb_mod_reverb = {
    .id = "reverb",
    .summary = "algorithmic reverb: 16-line feedback delay network",
    .doc = "A feedback delay network after J.-M. Jot: 16 delay lines mixed "
           "by a 16 x 16 Hadamard matrix (divided by 4: orthogonal, so the "
           "loop is lossless) with an absorption filter per line that sets "
           "the decay. Each input channel goes through the predelay and four "
           "series allpass diffusers (1.3-7.1 ms, coefficient 0.8 x "
           "diffusion) into all 16 lines with orthogonal +-1/4 sign "
           "patterns; a mono input feeds both diffusers at -3 dB and the "
           "output is always stereo. Line lengths are 31-97 ms x "
           "4^(size - 1) (7.8-24 ms at size 0, 16-49 ms at 0.5), each "
           "rounded to a distinct prime number of frames at the graph's "
           "rate. A line of d frames has gain 10^(-3 d / (rate T)) per pass, "
           "computed from its actual length, so the decay is the same at "
           "every rate: 60 dB in T = rt60 between low_freq and high_freq, "
           "rt60 x low_mult well below low_freq and rt60 x high_mult well "
           "above high_freq. The transitions are second-order shelves "
           "(trapezoidal state-variable filters, Q 0.707, monotonic) with "
           "half of the change in dB per pass at the corner, 94 % of it an "
           "octave past the corner and 99.6 % two octaves past. high_mult = 0 "
           "(default) takes the treble multiplier from damping: 4^-damping "
           "(damping 0: 1, 0.5: 0.5, 1: 0.25); a high_mult above 0 "
           "overrides damping. Lines 1-4 change length by +-mod_depth "
           "sinusoidally at mod_rate (phases a quarter turn apart; "
           "first-order allpass interpolation, magnitude exactly 1) against "
           "metallic ringing; "
           "their mean length is the designed one, so the decay does not "
           "change. The wet left and right are two orthogonal sign "
           "combinations of all 16 lines (late correlation near 0), then "
           "width scales the wet side (0 mono, 1 full) and out = dry (1 - "
           "mix) + wet mix; mix 0 passes the input bit-exact (a mono input "
           "on both channels). The wet level follows the decay: for a unit "
           "impulse into one input channel each wet channel's energy is "
           "rt60 / 4 s at mix 1 with flat multipliers, for rt60 well above "
           "the line lengths (measured: -0.5 dB at 2 s, -0.9 dB at 1 s, -1.7 "
           "dB at 0.5 s); a "
           "stereo noise at rt60 2 s comes out near its own level. rt60, "
           "damping, the "
           "multipliers, corners and diffusion ramp with the coefficients "
           "recomputed every 32 frames; mix, width and mod_depth ramp per "
           "frame; mod_rate changes at once; size and predelay re-create the "
           "node. Renders are deterministic and independent of the block "
           "size. Tail: predelay + diffuser ringing + the time the slowest "
           "band takes to fall 240 dB (about 4 x rt60 x the largest "
           "multiplier); when the input has been below -200 dBFS and the "
           "whole state is below -200 dBFS (checked every 4096 frames), the "
           "state is cleared and the wet output is exactly zero until the "
           "next input, so the tail ends in digital silence.",
    .inputs = inputs,
    .n_inputs = 1,
    .has_output = 1,
    .params = params,
    .n_params = NPARAM,
    .state_size = sizeof(rv_state),
    .channels = channels,
    .create = create,
    .set_param = set_param,
    .process = process,
    .reset = reset,
    .tail = tail,
    .destroy = destroy,
};
