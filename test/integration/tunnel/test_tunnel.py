"""
Tunnels through the proxy handler (issue 7 item 3): an HTTP/1.1 Upgrade answered 101 and an
HTTP/2 extended CONNECT (RFC 8441) answered 200 become raw byte pipes to an upstream that
answered 101. Real clients (raw sockets, python3-h2), a raw upstream, the real binary.

Covers: bytes both ways, large transfers through small socket buffers (backpressure both
ways), an upstream refusal relayed as an ordinary response (later bytes parsed as HTTP), a
route without permission refused with 403 and the upstream never contacted, a bad
Sec-WebSocket-Accept refused with 502, the idle timeout, client and upstream closes, the
access log line and the tunnel metrics.

The routes say `upgrade: [ websocket ]`: a raw tunnel that relays a WebSocket's bytes unchecked
(these tests send raw bytes). `websocket: true` checks frames on both legs and is tested in
websocket/test_websocket.py.
"""
import base64
import hashlib
import json
import os
import socket
import ssl
import tempfile
import threading
import time
import unittest

import h2.config
import h2.connection
import h2.events
import h2.settings

from portico_test import BIN, PorticoTestCase, curl, free_port, make_cert
from portico_test import read_response_head as read_head

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


class TunnelUpstream:
    """A raw HTTP/1.1 upstream. By path:
      /echo...      101, then echoes every byte; closes after the client's half-close
      /hello        101, sends b"hello\\n" at once, then echoes
      /bye          101, sends b"bye" and closes
      /flood/N      101, sends N bytes as fast as the socket takes them (counts them)
      /noread       101, never reads (client->upstream backpressure)
      /badaccept    101 with a wrong Sec-WebSocket-Accept
      /otherproto   101 switching to another protocol than asked
      anything else 200 with a small body (an upstream that does not switch)
    Every request head is recorded. With `tls` (an ssl.SSLContext) it is an https:// upstream."""

    def __init__(self, tls=None):
        self.tls = tls
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.heads = []
        self.sent = 0
        self.received = 0
        self.echo_done = threading.Event()  # an echo session saw the client's half-close
        self.lock = threading.Lock()
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            c.settimeout(30)
            if self.tls is not None:
                c = self.tls.wrap_socket(c, server_side=True)
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            head, rest = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            hdrs = {}
            for l in lines[1:]:
                k, v = l.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
            with self.lock:
                self.heads.append({"method": method, "path": path, "headers": hdrs})
            up = hdrs.get("upgrade", "")
            key = hdrs.get("sec-websocket-key")
            accept = ("Sec-WebSocket-Accept: %s\r\n" % ws_accept(key)) if key else ""
            if path == "/badaccept":
                accept = "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n"
            if path == "/otherproto":
                up = "something-else"
            if not up or path == "/refuse":
                body = b"no tunnel here"
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Refused: yes\r\n\r\n"
                          % len(body) + body)
                c.close()
                return
            c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\n"
                       "Connection: Upgrade\r\n%sX-Up: 1\r\n\r\n" % (up, accept)).encode())
            if path == "/hello":
                c.sendall(b"hello\n")
            if path == "/bye":
                c.sendall(b"bye")
                c.close()
                return
            if path.startswith("/flood/"):
                c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
                n = int(path.split("/")[2])
                chunk = b"f" * 65536
                while n > 0:
                    k = min(n, len(chunk))
                    c.sendall(chunk[:k])
                    with self.lock:
                        self.sent += k
                    n -= k
                c.close()
                return
            if path == "/noread":
                time.sleep(30)
                c.close()
                return
            if rest:
                c.sendall(rest)
                with self.lock:
                    self.received += len(rest)
            while True:
                d = c.recv(65536)
                if not d:
                    break
                with self.lock:
                    self.received += len(d)
                c.sendall(d)
            self.echo_done.set()
            c.close()
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def stop(self):
        self.stopping = True
        self.sock.close()


def config(port, up_port, admin, idle="", top=""):
    return f"""
listeners:
  - address: 127.0.0.1:{port}
admin: {{ address: 127.0.0.1:{admin} }}
access_log: {{ path: access.log }}
timeouts: {{ drain: 2s }}
{top}
clusters:
  - name: up
    endpoints: [ "127.0.0.1:{up_port}" ]
  - name: up_h2
    endpoints: [ "127.0.0.1:{up_port}" ]
    http2: true
routes:
  - name: h2up
    match: {{ prefix: /h2up/ }}
    proxy: {{ cluster: up_h2, upgrade: [ websocket ] }}
  - name: ws
    match: {{ prefix: /ws/ }}
    proxy: {{ cluster: up, upgrade: [ websocket ]{idle} }}
    filters:
      - rewrite: {{ prefix: /ws/, replace: / }}
  - name: other
    match: {{ prefix: /proto/ }}
    proxy: {{ cluster: up, upgrade: [ raw-test ] }}
    filters:
      - rewrite: {{ prefix: /proto/, replace: / }}
  - name: local
    match: {{ prefix: /local }}
    respond: {{ status: 200, body: "local" }}
  - name: plain
    match: {{ prefix: / }}
    proxy: {{ cluster: up }}
"""


def upgrade_head(path, proto="websocket", key="dGhlIHNhbXBsZSBub25jZQ==", extra=""):
    k = "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n" % key if key else ""
    return ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: %s\r\n%s%s\r\n"
            % (path, proto, k, extra)).encode()


def read_exact(s, n, have=b"", timeout=20.0):
    deadline = time.monotonic() + timeout
    buf = bytearray(have)
    while len(buf) < n and time.monotonic() < deadline:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            d = s.recv(min(1 << 20, n - len(buf)))
        except socket.timeout:
            break
        if not d:
            break
        buf += d
    return bytes(buf)


def read_to_eof(s, timeout=10.0):
    deadline = time.monotonic() + timeout
    out = b""
    while time.monotonic() < deadline:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            d = s.recv(65536)
        except socket.timeout:
            return out, False
        except ConnectionResetError:
            return out, True
        if not d:
            return out, True
        out += d
    return out, False


class TunnelTestBase(PorticoTestCase):
    idle = ""

    def setUp(self):
        super().setUp()
        self.up = TunnelUpstream()
        self.port, self.admin = free_port(), free_port()
        self.p = self.start(config(self.port, self.up.port, self.admin, self.idle), self.port)

    def tearDown(self):
        super().tearDown()
        self.up.stop()

    def connect(self, rcvbuf=None):
        s = socket.socket()
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.connect(("127.0.0.1", self.port))
        return s

    def log_lines(self, pred, timeout=10.0):
        """Access-log lines (parsed) matching pred, waiting for at least one."""
        path = os.path.join(self.p.dir, "access.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(path):
                with open(path) as f:  # complete lines only: a flush may be under way
                    lines = [l for l in f if l.endswith("\n")]
                got = [json.loads(l) for l in lines]
                got = [l for l in got if pred(l)]
                if got:
                    return got
            time.sleep(0.05)
        self.fail("no access-log line matched")

    def metric(self, name):
        st, _, body, _ = curl(f"http://127.0.0.1:{self.admin}/metrics")
        self.assertEqual(st, 200)
        for line in body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None


class TlsUpstreamTunnelTest(PorticoTestCase):
    """A raw `upgrade:` tunnel to an https:// endpoint (wss://): TLS in the native client."""

    def setUp(self):
        super().setUp()
        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        crt, key = make_cert(d.name)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        self.up = TunnelUpstream(tls=ctx)
        self.addCleanup(self.up.stop)
        self.port = free_port()
        self.start(f"""
listeners:
  - address: 127.0.0.1:{self.port}
timeouts: {{ drain: 2s }}
clusters:
  - name: up
    endpoints: [ "https://127.0.0.1:{self.up.port}" ]
    ca_file: {crt}
routes:
  - match: {{ prefix: / }}
    proxy: {{ cluster: up, upgrade: [ raw-test ] }}
""", self.port)

    def test_echo_and_flood_over_tls(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.addCleanup(s.close)
        s.sendall(upgrade_head("/echo", proto="raw-test", key=None) + b"early|")
        st, h, rest = read_head(s)
        self.assertEqual(st, 101, h)
        self.assertEqual(h.get("upgrade"), "raw-test")
        payload = os.urandom(3 << 20)  # many TLS records, through the socket buffers
        threading.Thread(target=s.sendall, args=(payload,), daemon=True).start()
        want = b"early|" + payload
        self.assertEqual(read_exact(s, len(want), rest, timeout=60), want)
        s.shutdown(socket.SHUT_WR)  # passed on as close_notify + FIN: the upstream ends
        tail, closed = read_to_eof(s)
        self.assertEqual((tail, closed), (b"", True))
        self.assertTrue(self.up.echo_done.wait(10))
        self.assertEqual(self.up.heads[0]["headers"]["upgrade"], "raw-test")

        s2 = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.addCleanup(s2.close)
        s2.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        n = 8 << 20
        s2.sendall(upgrade_head("/flood/%d" % n, proto="raw-test", key=None))
        st, h, rest = read_head(s2)
        self.assertEqual(st, 101, h)
        got = read_exact(s2, n, rest, timeout=60)
        self.assertEqual(len(got), n)
        self.assertEqual(got, b"f" * n)


class H1TunnelTest(TunnelTestBase):

    def test_echo_both_ways_and_client_half_close(self):
        s = self.connect()
        # the first tunnel bytes travel with the head: they belong to the tunnel
        s.sendall(upgrade_head("/ws/echo") + b"early bytes|")
        st, h, rest = read_head(s)
        self.assertEqual(st, 101)
        self.assertEqual(h.get("upgrade"), "websocket")
        self.assertEqual(h.get("connection", "").lower(), "upgrade")
        self.assertEqual(h.get("sec-websocket-accept"), ws_accept("dGhlIHNhbXBsZSBub25jZQ=="))
        self.assertEqual(h.get("x-up"), "1")
        self.assertNotIn("content-length", h)
        self.assertNotIn("transfer-encoding", h)
        s.sendall(b"GET / HTTP/1.1\r\n\r\n")  # looks like HTTP: must be relayed as bytes
        want = b"early bytes|GET / HTTP/1.1\r\n\r\n"
        self.assertEqual(read_exact(s, len(want), rest), want)
        s.shutdown(socket.SHUT_WR)  # half-close: the upstream sees EOF and closes
        tail, closed = read_to_eof(s)
        self.assertEqual(tail, b"")
        self.assertTrue(closed)
        s.close()
        self.assertTrue(self.up.echo_done.wait(10))
        head = self.up.heads[0]
        self.assertEqual(head["method"], "GET")
        self.assertEqual(head["path"], "/echo")
        self.assertEqual(head["headers"]["upgrade"], "websocket")
        self.assertEqual(head["headers"]["connection"].lower(), "upgrade")
        self.assertEqual(head["headers"]["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==")
        line = self.log_lines(lambda l: l.get("route") == "ws")[0]
        self.assertEqual(line["status"], 101)
        self.assertEqual(line["tunnel"], "websocket")
        self.assertEqual(line["bytes_in"], len(want))
        self.assertEqual(line["bytes_out"], len(want))
        self.assertNotIn("error", line)
        self.assertEqual(self.metric("portico_tunnels_total"), 1)
        self.assertEqual(self.metric("portico_tunnels_active"), 0)

    def test_large_echo_backpressure_both_ways(self):
        total = 24 << 20
        s = self.connect(rcvbuf=65536)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        s.sendall(upgrade_head("/ws/echo"))
        st, _, rest = read_head(s)
        self.assertEqual(st, 101)
        block = bytes(range(256)) * 256  # 64 KiB, a pattern that shows reordering

        def writer():
            for _ in range(total // len(block)):
                s.sendall(block)
            s.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=writer, daemon=True)
        t.start()
        got = read_exact(s, total, rest, timeout=120)
        t.join(30)
        self.assertEqual(len(got), total)
        self.assertEqual(got, block * (total // len(block)))
        _, closed = read_to_eof(s)
        self.assertTrue(closed)
        s.close()
        line = self.log_lines(lambda l: l.get("route") == "ws")[0]
        self.assertEqual(line["bytes_in"], total)
        self.assertEqual(line["bytes_out"], total)

    def test_slow_reader_stops_the_upstream(self):
        total = 96 << 20
        s = self.connect(rcvbuf=65536)
        s.sendall(upgrade_head("/ws/flood/%d" % total))
        st, _, rest = read_head(s)
        self.assertEqual(st, 101)
        # The client reads nothing: Portico stops reading the upstream, whose sends block.
        time.sleep(2.0)
        with self.up.lock:
            sent = self.up.sent
        self.assertLess(sent, 48 << 20, "upstream was not held back by a client that does not read")
        got = read_exact(s, total, rest, timeout=120)
        self.assertEqual(len(got), total)
        _, closed = read_to_eof(s)  # the upstream closed: the tunnel ends, the connection closes
        self.assertTrue(closed)
        s.close()
        line = self.log_lines(lambda l: l.get("route") == "ws")[0]
        self.assertEqual(line["bytes_out"], total)

    def test_upstream_that_does_not_read_stops_the_client(self):
        s = self.connect()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        s.sendall(upgrade_head("/ws/noread"))
        st, _, _ = read_head(s)
        self.assertEqual(st, 101)
        s.settimeout(2.0)
        pushed = 0
        block = b"x" * 65536
        try:
            while pushed < (256 << 20):
                pushed += s.send(block)
        except socket.timeout:
            pass
        # kernel buffers both sides plus Portico's bounded queue: far below what was offered
        self.assertLess(pushed, 128 << 20)
        s.close()

    def test_upstream_greeting_and_upstream_close(self):
        s = self.connect()
        s.sendall(upgrade_head("/ws/hello"))
        st, _, rest = read_head(s)
        self.assertEqual(st, 101)
        self.assertEqual(read_exact(s, 6, rest), b"hello\n")
        s.close()

        s = self.connect()
        s.sendall(upgrade_head("/ws/bye"))
        st, _, rest = read_head(s)
        self.assertEqual(st, 101)
        out, closed = read_to_eof(s)
        self.assertEqual(rest + out, b"bye")
        self.assertTrue(closed, "the upstream's close must end the client connection")
        s.close()
        line = self.log_lines(lambda l: l.get("route") == "ws" and l.get("bytes_out") == 3)[0]
        self.assertEqual(line["status"], 101)
        self.assertNotIn("error", line)

    def test_client_close_ends_the_upstream(self):
        s = self.connect()
        s.sendall(upgrade_head("/ws/echo"))
        st, _, rest = read_head(s)
        self.assertEqual(st, 101)
        s.sendall(b"ping")
        self.assertEqual(read_exact(s, 4, rest), b"ping")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # abortive: RST
        self.assertTrue(self.up.echo_done.wait(10), "the upstream connection was not closed")
        line = self.log_lines(lambda l: l.get("route") == "ws")[0]
        self.assertEqual(line["status"], 101)
        self.assertEqual(line["bytes_in"], 4)
        deadline = time.monotonic() + 10
        while self.metric("portico_tunnels_active") != 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.metric("portico_tunnels_active"), 0)

    def test_refusal_is_relayed_and_later_bytes_are_http(self):
        s = self.connect()
        # the upstream answers 200: no tunnel; the bytes after the head are the next request
        s.sendall(upgrade_head("/ws/refuse") + b"GET /ws/x HTTP/1.1\r\nHost: a\r\n\r\n")
        st, h, rest = read_head(s)
        self.assertEqual(st, 200)
        self.assertEqual(h.get("x-refused"), "yes")
        self.assertNotIn("upgrade", h)
        # the second response may arrive in the same read as the first: parse the stream
        data = bytearray(rest)
        deadline = time.monotonic() + 10
        while data.count(b"HTTP/1.1 200") < 1 and time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                d = s.recv(65536)
            except socket.timeout:
                break
            if not d:
                break
            data += d
        self.assertTrue(bytes(data).startswith(b"no tunnel here"))
        self.assertIn(b"HTTP/1.1 200", bytes(data[14:]),
                      "the pipelined bytes were not served as a request")
        s.close()
        self.assertEqual(len(self.up.heads), 2)
        self.assertNotIn("upgrade", self.up.heads[1]["headers"])
        line = self.log_lines(lambda l: l.get("path") == "/refuse")[0]
        self.assertNotIn("tunnel", line)

    def test_route_without_permission_refused_upstream_never_contacted(self):
        s = self.connect()
        s.sendall(upgrade_head("/plain"))
        st, h, rest = read_head(s)
        self.assertEqual(st, 403)
        body = read_exact(s, int(h["content-length"]), rest)
        self.assertEqual(json.loads(body)["error"]["code"], "FORBIDDEN")
        s.close()
        # another protocol on the websocket route is refused too
        s = self.connect()
        s.sendall(upgrade_head("/ws/echo", proto="raw-test", key=None))
        self.assertEqual(read_head(s)[0], 403)
        s.close()
        # ... and allowed where `upgrade:` lists it
        s = self.connect()
        s.sendall(upgrade_head("/proto/echo", proto="raw-test", key=None) + b"abc")
        st, h, rest = read_head(s)
        self.assertEqual(st, 101)
        self.assertEqual(h.get("upgrade"), "raw-test")
        self.assertEqual(read_exact(s, 3, rest), b"abc")
        s.close()
        self.assertEqual([x["path"] for x in self.up.heads], ["/echo"])
        # a list of offers: the first one the route allows is the one asked upstream
        s = self.connect()
        s.sendall(upgrade_head("/ws/echo", proto="foo/1, websocket, raw-test"))
        st, h, _ = read_head(s)
        self.assertEqual(st, 101)
        self.assertEqual(h.get("upgrade"), "websocket")
        s.close()
        self.assertEqual(self.up.heads[-1]["headers"]["upgrade"], "websocket")

    def test_bad_handshakes(self):
        s = self.connect()
        s.sendall(upgrade_head("/ws/badaccept"))
        self.assertEqual(read_head(s)[0], 502)
        s.close()
        s = self.connect()
        s.sendall(upgrade_head("/ws/otherproto"))
        self.assertEqual(read_head(s)[0], 502)
        s.close()
        s = self.connect()
        s.sendall(upgrade_head("/ws/echo", key=None))  # websocket without a key: 400
        self.assertEqual(read_head(s)[0], 400)
        s.close()
        s = self.connect()
        s.sendall(b"POST /ws/echo HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 3\r\n\r\nabc")
        self.assertEqual(read_head(s)[0], 400)  # an upgrade with a body
        s.close()
        self.assertEqual(len(self.up.heads), 2)  # only the two that were forwarded

    def test_handler_without_tunnels_serves_plainly(self):
        # RFC 9110 §7.8: a server may ignore an Upgrade offer; `respond` cannot tunnel
        s = self.connect()
        s.sendall(upgrade_head("/local") + b"GET /local HTTP/1.1\r\nHost: a\r\n\r\n")
        st, h, rest = read_head(s)
        self.assertEqual(st, 200)
        self.assertNotIn("upgrade", h)
        self.assertEqual(read_exact(s, 5, rest)[:5], b"local")
        s.close()
        self.assertEqual(self.up.heads, [])

    def test_cluster_that_cannot_tunnel_is_501(self):
        # only the native HTTP/1.1 client hands a connection over; HTTP/2 (and libcurl) clusters
        # answer 501 before any connection is made
        s = self.connect()
        s.sendall(upgrade_head("/h2up/echo"))
        self.assertEqual(read_head(s)[0], 501)
        s.close()
        self.assertEqual(self.up.heads, [])

    def test_pipelined_upgrade_refused(self):
        s = self.connect()
        s.sendall(b"GET /ws/x HTTP/1.1\r\nHost: a\r\n\r\n" + upgrade_head("/ws/echo"))
        st, h, rest = read_head(s)
        self.assertEqual(st, 200)
        data, _ = read_to_eof(s)
        self.assertIn(b" 400 ", rest + data)
        s.close()
        self.assertNotIn("/echo", [x["path"] for x in self.up.heads])


class FilteredTunnelTest(TunnelTestBase):
    """Body filters on a tunnel route see the handshake, never the session's bytes."""

    def setUp(self):
        PorticoTestCase.setUp(self)
        lib = os.path.join(os.path.dirname(os.path.dirname(BIN)), "lib")
        self.up = TunnelUpstream()
        self.port, self.admin = free_port(), free_port()
        cfg = config(self.port, self.up.port, self.admin,
                     top=f'plugins: [ {{ path: "{lib}/pt_test_gzip.so" }}, '
                         f'{{ path: "{lib}/pt_test_rewrite.so" }} ]')
        cfg = cfg.replace("  - name: plain\n", """  - name: wsf
    match: { prefix: /wsf/ }
    proxy: { cluster: up, upgrade: [ websocket ] }
    filters:
      - rewrite: { prefix: /wsf/, replace: / }
      - test_gzip: {}
      - test_rewrite: { from: cat, to: tiger }
  - name: plain
""")
        self.p = self.start(cfg, self.port)

    def test_session_bytes_bypass_body_filters(self):
        s = self.connect()
        s.sendall(upgrade_head("/wsf/echo", extra="Accept-Encoding: gzip\r\n"))
        st, h, rest = read_head(s)
        self.assertEqual(st, 101)
        self.assertNotIn("content-encoding", h)   # the gzip filter left the handshake alone
        msg = b"cat " * 5000
        s.sendall(msg)
        # neither rewritten (request-body filter) nor compressed (response-body filter)
        self.assertEqual(read_exact(s, len(msg), rest), msg)
        s.close()


class IdleTunnelTest(TunnelTestBase):
    # generous against a busy machine: a 2 s stall of this test would be needed to flake
    idle = ", tunnel_idle: 2s"

    def test_idle_timeout_ends_session(self):
        s = self.connect()
        s.sendall(upgrade_head("/ws/echo"))
        st, _, rest = read_head(s)
        self.assertEqual(st, 101)
        # traffic keeps it open past the idle time ...
        for _ in range(30):
            s.sendall(b"k")
            rest = read_exact(s, 1, rest)
            self.assertEqual(rest, b"k")
            rest = b""
            time.sleep(0.1)
        # ... silence ends it
        _, closed = read_to_eof(s, timeout=15)
        self.assertTrue(closed)
        s.close()
        self.assertTrue(self.up.echo_done.wait(10))
        line = self.log_lines(lambda l: l.get("route") == "ws")[0]
        self.assertEqual(line["status"], 101)
        self.assertEqual(line["bytes_in"], 30)
        self.assertEqual(line["reason"], "tunnel idle timeout")


class H2Client:
    """python3-h2 over cleartext prior knowledge."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                     header_encoding="utf-8"))
        self.c.initiate_connection()
        self.flush()
        self.events = []
        self.data = {}
        self.ended = set()
        self.reset = set()
        self.headers = {}

    def flush(self):
        out = self.c.data_to_send()
        if out:
            self.s.sendall(out)

    def pump(self, until, timeout=20.0):
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            self.s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                break
            if not d:
                break
            for ev in self.c.receive_data(d):
                self.events.append(ev)
                if isinstance(ev, h2.events.ResponseReceived):
                    self.headers[ev.stream_id] = dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    self.data[ev.stream_id] = self.data.get(ev.stream_id, b"") + ev.data
                    self.c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    self.ended.add(ev.stream_id)
                elif isinstance(ev, h2.events.StreamReset):
                    self.reset.add(ev.stream_id)
            self.flush()
        return until()

    def connect(self, path, protocol="websocket", extra=()):
        sid = self.c.get_next_available_stream_id()
        self.c.send_headers(sid, [(":method", "CONNECT"), (":protocol", protocol),
                                  (":scheme", "http"), (":path", path),
                                  (":authority", "127.0.0.1"),
                                  ("sec-websocket-version", "13")] + list(extra))
        self.flush()
        return sid


class H2TunnelTest(TunnelTestBase):

    def h2(self):
        c = H2Client(self.port)
        self.assertTrue(c.pump(lambda: any(isinstance(e, h2.events.RemoteSettingsChanged)
                                           for e in c.events)))
        self.assertEqual(c.c.remote_settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL], 1)
        return c

    def test_extended_connect_echo(self):
        c = self.h2()
        sid = c.connect("/ws/echo")
        self.assertTrue(c.pump(lambda: sid in c.headers))
        h = c.headers[sid]
        self.assertEqual(h[":status"], "200")
        self.assertNotIn("sec-websocket-accept", h)  # RFC 8441 §5
        self.assertNotIn("upgrade", h)
        self.assertEqual(h.get("x-up"), "1")
        payload = bytes(range(256)) * 4096  # 1 MiB: many windows' worth
        sent = 0
        while sent < len(payload):
            room = min(c.c.local_flow_control_window(sid), c.c.max_outbound_frame_size,
                       len(payload) - sent)
            if room > 0:
                c.c.send_data(sid, payload[sent:sent + room])
                c.flush()
                sent += room
            else:
                c.pump(lambda: c.c.local_flow_control_window(sid) > 0, timeout=10)
        self.assertTrue(c.pump(lambda: len(c.data.get(sid, b"")) >= len(payload), timeout=60))
        self.assertEqual(c.data[sid], payload)
        c.c.end_stream(sid)  # half-close -> upstream EOF -> upstream closes -> END_STREAM
        c.flush()
        self.assertTrue(c.pump(lambda: sid in c.ended or sid in c.reset))
        self.assertIn(sid, c.ended)
        # the translation an HTTP/1.1 upstream saw: GET + Upgrade + a key we made
        head = self.up.heads[0]
        self.assertEqual(head["method"], "GET")
        self.assertEqual(head["path"], "/echo")
        self.assertEqual(head["headers"]["upgrade"], "websocket")
        self.assertEqual(len(base64.b64decode(head["headers"]["sec-websocket-key"])), 16)
        self.assertEqual(head["headers"]["sec-websocket-version"], "13")
        line = self.log_lines(lambda l: l.get("route") == "ws")[0]
        self.assertEqual(line["status"], 200)
        self.assertEqual(line["protocol"], "HTTP/2")
        self.assertEqual(line["tunnel"], "websocket")
        self.assertEqual(line["bytes_in"], len(payload))
        self.assertEqual(line["bytes_out"], len(payload))
        # the connection still serves ordinary requests
        sid2 = c.c.get_next_available_stream_id()
        c.c.send_headers(sid2, [(":method", "GET"), (":scheme", "http"), (":path", "/x"),
                                (":authority", "127.0.0.1")], end_stream=True)
        c.flush()
        self.assertTrue(c.pump(lambda: sid2 in c.ended))
        self.assertEqual(c.headers[sid2][":status"], "200")
        c.s.close()

    def test_extended_connect_upstream_close_and_refusals(self):
        c = self.h2()
        sid = c.connect("/ws/bye")
        self.assertTrue(c.pump(lambda: sid in c.ended or sid in c.reset))
        self.assertEqual(c.headers[sid][":status"], "200")
        self.assertEqual(c.data.get(sid), b"bye")
        self.assertIn(sid, c.ended)
        # refused by the upstream: relayed as an ordinary response
        sid = c.connect("/ws/refuse")
        self.assertTrue(c.pump(lambda: sid in c.ended or sid in c.reset))
        self.assertEqual(c.headers[sid][":status"], "200")
        self.assertEqual(c.data.get(sid), b"no tunnel here")
        # no permission on the route: 403, never forwarded
        n = len(self.up.heads)
        sid = c.connect("/plain")
        self.assertTrue(c.pump(lambda: sid in c.ended or sid in c.reset))
        self.assertEqual(c.headers[sid][":status"], "403")
        self.assertEqual(len(self.up.heads), n)
        c.s.close()

    def test_extended_connect_elsewhere_refused(self):
        c = self.h2()
        # a handler that cannot tunnel must not answer 2xx (that would open a tunnel): 501
        sid = c.connect("/local")
        self.assertTrue(c.pump(lambda: sid in c.ended or sid in c.reset))
        self.assertEqual(c.headers[sid][":status"], "501")
        self.assertEqual(self.up.heads, [])
        c.s.close()

    def test_client_reset_ends_the_upstream(self):
        c = self.h2()
        sid = c.connect("/ws/echo")
        self.assertTrue(c.pump(lambda: sid in c.headers))
        c.c.send_data(sid, b"abc")
        c.flush()
        self.assertTrue(c.pump(lambda: c.data.get(sid) == b"abc"))
        c.c.reset_stream(sid)
        c.flush()
        self.assertTrue(self.up.echo_done.wait(10))
        line = self.log_lines(lambda l: l.get("route") == "ws")[0]
        self.assertEqual(line["bytes_in"], 3)
        c.s.close()


if __name__ == "__main__":
    unittest.main()
