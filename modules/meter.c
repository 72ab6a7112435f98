/* meter.c - loudness, peaks and correlation of what passes through
 * (libebur128), the signal itself untouched. */
#include <ebur128.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_module.h"

#define ST_BLOCKS 30 /* short-term window: 30 blocks of 100 ms */

typedef struct {
  int nch;
  unsigned long rate;
  int64_t skip, length;  /* fed: frames [skip, skip + length) */
  int step;              /* 100 ms in frames, as libebur128 counts it */
  ebur128_state *eb;     /* measuring */
  ebur128_state *spare;  /* fresh, for an allocation-free reset */
  int spare_dirty;       /* spare already fed: reset must re-create */
  float *buf;            /* interleaved, max_frames * nch */
  int max_frames;
  int64_t fed;           /* frames given to libebur128 */
  double blk[ST_BLOCKS]; /* energies of the last 100 ms blocks */
  int blk_i;
  double m_max, s_max;   /* LUFS */
  /* correlation of channels 1 and 2: sums of values shifted by the first
   * fed sample (keeps the variance sums accurate with DC) */
  double k1, k2, s1, s2, s11, s22, s12;
  int differ; /* channels 1 and 2 differed on some frame */
} meter_state;

static const int modes = EBUR128_MODE_I | EBUR128_MODE_LRA |
                         EBUR128_MODE_M | EBUR128_MODE_S |
                         EBUR128_MODE_TRUE_PEAK | EBUR128_MODE_SAMPLE_PEAK |
                         EBUR128_MODE_HISTOGRAM;

static void clear(meter_state *s) {
  s->fed = 0;
  memset(s->blk, 0, sizeof s->blk);
  s->blk_i = 0;
  s->m_max = s->s_max = -HUGE_VAL;
  s->k1 = s->k2 = s->s1 = s->s2 = s->s11 = s->s22 = s->s12 = 0;
  s->differ = 0;
}

static void destroy(void *st) {
  meter_state *s = st;
  if (s->eb) ebur128_destroy(&s->eb);
  if (s->spare) ebur128_destroy(&s->spare);
  free(s->buf);
  s->buf = NULL;
}

static mb_status create(void *st, const mb_config *c, char *err,
                        size_t errlen) {
  meter_state *s = st;
  s->nch = c->in_channels[0];
  s->rate = (unsigned long)llround(c->rate);
  s->skip = c->skip;
  s->length = c->length;
  s->step = (int)((s->rate + 5) / 10);
  s->max_frames = c->max_frames;
  s->eb = ebur128_init((unsigned)s->nch, s->rate, modes);
  s->spare = ebur128_init((unsigned)s->nch, s->rate, modes);
  s->buf = malloc(sizeof(float) * (size_t)c->max_frames * (size_t)s->nch);
  if (!s->eb || !s->spare || !s->buf) {
    snprintf(err, errlen, "out of memory for %d channels at %lu Hz",
             s->nch, s->rate);
    destroy(s);
    return MB_ERR_NOMEM;
  }
  clear(s);
  return MB_OK;
}

/* At every 100 ms of signal: the last block's energy from libebur128,
 * momentary (4 blocks) and short-term (30 blocks) as their means. Blocks
 * before the signal count as silence, as in libebur128's own M and S. */
static void poll(meter_state *s) {
  double l, e = 0, m = 0, t = 0;
  if (ebur128_loudness_window(s->eb, 100, &l) == EBUR128_SUCCESS &&
      l > -HUGE_VAL)
    e = pow(10.0, (l + 0.691) / 10.0);
  s->blk[s->blk_i] = e;
  for (int k = 0; k < ST_BLOCKS; k++) {
    const double v = s->blk[(s->blk_i + ST_BLOCKS - k) % ST_BLOCKS];
    if (k < 4) m += v;
    t += v;
  }
  s->blk_i = (s->blk_i + 1) % ST_BLOCKS;
  if (m > 0) {
    const double lm = 10 * log10(m / 4) - 0.691;
    if (lm > s->m_max) s->m_max = lm;
  }
  if (t > 0) {
    const double ls = 10 * log10(t / ST_BLOCKS) - 0.691;
    if (ls > s->s_max) s->s_max = ls;
  }
}

static void feed(meter_state *s, const float *const *in, int from, int n) {
  const int nch = s->nch;
  float *buf = s->buf;
  for (int i = 0; i < n; i++)
    for (int c = 0; c < nch; c++) buf[i * nch + c] = in[c][from + i];
  if (nch >= 2) {
    const float *x = in[0] + from, *y = in[1] + from;
    if (s->fed == 0) s->k1 = x[0], s->k2 = y[0];
    double s1 = 0, s2 = 0, s11 = 0, s22 = 0, s12 = 0;
    int differ = 0;
    for (int i = 0; i < n; i++) {
      const double a = x[i] - s->k1, b = y[i] - s->k2;
      s1 += a, s2 += b, s11 += a * a, s22 += b * b, s12 += a * b;
      differ |= x[i] != y[i];
    }
    s->s1 += s1, s->s2 += s2, s->s11 += s11, s->s22 += s22, s->s12 += s12;
    s->differ |= differ;
  }
  ebur128_add_frames_float(s->eb, buf, (size_t)n);
  s->fed += n;
}

static void process(void *st, const mb_block *b) {
  meter_state *s = st;
  const int n = b->frames;
  const float *const *in = b->in[0];
  for (int c = 0; c < b->out_channels; c++)
    if (b->out[c] != in[c]) memcpy(b->out[c], in[c], sizeof(float) * n);
  /* the part of this block inside [skip, skip + length) */
  int64_t a = s->skip - b->pos, e = n;
  if (a < 0) a = 0;
  if (s->length >= 0 && s->skip + s->length - b->pos < e)
    e = s->skip + s->length - b->pos;
  for (int64_t i = a; i < e;) {
    int64_t k = s->step - s->fed % s->step; /* to the next 100 ms mark */
    if (k > e - i) k = e - i;
    feed(s, in, (int)i, (int)k);
    i += k;
    if (s->fed % s->step == 0) poll(s);
  }
}

static void reset(void *st) {
  meter_state *s = st;
  if (s->fed > 0) {
    if (!s->spare_dirty) {
      /* libebur128 has no reset: swap in the fresh state */
      ebur128_state *t = s->eb;
      s->eb = s->spare;
      s->spare = t;
      s->spare_dirty = 1;
    } else {
      /* second reset of this instance: the only way to clear libebur128
       * is to re-create it, which allocates (see the module doc) */
      ebur128_destroy(&s->eb);
      s->eb = ebur128_init((unsigned)s->nch, s->rate, modes);
    }
  }
  clear(s);
}

static double correlation(const meter_state *s) {
  if (s->nch < 2) return 1.0;
  const double n = (double)s->fed;
  if (n <= 0) return 1.0;
  const double v1 = s->s11 - s->s1 * s->s1 / n;
  const double v2 = s->s22 - s->s2 * s->s2 / n;
  const double cv = s->s12 - s->s1 * s->s2 / n;
  if (!(v1 > 0) || !(v2 > 0) || !(v1 * v2 > 0)) return s->differ ? 0.0 : 1.0;
  const double r = cv / sqrt(v1 * v2);
  return r > 1 ? 1 : r < -1 ? -1 : r;
}

static int results(const void *st, const char **names, double *values,
                   int max) {
  const meter_state *s = st;
  double integ = -HUGE_VAL, lra = 0, tp = 0, sp = 0;
  if (s->eb) {
    ebur128_loudness_global(s->eb, &integ);
    ebur128_loudness_range(s->eb, &lra);
    for (int c = 0; c < s->nch; c++) {
      double v = 0;
      if (ebur128_true_peak(s->eb, (unsigned)c, &v) == EBUR128_SUCCESS &&
          v > tp)
        tp = v;
      if (ebur128_sample_peak(s->eb, (unsigned)c, &v) == EBUR128_SUCCESS &&
          v > sp)
        sp = v;
    }
  }
  const char *nm[] = {"integrated",    "lra",            "true_peak",
                      "sample_peak",   "momentary_max",  "short_term_max",
                      "correlation",   "frames"};
  const double val[] = {integ,
                        lra,
                        tp > 0 ? 20 * log10(tp) : -HUGE_VAL,
                        sp > 0 ? 20 * log10(sp) : -HUGE_VAL,
                        s->m_max,
                        s->s_max,
                        correlation(s),
                        (double)s->fed};
  int k = 0;
  for (; k < 8 && k < max; k++) names[k] = nm[k], values[k] = val[k];
  return k;
}

static const mb_port_desc inputs[] = {{.name = "in"}};

const mb_module_desc mb_mod_meter = {
    .id = "meter",
    .summary = "measure loudness, peaks and correlation; pass through",
    .doc =
        "Passes its input through bit-exact and measures it with "
        "libebur128 (EBU R128 / ITU-R BS.1770-4, histogram mode): after a "
        "render, `integrated` (LUFS), `lra` (LU), `true_peak` (dBTP, "
        "libebur128's oversampled peak), `sample_peak` (dBFS), "
        "`momentary_max` and `short_term_max` (LUFS, the highest 400 ms "
        "and 3 s loudness at every 100 ms of signal; windows reaching "
        "before the start count that part as silence), `correlation` and "
        "`frames` (frames measured). Only the signal is measured: the "
        "latency padding before it and anything after its length are "
        "left out. `correlation` is Pearson's coefficient between "
        "channels 1 and 2 over the whole signal (-1 .. 1); when a side "
        "has no variation (silence, DC) it is 1 if both sides are "
        "identical and 0 otherwise; a mono input gives 1. Silence gives "
        "-inf loudness and peaks. Resetting starts a new measurement; "
        "libebur128 has no reset, so the second and later resets of one "
        "instance re-create its state (an allocation).",
    .inputs = inputs,
    .n_inputs = 1,
    .has_output = 1,
    .state_size = sizeof(meter_state),
    .create = create,
    .process = process,
    .reset = reset,
    .results = results,
    .destroy = destroy,
};
