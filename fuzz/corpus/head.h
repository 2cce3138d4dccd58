#include <stdint.h>
struct Head { void *Addr; uintptr_t MemSize; uintptr_t TextSize; char *TextPtr; };
typedef struct Head Head;
struct Head
Head *
