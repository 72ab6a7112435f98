/* measure.c - loudness of a file (ITU-R BS.1770-4 / EBU R128 via libebur128).
 *
 * The file is opened through mb_reader, so it is refused for exactly the
 * same reasons (missing, not audio, empty, truncated) as a graph input. */
#include "fileio.h"
#include "mb.h"

#include <ebur128.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One read: ten 100 ms steps. */
#define STEPS_PER_READ 10

/* libebur128 maps channels 0..5 as L R C LFE(unused) Ls Rs, which is right
 * for 1, 2, 3 and 6 (5.1, WAV order) channels. Without a channel mask we
 * assume the usual layouts for the others: quad (L R Ls Rs), 5.0 (L R C Ls
 * Rs), 6.1 (back centre, weight 1.0) and 7.1 (sides at +-90, weight 1.41);
 * channels past 8 count with weight 1.0 rather than being dropped. */
static int map_channels(ebur128_state *st, int channels) {
  static const int quad[4] = {EBUR128_LEFT, EBUR128_RIGHT,
                              EBUR128_LEFT_SURROUND, EBUR128_RIGHT_SURROUND};
  static const int five[5] = {EBUR128_LEFT, EBUR128_RIGHT, EBUR128_CENTER,
                              EBUR128_LEFT_SURROUND, EBUR128_RIGHT_SURROUND};
  int e = EBUR128_SUCCESS;
  if (channels == 4)
    for (unsigned c = 0; c < 4; c++)
      e |= ebur128_set_channel(st, c, quad[c]);
  else if (channels == 5)
    for (unsigned c = 0; c < 5; c++)
      e |= ebur128_set_channel(st, c, five[c]);
  else if (channels == 7)
    e |= ebur128_set_channel(st, 6, EBUR128_Mp180);
  else if (channels >= 8) {
    e |= ebur128_set_channel(st, 6, EBUR128_Mp090);
    e |= ebur128_set_channel(st, 7, EBUR128_Mm090);
    for (unsigned c = 8; c < (unsigned)channels; c++)
      e |= ebur128_set_channel(st, c, EBUR128_CENTER);
  }
  return e;
}

/* No EBUR128_MODE_HISTOGRAM: it rounds integrated loudness to its 0.1 LU
 * bins (a 1 kHz sine measured -19.95 instead of -19.993 LUFS; ffmpeg:
 * -20.00). Keeping every 100 ms block costs 16 bytes per block, about
 * 0.6 MB per hour of audio. */
static void say(char *err, size_t errlen, const char *what, const char *path) {
  if (err && errlen)
    snprintf(err, errlen, "cannot measure '%s': %s", path, what);
}

static double to_db(double x) { return x > 0 ? 20.0 * log10(x) : -HUGE_VAL; }

mb_status mb_measure_file(const char *path, mb_measurement *m, char *err,
                          size_t errlen) {
  memset(m, 0, sizeof *m);
  mb_reader *r = mb_reader_open(path, err, errlen);
  if (!r) {
    /* The reader's message says which; the status follows it. */
    struct stat st;
    int readable = path && stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
                   access(path, R_OK) == 0;
    return readable ? MB_ERR_FORMAT : MB_ERR_IO;
  }
  int ch = mb_reader_channels(r);
  int rate = (int)mb_reader_rate(r);
  int64_t frames = mb_reader_frames(r);
  /* Momentary and short-term maxima are taken every 100 ms (EBU Tech 3341
   * asks for at least 10 Hz); boundaries are floor(k * rate / 10), so odd
   * rates do not drift. */
  int max_step = rate / 10 + 1;
  int chunk = max_step * STEPS_PER_READ;
  float *planar = malloc(sizeof(float) * (size_t)chunk * (size_t)ch);
  float *inter = malloc(sizeof(float) * (size_t)chunk * (size_t)ch);
  float *chans[MB_MAX_CHANNELS];
  ebur128_state *st = ebur128_init(
      (unsigned)ch, (unsigned long)rate,
      EBUR128_MODE_I | EBUR128_MODE_LRA | EBUR128_MODE_TRUE_PEAK |
          EBUR128_MODE_SAMPLE_PEAK | EBUR128_MODE_M | EBUR128_MODE_S);
  mb_status status = MB_OK;
  if (!planar || !inter || !st) {
    say(err, errlen, "out of memory", path);
    status = MB_ERR_NOMEM;
    goto done;
  }
  if (map_channels(st, ch) != EBUR128_SUCCESS) {
    say(err, errlen, "bad channel map", path);
    status = MB_ERR_ARG;
    goto done;
  }
  for (int c = 0; c < ch; c++)
    chans[c] = planar + (size_t)c * chunk;
  status = mb_reader_start(r, rate, chunk, err, errlen);
  if (status)
    goto done;

  double mmax = -HUGE_VAL, smax = -HUGE_VAL;
  int64_t pos = 0, k = 1;
  while (pos < frames) {
    /* Up to the end of the STEPS_PER_READ-th next boundary. */
    int64_t end = (k + STEPS_PER_READ - 1) * rate / 10;
    if (end > frames)
      end = frames;
    int n = (int)(end - pos);
    status = mb_reader_read(r, chans, n, err, errlen);
    if (status)
      goto done;
    for (int c = 0; c < ch; c++) {
      const float *s = chans[c];
      for (int i = 0; i < n; i++)
        inter[(size_t)i * ch + c] = s[i];
    }
    for (int off = 0; off < n; k++) {
      int64_t bound = k * rate / 10;
      int step = (int)((bound < end ? bound : end) - (pos + off));
      if (ebur128_add_frames_float(st, inter + (size_t)off * ch,
                                   (size_t)step) != EBUR128_SUCCESS) {
        say(err, errlen, "libebur128 failed", path);
        status = MB_ERR_NOMEM;
        goto done;
      }
      off += step;
      if (pos + off < bound)
        break; /* the file ended inside this step */
      double v;
      if (ebur128_loudness_momentary(st, &v) == EBUR128_SUCCESS && v > mmax)
        mmax = v;
      if (ebur128_loudness_shortterm(st, &v) == EBUR128_SUCCESS && v > smax)
        smax = v;
    }
    pos = end;
  }

  double v, tp = 0, sp = 0;
  m->integrated =
      ebur128_loudness_global(st, &v) == EBUR128_SUCCESS ? v : -HUGE_VAL;
  m->lra = ebur128_loudness_range(st, &v) == EBUR128_SUCCESS ? v : 0;
  for (int c = 0; c < ch; c++) {
    if (ebur128_true_peak(st, (unsigned)c, &v) == EBUR128_SUCCESS && v > tp)
      tp = v;
    if (ebur128_sample_peak(st, (unsigned)c, &v) == EBUR128_SUCCESS && v > sp)
      sp = v;
  }
  m->true_peak = to_db(tp);
  m->sample_peak = to_db(sp);
  m->momentary_max = mmax;
  m->short_term_max = smax;
  m->rate = rate;
  m->channels = ch;
  m->frames = frames;
  m->duration = (double)frames / rate;

done:
  if (st)
    ebur128_destroy(&st);
  free(planar);
  free(inter);
  mb_reader_close(r);
  return status;
}
