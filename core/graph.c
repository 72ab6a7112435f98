/* graph.c - the graph: nodes, connections, compilation and offline render.
 *
 * Compilation turns the node list into a schedule: a topological order,
 * channel counts per port, module instances, latency compensation (a delay
 * on every connection that arrives early), and a pool of channel buffers
 * reused as soon as their last reader has run. Rendering walks the schedule
 * block by block; the host performs file I/O for source and sink nodes.
 *
 * Invariant that makes renders independent of block size: everything that
 * happens at a particular frame (envelope steps, control callbacks, sink
 * start and end) happens at that absolute frame, whatever the block size;
 * blocks are split there. */
#define _GNU_SOURCE /* sched_getaffinity */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#if defined(__SSE__) || defined(__x86_64__)
#include <immintrin.h>
#define HAVE_MXCSR 1
#endif

#include "graph_impl.h"

/* ---- small helpers ---------------------------------------------------- */

char *mb__dupstr(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}
#define dupstr mb__dupstr

mb_status mb_graph_fail(mb_graph *g, mb_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g->err, sizeof g->err, fmt, ap);
  va_end(ap);
  return st;
}

const char *mb_graph_error(const mb_graph *g) { return g->err; }
double mb_graph_rate(const mb_graph *g) {
  return g->run_rate > 0 ? g->run_rate : g->rate;
}
int mb_graph_block(const mb_graph *g) { return g->block; }
int mb_graph_count(const mb_graph *g) { return g->n; }
int mb_graph_rendering(const mb_graph *g) { return g->rendering; }
int mb_graph_playing(const mb_graph *g) { return g->player != NULL; }

static int valid_node(const mb_graph *g, int i) { return i >= 0 && i < g->n; }

const mb_module_desc *mb_node_module(const mb_graph *g, int i) {
  return valid_node(g, i) ? g->nodes[i].m : NULL;
}
const char *mb_node_name(const mb_graph *g, int i) {
  return valid_node(g, i) ? g->nodes[i].name : "?";
}
int mb_node_channels(const mb_graph *g, int i) {
  return valid_node(g, i) && g->compiled ? g->nodes[i].out_ch : 0;
}

/* Format a number the way a user wrote it: 30, -2.5, 0.7071. */
static const char *num(char *buf, size_t n, double v) {
  snprintf(buf, n, "%.10g", v);
  return buf;
}

static const char *unit_sfx(const mb_param_desc *p, char *buf, size_t n) {
  if (p->unit && *p->unit) snprintf(buf, n, " %s", p->unit);
  else buf[0] = 0;
  return buf;
}

/* ---- lifetime ---------------------------------------------------------- */

static void decompile(mb_graph *g);

mb_graph *mb_graph_new(double rate, int block, mb_status *status) {
  if (rate < 0 || rate > 768000 || (rate > 0 && rate < 1000) || block < 0 ||
      block > 1 << 20) {
    if (status) *status = MB_ERR_ARG;
    return NULL;
  }
  mb_graph *g = calloc(1, sizeof *g);
  if (!g) {
    if (status) *status = MB_ERR_NOMEM;
    return NULL;
  }
  g->rate = rate;
  g->block = block ? block : DEFAULT_BLOCK;
  g->tail_cap_s = DEFAULT_TAIL_CAP;
  if (status) *status = MB_OK;
  return g;
}

static void free_node(node *nd) {
  for (int i = 0; i < nd->m->n_params; i++) {
    if (nd->strings) free(nd->strings[i]);
    if (nd->env) free(nd->env[i].pts);
  }
  free(nd->strings);
  free(nd->pub);
  free(nd->env);
  free(nd->values);
  free(nd->name);
  free((char *)nd->ostats.path);
  mb_reader_close(nd->reader);
  mb_writer_abort(nd->writer);
}

void mb_graph_free(mb_graph *g) {
  if (!g) return;
  decompile(g);
  mb_graph_free(g->last_plan);
  for (int i = 0; i < g->n; i++) free_node(&g->nodes[i]);
  free(g->nodes);
  free(g->conns);
  free(g->hist_from);
  free(g);
}

int mb_graph_add(mb_graph *g, const mb_module_desc *m, const char *name,
                 void *host, mb_status *status) {
  mb_status dummy;
  if (!status) status = &dummy;
  if (g->rendering) {
    *status = mb_graph_fail(g, MB_ERR_STATE,
                            "cannot add a node while the graph renders");
    return -1;
  }
  if (g->player && (m->flags & MB_MODULE_OFFLINE_ONLY)) {
    *status = mb_graph_fail(g, MB_ERR_STATE,
                            "%s nodes cannot run live (the audio thread "
                            "never calls Lua)",
                            m->id);
    return -1;
  }
  if (m->n_inputs > MB_MAX_PORTS) {
    *status = mb_graph_fail(g, MB_ERR_ARG, "%s: too many input ports", m->id);
    return -1;
  }
  if (g->n == g->cap) {
    int cap = g->cap ? g->cap * 2 : 16;
    node *nn = realloc(g->nodes, cap * sizeof *nn);
    if (!nn) return *status = MB_ERR_NOMEM, -1;
    g->nodes = nn;
    g->cap = cap;
  }
  node *nd = &g->nodes[g->n];
  memset(nd, 0, sizeof *nd);
  nd->m = m;
  nd->host = host;
  char auto_name[96];
  if (!name || !*name) {
    snprintf(auto_name, sizeof auto_name, "%s#%d", m->id, g->n + 1);
    name = auto_name;
  }
  nd->name = dupstr(name);
  nd->values = calloc(m->n_params ? m->n_params : 1, sizeof *nd->values);
  nd->strings = calloc(m->n_params ? m->n_params : 1, sizeof *nd->strings);
  if (!nd->name || !nd->values || !nd->strings) {
    free_node(nd);
    return *status = MB_ERR_NOMEM, -1;
  }
  for (int i = 0; i < m->n_params; i++) nd->values[i] = m->params[i].def;
  g->compiled = 0;
  *status = MB_OK;
  return g->n++;
}

/* ---- parameters -------------------------------------------------------- */

static mb_status check_value(mb_graph *g, int i, int p, double v) {
  const node *nd = &g->nodes[i];
  const mb_param_desc *d = &nd->m->params[p];
  char a[32], b[32], c[32], u[24];
  if (!isfinite(v))
    return mb_graph_fail(g, MB_ERR_ARG, "%s: %s must be a finite number, got %s",
                         nd->name, d->id, num(a, sizeof a, v));
  if (d->type == MB_PARAM_INT && v != floor(v))
    return mb_graph_fail(g, MB_ERR_ARG, "%s: %s must be a whole number, got %s",
                         nd->name, d->id, num(a, sizeof a, v));
  if (d->type == MB_PARAM_ENUM) {
    int n = 0;
    while (d->choices && d->choices[n]) n++;
    if (v != floor(v) || v < 0 || v >= n)
      return mb_graph_fail(g, MB_ERR_ARG, "%s: %s has no choice number %s",
                           nd->name, d->id, num(a, sizeof a, v));
    return MB_OK;
  }
  if (d->type == MB_PARAM_BOOL) return MB_OK;
  if (v < d->min || v > d->max)
    return mb_graph_fail(g, MB_ERR_ARG,
                         "%s: %s = %s%s is out of range (%s .. %s%s)", nd->name,
                         d->id, num(a, sizeof a, v), unit_sfx(d, u, sizeof u),
                         num(b, sizeof b, d->min), num(c, sizeof c, d->max),
                         u);
  return MB_OK;
}

static mb_status check_sink(mb_graph *g, int i);

mb_status mb_node_set(mb_graph *g, int i, int p, double v) {
  if (!valid_node(g, i) || p < 0 || p >= g->nodes[i].m->n_params)
    return mb_graph_fail(g, MB_ERR_ARG, "no such node or parameter");
  node *nd = &g->nodes[i];
  const mb_param_desc *d = &nd->m->params[p];
  if (d->type == MB_PARAM_STRING)
    return mb_graph_fail(g, MB_ERR_ARG, "%s: %s takes a string", nd->name,
                         d->id);
  if (d->type == MB_PARAM_BOOL) v = v != 0;
  mb_status st = check_value(g, i, p, v);
  if (st) return st;
  if (d->flags & MB_PARAM_STRUCTURAL) {
    if (g->rendering)
      return mb_graph_fail(g, MB_ERR_STATE,
                           "%s: %s cannot change during a render", nd->name,
                           d->id);
    double old = nd->values[p];
    nd->values[p] = v;
    if ((nd->m->flags & MB_MODULE_FILE_SINK) && (st = check_sink(g, i))) {
      nd->values[p] = old;
      return st;
    }
    g->compiled = 0;
    return MB_OK;
  }
  nd->values[p] = v;
  if (g->player) { /* the audio thread applies it at its next block */
    mb__live_param(g->player, i, p, v);
    return MB_OK;
  }
  if (nd->created && nd->m->set_param) {
    int ramp = 0;
    if (g->rendering && (d->flags & MB_PARAM_SMOOTH))
      ramp = (int)lround(MB_SMOOTH_SECONDS * g->run_rate);
    nd->m->set_param(nd->state, p, v, ramp);
  }
  return MB_OK;
}

double mb_node_get(const mb_graph *g, int i, int p) {
  if (!valid_node(g, i) || p < 0 || p >= g->nodes[i].m->n_params) return NAN;
  return g->nodes[i].values[p];
}

const char *mb_node_get_string(const mb_graph *g, int i, int p) {
  if (!valid_node(g, i) || p < 0 || p >= g->nodes[i].m->n_params) return NULL;
  return g->nodes[i].strings[p];
}

static int find_string_param(const mb_module_desc *m) {
  for (int p = 0; p < m->n_params; p++)
    if (m->params[p].type == MB_PARAM_STRING) return p;
  return -1;
}

const char *mb__node_path(const node *nd) {
  int p = find_string_param(nd->m);
  return p >= 0 ? nd->strings[p] : NULL;
}
#define node_path mb__node_path

/* Refuse a sink whose path is unusable now rather than at render time. */
static mb_status check_sink(mb_graph *g, int i) {
  node *nd = &g->nodes[i];
  const char *path = node_path(nd);
  if (!path) return MB_OK;
  int bits_p = mb_module_param_index(nd->m, "bits");
  int bits = bits_p >= 0 ? (int)nd->values[bits_p] : 24;
  int fmt = mb_writer_format_for(path);
  if (!fmt)
    return mb_graph_fail(g, MB_ERR_ARG,
                         "%s: cannot write '%s': unknown extension (use .wav, "
                         ".aif, .aiff or .flac)",
                         nd->name, path);
  int rate_p = mb_module_param_index(nd->m, "rate");
  double rate = rate_p >= 0 ? nd->values[rate_p] : 0;
  if (rate != 0 && rate < 1000)
    return mb_graph_fail(g, MB_ERR_ARG,
                         "%s: rate = %g Hz is out of range (0 keeps the "
                         "graph's rate, or 1000 .. 768000 Hz)",
                         nd->name, rate);
  if (bits != 16 && bits != 24 && bits != 32)
    return mb_graph_fail(g, MB_ERR_ARG,
                         "%s: bits = %d is not supported (16, 24 or 32 for "
                         "float)",
                         nd->name, bits);
  if (bits == 32 && strstr(path, ".") &&
      (strcasecmp(strrchr(path, '.'), ".flac") == 0))
    return mb_graph_fail(g, MB_ERR_ARG,
                         "%s: FLAC has no 32-bit float; use bits 16 or 24 for "
                         "'%s'",
                         nd->name, path);
  /* The folder must exist. */
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash) {
    if (slash == dir) slash[1] = 0;
    else *slash = 0;
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
      return mb_graph_fail(g, MB_ERR_IO,
                           "%s: cannot write '%s': folder '%s' does not exist",
                           nd->name, path, dir);
  }
  for (int j = 0; j < g->n; j++) {
    const node *o = &g->nodes[j];
    const char *op = node_path(o);
    if (j == i || !op) continue;
    /* file inputs, and modules that read a file (a convolver's response) */
    if (!(o->m->flags & MB_MODULE_FILE_SINK) && mb_same_file(path, op))
      return mb_graph_fail(g, MB_ERR_ARG,
                           "%s: output '%s' is read by %s; refusing to "
                           "overwrite an input",
                           nd->name, path, o->name);
    if ((o->m->flags & MB_MODULE_FILE_SINK) && mb_same_file(path, op))
      return mb_graph_fail(g, MB_ERR_ARG,
                           "%s: output '%s' is also written by %s", nd->name,
                           path, o->name);
  }
  return MB_OK;
}

mb_status mb_node_set_string(mb_graph *g, int i, int p, const char *v) {
  if (!valid_node(g, i) || p < 0 || p >= g->nodes[i].m->n_params)
    return mb_graph_fail(g, MB_ERR_ARG, "no such node or parameter");
  node *nd = &g->nodes[i];
  const mb_param_desc *d = &nd->m->params[p];
  if (d->type != MB_PARAM_STRING)
    return mb_graph_fail(g, MB_ERR_ARG, "%s: %s takes a number, not a string",
                         nd->name, d->id);
  if (g->rendering)
    return mb_graph_fail(g, MB_ERR_STATE, "%s: %s cannot change during a render",
                         nd->name, d->id);
  char *copy = dupstr(v);
  if (!copy) return MB_ERR_NOMEM;
  char *old = nd->strings[p];
  nd->strings[p] = copy;
  if (nd->m->flags & MB_MODULE_FILE_SOURCE) {
    char err[MB_ERRLEN];
    mb_reader *r = mb_reader_open(v, err, sizeof err);
    if (!r) {
      nd->strings[p] = old;
      free(copy);
      return mb_graph_fail(g, MB_ERR_IO, "%s: %s", nd->name, err);
    }
    for (int j = 0; j < g->n; j++) {
      const node *o = &g->nodes[j];
      const char *op = node_path(o);
      if (j != i && op && (o->m->flags & MB_MODULE_FILE_SINK) &&
          mb_same_file(v, op)) {
        mb_reader_close(r);
        nd->strings[p] = old;
        free(copy);
        return mb_graph_fail(g, MB_ERR_ARG,
                             "%s: input '%s' is the output of %s; refusing to "
                             "overwrite an input",
                             nd->name, v, o->name);
      }
    }
    mb_reader_close(nd->reader);
    nd->reader = r;
  }
  if (nd->m->flags & MB_MODULE_FILE_SINK) {
    mb_status st = check_sink(g, i);
    if (st) {
      nd->strings[p] = old;
      free(copy);
      return st;
    }
  }
  free(old);
  g->compiled = 0;
  return MB_OK;
}

/* ---- automation -------------------------------------------------------- */

mb_status mb_node_automate(mb_graph *g, int i, int p, const mb_point *pts,
                           int n) {
  if (!valid_node(g, i) || p < 0 || p >= g->nodes[i].m->n_params)
    return mb_graph_fail(g, MB_ERR_ARG, "no such node or parameter");
  node *nd = &g->nodes[i];
  const mb_param_desc *d = &nd->m->params[p];
  if (d->type == MB_PARAM_STRING || (d->flags & MB_PARAM_STRUCTURAL))
    return mb_graph_fail(g, MB_ERR_ARG, "%s: %s cannot be automated",
                         nd->name, d->id);
  if (g->rendering)
    return mb_graph_fail(g, MB_ERR_STATE,
                         "%s: cannot change automation during a render",
                         nd->name);
  char a[32];
  for (int k = 0; k < n; k++) {
    if (!isfinite(pts[k].time) || pts[k].time < 0)
      return mb_graph_fail(g, MB_ERR_ARG,
                           "%s: %s automation point %d: time %s must be >= 0 "
                           "seconds",
                           nd->name, d->id, k + 1,
                           num(a, sizeof a, pts[k].time));
    mb_status st = check_value(g, i, p, pts[k].value);
    if (st) return st;
  }
  mb_point *copy = NULL;
  if (n > 0) {
    copy = malloc(n * sizeof *copy);
    if (!copy) return MB_ERR_NOMEM;
    /* Insertion sort: stable, so two points at one time make a jump in
     * the order given. */
    for (int k = 0; k < n; k++) {
      int j = k;
      while (j > 0 && copy[j - 1].time > pts[k].time) {
        copy[j] = copy[j - 1];
        j--;
      }
      copy[j] = pts[k];
    }
  }
  for (int k = 0; k + 1 < n; k++) {
    if (copy[k].curve == MB_CURVE_EXP &&
        (copy[k].value == 0 || copy[k + 1].value == 0 ||
         (copy[k].value < 0) != (copy[k + 1].value < 0))) {
      free(copy);
      return mb_graph_fail(g, MB_ERR_ARG,
                           "%s: %s automation point %d: an exponential "
                           "segment needs both ends non-zero with the same "
                           "sign",
                           nd->name, d->id, k + 1);
    }
  }
  if (!nd->env) {
    nd->env = calloc(nd->m->n_params, sizeof *nd->env);
    if (!nd->env) {
      free(copy);
      return MB_ERR_NOMEM;
    }
  }
  if (nd->env[p].n > 0) nd->n_auto--;
  free(nd->env[p].pts);
  nd->env[p].pts = copy;
  nd->env[p].n = n;
  if (n > 0) nd->n_auto++;
  g->compiled = 0;
  return MB_OK;
}

/* Value of an envelope at time t (seconds). Lookups move forward during a
 * render, so a cursor keeps this O(1). */
static double env_eval(envelope *e, double t) {
  const mb_point *p = e->pts;
  if (t <= p[0].time) return p[0].value;
  if (t >= p[e->n - 1].time) return p[e->n - 1].value;
  int k = e->cursor;
  if (k >= e->n - 1 || p[k].time > t) k = 0;
  while (k + 1 < e->n && p[k + 1].time <= t) k++;
  e->cursor = k;
  const mb_point *a = &p[k], *b = &p[k + 1];
  double span = b->time - a->time;
  double x = span > 0 ? (t - a->time) / span : 1;
  switch (a->curve) {
  case MB_CURVE_HOLD: return a->value;
  case MB_CURVE_EXP: return a->value * pow(b->value / a->value, x);
  default: return a->value + (b->value - a->value) * x;
  }
}

/* ---- connections ------------------------------------------------------- */

mb_status mb_graph_connect(mb_graph *g, int from, int to, int port) {
  if (!valid_node(g, from) || !valid_node(g, to))
    return mb_graph_fail(g, MB_ERR_ARG, "connect: no such node");
  node *a = &g->nodes[from], *b = &g->nodes[to];
  if (g->rendering)
    return mb_graph_fail(g, MB_ERR_STATE,
                         "cannot connect while the graph renders");
  if (!a->m->has_output)
    return mb_graph_fail(g, MB_ERR_GRAPH, "%s has no output to connect from",
                         a->name);
  if (b->m->n_inputs == 0)
    return mb_graph_fail(g, MB_ERR_GRAPH, "%s has no inputs to connect to",
                         b->name);
  if (port < 0 || port >= b->m->n_inputs)
    return mb_graph_fail(g, MB_ERR_GRAPH, "%s has no input number %d", b->name,
                         port + 1);
  for (int k = 0; k < g->nc; k++) {
    const conn *c = &g->conns[k];
    if (c->from == from && c->to == to && c->port == port)
      return mb_graph_fail(g, MB_ERR_GRAPH,
                           "%s is already connected to %s's input '%s'",
                           a->name, b->name, b->m->inputs[port].name);
  }
  if (g->nc == g->capc) {
    int cap = g->capc ? g->capc * 2 : 16;
    conn *nc = realloc(g->conns, cap * sizeof *nc);
    if (!nc) return MB_ERR_NOMEM;
    g->conns = nc;
    g->capc = cap;
  }
  g->conns[g->nc++] = (conn){.from = from, .to = to, .port = port};
  g->compiled = 0;
  return MB_OK;
}

/* A removed node stays as a placeholder without ports or parameters, so
 * node numbers (held by Lua objects and by a playing plan) never shift. */
static const mb_module_desc removed_desc = {.id = "(removed)",
                                            .summary = "a removed node"};

int mb_node_removed(const mb_graph *g, int i) {
  return valid_node(g, i) && g->nodes[i].m == &removed_desc;
}

mb_status mb_graph_disconnect(mb_graph *g, int from, int to, int port) {
  if (!valid_node(g, from) || !valid_node(g, to))
    return mb_graph_fail(g, MB_ERR_ARG, "disconnect: no such node");
  if (g->rendering)
    return mb_graph_fail(g, MB_ERR_STATE,
                         "cannot disconnect while the graph renders");
  int k = 0, found = 0;
  for (int j = 0; j < g->nc; j++) {
    conn *c = &g->conns[j];
    if (c->from == from && c->to == to && (port < 0 || c->port == port)) {
      free(c->hist);
      found++;
      continue;
    }
    g->conns[k++] = *c;
  }
  g->nc = k;
  if (!found)
    return mb_graph_fail(g, MB_ERR_GRAPH, "%s is not connected to %s",
                         g->nodes[from].name, g->nodes[to].name);
  g->compiled = 0;
  return MB_OK;
}

mb_status mb_graph_remove(mb_graph *g, int i) {
  if (!valid_node(g, i) || mb_node_removed(g, i))
    return mb_graph_fail(g, MB_ERR_ARG, "remove: no such node");
  if (g->rendering)
    return mb_graph_fail(g, MB_ERR_STATE,
                         "cannot remove a node while the graph renders");
  if (!g->player) decompile(g);
  node *nd = &g->nodes[i];
  int k = 0;
  for (int j = 0; j < g->nc; j++) {
    conn *c = &g->conns[j];
    if (c->from == i || c->to == i) {
      free(c->hist);
      continue;
    }
    g->conns[k++] = *c;
  }
  g->nc = k;
  char *name = nd->name;
  nd->name = NULL;
  free_node(nd);
  memset(nd, 0, sizeof *nd);
  nd->m = &removed_desc;
  nd->name = name;
  nd->values = calloc(1, sizeof *nd->values);
  nd->strings = calloc(1, sizeof *nd->strings);
  g->compiled = 0;
  return nd->values && nd->strings ? MB_OK : MB_ERR_NOMEM;
}

mb_graph *mb__graph_clone(const mb_graph *g) {
  mb_graph *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->rate = g->rate;
  c->block = g->block;
  c->tail_cap_s = g->tail_cap_s;
  c->asked_s = g->asked_s;
  c->nodes = calloc(g->n ? g->n : 1, sizeof *c->nodes);
  c->conns = calloc(g->nc ? g->nc : 1, sizeof *c->conns);
  if (!c->nodes || !c->conns) goto fail;
  c->cap = g->n ? g->n : 1;
  c->capc = g->nc ? g->nc : 1;
  for (int i = 0; i < g->n; i++, c->n++) {
    const node *a = &g->nodes[i];
    node *b = &c->nodes[i];
    const int np = a->m->n_params;
    b->m = a->m;
    b->host = a->host;
    b->n_auto = a->n_auto;
    b->origin = a->origin;
    b->lead = a->lead;
    b->from = a->from;
    b->name = dupstr(a->name);
    b->values = malloc((np ? np : 1) * sizeof *b->values);
    b->strings = calloc(np ? np : 1, sizeof *b->strings);
    if (!b->name || !b->values || !b->strings) goto fail_node;
    if (np) memcpy(b->values, a->values, np * sizeof *b->values);
    for (int p = 0; p < np; p++)
      if (a->strings[p] && !(b->strings[p] = dupstr(a->strings[p])))
        goto fail_node;
    if (a->env) {
      if (!(b->env = calloc(np, sizeof *b->env))) goto fail_node;
      for (int p = 0; p < np; p++) {
        if (!a->env[p].n) continue;
        b->env[p].pts = malloc(a->env[p].n * sizeof(mb_point));
        if (!b->env[p].pts) goto fail_node;
        memcpy(b->env[p].pts, a->env[p].pts, a->env[p].n * sizeof(mb_point));
        b->env[p].n = a->env[p].n;
        b->env[p].sent = NAN; /* the first grid point sends its value */
      }
    }
  }
  for (int k = 0; k < g->nc; k++) {
    c->conns[k] = g->conns[k];
    c->conns[k].hist = NULL;
  }
  c->nc = g->nc;
  return c;
fail_node:
  c->n++;
fail:
  mb_graph_free(c);
  return NULL;
}

/* ---- compilation ------------------------------------------------------- */

static void decompile(mb_graph *g) {
  mb_graph_free(g->last_plan);
  g->last_plan = NULL;
  for (int i = 0; i < g->n; i++) {
    node *nd = &g->nodes[i];
    if (nd->taken) { /* a newer plan runs it */
      nd->state = NULL;
      nd->created = nd->taken = 0;
      continue;
    }
    if (nd->created && nd->m->destroy) nd->m->destroy(nd->state);
    free(nd->state);
    nd->state = NULL;
    nd->created = 0;
  }
  for (int k = 0; k < g->nc; k++) {
    free(g->conns[k].hist);
    g->conns[k].hist = NULL;
  }
  free(g->order);
  g->order = NULL;
  free(g->pool);
  g->pool = NULL;
  g->compiled = 0;
}

/* Kahn's algorithm; on a cycle, name the nodes on one. */
static mb_status topo_sort(mb_graph *g) {
  int n = g->n;
  int *indeg = calloc(n ? n : 1, sizeof *indeg);
  g->order = malloc((n ? n : 1) * sizeof *g->order);
  if (!indeg || !g->order) {
    free(indeg);
    return MB_ERR_NOMEM;
  }
  for (int k = 0; k < g->nc; k++) indeg[g->conns[k].to]++;
  int head = 0, tail = 0;
  for (int i = 0; i < n; i++)
    if (!indeg[i]) g->order[tail++] = i;
  while (head < tail) {
    int u = g->order[head++];
    for (int k = 0; k < g->nc; k++)
      if (g->conns[k].from == u && --indeg[g->conns[k].to] == 0)
        g->order[tail++] = g->conns[k].to;
  }
  if (tail == n) {
    free(indeg);
    return MB_OK;
  }
  /* Every node left has a predecessor left: walk backwards until a node
   * repeats; the walk between the repeats is a cycle. */
  size_t nn = (unsigned)n;
  int *seen = calloc(nn, sizeof *seen), *path = malloc(nn * sizeof *path);
  int u = -1, len = 0;
  for (int i = 0; i < n && u < 0; i++)
    if (indeg[i]) u = i;
  while (seen && path && !seen[u]) {
    seen[u] = len + 1;
    path[len++] = u;
    for (int k = 0; k < g->nc; k++)
      if (g->conns[k].to == u && indeg[g->conns[k].from]) {
        u = g->conns[k].from;
        break;
      }
  }
  char msg[MB_ERRLEN] = "";
  size_t off = 0;
  if (seen && path) {
    /* path runs against the signal flow; print it along the flow. */
    int start = seen[u] - 1;
    for (int k = len - 1; k >= start && off < sizeof msg; k--)
      off += snprintf(msg + off, sizeof msg - off, "%s -> ",
                      g->nodes[path[k]].name);
    if (off < sizeof msg)
      snprintf(msg + off, sizeof msg - off, "%s", g->nodes[path[len - 1]].name);
  }
  free(seen);
  free(path);
  free(indeg);
  return mb_graph_fail(g, MB_ERR_GRAPH, "the graph has a cycle: %s", msg);
}

int64_t mb__sat_add(int64_t a, int64_t b) {
  if (a == UNBOUNDED || b == UNBOUNDED) return UNBOUNDED;
  return a + b;
}

/* A plan compiled while another plays takes over the running instance of
 * a node whose module, inputs and structural settings are unchanged, so
 * its state (delay lines, envelopes, reverb tails) carries on. */
static int take_instance(mb_graph *g, node *nd) {
  int i = (int)(nd - g->nodes);
  if (i >= g->donor->n) return 0;
  node *o = &g->donor->nodes[i];
  if (!o->created || o->taken || o->m != nd->m || o->out_ch != nd->out_ch ||
      (nd->m->flags & (MB_MODULE_FILE_SOURCE | MB_MODULE_FILE_SINK)))
    return 0;
  if (memcmp(o->in_ch, nd->in_ch, sizeof nd->in_ch)) return 0;
  for (int p = 0; p < nd->m->n_params; p++) {
    const mb_param_desc *d = &nd->m->params[p];
    if (!(d->flags & MB_PARAM_STRUCTURAL)) continue;
    if (d->type == MB_PARAM_STRING) {
      const char *a = o->strings[p], *b = nd->strings[p];
      if ((a || b) && (!a || !b || strcmp(a, b))) return 0;
    } else if (o->values[p] != nd->values[p]) {
      return 0;
    }
  }
  nd->state = o->state;
  nd->created = 1;
  nd->latency = o->latency;
  o->taken = 1;
  return 1;
}

static mb_status create_node(mb_graph *g, node *nd) {
  char err[MB_ERRLEN] = "";
  mb_config c;
  memset(&c, 0, sizeof c);
  c.rate = g->run_rate;
  c.max_frames = g->block;
  c.n_in = nd->m->n_inputs;
  for (int p = 0; p < c.n_in; p++) c.in_channels[p] = nd->in_ch[p];
  c.values = nd->values;
  c.strings = (const char *const *)nd->strings;
  c.host = nd->host;
  c.skip = nd->arrival;
  c.length = nd->sink_len == UNBOUNDED ? -1 : nd->sink_len;
  /* Envelopes start at their first value. */
  for (int p = 0; nd->env && p < nd->m->n_params; p++)
    if (nd->env[p].n) nd->values[p] = nd->env[p].pts[0].value;

  int out = 0;
  if (nd->m->flags & MB_MODULE_DEVICE_SOURCE) {
    if (!g->live)
      return mb_graph_fail(g, MB_ERR_STATE,
                           "%s: a device input plays only live (g:play, "
                           "moonbus live)",
                           nd->name);
    out = g->dev_in_ch;
  } else if (nd->m->flags & MB_MODULE_FILE_SOURCE) {
    out = mb_reader_channels(nd->reader);
  } else if (nd->m->has_output) {
    out = nd->m->channels ? nd->m->channels(&c, err, sizeof err)
                          : c.in_channels[0];
    if (out <= 0)
      return mb_graph_fail(g, MB_ERR_GRAPH, "%s: %s", nd->name,
                           *err ? err : "cannot work out its channel count");
    if (out > MB_MAX_CHANNELS)
      return mb_graph_fail(g, MB_ERR_GRAPH, "%s: %d channels (at most %d)",
                           nd->name, out, MB_MAX_CHANNELS);
  }
  nd->out_ch = out;
  c.out_channels = out;
  if (g->donor && take_instance(g, nd)) return MB_OK;
  nd->state = calloc(1, nd->m->state_size ? nd->m->state_size : 1);
  if (!nd->state) return MB_ERR_NOMEM;
  if (nd->m->create) {
    mb_status st = nd->m->create(nd->state, &c, err, sizeof err);
    if (st)
      return mb_graph_fail(g, st, "%s: %s", nd->name,
                           *err ? err : "could not be created");
  }
  nd->created = 1;
  nd->latency = nd->m->latency ? nd->m->latency(nd->state) : 0;
  return MB_OK;
}

/* A file sink's window: its `from` (s) moves the first frame it writes
 * later, its `length` (s, 0: to the end) cuts it short; one render can
 * cut a long signal into pieces, sample-exactly. */
static void window(const mb_graph *g, node *nd) {
  const int pf = mb_module_param_index(nd->m, "from");
  const int pl = mb_module_param_index(nd->m, "length");
  const int64_t f = pf < 0 ? 0 : (int64_t)llround(nd->values[pf] * g->run_rate);
  const int64_t l = pl < 0 ? 0 : (int64_t)llround(nd->values[pl] * g->run_rate);
  nd->from = f > 0 ? f : 0;
  if (nd->sink_len != UNBOUNDED)
    nd->sink_len = nd->sink_len > nd->from ? nd->sink_len - nd->from : 0;
  if (l > 0 && (nd->sink_len == UNBOUNDED || l < nd->sink_len))
    nd->sink_len = l;
}

/* Signal length of a source or generator at the graph's rate. */
static int64_t source_length(const node *nd) {
  if (nd->m->flags & MB_MODULE_DEVICE_SOURCE) return UNBOUNDED;
  if (nd->m->flags & MB_MODULE_FILE_SOURCE)
    return nd->origin + nd->lead + mb_reader_length(nd->reader);
  if (nd->m->length) {
    int64_t n = nd->m->length(nd->state);
    return n < 0 ? UNBOUNDED : n; /* it runs on absolute time */
  }
  return 0;
}

typedef struct pool_alloc {
  int *free_list;
  int n_free, n_total;
} pool_alloc;

static int pool_get(pool_alloc *pa) {
  if (pa->n_free) return pa->free_list[--pa->n_free];
  return pa->n_total++;
}
static void pool_put(pool_alloc *pa, int slot) {
  pa->free_list[pa->n_free++] = slot;
}

mb_status mb_graph_compile(mb_graph *g) {
  if (g->player)
    return mb_graph_fail(g, MB_ERR_STATE, "the graph is playing");
  if (g->compiled) return MB_OK;
  if (g->rendering)
    return mb_graph_fail(g, MB_ERR_STATE, "the graph is rendering");
  decompile(g);
  mb_status st;
  if (g->n == 0) return mb_graph_fail(g, MB_ERR_GRAPH, "the graph is empty");

  /* The rate: asked for, or the first file input's. */
  g->run_rate = g->rate;
  for (int i = 0; i < g->n && g->run_rate == 0; i++)
    if (g->nodes[i].reader) g->run_rate = mb_reader_rate(g->nodes[i].reader);
  if (g->run_rate == 0) g->run_rate = DEFAULT_RATE;
  const int64_t cap = g->tail_cap =
      (int64_t)llround(g->tail_cap_s * g->run_rate);
  g->asked = g->asked_s > 0 ? (int64_t)llround(g->asked_s * g->run_rate) : -1;

  for (int i = 0; i < g->n; i++) {
    node *nd = &g->nodes[i];
    const char *path = node_path(nd);
    char err[MB_ERRLEN];
    if (nd->reader && !nd->io &&
        mb_reader_start(nd->reader, g->run_rate, g->block, err, sizeof err))
      return mb_graph_fail(g, MB_ERR_IO, "%s: %s", nd->name, err);
    /* a file source's `start`: where on the graph's time line it begins */
    const int ps = nd->m->flags & MB_MODULE_FILE_SOURCE
                       ? mb_module_param_index(nd->m, "start")
                       : -1;
    nd->lead = ps < 0 ? 0 : (int64_t)llround(nd->values[ps] * g->run_rate);
    if ((nd->m->flags & (MB_MODULE_FILE_SOURCE | MB_MODULE_FILE_SINK)) &&
        !path)
      return mb_graph_fail(g, MB_ERR_ARG, "%s: no path given", nd->name);
    for (int p = 0; p < nd->m->n_inputs; p++) {
      if (nd->m->inputs[p].flags & MB_PORT_OPTIONAL) continue;
      int any = 0;
      for (int k = 0; k < g->nc && !any; k++)
        any = g->conns[k].to == i && g->conns[k].port == p;
      if (!any)
        return mb_graph_fail(g, MB_ERR_GRAPH,
                             "%s: nothing is connected to its input '%s'",
                             nd->name, nd->m->inputs[p].name);
    }
  }
  if ((st = topo_sort(g))) return st;

  for (int i = 0; i < g->n; i++) {
    node *nd = &g->nodes[i];
    nd->consumers = 0;
    nd->arrival = 0;
    nd->sig = 0;
    nd->tail = 0;
    memset(nd->in_ch, 0, sizeof nd->in_ch);
  }
  for (int k = 0; k < g->nc; k++) g->nodes[g->conns[k].from].consumers++;

  /* In order: channels and latency from the inputs, then the instance. */
  for (int oi = 0; oi < g->n; oi++) {
    int i = g->order[oi];
    node *nd = &g->nodes[i];
    int64_t sig = 0, tail = 0;
    for (int k = 0; k < g->nc; k++) {
      const conn *c = &g->conns[k];
      if (c->to != i) continue;
      const node *src = &g->nodes[c->from];
      if (src->out_ch > nd->in_ch[c->port]) nd->in_ch[c->port] = src->out_ch;
      int64_t lat = src->arrival + src->latency;
      if (lat > nd->arrival) nd->arrival = lat;
      if (src->sig > sig) sig = src->sig;
      if (src->tail > tail) tail = src->tail;
    }
    /* what analysers and sinks take after the latency padding */
    nd->sink_len =
        g->asked >= 0 ? g->asked : mb__sat_add(sig, tail > cap ? cap : tail);
    if (nd->m->flags & MB_MODULE_FILE_SINK) window(g, nd);
    if ((st = create_node(g, nd))) return st;
    if (nd->m->flags & (MB_MODULE_FILE_SOURCE | MB_MODULE_GENERATOR |
                        MB_MODULE_DEVICE_SOURCE)) {
      int64_t len = source_length(nd);
      if (len > sig) sig = len;
    }
    int64_t own_tail = nd->m->tail ? nd->m->tail(nd->state) : 0;
    nd->sig = sig;
    nd->tail = mb__sat_add(tail, own_tail < 0 ? UNBOUNDED : own_tail);
  }
  /* Connection delays: each input arrives as late as the latest one. */
  for (int k = 0; k < g->nc; k++) {
    conn *c = &g->conns[k];
    const node *src = &g->nodes[c->from], *dst = &g->nodes[c->to];
    int64_t d = dst->arrival - (src->arrival + src->latency);
    if (d > 1 << 26)
      return mb_graph_fail(g, MB_ERR_GRAPH,
                           "latency between %s and %s is too large (%lld "
                           "frames)",
                           src->name, dst->name, (long long)d);
    c->delay = (int)d;
    c->channels = src->out_ch;
    if (d > 0) {
      c->hist = calloc((size_t)src->out_ch * (c->delay + g->block),
                       sizeof(float));
      if (!c->hist) return MB_ERR_NOMEM;
    }
  }
  /* Buffers: simulate the schedule to reuse channel buffers. */
  int max_slots = 0;
  for (int i = 0; i < g->n; i++) {
    max_slots += g->nodes[i].out_ch;
    for (int p = 0; p < g->nodes[i].m->n_inputs; p++)
      max_slots += g->nodes[i].in_ch[p];
  }
  pool_alloc pa = {.free_list = malloc((max_slots + 1) * sizeof(int))};
  /* slot numbers first, pointers once the pool's size is known */
  int *out_slot = malloc((size_t)(g->n * MB_MAX_CHANNELS + 1) * sizeof(int));
  int *in_slot =
      malloc((size_t)(g->n * MB_MAX_PORTS * MB_MAX_CHANNELS + 1) * sizeof(int));
  int *left = calloc(g->n, sizeof(int));
  if (!pa.free_list || !out_slot || !in_slot || !left) {
    free(pa.free_list), free(out_slot), free(in_slot), free(left);
    return MB_ERR_NOMEM;
  }
  for (int i = 0; i < g->n; i++) left[i] = g->nodes[i].consumers;
  for (int oi = 0; oi < g->n; oi++) {
    int i = g->order[oi];
    node *nd = &g->nodes[i];
    for (int p = 0; p < nd->m->n_inputs; p++) {
      int nconn = 0, alias = -1;
      for (int k = 0; k < g->nc; k++) {
        const conn *c = &g->conns[k];
        if (c->to != i || c->port != p) continue;
        nconn++;
        if (!c->delay && g->nodes[c->from].out_ch == nd->in_ch[p])
          alias = c->from;
      }
      nd->in_own[p] = !(nconn == 1 && alias >= 0);
      for (int ch = 0; ch < nd->in_ch[p]; ch++)
        in_slot[(i * MB_MAX_PORTS + p) * MB_MAX_CHANNELS + ch] =
            nd->in_own[p] ? pool_get(&pa)
                          : out_slot[alias * MB_MAX_CHANNELS + ch];
    }
    for (int ch = 0; ch < nd->out_ch; ch++)
      out_slot[i * MB_MAX_CHANNELS + ch] = pool_get(&pa);
    /* After this node runs: its own port buffers, and the outputs whose
     * last reader it was, go back to the pool. */
    for (int p = 0; p < nd->m->n_inputs; p++)
      if (nd->in_own[p])
        for (int ch = 0; ch < nd->in_ch[p]; ch++)
          pool_put(&pa, in_slot[(i * MB_MAX_PORTS + p) * MB_MAX_CHANNELS + ch]);
    for (int k = 0; k < g->nc; k++) {
      const conn *c = &g->conns[k];
      if (c->to != i || --left[c->from] > 0) continue;
      for (int ch = 0; ch < g->nodes[c->from].out_ch; ch++)
        pool_put(&pa, out_slot[c->from * MB_MAX_CHANNELS + ch]);
    }
    if (nd->consumers == 0)
      for (int ch = 0; ch < nd->out_ch; ch++)
        pool_put(&pa, out_slot[i * MB_MAX_CHANNELS + ch]);
  }
  /* 64-byte aligned channel buffers */
  size_t stride = ((size_t)g->block + 15) & ~(size_t)15;
  /* PIPE_SETS sets: the render pipeline has up to that many blocks in
   * flight, each in its own set (see run_blocks). */
  g->set = (ptrdiff_t)((pa.n_total + 1) * stride);
  g->pool = aligned_alloc(64, PIPE_SETS * (size_t)g->set * sizeof(float));
  if (g->pool)
    memset(g->pool, 0, PIPE_SETS * (size_t)g->set * sizeof(float));
  for (int i = 0; g->pool && i < g->n; i++) {
    node *nd = &g->nodes[i];
    for (int ch = 0; ch < nd->out_ch; ch++)
      nd->out[ch] = g->pool + out_slot[i * MB_MAX_CHANNELS + ch] * stride;
    for (int p = 0; p < nd->m->n_inputs; p++)
      for (int ch = 0; ch < nd->in_ch[p]; ch++)
        nd->in[p][ch] =
            g->pool +
            in_slot[(i * MB_MAX_PORTS + p) * MB_MAX_CHANNELS + ch] * stride;
  }
  free(pa.free_list), free(out_slot), free(in_slot), free(left);
  if (!g->pool) return MB_ERR_NOMEM;
  g->compiled = 1;
  return MB_OK;
}

mb_status mb_graph_latency(mb_graph *g, int *frames) {
  if (g->player) g = g->last_plan; /* what plays now */
  mb_status st = mb_graph_compile(g);
  if (st) return st;
  int64_t lat = 0;
  for (int i = 0; i < g->n; i++) {
    const node *nd = &g->nodes[i];
    if (nd->consumers) continue;
    int64_t l = nd->arrival + (nd->m->has_output ? nd->latency : 0);
    if (l > lat) lat = l;
  }
  *frames = (int)lat;
  return MB_OK;
}

/* ---- rendering --------------------------------------------------------- */

/* Sum every connection into input port p of node i, for frames [0, n). */
static void gather(mb_graph *g, int i, int p, int n, ptrdiff_t sh) {
  node *nd = &g->nodes[i];
  if (!nd->in_own[p]) return;
  const int pch = nd->in_ch[p];
  for (int ch = 0; ch < pch; ch++)
    memset(nd->in[p][ch] + sh, 0, n * sizeof(float));
  for (int k = 0; k < g->nc; k++) {
    conn *c = &g->conns[k];
    if (c->to != i || c->port != p) continue;
    const node *src = &g->nodes[c->from];
    const float *chans[MB_MAX_CHANNELS];
    for (int ch = 0; ch < c->channels; ch++) chans[ch] = src->out[ch] + sh;
    if (c->delay) {
      /* history holds `delay` old frames then this block's frames */
      const size_t len = (size_t)c->delay + g->block;
      for (int ch = 0; ch < c->channels; ch++) {
        float *h = c->hist + ch * len;
        memcpy(h + c->delay, src->out[ch] + sh, n * sizeof(float));
        chans[ch] = h;
      }
    }
    /* A mono source feeds every channel of a wider port; otherwise
     * channel k feeds channel k. */
    for (int ch = 0; ch < pch; ch++) {
      int sc = c->channels == 1 ? 0 : ch;
      if (sc >= c->channels) continue;
      float *dst = nd->in[p][ch] + sh;
      const float *s = chans[sc];
      for (int f = 0; f < n; f++) dst[f] += s[f];
    }
    if (c->delay) {
      const size_t len = (size_t)c->delay + g->block;
      for (int ch = 0; ch < c->channels; ch++) {
        float *h = c->hist + ch * len;
        memmove(h, h + n, c->delay * sizeof(float));
      }
    }
  }
}

/* Run a module over frames [off, off+n) of the current block. */
static void run_module(node *nd, int64_t pos, int off, int n, ptrdiff_t sh) {
  mb_block b;
  memset(&b, 0, sizeof b);
  const float *inp[MB_MAX_PORTS][MB_MAX_CHANNELS];
  float *outp[MB_MAX_CHANNELS];
  b.frames = n;
  b.pos = pos + off;
  for (int p = 0; p < nd->m->n_inputs; p++) {
    b.in_channels[p] = nd->in_ch[p];
    if (!nd->in_ch[p]) continue;
    for (int ch = 0; ch < nd->in_ch[p]; ch++)
      inp[p][ch] = nd->in[p][ch] + sh + off;
    b.in[p] = inp[p];
  }
  for (int ch = 0; ch < nd->out_ch; ch++) outp[ch] = nd->out[ch] + sh + off;
  b.out = outp;
  b.out_channels = nd->out_ch;
  nd->m->process(nd->state, &b);
}

/* Process a node, splitting the block at automation grid points where an
 * envelope moves. */
static void run_node_automated(mb_graph *g, node *nd, int64_t pos, int n,
                               ptrdiff_t sh) {
  const double rate = g->run_rate;
  int done = 0;
  int64_t first = (pos + MB_CONTROL_GRID - 1) / MB_CONTROL_GRID *
                  MB_CONTROL_GRID;
  for (int64_t gp = first; gp < pos + n; gp += MB_CONTROL_GRID) {
    int changed = 0;
    for (int p = 0; p < nd->m->n_params; p++) {
      envelope *e = &nd->env[p];
      if (!e->n) continue;
      double v = env_eval(e, (double)(gp + MB_CONTROL_GRID) / rate);
      if (v == e->sent) continue;
      if (!changed && gp > pos + done) {
        run_module(nd, pos, done, (int)(gp - pos - done), sh);
        done = (int)(gp - pos);
      }
      changed = 1;
      e->sent = v;
      nd->values[p] = v;
      nd->m->set_param(nd->state, p, v, MB_CONTROL_GRID);
    }
  }
  if (done < n) run_module(nd, pos, done, n - done, sh);
}

static mb_status open_writers(mb_graph *g) {
  char err[MB_ERRLEN];
  for (int i = 0; i < g->n; i++) {
    node *nd = &g->nodes[i];
    if (!(nd->m->flags & MB_MODULE_FILE_SINK)) continue;
    const char *path = node_path(nd);
    int bits = (int)nd->values[mb_module_param_index(nd->m, "bits")];
    double rate = nd->values[mb_module_param_index(nd->m, "rate")];
    if (nd->in_ch[0] <= 0)
      return mb_graph_fail(g, MB_ERR_GRAPH, "%s: no channels reach it",
                           nd->name);
    nd->writer = mb_writer_open(path, nd->in_ch[0], g->run_rate, rate, bits,
                                nd->sink_len == UNBOUNDED ? -1 : nd->sink_len,
                                err, sizeof err);
    if (!nd->writer) return mb_graph_fail(g, MB_ERR_IO, "%s: %s", nd->name, err);
  }
  return MB_OK;
}

static void abort_writers(mb_graph *g) {
  for (int i = 0; i < g->n; i++) {
    mb_writer_abort(g->nodes[i].writer);
    g->nodes[i].writer = NULL;
  }
}

double mb__now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}
#define now mb__now

/* The silence a file source plays before its `start`: zeroes the frames
 * of [pos, pos+n) before origin + lead and returns how many. */
static int lead_in(const node *nd, int64_t pos, float *const *out, int n) {
  const int64_t begin = nd->origin + nd->lead;
  if (pos >= begin) return 0;
  const int k = begin - pos < n ? (int)(begin - pos) : n;
  for (int ch = 0; ch < nd->out_ch; ch++) memset(out[ch], 0, (size_t)k * sizeof(float));
  return k;
}

/* One stretch of frames [pos, pos+n) through the schedule's entries
 * [o0, o1), in the buffer set `sh` floats from the first. With `cost`,
 * each entry's time is added to cost[oi] (seconds). */
mb_status mb__render_range(mb_graph *g, int o0, int o1, int64_t pos, int n,
                           ptrdiff_t sh, double *cost) {
  char err[MB_ERRLEN];
  double t = cost ? now() : 0;
  const unsigned io_flags = MB_MODULE_FILE_SOURCE | MB_MODULE_FILE_SINK |
                            MB_MODULE_DEVICE_SOURCE | MB_MODULE_DEVICE_SINK;
  for (int oi = o0; oi < o1; oi++) {
    node *nd = &g->nodes[g->order[oi]];
    for (int p = 0; p < nd->m->n_inputs; p++)
      gather(g, g->order[oi], p, n, sh);
    if (g->live && (nd->m->flags & (io_flags | MB_MODULE_ANALYSER))) {
      /* live: rings and device buffers instead of files; analysers pass
       * their input on and measure it on the control thread */
      float *out[MB_MAX_CHANNELS];
      const float *in[MB_MAX_CHANNELS];
      for (int ch = 0; ch < nd->out_ch; ch++) out[ch] = nd->out[ch] + sh;
      for (int ch = 0; ch < nd->in_ch[0] && nd->m->n_inputs; ch++)
        in[ch] = nd->in[0][ch] + sh;
      const unsigned f = nd->m->flags;
      if (f & MB_MODULE_FILE_SOURCE) {
        const int k = lead_in(nd, pos, out, n);
        if (k < n) {
          for (int ch = 0; ch < nd->out_ch; ch++) out[ch] += k;
          mb__live_source(g, nd, out, n - k);
        }
      }
      else if (f & MB_MODULE_DEVICE_SOURCE) mb__live_device_in(g, nd, out, n);
      else if (f & MB_MODULE_DEVICE_SINK) mb__live_device_out(g, nd, in, n);
      else if (f & MB_MODULE_FILE_SINK) {
        if (nd->monitor) mb__live_device_out(g, nd, in, n); /* heard too */
        int64_t a = pos, b = pos + n;
        int64_t lo = nd->arrival + nd->from, hi = mb__sat_add(lo, nd->sink_len);
        if (a < lo) a = lo;
        if (b > hi) b = hi;
        for (int ch = 0; ch < nd->in_ch[0]; ch++) in[ch] += a - pos;
        if (a < b) mb__live_sink(g, nd, a, in, (int)(b - a));
      } else mb__live_tap(g, nd, n, sh);
    } else if (nd->m->flags & MB_MODULE_DEVICE_SINK) {
      /* offline, a device output takes its signal and plays nothing */
    } else if (nd->m->flags & MB_MODULE_FILE_SOURCE) {
      float *out[MB_MAX_CHANNELS];
      for (int ch = 0; ch < nd->out_ch; ch++) out[ch] = nd->out[ch] + sh;
      const int k = lead_in(nd, pos, out, n);
      for (int ch = 0; ch < nd->out_ch; ch++) out[ch] += k;
      if (k < n && mb_reader_read(nd->reader, out, n - k, err, sizeof err))
        return mb_graph_fail(g, MB_ERR_IO, "%s: %s", nd->name, err);
    } else if (nd->m->flags & MB_MODULE_FILE_SINK) {
      /* Drop the latency padding, stop at the signal's end. */
      int64_t a = pos, b = pos + n;
      int64_t lo = nd->arrival + nd->from, hi = mb__sat_add(lo, nd->sink_len);
      if (a < lo) a = lo;
      if (b > hi) b = hi;
      if (a < b) {
        const float *chans[MB_MAX_CHANNELS];
        for (int ch = 0; ch < nd->in_ch[0]; ch++)
          chans[ch] = nd->in[0][ch] + sh + (a - pos);
        if (mb_writer_write(nd->writer, chans, (int)(b - a), err, sizeof err))
          return mb_graph_fail(g, MB_ERR_IO, "%s: %s", nd->name, err);
      }
    } else if (nd->m->process) {
      if (nd->n_auto) run_node_automated(g, nd, pos, n, sh);
      else run_module(nd, pos, 0, n, sh);
    } else {
      for (int ch = 0; ch < nd->out_ch; ch++)
        memset(nd->out[ch] + sh, 0, n * sizeof(float));
    }
    if (cost) {
      double t1 = now();
      cost[oi] += t1 - t;
      t = t1;
    }
  }
  return MB_OK;
}

/* ---- the render loop and its pipeline -----------------------------------
 *
 * On a machine with two or more cores, a long render runs as a pipeline:
 * the schedule is cut into three parts, head [0, c1), middle [c1, c2) and
 * tail [c2, n) (the tail may be empty), where the time its nodes took over
 * the first blocks balances best between two threads. The calling thread
 * runs the head on each new block and hands it to a worker, which runs the
 * middle; the calling thread then runs the tail on the blocks the worker
 * has finished. The tail is what lets a chain balance whose heaviest node
 * sits near its end: a limiter in the middle, with the meters and the file
 * writer after it in the tail. Up to PIPE_SETS blocks are in flight, each
 * in its own buffer set of the pool, so that either thread can run ahead
 * of the other for a few blocks: a block that takes longer (a file read,
 * a preemption) does not stop the other thread at once. Each part touches
 * only its own nodes (instances, envelopes, the delay histories of their
 * input connections, readers, writers), so the threads share nothing
 * while they run but the blocks they hand over, in order, through two
 * counting semaphores. The samples are the same as a one-thread render's:
 * every node sees the same inputs in the same order. Control callbacks run
 * with the pipeline drained (every part at the same frame), so they land
 * exactly as before. `lua` nodes (host-backed: their Lua state belongs to
 * the calling thread) stay in the head or the tail. */

#define CAL_SKIP 2   /* blocks not timed (cold caches, first FFTs) */
#define CAL_BLOCKS 32 /* blocks timed to find the cuts (fewer were noisy) */

typedef struct stage_worker {
  mb_graph *g;
  pthread_t thread;
  sem_t go, done; /* blocks handed to the worker, blocks it has finished */
  int c1, c2;     /* the worker runs schedule entries [c1, c2) */
  /* block k in flight: frames [pos, pos + n) in buffer set k % PIPE_SETS,
   * and how its middle went */
  struct { int64_t pos; int n; mb_status st; } blk[PIPE_SETS];
  volatile int quit;
} stage_worker;

void mb__enable_ftz(void) {
#ifdef HAVE_MXCSR
  _mm_setcsr(_mm_getcsr() | 0x8040); /* FTZ | DAZ */
#endif
}

/* A hand-off usually arrives within microseconds: spin briefly before
 * sleeping, so a block does not pay a futex wake-up on each side. */
static void wait_sem(sem_t *s) {
  for (int i = 0; i < 500; i++) {
    if (sem_trywait(s) == 0) return;
#ifdef HAVE_MXCSR
    _mm_pause();
#endif
  }
  while (sem_wait(s) != 0 && errno == EINTR) {
  }
}

static void *stage_main(void *arg) {
  stage_worker *w = arg;
  mb__enable_ftz();
  for (int k = 0;; k = (k + 1) % PIPE_SETS) {
    wait_sem(&w->go);
    if (w->quit) break;
    w->blk[k].st = mb__render_range(w->g, w->c1, w->c2, w->blk[k].pos,
                                    w->blk[k].n, k * w->g->set, NULL);
    sem_post(&w->done);
  }
  return NULL;
}

/* File I/O on worker threads (background 1), so that a one-thread render
 * only computes; or on the threads that run the file nodes (0): when the
 * two stages of a pipeline already fill a small machine's cores, I/O
 * workers would only take turns with them, and every stall of one stage
 * stops the other. Switching keeps the order of the samples. */
static mb_status set_io(mb_graph *g, int background) {
  char err[MB_ERRLEN];
  for (int i = 0; i < g->n; i++) {
    node *nd = &g->nodes[i];
    mb_status st = MB_OK;
    if (nd->writer) {
      if (background)
        mb_writer_background(nd->writer);
      else
        st = mb_writer_foreground(nd->writer, err, sizeof err);
    }
    if (!st && nd->reader) {
      if (background)
        st = mb_reader_prefetch(nd->reader, err, sizeof err);
      else
        mb_reader_foreground(nd->reader);
    }
    if (st) return mb_graph_fail(g, st, "%s: %s", nd->name, err);
  }
  return MB_OK;
}

int mb_cpus(void) {
  cpu_set_t set;
  long n = 0;
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
  if (n < 1) n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

/* MOONBUS_PIPELINE: "off" renders on one thread, "always" keeps the
 * pipeline whatever it measures, "cuts:C1,C2" keeps it with those cuts
 * when they are valid (tests use these to compare the samples); unset or
 * anything else: decide by measuring. */
static int pipeline_mode(int *c1, int *c2) {
  const char *t = getenv("MOONBUS_PIPELINE");
  *c1 = *c2 = 0;
  if (t && !strcmp(t, "off")) return 0;
  if (t && !strcmp(t, "always")) return 2;
  if (t && sscanf(t, "cuts:%d,%d", c1, c2) == 2) return 2;
  return mb_cpus() >= 2 ? 1 : 0;
}

/* The cuts that best balance the measured costs: the calling thread's
 * head and tail against the worker's middle. Returns 0 when a pipeline
 * would not pay (less than a fifth saved; `always`: any cut). The middle
 * holds no `lua` node. */
static int best_cuts(const mb_graph *g, const double *cost, int always,
                     int *c1, int *c2) {
  double total = 0, best = 0;
  int found = 0;
  for (int oi = 0; oi < g->n; oi++) total += cost[oi];
  for (int a = 1; a < g->n; a++) {
    double mid = 0;
    for (int b = a + 1; b <= g->n; b++) {
      if (g->nodes[g->order[b - 1]].host) break; /* a lua node */
      mid += cost[b - 1];
      const double m = mid > total - mid ? mid : total - mid;
      if (!found || m < best) best = m, *c1 = a, *c2 = b, found = 1;
    }
  }
  return found && (always || best < 0.8 * total);
}

static mb_status start_worker(stage_worker *w, mb_graph *g, int c1, int c2) {
  memset(w, 0, sizeof *w);
  w->g = g;
  w->c1 = c1;
  w->c2 = c2;
  if (sem_init(&w->go, 0, 0)) return MB_ERR_NOMEM;
  if (sem_init(&w->done, 0, 0)) {
    sem_destroy(&w->go);
    return MB_ERR_NOMEM;
  }
  /* Signals (SIGINT) stay with the calling thread. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int rc = pthread_create(&w->thread, NULL, stage_main, w);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc) {
    sem_destroy(&w->go);
    sem_destroy(&w->done);
    return MB_ERR_NOMEM;
  }
  return MB_OK;
}

static void stop_worker(stage_worker *w) {
  w->quit = 1;
  sem_post(&w->go);
  pthread_join(w->thread, NULL);
  sem_destroy(&w->go);
  sem_destroy(&w->done);
}

/* Render frames [0, total): blocks split at control points. The first
 * blocks run on one thread and are timed per node to find the cut; then
 * the loop alternates between the two ways of running, keeping the one
 * that renders faster on this machine under its present load (a pipeline
 * only pays when a second core is free). It starts with a short probe of
 * each way, then runs the faster for a long window and probes the other
 * again; each probe that confirms the pipeline doubles its next long
 * window (up to PROBE_MAX blocks), so a steady machine pays little for
 * probing and a change of load is still noticed within a few seconds of
 * audio.
 * A window's speed is timed from its WARM_STEPS-th step: the first steps
 * after a switch drain the pipeline and restart the I/O workers. */
#define PROBE_SHORT 32
#define PROBE_LONG 256
#define PROBE_MAX 2048
#define WARM_STEPS 4

static mb_status run_blocks(mb_graph *g, const mb_render_opts *opts,
                            int64_t total) {
#ifdef HAVE_MXCSR
  const unsigned csr = _mm_getcsr();
#endif
  mb__enable_ftz();
  mb_status st = MB_OK;
  int64_t next_ctl = opts->next_control ? opts->next_control(opts->ud, 0)
                                        : INT64_MAX;
  int force1, force2;
  const int mode = pipeline_mode(&force1, &force2), always = mode == 2;
  double *cost = NULL;
  if (mode && g->n >= 2 && (always || total >= (int64_t)g->block * 64))
    cost = calloc((size_t)g->n, sizeof *cost);
  /* With fewer than 4 cores a pipeline runs the file I/O in its stages
   * (and is timed that way); one thread leaves it to the I/O workers,
   * unless there is one core: worker threads would only take turns. */
  const int cpus = mb_cpus();
  const int stage_io = (cost && cpus < 4) || cpus == 1;
  int io_bg = -1; /* I/O on workers (1), on the stages (0), not set (-1) */
  int calibrating = cost != NULL;
  stage_worker w;
  int started = 0, piped = 0;
  /* the current window: its length in blocks, what it has done, and the
   * measured seconds per frame of each way (0 = not measured yet) */
  int win_len = always ? 1 : CAL_SKIP + CAL_BLOCKS, steps = 0, probing = 0;
  int long_len = PROBE_LONG;
  int64_t done = 0, warm_done = 0; /* frames finished (tail run) */
  double warm_t0 = now(), spf[2] = {0, 0};
  int64_t pos = 0; /* next frame for the head */
  /* blocks the pipeline started (head run) and finished (tail run); its
   * block k uses buffer set k % PIPE_SETS, as the worker counts them */
  int64_t issued = 0, finished = 0;
  int c1 = 0, c2 = 0;
  for (;;) {
    if (opts->interrupt && *opts->interrupt) {
      st = mb_graph_fail(g, MB_ERR_INTERRUPTED, "interrupted");
      break;
    }
    const int busy = issued > finished; /* the pipeline is not drained */
    if (pos < total && next_ctl <= pos && !busy) {
      g->pos = pos;
      if ((st = opts->control(opts->ud, pos))) break;
      next_ctl = opts->next_control(opts->ud, pos + 1);
      continue;
    }
    int n = 0;
    if (pos < total && next_ctl > pos && (piped || !busy) &&
        issued - finished < PIPE_SETS) {
      int64_t m = g->block;
      if (m > total - pos) m = total - pos;
      if (m > next_ctl - pos) m = next_ctl - pos;
      n = (int)m;
    }
    if (!n && !busy) break;
    /* the I/O mode follows the way of running, switched with no block in
     * flight; the calibration blocks run as a pipeline would */
    const int want_bg = !stage_io || (!piped && !calibrating && cpus > 1);
    if (want_bg != io_bg && !busy) {
      if ((st = set_io(g, want_bg))) break;
      io_bg = want_bg;
    }
    const int k = (int)(issued % PIPE_SETS);
    g->pos = pos;
    if (!piped && !busy) {
      int time_it = cost && (always || steps >= CAL_SKIP);
      if ((st = mb__render_range(g, 0, g->n, pos, n, k * g->set,
                                 time_it ? cost : NULL)))
        break;
      done += n;
      if (opts->progress) opts->progress(opts->ud, pos + n, total);
    } else if (n && !(busy && sem_trywait(&w.done) == 0)) {
      /* a new block: its head here, its middle on the worker */
      if ((st = mb__render_range(g, 0, c1, pos, n, k * g->set, NULL))) break;
      w.blk[k].pos = pos, w.blk[k].n = n;
      issued++;
      sem_post(&w.go);
    } else {
      /* the oldest block's tail, once the worker has finished its middle
       * (already taken if the sem_trywait above succeeded) */
      if (!n) wait_sem(&w.done);
      const int f = (int)(finished % PIPE_SETS);
      finished++;
      if ((st = w.blk[f].st)) break;
      if (c2 < g->n &&
          (st = mb__render_range(g, c2, g->n, w.blk[f].pos, w.blk[f].n,
                                 f * g->set, NULL)))
        break;
      done += w.blk[f].n;
      if (opts->progress)
        opts->progress(opts->ud, w.blk[f].pos + w.blk[f].n, total);
      continue; /* no new block */
    }
    pos += n;
    if (++steps == WARM_STEPS && win_len > 2 * WARM_STEPS)
      warm_t0 = now(), warm_done = done;
    if (steps < win_len) continue;
    /* The window is over: how fast was it (frames finished, not started:
     * a pipeline holds up to PIPE_SETS blocks), and which way next? */
    double t = now();
    spf[piped] =
        (t - warm_t0) / (double)(done > warm_done ? done - warm_done : 1);
    if (!started) {
      calibrating = 0;
      int cut = cost ? best_cuts(g, cost, always, &c1, &c2) : 0;
      if (cut && force1 >= 1 && force1 < force2 && force2 <= g->n) {
        int lua_mid = 0;
        for (int oi = force1; oi < force2; oi++)
          lua_mid |= g->nodes[g->order[oi]].host != NULL;
        if (!lua_mid) c1 = force1, c2 = force2;
      }
      free(cost);
      cost = NULL;
      if (!cut || start_worker(&w, g, c1, c2) != MB_OK) {
        win_len = INT32_MAX; /* one thread to the end */
      } else {
        /* a probe of the pipeline, then one of a thread with the I/O
         * workers: the calibration (timed, I/O on this thread) is no
         * measure of either */
        started = 1;
        piped = 1, probing = 1, win_len = PROBE_SHORT;
        spf[0] = spf[1] = 0;
      }
    } else if (always) {
      piped = 1;
    } else if (probing && !spf[!piped]) {
      piped = !piped, win_len = PROBE_SHORT; /* the other way's probe */
    } else if (probing) {
      /* the way of the last long window (the pipeline, first) stays
       * unless the probe was clearly faster: one preempted step must not
       * flip it. Each confirmation of the pipeline makes its next long
       * window longer; one thread, chosen because the pipeline measured
       * slow (a busy core, or a probe that met a preemption), is never
       * kept for longer: probing the pipeline from there costs little */
      if (spf[piped] < 0.9 * spf[!piped]) {
        long_len = PROBE_LONG;
      } else {
        piped = !piped;
        long_len = !piped ? PROBE_LONG
                   : long_len * 2 > PROBE_MAX ? PROBE_MAX : long_len * 2;
      }
      probing = 0, win_len = long_len;
    } else {
      piped = !piped;
      probing = 1, win_len = PROBE_SHORT;
    }
    steps = 0, warm_done = done, warm_t0 = t;
  }
  if (started) stop_worker(&w);
  free(cost);
#ifdef HAVE_MXCSR
  _mm_setcsr(csr);
#endif
  return st;
}

/* How long: until every terminal node has taken its signal and tail. On
 * an endless source, the error names the node it reaches. */
int64_t mb__render_total(const mb_graph *g, int *lat_max) {
  int64_t total = 0;
  *lat_max = 0;
  for (int i = 0; i < g->n; i++) {
    const node *nd = &g->nodes[i];
    if (nd->consumers) continue;
    int64_t lat = nd->arrival + (nd->m->has_output ? nd->latency : 0);
    int64_t len = nd->sink_len;
    if (nd->m->has_output && g->asked < 0) /* its own tail counts too */
      len = mb__sat_add(nd->sig, nd->tail > g->tail_cap ? g->tail_cap
                                                        : nd->tail);
    if (len == UNBOUNDED) {
      mb_graph_fail((mb_graph *)g, MB_ERR_GRAPH,
                    "the render has no end: a source before %s never ends "
                    "(give tone a duration, or render{duration = seconds})",
                    nd->name);
      return UNBOUNDED;
    }
    if (mb__sat_add(lat + nd->from, len) > total) total = mb__sat_add(lat + nd->from, len);
    if (lat > *lat_max) *lat_max = (int)lat;
  }
  return total;
}

void mb__collect_ostats(mb_graph *g, node *nd) {
  (void)g;
  mb_output_stats *o = &nd->ostats;
  free((char *)o->path);
  o->path = dupstr(node_path(nd));
  o->clipped = mb_writer_clipped(nd->writer);
  o->peak = mb_writer_peak(nd->writer);
  o->frames = mb_writer_frames(nd->writer);
  nd->have_ostats = 1;
}

mb_status mb_graph_render(mb_graph *g, const mb_render_opts *opts,
                          mb_render_stats *stats) {
  static const mb_render_opts none;
  if (!opts) opts = &none;
  if (g->rendering || g->player)
    return mb_graph_fail(g, MB_ERR_STATE, "the graph is already %s",
                         g->player ? "playing" : "rendering");
  g->compiled = 0; /* fresh instances and readers every render */
  for (int i = 0; i < g->n; i++) {
    if (!(g->nodes[i].m->flags & MB_MODULE_FILE_SINK)) continue;
    mb_status st = check_sink(g, i);
    if (st) return st;
  }
  char err[MB_ERRLEN];
  g->tail_cap_s = opts->tail_cap > 0 ? opts->tail_cap : DEFAULT_TAIL_CAP;
  g->asked_s = opts->duration > 0 ? opts->duration : 0;
  mb_status st = mb_graph_compile(g);
  /* a later compile on its own (g:latency()) uses the defaults again */
  g->tail_cap_s = DEFAULT_TAIL_CAP;
  g->asked_s = 0;
  if (st) return st;

  int lat_max = 0;
  int64_t total = mb__render_total(g, &lat_max);
  if (total == UNBOUNDED) return st = MB_ERR_GRAPH;
  for (int i = 0; i < g->n; i++) {
    node *nd = &g->nodes[i];
    nd->have_ostats = 0;
    for (int p = 0; nd->env && p < nd->m->n_params; p++) {
      nd->env[p].cursor = 0;
      if (nd->env[p].n) nd->env[p].sent = nd->env[p].pts[0].value;
    }
  }
  if ((st = open_writers(g))) {
    abort_writers(g);
    return st;
  }
  const double t0 = now();
  g->rendering = 1;
  st = run_blocks(g, opts, total);
  g->rendering = 0;
  if (st) {
    abort_writers(g);
    return st;
  }
  int64_t longest = 0;
  for (int i = 0; i < g->n; i++) {
    node *nd = &g->nodes[i];
    if (!nd->writer) continue;
    if ((st = mb_writer_finish(nd->writer, err, sizeof err))) {
      st = mb_graph_fail(g, st, "%s: %s", nd->name, err);
      abort_writers(g);
      return st;
    }
    mb__collect_ostats(g, nd);
    if (nd->sink_len > longest) longest = nd->sink_len;
  }
  /* Commit all, or none that are left: a failed commit aborts the rest. */
  for (int i = 0; i < g->n; i++) {
    node *nd = &g->nodes[i];
    if (!nd->writer) continue;
    mb_status cs = st ? MB_OK : mb_writer_commit(nd->writer, err, sizeof err);
    if (st) mb_writer_abort(nd->writer);
    nd->writer = NULL;
    if (cs && !st) st = mb_graph_fail(g, cs, "%s: %s", nd->name, err);
  }
  if (st) return st;
  double wall = now() - t0;
  if (stats) {
    stats->frames = total;
    stats->seconds = (double)(longest ? longest : total - lat_max) / g->run_rate;
    stats->wall = wall;
    stats->realtime = wall > 0 ? stats->seconds / wall : 0;
    stats->latency = lat_max;
  }
  return MB_OK;
}

int mb_node_results(const mb_graph *g, int i, const char **names,
                    double *values, int max) {
  if (!valid_node(g, i)) return 0;
  if (g->player || g->last_plan) /* measured on the control thread */
    return mb__live_results(g->last_plan, i, names, values, max);
  const node *nd = &g->nodes[i];
  if (!nd->created || !nd->m->results) return 0;
  return nd->m->results(nd->state, names, values, max);
}

mb_status mb_node_output_stats(const mb_graph *g, int i, mb_output_stats *o) {
  if (!valid_node(g, i) || !g->nodes[i].have_ostats) return MB_ERR_STATE;
  *o = g->nodes[i].ostats;
  return MB_OK;
}
