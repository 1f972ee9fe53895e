"""
test_lb.py -- cluster load balancing through the real portico binary
(upstream/policy.c): round robin and weights, least_request, ring_hash,
priority failover and return, outlier ejection and its growth, the circuit
breaker. Every upstream is its own process (lb_backend.py) on a free port;
it names itself in the body, so the client sees where each request went.
"""
import concurrent.futures
import http.client
import json
import os
import subprocess
import sys
import time
import unittest
import urllib.request

from portico_test import Portico, free_port, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
BACKEND = os.path.join(HERE, "lb_backend.py")


class Backend:
    """One lb_backend.py process."""

    def __init__(self, name, port=None):
        self.name = name
        self.port = port or free_port()
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen([sys.executable, BACKEND, str(self.port), self.name],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.proc.stdout.readline()
        wait_port(self.port, 10.0, self.proc)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def ctl(self, what):
        url = "http://127.0.0.1:%d/_ctl/%s" % (self.port, what)
        with urllib.request.urlopen(url, timeout=10) as r:
            return int(r.read().decode())

    def hits(self):
        return self.ctl("hits")


class Client:
    """A keep-alive HTTP/1.1 client to the gateway (one connection, reopened when closed)."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def get(self, path="/", headers=None):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
            try:
                self.conn.request("GET", path, headers=headers or {})
                r = self.conn.getresponse()
                body = r.read().decode()
                if r.getheader("connection", "").lower() == "close":
                    self.close()
                return r.status, body
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def endpoint(b, weight=None, priority=None):
    parts = ['address: "127.0.0.1:%d"' % b.port]
    if weight is not None:
        parts.append("weight: %d" % weight)
    if priority is not None:
        parts.append("priority: %d" % priority)
    return "{ %s }" % ", ".join(parts)


def config(port, admin, endpoints, extra=""):
    return """
listeners:
  - address: 127.0.0.1:{port}
admin: {{ address: 127.0.0.1:{admin} }}
clusters:
  - name: up
    endpoints: [ {eps} ]
{extra}
routes:
  - match: {{ prefix: / }}
    proxy: {{ cluster: up }}
""".format(port=port, admin=admin, eps=", ".join(endpoints), extra=extra)


def metric(admin, name):
    """Sum of every series of `name` on the admin endpoint."""
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=10).read().decode()
    total = 0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


class LbCase(unittest.TestCase):
    def backends(self, n, prefix="b"):
        bs = [Backend("%s%d" % (prefix, i)) for i in range(n)]
        for b in bs:
            self.addCleanup(b.stop)
        return bs

    def gateway(self, endpoints, extra="", workers=1):
        self.port, self.admin = free_port(), free_port()
        gw = Portico(config(self.port, self.admin, endpoints, extra), workers=workers)
        self.addCleanup(gw.stop)
        gw.wait_ready(self.port)
        self.gw = gw
        client = Client(self.port)
        self.addCleanup(client.close)
        return client

    def spread(self, client, n, headers=None):
        seen = {}
        for _ in range(n):
            st, body = client.get("/x", headers)
            self.assertEqual(st, 200, body)
            seen[body] = seen.get(body, 0) + 1
        return seen


class TestSpread(LbCase):
    def test_round_robin_even(self):
        bs = self.backends(3)
        c = self.gateway([endpoint(b) for b in bs])
        seen = self.spread(c, 300)
        for b in bs:
            self.assertAlmostEqual(seen.get(b.name, 0), 100, delta=5, msg=seen)

    def test_round_robin_weights(self):
        bs = self.backends(3)
        c = self.gateway([endpoint(bs[0], 1), endpoint(bs[1], 2), endpoint(bs[2], 3)])
        seen = self.spread(c, 600)
        for b, want in zip(bs, (100, 200, 300)):
            self.assertAlmostEqual(seen.get(b.name, 0), want, delta=want * 0.05, msg=seen)

    def test_random_weights(self):
        bs = self.backends(2)
        c = self.gateway([endpoint(bs[0], 1), endpoint(bs[1], 3)], "    lb: random\n")
        seen = self.spread(c, 800)
        self.assertAlmostEqual(seen.get(bs[1].name, 0), 600, delta=60, msg=seen)

    def test_least_request_prefers_the_idle_endpoint(self):
        """One slow endpoint (300 ms): with 8 clients in parallel, least_request sends it
        only a small share, where round robin sends it half."""
        slow, fast = self.backends(2)
        slow.ctl("delay/300")
        gw_client = self.gateway([endpoint(slow), endpoint(fast)], "    lb: least_request\n")
        gw_client.close()

        def worker(_):
            cl = Client(self.port)
            try:
                return [cl.get("/x")[1] for _ in range(15)]
            finally:
                cl.close()

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            bodies = [b for part in ex.map(worker, range(8)) for b in part]
        self.assertEqual(len(bodies), 120)
        share = bodies.count(slow.name) / len(bodies)
        # Round robin gives it 0.5. Under a loaded machine the fast endpoint's answers slow down
        # too, so its in-flight count ties the slow one's more often: 0.2 was reached in suite
        # runs on 2 busy cores; 0.3 still tells least_request from round robin.
        self.assertLess(share, 0.3, "slow endpoint took %.0f%% of requests" % (share * 100))
        self.assertGreater(bodies.count(fast.name), 84)  # the other 70%+


class TestRingHash(LbCase):
    def test_keys_stick_and_only_the_lost_endpoints_keys_move(self):
        bs = self.backends(4)
        c = self.gateway([endpoint(b) for b in bs],
                         '    lb: ring_hash\n    hash_key: "header:x-user"\n'
                         '    retries: 3\n')
        keys = ["user-%d" % i for i in range(200)]
        where = {}
        for k in keys:
            st, body = c.get("/x", {"X-User": k})
            self.assertEqual(st, 200)
            where[k] = body
        for k in keys:  # the same key, the same endpoint
            self.assertEqual(c.get("/x", {"X-User": k})[1], where[k])
        counts = {b.name: list(where.values()).count(b.name) for b in bs}
        for b in bs:
            self.assertGreater(counts[b.name], 20, counts)  # each takes a fair part
        # One endpoint goes away: its keys move (retried, then ejected), no other key does.
        gone = bs[1]
        gone.stop()
        moved = 0
        for k in keys:
            st, body = c.get("/x", {"X-User": k})
            self.assertEqual(st, 200, body)
            if where[k] == gone.name:
                self.assertNotEqual(body, gone.name)
                moved += 1
            else:
                self.assertEqual(body, where[k], k)
        self.assertEqual(moved, counts[gone.name])
        self.assertLess(moved / len(keys), 0.45)  # ~1/4 of the keys

    def test_cookie_and_client_ip_keys(self):
        bs = self.backends(3)
        c = self.gateway([endpoint(b) for b in bs],
                         '    lb: ring_hash\n    hash_key: "cookie:session"\n')
        for s in ("a", "b", "c", "d"):
            first = c.get("/x", {"Cookie": "theme=dark; session=%s" % s})[1]
            for _ in range(5):
                self.assertEqual(c.get("/x", {"Cookie": "session=%s; x=1" % s})[1], first)
        # without the cookie: spread (random), not an error
        seen = self.spread(c, 60)
        self.assertGreater(len(seen), 1)


class TestPriorityAndOutlier(LbCase):
    def test_priority_failover_and_return(self):
        a, b, backup = self.backends(3)
        c = self.gateway([endpoint(a, priority=0), endpoint(b, priority=0),
                          endpoint(backup, priority=1)],
                         "    retries: 2\n"
                         "    outlier: { consecutive_failures: 1, base_ejection: 1s }\n")
        seen = self.spread(c, 40)
        self.assertEqual(seen.get(backup.name, 0), 0, seen)  # level 1 idle while level 0 is up
        a.stop()
        b.stop()
        seen = self.spread(c, 20)  # retried onto the backup, then a and b are ejected
        self.assertEqual(seen, {backup.name: 20})
        a.start()
        b.start()
        deadline = time.monotonic() + 15
        back = {}
        while time.monotonic() < deadline:
            back = self.spread(c, 10)
            if backup.name not in back:
                break
            time.sleep(0.2)
        self.assertNotIn(backup.name, back)  # level 0 took the traffic back
        self.assertGreater(metric(self.admin, "portico_upstream_ejections_total"), 0)

    def test_ejection_on_5xx_and_its_growth(self):
        bad, good = self.backends(2)
        bad.ctl("status/503")
        c = self.gateway([endpoint(bad), endpoint(good)],
                         "    outlier: { consecutive_failures: 3, base_ejection: 1s, "
                         "max_ejection_percent: 50 }\n")

        def out_time():
            """Requests until `bad` is ejected (4 answers in a row from `good` under round
            robin), then until it answers again: how long it stayed out after the failure
            that ejected it."""
            deadline = time.monotonic() + 20
            run, t_last = 0, None
            while run < 4 and time.monotonic() < deadline:
                st, body = c.get("/x")
                if st == 503:
                    t_last, run = time.monotonic(), 0
                else:
                    self.assertEqual((st, body), (200, good.name))
                    run += 1
            self.assertEqual(run, 4)
            while time.monotonic() < deadline:
                st, _ = c.get("/x")
                if st == 503:
                    return time.monotonic() - t_last
                time.sleep(0.02)
            self.fail("the ejected endpoint never came back")

        first = out_time()
        self.assertEqual(metric(self.admin, "portico_upstream_ejections_total"), 1)
        second = out_time()
        self.assertGreater(first, 0.8)
        self.assertGreater(second, 1.8)  # base x 2: the second ejection in a row
        self.assertGreater(second - first, 0.5)  # about base longer (a ratio would suffer load)
        self.assertEqual(metric(self.admin, "portico_upstream_ejections_total"), 2)
        # during an ejection the gauge shows it
        run = 0
        while run < 4:
            run = run + 1 if c.get("/x")[0] == 200 else 0
        self.assertEqual(metric(self.admin, "portico_upstream_ejected_endpoints"), 1)

    def test_max_ejection_percent(self):
        bs = self.backends(4)
        for b in bs:
            b.ctl("status/500")
        c = self.gateway([endpoint(b) for b in bs],
                         "    outlier: { consecutive_failures: 2, base_ejection: 30s, "
                         "max_ejection_percent: 50 }\n")
        for _ in range(40):
            st, _ = c.get("/x")
            self.assertEqual(st, 500)  # the upstream's answer, passed through
        self.assertEqual(metric(self.admin, "portico_upstream_ejected_endpoints"), 2)
        h = [b.hits() for b in bs]
        for _ in range(20):
            c.get("/x")
        moved = [b.hits() - h0 for b, h0 in zip(bs, h)]
        self.assertEqual(sorted(moved), [0, 0, 10, 10])  # two out, two still take traffic


class TestCircuitBreaker(LbCase):
    def test_503_at_once_over_max_requests(self):
        (slow,) = self.backends(1)
        slow.ctl("delay/2000")
        self.gateway([endpoint(slow)], "    circuit_breaker: { max_requests: 2 }\n")

        def one(_):
            cl = Client(self.port)
            try:
                t0 = time.monotonic()
                st, body = cl.get("/x")
                return st, body, time.monotonic() - t0
            finally:
                cl.close()

        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            held = [ex.submit(one, i) for i in range(2)]
            deadline = time.monotonic() + 10
            while slow.hits() < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            self.assertEqual(slow.hits(), 2)
            over = [one(i) for i in range(5)]
            done = [f.result(20) for f in held]
        for st, body, secs in over:
            self.assertEqual(st, 503, body)
            self.assertEqual(json.loads(body)["error"]["code"], "OVERLOADED")
            self.assertLess(secs, 1.5)  # refused at once, not after the 2 s upstream
        for st, body, secs in done:
            self.assertEqual((st, body), (200, slow.name))
        self.assertEqual(slow.hits(), 2)  # the refused ones never reached it
        self.assertEqual(metric(self.admin, "portico_upstream_breaker_trips_total"), 5)
        # the slots came back: the next call goes through
        self.assertEqual(one(0)[0], 200)

    def test_max_connections_across_workers(self):
        (slow,) = self.backends(1)
        slow.ctl("delay/1500")
        self.gateway([endpoint(slow)], "    circuit_breaker: { max_connections: 1 }\n",
                     workers=2)
        results = []

        def one(_):
            cl = Client(self.port)
            try:
                return cl.get("/x")
            finally:
                cl.close()

        with concurrent.futures.ThreadPoolExecutor(6) as ex:
            results = list(ex.map(one, range(6)))
        codes = sorted(st for st, _ in results)
        # one connection for the whole process: one call at a time gets through; the calls
        # that found it busy waited for it or were refused, never a second connection
        self.assertIn(200, codes)
        self.assertTrue(all(c in (200, 503) for c in codes), codes)
        self.assertIn(503, codes)
        self.assertGreater(metric(self.admin, "portico_upstream_breaker_trips_total"), 0)


class TestConfigErrors(unittest.TestCase):
    def test_bad_lb_is_refused_with_its_position(self):
        port = free_port()
        gw = Portico(config(port, free_port(), ['"127.0.0.1:1"'], "    lb: fastest\n"))
        try:
            gw.proc.wait(10)
            out = gw.output()
            self.assertNotEqual(gw.proc.returncode, 0)
            self.assertIn("portico.yaml:8:9: unknown lb 'fastest'", out)
        finally:
            gw.stop()


if __name__ == "__main__":
    unittest.main()
