/* truepeak.c - see truepeak.h for the design and its measured response. */
#include "truepeak.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 256 /* frames per inner pass */
#define HIST 40   /* history frames kept per channel (>= 36, see env4) */
#define XLEN (HIST + CHUNK + 64) /* + room for the last vector's lanes */
#define WLEN (CHUNK + 32)        /* work arrays */
#define T1 16 /* stage 1 tap pairs (32 taps) */
#define T2 4  /* stage 2 tap pairs (8 taps) */

#include "dsp/simd.h"

static inline int vany(v8i m) { /* any lane set */
  typedef long long v4l __attribute__((vector_size(32)));
  const v4l t = (v4l)m;
  return (t[0] | t[1] | t[2] | t[3]) != 0;
}
static inline v8f vmax(v8f a, v8f b) {
  v8f r; /* written per lane: GCC and Clang both make this one vmaxps */
  for (int l = 0; l < 8; l++) r[l] = a[l] > b[l] ? a[l] : b[l];
  return r;
}

/* Modified Bessel function of the first kind, order 0 (power series). */
static double bessel_i0(double x) {
  double s = 1, t = 1;
  for (int k = 1; k < 60; k++) {
    t *= (x / (2 * k)) * (x / (2 * k));
    s += t;
    if (t < 1e-17 * s) break;
  }
  return s;
}

/* Half-band midpoint taps: h(t - 1/2) for t = 1..pairs, where h is the sinc
 * under a Kaiser window of half-width `pairs` samples; normalised so that
 * the 2 * pairs taps sum to 1. */
static void halfband(float *c, int pairs, double beta) {
  double h[T1], sum = 0;
  for (int t = 1; t <= pairs; t++) {
    const double u = t - 0.5, r = u / pairs;
    const double w = bessel_i0(beta * sqrt(1 - r * r)) / bessel_i0(beta);
    h[t - 1] = sin(M_PI * u) / (M_PI * u) * w;
    sum += 2 * h[t - 1];
  }
  for (int t = 0; t < pairs; t++) c[t] = (float)(h[t] / sum);
}

int mb_truepeak_factor(double rate, int flags) {
  if (flags & MB_TP_FINE) return rate < 192000 ? 4 : 2;
  return rate < 96000 ? 4 : rate < 192000 ? 2 : 1;
}

void mb_truepeak_free(mb_truepeak *tp) {
  free(tp->x);
  free(tp->m);
  tp->x = tp->m = NULL;
}

mb_status mb_truepeak_init(mb_truepeak *tp, double rate, int nch,
                           int flags) {
  memset(tp, 0, sizeof *tp);
  if (nch < 1 || nch > MB_MAX_CHANNELS || !(rate > 0)) return MB_ERR_ARG;
  tp->nch = nch;
  tp->factor = mb_truepeak_factor(rate, flags);
  tp->refine = (flags & MB_TP_REFINE) != 0;
  /* look-ahead: stage 1 reaches 16 frames ahead; the 4x quarter points
   * use midpoints up to 2 frames further; 1x refinement needs x[j + 1] */
  tp->delay = tp->factor == 4 ? 18 : tp->factor == 2 ? 16 : 1;
  halfband(tp->c1, T1, 6.0);
  halfband(tp->c2, T2, 6.0);
  tp->x = calloc((size_t)nch * XLEN, sizeof(float));
  tp->m = calloc(WLEN, sizeof(float));
  if (!tp->x || !tp->m) {
    mb_truepeak_free(tp);
    return MB_ERR_NOMEM;
  }
  return MB_OK;
}

void mb_truepeak_reset(mb_truepeak *tp) {
  if (tp->x) memset(tp->x, 0, sizeof(float) * (size_t)tp->nch * XLEN);
}

/* Stage 1: M[u] = midpoint between x(k0 + u) and x(k0 + u + 1), for
 * u < count, where B[u] = x(k0 + u). Taps pair up by symmetry; two output
 * vectors per pass. */
static void midpoints(const float *c1, const float *B, float *M, int count) {
  for (int u = 0; u < count; u += 16) {
    /* odd and even taps in separate sums: shorter dependency chains */
    v8f a0 = {0}, a1 = {0}, b0 = {0}, b1 = {0};
    for (int t = 1; t <= T1; t += 2) {
      a0 += c1[t - 1] * (ld(B + u + t) + ld(B + u + 1 - t));
      b0 += c1[t - 1] * (ld(B + u + 8 + t) + ld(B + u + 9 - t));
      a1 += c1[t] * (ld(B + u + t + 1) + ld(B + u - t));
      b1 += c1[t] * (ld(B + u + 9 + t) + ld(B + u + 8 - t));
    }
    st(M + u, a0 + a1);
    st(M + u + 8, b0 + b1);
  }
}

/* The parabola through (l, a, r) at a local maximum a >= l, r: its crest
 * a + (r - l)^2 / (8 (2a - l - r)); elsewhere just a. With d1 = a - l and
 * d2 = a - r the correction is at most (d1 + d2) / 8 and is 0 when both
 * are 0 (the tiny term only avoids 0/0). */
static inline v8f crest(v8f l, v8f a, v8f r) {
  const v8f d1 = a - l, d2 = a - r, z = {0};
  const v8i loc = (d1 >= z) & (d2 >= z);
  const v8f d = d1 - d2;
  const v8f corr = d * d / (8.0f * (d1 + d2) + 1e-30f);
  return a + (v8f)((v8i)corr & loc);
}

/* Where envelope values go: stored, maxed into dst, or into a peak. Only
 * the n real lanes are touched (dst is the caller's). */
enum { PUT_STORE, PUT_MAX, PUT_PEAK };
typedef struct {
  int mode;
  float *dst;
  v8f acc;    /* PUT_PEAK: running maximum of whole vectors */
  float peak; /* PUT_PEAK: of the last partial vector */
} sink;

static inline void put(sink *o, int i, int n, v8f e) {
  if (i + 8 <= n) {
    if (o->mode == PUT_STORE)
      st(o->dst + i, e);
    else if (o->mode == PUT_MAX)
      st(o->dst + i, vmax(ld(o->dst + i), e));
    else
      o->acc = vmax(o->acc, e);
    return;
  }
  for (int l = 0; l < n - i; l++) {
    const float v = e[l];
    if (o->mode == PUT_STORE)
      o->dst[i + l] = v;
    else if (o->mode == PUT_MAX)
      o->dst[i + l] = v > o->dst[i + l] ? v : o->dst[i + l];
    else
      o->peak = v > o->peak ? v : o->peak;
  }
}

/* Envelope of n intervals, for the channel whose history and chunk are in
 * xb. X[i] = x(j0 + i), j0 = first interval. */
static void env4(mb_truepeak *tp, const float *xb, int n, float skip,
                 sink *o) {
  const float *X = xb + HIST - 18;
  float *M = tp->m;
  const float *c = tp->c2;
  /* M[u] = m(j0 - 3 + u): x(j0 - 3 + u + t) = X[u - 3 + t], t = -15..16 */
  midpoints(tp->c1, X - 3, M, n + 5);
  for (int i = 0; i < n; i += 8) {
    /* x_{j+t} and m_{j+t} = M[i + 3 + t] around interval j = j0 + i */
    const v8f xm1 = ld(X + i - 1), x0 = ld(X + i), x1 = ld(X + i + 1),
              x2 = ld(X + i + 2);
    const v8f mm2 = ld(M + i + 1), mm1 = ld(M + i + 2), m0 = ld(M + i + 3),
              m1 = ld(M + i + 4), m2 = ld(M + i + 5);
    /* quarter points on the 2x sequence S = .. x_j, m_j, x_{j+1} ..:
     * q1 between x_j and m_j, q3 between m_j and x_{j+1} */
    const v8f q1 = c[0] * (m0 + x0) + c[1] * (x1 + mm1) +
                   c[2] * (m1 + xm1) + c[3] * (x2 + mm2);
    const v8f q3 = c[0] * (x1 + m0) + c[1] * (m1 + x0) +
                   c[2] * (x2 + mm1) + c[3] * (m2 + xm1);
    const v8f a0 = vabs(x0), a1 = vabs(q1), a2 = vabs(m0), a3 = vabs(q3);
    v8f e = vmax(vmax(a0, a1), vmax(a2, a3));
    if (tp->refine && vany(e >= skip)) {
      /* q3 of the interval before: x_j's left neighbour on the grid */
      const v8f ql = c[0] * (x0 + mm1) + c[1] * (m0 + xm1) +
                     c[2] * (x1 + mm2) + c[3] * (m1 + ld(X + i - 2));
      /* refine the interval's largest grid point only: a second local
       * maximum within one interval would need content above fs / 2 */
      const v8i s0 = a0 == e, s1 = a1 == e, s2 = a2 == e;
      const v8f l = vsel(s0, vabs(ql), vsel(s1, a0, vsel(s2, a1, a2)));
      const v8f r = vsel(s0, a1, vsel(s1, a2, vsel(s2, a3, vabs(x1))));
      e = crest(l, e, r);
    }
    put(o, i, n, e);
  }
}

static void env2(mb_truepeak *tp, const float *xb, int n, float skip,
                 sink *o) {
  const float *X = xb + HIST - 16;
  float *M = tp->m;
  midpoints(tp->c1, X - 1, M, n + 1); /* M[u] = m(j0 - 1 + u) */
  for (int i = 0; i < n; i += 8) {
    const v8f al = vabs(ld(M + i)), a0 = vabs(ld(X + i)),
              a1 = vabs(ld(M + i + 1)), ar = vabs(ld(X + i + 1));
    v8f e = vmax(a0, a1);
    if (tp->refine && vany(e >= skip))
      e = vmax(e, vmax(crest(al, a0, a1), crest(a0, a1, ar)));
    put(o, i, n, e);
  }
}

static void env1(mb_truepeak *tp, const float *xb, int n, float skip,
                 sink *o) {
  const float *X = xb + HIST - 1;
  for (int i = 0; i < n; i += 8) {
    const v8f a0 = vabs(ld(X + i));
    v8f e = a0;
    if (tp->refine && vany(e >= skip))
      e = vmax(e, crest(vabs(ld(X + i - 1)), a0, vabs(ld(X + i + 1))));
    put(o, i, n, e);
  }
}

/* Append n <= CHUNK frames of channel c (src[k * stride]) and send their
 * n envelope values to o. Vectors whose grid values are all below 0.75
 * level are not refined: a crest adds at most (d1 + d2) / 8 <= a / 4, so
 * their refined values would stay below 0.9375 level. */
static void run(mb_truepeak *tp, int c, const float *src, int stride, int n,
                float level, sink *o) {
  float *xb = tp->x + (size_t)c * XLEN;
  const float skip = 0.75f * level;
  if (stride == 1)
    memcpy(xb + HIST, src, sizeof(float) * (size_t)n);
  else
    for (int k = 0; k < n; k++) xb[HIST + k] = src[(size_t)k * stride];
  if (tp->factor == 4)
    env4(tp, xb, n, skip, o);
  else if (tp->factor == 2)
    env2(tp, xb, n, skip, o);
  else
    env1(tp, xb, n, skip, o);
  memmove(xb, xb + n, sizeof(float) * HIST);
}

void mb_truepeak_envelope(mb_truepeak *tp, const float *const *in,
                          float *const *env, int n) {
  for (int off = 0; off < n; off += CHUNK) {
    const int k = n - off < CHUNK ? n - off : CHUNK;
    for (int c = 0; c < tp->nch; c++) {
      sink o = {.mode = PUT_STORE, .dst = env[c] + off};
      run(tp, c, in[c] + off, 1, k, tp->level, &o);
    }
  }
}

void mb_truepeak_envelope_max(mb_truepeak *tp, const float *const *in,
                              float *env, int n) {
  for (int off = 0; off < n; off += CHUNK) {
    const int k = n - off < CHUNK ? n - off : CHUNK;
    for (int c = 0; c < tp->nch; c++) {
      sink o = {.mode = c ? PUT_MAX : PUT_STORE, .dst = env + off};
      run(tp, c, in[c] + off, 1, k, tp->level, &o);
    }
  }
}

/* Meters: values below the running maximum cannot raise it, so it is the
 * refinement floor. */
static void meter(mb_truepeak *tp, int c, const float *src, int stride,
                  int k, float *peak) {
  sink o = {.mode = PUT_PEAK, .peak = *peak};
  o.acc = o.peak + (v8f){0};
  run(tp, c, src, stride, k, *peak, &o);
  for (int l = 0; l < 8; l++) o.peak = o.acc[l] > o.peak ? o.acc[l] : o.peak;
  *peak = o.peak;
}

void mb_truepeak_update(mb_truepeak *tp, const float *const *in, int n,
                        float *peak) {
  for (int off = 0; off < n; off += CHUNK) {
    const int k = n - off < CHUNK ? n - off : CHUNK;
    for (int c = 0; c < tp->nch; c++) meter(tp, c, in[c] + off, 1, k, &peak[c]);
  }
}

void mb_truepeak_update_interleaved(mb_truepeak *tp, const float *x, int n,
                                    float *peak) {
  const int nch = tp->nch;
  for (int off = 0; off < n; off += CHUNK) {
    const int k = n - off < CHUNK ? n - off : CHUNK;
    for (int c = 0; c < nch; c++)
      meter(tp, c, x + (size_t)off * nch + c, nch, k, &peak[c]);
  }
}
