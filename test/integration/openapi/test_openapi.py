"""
test_openapi.py -- the admin's /openapi.json, /openapi.yaml and /docs (issue 13).

The real portico in front of examples/bookstore's bookstore-server, plus a soap
route (examples/soap/crm.wsdl; no SOAP service needed for the document) and,
after a reload, the test descriptors (test/proto/openapi_test.proto: every
field kind; bookstore_http.proto). Checks:
  - the document validates against the OpenAPI 3.1 schema with npm
    @seriousme/openapi-schema-validator (Debian 12 has no
    python3-openapi-spec-validator), every $ref resolves;
  - specific paths, parameters and schemas (multi-segment variables, query
    parameters, streams, WKTs, SOAP types);
  - /openapi.yaml parses (python3-yaml) to the same document;
  - a reload changes the document; the admin token guards it, not /docs;
  - headless Chromium (Debian chromium, DevTools protocol as in
    test_grpc_ws_bridge) opens /docs, fills the form of GetShelf, sends it
    through Portico to the bookstore and reads the answer off the page.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bookstore"))

from portico_test import ROOT, Portico, free_port  # noqa: E402
from bookstore_server import BookstoreServer, PB  # noqa: E402

VALIDATOR = os.path.join(HERE, "validate_openapi.mjs")
BROWSER = os.path.join(HERE, "docs_browser.js")
BUILD = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(PB))))
TEST_PB = os.environ.get("PT_OPENAPI_TEST_PB", os.path.join(BUILD, "test", "openapi_test.pb"))
HTTP_PB = os.environ.get("PT_HTTP_TEST_PB", os.path.join(BUILD, "test", "bookstore_http.pb"))
CRM_WSDL = os.path.join(ROOT, "examples", "soap", "crm.wsdl")


def get(url, token=None, timeout=10):
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class OpenApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bs = BookstoreServer(threads=1).start()

    @classmethod
    def tearDownClass(cls):
        cls.bs.stop()

    def config(self, extra_routes="", token_file=None):
        return f"""
listeners: [ {{ address: "127.0.0.1:{self.port}" }} ]
admin: {{ address: "127.0.0.1:{self.admin}"{", token_file: " + token_file if token_file else ""} }}
workers: 1
openapi: {{ title: "Bookstore API", version: "7.1" }}
descriptors: [ {PB}{", " + TEST_PB + ", " + HTTP_PB if extra_routes else ""} ]
clusters:
  - {{ name: bookstore, protocol: grpc, endpoints: [ "{self.bs.address}" ] }}
  - {{ name: soapsvc, endpoints: [ "127.0.0.1:9" ] }}
routes:
  - name: crm
    match: {{ prefix: /crm/ }}
    soap:
      cluster: soapsvc
      wsdl: {CRM_WSDL}
      port: CustomerSoap
      operations:
        GetCustomer: {{ get: "/crm/customers/{{id}}" }}
  - name: bookstore
    grpc: {{ cluster: bookstore, services: [ bookstore.v1.Bookstore ],
             web_origins: [ "http://127.0.0.1:{self.admin}" ] }}
{extra_routes}
"""

    def setUp(self):
        self.port, self.admin = free_port(), free_port()
        self.tmp = tempfile.TemporaryDirectory(prefix="pt-openapi-")
        self.addCleanup(self.tmp.cleanup)

    def start(self, text):
        p = Portico(text)

        def stop_clean():  # a clean exit: no sanitizer report, no crash at shutdown
            if p.proc.poll() is None:
                p.proc.terminate()
                p.proc.wait(20)
            out = p.output()
            code = p.stop()
            self.assertEqual(code, 0, out[-4000:])
        self.addCleanup(stop_clean)
        try:
            p.wait_ready(self.port)
            p.wait_ready(self.admin)
        except Exception:
            print(p.output())
            raise
        return p

    def fetch_doc(self, token=None):
        st, h, body = get(f"http://127.0.0.1:{self.admin}/openapi.json", token)
        self.assertEqual(st, 200, body)
        self.assertEqual(h["Content-Type"], "application/json")
        return json.loads(body)

    def validate(self, doc):
        path = os.path.join(self.tmp.name, "doc.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        p = subprocess.run(["node", VALIDATOR, path], capture_output=True, timeout=60)
        out = json.loads(p.stdout or b"{}")
        self.assertTrue(out.get("valid"), (out, p.stderr.decode()))
        self.assertEqual(out["version"], "3.1")

    @staticmethod
    def param(op, name):
        for p in op.get("parameters", []):
            if p["name"] == name:
                return p
        return None

    def test_document_yaml_and_soap(self):
        self.start(self.config())
        doc = self.fetch_doc()
        self.validate(doc)
        self.assertEqual(doc["openapi"], "3.1.0")
        self.assertEqual(doc["info"]["title"], "Bookstore API")
        self.assertEqual(doc["info"]["version"], "7.1")
        self.assertEqual(doc["servers"][0]["url"], f"http://127.0.0.1:{self.port}")
        paths = doc["paths"]
        sc = doc["components"]["schemas"]

        # a unary GET: path variable (int64 as a string), query parameters (json names, nested)
        op = paths["/v1/shelves/{shelf}/books"]["get"]
        self.assertEqual(op["x-grpc-method"], "/bookstore.v1.Bookstore/ListBooks")
        shelf = self.param(op, "shelf")
        self.assertEqual((shelf["in"], shelf["required"]), ("path", True))
        self.assertEqual(shelf["schema"], {"type": "string", "format": "int64",
                                           "pattern": "^-?[0-9]+$"})
        self.assertEqual(self.param(op, "pageSize")["schema"]["format"], "int32")
        self.assertEqual(self.param(op, "filter.genre")["schema"]["$ref"],
                         "#/components/schemas/bookstore.v1.Genre")
        self.assertIn("SCIENCE_FICTION", sc["bookstore.v1.Genre"]["enum"])
        self.assertEqual(op["responses"]["default"]["content"]["application/json"]["schema"],
                         {"$ref": "#/components/schemas/google.rpc.Status"})
        # body field: the request body is the Book; Timestamp as its JSON string
        op = paths["/v1/shelves/{shelf}/books"]["post"]
        self.assertEqual(op["requestBody"]["content"]["application/json"]["schema"],
                         {"$ref": "#/components/schemas/bookstore.v1.Book"})
        self.assertEqual(sc["bookstore.v1.Book"]["properties"]["createTime"]["format"], "date-time")
        self.assertEqual(sc["bookstore.v1.Shelf"]["properties"]["labels"]["additionalProperties"],
                         {"type": "string"})
        # additional binding with response_body
        self.assertEqual(paths["/v1/echo/{message}"]["get"]["operationId"],
                         "bookstore.v1.Bookstore.Echo_2")
        # streams, as the gateway serves them
        watch = paths["/v1/shelves/{shelf}/books:watch"]["get"]
        self.assertEqual(watch["x-portico-streaming"], "server")
        self.assertEqual(set(watch["responses"]["200"]["content"]),
                         {"application/json", "application/x-ndjson", "text/event-stream"})
        bulk = paths["/v1/books:bulkCreate"]["post"]
        self.assertEqual(bulk["x-portico-streaming"], "client")
        self.assertIn("application/x-ndjson", bulk["requestBody"]["content"])
        self.assertEqual(paths["/v1/chat"]["post"]["x-portico-streaming"], "bidi")
        # HttpBody answers are raw bytes
        self.assertIn("*/*", paths["/v1/shelves/{shelf}/cover"]["get"]["responses"]["200"]["content"])

        # the soap route: POST <prefix><Operation>, its REST mapping, XSD types
        post = paths["/crm/GetCustomer"]["post"]
        self.assertEqual(post["x-soap-operation"], "GetCustomer")
        ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        gc = sc[ref.rsplit("/", 1)[1]]
        self.assertEqual(gc["required"], ["id"])
        self.assertEqual(gc["properties"]["id"]["type"], ["integer", "string"])  # xs:long
        rest = paths["/crm/customers/{id}"]["get"]
        self.assertEqual(self.param(rest, "id")["in"], "path")
        cust = sc["CustomerService.CustomerSoap.Customer"]["properties"]
        self.assertEqual(cust["balance"]["format"], "decimal")
        self.assertEqual(cust["balance"]["type"], "string")
        self.assertEqual(cust["phone"]["type"], "array")   # maxOccurs > 1

        # YAML: the same document
        st, h, body = get(f"http://127.0.0.1:{self.admin}/openapi.yaml")
        self.assertEqual(st, 200)
        self.assertEqual(h["Content-Type"], "application/yaml")
        self.assertEqual(yaml.safe_load(body), doc)

        # /docs: our page, no CDN
        st, h, body = get(f"http://127.0.0.1:{self.admin}/docs")
        self.assertEqual(st, 200)
        self.assertTrue(h["Content-Type"].startswith("text/html"))
        self.assertIn(b"/openapi.json", body)
        self.assertNotIn(b"<script src=", body)

    def test_route_match_conditions(self):
        # a route's methods, headers and host: the document says what a request needs to reach it
        self.start(self.config(extra_routes=f"""
  - name: crm2
    match: {{ prefix: /crm2/, methods: [GET], host: [ crm.example.com ],
             headers: {{ x-tenant: acme, authorization: true }} }}
    soap:
      cluster: soapsvc
      wsdl: {CRM_WSDL}
      port: CustomerSoap
      operations:
        GetCustomer: {{ get: "/crm2/customers/{{id}}" }}
"""))
        doc = self.fetch_doc()
        self.validate(doc)
        paths = doc["paths"]
        self.assertNotIn("/crm2/GetCustomer", paths)  # POST: the route takes GET only
        op = paths["/crm2/customers/{id}"]["get"]  # the mapping's `get:` is GET
        self.assertEqual(op["x-portico-route"], "crm2")
        self.assertEqual(op["x-portico-hosts"], ["crm.example.com"])
        tenant = self.param(op, "x-tenant")
        self.assertEqual((tenant["in"], tenant["required"]), ("header", True))
        self.assertEqual(tenant["schema"], {"type": "string", "enum": ["acme"]})
        auth = self.param(op, "authorization")
        self.assertEqual((auth["in"], auth["required"]), ("header", True))
        self.assertNotIn("enum", auth["schema"])
        # the route without conditions is rendered as before
        plain = paths["/crm/GetCustomer"]["post"]
        self.assertNotIn("x-portico-hosts", plain)
        self.assertIsNone(self.param(plain, "x-tenant"))

    def test_reload_test_descriptors_and_token(self):
        tok = os.path.join(self.tmp.name, "admin.token")
        with open(tok, "w") as f:
            f.write("s3cret-0123456789abcdef\n")
        p = self.start(self.config(token_file=tok))
        # the token guards the document, not the (static) page
        self.assertEqual(get(f"http://127.0.0.1:{self.admin}/openapi.json")[0], 401)
        self.assertEqual(get(f"http://127.0.0.1:{self.admin}/docs")[0], 200)
        before = self.fetch_doc("s3cret-0123456789abcdef")
        self.assertNotIn("/v1/{name}:find", before["paths"])

        p.write_config(self.config(token_file=tok, extra_routes="""
  - name: explorer
    match: { prefix: /v1/ }
    grpc: { cluster: bookstore, services: [ pt.openapi.Explorer, pt.bookstore.Bookstore ],
            proto_names: true, default_bindings: true, stream_format: ndjson }
"""))
        p.reload()
        deadline = time.monotonic() + 15
        doc = before
        while time.monotonic() < deadline:
            doc = self.fetch_doc("s3cret-0123456789abcdef")
            if "/v1/{name}:find" in doc["paths"]:
                break
            time.sleep(0.1)
        self.assertIn("/v1/{name}:find", doc["paths"], "reload did not change the document")
        self.validate(doc)
        sc = doc["components"]["schemas"]
        # proto_names route: its own schema copies with proto field names
        s = sc["pt.test.Scalars-proto_names"]["properties"]
        self.assertEqual(s["f_int64"], {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"})
        self.assertEqual(s["f_uint64"]["format"], "uint64")
        self.assertEqual(s["f_bytes"]["contentEncoding"], "base64")
        self.assertIn("custom", s)
        w = sc["pt.test.WKTs-proto_names"]["properties"]
        self.assertEqual(w["dur"]["format"], "duration")
        self.assertEqual(w["i32v"]["type"], ["integer", "null"])
        self.assertEqual(w["any"]["required"], ["@type"])
        tree = sc["pt.openapi.Tree-proto_names"]["properties"]
        self.assertEqual(tree["by_name"]["additionalProperties"]["$ref"],
                         "#/components/schemas/pt.openapi.Tree-proto_names")
        # the multi-segment variable and the nested query parameters
        find = doc["paths"]["/v1/{name}:find"]["get"]
        name = self.param(find, "name")
        self.assertEqual(name["schema"]["pattern"], "^projects/[^/]+/items/.*$")
        self.assertTrue(name["x-portico-multi-segment"])
        self.assertEqual(self.param(find, "m.m_str")["style"], "deepObject")
        self.assertIsNone(self.param(find, "tree.left.label"))
        self.assertIn("without one: ndjson", find["responses"]["200"]["description"])
        upd = doc["paths"]["/v1/{book.name}"]["patch"]
        self.assertEqual(self.param(upd, "book.name")["schema"]["pattern"],
                         "^shelves/[^/]+/books/[^/]+$")
        # its default binding POST /pt.openapi.Explorer/Echo is outside the route's prefix:
        # requests could not reach it, so it is not listed
        self.assertFalse(any(k.startswith("/pt.openapi.") for k in doc["paths"]))
        unlisted = {(u["method"], u["path"]) for u in doc["x-portico-unlisted"]}
        self.assertIn(("PURGE", "/v1/{name=projects/*}"), unlisted)
        # bookstore.v1's GET /v1/shelves came first (route order): the later route's is unlisted
        self.assertEqual(doc["paths"]["/v1/shelves"]["post"]["x-portico-route"], "bookstore")
        st, _, body = get(f"http://127.0.0.1:{self.admin}/openapi.yaml", "s3cret-0123456789abcdef")
        self.assertEqual(yaml.safe_load(body), doc)

    def test_docs_page_in_chromium(self):
        chromium = shutil.which("chromium")
        self.assertIsNotNone(chromium, "Debian chromium is missing (scripts/install-deps.sh)")
        self.start(self.config())
        env = dict(os.environ, PT_TMPDIR=self.tmp.name)
        steps = [["bookstore.v1.Bookstore.GetShelf", {"shelf": "1"}],
                 # a method that fails: the google.rpc.Status shown as the gateway sent it
                 ["bookstore.v1.Bookstore.GetShelf", {"shelf": "987654"}],
                 # query parameters (a repeated field, a nested one) and a multi-segment-free GET
                 ["bookstore.v1.Bookstore.ListBooks", {"shelf": "1", "pageSize": "1"}]]
        p = subprocess.run(["node", BROWSER, chromium, f"http://127.0.0.1:{self.admin}/docs",
                            json.dumps(steps), "30000"], capture_output=True, timeout=90, env=env)
        out = json.loads(p.stdout or b"{}")
        self.assertNotIn("error", out, (out, p.stderr.decode()[-2000:]))
        self.assertEqual(out["title"], "Bookstore API 7.1")
        self.assertIn("bookstore.v1.Bookstore", out["groups"])
        self.assertIn("CustomerService.CustomerSoap", out["groups"])
        ok, missing, listed = out["answers"]
        self.assertNotIn("error", ok, ok)
        self.assertEqual(ok["request"], f"GET http://127.0.0.1:{self.port}/v1/shelves/1")
        self.assertEqual(ok["status"], "200")
        self.assertEqual(json.loads(ok["body"])["id"], "1")
        self.assertIn("content-type: application/json", ok["headers"])
        self.assertEqual(missing.get("status"), "404", missing)
        self.assertEqual(json.loads(missing["body"])["code"], 5)
        self.assertEqual(listed["request"],
                         f"GET http://127.0.0.1:{self.port}/v1/shelves/1/books?pageSize=1")
        self.assertEqual(listed["status"], "200", listed)
        self.assertLessEqual(len(json.loads(listed["body"]).get("books", [])), 1)

if __name__ == "__main__":
    unittest.main()
