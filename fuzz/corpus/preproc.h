#ifndef DEMO_H
#define DEMO_H
#define N 16
#define PACKED __attribute__((packed))
#if defined(__x86_64__) && N > 8 || 0
typedef char buf_t[N * 2 + sizeof(long)];
#else
typedef char buf_t[1];
#endif
#ifdef __cplusplus
extern "C" {
#endif
enum E { A = 'a', B = 0x10U, C = 017, D = (A + B) % 7 ? -1 : ~0, F = sizeof(buf_t) };
struct PACKED S { char c; buf_t b; };
extern int printf(const char *, ...);
static inline int f(int x) { return x * 2; }
_Static_assert(sizeof(struct S) == 41, "size");
#ifdef __cplusplus
}
#endif
#endif
