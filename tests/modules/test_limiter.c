/* test_limiter.c - the true-peak kernel (modules/dsp/truepeak.h) and the
 * limiter module through modhost.
 *
 * Kernel: a sinusoid's true peak is its amplitude A (BS.1770-4 Annex 2:
 * the peak of the band-limited signal). One crest, placed 0, 1/16, ..
 * 15/16 of a sample after a sample, must read within 0.02 dB of A refined
 * (0.04 dB on the 2x and 1x grids), and on the plain grid never above A
 * (+0.01 dB filter ripple) nor below A cos(pi f / (factor fs)), the grid's
 * worst miss (-0.01 dB); up to 0.42 fs at 4x, 20 kHz at 2x and 1x. DC
 * reads exactly, an impulse reads 1 at its own interval (the documented
 * delay), results do not depend on how the signal is split into calls, and
 * planar and interleaved meters agree.
 *
 * Limiter: latency() = round(lookahead fs / 1000) + 2 D (module doc);
 * below the ceiling the output is the input delayed, bit for bit; in
 * sample-peak mode no sample passes the ceiling by a single float; in
 * true-peak mode the output's true peak (by the kernel) is within 0.01 dB
 * of the ceiling; a lone peak gives the documented gain curve (falling
 * exactly L + a frames ahead, monotone, no step above the S-curve's
 * steepest, the needed gain at the peak, flat for the guard and the hold,
 * then 1 - g decaying with the release time constant); block sizes and
 * in-place processing do not change a render, even with ramps; no
 * NaN/Inf/subnormal output; link 0 and 1; results; a look-ahead under one
 * frame is refused. Speed figures are printed, not asserted. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <time.h>

#include "dsp/truepeak.h"
#include "modhost.h"

static uint64_t rng = 88172645463325252ull;
static double urand(void) { /* xorshift64, uniform in [-1, 1) */
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) / 4503599627370496.0 - 1.0;
}

static float **chans(int nch, long n) {
  float **p = calloc((size_t)nch, sizeof *p);
  for (int c = 0; c < nch; c++) p[c] = calloc((size_t)n + 1, sizeof(float));
  return p;
}
static void chans_free(float **p, int nch) {
  for (int c = 0; c < nch; c++) free(p[c]);
  free(p);
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
static double cpu_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double db(double v) { return 20 * log10(v); }

/* A "programme": kick (swept sine), bass (band-limited saw), hats (noise
 * bursts), chord (three sines), at roughly -12 dBFS peaks; deterministic. */
static void programme(float **x, int nch, long n, double fs, double level) {
  const double bpm_s = 0.5; /* a beat every 0.5 s */
  double hp[2] = {0, 0};
  for (long i = 0; i < n; i++) {
    const double t = (double)i / fs, tb = fmod(t, bpm_s);
    const double kick = 0.5 * exp(-tb * 18) *
                        sin(2 * M_PI * (45 * tb + 60 * (1 - exp(-tb * 30)) / 30));
    double bass = 0;
    for (int k = 1; k * 55.0 < fs / 2 && k < 40; k++)
      bass += sin(2 * M_PI * 55 * k * t) / k;
    bass *= 0.12;
    const double th = fmod(t, bpm_s / 2);
    for (int c = 0; c < nch; c++) {
      const double nz = urand();
      hp[c & 1] = 0.5 * (nz - hp[c & 1]); /* crude high-pass: bright */
      const double hat = 0.25 * exp(-th * 60) * hp[c & 1];
      const double chord = 0.05 * (sin(2 * M_PI * 220 * t + c) +
                                   sin(2 * M_PI * 277.18 * t) +
                                   sin(2 * M_PI * 329.63 * t + 0.5 * c));
      x[c][i] = (float)(level * (kick + bass + hat + chord));
    }
  }
}

/* ---- kernel ------------------------------------------------------------ */

/* True-peak reading of one crest of a sinusoid of amplitude A at f Hz:
 * x[i] = A cos(2 pi f (i - tc) / fs) with the crest at tc = 1000 + off
 * (0 <= off < 1), read as the largest envelope value of the intervals
 * 999..1001 around it, so that no other crest can land nearer the grid. */
static double tp_crest(double fs, double f, double off, double A, int flags) {
  enum { N = 3000 };
  mb_truepeak tp;
  MH_CHECK(mb_truepeak_init(&tp, fs, 1, flags) == MB_OK, "init");
  float x[N], e[N];
  for (int i = 0; i < N; i++)
    x[i] = (float)(A * cos(2 * M_PI * f * (i - 1000 - off) / fs));
  const float *in[1] = {x};
  float *env[1] = {e};
  mb_truepeak_envelope(&tp, in, env, N);
  const int D = mb_truepeak_delay(&tp);
  float pk = 0;
  for (int j = 999; j <= 1001; j++) pk = e[j + D] > pk ? e[j + D] : pk;
  mb_truepeak_free(&tp);
  return pk;
}

static void test_kernel_sines(void) {
  const double rates[] = {44100, 48000, 88200, 96000, 192000};
  const int flagset[] = {0, MB_TP_FINE};
  double worst[5] = {0}; /* by factor: refined |error| */
  for (int r = 0; r < 5; r++)
    for (int fl = 0; fl < 2; fl++) {
      const double fs = rates[r];
      const int fac = mb_truepeak_factor(fs, flagset[fl]);
      const int want = fl ? (fs < 192000 ? 4 : 2)
                          : (fs < 96000 ? 4 : fs < 192000 ? 2 : 1);
      MH_CHECK(fac == want, "factor %d at %g Hz, flags %d", fac, fs, fl);
      /* up to 0.42 fs at 4x; the coarser grids up to 20 kHz (the audio
       * band, as BS.1770 intends them) */
      const double fmax = fac == 4 ? 0.42 * fs : 20000;
      for (double f = 50; f <= fmax * 1.0001; f = f * 1.37 < fmax ? f * 1.37 : (f < fmax ? fmax : 2 * fmax)) {
        for (int k = 0; k < 16; k++) {
          const double off = k / 16.0, A = 0.5;
          const double rf =
              db(tp_crest(fs, f, off, A, flagset[fl] | MB_TP_REFINE) / A);
          const double gr = db(tp_crest(fs, f, off, A, flagset[fl]) / A);
          /* the grid's largest miss: half a step of pi f / (fac fs) */
          const double miss = db(cos(M_PI * f / (fac * fs)));
          if (fabs(rf) > worst[fac]) worst[fac] = fabs(rf);
          /* the parabola's own error and the filter's ripple */
          const double tol = fac == 4 ? 0.02 : 0.04;
          MH_CHECK(fabs(rf) <= tol,
                   "refined reading of %g Hz at %g Hz (%dx), crest %g after "
                   "a sample: %+.4f dB", f, fs, fac, off, rf);
          MH_CHECK(gr <= 0.01 && gr >= miss - 0.01,
                   "grid reading of %g Hz at %g Hz (%dx): %+.4f dB, allowed "
                   "%+.4f..0", f, fs, fac, gr, miss);
          MH_CHECK(rf >= gr - 1e-6, "refined below grid at %g Hz", f);
        }
      }
    }
  printf("kernel: refined readings of one crest within %.4f dB (4x, to "
         "0.42 fs), %.4f dB (2x), %.4f dB (1x, to 20 kHz) of the amplitude\n",
         worst[4], worst[2], worst[1]);
}

static void test_kernel_basics(void) {
  /* DC passes exactly (taps sum to 1), an impulse reads 1 at its frame */
  const double rates[] = {44100, 96000, 192000};
  for (int r = 0; r < 3; r++) {
    mb_truepeak tp;
    mb_truepeak_init(&tp, rates[r], 1, MB_TP_REFINE);
    const int D = mb_truepeak_delay(&tp);
    enum { N = 600 };
    float x[N], e[N];
    for (int i = 0; i < N; i++) x[i] = 0.5f;
    const float *in[1] = {x};
    float *env[1] = {e};
    mb_truepeak_envelope(&tp, in, env, N);
    float lo = 1, hi = 0;
    for (int i = 2 * D; i < N; i++) lo = e[i] < lo ? e[i] : lo, hi = e[i] > hi ? e[i] : hi;
    MH_CHECK(fabsf(lo - 0.5f) < 2e-7f && fabsf(hi - 0.5f) < 2e-7f,
             "DC 0.5 at %g Hz reads %.9f..%.9f", rates[r], lo, hi);
    mb_truepeak_reset(&tp);
    for (int i = 0; i < N; i++) x[i] = i == 100 ? 1.0f : 0.0f;
    mb_truepeak_envelope(&tp, in, env, N);
    /* interval 100 starts at the impulse: envelope index 100 + D */
    int at = 0;
    for (int i = 0; i < N; i++) at = e[i] > e[at] ? i : at;
    MH_CHECK(at == 100 + D && e[at] == 1.0f,
             "impulse at 100 read at %d (expected %d) as %.9f at %g Hz", at,
             100 + D, e[at], rates[r]);
    MH_CHECK(D == (rates[r] < 96000 ? 18 : rates[r] < 192000 ? 16 : 1),
             "delay %d at %g Hz", D, rates[r]);
    mb_truepeak_free(&tp);
  }
  /* split independence and planar == interleaved, refined, stereo */
  enum { N = 20000 };
  float **x = chans(2, N), **e1 = chans(2, N), **e2 = chans(2, N);
  float *il = malloc(sizeof(float) * 2 * N);
  for (int i = 0; i < N; i++) {
    x[0][i] = (float)(0.9 * urand());
    x[1][i] = (float)(0.7 * sin(i * 1.9) + 0.2 * urand());
    il[2 * i] = x[0][i], il[2 * i + 1] = x[1][i];
  }
  mb_truepeak a, b, c;
  mb_truepeak_init(&a, 48000, 2, MB_TP_REFINE);
  mb_truepeak_init(&b, 48000, 2, MB_TP_REFINE);
  mb_truepeak_init(&c, 48000, 2, MB_TP_REFINE);
  mb_truepeak_envelope(&a, (const float *const *)x, e1, N);
  float pk_p[2] = {0, 0}, pk_i[2] = {0, 0};
  for (int i = 0, k = 1; i < N; i += k, k = k * 7 % 1013 + 1) {
    const int m = N - i < k ? N - i : k;
    const float *in[2] = {x[0] + i, x[1] + i};
    float *out[2] = {e2[0] + i, e2[1] + i};
    mb_truepeak_envelope(&b, in, out, m);
    mb_truepeak_update_interleaved(&c, il + 2 * i, m, pk_i);
  }
  MH_CHECK(memcmp(e1[0], e2[0], sizeof(float) * N) == 0 &&
               memcmp(e1[1], e2[1], sizeof(float) * N) == 0,
           "envelope depends on how the signal is split");
  for (int ch = 0; ch < 2; ch++)
    for (int i = 0; i < N; i++) pk_p[ch] = e1[ch][i] > pk_p[ch] ? e1[ch][i] : pk_p[ch];
  MH_CHECK(pk_p[0] == pk_i[0] && pk_p[1] == pk_i[1],
           "interleaved meter %.9f %.9f vs planar %.9f %.9f", pk_i[0],
           pk_i[1], pk_p[0], pk_p[1]);
  mb_truepeak_free(&a), mb_truepeak_free(&b), mb_truepeak_free(&c);
  chans_free(x, 2), chans_free(e1, 2), chans_free(e2, 2);
  free(il);
}

#define LOOP (48000L * 10) /* bench input: 10 s of programme, repeated */

static void bench_kernel(long n) {
  const int blk = 4000; /* divides LOOP */
  float **x = chans(2, LOOP), *env = malloc(sizeof(float) * blk);
  programme(x, 2, LOOP, 48000, 1.0);
  const char *what[] = {"meter, BS.1770 grid", "meter, refined",
                        "envelope_max, refined"};
  for (int mode = 0; mode < 3; mode++) {
    double best = 1e9, best_cpu = 1e9;
    for (int rep = 0; rep < 3; rep++) {
      mb_truepeak tp;
      mb_truepeak_init(&tp, 48000, 2, mode ? MB_TP_REFINE : 0);
      float pk[2] = {0, 0};
      const double t0 = now(), c0 = cpu_now();
      for (long i = 0; i < n; i += blk) {
        const int k = n - i < blk ? (int)(n - i) : blk;
        const float *in[2] = {x[0] + i % LOOP, x[1] + i % LOOP};
        if (mode < 2)
          mb_truepeak_update(&tp, in, k, pk);
        else
          mb_truepeak_envelope_max(&tp, in, env, k);
      }
      const double t = now() - t0, tc = cpu_now() - c0;
      best = t < best ? t : best;
      best_cpu = tc < best_cpu ? tc : best_cpu;
      mb_truepeak_free(&tp);
    }
    const double secs = (double)n / 48000;
    printf("bench: true-peak kernel (%s), %.0f s stereo 48 kHz: %.1f ms wall "
           "(%.0fx), %.1f ms cpu (%.0fx)\n",
           what[mode], secs, best * 1e3, secs / best, best_cpu * 1e3,
           secs / best_cpu);
  }
  chans_free(x, 2);
  free(env);
}

/* ---- limiter ----------------------------------------------------------- */

typedef struct {
  double ceiling, release, lookahead, gain, hold, link;
  int true_peak;
} lopts;

static lopts defaults(void) {
  return (lopts){.ceiling = -1, .release = 80, .lookahead = 3, .gain = 0,
                 .hold = 0, .link = 1, .true_peak = 1};
}

static int lim_make(modhost *h, double fs, int nch, int max_frames,
                    lopts o) {
  mh_init(h, "limiter", fs, max_frames);
  mh_set(h, "ceiling", o.ceiling);
  mh_set(h, "release", o.release);
  mh_set(h, "lookahead", o.lookahead);
  mh_set(h, "gain", o.gain);
  mh_set(h, "hold", o.hold);
  mh_set(h, "link", o.link);
  mh_set(h, "true_peak", o.true_peak);
  const int ch[1] = {nch};
  return mh_create(h, ch);
}

/* Run n frames in blocks of `blk` (alias: out == in buffers when set). */
static void lim_run(modhost *h, float **x, float **y, int nch, long n,
                    int blk) {
  for (long i = 0; i < n; i += blk) {
    const int k = n - i < blk ? (int)(n - i) : blk;
    const float *in[MB_MAX_CHANNELS];
    float *out[MB_MAX_CHANNELS];
    for (int c = 0; c < nch; c++) in[c] = x[c] + i, out[c] = y[c] + i;
    const float *const *ports[1] = {in};
    mh_process(h, ports, out, k, i);
  }
}

static int expected_latency(double fs, lopts o) {
  const int L = (int)lround(o.lookahead * fs / 1000);
  const int D = !o.true_peak ? 0 : fs < 192000 ? 18 : 16;
  return L + 2 * D;
}

static double result(modhost *h, const char *name) {
  const char *names[8];
  double v[8];
  const int k = h->m->results(h->state, names, v, 8);
  for (int i = 0; i < k; i++)
    if (!strcmp(names[i], name)) return v[i];
  MH_CHECK(0, "no result %s", name);
  return NAN;
}

static void test_latency_passthrough(void) {
  const double rates[] = {44100, 48000, 96000, 192000};
  for (int r = 0; r < 4; r++)
    for (int tpm = 0; tpm < 2; tpm++) {
      const double fs = rates[r];
      lopts o = defaults();
      o.true_peak = tpm;
      o.lookahead = tpm ? 1.5 : 5;
      modhost h;
      MH_CHECK(lim_make(&h, fs, 2, 1000, o) == 0, "create: %s", h.err);
      const int lat = h.m->latency(h.state);
      MH_CHECK(lat == expected_latency(fs, o), "latency %d, expected %d at "
               "%g Hz true_peak %d", lat, expected_latency(fs, o), fs, tpm);
      /* -10 dBFS peaks: no limiting; output = input delayed, bit-exact */
      const long n = 30000;
      float **x = chans(2, n), **y = chans(2, n);
      programme(x, 2, n, fs, 0.3);
      lim_run(&h, x, y, 2, n, 1000);
      long bad = 0;
      for (int c = 0; c < 2; c++)
        for (long i = 0; i < n; i++) {
          const float want = i >= lat ? x[c][i - lat] : 0.0f;
          bad += memcmp(&y[c][i], &want, sizeof want) != 0;
        }
      MH_CHECK(bad == 0, "%ld samples differ from the input delayed by %d "
               "(%g Hz, true_peak %d)", bad, lat, fs, tpm);
      MH_CHECK(result(&h, "max_gain_reduction") == 0 &&
                   result(&h, "gain_reduction_mean") == 0,
               "no limiting reported as %g / %g dB",
               result(&h, "max_gain_reduction"),
               result(&h, "gain_reduction_mean"));
      mh_free(&h);
      chans_free(x, 2), chans_free(y, 2);
    }
}

/* The gain curve around one peak: DC 0.1 carries it (out / in = gain), a
 * single sample of 2.0 at frame P is the peak. In true-peak mode the
 * impulse's interpolation rings into the frames beside it, which then need
 * (smaller) reductions too: the frames that need any are found here with
 * the kernel, as p(j) = max(env(j - 1), env(j)) > ceiling. */
static void test_gain_curve(void) {
  const double fs = 48000;
  const double C = pow(10, -1 / 20.0);
  for (int tpm = 0; tpm < 2; tpm++)
    for (int hold = 0; hold < 2; hold++) {
      lopts o = defaults();
      o.true_peak = tpm;
      o.hold = hold ? 20 : 0;
      o.release = 50;
      modhost h;
      lim_make(&h, fs, 1, 512, o);
      const int lat = h.m->latency(h.state);
      const int L = (int)lround(o.lookahead * fs / 1000);
      const int D = tpm ? 18 : 0, a = D, H = (int)lround(o.hold * fs / 1000);
      const long n = 48000, P = 10000;
      float **x = chans(1, n), **y = chans(1, n);
      for (long i = 0; i < n; i++) x[0][i] = 0.1f;
      x[0][P] = 2.0f;
      lim_run(&h, x, y, 1, n, 512);
      long first = P, last = P; /* frames needing reduction */
      if (tpm) {
        mb_truepeak tp;
        mb_truepeak_init(&tp, fs, 1, MB_TP_REFINE | MB_TP_FINE);
        float *e = malloc(sizeof(float) * (size_t)(n + D));
        const float *in[1] = {x[0]};
        float *env[1] = {e};
        mb_truepeak_envelope(&tp, in, env, (int)n);
        mb_truepeak_free(&tp);
        first = n, last = 0;
        for (long j = 1; j + D < n; j++) {
          const float pj = e[j - 1 + D] > e[j + D] ? e[j - 1 + D] : e[j + D];
          if (pj > (float)C) {
            first = j < first ? j : first;
            last = j;
          }
        }
        free(e);
        MH_CHECK(first >= P - 3 && last <= P + 3, "impulse needs reduction "
                 "over %ld..%ld", first - P, last - P);
      }
      const double gmin = C / 2.0; /* the impulse's sample is its peak */
      double *g = malloc(sizeof(double) * n);
      for (long i = 0; i + lat < n; i++) g[i] = y[0][i + lat] / (double)x[0][i];
      /* the gain moves first L + a frames before the first frame needing
       * reduction, reaches gmin at the peak, stays there +-a frames (and
       * H more after) */
      const long start = first - a - L;
      int ok = 1;
      for (long i = 1000; i < start; i++) ok &= g[i] == 1.0;
      MH_CHECK(ok && g[start] < 1.0, "gain does not start falling exactly "
               "L + a frames before the first reduced frame (true_peak %d)",
               tpm);
      MH_CHECK(fabs(g[P] - gmin) < 2e-6, "gain at the peak %.7f, expected "
               "%.7f (true_peak %d)", g[P], gmin, tpm);
      MH_CHECK(y[0][P + lat] <= (float)C && y[0][P + lat] >= (float)C - 4e-7f,
               "peak comes out at %.8f, ceiling %.8f", y[0][P + lat], C);
      /* attack: monotone and without steps: with two boxes of k1, k2
       * frames the steepest slope is (1 - gmin) / max(k1, k2) per frame */
      const int k1 = (L + 2) / 2, k2 = L + 2 - k1;
      const double maxstep = (1 - gmin) / (k1 > k2 ? k1 : k2) * 1.0001;
      double worst = 0;
      int mono = 1;
      for (long i = start - 1; i < P - a; i++) {
        const double d = g[i] - g[i + 1];
        mono &= d >= -1e-7;
        worst = d > worst ? d : worst;
      }
      MH_CHECK(mono, "attack not monotone (true_peak %d)", tpm);
      MH_CHECK(worst <= maxstep, "attack step %.3g > %.3g", worst, maxstep);
      /* flat over the guard and the hold */
      ok = 1;
      for (long i = P - a; i <= P + a + H; i++) ok &= fabs(g[i] - gmin) < 2e-6;
      MH_CHECK(ok, "gain not flat over the peak's guard and hold (true_peak "
               "%d, hold %d)", tpm, hold);
      /* release: 1 - g falls by e every `release` ms. The running means
       * let go quadratically at first, so for a few frames after the
       * guard and hold the curve follows them (< 0.1 % of the reduction);
       * fit the slope of log(1 - g) and compare the level. */
      const long r0 = last + a + H; /* last frame held */
      const double tau = o.release * fs / 1000;
      const long t1 = (long)(0.5 * tau), t2 = (long)(3 * tau);
      const double slope = (log(1 - g[r0 + t2]) - log(1 - g[r0 + t1])) /
                           (double)(t2 - t1);
      MH_CHECK(fabs(slope * tau + 1) < 2e-3, "release time constant %.3f ms, "
               "expected %g ms", -1000 / (slope * fs), o.release);
      const double lvl = (1 - g[r0 + (long)tau]) / (1 - gmin);
      if (!tpm)
        MH_CHECK(fabs(lvl - exp(-1)) < 1e-3, "after one release time the "
                 "reduction is %.5f of its peak value, expected 1/e", lvl);
      else /* the ringing frames after P hold it a little longer */
        MH_CHECK(lvl > exp(-1) - 1e-3 && lvl < exp(-1) + 0.01, "after one "
                 "release time the reduction is %.5f of its peak value", lvl);
      /* and on to the end, where nothing needs reducing and the limiter
       * runs the release alone: 1 - g keeps falling by the same factor
       * per frame until it is below the float resolution of g (2^-25),
       * then g is exactly 1 */
      const double al = exp(-1 / tau);
      long bad = -1;
      for (long i = r0 + t2; i + lat < n && bad < 0; i++) {
        const double m = (1 - g[r0 + t2]) * pow(al, (double)(i - r0 - t2));
        const double e = fabs((1 - g[i]) - m);
        if (m > 0x1p-24 ? e > 2e-3 * m + 2e-7 : m < 0x1p-26 && g[i] != 1.0)
          bad = i;
      }
      MH_CHECK(bad < 0, "release tail off the exponential at frame %ld: 1 - "
               "g = %.3g (true_peak %d, hold %d)", bad - r0,
               bad < 0 ? 0 : 1 - g[bad], tpm, hold);
      /* results */
      MH_CHECK(fabs(result(&h, "max_gain_reduction") + db(gmin)) < 1e-4,
               "max_gain_reduction %.5f, expected %.5f",
               result(&h, "max_gain_reduction"), -db(gmin));
      /* the mean over the frames output so far (the last `lat` input
       * frames are still inside the limiter) */
      double mean = 0;
      for (long i = 0; i < n - lat; i++) mean -= db(g[i]);
      mean /= (double)(n - lat);
      MH_CHECK(fabs(result(&h, "gain_reduction_mean") - mean) < 1e-4,
               "gain_reduction_mean %.6f, measured %.6f",
               result(&h, "gain_reduction_mean"), mean);
      free(g);
      mh_free(&h);
      chans_free(x, 1), chans_free(y, 1);
    }
}

/* Hot programme: sample-peak mode never passes the ceiling by one float;
 * true-peak mode's output true peak is within 0.01 dB. */
static void test_ceilings(void) {
  const double rates[] = {44100, 48000, 96000};
  const double ceilings[] = {-1, -0.3, -2};
  const long n = 96000;
  for (int r = 0; r < 3; r++)
    for (int ci = 0; ci < 3; ci++)
      for (int tpm = 0; tpm < 2; tpm++) {
        const double fs = rates[r];
        lopts o = defaults();
        o.ceiling = ceilings[ci];
        o.true_peak = tpm;
        o.gain = 12;
        modhost h;
        lim_make(&h, fs, 2, 4096, o);
        float **x = chans(2, n), **y = chans(2, n);
        programme(x, 2, n, fs, 1.0);
        lim_run(&h, x, y, 2, n, 4096);
        const float cf = (float)pow(10, o.ceiling / 20);
        float sp = 0;
        for (int c = 0; c < 2; c++)
          for (long i = 0; i < n; i++) sp = fabsf(y[c][i]) > sp ? fabsf(y[c][i]) : sp;
        mb_truepeak tp;
        mb_truepeak_init(&tp, fs, 2, MB_TP_REFINE | MB_TP_FINE);
        float pk[2] = {0, 0};
        mb_truepeak_update(&tp, (const float *const *)y, (int)n, pk);
        mb_truepeak_free(&tp);
        const double tpk = db(pk[0] > pk[1] ? pk[0] : pk[1]);
        const double mgr = result(&h, "max_gain_reduction");
        if (tpm) {
          MH_CHECK(tpk <= o.ceiling + 0.01, "true peak %.4f dBTP over %.1f "
                   "at %g Hz", tpk, o.ceiling, fs);
          MH_CHECK(tpk >= o.ceiling - 0.05, "true peak %.4f dBTP: limited "
                   "well below %.1f at %g Hz", tpk, o.ceiling, fs);
        } else {
          MH_CHECK(sp <= cf, "sample peak %.9g over the ceiling %.9g at %g Hz",
                   sp, cf, fs);
          MH_CHECK(db(sp) >= o.ceiling - 0.01, "sample peak %.4f: not "
                   "reaching %.1f", db(sp), o.ceiling);
        }
        MH_CHECK(mgr > 10 && mgr < 20, "max_gain_reduction %.2f dB", mgr);
        if (r == 1 && ci == 0)
          printf("limiter +12 dB into %.1f (%s): output true peak %.4f dBTP, "
                 "sample peak %.4f dBFS, max reduction %.2f dB, mean %.2f dB\n",
                 o.ceiling, tpm ? "true peak" : "sample peak", tpk, db(sp),
                 mgr, result(&h, "gain_reduction_mean"));
        mh_free(&h);
        chans_free(x, 2), chans_free(y, 2);
      }
}

/* Renders are identical for any block size, with drive and ceiling ramps
 * set at the same frames; and with out aliasing in. The second signal is
 * bursts that need limiting between stretches that do not, whose quiet
 * chunks take a shortcut (the release alone) that must give the same bits
 * wherever the chunks fall. */
static void test_blocks(void) {
  const int sizes[] = {64, 1000, 4096, 1, 333};
  const long n = 60000;
  for (int bursts = 0; bursts < 2; bursts++)
    for (int tpm = 0; tpm < 2; tpm++)
      for (int link = 0; link < 2; link++) {
        float **x = chans(2, n), **ref = NULL;
        programme(x, 2, n, 48000, 1.0);
        for (long i = 0; bursts && i < n; i++)
          if (i % 20000 >= 1200)
            x[0][i] *= 0.1f, x[1][i] *= 0.1f;
        for (int s = 0; s < 5; s++) {
          lopts o = defaults();
          o.true_peak = tpm;
          o.link = link ? 1 : 0.3;
          o.gain = 6;
          modhost h;
          lim_make(&h, 48000, 2, 4096, o);
          float **y = chans(2, n);
          const long ev[] = {10000, 30000, n}; /* parameter changes here */
          long i = 0;
          for (int e = 0; e < 3; e++) {
            while (i < ev[e]) {
              int k = sizes[s];
              if (i + k > ev[e])
                k = (int)(ev[e] - i);
              const float *in[2] = {x[0] + i, x[1] + i};
              float *out[2] = {y[0] + i, y[1] + i};
              const float *const *ports[1] = {in};
              mh_process(&h, ports, out, k, i);
              i += k;
            }
            const int pc = mb_module_param_index(h.m, "ceiling");
            const int pg = mb_module_param_index(h.m, "gain");
            const int pr = mb_module_param_index(h.m, "release");
            if (e == 0)
              h.m->set_param(h.state, pc, -3, 4800);
            if (e == 1) {
              h.m->set_param(h.state, pg, 12, 777);
              h.m->set_param(h.state, pr, 20, 0);
            }
          }
          if (!ref) {
            ref = y;
          } else {
            MH_CHECK(!memcmp(ref[0], y[0], sizeof(float) * n) &&
                         !memcmp(ref[1], y[1], sizeof(float) * n),
                     "block size %d differs from 64 (true_peak %d, link %d%s)",
                     sizes[s], tpm, link, bursts ? ", bursts" : "");
            chans_free(y, 2);
          }
          mh_free(&h);
        }
        /* in place (out == in) gives the same */
        lopts o = defaults();
        o.true_peak = tpm;
        o.link = link ? 1 : 0.3;
        o.gain = 6;
        modhost h;
        lim_make(&h, 48000, 2, 4096, o);
        float **z = chans(2, n);
        memcpy(z[0], x[0], sizeof(float) * n),
            memcpy(z[1], x[1], sizeof(float) * n);
        long i = 0;
        const long ev[] = {10000, 30000, n};
        for (int e = 0; e < 3; e++) {
          while (i < ev[e]) {
            int k = 1000;
            if (i + k > ev[e])
              k = (int)(ev[e] - i);
            const float *in[2] = {z[0] + i, z[1] + i};
            float *out[2] = {z[0] + i, z[1] + i};
            const float *const *ports[1] = {in};
            mh_process(&h, ports, out, k, i);
            i += k;
          }
          if (e == 0)
            h.m->set_param(h.state, mb_module_param_index(h.m, "ceiling"), -3,
                           4800);
          if (e == 1) {
            h.m->set_param(h.state, mb_module_param_index(h.m, "gain"), 12,
                           777);
            h.m->set_param(h.state, mb_module_param_index(h.m, "release"), 20,
                           0);
          }
        }
        MH_CHECK(!memcmp(ref[0], z[0], sizeof(float) * n) &&
                     !memcmp(ref[1], z[1], sizeof(float) * n),
                 "in-place processing differs (true_peak %d, link %d)", tpm,
                 link);
        /* after the ceiling ramp to -3 dB the output obeys it */
        float sp = 0;
        for (int c = 0; c < 2; c++)
          for (long k = 20000; k < n; k++)
            sp = fabsf(ref[c][k]) > sp ? fabsf(ref[c][k]) : sp;
        MH_CHECK(db(sp) <= -3 + (tpm ? 0.0 : 1e-6),
                 "after the ramp to -3 dB "
                 "the sample peak is %.4f dB",
                 db(sp));
        mh_free(&h);
        chans_free(z, 2), chans_free(x, 2), chans_free(ref, 2);
      }
}

static void test_finite(void) {
  const long n = 40000;
  for (int tpm = 0; tpm < 2; tpm++)
    for (int sig = 0; sig < 6; sig++) {
      lopts o = defaults();
      o.true_peak = tpm;
      o.gain = 24;
      modhost h;
      lim_make(&h, 44100, 2, 1024, o);
      float **x = chans(2, n), **y = chans(2, n);
      for (long i = 0; i < n; i++)
        for (int c = 0; c < 2; c++) {
          float v = 0;
          switch (sig) {
          case 0: v = 0; break;                            /* silence */
          case 1: v = 1e-30f; break;                       /* tiny */
          case 2: v = 0.9f; break;                         /* DC */
          case 3: v = (i / 50) % 2 ? 1.0f : -1.0f; break;  /* square */
          case 4: v = i < 5000 ? (float)urand() : 0; break; /* burst */
          default: v = (i % 2 ? 1 : -1) * 1e-38f; break;    /* subnormal-ish */
          }
          x[c][i] = v;
        }
      lim_run(&h, x, y, 2, n, 1024);
      long bad = 0;
      for (int c = 0; c < 2; c++)
        for (long i = 0; i < n; i++)
          bad += !isfinite(y[c][i]) ||
                 (y[c][i] != 0 && fabsf(y[c][i]) < FLT_MIN) ||
                 fabsf(y[c][i]) > 0.8913f;
      MH_CHECK(bad == 0, "%ld bad samples for signal %d (true_peak %d)", bad,
               sig, tpm);
      mh_free(&h);
      chans_free(x, 2), chans_free(y, 2);
    }
}

/* link 0: a loud left does not touch the right; link 1: one gain. */
static void test_link(void) {
  const long n = 20000;
  for (int link = 0; link < 2; link++) {
    lopts o = defaults();
    o.link = link;
    modhost h;
    lim_make(&h, 48000, 2, 1000, o);
    const int lat = h.m->latency(h.state);
    float **x = chans(2, n), **y = chans(2, n);
    for (long i = 0; i < n; i++) {
      x[0][i] = (float)(1.5 * sin(2 * M_PI * 1000 * i / 48000.0));
      x[1][i] = (float)(0.3 * sin(2 * M_PI * 1500 * i / 48000.0));
    }
    lim_run(&h, x, y, 2, n, 1000);
    long same = 0;
    for (long i = lat; i < n; i++) same += y[1][i] == x[1][i - lat];
    if (link == 0)
      MH_CHECK(same == n - lat, "link 0: the quiet channel changed at %ld "
               "frames", n - lat - same);
    else {
      /* one gain: right/left ratio equals input ratio where both are big */
      double worst = 0;
      for (long i = lat + 5000; i < n; i++)
        if (fabsf(x[0][i - lat]) > 0.5f && fabsf(x[1][i - lat]) > 0.1f) {
          const double gl = y[0][i] / x[0][i - lat], gr = y[1][i] / x[1][i - lat];
          worst = fabs(gl - gr) > worst ? fabs(gl - gr) : worst;
        }
      MH_CHECK(worst < 1e-6, "link 1: gains differ by %.3g", worst);
    }
    mh_free(&h);
    chans_free(x, 2), chans_free(y, 2);
  }
}

/* reset() forgets everything: a second render equals the first. */
static void test_reset(void) {
  const long n = 30000;
  for (int tpm = 0; tpm < 2; tpm++) {
    lopts o = defaults();
    o.true_peak = tpm;
    o.gain = 10;
    modhost h;
    lim_make(&h, 48000, 2, 1000, o);
    float **x = chans(2, n), **y1 = chans(2, n), **y2 = chans(2, n);
    programme(x, 2, n, 48000, 1.0);
    lim_run(&h, x, y1, 2, n, 1000);
    const double m1 = result(&h, "gain_reduction_mean");
    h.m->reset(h.state);
    lim_run(&h, x, y2, 2, n, 1000);
    MH_CHECK(!memcmp(y1[0], y2[0], sizeof(float) * n) &&
                 !memcmp(y1[1], y2[1], sizeof(float) * n) &&
                 result(&h, "gain_reduction_mean") == m1,
             "a render after reset differs (true_peak %d)", tpm);
    mh_free(&h);
    chans_free(x, 2), chans_free(y1, 2), chans_free(y2, 2);
  }
}

static void test_bad(void) {
  lopts o = defaults();
  o.lookahead = 0.5;
  modhost h;
  MH_CHECK(lim_make(&h, 800, 1, 64, o) != 0 && strstr(h.err, "lookahead"),
           "a look-ahead under one frame must be refused: '%s'", h.err);
  mh_free(&h);
}

static void bench_limiter(long n) {
  const int blk = 4000;
  float **x = chans(2, LOOP), **y = chans(2, blk);
  programme(x, 2, LOOP, 48000, 1.0);
  for (int tpm = 1; tpm >= 0; tpm--) {
    double best = 1e9, best_cpu = 1e9, mgr = 0;
    for (int rep = 0; rep < 3; rep++) {
      lopts o = defaults();
      o.true_peak = tpm;
      o.gain = 6;
      modhost h;
      lim_make(&h, 48000, 2, blk, o);
      const double t0 = now(), c0 = cpu_now();
      for (long i = 0; i < n; i += blk) {
        const int k = n - i < blk ? (int)(n - i) : blk;
        const float *in[2] = {x[0] + i % LOOP, x[1] + i % LOOP};
        const float *const *ports[1] = {in};
        mh_process(&h, ports, y, k, i);
      }
      const double t = now() - t0, tc = cpu_now() - c0;
      best = t < best ? t : best;
      best_cpu = tc < best_cpu ? tc : best_cpu;
      mgr = result(&h, "gain_reduction_mean");
      mh_free(&h);
    }
    const double secs = (double)n / 48000;
    printf("bench: limiter (%s, +6 dB drive, mean reduction %.1f dB), %.0f s "
           "stereo 48 kHz: %.1f ms wall (%.0fx), %.1f ms cpu (%.0fx)\n",
           tpm ? "true peak" : "sample peak", mgr, secs, best * 1e3,
           secs / best, best_cpu * 1e3, secs / best_cpu);
  }
  chans_free(x, 2), chans_free(y, 2);
}

int main(void) {
  test_kernel_basics();
  test_kernel_sines();
  test_latency_passthrough();
  test_gain_curve();
  test_ceilings();
  test_blocks();
  test_finite();
  test_link();
  test_reset();
  test_bad();
#if defined(__SANITIZE_ADDRESS__)
  const long bench_n = 48000L * 10; /* sanitizers: a token run */
#else
  const long bench_n = 48000L * 300;
#endif
  bench_kernel(bench_n);
  bench_limiter(bench_n);
  if (mh_fails) fprintf(stderr, "%d check(s) failed\n", mh_fails);
  return mh_fails ? 1 : 0;
}
