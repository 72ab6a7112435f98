/* delayline.c - the delay line's allocation, weights and block transfers. */
#include "dsp/delayline.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

mb_status mb_delayline_init(mb_delayline *d, double max_delay) {
  memset(d, 0, sizeof *d);
  if (!(max_delay >= 1) || max_delay > 0x1p40) return MB_ERR_ARG;
  /* The oldest point of a tap is floor(d) + 2 back, and the next write
   * must not overwrite it: len >= floor(d) + 3. */
  const int64_t need = (int64_t)max_delay + 3;
  int64_t len = MB_DELAYLINE_GUARD;
  while (len < need) len <<= 1;
  d->buf = calloc((size_t)(len + MB_DELAYLINE_GUARD), sizeof(float));
  if (!d->buf) return MB_ERR_NOMEM;
  d->len = len;
  d->mask = len - 1;
  return MB_OK;
}

void mb_delayline_free(mb_delayline *d) {
  free(d->buf);
  memset(d, 0, sizeof *d);
}

void mb_delayline_clear(mb_delayline *d) {
  memset(d->buf, 0, sizeof(float) * (size_t)(d->len + MB_DELAYLINE_GUARD));
}

void mb_delayline_weights(double frac, float w[4]) {
  /* The curve runs from the older sample P0 (delay floor(d) + 1, u = 0) to
   * the newer P1 (delay floor(d), u = 1); the tap sits at u = 1 - frac.
   * Catmull-Rom: v = P0 + u (P1 - Pm) / 2 + u^2 (Pm - 5/2 P0 + 2 P1 - P2 / 2)
   * + u^3 ((P2 - Pm) / 2 + 3/2 (P0 - P1)), Pm the oldest, P2 the newest.
   * At u = 1 every term is exact in binary: {0, 0, 1, 0}. */
  const double u = 1.0 - frac, u2 = u * u, u3 = u2 * u;
  w[0] = (float)(-0.5 * u + u2 - 0.5 * u3);
  w[1] = (float)(1.0 - 2.5 * u2 + 1.5 * u3);
  w[2] = (float)(0.5 * u + 2.0 * u2 - 1.5 * u3);
  w[3] = (float)(-0.5 * u2 + 0.5 * u3);
}

void mb_delayline_read_block(const mb_delayline *d, int64_t di,
                             const float *w, float *out, int n) {
  int64_t rs = (d->w - di - 2) & d->mask;
  while (n > 0) {
    /* Points rs .. rs + m + 2 stay inside len + GUARD: no wrap inside. */
    int m = (int)(d->len + 1 - rs < n ? d->len + 1 - rs : n);
    const float *p = d->buf + rs;
    if (!w) {
      memcpy(out, p + 2, sizeof(float) * (size_t)m);
    } else {
      const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
      for (int j = 0; j < m; j++)
        out[j] = w0 * p[j] + w1 * p[j + 1] + w2 * p[j + 2] + w3 * p[j + 3];
    }
    out += m;
    n -= m;
    rs = (rs + m) & d->mask;
  }
}

static void mirror(mb_delayline *d, int64_t from, int64_t m) {
  /* Keep buf[len + i] == buf[i] for i < GUARD. */
  for (int64_t i = from; i < from + m && i < MB_DELAYLINE_GUARD; i++)
    d->buf[d->len + i] = d->buf[i];
}

void mb_delayline_write_block(mb_delayline *d, const float *x, int n) {
  while (n > 0) {
    const int m = (int)(d->len - d->w < n ? d->len - d->w : n);
    memcpy(d->buf + d->w, x, sizeof(float) * (size_t)m);
    mirror(d, d->w, m);
    d->w = (d->w + m) & d->mask;
    x += m;
    n -= m;
  }
}

void mb_delayline_write_zeros(mb_delayline *d, int64_t n) {
  if (n > d->len) { /* only the last len writes are kept */
    d->w = (d->w + (n - d->len)) & d->mask;
    n = d->len;
  }
  while (n > 0) {
    const int64_t m = d->len - d->w < n ? d->len - d->w : n;
    memset(d->buf + d->w, 0, sizeof(float) * (size_t)m);
    mirror(d, d->w, m);
    d->w = (d->w + m) & d->mask;
    n -= m;
  }
}
