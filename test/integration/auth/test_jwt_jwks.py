"""
test_jwt_jwks.py -- the jwt filter with `jwks_uri`: the key set fetched over
https (certificate verified) by each worker through pt_fetch_*, from a JWKS
server run by the test. First fetch in flight (requests wait, then pass),
key rotation found through an unknown kid, the unknown-kid refetch
rate-limited, Cache-Control max-age refreshes, an outage keeping the last good
set, a server slower than jwks_timeout (503 in bounded time), an untrusted
certificate.
"""
import http.server
import json
import os
import socketserver
import ssl
import tempfile
import threading
import time

from portico_test import PorticoTestCase, curl, free_port, make_cert

import jwt_keys as K

CONFIG = """
listeners:
  - address: 127.0.0.1:{port}
workers: {workers}
clusters:
  - {{ name: echo, endpoints: [ "127.0.0.1:{echo}" ] }}
  - {{ name: idp, endpoints: [ "https://127.0.0.1:{jp}" ] {ca} }}
routes:
  - proxy: {{ cluster: echo }}
    filters:
      - jwt: {{ jwks_uri: "https://127.0.0.1:{jp}/keys.json", issuer: "{iss}",
               jwks_min_refresh: {min_refresh}, jwks_timeout: {timeout},
               forward_claims: {{ sub: x-user }} }}
"""


class JwksHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        srv = self.server
        with srv.lock:
            srv.fetches += 1
            body, status, delay, cc = srv.body, srv.status, srv.delay, srv.cc
        if delay:
            time.sleep(delay)
        data = json.dumps(body).encode() if status == 200 else b"down"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if cc:
            self.send_header("Cache-Control", cc)
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:
            pass  # portico gave up on a slow answer


class JwksServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, certdir, body):
        super().__init__(("127.0.0.1", 0), JwksHandler)
        self.crt, key = make_cert(certdir, "idp")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.crt, key)
        self.socket = ctx.wrap_socket(self.socket, server_side=True)
        self.port = self.server_address[1]
        self.lock = threading.Lock()
        self.fetches, self.body, self.status, self.delay, self.cc = 0, body, 200, 0, "max-age=300"
        self.t = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                  daemon=True)
        self.t.start()

    def handle_error(self, request, client_address):
        pass  # TLS connections portico closed early (timeouts, the untrusted-certificate test)

    def set(self, **kw):
        with self.lock:
            for k, v in kw.items():
                setattr(self, k, v)

    def count(self):
        with self.lock:
            return self.fetches

    def stop(self):
        self.shutdown()
        self.server_close()


class TestJwks(PorticoTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.keys = K.Keys("v1-")
        self.idp = JwksServer(self.tmp.name, self.keys.jwks())
        self.addCleanup(self.idp.stop)
        self.up = self.echo()
        self.port = free_port()

    def run_portico(self, workers=1, min_refresh="10s", trusted=True, timeout="3s"):
        with open(self.idp.crt, "rb") as f:
            pem = f.read()
        ca = ", ca_file: idp.pem" if trusted else ""
        return self.start(CONFIG.format(port=self.port, workers=workers, echo=self.up.port,
                                        jp=self.idp.port, ca=ca, iss=K.ISSUER,
                                        min_refresh=min_refresh, timeout=timeout),
                          self.port, workers=workers, extra_files={"idp.pem": pem})

    def get(self, tok):
        return curl("-H", "Authorization: Bearer " + tok, "http://127.0.0.1:%d/" % self.port)

    def wait_fetches(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while self.idp.count() < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.idp.count()

    def test_first_fetch_in_flight_requests_wait(self):
        self.idp.set(delay=0.7)
        t0 = time.monotonic()
        self.run_portico()
        results = []

        def one(alg):
            results.append(self.get(K.token(self.keys, alg))[0])
        threads = [threading.Thread(target=one, args=(a,)) for a in ("RS256", "ES256", "EdDSA", "PS512")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        self.assertEqual(results, [200] * 4)
        self.assertLess(time.monotonic() - t0, 8)
        self.assertEqual(self.idp.count(), 1)  # one fetch for the worker, the waiters shared it

    def test_rotation_through_unknown_kid_and_rate_limit(self):
        self.run_portico(min_refresh="4s")
        old = K.token(self.keys, "RS256")
        self.assertEqual(self.get(old)[0], 200)
        n = self.wait_fetches(1)
        stranger, new_keys = K.Keys("v3-"), K.Keys("v2-")
        time.sleep(4.1)  # past the refetch rate limit
        self.idp.set(body=new_keys.jwks())
        st, _, body, _ = self.get(K.token(new_keys, "ES384"))
        self.assertEqual(st, 200, body)            # unknown kid -> refetch -> good
        self.assertEqual(self.idp.count(), n + 1)
        # the old key left the set: its token is refused (the cache was flushed with the set)
        st, h, _, _ = self.get(old)
        self.assertEqual(st, 401)
        self.assertIn("unknown key id", h["www-authenticate"])
        # more unknown kids within jwks_min_refresh: no further fetch
        for _ in range(5):
            self.assertEqual(self.get(K.token(stranger, "RS256"))[0], 401)
        self.assertEqual(self.idp.count(), n + 1)

    def test_max_age_refresh_and_outage_keeps_last_set(self):
        self.idp.set(cc="public, max-age=1")
        self.run_portico(min_refresh="500ms")
        tok = K.token(self.keys, "EdDSA")
        self.assertEqual(self.get(tok)[0], 200)
        self.assertGreaterEqual(self.wait_fetches(3, timeout=6), 3)  # refreshed in the background
        self.idp.set(status=503)
        n = self.idp.count()
        self.wait_fetches(n + 2, timeout=6)
        for alg in ("EdDSA", "RS256"):  # fresh tokens: verified against the last good set
            st, _, body, _ = self.get(K.token(self.keys, alg))
            self.assertEqual(st, 200, body)
        self.idp.stop()  # the issuer is gone altogether
        time.sleep(1.5)
        self.assertEqual(self.get(K.token(self.keys, "ES256"))[0], 200)

    def test_slow_issuer_bounded_by_timeout(self):
        self.idp.set(delay=3)
        self.run_portico(timeout="1s")
        t0 = time.monotonic()
        st, _, body, _ = self.get(K.token(self.keys, "RS256"))
        self.assertEqual(st, 503, body)
        self.assertEqual(json.loads(body)["error"]["code"], "UNAVAILABLE")
        self.assertLess(time.monotonic() - t0, 2.5)
        self.assertEqual(len(self.up.requests), 0)

    def test_untrusted_certificate(self):
        self.run_portico(trusted=False)
        st, _, _, _ = self.get(K.token(self.keys, "RS256"))
        self.assertEqual(st, 503)
        self.assertEqual(len(self.up.requests), 0)

    def test_two_workers_each_fetch(self):
        self.run_portico(workers=2)
        for _ in range(6):
            self.assertEqual(self.get(K.token(self.keys, "ES256"))[0], 200)
        self.assertLessEqual(self.wait_fetches(2), 2)


if __name__ == "__main__":
    import unittest
    unittest.main()
