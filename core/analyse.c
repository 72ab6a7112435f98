/* analyse.c - the QC analysis of a file (mb_analyse_file in mb.h).
 *
 * One streaming pass: the file is read through mb_reader (so it is refused
 * for exactly the reasons a graph input is, and decoding runs ahead on the
 * reader's worker while this thread measures), CHUNK frames at a time.
 * Memory is bounded: the chunk buffers, one Welch segment per channel,
 * the waveform columns, the decimated short-term values and the spectrum
 * bins; only the loudness kernel's gating lists grow with the length
 * (modules/dsp/loudness.h: 16 bytes per 100 ms).
 *
 * Conventions (all levels re full scale, a full-scale square wave being
 * 0 dBFS RMS, a full-scale sine -3.01 dBFS RMS):
 *   - loudness, LRA, peaks: modules/dsp/loudness.h (BS.1770-4, EBU Tech
 *     3341/3342), with the 4x true peak;
 *   - mono_drop: a second loudness meter fed M = (L + R) / 2 on both of its
 *     channels, the downmix a mono playback system makes at equal gain;
 *   - correlation: sum(LR) / sqrt(sum(L^2) sum(R^2)) over the whole file,
 *     no mean removed (what a phase meter shows);
 *   - clipping: |x| >= 32767/32768, i.e. within one 16-bit LSB of full
 *     scale, so clipped 16- and 24-bit masters and overs in float files all
 *     count;
 *   - silence: |x| at or below -60 dBFS (0.001) on every channel;
 *   - spectrum: see welch_bands(). */
#include <fftw3.h>
#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dsp/loudness.h"
#include "fileio.h"
#include "mb.h"

/* Frames per read. */
#define CHUNK 16384
/* The silence threshold, dBFS, and its linear amplitude. */
#define SILENCE_DB (-60.0)
#define SILENCE_LIN 0.001
/* One 16-bit LSB below full scale (exact in float: 1 - 2^-15). */
#define CLIP_LEVEL (32767.0f / 32768.0f)

static double lin_db(double x) { return x > 0 ? 20 * log10(x) : -HUGE_VAL; }

/* ---- long-term average spectrum (Welch) ---------------------------------
 *
 * Segments of n frames (n the power of two nearest rate * 0.17: 8192 at
 * 44.1 and 48 kHz, about 170 ms), hop n/2 (50 % overlap), Hann window,
 * complete segments only; a file shorter than one segment is one segment
 * of its own length, windowed over that length and zero-padded to n.
 * Channels: every channel is transformed and the power spectra are
 * averaged over channels (the mean of the channels' powers, not the power
 * of their mean, so antiphase content still shows). */
typedef struct welch {
  int n, hop, nch;
  int fill;         /* frames buffered in seg */
  int64_t segments; /* transforms summed into power (per channel) */
  double wsum2;     /* sum of the window's squares */
  float *seg;       /* nch x n planar: the segment being gathered */
  float *win;       /* n */
  float *x;         /* n: the windowed segment of one channel */
  fftwf_complex *X; /* n/2 + 1 */
  double *power;    /* n/2 + 1: sum of |X|^2 over segments and channels */
  fftwf_plan plan;
} welch;

/* Hann window of length len, centred on the samples: w[i] = sin^2(pi
 * (i + 1/2) / len). Its magnitude response is the periodic Hann's (the
 * half-sample shift changes phases only) and it never vanishes, so a
 * one-frame file still has window energy. */
static double hann(float *w, int len) {
  double s2 = 0;
  for (int i = 0; i < len; i++) {
    double s = sin(M_PI * (i + 0.5) / len);
    w[i] = (float)(s * s);
    s2 += (double)w[i] * w[i];
  }
  return s2;
}

static int fft_size(int rate) {
  int e = (int)lrint(log2(rate * 0.17));
  if (e < 4)
    e = 4; /* 16 frames: rates below about 140 Hz */
  if (e > 20)
    e = 20; /* unreachable below 768 kHz; keeps int sizes sane */
  return 1 << e;
}

static void welch_free(welch *w) {
  if (w->plan)
    fftwf_destroy_plan(w->plan);
  fftwf_free(w->seg);
  fftwf_free(w->win);
  fftwf_free(w->x);
  fftwf_free(w->X);
  free(w->power);
  memset(w, 0, sizeof *w);
}

static mb_status welch_init(welch *w, int nch, int rate) {
  memset(w, 0, sizeof *w);
  w->n = fft_size(rate);
  w->hop = w->n / 2;
  w->nch = nch;
  const size_t n = (size_t)w->n, nb = n / 2 + 1;
  w->seg = fftwf_malloc(sizeof(float) * n * (size_t)nch);
  w->win = fftwf_malloc(sizeof(float) * n);
  w->x = fftwf_malloc(sizeof(float) * n);
  w->X = fftwf_malloc(sizeof(fftwf_complex) * nb);
  w->power = calloc(nb, sizeof(double));
  if (!w->seg || !w->win || !w->x || !w->X || !w->power) {
    welch_free(w);
    return MB_ERR_NOMEM;
  }
  w->wsum2 = hann(w->win, w->n);
  /* FFTW_ESTIMATE: no timing runs, the same plan (and rounding) in every
   * process, as modules/dsp/fftconv.c. */
  w->plan = fftwf_plan_dft_r2c_1d(w->n, w->x, w->X, FFTW_ESTIMATE);
  if (!w->plan) {
    welch_free(w);
    return MB_ERR_NOMEM;
  }
  return MB_OK;
}

/* Transform the first len frames of every channel's segment (len == n
 * except for a file shorter than one segment) and add their powers. */
static void welch_segment(welch *w, int len) {
  const int n = w->n, nb = n / 2 + 1;
  const float *win = w->win;
  if (len < n) { /* the short-file case: a window over the file itself */
    w->wsum2 = hann(w->win, len);
  }
  for (int c = 0; c < w->nch; c++) {
    const float *s = w->seg + (size_t)c * n;
    for (int i = 0; i < len; i++)
      w->x[i] = s[i] * win[i];
    for (int i = len; i < n; i++)
      w->x[i] = 0;
    fftwf_execute(w->plan);
    for (int k = 0; k < nb; k++) {
      double re = w->X[k][0], im = w->X[k][1];
      w->power[k] += re * re + im * im;
    }
  }
  w->segments++;
}

static void welch_push(welch *w, float *const *in, int frames) {
  const int n = w->n;
  for (int off = 0; off < frames;) {
    int take = frames - off;
    if (take > n - w->fill)
      take = n - w->fill;
    for (int c = 0; c < w->nch; c++)
      memcpy(w->seg + (size_t)c * n + w->fill, in[c] + off,
             sizeof(float) * (size_t)take);
    w->fill += take;
    off += take;
    if (w->fill == n) {
      welch_segment(w, n);
      for (int c = 0; c < w->nch; c++)
        memmove(w->seg + (size_t)c * n, w->seg + (size_t)c * n + w->hop,
                sizeof(float) * (size_t)(n - w->hop));
      w->fill = n - w->hop;
    }
  }
}

/* The spectrum at `bands` log-spaced points from 20 Hz to min(20 kHz,
 * 0.45 rate).
 *
 * Normalisation (Parseval): the power of bin k is
 *   P[k] = c_k |X[k]|^2 / (N sum(w^2)),  c_k = 2 for 0 < k < N/2, else 1,
 * averaged over segments and channels, so that sum_k P[k] is the
 * window-weighted mean square of the signal: a sine of amplitude A puts
 * A^2/2 into the bins of its main lobe. Point i covers the band between
 * the geometric midpoints to its neighbours ([f_i r^-1/2, f_i r^1/2), r
 * the ratio between points) and reads 10 log10 of the power of the bins
 * in it (their mean power times their count; a band narrower than the bin
 * spacing holding no bin takes the nearest bin's power). So a full-scale
 * sine reads -3.01 dB in a band holding its main lobe (4 bins wide), and
 * down to -4.77 dB (the lobe's centre bin alone holds 2/3 of its power)
 * where bands are narrower than the lobe, below about 200 Hz at N = 8192,
 * 48 kHz; noise reads as band power (pink noise flat). -inf for an empty
 * band of silence. */
static void welch_bands(welch *w, int rate, int bands, double *freq,
                        double *db) {
  if (w->segments == 0 && w->fill > 0)
    welch_segment(w, w->fill);
  const int n = w->n, nb = n / 2 + 1;
  const double df = (double)rate / n;
  const double norm =
      w->segments ? 1.0 / ((double)w->segments * w->nch * n * w->wsum2) : 0;
  double hi = fmin(20000.0, 0.45 * rate), lo = 20.0;
  if (hi < 2 * lo)
    lo = hi / 2; /* rates below about 90 Hz */
  const double r = pow(hi / lo, 1.0 / (bands - 1)), half = sqrt(r);
  for (int i = 0; i < bands; i++) {
    double f = lo * pow(hi / lo, (double)i / (bands - 1));
    freq[i] = f;
    int k0 = (int)ceil(f / half / df), k1 = (int)ceil(f * half / df) - 1;
    if (k0 < 0)
      k0 = 0;
    if (k1 > nb - 1)
      k1 = nb - 1;
    if (k1 < k0) { /* no bin inside: the nearest one */
      k0 = (int)lrint(f / df);
      if (k0 > nb - 1)
        k0 = nb - 1;
      k1 = k0;
    }
    double sum = 0;
    for (int k = k0; k <= k1; k++)
      sum += w->power[k] * (k == 0 || k == n / 2 ? 1 : 2);
    sum *= norm;
    db[i] = sum > 0 ? 10 * log10(sum) : -HUGE_VAL;
  }
}

/* ---- format ------------------------------------------------------------- */

/* libsndfile's own enum names without SF_FORMAT_ (also what Python's
 * soundfile prints), except MPEG shown as "MP3". */
static void describe_format(int format, mb_analysis *a) {
  static const struct {
    int code;
    const char *name;
  } majors[] = {{SF_FORMAT_WAV, "WAV"},   {SF_FORMAT_WAVEX, "WAVEX"},
                {SF_FORMAT_RF64, "RF64"}, {SF_FORMAT_W64, "W64"},
                {SF_FORMAT_AIFF, "AIFF"}, {SF_FORMAT_CAF, "CAF"},
                {SF_FORMAT_FLAC, "FLAC"}, {SF_FORMAT_OGG, "OGG"},
                {SF_FORMAT_MPEG, "MP3"},  {SF_FORMAT_AU, "AU"},
                {SF_FORMAT_RAW, "RAW"}};
  /* bits: the PCM word length; 32 for float, 64 for double; 0 for
   * companded and lossy encodings, which have none. */
  static const struct {
    int code;
    const char *name;
    int bits, is_float;
  } subs[] = {{SF_FORMAT_PCM_S8, "PCM_S8", 8, 0},
              {SF_FORMAT_PCM_U8, "PCM_U8", 8, 0},
              {SF_FORMAT_PCM_16, "PCM_16", 16, 0},
              {SF_FORMAT_PCM_24, "PCM_24", 24, 0},
              {SF_FORMAT_PCM_32, "PCM_32", 32, 0},
              {SF_FORMAT_FLOAT, "FLOAT", 32, 1},
              {SF_FORMAT_DOUBLE, "DOUBLE", 64, 1},
              {SF_FORMAT_ALAC_16, "ALAC_16", 16, 0},
              {SF_FORMAT_ALAC_20, "ALAC_20", 20, 0},
              {SF_FORMAT_ALAC_24, "ALAC_24", 24, 0},
              {SF_FORMAT_ALAC_32, "ALAC_32", 32, 0},
              {SF_FORMAT_ULAW, "ULAW", 0, 0},
              {SF_FORMAT_ALAW, "ALAW", 0, 0},
              {SF_FORMAT_VORBIS, "VORBIS", 0, 0},
              {SF_FORMAT_OPUS, "OPUS", 0, 0},
              {SF_FORMAT_MPEG_LAYER_III, "MPEG_LAYER_III", 0, 0}};
  const int major = format & SF_FORMAT_TYPEMASK;
  const int sub = format & SF_FORMAT_SUBMASK;
  char mj[16], sb[24];
  snprintf(mj, sizeof mj, "0x%04x", (unsigned)major >> 16);
  snprintf(sb, sizeof sb, "0x%04x", (unsigned)sub);
  for (size_t i = 0; i < sizeof majors / sizeof *majors; i++)
    if (majors[i].code == major)
      snprintf(mj, sizeof mj, "%s", majors[i].name);
  for (size_t i = 0; i < sizeof subs / sizeof *subs; i++)
    if (subs[i].code == sub) {
      snprintf(sb, sizeof sb, "%s", subs[i].name);
      a->bits = subs[i].bits;
      a->is_float = subs[i].is_float;
    }
  snprintf(a->format, sizeof a->format, "%s %s", mj, sb);
}

/* ---- the pass ----------------------------------------------------------- */

void mb_analysis_free(mb_analysis *a) {
  if (!a)
    return;
  free(a->wave_min);
  free(a->wave_max);
  free(a->short_term);
  free(a->freq);
  free(a->spectrum);
  memset(a, 0, sizeof *a);
}

static void say(char *err, size_t errlen, const char *path, const char *what) {
  if (err && errlen)
    snprintf(err, errlen, "cannot analyse '%s': %s", path, what);
}

static int check_range(int *v, int dflt, int lo, int hi, const char *name,
                       const char *path, char *err, size_t errlen) {
  if (*v == 0)
    *v = dflt;
  if (*v >= lo && *v <= hi)
    return 1;
  if (err && errlen)
    snprintf(err, errlen,
             "cannot analyse '%s': %s = %d is out of range (%d .. %d)", path,
             name, *v, lo, hi);
  return 0;
}

mb_status mb_analyse_file(const char *path, const mb_analyse_opts *o,
                          mb_analysis *a, char *err, size_t errlen) {
  memset(a, 0, sizeof *a);
  mb_analyse_opts opt = o ? *o : (mb_analyse_opts){0, 0, 0};
  if (!path)
    path = "";
  if (!check_range(&opt.columns, 400, 16, 4000, "columns", path, err, errlen) ||
      !check_range(&opt.points, 600, 1, 1000000, "points", path, err, errlen) ||
      !check_range(&opt.bands, 120, 2, 4000, "bands", path, err, errlen))
    return MB_ERR_ARG;

  mb_reader *r = mb_reader_open(path, err, errlen);
  if (!r) {
    /* The reader's message says which; the status follows it. */
    struct stat st;
    int readable =
        stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, R_OK) == 0;
    return readable ? MB_ERR_FORMAT : MB_ERR_IO;
  }
  const int ch = mb_reader_channels(r);
  const int rate = (int)mb_reader_rate(r);
  const int64_t frames = mb_reader_frames(r);
  a->rate = rate;
  a->channels = ch;
  a->frames = frames;
  a->duration = (double)frames / rate;
  describe_format(mb_reader_format(r), a);

  /* 100 ms sub-blocks end at frames floor(k rate / 10), k = 1 .. nsub
   * (the loudness kernel's grid); the short-term loudness at each end is
   * kept as the maximum over groups of `group` consecutive sub-blocks. */
  const int64_t nsub = (10 * frames + 9) / rate;
  const int64_t group =
      nsub > opt.points ? (nsub + opt.points - 1) / opt.points : 1;
  a->n_short = (int)((nsub + group - 1) / group);
  a->short_interval = 0.1 * (double)group;
  a->columns = opt.columns;
  a->bands = opt.bands;

  float *buf = malloc(sizeof(float) * (size_t)CHUNK * (size_t)(ch + 1));
  float *chans[MB_MAX_CHANNELS], *mono = NULL;
  mb_loudness *loud = NULL, *mloud = NULL;
  welch w;
  memset(&w, 0, sizeof w);
  char why[MB_ERRLEN];
  mb_status status = MB_OK;
  a->wave_min = malloc(sizeof(float) * (size_t)opt.columns);
  a->wave_max = malloc(sizeof(float) * (size_t)opt.columns);
  a->short_term =
      malloc(sizeof(double) * (size_t)(a->n_short ? a->n_short : 1));
  a->freq = malloc(sizeof(double) * (size_t)opt.bands);
  a->spectrum = malloc(sizeof(double) * (size_t)opt.bands);
  if (!buf || !a->wave_min || !a->wave_max || !a->short_term || !a->freq ||
      !a->spectrum || welch_init(&w, ch, rate)) {
    say(err, errlen, path, "out of memory");
    status = MB_ERR_NOMEM;
    goto done;
  }
  for (int c = 0; c < ch; c++)
    chans[c] = buf + (size_t)c * CHUNK;
  mono = buf + (size_t)ch * CHUNK;
  for (int k = 0; k < opt.columns; k++) {
    a->wave_min[k] = HUGE_VALF;
    a->wave_max[k] = -HUGE_VALF;
  }
  for (int j = 0; j < a->n_short; j++)
    a->short_term[j] = -HUGE_VAL;

  status = mb_loudness_create(&loud, rate, ch, frames, MB_LOUDNESS_TRUE_PEAK,
                              why, sizeof why);
  if (!status && ch == 2)
    status = mb_loudness_create(&mloud, rate, 2, frames, 0, why, sizeof why);
  if (status) {
    say(err, errlen, path, why);
    goto done;
  }

  double sum[MB_MAX_CHANNELS] = {0}, sum2[MB_MAX_CHANNELS] = {0}, sum_lr = 0;
  int64_t run[MB_MAX_CHANNELS] = {0}, clipped = 0, clip_runs = 0;
  int64_t first_loud = -1, last_loud = -1;
  int64_t kidx = 0;                    /* next sub-block, 0-based */
  int64_t next_b = (int64_t)rate / 10; /* its end: floor((kidx+1) rate/10) */
  int col = 0;
  int64_t col_end = frames / opt.columns; /* end of column `col` */

  /* decoding on the reader's worker overlaps the measuring here */
  status = mb_reader_start(r, rate, CHUNK, err, errlen);
  if (!status)
    status = mb_reader_prefetch(r, err, errlen);
  if (status)
    goto done;
  for (int64_t pos = 0; pos < frames;) {
    const int n = (int)(frames - pos < CHUNK ? frames - pos : CHUNK);
    status = mb_reader_read(r, chans, n, err, errlen);
    if (status)
      goto done;

    /* loudness, stopping at each sub-block end for the short-term value */
    int i = 0;
    while (kidx < nsub && next_b <= pos + n) {
      int upto = (int)(next_b - pos);
      if (upto > i)
        mb_loudness_feed(loud, (const float *const *)chans, i, upto - i);
      i = upto;
      double st = mb_loudness_short_term(loud);
      double *v = &a->short_term[kidx / group];
      if (st > *v)
        *v = st;
      kidx++;
      next_b = (kidx + 1) * (int64_t)rate / 10;
    }
    if (i < n)
      mb_loudness_feed(loud, (const float *const *)chans, i, n - i);
    if (mloud) {
      const float *L = chans[0], *R = chans[1];
      for (int j = 0; j < n; j++)
        mono[j] = 0.5f * (L[j] + R[j]);
      const float *mm[2] = {mono, mono};
      mb_loudness_feed(mloud, mm, 0, n);
    }

    /* per channel: sums, clipping, silence */
    for (int c = 0; c < ch; c++) {
      const float *x = chans[c];
      double s = 0, s2 = 0;
      int64_t rn = run[c];
      for (int j = 0; j < n; j++) {
        const float v = x[j];
        s += v;
        s2 += (double)v * v;
        if (fabsf(v) >= CLIP_LEVEL) {
          clipped++;
          if (++rn == 2)
            clip_runs++; /* a run counts once, at its 2nd sample */
        } else {
          rn = 0;
        }
      }
      run[c] = rn;
      sum[c] += s;
      sum2[c] += s2;
      /* the first loud frame: searched until one is known (another
       * channel may still have an earlier one in this chunk) */
      for (int j = 0; j < n && (first_loud < 0 || pos + j < first_loud); j++)
        if (fabs((double)x[j]) > SILENCE_LIN) {
          first_loud = pos + j;
          break;
        }
      /* the last one: from the chunk's end back to the one known */
      for (int j = n - 1; j >= 0 && pos + j > last_loud; j--)
        if (fabs((double)x[j]) > SILENCE_LIN) {
          last_loud = pos + j;
          break;
        }
    }
    if (ch >= 2) {
      const float *L = chans[0], *R = chans[1];
      double s = 0;
      for (int j = 0; j < n; j++)
        s += (double)L[j] * R[j];
      sum_lr += s;
    }

    /* waveform columns: [k frames / columns, (k+1) frames / columns) */
    for (int j = 0; j < n;) {
      while (col < opt.columns - 1 && pos + j >= col_end) {
        col++;
        col_end = (int64_t)(col + 1) * frames / opt.columns;
      }
      int end = col_end - pos < n ? (int)(col_end - pos) : n;
      if (end <= j)
        end = n; /* the last column takes the rest */
      float mn = a->wave_min[col], mx = a->wave_max[col];
      for (int c = 0; c < ch; c++) {
        const float *x = chans[c];
        for (int t = j; t < end; t++) {
          mn = x[t] < mn ? x[t] : mn;
          mx = x[t] > mx ? x[t] : mx;
        }
      }
      a->wave_min[col] = mn;
      a->wave_max[col] = mx;
      j = end;
    }

    welch_push(&w, chans, n);
    pos += n;
  }

  mb_loudness_result res;
  mb_loudness_get(loud, &res);
  a->integrated = res.integrated;
  a->lra = res.lra;
  a->true_peak = res.true_peak;
  a->sample_peak = res.sample_peak;
  a->short_term_max = res.short_term_max;
  a->plr = isfinite(res.integrated) ? res.true_peak - res.integrated : NAN;

  double all2 = 0;
  a->dc = 0;
  for (int c = 0; c < ch; c++) {
    all2 += sum2[c];
    a->rms_channels[c] = frames ? 10 * log10(sum2[c] / frames) : -HUGE_VAL;
    a->dc_channels[c] = frames ? sum[c] / frames : 0;
    if (fabs(a->dc_channels[c]) > a->dc)
      a->dc = fabs(a->dc_channels[c]);
  }
  a->rms = frames ? 10 * log10(all2 / ((double)frames * ch)) : -HUGE_VAL;
  a->dc_db = lin_db(a->dc);
  a->clipped = clipped;
  a->clip_runs = clip_runs;
  a->correlation = ch >= 2 && sum2[0] > 0 && sum2[1] > 0
                       ? sum_lr / sqrt(sum2[0] * sum2[1])
                       : NAN;
  a->mono_drop = NAN;
  if (mloud && isfinite(res.integrated)) {
    mb_loudness_result mres;
    mb_loudness_get(mloud, &mres);
    a->mono_drop = mres.integrated - res.integrated; /* -inf: gated out */
  }
  a->silence_threshold = SILENCE_DB;
  if (first_loud < 0) {
    a->head_silence = a->tail_silence = a->duration;
  } else {
    a->head_silence = (double)first_loud / rate;
    a->tail_silence = (double)(frames - 1 - last_loud) / rate;
  }
  for (int k = 0; k < opt.columns; k++)
    if (a->wave_min[k] > a->wave_max[k]) /* an empty column (short file) */
      a->wave_min[k] = a->wave_max[k] = 0;
  welch_bands(&w, rate, opt.bands, a->freq, a->spectrum);
  a->fft_size = w.n;

done:
  if (status)
    mb_analysis_free(a);
  welch_free(&w);
  mb_loudness_destroy(&loud);
  mb_loudness_destroy(&mloud);
  free(buf);
  mb_reader_close(r);
  return status;
}
