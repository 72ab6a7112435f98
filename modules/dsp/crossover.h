/* crossover.h - Linkwitz-Riley 4th-order band splitting, 2 to 5 bands,
 * with all-pass compensation so that the bands sum to an all-pass.
 *
 * One crossover at f is the Linkwitz-Riley 4 pair (S. Linkwitz, "Active
 * Crossover Networks for Noncoincident Drivers", JAES 24(1), 1976): low
 * L(s) = 1/D(s)^2 and high H(s) = s^4/D(s)^2 with D(s) = s^2 + sqrt2 s + 1
 * (a squared second-order Butterworth), s normalised to 2 pi f. Both are
 * -6.02 dB at f. Since D(s) D(-s) = s^4 + 1, their sum is the second-order
 * all-pass A(s) = D(-s)/D(s): magnitude 1, phase not flat. Everything is
 * taken to z through the bilinear transform prewarped at f (K = tan(pi f /
 * rate)), which maps these identities exactly, so the digital high band is
 * computed as A - L (one all-pass instead of a second 4th-order filter).
 *
 * Several crossovers f1 < f2 < ... < fn split in a chain: band 1 is the low
 * side of f1, the high side is split again at f2, and so on; the last band
 * is the high side of fn. Band i then carries the phase of only the
 * crossovers up to its own, so band i also goes through the all-passes
 * A(f_{i+1}) ... A(f_n): with that compensation the bands sum to
 * A(f1) A(f2) ... A(fn), flat in magnitude. Band i's magnitude is
 * |L_i| prod_{j<i} |H_j|, with |L| = 1/(1 + W^4) and |H| = W^4/(1 + W^4),
 * W = tan(pi f_analysis / rate) / K.
 *
 * Filtering is double precision, two channels per vector register (GCC
 * vector extension; a lone channel rides with a silent partner), frames in
 * the inner loop. Each D(z) recursion is direct form II, shared by the
 * numerators that need it: the first Butterworth section and the all-pass
 * of a crossover read the same all-pole state. The outputs are written as
 * one multiply-add of the input plus a sum over the history (the same
 * transfer functions, expanded), so that a frame's chain through 2 to 5
 * bands is a few multiply-adds deep and consecutive frames overlap in the
 * CPU: the nested form (each output computed from the previous one) has
 * fewer operations but measured 1.4 to 1.7 times slower here. */
#ifndef MB_DSP_CROSSOVER_H
#define MB_DSP_CROSSOVER_H

#include <stddef.h>

#include "mb_module.h"

#define MB_XOVER_MAX 4 /* crossovers; bands = crossovers + 1 */
#define MB_XOVER_MIN_HZ 10.0
#define MB_XOVER_MAX_FRACTION 0.45 /* of the sample rate */

/* One crossover. 1/D(z) normalised: v[n] = x[n] - c1 v[n-1] - c2 v[n-2];
 * the low-pass section is g (1 + z^-1)^2 / D(z), the all-pass
 * (c2 + c1 z^-1 + z^-2) / D(z). With the first section's history v1, v2
 * and the second's w1, w2 (see crossover.c for the expansion):
 *   u   = g x + ga v1 + gb v2                (first low-pass section)
 *   low = g u + ga w1 + gb w2
 *   high = h[0] x + h[1] v1 + h[2] v2 + h[3] w1 + h[4] w2   (= A - L)
 *   all-pass alone: c2 x + e1 v1 + e2 v2 */
typedef struct mb_xover_coef {
  double c1, c2, g, ga, gb, e1, e2;
  double h[5];
} mb_xover_coef;

typedef struct mb_crossover {
  int n;   /* crossovers (1..MB_XOVER_MAX) */
  int nch; /* channels (1..MB_MAX_CHANNELS) */
  double rate;
  double f[MB_XOVER_MAX];
  mb_xover_coef k[MB_XOVER_MAX];
  /* split j: two all-pole states (the two Butterworth sections), each with
   * two past values per channel */
  double sp[MB_XOVER_MAX][4][MB_MAX_CHANNELS];
  /* compensation of band b by all-pass j (b < j): one all-pole state */
  double ap[MB_XOVER_MAX][MB_XOVER_MAX][2][MB_MAX_CHANNELS];
  int flush_left; /* frames to the next flush of tiny state */
} mb_crossover;

/* [any] Are these n crossover frequencies usable at `rate`? 1 <= n <=
 * MB_XOVER_MAX, each >= MB_XOVER_MIN_HZ and below MB_XOVER_MAX_FRACTION *
 * rate, strictly increasing. On failure writes one message naming
 * crossover<i> (1-based), its value and the allowed range into err and
 * returns MB_ERR_ARG. */
mb_status mb_crossover_check(double rate, const double *f, int n, char *err,
                             size_t errlen);

/* [control] Design for n frequencies (checked as above) and nch channels;
 * state cleared. */
mb_status mb_crossover_init(mb_crossover *x, double rate, int nch,
                            const double *f, int n, char *err, size_t errlen);

/* [audio] Clear the filter history. */
void mb_crossover_reset(mb_crossover *x);

/* [audio] Split n frames of nch planar channels: band b (0..x->n) of
 * channel c goes to bands[b][c][0..n-1]. `in` may be bands[k] for one k
 * (channel c in bands[k][c]): each frame is read before it is written.
 * Tiny history (below 1e-80) is set to zero every 1024 frames counted
 * from init/reset, whatever the split of calls, so the output is
 * identical for any call sizes and never reaches subnormals; band samples
 * below FLT_MIN are written as zero. */
void mb_crossover_split(mb_crossover *x, const float *const *in,
                        float *const *const *bands, int n);

#endif
