/* fftconv.h - streaming FFT convolution with a fixed FIR: uniformly
 * partitioned overlap-save (UPOLS), float FFTW.
 *
 * The FIR h (up to `max_taps` taps) is cut into K = ceil(taps/B) partitions
 * of B frames ("block"). Input is gathered B frames at a time; when a block
 * is complete, its 2B-point spectrum (the previous block and this one)
 * enters a frequency-domain delay line, the output spectrum is the sum over
 * k of H_k times the input spectrum k blocks ago, and the last B samples of
 * its inverse transform are the exact linear convolution for that block
 * (overlap-save). Those B samples are played during the next B frames, so
 *
 *   out[n] = sum_{m=0}^{taps-1} h[m] in[n - B - m]     (latency B frames)
 *
 * exactly, whatever the split of the stream into process() calls: the
 * partition grid is counted from creation (or reset), so results do not
 * depend on how the caller blocks its calls. Cost per frame and channel:
 * two FFTs of 2B points per B frames plus K complex multiply-adds per bin.
 *
 * The FIR can be replaced while running (mb_fftconv_set_ir): the new one
 * takes over at the next block computation, and that block's output is a
 * linear crossfade over its B frames from the old FIR's output to the new
 * one's (both computed from the same input history), so a change never
 * clicks; after it the output is exactly the new FIR's.
 *
 * Plans are made in mb_fftconv_new with FFTW_ESTIMATE (deterministic: the
 * same plan, hence the same rounding, in every process) and only executed
 * afterwards. FFTW's planner is not thread-safe: create and free on the
 * control thread only. Samples below FLT_MIN in the output are flushed to
 * zero (no subnormals). */
#ifndef MB_DSP_FFTCONV_H
#define MB_DSP_FFTCONV_H

typedef struct mb_fftconv mb_fftconv;

/* [control] A convolver for `channels` planar channels (1..MB_MAX_CHANNELS)
 * with `irs` FIRs: 1 (every channel uses FIR 0) or `channels` (channel c
 * uses FIR c). FIRs have up to `max_taps` taps; `block` >= 1 frames per
 * partition (a power of two is fastest). Every FIR starts as all zeros.
 * NULL when out of memory or an argument is out of range. */
mb_fftconv *mb_fftconv_new(int channels, int irs, int max_taps, int block);
/* [control] Free; NULL does nothing. */
void mb_fftconv_free(mb_fftconv *c);

/* [any] Latency in frames: the block size. */
int mb_fftconv_latency(const mb_fftconv *c);
/* [any] Partition (block) size and partition count for max_taps. */
int mb_fftconv_block(const mb_fftconv *c);
int mb_fftconv_partitions(const mb_fftconv *c);

/* [audio] Load FIR `ir` (taps[0..n-1], n <= max_taps; the rest is zero).
 * crossfade != 0: it takes over at the next block computation, crossfaded
 * over that block's B output frames (a second call before then replaces
 * the pending FIR). crossfade == 0: it replaces the current FIR at once,
 * without a crossfade (use before processing or after a reset). Costs
 * ceil(n/B) FFTs of 2B points; no allocation. */
void mb_fftconv_set_ir(mb_fftconv *c, int ir, const float *taps, int n,
                       int crossfade);

/* [audio] Frames until the next block computation: the next process()
 * call whose frames reach this count computes a block (1..B). */
int mb_fftconv_until_block(const mb_fftconv *c);

/* [audio] Convolve n frames of every channel: in[ch][0..n-1] to
 * out[ch][0..n-1]. in and out may be the same buffers. */
void mb_fftconv_process(mb_fftconv *c, const float *const *in,
                        float *const *out, int n);

/* [audio] Clear the history (input, delay line, output) as if new; the
 * FIRs stay, and a pending FIR takes over at once. */
void mb_fftconv_reset(mb_fftconv *c);

#endif
