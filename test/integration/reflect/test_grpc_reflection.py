"""
test_grpc_reflection.py -- `descriptors: [ grpc-reflection://CLUSTER ]`: the real
portico binary loads its descriptors from a @grpc/grpc-js server with
@grpc/reflection (reflect_server.js) and transcodes REST/JSON to it.

The server serves a protoc FileDescriptorSet of proto/shop/v1/*.proto (google.api.http
annotations; message types in an imported file; a second service in a file of its
own), with reflection v1 + v1alpha, only one of them, or none.
"""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from portico_test import Portico, PorticoTestCase, curl, free_port, make_cert

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
IMPORTS = [os.path.join(HERE, "proto"), os.path.join(ROOT, "protos"), "/usr/include"]

# The second version of types.proto / shop.proto: Item.price_cents (int64) became
# `string price = 3`, Item.tags is gone, CreateItem is gone, DeleteItem is new.
TYPES_V2 = """syntax = "proto3";
package shop.v1;
message Item { string id = 1; string name = 2; string price = 3; }
"""
SHOP_V2 = """syntax = "proto3";
package shop.v1;
import "google/api/annotations.proto";
import "shop/v1/types.proto";
service Shop {
  rpc GetItem(GetItemRequest) returns (Item) { option (google.api.http) = { get: "/v1/items/{id}" }; }
  rpc DeleteItem(GetItemRequest) returns (Item) { option (google.api.http) = { delete: "/v1/items/{id}" }; }
}
message GetItemRequest { string id = 1; }
"""


def compile_set(out, proto_dir, protos):
    subprocess.run(["protoc"] + ["-I" + d for d in [proto_dir] + IMPORTS[1:]] +
                   ["--include_imports", "--descriptor_set_out=" + out] + protos,
                   check=True, capture_output=True, timeout=60)
    return out


class NodeServers:
    """One reflect_server.js process serving `specs` ("PORT:MODE[:tls]")."""

    def __init__(self, desc, specs, tls=None):
        args = ["node", os.path.join(HERE, "reflect_server.js")]
        if tls is not None:
            args += ["--tls"] + list(tls)
        self.proc = subprocess.Popen(args + [desc] + specs, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=HERE)
        for spec in specs:
            self.expect("listening " + spec.split(":")[0])

    def expect(self, what, timeout=30):
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.strip() == what.encode():
                return
            if not line and self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError("reflect_server.js: expected %r, got %r" % (what, line))

    def command(self, cmd, answer):
        self.proc.stdin.write(cmd.encode() + b"\n")
        self.proc.stdin.flush()
        self.expect(answer)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc.stdin.close()
        self.proc.stdout.close()


def config(port, grpc_port, entry="grpc-reflection://shop", cluster_extra="", scheme=""):
    return f"""listeners: [ {{ address: "127.0.0.1:{port}" }} ]
clusters:
  - {{ name: shop, protocol: grpc, endpoints: [ "{scheme}127.0.0.1:{grpc_port}" ]{cluster_extra} }}
  - {{ name: web, endpoints: [ "127.0.0.1:{grpc_port}" ] }}
descriptors: [ "{entry}" ]
routes:
  - grpc: {{ cluster: shop }}
"""


def wait_for(pred, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


class ReflectionTest(PorticoTestCase):
    @classmethod
    def setUpClass(cls):
        tmp = tempfile.TemporaryDirectory(prefix="portico-reflect-")
        cls.addClassCleanup(tmp.cleanup)
        cls.tmp = tmp.name
        cls.desc = compile_set(os.path.join(cls.tmp, "shop.pb"), IMPORTS[0],
                               ["shop/v1/shop.proto", "shop/v1/audit.proto"])
        cls.crt, key = make_cert(cls.tmp)
        # one node process for the servers no test stops: node starts slowly under load
        cls.ports = {m: free_port() for m in ("both", "v1", "v1alpha", "none", "tls")}
        specs = ["%d:%s" % (p, m) for m, p in cls.ports.items() if m != "tls"]
        specs.append("%d:both:tls" % cls.ports["tls"])
        cls.shared = NodeServers(cls.desc, specs, tls=(cls.crt, key))
        cls.addClassCleanup(cls.shared.stop)

    def node(self, port):
        """A server of its own (both versions) on `port`, for tests that stop it."""
        s = NodeServers(self.desc, ["%d:both" % port])
        self.addCleanup(s.stop)
        return s

    def validate(self, text):
        """portico --validate on `text`: (exit code, output, path of the config)."""
        path = os.path.join(self.tmp, "portico.yaml")
        with open(path, "w") as f:
            f.write(text)
        r = subprocess.run([os.environ.get("PORTICO_BIN", os.path.join(ROOT, "build", "bin",
                                                                        "portico")),
                            "--validate", "-c", path], capture_output=True, timeout=60)
        return r.returncode, (r.stdout + r.stderr).decode(), path

    def get(self, port, path):
        st, _, body, _ = curl("-s", f"http://127.0.0.1:{port}{path}")
        return st, body

    # ---- loading and transcoding ----

    def test_transcodes_with_reflected_descriptors(self):
        port = free_port()
        p = self.start(config(port, self.ports["both"]), port)
        st, body = self.get(port, "/v1/items/42")
        self.assertEqual(st, 200, body)
        # int64 as a JSON string, repeated field: the types came from the imported file
        self.assertEqual(body, b'{"id":"42","name":"item 42 v1","priceCents":"1250",'
                               b'"tags":["a","b"]}')
        st, _, body, _ = curl("-s", "-XPOST", "-H", "content-type: application/json",
                              "-d", '{"name":"pen","priceCents":"3"}',
                              f"http://127.0.0.1:{port}/v1/items")
        self.assertEqual((st, body), (200, b'{"id":"new","name":"pen","priceCents":"3"}'))
        # every listed service: Audit too (its own file), but not the reflection service
        self.assertEqual(self.get(port, "/v1/ping"), (200, b'{"status":"ok"}'))
        out = p.output()
        self.assertRegex(out, r"grpc-reflection://shop: 6 files \(\d+ bytes\) from "
                              r"127\.0\.0\.1:\d+, grpc\.reflection\.v1 in \d+ ms")

    def test_service_list(self):
        port = free_port()
        p = self.start(config(port, self.ports["both"],
                              "grpc-reflection://shop?services=shop.v1.Shop"), port)
        self.assertEqual(self.get(port, "/v1/items/7")[0], 200)
        st, body = self.get(port, "/v1/ping")  # Audit was not asked for: no binding
        self.assertEqual(st, 404, body)
        self.assertIn("5 files", p.output())

    def test_v1alpha_only_server(self):
        port = free_port()
        p = self.start(config(port, self.ports["v1alpha"]), port)
        self.assertEqual(self.get(port, "/v1/items/1")[0], 200)
        self.assertIn("grpc.reflection.v1alpha", p.output())

    def test_v1_only_server(self):
        code, out, _ = self.validate(config(free_port(), self.ports["v1"]))
        self.assertEqual(code, 0, out)
        self.assertIn("grpc.reflection.v1 in", out)

    def test_tls_cluster(self):
        tport = self.ports["tls"]
        ok = config(free_port(), tport, scheme="https://",
                    cluster_extra=f', ca_file: "{self.crt}"')
        code, out, _ = self.validate(ok)
        self.assertEqual(code, 0, out)
        # the system store does not know the test's certificate
        code, out, path = self.validate(config(free_port(), tport, scheme="https://"))
        self.assertEqual(code, 1, out)
        self.assertIn("grpc-reflection://shop: 127.0.0.1:%d: TLS certificate verification "
                      "failed" % tport, out)

    # ---- errors at load ----

    def test_cluster_down_at_start(self):
        down = free_port()
        port = free_port()
        p = Portico(config(port, down), workers=1)
        try:
            p.proc.wait(20)
            out = p.output()
        finally:
            p.stop()
        self.assertNotEqual(p.proc.returncode, 0, out)
        self.assertRegex(out, r"portico\.yaml:5:16: grpc-reflection://shop: 127\.0\.0\.1:%d: "
                              r"connection refused" % down)

    def test_unknown_service(self):
        code, out, path = self.validate(
            config(free_port(), self.ports["both"], "grpc-reflection://shop?services=shop.v1.Nope"))
        self.assertEqual(code, 1, out)
        self.assertIn(path + ":5:16: grpc-reflection://shop: service shop.v1.Nope: not found",
                      out)

    def test_server_without_reflection(self):
        code, out, path = self.validate(config(free_port(), self.ports["none"]))
        self.assertEqual(code, 1, out)
        self.assertIn(path + ":5:16: grpc-reflection://shop: the server has no reflection "
                      "service (grpc.reflection.v1 and v1alpha: UNIMPLEMENTED)", out)

    def test_bad_entries(self):
        cases = [
            ("grpc-reflection://nope", "no cluster named nope"),
            ("grpc-reflection://web", "cluster web is not a grpc cluster"),
            ("grpc-reflection://shop?services=bad name", "is not a full service name"),
            ("grpc-reflection://shop?timeout=forever", "timeout: expected a duration"),
            ("grpc-reflection://shop?color=red", 'unknown parameter "color=red"'),
        ]
        for entry, msg in cases:
            code, out, path = self.validate(config(free_port(), free_port(), entry))
            self.assertEqual(code, 1, out)
            self.assertIn(path + ":5:16: ", out)
            self.assertIn(msg, out)

    def test_timeout(self):
        # a listener that never answers: the accept queue takes the connection
        import socket
        s = socket.socket()
        self.addCleanup(s.close)
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        port = s.getsockname()[1]
        t0 = time.monotonic()
        code, out, _ = self.validate(
            config(free_port(), port, "grpc-reflection://shop?timeout=300ms"))
        self.assertEqual(code, 1, out)
        self.assertIn("grpc-reflection://shop: 127.0.0.1:%d: timeout after 300ms" % port, out)
        self.assertLess(time.monotonic() - t0, 10)

    # ---- reloads ----

    def test_reload_with_server_down_keeps_descriptors(self):
        gport = free_port()
        srv = self.node(gport)
        port = free_port()
        p = self.start(config(port, gport), port)
        self.assertEqual(self.get(port, "/v1/items/1")[0], 200)
        srv.command("down %d" % gport, "down %d" % gport)
        p.reload()
        self.assertTrue(wait_for(lambda: "rejected" in p.output()), p.output())
        out = p.output()
        self.assertRegex(out, r"portico\.yaml:5:16: grpc-reflection://shop: 127\.0\.0\.1:%d: "
                              r"connection refused" % gport)
        # the binding is still there: the backend is down (503), not an unknown path (404)
        self.assertEqual(self.get(port, "/v1/items/1")[0], 503)
        srv.command("up %d %s" % (gport, self.desc), "listening %d" % gport)
        self.assertEqual(self.get(port, "/v1/items/2"), (200, b'{"id":"2","name":"item 2 v1",'
                                                              b'"priceCents":"1250",'
                                                              b'"tags":["a","b"]}'))

    def test_reload_after_proto_change_logs_diff(self):
        gport = free_port()
        srv = self.node(gport)
        port = free_port()
        p = self.start(config(port, gport), port)
        self.assertEqual(self.get(port, "/v1/items/1")[0], 200)
        v2 = os.path.join(self.tmp, "v2")
        os.makedirs(os.path.join(v2, "shop", "v1"))
        with open(os.path.join(v2, "shop", "v1", "types.proto"), "w") as f:
            f.write(TYPES_V2)
        with open(os.path.join(v2, "shop", "v1", "shop.proto"), "w") as f:
            f.write(SHOP_V2)
        desc2 = compile_set(os.path.join(self.tmp, "shop2.pb"), v2, ["shop/v1/shop.proto"])
        srv.command("down %d" % gport, "down %d" % gport)
        srv.command("up %d %s" % (gport, desc2), "listening %d" % gport)
        p.reload()
        self.assertTrue(wait_for(lambda: "configuration reloaded" in p.output()), p.output())
        out = p.output()
        for line in [
            "descriptors changed: method shop.v1.Shop.CreateItem: removed",
            "descriptors changed: method shop.v1.Audit.Ping: removed",
            "descriptors changed: field shop.v1.Item.price_cents: changed "
            "(int64 price_cents = 3 -> string price = 3)",
            "descriptors changed: field shop.v1.Item.tags: removed",
            "descriptors changed: method shop.v1.Shop.DeleteItem: added",
        ]:
            self.assertIn(line, out)
        self.assertEqual(self.get(port, "/v1/items/5"),
                         (200, b'{"id":"5","name":"item 5 v2","price":"12.50"}'))
        st, _, body, _ = curl("-s", "-XDELETE", f"http://127.0.0.1:{port}/v1/items/5")
        self.assertEqual((st, body), (200, b'{"id":"5","name":"deleted"}'))


if __name__ == "__main__":
    unittest.main()
