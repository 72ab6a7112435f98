/* channels.c - pick a run of channels out of a wider signal. */
#include <stdio.h>
#include <string.h>

#include "mb_module.h"

enum { P_FIRST, P_COUNT };

typedef struct {
  int first; /* 0-based */
} channels_state;

static int channels(const mb_config *c, char *err, size_t errlen) {
  const int first = (int)c->values[P_FIRST], count = (int)c->values[P_COUNT];
  const int n = c->in_channels[0];
  if (first + count - 1 > n) {
    snprintf(err, errlen,
             "first %d + count %d exceeds the input's %d channel%s",
             first, count, n, n == 1 ? "" : "s");
    return -1;
  }
  return count;
}

static mb_status create(void *st, const mb_config *c, char *err,
                        size_t errlen) {
  channels_state *s = st;
  (void)err, (void)errlen;
  s->first = (int)c->values[P_FIRST] - 1;
  return MB_OK;
}

static void process(void *st, const mb_block *b) {
  const channels_state *s = st;
  const size_t bytes = sizeof(float) * (size_t)b->frames;
  for (int c = 0; c < b->out_channels; c++) {
    const float *x = b->in[0][s->first + c];
    if (b->out[c] != x) memmove(b->out[c], x, bytes);
  }
}

static const mb_port_desc inputs[] = {{.name = "in"}};

static const mb_param_desc params[] = {
    [P_FIRST] = {.id = "first", .unit = "", .type = MB_PARAM_INT, .min = 1,
                 .max = MB_MAX_CHANNELS, .def = 1,
                 .flags = MB_PARAM_STRUCTURAL,
                 .help = "first channel taken (1-based)"},
    [P_COUNT] = {.id = "count", .unit = "", .type = MB_PARAM_INT, .min = 1,
                 .max = MB_MAX_CHANNELS, .def = 1,
                 .flags = MB_PARAM_STRUCTURAL,
                 .help = "number of channels taken"},
};

const mb_module_desc mb_mod_channels = {
    .id = "channels",
    .summary = "take some channels of a signal",
    .doc = "Outputs `count` channels of its input starting at channel "
           "`first` (1-based), unchanged. With ms_encode, `channels` and "
           "`merge`, mid and side can go through separate chains: "
           "channels{first = 1} takes M, channels{first = 2} takes S, "
           "merge puts them back in order for ms_decode. A range past the "
           "input's last channel is an error.",
    .inputs = inputs,
    .n_inputs = 1,
    .has_output = 1,
    .params = params,
    .n_params = 2,
    .state_size = sizeof(channels_state),
    .channels = channels,
    .create = create,
    .process = process,
};
