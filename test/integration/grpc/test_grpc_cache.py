"""
test_grpc_cache.py -- the `cache` filter on a grpc route (bookstore-server):
REST GET bindings are cached like any JSON answer (the gRPC server has
changed meanwhile, the stored answer is still served, a request asking for
a fresh answer gets the new one), POST bindings and native gRPC calls on the
same route pass untouched, and compress in front of the cache encodes the
stored JSON.
"""
import gzip
import http.client
import json
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bookstore"))

from portico_test import Portico, free_port  # noqa: E402
from bookstore_server import BookstoreServer, PB, grpc, pb, pb_grpc  # noqa: E402


def call(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


class GrpcCacheTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bs = BookstoreServer(threads=2).start()
        cls.port = free_port()
        cls.gw = Portico(f"""
listeners: [ {{ address: "127.0.0.1:{cls.port}", h2c: true }} ]
descriptors: [ {PB} ]
clusters: [ {{ name: books, protocol: grpc, endpoints: [ "127.0.0.1:{cls.bs.port}" ] }} ]
routes:
  - grpc: {{ cluster: books }}
    filters: [ {{ compress: {{ min_size: 10, types: [ "application/*" ] }} }}, {{ cache: {{ ttl: 60s }} }} ]
""")
        try:
            cls.gw.wait_ready(cls.port)
        except Exception:
            print(cls.gw.output())
            raise

    @classmethod
    def tearDownClass(cls):
        rc, out = cls.gw.stop_with_output()
        brc = cls.bs.stop()
        assert rc == 0, "portico exited with %s:\n%s" % (rc, out)
        assert brc == 0, "bookstore-server exited with %s" % brc

    def test_get_binding_cached(self):
        st, h, body = call(self.port, "GET", "/v1/shelves")
        self.assertEqual((st, h["x-cache"]), (200, "MISS"))
        before = json.loads(body)
        st, h, _ = call(self.port, "POST", "/v1/shelves", body=json.dumps({"theme": "Cached poetry"}),
                        headers={"Content-Type": "application/json"})
        self.assertEqual(st, 200)
        self.assertNotIn("x-cache", h)  # POST bindings are not for the cache
        st, h, body = call(self.port, "GET", "/v1/shelves")
        self.assertEqual((st, h["x-cache"], json.loads(body)), (200, "HIT", before))
        self.assertIn("age", h)
        self.assertTrue(h["content-type"].startswith("application/json"))
        st, h, body = call(self.port, "GET", "/v1/shelves", headers={"Cache-Control": "no-cache"})
        self.assertEqual(h["x-cache"], "MISS")
        self.assertIn("Cached poetry", body.decode())
        # compress in front: the stored JSON, encoded for a client that asks
        st, h, zbody = call(self.port, "GET", "/v1/shelves", headers={"Accept-Encoding": "gzip"})
        self.assertEqual((h["x-cache"], h.get("content-encoding")), ("HIT", "gzip"))
        self.assertEqual(gzip.decompress(zbody), body)

    def test_errors_and_native_grpc(self):
        st, h, _ = call(self.port, "GET", "/v1/shelves/987654")
        self.assertEqual((st, h["x-cache"]), (404, "MISS"))
        st, h, _ = call(self.port, "GET", "/v1/shelves/987654")
        self.assertEqual((st, h["x-cache"]), (404, "HIT"))  # 404 is cacheable by default (RFC 9110)
        ch = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        try:
            stub = pb_grpc.BookstoreStub(ch)
            for _ in range(2):
                resp, c = stub.ListShelves.with_call(pb.ListShelvesRequest(), timeout=10)
                self.assertGreaterEqual(len(resp.shelves), 1)
                self.assertNotIn("x-cache", dict(c.initial_metadata()))
        finally:
            ch.close()


if __name__ == "__main__":
    unittest.main()
