"""
test_lb_grpc.py -- gRPC clusters: native gRPC passthrough (handlers/grpc_native.c)
and REST->gRPC transcoding (handlers/grpc.c through upstream/grpc_call.c) ride
the same endpoint policy, so an endpoint ejected by one is out for the other.
The sick endpoint is a python3-grpcio server answering UNAVAILABLE to every
call (gRPC UNAVAILABLE counts as a failure); the healthy one is
examples/bookstore's server.
"""
import os
import subprocess
import sys
import tempfile
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bookstore"))

from portico_test import Portico, curl, free_port, wait_port  # noqa: E402
from bookstore_server import BookstoreServer, PB, grpc, pb, pb_grpc  # noqa: E402

SICK = r'''
import sys
from concurrent import futures
import grpc
port, hits = int(sys.argv[1]), sys.argv[2]

class Sick(grpc.GenericRpcHandler):
    def service(self, details):
        def fail(req, ctx):
            with open(hits, "a") as f:
                f.write("x")
            ctx.abort(grpc.StatusCode.UNAVAILABLE, "sick")
        return grpc.unary_unary_rpc_method_handler(fail)

srv = grpc.server(futures.ThreadPoolExecutor(4))
srv.add_generic_rpc_handlers((Sick(),))
srv.add_insecure_port("127.0.0.1:%d" % port)
srv.start()
print("ready", flush=True)
srv.wait_for_termination()
'''

CONFIG = """
listeners:
  - address: 127.0.0.1:{port}
admin: {{ address: 127.0.0.1:{admin} }}
workers: 1
descriptors: [ {pb} ]
clusters:
  - name: books
    protocol: grpc
    endpoints: [ "127.0.0.1:{good}", "127.0.0.1:{sick}" ]
    retries: 0
    outlier: {{ consecutive_failures: 3, base_ejection: 60s }}
routes:
  - grpc: {{ cluster: books }}
"""


def metric(admin, name):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


class SharedEjection(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory(prefix="pt_lbg_")
        self.addCleanup(tmp.cleanup)
        self.hits_path = os.path.join(tmp.name, "hits")
        self.good = BookstoreServer(threads=2).start()
        self.addCleanup(self.good.stop)
        sick_port = free_port()
        self.sick = subprocess.Popen([sys.executable, "-c", SICK, str(sick_port), self.hits_path],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.addCleanup(self._stop_sick)
        self.sick.stdout.readline()
        wait_port(sick_port, 10.0, self.sick)
        self.port, self.admin = free_port(), free_port()
        self.gw = Portico(CONFIG.format(port=self.port, admin=self.admin, pb=PB,
                                        good=self.good.port, sick=sick_port))
        self.addCleanup(self.gw.stop)
        self.gw.wait_ready(self.port)
        ch = grpc.insecure_channel("127.0.0.1:%d" % self.port)
        self.addCleanup(ch.close)
        self.stub = pb_grpc.BookstoreStub(ch)

    def _stop_sick(self):
        if self.sick.poll() is None:
            self.sick.kill()
        self.sick.wait(10)
        self.sick.stdout.close()

    def sick_hits(self):
        try:
            with open(self.hits_path) as f:
                return len(f.read())
        except FileNotFoundError:
            return 0

    def native(self):
        """One native gRPC call: True when it succeeded, False for UNAVAILABLE."""
        try:
            self.stub.Echo(pb.EchoRequest(message="x"), timeout=10)
            return True
        except grpc.RpcError as e:
            self.assertEqual(e.code(), grpc.StatusCode.UNAVAILABLE, e.details())
            return False

    def rest(self):
        """One transcoded REST call: True on 200, False on 503 (UNAVAILABLE)."""
        st, _, body, _ = curl("http://127.0.0.1:%d/v1/shelves" % self.port)
        self.assertIn(st, (200, 503), body)
        return st == 200

    def eject_with(self, call):
        fails = 0
        for _ in range(20):
            if self.sick_hits() == 3:
                break
            if not call():
                fails += 1
        self.assertEqual(self.sick_hits(), 3)
        self.assertEqual(fails, 3)  # every call that reached the sick endpoint failed
        self.assertEqual(metric(self.admin, "portico_upstream_ejected_endpoints"), 1)

    def test_native_passthrough_ejects_for_transcoding(self):
        self.eject_with(self.native)
        for _ in range(20):
            self.assertTrue(self.rest())
        self.assertEqual(self.sick_hits(), 3)  # never dialled again

    def test_transcoding_ejects_for_native_passthrough(self):
        self.eject_with(self.rest)
        for _ in range(20):
            self.assertTrue(self.native())
        self.assertEqual(self.sick_hits(), 3)


if __name__ == "__main__":
    unittest.main()
