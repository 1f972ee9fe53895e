#!/usr/bin/env bash
# bench/transcoder.sh BUILD_DIR [SECS]
# Transcoder throughput, ours vs libprotobuf's JsonToBinaryString/BinaryToJsonString
# (same FileDescriptorSet, same JSON inputs), both directions, five workloads.
# Prints a table: messages/s and MB/s (of the JSON text) per implementation, and ours/libprotobuf.
set -euo pipefail
B=${1:-build}
SECS=${2:-0.3}
ours=$B/bin/bench_transcoder
ref=$B/bin/bench_transcoder_libprotobuf
desc=$B/bench/transcoder/bench.pb
# the harnesses are not in "all"; build (or refresh) them here
cmake --build "$B" --target bench_transcoder >/dev/null
cmake --build "$B" --target bench_transcoder_libprotobuf >/dev/null 2>&1 || rm -f "$ref"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$ours" --gen "$tmp"
"$ours" "$desc" "$tmp" "$SECS" >"$tmp/results"
if [ -x "$ref" ]; then
  "$ref" "$desc" "$tmp" "$SECS" >>"$tmp/results"
else
  echo "(libprotobuf harness not built: no reference column)" >&2
fi
echo "Transcoder benchmark ($(uname -m), $(nproc) cores, build $(basename "$B"), >= ${SECS}s per cell)"
echo "MB/s counts the JSON text in both directions; pb B is the size of our encoding."
awk '
$1 == "RESULT" { k = $3 " " $4; seen[k] = 1; order[++n] = k
                 mps[$2, k] = $5; mbs[$2, k] = $6; jb[k] = $7; if ($2 == "ours") pb[k] = $8 }
END {
  printf "%-9s %-8s %7s %7s | %12s %9s | %12s %9s | %8s\n", "workload", "dir", "json B", "pb B",
         "ours msg/s", "ours MB/s", "libpb msg/s", "libpb MB/s", "ours/lib"
  printf "%s\n", "--------------------------------------------------------------------------------------------------"
  for (i = 1; i <= n; i++) {
    k = order[i]; if (done[k]++) continue
    split(k, a, " ")
    r = ("libprotobuf", k) in mps ? sprintf("%7.2fx", mps["ours", k] / mps["libprotobuf", k]) : "     n/a"
    printf "%-9s %-8s %7d %7d | %12.0f %9.1f | %12s %9s | %8s\n", a[1], a[2], jb[k], pb[k],
           mps["ours", k], mbs["ours", k],
           ("libprotobuf", k) in mps ? sprintf("%12.0f", mps["libprotobuf", k]) : "n/a",
           ("libprotobuf", k) in mps ? sprintf("%9.1f", mbs["libprotobuf", k]) : "n/a", r
  }
}' "$tmp/results"
