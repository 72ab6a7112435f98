/* delayline.h - a circular delay line with exact integer taps and 4-point
 * cubic fractional taps (Catmull-Rom).
 *
 * A line holds the last `len` samples written (len a power of two). A tap
 * at delay d reads the signal d frames before the next write: d = 1 is the
 * sample written last. Fractional taps interpolate the four samples at
 * delays floor(d) - 1 .. floor(d) + 2 with the Catmull-Rom cubic (a cubic
 * Hermite spline whose tangents are the central differences): it passes
 * through the samples, so an integer delay reads them back bit for bit
 * (weights exactly {0, 0, 1, 0}), its weights sum to 1 (DC gain exactly 1
 * in real arithmetic) and it reproduces straight lines, so the centroid of
 * a delayed impulse sits exactly at d.
 *
 * Fractional taps need d >= 2 (their newest point, delay floor(d) - 1,
 * must have been written); integer taps need d >= 1.
 *
 * The first MB_DELAYLINE_GUARD samples are mirrored after the end of the
 * buffer, so the four points of a tap are always contiguous in memory and
 * block reads run without per-sample wrapping. */
#ifndef MB_DSP_DELAYLINE_H
#define MB_DSP_DELAYLINE_H

#include <stdint.h>

#include "mb_module.h"

#define MB_DELAYLINE_GUARD 4

typedef struct mb_delayline {
  float *buf;   /* len + MB_DELAYLINE_GUARD floats */
  int64_t len;  /* power of two */
  int64_t mask; /* len - 1 */
  int64_t w;    /* index of the next write, 0 .. len - 1 */
} mb_delayline;

/* [control] Room for taps up to `max_delay` frames (fractional allowed).
 * The line starts silent. */
mb_status mb_delayline_init(mb_delayline *d, double max_delay);
/* [control] Free the buffer; a zeroed or freed line is fine. */
void mb_delayline_free(mb_delayline *d);
/* [audio] Silence the whole line (a memset of len floats). */
void mb_delayline_clear(mb_delayline *d);

/* [any] Catmull-Rom weights for a tap whose delay has fractional part
 * `frac` (0 <= frac < 1), for the four points oldest first (delays
 * floor(d) + 2, + 1, floor(d), floor(d) - 1). frac 0 gives exactly
 * {0, 0, 1, 0}. */
void mb_delayline_weights(double frac, float w[4]);

/* [audio] The four points of a tap with integer part `di` (>= 1; >= 2 for
 * a fractional tap), oldest first: p[2] is the sample di frames back. */
static inline const float *mb_delayline_points(const mb_delayline *d,
                                               int64_t di) {
  return d->buf + ((d->w - di - 2) & d->mask);
}

/* [audio] Weighted sum of a tap's four points (oldest first). */
static inline float mb_delayline_interp(const float *p, const float *w) {
  return w[0] * p[0] + w[1] * p[1] + w[2] * p[2] + w[3] * p[3];
}

/* [audio] One interpolated tap at delay `delay` (>= 2, or an integer >= 1). */
static inline float mb_delayline_read(const mb_delayline *d, double delay) {
  const int64_t di = (int64_t)delay;
  const double frac = delay - (double)di;
  const float *p = mb_delayline_points(d, di);
  if (frac == 0) return p[2];
  float w[4];
  mb_delayline_weights(frac, w);
  return mb_delayline_interp(p, w);
}

/* [audio] Append one sample. */
static inline void mb_delayline_push(mb_delayline *d, float x) {
  d->buf[d->w] = x;
  if (d->w < MB_DELAYLINE_GUARD) d->buf[d->len + d->w] = x;
  d->w = (d->w + 1) & d->mask;
}

/* [audio] The taps for the next n writes: out[j] = the tap at integer part
 * di that a read just before write number j (0-based) would give, with
 * weights w (NULL: integer tap, read exactly). When the caller writes the
 * line between the reads (feedback), n must stay <= di - 1 (fractional) or
 * <= di (integer) so that every point read was written before the call. */
void mb_delayline_read_block(const mb_delayline *d, int64_t di,
                             const float *w, float *out, int n);
/* [audio] Append n samples. */
void mb_delayline_write_block(mb_delayline *d, const float *x, int n);
/* [audio] Append n zeros (cheaper than a buffer of zeros). */
void mb_delayline_write_zeros(mb_delayline *d, int64_t n);

#endif
