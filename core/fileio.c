/* fileio.c - sound files in and out: libsndfile for the containers, libsoxr
 * (very high quality) when the file's rate differs from the graph's.
 *
 * Lengths across a rate change are defined once (resampled_length): a
 * signal of n frames at rate a lasts ceil(n * b / a) frames at rate b. soxr
 * itself delivers round(n * b / a) frames, time-aligned with its input (it
 * compensates its own filter delay), so both the reader and the writer pad
 * the last frame with zeros when ceil and round differ. */
#define _GNU_SOURCE /* sync_file_range */
#include "fileio.h"
#include "../modules/dsp/simd.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <limits.h>
#include <math.h>
#include <sndfile.h>
#include <soxr.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __SSSE3__
#include <tmmintrin.h>
#endif
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define HAVE_MXCSR 1
#endif

/* Frames per libsndfile / soxr call: large enough that per-call overhead
 * vanishes, small enough to stay in L2 for stereo. */
#define CHUNK 8192
/* Raw PCM (see raw_pcm_bytes) moves between files and memory STAGE bytes
 * at a time: writing a 57 MB file in 16 KB calls cost 20 ms more CPU than
 * in 256 KB calls (measured on one core), reading likewise. */
#define STAGE (256 << 10)

#if defined(__GNUC__)
#define PRINTF_LIKE(a, b) __attribute__((format(printf, a, b)))
#else
#define PRINTF_LIKE(a, b)
#endif

static void fail(char *err, size_t errlen, const char *fmt, ...)
    PRINTF_LIKE(3, 4);

static void fail(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* libsndfile's messages end with a full stop and may span lines; ours are
 * one line, so copy it flattened and without the stop. */
static const char *sf_message(const char *s, char *buf, size_t len) {
  size_t n = 0;
  for (; s && *s && n + 1 < len; s++)
    buf[n++] = (*s == '\n') ? ' ' : *s;
  while (n > 0 && (buf[n - 1] == '.' || buf[n - 1] == ' '))
    n--;
  buf[n] = '\0';
  return buf;
}

static char *dupstr(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

/* ceil(n * to / from), exact in integers when both rates are whole numbers
 * (they always are for files); n * to stays below 2^63 for any real file. */
static int64_t resampled_length(int64_t n, double from, double to) {
  if (from == to)
    return n;
  if (from == floor(from) && to == floor(to) && to < 1e7 &&
      n < INT64_MAX / 10000000) {
    int64_t a = (int64_t)from, b = (int64_t)to;
    return (n * b + a - 1) / a;
  }
  /* The tolerance keeps an exact ratio from gaining a frame by rounding. */
  return (int64_t)ceil((double)n * to / from - 1e-9);
}

static soxr_t new_resampler(double from, double to, int channels,
                            const char **why) {
  soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
  soxr_quality_spec_t q = soxr_quality_spec(SOXR_VHQ, 0);
  soxr_error_t e = NULL;
  soxr_t s = soxr_create(from, to, (unsigned)channels, &e, &io, &q, NULL);
  if (!s)
    *why = e ? e : "cannot create resampler";
  return s;
}

/* Bytes per frame of an uncompressed encoding; 0 for compressed ones. */
static int pcm_bytes(int format) {
  switch (format & SF_FORMAT_SUBMASK) {
  case SF_FORMAT_PCM_S8:
  case SF_FORMAT_PCM_U8:
  case SF_FORMAT_ULAW:
  case SF_FORMAT_ALAW:
    return 1;
  case SF_FORMAT_PCM_16:
    return 2;
  case SF_FORMAT_PCM_24:
    return 3;
  case SF_FORMAT_PCM_32:
  case SF_FORMAT_FLOAT:
    return 4;
  case SF_FORMAT_DOUBLE:
    return 8;
  default:
    return 0;
  }
}

/* ---------------------------------------------------------------------
 * Opening and validating a file to read (shared by the reader and, through
 * it, mb_measure_file).
 * ------------------------------------------------------------------- */

/* libsndfile 1.2 opens a WAV/AIFF/W64/RF64 whose data chunk is cut short
 * without complaint: SF_INFO.frames is what the file still holds. The only
 * trace is in its parse log, one line per container (as of 1.2.0):
 *   WAV   "data : 192000 (should be 99956)"       declared, available bytes
 *   AIFF  " SSND : 192008 (should be 99954)"      both include 8 bytes
 *   W64   "riff : 192104 (should be 100000)"      whole file
 *   RF64  "*** Calculated frame count 24974 does not match value from
 *          'ds64' chunk of 48000."
 * A data size of 0xFFFFFFFF is a streaming writer's placeholder (ffmpeg to a
 * pipe), not a truncation. Returns the header's frame count, or -1 when the
 * log shows nothing missing; *declared_bytes is set instead when only a
 * byte count is known (an encoding without a fixed frame size). */
#define LOGLEN 16384
static int64_t declared_frames(SNDFILE *sf, const SF_INFO *info,
                               int64_t *declared_bytes) {
  char *buf = calloc(1, LOGLEN);
  *declared_bytes = -1;
  if (!buf)
    return -1;
  sf_command(sf, SFC_GET_LOG_INFO, buf, LOGLEN - 1);
  int bpf = pcm_bytes(info->format) * info->channels;
  int major = info->format & SF_FORMAT_TYPEMASK;
  int64_t frames = -1;
  for (char *line = buf; line && *line;) {
    char *next = strchr(line, '\n');
    if (next)
      *next++ = '\0';
    long long a, b;
    const char *p;
    if ((p = strstr(line, "data : ")) &&
        sscanf(p, "data : %lld (should be %lld)", &a, &b) == 2) {
      if (a > b && a != 0xFFFFFFFFLL) {
        if (bpf)
          frames = a / bpf;
        else
          *declared_bytes = a;
      }
    } else if ((p = strstr(line, "SSND : ")) &&
               sscanf(p, "SSND : %lld (should be %lld)", &a, &b) == 2) {
      if (a > b && a != 0xFFFFFFFFLL) {
        if (bpf)
          frames = (a - 8) / bpf;
        else
          *declared_bytes = a - 8;
      }
    } else if (major == SF_FORMAT_W64 && (p = strstr(line, "riff : ")) &&
               sscanf(p, "riff : %lld (should be %lld)", &a, &b) == 2) {
      if (a > b && bpf)
        frames = info->frames + (a - b) / bpf;
    } else if ((p = strstr(line, "Calculated frame count ")) &&
               sscanf(p,
                      "Calculated frame count %lld does not match value "
                      "from 'ds64' chunk of %lld",
                      &b, &a) == 2) {
      if (a > b)
        frames = a;
    }
    line = next;
  }
  free(buf);
  if (frames >= 0 && frames <= info->frames)
    frames = -1;
  return frames;
}

/* Frames a decoder actually yields, by decoding the whole file (only on the
 * error path, to report what a damaged compressed file holds). */
static int64_t count_frames(const char *path) {
  SF_INFO info = {0};
  SNDFILE *sf = sf_open(path, SFM_READ, &info);
  if (!sf)
    return 0;
  float *buf = malloc(sizeof(float) * CHUNK * (size_t)info.channels);
  int64_t n = 0;
  sf_count_t k;
  while (buf && (k = sf_readf_float(sf, buf, CHUNK)) > 0)
    n += k;
  free(buf);
  sf_close(sf);
  return n;
}

/* Compressed streams (FLAC, Ogg, MP3) carry a frame count in a header that a
 * cut file still has. Decoding the last stretch shows whether the audio is
 * really there, at the cost of one seek. MP3 without a Xing/LAME header only
 * has an estimate from the bit rate (measured off by up to 0.3% here), so
 * there we only ask that audio exists 2% (at least half a second) before the
 * estimated end; the reader pads or trims the rest. Returns 1 when the
 * stream ends early. */
static int stream_cut_short(SNDFILE *sf, const SF_INFO *info) {
  int64_t back = 1024;
  int mp3 = (info->format & SF_FORMAT_TYPEMASK) == SF_FORMAT_MPEG;
  if (mp3) {
    back = info->frames / 50;
    if (back < info->samplerate / 2)
      back = info->samplerate / 2;
  }
  if (back > info->frames)
    back = info->frames;
  int64_t pos = info->frames - back;
  float *buf = malloc(sizeof(float) * 1024 * (size_t)info->channels);
  if (!buf)
    return 0;
  int cut = 0;
  if (sf_seek(sf, pos, SEEK_SET) != pos) {
    cut = 1;
  } else {
    int64_t got = 0;
    sf_count_t k;
    while (got < back && (k = sf_readf_float(sf, buf, 1024)) > 0)
      got += k;
    cut = mp3 ? got == 0 : got < back;
  }
  free(buf);
  return cut;
}

/* Open `path` for reading and refuse what the engine cannot use. One line
 * in err, naming the file. */
static SNDFILE *open_checked(const char *path, SF_INFO *info, char *err,
                             size_t errlen) {
  char msg[256];
  if (!path || !*path) {
    fail(err, errlen, "cannot open '': no file name given");
    return NULL;
  }
  /* Our own open() first: errno gives a clearer reason than libsndfile's
   * "System error" and we learn about directories and empty files. */
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fail(err, errlen, "cannot open '%s': %s", path, strerror(errno));
    return NULL;
  }
  struct stat st;
  int serr = fstat(fd, &st) ? errno : 0;
  close(fd);
  if (serr) {
    fail(err, errlen, "cannot open '%s': %s", path, strerror(serr));
    return NULL;
  }
  if (S_ISDIR(st.st_mode)) {
    fail(err, errlen, "cannot open '%s': %s", path, strerror(EISDIR));
    return NULL;
  }
  if (S_ISREG(st.st_mode) && st.st_size == 0) {
    fail(err, errlen, "'%s' is empty (0 bytes)", path);
    return NULL;
  }

  memset(info, 0, sizeof *info);
  SNDFILE *sf = sf_open(path, SFM_READ, info);
  if (!sf) {
    int e = sf_error(NULL);
    sf_message(sf_strerror(NULL), msg, sizeof msg);
    if (e == SF_ERR_UNRECOGNISED_FORMAT)
      fail(err, errlen, "'%s' is not a sound file libsndfile can read", path);
    else if (e == SF_ERR_UNSUPPORTED_ENCODING)
      fail(err, errlen, "'%s' uses an encoding libsndfile cannot read (%s)",
           path, msg);
    else if (e == SF_ERR_SYSTEM)
      fail(err, errlen, "cannot read '%s': %s", path, msg);
    else /* SF_ERR_MALFORMED_FILE and libsndfile's own, finer codes */
      fail(err, errlen, "'%s' is damaged or truncated (%s)", path, msg);
    return NULL;
  }
  if (info->channels < 1 || info->channels > MB_MAX_CHANNELS) {
    fail(err, errlen, "'%s' has %d channels; moonbus handles 1 to %d", path,
         info->channels, MB_MAX_CHANNELS);
    goto refuse;
  }
  /* 1 Hz .. 768 kHz: the graph's own limits; a header claiming more is
   * damaged (and would overflow buffer arithmetic downstream). */
  if (info->samplerate < 1 || info->samplerate > 768000) {
    fail(err, errlen, "'%s' has an invalid sample rate (%d Hz; 1 .. 768000)",
         path, info->samplerate);
    goto refuse;
  }
  int64_t bytes = -1, said = declared_frames(sf, info, &bytes);
  if (said >= 0) {
    fail(err, errlen,
         "'%s' is truncated: header says %lld frames, file holds %lld", path,
         (long long)said, (long long)info->frames);
    goto refuse;
  }
  if (bytes >= 0) {
    fail(err, errlen,
         "'%s' is truncated: header says %lld bytes of audio, "
         "file holds fewer",
         path, (long long)bytes);
    goto refuse;
  }
  if (info->frames <= 0) {
    fail(err, errlen, "'%s' is empty (no audio frames)", path);
    goto refuse;
  }
  /* FLAC reports PCM_16/24 but is a compressed stream all the same. */
  if (!pcm_bytes(info->format) ||
      (info->format & SF_FORMAT_TYPEMASK) == SF_FORMAT_FLAC) {
    if (stream_cut_short(sf, info)) {
      fail(err, errlen,
           "'%s' is truncated: header says %lld frames, file holds %lld", path,
           (long long)info->frames, (long long)count_frames(path));
      goto refuse;
    }
    if (sf_seek(sf, 0, SEEK_SET) != 0) {
      fail(err, errlen, "cannot read '%s': cannot seek back to the start",
           path);
      goto refuse;
    }
  }
  return sf;
refuse:
  sf_close(sf);
  return NULL;
}

/* ---------------------------------------------------------------------
 * Background I/O
 *
 * Decoding, resampling and encoding run on a worker thread per file while
 * the render thread computes, so a render costs max(DSP, I/O) rather than
 * their sum on a machine with a spare core. The worker and the render
 * thread share a ring of planar slots; only the slot counters are locked.
 * A reader's worker reads ahead (zeros past the end, as a direct read
 * would); a writer's worker writes behind. The worker's first error is
 * kept and handed to the render thread at its next call, so errors still
 * surface in order with the same messages.
 * ------------------------------------------------------------------- */

#define PIPE_SLOTS 4
#define PIPE_FRAMES 32768

typedef struct io_pipe {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int channels;
  float *mem;                  /* PIPE_SLOTS * channels * PIPE_FRAMES */
  int fill[PIPE_SLOTS];        /* frames held by each slot */
  int64_t made, used;          /* slots produced and consumed so far */
  int off;                     /* render thread's offset into its slot */
  int stop;                    /* ask the worker to leave */
  int running;                 /* a worker thread is attached */
  int closing;                 /* writer: no more slots will come */
  mb_status st;                /* the worker's error, MB_OK if none */
  char err[MB_ERRLEN];
  unsigned csr;                /* render thread's MXCSR (FTZ/DAZ) */
} io_pipe;

static float *slot_chan(io_pipe *p, int64_t slot, int c) {
  return p->mem + ((size_t)(slot % PIPE_SLOTS) * (size_t)p->channels + c) *
                      PIPE_FRAMES;
}

static io_pipe *pipe_new(int channels) {
  io_pipe *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  p->channels = channels;
  p->mem = malloc(sizeof(float) * PIPE_SLOTS * PIPE_FRAMES * (size_t)channels);
  if (!p->mem || pthread_mutex_init(&p->mu, NULL)) {
    free(p->mem);
    free(p);
    return NULL;
  }
  if (pthread_cond_init(&p->cv, NULL)) {
    pthread_mutex_destroy(&p->mu);
    free(p->mem);
    free(p);
    return NULL;
  }
#ifdef HAVE_MXCSR
  p->csr = _mm_getcsr();
#endif
  return p;
}

static int pipe_start(io_pipe *p, void *(*fn)(void *), void *arg) {
  p->stop = 0;
  p->running = pthread_create(&p->thread, NULL, fn, arg) == 0;
  return p->running;
}

/* Stop the worker, if any (it finishes the slot in hand). */
static void pipe_stop(io_pipe *p) {
  if (!p->running)
    return;
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  pthread_join(p->thread, NULL);
  p->running = 0;
}

/* Stop the worker and free everything. */
static void pipe_free(io_pipe *p) {
  if (!p)
    return;
  pipe_stop(p);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  free(p->mem);
  free(p);
}

static void pipe_worker_setup(const io_pipe *p) {
#ifdef HAVE_MXCSR
  _mm_setcsr(p->csr);
#else
  (void)p;
#endif
}

/* ---------------------------------------------------------------------
 * Reader
 * ------------------------------------------------------------------- */

struct mb_reader {
  char *path;
  SNDFILE *sf;
  SF_INFO info;
  /* Set by mb_reader_start. */
  int started;
  double rate;
  int64_t length;    /* frames delivered at `rate` before the zeros */
  int64_t delivered; /* of those, delivered so far */
  int64_t file_pos;  /* frames taken from the file */
  int file_end;      /* the decoder has nothing more */
  int drained;       /* the resampler has nothing more */
  float *ibuf;       /* interleaved, CHUNK frames from the file */
  size_t in_pos, in_len;
  float *obuf; /* interleaved, CHUNK frames from soxr */
  soxr_t soxr;
  io_pipe *pipe; /* reading ahead on a worker (mb_reader_prefetch) */
  int raw_bytes;       /* 2 or 3: little-endian PCM decoded here, else 0 */
  unsigned char *raw;  /* up to STAGE bytes of it, read ahead */
  size_t raw_pos, raw_len; /* bytes of raw taken, and filled */
};

mb_reader *mb_reader_open(const char *path, char *err, size_t errlen) {
  SF_INFO info;
  SNDFILE *sf = open_checked(path, &info, err, errlen);
  if (!sf)
    return NULL;
  mb_reader *r = calloc(1, sizeof *r);
  if (r)
    r->path = dupstr(path);
  if (!r || !r->path) {
    free(r);
    sf_close(sf);
    fail(err, errlen, "cannot open '%s': out of memory", path);
    return NULL;
  }
  r->sf = sf;
  r->info = info;
  return r;
}

/* ---- PCM in and out without libsndfile's conversions ---------------------
 *
 * libsndfile converts 16- and 24-bit PCM one sample at a time; in a fast
 * render that was a third of the reader's and the writer's work. For the
 * formats whose bytes are plain little-endian PCM (WAV, WAVEX, RF64) we move
 * the bytes with sf_read_raw / sf_write_raw, which keep libsndfile's header
 * and frame count, and convert them here, to the same values: k / 2^15 and
 * k / 2^23 are exact in float. */
static int raw_pcm_bytes(int format) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  const int major = format & SF_FORMAT_TYPEMASK,
            sub = format & SF_FORMAT_SUBMASK,
            endian = format & SF_FORMAT_ENDMASK;
  if ((major != SF_FORMAT_WAV && major != SF_FORMAT_WAVEX &&
       major != SF_FORMAT_RF64) ||
      (endian != SF_ENDIAN_FILE && endian != SF_ENDIAN_LITTLE))
    return 0;
  return sub == SF_FORMAT_PCM_16 ? 2 : sub == SF_FORMAT_PCM_24 ? 3 : 0;
#else
  (void)format;
  return 0;
#endif
}

/* n samples of `bytes`-byte PCM -> float in [-1, 1). */
static void pcm_to_float(const unsigned char *b, int bytes, float *out,
                         size_t n) {
  size_t i = 0;
  if (bytes == 2) {
    for (; i < n; i++) {
      int16_t v;
      memcpy(&v, b + 2 * i, 2);
      out[i] = (float)v * (1.0f / 32768.0f);
    }
    return;
  }
#ifdef __SSSE3__
  /* 4 samples per step: bytes 3k..3k+2 to the top of lane k, shifted down
   * with their sign; the 16-byte load stays inside the 3n bytes */
  const __m128i to_lanes =
      _mm_setr_epi8(-1, 0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11);
  const __m128 scale = _mm_set1_ps(1.0f / 8388608.0f);
  for (; i + 6 <= n; i += 4) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(b + 3 * i));
    v = _mm_srai_epi32(_mm_shuffle_epi8(v, to_lanes), 8);
    _mm_storeu_ps(out + i, _mm_mul_ps(_mm_cvtepi32_ps(v), scale));
  }
#endif
  for (; i < n; i++) {
    const unsigned char *p = b + 3 * i;
    const uint32_t u = (uint32_t)p[0] << 8 | (uint32_t)p[1] << 16 |
                       (uint32_t)p[2] << 24;
    out[i] = (float)((int32_t)u >> 8) * (1.0f / 8388608.0f);
  }
}

/* n integers of the 24-bit range -> 3-byte little-endian PCM. emit()
 * packs whole vectors itself where it can (SSSE3); this does the rest. */
static void pack_pcm24(const int32_t *q, unsigned char *b, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const uint32_t u = (uint32_t)q[i];
    b[3 * i] = (unsigned char)u;
    b[3 * i + 1] = (unsigned char)(u >> 8);
    b[3 * i + 2] = (unsigned char)(u >> 16);
  }
}

static void reader_release(mb_reader *r) {
  pipe_free(r->pipe);
  r->pipe = NULL;
  if (r->soxr)
    soxr_delete(r->soxr);
  r->soxr = NULL;
  free(r->ibuf);
  free(r->obuf);
  free(r->raw);
  r->ibuf = r->obuf = NULL;
  r->raw = NULL;
  r->started = 0;
}

void mb_reader_close(mb_reader *r) {
  if (!r)
    return;
  reader_release(r);
  sf_close(r->sf);
  free(r->path);
  free(r);
}

int mb_reader_channels(const mb_reader *r) { return r->info.channels; }
double mb_reader_rate(const mb_reader *r) { return r->info.samplerate; }
int64_t mb_reader_frames(const mb_reader *r) { return r->info.frames; }
const char *mb_reader_path(const mb_reader *r) { return r->path; }
int mb_reader_format(const mb_reader *r) { return r->info.format; }

int64_t mb_reader_length(const mb_reader *r) {
  return r->started ? r->length : r->info.frames;
}

mb_status mb_reader_start(mb_reader *r, double rate, int max_frames, char *err,
                          size_t errlen) {
  reader_release(r);
  if (!(rate > 0) || max_frames <= 0) {
    fail(err, errlen, "cannot read '%s': bad rate %g or block %d", r->path,
         rate, max_frames);
    return MB_ERR_ARG;
  }
  if (sf_seek(r->sf, 0, SEEK_SET) != 0) {
    fail(err, errlen, "cannot read '%s': cannot seek back to the start",
         r->path);
    return MB_ERR_IO;
  }
  size_t n = (size_t)CHUNK * (size_t)r->info.channels;
  double file_rate = r->info.samplerate;
  r->ibuf = malloc(n * sizeof(float));
  if (rate != file_rate)
    r->obuf = malloc(n * sizeof(float));
  r->raw_bytes = raw_pcm_bytes(r->info.format);
  if (r->raw_bytes)
    r->raw = malloc(STAGE + 16);
  if (!r->ibuf || (rate != file_rate && !r->obuf) ||
      (r->raw_bytes && !r->raw)) {
    reader_release(r);
    fail(err, errlen, "cannot read '%s': out of memory", r->path);
    return MB_ERR_NOMEM;
  }
  if (rate != file_rate) {
    const char *why = NULL;
    r->soxr = new_resampler(file_rate, rate, r->info.channels, &why);
    if (!r->soxr) {
      reader_release(r);
      fail(err, errlen, "cannot resample '%s' from %g to %g Hz: %s", r->path,
           file_rate, rate, why);
      return MB_ERR_ARG;
    }
  }
  r->rate = rate;
  r->length = resampled_length(r->info.frames, file_rate, rate);
  r->delivered = r->file_pos = 0;
  r->file_end = r->drained = 0;
  r->in_pos = r->in_len = 0;
  r->raw_pos = r->raw_len = 0;
  r->started = 1;
  return MB_OK;
}

/* Read up to n frames (interleaved) into r->ibuf, never past the header's
 * count (an MP3 may decode a little more than its estimate). A short read
 * without an error is the decoder's real end: the caller pads with zeros. */
static mb_status fill(mb_reader *r, int64_t n, size_t *got, char *err,
                      size_t errlen) {
  int64_t left = r->info.frames - r->file_pos;
  if (n > left)
    n = left;
  *got = 0;
  if (n <= 0 || r->file_end) {
    r->file_end = 1;
    return MB_OK;
  }
  sf_count_t k;
  if (r->raw_bytes) {
    /* from the bytes read ahead, reading STAGE more when they run out */
    const int ch = r->info.channels;
    const size_t fb = (size_t)r->raw_bytes * (size_t)ch;
    k = 0;
    while (k < n) {
      if (r->raw_pos == r->raw_len) {
        const int64_t ahead = r->info.frames - r->file_pos - k;
        const size_t want = (size_t)(ahead < (int64_t)(STAGE / fb)
                                         ? ahead : (int64_t)(STAGE / fb));
        const sf_count_t b = sf_read_raw(r->sf, r->raw, (sf_count_t)(want * fb));
        r->raw_pos = 0;
        r->raw_len = b > 0 ? (size_t)b - (size_t)b % fb : 0;
        if (!r->raw_len) break;
      }
      size_t take = (r->raw_len - r->raw_pos) / fb;
      if ((int64_t)take > n - k) take = (size_t)(n - k);
      pcm_to_float(r->raw + r->raw_pos, r->raw_bytes, r->ibuf + (size_t)k * ch,
                   take * (size_t)ch);
      r->raw_pos += take * fb;
      k += (sf_count_t)take;
    }
  } else {
    k = sf_readf_float(r->sf, r->ibuf, n);
  }
  if (k < n) {
    if (sf_error(r->sf)) {
      char msg[256];
      fail(err, errlen, "cannot read '%s' at frame %lld: %s", r->path,
           (long long)(r->file_pos + (k > 0 ? k : 0)),
           sf_message(sf_strerror(r->sf), msg, sizeof msg));
      return MB_ERR_IO;
    }
    r->file_end = 1;
  }
  if (k < 0)
    k = 0;
  r->file_pos += k;
  *got = (size_t)k;
  return MB_OK;
}

static void deinterleave(const float *src, int channels, size_t n,
                         float *const *out, size_t at) {
  if (channels == 1) {
    memcpy(out[0] + at, src, n * sizeof(float));
    return;
  }
  if (channels == 2) {
    float *l = out[0] + at, *r = out[1] + at;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const v8f a = ld(src + 2 * i), b = ld(src + 2 * i + 8);
      st(l + i, VEVEN(a, b));
      st(r + i, VODD(a, b));
    }
    for (; i < n; i++) {
      l[i] = src[2 * i];
      r[i] = src[2 * i + 1];
    }
    return;
  }
  for (int c = 0; c < channels; c++) {
    float *d = out[c] + at;
    for (size_t i = 0; i < n; i++)
      d[i] = src[i * (size_t)channels + c];
  }
}

static void zero(float *const *out, int channels, size_t at, size_t n) {
  for (int c = 0; c < channels; c++)
    memset(out[c] + at, 0, n * sizeof(float));
}

static mb_status read_direct(mb_reader *r, float *const *out, int frames,
                             char *err, size_t errlen) {
  if (!r->started) {
    fail(err, errlen, "cannot read '%s': reader not started", r->path);
    return MB_ERR_STATE;
  }
  int ch = r->info.channels;
  size_t done = 0, total = frames > 0 ? (size_t)frames : 0;
  while (done < total) {
    size_t want = total - done;
    if (want > CHUNK)
      want = CHUNK;
    int64_t left = r->length - r->delivered;
    size_t got = 0;
    if (left <= 0 || (r->soxr ? r->drained : r->file_end)) {
      /* Past the signal, or the decoder ended early: zeros. */
      zero(out, ch, done, want);
      done += want;
      if (left > 0)
        r->delivered += left < (int64_t)want ? left : (int64_t)want;
      continue;
    }
    if ((int64_t)want > left)
      want = (size_t)left;
    if (!r->soxr) {
      mb_status st = fill(r, (int64_t)want, &got, err, errlen);
      if (st)
        return st;
      deinterleave(r->ibuf, ch, got, out, done);
      if (got < want)
        zero(out, ch, done + got, want - got);
      got = want; /* padding counts as signal up to length */
    } else {
      if (r->in_pos == r->in_len && !r->file_end) {
        mb_status st = fill(r, CHUNK, &r->in_len, err, errlen);
        if (st)
          return st;
        r->in_pos = 0;
      }
      size_t used = 0;
      soxr_error_t e;
      if (r->in_pos < r->in_len) {
        e = soxr_process(r->soxr, r->ibuf + r->in_pos * (size_t)ch,
                         r->in_len - r->in_pos, &used, r->obuf, want, &got);
        r->in_pos += used;
        if (!e && !used && !got)
          e = "it took no input and gave no output"; /* never loop forever */
      } else {
        /* End of input: soxr flushes its filter tail. */
        e = soxr_process(r->soxr, NULL, 0, NULL, r->obuf, want, &got);
        if (!got)
          r->drained = 1;
      }
      if (e) {
        fail(err, errlen, "cannot resample '%s': %s", r->path, e);
        return MB_ERR_IO;
      }
      deinterleave(r->obuf, ch, got, out, done);
    }
    done += got;
    r->delivered += (int64_t)got;
  }
  return MB_OK;
}

static void *reader_worker(void *arg) {
  mb_reader *r = arg;
  io_pipe *p = r->pipe;
  pipe_worker_setup(p);
  for (;;) {
    pthread_mutex_lock(&p->mu);
    while (!p->stop && p->made - p->used >= PIPE_SLOTS)
      pthread_cond_wait(&p->cv, &p->mu);
    int64_t slot = p->made;
    int stop = p->stop;
    pthread_mutex_unlock(&p->mu);
    if (stop)
      return NULL;
    float *chans[MB_MAX_CHANNELS];
    for (int c = 0; c < p->channels; c++)
      chans[c] = slot_chan(p, slot, c);
    char err[MB_ERRLEN];
    mb_status st = read_direct(r, chans, PIPE_FRAMES, err, sizeof err);
    pthread_mutex_lock(&p->mu);
    if (st) {
      p->st = st;
      memcpy(p->err, err, sizeof err);
    } else {
      p->fill[slot % PIPE_SLOTS] = PIPE_FRAMES;
      p->made++;
    }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (st)
      return NULL;
  }
}

mb_status mb_reader_prefetch(mb_reader *r, char *err, size_t errlen) {
  if (!r->started) {
    fail(err, errlen, "cannot read '%s': reader not started", r->path);
    return MB_ERR_STATE;
  }
  if (r->pipe) {
    /* back from mb_reader_foreground with slots left: read on after them
     * (a worker that failed stays stopped: its error is delivered) */
    if (!r->pipe->running && r->pipe->st == MB_OK)
      pipe_start(r->pipe, reader_worker, r);
    return MB_OK;
  }
  io_pipe *p = pipe_new(r->info.channels);
  if (!p) {
    fail(err, errlen, "cannot read '%s': out of memory", r->path);
    return MB_ERR_NOMEM;
  }
  r->pipe = p;
  if (!pipe_start(p, reader_worker, r)) {
    /* no thread: read directly, as before */
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->mem);
    free(p);
    r->pipe = NULL;
  }
  return MB_OK;
}

void mb_reader_foreground(mb_reader *r) {
  if (r->pipe)
    pipe_stop(r->pipe);
}

mb_status mb_reader_read(mb_reader *r, float *const *out, int frames, char *err,
                         size_t errlen) {
  io_pipe *p = r->pipe;
  if (!p)
    return read_direct(r, out, frames, err, errlen);
  int done = 0;
  while (done < frames) {
    pthread_mutex_lock(&p->mu);
    while (p->made == p->used && p->st == MB_OK && p->running)
      pthread_cond_wait(&p->cv, &p->mu);
    int have = p->made > p->used;
    mb_status st = p->st;
    int64_t slot = p->used;
    pthread_mutex_unlock(&p->mu);
    if (!have && st == MB_OK) {
      /* stopped (mb_reader_foreground) with every slot delivered: the
       * file's position is right after them, so read on directly */
      pipe_free(p);
      r->pipe = NULL;
      float *rest[MB_MAX_CHANNELS];
      for (int c = 0; c < r->info.channels; c++)
        rest[c] = out[c] + done;
      return read_direct(r, rest, frames - done, err, errlen);
    }
    if (!have) {
      fail(err, errlen, "%s", p->err);
      return st;
    }
    int n = PIPE_FRAMES - p->off;
    if (n > frames - done)
      n = frames - done;
    for (int c = 0; c < p->channels; c++)
      memcpy(out[c] + done, slot_chan(p, slot, c) + p->off,
             sizeof(float) * (size_t)n);
    done += n;
    p->off += n;
    if (p->off == PIPE_FRAMES) {
      p->off = 0;
      pthread_mutex_lock(&p->mu);
      p->used++;
      pthread_cond_broadcast(&p->cv);
      pthread_mutex_unlock(&p->mu);
    }
  }
  return MB_OK;
}

/* ---------------------------------------------------------------------
 * Writer
 * ------------------------------------------------------------------- */

struct mb_writer {
  char *path, *tmp;
  int fd;
  SNDFILE *sf;
  int channels;
  double in_rate, out_rate;
  soxr_t soxr;
  float *ibuf, *obuf; /* interleaved, CHUNK frames each */
  int32_t *qbuf;      /* integer formats: CHUNK frames converted */
  int ibits;          /* 16 or 24 for integer formats, 0 for float */
  int64_t in_frames;  /* taken from the caller, at in_rate */
  int64_t frames;     /* written to the file, at out_rate */
  int64_t clipped;
  float peak;
  float hi, lo; /* a sample outside [lo, hi] is clipped by the format */
  int failed;   /* a write failed: commit refuses */
  int finished; /* resampler flushed and padded: counts are final */
  io_pipe *pipe; /* writing behind on a worker (mb_writer_background) */
  off_t flushed; /* the file's bytes before this are being written back */
  int raw_bytes;         /* 2 or 3: little-endian PCM packed here, else 0 */
  unsigned char *rbuf;   /* up to STAGE bytes of it waiting, + CHUNK frames */
  size_t rfill;          /* bytes waiting in rbuf */
};

static int ext_is(const char *ext, const char *want) {
  for (; *ext && *want; ext++, want++) {
    char c = *ext;
    if (c >= 'A' && c <= 'Z')
      c = (char)(c - 'A' + 'a');
    if (c != *want)
      return 0;
  }
  return !*ext && !*want;
}

static const char *extension(const char *path) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  const char *dot = strrchr(base, '.');
  return dot && dot != base ? dot + 1 : NULL;
}

/* .wav reads back as SF_FORMAT_WAV; the writer actually opens it as RF64
 * with auto-downgrade (see mb_writer_open). */
int mb_writer_format_for(const char *path) {
  const char *ext = path ? extension(path) : NULL;
  if (!ext)
    return 0;
  if (ext_is(ext, "wav"))
    return SF_FORMAT_WAV;
  if (ext_is(ext, "aif") || ext_is(ext, "aiff"))
    return SF_FORMAT_AIFF;
  if (ext_is(ext, "flac"))
    return SF_FORMAT_FLAC;
  if (ext_is(ext, "mp3"))
    return SF_FORMAT_MPEG;
  if (ext_is(ext, "ogg") || ext_is(ext, "opus"))
    return SF_FORMAT_OGG;
  return 0;
}

/* Lossy formats: libsndfile encodes floats itself (LAME, libvorbis,
 * libopus); `bits` does not apply to them. */
static int lossy_subformat(const char *path, int major) {
  if (major == SF_FORMAT_MPEG)
    return SF_FORMAT_MPEG_LAYER_III;
  if (major == SF_FORMAT_OGG)
    return ext_is(extension(path), "opus") ? SF_FORMAT_OPUS : SF_FORMAT_VORBIS;
  return 0;
}

/* Split path into its folder ("." when none) and name. */
static int split_path(const char *path, char **dir, const char **base) {
  const char *slash = strrchr(path, '/');
  *base = slash ? slash + 1 : path;
  size_t n = slash ? (size_t)(slash - path) : 1;
  if (slash && n == 0)
    n = 1; /* "/x.wav": the root */
  *dir = malloc(n + 1);
  if (!*dir)
    return -1;
  memcpy(*dir, slash ? path : ".", n);
  (*dir)[n] = '\0';
  return 0;
}

static void writer_free(mb_writer *w) {
  pipe_free(w->pipe);
  w->pipe = NULL;
  if (w->soxr)
    soxr_delete(w->soxr);
  free(w->ibuf);
  free(w->obuf);
  free(w->qbuf);
  free(w->rbuf);
  free(w->path);
  free(w->tmp);
  free(w);
}

/* Close everything and remove the temporary file. */
static void writer_discard(mb_writer *w) {
  pipe_free(w->pipe); /* the worker may be inside libsndfile */
  w->pipe = NULL;
  if (w->sf)
    sf_close(w->sf);
  if (w->fd >= 0)
    close(w->fd);
  if (w->tmp)
    unlink(w->tmp);
  writer_free(w);
}

mb_writer *mb_writer_open(const char *path, int channels, double in_rate,
                          double out_rate, int bits, int64_t expected_frames, char *err, size_t errlen) {
  if (!path || !*path) {
    fail(err, errlen, "cannot write '': no file name given");
    return NULL;
  }
  int major = mb_writer_format_for(path);
  if (!major) {
    const char *ext = extension(path);
    fail(err, errlen,
         "cannot write '%s': %s%s%s (supported: .wav, .aif, .aiff, .flac, "
         ".mp3, .ogg, .opus)",
         path, ext ? "unknown extension '." : "no extension", ext ? ext : "",
         ext ? "'" : "");
    return NULL;
  }
  int sub, lossy = lossy_subformat(path, major);
  if (lossy)
    sub = lossy, bits = 32;
  else if (bits == 16)
    sub = SF_FORMAT_PCM_16;
  else if (bits == 24)
    sub = SF_FORMAT_PCM_24;
  else if (bits == 32)
    sub = SF_FORMAT_FLOAT;
  else {
    fail(err, errlen,
         "cannot write '%s': bits must be 16, 24 or 32 (float), not %d", path,
         bits);
    return NULL;
  }
  if (major == SF_FORMAT_FLAC && bits == 32) {
    fail(err, errlen,
         "cannot write '%s': FLAC has no 32-bit float; use bits 16 or 24",
         path);
    return NULL;
  }
  if (channels < 1 || channels > MB_MAX_CHANNELS) {
    fail(err, errlen, "cannot write '%s': %d channels (1 to %d allowed)", path,
         channels, MB_MAX_CHANNELS);
    return NULL;
  }
  if (out_rate == 0)
    out_rate = in_rate;
  if (!(in_rate > 0) || !(out_rate > 0) || out_rate != floor(out_rate) ||
      out_rate > INT_MAX) {
    fail(err, errlen, "cannot write '%s': bad sample rate %g Hz", path,
         out_rate);
    return NULL;
  }

  SF_INFO info = {0};
  info.samplerate = (int)out_rate;
  info.channels = channels;
  /* WAV: plain RIFF when the expected size fits its 4 GiB limit (a plain
   * PCM header every tool reads); RF64 with auto-downgrade when the size is
   * unknown or larger (libsndfile then writes a WAVE_FORMAT_EXTENSIBLE
   * header even when it downgrades). */
  int rf64 = 0;
  if (major == SF_FORMAT_WAV) {
    double bytes = -1;
    if (expected_frames >= 0)
      bytes = (double)expected_frames * (out_rate / in_rate) * channels *
              (bits / 8);
    rf64 = bytes < 0 || bytes > 4294967295.0 - (1 << 20);
  }
  info.format = (rf64 ? SF_FORMAT_RF64 : major) | sub;
  if (lossy == SF_FORMAT_OPUS && info.samplerate != 48000 &&
      info.samplerate != 24000 && info.samplerate != 16000 &&
      info.samplerate != 12000 && info.samplerate != 8000) {
    fail(err, errlen,
         "cannot write '%s': Opus takes 48000, 24000, 16000, 12000 or 8000 "
         "Hz, not %d (set the output's rate)",
         path, info.samplerate);
    return NULL;
  }
  if (!sf_format_check(&info)) {
    fail(err, errlen,
         "cannot write '%s': libsndfile refuses %d-bit %d-channel"
         " audio at %d Hz in this format",
         path, bits, channels, info.samplerate);
    return NULL;
  }

  mb_writer *w = calloc(1, sizeof *w);
  if (!w) {
    fail(err, errlen, "cannot write '%s': out of memory", path);
    return NULL;
  }
  w->fd = -1;
  w->channels = channels;
  w->in_rate = in_rate;
  w->out_rate = out_rate;
  /* 16-bit: full scale is 32768 and the largest code 32767, so anything
   * above 32767/32768 is clipped (the scale libsndfile's reader uses too);
   * likewise for 24-bit. Float keeps overs. */
  w->hi = bits == 16   ? 32767.0f / 32768.0f
          : bits == 24 ? 8388607.0f / 8388608.0f
          : lossy      ? 1.0f /* the encoders clip what lies beyond */
                       : INFINITY;
  w->lo = bits == 32 && !lossy ? -INFINITY : -1.0f;
  size_t n = (size_t)CHUNK * (size_t)channels;
  w->path = dupstr(path);
  w->ibuf = malloc(n * sizeof(float));
  if (in_rate != out_rate)
    w->obuf = malloc(n * sizeof(float));
  w->ibits = bits == 32 ? 0 : bits;
  if (w->ibits)
    w->qbuf = malloc(n * sizeof(int32_t));
  char *dir = NULL;
  const char *base;
  if (!w->path || !w->ibuf || (in_rate != out_rate && !w->obuf) ||
      (w->ibits && !w->qbuf) || split_path(path, &dir, &base)) {
    fail(err, errlen, "cannot write '%s': out of memory", path);
    writer_discard(w);
    return NULL;
  }
  struct stat st;
  if (stat(dir, &st) != 0) {
    if (errno == ENOENT)
      fail(err, errlen, "cannot write '%s': folder '%s' does not exist", path,
           dir);
    else
      fail(err, errlen, "cannot write '%s': folder '%s': %s", path, dir,
           strerror(errno));
    goto fail_dir;
  }
  if (!S_ISDIR(st.st_mode)) {
    fail(err, errlen, "cannot write '%s': '%s' is not a folder", path, dir);
    goto fail_dir;
  }
  if (!*base) {
    fail(err, errlen, "cannot write '%s': no file name", path);
    goto fail_dir;
  }

  /* Beside the destination, so rename(2) is atomic (same file system);
   * hidden, and unique per process and writer. */
  static atomic_uint serial;
  size_t tlen = strlen(dir) + strlen(base) + 64;
  w->tmp = malloc(tlen);
  if (!w->tmp) {
    fail(err, errlen, "cannot write '%s': out of memory", path);
    goto fail_dir;
  }
  for (int tries = 0; w->fd < 0 && tries < 100; tries++) {
    snprintf(w->tmp, tlen, "%s/.%s.moonbus-%ld-%u.tmp", dir, base,
             (long)getpid(), atomic_fetch_add(&serial, 1u));
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (w->fd < 0 && errno != EEXIST)
      break;
  }
  if (w->fd < 0) {
    fail(err, errlen, "cannot write '%s': %s", path, strerror(errno));
    free(w->tmp);
    w->tmp = NULL; /* never ours to remove */
    goto fail_dir;
  }
  free(dir);
  dir = NULL;

  /* We keep the descriptor (close_desc false): libsndfile closes it on
   * some failure paths and not on others. */
  w->sf = sf_open_fd(w->fd, SFM_WRITE, &info, SF_FALSE);
  if (!w->sf) {
    char msg[256];
    fail(err, errlen, "cannot write '%s': %s", path,
         sf_message(sf_strerror(NULL), msg, sizeof msg));
    writer_discard(w);
    return NULL;
  }
  if (rf64)
    sf_command(w->sf, SFC_RF64_AUTO_DOWNGRADE, NULL, SF_TRUE);
  w->raw_bytes = raw_pcm_bytes(info.format);
  if (w->raw_bytes &&
      !(w->rbuf = malloc(STAGE + (size_t)CHUNK * channels * w->raw_bytes +
                         16))) {
    fail(err, errlen, "cannot write '%s': out of memory", path);
    writer_discard(w);
    return NULL;
  }
  /* emit() saturates integers itself; clipping stays on in case libsndfile
   * ever converts floats for us (its FLAC encoder drops whole blocks with
   * out-of-range samples otherwise). Float files are unaffected. */
  sf_command(w->sf, SFC_SET_CLIPPING, NULL, SF_TRUE);
  if (in_rate != out_rate) {
    const char *why = NULL;
    w->soxr = new_resampler(in_rate, out_rate, channels, &why);
    if (!w->soxr) {
      fail(err, errlen, "cannot write '%s': resampling %g to %g Hz: %s", path,
           in_rate, out_rate, why);
      writer_discard(w);
      return NULL;
    }
  }
  return w;

fail_dir:
  free(dir);
  writer_discard(w);
  return NULL;
}

/* Count clips and the peak of what goes into the file, then write it.
 * Integer formats are converted here rather than by libsndfile: 1.2.0's
 * clipping float-to-16-bit path scales to 32 bits and shifts right, which
 * floors instead of rounding (a -0.5 LSB offset and up to 1 LSB of error,
 * measured). We round to nearest and saturate, then hand libsndfile 32-bit
 * integers whose low bits it drops exactly (>> 16 or >> 8). */
/* Round half away from zero, exactly: t = trunc(d) and f = d - t are exact
 * in float, so a tie is seen as a tie (|d| < 2^31). */
static inline v8i round_away(v8f d) {
  v8i t = __builtin_convertvector(d, v8i);
  v8f f = d - __builtin_convertvector(t, v8f);
  return t - (f >= 0.5f) + (f <= -0.5f); /* a true lane compares as -1 */
}

/* Commit fsyncs the file before renaming it; started while the render
 * runs, the disk's work is mostly done by then (an 86 MB file's fsync went
 * from 46 ms to 8 ms here with 8 MB steps; the commit of a 57 MB file
 * takes 20 ms instead of 25 with 2 MB steps, most of it the rename that
 * frees the file it replaces). Asks the kernel to start writing back every
 * WRITEBACK bytes, without waiting; a failure here changes nothing (fsync
 * still reports errors). */
#define WRITEBACK (2 << 20)
static void start_writeback(mb_writer *w) {
#ifdef SYNC_FILE_RANGE_WRITE
  const off_t pos = lseek(w->fd, 0, SEEK_CUR);
  if (pos - w->flushed >= WRITEBACK) {
    (void)sync_file_range(w->fd, w->flushed, pos - w->flushed,
                          SYNC_FILE_RANGE_WRITE);
    w->flushed = pos;
  }
#else
  (void)w;
#endif
}

/* Write the packed PCM waiting in rbuf. */
static mb_status flush_raw(mb_writer *w, char *err, size_t errlen) {
  if (!w->rfill) return MB_OK;
  const sf_count_t put = sf_write_raw(w->sf, w->rbuf, (sf_count_t)w->rfill);
  if (put != (sf_count_t)w->rfill) {
    char msg[256];
    fail(err, errlen, "cannot write '%s': %s", w->path,
         sf_message(sf_strerror(w->sf), msg, sizeof msg));
    w->failed = 1;
    return MB_ERR_IO;
  }
  w->rfill = 0;
  start_writeback(w);
  return MB_OK;
}

/* Count clipped samples, track the peak, quantise (integer formats) and
 * hand n frames to libsndfile: one pass over the samples, eight at a time
 * (the writer shares the machine with the render). 16- and 24-bit PCM that
 * we pack ourselves goes straight to its bytes, gathered in rbuf for
 * flush_raw; other integer formats through 32-bit integers, left-justified
 * for libsndfile. */
static mb_status emit(mb_writer *w, const float *buf, size_t n, char *err,
                      size_t errlen) {
  const size_t len = n * (size_t)w->channels;
  const float hi = w->hi, lo = w->lo;
  /* x * 2^(bits-1) is exact in float; clamp to the format's range (NaN to
   * 0), round half away from zero. */
  const float scale = w->ibits == 16 ? 32768.0f : 8388608.0f;
  const float top = scale - 1, bottom = -scale;
  const int shift = w->raw_bytes ? 0 : 32 - w->ibits;
  const int ints = w->ibits != 0, s16 = ints && w->raw_bytes == 2;
#ifdef __SSSE3__
  const int s24 = ints && w->raw_bytes == 3; /* packed in the loop */
  /* the low 3 bytes of 4 lanes into 12 bytes */
  const __m128i from_lanes =
      _mm_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
#else
  const int s24 = 0;
#endif
  int32_t *q = w->qbuf;
  unsigned char *rb = w->rbuf + w->rfill;
  int16_t *h = (int16_t *)(void *)rb;
  float pk = w->peak;
  int64_t clipped = 0;
  size_t i = 0;
  {
    const v8f vtop = top - (v8f){0}, vbot = bottom - (v8f){0};
    v8f vpk = {0};
    v8i vcl = {0};
    for (; i + 8 <= len; i += 8) {
      const v8f x = ld(buf + i);
      vcl -= (x > hi) | (x < lo);
      const v8f a = vabs(x);
      vpk = vsel(a > vpk, a, vpk); /* NaN never wins, as below */
      if (!ints) continue;
      v8f d = x * scale;
      d = vsel(d == d, d, (v8f){0});
      d = vsel(d > vtop, vtop, vsel(d < vbot, vbot, d));
      const v8i r = round_away(d);
      if (s16) {
        const v8s r16 = __builtin_convertvector(r, v8s);
        memcpy(h + i, &r16, sizeof r16);
      } else if (s24) {
#ifdef __SSSE3__
        /* two 16-byte stores of 12 bytes each: the second overwrites the
         * first's last 4, the next step the second's (rbuf has 16 bytes
         * to spare) */
        __m128i lo4, hi4;
        memcpy(&lo4, &r, 16);
        memcpy(&hi4, (const char *)&r + 16, 16);
        unsigned char *b = rb + 3 * i;
        _mm_storeu_si128((__m128i *)(void *)b, _mm_shuffle_epi8(lo4, from_lanes));
        _mm_storeu_si128((__m128i *)(void *)(b + 12),
                         _mm_shuffle_epi8(hi4, from_lanes));
#endif
      } else {
        const v8i rs = r * (1 << shift);
        memcpy(q + i, &rs, sizeof rs);
      }
    }
    for (int l = 0; l < 8; l++) {
      clipped += vcl[l];
      pk = vpk[l] > pk ? vpk[l] : pk;
    }
  }
  const size_t packed = s24 ? i : 0; /* 24-bit samples packed above */
  for (; i < len; i++) {
    const float x = buf[i];
    clipped += (x > hi) | (x < lo);
    const float a = fabsf(x);
    pk = a > pk ? a : pk;
    if (!ints) continue;
    double d = x * (double)scale;
    d = d == d ? d : 0; /* NaN */
    d = d > top ? top : d < bottom ? bottom : d;
    const int32_t r = (int32_t)(d + (d >= 0 ? 0.5 : -0.5));
    if (s16) h[i] = (int16_t)r;
    else q[i] = r * (1 << shift);
  }
  w->clipped += clipped;
  w->peak = pk;
  if (w->raw_bytes) {
    if (!s16) pack_pcm24(q + packed, rb + 3 * packed, len - packed);
    w->rfill += len * (size_t)w->raw_bytes;
    w->frames += (int64_t)n;
    return w->rfill >= STAGE ? flush_raw(w, err, errlen) : MB_OK;
  }
  sf_count_t put;
  if (ints) {
    put = sf_writef_int(w->sf, q, (sf_count_t)n);
  } else {
    put = sf_writef_float(w->sf, buf, (sf_count_t)n);
  }
  if (put != (sf_count_t)n) {
    char msg[256];
    fail(err, errlen, "cannot write '%s': %s", w->path,
         sf_message(sf_strerror(w->sf), msg, sizeof msg));
    w->failed = 1;
    return MB_ERR_IO;
  }
  w->frames += (int64_t)n;
  start_writeback(w);
  return MB_OK;
}

/* Resample `n` interleaved frames (NULL: flush the tail) and write what
 * comes out, keeping the file at most `limit` frames long. */
static mb_status resample_out(mb_writer *w, const float *in, size_t n,
                              int64_t limit, char *err, size_t errlen) {
  size_t pos = 0;
  for (;;) {
    size_t used = 0, got = 0;
    soxr_error_t e =
        in ? soxr_process(w->soxr, in + pos * (size_t)w->channels, n - pos,
                          &used, w->obuf, CHUNK, &got)
           : soxr_process(w->soxr, NULL, 0, NULL, w->obuf, CHUNK, &got);
    if (e) {
      fail(err, errlen, "cannot write '%s': resampler: %s", w->path, e);
      w->failed = 1;
      return MB_ERR_IO;
    }
    pos += used;
    if (limit >= 0 && (int64_t)got > limit - w->frames)
      got = (size_t)(limit - w->frames);
    if (got) {
      mb_status st = emit(w, w->obuf, got, err, errlen);
      if (st)
        return st;
    }
    if (in ? (pos >= n && got < CHUNK) : got == 0)
      return MB_OK;
    if (in && !used && !got) {
      /* Never loop forever, never drop input silently. */
      fail(err, errlen, "cannot write '%s': resampler took no input", w->path);
      w->failed = 1;
      return MB_ERR_IO;
    }
  }
}

static mb_status write_direct(mb_writer *w, const float *const *in,
                              int frames, char *err, size_t errlen) {
  if (w->failed) {
    fail(err, errlen, "cannot write '%s': an earlier write failed", w->path);
    return MB_ERR_STATE;
  }
  int ch = w->channels;
  for (int done = 0; done < frames;) {
    int n = frames - done < CHUNK ? frames - done : CHUNK;
    float *d = w->ibuf;
    if (ch == 2) {
      const float *l = in[0] + done, *r = in[1] + done;
      int i = 0;
      for (; i + 8 <= n; i += 8) {
        const v8f a = ld(l + i), b = ld(r + i);
        st(d + 2 * i, VZIPLO(a, b));
        st(d + 2 * i + 8, VZIPHI(a, b));
      }
      for (; i < n; i++) {
        d[2 * i] = l[i];
        d[2 * i + 1] = r[i];
      }
    } else {
      for (int c = 0; c < ch; c++) {
        const float *s = in[c] + done;
        for (int i = 0; i < n; i++)
          d[(size_t)i * ch + c] = s[i];
      }
    }
    w->in_frames += n;
    mb_status st = w->soxr
                       ? resample_out(w, w->ibuf, (size_t)n, -1, err, errlen)
                       : emit(w, w->ibuf, (size_t)n, err, errlen);
    if (st)
      return st;
    done += n;
  }
  return MB_OK;
}

static void *writer_worker(void *arg) {
  mb_writer *w = arg;
  io_pipe *p = w->pipe;
  pipe_worker_setup(p);
  for (;;) {
    pthread_mutex_lock(&p->mu);
    while (!p->stop && !p->closing && p->made == p->used)
      pthread_cond_wait(&p->cv, &p->mu);
    int64_t slot = p->used;
    int have = p->made > p->used, stop = p->stop;
    pthread_mutex_unlock(&p->mu);
    if (stop || !have)
      return NULL; /* aborted, or closing with everything written */
    const float *chans[MB_MAX_CHANNELS];
    for (int c = 0; c < p->channels; c++)
      chans[c] = slot_chan(p, slot, c);
    char err[MB_ERRLEN];
    mb_status st =
        write_direct(w, chans, p->fill[slot % PIPE_SLOTS], err, sizeof err);
    pthread_mutex_lock(&p->mu);
    if (st) {
      p->st = st;
      memcpy(p->err, err, sizeof err);
    }
    p->used++;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (st)
      return NULL;
  }
}

static mb_status pipe_drain(mb_writer *w, char *err, size_t errlen);

mb_status mb_writer_foreground(mb_writer *w, char *err, size_t errlen) {
  return w->pipe ? pipe_drain(w, err, errlen) : MB_OK;
}

void mb_writer_background(mb_writer *w) {
  if (w->pipe || w->failed)
    return;
  io_pipe *p = pipe_new(w->channels);
  if (!p)
    return; /* write directly */
  w->pipe = p;
  if (!pipe_start(p, writer_worker, w)) {
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->mem);
    free(p);
    w->pipe = NULL;
  }
}

/* Hand the filled slot to the worker (waiting for a free one first). */
static mb_status pipe_push(io_pipe *p, int frames, char *err, size_t errlen) {
  pthread_mutex_lock(&p->mu);
  p->fill[p->made % PIPE_SLOTS] = frames;
  p->made++;
  pthread_cond_broadcast(&p->cv);
  while (p->st == MB_OK && p->made - p->used >= PIPE_SLOTS)
    pthread_cond_wait(&p->cv, &p->mu);
  mb_status st = p->st;
  pthread_mutex_unlock(&p->mu);
  if (st)
    fail(err, errlen, "%s", p->err);
  return st;
}

mb_status mb_writer_write(mb_writer *w, const float *const *in, int frames,
                          char *err, size_t errlen) {
  io_pipe *p = w->pipe;
  if (!p)
    return write_direct(w, in, frames, err, errlen);
  /* a worker's error is handed over by pipe_push, under the lock */
  int done = 0;
  while (done < frames) {
    int n = PIPE_FRAMES - p->off;
    if (n > frames - done)
      n = frames - done;
    int64_t slot = p->made; /* the slot being filled is ours */
    for (int c = 0; c < p->channels; c++)
      memcpy(slot_chan(p, slot, c) + p->off, in[c] + done,
             sizeof(float) * (size_t)n);
    done += n;
    p->off += n;
    if (p->off == PIPE_FRAMES) {
      p->off = 0;
      mb_status st = pipe_push(p, PIPE_FRAMES, err, errlen);
      if (st)
        return st;
    }
  }
  return MB_OK;
}

/* Writer: hand over the partial slot, let the worker write everything,
 * then carry on on this thread. */
static mb_status pipe_drain(mb_writer *w, char *err, size_t errlen) {
  io_pipe *p = w->pipe;
  mb_status st = MB_OK;
  if (p->off > 0 && p->st == MB_OK) {
    pthread_mutex_lock(&p->mu);
    p->fill[p->made % PIPE_SLOTS] = p->off;
    p->made++;
    pthread_mutex_unlock(&p->mu);
    p->off = 0;
  }
  pthread_mutex_lock(&p->mu);
  p->closing = 1;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  pthread_join(p->thread, NULL);
  if (p->st) {
    st = p->st;
    fail(err, errlen, "%s", p->err);
  }
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  free(p->mem);
  free(p);
  w->pipe = NULL;
  return st;
}

mb_status mb_writer_finish(mb_writer *w, char *err, size_t errlen) {
  mb_status st = MB_OK;
  if (w->pipe && (st = pipe_drain(w, err, errlen)))
    return st;
  if (w->failed) {
    fail(err, errlen, "cannot write '%s': an earlier write failed", w->path);
    return MB_ERR_STATE;
  }
  if (w->finished) return MB_OK;
  w->finished = 1;
  if (w->soxr) {
    /* Flush soxr's tail, then pad to the defined length (soxr gives
     * round(), we promise ceil()). */
    int64_t target = resampled_length(w->in_frames, w->in_rate, w->out_rate);
    st = resample_out(w, NULL, 0, target, err, errlen);
    if (!st && w->frames < target) {
      memset(w->obuf, 0, sizeof(float) * CHUNK * (size_t)w->channels);
      while (!st && w->frames < target) {
        int64_t n = target - w->frames;
        st = emit(w, w->obuf, (size_t)(n < CHUNK ? n : CHUNK), err, errlen);
      }
    }
  }
  if (!st) st = flush_raw(w, err, errlen);
  if (st) w->failed = 1;
  return st;
}

mb_status mb_writer_commit(mb_writer *w, char *err, size_t errlen) {
  mb_status st = mb_writer_finish(w, err, errlen);
  if (st) {
    writer_discard(w);
    return st;
  }
  /* sf_close writes the final header (and downgrades RF64 to WAV); fsync
   * before rename so a crash cannot leave a renamed but empty file. */
  int e = sf_close(w->sf);
  w->sf = NULL;
  if (e) {
    char msg[256];
    fail(err, errlen, "cannot write '%s': %s", w->path,
         sf_message(sf_error_number(e), msg, sizeof msg));
    writer_discard(w);
    return MB_ERR_IO;
  }
  if (fsync(w->fd) != 0 && errno != EINVAL) {
    fail(err, errlen, "cannot write '%s': %s", w->path, strerror(errno));
    writer_discard(w);
    return MB_ERR_IO;
  }
  e = close(w->fd);
  w->fd = -1;
  if (e != 0) {
    fail(err, errlen, "cannot write '%s': %s", w->path, strerror(errno));
    writer_discard(w);
    return MB_ERR_IO;
  }
  if (rename(w->tmp, w->path) != 0) {
    fail(err, errlen, "cannot write '%s': %s", w->path, strerror(errno));
    writer_discard(w);
    return MB_ERR_IO;
  }
  free(w->tmp);
  w->tmp = NULL; /* renamed: nothing left to remove */
  writer_free(w);
  return MB_OK;
}

void mb_writer_abort(mb_writer *w) {
  if (w)
    writer_discard(w);
}

/* Frames the file holds for the input written so far. While resampling,
 * the last few hundred of them are still inside soxr until commit flushes
 * them; the count is the final one already. */
int64_t mb_writer_frames(const mb_writer *w) {
  if (!w->soxr)
    return w->frames;
  return resampled_length(w->in_frames, w->in_rate, w->out_rate);
}

int64_t mb_writer_clipped(const mb_writer *w) { return w->clipped; }
double mb_writer_peak(const mb_writer *w) { return w->peak; }

/* ---------------------------------------------------------------------
 * Paths
 * ------------------------------------------------------------------- */

/* The resolved folder joined with the name; NULL when the folder does not
 * resolve (then the caller compares the text). */
static char *resolved(const char *path) {
  char *full = realpath(path, NULL);
  if (full)
    return full;
  char *dir;
  const char *base;
  if (split_path(path, &dir, &base))
    return NULL;
  char *rdir = realpath(dir, NULL);
  free(dir);
  if (!rdir)
    return NULL;
  size_t n = strlen(rdir) + strlen(base) + 2;
  char *out = malloc(n);
  if (out)
    snprintf(out, n, "%s%s%s", rdir, rdir[strlen(rdir) - 1] == '/' ? "" : "/",
             base);
  free(rdir);
  return out;
}

int mb_same_file(const char *path, const char *other) {
  if (!path || !other)
    return 0;
  struct stat a, b;
  if (stat(path, &a) == 0 && stat(other, &b) == 0)
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
  char *ra = resolved(path), *rb = resolved(other);
  int same = (ra && rb) ? strcmp(ra, rb) == 0 : strcmp(path, other) == 0;
  free(ra);
  free(rb);
  return same;
}
