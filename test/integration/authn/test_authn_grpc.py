"""
test_authn_grpc.py -- api_key, ip_access and cors on grpc routes against
examples/bookstore: REST bindings, native gRPC (refusals as UNAUTHENTICATED /
PERMISSION_DENIED), gRPC-Web and WebSocket handshakes of the bridge; the
grpc route's `web_origins` as an alias of the cors filter (preflights list the
verbs google.api.http binds to the path; REST answers carry
Access-Control-Allow-Origin).
"""
import base64
import hashlib
import json
import os
import socket
import struct
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bookstore"))

from portico_test import Portico, curl, free_port  # noqa: E402
from bookstore_server import BookstoreServer, PB, grpc, pb, pb_grpc  # noqa: E402

KEY = "k-7f3a9c"
ECHO = "/bookstore.v1.Bookstore/Echo"


def frame(msg, flag=0):
    return struct.pack(">BI", flag, len(msg)) + msg


class AuthnGrpcTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = BookstoreServer(threads=2).start()
        cls.port = free_port()
        digest = hashlib.sha256(KEY.encode()).hexdigest()
        cls.portico = Portico(f"""
listeners: [ {{ address: "127.0.0.1:{cls.port}" }} ]
workers: 1
descriptors: [ {PB} ]
clusters: [ {{ name: books, protocol: grpc, endpoints: [ "127.0.0.1:{cls.srv.port}" ] }} ]
routes:
  - match: {{ host: key.test }}
    grpc: {{ cluster: books }}
    filters: [ {{ api_key: {{ consumers: [ {{ name: alice, key_sha256: "{digest}" }} ] }} }} ]
  - match: {{ host: ip.test }}
    grpc: {{ cluster: books }}
    filters: [ {{ ip_access: {{ deny: [ 127.0.0.0/8 ] }} }} ]
  - match: {{ host: web.test }}
    grpc: {{ cluster: books, web_origins: [ "https://app.example" ] }}
  - match: {{ host: cors.test }}
    grpc: {{ cluster: books, web_origins: [ "https://ignored.example" ] }}
    filters:
      - cors: {{ origins: [ "https://app.example" ], methods: [ GET, POST ], credentials: true,
                 expose: [ x-request-id ] }}
  - grpc: {{ cluster: books }}
""")
        cls.portico.wait_ready(cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.portico.stop()
        cls.srv.stop()

    def url(self, host, path):
        return ("--resolve", "%s:%d:127.0.0.1" % (host, self.port),
                "http://%s:%d%s" % (host, self.port, path))

    def channel(self, host):
        ch = grpc.insecure_channel("127.0.0.1:%d" % self.port,
                                   options=(("grpc.default_authority", host),))
        self.addCleanup(ch.close)
        return pb_grpc.BookstoreStub(ch)

    def handshake(self, host, path, extra=""):
        """A WebSocket handshake to the bridge; returns the status line's code."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.addCleanup(s.close)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
                   % (path, host, key, extra)).encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return int(data.split(b" ")[1])

    # ---- api_key ------------------------------------------------------------------------

    def test_api_key_rest(self):
        st, _, body, _ = curl(*self.url("key.test", "/v1/shelves/1"), "-H", "x-api-key: " + KEY)
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body)["id"], "1")
        st, h, body, _ = curl(*self.url("key.test", "/v1/shelves/1"), "-H", "x-api-key: nope")
        self.assertEqual(st, 401)
        self.assertEqual(json.loads(body)["error"]["code"], "UNAUTHORIZED")

    def test_api_key_native_grpc(self):
        s = self.channel("key.test")
        r = s.Echo(pb.EchoRequest(message="hi"), metadata=(("x-api-key", KEY),), timeout=10)
        self.assertEqual(r.message, "hi")
        with self.assertRaises(grpc.RpcError) as cm:
            s.Echo(pb.EchoRequest(message="hi"), timeout=10)
        self.assertEqual((cm.exception.code(), cm.exception.details()),
                         (grpc.StatusCode.UNAUTHENTICATED, "API key missing"))
        with self.assertRaises(grpc.RpcError) as cm:
            s.Echo(pb.EchoRequest(message="hi"), metadata=(("x-api-key", "bad"),), timeout=10)
        self.assertEqual((cm.exception.code(), cm.exception.details()),
                         (grpc.StatusCode.UNAUTHENTICATED, "API key not valid"))

    def test_api_key_grpc_web(self):
        body = frame(pb.EchoRequest(message="w").SerializeToString())
        st, h, out, _ = curl(*self.url("key.test", ECHO), "-X", "POST",
                             "-H", "content-type: application/grpc-web+proto",
                             "-H", "x-api-key: " + KEY, "--data-binary", "@-", input_bytes=body)
        self.assertEqual(st, 200)
        self.assertIn(b"grpc-status: 0", out)
        st, h, out, _ = curl(*self.url("key.test", ECHO), "-X", "POST",
                             "-H", "content-type: application/grpc-web+proto",
                             "-H", "Origin: https://x.example", "--data-binary", "@-", input_bytes=body)
        self.assertEqual((st, h.get("grpc-status")), (200, "16"), out)
        # the refusal passes the grpc route's CORS (the web_origins alias): a page can read it
        self.assertEqual(h.get("access-control-allow-origin"), "*")

    def test_api_key_websocket_handshake(self):
        self.assertEqual(self.handshake("key.test", "/v1/rooms/r/chat", "x-api-key: %s\r\n" % KEY), 101)
        self.assertEqual(self.handshake("key.test", "/v1/rooms/r/chat"), 401)

    # ---- ip_access --------------------------------------------------------------------

    def test_ip_access_every_kind(self):
        st, _, body, _ = curl(*self.url("ip.test", "/v1/shelves/1"))
        self.assertEqual(st, 403)
        self.assertEqual(json.loads(body)["error"]["code"], "FORBIDDEN")
        with self.assertRaises(grpc.RpcError) as cm:
            self.channel("ip.test").Echo(pb.EchoRequest(message="x"), timeout=10)
        self.assertEqual((cm.exception.code(), cm.exception.details()),
                         (grpc.StatusCode.PERMISSION_DENIED, "client address denied"))
        self.assertEqual(self.handshake("ip.test", "/v1/rooms/r/chat"), 403)

    # ---- cors ---------------------------------------------------------------------------

    def preflight(self, host, path, origin="https://app.example", method="GET"):
        return curl(*self.url(host, path), "-X", "OPTIONS", "-H", "Origin: " + origin,
                    "-H", "Access-Control-Request-Method: " + method,
                    "-H", "Access-Control-Request-Headers: content-type")

    def test_web_origins_preflight_lists_the_path_verbs(self):
        for path, methods in (("/v1/shelves", "GET, POST, OPTIONS"),
                              ("/v1/shelves/1", "GET, DELETE, OPTIONS"),
                              ("/v1/shelves/1/cover", "GET, PUT, OPTIONS"),
                              ("/v1/echo", "POST, OPTIONS"),
                              (ECHO, "POST, OPTIONS"),
                              ("/nothing/here", "OPTIONS")):
            st, h, body, _ = self.preflight("web.test", path, method="DELETE")
            self.assertEqual(st, 204, (path, body))
            self.assertEqual(h["access-control-allow-methods"], methods, path)
            self.assertEqual(h["access-control-allow-origin"], "https://app.example")
            self.assertEqual(h["access-control-allow-headers"], "content-type")
        st, h, _, _ = self.preflight("web.test", "/v1/shelves", origin="https://evil.example")
        self.assertEqual(st, 403)
        self.assertNotIn("access-control-allow-origin", h)
        # the default grpc route (no web_origins): any origin, real verbs too
        st, h, _, _ = self.preflight("any.test", "/v1/shelves/1", origin="https://x.example")
        self.assertEqual((st, h["access-control-allow-origin"]), (204, "*"))
        self.assertEqual(h["access-control-allow-methods"], "GET, DELETE, OPTIONS")

    def test_web_origins_rest_answers(self):
        st, h, body, _ = curl(*self.url("web.test", "/v1/shelves/1"), "-H", "Origin: https://app.example")
        self.assertEqual(st, 200, body)
        self.assertEqual(h["access-control-allow-origin"], "https://app.example")
        self.assertEqual(h["vary"], "Origin")
        # an error answer too (the page can read the 404)
        st, h, _, _ = curl(*self.url("web.test", "/v1/shelves/987654"), "-H", "Origin: https://app.example")
        self.assertEqual((st, h["access-control-allow-origin"]), (404, "https://app.example"))
        st, h, _, _ = curl(*self.url("web.test", "/v1/shelves/1"), "-H", "Origin: https://evil.example")
        self.assertEqual(st, 200)
        self.assertNotIn("access-control-allow-origin", h)
        # without web_origins REST answers stay without CORS (gRPC-Web keeps "*")
        st, h, _, _ = curl(*self.url("any.test", "/v1/shelves/1"), "-H", "Origin: https://x.example")
        self.assertNotIn("access-control-allow-origin", h)

    def test_grpc_web_answers(self):
        for host, want in (("web.test", "https://app.example"), ("any.test", "*")):
            st, h, body, _ = curl(*self.url(host, ECHO), "-X", "POST",
                                  "-H", "content-type: application/grpc-web+proto",
                                  "-H", "Origin: https://app.example", "--data-binary", "@-",
                                  input_bytes=frame(pb.EchoRequest(message="w").SerializeToString()))
            self.assertEqual(st, 200)
            self.assertEqual(h["access-control-allow-origin"], want)
            for f in ("grpc-status", "grpc-message", "grpc-status-details-bin"):
                self.assertIn(f, h["access-control-expose-headers"])

    def test_cors_filter_wins_over_web_origins(self):
        st, h, _, _ = self.preflight("cors.test", "/v1/shelves/1", method="DELETE")
        self.assertEqual(st, 204)
        self.assertEqual(h["access-control-allow-methods"], "GET, OPTIONS")  # methods narrow
        self.assertEqual(h["access-control-allow-credentials"], "true")
        st, h, _, _ = self.preflight("cors.test", "/v1/shelves/1", origin="https://ignored.example")
        self.assertEqual(st, 403)
        st, h, _, _ = curl(*self.url("cors.test", "/v1/shelves/1"), "-H", "Origin: https://app.example")
        self.assertEqual(h["access-control-allow-origin"], "https://app.example")
        self.assertEqual(h["access-control-allow-credentials"], "true")
        self.assertEqual(h["access-control-expose-headers"], "x-request-id")

    def test_cors_websocket_handshake(self):
        self.assertEqual(self.handshake("web.test", "/v1/rooms/r/chat",
                                        "Origin: https://evil.example\r\n"), 403)
        self.assertEqual(self.handshake("web.test", "/v1/rooms/r/chat",
                                        "Origin: https://app.example\r\n"), 101)


if __name__ == "__main__":
    unittest.main()
