#!/usr/bin/env bash
# make fuzz: runs every libFuzzer target built in BUILD (default build-fuzz)
# for FUZZ_SECONDS each (default 60), starting from its seed corpus; new
# inputs go to a scratch corpus, crashes to build-fuzz/crashes/.
set -euo pipefail
BUILD=${1:-build-fuzz}
SECS=${FUZZ_SECONDS:-60}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$BUILD/crashes"
status=0
for bin in "$BUILD"/bin/fuzz_*; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin"); name=${name#fuzz_}
  seeds="$ROOT/test/fuzz/corpus/$name"
  work="$BUILD/corpus/$name"; mkdir -p "$work"
  echo "== fuzz $name (${SECS}s)"
  if ! "$bin" -max_total_time="$SECS" -rss_limit_mb=2048 -artifact_prefix="$BUILD/crashes/$name-" \
      "$work" "$seeds" 2>&1 | tail -3; then
    status=1
  fi
done
exit $status
