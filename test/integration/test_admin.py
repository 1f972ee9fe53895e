"""
The admin listener: /config never shows secrets; a bearer token guards
everything but the probes; a public address without it is warned about
(issue 14, weak spot "Admin /config leaks secrets").
"""
import json
import os
import subprocess
import time
import unittest

from portico_test import BIN, PorticoTestCase, curl, free_port, make_cert

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


TOKEN = "3f1c9a7be2d54e0f8a6b1c2d3e4f5a6b"
TOKEN2 = "new-token-0123456789abcdefABCDEF"


class AdminTokenTest(PorticoTestCase):
    def setUp(self):
        super().setUp()
        self.port, self.admin = free_port(), free_port()
        self.p = self.start(config(self.port, self.admin, ", token_file: admin.token"),
                            self.port, extra_files={"admin.token": TOKEN + "\n"})
        self.a = f"http://127.0.0.1:{self.admin}"

    def test_token_accepted_and_refused(self):
        for path in ("/metrics", "/config", "/nope"):
            st, h, body, _ = curl(f"{self.a}{path}")
            self.assertEqual(st, 401, path)
            self.assertEqual(h.get("www-authenticate"), 'Bearer realm="portico-admin"')
            self.assertEqual(json.loads(body)["error"]["code"], "UNAUTHENTICATED")
            for bad in ("Bearer " + TOKEN[:-1], "Bearer " + TOKEN + "x", "Basic " + TOKEN,
                        "Bearer", TOKEN):
                self.assertEqual(curl(f"{self.a}{path}", "-H", f"Authorization: {bad}")[0], 401,
                                 (path, bad))
        ok = ("-H", f"Authorization: Bearer {TOKEN}")
        st, _, body, _ = curl(f"{self.a}/metrics", *ok)
        self.assertEqual(st, 200)
        self.assertIn("portico_workers", body.decode())
        st, _, body, _ = curl(f"{self.a}/config", *ok)
        self.assertEqual(st, 200)
        self.assertNotIn(TOKEN, body.decode())
        self.assertEqual(curl(f"{self.a}/nope", *ok)[0], 404)
        self.assertEqual(curl(f"{self.a}/metrics", "-H", f"authorization: bearer {TOKEN}")[0], 200)
        # probes stay open for kubelets and load balancers
        self.assertEqual(curl(f"{self.a}/healthz")[0], 200)
        self.assertEqual(curl(f"{self.a}/ready")[0], 200)

    def test_token_rotates_with_sighup(self):
        with open(os.path.join(self.p.dir, "admin.token"), "w") as f:
            f.write(TOKEN2)
        self.p.reload()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "configuration reloaded" not in self.p.output():
            time.sleep(0.05)
        self.assertIn("configuration reloaded", self.p.output())
        self.assertEqual(curl(f"{self.a}/metrics", "-H", f"Authorization: Bearer {TOKEN}")[0], 401)
        self.assertEqual(curl(f"{self.a}/metrics", "-H", f"Authorization: Bearer {TOKEN2}")[0],
                         200)


def make_ca_and_client(d, name):
    """A CA and a client certificate it signed (openssl CLI)."""
    ca, ca_key = os.path.join(d, name + "-ca.pem"), os.path.join(d, name + "-ca.key")
    crt, key = os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
    csr = os.path.join(d, name + ".csr")
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, timeout=60)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", f"/CN={name} CA")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", crt, "-days", "2")
    return ca, crt, key


class AdminClientCertTest(PorticoTestCase):
    def test_client_certificate_required(self):
        import tempfile
        d = tempfile.mkdtemp(prefix="portico-admin-tls-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", d]))
        srv_crt, srv_key = make_cert(d)
        ca, crt, key = make_ca_and_client(d, "ops")
        _, other_crt, other_key = make_ca_and_client(d, "intruder")
        port, admin = free_port(), free_port()
        self.start(config(port, admin, f", tls: {{ cert: {srv_crt}, key: {srv_key}, "
                                       f"client_ca: {ca} }}"), port)
        a = f"https://127.0.0.1:{admin}"
        st, _, body, _ = curl(f"{a}/metrics", "--cacert", srv_crt, "--cert", crt, "--key", key)
        self.assertEqual(st, 200)
        self.assertIn("portico_workers", body.decode())
        self.assertEqual(curl(f"{a}/healthz", "--cacert", srv_crt, "--cert", crt,
                              "--key", key)[0], 200)
        # no certificate, or one from another CA: the handshake fails, no answer
        self.assertEqual(curl(f"{a}/metrics", "--cacert", srv_crt)[0], 0)
        self.assertEqual(curl(f"{a}/config", "--cacert", srv_crt, "--cert", other_crt,
                              "--key", other_key)[0], 0)
        # plain HTTP on the TLS port gets nothing either
        self.assertEqual(curl(f"http://127.0.0.1:{admin}/metrics")[0], 0)
        # still serving after the refusals
        self.assertEqual(curl(f"{a}/config", "--cacert", srv_crt, "--cert", crt,
                              "--key", key)[0], 200)


class AdminWarningTest(unittest.TestCase):
    def validate(self, admin, extra=""):
        import tempfile
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "p.yaml")
            with open(os.path.join(d, "t"), "w") as f:
                f.write(TOKEN)
            with open(path, "w") as f:
                f.write(f"listeners: [ {{ address: 127.0.0.1:{free_port()} }} ]\n"
                        f"admin: {{ address: \"{admin}\"{extra} }}\n")
            p = subprocess.run([BIN, "--validate", "-c", path], capture_output=True, timeout=30)
            return p.returncode, p.stderr.decode(), path

    def test_public_admin_without_auth_is_warned_about(self):
        code, err, path = self.validate("0.0.0.0:9901")
        self.assertEqual(code, 0, err)
        self.assertIn(f"{path}:2:19: warning: admin listener 0.0.0.0:9901 is not a loopback "
                      "address and has no token_file", err)
        code, err, _ = self.validate("0.0.0.0:9901", ", token_file: t")
        self.assertEqual((code, err), (0, ""))
        code, err, _ = self.validate("[::]:9901")
        self.assertEqual(code, 0, err)
        self.assertIn("warning: admin listener [::]:9901 is not a loopback", err)
        code, err, _ = self.validate("127.0.0.1:9901")
        self.assertEqual((code, err), (0, ""))


if __name__ == "__main__":
    unittest.main()
