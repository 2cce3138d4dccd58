#!/bin/sh
# bench/run.sh [BUILD_DIR]: every benchmark, each printing its figure next to
# a baseline measured in the same run.  These machines are noisy: figures are
# medians, compare the ratios.
B=${1:-build}
cd "$(dirname "$0")/.." || exit 2
for c in bench/*.c; do
  n=$(basename "$c" .c)
  case "$n" in noop) continue ;; esac   # a Lua C module, built by its bench
  make -s "$B/bench/$n" || exit 1
done
echo "== start-up: shmlua -e '' against lua5.4 -e '' (median of 300 runs each)"
"$B/bench/startup" 300 /usr/bin/lua5.4 "$B/shmlua"
echo
echo "== bulk copy"
"$B/shmlua" bench/bulk.lua "$B/bench/bulk"
for b in bench/*_bench.lua; do
  [ -f "$b" ] || continue
  echo
  echo "== $b"
  "$B/shmlua" "$b" "$B" || echo "(failed: $b)"
done
