/* ramp.h - parameter ramps for modules. [audio]
 *
 * The host tells a module "reach value v in n frames" (mb_module_desc
 * set_param). These ramps do that exactly: after n calls of *_next the value
 * is exactly the target, whatever the block boundaries were, so renders do
 * not depend on block size. */
#ifndef MB_DSP_RAMP_H
#define MB_DSP_RAMP_H

#include <math.h>

/* Linear in the value. */
typedef struct mb_ramp {
  double value, target, step;
  int left;
} mb_ramp;

static inline void mb_ramp_init(mb_ramp *r, double v) {
  r->value = r->target = v;
  r->step = 0;
  r->left = 0;
}

static inline void mb_ramp_to(mb_ramp *r, double target, int frames) {
  r->target = target;
  if (frames <= 0) {
    r->value = target;
    r->left = 0;
    return;
  }
  r->step = (target - r->value) / frames;
  r->left = frames;
}

static inline int mb_ramp_active(const mb_ramp *r) { return r->left > 0; }

static inline double mb_ramp_next(mb_ramp *r) {
  if (r->left > 0) {
    r->value = --r->left ? r->value + r->step : r->target;
  }
  return r->value;
}

/* Advance n frames at once (for modules that update at a coarser rate). */
static inline double mb_ramp_skip(mb_ramp *r, int n) {
  if (r->left > 0) {
    if (n >= r->left) {
      r->value = r->target;
      r->left = 0;
    } else {
      r->value += r->step * n;
      r->left -= n;
    }
  }
  return r->value;
}

/* Geometric: constant ratio per frame, i.e. linear in dB. Both ends must
 * have the same sign and be non-zero (gains in linear units). */
typedef struct mb_gramp {
  double value, target, ratio;
  int left;
} mb_gramp;

static inline void mb_gramp_init(mb_gramp *r, double v) {
  r->value = r->target = v;
  r->ratio = 1;
  r->left = 0;
}

static inline void mb_gramp_to(mb_gramp *r, double target, int frames) {
  r->target = target;
  if (frames <= 0 || r->value == 0 || target == 0 ||
      (r->value < 0) != (target < 0)) {
    r->value = target;
    r->left = 0;
    return;
  }
  r->ratio = pow(target / r->value, 1.0 / frames);
  r->left = frames;
}

static inline double mb_gramp_next(mb_gramp *r) {
  if (r->left > 0) {
    r->value = --r->left ? r->value * r->ratio : r->target;
  }
  return r->value;
}

static inline double mb_db_to_lin(double db) { return pow(10.0, db / 20.0); }

#endif
