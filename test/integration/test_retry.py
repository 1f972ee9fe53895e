"""
Route retries (issue 12, upstream/retry.c): attempts on other endpoints,
idempotent methods only once a request was sent (POST when configured),
per-try timeouts, the retry budget, gRPC UNAVAILABLE; all with real
upstream processes (retry_upstream.py) that the tests kill.
"""
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

from portico_test import PorticoTestCase, free_port, h2_call, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))


class Upstream:
    def __init__(self, kind, mode, count_file=None):
        self.port = free_port()
        env = dict(os.environ)
        if count_file:
            env["COUNT_FILE"] = count_file
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "retry_upstream.py"),
                                      kind, str(self.port), mode], env=env)
        wait_port(self.port, 10, self.proc)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def counts(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/__count", timeout=5) as r:
            return json.loads(r.read())


def request(port, method="GET", path="/x", body=None, headers=None, timeout=20):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def metric(admin, name, cluster):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(f'{name}{{cluster="{cluster}"}} '):
            return int(line.split()[-1])
    return 0


def config(port, admin, clusters, routes):
    return f"""
listeners:
  - address: 127.0.0.1:{port}
admin: {{ address: 127.0.0.1:{admin} }}
clusters:
{clusters}
routes:
{routes}
"""


def eps(*ups):
    return "[ " + ", ".join(f'"127.0.0.1:{u.port}"' for u in ups) + " ]"


class RetryTest(PorticoTestCase):
    def upstream(self, kind, mode, count_file=None):
        u = Upstream(kind, mode, count_file)
        self.addCleanup(u.kill)
        return u

    def test_killed_endpoint_fails_no_idempotent_request(self):
        ups = [self.upstream("http", "ok") for _ in range(3)]
        port, admin = free_port(), free_port()
        self.start(config(port, admin,
                          f"  - name: web\n    endpoints: {eps(*ups)}\n",
                          "  - match: { prefix: / }\n"
                          "    retry: { attempts: 3, on: [connect, reset, 5xx], budget: 50% }\n"
                          "    proxy: web\n"), port, workers=2)
        results = []
        lock = threading.Lock()
        started = threading.Event()

        def client(n):
            # keep-alive to portico; portico keeps pooled connections upstream
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            for i in range(n):
                method = ("GET", "PUT", "DELETE", "HEAD")[i % 4]
                try:
                    c.request(method, f"/item/{i}", body=b"x" * 10 if method == "PUT" else None)
                    r = c.getresponse()
                    r.read()
                    st = r.status
                except (OSError, http.client.HTTPException) as e:
                    st = repr(e)
                    c.close()
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
                with lock:
                    results.append(st)
                    if len(results) >= 60:
                        started.set()
            c.close()

        threads = [threading.Thread(target=client, args=(50,)) for _ in range(6)]
        for t in threads:
            t.start()
        self.assertTrue(started.wait(30))
        ups[1].kill()  # mid-run: refused connects and reset keep-alive connections
        for t in threads:
            t.join(60)
        self.assertEqual(len(results), 300)
        self.assertEqual([r for r in results if r != 200], [])
        self.assertEqual(sum(sum(u.counts().values()) for u in (ups[0], ups[2])) > 200, True)

    def _counts_for(self, method, retry_extra=""):
        ups = [self.upstream("http", "503") for _ in range(2)]
        port, admin = free_port(), free_port()
        self.start(config(port, admin,
                          f"  - name: web\n    endpoints: {eps(*ups)}\n",
                          "  - match: { prefix: / }\n"
                          f"    retry: {{ attempts: 3, on: [5xx], budget: 100%{retry_extra} }}\n"
                          "    proxy: web\n"), port)
        st, _ = request(port, method, "/order", body=b'{"n": 1}')
        self.assertEqual(st, 503)
        return sum(u.counts().get(method, 0) for u in ups), admin

    def test_post_is_not_retried_after_it_was_sent(self):
        n, _ = self._counts_for("POST")
        self.assertEqual(n, 1)

    def test_get_is_retried_on_5xx(self):
        n, admin = self._counts_for("GET")
        self.assertEqual(n, 3)
        self.assertEqual(metric(admin, "portico_upstream_retries_total", "web"), 2)

    def test_post_retried_when_configured(self):
        n, _ = self._counts_for("POST", ", methods: [GET, POST]")
        self.assertEqual(n, 3)

    def test_post_not_retried_after_reset(self):
        ups = [self.upstream("http", "reset") for _ in range(2)]
        port, admin = free_port(), free_port()
        self.start(config(port, admin,
                          f"  - name: web\n    endpoints: {eps(*ups)}\n",
                          "  - match: { prefix: / }\n"
                          "    retry: { attempts: 3, on: [reset, connect] }\n"
                          "    proxy: web\n"), port)
        st, _ = request(port, "POST", "/order", body=b"{}")
        self.assertEqual(st, 502)
        self.assertEqual(sum(u.counts().get("POST", 0) for u in ups), 1)
        st, _ = request(port, "GET", "/order")
        self.assertEqual(st, 502)
        self.assertEqual(sum(u.counts().get("GET", 0) for u in ups), 3)

    def test_post_retried_on_connect_failure(self):
        ok = self.upstream("http", "ok")
        dead = free_port()
        port, admin = free_port(), free_port()
        self.start(config(port, admin,
                          f'  - name: web\n    endpoints: [ "127.0.0.1:{dead}", "127.0.0.1:{ok.port}" ]\n',
                          "  - match: { prefix: / }\n"
                          "    retry: { attempts: 2, on: [connect], budget: 100% }\n"
                          "    proxy: web\n"), port)
        for _ in range(4):  # round robin: two of them start on the dead endpoint
            st, body = request(port, "POST", "/order", body=b"abc")
            self.assertEqual(st, 200, body)
            self.assertEqual(json.loads(body)["body"], 3)
        self.assertEqual(ok.counts().get("POST"), 4)

    def test_per_try_timeout(self):
        slow = self.upstream("http", "sleep:3000")
        fast = self.upstream("http", "ok")
        port, admin = free_port(), free_port()
        self.start(config(port, admin,
                          f"  - name: web\n    endpoints: {eps(slow, fast)}\n"
                          f"  - name: slowonly\n    endpoints: {eps(slow)}\n",
                          "  - match: { prefix: /only }\n"
                          "    timeout: 10s\n"
                          "    retry: { attempts: 2, per_try_timeout: 300ms, budget: 100% }\n"
                          "    proxy: slowonly\n"
                          "  - match: { prefix: / }\n"
                          "    timeout: 10s\n"
                          "    retry: { attempts: 2, per_try_timeout: 300ms, budget: 100% }\n"
                          "    proxy: web\n"), port)
        for _ in range(4):
            t0 = time.monotonic()
            st, body = request(port, "GET", "/x")
            self.assertEqual(st, 200, body)
            self.assertEqual(json.loads(body)["port"], fast.port)
            self.assertLess(time.monotonic() - t0, 2.5)
        t0 = time.monotonic()
        st, _ = request(port, "GET", "/only")
        self.assertEqual(st, 504)
        self.assertLess(time.monotonic() - t0, 2.5)  # two tries of 300 ms, not the 10 s timeout

    def test_budget_caps_retries(self):
        down = self.upstream("http", "503")
        port, admin = free_port(), free_port()
        self.start(config(port, admin,
                          f"  - name: web\n    endpoints: {eps(down)}\n",
                          "  - match: { prefix: / }\n"
                          "    retry: { attempts: 3, on: [5xx], budget: 20%, backoff: { base: 1ms, max: 2ms } }\n"
                          "    proxy: web\n"), port, workers=1)
        n = 100
        for _ in range(n):
            st, _ = request(port, "GET", "/x")
            self.assertEqual(st, 503)
        seen = down.counts()["GET"]
        # without a budget: 3 per request; with 20 %: n + 20 % of n, or the 10 a
        # quiet 10 s window may always make (retry.c), whichever is more
        self.assertLessEqual(seen, n + max(n * 20 // 100, 10))
        self.assertGreaterEqual(seen, n + n * 20 // 100 - 1)
        self.assertGreater(metric(admin, "portico_upstream_retry_budget_exhausted_total", "web"), 0)
        self.assertEqual(metric(admin, "portico_upstream_retries_total", "web"), seen - n)


if __name__ == "__main__":
    unittest.main()
