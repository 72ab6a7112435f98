/* biquad.c - Audio EQ Cookbook designs and the cascade kernel. */
#include "dsp/biquad.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* Shared cookbook intermediates. 1 - cos(w0) is computed as 2 sin^2(w0/2):
 * the plain difference loses six digits for a 30 Hz section at 192 kHz. */
typedef struct {
  double cs, omc, alpha;
} rbj;

static rbj rbj_init(double rate, double f, double q) {
  const double w0 = 2.0 * M_PI * f / rate, sh = sin(0.5 * w0);
  rbj r = {cos(w0), 2.0 * sh * sh, sin(w0) / (2.0 * q)};
  return r;
}

static void set_norm(mb_biquad *c, double b0, double b1, double b2, double a0,
                     double a1, double a2) {
  c->b0 = b0 / a0;
  c->b1 = b1 / a0;
  c->b2 = b2 / a0;
  c->a1 = a1 / a0;
  c->a2 = a2 / a0;
}

void mb_biquad_identity(mb_biquad *c) {
  c->b0 = 1;
  c->b1 = c->b2 = c->a1 = c->a2 = 0;
}

void mb_biquad_lowpass(mb_biquad *c, double rate, double f, double q) {
  const rbj r = rbj_init(rate, f, q);
  set_norm(c, r.omc / 2, r.omc, r.omc / 2, 1 + r.alpha, -2 * r.cs,
           1 - r.alpha);
}

void mb_biquad_highpass(mb_biquad *c, double rate, double f, double q) {
  const rbj r = rbj_init(rate, f, q);
  const double opc = 1 + r.cs;
  set_norm(c, opc / 2, -opc, opc / 2, 1 + r.alpha, -2 * r.cs, 1 - r.alpha);
}

void mb_biquad_bandpass(mb_biquad *c, double rate, double f, double q) {
  const rbj r = rbj_init(rate, f, q);
  set_norm(c, r.alpha, 0, -r.alpha, 1 + r.alpha, -2 * r.cs, 1 - r.alpha);
}

void mb_biquad_notch(mb_biquad *c, double rate, double f, double q) {
  const rbj r = rbj_init(rate, f, q);
  set_norm(c, 1, -2 * r.cs, 1, 1 + r.alpha, -2 * r.cs, 1 - r.alpha);
}

void mb_biquad_peak(mb_biquad *c, double rate, double f, double q,
                    double gain) {
  const rbj r = rbj_init(rate, f, q);
  const double A = pow(10.0, gain / 40.0);
  set_norm(c, 1 + r.alpha * A, -2 * r.cs, 1 - r.alpha * A, 1 + r.alpha / A,
           -2 * r.cs, 1 - r.alpha / A);
}

void mb_biquad_lowshelf(mb_biquad *c, double rate, double f, double q,
                        double gain) {
  const rbj r = rbj_init(rate, f, q);
  const double A = pow(10.0, gain / 40.0), sa = 2 * sqrt(A) * r.alpha;
  const double p = A + 1, m = A - 1;
  set_norm(c, A * (p - m * r.cs + sa), 2 * A * (m - p * r.cs),
           A * (p - m * r.cs - sa), p + m * r.cs + sa, -2 * (m + p * r.cs),
           p + m * r.cs - sa);
}

void mb_biquad_highshelf(mb_biquad *c, double rate, double f, double q,
                         double gain) {
  const rbj r = rbj_init(rate, f, q);
  const double A = pow(10.0, gain / 40.0), sa = 2 * sqrt(A) * r.alpha;
  const double p = A + 1, m = A - 1;
  set_norm(c, A * (p + m * r.cs + sa), -2 * A * (m + p * r.cs),
           A * (p + m * r.cs - sa), p - m * r.cs + sa, 2 * (m - p * r.cs),
           p - m * r.cs - sa);
}

/* First-order sections: substitute s = (1/K)(1 - z^-1)/(1 + z^-1), K =
 * tan(w0/2), into the prototype normalised to 2 pi f. */
void mb_biquad_lowpass1(mb_biquad *c, double rate, double f) {
  const double K = tan(M_PI * f / rate);
  set_norm(c, K, K, 0, K + 1, K - 1, 0);
}

void mb_biquad_highpass1(mb_biquad *c, double rate, double f) {
  const double K = tan(M_PI * f / rate);
  set_norm(c, 1, -1, 0, K + 1, K - 1, 0);
}

void mb_biquad_tilt1(mb_biquad *c, double rate, double f, double gain) {
  /* (a s + 1)/(s + a) -> ((a + K) + (K - a) z^-1) / ((1 + aK) + (aK - 1)
   * z^-1); z = 1 gives 1/a, z = -1 gives a. */
  const double K = tan(M_PI * f / rate), a = pow(10.0, gain / 40.0);
  set_norm(c, a + K, K - a, 0, 1 + a * K, a * K - 1, 0);
}

double mb_butterworth_q(int n, int k) {
  const double psi = (n % 2) ? (k + 1) * M_PI / n : (2 * k + 1) * M_PI / (2 * n);
  return 1.0 / (2.0 * cos(psi));
}

int mb_biquad_is_identity(const mb_biquad *c) {
  return c->b0 == 1 && c->b1 == c->a1 && c->b2 == c->a2;
}

double mb_biquad_mag(const mb_biquad *c, double rate, double f) {
  const double w = 2.0 * M_PI * f / rate, c1 = cos(w), s1 = sin(w);
  const double c2 = cos(2 * w), s2 = sin(2 * w);
  const double nr = c->b0 + c->b1 * c1 + c->b2 * c2, ni = c->b1 * s1 + c->b2 * s2;
  const double dr = 1 + c->a1 * c1 + c->a2 * c2, di = c->a1 * s1 + c->a2 * s2;
  return sqrt((nr * nr + ni * ni) / (dr * dr + di * di));
}

double mb_biquad_pole_radius(const mb_biquad *c) {
  /* Roots of z^2 + a1 z + a2. */
  const double disc = c->a1 * c->a1 - 4 * c->a2;
  if (disc < 0) return sqrt(c->a2);
  const double sq = sqrt(disc);
  return fmax(fabs(-c->a1 + sq), fabs(-c->a1 - sq)) / 2;
}

void mb_biquad_clear(mb_biquad_state *s) { memset(s, 0, sizeof *s); }

int mb_biquad_flush(mb_biquad_state *s, int nch) {
  int live = 0;
  for (int ch = 0; ch < nch; ch++) {
    if (fabs(s->s1[ch]) < 1e-80) s->s1[ch] = 0;
    if (fabs(s->s2[ch]) < 1e-80) s->s2[ch] = 0;
    live |= s->s1[ch] != 0 || s->s2[ch] != 0;
  }
  return live;
}

static inline float to_float(double x) {
  const float y = (float)x;
  return fabsf(y) < FLT_MIN ? 0.0f : y;
}

/* The kernels run transposed direct form II with y substituted into the
 * history update, so that each history is a multiply-add on its own
 * previous value (and on x) rather than on y:
 *
 *   y = b0 x + s1
 *   s1' = -a1 s1 + (c1 x + s2),   c1 = b1 - a1 b0
 *   s2' = -a2 s1 + c2 x,          c2 = b2 - a2 b0
 *
 * The same values as the textbook order up to rounding, and the same
 * history (s1, s2). Every kernel does the same operations per lane in the
 * same order, so mono, stereo and any block size give the same bits. */
typedef struct {
  double b0, c1, c2, na1, na2;
} ss_coef;

static ss_coef ss_of(const mb_biquad *c) {
  const ss_coef k = {c->b0, c->b1 - c->a1 * c->b0, c->b2 - c->a2 * c->b0,
                     -c->a1, -c->a2};
  return k;
}

/* Frames outer, channels inner. Inlined with a constant channel count for
 * mono, so the channel loop unrolls and the per-frame work stays in
 * registers. */
static inline __attribute__((always_inline)) void
cascade_n(const mb_biquad *const *c, mb_biquad_state *const *s, int nsec,
          const float *const *in, float *const *out, const int nch, int off,
          int n) {
  for (int i = off; i < off + n; i++) {
    double x[MB_MAX_CHANNELS];
    for (int ch = 0; ch < nch; ch++) x[ch] = in[ch][i];
    for (int k = 0; k < nsec; k++) {
      const ss_coef q = ss_of(c[k]);
      double *restrict s1 = s[k]->s1, *restrict s2 = s[k]->s2;
      for (int ch = 0; ch < nch; ch++) {
        const double y = q.b0 * x[ch] + s1[ch];
        const double t = q.c1 * x[ch] + s2[ch];
        s2[ch] = q.na2 * s1[ch] + q.c2 * x[ch];
        s1[ch] = q.na1 * s1[ch] + t;
        x[ch] = y;
      }
    }
    for (int ch = 0; ch < nch; ch++) out[ch][i] = to_float(x[ch]);
  }
}

/* Stereo: both channels in one two-lane vector, the section count a
 * compile-time constant so the histories stay in registers across frames
 * (no store-to-load forwarding in the recursion). */
typedef double v2d __attribute__((vector_size(16)));

static inline __attribute__((always_inline)) void
cascade_stereo(const mb_biquad *const *c, mb_biquad_state *const *s,
               const int nsec, const float *const *in, float *const *out,
               int off, int n) {
  v2d b0[8], c1[8], c2[8], na1[8], na2[8], s1[8], s2[8];
  for (int k = 0; k < nsec; k++) {
    const ss_coef q = ss_of(c[k]);
    b0[k] = (v2d){q.b0, q.b0};
    c1[k] = (v2d){q.c1, q.c1};
    c2[k] = (v2d){q.c2, q.c2};
    na1[k] = (v2d){q.na1, q.na1};
    na2[k] = (v2d){q.na2, q.na2};
    s1[k] = (v2d){s[k]->s1[0], s[k]->s1[1]};
    s2[k] = (v2d){s[k]->s2[0], s[k]->s2[1]};
  }
  const float *l = in[0], *r = in[1];
  float *ol = out[0], *or = out[1];
  for (int i = off; i < off + n; i++) {
    v2d x = {l[i], r[i]};
#pragma GCC unroll 8
    for (int k = 0; k < nsec; k++) {
      const v2d y = b0[k] * x + s1[k];
      const v2d t = c1[k] * x + s2[k];
      s2[k] = na2[k] * s1[k] + c2[k] * x;
      s1[k] = na1[k] * s1[k] + t;
      x = y;
    }
    ol[i] = to_float(x[0]);
    or[i] = to_float(x[1]);
  }
  for (int k = 0; k < nsec; k++) {
    s[k]->s1[0] = s1[k][0], s[k]->s1[1] = s1[k][1];
    s[k]->s2[0] = s2[k][0], s[k]->s2[1] = s2[k][1];
  }
}

/* Stereo, 3 or 4 sections: all of them in one eight-lane vector (section
 * k's two channels in lanes 2k, 2k + 1), as a wavefront. At step j section
 * k works on frame j - 2k, so its input, section k - 1's output for that
 * frame, came out two steps earlier: one step's multiply-adds never wait
 * for the step before, and the vector does four sections' work at once
 * (2.96 ns a frame for the reference EQ's four, where the two-lane kernel
 * takes 3.85). The first and last 2 (nsec - 1) steps of a call leave the
 * lanes outside the call's frames untouched. */
typedef double v8d __attribute__((vector_size(64)));
typedef long long v8l __attribute__((vector_size(64)));

static void cascade_wave(const mb_biquad *const *c, mb_biquad_state *const *s,
                         const int nsec, const float *const *in,
                         float *const *out, int off, int n) {
  v8d b0 = {0}, c1 = {0}, c2 = {0}, na1 = {0}, na2 = {0}, s1 = {0}, s2 = {0};
  for (int k = 0; k < nsec; k++) {
    const ss_coef q = ss_of(c[k]);
    for (int ch = 0; ch < 2; ch++) {
      const int l = 2 * k + ch;
      b0[l] = q.b0, c1[l] = q.c1, c2[l] = q.c2, na1[l] = q.na1, na2[l] = q.na2;
      s1[l] = s[k]->s1[ch], s2[l] = s[k]->s2[ch];
    }
  }
  const float *l = in[0] + off, *r = in[1] + off;
  float *ol = out[0] + off, *or = out[1] + off;
  const int last = 2 * nsec - 2, lag = 2 * (nsec - 1);
  v8d y1 = {0}, y2 = {0}; /* the outputs of steps j - 1 and j - 2 */
  for (int j = 0; j < n + lag; j++) {
    const v8d xin = {j < n ? l[j] : 0, j < n ? r[j] : 0};
    const v8d x = __builtin_shuffle(y2, xin, (v8l){8, 9, 0, 1, 2, 3, 4, 5});
    const v8d y = b0 * x + s1;
    const v8d t = c1 * x + s2;
    const v8d n2 = na2 * s1 + c2 * x, n1 = na1 * s1 + t;
    if (j >= lag && j < n) {
      s1 = n1, s2 = n2;
    } else { /* the ramps: only sections whose frame j - 2k is ours */
      v8l m = {0};
      for (int k = 0; k < 8; k++)
        m[k] = j - 2 * (k / 2) >= 0 && j - 2 * (k / 2) < n ? -1 : 0;
      s1 = (v8d)(((v8l)n1 & m) | ((v8l)s1 & ~m));
      s2 = (v8d)(((v8l)n2 & m) | ((v8l)s2 & ~m));
    }
    if (j >= lag) {
      ol[j - lag] = to_float(y[last]);
      or[j - lag] = to_float(y[last + 1]);
    }
    y2 = y1;
    y1 = y;
  }
  for (int k = 0; k < nsec; k++)
    for (int ch = 0; ch < 2; ch++) {
      s[k]->s1[ch] = s1[2 * k + ch];
      s[k]->s2[ch] = s2[2 * k + ch];
    }
}

static void cascade_2(const mb_biquad *const *c, mb_biquad_state *const *s,
                      int nsec, const float *const *in, float *const *out,
                      int off, int n) {
  switch (nsec) {
#define SEC(k) case k: cascade_stereo(c, s, k, in, out, off, n); return;
    SEC(1) SEC(2) SEC(5) SEC(6) SEC(7) SEC(8)
#undef SEC
  case 3:
  case 4: cascade_wave(c, s, nsec, in, out, off, n); return;
  }
  cascade_n(c, s, nsec, in, out, 2, off, n); /* longer cascades */
}

void mb_biquad_cascade(const mb_biquad *const *c, mb_biquad_state *const *s,
                       int nsec, const float *const *in, float *const *out,
                       int nch, int off, int n) {
  switch (nch) {
  case 1: cascade_n(c, s, nsec, in, out, 1, off, n); break;
  case 2:
    if (nsec > 0) cascade_2(c, s, nsec, in, out, off, n);
    else cascade_n(c, s, nsec, in, out, 2, off, n);
    break;
  default: cascade_n(c, s, nsec, in, out, nch, off, n); break;
  }
}
