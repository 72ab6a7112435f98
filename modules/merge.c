/* merge.c - join the channels of up to eight inputs into one signal. */
#include <stdio.h>
#include <string.h>

#include "mb_module.h"

#define N_IN 8

static int channels(const mb_config *c, char *err, size_t errlen) {
  int n = 0;
  for (int p = 0; p < N_IN; p++) n += c->in_channels[p];
  if (n > MB_MAX_CHANNELS) {
    snprintf(err, errlen, "%d channels in all; at most %d", n,
             MB_MAX_CHANNELS);
    return -1;
  }
  if (n == 0) snprintf(err, errlen, "nothing connected");
  return n > 0 ? n : -1;
}

static void process(void *st, const mb_block *b) {
  (void)st;
  const size_t bytes = sizeof(float) * (size_t)b->frames;
  int o = 0;
  for (int p = 0; p < N_IN; p++) {
    if (!b->in[p]) continue;
    for (int c = 0; c < b->in_channels[p] && o < b->out_channels; c++, o++)
      if (b->out[o] != b->in[p][c]) memmove(b->out[o], b->in[p][c], bytes);
  }
}

static const mb_port_desc inputs[N_IN] = {
    {.name = "in"},
    {.name = "in2", .flags = MB_PORT_OPTIONAL},
    {.name = "in3", .flags = MB_PORT_OPTIONAL},
    {.name = "in4", .flags = MB_PORT_OPTIONAL},
    {.name = "in5", .flags = MB_PORT_OPTIONAL},
    {.name = "in6", .flags = MB_PORT_OPTIONAL},
    {.name = "in7", .flags = MB_PORT_OPTIONAL},
    {.name = "in8", .flags = MB_PORT_OPTIONAL},
};

const mb_module_desc mb_mod_merge = {
    .id = "merge",
    .summary = "join the channels of several inputs",
    .doc = "Outputs the channels of \"in\", then those of \"in2\" up to "
           "\"in8\" (each optional), in port order, unchanged: two mono "
           "inputs make a stereo signal. Unconnected ports are skipped. At "
           "most 32 channels in all.",
    .inputs = inputs,
    .n_inputs = N_IN,
    .has_output = 1,
    .channels = channels,
    .process = process,
};
