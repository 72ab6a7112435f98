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
  for (int c = 0; c < nch; c++) s.ch[c] = calloc((size_t)n, sizeof(float));
  return s;
}

static void sig_free(sig *s) {
  for (int c = 0; c < s->nch; c++) free(s->ch[c]);
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
    for (int i = 0; i < n; i++) s.ch[c][i] = (float)(amp * urand());
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
    if (e < nev && ev[e].at - pos < n) n = (int)(ev[e].at - pos);
    const float *ip[MB_MAX_PORTS][MB_MAX_CHANNELS];
    const float *const *ipp[MB_MAX_PORTS] = {0};
    float *op[MB_MAX_CHANNELS];
    for (int p = 0; p < h->m->n_inputs; p++) {
      if (!ins || !ins[p]) continue;
      for (int c = 0; c < ins[p]->nch; c++) ip[p][c] = ins[p]->ch[c] + pos;
      ipp[p] = ip[p];
    }
    for (int c = 0; c < out->nch; c++) op[c] = out->ch[c] + pos;
    mh_process(h, ipp, op, n, pos);
    pos += n;
  }
}

/* Create with the channel counts of ins. */
static int create(modhost *h, sig *const *ins) {
  int ch[MB_MAX_PORTS] = {0};
  for (int p = 0; p < h->m->n_inputs; p++) ch[p] = ins && ins[p] ? ins[p]->nch : 0;
  return mh_create(h, ch);
}

static double max_diff(const sig *a, const sig *b) {
  double m = 0;
  for (int c = 0; c < a->nch; c++)
    for (int i = 0; i < a->n; i++) {
      double d = fabs((double)a->ch[c][i] - b->ch[c][i]);
      if (d > m || d != d) m = d != d ? INFINITY : d;
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
      if (!isfinite(v) || (v != 0 && fabsf(v) < FLT_MIN)) return 1;
    }
  return 0;
}

static double rms(const float *x, int n) {
  double e = 0;
  for (int i = 0; i < n; i++) e += (double)x[i] * x[i];
  return sqrt(e / n);
}

/* Render a module the same way with blocks of 64, 1000 and 4096 frames;
 * return the largest difference from the 64-frame render. */
static double block_independence(const char *id, void (*setup)(modhost *),
                                 sig *const *ins, int total,
                                 const event *ev, int nev, int *bitexact) {
  static const int blocks[] = {64, 1000, 4096};
  sig ref = {0};
  double worst = 0;
  *bitexact = 1;
  for (int k = 0; k < 3; k++) {
    modhost h;
    mh_init(&h, id, RATE, MAXF);
    if (setup) setup(&h);
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
      if (d > worst) worst = d;
      for (int c = 0; c < out.nch; c++)
        if (!bit_equal(ref.ch[c], out.ch[c], total)) *bitexact = 0;
      sig_free(&out);
    }
    mh_free(&h);
  }
  sig_free(&ref);
  return worst;
}

/* ---- tone ------------------------------------------------------------- */

static sig render_tone(const char *wave, double freq, double level,
                       double dur, int nch, int total, modhost *hout) {
  modhost h;
  mh_init(&h, "tone", RATE, MAXF);
  mh_set(&h, "wave", 0);
  const char *const *ch = h.m->params[0].choices;
  for (int k = 0; ch[k]; k++)
    if (strcmp(ch[k], wave) == 0) mh_set(&h, "wave", k);
  mh_set(&h, "freq", freq);
  mh_set(&h, "level", level);
  mh_set(&h, "duration", dur);
  mh_set(&h, "channels", nch);
  if (hout) { /* caller sets more and creates */
    *hout = h;
    return (sig){0};
  }
  MH_CHECK(create(&h, NULL) == 0, "tone create: %s", h.err);
  sig out = sig_new(nch, total);
  run(&h, NULL, &out, total, 1000, NULL, 0);
  mh_free(&h);
  return out;
}

static int wave_index(const char *w) {
  static const char *const names[] = {"sine",    "sweep",   "white",
                                      "pink",    "impulse", "silence"};
  for (int k = 0; k < 6; k++)
    if (strcmp(names[k], w) == 0) return k;
  return 0;
}

/* Power of x in octave bands from 20 Hz (Welch, Hann, 16384 points). */
static void octave_powers(const float *x, int n, double *band, int nb) {
  const int N = 16384;
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
      if (f >= lo && f < hi) e += psd[k];
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
           "%.4f dBFS, rms %.4f dBFS\n", err, db(peak), db(r));
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
           "L/R correlation %.4f\n", db(r0), db(r1), db(peak), corr);
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
      lo = fmin(lo, d), hi = fmax(hi, d);
    }
    MH_CHECK(lo > -0.3 && hi < 0.3, "pink octaves %.2f..%.2f dB", lo, hi);
    double cross = 0;
    for (int i = 0; i < n; i++) cross += (double)s.ch[0][i] * s.ch[1][i];
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
        if (first < 0) first = i;
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
    int ok = s.ch[0][0] == (float)pow(10, -6 / 20.0) && s.ch[1][0] == s.ch[0][0];
    for (int i = 1; i < s.n; i++) ok &= s.ch[0][i] == 0 && s.ch[1][i] == 0;
    MH_CHECK(ok, "impulse must be one sample at level on frame 0");
    sig_free(&s);
    modhost h;
    render_tone("sine", 1000, 0, 1, 1, 0, &h);
    mh_set(&h, "fade", 100);
    MH_CHECK(create(&h, NULL) == 0, "%s", h.err);
    s = sig_new(1, 48000);
    run(&h, NULL, &s, 48000, 512, NULL, 0);
    /* at 2.5 ms into the fade (frame 120): sin^2(pi/2 * 120/4800) */
    double g = pow(sin(0.5 * M_PI * 120 / 4800.0), 2);
    double want = g * sin(2 * M_PI * 1000 * 120 / RATE);
    MH_CHECK(s.ch[0][0] == 0 && s.ch[0][47999] == 0 &&
                 fabs(s.ch[0][120] - want) < 1e-6,
             "fade: first %g last %g frame120 %g want %g", s.ch[0][0],
             s.ch[0][47999], s.ch[0][120], want);
    sig_free(&s);
    mh_free(&h);
    s = render_tone("silence", 1000, 0, 1, 3, 48000, NULL);
    ok = 1;
    for (int c = 0; c < 3; c++)
      for (int i = 0; i < s.n; i++) ok &= s.ch[c][i] == 0;
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
