#!/bin/sh
# tests/run.sh [BUILD_DIR]: the whole suite.  Runs every busted spec inside
# the shmlua host, then again under stock lua5.4 with shm.so (not in the
# sanitizer build, whose shm.so needs the sanitizer runtime), checks that
# nothing was left in /dev/shm, and ends with the line "N passed, N failed".
B=${1:-build}
cd "$(dirname "$0")/.." || exit 2
export SHMLUA_BUILD="$PWD/$B"
export SHMLUA="$PWD/$B/shmlua"
export LUA_PATH="$PWD/lua/?.lua;$PWD/tests/?.lua;;"
passed=0; failed=0
out=$(mktemp); trap 'rm -f "$out"' EXIT
shm_before=$(ls /dev/shm | grep -c '^shmlua' )

count() {  # $1: label; reads busted's plain summary from $out
  line=$(grep -E '^[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$out" | tail -n 1)
  if [ -z "$line" ]; then
    echo "$1: busted printed no summary (crashed?)"; tail -n 30 "$out"
    failed=$((failed + 1)); return
  fi
  s=$(echo "$line" | awk '{print $1}'); f=$(echo "$line" | awk '{print $4}'); e=$(echo "$line" | awk '{print $7}')
  echo "$1: $line"
  passed=$((passed + s)); failed=$((failed + f + e))
  [ $((f + e)) -gt 0 ] && sed -n '/^Failure\|^Error/,$p' "$out" | head -n 200
}

specs=${SPECS:-tests}
timeout 1500 "$SHMLUA" /usr/bin/busted -o plainTerminal $specs >"$out" 2>&1
count "shmlua"
if [ -z "$SHMLUA_ASAN" ]; then
  LUA_CPATH="$PWD/$B/?.so;;" SHMLUA_STOCK=1 timeout 1500 lua5.4 /usr/bin/busted -o plainTerminal $specs >"$out" 2>&1
  count "lua5.4 + shm.so"
fi
shm_after=$(ls /dev/shm | grep -c '^shmlua')
if [ "$shm_after" -gt "$shm_before" ]; then
  echo "left behind in /dev/shm:"; ls /dev/shm | grep '^shmlua'
  failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
