/* dynamics.h - the gain engine shared by compressor, expander and multiband.
 *
 * Structure (D. Giannoulis, M. Massberg, J. D. Reiss, "Digital Dynamic Range
 * Compressor Design - A Tutorial and Analysis", JAES 60(6), 2012): level
 * detection, then a static gain computer in dB, then a smoothed gain in the
 * log domain (attack while the level rises, release while it falls).
 * Smoothing the gain in dB makes attack and release plain first-order time
 * constants: after a step the gain change in dB moves 1 - 1/e of the way in
 * `attack` (or `release`) milliseconds.
 *
 * Levels. The peak detector reads the instantaneous |x|; the RMS detector a
 * one-pole average of x^2 with time constant `rms_window`, scaled by 2 so
 * that a sine reads its peak level (the AES17 dBFS convention: a full-scale
 * sine is 0 dBFS): a sine reads the same in both detectors, a square 3.01
 * dB more in RMS than in peak.
 *
 * Smoothing, per channel, on the gain g = curve(level) in dB (Giannoulis et
 * al.'s "smooth decoupled" detector, made to keep exact time constants):
 *   1. a peak stage p holds the gain of the loudest recent level: it jumps
 *      at once to g whenever g is on the loud side of p (more reduction for
 *      a compressor, less for an expander), otherwise (after `hold` frames
 *      for the expander) relaxes toward g with the release coefficient;
 *   2. the output y follows p with the attack coefficient while p is on
 *      the loud side of y, and equals p otherwise.
 * So a steady tone gives a steady gain (p is refreshed at every peak of the
 * waveform and droops between peaks by only period/release of the change,
 * 0.3 % at 1 kHz and 150 ms); a level step up moves y exponentially with
 * `attack`; a step down to below the curve's knee moves it exponentially
 * with `release` exactly (p decays alone and y = p).
 *
 * One mb_dyn runs a set of channels with a stereo link: every channel's
 * gain computer sees its own level, and the gain applied to a channel is
 * link * (gain of the loudest channel) + (1 - link) * its own, formed
 * before smoothing. For a compressor the loudest channel has the largest
 * reduction; for an expander the smallest (a loud channel keeps the gate
 * open for all). Link 1 gives every channel exactly the same gain.
 *
 * The engine only computes gains: process() turns detector signals into a
 * linear gain per frame and channel. What the gain multiplies (the same
 * signal, a delayed copy for look-ahead, a band of a crossover) is the
 * caller's business, as are makeup and dry/wet. */
#ifndef MB_DSP_DYNAMICS_H
#define MB_DSP_DYNAMICS_H

#include <stdint.h>

#include "mb_module.h"

typedef enum { MB_DYN_PEAK, MB_DYN_RMS } mb_dyn_detector;
typedef enum {
  MB_DYN_COMPRESS, /* above threshold: level rises 1/ratio dB per dB */
  MB_DYN_EXPAND,   /* below threshold: level falls ratio dB per dB, down to
                      -range dB (a gate is a large ratio) */
} mb_dyn_kind;

/* Settings, all in user units. Plain data: fill it, then mb_dyn_set().
 * Valid ranges (the modules check them): ratio >= 1, knee >= 0, range > 0,
 * attack >= 0, release >= 1 ms, hold >= 0, hysteresis >= 0, rms_window
 * >= 1 ms, 0 <= link <= 1. */
typedef struct mb_dyn_config {
  mb_dyn_kind kind;
  double threshold;  /* dBFS */
  double ratio;      /* >= 1 */
  double knee;       /* dB, full width of the soft knee; 0 = hard */
  double range;      /* dB > 0, expander only: largest reduction */
  double attack;     /* ms */
  double release;    /* ms */
  double hold;       /* ms, expander only: after the level last reached its
                        loudest recent value, the gain stays this long
                        before the release starts */
  double hysteresis; /* dB >= 0, expander only: the curve's threshold is
                        this much lower while open than while closed; it
                        opens when the level reaches `threshold` and closes
                        when the (held, released) level falls below
                        threshold - hysteresis */
  mb_dyn_detector detector;
  double rms_window; /* ms, RMS detector's averaging time constant */
  double link;       /* 0..1 */
} mb_dyn_config;

typedef struct mb_dyn {
  mb_dyn_config cfg;
  double rate;
  int nch;
  /* derived */
  double a_att, a_rel, a_rms; /* one-pole coefficients exp(-1/(tau rate)) */
  int64_t hold_frames;
  float thr, half_knee, slope, kq; /* curve constants (float, vector loop) */
  float thr_open;                  /* expander threshold while open */
  /* state per channel */
  double ms[MB_MAX_CHANNELS];  /* RMS detector: smoothed mean square */
  double pk[MB_MAX_CHANNELS];  /* peak stage, gain dB (<= 0) */
  double gr[MB_MAX_CHANNELS];  /* smoothed gain change, dB (<= 0) */
  /* compressor: pk and gr are those of the last odd frame (frames counted
   * from the reset); while a pair is open (half), se holds the curve's gain
   * at its even frame */
  double se[MB_MAX_CHANNELS];
  int half[MB_MAX_CHANNELS];
  double lp[MB_MAX_CHANNELS];  /* expander: held level for the hysteresis
                                  state, dBFS */
  int64_t held[MB_MAX_CHANNELS];  /* expander hold countdown (pk), frames */
  int64_t lheld[MB_MAX_CHANNELS]; /* expander hold countdown (lp), frames */
  int open[MB_MAX_CHANNELS];      /* expander hysteresis state */
  double max_gr;               /* largest reduction seen since reset, dB > 0 */
} mb_dyn;

/* [any] The static curve: gain change in dB (<= 0) for an input level in
 * dBFS, with the soft knee as a quadratic over threshold +- knee/2 (the
 * Giannoulis/Massberg/Reiss form). Tests and docs use this as the
 * definition. `open` selects the expander's hysteresis side. */
double mb_dyn_curve(const mb_dyn_config *c, double level_db, int open);

/* [control] Prepare for `nch` channels at `rate`, state cleared. */
void mb_dyn_init(mb_dyn *d, double rate, int nch, const mb_dyn_config *c);
/* [audio] New settings; state (envelopes) is kept so changes do not click. */
void mb_dyn_set(mb_dyn *d, const mb_dyn_config *c);
/* [audio] Clear envelopes and the max_gr figure. */
void mb_dyn_reset(mb_dyn *d);
/* [audio] Detector inputs det[c][i] (c < nch) for n frames -> linear gain
 * gain[c][i]. det and gain may not alias (det pointers may repeat, e.g. a
 * mono key broadcast to every channel). No allocation. With link 1 (or
 * one channel) every gain[c] holds the same values. */
void mb_dyn_process(mb_dyn *d, const float *const *det, float *const *gain,
                    int n);

/* [any] Fast log2 and exp2 for the vector loops: bit tricks and a
 * polynomial, branch-free so that loops over them vectorise; exact at 1
 * and 0 respectively. log2: x > 0 normal; absolute error about 1e-6
 * (6e-6 dB) for levels above -140 dBFS, 4e-6 down to -600 dBFS where the
 * float result's own rounding rules.
 * exp2: -126 <= x <= 126 (callers guarantee it: no clamp here, GCC turns
 * a clamp into jumps that stop vectorisation), relative error below 3e-7
 * (3e-6 dB). */
static inline float mb_fast_log2(float x) {
  uint32_t u;
  __builtin_memcpy(&u, &x, 4);
  /* x = 2^e m with m in [0.7071, 1.4142): subtracting the bits of sqrt(1/2)
   * puts the exponent boundary there */
  const int32_t e = (int32_t)(u - 0x3f3504f3u) >> 23;
  const uint32_t mu = u - ((uint32_t)e << 23);
  float m;
  __builtin_memcpy(&m, &mu, 4);
  /* log2 m = 2/ln2 atanh t, t = (m-1)/(m+1), |t| < 0.172: odd series to
   * t^7, truncation below 3e-8 */
  const float t = (m - 1.0f) / (m + 1.0f), t2 = t * t;
  const float p =
      2.88539008f +
      t2 * (0.961796694f + t2 * (0.577078016f + t2 * 0.412198583f));
  return (float)e + t * p;
}

static inline float mb_fast_exp2(float x) {
  /* n = floor(x + 0.5) by truncation of a positive number (no libm call,
   * vectorises) */
  const float n = (float)((int32_t)(x + 126.5f) - 126);
  const float f = x - n; /* [-0.5, 0.5] */
  /* 2^f = e^(f ln2): Taylor to degree 6, truncation below 1.3e-7 */
  const float p =
      1.0f +
      f * (0.693147181f +
           f * (0.240226507f +
                f * (0.0555041087f +
                     f * (0.00961812911f +
                          f * (0.00133335581f + f * 0.000154035304f)))));
  const uint32_t su = (uint32_t)((int32_t)n + 127) << 23;
  float sc;
  __builtin_memcpy(&sc, &su, 4);
  return p * sc;
}

#endif
