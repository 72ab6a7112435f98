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

/* ---- mb_partconv: non-uniformly partitioned convolution ------------------
 *
 * A convolution engine for long FIRs (impulse responses) with several
 * inputs, outputs and FIRs: every path p adds FIR paths[p].ir applied to
 * input paths[p].in into output paths[p].out, each FIR preceded by `delay`
 * zero taps (a pre-delay):
 *
 *   out_o[n] = sum over paths to o of
 *              sum_{m=0}^{taps-1} h_ir[m] in_i[n - latency - delay - m]
 *
 * exactly (float rounding), whatever the split of the stream into calls.
 * `latency` is 0 (zero latency) or any number of frames >= 1 the caller
 * accepts. The FIR (after the pre-delay) is cut into a direct-form head of
 * up to 512 taps, computed in the time domain, and levels of uniformly
 * partitioned overlap-save convolution (as mb_fftconv, with input spectra
 * shared by every path from one input) whose partitions grow along the
 * FIR: a level of block b starting at FIR offset o reads the input delayed
 * by o + latency - b >= 0 frames, so its own latency of b frames is hidden
 * inside the part before it. The ladder of block sizes (powers of two,
 * 16..32768) is chosen by a cost model of this machine's FFT and
 * multiply-add speed (see fftconv.c); it depends only on the FIR length,
 * delay, latency and path counts, never on the caller's block size, so
 * results are identical for any split of the stream.
 *
 * Output frames whose whole input span (the FIR's length, delay and
 * latency) was exactly zero are exactly zero (no FFT rounding residue
 * after a tail), and samples below FLT_MIN are flushed to zero. Large
 * levels compute a whole block at the frame it completes (a 32768-frame
 * level costs a burst of two 64k-point FFTs per input and output there):
 * fine offline; a live host would want those levels on a worker thread. */
typedef struct mb_partconv mb_partconv;

typedef struct mb_partconv_path {
  int in, out, ir;
} mb_partconv_path;

/* [control] nin inputs and nout outputs (1..MB_MAX_CHANNELS), nirs FIRs of
 * `taps` taps each (irs[k][0..taps-1]; copied), npaths >= 1 paths, delay
 * >= 0 and latency >= 0 frames, max_frames the largest process() call.
 * `sizes` 0 lets the cost model choose the partition sizes; otherwise it
 * is the exact ladder to use (tests use it), a bit mask (bit k: a level of
 * 2^k frames, k 4..15), refused when it would need a head of more than
 * 512 taps or leave a level nothing to do. NULL when out of memory or an
 * argument is invalid. */
mb_partconv *mb_partconv_new(int nin, int nout, const float *const *irs,
                             int nirs, int taps, const mb_partconv_path *paths,
                             int npaths, int delay, int latency, int max_frames,
                             unsigned sizes);
/* [control] Free; NULL does nothing. */
void mb_partconv_free(mb_partconv *c);
/* [any] The latency given at creation. */
int mb_partconv_latency(const mb_partconv *c);
/* [any] The plan: head taps, and per level (at most `max`) its block and
 * partition count. Returns the number of levels. */
int mb_partconv_plan(const mb_partconv *c, int *head, int *blocks, int *parts,
                     int max);
/* [any] Estimated cost of the plan, in nanoseconds per frame on the
 * machine the model was measured on (a guide, not a promise). */
double mb_partconv_cost(const mb_partconv *c);

/* [audio] Convolve n <= max_frames frames: in[i][0..n-1] to
 * out[o][0..n-1] (overwritten). in and out may be the same buffers. */
void mb_partconv_process(mb_partconv *c, const float *const *in,
                         float *const *out, int n);
/* [audio] After process(): input i of that call's n frames, delayed by
 * d frames (0 <= d <= latency), contiguous; valid until the next call. The
 * dry signal of a wet/dry mix, aligned with the output. */
const float *mb_partconv_input(const mb_partconv *c, int i, int d, int n);
/* [audio] Clear the history as if new. */
void mb_partconv_reset(mb_partconv *c);
