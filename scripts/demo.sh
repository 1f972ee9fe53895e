#!/usr/bin/env bash
# make demo: starts a small local HTTP service and Portico in front of it, then
# shows a few requests going through (HTTP/1.1, HTTP/2, routing, filters,
# errors, metrics). Interactive runs keep everything up until Ctrl-C.
set -euo pipefail
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN="$ROOT/$BUILD/bin/portico"
WORK=$(mktemp -d /tmp/portico-demo.XXXXXX)

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=${PORT:-$(free_port)}; ADMIN_PORT=$(free_port); UPSTREAM_PORT=$(free_port); LOG="$WORK/access.log"

cleanup() {
  [ -n "${PT_PID:-}" ] && kill -TERM "$PT_PID" 2>/dev/null && wait "$PT_PID" 2>/dev/null || true
  [ -n "${UP_PID:-}" ] && kill "$UP_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# the upstream: the same echo service the integration tests use
PYTHONPATH="$ROOT/test/integration" /usr/bin/python3 -c "
import time, portico_test
s = portico_test.EchoServer($UPSTREAM_PORT)
while True: time.sleep(3600)" &
UP_PID=$!

sed -e "s/\${PORT}/$PORT/; s/\${ADMIN_PORT}/$ADMIN_PORT/; s/\${UPSTREAM_PORT}/$UPSTREAM_PORT/" \
    -e "s|\${LOG}|$LOG|" "$ROOT/examples/rest/portico.yaml" > "$WORK/portico.yaml"
"$BIN" --validate -c "$WORK/portico.yaml"
"$BIN" -c "$WORK/portico.yaml" 2> "$WORK/portico.err" &
PT_PID=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.05; done

show() { echo; echo "\$ $*"; "$@"; echo; }
echo "== Portico on 127.0.0.1:$PORT, admin on 127.0.0.1:$ADMIN_PORT, upstream on 127.0.0.1:$UPSTREAM_PORT =="
show curl -s -i "http://127.0.0.1:$PORT/api/hello?lang=en" -H 'X-Internal: dropped'
show curl -s --http2-prior-knowledge "http://127.0.0.1:$PORT/shelves/3/books/42"
show curl -s -i "http://127.0.0.1:$PORT/no/such/route"
show curl -s -X POST --data '{"title":"Dune"}' -H 'Content-Type: application/json' "http://127.0.0.1:$PORT/api/books"
echo "\$ curl -s http://127.0.0.1:$ADMIN_PORT/metrics | grep portico_requests_total"
curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep portico_requests_total || true
sleep 0.2
echo; echo "== access log ($LOG) =="; cat "$LOG"
if [ -t 0 ] && [ -z "${CI:-}" ]; then
  echo; echo "Portico keeps running on http://127.0.0.1:$PORT (Ctrl-C to stop)."
  wait "$PT_PID"
fi
