"""
test_jwt.py -- the jwt filter (plugins/jwt.c) in the real portico binary with
keys from a JWK set file and an HMAC secret file: every algorithm, the claim
checks, the attacks of SECURITY-CASES 2.6 (alg none, HS/RS confusion with the
public key PEM as secret, unknown kid, tampering, oversized and garbage
tokens, identity spoofing), token locations (header, cookie, query for a
WebSocket handshake), the verified-token cache, and config errors.
Tokens: Debian's python3-jwt / python3-cryptography (jwt_keys.py).
"""
import base64
import hashlib
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from portico_test import BIN, PorticoTestCase, curl, free_port, raw_request

import jwt_keys as K

ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
        "HS256", "HS384", "HS512"]

CONFIG = """
listeners:
  - address: 127.0.0.1:{port}
workers: 2
clusters:
  - {{ name: echo, endpoints: [ "127.0.0.1:{echo}" ] }}
  - {{ name: ws, endpoints: [ "127.0.0.1:{ws}" ] }}
routes:
  - match: {{ host: hs.test }}
    proxy: {{ cluster: echo }}
    filters:
      - jwt: {{ secret_file: secret.txt, issuer: "{iss}", audiences: [ {aud} ],
               forward_claims: {{ sub: x-user }} }}
  - match: {{ host: nocache.test }}
    proxy: {{ cluster: echo }}
    filters:
      - jwt: {{ jwks_file: jwks.json, issuer: "{iss}", audiences: [ {aud} ], cache_size: 0,
               forward_claims: {{ sub: x-user }} }}
  - match: {{ host: ws.test }}
    proxy: {{ cluster: ws, websocket: true }}
    filters:
      - jwt: {{ jwks_file: jwks.json, issuer: "{iss}", token_query: access_token,
               forward_claims: {{ sub: x-user }} }}
  - match: {{ host: agg.test }}
    aggregate:
      calls:
        - name: me
          http: {{ cluster: echo, path: "/me", headers: {{ x-user: "{{header.x-user}}" }} }}
    filters:
      - jwt: {{ jwks_file: jwks.json, forward_claims: {{ sub: x-user }} }}
  - match: {{ host: vars.test }}
    proxy: {{ cluster: echo }}
    filters:
      - jwt: {{ jwks_file: jwks.json }}
      - headers: {{ request: {{ set: {{ x-sub: "${{jwt.sub}}", x-roles: "${{jwt.realm_access.roles}}",
                                      x-org: "org=${{jwt.org.id}}" }} }} }}
  - match: {{ prefix: / }}
    proxy: {{ cluster: echo }}
    filters:
      - jwt: {{ jwks_file: jwks.json, issuer: "{iss}", audiences: [ other, {aud} ],
               clock_skew: 30s, required_claims: [ sub ], token_cookie: at,
               forward_claims: {{ sub: x-user, "realm_access.roles": x-roles, tenant: x-tenant }} }}
"""


class WsUpstream:
    """A minimal WebSocket upstream: answers the handshake 101 and records its head."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.heads = []
        self.sock.settimeout(0.2)
        self.stopping = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            c.settimeout(5)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                head = data.decode("latin-1")
                self.heads.append(head)
                key = ""
                for line in head.split("\r\n"):
                    if line.lower().startswith("sec-websocket-key:"):
                        key = line.split(":", 1)[1].strip()
                acc = base64.b64encode(hashlib.sha1(
                    (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
                c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % acc).encode())
                time.sleep(0.2)
            except OSError:
                pass
            finally:
                c.close()

    def stop(self):
        self.stopping = True
        self.t.join(5)
        self.sock.close()


class TestJwt(PorticoTestCase):
    @classmethod
    def setUpClass(cls):
        cls.keys = K.Keys()

    def setUp(self):
        super().setUp()
        self.up = self.echo()
        self.ws = WsUpstream()
        self.addCleanup(self.ws.stop)
        self.port = free_port()
        self.p = self.start(CONFIG.format(port=self.port, echo=self.up.port, ws=self.ws.port,
                                          iss=K.ISSUER, aud=K.AUDIENCE), self.port,
                            extra_files={"jwks.json": json.dumps(self.keys.jwks()),
                                         "secret.txt": K.SECRET + b"\n"})

    def get(self, tok=None, host="a.test", headers=(), path="/x"):
        args = ["-H", "Host: " + host]
        if tok is not None:
            args += ["-H", "Authorization: Bearer " + tok]
        for h in headers:
            args += ["-H", h]
        return curl(*args, "http://127.0.0.1:%d%s" % (self.port, path))

    def assertAccepted(self, tok, host="a.test", sub="alice"):
        n = len(self.up.requests)
        st, _, body, err = self.get(tok, host)
        self.assertEqual(st, 200, body + err.encode())
        self.assertEqual(len(self.up.requests), n + 1)
        self.assertEqual(self.up.requests[-1]["headers"].get("x-user"), sub)

    def assertRefused(self, tok, why, host="a.test", headers=()):
        n = len(self.up.requests)
        st, h, body, _ = self.get(tok, host, headers)
        self.assertEqual(st, 401, body)
        self.assertEqual(len(self.up.requests), n, "a refused request reached the upstream")
        self.assertIn('error="invalid_token"', h.get("www-authenticate", ""))
        self.assertIn('error_description="%s"' % why, h["www-authenticate"])
        err = json.loads(body)["error"]
        self.assertEqual(err["code"], "UNAUTHORIZED")
        self.assertEqual(err.get("detail"), why)

    # ---- every algorithm ----------------------------------------------------------

    def test_every_algorithm(self):
        for alg in ALGS:
            with self.subTest(alg=alg):
                self.assertAccepted(K.token(self.keys, alg),
                                    host="hs.test" if alg.startswith("HS") else "a.test")

    def test_without_kid_every_fitting_key_is_tried(self):
        for alg in ("RS256", "ES384", "EdDSA"):
            self.assertAccepted(K.token(self.keys, alg, kid=False))

    def test_uncached_route(self):
        tok = K.token(self.keys, "ES256")
        for _ in range(3):
            self.assertAccepted(tok, host="nocache.test")

    # ---- claims -------------------------------------------------------------------

    def test_no_token_is_a_bare_challenge(self):
        n = len(self.up.requests)
        st, h, body, _ = self.get()
        self.assertEqual(st, 401)
        self.assertEqual(h["www-authenticate"], 'Bearer realm="portico"')
        self.assertEqual(json.loads(body)["error"]["code"], "UNAUTHORIZED")
        st, h, _, _ = self.get(headers=["Authorization: Basic YWxpY2U6cHc="])
        self.assertEqual((st, h["www-authenticate"]), (401, 'Bearer realm="portico"'))
        self.assertEqual(len(self.up.requests), n)

    def test_expiry_with_skew(self):
        now = int(time.time())
        self.assertRefused(K.token(self.keys, "RS256", exp=now - 100), "token expired")
        self.assertAccepted(K.token(self.keys, "RS256", exp=now - 10))  # within 30 s skew
        self.assertRefused(K.token(self.keys, "RS256", exp=None),
                           "required claim missing or malformed")
        self.assertRefused(K.token(self.keys, "RS256", exp="tomorrow"),
                           "required claim missing or malformed")

    def test_not_before_and_issued_at(self):
        now = int(time.time())
        self.assertRefused(K.token(self.keys, "ES256", nbf=now + 300), "token not yet valid")
        self.assertAccepted(K.token(self.keys, "ES256", nbf=now + 10))
        self.assertRefused(K.token(self.keys, "ES256", iat=now + 300), "token not yet valid")

    def test_issuer_and_audience(self):
        self.assertRefused(K.token(self.keys, "RS256", iss="https://evil.test/"),
                           "issuer not accepted")
        self.assertRefused(K.token(self.keys, "RS256", iss=None), "issuer not accepted")
        self.assertRefused(K.token(self.keys, "RS256", aud="web"), "audience not accepted")
        self.assertRefused(K.token(self.keys, "RS256", aud=["web", "x"]), "audience not accepted")
        self.assertAccepted(K.token(self.keys, "RS256", aud=["web", K.AUDIENCE]))
        self.assertRefused(K.token(self.keys, "RS256", sub=None),
                           "required claim missing or malformed")

    # ---- attacks ------------------------------------------------------------------

    def test_alg_none(self):
        c = K.claims()
        for alg in ("none", "None", "NONE"):
            tok = K.raw_token({"alg": alg, "kid": "rsa"}, c, lambda si: b"")
            tok = tok  # empty signature part
            self.assertRefused(tok, "malformed token")
            tok = K.raw_token({"alg": alg, "kid": "rsa"}, c, lambda si: b"x")
            self.assertRefused(tok, "algorithm not allowed")

    def test_hs_rs_confusion(self):
        pem = self.keys.rsa_public_pem()
        c = K.claims()
        self.assertRefused(K.raw_token({"alg": "HS256", "kid": "rsa"}, c, K.hs256_with(pem)),
                           "algorithm not allowed")
        self.assertRefused(K.raw_token({"alg": "HS256"}, c, K.hs256_with(pem)),
                           "algorithm not allowed")
        # the EC key is no RS key either, nor is an ES384 key an ES256 one
        key, _ = self.keys.private_for("RS256")
        self.assertRefused(K.token(self.keys, "ES256", kid="p384"), "algorithm not allowed")

    def test_unknown_kid(self):
        self.assertRefused(K.token(self.keys, "RS256", kid="nope"), "unknown key id")

    def test_other_keys_signature(self):
        other = K.Keys()
        # AU-4: a key embedded in the header is never used
        import jwt as pyjwt
        from jwt.algorithms import RSAAlgorithm
        emb = pyjwt.encode(K.claims(), other.rsa, algorithm="RS256",
                           headers={"jwk": json.loads(RSAAlgorithm.to_jwk(other.rsa.public_key())),
                                    "jku": "http://127.0.0.1:1/keys"})
        self.assertRefused(emb, "signature verification failed")
        self.assertRefused(K.token(other, "RS256"), "signature verification failed")
        self.assertRefused(K.token(other, "EdDSA"), "signature verification failed")
        self.assertRefused(K.token(other, "ES256"), "signature verification failed")

    def test_tampered(self):
        for alg in ("RS256", "ES256", "EdDSA"):
            h, p, s = K.token(self.keys, alg).split(".")
            evil = K.b64u(json.dumps(K.claims(sub="admin")).encode())
            self.assertRefused("%s.%s.%s" % (h, evil, s), "signature verification failed")
            sig = bytearray(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
            sig[5] ^= 1
            self.assertRefused("%s.%s.%s" % (h, p, K.b64u(bytes(sig))),
                               "signature verification failed")
        h, p, s = K.token(self.keys, "HS256").split(".")
        self.assertRefused("%s.%s.%s" % (h, p, s[:-2] + ("AA" if s[-2:] != "AA" else "BA")),
                           "signature verification failed", host="hs.test")

    def test_oversized_and_garbage(self):
        self.assertRefused("a" * 9000 + ".b.c", "token too large")
        st, _, _, _ = self.get("x" * 60000)  # a header near the head limits: refused, no crash
        self.assertIn(st, (401, 431))
        tok = K.token(self.keys, "RS256")
        h, p, s = tok.split(".")
        for bad in ("garbage", "a.b", "a.b.c.d.e", "..", h + "." + p + ".", h + "." + p + "." + s + "=",
                    h + "." + p + "." + s + "==", "e30.e30.e30",
                    K.b64u(b"[]") + "." + p + "." + s, K.b64u(b"{\"alg\":1}") + "." + p + "." + s):
            with self.subTest(bad=bad[:40]):
                self.assertRefused(bad, "malformed token")
        # the signature covers the encoded payload: a payload that is not base64url fails it
        self.assertRefused(h + ".!!." + s, "signature verification failed")
        self.assertRefused(K.raw_token({"alg": "RS256", "crit": ["exp"]}, K.claims(), lambda s: b"x"),
                           "unsupported critical header")
        # the service is still there
        self.assertAccepted(tok)

    def test_two_tokens_refused(self):
        tok = K.token(self.keys, "RS256")
        self.assertRefused(tok, "more than one token", headers=["Authorization: Bearer " + tok])
        self.assertRefused(tok, "more than one token", headers=["Cookie: at=" + tok])
        self.assertRefused(None, "more than one token", headers=["Cookie: at=%s; at=%s" % (tok, tok)])

    # ---- identity ------------------------------------------------------------------

    def test_identity_headers_cannot_be_spoofed(self):
        tok = K.token(self.keys, "RS256", realm_access={"roles": ["reader", "writer"]}, tenant=7)
        st, _, body, _ = self.get(tok, headers=["x-user: admin", "X-Roles: root", "x-tenant: 0"])
        self.assertEqual(st, 200, body)
        seen = [kv for kv in json.loads(body)["headers"] if kv[0] in ("x-user", "x-roles", "x-tenant")]
        self.assertEqual(sorted(seen), [["x-roles", "reader,writer"], ["x-tenant", "7"],
                                        ["x-user", "alice"]])
        # a claim with a line break is never a header
        st, _, body, _ = self.get(K.token(self.keys, "RS256", tenant="a\r\nx-evil: 1"))
        self.assertEqual(st, 200)
        names = [kv[0] for kv in json.loads(body)["headers"]]
        self.assertNotIn("x-tenant", names)
        self.assertNotIn("x-evil", names)

    def test_claims_as_request_variables(self):
        tok = K.token(self.keys, "ES256", realm_access={"roles": ["a", "b"]}, org={"id": 42})
        st, _, body, _ = self.get(tok, host="vars.test", headers=["x-sub: forged"])
        self.assertEqual(st, 200, body)
        got = {k: v for k, v in json.loads(body)["headers"] if k in ("x-sub", "x-roles", "x-org")}
        self.assertEqual(got, {"x-sub": "alice", "x-roles": "a,b", "x-org": "org=42"})

    def test_aggregate_route(self):
        n = len(self.up.requests)
        st, h, body, _ = self.get(None, host="agg.test", headers=["x-user: mallory"])
        self.assertEqual(st, 401, body)
        self.assertEqual(len(self.up.requests), n)
        st, _, body, _ = self.get(K.token(self.keys, "PS256"), host="agg.test",
                                  headers=["x-user: mallory"])
        self.assertEqual(st, 200, body)
        self.assertEqual(self.up.requests[-1]["headers"].get("x-user"), "alice")

    def test_cookie_token(self):
        tok = K.token(self.keys, "ES384")
        st, _, body, _ = self.get(headers=["Cookie: theme=dark; at=%s; x=1" % tok])
        self.assertEqual(st, 200, body)
        self.assertEqual(self.up.requests[-1]["headers"].get("x-user"), "alice")

    def test_cached_token_still_checked_per_request(self):
        tok = K.token(self.keys, "RS256", exp=int(time.time()) + 2)
        for _ in range(5):  # the repeats are cache hits on both workers
            self.assertAccepted(tok)
        time.sleep(3.2)      # past exp, within the skew: verified again, still good
        self.assertAccepted(tok)
        tok = K.token(self.keys, "RS256", exp=int(time.time()) - 27)
        self.assertAccepted(tok)
        self.assertAccepted(tok)
        time.sleep(4.2)      # now past exp + skew: no cache entry outlives it
        self.assertRefused(tok, "token expired")

    # ---- WebSocket handshake with the token in the query ----------------------------

    def ws_handshake(self, query):
        req = ("GET /chat%s HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\nx-user: mallory\r\n\r\n" % query).encode()
        return raw_request(self.port, req, timeout=3.0, read_all=False).decode("latin-1")

    def test_websocket_token_in_query(self):
        resp = self.ws_handshake("?access_token=" + K.token(self.keys, "EdDSA", aud=None))
        self.assertTrue(resp.startswith("HTTP/1.1 101"), resp)
        head = self.ws.heads[-1].lower()
        self.assertIn("x-user: alice", head)
        self.assertNotIn("mallory", head)
        n = len(self.ws.heads)
        resp = self.ws_handshake("")
        self.assertTrue(resp.startswith("HTTP/1.1 401"), resp)
        self.assertIn('www-authenticate: bearer realm="portico"', resp.lower())
        resp = self.ws_handshake("?access_token=" + K.token(K.Keys(), "EdDSA"))
        self.assertTrue(resp.startswith("HTTP/1.1 401"), resp)
        tok = K.token(self.keys, "EdDSA", aud=None)
        resp = self.ws_handshake("?access_token=%s&access_token=%s" % (tok, tok))
        self.assertTrue(resp.startswith("HTTP/1.1 401"), resp)
        self.assertIn("more than one token", resp)
        self.assertEqual(len(self.ws.heads), n)


class TestJwtConfig(unittest.TestCase):
    """Config errors: FILE:LINE:COL naming the bad key, and the gateway never starts."""

    def check(self, jwt_conf, files):
        with tempfile.TemporaryDirectory() as d:
            for name, content in files.items():
                with open(os.path.join(d, name), "wb") as f:
                    f.write(content if isinstance(content, bytes) else content.encode())
            cfg = os.path.join(d, "portico.yaml")
            with open(cfg, "w") as f:
                f.write("listeners: [ { address: 127.0.0.1:%d } ]\n"
                        "clusters: [ { name: echo, endpoints: [ \"127.0.0.1:1\" ] } ]\n"
                        "routes:\n  - proxy: { cluster: echo }\n    filters:\n"
                        "      - jwt: %s\n" % (free_port(), jwt_conf))
            p = subprocess.run([BIN, "-t", "-c", cfg], capture_output=True, timeout=20)
            return p.returncode, (p.stdout + p.stderr).decode()

    def test_errors(self):
        keys = K.Keys()
        good = keys.jwks()
        bad_rsa = json.loads(json.dumps(good))
        bad_rsa["keys"][0]["n"] = "not+base64"
        bad_alg = json.loads(json.dumps(good))
        bad_alg["keys"][1]["alg"] = "HS256"
        priv = json.loads(json.dumps(good))
        priv["keys"][2]["d"] = "AAAA"
        cases = [
            ("{ jwks_file: k.json }", {"k.json": json.dumps(bad_rsa)},
             'k.json: key 0 (kid "rsa"): "n" is not base64url'),
            ("{ jwks_file: k.json }", {"k.json": json.dumps(bad_alg)},
             'key 1 (kid "p256"): "alg" "HS256" does not fit a EC key'),
            ("{ jwks_file: k.json }", {"k.json": json.dumps(priv)},
             'key 2 (kid "p384"): a private key'),
            ("{ jwks_file: k.json }", {"k.json": "{"}, "k.json: not valid JSON"),
            ("{ secret_file: s }", {"s": "short"}, "HMAC secret of 5 bytes"),
            ("{ secret_file: s }", {"s": keys.rsa_public_pem()}, "a PEM key is not an HMAC secret"),
            ("{ jwks_file: k.json, secret_file: s }", {"k.json": json.dumps(good), "s": "x" * 40},
             "exactly one of"),
            ("{ jwks_uri: \"https://idp.test/jwks\" }", {}, "no cluster has the endpoint"),
            ("{ jwks_file: k.json, forward_claims: { sub: \"bad header\" } }",
             {"k.json": json.dumps(good)}, "is not a header name"),
            ("{ jwks_file: k.json, clock_skew: forever }", {"k.json": json.dumps(good)},
             "portico.yaml:6:47: expected a duration"),
            ("{ jwks_file: missing.json }", {}, "portico.yaml:6:27: cannot open"),
        ]
        for conf, files, want in cases:
            with self.subTest(conf=conf, want=want):
                rc, out = self.check(conf, files)
                self.assertNotEqual(rc, 0, out)
                self.assertIn(want, out)
        rc, out = self.check("{ jwks_file: k.json }", {"k.json": json.dumps(good)})
        self.assertEqual(rc, 0, out)


if __name__ == "__main__":
    unittest.main()
