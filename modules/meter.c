/* meter.c - loudness, peaks and correlation of what passes through
 * (modules/dsp/loudness.h), the signal itself untouched. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dsp/loudness.h"
#include "mb_module.h"

enum { P_TRUE_PEAK };

typedef struct {
  int nch;
  int true_peak;        /* measure it (parameter) */
  int64_t skip, length; /* fed: frames [skip, skip + length) */
  mb_loudness *l;
  int64_t fed; /* frames measured */
  /* correlation of channels 1 and 2: sums of values shifted by the first
   * fed sample (keeps the variance sums accurate with DC) */
  double k1, k2, s1, s2, s11, s22, s12;
  int differ; /* channels 1 and 2 differed on some frame */
} meter_state;

static void clear(meter_state *s) {
  s->fed = 0;
  s->k1 = s->k2 = s->s1 = s->s2 = s->s11 = s->s22 = s->s12 = 0;
  s->differ = 0;
}

static void destroy(void *st) {
  meter_state *s = st;
  mb_loudness_destroy(&s->l);
}

static mb_status create(void *st, const mb_config *c, char *err,
                        size_t errlen) {
  meter_state *s = st;
  s->nch = c->in_channels[0];
  s->true_peak = c->values[P_TRUE_PEAK] != 0;
  s->skip = c->skip;
  s->length = c->length;
  /* a known length sizes the gating lists exactly; unbounded (live) ones
   * start with ten minutes and then use the 0.01 LU histograms */
  mb_status e = mb_loudness_create(
      &s->l, c->rate, s->nch, c->length,
      s->true_peak ? MB_LOUDNESS_TRUE_PEAK : 0, err, errlen);
  if (e != MB_OK) return e;
  clear(s);
  return MB_OK;
}

/* Four frames per step in vector lanes (frames here, not channels: the
 * sums have no recursion), then the rest one by one. */
typedef double v4d __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static void correlate(meter_state *s, const float *const *in, int from,
                      int n) {
  const float *x = in[0] + from, *y = in[1] + from;
  if (s->fed == 0) s->k1 = x[0], s->k2 = y[0];
  const double k1 = s->k1, k2 = s->k2;
  v4d s1 = {0}, s2 = {0}, s11 = {0}, s22 = {0}, s12 = {0};
  v4i dv = {0};
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    v4f xf, yf;
    memcpy(&xf, x + i, sizeof xf), memcpy(&yf, y + i, sizeof yf);
    dv |= xf != yf;
    const v4d a = __builtin_convertvector(xf, v4d) - k1;
    const v4d b = __builtin_convertvector(yf, v4d) - k2;
    s1 += a, s2 += b, s11 += a * a, s22 += b * b, s12 += a * b;
  }
  double t1 = 0, t2 = 0, t11 = 0, t22 = 0, t12 = 0;
  int differ = 0;
  for (int j = 0; j < 4; j++) {
    t1 += s1[j], t2 += s2[j], t11 += s11[j], t22 += s22[j], t12 += s12[j];
    differ |= dv[j] != 0;
  }
  for (; i < n; i++) {
    const double a = x[i] - k1, b = y[i] - k2;
    t1 += a, t2 += b, t11 += a * a, t22 += b * b, t12 += a * b;
    differ |= x[i] != y[i];
  }
  s->s1 += t1, s->s2 += t2, s->s11 += t11, s->s22 += t22, s->s12 += t12;
  s->differ |= differ;
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
  if (e <= a) return;
  if (s->nch >= 2) correlate(s, in, (int)a, (int)(e - a));
  mb_loudness_feed(s->l, in, (int)a, (int)(e - a));
  s->fed += e - a;
}

static void reset(void *st) {
  meter_state *s = st;
  mb_loudness_reset(s->l); /* no allocation: the lists keep their room */
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
  mb_loudness_result r;
  mb_loudness_get(s->l, &r);
  const char *nm[] = {"integrated",    "lra",            "true_peak",
                      "sample_peak",   "momentary_max",  "short_term_max",
                      "correlation",   "frames"};
  const double val[] = {r.integrated,    r.lra,
                        r.true_peak,     r.sample_peak,
                        r.momentary_max, r.short_term_max,
                        correlation(s),  (double)s->fed};
  int k = 0;
  for (int i = 0; i < 8 && k < max; i++) {
    if (i == 2 && !s->true_peak) continue; /* not measured: absent */
    names[k] = nm[i], values[k] = val[i], k++;
  }
  return k;
}

static const mb_port_desc inputs[] = {{.name = "in"}};

static const mb_param_desc params[] = {
    [P_TRUE_PEAK] = {.id = "true_peak", .unit = "", .type = MB_PARAM_BOOL,
                     .def = 1, .flags = MB_PARAM_STRUCTURAL,
                     .help = "measure the true peak (off: loudness only, "
                             "faster)"},
};

const mb_module_desc mb_mod_meter = {
    .id = "meter",
    .summary = "measure loudness, peaks and correlation; pass through",
    .doc =
        "Passes its input through bit-exact and measures it per ITU-R "
        "BS.1770-4 and EBU R128 (Tech 3341, 3342): after a render, "
        "`integrated` (LUFS, gated exactly over every 400 ms block), `lra` "
        "(LU, from 3 s short-term values every 100 ms), `true_peak` (dBTP, "
        "4x oversampled below 96 kHz, 2x up to 192 kHz; only when the "
        "`true_peak` parameter is on, otherwise the result is absent), "
        "`sample_peak` (dBFS), `momentary_max` and `short_term_max` (LUFS, "
        "the highest 400 ms and 3 s loudness at every 100 ms of signal; "
        "windows reaching before the start count that part as silence), "
        "`correlation` and `frames` (frames measured). Channel weights "
        "follow the usual WAV layouts: 1.0 for front channels, 0 for the "
        "LFE (4th of 6 or more), 1.41 for surrounds (quad, 5.0, 5.1, 7.1). "
        "Only the signal is measured: the latency padding before it and "
        "anything after its length are left out. `correlation` is "
        "Pearson's coefficient between channels 1 and 2 over the whole "
        "signal (-1 .. 1); when a side has no variation (silence, DC) it "
        "is 1 if both sides are identical and 0 otherwise; a mono input "
        "gives 1. Silence gives -inf loudness and peaks. Turn `true_peak` "
        "off when only loudness matters: the meter's own cost drops to "
        "about a third. Resetting starts a new measurement without "
        "allocating. A meter of unknown length (live) keeps every block "
        "for ten minutes, then measures integrated loudness and LRA from "
        "0.01 LU histograms.",
    .inputs = inputs,
    .n_inputs = 1,
    .has_output = 1,
    .params = params,
    .n_params = 1,
    .state_size = sizeof(meter_state),
    .flags = MB_MODULE_ANALYSER,
    .create = create,
    .process = process,
    .reset = reset,
    .results = results,
    .destroy = destroy,
};
