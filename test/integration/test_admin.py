"""
The admin listener: /config never shows secrets (issue 14, weak spot "Admin
/config leaks secrets").
"""
import json
import unittest

from portico_test import PorticoTestCase, curl, free_port

SECRETS = ["dXBzdHJlYW06c2VjcmV0", "auth-s3cret", "sess-s3cret", "jwt-s3cret", "tenant-s3cret",
           "resp-s3cret", "plain-s3cret", "bearer-s3cret"]


def config(port, admin_port, admin_extra=""):
    return f"""
listeners:
  - address: 127.0.0.1:{port}
admin: {{ address: 127.0.0.1:{admin_port}{admin_extra} }}
filters:
  - headers:
      request:
        set: {{ x-upstream-auth: "Basic dXBzdHJlYW06c2VjcmV0", authorization: "Bearer bearer-s3cret" }}
        add: {{ x-auth: auth-s3cret, x-session: sess-s3cret, x-jwt: jwt-s3cret, x-env: plain-s3cret }}
routes:
  - name: tenant
    match: {{ prefix: /, headers: {{ x-tenant: tenant-s3cret, x-debug: true }} }}
    respond: {{ body: "ok\\n", headers: {{ x-resp: resp-s3cret }} }}
"""


class AdminConfigTest(PorticoTestCase):
    def test_config_redacts_every_configured_header_value(self):
        port, admin = free_port(), free_port()
        self.start(config(port, admin), port)
        st, _, body, _ = curl(f"http://127.0.0.1:{admin}/config")
        self.assertEqual(st, 200)
        text = body.decode()
        for s in SECRETS:
            self.assertNotIn(s, text)
        doc = json.loads(text)
        route = doc["routes"][0]
        self.assertEqual(route["match"]["headers"],
                         {"x-tenant": "[redacted]", "x-debug": True})
        self.assertEqual(route["match"]["prefix"], "/")
        self.assertEqual(route["respond"]["body"], "ok\n")
        self.assertEqual(doc["filters"][0]["headers"]["request"]["set"]["x-upstream-auth"],
                         "[redacted]")

    def test_show_secrets_is_an_explicit_choice(self):
        port, admin = free_port(), free_port()
        self.start(config(port, admin, ", show_secrets: true"), port)
        st, _, body, _ = curl(f"http://127.0.0.1:{admin}/config")
        self.assertEqual(st, 200)
        for s in SECRETS:
            self.assertIn(s, body.decode())


if __name__ == "__main__":
    unittest.main()
