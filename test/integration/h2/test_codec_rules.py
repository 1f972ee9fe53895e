"""
Issue 14: HTTP/1.1 and HTTP/2 must give a request the same answer. One table of
methods and authorities, sent over both codecs to the real binary (raw HTTP/1.1
bytes; raw HTTP/2 frames), expecting the same status on both; an authority with
userinfo never reaches the upstream (nor its X-Forwarded-Host).
"""
import socket
import unittest

import hpack
from hyperframe.frame import HeadersFrame, RstStreamFrame

import test_h2
from portico_test import PorticoTestCase, free_port

# (method, authority, expected status on both codecs)
CASES = [
    ("GET", "example.com", 200),
    ("POST", "example.com:8080", 200),
    ("PROPFIND", "[::1]:443", 200),
    ("M-SEARCH", "a-b.example", 200),
    ("PURGE", "127.0.0.1", 200),
    ("FOO", "example.com", 501),
    ("get", "example.com", 501),
    ("Post", "example.com", 501),
    ("BREW", "example.com", 501),
    ("GET", "user@example.com", 400),
    ("GET", "user:pw@example.com:80", 400),
    ("GET", "example.com:80x", 400),
    ("GET", "exa%6dple.com", 400),
    ("GET", "a,b.example", 400),
]


def config(port, echo_port):
    return f"""
listeners:
  - address: 127.0.0.1:{port}
clusters:
  - name: web
    protocol: http
    endpoints: [ "127.0.0.1:{echo_port}" ]
routes:
  - name: echo
    match: {{ prefix: /echo/ }}
    proxy: {{ cluster: web }}
  - name: local
    match: {{ prefix: / }}
    respond: {{ status: 200, body: "ok" }}
"""


class CodecRulesTest(PorticoTestCase):

    def setUp(self):
        super().setUp()
        self.port = free_port()
        self.up = self.echo()
        self.p = self.start(config(self.port, self.up.port), self.port)

    def h1(self, method, authority, path="/r"):
        req = f"{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(req.encode())
            out = b""
            while b"\r\n" not in out:
                chunk = s.recv(4096)
                if not chunk:
                    break
                out += chunk
        return int(out.split(b" ", 2)[1])

    def h2(self, c, sid, method, authority, path="/r"):
        """Status of one request on the raw HTTP/2 connection `c`; 'rst' for a reset."""
        block = c.enc.encode([(":method", method), (":scheme", "http"),
                              (":authority", authority), (":path", path)])
        c.send(HeadersFrame(sid, block, flags=["END_HEADERS", "END_STREAM"]))
        f = c.read(until=lambda f: f.stream_id == sid and
                   isinstance(f, (HeadersFrame, RstStreamFrame)), timeout=5)
        self.assertIsNotNone(f, f"no answer for {method} {authority}")
        if isinstance(f, RstStreamFrame):
            return "rst"
        return int(dict(self.dec.decode(f.data))[":status"])

    def test_same_answer_on_both_codecs(self):
        self.dec = hpack.Decoder()
        c = test_h2.RawH2(self.port)
        sid = 1
        for method, authority, want in CASES:
            with self.subTest(method=method, authority=authority):
                self.assertEqual(self.h1(method, authority), want, "HTTP/1.1")
                self.assertEqual(self.h2(c, sid, method, authority), want, "HTTP/2")
            sid += 2
        c.close()

    def test_userinfo_never_forwarded(self):
        """An HTTP/2 :authority with userinfo is refused before the upstream, whose
        X-Forwarded-Host only ever shows a valid authority."""
        self.dec = hpack.Decoder()
        c = test_h2.RawH2(self.port)
        self.assertEqual(self.h2(c, 1, "GET", "user:pw@evil.example", "/echo/a"), 400)
        self.assertEqual(self.h2(c, 3, "GET", "good.example:8443", "/echo/b"), 200)
        c.close()
        self.assertEqual(self.h1("GET", "user@evil.example", "/echo/c"), 400)
        paths = [r["path"] for r in self.up.requests]
        self.assertEqual(paths, ["/echo/b"])
        self.assertEqual(self.up.requests[0]["headers"].get("x-forwarded-host"), "good.example:8443")


if __name__ == "__main__":
    unittest.main()
