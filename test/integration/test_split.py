"""
Traffic split (issue 12, core/route_split.c): `proxy: { split: [...] }` and
`grpc: { split: [...] }` spread requests over clusters by weight, sticky by
`hash_key` when the request carries it; config errors for split + cluster,
weights summing to 0 and clusters of different kinds.
"""
import http.client
import json
import os
import subprocess
import tempfile
import threading
import unittest

from portico_test import BIN, PorticoTestCase, free_port
from test_retry import Upstream


def config(port, clusters, route):
    return f"""
listeners:
  - address: 127.0.0.1:{port}
clusters:
{clusters}
routes:
{route}
"""


def ports_seen(port, n, headers_for=lambda i: {}, threads=4):
    """n GETs over `threads` keep-alive connections; the upstream port of each answer."""
    out = [None] * n
    errors = []

    def run(k):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        try:
            for i in range(k, n, threads):
                c.request("GET", f"/s/{i}", headers=headers_for(i))
                r = c.getresponse()
                body = r.read()
                if r.status != 200:
                    errors.append((r.status, body))
                    continue
                out[i] = json.loads(body)["port"]
        finally:
            c.close()

    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    return out, errors


class SplitTest(PorticoTestCase):
    def upstream(self, kind="http", mode="ok"):
        u = Upstream(kind, mode)
        self.addCleanup(u.kill)
        return u

    def two_clusters(self):
        v1, v2 = self.upstream(), self.upstream()
        clusters = (f'  - {{ name: v1, endpoints: [ "127.0.0.1:{v1.port}" ] }}\n'
                    f'  - {{ name: v2, endpoints: [ "127.0.0.1:{v2.port}" ] }}\n')
        return v1, v2, clusters

    def test_weighted_ratio(self):
        v1, v2, clusters = self.two_clusters()
        port = free_port()
        self.start(config(port, clusters,
                          "  - proxy: { split: [ { cluster: v1, weight: 90 }, { cluster: v2, weight: 10 } ] }\n"),
                   port, workers=2)
        n = 2000
        seen, errors = ports_seen(port, n)
        self.assertEqual(errors, [])
        to_v2 = seen.count(v2.port)
        self.assertEqual(seen.count(v1.port) + to_v2, n)
        # binomial(2000, 0.1): sd ~ 13.4; +-60 is ~4.5 sd
        self.assertGreater(to_v2, 200 - 60)
        self.assertLess(to_v2, 200 + 60)

    def test_sticky_by_header(self):
        v1, v2, clusters = self.two_clusters()
        port = free_port()
        self.start(config(port, clusters,
                          "  - proxy:\n"
                          "      split: [ { cluster: v1, weight: 50 }, { cluster: v2, weight: 50 } ]\n"
                          '      hash_key: "header:x-user"\n'),
                   port, workers=2)
        users = 40
        seen, errors = ports_seen(port, users * 10, lambda i: {"X-User": f"user-{i % users}"})
        self.assertEqual(errors, [])
        by_user = {}
        for i, p in enumerate(seen):
            by_user.setdefault(i % users, set()).add(p)
        self.assertTrue(all(len(s) == 1 for s in by_user.values()), by_user)
        landed = [next(iter(s)) for s in by_user.values()]
        # both versions get users (40 users at 50/50: all on one side is ~1e-12)
        self.assertIn(v1.port, landed)
        self.assertIn(v2.port, landed)
        # without the header: spread at random over both
        seen, errors = ports_seen(port, 200)
        self.assertEqual(errors, [])
        self.assertGreater(seen.count(v1.port), 40)
        self.assertGreater(seen.count(v2.port), 40)

    def test_sticky_by_cookie(self):
        v1, v2, clusters = self.two_clusters()
        port = free_port()
        self.start(config(port, clusters,
                          "  - proxy:\n"
                          "      split: [ { cluster: v1, weight: 1 }, { cluster: v2, weight: 1 } ]\n"
                          '      hash_key: "cookie:session"\n'),
                   port)
        seen, errors = ports_seen(port, 100, lambda i: {"Cookie": f"a=1; session=s{i % 10}; b=2"})
        self.assertEqual(errors, [])
        for u in range(10):
            self.assertEqual(len({seen[i] for i in range(u, 100, 10)}), 1)

    def test_grpc_split(self):
        tmp = self.enterContext(tempfile.TemporaryDirectory())
        files = [os.path.join(tmp, "a.json"), os.path.join(tmp, "b.json")]
        ups = [Upstream("grpc", "ok", f) for f in files]
        for u in ups:
            self.addCleanup(u.kill)
        from portico_test import h2_call
        import sys
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "bookstore"))
        from bookstore_server import PB
        if not os.path.exists(PB):
            self.skipTest("bookstore descriptors not built")
        port = free_port()
        self.start(f"""
listeners:
  - address: 127.0.0.1:{port}
descriptors: [ {PB} ]
clusters:
  - {{ name: g1, protocol: grpc, endpoints: [ "http://127.0.0.1:{ups[0].port}" ] }}
  - {{ name: g2, protocol: grpc, endpoints: [ "http://127.0.0.1:{ups[1].port}" ] }}
routes:
  - grpc: {{ split: [ {{ cluster: g1, weight: 3 }}, {{ cluster: g2, weight: 1 }} ] }}
""", port)
        msg = b"\x00\x00\x00\x00\x02\x08\x01"
        hdrs = [("content-type", "application/grpc"), ("te", "trailers")]
        n = 200
        for _ in range(n):
            _, data, trailers, _ = h2_call(port, "/bookstore.v1.Bookstore/GetShelf", hdrs, msg)
            self.assertEqual(trailers.get("grpc-status"), "0")
        calls = []
        for f in files:
            with open(f) as fh:
                calls.append(json.load(fh)["calls"])
        self.assertEqual(sum(calls), n)
        self.assertGreater(calls[1], 50 - 25)  # binomial(200, .25): sd ~ 6
        self.assertLess(calls[1], 50 + 25)


class SplitConfigTest(unittest.TestCase):
    def validate(self, text):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "p.yaml")
            with open(path, "w") as f:
                f.write(text)
            r = subprocess.run([BIN, "--validate", "-c", path], capture_output=True, text=True,
                               timeout=30)
            return r.returncode, r.stdout + r.stderr

    BASE = """
listeners: [ {{ address: 127.0.0.1:1 }} ]
clusters:
  - {{ name: v1, endpoints: [ "127.0.0.1:9" ] }}
  - {{ name: v2, endpoints: [ "127.0.0.1:9" ] }}
  - {{ name: g, protocol: grpc, endpoints: [ "http://127.0.0.1:9" ] }}
routes:
  - proxy: {route}
"""

    def test_errors(self):
        cases = [
            ("{ cluster: v1, split: [ { cluster: v1, weight: 1 } ] }",
             "`split` and `cluster` both given"),
            ("{ split: [ { cluster: v1, weight: 0 }, { cluster: v2, weight: 0 } ] }",
             "weights sum to 0"),
            ("{ split: [ { cluster: v1, weight: 1 }, { cluster: g, weight: 1 } ] }",
             "a split is over clusters of one kind"),
            ("{ split: [ { cluster: v1, weight: 1 }, { cluster: nope, weight: 1 } ] }",
             "unknown cluster 'nope'"),
            ("{ split: [ { cluster: nope, weight: 1 }, { cluster: g, weight: 1 } ] }",
             "cluster 'g' is a grpc cluster; proxy needs http clusters"),
            ("{ split: [ { cluster: v1, weight: 1 } ], hash_key: \"header:\" }",
             "hash_key: expected client_ip"),
            ("{ split: [ { cluster: v1, weight: 1 } ], hash_key: ip }",
             "hash_key: expected client_ip"),
            ("{ split: [] }", "expected a list"),
        ]
        for route, msg in cases:
            code, out = self.validate(self.BASE.format(route=route))
            self.assertEqual(code, 1, route)
            self.assertIn(msg, out, route)
            self.assertRegex(out, r"p\.yaml:\d+:\d+: ")
        code, out = self.validate(self.BASE.format(
            route="{ split: [ { cluster: v1, weight: 9 }, { cluster: v2, weight: 1 } ], "
                  "hash_key: client_ip }"))
        self.assertEqual(code, 0, out)


if __name__ == "__main__":
    unittest.main()
