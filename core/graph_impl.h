/* graph_impl.h - the graph's insides, shared by graph.c (building,
 * compiling, offline rendering) and live.c (real-time playback). Nothing
 * outside core/ includes this. */
#ifndef MB_GRAPH_IMPL_H
#define MB_GRAPH_IMPL_H

#include <stddef.h>

#include "fileio.h"
#include "mb.h"

#define DEFAULT_RATE 48000.0
#define DEFAULT_BLOCK 4096
#define PIPE_SETS 8 /* buffer sets: blocks in flight in the render pipeline */
#define DEFAULT_TAIL_CAP 60.0
#define UNBOUNDED INT64_MAX

typedef struct conn {
  int from, to, port;
  int delay;       /* compensation, frames */
  int channels;    /* source channels */
  float *hist;     /* delay history: channels x (delay + max_frames) */
} conn;

typedef struct envelope {
  mb_point *pts;
  int n;
  int cursor; /* segment of the last lookup (lookups move forward) */
  double sent;
} envelope;

typedef struct node {
  const mb_module_desc *m;
  char *name;
  void *host;
  double *values;
  char **strings;
  envelope *env; /* per parameter; NULL until something is automated */
  int n_auto;

  mb_reader *reader; /* file sources */
  mb_writer *writer; /* file sinks, during a render */
  mb_output_stats ostats;
  int have_ostats;

  /* compiled */
  void *state;
  int created;
  int out_ch;
  int in_ch[MB_MAX_PORTS];
  int latency;
  int64_t arrival;   /* latency of the signal at its inputs */
  int64_t sig, tail; /* signal and tail length at its output (or inputs,
                        for sinks); UNBOUNDED allowed */
  int64_t sink_len;  /* sinks and analysers: frames to take after arrival */
  float *out[MB_MAX_CHANNELS];
  float *in[MB_MAX_PORTS][MB_MAX_CHANNELS];
  int in_own[MB_MAX_PORTS]; /* port buffer is the node's own (summed) */
  int consumers;

  /* live playback (live.c) */
  int taken;      /* the instance moved on to a newer plan: not destroyed */
  void *io;       /* its stream: file ring, device channels, meter tap */
  int64_t origin; /* frame at which a source started (0 offline) */
  int64_t lead;   /* file source: frames of silence before the file (its
                     `start`), counted from origin */
  int64_t from;   /* file sink: frames of its signal left out before its
                     window (`from`); sink_len counts from there */
  int monitor;    /* plan: a file output also heard on the device */
  void *pub;      /* plan: results the audio thread publishes (malloc'd) */
} node;

struct mb_graph {
  double rate;     /* requested; 0 = from the first input */
  double run_rate; /* decided at compile */
  int block;
  node *nodes;
  int n, cap;
  conn *conns;
  int nc, capc;
  char err[2 * MB_ERRLEN];
  int compiled, rendering;
  int *order;
  float *pool;
  ptrdiff_t set;     /* floats in one buffer set; the pool holds two */
  int64_t pos;       /* frame being rendered */
  double tail_cap_s; /* longest tail, seconds; set by render */
  double asked_s;    /* render{duration} in seconds, or 0 */
  int64_t tail_cap;  /* the same two in frames, set by compile */
  int64_t asked;     /* -1 when not asked */

  /* live playback (live.c). On the user's graph: the player while it
   * plays (edits and parameter changes go to it). On a plan (the copy the
   * audio thread runs): the live context that sources, sinks and devices
   * use instead of files, and, while it compiles, the plan whose
   * instances it may take over. */
  struct mb_player *player;
  struct mb_live *live;
  struct mb_graph *donor;
  int dev_in_ch, dev_out_ch; /* channels of the opened devices */
  struct mb_graph *last_plan; /* after play: results and output figures */
  int *hist_from; /* plan: the donor's connection whose delay history each
                     connection continues, or -1 */
  int64_t total;  /* plan: frame at which playback ends (UNBOUNDED) */
};

/* graph.c, for live.c */
char *mb__dupstr(const char *s);
double mb__now(void);       /* monotonic seconds */
void mb__enable_ftz(void);  /* flush denormals on this thread */
int64_t mb__sat_add(int64_t a, int64_t b);
const char *mb__node_path(const node *nd);
/* A deep copy of the graph's nodes, connections and settings (no readers,
 * no instances), to be compiled as a plan. */
mb_graph *mb__graph_clone(const mb_graph *g);
mb_status mb__render_range(mb_graph *g, int o0, int o1, int64_t pos, int n,
                           ptrdiff_t sh, double *cost);
/* Frames until every terminal node has its signal and tail (after
 * compile); UNBOUNDED when a source never ends. `lat` gets the largest
 * latency. */
int64_t mb__render_total(const mb_graph *g, int *lat);
/* Output statistics of file sinks, after their writers finished. */
void mb__collect_ostats(mb_graph *g, node *nd);
/* live.c, for graph.c */
void mb__live_param(struct mb_player *p, int node, int param, double value);
int mb__live_results(const mb_graph *plan, int node, const char **names,
                     double *values, int max);
void mb__live_source(mb_graph *g, node *nd, float *const *out, int n);
void mb__live_sink(mb_graph *g, node *nd, int64_t a, const float *const *in,
                   int n);
void mb__live_device_in(mb_graph *g, node *nd, float *const *out, int n);
void mb__live_device_out(mb_graph *g, node *nd, const float *const *in, int n);
void mb__live_tap(mb_graph *g, node *nd, int n, ptrdiff_t sh);


#endif
