"""
test_cache.py -- the built-in `cache` filter (plugins/cache.c) in the real
binary against a python upstream that counts its requests and sets the
caching headers each test asks for (cache_upstream.py).

Covers RFC 9111 freshness (s-maxage > max-age > Expires > the configured
ttl), what is never stored (no-store, private, Set-Cookie, Vary: *,
Authorization without public, 5xx), revalidation of stale and no-cache
entries (If-None-Match -> 304 refreshes the entry, the client gets the
stored 200 or its own 304), Vary, request Cache-Control, Age and x-cache,
HEAD, request coalescing over two workers (N clients -> one upstream hit; a
failed fetch never hangs the waiters), max_object while streaming, LRU
eviction under max_size, the admin purge, /metrics, and the compress filter
in front of the cache.
"""
import gzip
import http.client
import json
import threading
import time
import unittest
import urllib.parse

from cache_upstream import CacheUpstream
from portico_test import PorticoTestCase, curl, free_port


def get(port, path, headers=None, method="GET", timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def admin(port, method, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def q(**kw):
    return urllib.parse.urlencode(kw)


class CacheTest(PorticoTestCase):
    workers = 2
    cache = ("{ ttl: 30s, max_size: 8m, max_object: 64k, name: main, lock_timeout: 3s, "
             "stale_if_error: 30s }")

    def setUp(self):
        super().setUp()
        self.up = CacheUpstream()
        self.addCleanup(self.up.stop)
        self.port, self.admin = free_port(), free_port()
        self.p = self.start(f"""
listeners: [ {{ address: 127.0.0.1:{self.port}, h2c: true }} ]
admin: {{ address: 127.0.0.1:{self.admin} }}
clusters: [ {{ name: web, endpoints: [ "127.0.0.1:{self.up.port}" ] }} ]
routes:
  - match: {{ prefix: /z/ }}
    proxy: {{ cluster: web }}
    filters: [ {{ compress: {{ min_size: 10 }} }}, {{ cache: {{ name: zipped }} }} ]
  - match: {{ prefix: / }}
    proxy: {{ cluster: web }}
    filters: [ {{ cache: {self.cache} }} ]
""", self.port, workers=self.workers)

    def g(self, path, **kw):
        return get(self.port, path, **kw)

    def twice(self, path, headers=None):
        a = self.g(path, headers=headers)
        b = self.g(path, headers=headers)
        return a, b

    # ---- freshness ---------------------------------------------------------

    def test_max_age_miss_then_hit_with_age(self):
        path = "/a?" + q(cc="max-age=60")
        (s1, h1, b1), (s2, h2, b2) = self.twice(path)
        self.assertEqual((s1, h1["x-cache"]), (200, "MISS"))
        self.assertEqual((s2, h2["x-cache"]), (200, "HIT"))
        self.assertEqual(b1, b2)
        self.assertIn("age", h2)
        self.assertEqual(h2["cache-control"], "max-age=60")
        self.assertEqual(h2["content-type"], "text/plain")
        self.assertEqual(self.up.count(path), 1)
        # HEAD is answered from the stored GET, without a body
        s, h, b = self.g(path, method="HEAD")
        self.assertEqual((s, h["x-cache"], b), (200, "HIT", b""))
        self.assertEqual(h["content-length"], str(len(b1)))
        self.assertEqual(self.up.count(path), 1)

    def test_http2_hit_and_head(self):
        path = "/h2?" + q(cc="max-age=60", size="3000")
        url = f"http://127.0.0.1:{self.port}{path}"
        st, h, b1, err = curl("--http2-prior-knowledge", url)
        self.assertEqual((st, h.get("x-cache")), (200, "MISS"), err)
        st, h, b2, err = curl("--http2-prior-knowledge", url)
        self.assertEqual((st, h.get("x-cache"), b2), (200, "HIT", b1), err)
        st, h, b3, err = curl("--http2-prior-knowledge", "-I", url)
        self.assertEqual((st, h.get("x-cache"), h.get("content-length")), (200, "HIT", "3000"), err)
        self.assertEqual(self.up.count(path), 1)

    def test_default_ttl_when_the_upstream_says_nothing(self):
        (_, h1, _), (_, h2, _) = self.twice("/plain")
        self.assertEqual((h1["x-cache"], h2["x-cache"]), ("MISS", "HIT"))
        self.assertEqual(self.up.count("/plain"), 1)

    def test_age_grows_and_upstream_age_counts(self):
        path = "/aged?" + q(cc="max-age=100", age="40")
        self.g(path)
        time.sleep(1.1)
        _, h, _ = self.g(path)
        self.assertEqual(h["x-cache"], "HIT")
        self.assertGreaterEqual(int(h["age"]), 41)
        # an answer already older than its max-age is stale on arrival
        path = "/old?" + q(cc="max-age=10", age="20")
        (_, h1, _), (_, h2, _) = self.twice(path)
        self.assertEqual(h2["x-cache"], "MISS")
        self.assertEqual(self.up.count(path), 2)

    def test_s_maxage_wins_over_max_age(self):
        path = "/s?" + q(cc="max-age=60, s-maxage=0")
        self.twice(path)
        self.assertEqual(self.up.count(path), 2)
        path = "/s2?" + q(cc="max-age=0, s-maxage=60")
        (_, _, _), (_, h, _) = self.twice(path)
        self.assertEqual(h["x-cache"], "HIT")

    def test_expires(self):
        path = "/e1?" + q(expires="60")
        self.assertEqual(self.twice(path)[1][1]["x-cache"], "HIT")
        path = "/e2?" + q(expires="-60")
        self.twice(path)
        self.assertEqual(self.up.count(path), 2)
        path = "/e3?" + q(cc="max-age=60", expires="-60")  # max-age wins over Expires
        self.assertEqual(self.twice(path)[1][1]["x-cache"], "HIT")

    def test_statuses(self):
        path = "/nf?" + q(status="404")
        (s, _, _), (s2, h2, _) = self.twice(path)
        self.assertEqual((s, s2, h2["x-cache"]), (404, 404, "HIT"))
        for st in ("500", "503", "206"):
            path = "/st?" + q(status=st, cc="max-age=60")
            self.twice(path)
            self.assertEqual(self.up.count(path), 2, st)
        path = "/tr?" + q(status="307")  # not heuristically cacheable without a lifetime
        self.twice(path)
        self.assertEqual(self.up.count(path), 2)

    # ---- never stored ----------------------------------------------------------

    def test_never_stored(self):
        for name, params in [("nostore", {"cc": "no-store, max-age=60"}),
                             ("private", {"cc": "private, max-age=60"}),
                             ("cookie", {"cc": "max-age=60", "cookie": "1"}),
                             ("varystar", {"cc": "max-age=60", "vary": "*"})]:
            path = "/n/%s?%s" % (name, q(**params))
            (_, h1, _), (_, h2, _) = self.twice(path)
            self.assertEqual((h1["x-cache"], h2["x-cache"]), ("MISS", "MISS"), name)
            self.assertEqual(self.up.count(path), 2, name)

    def test_authorization(self):
        auth = {"Authorization": "Bearer t"}
        path = "/auth1?" + q(cc="max-age=60")
        self.twice(path, headers=auth)
        self.assertEqual(self.up.count(path), 2)
        # a stored answer that is not public is not given to a request with Authorization
        path = "/auth2?" + q(cc="max-age=60")
        self.g(path)
        _, h, _ = self.g(path, headers=auth)
        self.assertEqual(h["x-cache"], "MISS")
        self.assertEqual(self.up.count(path), 2)
        for cc in ("public, max-age=60", "s-maxage=60"):
            path = "/auth3?" + q(cc=cc)
            (_, _, b1), (_, h2, b2) = self.twice(path, headers=auth)
            self.assertEqual(h2["x-cache"], "HIT", cc)
            self.assertEqual(self.up.count(path), 1, cc)

    def test_unkeyed_inputs_do_not_poison(self):
        """SECURITY-CASES CR-1: URL/host/scheme/method overrides are not in the key, so an answer
        to a request carrying one is not stored (unless Vary names it); the authority is keyed."""
        path = "/poison?" + q(cc="max-age=60")
        for hdr in ("X-Forwarded-Host", "X-Original-URL", "X-Forwarded-Proto", "X-HTTP-Method-Override"):
            _, h, _ = self.g(path, headers={hdr: "evil.example"})
            self.assertEqual(h["x-cache"], "MISS", hdr)
        _, h, _ = self.g(path)
        self.assertEqual(h["x-cache"], "MISS")  # none of them was stored
        _, h, _ = self.g(path, headers={"X-Original-URL": "/admin"})
        self.assertEqual(h["x-cache"], "HIT")   # a stored answer may serve them
        self.assertEqual(self.up.count(path), 5)
        path = "/poison2?" + q(cc="max-age=60", vary="X-Forwarded-Host")
        self.g(path, headers={"X-Forwarded-Host": "a.example"})
        _, h, _ = self.g(path, headers={"X-Forwarded-Host": "a.example"})
        self.assertEqual(h["x-cache"], "HIT")
        _, h, _ = self.g(path, headers={"X-Forwarded-Host": "b.example"})
        self.assertEqual(h["x-cache"], "MISS")
        path = "/hosted?" + q(cc="max-age=60")
        self.g(path, headers={"Host": "a.example"})
        self.assertEqual(self.g(path, headers={"Host": "b.example"})[1]["x-cache"], "MISS")
        self.assertEqual(self.g(path, headers={"Host": "a.example"})[1]["x-cache"], "HIT")

    # ---- revalidation -------------------------------------------------------------

    def test_stale_entry_is_revalidated_and_refreshed(self):
        path = "/r?" + q(cc="max-age=1", etag="v1")
        s, h, body = self.g(path)
        self.assertEqual(h["x-cache"], "MISS")
        time.sleep(1.2)
        s, h, b = self.g(path)
        self.assertEqual((s, h["x-cache"], b), (200, "STALE", body))
        self.assertEqual(self.up.revalidations.get(path), 1)
        self.assertEqual(self.up.requests[-1][1].get("if-none-match"), '"v1"')
        # the 304 refreshed it: fresh again
        s, h, b = self.g(path)
        self.assertEqual((h["x-cache"], b), ("HIT", body))
        self.assertEqual(self.up.count(path), 2)

    def test_no_cache_answer_revalidated_every_time(self):
        path = "/nc?" + q(cc="no-cache", etag="x")
        _, _, body = self.g(path)
        for _ in range(2):
            s, h, b = self.g(path)
            self.assertEqual((s, h["x-cache"], b), (200, "STALE", body))
        self.assertEqual(self.up.revalidations.get(path), 2)

    def test_stale_if_error(self):
        # RFC 5861: a stale entry answers when its fetch fails (5xx from the upstream, or the
        # upstream unreachable) within the window the answer (or the filter's stale_if_error) gives
        ok = "/sie?" + q(cc="max-age=1, stale-if-error=60")            # no validator
        ev = "/sie?" + q(cc="max-age=1, stale-if-error=60", etag="e1")  # revalidated first
        cfg = "/sie?" + q(cc="max-age=1")                               # the filter's window (30 s)
        never = "/sie?" + q(cc="max-age=1, must-revalidate, stale-if-error=60")
        short = "/sie?" + q(cc="max-age=1, stale-if-error=1")
        first = {p: self.g(p)[2] for p in (ok, ev, cfg, never, short)}
        time.sleep(3.2)  # all stale; `short` past its window too (age >= 3 > 1 + 1)
        self.up.fail_status = 503
        for p in (ok, ev, cfg):
            s, h, b = self.g(p)
            self.assertEqual((s, h["x-cache"], b), (200, "STALE-IF-ERROR", first[p]), p)
            self.assertGreaterEqual(int(h["age"]), 3)
        self.assertEqual(self.up.revalidations.get(ev), None)  # the 503 came, not a 304
        self.assertEqual(self.g(never)[0], 503)  # must-revalidate: never served stale
        self.assertEqual(self.g(short)[0], 503)  # past its window
        self.assertEqual(self.g(ok, headers={"Cache-Control": "no-cache"})[0], 503)
        self.up.fail_status = 0
        s, h, b = self.g(ok)  # the upstream is back: a fresh answer replaces the entry
        self.assertEqual((s, h["x-cache"]), (200, "MISS"))
        self.assertNotEqual(b, first[ok])
        # the upstream closing without an answer: Portico's own 502 is an error too
        time.sleep(1.2)
        self.up.fail_status = -1
        s, h, b2 = self.g(ok)
        self.assertEqual((s, h["x-cache"], b2), (200, "STALE-IF-ERROR", b))
        st, body = admin(self.admin, "GET", "/metrics")
        self.assertIn('portico_cache_stale_if_error_total{cache="main"} 4', body.decode())

    def test_last_modified_revalidation(self):
        path = "/lm?" + q(cc="max-age=0", lm="100")
        self.g(path)
        self.g(path)
        self.assertIn("if-modified-since", self.up.requests[-1][1])

    def test_client_conditionals(self):
        path = "/cond?" + q(cc="max-age=60", etag="e7")
        self.g(path)
        s, h, b = self.g(path, headers={"If-None-Match": '"e7"'})
        self.assertEqual((s, h["x-cache"], b, h["etag"]), (304, "HIT", b"", '"e7"'))
        s, h, b = self.g(path, headers={"If-None-Match": 'W/"other", W/"e7"'})
        self.assertEqual(s, 304)
        s, h, b = self.g(path, headers={"If-None-Match": '"nope"'})
        self.assertEqual((s, h["x-cache"]), (200, "HIT"))
        # stale: our conditional goes upstream, the client's own 304 comes back
        path = "/cond2?" + q(cc="max-age=0", etag="e8")
        self.g(path)
        s, h, b = self.g(path, headers={"If-None-Match": '"e8"'})
        self.assertEqual((s, h["x-cache"]), (304, "STALE"))
        s, h, b = self.g(path, headers={"If-None-Match": '"zz"'})
        self.assertEqual((s, h["x-cache"]), (200, "STALE"))
        self.assertTrue(b.startswith(b"/cond2 #1"))

    # ---- request Cache-Control ---------------------------------------------------

    def test_request_directives(self):
        path = "/rq?" + q(cc="max-age=60")
        self.g(path)
        _, h, _ = self.g(path, headers={"Cache-Control": "no-store"})
        self.assertEqual(h["x-cache"], "BYPASS")
        _, h, b = self.g(path, headers={"Cache-Control": "no-cache"})
        self.assertEqual(h["x-cache"], "MISS")   # no validator: fetched again, stored anew
        self.assertTrue(b.startswith(b"/rq #3"))
        _, h, b = self.g(path, headers={"Cache-Control": "max-age=0"})
        self.assertEqual(h["x-cache"], "MISS")
        _, h, _ = self.g(path, headers={"Pragma": "no-cache"})
        self.assertEqual(h["x-cache"], "MISS")
        _, h, b = self.g(path)
        self.assertEqual((h["x-cache"], b[:7]), ("HIT", b"/rq #5 "))
        s, h, _ = self.g("/unknown-yet", headers={"Cache-Control": "only-if-cached"})
        self.assertEqual(s, 504)
        self.assertEqual(self.up.count("/unknown-yet"), 0)

    def test_post_is_not_cached(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request("POST", "/post?" + q(cc="max-age=60"), body=b"x")
        r = c.getresponse()
        r.read()
        c.close()
        self.assertIsNone(r.getheader("x-cache"))

    # ---- Vary ------------------------------------------------------------------------

    def test_vary(self):
        path = "/v?" + q(cc="max-age=60", vary="Accept-Language")
        en, fr = {"Accept-Language": "en"}, {"Accept-Language": "fr"}
        self.assertEqual(self.g(path, headers=en)[1]["x-cache"], "MISS")
        self.assertEqual(self.g(path, headers=fr)[1]["x-cache"], "MISS")
        s, h, b = self.g(path, headers=en)
        self.assertEqual((h["x-cache"], b.split()[-1]), ("HIT", b"lang=en"))
        s, h, b = self.g(path, headers=fr)
        self.assertEqual((h["x-cache"], b.split()[-1]), ("HIT", b"lang=fr"))
        s, h, b = self.g(path)
        self.assertEqual(h["x-cache"], "MISS")
        self.assertEqual(self.up.count(path), 3)

    # ---- coalescing --------------------------------------------------------------

    def _concurrent(self, path, n):
        out = [None] * n

        def one(i):
            try:
                out[i] = self.g(path, timeout=15)
            except Exception as e:  # noqa: BLE001 - reported below
                out[i] = e
        ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(20)
        return out

    def test_coalescing_one_upstream_fetch(self):
        path = "/co?" + q(cc="max-age=60", delay="400")
        out = self._concurrent(path, 12)
        for r in out:
            self.assertIsInstance(r, tuple, r)
            self.assertEqual(r[0], 200)
        self.assertEqual(self.up.count(path), 1)
        self.assertEqual(len({r[2] for r in out}), 1)
        self.assertEqual(sorted(r[1]["x-cache"] for r in out), ["HIT"] * 11 + ["MISS"])

    def test_coalescing_failed_fetch_never_hangs(self):
        path = "/cf?" + q(status="503", delay="200")
        t0 = time.monotonic()
        out = self._concurrent(path, 4)
        for r in out:
            self.assertIsInstance(r, tuple, r)
            self.assertEqual(r[0], 503)
        self.assertLess(time.monotonic() - t0, 8)
        self.assertEqual(self.up.count(path), 4)  # one after the other, each got its answer

    def test_coalescing_uncacheable_answer_releases_waiters_at_once(self):
        path = "/cp?" + q(cc="private", delay="300")
        t0 = time.monotonic()
        out = self._concurrent(path, 6)
        for r in out:
            self.assertEqual(r[0], 200)
        self.assertLess(time.monotonic() - t0, 1.5)  # not 6 x 300 ms in a row

    # ---- sizes -------------------------------------------------------------------------

    def test_max_object(self):
        for extra in ({}, {"chunked": "1"}):
            path = "/big?" + q(cc="max-age=60", size=str(100 * 1024), **extra)
            (s1, h1, b1), (s2, h2, b2) = self.twice(path)
            self.assertEqual((len(b1), len(b2)), (100 * 1024, 100 * 1024))
            self.assertEqual(h2["x-cache"], "MISS")
            self.assertEqual(self.up.count(path), 2)
        path = "/fits?" + q(cc="max-age=60", size=str(60 * 1024), chunked="1")
        (_, _, b1), (_, h2, b2) = self.twice(path)
        self.assertEqual((h2["x-cache"], b1), ("HIT", b2))

    # ---- purge and metrics ------------------------------------------------------------

    def test_purge(self):
        paths = ["/p/1?" + q(cc="max-age=60"), "/p/2?" + q(cc="max-age=60"), "/other?" + q(cc="max-age=60")]
        for p in paths:
            self.g(p)
        st, body = admin(self.admin, "POST", "/cache/purge?" + q(path=paths[0]))
        self.assertEqual(st, 200, body)
        res = json.loads(body)
        self.assertIn({"cache": "main", "local": 1}, res)
        self.assertEqual(self.g(paths[0])[1]["x-cache"], "MISS")
        self.assertEqual(self.g(paths[1])[1]["x-cache"], "HIT")
        st, body = admin(self.admin, "POST", "/cache/purge?" + q(prefix="/p/"))
        self.assertIn({"cache": "main", "local": 2}, json.loads(body))
        self.assertEqual(self.g(paths[1])[1]["x-cache"], "MISS")
        self.assertEqual(self.g(paths[2])[1]["x-cache"], "HIT")
        st, body = admin(self.admin, "POST", "/cache/purge")
        self.assertEqual(st, 400)
        st, body = admin(self.admin, "GET", "/cache/purge?" + q(path="/x"))
        self.assertEqual(st, 405)

    def test_metrics(self):
        path = "/m?" + q(cc="max-age=60")
        self.twice(path)
        st, body = admin(self.admin, "GET", "/metrics")
        text = body.decode()
        self.assertIn('portico_cache_hits_total{cache="main"} 1', text)
        self.assertIn('portico_cache_misses_total{cache="main"} 1', text)
        self.assertIn('portico_cache_stores_total{cache="main"} 1', text)
        self.assertIn('portico_cache_entries{cache="main"} 1', text)
        self.assertIn('portico_cache_hits_total{cache="zipped"} 0', text)
        self.assertEqual(text.count("# TYPE portico_cache_hits_total counter"), 1)

    # ---- with compress ---------------------------------------------------------------

    def test_compress_in_front_of_the_cache(self):
        path = "/z/doc?" + q(cc="max-age=60", size="4000")
        gz = {"Accept-Encoding": "gzip"}
        s, h, b = self.g(path, headers=gz)
        self.assertEqual((h["x-cache"], h.get("content-encoding")), ("MISS", "gzip"))
        plain = gzip.decompress(b)
        s, h, b = self.g(path, headers=gz)
        self.assertEqual((h["x-cache"], h.get("content-encoding")), ("HIT", "gzip"))
        self.assertEqual(gzip.decompress(b), plain)
        self.assertIn("Accept-Encoding", h.get("vary", ""))
        s, h, b = self.g(path)
        self.assertEqual((h["x-cache"], h.get("content-encoding"), b), ("HIT", None, plain))
        self.assertEqual(self.up.count(path), 1)
        # an upstream that encodes itself says Vary: Accept-Encoding and gets one entry per coding
        path = "/z/enc?" + q(cc="max-age=60", gzip="1", vary="Accept-Encoding")
        s, h, b = self.g(path, headers=gz)
        s, h, b2 = self.g(path, headers=gz)
        self.assertEqual((h["x-cache"], b2), ("HIT", b))
        s, h, _ = self.g(path)
        self.assertEqual(h["x-cache"], "MISS")


class CacheOneWorkerTest(PorticoTestCase):
    def test_stored_when_the_client_leaves_at_the_last_byte(self):
        """curl closes as soon as it has Content-Length bytes, before the upstream exchange
        ends on Portico's side: the answer is whole and is stored at its last byte (with one
        worker the second request used to find the fetch aborted and miss)."""
        up = CacheUpstream()
        self.addCleanup(up.stop)
        port = free_port()
        self.start(f"""
listeners: [ {{ address: 127.0.0.1:{port} }} ]
clusters: [ {{ name: web, endpoints: [ "127.0.0.1:{up.port}" ] }} ]
routes:
  - match: {{ prefix: / }}
    proxy: {{ cluster: web }}
    filters: [ {{ cache: {{}} }} ]
""", port)
        for i in range(3):
            url = f"http://127.0.0.1:{port}/leave{i}?" + q(cc="max-age=60", size="5000")
            st, h, b, err = curl(url)
            self.assertEqual((st, h.get("x-cache")), (200, "MISS"), err)
            st, h, b2, err = curl(url)
            self.assertEqual((st, h.get("x-cache"), b2), (200, "HIT", b), err)


class CacheEvictionTest(PorticoTestCase):
    """LRU under max_size: one shard (max_size < 8 x max_object), five 15 KiB answers in 64 KiB."""

    def test_lru_eviction(self):
        up = CacheUpstream()
        self.addCleanup(up.stop)
        port, adm = free_port(), free_port()
        self.start(f"""
listeners: [ {{ address: 127.0.0.1:{port} }} ]
admin: {{ address: 127.0.0.1:{adm} }}
clusters: [ {{ name: web, endpoints: [ "127.0.0.1:{up.port}" ] }} ]
routes:
  - match: {{ prefix: / }}
    proxy: {{ cluster: web }}
    filters: [ {{ cache: {{ max_size: 64k, max_object: 16k, name: small }} }} ]
""", port)
        paths = ["/l%d?%s" % (i, q(cc="max-age=60", size=str(15 * 1024))) for i in range(5)]
        for p in paths[:4]:
            self.assertEqual(get(port, p)[1]["x-cache"], "MISS")
        self.assertEqual(get(port, paths[0])[1]["x-cache"], "HIT")  # l0 is now the most recent
        get(port, paths[4])                                         # evicts l1, the least recent
        self.assertEqual(get(port, paths[0])[1]["x-cache"], "HIT")
        self.assertEqual(get(port, paths[1])[1]["x-cache"], "MISS")
        text = admin(adm, "GET", "/metrics")[1].decode()
        self.assertIn('portico_cache_evictions_total{cache="small"} ', text)
        ev = int(text.split('portico_cache_evictions_total{cache="small"} ')[1].split()[0])
        self.assertGreaterEqual(ev, 1)
        size = int(text.split('portico_cache_bytes{cache="small"} ')[1].split()[0])
        self.assertLessEqual(size, 64 * 1024)


class CacheConfigTest(PorticoTestCase):
    def test_bad_config_is_refused(self):
        from portico_test import Portico
        port = free_port()
        p = Portico(f"""
listeners: [ {{ address: 127.0.0.1:{port} }} ]
routes:
  - match: {{ prefix: / }}
    respond: {{ body: ok }}
    filters: [ {{ cache: {{ max_size: 1m, max_object: 2m }} }} ]
""")
        try:
            p.proc.wait(20)
            out = p.output()
        finally:
            p.stop()
        self.assertNotEqual(p.proc.returncode, 0)
        self.assertRegex(out, r"portico.yaml:\d+:\d+: cache: max_object")


if __name__ == "__main__":
    unittest.main()
