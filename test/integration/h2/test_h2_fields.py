"""
HTTP/2 request messaging rules (SECURITY-CASES.md §2.2 H2-2, H2-10, H2-11;
RFC 9113 §8.1-8.3, RFC 8441 §4) against the real binary, one raw stream per
case: pseudo-header rules, uppercase and invalid names, connection-specific
fields, TE other than trailers, content-length against the DATA received,
CONNECT and extended CONNECT rules, field value characters, trailers.

Every malformed request must end in RST_STREAM(PROTOCOL_ERROR) and never reach
the upstream; the well-formed neighbours of each rule must be answered (so a
rule that is too strict fails too). The answers are the same whoever enforces
the rules (nghttp2's HTTP messaging, or h2.c's own checks with it off).
"""
import unittest

import hpack
from hyperframe.frame import DataFrame, HeadersFrame, RstStreamFrame

from portico_test import PorticoTestCase, free_port
from test_h2 import RawH2

PROTOCOL_ERROR = 1
BASE = [(":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1"), (":path", "/api/x")]


def replace(fields, name, value):
    """BASE with `name` set to `value` (None: removed)."""
    out = [(n, v) for n, v in fields if n != name]
    if value is not None:
        out.insert(0, (name, value))
    return out


# (label, header list, DATA payloads after HEADERS, END_STREAM on HEADERS,
#  trailers or None, expected: "rst" or a status)
CASES = [
    # well-formed neighbours
    ("plain GET", BASE, [], True, None, "200"),
    ("te: trailers", BASE + [("te", "trailers")], [], True, None, "200"),
    ("te: TRAILERS", BASE + [("te", "TRAILERS")], [], True, None, "200"),
    ("content-length matches", replace(BASE, ":method", "POST") + [("content-length", "5")],
     [b"12", b"345"], False, None, "200"),
    ("content-length 0, no DATA", replace(BASE, ":method", "POST") + [("content-length", "0")],
     [], True, None, "200"),
    ("host instead of :authority", replace(BASE, ":authority", None) + [("host", "127.0.0.1")],
     [], True, None, "200"),
    ("value with inner space and tab", BASE + [("x-a", "a b\tc")], [], True, None, "200"),
    ("obs-text value", BASE + [("x-a", "caf\u00e9")], [], True, None, "200"),
    ("empty regular value", BASE + [("x-a", "")], [], True, None, "200"),
    ("trailers with END_STREAM", replace(BASE, ":method", "POST"), [b"ab"], False,
     ([("x-t", "1")], True), "200"),
    ("CONNECT authority only", [(":method", "CONNECT"), (":authority", "127.0.0.1:1")], [], True,
     None, "501"),
    ("OPTIONS *", replace(BASE, ":method", "OPTIONS")[:-1] + [(":path", "*")], [], True, None,
     "any"),
    ("ftp scheme (ours: 400)", replace(BASE, ":scheme", "ftp"), [], True, None, "400"),
    ("RFC 9218 priority", BASE + [("priority", "u=0, i")], [], True, None, "200"),
    ("priority not a dictionary (ignored)", BASE + [("priority", "u=x,")], [], True, None, "200"),
    # pseudo-header rules
    ("pseudo after regular", BASE[:3] + [("x-a", "1"), BASE[3]], [], True, None, "rst"),
    ("duplicate :path", BASE + [(":path", "/api/y")], [], True, None, "rst"),
    ("duplicate :method", [(":method", "GET")] + BASE, [], True, None, "rst"),
    ("unknown pseudo", BASE + [(":foo", "x")], [], True, None, "rst"),
    (":status in a request", BASE + [(":status", "200")], [], True, None, "rst"),
    ("missing :path", replace(BASE, ":path", None), [], True, None, "rst"),
    ("missing :scheme", replace(BASE, ":scheme", None), [], True, None, "rst"),
    ("missing :method", replace(BASE, ":method", None), [], True, None, "rst"),
    ("missing :authority and host", replace(BASE, ":authority", None), [], True, None, "rst"),
    ("empty :path", replace(BASE, ":path", ""), [], True, None, "rst"),
    ("blank :authority", replace(BASE, ":authority", " "), [], True, None, "rst"),
    (":path not origin-form", replace(BASE, ":path", "api/x"), [], True, None, "rst"),
    (":path * without OPTIONS", replace(BASE, ":path", "*"), [], True, None, "rst"),
    (":path with a space", replace(BASE, ":path", "/api/a b"), [], True, None, "rst"),
    (":path with DEL", replace(BASE, ":path", "/api/a\x7f"), [], True, None, "rst"),
    (":method with a space", replace(BASE, ":method", "GE T"), [], True, None, "rst"),
    ("empty :method", replace(BASE, ":method", ""), [], True, None, "rst"),
    (":scheme not a scheme", replace(BASE, ":scheme", "1http"), [], True, None, "rst"),
    (":authority with a space", replace(BASE, ":authority", "a b"), [], True, None, "rst"),
    (":authority with a quote", replace(BASE, ":authority", "a\"b"), [], True, None, "rst"),
    ("host with a space", BASE + [("host", "a b")], [], True, None, "rst"),
    ("duplicate host", replace(BASE, ":authority", None) + [("host", "a"), ("host", "a")], [], True,
     None, "rst"),
    # names
    ("uppercase name", BASE + [("X-Upper", "1")], [], True, None, "rst"),
    ("name with a space", BASE + [("x a", "1")], [], True, None, "rst"),
    ("name with a colon inside", BASE + [("x:a", "1")], [], True, None, "rst"),
    ("empty name", BASE + [("", "1")], [], True, None, "rst"),
    # values
    ("value with CR", BASE + [("x-a", "a\rb")], [], True, None, "rst"),
    ("value with LF", BASE + [("x-a", "a\nb")], [], True, None, "rst"),
    ("value with NUL", BASE + [("x-a", "a\x00b")], [], True, None, "rst"),
    ("value with a control", BASE + [("x-a", "a\x01b")], [], True, None, "rst"),
    ("value with DEL", BASE + [("x-a", "a\x7fb")], [], True, None, "rst"),
    ("leading space", BASE + [("x-a", " a")], [], True, None, "rst"),
    ("trailing tab", BASE + [("x-a", "a\t")], [], True, None, "rst"),
    # connection-specific fields and TE
    ("connection", BASE + [("connection", "close")], [], True, None, "rst"),
    ("keep-alive", BASE + [("keep-alive", "5")], [], True, None, "rst"),
    ("proxy-connection", BASE + [("proxy-connection", "x")], [], True, None, "rst"),
    ("transfer-encoding", BASE + [("transfer-encoding", "chunked")], [], True, None, "rst"),
    ("upgrade", BASE + [("upgrade", "websocket")], [], True, None, "rst"),
    ("te: gzip", BASE + [("te", "gzip")], [], True, None, "rst"),
    ("te: trailers, gzip", BASE + [("te", "trailers, gzip")], [], True, None, "rst"),
    # content-length
    ("content-length not a number", BASE + [("content-length", "1x")], [], True, None, "rst"),
    ("content-length negative", BASE + [("content-length", "-1")], [], True, None, "rst"),
    ("two content-length", replace(BASE, ":method", "POST") + [("content-length", "2"),
                                                               ("content-length", "2")],
     [b"ab"], False, None, "rst"),
    ("DATA over content-length", replace(BASE, ":method", "POST") + [("content-length", "3")],
     [b"12345"], False, None, "rst"),
    ("DATA over content-length in 2nd frame",
     replace(BASE, ":method", "POST") + [("content-length", "3")], [b"12", b"34"], False, None,
     "rst"),
    ("DATA under content-length", replace(BASE, ":method", "POST") + [("content-length", "5")],
     [b"123"], False, None, "rst"),
    ("content-length but no DATA", replace(BASE, ":method", "POST") + [("content-length", "2")],
     [], True, None, "rst"),
    ("content-length short, ended by trailers",
     replace(BASE, ":method", "POST") + [("content-length", "5")], [b"ab"], False,
     ([("x-t", "1")], True), "rst"),
    # trailers
    ("pseudo-header in trailers", replace(BASE, ":method", "POST"), [b"ab"], False,
     ([(":path", "/x")], True), "rst"),
    ("trailers without END_STREAM", replace(BASE, ":method", "POST"), [b"ab"], False,
     ([("x-t", "1")], False), "rst"),
    ("uppercase name in trailers", replace(BASE, ":method", "POST"), [b"ab"], False,
     ([("X-T", "1")], True), "rst"),
    # CONNECT (RFC 9113 §8.5) and extended CONNECT (RFC 8441 §4)
    ("CONNECT with :path", [(":method", "CONNECT"), (":authority", "127.0.0.1:1"),
                            (":path", "/")], [], True, None, "rst"),
    ("CONNECT with :scheme", [(":method", "CONNECT"), (":authority", "127.0.0.1:1"),
                              (":scheme", "http")], [], True, None, "rst"),
    ("CONNECT without :authority", [(":method", "CONNECT")], [], True, None, "rst"),
    (":protocol on GET", BASE + [(":protocol", "websocket")], [], True, None, "rst"),
    ("extended CONNECT without :path", [(":method", "CONNECT"), (":protocol", "websocket"),
                                        (":scheme", "http"), (":authority", "127.0.0.1")],
     [], True, None, "rst"),
    ("extended CONNECT without :authority", [(":method", "CONNECT"), (":protocol", "websocket"),
                                             (":scheme", "http"), (":path", "/api/x")],
     [], True, None, "rst"),
    ("duplicate :protocol", [(":method", "CONNECT"), (":protocol", "websocket"),
                             (":protocol", "websocket"), (":scheme", "http"),
                             (":authority", "127.0.0.1"), (":path", "/api/x")],
     [], True, None, "rst"),
]


def config(port, echo_port):
    return f"""
listeners:
  - address: 127.0.0.1:{port}
limits: {{ h2_glitch_burst: 100000 }}
clusters:
  - name: web
    protocol: http
    endpoints: [ "127.0.0.1:{echo_port}" ]
routes:
  - name: api
    match: {{ prefix: /api/ }}
    proxy: {{ cluster: web }}
"""


class H2FieldsTest(PorticoTestCase):

    def setUp(self):
        super().setUp()
        self.port = free_port()
        self.up = self.echo()
        self.p = self.start(config(self.port, self.up.port), self.port)

    def run_case(self, case):
        """One request on its own connection (a reset never leaks into the next
        case's HPACK state); returns ("rst", code) or ("status", value)."""
        label, fields, data, end_on_headers, trailers, _ = case
        c = RawH2(self.port)
        self.addCleanup(c.close)
        dec = hpack.Decoder()
        frames = [HeadersFrame(1, c.enc.encode(fields),
                               flags=["END_HEADERS"] + (["END_STREAM"] if end_on_headers else []))]
        for i, chunk in enumerate(data):
            last = i == len(data) - 1 and trailers is None
            frames.append(DataFrame(1, chunk, flags=["END_STREAM"] if last else []))
        if trailers is not None:
            tfields, tend = trailers
            frames.append(HeadersFrame(1, c.enc.encode(tfields),
                                       flags=["END_HEADERS"] + (["END_STREAM"] if tend else [])))
        c.send(*frames)
        got = {}

        def done(f):
            if f.stream_id != 1:
                return False
            if isinstance(f, RstStreamFrame):
                got["rst"] = f.error_code
                return True
            if isinstance(f, HeadersFrame) and "status" not in got:
                got["status"] = dict(dec.decode(f.data)).get(":status")
                return True
            return False

        c.read(until=done, timeout=5)
        if "rst" in got:
            return ("rst", got["rst"])
        self.assertIn("status", got, f"{label}: no answer")
        return ("status", got["status"])

    def test_messaging_rules(self):
        for case in CASES:
            label, expect = case[0], case[-1]
            with self.subTest(case=label):
                before = len(self.up.requests)
                kind, val = self.run_case(case)
                if expect == "rst":
                    self.assertEqual((kind, val), ("rst", PROTOCOL_ERROR), label)
                    self.assertEqual(len(self.up.requests), before,
                                     f"{label}: a malformed request reached the upstream")
                elif expect == "any":
                    self.assertEqual(kind, "status", label)
                else:
                    self.assertEqual((kind, val), ("status", expect), label)

    def test_content_length_body_forwarded_exactly(self):
        """The accepted content-length case carries exactly its bytes upstream."""
        case = ("cl", replace(BASE, ":method", "POST") + [("content-length", "5")],
                [b"12", b"345"], False, None, "200")
        self.assertEqual(self.run_case(case), ("status", "200"))
        self.assertEqual(self.up.requests[-1]["body"], b"12345")

    def test_serves_after_malformed_on_same_connection(self):
        """A reset request leaves the connection (and its HPACK state) usable."""
        c = RawH2(self.port)
        self.addCleanup(c.close)
        dec = hpack.Decoder()
        c.send(HeadersFrame(1, c.enc.encode(BASE + [("connection", "close")]),
                            flags=["END_HEADERS", "END_STREAM"]),
               HeadersFrame(3, c.enc.encode(BASE + [("x-ok", "1")]),
                            flags=["END_HEADERS", "END_STREAM"]))
        got = {}

        def done(f):
            if isinstance(f, RstStreamFrame):
                got[f.stream_id] = "rst"
            elif isinstance(f, HeadersFrame):
                got[f.stream_id] = dict(dec.decode(f.data)).get(":status")
            return len(got) == 2

        c.read(until=done, timeout=5)
        self.assertEqual(got, {1: "rst", 3: "200"})


if __name__ == "__main__":
    unittest.main()
