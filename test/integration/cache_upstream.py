"""
cache_upstream.py -- a small HTTP/1.1 upstream for the cache tests: it counts
the requests per path (with query) and answers with the headers the query
asks for, so that each test states the upstream's behaviour in its URL:

  cc=...        Cache-Control            etag=...   ETag (a 304 when If-None-Match matches)
  expires=N     Expires now+N seconds    lm=N       Last-Modified now-N seconds
  vary=...      Vary                     status=N   the status
  cookie=1      Set-Cookie               delay=MS   wait before answering
  size=N        N bytes of body          chunked=1  no Content-Length
  age=N         Age                      gzip=1     Content-Encoding: gzip (body gzipped)

The body is "<path> #<count> <selected request headers>" (padded to size=).
"""
import email.utils
import gzip
import http.server
import socketserver
import threading
import time
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        srv = self.server
        u = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        with srv.lock:
            srv.hits[self.path] = srv.hits.get(self.path, 0) + 1
            n = srv.hits[self.path]
            srv.requests.append((self.path, dict((k.lower(), v) for k, v in self.headers.items())))
        if "delay" in q:
            time.sleep(int(q["delay"]) / 1000.0)
        if srv.fail_status < 0:  # closes without answering: Portico's own 502
            self.close_connection = True
            return
        if srv.fail_status:  # the whole upstream failing (stale-if-error tests)
            self.send_response(srv.fail_status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status = int(q.get("status", "200"))
        etag = q.get("etag")
        headers = []
        if "cc" in q:
            headers.append(("Cache-Control", q["cc"]))
        if "expires" in q:
            headers.append(("Expires", email.utils.formatdate(time.time() + int(q["expires"]), usegmt=True)))
        if "lm" in q:
            headers.append(("Last-Modified", email.utils.formatdate(time.time() - int(q["lm"]), usegmt=True)))
        if etag:
            headers.append(("ETag", '"%s"' % etag))
        if "vary" in q:
            headers.append(("Vary", q["vary"]))
        if q.get("cookie"):
            headers.append(("Set-Cookie", "s=%d" % n))
        if "age" in q:
            headers.append(("Age", q["age"]))
        inm = self.headers.get("If-None-Match")
        if etag and inm and ('"%s"' % etag) in inm:
            with srv.lock:
                srv.revalidations[self.path] = srv.revalidations.get(self.path, 0) + 1
            self.send_response(304)
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            return
        body = ("%s #%d lang=%s\n" % (u.path, n, self.headers.get("Accept-Language", "-"))).encode()
        if "size" in q:
            body = body.ljust(int(q["size"]), b"x")
        if q.get("gzip"):
            body = gzip.compress(body)
            headers.append(("Content-Encoding", "gzip"))
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        for k, v in headers:
            self.send_header(k, v)
        chunked = q.get("chunked") == "1"
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if chunked:
            for i in range(0, len(body), 4096):
                part = body[i:i + 4096]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(body)


class CacheUpstream(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.port = self.server_address[1]
        self.lock = threading.Lock()
        self.hits = {}
        self.revalidations = {}
        self.requests = []
        self.fail_status = 0  # when set, every answer has this status (-1: no answer at all)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def count(self, path):
        with self.lock:
            return self.hits.get(path, 0)

    def stop(self):
        self.shutdown()
        self.server_close()
