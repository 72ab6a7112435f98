/* mb.h - the moonbus engine: graphs of module instances, rendered offline.
 *
 * A graph owns its nodes; a node is addressed by its index (0, 1, ...).
 * Every call returns an mb_status (MB_OK = 0) or writes one through a
 * pointer; the detailed message of the last failure is kept on the graph
 * (mb_graph_error). Nothing here prints. All calls are [control] unless
 * marked otherwise: one thread at a time per graph. */
#ifndef MB_H
#define MB_H

#include "mb_module.h"

#define MB_VERSION "0.1.0"

/* Automation grid: envelopes are evaluated every MB_CONTROL_GRID frames of
 * absolute time and ramped linearly in between, so automation is
 * sample-deterministic whatever the block size. */
#define MB_CONTROL_GRID 32
/* Ramp for a parameter set by hand (not by an envelope), in seconds. */
#define MB_SMOOTH_SECONDS 0.010

typedef struct mb_graph mb_graph;

typedef enum { MB_CURVE_LINEAR, MB_CURVE_EXP, MB_CURVE_HOLD } mb_curve;

typedef struct mb_point {
  double time;  /* seconds from the render's start */
  double value; /* in the parameter's unit */
  mb_curve curve; /* shape of the segment from this point to the next */
} mb_point;

typedef struct mb_render_opts {
  double duration; /* seconds to render; 0 = until the sources end + tails */
  double tail_cap; /* longest tail, seconds (0 = 60) */
  /* Control hooks, called on the rendering thread between blocks, at exact
   * frames. next_control returns the next frame >= pos at which control()
   * wants to run (INT64_MAX for never); control returns MB_OK or an error
   * whose message it has put on the graph (mb_graph_fail). */
  int64_t (*next_control)(void *ud, int64_t pos);
  mb_status (*control)(void *ud, int64_t pos);
  /* Called about every block; total is -1 when unknown. */
  void (*progress)(void *ud, int64_t done, int64_t total);
  void *ud;
  /* Polled between blocks: non-zero stops the render (MB_ERR_INTERRUPTED). */
  volatile int *interrupt;
} mb_render_opts;

typedef struct mb_render_stats {
  int64_t frames;  /* frames rendered, including latency flush and tails */
  double seconds;  /* audio seconds of the longest output */
  double wall;     /* wall-clock seconds */
  double realtime; /* seconds / wall */
  int latency;     /* largest latency from a source to a sink, frames */
} mb_render_stats;

/* What a file output wrote during the last render. */
typedef struct mb_output_stats {
  const char *path;
  int64_t frames;  /* frames in the file (at its own rate) */
  int64_t clipped; /* samples clipped by the integer format */
  double peak;     /* largest |sample| before conversion, linear */
} mb_output_stats;

/* rate 0: the first file input's rate (48000 without one); block 0: 4096. */
mb_graph *mb_graph_new(double rate, int block, mb_status *status);
void mb_graph_free(mb_graph *g); /* NULL is fine */
const char *mb_graph_error(const mb_graph *g);
/* Set the graph's error message (printf-style) and return `st`. */
mb_status mb_graph_fail(mb_graph *g, mb_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

double mb_graph_rate(const mb_graph *g); /* 0 while still undecided */
int mb_graph_block(const mb_graph *g);
int mb_graph_count(const mb_graph *g);
int mb_graph_rendering(const mb_graph *g);
int mb_graph_playing(const mb_graph *g);

/* Add a node. `name` may be NULL (named "<module>#<n>"); `host` is handed to
 * the module's create() (see mb_config.host). Returns the node index, or -1
 * with *status set. */
int mb_graph_add(mb_graph *g, const mb_module_desc *m, const char *name,
                 void *host, mb_status *status);
const mb_module_desc *mb_node_module(const mb_graph *g, int node);
const char *mb_node_name(const mb_graph *g, int node);

/* Parameters, by index into the module's table. Values are checked against
 * the range; the error names node, parameter, value and range. Setting a
 * structural parameter re-creates the instance at the next render; setting
 * any other one during a render ramps it over MB_SMOOTH_SECONDS. */
mb_status mb_node_set(mb_graph *g, int node, int param, double value);
mb_status mb_node_set_string(mb_graph *g, int node, int param,
                             const char *value);
double mb_node_get(const mb_graph *g, int node, int param);
const char *mb_node_get_string(const mb_graph *g, int node, int param);
/* Replace the parameter's envelope (n = 0 removes it). Points are sorted by
 * time; values are range-checked. */
mb_status mb_node_automate(mb_graph *g, int node, int param,
                           const mb_point *points, int n);

/* Connect `from`'s output to input port `port` of `to`. */
mb_status mb_graph_connect(mb_graph *g, int from, int to, int port);

/* Disconnect `from` from input `port` of `to` (port < 0: every port). */
mb_status mb_graph_disconnect(mb_graph *g, int from, int to, int port);
/* Remove a node and its connections. Node numbers do not shift: the node
 * stays as a placeholder (mb_node_removed) that nothing can use. */
mb_status mb_graph_remove(mb_graph *g, int node);
int mb_node_removed(const mb_graph *g, int node);

/* Compile: order, channels, instances, latency compensation, buffers.
 * Done by render when needed; callable on its own to learn latency. */
mb_status mb_graph_compile(mb_graph *g);
/* Largest source-to-sink latency in frames (compiles if needed). */
mb_status mb_graph_latency(mb_graph *g, int *frames);
/* Output channel count of a node after compile (0 before). */
int mb_node_channels(const mb_graph *g, int node);

mb_status mb_graph_render(mb_graph *g, const mb_render_opts *opts,
                          mb_render_stats *stats);

/* ---- live playback (live.c) ------------------------------------------
 *
 * mb_graph_play runs the graph in real time through PortAudio, on the
 * calling thread's behalf: the audio thread runs a compiled copy of the
 * graph (a plan); the calling thread stays the control thread. While it
 * plays, opts->control runs there (at or just after its frame), and may
 * set parameters (they reach the audio at its next block), change
 * automation, add, connect, disconnect and remove nodes (a new plan is
 * compiled there and swapped in at a block boundary, faded out and in over
 * 5 ms, keeping the instances of unchanged nodes) and read meters (fed
 * through a ring and measured on the control thread). File inputs and
 * outputs stream through lock-free rings served by a disk thread. The
 * audio thread never calls Lua, allocates, locks or touches files. */
typedef struct mb_play_opts {
  double duration;   /* seconds; 0 = until the sources end + tails */
  double tail_cap;   /* longest tail, seconds (0 = 60) */
  int frames;        /* frames per device buffer; 0 = the device's choice */
  double latency;    /* suggested device latency, s; 0 = its lowest */
  const char *device; /* for device nodes that name none; NULL = default */
  int64_t (*next_control)(void *ud, int64_t pos);
  mb_status (*control)(void *ud, int64_t pos);
  void (*progress)(void *ud, int64_t done, int64_t total);
  void *ud;
  volatile int *interrupt; /* non-zero stops playback (not an error) */
} mb_play_opts;

typedef struct mb_play_stats {
  int64_t frames;     /* frames played */
  double seconds;     /* the same in seconds */
  double wall;        /* wall-clock seconds */
  int latency;        /* the graph's latency, frames */
  double out_latency; /* the device's output latency, seconds */
  int buffer;         /* largest device buffer seen, frames */
  int64_t callbacks;  /* device callbacks */
  int64_t xruns;      /* callbacks the device flagged late (under/overflow) */
  int64_t underruns;  /* frames a file input was late for (played as 0) */
  int64_t dropped;    /* frames a file output or meter could not keep */
  int swaps;          /* plans swapped in while playing */
  int interrupted;    /* stopped by opts->interrupt */
  char device[128];   /* "host: name" of the output (or input) device */
} mb_play_stats;

mb_status mb_graph_play(mb_graph *g, const mb_play_opts *opts,
                        mb_play_stats *stats);

typedef struct mb_device_info {
  int index;
  char name[128], host[64];
  int inputs, outputs;
  double default_rate;
  int is_default_in, is_default_out;
} mb_device_info;
/* The devices PortAudio sees now: fills up to max, returns the count or a
 * negative mb_status with the message in err. */
int mb_devices(mb_device_info *list, int max, char *err, size_t errlen);

/* The cores this process may run on: its affinity mask, which taskset,
 * cpusets and Slurm narrow (at least 1). Renders use a second thread only
 * when there is a second core. */
int mb_cpus(void);

/* After a render: an analyser's results, or a file output's figures. */
int mb_node_results(const mb_graph *g, int node, const char **names,
                    double *values, int max);
mb_status mb_node_output_stats(const mb_graph *g, int node,
                               mb_output_stats *out);

/* Loudness of a file (ITU-R BS.1770-4 / EBU R128), measured with our own
 * kernel (modules/dsp/loudness.h: exact gating, 4x true peak; checked
 * against libebur128 in tests). `true_peak` and `sample_peak` are in dB
 * (dBTP, dBFS). */
typedef struct mb_measurement {
  double integrated, lra, true_peak, sample_peak;
  double momentary_max, short_term_max;
  double duration;
  int rate, channels;
  int64_t frames;
} mb_measurement;
mb_status mb_measure_file(const char *path, mb_measurement *m, char *err,
                          size_t errlen);
/* The same, with the true peak only when `true_peak` is non-zero (it is
 * most of the work: without it true_peak is NaN). */
mb_status mb_measure_loudness(const char *path, mb_measurement *m,
                              int true_peak, char *err, size_t errlen);

/* QC analysis of a file (core/analyse.c): one streaming pass with bounded
 * memory (the loudness kernel's gating lists grow with the length; the
 * rest is fixed by the options). Levels in dB; -inf (-HUGE_VAL) for the
 * level of silence; NaN where a figure does not apply. The arrays belong
 * to the result: free them with mb_analysis_free(). */
typedef struct mb_analyse_opts {
  int columns; /* waveform columns, 16 .. 4000 (0: 400) */
  int points;  /* most short-term values, 1 .. 1000000 (0: 600) */
  int bands;   /* spectrum points, 2 .. 4000 (0: 120) */
} mb_analyse_opts;

typedef struct mb_analysis {
  int rate, channels;
  int64_t frames;
  double duration;            /* s */
  int bits;                   /* 8/16/24/32 PCM, 32 float, 64 double; 0 other */
  int is_float;               /* float or double samples */
  char format[48];            /* "WAV PCM_24", "FLAC PCM_16", "WAV FLOAT" */
  double integrated, lra;     /* LUFS, LU */
  double true_peak;           /* dBTP */
  double sample_peak;         /* dBFS */
  double plr;                 /* true_peak - integrated, dB; NaN when the
                                 integrated loudness is -inf */
  double short_term_max;      /* LUFS */
  double rms;                 /* dBFS over all samples of all channels */
  double rms_channels[MB_MAX_CHANNELS]; /* dBFS */
  int64_t clipped;            /* samples with |x| >= 32767/32768 */
  int64_t clip_runs;          /* runs of >= 2 such samples in a channel */
  double dc;                  /* largest |mean| over channels, linear */
  double dc_db;               /* 20 log10(dc) */
  double dc_channels[MB_MAX_CHANNELS]; /* signed means, linear */
  double correlation;         /* channels 1 and 2; NaN mono or silent */
  double mono_drop;           /* dB: integrated of (M, M), M = (L+R)/2,
                                 minus the stereo one; -inf when M is
                                 gated out; NaN unless stereo with a
                                 finite integrated loudness */
  double head_silence, tail_silence; /* s */
  double silence_threshold;   /* dBFS (-60) */
  int columns;                /* waveform: columns min/max pairs */
  float *wave_min, *wave_max;
  int n_short;                /* short-term loudness values (LUFS) */
  double short_interval;      /* s between them */
  double *short_term;
  int bands;                  /* spectrum: band centres (Hz), dB */
  double *freq, *spectrum;
  int fft_size;               /* the Welch segment length used */
} mb_analysis;

/* [control] Analyse `path` (plans FFTs: FFTW's planner is not
 * thread-safe). `o` may be NULL (defaults). On failure the result holds
 * no arrays and err names the file. */
mb_status mb_analyse_file(const char *path, const mb_analyse_opts *o,
                          mb_analysis *a, char *err, size_t errlen);
/* [control] Free the arrays of a result (and zero it); NULL is fine. */
void mb_analysis_free(mb_analysis *a);

#endif
