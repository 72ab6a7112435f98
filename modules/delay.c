/* delay.c - feedback delay: time in ms or as a note at a tempo, ping-pong,
 * high- and low-pass in the feedback path, gliding time changes.
 *
 * Signal flow per channel c (one line each; dsp/delayline.h):
 *
 *   r_c   = line_c tapped at D frames (cubic; exact at integer D)
 *   line_c <- in_c + feedback * F_c(r_src(c))   src(c) = c, or the other
 *                                               channel in ping-pong
 *   out_c = (1 - mix) dry_c + mix r_c
 *
 * F_c is the optional high-pass then low-pass (2nd-order Butterworth each,
 * Audio EQ Cookbook, Q = 1/sqrt 2), so the first delayed copy is clean and
 * echo n (the n-th repeat after it) has been through F n times, at
 * feedback^n. In ping-pong the line input of the left line is the mid
 * (L + R) / 2 (or the mono input) and the right line gets only feedback.
 *
 * D glides: the host ramp of the target delay (frames) goes through a
 * critically damped two-pole smoother, so the read pointer's speed changes
 * continuously (no step in pitch, no step in the signal). While D stands
 * still, whole runs of frames go through the block kernels; while it moves,
 * frame by frame. Which path a frame takes depends only on the state, so
 * renders do not depend on the block size.
 *
 * Silence gate: once the input has been exactly zero for the tail length
 * (echoes below -120 dB), the wet path is muted, the filters cleared and
 * the lines are zeroed (incrementally, or at once when input returns
 * before that finished), so the output is exact zeros, never a decaying
 * subnormal residue. */
/* GCC 12 at -O2 vectorises only loops needing no epilogue or alias check
 * (the "very cheap" model): the block loops here need both. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("vect-cost-model=dynamic")
#endif

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsp/biquad.h"
#include "dsp/delayline.h"
#include "dsp/ramp.h"
#include "mb_module.h"

enum {
  P_TIME,
  P_NOTE,
  P_BPM,
  P_FEEDBACK,
  P_MIX,
  P_PINGPONG,
  P_HIGHPASS,
  P_LOWPASS,
  P_GLIDE,
  N_PARAMS
};

#define MAX_TIME_MS 10000.0
#define MIN_TIME_MS 1.0
#define MAX_FEEDBACK 0.99
/* Fractional taps need two frames (dsp/delayline.h); more than 1 ms only
 * below 2 kHz rates. */
#define MIN_DELAY 2.0
/* Echoes count as gone below this level (-120 dB). */
#define TAIL_LEVEL 1e-6
/* The smoother snaps to its target when within this many frames: a phase
 * step of 2 pi 1e-4 f / rate, -98 dB for a 1 kHz tone at 48 kHz. */
#define GLIDE_SNAP 1e-4
/* Filter histories below 1e-30 are zeroed on a grid of absolute frames
 * (every 4096), so decaying filters never reach double subnormals; a grid
 * of absolute frames, not blocks, keeps renders block-size independent. */
#define FLUSH_GRID 4096
/* Two cascaded one-pole stages (critically damped) settle to within 1 %
 * of a step after x time constants, (1 + x) e^-x = 0.01. */
#define GLIDE_SETTLE_TC 6.6383520679938

typedef struct {
  double rate;
  int nch; /* lines and outputs */
  int pingpong;
  /* what sets the delay: a note value (whole notes = num / den) at bpm,
   * or time_ms when num is 0 */
  double num, den, time_ms, bpm;
  double maxd;       /* frames, the longest delay the lines hold */
  mb_ramp dt;        /* target delay, frames (the host's ramp) */
  double g1, g2, ga; /* glide stages (frames) and coefficient; ga 0 = off */
  mb_ramp fb, mix;
  double hp_f, lp_f; /* Hz, 0 = off */
  mb_biquad hp, lp;
  double zh[MB_MAX_CHANNELS][2], zl[MB_MAX_CHANNELS][2];
  mb_delayline line[MB_MAX_CHANNELS];
  /* the stationary tap's cache */
  double tap_d;
  int64_t tap_di;
  int tap_frac;
  float tap_w[4];
  /* silence gate */
  int gated;
  int64_t quiet, gate_after, cleared;
  /* scratch, max_frames each */
  float *mem, *wet[MB_MAX_CHANNELS], *fsig[MB_MAX_CHANNELS];
  float *lin, *mid, *zeros;
  float *fbg, *dryg, *wetg;
} delay_state;

static inline float ftz(float v) { return fabsf(v) < FLT_MIN ? 0.0f : v; }

/* ---- settings ----------------------------------------------------------- */

/* "N/D" with an optional "." (dotted, 3/2), ".." (double-dotted, 7/4) or
 * "t" (triplet, 2/3). Whole notes = *num / *den. Empty: 0 (no note). */
static int parse_note(const char *str, double *num, double *den, char *err,
                      size_t errlen) {
  *num = 0;
  *den = 1;
  if (!str) return 0;
  const char *p = str;
  while (*p == ' ') p++;
  if (!*p) return 0;
  long n = 0, d = 0;
  int nd = 0, dd = 0;
  while (*p >= '0' && *p <= '9' && nd < 6) n = n * 10 + (*p++ - '0'), nd++;
  int ok = nd > 0 && *p == '/';
  if (ok) {
    p++;
    while (*p >= '0' && *p <= '9' && dd < 6) d = d * 10 + (*p++ - '0'), dd++;
    ok = dd > 0;
  }
  double mn = 1, md = 1;
  if (ok) {
    if (p[0] == '.' && p[1] == '.') mn = 7, md = 4, p += 2;
    else if (p[0] == '.') mn = 3, md = 2, p++;
    else if (p[0] == 't' || p[0] == 'T') mn = 2, md = 3, p++;
    while (*p == ' ') p++;
    ok = !*p && n >= 1 && n <= 64 && d >= 1 && d <= 256;
  }
  if (!ok) {
    snprintf(err, errlen,
             "note \"%s\" is not a note value: write N/D (N 1..64, D "
             "1..256) with an optional \".\" (dotted), \"..\" "
             "(double-dotted) or \"t\" (triplet), e.g. \"1/4\", \"1/8.\", "
             "\"1/16t\", \"3/16\"",
             str);
    return -1;
  }
  *num = (double)n * mn;
  *den = (double)d * md;
  return 1;
}

/* The delay the settings ask for, frames. A note is N/D whole notes of 4
 * beats at bpm beats (quarter notes) a minute: 240 N / (D bpm) seconds.
 * One division last, so integer results (1/8 at 120 bpm, 48 kHz: 12000)
 * come out exact. */
static double wanted_frames(const delay_state *s) {
  double d = s->num > 0 ? s->num * 240.0 * s->rate / (s->den * s->bpm)
                        : s->time_ms * s->rate / 1000.0;
  const double lo = fmax(MIN_DELAY, MIN_TIME_MS * s->rate / 1000.0);
  if (d < lo) d = lo;
  if (d > s->maxd) d = s->maxd;
  return d;
}

/* Frames until the echoes are below -120 dB of the input's peak. Echo n
 * (the n-th repeat after the first copy) is at feedback^n and arrives
 * (n + 1) D after its sample; overlapping repeats of a long input add up
 * to at most 1 / (1 - feedback) of its peak (the filters never gain:
 * Butterworth), so n is the least with feedback^n / (1 - feedback) below
 * -120 dB. Ten time constants of the lowest filter corner cover the
 * filters' ringing. */
static int64_t tail_frames(const delay_state *s, double d, double fb) {
  double reps = fb > 0 ? ceil((log(TAIL_LEVEL) + log1p(-fb)) / log(fb)) : 0;
  double t = (reps + 1) * (ceil(d) + 2) + 4;
  double fmin = 0;
  if (s->hp_f > 0) fmin = s->hp_f;
  if (s->lp_f > 0 && (fmin == 0 || s->lp_f < fmin)) fmin = s->lp_f;
  if (fmin > 0) t += 10.0 * s->rate / (2 * M_PI * fmin);
  return t > 0x1p60 ? (int64_t)1 << 60 : (int64_t)ceil(t);
}

static void update_gate(delay_state *s) {
  const double d = fmax(fmax(s->dt.value, s->dt.target), s->g2);
  s->gate_after = tail_frames(s, d, fmax(s->fb.value, s->fb.target));
}

static void set_filter(delay_state *s, int lp, double f) {
  double *cur = lp ? &s->lp_f : &s->hp_f;
  if (f > 0.45 * s->rate) f = 0.45 * s->rate; /* create() refused more */
  if (*cur <= 0 || f <= 0) memset(lp ? s->zl : s->zh, 0, sizeof s->zl);
  *cur = f;
  if (f <= 0) return;
  if (lp) mb_biquad_lowpass(&s->lp, s->rate, f, M_SQRT1_2);
  else mb_biquad_highpass(&s->hp, s->rate, f, M_SQRT1_2);
}

static void set_glide(delay_state *s, double ms) {
  const double tc = ms / 1000.0 * s->rate / GLIDE_SETTLE_TC; /* frames */
  s->ga = tc > 0 ? -expm1(-1.0 / tc) : 0;
}

/* ---- per-frame pieces (shared by both paths) --------------------------- */

static inline double bq(const mb_biquad *k, double *z, double x) {
  const double y = k->b0 * x + z[0];
  z[0] = k->b1 * x - k->a1 * y + z[1];
  z[1] = k->b2 * x - k->a2 * y;
  return y;
}

static void flush_filters(delay_state *s) {
  for (int c = 0; c < s->nch; c++)
    for (int k = 0; k < 2; k++) {
      if (fabs(s->zh[c][k]) < 1e-30) s->zh[c][k] = 0;
      if (fabs(s->zl[c][k]) < 1e-30) s->zl[c][k] = 0;
    }
}

/* The feedback path's filters on one sample of channel c's loop. */
static inline float filt(delay_state *s, int c, float x) {
  double v = x;
  if (s->hp_f > 0) v = bq(&s->hp, s->zh[c], v);
  if (s->lp_f > 0) v = bq(&s->lp, s->zl[c], v);
  return (float)v;
}

/* Next delay of the glide, frames. */
static inline double next_delay(delay_state *s) {
  const double t = mb_ramp_next(&s->dt);
  if (s->ga > 0) {
    s->g1 += s->ga * (t - s->g1);
    s->g2 += s->ga * (s->g1 - s->g2);
    if (!mb_ramp_active(&s->dt) && fabs(s->g1 - t) < GLIDE_SNAP &&
        fabs(s->g2 - t) < GLIDE_SNAP)
      s->g1 = s->g2 = t;
  } else {
    s->g1 = s->g2 = t;
  }
  return s->g2 < MIN_DELAY ? MIN_DELAY : s->g2 > s->maxd ? s->maxd : s->g2;
}

static inline int moving(const delay_state *s) {
  return mb_ramp_active(&s->dt) || s->g2 != s->dt.value ||
         s->g1 != s->dt.value;
}

/* ---- processing --------------------------------------------------------- */

typedef struct {
  const float *x[MB_MAX_CHANNELS];  /* dry per output channel */
  const float *in[MB_MAX_CHANNELS]; /* line input per line (NULL: none) */
  const float *xl, *xr;             /* ping-pong stereo: for the mid */
  float *const *out;
  int64_t pos; /* absolute frame of index 0 */
} io;

/* Frames [a, a + n) while the delay moves: one frame at a time, stops
 * early when it settles. Returns frames done. */
static int run_moving(delay_state *s, const io *o, int a, int n) {
  const int nch = s->nch, pp = s->pingpong;
  const int filters = s->hp_f > 0 || s->lp_f > 0;
  int j = a;
  for (; j < a + n && moving(s); j++) {
    if (filters && ((o->pos + j) & (FLUSH_GRID - 1)) == 0) flush_filters(s);
    const double d = next_delay(s);
    const int64_t di = (int64_t)d;
    float w[4], r[MB_MAX_CHANNELS];
    mb_delayline_weights(d - (double)di, w);
    for (int c = 0; c < nch; c++)
      r[c] = mb_delayline_interp(mb_delayline_points(&s->line[c], di), w);
    const float fb = (float)mb_ramp_next(&s->fb);
    const double m = mb_ramp_next(&s->mix);
    const float dg = (float)(1.0 - m), wg = (float)m;
    for (int c = 0; c < nch; c++) {
      const float f = filt(s, c, r[pp ? 1 - c : c]);
      float v;
      if (pp && c == 0 && o->xr) v = 0.5f * (o->xl[j] + o->xr[j]) + fb * f;
      else if (o->in[c]) v = o->in[c][j] + fb * f;
      else v = fb * f;
      mb_delayline_push(&s->line[c], ftz(v));
    }
    for (int c = 0; c < nch; c++)
      o->out[c][j] = ftz(dg * o->x[c][j] + wg * r[c]);
  }
  return j - a;
}

/* The feedback filters over k frames of the wet signals into fsig, frames
 * outside and channels inside (the channels' recursions interleave), the
 * same arithmetic as filt(). */
static inline __attribute__((always_inline)) void
filter_run(delay_state *s, int k, const int nch, const int hp, const int lp) {
  const mb_biquad H = s->hp, L = s->lp;
  double zh[MB_MAX_CHANNELS][2], zl[MB_MAX_CHANNELS][2];
  const float *src[MB_MAX_CHANNELS];
  for (int c = 0; c < nch; c++) {
    zh[c][0] = s->zh[c][0], zh[c][1] = s->zh[c][1];
    zl[c][0] = s->zl[c][0], zl[c][1] = s->zl[c][1];
    src[c] = s->wet[s->pingpong ? 1 - c : c];
  }
  for (int j = 0; j < k; j++)
    for (int c = 0; c < nch; c++) {
      double v = src[c][j];
      if (hp) v = bq(&H, zh[c], v);
      if (lp) v = bq(&L, zl[c], v);
      s->fsig[c][j] = (float)v;
    }
  for (int c = 0; c < nch; c++) {
    s->zh[c][0] = zh[c][0], s->zh[c][1] = zh[c][1];
    s->zl[c][0] = zl[c][0], s->zl[c][1] = zl[c][1];
  }
}

/* Stereo: both channels' sections in the two lanes of one vector (half
 * the instructions of two scalar recursions); per lane the operations of
 * bq(), in the same order. */
typedef double v2d __attribute__((vector_size(16)));

static inline __attribute__((always_inline)) v2d bq2(const mb_biquad *k,
                                                     v2d *z, v2d x) {
  const v2d y = k->b0 * x + z[0];
  z[0] = k->b1 * x - k->a1 * y + z[1];
  z[1] = k->b2 * x - k->a2 * y;
  return y;
}

static inline __attribute__((always_inline)) void
filter_stereo(delay_state *s, int k, const int hp, const int lp) {
  const mb_biquad H = s->hp, L = s->lp;
  v2d zh[2] = {{s->zh[0][0], s->zh[1][0]}, {s->zh[0][1], s->zh[1][1]}};
  v2d zl[2] = {{s->zl[0][0], s->zl[1][0]}, {s->zl[0][1], s->zl[1][1]}};
  const float *l = s->wet[s->pingpong ? 1 : 0], *r = s->wet[s->pingpong ? 0 : 1];
  float *out_l = s->fsig[0], *out_r = s->fsig[1];
  for (int j = 0; j < k; j++) {
    v2d v = {l[j], r[j]};
    if (hp) v = bq2(&H, zh, v);
    if (lp) v = bq2(&L, zl, v);
    out_l[j] = (float)v[0];
    out_r[j] = (float)v[1];
  }
  for (int c = 0; c < 2; c++) {
    s->zh[c][0] = zh[0][c], s->zh[c][1] = zh[1][c];
    s->zl[c][0] = zl[0][c], s->zl[c][1] = zl[1][c];
  }
}

static void filter_block(delay_state *s, int k) {
  const int hp = s->hp_f > 0, lp = s->lp_f > 0;
  if (s->nch == 2) {
    if (hp && lp) filter_stereo(s, k, 1, 1);
    else if (hp) filter_stereo(s, k, 1, 0);
    else filter_stereo(s, k, 0, 1);
  } else if (s->nch == 1) {
    if (hp && lp) filter_run(s, k, 1, 1, 1);
    else if (hp) filter_run(s, k, 1, 1, 0);
    else filter_run(s, k, 1, 0, 1);
  } else {
    filter_run(s, k, s->nch, hp, lp);
  }
}

/* v = in + fb f, flushed; fbg per frame or NULL for the constant fb. */
static void line_input(float *restrict v, const float *restrict x,
                       const float *restrict f, const float *restrict fbg,
                       float fb, int k) {
  if (fbg && x)
    for (int j = 0; j < k; j++) v[j] = ftz(x[j] + fbg[j] * f[j]);
  else if (fbg)
    for (int j = 0; j < k; j++) v[j] = ftz(fbg[j] * f[j]);
  else if (x)
    for (int j = 0; j < k; j++) v[j] = ftz(x[j] + fb * f[j]);
  else
    for (int j = 0; j < k; j++) v[j] = ftz(fb * f[j]);
}

/* y = dry (1 - mix) + wet mix, flushed; y may be x (in place). */
static void mix_out(float *y, const float *x, const float *restrict r,
                    const float *restrict dg, const float *restrict wg,
                    float d, float w, int k) {
  if (dg)
    for (int j = 0; j < k; j++) y[j] = ftz(dg[j] * x[j] + wg[j] * r[j]);
  else
    for (int j = 0; j < k; j++) y[j] = ftz(d * x[j] + w * r[j]);
}

/* Frames [a, a + n) at a standing delay, in runs the block kernels can do:
 * every point a run reads was written before it, and runs end on the
 * filters' flush grid. */
static void run_still(delay_state *s, const io *o, int a, int n) {
  const int nch = s->nch, pp = s->pingpong;
  const double d = s->g2 < MIN_DELAY ? MIN_DELAY
                   : s->g2 > s->maxd ? s->maxd : s->g2;
  if (d != s->tap_d) {
    s->tap_d = d;
    s->tap_di = (int64_t)d;
    s->tap_frac = d != (double)s->tap_di;
    mb_delayline_weights(d - (double)s->tap_di, s->tap_w);
  }
  const int64_t lim = s->tap_frac ? s->tap_di - 1 : s->tap_di;
  const int filters = s->hp_f > 0 || s->lp_f > 0;
  while (n > 0) {
    int k = (int)(lim < n ? lim : n);
    if (filters) {
      const int64_t at = o->pos + a;
      if ((at & (FLUSH_GRID - 1)) == 0) flush_filters(s);
      const int64_t to_grid = FLUSH_GRID - (at & (FLUSH_GRID - 1));
      if (to_grid < k) k = (int)to_grid;
    }
    for (int c = 0; c < nch; c++)
      mb_delayline_read_block(&s->line[c], s->tap_di,
                              s->tap_frac ? s->tap_w : NULL, s->wet[c], k);
    /* gains: per frame while a ramp runs, else constants */
    const float *fbg = NULL, *dg = NULL, *wg = NULL;
    const float fb = (float)s->fb.value;
    const float dry = (float)(1.0 - s->mix.value), wet = (float)s->mix.value;
    if (mb_ramp_active(&s->fb)) {
      for (int j = 0; j < k; j++) s->fbg[j] = (float)mb_ramp_next(&s->fb);
      fbg = s->fbg;
    }
    if (mb_ramp_active(&s->mix)) {
      for (int j = 0; j < k; j++) {
        const double m = mb_ramp_next(&s->mix);
        s->dryg[j] = (float)(1.0 - m);
        s->wetg[j] = (float)m;
      }
      dg = s->dryg, wg = s->wetg;
    }
    if (filters) filter_block(s, k);
    if (pp && o->xr) {
      const float *xl = o->xl + a, *xr = o->xr + a;
      for (int j = 0; j < k; j++) s->mid[j] = 0.5f * (xl[j] + xr[j]);
    }
    for (int c = 0; c < nch; c++) {
      const float *f = filters ? s->fsig[c] : s->wet[pp ? 1 - c : c];
      const float *x = pp && c == 0 && o->xr ? s->mid
                       : o->in[c]            ? o->in[c] + a
                                             : NULL;
      line_input(s->lin, x, f, fbg, fb, k);
      mb_delayline_write_block(&s->line[c], s->lin, k);
    }
    for (int c = 0; c < nch; c++)
      mix_out(o->out[c] + a, o->x[c] + a, s->wet[c], dg, wg, dry, wet, k);
    a += k;
    n -= k;
  }
}

static void run_normal(delay_state *s, const io *o, int a, int n) {
  while (n > 0) {
    int k;
    if (moving(s)) {
      k = run_moving(s, o, a, n);
    } else {
      /* stands still until the next set_param, i.e. the block's end */
      k = n;
      run_still(s, o, a, k);
    }
    a += k;
    n -= k;
  }
}

static inline int frame_live(const float *const *x, int nin, int j) {
  for (int c = 0; c < nin; c++)
    if (x[c][j] != 0) return 1;
  return 0;
}

/* Frames from a (of [a, b)) the gate stays open; *close says whether it
 * closes right after them (the input has then been zero for gate_after
 * frames). Updates the count of zero frames. */
static int open_run(delay_state *s, const float *const *x, int nin, int a,
                    int b, int *close) {
  const int64_t g = s->gate_after;
  *close = 0;
  int last = b - 1;
  while (last >= a && !frame_live(x, nin, last)) last--;
  if (last < a) { /* all zero */
    const int64_t need = g - s->quiet;
    if (need <= b - a) {
      s->quiet = g;
      *close = 1;
      return (int)(need < 1 ? 1 : need);
    }
    s->quiet += b - a;
    return b - a;
  }
  if (last - a >= g - s->quiet) { /* a zero run before `last` may close it */
    int64_t q = s->quiet;
    for (int j = a; j < last; j++) {
      q = frame_live(x, nin, j) ? 0 : q + 1;
      if (q >= g) {
        s->quiet = q;
        *close = 1;
        return j + 1 - a;
      }
    }
  }
  const int64_t zeros = b - 1 - last;
  if (zeros >= g) {
    s->quiet = g;
    *close = 1;
    return (int)(last + g + 1 - a);
  }
  s->quiet = zeros;
  return b - a;
}

static void clear_filters(delay_state *s) {
  memset(s->zh, 0, sizeof s->zh);
  memset(s->zl, 0, sizeof s->zl);
}

/* Gate closed for frames [a, a + n): the input is zero there, so is the
 * output; the lines are zeroed until clean; ramps advance frame by frame
 * (as they would open, so the values do not depend on block size) and
 * the glide jumps to its target (nothing sounds). */
static void run_gated(delay_state *s, const io *o, int a, int n) {
  for (int c = 0; c < s->nch; c++)
    memset(o->out[c] + a, 0, sizeof(float) * (size_t)n);
  const int64_t len = s->line[0].len;
  if (s->cleared < len) {
    for (int c = 0; c < s->nch; c++) mb_delayline_write_zeros(&s->line[c], n);
    s->cleared += n;
  } else {
    for (int c = 0; c < s->nch; c++)
      s->line[c].w = (s->line[c].w + n) & s->line[c].mask;
  }
  for (int j = 0; j < n && mb_ramp_active(&s->dt); j++) mb_ramp_next(&s->dt);
  for (int j = 0; j < n && mb_ramp_active(&s->fb); j++) mb_ramp_next(&s->fb);
  for (int j = 0; j < n && mb_ramp_active(&s->mix); j++) mb_ramp_next(&s->mix);
  s->g1 = s->g2 = s->dt.value;
}

static void process(void *st, const mb_block *b) {
  delay_state *s = st;
  const int n = b->frames;
  io o;
  memset(&o, 0, sizeof o);
  o.out = b->out;
  o.pos = b->pos;
  const int nin = b->in[0] ? b->in_channels[0] : 0;
  const float *const *x = b->in[0];
  for (int c = 0; c < s->nch; c++) {
    const float *xc = nin == 0 ? s->zeros : x[c < nin ? c : 0];
    o.x[c] = xc;
    o.in[c] = s->pingpong ? NULL : (nin ? xc : NULL);
  }
  if (s->pingpong && nin) {
    if (nin == 2) o.xl = x[0], o.xr = x[1];
    else o.in[0] = x[0]; /* mono into the left line as it is */
  }
  int a = 0;
  while (a < n) {
    if (s->gated) {
      int j = a;
      while (j < n && !(nin && frame_live(x, nin, j))) j++;
      if (j > a) {
        run_gated(s, &o, a, j - a);
        a = j;
        continue;
      }
      /* input again: the lines must be silent before it enters */
      if (s->cleared < s->line[0].len)
        for (int c = 0; c < s->nch; c++) mb_delayline_clear(&s->line[c]);
      s->gated = 0;
      s->quiet = 0;
    }
    int close, k;
    if (nin) {
      k = open_run(s, x, nin, a, n, &close);
    } else { /* nothing connected: zeros all along */
      const int64_t need = s->gate_after - s->quiet;
      close = need <= n - a;
      k = close ? (int)(need < 1 ? 1 : need) : n - a;
      s->quiet = close ? s->gate_after : s->quiet + k;
    }
    run_normal(s, &o, a, k);
    a += k;
    if (close) {
      s->gated = 1;
      s->cleared = 0;
      clear_filters(s);
    }
  }
}

/* ---- lifecycle ---------------------------------------------------------- */

static int channels(const mb_config *c, char *err, size_t errlen) {
  const int in = c->in_channels[0];
  if (in <= 0) {
    snprintf(err, errlen, "delay needs an input");
    return -1;
  }
  if (c->values[P_PINGPONG] != 0) {
    if (in <= 2) return 2;
    snprintf(err, errlen,
             "pingpong needs a mono or stereo input, got %d channels "
             "(select two with `channels` first)",
             in);
    return -1;
  }
  return in;
}

static void destroy(void *st) {
  delay_state *s = st;
  for (int c = 0; c < MB_MAX_CHANNELS; c++) mb_delayline_free(&s->line[c]);
  free(s->mem);
  s->mem = NULL;
}

/* As newly created; `lines` 0 when they are known silent (just
 * allocated zeroed: no need to touch every page). */
static void restart(delay_state *s, int lines) {
  if (lines)
    for (int c = 0; c < s->nch; c++) mb_delayline_clear(&s->line[c]);
  clear_filters(s);
  mb_ramp_init(&s->dt, s->dt.target);
  mb_ramp_init(&s->fb, s->fb.target);
  mb_ramp_init(&s->mix, s->mix.target);
  s->g1 = s->g2 = s->dt.value;
  s->tap_d = -1;
  s->gated = 1;
  s->cleared = s->line[0].len;
  s->quiet = 0;
  update_gate(s);
}

static void reset(void *st) { restart(st, 1); }

static mb_status create(void *st, const mb_config *c, char *err,
                        size_t errlen) {
  delay_state *s = st;
  const double *v = c->values;
  s->rate = c->rate;
  s->nch = c->out_channels;
  s->pingpong = v[P_PINGPONG] != 0;
  s->time_ms = v[P_TIME];
  s->bpm = v[P_BPM];
  const char *note = c->strings ? c->strings[P_NOTE] : NULL;
  if (parse_note(note, &s->num, &s->den, err, errlen) < 0) return MB_ERR_ARG;
  if (s->num > 0) {
    const double ms = s->num * 240000.0 / (s->den * s->bpm);
    if (ms < MIN_TIME_MS || ms > MAX_TIME_MS) {
      snprintf(err, errlen,
               "note \"%s\" at bpm %g is %g ms, outside the delay's range "
               "(%g .. %g ms)",
               note, s->bpm, ms, MIN_TIME_MS, MAX_TIME_MS);
      return MB_ERR_ARG;
    }
  }
  static const char *const fname[2] = {"highpass", "lowpass"};
  for (int k = 0; k < 2; k++) {
    const double f = v[k ? P_LOWPASS : P_HIGHPASS];
    if (f >= 0.45 * s->rate) {
      snprintf(err, errlen,
               "%s %g Hz is too high for %g Hz (0 = off, else below %g Hz)",
               fname[k], f, s->rate, 0.45 * s->rate);
      return MB_ERR_ARG;
    }
  }
  s->maxd = MAX_TIME_MS * s->rate / 1000.0;
  if (s->maxd < MIN_DELAY) s->maxd = MIN_DELAY;
  for (int ch = 0; ch < s->nch; ch++) {
    mb_status st2 = mb_delayline_init(&s->line[ch], s->maxd);
    if (st2 != MB_OK) {
      snprintf(err, errlen, "out of memory for %g s of delay", MAX_TIME_MS / 1000);
      return st2;
    }
  }
  const size_t m = (size_t)(c->max_frames > 0 ? c->max_frames : 1);
  s->mem = calloc(m * (size_t)(2 * s->nch + 7), sizeof(float));
  if (!s->mem) {
    snprintf(err, errlen, "out of memory");
    return MB_ERR_NOMEM;
  }
  float *p = s->mem;
  for (int ch = 0; ch < s->nch; ch++, p += m) s->wet[ch] = p;
  for (int ch = 0; ch < s->nch; ch++, p += m) s->fsig[ch] = p;
  s->lin = p, p += m;
  s->mid = p, p += m;
  s->zeros = p, p += m;
  s->fbg = p, p += m;
  s->dryg = p, p += m;
  s->wetg = p, p += m;
  set_filter(s, 0, v[P_HIGHPASS]);
  set_filter(s, 1, v[P_LOWPASS]);
  set_glide(s, v[P_GLIDE]);
  mb_ramp_init(&s->fb, v[P_FEEDBACK]);
  mb_ramp_init(&s->mix, v[P_MIX]);
  mb_ramp_init(&s->dt, wanted_frames(s));
  restart(s, 0);
  return MB_OK;
}

static void set_param(void *st, int idx, double v, int ramp) {
  delay_state *s = st;
  switch (idx) {
  case P_TIME:
    s->time_ms = v;
    if (s->num == 0) mb_ramp_to(&s->dt, wanted_frames(s), ramp);
    break;
  case P_BPM:
    s->bpm = v;
    if (s->num > 0) mb_ramp_to(&s->dt, wanted_frames(s), ramp);
    break;
  case P_FEEDBACK: mb_ramp_to(&s->fb, v, ramp); break;
  case P_MIX: mb_ramp_to(&s->mix, v, ramp); break;
  case P_HIGHPASS: set_filter(s, 0, v); break;
  case P_LOWPASS: set_filter(s, 1, v); break;
  case P_GLIDE: set_glide(s, v); break;
  default: break;
  }
  update_gate(s);
}

static int64_t tail(const void *st) {
  const delay_state *s = st;
  return s->gate_after;
}

static const mb_port_desc inputs[] = {{.name = "in"}};

static const mb_param_desc params[] = {
    [P_TIME] = {.id = "time", .unit = "ms", .type = MB_PARAM_NUMBER,
                .min = MIN_TIME_MS, .max = MAX_TIME_MS, .def = 250,
                .scale = MB_SCALE_LOG, .flags = MB_PARAM_SMOOTH,
                .help = "delay time (unless `note` is set); changes glide"},
    [P_NOTE] = {.id = "note", .unit = "", .type = MB_PARAM_STRING,
                .help = "delay as a note value at `bpm`: \"1/4\", \"1/8.\" "
                        "(dotted), \"1/16t\" (triplet), \"3/16\"; overrides "
                        "time"},
    [P_BPM] = {.id = "bpm", .unit = "", .type = MB_PARAM_NUMBER, .min = 20,
               .max = 999, .def = 120, .flags = MB_PARAM_SMOOTH,
               .help = "tempo for `note`, quarter notes per minute"},
    [P_FEEDBACK] = {.id = "feedback", .unit = "", .type = MB_PARAM_NUMBER,
                    .min = 0, .max = MAX_FEEDBACK, .def = 0.4,
                    .flags = MB_PARAM_SMOOTH,
                    .help = "level of each repeat relative to the one "
                            "before (0..0.99)"},
    [P_MIX] = {.id = "mix", .unit = "", .type = MB_PARAM_NUMBER, .min = 0,
               .max = 1, .def = 0.3, .flags = MB_PARAM_SMOOTH,
               .help = "0 dry only .. 1 wet only, linear: dry (1 - mix) + "
                       "wet mix"},
    [P_PINGPONG] = {.id = "pingpong", .unit = "", .type = MB_PARAM_BOOL,
                    .min = 0, .max = 1, .def = 0,
                    .flags = MB_PARAM_STRUCTURAL,
                    .help = "repeats alternate left and right (stereo out)"},
    [P_HIGHPASS] = {.id = "highpass", .unit = "Hz", .type = MB_PARAM_NUMBER,
                    .min = 0, .max = 24000, .def = 0,
                    .help = "high-pass in the feedback path (12 dB/oct); 0 "
                            "= off"},
    [P_LOWPASS] = {.id = "lowpass", .unit = "Hz", .type = MB_PARAM_NUMBER,
                   .min = 0, .max = 24000, .def = 0,
                   .help = "low-pass in the feedback path (12 dB/oct); 0 = "
                           "off"},
    [P_GLIDE] = {.id = "glide", .unit = "ms", .type = MB_PARAM_NUMBER,
                 .min = 0, .max = 5000, .def = 100,
                 .help = "time changes settle (to 1 %) over this; 0 = follow "
                         "at once"},
};

const mb_module_desc mb_mod_delay = {
    .id = "delay",
    .summary = "feedback delay: ms or note at a tempo, ping-pong, filtered "
               "repeats, gliding time",
    .doc =
        "A feedback delay, one line per channel. The delay is `time` ms, "
        "or, when `note` is set, a note value at `bpm` (quarter notes a "
        "minute): \"N/D\" whole notes, with \".\" dotted (x 3/2), \"..\" "
        "double-dotted (x 7/4) or \"t\" triplet (x 2/3); \"1/4\" at 120 bpm "
        "is 500 ms, \"1/8.\" 375 ms, \"1/16t\" 83.3 ms. `note` overrides "
        "`time` and is fixed for a render; `bpm` can be set and automated. "
        "Delays are 1 ms .. 10 s (a note outside that is an error; "
        "automating `bpm` past it stops at the limit); the lines hold 10 s "
        "whatever the setting (2 MB per channel at 48 kHz, 8 MB at 192 kHz). Output: "
        "`(1 - mix) dry + mix wet` (linear: mix 0 is the dry signal and 1 "
        "the delayed one, bit for bit). The first delayed copy is the input "
        "itself; each repeat after it is `feedback` times the one before "
        "(echo n at feedback^n), and with `highpass` / `lowpass` set (2nd-"
        "order Butterworth each, 0 = off) each repeat has been through the "
        "filters once more. Feedback stops at 0.99: the loop never holds "
        "or grows. An integer delay in frames (250 ms at 48 kHz) is exact; "
        "fractional delays read a 4-point Catmull-Rom cubic. Changes of "
        "`time` or `bpm` glide: the read position follows a critically "
        "damped smoother that settles within 1 % in `glide` ms (default "
        "100), so the pitch bends like tape and nothing clicks; `glide` 0 "
        "follows the host's ramp at once. `pingpong` makes the output "
        "stereo (from mono or stereo in; more channels are refused): the "
        "mid (L + R) / 2 (or the mono input) enters the left line, the "
        "repeats cross L -> R -> L, so the first copy is on the left, echo "
        "1 on the right, and so on; the dry signal stays as it is. Tail: "
        "until the repeats are below -120 dB (plus the filters' ringing), "
        "after which the output is exact zeros (the lines are cleared once "
        "the input has been silent that long); the tail is worked out from "
        "the settings at the start of the render.",
    .inputs = inputs,
    .n_inputs = 1,
    .has_output = 1,
    .params = params,
    .n_params = N_PARAMS,
    .state_size = sizeof(delay_state),
    .channels = channels,
    .create = create,
    .set_param = set_param,
    .process = process,
    .reset = reset,
    .tail = tail,
    .destroy = destroy,
};
