/* loudness.h - programme loudness, loudness range and peaks: ITU-R
 * BS.1770-4 with the EBU R128 measures of EBU Tech 3341 and Tech 3342.
 *
 * Signal path (BS.1770-4 Annex 1):
 *   K-weighting per channel: the pre-filter (a high shelf, +4 dB above
 *   about 1.7 kHz) then the RLB high-pass (about 38 Hz). At 48 kHz the
 *   sections are exactly the standard's coefficients (Table 1 and 2). At
 *   other rates they are the same analog sections redesigned: each 48 kHz
 *   section is mapped back through the bilinear transform to its analog
 *   prototype H(s) = (n2 s^2 + n1 (w0/Q) s + n0 w0^2) / (s^2 + (w0/Q) s +
 *   w0^2), prewarped at w0, and transformed again at the new rate. The
 *   prototypes come out as: shelf f0 1681.97 Hz, Q 0.70718, high-frequency
 *   gain n2 = +4.00 dB; high-pass f0 38.135 Hz, Q 0.50033, n2 = +0.0433 dB
 *   (the standard's RLB numerator 1, -2, 1 is not normalised: its gain n2
 *   is part of the analog section and kept at every rate, so a 997 Hz sine
 *   reads within 0.006 dB of its 48 kHz loudness from 44.1 to 192 kHz.
 *   libebur128 keeps the digital numerator 1, -2, 1 at every rate
 *   instead, which reads 0.022 dB lower than this at 96 kHz and 0.004 dB
 *   lower at 44.1 kHz).
 *   Mean square per channel, weighted (G: 1.0 for L, R, C; 0 for LFE; 1.41
 *   for surrounds), summed over channels: loudness = -0.691 + 10 log10(sum).
 *
 * Time structure: the signal is cut into 100 ms sub-blocks at frames
 * floor(k * rate / 10) (k = 1, 2, ...; exact for any rate). At the end of
 * every sub-block:
 *   - momentary loudness: the last 4 sub-blocks (400 ms);
 *   - short-term loudness: the last 30 sub-blocks (3 s);
 *   windows reaching before the first frame count that part as silence
 *   (as a meter started on silence shows; libebur128 does the same), and
 *   their maxima are kept;
 *   - gating blocks for the integrated loudness: 400 ms blocks every
 *     100 ms, complete ones only (the first ends at 400 ms);
 *   - short-term values for the loudness range: 3 s windows every 100 ms
 *     (10 Hz, Tech 3342), complete ones only (the first ends at 3 s).
 * A sub-block the signal ends inside counts only for the peaks.
 *
 * Integrated loudness (BS.1770-4 2.8): absolute gate -70 LUFS, relative
 * gate 10 LU below the loudness of the absolute-gated blocks; a block
 * passes a gate when its loudness is strictly above it. Exact: every
 * block's energy is kept in a list sized at create from the expected
 * length (8 bytes per block, 288 KB per hour for each of the two lists),
 * grown with mb_loudness_reserve() on the control thread, and never
 * allocated while feeding. When more is fed than the lists hold (a live
 * meter of unbounded length), the measures come from histograms with
 * 0.01 LU bins kept alongside (always, at the cost of two log10 per
 * 100 ms): integrated loudness then has an error below 0.005 LU and the
 * result says `exact = 0`.
 *
 * Loudness range (Tech 3342): short-term values above -70 LUFS, then above
 * (their energy mean - 20 LU); LRA = L95 - L10, the percentiles taken as
 * the nearest rank round((n - 1) p) of the sorted values (as libebur128;
 * 0 when no value passes).
 *
 * Peaks: sample peak = largest |x|; true peak from modules/dsp/truepeak.h
 * (BS.1770-4 Annex 2: the largest |value| on a grid 4x oversampled below
 * 96 kHz, 2x up to 192 kHz), when asked for at create. The interpolator
 * looks 18 frames ahead; the results finish the last frames fed as if the
 * signal stopped there (zeros after it), so a peak in the last frames
 * counts.
 *
 * NaN samples: peaks ignore them; the 400 ms blocks (and 3 s windows)
 * holding one drop out of the measures, and the filters' history is
 * cleared at the next 100 ms boundary, so the meter recovers.
 *
 * Speed: the filters run in double precision, frames outer and up to 4
 * channels in the lanes of one vector; 300 s of 48 kHz stereo take about
 * 28 ms of CPU here (10,000x real time), 88 ms with the true peak.
 *
 * Threads: create/reserve/get/destroy are [control]; feed and reset are
 * [audio] (no allocation, no locks, no I/O). Results must not be read
 * while another thread feeds the same instance. */
#ifndef MB_DSP_LOUDNESS_H
#define MB_DSP_LOUDNESS_H

#include <stdint.h>

#include "dsp/biquad.h"
#include "mb_module.h"

typedef struct mb_loudness mb_loudness;

enum {
  MB_LOUDNESS_TRUE_PEAK = 1u << 0, /* measure the true peak too */
};

/* Results; levels in LUFS / LU / dB. */
typedef struct mb_loudness_result {
  double integrated;     /* LUFS; -inf when no block passes the gates */
  double lra;            /* LU; 0 when no short-term value passes */
  double momentary_max;  /* LUFS; -inf before the first 100 ms */
  double short_term_max; /* LUFS; -inf before the first 100 ms */
  double sample_peak;    /* dBFS; -inf on silence */
  double true_peak;      /* dBTP; -inf on silence; NaN when not measured */
  int64_t frames;        /* frames fed since create or reset */
  int exact;             /* 1: integrated and LRA from every block; 0:
                            from the 0.01 LU histograms (lists full) */
} mb_loudness_result;

/* [control] A meter for `nch` channels at `rate` Hz. `frames`: how many
 * frames will be fed (the gating lists are sized for it), or -1 when
 * unknown (start small; reserve more, or rely on the histograms). flags:
 * MB_LOUDNESS_*. Channel weights start as mb_loudness_default_weight().
 * On failure *out is NULL and err says why (rate, channel count, memory). */
mb_status mb_loudness_create(mb_loudness **out, double rate, int nch,
                             int64_t frames, unsigned flags, char *err,
                             size_t errlen);
/* [control] Free and set *l to NULL; NULL or *l NULL is fine. */
void mb_loudness_destroy(mb_loudness **l);
/* [control] Make the lists hold `frames` frames in all (fed ones
 * included). MB_ERR_NOMEM leaves the meter as it was. */
mb_status mb_loudness_reserve(mb_loudness *l, int64_t frames);

/* [any] BS.1770-4 Table 3 weight of channel `ch` of an `nch`-channel
 * signal without a channel mask, in WAV order: 1: mono; 2: L R; 3: L R C;
 * 4: quad L R Ls Rs; 5: L R C Ls Rs; 6: 5.1 L R C LFE Ls Rs; 7: 6.1 (back
 * centre, 1.0); 8: 7.1 (L R C LFE and four surrounds at 1.41); channels
 * past the eighth count with 1.0 rather than being dropped. LFE is 0,
 * surrounds 1.41, everything else 1.0. */
double mb_loudness_default_weight(int nch, int ch);
/* [control] Override one channel's weight (>= 0). */
void mb_loudness_set_weight(mb_loudness *l, int ch, double w);

/* [audio] Start a new measurement: as freshly created (lists keep their
 * capacity). */
void mb_loudness_reset(mb_loudness *l);
/* [audio] Measure frames off .. off+n-1 of the planar channels in[0 ..
 * nch-1]. Any n >= 0; results do not depend on how the signal is cut. */
void mb_loudness_feed(mb_loudness *l, const float *const *in, int off,
                      int n);

/* [control] The measures so far. Sorting the short-term values for the
 * loudness range needs a scratch copy (allocated here; if that fails the
 * range comes from the histogram). */
void mb_loudness_get(const mb_loudness *l, mb_loudness_result *r);
/* [audio] Loudness of the last complete 400 ms / 3 s window (LUFS, -inf
 * before the first 100 ms or on silence): for a live display, read by the
 * feeding thread after a block and passed on (or by any thread while
 * nothing feeds). */
double mb_loudness_momentary(const mb_loudness *l);
double mb_loudness_short_term(const mb_loudness *l);

/* The K-weighting design, for tests and other users. An analog prototype
 * H(s) = (n2 s^2 + n1 (w0/q) s + n0 w0^2) / (s^2 + (w0/q) s + w0^2),
 * w0 = 2 pi f0. */
typedef struct mb_kweight_proto {
  double f0, q, n0, n1, n2;
} mb_kweight_proto;
/* [any] The two prototypes (pre-filter shelf, RLB high-pass), derived from
 * the standard's 48 kHz coefficients. */
void mb_kweight_prototypes(mb_kweight_proto *shelf, mb_kweight_proto *hp);
/* [any] The two sections at `rate` Hz (a0 = 1). A shelf whose f0 is at or
 * above 0.499 rate (rates below about 3.4 kHz) lies beyond the band and is
 * left out (identity). */
void mb_kweight_design(double rate, mb_biquad *shelf, mb_biquad *hp);

#endif
