/* measure.c - loudness of a file (ITU-R BS.1770-4 / EBU R128, with the
 * kernel in modules/dsp/loudness.h).
 *
 * The file is opened through mb_reader, so it is refused for exactly the
 * same reasons (missing, not audio, empty, truncated) as a graph input. */
#include "fileio.h"
#include "mb.h"
#include "dsp/loudness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Frames per read. */
#define CHUNK 16384

/* Channel weights: modules/dsp/loudness.h, mb_loudness_default_weight(),
 * which keeps the layouts measured here before (libebur128's L R C LFE Ls
 * Rs for 1, 2, 3 and 6 channels; quad L R Ls Rs; 5.0 L R C Ls Rs; 6.1 with
 * a back centre at 1.0; 7.1 with the sides at 1.41; channels past 8 at
 * 1.0 rather than dropped).
 *
 * Integrated loudness and LRA are exact: every 400 ms block and 3 s window
 * is kept (16 bytes per 100 ms, about 0.6 MB per hour of audio; the lists
 * are sized from the file's length). */
static void say(char *err, size_t errlen, const char *what, const char *path) {
  if (err && errlen)
    snprintf(err, errlen, "cannot measure '%s': %s", path, what);
}

mb_status mb_measure_file(const char *path, mb_measurement *m, char *err,
                          size_t errlen) {
  return mb_measure_loudness(path, m, 1, err, errlen);
}

mb_status mb_measure_loudness(const char *path, mb_measurement *m,
                              int true_peak, char *err, size_t errlen) {
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
  float *planar = malloc(sizeof(float) * (size_t)CHUNK * (size_t)ch);
  float *chans[MB_MAX_CHANNELS];
  mb_loudness *l = NULL;
  char why[MB_ERRLEN];
  mb_status status = MB_OK;
  if (!planar) {
    say(err, errlen, "out of memory", path);
    status = MB_ERR_NOMEM;
    goto done;
  }
  status = mb_loudness_create(&l, rate, ch, frames,
                              true_peak ? MB_LOUDNESS_TRUE_PEAK : 0, why,
                              sizeof why);
  if (status) {
    say(err, errlen, why, path);
    goto done;
  }
  for (int c = 0; c < ch; c++)
    chans[c] = planar + (size_t)c * CHUNK;
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
    mb_loudness_feed(l, (const float *const *)chans, 0, n);
    pos += n;
  }

  mb_loudness_result res;
  mb_loudness_get(l, &res);
  m->integrated = res.integrated;
  m->lra = res.lra;
  m->true_peak = res.true_peak;
  m->sample_peak = res.sample_peak;
  m->momentary_max = res.momentary_max;
  m->short_term_max = res.short_term_max;
  m->rate = rate;
  m->channels = ch;
  m->frames = frames;
  m->duration = (double)frames / rate;

done:
  mb_loudness_destroy(&l);
  free(planar);
  mb_reader_close(r);
  return status;
}
