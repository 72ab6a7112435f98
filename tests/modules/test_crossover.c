/* test_crossover.c - the Linkwitz-Riley 4 splitter (modules/dsp/crossover)
 * against the analog prototype written here independently:
 *
 *   low  |L(jW)| = 1/(1 + W^4),  high |H(jW)| = W^4/(1 + W^4),
 *   all-pass A(jW) = (1 - W^2 - j sqrt2 W)/(1 - W^2 + j sqrt2 W),
 *   W = tan(pi f/rate)/tan(pi fc/rate) (bilinear transform prewarped at fc),
 *
 * band i = L_i prod_{j<i} H_j (times all-passes, magnitude 1) and the sum
 * of the bands = prod_j A_j (Linkwitz 1976; Linkwitz-Riley sums to an
 * all-pass). Also: -6.02 dB per band at its crossovers, argument checks,
 * call-size, in-place and channel-count independence (bit for bit), no
 * NaN/Inf/subnormal output and history flushed to zero, and (printed,
 * not asserted) the speed of a 3-band split of 300 s of 48 kHz stereo.
 * The multiband module through modhost: in-place buffers give the same
 * output as separate ones, and (printed) its speed on the same 300 s. */
#include <complex.h>
#include <fftw3.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsp/crossover.h"
#include "modhost.h"

static uint64_t lcg_state = 7;
static double urand(void) { /* [-1, 1) */
  lcg_state = lcg_state * 6364136223846793005u + 1442695040888963407u;
  return (double)(lcg_state >> 11) * 0x1p-52 - 1.0;
}

static double clock_s(clockid_t id) {
  struct timespec t;
  clock_gettime(id, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Wall and CPU time: the machine is shared, so wall time alone says little
 * when other jobs run. */
typedef struct {
  double wall, cpu;
} stamp;

static stamp now(void) {
  stamp s = {clock_s(CLOCK_MONOTONIC), clock_s(CLOCK_PROCESS_CPUTIME_ID)};
  return s;
}

/* --- independent reference -------------------------------------------- */

static double W_of(double rate, double fc, double f) {
  return tan(M_PI * f / rate) / tan(M_PI * fc / rate);
}

static double lr_low(double W) { return 1 / (1 + pow(W, 4)); }
static double lr_high(double W) { return pow(W, 4) / (1 + pow(W, 4)); }
static double complex allpass(double W) {
  return (1 - W * W - I * M_SQRT2 * W) / (1 - W * W + I * M_SQRT2 * W);
}

/* |band b| at f for crossovers fc[0..n-1]. */
static double band_mag(double rate, const double *fc, int n, int b, double f) {
  double m = 1;
  for (int j = 0; j < b; j++) m *= lr_high(W_of(rate, fc[j], f));
  if (b < n) m *= lr_low(W_of(rate, fc[b], f));
  return m;
}

/* DFT of x[0..n-1] at frequency f (Hz). */
static double complex dft_at(const float *x, int n, double rate, double f) {
  double re = 0, im = 0;
  const double w = 2 * M_PI * f / rate;
  for (int i = 0; i < n; i++) {
    re += x[i] * cos(w * i);
    im -= x[i] * sin(w * i);
  }
  return re + I * im;
}

/* --- helpers ------------------------------------------------------------ */

typedef struct {
  int nb, nch, n;
  float *buf[MB_XOVER_MAX + 1][MB_MAX_CHANNELS];
} bandbufs;

static void bb_alloc(bandbufs *bb, int nb, int nch, int n) {
  bb->nb = nb, bb->nch = nch, bb->n = n;
  for (int b = 0; b < nb; b++)
    for (int c = 0; c < nch; c++) bb->buf[b][c] = calloc((size_t)n, sizeof(float));
}

static void bb_free(bandbufs *bb) {
  for (int b = 0; b < bb->nb; b++)
    for (int c = 0; c < bb->nch; c++) free(bb->buf[b][c]);
}

/* Split in[c] (n frames) into bb in calls of `step` frames (0: one call). */
static void run_split(mb_crossover *x, float *const *in, bandbufs *bb, int n,
                      int step) {
  int off = 0;
  while (off < n) {
    int k = step > 0 && n - off > step ? step : n - off;
    const float *ip[MB_MAX_CHANNELS];
    float *bp[MB_XOVER_MAX + 1][MB_MAX_CHANNELS];
    float *const *bands[MB_XOVER_MAX + 1];
    for (int c = 0; c < bb->nch; c++) ip[c] = in[c] + off;
    for (int b = 0; b < bb->nb; b++) {
      for (int c = 0; c < bb->nch; c++) bp[b][c] = bb->buf[b][c] + off;
      bands[b] = bp[b];
    }
    mb_crossover_split(x, ip, bands, k);
    off += k;
    if (step < 0) step = 1 + (int)((urand() + 1) * 700); /* random sizes */
  }
}

/* --- tests ---------------------------------------------------------------- */

static void test_checks(void) {
  mb_crossover x;
  char err[MB_ERRLEN];
  const struct {
    double rate;
    double f[5];
    int n;
    const char *want; /* substring of the message */
  } bad[] = {
      {48000, {0}, 0, "0 crossovers"},
      {48000, {100, 200, 300, 400, 500}, 5, "5 crossovers"},
      {48000, {200, 200}, 2, "crossover2 200 Hz must be above crossover1"},
      {48000, {2000, 200}, 2, "crossover2 200 Hz must be above"},
      {48000, {200, 21600}, 2, "crossover2 21600 Hz is out of range"},
      {44100, {100, 19845}, 2, "crossover2 19845 Hz"}, /* = 0.45 x 44100 */
      {48000, {5}, 1, "crossover1 5 Hz"},
      {48000, {NAN}, 1, "crossover1 nan Hz"},
      {48000, {100, 1000, 500, 5000}, 4, "crossover3 500 Hz must be above"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err[0] = 0;
    mb_status st = mb_crossover_init(&x, bad[i].rate, 2, bad[i].f, bad[i].n,
                                     err, sizeof err);
    MH_CHECK(st == MB_ERR_ARG && strstr(err, bad[i].want),
             "case %zu: status %d, message '%s', want '%s'", i, st, err,
             bad[i].want);
  }
  const double ok[] = {10, 100, 1000, 21599};
  MH_CHECK(mb_crossover_init(&x, 48000, 2, ok, 4, err, sizeof err) == MB_OK,
           "10/100/1000/21599 Hz at 48 kHz refused: %s", err);
}

/* Impulse responses of every band; magnitudes against the prototype, the
 * sum against prod A_j (complex), each band at its crossovers. */
static void test_response(double rate, const double *fc, int nx,
                          int apart) {
  const int n = 1 << 17, nb = nx + 1;
  mb_crossover x;
  char err[MB_ERRLEN];
  if (mb_crossover_init(&x, rate, 1, fc, nx, err, sizeof err) != MB_OK) {
    MH_CHECK(0, "init: %s", err);
    return;
  }
  float *imp = calloc((size_t)n, sizeof(float));
  imp[0] = 1;
  bandbufs bb;
  bb_alloc(&bb, nb, 1, n);
  run_split(&x, &imp, &bb, n, 4096);
  /* the responses have decayed by the end (truncation would show here) */
  double tailmax = 0;
  for (int b = 0; b < nb; b++)
    for (int i = n - 1024; i < n; i++) tailmax = fmax(tailmax, fabs(bb.buf[b][0][i]));
  MH_CHECK(tailmax < 1e-9, "impulse responses not decayed: %g", tailmax);

  double *t = fftw_malloc(sizeof(double) * (size_t)n);
  fftw_complex *spec[MB_XOVER_MAX + 2];
  for (int b = 0; b <= nb; b++)
    spec[b] = fftw_malloc(sizeof(fftw_complex) * (size_t)(n / 2 + 1));
  fftw_plan p = fftw_plan_dft_r2c_1d(n, t, spec[0], FFTW_ESTIMATE);
  for (int b = 0; b <= nb; b++) { /* b == nb: the sum of the bands */
    for (int i = 0; i < n; i++) {
      if (b < nb) {
        t[i] = bb.buf[b][0][i];
      } else {
        double s = 0;
        for (int k = 0; k < nb; k++) s += bb.buf[k][0][i];
        t[i] = s;
      }
    }
    fftw_execute_dft_r2c(p, t, spec[b]);
  }
  /* bins from 20 Hz to 20 kHz (or 0.45 rate) */
  double sum_dev = 0, sum_cerr = 0, band_dev = 0;
  int worst_band = -1;
  double worst_f = 0;
  const double df = rate / n;
  for (int k = (int)ceil(20 / df); k * df <= fmin(20000, 0.45 * rate); k++) {
    const double f = k * df;
    const double complex hs = spec[nb][k];
    double complex ref = 1;
    for (int j = 0; j < nx; j++) ref *= allpass(W_of(rate, fc[j], f));
    sum_dev = fmax(sum_dev, fabs(20 * log10(cabs(hs))));
    sum_cerr = fmax(sum_cerr, cabs(hs - ref));
    for (int b = 0; b < nb; b++) {
      const double m = band_mag(rate, fc, nx, b, f);
      if (m < 1e-3) continue; /* below -60 dB: float rounding of the band */
      const double h = cabs(spec[b][k]);
      const double d = fabs(20 * log10(h / m));
      if (d > band_dev) band_dev = d, worst_band = b, worst_f = f;
    }
  }
  char fs[64] = "";
  for (int j = 0; j < nx; j++)
    snprintf(fs + strlen(fs), sizeof fs - strlen(fs), "%s%g", j ? "/" : "", fc[j]);
  printf("  %g Hz, crossovers %s: sum flat within %.2e dB, |sum - prod A| "
         "%.2e, bands within %.2e dB of the prototype\n",
         rate, fs, sum_dev, sum_cerr, band_dev);
  MH_CHECK(sum_dev < 1e-4, "%s at %g: sum of bands deviates %g dB", fs, rate,
           sum_dev);
  MH_CHECK(sum_cerr < 1e-5, "%s at %g: sum of bands is not prod A_j: %g", fs,
           rate, sum_cerr);
  MH_CHECK(band_dev < 1e-3, "%s at %g: band %d at %g Hz off by %g dB", fs,
           rate, worst_band + 1, worst_f, band_dev);
  /* each band at its own crossovers: the prototype's value, and -6.02 dB
   * (1/2) within 0.05 dB where the other crossovers are far (`apart`: a
   * decade or more; an octave away they add about 0.5 dB) */
  for (int j = 0; j < nx; j++) {
    for (int b = j; b <= j + 1; b++) {
      const double h = cabs(dft_at(bb.buf[b][0], n, rate, fc[j]));
      const double want = band_mag(rate, fc, nx, b, fc[j]);
      MH_CHECK(fabs(20 * log10(h / want)) < 1e-3 &&
                   (!apart || fabs(20 * log10(h) + 6.0206) < 0.05),
               "%s at %g: band %d at %g Hz: %.4f dB (prototype %.4f dB)", fs,
               rate, b + 1, fc[j], 20 * log10(h), 20 * log10(want));
    }
  }
  fftw_destroy_plan(p);
  for (int b = 0; b <= nb; b++) fftw_free(spec[b]);
  fftw_free(t);
  bb_free(&bb);
  free(imp);
}

/* Same output whatever the call sizes, in place (in = a band buffer), and
 * per channel whatever the channel count. */
static void test_calls(void) {
  const double fc[] = {120, 700, 3000, 12000};
  const int n = 48000, nch = 2;
  float *in[2];
  for (int c = 0; c < nch; c++) {
    in[c] = malloc(sizeof(float) * (size_t)n);
    for (int i = 0; i < n; i++) in[c][i] = (float)(0.5 * urand());
  }
  mb_crossover x;
  char err[MB_ERRLEN];
  bandbufs a, b;
  bb_alloc(&a, 5, nch, n);
  bb_alloc(&b, 5, nch, n);
  mb_crossover_init(&x, 48000, nch, fc, 4, err, sizeof err);
  run_split(&x, in, &a, n, 0);
  mb_crossover_reset(&x);
  run_split(&x, in, &b, n, -1);
  int same = 1;
  for (int k = 0; k < 5; k++)
    for (int c = 0; c < nch; c++)
      same &= memcmp(a.buf[k][c], b.buf[k][c], sizeof(float) * (size_t)n) == 0;
  MH_CHECK(same, "one call and random call sizes differ");
  /* in place: the input in band 2's buffers */
  for (int c = 0; c < nch; c++) memcpy(b.buf[2][c], in[c], sizeof(float) * (size_t)n);
  mb_crossover_reset(&x);
  run_split(&x, b.buf[2], &b, n, 1000);
  same = 1;
  for (int k = 0; k < 5; k++)
    for (int c = 0; c < nch; c++)
      same &= memcmp(a.buf[k][c], b.buf[k][c], sizeof(float) * (size_t)n) == 0;
  MH_CHECK(same, "in-place split differs");
  bb_free(&a);
  bb_free(&b);
  /* three channels (a pair and a lone one) = three mono splits */
  float *in3[3] = {in[0], in[1], malloc(sizeof(float) * (size_t)n)};
  for (int i = 0; i < n; i++) in3[2][i] = (float)(0.5 * urand());
  bandbufs t3, t1;
  bb_alloc(&t3, 5, 3, n);
  bb_alloc(&t1, 5, 1, n);
  mb_crossover_init(&x, 48000, 3, fc, 4, err, sizeof err);
  run_split(&x, in3, &t3, n, 777);
  same = 1;
  for (int c = 0; c < 3; c++) {
    mb_crossover_init(&x, 48000, 1, fc, 4, err, sizeof err);
    run_split(&x, &in3[c], &t1, n, 4096);
    for (int k = 0; k < 5; k++)
      same &= memcmp(t1.buf[k][0], t3.buf[k][c], sizeof(float) * (size_t)n) == 0;
  }
  MH_CHECK(same, "3-channel split differs from mono splits");
  bb_free(&t3);
  bb_free(&t1);
  free(in3[2]);
  for (int c = 0; c < nch; c++) free(in[c]);
}

static long count_bad(const bandbufs *bb, int n) {
  long bad = 0;
  for (int k = 0; k < bb->nb; k++)
    for (int c = 0; c < bb->nch; c++)
      for (int i = 0; i < n; i++) {
        const float v = bb->buf[k][c][i];
        bad += !isfinite(v) || (v != 0 && fabsf(v) < FLT_MIN);
      }
  return bad;
}

/* A burst then silence, a constant 1e-30, DC and a full-scale square:
 * no NaN/Inf/subnormal, and the history reaches exact zero. */
static void test_hygiene(void) {
  const double fc[] = {20, 21000};
  const int n = 48000 * 10, nch = 2;
  float *in[2];
  bandbufs bb;
  bb_alloc(&bb, 3, nch, n);
  for (int c = 0; c < nch; c++) in[c] = calloc((size_t)n, sizeof(float));
  mb_crossover x;
  char err[MB_ERRLEN];
  mb_crossover_init(&x, 48000, nch, fc, 2, err, sizeof err);
  for (int sig = 0; sig < 4; sig++) {
    static const char *const names[] = {"burst", "1e-30", "dc", "square"};
    for (int c = 0; c < nch; c++)
      for (int i = 0; i < n; i++) {
        float v = 0;
        if (sig == 0) v = i < 2400 ? (float)(0.5 * urand()) : 0;
        if (sig == 1) v = 1e-30f;
        if (sig == 2) v = 0.5f;
        if (sig == 3) v = (i / 24) % 2 ? 1.0f : -1.0f;
        in[c][i] = v;
      }
    mb_crossover_reset(&x);
    run_split(&x, in, &bb, n, 4096);
    long bad = count_bad(&bb, n);
    MH_CHECK(bad == 0, "%s: %ld NaN/Inf/subnormal samples", names[sig], bad);
    if (sig == 0) {
      double live = 0;
      for (size_t i = 0; i < sizeof x.sp / sizeof(double); i++)
        live = fmax(live, fabs((&x.sp[0][0][0])[i]));
      for (size_t i = 0; i < sizeof x.ap / sizeof(double); i++)
        live = fmax(live, fabs((&x.ap[0][0][0][0])[i]));
      MH_CHECK(live == 0, "burst: history not flushed to zero after 10 s: %g",
               live);
    }
  }
  bb_free(&bb);
  for (int c = 0; c < nch; c++) free(in[c]);
}

/* 300 s of 48 kHz stereo through a 3-band split (200/2000 Hz): printed. */
static void bench_split(void) {
  const double fc[] = {200, 2000};
  const int blk = 4096, nch = 2;
  const long total = 300L * 48000;
  float *in[2];
  bandbufs bb;
  bb_alloc(&bb, 3, nch, blk);
  for (int c = 0; c < nch; c++) {
    in[c] = malloc(sizeof(float) * blk);
    for (int i = 0; i < blk; i++) in[c][i] = (float)(0.3 * urand());
  }
  mb_crossover x;
  char err[MB_ERRLEN];
  mb_crossover_init(&x, 48000, nch, fc, 2, err, sizeof err);
  double wall = 1e9, cpu = 1e9;
  for (int rep = 0; rep < 3; rep++) {
    const stamp t0 = now();
    for (long done = 0; done < total; done += blk) run_split(&x, in, &bb, blk, 0);
    const stamp t1 = now();
    wall = fmin(wall, t1.wall - t0.wall), cpu = fmin(cpu, t1.cpu - t0.cpu);
  }
  printf("  speed: 3-band LR4 split (200/2000 Hz) of 300 s 48 kHz stereo: "
         "%.3f s CPU (%.0fx real time), %.3f s wall, best of 3\n",
         cpu, 300 / cpu, wall);
  bb_free(&bb);
  for (int c = 0; c < nch; c++) free(in[c]);
}

/* --- the multiband module ------------------------------------------------ */

static void setup_mb(modhost *h, int maxf) {
  mh_init(h, "multiband", 48000, maxf);
  mh_set(h, "crossover1", 200);
  mh_set(h, "crossover2", 2000);
  /* compression active in every band on -12 dBFS noise */
  const char *f[] = {"threshold1", "threshold2", "threshold3"};
  for (int i = 0; i < 3; i++) mh_set(h, f[i], -30);
  mh_set(h, "makeup2", 3);
}

/* In-place (out = in, as the modhost harness may alias) equals separate. */
static void test_module_alias(void) {
  const int n = 20000, blk = 1000, nch = 2;
  float *a[2], *b[2], *o[2];
  for (int c = 0; c < nch; c++) {
    a[c] = malloc(sizeof(float) * n), b[c] = malloc(sizeof(float) * n);
    o[c] = malloc(sizeof(float) * n);
    for (int i = 0; i < n; i++) a[c][i] = b[c][i] = (float)(0.25 * urand());
  }
  const int ch[1] = {2};
  modhost h1, h2;
  setup_mb(&h1, blk);
  setup_mb(&h2, blk);
  if (mh_create(&h1, ch) || mh_create(&h2, ch)) {
    MH_CHECK(0, "multiband create: %s%s", h1.err, h2.err);
    return;
  }
  for (int off = 0; off < n; off += blk) {
    const float *ia[2] = {a[0] + off, a[1] + off};
    float *oa[2] = {o[0] + off, o[1] + off};
    const float *const *ina[1] = {ia};
    mh_process(&h1, ina, oa, blk, off);
    float *ib[2] = {b[0] + off, b[1] + off};
    const float *const *inb[1] = {(const float *const *)ib};
    mh_process(&h2, inb, ib, blk, off);
  }
  int same = 1;
  for (int c = 0; c < nch; c++)
    same &= memcmp(o[c], b[c], sizeof(float) * (size_t)n) == 0;
  MH_CHECK(same, "multiband in place differs from separate buffers");
  mh_free(&h1);
  mh_free(&h2);
  for (int c = 0; c < nch; c++) free(a[c]), free(b[c]), free(o[c]);
}

/* The BENCH.md case without file I/O: 3 bands 200/2000 Hz, 300 s stereo. */
static void bench_module(void) {
  const int blk = 4096, nch = 2;
  const long total = 300L * 48000;
  float *in[2], *out[2];
  for (int c = 0; c < nch; c++) {
    in[c] = malloc(sizeof(float) * blk), out[c] = malloc(sizeof(float) * blk);
    for (int i = 0; i < blk; i++) in[c][i] = (float)(0.4 * urand());
  }
  const int ch[1] = {2};
  modhost h;
  setup_mb(&h, blk);
  if (mh_create(&h, ch)) {
    MH_CHECK(0, "multiband create: %s", h.err);
    return;
  }
  const float *const *ins[1] = {(const float *const *)in};
  double wall = 1e9, cpu = 1e9;
  for (int rep = 0; rep < 3; rep++) {
    const stamp t0 = now();
    for (long done = 0; done < total; done += blk) mh_process(&h, ins, out, blk, done);
    const stamp t1 = now();
    wall = fmin(wall, t1.wall - t0.wall), cpu = fmin(cpu, t1.cpu - t0.cpu);
  }
  printf("  speed: multiband module, 3 bands 200/2000 Hz compressing, 300 s "
         "48 kHz stereo: %.3f s CPU (%.0fx real time), %.3f s wall, best "
         "of 3\n",
         cpu, 300 / cpu, wall);
  mh_free(&h);
  for (int c = 0; c < nch; c++) free(in[c]), free(out[c]);
}

int main(void) {
  test_checks();
  printf("LR4 crossover responses:\n");
  const double one[] = {1000}, two[] = {200, 2000}, oct2[] = {100, 200};
  const double oct4[] = {250, 500, 1000, 2000}, wide[] = {30, 300, 3000, 15000};
  const double dec3[] = {100, 1000, 10000};
  test_response(48000, one, 1, 1);
  test_response(48000, two, 2, 1);
  test_response(48000, dec3, 3, 1);
  test_response(48000, oct2, 2, 0);
  test_response(48000, oct4, 4, 0);
  test_response(44100, wide, 4, 1);
  test_response(96000, oct4, 4, 0);
  test_response(192000, wide, 4, 1);
  test_calls();
  test_hygiene();
  test_module_alias();
  bench_split();
  bench_module();
  if (mh_fails) {
    fprintf(stderr, "%d check(s) failed\n", mh_fails);
    return 1;
  }
  printf("all crossover checks passed\n");
  return 0;
}
