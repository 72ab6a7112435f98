/* test_reverb.c - the reverb module run directly: block-size and aliasing
 * independence with parameters ramping, exact silence, the tail ending in
 * exact zeros within tail() (also after a +200 dBFS input), no NaN, Inf or
 * subnormal on hostile input, channel layouts and errors, and a speed
 * figure on 300 s of 48 kHz stereo (printed, not asserted). Decay times,
 * correlation and levels are measured outside moonbus in
 * tests/acceptance/test_reverb.py. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "modhost.h"

#define FS 48000.0
#define MAXF 4096

static uint64_t lcg = 777;
static double urand(void) { /* [-1, 1) */
  lcg = lcg * 6364136223846793005u + 1442695040888963407u;
  return (double)(lcg >> 11) * 0x1p-52 - 1.0;
}

typedef struct {
  const char *name;
  double v;
} kv;

static int make(modhost *h, const kv *set, int nset, int nch, double rate) {
  mh_init(h, "reverb", rate, MAXF);
  for (int i = 0; i < nset; i++) mh_set(h, set[i].name, set[i].v);
  int ch[MB_MAX_PORTS] = {nch};
  return mh_create(h, ch);
}

/* A parameter change at an absolute frame, as the host makes them. */
typedef struct {
  long long at;
  const char *name;
  double v;
  int ramp;
} event;

/* Run n frames of nch-channel planar input through the module in blocks
 * drawn from `blocks` (cycled), splitting at events; stereo out.
 * inplace: the output buffers are the input buffers (stereo only). */
static void run(modhost *h, float **in, int nch, float **out, int n,
                const int *blocks, int nb, const event *ev, int nev,
                int inplace) {
  long long pos = 0;
  int bi = 0, ei = 0;
  while (pos < n) {
    while (ei < nev && ev[ei].at <= pos) {
      h->m->set_param(h->state, mb_module_param_index(h->m, ev[ei].name),
                      ev[ei].v, ev[ei].ramp);
      ei++;
    }
    long long m = blocks[bi++ % nb];
    if (m > n - pos) m = n - pos;
    if (ei < nev && ev[ei].at < pos + m) m = ev[ei].at - pos;
    const float *ip[MB_MAX_CHANNELS];
    float *op[2];
    for (int c = 0; c < nch; c++) ip[c] = in[c] + pos;
    if (inplace) {
      for (int c = 0; c < 2; c++) {
        memcpy(out[c] + pos, in[c] + pos, sizeof(float) * (size_t)m);
        op[c] = out[c] + pos;
        ip[c] = op[c];
      }
    } else {
      for (int c = 0; c < 2; c++) op[c] = out[c] + pos;
    }
    const float *const *ports[1] = {ip};
    mh_process(h, ports, op, (int)m, pos);
    pos += m;
  }
}

static int subnormals(float *const *x, int nch, int n) {
  int k = 0;
  for (int c = 0; c < nch; c++)
    for (int i = 0; i < n; i++)
      k += x[c][i] != 0 && fabsf(x[c][i]) < FLT_MIN;
  return k;
}

static int nonfinite(float *const *x, int nch, int n) {
  int k = 0;
  for (int c = 0; c < nch; c++)
    for (int i = 0; i < n; i++) k += !isfinite(x[c][i]);
  return k;
}

static float **alloc2(int n) {
  float **x = malloc(2 * sizeof *x);
  for (int c = 0; c < 2; c++) x[c] = calloc((size_t)n, sizeof(float));
  return x;
}
static void free2(float **x) {
  free(x[0]);
  free(x[1]);
  free(x);
}

/* 1. Blocks of 64, 1000, 4096 and an irregular cycle, with ramps of every
 * smoothed parameter crossing block edges, and in place: bit-identical. */
static void test_blocks(void) {
  const int n = (int)(4 * FS);
  float **in = alloc2(n);
  for (int i = 0; i < (int)(0.3 * FS); i++)
    for (int c = 0; c < 2; c++) in[c][i] = (float)(0.3 * urand());
  in[0][(int)(2.5 * FS)] = 0.9f;
  const event ev[] = {
      {1000, "rt60", 4.5, 480},      {7777, "mix", 0.8, 32},
      {12345, "width", 0.3, 1500},   {20000, "damping", 0.9, 32},
      {30001, "mod_depth", 1.5, 4000}, {40000, "diffusion", 0.2, 777},
      {50000, "high_freq", 3000, 96}, {60000, "low_mult", 2.5, 0},
      {70000, "mod_rate", 3, 0},     {80000, "high_mult", 0.7, 480},
      {90000, "low_freq", 80, 5000}, {100000, "rt60", 0.3, 0},
      {130000, "mix", 0.0, 0},       {140000, "mix", 1.0, 333},
  };
  const int nev = sizeof ev / sizeof *ev;
  const int b64[] = {64}, b1000[] = {1000}, b4096[] = {4096},
            odd[] = {1, 17, 300, 4096, 5, 999, 2, 64, 1023};
  const int *bl[] = {b64, b1000, b4096, odd, b1000};
  const int nbl[] = {1, 1, 1, 9, 1};
  const char *what[] = {"64", "1000", "4096", "irregular", "1000 in place"};
  float **ref = alloc2(n);
  for (int k = 0; k < 5; k++) {
    modhost h;
    const kv set[] = {{"rt60", 2}, {"predelay", 23}, {"mix", 0.5}};
    if (make(&h, set, 3, 2, FS)) {
      MH_CHECK(0, "create: %s", h.err);
      return;
    }
    float **out = k == 0 ? ref : alloc2(n);
    run(&h, in, 2, out, n, bl[k], nbl[k], ev, nev, k == 4);
    if (k > 0) {
      long diff = 0, first = -1;
      for (int c = 0; c < 2; c++)
        for (int i = 0; i < n; i++)
          if (memcmp(&out[c][i], &ref[c][i], sizeof(float))) {
            diff++;
            if (first < 0 || i < first) first = i;
          }
      MH_CHECK(diff == 0, "blocks %s vs 64: %ld samples differ, first at %ld",
               what[k], diff, first);
      printf("blocks %s: bit-identical to 64 (%s)\n", what[k],
             diff ? "NO" : "yes");
      free2(out);
    }
    mh_free(&h);
  }
  double e = 0;
  for (int i = (int)(0.3 * FS); i < n; i++) e += ref[0][i] * ref[0][i];
  MH_CHECK(e > 1e-3, "the wet tail is there (energy %g)", e);
  free2(ref);
  free2(in);
}

/* 2. Silence gives exact zeros; a constant 1e-30 (below -200 dBFS) wakes
 * nothing: out = dry (1 - mix) exactly as float arithmetic gives it. */
static void test_silence(void) {
  const int n = 20000;
  for (int k = 0; k < 2; k++) {
    float **in = alloc2(n), **out = alloc2(n);
    const float v = k ? 1e-30f : 0.0f;
    for (int i = 0; i < n; i++) in[0][i] = in[1][i] = v;
    modhost h;
    const kv set[] = {{"mix", 0.5}};
    make(&h, set, 1, 2, FS);
    const int b[] = {512};
    run(&h, in, 2, out, n, b, 1, NULL, 0, 0);
    int bad = 0;
    for (int c = 0; c < 2; c++)
      for (int i = 0; i < n; i++) bad += out[c][i] != 0.5f * v;
    MH_CHECK(bad == 0, "input %g: %d samples differ from dry x 0.5", v, bad);
    printf("constant %g in: out exactly dry x (1 - mix): %s\n", v,
           bad ? "NO" : "yes");
    mh_free(&h);
    free2(in);
    free2(out);
  }
}

/* 3. After an input ends, the output is exactly zero from some frame on,
 * that frame is within tail() of the input's end, and nothing subnormal,
 * NaN or Inf appears. Cases: an impulse at 0 dBFS (the state falls below
 * -200 dBFS and is cleared), a 0.5 s +200 dBFS noise (the tail's end clears
 * it), a full-scale square and DC with the longest settings. */
static void test_tail(void) {
  struct {
    const char *what;
    kv set[6];
    int nset;
    int sig; /* 0 impulse, 1 +60 dBFS noise, 2 square, 3 DC */
    double rate;
  } cs[] = {
      {"impulse, rt60 1", {{"rt60", 1}, {"mix", 1}}, 2, 0, FS},
      {"impulse, rt60 0.1 size 0, 44.1k", {{"rt60", 0.1}, {"size", 0},
                                            {"mix", 1}}, 3, 0, 44100},
      {"+200 dBFS noise, rt60 0.5", {{"rt60", 0.5}, {"mix", 1},
                                    {"predelay", 100}}, 3, 1, FS},
      {"square, rt60 3 low_mult 4 high_mult 4 diffusion 1",
       {{"rt60", 3}, {"low_mult", 4}, {"high_mult", 4}, {"diffusion", 1},
        {"mix", 1}, {"size", 1}}, 6, 2, 96000},
      {"DC, rt60 2 low_mult 4 damping 1",
       {{"rt60", 2}, {"low_mult", 4}, {"damping", 1}, {"mix", 1}}, 4, 3, FS},
  };
  for (size_t k = 0; k < sizeof cs / sizeof *cs; k++) {
    modhost h;
    if (make(&h, cs[k].set, cs[k].nset, 2, cs[k].rate)) {
      MH_CHECK(0, "%s: create: %s", cs[k].what, h.err);
      continue;
    }
    const long long tl = h.m->tail(h.state);
    const int sig_n = (int)(0.5 * cs[k].rate);
    const long long n = sig_n + tl + 2 * 4096;
    float **in = alloc2((int)n), **out = alloc2((int)n);
    for (int i = 0; i < sig_n; i++)
      for (int c = 0; c < 2; c++) {
        float v = 0;
        switch (cs[k].sig) {
        case 0: v = i == 0 && c == 0 ? 1.0f : 0.0f; break;
        case 1: v = (float)(1e10 * urand()); break;
        case 2: v = (i / 24) % 2 ? 1.0f : -1.0f; break;
        case 3: v = 0.5f; break;
        }
        in[c][i] = v;
      }
    const int b[] = {4096, 333};
    run(&h, in, 2, out, (int)n, b, 2, NULL, 0, 0);
    long long last = -1;
    for (long long i = 0; i < n; i++)
      if (out[0][i] != 0 || out[1][i] != 0) last = i;
    const int sub = subnormals(out, 2, (int)n), nf = nonfinite(out, 2, (int)n);
    double pk = 0;
    for (long long i = last - (long long)(0.05 * cs[k].rate); i <= last; i++)
      if (i >= 0) pk = fmax(pk, fmax(fabsf(out[0][i]), fabsf(out[1][i])));
    MH_CHECK(last >= 0 && last < sig_n + tl,
             "%s: last non-zero frame %lld after the input's end; tail() "
             "%lld",
             cs[k].what, last - sig_n, tl);
    MH_CHECK(sub == 0 && nf == 0, "%s: %d subnormal, %d NaN/Inf", cs[k].what,
             sub, nf);
    if (cs[k].sig != 1) /* the hot input is cut at the tail's end */
      MH_CHECK(pk < 1e-9,
               "%s: the last 50 ms before exact zero peak at %.1f dBFS "
               "(expected below -180)",
               cs[k].what, 20 * log10(pk));
    printf("%s: exact zero %.2f s after the input (tail() %.2f s), peak of "
           "the last 50 ms before it %.0f dBFS, %d subnormal, %d NaN/Inf\n",
           cs[k].what, (last + 1 - sig_n) / cs[k].rate, tl / cs[k].rate,
           pk > 0 ? 20 * log10(pk) : -INFINITY, sub, nf);
    mh_free(&h);
    free2(in);
    free2(out);
  }
}

/* 4. Layouts: mono in gives stereo out; mix 0 is the dry bit for bit (a
 * mono input on both channels), also in place; 3 channels are refused. */
static void test_layouts(void) {
  const int n = 30000;
  float **in = alloc2(n), **out = alloc2(n);
  for (int i = 0; i < n; i++) in[0][i] = (float)urand(), in[1][i] = 0;
  in[0][5] = 1e-40f; /* a subnormal input passes untouched at mix 0 */
  modhost h;
  const kv set[] = {{"mix", 0}};
  make(&h, set, 1, 1, FS);
  MH_CHECK(h.cfg.out_channels == 2, "mono in: %d channels out",
           h.cfg.out_channels);
  const int b[] = {700};
  run(&h, in, 1, out, n, b, 1, NULL, 0, 0);
  int bad = 0;
  for (int i = 0; i < n; i++)
    bad += memcmp(&out[0][i], &in[0][i], 4) || memcmp(&out[1][i], &in[0][i], 4);
  MH_CHECK(bad == 0, "mono, mix 0: %d samples differ from the input", bad);
  mh_free(&h);
  make(&h, set, 1, 2, FS);
  for (int i = 0; i < n; i++) in[1][i] = (float)urand();
  float **keep = alloc2(n);
  memcpy(keep[0], in[0], sizeof(float) * n);
  memcpy(keep[1], in[1], sizeof(float) * n);
  run(&h, in, 2, out, n, b, 1, NULL, 0, 1);
  bad = 0;
  for (int c = 0; c < 2; c++)
    for (int i = 0; i < n; i++) bad += memcmp(&out[c][i], &keep[c][i], 4);
  MH_CHECK(bad == 0, "stereo in place, mix 0: %d samples differ", bad);
  printf("mix 0: bit-exact dry (mono on both channels, stereo in place): %s\n",
         bad ? "NO" : "yes");
  mh_free(&h);
  mh_init(&h, "reverb", FS, MAXF);
  int ch3[MB_MAX_PORTS] = {3};
  MH_CHECK(mh_create(&h, ch3) != 0 && strstr(h.err, "mono or stereo"),
           "3 channels refused: '%s'", h.err);
  printf("3 channels: '%s'\n", h.err);
  free(h.state);
  free2(keep);
  free2(in);
  free2(out);
}

/* 5. Speed: 300 s of stereo noise at 48 kHz, mix 0.3, blocks of 4096 (the
 * network never sleeps). Printed, not asserted. */
static void test_speed(void) {
  const int n = (int)(300 * FS), blk = 4096;
  float *x[2], *y[2];
  for (int c = 0; c < 2; c++) {
    x[c] = malloc(sizeof(float) * blk);
    y[c] = malloc(sizeof(float) * blk);
    for (int i = 0; i < blk; i++) x[c][i] = (float)(0.25 * urand());
  }
  modhost h;
  const kv set[] = {{"mix", 0.3}};
  make(&h, set, 1, 2, FS);
  struct timespec t0, t1;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
  double acc = 0;
  for (int pos = 0; pos < n; pos += blk) {
    const float *ip[2] = {x[0], x[1]};
    const float *const *ports[1] = {ip};
    float *op[2] = {y[0], y[1]};
    mh_process(&h, ports, op, blk, pos);
    acc += y[0][7];
  }
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
  const double s = (double)(t1.tv_sec - t0.tv_sec) +
                   1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  printf("speed: 300 s stereo 48 kHz in %.3f s CPU (%.0fx real time)%s\n", s,
         300 / s, acc == 12345 ? "!" : "");
  mh_free(&h);
  for (int c = 0; c < 2; c++) free(x[c]), free(y[c]);
}

int main(void) {
  test_blocks();
  test_silence();
  test_tail();
  test_layouts();
  test_speed();
  if (mh_fails) {
    fprintf(stderr, "%d checks failed\n", mh_fails);
    return 1;
  }
  printf("all reverb checks passed\n");
  return 0;
}
