typedef struct Node Node;
struct Node { Node *next; struct { int a; union { float f; unsigned u; }; }; char name[16][2]; };
typedef long al4 __attribute__((aligned(4)));
struct Flex { _Alignas(16) int n; al4 v; const volatile _Atomic(int) ai; char data[]; };
typedef void (*cb_t)(int, char *, ...);
struct Cbs { cb_t one; int (*many[4])(void); void (*(*ret)(int))(double); pthread_mutex_t m; };
int (*)(int)
