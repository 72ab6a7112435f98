/* oversample.c - cascaded half-band oversampler (see oversample.h).
 *
 * Notation for one stage: half-band h of odd length N = 4m + 3, centre
 * c = 2m + 1, h[c] = 1/2, h[c +- 2i] = 0 for i >= 1; the other taps are the
 * even indices j = 2i, i = 0 .. T-1, T = 2m + 2 (symmetric).
 *
 * Interpolation by 2 (zero stuffing, filter, gain 2), at the output rate:
 *   u[2n]     = sum_i 2 h[2i] x[n - i]       (the FIR phase)
 *   u[2n + 1] = x[n - m]                     (the centre tap alone)
 * so u is x delayed by c samples of the output rate.
 *
 * Decimation by 2 of z (filter, keep one phase p in {0, 1}):
 *   y[n] = d[2n + p],  d = h * z
 *   p = 0: y[n] = sum_i h[2i] z[2(n-i)]     + z[2(n-m-1) + 1] / 2
 *   p = 1: y[n] = sum_i h[2i] z[2(n-i) + 1] + z[2(n-m)] / 2
 * If z lags the ideal signal by D samples of its rate, y lags it by
 * (D + c - p) / 2 samples of the lower rate. Choosing p = (D + c) mod 2
 * keeps that whole at every stage; the top-rate delay D starts whole (the
 * interpolators' c's plus the caller's `extra`), so the final latency is a
 * whole number of base-rate frames and the response is symmetric about it.
 *
 * Each FIR output is a sum over the taps in one fixed order, computed by
 * the vector kernel fir() below for every sample (there is no scalar tail:
 * buffers are padded to whole 32-sample groups), so a sample's value never
 * depends on where a block boundary fell. */
#include "dsp/oversample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GROUP 32 /* outputs per kernel iteration: 4 vectors of 8 */

typedef float v8 __attribute__((vector_size(32)));
/* The same, for unaligned loads and stores through float pointers (macros,
 * not functions: without AVX a function passing v8 changes the ABI). */
typedef float v8u __attribute__((vector_size(32), aligned(4), may_alias));
#define ld(p) (*(const v8u *)(p))
#define st8(p, v) (*(v8u *)(p) = (v))

typedef struct {
  int m, T;       /* half-band order and polyphase taps (T = 2m + 2) */
  float *gu, *gd; /* T taps: interpolator 2 h[2i], decimator h[2i] */
  float *ux;      /* interpolator input: T - 1 history, then the block */
  float *dm, *dc; /* decimator: FIR phase (T - 1 history) and centre
                     phase (m + 1 history) */
  int phase;      /* decimator output phase p */
  int cdel;       /* centre-phase delay in lower-rate samples */
} stage;

struct mb_oversampler {
  int factor, nst, max_frames, extra, latency, cap;
  stage st[4];
  float *top;  /* top-rate buffer handed to the caller */
  float *tmp;  /* FIR outputs before interleaving / decimator outputs */
  float *tmp2; /* the other half of the decimator ping-pong */
  void *mem;
};

static int pad(int n) { return (n + GROUP - 1) / GROUP * GROUP; }

/* ---- design (double, at create) ------------------------------------- */

/* Modified Bessel function of the first kind, order 0 (power series). */
static double bessel_i0(double x) {
  double sum = 1, term = 1;
  for (int k = 1; k < 200; k++) {
    term *= (x / (2 * k)) * (x / (2 * k));
    sum += term;
    if (term < 1e-17 * sum) break;
  }
  return sum;
}

/* Kaiser-windowed half-band of order m (length 4m + 3), cut-off at a
 * quarter of its rate; the non-centre taps are scaled so that they sum to
 * 1/2 exactly, so the DC gain is exactly 1. h has 4m + 3 entries. */
static void design_halfband(double *h, int m, double beta) {
  const int N = 4 * m + 3, c = 2 * m + 1;
  double side = 0;
  for (int j = 0; j < N; j++) {
    const int k = j - c;
    if (k == 0 || k % 2 == 0) {
      h[j] = k == 0 ? 0.5 : 0;
      continue;
    }
    const double r = (double)k / c; /* -1 .. 1 over the window */
    const double w =
        bessel_i0(beta * sqrt(fmax(0.0, 1 - r * r))) / bessel_i0(beta);
    h[j] = sin(M_PI * k / 2) / (M_PI * k) * w;
    side += h[j];
  }
  for (int j = 0; j < N; j++)
    if (j != c) h[j] *= 0.5 / side;
}

/* Zero-phase response at f (cycles per sample of the stage's rate). */
static double halfband_resp(const double *h, int m, double f) {
  const int c = 2 * m + 1;
  double r = h[c];
  for (int k = 1; k <= c; k += 2) r += 2 * h[c + k] * cos(2 * M_PI * f * k);
  return r;
}

/* Worst passband deviation (dB) and stopband level (dB) on a dense grid. */
static void halfband_check(const double *h, int m, double fp, double fs,
                           double *pass_db, double *stop_db) {
  double dev = 0, stop = 0;
  for (int i = 0; i <= 400; i++) {
    const double r = fabs(halfband_resp(h, m, fp * i / 400));
    dev = fmax(dev, fabs(20 * log10(r)));
  }
  for (int i = 0; i <= 1600; i++) {
    const double r = fabs(halfband_resp(h, m, fs + (0.5 - fs) * i / 1600));
    stop = fmax(stop, r);
  }
  *pass_db = dev;
  *stop_db = 20 * log10(stop + 1e-300);
}

/* Designs the half-band of a stage with passband fp and stopband fsb
 * (cycles per sample of its rate, fp + fsb = 1/2). Returns the order m. */
static int design_stage(double *h, int hmax, double fp, double fsb) {
  const double A = 100, beta = 0.1102 * (A - 8.7); /* Kaiser's beta */
  const double dw = fsb - fp;
  /* Kaiser's length estimate N = (A - 7.95) / (14.36 dw) + 1 */
  const double n_est = (A - 7.95) / (14.36 * dw) + 1;
  int m = (int)ceil((n_est - 3) / 4) - 1;
  if (m < 0) m = 0;
  for (;; m++) {
    if (4 * m + 3 > hmax) return -1;
    design_halfband(h, m, beta);
    double pass_db, stop_db;
    halfband_check(h, m, fp, fsb, &pass_db, &stop_db);
    if (stop_db <= -A && pass_db <= 0.0005) return m;
  }
}

/* ---- kernels (audio) -------------------------------------------------- */

/* y[i] = sum_{k<T} g[k] x[i + k] for i < n (n a multiple of GROUP), for
 * symmetric taps (g[k] = g[T-1-k], T even): summed as g[k] (x[i + k] +
 * x[i + T-1-k]) over k < T/2, the even and the odd k in separate chains
 * (each in k order) added at the end, so eight independent chains hide the
 * FMA latency and the pairwise adds run beside the FMAs. Reads
 * x[0 .. n + T - 2]. */
static void fir(float *restrict y, const float *restrict x,
                const float *restrict g, int T, int n) {
  const int H = T / 2;
  for (int i = 0; i < n; i += GROUP) {
    v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    v8 b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
    const float *p = x + i, *q = x + i + T - 1;
    int k = 0;
    for (; k + 1 < H; k += 2) {
      const v8 ga = (v8){0} + g[k], gb = (v8){0} + g[k + 1];
      a0 += ga * (ld(p + k) + ld(q - k));
      a1 += ga * (ld(p + k + 8) + ld(q - k + 8));
      a2 += ga * (ld(p + k + 16) + ld(q - k + 16));
      a3 += ga * (ld(p + k + 24) + ld(q - k + 24));
      b0 += gb * (ld(p + k + 1) + ld(q - k - 1));
      b1 += gb * (ld(p + k + 9) + ld(q - k + 7));
      b2 += gb * (ld(p + k + 17) + ld(q - k + 15));
      b3 += gb * (ld(p + k + 25) + ld(q - k + 23));
    }
    if (k < H) {
      const v8 ga = (v8){0} + g[k];
      a0 += ga * (ld(p + k) + ld(q - k));
      a1 += ga * (ld(p + k + 8) + ld(q - k + 8));
      a2 += ga * (ld(p + k + 16) + ld(q - k + 16));
      a3 += ga * (ld(p + k + 24) + ld(q - k + 24));
    }
    st8(y + i, a0 + b0);
    st8(y + i + 8, a1 + b1);
    st8(y + i + 16, a2 + b2);
    st8(y + i + 24, a3 + b3);
  }
}

/* Lane shuffles (GCC and clang spell them differently). */
#if defined(__clang__)
#define SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
typedef int v8i __attribute__((vector_size(32)));
#define SHUF(a, b, ...) __builtin_shuffle(a, b, (v8i){__VA_ARGS__})
#endif

/* dst[2i] = e[i], dst[2i + 1] = o[i] for i < n (a multiple of 8). */
static void interleave(float *restrict dst, const float *restrict e,
                       const float *restrict o, int n) {
  for (int i = 0; i < n; i += 8) {
    const v8 a = ld(e + i), b = ld(o + i);
    st8(dst + 2 * i, SHUF(a, b, 0, 8, 1, 9, 2, 10, 3, 11));
    st8(dst + 2 * i + 8, SHUF(a, b, 4, 12, 5, 13, 6, 14, 7, 15));
  }
}

/* e[i] = src[2i], o[i] = src[2i + 1] for i < n (a multiple of 8). */
static void deinterleave(float *restrict e, float *restrict o,
                         const float *restrict src, int n) {
  for (int i = 0; i < n; i += 8) {
    const v8 a = ld(src + 2 * i), b = ld(src + 2 * i + 8);
    st8(e + i, SHUF(a, b, 0, 2, 4, 6, 8, 10, 12, 14));
    st8(o + i, SHUF(a, b, 1, 3, 5, 7, 9, 11, 13, 15));
  }
}

/* Interpolate nin samples already placed at s->ux[T - 1 ..] into 2 nin
 * samples at dst (writes 2 pad(nin)). */
static void up_stage(stage *s, float *tmp, float *dst, int nin) {
  const int np = pad(nin), T = s->T;
  fir(tmp, s->ux, s->gu, T, np);
  interleave(dst, tmp, s->ux + s->m + 1 /* x[n - m] */, np);
  memmove(s->ux, s->ux + nin, sizeof(float) * (size_t)(T - 1));
}

/* Decimate 2 nout samples at z into nout samples at y (writes pad(nout);
 * reads z[0 .. 2 pad(nout) - 1]). */
static void down_stage(stage *s, const float *z, float *y, int nout) {
  const int np = pad(nout), T = s->T, K = s->m + 1;
  float *dm = s->dm + T - 1, *dc = s->dc + K;
  if (s->phase)
    deinterleave(dc, dm, z, np);
  else
    deinterleave(dm, dc, z, np);
  fir(y, s->dm, s->gd, T, np);
  const float *ctr = dc - s->cdel;
  for (int i = 0; i < np; i += 8) st8(y + i, ld(y + i) + 0.5f * ld(ctr + i));
  memmove(s->dm, s->dm + nout, sizeof(float) * (size_t)(T - 1));
  memmove(s->dc, s->dc + nout, sizeof(float) * (size_t)K);
}

/* ---- API ---------------------------------------------------------------- */

mb_oversampler *mb_os_create(int factor, int max_frames, int extra,
                             mb_status *st) {
  int nst = 0;
  switch (factor) {
  case 1: nst = 0; break;
  case 2: nst = 1; break;
  case 4: nst = 2; break;
  case 8: nst = 3; break;
  case 16: nst = 4; break;
  default: *st = MB_ERR_ARG; return NULL;
  }
  if (max_frames < 1 || max_frames > (1 << 20) / factor || extra < 0) {
    *st = MB_ERR_ARG;
    return NULL;
  }
  mb_oversampler *os = calloc(1, sizeof *os);
  if (!os) {
    *st = MB_ERR_NOMEM;
    return NULL;
  }
  os->factor = factor;
  os->nst = nst;
  os->max_frames = max_frames;
  os->extra = extra;
  /* Every buffer can hold the largest padded top-rate block plus slack:
   * stage outputs are written in whole groups past the valid samples. */
  const int half = factor > 1 ? factor / 2 : 1;
  os->cap = 2 * pad(max_frames * half) + 2 * GROUP;

  /* Design (double), then count the memory. */
  double hbuf[4][1024];
  int m[4] = {0};
  for (int s = 0; s < nst; s++) {
    const double rate = (double)(2 << s); /* stage rate in units of fs */
    const double fp = s == 0 ? 0.4535 : 0.5465;
    const double fsb = s == 0 ? 0.5465 : (double)(1 << s) - 0.5465;
    m[s] = design_stage(hbuf[s], 1024, fp / rate, fsb / rate);
    if (m[s] < 0) {
      free(os);
      *st = MB_ERR_ARG;
      return NULL;
    }
  }
  size_t total = (size_t)os->cap * 3;
  for (int s = 0; s < nst; s++) {
    const int T = 2 * m[s] + 2;
    total += 2 * (size_t)T + 3 * ((size_t)T + os->cap);
  }
  float *mem = calloc(total, sizeof(float));
  if (!mem) {
    free(os);
    *st = MB_ERR_NOMEM;
    return NULL;
  }
  os->mem = mem;
  os->top = mem, mem += os->cap;
  os->tmp = mem, mem += os->cap;
  os->tmp2 = mem, mem += os->cap;
  int delay = 0; /* top-rate delay of the interpolators */
  for (int s = 0; s < nst; s++) {
    stage *g = &os->st[s];
    g->m = m[s];
    g->T = 2 * m[s] + 2;
    g->gu = mem, mem += g->T;
    g->gd = mem, mem += g->T;
    g->ux = mem, mem += g->T + os->cap;
    g->dm = mem, mem += g->T + os->cap;
    g->dc = mem, mem += g->T + os->cap;
    for (int i = 0; i < g->T; i++) {
      g->gu[i] = (float)(2 * hbuf[s][2 * i]);
      g->gd[i] = (float)hbuf[s][2 * i];
    }
    delay += (2 * m[s] + 1) << (nst - 1 - s);
  }
  /* Decimators from the top down: keep the delay whole (see top). */
  int D = delay + extra;
  for (int s = nst - 1; s >= 0; s--) {
    stage *g = &os->st[s];
    const int c = 2 * g->m + 1;
    g->phase = (D + c) & 1;
    g->cdel = g->phase ? g->m : g->m + 1;
    D = (D + c - g->phase) / 2;
  }
  os->latency = D;
  *st = MB_OK;
  return os;
}

void mb_os_free(mb_oversampler *os) {
  if (!os) return;
  free(os->mem);
  free(os);
}

int mb_os_factor(const mb_oversampler *os) { return os->factor; }
int mb_os_latency(const mb_oversampler *os) { return os->latency; }
int mb_os_padded(const mb_oversampler *os, int n) {
  return pad(n * os->factor);
}

int mb_os_stage_taps(const mb_oversampler *os, int *taps, int max) {
  for (int s = 0; s < os->nst && s < max; s++) taps[s] = os->st[s].T + 1;
  return os->nst;
}

float *mb_os_up(mb_oversampler *os, const float *in, int n) {
  if (os->nst == 0) {
    memcpy(os->top, in, sizeof(float) * (size_t)n);
    return os->top;
  }
  stage *s0 = &os->st[0];
  memcpy(s0->ux + s0->T - 1, in, sizeof(float) * (size_t)n);
  int nin = n;
  for (int s = 0; s < os->nst; s++) {
    stage *g = &os->st[s];
    float *dst =
        s + 1 < os->nst ? os->st[s + 1].ux + os->st[s + 1].T - 1 : os->top;
    up_stage(g, os->tmp, dst, nin);
    nin *= 2;
  }
  return os->top;
}

void mb_os_down(mb_oversampler *os, float *out, int n) {
  if (os->nst == 0) {
    if (out != os->top) memmove(out, os->top, sizeof(float) * (size_t)n);
    return;
  }
  const float *z = os->top;
  float *y = os->tmp;
  int nout = n * os->factor / 2;
  for (int s = os->nst - 1; s >= 0; s--) {
    down_stage(&os->st[s], z, y, nout);
    z = y;
    y = y == os->tmp ? os->tmp2 : os->tmp;
    nout /= 2;
  }
  memcpy(out, z, sizeof(float) * (size_t)n);
}

void mb_os_reset(mb_oversampler *os) {
  for (int s = 0; s < os->nst; s++) {
    stage *g = &os->st[s];
    memset(g->ux, 0, sizeof(float) * (size_t)(g->T - 1));
    memset(g->dm, 0, sizeof(float) * (size_t)(g->T - 1));
    memset(g->dc, 0, sizeof(float) * (size_t)(g->m + 1));
  }
}
