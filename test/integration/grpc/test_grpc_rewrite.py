"""
test_grpc_rewrite.py -- a request filter that rewrites the path on a grpc route
(the `rewrite` filter runs after routing): the REST call is transcoded by the
binding of the REWRITTEN path. The grpc handler matches the path once when the
request is routed (its body limit) and keeps that match for its start only
while the method and path are unchanged (core/handler.h, body_limit's note):
with a stale match, POST /v1/echo rewritten to /v1/shelves would be sent as
Echo and {"theme": ...} refused as an unknown field.
"""
import json
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bookstore"))

from portico_test import Portico, curl, free_port  # noqa: E402
from bookstore_server import BookstoreServer, PB  # noqa: E402


class GrpcRewriteTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bs = BookstoreServer(threads=1).start()
        cls.port = free_port()
        cls.gw = Portico(f"""
listeners: [ {{ address: "127.0.0.1:{cls.port}" }} ]
descriptors: [ {PB} ]
clusters: [ {{ name: books, protocol: grpc, endpoints: [ "127.0.0.1:{cls.bs.port}" ] }} ]
routes:
  - match: {{ path: /v1/echo }}
    grpc: {{ cluster: books }}
    filters: [ {{ rewrite: {{ regex: "^/v1/echo$", replace: /v1/shelves }} }} ]
  - grpc: {{ cluster: books }}
""")
        try:
            cls.gw.wait_ready(cls.port)
        except Exception:
            print(cls.gw.output())
            raise
        cls.base = f"http://127.0.0.1:{cls.port}"

    @classmethod
    def tearDownClass(cls):
        rc, out = cls.gw.stop_with_output()
        brc = cls.bs.stop()
        assert rc == 0, "portico exited with %s:\n%s" % (rc, out)
        assert brc == 0, "bookstore-server exited with %s" % brc

    def post(self, path, obj):
        return curl("-X", "POST", "-H", "content-type: application/json", "--data",
                    json.dumps(obj), self.base + path)

    def test_rewritten_path_picks_its_binding(self):
        st, _, body, err = self.post("/v1/echo", {"theme": "Rewritten"})
        self.assertEqual(st, 200, (body, err))
        shelf = json.loads(body)
        self.assertEqual(shelf.get("theme"), "Rewritten", body)  # CreateShelf answered
        self.assertIn("id", shelf)

    def test_unrewritten_path_still_matched_once(self):
        st, _, body, err = self.post("/v1/echo", {"message": "hi"})
        # rewritten too: CreateShelf refuses Echo's field, naming it
        self.assertEqual(st, 400, (body, err))
        self.assertIn(b"message", body)
        # the catch-all route is not rewritten: Echo answers
        st, _, body, err = curl("-H", "content-type: application/json", "--data",
                                '{"message":"hi"}', self.base + "/v1/echo/x")
        self.assertIn(st, (404, 405), (body, err))  # GET-only binding under /v1/echo/{message}
        st, _, body, err = curl(self.base + "/v1/echo/hi")
        self.assertEqual(st, 200, (body, err))
        self.assertIn(b"hi", body)


if __name__ == "__main__":
    unittest.main()
