"""
gRPC retries (issue 12, upstream/retry.c): a Trailers-Only UNAVAILABLE from
one endpoint is retried on another through native passthrough; with one
endpoint only, the UNAVAILABLE reaches the client after the attempts. The
upstreams are retry_upstream.py's h2c servers (python3-h2), which count the
calls they answer.
"""
import json
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bookstore"))

from portico_test import PorticoTestCase, free_port, h2_call  # noqa: E402
from bookstore_server import PB  # noqa: E402
from test_retry import Upstream  # noqa: E402


def config(port, admin, pb, clusters, routes):
    return f"""
listeners:
  - address: 127.0.0.1:{port}
admin: {{ address: 127.0.0.1:{admin} }}
descriptors: [ {pb} ]
clusters:
{clusters}
routes:
{routes}
"""


class GrpcRetryTest(PorticoTestCase):
    def test_unavailable_is_retried_on_another_endpoint(self):
        tmp = self.enterContext(tempfile.TemporaryDirectory())
        files = [os.path.join(tmp, "a.json"), os.path.join(tmp, "b.json")]
        bad = Upstream("grpc", "unavailable", files[0])
        good = Upstream("grpc", "ok", files[1])
        self.addCleanup(bad.kill)
        self.addCleanup(good.kill)
        port, admin = free_port(), free_port()
        self.start(config(port, admin, PB,
                          "  - name: g\n    protocol: grpc\n"
                          f"    endpoints: [ \"http://127.0.0.1:{bad.port}\", \"http://127.0.0.1:{good.port}\" ]\n"
                          "  - name: g1\n    protocol: grpc\n"
                          f"    endpoints: [ \"http://127.0.0.1:{bad.port}\" ]\n",
                          "  - match: { host: one.test }\n"
                          "    retry: { attempts: 3, on: [unavailable], budget: 100% }\n"
                          "    grpc: { cluster: g1 }\n"
                          "  - retry: { attempts: 2, on: [unavailable], budget: 100% }\n"
                          "    grpc: { cluster: g }\n"), port)
        msg = b"\x00\x00\x00\x00\x02\x08\x01"  # GetShelfRequest{shelf: 1}
        hdrs = [("content-type", "application/grpc"), ("te", "trailers")]
        for _ in range(6):
            head, data, trailers, reset = h2_call(port, "/bookstore.v1.Bookstore/GetShelf", hdrs, msg)
            self.assertIsNone(reset)
            self.assertEqual(trailers.get("grpc-status"), "0", (head, trailers))
            self.assertEqual(data, msg)
        with open(files[1]) as f:
            self.assertEqual(json.load(f)["calls"], 6)
        with open(files[0]) as f:
            bad_calls = json.load(f)["calls"]  # the calls that started there (round robin)
        self.assertGreaterEqual(bad_calls, 3)
        # only the bad one: three tries, then its UNAVAILABLE reaches the client
        head, data, trailers, reset = h2_call(port, "/bookstore.v1.Bookstore/GetShelf", hdrs, msg, authority="one.test")
        status = trailers.get("grpc-status", head.get("grpc-status"))
        self.assertEqual(status, "14", (head, trailers))
        with open(files[0]) as f:
            self.assertEqual(json.load(f)["calls"], bad_calls + 3)



if __name__ == "__main__":
    unittest.main()
