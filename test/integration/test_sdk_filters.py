"""
The plugin SDK's asynchronous and body-transforming parts, through .so filters
built against the installed SDK headers only, in the real binary:
  - examples/plugins/ext_authz.c: an upstream call from a filter (pt_fetch_*),
    suspend/resume, abort while the call is in flight;
  - test/support/plugin_gzip.c: response bodies gzip-compressed as they stream,
    Content-Length dropped, SUSPEND in the response-header and -body phases;
  - test/support/plugin_body_rewrite.c: the request body rewritten before the
    upstream call, streaming (chunked upstream) and with request_buffering
    (exact Content-Length, refusal before the upstream sees anything), and
    SUSPEND in the request-body phase.
"""
import gzip
import http.server
import json
import os
import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
import unittest

from portico_test import PorticoTestCase, curl, free_port, h2_call, BIN

LIB = os.path.join(os.path.dirname(os.path.dirname(BIN)), "lib")
AUTHZ = os.path.join(LIB, "pt_ext_authz.so")
GZIP = os.path.join(LIB, "pt_test_gzip.so")
REWRITE = os.path.join(LIB, "pt_test_rewrite.so")


class AuthzHandler(http.server.BaseHTTPRequestHandler):
    """Bearer good -> 200 + X-User: alice; bad -> 401; slow -> 200 after 3 s; none -> 403."""
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        self.server.seen.append({k.lower(): v for k, v in self.headers.items()})
        auth = self.headers.get("Authorization", "")
        if auth == "Bearer slow":
            time.sleep(3)
        code = {"Bearer good": 200, "Bearer slow": 200, "Bearer bad": 401}.get(auth, 403)
        self.send_response(code)
        if code == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="test"')
        if code == 200:
            self.send_header("X-User", "alice")
            self.send_header("X-Other", "not-copied")
        self.send_header("Content-Length", "0")
        self.end_headers()


class AuthzServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), AuthzHandler)
        self.port = self.server_address[1]
        self.seen = []
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()


def post(url, body, *extra):
    return curl(url, "-X", "POST", "--data-binary", "@-", *extra, input_bytes=body)


class SdkFilterTest(PorticoTestCase):
    def setUp(self):
        super().setUp()
        self.authz = None

    def tearDown(self):
        super().tearDown()
        if self.authz is not None:
            self.authz.shutdown()
            self.authz.server_close()

    # ---- an upstream call from a filter ----------------------------------

    def test_ext_authz_upstream_call(self):
        up = self.echo()
        self.authz = AuthzServer()
        dead = free_port()  # nothing listens there
        port = free_port()
        self.start(f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
plugins: [ {{ path: "{AUTHZ}" }} ]
clusters:
  - {{ name: web, endpoints: [ "127.0.0.1:{up.port}" ] }}
  - {{ name: authz, endpoints: [ "127.0.0.1:{self.authz.port}" ] }}
  - {{ name: down, endpoints: [ "127.0.0.1:{dead}" ], retries: 0 }}
routes:
  - match: {{ prefix: /open/ }}
    proxy: {{ cluster: web }}
    filters: [ {{ ext_authz: {{ cluster: down, fail_open: true }} }} ]
  - match: {{ prefix: /closed/ }}
    proxy: {{ cluster: web }}
    filters: [ {{ ext_authz: {{ cluster: down }} }} ]
  - match: {{ prefix: / }}
    proxy: {{ cluster: web }}
    filters:
      - ext_authz: {{ cluster: authz, path: /check, forward: [ Authorization ],
                      copy: [ X-User ], timeout: 1s }}
      - headers: {{ request: {{ set: {{ x-who: "user=${{var.authz.x-user}}" }} }} }}
""", port)
        base = f"http://127.0.0.1:{port}"
        st, h, body, _ = curl(base + "/v1/x?q=1", "-H", "Authorization: Bearer good")
        self.assertEqual(st, 200, body)
        seen = dict(json.loads(body)["headers"])
        self.assertEqual(seen.get("x-user"), "alice")         # copied from the check
        self.assertEqual(seen.get("x-who"), "user=alice")     # and read as a request variable
        self.assertNotIn("x-other", seen)                      # not listed in copy
        check = self.authz.seen[-1]
        self.assertEqual(check.get("authorization"), "Bearer good")
        self.assertEqual(check.get("x-original-method"), "GET")
        self.assertEqual(check.get("x-original-uri"), "/v1/x?q=1")

        n = len(up.requests)
        st, h, body, _ = curl(base + "/v1/x", "-H", "Authorization: Bearer bad")
        self.assertEqual(st, 401)
        err = json.loads(body)["error"]
        self.assertEqual(err["code"], "UNAUTHORIZED")
        self.assertEqual(err["detail"], "the check refused the credentials")   # pt_req_reject
        self.assertEqual(h.get("www-authenticate"), 'Bearer realm="test"')     # kept by the refusal
        st, h, body, _ = curl(base + "/v1/x")
        self.assertEqual(st, 403)
        # a gRPC client gets the refusal as a gRPC status (Trailers-Only), not JSON
        # (python3-h2: curl 7.88 calls the RST_STREAM(NO_ERROR) after an early answer an error)
        for ctype, auth, code, msg in (
                ("application/grpc", "Bearer bad", "16", "the check refused the credentials"),
                ("application/grpc-web+proto", "Bearer bad", "16", "the check refused the credentials"),
                ("application/grpc", "", "7", "the check denied the request")):
            hdrs = [("content-type", ctype)] + ([("authorization", auth)] if auth else [])
            head, data, trailers, _ = h2_call(port, "/pkg.Svc/Call", hdrs, b"\0\0\0\0\0")
            self.assertEqual(head.get(":status"), "200", head)
            self.assertEqual(head.get("grpc-status"), code)
            self.assertEqual(head.get("grpc-message"), msg)
            self.assertEqual(head.get("content-type"), ctype)
            if code == "16":
                self.assertEqual(head.get("www-authenticate"), 'Bearer realm="test"')
            self.assertEqual(data, b"")
        self.assertEqual(len(up.requests), n)                  # refused ones never went upstream

        # the check times out (1 s) -> 503, fail closed
        st, h, body, _ = curl(base + "/v1/x", "-H", "Authorization: Bearer slow")
        self.assertEqual(st, 503, body)
        # no endpoint for the check: fail open / fail closed
        st, h, body, _ = curl(base + "/open/x")
        self.assertEqual(st, 200)
        self.assertEqual(dict(json.loads(body)["headers"]).get("x-authz-skipped"), "1")
        st, h, body, _ = curl(base + "/closed/x")
        self.assertEqual(st, 503)

        # clients that leave while their check is in flight: the abort hook
        # cancels the call; the server keeps serving
        procs = [subprocess.Popen(["curl", "-s", "--max-time", "0.3", "-H",
                                   "Authorization: Bearer slow", base + "/v1/gone"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(5)]
        for p in procs:
            p.wait(10)
        time.sleep(3.5)  # let the slow checks answer into cancelled calls
        st, h, body, _ = curl(base + "/v1/x", "-H", "Authorization: Bearer good")
        self.assertEqual(st, 200)

    def test_ext_authz_config_errors(self):
        port = free_port()
        cfg = os.path.join(self._tmpdir(), "p.yaml")
        with open(cfg, "w") as f:
            f.write(f"""listeners: [ {{ address: "127.0.0.1:{port}" }} ]
plugins: [ {{ path: "{AUTHZ}" }} ]
clusters: [ {{ name: authz, endpoints: [ "127.0.0.1:1" ] }} ]
routes:
  - match: {{ prefix: / }}
    respond: {{ status: 200 }}
    filters:
      - ext_authz: {{ cluster: nosuch }}
""")
        p = subprocess.run([BIN, "--validate", "-c", cfg], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, r"p\.yaml:8:\d+: .*unknown cluster 'nosuch'")

    def _tmpdir(self):
        import tempfile
        d = tempfile.mkdtemp(prefix="portico-sdk-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    # ---- response bodies transformed as they stream ----------------------

    def _gzip_config(self, up, port, extra=""):
        return f"""
listeners: [ {{ address: "127.0.0.1:{port}", h2c: true }} ]
plugins: [ {{ path: "{GZIP}" }} ]
clusters: [ {{ name: web, endpoints: [ "127.0.0.1:{up.port}" ] }} ]
routes:
  - match: {{ prefix: /slowgz/ }}
    proxy: {{ cluster: web }}
    filters: [ {{ rewrite: {{ prefix: /slowgz/, replace: / }} }},
               {{ test_gzip: {{ head_delay_ms: 30, body_delay_ms: 30 }} }} ]
  - match: {{ prefix: / }}
    proxy: {{ cluster: web }}
    filters: [ {{ test_gzip: {{ min_size: 100 }} }} ]
"""

    def test_gzip_response_streaming(self):
        up = self.echo()
        port = free_port()
        self.start(self._gzip_config(up, port), port)
        base = f"http://127.0.0.1:{port}"
        for proto in ([], ["--http2-prior-knowledge"]):
            for path, want in (("/big/300000", b"b" * 300000),
                               ("/chunked/50", b"x" * 50000),
                               ("/slowgz/big/200000", b"b" * 200000),
                               ("/slowgz/chunked/20", b"x" * 20000)):
                st, h, body, err = curl(base + path, "-H", "Accept-Encoding: gzip", *proto)
                self.assertEqual(st, 200, (path, proto, err))
                self.assertEqual(h.get("content-encoding"), "gzip", (path, h))
                self.assertNotIn("content-length", h)           # the filter dropped it
                self.assertIn("Accept-Encoding", h.get("vary", ""))
                self.assertEqual(gzip.decompress(body), want, (path, proto))
                self.assertLess(len(body), len(want) // 10)     # really compressed
            # without Accept-Encoding: untouched, length kept
            st, h, body, _ = curl(base + "/big/5000", *proto)
            self.assertEqual((st, h.get("content-length"), h.get("content-encoding")),
                             (200, "5000", None))
            self.assertEqual(body, b"b" * 5000)
            # below min_size: untouched
            st, h, body, _ = curl(base + "/big/50", "-H", "Accept-Encoding: gzip", *proto)
            self.assertEqual((h.get("content-length"), body), ("50", b"b" * 50))

    def test_gzip_client_leaves_while_suspended(self):
        up = self.echo()
        port = free_port()
        self.start(self._gzip_config(up, port), port)
        base = f"http://127.0.0.1:{port}"
        # clients that go away while the response head or body waits in a filter
        for _ in range(4):
            subprocess.run(["curl", "-s", "--max-time", "0.02", "-H", "Accept-Encoding: gzip",
                            base + "/slowgz/big/100000"], capture_output=True)
        time.sleep(0.2)
        st, h, body, _ = curl(base + "/slowgz/big/1000", "-H", "Accept-Encoding: gzip")
        self.assertEqual(st, 200)
        self.assertEqual(gzip.decompress(body), b"b" * 1000)

    # ---- request bodies transformed before the upstream call -------------

    def test_request_body_rewrite(self):
        up = self.echo()
        port = free_port()
        self.start(f"""
listeners: [ {{ address: "127.0.0.1:{port}", h2c: true }} ]
plugins: [ {{ path: "{REWRITE}" }} ]
clusters: [ {{ name: web, endpoints: [ "127.0.0.1:{up.port}" ] }} ]
routes:
  - match: {{ prefix: /buffered/ }}
    request_buffering: true
    max_body: 1m
    proxy: {{ cluster: web }}
    filters: [ {{ test_rewrite: {{ from: cat, to: tiger, deny: forbidden }} }} ]
  - match: {{ prefix: /checked/ }}
    request_buffering: true
    proxy: {{ cluster: web }}
    filters: [ {{ test_rewrite: {{ from: cat, to: tiger, deny: forbidden, check_delay_ms: 5 }} }} ]
  - match: {{ prefix: /streamed/ }}
    proxy: {{ cluster: web }}
    filters: [ {{ test_rewrite: {{ from: cat, to: tiger }} }} ]
""", port)
        base = f"http://127.0.0.1:{port}"
        small = b"a cat and a cat"
        large = b"".join(b"%06d cat|" % i for i in range(30000))   # ~330 KB, matches across chunks
        for proto in ([], ["--http2-prior-knowledge"]):
            for prefix in ("/buffered/", "/checked/", "/streamed/"):
                for body in (small, large):
                    st, h, out, err = post(base + prefix + "x", body, *proto)
                    self.assertEqual(st, 200, (prefix, proto, err, out[:200]))
                    got = up.requests[-1]
                    want = body.replace(b"cat", b"tiger")
                    self.assertEqual(got["body"], want, (prefix, proto))
                    if prefix == "/streamed/":
                        # the length changed on the way: chunked upstream
                        self.assertEqual(got["headers"].get("transfer-encoding"), "chunked")
                        self.assertNotIn("content-length", got["headers"])
                    else:
                        self.assertEqual(got["headers"].get("content-length"), str(len(want)))
            # refused before anything reached the upstream
            for prefix in ("/buffered/", "/checked/"):
                n = len(up.requests)
                st, h, out, _ = post(base + prefix + "x", b"x" * 100000 + b"forbidden" + b"y" * 10,
                                     *proto)
                self.assertEqual(st, 400, out)
                err = json.loads(out)["error"]
                self.assertEqual(err["code"], "INVALID")
                self.assertIn("denied word", err.get("detail", ""))
                self.assertEqual(len(up.requests), n)
        # within max_body (1m) as sent, over it once rewritten: 413 while the
        # client still sends, upstream untouched. (HTTP/2: nghttp, since
        # Debian's curl 7.88 reports the RST_STREAM(NO_ERROR) that RFC 9113
        # 8.1 asks for after an early answer as a failure.)
        big = b"cat" * 250000
        n = len(up.requests)
        st, h, out, _ = post(base + "/buffered/x", big)
        self.assertEqual(st, 413, out)
        self.assertIn("after filters", json.loads(out)["error"]["detail"])
        with tempfile.NamedTemporaryFile() as f:
            f.write(big)
            f.flush()
            p = subprocess.run(["nghttp", "-d", f.name, base + "/buffered/x"],
                               capture_output=True, timeout=20)
        self.assertEqual(json.loads(p.stdout)["error"]["code"], "LIMIT")
        self.assertEqual(len(up.requests), n)
        # the server is fine afterwards
        st, h, out, _ = post(base + "/streamed/x", b"cat")
        self.assertEqual(up.requests[-1]["body"], b"tiger")


if __name__ == "__main__":
    unittest.main()
