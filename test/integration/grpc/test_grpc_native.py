"""
test_grpc_native.py -- native gRPC passthrough through the real portico
binary (handlers/grpc_native.c over upstream/h2.c), with Debian's
python3-grpcio as the client.

Backends: examples/bookstore's bookstore-server (all four call types,
metadata, errors with details, deadlines); a python3-grpcio backend with
raw-bytes handlers run in a subprocess (grpc-timeout as seen upstream,
cancellation, oversized answers, killed mid-stream); and the scripted
HTTP/2 backend of the unit tests (test/unit/upstream_h2_backend.py) for
answers no gRPC server gives (non-200 statuses, Trailers-Only, bad framing).
SECURITY-CASES JP-8, JP-10, UP-3, UP-4.
"""
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bookstore"))

from portico_test import Portico, curl, free_port, wait_port  # noqa: E402
from bookstore_server import BookstoreServer, PB, grpc, pb, pb_grpc  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
H2_BACKEND = os.path.join(ROOT, "test", "unit", "upstream_h2_backend.py")

# A python3-grpcio backend (subprocess, so it can be killed -9): fake.Svc with
# raw-bytes methods.
FAKE = r'''
import sys, time, threading
from concurrent import futures
import grpc
port = int(sys.argv[1]); cancelled = sys.argv[2]

def deadline(req, ctx):
    return ("%.3f" % ctx.time_remaining()).encode()

def big(req, ctx):
    return b"b" * int(req.decode())

def status(req, ctx):
    ctx.set_trailing_metadata((("x-trailer-bin", b"\x00\x01"),))
    ctx.abort(grpc.StatusCode.UNKNOWN, req.decode("utf-8"))

def stream(req, ctx):
    def on_done():
        if not ctx.is_active():
            open(cancelled, "w").write("cancelled")
    ctx.add_callback(on_done)
    for i in range(1000):
        if not ctx.is_active():
            return
        yield b"msg%d" % i
        time.sleep(0.05)

handlers = {
    "Deadline": grpc.unary_unary_rpc_method_handler(deadline),
    "Big": grpc.unary_unary_rpc_method_handler(big),
    "Status": grpc.unary_unary_rpc_method_handler(status),
    "Stream": grpc.unary_stream_rpc_method_handler(stream),
}
opts = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
srv = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=opts)
srv.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("fake.Svc", handlers),))
srv.add_insecure_port("127.0.0.1:%d" % port)
srv.start()
print("ready", flush=True)
srv.wait_for_termination()
'''

CONFIG = """
listeners:
  - address: 127.0.0.1:{port}
workers: 1
descriptors: [ {pb} ]
clusters:
  - {{ name: books, protocol: grpc, endpoints: [ "http://127.0.0.1:{bs}" ] }}
  - {{ name: down, protocol: grpc, endpoints: [ "http://127.0.0.1:{dead}" ] }}
  - {{ name: fake, protocol: grpc, endpoints: [ "http://127.0.0.1:{fake}" ] }}
  - {{ name: h2, protocol: grpc, endpoints: [ "http://127.0.0.1:{h2}" ] }}
routes:
  - match: {{ host: down.test }}
    grpc: {{ cluster: down }}
  - match: {{ host: fake.test }}
    grpc: {{ cluster: fake }}
  - match: {{ host: h2.test }}
    grpc: {{ cluster: h2 }}
  - match: {{ host: slow.test }}
    timeout: 300ms
    grpc: {{ cluster: books }}
  - match: {{ host: small.test }}
    grpc: {{ cluster: books, max_message: 1k }}
  - match: {{ host: only.test }}
    grpc: {{ cluster: books, services: [ bookstore.v1.Bookstore ] }}
  - grpc: {{ cluster: books }}
"""


def start_fake(port, cancelled_path):
    p = subprocess.Popen([sys.executable, "-c", FAKE, str(port), cancelled_path],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    p.stdout.readline()
    p.stdout.close()
    wait_port(port)
    return p


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="pt_gn_")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        cls.srv = BookstoreServer(threads=4).start()
        cls.fake_port = free_port()
        cls.cancelled = os.path.join(cls.tmp, "cancelled")
        cls.fake = start_fake(cls.fake_port, cls.cancelled)
        cls.h2_port = free_port()
        cls.h2 = subprocess.Popen(["/usr/bin/python3", H2_BACKEND, str(cls.h2_port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(cls.h2_port)
        cls.port = free_port()
        cls.portico = Portico(CONFIG.format(port=cls.port, pb=PB, bs=cls.srv.port,
                                            dead=free_port(), fake=cls.fake_port,
                                            h2=cls.h2_port))
        cls.portico.wait_ready(cls.port)
        cls.addr = "127.0.0.1:%d" % cls.port

    @classmethod
    def tearDownClass(cls):
        cls.portico.stop()
        for p in (cls.fake, cls.h2):
            if p.poll() is None:
                p.kill()
            p.wait()
        cls.srv.stop()

    def channel(self, host=None, **opts):
        o = list(opts.items())
        if host is not None:
            o.append(("grpc.default_authority", host))
        ch = grpc.insecure_channel(self.addr, options=o)
        self.addCleanup(ch.close)
        return ch

    def stub(self, host=None):
        return pb_grpc.BookstoreStub(self.channel(host))

    def assertCode(self, code, fn, *args, **kw):
        with self.assertRaises(grpc.RpcError) as cm:
            r = fn(*args, **kw)
            if hasattr(r, "__iter__") and not isinstance(r, (bytes, str)):
                list(r)
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        return cm.exception


class TestCallTypes(Base):
    def test_unary(self):
        s = self.stub()
        self.assertEqual(s.Echo(pb.EchoRequest(message="hello")).message, "hello")
        big = "z" * 1000000  # ~1 MB: several DATA frames and window updates both ways
        self.assertEqual(s.Echo(pb.EchoRequest(message=big)).message, big)
        self.assertEqual(s.GetShelf(pb.GetShelfRequest(shelf=1)).id, 1)

    def test_server_streaming(self):
        s = self.stub()
        t0 = time.monotonic()
        msgs = list(s.WatchBooks(pb.WatchBooksRequest(shelf=1, interval_ms=30, count=5)))
        self.assertEqual([m.sequence for m in msgs], [1, 2, 3, 4, 5])
        self.assertGreaterEqual(time.monotonic() - t0, 0.11)

    def test_client_streaming(self):
        s = self.stub()
        shelf = s.CreateShelf(pb.CreateShelfRequest(
            shelf=pb.Shelf(theme="native-%d-%f" % (os.getpid(), time.time()))))
        reqs = [pb.CreateBookRequest(shelf=shelf.id, book=pb.Book(title="t%d" % i, author="a"))
                for i in range(30)]
        r = s.BulkCreateBooks(iter(reqs))
        self.assertEqual([b.title for b in r.books], ["t%d" % i for i in range(30)])

    def test_bidi_is_interactive(self):
        q = queue.Queue()

        def gen():
            while True:
                m = q.get()
                if m is None:
                    return
                yield m

        it = self.stub().Chat(gen())
        for i in range(5):  # each reply comes back before the next message is sent
            q.put(pb.ChatMessage(text="ping %d" % i))
            r = next(it)
            self.assertEqual((r.text, r.sequence), ("ping %d" % i, i + 1))
        q.put(None)
        self.assertEqual(list(it), [])
        self.assertEqual(it.code(), grpc.StatusCode.OK)

    def test_many_concurrent_calls_share_connections(self):
        s = self.stub()
        futs = [s.Echo.future(pb.EchoRequest(message="m%d" % i, delay_ms=100)) for i in range(60)]
        self.assertEqual([f.result().message for f in futs], ["m%d" % i for i in range(60)])
        out = subprocess.run(["ss", "-Htn", "state", "established",
                              "( dport = :%d )" % self.srv.port],
                             capture_output=True, text=True).stdout
        # one worker, 60 calls in flight: one upstream connection (not one per call)
        self.assertLessEqual(len([ln for ln in out.splitlines() if ln.strip()]), 2, out)


class TestInterop(Base):
    """More of the grpc.testing interop cases (SECURITY-CASES JP-10)."""

    SPECIAL = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"

    def test_special_status_message(self):
        raw = self.channel("fake.test").unary_unary("/fake.Svc/Status")
        e = self.assertCode(grpc.StatusCode.UNKNOWN, raw, self.SPECIAL.encode())
        self.assertEqual(e.details(), self.SPECIAL)
        self.assertIn(("x-trailer-bin", b"\x00\x01"), e.trailing_metadata())

    def test_compressed_unary_both_ways(self):
        s = self.stub()
        msg = "compress me " * 10000
        r = s.Echo(pb.EchoRequest(message=msg), compression=grpc.Compression.Gzip)
        self.assertEqual(r.message, msg)
        ch = self.channel(**{"grpc.default_compression_algorithm": 2})  # gzip
        self.assertEqual(pb_grpc.BookstoreStub(ch).Echo(pb.EchoRequest(message=msg)).message, msg)

    def test_empty_stream(self):
        it = self.stub().Chat(iter([]))
        self.assertEqual(list(it), [])
        self.assertEqual(it.code(), grpc.StatusCode.OK)

    def test_cancel_after_first_response(self):
        it = self.stub().WatchBooks(pb.WatchBooksRequest(shelf=1, interval_ms=50, count=100))
        self.assertEqual(next(it).sequence, 1)
        it.cancel()
        self.assertEqual(it.code(), grpc.StatusCode.CANCELLED)
        self.assertEqual(self.stub().Echo(pb.EchoRequest(message="alive")).message, "alive")


class TestMetadata(Base):
    MD = [("x-request-id", "req-42"), ("x-echo-color", "blue"),
          ("x-echo-blob-bin", b"\x00\xffbin"), ("authorization", "Bearer t")]

    def test_metadata_both_ways(self):
        s = self.stub()
        r, call = s.Echo.with_call(pb.EchoRequest(message="m", echo_metadata=True),
                                   metadata=self.MD + [("x-custom", "v")])
        md = dict(r.metadata)
        self.assertEqual(md["x-echo-color"], "blue")
        self.assertEqual(md["x-custom"], "v")
        self.assertEqual(md["authorization"], "Bearer t")
        self.assertEqual(md["x-forwarded-for"], "127.0.0.1")
        self.assertTrue(md["x-request-id"])  # Portico's id, not the client's pre-seeded one
        self.assertIn("grpc-python", md["user-agent"])
        initial = list(call.initial_metadata())
        self.assertIn(("x-echo-color", "blue"), initial)
        self.assertIn(("x-echo-blob-bin", b"\x00\xffbin"), initial)
        self.assertIn(("x-bookstore", "1"), call.trailing_metadata())

    def test_error_status_details_and_trailers(self):
        s = self.stub()
        e = self.assertCode(grpc.StatusCode.NOT_FOUND, s.GetShelf,
                            pb.GetShelfRequest(shelf=987654), metadata=self.MD)
        self.assertIn(("x-bookstore", "1"), e.trailing_metadata())
        self.assertTrue(any(k == "grpc-status-details-bin" for k, _ in e.trailing_metadata()))
        for code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAVAILABLE,
                     grpc.StatusCode.INTERNAL):
            e = self.assertCode(code, s.Echo, pb.EchoRequest(message="x", fail_code=code.value[0]))
            self.assertEqual(e.details(), "echo: requested failure")

    def test_unknown_method(self):
        raw = self.channel().unary_unary("/bookstore.v1.Bookstore/Nope")
        self.assertCode(grpc.StatusCode.UNIMPLEMENTED, raw, b"")  # the backend's answer
        # a route restricted to some services answers UNIMPLEMENTED itself
        only = self.channel("only.test")
        self.assertCode(grpc.StatusCode.UNIMPLEMENTED, only.unary_unary("/other.Svc/Get"), b"")
        self.assertCode(grpc.StatusCode.UNIMPLEMENTED,
                        only.unary_unary("/bookstore.v1.Bookstore/Nope"), b"")
        self.assertEqual(pb_grpc.BookstoreStub(only).Echo(pb.EchoRequest(message="y")).message,
                         "y")


class TestDeadlines(Base):
    def test_timeout_on_sleeping_server(self):
        s = self.stub()
        t0 = time.monotonic()
        self.assertCode(grpc.StatusCode.DEADLINE_EXCEEDED, s.Echo,
                        pb.EchoRequest(message="x", delay_ms=5000), timeout=0.3)
        self.assertLess(time.monotonic() - t0, 2)
        self.assertCode(grpc.StatusCode.DEADLINE_EXCEEDED, s.WatchBooks,
                        pb.WatchBooksRequest(shelf=1, interval_ms=100, count=100), timeout=0.3)
        self.assertEqual(s.Echo(pb.EchoRequest(message="after")).message, "after")

    def test_grpc_timeout_forwarded_reduced(self):
        raw = self.channel("fake.test").unary_unary("/fake.Svc/Deadline")
        left = float(raw(b"", timeout=5))
        self.assertGreater(left, 3.0)
        # python3-grpcio's server-side time_remaining() overshoots by ~10 ms
        # (a direct call with timeout=5 reads 5.009-5.010 here), so "not more
        # than the client gave" is checked with that slack.
        self.assertLess(left, 5.05)

    def test_route_timeout_enforced_locally(self):
        # no client deadline; the route's 300 ms apply
        s = self.stub("slow.test")
        t0 = time.monotonic()
        self.assertCode(grpc.StatusCode.DEADLINE_EXCEEDED, s.Echo,
                        pb.EchoRequest(message="x", delay_ms=3000))
        self.assertLess(time.monotonic() - t0, 2)


class TestCancellation(Base):
    def test_cancel_reaches_backend(self):
        if os.path.exists(self.cancelled):
            os.unlink(self.cancelled)
        raw = self.channel("fake.test").unary_stream("/fake.Svc/Stream")
        it = raw(b"")
        self.assertEqual(next(it), b"msg0")
        it.cancel()
        deadline = time.monotonic() + 5
        while not os.path.exists(self.cancelled) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue(os.path.exists(self.cancelled), "backend never saw the cancellation")

    def test_cancel_unary_in_flight(self):
        s = self.stub()
        for _ in range(10):
            f = s.Echo.future(pb.EchoRequest(message="x", delay_ms=2000))
            time.sleep(0.01)
            f.cancel()
            self.assertTrue(f.cancelled())
        self.assertEqual(s.Echo(pb.EchoRequest(message="ok")).message, "ok")


class TestFailures(Base):
    def test_backend_down(self):
        s = self.stub("down.test")
        e = self.assertCode(grpc.StatusCode.UNAVAILABLE, s.Echo, pb.EchoRequest(message="x"))
        self.assertTrue(e.details())

    def test_http_status_mapping_and_trailers_only(self):
        ch = self.channel("h2.test")
        # the scripted backend answers 404 for unknown paths (JP-8: -> UNIMPLEMENTED)
        self.assertCode(grpc.StatusCode.UNIMPLEMENTED, ch.unary_unary("/x.Y/Z"), b"")
        # a Trailers-Only answer passes through as one
        e = self.assertCode(grpc.StatusCode.NOT_FOUND, ch.unary_unary("/t.S/trailers-only"), b"")
        self.assertEqual(e.details(), "nope")

    def test_bad_framing_and_reset_midstream(self):
        ch = self.channel("h2.test")
        # .../reset-mid sends 'x'*1000 (no gRPC framing: flag 0x78) then RST_STREAM
        e = self.assertCode(grpc.StatusCode.INTERNAL, ch.unary_unary("/t.S/reset-mid"), b"")
        self.assertIn("framing", e.details())

    def test_oversized_messages(self):
        s = self.stub()
        big = "q" * (5 * 1024 * 1024)
        self.assertCode(grpc.StatusCode.RESOURCE_EXHAUSTED, s.Echo, pb.EchoRequest(message=big))
        # an oversized answer, with the client's own limit lifted: Portico's limit
        ch = self.channel("fake.test", **{"grpc.max_receive_message_length": -1})
        raw = ch.unary_unary("/fake.Svc/Big")
        self.assertEqual(len(raw(b"1000000")), 1000000)
        e = self.assertCode(grpc.StatusCode.RESOURCE_EXHAUSTED, raw, b"5000000")
        self.assertIn("larger", e.details())
        # the route's own limit
        small = self.stub("small.test")
        self.assertEqual(small.Echo(pb.EchoRequest(message="s" * 500)).message, "s" * 500)
        self.assertCode(grpc.StatusCode.RESOURCE_EXHAUSTED, small.Echo,
                        pb.EchoRequest(message="s" * 2000))

    def test_grpc_over_http1_refused(self):
        r = curl("--http1.1", "-X", "POST", "-H", "content-type: application/grpc",
                 "--data-binary", "@/dev/null", "http://%s/bookstore.v1.Bookstore/Echo" % self.addr)
        self.assertEqual(r[0], 505)


class TestKilledMidStream(Base):
    """Last: kills the fake backend (UP-4)."""

    def test_zz_killed_mid_stream(self):
        raw = self.channel("fake.test").unary_stream("/fake.Svc/Stream")
        it = raw(b"")
        got = [next(it), next(it)]
        self.assertEqual(got, [b"msg0", b"msg1"])
        os.kill(self.fake.pid, signal.SIGKILL)
        self.fake.wait()
        with self.assertRaises(grpc.RpcError) as cm:
            for _ in it:
                pass
        # never a clean end: UNAVAILABLE (status at a message boundary) or a reset
        self.assertIn(cm.exception.code(), (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL))
        # a new call to the dead backend: UNAVAILABLE
        self.assertCode(grpc.StatusCode.UNAVAILABLE, raw(b"").__next__)
        # restart it on the same port: calls work again (new upstream connection)
        type(self).fake = start_fake(self.fake_port, self.cancelled)
        deadline = self.channel("fake.test").unary_unary("/fake.Svc/Deadline")
        self.assertTrue(float(deadline(b"", timeout=5)) > 0)


if __name__ == "__main__":
    unittest.main()
