"""
Active health checks (issue 12): `health_check:` on clusters. One prober on
the main loop; its verdict steers every worker's pick.
"""
import http.client
import json
import os
import subprocess
import time
import unittest

from hc_support import NOT_SERVING, SERVING, GrpcHealthServer, HealthServer, wait_until
from portico_test import BIN, PorticoTestCase, free_port, make_cert, wait_port

INTERVAL = 0.2  # seconds, as configured below


def get(port, path="/x", timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read(), dict((k.lower(), v) for k, v in r.getheaders())
    finally:
        c.close()


def config(port, admin, endpoints, hc, protocol="http", workers_extra=""):
    eps = ", ".join('"127.0.0.1:%d"' % p for p in endpoints)
    return f"""
listeners:
  - address: 127.0.0.1:{port}
admin: {{ address: 127.0.0.1:{admin} }}
{workers_extra}
clusters:
  - name: app
    protocol: {protocol}
    endpoints: [{eps}]
    retries: 0
    health_check: {hc}
routes:
  - match: {{ prefix: / }}
    {'respond: { body: "ok" }' if protocol == "grpc" else "proxy: { cluster: app }"}
"""


class HealthCheckCase(PorticoTestCase):
    def server(self, name, **kw):
        s = HealthServer(name, **kw)
        self.addCleanup(s.stop)
        return s

    def upstreams(self, admin):
        st, body, _ = get(admin, "/upstreams")
        self.assertEqual(st, 200)
        return {e["address"]: e for c in json.loads(body)["clusters"] for e in c["endpoints"]}

    def healthy(self, admin, port):
        return self.upstreams(admin)["http://127.0.0.1:%d" % port]["healthy"]

    def served_by(self, port, n):
        names = []
        for _ in range(n):
            st, body, _ = get(port)
            self.assertEqual(st, 200, body)
            names.append(body.strip().decode())
        return names


class HttpHealthTest(HealthCheckCase):
    HC = "{ path: /healthz, interval: 200ms, timeout: 150ms, unhealthy: 2, healthy: 1, expect: [200-299] }"

    def test_sick_endpoint_ejected_within_interval_x_unhealthy_and_back(self):
        a, b = self.server("a"), self.server("b")
        port, admin = free_port(), free_port()
        p = self.start(config(port, admin, [a.port, b.port], self.HC), port)
        wait_port(admin)
        self.assertTrue(wait_until(lambda: b.probes >= 1 and a.probes >= 1, 5))
        self.assertEqual(set(self.served_by(port, 6)), {"a", "b"})
        self.assertIn("portico-health-check", b.probe_agents)

        b.health_status = 503
        took = wait_until(lambda: not self.healthy(admin, b.port), 5)
        self.assertIsNotNone(took, "b never went down")
        # two failed checks: at most interval x unhealthy after the first probe that
        # saw the 503 (which is at most one interval away), plus scheduling slack
        self.assertLessEqual(took, INTERVAL * 3 + 1.0)  # slack: a shared, noisy machine
        self.assertEqual(self.served_by(port, 8), ["a"] * 8)
        up = self.upstreams(admin)["http://127.0.0.1:%d" % b.port]
        self.assertEqual(up["last_error"], "status 503")
        self.assertGreaterEqual(up["failures"], 2)

        b.health_status = 200
        took = wait_until(lambda: self.healthy(admin, b.port), 5)
        self.assertIsNotNone(took, "b never came back")
        self.assertLessEqual(took, INTERVAL * 2 + 1.0)  # healthy: 1
        self.assertEqual(set(self.served_by(port, 6)), {"a", "b"})
        out = p.output()
        self.assertIn("endpoint http://127.0.0.1:%d is DOWN (2 failed checks: status 503)" % b.port,
                      out)
        self.assertIn("endpoint http://127.0.0.1:%d is UP (1 check passed)" % b.port, out)

        st, metrics, _ = get(admin, "/metrics")
        text = metrics.decode()
        self.assertIn('portico_upstream_endpoint_healthy{cluster="app",endpoint="http://127.0.0.1:%d"} 1'
                      % b.port, text)
        self.assertIn('portico_upstream_health_transitions_total{cluster="app",endpoint='
                      '"http://127.0.0.1:%d"} 2' % b.port, text)

    def test_expect_ranges(self):
        a = self.server("a")
        a.health_status = 204
        port, admin = free_port(), free_port()
        hc = "{ path: /healthz, interval: 100ms, timeout: 100ms, unhealthy: 1, healthy: 1, expect: [200, 301-302] }"
        self.start(config(port, admin, [a.port], hc), port)
        wait_port(admin)
        self.assertIsNotNone(wait_until(lambda: not self.healthy(admin, a.port), 5))
        a.health_status = 302
        self.assertIsNotNone(wait_until(lambda: self.healthy(admin, a.port), 5))

    def test_slow_health_endpoint_times_out(self):
        a, b = self.server("a"), self.server("b")
        port, admin = free_port(), free_port()
        hc = "{ path: /healthz, interval: 300ms, timeout: 100ms, unhealthy: 2, healthy: 1 }"
        self.start(config(port, admin, [a.port, b.port], hc), port)
        wait_port(admin)
        b.health_delay = 0.5
        self.assertIsNotNone(wait_until(lambda: not self.healthy(admin, b.port), 5))
        self.assertEqual(self.upstreams(admin)["http://127.0.0.1:%d" % b.port]["last_error"],
                         "timeout waiting for the answer")
        self.assertEqual(self.served_by(port, 4), ["a"] * 4)  # the rest of b still answers fast
        b.health_delay = 0.0
        self.assertIsNotNone(wait_until(lambda: self.healthy(admin, b.port), 5))

    def test_every_worker_follows_one_prober(self):
        """-w 2: probes at the backend are one per interval, not one per worker."""
        a, b = self.server("a"), self.server("b")
        port, admin = free_port(), free_port()
        self.start(config(port, admin, [a.port, b.port], self.HC), port, workers=2)
        wait_port(admin)
        time.sleep(0.3)
        t0 = time.monotonic()
        time.sleep(2.0)
        n = b.probes_between(t0, time.monotonic())
        self.assertGreaterEqual(n, 6)   # ~10 expected at 200 ms
        self.assertLessEqual(n, 12)     # two workers probing would give ~20
        b.health_status = 500
        self.assertIsNotNone(wait_until(lambda: not self.healthy(admin, b.port), 5))
        # many connections, so both workers' picks are exercised
        self.assertEqual(self.served_by(port, 20), ["a"] * 20)

    def test_state_survives_reload(self):
        a, b = self.server("a"), self.server("b")
        port, admin = free_port(), free_port()
        hc = "{ path: /healthz, interval: 1s, timeout: 300ms, unhealthy: 1, healthy: 3 }"
        p = self.start(config(port, admin, [a.port, b.port], hc), port)
        wait_port(admin)
        b.health_status = 503
        self.assertIsNotNone(wait_until(lambda: not self.healthy(admin, b.port), 5))
        checks = self.upstreams(admin)["http://127.0.0.1:%d" % b.port]["checks"]
        b.health_status = 200
        p.write_config(config(port, admin, [a.port, b.port], hc) + "\n# reloaded\n")
        p.reload()
        self.assertIsNotNone(wait_until(lambda: "configuration reloaded" in p.output(), 5))
        # still down (healthy: 3 needs three passes, 1 s apart), counters kept
        up = self.upstreams(admin)["http://127.0.0.1:%d" % b.port]
        self.assertFalse(up["healthy"])
        self.assertGreaterEqual(up["checks"], checks)
        self.assertEqual(self.served_by(port, 4), ["a"] * 4)


class HttpsHealthTest(HealthCheckCase):
    def tls_server(self, name, alpn=None):
        """A HealthServer over TLS (a fresh self-signed certificate for
        127.0.0.1/localhost, ALPN `alpn` when given): (server, cert file)."""
        import ssl
        import tempfile
        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        crt, key = make_cert(d.name)
        a = self.server(name)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        if alpn is not None:
            ctx.set_alpn_protocols(alpn)
        a.socket = ctx.wrap_socket(a.socket, server_side=True)
        return a, crt

    def test_https_checks_use_the_cluster_tls_settings(self):
        a, crt = self.tls_server("a")
        port, admin = free_port(), free_port()
        hc = "{ path: /healthz, interval: 200ms, timeout: 200ms, unhealthy: 1, healthy: 1 }"
        cfg = f"""
listeners:
  - address: 127.0.0.1:{port}
admin: {{ address: 127.0.0.1:{admin} }}
clusters:
  - name: good
    endpoints: [ "https://127.0.0.1:{a.port}" ]
    ca_file: {crt}
    health_check: {hc}
  - name: untrusted
    endpoints: [ "https://localhost:{a.port}" ]
    health_check: {hc}
routes:
  - match: {{ prefix: / }}
    proxy: {{ cluster: good }}
"""
        self.start(cfg, port)
        wait_port(admin)
        self.assertIsNotNone(wait_until(lambda: a.probes >= 2, 5))
        ups = self.upstreams(admin)
        self.assertTrue(ups["https://127.0.0.1:%d" % a.port]["healthy"])
        self.assertIsNotNone(wait_until(
            lambda: not self.upstreams(admin)["https://localhost:%d" % a.port]["healthy"], 5))
        self.assertIn("TLS handshake failed",
                      self.upstreams(admin)["https://localhost:%d" % a.port]["last_error"])


    def test_https_http2_rest_check_accepts_an_http1_server(self):
        """An `http2: true` https REST cluster whose server speaks only
        HTTP/1.1: calls fall back to HTTP/1.1 through ALPN, and so must the
        check (it offered only h2 and spoke HTTP/2 to it, failing)."""
        a, crt = self.tls_server("a", alpn=["http/1.1"])
        port, admin = free_port(), free_port()
        cfg = f"""
listeners:
  - address: 127.0.0.1:{port}
admin: {{ address: 127.0.0.1:{admin} }}
clusters:
  - name: app
    endpoints: [ "https://127.0.0.1:{a.port}" ]
    http2: true
    ca_file: {crt}
    retries: 0
    health_check: {{ path: /healthz, interval: 300ms, timeout: 300ms, unhealthy: 1, healthy: 1 }}
routes:
  - match: {{ prefix: / }}
    proxy: {{ cluster: app }}
"""
        self.start(cfg, port)
        wait_port(admin)
        self.assertIsNotNone(wait_until(lambda: a.probes >= 2, 5))
        ep = self.upstreams(admin)["https://127.0.0.1:%d" % a.port]
        self.assertTrue(ep["healthy"], ep["last_error"])
        self.assertEqual(ep["failures"], 0, ep["last_error"])
        st, body, _ = get(port)
        self.assertEqual((st, body), (200, b"a\n"))

    def test_grpc_https_check_verifies_the_authority_name(self):
        """A gRPC cluster with an `authority`: its calls check the authority's
        host against the certificate (gRPC's rule), and so must its health
        check (it checked the endpoint's address and marked a good server
        down)."""
        import tempfile
        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        crt, key = os.path.join(d.name, "books.pem"), os.path.join(d.name, "books.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                        "-out", crt, "-days", "2", "-subj", "/CN=books.test",
                        "-addext", "subjectAltName=DNS:books.test"], check=True, capture_output=True)
        with open(crt, "rb") as f, open(key, "rb") as k:
            g = GrpcHealthServer(tls=(f.read(), k.read()))
        self.addCleanup(g.stop)
        port, admin = free_port(), free_port()
        cfg = f"""
listeners:
  - address: 127.0.0.1:{port}
admin: {{ address: 127.0.0.1:{admin} }}
clusters:
  - name: books
    protocol: grpc
    endpoints: [ "https://127.0.0.1:{g.port}" ]
    authority: books.test
    ca_file: {crt}
    health_check: {{ interval: 300ms, timeout: 300ms, unhealthy: 1, healthy: 1 }}
  - name: wrong
    protocol: grpc
    endpoints: [ "https://127.0.0.1:{g.port}" ]
    authority: other.test
    ca_file: {crt}
    health_check: {{ interval: 300ms, timeout: 300ms, unhealthy: 1, healthy: 1 }}
  - name: web
    endpoints: [ "127.0.0.1:9" ]
routes:
  - match: {{ prefix: / }}
    proxy: {{ cluster: web }}
"""
        self.start(cfg, port)
        wait_port(admin)
        self.assertIsNotNone(wait_until(lambda: len(g.requests) >= 2, 5))

        def ep(cluster):
            st, body, _ = get(admin, "/upstreams")
            self.assertEqual(st, 200)
            return [c for c in json.loads(body)["clusters"] if c["name"] == cluster][0]["endpoints"][0]
        self.assertTrue(ep("books")["healthy"], ep("books")["last_error"])
        self.assertEqual(ep("books")["failures"], 0, ep("books")["last_error"])
        # the same server checked for a name its certificate does not carry: down
        self.assertIsNotNone(wait_until(lambda: not ep("wrong")["healthy"], 5))
        self.assertIn("TLS handshake failed", ep("wrong")["last_error"])

class FailOpenTest(HealthCheckCase):
    def run_all_sick(self, fail_open):
        a, b = self.server("a"), self.server("b")
        a.health_status = b.health_status = 503
        port, admin = free_port(), free_port()
        hc = ("{ path: /healthz, interval: 100ms, timeout: 100ms, unhealthy: 1, healthy: 1%s }"
              % ("" if fail_open is None else ", fail_open: %s" % str(fail_open).lower()))
        self.start(config(port, admin, [a.port, b.port], hc), port)
        wait_port(admin)
        self.assertIsNotNone(wait_until(
            lambda: not self.healthy(admin, a.port) and not self.healthy(admin, b.port), 5))
        return port, admin

    def test_all_unhealthy_fails_open_by_default(self):
        port, _ = self.run_all_sick(None)
        self.assertEqual(set(self.served_by(port, 6)), {"a", "b"})

    def test_all_unhealthy_503_with_fail_open_false(self):
        port, _ = self.run_all_sick(False)
        st, body, _ = get(port)
        self.assertEqual(st, 503)
        self.assertEqual(json.loads(body)["error"]["code"], "UNAVAILABLE")


class TcpHealthTest(HealthCheckCase):
    def test_tcp_check_ejects_a_closed_port_and_brings_it_back(self):
        a, b = self.server("a"), self.server("b")
        b_port = b.port
        port, admin = free_port(), free_port()
        hc = "{ type: tcp, interval: 200ms, timeout: 150ms, unhealthy: 2, healthy: 1 }"
        p = self.start(config(port, admin, [a.port, b_port], hc), port)
        wait_port(admin)
        time.sleep(0.5)
        self.assertEqual(b.probes, 0)  # tcp: no HTTP request
        b.stop()
        self.assertIsNotNone(wait_until(lambda: not self.healthy(admin, b_port), 5))
        self.assertIn("connect failed", self.upstreams(admin)["http://127.0.0.1:%d" % b_port]["last_error"])
        self.assertEqual(self.served_by(port, 5), ["a"] * 5)
        b2 = self.server("b2", port=b_port)
        self.assertIsNotNone(wait_until(lambda: self.healthy(admin, b_port), 5))
        self.assertIn("b2", self.served_by(port, 6))
        self.assertIn("is DOWN", p.output())


class GrpcHealthTest(HealthCheckCase):
    def test_grpc_health_v1_check(self):
        g1, g2 = GrpcHealthServer(), GrpcHealthServer()
        self.addCleanup(g1.stop)
        self.addCleanup(g2.stop)
        g1.status["shop.Cart"] = SERVING
        g2.status["shop.Cart"] = SERVING
        port, admin = free_port(), free_port()
        hc = "{ service: shop.Cart, interval: 200ms, timeout: 150ms, unhealthy: 2, healthy: 1 }"
        self.start(config(port, admin, [g1.port, g2.port], hc, protocol="grpc"), port)
        wait_port(admin)
        self.assertIsNotNone(wait_until(lambda: len(g2.requests) >= 2, 5))
        self.assertEqual(set(g2.requests), {"shop.Cart"})
        self.assertTrue(self.healthy(admin, g2.port))
        g2.status["shop.Cart"] = NOT_SERVING
        self.assertIsNotNone(wait_until(lambda: not self.healthy(admin, g2.port), 5))
        self.assertEqual(self.upstreams(admin)["http://127.0.0.1:%d" % g2.port]["last_error"],
                         "not SERVING")
        self.assertTrue(self.healthy(admin, g1.port))
        g2.status["shop.Cart"] = SERVING
        self.assertIsNotNone(wait_until(lambda: self.healthy(admin, g2.port), 5))
        del g2.status["shop.Cart"]  # NOT_FOUND: a gRPC error status is a failure too
        self.assertIsNotNone(wait_until(lambda: not self.healthy(admin, g2.port), 5))
        self.assertEqual(self.upstreams(admin)["http://127.0.0.1:%d" % g2.port]["last_error"],
                         "grpc-status 5")


class HealthConfigTest(unittest.TestCase):
    def validate(self, hc, protocol="http"):
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "p.yaml")
            with open(path, "w") as f:
                f.write(config(free_port(), free_port(), [9], hc, protocol=protocol))
            r = subprocess.run([BIN, "--validate", "-c", path], capture_output=True, text=True,
                               timeout=20)
            return r.returncode, r.stdout + r.stderr

    def test_errors_name_the_place(self):
        cases = [
            ("{ type: udp }", "unknown type 'udp'"),
            ("{ path: healthz }", "path must start with '/'"),
            ("{ interval: 1s, timeout: 2s }", "must not exceed interval"),
            ("{ expect: [200-99] }", "'200-99' is not a status"),
            ("{ type: tcp, path: /x }", "path is for type http"),
            ("{ service: x }", "service is for type grpc"),
            ("{ unhealthy: 0 }", "value 0 out of range"),
            ("{ bogus: 1 }", "bogus"),
        ]
        for hc, msg in cases:
            code, out = self.validate(hc)
            self.assertEqual(code, 1, hc)
            self.assertIn(msg, out, hc)
            self.assertRegex(out, r"p\.yaml:\d+:\d+: ", hc)
        self.assertEqual(self.validate("{ service: a.B }", protocol="grpc")[0], 0)
        self.assertEqual(self.validate("{ path: /h, expect: 204 }")[0], 0)


if __name__ == "__main__":
    unittest.main()
