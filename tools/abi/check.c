/*
 * tools/abi/check.c: drives the type model from the command line; the shmlua
 * side of the ABI differential test (tests/abi_spec.lua).
 *
 *   check ARG...   processes its arguments in order, on one universe:
 *     -f FILE      cu_parse the file; prints "ok" or "error: MESSAGE"
 *     -s SOURCE    cu_parse the string; same output
 *     -m MANIFEST  answers each manifest line as the gcc-built probe does
 *     -t TYPE      cu_typeof: "TYPE: 'NAME' size S align A" or "TYPE: error: ..."
 *     -l TYPE      the members of a struct/union: "NAME: TYPE at O[.bit:width]"
 *     -v NAME      an enum constant: "NAME = V" or "NAME: unknown"
 *   check HEADER MANIFEST   is short for  check -q -f HEADER -m MANIFEST
 *   -q           from then on, "ok" lines are not printed
 *
 * Manifest lines (tab-separated):
 *   T <type>            ->  T <type> <sizeof> <alignof>
 *   F <type> <path>     ->  F <type> <path> <offsetof>
 *   B <type> <path>     ->  B <type> <path> <first bit> <last bit>
 *   E <constant>        ->  E <constant> <value>
 * A path is member names joined by '.', each optionally indexed: a.b[2].c
 * Built with the module's layout.c and cparse.c only (no Lua).  Exit status:
 * 0, or 1 if a parse failed, 2 on bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctype.h"

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  size_t cap = 0, n = 0, r;
  if (f == NULL) return NULL;
  do {
    if (cap - n < 4096) {
      char *nb = realloc(buf, cap = cap * 2 + 8192);
      if (nb == NULL) {
        free(buf);
        fclose(f);
        return NULL;
      }
      buf = nb;
    }
    r = fread(buf + n, 1, cap - n - 1, f);
    n += r;
  } while (r > 0);
  fclose(f);
  buf[n] = 0;
  *len = n;
  return buf;
}

/* Follows a member path from type t; offset in bits; field set for the
 * last member.  0 on success. */
static int walk(const CType *t, char *path, unsigned long long *bits,
                const CField **field) {
  char *seg = path, *next;
  *bits = 0;
  *field = NULL;
  for (; seg != NULL; seg = next) {
    char *br;
    size_t off;
    const CField *f;
    next = strchr(seg, '.');
    if (next) *next++ = 0;
    br = strchr(seg, '[');
    if (br) *br = 0;
    f = ct_field(t, seg, &off);
    if (f == NULL) return -1;
    *bits += (unsigned long long)off * 8 + f->bit_offset;
    *field = f;
    t = f->type;
    while (br != NULL) {
      unsigned long long i = strtoull(br + 1, &br, 10);
      if (t->kind != CK_ARRAY) return -1;
      t = t->elem;
      *bits += i * t->size * 8;
      br = strchr(br, '[');
      *field = NULL;
    }
  }
  return 0;
}

static void answer(CUniverse *u, char *line) {
  char err[512], *kind = strtok(line, "\t\n"), *a = strtok(NULL, "\t\n"),
       *b = strtok(NULL, "\t\n");
  CType *t;
  if (kind == NULL || a == NULL) return;
  if (kind[0] == 'E') {
    long long v;
    if (cu_enum_value(u, a, &v)) printf("E\t%s\t%lld\n", a, v);
    else printf("E\t%s\t?\n", a);
    return;
  }
  t = cu_typeof(u, a, err, sizeof err);
  if (t == NULL) {
    printf("%s\t%s%s%s\t? %s\n", kind, a, b ? "\t" : "", b ? b : "", err);
    return;
  }
  if (kind[0] == 'T') {
    printf("T\t%s\t%zu %zu\n", a, t->size, t->align);
  } else if (b != NULL) {
    char path[1024];
    unsigned long long bits;
    const CField *f;
    snprintf(path, sizeof path, "%s", b);
    if (walk(t, path, &bits, &f) != 0) printf("%s\t%s\t%s\t? no such member\n", kind, a, b);
    else if (kind[0] == 'F') printf("F\t%s\t%s\t%llu\n", a, b, bits / 8);
    else if (f == NULL || f->bit_width == 0) printf("B\t%s\t%s\t? not a bit-field\n", a, b);
    else printf("B\t%s\t%s\t%llu %llu\n", a, b, bits, bits + f->bit_width - 1);
  }
}

static int parse(CUniverse *u, const char *src, size_t len, int quiet) {
  char err[512];
  if (cu_parse(u, src, len, err, sizeof err) != 0) {
    printf("error: %s\n", err);
    return 1;
  }
  if (!quiet) printf("ok\n");
  return 0;
}

static void list_fields(CUniverse *u, const char *name) {
  char err[512];
  size_t i;
  CType *t = cu_typeof(u, name, err, sizeof err);
  if (t == NULL) {
    printf("%s: error: %s\n", name, err);
    return;
  }
  for (i = 0; i < t->nfields; i++) {
    const CField *f = &t->fields[i];
    printf("%s: %s at %zu", f->name ? f->name : "(anonymous)", f->type->name, f->offset);
    if (f->bit_width) printf(".%u:%u", f->bit_offset, f->bit_width);
    printf("\n");
  }
}

int main(int argc, char **argv) {
  char err[512], line[4096];
  CUniverse *u;
  int i, status = 0, quiet = 0;
  if (argc == 3 && argv[1][0] != '-') {
    static char *short_form[7];
    short_form[0] = argv[0];
    short_form[1] = "-q";
    short_form[2] = "-f";
    short_form[3] = argv[1];
    short_form[4] = "-m";
    short_form[5] = argv[2];
    argv = short_form;
    argc = 6;
  }
  if ((u = cu_new()) == NULL) {
    fprintf(stderr, "cu_new failed\n");
    return 2;
  }
  for (i = 1; i < argc; i++) {
    const char *opt = argv[i], *a = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(opt, "-q")) {
      quiet = 1;
      continue;
    }
    if (a == NULL || opt[0] != '-' || opt[1] == 0 || opt[2] != 0) {
      fprintf(stderr, "usage: check [-q] [-f FILE | -s SRC | -m MANIFEST | -t TYPE | -l TYPE | -v NAME]...\n");
      cu_free(u);
      return 2;
    }
    i++;
    switch (opt[1]) {
    case 'f': {
      size_t len;
      char *src = slurp(a, &len);
      if (src == NULL) {
        perror(a);
        cu_free(u);
        return 2;
      }
      status |= parse(u, src, len, quiet);
      free(src);
      break;
    }
    case 's':
      status |= parse(u, a, strlen(a), quiet);
      break;
    case 'm': {
      FILE *m = fopen(a, "r");
      if (m == NULL) {
        perror(a);
        cu_free(u);
        return 2;
      }
      while (fgets(line, sizeof line, m) != NULL) answer(u, line);
      fclose(m);
      break;
    }
    case 't': {
      CType *t = cu_typeof(u, a, err, sizeof err);
      if (t == NULL) printf("%s: error: %s\n", a, err);
      else printf("%s: '%s' size %zu align %zu\n", a, t->name, t->size, t->align);
      break;
    }
    case 'l':
      list_fields(u, a);
      break;
    case 'v': {
      long long v;
      if (cu_enum_value(u, a, &v)) printf("%s = %lld\n", a, v);
      else printf("%s: unknown\n", a);
      break;
    }
    default:
      fprintf(stderr, "check: unknown option %s\n", opt);
      cu_free(u);
      return 2;
    }
  }
  cu_free(u);
  return status;
}
