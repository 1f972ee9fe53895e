"""
Upstream limits and local faults (issue 14): fd exhaustion is Portico's own
failure, never evidence against an endpoint; connections per endpoint are
capped with a bounded queue of waiting calls, then 503 at once.
"""
import json
import os
import select
import socket
import socketserver
import threading
import time
import unittest
import urllib.request

from portico_test import PorticoTestCase, free_port


class SlowServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """HTTP/1.1 keep-alive upstream answering every request after `delay` s;
    counts the connections open at once (peak)."""
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, delay):
        self.delay = delay
        self.lock = threading.Lock()
        self.open = 0
        self.peak = 0
        self.served = 0
        super().__init__(("127.0.0.1", 0), SlowHandler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def stop(self):
        self.shutdown()
        self.server_close()


class SlowHandler(socketserver.BaseRequestHandler):
    def handle(self):
        srv = self.server
        with srv.lock:
            srv.open += 1
            srv.peak = max(srv.peak, srv.open)
        try:
            self.request.settimeout(30)
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = self.request.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                buf = buf.split(b"\r\n\r\n", 1)[1]
                # wait `delay`, but notice a client that gave up (then this
                # connection no longer counts as open)
                r, _, _ = select.select([self.request], [], [], srv.delay)
                if r:
                    chunk = self.request.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                with srv.lock:
                    srv.served += 1
        except OSError:
            pass
        finally:
            with srv.lock:
                srv.open -= 1


def config(port, admin, up_port, cluster_extra="", timeout="30s"):
    return f"""
listeners:
  - address: 127.0.0.1:{port}
admin: {{ address: 127.0.0.1:{admin} }}
clusters:
  - name: slow
    endpoints: [ "127.0.0.1:{up_port}" ]
    timeout: {timeout}
{cluster_extra}
routes:
  - name: all
    match: {{ prefix: / }}
    proxy: {{ cluster: slow }}
"""


def burst(port, n, path="/x", timeout=30.0):
    """Opens n connections, then sends one GET on each at once; returns the
    list of (status, body) answers (status 0: no answer)."""
    socks = []
    for _ in range(n):
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=timeout))
        except OSError:
            socks.append(None)
    req = f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode()
    for s in socks:
        if s is not None:
            try:
                s.sendall(req)
            except OSError:
                pass
    out = [None] * n

    def read(i, s):
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        finally:
            s.close()
        if data.startswith(b"HTTP/1.1 "):
            out[i] = (int(data[9:12]), data.split(b"\r\n\r\n", 1)[-1])
        else:
            out[i] = (0, data)

    threads = []
    for i, s in enumerate(socks):
        if s is None:
            out[i] = (0, b"")
            continue
        t = threading.Thread(target=read, args=(i, s), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(timeout + 5)
    return out


def get(port, path="/x", timeout=10.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    return int(data[9:12]), data.split(b"\r\n\r\n", 1)[-1]


def metric(admin, name, cluster):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(f'{name}{{cluster="{cluster}"}} '):
            return int(line.split()[-1])
    return 0


def error_code(body):
    return json.loads(body)["error"]["code"]


class FdExhaustionTest(PorticoTestCase):
    """Issue 14 bug 2: running out of fds must not eject a healthy endpoint."""

    def test_fd_exhaustion_does_not_eject_the_endpoint(self):
        up = SlowServer(delay=1.0)
        self.addCleanup(up.stop)
        port, admin = free_port(), free_port()
        p = self.start(config(port, admin, up.port), port, workers=1, nofile=64)
        base = len(os.listdir(f"/proc/{p.proc.pid}/fd"))
        self.assertLess(base, 40, "portico needs more fds at rest than this test assumes")
        # Each proxied request holds a client fd and an upstream fd: a burst of
        # slow requests larger than the fds left makes socket() fail with
        # EMFILE for some of them (more than the 5 that used to eject).
        refused = []
        for _ in range(3):
            answers = burst(port, 60)
            for st, body in answers:
                self.assertIn(st, (0, 200, 503), body)
                if st == 503:
                    refused.append(body)
            if len(refused) >= 6:
                break
        self.assertGreaterEqual(len(refused), 6, "the burst did not exhaust the fds")
        # The pressure is over: the endpoint was never ejected, so the very next
        # requests are served (before the fix: 503 "no upstream available"
        # for the 10 s of the ejection).
        for _ in range(5):
            st, body = get(port)
            self.assertEqual(st, 200, body)
        # Those 503s were Portico's own shortage, said so and counted.
        for body in refused:
            self.assertEqual(error_code(body), "OVERLOADED", body)
        local = len(refused)
        self.assertGreaterEqual(metric(admin, "portico_upstream_local_errors_total", "slow"), local)


class ConnectionCapTest(PorticoTestCase):
    """Issue 14 weak spot: a per-endpoint, per-worker connection cap with a bounded queue."""

    def test_cap_queue_then_503(self):
        up = SlowServer(delay=2.0)
        self.addCleanup(up.stop)
        port, admin = free_port(), free_port()
        self.start(config(port, admin, up.port,
                          "    max_connections_per_endpoint: 4\n"
                          "    max_pending_per_endpoint: 8\n"), port, workers=1)
        answers = burst(port, 24)
        ok = [a for a in answers if a[0] == 200]
        over = [a for a in answers if a[0] == 503]
        self.assertEqual(len(ok) + len(over), 24, answers)
        for _, body in over:
            self.assertEqual(error_code(body), "OVERLOADED", body)
        # 4 on connections + 8 waiting are served; the rest is refused at once
        # (how many exactly depends on how fast the burst arrives).
        self.assertGreaterEqual(len(ok), 12, answers)
        self.assertGreaterEqual(len(over), 1, answers)
        self.assertLessEqual(up.peak, 4, "the upstream saw more connections than the cap")
        self.assertEqual(metric(admin, "portico_upstream_overflow_total", "slow"), len(over))
        self.assertGreaterEqual(metric(admin, "portico_upstream_pending_total", "slow"), 8)

    def test_waiting_calls_keep_the_request_timeout(self):
        up = SlowServer(delay=6.0)
        self.addCleanup(up.stop)
        port, admin = free_port(), free_port()
        self.start(config(port, admin, up.port,
                          "    max_connections_per_endpoint: 1\n"
                          "    max_pending_per_endpoint: 4\n", timeout="1s"), port, workers=1)
        t0 = time.monotonic()
        answers = burst(port, 3)
        elapsed = time.monotonic() - t0
        self.assertEqual([a[0] for a in answers], [504, 504, 504], answers)
        self.assertLess(elapsed, 5.5, "a waiting call outlived its timeout")
        # (no peak check here: when the first call times out its connection
        # closes and the next waiter may open one before the upstream's
        # handler for the first has noticed; test_cap_queue_then_503 checks
        # the cap where no connection closes mid-request)
        self.assertEqual(up.served, 0)


if __name__ == "__main__":
    unittest.main()
