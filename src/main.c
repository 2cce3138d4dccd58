/*
 * main.c: the shmlua host.
 *
 * Behaves as Lua 5.4's stand-alone `lua` program (reference manual, section
 * 7) so that a Lua user finds what they expect:
 *
 *   shmlua [options] [script [args]]
 *     -e stat   run the string `stat`          -l mod    require mod into global mod
 *     -l g=mod  require mod into global g      -i        REPL after the script
 *     -v        print the version              -E        ignore LUA_INIT/LUA_PATH/LUA_CPATH
 *     -W        turn warnings on               --        stop handling options
 *     -         run stdin as the script
 *
 * `-e`, `-l` and `-W` take effect in the order given, after LUA_INIT_5_4 (or
 * LUA_INIT), before the script.  With no script, no -e and no -v the host
 * starts the REPL when stdin is a terminal and runs stdin as a script
 * otherwise.  The global `arg` holds the script at index 0, its arguments at
 * 1.., and the interpreter and options at negative indices.
 *
 * Everything that can raise runs inside one protected call of host_main, so a
 * Lua error never escapes as a longjmp without a handler.  Errors print
 * "progname: message" plus a traceback on stderr, and the exit status is 1.
 *
 * progname is argv[0], as in lua (an empty argv[0] falls back to "shmlua"):
 * the user sees the command they typed, and tests match on the program name
 * as they invoked it.
 *
 * The shm module is only preloaded, never required eagerly, so start-up costs
 * what Lua's own start-up costs.
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"
#include "shm.h"

/* Defined in shm.c (exported for stock lua5.4 as well). */
int luaopen_shm(lua_State *L);

#define HOST_NAME "shmlua"
#define INIT_VAR "LUA_INIT_" LUA_VERSION_MAJOR "_" LUA_VERSION_MINOR
#define INIT_VAR_PLAIN "LUA_INIT"
#define REPL_CHUNK "=stdin"
#define PROMPT1 "> "
#define PROMPT2 ">> "

/* Options seen on the command line (HostArgs.flags). */
enum {
  OPT_EXEC = 1,  /* -e: a statement counts as something to do */
  OPT_INTERACTIVE = 2,
  OPT_VERSION = 4,
  OPT_NOENV = 8
};

/* What the command line says, as parsed by parse_args. */
typedef struct HostArgs {
  int argc;
  char **argv;
  unsigned flags;   /* OPT_* */
  int script;       /* argv index of the script, 0 when there is none */
  int from_stdin;   /* the script is "-": read it from stdin */
  int optend;       /* options live in argv[1 .. optend-1] */
  int bad;          /* argv index of a malformed option, 0 when all are fine */
} HostArgs;

/* NULL while the REPL runs: its messages carry no program name, as in lua. */
static const char *progname = HOST_NAME;

/* ---- interrupting a running chunk with SIGINT ------------------------- */

/*
 * The signal handler may not raise a Lua error itself: all it may do is set
 * a hook (lua_sethook is safe to call asynchronously).  The hook runs at the
 * next call, return or instruction of the interrupted Lua code and raises
 * there, where raising is allowed.
 */
static lua_State *volatile sigint_state;
static struct sigaction sigint_saved;

static void interrupt_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

static void on_sigint(int signo) {
  (void)signo;
  /* SA_RESETHAND restored the default action: a second ^C kills the host
   * even if the Lua code never reaches the hook (a long C call). */
  lua_sethook(sigint_state, interrupt_hook,
              LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* Installs (on != 0) or removes the SIGINT handler around one Lua call. */
static void catch_sigint(lua_State *L, int on) {
  if (on) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigint_state = L;
    sigaction(SIGINT, &sa, &sigint_saved);
  } else {
    sigaction(SIGINT, &sigint_saved, NULL);
  }
}

/* ---- running chunks and reporting errors ------------------------------- */

/* Prints "progname: msg" (or just msg inside the REPL) on stderr. */
static void print_error(const char *msg) {
  if (progname != NULL)
    fprintf(stderr, "%s: ", progname);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

/*
 * Message handler of every protected call: takes the error object at 1,
 * returns the message to print.  A string gets a traceback; an object with
 * a __tostring metamethod that yields a string is shown through it (a
 * user-made error object, printed as is, as lua does); anything else is
 * named by its type, with a traceback.
 */
static int error_handler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/*
 * Calls the function below the `nargs` arguments on top of the stack with
 * error_handler, SIGINT turned into a Lua error for the duration.  Leaves
 * `nres` results (or the error message) in place of function and arguments;
 * returns the lua_pcall status.
 */
static int host_call(lua_State *L, int nargs, int nres) {
  int status;
  int handler = lua_gettop(L) - nargs;   /* where the function is now */
  lua_pushcfunction(L, error_handler);
  lua_insert(L, handler);
  catch_sigint(L, 1);
  status = lua_pcall(L, nargs, nres, handler);
  catch_sigint(L, 0);
  lua_remove(L, handler);
  return status;
}

/*
 * After a load or call with `status`: if it failed, prints the message on top
 * of the stack and pops it.  Returns status, so callers can chain.
 */
static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (msg == NULL)   /* only errors raised outside host_call get here */
      msg = "(error object is not a string)";
    print_error(msg);
    lua_pop(L, 1);
  }
  return status;
}

/* Loads and runs a string as a chunk named `chunkname`; reports errors. */
static int run_string(lua_State *L, const char *s, const char *chunkname) {
  int status = luaL_loadbuffer(L, s, strlen(s), chunkname);
  if (status == LUA_OK)
    status = host_call(L, 0, 0);
  return report(L, status);
}

/* Loads and runs a file (NULL: stdin); reports errors. */
static int run_file(lua_State *L, const char *path) {
  int status = luaL_loadfile(L, path);
  if (status == LUA_OK)
    status = host_call(L, 0, 0);
  return report(L, status);
}

/*
 * -l spec: spec is "mod" or "global=mod".  Calls the global `require` with
 * the module name and stores the result in the global.  Reports errors.
 */
static int require_into_global(lua_State *L, const char *spec) {
  const char *eq = strchr(spec, '=');
  int status;
  lua_getglobal(L, "require");
  lua_pushstring(L, eq != NULL ? eq + 1 : spec);
  status = host_call(L, 1, 1);
  if (status == LUA_OK) {
    if (eq != NULL)
      lua_pushlstring(L, spec, (size_t)(eq - spec));
    else
      lua_pushstring(L, spec);
    lua_insert(L, -2);                       /* name, value */
    lua_setglobal(L, lua_tostring(L, -2));   /* the name stays referenced */
    lua_pop(L, 1);
  }
  return report(L, status);
}

/* Runs LUA_INIT_5_4, or LUA_INIT when that is unset: a chunk or "@file". */
static int run_init(lua_State *L) {
  const char *chunkname = "=" INIT_VAR;
  const char *init = getenv(INIT_VAR);
  if (init == NULL) {
    chunkname = "=" INIT_VAR_PLAIN;
    init = getenv(INIT_VAR_PLAIN);
  }
  if (init == NULL)
    return LUA_OK;
  if (init[0] == '@')
    return run_file(L, init + 1);
  return run_string(L, init, chunkname);
}

/*
 * The main script: loads it (a file, or stdin for "-"), passes the current
 * contents of the global `arg` (1 .. #arg) as its `...`, and runs it.
 * Raises if `arg` is no longer a table; reports errors of the script.
 */
static int run_script(lua_State *L, const HostArgs *a) {
  int status = luaL_loadfile(L, a->from_stdin ? NULL : a->argv[a->script]);
  if (status == LUA_OK) {
    lua_Integer i, n;
    if (lua_getglobal(L, "arg") != LUA_TTABLE)
      return luaL_error(L, "'arg' is not a table");
    n = luaL_len(L, -1);
    if (n < 0 || n > INT_MAX - 8)
      return luaL_error(L, "too many arguments to script");
    luaL_checkstack(L, (int)n + 3, "too many arguments to script");
    for (i = 1; i <= n; i++)
      lua_rawgeti(L, -(int)i, i);    /* arg table sits i slots below */
    lua_remove(L, -(int)n - 1);
    status = host_call(L, (int)n, 0);
  }
  return report(L, status);
}

/* ---- the read-eval-print loop ----------------------------------------- */

/*
 * Prints the prompt (_PROMPT / _PROMPT2 when they are strings or numbers)
 * and reads one line of any length from stdin.  Pushes it without its
 * newline and returns 1, or pushes nothing and returns 0 at end of input.
 */
static int repl_readline(lua_State *L, int first) {
  luaL_Buffer b;
  int got = 0;   /* read anything at all, even an empty line */
  const char *prompt;
  lua_getglobal(L, first ? "_PROMPT" : "_PROMPT2");
  prompt = lua_isstring(L, -1) ? lua_tostring(L, -1) : first ? PROMPT1 : PROMPT2;
  fputs(prompt, stdout);
  fflush(stdout);
  lua_pop(L, 1);   /* printed already: the string may die with the slot */
  luaL_buffinit(L, &b);
  for (;;) {
    char *p = luaL_prepbuffer(&b);
    size_t n;
    if (fgets(p, LUAL_BUFFERSIZE, stdin) == NULL)
      break;
    n = strlen(p);
    got = 1;
    if (n > 0 && p[n - 1] == '\n') {
      luaL_addsize(&b, n - 1);
      break;
    }
    luaL_addsize(&b, n);
  }
  luaL_pushresult(&b);
  if (!got) {
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

/* Is the status/message on top a syntax error only because input ended? */
static int wants_more(lua_State *L, int status) {
  static const char mark[] = "<eof>";
  size_t len;
  const char *msg;
  if (status != LUA_ERRSYNTAX)
    return 0;
  msg = lua_tolstring(L, -1, &len);
  return msg != NULL && len >= sizeof mark - 1 &&
         strcmp(msg + len - (sizeof mark - 1), mark) == 0;
}

/*
 * Reads one REPL entry and compiles it.  Tries the first line as an
 * expression ("return line;"), then as statements, reading more lines while
 * the statement is incomplete.  A first line "=expr" means "return expr"
 * (as in Lua 5.2's REPL).  Returns -1 at end of input with nothing pushed;
 * otherwise pushes the compiled function or the error message and returns
 * the load status.
 */
static int repl_load(lua_State *L) {
  int status;
  size_t len;
  const char *line;
  if (!repl_readline(L, 1))
    return -1;
  line = lua_tostring(L, -1);
  if (line[0] == '=') {
    lua_pushfstring(L, "return %s", line + 1);
    lua_remove(L, -2);
  } else {
    const char *expr = lua_pushfstring(L, "return %s;", line);
    if (luaL_loadbuffer(L, expr, strlen(expr), REPL_CHUNK) == LUA_OK) {
      lua_replace(L, -3);   /* function over the line */
      lua_pop(L, 1);        /* the expression text */
      return LUA_OK;
    }
    lua_pop(L, 2);          /* error message and expression text */
  }
  for (;;) {                /* the entry so far is on top */
    line = lua_tolstring(L, -1, &len);
    status = luaL_loadbuffer(L, line, len, REPL_CHUNK);
    if (!wants_more(L, status))
      break;
    lua_pop(L, 1);          /* the "<eof>" message */
    if (!repl_readline(L, 0)) {
      /* input ended inside a statement: compile again for the message */
      status = luaL_loadbuffer(L, line, len, REPL_CHUNK);
      break;
    }
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);       /* entry .. "\n" .. new line */
  }
  lua_remove(L, -2);        /* the entry text */
  return status;
}

/* Prints the values on the stack above `base` with the global print. */
static void repl_print(lua_State *L, int base) {
  int n = lua_gettop(L) - base;
  if (n <= 0)
    return;
  luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
  lua_getglobal(L, "print");
  lua_insert(L, base + 1);
  if (lua_pcall(L, n, 0, 0) != LUA_OK) {
    const char *why = lua_tostring(L, -1);
    print_error(lua_pushfstring(L, "error calling 'print' (%s)",
                                why ? why : luaL_typename(L, -1)));
  }
}

/* Reads, runs and prints entries until stdin ends; errors do not stop it. */
static void repl(lua_State *L) {
  const char *saved = progname;
  int base = lua_gettop(L);
  int status;
  progname = NULL;
  while ((status = repl_load(L)) != -1) {
    if (status == LUA_OK)
      status = host_call(L, 0, LUA_MULTRET);
    if (status == LUA_OK)
      repl_print(L, base);
    else
      report(L, status);
    lua_settop(L, base);
  }
  fputs("\n", stdout);
  fflush(stdout);
  progname = saved;
}

/* ---- the command line -------------------------------------------------- */

static void print_version(void) {
  fputs(SHM_VERSION " (" LUA_RELEASE ")\n", stdout);
  fflush(stdout);
}

static void print_usage(const char *bad) {
  if (bad[1] == 'e' || bad[1] == 'l')
    fprintf(stderr, "%s: '%s' needs an argument\n", progname, bad);
  else
    fprintf(stderr, "%s: unrecognized option '%s'\n", progname, bad);
  fprintf(stderr,
          "usage: %s [options] [script [args]]\n"
          "Available options are:\n"
          "  -e stat   execute string 'stat'\n"
          "  -i        enter interactive mode after executing 'script'\n"
          "  -l mod    require library 'mod' into global 'mod'\n"
          "  -l g=mod  require library 'mod' into global 'g'\n"
          "  -v        show version information\n"
          "  -E        ignore environment variables\n"
          "  -W        turn warnings on\n"
          "  --        stop handling options\n"
          "  -         stop handling options and execute stdin\n",
          progname);
  fflush(stderr);
}

/*
 * Fills `a` from argv.  Options end at the first argument that does not
 * start with '-' (the script), at "-" (the script is stdin), or after "--".
 * -e and -l take their argument glued ("-eprint(1)") or as the next word,
 * which may not itself look like an option.
 */
static void parse_args(HostArgs *a, int argc, char **argv) {
  int i;
  memset(a, 0, sizeof *a);
  a->argc = argc;
  a->argv = argv;
  for (i = 1; i < argc; i++) {
    const char *s = argv[i];
    if (s[0] != '-' || s[1] == '\0') {   /* a script name, or "-" */
      a->script = i;
      a->from_stdin = (s[0] == '-');
      break;
    }
    switch (s[1]) {
      case '-':
        if (s[2] != '\0') {
          a->bad = i;
          return;
        }
        a->optend = i + 1;
        a->script = (i + 1 < argc) ? i + 1 : 0;
        return;
      case 'E': case 'W': case 'i': case 'v':
        if (s[2] != '\0') {
          a->bad = i;
          return;
        }
        if (s[1] == 'E')
          a->flags |= OPT_NOENV;
        else if (s[1] == 'i')
          a->flags |= OPT_INTERACTIVE | OPT_VERSION;
        else if (s[1] == 'v')
          a->flags |= OPT_VERSION;
        break;
      case 'e': case 'l':
        if (s[1] == 'e')
          a->flags |= OPT_EXEC;
        if (s[2] == '\0') {
          if (i + 1 >= argc || argv[i + 1][0] == '-') {
            a->bad = i;
            return;
          }
          i++;
        }
        break;
      default:
        a->bad = i;
        return;
    }
  }
  a->optend = a->script ? a->script : i;
}

/*
 * The global `arg`: argv[script] at 0, what follows at 1.., what precedes
 * (interpreter, options) at negative indices.  Without a script, argv[0] is
 * at 0 and the options at 1.., as in lua.
 */
static void set_arg_table(lua_State *L, const HostArgs *a) {
  int i, zero = a->script;
  lua_createtable(L, a->argc - zero - 1 > 0 ? a->argc - zero - 1 : 0,
                  zero + 1);
  for (i = 0; i < a->argc; i++) {
    lua_pushstring(L, a->argv[i]);
    lua_rawseti(L, -2, (lua_Integer)i - zero);
  }
  lua_setglobal(L, "arg");
}

/* Runs -e, -l and -W in command-line order; 0 as soon as one fails. */
static int run_options(lua_State *L, const HostArgs *a) {
  int i;
  for (i = 1; i < a->optend; i++) {
    const char *s = a->argv[i];
    const char *val;
    if (s[0] != '-')
      continue;
    switch (s[1]) {
      case 'W':
        lua_warning(L, "@on", 0);
        break;
      case 'e': case 'l':
        val = s[2] != '\0' ? s + 2 : a->argv[++i];
        if ((s[1] == 'e' ? run_string(L, val, "=(command line)")
                         : require_into_global(L, val)) != LUA_OK)
          return 0;
        break;
      default:
        break;
    }
  }
  return 1;
}

/*
 * The protected body of the host: takes argc (integer) and argv (light
 * userdata) from the stack; returns true when everything ran, false after an
 * error that has been reported already.
 */
static int host_main(lua_State *L) {
  HostArgs a;
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  lua_settop(L, 0);
  luaL_checkversion(L);
  parse_args(&a, argc, argv);
  if (a.bad) {
    print_usage(argv[a.bad]);
    lua_pushboolean(L, 0);
    return 1;
  }
  if (a.flags & OPT_VERSION)
    print_version();
  if (a.flags & OPT_NOENV) {   /* package.path/cpath ignore LUA_PATH etc. */
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_shm);
  lua_setfield(L, -2, "shm");
  lua_pop(L, 1);
  set_arg_table(L, &a);
  lua_gc(L, LUA_GCRESTART);
  lua_gc(L, LUA_GCGEN, 0, 0);   /* the collector mode lua 5.4 runs in */
  if (!(a.flags & OPT_NOENV) && run_init(L) != LUA_OK)
    goto failed;
  if (!run_options(L, &a))
    goto failed;
  if (a.script && run_script(L, &a) != LUA_OK)
    goto failed;
  if (a.flags & OPT_INTERACTIVE) {
    repl(L);
  } else if (!a.script && !(a.flags & (OPT_EXEC | OPT_VERSION))) {
    if (isatty(STDIN_FILENO)) {
      print_version();
      repl(L);
    } else if (run_file(L, NULL) != LUA_OK) {
      goto failed;
    }
  }
  lua_pushboolean(L, 1);
  return 1;
failed:
  lua_pushboolean(L, 0);
  return 1;
}

/*
 * The host's allocator: malloc, realloc and free, with two caches in front.
 *
 * Small blocks (up to SMALL_MAX bytes) come in size classes of 16 bytes,
 * and a freed one goes on its class's free list (up to SMALL_KEEP bytes in
 * all) to be handed out again.  Lua allocates and frees small objects at a
 * high rate (a string for every message a channel receives: six million a
 * second), and glibc's malloc serves a burst of frees from a collection's
 * sweep outside its per-thread cache (_int_free, then _int_malloc): it cost
 * a channel consumer a fifth of its time (perf), the free lists cost it a
 * quarter of that; channel send/recv throughput rose 10-30%
 * (bench/ipc_bench.lua).  A block on a list has room for its whole class,
 * so it serves any size of the class; Lua passes a block's size when it
 * frees or resizes it, which names the class.  Under AddressSanitizer the
 * lists are off, so that a use of a freed Lua object is still caught.
 *
 * Large blocks: up to BIG_SLOTS freed blocks of 1 MiB or more (BIG_KEEP
 * bytes in all) are kept and handed out again for a request of about the
 * same size.  glibc serves blocks that large with fresh mmap'd pages, and
 * touching fresh pages costs about ten times copying into them (NOTES.md:
 * 2.3 us a 4 KiB page): a script that reads a large mapping into a string
 * in a loop (m:read) would spend its time in page faults.
 *
 * The interpreter has one Lua state and no threads, so the caches need no
 * lock.
 */
#define BIG_BLOCK ((size_t)1 << 20)
#define BIG_SLOTS 4
#define BIG_KEEP ((size_t)256 << 20)

#if defined(__SANITIZE_ADDRESS__)
#define SMALL_CACHE 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SMALL_CACHE 0
#endif
#endif
#ifndef SMALL_CACHE
#define SMALL_CACHE 1
#endif
#define SMALL_MAX 256
#define SMALL_KEEP ((size_t)4 << 20)

static struct { void *p; size_t n; } big[BIG_SLOTS];
static size_t big_kept;
static void *small_list[SMALL_MAX / 16]; /* a freed block starts with the next */
static size_t small_kept;

static int big_keep(void *p, size_t n) {
  int i;
  if (big_kept + n > BIG_KEEP) return 0;
  for (i = 0; i < BIG_SLOTS; i++) {
    if (big[i].p == NULL) {
      big[i].p = p;
      big[i].n = n;
      big_kept += n;
      return 1;
    }
  }
  return 0;
}

/* A kept block of at least n and at most n + n/4 bytes, or NULL. */
static void *big_take(size_t n) {
  int i, best = -1;
  void *p;
  for (i = 0; i < BIG_SLOTS; i++)
    if (big[i].p != NULL && big[i].n >= n && big[i].n - n <= n / 4 &&
        (best < 0 || big[i].n < big[best].n))
      best = i;
  if (best < 0) return NULL;
  p = big[best].p;
  big_kept -= big[best].n;
  big[best].p = NULL;
  big[best].n = 0;
  return p;
}

/* The size class of a small size n (1 .. SMALL_MAX); it holds 16 * (c + 1). */
static size_t small_class(size_t n) { return (n - 1) / 16; }

/* A block with room for class c: from its free list, else malloc. */
static void *small_take(size_t c) {
  void *p = small_list[c];
  if (p == NULL) return malloc(16 * (c + 1));
  small_list[c] = *(void **)p;
  small_kept -= 16 * (c + 1);
  return p;
}

/* Frees p, a block of class c (it has room for the whole class). */
static void small_free(void *p, size_t c) {
  if (!SMALL_CACHE || small_kept + 16 * (c + 1) > SMALL_KEEP) {
    free(p);
    return;
  }
  *(void **)p = small_list[c];
  small_list[c] = p;
  small_kept += 16 * (c + 1);
}

/* Frees block p of osize bytes (not NULL). */
static void host_free(void *p, size_t osize) {
  if (osize <= SMALL_MAX) small_free(p, small_class(osize));
  else if (osize < BIG_BLOCK || !big_keep(p, osize)) free(p);
}

/*
 * lua_Alloc.  Every block of at most SMALL_MAX bytes has room for its
 * whole class: small requests get a class block, and a block that moves
 * between small and large is copied, not realloc'd.  Fails (NULL) only
 * when malloc does, leaving ptr as it was; a shrink that cannot get a
 * smaller block keeps the one it has.
 */
static void *host_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  void *p;
  (void)ud;
  if (ptr == NULL) osize = 0; /* osize then says what kind of object */
  if (nsize == 0) {
    if (ptr != NULL) host_free(ptr, osize);
    return NULL;
  }
  if (!SMALL_CACHE || (nsize > SMALL_MAX && (ptr == NULL || osize > SMALL_MAX))) {
    if (ptr == NULL && nsize >= BIG_BLOCK && (p = big_take(nsize)) != NULL)
      return p;
    return realloc(ptr, nsize);
  }
  if (nsize > SMALL_MAX) { /* small to large */
    if ((p = malloc(nsize)) == NULL) return NULL;
  } else if (ptr != NULL && osize <= SMALL_MAX &&
             small_class(osize) == small_class(nsize)) {
    return ptr;
  } else if ((p = small_take(small_class(nsize))) == NULL) {
    return ptr != NULL && osize >= nsize ? ptr : NULL;
  }
  if (ptr != NULL) {
    memcpy(p, ptr, osize < nsize ? osize : nsize);
    host_free(ptr, osize);
  }
  return p;
}

/* Frees the blocks the caches keep (at exit, for memory checkers). */
static void caches_release(void) {
  size_t c;
  int i;
  for (i = 0; i < BIG_SLOTS; i++) {
    free(big[i].p);
    big[i].p = NULL;
  }
  big_kept = 0;
  for (c = 0; c < SMALL_MAX / 16; c++) {
    while (small_list[c] != NULL) {
      void *p = small_list[c];
      small_list[c] = *(void **)p;
      free(p);
    }
  }
  small_kept = 0;
}

/* An error outside any protected call: Lua aborts after this returns. */
static int host_panic(lua_State *L) {
  const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                   : "error object is not a string";
  print_error(lua_pushfstring(L, "PANIC: unprotected error in call to Lua API (%s)", msg));
  return 0;
}

/*
 * The warning function (Lua manual, lua_setwarnf and warn).  A message of
 * one piece that starts with '@' is a control message: "@on" and "@off"
 * turn warnings on and off, others are ignored.  When on, the pieces of a
 * message go to stderr after "Lua warning: ", with a newline after the
 * last; warnings start off (-W turns them on).  No Lua API here: the
 * collector warns about errors in finalizers.
 */
static int warn_on;   /* warnings are on (one state in this process) */
static int warn_cont; /* the last piece had tocont set */
static void host_warn(void *ud, const char *msg, int tocont) {
  (void)ud;
  if (!warn_cont && !tocont && msg[0] == '@') {
    if (strcmp(msg + 1, "on") == 0) warn_on = 1;
    else if (strcmp(msg + 1, "off") == 0) warn_on = 0;
    return;
  }
  if (warn_on) {
    if (!warn_cont) fputs("Lua warning: ", stderr);
    fputs(msg, stderr);
    if (!tocont) fputc('\n', stderr);
    fflush(stderr);
  }
  warn_cont = tocont;
}

int main(int argc, char **argv) {
  lua_State *L;
  int status, ok;
  if (argv[0] != NULL && argv[0][0] != '\0')
    progname = argv[0];
  /* host_alloc from the first block: its small-block lists assume that
   * every block they get back came from them (room for its whole class),
   * which a block of luaL_newstate's allocator need not have */
  L = lua_newstate(host_alloc, NULL);
  if (L == NULL) {
    print_error("cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  lua_atpanic(L, host_panic);
  lua_setwarnf(L, host_warn, NULL);
  lua_gc(L, LUA_GCSTOP);   /* no collections while the libraries open */
  lua_pushcfunction(L, host_main);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  status = lua_pcall(L, 2, 1, 0);
  ok = status == LUA_OK && lua_toboolean(L, -1);
  report(L, status);
  lua_close(L);
  caches_release();
  return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
