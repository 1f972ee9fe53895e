"""
test_grpc_web.py -- gRPC-Web through the real portico binary
(handlers/grpc_native.c) against examples/bookstore's bookstore-server.

Clients: hand-built gRPC-Web requests (the framing the grpc-web runtime
sends) over HTTP/1.1 (http.client, reading the chunked body as it streams)
and over HTTP/2 (curl --http2-prior-knowledge), in binary
(application/grpc-web+proto) and text (application/grpc-web-text, base64 both
ways) modes; and, when test/integration/node_modules has it, the npm
`grpc-web` runtime itself driven from node (grpc_web_client.js).
"""
import base64
import http.client
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bookstore"))

from portico_test import Portico, curl, free_port  # noqa: E402
from bookstore_server import BookstoreServer, PB, pb  # noqa: E402

NODE_MODULES = os.path.join(os.path.dirname(HERE), "node_modules")

CONFIG = """
listeners:
  - address: 127.0.0.1:{port}
workers: 1
descriptors: [ {pb} ]
clusters:
  - {{ name: books, protocol: grpc, endpoints: [ "http://127.0.0.1:{bs}" ] }}
  - {{ name: down, protocol: grpc, endpoints: [ "http://127.0.0.1:{dead}" ] }}
routes:
  - match: {{ host: down.test }}
    grpc: {{ cluster: down }}
  - match: {{ host: strict.test }}
    grpc: {{ cluster: books, web_origins: [ "https://app.example" ] }}
  - grpc: {{ cluster: books }}
"""

ECHO = "/bookstore.v1.Bookstore/Echo"
WATCH = "/bookstore.v1.Bookstore/WatchBooks"


def frame(msg, flag=0):
    return struct.pack(">BI", flag, len(msg)) + msg


def b64_quads(text):
    """Decodes base64 that may carry padding inside (pieces encoded one by one)."""
    text = text.replace(b"\r", b"").replace(b"\n", b"")
    assert len(text) % 4 == 0, len(text)
    return b"".join(base64.b64decode(text[i:i + 4]) for i in range(0, len(text), 4))


def parse_frames(body):
    """[(flag, payload)] of a gRPC-Web response body; trailers decoded into a dict."""
    out, i = [], 0
    while i < len(body):
        flag, n = struct.unpack(">BI", body[i:i + 5])
        payload = body[i + 5:i + 5 + n]
        assert len(payload) == n, "truncated frame"
        i += 5 + n
        if flag & 0x80:
            t = {}
            for line in payload.decode().split("\r\n"):
                if line:
                    k, v = line.split(":", 1)
                    t[k.strip()] = v.strip()
            payload = t
        out.append((flag, payload))
    return out


class GrpcWebTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = BookstoreServer(threads=2).start()
        cls.port = free_port()
        cls.portico = Portico(CONFIG.format(port=cls.port, pb=PB, bs=cls.srv.port, dead=free_port()))
        cls.portico.wait_ready(cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.portico.stop()
        cls.srv.stop()

    def h1(self, path, body, ctype="application/grpc-web+proto", host=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        self.addCleanup(c.close)
        h = {"content-type": ctype, "x-grpc-web": "1", "accept": ctype,
             "origin": "https://app.example"}
        if host:
            h["host"] = host
        h.update(headers or {})
        c.request("POST", path, body=body, headers=h)
        return c.getresponse()

    def test_unary_binary_http1(self):
        r = self.h1(ECHO, frame(pb.EchoRequest(message="hello web").SerializeToString()))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("content-type"), "application/grpc-web+proto")
        self.assertEqual(r.getheader("access-control-allow-origin"), "*")
        expose = r.getheader("access-control-expose-headers")
        for h in ("grpc-status", "grpc-message", "grpc-status-details-bin"):
            self.assertIn(h, expose)
        frames = parse_frames(r.read())
        self.assertEqual(len(frames), 2)
        self.assertEqual(pb.EchoResponse.FromString(frames[0][1]).message, "hello web")
        self.assertEqual(frames[1][0], 0x80)
        self.assertEqual(frames[1][1]["grpc-status"], "0")
        self.assertEqual(frames[1][1]["x-bookstore"], "1")

    def test_unary_text_http1(self):
        body = base64.b64encode(frame(pb.EchoRequest(message="text mode").SerializeToString()))
        r = self.h1(ECHO, body, ctype="application/grpc-web-text")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("content-type"), "application/grpc-web-text")
        frames = parse_frames(b64_quads(r.read()))
        self.assertEqual(pb.EchoResponse.FromString(frames[0][1]).message, "text mode")
        self.assertEqual(frames[-1][1]["grpc-status"], "0")

    def test_text_request_in_padded_pieces(self):
        # a client may send several base64 pieces, each padded
        raw = frame(pb.EchoRequest(message="pieces!").SerializeToString())
        body = b"".join(base64.b64encode(raw[i:i + 4]) for i in range(0, len(raw), 4))
        r = self.h1(ECHO, body, ctype="application/grpc-web-text+proto")
        frames = parse_frames(b64_quads(r.read()))
        self.assertEqual(pb.EchoResponse.FromString(frames[0][1]).message, "pieces!")
        bad = self.h1(ECHO, b"!!!notbase64", ctype="application/grpc-web-text")
        data = bad.read()
        status = bad.getheader("grpc-status") or parse_frames(b64_quads(data))[-1][1]["grpc-status"]
        self.assertNotEqual(status, "0")

    def test_server_streaming_http1_is_incremental(self):
        req = pb.WatchBooksRequest(shelf=1, interval_ms=200, count=4).SerializeToString()
        for ctype, decode in (("application/grpc-web+proto", lambda b: b),
                              ("application/grpc-web-text+proto", b64_quads)):
            t0 = time.monotonic()
            body = base64.b64encode(frame(req)) if "text" in ctype else frame(req)
            r = self.h1(WATCH, body, ctype=ctype)
            first = r.read1(65536)  # arrives long before the stream ends
            self.assertLess(time.monotonic() - t0, 0.5)
            self.assertTrue(first)
            frames = parse_frames(decode(first + r.read()))
            self.assertEqual([pb.WatchBooksResponse.FromString(p).sequence
                              for f, p in frames if f == 0], [1, 2, 3, 4])
            self.assertEqual(frames[-1][1]["grpc-status"], "0")
            self.assertGreater(time.monotonic() - t0, 0.55)

    def test_unary_http2_curl(self):
        data = frame(pb.EchoRequest(message="over h2").SerializeToString())
        path = os.path.join(self.tmpdir(), "req.bin")
        with open(path, "wb") as f:
            f.write(data)
        st, h, body, err = curl("--http2-prior-knowledge", "-X", "POST",
                                "-H", "content-type: application/grpc-web+proto",
                                "-H", "x-grpc-web: 1", "--data-binary", "@" + path,
                                "http://127.0.0.1:%d%s" % (self.port, ECHO))
        self.assertEqual(st, 200, err)
        frames = parse_frames(body)
        self.assertEqual(pb.EchoResponse.FromString(frames[0][1]).message, "over h2")
        self.assertEqual(frames[-1][1]["grpc-status"], "0")

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="pt_gw_")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def test_errors(self):
        # an error with details: the trailers frame carries it
        r = self.h1("/bookstore.v1.Bookstore/GetShelf",
                    frame(pb.GetShelfRequest(shelf=987654).SerializeToString()))
        self.assertEqual(r.status, 200)
        data = r.read()
        t = dict(r.getheaders()) if r.getheader("grpc-status") else parse_frames(data)[-1][1]
        self.assertEqual(t["grpc-status"], "5")
        self.assertIn("grpc-status-details-bin", t)
        # backend down: a Trailers-Only answer, status in the headers
        r = self.h1(ECHO, frame(b""), host="down.test")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("grpc-status"), "14")
        self.assertEqual(r.read(), b"")

    def test_cors_preflight(self):
        def preflight(host, origin):
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            self.addCleanup(c.close)
            c.request("OPTIONS", ECHO, headers={
                "host": host, "origin": origin, "access-control-request-method": "POST",
                "access-control-request-headers": "content-type,x-grpc-web,x-user-agent"})
            r = c.getresponse()
            r.read()
            return r
        r = preflight("any.test", "https://elsewhere.example")
        self.assertEqual(r.status, 204)
        self.assertEqual(r.getheader("access-control-allow-origin"), "*")
        self.assertIn("POST", r.getheader("access-control-allow-methods"))
        self.assertEqual(r.getheader("access-control-allow-headers"),
                         "content-type,x-grpc-web,x-user-agent")
        self.assertTrue(r.getheader("access-control-max-age"))
        r = preflight("strict.test", "https://app.example")
        self.assertEqual(r.status, 204)
        self.assertEqual(r.getheader("access-control-allow-origin"), "https://app.example")
        self.assertEqual(r.getheader("vary"), "Origin")
        r = preflight("strict.test", "https://evil.example")
        self.assertEqual(r.status, 403)
        self.assertIsNone(r.getheader("access-control-allow-origin"))
        # the actual call on the strict route echoes the allowed origin
        rr = self.h1(ECHO, frame(pb.EchoRequest(message="o").SerializeToString()),
                     host="strict.test")
        self.assertEqual(rr.getheader("access-control-allow-origin"), "https://app.example")
        rr.read()

    @unittest.skipUnless(os.path.isdir(os.path.join(NODE_MODULES, "grpc-web")) and
                         shutil.which("node"), "npm grpc-web not installed (scripts/test-env.sh)")
    def test_npm_grpc_web_client(self):
        script = os.path.join(HERE, "grpc_web_client.js")
        for mode in ("binary", "text"):
            p = subprocess.run(["node", script, "http://127.0.0.1:%d" % self.port, mode],
                               capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, NODE_PATH=NODE_MODULES))
            self.assertEqual(p.returncode, 0, p.stderr + p.stdout)
            res = json.loads(p.stdout.strip().splitlines()[-1])
            self.assertEqual(res["echo"], "from node " + mode)
            self.assertEqual(res["stream"], [1, 2, 3])
            self.assertEqual(res["error_code"], 5)


if __name__ == "__main__":
    unittest.main()
