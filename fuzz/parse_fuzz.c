/*
 * fuzz/parse_fuzz.c: libFuzzer harness for the C declaration parser and the
 * layout engine (`make fuzz`, FUZZ_SECONDS=60 by default).
 *
 * Each input is C source handed to cu_parse on a fresh universe, twice (the
 * second time every definition is a redefinition); then every line of the
 * input, and the input's identifiers prefixed with "struct " and suffixed
 * with " *" and "[2]", go to cu_typeof, and the members of what it returns
 * are looked up with ct_field.  The universe is freed at the end, so
 * AddressSanitizer sees every leak.  Messages must be NUL-terminated and
 * fit their buffer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctype.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_err(const char *err, size_t len) {
  if (memchr(err, 0, len) == NULL) abort();
}

/* cu_typeof on `name`, then ct_field on the members of the result. */
static void probe(CUniverse *u, const char *name) {
  char err[128];
  size_t i, off;
  CType *t = cu_typeof(u, name, err, sizeof err);
  if (t == NULL) {
    check_err(err, sizeof err);
    if (err[0] == 0) abort();          /* a failure always says why */
    return;
  }
  if (t->name == NULL || (t->size != 0 && t->align == 0)) abort();
  if (cu_pointer_to(u, t) != cu_pointer_to(u, t)) abort();   /* interned */
  for (i = 0; i < t->nfields && (t->kind == CK_STRUCT || t->kind == CK_UNION); i++) {
    const CField *f = &t->fields[i];
    if (f->name != NULL && ct_field(t, f->name, &off) == NULL) abort();
    if (f->offset > t->size) abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  CUniverse *u = cu_new();
  char err[96], line[128];
  const char *src = (const char *)data;
  size_t i, start = 0;
  int lines = 0;
  long long v;
  if (u == NULL) return 0;
  if (cu_parse(u, src, size, err, sizeof err) != 0) check_err(err, sizeof err);
  if (cu_parse(u, src, size, err, sizeof err) != 0) check_err(err, sizeof err);
  for (i = 0; i <= size && lines < 24; i++) {
    if (i == size || src[i] == '\n') {
      size_t n = i - start < sizeof line - 1 ? i - start : sizeof line - 1;
      memcpy(line, src + start, n);
      line[n] = 0;
      probe(u, line);
      start = i + 1;
      lines++;
    }
  }
  for (i = 0, lines = 0; i < size && lines < 24; i++) {
    size_t n = 0;
    char word[64];
    while (i + n < size && n < 40 &&
           (src[i + n] == '_' || (src[i + n] | 32) - 'a' < 26u || src[i + n] - '0' < 10u))
      n++;
    if (n == 0) continue;
    memcpy(word, src + i, n);
    word[n] = 0;
    probe(u, word);
    cu_enum_value(u, word, &v);
    memcpy(line, "struct ", 7);
    memcpy(line + 7, word, n + 1);
    probe(u, line);
    memcpy(word + n, " *", 3);
    probe(u, word);
    memcpy(word + n, "[2]", 4);
    probe(u, word);
    i += n;
    lines++;
  }
  cu_free(u);
  return 0;
}
