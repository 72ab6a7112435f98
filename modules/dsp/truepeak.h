/* truepeak.h - true-peak (inter-sample peak) detection.
 *
 * ITU-R BS.1770-4 Annex 2 measures the true peak as the largest |value| of
 * the signal oversampled 4x below 96 kHz, 2x from 96 kHz to below 192 kHz,
 * and not at all from 192 kHz (the factors libebur128 uses too). This
 * kernel uses those factors (MB_TP_FINE: 4x below 192 kHz, 2x above) with
 * its own interpolator, which the Annex allows, built from half-band
 * stages so that the input samples pass unchanged (the true peak is never
 * below the sample peak):
 *
 *   stage 1: the midpoint between samples, a Kaiser-windowed sinc with 32
 *            taps (beta 6) at the input rate;
 *   stage 2 (4x): the quarter points, the same kind of design with 8 taps
 *            (beta 6) on the 2x sequence.
 *
 * Each stage's taps sum to 1 (DC passes exactly). At 4x the cascade is
 * flat within +-0.006 dB up to 20 kHz at 48 kHz (-0.17 dB at 20 kHz for
 * 44.1 kHz) and its images are at least 63 dB down at 48 kHz (34 dB at
 * 44.1 kHz, where the image of 20 kHz falls at 24.1 kHz).
 *
 * A grid samples a sinusoid between its crests: plain 4x reads up to 0.5 dB
 * low for content near 20 kHz at 48 kHz. MB_TP_REFINE replaces the largest
 * grid value of each interval, where it is a local maximum of |grid|, with
 * the crest of the parabola through it and its two neighbours: never lower,
 * and within 0.02 dB of a sinusoid's amplitude up to 0.42 fs at 4x (0.04 dB
 * up to 20 kHz at 2x and 1x), wherever its crest falls between samples.
 * Without the flag the reading is the Annex's.
 *
 * The envelope of interval j is the largest value on [j, j + 1): sample j
 * and the grid points after it. It is known `delay` frames later (the
 * interpolator's look-ahead: 18 frames at 4x, 16 at 2x, 1 at 1x): after
 * feeding frame t, the newest envelope value is interval t - delay.
 *
 * Float throughout; the inner loops run 8 frames at a time as vectors
 * (AVX with -march=native), one channel at a time, in chunks of 256 frames.
 * Results do not depend on how the signal is split into calls. */
#ifndef MB_DSP_TRUEPEAK_H
#define MB_DSP_TRUEPEAK_H

#include "mb_module.h"

enum {
  MB_TP_REFINE = 1u << 0, /* refine local maxima with a parabola (above) */
  MB_TP_FINE = 1u << 1,   /* 4x up to 192 kHz, 2x above (above) */
};

typedef struct mb_truepeak {
  int nch;
  int factor; /* 1, 2 or 4 */
  int delay;  /* frames */
  int refine;
  float level;  /* refinement floor (mb_truepeak_set_floor) */
  float c1[16]; /* stage 1: tap pair t = 1..16 (x[k+t] + x[k+1-t]) */
  float c2[4];  /* stage 2: tap pair t = 1..4 on the 2x sequence */
  float *x;     /* per channel: history, chunk, padding */
  float *m;     /* work array for one chunk: midpoints */
} mb_truepeak;

/* [control] Prepare for `nch` channels at `rate` Hz; flags: MB_TP_*.
 * Returns MB_ERR_NOMEM or MB_ERR_ARG (nch outside 1..MB_MAX_CHANNELS,
 * rate <= 0). */
mb_status mb_truepeak_init(mb_truepeak *tp, double rate, int nch, int flags);
/* [control] Free what init allocated; safe on a zeroed or freed struct. */
void mb_truepeak_free(mb_truepeak *tp);
/* [audio] Forget the history (as if the signal started with zeros). */
void mb_truepeak_reset(mb_truepeak *tp);
/* [any] Oversampling factor for a rate and flags (4, 2 or 1). */
int mb_truepeak_factor(double rate, int flags);
/* [any] Frames by which the envelope lags the input (see above). */
static inline int mb_truepeak_delay(const mb_truepeak *tp) {
  return tp->delay;
}

/* [audio] Envelope values that would stay below `level` may be left
 * unrefined (read on the grid): for callers that only act on values at or
 * above a level, such as a limiter's ceiling. 0 (the default) refines
 * every value. The meters below use their running maximum by themselves. */
static inline void mb_truepeak_set_floor(mb_truepeak *tp, float level) {
  tp->level = level;
}

/* [audio] Feed n frames of planar channels in[c]; env[c][i] receives the
 * envelope of interval (first frame of this call) + i - delay. */
void mb_truepeak_envelope(mb_truepeak *tp, const float *const *in,
                          float *const *env, int n);
/* [audio] The same with env[i] the largest over channels. */
void mb_truepeak_envelope_max(mb_truepeak *tp, const float *const *in,
                              float *env, int n);
/* [audio] Feed n frames and raise peak[c] (linear) to the largest envelope
 * value seen on channel c: a meter. To include the last `delay` frames of
 * a finished signal, feed mb_truepeak_delay() frames of zeros at the end. */
void mb_truepeak_update(mb_truepeak *tp, const float *const *in, int n,
                        float *peak);
/* [audio] The same for interleaved frames (x[i * nch + c]). */
void mb_truepeak_update_interleaved(mb_truepeak *tp, const float *x, int n,
                                    float *peak);

#endif
