#!/usr/bin/env bash
# make bench: the proxy benchmark (wrk HTTP/1.1 and h2load h2c against the
# upstream directly, Portico, and nginx, side by side), then the transcoder
# benchmark when it is built. Prints tables with ratios.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
/usr/bin/python3 "$ROOT/bench/proxy_bench.py" --build "$ROOT/$BUILD" ${BENCH_ARGS:-}
# security filters (jwt, and rows other filters add): CPU us/request over the plain proxy
/usr/bin/python3 "$ROOT/bench/auth_bench.py" --build "$ROOT/$BUILD"
# load-balancing policies: req/s and CPU us/req of each lb vs round robin, interleaved (owner: lb)
/usr/bin/python3 "$ROOT/bench/lb_bench.py" --build "$ROOT/$BUILD"
if [ -x "$ROOT/$BUILD/bin/bookstore-server" ]; then
  /usr/bin/python3 "$ROOT/bench/grpc_bench.py" --build "$ROOT/$BUILD"   # native gRPC passthrough
  /usr/bin/python3 "$ROOT/bench/rest_bench.py" --build "$ROOT/$BUILD"   # REST/JSON -> gRPC transcoding
  /usr/bin/python3 "$ROOT/bench/transcode_cost.py" --build "$ROOT/$BUILD" # same call both ways: CPU ratio
  /usr/bin/python3 "$ROOT/bench/ws_bridge_bench.py" --build "$ROOT/$BUILD" # WebSocket <-> gRPC bridge: bidi chat
  /usr/bin/python3 "$ROOT/bench/aggregate_bench.py" --build "$ROOT/$BUILD" # aggregate vs 3 calls in a row
fi
# authn filters (issue 11): CPU per request of api_key, ip_access, cors over the plain proxy
/usr/bin/python3 "$ROOT/bench/authn_bench.py" --build "$ROOT/$BUILD"
# WebSocket proxying: echo upstream direct vs Portico (websocket: true) vs nginx (needs npm ws)
if [ -d "$ROOT/test/integration/node_modules/ws" ]; then
  /usr/bin/python3 "$ROOT/bench/ws_bench.py" --build "$ROOT/$BUILD"
  # the same relay counted by callgrind: instructions and L1 data misses per message, Portico vs nginx
  if command -v valgrind >/dev/null; then
    /usr/bin/python3 "$ROOT/bench/ws_callgrind.py" --build "$ROOT/$BUILD" --cache-sim
  fi
fi
# waf: ModSecurity + CRS per-request cost, Portico's filter vs nginx's ModSecurity connector
/usr/bin/python3 "$ROOT/bench/waf_bench.py" --build "$ROOT/$BUILD"
# soap: routes: JSON <-> SOAP conversion vs the raw proxy vs the service (examples/soap, node)
bash "$ROOT/scripts/test-env.sh"
/usr/bin/python3 "$ROOT/bench/soap_bench.py" --build "$ROOT/$BUILD"
# the same calls counted by callgrind: instructions per request, soap route vs raw proxy (soapfast)
if command -v valgrind >/dev/null; then
  /usr/bin/python3 "$ROOT/bench/soap_callgrind.py" --build "$ROOT/$BUILD"
fi
if [ -x "$ROOT/bench/transcoder.sh" ]; then
  bash "$ROOT/bench/transcoder.sh" "$ROOT/$BUILD"
fi
# issue 12 (retry): route matching at 10, 1k and 10k routes, compiled index vs linear scan
if [ -x "$ROOT/$BUILD/bin/router_bench" ]; then
  "$ROOT/$BUILD/bin/router_bench"
fi
# issue 12 (hc): failover -- one of three endpoints killed under load: failed requests, time to detect
/usr/bin/python3 "$ROOT/bench/failover_bench.py" --build "$ROOT/$BUILD"
# rate_limit / quota (local table, Redis) vs the plain proxy, interleaved (issue 11, rl)
/usr/bin/python3 "$ROOT/bench/ratelimit_bench.py" --build "$ROOT/$BUILD"
# compress filter: CPU us and bytes saved per 10 KB JSON for gzip/br/zstd, next to nginx gzip (issue 13, edge)
/usr/bin/python3 "$ROOT/bench/compress_bench.py" --build "$ROOT/$BUILD"
# tracing: CPU us per request added, off vs OTLP protobuf vs JSON export, interleaved (issue 13, trace);
# `python3 bench/trace_bench.py --callgrind 2000` counts instructions per request per thread instead
/usr/bin/python3 "$ROOT/bench/trace_bench.py" --build "$ROOT/$BUILD"
# cache filter: HIT req/s and CPU us/req vs the plain proxy and nginx proxy_cache, interleaved (issue 13, cache)
/usr/bin/python3 "$ROOT/bench/cache_bench.py" --build "$ROOT/$BUILD"
# live dashboard (issue 13, dash): instructions and CPU per proxied request with the dashboard's
# gauges, against DASH_BENCH_BEFORE (a portico built without them) when set
/usr/bin/python3 "$ROOT/bench/dashboard_bench.py" --build "$ROOT/$BUILD"
# issue 7 (h1perf): instructions per request under callgrind -- HTTP/1.1 proxy with large headers,
# transcoded REST->gRPC POST (h2c, HTTP/1.1) and the same call passed through as native gRPC
if [ -x "$ROOT/$BUILD/bin/bookstore-server" ] && command -v valgrind >/dev/null; then
  /usr/bin/python3 "$ROOT/bench/h1perf_callgrind.py" --build "$ROOT/$BUILD"
fi
# descriptors by gRPC server reflection vs from a file: config load time (issue 13, reflect; needs npm packages)
/usr/bin/python3 "$ROOT/bench/reflect_bench.py" --build "$ROOT/$BUILD"
# h2tls: an HTTPS HTTP/2 proxied request through h2.c vs HTTP/1.1 + TLS through libcurl, interleaved;
# set H2TLS_BENCH_BEFORE to a portico built before the change to add its libcurl HTTP/2 rows
/usr/bin/python3 "$ROOT/bench/h2tls_bench.py" --build "$ROOT/$BUILD"
# issues 7/8 (netio): system calls per proxied HTTP/1.1 request and per relayed WebSocket message,
# Portico vs nginx (perf tracepoints; needs perf and npm ws)
if command -v perf >/dev/null && [ -d "$ROOT/test/integration/node_modules/ws" ]; then
  /usr/bin/python3 "$ROOT/bench/net_syscalls.py" --build "$ROOT/$BUILD"
fi
# issue 7 (h1core): the HTTP/1.1 proxy's user-space cost per request under callgrind, Portico (access
# log off and on) next to nginx: instructions and allocator calls per proxied GET
if command -v valgrind >/dev/null; then
  /usr/bin/python3 "$ROOT/bench/proxy_callgrind.py" --build "$ROOT/$BUILD"
fi
