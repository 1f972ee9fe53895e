"""
test_error_leak.py -- errors from upstream libraries never reach clients
(issue 11): a gRPC backend whose status carries gRPC core's "failed to
connect to all addresses ..." or a Python exception text, and a backend that
cannot be reached, seen through a grpc route's REST transcoding, gRPC-Web,
the WebSocket bridge and an aggregate. Clients get the code and
a stable message from portico/status.h; the access log keeps the detail.
Application statuses (NOT_FOUND "...") keep the backend's words; native gRPC
passes the backend's status as sent (a transparent gRPC proxy).
"""
import json
import os
import struct
import sys
import threading
import time
import unittest
from concurrent import futures

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bookstore"))

from portico_test import Portico, curl, free_port  # noqa: E402
from bookstore_server import PB, grpc  # noqa: E402

CORE = ("failed to connect to all addresses; last error: UNKNOWN: ipv4:10.9.8.7:443: "
        "Failed to connect to remote host: Connection refused")
EXC = "Exception calling application: boom at /srv/app/secret_module.py line 42"
SECRETS = ("failed to connect", "10.9.8.7", "secret_module", "Exception", "connection refused",
           "Connection refused")


class LeakyBackend:
    """bookstore.v1.Bookstore: Echo -> UNAVAILABLE with gRPC core's text (and a
    details-bin); GetShelf -> NOT_FOUND "shelf 7 not found"; WatchBooks -> one
    message then INTERNAL with an exception text; ListShelves -> DEADLINE_EXCEEDED."""

    def __init__(self):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = {
            "Echo": grpc.unary_unary_rpc_method_handler(self.echo),
            "GetShelf": grpc.unary_unary_rpc_method_handler(self.get_shelf),
            "ListShelves": grpc.unary_unary_rpc_method_handler(self.list_shelves),
            "WatchBooks": grpc.unary_stream_rpc_method_handler(self.watch),
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("bookstore.v1.Bookstore", handlers),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def echo(self, req, ctx):
        # google.rpc.Status{code: 14, message: CORE} as details-bin too
        msg = CORE.encode()
        status = b"\x08\x0e\x12" + bytes([len(msg)]) + msg
        ctx.set_trailing_metadata((("grpc-status-details-bin", status),))
        ctx.abort(grpc.StatusCode.UNAVAILABLE, CORE)

    def get_shelf(self, req, ctx):
        ctx.abort(grpc.StatusCode.NOT_FOUND, "shelf 7 not found")

    def list_shelves(self, req, ctx):
        ctx.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded at 10.9.8.7")

    def watch(self, req, ctx):
        yield b"\x08\x01"
        ctx.abort(grpc.StatusCode.INTERNAL, EXC)

    def stop(self):
        self.server.stop(0)


def frame(msg, flag=0):
    return struct.pack(">BI", flag, len(msg)) + msg


class ErrorLeakTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.be = LeakyBackend()
        cls.port = free_port()
        cls.portico = Portico(f"""
listeners: [ {{ address: "127.0.0.1:{cls.port}" }} ]
workers: 1
descriptors: [ {PB} ]
access_log: {{ path: access.log }}
clusters:
  - {{ name: leaky, protocol: grpc, endpoints: [ "127.0.0.1:{cls.be.port}" ] }}
  - {{ name: dead, protocol: grpc, endpoints: [ "127.0.0.1:{free_port()}" ] }}
routes:
  - match: {{ prefix: /agg }}
    aggregate:
      calls:
        - {{ name: e, grpc: {{ cluster: leaky, method: bookstore.v1.Bookstore/Echo, body: {{ message: x }} }} }}
  - match: {{ prefix: /aggdead }}
    aggregate:
      calls:
        - {{ name: e, grpc: {{ cluster: dead, method: bookstore.v1.Bookstore/Echo, body: {{ message: x }} }} }}
  - match: {{ host: dead.test }}
    grpc: {{ cluster: dead }}
  - grpc: {{ cluster: leaky }}
""")
        cls.portico.wait_ready(cls.port)
        cls.base = f"http://127.0.0.1:{cls.port}"

    @classmethod
    def tearDownClass(cls):
        cls.portico.stop()
        cls.be.stop()

    def assertClean(self, text, *what):
        for s in SECRETS:
            self.assertNotIn(s, text, what)

    def log(self):
        path = os.path.join(self.portico.dir, "access.log")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if os.path.exists(path) and os.path.getsize(path) > 0:
                break
            time.sleep(0.05)
        with open(path) as f:
            return f.read()

    def test_rest(self):
        st, h, body, _ = curl("-X", "POST", "-H", "content-type: application/json",
                              "--data", '{"message":"x"}', self.base + "/v1/echo")
        self.assertEqual(st, 503, body)
        self.assertEqual(json.loads(body), {"code": 14, "message": "upstream failed"})
        self.assertClean(body.decode() + json.dumps(h))
        st, _, body, _ = curl(self.base + "/v1/shelves")
        self.assertEqual((st, json.loads(body)), (504, {"code": 4, "message": "upstream timed out"}))
        # an application status keeps its words
        st, _, body, _ = curl(self.base + "/v1/shelves/7")
        self.assertEqual((st, json.loads(body)), (404, {"code": 5, "message": "shelf 7 not found"}))
        # mid-stream INTERNAL: the last element carries the public message
        st, _, body, _ = curl(self.base + "/v1/shelves/1/books:watch")
        self.assertIn("upstream failed", body.decode())
        self.assertClean(body.decode())
        # the access log keeps what the backend said
        deadline = time.monotonic() + 5
        while CORE not in self.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIn("upstream grpc-status 14: " + CORE, self.log())

    def test_rest_unreachable(self):
        st, _, body, _ = curl("--resolve", "dead.test:%d:127.0.0.1" % self.port,
                              "http://dead.test:%d/v1/shelves/7" % self.port)
        self.assertEqual(st, 503, body)
        self.assertEqual(json.loads(body), {"code": 14, "message": "no upstream available"})

    def test_grpc_web(self):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        self.addCleanup(c.close)
        c.request("POST", "/bookstore.v1.Bookstore/Echo", body=frame(b"\x0a\x01x"),
                  headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"})
        r = c.getresponse()
        data = r.read()
        head = {k.lower(): v for k, v in r.getheaders()}
        self.assertEqual(head.get("grpc-status"), "14", (head, data))  # Trailers-Only
        self.assertEqual(head.get("grpc-message"), "upstream failed")
        self.assertNotIn("grpc-status-details-bin", head)
        self.assertClean(json.dumps(head) + data.decode("latin-1"))
        # trailers in the body (after a message)
        c.request("POST", "/bookstore.v1.Bookstore/WatchBooks", body=frame(b"\x08\x01"),
                  headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"})
        r = c.getresponse()
        data = r.read().decode("latin-1")
        self.assertIn("grpc-status: 13", data)
        self.assertIn("grpc-message: upstream failed", data)
        self.assertClean(data)

    def test_native_grpc(self):
        # Native gRPC is a transparent proxy: the backend's status passes as
        # sent (gRPC interop special_status_message); Portico's own failures
        # carry status.h messages.
        ch = grpc.insecure_channel("127.0.0.1:%d" % self.port)
        self.addCleanup(ch.close)
        echo = ch.unary_unary("/bookstore.v1.Bookstore/Echo")
        with self.assertRaises(grpc.RpcError) as cm:
            echo(b"\x0a\x01x", timeout=10)
        self.assertEqual((cm.exception.code(), cm.exception.details()),
                         (grpc.StatusCode.UNAVAILABLE, CORE))
        dead = grpc.insecure_channel("127.0.0.1:%d" % self.port,
                                     options=(("grpc.default_authority", "dead.test"),))
        self.addCleanup(dead.close)
        with self.assertRaises(grpc.RpcError) as cm:
            dead.unary_unary("/bookstore.v1.Bookstore/Echo")(b"\x0a\x01x", timeout=10)
        self.assertEqual((cm.exception.code(), cm.exception.details()),
                         (grpc.StatusCode.UNAVAILABLE, "no upstream available"))

    def test_aggregate(self):
        st, _, body, _ = curl(self.base + "/agg")
        self.assertGreaterEqual(st, 500, body)
        self.assertClean(body.decode())
        st, _, body, _ = curl(self.base + "/aggdead")
        self.assertGreaterEqual(st, 500, body)
        self.assertClean(body.decode())

    def test_websocket_bridge(self):
        import base64
        import socket
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.addCleanup(s.close)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(("GET /v1/shelves/1/books:watch HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                   % key).encode())
        data = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"upstream failed" in data or len(data) > 100000:
                break
        self.assertIn(b"101", data.split(b"\r\n")[0])
        self.assertIn(b"upstream failed", data)
        self.assertClean(data.decode("latin-1"))


if __name__ == "__main__":
    unittest.main()
