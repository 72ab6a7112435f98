/* output.c - a sound file as a sink. The host writes the file atomically
 * (temporary file, renamed when complete): see core/fileio.c. */
#include "mb_module.h"

static const mb_port_desc inputs[] = {{.name = "in"}};

static const mb_param_desc params[] = {
    {.id = "path", .unit = "", .type = MB_PARAM_STRING,
     .flags = MB_PARAM_STRUCTURAL,
     .help = "file to write; the format follows the extension (.wav, "
             ".aif/.aiff, .flac; lossy .mp3, .ogg (Vorbis), .opus)"},
    {.id = "bits", .unit = "bits", .type = MB_PARAM_INT, .min = 16,
     .max = 32, .def = 24, .flags = MB_PARAM_STRUCTURAL,
     .help = "16 or 24 (integer PCM) or 32 (float); lossy formats "
             "ignore it"},
    {.id = "rate", .unit = "Hz", .type = MB_PARAM_NUMBER, .min = 0,
     .max = 768000, .def = 0, .flags = MB_PARAM_STRUCTURAL,
     .help = "sample rate of the file; 0 keeps the graph's (resampled "
             "with libsoxr otherwise)"},
    {.id = "from", .unit = "s", .type = MB_PARAM_NUMBER, .min = 0,
     .max = 86400, .def = 0, .flags = MB_PARAM_STRUCTURAL,
     .help = "first moment written (the signal before it is left out)"},
    {.id = "length", .unit = "s", .type = MB_PARAM_NUMBER, .min = 0,
     .max = 86400, .def = 0, .flags = MB_PARAM_STRUCTURAL,
     .help = "most seconds written; 0 writes to the end"},
};

const mb_module_desc mb_mod_output = {
    .id = "output",
    .summary = "write a sound file",
    .doc = "Writes WAV (RF64 past 4 GiB), AIFF or FLAC by extension, at 16 "
           "or 24 bits or 32-bit float, optionally at another sample rate; "
           "or MP3, Ogg Vorbis or Opus (48 kHz and its divisors) through "
           "libsndfile's encoders at their default quality. "
           "The file is written beside its destination under a temporary "
           "name and renamed into place only when the render completes. "
           "The output is aligned with the input: latency added by "
           "look-ahead modules is removed. Samples clipped by an integer "
           "format are counted and reported. `from` and `length` write a "
           "window of the signal (rounded to frames): several outputs cut "
           "one render into pieces, sample-exactly.",
    .inputs = inputs,
    .n_inputs = 1,
    .has_output = 0,
    .params = params,
    .n_params = 5,
    .flags = MB_MODULE_FILE_SINK,
};
