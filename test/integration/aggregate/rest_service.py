"""
rest_service.py -- a small JSON REST service for the aggregate tests and bench.

Paths are commands followed by anything:

  /d/<ms>/...        answer after <ms> milliseconds (a client that closes the
                     connection meanwhile is counted as `cancelled`)
  /s/<code>/...      answer with HTTP status <code> and a JSON error
                     {"error": {"message": "status <code> from the service"}}
  /bad/...           answer 200 with a body that is not JSON
  /big/<n>/...       answer a JSON string of <n> bytes
  /json/<text>       answer <text> (percent-decoded) as the body, as it is

Commands combine (/d/100/s/404/x). What follows is echoed as JSON:

  {"path": raw path, "rest": path after the commands, "last": last segment,
   "n": the last segment as a number (when it is one), "query": raw query,
   "tenant": x-tenant header, "method": ..., "body": the parsed JSON body,
   "items": [{"id": 1}, {"id": 2}, {"id": 3}], "nested": {"a": {"b": "deep"}}}

GET /_stats answers {"requests": n, "cancelled": n, "active": n}.

Run standalone: python3 rest_service.py PORT (bench, demo).
"""
import http.server
import json
import select
import socketserver
import sys
import threading
import time
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _send(self, code, body, ctype="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", '"v-%s"' % self.path.rsplit("/", 1)[-1].split("?")[0])
        self.end_headers()
        self.wfile.write(data)

    def _client_gone(self):
        r, _, _ = select.select([self.connection], [], [], 0)
        if not r:
            return False
        try:
            import socket
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _handle(self):
        srv = self.server
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        with srv.lock:
            srv.requests += 1
            srv.active += 1
        try:
            path, _, query = self.path.partition("?")
            if path == "/_stats":
                with srv.lock:
                    self._send(200, {"requests": srv.requests - 1, "cancelled": srv.cancelled,
                                     "active": srv.active - 1})
                return
            if path.startswith("/json/"):
                self._send(200, urllib.parse.unquote(path[6:]).encode())
                return
            segs = path.split("/")[1:]
            status, bad, big = 200, False, None
            while segs:
                if segs[0] == "d" and len(segs) > 1:
                    deadline = time.monotonic() + int(segs[1]) / 1000.0
                    while time.monotonic() < deadline:
                        if self._client_gone():
                            with srv.lock:
                                srv.cancelled += 1
                            self.close_connection = True
                            return
                        time.sleep(0.005)
                    segs = segs[2:]
                elif segs[0] == "s" and len(segs) > 1:
                    status = int(segs[1])
                    segs = segs[2:]
                elif segs[0] == "bad":
                    bad = True
                    segs = segs[1:]
                elif segs[0] == "big" and len(segs) > 1:
                    big = int(segs[1])
                    segs = segs[2:]
                else:
                    break
            if bad:
                self._send(200, b'{"truncated": [1, 2', "application/json")
                return
            if status >= 400:
                self._send(status, {"error": {"message": "status %d from the service" % status}})
                return
            last = segs[-1] if segs else ""
            out = {"path": path, "rest": "/" + "/".join(segs), "last": last, "query": query,
                   "method": self.command, "tenant": self.headers.get("x-tenant"),
                   "items": [{"id": 1}, {"id": 2}, {"id": 3}],
                   "nested": {"a": {"b": "deep"}}}
            if last.isdigit():
                out["n"] = int(last)
            if raw:
                try:
                    out["body"] = json.loads(raw)
                except ValueError:
                    out["body"] = None
            if big is not None:
                out["big"] = "x" * big
            self._send(status, out)
        finally:
            with srv.lock:
                srv.active -= 1

    do_GET = do_POST = do_PUT = do_DELETE = _handle


class RestService(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, port=0):
        super().__init__(("127.0.0.1", port), Handler)
        self.lock = threading.Lock()
        self.requests = self.cancelled = self.active = 0
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def stats(self):
        with self.lock:
            return {"requests": self.requests, "cancelled": self.cancelled, "active": self.active}

    def stop(self):
        self.shutdown()
        self.server_close()


if __name__ == "__main__":
    s = RestService(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print("listening on 127.0.0.1:%d" % s.port, flush=True)
    while True:
        time.sleep(3600)
