/* gain.c - level change in dB with polarity, ramped linearly in dB. */
#include <string.h>

#include "dsp/ramp.h"
#include "mb_module.h"

enum { P_GAIN, P_INVERT };

typedef struct {
  mb_gramp g; /* linear gain including polarity */
  double gain_db;
  int invert;
} gain_state;

static double target(const gain_state *s) {
  double g = mb_db_to_lin(s->gain_db);
  return s->invert ? -g : g;
}

static mb_status create(void *st, const mb_config *c, char *err,
                        size_t errlen) {
  gain_state *s = st;
  (void)err, (void)errlen;
  s->gain_db = c->values[P_GAIN];
  s->invert = c->values[P_INVERT] != 0;
  mb_gramp_init(&s->g, target(s));
  return MB_OK;
}

static void set_param(void *st, int idx, double v, int ramp) {
  gain_state *s = st;
  if (idx == P_GAIN) s->gain_db = v;
  if (idx == P_INVERT) {
    s->invert = v != 0;
    ramp = 0; /* a polarity flip cannot be ramped geometrically */
  }
  mb_gramp_to(&s->g, target(s), ramp);
}

static void process(void *st, const mb_block *b) {
  gain_state *s = st;
  const int nch = b->out_channels, n = b->frames;
  const float *const *in = b->in[0];
  float *const *out = b->out;
  int i = 0;
  for (; i < n && s->g.left > 0; i++) {
    const double g = mb_gramp_next(&s->g);
    for (int c = 0; c < nch; c++) out[c][i] = (float)(in[c][i] * g);
  }
  if (i == n) return;
  const float g = (float)s->g.value; /* steady: exact at 0 dB */
  for (int c = 0; c < nch; c++)
    for (int j = i; j < n; j++) out[c][j] = in[c][j] * g;
}

static void reset(void *st) {
  gain_state *s = st;
  mb_gramp_init(&s->g, target(s));
}

static const mb_port_desc inputs[] = {{.name = "in"}};

static const mb_param_desc params[] = {
    [P_GAIN] = {.id = "gain", .unit = "dB", .type = MB_PARAM_NUMBER,
                .min = -120, .max = 48, .def = 0, .flags = MB_PARAM_SMOOTH,
                .help = "level change"},
    [P_INVERT] = {.id = "invert", .unit = "", .type = MB_PARAM_BOOL,
                  .def = 0, .help = "invert polarity"},
};

const mb_module_desc mb_mod_gain = {
    .id = "gain",
    .summary = "change level in dB, invert polarity",
    .doc = "Multiplies every channel by the gain. Changes and automation "
           "ramp linearly in dB, so a fade sounds even. At 0 dB the signal "
           "passes bit-exact.",
    .inputs = inputs,
    .n_inputs = 1,
    .has_output = 1,
    .params = params,
    .n_params = 2,
    .state_size = sizeof(gain_state),
    .create = create,
    .set_param = set_param,
    .process = process,
    .reset = reset,
};
