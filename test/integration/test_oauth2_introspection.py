"""
oauth2_introspection (plugins/oauth2_introspection.c) through the real binary
against a real RFC 7662 introspection server (an in-process HTTP server that
checks the client's HTTP Basic credentials and the form body): active and
inactive tokens, the per-worker cache (hits, expiry, never past `exp`), the
server down or answering garbage (503, not cached), the answers' headers and
JSON bodies, and that refused requests never reach the upstream.
"""
import base64
import http.server
import json
import os
import shutil
import socketserver
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

from portico_test import BIN, PorticoTestCase, curl, free_port

CLIENT_ID = "portico gw"
SECRET = "s3cr&t:=+/x"  # every byte that must be form-encoded before base64


class IdpHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(n).decode())
        srv = self.server
        want = "Basic " + base64.b64encode(
            (urllib.parse.quote_plus(CLIENT_ID) + ":" + urllib.parse.quote_plus(SECRET))
            .encode()).decode()
        with srv.lock:
            srv.calls.append({"form": form, "auth": self.headers.get("Authorization"),
                              "ctype": self.headers.get("Content-Type")})
        if self.headers.get("Authorization") != want:
            return self.answer(401, {"error": "invalid_client"})
        if srv.mode == "down":  # the connection dropped without an answer
            self.close_connection = True
            return
        if srv.mode == "500":
            return self.answer(500, {"error": "boom"})
        if srv.mode == "garbage":
            return self.answer(200, {"no": "active member"})
        tok = form.get("token", [""])[0]
        if tok.startswith("good"):
            return self.answer(200, {"active": True, "sub": "user-" + tok, "client_id": "app",
                                     "scope": "read write", "exp": int(time.time()) + 3600,
                                     "aud": ["api", "web"], "ext": {"nested": 1}})
        if tok == "expired":
            return self.answer(200, {"active": True, "sub": "x", "exp": int(time.time()) - 10})
        return self.answer(200, {"active": False})

    def answer(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Idp(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), IdpHandler)
        self.port = self.server_address[1]
        self.calls, self.lock, self.mode = [], threading.Lock(), "ok"
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def stop(self):
        self.shutdown()
        self.server_close()


class OAuth2IntrospectionTest(PorticoTestCase):
    def setUp(self):
        super().setUp()
        self.idp = Idp()
        self.addCleanup(self.idp.stop)
        self.up = self.echo()

    def config(self, port, idp_port, cache="30s"):
        return f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
clusters:
  - {{ name: web, endpoints: [ "127.0.0.1:{self.up.port}" ] }}
  - {{ name: idp, endpoints: [ "http://127.0.0.1:{idp_port}" ], retries: 0 }}
routes:
  - match: {{ prefix: / }}
    proxy: {{ cluster: web }}
    filters:
      - oauth2_introspection: {{ endpoint: "http://127.0.0.1:{idp_port}/oauth2/introspect",
                                client_id: "{CLIENT_ID}", client_secret_file: idp.secret,
                                cache: {cache}, timeout: 1s }}
"""

    def run_gw(self, **kw):
        port = free_port()
        self.start(self.config(port, self.idp.port, **kw), port, workers=1,
                   extra_files={"idp.secret": SECRET + "\n"})
        return f"http://127.0.0.1:{port}/r"

    def test_active_token_and_cache(self):
        url = self.run_gw()
        st, _, body, _ = curl(url, "-H", "Authorization: Bearer good1")
        self.assertEqual(st, 200, body)
        self.assertEqual(len(self.idp.calls), 1)
        c = self.idp.calls[0]
        self.assertEqual(c["form"], {"token": ["good1"], "token_type_hint": ["access_token"]})
        self.assertEqual(c["ctype"], "application/x-www-form-urlencoded")
        # the same token again: answered from the cache
        for _ in range(3):
            self.assertEqual(curl(url, "-H", "Authorization: bearer  good1")[0], 200)
        self.assertEqual(len(self.idp.calls), 1)
        self.assertEqual(len(self.up.requests), 4)
        # a token with bytes to encode reaches the server intact
        self.assertEqual(curl(url, "-H", "Authorization: Bearer good+/=%&x")[0], 200)
        self.assertEqual(self.idp.calls[-1]["form"]["token"], ["good+/=%&x"])

    def test_inactive_and_missing(self):
        url = self.run_gw()
        st, h, body, _ = curl(url, "-H", "Authorization: Bearer nope")
        self.assertEqual(st, 401)
        self.assertTrue(h["www-authenticate"].startswith('Bearer error="invalid_token"'))
        err = json.loads(body)["error"]
        self.assertEqual(err["code"], "UNAUTHORIZED")
        self.assertEqual(err["detail"], "the token is not active")
        st, h, _, _ = curl(url, "-H", "Authorization: Bearer nope")  # cached verdict
        self.assertEqual(st, 401)
        self.assertEqual(len(self.idp.calls), 1)
        st, h, _, _ = curl(url, "-H", "Authorization: Bearer expired")  # exp in the past
        self.assertEqual(st, 401)
        st, h, body, _ = curl(url)
        self.assertEqual((st, h["www-authenticate"]), (401, 'Bearer realm="portico"'))
        st, _, _, _ = curl(url, "-H", "Authorization: Basic dTpw")
        self.assertEqual(st, 401)
        self.assertEqual(len(self.idp.calls), 2)  # neither of the last two asked the server
        self.assertEqual(self.up.requests, [])     # no refusal reached the upstream

    def test_cache_expires(self):
        url = self.run_gw(cache="300ms")
        self.assertEqual(curl(url, "-H", "Authorization: Bearer good2")[0], 200)
        self.assertEqual(curl(url, "-H", "Authorization: Bearer good2")[0], 200)
        self.assertEqual(len(self.idp.calls), 1)
        time.sleep(0.4)
        self.assertEqual(curl(url, "-H", "Authorization: Bearer good2")[0], 200)
        self.assertEqual(len(self.idp.calls), 2)

    def test_server_failures_are_503_and_not_cached(self):
        url = self.run_gw()
        for mode in ("500", "garbage"):
            self.idp.mode = mode
            st, _, body, _ = curl(url, "-H", "Authorization: Bearer good3")
            self.assertEqual(st, 503, body)
            self.assertEqual(json.loads(body)["error"]["code"], "UNAVAILABLE")
        self.idp.mode = "ok"
        self.assertEqual(curl(url, "-H", "Authorization: Bearer good3")[0], 200)  # not cached
        self.idp.mode = "down"
        self.assertEqual(curl(url, "-H", "Authorization: Bearer good4")[0], 503)
        self.idp.stop()  # now refused outright
        t0 = time.monotonic()
        st, _, _, _ = curl(url, "-H", "Authorization: Bearer good4")
        self.assertEqual(st, 503)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(curl(url, "-H", "Authorization: Bearer good3")[0], 200)  # cached
        self.assertEqual(len(self.up.requests), 2)

    def test_claims_as_variables(self):
        """The answer's members become oauth2.* variables: the headers filter forwards
        ${oauth2.sub} (a client-sent x-sub is replaced), arrays are joined with spaces, and
        a later rate_limit keys on var:oauth2.sub (two tokens of one subject share a budget)."""
        port = free_port()
        idp = self.idp.port
        self.start(f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
clusters:
  - {{ name: web, endpoints: [ "127.0.0.1:{self.up.port}" ] }}
  - {{ name: idp, endpoints: [ "http://127.0.0.1:{idp}" ] }}
routes:
  - match: {{ prefix: / }}
    proxy: {{ cluster: web }}
    filters:
      - oauth2_introspection: {{ endpoint: "http://127.0.0.1:{idp}/i", client_id: "{CLIENT_ID}",
                                client_secret_file: idp.secret }}
      - headers: {{ request: {{ set: {{ x-sub: "${{oauth2.sub}}", x-aud: "${{oauth2.aud}}",
                                       x-scope: "${{oauth2.scope}}" }} }} }}
      - rate_limit: {{ requests: 2, per: 1h, key: "var:oauth2.sub" }}
""", port, extra_files={"idp.secret": SECRET + "\n"})
        url = f"http://127.0.0.1:{port}/v"
        st, _, body, _ = curl(url, "-H", "Authorization: Bearer goodA", "-H", "x-sub: spoofed")
        self.assertEqual(st, 200)
        seen = dict(json.loads(body)["headers"])
        self.assertEqual(seen["x-sub"], "user-goodA")
        self.assertEqual(seen["x-aud"], "api web")
        self.assertEqual(seen["x-scope"], "read write")
        self.assertEqual(curl(url, "-H", "Authorization: Bearer goodA")[0], 200)  # cached
        self.assertEqual(curl(url, "-H", "Authorization: Bearer goodA")[0], 429)  # same sub
        self.assertEqual(curl(url, "-H", "Authorization: Bearer goodB")[0], 200)  # other sub

    def test_config_errors(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        cfg = os.path.join(d, "p.yaml")
        with open(cfg, "w") as f:
            f.write("""listeners: [ { address: "127.0.0.1:1" } ]
clusters: [ { name: idp, endpoints: [ "http://127.0.0.1:9" ] } ]
routes:
  - match: { prefix: / }
    respond: { status: 200 }
    filters:
      - oauth2_introspection: { endpoint: "http://127.0.0.1:10/i", client_id: a, client_secret_file: s }
      - oauth2_introspection: { endpoint: "ftp://x/i", client_id: a, client_secret_file: s }
      - oauth2_introspection: { endpoint: "http://127.0.0.1:9/i", client_id: a, client_secret_file: missing }
      - oauth2_introspection: { endpoint: "http://x/i", cluster: nope, client_id: a, client_secret_file: s }
""")
        with open(os.path.join(d, "s"), "w") as f:
            f.write("secret\n")
        p = subprocess.run([BIN, "--validate", "-c", cfg], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        e = p.stderr
        self.assertRegex(e, r"p\.yaml:7:\d+: endpoint 'http://127.0.0.1:10/i': no cluster has")
        self.assertRegex(e, r"p\.yaml:8:\d+: endpoint 'ftp://x/i': expected an http")
        self.assertRegex(e, r"p\.yaml:9:\d+: cannot read client_secret_file")
        self.assertRegex(e, r"p\.yaml:10:\d+: unknown cluster 'nope'")


if __name__ == "__main__":
    unittest.main()
