/*
 * roundtrip.c: the C side of tests/roundtrip_spec.lua (plain C, no Lua).
 *
 *   roundtrip layout            prints "field offset size" for every
 *                               addressable member of struct RT
 *   roundtrip write ADDR        maps descriptor 3 at exactly ADDR and fills
 *                               struct RT at offset 0 with the values of set A
 *   roundtrip check ADDR        maps descriptor 3 at exactly ADDR and checks
 *                               the values of set B (written by Lua); exits 1
 *                               naming the first mismatch
 *
 * The struct must stay identical to the one declared in the spec.  Pointers
 * are real addresses: both processes map the object at ADDR.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

enum Color { RED = 1, GREEN = 2, BLUE = -3 };

struct Inner {
  int16_t a;
  uint8_t b[3];
  double d;
};

union Num {
  uint32_t u;
  float f;
  uint8_t bytes[4];
};

struct RT {
  int8_t i8;
  uint8_t u8;
  int16_t i16;
  uint16_t u16;
  int32_t i32;
  uint32_t u32;
  int64_t i64;
  uint64_t u64;
  float f;
  double d;
  bool flag;
  char name[16];
  enum Color color;
  unsigned bf_a : 3;
  signed bf_b : 5;
  unsigned bf_c : 12;
  _Bool bf_d : 1;
  uint64_t bf_e : 40;
  struct Inner inner;
  struct Inner inners[2];
  int32_t grid[2][3];
  union Num num;
  struct RT *self;
  char *text;
  void *nothing;
  long double ld;
  unsigned char raw[5];
};

#define TEXT_OFF 1024

static void *map_at(const char *arg) {
  uintptr_t a = (uintptr_t)strtoull(arg, NULL, 0);
  struct stat st;
  void *p;
  if (fstat(3, &st) != 0) { perror("fstat(3)"); exit(2); }
  p = mmap((void *)a, (size_t)st.st_size, PROT_READ | PROT_WRITE,
           MAP_SHARED | MAP_FIXED_NOREPLACE, 3, 0);
  if (p == MAP_FAILED || (uintptr_t)p != a) { perror("mmap"); exit(2); }
  return p;
}

static void layout(void) {
#define F(x) printf("%s %zu %zu\n", #x, offsetof(struct RT, x), sizeof(((struct RT *)0)->x))
  F(i8); F(u8); F(i16); F(u16); F(i32); F(u32); F(i64); F(u64); F(f); F(d);
  F(flag); F(name); F(color); F(inner); F(inners); F(grid); F(num); F(self);
  F(text); F(nothing); F(ld); F(raw);
#undef F
  printf("sizeof %zu\n", sizeof(struct RT));
  printf("alignof %zu\n", _Alignof(struct RT));
}

/* Set A: what C writes and Lua checks. */
static void write_a(unsigned char *base) {
  struct RT *r = (struct RT *)base;
  int i, j;
  memset(r, 0, sizeof *r);
  r->i8 = -128; r->u8 = 255; r->i16 = -32768; r->u16 = 65535;
  r->i32 = INT32_MIN; r->u32 = UINT32_MAX; r->i64 = INT64_MIN;
  r->u64 = UINT64_MAX; r->f = 1.5f; r->d = -2.25e300; r->flag = true;
  strcpy(r->name, "hello, world");
  r->color = BLUE;
  r->bf_a = 5; r->bf_b = -11; r->bf_c = 4095; r->bf_d = 1;
  r->bf_e = 0xABCDEF0123ull;
  r->inner.a = -2; r->inner.b[0] = 1; r->inner.b[1] = 2; r->inner.b[2] = 3;
  r->inner.d = 3.25;
  r->inners[0].a = 10; r->inners[1].a = 11; r->inners[1].b[2] = 200;
  r->inners[1].d = -0.5;
  for (i = 0; i < 2; i++)
    for (j = 0; j < 3; j++) r->grid[i][j] = i * 10 + j - 5;
  r->num.u = 0x3fc00000u;   /* 1.5f */
  r->self = r;
  strcpy((char *)base + TEXT_OFF, "text from C");
  r->text = (char *)base + TEXT_OFF;
  r->nothing = NULL;
  r->ld = 0.1L;
  memcpy(r->raw, "\x01\x00\x02\xff\x7f", 5);
}

static int bad;
#define CHECK(cond) do { if (!bad && !(cond)) { \
  fprintf(stderr, "mismatch: %s\n", #cond); bad = 1; } } while (0)

/* Set B: what Lua writes and C checks. */
static void check_b(unsigned char *base) {
  struct RT *r = (struct RT *)base;
  int i, j;
  CHECK(r->i8 == 127); CHECK(r->u8 == 1); CHECK(r->i16 == 32767);
  CHECK(r->u16 == 2); CHECK(r->i32 == INT32_MAX); CHECK(r->u32 == 3);
  CHECK(r->i64 == INT64_MAX); CHECK(r->u64 == 0x8000000000000001ull);
  CHECK(r->f == -0.25f); CHECK(r->d == 6.5e-300); CHECK(r->flag == false);
  CHECK(strcmp(r->name, "from lua") == 0);
  CHECK(memcmp(r->name, "from lua\0\0\0\0\0\0\0\0", 16) == 0);
  CHECK(r->color == GREEN);
  CHECK(r->bf_a == 2); CHECK(r->bf_b == -16); CHECK(r->bf_c == 1234);
  CHECK(r->bf_d == 0); CHECK(r->bf_e == 0xFFFFFFFFFFull);
  CHECK(r->inner.a == 300); CHECK(r->inner.b[0] == 9); CHECK(r->inner.b[1] == 8);
  CHECK(r->inner.b[2] == 7); CHECK(r->inner.d == 1e10);
  CHECK(r->inners[0].a == -1); CHECK(r->inners[1].a == -2);
  CHECK(r->inners[1].b[0] == 0); CHECK(r->inners[1].d == 2.0);
  for (i = 0; i < 2; i++)
    for (j = 0; j < 3; j++) CHECK(r->grid[i][j] == 100 * i + j);
  CHECK(r->num.f == 2.0f);
  CHECK(r->self == (struct RT *)base);
  CHECK(r->text == (char *)base + TEXT_OFF);
  CHECK(r->text != NULL && strcmp(r->text, "text from Lua") == 0);
  CHECK(r->nothing == (void *)(base + 8));
  CHECK(r->ld == 0.5L);
  CHECK(memcmp(r->raw, "ab\0\0\0", 5) == 0);
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "layout") == 0) {
    layout();
    return 0;
  }
  if (argc == 3 && strcmp(argv[1], "write") == 0) {
    write_a(map_at(argv[2]));
    return 0;
  }
  if (argc == 3 && strcmp(argv[1], "check") == 0) {
    check_b(map_at(argv[2]));
    if (!bad) puts("all fields match");
    return bad;
  }
  fprintf(stderr, "usage: roundtrip layout | write ADDR | check ADDR\n");
  return 2;
}
