"""
test_grpc_rate_limit.py -- rate_limit on grpc routes: native gRPC clients
(python3-grpcio) over the budget get RESOURCE_EXHAUSTED (made by
pt_req_reject) with the RateLimit-* headers and Retry-After in the initial
metadata, never reaching the service; REST bindings of the same route get
the 429 JSON error; allowed calls carry the headers too.
"""
import json
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bookstore"))

from portico_test import Portico, curl, free_port  # noqa: E402
from bookstore_server import BookstoreServer, PB, grpc, pb, pb_grpc  # noqa: E402

CONFIG = """
listeners:
  - address: 127.0.0.1:{port}
workers: 2
descriptors: [ {pb} ]
clusters:
  - {{ name: books, protocol: grpc, endpoints: [ "http://127.0.0.1:{bs}" ] }}
routes:
  - grpc: {{ cluster: books }}
    filters:
      - rate_limit: {{ requests: 3, per: 1h, key: "header:x-user" }}
"""


class GrpcRateLimitTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = BookstoreServer(threads=4).start()
        cls.port = free_port()
        cls.gw = Portico(CONFIG.format(port=cls.port, pb=PB, bs=cls.srv.port), workers=2)
        cls.gw.wait_ready(cls.port)

    @classmethod
    def tearDownClass(cls):
        out = cls.gw.output()
        code = cls.gw.stop()
        cls.srv.stop()
        if code != 0:
            print(out)
        assert code == 0

    def test_native_grpc_resource_exhausted(self):
        ch = grpc.insecure_channel("127.0.0.1:%d" % self.port)
        self.addCleanup(ch.close)
        stub = pb_grpc.BookstoreStub(ch)
        md = (("x-user", "native"),)
        for i in range(3):
            r, call = stub.Echo.with_call(pb.EchoRequest(message="m%d" % i), metadata=md)
            self.assertEqual(r.message, "m%d" % i)
            head = dict(call.initial_metadata())
            self.assertEqual(head.get("ratelimit-remaining"), str(2 - i))
        with self.assertRaises(grpc.RpcError) as cm:
            stub.Echo(pb.EchoRequest(message="over"), metadata=md)
        e = cm.exception
        self.assertEqual(e.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, e.details())
        md_all = dict(list(e.initial_metadata() or ()) + list(e.trailing_metadata() or ()))
        self.assertEqual(md_all.get("ratelimit-limit"), "3")
        self.assertIn("retry-after", md_all)

    def test_rest_binding_429(self):
        url = "http://127.0.0.1:%d/v1/shelves/1" % self.port
        codes = []
        for _ in range(4):
            st, h, body, _ = curl(url, "-H", "x-user: rest")
            codes.append(st)
            self.assertIn("ratelimit-limit", h)
        self.assertEqual(codes, [200, 200, 200, 429])
        self.assertEqual(json.loads(body)["error"]["code"], "RATE_LIMITED")


if __name__ == "__main__":
    unittest.main()
