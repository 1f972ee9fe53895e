"""
HTTP/1.1 parsing, smuggling and connection handling against the real binary
(SECURITY-CASES.md §2.1 H1-1..H1-13, H1-17, and §2.9 slow clients).

Portico proxies to the in-process echo upstream, which records every request
it receives: a rejected vector must reach it zero times (H1-17), a valid one
exactly once with regenerated framing. "Reject" means: the status, then
`connection: close`, then the connection closed by the server.
"""
import socket
import time
import unittest

from portico_test import PorticoTestCase, free_port


def config(port, echo_port):
    return f"""
listeners:
  - address: 127.0.0.1:{port}
limits: {{ max_body: 4096 }}
timeouts: {{ header: 1s, body: 1s, keepalive: 1s }}
clusters:
  - name: web
    protocol: http
    endpoints: [ "127.0.0.1:{echo_port}" ]
routes:
  - name: api
    match: {{ prefix: /api/ }}
    proxy: {{ cluster: web }}
"""


class Conn:
    """A raw client connection that parses the responses it reads."""

    def __init__(self, port, timeout=5.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.closed = False

    def send(self, data):
        self.s.sendall(data)

    def _fill(self, deadline):
        if self.closed:
            return False
        self.s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = self.s.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        return True

    def response(self, timeout=5.0, head_request=False):
        """Reads one response: (status, headers dict lowercase -> last value, body) or None."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline):
                return None
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        body = b""
        if head_request or status in (100, 204, 304):
            return status, headers, body
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                if not self._fill(deadline):
                    raise AssertionError("truncated body")
            body, self.buf = self.buf[:n], self.buf[n:]
        elif headers.get("transfer-encoding") == "chunked":
            while True:
                while b"\r\n" not in self.buf:
                    if not self._fill(deadline):
                        raise AssertionError("truncated chunk size")
                line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    if not self._fill(deadline):
                        raise AssertionError("truncated chunk")
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                if size == 0:
                    break
        else:
            while self._fill(deadline):
                pass
            body, self.buf = self.buf, b""
        return status, headers, body

    def wait_closed(self, timeout=3.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.closed:
            self._fill(deadline)
        return self.closed

    def close(self):
        self.s.close()


# Each vector -> the status Portico must answer with (and then close).
VECTORS = [
    # H1-1 CL + TE, either order
    ("cl_te", b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"0\r\n\r\nGET /api/smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("te_cl", b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
              b"0\r\n\r\n", 400),
    # H1-2 Content-Length variants
    ("cl_twice_equal", b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400),
    ("cl_twice_diff", b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    ("cl_list", b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 400),
    ("cl_plus", b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400),
    ("cl_hex", b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello", 400),
    ("cl_junk", b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length:  5x\r\n\r\nhello", 400),
    ("cl_20_digits", b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 00000000000000000005\r\n\r\nhello", 400),
    # H1-3 TE obfuscation
    ("te_space_colon", b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    ("te_ctl_before_value", b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n", 400),
    ("te_ctl_after_value", b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\x01\r\n\r\n0\r\n\r\n", 400),
    ("te_ctl_after_name", b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\x7f: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te_nbsp", b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \xa0chunked\r\n\r\n0\r\n\r\n", 400),
    ("te_after_bare_lf", b"POST /api/x HTTP/1.1\r\nHost: a\r\nX: x\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    # H1-4 TE lists
    ("te_identity_chunked", b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", 501),
    ("te_chunked_identity", b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400),
    ("te_gzip", b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    ("te_chunked_twice", b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
    ("te_two_lines", b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"0\r\n\r\n", 400),
    ("te_xchunked", b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 501),
    # H1-5 / H1-6
    ("host_space_colon", b"GET /api/x HTTP/1.1\r\nHost : a\r\n\r\n", 400),
    ("obs_fold", b"GET /api/x HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n", 400),
    ("obs_fold_te", b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400),
    # H1-7 line endings, bytes in values
    ("bare_lf_head", b"GET /api/x HTTP/1.1\nHost: a\n\n", 400),
    ("bare_cr_value", b"GET /api/x HTTP/1.1\r\nHost: a\r\nX-A: a\rb\r\n\r\n", 400),
    ("nul_value", b"GET /api/x HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", 400),
    # H1-8 Host
    ("no_host", b"GET /api/x HTTP/1.1\r\n\r\n", 400),
    ("two_hosts", b"GET /api/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    ("bad_host", b"GET /api/x HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    ("absolute_form_mismatch", b"GET http://a/api/x HTTP/1.1\r\nHost: b\r\n\r\n", 400),
    # H1-9 versions
    ("http09", b"GET /api/x\r\n\r\n", 400),
    ("http_1_32", b"GET /api/x HTTP/1.32\r\nHost: a\r\n\r\n", 400),
    ("http_2_0", b"GET /api/x HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    # H1-11
    ("high_byte_name", b"GET /api/x HTTP/1.1\r\nHost: a\r\nX\x80Y: 1\r\n\r\n", 400),
    ("lf_in_request_line", b"GET /api/x\ny HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("underscore_name", b"GET /api/x HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 1\r\n\r\n", 400),
    # H1-13 expectations
    ("expect_unknown", b"POST /api/x HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\nhi", 417),
    ("expect_over_limit", b"POST /api/x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n", 413),
    # limits
    ("long_request_line", b"GET /api/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
    ("too_many_headers", b"GET /api/x HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(120))
                         + b"\r\n", 431),
    ("body_over_limit", b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n", 413),
]

# Bodies that are malformed after a valid head: the request was dispatched, so
# the upstream may have seen its start, but never a complete request.
BODY_VECTORS = [
    ("chunk_plus", b"+5\r\nhello\r\n0\r\n\r\n"),
    ("chunk_0x", b"0x5\r\nhello\r\n0\r\n\r\n"),
    ("chunk_underscore", b"0_2e\r\n\r\n"),
    ("chunk_17_digits", b"00000000000000005\r\nhello\r\n0\r\n\r\n"),
    ("chunk_cr_in_ext", b"5;a\rb\r\nhello\r\n0\r\n\r\n"),
    ("chunk_ext_too_big", b"5;" + b"e" * 5000 + b"\r\nhello\r\n0\r\n\r\n"),
    ("chunk_no_crlf", b"5\r\nhelloXX0\r\n\r\n"),
    ("trailer_cl", b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n"),
    ("trailer_te", b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"),
]


class H1Test(PorticoTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.echo()
        self.port = free_port()
        self.p = self.start(config(self.port, self.up.port), self.port)

    def conn(self):
        c = Conn(self.port)
        self.addCleanup(c.close)
        return c

    def assert_still_serving(self):
        c = self.conn()
        c.send(b"GET /api/alive HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.response()
        self.assertIsNotNone(r)
        self.assertEqual(r[0], 200)

    def test_h1_vectors_rejected_and_never_forwarded(self):
        for name, data, status in VECTORS:
            with self.subTest(name):
                before = len(self.up.requests)
                c = self.conn()
                c.send(data)
                r = c.response()
                self.assertIsNotNone(r, "no response")
                self.assertEqual(r[0], status, r)
                self.assertEqual(r[1].get("connection"), "close")
                self.assertIn(b'"error"', r[2])
                self.assertTrue(c.wait_closed(), "connection left open")
                self.assertEqual(len(self.up.requests), before, "forwarded upstream")
        self.assert_still_serving()

    def test_h1_10_malformed_chunked_bodies(self):
        for name, body in BODY_VECTORS:
            with self.subTest(name):
                before = len(self.up.requests)
                c = self.conn()
                c.send(b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
                r = c.response()
                if r is not None:  # answered unless the upstream response had already started
                    self.assertIn(r[0], (400, 413))
                self.assertTrue(c.wait_closed(), "connection left open")
                time.sleep(0.05)
                self.assertEqual(len(self.up.requests), before, "a complete request reached the upstream")
        self.assert_still_serving()

    def test_h1_17_valid_request_forwarded_once_with_our_framing(self):
        c = self.conn()
        c.send(b"POST /api/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
        r = c.response()
        self.assertEqual(r[0], 200)
        self.assertEqual(len(self.up.requests), 1)
        seen = self.up.requests[0]
        self.assertEqual(seen["body"], b"hello world")
        self.assertNotIn("x-trailer", seen["headers"])
        # keep-alive: a second request on the same connection
        c.send(b"GET /api/second HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.response()
        self.assertEqual(r[0], 200)
        self.assertEqual(len(self.up.requests), 2)
        self.assertFalse(c.closed)

    def test_h1_12_pipeline_in_order(self):
        reqs = []
        for i in range(1000):
            path = b"/api/slow/2" if i % 50 == 7 else b"/local/%d" % i
            reqs.append(b"GET %s HTTP/1.1\r\nHost: a\r\nX-Request-Id: req-%04d\r\n\r\n" % (path, i))
        c = self.conn()
        c.send(b"".join(reqs))
        for i in range(1000):
            r = c.response(timeout=20)
            self.assertIsNotNone(r, "response %d missing" % i)
            self.assertEqual(r[1].get("x-request-id"), "req-%04d" % i)
            self.assertEqual(r[0], 200 if i % 50 == 7 else 404)
        self.assertFalse(c.closed)

    def test_h1_12_bad_request_mid_pipeline(self):
        c = self.conn()
        c.send(b"GET /api/1 HTTP/1.1\r\nHost: a\r\n\r\n"
               b"GET /api/2 HTTP/1.1\r\nHost : a\r\n\r\n"
               b"GET /api/3 HTTP/1.1\r\nHost: a\r\n\r\n")
        r1 = c.response()
        self.assertEqual(r1[0], 200)
        self.assertNotEqual(r1[1].get("connection"), "close")
        r2 = c.response()
        self.assertEqual(r2[0], 400)
        self.assertEqual(r2[1].get("connection"), "close")
        self.assertTrue(c.wait_closed())
        self.assertEqual([q["path"] for q in self.up.requests], ["/api/1"])

    def test_h1_13_expect_100_continue(self):
        c = self.conn()
        c.send(b"POST /api/up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        r = c.response()
        self.assertEqual(r[0], 100)
        c.send(b"hello")
        r = c.response()
        self.assertEqual(r[0], 200)
        self.assertEqual(self.up.requests[-1]["body"], b"hello")

    def test_head_and_http10(self):
        c = self.conn()
        c.send(b"HEAD /api/h HTTP/1.1\r\nHost: a\r\n\r\nGET /api/g HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.response(head_request=True)
        self.assertEqual(r[0], 200)
        self.assertIn("content-length", r[1])
        r = c.response()
        self.assertEqual(r[0], 200)
        self.assertIn(b'"method": "GET"', r[2])
        c2 = self.conn()
        c2.send(b"GET /api/old HTTP/1.0\r\n\r\n")
        r = c2.response()
        self.assertEqual(r[0], 200)
        self.assertEqual(r[1].get("connection"), "close")
        self.assertTrue(c2.wait_closed())
        c3 = self.conn()
        c3.send(b"GET /api/old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = c3.response()
        self.assertEqual(r[1].get("connection"), "keep-alive")
        c3.send(b"GET /api/again HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        self.assertEqual(c3.response()[0], 200)

    def test_connection_close_requested(self):
        c = self.conn()
        c.send(b"GET /api/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        r = c.response()
        self.assertEqual(r[0], 200)
        self.assertEqual(r[1].get("connection"), "close")
        self.assertTrue(c.wait_closed())

    def test_ov1_header_deadline_408(self):
        c = self.conn()
        c.send(b"GET /api/slow HTTP/1.1\r\nHost: a\r\n")
        t0 = time.monotonic()
        r = c.response(timeout=5)
        self.assertIsNotNone(r)
        self.assertEqual(r[0], 408)
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assertTrue(c.wait_closed())
        self.assertEqual(len(self.up.requests), 0)

    def test_ov2_body_inactivity_408(self):
        c = self.conn()
        c.send(b"POST /api/slowbody HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        r = c.response(timeout=5)
        if r is not None:
            self.assertEqual(r[0], 408)
        self.assertTrue(c.wait_closed(5))
        self.assert_still_serving()

    def test_keepalive_idle_close(self):
        c = self.conn()
        c.send(b"GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(c.response()[0], 200)
        t0 = time.monotonic()
        self.assertTrue(c.wait_closed(4))
        self.assertGreater(time.monotonic() - t0, 0.5)
        self.assertEqual(c.buf, b"")  # closed silently

    def test_client_gone_mid_body(self):
        c = self.conn()
        c.send(b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
        time.sleep(0.1)
        c.close()
        time.sleep(0.2)
        self.assert_still_serving()


if __name__ == "__main__":
    unittest.main()
