/*
 * cparse.c: the C declaration parser behind cu_parse() and cu_typeof().
 *
 * A recursive-descent parser over a small lexer that also does what a user
 * pasting a real header needs from the preprocessor: comments, line
 * continuations, object-like #define (expanded like cpp, so `#define N 16`
 * works in array sizes and `#define PACKED __attribute__((packed))` works
 * too), #undef, #if/#ifdef/#ifndef/#elif/#else/#endif with constant
 * expressions and defined(); other directives are skipped.
 *
 * Errors longjmp to the entry point, which rolls the universe back to
 * where the call began: all scratch memory lives in the universe's scratch
 * arena, so unwinding leaks nothing.  Recursion is bounded (MAX_DEPTH) and
 * constant expressions are evaluated with C's types (int, unsigned int,
 * long, unsigned long) with overflow, division by zero and bad shifts
 * reported as errors.  Macros may produce at most MAX_EXPANSION tokens.
 *
 * Declarations of functions and objects are checked and dropped (function
 * bodies and initializers skipped); one that fails and only declares a
 * function or an extern/static object (a pasted header's prototype using
 * FILE or va_list) is dropped whole instead of failing the call.
 *
 * Not supported, and reported as errors rather than laid out wrongly:
 * #pragma pack, attributes vector_size/mode/ms_struct/scalar_storage_order,
 * _Complex, variable length arrays, typeof of an expression.  Function-like
 * macros are recorded (#ifdef sees them) but never expanded.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctype_int.h"

#define MAX_DEPTH 256
#define MAX_FRAMES 64
#define MAX_COND 64
#define LOOKAHEAD 4
#define MAX_DEF_ERR 512
#define MAX_OPS 256              /* derivations in one declarator */
#define MAX_EXPANSION 2000000L   /* tokens coming out of macros, per call */

enum {
  T_EOF = 0, T_IDENT = 256, T_NUM, T_CHARLIT, T_STR, T_FLOAT, T_ELLIPSIS,
  T_ARROW, T_INC, T_DEC, T_SHL, T_SHR, T_LE, T_GE, T_EQ, T_NE, T_ANDAND,
  T_OROR, T_ASSIGNOP, T_HASHHASH, T_OTHER
};

/* Keywords (and the identifiers the parser treats specially), found once
 * per token by binary search in a table sorted by strcmp. */
enum {
  K_NONE, K_STRUCT, K_UNION, K_ENUM, K_TYPEDEF, K_EXTERN, K_STATIC, K_AUTO,
  K_REGISTER, K_THREAD, K_INLINE, K_NORETURN, K_EXTENSION, K_CONST,
  K_VOLATILE, K_RESTRICT, K_NULLQ, K_ATOMIC, K_ATTRIBUTE, K_ALIGNAS,
  K_TYPEOF, K_COMPLEX, K_VOID, K_BOOL, K_CHAR, K_SHORT, K_INT, K_LONG,
  K_FLOAT, K_DOUBLE, K_SIGNED, K_UNSIGNED, K_INT128, K_SIZEOF, K_ALIGNOF,
  K_OFFSETOF, K_DEFINED, K_STATIC_ASSERT, K_ASM
};

static const struct { const char *s; int kw; } kwtab[] = {
  {"_Alignas", K_ALIGNAS},
  {"_Alignof", K_ALIGNOF},
  {"_Atomic", K_ATOMIC},
  {"_Bool", K_BOOL},
  {"_Complex", K_COMPLEX},
  {"_Nonnull", K_NULLQ},
  {"_Noreturn", K_NORETURN},
  {"_Nullable", K_NULLQ},
  {"_Static_assert", K_STATIC_ASSERT},
  {"_Thread_local", K_THREAD},
  {"__alignof", K_ALIGNOF},
  {"__alignof__", K_ALIGNOF},
  {"__asm", K_ASM},
  {"__asm__", K_ASM},
  {"__attribute", K_ATTRIBUTE},
  {"__attribute__", K_ATTRIBUTE},
  {"__builtin_offsetof", K_OFFSETOF},
  {"__complex__", K_COMPLEX},
  {"__const", K_CONST},
  {"__const__", K_CONST},
  {"__extension__", K_EXTENSION},
  {"__inline", K_INLINE},
  {"__inline__", K_INLINE},
  {"__int128", K_INT128},
  {"__restrict", K_RESTRICT},
  {"__restrict__", K_RESTRICT},
  {"__signed", K_SIGNED},
  {"__signed__", K_SIGNED},
  {"__thread", K_THREAD},
  {"__typeof", K_TYPEOF},
  {"__typeof__", K_TYPEOF},
  {"__volatile", K_VOLATILE},
  {"__volatile__", K_VOLATILE},
  {"alignas", K_ALIGNAS},
  {"alignof", K_ALIGNOF},
  {"asm", K_ASM},
  {"auto", K_AUTO},
  {"char", K_CHAR},
  {"const", K_CONST},
  {"defined", K_DEFINED},
  {"double", K_DOUBLE},
  {"enum", K_ENUM},
  {"extern", K_EXTERN},
  {"float", K_FLOAT},
  {"inline", K_INLINE},
  {"int", K_INT},
  {"long", K_LONG},
  {"offsetof", K_OFFSETOF},
  {"register", K_REGISTER},
  {"restrict", K_RESTRICT},
  {"short", K_SHORT},
  {"signed", K_SIGNED},
  {"sizeof", K_SIZEOF},
  {"static", K_STATIC},
  {"static_assert", K_STATIC_ASSERT},
  {"struct", K_STRUCT},
  {"typedef", K_TYPEDEF},
  {"typeof", K_TYPEOF},
  {"union", K_UNION},
  {"unsigned", K_UNSIGNED},
  {"void", K_VOID},
  {"volatile", K_VOLATILE},
};

static int kw_of(const char *s) {
  size_t lo = 0, hi = sizeof kwtab / sizeof kwtab[0];
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(s, kwtab[mid].s);
    if (c == 0) return kwtab[mid].kw;
    if (c < 0) hi = mid;
    else lo = mid + 1;
  }
  return K_NONE;
}

typedef struct Tok {
  int kind;
  const char *s;          /* text, for messages                            */
  size_t n;
  char *id;               /* T_IDENT: NUL-terminated copy (scratch)        */
  int kw;                 /* T_IDENT: K_*                                  */
  int line, col;
  unsigned long long val; /* T_NUM, T_CHARLIT                              */
  int vtype;              /* CV_*                                          */
} Tok;

typedef struct Frame {    /* an object-like macro being expanded */
  const char *p, *end;
  const char *name;
  size_t namelen;
} Frame;

typedef struct Cond {
  int active, taken, parent;
} Cond;

/* Macros defined by this call: kept apart (in scratch memory) until the
 * call succeeds, so that dropping one declaration never drops them. */
typedef struct PMacro {
  struct PMacro *next, *older;
  const char *name, *body;
  size_t n, len;
  int kind;                 /* 0: #undef, 1: object-like, 2: function-like */
} PMacro;

typedef struct MacroTab {
  PMacro *b[256];
  PMacro *newest;
  size_t count;
} MacroTab;

typedef struct Parser {
  CUniverse *u;
  const char *p, *end;    /* the source text                               */
  const char *lstart;     /* start of the current line                     */
  int line, bol;
  Frame frames[MAX_FRAMES];
  int nframes, use_line, use_col;
  long expanded;          /* tokens and expansions from macros so far      */
  Tok la[LOOKAHEAD];      /* la[0] is the current token                    */
  int nla;
  jmp_buf *jb;
  char *err;
  size_t errlen;
  int depth;
  int directive;          /* lexing one directive line                     */
  int no_pp;              /* '#' starts no directive (cu_typeof)           */
  MacroTab *macros;
  int pp_if;              /* evaluating #if: unknown identifiers are 0     */
  int noexpand;           /* do not expand macros (operand of defined)     */
  Cond cond[MAX_COND];
  int ncond;
  int externc;            /* open extern "C" { blocks                      */
  int skip;               /* > 0: unevaluated operand, no arithmetic error */
  int in_params;          /* inside a parameter list                       */
  int typename_only;      /* cu_typeof: no implicit tag declarations       */
  int storage;            /* storage class of the current declaration      */
  int bodies;             /* struct/union/enum bodies being parsed         */
} Parser;

/* ----------------------------------------------------------------- errors */

static void fail(Parser *P, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5), noreturn));
static void fail(Parser *P, int line, int col, const char *fmt, ...) {
  va_list ap;
  int n = 0;
  if (P->err != NULL && P->errlen > 0) {
    n = snprintf(P->err, P->errlen, "line %d, column %d: ", line, col);
    if (n < 0) n = 0;
    if ((size_t)n < P->errlen) {
      va_start(ap, fmt);
      vsnprintf(P->err + n, P->errlen - (size_t)n, fmt, ap);
      va_end(ap);
    }
  }
  longjmp(*P->jb, 1);
}

static void oom(Parser *P) { fail(P, P->line, 1, "out of memory"); }

static void *salloc(Parser *P, size_t n) {
  void *p = cu_scratch(P->u, n);
  if (p == NULL) oom(P);
  return p;
}

/* A token as quoted in messages: at most 32 bytes, no control bytes. */
static void tok_show(const Tok *t, char *buf, size_t n, const Parser *P) {
  size_t i, k = 0;
  if (t->kind == T_EOF) {
    snprintf(buf, n, "%s", P->directive ? "at end of line" : "at end of input");
    return;
  }
  k = (size_t)snprintf(buf, n, "near '");
  for (i = 0; i < t->n && i < 32 && k + 6 < n; i++) {
    unsigned char c = (unsigned char)t->s[i];
    buf[k++] = (c >= 32 && c < 127) ? (char)c : '?';
  }
  if (t->n > 32 && k + 6 < n) { memcpy(buf + k, "...", 3); k += 3; }
  buf[k++] = '\'';
  buf[k] = 0;
}

static Tok *cur(Parser *P);

/* "line L, column C: expected WHAT near 'tok'" at the current token. */
static void expected(Parser *P, const char *what) __attribute__((noreturn));
static void expected(Parser *P, const char *what) {
  Tok *t = cur(P);
  char show[64];
  tok_show(t, show, sizeof show, P);
  fail(P, t->line, t->col, "expected %s %s", what, show);
}

/* ------------------------------------------------------------------ lexer */

static int is_alpha(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$';
}
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_alnum(int c) { return is_alpha(c) || is_digit(c); }

static void directive(Parser *P);

/* Cursor of the innermost source: a macro frame, or the text itself. */
static const char **src_p(Parser *P) {
  return P->nframes ? &P->frames[P->nframes - 1].p : &P->p;
}
static const char *src_end(Parser *P) {
  return P->nframes ? P->frames[P->nframes - 1].end : P->end;
}

static void newline(Parser *P, const char *after) {
  if (P->nframes == 0) {
    P->line++;
    P->lstart = after;
  }
}

/* Skips a comment starting at *pp ("/ *" or "//"); 1 if there was one. */
static int skip_comment(Parser *P, const char **pp, const char *end) {
  const char *p = *pp;
  if (p + 1 >= end || p[0] != '/') return 0;
  if (p[1] == '/') {
    while (p < end && *p != '\n') p++;
    *pp = p;
    return 1;
  }
  if (p[1] == '*') {
    int line = P->nframes ? P->use_line : P->line;
    int col = P->nframes ? P->use_col : (int)(p - P->lstart) + 1;
    p += 2;
    for (;;) {
      if (p + 1 >= end) fail(P, line, col, "unterminated comment");
      if (p[0] == '*' && p[1] == '/') break;
      if (*p == '\n') newline(P, p + 1);
      p++;
    }
    *pp = p + 2;
    return 1;
  }
  return 0;
}

/* Skips white space, comments, continuations and, at the start of a line
 * of the text, preprocessor directives and the groups #if leaves out. */
static void skip_space(Parser *P) {
  for (;;) {
    const char **pp = src_p(P), *end = src_end(P), *p = *pp;
    int active = P->ncond == 0 || P->cond[P->ncond - 1].active;
    if (p >= end) return;
    if (*p == '\n') {
      *pp = p + 1;
      newline(P, p + 1);
      if (P->nframes == 0) P->bol = 1;
    } else if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\f' || *p == '\v') {
      *pp = p + 1;
    } else if (*p == '\\' && p + 1 < end && (p[1] == '\n' || (p[1] == '\r' && p + 2 < end && p[2] == '\n'))) {
      *pp = p + (p[1] == '\n' ? 2 : 3);
      newline(P, *pp);
    } else if (skip_comment(P, pp, end)) {
      /* skipped */
    } else if (*p == '#' && P->bol && P->nframes == 0 && !P->directive && !P->no_pp) {
      directive(P);
    } else if (!active && P->nframes == 0) {
      *pp = p + 1;          /* a line of a group left out */
      P->bol = 0;
    } else {
      return;
    }
  }
}

static int hidden(Parser *P, const char *s, size_t n) {
  int i;
  for (i = 0; i < P->nframes; i++)
    if (P->frames[i].namelen == n && memcmp(P->frames[i].name, s, n) == 0)
      return 1;
  return 0;
}

static unsigned mac_hash(const char *s, size_t n) {
  unsigned h = 2166136261u;
  size_t i;
  for (i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h & 255;
}

/* Like cu_find_macro, this call's own definitions first. */
static int find_macro(Parser *P, const char *s, size_t n, const char **body,
                      size_t *len) {
  PMacro *m;
  if (P->macros != NULL)
    for (m = P->macros->b[mac_hash(s, n)]; m != NULL; m = m->next)
      if (m->n == n && memcmp(m->name, s, n) == 0) {
        if (m->kind == 1) {
          if (body) *body = m->body;
          if (len) *len = m->len;
        }
        return m->kind;
      }
  return cu_find_macro(P->u, s, n, body, len);
}

static void set_macro(Parser *P, const char *s, size_t n, const char *body,
                      size_t len, int kind) {
  PMacro *m = salloc(P, sizeof *m);
  unsigned h = mac_hash(s, n);
  m->name = s;
  m->n = n;
  m->body = body;
  m->len = len;
  m->kind = kind;
  m->next = P->macros->b[h];
  P->macros->b[h] = m;
  m->older = P->macros->newest;
  P->macros->newest = m;
  P->macros->count++;
}

/* Hands this call's macros to the universe, oldest first. */
static void commit_macros(Parser *P) {
  PMacro **v, *m;
  size_t i = 0, n = P->macros->count;
  if (n == 0) return;
  v = salloc(P, n * sizeof *v);
  for (m = P->macros->newest; m != NULL; m = m->older) v[i++] = m;
  while (i > 0) {
    char *name;
    const char *ob;
    size_t ol;
    int old;
    m = v[--i];
    name = salloc(P, m->n + 1);
    memcpy(name, m->name, m->n);
    old = cu_find_macro(P->u, m->name, m->n, &ob, &ol);
    if (old == m->kind && (old != 1 || (ol == m->len && memcmp(ob, m->body, ol) == 0)))
      continue;
    if (cu_set_macro(P->u, name, m->kind ? m->body : NULL, m->len, m->kind == 2) != 0)
      fail(P, P->line, 1, "out of memory");
  }
}

static unsigned long long parse_escape(Parser *P, const char **pp,
                                       const char *end, int line, int col) {
  const char *p = *pp;
  unsigned long long v = 0;
  int k;
  if (p >= end) fail(P, line, col, "missing terminating ' character");
  switch (*p) {
  case 'n': v = '\n'; p++; break;
  case 't': v = '\t'; p++; break;
  case 'r': v = '\r'; p++; break;
  case 'a': v = 7; p++; break;
  case 'b': v = 8; p++; break;
  case 'f': v = 12; p++; break;
  case 'v': v = 11; p++; break;
  case 'e': case 'E': v = 27; p++; break;
  case '\\': case '\'': case '"': case '?': v = (unsigned char)*p++; break;
  case 'x':
    p++;
    if (p >= end || !((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
      fail(P, line, col, "\\x used with no following hex digits");
    while (p < end && ((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F'))) {
      int d = *p <= '9' ? *p - '0' : (*p | 32) - 'a' + 10;
      if (v > 0xffffffffull) fail(P, line, col, "hex escape sequence out of range");
      v = v * 16 + (unsigned)d;
      p++;
    }
    break;
  default:
    if (*p >= '0' && *p <= '7') {
      for (k = 0; k < 3 && p < end && *p >= '0' && *p <= '7'; k++) v = v * 8 + (unsigned)(*p++ - '0');
    } else {
      fail(P, line, col, "unknown escape sequence");
    }
  }
  *pp = p;
  return v;
}

/* A character constant after its opening quote; prefix 0, 'L', 'u', 'U'
 * or '8' (u8).  Sets t->val/vtype as C types the constant. */
static void lex_char(Parser *P, Tok *t, const char **pp, const char *end, int prefix) {
  const char *p = *pp;
  unsigned long long v;
  if (p >= end || *p == '\'' || *p == '\n')
    fail(P, t->line, t->col, "empty character constant");
  if (*p == '\\') {
    p++;
    v = parse_escape(P, &p, end, t->line, t->col);
  } else {
    v = (unsigned char)*p++;
    if (v >= 0x80 && prefix != 0)
      fail(P, t->line, t->col, "non-ASCII wide character constant");
  }
  if (p >= end || *p != '\'')
    fail(P, t->line, t->col, "multi-character or unterminated character constant");
  *pp = p + 1;
  t->kind = T_CHARLIT;
  switch (prefix) {
  case 0:  t->val = (unsigned long long)(long long)(signed char)v; t->vtype = CV_INT; break;
  case 'L': t->val = (unsigned long long)(long long)(int)(unsigned)v; t->vtype = CV_INT; break;
  case 'u': t->val = v & 0xffff; t->vtype = CV_INT; break;
  case 'U': t->val = v & 0xffffffff; t->vtype = CV_UINT; break;
  default: t->val = v & 0xff; t->vtype = CV_INT; break;
  }
}

static void lex_string(Parser *P, Tok *t, const char **pp, const char *end) {
  const char *p = *pp;
  while (p < end && *p != '"' && *p != '\n') {
    if (*p == '\\' && p + 1 < end) p++;
    p++;
  }
  if (p >= end || *p != '"') fail(P, t->line, t->col, "missing terminating \" character");
  *pp = p + 1;
  t->kind = T_STR;
}

/* Integer constant text [s, s+n): value and C type, or an error. */
static void lex_integer(Parser *P, Tok *t, const char *s, size_t n) {
  const char *p = s, *e = s + n;
  unsigned long long v = 0;
  unsigned base = 10;
  int nu = 0, nl = 0, over = 0;
  if (n > 1 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) { base = 16; p += 2; }
  else if (n > 1 && s[0] == '0' && (s[1] == 'b' || s[1] == 'B')) { base = 2; p += 2; }
  else if (s[0] == '0') base = 8;
  if (base != 10 && base != 8 && (p >= e || !is_alnum(*p)))
    fail(P, t->line, t->col, "invalid integer constant '%.*s'", (int)(n > 32 ? 32 : n), s);
  for (; p < e; p++) {
    unsigned d;
    int c = *p;
    if (c >= '0' && c <= '9') d = (unsigned)(c - '0');
    else if (base == 16 && ((c | 32) >= 'a' && (c | 32) <= 'f')) d = (unsigned)((c | 32) - 'a' + 10);
    else break;
    if (d >= base)
      fail(P, t->line, t->col, "invalid digit '%c' in integer constant", c);
    if (v > (ULLONG_MAX - d) / base) over = 1;
    v = v * base + d;
  }
  for (; p < e; p++) {
    if ((*p == 'u' || *p == 'U') && !nu) nu = 1;
    else if ((*p == 'l' || *p == 'L') && !nl) {
      nl = 1;
      if (p + 1 < e && p[1] == p[0]) { nl = 2; p++; }
    } else {
      fail(P, t->line, t->col, "invalid suffix on integer constant '%.*s'",
           (int)(n > 32 ? 32 : n), s);
    }
  }
  if (over) fail(P, t->line, t->col, "integer constant is too large");
  t->kind = T_NUM;
  t->val = v;
  if (nu) t->vtype = (nl == 0 && v <= UINT_MAX) ? CV_UINT : CV_ULONG;
  else if (nl == 0 && v <= INT_MAX) t->vtype = CV_INT;
  else if (nl == 0 && base != 10 && v <= UINT_MAX) t->vtype = CV_UINT;
  else if (v <= LLONG_MAX) t->vtype = CV_LONG;
  else t->vtype = CV_ULONG;
}

static const struct { const char *s; int kind; } puncts[] = {
  {"...", T_ELLIPSIS}, {"<<=", T_ASSIGNOP}, {">>=", T_ASSIGNOP},
  {"->", T_ARROW}, {"++", T_INC}, {"--", T_DEC}, {"<<", T_SHL}, {">>", T_SHR},
  {"<=", T_LE}, {">=", T_GE}, {"==", T_EQ}, {"!=", T_NE}, {"&&", T_ANDAND},
  {"||", T_OROR}, {"+=", T_ASSIGNOP}, {"-=", T_ASSIGNOP}, {"*=", T_ASSIGNOP},
  {"/=", T_ASSIGNOP}, {"%=", T_ASSIGNOP}, {"&=", T_ASSIGNOP},
  {"|=", T_ASSIGNOP}, {"^=", T_ASSIGNOP}, {"##", T_HASHHASH}, {NULL, 0}
};

/* The identifier starting at p: a macro to expand (pushes its body and
 * returns 1), or not. */
static int expand(Parser *P, const Tok *t) {
  const char *body;
  size_t blen;
  Frame *f;
  if (P->noexpand || hidden(P, t->s, t->n) ||
      find_macro(P, t->s, t->n, &body, &blen) != 1)
    return 0;
  if (P->nframes == MAX_FRAMES) fail(P, t->line, t->col, "macros nested too deeply");
  if (++P->expanded > MAX_EXPANSION) fail(P, t->line, t->col, "macro expansion too large");
  if (P->nframes == 0) {
    P->use_line = t->line;
    P->use_col = t->col;
  }
  f = &P->frames[P->nframes++];
  f->p = body;
  f->end = body + blen;
  f->name = t->s;
  f->namelen = t->n;
  return 1;
}

/* One token from the innermost source, macros expanded. */
static void lex(Parser *P, Tok *t) {
  const char **pp, *p, *end;
  int i;
again:
  for (;;) {
    skip_space(P);
    pp = src_p(P);
    end = src_end(P);
    if (*pp < end || P->nframes == 0) break;
    P->nframes--;                        /* a macro body ends */
  }
  p = *pp;
  memset(t, 0, sizeof *t);
  t->s = p;
  if (P->nframes > 0) {
    t->line = P->use_line;
    t->col = P->use_col;
    if (++P->expanded > MAX_EXPANSION) fail(P, t->line, t->col, "macro expansion too large");
  } else {
    t->line = P->line;
    t->col = (int)(p - P->lstart) + 1;
    P->bol = 0;
  }
  if (p >= end) {
    if (P->nframes == 0 && P->ncond > 0 && !P->directive)
      fail(P, t->line, t->col, "unterminated #if");
    t->kind = T_EOF;
    t->n = 0;
    return;
  }
  if (is_alpha((unsigned char)*p)) {
    const char *s = p;
    while (p < end && is_alnum((unsigned char)*p)) p++;
    if (p < end && (*p == '\'' || *p == '"') &&
        ((p - s == 1 && (*s == 'L' || *s == 'u' || *s == 'U')) ||
         (p - s == 2 && s[0] == 'u' && s[1] == '8'))) {
      int prefix = p - s == 2 ? '8' : *s;
      p++;
      if (p[-1] == '\'') lex_char(P, t, &p, end, prefix);
      else lex_string(P, t, &p, end);
      t->n = (size_t)(p - s);
      *pp = p;
      return;
    }
    *pp = p;
    t->kind = T_IDENT;
    t->n = (size_t)(p - s);
    if (expand(P, t)) goto again;
    t->id = salloc(P, t->n + 1);
    memcpy(t->id, s, t->n);
    t->kw = kw_of(t->id);
    return;
  }
  if (is_digit((unsigned char)*p) || (*p == '.' && p + 1 < end && is_digit((unsigned char)p[1]))) {
    const char *s = p;
    int isfloat = 0, hex = p + 1 < end && p[0] == '0' && (p[1] == 'x' || p[1] == 'X');
    while (p < end) {
      if ((*p == 'e' || *p == 'E' || *p == 'p' || *p == 'P') && p + 1 < end &&
          (p[1] == '+' || p[1] == '-') && (hex ? (*p | 32) == 'p' : (*p | 32) == 'e')) {
        isfloat = 1;
        p += 2;
      } else if (*p == '.') {
        isfloat = 1;
        p++;
      } else if (is_alnum((unsigned char)*p)) {
        if (!hex && (*p | 32) == 'e') isfloat = 1;
        if (hex && (*p | 32) == 'p') isfloat = 1;
        p++;
      } else {
        break;
      }
    }
    *pp = p;
    t->n = (size_t)(p - s);
    if (isfloat) t->kind = T_FLOAT;
    else lex_integer(P, t, s, t->n);
    return;
  }
  if (*p == '\'') {
    p++;
    lex_char(P, t, &p, end, 0);
    t->n = (size_t)(p - t->s);
    *pp = p;
    return;
  }
  if (*p == '"') {
    p++;
    lex_string(P, t, &p, end);
    t->n = (size_t)(p - t->s);
    *pp = p;
    return;
  }
  for (i = 0; puncts[i].s != NULL && strchr("<>.-+=!&|*/%^#", *p) && *p; i++) {
    size_t n = puncts[i].s[2] ? 3 : 2;
    if (puncts[i].s[0] == *p && (size_t)(end - p) >= n && memcmp(p, puncts[i].s, n) == 0) {
      t->kind = puncts[i].kind;
      t->n = n;
      *pp = p + n;
      return;
    }
  }
  t->n = 1;
  *pp = p + 1;
  t->kind = strchr("{}[]();,:?~.+-*/%<>=!&|^#", *p) && *p ? (unsigned char)*p : T_OTHER;
}

static Tok *peek(Parser *P, int k) {
  while (P->nla <= k) lex(P, &P->la[P->nla++]);
  return &P->la[k];
}

static Tok *cur(Parser *P) { return peek(P, 0); }

static void adv(Parser *P) {
  int i;
  if (P->nla == 0) peek(P, 0);
  for (i = 1; i < P->nla; i++) P->la[i - 1] = P->la[i];
  P->nla--;
}

static int is_id(const Tok *t, const char *s) {
  return t->kind == T_IDENT && strcmp(t->id, s) == 0;
}

static int is_kw(const Tok *t, int kw) { return t->kind == T_IDENT && t->kw == kw; }

static int accept(Parser *P, int kind) {
  if (cur(P)->kind != kind) return 0;
  adv(P);
  return 1;
}

static void expect(Parser *P, int kind, const char *what) {
  if (!accept(P, kind)) expected(P, what);
}

static void enter(Parser *P) {
  if (++P->depth > MAX_DEPTH) {
    Tok *t = cur(P);
    fail(P, t->line, t->col, "nesting too deep");
  }
}
static void leave(Parser *P) { P->depth--; }

/* ------------------------------------------------ constant expressions */

typedef struct CVal {
  unsigned long long v;   /* the value's bits, sign-extended to 64 bits  */
  int t;                  /* CV_*                                        */
} CVal;

static int cv_unsigned(int t) { return t == CV_UINT || t == CV_ULONG; }
static int cv_wide(int t) { return t == CV_LONG || t == CV_ULONG; }

/* v converted to type t (wrapping as gcc does). */
static CVal cv_conv(CVal a, int t) {
  CVal r;
  r.t = t;
  if (t == CV_INT) r.v = (unsigned long long)(long long)(int)(unsigned)(a.v & 0xffffffffu);
  else if (t == CV_UINT) r.v = a.v & 0xffffffffu;
  else r.v = a.v;
  return r;
}

static int cv_common(int a, int b) {
  if (a == CV_ULONG || b == CV_ULONG) return CV_ULONG;
  if (a == CV_LONG || b == CV_LONG) return CV_LONG;
  if (a == CV_UINT || b == CV_UINT) return CV_UINT;
  return CV_INT;
}

static CVal cv_int(long long v) {
  CVal r;
  r.v = (unsigned long long)v;
  r.t = CV_INT;
  return r;
}

static int cv_true(CVal a) { return a.v != 0; }

static void arith_error(Parser *P, const Tok *at, const char *what) {
  if (P->skip) return;
  fail(P, at->line, at->col, "%s in constant expression", what);
}

/* Signed result r (exact, in long long) fits type t, else an error. */
static CVal cv_signed(Parser *P, const Tok *at, long long r, int ovf, int t) {
  if (ovf || (t == CV_INT && (r < INT_MIN || r > INT_MAX))) {
    arith_error(P, at, "integer overflow");
    return cv_int(0);
  }
  return cv_conv(cv_int(r), t);
}

static CVal binop(Parser *P, const Tok *at, int op, CVal a, CVal b) {
  int t;
  long long x, y, r = 0;
  int ovf = 0;
  if (op == T_ANDAND || op == T_OROR || op == T_SHL || op == T_SHR) {
    if (op == T_ANDAND) return cv_int(cv_true(a) && cv_true(b));
    if (op == T_OROR) return cv_int(cv_true(a) || cv_true(b));
    {
      int w = cv_wide(a.t) ? 64 : 32;
      long long n = (long long)b.v;
      if (cv_unsigned(b.t) ? b.v >= (unsigned long long)w : (n < 0 || n >= w)) {
        arith_error(P, at, "shift count out of range");
        return cv_int(0);
      }
      if (op == T_SHL) return cv_conv((CVal){a.v << n, a.t}, a.t);
      if (cv_unsigned(a.t)) return cv_conv((CVal){a.v >> n, a.t}, a.t);
      return cv_conv((CVal){(unsigned long long)((long long)a.v >> n), a.t}, a.t);
    }
  }
  t = cv_common(a.t, b.t);
  a = cv_conv(a, t);
  b = cv_conv(b, t);
  x = (long long)a.v;
  y = (long long)b.v;
  if (cv_unsigned(t)) {
    unsigned long long u = a.v, v = b.v;
    switch (op) {
    case '+': return cv_conv((CVal){u + v, t}, t);
    case '-': return cv_conv((CVal){u - v, t}, t);
    case '*': return cv_conv((CVal){u * v, t}, t);
    case '/': case '%':
      if (v == 0) { arith_error(P, at, "division by zero"); return cv_int(0); }
      return cv_conv((CVal){op == '/' ? u / v : u % v, t}, t);
    case '<': return cv_int(u < v);
    case '>': return cv_int(u > v);
    case T_LE: return cv_int(u <= v);
    case T_GE: return cv_int(u >= v);
    case T_EQ: return cv_int(u == v);
    case T_NE: return cv_int(u != v);
    case '&': return (CVal){u & v, t};
    case '|': return (CVal){u | v, t};
    case '^': return (CVal){u ^ v, t};
    }
    return cv_int(0);
  }
  switch (op) {
  case '+': ovf = __builtin_add_overflow(x, y, &r); return cv_signed(P, at, r, ovf, t);
  case '-': ovf = __builtin_sub_overflow(x, y, &r); return cv_signed(P, at, r, ovf, t);
  case '*': ovf = __builtin_mul_overflow(x, y, &r); return cv_signed(P, at, r, ovf, t);
  case '/': case '%':
    if (y == 0) { arith_error(P, at, "division by zero"); return cv_int(0); }
    if (y == -1 && x == (t == CV_INT ? INT_MIN : LLONG_MIN)) {
      if (op == '%') return cv_conv(cv_int(0), t);
      arith_error(P, at, "integer overflow");
      return cv_int(0);
    }
    return cv_conv(cv_int(op == '/' ? x / y : x % y), t);
  case '<': return cv_int(x < y);
  case '>': return cv_int(x > y);
  case T_LE: return cv_int(x <= y);
  case T_GE: return cv_int(x >= y);
  case T_EQ: return cv_int(x == y);
  case T_NE: return cv_int(x != y);
  case '&': return cv_conv((CVal){a.v & b.v, t}, t);
  case '|': return cv_conv((CVal){a.v | b.v, t}, t);
  case '^': return cv_conv((CVal){a.v ^ b.v, t}, t);
  }
  return cv_int(0);
}

static int prec(int kind) {
  switch (kind) {
  case T_OROR: return 1;
  case T_ANDAND: return 2;
  case '|': return 3;
  case '^': return 4;
  case '&': return 5;
  case T_EQ: case T_NE: return 6;
  case '<': case '>': case T_LE: case T_GE: return 7;
  case T_SHL: case T_SHR: return 8;
  case '+': case '-': return 9;
  case '*': case '/': case '%': return 10;
  }
  return 0;
}

static CVal expr_cond(Parser *P);
static CVal expr_unary(Parser *P);
static CType *parse_typename(Parser *P);
static int starts_type(Parser *P, const Tok *t);

/* Binary operators of precedence >= minp (precedence climbing); the right
 * operand of && and || is not evaluated (errors suppressed) when the left
 * one decides. */
static CVal expr_binary(Parser *P, int minp) {
  CVal a;
  enter(P);
  a = expr_unary(P);
  for (;;) {
    Tok op = *cur(P);
    int p = prec(op.kind), skip = 0;
    CVal b;
    if (p == 0 || p < minp) break;
    adv(P);
    if ((op.kind == T_ANDAND && !cv_true(a)) || (op.kind == T_OROR && cv_true(a)))
      skip = 1;
    P->skip += skip;
    b = expr_binary(P, p + 1);
    P->skip -= skip;
    a = binop(P, &op, op.kind, a, b);
  }
  leave(P);
  return a;
}

static CVal expr_cond(Parser *P) {
  CVal c, a, b;
  int t;
  enter(P);
  c = expr_binary(P, 1);
  if (accept(P, '?')) {
    int k = cv_true(c);
    P->skip += !k;
    a = expr_cond(P);
    P->skip -= !k;
    expect(P, ':', "':'");
    P->skip += k;
    b = expr_cond(P);
    P->skip -= k;
    t = cv_common(a.t, b.t);
    c = cv_conv(k ? a : b, t);
  }
  leave(P);
  return c;
}

/* The value of a cast to integer type ty. */
static CVal cast_to(Parser *P, const Tok *at, CType *ty, CVal v) {
  CVal r;
  if (ty->kind == CK_BOOL) return cv_int(cv_true(v));
  if (ty->kind != CK_INT && ty->kind != CK_ENUM)
    fail(P, at->line, at->col, "cast to '%s' in a constant expression", ty->name);
  if (ty->size >= 8) {
    r.v = v.v;
    r.t = ty->is_signed ? CV_LONG : CV_ULONG;
    return r;
  }
  if (ty->size == 4) return cv_conv(v, ty->is_signed ? CV_INT : CV_UINT);
  if (ty->size == 2)
    return cv_int(ty->is_signed ? (long long)(short)(unsigned short)v.v : (long long)(unsigned short)v.v);
  return cv_int(ty->is_signed ? (long long)(signed char)(unsigned char)v.v : (long long)(unsigned char)v.v);
}

static CVal ulong_val(size_t n) {
  CVal r;
  r.v = n;
  r.t = CV_ULONG;
  return r;
}

/* sizeof / _Alignof of a type name or (sizeof only) of an expression. */
static CVal expr_sizeof(Parser *P, int is_align) {
  Tok at = *cur(P);
  CType *ty;
  adv(P);
  if (cur(P)->kind == '(' && starts_type(P, peek(P, 1))) {
    adv(P);
    ty = parse_typename(P);
    expect(P, ')', "')'");
  } else {
    CVal v;
    if (is_align) expected(P, "'(' and a type name");
    P->skip++;
    v = expr_unary(P);
    P->skip--;
    return ulong_val(cv_wide(v.t) ? 8 : 4);
  }
  if (ty->kind == CK_VOID || ty->kind == CK_FUNC) return ulong_val(1);
  if (!ty->complete || (ty->kind == CK_ARRAY && ty->flexible && !is_align))
    fail(P, at.line, at.col, "invalid application of '%s' to incomplete type '%s'",
         is_align ? "_Alignof" : "sizeof", ty->name);
  return ulong_val(is_align ? ty->align : ty->size);
}

/* offsetof(type, member.designator[index]...) */
static CVal expr_offsetof(Parser *P) {
  CType *ty;
  size_t off = 0;
  adv(P);
  expect(P, '(', "'('");
  ty = parse_typename(P);
  expect(P, ',', "','");
  for (;;) {
    Tok *t = cur(P);
    if (t->kind != T_IDENT) expected(P, "member name");
    {
      size_t o;
      const CField *f = ct_field(ty, t->id, &o);
      if (f == NULL) fail(P, t->line, t->col, "'%s' has no member named '%s'", ty->name, t->id);
      if (f->bit_width) fail(P, t->line, t->col, "offsetof of bit-field '%s'", t->id);
      off += o;
      ty = f->type;
    }
    adv(P);
    while (cur(P)->kind == '[') {
      Tok at = *cur(P);
      CVal i;
      adv(P);
      i = expr_cond(P);
      expect(P, ']', "']'");
      if (ty->kind != CK_ARRAY) fail(P, at.line, at.col, "subscripted value is not an array");
      if (!cv_unsigned(i.t) && (long long)i.v < 0) fail(P, at.line, at.col, "negative index");
      if (ty->elem->size != 0 && i.v > CU_MAX_SIZE / ty->elem->size)
        fail(P, at.line, at.col, "index too large");
      off += (size_t)i.v * ty->elem->size;
      ty = ty->elem;
    }
    if (!accept(P, '.')) break;
  }
  expect(P, ')', "')'");
  return ulong_val(off);
}

static CVal expr_primary(Parser *P) {
  Tok *t = cur(P);
  CVal v;
  if (t->kind == T_NUM || t->kind == T_CHARLIT) {
    v.v = t->val;
    v.t = t->vtype;
    adv(P);
    return v;
  }
  if (t->kind == '(') {
    adv(P);
    v = expr_cond(P);
    expect(P, ')', "')'");
    return v;
  }
  if (t->kind == T_IDENT) {
    long long cv;
    int vt;
    if (P->pp_if && t->kw == K_DEFINED) {
      int paren;
      const char *body;
      size_t blen;
      P->noexpand++;
      adv(P);
      paren = accept(P, '(');
      t = cur(P);
      if (t->kind != T_IDENT) expected(P, "macro name");
      v = cv_int(find_macro(P, t->s, t->n, &body, &blen) != 0);
      P->noexpand--;
      adv(P);
      if (paren) expect(P, ')', "')'");
      return v;
    }
    if (!P->pp_if && t->kw == K_OFFSETOF)
      return expr_offsetof(P);
    if (P->pp_if) {              /* cpp: identifiers left are 0 */
      adv(P);
      return cv_int(0);
    }
    if (cu_find_const(P->u, t->id, &cv, &vt)) {
      adv(P);
      v.v = (unsigned long long)cv;
      v.t = vt;
      return v;
    }
    fail(P, t->line, t->col, "'%s' is not a constant", t->id);
  }
  expected(P, "constant expression");
}

static CVal expr_unary(Parser *P) {
  Tok at = *cur(P);
  CVal v;
  enter(P);
  switch (at.kind) {
  case '+': adv(P); v = expr_unary(P); v = cv_conv(v, v.t); break;
  case '-':
    adv(P);
    v = expr_unary(P);
    if (cv_unsigned(v.t)) v = cv_conv((CVal){0 - v.v, v.t}, v.t);
    else v = binop(P, &at, '-', cv_conv(cv_int(0), v.t), v);
    break;
  case '~': adv(P); v = expr_unary(P); v = cv_conv((CVal){~v.v, v.t}, v.t); break;
  case '!': adv(P); v = expr_unary(P); v = cv_int(!cv_true(v)); break;
  case '(':
    if (!P->pp_if && starts_type(P, peek(P, 1))) {
      CType *ty;
      adv(P);
      ty = parse_typename(P);
      expect(P, ')', "')'");
      v = expr_unary(P);
      v = cast_to(P, &at, ty, v);
      break;
    }
    v = expr_primary(P);
    break;
  case T_IDENT:
    if (!P->pp_if && at.kw == K_SIZEOF) {
      v = expr_sizeof(P, 0);
      break;
    }
    if (!P->pp_if && at.kw == K_ALIGNOF) {
      v = expr_sizeof(P, 1);
      break;
    }
    if (!P->pp_if && at.kw == K_EXTENSION) {
      adv(P);
      v = expr_unary(P);
      break;
    }
    v = expr_primary(P);
    break;
  default:
    v = expr_primary(P);
  }
  leave(P);
  return v;
}

/* A constant expression that must be a non-negative size (array length,
 * alignment, bit width); `what` names it in errors. */
static unsigned long long const_size(Parser *P, const char *what) {
  Tok at = *cur(P);
  CVal v = expr_cond(P);
  if (!cv_unsigned(v.t) && (long long)v.v < 0)
    fail(P, at.line, at.col, "%s is negative", what);
  return v.v;
}

/* ------------------------------------------------------------ directives */

/* The end of the directive line starting at p: continuations and block
 * comments extend it. */
static const char *directive_end(const char *p, const char *end) {
  while (p < end && *p != '\n') {
    if (*p == '\\' && p + 1 < end && p[1] == '\n') p += 2;
    else if (*p == '\\' && p + 2 < end && p[1] == '\r' && p[2] == '\n') p += 3;
    else if (p + 1 < end && p[0] == '/' && p[1] == '*') {
      p += 2;
      while (p + 1 < end && !(p[0] == '*' && p[1] == '/')) p++;
      p = p + 1 < end ? p + 2 : end;
    } else if (p + 1 < end && p[0] == '/' && p[1] == '/') {
      while (p < end && *p != '\n') p++;
    } else {
      p++;
    }
  }
  return p;
}

/* A parser over one directive line [p, e), sharing P's universe and error
 * handling. */
static void sub_init(Parser *S, Parser *P, const char *p, const char *e) {
  memset(S, 0, sizeof *S);
  S->u = P->u;
  S->p = p;
  S->end = e;
  S->lstart = P->lstart;
  S->line = P->line;
  S->jb = P->jb;
  S->err = P->err;
  S->errlen = P->errlen;
  S->depth = P->depth;
  S->directive = 1;
  S->macros = P->macros;
  S->expanded = P->expanded;     /* the budget is the whole call's */
}

static int pp_eval(Parser *S) {
  CVal v;
  S->pp_if = 1;
  v = expr_cond(S);
  if (cur(S)->kind != T_EOF) expected(S, "end of #if expression");
  return cv_true(v);
}

static Cond *cond_top(Parser *P, const Tok *t) {
  if (P->ncond == 0) fail(P, t->line, t->col, "#%s without #if", t->id);
  return &P->cond[P->ncond - 1];
}

static void pp_define(Parser *P, Parser *S, int undef) {
  Tok name;
  const char *q;
  S->noexpand = 1;
  name = *cur(S);
  if (name.kind != T_IDENT) expected(S, "macro name");
  q = name.s + name.n;
  if (undef) set_macro(P, name.s, name.n, NULL, 0, 0);
  else if (q < S->end && *q == '(') set_macro(P, name.s, name.n, "", 0, 2);
  else set_macro(P, name.s, name.n, q, (size_t)(S->end - q), 1);
}

/* Handles the directive line at P->p ('#' at the start of a line). */
static void directive(Parser *P) {
  const char *start = P->p, *e = directive_end(P->p, P->end);
  Parser S;
  Tok d;
  int active = P->ncond == 0 || P->cond[P->ncond - 1].active;
  sub_init(&S, P, start + 1, e);
  S.noexpand = 1;
  d = *cur(&S);
  S.noexpand = 0;
  if (d.kind == T_IDENT) adv(&S);
  if (d.kind != T_IDENT) {
    /* "#" alone, "# 12 file" line markers: nothing to do */
  } else if (!strcmp(d.id, "if") || !strcmp(d.id, "ifdef") || !strcmp(d.id, "ifndef")) {
    Cond c;
    if (P->ncond == MAX_COND) fail(P, d.line, d.col, "#if nested too deeply");
    c.parent = active;
    c.active = 0;
    if (active) {
      if (d.id[2] == 0) {
        c.active = pp_eval(&S);
      } else {
        Tok *n;
        S.noexpand = 1;
        n = cur(&S);
        if (n->kind != T_IDENT) expected(&S, "macro name");
        c.active = (find_macro(P, n->s, n->n, NULL, NULL) != 0) == (d.id[2] == 'd');
      }
    }
    c.taken = c.active;
    P->cond[P->ncond++] = c;
  } else if (!strcmp(d.id, "elif")) {
    Cond *c = cond_top(P, &d);
    if (!c->parent || c->taken) c->active = 0;
    else c->taken = c->active = pp_eval(&S);
  } else if (!strcmp(d.id, "else")) {
    Cond *c = cond_top(P, &d);
    c->active = c->parent && !c->taken;
    c->taken = 1;
  } else if (!strcmp(d.id, "endif")) {
    cond_top(P, &d);
    P->ncond--;
  } else if (!active) {
    /* other directives in a group left out: ignored */
  } else if (!strcmp(d.id, "define") || !strcmp(d.id, "undef")) {
    pp_define(P, &S, d.id[0] == 'u');
  } else if (!strcmp(d.id, "error")) {
    fail(P, d.line, d.col, "#error%.*s", (int)(e - (d.s + d.n) > 200 ? 200 : e - (d.s + d.n)), d.s + d.n);
  } else if (!strcmp(d.id, "pragma")) {
    S.noexpand = 1;
    if (is_id(cur(&S), "pack"))
      fail(P, d.line, d.col, "#pragma pack is not supported: use "
           "__attribute__((packed)) and aligned(N)");
  }
  /* #include, #line, #warning, #ident, unknown: skipped */
  P->expanded = S.expanded;
  for (; P->p < e; P->p++)
    if (*P->p == '\n') {
      P->line++;
      P->lstart = P->p + 1;
    }
}

/* ----------------------------------------------------------- declarations */

typedef struct Attr {
  int packed;
  size_t aligned;          /* largest aligned(N) seen, 0 if none */
} Attr;

enum { ST_NONE, ST_TYPEDEF, ST_EXTERN, ST_STATIC, ST_OTHER };
enum { CTX_TOP, CTX_MEMBER, CTX_PARAM, CTX_TYPENAME };

typedef struct Spec {
  CType *type;
  int storage;
  Attr attrs;              /* attributes of the declaration              */
  size_t align_as;         /* _Alignas                                   */
  int anon_record;         /* an untagged struct/union body here         */
  int has_alignas;
} Spec;

enum { OP_PTR, OP_ARRAY, OP_FUNC };

typedef struct DOp {
  int kind, quals, flexible, variadic, unproto;
  size_t count;
  CType **params;
  size_t nparams;
} DOp;

typedef struct Decl {
  const char *name;
  Tok at;                  /* the name, or where the declarator began    */
  DOp *ops;
  size_t nops;
  Attr attrs;
} Decl;

enum { DM_NAMED, DM_ABSTRACT, DM_EITHER };

static void parse_specs(Parser *P, Spec *s, int ctx);
static void parse_declarator(Parser *P, Decl *d, int mode);
static CType *apply(Parser *P, CType *t, const Decl *d);

static const char *strip_uscore(const char *s, char *buf, size_t n) {
  size_t l = strlen(s);
  if (l > 4 && s[0] == '_' && s[1] == '_' && s[l - 1] == '_' && s[l - 2] == '_') {
    if (l - 4 >= n) return s;
    memcpy(buf, s + 2, l - 4);
    buf[l - 4] = 0;
    return buf;
  }
  return s;
}

/* Skips a parenthesised group (the current token is its '('). */
static void skip_parens(Parser *P) {
  int depth = 0;
  do {
    Tok *t = cur(P);
    if (t->kind == T_EOF) expected(P, "')'");
    if (t->kind == '(') {
      enter(P);
      depth++;
    } else if (t->kind == ')') {
      leave(P);
      depth--;
    }
    adv(P);
  } while (depth > 0);
}

static size_t check_align(Parser *P, const Tok *at, unsigned long long v) {
  if (v == 0 || (v & (v - 1)) != 0 || v > CU_MAX_ALIGN)
    fail(P, at->line, at->col, "requested alignment %llu is not a positive power of 2", v);
  return (size_t)v;
}

/* __attribute__((...)) lists: packed and aligned are understood; layout
 * changing attributes shmlua does not model are errors; others ignored. */
static int parse_attrs(Parser *P, Attr *a) {
  int any = 0;
  while (is_kw(cur(P), K_ATTRIBUTE)) {
    any = 1;
    adv(P);
    expect(P, '(', "'('");
    expect(P, '(', "'('");
    while (cur(P)->kind != ')') {
      Tok t = *cur(P);
      char buf[64];
      const char *n;
      if (t.kind == ',') {
        adv(P);
        continue;
      }
      if (t.kind != T_IDENT) expected(P, "attribute name");
      n = strip_uscore(t.id, buf, sizeof buf);
      adv(P);
      if (!strcmp(n, "packed")) {
        a->packed = 1;
      } else if (!strcmp(n, "aligned")) {
        size_t v = 16;
        if (accept(P, '(')) {
          Tok at = *cur(P);
          v = check_align(P, &at, const_size(P, "alignment"));
          expect(P, ')', "')'");
        }
        if (v > a->aligned) a->aligned = v;
      } else if (!strcmp(n, "vector_size") || !strcmp(n, "mode") ||
                 !strcmp(n, "ms_struct") || !strcmp(n, "scalar_storage_order") ||
                 !strcmp(n, "warn_if_not_aligned")) {
        fail(P, t.line, t.col, "attribute '%s' is not supported", t.id);
      } else if (cur(P)->kind == '(') {
        skip_parens(P);
      }
    }
    expect(P, ')', "')'");
    expect(P, ')', "')'");
  }
  return any;
}

/* __asm__("label") after a declarator: skipped. */
static void skip_asm(Parser *P) {
  while (is_kw(cur(P), K_ASM)) {
    adv(P);
    if (cur(P)->kind != '(') expected(P, "'('");
    skip_parens(P);
  }
}

static int qual_of(const Tok *t) {
  if (t->kind != T_IDENT) return 0;
  switch (t->kw) {
  case K_CONST: return CQ_CONST;
  case K_VOLATILE: return CQ_VOLATILE;
  case K_RESTRICT: return CQ_RESTRICT;
  case K_NULLQ: return -1;             /* _Nonnull, _Nullable: ignored */
  }
  return 0;
}

/* Whether token t can begin a type name (cast, sizeof, parameter). */
static int starts_type(Parser *P, const Tok *t) {
  if (t->kind != T_IDENT) return 0;
  switch (t->kw) {
  case K_STRUCT: case K_UNION: case K_ENUM: case K_CONST: case K_VOLATILE:
  case K_RESTRICT: case K_NULLQ: case K_ATOMIC: case K_ATTRIBUTE:
  case K_ALIGNAS: case K_TYPEOF: case K_COMPLEX: case K_VOID: case K_BOOL:
  case K_CHAR: case K_SHORT: case K_INT: case K_LONG: case K_FLOAT:
  case K_DOUBLE: case K_SIGNED: case K_UNSIGNED: case K_INT128:
  case K_EXTENSION:
    return 1;
  }
  return cu_find_typedef(P->u, t->id) != NULL;
}

static int storage_of(const Tok *t) {
  if (t->kind != T_IDENT) return 0;
  switch (t->kw) {
  case K_TYPEDEF: return ST_TYPEDEF;
  case K_EXTERN: return ST_EXTERN;
  case K_STATIC: return ST_STATIC;
  case K_AUTO: case K_REGISTER: case K_THREAD: return ST_OTHER;
  case K_INLINE: case K_NORETURN: case K_EXTENSION: return -1;
  }
  return 0;
}

/* --- struct / union / enum specifiers */

typedef struct FieldVec {
  CFieldSpec *v;
  size_t n, cap;
} FieldVec;

static void fv_push(Parser *P, FieldVec *fv, const CFieldSpec *f) {
  if (fv->n == fv->cap) {
    size_t cap = fv->cap ? fv->cap * 2 : 8;
    CFieldSpec *nv = salloc(P, cap * sizeof *nv);
    if (fv->n) memcpy(nv, fv->v, fv->n * sizeof *nv);
    fv->v = nv;
    fv->cap = cap;
  }
  fv->v[fv->n++] = *f;
}

static void parse_static_assert(Parser *P) {
  Tok at = *cur(P);
  CVal v;
  const Tok *msg = NULL;
  Tok m;
  adv(P);
  expect(P, '(', "'('");
  v = expr_cond(P);
  if (accept(P, ',')) {
    m = *cur(P);
    if (m.kind != T_STR) expected(P, "string literal");
    msg = &m;
    adv(P);
  }
  expect(P, ')', "')'");
  expect(P, ';', "';'");
  if (!cv_true(v))
    fail(P, at.line, at.col, "static assertion failed%s%.*s", msg ? ": " : "",
         msg ? (int)(msg->n > 200 ? 200 : msg->n) : 0, msg ? msg->s : "");
}

/* The members of a struct or union body, up to its closing brace. */
static void parse_members(Parser *P, FieldVec *fv, int is_union) {
  while (cur(P)->kind != '}') {
    Spec s;
    Tok start = *cur(P);
    if (start.kind == T_EOF) expected(P, "'}'");
    if (accept(P, ';')) continue;
    if (is_kw(&start, K_STATIC_ASSERT)) {
      parse_static_assert(P);
      continue;
    }
    parse_specs(P, &s, CTX_MEMBER);
    if (accept(P, ';')) {
      if (s.anon_record) {
        CFieldSpec f;
        memset(&f, 0, sizeof f);
        f.type = s.type;
        f.bit_width = -1;
        f.align_as = s.align_as > s.attrs.aligned ? s.align_as : s.attrs.aligned;
        f.packed = s.attrs.packed;
        fv_push(P, fv, &f);
      }
      continue;
    }
    for (;;) {
      Decl d;
      CFieldSpec f;
      memset(&d, 0, sizeof d);
      memset(&f, 0, sizeof f);
      f.bit_width = -1;
      if (cur(P)->kind == ':') {
        d.at = *cur(P);
      } else {
        parse_declarator(P, &d, DM_NAMED);
      }
      f.type = apply(P, s.type, &d);
      f.name = d.name;
      if (accept(P, ':')) {
        Tok at = *cur(P);
        unsigned long long w = const_size(P, "width of bit-field");
        if (w > 128) fail(P, at.line, at.col, "width of bit-field too large");
        f.bit_width = (int)w;
      }
      parse_attrs(P, &d.attrs);
      if (!(f.type->kind == CK_ARRAY && f.type->flexible)) {
        char err[MAX_DEF_ERR];
        if (cu_check_member(&f, 0, 2, is_union, err, sizeof err) != 0)
          fail(P, d.at.line, d.at.col, "%s", err);
      }
      f.packed = s.attrs.packed || d.attrs.packed;
      f.align_as = s.attrs.aligned;
      if (d.attrs.aligned > f.align_as) f.align_as = d.attrs.aligned;
      if (s.align_as > f.align_as) f.align_as = s.align_as;
      fv_push(P, fv, &f);
      if (accept(P, ',')) continue;
      expect(P, ';', "';' or ',' after member");
      break;
    }
  }
}

static CType *parse_record(Parser *P, Spec *s, int is_union) {
  Tok kw = *cur(P);
  Attr ra = {0, 0};
  const char *tag = NULL;
  CKind kind = is_union ? CK_UNION : CK_STRUCT;
  CType *t;
  adv(P);
  parse_attrs(P, &ra);
  if (cur(P)->kind == T_IDENT) {
    tag = cu_strndup(P->u, cur(P)->id, cur(P)->n);
    if (tag == NULL) oom(P);
    adv(P);
    parse_attrs(P, &ra);
  }
  if (cur(P)->kind == '{') {
    FieldVec fv = {NULL, 0, 0};
    char err[MAX_DEF_ERR];
    enter(P);
    if (tag != NULL) {
      CType *old = cu_find_tag(P->u, tag);
      if (old != NULL && old->kind != kind)
        fail(P, kw.line, kw.col, "'%s' defined as wrong kind of tag (%s)", tag, old->name);
      if (old == NULL && cu_declare_tag(P->u, kind, tag) == NULL) oom(P);
    }
    adv(P);
    P->bodies++;
    parse_members(P, &fv, is_union);
    P->bodies--;
    adv(P);
    parse_attrs(P, &ra);
    t = cu_define_record(P->u, is_union, tag, fv.v, fv.n, ra.packed, ra.aligned, err, sizeof err);
    if (t == NULL) fail(P, kw.line, kw.col, "%s", err);
    s->anon_record = tag == NULL;
    leave(P);
    return t;
  }
  if (tag == NULL) expected(P, "'{' or a tag name");
  t = cu_find_tag(P->u, tag);
  if (t != NULL && t->kind != kind)
    fail(P, kw.line, kw.col, "'%s' defined as wrong kind of tag (%s)", tag, t->name);
  if (t == NULL) {
    if (P->typename_only) fail(P, kw.line, kw.col, "unknown %s %s", is_union ? "union" : "struct", tag);
    if ((t = cu_declare_tag(P->u, kind, tag)) == NULL) oom(P);
  }
  return t;
}

static int fits_int(long long v) { return v >= INT_MIN && v <= INT_MAX; }

static CType *parse_enum(Parser *P) {
  Tok kw = *cur(P);
  Attr ra = {0, 0};
  const char *tag = NULL;
  CType *t;
  adv(P);
  parse_attrs(P, &ra);
  if (cur(P)->kind == T_IDENT) {
    tag = cu_strndup(P->u, cur(P)->id, cur(P)->n);
    if (tag == NULL) oom(P);
    adv(P);
    parse_attrs(P, &ra);
  }
  if (accept(P, '{')) {
    CEnumConst *cs = NULL;
    P->bodies++;
    size_t n = 0, cap = 0;
    CVal next = cv_int(0);
    int next_ovf = 0;
    char err[MAX_DEF_ERR];
    while (cur(P)->kind != '}') {
      Tok name = *cur(P);
      CVal v;
      long long val;
      if (name.kind != T_IDENT) expected(P, "enumerator name");
      adv(P);
      parse_attrs(P, &ra);
      if (accept(P, '=')) {
        next = expr_cond(P);
        next_ovf = 0;
      } else if (next_ovf) {
        fail(P, name.line, name.col, "overflow in enumeration values");
      }
      v = next;
      val = (long long)v.v;
      if (v.t == CV_ULONG && val < 0)
        fail(P, name.line, name.col, "enumerator value for '%s' is too large", name.id);
      /* gcc: the next value is this one plus 1 in this one's type (int
       * when the value fits), and wrapping around is an error */
      next.t = fits_int(val) ? CV_INT : v.t;
      next.v = (unsigned long long)val + 1;
      next_ovf = next.t == CV_INT ? val == INT_MAX
               : next.t == CV_UINT ? v.v == UINT_MAX
               : next.t == CV_LONG ? val == LLONG_MAX : v.v == ULLONG_MAX;
      if (n == cap) {
        CEnumConst *nc;
        cap = cap ? cap * 2 : 8;
        nc = salloc(P, cap * sizeof *nc);
        if (n) memcpy(nc, cs, n * sizeof *nc);
        cs = nc;
      }
      cs[n].name = name.id;
      cs[n].value = val;
      n++;
      if (cu_add_const(P->u, name.id, val, fits_int(val) ? CV_INT : v.t, err, sizeof err) != 0)
        fail(P, name.line, name.col, "%s", err);
      if (!accept(P, ',')) break;
    }
    expect(P, '}', "'}' or ',' after enumerator");
    P->bodies--;
    parse_attrs(P, &ra);
    t = cu_define_enum(P->u, tag, cs, n, ra.packed, err, sizeof err);
    if (t == NULL) fail(P, kw.line, kw.col, "%s", err);
    return t;
  }
  if (tag == NULL) expected(P, "'{' or a tag name");
  t = cu_find_tag(P->u, tag);
  if (t != NULL && t->kind != CK_ENUM)
    fail(P, kw.line, kw.col, "'%s' defined as wrong kind of tag (%s)", tag, t->name);
  if (t == NULL) {
    if (P->typename_only) fail(P, kw.line, kw.col, "unknown enum %s", tag);
    if ((t = cu_declare_tag(P->u, CK_ENUM, tag)) == NULL) oom(P);
  }
  return t;
}

/* --- declaration specifiers */

enum { W_VOID, W_BOOL, W_CHAR, W_SHORT, W_INT, W_LONG, W_FLOAT, W_DOUBLE,
       W_SIGNED, W_UNSIGNED, W_INT128, W_N };

static int word_of(const Tok *t) {
  if (t->kind != T_IDENT) return -1;
  switch (t->kw) {
  case K_VOID: return W_VOID;
  case K_BOOL: return W_BOOL;
  case K_CHAR: return W_CHAR;
  case K_SHORT: return W_SHORT;
  case K_INT: return W_INT;
  case K_LONG: return W_LONG;
  case K_FLOAT: return W_FLOAT;
  case K_DOUBLE: return W_DOUBLE;
  case K_SIGNED: return W_SIGNED;
  case K_UNSIGNED: return W_UNSIGNED;
  case K_INT128: return W_INT128;
  }
  return -1;
}

/* The base type the counted type words name, or -1 if they do not combine. */
static int base_of(const int *w) {
  int sign = w[W_SIGNED] + w[W_UNSIGNED], u = w[W_UNSIGNED] > 0, i, others = 0;
  if (w[W_SIGNED] > 1 || w[W_UNSIGNED] > 1 || (w[W_SIGNED] && w[W_UNSIGNED])) return -1;
  for (i = 0; i < W_N; i++)
    if (i != W_SIGNED && i != W_UNSIGNED && w[i] > (i == W_LONG ? 2 : 1)) return -1;
  for (i = 0; i < W_N; i++)
    if (i != W_SIGNED && i != W_UNSIGNED && i != W_INT && i != W_LONG && i != W_SHORT) others += w[i];
  if (w[W_VOID] || w[W_BOOL] || w[W_FLOAT]) {
    if (others + w[W_INT] + w[W_LONG] + w[W_SHORT] + sign != 1) return -1;
    return w[W_VOID] ? CB_VOID : w[W_BOOL] ? CB_BOOL : CB_FLOAT;
  }
  if (w[W_DOUBLE]) {
    if (others != 1 || w[W_INT] || w[W_SHORT] || sign || w[W_LONG] > 1) return -1;
    return w[W_LONG] ? CB_LDOUBLE : CB_DOUBLE;
  }
  if (w[W_CHAR]) {
    if (others != 1 || w[W_INT] || w[W_SHORT] || w[W_LONG]) return -1;
    return u ? CB_UCHAR : w[W_SIGNED] ? CB_SCHAR : CB_CHAR;
  }
  if (w[W_INT128]) {
    if (others != 1 || w[W_INT] || w[W_SHORT] || w[W_LONG]) return -1;
    return u ? CB_UINT128 : CB_INT128;
  }
  if (w[W_SHORT]) {
    if (w[W_LONG]) return -1;
    return u ? CB_USHORT : CB_SHORT;
  }
  if (w[W_LONG] == 2) return u ? CB_ULLONG : CB_LLONG;
  if (w[W_LONG] == 1) return u ? CB_ULONG : CB_LONG;
  if (w[W_INT] || sign) return u ? CB_UINT : CB_INT;
  return -2;                                     /* no type word at all */
}

static void parse_alignas(Parser *P, Spec *s) {
  unsigned long long v;
  adv(P);
  expect(P, '(', "'('");
  if (starts_type(P, cur(P))) {
    CType *t = parse_typename(P);
    v = t->align;
  } else {
    Tok vt = *cur(P);
    v = const_size(P, "alignment");
    if (v != 0) check_align(P, &vt, v);
  }
  expect(P, ')', "')'");
  s->has_alignas = 1;
  if (v > s->align_as) s->align_as = (size_t)v;
}

static CType *qualify(Parser *P, const Tok *at, CType *t, int quals) {
  char err[MAX_DEF_ERR];
  CType *r;
  if (quals == 0) return t;
  if ((r = cu_qualified(P->u, t, quals, err, sizeof err)) == NULL)
    fail(P, at->line, at->col, "%s", err);
  return r;
}

/*
 * Declaration specifiers: storage class, qualifiers, type words, a struct,
 * union or enum specifier, a typedef name, _Atomic(type), typeof(type),
 * attributes and _Alignas.  An identifier is a typedef name only while no
 * type word has been seen, so `typedef int T; typedef int T;` works.
 */
static void parse_specs(Parser *P, Spec *s, int ctx) {
  int w[W_N], quals = 0, b, nwords = 0;
  CType *other = NULL;
  Tok first = *cur(P), otok = first;
  memset(w, 0, sizeof w);
  memset(s, 0, sizeof *s);
  enter(P);
  for (;;) {
    Tok *t = cur(P);
    int q, st, wd;
    if (t->kind != T_IDENT) break;
    if ((st = storage_of(t)) != 0) {
      if (st > 0) {
        if (ctx != CTX_TOP && !(ctx == CTX_PARAM && t->kw == K_REGISTER))
          fail(P, t->line, t->col, "storage class '%s' not allowed here", t->id);
        if (s->storage != ST_NONE && s->storage != st)
          fail(P, t->line, t->col, "multiple storage classes in declaration");
        s->storage = st;
        if (ctx == CTX_TOP) P->storage = st;
      } else if (ctx == CTX_TOP && t->kw != K_EXTENSION) {
        P->storage = ST_OTHER;     /* inline / _Noreturn: a function */
      }
      adv(P);
    } else if ((q = qual_of(t)) != 0) {
      if (q > 0) quals |= q;
      adv(P);
    } else if (t->kw == K_ATOMIC) {
      if (peek(P, 1)->kind == '(') {
        Tok at = *t;
        CType *in;
        if (other != NULL) fail(P, at.line, at.col, "two or more data types in declaration specifiers");
        adv(P);
        adv(P);
        in = parse_typename(P);
        expect(P, ')', "')'");
        other = qualify(P, &at, in, CQ_ATOMIC);
        otok = at;
      } else {
        quals |= CQ_ATOMIC;
        adv(P);
      }
    } else if (t->kw == K_ATTRIBUTE) {
      parse_attrs(P, &s->attrs);
    } else if (t->kw == K_ALIGNAS) {
      parse_alignas(P, s);
    } else if ((wd = word_of(t)) >= 0) {
      if (other != NULL) fail(P, t->line, t->col, "two or more data types in declaration specifiers");
      w[wd]++;
      nwords++;
      adv(P);
    } else if (t->kw == K_STRUCT || t->kw == K_UNION || t->kw == K_ENUM) {
      Tok at = *t;
      if (other != NULL || nwords)
        fail(P, at.line, at.col, "two or more data types in declaration specifiers");
      other = at.kw == K_ENUM ? parse_enum(P) : parse_record(P, s, at.kw == K_UNION);
      otok = at;
    } else if (t->kw == K_TYPEOF) {
      Tok at = *t;
      if (other != NULL || nwords)
        fail(P, at.line, at.col, "two or more data types in declaration specifiers");
      adv(P);
      expect(P, '(', "'('");
      if (!starts_type(P, cur(P))) expected(P, "a type name (typeof of an expression is not supported)");
      other = parse_typename(P);
      expect(P, ')', "')'");
      otok = at;
    } else if (t->kw == K_COMPLEX) {
      fail(P, t->line, t->col, "complex types are not supported");
    } else if (other == NULL && nwords == 0 && cu_find_typedef(P->u, t->id) != NULL) {
      other = cu_find_typedef(P->u, t->id);
      otok = *t;
      adv(P);
    } else {
      break;
    }
  }
  b = base_of(w);
  if (other != NULL) {
    if (b != -2) fail(P, otok.line, otok.col, "two or more data types in declaration specifiers");
    s->type = other;
  } else if (b == -1) {
    fail(P, first.line, first.col, "invalid combination of type specifiers");
  } else if (b == -2) {
    Tok *t = cur(P);
    if (t->kind == T_IDENT)
      fail(P, t->line, t->col, "unknown type name '%s'", t->id);
    expected(P, "a type");
  } else {
    s->type = cu_base(P->u, (CBase)b);
  }
  s->type = qualify(P, &first, s->type, quals);
  leave(P);
}

/* --- declarators */

typedef struct OpVec {
  DOp *v;
  size_t n, cap;
} OpVec;

static void ov_push(Parser *P, OpVec *o, const DOp *op) {
  if (o->n == o->cap) {
    size_t cap = o->cap ? o->cap * 2 : 4;
    DOp *nv = salloc(P, cap * sizeof *nv);
    if (o->n) memcpy(nv, o->v, o->n * sizeof *nv);
    o->v = nv;
    o->cap = cap;
  }
  o->v[o->n++] = *op;
}

/* Parameters after '(' up to and including ')'. */
static void parse_params(Parser *P, DOp *op) {
  CType **v = NULL;
  size_t n = 0, cap = 0;
  op->kind = OP_FUNC;
  P->in_params++;
  if (accept(P, ')')) {
    op->unproto = 1;
    P->in_params--;
    return;
  }
  if (is_kw(cur(P), K_VOID) && peek(P, 1)->kind == ')') {
    adv(P);
    adv(P);
    P->in_params--;
    return;
  }
  for (;;) {
    Spec s;
    Decl d;
    CType *t;
    if (accept(P, T_ELLIPSIS)) {
      op->variadic = 1;
      expect(P, ')', "')' after '...'");
      break;
    }
    parse_specs(P, &s, CTX_PARAM);
    memset(&d, 0, sizeof d);
    parse_declarator(P, &d, DM_EITHER);
    t = apply(P, s.type, &d);
    if (t->kind == CK_ARRAY) t = cu_pointer_to(P->u, t->elem);
    else if (t->kind == CK_FUNC) t = cu_pointer_to(P->u, t);
    else if (t->kind == CK_VOID) fail(P, d.at.line, d.at.col, "parameter has void type");
    if (t == NULL) oom(P);
    if (n == cap) {
      CType **nv;
      cap = cap ? cap * 2 : 4;
      nv = salloc(P, cap * sizeof *nv);
      if (n) memcpy(nv, v, n * sizeof *nv);
      v = nv;
    }
    v[n++] = t;
    if (accept(P, ',')) continue;
    expect(P, ')', "',' or ')' in parameter list");
    break;
  }
  op->params = v;
  op->nparams = n;
  P->in_params--;
}

/* After '(' in a declarator: a nested declarator rather than parameters? */
static int nested_follows(Parser *P, int mode) {
  Tok *t = peek(P, 1);
  if (mode == DM_NAMED) return 1;
  if (t->kind == '*' || t->kind == '(' || t->kind == '[' || t->kind == '^') return 1;
  if (is_kw(t, K_ATTRIBUTE))
    return 1;
  if (t->kind == T_IDENT && mode == DM_EITHER && !starts_type(P, t)) return 1;
  return 0;
}

static void parse_array_suffix(Parser *P, DOp *op) {
  Tok at = *cur(P);
  memset(op, 0, sizeof *op);
  op->kind = OP_ARRAY;
  adv(P);
  while (is_kw(cur(P), K_STATIC) || qual_of(cur(P)) != 0) adv(P);
  if (accept(P, ']')) {
    op->flexible = 1;
    return;
  }
  if (cur(P)->kind == '*' && peek(P, 1)->kind == ']')
    fail(P, at.line, at.col, "variable length arrays are not supported");
  {
    Tok vt = *cur(P);
    unsigned long long n = const_size(P, "size of array");
    if (n > CU_MAX_SIZE) fail(P, vt.line, vt.col, "size of array is too large");
    op->count = (size_t)n;
  }
  expect(P, ']', "']'");
}

/*
 * A declarator: pointers, then a name or a parenthesised declarator, then
 * array and function suffixes.  The derivations are stored in the order
 * they apply to the base type: pointers left to right, suffixes right to
 * left, then the inner declarator's.
 */
static void parse_declarator(Parser *P, Decl *d, int mode) {
  OpVec ptrs = {NULL, 0, 0}, sufs = {NULL, 0, 0};
  Decl inner;
  size_t i, k;
  enter(P);
  memset(&inner, 0, sizeof inner);
  parse_attrs(P, &d->attrs);
  d->at = *cur(P);
  while (cur(P)->kind == '*') {
    DOp op;
    memset(&op, 0, sizeof op);
    op.kind = OP_PTR;
    adv(P);
    for (;;) {
      int q = qual_of(cur(P));
      if (q != 0) {
        if (q > 0) op.quals |= q;
        adv(P);
      } else if (is_kw(cur(P), K_ATOMIC) && peek(P, 1)->kind != '(') {
        op.quals |= CQ_ATOMIC;
        adv(P);
      } else if (!parse_attrs(P, &d->attrs)) {
        break;
      }
    }
    ov_push(P, &ptrs, &op);
  }
  if (cur(P)->kind == '(' && nested_follows(P, mode)) {
    adv(P);
    parse_declarator(P, &inner, mode);
    expect(P, ')', "')'");
    d->name = inner.name;
    if (inner.name) d->at = inner.at;
    d->attrs.packed |= inner.attrs.packed;
    if (inner.attrs.aligned > d->attrs.aligned) d->attrs.aligned = inner.attrs.aligned;
  } else if (cur(P)->kind == T_IDENT && mode != DM_ABSTRACT && !is_kw(cur(P), K_ATTRIBUTE)) {
    d->at = *cur(P);
    d->name = cur(P)->id;
    adv(P);
  } else if (mode == DM_NAMED) {
    expected(P, "identifier");
  }
  for (;;) {
    DOp op;
    if (cur(P)->kind == '[') {
      parse_array_suffix(P, &op);
    } else if (cur(P)->kind == '(') {
      memset(&op, 0, sizeof op);
      adv(P);
      parse_params(P, &op);
    } else {
      break;
    }
    ov_push(P, &sufs, &op);
  }
  skip_asm(P);
  parse_attrs(P, &d->attrs);
  d->nops = ptrs.n + sufs.n + inner.nops;
  if (d->nops > MAX_OPS) fail(P, d->at.line, d->at.col, "declarator too complex");
  d->ops = d->nops ? salloc(P, d->nops * sizeof *d->ops) : NULL;
  k = 0;
  for (i = 0; i < ptrs.n; i++) d->ops[k++] = ptrs.v[i];
  for (i = sufs.n; i > 0; i--) d->ops[k++] = sufs.v[i - 1];
  for (i = 0; i < inner.nops; i++) d->ops[k++] = inner.ops[i];
  leave(P);
}

/* The type declarator d makes of base type t. */
static CType *apply(Parser *P, CType *t, const Decl *d) {
  size_t i;
  char err[MAX_DEF_ERR];
  for (i = 0; i < d->nops; i++) {
    const DOp *op = &d->ops[i];
    CType *r = NULL;
    err[0] = 0;
    if (op->kind == OP_PTR) {
      r = cu_pointer_to(P->u, t);
      if (r != NULL && op->quals) r = cu_qualified(P->u, r, op->quals, err, sizeof err);
    } else if (op->kind == OP_ARRAY) {
      r = cu_array_of(P->u, t, op->count, op->flexible, err, sizeof err);
    } else {
      r = cu_function(P->u, t, op->params, op->nparams, op->variadic, op->unproto, err, sizeof err);
    }
    if (r == NULL) {
      if (err[0] == 0) oom(P);
      fail(P, d->at.line, d->at.col, "%s", err);
    }
    t = r;
  }
  return t;
}

static CType *parse_typename(Parser *P) {
  Spec s;
  Decl d;
  enter(P);
  parse_specs(P, &s, CTX_TYPENAME);
  memset(&d, 0, sizeof d);
  parse_declarator(P, &d, DM_ABSTRACT);
  leave(P);
  return apply(P, s.type, &d);
}

/* An initializer or function body: skipped, brackets balanced. */
static void skip_balanced_until(Parser *P, int stop1, int stop2) {
  int depth = 0;
  for (;;) {
    Tok *t = cur(P);
    if (t->kind == T_EOF) expected(P, "';'");
    if (depth == 0 && (t->kind == stop1 || t->kind == stop2)) return;
    if (t->kind == '(' || t->kind == '[' || t->kind == '{') depth++;
    if (t->kind == ')' || t->kind == ']' || t->kind == '}') {
      if (depth == 0) expected(P, "';'");
      depth--;
    }
    adv(P);
  }
}

static void skip_body(Parser *P) {
  int depth = 0;
  do {
    Tok *t = cur(P);
    if (t->kind == T_EOF) expected(P, "'}'");
    if (t->kind == '{') depth++;
    if (t->kind == '}') depth--;
    adv(P);
  } while (depth > 0);
}

static void declare_typedef(Parser *P, const Spec *s, const Decl *d, CType *t) {
  char err[MAX_DEF_ERR];
  size_t align = s->attrs.aligned > d->attrs.aligned ? s->attrs.aligned : d->attrs.aligned;
  if (s->has_alignas) fail(P, d->at.line, d->at.col, "_Alignas in a typedef");
  if (align != 0 && t->kind == CK_FUNC) align = 0;
  if (cu_typedef_aligned(P->u, d->name, t, align, err, sizeof err) != 0)
    fail(P, d->at.line, d->at.col, "%s", err);
}

/* One declaration at file scope: what it declares is kept when it is a
 * typedef, tag or enum; variables and functions are checked, then
 * dropped; function bodies and initializers are skipped. */
static void parse_declaration_body(Parser *P) {
  Spec s;
  parse_specs(P, &s, CTX_TOP);
  if (accept(P, ';')) return;
  for (;;) {
    Decl d;
    CType *t;
    memset(&d, 0, sizeof d);
    parse_declarator(P, &d, DM_NAMED);
    t = apply(P, s.type, &d);
    if (s.storage == ST_TYPEDEF) {
      declare_typedef(P, &s, &d, t);
    } else if (cur(P)->kind == '{' && t->kind == CK_FUNC) {
      skip_body(P);
      return;
    } else if (accept(P, '=')) {
      skip_balanced_until(P, ',', ';');
    }
    if (accept(P, ',')) continue;
    expect(P, ';', "';' or ',' after declarator");
    return;
  }
}

/* After an error in a declaration that only declares a function or an
 * object: skips to its end (a ';' or the closing brace of a body). */
static void skip_declaration(Parser *P) {
  int depth = 0, prev = 0;
  for (;;) {
    Tok *t = cur(P);
    int k = t->kind;
    if (k == T_EOF) return;
    if (k == ';' && depth <= 0) {
      adv(P);
      return;
    }
    if (k == '{' && depth <= 0 && prev == ')') {
      skip_body(P);
      return;
    }
    if (k == '(' || k == '[' || k == '{') depth++;
    if (k == ')' || k == ']' || k == '}') depth--;
    prev = k;
    adv(P);
  }
}

/* Whether the tokens of the declaration at P's cursor look like a function
 * prototype: an identifier followed by '(' before any '{', '=' or ';'. */
static int looks_like_prototype(Parser *P) {
  int i;
  for (i = 0; i + 1 < LOOKAHEAD; i++) {
    Tok *t = peek(P, i), *n = peek(P, i + 1);
    if (t->kind == '{' || t->kind == ';' || t->kind == '=' || t->kind == T_EOF) return 0;
    if (t->kind == T_IDENT && n->kind == '(') return 1;
  }
  return 0;
}

/*
 * A declaration at file scope, in its own nested transaction: a pasted
 * header's function prototypes and extern/static objects may use types
 * shmlua does not know (FILE, va_list); such a declaration is dropped,
 * whole, instead of failing the call.  Type definitions never are.
 */
static void parse_declaration(Parser *P) {
  jmp_buf jb, *outer = P->jb;
  volatile int lenient_start = 0;
  Tok first = *cur(P);
  if (first.kind == T_IDENT && !starts_type(P, &first) && storage_of(&first) == 0 &&
      looks_like_prototype(P))
    lenient_start = 1;
  if (cu_begin(P->u) != 0) fail(P, first.line, first.col, "nesting too deep");
  P->storage = ST_NONE;
  P->in_params = 0;
  P->bodies = 0;
  P->jb = &jb;
  if (setjmp(jb) != 0) {
    /* never when the error is in a struct, union or enum definition */
    int lenient = P->bodies == 0 &&
                  (P->storage == ST_EXTERN || P->storage == ST_STATIC ||
                   P->storage == ST_OTHER || P->in_params > 0 || lenient_start);
    P->jb = outer;
    cu_rollback(P->u);
    if (!lenient || strstr(P->err ? P->err : "", "out of memory") != NULL)
      longjmp(*outer, 1);
    P->depth = 0;
    P->in_params = 0;
    P->skip = 0;
    P->bodies = 0;
    skip_declaration(P);
    return;
  }
  parse_declaration_body(P);
  P->jb = outer;
  cu_commit(P->u);
}

static void parse_external(Parser *P) {
  Tok *t = cur(P);
  if (t->kind == ';') {
    adv(P);
  } else if (t->kind == '}' && P->externc > 0) {
    P->externc--;
    adv(P);
  } else if (is_kw(t, K_EXTERN) && peek(P, 1)->kind == T_STR) {
    adv(P);
    adv(P);
    if (accept(P, '{')) P->externc++;
  } else if (is_kw(t, K_STATIC_ASSERT)) {
    parse_static_assert(P);
  } else if (is_kw(t, K_ASM)) {
    skip_asm(P);
    expect(P, ';', "';'");
  } else {
    parse_declaration(P);
  }
}

/* ------------------------------------------------------------ entry points */

static void parser_init(Parser *P, CUniverse *u, const char *src, size_t len,
                        char *err, size_t errlen, jmp_buf *jb) {
  memset(P, 0, sizeof *P);
  P->u = u;
  P->p = src;
  P->end = src + len;
  P->lstart = src;
  P->line = 1;
  P->bol = 1;
  P->jb = jb;
  P->err = err;
  P->errlen = errlen;
}

int cu_parse(CUniverse *u, const char *src, size_t len, char *err,
             size_t errlen) {
  Parser *P;
  jmp_buf jb;
  static const char empty[1] = "";
  if (err != NULL && errlen > 0) err[0] = 0;
  if (u == NULL) {
    if (err != NULL && errlen > 0) snprintf(err, errlen, "no universe");
    return -1;
  }
  if (src == NULL) {
    if (len != 0) {
      if (err != NULL && errlen > 0) snprintf(err, errlen, "no source");
      return -1;
    }
    src = empty;
  }
  if (cu_begin(u) != 0) {
    if (err != NULL && errlen > 0) snprintf(err, errlen, "cu_parse nested too deeply");
    return -1;
  }
  P = cu_scratch(u, sizeof *P);
  if (P == NULL) {
    cu_rollback(u);
    if (err != NULL && errlen > 0) snprintf(err, errlen, "out of memory");
    return -1;
  }
  parser_init(P, u, src, len, err, errlen, &jb);
  if (setjmp(jb) != 0) {
    cu_rollback(u);
    if (errlen > 0 && err != NULL && err[0] == 0) snprintf(err, errlen, "error");
    cu_scratch_reset(u);
    return -1;
  }
  P->macros = salloc(P, sizeof *P->macros);
  while (cur(P)->kind != T_EOF) parse_external(P);
  commit_macros(P);
  cu_commit(u);
  cu_scratch_reset(u);
  return 0;
}

CType *cu_typeof(CUniverse *u, const char *decl, char *err, size_t errlen) {
  Parser *P;
  jmp_buf jb;
  CType *volatile t = NULL;
  if (err != NULL && errlen > 0) err[0] = 0;
  if (u == NULL || decl == NULL) {
    if (err != NULL && errlen > 0) snprintf(err, errlen, "no type name");
    return NULL;
  }
  if (cu_begin(u) != 0) {
    if (err != NULL && errlen > 0) snprintf(err, errlen, "nested too deeply");
    return NULL;
  }
  P = cu_scratch(u, sizeof *P);
  if (P == NULL) {
    cu_rollback(u);
    if (err != NULL && errlen > 0) snprintf(err, errlen, "out of memory");
    return NULL;
  }
  parser_init(P, u, decl, strlen(decl), err, errlen, &jb);
  P->typename_only = 1;
  P->no_pp = 1;                  /* a type name has no directives */
  if (setjmp(jb) != 0) {
    cu_rollback(u);
    cu_scratch_reset(u);
    return NULL;
  }
  if (cur(P)->kind == T_EOF) expected(P, "a type name");
  t = parse_typename(P);
  if (cur(P)->kind != T_EOF) expected(P, "end of type name");
  if (!t->complete && t->kind != CK_VOID)
    fail(P, 1, 1, "'%s' is an incomplete type", t->name);
  cu_commit(u);
  cu_scratch_reset(u);
  return t;
}
