/* live.c - the graph in real time through PortAudio.
 *
 * Three kinds of thread take part:
 *   - the control thread (the caller of mb_graph_play, where Lua runs): it
 *     compiles plans (copies of the user's graph with their instances),
 *     runs control callbacks, sends parameter changes and new plans to the
 *     audio thread, measures meters, and watches the device;
 *   - the audio thread (PortAudio's callback): it applies the messages at
 *     a block boundary and runs the plan; it never calls Lua, allocates,
 *     locks, or touches a file;
 *   - the disk thread: it decodes file inputs into rings ahead of the
 *     audio thread and encodes what file outputs receive.
 * Between them only single-producer single-consumer queues and rings with
 * atomic indices (below), and a semaphore the audio thread posts (never
 * waits on) so the control thread wakes up as soon as a block is done.
 *
 * Sample for sample, a plan computes what an offline render computes: the
 * same schedule (mb__render_range) at the same absolute frames, with the
 * same automation grid. What differs is only where sources and sinks get
 * and put their samples. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pa_jack.h>
#include <portaudio.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "graph_impl.h"

#define FADE_SECONDS 0.005  /* declick of a plan swap, each way */
#define RING_SECONDS 2.0    /* file streams: audio buffered ahead/behind */
#define DISK_CHUNK 4096     /* frames per disk read or write */
#define STALL_SECONDS 2.0   /* no audio for this long: the device is gone */
#define STOP_SECONDS 3.0    /* longest wait for PortAudio to stop */

/* ---- lock-free single-producer single-consumer message queue ---------- */

typedef struct spsc {
  _Atomic size_t head, tail; /* head: producer's, tail: consumer's */
  size_t mask, esize;
  unsigned char *buf;
} spsc;

static int spsc_init(spsc *q, size_t cap, size_t esize) {
  atomic_init(&q->head, 0);
  atomic_init(&q->tail, 0);
  q->mask = cap - 1; /* cap is a power of two */
  q->esize = esize;
  q->buf = malloc(cap * esize);
  return q->buf != NULL;
}

static int spsc_push(spsc *q, const void *e) {
  size_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
  size_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
  if (h - t > q->mask) return 0;
  memcpy(q->buf + (h & q->mask) * q->esize, e, q->esize);
  atomic_store_explicit(&q->head, h + 1, memory_order_release);
  return 1;
}

static int spsc_peek(spsc *q, void *e) {
  size_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
  size_t h = atomic_load_explicit(&q->head, memory_order_acquire);
  if (t == h) return 0;
  memcpy(e, q->buf + (t & q->mask) * q->esize, q->esize);
  return 1;
}

static void spsc_drop(spsc *q) {
  size_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
  atomic_store_explicit(&q->tail, t + 1, memory_order_release);
}

/* ---- planar audio rings (one writer thread, one reader thread) -------- */

typedef struct ring {
  _Atomic int64_t w, r; /* frames written / read so far */
  int ch;
  int64_t cap;
  float *buf; /* ch x cap */
} ring;

static int ring_init(ring *rg, int ch, int64_t cap) {
  atomic_init(&rg->w, 0);
  atomic_init(&rg->r, 0);
  rg->ch = ch;
  rg->cap = cap;
  rg->buf = calloc((size_t)(ch ? ch : 1) * (size_t)cap, sizeof(float));
  return rg->buf != NULL;
}

static int64_t ring_avail(ring *rg) {
  return atomic_load_explicit(&rg->w, memory_order_acquire) -
         atomic_load_explicit(&rg->r, memory_order_relaxed);
}

static int64_t ring_space(ring *rg) {
  return rg->cap - (atomic_load_explicit(&rg->w, memory_order_relaxed) -
                    atomic_load_explicit(&rg->r, memory_order_acquire));
}

/* Copy n frames in (the caller checked the space). */
static void ring_put(ring *rg, const float *const *in, int n) {
  int64_t w = atomic_load_explicit(&rg->w, memory_order_relaxed);
  int64_t at = w % rg->cap, first = rg->cap - at < n ? rg->cap - at : n;
  for (int ch = 0; ch < rg->ch; ch++) {
    float *b = rg->buf + (size_t)ch * rg->cap;
    memcpy(b + at, in[ch], first * sizeof(float));
    memcpy(b, in[ch] + first, (n - first) * sizeof(float));
  }
  atomic_store_explicit(&rg->w, w + n, memory_order_release);
}

/* Copy n frames out (the caller checked they are there). */
static void ring_get(ring *rg, float *const *out, int n) {
  int64_t r = atomic_load_explicit(&rg->r, memory_order_relaxed);
  int64_t at = r % rg->cap, first = rg->cap - at < n ? rg->cap - at : n;
  for (int ch = 0; ch < rg->ch; ch++) {
    const float *b = rg->buf + (size_t)ch * rg->cap;
    memcpy(out[ch], b + at, first * sizeof(float));
    memcpy(out[ch] + first, b, (n - first) * sizeof(float));
  }
  atomic_store_explicit(&rg->r, r + n, memory_order_release);
}

/* ---- streams: what a source, sink or meter exchanges with the audio --- */

enum { ST_SOURCE, ST_SINK, ST_TAP };

typedef struct stream {
  int kind, node;
  mb_reader *reader;  /* source */
  mb_writer *writer;  /* sink */
  ring rg;
  int64_t left;       /* source: frames still to decode */
  _Atomic int eof;    /* source: everything is in the ring */
  _Atomic int64_t lost; /* frames the audio thread found missing or had to
                           drop (ring empty or full) */
  _Atomic int used;   /* still in the playing plan (0: disk thread may
                         finish it) */
  int64_t pos;        /* tap: frame measured next */
  void *state;        /* tap: the analyser instance (plan-owned) */
  const mb_module_desc *m;
  float *scratch;     /* DISK_CHUNK x channels */
  char err[MB_ERRLEN];
  _Atomic int failed;
} stream;

/* ---- the player ------------------------------------------------------ */

enum { MSG_PARAM, MSG_PLAN };

typedef struct msg {
  int kind, node, param;
  double value;
  mb_graph *plan;
} msg;

/* What the audio thread owns while it plays. */
typedef struct mb_live {
  struct mb_player *p;
  mb_graph *cur, *pending;
  int fade_len, fade_left, fade_in;
  int64_t pos, total;
  const float *din[MB_MAX_CHANNELS];
  float *dout[MB_MAX_CHANNELS];
  int din_ch, dout_ch;
  int started;
  void (*guard)(int);
  /* published to the control thread */
  _Atomic int64_t pos_pub, xruns, callbacks;
  _Atomic int max_frames, ended, swapped;
} mb_live;

typedef struct mb_player {
  mb_graph *g;    /* the user's graph */
  mb_graph *plan; /* the newest plan (what the audio thread runs or will) */
  mb_live lv;
  spsc to_audio, from_audio;
  int swap_pending, swaps;
  double rate;
  stream **streams;
  int n_streams, cap_streams;
  pthread_mutex_t smx; /* streams list: control and disk thread */
  pthread_t disk;
  int disk_started;
  _Atomic int disk_quit;
  sem_t tick;
  PaStream *pa;
  int in_dev, out_dev, in_ch, out_ch;
  float *tap_out; /* tap scratch output */
} mb_player;

#define now mb__now

static void nap(double s) {
  struct timespec ts = {.tv_sec = (time_t)s,
                        .tv_nsec = (long)((s - (time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) && errno == EINTR) {
  }
}

/* ---- audio-thread hooks called from mb__render_range ----------------- */

void mb__live_source(mb_graph *g, node *nd, float *const *out, int n) {
  (void)g;
  stream *s = nd->io;
  int64_t have = ring_avail(&s->rg);
  int k = have < n ? (int)have : n;
  if (k) ring_get(&s->rg, out, k);
  for (int ch = 0; ch < nd->out_ch && k < n; ch++)
    memset(out[ch] + k, 0, (n - k) * sizeof(float));
  if (k < n && !atomic_load_explicit(&s->eof, memory_order_acquire))
    atomic_fetch_add_explicit(&s->lost, n - k, memory_order_relaxed);
}

static void push_or_count(stream *s, const float *const *in, int n) {
  if (ring_space(&s->rg) >= n) ring_put(&s->rg, in, n);
  else atomic_fetch_add_explicit(&s->lost, n, memory_order_relaxed);
}

void mb__live_sink(mb_graph *g, node *nd, int64_t a, const float *const *in,
                   int n) {
  (void)g, (void)a;
  push_or_count(nd->io, in, n);
}

void mb__live_device_in(mb_graph *g, node *nd, float *const *out, int n) {
  mb_live *lv = g->live;
  for (int ch = 0; ch < nd->out_ch; ch++) {
    if (ch < lv->din_ch && lv->din[ch])
      memcpy(out[ch], lv->din[ch], n * sizeof(float));
    else
      memset(out[ch], 0, n * sizeof(float));
  }
}

void mb__live_device_out(mb_graph *g, node *nd, const float *const *in,
                         int n) {
  mb_live *lv = g->live;
  const int ich = nd->in_ch[0];
  if (!ich) return;
  for (int ch = 0; ch < lv->dout_ch; ch++) {
    const float *s = in[ich == 1 ? 0 : ch];
    if (ch >= ich && ich != 1) continue;
    float *d = lv->dout[ch];
    for (int f = 0; f < n; f++) d[f] += s[f];
  }
}

/* Analysers pass the signal on; their measuring runs on the control
 * thread, fed through the tap's ring. */
void mb__live_tap(mb_graph *g, node *nd, int n, ptrdiff_t sh) {
  (void)g;
  const float *in[MB_MAX_CHANNELS];
  for (int ch = 0; ch < nd->out_ch; ch++) {
    const float *s = nd->in[0][ch < nd->in_ch[0] ? ch : 0] + sh;
    memcpy(nd->out[ch] + sh, s, n * sizeof(float));
  }
  for (int ch = 0; ch < nd->in_ch[0]; ch++) in[ch] = nd->in[0][ch] + sh;
  if (nd->io) push_or_count(nd->io, in, n);
}

/* ---- results of processing modules (gain reduction...) ---------------
 * The audio thread copies them out after every callback under a sequence
 * count (odd while writing); the control thread retries a torn read. */

#define PUB_MAX 16
typedef struct pub {
  _Atomic unsigned seq;
  int n;
  const char *names[PUB_MAX];
  double values[PUB_MAX];
} pub;

static void publish(mb_graph *pl) {
  for (int i = 0; i < pl->n; i++) {
    node *nd = &pl->nodes[i];
    pub *b = nd->pub;
    if (!b || !nd->created) continue;
    unsigned q = atomic_load_explicit(&b->seq, memory_order_relaxed);
    atomic_store_explicit(&b->seq, q + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    b->n = nd->m->results(nd->state, b->names, b->values, PUB_MAX);
    atomic_store_explicit(&b->seq, q + 2, memory_order_release);
  }
}

static int read_pub(pub *b, const char **names, double *values, int max) {
  for (;;) {
    unsigned q = atomic_load_explicit(&b->seq, memory_order_acquire);
    if (q & 1) continue;
    int n = b->n < max ? b->n : max;
    for (int k = 0; k < n; k++) names[k] = b->names[k], values[k] = b->values[k];
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&b->seq, memory_order_relaxed) == q) return n;
  }
}

/* ---- the audio callback ---------------------------------------------- */

static void apply_param(mb_live *lv, const msg *m) {
  mb_graph *pl = lv->cur;
  if (!pl || m->node >= pl->n) return;
  node *nd = &pl->nodes[m->node];
  if (m->param >= nd->m->n_params) return;
  nd->values[m->param] = m->value;
  if (!nd->created || !nd->m->set_param) return;
  const mb_param_desc *d = &nd->m->params[m->param];
  if (d->flags & MB_PARAM_STRUCTURAL) return;
  int ramp = d->flags & MB_PARAM_SMOOTH
                 ? (int)lround(MB_SMOOTH_SECONDS * pl->run_rate)
                 : 0;
  nd->m->set_param(nd->state, m->param, m->value, ramp);
}

/* Messages apply between blocks, in order; a new plan waits for the
 * fade-out, and what follows it for the swap. */
static void take_messages(mb_live *lv) {
  msg m;
  while (!lv->pending && spsc_peek(&lv->p->to_audio, &m)) {
    spsc_drop(&lv->p->to_audio);
    if (m.kind == MSG_PARAM) {
      apply_param(lv, &m);
    } else if (!lv->cur) {
      lv->cur = m.plan;
      lv->total = m.plan->total;
    } else {
      lv->pending = m.plan;
      lv->fade_left = lv->fade_len;
      lv->fade_in = 0;
    }
  }
}

static void swap_plans(mb_live *lv) {
  mb_graph *old = lv->cur, *nw = lv->pending;
  /* delay-compensation lines that carry on keep their history */
  for (int k = 0; k < nw->nc; k++) {
    int j = nw->hist_from ? nw->hist_from[k] : -1;
    if (j < 0 || !nw->conns[k].hist || !old->conns[j].hist) continue;
    memcpy(nw->conns[k].hist, old->conns[j].hist,
           (size_t)nw->conns[k].channels *
               (nw->conns[k].delay + (size_t)nw->block) * sizeof(float));
  }
  lv->cur = nw;
  lv->total = nw->total;
  lv->pending = NULL;
  lv->fade_left = lv->fade_len;
  lv->fade_in = 1;
  msg back = {.kind = MSG_PLAN, .plan = old};
  spsc_push(&lv->p->from_audio, &back); /* sized so it always fits */
  atomic_fetch_add_explicit(&lv->swapped, 1, memory_order_relaxed);
}

static int callback(const void *input, void *output, unsigned long frames,
                    const PaStreamCallbackTimeInfo *ti,
                    PaStreamCallbackFlags flags, void *ud) {
  (void)ti;
  mb_live *lv = ud;
  if (lv->guard) lv->guard(1);
  mb__enable_ftz(); /* PortAudio's thread: flush denormals */
  if (flags & (paInputUnderflow | paInputOverflow | paOutputUnderflow |
               paOutputOverflow))
    atomic_fetch_add_explicit(&lv->xruns, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&lv->callbacks, 1, memory_order_relaxed);
  if ((int)frames > atomic_load_explicit(&lv->max_frames, memory_order_relaxed))
    atomic_store_explicit(&lv->max_frames, (int)frames, memory_order_relaxed);
  float *const *dout = output;
  const float *const *din = input;
  for (int ch = 0; ch < lv->dout_ch; ch++)
    memset(dout[ch], 0, frames * sizeof(float));
  int done = 0;
  while (done < (int)frames) {
    if (!lv->fade_left || lv->fade_in) take_messages(lv);
    mb_graph *pl = lv->cur;
    if (!pl || lv->pos >= lv->total) {
      if (pl) atomic_store_explicit(&lv->ended, 1, memory_order_release);
      break;
    }
    int n = (int)frames - done;
    if (n > pl->block) n = pl->block;
    if (lv->fade_left && n > lv->fade_left) n = lv->fade_left;
    if (n > lv->total - lv->pos) n = (int)(lv->total - lv->pos);
    for (int ch = 0; ch < lv->din_ch; ch++)
      lv->din[ch] = din ? din[ch] + done : NULL;
    for (int ch = 0; ch < lv->dout_ch; ch++) lv->dout[ch] = dout[ch] + done;
    mb__render_range(pl, 0, pl->n, lv->pos, n, 0, NULL);
    if (lv->fade_left) {
      const int F = lv->fade_len, k0 = F - lv->fade_left;
      for (int ch = 0; ch < lv->dout_ch; ch++)
        for (int f = 0; f < n; f++) {
          float x = (float)(k0 + f + 1) / (float)F;
          lv->dout[ch][f] *= lv->fade_in ? x : 1.0f - x;
        }
      lv->fade_left -= n;
      if (!lv->fade_left && !lv->fade_in) swap_plans(lv);
    }
    lv->pos += n;
    done += n;
  }
  if (lv->cur) publish(lv->cur);
  atomic_store_explicit(&lv->pos_pub, lv->pos, memory_order_release);
  sem_post(&lv->p->tick); /* wakes the control thread; never blocks */
  if (lv->guard) lv->guard(0);
  return paContinue;
}

/* ---- the disk thread ------------------------------------------------- */

static int serve_stream(stream *s) {
  int worked = 0;
  float *chans[MB_MAX_CHANNELS];
  for (int ch = 0; ch < s->rg.ch; ch++) chans[ch] = s->scratch + ch * DISK_CHUNK;
  if (s->kind == ST_SOURCE) {
    while (s->left > 0 && ring_space(&s->rg) >= DISK_CHUNK &&
           !atomic_load(&s->failed)) {
      int n = s->left < DISK_CHUNK ? (int)s->left : DISK_CHUNK;
      if (mb_reader_read(s->reader, chans, n, s->err, sizeof s->err)) {
        atomic_store(&s->failed, 1);
        break;
      }
      ring_put(&s->rg, (const float *const *)chans, n);
      s->left -= n;
      worked = 1;
    }
    if (s->left <= 0) atomic_store_explicit(&s->eof, 1, memory_order_release);
  } else if (s->kind == ST_SINK) {
    int64_t have;
    while ((have = ring_avail(&s->rg)) > 0 && !atomic_load(&s->failed)) {
      int n = have < DISK_CHUNK ? (int)have : DISK_CHUNK;
      ring_get(&s->rg, chans, n);
      if (mb_writer_write(s->writer, (const float *const *)chans, n, s->err,
                          sizeof s->err))
        atomic_store(&s->failed, 1);
      worked = 1;
    }
  }
  return worked;
}

static void *disk_main(void *arg) {
  mb_player *p = arg;
  for (;;) {
    int quit = atomic_load(&p->disk_quit);
    int worked = 0;
    pthread_mutex_lock(&p->smx);
    for (int i = 0; i < p->n_streams; i++) worked |= serve_stream(p->streams[i]);
    pthread_mutex_unlock(&p->smx);
    if (quit && !worked) break; /* rings drained after the stop */
    if (!worked) nap(0.002);
  }
  return NULL;
}

/* ---- streams (control thread) ---------------------------------------- */

static stream *find_stream(mb_player *p, int node) {
  for (int i = 0; i < p->n_streams; i++)
    if (p->streams[i]->node == node) return p->streams[i];
  return NULL;
}

static void free_stream(stream *s) {
  if (!s) return;
  mb_reader_close(s->reader);
  mb_writer_abort(s->writer);
  free(s->rg.buf);
  free(s->scratch);
  free(s);
}

static stream *new_stream(mb_player *p, int kind, int node, int ch,
                          int64_t cap) {
  stream *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->kind = kind;
  s->node = node;
  atomic_init(&s->used, 1);
  if (!ring_init(&s->rg, ch, cap) ||
      !(s->scratch = calloc((size_t)(ch ? ch : 1) * DISK_CHUNK,
                            sizeof(float)))) {
    free_stream(s);
    return NULL;
  }
  if (p->n_streams == p->cap_streams) {
    int cap2 = p->cap_streams ? 2 * p->cap_streams : 8;
    stream **ns = realloc(p->streams, cap2 * sizeof *ns);
    if (!ns) {
      free_stream(s);
      return NULL;
    }
    p->streams = ns;
    p->cap_streams = cap2;
  }
  pthread_mutex_lock(&p->smx);
  p->streams[p->n_streams++] = s;
  pthread_mutex_unlock(&p->smx);
  return s;
}

/* ---- plans (control thread) ------------------------------------------ */

static int64_t ring_frames(const mb_player *p, int block) {
  int64_t cap = (int64_t)(RING_SECONDS * p->rate);
  return cap < 8 * (int64_t)block ? 8 * (int64_t)block : cap;
}

/* Free a plan the audio thread no longer runs: its file readers and
 * writers belong to the streams, its kept instances to a newer plan. */
static void free_plan(mb_graph *pl) {
  if (!pl) return;
  for (int i = 0; i < pl->n; i++) {
    pl->nodes[i].reader = NULL;
    pl->nodes[i].writer = NULL;
    pl->nodes[i].io = NULL;
  }
  mb_graph_free(pl);
}

/* A plan that failed: give back the instances it took over (the playing
 * plan still runs them), keep the message, free it. */
static mb_status plan_fail(mb_player *p, mb_graph *pl, mb_status st) {
  if (pl->err[0]) snprintf(p->g->err, sizeof p->g->err, "%s", pl->err);
  for (int i = 0; pl->donor && i < pl->n && i < pl->donor->n; i++) {
    node *o = &pl->donor->nodes[i], *nd = &pl->nodes[i];
    if (o->taken && nd->created && o->state == nd->state) {
      o->taken = 0;
      nd->state = NULL;
      nd->created = 0;
    }
  }
  free_plan(pl);
  return st;
}

/* Compile the user's graph as a new plan, taking over the instances and
 * streams of the newest one where nothing changed. `start`: the frame at
 * which new sources will begin (about when the plan will be swapped in). */
static mb_status build_plan(mb_player *p, int64_t start, mb_graph **out) {
  mb_graph *g = p->g;
  mb_graph *pl = mb__graph_clone(g);
  if (!pl) return mb_graph_fail(g, MB_ERR_NOMEM, "out of memory");
  pl->rate = p->rate;
  pl->live = &p->lv;
  pl->donor = p->plan;
  pl->dev_in_ch = p->in_ch;
  int devs_in = 0, devs_out = 0;
  for (int i = 0; i < pl->n; i++) {
    node *nd = &pl->nodes[i];
    devs_in += (nd->m->flags & MB_MODULE_DEVICE_SOURCE) != 0;
    devs_out += (nd->m->flags & MB_MODULE_DEVICE_SINK) != 0;
    if (nd->m->flags & MB_MODULE_OFFLINE_ONLY) {
      mb_graph_fail(g, MB_ERR_STATE,
                    "%s: %s nodes cannot run live (the audio thread never "
                    "calls Lua)",
                    nd->name, nd->m->id);
      return plan_fail(p, pl, MB_ERR_STATE);
    }
    if (!(nd->m->flags & MB_MODULE_FILE_SOURCE)) continue;
    stream *s = find_stream(p, i);
    if (!s) {
      char err[MB_ERRLEN];
      const char *path = mb__node_path(nd);
      mb_reader *r = path ? mb_reader_open(path, err, sizeof err) : NULL;
      if (!r) {
        mb_graph_fail(g, MB_ERR_IO, "%s: %s", nd->name,
                      path ? err : "no path given");
        return plan_fail(p, pl, MB_ERR_IO);
      }
      if (mb_reader_start(r, p->rate, DISK_CHUNK, err, sizeof err) ||
          !(s = new_stream(p, ST_SOURCE, i, mb_reader_channels(r),
                           ring_frames(p, pl->block)))) {
        mb_reader_close(r);
        mb_graph_fail(g, MB_ERR_IO, "%s: %s", nd->name, err);
        return plan_fail(p, pl, MB_ERR_IO);
      }
      pthread_mutex_lock(&p->smx);
      s->reader = r;
      s->left = mb_reader_length(r);
      s->pos = start;
      pthread_mutex_unlock(&p->smx);
    }
    nd->reader = s->reader;
    nd->io = s;
    nd->origin = g->nodes[i].origin = s->pos;
  }
  if (devs_in > 1 || devs_out > 1) {
    mb_graph_fail(g, MB_ERR_GRAPH,
                  "a graph plays through at most one device_in and one "
                  "device_out node");
    return plan_fail(p, pl, MB_ERR_GRAPH);
  }
  mb_status st = mb_graph_compile(pl);
  if (st) return plan_fail(p, pl, st);
  int lat;
  pl->total = mb__render_total(pl, &lat);
  /* sinks, taps and the monitored output */
  int monitor = devs_out ? -1 : -2;
  for (int i = 0; i < pl->n; i++) {
    node *nd = &pl->nodes[i];
    if (nd->m->flags & MB_MODULE_FILE_SINK) {
      if (monitor == -2) monitor = i, nd->monitor = 1;
      stream *s = find_stream(p, i);
      if (!s) {
        char err[MB_ERRLEN];
        const int bp = mb_module_param_index(nd->m, "bits");
        const int rp = mb_module_param_index(nd->m, "rate");
        mb_writer *w = mb_writer_open(mb__node_path(nd), nd->in_ch[0],
                                      p->rate, nd->values[rp],
                                      (int)nd->values[bp], -1, err,
                                      sizeof err);
        if (!w || !(s = new_stream(p, ST_SINK, i, nd->in_ch[0],
                                   ring_frames(p, pl->block)))) {
          mb_writer_abort(w);
          mb_graph_fail(g, MB_ERR_IO, "%s: %s", nd->name,
                        w ? "out of memory" : err);
          return plan_fail(p, pl, MB_ERR_IO);
        }
        pthread_mutex_lock(&p->smx);
        s->writer = w;
        pthread_mutex_unlock(&p->smx);
      }
      nd->writer = s->writer;
      nd->io = s;
    } else if (nd->m->results && nd->created &&
               !(nd->m->flags & MB_MODULE_ANALYSER)) {
      if (!(nd->pub = calloc(1, sizeof(pub)))) {
        mb_graph_fail(g, MB_ERR_NOMEM, "out of memory");
        return plan_fail(p, pl, MB_ERR_NOMEM);
      }
    } else if (nd->m->results && nd->created) {
      stream *s = find_stream(p, i);
      if (s && s->state != nd->state) s = NULL; /* re-created: a new tap */
      if (!s && nd->in_ch[0] > 0) {
        s = new_stream(p, ST_TAP, i, nd->in_ch[0], ring_frames(p, pl->block));
        if (!s) {
          mb_graph_fail(g, MB_ERR_NOMEM, "out of memory");
          return plan_fail(p, pl, MB_ERR_NOMEM);
        }
        s->state = nd->state;
        s->m = nd->m;
        s->pos = start; /* what the analyser is fed from here on */
      }
      nd->io = s;
    }
  }
  /* connections whose delay line carries on from the donor */
  if (pl->donor && pl->nc) {
    pl->hist_from = malloc(pl->nc * sizeof(int));
    if (!pl->hist_from) return plan_fail(p, pl, MB_ERR_NOMEM);
    for (int k = 0; k < pl->nc; k++) {
      const conn *c = &pl->conns[k];
      pl->hist_from[k] = -1;
      for (int j = 0; j < pl->donor->nc; j++) {
        const conn *o = &pl->donor->conns[j];
        if (o->from == c->from && o->to == c->to && o->port == c->port &&
            o->delay == c->delay && o->channels == c->channels)
          pl->hist_from[k] = j;
      }
    }
  }
  pl->donor = NULL;
  *out = pl;
  return MB_OK;
}

/* Streams no longer in the playing plan: a source stops being read; an
 * output is finished by the disk thread and committed at the end. */
static void mark_used(mb_player *p, const mb_graph *pl) {
  for (int i = 0; i < p->n_streams; i++) {
    stream *s = p->streams[i];
    int used = s->node < pl->n && pl->nodes[s->node].io == s;
    atomic_store(&s->used, used);
  }
}

/* Measure what reached the analysers (control thread). */
static void drain_taps(mb_player *p) {
  for (int i = 0; i < p->n_streams; i++) {
    stream *s = p->streams[i];
    if (s->kind != ST_TAP || !atomic_load(&s->used)) continue;
    float *in[MB_MAX_CHANNELS], *out[MB_MAX_CHANNELS];
    for (int ch = 0; ch < s->rg.ch; ch++) {
      in[ch] = s->scratch + ch * DISK_CHUNK;
      out[ch] = p->tap_out + ch * DISK_CHUNK;
    }
    int64_t have;
    while ((have = ring_avail(&s->rg)) > 0) {
      int n = have < DISK_CHUNK ? (int)have : DISK_CHUNK;
      ring_get(&s->rg, in, n);
      mb_block b;
      memset(&b, 0, sizeof b);
      b.frames = n;
      b.pos = s->pos;
      b.in[0] = (const float *const *)in;
      b.in_channels[0] = s->rg.ch;
      b.out = out;
      b.out_channels = s->rg.ch;
      s->m->process(s->state, &b);
      s->pos += n;
    }
  }
}

int mb__live_results(const mb_graph *plan, int i, const char **names,
                     double *values, int max) {
  if (!plan || i < 0 || i >= plan->n) return 0;
  const node *nd = &plan->nodes[i];
  if (!nd->created || !nd->m->results) return 0;
  if (plan->live && nd->pub) /* playing: what the audio thread published */
    return read_pub(nd->pub, names, values, max);
  if (plan->live && plan->live->p) drain_taps(plan->live->p);
  return nd->m->results(nd->state, names, values, max);
}

void mb__live_param(mb_player *p, int node, int param, double value) {
  msg m = {.kind = MSG_PARAM, .node = node, .param = param, .value = value};
  /* the audio thread empties the queue every block; if it is full, the
   * device has stopped calling: wait a moment rather than lose it */
  for (int tries = 0; !spsc_push(&p->to_audio, &m) && tries < 1000; tries++)
    nap(0.001);
}

/* ---- devices ---------------------------------------------------------- */

/* ALSA and libjack print their probing (no card 0, no server) on stderr;
 * our errors say what matters in one line. MOONBUS_AUDIO_DEBUG=1 lets
 * their messages through. The redirection is process-wide, so it is only
 * done on the control thread before the audio starts. */
static int quiet_begin(void) {
  if (getenv("MOONBUS_AUDIO_DEBUG")) return -1;
  fflush(stderr);
  int saved = dup(2), nul = open("/dev/null", O_WRONLY);
  if (saved >= 0 && nul >= 0) dup2(nul, 2);
  if (nul >= 0) close(nul);
  return saved;
}

static void quiet_end(int saved) {
  if (saved < 0) return;
  dup2(saved, 2);
  close(saved);
}

static PaError pa_start(void) {
  /* a client never starts a JACK server of its own */
  setenv("JACK_NO_START_SERVER", "1", 0);
  PaJack_SetClientName("moonbus"); /* so others can find our ports */
  int q = quiet_begin();
  PaError e = Pa_Initialize();
  quiet_end(q);
  return e;
}

static const char *host_name(PaHostApiIndex h) {
  const PaHostApiInfo *hi = Pa_GetHostApiInfo(h);
  return hi ? hi->name : "?";
}

int mb_devices(mb_device_info *list, int max, char *err, size_t errlen) {
  PaError e = pa_start();
  if (e != paNoError) {
    snprintf(err, errlen, "cannot start PortAudio: %s", Pa_GetErrorText(e));
    return -MB_ERR_IO;
  }
  int n = Pa_GetDeviceCount(), k = 0;
  PaDeviceIndex din = Pa_GetDefaultInputDevice();
  PaDeviceIndex dout = Pa_GetDefaultOutputDevice();
  for (int i = 0; i < n && k < max; i++) {
    const PaDeviceInfo *d = Pa_GetDeviceInfo(i);
    if (!d) continue;
    mb_device_info *o = &list[k++];
    memset(o, 0, sizeof *o);
    o->index = i;
    snprintf(o->name, sizeof o->name, "%s", d->name);
    snprintf(o->host, sizeof o->host, "%s", host_name(d->hostApi));
    o->inputs = d->maxInputChannels;
    o->outputs = d->maxOutputChannels;
    o->default_rate = d->defaultSampleRate;
    o->is_default_in = i == din;
    o->is_default_out = i == dout;
  }
  Pa_Terminate();
  return k;
}

/* A device by index ("3") or name (exact, then a unique part of "host:
 * name", case-insensitively); NULL or "" is the default: JACK's when a
 * JACK server runs, else PortAudio's. want_out: an output device. */
static int pick_device(const char *want, int want_out, char *err,
                       size_t errlen) {
  const int n = Pa_GetDeviceCount();
  const char *kind = want_out ? "output" : "input";
#define CHANS(d) (want_out ? (d)->maxOutputChannels : (d)->maxInputChannels)
  if (!want || !*want) {
    PaHostApiIndex jack = Pa_HostApiTypeIdToHostApiIndex(paJACK);
    PaDeviceIndex i = paNoDevice;
    if (jack >= 0) {
      const PaHostApiInfo *hi = Pa_GetHostApiInfo(jack);
      i = want_out ? hi->defaultOutputDevice : hi->defaultInputDevice;
    }
    if (i == paNoDevice)
      i = want_out ? Pa_GetDefaultOutputDevice() : Pa_GetDefaultInputDevice();
    if (i == paNoDevice) {
      snprintf(err, errlen,
               "no audio %s device (is a JACK server or a sound card "
               "there? `moonbus live --devices` lists what PortAudio sees)",
               kind);
      return -1;
    }
    return i;
  }
  char *end;
  long idx = strtol(want, &end, 10);
  if (*want && !*end) {
    if (idx < 0 || idx >= n) {
      snprintf(err, errlen, "no audio device number %ld (there are %d)", idx,
               n);
      return -1;
    }
    if (CHANS(Pa_GetDeviceInfo(idx)) <= 0) {
      snprintf(err, errlen, "audio device %ld ('%s') has no %s channels",
               idx, Pa_GetDeviceInfo(idx)->name, kind);
      return -1;
    }
    return (int)idx;
  }
  int found = -1, count = 0;
  char names[400] = "";
  size_t off = 0;
  for (int pass = 0; pass < 2 && found < 0; pass++) {
    count = 0;
    for (int i = 0; i < n; i++) {
      const PaDeviceInfo *d = Pa_GetDeviceInfo(i);
      if (!d || CHANS(d) <= 0) continue;
      char full[256];
      snprintf(full, sizeof full, "%s: %s", host_name(d->hostApi), d->name);
      if (pass == 0 && off < sizeof names)
        off += snprintf(names + off, sizeof names - off, "%s'%s'",
                        off ? ", " : "", d->name);
      int hit = pass == 0 ? !strcasecmp(d->name, want) ||
                                !strcasecmp(full, want)
                          : strcasestr(full, want) != NULL;
      if (hit) {
        if (found < 0) found = i;
        count++;
      }
    }
    if (pass == 1 && count > 1) {
      snprintf(err, errlen,
               "audio device '%s' is ambiguous (%d %s devices match; use "
               "the full name or the number from mb.devices())",
               want, count, kind);
      return -1;
    }
  }
  if (found < 0)
    snprintf(err, errlen, "no audio %s device named '%s' (%s: %s)", kind,
             want, off ? "there are" : "there are none", off ? names : "");
  return found;
#undef CHANS
}

/* ---- play ------------------------------------------------------------- */

/* Wait (at most `limit` seconds) until every file input has half its ring
 * decoded ahead, or has ended or failed: the disk thread keeps running
 * ones there, so in practice this waits for new ones. */
static void wait_buffered(mb_player *p, double limit) {
  for (double t0 = now(); now() - t0 < limit; nap(0.002)) {
    int ready = 1;
    for (int i = 0; i < p->n_streams && ready; i++) {
      stream *s = p->streams[i];
      ready = s->kind != ST_SOURCE || atomic_load(&s->eof) ||
              atomic_load(&s->failed) || ring_avail(&s->rg) >= s->rg.cap / 2;
    }
    if (ready) return;
  }
}

typedef struct stopper {
  PaStream *pa;
  _Atomic int done;
  int abort;
} stopper;

static void *stop_main(void *arg) {
  stopper *s = arg;
  if (s->abort) Pa_AbortStream(s->pa);
  else Pa_StopStream(s->pa);
  Pa_CloseStream(s->pa);
  atomic_store(&s->done, 1);
  return NULL;
}

/* PortAudio can block for ever in stop or close when the server has gone:
 * stop on a thread and give up waiting after STOP_SECONDS. Returns 0 when
 * PortAudio is wedged (then it must not be touched again). */
static int stop_stream(PaStream *pa, int abort) {
  static stopper s; /* a wedged thread may still use it */
  s.pa = pa;
  s.abort = abort;
  atomic_store(&s.done, 0);
  pthread_t t;
  if (pthread_create(&t, NULL, stop_main, &s)) {
    stop_main(&s);
    return 1;
  }
  double t0 = now();
  while (!atomic_load(&s.done) && now() - t0 < STOP_SECONDS) nap(0.005);
  if (!atomic_load(&s.done)) {
    pthread_detach(t);
    return 0;
  }
  pthread_join(t, NULL);
  return 1;
}

static int pa_wedged; /* PortAudio hung once: never call it again */

static void player_free(mb_player *p) {
  if (p->disk_started) {
    atomic_store(&p->disk_quit, 1);
    pthread_join(p->disk, NULL);
  }
  for (int i = 0; i < p->n_streams; i++) free_stream(p->streams[i]);
  free(p->streams);
  free(p->to_audio.buf);
  free(p->from_audio.buf);
  free(p->tap_out);
  pthread_mutex_destroy(&p->smx);
  sem_destroy(&p->tick);
  free(p);
}

/* Free the plans the audio thread handed back. */
static void collect_plans(mb_player *p) {
  msg m;
  while (spsc_peek(&p->from_audio, &m)) {
    spsc_drop(&p->from_audio);
    free_plan(m.plan);
    p->swap_pending = 0;
    p->swaps++;
    mark_used(p, p->plan);
  }
}

static mb_status open_stream(mb_player *p, const mb_play_opts *o,
                             const char *dev_in_name, const char *dev_out_name,
                             int need_in, mb_play_stats *stats) {
  mb_graph *g = p->g;
  char err[MB_ERRLEN];
  PaStreamParameters ip, op;
  memset(&ip, 0, sizeof ip);
  memset(&op, 0, sizeof op);
  p->out_dev = pick_device(dev_out_name, 1, err, sizeof err);
  if (p->out_dev < 0) return mb_graph_fail(g, MB_ERR_IO, "%s", err);
  const PaDeviceInfo *od = Pa_GetDeviceInfo(p->out_dev);
  snprintf(stats->device, sizeof stats->device, "%s: %s",
           host_name(od->hostApi), od->name);
  if (need_in) {
    p->in_dev = pick_device(dev_in_name ? dev_in_name : dev_out_name, 0, err,
                            sizeof err);
    if (p->in_dev < 0) return mb_graph_fail(g, MB_ERR_IO, "%s", err);
    const PaDeviceInfo *id = Pa_GetDeviceInfo(p->in_dev);
    if (id->hostApi != od->hostApi)
      return mb_graph_fail(g, MB_ERR_IO,
                           "input device '%s' (%s) and output device '%s' "
                           "(%s) must use the same audio system",
                           id->name, host_name(id->hostApi), od->name,
                           host_name(od->hostApi));
    if (p->in_ch > id->maxInputChannels)
      return mb_graph_fail(g, MB_ERR_IO,
                           "device_in: %d channels asked, but '%s' has %d "
                           "input channels",
                           p->in_ch, id->name, id->maxInputChannels);
    ip.device = p->in_dev;
    ip.channelCount = p->in_ch;
    ip.sampleFormat = paFloat32 | paNonInterleaved;
    ip.suggestedLatency = o->latency > 0 ? o->latency
                                         : id->defaultLowInputLatency;
  }
  if (p->out_ch > od->maxOutputChannels)
    return mb_graph_fail(g, MB_ERR_IO,
                         "the graph plays %d channels, but '%s' has %d "
                         "output channels",
                         p->out_ch, od->name, od->maxOutputChannels);
  op.device = p->out_dev;
  op.channelCount = p->out_ch;
  op.sampleFormat = paFloat32 | paNonInterleaved;
  op.suggestedLatency = o->latency > 0 ? o->latency
                                       : od->defaultLowOutputLatency;
  int q = quiet_begin();
  PaError e = Pa_IsFormatSupported(need_in ? &ip : NULL, &op, p->rate);
  quiet_end(q);
  if (e != paFormatIsSupported)
    return mb_graph_fail(g, MB_ERR_IO,
                         "device '%s' cannot play %d channels at %g Hz: %s%s",
                         od->name, p->out_ch, p->rate, Pa_GetErrorText(e),
                         e == paInvalidSampleRate
                             ? " (the device or server runs at another rate; "
                               "resample with mb.graph{rate = ...})"
                             : "");
  q = quiet_begin();
  e = Pa_OpenStream(&p->pa, need_in ? &ip : NULL, &op, p->rate,
                    o->frames > 0 ? (unsigned long)o->frames
                                  : paFramesPerBufferUnspecified,
                    paClipOff | paDitherOff, callback, &p->lv);
  quiet_end(q);
  if (e != paNoError)
    return mb_graph_fail(g, MB_ERR_IO, "cannot open device '%s': %s",
                         od->name, Pa_GetErrorText(e));
  const PaStreamInfo *si = Pa_GetStreamInfo(p->pa);
  /* PortAudio's JACK host reports nonsense (2^32 frames) when the output
   * is another client rather than the system: -1 means unknown */
  stats->out_latency = si && si->outputLatency < 60 ? si->outputLatency : -1;
  return MB_OK;
}

/* Parameters a device node names: device and channels. */
static const char *device_of(const node *nd, const char *dflt) {
  const char *s = mb__node_path(nd);
  return s && *s ? s : dflt;
}
static int channels_of(const node *nd) {
  int p = mb_module_param_index(nd->m, "channels");
  return p >= 0 ? (int)nd->values[p] : 0;
}

mb_status mb_graph_play(mb_graph *g, const mb_play_opts *opts,
                        mb_play_stats *stats) {
  static const mb_play_opts none;
  mb_play_stats dummy;
  if (!opts) opts = &none;
  if (!stats) stats = &dummy;
  memset(stats, 0, sizeof *stats);
  if (g->rendering || g->player)
    return mb_graph_fail(g, MB_ERR_STATE, "the graph is already %s",
                         g->player ? "playing" : "rendering");
  if (pa_wedged)
    return mb_graph_fail(g, MB_ERR_IO,
                         "the audio system hung earlier in this run; "
                         "restart moonbus");
  mb_graph_free(g->last_plan);
  g->last_plan = NULL;
  mb_player *p = calloc(1, sizeof *p);
  if (!p) return mb_graph_fail(g, MB_ERR_NOMEM, "out of memory");
  p->g = g;
  p->lv.p = p;
  pthread_mutex_init(&p->smx, NULL);
  sem_init(&p->tick, 0, 0);
  if (!spsc_init(&p->to_audio, 4096, sizeof(msg)) ||
      !spsc_init(&p->from_audio, 256, sizeof(msg)) ||
      !(p->tap_out = malloc(MB_MAX_CHANNELS * DISK_CHUNK * sizeof(float)))) {
    player_free(p);
    return mb_graph_fail(g, MB_ERR_NOMEM, "out of memory");
  }
  /* The rate: asked for, or the first file input's, as offline. */
  p->rate = g->rate;
  for (int i = 0; i < g->n && p->rate == 0; i++)
    if (g->nodes[i].reader) p->rate = mb_reader_rate(g->nodes[i].reader);
  if (p->rate == 0) p->rate = DEFAULT_RATE;
  g->run_rate = p->rate; /* what mb_graph_rate tells the control side */
  const char *dev_in = NULL, *dev_out = opts->device;
  int need_in = 0, out_node = -1;
  for (int i = 0; i < g->n; i++) {
    const node *nd = &g->nodes[i];
    if (nd->m->flags & MB_MODULE_DEVICE_SOURCE) {
      need_in = 1;
      dev_in = device_of(nd, opts->device);
      p->in_ch = channels_of(nd);
    }
    if (nd->m->flags & MB_MODULE_DEVICE_SINK) {
      out_node = i;
      dev_out = device_of(nd, opts->device);
    }
  }
  mb_status st = MB_OK;
  g->tail_cap_s = opts->tail_cap > 0 ? opts->tail_cap : DEFAULT_TAIL_CAP;
  g->asked_s = opts->duration > 0 ? opts->duration : 0;
  PaError e = pa_start();
  if (e != paNoError) {
    player_free(p);
    return mb_graph_fail(g, MB_ERR_IO, "cannot start PortAudio: %s",
                         Pa_GetErrorText(e));
  }
  if (need_in && p->in_ch == 0) { /* all the device's inputs */
    char err[MB_ERRLEN];
    int d = pick_device(dev_in, 0, err, sizeof err);
    if (d < 0) st = mb_graph_fail(g, MB_ERR_IO, "%s", err);
    else p->in_ch = Pa_GetDeviceInfo(d)->maxInputChannels;
    if (p->in_ch > MB_MAX_CHANNELS) p->in_ch = MB_MAX_CHANNELS;
  }
  mb_graph *pl = NULL;
  if (!st && !(st = build_plan(p, 0, &pl))) {
    p->plan = pl;
    /* what reaches the device: the device_out node, else the first file
     * output (heard while it is written), else the last node */
    int mon = out_node;
    for (int i = 0; i < pl->n && mon < 0; i++)
      if (pl->nodes[i].monitor) mon = i;
    p->out_ch = mon >= 0 ? pl->nodes[mon].in_ch[0] : 0;
    if (out_node >= 0 && channels_of(&pl->nodes[out_node]) > 0)
      p->out_ch = channels_of(&pl->nodes[out_node]);
    if (p->out_ch <= 0) p->out_ch = 2;
    if (pl->total == UNBOUNDED && !opts->interrupt)
      st = mb_graph_fail(g, MB_ERR_GRAPH, "%s", pl->err);
  }
  if (!st) st = open_stream(p, opts, dev_in, dev_out, need_in, stats);
  if (st) {
    if (p->pa) Pa_CloseStream(p->pa);
    Pa_Terminate();
    free_plan(pl);
    player_free(p);
    g->tail_cap_s = DEFAULT_TAIL_CAP, g->asked_s = 0;
    return st;
  }
  stats->latency = 0;
  mb__render_total(pl, &stats->latency);
  /* envelopes start where an offline render starts them */
  for (int i = 0; i < pl->n; i++) {
    node *nd = &pl->nodes[i];
    for (int q = 0; nd->env && q < nd->m->n_params; q++)
      if (nd->env[q].n) nd->env[q].sent = nd->env[q].pts[0].value;
  }
  p->lv.dout_ch = p->out_ch;
  p->lv.din_ch = need_in ? p->in_ch : 0;
  p->lv.fade_len = (int)lround(FADE_SECONDS * p->rate);
  p->lv.guard = (void (*)(int))dlsym(RTLD_DEFAULT, "moonbus_rt_guard");
  msg first = {.kind = MSG_PLAN, .plan = pl};
  spsc_push(&p->to_audio, &first);
  g->player = p;
  g->last_plan = pl;
  g->compiled = 1; /* the plan is up to date; edits clear it */

  /* The disk thread, then the inputs buffered before the first block. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  p->disk_started = !pthread_create(&p->disk, NULL, disk_main, p);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (!p->disk_started)
    st = mb_graph_fail(g, MB_ERR_NOMEM, "cannot start the disk thread");
  if (!st) wait_buffered(p, 10);
  const double t_start = now();
  if (!st && (e = Pa_StartStream(p->pa)) != paNoError)
    st = mb_graph_fail(g, MB_ERR_IO, "cannot start device '%s': %s",
                       stats->device, Pa_GetErrorText(e));
  int started = !st;

  /* The control loop. */
  int64_t next_ctl = opts->next_control ? opts->next_control(opts->ud, 0)
                                        : INT64_MAX;
  int64_t last_pos = -1;
  int server_gone = 0;
  double last_move = now();
  while (!st) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 20 * 1000000;
    if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
    while (sem_timedwait(&p->tick, &ts) && errno == EINTR) {
    }
    while (sem_trywait(&p->tick) == 0) {
    }
    collect_plans(p);
    const int64_t pos = atomic_load_explicit(&p->lv.pos_pub,
                                             memory_order_acquire);
    const double t = now();
    if (pos != last_pos) last_pos = pos, last_move = t;
    for (int i = 0; i < p->n_streams; i++)
      if (atomic_load(&p->streams[i]->failed)) {
        const stream *s = p->streams[i];
        st = mb_graph_fail(g, MB_ERR_IO, "%s: %s",
                           g->nodes[s->node].name, s->err);
      }
    if (st) break;
    /* JACK gone: the stream turns inactive without having been stopped;
     * any other device: no audio for too long */
    if (Pa_IsStreamActive(p->pa) == 0 || t - last_move > STALL_SECONDS) {
      server_gone = Pa_IsStreamActive(p->pa) == 0;
      if (server_gone)
        st = mb_graph_fail(g, MB_ERR_IO,
                           "the audio device '%s' stopped while playing at "
                           "%.2f s (did the audio server quit?)",
                           stats->device, pos / p->rate);
      else
        st = mb_graph_fail(g, MB_ERR_IO,
                           "the audio device stopped: no audio for %.0f s on "
                           "'%s' (did the audio server quit?)",
                           STALL_SECONDS, stats->device);
      break;
    }
    drain_taps(p);
    while (next_ctl <= pos && opts->control) {
      g->pos = next_ctl;
      if ((st = opts->control(opts->ud, next_ctl))) break;
      next_ctl = opts->next_control(opts->ud, next_ctl + 1);
    }
    if (st) break;
    if (!g->compiled && !p->swap_pending) { /* edited: a new plan */
      const int64_t start =
          pos + 2 * (int64_t)atomic_load(&p->lv.max_frames) +
          p->lv.fade_len;
      mb_graph *np = NULL;
      if ((st = build_plan(p, start, &np))) break;
      wait_buffered(p, 0.5); /* a new file input starts with its ring full */
      msg m = {.kind = MSG_PLAN, .plan = np};
      if (!spsc_push(&p->to_audio, &m)) {
        free_plan(np);
        st = mb_graph_fail(g, MB_ERR_STATE, "the audio thread is not "
                                            "taking messages");
        break;
      }
      p->plan = np;
      g->last_plan = np;
      g->compiled = 1;
      p->swap_pending = 1;
    }
    if (opts->progress)
      opts->progress(opts->ud, pos, p->lv.total == UNBOUNDED ? -1
                                                             : p->lv.total);
    if (atomic_load_explicit(&p->lv.ended, memory_order_acquire) &&
        !p->swap_pending)
      break;
    if (opts->interrupt && *opts->interrupt) {
      stats->interrupted = 1;
      break;
    }
  }

  /* Stop: the device, then the disk thread once the rings are drained.
   * After its server died, PortAudio (19.6, JACK) hangs in any stop, close
   * or terminate and later aborts: it is not touched again. */
  if (server_gone) pa_wedged = 1;
  else if (started && !stop_stream(p->pa, st != MB_OK)) pa_wedged = 1;
  else if (!started) Pa_CloseStream(p->pa);
  if (!pa_wedged) Pa_Terminate();
  if (pa_wedged) {
    /* The callback might still run: leave the plans and rings it can
     * touch alone (leaked); only the files are cleaned up. */
    if (p->disk_started) {
      atomic_store(&p->disk_quit, 1);
      pthread_join(p->disk, NULL);
    }
    for (int i = 0; i < p->n_streams; i++) {
      mb_writer_abort(p->streams[i]->writer);
      p->streams[i]->writer = NULL;
    }
    g->player = NULL;
    g->last_plan = NULL;
    g->compiled = 0;
    g->tail_cap_s = DEFAULT_TAIL_CAP, g->asked_s = 0;
    return st ? st
              : mb_graph_fail(g, MB_ERR_IO,
                              "the audio system did not stop within %.0f s",
                              STOP_SECONDS);
  }
  collect_plans(p);
  /* the audio thread may have taken a plan it never swapped in */
  mb_graph *cur = p->lv.cur, *pend = p->lv.pending;
  if (p->disk_started) {
    atomic_store(&p->disk_quit, 1);
    pthread_join(p->disk, NULL);
    p->disk_started = 0;
  }
  drain_taps(p);
  stats->frames = p->lv.pos;
  stats->seconds = p->lv.pos / p->rate;
  stats->wall = now() - t_start;
  stats->callbacks = atomic_load(&p->lv.callbacks);
  stats->xruns = atomic_load(&p->lv.xruns);
  stats->buffer = atomic_load(&p->lv.max_frames);
  stats->swaps = p->swaps;
  for (int i = 0; i < p->n_streams; i++) {
    stream *s = p->streams[i];
    int64_t lost = atomic_load(&s->lost);
    if (s->kind == ST_SOURCE) stats->underruns += lost;
    else stats->dropped += lost;
  }
  /* File outputs: all committed, or none on an error. */
  for (int i = 0; i < p->n_streams; i++) {
    stream *s = p->streams[i];
    if (s->kind != ST_SINK || !s->writer) continue;
    char err[MB_ERRLEN];
    node *nd = s->node < g->n ? &g->nodes[s->node] : NULL;
    if (!st && mb_writer_finish(s->writer, err, sizeof err))
      st = mb_graph_fail(g, MB_ERR_IO, "%s: %s", nd ? nd->name : "output",
                         err);
    if (!st && nd) {
      nd->writer = s->writer;
      mb__collect_ostats(g, nd);
      nd->writer = NULL;
    }
  }
  for (int i = 0; i < p->n_streams; i++) {
    stream *s = p->streams[i];
    if (s->kind != ST_SINK || !s->writer) continue;
    char err[MB_ERRLEN];
    mb_status cs = st ? MB_OK : mb_writer_commit(s->writer, err, sizeof err);
    if (st) mb_writer_abort(s->writer);
    s->writer = NULL;
    if (cs && !st)
      st = mb_graph_fail(g, cs, "%s: %s", g->nodes[s->node].name, err);
  }
  /* Keep the newest plan for results; free the others. */
  mb_graph *keep = p->plan;
  if (cur && cur != keep) free_plan(cur);
  if (pend && pend != keep && pend != cur) free_plan(pend);
  for (int i = 0; keep && i < keep->n; i++) {
    keep->nodes[i].reader = NULL;
    keep->nodes[i].writer = NULL;
    keep->nodes[i].io = NULL;
  }
  if (keep) keep->live = NULL;
  g->player = NULL;
  g->last_plan = keep;
  g->compiled = 0;
  g->tail_cap_s = DEFAULT_TAIL_CAP, g->asked_s = 0;
  player_free(p);
  return st;
}
