/* fileio.h - sound files in and out (libsndfile), resampled with libsoxr.
 *
 * Readers and writers work in planar float. A writer writes to a temporary
 * file beside its destination and renames it into place only on commit;
 * abort removes it, so a failed run never leaves a partial file under the
 * destination's name. All functions are [control] (offline: the rendering
 * thread); prefetching readers and background writers keep a worker thread
 * of their own. Failures are described in `err` (one line, naming the file). */
#ifndef MB_FILEIO_H
#define MB_FILEIO_H

#include "mb_module.h"

typedef struct mb_reader mb_reader;

/* Open and validate: missing, unreadable, not audio, empty or truncated
 * files are refused here. */
mb_reader *mb_reader_open(const char *path, char *err, size_t errlen);
void mb_reader_close(mb_reader *r); /* NULL is fine */
int mb_reader_channels(const mb_reader *r);
double mb_reader_rate(const mb_reader *r);   /* the file's own rate */
int64_t mb_reader_frames(const mb_reader *r); /* at the file's own rate */
const char *mb_reader_path(const mb_reader *r);
/* The file's libsndfile format code (SF_FORMAT_* major | subtype). */
int mb_reader_format(const mb_reader *r);
/* Rewind and prepare to deliver audio at `rate` (very-high-quality soxr
 * when it differs from the file's), in calls of at most max_frames. */
mb_status mb_reader_start(mb_reader *r, double rate, int max_frames,
                          char *err, size_t errlen);
/* After start: decode (and resample) ahead on a worker thread, so reads
 * overlap the caller's processing. Reads and errors are the same as
 * without it; close or a new start stops the worker. */
mb_status mb_reader_prefetch(mb_reader *r, char *err, size_t errlen);
/* Stop the worker: what it has read ahead is still delivered, then reads
 * decode on the caller's thread (a render pipeline's stage, where a worker
 * would only compete for the cores); mb_reader_prefetch starts it again. */
void mb_reader_foreground(mb_reader *r);
/* Frames the reader delivers at the started rate. */
int64_t mb_reader_length(const mb_reader *r);
/* Deliver exactly `frames` planar frames (channels as the file); zeros
 * past the end. Returns MB_OK or an error (read failure). */
mb_status mb_reader_read(mb_reader *r, float *const *out, int frames,
                         char *err, size_t errlen);

typedef struct mb_writer mb_writer;

/* Format by extension (.wav, .aif/.aiff, .flac); bits 16, 24 or 32 (32 is
 * float; FLAC refuses it). expected_frames (at in_rate; -1 if unknown)
 * chooses plain WAV or RF64: RF64 when the file could pass 4 GiB.
 * out_rate 0 keeps in_rate; otherwise the writer resamples. The folder
 * must exist. */
mb_writer *mb_writer_open(const char *path, int channels, double in_rate,
                          double out_rate, int bits, int64_t expected_frames,
                          char *err,
                          size_t errlen);
mb_status mb_writer_write(mb_writer *w, const float *const *in, int frames,
                          char *err, size_t errlen);
/* Encode (and resample) behind the caller on a worker thread; writes and
 * errors are the same (a worker's error surfaces at the next call). Without
 * a thread it quietly stays direct. */
void mb_writer_background(mb_writer *w);
/* Let the worker write everything handed to it and leave; writes then
 * encode on the caller's thread until mb_writer_background. Returns the
 * worker's error, if it had one. */
mb_status mb_writer_foreground(mb_writer *w, char *err, size_t errlen);
/* Flush the resampler and pad to the promised length (commit does it if
 * not done); after it the counts below are final. */
mb_status mb_writer_finish(mb_writer *w, char *err, size_t errlen);
/* Finish, close, rename into place, free. */
mb_status mb_writer_commit(mb_writer *w, char *err, size_t errlen);
/* Close, remove the temporary file, free. NULL is fine. */
void mb_writer_abort(mb_writer *w);
int64_t mb_writer_frames(const mb_writer *w);  /* written so far */
int64_t mb_writer_clipped(const mb_writer *w); /* samples clipped */
double mb_writer_peak(const mb_writer *w);     /* largest |x| seen */

/* Does `path` name the same file as `other` (existing or not: compares the
 * resolved folder and name, and device/inode when both exist)? */
int mb_same_file(const char *path, const char *other);

/* Is the extension one the writer knows? Returns the libsndfile major
 * format or 0. */
int mb_writer_format_for(const char *path);

#endif
