"""
WebSocket proxying (issue 8): `proxy: { websocket: true }` checks frames on both legs (http/ws.h)
and relays them frame by frame. Real clients and servers: the npm `ws` package (ws_client.js,
ws_upstream.js), raw sockets for protocol violations, python3-h2 for RFC 8441 extended CONNECT.

Covers: text/binary/UTF-8 echo, a 16 MiB message, fragmentation, pings both ways, close codes
both ways, subprotocols, Origin allow-lists, masking/UTF-8/oversize/reserved-bit/control-frame
violations (with the code the client gets and the 1001 the upstream gets), invalid handshakes
(400, 426 + Sec-WebSocket-Version, 403 without `websocket: true` and the upstream never
contacted), 200 concurrent sockets, abrupt disconnects mid-frame, slow readers both ways with
bounded memory, keepalive pings and the idle timeout, RFC 8441 over h2c, the access-log line
and the metrics.
"""
import json
import os
import socket
import ssl
import struct
import subprocess
import tempfile
import time
import unittest

import h2.config
import h2.connection
import h2.events
import h2.settings

from portico_test import PorticoTestCase, curl, free_port, make_cert
from portico_test import read_response_head as read_head
from ws_frames import Frames, frame

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


class WsUpstream:
    """The npm `ws` server of ws_upstream.js, in a child process."""

    def __init__(self, cert=None, key=None):
        env = dict(os.environ)
        self.scheme = "http"
        if cert is not None:  # wss:// (https) with this certificate
            env.update(WS_TLS_CERT=cert, WS_TLS_KEY=key, NODE_EXTRA_CA_CERTS=cert)
            self.scheme = "https"
        self.cafile = cert
        self.proc = subprocess.Popen(["node", os.path.join(HERE, "ws_upstream.js")],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("ws upstream did not start")
        self.port = json.loads(line)["port"]

    def stats(self):
        if self.scheme == "https":
            ctx = ssl.create_default_context(cafile=self.cafile)
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                    s.sendall(b"GET /stats HTTP/1.0\r\nHost: localhost\r\n\r\n")
                    buf = b""
                    while True:
                        d = s.recv(65536)
                        if not d:
                            break
                        buf += d
            head, body = buf.split(b"\r\n\r\n", 1)
            assert head.split(b" ")[1] == b"200", head
            return json.loads(body)
        st, _, body, _ = curl("http://127.0.0.1:%d/stats" % self.port)
        assert st == 200
        return json.loads(body)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


def config(port, up_port, admin):
    return f"""
listeners:
  - address: 127.0.0.1:{port}
    h2c: true
admin: {{ address: 127.0.0.1:{admin} }}
access_log: {{ path: access.log }}
timeouts: {{ drain: 2s }}
clusters:
  - name: up
    endpoints: [ "127.0.0.1:{up_port}" ]
routes:
  - name: ws
    match: {{ prefix: /ws/ }}
    proxy: {{ cluster: up, websocket: true, max_message: 32m, timeout: 5s }}
    filters:
      - rewrite: {{ prefix: /ws/, replace: / }}
      - headers: {{ request: {{ set: {{ x-filtered: "yes" }} }} }}
  - name: small
    match: {{ prefix: /small/ }}
    proxy: {{ cluster: up, websocket: true, max_message: 1k }}
    filters:
      - rewrite: {{ prefix: /small/, replace: / }}
  - name: origin
    match: {{ prefix: /origin/ }}
    proxy: {{ cluster: up, websocket: true, web_origins: [ "https://good.example" ] }}
    filters:
      - rewrite: {{ prefix: /origin/, replace: / }}
  - name: keepalive
    match: {{ prefix: /ka/ }}
    proxy: {{ cluster: up, websocket: true, ping_interval: 200ms, tunnel_idle: 1500ms,
              close_timeout: 500ms, timeout: 500ms }}
    filters:
      - rewrite: {{ prefix: /ka/, replace: / }}
  - name: nows
    match: {{ prefix: / }}
    proxy: {{ cluster: up }}
"""


def node(scenario, url, arg=None, timeout=90):
    args = ["node", os.path.join(HERE, "ws_client.js"), scenario, url]
    if arg is not None:
        args.append(str(arg))
    out = subprocess.run(args, capture_output=True, timeout=timeout)
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


# ---- raw frames --------------------------------------------------------------

class FrameReader(Frames):
    def read(self, timeout=10.0):
        """Returns (fin, opcode, payload) of the next frame from the server (unmasked)."""
        fin, op, payload, masked = super().read(timeout)
        assert not masked, "server frames are never masked"
        return fin, op, payload

    def read_close(self, timeout=10.0):
        """Skips data and pings; returns the close code (None: no code) of the close frame."""
        deadline = time.monotonic() + timeout
        while True:
            _, op, p = self.read(max(0.1, deadline - time.monotonic()))
            if op == 8:
                return struct.unpack("!H", p[:2])[0] if len(p) >= 2 else None


def handshake(path, key=KEY, version="13", method="GET", extra=""):
    k = "Sec-WebSocket-Key: %s\r\n" % key if key else ""
    v = "Sec-WebSocket-Version: %s\r\n" % version if version else ""
    return ("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            "%s%s%s\r\n" % (method, path, k, v, extra)).encode()


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class WebSocketTestBase(PorticoTestCase):

    def setUp(self):
        super().setUp()
        self.up = WsUpstream()
        self.addCleanup(self.up.stop)
        self.port, self.admin = free_port(), free_port()
        self.p = self.start(config(self.port, self.up.port, self.admin), self.port)
        self.url = "ws://127.0.0.1:%d" % self.port

    def open_raw(self, path, rcvbuf=None):
        s = socket.socket()
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.connect(("127.0.0.1", self.port))
        self.addCleanup(s.close)
        s.sendall(handshake(path))
        st, h, rest = read_head(s)
        self.assertEqual(st, 101, h)
        return s, FrameReader(s, rest)

    def wait_for(self, pred, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = pred()
            if v:
                return v
            time.sleep(0.05)
        return pred()

    def upstream_closes(self, n, timeout=10.0):
        return self.wait_for(lambda: len(self.up.stats()["closes"]) >= n and
                             self.up.stats()["closes"], timeout)

    def log_lines(self, pred, timeout=10.0):
        path = os.path.join(self.p.dir, "access.log")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(path):
                with open(path) as f:
                    got = [json.loads(line) for line in f if line.endswith("\n")]
                got = [line for line in got if pred(line)]
                if got:
                    return got
            time.sleep(0.05)
        self.fail("no access-log line matched")

    def metrics(self):
        st, _, body, _ = curl("http://127.0.0.1:%d/metrics" % self.admin)
        self.assertEqual(st, 200)
        return body.decode()


class ProxyTest(WebSocketTestBase):

    def test_echo_text_binary_utf8(self):
        r = node("echo", self.url + "/ws/echo")
        self.assertEqual(r.get("got"), [
            {"binary": False, "data": "hello"},
            {"binary": True, "data": "000102ff"},
            {"binary": False, "data": "grüße ☃ 𝄞"},
        ], r)
        self.assertEqual(r["close"], 1000)
        # the handshake went through the filter chain before the upgrade
        head = self.up.stats()["heads"][0]
        self.assertEqual(head["headers"].get("x-filtered"), "yes")
        self.assertNotIn("sec-websocket-extensions", head["headers"])
        line = self.log_lines(lambda l: l.get("route") == "ws" and "ws" in l)[0]
        self.assertEqual(line["status"], 101)
        self.assertEqual(line["ws"]["msgs_in"], 3)
        self.assertEqual(line["ws"]["msgs_out"], 3)
        self.assertEqual(line["ws"]["bytes_in"], 5 + 4 + len("grüße ☃ 𝄞".encode()))
        self.assertEqual(line["ws"]["close_in"], 1000)
        self.assertEqual(line["ws"]["close_out"], 1000)
        m = self.metrics()
        self.assertIn("portico_websocket_sessions_total 1", m)
        self.assertIn('portico_websocket_messages_total{direction="in"} 3', m)
        self.assertIn('portico_websocket_closes_total{code="1000"} 1', m)

    def test_16mib_message(self):
        r = node("big", self.url + "/ws/echo", 16 << 20)
        self.assertEqual(r.get("len"), 16 << 20, r)
        self.assertTrue(r["same"])

    def test_fragmented_message(self):
        r = node("fragments", self.url + "/ws/echo")
        self.assertEqual(r.get("data"), "one two three", r)
        self.assertFalse(r["binary"])

    def test_pings_both_ways(self):
        self.assertEqual(node("ping", self.url + "/ws/echo").get("pong"), "abc")
        r = node("uping", self.url + "/ws/ping")
        self.assertEqual(r.get("msg"), "pong:up-ping", r)
        self.assertEqual(r["pings"], 1)

    def test_close_codes_both_ways(self):
        r = node("close", self.url + "/ws/echo", 4001)
        self.assertEqual((r.get("close"), r.get("reason")), (4001, "client-bye"), r)
        closes = self.upstream_closes(1)
        self.assertEqual((closes[0]["code"], closes[0]["reason"]), (4001, "client-bye"))
        r = node("uclose", self.url + "/ws/close/4002")
        self.assertEqual((r.get("close"), r.get("reason")), (4002, "bye from upstream"), r)

    def test_subprotocol_passed_through(self):
        self.assertEqual(node("proto", self.url + "/ws/proto").get("protocol"), "a")
        head = self.up.stats()["heads"][0]
        offered = [p.strip() for p in head["headers"]["sec-websocket-protocol"].split(",")]
        self.assertEqual(offered, ["a", "b"])

    def test_origin_allow_list(self):
        self.assertTrue(node("origin", self.url + "/origin/echo", "https://good.example")
                        .get("opened"))
        r = node("origin", self.url + "/origin/echo", "https://evil.example")
        self.assertEqual(r, {"opened": False, "status": 403})
        self.assertEqual(self.up.stats()["upgrades"], 1)

    def test_200_concurrent_sockets(self):
        r = node("many", self.url + "/ws/echo", 200, timeout=120)
        self.assertEqual(r.get("ok"), 200, r)
        self.assertEqual(r["errors"], [])

    def test_invalid_handshakes(self):
        def ask(data):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            try:
                s.sendall(data)
                return read_head(s)
            finally:
                s.close()
        st, h, body = ask(handshake("/ws/echo", key=None))
        self.assertEqual(st, 400)
        st, h, body = ask(handshake("/ws/echo", key="short"))
        self.assertEqual(st, 400)
        st, h, body = ask(handshake("/ws/echo", version="12"))
        self.assertEqual(st, 426)
        self.assertEqual(h.get("sec-websocket-version"), "13")
        st, h, body = ask(handshake("/ws/echo", version=None))
        self.assertEqual(st, 426)
        st, h, body = ask(handshake("/ws/echo", method="POST"))
        self.assertEqual(st, 400)
        st, h, body = ask(handshake("/ws/echo").replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        self.assertEqual(st, 400)
        # without websocket: true: refused, never forwarded
        st, h, body = ask(handshake("/echo"))
        self.assertEqual(st, 403)
        self.assertEqual(self.up.stats()["upgrades"], 0)

    def violation(self, path, frames, code):
        s, r = self.open_raw(path)
        for f in frames:
            s.sendall(f)
        self.assertEqual(r.read_close(), code)
        # Portico ends the connection after its close frame
        self.assertRaises((EOFError, ConnectionResetError, socket.timeout),
                          lambda: [r.read(5) for _ in range(100)])

    def test_protocol_violations(self):
        self.violation("/ws/echo", [frame(1, b"unmasked", mask=False)], 1002)
        self.violation("/ws/echo", [frame(1, b"\xc3\x28 bad utf-8")], 1007)
        self.violation("/ws/echo", [frame(1, b"\xe2\x82", fin=False), frame(0, b"\xff")], 1007)
        self.violation("/ws/echo", [frame(1, b"rsv", rsv=4)], 1002)
        self.violation("/ws/echo", [frame(3, b"opcode 3")], 1002)
        self.violation("/ws/echo", [frame(9, b"x" * 126)], 1002)
        self.violation("/ws/echo", [frame(9, b"x", fin=False)], 1002)
        self.violation("/ws/echo", [frame(0, b"no message open")], 1002)
        self.violation("/ws/echo", [frame(1, b"a", fin=False), frame(1, b"b")], 1002)
        self.violation("/ws/echo", [frame(8, b"\x03\xe8"[:1])], 1002)  # 1-byte close payload
        # over max_message (1k): refused on the header, before the payload came
        self.violation("/small/echo", [frame(2, b"x" * 2000)[:4 + 4 + 10]], 1009)
        self.violation("/small/echo", [frame(2, b"x" * 600, fin=False), frame(0, b"y" * 600)], 1009)
        # the upstream leg was closed with 1001 and a reason, except after the two UTF-8 cases
        # where half a frame had gone upstream already: no close frame can follow, its
        # connection is closed (1006)
        closes = self.upstream_closes(12)
        codes = sorted(c["code"] for c in closes)
        self.assertEqual(codes, [1001] * 10 + [1006] * 2, closes)
        self.assertTrue(all(c["reason"].startswith("client ") for c in closes
                            if c["code"] == 1001), closes)
        # a text frame split inside a UTF-8 sequence is fine
        s, r = self.open_raw("/ws/echo")
        s.sendall(frame(1, "☃".encode()[:2], fin=False) + frame(0, "☃".encode()[2:]))
        self.assertEqual(r.read(), (True, 1, "☃".encode()))

    def test_abrupt_disconnect_mid_frame(self):
        for i in range(5):
            s, r = self.open_raw("/ws/echo")
            s.sendall(frame(2, b"z" * 1000)[:200])
            s.close()
        # no close frame can follow half a frame: the upstream connection is closed (1006)
        closes = self.upstream_closes(5)
        self.assertEqual({c["code"] for c in closes}, {1006})
        self.assertEqual(node("echo", self.url + "/ws/echo").get("close"), 1000)
        line = self.log_lines(lambda l: l.get("route") == "ws" and "ws" in l)[0]
        self.assertEqual(line["ws"]["close_out"], 1006)

    def test_client_that_never_reads(self):
        # the upstream floods 256 MiB; the client reads nothing: Portico stops reading the upstream
        base = rss_kb(self.p.proc.pid)
        s, r = self.open_raw("/ws/flood/%d" % (256 << 20), rcvbuf=65536)
        time.sleep(3)
        flushed = self.up.stats()["flushed"]
        self.assertLess(flushed, 32 << 20, "the upstream was not stopped")
        self.assertLess(rss_kb(self.p.proc.pid) - base, 32 * 1024, "Portico buffered the flood")
        # and it still flows when the client reads
        got = 0
        while got < (8 << 20):
            fin, op, p = r.read()
            got += len(p)
        self.assertGreater(self.up.stats()["flushed"], flushed)

    def test_upstream_that_never_reads(self):
        base = rss_kb(self.p.proc.pid)
        s, r = self.open_raw("/ws/noread")
        s.setblocking(False)
        sent, msg, off = 0, frame(2, b"q" * 65536), 0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                n = s.send(msg[off:])  # partial sends continue the same frame
            except BlockingIOError:
                time.sleep(0.01)
                continue
            sent += n
            off = (off + n) % len(msg)
        self.assertLess(sent, 48 << 20, "Portico kept reading the client")
        self.assertLess(rss_kb(self.p.proc.pid) - base, 32 * 1024)


class KeepaliveTest(WebSocketTestBase):

    def test_keepalive_pings_then_idle_close(self):
        s, r = self.open_raw("/ka/echo")
        t0 = time.monotonic()
        fin, op, p = r.read(timeout=5)
        self.assertEqual(op, 9, "a keepalive ping from Portico")
        s.sendall(frame(10, p))  # our pong: consumed by Portico, not relayed
        # no data either way: 1001 after tunnel_idle (1.5 s), pings meanwhile
        self.assertEqual(r.read_close(timeout=10), 1001)
        self.assertGreater(time.monotonic() - t0, 1.2)
        s.sendall(frame(8, struct.pack("!H", 1001)))
        line = self.log_lines(lambda l: l.get("route") == "keepalive" and "ws" in l)[0]
        self.assertEqual(line["ws"]["close_out"], 1001)
        closes = self.upstream_closes(1)
        self.assertEqual(closes[0]["code"], 1001)

    def test_data_keeps_the_session(self):
        # 2.4 s of traffic: longer than tunnel_idle (1.5 s) and the route timeout (500 ms),
        # which covers the handshake only
        s, r = self.open_raw("/ka/echo")
        for i in range(8):
            s.sendall(frame(1, b"m%d" % i))
            while True:
                fin, op, p = r.read()
                if op == 1:
                    break
            self.assertEqual(p, b"m%d" % i)
            time.sleep(0.3)


class H2Test(WebSocketTestBase):
    """RFC 8441 over h2c (prior knowledge), raw frames in DATA."""

    def client(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.addCleanup(s.close)
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                 header_encoding="utf-8"))
        c.initiate_connection()
        s.sendall(c.data_to_send())
        return s, c

    def pump(self, s, c, until, state, timeout=15.0):
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                d = s.recv(65536)
            except socket.timeout:
                break
            if not d:
                break
            for ev in c.receive_data(d):
                if isinstance(ev, h2.events.ResponseReceived):
                    state["headers"] = dict(ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    state["data"] = state.get("data", b"") + ev.data
                    c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    state["ended"] = True
                elif isinstance(ev, h2.events.RemoteSettingsChanged):
                    state["settings"] = True
            out = c.data_to_send()
            if out:
                s.sendall(out)
        return until()

    def test_extended_connect_echo_and_close(self):
        s, c = self.client()
        st = {}
        self.assertTrue(self.pump(s, c, lambda: "settings" in st, st))
        self.assertEqual(c.remote_settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL], 1)
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"),
                             (":scheme", "http"), (":path", "/ws/echo"),
                             (":authority", "127.0.0.1"), ("sec-websocket-version", "13")])
        s.sendall(c.data_to_send())
        self.assertTrue(self.pump(s, c, lambda: "headers" in st, st))
        self.assertEqual(st["headers"][":status"], "200")
        c.send_data(sid, frame(1, b"over h2") + frame(2, bytes(range(200))))
        s.sendall(c.data_to_send())
        want = frame(1, b"over h2", mask=False) + frame(2, bytes(range(200)), mask=False)
        self.assertTrue(self.pump(s, c, lambda: len(st.get("data", b"")) >= len(want), st))
        self.assertEqual(st["data"], want)
        # a violation over h2: unmasked -> close 1002, then the stream ends
        st["data"] = b""
        c.send_data(sid, frame(1, b"x", mask=False))
        s.sendall(c.data_to_send())
        self.assertTrue(self.pump(s, c, lambda: st.get("ended"), st))
        self.assertEqual(st["data"][:4], b"\x88" + bytes([len(st["data"]) - 2]) + b"\x03\xea")

    def test_extended_connect_refused_without_websocket_true(self):
        s, c = self.client()
        st = {}
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"),
                             (":scheme", "http"), (":path", "/echo"),
                             (":authority", "127.0.0.1"), ("sec-websocket-version", "13")])
        s.sendall(c.data_to_send())
        self.assertTrue(self.pump(s, c, lambda: "headers" in st, st))
        self.assertEqual(st["headers"][":status"], "403")
        self.assertEqual(self.up.stats()["upgrades"], 0)


class TlsTest(PorticoTestCase):
    """The same proxying over TLS: RFC 8441 in h2 (ALPN) and wss:// over HTTP/1.1."""

    def setUp(self):
        super().setUp()
        self.up = WsUpstream()
        self.addCleanup(self.up.stop)
        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        self.crt, key = make_cert(d.name)
        self.port = free_port()
        self.start(f"""
listeners:
  - address: 127.0.0.1:{self.port}
    tls: {{ cert: {self.crt}, key: {key} }}
timeouts: {{ drain: 2s }}
clusters:
  - name: up
    endpoints: [ "127.0.0.1:{self.up.port}" ]
routes:
  - match: {{ prefix: / }}
    proxy: {{ cluster: up, websocket: true }}
""", self.port)

    def test_extended_connect_over_h2_tls(self):
        ctx = ssl.create_default_context(cafile=self.crt)
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        self.addCleanup(s.close)
        self.assertEqual(s.selected_alpn_protocol(), "h2")
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                 header_encoding="utf-8"))
        c.initiate_connection()
        s.sendall(c.data_to_send())
        st = {}
        pump = H2Test.pump.__get__(self)
        self.assertTrue(pump(s, c, lambda: "settings" in st, st))
        self.assertEqual(c.remote_settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL], 1)
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"),
                             (":scheme", "https"), (":path", "/echo"),
                             (":authority", "localhost"), ("sec-websocket-version", "13")])
        s.sendall(c.data_to_send())
        self.assertTrue(pump(s, c, lambda: "headers" in st, st))
        c.send_data(sid, frame(1, b"over h2 and TLS"))
        s.sendall(c.data_to_send())
        want = frame(1, b"over h2 and TLS", mask=False)
        self.assertTrue(pump(s, c, lambda: len(st.get("data", b"")) >= len(want), st))
        self.assertEqual(st["headers"][":status"], "200")
        self.assertEqual(st["data"], want)

    def test_wss_client(self):
        env = dict(os.environ, NODE_EXTRA_CA_CERTS=self.crt)
        out = subprocess.run(["node", os.path.join(HERE, "ws_client.js"), "echo",
                              "wss://localhost:%d/echo" % self.port],
                             capture_output=True, timeout=60, env=env)
        r = json.loads(out.stdout.decode().strip().splitlines()[-1])
        self.assertEqual(len(r.get("got", [])), 3, r)
        self.assertEqual(r["close"], 1000)


class WssUpstreamTest(WebSocketTestBase):
    """`websocket: true` to an https:// endpoint: the upstream leg is wss://, the cluster's
    ca_file verifies it (by IP SAN and by name + SNI), frames are checked as over ws://."""

    def setUp(self):
        PorticoTestCase.setUp(self)
        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        crt, key = make_cert(d.name)
        other, _ = make_cert(d.name, "other")  # a CA that did not sign the upstream's certificate
        self.up = WsUpstream(crt, key)
        self.addCleanup(self.up.stop)
        self.port, self.admin = free_port(), free_port()
        up = self.up.port
        self.p = self.start(f"""
listeners:
  - address: 127.0.0.1:{self.port}
admin: {{ address: 127.0.0.1:{self.admin} }}
access_log: {{ path: access.log }}
timeouts: {{ drain: 2s }}
clusters:
  - name: up
    endpoints: [ "https://127.0.0.1:{up}" ]
    ca_file: {crt}
  - name: named
    endpoints: [ "https://localhost:{up}" ]
    ca_file: {crt}
  - name: untrusted
    endpoints: [ "https://127.0.0.1:{up}" ]
    ca_file: {other}
  - name: noverify
    endpoints: [ "https://127.0.0.1:{up}" ]
    tls_verify: false
routes:
  - name: ws
    match: {{ prefix: /ws/ }}
    proxy: {{ cluster: up, websocket: true, max_message: 4m }}
    filters:
      - rewrite: {{ prefix: /ws/, replace: / }}
  - name: named
    match: {{ prefix: /named/ }}
    proxy: {{ cluster: named, websocket: true }}
    filters:
      - rewrite: {{ prefix: /named/, replace: / }}
  - name: untrusted
    match: {{ prefix: /untrusted/ }}
    proxy: {{ cluster: untrusted, websocket: true }}
    filters:
      - rewrite: {{ prefix: /untrusted/, replace: / }}
  - name: noverify
    match: {{ prefix: /noverify/ }}
    proxy: {{ cluster: noverify, websocket: true }}
    filters:
      - rewrite: {{ prefix: /noverify/, replace: / }}
""", self.port)
        self.url = "ws://127.0.0.1:%d" % self.port

    def test_echo_text_binary_over_wss(self):
        for prefix in ("/ws/", "/named/", "/noverify/"):
            r = node("echo", self.url + prefix + "echo")
            self.assertEqual(r.get("got"), [
                {"binary": False, "data": "hello"},
                {"binary": True, "data": "000102ff"},
                {"binary": False, "data": "grüße ☃ 𝄞"},
            ], (prefix, r))
            self.assertEqual(r["close"], 1000)
        self.assertEqual(self.up.stats()["upgrades"], 3)
        line = self.log_lines(lambda l: l.get("route") == "ws" and "ws" in l)[0]
        self.assertEqual(line["status"], 101)
        self.assertEqual((line["ws"]["msgs_in"], line["ws"]["msgs_out"]), (3, 3))

    def test_1mib_message_over_wss(self):
        r = node("big", self.url + "/ws/echo", 1 << 20)
        self.assertEqual(r.get("len"), 1 << 20, r)
        self.assertTrue(r["same"])

    def test_close_codes_both_ways_over_wss(self):
        r = node("close", self.url + "/ws/echo", 4001)
        self.assertEqual((r.get("close"), r.get("reason")), (4001, "client-bye"), r)
        closes = self.upstream_closes(1)
        self.assertEqual((closes[0]["code"], closes[0]["reason"]), (4001, "client-bye"))
        r = node("uclose", self.url + "/ws/close/4002")
        self.assertEqual((r.get("close"), r.get("reason")), (4002, "bye from upstream"), r)

    def test_certificate_verification_failure_is_502(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.addCleanup(s.close)
        s.sendall(handshake("/untrusted/echo"))
        st, h, rest = read_head(s)
        self.assertEqual(st, 502, h)
        self.assertNotIn("upgrade", h)
        n = int(h.get("content-length", "0"))
        while len(rest) < n:
            d = s.recv(65536)
            if not d:
                break
            rest += d
        body = json.loads(rest[:n])
        self.assertEqual(body["error"]["code"], "UPSTREAM", body)
        # the reason is logged (clients get the generic message, as for any upstream failure)
        line = self.log_lines(lambda l: l.get("route") == "untrusted")[0]
        self.assertEqual(line["status"], 502)
        self.assertEqual(line.get("reason"), "upstream TLS certificate verification failed", line)
        self.assertNotIn("ws", line)
        # the TLS handshake was refused: no HTTP request reached the upstream
        self.assertEqual(self.up.stats()["upgrades"], 0)


if __name__ == "__main__":
    unittest.main()
