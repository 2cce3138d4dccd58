/*
 * ctype_int.h: what layout.c and cparse.c share and nobody else needs.
 *
 * Every CType is allocated by the universe inside a larger CTypeX, so the
 * two files can keep a few more facts per type (how to spell it, its
 * qualifiers, a function's parameter list) without growing the public
 * struct.  Other subsystems only ever see CType.
 *
 * Transactions: cu_begin() marks the universe; cu_rollback() forgets every
 * symbol, interned type, completion and allocation made since the mark;
 * cu_commit() keeps them.  Marks nest.
 */
#ifndef SHM_CTYPE_INT_H
#define SHM_CTYPE_INT_H

#include "ctype.h"

enum { CQ_CONST = 1, CQ_VOLATILE = 2, CQ_RESTRICT = 4, CQ_ATOMIC = 8 };

/* The type of an integer constant expression's value, as C types it. */
enum { CV_INT, CV_UINT, CV_LONG, CV_ULONG };

typedef enum CBase {
  CB_VOID, CB_BOOL, CB_CHAR, CB_SCHAR, CB_UCHAR, CB_SHORT, CB_USHORT,
  CB_INT, CB_UINT, CB_LONG, CB_ULONG, CB_LLONG, CB_ULLONG, CB_INT128,
  CB_UINT128, CB_FLOAT, CB_DOUBLE, CB_LDOUBLE, CB_COUNT
} CBase;

typedef struct CTypeX {
  CType t;              /* first: a CType * is a CTypeX *                  */
  int named;            /* t.name is a whole spelling (base type, typedef,
                           tag): derived types spell around it             */
  int quals;            /* CQ_* of this variant                            */
  CType *unqual;        /* the type without this variant's qualifiers      */
  CType *origin;        /* a typedef: the type it was declared as          */
  const char *params;   /* CK_FUNC: "(int, char *)"                        */
} CTypeX;

#define CTX(t) ((CTypeX *)(t))

/* The largest object and the largest alignment the engine accepts. */
#define CU_MAX_SIZE ((size_t)1 << 56)
#define CU_MAX_ALIGN ((size_t)1 << 28)

/* ---- memory: persistent (until cu_free or rollback) and per-call scratch */
void *cu_alloc(CUniverse *u, size_t n);          /* zeroed; NULL on OOM */
char *cu_strndup(CUniverse *u, const char *s, size_t n);
void *cu_scratch(CUniverse *u, size_t n);        /* zeroed; NULL on OOM */
void cu_scratch_reset(CUniverse *u);

/* ---- transactions */
int cu_begin(CUniverse *u);                      /* -1: nested too deep */
void cu_rollback(CUniverse *u);
void cu_commit(CUniverse *u);

/* ---- types */
CType *cu_base(CUniverse *u, CBase b);
CType *cu_qualified(CUniverse *u, CType *t, int quals, char *err,
                    size_t errlen);
CType *cu_array_of(CUniverse *u, CType *elem, size_t count, int flexible,
                   char *err, size_t errlen);
CType *cu_function(CUniverse *u, CType *ret, CType *const *params, size_t n,
                   int variadic, int unprototyped, char *err, size_t errlen);
/* typedef with an aligned attribute: align 0 keeps t's alignment. */
int cu_typedef_aligned(CUniverse *u, const char *name, CType *t, size_t align,
                       char *err, size_t errlen);

/* ---- symbols */
CType *cu_find_typedef(CUniverse *u, const char *name);
CType *cu_find_tag(CUniverse *u, const char *tag);
/* An incomplete struct/union/enum registered under `tag`. */
CType *cu_declare_tag(CUniverse *u, CKind kind, const char *tag);
/* 1 and *v, *vtype (CV_*) for an enum constant; 0 if `name` is none. */
int cu_find_const(CUniverse *u, const char *name, long long *v, int *vtype);
/* Adds an enum constant (same value again: accepted). */
int cu_add_const(CUniverse *u, const char *name, long long v, int vtype,
                 char *err, size_t errlen);
/* Completes or defines enum `tag` (NULL: anonymous) with its constants. */
CType *cu_define_enum(CUniverse *u, const char *tag, const CEnumConst *c,
                      size_t n, int packed, char *err, size_t errlen);
/* Object-like macros: body NULL removes (#undef).  Function-like macros
 * are recorded as defined with function_like set and never expanded. */
int cu_set_macro(CUniverse *u, const char *name, const char *body,
                 size_t len, int function_like);
/* 0: not defined; 1: defined (body and len set); 2: function-like. */
int cu_find_macro(CUniverse *u, const char *name, size_t namelen,
                  const char **body, size_t *len);

/* Checks member i of n of a record being defined (its type, bit width,
 * flexible array placement); 0, or -1 with err set. */
int cu_check_member(const CFieldSpec *f, size_t i, size_t n, int is_union,
                    char *err, size_t errlen);

/* ---- comparison used by redefinition checks */
int cu_same_type(const CType *a, const CType *b, int depth);

#endif
