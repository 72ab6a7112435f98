/* input.c - a sound file as a source. The host reads the file (libsndfile,
 * resampled with libsoxr when its rate differs from the graph's): see
 * core/fileio.c. This descriptor only declares the node's shape. */
#include "mb_module.h"

static const mb_param_desc params[] = {
    {.id = "path", .unit = "", .type = MB_PARAM_STRING,
     .flags = MB_PARAM_STRUCTURAL,
     .help = "file to read: WAV, AIFF, FLAC, OGG, MP3, any channel count"},
};

const mb_module_desc mb_mod_input = {
    .id = "input",
    .summary = "read a sound file",
    .doc = "Reads any file libsndfile reads (WAV, AIFF, FLAC, OGG/Vorbis, "
           "Opus, MP3) with all its channels. A file at another rate than "
           "the graph is resampled with libsoxr at very high quality. The "
           "render lasts until the longest input ends, plus latency and "
           "tails.",
    .has_output = 1,
    .params = params,
    .n_params = 1,
    .flags = MB_MODULE_FILE_SOURCE,
};
