/* loudness.c - BS.1770-4 / EBU R128 loudness meter (see loudness.h). */
#include "dsp/loudness.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsp/truepeak.h"

/* Standard coefficients at 48 kHz, ITU-R BS.1770-4 Annex 1, Tables 1 and 2
 * (a0 = 1). */
static const double SHELF48[5] = {1.53512485958697, -2.69169618940638,
                                  1.19839281085285, -1.69065929318241,
                                  0.73248077421585};
static const double HP48[5] = {1.0, -2.0, 1.0, -1.99004745483398,
                               0.99007225036621};

#define SUB_PER_M 4   /* momentary window and gating block: 400 ms */
#define SUB_PER_S 30  /* short-term window: 3 s */
/* Histograms: 0.01 LU bins from -70 LUFS (the absolute gate of both
 * measures) to +30 LUFS (louder blocks go to the top bin; a full-scale
 * square wave in 32 surround channels reads about +17). */
#define HIST_LO (-70.0)
#define HIST_STEP 0.01
#define NBINS 10000
/* Lists start with room for this many sub-blocks when the length is not
 * known (10 minutes). */
#define DEFAULT_SUBS 6000
/* Frames kept for finishing the true peak (see true_peak_max) */
#define TP_TAIL 64

struct mb_loudness {
  int nch;
  double rate;
  int64_t irate;  /* rate rounded to whole frames per second: boundaries */
  double w[MB_MAX_CHANNELS]; /* channel weights G */
  /* Both sections run scaled by 1/b0 (numerators 1, p1, p2: one multiply
   * fewer per sample); the mean squares are scaled back by gain2. */
  double p1, p2, a1, a2;     /* pre-filter */
  double q1, q2, c1, c2;     /* RLB high-pass */
  double gain2;              /* (b0_shelf * b0_hp)^2 */
  /* Direct form I history per channel: input x, pre-filter output y,
   * high-pass output z (the high-pass input history is y's). DF I keeps
   * one multiply-add on each recursion's critical path. */
  double x1[MB_MAX_CHANNELS], x2[MB_MAX_CHANNELS];
  double y1[MB_MAX_CHANNELS], y2[MB_MAX_CHANNELS];
  double z1[MB_MAX_CHANNELS], z2[MB_MAX_CHANNELS];
  /* sum of z^2 in the current sub-block, carried across calls so that the
   * sums do not depend on how the signal is cut */
  double acc[MB_MAX_CHANNELS];
  uint32_t peak_bits[MB_MAX_CHANNELS]; /* largest |x| as float bits */
  int64_t fed;  /* frames fed */
  int64_t subs; /* complete sub-blocks */
  int64_t next; /* value of `fed` at which the current sub-block ends */
  double ring[SUB_PER_S];     /* weighted square sums of the last 30 */
  int ring_i;
  double m_now, s_now, m_max, s_max; /* mean energies (not LUFS) */
  /* every gating block's and every short-term window's energy */
  double *blk, *stv;
  int64_t nblk, nst, cap;
  int full; /* a list overflowed: use the histograms */
  uint32_t *hist_b, *hist_s; /* block and short-term loudness histograms */
  /* true peak: the kernel's running maximum per channel, and the last
   * TP_TAIL frames, from which mb_loudness_get() finishes the frames the
   * interpolator's look-ahead has not reached yet */
  int has_tp;
  mb_truepeak tp;
  float tp_peak[MB_MAX_CHANNELS];
  float tail[MB_MAX_CHANNELS][TP_TAIL];
  int tail_i; /* next write position in tail[c] (circular) */
};

/* ---- K-weighting design ----------------------------------------------- */

/* Inverse of the bilinear transform prewarped at w0: a 48 kHz section
 * (b0, b1, b2, 1, a1, a2) -> its prototype. With K = tan(w0 T/2), u = K^2,
 * v = K/Q and a0 = 1 + v + u, the forward design is
 *   b0 a0 = n2 + n1 v + n0 u, b1 a0 = 2 (n0 u - n2), b2 a0 = n2 - n1 v + n0 u,
 *   a1 a0 = 2 (u - 1), a2 a0 = 1 - v + u,
 * so 1 - a1 + a2 = 4/a0 and 1 + a1 + a2 = 4u/a0 give u and a0, 1 - a2 =
 * 2v/a0 gives v, and the numerator sums give n0, n1, n2. */
static mb_kweight_proto proto_of(const double c[5], double fs) {
  const double b0 = c[0], b1 = c[1], b2 = c[2], a1 = c[3], a2 = c[4];
  const double d = 1 - a1 + a2, u = (1 + a1 + a2) / d, a0 = 4 / d;
  const double v = 2 * (1 - a2) / d, K = sqrt(u);
  mb_kweight_proto p;
  p.f0 = fs / M_PI * atan(K);
  p.q = K / v;
  p.n2 = a0 * (b0 - b1 + b2) / 4;
  p.n0 = a0 * (b0 + b1 + b2) / (4 * u);
  p.n1 = a0 * (b0 - b2) / (2 * v);
  return p;
}

static void design(const mb_kweight_proto *p, double rate, mb_biquad *c) {
  if (p->f0 >= 0.499 * rate) {
    mb_biquad_identity(c);
    return;
  }
  const double K = tan(M_PI * p->f0 / rate), u = K * K, v = K / p->q;
  const double a0 = 1 + v + u;
  c->b0 = (p->n2 + p->n1 * v + p->n0 * u) / a0;
  c->b1 = 2 * (p->n0 * u - p->n2) / a0;
  c->b2 = (p->n2 - p->n1 * v + p->n0 * u) / a0;
  c->a1 = 2 * (u - 1) / a0;
  c->a2 = (1 - v + u) / a0;
}

void mb_kweight_prototypes(mb_kweight_proto *shelf, mb_kweight_proto *hp) {
  *shelf = proto_of(SHELF48, 48000);
  *hp = proto_of(HP48, 48000);
}

void mb_kweight_design(double rate, mb_biquad *shelf, mb_biquad *hp) {
  mb_kweight_proto s, h;
  mb_kweight_prototypes(&s, &h);
  design(&s, rate, shelf);
  design(&h, rate, hp);
}

/* ---- channels ---------------------------------------------------------- */

double mb_loudness_default_weight(int nch, int ch) {
  enum { L_, R_, C_, LFE, LS, RS, MID, SUR };
  static const int quad[4] = {L_, R_, LS, RS};
  static const int five[5] = {L_, R_, C_, LS, RS};
  int role;
  if (ch < 0 || ch >= nch) return 0;
  if (nch == 4) role = quad[ch];
  else if (nch == 5) role = five[ch];
  else if (ch < 6) role = (const int[]){L_, R_, C_, LFE, LS, RS}[ch];
  else if (ch < 8) role = nch == 7 ? MID : SUR; /* 6.1 back centre; 7.1 */
  else role = MID;
  return role == LFE ? 0.0 : (role == LS || role == RS || role == SUR) ? 1.41
                                                                       : 1.0;
}

void mb_loudness_set_weight(mb_loudness *l, int ch, double w) {
  if (ch >= 0 && ch < l->nch && w >= 0) l->w[ch] = w;
}

/* ---- create / destroy -------------------------------------------------- */

static int64_t floordiv10(int64_t a) {
  return a >= 0 ? a / 10 : -((-a + 9) / 10);
}

/* End frame of sub-block k (k >= 0 ends at 0). */
static int64_t bound(const mb_loudness *l, int64_t k) {
  return floordiv10(k * l->irate);
}

/* Frames in the window of `len` sub-blocks ending with sub-block k. */
static int64_t window(const mb_loudness *l, int64_t k, int len) {
  if (l->irate % 10 == 0) return len * (l->irate / 10);
  return bound(l, k) - bound(l, k - len);
}

static int64_t subs_for(int64_t rate, int64_t frames) {
  if (frames < 0) return DEFAULT_SUBS;
  return frames / (rate / 10 > 0 ? rate / 10 : 1) + 2;
}

mb_status mb_loudness_create(mb_loudness **out, double rate, int nch,
                             int64_t frames, unsigned flags, char *err,
                             size_t errlen) {
  *out = NULL;
  if (!(rate >= 10 && rate <= 1e7)) {
    snprintf(err, errlen, "loudness: rate %g Hz outside 10 .. 10000000",
             rate);
    return MB_ERR_ARG;
  }
  if (nch < 1 || nch > MB_MAX_CHANNELS) {
    snprintf(err, errlen, "loudness: %d channels outside 1 .. %d", nch,
             MB_MAX_CHANNELS);
    return MB_ERR_ARG;
  }
  mb_loudness *l = calloc(1, sizeof *l);
  if (!l) goto nomem;
  l->nch = nch;
  l->rate = rate;
  l->irate = llround(rate);
  for (int c = 0; c < nch; c++) l->w[c] = mb_loudness_default_weight(nch, c);
  mb_biquad s, h;
  mb_kweight_design(rate, &s, &h);
  l->p1 = s.b1 / s.b0, l->p2 = s.b2 / s.b0, l->a1 = s.a1, l->a2 = s.a2;
  l->q1 = h.b1 / h.b0, l->q2 = h.b2 / h.b0, l->c1 = h.a1, l->c2 = h.a2;
  l->gain2 = (s.b0 * h.b0) * (s.b0 * h.b0);
  l->hist_b = calloc(NBINS, sizeof *l->hist_b);
  l->hist_s = calloc(NBINS, sizeof *l->hist_s);
  if (!l->hist_b || !l->hist_s) goto nomem;
  if (flags & MB_LOUDNESS_TRUE_PEAK) {
    if (mb_truepeak_init(&l->tp, rate, nch, 0) != MB_OK) goto nomem;
    l->has_tp = 1;
  }
  if (mb_loudness_reserve(l, frames < 0 ? -1 : frames) != MB_OK) goto nomem;
  mb_loudness_reset(l);
  *out = l;
  return MB_OK;
nomem:
  mb_loudness_destroy(&l);
  snprintf(err, errlen, "loudness: out of memory for %d channels", nch);
  return MB_ERR_NOMEM;
}

void mb_loudness_destroy(mb_loudness **lp) {
  if (!lp || !*lp) return;
  mb_loudness *l = *lp;
  free(l->blk);
  free(l->stv);
  free(l->hist_b);
  free(l->hist_s);
  mb_truepeak_free(&l->tp);
  free(l);
  *lp = NULL;
}

mb_status mb_loudness_reserve(mb_loudness *l, int64_t frames) {
  int64_t want = subs_for(l->irate, frames);
  if (want <= l->cap) return MB_OK;
  if ((uint64_t)want > SIZE_MAX / sizeof(double)) return MB_ERR_NOMEM;
  double *b = realloc(l->blk, sizeof(double) * (size_t)want);
  if (!b) return MB_ERR_NOMEM;
  l->blk = b;
  double *s = realloc(l->stv, sizeof(double) * (size_t)want);
  if (!s) return MB_ERR_NOMEM; /* blk grew; cap unchanged: still valid */
  l->stv = s;
  l->cap = want;
  return MB_OK;
}

void mb_loudness_reset(mb_loudness *l) {
  const int n = MB_MAX_CHANNELS;
  memset(l->x1, 0, sizeof(double) * n), memset(l->x2, 0, sizeof(double) * n);
  memset(l->y1, 0, sizeof(double) * n), memset(l->y2, 0, sizeof(double) * n);
  memset(l->z1, 0, sizeof(double) * n), memset(l->z2, 0, sizeof(double) * n);
  memset(l->acc, 0, sizeof l->acc);
  memset(l->peak_bits, 0, sizeof l->peak_bits);
  memset(l->ring, 0, sizeof l->ring);
  l->ring_i = 0;
  l->fed = 0;
  l->subs = 0;
  l->next = bound(l, 1);
  l->m_now = l->s_now = 0;
  l->m_max = l->s_max = -1; /* no window yet */
  l->nblk = l->nst = 0;
  l->full = 0;
  memset(l->hist_b, 0, sizeof(uint32_t) * NBINS);
  memset(l->hist_s, 0, sizeof(uint32_t) * NBINS);
  if (l->has_tp) mb_truepeak_reset(&l->tp);
  memset(l->tp_peak, 0, sizeof l->tp_peak);
  memset(l->tail, 0, sizeof l->tail);
  l->tail_i = 0;
}

/* ---- feeding ------------------------------------------------------------ */

/* The K-weighting and sum of squares for a group of L channels starting at
 * c0, as GCC vectors of L doubles (one AVX register for 4, SSE for 2),
 * frames outer and the channels in the vector lanes (BENCH.md: channels
 * inside the frame loop). Per frame and channel: 9 multiply-adds; the
 * recursions' critical paths are one multiply-add each (y1 and z1 enter
 * last). The L input floats are gathered into a float vector and widened
 * in one conversion (element-wise stores to a double vector go through
 * memory and stall). */
typedef double v1d __attribute__((vector_size(8)));
typedef double v2d __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));
typedef float v1f __attribute__((vector_size(4)));
typedef float v2f __attribute__((vector_size(8)));
typedef float v4f __attribute__((vector_size(16)));

#define GATHER1(ch, i) ((v1f){ch[0][i]})
#define GATHER2(ch, i) ((v2f){ch[0][i], ch[1][i]})
#define GATHER4(ch, i) ((v4f){ch[0][i], ch[1][i], ch[2][i], ch[3][i]})

#define KW_KERNEL(NAME, L, VT)                                                \
  static void NAME(mb_loudness *l, const float *const *in, int c0, int off,   \
                   int n) {                                                   \
    VT x1, x2, y1, y2, z1, z2, acc;                                           \
    memcpy(&x1, l->x1 + c0, sizeof x1), memcpy(&x2, l->x2 + c0, sizeof x2);   \
    memcpy(&y1, l->y1 + c0, sizeof y1), memcpy(&y2, l->y2 + c0, sizeof y2);   \
    memcpy(&z1, l->z1 + c0, sizeof z1), memcpy(&z2, l->z2 + c0, sizeof z2);   \
    memcpy(&acc, l->acc + c0, sizeof acc);                                    \
    const double p1 = l->p1, p2 = l->p2, a1 = l->a1, a2 = l->a2;              \
    const double q1 = l->q1, q2 = l->q2, c1 = l->c1, c2 = l->c2;              \
    const float *ch[L];                                                       \
    for (int j = 0; j < L; j++) ch[j] = in[c0 + j] + off;                     \
    for (int i = 0; i < n; i++) {                                             \
      const VT x = __builtin_convertvector(GATHER##L(ch, i), VT);             \
      const VT y = x + p1 * x1 + p2 * x2 - a2 * y2 - a1 * y1;                 \
      const VT z = y + q1 * y1 + q2 * y2 - c2 * z2 - c1 * z1;                 \
      acc += z * z;                                                           \
      x2 = x1, x1 = x, y2 = y1, y1 = y, z2 = z1, z1 = z;                      \
    }                                                                         \
    memcpy(l->x1 + c0, &x1, sizeof x1), memcpy(l->x2 + c0, &x2, sizeof x2);   \
    memcpy(l->y1 + c0, &y1, sizeof y1), memcpy(l->y2 + c0, &y2, sizeof y2);   \
    memcpy(l->z1 + c0, &z1, sizeof z1), memcpy(l->z2 + c0, &z2, sizeof z2);   \
    memcpy(l->acc + c0, &acc, sizeof acc);                                    \
  }

KW_KERNEL(kw1, 1, v1d)
KW_KERNEL(kw2, 2, v2d)
KW_KERNEL(kw4, 4, v4d)

static void kweight(mb_loudness *l, const float *const *in, int off, int n) {
  int c = 0;
  for (; c + 4 <= l->nch; c += 4) kw4(l, in, c, off, n);
  for (; c + 2 <= l->nch; c += 2) kw2(l, in, c, off, n);
  for (; c < l->nch; c++) kw1(l, in, c, off, n);
}

/* Largest |x| through the float's bits: for non-NaN floats the order of
 * the bits without the sign is the order of the magnitudes, and an integer
 * maximum vectorises (8 lanes) where fmaxf (NaN rules) does not. NaN
 * samples (bits above infinity's) are left out. */
typedef uint32_t v8u __attribute__((vector_size(32)));

static void sample_peaks(mb_loudness *l, const float *const *in, int off,
                         int n) {
  for (int c = 0; c < l->nch; c++) {
    const float *x = in[c] + off;
    v8u m8 = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8) {
      v8u u;
      memcpy(&u, x + i, sizeof u);
      u &= 0x7fffffffu;
      u &= u <= 0x7f800000u; /* NaN -> 0 */
      const v8u gt = u > m8;
      m8 = (u & gt) | (m8 & ~gt);
    }
    uint32_t m = l->peak_bits[c];
    for (int j = 0; j < 8; j++) m = m8[j] > m ? m8[j] : m;
    for (; i < n; i++) {
      uint32_t u;
      memcpy(&u, x + i, 4);
      u &= 0x7fffffffu;
      if (u <= 0x7f800000u && u > m) m = u;
    }
    l->peak_bits[c] = m;
  }
}

/* Energy 10^((L + 0.691)/10) of a loudness L, and back. */
static double energy_of(double lufs) { return pow(10.0, (lufs + 0.691) / 10); }
static double lufs_of(double e) {
  return e > 0 ? -0.691 + 10 * log10(e) : -HUGE_VAL;
}

static void hist_add(uint32_t *h, double e) {
  const double v = lufs_of(e);
  if (!(v > HIST_LO)) return; /* the absolute gate */
  const double b = (v - HIST_LO) / HIST_STEP;
  h[b >= NBINS - 1 ? NBINS - 1 : (int)b]++;
}

/* Zero history that is tiny (a decaying recursion, kept out of double
 * subnormals) or not finite (a NaN or infinity fed in would otherwise stay
 * in the recursion for good: the meter recovers at the next 100 ms). */
static void flush(double *v, int n) {
  for (int c = 0; c < n; c++)
    if (!(fabs(v[c]) >= 1e-80 && fabs(v[c]) <= DBL_MAX)) v[c] = 0;
}

/* End of sub-block `subs`: store it, update the windows and the lists. */
static void sub_block_end(mb_loudness *l) {
  double s = 0;
  for (int c = 0; c < l->nch; c++) s += l->w[c] * l->acc[c], l->acc[c] = 0;
  s *= l->gain2;
  l->subs++;
  l->ring[l->ring_i] = s;
  l->ring_i = (l->ring_i + 1) % SUB_PER_S;
  double m = 0, t = 0;
  for (int k = 0; k < SUB_PER_S; k++) {
    const double v = l->ring[(l->ring_i + SUB_PER_S - 1 - k) % SUB_PER_S];
    if (k < SUB_PER_M) m += v;
    t += v;
  }
  m /= (double)window(l, l->subs, SUB_PER_M);
  t /= (double)window(l, l->subs, SUB_PER_S);
  l->m_now = m, l->s_now = t;
  if (m > l->m_max) l->m_max = m;
  if (t > l->s_max) l->s_max = t;
  if (l->subs >= SUB_PER_M) {
    if (l->nblk < l->cap) l->blk[l->nblk++] = m;
    else l->full = 1;
    hist_add(l->hist_b, m);
  }
  if (l->subs >= SUB_PER_S) {
    if (l->nst < l->cap) l->stv[l->nst++] = t;
    else l->full = 1;
    hist_add(l->hist_s, t);
  }
  l->next = bound(l, l->subs + 1);
  flush(l->x1, l->nch), flush(l->x2, l->nch);
  flush(l->y1, l->nch), flush(l->y2, l->nch);
  flush(l->z1, l->nch), flush(l->z2, l->nch);
}

static void true_peak(mb_loudness *l, const float *const *in, int off,
                      int n) {
  const float *p[MB_MAX_CHANNELS];
  for (int c = 0; c < l->nch; c++) p[c] = in[c] + off;
  mb_truepeak_update(&l->tp, p, n, l->tp_peak);
  /* keep the last TP_TAIL frames */
  const int k = n < TP_TAIL ? n : TP_TAIL, from = n - k;
  for (int c = 0; c < l->nch; c++)
    for (int i = 0, t = l->tail_i; i < k; i++, t = (t + 1) % TP_TAIL)
      l->tail[c][t] = p[c][from + i];
  l->tail_i = (l->tail_i + k) % TP_TAIL;
}

void mb_loudness_feed(mb_loudness *l, const float *const *in, int off,
                      int n) {
  if (n <= 0) return;
  sample_peaks(l, in, off, n);
  if (l->has_tp) true_peak(l, in, off, n);
  while (n > 0) {
    const int64_t left = l->next - l->fed;
    const int m = left < n ? (int)left : n;
    kweight(l, in, off, m);
    off += m, n -= m;
    l->fed += m;
    if (l->fed == l->next) sub_block_end(l);
  }
}

/* ---- results ------------------------------------------------------------ */

static const double GATE_ABS = -70.0; /* LUFS */

static double hist_centre(int b) { return HIST_LO + (b + 0.5) * HIST_STEP; }

static double integrated_exact(const mb_loudness *l) {
  const double ea = energy_of(GATE_ABS);
  double sum = 0;
  int64_t n = 0;
  for (int64_t j = 0; j < l->nblk; j++)
    if (l->blk[j] > ea) sum += l->blk[j], n++;
  if (!n) return -HUGE_VAL;
  const double er = fmax(ea, sum / n * 0.1); /* -10 LU */
  sum = 0, n = 0;
  for (int64_t j = 0; j < l->nblk; j++)
    if (l->blk[j] > er) sum += l->blk[j], n++;
  return n ? lufs_of(sum / n) : -HUGE_VAL;
}

/* The same from the histogram: each block at its bin's centre. */
static double integrated_hist(const mb_loudness *l) {
  double sum = 0, n = 0;
  for (int b = 0; b < NBINS; b++)
    if (l->hist_b[b]) sum += l->hist_b[b] * energy_of(hist_centre(b)),
                      n += l->hist_b[b];
  if (!n) return -HUGE_VAL;
  const double gate = lufs_of(sum / n) - 10;
  sum = 0, n = 0;
  for (int b = 0; b < NBINS; b++)
    if (l->hist_b[b] && hist_centre(b) > gate)
      sum += l->hist_b[b] * energy_of(hist_centre(b)), n += l->hist_b[b];
  return n ? lufs_of(sum / n) : -HUGE_VAL;
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Tech 3342: nearest-rank percentile index of p in n sorted values. */
static int64_t rank(int64_t n, double p) {
  return (int64_t)((double)(n - 1) * p + 0.5);
}

static double lra_hist(const mb_loudness *l) {
  double sum = 0, n = 0;
  for (int b = 0; b < NBINS; b++)
    if (l->hist_s[b]) sum += l->hist_s[b] * energy_of(hist_centre(b)),
                      n += l->hist_s[b];
  if (!n) return 0;
  const double gate = lufs_of(sum / n) - 20;
  int64_t cnt = 0;
  for (int b = 0; b < NBINS; b++)
    if (hist_centre(b) > gate) cnt += l->hist_s[b];
  if (!cnt) return 0;
  const int64_t rl = rank(cnt, 0.10), rh = rank(cnt, 0.95);
  double lo = 0, hi = 0;
  int64_t seen = 0;
  for (int b = 0; b < NBINS; b++) {
    if (!(hist_centre(b) > gate) || !l->hist_s[b]) continue;
    if (seen <= rl && rl < seen + l->hist_s[b]) lo = hist_centre(b);
    if (seen <= rh && rh < seen + l->hist_s[b]) hi = hist_centre(b);
    seen += l->hist_s[b];
  }
  return hi - lo;
}

static double lra_exact(const mb_loudness *l, int *ok) {
  const double ea = energy_of(GATE_ABS);
  double sum = 0;
  int64_t n = 0;
  for (int64_t j = 0; j < l->nst; j++)
    if (l->stv[j] > ea) sum += l->stv[j], n++;
  *ok = 1;
  if (!n) return 0;
  const double er = fmax(ea, sum / n * 0.01); /* -20 LU */
  double *v = malloc(sizeof(double) * (size_t)n);
  if (!v) {
    *ok = 0;
    return 0;
  }
  int64_t k = 0;
  for (int64_t j = 0; j < l->nst; j++)
    if (l->stv[j] > er) v[k++] = l->stv[j];
  double r = 0;
  if (k) {
    qsort(v, (size_t)k, sizeof *v, cmp_double);
    r = lufs_of(v[rank(k, 0.95)]) - lufs_of(v[rank(k, 0.10)]);
  }
  free(v);
  return r;
}

/* The running maximum covers intervals up to `delay` frames before the
 * last frame fed. The rest is computed as if the signal stopped there: a
 * fresh interpolator gets the last TP_TAIL frames (zeros before the start,
 * as the running one saw) and `delay` zeros, and its envelope over the
 * last `delay` intervals counts. TP_TAIL covers the look-ahead plus the
 * interpolator's reach back (18 + 18 frames at 4x). */
static double true_peak_max(const mb_loudness *l) {
  double m = 0;
  for (int c = 0; c < l->nch; c++) m = fmax(m, l->tp_peak[c]);
  mb_truepeak t;
  const int d = mb_truepeak_delay(&l->tp), len = TP_TAIL + d;
  float *buf = calloc((size_t)l->nch * 2 * len, sizeof(float));
  if (!buf || mb_truepeak_init(&t, l->rate, l->nch, 0) != MB_OK) {
    free(buf);
    return m; /* without the last frames */
  }
  const float *in[MB_MAX_CHANNELS];
  float *env[MB_MAX_CHANNELS];
  for (int c = 0; c < l->nch; c++) {
    float *x = buf + (size_t)c * 2 * len;
    for (int i = 0; i < TP_TAIL; i++)
      x[i] = l->tail[c][(l->tail_i + i) % TP_TAIL];
    in[c] = x;
    env[c] = x + len;
  }
  mb_truepeak_envelope(&t, in, env, len);
  /* env[c][i] is interval (fed - TP_TAIL) + i - d; the last d intervals
   * end the signal */
  for (int c = 0; c < l->nch; c++)
    for (int i = len - d; i < len; i++) m = fmax(m, env[c][i]);
  mb_truepeak_free(&t);
  free(buf);
  return m;
}

static double db_of_bits(uint32_t bits) {
  float f;
  memcpy(&f, &bits, 4);
  return f > 0 ? 20 * log10(f) : -HUGE_VAL;
}

void mb_loudness_get(const mb_loudness *l, mb_loudness_result *r) {
  memset(r, 0, sizeof *r);
  r->exact = !l->full;
  r->integrated = r->exact ? integrated_exact(l) : integrated_hist(l);
  int ok = 0;
  if (r->exact) r->lra = lra_exact(l, &ok);
  if (!ok) r->lra = lra_hist(l), r->exact = 0;
  r->momentary_max = l->m_max >= 0 ? lufs_of(l->m_max) : -HUGE_VAL;
  r->short_term_max = l->s_max >= 0 ? lufs_of(l->s_max) : -HUGE_VAL;
  uint32_t pk = 0;
  for (int c = 0; c < l->nch; c++)
    if (l->peak_bits[c] > pk) pk = l->peak_bits[c];
  r->sample_peak = db_of_bits(pk);
  if (l->has_tp) {
    const double t = fmax(true_peak_max(l), 0);
    r->true_peak = t > 0 ? 20 * log10(t) : -HUGE_VAL;
  } else {
    r->true_peak = NAN;
  }
  r->frames = l->fed;
}

double mb_loudness_momentary(const mb_loudness *l) {
  return l->subs ? lufs_of(l->m_now) : -HUGE_VAL;
}

double mb_loudness_short_term(const mb_loudness *l) {
  return l->subs ? lufs_of(l->s_now) : -HUGE_VAL;
}
