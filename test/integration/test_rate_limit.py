"""
rate_limit and quota with the process-local store (plugins/rate_limit.c,
plugins/ratelimit_table.c) through the real binary: exact counts with several
workers and many concurrent connections (HTTP/1.1 and HTTP/2, h2load), the
RateLimit-* headers on every answer, 429 with Retry-After and the JSON error
that never reaches the upstream, keys (client address, header), calendar
quotas, a WebSocket handshake limited, config errors. SECURITY-CASES RL-1.
Redis-backed limits: test/integration/redis/test_rate_limit_redis.py; native
gRPC: test/integration/grpc/test_grpc_rate_limit.py.
"""
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from portico_test import BIN, PorticoTestCase, curl, free_port

HERE = os.path.dirname(os.path.abspath(__file__))


def h2load(port, path, n, c, headers=(), h1=False):
    """Runs h2load; returns {2: count of 2xx, 4: count of 4xx, ...}."""
    args = ["h2load", "-n", str(n), "-c", str(c), "-m", "4"]
    if h1:
        args.append("--h1")
    for h in headers:
        args += ["-H", h]
    p = subprocess.run(args + ["http://127.0.0.1:%d%s" % (port, path)], capture_output=True,
                       text=True, timeout=120)
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", p.stdout)
    if m is None:
        raise AssertionError("h2load: " + p.stdout + p.stderr)
    return {2: int(m.group(1)), 3: int(m.group(2)), 4: int(m.group(3)), 5: int(m.group(4))}


class RateLimitLocal(PorticoTestCase):
    def config(self, port, up_port, filters, extra=""):
        return f"""
listeners: [ {{ address: "127.0.0.1:{port}", h2c: true }} ]
clusters: [ {{ name: web, endpoints: [ "127.0.0.1:{up_port}" ] }} ]
routes:{extra}
  - match: {{ prefix: / }}
    proxy: {{ cluster: web }}
    filters:
{filters}
"""

    def test_exact_across_workers_and_connections(self):
        """4 workers, 40 concurrent connections over HTTP/1.1 then HTTP/2 on one key:
        exactly `requests` answers pass in total, every other one is a 429."""
        port = free_port()
        self.start(f"""
listeners: [ {{ address: "127.0.0.1:{port}", h2c: true }} ]
routes:
  - match: {{ prefix: / }}
    respond: {{ status: 200, body: "ok" }}
    filters:
      - rate_limit: {{ requests: 300, per: 1h, key: "header:x-user" }}
""", port, workers=4)
        got = h2load(port, "/a", 1000, 40, ["x-user: alice"], h1=True)
        self.assertEqual((got[2], got[4], got[5]), (300, 700, 0))
        # another key has its own budget, over HTTP/2 this time
        got = h2load(port, "/b", 800, 40, ["x-user: bob"])
        self.assertEqual((got[2], got[4], got[5]), (300, 500, 0))

    def test_headers_and_refusal(self):
        up = self.echo()
        port = free_port()
        self.start(self.config(port, up.port, """
      - rate_limit: { requests: 4, per: 1h, burst: 2 }"""), port, workers=2)
        url = f"http://127.0.0.1:{port}/x"
        # burst 2: two at once, then one every 15 minutes (4 per hour). Every answer of the
        # route carries the headers, an upstream error answer included.
        st, h, _, _ = curl(f"http://127.0.0.1:{port}/status/503")
        self.assertEqual(st, 503)
        self.assertEqual((h["ratelimit-limit"], h["ratelimit-remaining"], h["ratelimit-reset"]),
                         ("4", "1", "900"))
        st, h, _, _ = curl(url)
        self.assertEqual((st, h["ratelimit-remaining"], h["ratelimit-reset"]), (200, "0", "1800"))
        st, h, body, _ = curl(url)
        self.assertEqual(st, 429)
        self.assertEqual(h["retry-after"], "900")
        self.assertEqual((h["ratelimit-limit"], h["ratelimit-remaining"], h["ratelimit-reset"]),
                         ("4", "0", "1800"))
        err = json.loads(body)["error"]
        self.assertEqual(err["code"], "RATE_LIMITED")
        self.assertTrue(err["request_id"])
        self.assertEqual(len(up.requests), 2)  # the refusal never reached the upstream
        # the client address is the key: a client-sent X-Forwarded-For changes nothing
        self.assertEqual(curl(url, "-H", "x-forwarded-for: 1.2.3.4")[0], 429)

    def test_key_falls_back_to_client_address(self):
        """"header:NAME" keys by the header's value; requests without it are counted by
        their client address, apart from any header value."""
        up = self.echo()
        port = free_port()
        self.start(self.config(port, up.port, """
      - rate_limit: { requests: 2, per: 1h, key: "header:X-Api-Client" }"""), port)
        url = f"http://127.0.0.1:{port}/k"
        codes = [curl(url, "-H", "X-Api-Client: one")[0] for _ in range(3)]
        self.assertEqual(codes, [200, 200, 429])
        codes = [curl(url)[0] for _ in range(3)]  # no header: by address
        self.assertEqual(codes, [200, 200, 429])
        self.assertEqual(curl(url, "-H", "X-Api-Client: 127.0.0.1")[0], 200)  # not the same key

    def test_keys_from_identity_filters(self):
        """`consumer` and `jwt:CLAIM` keys read what api_key and jwt set. As global filters the
        priorities order them (jwt 900, api_key 880, rate_limit 800) whatever the file's order,
        so the limit sees the identity; each identity has its own budget."""
        import hashlib
        sys.path.insert(0, os.path.join(HERE, "auth"))
        import jwt_keys as K
        up = self.echo()
        port, jport = free_port(), free_port()
        sha = hashlib.sha256(b"alice-secret").hexdigest()
        sha_b = hashlib.sha256(b"bob-secret").hexdigest()
        self.start(f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
clusters: [ {{ name: web, endpoints: [ "127.0.0.1:{up.port}" ] }} ]
filters:
  - rate_limit: {{ requests: 2, per: 1h, key: consumer }}
  - api_key: {{ consumers: [ {{ name: alice, key_sha256: "{sha}" }}, {{ name: bob, key_sha256: "{sha_b}" }} ] }}
routes:
  - proxy: {{ cluster: web }}
""", port, workers=2)
        url = f"http://127.0.0.1:{port}/k"
        codes = [curl(url, "-H", "x-api-key: alice-secret")[0] for _ in range(3)]
        self.assertEqual(codes, [200, 200, 429])
        st, _, body, _ = curl(url, "-H", "x-api-key: bob-secret")  # bob: a budget of his own
        self.assertEqual(st, 200, body)
        self.assertEqual(dict(json.loads(body)["headers"]).get("x-consumer"), "bob")
        self.assertEqual(curl(url)[0], 401)  # no key: refused before the limit counts it

        self.start(f"""
listeners: [ {{ address: "127.0.0.1:{jport}" }} ]
clusters: [ {{ name: web, endpoints: [ "127.0.0.1:{up.port}" ] }} ]
filters:
  - rate_limit: {{ requests: 1, per: 1h, key: "jwt:sub" }}
  - jwt: {{ secret_file: secret.txt, issuer: "{K.ISSUER}", audiences: [ {K.AUDIENCE} ] }}
routes:
  - proxy: {{ cluster: web }}
""", jport, workers=2, extra_files={"secret.txt": K.SECRET + b"\n"})
        jurl = f"http://127.0.0.1:{jport}/x"
        carol = "Authorization: Bearer " + K.token(None, "HS256", sub="carol")
        carol2 = "Authorization: Bearer " + K.token(None, "HS256", sub="carol", jti="2")
        dave = "Authorization: Bearer " + K.token(None, "HS256", sub="dave")
        self.assertEqual(curl(jurl, "-H", carol)[0], 200)
        self.assertEqual(curl(jurl, "-H", carol2)[0], 429)  # another token, the same subject
        self.assertEqual(curl(jurl, "-H", dave)[0], 200)

    def test_refill(self):
        up = self.echo()
        port = free_port()
        self.start(self.config(port, up.port, """
      - rate_limit: { requests: 2, per: 1s }"""), port)
        url = f"http://127.0.0.1:{port}/r"
        self.assertEqual([curl(url)[0] for _ in range(3)][:2], [200, 200])
        st, h, _, _ = curl(url)
        self.assertEqual((st, h["retry-after"]), (429, "1"))
        time.sleep(1.1)  # one interval (500 ms) and more: budget back
        self.assertEqual(curl(url)[0], 200)

    def test_reload_starts_local_counts_afresh(self):
        """Documented (SECURITY-CASES RE-6): the local table belongs to the config snapshot,
        so a reload starts every local count afresh (Redis counts survive reloads)."""
        up = self.echo()
        port = free_port()
        p = self.start(self.config(port, up.port, """
      - rate_limit: { requests: 2, per: 1h }"""), port)
        url = f"http://127.0.0.1:{port}/z"
        self.assertEqual([curl(url)[0] for _ in range(3)], [200, 200, 429])
        p.reload()
        deadline = time.monotonic() + 10
        while curl(url)[0] != 200:  # the new snapshot answers once the reload is done
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.1)
        self.assertEqual([curl(url)[0] for _ in range(2)], [200, 429])

    def test_quota_calendar_day(self):
        up = self.echo()
        port = free_port()
        self.start(self.config(port, up.port, """
      - quota: { requests: 3, per: day, key: "header:x-user" }"""), port, workers=2)
        url = f"http://127.0.0.1:{port}/q"
        for i in range(3):
            st, h, _, _ = curl(url, "-H", "x-user: carol")
            self.assertEqual((st, h["ratelimit-limit"], h["ratelimit-remaining"]),
                             (200, "3", str(2 - i)))
        t0 = int(time.time())
        st, h, body, _ = curl(url, "-H", "x-user: carol")
        self.assertEqual(st, 429)
        self.assertEqual(json.loads(body)["error"]["code"], "RATE_LIMITED")
        left = 86400 - t0 % 86400  # until the next UTC midnight
        self.assertLessEqual(abs(int(h["ratelimit-reset"]) - left), 2)
        self.assertEqual(h["retry-after"], h["ratelimit-reset"])
        self.assertEqual(curl(url, "-H", "x-user: dave")[0], 200)

    def test_websocket_handshake_limited(self):
        """A WebSocket route: handshakes are counted; over the budget the handshake is a 429
        (with the headers), never an upgrade; the allowed 101 carries the headers."""
        sys.path.insert(0, os.path.join(HERE, "websocket"))
        from test_websocket import WsUpstream, handshake, read_head  # noqa: E402
        ws = WsUpstream()
        self.addCleanup(ws.stop)
        port = free_port()
        self.start(f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
clusters: [ {{ name: up, endpoints: [ "127.0.0.1:{ws.port}" ] }} ]
routes:
  - match: {{ prefix: /ws/ }}
    proxy: {{ cluster: up, websocket: true }}
    filters:
      - rate_limit: {{ requests: 2, per: 1h }}
""", port)
        socks = []
        for i in range(3):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            socks.append(s)
            s.sendall(handshake("/ws/echo"))
            st, hdrs, _ = read_head(s)
            if i < 2:
                self.assertEqual(st, 101)
                self.assertEqual(hdrs["ratelimit-remaining"], str(1 - i))
            else:
                self.assertEqual(st, 429)
                self.assertEqual(hdrs["ratelimit-limit"], "2")
                self.assertIn("retry-after", hdrs)
        for s in socks:
            s.close()
        self.assertEqual(ws.stats()["upgrades"], 2)

    def test_config_errors(self):
        d = tempfile.mkdtemp()
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", d]))
        cfg = os.path.join(d, "p.yaml")
        with open(cfg, "w") as f:
            f.write("""listeners: [ { address: "127.0.0.1:1" } ]
routes:
  - match: { prefix: / }
    respond: { status: 200 }
    filters:
      - rate_limit: { requests: 0, per: 1s }
      - rate_limit: { requests: 10, per: 1s, key: "cookie:x" }
      - rate_limit: { requests: 10, per: 1s, redis: { address: "127.0.0.1:6379", on_error: maybe } }
      - rate_limit: { requests: 10, per: 1s, redis: { adress: "127.0.0.1:6379" } }
      - quota: { requests: 10, per: week }
      - rate_limit: { requests: 10000000, per: 1ms }
      - rate_limit: { per: 1s }
""")
        p = subprocess.run([BIN, "--validate", "-c", cfg], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        e = p.stderr
        self.assertRegex(e, r"p\.yaml:6:\d+: .*out of range")
        self.assertRegex(e, r"p\.yaml:7:\d+: key 'cookie:x': expected client_ip, consumer")
        self.assertRegex(e, r"p\.yaml:8:\d+: on_error 'maybe': expected local, allow or deny")
        self.assertRegex(e, r"p\.yaml:9:\d+: unknown key 'adress'")
        self.assertRegex(e, r"p\.yaml:10:\d+: quota: per 'week': expected day or month")
        self.assertRegex(e, r"p\.yaml:11:\d+: rate_limit: .*more than one per microsecond")
        self.assertRegex(e, r"p\.yaml:12:\d+: .*requests")


if __name__ == "__main__":
    unittest.main()
