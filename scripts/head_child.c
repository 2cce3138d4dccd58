/*
 * head_child.c: the C child of scripts/head.lua (plain C, no Lua).
 *
 * Descriptor 3 is the host's memfd holding, at offset 0,
 *   struct Head { void *Addr; uintptr_t MemSize; uintptr_t TextSize; char *TextPtr; };
 * Maps one header to read Addr and MemSize, unmaps it, maps MemSize bytes at
 * exactly Addr (MAP_FIXED_NOREPLACE: never over something else), follows
 * TextPtr and prints the text.  Exit status 0 on success, 1 with a message
 * on stderr otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

struct Head {
  void *Addr;
  uintptr_t MemSize;
  uintptr_t TextSize;
  char *TextPtr;
};

static int fail(const char *what) {
  fprintf(stderr, "c child:    %s: %s\n", what, strerror(errno));
  return 1;
}

int main(void) {
  const int fd = 3;
  struct Head *h, *hdr;
  void *addr;
  size_t size;
  char *m;

  h = mmap(NULL, sizeof *h, PROT_READ, MAP_SHARED, fd, 0);
  if (h == MAP_FAILED) return fail("mmap(header)");
  addr = h->Addr;
  size = h->MemSize;
  munmap(h, sizeof *h);

  m = mmap(addr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED_NOREPLACE,
           fd, 0);
  if (m == MAP_FAILED) return fail("mmap(Addr)");
  if ((void *)m != addr) {
    fprintf(stderr, "c child:    mapped at %p, not at %p\n", (void *)m, addr);
    return 1;
  }
  hdr = (struct Head *)m;
  if (hdr->TextPtr < m || hdr->TextSize > size ||
      (size_t)(hdr->TextPtr - m) > size - hdr->TextSize) {
    fprintf(stderr, "c child:    TextPtr %p does not lie in the mapping\n",
            (void *)hdr->TextPtr);
    return 1;
  }
  printf("c child:    read %zu bytes at %p via TextPtr: %.*s\n",
         (size_t)hdr->TextSize, (void *)hdr->TextPtr, (int)hdr->TextSize,
         hdr->TextPtr);
  munmap(m, size);
  return 0;
}
