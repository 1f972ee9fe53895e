"""
A fleet of three Portico processes behind a balancer (issue 12, "Running a
fleet"): one is drained under load -- the Kubernetes sequence: the pod leaves
the Service's endpoints, preStop waits, SIGTERM -- and no client request
fails. The test plays the L4 balancer: a new connection goes to a ready
process (round robin), an established one stays where it is, as with
kube-proxy. Clients behave as HTTP clients do (RFC 9112 9.3.1): a GET sent on
a reused keep-alive connection that the server closed before answering is
sent again on a new connection; anything else counts as a failure.

(The shared Redis rate budget across three processes is the rate-limit
engineer's test.)
"""
import http.client
import os
import signal
import threading
import time

from hc_support import HealthServer, wait_until
from portico_test import PorticoTestCase, free_port

CLIENTS = 8


class Balancer:
    def __init__(self, ports):
        self.ready = list(ports)
        self.lock = threading.Lock()
        self.rr = 0

    def remove(self, port):
        with self.lock:
            self.ready.remove(port)

    def connect(self):
        with self.lock:
            port = self.ready[self.rr % len(self.ready)]
            self.rr += 1
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.connect()
        return port, c


class Client(threading.Thread):
    def __init__(self, lb, stop, stats):
        super().__init__(daemon=True)
        self.lb, self.stop, self.stats = lb, stop, stats
        self.conn, self.port, self.used = None, None, False

    def once(self, path):
        if self.conn is None:
            self.port, self.conn = self.lb.connect()
            self.used = False
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        body = r.read()
        self.used = True
        return r.status, (r.getheader("Connection") or "").lower(), body

    def run(self):
        while not self.stop.is_set():
            try:
                try:
                    st, conn_hdr, body = self.once("/x")
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    if not self.used:
                        raise
                    self.stats.add("resent", self.port)  # closed while idle (FIN): send again
                    self.conn.close()
                    self.conn = None
                    st, conn_hdr, body = self.once("/x")
            except Exception as e:  # noqa: BLE001 -- every failure counts
                self.stats.add("failed", self.port, repr(e))
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                continue
            if st != 200:
                self.stats.add("failed", self.port, "status %d %r" % (st, body[:100]))
            else:
                self.stats.add("ok", self.port)
            if conn_hdr == "close":
                self.stats.add("closed_politely", self.port)
                self.conn.close()
                self.conn = None
        if self.conn is not None:
            self.conn.close()


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.errors = []

    def add(self, what, port, err=None):
        with self.lock:
            self.counts[(what, port)] = self.counts.get((what, port), 0) + 1
            if err:
                self.errors.append((port, err))

    def total(self, what, port=None):
        with self.lock:
            return sum(v for (w, p), v in self.counts.items()
                       if w == what and (port is None or p == port))


class FleetDrainTest(PorticoTestCase):
    def test_drain_one_of_three_under_load_without_failed_requests(self):
        up = HealthServer("up", delay=0.005)
        self.addCleanup(up.stop)
        ports = [free_port() for _ in range(3)]
        admins = [free_port() for _ in range(3)]
        procs = []
        for port, admin in zip(ports, admins):
            cfg = f"""
listeners:
  - address: 127.0.0.1:{port}
admin: {{ address: 127.0.0.1:{admin} }}
timeouts: {{ drain: 10s }}
clusters:
  - name: app
    endpoints: [ "127.0.0.1:{up.port}" ]
routes:
  - match: {{ prefix: / }}
    proxy: {{ cluster: app }}
"""
            procs.append(self.start(cfg, port))
        lb, stop, stats = Balancer(ports), threading.Event(), Stats()
        clients = [Client(lb, stop, stats) for _ in range(CLIENTS)]
        for c in clients:
            c.start()
        try:
            self.assertIsNotNone(wait_until(lambda: all(stats.total("ok", p) >= 20 for p in ports), 20))
            victim, vport, vadmin = procs[1], ports[1], admins[1]
            # a long request in flight on the victim when SIGTERM comes
            slow = {}

            def slow_call():
                c = http.client.HTTPConnection("127.0.0.1", vport, timeout=15)
                c.request("GET", "/slow/1500")
                r = c.getresponse()
                slow["status"], slow["body"] = r.status, r.read()
                slow["connection"] = r.getheader("Connection")
                c.close()
            t = threading.Thread(target=slow_call, daemon=True)
            t.start()
            time.sleep(0.2)
            # the pod is deleted: it leaves the endpoints, preStop waits, then SIGTERM
            lb.remove(vport)
            time.sleep(0.3)
            t_term = time.monotonic()
            victim.proc.send_signal(signal.SIGTERM)
            # draining: the admin says so while the slow request finishes
            self.assertIsNotNone(wait_until(
                lambda: self._ready_status(vadmin) == 503, 2), "never reported draining")
            t.join(15)
            self.assertEqual(slow.get("status"), 200, slow)
            self.assertEqual((slow.get("connection") or "").lower(), "close")
            victim.proc.wait(15)
            drained_in = time.monotonic() - t_term
            self.assertEqual(victim.proc.returncode, 0)
            before = stats.total("ok")
            self.assertIsNotNone(wait_until(lambda: stats.total("ok") >= before + 100, 10))
        finally:
            stop.set()
            for c in clients:
                c.join(10)
        self.assertEqual(stats.errors, [], "failed requests at the clients")
        self.assertEqual(stats.total("failed"), 0)
        # every keep-alive connection to the victim ended cleanly: with Connection: close on
        # an answer, or (idle ones) with a FIN, after which the client sent its GET elsewhere
        self.assertGreaterEqual(stats.total("closed_politely", vport) + stats.total("resent", vport), 1)
        self.assertGreaterEqual(drained_in, 1.0)  # waited for the in-flight request
        self.assertIn("draining", victim.output())
        print("\nfleet drain: %d requests ok, 0 failed, %d resent after an idle close, "
              "%d closed politely by the draining process, drained in %.2fs"
              % (stats.total("ok"), stats.total("resent"), stats.total("closed_politely", vport),
                 drained_in))

    @staticmethod
    def _ready_status(admin):
        try:
            c = http.client.HTTPConnection("127.0.0.1", admin, timeout=2)
            c.request("GET", "/ready")
            st = c.getresponse().status
            c.close()
            return st
        except OSError:
            return None


if __name__ == "__main__":
    import unittest
    unittest.main()
