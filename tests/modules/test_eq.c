/* test_eq.c - the eq module through modhost: impulse responses against
 * formulas written here independently of modules/dsp/biquad.c, corners,
 * bit-exact bypass, block-size independence under automation, the bell
 * sweep step test, and no NaN/Inf/subnormal output. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <time.h>

#include "modhost.h"

#define NB 16
static const char *const TYPES[] = {"off",     "bell",   "lowshelf",
                                    "highshelf", "highpass", "lowpass",
                                    "notch",   "bandpass", "tilt"};
enum { OFF, BELL, LSH, HSH, HP, LP, NOTCH, BP, TILT };

/* --- independent reference: cookbook magnitudes ------------------------- */

typedef struct {
  double b[3], a[3];
} coef;

/* Audio EQ Cookbook, written out as in the text (not normalised). */
static coef cookbook(int type, double fs, double f0, double g, double Q) {
  const double w0 = 2 * M_PI * f0 / fs, cw = cos(w0), sw = sin(w0);
  const double al = sw / (2 * Q), A = pow(10, g / 40), sA = sqrt(A);
  coef c;
  switch (type) {
  case BELL:
    c = (coef){{1 + al * A, -2 * cw, 1 - al * A}, {1 + al / A, -2 * cw, 1 - al / A}};
    break;
  case LSH:
    c = (coef){{A * ((A + 1) - (A - 1) * cw + 2 * sA * al),
                2 * A * ((A - 1) - (A + 1) * cw),
                A * ((A + 1) - (A - 1) * cw - 2 * sA * al)},
               {(A + 1) + (A - 1) * cw + 2 * sA * al, -2 * ((A - 1) + (A + 1) * cw),
                (A + 1) + (A - 1) * cw - 2 * sA * al}};
    break;
  case HSH:
    c = (coef){{A * ((A + 1) + (A - 1) * cw + 2 * sA * al),
                -2 * A * ((A - 1) + (A + 1) * cw),
                A * ((A + 1) + (A - 1) * cw - 2 * sA * al)},
               {(A + 1) - (A - 1) * cw + 2 * sA * al, 2 * ((A - 1) - (A + 1) * cw),
                (A + 1) - (A - 1) * cw - 2 * sA * al}};
    break;
  case HP:
    c = (coef){{(1 + cw) / 2, -(1 + cw), (1 + cw) / 2}, {1 + al, -2 * cw, 1 - al}};
    break;
  case LP:
    c = (coef){{(1 - cw) / 2, 1 - cw, (1 - cw) / 2}, {1 + al, -2 * cw, 1 - al}};
    break;
  case NOTCH: c = (coef){{1, -2 * cw, 1}, {1 + al, -2 * cw, 1 - al}}; break;
  default: /* BP, constant 0 dB peak gain */
    c = (coef){{al, 0, -al}, {1 + al, -2 * cw, 1 - al}};
    break;
  }
  return c;
}

static double coef_mag(const coef *c, double fs, double f) {
  double complex_re[2], complex_im[2];
  const double w = 2 * M_PI * f / fs;
  for (int p = 0; p < 2; p++) {
    const double *v = p ? c->a : c->b;
    complex_re[p] = v[0] + v[1] * cos(w) + v[2] * cos(2 * w);
    complex_im[p] = -v[1] * sin(w) - v[2] * sin(2 * w);
  }
  return sqrt((complex_re[0] * complex_re[0] + complex_im[0] * complex_im[0]) /
              (complex_re[1] * complex_re[1] + complex_im[1] * complex_im[1]));
}

/* Analytic |H| of a band in dB. Passes other than 12 dB/oct: Butterworth
 * through the prewarped bilinear transform, |H|^2 = 1/(1 + W^(+-2n)),
 * W = tan(w/2)/tan(w0/2). Tilt: |(a jW + 1)/(jW + a)|. */
static double band_db(int type, double fs, double f0, double g, double Q,
                      int slope, double f) {
  f0 = fmin(f0, 0.49 * fs);
  const double W = tan(M_PI * f / fs) / tan(M_PI * f0 / fs);
  if (type == TILT) {
    const double a = pow(10, g / 40);
    return 10 * log10((a * a * W * W + 1) / (W * W + a * a));
  }
  if ((type == HP || type == LP) && slope != 12) {
    const int n = slope / 6;
    const double x = pow(type == LP ? W : 1 / W, 2 * n);
    return -10 * log10(1 + x);
  }
  const coef c = cookbook(type, fs, f0, g, Q);
  return 20 * log10(coef_mag(&c, fs, f));
}

/* |DFT| of x at f, in dB. */
static double dft_db(const float *x, int n, double fs, double f) {
  double re = 0, im = 0;
  const double w = 2 * M_PI * f / fs;
  for (int i = 0; i < n; i++) {
    if (x[i] == 0) continue;
    re += x[i] * cos(w * i);
    im -= x[i] * sin(w * i);
  }
  return 10 * log10(re * re + im * im);
}

/* --- running the module --------------------------------------------------- */

typedef struct {
  int type;
  double freq, gain, q;
  int slope;
} bandspec;

static void setup(modhost *h, double rate, int maxf, const bandspec *b,
                  int nb, int nch) {
  char id[32];
  mh_init(h, "eq", rate, maxf);
  for (int i = 0; i < nb; i++) {
    snprintf(id, sizeof id, "type%d", i + 1), mh_set(h, id, b[i].type);
    snprintf(id, sizeof id, "freq%d", i + 1), mh_set(h, id, b[i].freq);
    snprintf(id, sizeof id, "gain%d", i + 1), mh_set(h, id, b[i].gain);
    snprintf(id, sizeof id, "q%d", i + 1), mh_set(h, id, b[i].q);
    snprintf(id, sizeof id, "slope%d", i + 1), mh_set(h, id, b[i].slope);
  }
  const int in_ch[1] = {nch};
  if (mh_create(h, in_ch) != 0) {
    fprintf(stderr, "create failed: %s\n", h->err);
    exit(1);
  }
}

typedef struct {
  long frame;
  const char *param;
  double value;
  int ramp;
} event;

/* Process nch x n frames (planar, in place allowed) in blocks of `block`,
 * split at events as the host does. */
static void render(modhost *h, float **in, float **out, int nch, long n,
                   int block, const event *ev, int nev) {
  (void)nch;
  long pos = 0;
  int e = 0;
  while (pos < n) {
    while (e < nev && ev[e].frame <= pos) {
      int idx = mb_module_param_index(h->m, ev[e].param);
      if (idx < 0) {
        fprintf(stderr, "no parameter %s\n", ev[e].param);
        exit(2);
      }
      h->m->set_param(h->state, idx, ev[e].value, ev[e].ramp);
      e++;
    }
    long len = n - pos < block ? n - pos : block;
    if (e < nev && ev[e].frame - pos < len) len = ev[e].frame - pos;
    const float *ip[MB_MAX_CHANNELS];
    float *op[MB_MAX_CHANNELS];
    for (int c = 0; c < h->cfg.out_channels; c++)
      ip[c] = in[c] + pos, op[c] = out[c] + pos;
    const float *const *ports[1] = {ip};
    mh_process(h, ports, op, (int)len, pos);
    pos += len;
  }
}

static float **chans(int nch, long n) {
  float **p = calloc((size_t)nch, sizeof *p);
  for (int c = 0; c < nch; c++) p[c] = calloc((size_t)n, sizeof(float));
  return p;
}

static void chans_free(float **p, int nch) {
  for (int c = 0; c < nch; c++) free(p[c]);
  free(p);
}

static uint32_t rng = 12345;
static double urand(void) { /* xorshift32, uniform in [-1, 1) */
  rng ^= rng << 13, rng ^= rng >> 17, rng ^= rng << 5;
  return rng / 2147483648.0 - 1.0;
}

/* --- tests ------------------------------------------------------------------ */

/* Every band type against its analytic magnitude at 40 log-spaced
 * frequencies 20 Hz..20 kHz (skipping points below -100 dB, under the
 * float output's rounding floor). */
static void test_magnitudes(void) {
  static const double rates[] = {44100, 48000, 96000, 192000};
  static const bandspec cases[] = {
      {BELL, 1000, 6, 1, 12},      {BELL, 100, -12, 4, 12},
      {BELL, 10000, 12, 0.5, 12},  {BELL, 30, 6, 2, 12},
      {LSH, 100, 6, 0.7071, 12},   {LSH, 1000, -9, 1.5, 12},
      {HSH, 10000, 4, 0.7071, 12}, {HSH, 3000, -10, 0.5, 12},
      {NOTCH, 1000, 0, 4, 12},     {BP, 2000, 0, 2, 12},
      {TILT, 500, 6, 1, 12},       {TILT, 3000, -8, 1, 12},
      {HP, 1000, 0, 2, 12},        {LP, 5000, 0, 0.5, 12},
      {HP, 80, 0, 0.7071, 6},      {HP, 80, 0, 0.7071, 12},
      {HP, 80, 0, 0.7071, 18},     {HP, 80, 0, 0.7071, 24},
      {HP, 80, 0, 0.7071, 30},     {HP, 80, 0, 0.7071, 36},
      {HP, 80, 0, 0.7071, 42},     {HP, 80, 0, 0.7071, 48},
      {LP, 5000, 0, 0.7071, 6},    {LP, 5000, 0, 0.7071, 12},
      {LP, 5000, 0, 0.7071, 18},   {LP, 5000, 0, 0.7071, 24},
      {LP, 5000, 0, 0.7071, 30},   {LP, 5000, 0, 0.7071, 36},
      {LP, 5000, 0, 0.7071, 42},   {LP, 5000, 0, 0.7071, 48},
  };
  const int ncase = (int)(sizeof cases / sizeof cases[0]);
  double worst_type[9] = {0}, worst_corner = 0;
  for (int r = 0; r < 4; r++) {
    const double fs = rates[r];
    const int n = fs > 50000 ? 1 << 18 : 1 << 16;
    float **x = chans(1, n), **y = chans(1, n);
    for (int k = 0; k < ncase; k++) {
      const bandspec *b = &cases[k];
      modhost h;
      setup(&h, fs, 4096, b, 1, 1);
      memset(x[0], 0, sizeof(float) * (size_t)n);
      x[0][0] = 1;
      render(&h, x, y, 1, n, 4096, NULL, 0);
      mh_free(&h);
      /* The response must have decayed: the last 1% is below -140 dB. */
      double tailmax = 0;
      for (int i = n - n / 100; i < n; i++) tailmax = fmax(tailmax, fabs(y[0][i]));
      MH_CHECK(tailmax < 1e-7, "%s %g Hz at %g: IR not decayed (%g)",
               TYPES[b->type], b->freq, fs, tailmax);
      double worst = 0, wf = 0;
      for (int j = 0; j < 40; j++) {
        const double f = 20 * pow(1000, j / 39.0);
        const double ref = band_db(b->type, fs, b->freq, b->gain, b->q, b->slope, f);
        if (ref < -100) continue;
        const double err = fabs(dft_db(y[0], n, fs, f) - ref);
        if (err > worst) worst = err, wf = f;
      }
      MH_CHECK(worst <= 0.05, "%s %g Hz slope %d at %g: %.4f dB off at %g Hz",
               TYPES[b->type], b->freq, b->slope, fs, worst, wf);
      worst_type[b->type] = fmax(worst_type[b->type], worst);
      if ((b->type == HP || b->type == LP) && (b->slope != 12 || b->q == 0.7071)) {
        const double c = dft_db(y[0], n, fs, b->freq);
        MH_CHECK(fabs(c + 3.0103) <= 0.05, "%s slope %d at %g: corner %.4f dB",
                 TYPES[b->type], b->slope, fs, c);
        worst_corner = fmax(worst_corner, fabs(c + 3.0103));
      }
    }
    chans_free(x, 1), chans_free(y, 1);
  }
  printf("magnitude: worst |error| per type, 44.1..192 kHz, 20 Hz..20 kHz:\n");
  for (int t = 1; t < 9; t++) printf("  %-10s %.2e dB\n", TYPES[t], worst_type[t]);
  printf("  corners (-3.0103 dB): worst %.2e dB\n", worst_corner);
}

/* All bands off, and a 0 dB bell, copy the input bit for bit. */
static void test_bypass(void) {
  const long n = 10000;
  for (int nch = 1; nch <= 5; nch += 2) {
    float **x = chans(nch, n), **y = chans(nch, n);
    for (int c = 0; c < nch; c++)
      for (long i = 0; i < n; i++)
        x[c][i] = (float)(i % 97 == 0 ? 1e-42 : urand()); /* with subnormals */
    for (int v = 0; v < 3; v++) {
      bandspec b[2] = {{OFF, 1000, 3, 1, 12}, {BELL, 300, 0, 1, 12}};
      if (v == 2) b[1] = (bandspec){TILT, 300, 0, 1, 12};
      modhost h;
      setup(&h, 48000, 512, b, v == 0 ? 1 : 2, nch);
      render(&h, x, y, nch, n, 512, NULL, 0);
      mh_free(&h);
      for (int c = 0; c < nch; c++)
        MH_CHECK(memcmp(x[c], y[c], sizeof(float) * (size_t)n) == 0,
                 "bypass %d not bit-exact, %d channels", v, nch);
    }
    chans_free(x, nch), chans_free(y, nch);
  }
}

/* Renders in blocks of 64, 1000, 4096 (and 1 and 17) with set_param calls
 * at fixed frames give the same samples. */
static void test_block_size(void) {
  const long n = 48000;
  const int nch = 2;
  float **x = chans(nch, n);
  for (long i = 0; i < n; i++) {
    x[0][i] = (float)(0.3 * urand() + 0.5 * sin(2 * M_PI * 220 * i / 48000.0));
    x[1][i] = (float)(0.3 * urand());
  }
  const bandspec b[4] = {{BELL, 300, -2, 1, 12},
                         {HP, 30, 0, 0.7071, 24},
                         {HSH, 10000, 2, 0.7071, 12},
                         {LSH, 100, 1.5, 0.7071, 12}};
  event ev[400];
  int nev = 0;
  ev[nev++] = (event){1000, "freq1", 5000, 4800};
  ev[nev++] = (event){1500, "q1", 8, 3000};
  ev[nev++] = (event){3001, "gain3", -12, 480};
  ev[nev++] = (event){7003, "type3", LP, 0};
  ev[nev++] = (event){9005, "slope3", 36, 0};
  ev[nev++] = (event){9500, "slope2", 12, 0};
  ev[nev++] = (event){12000, "type5", BELL, 0};
  ev[nev++] = (event){12000, "gain5", 6, 100};
  /* An automation envelope on the host's 32-frame grid. */
  for (long f = 14016; f < 30000 && nev < 390; f += 64)
    ev[nev++] = (event){f, "freq4", 100 * pow(2, (f - 14016) / 4000.0), 64};
  ev[nev++] = (event){31111, "freq1", 40, 7};
  ev[nev++] = (event){40000, "type1", OFF, 0};
  static const int blocks[] = {4096, 64, 1000, 1, 17};
  float **ref = NULL;
  for (int k = 0; k < 5; k++) {
    float **y = chans(nch, n);
    modhost h;
    setup(&h, 48000, blocks[k], b, 4, nch);
    render(&h, x, y, nch, n, blocks[k], ev, nev);
    mh_free(&h);
    if (!ref) {
      ref = y;
      continue;
    }
    double d = 0;
    for (int c = 0; c < nch; c++)
      for (long i = 0; i < n; i++) d = fmax(d, fabs((double)y[c][i] - ref[c][i]));
    MH_CHECK(d < 1e-6, "block %d differs from 4096 by %g", blocks[k], d);
    if (k == 1) printf("block size: 64 vs 4096 max difference %g\n", d);
    chans_free(y, nch);
  }
  chans_free(ref, nch);
  chans_free(x, nch);
}

/* With fixed settings the sections' arithmetic may not depend on the
 * kernel that runs it: 1 to 5 sections in stereo (3 and 4 run as one
 * eight-lane wavefront, whose first and last steps of each call touch only
 * some lanes) give the same bits for every split into blocks, and the left
 * channel the same bits as a mono EQ of it. */
static void test_kernel_bits(void) {
  const long n = 20000;
  float **x = chans(2, n);
  for (long i = 0; i < n; i++) {
    x[0][i] = (float)(0.4 * urand() + 0.4 * sin(2 * M_PI * 97 * i / 48000.0));
    x[1][i] = (float)(0.5 * urand());
  }
  const bandspec b[4] = {{HP, 30, 0, 0.7071, 12},
                         {LSH, 100, 1.5, 0.7071, 12},
                         {BELL, 300, -2, 1, 12},
                         {HSH, 10000, 2, 0.7071, 24}}; /* 2 sections */
  static const int blocks[] = {4096, 1, 2, 3, 7, 37, 1000};
  for (int nb = 1; nb <= 4; nb++) {
    float **ref = NULL, **mono = chans(1, n);
    modhost h;
    setup(&h, 48000, 4096, b, nb, 1);
    render(&h, x, mono, 1, n, 4096, NULL, 0);
    mh_free(&h);
    for (int k = 0; k < 7; k++) {
      float **y = chans(2, n);
      setup(&h, 48000, blocks[k], b, nb, 2);
      render(&h, x, y, 2, n, blocks[k], NULL, 0);
      mh_free(&h);
      long diff = 0, dmono = 0;
      for (long i = 0; i < n; i++) {
        if (ref) diff += (y[0][i] != ref[0][i]) + (y[1][i] != ref[1][i]);
        dmono += y[0][i] != mono[0][i];
      }
      MH_CHECK(diff == 0, "%d bands, blocks of %d: %ld samples differ from "
               "blocks of 4096", nb, blocks[k], diff);
      MH_CHECK(dmono == 0, "%d bands, blocks of %d: %ld left samples differ "
               "from mono", nb, blocks[k], dmono);
      if (ref) chans_free(y, 2);
      else ref = y;
    }
    chans_free(ref, 2);
    chans_free(mono, 1);
  }
  chans_free(x, 2);
}

/* "A bell swept from 20 Hz to 20 kHz in 2 s on a sine gives no NaN and no
 * sample step above -20 dBFS." Step = |y[n] - y[n-1]|. The sine is 100 Hz,
 * at -6 dBFS or lower so that the bell's peak output stays at or below
 * 0 dBFS: a clean output then moves at most 0.013 (-37.6 dBFS) per sample,
 * and anything above that is the sweep's doing. Also printed: the largest
 * second difference (a click detector: 1.3e-4 for the clean sine) and the
 * largest difference from the same bell with its coefficients recomputed
 * every sample (the test's own TDF-II, the frequency at each sample). */
static void test_sweep(void) {
  static const double rates[] = {48000, 192000};
  static const double gains[] = {12, -12, 30, -30};
  static const double qs[] = {0.7071, 4, 40};
  double worst_step = 0, worst_d2 = 0, worst_zip = 0;
  for (int r = 0; r < 2; r++)
    for (int gi = 0; gi < 4; gi++)
      for (int qi = 0; qi < 3; qi++) {
        const double fs = rates[r], g = gains[gi], Q = qs[qi];
        const double amp = fmin(0.5, pow(10, -g / 20));
        const long n = (long)(2.2 * fs), ramp = (long)(2 * fs);
        float **x = chans(1, n), **y = chans(1, n);
        for (long i = 0; i < n; i++)
          x[0][i] = (float)(amp * sin(2 * M_PI * 100 * i / fs));
        const bandspec b = {BELL, 20, g, Q, 12};
        const event ev = {(long)(0.1 * fs), "freq1", 20000, (int)ramp};
        modhost h;
        setup(&h, fs, 512, &b, 1, 1);
        render(&h, x, y, 1, n, 512, &ev, 1);
        mh_free(&h);
        double s1 = 0, s2 = 0, zip = 0, step = 0, d2 = 0;
        int finite = 1;
        for (long i = 0; i < n; i++) {
          const long e = i - ev.frame;
          const double f = e < 0 ? 20 : e >= ramp ? 20000 : 20 * pow(1000, (e + 1.0) / ramp);
          const coef c = cookbook(BELL, fs, f, g, Q);
          const double xi = x[0][i], a0 = c.a[0];
          const double yy = c.b[0] / a0 * xi + s1;
          s1 = c.b[1] / a0 * xi - c.a[1] / a0 * yy + s2;
          s2 = c.b[2] / a0 * xi - c.a[2] / a0 * yy;
          finite &= isfinite(y[0][i]) != 0;
          zip = fmax(zip, fabs(y[0][i] - yy));
          if (i > 0) step = fmax(step, fabs(y[0][i] - y[0][i - 1]));
          if (i > 1) d2 = fmax(d2, fabs(y[0][i] - 2 * y[0][i - 1] + y[0][i - 2]));
        }
        MH_CHECK(finite, "sweep %g dB Q %g at %g: non-finite output", g, Q, fs);
        MH_CHECK(20 * log10(step) < -20, "sweep %g dB Q %g at %g: step %.1f dBFS",
                 g, Q, fs, 20 * log10(step));
        if (getenv("EQ_VERBOSE"))
          printf("  sweep %+3.0f dB Q %-6g %6.0f Hz: step %.1f, d2 %.1f, "
                 "zip %.1f dBFS\n", g, Q, fs, 20 * log10(step), 20 * log10(d2),
                 20 * log10(zip));
        worst_step = fmax(worst_step, step), worst_d2 = fmax(worst_d2, d2);
        worst_zip = fmax(worst_zip, zip);
        chans_free(x, 1), chans_free(y, 1);
      }
  printf("bell sweep 20 Hz -> 20 kHz in 2 s on a 100 Hz sine (gain +-12/30 "
         "dB, Q 0.7..40, 48/192 kHz): largest step %.1f dBFS, second "
         "difference %.1f dBFS, difference from per-sample coefficients "
         "%.1f dBFS\n", 20 * log10(worst_step), 20 * log10(worst_d2),
         20 * log10(worst_zip));
}

/* No NaN, Inf or subnormal output for hostile inputs and extreme bands. */
static void test_finite(void) {
  static const double rates[] = {44100, 192000};
  const int nsig = 5;
  for (int r = 0; r < 2; r++) {
    const double fs = rates[r];
    const long n = (long)(fs * 3);
    float **x = chans(2, n), **y = chans(2, n);
    bandspec b[NB];
    for (int v = 0; v < 4; v++) {
      /* Every type, at the frequency and Q extremes. */
      for (int i = 0; i < NB; i++) {
        const int t = 1 + (i + v) % 8;
        b[i] = (bandspec){t, (i + v) % 2 ? 10 : 96000, (i % 3 - 1) * 30.0,
                          v % 2 ? 40 : 0.1, 48 - 6 * (i % 8)};
      }
      for (int sig = 0; sig < nsig; sig++) {
        for (long i = 0; i < n; i++) {
          float s = 0;
          switch (sig) {
          case 0: s = 0; break;
          case 1: s = 1e-30f; break;
          case 2: s = 1; break;
          case 3: s = (i / (long)(fs / 200)) % 2 ? 1.0f : -1.0f; break;
          case 4: s = i < 1000 ? (float)urand() : 0; break; /* then silence */
          }
          x[0][i] = s, x[1][i] = sig == 1 ? -s : s;
        }
        modhost h;
        setup(&h, fs, 1024, b, v < 2 ? NB : 3, 2);
        render(&h, x, y, 2, n, 1024, NULL, 0);
        mh_free(&h);
        long bad = 0, first = -1;
        for (int c = 0; c < 2; c++)
          for (long i = 0; i < n; i++) {
            const int k = fpclassify(y[c][i]);
            if (k == FP_NAN || k == FP_INFINITE || k == FP_SUBNORMAL) {
              if (first < 0) first = i;
              bad++;
            }
          }
        MH_CHECK(bad == 0, "rate %g set %d signal %d: %ld bad samples from %ld",
                 fs, v, sig, bad, first);
      }
    }
    chans_free(x, 2), chans_free(y, 2);
  }
}

/* Reset, no tail (files keep their length), and a structural type change
 * (reset of that band only). */
static void test_misc(void) {
  const bandspec b[2] = {{HP, 30, 0, 0.7071, 12}, {BELL, 1000, 6, 1, 12}};
  modhost h;
  setup(&h, 48000, 256, b, 2, 1);
  MH_CHECK(h.m->tail == NULL, "eq reports no tail: a render keeps the "
                              "input's length");
  float **x = chans(1, 4096), **y1 = chans(1, 4096), **y2 = chans(1, 4096);
  for (int i = 0; i < 4096; i++) x[0][i] = (float)urand();
  render(&h, x, y1, 1, 4096, 256, NULL, 0);
  h.m->reset(h.state);
  render(&h, x, y2, 1, 4096, 256, NULL, 0);
  MH_CHECK(memcmp(y1[0], y2[0], 4096 * sizeof(float)) == 0,
           "reset does not restore the initial state");
  mh_free(&h);
  chans_free(x, 1), chans_free(y1, 1), chans_free(y2, 1);
}

/* Throughput of the reference mastering EQ (shared/BENCH.md): 300 s stereo
 * at 48 kHz through HPF 30, low shelf, bell, high shelf. Printed only. */
static void bench(void) {
  const long n = 48000L * 300;
  const int blk = 4096;
  float **x = chans(2, blk), **y = chans(2, blk);
  for (int i = 0; i < blk; i++) x[0][i] = (float)urand(), x[1][i] = (float)urand();
  const bandspec b[4] = {{HP, 30, 0, 0.707, 12},
                         {LSH, 100, 1.5, 0.707, 12},
                         {BELL, 300, -2, 1, 12},
                         {HSH, 10000, 2, 0.707, 12}};
  modhost h;
  setup(&h, 48000, blk, b, 4, 2);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long pos = 0; pos < n; pos += blk) {
    const float *const *ports[1] = {(const float *const *)x};
    mh_process(&h, ports, y, blk, pos);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  const double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  printf("bench: 4-band stereo EQ, 300 s at 48 kHz: %.3f s (%.0fx real time)\n",
         s, 300 / s);
  mh_free(&h);
  chans_free(x, 2), chans_free(y, 2);
}

int main(void) {
  test_magnitudes();
  test_bypass();
  test_block_size();
  test_kernel_bits();
  test_sweep();
  test_finite();
  test_misc();
  bench();
  if (mh_fails) fprintf(stderr, "%d check(s) failed\n", mh_fails);
  return mh_fails ? 1 : 0;
}
