struct BF {
  char c;
  int a : 3, : 0, b : 30;
  unsigned long long z : 63 __attribute__((packed));
  _Bool flag : 1;
  enum { X = 1 << 4, Y = X | 3 } e : 8;
};
struct __attribute__((packed)) P { char c; long l; int x : 5; short s[3] __attribute__((aligned(4))); };
union U { int i : 7; double d; char s[]; };
