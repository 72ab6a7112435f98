/* limiter.c - look-ahead brickwall limiter on true peaks (or sample peaks).
 *
 * Per frame j the detector gives the peak p(j): in true-peak mode the
 * largest oversampled value on the two intervals touching the sample
 * (dsp/truepeak.h with MB_TP_REFINE | MB_TP_FINE: 4x below 192 kHz),
 * else |x(j)|; over channels, or per channel with `link` below 1. The
 * reduction needed is q(j) = 1 - ceiling / p(j) (0 when p <= ceiling).
 * With L look-ahead frames, a guard of `a` frames around each peak (the
 * detector's delay D, so the gain is constant wherever the interpolator
 * looks; 0 in sample-peak mode) and H hold frames, the gain applied to
 * frame n is 1 - u(n), where
 *
 *   h(m) = max q(m - a - H .. m + L + a)          sliding maximum
 *   v(n) = sum_j w_j h(n - j), j = 0..L            two running means
 *   u(n) = max(v(n), alpha u(n - 1))               release
 *
 * The weights w_j (a box of k1 frames convolved with a box of k2 frames,
 * k1 + k2 - 1 = L + 1) are >= 0 and sum to 1, and every h(n - j) with
 * j = 0..L covers q(k) for k in [n - a - H, n + a]; so v(n) >= q(k) there:
 * the gain is at or below what every peak within `a` frames (and H frames
 * back) needs. The attack is a smooth S-curve over the L frames before a
 * peak, flat over the peak's +-a frames and H more; then 1 - gain decays
 * as alpha^t = exp(-t / release) (for the first few frames the running
 * means let go more slowly than that and lead). Output frame t is input
 * frame t - latency, latency = D + L + a.
 *
 * Integers make the running sums exact (no drift, block-size independent):
 * h is rounded up to a multiple of 2^-24 before summing. The output is
 * clamped at the ceiling rounded down to a float, which only ever removes
 * rounding (sample-peak mode then holds the ceiling to the last bit). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsp/ramp.h"
#include "dsp/truepeak.h"
#include "mb_module.h"

enum { P_CEILING, P_RELEASE, P_LOOKAHEAD, P_TRUE_PEAK, P_GAIN, P_HOLD, P_LINK,
       NPARAM };

#define CH 256            /* frames per inner pass */
#define RS (CH + 16)      /* row stride of chunk buffers: vector overrun */
#define QSCALE 16777216.0 /* 2^24: fixed point of the running sums */

#include "dsp/simd.h"

static inline v8f vmax(v8f a, v8f b) {
  v8f r; /* written per lane: GCC and Clang both make this one vmaxps */
  for (int l = 0; l < 8; l++) r[l] = a[l] > b[l] ? a[l] : b[l];
  return r;
}

/* One gain computer: sliding maximum (van Herk / Gil-Werman: blocks of w
 * inputs, prefix maxima running, suffix maxima of the previous block),
 * two running sums, release. */
typedef struct {
  int w, pos;
  float pre;  /* max of the current block so far */
  float *blk; /* current block's inputs, w (zeros after) */
  float *suf; /* suffix maxima of the previous block (suf[w] = 0) */
  int k1, k2, i1, i2;
  int64_t *r1, *r2; /* rings of the two sums' inputs */
  int64_t s1, s2;
  double inv; /* 1 / (k1 k2 2^24) */
  double u;   /* released reduction, 1 - gain */
  int64_t zrun; /* frames since the last q above 0 (at least w: no peak in
                   the window) */
} gainpipe;

typedef struct {
  double rate;
  int nch, tp_mode, npipe; /* npipe: 1 (linked) or nch */
  int L, a, D, H, lat;
  double link, alpha, release_ms;
  mb_gramp ceiling, drive;
  mb_truepeak tp;
  gainpipe pipe[MB_MAX_CHANNELS];
  int64_t t;           /* frames processed */
  int64_t ramp_last;   /* last frame whose ceiling was ramping */
  int rmask;           /* ring size - 1 */
  float *ring;         /* nch rings of input (after drive) */
  float *cring;        /* ceiling per frame, float rounded down */
  /* chunk buffers, rows of RS floats */
  float *xin;          /* nch rows: input after drive */
  float *env;          /* nch rows from env + 8: envelopes; env[-1] is the
                          last value of the previous chunk */
  float *q;            /* npipe rows: peaks, then reduction needed */
  float *g;            /* npipe rows: gains */
  float *cbuf;         /* one row: ceiling per frame, link temp */
  /* results */
  int64_t skip, length;
  double gmin, logsum; /* smallest gain; sum of log2 gains over the signal */
  int64_t counted;
} lim_state;

/* [any] Largest float <= v (v > 0): clamping there keeps even rounding
 * from passing the ceiling. */
static float floor_float(double v) {
  float f = (float)v;
  if ((double)f > v) f = nextafterf(f, 0.0f);
  return f;
}

static void pipe_clear(gainpipe *p) {
  const int wp = 4 * ((p->w + 3) / 4) + 1;
  p->pos = 0;
  p->pre = 0;
  memset(p->blk, 0, sizeof(float) * (size_t)(2 * wp));
  p->i1 = p->i2 = 0;
  memset(p->r1, 0, sizeof(int64_t) * (size_t)p->k1);
  memset(p->r2, 0, sizeof(int64_t) * (size_t)p->k2);
  p->s1 = p->s2 = 0;
  p->u = 0;
  p->zrun = p->w;
}

static int pipe_init(gainpipe *p, int w, int span) {
  p->w = w;
  p->k1 = (span + 1) / 2; /* k1 + k2 - 1 = span */
  p->k2 = span + 1 - p->k1;
  p->inv = 1.0 / ((double)p->k1 * p->k2 * QSCALE);
  /* blk and suf padded to 4 ceil(w / 4) + 1 for suffix_max */
  const int wp = 4 * ((w + 3) / 4) + 1;
  p->blk = calloc((size_t)(2 * wp), sizeof(float));
  p->r1 = malloc(sizeof(int64_t) * (size_t)(p->k1 + p->k2));
  if (!p->blk || !p->r1) return -1;
  p->suf = p->blk + wp;
  p->r2 = p->r1 + p->k1;
  pipe_clear(p);
  return 0;
}

static void pipe_free(gainpipe *p) {
  free(p->blk);
  free(p->r1);
  p->blk = p->suf = NULL;
  p->r1 = p->r2 = NULL;
}

/* suf[k] = max blk[k .. w - 1]. A scan is one long dependency chain, so
 * it runs as four chains over quarters of the block (blk is zero beyond w,
 * up to 4 ceil(w / 4), and so stays suf from w on), then each quarter takes
 * the maximum of the quarters after it. */
static void suffix_max(const float *blk, float *suf, int w) {
  const int sl = (w + 3) / 4;
  float m0 = 0, m1 = 0, m2 = 0, m3 = 0;
  for (int k = sl - 1; k >= 0; k--) {
    const float b0 = blk[k], b1 = blk[sl + k], b2 = blk[2 * sl + k],
                b3 = blk[3 * sl + k];
    suf[k] = m0 = b0 > m0 ? b0 : m0;
    suf[sl + k] = m1 = b1 > m1 ? b1 : m1;
    suf[2 * sl + k] = m2 = b2 > m2 ? b2 : m2;
    suf[3 * sl + k] = m3 = b3 > m3 ? b3 : m3;
  }
  float carry = 0;
  for (int s = 3; s > 0; s--) {
    const float next = suf[s * sl];
    carry = next > carry ? next : carry;
    float *d = suf + (s - 1) * sl;
    int k = 0;
    for (; k + 8 <= sl; k += 8) st(d + k, vmax(ld(d + k), carry + (v8f){0}));
    for (; k < sl; k++) d[k] = d[k] > carry ? d[k] : carry;
  }
}

/* Below U_ONE, (float)(1 - u) is 1 exactly. Setting such a u to 0 changes
 * no gain, then or later: from a u and a u' both below U_ONE, max(v,
 * alpha u) and max(v, alpha u') are equal when v >= U_ONE and both stay
 * below U_ONE otherwise. So a release can end there, where it would
 * otherwise take three times as long to reach 1e-20. */
#define U_ONE 0x1p-25

/* No reduction needed in the window, none in these n frames, and both sums
 * empty (so their rings hold zeros): h, the sums and v stay 0, and the
 * gain is the release alone, computed as pipe_run would. The sliding
 * maximum's block takes the zeros. */
static void pipe_quiet(gainpipe *p, float *g, int n, double alpha) {
  double u = p->u;
  int i = 0;
  for (; i < n && u > 0; i++) {
    u *= alpha; /* max(v, alpha u) with v = 0 */
    if (u < U_ONE) u = 0;
    g[i] = (float)(1.0 - u);
  }
  for (; i < n; i++) g[i] = 1.0f;
  p->u = u;
  p->i1 = (int)((p->i1 + n) % p->k1);
  p->i2 = (int)((p->i2 + n) % p->k2);
  for (int left = n; left > 0;) {
    const int m = left < p->w - p->pos ? left : p->w - p->pos;
    memset(p->blk + p->pos, 0, sizeof(float) * (size_t)m);
    p->pos += m;
    left -= m;
    if (p->pos == p->w) { /* a block of zeros: its suffix maxima are 0 */
      memset(p->suf, 0, sizeof(float) * (size_t)p->w);
      p->pos = 0;
    }
  }
  p->zrun += n;
}

/* [audio] n reductions q (>= 0) -> n gains g (for frames L + a later). */
static void pipe_run(gainpipe *p, const float *q, float *g, int n,
                     double alpha) {
  if (p->s1 == 0 && p->s2 == 0 && p->zrun >= p->w) {
    int any = 0;
    for (int i = 0; i < n; i++) any |= q[i] != 0;
    if (!any) {
      pipe_quiet(p, g, n, alpha);
      return;
    }
  }
  int pos = p->pos, i1 = p->i1, i2 = p->i2;
  const int w = p->w, k1 = p->k1, k2 = p->k2;
  float pre = p->pre;
  float *blk = p->blk, *suf = p->suf;
  int64_t s1 = p->s1, s2 = p->s2, *r1 = p->r1, *r2 = p->r2;
  const double inv = p->inv;
  double u = p->u;
  for (int i = 0; i < n;) {
    /* frames up to the end of the current block of the sliding maximum */
    const int m = n - i < w - pos ? n - i : w - pos;
    for (int e = i + m; i < e; i++, pos++) {
      const float v = q[i];
      pre = v > pre ? v : pre;
      blk[pos] = v;
      const float h = pre > suf[pos + 1] ? pre : suf[pos + 1];
      /* round up to the 2^-24 grid (exact in float: h < 1, a power of two
       * scale), so the sums never understate a need */
      const int64_t qi = (int64_t)ceilf(h * 16777216.0f);
      s1 += qi - r1[i1];
      r1[i1] = qi;
      i1 = i1 + 1 == k1 ? 0 : i1 + 1;
      s2 += s1 - r2[i2];
      r2[i2] = s1;
      i2 = i2 + 1 == k2 ? 0 : i2 + 1;
      const double vn = (double)s2 * inv, ua = u * alpha;
      u = vn > ua ? vn : ua;
      g[i] = (float)(1.0 - u);
    }
    if (pos == w) { /* block complete: its suffix maxima, a new block */
      suffix_max(blk, suf, w);
      pos = 0;
      pre = 0;
    }
  }
  if (u < U_ONE) u = 0; /* and u never reaches the subnormals */
  int last = n;
  while (last > 0 && q[last - 1] == 0) last--;
  p->zrun = last ? n - last : p->zrun + n;
  p->pos = pos, p->i1 = i1, p->i2 = i2;
  p->pre = pre;
  p->s1 = s1, p->s2 = s2;
  p->u = u;
}

/* Per-frame factor of the release: exp(-1 / (release in frames)), kept
 * >= 0.1 (a release under half a frame is instant anyway). */
static double release_alpha(double ms, double rate) {
  const double a = exp(-1000.0 / (ms * rate));
  return a > 0.1 ? a : 0.1;
}

static void destroy(void *st) {
  lim_state *s = st;
  mb_truepeak_free(&s->tp);
  for (int k = 0; k < MB_MAX_CHANNELS; k++) pipe_free(&s->pipe[k]);
  free(s->ring); /* the chunk buffers share its allocation */
  s->ring = NULL;
}

static void clear(lim_state *s) {
  const float cf = floor_float(s->ceiling.value);
  mb_truepeak_reset(&s->tp);
  for (int k = 0; k < s->npipe; k++) pipe_clear(&s->pipe[k]);
  memset(s->ring, 0, sizeof(float) * (size_t)s->nch * (s->rmask + 1));
  for (int i = 0; i <= s->rmask; i++) s->cring[i] = cf;
  for (int c = 0; c < s->nch; c++) s->env[(size_t)c * RS - 1] = 0;
  s->t = 0;
  s->ramp_last = INT64_MIN / 2;
  s->gmin = 1;
  s->logsum = 0;
  s->counted = 0;
}

static mb_status create(void *st, const mb_config *c, char *err,
                        size_t errlen) {
  lim_state *s = st;
  const double *v = c->values;
  s->rate = c->rate;
  s->nch = c->in_channels[0];
  if (s->nch < 1) {
    snprintf(err, errlen, "limiter needs an input");
    return MB_ERR_ARG;
  }
  s->tp_mode = v[P_TRUE_PEAK] != 0;
  s->link = v[P_LINK];
  s->npipe = s->link >= 1 || s->nch == 1 ? 1 : s->nch;
  s->L = (int)lround(v[P_LOOKAHEAD] * c->rate / 1000);
  if (s->L < 1) {
    snprintf(err, errlen,
             "lookahead %g ms is less than one frame at %g Hz", v[P_LOOKAHEAD],
             c->rate);
    return MB_ERR_ARG;
  }
  s->H = (int)lround(v[P_HOLD] * c->rate / 1000);
  s->release_ms = v[P_RELEASE];
  s->alpha = release_alpha(s->release_ms, c->rate);
  mb_gramp_init(&s->ceiling, mb_db_to_lin(v[P_CEILING]));
  mb_gramp_init(&s->drive, mb_db_to_lin(v[P_GAIN]));
  s->skip = c->skip;
  s->length = c->length;
  if (s->tp_mode) {
    mb_status e =
        mb_truepeak_init(&s->tp, c->rate, s->nch, MB_TP_REFINE | MB_TP_FINE);
    if (e != MB_OK) {
      snprintf(err, errlen, "out of memory for %d channels", s->nch);
      return e;
    }
    s->D = mb_truepeak_delay(&s->tp);
    s->a = s->D; /* the gain is flat wherever the interpolator looks */
  }
  s->lat = s->D + s->L + s->a;
  int r = 1;
  while (r < s->lat + CH + 1) r <<= 1;
  s->rmask = r - 1;
  /* one allocation for the rings and chunk buffers */
  const size_t nf = (size_t)(s->nch + 1) * r +
                    (size_t)(2 * s->nch + 2 * s->npipe + 1) * RS;
  s->ring = calloc(nf, sizeof(float));
  int bad = !s->ring;
  if (!bad) {
    float *f = s->ring + (size_t)s->nch * r;
    s->cring = f, f += r;
    s->xin = f, f += (size_t)s->nch * RS;
    s->env = f + 8, f += (size_t)s->nch * RS;
    s->q = f, f += (size_t)s->npipe * RS;
    s->g = f, f += (size_t)s->npipe * RS;
    s->cbuf = f;
    const int w = s->L + 2 * s->a + s->H + 1;
    for (int k = 0; k < s->npipe && !bad; k++)
      bad = pipe_init(&s->pipe[k], w, s->L + 1) != 0;
  }
  if (bad) {
    snprintf(err, errlen, "out of memory for a %d-frame look-ahead",
             s->lat);
    destroy(s);
    return MB_ERR_NOMEM;
  }
  clear(s);
  return MB_OK;
}

static void set_param(void *st, int idx, double v, int ramp) {
  lim_state *s = st;
  if (idx == P_CEILING) mb_gramp_to(&s->ceiling, mb_db_to_lin(v), ramp);
  if (idx == P_GAIN) mb_gramp_to(&s->drive, mb_db_to_lin(v), ramp);
  if (idx == P_RELEASE) {
    s->release_ms = v;
    s->alpha = release_alpha(v, s->rate);
  }
}

/* Peaks of this chunk's frames j = t0 - D + i into s->q (per pipe), turned
 * into the reduction needed against the ceiling of frame j. */
static void detect(lim_state *s, const float *const *x, int n) {
  const int nch = s->nch, np = s->npipe;
  float *const q = s->q;
  const int64_t j0 = s->t - s->D;
  const int steady = j0 > s->ramp_last; /* frames j0.. share one ceiling */
  if (s->tp_mode) {
    float *ep[MB_MAX_CHANNELS];
    /* envelopes below the ceiling do not matter: no need to refine them
     * (while the ceiling moves, refine all) */
    mb_truepeak_set_floor(&s->tp, steady ? s->cring[s->t & s->rmask] : 0);
    for (int c = 0; c < nch; c++) ep[c] = s->env + (size_t)c * RS;
    if (np == 1)
      mb_truepeak_envelope_max(&s->tp, x, ep[0], n);
    else
      mb_truepeak_envelope(&s->tp, x, ep, n);
    /* p(j) = max(env(j - 1), env(j)): both intervals touching sample j */
    for (int k = 0; k < np; k++) {
      float *e = ep[k], *p = q + (size_t)k * RS;
      for (int i = 0; i < n; i += 8) st(p + i, vmax(ld(e + i - 1), ld(e + i)));
      e[-1] = e[n - 1];
    }
  } else {
    /* |x|: x may be the caller's rows, so no reading past n */
    for (int k = 0; k < np; k++) {
      float *p = q + (size_t)k * RS;
      const int cn = np == 1 ? nch : 1;
      for (int c = 0; c < cn; c++) {
        const float *xc = x[k + c];
        int i = 0;
        for (; i + 8 <= n; i += 8) {
          const v8f a = vabs(ld(xc + i));
          if (c)
            st(p + i, vmax(a, ld(p + i)));
          else
            st(p + i, a);
        }
        for (; i < n; i++) {
          const float a = fabsf(xc[i]);
          p[i] = c == 0 || a > p[i] ? a : p[i];
        }
      }
    }
  }
  if (np > 1 && s->link > 0) {
    /* every channel sees at least link x the loudest channel's peak */
    float *pm = s->cbuf;
    const float lk = (float)s->link;
    for (int i = 0; i < n; i += 8) {
      v8f m = ld(q + i);
      for (int k = 1; k < np; k++) m = vmax(ld(q + (size_t)k * RS + i), m);
      st(pm + i, m * lk);
    }
    for (int k = 0; k < np; k++) {
      float *p = q + (size_t)k * RS;
      for (int i = 0; i < n; i += 8) st(p + i, vmax(ld(pm + i), ld(p + i)));
    }
  }
  /* q = 1 - C / p where p exceeds the ceiling C of frame j (a NaN p
   * counts as not exceeding) */
  float *cb = s->cbuf;
  if (!steady)
    for (int i = 0; i < n; i++) cb[i] = s->cring[(j0 + i) & s->rmask];
  const v8f one = {1, 1, 1, 1, 1, 1, 1, 1}, zero = {0};
  for (int k = 0; k < np; k++) {
    float *p = q + (size_t)k * RS;
    const float c0 = s->cring[s->t & s->rmask];
    for (int i = 0; i < n; i += 8) {
      const v8f pv = ld(p + i), cf = steady ? c0 + zero : ld(cb + i);
      st(p + i, vsel(pv > cf, one - cf / pv, zero));
    }
  }
}

/* y = g x clamped to +-cf and flushed below FLT_MIN. */
static inline float out1(float g, float x, float cf) {
  float v = g * x;
  v = v > cf ? cf : v < -cf ? -cf : v;
  return fabsf(v) < 1.17549435e-38f ? 0.0f : v;
}

static void chunk(lim_state *s, const float *const *in, float *const *out,
                  int n) {
  const int nch = s->nch, mask = s->rmask;
  const int64_t t0 = s->t;
  /* drive: ramped frames in double (as the gain module), then one float
   * factor; none at 0 dB. The switch happens at the frame the ramp ends,
   * whatever the chunking. */
  const float *x[MB_MAX_CHANNELS];
  for (int c = 0; c < nch; c++) x[c] = in[c];
  if (s->drive.left > 0 || s->drive.value != 1.0) {
    int i = 0;
    for (; i < n && s->drive.left > 0; i++) {
      const double gv = mb_gramp_next(&s->drive);
      for (int c = 0; c < nch; c++)
        s->xin[(size_t)c * RS + i] = (float)(in[c][i] * gv);
    }
    const float gv = (float)s->drive.value;
    for (int c = 0; c < nch; c++) {
      float *d = s->xin + (size_t)c * RS;
      int k = i;
      for (; k < n && (k & 7); k++) d[k] = in[c][k] * gv;
      for (; k + 8 <= n; k += 8) st(d + k, ld(in[c] + k) * gv);
      for (; k < n; k++) d[k] = in[c][k] * gv;
      x[c] = d;
    }
  }
  /* ceiling per frame (float, rounded down) and the delay line */
  if (s->ceiling.left > 0) {
    for (int i = 0; i < n; i++)
      s->cring[(t0 + i) & mask] = floor_float(mb_gramp_next(&s->ceiling));
    s->ramp_last = t0 + n - 1;
  } else {
    const float cf = floor_float(s->ceiling.value);
    if (s->cring[(t0 - 1) & mask] != cf) s->ramp_last = t0 + n - 1;
    /* once a whole ring has passed since the last change it holds cf */
    if (t0 - s->ramp_last <= mask + 1)
      for (int i = 0; i < n; i++) s->cring[(t0 + i) & mask] = cf;
  }
  for (int c = 0; c < nch; c++) {
    float *r = s->ring + (size_t)c * (mask + 1);
    const int w0 = (int)(t0 & mask);
    const int k = n < mask + 1 - w0 ? n : mask + 1 - w0;
    memcpy(r + w0, x[c], sizeof(float) * (size_t)k);
    memcpy(r, x[c] + k, sizeof(float) * (size_t)(n - k));
  }
  detect(s, x, n);
  for (int k = 0; k < s->npipe; k++)
    pipe_run(&s->pipe[k], s->q + (size_t)k * RS, s->g + (size_t)k * RS, n,
             s->alpha);
  /* output frame t0 + i is input frame t0 + i - lat; clamped at the
   * ceiling (rounding never passes it) and flushed below FLT_MIN */
  const int64_t n0 = t0 - s->lat;
  const int steady = n0 > s->ramp_last;
  const v8f tiny = {1.17549435e-38f, 1.17549435e-38f, 1.17549435e-38f,
                    1.17549435e-38f, 1.17549435e-38f, 1.17549435e-38f,
                    1.17549435e-38f, 1.17549435e-38f};
  for (int i = 0; i < n;) {
    const int ri = (int)((n0 + i) & mask);
    const int seg = n - i < mask + 1 - ri ? n - i : mask + 1 - ri;
    for (int c = 0; c < nch; c++) {
      const float *r = s->ring + (size_t)c * (mask + 1) + ri;
      const float *g = s->g + (size_t)(s->npipe > 1 ? c : 0) * RS + i;
      const float *cr = s->cring + ri;
      float *y = out[c] + i;
      int k = 0;
      if (steady) {
        const v8f cf = cr[0] - (v8f){0}, ncf = -cf;
        for (; k + 8 <= seg; k += 8) {
          v8f v = ld(g + k) * ld(r + k);
          v = vsel(v > cf, cf, vsel(v < ncf, ncf, v));
          st(y + k, (v8f)((v8i)v & (vabs(v) >= tiny)));
        }
        for (; k < seg; k++) y[k] = out1(g[k], r[k], cr[0]);
      } else {
        for (; k < seg; k++) y[k] = out1(g[k], r[k], cr[k]);
      }
    }
    i += seg;
  }
  /* results: frames of the signal only (not the latency padding) */
  for (int k = 0; k < s->npipe; k++) {
    const float *g = s->g + (size_t)k * RS;
    int64_t a = s->skip - n0, e = n;
    if (a < 0) a = 0;
    if (s->length >= 0 && s->skip + s->length - n0 < e)
      e = s->skip + s->length - n0;
    if (a >= e) continue;
    /* sum of log2 g as products in 8 lanes of double, renormalised per
     * chunk: each lane multiplies at most 32 gains, and gains are kept
     * above 2^-30 (-180 dB) for this sum, so nothing underflows */
    v8f gm = {1, 1, 1, 1, 1, 1, 1, 1};
    const v8f lo = gm * 9.3132257e-10f;
    double prod[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    int64_t i = a;
    for (; i + 8 <= e; i += 8) {
      const v8f gv = ld(g + i);
      gm = vsel(gv < gm, gv, gm);
      const v8f gc = vmax(gv, lo);
      for (int l = 0; l < 8; l++) prod[l] *= gc[l];
    }
    float gmin = gm[0];
    for (int l = 1; l < 8; l++) gmin = gm[l] < gmin ? gm[l] : gmin;
    for (; i < e; i++) {
      prod[i & 7] *= g[i] > 9.3132257e-10f ? g[i] : 9.3132257e-10f;
      gmin = g[i] < gmin ? g[i] : gmin;
    }
    for (int l = 0; l < 8; l++) {
      int ex;
      const double m = frexp(prod[l], &ex);
      s->logsum += ex + log2(m);
    }
    if (gmin < s->gmin) s->gmin = gmin;
    s->counted += e - a;
  }
  s->t = t0 + n;
}

static void process(void *st, const mb_block *b) {
  lim_state *s = st;
  for (int off = 0; off < b->frames; off += CH) {
    const int n = b->frames - off < CH ? b->frames - off : CH;
    const float *in[MB_MAX_CHANNELS];
    float *out[MB_MAX_CHANNELS];
    for (int c = 0; c < s->nch; c++) {
      in[c] = b->in[0][c] + off;
      out[c] = b->out[c] + off;
    }
    chunk(s, in, out, n);
  }
}

static void reset(void *st) {
  lim_state *s = st;
  mb_gramp_init(&s->ceiling, s->ceiling.target);
  mb_gramp_init(&s->drive, s->drive.target);
  clear(s);
}

static int latency(const void *st) {
  const lim_state *s = st;
  return s->lat;
}

static int results(const void *st, const char **names, double *values,
                   int max) {
  const lim_state *s = st;
  const char *nm[] = {"max_gain_reduction", "gain_reduction_mean",
                      "gain_reduction_area"};
  const double area = -20 * log10(2.0) * s->logsum; /* dB x frames */
  const double val[] = {s->gmin < 1 ? -20 * log10(s->gmin) : 0,
                        s->counted ? area / (double)s->counted : 0,
                        area / s->rate};
  int k = 0;
  for (; k < 3 && k < max; k++) names[k] = nm[k], values[k] = val[k];
  return k;
}

static const mb_port_desc inputs[] = {{.name = "in"}};

static const mb_param_desc params[] = {
    [P_CEILING] = {.id = "ceiling", .unit = "dBTP", .type = MB_PARAM_NUMBER,
                   .min = -40, .max = 0, .def = -1,
                   .flags = MB_PARAM_SMOOTH,
                   .help = "highest peak let through (true peak, or sample "
                           "peak with true_peak = false)"},
    [P_RELEASE] = {.id = "release", .unit = "ms", .type = MB_PARAM_NUMBER,
                   .min = 1, .max = 2000, .def = 80, .scale = MB_SCALE_LOG,
                   .help = "time for the remaining reduction to fall to 1/e "
                           "(linear gain)"},
    [P_LOOKAHEAD] = {.id = "lookahead", .unit = "ms",
                     .type = MB_PARAM_NUMBER, .min = 0.5, .max = 20,
                     .def = 3, .flags = MB_PARAM_STRUCTURAL,
                     .help = "attack time: the gain starts falling this long "
                             "before a peak (adds latency)"},
    [P_TRUE_PEAK] = {.id = "true_peak", .unit = "", .type = MB_PARAM_BOOL,
                     .def = 1, .flags = MB_PARAM_STRUCTURAL,
                     .help = "limit inter-sample (true) peaks; false limits "
                             "sample peaks"},
    [P_GAIN] = {.id = "gain", .unit = "dB", .type = MB_PARAM_NUMBER,
                .min = -24, .max = 36, .def = 0, .flags = MB_PARAM_SMOOTH,
                .help = "drive into the limiter"},
    [P_HOLD] = {.id = "hold", .unit = "ms", .type = MB_PARAM_NUMBER,
                .min = 0, .max = 100, .def = 0,
                .flags = MB_PARAM_STRUCTURAL,
                .help = "keep the full reduction this long after a peak "
                        "before releasing (less bass distortion)"},
    [P_LINK] = {.id = "link", .unit = "", .type = MB_PARAM_NUMBER, .min = 0,
                .max = 1, .def = 1, .flags = MB_PARAM_STRUCTURAL,
                .help = "1: one gain for all channels; 0: each channel on "
                        "its own"},
};

const mb_module_desc mb_mod_limiter = {
    .id = "limiter",
    .summary = "look-ahead true-peak limiter",
    .doc =
        "A brickwall limiter that looks ahead: no peak passes `ceiling`. In "
        "true-peak mode (the default) peaks are read between the samples as "
        "ITU-R BS.1770-4 Annex 2 describes, oversampled 4x below 192 kHz "
        "(2x above) by a half-band interpolator, with each crest refined by "
        "a parabola through its neighbours; `true_peak = false` limits "
        "sample peaks, and then no output sample exceeds the ceiling by "
        "even one float step. Each frame needs the gain ceiling / peak; the "
        "gain starts falling `lookahead` ms before a peak along a smooth "
        "S-curve (two running means, no steps), reaches exactly the needed "
        "gain at the peak, holds it while the interpolator can see the peak "
        "and for `hold` ms more, then releases: 1 - gain (linear) falls by "
        "1/e every `release` ms. Channels share one gain (`link` 1); with "
        "`link` below 1 each channel is limited on its own peaks and at "
        "least `link` times the loudest channel's. `gain` drives the input "
        "first (ramped). Latency: the look-ahead rounded to frames (halves "
        "up), plus 36 frames in true-peak mode (the detector's look-ahead "
        "and the guard around each peak, 18 frames each; 16 each from 192 "
        "kHz); the graph removes it, so outputs stay aligned with inputs. "
        "Below the ceiling the signal passes bit-exact. Results: "
        "`max_gain_reduction` (dB, the deepest reduction) and "
        "`gain_reduction_mean` (dB, averaged over the signal's frames) and "
        "`gain_reduction_area` (dB x s, the reduction summed over time so "
        "far: its growth over an interval divided by the interval is the "
        "mean reduction in it, for plots over time). "
        "`lookahead`, `true_peak`, `hold` and `link` are fixed for a render; "
        "`ceiling`, `gain` and `release` can change and be automated.",
    .inputs = inputs,
    .n_inputs = 1,
    .has_output = 1,
    .params = params,
    .n_params = NPARAM,
    .state_size = sizeof(lim_state),
    .create = create,
    .set_param = set_param,
    .process = process,
    .reset = reset,
    .latency = latency,
    .results = results,
    .destroy = destroy,
};
