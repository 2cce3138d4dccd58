# bench/view_ctypes.py: the Python ctypes baseline of bench/view_bench.lua.
# `python3 bench/view_ctypes.py [N [REPS]]`: the same struct laid over an
# anonymous shared mmap with Structure.from_buffer, the same loops.  Prints
# "name ns" lines: medians of REPS runs, ns per loop iteration.
import ctypes
import mmap
import sys
import time


class S(ctypes.Structure):
    _fields_ = [("a", ctypes.c_uint64), ("d", ctypes.c_double), ("i", ctypes.c_int32)]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000000
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    buf = mmap.mmap(-1, 4096)
    x = S.from_buffer(buf)

    def u64(n):
        for _ in range(n):
            x.a = x.a + 1

    def dbl(n):
        for _ in range(n):
            x.d = x.d + 1

    def i32(n):
        for _ in range(n):
            x.i = x.i + 1

    for name, f in (("uint64_t rw", u64), ("double rw", dbl), ("int32_t rw", i32)):
        t = []
        for _ in range(reps):
            c = time.process_time()
            f(n)
            t.append((time.process_time() - c) / n * 1e9)
        t.sort()
        print("%s %.1f" % (name, t[(len(t) - 1) // 2]))
    del x
    buf.close()


main()
