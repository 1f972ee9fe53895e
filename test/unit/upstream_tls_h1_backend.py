#!/usr/bin/env python3
"""An HTTPS server that speaks only HTTP/1.1, for the ALPN fallback tests of
upstream/h2.c (test_upstream.c).

usage: upstream_tls_h1_backend.py PORT CERT KEY ALPN
  ALPN: "http/1.1" (offered: a client asking for h2 and http/1.1 gets
  http/1.1) or "none" (the server takes no part in ALPN).

GET /data.txt answers 20000 bytes ('a' + i % 26); POST /echo answers the
request body; every answer carries x-conn: the connection's number, so a
test can see connections reused.
"""
import http.server
import itertools
import ssl
import sys

PORT, CERT, KEY, ALPN = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
DATA = bytes(ord("a") + i % 26 for i in range(20000))
CONNS = itertools.count(1)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.conn_no = next(CONNS)

    def log_message(self, *args):
        pass

    def answer(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-conn", str(self.conn_no))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/data.txt":
            self.answer(DATA)
        else:
            self.send_error(404)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.answer(self.rfile.read(n))


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(CERT, KEY)
if ALPN != "none":
    ctx.set_alpn_protocols([ALPN])
srv = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
srv.daemon_threads = True
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
