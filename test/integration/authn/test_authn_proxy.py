"""
test_authn_proxy.py -- the api_key, ip_access and cors filters (plugins/) on
proxy routes, through the real portico binary against the echo upstream;
IPv4 and IPv6 clients (a second listener on [::1]); config errors.
"""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import unittest

from portico_test import BIN, PorticoTestCase, curl, free_port


def sha(key):
    return hashlib.sha256(key.encode()).hexdigest()


def free_port6():
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        return s.getsockname()[1]


def err(body):
    return json.loads(body)["error"]


class AuthnProxyTest(PorticoTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.echo()
        self.port = free_port()
        self.port6 = free_port6()
        self.start(f"""
listeners: [ {{ address: "127.0.0.1:{self.port}" }}, {{ address: "[::1]:{self.port6}" }} ]
clusters: [ {{ name: web, endpoints: [ "127.0.0.1:{self.up.port}" ] }} ]
routes:
  - match: {{ prefix: /key/ }}
    proxy: {{ cluster: web }}
    filters:
      - api_key:
          query: api_key
          consumers:
            - {{ name: alice, key_sha256: "{sha('alice-secret')}" }}
            - {{ name: bob, key_sha256: "{sha('bob secret+&')}" }}
      - headers: {{ request: {{ set: {{ x-seen-consumer: "${{consumer}}", x-seen-header: "${{header.x-consumer}}" }} }} }}
  - match: {{ prefix: /ip/allow4/ }}
    proxy: {{ cluster: web }}
    filters: [ {{ ip_access: {{ allow: [ 127.0.0.0/8 ], deny: [ 127.0.0.2/32 ] }} }} ]
  - match: {{ prefix: /ip/deny4/ }}
    proxy: {{ cluster: web }}
    filters: [ {{ ip_access: {{ deny: [ 127.0.0.1 ] }} }} ]
  - match: {{ prefix: /ip/only6/ }}
    proxy: {{ cluster: web }}
    filters: [ {{ ip_access: {{ allow: [ "::1/128" ] }} }} ]
  - match: {{ prefix: /ip/no6/ }}
    proxy: {{ cluster: web }}
    filters: [ {{ ip_access: {{ allow: [ "0.0.0.0/0" ], deny: [ "::/0" ] }} }} ]
  - match: {{ prefix: /ip/xff/ }}
    proxy: {{ cluster: web }}
    filters:
      - ip_access:
          allow: [ 203.0.113.0/24, "2001:db8::/32" ]
          deny: [ 203.0.113.66 ]
          trusted_proxies: [ 127.0.0.1, "::1", 10.0.0.0/8 ]
  - match: {{ prefix: /cors/ }}
    proxy: {{ cluster: web }}
    filters:
      - cors:
          origins: [ "https://app.example", "http://LOCAL.test:8080" ]
          methods: [ GET, PATCH, DELETE ]
          expose: [ X-Request-Id, x-total ]
          max_age: 10m
          credentials: true
      - api_key: {{ consumers: [ {{ name: alice, key_sha256: "{sha('alice-secret')}" }} ] }}
  - match: {{ prefix: /cors-any/, methods: [ GET, POST, OPTIONS ] }}
    proxy: {{ cluster: web }}
    filters: [ {{ cors: {{ origins: [ "*" ] }} }} ]
""", self.port)
        self.base = f"http://127.0.0.1:{self.port}"
        self.base6 = f"http://[::1]:{self.port6}"

    # ---- api_key ----------------------------------------------------------------------

    def test_api_key_header(self):
        st, h, body, _ = curl(self.base + "/key/a", "-H", "x-api-key: alice-secret",
                              "-H", "X-Consumer: root")
        self.assertEqual(st, 200, body)
        got = self.up.requests[-1]["headers"]
        self.assertEqual(got["x-consumer"], "alice")          # the client's value replaced
        self.assertEqual(got["x-seen-consumer"], "alice")     # ${consumer} for later filters
        self.assertEqual(got["x-seen-header"], "alice")
        self.assertNotIn("x-api-key", got)                    # the key never goes upstream
        st, h, body, _ = curl(self.base + "/key/a", "-H", "X-API-Key: bob secret+&")
        self.assertEqual(st, 200)
        self.assertEqual(self.up.requests[-1]["headers"]["x-consumer"], "bob")

    def test_api_key_refusals(self):
        n = len(self.up.requests)
        for args, detail in ((["-H", "X-Consumer: alice"], "API key missing"),
                             (["-H", "x-api-key: alice-secreT"], "API key not valid"),
                             (["-H", "x-api-key: "], "API key missing"),
                             (["-H", "x-api-key: alice-secret", "-H", "x-api-key: alice-secret"],
                              "more than one API key"),
                             (["-H", "x-api-key: " + "k" * 5000], "API key not valid")):
            st, h, body, _ = curl(self.base + "/key/a", *args)
            self.assertEqual(st, 401, args)
            self.assertEqual(h.get("content-type"), "application/json")
            e = err(body)
            self.assertEqual(e["code"], "UNAUTHORIZED")
            self.assertIn(detail, json.dumps(e))
            self.assertNotIn("www-authenticate", h)
        self.assertEqual(len(self.up.requests), n)  # no refusal reached the upstream

    def test_api_key_query(self):
        st, _, body, _ = curl(self.base + "/key/q?a=1&api_key=alice-secret&b=2&api_key=x")
        self.assertEqual(st, 200, body)
        r = self.up.requests[-1]
        self.assertEqual(r["path"], "/key/q?a=1&b=2")     # every api_key parameter removed
        self.assertEqual(r["headers"]["x-consumer"], "alice")
        st, _, _, _ = curl(self.base + "/key/q?api_key=bob%20secret%2B%26")  # percent-decoded
        self.assertEqual(st, 200)
        self.assertEqual(self.up.requests[-1]["path"], "/key/q")
        self.assertEqual(self.up.requests[-1]["headers"]["x-consumer"], "bob")
        st, _, body, _ = curl(self.base + "/key/q?api_key=nope&z=1")
        self.assertEqual(st, 401)
        st, _, body, _ = curl(self.base + "/key/q?api_key=%zz")
        self.assertEqual(st, 401)
        # a header and a query key at once: ambiguous, refused
        st, _, body, _ = curl(self.base + "/key/q?api_key=alice-secret", "-H", "x-api-key: alice-secret")
        self.assertEqual(st, 401)
        self.assertIn("more than one", body.decode())

    def test_api_key_query_not_accepted_by_default(self):
        st, _, body, _ = curl(self.base + "/cors/x?api_key=alice-secret")
        self.assertEqual(st, 401)
        st, _, body, _ = curl(self.base + "/cors/x", "-H", "x-api-key: alice-secret")
        self.assertEqual(st, 200)

    # ---- ip_access ------------------------------------------------------------------

    def test_ip_v4(self):
        st, _, _, _ = curl(self.base + "/ip/allow4/x")
        self.assertEqual(st, 200)
        st, h, body, _ = curl(self.base + "/ip/deny4/x")
        self.assertEqual(st, 403)
        e = err(body)
        self.assertEqual(e["code"], "FORBIDDEN")
        self.assertIn("denied", json.dumps(e))
        st, _, body, _ = curl(self.base + "/ip/only6/x")
        self.assertEqual(st, 403)
        self.assertIn("not allowed", body.decode())
        # X-Forwarded-For is not believed from an untrusted peer
        st, _, _, _ = curl(self.base + "/ip/allow4/x", "-H", "X-Forwarded-For: 127.0.0.2")
        self.assertEqual(st, 200)

    def test_ip_v6(self):
        st, _, body, _ = curl(self.base6 + "/ip/only6/x")
        self.assertEqual(st, 200, body)
        st, _, body, _ = curl(self.base6 + "/ip/allow4/x")
        self.assertEqual(st, 403)
        st, _, body, _ = curl(self.base6 + "/ip/no6/x")
        self.assertEqual(st, 403)
        self.assertIn("denied", body.decode())
        st, _, _, _ = curl(self.base + "/ip/no6/x")
        self.assertEqual(st, 200)

    def test_ip_forwarded_for(self):
        n = len(self.up.requests)
        cases = [
            # rightmost untrusted entry decides; what the client wrote left of it is ignored
            ("203.0.113.7", 200),
            ("198.51.100.1, 203.0.113.7", 200),
            ("203.0.113.7, 198.51.100.1", 403),
            ("203.0.113.7, 10.1.2.3", 200),          # 10/8 is a trusted hop: skipped
            ("203.0.113.66", 403),                   # deny wins over allow
            ("203.0.113.66, 10.0.0.1, 10.0.0.2", 403),
            ("2001:db8::5", 200),
            ("[2001:db8::5]:4711", 200),
            ("::ffff:203.0.113.9", 200),             # v4-mapped v6 matches the v4 rule
            ("garbage", 403),
            ("203.0.113.7, garbage", 403),
            ("garbage, 203.0.113.7", 200),
            ("203.0.113.7:8080", 200),
        ]
        for xff, want in cases:
            st, _, body, _ = curl(self.base + "/ip/xff/x", "-H", "X-Forwarded-For: " + xff)
            self.assertEqual(st, want, (xff, body))
        # several header lines are one list, in order
        st, _, _, _ = curl(self.base + "/ip/xff/x", "-H", "X-Forwarded-For: 198.51.100.1",
                           "-H", "X-Forwarded-For: 203.0.113.8")
        self.assertEqual(st, 200)
        # only trusted hops (the peer itself, no header): the peer is the client
        st, _, _, _ = curl(self.base + "/ip/xff/x")
        self.assertEqual(st, 403)
        # the [::1] peer is trusted too
        st, _, _, _ = curl(self.base6 + "/ip/xff/x", "-H", "X-Forwarded-For: 2001:db8::1")
        self.assertEqual(st, 200)
        self.assertEqual(len(self.up.requests), n + sum(w == 200 for _, w in cases) + 2)

    # ---- cors -------------------------------------------------------------------------

    def preflight(self, path, origin, method="PATCH", headers="content-type, x-api-key"):
        return curl(self.base + path, "-X", "OPTIONS", "-H", "Origin: " + origin,
                    "-H", "Access-Control-Request-Method: " + method,
                    "-H", "Access-Control-Request-Headers: " + headers)

    def test_cors_preflight(self):
        n = len(self.up.requests)
        st, h, body, _ = self.preflight("/cors/x", "https://app.example")
        self.assertEqual(st, 204)
        self.assertEqual(h["access-control-allow-origin"], "https://app.example")
        self.assertEqual(h["access-control-allow-credentials"], "true")
        self.assertEqual(h["access-control-allow-methods"], "GET, PATCH, DELETE, OPTIONS")
        self.assertEqual(h["access-control-allow-headers"], "content-type, x-api-key")
        self.assertEqual(h["access-control-max-age"], "600")
        self.assertEqual(h["vary"], "Origin")
        self.assertEqual(body, b"")
        # origins compare case-insensitively; the literal origin is echoed
        st, h, _, _ = self.preflight("/cors/x", "http://local.test:8080")
        self.assertEqual((st, h["access-control-allow-origin"]), (204, "http://local.test:8080"))
        # disallowed origin: a JSON 403 and no Access-Control-Allow-Origin
        for o in ("https://evil.example", "https://app.example.evil", "null", "http://local.test"):
            st, h, body, _ = self.preflight("/cors/x", o)
            self.assertEqual(st, 403, o)
            self.assertNotIn("access-control-allow-origin", h)
            self.assertEqual(err(body)["code"], "FORBIDDEN")
        # requested headers that are not header names are not echoed
        st, h, _, _ = self.preflight("/cors/x", "https://app.example", headers="a\tb")
        self.assertNotIn("access-control-allow-headers", h)
        # the route's methods, "*" origins: ACAO *, no Vary, no credentials
        st, h, _, _ = self.preflight("/cors-any/x", "https://a.example", "POST")
        self.assertEqual(st, 204)
        self.assertEqual(h["access-control-allow-origin"], "*")
        self.assertEqual(h["access-control-allow-methods"], "GET, POST, OPTIONS")
        self.assertNotIn("access-control-allow-credentials", h)
        self.assertNotIn("vary", h)
        self.assertEqual(len(self.up.requests), n)  # preflights are never forwarded
        # an OPTIONS without Access-Control-Request-Method is not a preflight: forwarded
        st, _, _, _ = curl(self.base + "/cors-any/x", "-X", "OPTIONS", "-H", "Origin: https://a")
        self.assertEqual(st, 200)
        self.assertEqual(self.up.requests[-1]["method"], "OPTIONS")

    def test_cors_answers(self):
        st, h, _, _ = curl(self.base + "/cors/x", "-H", "Origin: https://app.example",
                           "-H", "x-api-key: alice-secret")
        self.assertEqual(st, 200)
        self.assertEqual(h["access-control-allow-origin"], "https://app.example")
        self.assertEqual(h["access-control-allow-credentials"], "true")
        self.assertEqual(h["access-control-expose-headers"], "x-request-id, x-total")
        self.assertEqual(h["vary"], "Origin")
        # refusals of later filters carry the CORS headers too (the page can read the 401)
        st, h, _, _ = curl(self.base + "/cors/x", "-H", "Origin: https://app.example")
        self.assertEqual(st, 401)
        self.assertEqual(h["access-control-allow-origin"], "https://app.example")
        # a disallowed origin: answered (CORS is the browser's to enforce), no ACAO, Vary kept
        st, h, _, _ = curl(self.base + "/cors/x", "-H", "Origin: https://evil.example",
                           "-H", "x-api-key: alice-secret")
        self.assertEqual(st, 200)
        self.assertNotIn("access-control-allow-origin", h)
        self.assertNotIn("access-control-allow-credentials", h)
        self.assertEqual(h["vary"], "Origin")
        # no Origin at all: same answer for caches, Vary: Origin
        st, h, _, _ = curl(self.base + "/cors/x", "-H", "x-api-key: alice-secret")
        self.assertNotIn("access-control-allow-origin", h)
        self.assertEqual(h["vary"], "Origin")
        st, h, _, _ = curl(self.base + "/cors-any/x", "-H", "Origin: https://b.example")
        self.assertEqual(h["access-control-allow-origin"], "*")

    def test_cors_websocket_handshake(self):
        n = len(self.up.requests)
        st, h, body, _ = curl(self.base + "/cors/ws", "-H", "Connection: Upgrade",
                              "-H", "Upgrade: websocket", "-H", "Sec-WebSocket-Version: 13",
                              "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                              "-H", "Origin: https://evil.example", "-H", "x-api-key: alice-secret")
        self.assertEqual(st, 403)
        self.assertIn("WebSocket", body.decode())
        self.assertEqual(len(self.up.requests), n)


class AuthnConfigTest(unittest.TestCase):
    def check(self, filters, *want):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d, True)
        cfg = os.path.join(d, "p.yaml")
        with open(cfg, "w") as f:
            f.write(f"""listeners: [ {{ address: "127.0.0.1:1" }} ]
clusters: [ {{ name: web, endpoints: [ "127.0.0.1:2" ] }} ]
routes:
  - proxy: {{ cluster: web }}
    filters:
{filters}""")
        p = subprocess.run([BIN, "--validate", "-c", cfg], capture_output=True, timeout=20)
        out = p.stderr.decode() + p.stdout.decode()
        self.assertNotEqual(p.returncode, 0, out)
        for w in want:
            self.assertIn(w, out)
        self.assertRegex(out, r"p\.yaml:\d+:\d+: ")

    def test_api_key_errors(self):
        good = sha("k")
        self.check(f"""      - api_key: {{ consumers: [ {{ name: a, key_sha256: "{good[:-1]}" }} ] }}\n""",
                   "64 hex digits")
        self.check(f"""      - api_key: {{ consumers: [ {{ name: a, key_sha256: "{good[:-1]}g" }} ] }}\n""",
                   "not hex")
        self.check(f"""      - api_key: {{ consumers: [ {{ name: a, key_sha256: "{good}" }},
                                  {{ name: a, key_sha256: "{sha('j')}" }} ] }}\n""",
                   "consumer name 'a' appears twice")
        self.check(f"""      - api_key: {{ consumers: [ {{ name: a, key_sha256: "{good}" }},
                                  {{ name: b, key_sha256: "{good.upper()}" }} ] }}\n""",
                   "consumers 'a' and 'b' have the same key")
        self.check("""      - api_key: { consumers: [] }\n""", "non-empty list")
        self.check(f"""      - api_key: {{ header: "x y", consumers: [ {{ name: a, key_sha256: "{good}" }} ] }}\n""",
                   "not a valid name")
        self.check(f"""      - api_key: {{ keys: 1, consumers: [ {{ name: a, key_sha256: "{good}" }} ] }}\n""",
                   "unknown key 'keys'")

    def test_ip_access_errors(self):
        self.check("""      - ip_access: { allow: [ 10.0.0.1/8 ] }\n""", "bits set past the prefix")
        self.check("""      - ip_access: { allow: [ 10.0.0.0/33 ] }\n""", "prefix length over 32")
        self.check("""      - ip_access: { deny: [ "2001:db8::/129" ] }\n""", "over 128")
        self.check("""      - ip_access: { deny: [ 10.0.0.300 ] }\n""", "not an IPv4 or IPv6 address")
        self.check("""      - ip_access: { trusted_proxies: [ 10.0.0.1 ] }\n""", "at least one network")
        self.check("""      - ip_access: { allow: [ 10.0.0.0/x ] }\n""", "must be a number")

    def test_cors_errors(self):
        self.check("""      - cors: { origins: [ "*" ], credentials: true }\n""", "credentials: true needs")
        self.check("""      - cors: { origins: [ "app.example" ] }\n""", "scheme://host")
        self.check("""      - cors: { origins: [ "https://a.example/path" ] }\n""", "must not have a path")
        self.check("""      - cors: { methods: [ GET ] }\n""", "origins is required")
        self.check("""      - cors: { origins: [ "*" ], methods: [ get ] }\n""", "method 'get'")
        self.check("""      - cors: { origins: [ "*" ], max_age: soon }\n""", "")


if __name__ == "__main__":
    unittest.main()
