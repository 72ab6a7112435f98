/* device_out.c - live output to an audio device (PortAudio). The host
 * plays the node's input: see core/live.c. */
#include "mb_module.h"

static const mb_port_desc inputs[] = {{.name = "in"}};

static const mb_param_desc params[] = {
    {.id = "device", .unit = "", .type = MB_PARAM_STRING,
     .flags = MB_PARAM_STRUCTURAL,
     .help = "device name or number from mb.devices(); default: JACK's "
             "when a JACK server runs, else the system default"},
    {.id = "channels", .unit = "", .type = MB_PARAM_INT, .min = 0,
     .max = MB_MAX_CHANNELS, .def = 0, .flags = MB_PARAM_STRUCTURAL,
     .help = "device channels to open; 0 = as many as reach the node (a "
             "mono signal feeds them all)"},
};

const mb_module_desc mb_mod_device_out = {
    .id = "device_out",
    .summary = "live output to an audio device",
    .doc = "Plays its input on an audio device through PortAudio (JACK, "
           "ALSA) while the graph plays live (g:play, moonbus live), with "
           "the lowest latency the device offers unless `latency` or "
           "`block` is asked for. Without a device_out node, playback "
           "plays what reaches the graph's first file output. The latency "
           "of look-ahead modules is not removed live: it is reported "
           "(stats.latency). In an offline render the node takes its "
           "signal and plays nothing, so one script serves both.",
    .inputs = inputs,
    .n_inputs = 1,
    .has_output = 0,
    .params = params,
    .n_params = 2,
    .flags = MB_MODULE_DEVICE_SINK,
};
