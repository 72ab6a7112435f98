/* device_in.c - live input from an audio device (PortAudio). The host
 * fills the node's output from the device's input buffer: see
 * core/live.c. This descriptor only declares the node's shape. */
#include "mb_module.h"

static const mb_param_desc params[] = {
    {.id = "device", .unit = "", .type = MB_PARAM_STRING,
     .flags = MB_PARAM_STRUCTURAL,
     .help = "device name or number from mb.devices(); default: JACK's "
             "when a JACK server runs, else the system default"},
    {.id = "channels", .unit = "", .type = MB_PARAM_INT, .min = 0,
     .max = MB_MAX_CHANNELS, .def = 0, .flags = MB_PARAM_STRUCTURAL,
     .help = "input channels to take; 0 = all the device has"},
};

const mb_module_desc mb_mod_device_in = {
    .id = "device_in",
    .summary = "live input from an audio device",
    .doc = "The input of an audio device, through PortAudio (JACK, ALSA), "
           "while the graph plays live (g:play, moonbus live). It never "
           "ends: playback runs until `duration` or an interrupt (Ctrl-C). "
           "Input and output devices must belong to the same audio system. "
           "An offline render refuses it.",
    .has_output = 1,
    .params = params,
    .n_params = 2,
    .flags = MB_MODULE_DEVICE_SOURCE,
};
