/* ms_decode.c - mid/side back to left/right. */
#include <stdio.h>

#include "mb_module.h"

static int channels(const mb_config *c, char *err, size_t errlen) {
  if (c->in_channels[0] == 2) return 2;
  snprintf(err, errlen, "ms_decode takes stereo (mid, side), got %d channels",
           c->in_channels[0]);
  return -1;
}

/* In double, rounded once: see ms_encode.c. */
static void process(void *st, const mb_block *b) {
  (void)st;
  const int n = b->frames;
  const float *m = b->in[0][0], *s = b->in[0][1];
  float *l = b->out[0], *r = b->out[1];
  for (int i = 0; i < n; i++) {
    const double x = m[i], y = s[i];
    l[i] = (float)(x + y);
    r[i] = (float)(x - y);
  }
}

static const mb_port_desc inputs[] = {{.name = "in"}};

const mb_module_desc mb_mod_ms_decode = {
    .id = "ms_decode",
    .summary = "mid/side to stereo left/right",
    .doc = "Turns mid and side on channels 1 and 2 back into left and "
           "right: L = M + S, R = M - S, the inverse of ms_encode "
           "(M = (L + R) / 2, S = (L - R) / 2); the round trip nulls "
           "against the original below -135 dBFS. Process M and S "
           "separately in between with `channels` and `merge`. Anything "
           "but two channels is an error.",
    .inputs = inputs,
    .n_inputs = 1,
    .has_output = 1,
    .channels = channels,
    .process = process,
};
