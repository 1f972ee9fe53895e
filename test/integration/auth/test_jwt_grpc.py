"""
test_jwt_grpc.py -- the jwt filter on a grpc route: a native gRPC client
(Debian's python3-grpcio) without a token, or with a bad one, gets
UNAUTHENTICATED (the call never reaches the service); with a good token in
the `authorization` metadata it passes and the service sees x-user. gRPC-Web
gets the same grpc-status in a Trailers-Only answer.
REST bindings (google.api.http) on the same route answer 401 JSON.
"""
import os
import subprocess
import tempfile
import time
from concurrent import futures

import json

import grpc

from portico_test import PorticoTestCase, curl, free_port

import jwt_keys as K

CONFIG = """
listeners:
  - address: 127.0.0.1:{port}
workers: 1
descriptors: [ {pb} ]
clusters:
  - {{ name: svc, protocol: grpc, endpoints: [ "http://127.0.0.1:{svc}" ] }}
routes:
  - grpc: {{ cluster: svc, metadata: {{ forward: [ x-user ] }} }}
    filters:
      - jwt: {{ jwks_file: jwks.json, issuer: "{iss}", forward_claims: {{ sub: x-user }} }}
"""


PROTO = """
syntax = "proto3";
package t;
import "google/api/annotations.proto";
message WhoRequest {}
message WhoReply { string user = 1; }
service Svc {
  rpc Who(WhoRequest) returns (WhoReply) { option (google.api.http) = { get: "/v1/who" }; }
}
"""


class TestJwtGrpc(PorticoTestCase):
    @classmethod
    def setUpClass(cls):
        cls.keys = K.Keys()
        cls.calls = []

        def who(req, ctx):
            md = dict(ctx.invocation_metadata())
            cls.calls.append(md)
            user = md.get("x-user", "").encode()
            return b"\x0a" + bytes([len(user)]) + user  # WhoReply{user}

        cls.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        cls.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "t.Svc", {"Who": grpc.unary_unary_rpc_method_handler(who)}),))
        cls.svc_port = cls.server.add_insecure_port("127.0.0.1:0")
        cls.server.start()
        cls.tmp = tempfile.TemporaryDirectory()
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
        with open(os.path.join(cls.tmp.name, "t.proto"), "w") as f:
            f.write(PROTO)
        cls.pb = os.path.join(cls.tmp.name, "t.pb")
        subprocess.run(["protoc", "-I", cls.tmp.name, "-I", os.path.join(root, "protos"),
                        "--include_imports", "--descriptor_set_out=" + cls.pb, "t.proto"],
                       check=True)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop(None)
        cls.tmp.cleanup()

    def setUp(self):
        super().setUp()
        self.port = free_port()
        self.start(CONFIG.format(port=self.port, svc=self.svc_port, iss=K.ISSUER, pb=self.pb), self.port,
                   extra_files={"jwks.json": json.dumps(self.keys.jwks())})
        self.ch = grpc.insecure_channel("127.0.0.1:%d" % self.port)
        self.addCleanup(self.ch.close)
        self.who = self.ch.unary_unary("/t.Svc/Who")

    def call(self, tok=None):
        md = [("authorization", "Bearer " + tok)] if tok else None
        return self.who(b"", metadata=md, timeout=10)

    def assertUnauthenticated(self, tok, detail):
        n = len(self.calls)
        with self.assertRaises(grpc.RpcError) as cm:
            self.call(tok)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        self.assertEqual(cm.exception.details(), detail)
        self.assertEqual(len(self.calls), n)

    def test_native_grpc(self):
        self.assertUnauthenticated(None, "a bearer token is required")
        self.assertUnauthenticated(K.token(self.keys, "RS256", exp=int(time.time()) - 100),
                                   "token expired")
        self.assertUnauthenticated(K.token(K.Keys(), "ES256"), "signature verification failed")
        self.assertEqual(self.call(K.token(self.keys, "ES256")), b"\x0a\x05alice")
        self.assertEqual(self.call(K.token(self.keys, "EdDSA", sub="bob")), b"\x0a\x03bob")

    def test_rest_binding(self):
        url = "http://127.0.0.1:%d/v1/who" % self.port
        n = len(self.calls)
        st, h, body, _ = curl(url)
        self.assertEqual(st, 401, body)
        self.assertEqual(h["www-authenticate"], 'Bearer realm="portico"')
        self.assertEqual(len(self.calls), n)
        st, _, body, _ = curl("-H", "Authorization: Bearer " + K.token(self.keys, "ES384"), url)
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body), {"user": "alice"})

    def test_grpc_web(self):
        frame = b"\x00\x00\x00\x00\x00"
        args = ["-H", "content-type: application/grpc-web+proto", "--data-binary", "@-",
                "http://127.0.0.1:%d/t.Svc/Who" % self.port]
        st, h, _, _ = curl(*args, input_bytes=frame)
        self.assertEqual(st, 200)
        self.assertEqual(h.get("grpc-status"), "16")
        self.assertIn('Bearer realm="portico"', h.get("www-authenticate", ""))
        st, h, body, _ = curl("-H", "authorization: Bearer " + K.token(self.keys, "PS256"),
                              *args, input_bytes=frame)
        self.assertEqual(st, 200)
        self.assertIn(b"alice", body)


if __name__ == "__main__":
    import unittest
    unittest.main()
