"""HTTPS upstreams of `http2: true` REST clusters (upstream/h2.c over TLS).

- A slow client (it reads nothing for a while) pauses its upstream stream;
  other requests sharing the same TLS HTTP/2 upstream connection complete
  promptly meanwhile, and the slow one gets its whole body afterwards.
  (Through libcurl 7.88 another stream's last bytes could stay in libcurl's
  receive buffer until the call timeout; unit.upstream's
  test_h2_tls_slow_reader shows it deterministically.)
- ALPN fallback: an HTTPS server that speaks only HTTP/1.1 (ALPN "http/1.1",
  or none) is served over HTTP/1.1, transparently, with keep-alive: the
  endpoint's answer is remembered, no new probe per request.
- Certificate failures: a 502 with the same JSON as an HTTP/1.1 cluster's,
  the reason in the access log, no fallback to anything.

Servers: nghttpd (h2 over TLS) and test/unit/upstream_tls_h1_backend.py.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from portico_test import PorticoTestCase, curl, free_port, make_cert, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
H1_BACKEND = os.path.join(HERE, "..", "unit", "upstream_tls_h1_backend.py")
NGHTTPD = next((p for p in ("/usr/bin/nghttpd", "/usr/sbin/nghttpd") if os.access(p, os.X_OK)),
               None)
BIG = 24 << 20
DATA = bytes(ord("a") + i % 26 for i in range(20000))

CONFIG = """
listeners: [ {{ address: 127.0.0.1:{port} }} ]
access_log: {{ path: access.log }}
clusters:
  - {{ name: h2, endpoints: [ "https://127.0.0.1:{h2}" ], http2: true, ca_file: {crt} }}
  - {{ name: h1only, endpoints: [ "https://127.0.0.1:{h1}" ], http2: true, ca_file: {crt} }}
  - {{ name: noalpn, endpoints: [ "https://127.0.0.1:{h1n}" ], http2: true, ca_file: {crt} }}
  - {{ name: untrusted2, endpoints: [ "https://127.0.0.1:{h2}" ], http2: true }}
  - {{ name: untrusted1, endpoints: [ "https://127.0.0.1:{h2}" ] }}
routes:
  - {{ match: {{ host: h1only.test }}, proxy: {{ cluster: h1only }} }}
  - {{ match: {{ host: noalpn.test }}, proxy: {{ cluster: noalpn }} }}
  - {{ match: {{ host: bad2.test }}, proxy: {{ cluster: untrusted2 }} }}
  - {{ match: {{ host: bad1.test }}, proxy: {{ cluster: untrusted1 }} }}
  - {{ match: {{ prefix: / }}, proxy: {{ cluster: h2 }} }}
"""


@unittest.skipIf(NGHTTPD is None, "nghttpd not installed")
class H2TlsUpstreamTest(PorticoTestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="pt_h2tls_")
        cls.addClassCleanup(shutil.rmtree, cls.dir, True)
        cls.crt, cls.key = make_cert(cls.dir)
        www = os.path.join(cls.dir, "www")
        os.mkdir(www)
        with open(os.path.join(www, "data.txt"), "wb") as f:
            f.write(DATA)
        with open(os.path.join(www, "big.bin"), "wb") as f:
            f.write(bytes(range(256)) * (BIG // 256))
        cls.procs = []
        cls.h2_port = free_port()
        cls.spawn([NGHTTPD, "-a", "127.0.0.1", "-d", www, str(cls.h2_port), cls.key, cls.crt],
                  cls.h2_port)
        cls.h1_port, cls.h1n_port = free_port(), free_port()
        for port, alpn in ((cls.h1_port, "http/1.1"), (cls.h1n_port, "none")):
            cls.spawn([sys.executable, H1_BACKEND, str(port), cls.crt, cls.key, alpn], port)

    @classmethod
    def spawn(cls, argv, port):
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cls.procs.append(p)
        cls.addClassCleanup(lambda: (p.kill(), p.wait()))
        wait_port(port, 10, p)

    def setUp(self):
        super().setUp()
        self.port = free_port()
        self.p = self.start(CONFIG.format(port=self.port, h2=self.h2_port, h1=self.h1_port,
                                          h1n=self.h1n_port, crt=self.crt), self.port)
        self.url = "http://127.0.0.1:%d" % self.port

    def get(self, host, path="/data.txt", *args):
        return curl("-H", "Host: " + host, *args, self.url + path, timeout=10)

    def log_lines(self, pred, want=1):
        path = os.path.join(self.p.dir, "access.log")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if os.path.exists(path):
                with open(path) as f:
                    lines = [json.loads(l) for l in f if l.strip()]
                got = [l for l in lines if pred(l)]
                if len(got) >= want:
                    return got
            time.sleep(0.05)
        self.fail("access log lines not found")

    def test_slow_client_does_not_stall_the_shared_connection(self):
        st, _, body, err = self.get("h2.test")  # the upstream connection is up
        self.assertEqual((st, body), (200, DATA), err)
        # a client that asks for 24 MiB and reads nothing: once the socket buffers and
        # Portico's response buffer are full, Portico pauses its upstream stream
        slow = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        self.addCleanup(slow.close)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)
        slow.sendall(b"GET /big.bin HTTP/1.1\r\nHost: h2.test\r\n\r\n")
        t0 = time.monotonic()
        time.sleep(0.3)
        # meanwhile, other requests on the same upstream connection: all prompt and whole
        results, lock = [], threading.Lock()

        def worker():
            for _ in range(10):
                r = self.get("h2.test", "/data.txt", "--max-time", "3")
                with lock:
                    results.append(r)

        ts = [threading.Thread(target=worker) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        waited = time.monotonic() - t0
        self.assertEqual(len(results), 40)
        for st, _, body, err in results:
            self.assertEqual((st, len(body)), (200, len(DATA)), err)
        # the slow client reads now and gets every byte
        got, head = bytearray(), None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            chunk = slow.recv(1 << 16)
            if not chunk:
                break
            got += chunk
            if head is None and b"\r\n\r\n" in got:
                i = got.index(b"\r\n\r\n")
                head, got = bytes(got[:i]), got[i + 4:]
            if head is not None and len(got) >= BIG:
                break
        self.assertIsNotNone(head)
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head[:100])
        self.assertEqual(len(got), BIG)
        self.assertEqual(bytes(got), bytes(range(256)) * (BIG // 256))
        # it was paused: its exchange lasted until the reading began, the others' did not
        line = self.log_lines(lambda l: l.get("path") == "/big.bin")[0]
        self.assertEqual(line["status"], 200)
        self.assertGreater(line["duration_ms"], 1000 * waited * 0.8, line)

    def check_h1_fallback(self, host, port):
        conns = set()
        for i in range(5):
            st, h, body, err = self.get(host)
            self.assertEqual((st, body), (200, DATA), (err, h))
            conns.add(h["x-conn"])
        # over HTTP/1.1 with keep-alive: one backend connection after the probe, so the
        # endpoint's ALPN answer was remembered (a probe per request would add connections)
        self.assertEqual(len(conns), 1, conns)
        up = bytes(range(256)) * 400
        st, _, body, err = curl("-H", "Host: " + host, "--data-binary", "@-",
                                self.url + "/echo", input_bytes=up)
        self.assertEqual((st, body), (200, up), err)
        line = self.log_lines(lambda l: l.get("route") is not None and l.get("status") == 200
                              and l.get("upstream", "").endswith(":%d" % port))[0]
        self.assertEqual(line["upstream"], "https://127.0.0.1:%d" % port)

    def test_alpn_http11_fallback(self):
        self.check_h1_fallback("h1only.test", self.h1_port)

    def test_no_alpn_fallback(self):
        self.check_h1_fallback("noalpn.test", self.h1n_port)

    def test_certificate_failure_same_as_http11(self):
        out = {}
        for host in ("bad1.test", "bad2.test"):  # HTTP/1.1 (libcurl), HTTP/2 (h2.c)
            st, h, body, err = self.get(host)
            self.assertEqual(st, 502, (host, body, err))
            self.assertEqual(h["content-type"], "application/json")
            e = json.loads(body)["error"]
            e.pop("request_id")
            out[host] = e
        self.assertEqual(out["bad1.test"], out["bad2.test"])
        self.assertEqual(out["bad2.test"], {"code": "UPSTREAM", "message": "upstream failed"})
        line = self.log_lines(lambda l: l.get("status") == 502 and
                              l.get("reason", "").startswith("upstream TLS certificate"))[0]
        self.assertEqual(line["reason"], "upstream TLS certificate verification failed")


if __name__ == "__main__":
    unittest.main()
