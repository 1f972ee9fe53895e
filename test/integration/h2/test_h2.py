"""
HTTP/2 frontend against the real binary (SECURITY-CASES.md §2.2 H2-1..H2-14,
§2.10 RE-3): nghttp and h2load for the normal paths, hand-built frames
(python3-hyperframe / hpack) for the abusive ones. Every abuse case also
checks that Portico still serves a normal request afterwards.
"""
import socket
import subprocess
import time
import unittest

import hpack
from hyperframe.frame import (ContinuationFrame, DataFrame, ExtensionFrame, Frame, GoAwayFrame,
                              HeadersFrame, PriorityFrame, RstStreamFrame, SettingsFrame,
                              WindowUpdateFrame)

from portico_test import PorticoTestCase, curl, free_port

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def config(port, echo_port, top=""):
    return f"""
listeners:
  - address: 127.0.0.1:{port}
{top}
clusters:
  - name: web
    protocol: http
    endpoints: [ "127.0.0.1:{echo_port}" ]
routes:
  - name: api
    match: {{ prefix: /api/ }}
    proxy: {{ cluster: web }}
    filters:
      - rewrite: {{ prefix: /api/, replace: / }}
"""


class RawH2:
    """A cleartext HTTP/2 client speaking raw frames (prior knowledge)."""

    def __init__(self, port, ack_settings=True, timeout=5.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.enc = hpack.Encoder()
        self.buf = b""
        self.frames = []
        self.closed = False      # the server closed (EOF)
        self.send_failed = False
        self.s.sendall(PREFACE + SettingsFrame(0).serialize())
        if ack_settings:
            self.s.sendall(SettingsFrame(0, flags=["ACK"]).serialize())

    def headers_block(self, path="/api/x", extra=()):
        return self.enc.encode([(":method", "GET"), (":scheme", "http"),
                                (":authority", "127.0.0.1"), (":path", path)] + list(extra))

    def send(self, *frames):
        data = b"".join(f.serialize() for f in frames)
        try:
            self.s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.send_failed = True

    def read(self, until=None, timeout=3.0):
        """Reads frames until `until(frame)` is true, the peer closes, or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.closed:
            while len(self.buf) >= 9:
                f, length = Frame.parse_frame_header(memoryview(self.buf[:9]))
                if len(self.buf) < 9 + length:
                    break
                f.parse_body(memoryview(self.buf[9:9 + length]))
                self.buf = self.buf[9 + length:]
                self.frames.append(f)
                if until is not None and until(f):
                    return f
            self.s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.closed = True
                break
            self.buf += chunk
        return None

    def goaway(self):
        return next((f for f in self.frames if isinstance(f, GoAwayFrame)), None)

    def close(self):
        self.s.close()


class H2Test(PorticoTestCase):

    def setUp(self):
        super().setUp()
        self.port = free_port()
        self.up = self.echo()
        self.p = self.start(config(self.port, self.up.port), self.port)
        self.url = f"http://127.0.0.1:{self.port}"

    def assert_serves(self):
        st, _, body, err = curl("--http2-prior-knowledge", f"{self.url}/api/alive")
        self.assertEqual(st, 200, err)

    def test_nghttp_multiplexed(self):
        """Many concurrent streams on one connection (nghttp), then POST bodies (h2load)."""
        urls = [f"{self.url}/api/m{i}" for i in range(20)]
        p = subprocess.run(["nghttp", "-n", "-v"] + urls, capture_output=True, timeout=60)
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 0, out[-2000:])
        self.assertEqual(out.count(":status: 200"), 20)
        with open(self.p.dir + "/body", "wb") as f:
            f.write(b"x" * 200000)
        p = subprocess.run(["h2load", "-n", "40", "-c", "2", "-m", "10", "-d", self.p.dir + "/body",
                            f"{self.url}/api/post"], capture_output=True, timeout=120)
        self.assertIn("40 succeeded, 0 failed, 0 errored", p.stdout.decode())
        self.assertTrue(all(r["body"] == b"x" * 200000 for r in self.up.requests[-40:]))

    def test_h2load_no_failures(self):
        p = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "10",
                            f"{self.url}/api/load"], capture_output=True, timeout=120)
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 0, out)
        self.assertIn("2000 succeeded, 0 failed, 0 errored", out)

    def test_header_list_cap_keeps_decoder_in_sync(self):
        """H2-4/H2-5: over-limit header blocks get 431 (or RST); the connection goes on."""
        c = RawH2(self.port)
        big = [("x-big", "b" * 4000)] * 40          # HPACK-indexed after the first
        crumbs = [("cookie", "a=b")] * 150           # cookie crumbs count as fields
        c.send(HeadersFrame(1, c.headers_block(extra=big), flags=["END_HEADERS", "END_STREAM"]))
        c.send(HeadersFrame(3, c.headers_block(extra=crumbs), flags=["END_HEADERS", "END_STREAM"]))
        c.send(HeadersFrame(5, c.headers_block("/api/after"), flags=["END_HEADERS", "END_STREAM"]))
        dec = hpack.Decoder()
        status = {}
        c.read(until=lambda f: len(status) == 3 if isinstance(f, HeadersFrame) and
               status.setdefault(f.stream_id, dict(dec.decode(f.data)).get(":status")) else False,
               timeout=5)
        self.assertEqual(status.get(1), "431")
        self.assertEqual(status.get(3), "431")
        self.assertEqual(status.get(5), "200")
        self.assertEqual([r["path"] for r in self.up.requests], ["/after"])
        c.close()

    def test_rapid_reset_goaway(self):
        """H2-1: HEADERS+RST_STREAM at line rate -> GOAWAY(ENHANCE_YOUR_CALM)."""
        c = RawH2(self.port)
        sid = 1
        for _ in range(30):
            frames = []
            for _ in range(50):
                frames.append(HeadersFrame(sid, c.headers_block("/api/rr"),
                                           flags=["END_HEADERS", "END_STREAM"]))
                frames.append(RstStreamFrame(sid, error_code=8))
                sid += 2
            c.send(*frames)
            if c.send_failed:
                break
        c.read(until=lambda f: isinstance(f, GoAwayFrame), timeout=5)
        g = c.goaway()
        self.assertIsNotNone(g)
        self.assertEqual(g.error_code, 11)  # ENHANCE_YOUR_CALM
        c.close()
        self.assertLess(len(self.up.requests), 200)  # upstream work stayed bounded
        self.assert_serves()

    def test_continuation_flood_closed(self):
        """H2-3: endless CONTINUATIONs -> the connection is closed after the limit."""
        c = RawH2(self.port)
        c.send(HeadersFrame(1, c.headers_block(), flags=["END_STREAM"]))
        for _ in range(100):
            c.send(ContinuationFrame(1, data=b""))
            if c.send_failed:
                break
        c.read(timeout=3)
        self.assertTrue(c.closed)
        c.close()
        self.assert_serves()

    def test_malformed_requests_reset(self):
        """H2-10/H2-11: connection-specific fields, bad values, CL mismatch, host mismatch."""
        c = RawH2(self.port)
        c.send(HeadersFrame(1, c.headers_block(extra=[("transfer-encoding", "chunked")]),
                            flags=["END_HEADERS", "END_STREAM"]))
        c.send(HeadersFrame(3, c.headers_block(extra=[("x-a", " lead")]),
                            flags=["END_HEADERS", "END_STREAM"]))
        c.send(HeadersFrame(5, c.headers_block(extra=[("content-length", "3")]),
                            flags=["END_HEADERS"]),
               DataFrame(5, b"12345", flags=["END_STREAM"]))
        c.send(HeadersFrame(7, c.headers_block(extra=[("host", "evil.example")]),
                            flags=["END_HEADERS", "END_STREAM"]))
        dec = hpack.Decoder()
        seen = {}

        def done(f):
            if isinstance(f, RstStreamFrame):
                seen[f.stream_id] = "rst"
            elif isinstance(f, HeadersFrame):
                seen[f.stream_id] = dict(dec.decode(f.data)).get(":status")
            return len(seen) == 4

        c.read(until=done, timeout=5)
        self.assertEqual(seen.get(1), "rst")
        self.assertEqual(seen.get(3), "rst")
        self.assertEqual(seen.get(5), "rst")
        self.assertEqual(seen.get(7), "400")
        c.close()
        self.assert_serves()

    def test_refused_stream_over_limit(self):
        """H2-7: the 101st concurrent stream is refused (SETTINGS not yet acknowledged)."""
        c = RawH2(self.port, ack_settings=False)
        frames = [HeadersFrame(1 + 2 * i, c.headers_block(f"/api/slow/1500"),
                               flags=["END_HEADERS", "END_STREAM"]) for i in range(101)]
        c.send(*frames)
        f = c.read(until=lambda f: isinstance(f, RstStreamFrame), timeout=5)
        self.assertIsNotNone(f)
        self.assertEqual(f.stream_id, 201)
        self.assertEqual(f.error_code, 7)  # REFUSED_STREAM
        c.close()

    def test_stream_window_backpressure(self):
        """H2-6: a client that never opens its window gets no more than the window."""
        c = RawH2(self.port)
        c.send(SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 1000}))
        c.send(HeadersFrame(1, c.headers_block("/api/big/500000"),
                            flags=["END_HEADERS", "END_STREAM"]))
        c.read(timeout=2)
        got = sum(len(f.data) for f in c.frames if isinstance(f, DataFrame))
        self.assertLessEqual(got, 1000)
        self.assertGreater(got, 0)
        c.send(WindowUpdateFrame(0, 600000), WindowUpdateFrame(1, 600000))
        c.read(until=lambda f: isinstance(f, DataFrame) and "END_STREAM" in f.flags, timeout=10)
        got = sum(len(f.data) for f in c.frames if isinstance(f, DataFrame))
        self.assertEqual(got, 500000)
        c.close()

    def flood(self, make, setup=None):
        """Sends `make(i)` frames in batches of 20 until a GOAWAY comes back; returns
        (goaway, frames sent)."""
        c = RawH2(self.port)
        if setup is not None:
            setup(c)
        sent = 0
        while sent < 2000 and not c.send_failed and not c.closed and c.goaway() is None:
            c.send(*[make(sent + i) for i in range(20)])
            sent += 20
            c.read(until=lambda f: isinstance(f, GoAwayFrame), timeout=0.05)
        c.read(until=lambda f: isinstance(f, GoAwayFrame), timeout=5)
        g = c.goaway()
        c.close()
        return g, sent

    def test_zero_progress_floods(self):
        """H2-8 / issue 14: empty DATA, PRIORITY, unknown frame types and WINDOW_UPDATE of 1
        -> GOAWAY(ENHANCE_YOUR_CALM) after a bounded number of frames; others still served."""
        other = RawH2(self.port)  # a bystander connection opened before the floods

        def open_stream(c):  # a request whose body never comes: the empty DATA go there
            c.send(HeadersFrame(1, c.headers_block("/api/post"), flags=["END_HEADERS"]))

        floods = {
            "empty DATA": (lambda i: DataFrame(1, b""), open_stream),
            "padding-only DATA": (lambda i: DataFrame(1, b"", flags=["PADDED"], pad_length=7),
                                  open_stream),
            "PRIORITY": (lambda i: PriorityFrame(3 + 2 * (i % 50), depends_on=0,
                                                 stream_weight=16), None),
            "unknown type": (lambda i: ExtensionFrame(type=0x42, stream_id=0, flag_byte=0,
                                                      body=b""), None),
            "WINDOW_UPDATE 1": (lambda i: WindowUpdateFrame(0, 1), None),
        }
        for name, (make, setup) in floods.items():
            with self.subTest(flood=name):
                g, sent = self.flood(make, setup)
                self.assertIsNotNone(g, f"{name}: no GOAWAY after {sent} frames")
                self.assertEqual(g.error_code, 11)  # ENHANCE_YOUR_CALM
                # budget: 100 at once + 10/s; 2000 would mean no limit at all
                self.assertLess(sent, 1000, name)
                self.assert_serves()
        other.send(HeadersFrame(1, other.headers_block("/api/bystander"),
                                flags=["END_HEADERS", "END_STREAM"]))
        f = other.read(until=lambda f: isinstance(f, HeadersFrame) and f.stream_id == 1)
        self.assertIsNotNone(f)
        self.assertEqual(dict(hpack.Decoder().decode(f.data)).get(":status"), "200")
        self.assertIsNone(other.goaway())
        other.close()

    def test_zero_progress_legit_traffic(self):
        """Browser-like PRIORITY frames and the usual WINDOW_UPDATE pattern of a 2 MB
        download (stream + connection updates every 32 KiB received) do not trip it."""
        c = RawH2(self.port)
        c.send(*[PriorityFrame(sid, depends_on=0, stream_weight=200) for sid in (3, 5, 7, 9, 11)])
        total = 2000000
        c.send(HeadersFrame(13, c.headers_block(f"/api/big/{total}"),
                            flags=["END_HEADERS", "END_STREAM"]))
        got = unacked = 0
        done = False
        deadline = time.monotonic() + 60
        while not done and time.monotonic() < deadline and not c.closed:
            c.read(until=lambda f: isinstance(f, DataFrame), timeout=2)
            for f in c.frames:
                if isinstance(f, DataFrame):
                    got += len(f.data)
                    unacked += len(f.data)
                    done = done or "END_STREAM" in f.flags
            c.frames = [f for f in c.frames if not isinstance(f, DataFrame)]
            if unacked >= 32768 and not done:
                c.send(WindowUpdateFrame(13, unacked), WindowUpdateFrame(0, unacked))
                unacked = 0
        self.assertEqual(got, total)
        self.assertIsNone(c.goaway())
        c.close()

    def test_drain_two_phase_goaway(self):
        """RE-3: SIGTERM -> GOAWAY(2^31-1), then GOAWAY(last id); the in-flight stream ends."""
        c = RawH2(self.port)
        c.send(HeadersFrame(1, c.headers_block("/api/slow/800"),
                            flags=["END_HEADERS", "END_STREAM"]))
        time.sleep(0.2)
        self.p.proc.send_signal(15)
        c.read(until=lambda f: isinstance(f, DataFrame) and "END_STREAM" in f.flags, timeout=10)
        self.assertTrue(any(isinstance(f, DataFrame) and "END_STREAM" in f.flags and
                            f.stream_id == 1 for f in c.frames))
        # this client never answers the PING, so phase 2 comes from the ~1 s timer
        c.read(timeout=5)
        self.assertTrue(c.closed)
        goaways = [f for f in c.frames if isinstance(f, GoAwayFrame)]
        self.assertEqual(len(goaways), 2)
        self.assertEqual(goaways[0].last_stream_id, 2 ** 31 - 1)
        self.assertEqual(goaways[1].last_stream_id, 1)
        self.assertEqual(goaways[1].error_code, 0)
        c.close()
        self.assertEqual(self.p.proc.wait(20), 0)


if __name__ == "__main__":
    unittest.main()
