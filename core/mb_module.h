/* mb_module.h - what a module is: the descriptor every DSP module exports.
 *
 * A module is pure DSP. The host allocates `state_size` zeroed bytes per
 * instance and hands them to the functions below. Thread labels:
 *   [control] may allocate, plan FFTs, fail; never runs during process().
 *   [audio]   never allocates, locks, logs or touches files.
 *
 * Lifecycle: channels() -> create() -> { set_param() | process() | reset() }*
 * -> destroy(). create() receives every parameter's value; set_param() only
 * changes after that. */
#ifndef MB_MODULE_H
#define MB_MODULE_H

#include <stddef.h>
#include <stdint.h>

typedef int mb_status;
enum {
  MB_OK = 0,
  MB_ERR_NOMEM,       /* allocation failed */
  MB_ERR_ARG,         /* bad argument: unknown name, value out of range */
  MB_ERR_IO,          /* file could not be opened, read or written */
  MB_ERR_FORMAT,      /* file is not audio, truncated, unsupported format */
  MB_ERR_GRAPH,       /* cycle, missing connection, bad channel layout */
  MB_ERR_STATE,       /* call not allowed now (graph closed, rendering) */
  MB_ERR_INTERRUPTED, /* render stopped by a signal */
};

#define MB_MAX_CHANNELS 32
#define MB_MAX_PORTS 8
#define MB_ERRLEN 512

typedef enum {
  MB_PARAM_NUMBER, /* real value with unit and range */
  MB_PARAM_INT,    /* integer value with range */
  MB_PARAM_BOOL,   /* 0 or 1; Lua sees a boolean */
  MB_PARAM_ENUM,   /* index into choices; Lua sees the choice's string */
  MB_PARAM_STRING, /* text (a path); structural by nature */
} mb_param_type;

typedef enum { MB_SCALE_LINEAR, MB_SCALE_LOG } mb_param_scale;

enum {
  /* Changes are ramped by the module (the host passes a ramp length). */
  MB_PARAM_SMOOTH = 1u << 0,
  /* Changing it changes the instance's shape (channels, file, FFT size):
   * the host re-creates the instance; never changed during a render. */
  MB_PARAM_STRUCTURAL = 1u << 1,
};

typedef struct mb_param_desc {
  const char *id;   /* flat Lua name: "gain", "freq3" */
  const char *unit; /* "dB", "Hz", "ms", "s", "" */
  mb_param_type type;
  double min, max, def; /* enum: def is an index; string: unused */
  mb_param_scale scale;
  unsigned flags;
  const char *const *choices; /* enum: NULL-terminated list */
  const char *help;           /* one line */
} mb_param_desc;

enum { MB_PORT_OPTIONAL = 1u << 0 };

typedef struct mb_port_desc {
  const char *name; /* "in" first; "sidechain", "dry", "wet" */
  unsigned flags;
} mb_port_desc;

/* What channels() and create() are told. [control] */
typedef struct mb_config {
  double rate;          /* graph sample rate, Hz */
  int max_frames;       /* largest block process() will see */
  int n_in;             /* number of input ports (= descriptor's) */
  int in_channels[MB_MAX_PORTS]; /* per port; 0 when nothing is connected */
  int out_channels;     /* set by the host from channels() before create() */
  const double *values; /* every parameter: number, int, bool 0/1, enum index */
  const char *const *strings; /* string parameters (NULL for the others) */
  void *host;           /* opaque object for host-backed modules (lua) */
  int64_t skip;         /* frames of latency padding before the signal starts
                           at this node's inputs (analysers skip them) */
  int64_t length;       /* frames of signal (and tail) at this node's inputs
                           after `skip`; -1 when unbounded */
} mb_config;

/* One call of process(). Buffers are planar float, one pointer per channel.
 * in[p] is NULL when input port p has nothing connected. */
typedef struct mb_block {
  int frames;
  int64_t pos; /* absolute frame of in[..][..][0] since the render began */
  const float *const *in[MB_MAX_PORTS];
  int in_channels[MB_MAX_PORTS];
  float *const *out;
  int out_channels;
} mb_block;

/* Module flags */
enum {
  MB_MODULE_FILE_SOURCE = 1u << 0, /* the host reads its `path` into out */
  MB_MODULE_FILE_SINK = 1u << 1,   /* the host writes its input to `path` */
  MB_MODULE_OFFLINE_ONLY = 1u << 2,/* refused by live playback */
  MB_MODULE_GENERATOR = 1u << 3,   /* produces signal with no input; has length() */
  MB_MODULE_DEVICE_SOURCE = 1u << 4, /* live input: the host fills out */
  MB_MODULE_DEVICE_SINK = 1u << 5,   /* live output: the host plays its input */
  /* Passes its input through unchanged and only measures it (results()):
   * live, the host passes the signal on and measures on the control
   * thread. */
  MB_MODULE_ANALYSER = 1u << 6,
};

typedef struct mb_module_desc {
  const char *id;      /* Lua name: "eq" */
  const char *summary; /* one line */
  const char *doc;     /* a paragraph for the module reference */
  const mb_port_desc *inputs;
  int n_inputs;
  int has_output;
  const mb_param_desc *params;
  int n_params;
  /* A list option expanded into numbered parameters: `bands = { {type=..,
   * freq=..}, ... }` sets type1, freq1, ...; NULL when the module has none. */
  const char *list_option;
  int list_max;
  size_t state_size;
  unsigned flags;

  /* [control] Output channel count for the given inputs and parameters;
   * <= 0 is an error described in err. NULL: same as input port 0. */
  int (*channels)(const mb_config *c, char *err, size_t errlen);
  /* [control] Build the instance (allocate, precompute); describe failures
   * in err. NULL means nothing to build. */
  mb_status (*create)(void *state, const mb_config *c, char *err,
                      size_t errlen);
  /* [audio] A parameter changed: reach `value` after `ramp` frames (0 = at
   * once). Only called for parameters without MB_PARAM_STRUCTURAL. */
  void (*set_param)(void *state, int idx, double value, int ramp);
  /* [audio] Process one block. */
  void (*process)(void *state, const mb_block *b);
  /* [audio] Clear history (delay lines, envelopes) as if newly created. */
  void (*reset)(void *state);
  /* [control] Latency in frames the instance adds to its signal path. */
  int (*latency)(const void *state);
  /* [control] Frames it keeps sounding after its input falls silent;
   * -1 = unbounded (the host caps it). NULL = 0. */
  int64_t (*tail)(const void *state);
  /* [control] Generators: frames of signal produced; -1 = unbounded. */
  int64_t (*length)(const void *state);
  /* [control] Analysers: results after a render, name/value pairs. Returns
   * the count written (at most max). */
  int (*results)(const void *state, const char **names, double *values,
                 int max);
  /* [control] Free what create() allocated. */
  void (*destroy)(void *state);
} mb_module_desc;

/* The registry (modules/registry.c): a plain NULL-terminated array. */
extern const mb_module_desc *const mb_modules[];
/* [any] Look a module up by id; NULL when unknown. */
const mb_module_desc *mb_module_find(const char *id);
/* [any] Index of a parameter by id; -1 when unknown. */
int mb_module_param_index(const mb_module_desc *m, const char *id);

#endif
