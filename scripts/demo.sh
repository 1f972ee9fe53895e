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
  [ -n "${AZ_PID:-}" ] && kill -TERM "$AZ_PID" 2>/dev/null || true
  [ -n "${UP_PID:-}" ] && kill "$UP_PID" 2>/dev/null || true
  [ -n "${WS_PID:-}" ] && kill -TERM "$WS_PID" 2>/dev/null || true
  [ -n "${WSUP_PID:-}" ] && kill "$WSUP_PID" 2>/dev/null || true
  [ -n "${SPT_PID:-}" ] && kill -TERM "$SPT_PID" 2>/dev/null || true
  [ -n "${SOAP_PID:-}" ] && kill "$SOAP_PID" 2>/dev/null || true
  [ -n "${RL_PID:-}" ] && kill -TERM "$RL_PID" 2>/dev/null || true
  [ -n "${JWT_PID:-}" ] && kill -TERM "$JWT_PID" 2>/dev/null || true
  [ -n "${AK_PID:-}" ] && kill -TERM "$AK_PID" 2>/dev/null || true
  [ -n "${OA_PID:-}" ] && kill -TERM "$OA_PID" 2>/dev/null || true
  [ -n "${OA_BOOK_PID:-}" ] && kill -TERM "$OA_BOOK_PID" 2>/dev/null || true
  [ -n "${REF_PID:-}" ] && kill -TERM "$REF_PID" 2>/dev/null || true
  [ -n "${RSRV_PID:-}" ] && kill -TERM "$RSRV_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# the upstream: the same echo service the integration tests use
PYTHONPATH="$ROOT/test/integration" /usr/bin/python3 -c "
import time, portico_test
s = portico_test.EchoServer($UPSTREAM_PORT)
while True: time.sleep(3600)" &
UP_PID=$!
# the upstream must answer before the tour starts (python takes a moment to start)
for _ in $(seq 200); do curl -s -o /dev/null "http://127.0.0.1:$UPSTREAM_PORT/" && break; sleep 0.05; done

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

# ---- part 2: the Bookstore gRPC service as REST/JSON and gRPC-Web -------------
BOOK_BIN="$ROOT/$BUILD/bin/bookstore-server"
BOOK_PB="$ROOT/$BUILD/examples/bookstore/bookstore.pb"
TRANSCODE="$ROOT/$BUILD/bin/portico-transcode"
if [ -x "$BOOK_BIN" ] && [ -f "$BOOK_PB" ]; then
  BOOK_PORT=$(free_port); GPORT=$(free_port); GADMIN=$(free_port)
  "$BOOK_BIN" --port "$BOOK_PORT" > "$WORK/bookstore.out" 2>&1 &
  BOOK_PID=$!
  for _ in $(seq 200); do (echo > "/dev/tcp/127.0.0.1/$BOOK_PORT") 2>/dev/null && break; sleep 0.05; done
  cp "$BOOK_PB" "$WORK/bookstore.pb"
  sed -e "s/\${PORT}/$GPORT/; s/\${ADMIN_PORT}/$GADMIN/; s/\${BOOKSTORE_PORT}/$BOOK_PORT/" \
      -e "s|\${LOG}|$WORK/grpc-access.log|" "$ROOT/examples/bookstore/portico.yaml" > "$WORK/bookstore.yaml"
  if "$BIN" --validate -c "$WORK/bookstore.yaml" >/dev/null 2>&1; then
    "$BIN" -c "$WORK/bookstore.yaml" 2> "$WORK/portico-grpc.err" &
    GPT_PID=$!
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$GPORT/" && break; sleep 0.05; done
    echo; echo "== Bookstore (gRPC on 127.0.0.1:$BOOK_PORT) as REST/JSON through Portico on 127.0.0.1:$GPORT =="
    G="http://127.0.0.1:$GPORT"
    show curl -s "$G/v1/shelves"
    show curl -s -X POST "$G/v1/shelves" -H 'Content-Type: application/json' -d '{"theme":"Travel","labels":{"floor":"4"}}'
    show curl -s "$G/v1/shelves/1/books?page_size=2"
    show curl -s -i "$G/v1/shelves/999"
    show curl -s -H 'Accept: application/x-ndjson' "$G/v1/shelves/1/books:watch?interval_ms=100&count=3"
    echo "\$ gRPC-Web call (binary mode, as a browser sends it): /bookstore.v1.Bookstore/GetShelf {\"shelf\":\"1\"}"
    REQ=$(echo '{"shelf":"1"}' | "$TRANSCODE" -d "$BOOK_PB" --type bookstore.v1.GetShelfRequest --to-binary | od -An -tx1 | tr -d ' \n')
    /usr/bin/python3 "$ROOT/scripts/grpcweb_call.py" "$G" /bookstore.v1.Bookstore/GetShelf "$REQ" | tee "$WORK/gw.out" || true
    MSG=$(grep '^message: ' "$WORK/gw.out" | head -1 | cut -d' ' -f2)
    if [ -n "$MSG" ]; then
      echo "  decoded: $(echo "$MSG" | /usr/bin/python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.stdin.read().strip()))' | "$TRANSCODE" -d "$BOOK_PB" --type bookstore.v1.Shelf --to-json)"
    fi
    # The WebSocket <-> gRPC bridge: the same route, a WebSocket handshake on a
    # streaming binding (scripts/ws_chat.py, a stdlib-only client).
    W="ws://127.0.0.1:$GPORT"
    echo; echo "== WebSocket <-> gRPC bridge: bidi Chat over a WebSocket (handlers/ws_bridge.c) =="
    show /usr/bin/python3 "$ROOT/scripts/ws_chat.py" --each "$W/v1/rooms/lobby/chat?from=ann" '"hi"' '"how are you?"'
    show /usr/bin/python3 "$ROOT/scripts/ws_chat.py" "$W/v1/rooms/lobby/chat?from=ann" '"sent"' '"then closed"'
    show /usr/bin/python3 "$ROOT/scripts/ws_chat.py" --wait "$W/v1/shelves/1/books:watch?interval_ms=100&count=2"
    show /usr/bin/python3 "$ROOT/scripts/ws_chat.py" --each "$W/v1/rooms/lobby/chat?from=ann" '"ok"' '""'
    kill -TERM "$GPT_PID" 2>/dev/null; wait "$GPT_PID" 2>/dev/null || true
  else
    echo; echo "(the gRPC part of the demo needs the grpc route: $("$BIN" --validate -c "$WORK/bookstore.yaml" 2>&1 | head -1))"
  fi
  kill -TERM "$BOOK_PID" 2>/dev/null; wait "$BOOK_PID" 2>/dev/null || true
fi

# ---- part 3: a filter that waits on an upstream call (examples/plugins/ext_authz.c) --------
# The plugin is built against the SDK headers only; for each request it asks a
# service (here the echo upstream's /status/NNN) and suspends until it answers.
AUTHZ_SO="$ROOT/$BUILD/lib/pt_ext_authz.so"
if [ -f "$AUTHZ_SO" ]; then
  AZ_PORT=$(free_port)
  cat > "$WORK/authz.yaml" <<EOF
listeners: [ { address: "127.0.0.1:$AZ_PORT" } ]
plugins: [ { path: "$AUTHZ_SO" } ]
clusters:
  - { name: web, endpoints: [ "127.0.0.1:$UPSTREAM_PORT" ] }
  - { name: authz, endpoints: [ "127.0.0.1:$UPSTREAM_PORT" ] }
routes:
  - match: { prefix: /members/ }
    proxy: { cluster: web }
    filters: [ { ext_authz: { cluster: authz, path: /status/403 } } ]
  - match: { prefix: / }
    proxy: { cluster: web }
    filters: [ { ext_authz: { cluster: authz, path: /status/200, forward: [ authorization ] } } ]
EOF
  "$BIN" -c "$WORK/authz.yaml" 2> "$WORK/authz.err" &
  AZ_PID=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$AZ_PORT/" && break; sleep 0.05; done
  echo; echo "== part 3: ext_authz (a .so filter) asks a service before each request =="
  show curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$AZ_PORT/open/page" -H 'Authorization: Bearer demo'
  show curl -s -i "http://127.0.0.1:$AZ_PORT/members/page"
  kill -TERM "$AZ_PID" 2>/dev/null; wait "$AZ_PID" 2>/dev/null || true
fi

# ---- part 4: a SOAP service as a JSON API (examples/soap, the npm `soap` package) ------------
# Portico loads the WSDLs and converts JSON <-> SOAP by their XSD types.
if command -v node >/dev/null && bash "$ROOT/scripts/test-env.sh" >/dev/null 2>&1; then
  SPORT=$(free_port)
  node "$ROOT/examples/soap/server.js" --port 0 > "$WORK/soap.out" 2>&1 &
  SOAP_PID=$!
  for _ in $(seq 200); do grep -q '^listening ' "$WORK/soap.out" 2>/dev/null && break; sleep 0.05; done
  SOAP_PORT=$(sed -n 's/^listening //p' "$WORK/soap.out")
  cp "$ROOT/examples/soap/crm.wsdl" "$ROOT/examples/soap/calculator.wsdl" "$WORK/"
  sed -e "s/\${PORT}/$SPORT/; s/\${SOAP_PORT}/$SOAP_PORT/" "$ROOT/examples/soap/portico.yaml" > "$WORK/soap.yaml"
  if "$BIN" --validate -c "$WORK/soap.yaml" >/dev/null 2>&1; then
    "$BIN" -c "$WORK/soap.yaml" 2> "$WORK/portico-soap.err" &
    SPT_PID=$!
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$SPORT/" && break; sleep 0.05; done
    S="http://127.0.0.1:$SPORT"
    echo; echo "== part 4: SOAP services (node, 127.0.0.1:$SOAP_PORT) as JSON through Portico on 127.0.0.1:$SPORT =="
    show curl -s -X POST "$S/crm/GetCustomer" -H 'Content-Type: application/json' -d '{"id": 2}'
    show curl -s "$S/crm/customers?city=Paris&limit=2"
    show curl -s "$S/crm/customers/9007199254740993"
    show curl -s -X PATCH "$S/crm/customers/1" -H 'Content-Type: application/json' -d '{"status": "SUSPENDED"}'
    show curl -s -i "$S/crm/customers/7"
    show curl -s -X POST "$S/calc/Divide" -H 'Content-Type: application/json' -d '{"b": 2, "a": 7}'
    show curl -s -i -X POST "$S/calc/Divide" -H 'Content-Type: application/json' -d '{"a": 7, "b": 0}'
    show curl -s -i -X POST "$S/calc/Divide" -H 'Content-Type: application/json' -d '{"a": "seven", "b": 2, "c": 1}'
    kill -TERM "$SPT_PID" 2>/dev/null; wait "$SPT_PID" 2>/dev/null || true
  else
    echo; echo "(the SOAP part of the demo needs the soap route: $("$BIN" --validate -c "$WORK/soap.yaml" 2>&1 | head -1))"
  fi
  kill -TERM "$SOAP_PID" 2>/dev/null; wait "$SOAP_PID" 2>/dev/null || true
fi

# ---- part 5: an aggregate of REST and gRPC calls (examples/aggregate) ----------------
if [ -x "$BOOK_BIN" ] && [ -f "$BOOK_PB" ]; then
  BOOK_PORT=$(free_port); AG_PORT=$(free_port)
  "$BOOK_BIN" --port "$BOOK_PORT" > "$WORK/bookstore-agg.out" 2>&1 &
  BOOK_PID=$!
  for _ in $(seq 200); do (echo > "/dev/tcp/127.0.0.1/$BOOK_PORT") 2>/dev/null && break; sleep 0.05; done
  cp "$BOOK_PB" "$WORK/bookstore.pb"
  sed -e "s/\${PORT}/$AG_PORT/; s/\${UPSTREAM_PORT}/$UPSTREAM_PORT/; s/\${BOOKSTORE_PORT}/$BOOK_PORT/" \
      -e "s|\${LOG}|$WORK/agg-access.log|" "$ROOT/examples/aggregate/portico.yaml" > "$WORK/aggregate.yaml"
  "$BIN" --validate -c "$WORK/aggregate.yaml"
  "$BIN" -c "$WORK/aggregate.yaml" 2> "$WORK/portico-agg.err" &
  AG_PID=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$AG_PORT/" && break; sleep 0.05; done
  echo; echo "== part 5: one request, REST + gRPC calls composed (examples/aggregate/portico.yaml) =="
  show curl -s -i "http://127.0.0.1:$AG_PORT/v1/dashboard/42" -H 'x-tenant: acme'
  show curl -s -i "http://127.0.0.1:$AG_PORT/v1/dashboard/42"
  sleep 0.2
  echo "== its access log line (one entry per call) =="; grep dashboard "$WORK/agg-access.log" | head -1
  kill -TERM "$AG_PID" 2>/dev/null; wait "$AG_PID" 2>/dev/null || true
  kill -TERM "$BOOK_PID" 2>/dev/null; wait "$BOOK_PID" 2>/dev/null || true
fi

# ---- part 6: WebSocket proxying (proxy: { websocket: true }), frames checked both ways ------
# The upstream and the client are the npm `ws` package of the integration tests
# (scripts/test-env.sh installs it).
WS_DIR="$ROOT/test/integration/websocket"
if command -v node > /dev/null && [ -d "$ROOT/test/integration/node_modules/ws" ]; then
  node "$WS_DIR/ws_upstream.js" > "$WORK/ws-up.out" 2>/dev/null &
  WSUP_PID=$!
  for _ in $(seq 100); do [ -s "$WORK/ws-up.out" ] && break; sleep 0.05; done
  WSUP_PORT=$(/usr/bin/python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['port'])" "$WORK/ws-up.out")
  WS_PORT=$(free_port)
  cat > "$WORK/ws.yaml" <<EOF
listeners: [ { address: "127.0.0.1:$WS_PORT", h2c: true } ]
access_log: { path: "$WORK/ws-access.log" }
clusters:
  - { name: chat, endpoints: [ "127.0.0.1:$WSUP_PORT" ] }
routes:
  - match: { prefix: /chat/ }
    proxy: { cluster: chat, websocket: true, max_message: 1m, ping_interval: 30s }
    filters: [ { rewrite: { prefix: /chat/, replace: / } } ]
EOF
  "$BIN" -c "$WORK/ws.yaml" 2> "$WORK/ws.err" &
  WS_PID=$!
  for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$WS_PORT") 2>/dev/null && break; sleep 0.05; done
  echo; echo "== part 6: WebSocket proxying: echo through Portico, then the upstream closes with 4002 =="
  show node "$WS_DIR/ws_client.js" echo "ws://127.0.0.1:$WS_PORT/chat/echo"
  show node "$WS_DIR/ws_client.js" uclose "ws://127.0.0.1:$WS_PORT/chat/close/4002"
  echo "\$ (a raw client sends an unmasked frame: Portico closes with 1002)"
  /usr/bin/python3 "$WS_DIR/ws_raw_demo.py" "$WS_PORT"
  kill -TERM "$WS_PID" 2>/dev/null; wait "$WS_PID" 2>/dev/null || true
  kill "$WSUP_PID" 2>/dev/null || true
  echo; echo "== WebSocket sessions in the access log =="; grep "\"ws\":" "$WORK/ws-access.log" || true
fi

# ---- part 7: the jwt filter (keys from a JWK set, claims forwarded as x-user) --------------
# Keys and tokens made with Debian's python3-jwt / python3-cryptography (test/integration/auth).
if /usr/bin/python3 -c "import jwt, cryptography" 2>/dev/null; then
  JWT_PORT=$(free_port)
  PYTHONPATH="$ROOT/test/integration/auth" /usr/bin/python3 - "$WORK" <<'PY'
import json, sys, time
import jwt_keys as K
keys = K.Keys()
open(sys.argv[1] + "/jwks.json", "w").write(json.dumps(keys.jwks()))
open(sys.argv[1] + "/good.jwt", "w").write(K.token(keys, "ES256", sub="alice"))
open(sys.argv[1] + "/expired.jwt", "w").write(K.token(keys, "RS256", exp=int(time.time()) - 3600))
PY
  cat > "$WORK/jwt.yaml" <<EOF
listeners: [ { address: "127.0.0.1:$JWT_PORT" } ]
clusters: [ { name: echo, endpoints: [ "127.0.0.1:$UPSTREAM_PORT" ] } ]
routes:
  - proxy: { cluster: echo }
    filters:
      - jwt: { jwks_file: jwks.json, issuer: "https://idp.test/", audiences: [ api ],
               forward_claims: { sub: x-user } }
EOF
  "$BIN" -c "$WORK/jwt.yaml" 2> "$WORK/jwt.err" &
  JWT_PID=$!
  for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$JWT_PORT") 2>/dev/null && break; sleep 0.05; done
  echo; echo "== part 7: jwt: no token, an expired one, a good ES256 one (the upstream sees x-user) =="
  show curl -s -i "http://127.0.0.1:$JWT_PORT/orders"
  show curl -s -i -H "Authorization: Bearer $(cat "$WORK/expired.jwt")" "http://127.0.0.1:$JWT_PORT/orders"
  echo "\$ curl -s -H 'Authorization: Bearer <ES256 token>' -H 'x-user: mallory' http://127.0.0.1:$JWT_PORT/orders"
  curl -s -H "Authorization: Bearer $(cat "$WORK/good.jwt")" -H 'x-user: mallory' "http://127.0.0.1:$JWT_PORT/orders" |
    /usr/bin/python3 -c "import json,sys; print('upstream saw x-user:', [v for k, v in json.load(sys.stdin)['headers'] if k == 'x-user'])"
  kill -TERM "$JWT_PID" 2>/dev/null; wait "$JWT_PID" 2>/dev/null || true
fi

# ---- part 8: a rate limit (rate_limit: 3 per minute per X-User, shared by 2 workers) ----------
RL_PORT=$(free_port)
cat > "$WORK/rl.yaml" <<EOF
listeners: [ { address: "127.0.0.1:$RL_PORT" } ]
clusters: [ { name: web, endpoints: [ "127.0.0.1:$UPSTREAM_PORT" ] } ]
routes:
  - match: { prefix: / }
    proxy: { cluster: web }
    filters: [ { rate_limit: { requests: 3, per: 1m, key: "header:x-user" } } ]
EOF
"$BIN" -c "$WORK/rl.yaml" -w 2 2> "$WORK/rl.err" &
RL_PID=$!
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$RL_PORT") 2>/dev/null && break; sleep 0.05; done
echo; echo "== part 8: rate_limit: 3 per minute per X-User; the 4th answer is a 429 =="
for i in 1 2 3 4; do
  echo "\$ curl -s -i -H 'X-User: alice' http://127.0.0.1:$RL_PORT/limited   # request $i"
  curl -s -i -H 'X-User: alice' "http://127.0.0.1:$RL_PORT/limited" | grep -iE '^HTTP|^ratelimit|^retry-after|"error"'
done
kill -TERM "$RL_PID" 2>/dev/null; wait "$RL_PID" 2>/dev/null || true
# ---- part 9: API keys, IP rules and CORS (plugins/api_key.c, ip_access.c, cors.c) ----------
AK_PORT=$(free_port)
AK_DIGEST=$(printf %s demo-key | sha256sum | cut -d' ' -f1)
cat > "$WORK/authn.yaml" <<EOF
listeners: [ { address: "127.0.0.1:$AK_PORT" } ]
clusters: [ { name: web, endpoints: [ "127.0.0.1:$UPSTREAM_PORT" ] } ]
routes:
  - match: { prefix: /admin/ }
    proxy: { cluster: web }
    filters: [ { ip_access: { allow: [ 10.0.0.0/8, "2001:db8::/32" ] } } ]
  - match: { prefix: / }
    proxy: { cluster: web }
    filters:
      - cors: { origins: [ "https://app.example" ], credentials: true }
      - api_key: { consumers: [ { name: demo-app, key_sha256: "$AK_DIGEST" } ] }
EOF
"$BIN" -c "$WORK/authn.yaml" 2> "$WORK/authn.err" &
AK_PID=$!
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$AK_PORT") 2>/dev/null && break; sleep 0.05; done
echo; echo "== part 9: an API key (401 without it; the upstream sees x-consumer), IP rules, CORS =="
show curl -s -i "http://127.0.0.1:$AK_PORT/orders"
echo "\$ curl -s http://127.0.0.1:$AK_PORT/orders -H 'x-api-key: demo-key' -H 'x-consumer: spoofed'"
curl -s "http://127.0.0.1:$AK_PORT/orders" -H 'x-api-key: demo-key' -H 'x-consumer: spoofed' |
  /usr/bin/python3 -c 'import json,sys; h=json.load(sys.stdin)["headers"]; print("upstream saw:", [x for x in h if x[0] in ("x-consumer", "x-api-key")])'
show curl -s -i "http://127.0.0.1:$AK_PORT/admin/panel"
show curl -s -i -X OPTIONS "http://127.0.0.1:$AK_PORT/orders" -H 'Origin: https://app.example' -H 'Access-Control-Request-Method: PATCH'
kill -TERM "$AK_PID" 2>/dev/null; wait "$AK_PID" 2>/dev/null || true

# ---- part 10: OpenAPI and the /docs explorer (observe/openapi.c, observe/docs.html) -------
# The admin's /openapi.json and /openapi.yaml are generated from the live config: the
# Bookstore's google.api.http bindings and a soap route's WSDL operations. /docs calls
# the data listener from the admin's origin, so the grpc route allows that origin.
if [ -x "$BOOK_BIN" ] && [ -f "$BOOK_PB" ]; then
  OA_BOOK_PORT=$(free_port); OA_PORT=$(free_port); OA_ADMIN=$(free_port)
  "$BOOK_BIN" --port "$OA_BOOK_PORT" > "$WORK/bookstore-oa.out" 2>&1 &
  OA_BOOK_PID=$!
  for _ in $(seq 200); do (echo > "/dev/tcp/127.0.0.1/$OA_BOOK_PORT") 2>/dev/null && break; sleep 0.05; done
  cat > "$WORK/openapi.yaml" <<EOF
listeners: [ { address: "127.0.0.1:$OA_PORT" } ]
admin: { address: "127.0.0.1:$OA_ADMIN" }
openapi: { title: "Bookstore and CRM", version: "1.0" }
descriptors: [ $BOOK_PB ]
clusters:
  - { name: bookstore, protocol: grpc, endpoints: [ "127.0.0.1:$OA_BOOK_PORT" ] }
  - { name: crm, endpoints: [ "127.0.0.1:$UPSTREAM_PORT" ] }
routes:
  - match: { prefix: /crm/ }
    soap: { cluster: crm, wsdl: $ROOT/examples/soap/crm.wsdl, port: CustomerSoap,
            operations: { GetCustomer: { get: "/crm/customers/{id}" } } }
  - grpc: { cluster: bookstore, web_origins: [ "http://127.0.0.1:$OA_ADMIN" ] }
EOF
  "$BIN" -c "$WORK/openapi.yaml" 2> "$WORK/openapi.err" &
  OA_PID=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$OA_ADMIN/healthz" && break; sleep 0.05; done
  echo; echo "== part 10: OpenAPI 3.1 from the live descriptors and WSDL, and the /docs explorer =="
  echo "\$ curl -s http://127.0.0.1:$OA_ADMIN/openapi.json   # a few of its paths"
  curl -s "http://127.0.0.1:$OA_ADMIN/openapi.json" | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
print("openapi", d["openapi"], "-", d["info"]["title"], d["info"]["version"], "- server", d["servers"][0]["url"])
print(len(d["paths"]), "paths,", len(d["components"]["schemas"]), "schemas; for example:")
for p in ["/v1/shelves/{shelf}/books", "/v1/shelves/{shelf}/books:watch", "/crm/customers/{id}"]:
    for m, op in d["paths"][p].items():
        ps = ", ".join("%s (%s)" % (x["name"], x["in"]) for x in op.get("parameters", []))
        st = "  [stream: %s]" % op["x-portico-streaming"] if "x-portico-streaming" in op else ""
        print("  %-6s %-34s %s%s" % (m.upper(), p, ps, st))'
  echo "\$ curl -s http://127.0.0.1:$OA_ADMIN/openapi.yaml | head -8"
  { curl -s "http://127.0.0.1:$OA_ADMIN/openapi.yaml" || true; } | head -8 || true
  echo "API explorer (open it in a browser; try GetShelf with shelf = 1): http://127.0.0.1:$OA_ADMIN/docs"
fi
# ---- part 11: the response cache (plugins/cache.c): MISS, HIT, then an admin purge ----------
CA_PORT=$(free_port); CA_ADMIN=$(free_port)
cat > "$WORK/cache.yaml" <<EOF
listeners: [ { address: "127.0.0.1:$CA_PORT" } ]
admin: { address: "127.0.0.1:$CA_ADMIN" }
clusters: [ { name: web, endpoints: [ "127.0.0.1:$UPSTREAM_PORT" ] } ]
routes:
  - match: { prefix: / }
    proxy: { cluster: web }
    filters: [ { cache: { ttl: 30s, max_size: 64m, max_object: 1m, name: demo } } ]
EOF
"$BIN" -c "$WORK/cache.yaml" -w 2 2> "$WORK/cache.err" &
CA_PID=$!
for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$CA_PORT") 2>/dev/null && break; sleep 0.05; done
echo; echo "== part 11: cache: a MISS, then a HIT (with its Age), a purge, and a MISS again =="
for i in 1 2; do
  echo "\$ curl -s -i http://127.0.0.1:$CA_PORT/catalog   # request $i"
  curl -s -i "http://127.0.0.1:$CA_PORT/catalog" | grep -iE '^HTTP|^x-cache|^age'
  sleep 1
done
show curl -s -X POST "http://127.0.0.1:$CA_ADMIN/cache/purge?path=/catalog"
echo "\$ curl -s -i http://127.0.0.1:$CA_PORT/catalog   # after the purge"
curl -s -i "http://127.0.0.1:$CA_PORT/catalog" | grep -iE '^HTTP|^x-cache|^age'
echo "\$ curl -s http://127.0.0.1:$CA_ADMIN/metrics | grep portico_cache_"
curl -s "http://127.0.0.1:$CA_ADMIN/metrics" | grep -E '^portico_cache_(hits|misses|stores|purged)_total'
kill -TERM "$CA_PID" 2>/dev/null; wait "$CA_PID" 2>/dev/null || true

# ---- part 12: the live dashboard on the admin listener (observe/dashboard.c) ---------------
echo; echo "== part 12: the live dashboard: open http://127.0.0.1:$ADMIN_PORT/dashboard in a browser =="
echo "(admin listener only: keep it on loopback, e.g. ssh -L $ADMIN_PORT:127.0.0.1:$ADMIN_PORT this-host)"
for _ in $(seq 20); do curl -s -o /dev/null "http://127.0.0.1:$PORT/api/hello"; done
echo "\$ curl -s http://127.0.0.1:$ADMIN_PORT/stats   # one snapshot, summarised"
curl -s "http://127.0.0.1:$ADMIN_PORT/stats" | /usr/bin/python3 -c '
import json, sys
s = json.load(sys.stdin)
print("generation %d, %d worker(s); open: %d connections, %d HTTP/2 streams, %d WebSockets, %d tunnels"
      % (s["generation"], s["workers"], s["connections"]["open"], s["http2_streams"]["open"],
         s["websockets"]["open"], s["tunnels"]["open"]))
for r in s["routes"]:
    lat = r["latency"]
    mean = lat["sum_us"] / lat["count"] / 1000 if lat["count"] else 0
    print("  route %-16s %5d requests  2xx %-4d 4xx %-4d 5xx %-4d mean %.2f ms%s"
          % (r["name"], r["requests"], r["classes"][1], r["classes"][3], r["classes"][4], mean,
             "" if r["configured"] else "  (not configured)"))
for c in s["clusters"]:
    eps = ", ".join("%s %s" % (e["address"], "up" if e["healthy"] and not e["outlier"]["ejected"] else "OUT")
                    for e in c.get("endpoints", []))
    print("  cluster %-14s %5d requests  endpoints: %s" % (c["name"], c["requests"], eps))'
echo "\$ curl -sN http://127.0.0.1:$ADMIN_PORT/stats/stream   # a snapshot a second (server-sent events)"
timeout 2.5 curl -sN "http://127.0.0.1:$ADMIN_PORT/stats/stream" | grep -c '^event: snapshot' |
  sed 's/^/snapshot events in 2.5 s: /' || true

# ---- part 13: descriptors by gRPC server reflection (descriptors: [ grpc-reflection://shop ]) ----
# The gRPC server is the integration test's @grpc/grpc-js + @grpc/reflection one
# (scripts/test-env.sh installs them); Portico has no descriptor file, it asks the server.
RDIR="$ROOT/test/integration/reflect"
if command -v node > /dev/null && [ -d "$ROOT/test/integration/node_modules/@grpc/reflection" ]; then
  protoc -I"$RDIR/proto" -I"$ROOT/protos" -I/usr/include --include_imports \
    --descriptor_set_out="$WORK/shop.pb" shop/v1/shop.proto shop/v1/audit.proto
  RSRV_PORT=$(free_port); REF_PORT=$(free_port)
  node "$RDIR/reflect_server.js" "$WORK/shop.pb" "$RSRV_PORT:both" < /dev/null > "$WORK/rsrv.out" 2>&1 &
  RSRV_PID=$!
  for _ in $(seq 200); do grep -q listening "$WORK/rsrv.out" 2>/dev/null && break; sleep 0.05; done
  cat > "$WORK/reflect.yaml" <<EOF
listeners: [ { address: "127.0.0.1:$REF_PORT" } ]
clusters: [ { name: shop, protocol: grpc, endpoints: [ "127.0.0.1:$RSRV_PORT" ] } ]
descriptors: [ "grpc-reflection://shop" ]
routes: [ { grpc: { cluster: shop } } ]
EOF
  "$BIN" -c "$WORK/reflect.yaml" 2> "$WORK/reflect.err" &
  REF_PID=$!
  for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$REF_PORT") 2>/dev/null && break; sleep 0.05; done
  echo; echo "== part 13: descriptors by gRPC server reflection, then REST -> gRPC through them =="
  grep "grpc-reflection" "$WORK/reflect.err" || true
  show curl -s "http://127.0.0.1:$REF_PORT/v1/items/42"
  sed 's|grpc-reflection://shop"|grpc-reflection://shop?services=shop.v1.Nope"|' "$WORK/reflect.yaml" > "$WORK/reflect-bad.yaml"
  echo "\$ portico --validate -c reflect-bad.yaml   # a service the server does not have"
  "$BIN" --validate -c "$WORK/reflect-bad.yaml" 2>&1 | sed "s|$WORK/||" || true
  kill -TERM "$REF_PID" 2>/dev/null; wait "$REF_PID" 2>/dev/null || true
  kill -TERM "$RSRV_PID" 2>/dev/null; wait "$RSRV_PID" 2>/dev/null || true
fi

if [ -t 0 ] && [ -z "${CI:-}" ]; then
  echo; echo "Portico keeps running on http://127.0.0.1:$PORT (Ctrl-C to stop)."
  wait "$PT_PID"
fi
