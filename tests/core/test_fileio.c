/* test_fileio.c - reader, writer, resampling, path checks and loudness
 * measurement against signals with known answers. Files live in a mkdtemp
 * folder under /tmp, removed at the end. */
#include <dirent.h>
#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "mb.h"

static int fails = 0;
#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                            \
      fputc('\n', stderr);                                                     \
      fails++;                                                                 \
    }                                                                          \
  } while (0)

static char dir[64];
static char err[MB_ERRLEN];

static const char *at(const char *name) {
  static char buf[8][sizeof dir + 260];
  static int i;
  i = (i + 1) % 8;
  snprintf(buf[i], sizeof buf[i], "%s/%s", dir, name);
  return buf[i];
}

static int exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* Entries in the test folder, and whether any looks like a temp file. */
static int count_entries(int *temps) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  if (temps)
    *temps = 0;
  while (d && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    n++;
    if (temps && strstr(e->d_name, ".tmp"))
      (*temps)++;
  }
  if (d)
    closedir(d);
  return n;
}

/* Open descriptors of this process: no path may leak one. */
static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  while (d && readdir(d)) n++;
  if (d) closedir(d);
  return n;
}

static void cleanup(void) {
  DIR *d = opendir(dir);
  struct dirent *e;
  while (d && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
      continue;
    unlink(at(e->d_name));
  }
  if (d)
    closedir(d);
  rmdir(dir);
}

/* A deterministic test signal in [-0.9, 0.9]: a sine plus a hash, so every
 * sample differs and near-full-scale values occur. */
static float sig(int c, int64_t i) {
  uint32_t h = (uint32_t)(i * 2654435761u) ^ (uint32_t)(c * 40503u);
  h ^= h >> 13;
  h *= 0x5bd1e995u;
  h ^= h >> 15;
  double noise = (double)(h & 0xffff) / 65535.0 - 0.5;
  return (float)(0.6 * sin(2 * M_PI * 997.0 * (double)i / 48000 + c) +
                 0.6 * noise);
}

/* Write `frames` of sig() (or of `gen` when given) through mb_writer. */
static int write_file(const char *path, int ch, double in_rate, double out_rate,
                      int bits, int64_t frames, float (*gen)(int, int64_t)) {
  mb_writer *w =
      mb_writer_open(path, ch, in_rate, out_rate, bits, -1, err, sizeof err);
  CHECK(w, "open %s: %s", path, err);
  if (!w)
    return -1;
  float buf[4][1000];
  float *p[4] = {buf[0], buf[1], buf[2], buf[3]};
  for (int64_t pos = 0; pos < frames;) {
    int n = frames - pos < 1000 ? (int)(frames - pos) : 1000;
    for (int c = 0; c < ch; c++)
      for (int i = 0; i < n; i++)
        buf[c][i] = (gen ? gen : sig)(c, pos + i);
    if (mb_writer_write(w, (const float *const *)p, n, err, sizeof err)) {
      CHECK(0, "write %s: %s", path, err);
      mb_writer_abort(w);
      return -1;
    }
    pos += n;
  }
  mb_status st = mb_writer_commit(w, err, sizeof err);
  CHECK(st == MB_OK, "commit %s: %s", path, err);
  return st ? -1 : 0;
}

static void test_round_trip(void) {
  static const struct {
    const char *name;
    int bits;
    double tol; /* half a step of the format: rounding to nearest */
  } cases[] = {
      {"rt16.wav", 16, 0.5 / 32768 * 1.000001},
      {"rt24.wav", 24, 0.5 / 8388608 * 1.000001},
      {"rt32.wav", 32, 0},
      {"rt16.aif", 16, 0.5 / 32768 * 1.000001},
      {"rt24.aiff", 24, 0.5 / 8388608 * 1.000001},
      {"rt32.aiff", 32, 0},
      {"rt16.flac", 16, 0.5 / 32768 * 1.000001},
      {"rt24.FLAC", 24, 0.5 / 8388608 * 1.000001},
  };
  const int64_t frames = 20011; /* crosses the 8192-frame chunks */
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const char *path = at(cases[k].name);
    if (write_file(path, 2, 48000, 0, cases[k].bits, frames, NULL))
      continue;
    mb_reader *r = mb_reader_open(path, err, sizeof err);
    CHECK(r, "reopen %s: %s", path, err);
    if (!r)
      continue;
    CHECK(mb_reader_channels(r) == 2, "%s channels", path);
    CHECK(mb_reader_rate(r) == 48000, "%s rate", path);
    CHECK(mb_reader_frames(r) == frames, "%s frames %lld", path,
          (long long)mb_reader_frames(r));
    CHECK(mb_reader_start(r, 48000, 777, err, sizeof err) == MB_OK, "%s", err);
    CHECK(mb_reader_length(r) == frames, "%s length", path);
    float a[777], b[777];
    float *p[2] = {a, b};
    double worst = 0, past = 0;
    for (int64_t pos = 0; pos < frames + 1000; pos += 777) {
      if (mb_reader_read(r, p, 777, err, sizeof err)) {
        CHECK(0, "read %s: %s", path, err);
        break;
      }
      for (int i = 0; i < 777; i++)
        for (int c = 0; c < 2; c++) {
          double x = p[c][i];
          if (pos + i < frames) {
            double e = fabs(x - sig(c, pos + i));
            if (e > worst)
              worst = e;
          } else if (fabs(x) > past) {
            past = fabs(x);
          }
        }
    }
    CHECK(worst <= cases[k].tol, "%s: error %g > %g", path, worst,
          cases[k].tol);
    CHECK(past == 0, "%s: %g after the end", path, past);
    mb_reader_close(r);
  }
  /* A WAV under 4 GiB is a plain RIFF WAV, not RF64. */
  FILE *f = fopen(at("rt16.wav"), "rb");
  char magic[5] = {0};
  if (f) {
    CHECK(fread(magic, 1, 4, f) == 4, "short WAV");
    fclose(f);
  }
  CHECK(!strcmp(magic, "RIFF"), "WAV starts with '%s'", magic);
}

static void test_refusals(void) {
  /* Truncated WAV: written whole, then cut inside the data chunk. */
  const char *cut = at("cut.wav");
  if (!write_file(cut, 2, 48000, 0, 16, 10000, NULL)) {
    struct stat st;
    stat(cut, &st);
    CHECK(truncate(cut, st.st_size - 4 * 3000) == 0, "truncate");
    mb_reader *r = mb_reader_open(cut, err, sizeof err);
    CHECK(!r, "truncated WAV accepted");
    mb_reader_close(r);
    CHECK(strstr(err, "is truncated: header says 10000 frames, file holds "
                      "7000") &&
              strstr(err, cut),
          "message: %s", err);
    mb_measurement m;
    CHECK(mb_measure_file(cut, &m, err, sizeof err) != MB_OK,
          "measure took a truncated WAV");
  }
  /* Truncated FLAC: the header still says the full length. */
  const char *cutf = at("cut.flac");
  if (!write_file(cutf, 2, 48000, 0, 16, 48000, NULL)) {
    struct stat st;
    stat(cutf, &st);
    CHECK(truncate(cutf, st.st_size / 2) == 0, "truncate");
    mb_reader *r = mb_reader_open(cutf, err, sizeof err);
    CHECK(!r, "truncated FLAC accepted");
    mb_reader_close(r);
    CHECK(strstr(err, "truncated") && strstr(err, cutf), "message: %s", err);
  }
  /* Not audio. */
  const char *txt = at("notes.txt");
  FILE *f = fopen(txt, "w");
  if (f) {
    fputs("these are not the samples you are looking for\n", f);
    fclose(f);
  }
  mb_reader *r = mb_reader_open(txt, err, sizeof err);
  CHECK(!r && strstr(err, "is not a sound file") && strstr(err, txt),
        "text file: %s", err);
  mb_reader_close(r);
  /* Zero bytes. */
  const char *empty = at("empty.wav");
  f = fopen(empty, "w");
  if (f)
    fclose(f);
  r = mb_reader_open(empty, err, sizeof err);
  CHECK(!r && strstr(err, "is empty") && strstr(err, empty), "empty: %s", err);
  mb_reader_close(r);
  /* A valid header with no frames. */
  const char *none = at("none.wav");
  if (!write_file(none, 1, 48000, 0, 24, 0, NULL)) {
    r = mb_reader_open(none, err, sizeof err);
    CHECK(!r && strstr(err, "no audio frames"), "no frames: %s", err);
    mb_reader_close(r);
  }
  /* Missing. */
  r = mb_reader_open(at("nowhere.wav"), err, sizeof err);
  CHECK(!r && strstr(err, "cannot open") &&
            strstr(err, "No such file or directory"),
        "missing: %s", err);
  mb_reader_close(r);
  /* No message may span lines. */
  CHECK(!strchr(err, '\n'), "multi-line message: %s", err);
}

static void test_writer_errors(void) {
  int before = count_entries(NULL);
  const char *p = at("no/such/folder/x.wav");
  mb_writer *w = mb_writer_open(p, 2, 48000, 0, 24, -1, err, sizeof err);
  CHECK(!w && strstr(err, "does not exist") && strstr(err, p),
        "missing folder: %s", err);
  CHECK(!exists(at("no")), "created a folder");
  w = mb_writer_open(at("x.mp4"), 2, 48000, 0, 24, -1, err, sizeof err);
  CHECK(!w && strstr(err, "'.mp4'") && strstr(err, ".flac"), "mp4: %s", err);
  w = mb_writer_open(at("x.opus"), 2, 44100, 0, 24, -1, err, sizeof err);
  CHECK(!w && strstr(err, "Opus takes 48000"), "opus at 44.1 kHz: %s", err);
  w = mb_writer_open(at("x.flac"), 2, 48000, 0, 32, -1, err, sizeof err);
  CHECK(!w && strstr(err, "FLAC has no 32-bit float; use bits 16 or 24"),
        "flac 32: %s", err);
  w = mb_writer_open(at("x.wav"), 2, 48000, 0, 20, -1, err, sizeof err);
  CHECK(!w && strstr(err, "20"), "bits 20: %s", err);
  w = mb_writer_open(at("x.wav"), MB_MAX_CHANNELS + 1, 48000, 0, 24, -1, err,
                     sizeof err);
  CHECK(!w, "too many channels accepted");
  CHECK(count_entries(NULL) == before, "refused writers left files");

  CHECK(mb_writer_format_for("a/b.WAV") == SF_FORMAT_WAV, "WAV");
  CHECK(mb_writer_format_for("b.AiFf") == SF_FORMAT_AIFF, "AiFf");
  CHECK(mb_writer_format_for("b.aif") == SF_FORMAT_AIFF, "aif");
  CHECK(mb_writer_format_for("b.flac") == SF_FORMAT_FLAC, "flac");
  CHECK(mb_writer_format_for("b.mp3") == SF_FORMAT_MPEG, "mp3");
  CHECK(mb_writer_format_for("b.Opus") == SF_FORMAT_OGG, "opus");
  CHECK(mb_writer_format_for("b.mp4") == 0, "mp4");
  CHECK(mb_writer_format_for("wav") == 0, "no extension");
  CHECK(mb_writer_format_for("dir.wav/x") == 0, "dot in folder");
}

static void test_commit_abort(void) {
  int before = count_entries(NULL), temps;
  const char *dest = at("aborted.wav");
  mb_writer *w = mb_writer_open(dest, 1, 48000, 44100, 16, -1, err, sizeof err);
  CHECK(w, "%s", err);
  if (w) {
    float x[512] = {0.25f};
    const float *p[1] = {x};
    CHECK(mb_writer_write(w, p, 512, err, sizeof err) == MB_OK, "%s", err);
    CHECK(count_entries(&temps) == before + 1 && temps == 1,
          "no temp file while writing");
    CHECK(!exists(dest), "destination exists before commit");
    mb_writer_abort(w);
  }
  CHECK(count_entries(NULL) == before, "abort left a file");
  mb_writer_abort(NULL);

  const char *kept = at("kept.aiff");
  write_file(kept, 2, 48000, 0, 24, 1000, NULL);
  CHECK(count_entries(&temps) == before + 1 && temps == 0 && exists(kept),
        "commit: %d entries (%d temp), want %d", count_entries(NULL), temps,
        before + 1);
  /* Committing over an existing file replaces it. */
  write_file(kept, 1, 48000, 0, 16, 10, NULL);
  mb_reader *r = mb_reader_open(kept, err, sizeof err);
  CHECK(r && mb_reader_frames(r) == 10 && mb_reader_channels(r) == 1,
        "replaced file: %s", r ? "wrong shape" : err);
  mb_reader_close(r);
  CHECK(count_entries(&temps) == before + 1 && temps == 0,
        "replace left files");
}

static float overs(int c, int64_t i) {
  static const float x[] = {1.5f, -1.5f, 0.5f, 1.0f, -1.0f};
  (void)c;
  return x[i % 5];
}

static void test_clipping(void) {
  static const struct {
    int bits;
    int64_t clipped;
  } cases[] = {{16, 2}, {24, 2}, {32, 0}};
  const float x[3] = {1.5f, -1.5f, 0.5f};
  for (int k = 0; k < 3; k++) {
    mb_writer *w = mb_writer_open(at("clip.wav"), 1, 48000, 0, cases[k].bits, -1,
                                  err, sizeof err);
    CHECK(w, "%s", err);
    if (!w)
      continue;
    const float *p[1] = {x};
    mb_writer_write(w, p, 3, err, sizeof err);
    CHECK(mb_writer_clipped(w) == cases[k].clipped, "%d-bit: %lld clipped",
          cases[k].bits, (long long)mb_writer_clipped(w));
    CHECK(mb_writer_peak(w) == 1.5, "%d-bit: peak %g", cases[k].bits,
          mb_writer_peak(w));
    CHECK(mb_writer_frames(w) == 3, "frames");
    mb_writer_commit(w, err, sizeof err);
  }
  /* +1.0 cannot be held by a 16-bit file (largest code 32767); -1.0 can.
   * The file holds saturated values, not wrapped ones. */
  mb_writer *w =
      mb_writer_open(at("clip.flac"), 1, 48000, 0, 16, -1, err, sizeof err);
  if (w) {
    float y[5];
    for (int i = 0; i < 5; i++)
      y[i] = overs(0, i);
    const float *p[1] = {y};
    mb_writer_write(w, p, 5, err, sizeof err);
    CHECK(mb_writer_clipped(w) == 3, "16-bit FLAC: %lld clipped",
          (long long)mb_writer_clipped(w));
    CHECK(mb_writer_commit(w, err, sizeof err) == MB_OK, "%s", err);
    mb_reader *r = mb_reader_open(at("clip.flac"), err, sizeof err);
    float z[5] = {0};
    float *q[1] = {z};
    if (r && !mb_reader_start(r, 48000, 5, err, sizeof err))
      mb_reader_read(r, q, 5, err, sizeof err);
    CHECK(z[0] == 32767.0f / 32768 && z[1] == -1.0f && z[2] == 0.5f &&
              z[3] == 32767.0f / 32768 && z[4] == -1.0f,
          "saturation: %g %g %g %g %g", z[0], z[1], z[2], z[3], z[4]);
    mb_reader_close(r);
  }
}

/* Amplitude of the f Hz component over x[0..n) (n whole periods). */
static double amplitude(const float *x, int n, double f, double rate,
                        double *phase) {
  double s = 0, c = 0;
  for (int i = 0; i < n; i++) {
    double w = 2 * M_PI * f * i / rate;
    s += x[i] * sin(w);
    c += x[i] * cos(w);
  }
  if (phase)
    *phase = atan2(c, s);
  return 2 * hypot(s, c) / n;
}

static float sine48(int c, int64_t i) {
  (void)c;
  return (float)(0.5 * sin(2 * M_PI * 1000.0 * (double)i / 48000));
}

static float sine441(int c, int64_t i) {
  (void)c;
  return (float)(0.5 * sin(2 * M_PI * 1000.0 * (double)i / 44100));
}

static float impulse441(int c, int64_t i) {
  (void)c;
  return i == 10000 ? 1.0f : 0.0f;
}

static void test_resampling(void) {
  /* Writer, 48k -> 44.1k: ceil(96001 * 44100 / 48000) = ceil(88200.92). */
  const char *path = at("down.wav");
  mb_writer *w = mb_writer_open(path, 1, 48000, 44100, 32, -1, err, sizeof err);
  CHECK(w, "%s", err);
  if (w) {
    float buf[4096];
    const float *p[1] = {buf};
    for (int64_t pos = 0; pos < 96001; pos += 4096) {
      int n = 96001 - pos < 4096 ? (int)(96001 - pos) : 4096;
      for (int i = 0; i < n; i++)
        buf[i] = sine48(0, pos + i);
      mb_writer_write(w, p, n, err, sizeof err);
    }
    CHECK(mb_writer_frames(w) == 88201, "frames before commit %lld",
          (long long)mb_writer_frames(w));
    CHECK(mb_writer_commit(w, err, sizeof err) == MB_OK, "%s", err);
  }
  mb_reader *r = mb_reader_open(path, err, sizeof err);
  CHECK(r, "%s", err);
  if (r) {
    CHECK(mb_reader_frames(r) == 88201 && mb_reader_rate(r) == 44100,
          "down.wav: %lld frames at %g", (long long)mb_reader_frames(r),
          mb_reader_rate(r));
    static float x[88201];
    float *p[1] = {x};
    mb_reader_start(r, 44100, 88201, err, sizeof err);
    mb_reader_read(r, p, 88201, err, sizeof err);
    /* 22050 samples = 500 whole periods, away from the edges. */
    double ph;
    double a = amplitude(x + 22050, 22050, 1000, 44100, &ph);
    CHECK(fabs(20 * log10(a / 0.5)) < 0.01, "1 kHz after 48k->44.1k: %.5f dB",
          20 * log10(a / 0.5));
    /* Sample 22050 is t = 0.5 s: a 1 kHz sine is back at phase 0. */
    CHECK(fabs(ph) < 2 * M_PI * 1000 * 0.05 / 44100, "phase %g rad", ph);
    mb_reader_close(r);
  }

  /* Reader, 44.1k -> 48k: length, amplitude, time alignment. */
  if (!write_file(at("sine441.wav"), 1, 44100, 0, 32, 44101, sine441) &&
      (r = mb_reader_open(at("sine441.wav"), err, sizeof err))) {
    CHECK(mb_reader_start(r, 48000, 1000, err, sizeof err) == MB_OK, "%s", err);
    CHECK(mb_reader_length(r) == 48002, "length %lld (want ceil 48001.09)",
          (long long)mb_reader_length(r));
    static float x[50000];
    for (int pos = 0; pos < 50000; pos += 1000) {
      float *p[1] = {x + pos};
      CHECK(mb_reader_read(r, p, 1000, err, sizeof err) == MB_OK, "%s", err);
    }
    double ph, a = amplitude(x + 12000, 24000, 1000, 48000, &ph);
    CHECK(fabs(20 * log10(a / 0.5)) < 0.01, "1 kHz after 44.1k->48k: %.5f dB",
          20 * log10(a / 0.5));
    /* x + 12000 is t = 0.25 s: phase 0 again. */
    CHECK(fabs(ph) < 2 * M_PI * 1000 * 0.05 / 48000, "phase %g rad", ph);
    double past = 0;
    for (int i = 48002; i < 50000; i++)
      if (fabs(x[i]) > past)
        past = fabs(x[i]);
    CHECK(past == 0, "%g after the end", past);
    mb_reader_close(r);
  }
  if (!write_file(at("imp441.wav"), 1, 44100, 0, 32, 20000, impulse441) &&
      (r = mb_reader_open(at("imp441.wav"), err, sizeof err))) {
    mb_reader_start(r, 48000, 30000, err, sizeof err);
    static float x[30000];
    float *p[1] = {x};
    mb_reader_read(r, p, 30000, err, sizeof err);
    /* 10000 * 48000 / 44100 = 10884.35: the peak is at 10884 and the
     * neighbours lean towards 10885. */
    int m = 0;
    for (int i = 1; i < 30000; i++)
      if (fabsf(x[i]) > fabsf(x[m]))
        m = i;
    CHECK(m == 10884 && x[10885] > x[10883], "impulse at %d", m);
    mb_reader_close(r);
  }
}

static void test_same_file(void) {
  char a[512], buf[512];
  snprintf(a, sizeof a, "%s", at("rt16.wav"));
  CHECK(mb_same_file(a, a), "same path");
  snprintf(buf, sizeof buf, "%s/./rt16.wav", dir);
  CHECK(mb_same_file(a, buf), "with ./");
  CHECK(!mb_same_file(a, at("rt24.wav")), "different files");
  CHECK(!mb_same_file(a, at("missing.wav")), "one missing");
  snprintf(buf, sizeof buf, "%s/../%s/missing.wav", dir, strrchr(dir, '/') + 1);
  CHECK(mb_same_file(at("missing.wav"), buf), "both missing, same place");
  CHECK(!mb_same_file(at("missing.wav"), at("missing2.wav")),
        "both missing, different names");
  CHECK(link(a, at("hard.wav")) == 0 && mb_same_file(a, at("hard.wav")),
        "hard link");
  CHECK(symlink(a, at("soft.wav")) == 0 && mb_same_file(at("soft.wav"), a),
        "symbolic link");
  char cwd[512];
  if (getcwd(cwd, sizeof cwd) && chdir(dir) == 0) {
    CHECK(mb_same_file("rt16.wav", a), "relative against absolute");
    CHECK(mb_same_file("new.wav", at("new.wav")), "relative, missing");
    CHECK(chdir(cwd) == 0, "chdir back");
  }
}

static float sine_20(int c, int64_t i) {
  (void)c;
  return (float)(0.1 * sin(2 * M_PI * 1000.0 * (double)i / 48000));
}

static float silence(int c, int64_t i) {
  (void)c;
  (void)i;
  return 0;
}

static void test_measure(void) {
  /* EBU Tech 3341 case 1 at -20: a stereo 1 kHz sine at -20 dBFS reads
   * -20.0 LUFS +-0.1 (the K-weighting's gain at 1 kHz about cancels the
   * -0.691 offset); ffmpeg's ebur128 filter reads the same file the same. */
  mb_measurement m;
  if (!write_file(at("m20.wav"), 2, 48000, 0, 32, 480000, sine_20)) {
    CHECK(mb_measure_file(at("m20.wav"), &m, err, sizeof err) == MB_OK, "%s",
          err);
    CHECK(fabs(m.integrated + 20) < 0.1, "integrated %g", m.integrated);
    CHECK(fabs(m.momentary_max + 20) < 0.1, "momentary max %g",
          m.momentary_max);
    CHECK(fabs(m.short_term_max + 20) < 0.1, "short-term max %g",
          m.short_term_max);
    CHECK(m.lra < 0.5, "lra %g", m.lra);
    CHECK(fabs(m.sample_peak + 20) < 0.01, "sample peak %g", m.sample_peak);
    CHECK(fabs(m.true_peak + 20) < 0.1, "true peak %g", m.true_peak);
    CHECK(m.duration == 10 && m.rate == 48000 && m.channels == 2 &&
              m.frames == 480000,
          "shape %g s %d Hz %d ch", m.duration, m.rate, m.channels);
  }
  if (!write_file(at("quiet.flac"), 1, 44100, 0, 16, 44100, silence)) {
    CHECK(mb_measure_file(at("quiet.flac"), &m, err, sizeof err) == MB_OK, "%s",
          err);
    CHECK(isinf(m.integrated) && m.integrated < 0 && isinf(m.true_peak) &&
              isinf(m.sample_peak),
          "silence: %g LUFS, %g dBTP", m.integrated, m.true_peak);
  }
  CHECK(mb_measure_file(at("notes.txt"), &m, err, sizeof err) ==
                MB_ERR_FORMAT &&
            strstr(err, "not a sound file"),
        "measure text: %s", err);
  CHECK(mb_measure_file(at("nowhere.wav"), &m, err, sizeof err) == MB_ERR_IO,
        "measure missing: %s", err);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/moonbus-fileio-XXXXXX");
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  int fds = count_fds();
  test_round_trip();
  test_refusals();
  test_writer_errors();
  test_commit_abort();
  test_clipping();
  test_resampling();
  test_same_file();
  test_measure();
  CHECK(count_fds() == fds, "%d descriptors open, %d before", count_fds(),
        fds);
  cleanup();
  if (fails) {
    fprintf(stderr, "test_fileio: %d check(s) failed\n", fails);
    return 1;
  }
  printf("test_fileio: all checks passed\n");
  return 0;
}
