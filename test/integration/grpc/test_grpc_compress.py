"""
test_grpc_compress.py -- the `compress` filter on a grpc route (bookstore-server):
the REST/JSON answers are compressed like any other JSON (server streams
flushed per message: the first message reaches the client, compressed, long
before the stream ends), while native gRPC on the same route is left alone
(its bodies are application/grpc; grpc-encoding passes through).
"""
import os
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bookstore"))

from portico_test import Portico, curl, free_port  # noqa: E402
from bookstore_server import BookstoreServer, PB, grpc, pb, pb_grpc  # noqa: E402


class GrpcCompressTest(unittest.TestCase):
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
    filters: [ {{ compress: {{ min_size: 10, types: [ "application/*" ] }} }} ]
""")
        try:
            cls.gw.wait_ready(cls.port)
        except Exception:
            print(cls.gw.output())
            raise
        cls.base = f"http://127.0.0.1:{cls.port}"

    @classmethod
    def tearDownClass(cls):
        rc, out = cls.gw.stop_with_output()
        brc = cls.bs.stop()
        assert rc == 0, "portico exited with %s:\n%s" % (rc, out)
        assert brc == 0, "bookstore-server exited with %s" % brc

    def test_rest_json_compressed(self):
        for codec in ("gzip", "br", "zstd"):
            st, h, body, err = curl("--compressed", "-H", "Accept-Encoding: " + codec,
                                    f"{self.base}/v1/shelves")
            self.assertEqual(st, 200, err)
            self.assertEqual(h.get("content-encoding"), codec)
            self.assertIn(b'"shelves"', body)

    def test_server_stream_flushed_per_message(self):
        p = subprocess.Popen(["curl", "-sS", "-N", "--compressed", "--max-time", "20",
                              "-H", "Accept-Encoding: gzip", "-H", "Accept: application/x-ndjson",
                              f"{self.base}/v1/shelves/1/books:watch?count=3&intervalMs=700"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            t0 = time.monotonic()
            first = p.stdout.readline()
            t_first = time.monotonic() - t0
            rest, err = p.communicate(timeout=20)
            total = time.monotonic() - t0
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
        self.assertIn(b'"sequence":"1"', first)
        self.assertEqual(rest.count(b"sequence"), 2, err)
        self.assertLess(t_first, total - 1.0)  # not held until the end (1.4 s of intervals)

    def test_native_grpc_untouched(self):
        ch = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        try:
            stub = pb_grpc.BookstoreStub(ch)
            resp, call = stub.ListShelves.with_call(pb.ListShelvesRequest(), timeout=10,
                                                    metadata=(("accept-encoding", "gzip, br"),))
            self.assertGreater(len(resp.shelves), 0)
            md = dict(call.initial_metadata())
            self.assertNotIn("content-encoding", md)
        finally:
            ch.close()


if __name__ == "__main__":
    unittest.main()
