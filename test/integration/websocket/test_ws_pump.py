"""
The WebSocket relay's pump (handlers/ws_proxy.c, "The pump"): on plain TCP both ways the
data phase runs on the two sockets directly, lent by the client connection (pt_conn_lend)
and the upstream call (pt_upcall_tunnel_lend). The edges the hand-over creates, against a
raw upstream written here so that the timing of every byte is ours:

- bytes already read when the pump takes over: a client frame sent with the handshake (in
  the connection's input buffer) and an upstream frame sent with the 101 (in the call's);
- frames split across reads (the general path takes them) between whole ones (the pump
  relays them itself), in order;
- a close arriving behind queued data, both ways: the data written under backpressure
  (partial sends, the write event) comes first, then the close, and the answer goes back;
- an upstream that resets the connection: the client gets 1001;
- a graceful drain: the session goes on until the drain deadline, then both sockets close
  and the process exits cleanly (under ASan: nothing leaked, no socket touched after).
"""
import base64
import hashlib
import json
import os
import signal
import socket
import struct
import threading
import time
import unittest

from portico_test import PorticoTestCase, free_port, read_head
from ws_frames import Frames, close_frame, frame

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


class RawUpstream:
    """A WebSocket server on a raw socket: `script(sock, frames)` runs after the 101 (sent
    with `after_101` in the same write). Errors in the script are kept for the test."""

    def __init__(self, script, after_101=b"", rcvbuf=None):
        self.script, self.after_101 = script, after_101
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:
            self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        self.errors, self.results, self.conns = [], [], []
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        try:
            self.ls.settimeout(30)
            s, _ = self.ls.accept()
        except OSError:
            return
        self.conns.append(s)
        try:
            head, rest = read_head(s)
            key = [ln.split(":", 1)[1].strip() for ln in head.split("\r\n")
                   if ln.lower().startswith("sec-websocket-key:")][0]
            acc = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
            s.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % acc).encode()
                      + self.after_101)
            self.results.append(self.script(s, Frames(s, rest)))
        except Exception as e:  # reported by the test
            self.errors.append(repr(e))

    def wait(self, timeout=30):
        self.t.join(timeout)
        return not self.t.is_alive()

    def close(self):
        for s in self.conns:
            s.close()
        self.ls.close()
        self.t.join(5)


CONFIG = """
listeners:
  - address: 127.0.0.1:{port}
access_log: {{ path: access.log }}
timeouts: {{ drain: 2s }}
clusters:
  - name: up
    endpoints: [ "127.0.0.1:{up}" ]
routes:
  - name: ws
    match: {{ prefix: / }}
    proxy: {{ cluster: up, websocket: true, max_message: 32m, timeout: 5s }}
"""

BIG = 8 << 20  # bytes of data frames queued behind a close


class PumpTest(PorticoTestCase):

    def gateway(self, up):
        self.addCleanup(up.close)
        self.port = free_port()
        self.p = self.start(CONFIG.format(port=self.port, up=up.port), self.port)

    def connect(self, early=b"", rcvbuf=None):
        s = socket.socket()
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.connect(("127.0.0.1", self.port))
        self.addCleanup(s.close)
        s.sendall(("GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
                   "Upgrade: websocket\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                   "\r\n" % KEY).encode() + early)
        head, rest = read_head(s)
        self.assertIn(" 101 ", head.split("\r\n")[0])
        return s, Frames(s, rest)

    def log_line(self, timeout=10.0):
        path = os.path.join(self.p.dir, "access.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(path):
                with open(path) as f:
                    lines = [json.loads(x) for x in f if x.endswith("\n")]
                lines = [x for x in lines if "ws" in x]
                if lines:
                    return lines[0]
            time.sleep(0.05)
        self.fail("no access-log line for the session")

    def test_bytes_read_with_both_heads(self):
        # the upstream's first frame comes in the 101's write; the client's with its handshake
        def script(s, fr):
            got = fr.read()                      # the client's early frame, re-masked by Portico
            s.sendall(frame(1, b"echo:" + got[2], mask=False))
            code = fr.read()                     # the client's close, relayed
            s.sendall(close_frame(1000, mask=False))
            return got, code
        up = RawUpstream(script, after_101=frame(1, b"greeting", mask=False))
        self.gateway(up)
        s, fr = self.connect(early=frame(1, b"early"))
        self.assertEqual(fr.read()[:3], (True, 1, b"greeting"))
        self.assertEqual(fr.read()[:3], (True, 1, b"echo:early"))
        s.sendall(close_frame(1000))
        _, op, p, _ = fr.read()
        self.assertEqual((op, p[:2]), (8, struct.pack("!H", 1000)))
        self.assertTrue(up.wait(), "the upstream script hung")
        self.assertEqual(up.errors, [])
        got, close = up.results[0]
        self.assertEqual(got[:4], (True, 1, b"early", True))
        self.assertEqual(close[1], 8)
        line = self.log_line()
        self.assertEqual((line["ws"]["msgs_in"], line["ws"]["msgs_out"]), (1, 2))
        self.assertEqual((line["ws"]["close_in"], line["ws"]["close_out"]), (1000, 1000))

    def test_frames_split_across_reads_keep_their_order(self):
        msgs = [b"a" * 300, b"bb", b"c" * 70000, b"d"]

        def script(s, fr):
            seen = []
            while True:
                _, op, p, _ = fr.read()
                if op == 8:
                    s.sendall(close_frame(1000, mask=False))
                    return seen
                seen.append(p)
                f = frame(2, p, mask=False)
                s.sendall(f[:3])                 # the echo in two writes: a header split
                time.sleep(0.02)
                s.sendall(f[3:])
        up = RawUpstream(script)
        self.gateway(up)
        s, fr = self.connect()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i, m in enumerate(msgs):
            f = frame(2, m)
            if i % 2 == 0:                       # byte runs with pauses: partial frames
                for j in range(0, len(f), 97 if len(f) < 1000 else 16384):
                    s.sendall(f[j:j + (97 if len(f) < 1000 else 16384)])
                    time.sleep(0.005)
            else:
                s.sendall(f)                     # whole: the pump relays it itself
        for m in msgs:
            self.assertEqual(fr.read()[:3], (True, 2, m))
        s.sendall(close_frame(1000))
        self.assertEqual(fr.read()[1], 8)
        self.assertTrue(up.wait())
        self.assertEqual(up.errors, [])
        self.assertEqual(up.results[0], msgs)

    def test_upstream_close_behind_queued_data(self):
        # the client reads nothing for a while: Portico's queue for it fills (partial
        # writes, the write event) and the upstream leg stops; the close comes after all of it
        chunk = bytes(range(256)) * 256

        def script(s, fr):
            for _ in range(BIG // len(chunk)):
                s.sendall(frame(2, chunk, mask=False))
            s.sendall(close_frame(4001, b"bye", mask=False))
            return fr.read_data_until_close(timeout=30)
        up = RawUpstream(script)
        self.gateway(up)
        s, fr = self.connect(rcvbuf=32768)
        time.sleep(1.0)
        total, code, reason = fr.read_data_until_close(timeout=30)
        self.assertEqual((total, code, reason), (BIG, 4001, b"bye"))
        s.sendall(close_frame(4001, b"bye"))
        self.assertTrue(up.wait())
        self.assertEqual(up.errors, [])
        self.assertEqual(up.results[0], (0, 4001, b"bye"))
        line = self.log_line()
        self.assertEqual(line["ws"]["bytes_out"], BIG)
        self.assertEqual((line["ws"]["close_in"], line["ws"]["close_out"]), (4001, 4001))

    def test_client_close_behind_queued_data(self):
        # the upstream reads nothing for a while: the client's bytes wait in Portico (partial
        # writes to the upstream), the client stops being read; the close comes after them
        chunk = b"x" * 65536

        def script(s, fr):
            time.sleep(1.0)
            res = fr.read_data_until_close(timeout=30)
            s.sendall(close_frame(1000, mask=False))
            return res
        up = RawUpstream(script, rcvbuf=32768)
        self.gateway(up)
        s, fr = self.connect()
        sent = threading.Thread(target=lambda: (
            [s.sendall(frame(2, chunk)) for _ in range(BIG // len(chunk))],
            s.sendall(close_frame(1000, b"done"))), daemon=True)
        sent.start()
        _, op, p, _ = fr.read(timeout=30)
        self.assertEqual((op, p[:2]), (8, struct.pack("!H", 1000)))
        sent.join(10)
        self.assertTrue(up.wait())
        self.assertEqual(up.errors, [])
        self.assertEqual(up.results[0], (BIG, 1000, b"done"))
        line = self.log_line()
        self.assertEqual(line["ws"]["bytes_in"], BIG)
        self.assertEqual(line["ws"]["close_in"], 1000)

    def test_upstream_reset(self):
        def script(s, fr):
            fr.read()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()                            # RST
            return True
        up = RawUpstream(script)
        self.gateway(up)
        s, fr = self.connect()
        s.sendall(frame(1, b"hi"))
        _, op, p, _ = fr.read()
        self.assertEqual((op, struct.unpack("!H", p[:2])[0]), (8, 1001))
        self.assertIn(b"upstream", p[2:])
        s.sendall(close_frame(1001))
        line = self.log_line()
        self.assertEqual(line["ws"]["close_out"], 1001)

    def test_client_reset_while_upstream_floods(self):
        # writes to the client fail mid-flood: its leg ends as if it went away, the upstream
        # gets 1001 (or its connection closed), and the gateway carries on
        chunk = b"f" * 4096

        def script(s, fr):
            try:
                while True:
                    s.sendall(frame(2, chunk, mask=False))
            except OSError:
                return "closed"
            finally:
                s.close()
        for _ in range(3):
            up = RawUpstream(script)
            self.addCleanup(up.close)
            if not hasattr(self, "p"):
                self.gateway(up)
            else:  # the next session goes to this upstream
                self.p.stop()
                self._procs.remove(self.p)
                self.gateway(up)
            s, fr = self.connect(rcvbuf=8192)
            fr.read()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()                            # RST while Portico writes to it
            self.assertTrue(up.wait(), "the upstream kept flooding")
            self.assertEqual(up.errors, [])
            line = self.log_line()
            self.assertIn(line["ws"]["close_out"], (1001, 1006))

    def test_drain_runs_the_session_to_the_deadline(self):
        def script(s, fr):
            n = 0
            while True:
                try:
                    _, op, p, _ = fr.read(timeout=20)
                except EOFError:
                    return n                     # Portico closed the upstream connection
                if op == 8:
                    return -1
                n += 1
                s.sendall(frame(1, p, mask=False))
        up = RawUpstream(script)
        self.gateway(up)
        s, fr = self.connect()
        s.sendall(frame(1, b"before"))
        self.assertEqual(fr.read()[2], b"before")
        t0 = time.monotonic()
        self.p.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        s.sendall(frame(1, b"draining"))        # in flight: still relayed
        self.assertEqual(fr.read()[2], b"draining")
        with self.assertRaises(EOFError):       # the drain deadline (2 s) ends it
            while True:
                fr.read(timeout=10)
        self.assertGreater(time.monotonic() - t0, 1.5)
        self.assertEqual(self.p.proc.wait(15), 0)
        self.assertTrue(up.wait())
        self.assertEqual(up.results, [2])


if __name__ == "__main__":
    unittest.main()
