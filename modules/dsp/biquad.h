/* biquad.h - first- and second-order IIR sections in double precision.
 *
 * Designs follow R. Bristow-Johnson, "Cookbook formulae for audio EQ biquad
 * filter coefficients" (the Audio EQ Cookbook): each is the bilinear
 * transform of an analog prototype, prewarped so that the digital filter
 * has the analog response exactly at f0. Coefficients are normalised so
 * that a0 = 1:
 *
 *   H(z) = (b0 + b1 z^-1 + b2 z^-2) / (1 + a1 z^-1 + a2 z^-2)
 *
 * A first-order section is a biquad with b2 = a2 = 0.
 *
 * Coefficients and state are double: a 30 Hz section at 192 kHz has its
 * poles within 1e-3 of z = 1, where float coefficients would move the
 * response by decibels. Processing is transposed direct form II (with the
 * output substituted into the history update, see biquad.c), which keeps
 * working when the coefficients change between samples (sweeps).
 *
 * The cascade kernel loops over frames with all channels inside the loop
 * body (shared/BENCH.md: 4.7x faster than one loop per channel); stereo
 * cascades of 3 or 4 sections run all sections at once as a wavefront. */
#ifndef MB_DSP_BIQUAD_H
#define MB_DSP_BIQUAD_H

#include "mb_module.h"

typedef struct mb_biquad {
  double b0, b1, b2, a1, a2;
} mb_biquad;

/* History of one section for every channel (transposed direct form II). */
typedef struct mb_biquad_state {
  double s1[MB_MAX_CHANNELS], s2[MB_MAX_CHANNELS];
} mb_biquad_state;

/* Designs. [any] rate and f in Hz, 0 < f < rate/2; q > 0; gain in dB.
 * Second order, Audio EQ Cookbook with alpha = sin(w0)/(2q), w0 =
 * 2 pi f/rate, A = 10^(gain/40) (peak and shelves). */
void mb_biquad_identity(mb_biquad *c);
void mb_biquad_lowpass(mb_biquad *c, double rate, double f, double q);
void mb_biquad_highpass(mb_biquad *c, double rate, double f, double q);
/* Band-pass with constant 0 dB peak gain (the cookbook's second BPF). */
void mb_biquad_bandpass(mb_biquad *c, double rate, double f, double q);
void mb_biquad_notch(mb_biquad *c, double rate, double f, double q);
/* The cookbook's peakingEQ: `gain` dB at f, 0 dB far from it. */
void mb_biquad_peak(mb_biquad *c, double rate, double f, double q,
                    double gain);
/* Shelves: `gain` dB below (low) or above (high) f, gain/2 at f. */
void mb_biquad_lowshelf(mb_biquad *c, double rate, double f, double q,
                        double gain);
void mb_biquad_highshelf(mb_biquad *c, double rate, double f, double q,
                         double gain);

/* First order, bilinear transform prewarped at f (-3.01 dB at f):
 * lowpass 1/(s+1), highpass s/(s+1), s normalised to 2 pi f. */
void mb_biquad_lowpass1(mb_biquad *c, double rate, double f);
void mb_biquad_highpass1(mb_biquad *c, double rate, double f);
/* First-order tilt: analog H(s) = (a s + 1)/(s + a), a = 10^(gain/40),
 * s normalised to 2 pi f: -gain/2 dB at DC, 0 dB at f, +gain/2 dB at
 * Nyquist (where the bilinear transform maps s = infinity). */
void mb_biquad_tilt1(mb_biquad *c, double rate, double f, double gain);

/* Butterworth cascade of order n (1..8) as sections: Q of second-order
 * section k (0 <= k < n/2); an odd order adds one first-order section.
 * Q_k = 1 / (2 cos psi_k), the pole angles psi_k from the negative real
 * axis: (2k+1) pi/(2n) for even n, (k+1) pi/n for odd n. [any] */
double mb_butterworth_q(int n, int k);

/* Is the section exactly H(z) = 1 (b0 == 1, b1 == a1, b2 == a2)? With zero
 * state it then returns its input bit for bit. [any] */
int mb_biquad_is_identity(const mb_biquad *c);
/* |H| at frequency f Hz. [any] */
double mb_biquad_mag(const mb_biquad *c, double rate, double f);
/* Largest pole radius (< 1 for a stable section). [any] */
double mb_biquad_pole_radius(const mb_biquad *c);

/* [audio] Zero the history. */
void mb_biquad_clear(mb_biquad_state *s);
/* [audio] Set history values below 1e-80 to zero, so that a decaying
 * filter never reaches double subnormals (slow on x86). Returns non-zero
 * while some history is left. */
int mb_biquad_flush(mb_biquad_state *s, int nch);

/* [audio] Run a cascade of `nsec` sections (c[k] with history s[k]) over
 * frames off..off+n-1 of nch planar channels: in to out (may be the same
 * buffers). Inside, samples stay double from the input to the output; the
 * output float is flushed to zero when below FLT_MIN (no subnormals). */
void mb_biquad_cascade(const mb_biquad *const *c, mb_biquad_state *const *s,
                       int nsec, const float *const *in, float *const *out,
                       int nch, int off, int n);

#endif
