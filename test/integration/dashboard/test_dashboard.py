"""
The live dashboard's feed on the admin listener (issue 13, dash): GET /stats
(a JSON snapshot of counters and histogram buckets) and GET /stats/stream
(the same snapshot as a server-sent event every second): counters move under
load, per route and per cluster; a reload with a new route lists it at once
and keeps the removed route's series marked "configured": false; the gauges
of open connections and HTTP/2 streams; a stream ends when its client goes;
the ninth stream gets 503; the admin token guards the feed but not the page.
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time
import unittest

from portico_test import PorticoTestCase, curl, free_port, wait_port

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "websocket"))
from test_websocket import KEY, WsUpstream  # noqa: E402  (the npm `ws` upstream)

TOKEN = "dash-token-0123456789abcdef0123"


def config(port, admin, upstream, extra_route="", admin_extra=""):
    return f"""
listeners:
  - address: 127.0.0.1:{port}
admin: {{ address: 127.0.0.1:{admin}{admin_extra} }}
clusters:
  - name: web
    endpoints: [ "http://127.0.0.1:{upstream}" ]
routes:
{extra_route}  - name: local
    match: {{ path: /local }}
    respond: {{ body: "ok\\n" }}
  - name: api
    match: {{ prefix: / }}
    proxy: {{ cluster: web }}
"""


def stats(admin, token=None):
    args = [f"http://127.0.0.1:{admin}/stats"]
    if token:
        args = ["-H", f"Authorization: Bearer {token}"] + args
    st, h, body, _ = curl(*args)
    assert st == 200, (st, body)
    assert h["content-type"] == "application/json"
    return json.loads(body)


def by_name(items, name):
    for i in items:
        if i["name"] == name:
            return i
    return None


class StreamClient:
    """A raw HTTP/1.1 client of /stats/stream: the status line, then SSE events."""

    def __init__(self, admin, token=None):
        self.sock = socket.create_connection(("127.0.0.1", admin), timeout=5)
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.sock.sendall(f"GET /stats/stream HTTP/1.1\r\nHost: admin\r\n{auth}\r\n".encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                break
            self.buf += d
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ")[1])
        self.head = head.decode().lower()

    def event(self, timeout=5.0):
        """The next `snapshot` event's JSON (the chunked framing is skipped over)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            i = self.buf.find(b"event: snapshot\ndata: ")
            if i >= 0:
                j = self.buf.find(b"\n\n", i)
                if j > 0:
                    data = self.buf[i + len(b"event: snapshot\ndata: "):j]
                    self.buf = self.buf[j + 2:]
                    return json.loads(data)
            d = self.sock.recv(65536)
            if not d:
                raise EOFError("stream closed")
            self.buf += d
        raise TimeoutError("no event")

    def close(self):
        self.sock.close()


class DashboardFeedTest(PorticoTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.echo()
        self.port, self.admin = free_port(), free_port()

    def start(self, *args, **kw):
        p = super().start(*args, **kw)
        wait_port(self.admin, 10, p.proc)  # the admin listens after the data listeners
        return p

    def start_default(self, **kw):
        return self.start(config(self.port, self.admin, self.up.port, **kw), self.port, workers=2)

    def get(self, path, *args):
        return curl(*args, f"http://127.0.0.1:{self.port}{path}")

    def test_counters_move_per_route_and_cluster(self):
        self.start_default()
        before = stats(self.admin)
        self.assertEqual(before["version"], 1)
        self.assertEqual(len(before["buckets_us"]) + 1,
                         len(by_name(before["routes"], "api")["latency"]["buckets"]))
        for _ in range(6):
            self.assertEqual(self.get("/hello")[0], 200)
        for _ in range(3):
            self.assertEqual(self.get("/status/503")[0], 503)
            self.assertEqual(self.get("/status/404")[0], 404)
            self.assertEqual(self.get("/local")[0], 200)
        after = stats(self.admin)
        api0, api1 = by_name(before["routes"], "api"), by_name(after["routes"], "api")
        self.assertEqual(api1["requests"] - api0["requests"], 12)
        self.assertEqual(api1["classes"][1] - api0["classes"][1], 6)
        self.assertEqual(api1["classes"][3] - api0["classes"][3], 3)
        self.assertEqual(api1["classes"][4] - api0["classes"][4], 3)
        self.assertEqual(api1["codes"]["503"], 3)
        self.assertEqual(api1["latency"]["count"] - api0["latency"]["count"], 12)
        self.assertEqual(sum(api1["latency"]["buckets"]), api1["latency"]["count"])
        self.assertEqual(by_name(after["routes"], "local")["requests"], 3)
        web = by_name(after["clusters"], "web")
        self.assertTrue(web["configured"])
        self.assertEqual(web["requests"] - by_name(before["clusters"], "web")["requests"], 12)
        self.assertEqual(web["classes"][4], 3)
        self.assertEqual(sum(web["latency"]["buckets"]), web["latency"]["count"])
        self.assertEqual(web["endpoints"][0]["address"], f"http://127.0.0.1:{self.up.port}")
        self.assertTrue(web["endpoints"][0]["healthy"])
        self.assertFalse(web["endpoints"][0]["outlier"]["ejected"])
        self.assertGreater(after["connections"]["total"], before["connections"]["total"])
        self.assertGreater(after["time_ms"], 0)

    def test_reload_lists_the_new_route_and_keeps_the_old_series(self):
        p = self.start_default()
        self.assertEqual(self.get("/hello")[0], 200)
        s0 = stats(self.admin)
        self.assertIsNone(by_name(s0["routes"], "added"))
        gen = s0["generation"]
        # "api" is renamed "catchall": its series stays, not configured any more
        p.write_config(config(self.port, self.admin, self.up.port,
                              extra_route="  - name: added\n    match: { path: /added }\n"
                                          "    respond: { body: \"new\\n\" }\n")
                       .replace("name: api", "name: catchall"))
        p.reload()
        deadline = time.time() + 10
        s1 = s0
        while time.time() < deadline and s1["generation"] == gen:
            time.sleep(0.1)
            s1 = stats(self.admin)
        self.assertEqual(s1["generation"], gen + 1, p.output())
        added = by_name(s1["routes"], "added")
        self.assertTrue(added["configured"])
        self.assertEqual(added["requests"], 0)
        self.assertTrue(by_name(s1["routes"], "catchall")["configured"])
        old = by_name(s1["routes"], "api")
        self.assertFalse(old["configured"])
        self.assertEqual(old["requests"], 1)
        self.assertEqual(self.get("/added")[0], 200)
        self.assertEqual(by_name(stats(self.admin)["routes"], "added")["requests"], 1)
        self.assertEqual(s1["reloads"]["ok"], 1)

    def test_open_connection_and_http2_stream_gauges(self):
        self.start_default()
        self.assertEqual(stats(self.admin)["http2_streams"]["open"], 0)
        slow = subprocess.Popen(["curl", "-s", "-o", "/dev/null", "--http2-prior-knowledge",
                                 f"http://127.0.0.1:{self.port}/slow/3000"])
        self.addCleanup(slow.wait, 10)
        seen = None
        deadline = time.time() + 5
        while time.time() < deadline:
            s = stats(self.admin)
            if s["http2_streams"]["open"] == 1:
                seen = s
                break
            time.sleep(0.05)
        self.assertIsNotNone(seen, "the HTTP/2 stream never showed")
        self.assertGreaterEqual(seen["connections"]["open"], 1)
        self.assertEqual(slow.wait(10), 0)
        deadline = time.time() + 5
        while time.time() < deadline and stats(self.admin)["http2_streams"]["open"] != 0:
            time.sleep(0.05)
        s = stats(self.admin)
        self.assertEqual(s["http2_streams"]["open"], 0)
        self.assertEqual(s["connections"]["open"], 0)

    def test_websocket_and_tunnel_gauges(self):
        ws = WsUpstream()
        self.addCleanup(ws.stop)
        route = ("  - name: ws\n    match: { prefix: /ws/ }\n"
                 f"    proxy: {{ cluster: wsup, websocket: true }}\n"
                 "    filters: [ { rewrite: { prefix: /ws/, replace: / } } ]\n")
        cfg = config(self.port, self.admin, self.up.port, extra_route=route).replace(
            "clusters:\n", f"clusters:\n  - name: wsup\n    endpoints: [ \"127.0.0.1:{ws.port}\" ]\n")
        self.start(cfg, self.port)
        s0 = stats(self.admin)
        self.assertEqual(s0["websockets"]["open"], 0)
        c = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.addCleanup(c.close)
        c.sendall(f"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        self.assertTrue(c.recv(4096).startswith(b"HTTP/1.1 101"))
        s1 = stats(self.admin)
        self.assertEqual(s1["websockets"]["open"], 1)
        self.assertEqual(s1["websockets"]["total"], 1)
        self.assertEqual(s1["tunnels"]["open"], 1)
        self.assertEqual(s1["connections"]["open"], 1)
        c.close()
        deadline = time.time() + 5
        while time.time() < deadline and stats(self.admin)["websockets"]["open"] != 0:
            time.sleep(0.05)
        s2 = stats(self.admin)
        self.assertEqual(s2["websockets"]["open"], 0)
        self.assertEqual(s2["websockets"]["total"], 1)
        self.assertEqual(s2["tunnels"]["open"], 0)
        self.assertEqual(by_name(s2["clusters"], "wsup")["requests"], 1)
        self.assertEqual(by_name(s2["routes"], "ws")["requests"], 1)

    def test_stream_pushes_snapshots_and_ends_with_its_client(self):
        self.start_default()
        c = StreamClient(self.admin)
        self.assertEqual(c.status, 200)
        self.assertIn("content-type: text/event-stream", c.head)
        first = c.event()
        self.assertEqual(first["dashboard"]["streams"], 1)
        for _ in range(5):
            self.get("/hello")
        # the next snapshot (within about a second) shows the requests
        t0 = time.time()
        second = c.event(timeout=3)
        self.assertLess(time.time() - t0, 2.5)
        self.assertGreater(second["time_ms"], first["time_ms"])
        self.assertEqual(by_name(second["routes"], "api")["requests"] -
                         by_name(first["routes"], "api")["requests"], 5)
        c.close()
        deadline = time.time() + 5
        while time.time() < deadline and stats(self.admin)["dashboard"]["streams"] != 0:
            time.sleep(0.05)
        self.assertEqual(stats(self.admin)["dashboard"]["streams"], 0)

    def test_streams_are_bounded(self):
        self.start_default()
        clients = [StreamClient(self.admin) for _ in range(8)]
        for c in clients:
            self.addCleanup(c.close)
            self.assertEqual(c.status, 200)
        st, h, body, _ = curl(f"http://127.0.0.1:{self.admin}/stats/stream")
        self.assertEqual(st, 503)
        self.assertEqual(h.get("retry-after"), "5")
        self.assertEqual(json.loads(body)["error"]["code"], "UNAVAILABLE")
        # polling still works, and a closed stream makes room for a new one
        self.assertEqual(stats(self.admin)["dashboard"]["streams"], 8)
        clients[0].close()
        deadline = time.time() + 5
        while time.time() < deadline and stats(self.admin)["dashboard"]["streams"] != 7:
            time.sleep(0.05)
        again = StreamClient(self.admin)
        self.addCleanup(again.close)
        self.assertEqual(again.status, 200)
        again.event()
        # the workers and the admin stop cleanly with streams open (tearDown checks the exit)

    def test_token_guards_the_feed_not_the_page(self):
        self.start(config(self.port, self.admin, self.up.port, admin_extra=", token_file: admin.token"),
                   self.port, extra_files={"admin.token": TOKEN + "\n"})
        st, h, body, _ = curl(f"http://127.0.0.1:{self.admin}/dashboard")
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("text/html"))
        self.assertIn("default-src 'none'", h["content-security-policy"])
        self.assertIn(b"stats/stream", body)
        self.assertNotIn(b"http://", body.replace(b"http://www.w3.org/2000/svg", b""))
        for path in ("/stats", "/stats/stream"):
            st, _, body, _ = curl(f"http://127.0.0.1:{self.admin}{path}")
            self.assertEqual(st, 401, path)
        self.assertEqual(stats(self.admin, TOKEN)["version"], 1)
        c = StreamClient(self.admin, TOKEN)
        self.addCleanup(c.close)
        self.assertEqual(c.status, 200)
        self.assertEqual(c.event()["version"], 1)


if __name__ == "__main__":
    unittest.main()
