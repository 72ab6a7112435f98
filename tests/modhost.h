/* modhost.h - run one module descriptor directly, without a graph, for C
 * unit tests of modules. Header-only; tests include it once. */
#ifndef MB_TEST_MODHOST_H
#define MB_TEST_MODHOST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mb_module.h"

typedef struct modhost {
  const mb_module_desc *m;
  void *state;
  mb_config cfg;
  double values[512];
  const char *strings[512];
  char err[MB_ERRLEN];
} modhost;

static int mh_fails = 0;
#define MH_CHECK(cond, ...)                                                  \
  do {                                                                       \
    if (!(cond)) {                                                           \
      fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                          \
      fputc('\n', stderr);                                                   \
      mh_fails++;                                                            \
    }                                                                        \
  } while (0)

/* Defaults for every parameter; then set what the test needs with mh_set
 * before mh_create. */
static inline void mh_init(modhost *h, const char *id, double rate,
                           int max_frames) {
  memset(h, 0, sizeof *h);
  h->m = mb_module_find(id);
  if (!h->m) {
    fprintf(stderr, "no module %s\n", id);
    exit(2);
  }
  for (int i = 0; i < h->m->n_params; i++) h->values[i] = h->m->params[i].def;
  h->cfg.rate = rate;
  h->cfg.max_frames = max_frames;
  h->cfg.n_in = h->m->n_inputs;
  h->cfg.values = h->values;
  h->cfg.strings = h->strings;
  h->cfg.length = -1;
}

static inline void mh_set(modhost *h, const char *param, double v) {
  int i = mb_module_param_index(h->m, param);
  if (i < 0) {
    fprintf(stderr, "no parameter %s.%s\n", h->m->id, param);
    exit(2);
  }
  h->values[i] = v;
}

/* in_ch: channel count per input port (0 = unconnected). */
static inline int mh_create(modhost *h, const int *in_ch) {
  for (int p = 0; p < h->m->n_inputs; p++) h->cfg.in_channels[p] = in_ch[p];
  int out = h->cfg.in_channels[0];
  if (h->m->channels) out = h->m->channels(&h->cfg, h->err, sizeof h->err);
  if (out <= 0 && h->m->has_output) return -1;
  h->cfg.out_channels = h->m->has_output ? out : 0;
  h->state = calloc(1, h->m->state_size ? h->m->state_size : 1);
  if (h->m->create &&
      h->m->create(h->state, &h->cfg, h->err, sizeof h->err) != MB_OK)
    return -1;
  return 0;
}

/* Process n frames; in/out are arrays of planar channel pointers. */
static inline void mh_process(modhost *h, const float *const *const *in,
                              float *const *out, int n, long long pos) {
  mb_block b;
  memset(&b, 0, sizeof b);
  b.frames = n;
  b.pos = pos;
  for (int p = 0; p < h->m->n_inputs; p++) {
    b.in[p] = h->cfg.in_channels[p] ? in[p] : NULL;
    b.in_channels[p] = h->cfg.in_channels[p];
  }
  b.out = out;
  b.out_channels = h->cfg.out_channels;
  h->m->process(h->state, &b);
}

static inline void mh_free(modhost *h) {
  if (h->m->destroy && h->state) h->m->destroy(h->state);
  free(h->state);
  h->state = NULL;
}

#endif
