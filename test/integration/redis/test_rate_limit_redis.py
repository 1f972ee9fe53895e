"""
rate_limit and quota with `redis:` (plugins/rate_limit.c): the budget shared
by every Portico process on one real redis-server (the fleet test of issues
11 and 12), one Lua script per decision (EVALSHA, EVAL after NOSCRIPT), keys
with a TTL, and Redis faults: killed mid-run (answers within `timeout`, per
`on_error`), paused (the command timeout fires; the loop never blocks),
restarted (sharing resumes). SECURITY-CASES RL-1, RL-2.
"""
import calendar
import json
import os
import re
import subprocess
import sys
import threading
import time
import unittest

from portico_test import PorticoTestCase, curl, free_port

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_redis import Redis, wait_until  # noqa: E402


def h2load(port, path, n, c, headers=()):
    args = ["h2load", "-n", str(n), "-c", str(c), "-m", "2"]
    for h in headers:
        args += ["-H", h]
    p = subprocess.run(args + ["http://127.0.0.1:%d%s" % (port, path)], capture_output=True,
                       text=True, timeout=120)
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", p.stdout)
    if m is None:
        raise AssertionError("h2load: " + p.stdout + p.stderr)
    return {2: int(m.group(1)), 4: int(m.group(3)), 5: int(m.group(4))}


class RateLimitRedis(PorticoTestCase):
    def setUp(self):
        super().setUp()
        self._redis = []

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            for r in self._redis:
                r.stop()

    def redis(self, **kw):
        r = Redis(**kw)
        self._redis.append(r)
        return r

    def config(self, port, rport, timeout="100ms"):
        rd = f'address: "127.0.0.1:{rport}", prefix: "pt:", timeout: {timeout}'
        return f"""
listeners: [ {{ address: "127.0.0.1:{port}", h2c: true }} ]
routes:
  - match: {{ prefix: /local }}
    respond: {{ status: 200, body: "ok" }}
    filters:
      - rate_limit: {{ requests: 60, per: 1h, key: "header:x-user",
                      redis: {{ {rd} }} }}
  - match: {{ prefix: /deny }}
    respond: {{ status: 200, body: "ok" }}
    filters:
      - rate_limit: {{ requests: 60, per: 1h, key: "header:x-user",
                      redis: {{ {rd}, on_error: deny }} }}
  - match: {{ prefix: /allow }}
    respond: {{ status: 200, body: "ok" }}
    filters:
      - rate_limit: {{ requests: 60, per: 1h, key: "header:x-user",
                      redis: {{ {rd}, on_error: allow }} }}
  - match: {{ prefix: /quota }}
    respond: {{ status: 200, body: "ok" }}
    filters:
      - quota: {{ requests: 25, per: month, key: "header:x-user", redis: {{ {rd} }} }}
"""

    def fleet(self, rport, n=3, **kw):
        ports = []
        for _ in range(n):
            port = free_port()
            self.start(self.config(port, rport, **kw), port, workers=2)
            ports.append(port)
        return ports

    def blast(self, ports, path, user, per_process, conns=12):
        """h2load at every process at once; returns the summed status counts."""
        out, threads = [], []
        for p in ports:
            t = threading.Thread(target=lambda p=p: out.append(
                h2load(p, path, per_process, conns, ["x-user: " + user])))
            t.start()
            threads.append(t)
        for t in threads:
            t.join(180)
        total = {2: 0, 4: 0, 5: 0}
        for o in out:
            for k in total:
                total[k] += o[k]
        self.assertEqual(len(out), len(ports))
        return total

    def test_fleet_shares_one_budget(self):
        """Three processes x 2 workers on one Redis: exactly 60 of 600 pass, across all of
        them; Redis killed: answers within the timeout per on_error (deny: 503 at once;
        local: each process's own table, 60 each; allow: through); Redis restarted on the
        same port: the script is loaded again (NOSCRIPT -> EVAL) and sharing resumes."""
        r = self.redis()
        ports = self.fleet(r.port)
        total = self.blast(ports, "/local", "alice", 200)
        self.assertEqual((total[2], total[4], total[5]), (60, 540, 0))
        keys = r.cmd("KEYS", "pt:rl:*")
        self.assertEqual(len(keys), 1, keys)
        self.assertIn("h:alice", keys[0])
        ttl = r.cmd("PTTL", keys[0])
        self.assertTrue(3500000 < ttl <= 3601000, ttl)  # expires when the budget is whole again
        # every process sees the shared state in its headers
        for p in ports:
            st, h, _, _ = curl(f"http://127.0.0.1:{p}/local", "-H", "x-user: alice")
            self.assertEqual((st, h["ratelimit-remaining"]), (429, "0"))

        # ---- Redis killed mid-run -------------------------------------------------------
        r.proc.kill()
        r.proc.wait(10)
        for p in ports:
            t0 = time.monotonic()
            st, h, body, _ = curl(f"http://127.0.0.1:{p}/deny", "-H", "x-user: bob")
            self.assertLess(time.monotonic() - t0, 2.0)
            self.assertEqual(st, 503)
            self.assertEqual(json.loads(body)["error"]["code"], "UNAVAILABLE")
            st, h, _, _ = curl(f"http://127.0.0.1:{p}/allow", "-H", "x-user: bob")
            self.assertEqual((st, h["ratelimit-limit"]), (200, "60"))
            self.assertNotIn("ratelimit-remaining", h)  # nothing was counted
        # on_error local: each process counts alone, exactly, with the same limits
        total = self.blast(ports, "/local", "carol", 100)
        self.assertEqual((total[2], total[4], total[5]), (180, 120, 0))

        # ---- restarted (empty, no scripts): sharing resumes -----------------------------
        r2 = self.redis(port=r.port)

        def shared():
            # each worker reconnects lazily, once its backoff (at most 2 s) has expired and a
            # request comes: probe every process until all 6 workers are connected again
            for p in ports:
                for _ in range(4):
                    curl(f"http://127.0.0.1:{p}/local", "-H", "x-user: probe")
            return len(r2.clients()) == 6
        self.assertTrue(wait_until(shared, timeout=30))
        total = self.blast(ports, "/local", "dave", 200)
        self.assertEqual((total[2], total[4], total[5]), (60, 540, 0))

    def test_paused_redis_answers_within_timeout(self):
        """SIGSTOP: nothing answers; every request is answered after the 100 ms timeout
        per on_error, the worker keeps serving meanwhile, and counting goes on after."""
        r = self.redis()
        port = free_port()
        self.start(self.config(port, r.port), port)
        url = f"http://127.0.0.1:{port}"
        self.assertEqual(curl(url + "/deny", "-H", "x-user: e")[0], 200)
        r.pause()
        try:
            for i, (path, want) in enumerate((("/deny", 503), ("/allow", 200), ("/local", 200))):
                t0 = time.monotonic()
                st, h, _, err = curl(url + path, "-H", "x-user: e", timeout=10)
                dt = time.monotonic() - t0
                self.assertEqual(st, want, err)
                if i == 0:  # it did wait for Redis (later ones may find the stalled connection
                    self.assertGreaterEqual(dt, 0.09)  # closed after 1 s: then they fail at once)
                self.assertLess(dt, 1.5)  # ...never longer than the timeout (+ slack)
        finally:
            r.resume()
        # back: the same budget, counted on from what Redis holds
        st, h, _, _ = curl(url + "/deny", "-H", "x-user: e", timeout=10)
        self.assertEqual(st, 200)

    def test_script_flushed(self):
        """SCRIPT FLUSH (as after a restart): NOSCRIPT is answered with one EVAL and the
        decision is the same; the next request uses EVALSHA again."""
        r = self.redis()
        port = free_port()
        self.start(self.config(port, r.port), port)
        url = f"http://127.0.0.1:{port}/local"
        for i in range(3):
            st, h, _, _ = curl(url, "-H", "x-user: f")
            self.assertEqual((st, h["ratelimit-remaining"]), (200, str(59 - i)))
            r.cmd("SCRIPT", "FLUSH")
        info = r.cmd("INFO", "commandstats")
        self.assertRegex(info, r"cmdstat_eval:calls=3")
        self.assertRegex(info, r"cmdstat_evalsha:calls=3")

    def test_quota_shared(self):
        """A monthly quota shared by two processes: 25 in total; the key carries the
        month's number and expires a minute after the month's end (UTC)."""
        r = self.redis()
        ports = self.fleet(r.port, n=2)
        total = self.blast(ports, "/quota", "gina", 40, conns=5)
        self.assertEqual((total[2], total[4], total[5]), (25, 55, 0))
        keys = r.cmd("KEYS", "pt:quota:*")
        self.assertEqual(len(keys), 1, keys)
        now = time.gmtime()
        self.assertTrue(keys[0].endswith(":%d" % (now.tm_year * 12 + now.tm_mon - 1)), keys)
        nxt = (now.tm_year + (now.tm_mon == 12), now.tm_mon % 12 + 1)
        end = calendar.timegm((nxt[0], nxt[1], 1, 0, 0, 0, 0, 0, 0))
        ttl = r.cmd("TTL", keys[0])
        self.assertLessEqual(abs(ttl - (end + 60 - int(time.time()))), 3)
        st, h, _, _ = curl(f"http://127.0.0.1:{ports[0]}/quota", "-H", "x-user: gina")
        self.assertEqual((st, h["ratelimit-remaining"]), (429, "0"))
        self.assertLessEqual(abs(int(h["ratelimit-reset"]) - (end - int(time.time()))), 3)


if __name__ == "__main__":
    unittest.main()
