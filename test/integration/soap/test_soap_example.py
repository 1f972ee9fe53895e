"""
The example SOAP service (examples/soap) is real SOAP: the npm `soap` client,
a standard SOAP stack, calls it directly (no Portico) from the same WSDLs, both
SOAP versions, faults and WS-Security included.
"""
import json
import os
import subprocess
import unittest

import soap_service

HERE = os.path.dirname(os.path.abspath(__file__))


class SoapExampleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.svc = soap_service.SoapService()
        try:
            p = subprocess.run(["node", os.path.join(HERE, "soap_client.js"), cls.svc.base],
                               capture_output=True, timeout=60, env=soap_service.node_env())
        finally:
            cls.svc.stop()
        if p.returncode != 0:
            raise RuntimeError("soap_client.js failed: %s" % p.stderr.decode()[-2000:])
        cls.out = json.loads(p.stdout)

    def test_calculator_soap11(self):
        self.assertEqual(self.out["add"], {"result": 42})
        self.assertEqual(self.out["divide"], {"quotient": 3, "remainder": 1})
        self.assertEqual(self.out["stats"]["sum"], 9)
        self.assertEqual(self.out["stats"]["min"], 1.5)

    def test_calculator_faults_soap11(self):
        f = self.out["divideByZero"]
        self.assertEqual(f["status"], 500)
        self.assertEqual(f["fault"]["faultcode"], "soap:Client")
        self.assertEqual(f["fault"]["detail"], {"DivideByZeroFault": {"dividend": "7"}})
        f = self.out["overflow"]
        self.assertEqual(f["fault"]["faultcode"], "soap:Server")
        self.assertEqual(f["fault"]["detail"], {"OverflowFault": {"operation": "Add"}})

    def test_calculator_soap12(self):
        self.assertEqual(self.out["add12"], {"result": -2})
        f = self.out["divideByZero12"]
        self.assertEqual(f["status"], 400)   # SOAP 1.2: Sender faults are 400
        self.assertEqual(f["fault"]["Code"]["Value"], "soap:Sender")
        self.assertEqual(f["fault"]["Reason"]["Text"]["$value"], "division by zero")
        self.assertEqual(f["fault"]["Detail"], {"DivideByZeroFault": {"dividend": "1"}})

    def test_customer(self):
        c = self.out["customer1"]["customer"]
        self.assertEqual(c["attributes"], {"version": "3"})
        self.assertEqual(c["name"], "Ada Lovelace")
        self.assertEqual(c["address"]["postalCode"], "SW1Y 4JH")
        self.assertEqual([p["attributes"]["kind"] for p in c["phone"]], ["home", "mobile"])
        self.assertEqual(c["tag"], ["math", "poetry"])
        self.assertEqual(c["photo"], "iVBORw0KGgo=")
        # customer 2: nil middle name, no email; one phone and one tag
        c = self.out["customer2"]["customer"]
        self.assertNotIn("email", c)
        self.assertEqual(c["status"], "SUSPENDED")
        self.assertEqual(len(c["phone"]), 1)

    def test_find_and_create(self):
        f = self.out["find"]
        self.assertEqual(len(f["customer"]), 3)
        self.assertTrue(all(c["address"]["city"] == "Paris" for c in f["customer"]))
        self.assertEqual(f["total"], 50)
        c = self.out["created"]["customer"]
        self.assertEqual(c["name"], "Grace Hopper")
        self.assertEqual(c["tag"], ["cobol", "navy"])
        self.assertEqual(c["phone"][0]["$value"], "+1 555 0100")

    def test_customer_faults(self):
        f = self.out["notFound"]
        self.assertEqual(f["fault"]["faultcode"], "soap:Client")
        self.assertEqual(f["fault"]["detail"], {"CustomerNotFound": {"id": "7"}})
        f = self.out["backend12"]
        self.assertEqual(f["status"], 500)
        self.assertEqual(f["fault"]["Code"]["Value"], "soap:Receiver")
        self.assertEqual(f["fault"]["Detail"]["BackendFailure"]["system"], "crm-db")

    def test_ws_security(self):
        self.assertEqual(self.out["secureWithout"]["status"], 401)
        self.assertEqual(self.out["secureWith"]["customer"]["name"], "Ada Lovelace")


if __name__ == "__main__":
    unittest.main()
