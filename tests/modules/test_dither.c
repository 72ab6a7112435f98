/* test_dither.c - the dither module run directly: error statistics against
 * the theory of subtractive-free TPDF dither (1/6 + 1/12 = 1/4 LSB^2,
 * Lipshitz, Wannamaker & Vanderkooy JAES 1992), the shaped error's second
 * moments against 0.25 |E|^2 of its feedback filter, the curves' design,
 * the output grid and saturation, block-size and aliasing independence,
 * hostile input, errors, and a speed figure (printed, not asserted). */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "modhost.h"

#define NTAP 9
#define MAXF 4096

/* exported by modules/dither.c for this test */
int mb_dither_fit(int shape, double rate, double *c);
int mb_dither_curve(int shape, double rate, double *c);

enum { SH_TPDF, SH_LIGHT, SH_E, SH_F, SH_COUNT };
static const char *const names[] = {"tpdf", "light", "e-weighted",
                                    "f-weighted"};

/* Published 44.1 kHz coefficients (Wannamaker 1992; Lipshitz, Wannamaker
 * & Vanderkooy 1991), typed in here again from the papers' figures. */
static const double pub[SH_COUNT][NTAP] = {
    [SH_LIGHT] = {1.623, -0.982, 0.109},
    [SH_E] = {2.033, -2.165, 1.959, -1.590, 0.6149},
    [SH_F] = {2.412, -3.370, 3.937, -4.174, 3.353, -2.205, 1.281, -0.569,
              0.0847},
};

static uint64_t lcg = 12345;
static double urand(void) { /* [-1, 1) */
  lcg = lcg * 6364136223846793005u + 1442695040888963407u;
  return (double)(lcg >> 11) * 0x1p-52 - 1.0;
}

/* |E(f)|^2 in dB for E(z) = 1 - sum c_k z^-k */
static double resp_db(const double *c, double f, double fs) {
  double re = 1, im = 0, w = 2 * M_PI * f / fs;
  for (int k = 1; k <= NTAP; k++) {
    re -= c[k - 1] * cos(w * k);
    im += c[k - 1] * sin(w * k);
  }
  return 10 * log10(re * re + im * im);
}

/* Mean of |E|^2 (power, linear) over a band, in dB */
static double band_db(const double *c, double f0, double f1, double fs) {
  double s = 0;
  int n = 0;
  for (double f = f0; f <= f1; f += 10, n++)
    s += pow(10, resp_db(c, f, fs) / 10);
  return 10 * log10(s / n);
}

/* ---- running the module --------------------------------------------- */

typedef struct {
  int bits, shape, seed;
  double rate;
} cfg;

static int make(modhost *h, cfg c, int nch) {
  mh_init(h, "dither", c.rate, MAXF);
  mh_set(h, "bits", c.bits);
  mh_set(h, "shape", c.shape);
  mh_set(h, "seed", c.seed);
  int ch[MB_MAX_PORTS] = {nch};
  return mh_create(h, ch);
}

/* Run nch planar channels of n frames (in may equal out: in place) in
 * blocks of `block` starting at absolute frame pos0. */
static void run(modhost *h, float **in, float **out, int nch, int n, int block,
                long long pos0) {
  for (int pos = 0; pos < n; pos += block) {
    int m = n - pos < block ? n - pos : block;
    const float *ip[MB_MAX_CHANNELS];
    float *op[MB_MAX_CHANNELS];
    for (int c = 0; c < nch; c++)
      ip[c] = in[c] + pos, op[c] = out[c] + pos;
    const float *const *ipp[MB_MAX_PORTS] = {ip};
    mh_process(h, ipp, op, m, pos0 + pos);
  }
}

static double result(modhost *h, const char *name) {
  const char *nm[16];
  double v[16];
  int k = h->m->results(h->state, nm, v, 16);
  for (int i = 0; i < k; i++)
    if (strcmp(nm[i], name) == 0)
      return v[i];
  MH_CHECK(0, "no result %s", name);
  return NAN;
}

static float **chans(int nch, int n) {
  float **p = calloc((size_t)nch, sizeof *p);
  for (int c = 0; c < nch; c++)
    p[c] = calloc((size_t)n, sizeof(float));
  return p;
}

static void chans_free(float **p, int nch) {
  for (int c = 0; c < nch; c++)
    free(p[c]);
  free(p);
}

static void sine(float *x, int n, double db, double f, double fs) {
  double a = pow(10, db / 20);
  for (int i = 0; i < n; i++)
    x[i] = (float)(a * sin(2 * M_PI * f * i / fs));
}

/* error statistics in LSB: mean, variance, autocorrelation at lags 1..9 */
typedef struct {
  double mean, var, ac[NTAP + 1], maxabs;
  int offgrid;
} stats;

static stats err_stats(const float *x, const float *y, int n, int bits) {
  const double S = ldexp(1, bits - 1);
  stats s = {0};
  double *e = malloc(sizeof(double) * (size_t)n);
  for (int i = 0; i < n; i++) {
    double q = (double)y[i] * S;
    s.offgrid += q != floor(q);
    e[i] = q - (double)x[i] * S;
    s.mean += e[i];
    if (fabs(e[i]) > s.maxabs)
      s.maxabs = fabs(e[i]);
  }
  s.mean /= n;
  for (int l = 0; l <= NTAP; l++) {
    double a = 0;
    for (int i = l; i < n; i++)
      a += (e[i] - s.mean) * (e[i - l] - s.mean);
    s.ac[l] = a / (n - l);
  }
  s.var = s.ac[0];
  free(e);
  return s;
}

/* ---- tests ------------------------------------------------------------ */

/* The fit reproduces the published 44.1 kHz filters (an all-pole spectrum
 * of the filter's own order is matched exactly) and at 48 kHz keeps the
 * response in Hz, the 2-5 kHz dip and minimum phase. */
static void test_design(void) {
  for (int sh = SH_LIGHT; sh < SH_COUNT; sh++) {
    double c[NTAP], d = 0;
    mb_dither_fit(sh, 44100, c);
    for (int k = 0; k < NTAP; k++)
      d = fmax(d, fabs(c[k] - pub[sh][k]));
    MH_CHECK(d < 1e-6, "%s: fit at 44.1 kHz is %.2g off the published",
             names[sh], d);
    double u[NTAP];
    MH_CHECK(mb_dither_curve(sh, 44100, u) > 0 &&
                 memcmp(u, pub[sh], sizeof u) == 0,
             "%s: 44.1 kHz uses the published coefficients", names[sh]);
    for (int r = 0; r < 2; r++) {
      const double fs = r ? 48000 : 44100;
      MH_CHECK(mb_dither_curve(sh, fs, c) > 0, "%s at %g", names[sh], fs);
      const double b = band_db(c, 2000, 5000, fs);
      MH_CHECK(b < -15, "%s at %g Hz: 2-5 kHz at %.1f dB (want < -15)",
               names[sh], fs, b);
      /* minimum phase <=> mean ln|E|^2 over the circle is 0 (Jensen) */
      double ml = 0;
      for (int g = 0; g < 8192; g++)
        ml += resp_db(c, (g + 0.5) / 8192 * fs / 2, fs);
      ml /= 8192;
      MH_CHECK(fabs(ml) < 0.01, "%s at %g Hz: mean log |E|^2 %.4f dB",
               names[sh], fs, ml);
      double dev = 0;
      for (double f = 20; f <= 20000; f *= 1.01)
        dev = fmax(dev, fabs(resp_db(c, f, fs) - resp_db(pub[sh], f, 44100)));
      MH_CHECK(dev < 3.5, "%s at %g Hz: %.2f dB from the 44.1 kHz curve",
               names[sh], fs, dev);
      printf("  %-10s %5.0f Hz: 2-5 kHz %.1f dB, max dev from 44.1 curve %.2f "
             "dB\n",
             names[sh], fs, b, dev);
    }
    for (int k = 0; k < 3; k++) {
      const double fs[] = {32000, 88200, 96000};
      MH_CHECK(mb_dither_curve(sh, fs[k], c) == 0, "%s has no curve at %g",
               names[sh], fs[k]);
    }
  }
}

/* TPDF at 16, 20 and 24 bits: variance 1/4 LSB^2 +-0.01 and mean 0 on
 * silence, -90 and -60 dBFS; white (autocorrelation at lags 1..9 under
 * 0.01); every sample on the grid. */
static void test_tpdf_stats(void) {
  const int n = 1 << 20;
  const double levels[] = {-INFINITY, -90, -60};
  const int bits[] = {16, 20, 24};
  for (int b = 0; b < 3; b++)
    for (int l = 0; l < 3; l++) {
      modhost h;
      MH_CHECK(make(&h, (cfg){bits[b], SH_TPDF, 0, 48000}, 1) == 0, "%s",
               h.err);
      float **x = chans(1, n), **y = chans(1, n);
      if (l)
        sine(x[0], n, levels[l], 997, 48000);
      run(&h, x, y, 1, n, 1000, 0);
      stats s = err_stats(x[0], y[0], n, bits[b]);
      MH_CHECK(fabs(s.var - 0.25) < 0.01, "%d bits %g dBFS: variance %.4f",
               bits[b], levels[l], s.var);
      MH_CHECK(fabs(s.mean) < 0.005, "%d bits %g dBFS: mean %.4f LSB", bits[b],
               levels[l], s.mean);
      MH_CHECK(s.offgrid == 0, "%d bits: %d samples off the grid", bits[b],
               s.offgrid);
      MH_CHECK(s.maxabs <= 1.5, "%d bits: error %.3f LSB > 1.5", bits[b],
               s.maxabs);
      double worst = 0;
      for (int k = 1; k <= NTAP; k++)
        worst = fmax(worst, fabs(s.ac[k]) / s.var);
      MH_CHECK(worst < 0.01, "%d bits: autocorrelation %.4f", bits[b], worst);
      if (b == 0)
        printf("  tpdf 16 bits %4g dBFS: variance %.4f LSB^2, mean %+.4f\n",
               levels[l], s.var, s.mean);
      chans_free(x, 1), chans_free(y, 1);
      mh_free(&h);
    }
}

/* Shaped: the error's autocorrelation at lags 0..9 is 0.25 sum_k E_k
 * E_{k+l} (E = [1, -c1, ..., -c9]), i.e. its spectrum is 0.25 |E|^2:
 * this checks the feedback loop itself against its filter. On a -60 dBFS
 * tone and on silence, at 44.1 and 48 kHz. */
static void test_shaped_moments(void) {
  const int n = 1 << 20;
  for (int sh = SH_LIGHT; sh < SH_COUNT; sh++)
    for (int r = 0; r < 2; r++) {
      const double fs = r ? 48000 : 44100;
      double c[NTAP], E[NTAP + 1] = {1};
      mb_dither_curve(sh, fs, c);
      for (int k = 0; k < NTAP; k++)
        E[k + 1] = -c[k];
      modhost h;
      MH_CHECK(make(&h, (cfg){16, sh, 7, fs}, 1) == 0, "%s", h.err);
      MH_CHECK(result(&h, "fallback_tpdf") == 0 &&
                   result(&h, "shape_used") == sh,
               "%s at %g: no fallback", names[sh], fs);
      float **x = chans(1, n), **y = chans(1, n);
      sine(x[0], n, r ? -60 : -200, 1000, fs);
      run(&h, x, y, 1, n, 4096, 0);
      stats s = err_stats(x[0], y[0], n, 16);
      double worst = 0, bound = 1;
      for (int k = 0; k < NTAP; k++)
        bound += fabs(c[k]);
      for (int l = 0; l <= NTAP; l++) {
        double want = 0;
        for (int k = 0; k + l <= NTAP; k++)
          want += 0.25 * E[k] * E[k + l];
        double w0 = 0;
        for (int k = 0; k <= NTAP; k++)
          w0 += 0.25 * E[k] * E[k];
        worst = fmax(worst, fabs(s.ac[l] - want) / w0);
        if (l == 0)
          MH_CHECK(fabs(s.var / want - 1) < 0.02,
                   "%s at %g: variance %.4f, theory %.4f", names[sh], fs, s.var,
                   want);
        if (l == 0 && r == 0)
          printf("  %-10s: error variance %.3f LSB^2 (theory %.3f), peak %.2f "
                 "LSB (bound %.2f)\n",
                 names[sh], s.var, want, s.maxabs, 1.5 * bound);
      }
      /* autocorrelations within 1 % of the variance */
      MH_CHECK(worst < 0.01, "%s at %g: autocorrelation off by %.3f of 0.25",
               names[sh], fs, worst);
      MH_CHECK(fabs(s.mean) < 0.01, "%s: mean %.4f", names[sh], s.mean);
      MH_CHECK(s.maxabs <= 1.5 * bound,
               "%s: error %.2f LSB beyond 1.5 sum|E| = %.2f", names[sh],
               s.maxabs, 1.5 * bound);
      MH_CHECK(s.offgrid == 0, "%s: %d off the grid", names[sh], s.offgrid);
      chans_free(x, 1), chans_free(y, 1);
      mh_free(&h);
    }
}

/* Near and beyond full scale: a -0.1 dBFS sine never reaches the largest
 * code through any curve; a +6 dBFS square and +-Inf saturate exactly at
 * 32767/32768 and -1, are counted, and the loop recovers (error back
 * within its bound right after). NaN gives dither around 0. */
static void test_full_scale(void) {
  const int n = 200000;
  for (int sh = SH_TPDF; sh < SH_COUNT; sh++) {
    modhost h;
    MH_CHECK(make(&h, (cfg){16, sh, 0, 44100}, 1) == 0, "%s", h.err);
    float **x = chans(1, n), **y = chans(1, n);
    sine(x[0], n / 2, -0.1, 1000, 44100);
    for (int i = n / 2; i < n; i++) /* random programme at -0.1 dBFS */
      x[0][i] = (float)(pow(10, -0.1 / 20) * (i % 3000 == 0 ? 1 : urand()));
    run(&h, x, y, 1, n, 1000, 0);
    float mx = 0;
    for (int i = 0; i < n; i++)
      mx = fmaxf(mx, fabsf(y[0][i]));
    MH_CHECK(mx < 32767.0f / 32768 && result(&h, "clipped") == 0,
             "%s: -0.1 dBFS reaches %.6f (%g clipped)", names[sh], mx,
             result(&h, "clipped"));
    /* square at +6 dBFS, then Inf, then NaN, then a quiet sine */
    for (int i = 0; i < n; i++) {
      const int seg = i / (n / 4);
      x[0][i] = seg == 0   ? ((i / 50) % 2 ? 2.0f : -2.0f)
                : seg == 1 ? ((i / 50) % 2 ? INFINITY : -INFINITY)
                : seg == 2 ? NAN
                           : (float)(0.001 * sin(i * 0.1));
    }
    run(&h, x, y, 1, n, 1000, n);
    int bad = 0, unclean = 0;
    for (int i = 0; i < n / 2; i++)
      bad += y[0][i] != 32767.0f / 32768 && y[0][i] != -1.0f;
    double maxq = 0;
    for (int i = n / 2; i < 3 * n / 4; i++)
      maxq = fmax(maxq, fabs(y[0][i] * 32768.0));
    for (int i = 0; i < n; i++)
      unclean +=
          !isfinite(y[0][i]) || (y[0][i] != 0 && fabsf(y[0][i]) < FLT_MIN);
    stats s = err_stats(x[0] + 3 * n / 4 + 100, y[0] + 3 * n / 4 + 100,
                        n / 4 - 100, 16);
    double c[NTAP], bound = 1;
    mb_dither_curve(sh, 44100, c);
    for (int k = 0; k < NTAP; k++)
      bound += fabs(c[k]);
    MH_CHECK(bad == 0, "%s: %d over-full-scale samples not at the limits",
             names[sh], bad);
    MH_CHECK(result(&h, "clipped") >= n / 2 - 1000, "%s: clipped %g", names[sh],
             result(&h, "clipped"));
    MH_CHECK(maxq <= 1.5 * bound + 1, "%s: NaN input gives %.1f LSB", names[sh],
             maxq);
    MH_CHECK(unclean == 0, "%s: %d NaN/Inf/subnormal outputs", names[sh],
             unclean);
    MH_CHECK(s.maxabs <= 1.5 * bound,
             "%s: after overload the error is %.2f LSB", names[sh], s.maxabs);
    chans_free(x, 1), chans_free(y, 1);
    mh_free(&h);
  }
}

/* 1e-30 input and silence: on the grid, no subnormals; 20 and 24 bits
 * saturate at their own largest code. */
static void test_grid_limits(void) {
  const int bits[] = {16, 20, 24};
  for (int b = 0; b < 3; b++) {
    modhost h;
    MH_CHECK(make(&h, (cfg){bits[b], SH_F, 0, 48000}, 2) == 0, "%s", h.err);
    const int n = 4096;
    float **x = chans(2, n), **y = chans(2, n);
    for (int i = 0; i < n; i++)
      x[0][i] = 1e-30f, x[1][i] = i < n / 2 ? 1.0f : -1.5f;
    run(&h, x, y, 2, n, 512, 0);
    const double S = ldexp(1, bits[b] - 1);
    int off = 0, sat = 0;
    for (int c = 0; c < 2; c++)
      for (int i = 0; i < n; i++) {
        double q = y[c][i] * S;
        off += q != floor(q) || (y[c][i] != 0 && fabsf(y[c][i]) < FLT_MIN);
      }
    for (int i = 0; i < n; i++)
      sat += y[1][i] > (float)((S - 1) / S) || y[1][i] < -1.0f;
    MH_CHECK(off == 0, "%d bits: %d samples off the grid", bits[b], off);
    MH_CHECK(sat == 0, "%d bits: %d samples beyond the largest code", bits[b],
             sat);
    MH_CHECK(y[1][n - 1] == -1.0f, "%d bits: -1.5 saturates at -1", bits[b]);
    chans_free(x, 2), chans_free(y, 2);
    mh_free(&h);
  }
}

/* Bit-identical for blocks of 64, 1000, 4096 and in place; also across
 * the 2^32-frame boundary where the noise key changes; seeds differ;
 * channels carry independent noise. */
static void test_blocks(void) {
  const int n = 48000, nch = 3;
  for (int sh = SH_TPDF; sh < SH_COUNT; sh++) {
    float **x = chans(nch, n), *ref[MB_MAX_CHANNELS] = {0};
    for (int c = 0; c < nch; c++)
      sine(x[c], n, -40 + 10 * c, 300 + 200 * c, 48000);
    const int blocks[] = {64, 1000, 4096, 777};
    for (int k = 0; k < 5; k++) {
      modhost h;
      make(&h, (cfg){16, sh, 0, 48000}, nch);
      float **y = chans(nch, n);
      if (k == 4) { /* in place */
        for (int c = 0; c < nch; c++)
          memcpy(y[c], x[c], sizeof(float) * n);
        run(&h, y, y, nch, n, 1000, 0);
      } else {
        run(&h, x, y, nch, n, blocks[k], 0);
      }
      if (k == 0) {
        for (int c = 0; c < nch; c++)
          ref[c] = y[c], y[c] = NULL;
      } else {
        int same = 1;
        for (int c = 0; c < nch; c++)
          same &= memcmp(ref[c], y[c], sizeof(float) * n) == 0;
        MH_CHECK(same, "%s: block %d%s differs from 64", names[sh],
                 k < 4 ? blocks[k] : 1000, k == 4 ? " in place" : "");
      }
      chans_free(y, nch);
      mh_free(&h);
    }
    /* across 2^32: one block vs blocks meeting exactly at the boundary */
    float **y1 = chans(nch, n), **y2 = chans(nch, n);
    const long long p0 = (1LL << 32) - 3000;
    modhost h;
    make(&h, (cfg){16, sh, 0, 48000}, nch);
    run(&h, x, y1, nch, n, 4096, p0);
    mh_free(&h);
    make(&h, (cfg){16, sh, 0, 48000}, nch);
    run(&h, x, y2, nch, 3000, 1000, p0);
    float *xs[MB_MAX_CHANNELS], *ys[MB_MAX_CHANNELS];
    for (int c = 0; c < nch; c++)
      xs[c] = x[c] + 3000, ys[c] = y2[c] + 3000;
    run(&h, xs, ys, nch, n - 3000, 4096, p0 + 3000);
    mh_free(&h);
    int same = 1;
    for (int c = 0; c < nch; c++)
      same &= memcmp(y1[c], y2[c], sizeof(float) * n) == 0;
    MH_CHECK(same, "%s: blocks across frame 2^32 differ", names[sh]);
    /* seed: another seed, other noise */
    make(&h, (cfg){16, sh, 1, 48000}, nch);
    run(&h, x, y2, nch, n, 4096, 0);
    mh_free(&h);
    double s01 = 0, s00 = 0, s11 = 0;
    for (int i = 0; i < n; i++) {
      const double a = ((double)ref[0][i] - x[0][i]) * 32768,
                   b = ((double)y2[0][i] - x[0][i]) * 32768;
      s01 += a * b, s00 += a * a, s11 += b * b;
    }
    MH_CHECK(fabs(s01 / sqrt(s00 * s11)) < 0.03,
             "%s: seeds 0 and 1 errors correlate %.3f", names[sh],
             s01 / sqrt(s00 * s11));
    chans_free(y1, nch), chans_free(y2, nch);
    for (int c = 0; c < nch; c++)
      free(ref[c]);
    chans_free(x, nch);
  }
  /* independent channels: correlation of the errors on silence */
  const int m = 1 << 20;
  modhost h;
  make(&h, (cfg){16, SH_TPDF, 0, 48000}, 2);
  float **x = chans(2, m), **y = chans(2, m);
  run(&h, x, y, 2, m, 4096, 0);
  double s01 = 0, s00 = 0, s11 = 0;
  for (int i = 0; i < m; i++) {
    double a = y[0][i] * 32768.0, b = y[1][i] * 32768.0;
    s01 += a * b, s00 += a * a, s11 += b * b;
  }
  const double r = s01 / sqrt(s00 * s11);
  MH_CHECK(fabs(r) < 0.005, "channel noise correlation %.4f", r);
  chans_free(x, 2), chans_free(y, 2);
  mh_free(&h);
}

static void test_errors_and_fallback(void) {
  modhost h;
  MH_CHECK(make(&h, (cfg){18, SH_TPDF, 0, 48000}, 1) != 0 &&
               strstr(h.err, "bits") && strstr(h.err, "18") &&
               strstr(h.err, "16, 20 or 24"),
           "bits 18 refused: '%s'", h.err);
  mh_free(&h);
  MH_CHECK(make(&h, (cfg){16, 9, 0, 48000}, 1) != 0 && strstr(h.err, "shape"),
           "shape 9 refused: '%s'", h.err);
  mh_free(&h);
  const double rates[] = {96000, 88200, 32000, 44100, 48000};
  for (int r = 0; r < 5; r++)
    for (int sh = SH_TPDF; sh < SH_COUNT; sh++) {
      MH_CHECK(make(&h, (cfg){16, sh, 0, rates[r]}, 2) == 0, "%s", h.err);
      const int fb = sh != SH_TPDF && r < 3;
      MH_CHECK(result(&h, "fallback_tpdf") == fb &&
                   result(&h, "shape_used") == (fb ? 0 : sh),
               "%s at %g: fallback %g, shape_used %g", names[sh], rates[r],
               result(&h, "fallback_tpdf"), result(&h, "shape_used"));
      mh_free(&h);
    }
  /* a fallback render is the TPDF render */
  const int n = 10000;
  float **x = chans(1, n), **y1 = chans(1, n), **y2 = chans(1, n);
  sine(x[0], n, -30, 1000, 96000);
  make(&h, (cfg){16, SH_F, 0, 96000}, 1);
  run(&h, x, y1, 1, n, 1000, 0);
  mh_free(&h);
  make(&h, (cfg){16, SH_TPDF, 0, 96000}, 1);
  run(&h, x, y2, 1, n, 1000, 0);
  mh_free(&h);
  MH_CHECK(memcmp(y1[0], y2[0], sizeof(float) * n) == 0,
           "96 kHz f-weighted is TPDF");
  chans_free(x, 1), chans_free(y1, 1), chans_free(y2, 1);
}

/* 300 s of 48 kHz stereo through each curve: real-time factor (printed,
 * best of 3; CPU time too, as other jobs share this machine). */
static double secs(clockid_t id) {
  struct timespec t;
  clock_gettime(id, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void speed(void) {
  const int n = 300 * 48000, blk = 4096;
  float **x = chans(2, blk), **y = chans(2, blk);
  for (int c = 0; c < 2; c++)
    for (int i = 0; i < blk; i++)
      x[c][i] = (float)(0.5 * urand());
  for (int sh = SH_TPDF; sh < SH_COUNT; sh++) {
    double wall = INFINITY, cpu = INFINITY;
    for (int rep = 0; rep < 3; rep++) {
      modhost h;
      make(&h, (cfg){16, sh, 0, 48000}, 2);
      const double w0 = secs(CLOCK_MONOTONIC),
                   c0 = secs(CLOCK_PROCESS_CPUTIME_ID);
      for (long long pos = 0; pos < n; pos += blk) {
        const float *ip[2] = {x[0], x[1]};
        float *op[2] = {y[0], y[1]};
        const float *const *ipp[MB_MAX_PORTS] = {ip};
        mh_process(&h, ipp, op, blk, pos);
      }
      wall = fmin(wall, secs(CLOCK_MONOTONIC) - w0);
      cpu = fmin(cpu, secs(CLOCK_PROCESS_CPUTIME_ID) - c0);
      mh_free(&h);
    }
    printf(
        "  speed %-10s: 300 s stereo 48 kHz in %.4f s wall = %.0fx real time "
        "(CPU %.4f s = %.0fx)\n",
        names[sh], wall, 300 / wall, cpu, 300 / cpu);
  }
  chans_free(x, 2), chans_free(y, 2);
}

int main(void) {
  test_design();
  test_tpdf_stats();
  test_shaped_moments();
  test_full_scale();
  test_grid_limits();
  test_blocks();
  test_errors_and_fallback();
  speed();
  if (mh_fails) {
    fprintf(stderr, "%d checks failed\n", mh_fails);
    return 1;
  }
  printf("all dither checks passed\n");
  return 0;
}
