/* test_delay.c - the delay line kernel (dsp/delayline) and the delay
 * module run directly: exact integer taps, Catmull-Rom properties, block
 * size and in-place independence with parameter changes, the silence
 * gate's exact zeros after the reported tail, hostile input, errors, and a
 * speed printout (not an assertion) on 300 s of 48 kHz stereo. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsp/delayline.h"
#include "modhost.h"

#define RATE 48000.0
#define MAXF 4096

/* ---- signals ------------------------------------------------------------ */

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

static uint64_t lcg = 7;
static double urand(void) { /* [-1, 1) */
  lcg = lcg * 6364136223846793005u + 1442695040888963407u;
  return (double)(lcg >> 11) * 0x1p-52 - 1.0;
}

/* Noise bursts with exact-zero gaps (so the gate opens and closes). */
static sig bursts(int nch, int n) {
  sig s = sig_new(nch, n);
  for (int i = 0; i < n; i++) {
    const int on = (i / 9000) % 3 != 2 && i < n - 30000;
    for (int c = 0; c < nch; c++) s.ch[c][i] = on ? (float)(0.5 * urand()) : 0;
  }
  return s;
}

/* ---- running the module ------------------------------------------------- */

typedef struct {
  int64_t at;
  const char *param;
  double value;
  int ramp;
} event;

/* Render in blocks of at most `block` frames, split at events (as the
 * graph does). inplace: the output buffers are the input's (a copy). */
static sig run(modhost *h, const sig *in, int block, const event *ev, int nev,
               int inplace) {
  const int total = in->n;
  sig out = sig_new(h->cfg.out_channels, total);
  sig work = *in;
  if (inplace) {
    work = sig_new(in->nch, total);
    for (int c = 0; c < in->nch; c++)
      memcpy(work.ch[c], in->ch[c], sizeof(float) * (size_t)total);
  }
  int e = 0;
  for (int pos = 0; pos < total;) {
    while (e < nev && ev[e].at == pos) {
      const int idx = mb_module_param_index(h->m, ev[e].param);
      h->m->set_param(h->state, idx, ev[e].value, ev[e].ramp);
      e++;
    }
    int n = total - pos < block ? total - pos : block;
    if (e < nev && ev[e].at - pos < n) n = (int)(ev[e].at - pos);
    const float *ip[MB_MAX_CHANNELS];
    const float *const *ipp[MB_MAX_PORTS] = {ip};
    float *op[MB_MAX_CHANNELS];
    for (int c = 0; c < in->nch; c++) ip[c] = work.ch[c] + pos;
    for (int c = 0; c < out.nch; c++)
      op[c] = (inplace && c < work.nch ? work.ch[c] : out.ch[c]) + pos;
    mh_process(h, ipp, op, n, pos);
    pos += n;
  }
  if (inplace) {
    for (int c = 0; c < out.nch && c < work.nch; c++)
      memcpy(out.ch[c], work.ch[c], sizeof(float) * (size_t)total);
    sig_free(&work);
  }
  return out;
}

typedef struct {
  const char *name;
  double value;
} setting;

static int make(modhost *h, const setting *set, int nset, const char *note,
                int nch) {
  mh_init(h, "delay", RATE, MAXF);
  for (int i = 0; i < nset; i++) mh_set(h, set[i].name, set[i].value);
  if (note) h->strings[mb_module_param_index(h->m, "note")] = note;
  const int ch[MB_MAX_PORTS] = {nch};
  return mh_create(h, ch);
}

static int sig_bits_equal(const sig *a, const sig *b) {
  if (a->nch != b->nch || a->n != b->n) return 0;
  for (int c = 0; c < a->nch; c++)
    if (memcmp(a->ch[c], b->ch[c], sizeof(float) * (size_t)a->n)) return 0;
  return 1;
}

static int unclean(const sig *s, long *at) {
  for (int c = 0; c < s->nch; c++)
    for (int i = 0; i < s->n; i++) {
      const float v = s->ch[c][i];
      if (!isfinite(v) || (v != 0 && fabsf(v) < FLT_MIN)) {
        *at = i;
        return 1;
      }
    }
  return 0;
}

/* ---- kernel ------------------------------------------------------------- */

static void test_kernel(void) {
  float w[4];
  mb_delayline_weights(0.0, w);
  MH_CHECK(w[0] == 0 && w[1] == 0 && w[2] == 1 && w[3] == 0,
           "weights at frac 0: %g %g %g %g (want exactly 0 0 1 0)", w[0], w[1],
           w[2], w[3]);
  double worst_sum = 0;
  for (int k = 1; k < 1000; k++) {
    mb_delayline_weights(k / 1000.0, w);
    const double sum = (double)w[0] + w[1] + w[2] + w[3];
    worst_sum = fmax(worst_sum, fabs(sum - 1));
  }
  MH_CHECK(worst_sum < 3e-7, "weights sum to 1 (float): worst %.2e",
           worst_sum);

  /* A line written through several wraps reads back every integer delay
   * exactly, and a straight line at any fractional delay (Catmull-Rom
   * reproduces first-degree polynomials). */
  mb_delayline d;
  MH_CHECK(mb_delayline_init(&d, 100) == MB_OK, "init");
  MH_CHECK(d.len == 128, "len %lld for 100 frames (power of two >= 103)",
           (long long)d.len);
  int bad_int = 0, bad_block = 0;
  double worst_lin = 0;
  float ref[1200], blk[64];
  for (int i = 0; i < 1200; i++) {
    ref[i] = (float)(0.001 * i - 0.3);
    if (i >= 110) {
      for (int k = 1; k <= 100; k++)
        if (mb_delayline_read(&d, k) != ref[i - k]) bad_int++;
      for (double dl = 2.0; dl < 100; dl += 0.37) {
        const double want = 0.001 * (i - dl) - 0.3;
        worst_lin = fmax(worst_lin, fabs(mb_delayline_read(&d, dl) - want));
      }
      /* block reads of the next 20 writes, integer and fractional */
      if (i % 7 == 0) {
        const int n = 20;
        mb_delayline_read_block(&d, 40, NULL, blk, n);
        for (int j = 0; j < n; j++)
          if (blk[j] != ref[i + j - 40]) bad_block++;
        mb_delayline_weights(0.25, w);
        mb_delayline_read_block(&d, 40, w, blk, n);
        for (int j = 0; j < n; j++)
          if (fabs(blk[j] - (0.001 * (i + j - 40.25) - 0.3)) > 2e-6)
            bad_block++;
      }
    }
    if (i % 2) {
      mb_delayline_push(&d, ref[i]);
    } else { /* the block writer, one sample at a time and across the end */
      mb_delayline_write_block(&d, &ref[i], 1);
    }
  }
  MH_CHECK(bad_int == 0, "integer taps 1..100 exact through 9 wraps: %d bad",
           bad_int);
  MH_CHECK(worst_lin < 2e-6, "straight line at fractional delays: worst "
           "error %.2e (float rounding of values near 1)", worst_lin);
  MH_CHECK(bad_block == 0, "block reads equal the single reads: %d bad",
           bad_block);
  mb_delayline_write_zeros(&d, 300);
  int nonzero = 0;
  for (int k = 1; k <= 100; k++) nonzero += mb_delayline_read(&d, k) != 0;
  MH_CHECK(nonzero == 0, "write_zeros longer than the line clears it");
  mb_delayline_free(&d);

  /* The cubic's error on a 1 kHz sine at 48 kHz, fractional delay 0.5
   * (the worst place): Catmull-Rom's response there, not an assertion
   * copied from our output but a bound from its Taylor error: below
   * -60 dB re the tone. */
  MH_CHECK(mb_delayline_init(&d, 1000) == MB_OK, "init");
  double err = 0;
  for (int i = 0; i < 4000; i++) {
    if (i > 1100) {
      const double want = sin(2 * M_PI * 1000 * (i - 500.5) / RATE);
      err = fmax(err, fabs(mb_delayline_read(&d, 500.5) - want));
    }
    mb_delayline_push(&d, (float)sin(2 * M_PI * 1000 * i / RATE));
  }
  printf("Catmull-Rom at half a frame, 1 kHz / 48 kHz: peak error %.1f dB\n",
         20 * log10(err));
  MH_CHECK(err < 1e-3, "cubic read of a 1 kHz sine: error %.2e", err);
  mb_delayline_free(&d);
}

/* ---- module ------------------------------------------------------------- */

static void test_exact_and_echoes(void) {
  /* 250 ms at 48 kHz = 12000 frames, mix 1, feedback 0: a pure shift. */
  modhost h;
  const setting st[] = {{"time", 250}, {"feedback", 0}, {"mix", 1}};
  MH_CHECK(make(&h, st, 3, NULL, 2) == 0, "create: %s", h.err);
  sig in = bursts(2, 60000);
  sig out = run(&h, &in, 1000, NULL, 0, 0);
  int bad = 0;
  for (int c = 0; c < 2; c++)
    for (int i = 0; i < in.n; i++)
      bad += out.ch[c][i] != (i >= 12000 ? in.ch[c][i - 12000] : 0.0f);
  MH_CHECK(bad == 0, "250 ms = 12000 frames exact: %d samples differ", bad);
  sig_free(&out);
  sig_free(&in);
  mh_free(&h);

  /* Echo n of an impulse at feedback^n, exactly in float: the line holds
   * float, so the n-th product rounds; within 1e-6 relative. */
  const double fbs[] = {0.5, 0.9};
  for (int k = 0; k < 2; k++) {
    const setting s2[] = {{"time", 10}, {"feedback", fbs[k]}, {"mix", 1}};
    MH_CHECK(make(&h, s2, 3, NULL, 1) == 0, "create: %s", h.err);
    sig imp = sig_new(1, 480 * 12);
    imp.ch[0][0] = 1;
    out = run(&h, &imp, 333, NULL, 0, 0);
    double worst = 0;
    int stray = 0;
    for (int i = 0; i < imp.n; i++) {
      if (i % 480 == 0 && i > 0) {
        const double want = pow((float)fbs[k], i / 480 - 1);
        worst = fmax(worst, fabs(out.ch[0][i] / want - 1));
      } else {
        stray += out.ch[0][i] != 0;
      }
    }
    MH_CHECK(worst < 1e-6 && stray == 0,
             "feedback %g: echoes 0..10 at fb^n, worst relative error %.2e, "
             "%d stray samples",
             fbs[k], worst, stray);
    sig_free(&imp);
    sig_free(&out);
    mh_free(&h);
  }

  /* Tail: feedback 0.5, 100 ms (4800 frames): repeats until 0.5^n / (1 -
   * 0.5) < 1e-6 (a long input's overlapping repeats add up to twice its
   * peak): n = 21, so 22 slots of ceil(4800) + 2 frames, plus 4. */
  const setting s3[] = {{"time", 100}, {"feedback", 0.5}};
  MH_CHECK(make(&h, s3, 2, NULL, 2) == 0, "create: %s", h.err);
  const int64_t t = h.m->tail(h.state);
  MH_CHECK(t == 22 * 4802 + 4, "tail %lld frames (want %d)", (long long)t,
           22 * 4802 + 4);
  mh_free(&h);
}

/* The gate: after the input stops, the output is exact zeros from the
 * reported tail on, and everything before it that the gate cut was below
 * -120 dB of the input's peak. */
static void test_gate(void) {
  const struct {
    double time, fb, hp, lp;
    int pp;
  } cases[] = {{100, 0.5, 0, 0, 0},    {37.3, 0.9, 0, 0, 0},
               {10, 0.9, 200, 3000, 0}, {25.1, 0.8, 40, 0, 1},
               {3, 0.95, 500, 500, 0}};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    modhost h;
    const setting st[] = {{"time", cases[k].time}, {"feedback", cases[k].fb},
                          {"mix", 1},              {"highpass", cases[k].hp},
                          {"lowpass", cases[k].lp}, {"pingpong", cases[k].pp}};
    MH_CHECK(make(&h, st, 6, NULL, 2) == 0, "create: %s", h.err);
    const int64_t t = h.m->tail(h.state);
    const int burst = 2400;
    sig in = sig_new(2, burst + (int)t + 48000);
    for (int i = 0; i < burst; i++)
      in.ch[0][i] = in.ch[1][i] = (float)(i % 50 < 25 ? 1 : -1); /* square */
    sig out = run(&h, &in, 4096, NULL, 0, 0);
    const int64_t end = burst + t; /* last input frame is burst - 1 */
    double late = 0;
    int nonzero_after = 0;
    long at = -1;
    for (int c = 0; c < 2; c++)
      for (int64_t i = 0; i < in.n; i++) {
        const double v = fabs(out.ch[c][i]);
        if (i >= end - (int64_t)(cases[k].time * 48) && i < end)
          late = fmax(late, v);
        if (i >= end && v != 0) nonzero_after++;
      }
    MH_CHECK(nonzero_after == 0 && !unclean(&out, &at),
             "time %g fb %g hp %g lp %g pp %d: tail %lld frames, %d nonzero "
             "after it",
             cases[k].time, cases[k].fb, cases[k].hp, cases[k].lp,
             cases[k].pp, (long long)t, nonzero_after);
    MH_CHECK(late < 1e-6, "... the last delay-time before the gate peaks at "
             "%.1f dB re full scale (< -120)", 20 * log10(late + 1e-300));
    sig_free(&in);
    sig_free(&out);
    mh_free(&h);
  }
}

/* Same bits for any block size and in place, through time glides, ramps
 * of feedback and mix, filter changes, a bpm change under a note, the gate
 * closing and opening. */
static void test_blocks(void) {
  const event ev[] = {
      {5000, "time", 180.37, 480},  {20000, "feedback", 0.8, 480},
      {20000, "mix", 0.6, 480},     {31000, "time", 90, 32},
      {31032, "time", 91.5, 32},    {31064, "time", 93.25, 32},
      {40000, "lowpass", 3000, 0},  {41000, "highpass", 150, 0},
      {50000, "glide", 0, 0},       {50001, "time", 33.3, 480},
      {60000, "glide", 300, 0},     {60000, "time", 250, 480},
      {70500, "bpm", 97, 480},      {71000, "feedback", 0.0, 480},
      {90000, "feedback", 0.95, 0}, {95000, "time", 5, 480},
  };
  const int nev = sizeof ev / sizeof ev[0];
  const int blocks[] = {4096, 1, 7, 64, 1000, 4095};
  const struct {
    const char *note;
    int pp, nch;
  } cases[] = {{NULL, 0, 2}, {NULL, 1, 2}, {"1/16t", 0, 1}, {NULL, 1, 1},
               {"3/16", 0, 3}};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    lcg = 11;
    sig in = bursts(cases[k].nch, 130000);
    sig ref = {0};
    int same = 1, inplace_same = 1;
    for (int b = 0; b < 6; b++) {
      modhost h;
      const setting st[] = {{"time", 120.5}, {"feedback", 0.5},
                            {"mix", 0.4},    {"pingpong", cases[k].pp},
                            {"glide", 80}};
      MH_CHECK(make(&h, st, 5, cases[k].note, cases[k].nch) == 0,
               "create: %s", h.err);
      sig out = run(&h, &in, blocks[b], ev, nev, 0);
      if (b == 0) {
        ref = out;
        long at;
        MH_CHECK(!unclean(&ref, &at), "clean output (first bad frame %ld)",
                 at);
      } else {
        same &= sig_bits_equal(&ref, &out);
        sig_free(&out);
      }
      mh_free(&h);
      if (b == 3 && (!cases[k].pp || cases[k].nch == 2)) {
        MH_CHECK(make(&h, st, 5, cases[k].note, cases[k].nch) == 0,
                 "create: %s", h.err);
        out = run(&h, &in, 64, ev, nev, 1);
        inplace_same = sig_bits_equal(&ref, &out);
        sig_free(&out);
        mh_free(&h);
      }
    }
    MH_CHECK(same, "note %s pingpong %d, %d ch: blocks 4096/1/7/64/1000/4095 "
             "bit-identical", cases[k].note ? cases[k].note : "-",
             cases[k].pp, cases[k].nch);
    MH_CHECK(inplace_same, "... and in place (output over the input)");
    sig_free(&ref);
    sig_free(&in);
  }
}

static void test_hostile(void) {
  const int n = 48000 * 4;
  const char *names[] = {"silence", "1e-30", "DC", "square", "burst"};
  for (int s = 0; s < 5; s++) {
    sig in = sig_new(2, n);
    for (int i = 0; i < n; i++)
      for (int c = 0; c < 2; c++) {
        float v = 0;
        if (s == 1) v = 1e-30f;
        if (s == 2 && i < n / 2) v = 0.5f;
        if (s == 3 && i < n / 2) v = (i / 24) % 2 ? 1.0f : -1.0f;
        if (s == 4 && i < 2400) v = (float)(0.5 * urand());
        in.ch[c][i] = v;
      }
    for (int pp = 0; pp < 2; pp++) {
      modhost h;
      const setting st[] = {{"time", 7.77}, {"feedback", 0.99}, {"mix", 0.5},
                            {"highpass", 20}, {"lowpass", 18000},
                            {"pingpong", pp}};
      MH_CHECK(make(&h, st, 6, NULL, 2) == 0, "create: %s", h.err);
      sig out = run(&h, &in, 1000, NULL, 0, 0);
      long at = -1;
      MH_CHECK(!unclean(&out, &at), "%s, pingpong %d: no NaN/Inf/subnormal "
               "(first bad frame %ld)", names[s], pp, at);
      sig_free(&out);
      mh_free(&h);
    }
    sig_free(&in);
  }
}

static void test_errors(void) {
  modhost h;
  const char *bad[] = {"1/0", "abc", "1/4x", "/4", "1/", "0/4", "65/4",
                       "1/512", "-1/4", "1/4.t"};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    const int rc = make(&h, NULL, 0, bad[k], 2);
    MH_CHECK(rc != 0 && strstr(h.err, bad[k]) && strstr(h.err, "note"),
             "note \"%s\" refused naming it: %s", bad[k], h.err);
    mh_free(&h);
  }
  const char *good[] = {"1/4", " 1/8. ", "1/16t", "3/16", "1/2..", "1/4T"};
  const double ms[] = {500, 375, 1000.0 / 12, 375, 1750, 1000.0 / 3};
  for (size_t k = 0; k < sizeof good / sizeof good[0]; k++) {
    const setting st[] = {{"feedback", 0}, {"mix", 1}, {"glide", 0}};
    MH_CHECK(make(&h, st, 3, good[k], 1) == 0, "note \"%s\": %s", good[k],
             h.err);
    /* the delay it gives: where an impulse comes back */
    sig imp = sig_new(1, 96000);
    imp.ch[0][0] = 1;
    sig out = run(&h, &imp, 4096, NULL, 0, 0);
    double sum = 0, cen = 0;
    for (int i = 0; i < out.n; i++) sum += out.ch[0][i], cen += i * out.ch[0][i];
    cen /= sum;
    MH_CHECK(fabs(cen - ms[k] * 48) < 1e-3, "note \"%s\" at 120 bpm: echo "
             "centroid at %.4f frames (want %.4f)", good[k], cen, ms[k] * 48);
    sig_free(&imp);
    sig_free(&out);
    mh_free(&h);
  }
  const setting slow[] = {{"bpm", 20}};
  MH_CHECK(make(&h, slow, 1, "1/1", 2) != 0 && strstr(h.err, "10000"),
           "a whole note at 20 bpm (12 s) refused: %s", h.err);
  mh_free(&h);
  const setting hp[] = {{"highpass", 22000}};
  MH_CHECK(make(&h, hp, 1, NULL, 2) != 0 && strstr(h.err, "highpass"),
           "highpass 22 kHz at 48 kHz refused: %s", h.err);
  mh_free(&h);
  const setting pp[] = {{"pingpong", 1}};
  MH_CHECK(make(&h, pp, 1, NULL, 3) != 0 && strstr(h.err, "pingpong"),
           "pingpong on 3 channels refused: %s", h.err);
  mh_free(&h);
  MH_CHECK(make(&h, pp, 1, NULL, 1) == 0 && h.cfg.out_channels == 2,
           "pingpong on mono gives stereo");
  mh_free(&h);
}

static double now(void) { /* CPU time of this thread */
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void speed(void) {
#if defined(__SANITIZE_ADDRESS__)
  const int secs = 20; /* sanitizers are slow; the figure means nothing */
#else
  const int secs = 300;
#endif
  const int n = secs * 48000;
  sig in = sig_new(2, n);
  for (int i = 0; i < n; i++)
    for (int c = 0; c < 2; c++) in.ch[c][i] = (float)(0.3 * urand());
  const struct {
    const char *what;
    setting st[5];
    int nst;
    int sweep; /* time automated on the host's 32-frame grid */
  } cases[] = {
      {"defaults (250 ms, fb 0.4, mix 0.3)", {{"time", 250}}, 1, 0},
      {"fractional 250.01 ms (cubic)", {{"time", 250.01}}, 1, 0},
      {"filters hp 100 + lp 5000", {{"highpass", 100}, {"lowpass", 5000}}, 2, 0},
      {"pingpong", {{"pingpong", 1}}, 1, 0},
      {"time automated (always gliding)", {{"time", 250}}, 1, 1},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    modhost h;
    MH_CHECK(make(&h, cases[k].st, cases[k].nst, NULL, 2) == 0, "create");
    sig out = sig_new(2, MAXF);
    const int block = cases[k].sweep ? 32 : MAXF;
    const int tidx = mb_module_param_index(h.m, "time");
    const double t0 = now();
    for (int pos = 0; pos < n; pos += block) {
      const int m = n - pos < block ? n - pos : block;
      if (cases[k].sweep) /* a 0.5 Hz wobble of +-20 ms */
        h.m->set_param(h.state, tidx, 250 + 20 * sin(M_PI * pos / 48000.0),
                       32);
      const float *ip[2] = {in.ch[0] + pos, in.ch[1] + pos};
      const float *const *ipp[MB_MAX_PORTS] = {ip};
      mh_process(&h, ipp, out.ch, m, pos);
    }
    const double dt = now() - t0;
    printf("speed: %-36s %d s stereo 48 kHz: %.3f s CPU (%.0fx real time)\n",
           cases[k].what, secs, dt, secs / dt);
    sig_free(&out);
    mh_free(&h);
  }
  sig_free(&in);
}

int main(void) {
  test_kernel();
  test_exact_and_echoes();
  test_gate();
  test_blocks();
  test_hostile();
  test_errors();
  speed();
  if (mh_fails) {
    fprintf(stderr, "%d checks failed\n", mh_fails);
    return 1;
  }
  printf("all delay checks passed\n");
  return 0;
}
