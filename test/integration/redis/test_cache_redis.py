"""
test_cache_redis.py -- the `cache` filter's shared Redis tier: two Portico
processes on one real redis-server (started by the test) share stored
answers (one upstream fetch for both), entries carry a TTL, a Vary answer is
found through its marker, the admin purge removes the Redis keys, and a
Redis that is down or paused only turns lookups into misses.
"""
import http.client
import json
import os
import sys
import time
import unittest
import urllib.parse

from portico_test import PorticoTestCase, free_port

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from test_redis import Redis, wait_until  # noqa: E402
from cache_upstream import CacheUpstream  # noqa: E402


def get(port, path, headers=None, method="GET"):
    """Every process is asked for the same authority (part of the key)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, headers=dict(headers or {}, Host="shop.test"))
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def q(**kw):
    return urllib.parse.urlencode(kw)


class CacheRedisTest(PorticoTestCase):
    def setUp(self):
        super().setUp()
        self._redis = []
        self.up = CacheUpstream()
        self.addCleanup(self.up.stop)

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            for r in self._redis:
                r.stop()

    def redis(self):
        r = Redis()
        self._redis.append(r)
        return r

    def portico(self, rport):
        port, adm = free_port(), free_port()
        self.start(f"""
listeners: [ {{ address: 127.0.0.1:{port} }} ]
admin: {{ address: 127.0.0.1:{adm} }}
clusters: [ {{ name: web, endpoints: [ "127.0.0.1:{self.up.port}" ] }} ]
routes:
  - match: {{ prefix: / }}
    proxy: {{ cluster: web }}
    filters:
      - cache: {{ name: shared, redis: {{ address: "127.0.0.1:{rport}", prefix: "pc:", timeout: 100ms }} }}
""", port, workers=2)
        return port, adm

    def test_two_processes_share_entries(self):
        r = self.redis()
        a, adm_a = self.portico(r.port)
        b, _ = self.portico(r.port)
        path = "/shared?" + q(cc="max-age=60")
        s, h, body = get(a, path)
        self.assertEqual(h["x-cache"], "MISS")
        # the SET leaves after the answer (fire and forget): wait until Redis has it
        self.assertTrue(wait_until(lambda: r.cmd("KEYS", "pc:c:*"), timeout=5))
        s, h, body_b = get(b, path)
        self.assertEqual((h["x-cache"], body_b), ("HIT", body))
        self.assertEqual(self.up.count(path), 1)
        keys = r.cmd("KEYS", "pc:c:*")
        self.assertEqual(len(keys), 1)
        ttl = r.cmd("PTTL", keys[0])
        self.assertTrue(0 < ttl <= 60000, ttl)
        # Vary: the marker and the variant both travel
        path = "/v?" + q(cc="max-age=60", vary="Accept-Language")
        get(a, path, headers={"Accept-Language": "de"})
        self.assertTrue(wait_until(lambda: len(r.cmd("KEYS", "pc:c:*")) == 3, timeout=5))
        s, h, b2 = get(b, path, headers={"Accept-Language": "de"})
        self.assertEqual((h["x-cache"], b2.split()[-1]), ("HIT", b"lang=de"))
        s, h, _ = get(b, path, headers={"Accept-Language": "it"})
        self.assertEqual(h["x-cache"], "MISS")
        self.assertEqual(self.up.count(path), 2)
        # the purge through A removes the Redis keys: a third process misses
        c = http.client.HTTPConnection("127.0.0.1", adm_a, timeout=20)
        c.request("POST", "/cache/purge?" + q(prefix="/"))
        resp = c.getresponse()
        res = json.loads(resp.read())
        c.close()
        self.assertEqual(resp.status, 200, res)
        self.assertGreaterEqual(res["redis"], 4)
        self.assertEqual(r.cmd("KEYS", "pc:c:*"), [])
        third, _ = self.portico(r.port)
        self.assertEqual(get(third, "/shared?" + q(cc="max-age=60"))[1]["x-cache"], "MISS")

    def test_redis_down_is_a_miss(self):
        r = self.redis()
        a, adm = self.portico(r.port)
        r.stop()
        path = "/down?" + q(cc="max-age=60")
        t0 = time.monotonic()
        s, h, _ = get(a, path)
        self.assertEqual((s, h["x-cache"]), (200, "MISS"))
        s, h, _ = get(a, path)
        self.assertEqual((s, h["x-cache"]), (200, "HIT"))  # the local tier still works
        self.assertLess(time.monotonic() - t0, 3)
        c = http.client.HTTPConnection("127.0.0.1", adm, timeout=20)
        c.request("POST", "/cache/purge?" + q(path=path))
        resp = c.getresponse()
        res = json.loads(resp.read())
        c.close()
        self.assertEqual((resp.status, res["local"]), (502, 1))
        self.assertIn("redis_error", res)

    def test_redis_paused_times_out_into_a_miss(self):
        r = self.redis()
        a, _ = self.portico(r.port)
        get(a, "/warm")  # the connection is open
        r.pause()
        try:
            t0 = time.monotonic()
            s, h, _ = get(a, "/paused?" + q(cc="max-age=60"))
            self.assertEqual((s, h["x-cache"]), (200, "MISS"))
            self.assertLess(time.monotonic() - t0, 3)
        finally:
            r.resume()


if __name__ == "__main__":
    unittest.main()
