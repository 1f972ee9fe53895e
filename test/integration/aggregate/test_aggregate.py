"""
test_aggregate.py -- the `aggregate` route handler through the real portico
binary: a small REST service (rest_service.py: delays, errors, malformed
JSON) and the example Bookstore gRPC service (its Echo method delays and
fails on request).
"""
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bookstore"))
sys.path.insert(0, HERE)

from portico_test import BIN, Portico, curl, free_port  # noqa: E402
from bookstore_server import BookstoreServer, PB  # noqa: E402
from rest_service import RestService  # noqa: E402

ECHO = "bookstore.v1.Bookstore/Echo"

CONFIG = """
listeners: [ {{ address: 127.0.0.1:{port} }} ]
admin: {{ address: 127.0.0.1:{admin} }}
workers: 2
access_log: {{ path: {log} }}
descriptors: [ {pb} ]
clusters:
  - {{ name: users, endpoints: [ "127.0.0.1:{rest}" ] }}
  - {{ name: dead, endpoints: [ "127.0.0.1:{dead}" ], retries: 0 }}
  - {{ name: books, protocol: grpc, endpoints: [ "127.0.0.1:{bs}" ] }}
routes:
  - match: {{ template: "/c/{{user}}" }}
    aggregate:
      calls:
        - {{ name: p1, http: {{ cluster: users, path: "/d/300/a/{{user}}" }} }}
        - {{ name: p2, http: {{ cluster: users, path: "/d/300/b/{{user}}" }} }}
        - {{ name: g, grpc: {{ cluster: books, method: {echo}, body: {{ message: "{{user}}", delay_ms: 300 }} }} }}
  - match: {{ template: "/chain/{{user}}" }}
    aggregate:
      calls:
        - {{ name: c, grpc: {{ cluster: books, method: {echo}, body: {{ message: "{{b.last}}:{{a.last}}:{{b.n}}", delay_ms: 100 }} }} }}
        - {{ name: b, http: {{ cluster: users, path: "/d/100/v/{{a.n}}" }} }}
        - {{ name: a, http: {{ cluster: users, path: "/d/100/u/{{user}}" }} }}
  - match: {{ path: /partial }}
    aggregate:
      calls:
        - {{ name: ok, http: {{ cluster: users, path: "/ok/1" }} }}
        - {{ name: opt, optional: true, http: {{ cluster: users, path: "/s/500/x" }} }}
        - {{ name: bad, optional: true, http: {{ cluster: users, path: "/bad/x" }} }}
        - {{ name: dep, optional: true, http: {{ cluster: users, path: "/x/{{opt.n}}" }} }}
        - {{ name: nf, optional: true, http: {{ cluster: users, path: "/s/404/x" }} }}
  - match: {{ path: /req404 }}
    aggregate:
      calls:
        - {{ name: ok, http: {{ cluster: users, path: "/ok/1" }} }}
        - {{ name: r, http: {{ cluster: users, path: "/s/404/x" }} }}
  - match: {{ path: /down }}
    aggregate:
      calls: [ {{ name: r, http: {{ cluster: dead, path: "/x" }} }} ]
  - match: {{ path: /overall }}
    aggregate:
      timeout: 300ms
      calls:
        - {{ name: ok, http: {{ cluster: users, path: "/ok/1" }} }}
        - {{ name: r, http: {{ cluster: users, path: "/d/3000/x" }} }}
  - match: {{ path: /overall-optional }}
    aggregate:
      timeout: 300ms
      calls:
        - {{ name: ok, http: {{ cluster: users, path: "/ok/1" }} }}
        - {{ name: slow, optional: true, http: {{ cluster: users, path: "/d/3000/x" }} }}
  - match: {{ path: /calltimeout }}
    aggregate:
      calls:
        - {{ name: ok, http: {{ cluster: users, path: "/ok/1" }} }}
        - {{ name: slow, optional: true, timeout: 200ms, http: {{ cluster: users, path: "/d/3000/x" }} }}
        - {{ name: gslow, optional: true, timeout: 200ms, grpc: {{ cluster: books, method: {echo}, body: {{ delay_ms: 3000 }} }} }}
  - match: {{ path: /grpcfail }}
    aggregate:
      calls:
        - {{ name: g, grpc: {{ cluster: books, method: {echo}, body: {{ fail_code: 5 }} }} }}
  - match: {{ path: /grpcfail-optional }}
    aggregate:
      calls:
        - {{ name: ok, http: {{ cluster: users, path: "/ok/1" }} }}
        - {{ name: g, optional: true, grpc: {{ cluster: books, method: {echo}, body: {{ fail_code: 7 }} }} }}
  - match: {{ path: /big }}
    aggregate:
      max_result: 1k
      calls:
        - {{ name: small, http: {{ cluster: users, path: "/big/10/x" }} }}
        - {{ name: large, optional: true, http: {{ cluster: users, path: "/big/5000/x" }} }}
        - {{ name: glarge, optional: true, grpc: {{ cluster: books, method: {echo}, body: {{ message: "{{large_msg}}" }} }} }}
  - match: {{ path: /scalars }}
    aggregate:
      calls:
        - {{ name: n, http: {{ cluster: users, path: "/json/42" }} }}
        - {{ name: t, http: {{ cluster: users, path: "/json/true" }} }}
        - {{ name: d, http: {{ cluster: users, path: "/json/-1.5e3" }} }}
        - {{ name: e, http: {{ cluster: users, path: "/json/%20%0A" }} }}
        - {{ name: s, http: {{ cluster: users, path: "/json/%22s%22" }} }}
        - {{ name: x, optional: true, http: {{ cluster: users, path: "/json/42x" }} }}
        - {{ name: y, optional: true, http: {{ cluster: users, path: "/json/%7B%7D%7B%7D" }} }}
        - {{ name: z, optional: true, http: {{ cluster: users, path: "/json/tru" }} }}
        - {{ name: u, http: {{ cluster: users, path: "/json/%22{{n}}{{t}}%22" }} }}
  - match: {{ path: /malformed }}
    aggregate:
      calls: [ {{ name: r, http: {{ cluster: users, path: "/bad/x" }} }} ]
  - match: {{ path: /cancel }}
    aggregate:
      calls:
        - {{ name: slow, http: {{ cluster: users, path: "/d/5000/slow" }} }}
        - {{ name: fast, http: {{ cluster: users, path: "/d/100/s/404/x" }} }}
  - match: {{ path: /slow }}
    aggregate:
      calls:
        - {{ name: slow, http: {{ cluster: users, path: "/d/5000/y" }} }}
        - {{ name: g, grpc: {{ cluster: books, method: {echo}, body: {{ delay_ms: 5000 }} }} }}
  - match: {{ template: "/esc/{{id}}" }}
    aggregate:
      calls:
        - name: e
          http: {{ cluster: users, path: "/e/{{q}}/{{id}}/end?h={{header.x-v}}&lit=a{{{{b}}}}",
                  headers: {{ x-tenant: "t-{{header.x-v}}" }} }}
  - match: {{ path: /body }}
    aggregate:
      calls:
        - name: b
          http:
            cluster: users
            method: POST
            path: /echo
            body: {{ count: "{{body.a.num}}", label: "n={{body.a.num}}", fixed: 3, yes: true,
                    obj: "{{body.a}}", list: [ "{{body.list[1]}}", x ] }}
  - match: {{ template: "/merge/{{user}}" }}
    aggregate:
      calls:
        - name: p
          http: {{ cluster: users, path: "/u/{{user}}" }}
          select: [ last, "items[].id", nested.a.b ]
          rename: {{ user: last }}
        - name: q
          http: {{ cluster: users, path: "/w/{{user}}" }}
          omit: [ items, nested, query, method, tenant, path, rest ]
          copy_headers: [ etag ]
        - name: g
          grpc: {{ cluster: books, method: {echo}, body: {{ message: "m", delay_ms: "{{p.n}}" }} }}
          select: [ message ]
      merge: {{ flatten: [ p ] }}
"""


class AggregateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="agg-test-")
        cls.rest = RestService()
        cls.bs = BookstoreServer(threads=4).start()
        cls.port, cls.admin = free_port(), free_port()
        cls.log = os.path.join(cls.tmp.name, "access.log")
        cls.pt = Portico(CONFIG.format(port=cls.port, admin=cls.admin, log=cls.log, pb=PB,
                                       rest=cls.rest.port, dead=free_port(), bs=cls.bs.port,
                                       echo=ECHO), workers=2)
        try:
            cls.pt.wait_ready(cls.port)
        except Exception:
            print(cls.pt.output())
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        code = cls.pt.stop()
        cls.bs.stop()
        cls.rest.stop()
        cls.tmp.cleanup()
        if code != 0:
            raise AssertionError("portico exited with %s" % code)

    def get(self, path, *args, timeout=20):
        t0 = time.monotonic()
        st, h, body, err = curl(*args, "http://127.0.0.1:%d%s" % (self.port, path),
                                timeout=timeout)
        return st, h, (json.loads(body) if body else None), time.monotonic() - t0

    def log_lines(self, path):
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            with open(self.log) as f:
                lines = [json.loads(x) for x in f if '"path":"%s"' % path in x]
            if lines:
                return lines
            time.sleep(0.05)
        self.fail("no access log line for %s" % path)

    def wait_cancelled(self, before, n=1, timeout=3.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.rest.stats()["cancelled"] >= before + n:
                return
            time.sleep(0.02)
        self.fail("backend saw no cancellation: %r" % self.rest.stats())

    # ---- concurrency and dependencies ----------------------------------------------

    def test_independent_calls_run_at_once(self):
        st, h, body, dt = self.get("/c/7")
        self.assertEqual(st, 200, body)
        self.assertEqual(list(body), ["p1", "p2", "g"])  # the order of `calls`
        self.assertEqual(body["p1"]["rest"], "/a/7")
        self.assertEqual(body["p2"]["rest"], "/b/7")
        self.assertEqual(body["g"], {"message": "7"})
        # three 300 ms calls: close to the slowest, far from the sum (900 ms)
        self.assertGreaterEqual(dt, 0.29)
        self.assertLess(dt, 0.75)

    def test_chain_of_three(self):
        st, h, body, dt = self.get("/chain/5")
        self.assertEqual(st, 200, body)
        self.assertEqual(list(body), ["c", "b", "a"])
        self.assertEqual(body["a"]["rest"], "/u/5")
        self.assertEqual(body["b"]["rest"], "/v/5")          # {a.n}: a number as path text
        self.assertEqual(body["c"], {"message": "5:5:5"})
        self.assertGreaterEqual(dt, 0.29)                    # one after the other
        line = self.log_lines("/chain/5")[-1]
        calls = {c["name"]: c for c in line["calls"]}
        self.assertEqual([c["name"] for c in line["calls"]], ["c", "b", "a"])
        for c in calls.values():
            self.assertEqual(c["status"], 200)
            self.assertGreaterEqual(c["ms"], 95)
        self.assertIn("127.0.0.1:%d" % self.rest.port, calls["a"]["upstream"])
        self.assertIn("127.0.0.1:%d" % self.bs.port, calls["c"]["upstream"])

    # ---- failures ---------------------------------------------------------------------

    def test_partial_failure(self):
        st, h, body, _ = self.get("/partial")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["ok"]["rest"], "/ok/1")
        for name in ("opt", "bad", "dep", "nf"):
            self.assertNotIn(name, body)
        errs = body["errors"]
        self.assertEqual(errs["opt"]["status"], 502)
        self.assertEqual(errs["bad"]["status"], 502)
        self.assertIn("not valid JSON", errs["bad"]["message"])
        self.assertEqual(errs["dep"]["status"], 502)       # its input failed
        self.assertIn("opt", errs["dep"]["message"])
        self.assertEqual(errs["nf"], {"status": 404, "message": "status 404 from the service"})
        self.assertEqual(h["portico-partial"], "opt, bad, dep, nf")

    def test_required_4xx_passed_through(self):
        st, h, body, _ = self.get("/req404")
        self.assertEqual(st, 404)
        self.assertEqual(body, {"error": {"message": "status 404 from the service"}})
        self.assertEqual(h["portico-failed-call"], "r")

    def test_required_unreachable(self):
        st, h, body, _ = self.get("/down")
        self.assertIn(st, (502, 503))
        self.assertEqual(body["error"]["call"], "r")

    def test_scalar_results(self):
        st, h, body, _ = self.get("/scalars")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["n"], 42)
        self.assertIs(body["t"], True)
        self.assertEqual(body["d"], -1500)
        self.assertIsNone(body["e"])        # an empty (blank) answer is null
        self.assertEqual(body["s"], "s")
        self.assertEqual(body["u"], "42true")  # {n}{t}: whole scalar results as text
        self.assertEqual(sorted(body["errors"]), ["x", "y", "z"])

    def test_required_malformed_json(self):
        st, h, body, _ = self.get("/malformed")
        self.assertEqual(st, 502)
        self.assertEqual(body["error"]["code"], "UPSTREAM")
        self.assertEqual(h["portico-failed-call"], "r")

    def test_grpc_status_mapped(self):
        st, h, body, _ = self.get("/grpcfail")
        self.assertEqual(st, 404)                  # NOT_FOUND, as grpc routes map it
        self.assertEqual(body["code"], 5)
        st, h, body, _ = self.get("/grpcfail-optional")
        self.assertEqual(st, 200)
        self.assertEqual(body["errors"]["g"]["status"], 403)  # PERMISSION_DENIED
        self.assertEqual(h["portico-partial"], "g")

    def test_max_result(self):
        st, h, body, _ = self.get("/big?large_msg=" + "y" * 2000, "--http2-prior-knowledge")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["small"]["big"], "x" * 10)
        self.assertEqual(body["errors"]["large"]["status"], 502)
        self.assertIn("max_result", body["errors"]["large"]["message"])
        self.assertEqual(body["errors"]["glarge"]["status"], 502)
        self.assertEqual(h["portico-partial"], "large, glarge")

    # ---- time -------------------------------------------------------------------------

    def test_overall_timeout(self):
        before = self.rest.stats()["cancelled"]
        st, h, body, dt = self.get("/overall")
        self.assertEqual(st, 504)
        self.assertEqual(body["error"]["call"], "r")
        self.assertLess(dt, 2.0)
        self.wait_cancelled(before)
        st, h, body, dt = self.get("/overall-optional")
        self.assertEqual(st, 200)
        self.assertEqual(body["errors"]["slow"]["status"], 504)
        self.assertLess(dt, 2.0)

    def test_per_call_timeout(self):
        st, h, body, dt = self.get("/calltimeout")
        self.assertEqual(st, 200, body)
        self.assertEqual(body["errors"]["slow"]["status"], 504)
        self.assertEqual(body["errors"]["gslow"]["status"], 504)
        self.assertIn("ok", body)
        self.assertLess(dt, 2.0)

    # ---- cancellation -------------------------------------------------------------------

    def test_failure_cancels_outstanding_calls(self):
        before = self.rest.stats()["cancelled"]
        st, h, body, dt = self.get("/cancel")
        self.assertEqual(st, 404)
        self.assertLess(dt, 3.0)
        self.wait_cancelled(before)

    def test_client_disconnect_cancels_backends(self):
        before = self.rest.stats()["cancelled"]
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        # a reset, not a half-close (after which an HTTP/1.1 server still answers)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        self.wait_cancelled(before)
        line = self.log_lines("/slow")[-1]
        self.assertEqual([c["status"] for c in line["calls"]], [499, 499])

    # ---- templates -----------------------------------------------------------------------

    def test_template_escaping(self):
        st, h, body, _ = self.get("/esc/a%20b?q=a%2Fb%3Fc%25d%26e", "-H", "x-v: 1/2?3%4 5")
        self.assertEqual(st, 200, body)
        e = body["e"]
        self.assertEqual(e["path"], "/e/a%2Fb%3Fc%25d%26e/a%20b/end")
        self.assertEqual(e["query"], "h=1%2F2%3F3%254%205&lit=a{b}")
        self.assertEqual(e["tenant"], "t-1/2?3%4 5")
        # a value the request lacks is the client's mistake: 400 naming it
        st, h, body, _ = self.get("/esc/x", "-H", "x-v: 1")
        self.assertEqual(st, 400)
        self.assertIn("{q}", body["error"]["detail"])

    def test_typed_json_body(self):
        st, h, body, _ = self.get("/body", "-X", "POST", "-H", "content-type: application/json",
                                  "--data", '{"a": {"num": 5, "s": "x"}, "list": [1, "two"]}')
        self.assertEqual(st, 200, body)
        self.assertEqual(body["b"]["body"], {"count": 5, "label": "n=5", "fixed": 3, "yes": True,
                                             "obj": {"num": 5, "s": "x"}, "list": ["two", "x"]})
        st, h, body, _ = self.get("/body", "-X", "POST", "--data", "{not json")
        self.assertEqual(st, 400)

    def test_merge_select_rename_flatten_copy_headers(self):
        st, h, body, _ = self.get("/merge/12")
        self.assertEqual(st, 200, body)
        self.assertEqual(body, {"items": [1, 2, 3], "nested": {"a": {"b": "deep"}}, "user": "12",
                                "q": {"last": "12", "n": 12}, "g": {"message": "m"}})
        self.assertEqual(h["etag"], '"v-12"')

    # ---- load and observability --------------------------------------------------------------

    def test_200_concurrent_aggregates(self):
        results, errors = [], []

        def one(i):
            try:
                st, h, body, _ = self.get("/merge/%d" % i, timeout=60)
                results.append((i, st, body))
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        self.assertEqual(errors, [])
        self.assertEqual(len(results), 200)
        for i, st, body in results:
            self.assertEqual(st, 200, body)
            self.assertEqual(body["user"], str(i))
            self.assertEqual(body["q"]["n"], i)

    def test_metrics_per_call(self):
        self.get("/chain/9")
        st, h, raw, err = curl("http://127.0.0.1:%d/metrics" % self.admin)
        text = raw.decode()
        self.assertRegex(text, r'portico_aggregate_calls_total\{route="route\[1\]",call="b",'
                               r'code="200"\} [1-9]')
        self.assertIn('portico_aggregate_call_duration_seconds_count{route="route[1]",call="c"}',
                      text)


class AggregateConfigTest(unittest.TestCase):
    def validate(self, text):
        with tempfile.TemporaryDirectory(prefix="agg-conf-") as d:
            path = os.path.join(d, "p.yaml")
            with open(path, "w") as f:
                f.write(text)
            p = subprocess.run([BIN, "--validate", "-c", path], capture_output=True, timeout=30)
            return p.returncode, (p.stdout + p.stderr).decode().replace(path, "p.yaml")

    HEAD = """listeners: [ { address: 127.0.0.1:1 } ]
descriptors: [ %s ]
clusters:
  - { name: users, endpoints: [ "127.0.0.1:2" ] }
  - { name: books, protocol: grpc, endpoints: [ "127.0.0.1:3" ] }
routes:
""" % PB

    def test_cycle(self):
        rc, out = self.validate(self.HEAD + """  - aggregate:
      calls:
        - { name: a, http: { cluster: users, path: "/x/{b.id}" } }
        - { name: b, http: { cluster: users, path: "/x/{c.id}" } }
        - { name: c, grpc: { cluster: books, method: %s, body: { message: "{a.id}" } } }
        - { name: d, http: { cluster: users, path: "/x/{d.id}" } }
""" % ECHO)
        self.assertNotEqual(rc, 0)
        self.assertIn("p.yaml:9:11: aggregate: dependency cycle between calls: a -> b -> c -> a",
                      out)
        self.assertIn("p.yaml:12:11: aggregate: dependency cycle between calls: d -> d", out)

    def test_unknown_reference(self):
        rc, out = self.validate(self.HEAD + """  - aggregate:
      calls:
        - { name: a, http: { cluster: users, path: "/x/{nope.id}" } }
        - { name: b, grpc: { cluster: books, method: %s, body: { message: "{a.x} {zzz[0]}" } } }
""" % ECHO)
        self.assertNotEqual(rc, 0)
        self.assertIn("p.yaml:9:56: aggregate: call 'a': unknown reference {nope.id}", out)
        self.assertIn("p.yaml:10:107: aggregate: call 'b': unknown reference {zzz[0]}", out)

    def test_soap_not_yet_and_limits(self):
        rc, out = self.validate(self.HEAD + """  - aggregate:
      calls:
        - { name: a, soap: { route: crm, operation: GetCustomer } }
""")
        self.assertNotEqual(rc, 0)
        self.assertIn("p.yaml:9:28: aggregate: call 'a': soap calls need a soap route", out)
        calls = "".join('        - { name: c%d, http: { cluster: users, path: "/" } }\n' % i
                        for i in range(33))
        rc, out = self.validate(self.HEAD + "  - aggregate:\n      calls:\n" + calls)
        self.assertNotEqual(rc, 0)
        self.assertIn("at most 32 calls", out)
        rc, out = self.validate(self.HEAD + """  - aggregate:
      calls:
        - { name: a, http: { cluster: users, path: "/x/{a" } }
""")
        self.assertIn("p.yaml:9:56: template '/x/{a': unclosed `{`", out)

    def test_constant_grpc_body_checked_at_load(self):
        rc, out = self.validate(self.HEAD + """  - aggregate:
      calls:
        - { name: g, grpc: { cluster: books, method: %s, body: { nope: 1, delay_ms: 2 } } }
""" % ECHO)
        self.assertNotEqual(rc, 0)
        self.assertIn("p.yaml:9:89: aggregate: call 'g': body is not a bookstore.v1.EchoRequest",
                      out)

    def test_valid(self):
        rc, out = self.validate(self.HEAD + """  - match: { template: "/d/{user}" }
    aggregate:
      timeout: 2s
      max_result: 1m
      calls:
        - { name: profile, http: { cluster: users, path: "/users/{user}" } }
        - { name: item, grpc: { cluster: books, method: %s, body: { message: "{profile.x}" } } }
""" % ECHO)
        self.assertEqual(rc, 0, out)


if __name__ == "__main__":
    unittest.main()
