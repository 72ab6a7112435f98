/* oversample.h - linear-phase oversampling by 2, 4, 8 or 16 around a
 * per-sample process (saturation, clipping, anything memoryless that makes
 * harmonics above the base Nyquist frequency).
 *
 * Use, per channel and per block of n base-rate frames:
 *
 *   float *top = mb_os_up(os, in, n);          // n * factor samples
 *   for (i = 0; i < mb_os_padded(os, n); i++)  // may run past n * factor
 *     top[i] = f(top[i]);
 *   mb_os_down(os, out, n);                    // n samples, delayed by
 *                                              // mb_os_latency(os) frames
 *
 * Structure: a cascade of 2x stages, each a linear-phase half-band FIR
 * (every second coefficient zero, the centre 1/2) designed at create()
 * by the windowed-sinc method with a Kaiser window (J. F. Kaiser, "Nonrecursive
 * digital filter design using the I0-sinh window function", 1974; length and
 * beta from Kaiser's formulas for 100 dB, then lengthened until a dense
 * check of the designed response meets the targets). Interpolation runs
 * stage 1 first (base rate to 2x), decimation the reverse; each stage is
 * computed in polyphase form at its lower rate, so a half-band costs half
 * its taps per output. Frequencies below in units of the base rate fs:
 *
 *   stage 1 (fs <-> 2 fs): passband 0 .. 0.4535 fs (20 kHz at 44.1 kHz,
 *     21.77 kHz at 48 kHz), stopband from 0.5465 fs: what the process
 *     puts between 0.5 fs and 0.5465 fs folds into 0.4535 .. 0.5 fs with
 *     partial attenuation, everything above 0.5465 fs (and everything that
 *     would fold into the passband) is attenuated by the stopband figure.
 *   stage s >= 2 (2^(s-1) fs <-> 2^s fs): passband 0 .. 0.5465 fs (covers
 *     stage 1's transition band), stopband from 2^(s-1) fs - 0.5465 fs:
 *     what it lets fold lands above 0.5465 fs, where stage 1 removes it.
 *   Targets per stage: stopband <= -100 dB, passband within +-0.0005 dB,
 *   so a full round trip (up and down through every stage) stays within
 *   +-0.01 dB up to 0.4535 fs, and images and aliases are 100 dB down.
 *
 * Latency. Every half-band has odd length 4m + 3, so its delay (2m + 1
 * samples at its rate) is whole; the round trip's delay at the top rate is
 * whole too, and each decimator picks the even or the odd output phase so
 * that the delay stays whole at every lower rate (see oversample.c). The
 * result: the output is the input delayed by exactly mb_os_latency()
 * base-rate frames (a linear-phase response symmetric about that frame),
 * whatever delay `extra` the caller's process adds at the top rate, as long
 * as it is a whole number of top-rate samples.
 *
 * Everything is float (the filters' 100 dB need 17 bits; float gives 24).
 * Outputs are computed eight lanes at a time with the same operations for
 * every sample, so results do not depend on how a signal is cut into
 * blocks: processing 1, 64 or 4096 frames per call gives identical bits. */
#ifndef MB_DSP_OVERSAMPLE_H
#define MB_DSP_OVERSAMPLE_H

#include "mb_module.h"

#define MB_OS_MAX_FACTOR 16

typedef struct mb_oversampler mb_oversampler;

/* [control] factor: 1, 2, 4, 8 or 16 (1 passes the samples through with
 * the `extra` delay only). max_frames: the largest n given to mb_os_up().
 * extra: whole top-rate samples of delay the caller's process adds between
 * up and down (0 for a memoryless function), included in the latency.
 * Returns NULL with *st = MB_ERR_ARG (bad factor or sizes) or
 * MB_ERR_NOMEM. */
mb_oversampler *mb_os_create(int factor, int max_frames, int extra,
                             mb_status *st);
/* [control] Frees; NULL does nothing. */
void mb_os_free(mb_oversampler *os);
/* [any] The factor given to create. */
int mb_os_factor(const mb_oversampler *os);
/* [any] Delay of down(process(up(x))) relative to x, in base-rate frames:
 * exact for a process that delays by `extra` top-rate samples. */
int mb_os_latency(const mb_oversampler *os);
/* [any] Top-rate samples the caller may read and write after mb_os_up(os,
 * in, n): n * factor rounded up to a multiple of 32. Samples past n *
 * factor are scratch (their values are discarded by mb_os_down). */
int mb_os_padded(const mb_oversampler *os, int n);
/* [any] Taps (non-zero coefficients, centre included) of each stage's
 * half-band, for reports and tests; returns the number of stages. */
int mb_os_stage_taps(const mb_oversampler *os, int *taps, int max);

/* [audio] Interpolate n (<= max_frames) base-rate samples; returns the
 * top-rate buffer holding n * factor samples, to be processed in place. */
float *mb_os_up(mb_oversampler *os, const float *in, int n);
/* [audio] Decimate the top-rate buffer of the last mb_os_up() (same n)
 * into n base-rate samples. out may be the `in` given to mb_os_up(). */
void mb_os_down(mb_oversampler *os, float *out, int n);
/* [audio] Clear the filters' history (as if newly created). */
void mb_os_reset(mb_oversampler *os);

#endif
