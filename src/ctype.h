/*
 * ctype.h: the C type model, the layout engine and the C declaration parser.
 *
 * Pure C: no Lua API, so the layout engine and the parser can be unit-tested
 * and fuzzed on their own (tests/c/, fuzz/).  Every type lives in a
 * CUniverse and is owned by it: pointers to CType and CField stay valid until
 * cu_free().  Types are never modified once complete, so views may cache
 * pointers to them.
 *
 * Layout is x86-64 System V as gcc 12 does it, bit-fields, packed and
 * aligned attributes included.
 */
#ifndef SHM_CTYPE_H
#define SHM_CTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum CKind {
  CK_VOID,     /* void: size 0, only behind a pointer                      */
  CK_BOOL,     /* _Bool / bool: size 1                                     */
  CK_INT,      /* char .. unsigned long long, stdint names; is_signed      */
  CK_FLOAT,    /* float (4), double (8), long double (16)                  */
  CK_ENUM,     /* enum: size 4 (or 8 when a constant needs it); is_signed  */
  CK_POINTER,  /* any pointer, function pointers included; elem = target   */
  CK_ARRAY,    /* elem, count; flexible when count is unknown ([])         */
  CK_STRUCT,
  CK_UNION,
  CK_FUNC      /* a function type: only ever the target of a pointer       */
} CKind;

typedef struct CType CType;

typedef struct CField {
  const char *name;     /* NULL for an anonymous struct/union member       */
  CType *type;
  size_t offset;        /* byte offset from the start of the record        */
  /* Bit-fields: bit_width > 0.  The field's bits start at bit `bit_offset`
   * (0..7) of byte `offset`, counting from the least significant bit of that
   * byte (little-endian), and run for bit_width bits, possibly across
   * several bytes.  A zero-width bit-field is not listed. */
  unsigned bit_offset;
  unsigned bit_width;
} CField;

typedef struct CEnumConst {
  const char *name;
  long long value;
} CEnumConst;

struct CType {
  CKind kind;
  size_t size;          /* sizeof; 0 for void, functions, flexible arrays  */
  size_t align;         /* _Alignof                                        */
  int is_signed;        /* CK_INT, CK_ENUM                                 */
  int is_const, is_volatile, is_atomic;  /* qualifiers of this type        */
  int complete;         /* 0 for a declared but undefined struct/union     */
  const char *name;     /* how to show it: "int", "uint32_t",
                           "struct Head", "char *", "uint32_t[16]"         */
  const char *tag;      /* struct/union/enum tag, or NULL                  */
  CType *elem;          /* CK_POINTER target, CK_ARRAY element             */
  size_t count;         /* CK_ARRAY length                                 */
  int flexible;         /* CK_ARRAY declared with [] (last member only)    */
  CField *fields;       /* CK_STRUCT/CK_UNION, declaration order           */
  size_t nfields;
  CEnumConst *consts;   /* CK_ENUM                                         */
  size_t nconsts;
};

typedef struct CUniverse CUniverse;

/* A universe knowing the built-in types (every standard integer type, the
 * <stdint.h>/<stddef.h> names, bool, float, double, pthread_mutex_t ...).
 * NULL if out of memory. */
CUniverse *cu_new(void);
void cu_free(CUniverse *u);

/*
 * Parses C declarations (struct, union, enum, typedef; comments and
 * #-lines skipped) and adds what they declare to `u`.  Returns 0, or -1
 * with a message "line L, column C: expected X near 'tok'" in err (always
 * NUL-terminated, at most errlen bytes).  On error nothing of this call's
 * source is kept.  Redefining a tag or typedef with the same layout is
 * accepted; a conflicting one fails with a field-by-field difference.
 */
int cu_parse(CUniverse *u, const char *src, size_t len, char *err,
             size_t errlen);

/*
 * A type from a type name as C writes it in a cast or sizeof:
 * "struct Head", "uint32_t[16]", "char *", "void (*)(int)", a typedef name.
 * NULL with err set if it does not name a known, complete-enough type.
 */
CType *cu_typeof(CUniverse *u, const char *decl, char *err, size_t errlen);

/* The type "pointer to t" (interned: same t, same result). NULL on OOM. */
CType *cu_pointer_to(CUniverse *u, CType *t);

/* The value of enum constant `name`; 1 if known, 0 otherwise. */
int cu_enum_value(CUniverse *u, const char *name, long long *value);

/*
 * Finds member `name` of the struct/union `rec`, looking through anonymous
 * members; returns it and stores the offset from the start of `rec` in
 * *offset (the offset of an anonymous member's own field is added up).
 * NULL if there is no such member.
 */
const CField *ct_field(const CType *rec, const char *name, size_t *offset);

/* Builder used by the parser and by shm.struct(): a record from a field
 * list, laid out as gcc would. */
typedef struct CFieldSpec {
  const char *name;     /* NULL: anonymous struct/union member             */
  CType *type;
  int bit_width;        /* -1: not a bit-field; 0: zero-width (`int :0`)   */
  size_t align_as;      /* _Alignas / aligned(N) on the member, 0 if none  */
  int packed;           /* __attribute__((packed)) on the member           */
} CFieldSpec;

/*
 * Defines (or completes) `struct tag` / `union tag` (tag may be NULL:
 * anonymous) from `n` fields.  packed: __attribute__((packed)) on the
 * record; align_as: aligned(N) on the record (0: none).  Returns the
 * complete type, or NULL with err set (duplicate member, conflicting
 * redefinition with a field-by-field difference, bit-field wider than its
 * type, flexible array not last ...).
 */
CType *cu_define_record(CUniverse *u, int is_union, const char *tag,
                        const CFieldSpec *fields, size_t n, int packed,
                        size_t align_as, char *err, size_t errlen);

/* Declares `typedef t name;` (same rules for redefinition). */
int cu_typedef(CUniverse *u, const char *name, CType *t, char *err,
               size_t errlen);

#endif
