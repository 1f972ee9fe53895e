"""
hc_support.py -- upstreams for the health-check, overload and fleet tests.

HealthServer: an HTTP/1.1 server whose /healthz answers `health_status`
(settable), counting the probes it gets (and from how many connections);
other paths answer 200 with the server's name, so a client sees which
endpoint served it.

GrpcHealthServer: a grpcio server implementing grpc.health.v1.Health/Check
with hand-built protobuf bytes (Debian's python3-grpcio ships no grpc_health
package): HealthCheckRequest{string service = 1} in,
HealthCheckResponse{ServingStatus status = 1} out.
"""
import http.server
import socketserver
import threading
import time
from concurrent import futures


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hc"
    sys_version = ""

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        srv = self.server
        if self.path.startswith("/big/"):
            n = int(self.path[5:])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            chunk = b"x" * 16384
            try:
                while n > 0:
                    self.wfile.write(chunk[:n])
                    n -= len(chunk)
            except OSError:  # the client (or Portico) went away: expected here
                self.close_connection = True
            return
        if self.path.startswith("/slow/"):
            time.sleep(int(self.path[6:]) / 1000)
        elif self.path == srv.health_path:
            with srv.lock:
                srv.probes += 1
                srv.probe_times.append(time.monotonic())
                srv.probe_agents.add(self.headers.get("User-Agent", ""))
        if self.path == srv.health_path:
            if srv.health_delay:
                time.sleep(srv.health_delay)
            st = srv.health_status
            body = b"health\n"
        else:
            with srv.lock:
                srv.served += 1
            if srv.delay:
                time.sleep(srv.delay)
            st = 200
            body = srv.name.encode() + b"\n"
        self.send_response(st)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET


class HealthServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, name, port=0, health_path="/healthz", delay=0.0):
        self.name = name
        self.health_path = health_path
        self.health_status = 200
        self.health_delay = 0.0  # seconds /healthz takes to answer
        self.delay = delay
        self.lock = threading.Lock()
        self.probes = 0
        self.probe_times = []
        self.probe_agents = set()
        self.served = 0
        super().__init__(("127.0.0.1", port), _Handler)
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def probes_between(self, t0, t1):
        with self.lock:
            return sum(1 for t in self.probe_times if t0 <= t < t1)

    def stop(self):
        self.shutdown()
        self.server_close()


SERVING, NOT_SERVING = 1, 2


class GrpcHealthServer:
    """grpc.health.v1.Health/Check; `status[service]` answers (default SERVING for '').
    With `tls` = (certificate PEM, key PEM) it serves over TLS."""

    def __init__(self, tls=None):
        import grpc  # python3-grpcio
        self.status = {"": SERVING}
        self.requests = []
        self.lock = threading.Lock()

        def check(request, context):
            service = _decode_service(request)
            with self.lock:
                self.requests.append(service)
            if service not in self.status:
                context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
            return bytes([0x08, self.status[service]])

        handler = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
            "Check": grpc.unary_unary_rpc_method_handler(check),  # raw bytes in and out
        })
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((handler,))
        if tls is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            creds = grpc.ssl_server_credentials([(tls[1], tls[0])])
            self.port = self.server.add_secure_port("127.0.0.1:0", creds)
        self.server.start()

    def stop(self):
        self.server.stop(0)


def _decode_service(msg):
    """HealthCheckRequest: field 1 (length-delimited) = service; empty message = ''."""
    i, service = 0, ""
    while i < len(msg):
        tag = msg[i]
        i += 1
        if tag != 0x0A:
            raise ValueError("unexpected field in HealthCheckRequest")
        n, shift = 0, 0
        while True:
            b = msg[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        service = msg[i:i + n].decode()
        i += n
    return service


def wait_until(pred, timeout, step=0.02):
    """Polls pred() until true; returns the seconds it took, or None on timeout."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(step)
    return None
