"""
test_grpc_policy.py -- transcoded REST->gRPC calls follow the one endpoint
policy (upstream/policy.c): an endpoint that cannot be connected to is ejected
after PT_POLICY_EJECT_AFTER failures, as for every other call, and then
refused up front instead of being dialled again. (Written when these calls
went through gRPC C core, which had no ejection; they now ride the nghttp2
client, and the test holds the same line.)
"""
import json
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bookstore"))

from portico_test import Portico, curl, free_port  # noqa: E402
from bookstore_server import PB  # noqa: E402

CONFIG = """
listeners:
  - address: 127.0.0.1:{port}
workers: 1
descriptors: [ {pb} ]
access_log: {{ path: access.log }}
clusters:
  - {{ name: down, protocol: grpc, endpoints: [ "127.0.0.1:{dead}" ], retries: 0 }}
routes:
  - grpc: {{ cluster: down }}
"""


class GrpcPolicyTest(unittest.TestCase):
    def test_dead_endpoint_is_ejected(self):
        port = free_port()
        gw = Portico(CONFIG.format(port=port, pb=PB, dead=free_port()), workers=1)
        try:
            gw.wait_ready(port)
            url = "http://127.0.0.1:%d/v1/shelves/1" % port
            for _ in range(8):
                st, _, body, _ = curl(url)
                self.assertEqual(st, 503, body)
                # clients get the stable message whatever the cause (issue 11)
                self.assertEqual(json.loads(body.decode())["message"], "no upstream available")
            # the first five were dialled and failed to connect; then the
            # endpoint is out and calls are refused before any dialling: the
            # access log's reasons tell them apart
            log = os.path.join(gw.dir, "access.log")
            reasons = []
            deadline = time.monotonic() + 5
            while len(reasons) < 8 and time.monotonic() < deadline:
                with open(log) as f:
                    reasons = [json.loads(line).get("reason") for line in f if line.strip()]
                time.sleep(0.05)
            self.assertEqual(len(reasons), 8, reasons)
            self.assertNotIn("no endpoint available", reasons[:5])
            self.assertTrue(all(r == reasons[5] for r in reasons[5:]), reasons)
            self.assertNotEqual(reasons[4], reasons[5], reasons)
        finally:
            out = gw.output()
            self.assertEqual(gw.stop(), 0, out)


if __name__ == "__main__":
    unittest.main()
