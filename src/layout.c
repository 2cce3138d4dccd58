/*
 * layout.c: the C type model and the layout engine (pure C, no Lua).
 *
 * A CUniverse owns everything: two arenas (persistent and per-call
 * scratch), one hash table holding symbols (tags, typedefs, enum constants,
 * macros) and interned derived types (pointers, arrays, qualified variants,
 * function types), and an undo list for structs completed in place.  Every
 * entry carries a serial number, so a transaction rolls back by dropping the
 * entries, undo records and arena blocks newer than its mark.
 *
 * Layout follows gcc 12 on x86-64 System V (stor-layout's rules for
 * PCC_BITFIELD_TYPE_MATTERS targets): see place_bitfield() and Place for
 * the details.  tools/abi/ checks it against gcc (tests/abi_spec.lua).
 *
 * Typedefs: a typedef of a tagged struct, union or enum is that very type
 * (so a completion shows through it, and it is spelled "struct X"); any
 * other typedef is a copy spelled with the typedef's name.  An aligned
 * attribute on a typedef sets its alignment, lowering it too, as gcc does
 * (the size stays; gcc then rejects arrays of it, and so does shmlua).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctype_int.h"

/* ------------------------------------------------------------------ arena */

typedef struct Block {
  struct Block *prev;
  size_t used, cap;
} Block;

#define BLOCK_HDR ((sizeof(Block) + 15) & ~(size_t)15)
#define BLOCK_CAP 16384

typedef struct Arena {
  Block *head;
} Arena;

/* n zeroed bytes aligned to 16, or NULL when malloc fails. */
static void *arena_alloc(Arena *a, size_t n) {
  Block *b = a->head;
  void *p;
  if (n > ((size_t)1 << 40)) return NULL;
  n = (n + 15) & ~(size_t)15;
  if (n == 0) n = 16;
  if (b == NULL || b->cap - b->used < n) {
    size_t cap = n > BLOCK_CAP / 4 ? n : BLOCK_CAP;
    b = malloc(BLOCK_HDR + cap);
    if (b == NULL) return NULL;
    b->prev = a->head;
    b->used = 0;
    b->cap = cap;
    a->head = b;
  }
  p = (char *)b + BLOCK_HDR + b->used;
  b->used += n;
  memset(p, 0, n);
  return p;
}

/* Frees every block newer than `head` and rewinds `head` to `used`. */
static void arena_rewind(Arena *a, Block *head, size_t used) {
  while (a->head != head) {
    Block *b = a->head;
    a->head = b->prev;
    free(b);
  }
  if (head != NULL) head->used = used;
}

/* ---------------------------------------------------------------- symbols */

enum { NS_TAG, NS_ORD, NS_MACRO, NS_DERIVED };
enum { SK_TYPEDEF, SK_CONST };                     /* NS_ORD kinds      */
enum { SK_MACRO, SK_MACRO_FN, SK_UNDEF };          /* NS_MACRO kinds    */
enum { DK_PTR, DK_ARRAY, DK_QUAL, DK_FUNC };       /* NS_DERIVED kinds  */

typedef struct Sym {
  struct Sym *next;
  struct Sym *older;    /* the symbol added before this one (undo log)  */
  unsigned long serial;
  unsigned hash;
  int ns, kind, vtype;
  const char *name;     /* symbol name; DK_FUNC: parameter spelling  */
  size_t nlen;          /* strlen(name)                              */
  size_t len;           /* macros: body length                       */
  const char *body;     /* macros: body text                         */
  CType *type;          /* typedef target, tag, DERIVED: key's base  */
  CType *result;        /* DERIVED: the interned type                */
  long long value;      /* constant value; DERIVED: count / quals    */
} Sym;

typedef struct Undo {
  struct Undo *prev;
  unsigned long serial;
  CTypeX *t;
  CTypeX saved;
} Undo;

typedef struct Mark {
  Block *head;
  size_t used;
  unsigned long serial;
} Mark;

#define MAX_MARKS 8

struct CUniverse {
  Arena arena, scratch;
  Sym **buckets;
  Sym *newest;          /* the last symbol added                     */
  size_t nbuckets, nsyms;
  unsigned long serial;
  Undo *undo;
  Mark marks[MAX_MARKS];
  int nmarks;
  CType *base[CB_COUNT];
};

static unsigned hash_str(const char *s, size_t n, unsigned h) {
  size_t i;
  for (i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
  return h;
}

static unsigned hash_name(int ns, const char *s, size_t n) {
  return hash_str(s, n, 2166136261u ^ (unsigned)ns);
}

static unsigned hash_derived(int kind, const CType *base, long long v,
                             const char *s) {
  unsigned h = 2166136261u ^ (unsigned)(NS_DERIVED * 31 + kind);
  uintptr_t p = (uintptr_t)base;
  h = (h ^ (unsigned)(p >> 4)) * 16777619u;
  h = (h ^ (unsigned)(p >> 36)) * 16777619u;
  h = (h ^ (unsigned)v) * 16777619u;
  h = (h ^ (unsigned)((unsigned long long)v >> 32)) * 16777619u;
  if (s != NULL) h = hash_str(s, strlen(s), h);
  return h;
}

/* Doubles the bucket array when it gets crowded; on OOM keeps the old one
 * (lookups stay correct, chains just get longer). */
static void sym_grow(CUniverse *u) {
  size_t n = u->nbuckets * 2, i;
  Sym **nb;
  if (u->nsyms < u->nbuckets * 2) return;
  nb = calloc(n, sizeof *nb);
  if (nb == NULL) return;
  for (i = 0; i < u->nbuckets; i++) {
    Sym *s = u->buckets[i], *next;
    for (; s != NULL; s = next) {
      next = s->next;
      s->next = nb[s->hash & (n - 1)];
      nb[s->hash & (n - 1)] = s;
    }
  }
  free(u->buckets);
  u->buckets = nb;
  u->nbuckets = n;
}

static Sym *sym_add(CUniverse *u, int ns, int kind, unsigned hash) {
  Sym *s = cu_alloc(u, sizeof *s);
  if (s == NULL) return NULL;
  s->ns = ns;
  s->kind = kind;
  s->hash = hash;
  s->serial = u->serial++;
  s->next = u->buckets[hash & (u->nbuckets - 1)];
  u->buckets[hash & (u->nbuckets - 1)] = s;
  s->older = u->newest;
  u->newest = s;
  u->nsyms++;
  sym_grow(u);
  return s;
}

/* The newest symbol `name` of namespace ns (chains are unordered after a
 * rehash, so the highest serial wins: #undef shadows #define). */
static Sym *sym_find(CUniverse *u, int ns, const char *name, size_t n) {
  unsigned h = hash_name(ns, name, n);
  Sym *s, *best = NULL;
  for (s = u->buckets[h & (u->nbuckets - 1)]; s != NULL; s = s->next)
    if (s->hash == h && s->ns == ns && s->nlen == n &&
        memcmp(s->name, name, n) == 0 && (best == NULL || s->serial > best->serial))
      best = s;
  return best;
}

static Sym *sym_new(CUniverse *u, int ns, int kind, const char *name) {
  size_t n = strlen(name);
  Sym *s = sym_add(u, ns, kind, hash_name(ns, name, n));
  if (s == NULL) return NULL;
  s->name = cu_strndup(u, name, n);
  s->nlen = n;
  return s->name == NULL ? NULL : s;
}

static Sym *derived_find(CUniverse *u, int kind, const CType *base,
                         long long v, const char *s) {
  unsigned h = hash_derived(kind, base, v, s);
  Sym *e;
  for (e = u->buckets[h & (u->nbuckets - 1)]; e != NULL; e = e->next)
    if (e->hash == h && e->ns == NS_DERIVED && e->kind == kind &&
        e->type == base && e->value == v &&
        (s == NULL || (e->name != NULL && strcmp(e->name, s) == 0)))
      return e;
  return NULL;
}

static void derived_add(CUniverse *u, int kind, CType *base, long long v,
                        const char *s, CType *result) {
  Sym *e = sym_add(u, NS_DERIVED, kind, hash_derived(kind, base, v, s));
  if (e == NULL) return;            /* not interned: still a valid type */
  e->type = base;
  e->value = v;
  e->name = s;
  e->result = result;
}

/* ------------------------------------------------------------ universe */

void *cu_alloc(CUniverse *u, size_t n) { return arena_alloc(&u->arena, n); }
void *cu_scratch(CUniverse *u, size_t n) { return arena_alloc(&u->scratch, n); }
/* Frees the scratch arena but its first block, kept for the next call. */
void cu_scratch_reset(CUniverse *u) {
  Block *first = u->scratch.head;
  while (first != NULL && first->prev != NULL) first = first->prev;
  arena_rewind(&u->scratch, first, 0);
}

char *cu_strndup(CUniverse *u, const char *s, size_t n) {
  char *p = cu_alloc(u, n + 1);
  if (p != NULL) memcpy(p, s, n);
  return p;
}

int cu_begin(CUniverse *u) {
  Mark *m;
  if (u->nmarks == MAX_MARKS) return -1;
  m = &u->marks[u->nmarks++];
  m->head = u->arena.head;
  m->used = u->arena.head ? u->arena.head->used : 0;
  m->serial = u->serial;
  return 0;
}

/* Drops what the innermost transaction added: symbols and interned types
 * (newest first, each unlinked from its bucket), in-place completions
 * (restored from their undo records), then the arena blocks. */
void cu_rollback(CUniverse *u) {
  Mark *m;
  if (u->nmarks == 0) return;
  m = &u->marks[--u->nmarks];
  while (u->newest != NULL && u->newest->serial >= m->serial) {
    Sym *s = u->newest, **pp = &u->buckets[s->hash & (u->nbuckets - 1)];
    while (*pp != NULL && *pp != s) pp = &(*pp)->next;
    if (*pp == s) *pp = s->next;
    u->newest = s->older;
    u->nsyms--;
  }
  while (u->undo != NULL && u->undo->serial >= m->serial) {
    *u->undo->t = u->undo->saved;
    u->undo = u->undo->prev;
  }
  arena_rewind(&u->arena, m->head, m->used);
  u->serial = m->serial;
}

void cu_commit(CUniverse *u) {
  if (u->nmarks > 0) u->nmarks--;
  if (u->nmarks == 0) u->undo = NULL;   /* records stay in the arena */
}

static CTypeX *new_type(CUniverse *u, CKind kind, size_t size, size_t align) {
  CTypeX *x = cu_alloc(u, sizeof *x);
  if (x == NULL) return NULL;
  x->t.kind = kind;
  x->t.size = size;
  x->t.align = align;
  x->t.complete = 1;
  return x;
}

static const struct {
  const char *name;
  CKind kind;
  size_t size;
  int is_signed;
} base_types[CB_COUNT] = {
  {"void", CK_VOID, 0, 0},          {"_Bool", CK_BOOL, 1, 0},
  {"char", CK_INT, 1, 1},           {"signed char", CK_INT, 1, 1},
  {"unsigned char", CK_INT, 1, 0},  {"short", CK_INT, 2, 1},
  {"unsigned short", CK_INT, 2, 0}, {"int", CK_INT, 4, 1},
  {"unsigned int", CK_INT, 4, 0},   {"long", CK_INT, 8, 1},
  {"unsigned long", CK_INT, 8, 0},  {"long long", CK_INT, 8, 1},
  {"unsigned long long", CK_INT, 8, 0}, {"__int128", CK_INT, 16, 1},
  {"unsigned __int128", CK_INT, 16, 0}, {"float", CK_FLOAT, 4, 1},
  {"double", CK_FLOAT, 8, 1},       {"long double", CK_FLOAT, 16, 1},
};

/* The C text of the built-in typedefs and tags (glibc, x86-64). */
static const char builtin_src[] =
  "typedef signed char int8_t; typedef short int16_t; typedef int int32_t;"
  "typedef long int64_t; typedef unsigned char uint8_t;"
  "typedef unsigned short uint16_t; typedef unsigned int uint32_t;"
  "typedef unsigned long uint64_t;"
  "typedef signed char int_least8_t; typedef short int_least16_t;"
  "typedef int int_least32_t; typedef long int_least64_t;"
  "typedef unsigned char uint_least8_t; typedef unsigned short uint_least16_t;"
  "typedef unsigned int uint_least32_t; typedef unsigned long uint_least64_t;"
  "typedef signed char int_fast8_t; typedef long int_fast16_t;"
  "typedef long int_fast32_t; typedef long int_fast64_t;"
  "typedef unsigned char uint_fast8_t; typedef unsigned long uint_fast16_t;"
  "typedef unsigned long uint_fast32_t; typedef unsigned long uint_fast64_t;"
  "typedef long intptr_t; typedef unsigned long uintptr_t;"
  "typedef long intmax_t; typedef unsigned long uintmax_t;"
  "typedef unsigned long size_t; typedef long ssize_t; typedef long ptrdiff_t;"
  "typedef int wchar_t; typedef unsigned int wint_t;"
  "typedef unsigned short char16_t; typedef unsigned int char32_t;"
  "typedef struct { long long __max_align_ll __attribute__((__aligned__(8)));"
  "  long double __max_align_ld __attribute__((__aligned__(16))); } max_align_t;"
  "typedef _Bool bool;"
  "typedef __int128 __int128_t; typedef unsigned __int128 __uint128_t;"
  "typedef long off_t; typedef long off64_t; typedef long loff_t;"
  "typedef int pid_t; typedef unsigned int uid_t; typedef unsigned int gid_t;"
  "typedef unsigned int mode_t; typedef unsigned long ino_t;"
  "typedef unsigned long dev_t; typedef unsigned long nlink_t;"
  "typedef long time_t; typedef long clock_t; typedef long suseconds_t;"
  "typedef unsigned int useconds_t; typedef long blksize_t; typedef long blkcnt_t;"
  "typedef int key_t; typedef unsigned int id_t; typedef unsigned int socklen_t;"
  "typedef int sig_atomic_t; typedef int clockid_t;"
  "typedef union { char __size[40]; long __align; } pthread_mutex_t;"
  "typedef union { char __size[48]; long long __align; } pthread_cond_t;"
  "typedef union { char __size[56]; long __align; } pthread_rwlock_t;"
  "typedef union { char __size[32]; long __align; } pthread_barrier_t;"
  "typedef union { char __size[56]; long __align; } pthread_attr_t;"
  "typedef union { char __size[4]; int __align; } pthread_mutexattr_t;"
  "typedef union { char __size[4]; int __align; } pthread_condattr_t;"
  "typedef union { char __size[8]; long __align; } pthread_rwlockattr_t;"
  "typedef union { char __size[4]; int __align; } pthread_barrierattr_t;"
  "typedef volatile int pthread_spinlock_t; typedef int pthread_once_t;"
  "typedef unsigned int pthread_key_t; typedef unsigned long pthread_t;"
  "typedef union { char __size[32]; long __align; } sem_t;"
  "typedef _Atomic _Bool atomic_bool; typedef _Atomic char atomic_char;"
  "typedef _Atomic signed char atomic_schar;"
  "typedef _Atomic unsigned char atomic_uchar; typedef _Atomic short atomic_short;"
  "typedef _Atomic unsigned short atomic_ushort; typedef _Atomic int atomic_int;"
  "typedef _Atomic unsigned int atomic_uint; typedef _Atomic long atomic_long;"
  "typedef _Atomic unsigned long atomic_ulong;"
  "typedef _Atomic long long atomic_llong;"
  "typedef _Atomic unsigned long long atomic_ullong;"
  "typedef _Atomic char16_t atomic_char16_t;"
  "typedef _Atomic char32_t atomic_char32_t;"
  "typedef _Atomic wchar_t atomic_wchar_t;"
  "typedef _Atomic int_least8_t atomic_int_least8_t;"
  "typedef _Atomic uint_least8_t atomic_uint_least8_t;"
  "typedef _Atomic int_least16_t atomic_int_least16_t;"
  "typedef _Atomic uint_least16_t atomic_uint_least16_t;"
  "typedef _Atomic int_least32_t atomic_int_least32_t;"
  "typedef _Atomic uint_least32_t atomic_uint_least32_t;"
  "typedef _Atomic int_least64_t atomic_int_least64_t;"
  "typedef _Atomic uint_least64_t atomic_uint_least64_t;"
  "typedef _Atomic int_fast8_t atomic_int_fast8_t;"
  "typedef _Atomic uint_fast8_t atomic_uint_fast8_t;"
  "typedef _Atomic int_fast16_t atomic_int_fast16_t;"
  "typedef _Atomic uint_fast16_t atomic_uint_fast16_t;"
  "typedef _Atomic int_fast32_t atomic_int_fast32_t;"
  "typedef _Atomic uint_fast32_t atomic_uint_fast32_t;"
  "typedef _Atomic int_fast64_t atomic_int_fast64_t;"
  "typedef _Atomic uint_fast64_t atomic_uint_fast64_t;"
  "typedef _Atomic intptr_t atomic_intptr_t;"
  "typedef _Atomic uintptr_t atomic_uintptr_t;"
  "typedef _Atomic size_t atomic_size_t;"
  "typedef _Atomic ptrdiff_t atomic_ptrdiff_t;"
  "typedef _Atomic intmax_t atomic_intmax_t;"
  "typedef _Atomic uintmax_t atomic_uintmax_t;"
  "typedef _Atomic struct { unsigned char __val; } atomic_flag;"
  "struct timespec { time_t tv_sec; long tv_nsec; };"
  "struct timeval { time_t tv_sec; suseconds_t tv_usec; };"
  "\n#define __x86_64__ 1\n#define __x86_64 1\n#define __amd64__ 1\n"
  "#define __linux__ 1\n#define __linux 1\n#define __unix__ 1\n"
  "#define __GNUC__ 12\n#define __GNUC_MINOR__ 2\n#define __LP64__ 1\n"
  "#define _LP64 1\n#define __STDC__ 1\n#define __STDC_VERSION__ 201710L\n"
  "#define __CHAR_BIT__ 8\n#define __SIZEOF_POINTER__ 8\n"
  "#define __SIZEOF_LONG__ 8\n#define __SIZEOF_INT__ 4\n"
  "#define __SIZEOF_SHORT__ 2\n#define __SIZEOF_LONG_LONG__ 8\n"
  "#define __SIZEOF_LONG_DOUBLE__ 16\n#define __SIZEOF_INT128__ 16\n"
  "#define __ORDER_LITTLE_ENDIAN__ 1234\n#define __ORDER_BIG_ENDIAN__ 4321\n"
  "#define __BYTE_ORDER__ __ORDER_LITTLE_ENDIAN__\n"
  "#define __BIGGEST_ALIGNMENT__ 16\n#define true 1\n#define false 0\n"
  "#define __bool_true_false_are_defined 1\n";

CUniverse *cu_new(void) {
  CUniverse *u = calloc(1, sizeof *u);
  char err[256];
  int i;
  if (u == NULL) return NULL;
  u->nbuckets = 512;
  u->buckets = calloc(u->nbuckets, sizeof *u->buckets);
  if (u->buckets == NULL) {
    free(u);
    return NULL;
  }
  for (i = 0; i < CB_COUNT; i++) {
    size_t sz = base_types[i].size;
    CTypeX *x = new_type(u, base_types[i].kind, sz, sz ? sz : 1);
    if (x == NULL) goto fail;
    x->t.name = base_types[i].name;
    x->t.is_signed = base_types[i].is_signed;
    x->t.complete = i != CB_VOID;
    x->named = 1;
    u->base[i] = &x->t;
  }
  if (cu_parse(u, builtin_src, sizeof builtin_src - 1, err, sizeof err) != 0)
    goto fail;
  return u;
fail:
  cu_free(u);
  return NULL;
}

void cu_free(CUniverse *u) {
  if (u == NULL) return;
  arena_rewind(&u->arena, NULL, 0);
  arena_rewind(&u->scratch, NULL, 0);
  free(u->buckets);
  free(u);
}

CType *cu_base(CUniverse *u, CBase b) {
  return (unsigned)b < CB_COUNT ? u->base[b] : NULL;
}

/* -------------------------------------------------------------- errors */

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  if (err == NULL || errlen == 0) return;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

#define OOM(err, errlen) (seterr(err, errlen, "out of memory"), NULL)

/* ------------------------------------------------------------ spelling */

typedef struct Buf {
  char *p;
  size_t n, cap;
  int oom;
} Buf;

static void buf_insert(Buf *b, size_t at, const char *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = (b->n + n + 1) * 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
      b->oom = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memmove(b->p + at + n, b->p + at, b->n - at);
  memcpy(b->p + at, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void buf_puts(Buf *b, size_t at, const char *s) {
  buf_insert(b, at, s, strlen(s));
}

static int is_word(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_';
}

static void quals_str(char *q, size_t qn, int quals) {
  snprintf(q, qn, "%s%s%s%s", (quals & CQ_CONST) ? "const " : "",
           (quals & CQ_VOLATILE) ? "volatile " : "",
           (quals & CQ_RESTRICT) ? "restrict " : "",
           (quals & CQ_ATOMIC) ? "_Atomic " : "");
}

/* How C writes type t: walks the derived types (pointers, arrays,
 * functions) from the outside in, building the abstract declarator around
 * the first named type: "int (*)[3]", "void (*[4])(int)", "char *const".
 * Returns a persistent string, NULL on OOM. */
static const char *spell(CUniverse *u, const CType *t) {
  Buf b = {NULL, 0, 0, 0};
  const char *res;
  buf_puts(&b, 0, "");
  while (t != NULL && !CTX(t)->named) {
    if (t->kind == CK_POINTER) {
      char q[64];
      quals_str(q, sizeof q, CTX(t)->quals);
      if (q[0] != 0) q[strlen(q) - 1] = 0;           /* "*const" */
      if (q[0] != 0 && b.n > 0 && !b.oom && (is_word(b.p[0]) || b.p[0] == '*'))
        buf_puts(&b, 0, " ");
      buf_puts(&b, 0, q);
      buf_puts(&b, 0, "*");
    } else if (t->kind == CK_ARRAY || t->kind == CK_FUNC) {
      char n[32];
      if (b.n > 0 && !b.oom && b.p[0] == '*') {
        buf_puts(&b, 0, "(");
        buf_puts(&b, b.n, ")");
      }
      if (t->kind == CK_FUNC) {
        buf_puts(&b, b.n, CTX(t)->params ? CTX(t)->params : "()");
      } else {
        if (t->flexible) snprintf(n, sizeof n, "[]");
        else snprintf(n, sizeof n, "[%zu]", t->count);
        buf_puts(&b, b.n, n);
      }
    } else {
      break;
    }
    t = t->elem;
  }
  if (t == NULL) {
    free(b.p);
    return NULL;
  }
  if (b.n > 0 && !b.oom && b.p[0] != '[') buf_puts(&b, 0, " ");
  buf_puts(&b, 0, t->name);
  res = b.oom ? NULL : cu_strndup(u, b.p, b.n);
  free(b.p);
  return res;
}

/* ------------------------------------------------------- derived types */

CType *cu_pointer_to(CUniverse *u, CType *t) {
  Sym *e;
  CTypeX *x;
  if (u == NULL || t == NULL) return NULL;
  if ((e = derived_find(u, DK_PTR, t, 0, NULL)) != NULL) return e->result;
  if ((x = new_type(u, CK_POINTER, 8, 8)) == NULL) return NULL;
  x->t.elem = t;
  x->t.name = spell(u, &x->t);
  if (x->t.name == NULL) return NULL;
  derived_add(u, DK_PTR, t, 0, NULL, &x->t);
  return &x->t;
}

static size_t atomic_align(size_t size, size_t align) {
  if ((size == 1 || size == 2 || size == 4 || size == 8 || size == 16) &&
      size > align)
    return size;
  return align;
}

/* A named type spelled with qualifiers in front: "const uint32_t". */
static const char *qual_name(CUniverse *u, int quals, const char *name) {
  char q[64];
  size_t a, b;
  char *s;
  quals_str(q, sizeof q, quals);
  a = strlen(q);
  b = strlen(name);
  if ((s = cu_alloc(u, a + b + 1)) == NULL) return NULL;
  memcpy(s, q, a);
  memcpy(s + a, name, b);
  return s;
}

CType *cu_qualified(CUniverse *u, CType *t, int quals, char *err,
                    size_t errlen) {
  CTypeX *x, *src;
  CType *base;
  Sym *e;
  if (t == NULL) return NULL;
  quals |= CTX(t)->quals;
  base = CTX(t)->unqual ? CTX(t)->unqual : t;
  if (quals == 0) return base;
  if (t->kind == CK_ARRAY) {           /* qualifiers go to the elements */
    CType *el;
    if (quals & CQ_ATOMIC) {
      seterr(err, errlen, "_Atomic applied to an array type");
      return NULL;
    }
    el = cu_qualified(u, t->elem, quals, err, errlen);
    return el ? cu_array_of(u, el, t->count, t->flexible, err, errlen) : NULL;
  }
  if (t->kind == CK_FUNC) {
    if (quals & CQ_ATOMIC) {
      seterr(err, errlen, "_Atomic applied to a function type");
      return NULL;
    }
    return base;
  }
  if ((t->kind == CK_STRUCT || t->kind == CK_UNION || t->kind == CK_ENUM) &&
      !t->complete)
    return base;     /* an incomplete type stays one object, to complete */
  if (quals == CTX(base)->quals) return base;     /* a qualified typedef */
  if ((e = derived_find(u, DK_QUAL, base, quals, NULL)) != NULL)
    return e->result;
  src = CTX(base);
  if ((x = cu_alloc(u, sizeof *x)) == NULL) return OOM(err, errlen);
  *x = *src;
  x->quals = quals;
  x->unqual = base;
  x->origin = NULL;
  x->t.is_const = (quals & CQ_CONST) != 0;
  x->t.is_volatile = (quals & CQ_VOLATILE) != 0;
  x->t.is_atomic = (quals & CQ_ATOMIC) != 0;
  if (quals & CQ_ATOMIC) x->t.align = atomic_align(x->t.size, x->t.align);
  if (src->named) {
    x->t.name = qual_name(u, quals, src->t.name);
  } else {
    x->t.name = spell(u, &x->t);
  }
  if (x->t.name == NULL) return OOM(err, errlen);
  derived_add(u, DK_QUAL, base, quals, NULL, &x->t);
  return &x->t;
}

/* The type without typedef names, attributes or qualifiers. */
static CType *main_variant(CType *t) {
  for (;;) {
    if (CTX(t)->origin != NULL) t = CTX(t)->origin;
    else if (CTX(t)->unqual != NULL) t = CTX(t)->unqual;
    else return t;
  }
}

/* Whether t's qualifiers come (partly) from a typedef's own definition. */
static int typedef_quals(const CType *t) {
  for (; t != NULL; t = CTX(t)->unqual)
    if (CTX(t)->origin != NULL) return CTX(t)->quals != 0;
  return 0;
}

CType *cu_array_of(CUniverse *u, CType *elem, size_t count, int flexible,
                   char *err, size_t errlen) {
  CTypeX *x;
  Sym *e;
  long long key = flexible ? -1 : (long long)count;
  if (elem == NULL) return NULL;
  /* gcc builds an array of a qualified typedef from the typedef's main
   * variant, losing an aligned attribute given to the typedef. */
  if (typedef_quals(elem)) {
    CType *mv = cu_qualified(u, main_variant(elem), CTX(elem)->quals, err, errlen);
    if (mv == NULL) return NULL;
    if (mv->align != elem->align) elem = mv;
  }
  if (elem->kind == CK_FUNC || elem->kind == CK_VOID || !elem->complete ||
      (elem->kind == CK_ARRAY && elem->flexible)) {
    seterr(err, errlen, "array of %s '%s'",
           elem->kind == CK_FUNC ? "functions" : "incomplete type", elem->name);
    return NULL;
  }
  if (elem->size % elem->align != 0) {
    seterr(err, errlen, "alignment of array elements (%zu) is greater than "
           "their size (%zu): '%s'", elem->align, elem->size, elem->name);
    return NULL;
  }
  if (flexible) count = 0;
  if (count > CU_MAX_SIZE || (elem->size != 0 && count > CU_MAX_SIZE / elem->size)) {
    seterr(err, errlen, "array of %s too large", elem->name);
    return NULL;
  }
  if ((e = derived_find(u, DK_ARRAY, elem, key, NULL)) != NULL) return e->result;
  if ((x = new_type(u, CK_ARRAY, elem->size * count, elem->align)) == NULL)
    return OOM(err, errlen);
  x->t.elem = elem;
  x->t.count = count;
  x->t.flexible = flexible;
  if ((x->t.name = spell(u, &x->t)) == NULL) return OOM(err, errlen);
  derived_add(u, DK_ARRAY, elem, key, NULL, &x->t);
  return &x->t;
}

CType *cu_function(CUniverse *u, CType *ret, CType *const *params, size_t n,
                   int variadic, int unprototyped, char *err, size_t errlen) {
  Buf b = {NULL, 0, 0, 0};
  CTypeX *x;
  CField *f;
  const char *ps;
  size_t i;
  Sym *e;
  if (ret == NULL) return NULL;
  if (ret->kind == CK_ARRAY || ret->kind == CK_FUNC) {
    seterr(err, errlen, "function returning %s",
           ret->kind == CK_ARRAY ? "an array" : "a function");
    return NULL;
  }
  buf_puts(&b, 0, "(");
  for (i = 0; i < n; i++) {
    if (i > 0) buf_puts(&b, b.n, ", ");
    buf_puts(&b, b.n, params[i]->name);
  }
  if (variadic) buf_puts(&b, b.n, n > 0 ? ", ..." : "...");
  if (n == 0 && !variadic && !unprototyped) buf_puts(&b, b.n, "void");
  buf_puts(&b, b.n, ")");
  if (b.oom) {
    free(b.p);
    return OOM(err, errlen);
  }
  e = derived_find(u, DK_FUNC, ret, 0, b.p);
  if (e != NULL) {
    free(b.p);
    return e->result;
  }
  ps = cu_strndup(u, b.p, b.n);
  free(b.p);
  if (ps == NULL || (x = new_type(u, CK_FUNC, 0, 1)) == NULL)
    return OOM(err, errlen);
  x->params = ps;
  x->t.elem = ret;
  x->t.flexible = variadic;
  if (n > 0) {
    if ((f = cu_alloc(u, n * sizeof *f)) == NULL) return OOM(err, errlen);
    for (i = 0; i < n; i++) f[i].type = params[i];
    x->t.fields = f;
    x->t.nfields = n;
  }
  if ((x->t.name = spell(u, &x->t)) == NULL) return OOM(err, errlen);
  derived_add(u, DK_FUNC, ret, 0, ps, &x->t);
  return &x->t;
}

/* ---------------------------------------------------------- comparison */

static int same_str(const char *a, const char *b) {
  if (a == NULL || b == NULL) return a == b;
  return strcmp(a, b) == 0;
}

/*
 * Whether a and b describe the same layout (redefinitions must): same
 * kind, size, alignment, signedness, elements, fields and constants.
 * Qualifiers other than _Atomic (which shows in the alignment) and the
 * spelling of scalar types do not count.  Behind pointers, tagged records
 * compare by tag, which also stops self-referential structs.
 */
int cu_same_type(const CType *a, const CType *b, int depth) {
  size_t i;
  if (a == b) return 1;
  if (a == NULL || b == NULL || a->kind != b->kind) return 0;
  if (depth > 16) return 1;
  switch (a->kind) {
  case CK_VOID:
    return 1;
  case CK_BOOL: case CK_INT: case CK_FLOAT:
    return a->size == b->size && a->align == b->align &&
           a->is_signed == b->is_signed;
  case CK_POINTER:
    if (a->align != b->align) return 0;
    if (a->elem->kind == b->elem->kind && a->elem->tag != NULL &&
        (a->elem->kind == CK_STRUCT || a->elem->kind == CK_UNION ||
         a->elem->kind == CK_ENUM))
      return same_str(a->elem->tag, b->elem->tag);
    return cu_same_type(a->elem, b->elem, depth + 1);
  case CK_ARRAY:
    return a->count == b->count && a->flexible == b->flexible &&
           a->align == b->align && cu_same_type(a->elem, b->elem, depth + 1);
  case CK_FUNC:
    return same_str(CTX(a)->params, CTX(b)->params) &&
           cu_same_type(a->elem, b->elem, depth + 1);
  case CK_ENUM:
    if (a->size != b->size || a->align != b->align ||
        a->is_signed != b->is_signed || a->nconsts != b->nconsts ||
        a->complete != b->complete)
      return 0;
    for (i = 0; i < a->nconsts; i++)
      if (!same_str(a->consts[i].name, b->consts[i].name) ||
          a->consts[i].value != b->consts[i].value)
        return 0;
    return 1;
  case CK_STRUCT: case CK_UNION:
    if (a->size != b->size || a->align != b->align ||
        a->nfields != b->nfields || a->complete != b->complete ||
        !same_str(a->tag, b->tag))
      return 0;
    for (i = 0; i < a->nfields; i++) {
      const CField *x = &a->fields[i], *y = &b->fields[i];
      if (!same_str(x->name, y->name) || x->offset != y->offset ||
          x->bit_offset != y->bit_offset || x->bit_width != y->bit_width ||
          !cu_same_type(x->type, y->type, depth + 1))
        return 0;
    }
    return 1;
  }
  return 0;
}

/* Describes where records a (old) and b (new) first differ. */
static void record_diff(char *out, size_t n, const CType *a, const CType *b) {
  size_t i;
  for (i = 0; i < a->nfields && i < b->nfields; i++) {
    const CField *x = &a->fields[i], *y = &b->fields[i];
    if (!same_str(x->name, y->name)) {
      snprintf(out, n, "member %zu: '%s' vs '%s'", i + 1,
               x->name ? x->name : "(anonymous)",
               y->name ? y->name : "(anonymous)");
      return;
    }
    if (x->offset != y->offset || x->bit_offset != y->bit_offset ||
        x->bit_width != y->bit_width ||
        !cu_same_type(x->type, y->type, 1)) {
      char wa[24] = "", wb[24] = "";
      if (x->bit_width) snprintf(wa, sizeof wa, ":%u", x->bit_width);
      if (y->bit_width) snprintf(wb, sizeof wb, ":%u", y->bit_width);
      snprintf(out, n, "field '%s': %s%s at offset %zu vs %s%s at offset %zu",
               x->name ? x->name : "(anonymous)", x->type->name, wa,
               x->offset, y->type->name, wb, y->offset);
      return;
    }
  }
  if (a->nfields != b->nfields)
    snprintf(out, n, "%zu members vs %zu", a->nfields, b->nfields);
  else
    snprintf(out, n, "size %zu, alignment %zu vs size %zu, alignment %zu",
             a->size, a->align, b->size, b->align);
}

/* ------------------------------------------------------------- records */

static size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

static int is_pow2(size_t a) { return a != 0 && (a & (a - 1)) == 0; }

static const char *kind_word(CKind k) {
  return k == CK_STRUCT ? "struct" : k == CK_UNION ? "union" : "enum";
}

/* "struct Head", "union <anonymous>": a persistent string. */
static const char *tag_name(CUniverse *u, CKind k, const char *tag) {
  char buf[32];
  const char *w = kind_word(k);
  size_t n;
  char *s;
  if (tag == NULL) {
    snprintf(buf, sizeof buf, "%s <anonymous>", w);
    return cu_strndup(u, buf, strlen(buf));
  }
  n = strlen(w) + 1 + strlen(tag);
  if ((s = cu_alloc(u, n + 1)) == NULL) return NULL;
  snprintf(s, n + 1, "%s %s", w, tag);
  return s;
}

CType *cu_find_tag(CUniverse *u, const char *tag) {
  Sym *s = sym_find(u, NS_TAG, tag, strlen(tag));
  return s ? s->type : NULL;
}

CType *cu_declare_tag(CUniverse *u, CKind kind, const char *tag) {
  CTypeX *x = new_type(u, kind, 0, 1);
  Sym *s;
  if (x == NULL) return NULL;
  x->t.complete = 0;
  x->named = 1;
  if (kind == CK_ENUM) {   /* an enum's size is known before its body */
    x->t.size = 4;
    x->t.align = 4;
  }
  x->t.tag = tag ? cu_strndup(u, tag, strlen(tag)) : NULL;
  x->t.name = tag_name(u, kind, tag);
  if ((tag && x->t.tag == NULL) || x->t.name == NULL) return NULL;
  if (tag != NULL) {
    if ((s = sym_new(u, NS_TAG, 0, tag)) == NULL) return NULL;
    s->type = &x->t;
  }
  return &x->t;
}

/*
 * Layout state while placing the fields of one record.  A struct position
 * is kept the way gcc's record_layout_info keeps it: a byte offset (always
 * a multiple of offset_align, 16 bytes or the record's aligned attribute)
 * plus a bit position, normalized below offset_align after each field.
 * The split shows in one rule (see place_bitfield), so it is modelled.
 */
typedef struct Place {
  int is_union;
  unsigned long long off;      /* struct: byte offset                      */
  unsigned long long bp;       /* struct: bit position after off           */
  unsigned long long oa;       /* gcc's offset_align, in bits              */
  size_t size;                 /* union: largest member in bytes           */
  size_t align;                /* record alignment so far, bytes           */
} Place;

static size_t low_bit(unsigned long long v) {
  return v == 0 ? 0 : (size_t)(v & (~v + 1));
}

static unsigned long long pl_total(const Place *pl) { return pl->off * 8 + pl->bp; }

/* gcc's known_align: what the current position is aligned to (0: at 0). */
static unsigned long long pl_known(const Place *pl) {
  if (pl->bp != 0) return low_bit(pl->bp);
  return pl->off != 0 ? 8 * (unsigned long long)low_bit(pl->off) : 0;
}

static void pl_normalize(Place *pl) {
  if (pl->bp >= pl->oa) {
    pl->off += pl->bp / pl->oa * (pl->oa / 8);
    pl->bp %= pl->oa;
  }
}

/* Pads the position to `desired` bits as place_field does. */
static void pl_align(Place *pl, unsigned long long desired) {
  unsigned long long known = pl_known(pl);
  if (known == 0 || known >= desired) return;
  if (desired < pl->oa) {
    pl->bp = round_up(pl->bp, desired);
  } else {
    pl->off += (pl->bp + 7) / 8;
    pl->bp = 0;
    pl->off = round_up(pl->off, desired / 8);
  }
}

/* Whether t takes an integer machine mode: gcc's bit-fields of such types
 * whose width equals a mode size may take that mode's alignment. */
static int int_mode(const CType *t) {
  return t->kind == CK_INT || t->kind == CK_ENUM || t->kind == CK_BOOL;
}

/*
 * Places a bit-field of type t and width w (> 0), as gcc's place_field
 * does on x86-64: an explicit alignment (aligned attribute on the member)
 * is honoured; outside packed records a field that would straddle more
 * naturally aligned units of its type than the type itself has moves to the
 * next unit; only named bit-fields raise the record's alignment, by their
 * type's alignment (1 when packed).  Returns the bit position.
 */
static unsigned long long place_bitfield(Place *pl, const CFieldSpec *f,
                                         int packed) {
  const CType *t = f->type;
  size_t desired = f->align_as ? f->align_as : 0;  /* bytes; 0: one bit */
  unsigned long long pos = pl->is_union ? 0 : pl_total(pl);
  unsigned w = (unsigned)f->bit_width;
  int ordinary = 0;
  /* gcc turns a bit-field whose width is a mode size into an ordinary
   * field of that mode when the position is already aligned for it: it
   * then takes the mode's alignment and skips the straddling rule. */
  if (int_mode(t) && (w == 8 || w == 16 || w == 32 || w == 64 || w == 128)) {
    size_t xalign = w / 8;
    if (!(xalign > 1 && packed) && (pos == 0 || low_bit(pos) >= xalign * 8)) {
      ordinary = 1;
      if (xalign > desired) desired = xalign;
    }
  }
  if (f->name != NULL) {
    size_t ta = packed ? 1 : t->align;
    if (desired > pl->align) pl->align = desired;
    if (ta > pl->align) pl->align = ta;
  }
  if (pl->is_union) {
    size_t bytes = (w + 7) / 8;
    if (bytes > pl->size) pl->size = bytes;
    return 0;
  }
  if (desired) pl_align(pl, (unsigned long long)desired * 8);
  if (!packed && !ordinary) {
    unsigned long long ta = t->align * 8, off = pl_total(pl) % ta;
    /* gcc rounds only the bit part of the position here: for a type
     * aligned beyond offset_align the result need not be aligned. */
    if ((off + w + ta - 1) / ta > t->size * 8 / ta) pl->bp = round_up(pl->bp, ta);
  }
  pl_normalize(pl);
  pos = pl_total(pl);
  pl->bp += w;
  pl_normalize(pl);
  return pos;
}

/* A zero-width bit-field: aligns what follows to its type, takes no room
 * and leaves the record's alignment alone. */
static void place_zero_width(Place *pl, const CFieldSpec *f) {
  size_t a = f->type->align > f->align_as ? f->type->align : f->align_as;
  if (pl->is_union) return;
  pl_align(pl, (unsigned long long)a * 8);
  pl_normalize(pl);
}

/* Places an ordinary member; returns its bit position (multiple of 8). */
static unsigned long long place_member(Place *pl, const CFieldSpec *f,
                                       int packed) {
  const CType *t = f->type;
  size_t a;
  unsigned long long pos;
  if (packed) a = f->align_as ? f->align_as : 1;
  else a = f->align_as > t->align ? f->align_as : t->align;
  if (a > pl->align) pl->align = a;
  if (pl->is_union) {
    if (t->size > pl->size) pl->size = t->size;
    return 0;
  }
  pl_align(pl, (unsigned long long)a * 8);
  pl_normalize(pl);
  pos = pl_total(pl);
  pl->bp += (unsigned long long)t->size * 8;
  pl_normalize(pl);
  return pos;
}

/* Checks a member spec before placing it; 0 or -1 with err set. */
int cu_check_member(const CFieldSpec *f, size_t i, size_t n, int is_union,
                        char *err, size_t errlen) {
  const CType *t = f->type;
  const char *nm = f->name ? f->name : "(anonymous)";
  if (t == NULL) {
    seterr(err, errlen, "member '%s' has no type", nm);
    return -1;
  }
  if (f->align_as != 0 && (!is_pow2(f->align_as) || f->align_as > CU_MAX_ALIGN)) {
    seterr(err, errlen, "alignment %zu of '%s' is not a power of 2", f->align_as, nm);
    return -1;
  }
  if (f->bit_width >= 0) {
    if (t->kind != CK_INT && t->kind != CK_BOOL && t->kind != CK_ENUM) {
      seterr(err, errlen, "bit-field '%s' has invalid type '%s'", nm, t->name);
      return -1;
    }
    if (!t->complete) {
      seterr(err, errlen, "bit-field '%s' has incomplete type '%s'", nm, t->name);
      return -1;
    }
    if ((unsigned long long)f->bit_width >
        (t->kind == CK_BOOL ? 1 : (unsigned long long)t->size * 8)) {
      seterr(err, errlen, "width of '%s' (%d) exceeds its type '%s'", nm,
             f->bit_width, t->name);
      return -1;
    }
    if (f->bit_width == 0 && f->name != NULL) {
      seterr(err, errlen, "zero width for bit-field '%s'", nm);
      return -1;
    }
    return 0;
  }
  if (t->kind == CK_FUNC || t->kind == CK_VOID) {
    seterr(err, errlen, "member '%s' has %s type '%s'", nm,
           t->kind == CK_FUNC ? "function" : "void", t->name);
    return -1;
  }
  if (t->kind == CK_ARRAY && t->flexible) {
    if (is_union || i + 1 != n) {
      seterr(err, errlen, "flexible array member '%s' %s", nm,
             is_union ? "in a union" : "not at end of struct");
      return -1;
    }
    if (n == 1) {
      seterr(err, errlen, "flexible array member '%s' in a struct with no "
             "named members", nm);
      return -1;
    }
    return 0;
  }
  if (!t->complete) {
    seterr(err, errlen, "member '%s' has incomplete type '%s'", nm, t->name);
    return -1;
  }
  if (f->name == NULL && t->kind != CK_STRUCT && t->kind != CK_UNION) {
    seterr(err, errlen, "unnamed member of type '%s'", t->name);
    return -1;
  }
  return 0;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Collects the member names of rec, anonymous members looked through. */
static size_t collect_names(const CField *f, size_t n, const char **out,
                            size_t k, int depth) {
  size_t i;
  for (i = 0; i < n; i++) {
    if (f[i].name != NULL) out[k++] = f[i].name;
    else if (depth < 64)
      k = collect_names(f[i].type->fields, f[i].type->nfields, out, k, depth + 1);
  }
  return k;
}

static size_t count_names(const CField *f, size_t n, int depth) {
  size_t i, k = 0;
  for (i = 0; i < n; i++) {
    if (f[i].name != NULL) k++;
    else if (depth < 64)
      k += count_names(f[i].type->fields, f[i].type->nfields, depth + 1);
  }
  return k;
}

/* 0, or -1 with err naming the first member declared twice. */
static int check_duplicates(CUniverse *u, const CField *f, size_t n,
                            char *err, size_t errlen) {
  size_t k = count_names(f, n, 0), i;
  const char **names;
  if (k < 2) return 0;
  if ((names = cu_scratch(u, k * sizeof *names)) == NULL) {
    seterr(err, errlen, "out of memory");
    return -1;
  }
  collect_names(f, n, names, 0, 0);
  qsort(names, k, sizeof *names, cmp_names);
  for (i = 1; i < k; i++)
    if (strcmp(names[i - 1], names[i]) == 0) {
      seterr(err, errlen, "duplicate member '%s'", names[i]);
      return -1;
    }
  return 0;
}

/* Lays out the fields of a record into x (a fresh or incomplete type). */
static int layout_record(CUniverse *u, CTypeX *x, const CFieldSpec *fs,
                         size_t n, int packed, size_t align_as, char *err,
                         size_t errlen) {
  Place pl;
  CField *out = NULL;
  size_t i, k = 0;
  int is_union = x->t.kind == CK_UNION;
  memset(&pl, 0, sizeof pl);
  pl.is_union = is_union;
  pl.align = 1;
  pl.oa = align_as * 8 > 128 ? align_as * 8 : 128;
  if (align_as != 0 && (!is_pow2(align_as) || align_as > CU_MAX_ALIGN)) {
    seterr(err, errlen, "requested alignment %zu is not a power of 2", align_as);
    return -1;
  }
  if (n > 0 && (out = cu_alloc(u, n * sizeof *out)) == NULL) {
    seterr(err, errlen, "out of memory");
    return -1;
  }
  for (i = 0; i < n; i++) {
    const CFieldSpec *f = &fs[i];
    int fp = packed || f->packed;
    unsigned long long pos;
    if (cu_check_member(f, i, n, is_union, err, errlen) != 0) return -1;
    if (f->bit_width == 0) {
      place_zero_width(&pl, f);
      continue;
    }
    pos = f->bit_width > 0 ? place_bitfield(&pl, f, fp) : place_member(&pl, f, fp);
    if (pl.off > CU_MAX_SIZE || pl.size > CU_MAX_SIZE) {
      seterr(err, errlen, "%s too large", x->t.name);
      return -1;
    }
    if (f->bit_width > 0 && f->name == NULL) continue;  /* padding only */
    out[k].name = f->name ? cu_strndup(u, f->name, strlen(f->name)) : NULL;
    if (f->name != NULL && out[k].name == NULL) {
      seterr(err, errlen, "out of memory");
      return -1;
    }
    out[k].type = f->type;
    out[k].offset = (size_t)(pos / 8);
    if (f->bit_width > 0) {
      out[k].bit_offset = (unsigned)(pos % 8);
      out[k].bit_width = (unsigned)f->bit_width;
    }
    k++;
  }
  if (check_duplicates(u, out, k, err, errlen) != 0) return -1;
  if (align_as > pl.align) pl.align = align_as;
  x->t.fields = out;
  x->t.nfields = k;
  x->t.align = pl.align;
  x->t.size = round_up(is_union ? pl.size : (size_t)((pl_total(&pl) + 7) / 8), pl.align);
  x->t.complete = 1;
  return 0;
}

static CType *define_record(CUniverse *u, int is_union, const char *tag,
                            const CFieldSpec *fields, size_t n, int packed,
                            size_t align_as, char *err, size_t errlen) {
  CKind kind = is_union ? CK_UNION : CK_STRUCT;
  CType *old = tag ? cu_find_tag(u, tag) : NULL;
  CTypeX *x;
  if (err != NULL && errlen > 0) err[0] = 0;
  if (old != NULL && old->kind != kind) {
    seterr(err, errlen, "'%s' defined as wrong kind of tag (%s)", tag,
           old->name);
    return NULL;
  }
  if (old != NULL && !old->complete) {       /* complete it in place */
    Undo *un = cu_alloc(u, sizeof *un);
    if (un == NULL) return OOM(err, errlen);
    un->t = CTX(old);
    un->saved = *CTX(old);
    un->serial = u->serial++;
    un->prev = u->undo;
    u->undo = un;
    if (layout_record(u, CTX(old), fields, n, packed, align_as, err, errlen)) {
      *CTX(old) = un->saved;
      return NULL;
    }
    return old;
  }
  if ((x = new_type(u, kind, 0, 1)) == NULL) return OOM(err, errlen);
  x->named = 1;
  x->t.tag = tag ? cu_strndup(u, tag, strlen(tag)) : NULL;
  x->t.name = tag_name(u, kind, tag);
  if (x->t.name == NULL || (tag && x->t.tag == NULL)) return OOM(err, errlen);
  if (layout_record(u, x, fields, n, packed, align_as, err, errlen) != 0)
    return NULL;
  if (old != NULL) {
    if (cu_same_type(old, &x->t, 0)) return old;
    {
      char d[512];
      record_diff(d, sizeof d, old, &x->t);
      seterr(err, errlen, "conflicting redefinition of %s: %s", old->name, d);
    }
    return NULL;
  }
  if (tag != NULL) {
    Sym *s = sym_new(u, NS_TAG, 0, tag);
    if (s == NULL) return OOM(err, errlen);
    s->type = &x->t;
  }
  return &x->t;
}

CType *cu_define_record(CUniverse *u, int is_union, const char *tag,
                        const CFieldSpec *fields, size_t n, int packed,
                        size_t align_as, char *err, size_t errlen) {
  CType *t;
  if (u == NULL || (fields == NULL && n > 0)) {
    seterr(err, errlen, "no universe or fields");
    return NULL;
  }
  /* its own transaction, so that a failure leaves no allocation behind */
  if (cu_begin(u) != 0) {
    seterr(err, errlen, "nested too deeply");
    return NULL;
  }
  t = define_record(u, is_union, tag, fields, n, packed, align_as, err, errlen);
  if (t != NULL) cu_commit(u);
  else cu_rollback(u);
  if (u->nmarks == 0) cu_scratch_reset(u);    /* not inside a parse */
  return t;
}

const CField *ct_field(const CType *rec, const char *name, size_t *offset) {
  size_t i;
  if (rec == NULL || name == NULL ||
      (rec->kind != CK_STRUCT && rec->kind != CK_UNION))
    return NULL;
  for (i = 0; i < rec->nfields; i++) {
    const CField *f = &rec->fields[i];
    if (f->name != NULL) {
      if (strcmp(f->name, name) == 0) {
        if (offset) *offset = f->offset;
        return f;
      }
    } else {
      size_t sub;
      const CField *g = ct_field(f->type, name, &sub);
      if (g != NULL) {
        if (offset) *offset = f->offset + sub;
        return g;
      }
    }
  }
  return NULL;
}

/* --------------------------------------------------------------- enums */

int cu_find_const(CUniverse *u, const char *name, long long *v, int *vtype) {
  Sym *s = sym_find(u, NS_ORD, name, strlen(name));
  if (s == NULL || s->kind != SK_CONST) return 0;
  if (v) *v = s->value;
  if (vtype) *vtype = s->vtype;
  return 1;
}

int cu_enum_value(CUniverse *u, const char *name, long long *value) {
  if (u == NULL || name == NULL) return 0;
  return cu_find_const(u, name, value, NULL);
}

int cu_add_const(CUniverse *u, const char *name, long long v, int vtype,
                 char *err, size_t errlen) {
  Sym *s = sym_find(u, NS_ORD, name, strlen(name));
  if (s != NULL) {
    if (s->kind != SK_CONST) {
      seterr(err, errlen, "'%s' redeclared as a different kind of symbol", name);
      return -1;
    }
    if (s->value != v) {
      seterr(err, errlen, "conflicting redefinition of enumerator '%s': %lld vs %lld",
             name, s->value, v);
      return -1;
    }
  }
  if ((s = sym_new(u, NS_ORD, SK_CONST, name)) == NULL) {
    seterr(err, errlen, "out of memory");
    return -1;
  }
  s->value = v;
  s->vtype = vtype;
  return 0;
}

/* gcc's choice for an enum: int-sized unless a value needs 64 bits
 * (unsigned when no value is negative); packed: the smallest that fits. */
static void enum_size(const CEnumConst *c, size_t n, int packed, size_t *size,
                      int *is_signed) {
  long long lo = 0, hi = 0;
  size_t i, s;
  int neg;
  for (i = 0; i < n; i++) {
    if (c[i].value < lo) lo = c[i].value;
    if (c[i].value > hi) hi = c[i].value;
  }
  neg = lo < 0;
  if (packed) {
    if (neg ? (lo >= -128 && hi <= 127) : hi <= 255) s = 1;
    else if (neg ? (lo >= -32768 && hi <= 32767) : hi <= 65535) s = 2;
    else if (neg ? (lo >= INT32_MIN && hi <= INT32_MAX) : hi <= (long long)UINT32_MAX) s = 4;
    else s = 8;
  } else {
    if (neg ? (lo >= INT32_MIN && hi <= INT32_MAX) : hi <= (long long)UINT32_MAX) s = 4;
    else s = 8;
  }
  *size = s;
  *is_signed = neg;
}

CType *cu_define_enum(CUniverse *u, const char *tag, const CEnumConst *c,
                      size_t n, int packed, char *err, size_t errlen) {
  CType *old = tag ? cu_find_tag(u, tag) : NULL;
  CTypeX *x;
  CEnumConst *cc = NULL;
  size_t i;
  if (old != NULL && old->kind != CK_ENUM) {
    seterr(err, errlen, "'%s' defined as wrong kind of tag (%s)", tag, old->name);
    return NULL;
  }
  if ((x = new_type(u, CK_ENUM, 4, 4)) == NULL) return OOM(err, errlen);
  if (n > 0 && (cc = cu_alloc(u, n * sizeof *cc)) == NULL) return OOM(err, errlen);
  for (i = 0; i < n; i++) {
    cc[i].value = c[i].value;
    if ((cc[i].name = cu_strndup(u, c[i].name, strlen(c[i].name))) == NULL)
      return OOM(err, errlen);
  }
  x->named = 1;
  x->t.consts = cc;
  x->t.nconsts = n;
  enum_size(c, n, packed, &x->t.size, &x->t.is_signed);
  x->t.align = x->t.size;
  x->t.tag = tag ? cu_strndup(u, tag, strlen(tag)) : NULL;
  x->t.name = tag_name(u, CK_ENUM, tag);
  if (x->t.name == NULL || (tag && x->t.tag == NULL)) return OOM(err, errlen);
  if (old != NULL && old->complete) {
    if (cu_same_type(old, &x->t, 0)) return old;
    seterr(err, errlen, "conflicting redefinition of %s", old->name);
    return NULL;
  }
  if (old != NULL) {
    Undo *un = cu_alloc(u, sizeof *un);
    if (un == NULL) return OOM(err, errlen);
    un->t = CTX(old);
    un->saved = *CTX(old);
    un->serial = u->serial++;
    un->prev = u->undo;
    u->undo = un;
    old->consts = cc;
    old->nconsts = n;
    old->size = x->t.size;
    old->align = x->t.align;
    old->is_signed = x->t.is_signed;
    old->complete = 1;
    return old;
  }
  if (tag != NULL) {
    Sym *s = sym_new(u, NS_TAG, 0, tag);
    if (s == NULL) return OOM(err, errlen);
    s->type = &x->t;
  }
  return &x->t;
}

/* ------------------------------------------------------------ typedefs */

CType *cu_find_typedef(CUniverse *u, const char *name) {
  Sym *s = sym_find(u, NS_ORD, name, strlen(name));
  return s && s->kind == SK_TYPEDEF ? s->type : NULL;
}

/* The type a typedef names: tagged records are shared (so a later
 * completion shows through the typedef); anything else is copied under the
 * typedef's name, with the alignment an aligned attribute gives it (which,
 * on a typedef, may also lower it, as gcc allows). */
static CType *typedef_type(CUniverse *u, const char *name, CType *t,
                           size_t align) {
  CTypeX *x;
  if ((t->kind == CK_STRUCT || t->kind == CK_UNION || t->kind == CK_ENUM) &&
      t->tag != NULL && align == 0 && CTX(t)->quals == 0)
    return t;
  if ((x = cu_alloc(u, sizeof *x)) == NULL) return NULL;
  *x = *CTX(t);
  x->named = 1;
  x->origin = t;
  x->unqual = NULL;     /* the typedef is its own unqualified base */
  if ((x->t.name = cu_strndup(u, name, strlen(name))) == NULL) return NULL;
  if (align != 0) x->t.align = align;
  return &x->t;
}

int cu_typedef_aligned(CUniverse *u, const char *name, CType *t, size_t align,
                       char *err, size_t errlen) {
  Sym *s;
  CType *nt;
  if (u == NULL || name == NULL || t == NULL) {
    seterr(err, errlen, "typedef without a name or type");
    return -1;
  }
  if (align != 0 && (!is_pow2(align) || align > CU_MAX_ALIGN)) {
    seterr(err, errlen, "requested alignment %zu is not a power of 2", align);
    return -1;
  }
  s = sym_find(u, NS_ORD, name, strlen(name));
  if (s != NULL && s->kind != SK_TYPEDEF) {
    seterr(err, errlen, "'%s' redeclared as a different kind of symbol", name);
    return -1;
  }
  if ((nt = typedef_type(u, name, t, align)) == NULL) {
    seterr(err, errlen, "out of memory");
    return -1;
  }
  if (s != NULL) {
    if (cu_same_type(s->type, nt, 0)) return 0;
    seterr(err, errlen, "conflicting redefinition of typedef '%s': %s vs %s",
           name, s->body ? s->body : s->type->name, t->name);
    return -1;
  }
  if ((s = sym_new(u, NS_ORD, SK_TYPEDEF, name)) == NULL) {
    seterr(err, errlen, "out of memory");
    return -1;
  }
  s->type = nt;
  s->body = t->name;         /* what it was defined as, for messages */
  return 0;
}

int cu_typedef(CUniverse *u, const char *name, CType *t, char *err,
               size_t errlen) {
  int r;
  if (u == NULL || cu_begin(u) != 0) {
    seterr(err, errlen, u ? "nested too deeply" : "no universe");
    return -1;
  }
  r = cu_typedef_aligned(u, name, t, 0, err, errlen);
  if (r == 0) cu_commit(u);
  else cu_rollback(u);
  return r;
}

/* -------------------------------------------------------------- macros */

int cu_set_macro(CUniverse *u, const char *name, const char *body, size_t len,
                 int function_like) {
  Sym *s = sym_new(u, NS_MACRO,
                   body == NULL ? SK_UNDEF : function_like ? SK_MACRO_FN : SK_MACRO,
                   name);
  if (s == NULL) return -1;
  if (body != NULL && (s->body = cu_strndup(u, body, len)) == NULL) return -1;
  s->len = len;
  return 0;
}

int cu_find_macro(CUniverse *u, const char *name, size_t namelen,
                  const char **body, size_t *len) {
  Sym *s = sym_find(u, NS_MACRO, name, namelen);
  if (s == NULL || s->kind == SK_UNDEF) return 0;
  if (s->kind == SK_MACRO_FN) return 2;
  if (body) *body = s->body;
  if (len) *len = s->len;
  return 1;
}
