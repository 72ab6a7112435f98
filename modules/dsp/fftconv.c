/* fftconv.c - uniformly partitioned overlap-save convolution (see
 * fftconv.h for the method and its latency). */
/* GCC 12's -O2 uses the "very cheap" vectoriser cost model, which refuses
 * the complex multiply-add loops (they need an epilogue); the dynamic model
 * vectorises them. clang needs nothing. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=dynamic")
#endif

#include "dsp/fftconv.h"

#include <fftw3.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "mb_module.h"

/* Buffers are carved out of single allocations at offsets that are
 * multiples of 64 bytes, so every array handed to fftwf_execute_dft_* has
 * the alignment of the arrays the plans were made with (FFTW requires it). */
#define ALIGN_FLOATS 16

struct mb_fftconv {
  int nch, nirs, max_taps;
  int B, N, K; /* block, FFT size 2B, partitions */
  int nb;      /* bins: B + 1 */
  size_t ts;   /* stride of a time buffer, floats (>= N) */
  size_t cs;   /* stride of a spectrum, floats (>= 2 nb) */
  int fill;    /* frames of the current block gathered so far */
  int head;    /* delay-line slot of the newest input spectrum */
  fftwf_plan fwd, inv;
  float *xin;  /* per channel: previous block | current block (N) */
  float *outb; /* per channel: the B frames being played */
  float *fdl;  /* per channel: K input spectra */
  float *h;    /* per FIR: 2 slots of K spectra, already scaled by 1/N */
  float *acc, *acc2; /* output spectra (current FIR, pending FIR) */
  float *y, *y2;     /* their inverse transforms (N) */
  float *ibuf;       /* set_ir: one zero-padded partition (N) */
  int cur[MB_MAX_CHANNELS];  /* slot of each FIR in use */
  int pend[MB_MAX_CHANNELS]; /* a crossfade to the other slot is pending */
  int used[MB_MAX_CHANNELS][2]; /* non-zero partitions per FIR slot */
};

static size_t round_up(size_t n) {
  return (n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
}

static float *falloc(size_t n) {
  float *p = fftwf_malloc(sizeof(float) * (n ? n : 1));
  if (p) memset(p, 0, sizeof(float) * (n ? n : 1));
  return p;
}

static float *fir_spec(mb_fftconv *c, int ir, int slot, int k) {
  return c->h + (((size_t)ir * 2 + slot) * c->K + k) * c->cs;
}

static float *fdl_spec(mb_fftconv *c, int ch, int slot) {
  return c->fdl + ((size_t)ch * c->K + slot) * c->cs;
}

void mb_fftconv_free(mb_fftconv *c) {
  if (!c) return;
  if (c->fwd) fftwf_destroy_plan(c->fwd);
  if (c->inv) fftwf_destroy_plan(c->inv);
  float *bufs[] = {c->xin, c->outb, c->fdl, c->h, c->acc,
                   c->acc2, c->y, c->y2, c->ibuf};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    if (bufs[i]) fftwf_free(bufs[i]);
  fftwf_free(c);
}

mb_fftconv *mb_fftconv_new(int channels, int irs, int max_taps, int block) {
  if (channels < 1 || channels > MB_MAX_CHANNELS ||
      (irs != 1 && irs != channels) || max_taps < 1 || block < 1 ||
      block > (1 << 24))
    return NULL;
  mb_fftconv *c = fftwf_malloc(sizeof *c);
  if (!c) return NULL;
  memset(c, 0, sizeof *c);
  c->nch = channels, c->nirs = irs, c->max_taps = max_taps;
  c->B = block, c->N = 2 * block, c->nb = block + 1;
  c->K = (int)(((long long)max_taps + block - 1) / block);
  c->ts = round_up((size_t)c->N);
  c->cs = round_up(2 * (size_t)c->nb);
  const size_t nch = (size_t)channels, K = (size_t)c->K;
  c->xin = falloc(nch * c->ts);
  c->outb = falloc(nch * round_up((size_t)block));
  c->fdl = falloc(nch * K * c->cs);
  c->h = falloc((size_t)irs * 2 * K * c->cs);
  c->acc = falloc(c->cs);
  c->acc2 = falloc(c->cs);
  c->y = falloc(c->ts);
  c->y2 = falloc(c->ts);
  c->ibuf = falloc(c->ts);
  if (!c->xin || !c->outb || !c->fdl || !c->h || !c->acc || !c->acc2 ||
      !c->y || !c->y2 || !c->ibuf) {
    mb_fftconv_free(c);
    return NULL;
  }
  /* FFTW_ESTIMATE: no timing runs, so the plan (and the rounding) is the
   * same in every process; PRESERVE_INPUT: xin's second half is reused. */
  c->fwd = fftwf_plan_dft_r2c_1d(c->N, c->xin, (fftwf_complex *)c->fdl,
                                 FFTW_ESTIMATE | FFTW_PRESERVE_INPUT);
  c->inv = fftwf_plan_dft_c2r_1d(c->N, (fftwf_complex *)c->acc, c->y,
                                 FFTW_ESTIMATE | FFTW_DESTROY_INPUT);
  if (!c->fwd || !c->inv) {
    mb_fftconv_free(c);
    return NULL;
  }
  return c;
}

int mb_fftconv_latency(const mb_fftconv *c) { return c->B; }
int mb_fftconv_block(const mb_fftconv *c) { return c->B; }
int mb_fftconv_partitions(const mb_fftconv *c) { return c->K; }
int mb_fftconv_until_block(const mb_fftconv *c) { return c->B - c->fill; }

void mb_fftconv_set_ir(mb_fftconv *c, int ir, const float *taps, int n,
                       int crossfade) {
  if (ir < 0 || ir >= c->nirs) return;
  if (n > c->max_taps) n = c->max_taps;
  if (n < 0) n = 0;
  /* With a crossfade the new FIR goes to the slot not in use (replacing a
   * pending one); without, it overwrites the one in use. */
  const int slot = crossfade ? !c->cur[ir] : c->cur[ir];
  if (!crossfade) c->pend[ir] = 0;
  const int B = c->B, used = (n + B - 1) / B;
  /* The inverse FFT is unnormalised (x N): fold 1/N into the FIR. */
  const float scale = 1.0f / (float)c->N;
  for (int k = 0; k < used; k++) {
    const int m = n - k * B < B ? n - k * B : B;
    for (int i = 0; i < m; i++) c->ibuf[i] = taps[(size_t)k * B + i] * scale;
    memset(c->ibuf + m, 0, sizeof(float) * (size_t)(c->N - m));
    fftwf_execute_dft_r2c(c->fwd, c->ibuf,
                          (fftwf_complex *)fir_spec(c, ir, slot, k));
  }
  c->used[ir][slot] = used;
  if (crossfade) c->pend[ir] = 1;
}

/* y = sum over the FIR's partitions of H_k X_{head-k}, complex by complex
 * (interleaved re, im). Zero partitions past `used` are skipped. */
static void accumulate(mb_fftconv *c, int ch, int ir, int slot, float *y) {
  const int used = c->used[ir][slot], n2 = 2 * c->nb;
  if (used == 0) {
    memset(y, 0, sizeof(float) * (size_t)n2);
    return;
  }
  for (int k = 0; k < used; k++) {
    int s = c->head - k;
    if (s < 0) s += c->K;
    const float *restrict x = fdl_spec(c, ch, s);
    const float *restrict h = fir_spec(c, ir, slot, k);
    float *restrict o = y;
    if (k == 0) {
      for (int i = 0; i < n2; i += 2) {
        o[i] = x[i] * h[i] - x[i + 1] * h[i + 1];
        o[i + 1] = x[i] * h[i + 1] + x[i + 1] * h[i];
      }
    } else {
      for (int i = 0; i < n2; i += 2) {
        o[i] += x[i] * h[i] - x[i + 1] * h[i + 1];
        o[i + 1] += x[i] * h[i + 1] + x[i + 1] * h[i];
      }
    }
  }
}

static inline float flush(float v) { return fabsf(v) < FLT_MIN ? 0.0f : v; }

/* A block is complete: transform it, convolve, and fill the output. */
static void compute(mb_fftconv *c) {
  const int B = c->B;
  if (++c->head == c->K) c->head = 0;
  for (int ch = 0; ch < c->nch; ch++) {
    const int ir = c->nirs == 1 ? 0 : ch;
    float *xin = c->xin + (size_t)ch * c->ts;
    float *ob = c->outb + (size_t)ch * round_up((size_t)B);
    fftwf_execute_dft_r2c(c->fwd, xin,
                          (fftwf_complex *)fdl_spec(c, ch, c->head));
    accumulate(c, ch, ir, c->cur[ir], c->acc);
    fftwf_execute_dft_c2r(c->inv, (fftwf_complex *)c->acc, c->y);
    /* overlap-save: the last B samples are the linear convolution */
    const float *ya = c->y + B;
    if (c->pend[ir]) {
      accumulate(c, ch, ir, !c->cur[ir], c->acc2);
      fftwf_execute_dft_c2r(c->inv, (fftwf_complex *)c->acc2, c->y2);
      const float *yb = c->y2 + B;
      /* linear crossfade, reaching the new FIR's output on the last frame */
      const float step = 1.0f / (float)B;
      for (int i = 0; i < B; i++) {
        const float g = (float)(i + 1) * step;
        ob[i] = flush(ya[i] + (yb[i] - ya[i]) * g);
      }
    } else {
      for (int i = 0; i < B; i++) ob[i] = flush(ya[i]);
    }
    memcpy(xin, xin + B, sizeof(float) * (size_t)B);
  }
  for (int ir = 0; ir < c->nirs; ir++)
    if (c->pend[ir]) c->cur[ir] = !c->cur[ir], c->pend[ir] = 0;
}

void mb_fftconv_process(mb_fftconv *c, const float *const *in,
                        float *const *out, int n) {
  const int B = c->B;
  const size_t os = round_up((size_t)B);
  int done = 0;
  while (done < n) {
    int k = B - c->fill;
    if (k > n - done) k = n - done;
    for (int ch = 0; ch < c->nch; ch++) {
      /* input first: out may be the same buffer */
      memcpy(c->xin + (size_t)ch * c->ts + B + c->fill, in[ch] + done,
             sizeof(float) * (size_t)k);
      memcpy(out[ch] + done, c->outb + (size_t)ch * os + c->fill,
             sizeof(float) * (size_t)k);
    }
    c->fill += k;
    done += k;
    if (c->fill == B) {
      compute(c);
      c->fill = 0;
    }
  }
}

void mb_fftconv_reset(mb_fftconv *c) {
  const size_t nch = (size_t)c->nch;
  memset(c->xin, 0, sizeof(float) * nch * c->ts);
  memset(c->outb, 0, sizeof(float) * nch * round_up((size_t)c->B));
  memset(c->fdl, 0, sizeof(float) * nch * (size_t)c->K * c->cs);
  c->fill = 0;
  c->head = 0;
  for (int ir = 0; ir < c->nirs; ir++)
    if (c->pend[ir]) c->cur[ir] = !c->cur[ir], c->pend[ir] = 0;
}

/* ---- mb_partconv --------------------------------------------------------- */

#include <stdint.h>
#include <stdlib.h>

#include "dsp/simd.h"

enum {
  PC_MIN_LOG = 4,  /* smallest partition: 16 frames */
  PC_MAX_LOG = 15, /* largest: 32768 frames (64k-point FFTs) */
  PC_SIZES = PC_MAX_LOG - PC_MIN_LOG + 1,
  PC_HEAD_MAX = 512, /* direct-form taps at most */
  PC_TILE = 512,     /* bins per tile of the multiply-add (stays in L1) */
};

/* The cost model, nanoseconds per frame, measured on
 * the project's machine (2-core AMD EPYC, -O2 -march=native, FFTW 3.3.10
 * float, FFTW_ESTIMATE plans) with the engine itself (test_convolver.c
 * prints the model beside the measured time of the plans it picks):
 *   PC_FFT_NS[k]: one transform of a level of 2^(k+4) frames (forward for
 *     each input, inverse for each output), per frame, with the level's
 *     copies and (de)interleaving: small blocks pay FFTW's per-call cost,
 *     the largest leave the caches;
 *   PC_MAC_NS: one partition's complex multiply-add per bin and frame
 *     while a level's spectra (inputs and FIRs) fit the 1 MB L2 cache,
 *     PC_MAC_FAR_NS beyond 8 MB (linear in between);
 *   PC_TAP_NS: one direct-form tap per frame. */
static const double PC_FFT_NS[PC_SIZES] = {4.33, 3.71, 2.47, 2.31, 2.25, 2.46,
                                           2.55, 2.87, 2.77, 3.00, 4.24, 4.53};
#define PC_MAC_NS 0.20
#define PC_MAC_FAR_NS 0.50
#define PC_TAP_NS 0.030

static double mac_ns(double bytes) {
  const double near = 1 << 20, far = 8 << 20;
  if (bytes <= near)
    return PC_MAC_NS;
  if (bytes >= far)
    return PC_MAC_FAR_NS;
  return PC_MAC_NS +
         (PC_MAC_FAR_NS - PC_MAC_NS) * (bytes - near) / (far - near);
}

typedef struct pc_plan {
  int head, nlev;
  int b[PC_SIZES], K[PC_SIZES];
  int64_t o[PC_SIZES];
  double cost;
} pc_plan;

/* The ladder `mask` (bit k = a level of 2^k frames) as a plan, or cost
 * INFINITY when it is not a useful one (a level with nothing to do, a
 * head over PC_HEAD_MAX). Level i covers FIR offsets [o_i, o_i + K_i b_i)
 * of the delayed FIR (delay zeros, then taps), starting where its latency
 * b_i fits: o_i + latency >= b_i; the head covers [delay, o_1). */
static pc_plan plan_ladder(unsigned mask, int64_t lat, int64_t delay,
                           int64_t taps, int nin, int nout, int npaths) {
  pc_plan p;
  memset(&p, 0, sizeof p);
  p.cost = INFINITY;
  int b[PC_SIZES], L = 0;
  for (int s = 0; s < PC_SIZES; s++)
    if (mask >> (s + PC_MIN_LOG) & 1u)
      b[L++] = 1 << (s + PC_MIN_LOG);
  const int64_t end = delay + taps;
  int64_t o = end;
  if (L) {
    o = b[0] - lat > delay ? b[0] - lat : delay;
    if (o >= end)
      return p;
  }
  p.head = (int)(o - delay > PC_HEAD_MAX ? PC_HEAD_MAX + 1 : o - delay);
  if (p.head > PC_HEAD_MAX)
    return p;
  double cost = (double)npaths * p.head * PC_TAP_NS;
  for (int i = 0; i < L; i++) {
    if (o >= end)
      return p; /* an earlier level reached the end */
    int64_t stop = end;
    if (i + 1 < L) {
      stop = b[i + 1] - lat;
      if (stop >= end || stop <= o)
        return p; /* a level would be idle */
    }
    const int64_t K = (stop - o + b[i] - 1) / b[i];
    if (K > (1 << 24))
      return p;
    p.b[i] = b[i], p.K[i] = (int)K, p.o[i] = o;
    int lg = 0;
    while ((1 << (lg + PC_MIN_LOG)) < b[i])
      lg++;
    /* spectra touched per block: K per input and per FIR, 8 bytes a bin */
    const double bytes = (double)(nin + npaths) * (double)K * (b[i] + 1.0) * 8;
    cost += (nin + nout) * PC_FFT_NS[lg] +
            (double)npaths * (double)K * mac_ns(bytes) * (b[i] + 1.0) / b[i];
    o += K * b[i];
  }
  p.nlev = L;
  p.cost = cost;
  return p;
}

typedef struct pc_level {
  int b, N, nb, K;
  int64_t D;  /* input delay, frames */
  size_t ts;  /* stride of an input's time buffer (>= N) */
  size_t cs;  /* stride of one re or im array (>= nb) */
  size_t os;  /* stride of an output's played block (>= b) */
  int fill;   /* frames of the current block gathered */
  int newest; /* delay-line slot of the newest input spectrum */
  fftwf_plan fwd, inv;
  float *xin;  /* per input: previous block | current block */
  float *fdl;  /* per input: K spectra, each re[cs] then im[cs] */
  float *h;    /* per FIR: K spectra, scaled by 1/N */
  float *outb; /* per output: the b frames being played */
  float *tmp;  /* interleaved complex, nb bins */
  float *acc;  /* re[cs] then im[cs] */
  float *y;    /* inverse transform, N */
} pc_level;

struct mb_partconv {
  int nin, nout, nirs, npaths, taps, delay, lat, max_frames;
  mb_partconv_path *paths;
  pc_plan plan;
  float *head; /* per FIR: plan.head taps */
  pc_level lev[PC_SIZES];
  float *ring;         /* per input: 2R floats, every frame stored twice */
  size_t R;            /* power of two */
  int64_t pos;         /* frames written */
  int64_t quiet, gate; /* all-zero input frames up to now; gating span */
};

static float *pc_spec(float *base, size_t cs, int K, int which, int k) {
  return base + ((size_t)which * (size_t)K + (size_t)k) * 2 * cs;
}

static void level_free(pc_level *L) {
  if (L->fwd)
    fftwf_destroy_plan(L->fwd);
  if (L->inv)
    fftwf_destroy_plan(L->inv);
  float *bufs[] = {L->xin, L->fdl, L->h, L->outb, L->tmp, L->acc, L->y};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    if (bufs[i])
      fftwf_free(bufs[i]);
  memset(L, 0, sizeof *L);
}

void mb_partconv_free(mb_partconv *c) {
  if (!c)
    return;
  for (int i = 0; i < c->plan.nlev; i++)
    level_free(&c->lev[i]);
  if (c->ring)
    fftwf_free(c->ring);
  if (c->head)
    fftwf_free(c->head);
  free(c->paths);
  free(c);
}

/* Build level i: buffers, plans, and the FIR spectra of its partitions. */
static int level_new(mb_partconv *c, int i, const float *const *irs) {
  pc_level *L = &c->lev[i];
  const int b = c->plan.b[i], K = c->plan.K[i];
  L->b = b, L->N = 2 * b, L->nb = b + 1, L->K = K;
  L->D = c->plan.o[i] + c->lat - b;
  L->ts = round_up((size_t)L->N);
  L->cs = round_up((size_t)L->nb);
  L->os = round_up((size_t)b);
  const size_t spec = 2 * L->cs;
  L->xin = falloc((size_t)c->nin * L->ts);
  L->fdl = falloc((size_t)c->nin * (size_t)K * spec);
  L->h = falloc((size_t)c->nirs * (size_t)K * spec);
  L->outb = falloc((size_t)c->nout * L->os);
  L->tmp = falloc(round_up(2 * (size_t)L->nb));
  L->acc = falloc(spec);
  L->y = falloc(L->ts);
  if (!L->xin || !L->fdl || !L->h || !L->outb || !L->tmp || !L->acc || !L->y)
    return 0;
  L->fwd = fftwf_plan_dft_r2c_1d(L->N, L->y, (fftwf_complex *)L->tmp,
                                 FFTW_ESTIMATE | FFTW_PRESERVE_INPUT);
  L->inv = fftwf_plan_dft_c2r_1d(L->N, (fftwf_complex *)L->tmp, L->y,
                                 FFTW_ESTIMATE | FFTW_DESTROY_INPUT);
  if (!L->fwd || !L->inv)
    return 0;
  /* partition k holds taps o + k b .. of the delayed FIR: zeros before
   * `delay`, then the FIR, zeros after its end */
  const float scale = 1.0f / (float)L->N; /* the inverse FFT is x N */
  for (int r = 0; r < c->nirs; r++) {
    for (int k = 0; k < K; k++) {
      const int64_t o = c->plan.o[i] + (int64_t)k * b;
      for (int j = 0; j < b; j++) {
        const int64_t m = o + j - c->delay;
        L->y[j] = m >= 0 && m < c->taps ? irs[r][m] * scale : 0.0f;
      }
      memset(L->y + b, 0, sizeof(float) * (size_t)b);
      fftwf_execute_dft_r2c(L->fwd, L->y, (fftwf_complex *)L->tmp);
      float *hs = pc_spec(L->h, L->cs, K, r, k);
      for (int j = 0; j < L->nb; j++)
        hs[j] = L->tmp[2 * j], hs[L->cs + j] = L->tmp[2 * j + 1];
    }
  }
  memset(L->y, 0, sizeof(float) * L->ts);
  return 1;
}

mb_partconv *mb_partconv_new(int nin, int nout, const float *const *irs,
                             int nirs, int taps, const mb_partconv_path *paths,
                             int npaths, int delay, int latency, int max_frames,
                             unsigned sizes) {
  if (nin < 1 || nin > MB_MAX_CHANNELS || nout < 1 || nout > MB_MAX_CHANNELS ||
      nirs < 1 || taps < 1 || npaths < 1 || delay < 0 || latency < 0 ||
      max_frames < 1 || max_frames > (1 << 24) ||
      (sizes & ~(((1u << PC_SIZES) - 1) << PC_MIN_LOG)))
    return NULL;
  for (int p = 0; p < npaths; p++)
    if (paths[p].in < 0 || paths[p].in >= nin || paths[p].out < 0 ||
        paths[p].out >= nout || paths[p].ir < 0 || paths[p].ir >= nirs)
      return NULL;
  mb_partconv *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->nin = nin, c->nout = nout, c->nirs = nirs, c->npaths = npaths;
  c->taps = taps, c->delay = delay, c->lat = latency;
  c->max_frames = max_frames;
  c->paths = malloc(sizeof *paths * (size_t)npaths);
  if (!c->paths)
    goto fail;
  memcpy(c->paths, paths, sizeof *paths * (size_t)npaths);

  if (sizes) {
    c->plan = plan_ladder(sizes, latency, delay, taps, nin, nout, npaths);
  } else {
    c->plan.cost = INFINITY;
    for (unsigned m = 0; m < 1u << PC_SIZES; m++) {
      pc_plan p =
          plan_ladder(m << PC_MIN_LOG, latency, delay, taps, nin, nout, npaths);
      if (p.cost < c->plan.cost)
        c->plan = p;
    }
  }
  if (!isfinite(c->plan.cost))
    goto fail;

  /* history: the head's span, every level's delay, the dry path's */
  int64_t need = (int64_t)latency + delay + c->plan.head;
  for (int i = 0; i < c->plan.nlev; i++) {
    const int64_t D = c->plan.o[i] + latency - c->plan.b[i];
    if (D > need)
      need = D;
  }
  need += max_frames;
  if (need > (int64_t)1 << 28)
    goto fail;
  c->R = 1;
  while ((int64_t)c->R < need)
    c->R *= 2;
  c->ring = falloc((size_t)nin * 2 * c->R);
  if (!c->ring)
    goto fail;
  if (c->plan.head) {
    c->head = falloc((size_t)nirs * (size_t)c->plan.head);
    if (!c->head)
      goto fail;
    for (int r = 0; r < nirs; r++)
      memcpy(c->head + (size_t)r * c->plan.head, irs[r],
             sizeof(float) * (size_t)c->plan.head);
  }
  for (int i = 0; i < c->plan.nlev; i++)
    if (!level_new(c, i, irs))
      goto fail;
  c->gate = (int64_t)latency + delay + taps;
  c->quiet = c->gate; /* the history starts silent */
  return c;
fail:
  mb_partconv_free(c);
  return NULL;
}

int mb_partconv_latency(const mb_partconv *c) { return c->lat; }

double mb_partconv_cost(const mb_partconv *c) { return c->plan.cost; }

int mb_partconv_plan(const mb_partconv *c, int *head, int *blocks, int *parts,
                     int max) {
  if (head)
    *head = c->plan.head;
  for (int i = 0; i < c->plan.nlev && i < max; i++) {
    if (blocks)
      blocks[i] = c->plan.b[i];
    if (parts)
      parts[i] = c->plan.K[i];
  }
  return c->plan.nlev;
}

/* Input i at logical frame t: n frames from there are contiguous (every
 * frame is stored at t mod R and t mod R + R). */
static const float *ring_at(const mb_partconv *c, int i, int64_t t) {
  return c->ring + (size_t)i * 2 * c->R + (size_t)(t & (int64_t)(c->R - 1));
}

const float *mb_partconv_input(const mb_partconv *c, int i, int d, int n) {
  return ring_at(c, i, c->pos - n - d);
}

/* a += x h over n bins, split complex (re and im arrays apart, so the
 * loop vectorises without shuffles). */
static void mac1(float *restrict ar, float *restrict ai,
                 const float *restrict xr, const float *restrict xi,
                 const float *restrict hr, const float *restrict hi, int n) {
  for (int j = 0; j < n; j++) {
    ar[j] += xr[j] * hr[j] - xi[j] * hi[j];
    ai[j] += xr[j] * hi[j] + xi[j] * hr[j];
  }
}

/* The same for two partitions per pass: the accumulator is loaded and
 * stored half as often. */
static void mac2(float *restrict ar, float *restrict ai,
                 const float *restrict xr, const float *restrict xi,
                 const float *restrict hr, const float *restrict hi,
                 const float *restrict xr2, const float *restrict xi2,
                 const float *restrict hr2, const float *restrict hi2, int n) {
  for (int j = 0; j < n; j++) {
    ar[j] +=
        (xr[j] * hr[j] - xi[j] * hi[j]) + (xr2[j] * hr2[j] - xi2[j] * hi2[j]);
    ai[j] +=
        (xr[j] * hi[j] + xi[j] * hr[j]) + (xr2[j] * hi2[j] + xi2[j] * hr2[j]);
  }
}

/* Level L's current block is complete: transform each input into the
 * delay line, then per output: sum over its paths and partitions, inverse
 * transform, keep the last b samples (overlap-save). */
static void level_compute(mb_partconv *c, pc_level *L) {
  const int b = L->b, K = L->K, nb = L->nb;
  const size_t cs = L->cs;
  if (++L->newest == K)
    L->newest = 0;
  for (int i = 0; i < c->nin; i++) {
    float *xin = L->xin + (size_t)i * L->ts;
    fftwf_execute_dft_r2c(L->fwd, xin, (fftwf_complex *)L->tmp);
    float *xs = pc_spec(L->fdl, cs, K, i, L->newest);
    const float *t = L->tmp;
    for (int j = 0; j < nb; j++)
      xs[j] = t[2 * j], xs[cs + j] = t[2 * j + 1];
    memcpy(xin, xin + b, sizeof(float) * (size_t)b);
  }
  for (int o = 0; o < c->nout; o++) {
    float *ar = L->acc, *ai = L->acc + cs;
    memset(L->acc, 0, sizeof(float) * 2 * cs);
    for (int j0 = 0; j0 < nb; j0 += PC_TILE) {
      const int w = nb - j0 < PC_TILE ? nb - j0 : PC_TILE;
      for (int p = 0; p < c->npaths; p++) {
        const mb_partconv_path *pa = &c->paths[p];
        if (pa->out != o)
          continue;
        int k = 0;
        for (; k + 1 < K; k += 2) {
          int s = L->newest - k, s2 = s - 1;
          if (s < 0)
            s += K;
          if (s2 < 0)
            s2 += K;
          const float *x = pc_spec(L->fdl, cs, K, pa->in, s) + j0;
          const float *x2 = pc_spec(L->fdl, cs, K, pa->in, s2) + j0;
          const float *h = pc_spec(L->h, cs, K, pa->ir, k) + j0;
          const float *h2 = pc_spec(L->h, cs, K, pa->ir, k + 1) + j0;
          mac2(ar + j0, ai + j0, x, x + cs, h, h + cs, x2, x2 + cs, h2, h2 + cs,
               w);
        }
        if (k < K) {
          int s = L->newest - k;
          if (s < 0)
            s += K;
          const float *x = pc_spec(L->fdl, cs, K, pa->in, s) + j0;
          const float *h = pc_spec(L->h, cs, K, pa->ir, k) + j0;
          mac1(ar + j0, ai + j0, x, x + cs, h, h + cs, w);
        }
      }
    }
    float *t = L->tmp;
    for (int j = 0; j < nb; j++)
      t[2 * j] = ar[j], t[2 * j + 1] = ai[j];
    fftwf_execute_dft_c2r(L->inv, (fftwf_complex *)L->tmp, L->y);
    memcpy(L->outb + (size_t)o * L->os, L->y + b, sizeof(float) * (size_t)b);
  }
}

/* Feed n frames (input delayed by L->D, read from the ring) and add the
 * level's output into out. */
static void level_process(mb_partconv *c, pc_level *L, float *const *out,
                          int n) {
  const int b = L->b;
  int done = 0;
  while (done < n) {
    int k = b - L->fill;
    if (k > n - done)
      k = n - done;
    for (int i = 0; i < c->nin; i++)
      memcpy(L->xin + (size_t)i * L->ts + b + L->fill,
             ring_at(c, i, c->pos - L->D + done), sizeof(float) * (size_t)k);
    for (int o = 0; o < c->nout; o++) {
      float *restrict y = out[o] + done;
      const float *restrict ob = L->outb + (size_t)o * L->os + L->fill;
      for (int j = 0; j < k; j++)
        y[j] += ob[j];
    }
    L->fill += k;
    done += k;
    if (L->fill == b) {
      level_compute(c, L);
      L->fill = 0;
    }
  }
}

/* The direct-form head: y[t] += sum_j h[j] x[t - j] for t in [0, n), where
 * x points at the frame of y[0] and the H - 1 frames before it are valid.
 * Tiles of 64 frames stay in eight vector accumulators while every tap
 * passes (one broadcast, eight loads and multiply-adds per tap); the
 * frames after the last whole tile run the same sum in the same order
 * (taps in order, added to y). Vector lanes round as scalar code does
 * (simd.h), so a frame's value does not depend on where the stream's calls
 * split it (tests/modules/test_convolver.c checks it bit for bit). */
static void head_run(float *restrict y, const float *restrict x,
                     const float *restrict h, int H, int n) {
  int t = 0;
  for (; t + 64 <= n; t += 64) {
    v8f a0 = ld(y + t), a1 = ld(y + t + 8), a2 = ld(y + t + 16),
        a3 = ld(y + t + 24), a4 = ld(y + t + 32), a5 = ld(y + t + 40),
        a6 = ld(y + t + 48), a7 = ld(y + t + 56);
    for (int j = 0; j < H; j++) {
      const float *xj = x + t - j;
      const v8f hj = (v8f){0, 0, 0, 0, 0, 0, 0, 0} + h[j];
      a0 += hj * ld(xj), a1 += hj * ld(xj + 8);
      a2 += hj * ld(xj + 16), a3 += hj * ld(xj + 24);
      a4 += hj * ld(xj + 32), a5 += hj * ld(xj + 40);
      a6 += hj * ld(xj + 48), a7 += hj * ld(xj + 56);
    }
    st(y + t, a0), st(y + t + 8, a1), st(y + t + 16, a2);
    st(y + t + 24, a3), st(y + t + 32, a4), st(y + t + 40, a5);
    st(y + t + 48, a6), st(y + t + 56, a7);
  }
  /* tap by tap over the remaining frames: each frame gets the same
   * sequence of multiply-adds as a vector lane above (a loop over taps
   * inside a frame would be vectorised as a reduction, with products and
   * sums rounded apart where the lanes fuse them) */
  for (int j = 0; j < H && t < n; j++) {
    const float hj = h[j];
    for (int u = t; u < n; u++)
      y[u] += hj * x[u - j];
  }
}

void mb_partconv_process(mb_partconv *c, const float *const *in,
                         float *const *out, int n) {
  if (n <= 0)
    return;
  if (n > c->max_frames) { /* not for callers keeping the contract */
    for (int done = 0; done < n; done += c->max_frames) {
      const int k = n - done < c->max_frames ? n - done : c->max_frames;
      const float *ip[MB_MAX_CHANNELS];
      float *op[MB_MAX_CHANNELS];
      for (int i = 0; i < c->nin; i++)
        ip[i] = in[i] + done;
      for (int o = 0; o < c->nout; o++)
        op[o] = out[o] + done;
      mb_partconv_process(c, ip, op, k);
    }
    return;
  }
  const int64_t t0 = c->pos; /* logical frame of in[..][0] */
  const size_t R = c->R, w = (size_t)(t0 & (int64_t)(R - 1));
  const size_t n1 = R - w < (size_t)n ? R - w : (size_t)n;
  /* input into the ring first: out may be the same buffers */
  for (int i = 0; i < c->nin; i++) {
    float *r = c->ring + (size_t)i * 2 * R;
    memcpy(r + w, in[i], sizeof(float) * n1);
    memcpy(r + w + R, in[i], sizeof(float) * n1);
    if (n1 < (size_t)n) {
      memcpy(r, in[i] + n1, sizeof(float) * ((size_t)n - n1));
      memcpy(r + R, in[i] + n1, sizeof(float) * ((size_t)n - n1));
    }
  }
  /* Silence bookkeeping (before out, which may alias in, is written):
   * q(t) = all-zero input frames up to and including t. Output frame t
   * depends on input frames t - gate + 1 .. t at most, so it is exactly
   * zero where q(t) >= gate; there the FFTs' rounding residue is replaced
   * by 0. Per frame only when some frame of this call can reach the gate,
   * so the frames gated do not depend on how the stream is split. */
  const int64_t q0 = c->quiet;
  const int gating = q0 + n >= c->gate;
  if (!gating) {
    int last = -1;
    for (int t = n - 1; t >= 0 && last < 0; t--)
      for (int i = 0; i < c->nin; i++)
        if (in[i][t] != 0.0f) {
          last = t;
          break;
        }
    c->quiet = last >= 0 ? n - 1 - last : q0 + n;
  }
  for (int o = 0; o < c->nout; o++)
    memset(out[o], 0, sizeof(float) * (size_t)n);
  const int H = c->plan.head;
  if (H) {
    for (int p = 0; p < c->npaths; p++) {
      const mb_partconv_path *pa = &c->paths[p];
      const float *base = ring_at(c, pa->in, t0 - c->lat - c->delay - (H - 1));
      head_run(out[pa->out], base + (H - 1),
               c->head + (size_t)pa->ir * (size_t)H, H, n);
    }
  }
  for (int l = 0; l < c->plan.nlev; l++)
    level_process(c, &c->lev[l], out, n);
  c->pos = t0 + n;

  if (gating) {
    int64_t q = q0;
    for (int t = 0; t < n; t++) {
      int nz = 0;
      for (int i = 0; i < c->nin && !nz; i++)
        nz = ring_at(c, i, t0 + t)[0] != 0.0f;
      q = nz ? 0 : (q < c->gate ? q + 1 : q);
      if (q >= c->gate)
        for (int o = 0; o < c->nout; o++)
          out[o][t] = 0.0f;
    }
    c->quiet = q;
  }
  for (int o = 0; o < c->nout; o++) {
    float *y = out[o];
    for (int t = 0; t < n; t++)
      y[t] = flush(y[t]);
  }
}

void mb_partconv_reset(mb_partconv *c) {
  memset(c->ring, 0, sizeof(float) * (size_t)c->nin * 2 * c->R);
  c->pos = 0;
  c->quiet = c->gate;
  for (int l = 0; l < c->plan.nlev; l++) {
    pc_level *L = &c->lev[l];
    memset(L->xin, 0, sizeof(float) * (size_t)c->nin * L->ts);
    memset(L->fdl, 0,
           sizeof(float) * (size_t)c->nin * (size_t)L->K * 2 * L->cs);
    memset(L->outb, 0, sizeof(float) * (size_t)c->nout * L->os);
    L->fill = 0;
    L->newest = 0;
  }
}
