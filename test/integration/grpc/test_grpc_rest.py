"""
test_grpc_rest.py -- REST/JSON -> gRPC transcoding through the real portico
binary, against examples/bookstore's bookstore-server (gRPC C core) and, for
faults the bookstore cannot produce (garbage messages, observing a cancel), a
small in-process python3-grpcio backend.

Clients: curl (HTTP/1.1 and h2c) and raw sockets (interactive chunked bidi).
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bookstore"))

from portico_test import Portico, curl, free_port, make_cert, wait_port  # noqa: E402
from bookstore_server import BookstoreServer, PB, grpc  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))


# ---- a fake backend for faults ------------------------------------------------

class FakeBackend:
    """bookstore.v1.Bookstore with raw-bytes handlers:
    Echo answers bytes that are not an EchoResponse (JP-7);
    WatchBooks streams slowly and records when its client cancels;
    GetShelfCover answers an HttpBody whose content type smuggles a header;
    CreateShelf answers a Shelf whose theme tells the deadline it was given."""

    def __init__(self):
        from concurrent import futures
        self.cancelled = threading.Event()
        self.started = threading.Event()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handlers = {
            "Echo": grpc.unary_unary_rpc_method_handler(self.echo),
            "GetShelf": grpc.unary_unary_rpc_method_handler(self.get_shelf),
            "WatchBooks": grpc.unary_stream_rpc_method_handler(self.watch),
            "GetShelfCover": grpc.unary_unary_rpc_method_handler(self.cover),
            "CreateShelf": grpc.unary_unary_rpc_method_handler(self.create_shelf),
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("bookstore.v1.Bookstore", handlers),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def echo(self, req, ctx):
        # field 1 (string) with a length past the end of the message
        return b"\x0a\x50abc"

    def get_shelf(self, req, ctx):
        # field 2 (string theme) holding invalid UTF-8
        return b"\x12\x02\xff\xfe"

    def cover(self, req, ctx):
        # HttpBody{content_type: "text/html\r\nx-evil: 1", data: "abc"}
        ct = b"text/html\r\nx-evil: 1"
        return b"\x0a" + bytes([len(ct)]) + ct + b"\x12\x03abc"

    def create_shelf(self, req, ctx):
        # Shelf{theme: "none"} without a grpc-timeout, else the seconds it left
        left = ctx.time_remaining()  # grpcio: None or ~2^63 s without a deadline
        theme = b"none" if left is None or left > 1e6 else b"%.3f" % left
        return b"\x12" + bytes([len(theme)]) + theme

    def watch(self, req, ctx):
        ctx.add_callback(lambda: None if ctx.is_active() else self.cancelled.set())
        self.started.set()
        n = 0
        while ctx.is_active() and n < 600:
            n += 1
            # WatchBooksResponse{sequence: n}
            yield b"\x08" + bytes([n & 0x7f])
            time.sleep(0.05)

    def stop(self):
        self.server.stop(0)


RELOAD_PROTO = """
syntax = "proto3";
package bookstore.v1;
import "google/api/annotations.proto";
message GetShelfRequest { int64 shelf = 1; }
message Shelf { int64 id = 1; string theme = 2; }
message EchoRequest { string message = 1; }
message EchoResponse { string message = 1; }
service Bookstore {
  rpc GetShelf(GetShelfRequest) returns (Shelf) {
    option (google.api.http) = { get: "/v2/shelves/{shelf}" };
  }
  rpc Echo(EchoRequest) returns (EchoResponse);  // no annotation: default binding
}
"""


def make_reload_pb(directory):
    proto = os.path.join(directory, "reload.proto")
    with open(proto, "w") as f:
        f.write(RELOAD_PROTO)
    out = os.path.join(directory, "reload.pb")
    subprocess.run(["protoc", "-I", directory, "-I", os.path.join(ROOT, "protos"),
                    "-I", "/usr/include", "--include_imports", "--descriptor_set_out=" + out,
                    proto], check=True, capture_output=True)
    return out


CONFIG = """
listeners:
  - address: 127.0.0.1:{port}
workers: 2
descriptors: [ {pb} ]
clusters:
  - {{ name: books, protocol: grpc, endpoints: [ "127.0.0.1:{bs}" ] }}
  - {{ name: down, protocol: grpc, endpoints: [ "127.0.0.1:{dead}" ] }}
  - {{ name: fake, protocol: grpc, endpoints: [ "127.0.0.1:{fake}" ] }}
  - {{ name: half, protocol: grpc, endpoints: [ "127.0.0.1:{dead}", "127.0.0.1:{bs}" ] }}
routes:
  - match: {{ host: half.test }}
    grpc: {{ cluster: half }}
  - match: {{ host: down.test }}
    grpc: {{ cluster: down }}
  - match: {{ host: fake.test }}
    grpc: {{ cluster: fake }}
  - match: {{ host: fakedl.test }}
    grpc: {{ cluster: fake, timeout: 3s, send_deadline: true }}
  - match: {{ host: small.test }}
    max_body: 1k
    grpc: {{ cluster: books }}
  - match: {{ host: ndjson.test }}
    grpc: {{ cluster: books, stream_format: ndjson, emit_defaults: true, proto_names: true,
             enums_as_ints: true, ignore_unknown: true, default_bindings: true }}
  - grpc:
      cluster: books
      timeout: 3s
      metadata: {{ forward: [ authorization, x-request-id, "x-echo-*" ], prefix: "x-grpc-" }}
      header_bindings: {{ x-msg: message }}
"""


def read_to_end(s, data):
    """Reads an HTTP/1.1 chunked response until its last chunk (and trailers)."""
    while not (b"\r\n0\r\n" in data and data.endswith(b"\r\n\r\n")):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


CT = ("-H", "content-type: application/json")


def J(body):
    return json.loads(body.decode())


class GrpcRestTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bs = BookstoreServer(threads=2).start()
        cls.fake = FakeBackend()
        cls.port = free_port()
        cls.cfg = dict(port=cls.port, pb=PB, bs=cls.bs.port, dead=free_port(), fake=cls.fake.port)
        cls.gw = Portico(CONFIG.format(**cls.cfg), workers=2)
        try:
            cls.gw.wait_ready(cls.port)
        except Exception:
            print(cls.gw.output())
            raise
        cls.base = "http://127.0.0.1:%d" % cls.port

    @classmethod
    def tearDownClass(cls):
        rc = cls.gw.stop()
        cls.fake.stop()
        brc = cls.bs.stop()
        assert rc == 0, "portico did not exit cleanly"
        assert brc == 0, cls.bs.stderr

    def get(self, path, *args):
        return curl(*args, self.base + path)

    def post(self, path, body, *args, ct="application/json"):
        return curl("-X", "POST", "-H", "content-type: " + ct, "--data-binary", body, *args,
                    self.base + path)

    # ---- bindings ------------------------------------------------------------------

    def test_shelves_and_books_crud(self):
        st, h, body, _ = self.post("/v1/shelves", '{"theme":"crud-%d","labels":{"floor":"9"}}'
                                   % os.getpid())
        self.assertEqual(st, 200, body)
        self.assertEqual(h["content-type"], "application/json")
        shelf = J(body)
        sid = shelf["id"]
        self.assertIsInstance(sid, str)  # int64 as a JSON string
        self.assertRegex(shelf["createTime"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        st, _, body, _ = self.get("/v1/shelves/" + sid)
        self.assertEqual((st, J(body)["theme"]), (200, "crud-%d" % os.getpid()))
        st, _, body, _ = self.get("/v1/shelves?labels[floor]=9", "-g")
        self.assertIn(sid, [s["id"] for s in J(body)["shelves"]])
        st, _, body, _ = self.post("/v1/shelves/%s/books" % sid,
                                   '{"author":"A","title":"T","genre":"POETRY","tags":["x","y"]}')
        self.assertEqual(st, 200, body)
        book = J(body)
        self.assertEqual((book["genre"], book["tags"]), ("POETRY", ["x", "y"]))
        st, _, body, _ = self.get("/v1/shelves/%s/books/%s" % (sid, book["id"]))
        self.assertEqual((st, J(body)["title"]), (200, "T"))
        st, _, body, _ = self.get("/v1/books/%s" % book["id"])  # additional binding
        self.assertEqual((st, J(body)["id"]), (200, book["id"]))
        st, _, body, _ = self.get("/v1/shelves/%s/books?filter.tags=x&filter.tags=y&pageSize=5"
                                  % sid)
        self.assertEqual([b["id"] for b in J(body)["books"]], [book["id"]])
        st, _, body, _ = self.get("/v1/shelves/%s/books?filter.genre=HISTORY&page_size=5" % sid)
        self.assertEqual((st, J(body)), (200, {}))
        st, _, body, _ = curl("-X", "DELETE", self.base + "/v1/shelves/%s/books/%s"
                              % (sid, book["id"]))
        self.assertEqual((st, J(body)), (200, {}))
        st, _, body, _ = curl("-X", "DELETE", self.base + "/v1/shelves/" + sid)
        self.assertEqual(st, 200, body)
        st, _, body, _ = self.get("/v1/shelves/" + sid)
        self.assertEqual(st, 404)

    def test_echo_bindings_and_response_body(self):
        st, h, body, _ = self.post("/v1/echo", '{"message":"hello"}')
        self.assertEqual((st, J(body)), (200, {"message": "hello"}))
        st, h, body, _ = self.get("/v1/echo/hi%20there")
        self.assertEqual((st, body), (200, b'"hi there"'))  # response_body: message

    def test_http2(self):
        st, _, body, _ = self.post("/v1/echo", '{"message":"h2"}', "--http2-prior-knowledge")
        self.assertEqual((st, J(body)), (200, {"message": "h2"}))

    def test_options_and_default_binding(self):
        base = "http://ndjson.test:%d" % self.port
        res = "--resolve", "ndjson.test:%d:127.0.0.1" % self.port
        st, _, body, _ = curl(*res, "-X", "POST", "-d", '{"message":"m","bogus":1}', *CT,
                              base + "/v1/echo")
        self.assertEqual(st, 200, body)  # ignore_unknown
        # emit_defaults + proto_names
        self.assertEqual(J(body), {"message": "m", "metadata": {}})
        st, _, body, _ = curl(*res, base + "/v1/books/1")
        self.assertEqual(st, 200, body)
        b = J(body)
        self.assertIn("create_time", b)
        self.assertIsInstance(b["genre"], int)  # enums_as_ints

    # ---- errors --------------------------------------------------------------------

    def test_no_binding_404_and_wrong_method_405(self):
        st, h, body, _ = self.get("/v1/nothing/here")
        self.assertEqual((st, J(body)["code"]), (404, 5))
        st, h, body, _ = curl("-X", "PUT", self.base + "/v1/shelves")
        self.assertEqual(st, 405)
        self.assertEqual(h["allow"], "GET, POST")
        self.assertEqual(J(body)["code"], 12)

    def test_bad_request_lists_every_problem(self):
        st, h, body, _ = self.get("/v1/shelves/1/books?page_size=abc&bogus=1&filter.genre=NOPE")
        self.assertEqual(st, 400, body)
        err = J(body)
        self.assertEqual(err["code"], 3)
        det = err["details"][0]
        self.assertEqual(det["@type"], "type.googleapis.com/google.rpc.BadRequest")
        fields = sorted(v["field"] for v in det["fieldViolations"])
        self.assertEqual(fields, ["bogus", "filter.genre", "page_size"])
        st, _, body, _ = self.post("/v1/shelves", '{"theme": 5, "nope": 1}')
        self.assertEqual(st, 400)
        self.assertEqual(len(J(body)["details"][0]["fieldViolations"]), 2)
        st, _, body, _ = self.post("/v1/shelves", '{"theme": "x",')
        self.assertEqual((st, J(body)["code"]), (400, 3))
        st, _, body, _ = self.get("/v1/shelves/notanumber")
        self.assertEqual(st, 400)
        self.assertEqual(J(body)["details"][0]["fieldViolations"][0]["field"], "shelf")

    def test_unsupported_media_type_415(self):
        st, _, body, _ = self.post("/v1/echo", "message=x", ct="application/x-www-form-urlencoded")
        self.assertEqual((st, J(body)["code"]), (415, 3))
        st, _, body, _ = self.post("/v1/echo", '{"message":"x"}',
                                   ct="application/json; charset=utf-8")
        self.assertEqual(st, 200)

    def test_body_too_large_413(self):
        res = "--resolve", "small.test:%d:127.0.0.1" % self.port
        big = '{"message":"%s"}' % ("x" * 4000)
        st, _, body, _ = curl(*res, "-X", "POST", "-H", "content-type: application/json",
                              "--data-binary", big, "http://small.test:%d/v1/echo" % self.port)
        self.assertEqual(st, 413)

    def test_status_mapping_and_details(self):
        table = {1: 499, 2: 500, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 400,
                 10: 409, 11: 400, 12: 501, 13: 500, 14: 503, 15: 500, 16: 401}
        for code, http in table.items():
            st, _, body, _ = self.post("/v1/echo", '{"message":"e","failCode":%d}' % code)
            self.assertEqual((code, st), (code, http), body)
            self.assertEqual(J(body)["code"], code)
        st, _, body, _ = self.get("/v1/shelves/424242")
        err = J(body)
        self.assertEqual((st, err["code"]), (404, 5))
        self.assertEqual(err["details"][0]["@type"],
                         "type.googleapis.com/google.rpc.ResourceInfo")
        self.assertEqual(err["details"][0]["resourceName"], "shelves/424242")

    def test_deadline_504(self):
        t0 = time.monotonic()
        st, _, body, _ = self.post("/v1/echo", '{"message":"slow","delayMs":3000}',
                                   "-H", "grpc-timeout: 300m")
        self.assertEqual((st, J(body)["code"]), (504, 4))
        self.assertLess(time.monotonic() - t0, 2.5)

    def test_backend_down_503(self):
        res = "--resolve", "down.test:%d:127.0.0.1" % self.port
        st, _, body, _ = curl(*res, "http://down.test:%d/v1/shelves/1" % self.port)
        self.assertEqual((st, J(body)["code"]), (503, 14))

    def test_dead_endpoint_failover(self):
        # One of two endpoints refuses connections: unary calls go to the other (UP-1).
        res = "--resolve", "half.test:%d:127.0.0.1" % self.port
        for i in range(6):
            st, _, body, _ = curl(*res, "-X", "POST", *CT, "-d", '{"message":"f%d"}' % i,
                                  "http://half.test:%d/v1/echo" % self.port)
            self.assertEqual((st, J(body)), (200, {"message": "f%d" % i}))

    def test_upstream_garbage_502(self):
        res = "--resolve", "fake.test:%d:127.0.0.1" % self.port
        base = "http://fake.test:%d" % self.port
        st, _, body, _ = curl(*res, "-X", "POST", "-d", '{"message":"x"}', *CT, base + "/v1/echo")
        self.assertEqual((st, J(body)["code"]), (502, 13))
        st, _, body, _ = curl(*res, base + "/v1/shelves/1")
        self.assertEqual(st, 502)

    def test_deadline_header_upstream(self):
        # The deadline goes upstream as grpc-timeout when the client sent one (what is left
        # of it) or the route says send_deadline: true; otherwise Portico enforces it alone.
        def theme(host, *args):
            res = "--resolve", "%s:%d:127.0.0.1" % (host, self.port)
            st, _, body, _ = curl(*res, "-X", "POST", "-d", '{"theme":"t"}', *CT, *args,
                                  "http://%s:%d/v1/shelves" % (host, self.port))
            self.assertEqual(st, 200, body)
            return J(body)["theme"]
        self.assertEqual(theme("fake.test"), "none")
        self.assertLess(abs(float(theme("fake.test", "-H", "grpc-timeout: 2S")) - 2.0), 0.5)
        self.assertLess(abs(float(theme("fakedl.test")) - 3.0), 0.5)
        self.assertLess(abs(float(theme("fakedl.test", "-H", "grpc-timeout: 1S")) - 1.0), 0.5)

    # ---- metadata -------------------------------------------------------------------

    def test_metadata_both_ways(self):
        st, h, body, _ = self.post(
            "/v1/echo", '{"message":"m","echoMetadata":true}',
            "-H", "authorization: Bearer t0k", "-H", "x-echo-color: blue",
            "-H", "x-echo-blob-bin: AAEC/w==", "-H", "x-private: no", "-H", "x-request-id: rid-1")
        self.assertEqual(st, 200, body)
        md = J(body)["metadata"]
        self.assertEqual(md["authorization"], "Bearer t0k")
        self.assertEqual(md["x-echo-color"], "blue")
        self.assertEqual(md["x-echo-blob-bin"], "AAEC/w==")  # decoded, sent binary, re-encoded
        self.assertEqual(md["x-request-id"], "rid-1")
        self.assertNotIn("x-private", md)
        self.assertEqual(h["x-grpc-x-echo-color"], "blue")
        self.assertEqual(h["x-grpc-x-echo-blob-bin"], "AAEC/w==")
        self.assertEqual(h["x-grpc-x-bookstore"], "1")  # trailer of a unary call -> header

    def test_header_binding(self):
        st, _, body, _ = self.post("/v1/echo", '{}', "-H", "x-msg: from-header")
        self.assertEqual((st, J(body)), (200, {"message": "from-header"}))

    # ---- server streaming -----------------------------------------------------------

    def test_server_streaming_formats(self):
        path = "/v1/shelves/1/books:watch?count=3&intervalMs=20"
        st, h, body, _ = self.get(path)
        self.assertEqual((st, h["content-type"]), (200, "application/json"))
        arr = J(body)
        self.assertEqual([m["sequence"] for m in arr], ["1", "2", "3"])
        st, h, body, _ = self.get(path, "-H", "accept: application/x-ndjson")
        self.assertEqual(h["content-type"], "application/x-ndjson")
        lines = body.decode().strip().split("\n")
        self.assertEqual([json.loads(x)["sequence"] for x in lines], ["1", "2", "3"])
        st, h, body, _ = self.get(path, "-H", "accept: text/event-stream", "--http2-prior-knowledge")
        self.assertEqual(h["content-type"], "text/event-stream")
        events = [e for e in body.decode().split("\n\n") if e]
        self.assertEqual(len(events), 3)
        self.assertTrue(all(e.startswith("data: {") for e in events))
        # route default format
        res = "--resolve", "ndjson.test:%d:127.0.0.1" % self.port
        st, h, body, _ = curl(*res, "http://ndjson.test:%d%s" % (self.port, path))
        self.assertEqual(h["content-type"], "application/x-ndjson")

    def test_stream_flushes_each_message(self):
        # Messages 400 ms apart: the first arrives long before the stream ends.
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        t0 = time.monotonic()
        s.sendall(b"GET /v1/shelves/1/books:watch?count=3&intervalMs=400 HTTP/1.1\r\n"
                  b"Host: x\r\nAccept: application/x-ndjson\r\n\r\n")
        data = b""
        while b"\"sequence\":\"1\"" not in data:
            data += s.recv(65536)
        first = time.monotonic() - t0
        data = read_to_end(s, data)
        total = time.monotonic() - t0
        s.close()
        self.assertLess(first, 0.35)
        self.assertGreater(total, 0.7)

    def test_stream_backpressure(self):
        # A client that stops reading: Portico stops asking the backend for
        # messages (bounded memory), then resumes when the client drains.
        def rss():
            with open("/proc/%d/status" % self.gw.proc.pid) as f:
                return int(f.read().split("VmRSS:")[1].split()[0])
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        s.sendall(b"GET /v1/shelves/1/books:watch?count=3000 HTTP/1.1\r\nHost: x\r\n"
                  b"Accept: application/x-ndjson\r\n\r\n")
        before = rss()
        time.sleep(1.0)
        grown = rss() - before
        data = read_to_end(s, b"")
        s.close()
        self.assertLess(grown, 16 * 1024, "KiB buffered for a stalled client")
        self.assertEqual(data.count(b'"sequence"'), 3000)
        self.assertNotIn(b'"error"', data)

    def test_stream_with_ignored_body(self):
        # A body on a binding without `body` is ignored, never read as messages.
        st, _, body, _ = curl("-X", "GET", *CT, "--data-binary", '{"not json',
                              self.base + "/v1/shelves/1/books:watch?count=2")
        self.assertEqual(st, 200, body)
        self.assertEqual([m["sequence"] for m in J(body)], ["1", "2"])

    def test_stream_errors(self):
        # before the first message: the mapped status
        st, _, body, _ = self.get("/v1/shelves/987654/books:watch")
        self.assertEqual((st, J(body)["code"]), (404, 5))
        # after: a final error element / event, with the status
        path = "/v1/shelves/1/books:watch?count=5&abortAfter=2"
        st, _, body, _ = self.get(path)
        arr = J(body)
        self.assertEqual(st, 200)
        self.assertEqual(len(arr), 3)
        self.assertEqual(arr[2]["error"]["code"], 10)
        st, _, body, _ = self.get(path, "-H", "accept: application/x-ndjson")
        last = json.loads(body.decode().strip().split("\n")[-1])
        self.assertEqual(last["error"]["code"], 10)
        st, _, body, _ = self.get(path, "-H", "accept: text/event-stream")
        self.assertIn("event: error\ndata: {\"code\":10", body.decode())

    # ---- client streaming and bidi ----------------------------------------------------

    def test_client_streaming_h1_and_h2(self):
        for extra in ((), ("--http2-prior-knowledge",)):
            lines = "".join('{"shelf":1,"book":{"author":"bulk","title":"b-%s-%d-%d"}}\n'
                            % (len(extra), os.getpid(), i) for i in range(3))
            st, _, body, _ = self.post("/v1/books:bulkCreate", lines, "-H",
                                       "transfer-encoding: chunked" if not extra else "x-a: b",
                                       *extra, ct="application/x-ndjson")
            self.assertEqual(st, 200, body)
            self.assertEqual(len(J(body)["books"]), 3)
        # a bad line: 400 naming the message
        st, _, body, _ = self.post("/v1/books:bulkCreate", '{"shelf":1}\n{"shelf":"x"}\n',
                                   ct="application/x-ndjson")
        self.assertEqual(st, 400)
        self.assertIn("message 2", J(body)["message"])

    def test_bidi_h2(self):
        body = '{"from":"a","text":"one"}\n{"from":"a","text":"two"}\n'
        st, h, out, _ = self.post("/v1/chat", body, "--http2-prior-knowledge", "-H",
                                  "accept: application/x-ndjson", ct="application/x-ndjson")
        self.assertEqual(st, 200, out)
        msgs = [json.loads(x) for x in out.decode().strip().split("\n")]
        self.assertEqual([m["text"] for m in msgs], ["one", "two"])

    def test_bidi_interactive_chunked_h1(self):
        # Each request line is sent only after the previous reply arrived:
        # proves messages flow both ways while the request body is open.
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(b"POST /v1/chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Type: application/x-ndjson\r\nAccept: application/x-ndjson\r\n\r\n")
        data = b""
        for i, text in enumerate(["ping", "pong", "done"]):
            line = ('{"from":"c","text":"%s"}\n' % text).encode()
            s.sendall(b"%x\r\n%s\r\n" % (len(line), line))
            while ('"sequence":"%d"' % (i + 1)).encode() not in data:
                chunk = s.recv(65536)
                self.assertTrue(chunk, data)
                data += chunk
        s.sendall(b"0\r\n\r\n")
        data = read_to_end(s, data)
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data)
        for t in ("ping", "pong", "done"):
            self.assertIn(('"text":"%s"' % t).encode(), data)

    def test_client_streaming_path_variables_in_every_message(self):
        # POST /v1/shelves/{shelf}/books:bulkCreate, body "book": each line is a
        # Book, and the shelf of the path goes into every CreateBookRequest.
        st, _, body, _ = self.post("/v1/shelves", '{"theme":"bulk-path-%d"}' % os.getpid())
        sid = J(body)["id"]
        for n, extra in enumerate(((), ("--http2-prior-knowledge",))):
            lines = "".join('{"author":"p","title":"t-%d-%d"}\n' % (n, i) for i in range(3))
            st, _, body, _ = self.post("/v1/shelves/%s/books:bulkCreate" % sid, lines, *extra,
                                       ct="application/x-ndjson")
            self.assertEqual(st, 200, body)
            books = J(body)["books"]
            self.assertEqual([b["shelf"] for b in books], [sid] * 3)
            self.assertEqual([b["title"] for b in books], ["t-%d-%d" % (n, i) for i in range(3)])
        st, _, body, _ = self.get("/v1/shelves/%s/books" % sid)
        self.assertEqual(len(J(body)["books"]), 6)
        # a bad path variable or query parameter: 400 before the backend is called,
        # even with no message in the body
        for path in ("/v1/shelves/abc/books:bulkCreate", "/v1/shelves/%s/books:bulkCreate?x=1"
                     % sid):
            st, _, body, _ = self.post(path, "", ct="application/x-ndjson")
            self.assertEqual(st, 400, body)
            fv = J(body)["details"][0]["fieldViolations"]
            self.assertEqual([v["field"] for v in fv], ["shelf" if "abc" in path else "x"])
        # a line that is not a Book: the error path starts at the body field
        st, _, body, _ = self.post("/v1/shelves/%s/books:bulkCreate" % sid,
                                   '{"author":"a","title":"ok-%d"}\n{"pages":"many"}\n'
                                   % os.getpid(), ct="application/x-ndjson")
        self.assertEqual(st, 400, body)
        err = J(body)
        self.assertIn("message 2", err["message"])
        self.assertEqual(err["details"][0]["fieldViolations"][0]["field"], "book.pages")

    def test_bidi_path_and_query_in_every_message(self):
        # POST /v1/rooms/{room}/chat?from=..., body "text": each line is a JSON
        # string; room and sender reach the backend with every message.
        for extra in (("-H", "transfer-encoding: chunked"), ("--http2-prior-knowledge",)):
            st, _, out, _ = self.post("/v1/rooms/lobby/chat?from=ann", '"hi"\n"there"\n"bye"\n',
                                      "-H", "accept: application/x-ndjson", *extra,
                                      ct="application/x-ndjson")
            self.assertEqual(st, 200, out)
            msgs = [json.loads(x) for x in out.decode().strip().split("\n")]
            self.assertEqual([(m["text"], m["room"], m["to"], m["sequence"]) for m in msgs],
                             [("hi", "lobby", "ann", "1"), ("there", "lobby", "ann", "2"),
                              ("bye", "lobby", "ann", "3")])
        # the body field may not also come from the query
        st, _, out, _ = self.post("/v1/rooms/lobby/chat?text=x", '"hi"\n',
                                  ct="application/x-ndjson")
        self.assertEqual(st, 400, out)
        self.assertIn("message 1", J(out)["message"])
        # interactive over HTTP/1.1 chunked: the second line goes out after the first reply
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(b"POST /v1/rooms/r%201/chat?from=bob HTTP/1.1\r\nHost: x\r\n"
                  b"Transfer-Encoding: chunked\r\nContent-Type: application/x-ndjson\r\n"
                  b"Accept: application/x-ndjson\r\n\r\n")
        data = b""
        for i, text in enumerate(["ping", "pong"]):
            line = ('"%s"\n' % text).encode()
            s.sendall(b"%x\r\n%s\r\n" % (len(line), line))
            while ('"sequence":"%d"' % (i + 1)).encode() not in data:
                chunk = s.recv(65536)
                self.assertTrue(chunk, data)
                data += chunk
        s.sendall(b"0\r\n\r\n")
        data = read_to_end(s, data)
        s.close()
        self.assertEqual(data.count(b'"room":"r 1"'), 2, data)
        self.assertEqual(data.count(b'"to":"bob"'), 2, data)

    # ---- google.api.HttpBody ---------------------------------------------------------

    def new_shelf(self, tag):
        st, _, body, _ = self.post("/v1/shelves", '{"theme":"%s-%d-%f"}'
                                   % (tag, os.getpid(), time.monotonic()))
        self.assertEqual(st, 200, body)
        return J(body)["id"]

    def put_cover(self, sid, data, *args, ct="image/png"):
        with tempfile.NamedTemporaryFile() as f:
            f.write(data)
            f.flush()
            hdr = ("-H", "content-type: " + ct) if ct is not None else ("-H", "content-type:")
            return curl("-X", "PUT", *hdr, "--data-binary", "@" + f.name, *args,
                        self.base + "/v1/shelves/%s/cover" % sid)

    def test_httpbody_response_raw(self):
        for extra in ((), ("--http2-prior-knowledge",)):
            st, h, body, _ = self.get("/v1/shelves/1/cover", *extra)
            self.assertEqual(st, 200, body)
            self.assertEqual(h["content-type"], "image/svg+xml")
            self.assertTrue(body.startswith(b"<svg ") and body.endswith(b"</svg>\n"), body)
            self.assertIn(b">Fiction</text>", body)
            self.assertEqual(int(h["content-length"]), len(body))
        st, _, body, _ = self.get("/v1/shelves/987654/cover")
        self.assertEqual((st, J(body)["code"]), (404, 5))

    def test_httpbody_request_raw_any_content_type(self):
        sid = self.new_shelf("cover")
        data = bytes(range(256)) * 3 + b"\x00\r\n\xff{not json"
        for extra in ((), ("--http2-prior-knowledge",)):
            st, h, body, _ = self.put_cover(sid, data, *extra)
            self.assertEqual(st, 200, body)
            shelf = J(body)
            self.assertEqual((shelf["id"], shelf["coverType"], shelf["coverSize"]),
                             (sid, "image/png", len(data)))
            st, h, body, _ = self.get("/v1/shelves/%s/cover" % sid, *extra)
            self.assertEqual((st, h["content-type"], body), (200, "image/png", data))
        # no 415 for HttpBody bodies: the content type is whatever the client says
        for ct in ("application/x-www-form-urlencoded", "text/plain; charset=utf-8",
                   "application/json"):
            st, _, body, _ = self.put_cover(sid, b"a=b&c", ct=ct)
            self.assertEqual(st, 200, body)
            st, h, body, _ = self.get("/v1/shelves/%s/cover" % sid)
            self.assertEqual((h["content-type"], body), (ct, b"a=b&c"))
        # no content type: the backend's validation answers (field cover.content_type)
        st, _, body, _ = self.put_cover(sid, b"x", ct=None)
        self.assertEqual(st, 400, body)
        self.assertEqual(J(body)["details"][0]["fieldViolations"][0]["field"],
                         "cover.content_type")
        # an empty body is an empty HttpBody, refused by the backend (not by Portico)
        st, _, body, _ = self.put_cover(sid, b"")
        self.assertEqual(st, 400, body)
        self.assertEqual(J(body)["details"][0]["fieldViolations"][0]["field"], "cover.data")
        # bigger than a socket buffer, both ways
        big = os.urandom(700 * 1024)
        st, _, body, _ = self.put_cover(sid, big, ct="application/octet-stream")
        self.assertEqual((st, J(body)["coverSize"]), (200, len(big)))
        st, h, body, _ = self.get("/v1/shelves/%s/cover" % sid, "--http2-prior-knowledge")
        self.assertEqual((st, body == big), (200, True))
        # the body field cannot also come from the query
        st, _, body, _ = curl("-X", "PUT", "-H", "content-type: text/plain", "--data-binary", "x",
                              self.base + "/v1/shelves/%s/cover?cover.content_type=a/b" % sid)
        self.assertEqual(st, 400, body)

    def test_httpbody_client_stream_upload(self):
        # UploadShelfCover(stream {shelf, chunk: HttpBody}), body "chunk": the raw
        # body goes up in pieces as it arrives, each with the path's shelf and
        # the Content-Type; no NDJSON, no 415.
        sid = self.new_shelf("upload")
        # 300 KiB: several messages, and past the request-body high water mark
        # (256 KiB), where the HTTP/1 codec pauses reading mid-body (it once lost
        # the end of a Content-Length body there)
        data = os.urandom(300 * 1024)
        with tempfile.NamedTemporaryFile() as f:
            f.write(data)
            f.flush()
            for n, extra in enumerate((("-H", "transfer-encoding: chunked"), (),
                                       ("--http2-prior-knowledge",))):
                ct = "image/x-test-%d" % n
                st, _, body, _ = curl("-X", "POST", "-H", "content-type: " + ct,
                                      "--data-binary", "@" + f.name, *extra,
                                      self.base + "/v1/shelves/%s/cover:upload" % sid)
                self.assertEqual(st, 200, (extra, body))
                shelf = J(body)
                self.assertEqual((shelf["id"], shelf["coverType"], shelf["coverSize"]),
                                 (sid, ct, len(data)))
                st, h, body, _ = self.get("/v1/shelves/%s/cover" % sid)
                self.assertEqual((h["content-type"], body == data), (ct, True))
        # bad path: 400 before the call; unknown shelf: the backend's 404
        st, _, body, _ = curl("-X", "POST", "-H", "content-type: text/plain", "--data-binary",
                              "x", self.base + "/v1/shelves/zz/cover:upload")
        self.assertEqual(st, 400, body)
        st, _, body, _ = curl("-X", "POST", "-H", "content-type: text/plain", "--data-binary",
                              "x", self.base + "/v1/shelves/987654/cover:upload")
        self.assertEqual((st, J(body)["code"]), (404, 5))

    def test_httpbody_bad_content_type_from_backend(self):
        res = "--resolve", "fake.test:%d:127.0.0.1" % self.port
        st, h, body, _ = curl(*res, "http://fake.test:%d/v1/shelves/1/cover" % self.port)
        self.assertEqual((st, body), (200, b"abc"))
        self.assertEqual(h["content-type"], "application/octet-stream")
        self.assertNotIn("x-evil", h)

    def test_httpbody_server_stream_raw_chunks(self):
        sid = self.new_shelf("download")
        data = os.urandom(50000)
        self.assertEqual(self.put_cover(sid, data, ct="image/webp")[0], 200)
        path = "/v1/shelves/%s/cover:download?chunkSize=4000" % sid
        for extra in ((), ("--http2-prior-knowledge",), ("-H", "accept: application/x-ndjson")):
            st, h, body, _ = self.get(path, *extra)
            self.assertEqual(st, 200, body[:200])
            self.assertEqual(h["content-type"], "image/webp")  # never ndjson/json framing
            self.assertNotIn("content-length", h)
            self.assertEqual(body, data)
        # flushed as each chunk arrives: the first bytes come long before the end
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        t0 = time.monotonic()
        s.sendall(b"GET /v1/shelves/1/cover:download?chunkSize=32&intervalMs=150 HTTP/1.1\r\n"
                  b"Host: x\r\n\r\n")
        got = b""
        while b"<svg" not in got:
            got += s.recv(65536)
        first = time.monotonic() - t0
        got = read_to_end(s, got)
        total = time.monotonic() - t0
        s.close()
        self.assertIn(b"</svg>", got)
        self.assertLess(first, 0.3)
        self.assertGreater(total, 0.6)  # 7 chunks, 150 ms apart

    def test_httpbody_server_stream_errors(self):
        # before the first chunk: the mapped status and a JSON Status
        st, h, body, _ = self.get("/v1/shelves/987654/cover:download")
        self.assertEqual((st, h["content-type"], J(body)["code"]), (404, "application/json", 5))
        st, _, body, _ = self.get("/v1/shelves/1/cover:download?chunkSize=100000")
        self.assertEqual(st, 400, body)
        # after it: the download is cut (no clean end), never an error text in the
        # bytes. The failure follows the second chunk at once, and the abrupt end
        # may drop that chunk if it is still queued; the first went out 200 ms before.
        whole = self.get("/v1/shelves/1/cover")[2]
        path = "/v1/shelves/1/cover:download?chunkSize=10&abortAfter=2&intervalMs=200"
        for extra in ((), ("--http2-prior-knowledge",)):
            st, h, body, err = self.get(path, *extra)
            self.assertEqual((st, h["content-type"]), (200, "image/svg+xml"))
            self.assertIn(len(body), (10, 20), body)
            self.assertEqual(body, whole[:len(body)])
            self.assertIn("curl: (", err)  # 18 (HTTP/1.1) or 92 (HTTP/2): truncated

    # ---- cancellation ----------------------------------------------------------------

    def test_client_gone_cancels_upstream(self):
        self.fake.cancelled.clear()
        self.fake.started.clear()
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(b"GET /v1/shelves/1/books:watch HTTP/1.1\r\nHost: fake.test\r\n"
                  b"Accept: application/x-ndjson\r\n\r\n")
        data = b""
        while data.count(b"sequence") < 2:
            data += s.recv(65536)
        self.assertTrue(self.fake.started.is_set())
        s.close()
        self.assertTrue(self.fake.cancelled.wait(5), "backend never saw the cancel")
        # the same over HTTP/2: the client gives up after 1 s
        self.fake.cancelled.clear()
        curl("--resolve", "fake.test:%d:127.0.0.1" % self.port, "--http2-prior-knowledge",
             "-H", "accept: application/x-ndjson", "--max-time", "1",
             "http://fake.test:%d/v1/shelves/1/books:watch" % self.port, timeout=1)
        self.assertTrue(self.fake.cancelled.wait(5), "backend never saw the h2 cancel")

    # ---- TLS upstream -------------------------------------------------------------------

    def test_tls_upstream_with_authority(self):
        from concurrent import futures
        d = tempfile.mkdtemp(prefix="grpc-tls-")
        self.addCleanup(shutil.rmtree, d, True)
        crt, key = make_cert(d)
        seen = {}

        def get_shelf(req, ctx):
            seen["authority"] = dict(ctx.invocation_metadata()).get(":authority", "")
            return b"\x08\x07\x12\x03tls"  # Shelf{id: 7, theme: "tls"}
        srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        srv.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "bookstore.v1.Bookstore",
            {"GetShelf": grpc.unary_unary_rpc_method_handler(get_shelf)}),))
        with open(crt, "rb") as f1, open(key, "rb") as f2:
            creds = grpc.ssl_server_credentials([(f2.read(), f1.read())])
        tport = srv.add_secure_port("127.0.0.1:0", creds)
        srv.start()
        port = free_port()
        cfg = """
listeners: [ {{ address: 127.0.0.1:{port} }} ]
descriptors: [ {pb} ]
clusters:
  - {{ name: sec, protocol: grpc, endpoints: [ "https://127.0.0.1:{tport}" ], ca_file: {crt},
      authority: localhost }}
  - {{ name: untrusted, protocol: grpc, endpoints: [ "https://127.0.0.1:{tport}" ] }}
routes:
  - {{ match: {{ host: bad.test }}, grpc: {{ cluster: untrusted }} }}
  - grpc: {{ cluster: sec }}
"""
        gw = Portico(cfg.format(port=port, pb=PB, tport=tport, crt=crt), workers=1)
        try:
            gw.wait_ready(port)
            st, _, body, _ = curl("http://127.0.0.1:%d/v1/shelves/7" % port)
            self.assertEqual((st, J(body)), (200, {"id": "7", "theme": "tls"}))
            self.assertIn("authority", seen)
            # a certificate the system store does not trust: 502, no plaintext
            # fallback, and no gRPC core internals in the answer (UP-9)
            st, _, body, _ = curl("--resolve", "bad.test:%d:127.0.0.1" % port,
                                  "http://bad.test:%d/v1/shelves/7" % port)
            self.assertEqual(st, 502, body)
            # the reason ("upstream TLS handshake failed") is the log's (issue 11)
            self.assertEqual(J(body), {"code": 14, "message": "upstream failed"})
        finally:
            self.assertEqual(gw.stop(), 0)
            srv.stop(0)

    def test_tls_bookstore_certificate_failures_502(self):
        # bookstore-server over TLS; clusters trusting another CA, trusting the
        # right one under the wrong name, and trusting it properly (UP-9).
        d = tempfile.mkdtemp(prefix="grpc-tls-bs-")
        self.addCleanup(shutil.rmtree, d, True)
        crt, key = make_cert(d)
        other, _ = make_cert(d, name="other")
        bs = BookstoreServer(threads=1, extra_args=("--tls-cert", crt, "--tls-key", key)).start()
        port = free_port()
        cfg = """
listeners: [ {{ address: 127.0.0.1:{port} }} ]
descriptors: [ {pb} ]
clusters:
  - {{ name: good, protocol: grpc, endpoints: [ "https://127.0.0.1:{bs}" ], ca_file: {crt},
      authority: localhost }}
  - {{ name: wrongca, protocol: grpc, endpoints: [ "https://127.0.0.1:{bs}" ], ca_file: {other},
      authority: localhost }}
  - {{ name: wrongname, protocol: grpc, endpoints: [ "https://127.0.0.1:{bs}" ], ca_file: {crt},
      authority: books.example }}
routes:
  - {{ match: {{ host: wrongca.test }}, grpc: {{ cluster: wrongca }} }}
  - {{ match: {{ host: wrongname.test }}, grpc: {{ cluster: wrongname }} }}
  - grpc: {{ cluster: good }}
"""
        gw = Portico(cfg.format(port=port, pb=PB, bs=bs.port, crt=crt, other=other), workers=1)
        try:
            gw.wait_ready(port)
            url = "http://127.0.0.1:%d" % port
            st, h, body, _ = curl(url + "/v1/shelves/1/cover")
            self.assertEqual((st, h["content-type"]), (200, "image/svg+xml"), body)
            st, _, body, _ = curl(url + "/v1/shelves/1")
            self.assertEqual((st, J(body)["theme"]), (200, "Fiction"))
            for host in ("wrongca.test", "wrongname.test"):
                res = ("--resolve", "%s:%d:127.0.0.1" % (host, port))
                base = "http://%s:%d" % (host, port)
                for args in ((base + "/v1/shelves/1",),                       # unary
                             (base + "/v1/shelves/1/books:watch",),           # server streaming
                             ("-X", "POST", "-H", "content-type: application/x-ndjson",
                              "--data-binary", '{"author":"a","title":"b"}\n',
                              base + "/v1/shelves/1/books:bulkCreate"),       # client streaming
                             ("--http2-prior-knowledge", base + "/v1/shelves/1/cover")):
                    st, _, body, _ = curl(*res, *args)
                    self.assertEqual(st, 502, (host, args, body))
                    self.assertEqual(J(body), {"code": 14, "message": "upstream failed"})
        finally:
            self.assertEqual(gw.stop(), 0)
            self.assertEqual(bs.stop(), 0, bs.stderr)

    # ---- reload ------------------------------------------------------------------------

    def test_reload_descriptors(self):
        d = tempfile.mkdtemp(prefix="grpc-reload-")
        self.addCleanup(shutil.rmtree, d, True)
        make_reload_pb(d)
        port = free_port()
        cfg = """
listeners: [ {{ address: 127.0.0.1:{port} }} ]
descriptors: [ {pb} ]
clusters: [ {{ name: books, protocol: grpc, endpoints: [ "127.0.0.1:{bs}" ] }} ]
routes: [ {{ grpc: {{ cluster: books, default_bindings: true }} }} ]
"""
        gw = Portico(cfg.format(port=port, pb=PB, bs=self.bs.port), workers=1)
        try:
            gw.wait_ready(port)
            url = "http://127.0.0.1:%d" % port
            self.assertEqual(curl(url + "/v1/shelves/1")[0], 200)
            self.assertEqual(curl(url + "/v2/shelves/1")[0], 404)
            gw.write_config(cfg.format(port=port, pb=os.path.join(d, "reload.pb"),
                                       bs=self.bs.port))
            gw.reload()
            deadline = time.monotonic() + 10
            while curl(url + "/v2/shelves/1")[0] != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            st, _, body, _ = curl(url + "/v2/shelves/1")
            self.assertEqual((st, J(body)["id"]), (200, "1"))
            self.assertEqual(curl(url + "/v1/shelves/1")[0], 404)
            # the unannotated method got POST /pkg.Svc/Method
            st, _, body, _ = curl("-X", "POST", "-d", '{"message":"d"}', *CT,
                                  url + "/bookstore.v1.Bookstore/Echo")
            self.assertEqual((st, J(body)), (200, {"message": "d"}))
            # a broken descriptor set is refused; the old snapshot keeps serving
            with open(os.path.join(d, "bad.pb"), "wb") as f:
                f.write(b"\x0a\x05garbage")
            gw.write_config(cfg.format(port=port, pb=os.path.join(d, "bad.pb"), bs=self.bs.port))
            gw.reload()
            time.sleep(0.5)
            self.assertEqual(curl(url + "/v2/shelves/1")[0], 200)
            self.assertRegex(gw.output(), r"portico.yaml:3:\d+: descriptor set")
        finally:
            self.assertEqual(gw.stop(), 0)

    def test_validate_errors(self):
        d = tempfile.mkdtemp(prefix="grpc-validate-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "bad.yaml")
        with open(path, "w") as f:
            f.write("""listeners: [ { address: 127.0.0.1:1 } ]
descriptors: [ missing.pb ]
clusters:
  - { name: web, endpoints: [ "127.0.0.1:1" ] }
routes:
  - grpc: { cluster: web, stream_format: xml }
""")
        p = subprocess.run([os.environ.get("PORTICO_BIN", "portico"), "--validate", "-c", path],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertIn("bad.yaml:2:16: descriptor set", p.stderr)
        self.assertIn("stream_format: expected json, ndjson or sse", p.stderr)


if __name__ == "__main__":
    unittest.main()
