"""
The xml_json filter through a real proxy route: JSON clients in front of an
XML upstream (and, reversed, XML clients in front of a JSON upstream), with
the generic convention of transcoder/include/portico/transcoder/xmljson.h.
The upstream here is a small XML service that records what it received.
"""
import http.server
import json
import os
import socketserver
import subprocess
import tempfile
import threading
import unittest

from portico_test import PorticoTestCase, curl, free_port, BIN

ORDER_XML = (b'<?xml version="1.0"?>\n<order id="7" xmlns:p="urn:p"><item sku="a">2</item>'
             b'<item sku="b">1</item><p:note>rush &amp; wrap</p:note><empty/></order>')


class XmlService(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def handle(self):
        try:
            super().handle()
        except ConnectionError:
            pass  # the gateway cut a hostile answer off

    def _send(self, status, ctype, body):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.server.seen.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": b""})
        if self.path == "/order":
            self._send(200, "application/xml; charset=utf-8", ORDER_XML)
        elif self.path == "/xxe":
            self._send(200, "text/xml", b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                                        b'<r>&x;</r>')
        elif self.path == "/broken":
            self._send(200, "application/xml", b"<a><b></a>")
        elif self.path == "/big":
            self._send(200, "application/xml", b"<a>" + b"x" * 200000 + b"</a>")
        elif self.path == "/json":
            self._send(200, "application/json", b'{"r":{"@v":"1","k":["a","b"]}}')
        else:
            self._send(200, "text/plain", b"<not converted>")

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if not n and self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        self.server.seen.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
        self._send(200, "application/xml", b"<ok><got>" + str(len(body)).encode() + b"</got></ok>")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), XmlService)
        self.seen = []
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()


class XmlJsonTest(PorticoTestCase):
    def upstream(self):
        s = Server()
        self.addCleanup(lambda: (s.shutdown(), s.server_close()))
        return s

    def gateway(self, up, conf="{}", extra=""):
        port = free_port()
        self.start(f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
clusters: [ {{ name: xmlsvc, endpoints: [ "127.0.0.1:{up.port}" ] }} ]
routes:
  - match: {{ prefix: / }}
    proxy: {{ cluster: xmlsvc }}
    request_buffering: true
    filters: [ {{ xml_json: {conf} }} ]
{extra}""", port)
        return f"http://127.0.0.1:{port}"

    def test_json_client_xml_upstream(self):
        up = self.upstream()
        base = self.gateway(up)
        st, h, body, _ = curl(base + "/order", "-H", "Accept: application/json")
        self.assertEqual(st, 200, body)
        self.assertEqual(h.get("content-type"), "application/json")
        self.assertEqual(json.loads(body), {"order": {
            "@id": "7", "@xmlns:p": "urn:p",
            "item": [{"@sku": "a", "#text": "2"}, {"@sku": "b", "#text": "1"}],
            "p:note": "rush & wrap", "empty": ""}})
        self.assertEqual(up.seen[-1]["headers"].get("accept"), "application/xml")
        # a JSON body goes upstream as XML, keys in order, arrays as repeated elements
        req = {"order": {"@id": "8", "item": [{"@sku": "c", "#text": "3"}, "4"], "note": "a<b"}}
        st, h, body, _ = curl(base + "/orders", "-X", "POST", "-H",
                              "Content-Type: application/json", "--data-binary",
                              json.dumps(req))
        self.assertEqual(st, 200, body)
        got = up.seen[-1]
        self.assertEqual(got["headers"].get("content-type"), "application/xml; charset=utf-8")
        self.assertEqual(got["body"], b'<?xml version="1.0" encoding="UTF-8"?>\n<order id="8">'
                                      b'<item sku="c">3</item><item>4</item><note>a&lt;b</note>'
                                      b'</order>')
        self.assertEqual(json.loads(body), {"ok": {"got": str(len(got["body"]))}})
        # other content types pass untouched
        st, h, body, _ = curl(base + "/plain")
        self.assertEqual((st, body), (200, b"<not converted>"))
        self.assertEqual(h.get("content-type"), "text/plain")

    def test_bad_request_bodies(self):
        up = self.upstream()
        base = self.gateway(up, "{ max_size: 4k }")
        for data, status, part in [
                (b'{"order":', 400, "invalid JSON"),
                (b'{"a":1,"b":2}', 400, "exactly one key"),
                (b'{"order":{"bad key":1}}', 400, "order.bad key: key is not an XML name"),
                (b'{"a":{"b":[[1]]}}', 400, "a.b[0]: arrays of arrays"),
                (b'{"a":"' + b"x" * 5000 + b'"}', 413, "larger than 4096 bytes")]:
            n = len(up.seen)
            st, h, body, _ = curl(base + "/orders", "-X", "POST", "-H",
                                  "Content-Type: application/json", "--data-binary", "@-",
                                  input_bytes=data)
            self.assertEqual(st, status, body)
            err = json.loads(body)["error"]
            self.assertIn(part, err["message"])
            self.assertTrue(err["message"].startswith("xml_json: request body (JSON): "))
            self.assertEqual(err["request_id"], h.get("x-request-id"))
            self.assertEqual(len(up.seen), n, "a refused body reached the upstream")

    def test_hostile_upstream_answers(self):
        up = self.upstream()
        base = self.gateway(up, "{ max_size: 64k }")
        for path in ["/xxe", "/broken", "/big"]:
            # the head went out before the body: the answer is cut off, never wrong
            st, h, body, err = curl(base + path)
            self.assertNotIn(b"root:", body)
            self.assertTrue(err or st != 200 or body == b"", (st, body[:100], err))
        st, h, body, _ = curl(base + "/order")  # and the gateway is unharmed
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body)["order"]["@id"], "7")

    def test_reverse(self):
        up = self.upstream()
        base = self.gateway(up, "{ reverse: true }")
        st, h, body, _ = curl(base + "/json", "-H", "Accept: application/xml")
        self.assertEqual(st, 200, body)
        self.assertEqual(h.get("content-type"), "application/xml; charset=utf-8")
        self.assertEqual(body, b'<?xml version="1.0" encoding="UTF-8"?>\n<r v="1"><k>a</k>'
                               b'<k>b</k></r>')
        self.assertEqual(up.seen[-1]["headers"].get("accept"), "application/json")
        st, h, body, _ = curl(base + "/orders", "-X", "POST", "-H", "Content-Type: text/xml",
                              "--data-binary", '<r a="1"><b>x</b><b>y</b></r>')
        self.assertEqual(st, 200)
        self.assertEqual(up.seen[-1]["headers"].get("content-type"), "application/json")
        self.assertEqual(json.loads(up.seen[-1]["body"]), {"r": {"@a": "1", "b": ["x", "y"]}})
        # an XML request with a DOCTYPE is refused before the upstream
        n = len(up.seen)
        st, h, body, _ = curl(base + "/orders", "-X", "POST", "-H", "Content-Type: text/xml",
                              "--data-binary",
                              '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>')
        self.assertEqual(st, 400)
        # the local reply passes this filter's response side too: XML clients get XML
        self.assertEqual(h.get("content-type"), "application/xml; charset=utf-8")
        self.assertIn(b"<error><code>INVALID</code><message>xml_json: request body (XML): "
                      b"XML line 1 column 13: a DOCTYPE is not accepted", body)
        self.assertEqual(len(up.seen), n)

    def test_config_errors(self):
        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        cfg = os.path.join(d.name, "x.yaml")
        with open(cfg, "w") as f:
            f.write("""listeners: [ { address: "127.0.0.1:1" } ]
clusters: [ { name: c, endpoints: [ "127.0.0.1:1" ] } ]
routes:
  - match: { prefix: / }
    proxy: { cluster: c }
    filters: [ { xml_json: { reverse: maybe, max_depht: 3 } } ]
""")
        p = subprocess.run([BIN, "--validate", "-c", cfg], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stderr, r"x\.yaml:6:\d+: .*'maybe'")
        self.assertRegex(p.stderr, r"x\.yaml:6:\d+: .*max_depht")


if __name__ == "__main__":
    unittest.main()
