"""
test_aggregate_soap.py -- `soap:` calls inside an aggregate, through the real
portico binary: the example SOAP service (examples/soap, the npm `soap`
package), the REST test service beside this file and the Bookstore gRPC
service. A soap call reuses a `soap:` route's WSDL and cluster, whichever of
the two routes comes first in the file.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bookstore"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "soap"))
sys.path.insert(0, HERE)

from portico_test import BIN, Portico, curl, free_port  # noqa: E402
from bookstore_server import BookstoreServer, PB  # noqa: E402
from rest_service import RestService  # noqa: E402
import soap_service  # noqa: E402

ECHO = "bookstore.v1.Bookstore/Echo"
CRM = os.path.join(soap_service.EXAMPLE, "crm.wsdl")

# The aggregates come BEFORE the soap routes they name (`crm`, `crm12`,
# `slowcrm`); the check of route order is test_order_* below.
CONFIG = """
listeners: [ {{ address: 127.0.0.1:{port} }} ]
workers: 2
access_log: {{ path: {log} }}
descriptors: [ {pb} ]
clusters:
  - {{ name: users, endpoints: [ "127.0.0.1:{rest}" ] }}
  - {{ name: books, protocol: grpc, endpoints: [ "127.0.0.1:{bs}" ] }}
  - {{ name: soapsvc, endpoints: [ "127.0.0.1:{soap}" ] }}
routes:
  - match: {{ template: "/mix/{{user}}" }}
    aggregate:
      calls:
        - {{ name: profile, http: {{ cluster: users, path: "/u/{{user}}" }} }}
        - {{ name: item, grpc: {{ cluster: books, method: {echo}, body: {{ message: "item-{{profile.n}}" }} }} }}
        - name: customer
          soap: {{ route: crm, operation: GetCustomer, body: {{ id: "{{profile.n}}" }} }}
          select: [ customer.name, customer.address.city ]
  - match: {{ template: "/req/{{id}}" }}
    aggregate:
      calls:
        - {{ name: a, http: {{ cluster: users, path: "/d/300/a" }} }}
        - {{ name: customer, soap: {{ route: crm, operation: GetCustomer, body: {{ id: "{{id}}" }} }} }}
  - match: {{ template: "/opt/{{id}}" }}
    aggregate:
      calls:
        - {{ name: a, http: {{ cluster: users, path: "/ok/1" }} }}
        - {{ name: customer, optional: true, soap: {{ route: crm12, operation: GetCustomer, body: {{ id: "{{id}}" }} }} }}
  - match: {{ path: /find }}
    aggregate:
      calls:
        - {{ name: paris, soap: {{ route: crm, operation: FindCustomers, body: {{ city: Paris, limit: 2 }} }},
            select: [ total, "customer[].id" ] }}
  - match: {{ path: /slow }}
    aggregate:
      calls:
        - {{ name: a, http: {{ cluster: users, path: "/ok/1" }} }}
        - {{ name: s, timeout: 300ms, soap: {{ route: slowcrm, operation: GetCustomer, body: {{ id: 1 }} }} }}
  - match: {{ path: /slowopt }}
    aggregate:
      calls:
        - {{ name: a, http: {{ cluster: users, path: "/ok/1" }} }}
        - {{ name: s, optional: true, timeout: 300ms, soap: {{ route: slowcrm, operation: GetCustomer, body: {{ id: 1 }} }} }}
  - match: {{ template: "/badid/{{id}}" }}
    aggregate:
      calls:
        - {{ name: customer, soap: {{ route: crm, operation: GetCustomer, body: {{ id: "{{id}}" }} }} }}
  - name: crm
    match: {{ prefix: /crm/ }}
    soap: {{ cluster: soapsvc, wsdl: {crm}, port: CustomerSoap }}
  - name: crm12
    match: {{ prefix: /crm12/ }}
    soap: {{ cluster: soapsvc, wsdl: {crm}, port: CustomerSoap12 }}
  - name: slowcrm
    match: {{ prefix: /slowcrm/ }}
    soap: {{ cluster: users, wsdl: {crm}, port: CustomerSoap, path: /d/3000/slow }}
"""


class AggregateSoapTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="agg-soap-test-")
        cls.rest = RestService()
        cls.bs = BookstoreServer(threads=2).start()
        try:
            cls.soap = soap_service.SoapService()
        except Exception:
            cls.bs.stop()
            cls.rest.stop()
            cls.tmp.cleanup()
            raise
        cls.port = free_port()
        cls.log = os.path.join(cls.tmp.name, "access.log")
        cls.pt = Portico(CONFIG.format(port=cls.port, log=cls.log, pb=PB, rest=cls.rest.port,
                                       bs=cls.bs.port, soap=cls.soap.port, echo=ECHO, crm=CRM),
                         workers=2)
        try:
            cls.pt.wait_ready(cls.port)
        except Exception:
            print(cls.pt.output())
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        code = cls.pt.stop()
        cls.soap.stop()
        cls.bs.stop()
        cls.rest.stop()
        cls.tmp.cleanup()
        if code != 0:
            raise AssertionError("portico exited with %s" % code)

    def get(self, path, timeout=20):
        t0 = time.monotonic()
        st, h, body, err = curl("http://127.0.0.1:%d%s" % (self.port, path), timeout=timeout)
        return st, h, (json.loads(body) if body else None), time.monotonic() - t0

    def wait_cancelled(self, before, timeout=3.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.rest.stats()["cancelled"] > before:
                return
            time.sleep(0.02)
        self.fail("backend saw no cancellation: %r" % self.rest.stats())

    def test_http_grpc_and_dependent_soap(self):
        st, h, body, _ = self.get("/mix/1")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["profile"]["n"], 1)
        self.assertEqual(body["item"]["message"], "item-1")
        # the soap call's id came from the http call's answer
        self.assertEqual(body["customer"],
                         {"customer": {"name": "Ada Lovelace", "address": {"city": "London"}}})
        self.assertNotIn("portico-partial", h)
        st, h, body, _ = self.get("/mix/2")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["customer"]["customer"]["name"], "Charles Babbage")
        # the access log names the soap call, its upstream and status
        deadline = time.monotonic() + 3
        line = None
        while line is None and time.monotonic() < deadline:
            with open(self.log) as f:
                for x in f:
                    if '"path":"/mix/2"' in x:
                        line = json.loads(x)
            time.sleep(0.05)
        self.assertIsNotNone(line)
        calls = {c["name"]: c for c in line["calls"]}
        self.assertEqual(calls["customer"]["status"], 200)
        self.assertIn("127.0.0.1:%d" % self.soap.port, calls["customer"]["upstream"])

    def test_static_body_and_array_select(self):
        st, h, body, _ = self.get("/find")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["paris"]["total"], 50)
        self.assertEqual(len(body["paris"]["customer"]), 2)
        self.assertTrue(all(isinstance(i, int) for i in body["paris"]["customer"]), body)

    def test_required_fault_passed_through(self):
        st, h, body, _ = self.get("/req/7")
        self.assertEqual(st, 400, body)   # soap:Client fault
        self.assertEqual(h.get("portico-failed-call"), "customer")
        self.assertEqual(body["error"]["detail"], {"CustomerNotFound": {"id": 7}})
        self.assertIn("no customer with id 7", json.dumps(body))
        # a Server fault: 500 with the fault JSON
        st, h, body, _ = self.get("/req/500")
        self.assertEqual(st, 500, body)
        self.assertEqual(body["error"]["detail"]["BackendFailure"]["system"], "crm-db")

    def test_optional_fault_listed_under_errors(self):
        st, h, body, _ = self.get("/opt/7")
        self.assertEqual(st, 200, body)
        self.assertEqual(h.get("portico-partial"), "customer")
        self.assertNotIn("customer", [k for k in body if k != "errors"])
        self.assertEqual(body["errors"]["customer"]["status"], 400)
        self.assertIn("no customer with id 7", body["errors"]["customer"]["message"])
        self.assertEqual(body["a"]["n"], 1)
        st, h, body, _ = self.get("/opt/1")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["customer"]["customer"]["name"], "Ada Lovelace")
        self.assertNotIn("portico-partial", h)

    def test_timeout(self):
        before = self.rest.stats()["cancelled"]
        st, h, body, dt = self.get("/slow")
        self.assertEqual(st, 504, body)
        self.assertEqual(h.get("portico-failed-call"), "s")
        self.assertLess(dt, 2.5)
        self.wait_cancelled(before)
        st, h, body, dt = self.get("/slowopt")
        self.assertEqual(st, 200, body)
        self.assertEqual(h.get("portico-partial"), "s")
        self.assertEqual(body["errors"]["s"]["status"], 504)

    def test_body_not_fitting_at_request_time(self):
        st, h, body, _ = self.get("/badid/abc")
        self.assertEqual(st, 400, body)
        self.assertEqual(h.get("portico-failed-call"), "customer")
        self.assertIn("id", body["error"]["detail"])


class AggregateSoapConfigTest(unittest.TestCase):
    def validate(self, text):
        with tempfile.TemporaryDirectory(prefix="agg-soap-conf-") as d:
            path = os.path.join(d, "p.yaml")
            with open(path, "w") as f:
                f.write(text)
            p = subprocess.run([BIN, "--validate", "-c", path], capture_output=True, timeout=30)
            return p.returncode, (p.stdout + p.stderr).decode().replace(path, "p.yaml")

    HEAD = """listeners: [ { address: 127.0.0.1:1 } ]
clusters:
  - { name: users, endpoints: [ "127.0.0.1:2" ] }
routes:
"""
    SOAP_ROUTE = """  - name: crm
    match: { prefix: /crm/ }
    soap: { cluster: users, wsdl: %s, port: CustomerSoap }
""" % CRM
    AGG = """  - match: { path: /a }
    aggregate:
      calls:
        - { name: c, soap: { route: crm, operation: GetCustomer, body: { id: 3 } } }
"""

    def test_order_aggregate_first(self):
        rc, out = self.validate(self.HEAD + self.AGG + self.SOAP_ROUTE)
        self.assertEqual(rc, 0, out)

    def test_order_soap_first(self):
        rc, out = self.validate(self.HEAD + self.SOAP_ROUTE + self.AGG)
        self.assertEqual(rc, 0, out)

    def test_unknown_route(self):
        rc, out = self.validate(self.HEAD + self.SOAP_ROUTE + """  - aggregate:
      calls:
        - { name: c, soap: { route: nope, operation: GetCustomer } }
""")
        self.assertNotEqual(rc, 0)
        self.assertIn("p.yaml:10:37: aggregate: call 'c': no soap route named 'nope'", out)

    def test_route_not_soap(self):
        rc, out = self.validate(self.HEAD + """  - name: plain
    match: { prefix: /p/ }
    proxy: { cluster: users }
  - aggregate:
      calls:
        - { name: c, soap: { route: plain, operation: GetCustomer } }
""")
        self.assertNotEqual(rc, 0)
        self.assertIn("p.yaml:10:37: aggregate: call 'c': route 'plain' is not a soap route "
                      "(its handler is proxy)", out)

    def test_unknown_operation(self):
        rc, out = self.validate(self.HEAD + """  - aggregate:
      calls:
        - { name: c, soap: { route: crm, operation: Nope } }
""" + self.SOAP_ROUTE)
        self.assertNotEqual(rc, 0)
        self.assertIn("p.yaml:7:53: aggregate: call 'c': soap route 'crm' (port CustomerSoap) "
                      "has no operation 'Nope'", out)

    def test_body_checked_against_input(self):
        # a constant body is built at load: every problem with its JSON path
        rc, out = self.validate(self.HEAD + """  - aggregate:
      calls:
        - { name: c, soap: { route: crm, operation: GetCustomer, body: { id: abc, nope: 1 } } }
""" + self.SOAP_ROUTE)
        self.assertNotEqual(rc, 0)
        self.assertIn("p.yaml:7:72: aggregate: call 'c': body is not GetCustomer's input: id: "
                      "value \"abc\" is not an integer (xs:long)", out)
        self.assertIn("p.yaml:7:72: aggregate: call 'c': body is not GetCustomer's input: nope: "
                      "unknown field", out)
        # with references: the top-level keys are checked at load
        rc, out = self.validate(self.HEAD + """  - match: { template: "/a/{x}" }
    aggregate:
      calls:
        - { name: c, soap: { route: crm, operation: GetCustomer, body: { idd: "{x}" } } }
""" + self.SOAP_ROUTE)
        self.assertNotEqual(rc, 0)
        self.assertIn("p.yaml:8:74: aggregate: call 'c': 'idd' is not a field of GetCustomer's "
                      "input", out)


if __name__ == "__main__":
    unittest.main()
