/* fuzz_reader.c - any bytes given to the file reader and the loudness
 * measurement must be refused with a message or read safely: no crash, no
 * out-of-bounds access, no leak. A libFuzzer target (clang -fsanitize=
 * fuzzer, see tests/fuzz/README.md), replayed deterministically in ctest by
 * replay_reader.c. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "mb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* libsndfile picks the format from the contents, but the extension helps
   * it for headerless formats: try the bytes as .wav */
  char path[] = "/tmp/mb-fuzz-XXXXXX.wav";
  int fd = mkstemps(path, 4);
  if (fd < 0) return 0;
  if (write(fd, data, size) != (ssize_t)size) {
    close(fd);
    unlink(path);
    return 0;
  }
  close(fd);
  char err[MB_ERRLEN];
  mb_reader *r = mb_reader_open(path, err, sizeof err);
  if (r) {
    if (mb_reader_start(r, 48000, 512, err, sizeof err) == MB_OK) {
      float buf[MB_MAX_CHANNELS][512];
      float *chans[MB_MAX_CHANNELS];
      for (int c = 0; c < MB_MAX_CHANNELS; c++) chans[c] = buf[c];
      int64_t left = mb_reader_length(r);
      /* bounded: a header may claim hours of audio */
      for (int i = 0; i < 64 && left > 0; i++, left -= 512)
        if (mb_reader_read(r, chans, 512, err, sizeof err)) break;
    }
    mb_reader_close(r);
    mb_measurement m;
    (void)mb_measure_file(path, &m, err, sizeof err);
  } else if (!err[0]) {
    fprintf(stderr, "refused without a message\n");
    abort();
  }
  unlink(path);
  return 0;
}
