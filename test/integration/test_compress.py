"""
test_compress.py -- the built-in `compress` filter (plugins/compress.c) in the
real binary, with real clients: curl --compressed (gzip, br and zstd decoded
by libcurl), raw bytes decoded by python's zlib (gzip), the zstd CLI (zstd)
and node's zlib (br).

Covers: codec choice from Accept-Encoding with q-values, min_size, types,
HEAD / 204 / 304 / 206, already-encoded and no-transform answers, Vary, ETag
weakening, HTTP/1.1 and HTTP/2, a slow SSE upstream whose first event reaches
the client compressed before the upstream finishes, gRPC bodies left alone,
and request bodies decoded (gzip, br, zstd) with a size limit (a bomb -> 413)
and garbage -> 400, both JSON.
"""
import gzip
import http.client
import http.server
import json
import os
import socketserver
import subprocess
import threading
import time
import unittest
import zlib

from portico_test import PorticoTestCase, curl, free_port

JSON_BODY = json.dumps([{"id": i, "name": "item %d" % i, "tags": ["a", "b", "c"],
                         "price": i * 1.5} for i in range(200)]).encode()


def br_decode(data):
    return subprocess.run(["node", "-e", "process.stdout.write(require('zlib').brotliDecompressSync("
                           "require('fs').readFileSync(0)))"], input=data, capture_output=True,
                          check=True, timeout=30).stdout


def br_encode(data):
    return subprocess.run(["node", "-e", "process.stdout.write(require('zlib').brotliCompressSync("
                           "require('fs').readFileSync(0)))"], input=data, capture_output=True,
                          check=True, timeout=30).stdout


def zstd_decode(data):
    return subprocess.run(["zstd", "-q", "-d", "-c"], input=data, capture_output=True, check=True,
                          timeout=30).stdout


def zstd_encode(data):
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True,
                          timeout=30).stdout


DECODE = {"gzip": gzip.decompress, "br": br_decode, "zstd": zstd_decode}
ENCODE = {"gzip": gzip.compress, "br": br_encode, "zstd": zstd_encode}


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _send(self, status, ctype, body, extra=(), chunked=False):
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for k, v in extra:
            self.send_header(k, v)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD" or status in (204, 304):
            return
        if chunked:
            for i in range(0, len(body), 3000):
                part = body[i:i + 3000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        p = self.path.split("?")[0]
        if p == "/json":
            self._send(200, "application/json", JSON_BODY, [("ETag", '"v1"'), ("Accept-Ranges", "bytes")])
        elif p == "/json-chunked":
            self._send(200, "application/json; charset=utf-8", JSON_BODY, chunked=True)
        elif p == "/small":
            self._send(200, "application/json", b'{"ok":true}')
        elif p == "/text":
            self._send(200, "text/plain", b"hello world " * 500, [("Vary", "Origin")])
        elif p == "/png":
            self._send(200, "image/png", b"\x89PNG" + b"\0" * 5000)
        elif p == "/encoded":
            self._send(200, "application/json", gzip.compress(JSON_BODY), [("Content-Encoding", "gzip")])
        elif p == "/notransform":
            self._send(200, "application/json", JSON_BODY, [("Cache-Control", "public, no-transform")])
        elif p == "/range":
            self._send(206, "application/json", JSON_BODY[:2000],
                       [("Content-Range", "bytes 0-1999/%d" % len(JSON_BODY))])
        elif p == "/nocontent":
            self._send(204, None, b"")
        elif p == "/notmodified":
            self._send(304, None, b"", [("ETag", '"v1"')])
        elif p == "/missing":
            self._send(404, "application/json", b'{"error":"no such thing"}' * 100)
        elif p == "/grpc":
            self._send(200, "application/grpc", b"\0\0\0\x10\0" + b"a" * 4096, [("grpc-encoding", "identity")])
        elif p == "/sse":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            ev = b"data: first event " + b"x" * 100 + b"\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(ev), ev))
            self.wfile.flush()
            # the second event comes only once the client has shown the first
            # (or after 15 s, and then the test fails)
            self.server.first_seen.wait(15)
            ev = b"data: second event\n\n"
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(ev), ev))
        else:
            self._send(404, "text/plain", b"no")

    def do_POST(self):
        body = b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
        out = json.dumps({"len": len(body)}).encode()
        self._send(200, "application/json", out)


class UpstreamServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Upstream)
        self.port = self.server_address[1]
        self.posts = []
        self.first_seen = threading.Event()
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def stop(self):
        self.first_seen.set()
        self.shutdown()
        self.server_close()


def get(port, path, ae=None, method="GET", headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        h = dict(headers or {})
        if ae is not None:
            h["Accept-Encoding"] = ae
        c.request(method, path, headers=h)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read(), r.headers.get_all("Vary") or []
    finally:
        c.close()


class CompressTest(PorticoTestCase):
    def setUp(self):
        super().setUp()
        self.up = UpstreamServer()
        self.addCleanup(self.up.stop)
        self.port = free_port()
        self.start(f"""
listeners: [ {{ address: "127.0.0.1:{self.port}", h2c: true }} ]
clusters: [ {{ name: web, endpoints: [ "127.0.0.1:{self.up.port}" ] }} ]
routes:
  - match: {{ prefix: /raw/ }}
    proxy: {{ cluster: web }}
    filters: [ {{ rewrite: {{ prefix: /raw/, replace: / }} }} ]
  - match: {{ prefix: /dz/ }}
    proxy: {{ cluster: web }}
    filters:
      - rewrite: {{ prefix: /dz/, replace: / }}
      - compress: {{ decompress_requests: {{ max_size: 1m }} }}
  - match: {{ prefix: /lv/ }}
    proxy: {{ cluster: web }}
    filters:
      - rewrite: {{ prefix: /lv/, replace: / }}
      - compress: {{ types: [ application/json ], min_size: 100, level: {{ gzip: 9, br: 11, zstd: 19 }} }}
  - match: {{ prefix: / }}
    proxy: {{ cluster: web }}
    filters:
      - compress: {{ types: [ application/json, "text/*" ], min_size: 1k }}
""", self.port)

    def test_codecs_round_trip(self):
        for codec in ("gzip", "br", "zstd"):
            st, h, body, vary = get(self.port, "/json", codec)
            self.assertEqual(st, 200)
            self.assertEqual(h.get("content-encoding"), codec)
            self.assertNotIn("content-length", h)
            self.assertIn("Accept-Encoding", vary)
            self.assertEqual(h.get("etag"), 'W/"v1"')  # strong ETag weakened
            self.assertNotIn("accept-ranges", h)
            self.assertEqual(DECODE[codec](body), JSON_BODY)
            self.assertLess(len(body), len(JSON_BODY) // 3)
            # unknown length (chunked upstream) too
            st, h, body, _ = get(self.port, "/json-chunked", codec)
            self.assertEqual(h.get("content-encoding"), codec)
            self.assertEqual(DECODE[codec](body), JSON_BODY)

    def test_curl_compressed_h1_and_h2(self):
        for proto in ([], ["--http2-prior-knowledge"]):
            for codec in ("gzip", "br", "zstd"):
                st, h, body, err = curl(*proto, "--compressed", "-H", "Accept-Encoding: " + codec,
                                        f"http://127.0.0.1:{self.port}/json")
                self.assertEqual(st, 200, err)
                self.assertEqual(h.get("content-encoding"), codec)
                self.assertEqual(body, JSON_BODY)
            st, h, body, err = curl(*proto, "--compressed", f"http://127.0.0.1:{self.port}/text")
            self.assertEqual(h.get("content-encoding"), "br")  # curl offers all three: br preferred
            self.assertEqual(body, b"hello world " * 500)
            self.assertEqual(h.get("vary"), ["Origin", "Accept-Encoding"])

    def test_qvalue_selection(self):
        cases = [
            ("gzip, deflate, br, zstd", "br"),
            ("gzip, zstd", "zstd"),
            ("br;q=0.5, gzip;q=0.9", "gzip"),
            ("br;q=0, zstd;q=0, gzip;q=0.1", "gzip"),
            ("gzip;q=0", None),
            ("*", "br"),
            ("*;q=0.5, br;q=0", "zstd"),
            ("identity", None),
            ("identity;q=1, gzip;q=0.5", None),
            ("deflate", None),
            ("", None),
        ]
        for ae, want in cases:
            st, h, body, vary = get(self.port, "/json", ae)
            self.assertEqual(h.get("content-encoding"), want, ae)
            self.assertIn("Accept-Encoding", vary, ae)  # the answer depends on it either way
            if want is None:
                self.assertEqual(body, JSON_BODY)
                self.assertEqual(h.get("etag"), '"v1"')
                self.assertEqual(h.get("content-length"), str(len(JSON_BODY)))
        st, h, body, vary = get(self.port, "/json")  # no Accept-Encoding at all
        self.assertNotIn("content-encoding", h)
        self.assertEqual(body, JSON_BODY)

    def test_not_compressed(self):
        for path in ("/small", "/png", "/encoded", "/notransform", "/range", "/grpc"):
            st, h, body, vary = get(self.port, path, "gzip, br, zstd")
            self.assertNotIn("Accept-Encoding", vary, path)
            if path == "/encoded":
                self.assertEqual(h.get("content-encoding"), "gzip")  # the upstream's, untouched
                self.assertEqual(gzip.decompress(body), JSON_BODY)
            else:
                self.assertNotIn("content-encoding", h, path)
                self.assertEqual(int(h["content-length"]), len(body), path)
        st, h, body, _ = get(self.port, "/grpc", "gzip")
        self.assertEqual(h.get("grpc-encoding"), "identity")
        self.assertEqual(body, b"\0\0\0\x10\0" + b"a" * 4096)
        # HEAD, 204, 304
        st, h, body, _ = get(self.port, "/json", "gzip", method="HEAD")
        self.assertEqual((st, body), (200, b""))
        self.assertNotIn("content-encoding", h)
        self.assertEqual(h.get("content-length"), str(len(JSON_BODY)))
        for path, code in (("/nocontent", 204), ("/notmodified", 304)):
            st, h, body, _ = get(self.port, path, "gzip")
            self.assertEqual((st, body), (code, b""))
            self.assertNotIn("content-encoding", h)
        # min_size on another route: 100 bytes there, so /small (11 bytes) stays, /json compresses
        st, h, body, _ = get(self.port, "/lv/small", "gzip")
        self.assertNotIn("content-encoding", h)
        st, h, body, _ = get(self.port, "/lv/text", "gzip")  # text/plain not in that route's types
        self.assertNotIn("content-encoding", h)
        for codec in ("gzip", "br", "zstd"):
            st, h, body, _ = get(self.port, "/lv/json", codec)
            self.assertEqual(h.get("content-encoding"), codec)
            self.assertEqual(DECODE[codec](body), JSON_BODY)
        # a route without the filter
        st, h, body, _ = get(self.port, "/raw/json", "gzip")
        self.assertNotIn("content-encoding", h)

    def test_identity_refused(self):
        """Accept-Encoding refusing identity (RFC 9110 12.5.3) on a route with the filter."""
        refused = ("identity;q=0", "*;q=0", "identity;q=0, deflate", "gzip;q=0, identity;q=0",
                   "*;q=0, gzip;q=0")
        for ae in refused:
            for path in ("/json", "/small", "/text"):  # no coding it accepts: 406, whatever the size
                st, h, body, vary = get(self.port, path, ae)
                self.assertEqual(st, 406, (ae, path))
                self.assertIn("Accept-Encoding", vary, ae)
                err = json.loads(body)["error"]
                self.assertEqual(err["code"], "NOT_ACCEPTABLE")
                self.assertIn("identity", err["detail"])
        # a coding it accepts: used, and min_size yields (11 bytes on a min_size: 1k route)
        for ae, want in (("identity;q=0, gzip", "gzip"), ("*;q=0, zstd;q=0.5", "zstd"),
                         ("identity;q=0, br;q=0.1", "br")):
            for path, raw in (("/json", JSON_BODY), ("/small", b'{"ok":true}')):
                st, h, body, vary = get(self.port, path, ae)
                self.assertEqual((st, h.get("content-encoding")), (200, want), (ae, path))
                self.assertEqual(DECODE[want](body), raw)
        # a type the route does not code, and no-transform: 406 even with a coding accepted
        for path in ("/png", "/notransform"):
            st, h, body, _ = get(self.port, path, "identity;q=0, gzip")
            self.assertEqual(st, 406, path)
        # identity named again with q>0 is acceptable; `*;q=0` does not cover a named identity
        for ae in ("*;q=0, identity", "identity;q=0, identity;q=0.5"):
            st, h, body, _ = get(self.port, "/png", ae)
            self.assertEqual((st, h.get("content-encoding")), (200, None), ae)
        # answers that pass as they are: already encoded, no content, not modified, errors, HEAD of
        # something codable with a coding accepted
        st, h, body, _ = get(self.port, "/encoded", "identity;q=0")
        self.assertEqual((st, h.get("content-encoding")), (200, "gzip"))
        for path, code in (("/nocontent", 204), ("/notmodified", 304), ("/missing", 404)):
            st, h, body, _ = get(self.port, path, "identity;q=0")
            self.assertEqual(st, code, path)
            self.assertNotIn("content-encoding", h, path)
        st, h, body, _ = get(self.port, "/json", "identity;q=0", method="HEAD")
        self.assertEqual(st, 406)
        # a route without the filter never says 406
        st, h, body, _ = get(self.port, "/raw/json", "identity;q=0")
        self.assertEqual((st, body), (200, JSON_BODY))

    def test_sse_first_event_not_held(self):
        """The first event must reach the client, compressed, while the upstream still waits."""
        for codec in ("gzip", "br", "zstd"):
            self.up.first_seen.clear()
            hdr = os.path.join(self._procs[0].dir, "sse-headers")
            p = subprocess.Popen(["curl", "-sS", "-N", "--compressed", "-D", hdr, "--max-time", "20",
                                  "-H", "Accept-Encoding: " + codec,
                                  f"http://127.0.0.1:{self.port}/sse"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                t0 = time.monotonic()
                first = p.stdout.readline()
                self.assertTrue(first.startswith(b"data: first event"), first)
                self.assertLess(time.monotonic() - t0, 10)
                with open(hdr, "rb") as f:
                    self.assertIn(b"content-encoding: " + codec.encode(), f.read().lower())
                self.up.first_seen.set()
                rest, _ = p.communicate(timeout=20)
                self.assertIn(b"data: second event", rest)
                self.assertEqual(p.returncode, 0)
            finally:
                self.up.first_seen.set()
                if p.poll() is None:
                    p.kill()
                    p.communicate()

    def test_request_decompression(self):
        payload = JSON_BODY * 5
        for codec in ("gzip", "br", "zstd"):
            self.up.posts.clear()
            st, h, body, err = curl("-X", "POST", "--data-binary", "@-", "-H", "Content-Encoding: " + codec,
                                    "-H", "Content-Type: application/json",
                                    f"http://127.0.0.1:{self.port}/dz/post",
                                    input_bytes=ENCODE[codec](payload))
            self.assertEqual(st, 200, err)
            self.assertEqual(json.loads(body), {"len": len(payload)})
            headers, got = self.up.posts[-1]
            self.assertEqual(got, payload)
            self.assertNotIn("content-encoding", headers)
            self.assertNotIn("content-length", headers)
        # over HTTP/2 too
        st, h, body, err = curl("--http2-prior-knowledge", "-X", "POST", "--data-binary", "@-",
                                "-H", "Content-Encoding: gzip", f"http://127.0.0.1:{self.port}/dz/post",
                                input_bytes=gzip.compress(payload))
        self.assertEqual((st, json.loads(body)), (200, {"len": len(payload)}), err)
        # a route without decompress_requests passes the body through as it came
        self.up.posts.clear()
        comp = gzip.compress(payload)
        st, h, body, err = curl("-X", "POST", "--data-binary", "@-", "-H", "Content-Encoding: gzip",
                                f"http://127.0.0.1:{self.port}/post", input_bytes=comp)
        self.assertEqual(json.loads(body), {"len": len(comp)})
        self.assertEqual(self.up.posts[-1][1], comp)
        self.assertEqual(self.up.posts[-1][0].get("content-encoding"), "gzip")

    def test_request_bomb_and_garbage(self):
        # 32 MiB of zeros each (brotli at quality 1, made inside node: quality 11 takes
        # seconds under load, and a 32 MiB pipe for nothing)
        br_bomb = subprocess.run(["node", "-e", "const z=require('zlib'); process.stdout.write("
                                  "z.brotliCompressSync(Buffer.alloc(32<<20), {params: "
                                  "{[z.constants.BROTLI_PARAM_QUALITY]: 1}}))"],
                                 capture_output=True, check=True, timeout=60).stdout
        bomb = {"gzip": gzip.compress(b"\0" * (32 << 20), 6),
                "zstd": subprocess.run(["zstd", "-q", "-1", "-c"], input=b"\0" * (32 << 20),
                                       capture_output=True, check=True, timeout=60).stdout,
                "br": br_bomb}
        for codec, data in bomb.items():
            self.assertLess(len(data), 200000)
            self.up.posts.clear()
            t0 = time.monotonic()
            st, h, body, err = curl("-X", "POST", "--data-binary", "@-", "-H", "Content-Encoding: " + codec,
                                    f"http://127.0.0.1:{self.port}/dz/post", input_bytes=data)
            self.assertEqual(st, 413, err)
            j = json.loads(body)["error"]
            self.assertEqual(j["code"], "LIMIT")
            self.assertIn("1048576", j.get("detail", ""), j)
            self.assertEqual(h.get("content-type"), "application/json")
            self.assertEqual(self.up.posts, [])  # the upstream never answered a whole body
        for codec in ("gzip", "br", "zstd"):
            st, h, body, err = curl("-X", "POST", "--data-binary", "this is not compressed " * 20,
                                    "-H", "Content-Encoding: " + codec,
                                    f"http://127.0.0.1:{self.port}/dz/post")
            self.assertEqual(st, 400, err)
            j = json.loads(body)["error"]
            self.assertEqual(j["code"], "INVALID")
            self.assertIn("not valid " + codec, j.get("detail", ""), j)
            # truncated stream
            good = ENCODE[codec](JSON_BODY)
            st, h, body, err = curl("-X", "POST", "--data-binary", "@-", "-H", "Content-Encoding: " + codec,
                                    f"http://127.0.0.1:{self.port}/dz/post", input_bytes=good[:-4])
            self.assertEqual(st, 400, err)


class CompressConfigTest(PorticoTestCase):
    def check_refused(self, filt, want):
        port = free_port()
        from portico_test import Portico
        p = Portico(f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
clusters: [ {{ name: web, endpoints: [ "127.0.0.1:9" ] }} ]
routes:
  - match: {{ prefix: / }}
    proxy: {{ cluster: web }}
    filters: [ {{ compress: {filt} }} ]
""")
        try:
            p.proc.wait(20)
            out = p.output()
        finally:
            p.stop()
        self.assertNotEqual(p.proc.returncode, 0)
        self.assertIn(want, out)
        self.assertRegex(out, r"portico\.yaml:\d+:\d+: ")

    def test_bad_config(self):
        self.check_refused("{ level: { gzip: 12 } }", "out of range [1, 9]")
        self.check_refused("{ level: { lz4: 1 } }", "lz4")
        self.check_refused("{ types: [ json ] }", "not a media type pattern")
        self.check_refused("{ min_size: lots }", "expected a size")
        self.check_refused("{ decompress_requests: { max_size: 0 } }", "below the minimum")


if __name__ == "__main__":
    unittest.main()
