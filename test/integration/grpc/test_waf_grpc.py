"""
test_waf_grpc.py -- the `waf` filter on a grpc route, against examples/bookstore's
bookstore-server: REST/JSON bindings have their query, headers and JSON body
inspected (403 JSON error naming the rule); native gRPC calls have their
path and metadata inspected (PERMISSION_DENIED naming the rule; the binary
protobuf body is not given to the CRS). A refused call never reaches the
bookstore: the shelf it would have created does not exist afterwards.
"""
import json
import os
import sys
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bookstore"))

from portico_test import Portico, curl, free_port  # noqa: E402
from bookstore_server import PB, BookstoreServer, grpc, pb, pb_grpc  # noqa: E402

CONFIG = """
listeners:
  - address: 127.0.0.1:{port}
workers: 2
access_log: {{ path: access.log }}
descriptors: [ {pb} ]
clusters:
  - {{ name: books, protocol: grpc, endpoints: [ "127.0.0.1:{bs}" ] }}
routes:
  - grpc: {{ cluster: books }}
    filters: [ {{ waf: {{ paranoia: 1 }} }} ]
"""


class WafGrpcTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = BookstoreServer(threads=2).start()
        cls.addClassCleanup(cls.srv.stop)
        cls.port = free_port()
        cls.portico = Portico(CONFIG.format(port=cls.port, pb=PB, bs=cls.srv.port))
        cls.addClassCleanup(cls.portico.stop)
        cls.portico.wait_ready(cls.port, 120)  # the CRS loads slowly under ASan
        cls.base = "http://127.0.0.1:%d" % cls.port

    def themes(self):
        stub = pb_grpc.BookstoreStub(self.srv.channel())  # straight to the bookstore
        return [s.theme for s in stub.ListShelves(pb.ListShelvesRequest()).shelves]

    def unique(self, text):
        return "%s %d-%f" % (text, os.getpid(), time.time())

    def rest_create(self, theme, *extra):
        return curl("-H", "Host: books.example.com", "-H", "Content-Type: application/json",
                    "--data-binary", json.dumps({"theme": theme}), *extra,
                    self.base + "/v1/shelves")

    def test_rest_body_attack_refused(self):
        for theme in (self.unique("<script>alert(1)</script>"),
                      self.unique("x' UNION SELECT password FROM users--")):
            st, h, body, _ = self.rest_create(theme)
            self.assertEqual(st, 403, body)
            self.assertEqual(h.get("content-type"), "application/json")
            self.assertRegex(json.loads(body)["error"]["detail"], r"^blocked by rule 94[12]\d{3}")
            self.assertNotIn(theme, self.themes())

    def test_rest_benign_passes(self):
        for theme in (self.unique("O'Brien's picks"), self.unique("1 OR 2 apples"),
                      self.unique("select a plan")):
            st, _, body, _ = self.rest_create(theme)
            self.assertEqual(st, 200, body)
            self.assertIn(theme, self.themes())

    def test_rest_query_and_h2(self):
        q = urllib.parse.quote("1' OR '1'='1", safe="")
        st, _, body, _ = curl("-H", "Host: books.example.com", self.base + "/v1/shelves?x=" + q)
        self.assertEqual(st, 403, body)
        theme = self.unique("<img src=x onerror=alert(1)>")
        st, _, body, _ = self.rest_create(theme, "--http2-prior-knowledge")
        self.assertEqual(st, 403, body)
        self.assertNotIn(theme, self.themes())

    def call(self, theme, metadata):
        ch = grpc.insecure_channel("127.0.0.1:%d" % self.port,
                                   options=[("grpc.default_authority", "books.example.com")])
        self.addCleanup(ch.close)
        stub = pb_grpc.BookstoreStub(ch)
        return stub.CreateShelf(pb.CreateShelfRequest(shelf=pb.Shelf(theme=theme)),
                                metadata=metadata, timeout=20)

    def test_native_metadata_attack_permission_denied(self):
        for md in ((("x-trace", "() { :; }; /bin/cat /etc/passwd"),),
                   (("cookie", "session=' or 1=1--"),),
                   (("x-file", "../../../etc/shadow"),)):
            theme = self.unique("native")
            with self.assertRaises(grpc.RpcError) as cm:
                self.call(theme, md)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.PERMISSION_DENIED, md)
            self.assertRegex(cm.exception.details(), r"^blocked by rule 9(32|42|30)\d{3}", md)
            self.assertNotIn(theme, self.themes())

    def test_native_benign_passes(self):
        theme = self.unique("O'Brien's <b>favourites</b>")
        r = self.call(theme, (("x-note", "select a plan"),))
        self.assertEqual(r.theme, theme)
        self.assertIn(theme, self.themes())


if __name__ == "__main__":
    unittest.main()
