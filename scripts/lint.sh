#!/usr/bin/env bash
# make lint: cppcheck and clang-tidy over the project's C sources, using the
# compile commands of BUILD (default build). Exits non-zero on findings.
set -uo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SRCS=$(ls gateway/*.c gateway/*/*.c plugins/*.c transcoder/*.c)
status=0
echo "== cppcheck"
cppcheck --quiet --error-exitcode=1 --enable=warning,portability --std=c11 \
  -I gateway/include -I gateway -I transcoder/include --suppress=missingIncludeSystem \
  --inline-suppr $SRCS || status=1
echo "== clang-tidy"
out=$(clang-tidy -p "$BUILD" --quiet $SRCS 2>/dev/null | grep -E "warning:|error:" )
if [ -n "$out" ]; then echo "$out"; status=1; fi
exit $status
