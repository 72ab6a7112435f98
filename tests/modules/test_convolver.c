/* test_convolver.c - the non-uniformly partitioned convolution engine
 * (modules/dsp/fftconv.h, mb_partconv) and the convolver module.
 *
 * Engine, against a direct convolution computed here in double:
 *   out_o[n] = sum over paths to o of sum_m h_ir[m] in_i[n - L - D - m]
 * (L the latency, D the pre-delay), for FIR lengths 1..20000, zero and
 * block latency, pre-delays, the automatic plan and forced ladders (head
 * only, one level, three levels), mono, stereo, one-to-two and true-stereo
 * (2 x 2, four FIRs) paths, streamed in irregular calls: residual below
 * -110 dB re the reference's RMS (float FFT rounding is about -130 dB).
 * Also: an impulse through a unit FIR comes out at exactly L + D; any
 * split of the stream and in-place processing give the same bits; output
 * is exactly zero once the input has been silent for L + D + taps frames
 * (and not before: the true tail is there); the delayed input for a dry
 * path; reset = fresh; no NaN/Inf/subnormal on hostile inputs.
 * Module (through modhost, IR files written here with libsndfile): the
 * channel layouts, errors naming the path, latency/tail values, mix and
 * gain (out = dry (1 - mix) + wet mix gain, dry delayed in block mode),
 * ramps landing exactly, the resampled response's scaling (file rate /
 * graph rate) and the length cut.
 * Speed (printed, not asserted): a 2 s stereo response on 300 s of 48 kHz
 * stereo through the module, zero and block modes, CPU time, with the
 * cost model's estimate beside it. */
#include <float.h>
#include <math.h>
#include <sndfile.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dsp/fftconv.h"
#include "modhost.h"

static uint32_t rng = 2463534242u;
static double urand(void) { /* xorshift32, uniform in [-1, 1) */
  rng ^= rng << 13, rng ^= rng >> 17, rng ^= rng << 5;
  return rng / 2147483648.0 - 1.0;
}

static float **chans(int nch, long n) {
  float **p = calloc((size_t)nch, sizeof *p);
  for (int c = 0; c < nch; c++)
    p[c] = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
  return p;
}

static void chans_free(float **p, int nch) {
  for (int c = 0; c < nch; c++)
    free(p[c]);
  free(p);
}

static float *decaying(int taps, double decay) { /* noise FIR */
  float *h = malloc(sizeof(float) * (size_t)(taps > 0 ? taps : 1));
  for (int m = 0; m < taps; m++)
    h[m] = (float)(urand() * exp(-decay * m / taps));
  return h;
}

/* Stream n frames in calls of `chunk` frames, or (chunk <= 0) pseudo-random
 * lengths 1..maxf. */
static void stream(mb_partconv *c, float **x, float **y, int nin, int nout,
                   long n, int chunk, int maxf) {
  long pos = 0;
  while (pos < n) {
    long k = chunk > 0 ? chunk : 1 + (long)((urand() + 1) * 0.5 * maxf);
    if (k > maxf)
      k = maxf;
    if (k > n - pos)
      k = n - pos;
    const float *ip[MB_MAX_CHANNELS];
    float *op[MB_MAX_CHANNELS];
    for (int i = 0; i < nin; i++)
      ip[i] = x[i] + pos;
    for (int o = 0; o < nout; o++)
      op[o] = y[o] + pos;
    mb_partconv_process(c, ip, op, (int)k);
    pos += k;
  }
}

/* ref_o[n] = sum over paths to o: sum_m h[m] x_i[n - d - m] (double). */
static void direct(float **x, long n, float **h, int taps,
                   const mb_partconv_path *paths, int np, int o, long d,
                   double *ref) {
  memset(ref, 0, sizeof(double) * (size_t)n);
  for (int p = 0; p < np; p++) {
    if (paths[p].out != o)
      continue;
    const float *xi = x[paths[p].in], *hh = h[paths[p].ir];
    for (long i = 0; i < n; i++) {
      double s = 0;
      const long j0 = i - d;
      for (int m = 0; m < taps && m <= j0; m++)
        s += (double)hh[m] * xi[j0 - m];
      ref[i] += s;
    }
  }
}

static double residual_db(const float *y, const double *ref, long n) {
  double e = 0, p = 0;
  for (long i = 0; i < n; i++) {
    e += (y[i] - ref[i]) * (y[i] - ref[i]);
    p += ref[i] * ref[i];
  }
  if (p == 0)
    return e == 0 ? -400 : 400;
  return e == 0 ? -400 : 10 * log10(e / p);
}

static void plan_str(const mb_partconv *c, char *buf, size_t len) {
  int head, b[16], k[16];
  const int nl = mb_partconv_plan(c, &head, b, k, 16);
  int at = snprintf(buf, len, "head %d", head);
  for (int i = 0; i < nl && at < (int)len; i++)
    at += snprintf(buf + at, len - (size_t)at, " + %dx%d", b[i], k[i]);
}

/* Channel layouts used by the engine tests. */
typedef struct layout {
  const char *name;
  int nin, nout, nirs, np;
  mb_partconv_path p[4];
} layout;
static const layout LAYOUTS[] = {
    {"mono", 1, 1, 1, 1, {{0, 0, 0}}},
    {"stereo, mono FIR", 2, 2, 1, 2, {{0, 0, 0}, {1, 1, 0}}},
    {"stereo FIR", 2, 2, 2, 2, {{0, 0, 0}, {1, 1, 1}}},
    {"mono to stereo", 1, 2, 2, 2, {{0, 0, 0}, {0, 1, 1}}},
    {"true stereo", 2, 2, 4, 4, {{0, 0, 0}, {0, 1, 1}, {1, 0, 2}, {1, 1, 3}}},
};

static void test_exact(void) {
  static const struct {
    int taps, delay, lat, lay;
    unsigned sizes;
  } cases[] = {
      {1, 0, 0, 0, 0},
      {7, 0, 0, 0, 0},
      {300, 0, 0, 1, 0},
      {3000, 0, 0, 2, 0},
      {3000, 0, 0, 3, 0},
      {3000, 0, 0, 4, 0},
      {20000, 0, 0, 2, 0},
      {20000, 0, 1024, 4, 0},
      {5000, 123, 0, 2, 0},
      {5000, 5000, 0, 3, 0},
      {5000, 77, 256, 1, 0},
      {4000, 0, 1000, 2, 0},
      /* forced ladders: one level only (block mode), three levels with a
       * head, a head with a pre-delay longer than a partition */
      {3000, 0, 256, 2, 1u << 8},
      {6000, 0, 0, 2, (1u << 6) | (1u << 9) | (1u << 11)},
      {6000, 300, 0, 4, (1u << 5) | (1u << 10)},
  };
  double worst = -400;
  for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
    const int taps = cases[s].taps, delay = cases[s].delay, lat = cases[s].lat;
    const layout *L = &LAYOUTS[cases[s].lay];
    const int maxf = 700;
    const long n = 2L * taps + delay + lat + 5000;
    float **x = chans(L->nin, n), **y = chans(L->nout, n);
    float *h[4];
    for (int r = 0; r < L->nirs; r++)
      h[r] = decaying(taps, 3.0);
    for (int i = 0; i < L->nin; i++)
      for (long t = 0; t < n - taps - delay - lat - 1000; t++)
        x[i][t] = (float)urand();
    mb_partconv *c =
        mb_partconv_new(L->nin, L->nout, (const float *const *)h, L->nirs, taps,
                        L->p, L->np, delay, lat, maxf, cases[s].sizes);
    MH_CHECK(c != NULL, "new: %d taps, delay %d, latency %d, %s", taps, delay,
             lat, L->name);
    if (!c)
      continue;
    char plan[200];
    plan_str(c, plan, sizeof plan);
    MH_CHECK(mb_partconv_latency(c) == lat, "latency %d",
             mb_partconv_latency(c));
    stream(c, x, y, L->nin, L->nout, n, 0, maxf);
    double *ref = malloc(sizeof(double) * (size_t)n);
    for (int o = 0; o < L->nout; o++) {
      direct(x, n, h, taps, L->p, L->np, o, lat + delay, ref);
      const double r = residual_db(y[o], ref, n);
      worst = fmax(worst, r);
      MH_CHECK(r < -110,
               "%d taps, delay %d, latency %d, %s (%s), out %d: "
               "residual %.1f dB",
               taps, delay, lat, L->name, plan, o, r);
      /* before the latency and pre-delay: nothing but FFT rounding (the
       * levels' blocks straddle the start), 120 dB below the signal */
      double rms = 0, pre = 0;
      for (long t = 0; t < n; t++)
        rms += ref[t] * ref[t];
      rms = sqrt(rms / n);
      for (long t = 0; t < lat + delay && t < n; t++)
        pre = fmax(pre, fabs(y[o][t]));
      MH_CHECK(pre <= 1e-6 * rms,
               "%d taps, delay %d, latency %d: %.3g "
               "before L + D (RMS %.3g)",
               taps, delay, lat, pre, rms);
      /* exact zeros once the input's last frame is taps + L + D back */
      long last = -1;
      for (long t = 0; t < n; t++)
        for (int i = 0; i < L->nin; i++)
          if (x[i][t] != 0)
            last = t;
      long nonzero_after = 0;
      for (long t = last + lat + delay + taps; t < n; t++)
        nonzero_after += y[o][t] != 0;
      MH_CHECK(nonzero_after == 0,
               "%s, %d taps: %ld non-zero samples after "
               "the tail",
               L->name, taps, nonzero_after);
      /* ... and the last frame of the true tail is there (not gated) */
      const long end = last + lat + delay + taps - 1;
      MH_CHECK(fabs(y[o][end] - ref[end]) <= 1e-6 * rms &&
                   (ref[end] == 0) == (y[o][end] == 0),
               "%s: last tail frame %.9g, reference %.9g", L->name, y[o][end],
               ref[end]);
    }
    printf("  %5d taps, delay %4d, latency %4d, %-17s %-34s residual %.1f dB\n",
           taps, delay, lat, L->name, plan, worst);
    free(ref);
    mb_partconv_free(c);
    for (int r = 0; r < L->nirs; r++)
      free(h[r]);
    chans_free(x, L->nin), chans_free(y, L->nout);
  }
  printf("engine vs direct convolution: worst residual %.1f dB re RMS "
         "(%zu cases)\n",
         worst, sizeof cases / sizeof cases[0]);
}

/* An impulse at frame 37 through h = delta[m - k] comes out at exactly
 * 37 + L + D + k with unit height. */
static void test_latency(void) {
  static const int shapes[][4] = {/* taps, k, delay, latency */
                                  {1, 0, 0, 0},           {5000, 0, 0, 0},
                                  {5000, 4321, 0, 0},     {5000, 0, 100, 0},
                                  {5000, 10, 0, 4096},    {30000, 20000, 7, 64},
                                  {100, 99, 2000, 1000},  {5000, 4999, 0, 0},
                                  {5000, 4999, 300, 512}, {1, 0, 0, 0}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const int taps = shapes[s][0], k = shapes[s][1], D = shapes[s][2],
              L = shapes[s][3];
    const long n = 37 + L + D + taps + 500;
    float **x = chans(1, n), **y = chans(1, n);
    x[0][37] = 1;
    float *h = calloc((size_t)taps, sizeof(float));
    h[k] = 1;
    const mb_partconv_path p = {0, 0, 0};
    mb_partconv *c = mb_partconv_new(1, 1, (const float *const *)&h, 1, taps,
                                     &p, 1, D, L, 512, 0);
    stream(c, x, y, 1, 1, n, 100, 512);
    long at = 0;
    double other = 0;
    for (long i = 0; i < n; i++)
      if (fabs(y[0][i]) > fabs(y[0][at]))
        at = i;
    for (long i = 0; i < n; i++)
      if (i != at)
        other = fmax(other, fabs(y[0][i]));
    MH_CHECK(at == 37 + L + D + k,
             "tap %d, delay %d, latency %d: impulse at %ld, expected %d", k, D,
             L, at, 37 + L + D + k);
    MH_CHECK(fabs(y[0][at] - 1) < 1e-6 && other < 1e-6,
             "tap %d: peak %.9f, largest other %g", k, y[0][at], other);
    mb_partconv_free(c);
    free(h);
    chans_free(x, 1), chans_free(y, 1);
  }
}

/* Calls of 1, 64, 1000, 4096 frames, random lengths, and in place: the
 * same bits; and the delayed input (the dry path) is the input. */
static void test_chunking(void) {
  const int taps = 9001, lat = 1000;
  const long n = 30000;
  const layout *L = &LAYOUTS[4];
  float **x = chans(2, n);
  for (int i = 0; i < 2; i++)
    for (long t = 0; t < 20000; t++)
      x[i][t] = (float)urand();
  float *h[4];
  for (int r = 0; r < 4; r++)
    h[r] = decaying(taps, 4.0);
  for (int mode = 0; mode < 2; mode++) {
    const int lt = mode ? lat : 0;
    static const int chunks[] = {4096, 1, 64, 1000, 0, -1 /* in place */};
    float **ref = NULL;
    for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
      float **y = chans(2, n);
      mb_partconv *c = mb_partconv_new(2, 2, (const float *const *)h, 4, taps,
                                       L->p, 4, 50, lt, 4096, 0);
      if (chunks[k] < 0) {
        for (int i = 0; i < 2; i++)
          memcpy(y[i], x[i], sizeof(float) * n);
        stream(c, y, y, 2, 2, n, 1000, 4096);
      } else {
        stream(c, x, y, 2, 2, n, chunks[k], 4096);
      }
      if (chunks[k] == 1000) { /* the dry path: input delayed by lt */
        const float *d = mb_partconv_input(c, 1, lt, 1000);
        MH_CHECK(memcmp(d, x[1] + n - 1000 - lt, sizeof(float) * 1000) == 0,
                 "delayed input (latency %d) is not the input", lt);
      }
      mb_partconv_free(c);
      if (!ref) {
        ref = y;
        continue;
      }
      int same = 1;
      for (int i = 0; i < 2; i++)
        same &= memcmp(y[i], ref[i], sizeof(float) * n) == 0;
      MH_CHECK(same, "latency %d: calls of %d differ from calls of 4096", lt,
               chunks[k]);
      chans_free(y, 2);
    }
    chans_free(ref, 2);
  }
  for (int r = 0; r < 4; r++)
    free(h[r]);
  chans_free(x, 2);
}

/* reset() forgets the history: the output after it equals a fresh
 * engine's, bit for bit. */
static void test_reset(void) {
  const int taps = 6000;
  const long n = 20000;
  float **x = chans(2, n), **y = chans(2, n), **z = chans(2, n);
  for (int i = 0; i < 2; i++)
    for (long t = 0; t < n; t++)
      x[i][t] = (float)urand();
  float *h[2] = {decaying(taps, 3), decaying(taps, 3)};
  const layout *L = &LAYOUTS[2];
  mb_partconv *c = mb_partconv_new(2, 2, (const float *const *)h, 2, taps, L->p,
                                   2, 10, 0, 512, 0);
  stream(c, x, y, 2, 2, 3333, 100, 512);
  mb_partconv_reset(c);
  stream(c, x, y, 2, 2, n, 77, 512);
  mb_partconv *d = mb_partconv_new(2, 2, (const float *const *)h, 2, taps, L->p,
                                   2, 10, 0, 512, 0);
  stream(d, x, z, 2, 2, n, 512, 512);
  int same = 1;
  for (int i = 0; i < 2; i++)
    same &= memcmp(y[i], z[i], sizeof(float) * n) == 0;
  MH_CHECK(same, "output after reset differs from a fresh engine's");
  mb_partconv_free(c), mb_partconv_free(d);
  free(h[0]), free(h[1]);
  chans_free(x, 2), chans_free(y, 2), chans_free(z, 2);
}

static long count_bad(float **y, int nch, long n) {
  long bad = 0;
  for (int c = 0; c < nch; c++)
    for (long i = 0; i < n; i++)
      bad += !isfinite(y[c][i]) || (y[c][i] != 0 && fabsf(y[c][i]) < FLT_MIN);
  return bad;
}

/* No NaN, Inf or subnormal for silence, 1e-30, DC, a full-scale square and
 * a burst then silence, through a long decaying FIR with tiny taps. */
static void test_finite(void) {
  const int taps = 20000;
  const long n = 80000;
  float *h = decaying(taps, 30.0); /* ends near 1e-13: tiny products */
  static const char *const names[] = {"silence", "1e-30", "DC", "square",
                                      "burst"};
  for (int s = 0; s < 5; s++) {
    float **x = chans(1, n), **y = chans(1, n);
    for (long i = 0; i < n; i++) {
      float v = 0;
      switch (s) {
      case 1:
        v = 1e-30f;
        break;
      case 2:
        v = 1;
        break;
      case 3:
        v = (i / 50) % 2 ? 1.0f : -1.0f;
        break;
      case 4:
        v = i < 2400 ? (float)urand() : 0.0f;
        break;
      }
      x[0][i] = v;
    }
    const mb_partconv_path p = {0, 0, 0};
    mb_partconv *c = mb_partconv_new(1, 1, (const float *const *)&h, 1, taps,
                                     &p, 1, 0, 0, 1024, 0);
    stream(c, x, y, 1, 1, n, 1000, 1024);
    const long bad = count_bad(y, 1, n);
    MH_CHECK(bad == 0, "%s: %ld NaN/Inf/subnormal samples", names[s], bad);
    if (s == 4) {
      long nz = 0;
      for (long i = 2400 + taps; i < n; i++)
        nz += y[0][i] != 0;
      MH_CHECK(nz == 0, "burst: %ld non-zero samples after the tail", nz);
    }
    mb_partconv_free(c);
    chans_free(x, 1), chans_free(y, 1);
  }
  free(h);
}

/* ---- the module ------------------------------------------------------- */

static char dir[256];

static void write_wav(const char *name, float **ch, int nch, long n, int rate) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  SF_INFO info = {.samplerate = rate,
                  .channels = nch,
                  .format = SF_FORMAT_WAV | SF_FORMAT_FLOAT};
  SNDFILE *f = sf_open(path, SFM_WRITE, &info);
  float *buf = malloc(sizeof(float) * (size_t)(n * nch));
  for (long i = 0; i < n; i++)
    for (int c = 0; c < nch; c++)
      buf[i * nch + c] = ch[c][i];
  sf_writef_float(f, buf, n);
  sf_close(f);
  free(buf);
}

static const char *path_of(const char *name) {
  static char p[4][512];
  static int k = 0;
  k = (k + 1) % 4;
  snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
  return p[k];
}

static int create_conv(modhost *h, const char *file, int in_ch, double rate,
                       int maxf) {
  mh_init(h, "convolver", rate, maxf);
  h->strings[mb_module_param_index(h->m, "path")] = file ? path_of(file) : NULL;
  const int in[1] = {in_ch};
  return mh_create(h, in);
}

/* Run n frames of x through the module in calls of `chunk`. */
static void run_module(modhost *h, float **x, float **y, long n, int chunk) {
  for (long pos = 0; pos < n; pos += chunk) {
    const int k = n - pos < chunk ? (int)(n - pos) : chunk;
    const float *ip[MB_MAX_CHANNELS];
    float *op[MB_MAX_CHANNELS];
    for (int c = 0; c < h->cfg.in_channels[0]; c++)
      ip[c] = x[c] + pos;
    for (int c = 0; c < h->cfg.out_channels; c++)
      op[c] = y[c] + pos;
    const float *const *ins[1] = {ip};
    mh_process(h, ins, op, k, pos);
  }
}

static void test_module(void) {
  const int M = 3000, rate = 48000;
  float **ir = chans(4, M);
  for (int c = 0; c < 4; c++)
    for (int m = 0; m < M; m++)
      ir[c][m] = (float)(urand() * exp(-4.0 * m / M));
  write_wav("ir1.wav", ir, 1, M, rate);
  write_wav("ir2.wav", ir, 2, M, rate);
  write_wav("ir3.wav", ir, 3, M, rate);
  write_wav("ir4.wav", ir, 4, M, rate);
  modhost h;

  /* errors name the file */
  static const char *const bad[] = {"missing.wav", "adir", "notaudio.wav",
                                    "ir3.wav"};
  mkdir(path_of("adir"), 0700);
  FILE *f = fopen(path_of("notaudio.wav"), "w");
  fputs("not a sound file\n", f);
  fclose(f);
  for (int i = 0; i < 4; i++) {
    const int r = create_conv(&h, bad[i], 2, rate, 512);
    const char *base = strrchr(path_of(bad[i]), '/') + 1;
    MH_CHECK(r != 0 && strstr(h.err, base) != NULL,
             "%s: refused with a message naming it: \"%s\"", bad[i], h.err);
    mh_free(&h);
  }
  MH_CHECK(create_conv(&h, NULL, 2, rate, 512) != 0 && strstr(h.err, "path"),
           "no path: \"%s\"", h.err);
  mh_free(&h);
  MH_CHECK(create_conv(&h, "ir2.wav", 3, rate, 512) != 0 &&
               strstr(h.err, "ir2.wav") && strstr(h.err, "3 channels"),
           "stereo response on 3 channels: \"%s\"", h.err);
  mh_free(&h);

  /* layouts: output channels and each output against the direct sum */
  static const struct {
    const char *file;
    int in, out;
  } lay[] = {{"ir1.wav", 1, 1}, {"ir1.wav", 3, 3}, {"ir2.wav", 1, 2},
             {"ir2.wav", 2, 2}, {"ir4.wav", 1, 2}, {"ir4.wav", 2, 2}};
  const long n = 9000;
  float **x = chans(3, n);
  for (int c = 0; c < 3; c++)
    for (long t = 0; t < 5000; t++)
      x[c][t] = (float)urand();
  double *ref = malloc(sizeof(double) * n), *tmp = malloc(sizeof(double) * n);
  for (size_t k = 0; k < sizeof lay / sizeof lay[0]; k++) {
    if (create_conv(&h, lay[k].file, lay[k].in, rate, 1000) != 0) {
      MH_CHECK(0, "%s on %d channels: %s", lay[k].file, lay[k].in, h.err);
      mh_free(&h);
      continue;
    }
    MH_CHECK(h.cfg.out_channels == lay[k].out, "%s on %d: %d outputs",
             lay[k].file, lay[k].in, h.cfg.out_channels);
    float **y = chans(h.cfg.out_channels, n);
    run_module(&h, x, y, n, 1000);
    const int irch = lay[k].file[2] - '0';
    for (int o = 0; o < lay[k].out; o++) {
      /* expected: sum of x_i * h_k over the documented routing */
      memset(ref, 0, sizeof(double) * n);
      for (int i = 0; i < lay[k].in; i++) {
        int hk = -1;
        if (irch == 1)
          hk = i == o ? 0 : -1;
        else if (irch == 2)
          hk = (lay[k].in == 1 || i == o) ? o : -1;
        const mb_partconv_path p = {i, 0, 0};
        if (irch == 4) {
          /* L->L, L->R, R->L, R->R; a mono input feeds both sides */
          const int srcs = lay[k].in == 1 ? 2 : 1;
          for (int sd = 0; sd < srcs; sd++) {
            const int side = lay[k].in == 1 ? sd : i;
            float *hh[1] = {ir[side * 2 + o]};
            direct(x, n, hh, M, &p, 1, 0, 0, tmp);
            for (long t = 0; t < n; t++)
              ref[t] += tmp[t];
          }
          continue;
        }
        if (hk < 0)
          continue;
        float *hh[1] = {ir[hk]};
        direct(x, n, hh, M, &p, 1, 0, 0, tmp);
        for (long t = 0; t < n; t++)
          ref[t] += tmp[t];
      }
      const double r = residual_db(y[o], ref, n);
      MH_CHECK(r < -110, "%s on %d channels, output %d: residual %.1f dB",
               lay[k].file, lay[k].in, o, r);
    }
    MH_CHECK(h.m->tail(h.state) == M - 1, "tail %lld, expected %d",
             (long long)h.m->tail(h.state), M - 1);
    MH_CHECK(h.m->latency(h.state) == 0, "zero mode: latency %d",
             h.m->latency(h.state));
    chans_free(y, h.cfg.out_channels);
    mh_free(&h);
  }

  /* mix, gain, pre-delay, block mode: out = dry(n - L) (1 - mix) + gain mix
   * wet(n - L - D), against the engine-free direct sum */
  {
    mh_init(&h, "convolver", rate, 1000);
    h.strings[mb_module_param_index(h.m, "path")] = path_of("ir2.wav");
    mh_set(&h, "mix", 0.25);
    mh_set(&h, "gain", -6);
    mh_set(&h, "predelay", 10); /* 480 frames */
    mh_set(&h, "mode", 1);
    mh_set(&h, "block", 1000);
    const int in[1] = {2};
    MH_CHECK(mh_create(&h, in) == 0, "mix/gain: %s", h.err);
    MH_CHECK(h.m->latency(h.state) == 1000, "block mode: latency %d",
             h.m->latency(h.state));
    MH_CHECK(h.m->tail(h.state) == M - 1 + 480, "tail with pre-delay %lld",
             (long long)h.m->tail(h.state));
    float **y = chans(2, n);
    run_module(&h, x, y, n, 333);
    const double g = pow(10, -6 / 20.0);
    for (int o = 0; o < 2; o++) {
      const mb_partconv_path p = {o, 0, 0};
      float *hh[1] = {ir[o]};
      direct(x, n, hh, M, &p, 1, 0, 1000 + 480, ref);
      for (long t = 0; t < n; t++)
        ref[t] = ref[t] * 0.25 * g + (t >= 1000 ? 0.75 * x[o][t - 1000] : 0);
      const double r = residual_db(y[o], ref, n);
      MH_CHECK(r < -110,
               "mix 0.25, gain -6 dB, pre-delay 10 ms, block 1000, "
               "output %d: residual %.1f dB",
               o, r);
    }
    /* ramps land exactly: mix to 0 over 500 frames gives exactly the
     * delayed dry input afterwards */
    h.m->set_param(h.state, mb_module_param_index(h.m, "mix"), 0.0, 500);
    float **y2 = chans(2, 3000), **x2 = chans(2, 3000);
    for (int c = 0; c < 2; c++)
      for (int t = 0; t < 3000; t++)
        x2[c][t] = (float)urand();
    run_module(&h, x2, y2, 3000, 128);
    int exact = 1;
    for (int c = 0; c < 2; c++)
      for (int t = 1500; t < 3000; t++)
        exact &= y2[c][t] == x2[c][t - 1000];
    MH_CHECK(exact, "after a mix ramp to 0: the output is exactly the dry "
                    "input delayed by the latency");
    chans_free(y, 2), chans_free(y2, 2), chans_free(x2, 2);
    mh_free(&h);
  }

  /* a response at 24 kHz into a 48 kHz graph: resampled and scaled by
   * 24/48 so its DC gain (sum of taps) is kept: a 2001-tap moving average
   * (DC gain 1) stays a DC gain of 1 within 0.01 dB */
  {
    float **ma = chans(1, 2001);
    for (int m = 0; m < 2001; m++)
      ma[0][m] = 1.0f / 2001;
    write_wav("ma24k.wav", ma, 1, 2001, 24000);
    MH_CHECK(create_conv(&h, "ma24k.wav", 1, 48000, 1024) == 0, "24 kHz: %s",
             h.err);
    const long nn = 20000;
    float **dc = chans(1, nn), **y = chans(1, nn);
    for (long t = 0; t < nn; t++)
      dc[0][t] = 1;
    run_module(&h, dc, y, nn, 1024);
    const double gdb = 20 * log10(y[0][nn - 1]);
    MH_CHECK(fabs(gdb) < 0.01,
             "resampled 24 -> 48 kHz moving average: DC "
             "gain %.4f dB (expected 0)",
             gdb);
    MH_CHECK(h.m->tail(h.state) == 4002 - 1,
             "resampled length: tail %lld, "
             "expected %d",
             (long long)h.m->tail(h.state), 4001);
    chans_free(ma, 1), chans_free(dc, 1), chans_free(y, 1);
    mh_free(&h);
  }

  /* length cuts the response: 10 ms = 480 taps */
  {
    mh_init(&h, "convolver", rate, 512);
    h.strings[mb_module_param_index(h.m, "path")] = path_of("ir1.wav");
    mh_set(&h, "length", 10);
    const int in[1] = {1};
    MH_CHECK(mh_create(&h, in) == 0, "length: %s", h.err);
    MH_CHECK(h.m->tail(h.state) == 479, "length 10 ms: tail %lld",
             (long long)h.m->tail(h.state));
    float **y = chans(1, n);
    run_module(&h, x, y, n, 512);
    const mb_partconv_path p = {0, 0, 0};
    direct(x, n, ir, 480, &p, 1, 0, 0, ref);
    const double r = residual_db(y[0], ref, n);
    MH_CHECK(r < -110,
             "length 10 ms: residual %.1f dB against the first 480 "
             "taps",
             r);
    chans_free(y, 1);
    mh_free(&h);
  }
  free(ref), free(tmp);
  chans_free(x, 3), chans_free(ir, 4);
}

static double cpu_now(void) {
  struct timespec t;
  /* CPU time: the machine is shared, wall time would measure the others */
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A 2 s stereo response (decaying noise) on stereo at 48 kHz through the
 * module, 4096-frame calls; 300 s of audio (30 s under sanitizers, scaled). */
static void speed(void) {
#if defined(__SANITIZE_ADDRESS__)
  const double secs = 30;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  const double secs = 30;
#else
  const double secs = 300;
#endif
#else
  const double secs = 300;
#endif
  const int M = 96000, B = 4096;
  float **ir = chans(2, M);
  for (int c = 0; c < 2; c++)
    for (int m = 0; m < M; m++)
      ir[c][m] = (float)(0.1 * urand() * exp(-6.9 * m / M));
  write_wav("ir2s.wav", ir, 2, M, 48000);
  float **x = chans(2, B), **y = chans(2, B);
  for (int c = 0; c < 2; c++)
    for (int t = 0; t < B; t++)
      x[c][t] = (float)(0.3 * urand());
  static const struct {
    const char *name;
    int mode, block;
    double mix;
  } cfg[] = {
      {"zero latency", 0, 0, 1},         {"zero latency, mix 0.5", 0, 0, 0.5},
      {"block 1024", 1, 1024, 1},        {"block 4096", 1, 4096, 1},
      {"block 8192 (default)", 1, 0, 1}, {"block 16384", 1, 16384, 1}};
  printf("speed, 2 s stereo response, %.0f s of 48 kHz stereo:\n", secs);
  for (size_t k = 0; k < sizeof cfg / sizeof cfg[0]; k++) {
    modhost h;
    mh_init(&h, "convolver", 48000, B);
    h.strings[mb_module_param_index(h.m, "path")] = path_of("ir2s.wav");
    mh_set(&h, "mode", cfg[k].mode);
    if (cfg[k].block)
      mh_set(&h, "block", cfg[k].block);
    mh_set(&h, "mix", cfg[k].mix);
    const int in[1] = {2};
    if (mh_create(&h, in) != 0) {
      MH_CHECK(0, "speed: %s", h.err);
      continue;
    }
    const long frames = (long)(secs * 48000);
    const double t0 = cpu_now();
    for (long pos = 0; pos < frames; pos += B) {
      const float *const *ins[1] = {(const float *const *)x};
      mh_process(&h, ins, y, B, pos);
    }
    const double dt = cpu_now() - t0;
    /* the plan the module's engine has (the same arguments), and the
     * cost model's estimate beside the measured time */
    const int lat = h.m->latency(h.state);
    mb_partconv *e = mb_partconv_new(2, 2, (const float *const *)ir, 2, M,
                                     LAYOUTS[2].p, 2, 0, lat, B, 0);
    char plan[200] = "?";
    double model = 0;
    if (e)
      plan_str(e, plan, sizeof plan), model = mb_partconv_cost(e);
    mb_partconv_free(e);
    printf("  %-21s %.2f s CPU (%4.0fx real time; %5.1f ns/frame, model "
           "%5.1f; %s)\n",
           cfg[k].name, dt * 300 / secs, secs / dt, dt / frames * 1e9, model,
           plan);
    mh_free(&h);
  }
  chans_free(ir, 2), chans_free(x, 2), chans_free(y, 2);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/test_convolver.XXXXXX");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 2;
  }
  test_exact();
  test_latency();
  test_chunking();
  test_reset();
  test_finite();
  test_module();
  speed();
  static const char *const files[] = {"ir1.wav", "ir2.wav",      "ir3.wav",
                                      "ir4.wav", "notaudio.wav", "ma24k.wav",
                                      "ir2s.wav"};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
    remove(path_of(files[i]));
  rmdir(path_of("adir"));
  rmdir(dir);
  if (mh_fails) {
    printf("%d checks FAILED\n", mh_fails);
    return 1;
  }
  printf("all convolver checks passed\n");
  return 0;
}
