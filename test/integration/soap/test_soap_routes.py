"""
`soap:` routes end to end: curl -> Portico -> the example SOAP service
(examples/soap, the npm `soap` package) and back, for every typed mapping
edge case the service exposes, faults of both SOAP versions, REST mappings
with path and query bindings, WS-Security, and the upstream answers a SOAP
route must refuse (DOCTYPE, XXE, billion laughs, 1 GB, not XML, not SOAP,
not the declared output), timeouts and unreachable services.
"""
import http.server
import json
import os
import re
import socketserver
import subprocess
import threading
import time
import unittest

import portico_test
import soap_service
from portico_test import Portico, curl, free_port, BIN

EX = soap_service.EXAMPLE
CRM = os.path.join(EX, "crm.wsdl")
CALC = os.path.join(EX, "calculator.wsdl")

GET_RESPONSE = (b'<?xml version="1.0" encoding="utf-8"?>'
                b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
                b'<GetCustomerResponse xmlns="http://example.com/crm"><customer><id>7</id>'
                b'<name>Fake</name><middleName xsi:nil="true" '
                b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/><status>ACTIVE</status>'
                b'<balance>1.00</balance><vip>false</vip><visits>1</visits><since>2000-01-01</since>'
                b'<updated>2000-01-01T00:00:00Z</updated><address><street>s</street><city>c</city>'
                b'<country>cc</country></address></customer></GetCustomerResponse>'
                b'</soap:Body></soap:Envelope>')

# Upstream answers a SOAP route must refuse, by mode (the route's `path: /mode/<name>`).
LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
          + b''.join(b'<!ENTITY lol%d "%s">' % (i, (b'&lol%d;' % (i - 1) if i > 1 else b'&lol;') * 10)
                     for i in range(1, 10))
          + b']><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
          b'<GetCustomerResponse xmlns="http://example.com/crm"><customer><name>&lol9;</name>'
          b'</customer></GetCustomerResponse></soap:Body></soap:Envelope>')
XXE = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
       b'<GetCustomerResponse xmlns="http://example.com/crm"><customer><name>&xxe;</name>'
       b'</customer></GetCustomerResponse></soap:Body></soap:Envelope>')
EVIL = {
    "ok": (200, "text/xml", GET_RESPONSE),
    "doctype": (200, "text/xml", GET_RESPONSE.replace(b"?>", b"?><!DOCTYPE soap:Envelope>", 1)),
    "xxe": (200, "text/xml", XXE),
    "laughs": (200, "text/xml", LAUGHS),
    "notxml": (200, "text/html", b"<html><body>Service Unavailable</body></html"),
    "json": (200, "application/json", b'{"customer": {"id": 7}}'),
    "notsoap": (200, "text/xml", b'<?xml version="1.0"?><customer><id>7</id></customer>'),
    "undeclared": (200, "text/xml", GET_RESPONSE.replace(b"GetCustomerResponse", b"FindCustomersResponse")),
    "badtype": (200, "text/xml", GET_RESPONSE.replace(b"<visits>1</visits>", b"<visits>many</visits>")),
    "version": (200, "text/xml", GET_RESPONSE.replace(b"http://schemas.xmlsoap.org/soap/envelope/",
                                                      b"http://www.w3.org/2003/05/soap-envelope")),
    "badutf8": (200, "text/xml", GET_RESPONSE.replace(b"Fake", b"F\xc3\x28ke")),
    "html500": (500, "text/html", b"<h1>Internal Server Error</h1>"),
    # the right local name in another namespace is not the declared output
    "wrongns": (200, "text/xml", GET_RESPONSE.replace(b'xmlns="http://example.com/crm"',
                                                      b'xmlns="http://evil.example/crm"')),
    "deep": (200, "text/xml", GET_RESPONSE.replace(b"<name>Fake</name>",
                                                   b"<name>" + b"<a>" * 10000 + b"</a>" * 10000 + b"</name>")),
    "attrs": (200, "text/xml", GET_RESPONSE.replace(b"<customer>", b"<customer " + b" ".join(
        b'a%d="1"' % i for i in range(100000)) + b">")),
}


class EvilHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        mode = self.path.rsplit("/", 1)[-1]
        self.server.seen.append((mode, dict(self.headers.items()), body))
        if mode == "slow":
            time.sleep(3)
            mode = "ok"
        if mode == "huge":
            # 1 GB promised, written until the reader goes away
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(1 << 30))
            self.end_headers()
            head = (b'<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/'
                    b'soap/envelope/"><soap:Body><GetCustomerResponse xmlns="http://example.com/crm">'
                    b'<customer><name>')
            chunk = b"x" * 65536
            sent = 0
            try:
                self.wfile.write(head)
                while sent < (1 << 30):
                    self.wfile.write(chunk)
                    sent += len(chunk)
            except OSError:
                pass
            self.server.huge_sent = sent
            self.close_connection = True
            return
        status, ctype, data = EVIL[mode]
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class EvilServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # Portico hanging up on a refused answer is the point of most cases here

    def __init__(self):
        super().__init__(("127.0.0.1", 0), EvilHandler)
        self.seen = []
        self.huge_sent = None
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self):
        return self.server_address[1]

    def stop(self):
        self.shutdown()
        self.server_close()


def config(port, svc_port, evil_port, dead_port, pwfile):
    evil_routes = "".join(f"""
  - name: evil-{m}
    match: {{ prefix: /evil/{m}/ }}
    soap: {{ cluster: evil, wsdl: {CRM}, port: CustomerSoap, path: /mode/{m}, timeout: 1s, max_response: 1MiB }}
""" for m in list(EVIL) + ["slow", "huge"])
    return f"""
listeners:
  - address: 127.0.0.1:{port}
clusters:
  - name: soapsvc
    protocol: http
    endpoints: [ "127.0.0.1:{svc_port}" ]
  - name: evil
    protocol: http
    endpoints: [ "127.0.0.1:{evil_port}" ]
  - name: dead
    protocol: http
    endpoints: [ "127.0.0.1:{dead_port}" ]
routes:
  - name: crm
    match: {{ prefix: /crm/ }}
    soap:
      cluster: soapsvc
      wsdl: {CRM}
      service: CustomerService
      port: CustomerSoap
      operations:
        GetCustomer: {{ get: "/crm/customers/{{id}}" }}
        FindCustomers: {{ get: "/crm/customers" }}
        CreateCustomer: {{ post: "/crm/customers" }}
        UpdateCustomer: {{ patch: "/crm/customers/{{id}}" }}
        DeleteCustomer: {{ delete: "/crm/customers/{{id}}" }}
  - name: crmz
    match: {{ prefix: /crmz/ }}
    soap: {{ cluster: soapsvc, wsdl: {CRM}, port: CustomerSoap }}
    filters: [ {{ compress: {{ types: [ application/json ], min_size: 100 }} }} ]
  - name: crm12
    match: {{ prefix: /crm12/ }}
    soap: {{ cluster: soapsvc, wsdl: {CRM}, port: CustomerSoap12 }}
  - name: calc
    match: {{ prefix: /calc/ }}
    soap: {{ cluster: soapsvc, wsdl: {CALC}, port: CalculatorSoap }}
  - name: calc12
    match: {{ prefix: /calc12/ }}
    soap: {{ cluster: soapsvc, wsdl: {CALC}, service: CalculatorService, port: CalculatorSoap12 }}
  - name: secure
    match: {{ prefix: /secure/ }}
    soap:
      cluster: soapsvc
      wsdl: {CRM}
      port: CustomerSoap
      path: /crm-secure
      ws_security: {{ username: portico, password_file: {pwfile} }}
  - name: insecure
    match: {{ prefix: /insecure/ }}
    soap: {{ cluster: soapsvc, wsdl: {CRM}, port: CustomerSoap, path: /crm-secure }}
  - name: dead
    match: {{ prefix: /dead/ }}
    soap: {{ cluster: dead, wsdl: {CALC}, port: CalculatorSoap }}
{evil_routes}
"""


def jpost(url, body, *extra):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    st, h, out, err = curl("-X", "POST", "-H", "Content-Type: application/json", "--data-binary",
                           data, *extra, url)
    return st, h, out, err


def js(out):
    return json.loads(out)


class SoapRoutesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.svc = soap_service.SoapService()
        cls.evil = EvilServer()
        cls.port = free_port()
        cls.pwdir = portico_test.tempfile.TemporaryDirectory()
        pw = os.path.join(cls.pwdir.name, "crm.password")
        with open(pw, "w") as f:
            f.write("s3cret-token\n")
        cls.p = Portico(config(cls.port, cls.svc.port, cls.evil.port, free_port(), pw), workers=2)
        try:
            cls.p.wait_ready(cls.port)
        except Exception:
            print(cls.p.output())
            cls.tearDownClass()
            raise
        cls.url = f"http://127.0.0.1:{cls.port}"

    @classmethod
    def tearDownClass(cls):
        code = cls.p.stop() if cls.p.proc.poll() is None else cls.p.proc.returncode
        cls.svc.stop()
        cls.evil.stop()
        cls.pwdir.cleanup()
        if code != 0:
            raise AssertionError("portico did not exit cleanly: %s" % code)

    def call(self, route, op, body):
        return jpost(f"{self.url}/{route}/{op}", body)

    def ok(self, route, op, body):
        st, h, out, err = self.call(route, op, body)
        self.assertEqual(st, 200, out)
        self.assertTrue(h["content-type"].startswith("application/json"))
        return js(out)

    # ---- typed mapping --------------------------------------------------------------------

    def test_calculator_element_order_follows_the_schema(self):
        self.assertEqual(self.ok("calc", "Add", {"a": 40, "b": 2}), {"result": 42})
        # JSON key order is not the sequence order: Subtract(a=40, b=2) still
        self.assertEqual(self.ok("calc", "Subtract", {"b": 2, "a": 40}), {"result": 38})
        self.assertEqual(self.ok("calc", "Divide", {"a": 7, "b": 2}), {"quotient": 3, "remainder": 1})
        # over HTTP/2 (h2c) too
        st, h, out, _ = jpost(f"{self.url}/calc/Add", {"a": 2, "b": 3}, "--http2-prior-knowledge")
        self.assertEqual((st, js(out)), (200, {"result": 5}))

    def test_full_customer(self):
        c = self.ok("crm", "GetCustomer", {"id": 1})["customer"]
        self.assertEqual(c, {
            "@version": 3, "id": 1, "name": "Ada Lovelace", "middleName": "King",
            "email": "ada@example.com", "status": "ACTIVE", "balance": "1234.50",
            "creditLimit": 5000.25, "vip": True, "visits": 65535, "since": "1835-07-08",
            "updated": "2026-12-01T10:30:00Z",
            "address": {"street": "12 St James Square", "city": "London", "postalCode": "SW1Y 4JH",
                        "country": "GB"},
            "phone": [{"@kind": "home", "#text": "+44 20 7946 0001"},
                      {"@kind": "mobile", "#text": "+44 7700 900001"}],
            "tag": ["math", "poetry"], "photo": "iVBORw0KGgo="})

    def test_nil_absent_and_lists_of_one(self):
        c = self.ok("crm", "GetCustomer", {"id": 2})["customer"]
        self.assertIsNone(c["middleName"])          # xsi:nil -> null
        self.assertNotIn("email", c)                # absent optional element -> absent key
        self.assertNotIn("creditLimit", c)
        self.assertNotIn("postalCode", c["address"])
        self.assertEqual(c["phone"], [{"@kind": "work", "#text": "+44 20 7946 0002"}])  # one -> array
        self.assertEqual(c["tag"], ["engines"])
        self.assertIs(c["vip"], False)
        self.assertEqual(c["visits"], 0)
        self.assertEqual(c["balance"], "-0.01")
        self.assertEqual(c["updated"], "2026-11-30T23:59:59.123+01:00")  # dateTime as sent

    def test_long_past_2_53_and_decimal_keep_their_digits(self):
        c = self.ok("crm", "GetCustomer", {"id": "9007199254740993"})["customer"]
        self.assertEqual(c["id"], "9007199254740993")
        self.assertEqual(c["balance"], "12345678901234567890.123456789")
        self.assertNotIn("phone", c)                 # zero repeated elements: no key

    def test_nillable_double_and_empty_repeated_input(self):
        r = self.ok("calc", "Stats", {})
        self.assertEqual(r, {"count": 0, "sum": 0, "mean": None})
        r = self.ok("calc", "Stats", {"value": [2.5]})
        self.assertEqual(r, {"count": 1, "sum": 2.5, "mean": 2.5, "min": 2.5, "max": 2.5})

    def test_large_answer_sent_without_a_copy_and_through_filters(self):
        # The output JSON is handed to HTTP/1.1 by reference (pt__resp_body_owned):
        # several answers on one keep-alive connection, each whole and alike; the same
        # call through a response-body filter (compress) and over HTTP/2 takes the copy
        # path and gives the same JSON.
        import gzip
        import http.client
        body = json.dumps({"limit": 40})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        self.addCleanup(conn.close)
        seen = []
        for _ in range(3):
            conn.request("POST", "/crm/FindCustomers", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            raw = r.read()
            self.assertEqual(r.status, 200, raw)
            self.assertEqual(int(r.getheader("content-length")), len(raw))
            seen.append(raw)
        self.assertEqual(seen[0], seen[1])
        self.assertEqual(seen[0], seen[2])
        want = js(seen[0])
        self.assertGreater(len(want["customer"]), 10)
        conn.request("POST", "/crmz/FindCustomers", body,
                     {"Content-Type": "application/json", "Accept-Encoding": "gzip"})
        r = conn.getresponse()
        raw = r.read()
        self.assertEqual(r.status, 200, raw)
        self.assertEqual(r.getheader("content-encoding"), "gzip")
        self.assertEqual(js(gzip.decompress(raw)), want)
        st, _, out, _ = jpost(f"{self.url}/crm/FindCustomers", {"limit": 40}, "--http2-prior-knowledge")
        self.assertEqual(st, 200, out)
        self.assertEqual(js(out), want)

    def test_list_of_one_customer(self):
        r = self.ok("crm", "FindCustomers", {"city": "Zurich", "status": "CLOSED", "limit": 1})
        self.assertEqual(len(r["customer"]), 1)
        self.assertEqual(r["total"], 18)
        r = self.ok("crm", "FindCustomers", {"city": "Nowhere"})
        self.assertEqual(r, {"total": 0})

    def test_create_with_nested_repeated_attributes_nil(self):
        body = {"tag": ["a", "b"], "name": "Grace Hopper", "status": "ACTIVE", "balance": "10.50",
                "middleName": None, "vip": True,
                "address": {"country": "US", "street": "1 Navy Yard", "city": "Arlington"},
                "phone": [{"#text": "+1 555 0100", "@kind": "work"}]}
        c = self.ok("crm", "CreateCustomer", body)["customer"]
        self.assertEqual(c["name"], "Grace Hopper")
        self.assertEqual(c["balance"], "10.50")
        self.assertIsNone(c["middleName"])
        self.assertIs(c["vip"], True)
        self.assertEqual(c["phone"], [{"@kind": "work", "#text": "+1 555 0100"}])
        self.assertEqual(c["tag"], ["a", "b"])
        self.assertEqual(c["address"], {"street": "1 Navy Yard", "city": "Arlington", "country": "US"})
        # a decimal given as a JSON number is accepted too
        c = self.ok("crm", "CreateCustomer", {"name": "N", "status": "CLOSED", "balance": 3.25,
                                              "address": {"street": "s", "city": "c", "country": "x"}})
        self.assertEqual(c["customer"]["balance"], "3.25")

    # ---- client mistakes: 400 with the JSON path ------------------------------------------------

    def bad(self, route, op, body, field, *extra, status=400):
        st, h, out, err = jpost(f"{self.url}/{route}/{op}", body, *extra)
        self.assertEqual(st, status, out)
        e = js(out)["error"]
        self.assertEqual(e["code"], "INVALID" if status == 400 else e["code"])
        self.assertIn("request_id", e)
        if field is not None:
            fields = [f["field"] for f in e.get("fields", [])]
            self.assertTrue(any(f == field or f.startswith(field) for f in fields),
                            "%r not in %r (%s)" % (field, fields, out))
        return e

    def test_wrong_types_are_400_with_the_path(self):
        self.bad("calc", "Add", {"a": "forty", "b": 2}, "a")
        self.bad("calc", "Add", {"a": 1.5, "b": 2}, "a")
        self.bad("calc", "Add", {"a": 3000000000, "b": 2}, "a")     # outside xsd:int
        self.bad("crm", "CreateCustomer", {"name": "x", "status": "WEIRD", "balance": "1",
                                           "address": {"street": "s", "city": "c", "country": "x"}},
                 "status")                                           # not an enumeration value
        self.bad("crm", "CreateCustomer", {"name": "x", "status": "ACTIVE", "balance": "1",
                                           "address": {"street": "s", "country": "x", "city": 5}},
                 "address.city")
        self.bad("crm", "CreateCustomer", {"name": "x", "status": "ACTIVE", "balance": "1",
                                           "address": {"street": "s", "city": "c", "country": "x"},
                                           "phone": [{"@kind": "fax", "#text": "1"}]}, "phone[0]")

    def test_unknown_and_missing_fields(self):
        self.bad("calc", "Add", {"a": 1, "b": 2, "c": 3}, "c")
        self.bad("calc", "Add", {"a": 1}, "b")
        self.bad("calc", "Add", {"a": None, "b": 1}, "a")                # null, not nillable

    def test_bad_json_and_media_type(self):
        e = self.bad("calc", "Add", "{\"a\": 1,", None)
        st, h, out, _ = curl("-X", "POST", "-H", "Content-Type: text/plain", "--data", "a=1",
                             f"{self.url}/calc/Add")
        self.assertEqual(st, 415, out)
        self.assertEqual(js(out)["error"]["code"], "MEDIA_TYPE")

    def test_unknown_operation_and_methods(self):
        st, h, out, _ = jpost(f"{self.url}/calc/Power", {"a": 1})
        self.assertEqual(st, 404, out)
        self.assertEqual(js(out)["error"]["code"], "NOT_FOUND")
        st, h, out, _ = curl(f"{self.url}/calc/Add")
        self.assertEqual(st, 405, out)
        self.assertEqual(h["allow"], "POST")
        st, h, out, _ = curl("-X", "PUT", f"{self.url}/crm/customers/1")
        self.assertEqual(st, 405, out)
        self.assertEqual(set(h["allow"].split(", ")), {"GET", "PATCH", "DELETE"})

    # ---- REST mappings --------------------------------------------------------------------------

    def test_rest_get_with_path_variable(self):
        st, h, out, _ = curl(f"{self.url}/crm/customers/1")
        self.assertEqual(st, 200, out)
        self.assertEqual(js(out)["customer"]["name"], "Ada Lovelace")
        st, h, out, _ = curl(f"{self.url}/crm/customers/abc")
        self.assertEqual(st, 400, out)
        self.assertIn("id", out.decode())

    def test_rest_query_binding(self):
        st, h, out, _ = curl(f"{self.url}/crm/customers?city=Paris&limit=2&status=SUSPENDED")
        self.assertEqual(st, 200, out)
        r = js(out)
        self.assertEqual(len(r["customer"]), 2)
        self.assertTrue(all(c["address"]["city"] == "Paris" and c["status"] == "SUSPENDED"
                            for c in r["customer"]))
        st, h, out, _ = curl(f"{self.url}/crm/customers?city=New%20York")
        self.assertEqual((st, js(out)), (200, {"total": 0}))
        st, h, out, _ = curl(f"{self.url}/crm/customers?bogus=1")
        self.assertEqual(st, 400, out)
        self.assertIn("bogus", js(out)["error"]["detail"])
        st, h, out, _ = curl(f"{self.url}/crm/customers?limit=ten")
        self.assertEqual(st, 400, out)

    def test_rest_create_patch_delete(self):
        st, h, out, _ = jpost(f"{self.url}/crm/customers",
                              {"name": "Temp", "status": "ACTIVE", "balance": "0",
                               "address": {"street": "s", "city": "c", "country": "x"}})
        self.assertEqual(st, 200, out)
        cid = js(out)["customer"]["id"]
        st, h, out, _ = curl("-X", "PATCH", "-H", "Content-Type: application/json", "--data",
                             '{"email": "t@example.com"}', f"{self.url}/crm/customers/{cid}")
        self.assertEqual(st, 200, out)
        c = js(out)["customer"]
        self.assertEqual((c["id"], c["email"], c["@version"]), (cid, "t@example.com", 2))
        st, h, out, _ = curl("-X", "DELETE", f"{self.url}/crm/customers/{cid}")
        self.assertEqual((st, js(out)), (200, {"deleted": True}))
        st, h, out, _ = curl(f"{self.url}/crm/customers/{cid}")
        self.assertEqual(st, 400, out)                      # the service's NotFound fault
        self.assertEqual(js(out)["error"]["detail"]["CustomerNotFound"]["id"], cid)

    # ---- faults -----------------------------------------------------------------------------------

    def test_faults_soap11(self):
        st, h, out, _ = self.call("calc", "Divide", {"a": 7, "b": 0})
        self.assertEqual(st, 400, out)                      # soap:Client
        e = js(out)["error"]
        self.assertEqual(e["code"], "Client")
        self.assertEqual(e["message"], "division by zero")
        self.assertEqual(e["detail"], {"DivideByZeroFault": {"dividend": 7}})
        self.assertEqual(e["request_id"], h["x-request-id"])
        st, h, out, _ = self.call("calc", "Add", {"a": 2147483647, "b": 1})
        self.assertEqual(st, 500, out)                      # soap:Server
        e = js(out)["error"]
        self.assertEqual(e["code"], "Server")
        self.assertEqual(e["detail"], {"OverflowFault": {"operation": "Add"}})
        st, h, out, _ = self.call("crm", "GetCustomer", {"id": 500})
        self.assertEqual(st, 500, out)
        self.assertEqual(js(out)["error"]["detail"],
                         {"BackendFailure": {"system": "crm-db", "retryable": True}})

    def test_faults_soap12(self):
        self.assertEqual(self.ok("calc12", "Add", {"a": -5, "b": 3}), {"result": -2})
        st, h, out, _ = self.call("calc12", "Divide", {"a": 1, "b": 0})
        self.assertEqual(st, 400, out)
        e = js(out)["error"]
        self.assertEqual(e["code"], "Sender")
        self.assertEqual(e["message"], "division by zero")
        self.assertEqual(e["detail"], {"DivideByZeroFault": {"dividend": 1}})
        st, h, out, _ = self.call("crm12", "GetCustomer", {"id": 500})
        self.assertEqual(st, 500, out)
        self.assertEqual(js(out)["error"]["code"], "Receiver")
        self.assertEqual(self.ok("crm12", "GetCustomer", {"id": 2})["customer"]["tag"], ["engines"])

    def test_soap_action_and_content_type_per_version(self):
        self.ok("evil/ok", "GetCustomer", {"id": 7})
        mode, headers, body = [s for s in self.evil.seen if s[0] == "ok"][-1]
        h = {k.lower(): v for k, v in headers.items()}
        self.assertEqual(h["soapaction"], '"http://example.com/crm/GetCustomer"')
        self.assertTrue(h["content-type"].startswith("text/xml"))
        self.assertRegex(body, rb"<(\w+:)?id>7</(\w+:)?id>")
        self.assertIn(b"http://schemas.xmlsoap.org/soap/envelope/", body)
        # SOAP 1.2 through the real service: the action rides in the Content-Type
        self.assertEqual(self.ok("calc12", "Divide", {"a": 9, "b": 4}), {"quotient": 2, "remainder": 1})

    def test_ws_security_username_token(self):
        c = self.ok("secure", "GetCustomer", {"id": 1})["customer"]
        self.assertEqual(c["name"], "Ada Lovelace")
        # without the token the service answers a Client fault (HTTP 401, 1.2-style children
        # in a 1.1 envelope): relayed as the service's verdict, like any Client fault
        st, h, out, _ = self.call("insecure", "GetCustomer", {"id": 1})
        self.assertEqual(st, 400, out)
        e = js(out)["error"]
        self.assertEqual((e["code"], e["subcode"]), ("Client", "AuthenticationFailure"))

    # ---- upstream answers that must be refused ----------------------------------------------------

    def refused(self, mode, status=502, words=()):
        t0 = time.monotonic()
        st, h, out, _ = self.call(f"evil/{mode}", "GetCustomer", {"id": 7})
        took = time.monotonic() - t0
        self.assertEqual(st, status, out)
        e = js(out)["error"]
        for w in words:
            self.assertIn(w, e.get("detail", "").lower(), out)
        self.assertNotIn(b"root:", out)
        return e, took

    def test_doctype_xxe_and_billion_laughs_refused(self):
        self.refused("doctype", words=["doctype"])
        self.refused("xxe", words=["doctype"])
        e, took = self.refused("laughs", words=["doctype"])
        self.assertLess(took, 5)

    def test_not_xml_not_soap_not_declared(self):
        self.refused("notxml", words=["not xml"])
        self.refused("json", words=["not xml"])
        self.refused("badutf8")
        self.refused("notsoap", words=["soap"])
        self.refused("version", words=["soap 1.2"])
        self.refused("undeclared", words=["findcustomersresponse"])
        self.refused("badtype", words=["visits"])
        e, _ = self.refused("html500", words=["500"])
        self.refused("wrongns")

    def test_deep_nesting_and_attribute_floods_refused(self):
        e, took = self.refused("deep")
        self.assertLess(took, 5)
        e, took = self.refused("attrs")
        self.assertLess(took, 5)

    def test_huge_answer_is_cut_off(self):
        rss0 = self.rss_kb()
        e, took = self.refused("huge", words=["large"])
        self.assertLess(took, 20)
        # the service got to send a few MB at most before Portico hung up, not 1 GB
        for _ in range(100):
            if self.evil.huge_sent is not None:
                break
            time.sleep(0.05)
        self.assertIsNotNone(self.evil.huge_sent)
        self.assertLess(self.evil.huge_sent, 256 << 20)
        self.assertLess(self.rss_kb() - rss0, 64 * 1024)
        # and Portico still serves
        self.assertEqual(self.ok("calc", "Add", {"a": 1, "b": 1}), {"result": 2})

    def rss_kb(self):
        with open(f"/proc/{self.p.proc.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def test_timeout_and_unreachable(self):
        st, h, out, _ = self.call("evil/slow", "GetCustomer", {"id": 7})
        self.assertEqual(st, 504, out)
        self.assertEqual(js(out)["error"]["code"], "TIMEOUT")
        st, h, out, _ = self.call("dead", "Add", {"a": 1, "b": 2})
        self.assertIn(st, (502, 503), out)
        self.assertIn(js(out)["error"]["code"], ("UPSTREAM", "UNAVAILABLE"))


class SoapConfigTest(unittest.TestCase):
    """WSDL and mapping errors are FILE:LINE:COL and refuse to start (and to reload)."""

    def validate(self, d, text):
        path = os.path.join(d, "portico.yaml")
        with open(path, "w") as f:
            f.write(text)
        p = subprocess.run([BIN, "--validate", "-c", path], capture_output=True, timeout=30)
        return p.returncode, (p.stdout + p.stderr).decode()

    def base(self, soap):
        return f"""
listeners: [ {{ address: "127.0.0.1:{free_port()}" }} ]
clusters: [ {{ name: svc, protocol: http, endpoints: [ "127.0.0.1:9" ] }} ]
routes:
  - match: {{ prefix: /crm/ }}
    soap: {soap}
"""

    def test_config_errors(self):
        with portico_test.tempfile.TemporaryDirectory() as d:
            rc, out = self.validate(d, self.base(f"{{ cluster: svc, wsdl: {CRM}, port: CustomerSoap }}"))
            self.assertEqual(rc, 0, out)
            bad = os.path.join(d, "bad.wsdl")
            with open(CRM) as f:
                text = f.read()
            with open(bad, "w") as f:   # a typo'd type on line 60-ish
                f.write(text.replace('type="xsd:decimal"', 'type="xsd:decimall"', 1))
            rc, out = self.validate(d, self.base("{ cluster: svc, wsdl: bad.wsdl, port: CustomerSoap }"))
            self.assertNotEqual(rc, 0)
            line = [i + 1 for i, l in enumerate(text.splitlines()) if 'xsd:decimal"' in l][0]
            self.assertRegex(out, re.escape(bad) + r":%d:\d+: " % line)
            rc, out = self.validate(d, self.base("{ cluster: svc, wsdl: nope.wsdl }"))
            self.assertNotEqual(rc, 0)
            self.assertIn("nope.wsdl", out)
            cases = [
                ("{ cluster: svc, wsdl: %s }" % CRM, "CustomerSoap"),        # two ports: pick one
                ("{ cluster: svc, wsdl: %s, port: Nope }" % CRM, "Nope"),
                ("{ cluster: nosuch, wsdl: %s, port: CustomerSoap }" % CRM, "nosuch"),
                ("{ cluster: svc, wsdl: %s, port: CustomerSoap, operations: { Nope: { get: /crm/x } } }"
                 % CRM, "Nope"),
                ("{ cluster: svc, wsdl: %s, port: CustomerSoap, operations: { GetCustomer: "
                 "{ get: \"/crm/c/{address}\" } } }" % CRM, "address"),
                ("{ cluster: svc, wsdl: %s, port: CustomerSoap, operations: { GetCustomer: "
                 "{ fetch: \"/crm/c/{id}\" } } }" % CRM, "fetch"),
                ("{ cluster: svc, wsdl: %s, port: CustomerSoap, operations: { GetCustomer: "
                 "{ get: \"/other/{id}\" } } }" % CRM, "prefix"),
                ("{ cluster: svc, wsdl: %s, port: CustomerSoap, ws_security: { username: u, "
                 "password_file: missing.txt } }" % CRM, "missing.txt"),
                ("{ cluster: svc, wsdl: %s, port: CustomerSoap, colour: blue }" % CRM, "colour"),
            ]
            for soap, word in cases:
                rc, out = self.validate(d, self.base(soap))
                self.assertNotEqual(rc, 0, soap)
                self.assertRegex(out, r"portico\.yaml:\d+:\d+: .*" + re.escape(word), soap)

    def test_reload_with_a_broken_wsdl_keeps_serving(self):
        svc = soap_service.SoapService()
        self.addCleanup(svc.stop)
        port = free_port()
        with open(CALC) as f:
            calc = f.read()
        cfg = f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
clusters: [ {{ name: svc, protocol: http, endpoints: [ "127.0.0.1:{svc.port}" ] }} ]
routes:
  - match: {{ prefix: /calc/ }}
    soap: {{ cluster: svc, wsdl: calc.wsdl, port: CalculatorSoap }}
"""
        p = Portico(cfg, extra_files={"calc.wsdl": calc})
        self.addCleanup(p.stop)
        p.wait_ready(port)
        url = f"http://127.0.0.1:{port}/calc/Add"
        self.assertEqual(js(jpost(url, {"a": 1, "b": 2})[2]), {"result": 3})
        with open(os.path.join(p.dir, "calc.wsdl"), "w") as f:
            f.write(calc.replace("</wsdl:definitions>", ""))
        p.reload()
        deadline = time.monotonic() + 10
        while "calc.wsdl:" not in p.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertRegex(p.output(), r"calc\.wsdl:\d+:\d+: ")
        self.assertEqual(js(jpost(url, {"a": 2, "b": 2})[2]), {"result": 4})
        # a good WSDL with another operation set is picked up by the next reload
        with open(os.path.join(p.dir, "calc.wsdl"), "w") as f:
            f.write(calc.replace('<wsdl:operation name="Add">', '<wsdl:operation name="Plus">'))
        p.reload()
        deadline = time.monotonic() + 10
        st = 0
        while time.monotonic() < deadline:
            st = jpost(url, {"a": 1, "b": 2})[0]
            if st == 404:
                break
            time.sleep(0.05)
        self.assertEqual(st, 404)

    def test_call_in_flight_survives_a_reload_that_drops_its_wsdl(self):
        evil = EvilServer()
        self.addCleanup(evil.stop)
        port = free_port()
        with open(CRM) as f:
            crm = f.read()
        cfg = f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
clusters: [ {{ name: evil, protocol: http, endpoints: [ "127.0.0.1:{evil.port}" ] }} ]
routes:
  - match: {{ prefix: /crm/ }}
    soap: {{ cluster: evil, wsdl: crm.wsdl, port: CustomerSoap, path: /mode/slow, timeout: 10s }}
"""
        p = Portico(cfg, extra_files={"crm.wsdl": crm})
        self.addCleanup(p.stop)
        p.wait_ready(port)
        result = {}

        def slow_call():
            result["r"] = jpost(f"http://127.0.0.1:{port}/crm/GetCustomer", {"id": 7})

        t = threading.Thread(target=slow_call)
        t.start()
        deadline = time.monotonic() + 5
        while not evil.seen and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertTrue(evil.seen, "the call did not reach the service")
        # the new config has no soap route: the old snapshot (and its WSDL model)
        # must live until the call in flight is answered
        p.write_config(cfg.replace("soap: {", "respond: { status: 204 } # soap: {"))
        p.reload()
        t.join(15)
        st, h, out, _ = result["r"]
        self.assertEqual(st, 200, out)
        self.assertEqual(js(out)["customer"]["name"], "Fake")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and jpost(f"http://127.0.0.1:{port}/crm/GetCustomer", {})[0] != 204:
            time.sleep(0.05)
        self.assertEqual(jpost(f"http://127.0.0.1:{port}/crm/GetCustomer", {})[0], 204)


if __name__ == "__main__":
    unittest.main()
