/* tone.c - test signal generator: sine, exponential sweep, white and pink
 * noise, impulse, silence. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dsp/ramp.h"
#include "mb_module.h"

enum { W_SINE, W_SWEEP, W_WHITE, W_PINK, W_IMPULSE, W_SILENCE };
enum {
  P_WAVE,
  P_FREQ,
  P_FREQ_END,
  P_LEVEL,
  P_DURATION,
  P_CHANNELS,
  P_FADE,
  P_SEED,
  N_PARAMS
};

#define PINK_MAX 24 /* first-order sections; 15 suffice at 384 kHz */

/* ---- noise ------------------------------------------------------------ */

/* xoshiro256** (Blackman and Vigna 2018), seeded through splitmix64 so that
 * neighbouring seeds and channels give unrelated streams. */
typedef struct {
  uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed, int channel) {
  uint64_t x = seed * 0x100000001b3u + (uint64_t)channel * 0xd1342543de82ef95u;
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

/* Uniform in [-1, 1) with 53 random bits: variance 1/3. */
static inline double rng_uniform(rng *r) {
  uint64_t *s = r->s;
  const uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return (double)(out >> 11) * 0x1p-52 - 1.0;
}

/* Pink filter: a cascade of real first-order pole/zero sections
 * (1 - z x) / (1 - p x), x = 1/z. Below fs/256 the poles and zeros sit
 * one octave apart (pole at fn = 0.25 * 2^-k * fs, zero a half octave
 * above), mapped by the matched z-transform, which is exact enough there.
 * The top six sections, where matched-z fails near Nyquist, were fitted
 * numerically (minimax on the magnitude, normalised frequency 2e-4 to
 * 0.456) so the whole cascade is -3.01 dB/octave within +-0.002 dB from
 * fs/5000 up to 0.456 fs (20 kHz at 44.1 kHz), at every rate. The grid
 * stops at its first pole below 3 Hz, so the slope holds within 0.13 dB
 * down to 20 Hz and the spectrum flattens below about 3-6 Hz. */
static const double pink_top_z[6] = {
    -0.61918023136919542, -0.1388743723739132, 0.23019695708586671,
    0.60797007946395343,  0.82908851457066024, 0.92819480349879613};
static const double pink_top_p[6] = {
    -0.59639936436395224, -0.014547964541704882, 0.43810282031693515,
    0.73731166317855257,  0.88998833417424139,   0.95139033287044439};

static int pink_design(double rate, double *z, double *p) {
  int n = 0;
  for (; n < 6; n++) z[n] = pink_top_z[n], p[n] = pink_top_p[n];
  for (int k = 6; n < PINK_MAX; k++, n++) {
    const double fn = 0.25 * ldexp(1.0, -k);
    if (fn * rate < 3.0) break;
    p[n] = exp(-2 * M_PI * fn);
    z[n] = exp(-2 * M_PI * fn * M_SQRT2);
  }
  return n;
}

/* Output power of the cascade for unit-variance white input: the energy
 * of its impulse response, summed until the slowest pole has decayed by
 * e^-80 in energy. */
static double pink_power(const double *z, const double *p, int n,
                         double pmax) {
  double st[PINK_MAX] = {0}, e = 0;
  const long len = 40 * (long)(1.0 / (1.0 - pmax)) + 1000;
  for (long i = 0; i < len; i++) {
    double x = i == 0 ? 1.0 : 0.0;
    for (int k = 0; k < n; k++) {
      const double y = x + st[k];
      st[k] = p[k] * y - z[k] * x;
      x = y;
    }
    e += x * x;
  }
  return e;
}

/* ---- state ------------------------------------------------------------ */

typedef struct {
  int wave, nch;
  double rate;
  int64_t length; /* frames, -1 unbounded */
  int64_t fade;   /* raised-cosine fade length in frames */
  int64_t next;   /* frame the next block should start at */
  uint64_t seed;
  mb_gramp level; /* linear: peak (sine, sweep, impulse) or RMS (noise) */
  mb_ramp freq;   /* sine frequency, Hz */
  double phase;   /* sine phase in cycles, [0, 1) */
  double f0, f1;  /* sweep start and end, Hz */
  double sweep_a, sweep_k; /* phase(n) = a * expm1(k * n) cycles */
  int pink_n;
  double pink_z[PINK_MAX], pink_p[PINK_MAX], pink_norm;
  rng rng[MB_MAX_CHANNELS];
  double pink_st[MB_MAX_CHANNELS][PINK_MAX];
} tone_state;

static double below_nyquist(const tone_state *s, double f) {
  const double ny = 0.499 * s->rate;
  return f > ny ? ny : f;
}

static void sweep_setup(tone_state *s) {
  const double n = (double)(s->length > 0 ? s->length : 1);
  const double lk = log(s->f1 / s->f0);
  if (fabs(lk) < 1e-12) { /* no sweep: a sine at f0, phase f0 n / rate */
    s->sweep_k = 0;
    s->sweep_a = s->f0 / s->rate;
  } else {
    s->sweep_k = lk / n;
    s->sweep_a = s->f0 * n / (s->rate * lk);
  }
}

static double sweep_phase(const tone_state *s, int64_t n) {
  if (s->sweep_k == 0) return s->sweep_a * (double)n;
  return s->sweep_a * expm1(s->sweep_k * (double)n);
}

static void restart(tone_state *s) {
  s->phase = 0;
  s->next = 0;
  for (int c = 0; c < s->nch; c++) {
    rng_seed(&s->rng[c], s->seed, c);
    memset(s->pink_st[c], 0, sizeof s->pink_st[c]);
  }
}

/* Gain of the raised-cosine fades at frame n (1 outside them). */
static double fade_gain(const tone_state *s, int64_t n) {
  int64_t m = -1;
  if (n < s->fade) m = n;
  if (s->length >= 0 && n >= s->length - s->fade) {
    const int64_t e = s->length - 1 - n;
    if (m < 0 || e < m) m = e;
  }
  if (m < 0) return 1.0;
  const double x = sin(0.5 * M_PI * (double)m / (double)s->fade);
  return x * x;
}

/* ---- descriptor glue -------------------------------------------------- */

static int channels(const mb_config *c, char *err, size_t errlen) {
  (void)err, (void)errlen;
  return (int)c->values[P_CHANNELS];
}

static mb_status create(void *st, const mb_config *c, char *err,
                        size_t errlen) {
  tone_state *s = st;
  const double *v = c->values;
  s->wave = (int)v[P_WAVE];
  s->nch = c->out_channels;
  s->rate = c->rate;
  s->length = v[P_DURATION] > 0 ? llround(v[P_DURATION] * c->rate) : -1;
  s->seed = (uint64_t)v[P_SEED];
  if (s->wave == W_SWEEP && s->length <= 0) {
    snprintf(err, errlen, "a sweep needs a duration > 0");
    return MB_ERR_ARG;
  }
  const int sweep = s->wave == W_SWEEP;
  if ((s->wave == W_SINE || sweep) && v[P_FREQ] >= 0.5 * c->rate) {
    snprintf(err, errlen, "freq %g Hz is not below Nyquist (%g Hz)",
             v[P_FREQ], 0.5 * c->rate);
    return MB_ERR_ARG;
  }
  if (sweep && v[P_FREQ_END] >= 0.5 * c->rate) {
    snprintf(err, errlen,
             "freq_end %g Hz is not below Nyquist (%g Hz)",
             v[P_FREQ_END], 0.5 * c->rate);
    return MB_ERR_ARG;
  }
  s->fade = llround(v[P_FADE] * 1e-3 * c->rate);
  if (s->length >= 0 && s->fade > s->length / 2) s->fade = s->length / 2;
  mb_gramp_init(&s->level, mb_db_to_lin(v[P_LEVEL]));
  mb_ramp_init(&s->freq, v[P_FREQ]);
  s->f0 = v[P_FREQ];
  s->f1 = v[P_FREQ_END];
  sweep_setup(s);
  s->pink_n = pink_design(c->rate, s->pink_z, s->pink_p);
  /* Uniform input has variance 1/3; scale so the output's RMS is 1. */
  s->pink_norm =
      1.0 / sqrt(pink_power(s->pink_z, s->pink_p, s->pink_n,
                            s->pink_p[s->pink_n - 1]) / 3.0);
  restart(s);
  return MB_OK;
}

static void set_param(void *st, int idx, double v, int ramp) {
  tone_state *s = st;
  if (idx == P_LEVEL) mb_gramp_to(&s->level, mb_db_to_lin(v), ramp);
  if (idx == P_FREQ) {
    mb_ramp_to(&s->freq, below_nyquist(s, v), ramp);
    s->f0 = below_nyquist(s, v);
    sweep_setup(s);
  }
  if (idx == P_FREQ_END) {
    s->f1 = below_nyquist(s, v);
    sweep_setup(s);
  }
}

static void process(void *st, const mb_block *b) {
  tone_state *s = st;
  const int nch = b->out_channels, n = b->frames;
  float *const *out = b->out;
  const double sqrt3 = 1.7320508075688772;
  /* A jump in position (a seek) puts the sine where it would have been;
   * the noise streams simply continue. */
  if (b->pos != s->next && s->wave == W_SINE) {
    const double ph = s->freq.value / s->rate * (double)b->pos;
    s->phase = ph - floor(ph);
  }
  s->next = b->pos + n;
  for (int i = 0; i < n; i++) {
    const int64_t t = b->pos + i;
    const double lv = mb_gramp_next(&s->level);
    const double f = mb_ramp_next(&s->freq);
    if ((s->length >= 0 && t >= s->length) || s->wave == W_SILENCE) {
      for (int c = 0; c < nch; c++) out[c][i] = 0.0f;
      continue;
    }
    const double g = s->fade > 0 ? lv * fade_gain(s, t) : lv;
    double x = 0;
    switch (s->wave) {
    case W_SINE:
      x = g * sin(2 * M_PI * s->phase);
      s->phase += f / s->rate;
      s->phase -= floor(s->phase);
      break;
    case W_SWEEP: {
      const double ph = sweep_phase(s, t);
      x = g * sin(2 * M_PI * (ph - floor(ph)));
      break;
    }
    case W_IMPULSE:
      x = t == 0 ? lv : 0.0; /* fades would zero it: not applied */
      break;
    case W_WHITE:
      for (int c = 0; c < nch; c++)
        out[c][i] = (float)(g * sqrt3 * rng_uniform(&s->rng[c]));
      continue;
    case W_PINK: {
      const double gp = g * s->pink_norm;
      const int np = s->pink_n;
      for (int c = 0; c < nch; c++) {
        double y = rng_uniform(&s->rng[c]);
        double *ps = s->pink_st[c];
        for (int k = 0; k < np; k++) { /* transposed direct form */
          const double o = y + ps[k];
          ps[k] = s->pink_p[k] * o - s->pink_z[k] * y;
          y = o;
        }
        out[c][i] = (float)(gp * y);
      }
      continue;
    }
    }
    const float xf = (float)x;
    for (int c = 0; c < nch; c++) out[c][i] = xf;
  }
}

static void reset(void *st) {
  tone_state *s = st;
  mb_gramp_init(&s->level, s->level.target);
  mb_ramp_init(&s->freq, s->freq.target);
  restart(s);
}

static int64_t length(const void *st) {
  const tone_state *s = st;
  return s->length;
}

static const char *const wave_choices[] = {"sine",  "sweep",   "white", "pink",
                                           "impulse", "silence", NULL};

static const mb_param_desc params[] = {
    [P_WAVE] = {.id = "wave", .unit = "", .type = MB_PARAM_ENUM,
                .min = 0, .max = 5, .def = W_SINE,
                .flags = MB_PARAM_STRUCTURAL, .choices = wave_choices,
                .help = "sine, sweep (exponential), white or pink noise, "
                        "impulse, silence"},
    [P_FREQ] = {.id = "freq", .unit = "Hz", .type = MB_PARAM_NUMBER,
                .min = 1, .max = 100000, .def = 1000, .scale = MB_SCALE_LOG,
                .flags = MB_PARAM_SMOOTH,
                .help = "sine frequency; start of the sweep (below Nyquist)"},
    [P_FREQ_END] = {.id = "freq_end", .unit = "Hz", .type = MB_PARAM_NUMBER,
                    .min = 1, .max = 100000, .def = 20000,
                    .scale = MB_SCALE_LOG,
                    .help = "end of the sweep (below Nyquist)"},
    [P_LEVEL] = {.id = "level", .unit = "dBFS", .type = MB_PARAM_NUMBER,
                 .min = -120, .max = 0, .def = -20, .flags = MB_PARAM_SMOOTH,
                 .help = "peak level (sine, sweep, impulse); RMS level "
                         "(white, pink)"},
    [P_DURATION] = {.id = "duration", .unit = "s", .type = MB_PARAM_NUMBER,
                    .min = 0, .max = 86400, .def = 10,
                    .flags = MB_PARAM_STRUCTURAL,
                    .help = "length of the signal; 0 = endless (not for "
                            "sweeps)"},
    [P_CHANNELS] = {.id = "channels", .unit = "", .type = MB_PARAM_INT,
                    .min = 1, .max = MB_MAX_CHANNELS, .def = 2,
                    .flags = MB_PARAM_STRUCTURAL,
                    .help = "output channels"},
    [P_FADE] = {.id = "fade", .unit = "ms", .type = MB_PARAM_NUMBER,
                .min = 0, .max = 60000, .def = 0,
                .flags = MB_PARAM_STRUCTURAL,
                .help = "raised-cosine fade in and out"},
    [P_SEED] = {.id = "seed", .unit = "", .type = MB_PARAM_INT, .min = 0,
                .max = 2147483647, .def = 0, .flags = MB_PARAM_STRUCTURAL,
                .help = "noise seed: equal seeds give equal noise"},
};

const mb_module_desc mb_mod_tone = {
    .id = "tone",
    .summary = "test signals: sine, sweep, white/pink noise, impulse",
    .doc =
        "Generates a test signal of `duration` seconds (rounded to whole "
        "frames; 0 = endless) on `channels` channels, then exact zeros. "
        "`level` is the peak level for sine, sweep and impulse (a sine at "
        "-20 dBFS has peaks of 0.1 and an RMS of -23.01 dBFS) and the RMS "
        "level for noise (white or pink at -20 dBFS has an RMS of 0.1). "
        "The sine is the same on every channel, its phase accumulated in "
        "double precision from 0 at the first frame; `freq` and `level` "
        "glide when changed. The sweep is exponential (Farina): its "
        "frequency rises from `freq` to `freq_end` (or falls) over the "
        "duration, its phase computed in closed form at every frame (a "
        "change of its range applies at once). "
        "White noise is uniform (crest factor 4.77 dB), from xoshiro256** "
        "streams seeded by `seed` and different on every channel "
        "(uncorrelated). Pink noise is that white noise through a "
        "first-order-section filter with a -3.01 dB/octave slope within "
        "0.15 dB from 20 Hz to 20 kHz (to 0.456 of the rate) at any rate; "
        "it flattens below about 5 Hz, and its RMS, which includes that "
        "low end, is `level`. The impulse is one sample at `level` on "
        "frame 0. `fade` applies raised-cosine (sin^2) fades at both ends, "
        "starting and ending on an exact zero (not to the impulse). "
        "Output is the same whatever the block size.",
    .n_inputs = 0,
    .has_output = 1,
    .params = params,
    .n_params = N_PARAMS,
    .state_size = sizeof(tone_state),
    .flags = MB_MODULE_GENERATOR,
    .channels = channels,
    .create = create,
    .set_param = set_param,
    .process = process,
    .reset = reset,
    .length = length,
};
