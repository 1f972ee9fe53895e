"""
Path confusion against prefix rules (issue 14, SECURITY-CASES AU-12): a deny
rule on /admin/ (the respond handler answering 403) in front of a proxy route
whose upstream echoes the path it saw. Empty segments are merged for routing
and for the upstream alike; "." / ".." segments with parameters ("..;", the
Tomcat bypass) are refused with a 400 naming the problem. Sent raw over
HTTP/1.1 and with curl --path-as-is over HTTP/2, so no client tidies them.
"""
import json
import unittest

from portico_test import PorticoTestCase, curl, free_port, raw_request


def config(port, echo_port, merge=None):
    limits = "" if merge is None else f"limits: {{ merge_slashes: {merge} }}"
    return f"""
listeners:
  - address: 127.0.0.1:{port}
{limits}
clusters:
  - name: web
    protocol: http
    endpoints: [ "127.0.0.1:{echo_port}" ]
routes:
  - name: deny-admin
    match: {{ prefix: /admin/ }}
    respond: {{ status: 403, body: "denied" }}
  - name: all
    match: {{ prefix: / }}
    proxy: {{ cluster: web }}
"""

DOT_PARAMS = "dot segment with parameters (like '..;') in path"

# (path as sent, status, path the upstream saw (None: no upstream request), 400 detail)
DEFAULT_CASES = [
    ("//admin/x", 403, None, None),
    ("///admin/x", 403, None, None),
    ("/admin//x", 403, None, None),
    ("/./admin/x", 403, None, None),
    ("/public/../admin/x", 403, None, None),
    ("/public/..;/admin/x", 400, None, DOT_PARAMS),
    ("/%2e%2e;/admin", 400, None, DOT_PARAMS),
    ("/public/.%2E;x=1/admin/x", 400, None, DOT_PARAMS),
    ("/..;/admin/x", 400, None, DOT_PARAMS),
    ("///admin", 200, "/admin", None),
    ("/./admin", 200, "/admin", None),
    ("//public//a/", 200, "/public/a/", None),
    ("/public/a;v=1/b", 200, "/public/a;v=1/b", None),
]


class PathRulesTest(PorticoTestCase):

    def serve(self, merge=None):
        self.port = free_port()
        self.up = self.echo()
        self.start(config(self.port, self.up.port, merge), self.port)

    def h1(self, path):
        out = raw_request(self.port, f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                          .encode())
        head, _, body = out.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body

    def h2(self, path):
        st, _, body, err = curl("--http2-prior-knowledge", "--path-as-is",
                                f"http://127.0.0.1:{self.port}{path}")
        return st, body

    def check(self, cases):
        for codec in (self.h1, self.h2):
            for path, want, upstream_path, detail in cases:
                with self.subTest(codec=codec.__name__, path=path):
                    before = len(self.up.requests)
                    st, body = codec(path)
                    self.assertEqual(st, want, body)
                    seen = [r["target"] for r in self.up.requests[before:]]
                    self.assertEqual(seen, [upstream_path] if upstream_path else [])
                    if detail is not None:
                        err = json.loads(body)["error"]
                        self.assertEqual(err["code"], "INVALID")
                        self.assertEqual(err["detail"], detail)

    def test_default_merges_and_refuses(self):
        self.serve()
        self.check(DEFAULT_CASES)

    def test_merge_slashes_off_keeps_raw_paths(self):
        """limits.merge_slashes: false forwards empty segments as sent (for back ends
        that need them); the "..;" refusal does not depend on it."""
        self.serve(merge="false")
        self.check([
            ("//admin/x", 200, "//admin/x", None),
            ("/a//b/", 200, "/a//b/", None),
            ("/admin//x", 403, None, None),
            ("/public/..;/admin/x", 400, None, DOT_PARAMS),
        ])


if __name__ == "__main__":
    unittest.main()
