"""
lb_backend.py -- one upstream process for the load-balancing tests.

    python3 lb_backend.py PORT NAME

Answers every request with its NAME as the body (200), after the delay and
with the status set through its control paths (not proxied: tests call them
directly):
    /_ctl/status/NNN   answer NNN from now on
    /_ctl/delay/MS     wait MS milliseconds before answering
    /_ctl/hits         the number of non-control requests served so far
Prints "ready" once it listens. Threaded, so a slow answer never blocks the
others.
"""
import http.server
import socketserver
import sys
import threading
import time

PORT, NAME = int(sys.argv[1]), sys.argv[2]
state = {"status": 200, "delay": 0.0, "hits": 0}
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _answer(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith("/_ctl/"):
            parts = self.path.split("/")
            with lock:
                if parts[2] == "status":
                    state["status"] = int(parts[3])
                elif parts[2] == "delay":
                    state["delay"] = int(parts[3]) / 1000.0
                hits = state["hits"]
            self._answer(200, str(hits))
            return
        with lock:
            state["hits"] += 1
            status, delay = state["status"], state["delay"]
        if delay:
            time.sleep(delay)
        self._answer(status, NAME)

    do_POST = do_GET


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


srv = Server(("127.0.0.1", PORT), Handler)
print("ready", flush=True)
srv.serve_forever()
