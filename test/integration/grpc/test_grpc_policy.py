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
            messages = []
            for _ in range(8):
                st, _, body, _ = curl(url)
                self.assertEqual(st, 503, body)
                messages.append(json.loads(body.decode())["message"])
            # the first five were dialled and failed to connect; then the
            # endpoint is out and calls are refused before any dialling
            self.assertNotIn("no upstream available", messages[:5])
            self.assertEqual(messages[5:], ["no upstream available"] * 3)
        finally:
            out = gw.output()
            self.assertEqual(gw.stop(), 0, out)


if __name__ == "__main__":
    unittest.main()
