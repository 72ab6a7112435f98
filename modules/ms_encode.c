/* ms_encode.c - left/right to mid/side. */
#include <stdio.h>

#include "mb_module.h"

static int channels(const mb_config *c, char *err, size_t errlen) {
  if (c->in_channels[0] == 2) return 2;
  snprintf(err, errlen, "ms_encode takes stereo, got %d channels",
           c->in_channels[0]);
  return -1;
}

/* Sums in double (exact for float inputs), rounded once to float: a
 * round trip through ms_decode is within about 2^-23 of the input. */
static void process(void *st, const mb_block *b) {
  (void)st;
  const int n = b->frames;
  const float *l = b->in[0][0], *r = b->in[0][1];
  float *m = b->out[0], *s = b->out[1];
  for (int i = 0; i < n; i++) {
    const double x = l[i], y = r[i];
    m[i] = (float)(0.5 * (x + y));
    s[i] = (float)(0.5 * (x - y));
  }
}

static const mb_port_desc inputs[] = {{.name = "in"}};

const mb_module_desc mb_mod_ms_encode = {
    .id = "ms_encode",
    .summary = "stereo left/right to mid/side",
    .doc = "Turns a stereo signal into mid and side on channels 1 and 2: "
           "M = (L + R) / 2, S = (L - R) / 2, so a mono signal at any level "
           "has the same level in M and silence in S. ms_decode inverts it "
           "(L = M + S, R = M - S); the round trip nulls against the input "
           "below -135 dBFS. Anything but stereo is an error.",
    .inputs = inputs,
    .n_inputs = 1,
    .has_output = 1,
    .channels = channels,
    .process = process,
};
