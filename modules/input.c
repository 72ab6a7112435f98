/* input.c - a sound file as a source. The host reads the file (libsndfile,
 * resampled with libsoxr when its rate differs from the graph's): see
 * core/fileio.c. This descriptor only declares the node's shape. */
#include "mb_module.h"

static const mb_param_desc params[] = {
    {.id = "path", .unit = "", .type = MB_PARAM_STRING,
     .flags = MB_PARAM_STRUCTURAL,
     .help = "file to read: WAV, AIFF, FLAC, OGG, MP3, any channel count"},
    {.id = "start", .unit = "s", .type = MB_PARAM_NUMBER,
     .flags = MB_PARAM_STRUCTURAL, .min = 0, .max = 86400, .def = 0,
     .help = "where the file begins on the graph's time line (silence "
             "before it)"},
};

const mb_module_desc mb_mod_input = {
    .id = "input",
    .summary = "read a sound file",
    .doc = "Reads any file libsndfile reads (WAV, AIFF, FLAC, OGG/Vorbis, "
           "Opus, MP3) with all its channels. A file at another rate than "
           "the graph is resampled with libsoxr at very high quality. "
           "`start` places the file later on the time line (rounded to the "
           "nearest frame; silence before it), for sequencing and "
           "overlaps. The render lasts until the longest input ends, plus "
           "latency and tails.",
    .has_output = 1,
    .params = params,
    .n_params = 2,
    .flags = MB_MODULE_FILE_SOURCE,
};
