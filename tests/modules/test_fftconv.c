/* test_fftconv.c - the partitioned FFT convolution kernel against a direct
 * convolution computed here in double:
 *   out[n] = sum_m h[m] in[n - B - m]   (B = block = the reported latency)
 * for FIR lengths and block sizes that are and are not powers of two,
 * streamed in irregular chunks; residual below -100 dB relative to the
 * reference peak. Also: exact latency (an impulse through a delayed unit
 * FIR), identical results for any chunking and in place, the FIR
 * crossfade (its timing and its law), reset, one FIR per channel, no
 * NaN/Inf/subnormal output, and a speed figure (printed, not asserted).
 * Then its first user, the eq in linear phase, through modhost: latency
 * formula, in place = out of place, reset = fresh, and its speed. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsp/fftconv.h"
#include "modhost.h" /* MH_CHECK */

static uint32_t rng = 2463534242u;
static double urand(void) { /* xorshift32, uniform in [-1, 1) */
  rng ^= rng << 13, rng ^= rng >> 17, rng ^= rng << 5;
  return rng / 2147483648.0 - 1.0;
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

/* Stream n frames through c in chunks: `chunk` frames each, or (chunk <= 0)
 * pseudo-random lengths 1..3B. */
static void stream(mb_fftconv *c, float **x, float **y, int nch, long n,
                   int chunk) {
  long pos = 0;
  const int B = mb_fftconv_block(c);
  while (pos < n) {
    long k = chunk > 0 ? chunk : 1 + (long)((urand() + 1) * 0.5 * 3 * B);
    if (k > n - pos) k = n - pos;
    const float *ip[32];
    float *op[32];
    for (int ch = 0; ch < nch; ch++) ip[ch] = x[ch] + pos, op[ch] = y[ch] + pos;
    mb_fftconv_process(c, ip, op, (int)k);
    pos += k;
  }
}

/* Direct convolution delayed by d: ref[n] = sum_m h[m] x[n - d - m]. */
static void direct(const float *x, long n, const float *h, int taps, int d,
                   double *ref) {
  for (long i = 0; i < n; i++) {
    double s = 0;
    const long j0 = i - d;
    for (int m = 0; m < taps && m <= j0; m++) s += (double)h[m] * x[j0 - m];
    ref[i] = s;
  }
}

/* Residual of y against ref in dB relative to ref's peak. */
static double residual_db(const float *y, const double *ref, long n) {
  double e = 0, p = 0;
  for (long i = 0; i < n; i++) {
    e = fmax(e, fabs(y[i] - ref[i]));
    p = fmax(p, fabs(ref[i]));
  }
  return e == 0 ? -400 : 20 * log10(e / p);
}

/* The exact-result test over many shapes. */
static void test_direct(void) {
  static const int shapes[][2] = {
      /* taps, block */
      {1, 1},     {1, 64},    {7, 3},     {100, 64},   {64, 64},
      {65, 64},   {1000, 256}, {1023, 1024}, {3000, 100}, {4097, 1024},
      {2500, 777}, {5000, 4096}, {12345, 2048},
  };
  double worst = -400;
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const int taps = shapes[s][0], B = shapes[s][1];
    for (int irs = 1; irs <= 2; irs++) {
      const int nch = 2;
      const long n = 2L * taps + 4L * B + 321;
      float **x = chans(nch, n), **y = chans(nch, n);
      float *h[2];
      for (int r = 0; r < 2; r++) {
        h[r] = malloc(sizeof(float) * (size_t)taps);
        /* a decaying noise FIR, like a reverb's or an EQ's */
        for (int m = 0; m < taps; m++)
          h[r][m] = (float)(urand() * exp(-3.0 * m / taps));
      }
      for (int ch = 0; ch < nch; ch++)
        for (long i = 0; i < n; i++) x[ch][i] = (float)urand();
      mb_fftconv *c = mb_fftconv_new(nch, irs, taps, B);
      MH_CHECK(c != NULL, "new(%d taps, block %d)", taps, B);
      if (!c) continue;
      MH_CHECK(mb_fftconv_latency(c) == B, "latency %d, block %d",
               mb_fftconv_latency(c), B);
      for (int r = 0; r < irs; r++) mb_fftconv_set_ir(c, r, h[r], taps, 0);
      stream(c, x, y, nch, n, 0);
      double *ref = malloc(sizeof(double) * (size_t)n);
      for (int ch = 0; ch < nch; ch++) {
        direct(x[ch], n, h[irs == 1 ? 0 : ch], taps, B, ref);
        const double r = residual_db(y[ch], ref, n);
        MH_CHECK(r < -100, "%d taps, block %d, %d FIR(s), ch %d: residual "
                 "%.1f dB", taps, B, irs, ch, r);
        worst = fmax(worst, r);
        /* the first B frames are exactly silent (latency) */
        int silent = 1;
        for (int i = 0; i < B && i < n; i++) silent &= y[ch][i] == 0;
        MH_CHECK(silent, "%d taps, block %d: output before the latency",
                 taps, B);
      }
      free(ref);
      mb_fftconv_free(c);
      free(h[0]), free(h[1]);
      chans_free(x, nch), chans_free(y, nch);
    }
  }
  printf("direct convolution: worst residual %.1f dB re peak (13 shapes, "
         "1..12345 taps, blocks 1..4096)\n", worst);
}

/* An impulse at frame 37 through h = delta[m - d] comes out at exactly
 * 37 + B + d, with unit height, and nothing else above float rounding. */
static void test_latency(void) {
  static const int shapes[][3] = {{256, 1024, 0}, {256, 1024, 700},
                                  {100, 333, 250}, {4096, 16383, 8191}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const int B = shapes[s][0], taps = shapes[s][1], d = shapes[s][2];
    const long n = 37 + B + taps + 500;
    float **x = chans(1, n), **y = chans(1, n);
    x[0][37] = 1;
    float *h = calloc((size_t)taps, sizeof(float));
    h[d] = 1;
    mb_fftconv *c = mb_fftconv_new(1, 1, taps, B);
    mb_fftconv_set_ir(c, 0, h, taps, 0);
    stream(c, x, y, 1, n, 100);
    long at = 0;
    double other = 0;
    for (long i = 0; i < n; i++)
      if (fabs(y[0][i]) > fabs(y[0][at])) at = i;
    for (long i = 0; i < n; i++)
      if (i != at) other = fmax(other, fabs(y[0][i]));
    MH_CHECK(at == 37 + B + d,
             "block %d, delay %d: impulse at %ld, expected %d", B, d, at,
             37 + B + d);
    MH_CHECK(fabs(y[0][at] - 1) < 1e-6 && other < 1e-6,
             "block %d, delay %d: peak %.9f, largest other %g", B, d,
             y[0][at], other);
    mb_fftconv_free(c);
    free(h);
    chans_free(x, 1), chans_free(y, 1);
  }
}

/* Chunks of 1, 64, 1000, 4096 and random lengths, and in place: the same
 * samples bit for bit (the partition grid does not move). */
static void test_chunking(void) {
  const int taps = 3001, B = 512, nch = 3;
  const long n = 20000;
  float **x = chans(nch, n);
  for (int ch = 0; ch < nch; ch++)
    for (long i = 0; i < n; i++) x[ch][i] = (float)urand();
  float *h = malloc(sizeof(float) * taps);
  for (int m = 0; m < taps; m++) h[m] = (float)(urand() / (1 + m));
  static const int chunks[] = {4096, 1, 64, 1000, 0, -1 /* in place */};
  float **ref = NULL;
  for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
    float **y = chans(nch, n);
    mb_fftconv *c = mb_fftconv_new(nch, 1, taps, B);
    mb_fftconv_set_ir(c, 0, h, taps, 0);
    if (chunks[k] < 0) {
      for (int ch = 0; ch < nch; ch++) memcpy(y[ch], x[ch], sizeof(float) * n);
      stream(c, y, y, nch, n, 1000);
    } else {
      stream(c, x, y, nch, n, chunks[k]);
    }
    mb_fftconv_free(c);
    if (!ref) {
      ref = y;
      continue;
    }
    int same = 1;
    for (int ch = 0; ch < nch; ch++)
      same &= memcmp(y[ch], ref[ch], sizeof(float) * n) == 0;
    MH_CHECK(same, "chunk %d differs from chunk 4096", chunks[k]);
    chans_free(y, nch);
  }
  chans_free(ref, nch), chans_free(x, nch);
  free(h);
}

/* A crossfaded FIR change: the new FIR takes over at the first block
 * computed after the call; that block's B output frames are
 * (1 - g) yA + g yB with g = (i + 1)/B; before it, exactly yA (the old
 * FIR's output); after it, yB. yA and yB are direct convolutions. */
static void test_crossfade(void) {
  const int taps = 700, B = 256;
  const long n = 8000, at = 3000; /* set_ir after frame 2999 */
  float **x = chans(1, n), **y = chans(1, n);
  for (long i = 0; i < n; i++) x[0][i] = (float)urand();
  float *ha = malloc(sizeof(float) * taps), *hb = malloc(sizeof(float) * taps);
  for (int m = 0; m < taps; m++) {
    ha[m] = (float)(urand() * exp(-5.0 * m / taps));
    hb[m] = (float)(urand() * exp(-2.0 * m / taps));
  }
  mb_fftconv *c = mb_fftconv_new(1, 1, taps, B);
  mb_fftconv_set_ir(c, 0, ha, taps, 0);
  float *ip[1] = {x[0]}, *op[1] = {y[0]};
  mb_fftconv_process(c, (const float *const *)ip, op, (int)at);
  const int until = mb_fftconv_until_block(c);
  MH_CHECK(until == B - (int)(at % B), "until_block %d, expected %d", until,
           (int)(B - at % B));
  mb_fftconv_set_ir(c, 0, hb, taps, 1);
  ip[0] = x[0] + at, op[0] = y[0] + at;
  mb_fftconv_process(c, (const float *const *)ip, op, (int)(n - at));
  mb_fftconv_free(c);
  double *ya = malloc(sizeof(double) * n), *yb = malloc(sizeof(double) * n);
  direct(x[0], n, ha, taps, B, ya);
  direct(x[0], n, hb, taps, B, yb);
  /* The block completed at frame (at + until) is played from there on. */
  const long x0 = at + until, x1 = x0 + B;
  double eb = 0, ex = 0, ea = 0, p = 0;
  for (long i = 0; i < n; i++) {
    double r;
    if (i < x0) r = ya[i];
    else if (i < x1) {
      const double g = (double)(i - x0 + 1) / B;
      r = ya[i] + (yb[i] - ya[i]) * g;
    } else r = yb[i];
    const double e = fabs(y[0][i] - r);
    if (i < x0) ea = fmax(ea, e);
    else if (i < x1) ex = fmax(ex, e);
    else eb = fmax(eb, e);
    p = fmax(p, fabs(r));
  }
  MH_CHECK(20 * log10(fmax(ea, 1e-30) / p) < -100 &&
               20 * log10(fmax(ex, 1e-30) / p) < -100 &&
               20 * log10(fmax(eb, 1e-30) / p) < -100,
           "crossfade: residual before %.1f, during %.1f, after %.1f dB",
           20 * log10(fmax(ea, 1e-30) / p), 20 * log10(fmax(ex, 1e-30) / p),
           20 * log10(fmax(eb, 1e-30) / p));
  free(ya), free(yb), free(ha), free(hb);
  chans_free(x, 1), chans_free(y, 1);
}

/* reset() forgets the history: the output after it equals a fresh
 * convolver's, bit for bit. */
static void test_reset(void) {
  const int taps = 1500, B = 128, nch = 2;
  const long n = 6000;
  float **x = chans(nch, n), **y = chans(nch, n), **z = chans(nch, n);
  for (int ch = 0; ch < nch; ch++)
    for (long i = 0; i < n; i++) x[ch][i] = (float)urand();
  float *h = malloc(sizeof(float) * taps);
  for (int m = 0; m < taps; m++) h[m] = (float)urand();
  mb_fftconv *c = mb_fftconv_new(nch, 1, taps, B);
  mb_fftconv_set_ir(c, 0, h, taps, 0);
  stream(c, x, y, nch, 3333, 100);
  mb_fftconv_reset(c);
  stream(c, x, y, nch, n, 77);
  mb_fftconv *d = mb_fftconv_new(nch, 1, taps, B);
  mb_fftconv_set_ir(d, 0, h, taps, 0);
  stream(d, x, z, nch, n, 4096);
  int same = 1;
  for (int ch = 0; ch < nch; ch++)
    same &= memcmp(y[ch], z[ch], sizeof(float) * n) == 0;
  MH_CHECK(same, "output after reset differs from a fresh convolver's");
  mb_fftconv_free(c), mb_fftconv_free(d);
  free(h);
  chans_free(x, nch), chans_free(y, nch), chans_free(z, nch);
}

/* No NaN, Inf or subnormal for silence, 1e-30, DC, a full-scale square and
 * a burst then silence, through a long decaying FIR. */
static void test_finite(void) {
  const int taps = 9001, B = 1024;
  const long n = 60000;
  float *h = malloc(sizeof(float) * taps);
  for (int m = 0; m < taps; m++)
    h[m] = (float)(urand() * exp(-20.0 * m / taps));
  static const char *const names[] = {"silence", "1e-30", "DC", "square",
                                      "burst"};
  for (int s = 0; s < 5; s++) {
    float **x = chans(1, n), **y = chans(1, n);
    for (long i = 0; i < n; i++) {
      float v = 0;
      switch (s) {
      case 1: v = 1e-30f; break;
      case 2: v = 1; break;
      case 3: v = (i / 50) % 2 ? 1.0f : -1.0f; break;
      case 4: v = i < 3000 ? (float)urand() : 0; break;
      }
      x[0][i] = v;
    }
    mb_fftconv *c = mb_fftconv_new(1, 1, taps, B);
    mb_fftconv_set_ir(c, 0, h, taps, 0);
    stream(c, x, y, 1, n, 1000);
    mb_fftconv_free(c);
    long bad = 0;
    for (long i = 0; i < n; i++)
      bad += !isfinite(y[0][i]) || (y[0][i] != 0 && fabsf(y[0][i]) < FLT_MIN);
    MH_CHECK(bad == 0, "%s: %ld non-finite or subnormal samples", names[s],
             bad);
    chans_free(x, 1), chans_free(y, 1);
  }
  free(h);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Speed (printed, not asserted): 300 s of 48 kHz stereo through FIRs of
 * 14401 taps (the eq's default at 48 kHz) with several block sizes. Set
 * FFTCONV_BENCH=1 for the full 14.4 M frames; the default is 30 s. */
static void bench(void) {
  const long total = getenv("FFTCONV_BENCH") ? 14400000L : 1440000L;
  const int taps = 14401, chunk = 4096, nch = 2;
  float **x = chans(nch, chunk), **y = chans(nch, chunk);
  for (int ch = 0; ch < nch; ch++)
    for (int i = 0; i < chunk; i++) x[ch][i] = (float)urand();
  float *h = malloc(sizeof(float) * taps);
  for (int m = 0; m < taps; m++) h[m] = (float)(urand() * exp(-8.0 * m / taps));
  static const int blocks[] = {1024, 2048, 4096, 8192, 16384};
  printf("speed, %d taps, stereo 48 kHz, %.0f s of audio:", taps,
         total / 48000.0);
  for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) {
    mb_fftconv *c = mb_fftconv_new(nch, 1, taps, blocks[b]);
    mb_fftconv_set_ir(c, 0, h, taps, 0);
    const double t0 = now();
    for (long pos = 0; pos < total; pos += chunk)
      mb_fftconv_process(c, (const float *const *)x, y, chunk);
    const double t = now() - t0;
    printf(" block %d: %.0fx;", blocks[b], total / 48000.0 / t);
    mb_fftconv_free(c);
  }
  printf("\n");
  free(h);
  chans_free(x, nch), chans_free(y, nch);
}

/* The eq with phase = "linear" and the four mastering bands (HPF 30 Hz,
 * low shelf +1.5 dB 100 Hz, bell -2 dB 300 Hz q 1, high shelf +2 dB
 * 10 kHz), stereo 48 kHz. */
static void eq_setup(modhost *h, int maxf) {
  mh_init(h, "eq", 48000, maxf);
  mh_set(h, "phase", 1);
  mh_set(h, "type1", 4), mh_set(h, "freq1", 30), mh_set(h, "q1", 0.7071);
  mh_set(h, "type2", 2), mh_set(h, "freq2", 100), mh_set(h, "gain2", 1.5);
  mh_set(h, "type3", 1), mh_set(h, "freq3", 300), mh_set(h, "gain3", -2);
  mh_set(h, "q3", 1);
  mh_set(h, "type4", 3), mh_set(h, "freq4", 10000), mh_set(h, "gain4", 2);
  const int in_ch[1] = {2};
  if (mh_create(h, in_ch) != 0) {
    fprintf(stderr, "eq create failed: %s\n", h->err);
    exit(1);
  }
}

/* Run the eq over n frames in blocks of `block`; gain3 is set to -8 dB
 * with a 480-frame ramp at frame 30011 (a FIR rebuild and crossfade). */
static void eq_run(modhost *h, float **x, float **y, long n, int block) {
  const int g3 = mb_module_param_index(h->m, "gain3");
  for (long pos = 0; pos < n;) {
    long k = n - pos < block ? n - pos : block;
    if (pos < 30011 && pos + k > 30011) k = 30011 - pos;
    if (pos == 30011) h->m->set_param(h->state, g3, -8, 480);
    const float *ip[2] = {x[0] + pos, x[1] + pos};
    float *op[2] = {y[0] + pos, y[1] + pos};
    const float *const *ports[1] = {ip};
    mh_process(h, ports, op, (int)k, pos);
    pos += k;
  }
}

static void test_eq_linear(void) {
  const long n = 100000;
  float **x = chans(2, n), **y = chans(2, n), **z = chans(2, n);
  for (int ch = 0; ch < 2; ch++)
    for (long i = 0; i < n; i++) x[ch][i] = (float)(0.5 * urand());
  modhost h;
  eq_setup(&h, 4096);
  /* 300 ms at 48 kHz: taps 14401, centre 7200, block 4096 */
  const int lat = h.m->latency(h.state);
  MH_CHECK(lat == 7200 + 4096, "eq linear latency %d, expected 11296", lat);
  eq_run(&h, x, y, n, 1000);
  /* in place, other blocks, after a reset: the same samples */
  for (int ch = 0; ch < 2; ch++) memcpy(z[ch], x[ch], sizeof(float) * n);
  /* back to -2 dB, then reset: the FIR is rebuilt at once (no crossfade) */
  h.m->set_param(h.state, mb_module_param_index(h.m, "gain3"), -2, 0);
  h.m->reset(h.state);
  eq_run(&h, z, z, n, 64);
  int same = 1;
  for (int ch = 0; ch < 2; ch++)
    same &= memcmp(y[ch], z[ch], sizeof(float) * n) == 0;
  MH_CHECK(same, "eq linear: reset + in place + blocks of 64 differ from a "
                 "fresh run in blocks of 1000");
  mh_free(&h);
  chans_free(x, 2), chans_free(y, 2), chans_free(z, 2);
}

/* Speed of the 4-band linear eq (printed, not asserted): CPU time, so the
 * figure does not depend on what else the machine runs. FFTCONV_BENCH=1
 * for the full 300 s (14.4 M frames). */
static void bench_eq(void) {
  const long total = getenv("FFTCONV_BENCH") ? 14400000L : 1440000L;
  const int chunk = 4096;
  float **x = chans(2, chunk), **y = chans(2, chunk);
  for (int ch = 0; ch < 2; ch++)
    for (int i = 0; i < chunk; i++) x[ch][i] = (float)(0.5 * urand());
  modhost h;
  eq_setup(&h, chunk);
  const float *const *ports[1] = {(const float *const *)x};
  const double t0 = now();
  for (long pos = 0; pos < total; pos += chunk)
    mh_process(&h, ports, y, chunk, pos);
  const double t = now() - t0;
  printf("speed, 4-band linear eq (300 ms, 14401 taps), stereo 48 kHz, %.0f s "
         "of audio: %.3f s CPU, %.0fx real time\n", total / 48000.0, t,
         total / 48000.0 / t);
  mh_free(&h);
  chans_free(x, 2), chans_free(y, 2);
}

int main(void) {
  test_direct();
  test_latency();
  test_chunking();
  test_crossfade();
  test_reset();
  test_finite();
  bench();
  test_eq_linear();
  bench_eq();
  if (mh_fails) {
    fprintf(stderr, "%d check(s) failed\n", mh_fails);
    return 1;
  }
  printf("all fftconv checks passed\n");
  return 0;
}
