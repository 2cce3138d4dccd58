/*
 * tools/abi/check.c: the shmlua side of the ABI differential test.
 *
 *   check HEADER MANIFEST     parses HEADER with cu_parse and answers every
 *                             manifest line the way the gcc-built probe does
 *   check -e HEADER           parses HEADER, prints "ok" or the error
 *   check -t HEADER TYPE...   prints name, size and alignment of each TYPE
 *
 * Manifest lines (tab-separated):
 *   T <type>            ->  T <type> <sizeof> <alignof>
 *   F <type> <path>     ->  F <type> <path> <offsetof>
 *   B <type> <path>     ->  B <type> <path> <first bit> <last bit>
 *   E <constant>        ->  E <constant> <value>
 * A path is member names joined by '.', each optionally indexed: a.b[2].c
 * Built with the module's layout.c and cparse.c only (no Lua).
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

int main(int argc, char **argv) {
  char err[512], line[4096];
  size_t len;
  char *src;
  CUniverse *u;
  FILE *m;
  int i, mode = 0;
  if (argc > 1 && (!strcmp(argv[1], "-e") || !strcmp(argv[1], "-t"))) {
    mode = argv[1][1];
    argv++;
    argc--;
  }
  if (argc < 2 || (mode == 0 && argc != 3)) {
    fprintf(stderr, "usage: check [-e | -t] HEADER [MANIFEST | TYPE...]\n");
    return 2;
  }
  if ((src = slurp(argv[1], &len)) == NULL) {
    perror(argv[1]);
    return 2;
  }
  if ((u = cu_new()) == NULL) {
    fprintf(stderr, "cu_new failed\n");
    return 2;
  }
  if (cu_parse(u, src, len, err, sizeof err) != 0) {
    printf("parse error: %s\n", err);
    free(src);
    cu_free(u);
    return mode == 'e' ? 0 : 1;
  }
  free(src);
  if (mode == 'e') {
    printf("ok\n");
  } else if (mode == 't') {
    for (i = 2; i < argc; i++) {
      CType *t = cu_typeof(u, argv[i], err, sizeof err);
      if (t == NULL) printf("%s: %s\n", argv[i], err);
      else printf("%s: name '%s' size %zu align %zu kind %d\n", argv[i], t->name, t->size, t->align, (int)t->kind);
    }
  } else {
    if ((m = fopen(argv[2], "r")) == NULL) {
      perror(argv[2]);
      cu_free(u);
      return 2;
    }
    while (fgets(line, sizeof line, m) != NULL) answer(u, line);
    fclose(m);
  }
  cu_free(u);
  return 0;
}
