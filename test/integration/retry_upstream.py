"""
retry_upstream.py -- a small upstream for the retry and split tests, run as
its own process (so a test can kill -9 it: refused connects and reset
keep-alive connections, as a crashed backend gives).

  retry_upstream.py http PORT MODE      HTTP/1.1 keep-alive server
      MODE ok          200 with {"port": PORT, "method": M, "path": P}
           503         503 for every request
           reset       reads the request, closes the connection without an answer
           sleep:MS    sleeps MS ms, then 200
  retry_upstream.py grpc PORT MODE      h2c gRPC server (python3-h2), any method
      MODE ok          echoes the request message, grpc-status 0
           unavailable Trailers-Only grpc-status 14

Both answer `GET /__count` (HTTP) with {"METHOD": n, ...} of the requests seen;
the gRPC server writes its count to the file named by env COUNT_FILE on each
call.
"""
import http.server
import json
import os
import socket
import socketserver
import sys
import threading
import time

COUNTS = {}
LOCK = threading.Lock()


def count(key):
    with LOCK:
        COUNTS[key] = COUNTS.get(key, 0) + 1
        snapshot = dict(COUNTS)
    path = os.environ.get("COUNT_FILE")
    if path:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(snapshot, f)
        os.replace(tmp, path)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _handle(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.path == "/__count":
            with LOCK:
                out = json.dumps(COUNTS).encode()
            self._send(200, out)
            return
        count(self.command)
        mode = self.server.mode
        if mode == "503":
            self._send(503, b'{"down": true}')
        elif mode == "reset":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        else:
            if mode.startswith("sleep:"):
                time.sleep(int(mode[6:]) / 1000.0)
            self._send(200, json.dumps({"port": self.server.server_address[1],
                                        "method": self.command, "path": self.path,
                                        "body": len(body)}).encode())

    def _send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _handle


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


def serve_http(port, mode):
    srv = Server(("127.0.0.1", port), Handler)
    srv.mode = mode
    srv.serve_forever(poll_interval=0.05)


def serve_grpc(port, mode):
    import h2.config
    import h2.connection
    import h2.events

    def conn_thread(sock):
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False,
                                                                    header_encoding=None))
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        bodies = {}
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                for ev in conn.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        bodies[ev.stream_id] = b""
                    elif isinstance(ev, h2.events.DataReceived):
                        bodies[ev.stream_id] = bodies.get(ev.stream_id, b"") + ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        sid = ev.stream_id
                        count("calls")
                        if mode == "unavailable":
                            conn.send_headers(sid, [(b":status", b"200"),
                                                    (b"content-type", b"application/grpc"),
                                                    (b"grpc-status", b"14"),
                                                    (b"grpc-message", b"try another")],
                                              end_stream=True)
                        else:
                            conn.send_headers(sid, [(b":status", b"200"),
                                                    (b"content-type", b"application/grpc")])
                            conn.send_data(sid, bodies.pop(sid, b""))
                            conn.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)
                sock.sendall(conn.data_to_send())
        except Exception:  # noqa: BLE001 -- a peer gone mid-call ends this connection only
            return
        finally:
            sock.close()

    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(128)
    while True:
        s, _ = ls.accept()
        threading.Thread(target=conn_thread, args=(s,), daemon=True).start()


if __name__ == "__main__":
    kind, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    (serve_http if kind == "http" else serve_grpc)(port, mode)
