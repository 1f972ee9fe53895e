#!/bin/sh
# Prints the Debian packages that hold the shared libraries BINARY loads, one a
# line: the runtime stage of deploy/Dockerfile installs exactly these, so the
# image follows the libraries the build stage (scripts/install-deps.sh
# --build-only) linked against. Debian 12 merged /usr: a library found under
# /lib may be registered under /usr/lib (or the other way round).
set -eu
BINARY=${1:?usage: runtime-packages.sh BINARY}
ldd "$BINARY" | awk '/=> \// { print $3 }' | while read -r lib; do
  real=$(realpath "$lib")
  for p in "$lib" "$real" "/usr$real" "${real#/usr}"; do
    if out=$(dpkg -S "$p" 2>/dev/null); then
      echo "$out" | head -n1 | cut -d: -f1
      break
    fi
  done
done | sort -u
