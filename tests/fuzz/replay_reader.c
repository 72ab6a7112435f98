/* replay_reader.c - deterministic driver for fuzz_reader.c in ctest: valid
 * files of several formats, then thousands of mutations of them (byte
 * flips, truncations, header field overwrites with extreme values). Under
 * the ASan/UBSan build this finds what a fuzzer would find first. */
#include <sndfile.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next(void) { /* xorshift64* */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return (uint32_t)((rng * 0x2545F4914F6CDD1Dull) >> 32);
}

/* A small valid file of the given format, read back into memory. */
static uint8_t *make_file(int format, int channels, size_t *size) {
  char path[] = "/tmp/mb-seed-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return NULL;
  close(fd);
  SF_INFO info = {.samplerate = 44100, .channels = channels, .format = format};
  SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
  if (!sf) {
    unlink(path);
    return NULL;
  }
  float frames[2000 * 4];
  for (int i = 0; i < 2000 * channels; i++) frames[i] = (float)((i % 97) - 48) / 64;
  sf_writef_float(sf, frames, 2000);
  sf_close(sf);
  FILE *f = fopen(path, "rb");
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  rewind(f);
  uint8_t *buf = malloc(n);
  if (fread(buf, 1, n, f) != (size_t)n) n = 0;
  fclose(f);
  unlink(path);
  *size = (size_t)n;
  return buf;
}

int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 300;
  const int formats[] = {
      SF_FORMAT_WAV | SF_FORMAT_PCM_16,  SF_FORMAT_WAV | SF_FORMAT_FLOAT,
      SF_FORMAT_AIFF | SF_FORMAT_PCM_24, SF_FORMAT_FLAC | SF_FORMAT_PCM_16,
      SF_FORMAT_RF64 | SF_FORMAT_PCM_24, SF_FORMAT_W64 | SF_FORMAT_PCM_16,
  };
  int cases = 0;
  for (size_t f = 0; f < sizeof formats / sizeof *formats; f++) {
    size_t size;
    uint8_t *seed = make_file(formats[f], 1 + (int)f % 3, &size);
    if (!seed) continue;
    LLVMFuzzerTestOneInput(seed, size);
    uint8_t *mut = malloc(size);
    for (int r = 0; r < rounds; r++) {
      memcpy(mut, seed, size);
      size_t n = size;
      switch (next() % 4) {
      case 0: /* flip a few header bytes */
        for (int k = 0; k < 4; k++) mut[next() % (size < 128 ? size : 128)] ^= (uint8_t)next();
        break;
      case 1: /* cut anywhere */
        n = next() % size;
        break;
      case 2: { /* an extreme 32-bit field in the header */
        static const uint32_t vals[] = {0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFFFFE};
        size_t at = next() % (size < 64 ? size - 4 : 60);
        uint32_t v = vals[next() % 6];
        memcpy(mut + at, &v, 4);
        break;
      }
      default: /* random bytes everywhere */
        for (size_t k = 0; k < size / 16; k++) mut[next() % size] = (uint8_t)next();
      }
      LLVMFuzzerTestOneInput(mut, n);
      cases++;
    }
    free(mut);
    free(seed);
  }
  printf("replay_reader: %d mutated files read or refused cleanly\n", cases);
  return 0;
}
