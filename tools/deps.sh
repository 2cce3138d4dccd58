#!/bin/sh
# Installs, from Debian's archive, whatever of the build and test dependencies
# this machine lacks.  Does nothing (and needs no network) when all are there.
set -e
need=""
for p in gcc make pkg-config clang lua5.4 liblua5.4-dev lua-busted libclang-rt-14-dev spin; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need="$need $p"
done
[ -z "$need" ] && exit 0
echo "deps: installing$need" >&2
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need >&2
