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
