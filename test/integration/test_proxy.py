"""
Proxying end to end: routing, filters, request ids, forwarding headers,
admin endpoints, access log, over HTTP/1.1, h2c and h2 over TLS.
"""
import json
import os
import shutil
import socket
import subprocess
import time
import unittest

from portico_test import PorticoTestCase, curl, free_port, make_cert, raw_request, BIN


def base_config(port, echo_port, admin_port, extra_routes="", top=""):
    return f"""
listeners:
  - address: 127.0.0.1:{port}
admin: {{ address: 127.0.0.1:{admin_port} }}
access_log: {{ path: access.log }}
{top}
clusters:
  - name: web
    protocol: http
    endpoints: [ "127.0.0.1:{echo_port}" ]
routes:
{extra_routes}
  - name: api
    match: {{ prefix: /api/ }}
    proxy: {{ cluster: web }}
    filters:
      - rewrite: {{ prefix: /api/, replace: / }}
      - headers:
          request:  {{ set: {{ x-env: prod }}, remove: [ x-internal ] }}
          response: {{ add: {{ x-served-by: portico }} }}
  - name: users
    match: {{ template: "/users/{{id}}/books/{{book}}", methods: [GET] }}
    proxy: {{ cluster: web }}
    filters:
      - headers:
          request: {{ set: {{ x-user: "${{param.id}}", x-book: "${{param.book}}", x-client: "${{client_addr}}" }} }}
  - name: host
    match: {{ prefix: /, host: "*.example.com" }}
    proxy: {{ cluster: web }}
    filters:
      - headers: {{ response: {{ set: {{ x-route: host }} }} }}
"""


class ProxyTest(PorticoTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.echo()
        self.port, self.admin = free_port(), free_port()
        self.p = self.start(base_config(self.port, self.up.port, self.admin), self.port, workers=2)
        self.url = f"http://127.0.0.1:{self.port}"

    def test_get_through_rewrite_and_headers(self):
        st, h, body, _ = curl(f"{self.url}/api/items?x=1", "-H", "X-Internal: secret")
        self.assertEqual(st, 200)
        j = json.loads(body)
        self.assertEqual(j["path"], "/items?x=1")
        hdrs = dict(j["headers"])
        self.assertEqual(hdrs.get("x-env"), "prod")
        self.assertNotIn("x-internal", hdrs)
        self.assertEqual(h.get("x-served-by"), "portico")
        # request id reaches upstream and response
        self.assertRegex(h["x-request-id"], r"^[0-9a-f]{32}$")
        self.assertEqual(hdrs.get("x-request-id"), h["x-request-id"])
        # forwarding headers
        self.assertEqual(hdrs.get("x-forwarded-for"), "127.0.0.1")
        self.assertEqual(hdrs.get("x-forwarded-proto"), "http")
        self.assertEqual(hdrs.get("x-forwarded-host"), f"127.0.0.1:{self.port}")

    def test_client_request_id_kept_or_replaced(self):
        st, h, body, _ = curl(f"{self.url}/api/x", "-H", "X-Request-Id: my-id.42")
        self.assertEqual(h["x-request-id"], "my-id.42")
        st, h, body, _ = curl(f"{self.url}/api/x", "-H", "X-Request-Id: bad id {}")
        self.assertRegex(h["x-request-id"], r"^[0-9a-f]{32}$")

    def test_template_params_and_method(self):
        st, h, body, _ = curl(f"{self.url}/users/42/books/7")
        self.assertEqual(st, 200)
        hdrs = dict(json.loads(body)["headers"])
        self.assertEqual(hdrs["x-user"], "42")
        self.assertEqual(hdrs["x-book"], "7")
        self.assertEqual(hdrs["x-client"], "127.0.0.1")
        st, h, body, _ = curl("-X", "POST", f"{self.url}/users/42/books/7")
        self.assertEqual(st, 404)

    def test_host_wildcard(self):
        st, h, body, _ = curl(f"{self.url}/anything", "-H", "Host: a.b.example.com")
        self.assertEqual(st, 200)
        self.assertEqual(h.get("x-route"), "host")
        st, h, body, _ = curl(f"{self.url}/anything", "-H", "Host: example.org")
        self.assertEqual(st, 404)

    def test_no_route_is_json_404(self):
        st, h, body, _ = curl(f"{self.url}/nothing/here")
        self.assertEqual(st, 404)
        self.assertTrue(h["content-type"].startswith("application/json"))
        err = json.loads(body)["error"]
        self.assertEqual(err["code"], "NOT_FOUND")
        self.assertEqual(err["request_id"], h["x-request-id"])

    def test_post_body_streams_both_ways(self):
        data = os.urandom(300000).hex()  # 600 KB: more than any single buffer, under max_body
        path = os.path.join(self.p.dir, "body.txt")
        with open(path, "w") as f:
            f.write(data)
        for extra in ([], ["-H", "Transfer-Encoding: chunked"], ["--http2-prior-knowledge"]):
            st, h, body, err = curl("-X", "POST", "--data-binary", "@" + path,
                                    "-H", "Content-Type: text/plain", f"{self.url}/api/upload", *extra)
            self.assertEqual(st, 200, err)
            j = json.loads(body)
            self.assertEqual(j["body_len"], len(data))
            self.assertEqual(j["body"], data)

    def test_body_over_limit_is_413(self):
        path = os.path.join(self.p.dir, "big.bin")
        with open(path, "wb") as f:
            f.write(b"z" * (1024 * 1024 + 1))
        st, h, body, _ = curl("-X", "POST", "--data-binary", "@" + path, f"{self.url}/api/up")
        self.assertEqual(st, 413)
        self.assertEqual(json.loads(body)["error"]["code"], "LIMIT")
        st, h, body, _ = curl("-X", "POST", "--data-binary", "@" + path,
                              "-H", "Transfer-Encoding: chunked", f"{self.url}/api/up")
        self.assertEqual(st, 413)
        self.assertEqual(curl(f"{self.url}/api/still-ok")[0], 200)

    def test_big_and_chunked_responses(self):
        st, h, body, _ = curl(f"{self.url}/api/big/3000000")
        self.assertEqual(st, 200)
        self.assertEqual(len(body), 3000000)
        st, h, body, _ = curl(f"{self.url}/api/chunked/50")
        self.assertEqual(st, 200)
        self.assertEqual(body, b"x" * 50000)

    def test_hop_by_hop_and_response_headers(self):
        st, h, body, _ = curl(f"{self.url}/api/headers", "-H", "Connection: x-drop-me",
                              "-H", "X-Drop-Me: 1", "-H", "Keep-Alive: 5")
        hdrs = dict(json.loads(body)["headers"])
        self.assertNotIn("x-drop-me", hdrs)
        self.assertNotIn("keep-alive", hdrs)
        self.assertEqual(h.get("x-upstream"), "yes")
        self.assertNotIn("keep-alive", h)
        self.assertEqual(h.get("set-cookie"), ["a=1", "b=2"])

    def test_upstream_status_passthrough(self):
        st, h, body, _ = curl(f"{self.url}/api/status/503")
        self.assertEqual(st, 503)
        self.assertEqual(json.loads(body), {"status": 503})

    def test_http2_prior_knowledge(self):
        st, h, body, _ = curl("--http2-prior-knowledge", f"{self.url}/api/v2?q=1")
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body)["path"], "/v2?q=1")

    def test_h2c_upgrade(self):
        st, h, body, _ = curl("--http2", f"{self.url}/api/up")
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body)["path"], "/up")

    def test_nghttp_many_streams(self):
        p = subprocess.run(["nghttp", "-n", "-s", "-m", "20", f"{self.url}/api/n"],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_admin_endpoints(self):
        a = f"http://127.0.0.1:{self.admin}"
        self.assertEqual(curl(f"{a}/healthz")[0], 200)
        self.assertEqual(curl(f"{a}/ready")[0], 200)
        curl(f"{self.url}/api/m")
        st, h, body, _ = curl(f"{a}/metrics")
        self.assertEqual(st, 200)
        text = body.decode()
        self.assertIn('portico_requests_total{route="api",code="200"}', text)
        self.assertIn("portico_connections_active", text)
        st, h, body, _ = curl(f"{a}/config")
        self.assertEqual(st, 200)
        self.assertIn("clusters", json.loads(body))
        # admin paths are not served on the public listener (H1-16)
        self.assertEqual(curl(f"{self.url}/metrics")[0], 404)

    def test_access_log_line(self):
        curl(f"{self.url}/api/logme?z=9", "-H", "User-Agent: t\"ua")
        path = os.path.join(self.p.dir, "access.log")
        line = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and line is None:
            if os.path.exists(path):
                with open(path) as f:
                    for l in f:
                        if "/logme" in l:
                            line = json.loads(l)
            time.sleep(0.05)
        self.assertIsNotNone(line)
        self.assertEqual(line["method"], "GET")
        self.assertEqual(line["status"], 200)
        self.assertEqual(line["route"], "api")
        self.assertEqual(line["protocol"], "HTTP/1.1")
        self.assertTrue(line["upstream"].startswith("http://127.0.0.1:"))
        self.assertEqual(line["user_agent"], 't"ua')


class TlsTest(PorticoTestCase):
    def test_h2_and_h1_over_tls(self):
        up = self.echo()
        port = free_port()
        import tempfile
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        crt, key = make_cert(d)
        cfg = f"""
listeners:
  - address: 127.0.0.1:{port}
    tls: {{ cert: {crt}, key: {key} }}
clusters:
  - name: web
    endpoints: [ "127.0.0.1:{up.port}" ]
routes:
  - match: {{ prefix: / }}
    proxy: {{ cluster: web }}
"""
        self.start(cfg, port)
        url = f"https://127.0.0.1:{port}/tls"
        st, h, body, err = curl("--cacert", crt, "--http2", "-w", "%{http_version}", url)
        self.assertEqual(st, 200, err)
        self.assertTrue(body.endswith(b"2"), body[-10:])
        self.assertEqual(dict(json.loads(body[:-1])["headers"])["x-forwarded-proto"], "https")
        st, h, body, err = curl("--cacert", crt, "--http1.1", "-w", "%{http_version}", url)
        self.assertEqual(st, 200, err)
        self.assertTrue(body.endswith(b"1.1"))


class CliTest(unittest.TestCase):
    def test_validate_ok_and_errors(self):
        import tempfile
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        good = os.path.join(d, "good.yaml")
        with open(good, "w") as f:
            f.write("listeners:\n  - address: 127.0.0.1:1\nroutes: []\n")
        p = subprocess.run([BIN, "--validate", "-c", good], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        bad = os.path.join(d, "bad.yaml")
        with open(bad, "w") as f:
            f.write("listeners:\n  - address: 127.0.0.1:1\n    tsl: {}\nroutes:\n"
                    "  - match: { prefix: / }\n    proxy: { cluster: nope }\n")
        p = subprocess.run([BIN, "--validate", "-c", bad], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, bad.replace(".", r"\.") + r":3:5: .*tsl")
        # cross-references are checked once the file parses cleanly
        with open(bad, "w") as f:
            f.write("listeners:\n  - address: 127.0.0.1:1\nroutes:\n"
                    "  - match: { prefix: / }\n    proxy: { cluster: nope }\n")
        p = subprocess.run([BIN, "--validate", "-c", bad], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, bad.replace(".", r"\.") + r":5:\d+: .*nope")

    def test_version_help(self):
        p = subprocess.run([BIN, "--version"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0)
        self.assertIn("portico", p.stdout)
        p = subprocess.run([BIN, "--help"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0)
        self.assertIn("--validate", p.stdout)


if __name__ == "__main__":
    unittest.main()
