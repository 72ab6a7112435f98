/* lsys.c - operating-system helpers for the batch runner
 * (lua/moonbus/batch.lua), which Lua's standard library lacks: worker
 * processes, file status and listing, content hashes, and durable atomic
 * writes for journals and reports.
 *
 * Conventions as in liolib: misuse raises; failures of the environment
 * (a missing file, a full disk) return nil and a message naming the path.
 * All functions are [control]. */
#define _GNU_SOURCE
#include "lmoonbus.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int fail_errno(lua_State *L, const char *what, const char *path) {
  const int e = errno;
  lua_pushnil(L);
  lua_pushfstring(L, "cannot %s '%s': %s", what, path, strerror(e));
  return 2;
}

/* ---- processes ---- */

static volatile sig_atomic_t caught; /* signal trapped by on_signal */

/* core.fork() -> pid in the parent, 0 in the child. The child dies with
 * its parent (a batch killed with SIGKILL takes its workers with it, so a
 * re-run never races an orphan writing the same output). */
static int l_fork(lua_State *L) {
  const pid_t parent = getpid();
  fflush(NULL); /* no buffered output written twice */
  const pid_t pid = fork();
  if (pid < 0) return fail_errno(L, "start", "a worker process");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(111); /* the parent died before prctl */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    caught = 0;
  }
  lua_pushinteger(L, pid);
  return 1;
}

/* core.trap_interrupt(): from now on SIGINT and SIGTERM only raise a flag
 * that core.interrupted() reads, so a batch finishes its bookkeeping (its
 * workers get the signal themselves and stop). Workers start with the
 * default actions again. */
static void on_signal(int sig) { caught = sig; }

static int l_trap_interrupt(lua_State *L) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  (void)L;
  return 0;
}

/* core.interrupted() -> "INT", "TERM" or nil */
static int l_interrupted(lua_State *L) {
  if (caught == SIGINT)
    lua_pushliteral(L, "INT");
  else if (caught == SIGTERM)
    lua_pushliteral(L, "TERM");
  else
    lua_pushnil(L);
  return 1;
}

/* core.exit(code): leave a worker at once, without the parent's atexit
 * handlers or closing the Lua state it inherited. */
static int l_exit(lua_State *L) {
  const int code = (int)luaL_optinteger(L, 1, 0);
  fflush(NULL);
  _exit(code);
  return 0;
}

/* core.wait(timeout) -> pid, how ("exit" or "signal"), code; nil when no
 * child ended within timeout seconds (0: just look); nil, "none" when
 * there are no children. */
static int l_wait(lua_State *L) {
  const double timeout = luaL_optnumber(L, 1, 0);
  struct timespec nap = {0, 20 * 1000 * 1000};
  double waited = 0;
  for (;;) {
    int st = 0;
    const pid_t pid = waitpid(-1, &st, WNOHANG);
    if (pid > 0) {
      lua_pushinteger(L, pid);
      if (WIFSIGNALED(st)) {
        lua_pushliteral(L, "signal");
        lua_pushinteger(L, WTERMSIG(st));
      } else {
        lua_pushliteral(L, "exit");
        lua_pushinteger(L, WEXITSTATUS(st));
      }
      return 3;
    }
    if (pid < 0 && errno == ECHILD) {
      lua_pushnil(L);
      lua_pushliteral(L, "none");
      return 2;
    }
    if (waited >= timeout) {
      lua_pushnil(L);
      return 1;
    }
    nanosleep(&nap, NULL);
    waited += 0.02;
  }
}

/* core.kill(pid [, signal name]) */
static int l_kill(lua_State *L) {
  static const char *const names[] = {"TERM", "KILL", "INT", NULL};
  static const int sigs[] = {SIGTERM, SIGKILL, SIGINT};
  const pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  const int s = sigs[luaL_checkoption(L, 2, "TERM", names)];
  lua_pushboolean(L, pid > 0 && kill(pid, s) == 0);
  return 1;
}

/* core.cpus(): cores this process may run on (the affinity mask, which
 * Slurm and taskset narrow), at least 1. */
static int l_cpus(lua_State *L) {
  lua_pushinteger(L, mb_cpus());
  return 1;
}

/* core.clock(): monotonic seconds, for ETAs and job times. */
static int l_clock(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec);
  return 1;
}

/* core.alive(pid) -> whether a process with this id exists (whose work
 * files a sweep must leave alone) */
static int l_alive(lua_State *L) {
  const pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  lua_pushboolean(L, pid > 0 && (kill(pid, 0) == 0 || errno == EPERM));
  return 1;
}

/* core.pid() -> this process's id (names of work files) */
static int l_pid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

/* core.isatty(fd) */
static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* ---- files ---- */

/* core.stat(path) -> { type = "file"|"dir"|"other", size, mtime (seconds
 * in nanoseconds, as text), dev, ino } or nil, message. */
static int l_stat(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) != 0) return fail_errno(L, "read", path);
  lua_createtable(L, 0, 5);
  lua_pushstring(L, S_ISREG(st.st_mode)   ? "file"
                    : S_ISDIR(st.st_mode) ? "dir"
                                          : "other");
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)st.st_size);
  lua_setfield(L, -2, "size");
  /* nanoseconds as text: exact after a round trip through JSON, whose
   * numbers are doubles */
  lua_pushfstring(L, "%I", (lua_Integer)st.st_mtim.tv_sec * 1000000000 +
                               st.st_mtim.tv_nsec);
  lua_setfield(L, -2, "mtime_ns");
  lua_pushinteger(L, (lua_Integer)st.st_dev);
  lua_setfield(L, -2, "dev");
  lua_pushinteger(L, (lua_Integer)st.st_ino);
  lua_setfield(L, -2, "ino");
  return 1;
}

/* core.listdir(path) -> { names... } (no "." or "..") or nil, message */
static int l_listdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR *d = opendir(path);
  if (!d) return fail_errno(L, "list", path);
  lua_newtable(L);
  int n = 0;
  for (struct dirent *e; (e = readdir(d));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    lua_pushstring(L, e->d_name);
    lua_rawseti(L, -2, ++n);
  }
  closedir(d);
  return 1;
}

/* core.mkdir(path): make a folder and its missing parents. */
static int l_mkdir(lua_State *L) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  char *p = malloc(len + 1);
  if (!p) return luaL_error(L, "out of memory");
  memcpy(p, path, len + 1);
  for (size_t i = 1; i <= len; i++) {
    if (p[i] != '/' && p[i] != '\0') continue;
    const char c = p[i];
    p[i] = '\0';
    struct stat st;
    if (stat(p, &st) != 0) {
      if (mkdir(p, 0777) != 0 && errno != EEXIST) {
        const int e = errno;
        free(p);
        errno = e;
        return fail_errno(L, "make the folder", path);
      }
    } else if (!S_ISDIR(st.st_mode)) {
      free(p);
      lua_pushnil(L);
      lua_pushfstring(L, "cannot make the folder '%s': a file is in the way",
                      path);
      return 2;
    }
    p[i] = c;
  }
  free(p);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.realpath(path) -> absolute path with links resolved, or nil, msg */
static int l_realpath(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char *r = realpath(path, NULL);
  if (!r) return fail_errno(L, "find", path);
  lua_pushstring(L, r);
  free(r);
  return 1;
}

/* ---- hashes ----
 * A 128-bit content hash for change detection (not for security): two
 * 64-bit lanes, each folding 8-byte little-endian words with a multiply
 * and rotate, finished with the splitmix64 finaliser and the length. Any
 * changed byte changes both lanes. */
typedef struct {
  uint64_t a, b, len;
  unsigned char tail[8];
  int ntail;
} hasher;

static uint64_t rotl(uint64_t x, int r) { return x << r | x >> (64 - r); }

static uint64_t fin(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static void hword(hasher *h, uint64_t w) {
  h->a = rotl(h->a ^ (w * 0x9e3779b97f4a7c15ull), 31) * 0xc2b2ae3d27d4eb4full;
  h->b = rotl(h->b + (w * 0x165667b19e3779f9ull), 27) * 0x85ebca77c2b2ae63ull;
}

static uint64_t load64(const unsigned char *p) {
  uint64_t w = 0;
  for (int i = 7; i >= 0; i--) w = w << 8 | p[i];
  return w;
}

static void hinit(hasher *h) {
  memset(h, 0, sizeof *h);
  h->a = 0x6a09e667f3bcc908ull;
  h->b = 0xbb67ae8584caa73bull;
}

static void hfeed(hasher *h, const unsigned char *p, size_t n) {
  h->len += n;
  while (n && h->ntail) {
    h->tail[h->ntail++] = *p++, n--;
    if (h->ntail == 8) hword(h, load64(h->tail)), h->ntail = 0;
  }
  for (; n >= 8; p += 8, n -= 8) hword(h, load64(p));
  while (n--) h->tail[h->ntail++] = *p++;
}

static void hpush(lua_State *L, hasher *h) {
  unsigned char pad[8] = {0};
  memcpy(pad, h->tail, (size_t)h->ntail);
  hword(h, load64(pad) ^ (uint64_t)h->ntail << 56);
  hword(h, h->len);
  char hex[33];
  snprintf(hex, sizeof hex, "%016llx%016llx",
           (unsigned long long)fin(h->a ^ rotl(h->b, 17)),
           (unsigned long long)fin(h->b ^ h->len));
  lua_pushstring(L, hex);
}

/* core.hash(string) -> 32 hex digits */
static int l_hash(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  hasher h;
  hinit(&h);
  hfeed(&h, (const unsigned char *)s, n);
  hpush(L, &h);
  return 1;
}

/* core.hash_file(path) -> 32 hex digits of the content, or nil, message */
static int l_hash_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  FILE *f = fopen(path, "rb");
  if (!f) return fail_errno(L, "read", path);
  enum { CHUNK = 1 << 20 };
  unsigned char *buf = malloc(CHUNK);
  if (!buf) {
    fclose(f);
    return luaL_error(L, "out of memory");
  }
  hasher h;
  hinit(&h);
  size_t n;
  while ((n = fread(buf, 1, CHUNK, f)) > 0) hfeed(&h, buf, n);
  const int bad = ferror(f);
  free(buf);
  fclose(f);
  if (bad) {
    errno = EIO;
    return fail_errno(L, "read", path);
  }
  hpush(L, &h);
  return 1;
}

/* core.write_atomic(path, text): write a temporary file beside `path`,
 * flush it to the disk, rename it over `path` and flush the folder, so a
 * reader (or a crash at any moment) sees the old file or the new one,
 * never a mixture. */
static int l_write_atomic(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t n;
  const char *text = luaL_checklstring(L, 2, &n);
  const char *slash = strrchr(path, '/');
  const size_t dlen = slash ? (size_t)(slash - path) : 0;
  /* hidden, beside it: ".<name>.moonbus-tmp-<pid>", the pattern a batch
   * re-run sweeps after a kill */
  lua_pushlstring(L, path, slash ? dlen + 1 : 0); /* the folder, with '/' */
  lua_pushfstring(L, ".%s.moonbus-tmp-%d", slash ? slash + 1 : path,
                  (int)getpid());
  lua_concat(L, 2);
  const char *tmp = lua_tostring(L, -1);
  const int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) return fail_errno(L, "write", path);
  size_t done = 0;
  while (done < n) {
    const ssize_t w = write(fd, text + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int e = errno;
      close(fd);
      unlink(tmp);
      errno = e ? e : EIO;
      return fail_errno(L, "write", path);
    }
    done += (size_t)w;
  }
  if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
    const int e = errno;
    unlink(tmp);
    errno = e;
    return fail_errno(L, "write", path);
  }
  /* the rename itself is durable once the folder is flushed */
  char *dir = malloc(dlen + 2);
  if (dir) {
    if (dlen)
      memcpy(dir, path, dlen), dir[dlen] = '\0';
    else
      strcpy(dir, slash ? "/" : ".");
    const int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) fsync(dfd), close(dfd);
    free(dir);
  }
  lua_pushboolean(L, 1);
  return 1;
}

const luaL_Reg mb_lua_sys[] = {
    {"fork", l_fork},         {"exit", l_exit},
    {"trap_interrupt", l_trap_interrupt}, {"interrupted", l_interrupted},
    {"wait", l_wait},         {"kill", l_kill},
    {"cpus", l_cpus},         {"clock", l_clock},
    {"pid", l_pid},           {"alive", l_alive},
    {"isatty", l_isatty},     {"stat", l_stat},
    {"listdir", l_listdir},   {"mkdir", l_mkdir},
    {"realpath", l_realpath}, {"hash", l_hash},
    {"hash_file", l_hash_file}, {"write_atomic", l_write_atomic},
    {NULL, NULL}};
