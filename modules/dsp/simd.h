/* simd.h - eight-float vectors for the kernels that need them (GCC/Clang
 * vector extensions: AVX with -march=native, two SSE registers otherwise).
 * Every lane runs the same operations, and per-lane min, max, multiply and
 * divide round exactly as scalar code, so vector bodies with scalar tails
 * stay block-size independent. [any] */
#ifndef MB_DSP_SIMD_H
#define MB_DSP_SIMD_H

#include <string.h>

/* Without AVX (sanitizer builds) GCC notes that passing 32-byte vectors
 * would change the ABI: these helpers are static and inlined. */
#if defined(__clang__)
#if __has_warning("-Wpsabi")
#pragma clang diagnostic ignored "-Wpsabi"
#endif
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

typedef float v8f __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));
typedef short v8s __attribute__((vector_size(16)));

static inline v8f ld(const float *p) {
  v8f v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void st(float *p, v8f v) { memcpy(p, &v, sizeof v); }
/* The even and the odd lanes of the 16 floats a, b: a stereo pair of
 * channels out of 8 interleaved frames. And back: the interleaved frames
 * of lanes 0-3 (VZIPLO) and 4-7 (VZIPHI) of the channels a and b. */
#if defined(__clang__)
#define VEVEN(a, b) __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14)
#define VODD(a, b) __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15)
#define VZIPLO(a, b) __builtin_shufflevector(a, b, 0, 8, 1, 9, 2, 10, 3, 11)
#define VZIPHI(a, b) __builtin_shufflevector(a, b, 4, 12, 5, 13, 6, 14, 7, 15)
#else
#define VEVEN(a, b) __builtin_shuffle(a, b, (v8i){0, 2, 4, 6, 8, 10, 12, 14})
#define VODD(a, b) __builtin_shuffle(a, b, (v8i){1, 3, 5, 7, 9, 11, 13, 15})
#define VZIPLO(a, b) __builtin_shuffle(a, b, (v8i){0, 8, 1, 9, 2, 10, 3, 11})
#define VZIPHI(a, b) __builtin_shuffle(a, b, (v8i){4, 12, 5, 13, 6, 14, 7, 15})
#endif
static inline v8f vabs(v8f a) { return (v8f)((v8i)a & 0x7fffffff); }
static inline v8f vsel(v8i m, v8f a, v8f b) { /* m ? a : b per lane */
  return (v8f)(((v8i)a & m) | ((v8i)b & ~m));
}

#endif
