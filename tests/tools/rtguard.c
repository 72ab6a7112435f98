/* rtguard.c - LD_PRELOAD library for the real-time test: fails the run if
 * the audio callback allocates, frees or locks.
 *
 * moonbus looks up `moonbus_rt_guard` when playback starts (dlsym) and, when
 * it exists, calls it with 1 on entering its audio callback and 0 on
 * leaving. Inside, any malloc family call or mutex lock on that thread
 * prints what it was and aborts the process, so the test sees a crash, not
 * a pass. RTGUARD_REPORT=path writes the number of guarded callbacks there
 * at exit, so the test can tell the guard was really in place. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);

static __thread int inside;
static atomic_long guarded;

static void trip(const char *what) {
  char msg[128];
  int n = snprintf(msg, sizeof msg,
                   "rtguard: %s on the audio thread inside the callback\n",
                   what);
  inside = 0;
  if (write(2, msg, (size_t)n) < 0) {
  }
  abort();
}

void moonbus_rt_guard(int on) {
  inside = on;
  if (on) atomic_fetch_add(&guarded, 1);
}

void *malloc(size_t n) {
  if (inside) trip("malloc");
  return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
  if (inside) trip("calloc");
  return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
  if (inside) trip("realloc");
  return __libc_realloc(p, n);
}
void free(void *p) {
  if (inside && p) trip("free");
  __libc_free(p);
}
int posix_memalign(void **out, size_t align, size_t n) {
  if (inside) trip("posix_memalign");
  void *p = __libc_memalign(align, n);
  if (!p) return 12;
  *out = p;
  return 0;
}
void *aligned_alloc(size_t align, size_t n) {
  if (inside) trip("aligned_alloc");
  return __libc_memalign(align, n);
}
void *memalign(size_t align, size_t n) {
  if (inside) trip("memalign");
  return __libc_memalign(align, n);
}

int pthread_mutex_lock(pthread_mutex_t *m) {
  static int (*real)(pthread_mutex_t *);
  if (inside) trip("pthread_mutex_lock");
  if (!real) real = (int (*)(pthread_mutex_t *))dlsym(RTLD_NEXT, "pthread_mutex_lock");
  return real(m);
}

__attribute__((destructor)) static void report(void) {
  const char *path = getenv("RTGUARD_REPORT");
  if (!path) return;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  char buf[64];
  int n = snprintf(buf, sizeof buf, "%ld\n", atomic_load(&guarded));
  if (write(fd, buf, (size_t)n) < 0) {
  }
  close(fd);
}
