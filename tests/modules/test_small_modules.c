/* test_small_modules.c - tone, pan, ms_encode/ms_decode, width, blend,
 * channels, merge, meter: exactness at neutral settings, laws, levels,
 * block-size independence and clean output on hostile input. */
#include <ebur128.h>
#include <fftw3.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsp/loudness.h"
#include "modhost.h"

#define RATE 48000.0
#define MAXF 4096

/* ---- signals ---------------------------------------------------------- */

typedef struct {
  int nch, n;
  float *ch[MB_MAX_CHANNELS];
} sig;

static sig sig_new(int nch, int n) {
  sig s = {.nch = nch, .n = n};
  for (int c = 0; c < nch; c++)
    s.ch[c] = calloc((size_t)n, sizeof(float));
  return s;
}

static void sig_free(sig *s) {
  for (int c = 0; c < s->nch; c++)
    free(s->ch[c]);
  s->nch = 0;
}

static uint64_t lcg_state = 1;
static double urand(void) { /* [-1, 1) */
  lcg_state = lcg_state * 6364136223846793005u + 1442695040888963407u;
  return (double)(lcg_state >> 11) * 0x1p-52 - 1.0;
}

static sig noise(int nch, int n, double amp) {
  sig s = sig_new(nch, n);
  for (int c = 0; c < nch; c++)
    for (int i = 0; i < n; i++)
      s.ch[c][i] = (float)(amp * urand());
  return s;
}

/* ---- running a module ------------------------------------------------- */

typedef struct {
  int64_t at;
  const char *param;
  double value;
  int ramp;
} event;

/* Render `total` frames in blocks of at most `block`, split at events (as
 * the graph does). ins: one sig per input port, NULL = unconnected. */
static void run(modhost *h, sig *const *ins, sig *out, int total, int block,
                const event *ev, int nev) {
  int e = 0;
  for (int pos = 0; pos < total;) {
    while (e < nev && ev[e].at == pos) {
      int idx = mb_module_param_index(h->m, ev[e].param);
      h->m->set_param(h->state, idx, ev[e].value, ev[e].ramp);
      e++;
    }
    int n = total - pos < block ? total - pos : block;
    if (e < nev && ev[e].at - pos < n)
      n = (int)(ev[e].at - pos);
    const float *ip[MB_MAX_PORTS][MB_MAX_CHANNELS];
    const float *const *ipp[MB_MAX_PORTS] = {0};
    float *op[MB_MAX_CHANNELS];
    for (int p = 0; p < h->m->n_inputs; p++) {
      if (!ins || !ins[p])
        continue;
      for (int c = 0; c < ins[p]->nch; c++)
        ip[p][c] = ins[p]->ch[c] + pos;
      ipp[p] = ip[p];
    }
    for (int c = 0; c < out->nch; c++)
      op[c] = out->ch[c] + pos;
    mh_process(h, ipp, op, n, pos);
    pos += n;
  }
}

/* Create with the channel counts of ins. */
static int create(modhost *h, sig *const *ins) {
  int ch[MB_MAX_PORTS] = {0};
  for (int p = 0; p < h->m->n_inputs; p++)
    ch[p] = ins && ins[p] ? ins[p]->nch : 0;
  return mh_create(h, ch);
}

static double max_diff(const sig *a, const sig *b) {
  double m = 0;
  for (int c = 0; c < a->nch; c++)
    for (int i = 0; i < a->n; i++) {
      double d = fabs((double)a->ch[c][i] - b->ch[c][i]);
      if (d > m || d != d)
        m = d != d ? INFINITY : d;
    }
  return m;
}

static int bit_equal(const float *a, const float *b, int n) {
  return memcmp(a, b, sizeof(float) * (size_t)n) == 0;
}

static double db(double x) { return 20 * log10(x); }

/* NaN, Inf or subnormal anywhere? */
static int unclean(const sig *s) {
  for (int c = 0; c < s->nch; c++)
    for (int i = 0; i < s->n; i++) {
      float v = s->ch[c][i];
      if (!isfinite(v) || (v != 0 && fabsf(v) < FLT_MIN))
        return 1;
    }
  return 0;
}

static double rms(const float *x, int n) {
  double e = 0;
  for (int i = 0; i < n; i++)
    e += (double)x[i] * x[i];
  return sqrt(e / n);
}

/* Render a module the same way with blocks of 64, 1000 and 4096 frames;
 * return the largest difference from the 64-frame render. */
static double block_independence(const char *id, void (*setup)(modhost *),
                                 sig *const *ins, int total, const event *ev,
                                 int nev, int *bitexact) {
  static const int blocks[] = {64, 1000, 4096};
  sig ref = {0};
  double worst = 0;
  *bitexact = 1;
  for (int k = 0; k < 3; k++) {
    modhost h;
    mh_init(&h, id, RATE, MAXF);
    if (setup)
      setup(&h);
    if (create(&h, ins) != 0) {
      MH_CHECK(0, "%s: create failed: %s", id, h.err);
      return INFINITY;
    }
    sig out = sig_new(h.cfg.out_channels, total);
    run(&h, ins, &out, total, blocks[k], ev, nev);
    if (k == 0) {
      ref = out;
    } else {
      double d = max_diff(&ref, &out);
      if (d > worst)
        worst = d;
      for (int c = 0; c < out.nch; c++)
        if (!bit_equal(ref.ch[c], out.ch[c], total))
          *bitexact = 0;
      sig_free(&out);
    }
    mh_free(&h);
  }
  sig_free(&ref);
  return worst;
}

/* ---- tone ------------------------------------------------------------- */

static sig render_tone(const char *wave, double freq, double level, double dur,
                       int nch, int total, modhost *hout) {
  modhost h;
  mh_init(&h, "tone", RATE, MAXF);
  mh_set(&h, "wave", 0);
  const char *const *ch = h.m->params[0].choices;
  for (int k = 0; ch[k]; k++)
    if (strcmp(ch[k], wave) == 0)
      mh_set(&h, "wave", k);
  mh_set(&h, "freq", freq);
  mh_set(&h, "level", level);
  mh_set(&h, "duration", dur);
  mh_set(&h, "channels", nch);
  if (hout) { /* caller sets more and creates */
    *hout = h;
    hout->cfg.values = hout->values; /* point into the copy */
    hout->cfg.strings = hout->strings;
    return (sig){0};
  }
  MH_CHECK(create(&h, NULL) == 0, "tone create: %s", h.err);
  sig out = sig_new(nch, total);
  run(&h, NULL, &out, total, 1000, NULL, 0);
  mh_free(&h);
  return out;
}

static int wave_index(const char *w) {
  static const char *const names[] = {"sine", "sweep",   "white",
                                      "pink", "impulse", "silence"};
  for (int k = 0; k < 6; k++)
    if (strcmp(names[k], w) == 0)
      return k;
  return 0;
}

/* Power of x in octave bands from 20 Hz (Welch, Hann, 65536 points). */
static void octave_powers(const float *x, int n, double *band, int nb) {
  const int N = 65536;
  double *in = fftw_malloc(sizeof(double) * N);
  fftw_complex *out = fftw_malloc(sizeof(fftw_complex) * (N / 2 + 1));
  fftw_plan p = fftw_plan_dft_r2c_1d(N, in, out, FFTW_ESTIMATE);
  double *psd = calloc(N / 2 + 1, sizeof(double));
  for (int start = 0; start + N <= n; start += N / 2) {
    for (int i = 0; i < N; i++)
      in[i] = x[start + i] * (0.5 - 0.5 * cos(2 * M_PI * i / N));
    fftw_execute(p);
    for (int k = 0; k <= N / 2; k++)
      psd[k] += out[k][0] * out[k][0] + out[k][1] * out[k][1];
  }
  for (int b = 0; b < nb; b++) {
    double lo = 20 * pow(2, b), hi = 2 * lo, e = 0;
    for (int k = 1; k <= N / 2; k++) {
      double f = k * RATE / N;
      if (f >= lo && f < hi)
        e += psd[k];
    }
    band[b] = e;
  }
  free(psd);
  fftw_destroy_plan(p);
  fftw_free(in);
  fftw_free(out);
}

static int tone_wave;
static void tone_setup(modhost *h) {
  mh_set(h, "wave", tone_wave);
  mh_set(h, "freq", 440);
  mh_set(h, "duration", 0.8);
  mh_set(h, "fade", 50);
}

static void test_tone(void) {
  /* sine: exact against a double-precision reference */
  {
    sig s = render_tone("sine", 997, -20, 2, 2, 96000, NULL);
    double err = 0, peak = 0;
    for (int i = 0; i < s.n; i++) {
      double ref = 0.1 * sin(2 * M_PI * 997.0 * i / RATE);
      err = fmax(err, fabs(s.ch[0][i] - ref));
      peak = fmax(peak, fabs(s.ch[0][i]));
    }
    MH_CHECK(err < 1e-7, "sine error %g", err);
    MH_CHECK(fabs(db(peak) + 20) < 0.001, "sine peak %f dBFS", db(peak));
    MH_CHECK(bit_equal(s.ch[0], s.ch[1], s.n), "sine channels differ");
    double r = rms(s.ch[0], s.n);
    MH_CHECK(fabs(db(r) + 23.0103) < 0.001, "sine rms %f", db(r));
    printf("tone sine 997 Hz -20 dBFS: max error vs reference %.2e, peak "
           "%.4f dBFS, rms %.4f dBFS\n",
           err, db(peak), db(r));
    sig_free(&s);
  }
  /* long sine: phase does not drift (10 minutes at 48 kHz, last second) */
  {
    modhost h;
    render_tone("sine", 1234.5, -6, 600, 1, 0, &h);
    MH_CHECK(create(&h, NULL) == 0, "%s", h.err);
    sig out = sig_new(1, MAXF);
    double err = 0;
    const int64_t total = (int64_t)600 * 48000;
    for (int64_t pos = 0; pos < total; pos += MAXF) {
      int n = total - pos < MAXF ? (int)(total - pos) : MAXF;
      float *op[1] = {out.ch[0]};
      mh_process(&h, NULL, op, n, pos);
      if (pos >= total - 48000)
        for (int i = 0; i < n; i++) {
          long double ph = (long double)1234.5 * (pos + i) / 48000;
          ph -= floorl(ph);
          double ref = pow(10, -6 / 20.0) * sin(2 * M_PI * (double)ph);
          err = fmax(err, fabs(out.ch[0][i] - ref));
        }
    }
    MH_CHECK(err < 1e-6, "sine after 10 min: error %g", err);
    printf("tone sine after 10 minutes: error vs reference %.2e\n", err);
    sig_free(&out);
    mh_free(&h);
  }
  /* length and exact zeros after it; unbounded */
  {
    modhost h;
    render_tone("white", 1000, -20, 0.5, 2, 0, &h);
    MH_CHECK(create(&h, NULL) == 0, "%s", h.err);
    MH_CHECK(h.m->length(h.state) == 24000, "length %lld",
             (long long)h.m->length(h.state));
    sig out = sig_new(2, 30000);
    run(&h, NULL, &out, 30000, 777, NULL, 0);
    int zeros = 1, live = out.ch[0][23999] != 0 && out.ch[1][23999] != 0;
    for (int i = 24000; i < 30000; i++)
      zeros &= out.ch[0][i] == 0 && out.ch[1][i] == 0;
    MH_CHECK(zeros && live, "output must stop exactly at frame 24000");
    sig_free(&out);
    mh_free(&h);
    render_tone("sine", 1000, -20, 0, 2, 0, &h);
    MH_CHECK(create(&h, NULL) == 0, "%s", h.err);
    MH_CHECK(h.m->length(h.state) == -1, "duration 0 must be unbounded");
    mh_free(&h);
    render_tone("sweep", 1000, -20, 0, 2, 0, &h);
    MH_CHECK(create(&h, NULL) != 0, "an endless sweep must be refused");
    mh_free(&h);
    render_tone("sine", 30000, -20, 1, 2, 0, &h);
    MH_CHECK(create(&h, NULL) != 0 && strstr(h.err, "Nyquist"),
             "30 kHz at 48 kHz must be refused: %s", h.err);
    mh_free(&h);
  }
  /* white noise: RMS, bounds, mean, decorrelated channels */
  {
    sig s = render_tone("white", 1000, -20, 10, 2, 480000, NULL);
    double r0 = rms(s.ch[0], s.n), r1 = rms(s.ch[1], s.n), peak = 0;
    double mean = 0, cross = 0;
    for (int i = 0; i < s.n; i++) {
      peak = fmax(peak, fabs(s.ch[0][i]));
      mean += s.ch[0][i];
      cross += (double)s.ch[0][i] * s.ch[1][i];
    }
    mean /= s.n;
    double corr = cross / s.n / (r0 * r1);
    MH_CHECK(fabs(db(r0) + 20) < 0.05 && fabs(db(r1) + 20) < 0.05,
             "white rms %f %f dBFS", db(r0), db(r1));
    MH_CHECK(peak <= 0.1 * sqrt(3) * (1 + 1e-6), "white peak %f", peak);
    MH_CHECK(fabs(corr) < 0.01, "white channels correlated: %f", corr);
    MH_CHECK(fabs(mean) < 1e-3, "white mean %g", mean);
    printf("tone white -20 dBFS: rms %.3f/%.3f dBFS, peak %.2f dBFS, "
           "L/R correlation %.4f\n",
           db(r0), db(r1), db(peak), corr);
    sig_free(&s);
  }
  /* pink noise: RMS and equal power per octave, 20 Hz .. 20 kHz */
  {
    const int n = 48000 * 60;
    sig s = render_tone("pink", 1000, -20, 60, 2, n, NULL);
    double r0 = rms(s.ch[0], n), r1 = rms(s.ch[1], n);
    MH_CHECK(fabs(db(r0) + 20) < 0.3 && fabs(db(r1) + 20) < 0.3,
             "pink rms %f %f dBFS", db(r0), db(r1));
    double band[10], lo = 1e9, hi = -1e9;
    octave_powers(s.ch[0], n, band, 10);
    for (int b = 0; b < 10; b++) {
      double d = 10 * log10(band[b] / band[4]);
      if (getenv("MB_VERBOSE"))
        printf("  octave from %5.0f Hz: %+.3f dB\n", 20 * pow(2, b), d);
      lo = fmin(lo, d), hi = fmax(hi, d);
    }
    MH_CHECK(lo > -0.3 && hi < 0.3, "pink octaves %.2f..%.2f dB", lo, hi);
    double cross = 0;
    for (int i = 0; i < n; i++)
      cross += (double)s.ch[0][i] * s.ch[1][i];
    double corr = cross / n / (r0 * r1);
    MH_CHECK(fabs(corr) < 0.03, "pink channels correlated: %f", corr);
    printf("tone pink -20 dBFS: rms %.3f/%.3f dBFS, octave powers 20 Hz.."
           "20 kHz within %+.2f..%+.2f dB, L/R correlation %.4f\n",
           db(r0), db(r1), lo, hi, corr);
    if (getenv("MB_PINK_DUMP")) { /* for an independent check with numpy */
      FILE *f = fopen(getenv("MB_PINK_DUMP"), "wb");
      if (f) {
        fwrite(s.ch[0], sizeof(float), (size_t)n, f);
        fclose(f);
      }
    }
    sig_free(&s);
  }
  /* sweep: closed-form exponential sweep, end frequencies */
  {
    modhost h;
    render_tone("sweep", 20, -3, 5, 1, 0, &h);
    mh_set(&h, "freq_end", 20000);
    MH_CHECK(create(&h, NULL) == 0, "%s", h.err);
    const int n = 5 * 48000;
    sig s = sig_new(1, n);
    run(&h, NULL, &s, n, 1000, NULL, 0);
    double err = 0, a = pow(10, -3 / 20.0), L = log(1000.0);
    for (int i = 0; i < n; i++) {
      double ph = 20.0 * 5 / L * expm1(L * i / n);
      err = fmax(err, fabs(s.ch[0][i] - a * sin(2 * M_PI * (ph - floor(ph)))));
    }
    /* instantaneous frequency from zero crossings near the end */
    int last = -1, first = -1, count = 0;
    for (int i = n - 4800; i < n; i++)
      if (s.ch[0][i - 1] < 0 && s.ch[0][i] >= 0) {
        if (first < 0)
          first = i;
        last = i, count++;
      }
    double fend = (count - 1) * RATE / (last - first);
    double fexp = 20 * pow(1000, (n - 2400.0) / n); /* mid-window */
    MH_CHECK(err < 1e-6, "sweep error %g", err);
    MH_CHECK(fabs(fend / fexp - 1) < 0.01, "sweep end %f Hz, want %f", fend,
             fexp);
    printf("tone sweep 20 Hz..20 kHz 5 s: error vs closed form %.2e, "
           "frequency over the last 100 ms %.0f Hz (expected %.0f)\n",
           err, fend, fexp);
    sig_free(&s);
    mh_free(&h);
  }
  /* impulse and fades */
  {
    sig s = render_tone("impulse", 1000, -6, 1, 2, 48000, NULL);
    int ok =
        s.ch[0][0] == (float)pow(10, -6 / 20.0) && s.ch[1][0] == s.ch[0][0];
    for (int i = 1; i < s.n; i++)
      ok &= s.ch[0][i] == 0 && s.ch[1][i] == 0;
    MH_CHECK(ok, "impulse must be one sample at level on frame 0");
    sig_free(&s);
    modhost h;
    render_tone("sine", 1000, 0, 1, 1, 0, &h);
    mh_set(&h, "fade", 100);
    MH_CHECK(create(&h, NULL) == 0, "%s", h.err);
    s = sig_new(1, 48000);
    run(&h, NULL, &s, 48000, 512, NULL, 0);
    /* 2.5 ms into the fade (frame 130): sin^2(pi/2 * 130/4800) */
    double g = pow(sin(0.5 * M_PI * 130 / 4800.0), 2);
    double want = g * sin(2 * M_PI * 1000 * 130 / RATE);
    MH_CHECK(s.ch[0][0] == 0 && s.ch[0][47999] == 0 &&
                 fabs(s.ch[0][130] - want) < 1e-7 && fabs(want) > 1e-3,
             "fade: first %g last %g frame130 %g want %g", s.ch[0][0],
             s.ch[0][47999], s.ch[0][130], want);
    sig_free(&s);
    mh_free(&h);
    s = render_tone("silence", 1000, 0, 1, 3, 48000, NULL);
    ok = 1;
    for (int c = 0; c < 3; c++)
      for (int i = 0; i < s.n; i++)
        ok &= s.ch[c][i] == 0;
    MH_CHECK(ok, "silence must be zeros");
    sig_free(&s);
  }
  /* block-size independence with level and frequency ramps */
  static const char *const waves[] = {"sine", "sweep", "white", "pink",
                                      "impulse"};
  for (int w = 0; w < 5; w++) {
    const event ev[] = {{5000, "level", -3, 3000},
                        {6000, "freq", 3000, 2000},
                        {20001, "level", -40, 777}};
    int exact;
    tone_wave = wave_index(waves[w]);
    double d =
        block_independence("tone", tone_setup, NULL, 40000, ev, 3, &exact);
    MH_CHECK(d <= 1e-6, "tone %s depends on block size: %g", waves[w], d);
    printf("tone %s blocks 64/1000/4096 with ramps: max difference %.1e%s\n",
           waves[w], d, exact ? " (bit-identical)" : "");
  }
}

/* ---- pan -------------------------------------------------------------- */

static int pan_law;
static void pan_setup(modhost *h) { mh_set(h, "law", pan_law); }

/* Gains of a one-frame render of a constant 1 input at position p. */
static void pan_gains(int nin, int law, double p, double *l, double *r) {
  modhost h;
  mh_init(&h, "pan", RATE, MAXF);
  mh_set(&h, "law", law);
  mh_set(&h, "pan", p);
  sig in = sig_new(nin, 1), out = sig_new(2, 1);
  for (int c = 0; c < nin; c++)
    in.ch[c][0] = 1;
  sig *ins[] = {&in};
  MH_CHECK(create(&h, ins) == 0, "pan create: %s", h.err);
  run(&h, ins, &out, 1, 1, NULL, 0);
  *l = out.ch[0][0], *r = out.ch[1][0];
  sig_free(&in), sig_free(&out);
  mh_free(&h);
}

static void test_pan(void) {
  static const char *const laws[] = {"0", "-3", "-4.5", "-6"};
  const double centre[] = {1.0, sqrt(0.5), sqrt(sqrt(0.5) * 0.5), 0.5};
  sig st = noise(2, 20000, 1.0);
  sig *ins[] = {&st};
  for (int law = 0; law < 4; law++) {
    /* stereo at centre: bit-exact under every law */
    modhost h;
    mh_init(&h, "pan", RATE, MAXF);
    mh_set(&h, "law", law);
    MH_CHECK(create(&h, ins) == 0, "%s", h.err);
    sig out = sig_new(2, st.n);
    run(&h, ins, &out, st.n, 1000, NULL, 0);
    MH_CHECK(bit_equal(out.ch[0], st.ch[0], st.n) &&
                 bit_equal(out.ch[1], st.ch[1], st.n),
             "stereo pan at centre, law %s, is not bit-exact", laws[law]);
    sig_free(&out);
    mh_free(&h);
    /* mono: centre per law, extremes exact */
    double l, r, l1, r1, l2, r2;
    pan_gains(1, law, 0, &l, &r);
    pan_gains(1, law, -1, &l1, &r1);
    pan_gains(1, law, 1, &l2, &r2);
    MH_CHECK(fabs(l - centre[law]) < 1e-7 && l == r,
             "law %s centre %f %f, want %f", laws[law], l, r, centre[law]);
    MH_CHECK(l1 == 1 && r1 == 0 && l2 == 0 && r2 == 1,
             "law %s extremes: %g %g / %g %g", laws[law], l1, r1, l2, r2);
    printf("pan law %-4s mono: centre %.3f dB each side, hard left L=%g "
           "R=%g, hard right L=%g R=%g; stereo centre bit-exact\n",
           laws[law], db(l), l1, r1, l2, r2);
  }
  /* stereo balance: the far side follows the law over its centre value */
  {
    double l, r;
    pan_gains(2, 1, 0.5, &l, &r);
    double want = sqrt(2) * sin(0.5 * M_PI * 0.25);
    MH_CHECK(fabs(l - want) < 1e-7 && r == 1, "balance -3 at 0.5: %f %f", l, r);
    pan_gains(2, 3, -0.5, &l, &r);
    MH_CHECK(l == 1 && fabs(r - 0.5) < 1e-7, "balance -6 at -0.5: %f %f", l, r);
    pan_gains(2, 0, 1, &l, &r);
    MH_CHECK(l == 0 && r == 1, "balance 0 at 1: %f %f", l, r);
  }
  /* channel count errors */
  {
    modhost h;
    mh_init(&h, "pan", RATE, MAXF);
    int ch[] = {3};
    MH_CHECK(mh_create(&h, ch) != 0 &&
                 strcmp(h.err, "pan takes mono or stereo, got 3 channels") == 0,
             "error: %s", h.err);
    mh_free(&h);
  }
  /* a slow ramp follows the law: centre of a -1 -> 1 sweep is -3.01 dB */
  {
    modhost h;
    mh_init(&h, "pan", RATE, MAXF);
    mh_set(&h, "pan", -1);
    sig in = sig_new(1, 48000), out = sig_new(2, 48000);
    for (int i = 0; i < in.n; i++)
      in.ch[0][i] = 1;
    sig *mi[] = {&in};
    MH_CHECK(create(&h, mi) == 0, "%s", h.err);
    const event ev[] = {{0, "pan", 1, 48000}};
    run(&h, mi, &out, 48000, 512, ev, 1);
    double worst = 0; /* against the law, at every frame */
    for (int i = 0; i < 48000; i++) {
      double p = -1 + 2.0 * (i + 1) / 48000;
      double wl = sin(0.25 * M_PI * (1 - p)), wr = sin(0.25 * M_PI * (1 + p));
      worst =
          fmax(worst, fmax(fabs(out.ch[0][i] - wl), fabs(out.ch[1][i] - wr)));
    }
    MH_CHECK(fabs(db(out.ch[0][23999]) + 3.0103) < 0.001 &&
                 out.ch[0][47999] == 0 && out.ch[1][47999] == 1,
             "ramp: mid %f dB, end %g %g", db(out.ch[0][23999]),
             out.ch[0][47999], out.ch[1][47999]);
    MH_CHECK(worst < 1e-4, "ramp leaves the law by %g", worst);
    printf("pan -1 -> 1 over 1 s (-3 law): centre %.4f dB, largest "
           "departure from the law %.1e, ends exactly at L=0 R=1\n",
           db(out.ch[0][23999]), worst);
    sig_free(&in), sig_free(&out);
    mh_free(&h);
  }
  /* block independence: mono and stereo, ramps in the middle */
  sig mono = noise(1, 30000, 0.5);
  for (int k = 0; k < 2; k++) {
    sig *bi[] = {k ? &st : &mono};
    const event ev[] = {{5000, "pan", -0.7, 3000},
                        {9000, "law", 2, 100},
                        {12345, "pan", 1, 1},
                        {14000, "pan", 0.2, 5000}};
    int exact;
    pan_law = 1;
    double d = block_independence("pan", pan_setup, bi, 19000, ev, 4, &exact);
    MH_CHECK(d <= 1e-6, "pan depends on block size: %g", d);
    printf("pan %s blocks 64/1000/4096 with ramps: max difference %.1e%s\n",
           k ? "stereo" : "mono", d, exact ? " (bit-identical)" : "");
  }
  sig_free(&mono);
  sig_free(&st);
}

/* ---- ms_encode / ms_decode -------------------------------------------- */

static void test_ms(void) {
  sig in = noise(2, 480000, 1.0);  /* full-scale uniform noise, 10 s */
  for (int i = 0; i < 1000; i++) { /* and full-scale extremes */
    in.ch[0][i] = i & 1 ? 1.0f : -1.0f;
    in.ch[1][i] = i & 2 ? 1.0f : -1.0f;
  }
  sig mid = sig_new(2, in.n), back = sig_new(2, in.n);
  modhost e, d;
  mh_init(&e, "ms_encode", RATE, MAXF);
  mh_init(&d, "ms_decode", RATE, MAXF);
  sig *ins[] = {&in}, *mids[] = {&mid};
  MH_CHECK(create(&e, ins) == 0 && create(&d, mids) == 0, "ms create");
  run(&e, ins, &mid, in.n, 4096, NULL, 0);
  run(&d, mids, &back, in.n, 4096, NULL, 0);
  double err = max_diff(&in, &back);
  MH_CHECK(db(err) <= -135, "M/S null %f dBFS", db(err));
  /* a centred (mono) signal has exactly no side */
  int noside = 1;
  for (int i = 0; i < 1000; i++) {
    float l = in.ch[0][i + 5000];
    float lr[2] = {l, l}, ms[2];
    const float *ip[] = {&lr[0], &lr[1]};
    float *op[] = {&ms[0], &ms[1]};
    const float *const *ipp[] = {ip};
    mh_process(&e, ipp, op, 1, 0);
    noside &= ms[1] == 0 && ms[0] == l;
  }
  MH_CHECK(noside, "mono input must give M = L, S = 0");
  printf("ms_encode -> ms_decode on full-scale noise: null %.1f dBFS "
         "(peak difference %.2e)\n",
         db(err), err);
  mh_free(&e), mh_free(&d);
  modhost h;
  mh_init(&h, "ms_encode", RATE, MAXF);
  int one[] = {1};
  MH_CHECK(mh_create(&h, one) != 0 && strstr(h.err, "stereo"), "mono: %s",
           h.err);
  mh_free(&h);
  sig_free(&in), sig_free(&mid), sig_free(&back);
}

/* ---- width ------------------------------------------------------------ */

static double width_mono_below;
static void width_setup(modhost *h) {
  mh_set(h, "mono_below", width_mono_below);
}

static sig width_render(sig *in, double width, double mono_below) {
  modhost h;
  mh_init(&h, "width", RATE, MAXF);
  mh_set(&h, "width", width);
  mh_set(&h, "mono_below", mono_below);
  sig *ins[] = {in};
  MH_CHECK(create(&h, ins) == 0, "width create: %s", h.err);
  sig out = sig_new(2, in->n);
  run(&h, ins, &out, in->n, 1000, NULL, 0);
  mh_free(&h);
  return out;
}

static void test_width(void) {
  sig in = noise(2, 48000, 1.0);
  sig o1 = width_render(&in, 1, 0);
  MH_CHECK(bit_equal(o1.ch[0], in.ch[0], in.n) &&
               bit_equal(o1.ch[1], in.ch[1], in.n),
           "width 1 is not bit-exact");
  sig o0 = width_render(&in, 0, 0);
  int mono = bit_equal(o0.ch[0], o0.ch[1], in.n);
  double merr = 0;
  for (int i = 0; i < in.n; i++)
    merr = fmax(merr,
                fabs(o0.ch[0][i] - 0.5 * ((double)in.ch[0][i] + in.ch[1][i])));
  MH_CHECK(mono && merr < 6e-8, "width 0: L == R %d, M error %g", mono, merr);
  sig o2 = width_render(&in, 2, 0);
  double e2 = 0;
  for (int i = 0; i < in.n; i++)
    e2 = fmax(e2, fabs(o2.ch[0][i] - (1.5 * in.ch[0][i] - 0.5 * in.ch[1][i])));
  MH_CHECK(e2 < 2e-7, "width 2 error %g", e2);
  printf("width: 1 bit-exact, 0 gives L == R exactly (M error %.1e), 2 "
         "error %.1e\n",
         merr, e2);
  sig_free(&o1), sig_free(&o0), sig_free(&o2);
  /* mono_below 100 Hz: side response of the LR4 high-pass */
  const double fs[] = {30, 100, 1000};
  const double want[] = {20 * log10(pow(0.3, 4) / (1 + pow(0.3, 4))), -6.0206,
                         20 * log10(1e4 / (1 + 1e4))};
  for (int k = 0; k < 3; k++) {
    sig side = sig_new(2, 96000);
    for (int i = 0; i < side.n; i++) {
      float v = (float)(0.5 * sin(2 * M_PI * fs[k] * i / RATE));
      side.ch[0][i] = v, side.ch[1][i] = -v;
    }
    sig o = width_render(&side, 1, 100);
    double g = rms(o.ch[0] + 48000, 48000) / rms(side.ch[0] + 48000, 48000);
    int anti = 1;
    for (int i = 0; i < o.n; i++)
      anti &= o.ch[0][i] == -o.ch[1][i];
    MH_CHECK(fabs(db(g) - want[k]) < 0.05 && anti,
             "mono_below 100: side at %g Hz %f dB, want %f", fs[k], db(g),
             want[k]);
    printf("width mono_below 100 Hz: side at %4g Hz %+.2f dB (LR4 %+.2f)\n",
           fs[k], db(g), want[k]);
    sig_free(&side), sig_free(&o);
  }
  /* mid untouched by mono_below */
  sig midonly = noise(1, 48000, 0.5);
  sig mo = sig_new(2, 48000);
  memcpy(mo.ch[0], midonly.ch[0], sizeof(float) * 48000);
  memcpy(mo.ch[1], midonly.ch[0], sizeof(float) * 48000);
  sig mw = width_render(&mo, 1, 200);
  MH_CHECK(bit_equal(mw.ch[0], mo.ch[0], 48000), "mono_below touched mid");
  sig_free(&midonly), sig_free(&mo), sig_free(&mw);
  /* channel errors */
  modhost h;
  mh_init(&h, "width", RATE, MAXF);
  int one[] = {1};
  MH_CHECK(mh_create(&h, one) != 0 && strstr(h.err, "stereo"), "%s", h.err);
  mh_free(&h);
  /* block independence */
  for (int k = 0; k < 2; k++) {
    sig *bi[] = {&in};
    const event ev[] = {{5000, "width", 0, 3000},
                        {12000, "width", 1.7, 10},
                        {20000, "width", 1, 4000}};
    int exact;
    width_mono_below = k ? 150 : 0;
    double d =
        block_independence("width", width_setup, bi, 30000, ev, 3, &exact);
    MH_CHECK(d <= 1e-6, "width depends on block size: %g", d);
    printf("width%s blocks 64/1000/4096 with ramps: max difference %.1e%s\n",
           k ? " mono_below 150" : "", d, exact ? " (bit-identical)" : "");
  }
  sig_free(&in);
}

/* ---- blend ------------------------------------------------------------ */

static double blend_mix;
static void blend_setup(modhost *h) { mh_set(h, "mix", blend_mix); }

static sig blend_render(sig *dry, sig *wet, double mix, modhost *keep) {
  modhost h;
  mh_init(&h, "blend", RATE, MAXF);
  mh_set(&h, "mix", mix);
  sig *ins[] = {dry, wet};
  MH_CHECK(create(&h, ins) == 0, "blend create: %s", h.err);
  sig out = sig_new(h.cfg.out_channels, dry ? dry->n : wet->n);
  run(&h, ins, &out, out.n, 1000, NULL, 0);
  if (keep)
    *keep = h;
  else
    mh_free(&h);
  return out;
}

static void test_blend(void) {
  sig dry = noise(2, 30000, 1.0), wet = noise(2, 30000, 1.0);
  sig o = blend_render(&dry, &wet, 0, NULL);
  double nul = max_diff(&o, &dry);
  MH_CHECK(bit_equal(o.ch[0], dry.ch[0], dry.n) &&
               bit_equal(o.ch[1], dry.ch[1], dry.n),
           "mix 0 is not bit-exact dry");
  sig_free(&o);
  o = blend_render(&dry, &wet, 1, NULL);
  MH_CHECK(bit_equal(o.ch[0], wet.ch[0], dry.n), "mix 1 is not wet");
  sig_free(&o);
  o = blend_render(&dry, &wet, 0.25, NULL);
  double e = 0;
  for (int c = 0; c < 2; c++)
    for (int i = 0; i < dry.n; i++)
      e = fmax(e,
               fabs(o.ch[c][i] - (0.75 * dry.ch[c][i] + 0.25 * wet.ch[c][i])));
  MH_CHECK(e < 1.2e-7, "mix 0.25 error %g", e);
  sig_free(&o);
  printf("blend: mix 0 nulls against dry (%s), mix 1 is wet, mix 0.25 "
         "error %.1e\n",
         nul == 0 ? "-inf dBFS, bit-exact" : "NOT exact", e);
  /* unconnected inputs are silence; mono broadcast */
  o = blend_render(NULL, &wet, 0.5, NULL);
  e = 0;
  for (int i = 0; i < wet.n; i++)
    e = fmax(e, fabs(o.ch[1][i] - 0.5 * wet.ch[1][i]));
  MH_CHECK(o.nch == 2 && e < 1e-7, "no dry: error %g", e);
  sig_free(&o);
  o = blend_render(&dry, NULL, 0, NULL);
  MH_CHECK(bit_equal(o.ch[0], dry.ch[0], dry.n), "no wet, mix 0: not dry");
  sig_free(&o);
  sig m = noise(1, 30000, 1.0);
  o = blend_render(&m, &wet, 0.5, NULL);
  e = 0;
  for (int c = 0; c < 2; c++)
    for (int i = 0; i < m.n; i++)
      e = fmax(e, fabs(o.ch[c][i] - 0.5 * (m.ch[0][i] + (double)wet.ch[c][i])));
  MH_CHECK(o.nch == 2 && e < 1e-7, "mono dry broadcast: error %g", e);
  sig_free(&o);
  modhost h;
  mh_init(&h, "blend", RATE, MAXF);
  int bad[] = {2, 3};
  MH_CHECK(mh_create(&h, bad) != 0 && strstr(h.err, "must match"), "%s", h.err);
  mh_free(&h);
  /* block independence */
  sig *bi[] = {&dry, &wet};
  const event ev[] = {
      {5000, "mix", 1, 3000}, {9000, "mix", 0, 10}, {12000, "mix", 0.3, 5000}};
  int exact;
  blend_mix = 0;
  double d = block_independence("blend", blend_setup, bi, 30000, ev, 3, &exact);
  MH_CHECK(d <= 1e-6, "blend depends on block size: %g", d);
  printf("blend blocks 64/1000/4096 with ramps: max difference %.1e%s\n", d,
         exact ? " (bit-identical)" : "");
  sig_free(&m), sig_free(&dry), sig_free(&wet);
}

/* ---- channels, merge -------------------------------------------------- */

static void test_routing(void) {
  sig in = noise(4, 5000, 1.0);
  modhost h;
  mh_init(&h, "channels", RATE, MAXF);
  mh_set(&h, "first", 2);
  mh_set(&h, "count", 2);
  sig *ins[] = {&in};
  MH_CHECK(create(&h, ins) == 0 && h.cfg.out_channels == 2, "%s", h.err);
  sig o = sig_new(2, in.n);
  run(&h, ins, &o, in.n, 999, NULL, 0);
  MH_CHECK(bit_equal(o.ch[0], in.ch[1], in.n) &&
               bit_equal(o.ch[1], in.ch[2], in.n),
           "channels 2..3 wrong");
  sig_free(&o);
  mh_free(&h);
  mh_init(&h, "channels", RATE, MAXF);
  mh_set(&h, "first", 3);
  int two[] = {2};
  MH_CHECK(mh_create(&h, two) != 0 &&
               strcmp(h.err, "first 3 + count 1 exceeds the "
                             "input's 2 channels") == 0,
           "error: %s", h.err);
  mh_free(&h);
  /* merge in (2 ch) + in3 (1 ch), in2 unconnected */
  mh_init(&h, "merge", RATE, MAXF);
  sig a = noise(2, 5000, 1.0), b = noise(1, 5000, 1.0);
  sig *mins[8] = {&a, NULL, &b};
  MH_CHECK(create(&h, mins) == 0 && h.cfg.out_channels == 3, "%s", h.err);
  o = sig_new(3, 5000);
  run(&h, mins, &o, 5000, 1024, NULL, 0);
  MH_CHECK(bit_equal(o.ch[0], a.ch[0], 5000) &&
               bit_equal(o.ch[1], a.ch[1], 5000) &&
               bit_equal(o.ch[2], b.ch[0], 5000),
           "merge order wrong");
  sig_free(&o);
  mh_free(&h);
  mh_init(&h, "merge", RATE, MAXF);
  int many[8] = {16, 16, 1};
  MH_CHECK(mh_create(&h, many) != 0 && strstr(h.err, "32"), "%s", h.err);
  mh_free(&h);
  printf("channels/merge: picks and joins bit-exact, range errors named\n");
  sig_free(&a), sig_free(&b), sig_free(&in);
}

/* ---- meter ------------------------------------------------------------ */

typedef struct {
  double v[8];
} meter_res;

static const char *const res_names[8] = {"integrated",    "lra",
                                         "true_peak",     "sample_peak",
                                         "momentary_max", "short_term_max",
                                         "correlation",   "frames"};

static meter_res meter_results(modhost *h) {
  const char *names[16];
  double vals[16];
  meter_res r;
  int n = h->m->results(h->state, names, vals, 16);
  MH_CHECK(n == 8, "meter gives %d results", n);
  for (int k = 0; k < 8 && k < n; k++) {
    MH_CHECK(strcmp(names[k], res_names[k]) == 0, "result %d is %s", k,
             names[k]);
    r.v[k] = vals[k];
  }
  return r;
}

/* The same measurements from the loudness kernel the meter wraps
 * (modules/dsp/loudness.h, checked against BS.1770-4, EBU Tech 3341/3342
 * and libebur128 in tests/modules/test_loudness.c), fed the signal part
 * only: the meter must give exactly these. */
static meter_res reference(const sig *s, int from, int n) {
  meter_res r;
  mb_loudness *l = NULL;
  char err[256];
  if (mb_loudness_create(&l, RATE, s->nch, n, MB_LOUDNESS_TRUE_PEAK, err,
                         sizeof err) != MB_OK) {
    MH_CHECK(0, "loudness kernel: %s", err);
    memset(&r, 0, sizeof r);
    return r;
  }
  const float *ch[MB_MAX_CHANNELS];
  for (int c = 0; c < s->nch; c++) ch[c] = s->ch[c] + from;
  mb_loudness_feed(l, ch, 0, n);
  mb_loudness_result k;
  mb_loudness_get(l, &k);
  mb_loudness_destroy(&l);
  r.v[0] = k.integrated, r.v[1] = k.lra, r.v[2] = k.true_peak;
  r.v[3] = k.sample_peak, r.v[4] = k.momentary_max, r.v[5] = k.short_term_max;
  /* Pearson in long double, two passes */
  if (s->nch >= 2) {
    long double m1 = 0, m2 = 0, a = 0, b = 0, ab = 0;
    for (int i = 0; i < n; i++)
      m1 += s->ch[0][from + i], m2 += s->ch[1][from + i];
    m1 /= n, m2 /= n;
    for (int i = 0; i < n; i++) {
      long double x = s->ch[0][from + i] - m1, y = s->ch[1][from + i] - m2;
      a += x * x, b += y * y, ab += x * y;
    }
    r.v[6] = (double)(ab / sqrtl(a * b));
  } else {
    r.v[6] = 1;
  }
  r.v[7] = n;
  return r;
}

/* libebur128 (non-histogram mode) on the signal part, every 100 ms:
 * integrated, sample peak, momentary and short-term maxima. */
static void ebur128_ref(const sig *s, int from, int n, double *v) {
  ebur128_state *eb = ebur128_init((unsigned)s->nch, 48000,
                                   EBUR128_MODE_I | EBUR128_MODE_S |
                                       EBUR128_MODE_SAMPLE_PEAK);
  float *buf = malloc(sizeof(float) * 4800 * s->nch);
  double mm = -HUGE_VAL, sm = -HUGE_VAL, sp = 0, x;
  for (int i = 0; i < n; i += 4800) {
    int k = n - i < 4800 ? n - i : 4800;
    for (int j = 0; j < k; j++)
      for (int c = 0; c < s->nch; c++)
        buf[j * s->nch + c] = s->ch[c][from + i + j];
    ebur128_add_frames_float(eb, buf, (size_t)k);
    if (k == 4800) {
      ebur128_loudness_momentary(eb, &x);
      mm = fmax(mm, x);
      ebur128_loudness_shortterm(eb, &x);
      sm = fmax(sm, x);
    }
  }
  ebur128_loudness_global(eb, &v[0]);
  for (int c = 0; c < s->nch; c++) {
    ebur128_sample_peak(eb, (unsigned)c, &x);
    sp = fmax(sp, x);
  }
  v[1] = db(sp), v[2] = mm, v[3] = sm;
  free(buf);
  ebur128_destroy(&eb);
}

static int meter_match(const meter_res *a, const meter_res *b, double tol,
                       int print) {
  int ok = 1;
  for (int k = 0; k < 8; k++) {
    double d = fabs(a->v[k] - b->v[k]);
    int same = a->v[k] == b->v[k] || d <= tol;
    if (!same)
      ok = 0;
    if (print || !same)
      printf("  %-15s %12.6f  reference %12.6f%s\n", res_names[k], a->v[k],
             b->v[k], same ? "" : "  MISMATCH");
  }
  return ok;
}

/* A programme-like test signal: noise bursts at changing levels with a
 * partly correlated second channel. */
static sig programme(int n) {
  sig s = sig_new(2, n);
  double lvl = 0.3;
  for (int i = 0; i < n; i++) {
    if (i % 24000 == 0)
      lvl = 0.05 + 0.45 * (0.5 + 0.5 * urand());
    double a = urand(), b = urand();
    s.ch[0][i] = (float)(lvl * a);
    s.ch[1][i] = (float)(lvl * (0.6 * a + 0.4 * b));
  }
  return s;
}

static void test_meter(void) {
  const int n = 48000 * 12;
  sig s = programme(n);
  /* 1000 frames of latency padding (loud, must be ignored), signal, then
   * 3000 frames of tail beyond `length` (must be ignored too) */
  const int pad = 1000, tail = 3000;
  sig fed = sig_new(2, pad + n + tail);
  for (int c = 0; c < 2; c++) {
    for (int i = 0; i < pad; i++)
      fed.ch[c][i] = 0.99f;
    memcpy(fed.ch[c] + pad, s.ch[c], sizeof(float) * n);
    for (int i = 0; i < tail; i++)
      fed.ch[c][pad + n + i] = -0.99f;
  }
  meter_res ref = reference(&fed, pad, n);
  meter_res got[3];
  static const int blocks[] = {64, 1000, 4096};
  for (int k = 0; k < 3; k++) {
    modhost h;
    mh_init(&h, "meter", RATE, MAXF);
    h.cfg.skip = pad;
    h.cfg.length = n;
    sig *ins[] = {&fed};
    MH_CHECK(create(&h, ins) == 0, "meter create: %s", h.err);
    sig out = sig_new(2, fed.n);
    run(&h, ins, &out, fed.n, blocks[k], NULL, 0);
    MH_CHECK(bit_equal(out.ch[0], fed.ch[0], fed.n) &&
                 bit_equal(out.ch[1], fed.ch[1], fed.n),
             "meter is not a bit-exact pass-through");
    got[k] = meter_results(&h);
    if (k == 0) {
      /* reset twice (both of its paths) and measure again: same results */
      for (int r = 0; r < 2; r++) {
        h.m->reset(h.state);
        run(&h, ins, &out, fed.n, 512, NULL, 0);
        meter_res again = meter_results(&h);
        MH_CHECK(meter_match(&again, &got[0], 1e-9, 0),
                 "meter after reset %d differs", r + 1);
      }
    }
    sig_free(&out);
    mh_free(&h);
  }
  printf("meter vs the loudness kernel fed the signal part (12 s "
         "programme, padding and tail excluded):\n");
  MH_CHECK(meter_match(&got[0], &ref, 1e-6, 1), "meter differs from "
                                                "the kernel");
  /* and against libebur128: 0.01 LU (EBU meters agree to that), sample
   * peak exactly */
  double eb[4];
  ebur128_ref(&fed, pad, n, eb);
  MH_CHECK(fabs(got[0].v[0] - eb[0]) <= 0.01 && got[0].v[3] == eb[1] &&
               fabs(got[0].v[4] - eb[2]) <= 0.01 &&
               fabs(got[0].v[5] - eb[3]) <= 0.01,
           "meter vs libebur128: I %.4f/%.4f SP %.4f/%.4f M %.4f/%.4f S "
           "%.4f/%.4f",
           got[0].v[0], eb[0], got[0].v[3], eb[1], got[0].v[4], eb[2],
           got[0].v[5], eb[3]);
  printf("meter vs libebur128: integrated %+.4f, momentary max %+.4f, "
         "short-term max %+.4f LU, sample peak %s\n",
         got[0].v[0] - eb[0], got[0].v[4] - eb[2], got[0].v[5] - eb[3],
         got[0].v[3] == eb[1] ? "equal" : "DIFFERS");
  MH_CHECK(meter_match(&got[1], &got[0], 1e-9, 0) &&
               meter_match(&got[2], &got[0], 1e-9, 0),
           "meter depends on block size");
  printf("meter: same results with 64/1000/4096-frame blocks and after "
         "resets\n");
  /* correlation cases */
  struct {
    const char *what;
    double want;
  } cases[] = {{"identical", 1},
               {"inverted", -1},
               {"silence", 1},
               {"DC vs silence", 0},
               {"mono", 1}};
  for (int k = 0; k < 5; k++) {
    sig c = sig_new(k == 4 ? 1 : 2, 48000);
    for (int i = 0; i < c.n; i++) {
      float v = (float)(0.5 * urand());
      c.ch[0][i] = k == 2 ? 0 : k == 3 ? 0.5f : v;
      if (c.nch > 1)
        c.ch[1][i] = k == 0 ? v : k == 1 ? -v : 0;
    }
    modhost h;
    mh_init(&h, "meter", RATE, MAXF);
    sig *ins[] = {&c};
    MH_CHECK(create(&h, ins) == 0, "%s", h.err);
    sig out = sig_new(c.nch, c.n);
    run(&h, ins, &out, c.n, 1000, NULL, 0);
    meter_res r = meter_results(&h);
    MH_CHECK(fabs(r.v[6] - cases[k].want) < 1e-12, "correlation %s: %f",
             cases[k].what, r.v[6]);
    if (k == 2)
      MH_CHECK(isinf(r.v[0]) && r.v[0] < 0 && isinf(r.v[2]),
               "silence: integrated %f, true peak %f", r.v[0], r.v[2]);
    if (k == 0) {
      /* true_peak off: the result is absent, the rest unchanged */
      modhost q;
      mh_init(&q, "meter", RATE, MAXF);
      mh_set(&q, "true_peak", 0);
      MH_CHECK(create(&q, ins) == 0, "%s", q.err);
      run(&q, ins, &out, c.n, 1000, NULL, 0);
      const char *nm[16];
      double v[16];
      int nr = q.m->results(q.state, nm, v, 16), has_tp = 0;
      for (int j = 0; j < nr; j++) has_tp |= strcmp(nm[j], "true_peak") == 0;
      MH_CHECK(nr == 7 && !has_tp && v[0] == r.v[0] && v[2] == r.v[3],
               "true_peak off: %d results, true_peak %s, I %f vs %f", nr,
               has_tp ? "present" : "absent", v[0], r.v[0]);
      mh_free(&q);
    }
    sig_free(&out), sig_free(&c);
    mh_free(&h);
  }
  printf("meter correlation: identical 1, inverted -1, silence 1, DC vs "
         "silence 0, mono 1\n");
  sig_free(&s), sig_free(&fed);
}

/* ---- hostile input ---------------------------------------------------- */

static sig hostile(int kind, int nch, int n) {
  sig s = sig_new(nch, n);
  for (int c = 0; c < nch; c++)
    for (int i = 0; i < n; i++) {
      float v = 0;
      switch (kind) {
      case 0:
        v = 0;
        break; /* silence */
      case 1:
        v = c ? -1e-30f : 1e-30f;
        break; /* tiny */
      case 2:
        v = c ? 0.7f : 1.0f;
        break; /* DC */
      case 3:
        v = (i / 2400) % 4 == 0 ? (float)urand() : 0;
        break; /* bursts */
      case 4:
        v = ((i / 50) & 1) ? 1.0f : -1.0f;
        break; /* square */
      }
      s.ch[c][i] = v;
    }
  return s;
}

static void nothing(modhost *h) { (void)h; }

static void test_hostile(void) {
  static const char *const kinds[] = {"silence", "1e-30", "DC", "bursts",
                                      "square"};
  struct {
    const char *id;
    int nch, nports;
    void (*setup)(modhost *);
    event ev[3];
  } mods[] = {
      {"pan",
       1,
       1,
       pan_setup,
       {{100, "pan", 1, 3000}, {20000, "pan", -0.3, 3000}}},
      {"pan",
       2,
       1,
       pan_setup,
       {{100, "pan", -1, 3000}, {20000, "pan", 0.4, 3000}}},
      {"ms_encode", 2, 1, nothing, {{0}}},
      {"ms_decode", 2, 1, nothing, {{0}}},
      {"width",
       2,
       1,
       width_setup,
       {{100, "width", 0, 3000}, {20000, "width", 2, 3000}}},
      {"blend",
       2,
       2,
       blend_setup,
       {{100, "mix", 1, 3000}, {20000, "mix", 0.001, 3000}}},
      {"meter", 2, 1, nothing, {{0}}},
  };
  int bad = 0;
  for (size_t m = 0; m < sizeof mods / sizeof mods[0]; m++)
    for (int k = 0; k < 5; k++) {
      sig in = hostile(k, mods[m].nch, 96000), in2 = hostile(4 - k, 2, 96000);
      sig *ins[] = {&in, &in2};
      pan_law = 1, width_mono_below = 80, blend_mix = 0.5;
      modhost h;
      mh_init(&h, mods[m].id, RATE, MAXF);
      mods[m].setup(&h);
      if (create(&h, ins) != 0) {
        MH_CHECK(0, "%s: %s", mods[m].id, h.err);
        continue;
      }
      sig out = sig_new(h.cfg.out_channels, in.n);
      int nev = mods[m].ev[0].param ? 2 : 0;
      run(&h, ins, &out, in.n, 1000, mods[m].ev, nev);
      if (unclean(&out)) {
        bad++;
        MH_CHECK(0, "%s on %s: NaN, Inf or subnormal output", mods[m].id,
                 kinds[k]);
      }
      sig_free(&out), sig_free(&in), sig_free(&in2);
      mh_free(&h);
    }
  /* the generator at the lowest level, all waves */
  for (int w = 0; w < 6; w++) {
    modhost h;
    mh_init(&h, "tone", RATE, MAXF);
    mh_set(&h, "wave", w);
    mh_set(&h, "level", -120);
    mh_set(&h, "fade", 20);
    mh_set(&h, "duration", 1);
    MH_CHECK(create(&h, NULL) == 0, "%s", h.err);
    sig out = sig_new(2, 60000);
    run(&h, NULL, &out, 60000, 1000, NULL, 0);
    if (unclean(&out)) {
      bad++;
      MH_CHECK(0, "tone wave %d: unclean output", w);
    }
    sig_free(&out);
    mh_free(&h);
  }
  printf("hostile input (silence, 1e-30, DC, bursts, full-scale square; "
         "ramps): %s\n",
         bad ? "FAILED" : "no NaN, Inf or subnormal output");
}

int main(void) {
  test_tone();
  test_pan();
  test_ms();
  test_width();
  test_blend();
  test_routing();
  test_meter();
  test_hostile();
  if (mh_fails) {
    fprintf(stderr, "test_small_modules: %d check(s) failed\n", mh_fails);
    return 1;
  }
  printf("test_small_modules: all checks passed\n");
  return 0;
}
