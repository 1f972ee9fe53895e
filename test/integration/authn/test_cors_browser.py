"""
test_cors_browser.py -- the main use case as a browser lives it (issue 11):
a page served from another origin (a python http.server on another port)
calls a grpc route through Portico -- REST GET, POST and PATCH (JSON bodies,
so the browser sends preflights) and gRPC-Web -- and shows the answers;
a call to a route whose CORS policy does not list the page's origin is
blocked by the browser. Headless Chromium (Debian `chromium`) driven over the
DevTools protocol (cdp_page.js). The grpc route uses `web_origins` only: the
alias of the cors filter.

The backend is a small Notes service (a proto compiled with protoc at test
time, served by python3-grpcio with raw-bytes handlers):
  GET /v1/notes/{id}, POST /v1/notes, PATCH /v1/notes/{id}.
"""
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest
from concurrent import futures

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bookstore"))

from portico_test import EchoServer, Portico, curl, free_port  # noqa: E402
from bookstore_server import grpc  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
BROWSER = os.path.join(HERE, "cors_browser.js")

NOTES_PROTO = """
syntax = "proto3";
package notes.v1;
import "google/api/annotations.proto";
message Note { string id = 1; string text = 2; }
message GetNoteRequest { string id = 1; }
service Notes {
  rpc GetNote(GetNoteRequest) returns (Note) { option (google.api.http) = { get: "/v1/notes/{id}" }; }
  rpc CreateNote(Note) returns (Note) { option (google.api.http) = { post: "/v1/notes" body: "*" }; }
  rpc UpdateNote(Note) returns (Note) { option (google.api.http) = { patch: "/v1/notes/{id}" body: "*" }; }
}
"""


def pb_fields(data):
    """{field number: str} of a message of string fields (what Notes uses)."""
    out, i = {}, 0
    while i < len(data):
        tag = data[i]
        n = data[i + 1]
        out[tag >> 3] = data[i + 2:i + 2 + n].decode()
        i += 2 + n
    return out


def note(fields):
    b = b""
    for num in sorted(fields):
        v = fields[num].encode()
        b += bytes([num << 3 | 2, len(v)]) + v
    return b


class NotesBackend:
    def __init__(self):
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = {
            "GetNote": grpc.unary_unary_rpc_method_handler(
                lambda req, ctx: note({1: pb_fields(req)[1], 2: "note " + pb_fields(req)[1]})),
            "CreateNote": grpc.unary_unary_rpc_method_handler(
                lambda req, ctx: note({1: "n-new", 2: pb_fields(req).get(2, "")})),
            "UpdateNote": grpc.unary_unary_rpc_method_handler(
                lambda req, ctx: note({1: pb_fields(req)[1], 2: "patched: " + pb_fields(req).get(2, "")})),
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("notes.v1.Notes", handlers),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self):
        self.server.stop(0)


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>notes</title></head>
<body><pre id="out">running</pre>
<script>
const API = new URLSearchParams(location.search).get('api');
async function rest(method, path, body) {
  const init = { method };
  if (body !== undefined) {
    init.headers = { 'content-type': 'application/json' };
    init.body = JSON.stringify(body);
  }
  const r = await fetch(API + path, init);
  return { status: r.status, body: await r.json(), requestId: r.headers.get('x-request-id') };
}
function str(n, s) {
  const b = new TextEncoder().encode(s);
  return [n << 3 | 2, b.length, ...b];
}
async function grpcWeb(method, fields) {
  const msg = fields.flatMap(([n, s]) => str(n, s));
  const body = new Uint8Array([0, 0, 0, 0, msg.length, ...msg]);
  const r = await fetch(API + '/notes.v1.Notes/' + method, {
    method: 'POST', body,
    headers: { 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1' } });
  const buf = new Uint8Array(await r.arrayBuffer());
  const out = { status: r.status, fields: {}, trailers: '' };
  for (let i = 0; i < buf.length;) {
    const flag = buf[i], n = (buf[i + 1] << 24) | (buf[i + 2] << 16) | (buf[i + 3] << 8) | buf[i + 4];
    const p = buf.slice(i + 5, i + 5 + n);
    if (flag & 0x80) out.trailers = new TextDecoder().decode(p);
    else for (let j = 0; j < p.length;) {
      out.fields[p[j] >> 3] = new TextDecoder().decode(p.slice(j + 2, j + 2 + p[j + 1]));
      j += 2 + p[j + 1];
    }
    i += 5 + n;
  }
  return out;
}
async function attempt(f) {
  try { return await f(); } catch (e) { return { blocked: String(e) }; }
}
window.ptDone = (async () => {
  const out = {};
  out.get = await attempt(() => rest('GET', '/v1/notes/n1'));
  out.post = await attempt(() => rest('POST', '/v1/notes', { text: 'hello' }));
  out.patch = await attempt(() => rest('PATCH', '/v1/notes/n1', { text: 'changed' }));
  out.grpcWeb = await attempt(() => grpcWeb('GetNote', [[1, 'n7']]));
  out.otherOrigin = await attempt(() => rest('GET', '/private/x'));
  document.getElementById('out').textContent = JSON.stringify(out);
})();
</script></body></html>
"""


class CorsBrowserTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="pt-cors-browser-")
        self.addCleanup(self.tmp.cleanup)
        d = self.tmp.name
        proto = os.path.join(d, "notes.proto")
        with open(proto, "w") as f:
            f.write(NOTES_PROTO)
        pbfile = os.path.join(d, "notes.pb")
        subprocess.run(["protoc", "-I", d, "-I", os.path.join(ROOT, "protos"), "-I", "/usr/include",
                        "--include_imports", "--descriptor_set_out=" + pbfile, proto],
                       check=True, capture_output=True)
        self.be = NotesBackend()
        self.addCleanup(self.be.stop)
        self.echo = EchoServer()
        self.addCleanup(self.echo.stop)
        # the page's origin: another port than Portico's
        site = os.path.join(d, "site")
        os.mkdir(site)
        with open(os.path.join(site, "index.html"), "w") as f:
            f.write(PAGE)
        handler = functools.partial(QuietFiles, directory=site)
        self.site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.site.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        self.addCleanup(self.site.server_close)
        self.addCleanup(self.site.shutdown)
        self.origin = "http://127.0.0.1:%d" % self.site.server_address[1]
        self.port = free_port()
        self.portico = Portico(f"""
listeners: [ {{ address: "127.0.0.1:{self.port}" }} ]
workers: 1
descriptors: [ {pbfile} ]
clusters:
  - {{ name: notes, protocol: grpc, endpoints: [ "127.0.0.1:{self.be.port}" ] }}
  - {{ name: web, endpoints: [ "127.0.0.1:{self.echo.port}" ] }}
routes:
  - match: {{ prefix: /private/ }}
    proxy: {{ cluster: web }}
    filters: [ {{ cors: {{ origins: [ "https://elsewhere.example" ] }} }} ]
  - grpc: {{ cluster: notes, web_origins: [ "{self.origin}" ] }}
""")
        self.addCleanup(self.portico.stop)
        self.portico.wait_ready(self.port)
        self.api = "http://127.0.0.1:%d" % self.port

    def test_curl_preflights(self):
        """What the browser will ask, asked with curl."""
        for path, method, allowed in (("/v1/notes/n1", "PATCH", "GET, PATCH, OPTIONS"),
                                      ("/v1/notes", "POST", "POST, OPTIONS"),
                                      ("/notes.v1.Notes/GetNote", "POST", "POST, OPTIONS")):
            st, h, body, _ = curl(self.api + path, "-X", "OPTIONS", "-H", "Origin: " + self.origin,
                                  "-H", "Access-Control-Request-Method: " + method,
                                  "-H", "Access-Control-Request-Headers: content-type")
            self.assertEqual(st, 204, body)
            self.assertEqual(h["access-control-allow-origin"], self.origin)
            self.assertEqual(h["access-control-allow-methods"], allowed)
        st, h, _, _ = curl(self.api + "/v1/notes/n1", "-X", "OPTIONS",
                           "-H", "Origin: http://127.0.0.1:1", "-H", "Access-Control-Request-Method: PATCH")
        self.assertEqual(st, 403)
        self.assertNotIn("access-control-allow-origin", h)
        st, h, body, _ = curl(self.api + "/v1/notes/n1", "-H", "Origin: " + self.origin)
        self.assertEqual((st, h["access-control-allow-origin"]), (200, self.origin), body)

    def test_page_on_another_origin(self):
        chromium = shutil.which("chromium")
        self.assertIsNotNone(chromium, "Debian chromium is missing (scripts/install-deps.sh)")
        url = "%s/index.html?api=%s" % (self.origin, self.api)
        p = subprocess.run(["node", BROWSER, chromium, url, "40000"], capture_output=True,
                           timeout=60, env=dict(os.environ, PT_TMPDIR=self.tmp.name))
        self.assertTrue(p.stdout, p.stderr)
        shown = json.loads(p.stdout.decode().splitlines()[-1])
        self.assertNotIn("error", shown, shown)
        self.assertEqual(shown["get"]["status"], 200, shown)
        self.assertEqual(shown["get"]["body"], {"id": "n1", "text": "note n1"})
        self.assertIsNone(shown["get"]["requestId"])  # not exposed: web_origins exposes gRPC fields only
        self.assertEqual(shown["post"], {"status": 200, "body": {"id": "n-new", "text": "hello"},
                                         "requestId": None})
        self.assertEqual(shown["patch"]["body"], {"id": "n1", "text": "patched: changed"})
        self.assertEqual(shown["grpcWeb"]["status"], 200)
        self.assertEqual(shown["grpcWeb"]["fields"], {"1": "n7", "2": "note n7"})
        self.assertIn("grpc-status: 0", shown["grpcWeb"]["trailers"])
        # the other route's policy does not name this origin: the browser blocks the read
        self.assertIn("blocked", shown["otherOrigin"])
        self.assertIn("Failed to fetch", shown["otherOrigin"]["blocked"])
        # the browser's preflights never reached a backend (only the GET of /private/x did)
        self.assertEqual([r["method"] for r in self.echo.requests], ["GET"])


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    unittest.main()
