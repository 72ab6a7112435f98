/* convolver.c - convolution with an impulse response read from a file:
 * mono, stereo and true-stereo responses, zero-latency or block mode
 * (modules/dsp/fftconv.h, mb_partconv), dry/wet mix, pre-delay, gain. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsp/fftconv.h"
#include "dsp/ramp.h"
#include "fileio.h"
#include "mb_module.h"

enum { P_PATH, P_MIX, P_PREDELAY, P_GAIN, P_MODE, P_BLOCK, P_LENGTH, NPARAMS };
enum { MODE_ZERO, MODE_BLOCK };

/* Longest response accepted, seconds at the file's rate (memory: a 60 s
 * true-stereo response at 48 kHz keeps about 200 MB of spectra). */
#define MAX_IR_SECONDS 60.0
#define READ_CHUNK 16384

typedef struct {
  int nin, nout;
  int latency;  /* frames: 0 or `block` */
  int64_t tail; /* response length - 1 + pre-delay, frames */
  mb_partconv *conv;
  mb_ramp mix;   /* 0 dry .. 1 wet */
  mb_gramp gain; /* wet gain, linear */
} conv_state;

static inline float ftz(float v) {
  return fabsf(v) < 1.1754943508222875e-38f ? 0.0f : v;
}

/* One output sample, the same expression in the ramped and steady loops
 * (so both round alike and renders do not depend on where a ramp ends
 * relative to a block). */
static inline float mixed(float dry, float a, float wet, float w) {
  return ftz(dry * a + wet * w);
}

/* Open the response and check what does not depend on the graph: its
 * channel count and length. */
static mb_reader *open_ir(const mb_config *c, char *err, size_t errlen) {
  const char *path = c->strings ? c->strings[P_PATH] : NULL;
  if (!path || !*path) {
    snprintf(err, errlen,
             "path: no impulse response given (path = \"ir.wav\": a mono, "
             "stereo or 4-channel true-stereo sound file)");
    return NULL;
  }
  char why[MB_ERRLEN];
  mb_reader *r = mb_reader_open(path, why, sizeof why);
  if (!r) {
    snprintf(err, errlen, "impulse response: %s", why);
    return NULL;
  }
  const int ch = mb_reader_channels(r);
  if (ch != 1 && ch != 2 && ch != 4) {
    snprintf(err, errlen,
             "impulse response '%s' has %d channels; it must have 1 (mono), "
             "2 (stereo) or 4 (true stereo: L->L, L->R, R->L, R->R)",
             path, ch);
    mb_reader_close(r);
    return NULL;
  }
  const double secs = (double)mb_reader_frames(r) / mb_reader_rate(r);
  if (secs > MAX_IR_SECONDS) {
    snprintf(err, errlen,
             "impulse response '%s' is %.1f s long; at most %.0f s (use "
             "length to cut it)",
             path, secs, MAX_IR_SECONDS);
    mb_reader_close(r);
    return NULL;
  }
  return r;
}

/* Output channels: a mono response keeps the input's channels; stereo and
 * true-stereo responses make stereo from mono or stereo. */
static int out_channels(int ir_ch, int in_ch, const char *path, char *err,
                        size_t errlen) {
  if (ir_ch == 1)
    return in_ch;
  if (in_ch == 1 || in_ch == 2)
    return 2;
  snprintf(err, errlen,
           "a %s impulse response ('%s') takes a mono or stereo input, got "
           "%d channels",
           ir_ch == 2 ? "stereo" : "true-stereo", path, in_ch);
  return -1;
}

static int channels(const mb_config *c, char *err, size_t errlen) {
  mb_reader *r = open_ir(c, err, errlen);
  if (!r)
    return -1;
  const int n = out_channels(mb_reader_channels(r), c->in_channels[0],
                             c->strings[P_PATH], err, errlen);
  mb_reader_close(r);
  return n;
}

/* Read the whole response at the graph's rate into ir[ch][0..*taps-1]
 * (at most `cap` frames when cap > 0). A response resampled from another
 * rate is scaled by file rate / graph rate: the resampler keeps the
 * waveform, and a filter's gain is the sum of its taps, which grows with
 * the number of samples per second; this keeps its frequency response
 * (a 0 dB low-pass stays 0 dB). No other scaling. */
static float **read_ir(mb_reader *r, double rate, int64_t cap, int *taps,
                       char *err, size_t errlen) {
  const char *path = mb_reader_path(r);
  char why[MB_ERRLEN];
  if (mb_reader_start(r, rate, READ_CHUNK, why, sizeof why)) {
    snprintf(err, errlen, "impulse response: %s", why);
    return NULL;
  }
  int64_t n = mb_reader_length(r);
  if (cap > 0 && n > cap)
    n = cap;
  if (n < 1)
    n = 1;
  const int ch = mb_reader_channels(r);
  float **ir = calloc((size_t)ch, sizeof *ir);
  for (int k = 0; ir && k < ch; k++) {
    ir[k] = malloc(sizeof(float) * (size_t)n);
    if (!ir[k]) {
      for (int j = 0; j < k; j++)
        free(ir[j]);
      free(ir);
      ir = NULL;
    }
  }
  if (!ir) {
    snprintf(err, errlen,
             "impulse response '%s': out of memory for %lld "
             "frames",
             path, (long long)n);
    return NULL;
  }
  float *chunk[4];
  float *tmp = malloc(sizeof(float) * READ_CHUNK * (size_t)ch);
  for (int k = 0; tmp && k < ch; k++)
    chunk[k] = tmp + (size_t)k * READ_CHUNK;
  mb_status st = tmp ? MB_OK : MB_ERR_NOMEM;
  for (int64_t at = 0; !st && at < n; at += READ_CHUNK) {
    const int k = n - at < READ_CHUNK ? (int)(n - at) : READ_CHUNK;
    st = mb_reader_read(r, chunk, k, why, sizeof why);
    for (int j = 0; !st && j < ch; j++)
      memcpy(ir[j] + at, chunk[j], sizeof(float) * (size_t)k);
  }
  free(tmp);
  if (st) {
    snprintf(err, errlen, "impulse response: %s",
             st == MB_ERR_NOMEM ? "out of memory" : why);
    for (int j = 0; j < ch; j++)
      free(ir[j]);
    free(ir);
    return NULL;
  }
  const double file_rate = mb_reader_rate(r);
  if (file_rate != rate) {
    const double g = file_rate / rate;
    for (int j = 0; j < ch; j++)
      for (int64_t i = 0; i < n; i++)
        ir[j][i] = (float)(ir[j][i] * g);
  }
  *taps = (int)n;
  return ir;
}

static mb_status create(void *st, const mb_config *c, char *err,
                        size_t errlen) {
  conv_state *s = st;
  const double *v = c->values;
  mb_reader *r = open_ir(c, err, errlen);
  if (!r)
    return MB_ERR_IO;
  const int irch = mb_reader_channels(r);
  s->nin = c->in_channels[0];
  s->nout = out_channels(irch, s->nin, c->strings[P_PATH], err, errlen);
  if (s->nout <= 0) {
    mb_reader_close(r);
    return MB_ERR_GRAPH;
  }
  const int64_t cap =
      v[P_LENGTH] > 0 ? (int64_t)llround(v[P_LENGTH] * c->rate / 1000.0) : 0;
  int taps = 0;
  float **ir = read_ir(r, c->rate, cap > 0 ? cap : 0, &taps, err, errlen);
  mb_reader_close(r); /* no prefetch thread was started */
  if (!ir)
    return MB_ERR_IO;

  /* Paths: input -> output through response channel k. */
  mb_partconv_path paths[MB_MAX_CHANNELS];
  int np = 0, nirs = irch;
  if (irch == 1) {
    for (int i = 0; i < s->nin; i++)
      paths[np++] = (mb_partconv_path){i, i, 0};
  } else if (irch == 2) {
    for (int o = 0; o < 2; o++)
      paths[np++] = (mb_partconv_path){s->nin == 2 ? o : 0, o, o};
  } else if (s->nin == 2) { /* true stereo: LL, LR, RL, RR */
    paths[np++] = (mb_partconv_path){0, 0, 0};
    paths[np++] = (mb_partconv_path){0, 1, 1};
    paths[np++] = (mb_partconv_path){1, 0, 2};
    paths[np++] = (mb_partconv_path){1, 1, 3};
  } else { /* mono into true stereo: L = R = x, so out L = x (LL + RL) and
              out R = x (LR + RR); the sums in double, rounded once */
    for (int i = 0; i < taps; i++) {
      ir[0][i] = (float)((double)ir[0][i] + ir[2][i]);
      ir[1][i] = (float)((double)ir[1][i] + ir[3][i]);
    }
    nirs = 2;
    paths[np++] = (mb_partconv_path){0, 0, 0};
    paths[np++] = (mb_partconv_path){0, 1, 1};
  }
  const int delay = (int)llround(v[P_PREDELAY] * c->rate / 1000.0);
  s->latency = (int)v[P_MODE] == MODE_BLOCK ? (int)v[P_BLOCK] : 0;
  s->conv =
      mb_partconv_new(s->nin, s->nout, (const float *const *)ir, nirs, taps,
                      paths, np, delay, s->latency, c->max_frames, 0);
  for (int k = 0; k < irch; k++)
    free(ir[k]);
  free(ir);
  if (!s->conv) {
    snprintf(err, errlen,
             "impulse response '%s': out of memory for %d frames x %d "
             "channels",
             c->strings[P_PATH], taps, irch);
    return MB_ERR_NOMEM;
  }
  s->tail = (int64_t)taps - 1 + delay;
  mb_ramp_init(&s->mix, v[P_MIX]);
  mb_gramp_init(&s->gain, mb_db_to_lin(v[P_GAIN]));
  return MB_OK;
}

static void set_param(void *st, int idx, double v, int ramp) {
  conv_state *s = st;
  if (idx == P_MIX)
    mb_ramp_to(&s->mix, v, ramp);
  if (idx == P_GAIN)
    mb_gramp_to(&s->gain, mb_db_to_lin(v), ramp);
}

/* out = dry (1 - mix) + wet mix gain, the dry input delayed by the
 * latency so both line up; the engine has written wet into out. */
static void process(void *st, const mb_block *b) {
  conv_state *s = st;
  const int n = b->frames;
  mb_partconv_process(s->conv, b->in[0], b->out, n);
  const int ramping = mb_ramp_active(&s->mix) || s->gain.left > 0;
  if (!ramping && s->mix.value == 1.0 && s->gain.value == 1.0)
    return;
  if (!ramping) {
    const float a = (float)(1.0 - s->mix.value);
    const float w = (float)(s->mix.value * s->gain.value);
    for (int o = 0; o < s->nout; o++) {
      const float *restrict dry =
          mb_partconv_input(s->conv, s->nin == s->nout ? o : 0, s->latency, n);
      float *restrict y = b->out[o];
      for (int t = 0; t < n; t++)
        y[t] = mixed(dry[t], a, y[t], w);
    }
    return;
  }
  const float *dry[MB_MAX_CHANNELS];
  for (int o = 0; o < s->nout; o++)
    dry[o] =
        mb_partconv_input(s->conv, s->nin == s->nout ? o : 0, s->latency, n);
  for (int t = 0; t < n; t++) {
    const double m = mb_ramp_next(&s->mix), g = mb_gramp_next(&s->gain);
    const float a = (float)(1.0 - m), w = (float)(m * g);
    for (int o = 0; o < s->nout; o++)
      b->out[o][t] = mixed(dry[o][t], a, b->out[o][t], w);
  }
}

static void reset(void *st) {
  conv_state *s = st;
  mb_partconv_reset(s->conv);
  mb_ramp_init(&s->mix, s->mix.target);
  mb_gramp_init(&s->gain, s->gain.target);
}

static int latency(const void *st) { return ((const conv_state *)st)->latency; }

static int64_t tail(const void *st) { return ((const conv_state *)st)->tail; }

static void destroy(void *st) {
  conv_state *s = st;
  mb_partconv_free(s->conv);
  s->conv = NULL;
}

static const char *const mode_names[] = {"zero", "block", NULL};

static const mb_param_desc params[] = {
    [P_PATH] = {.id = "path", .unit = "", .type = MB_PARAM_STRING,
                .flags = MB_PARAM_STRUCTURAL,
                .help = "impulse response file: 1, 2 or 4 (true stereo) "
                        "channels, at most 60 s"},
    [P_MIX] = {.id = "mix", .unit = "", .type = MB_PARAM_NUMBER, .min = 0,
               .max = 1, .def = 1, .flags = MB_PARAM_SMOOTH,
               .help = "0 dry .. 1 wet (linear: dry (1 - mix) + wet mix)"},
    [P_PREDELAY] = {.id = "predelay", .unit = "ms", .type = MB_PARAM_NUMBER,
                    .min = 0, .max = 2000, .def = 0,
                    .flags = MB_PARAM_STRUCTURAL,
                    .help = "delay of the wet signal only"},
    [P_GAIN] = {.id = "gain", .unit = "dB", .type = MB_PARAM_NUMBER,
                .min = -60, .max = 24, .def = 0, .flags = MB_PARAM_SMOOTH,
                .help = "wet gain (the response is never normalised)"},
    [P_MODE] = {.id = "mode", .unit = "", .type = MB_PARAM_ENUM, .min = 0,
                .max = 1, .def = MODE_ZERO, .choices = mode_names,
                .flags = MB_PARAM_STRUCTURAL,
                .help = "zero: no latency; block: latency `block` frames, "
                        "faster"},
    [P_BLOCK] = {.id = "block", .unit = "frames", .type = MB_PARAM_INT,
                 .min = 64, .max = 32768, .def = 8192,
                 .flags = MB_PARAM_STRUCTURAL,
                 .help = "mode block: the latency (partitions up to it and "
                         "beyond are chosen for speed)"},
    [P_LENGTH] = {.id = "length", .unit = "ms", .type = MB_PARAM_NUMBER,
                  .min = 0, .max = 60000, .def = 0,
                  .flags = MB_PARAM_STRUCTURAL,
                  .help = "use only the response's first length ms (cut, no "
                          "fade); 0 = all of it"},
};
_Static_assert(sizeof params / sizeof params[0] == NPARAMS, "param table");

static const mb_port_desc inputs[] = {{.name = "in"}};

const mb_module_desc mb_mod_convolver = {
    .id = "convolver",
    .summary = "convolution with an impulse response file (reverb, cabinet)",
    .doc =
        "Convolves its input with an impulse response read from `path` "
        "(any file the input module reads) when the node is created. A "
        "response at another rate than the graph is resampled with libsoxr "
        "(very high quality) and scaled by file rate / graph rate, which "
        "keeps its frequency response (the sum of a filter's taps grows "
        "with the rate); otherwise its samples are used exactly as stored: "
        "no normalisation (set `gain`). Channels: a mono response filters "
        "every input channel; a stereo response filters left with its "
        "first channel and right with its second (a mono input gives "
        "stereo, left = x h1, right = x h2); a 4-channel true-stereo "
        "response holds L->L, L->R, R->L, R->R in that order (the common "
        "layout of true-stereo files), so out L = L h1 + R h3 and out R = "
        "L h2 + R h4 (a mono input feeds both sides). Stereo and true-"
        "stereo responses take a mono or stereo input. Refused with a "
        "message naming the file: a missing file, a folder, a file that is "
        "not audio, an empty one, 3 or more than 4 channels, more than 60 "
        "s. The convolution (float, FFTW) is exact to float rounding "
        "(about -130 dB re the output): out = dry (1 - mix) + gain mix "
        "(x * h delayed by predelay), with mix and gain ramped. mode = "
        "\"zero\" (default) adds no latency: the response's first taps "
        "(up to 512) run in the time domain and the rest in FFT partitions "
        "that grow along it (non-uniform partitioned overlap-save), each "
        "hidden in the time the earlier parts take; mode = \"block\" "
        "reports `block` frames of latency (the graph compensates it, and "
        "the dry signal is delayed to match), which lets it use larger "
        "partitions: two to three times as fast for responses of a second or "
        "more (measured: a 2 s stereo response on 300 s of 48 kHz stereo "
        "costs about 0.8 s of CPU in zero mode, 0.3 s in block mode with "
        "the default block of 8192, 0.45 s with 1024). Offline, where the "
        "latency is compensated, block mode gives the same output faster; "
        "zero mode is for live use. "
        "The partition sizes are chosen from the response's length by a "
        "cost model of FFT and multiply-add speed and never depend on the "
        "graph's block size, so renders are identical for any block size. "
        "`predelay` delays the wet signal only. The tail is the response's "
        "length - 1 plus the pre-delay (a file of N frames through an M-"
        "frame response renders N + M - 1 frames), and output is exactly "
        "zero once the input has been silent that long (no FFT rounding "
        "residue). `length` keeps only the first length ms of the response "
        "(a plain cut: choose it where the response has decayed). path, "
        "predelay, mode, block and length re-create the node; a render "
        "re-reads the file.",
    .inputs = inputs,
    .n_inputs = 1,
    .has_output = 1,
    .params = params,
    .n_params = NPARAMS,
    .state_size = sizeof(conv_state),
    .channels = channels,
    .create = create,
    .set_param = set_param,
    .process = process,
    .reset = reset,
    .latency = latency,
    .tail = tail,
    .destroy = destroy,
};
