/* main.c - the moonbus executable: a Lua host with the library preloaded.
 *
 * `moonbus run SCRIPT` runs a user's script; every other command is a Lua
 * script from scripts/ (measure.lua, modules.lua, ...). Errors print as one
 * line, "moonbus: <message>", with the position of the user's script line
 * when the error came from a call it made. Exit codes: 0 success, 1 runtime
 * error, 2 usage error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lualib.h>

#include "lmoonbus.h"

static const char *lua_dir, *script_dir;

static int is_dir(const char *p) {
  struct stat sb;
  return p && stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Where lua/ and scripts/ are: $MOONBUS_HOME, the source tree the binary
 * was built from, or the installed share folder. */
static void find_dirs(void) {
  static char lbuf[4096], sbuf[4096];
  const char *home = getenv("MOONBUS_HOME");
  if (home && *home) {
    snprintf(lbuf, sizeof lbuf, "%s/lua", home);
    snprintf(sbuf, sizeof sbuf, "%s/scripts", home);
    lua_dir = lbuf;
    script_dir = sbuf;
    return;
  }
  if (is_dir(MB_LUA_DIR)) {
    lua_dir = MB_LUA_DIR;
    script_dir = MB_SCRIPT_DIR;
  } else {
    lua_dir = MB_INSTALLED_LUA_DIR;
    script_dir = MB_INSTALLED_SCRIPT_DIR;
  }
}

/* Is this chunk the project's own Lua (library or command script)? */
static int is_library(const char *source) {
  if (!source || source[0] != '@') return 1; /* C functions, strings */
  const char *p = source + 1;
  return strncmp(p, lua_dir, strlen(lua_dir)) == 0 ||
         strncmp(p, script_dir, strlen(script_dir)) == 0 ||
         strncmp(p, "/usr/share/lua/", 15) == 0;
}

/* Does the message already start with "chunk:line:"? */
static int has_position(const char *msg) {
  const char *c = strchr(msg, ':');
  if (!c || c == msg) return 0;
  const char *d = c + 1;
  if (*d < '0' || *d > '9') return 0;
  while (*d >= '0' && *d <= '9') d++;
  return *d == ':';
}

/* Message handler: give a position-less message the position of the
 * innermost user-script line on the stack. */
static int on_error(lua_State *L) {
  if (!lua_isstring(L, 1)) return 1; /* a usage-error table, kept as is */
  const char *msg = lua_tostring(L, 1);
  if (has_position(msg)) return 1;
  lua_Debug ar;
  for (int level = 1; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "Sl", &ar);
    if (ar.currentline > 0 && !is_library(ar.source)) {
      lua_pushfstring(L, "%s:%d: %s", ar.short_src, ar.currentline, msg);
      return 1;
    }
  }
  return 1;
}

static int report(lua_State *L, int status) {
  if (status == LUA_OK) return 0;
  int code = 1;
  if (lua_istable(L, -1)) {
    /* { usage = true, message = "..." } from the command scripts */
    lua_getfield(L, -1, "usage");
    if (lua_toboolean(L, -1)) code = 2;
    lua_pop(L, 1);
    lua_getfield(L, -1, "message");
    lua_replace(L, -2);
  }
  const char *msg = lua_tostring(L, -1);
  if (!msg) msg = "(error object is not a string)";
  /* one line: the first line of the message */
  size_t len = strcspn(msg, "\n");
  fprintf(stderr, "moonbus: %.*s\n", (int)len, msg);
  return code;
}

static void set_paths(lua_State *L) {
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", lua_dir, lua_dir);
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_moonbus_core);
  lua_setfield(L, -2, "moonbus.core");
  lua_pop(L, 2);
  lua_pushstring(L, script_dir);
  lua_setglobal(L, "MOONBUS_SCRIPTS");
}

/* Load `path` and run it with arg = {[0] = name, ...} and the args as
 * varargs. */
static int run_file(lua_State *L, const char *path, const char *name, int argc,
                    char **argv) {
  lua_createtable(L, argc, 1);
  lua_pushstring(L, name);
  lua_rawseti(L, -2, 0);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setglobal(L, "arg");
  /* `moonbus run` also has the library loaded as the global `mb` */
  lua_getglobal(L, "require");
  lua_pushstring(L, "moonbus");
  int st = lua_pcall(L, 1, 1, 0);
  if (st) return report(L, st);
  lua_setglobal(L, "mb");

  lua_pushcfunction(L, on_error);
  int h = lua_gettop(L);
  st = luaL_loadfile(L, path);
  if (st) {
    if (st == LUA_ERRFILE) {
      lua_pop(L, 1);
      lua_pushfstring(L, "cannot open script '%s'", path);
    }
    return report(L, st);
  }
  for (int i = 0; i < argc; i++) lua_pushstring(L, argv[i]);
  st = lua_pcall(L, argc, 0, h);
  return report(L, st);
}

static void usage(FILE *f) {
  fputs("usage: moonbus COMMAND [ARGS...]\n"
        "\n"
        "  run SCRIPT.lua [ARGS...]   run a script (ARGS in the global `arg`)\n"
        "  measure FILE... [--json]   loudness, peaks, duration per file\n"
        "  modules [KIND] [--json]    modules and their parameters\n"
        "  demo [OUT.wav]             render the built-in demo mix\n"
        "  master IN OUT --target T   master to a delivery target (spotify,\n"
        "                             apple, youtube, tidal, ebu, cd, LUFS)\n"
        "  batch MANIFEST [--jobs N] [--shard I/N] [--dry-run] [--merge]\n"
        "                             master and check a catalogue, resumably\n"
        "  album ALBUM.lua [--out DIR] [--mode album|track]\n"
        "                             master an album: CD image, CUE, TOC,\n"
        "                             track files, QC report\n"
        "  live [--device D] [--block N] [--latency S] SCRIPT.lua [ARGS...]\n"
        "                             run a script with g:render() playing\n"
        "                             in real time (live --devices lists them)\n"
        "  audition IN [--chain CHAIN.lua] [--device D]\n"
        "                             play IN through a chain, level-matched\n"
        "                             A/B switch on the keys a, b, space\n"
        "  --help | --version\n"
        "\n"
        "Scripts: require \"moonbus\" (also the global `mb` in `run`).\n"
        "Exit status: 0 success, 1 runtime error, 2 usage error.\n",
        f);
}

int main(int argc, char **argv) {
  find_dirs();
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(cmd, "--version") || !strcmp(cmd, "-V")) {
    printf("moonbus %s\n", MB_VERSION);
    return 0;
  }
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "moonbus: out of memory\n");
    return 1;
  }
  luaL_openlibs(L);
  set_paths(L);
  int code;
  if (!strcmp(cmd, "run")) {
    if (argc < 3) {
      fprintf(stderr, "moonbus: run: give a script (moonbus run SCRIPT.lua)\n");
      code = 2;
    } else {
      code = run_file(L, argv[2], argv[2], argc - 3, argv + 3);
    }
  } else {
    static const char *const commands[] = {"run", "measure", "modules", "demo",
                                           "master", "live", "batch", "album",
                                           "audition"};
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.lua", script_dir, cmd);
    struct stat sb;
    int known = 0;
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
      known |= !strcmp(cmd, commands[i]);
    if (!known || stat(path, &sb) != 0) {
      const char *s = mb_suggest(cmd, commands, 9);
      fprintf(stderr, "moonbus: unknown command '%s'%s%s%s (see moonbus --help)\n",
              cmd, s ? "; did you mean '" : "", s ? s : "", s ? "'?" : "");
      code = 2;
    } else {
      char name[256];
      snprintf(name, sizeof name, "moonbus %s", cmd);
      code = run_file(L, path, name, argc - 2, argv + 2);
    }
  }
  lua_close(L); /* collects graphs: unfinished outputs are removed */
  return code;
}
