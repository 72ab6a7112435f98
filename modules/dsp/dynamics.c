/* dynamics.c - the gain engine: detectors, static curve, smoothing.
 * See dynamics.h for the definitions this file implements.
 *
 * Work is done in chunks of CH frames with the arrays on the stack: levels
 * and the static curve in vectorisable loops (float, fast log2), then the
 * serial smoothing in double (a release of seconds at 192 kHz moves the
 * gain by 1e-6 of itself per frame, below float resolution), then the
 * linear gain in a vectorisable loop (fast exp2). */
/* GCC 12's -O2 uses the "very cheap" vectoriser cost model, which refuses
 * loops needing an epilogue or an alias check: every per-block loop here.
 * The dynamic model vectorises them (4-5x faster); clang needs nothing. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=dynamic")
#endif

#include "dsp/dynamics.h"

#include <math.h>
#include <string.h>

#define CH 128
/* dB per unit of log2 of an amplitude (20 log10 2), of a power (10 log10 2) */
#define DB_PER_LOG2 6.0205999132796239f
#define DB_PER_LOG2_POW 3.0102999566398120f
#define LOG2_PER_DB 0.16609640474436813f
/* Added to |x| (and to 2 x mean square) before log2: keeps it on normal
 * floats, and changes no level above -460 dBFS. An addition, not a max: GCC
 * turns a max with a constant into a jump that stops vectorisation. */
#define LEVEL_FLOOR 1e-30f
/* Lowest gain the curve gives, dB: keeps exp2's argument above -126. */
#define GAIN_FLOOR -700.0f
/* Smoothing state must never crawl into double subnormals (slow on x86)
 * during minutes of quiet, and must not depend on where blocks start, so
 * flushing is per frame: the compressor's release adds this bias (dB per
 * frame: 2e-8 dB over a second at 192 kHz, inaudible) so that it lands
 * exactly on its target instead of approaching it forever; the expander's
 * opening snaps to its target when within GAIN_FLUSH dB. The RMS average
 * gets MS_BIAS (a -700 dB floor). */
#define REL_BIAS 1e-13
#define GAIN_FLUSH 1e-12
#define MS_BIAS 1e-80

double mb_dyn_curve(const mb_dyn_config *c, double x, int open) {
  const double w = c->knee > 0 ? c->knee : 0, h = w / 2;
  if (c->kind == MB_DYN_COMPRESS) {
    const double over = x - c->threshold, slope = 1 / c->ratio - 1;
    if (over > h) return slope * over;
    if (w > 0 && over > -h) return slope * (over + h) * (over + h) / (2 * w);
    return 0;
  }
  const double t = c->threshold - (open ? c->hysteresis : 0);
  const double over = x - t, slope = c->ratio - 1;
  double g = 0;
  if (over < -h)
    g = slope * over;
  else if (w > 0 && over < h)
    g = -slope * (over - h) * (over - h) / (2 * w);
  return g < -c->range ? -c->range : g;
}

static double coef(double ms, double rate) {
  return ms > 0 ? exp(-1.0 / (ms * 1e-3 * rate)) : 0.0;
}

void mb_dyn_set(mb_dyn *d, const mb_dyn_config *c) {
  d->cfg = *c;
  d->a_att = coef(c->attack, d->rate);
  d->a_rel = coef(c->release, d->rate);
  d->a_rms = coef(c->rms_window, d->rate);
  d->hold_frames = c->kind == MB_DYN_EXPAND && c->hold > 0
                       ? (int64_t)llround(c->hold * 1e-3 * d->rate)
                       : 0;
  const double w = c->knee > 0 ? c->knee : 0;
  d->thr = (float)c->threshold;
  d->thr_open = (float)(c->threshold - c->hysteresis);
  d->half_knee = (float)(w / 2);
  d->slope = (float)(1 / c->ratio - 1);
  d->kq = w > 0 ? (float)((1 / c->ratio - 1) / (2 * w)) : 0.0f;
}

void mb_dyn_reset(mb_dyn *d) {
  for (int c = 0; c < MB_MAX_CHANNELS; c++) {
    d->ms[c] = 0;
    d->pk[c] = 0;
    d->gr[c] = 0;
    d->se[c] = 0;
    d->half[c] = 0;
    d->lp[c] = -600;
    /* the expander starts open and holding, so a signal starting at a
     * zero crossing passes untouched */
    d->held[c] = d->hold_frames;
    d->lheld[c] = d->hold_frames;
    d->open[c] = 0;
  }
  d->max_gr = 0;
}

void mb_dyn_init(mb_dyn *d, double rate, int nch, const mb_dyn_config *c) {
  memset(d, 0, sizeof *d);
  d->rate = rate;
  d->nch = nch < 1 ? 1 : nch > MB_MAX_CHANNELS ? MB_MAX_CHANNELS : nch;
  mb_dyn_set(d, c);
  mb_dyn_reset(d);
}

/* ---- levels ------------------------------------------------------------ */

/* Level in dBFS of channel c's detector over m frames into lev. */
static void level_db(mb_dyn *d, int c, const float *x, float *lev, int m) {
  if (d->cfg.detector == MB_DYN_PEAK) {
    for (int i = 0; i < m; i++) {
      lev[i] = DB_PER_LOG2 * mb_fast_log2(fabsf(x[i]) + LEVEL_FLOOR);
    }
    return;
  }
  const double a = d->a_rms, b = 1 - a;
  double ms = d->ms[c];
  for (int i = 0; i < m; i++) {
    const double v = x[i];
    ms = a * ms + (b * v * v + MS_BIAS);
    lev[i] = (float)(2 * ms); /* a sine reads its peak level (AES17) */
  }
  d->ms[c] = ms;
  for (int i = 0; i < m; i++)
    lev[i] = DB_PER_LOG2_POW * mb_fast_log2(lev[i] + LEVEL_FLOOR);
}

/* Loudest level over all channels (link 1): the curve is monotonic, so the
 * loudest level gives every channel's common gain. */
static void level_db_max(mb_dyn *d, const float *const *det, int off,
                         float *lev, int m) {
  const int nch = d->nch;
  if (d->cfg.detector == MB_DYN_PEAK) {
    for (int i = 0; i < m; i++) lev[i] = fabsf(det[0][off + i]);
    for (int c = 1; c < nch; c++) {
      const float *x = det[c] + off;
      for (int i = 0; i < m; i++) {
        const float a = fabsf(x[i]);
        lev[i] = a > lev[i] ? a : lev[i];
      }
    }
    for (int i = 0; i < m; i++)
      lev[i] = DB_PER_LOG2 * mb_fast_log2(lev[i] + LEVEL_FLOOR);
    return;
  }
  /* Channels two at a time: the two mean-square recursions are
   * independent chains the CPU overlaps (the loop is latency-bound). */
  float tmp[CH];
  const double a = d->a_rms, b = 1 - a;
  for (int c = 0; c < nch; c += 2) {
    float *dst = c ? tmp : lev;
    const float *x = det[c] + off;
    double ms = d->ms[c];
    if (c + 1 < nch) {
      const float *x2 = det[c + 1] + off;
      double ms2 = d->ms[c + 1];
      for (int i = 0; i < m; i++) {
        const double v = x[i], v2 = x2[i];
        ms = a * ms + (b * v * v + MS_BIAS);
        ms2 = a * ms2 + (b * v2 * v2 + MS_BIAS);
        dst[i] = (float)(2 * (ms > ms2 ? ms : ms2));
      }
      d->ms[c + 1] = ms2;
    } else {
      for (int i = 0; i < m; i++) {
        const double v = x[i];
        ms = a * ms + (b * v * v + MS_BIAS);
        dst[i] = (float)(2 * ms);
      }
    }
    d->ms[c] = ms;
    if (c)
      for (int i = 0; i < m; i++) lev[i] = tmp[i] > lev[i] ? tmp[i] : lev[i];
  }
  for (int i = 0; i < m; i++)
    lev[i] = DB_PER_LOG2_POW * mb_fast_log2(lev[i] + LEVEL_FLOOR);
}

/* ---- compressor -------------------------------------------------------- */

/* Static curve in place: level dB -> gain dB (<= 0); see mb_dyn_curve. */
static void comp_curve(const mb_dyn *d, float *v, int m) {
  const float t = d->thr, h = d->half_knee, s = d->slope, k = d->kq;
  for (int i = 0; i < m; i++) {
    const float over = v[i] - t, u = over + h;
    const float knee = k * u * u;
    const float g = over > h ? s * over : over > -h ? knee : 0.0f;
    v[i] = g > GAIN_FLOOR ? g : GAIN_FLOOR;
  }
}

/* Serial smoothing of one channel: g (gain dB) -> y (gain dB). The loud
 * side first: pk follows g down at once and releases towards it (one
 * pole, ar), then gr follows pk down with the attack (one pole, aa) and up
 * at once; so gr attacks and releases with the two time constants, and
 * a release is not slowed by the attack. Per frame n, with s = g(n):
 *
 *   pk(n) = min(s, ar pk(n - 1) + br s + REL_BIAS)
 *   gr(n) = max(aa gr(n - 1) + ba pk(n), pk(n))
 *
 * Both are chains of a multiply-add and a min or max per frame. Taken over
 * pairs of frames (e, o) = (2k, 2k + 1) from the last odd frame p (ar and
 * aa are positive, so a multiply-add moves through min and max):
 *
 *   pk(o) = min(s_o, ar s_e + K_o, ar^2 pk(p) + ar K_e + K_o)
 *   gr(o) = max(aa^2 gr(p) + aa ba pk(e) + ba pk(o), aa pk(e) + ba pk(o),
 *               pk(o)),        K = br s + REL_BIAS,
 *
 * each chain waits on one multiply-add and one min or max per pair (the
 * same values up to rounding). Pairs count frames from the reset, so
 * block sizes cannot move them: a block ending on an even frame leaves
 * its pair open (half, se). Returns the lowest y. */
typedef struct {
  double ar, br, aa, ba, ar2, aa2, aab;
} smooth_k;

/* The even frame of a pair: pk(e), gr(e) from the odd frame before. */
static inline void smooth_even(const smooth_k *k, double pk, double gr,
                               double se, double *pke, double *gre) {
  const double rel = k->ar * pk + (k->br * se + REL_BIAS);
  const double p = se < rel ? se : rel;
  const double att = k->aa * gr + k->ba * p;
  *pke = p;
  *gre = att > p ? att : p;
}

/* The odd frame: pk(o), gr(o) from the odd frame before (pk, gr in place),
 * the even frame's se and its pk(e). */
static inline double smooth_odd(const smooth_k *k, double *pk, double *gr,
                                double se, double pke, double so) {
  const double ke = k->br * se + REL_BIAS, ko = k->br * so + REL_BIAS;
  const double r1 = k->ar * se + ko, m1 = so < r1 ? so : r1;
  const double r2 = k->ar2 * *pk + (k->ar * ke + ko);
  const double po = m1 < r2 ? m1 : r2;
  const double bo = k->ba * po, a1 = k->aa * pke + bo, m2 = a1 > po ? a1 : po;
  const double a2 = k->aa2 * *gr + (k->aab * pke + bo);
  *pk = po;
  *gr = m2 > a2 ? m2 : a2;
  return *gr;
}

static double comp_smooth(mb_dyn *d, int c, const float *g, float *y, int m) {
  int half = d->half[c];
  double pk = d->pk[c], gr = d->gr[c], se = d->se[c], lo = 0;
  if (pk == 0 && gr == 0 && se == 0) {
    /* at rest and below the knee throughout: y stays exactly 0 (the loops
     * below would give the same, serially) */
    float low = 0;
    for (int i = 0; i < m; i++) low = g[i] < low ? g[i] : low;
    if (low == 0) {
      memset(y, 0, sizeof(float) * (size_t)m);
      d->half[c] = half ^ (m & 1);
      return 0;
    }
  }
  smooth_k k;
  k.ar = d->a_rel, k.br = 1 - k.ar, k.aa = d->a_att, k.ba = 1 - k.aa;
  k.ar2 = k.ar * k.ar, k.aa2 = k.aa * k.aa, k.aab = k.aa * k.ba;
  int i = 0;
  double pke, gre;
  if (half && m > 0) { /* close the pair the last block left open */
    smooth_even(&k, pk, gr, se, &pke, &gre);
    const double go = smooth_odd(&k, &pk, &gr, se, pke, g[0]);
    lo = go < lo ? go : lo;
    y[0] = (float)go;
    i = 1;
    half = 0;
  }
  for (; i + 2 <= m; i += 2) {
    const double s0 = g[i];
    smooth_even(&k, pk, gr, s0, &pke, &gre);
    const double go = smooth_odd(&k, &pk, &gr, s0, pke, g[i + 1]);
    lo = gre < lo ? gre : lo;
    lo = go < lo ? go : lo;
    y[i] = (float)gre;
    y[i + 1] = (float)go;
  }
  if (i < m) { /* an even frame: its pair stays open */
    se = g[i];
    smooth_even(&k, pk, gr, se, &pke, &gre);
    lo = gre < lo ? gre : lo;
    y[i] = (float)gre;
    half = 1;
  } else if (m > 0) {
    se = 0;
  }
  d->pk[c] = pk;
  d->gr[c] = gr;
  d->se[c] = se;
  d->half[c] = half;
  return lo;
}

static void to_linear(const float *y, float *out, int m) {
  for (int i = 0; i < m; i++) out[i] = mb_fast_exp2(LOG2_PER_DB * y[i]);
}

static void comp_chunk(mb_dyn *d, const float *const *det, float *const *gain,
                       int off, int m) {
  const int nch = d->nch;
  double lo;
  if (nch == 1 || d->cfg.link >= 1) {
    float v[CH];
    /* one smoother for all; coming from link < 1, start from the deepest
     * channel (with link 1 they are all equal already) */
    for (int c = 1; c < nch; c++) {
      d->pk[0] = d->pk[c] < d->pk[0] ? d->pk[c] : d->pk[0];
      d->gr[0] = d->gr[c] < d->gr[0] ? d->gr[c] : d->gr[0];
      d->se[0] = d->se[c] < d->se[0] ? d->se[c] : d->se[0];
    }
    level_db_max(d, det, off, v, m);
    comp_curve(d, v, m);
    lo = comp_smooth(d, 0, v, v, m);
    for (int c = 1; c < nch; c++) {
      d->pk[c] = d->pk[0];
      d->gr[c] = d->gr[0];
      d->se[c] = d->se[0];
      d->half[c] = d->half[0];
    }
    to_linear(v, gain[0] + off, m);
    for (int c = 1; c < nch; c++)
      memcpy(gain[c] + off, gain[0] + off, sizeof(float) * (size_t)m);
  } else {
    float v[MB_MAX_CHANNELS][CH], loud[CH];
    for (int c = 0; c < nch; c++) {
      level_db(d, c, det[c] + off, v[c], m);
      comp_curve(d, v[c], m);
    }
    const float link = (float)d->cfg.link, own = 1.0f - link;
    if (link > 0) {
      memcpy(loud, v[0], sizeof(float) * (size_t)m);
      for (int c = 1; c < nch; c++)
        for (int i = 0; i < m; i++)
          loud[i] = v[c][i] < loud[i] ? v[c][i] : loud[i];
      for (int c = 0; c < nch; c++)
        for (int i = 0; i < m; i++) v[c][i] = link * loud[i] + own * v[c][i];
    }
    lo = 0;
    for (int c = 0; c < nch; c++) {
      const double l = comp_smooth(d, c, v[c], v[c], m);
      lo = l < lo ? l : lo;
      to_linear(v[c], gain[c] + off, m);
    }
  }
  if (-lo > d->max_gr) d->max_gr = -lo;
}

/* ---- expander ---------------------------------------------------------- */

/* The expander's curve in double with the precomputed open/closed
 * threshold (same formula as mb_dyn_curve). */
static inline double exp_curve(const mb_dyn_config *c, double x, double t) {
  const double w = c->knee > 0 ? c->knee : 0, h = w / 2;
  const double over = x - t, slope = c->ratio - 1;
  double g = 0;
  if (over < -h)
    g = slope * over;
  else if (w > 0 && over < h)
    g = -slope * (over - h) * (over - h) / (2 * w);
  return g < -c->range ? -c->range : g;
}

static void exp_chunk(mb_dyn *d, const float *const *det, float *const *gain,
                      int off, int m) {
  const int nch = d->nch;
  const mb_dyn_config *cf = &d->cfg;
  const double ar = d->a_rel, br = 1 - ar, aa = d->a_att, ba = 1 - aa;
  const double t_closed = cf->threshold;
  const double t_open = cf->threshold - cf->hysteresis;
  const double link = cf->link, own = 1 - link;
  const int64_t hold = d->hold_frames;
  float lev[MB_MAX_CHANNELS][CH];
  for (int c = 0; c < nch; c++) level_db(d, c, det[c] + off, lev[c], m);
  double lo = 0;
  for (int i = 0; i < m; i++) {
    double g[MB_MAX_CHANNELS], loud = -HUGE_VAL;
    for (int c = 0; c < nch; c++) {
      /* hysteresis state from a held, released level */
      const double x = lev[c][i];
      if (x >= d->lp[c]) {
        d->lp[c] = x;
        d->lheld[c] = hold;
      } else if (d->lheld[c] > 0) {
        d->lheld[c]--;
      } else {
        d->lp[c] = ar * d->lp[c] + br * x;
      }
      if (d->open[c]) {
        if (d->lp[c] < t_open) d->open[c] = 0;
      } else if (d->lp[c] >= t_closed) {
        d->open[c] = 1;
      }
      g[c] = exp_curve(cf, x, d->open[c] ? t_open : t_closed);
      loud = g[c] > loud ? g[c] : loud;
    }
    for (int c = 0; c < nch; c++) {
      const double s = link * loud + own * g[c];
      /* the loud side is the higher gain (less reduction) */
      if (s >= d->pk[c]) {
        d->pk[c] = s;
        d->held[c] = hold;
      } else if (d->held[c] > 0) {
        d->held[c]--;
      } else {
        d->pk[c] = ar * d->pk[c] + br * s;
      }
      const double p = d->pk[c];
      double y = d->gr[c];
      y = p > y ? aa * y + ba * p : p;
      if (y > p - GAIN_FLUSH) y = p;
      d->gr[c] = y;
      lo = y < lo ? y : lo;
      gain[c][off + i] = (float)y;
    }
  }
  for (int c = 0; c < nch; c++) {
    float *gc = gain[c] + off;
    for (int i = 0; i < m; i++) gc[i] = mb_fast_exp2(LOG2_PER_DB * gc[i]);
  }
  if (-lo > d->max_gr) d->max_gr = -lo;
}

void mb_dyn_process(mb_dyn *d, const float *const *det, float *const *gain,
                    int n) {
  for (int off = 0; off < n; off += CH) {
    const int m = n - off < CH ? n - off : CH;
    if (d->cfg.kind == MB_DYN_COMPRESS)
      comp_chunk(d, det, gain, off, m);
    else
      exp_chunk(d, det, gain, off, m);
  }
}
