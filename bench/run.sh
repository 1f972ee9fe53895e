#!/usr/bin/env bash
# make bench: the proxy benchmark (wrk HTTP/1.1 and h2load h2c against the
# upstream directly, Portico, and nginx, side by side), then the transcoder
# benchmark when it is built. Prints tables with ratios.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
/usr/bin/python3 "$ROOT/bench/proxy_bench.py" --build "$ROOT/$BUILD" ${BENCH_ARGS:-}
# load-balancing policies: req/s and CPU us/req of each lb vs round robin, interleaved (owner: lb)
/usr/bin/python3 "$ROOT/bench/lb_bench.py" --build "$ROOT/$BUILD"
if [ -x "$ROOT/$BUILD/bin/bookstore-server" ]; then
  /usr/bin/python3 "$ROOT/bench/grpc_bench.py" --build "$ROOT/$BUILD"   # native gRPC passthrough
  /usr/bin/python3 "$ROOT/bench/rest_bench.py" --build "$ROOT/$BUILD"   # REST/JSON -> gRPC transcoding
  /usr/bin/python3 "$ROOT/bench/transcode_cost.py" --build "$ROOT/$BUILD" # same call both ways: CPU ratio
  /usr/bin/python3 "$ROOT/bench/ws_bridge_bench.py" --build "$ROOT/$BUILD" # WebSocket <-> gRPC bridge: bidi chat
  /usr/bin/python3 "$ROOT/bench/aggregate_bench.py" --build "$ROOT/$BUILD" # aggregate vs 3 calls in a row
fi
# WebSocket proxying: echo upstream direct vs Portico (websocket: true) vs nginx (needs npm ws)
if [ -d "$ROOT/test/integration/node_modules/ws" ]; then
  /usr/bin/python3 "$ROOT/bench/ws_bench.py" --build "$ROOT/$BUILD"
fi
# waf: ModSecurity + CRS per-request cost, Portico's filter vs nginx's ModSecurity connector
/usr/bin/python3 "$ROOT/bench/waf_bench.py" --build "$ROOT/$BUILD"
# soap: routes: JSON <-> SOAP conversion vs the raw proxy vs the service (examples/soap, node)
bash "$ROOT/scripts/test-env.sh"
/usr/bin/python3 "$ROOT/bench/soap_bench.py" --build "$ROOT/$BUILD"
if [ -x "$ROOT/bench/transcoder.sh" ]; then
  bash "$ROOT/bench/transcoder.sh" "$ROOT/$BUILD"
fi
# compress filter: CPU us and bytes saved per 10 KB JSON for gzip/br/zstd, next to nginx gzip (issue 13, edge)
/usr/bin/python3 "$ROOT/bench/compress_bench.py" --build "$ROOT/$BUILD"
