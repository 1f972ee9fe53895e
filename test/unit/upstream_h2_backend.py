#!/usr/bin/python3
"""Scripted HTTP/2 (h2c) backend for test_upstream_h2.c, on python3-h2.

usage: upstream_h2_backend.py PORT [MAX_CONCURRENT_STREAMS]

Behaviour by :path (a gRPC-shaped "/pkg.Svc/NAME" acts as "/NAME"; every response carries `x-conn: N`, the connection number):
  /echo           200, echoes the request body as it arrives, then trailers
                  grpc-status: 0 and x-trailer: yes
  /big?N          200, N bytes of the pattern i % 251, then trailers
  /refuse-once    RST_STREAM(REFUSED_STREAM) the first time, then 200 "ok"
  /goaway-once    GOAWAY(last-stream-id below this stream) the first time, then 200 "ok"
  /reset-mid      200, 1000 bytes, then RST_STREAM(INTERNAL_ERROR)
  /trailers-only  one HEADERS block with :status 200, grpc-status: 5, END_STREAM
  /slow           never answers
  /hold           answers "held" after 300 ms
  /count          200, body = number of streams this connection served so far
  /bad-NAME       a malformed (or odd but allowed) response written as raw frames,
                  past python3-h2's checks: see BAD below
Whatever the path, a request header `x-status: V` gets a head (200,
application/grpc), no message, and trailers grpc-status: V (any text, so
odd values like -1 or 99 can be sent); `x-status-only: V` gets the same
status as a Trailers-Only answer.
A line "ready" is printed once listening.
"""
import select
import socket
import sys
import threading
import time

import hpack

import h2.config
import h2.connection
import h2.errors
import h2.events

PORT = int(sys.argv[1])
MAX_STREAMS = int(sys.argv[2]) if len(sys.argv) > 2 else 100
seen = {}
seen_lock = threading.Lock()
conn_no = [0]


# Raw responses: (blocks), each block ("h", fields, end_stream) or ("d", bytes, end_stream).
# Header fields go out as literals never indexed, so the client's HPACK table is untouched.
OK_HEAD = [(":status", "200"), ("content-type", "application/grpc")]
BAD = {
    "/bad-upper": [("h", OK_HEAD + [("X-Upper", "1")], True)],
    "/bad-dup-status": [("h", [(":status", "200"), (":status", "200")], True)],
    "/bad-no-status": [("h", [("content-type", "application/grpc")], True)],
    "/bad-pseudo-after": [("h", [("content-type", "application/grpc"), (":status", "200")], True)],
    "/bad-unknown-pseudo": [("h", OK_HEAD + [(":path", "/x")], True)],
    "/bad-status-text": [("h", [(":status", "2x0")], True)],
    "/bad-status-long": [("h", [(":status", "2000")], True)],
    "/bad-status-101": [("h", [(":status", "101")], True)],
    "/bad-connection": [("h", OK_HEAD + [("connection", "close")], True)],
    "/bad-te": [("h", OK_HEAD + [("te", "gzip")], True)],
    "/bad-clen-dup": [("h", OK_HEAD + [("content-length", "1"), ("content-length", "1")], False),
                      ("d", b"x", True)],
    "/bad-clen-text": [("h", OK_HEAD + [("content-length", "1x")], False), ("d", b"x", True)],
    "/bad-1xx-data": [("h", [(":status", "100")], False), ("d", b"x", True)],
    "/bad-1xx-end": [("h", [(":status", "103")], True)],
    "/bad-1xx-clen": [("h", [(":status", "100"), ("content-length", "0")], False),
                      ("h", OK_HEAD, True)],
    "/bad-clen-short": [("h", OK_HEAD + [("content-length", "10")], False), ("d", b"hello", True)],
    "/bad-clen-long": [("h", OK_HEAD + [("content-length", "2")], False), ("d", b"hello", True)],
    "/bad-trailer-pseudo": [("h", OK_HEAD, False), ("d", b"ok", False),
                            ("h", [(":status", "200"), ("grpc-status", "0")], True)],
    "/bad-trailer-noend": [("h", OK_HEAD, False), ("h", [("grpc-status", "0")], False)],
    "/bad-204-body": [("h", [(":status", "204")], False), ("d", b"x", True)],
    "/bad-head-body": [("h", OK_HEAD + [("content-length", "5")], False), ("d", b"hello", True)],
    "/bad-name-space": [("h", OK_HEAD + [("x y", "1"), ("x-ok", "1")], True)],
    "/bad-name-brace": [("h", OK_HEAD + [("x{", "1"), ("x-ok", "1")], True)],
    "/bad-name-empty": [("h", OK_HEAD + [("", "1"), ("x-ok", "1")], True)],
    "/bad-value-ctl": [("h", OK_HEAD + [("x-ctl", "a\x01b"), ("x-ok", "1")], True)],
    "/bad-value-lf": [("h", OK_HEAD + [("x-lf", "a\nb"), ("x-ok", "1")], True)],
    "/bad-value-nul": [("h", OK_HEAD + [("x-nul", "a\x00b"), ("x-ok", "1")], True)],
    "/bad-value-lead": [("h", OK_HEAD + [("x-sp", " lead"), ("x-ok", "1")], True)],
    "/bad-value-trail": [("h", OK_HEAD + [("x-tab", "trail\t"), ("x-ok", "1")], True)],
    "/bad-value-del": [("h", OK_HEAD + [("x-del", "a\x7fb"), ("x-ok", "1")], True)],
    "/ok-values": [("h", OK_HEAD + [("x-ok", "v\tw \x80\xff!~"), ("x-empty", "")], True)],
    "/bad-trailer-value": [("h", OK_HEAD, False), ("h", [("grpc-status", "0"), ("x-lf", "a\rb")], True)],
    "/bad-trailer-upper": [("h", OK_HEAD, False), ("h", [("grpc-status", "0"), ("X-Up", "1")], True)],
    "/ok-204-clen0": [("h", [(":status", "204"), ("content-length", "0"), ("x-ok", "1")], True)],
    "/ok-1xx": [("h", [(":status", "100"), ("x-info", "1")], False),
                ("h", OK_HEAD + [("content-length", "2")], False), ("d", b"ok", False),
                ("h", [("grpc-status", "0")], True)],
    "/ok-head-clen": [("h", OK_HEAD + [("content-length", "5")], True)],
}


def raw_frames(sid, blocks):
    out = b""
    for kind, what, end in blocks:
        if kind == "h":
            fields = [hpack.NeverIndexedHeaderTuple(n.encode("latin-1"), v.encode("latin-1"))
                      for n, v in what]
            payload, ftype, flags = hpack.Encoder().encode(fields, huffman=False), 1, 4
        else:
            payload, ftype, flags = what, 0, 0
        flags |= 1 if end else 0
        out += len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload
    return out


def first_time(key):
    with seen_lock:
        n = seen.get(key, 0)
        seen[key] = n + 1
        return n == 0


class Conn:
    def __init__(self, sock, no):
        self.sock = sock
        self.no = no
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(config=cfg)
        self.out = {}        # stream id -> [bytes pending, end?, trailers]
        self.paths = {}
        self.timers = []     # (when, fn)
        self.served = 0

    def flush(self):
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def headers(self, sid, extra=(), end=False):
        h = [(":status", "200"), ("content-type", "application/grpc"), ("x-conn", str(self.no))]
        h.extend(extra)
        self.h2.send_headers(sid, h, end_stream=end)

    def queue(self, sid, data, end=False, trailers=None):
        q = self.out.setdefault(sid, [b"", False, None])
        q[0] += data
        if end:
            q[1] = True
            q[2] = trailers

    def pump(self):
        for sid in list(self.out):
            q = self.out[sid]
            try:
                while q[0]:
                    win = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
                    if win <= 0:
                        break
                    chunk, q[0] = q[0][:win], q[0][win:]
                    self.h2.send_data(sid, chunk)
                if not q[0] and q[1]:
                    if q[2]:
                        self.h2.send_headers(sid, q[2], end_stream=True)
                    else:
                        self.h2.end_stream(sid)
                    del self.out[sid]
            except Exception:
                self.out.pop(sid, None)

    def on_request(self, sid, headers):
        h = dict(headers)
        path = h.get(":path", "")
        if path.count("/") > 1:  # "/pkg.Svc/reset-mid" (gRPC shape) behaves as "/reset-mid"
            path = "/" + path.rsplit("/", 1)[1]
        self.paths[sid] = path
        self.served += 1
        if "x-status-only" in h:
            self.h2.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc"),
                                       ("grpc-status", h["x-status-only"])], end_stream=True)
        elif "x-status" in h:
            self.headers(sid)
            self.queue(sid, b"", True, [("grpc-status", h["x-status"]), ("grpc-message", "odd")])
        elif path == "/echo":
            self.headers(sid)
        elif path.startswith("/big"):
            n = int(path.split("?")[1])
            self.headers(sid)
            self.queue(sid, bytes(i % 251 for i in range(n)), True, [("grpc-status", "0")])
        elif path == "/refuse-once":
            if first_time(path):
                self.h2.reset_stream(sid, h2.errors.ErrorCodes.REFUSED_STREAM)
            else:
                self.headers(sid)
                self.queue(sid, b"ok", True)
        elif path == "/goaway-once":
            if first_time(path):
                self.h2.close_connection(error_code=0, last_stream_id=max(sid - 2, 0))
                self.flush()
                self.timers.append((time.time() + 0.2, self.close))
            else:
                self.headers(sid)
                self.queue(sid, b"ok", True)
        elif path == "/reset-mid":
            self.headers(sid)
            self.h2.send_data(sid, b"x" * 1000)
            self.timers.append((time.time() + 0.05, lambda: self.h2.reset_stream(
                sid, h2.errors.ErrorCodes.INTERNAL_ERROR)))
        elif path == "/trailers-only":
            self.h2.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc"),
                                       ("grpc-status", "5"), ("grpc-message", "nope")], end_stream=True)
        elif path in BAD:
            self.flush()  # what h2 queued goes first; then the frames it would refuse to make
            self.sock.sendall(raw_frames(sid, BAD[path]))
        elif path == "/slow":
            pass
        elif path == "/hold":
            def later():
                self.headers(sid)
                self.queue(sid, b"held", True)
            self.timers.append((time.time() + 0.3, later))
        elif path == "/count":
            self.headers(sid)
            self.queue(sid, str(self.served).encode(), True)
        else:
            self.h2.send_headers(sid, [(":status", "404")], end_stream=True)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def run(self):
        self.h2.initiate_connection()
        self.h2.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS})
        self.flush()
        while True:
            now = time.time()
            due = [t for t in self.timers if t[0] <= now]
            self.timers = [t for t in self.timers if t[0] > now]
            for _, fn in due:
                try:
                    fn()
                except Exception:
                    pass
            self.pump()
            try:
                self.flush()
            except OSError:
                return
            r, _, _ = select.select([self.sock], [], [], 0.02)
            if not r:
                continue
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            try:
                events = self.h2.receive_data(data)
            except Exception:
                try:
                    self.flush()
                except OSError:
                    pass
                return
            for ev in events:
                if isinstance(ev, h2.events.RequestReceived):
                    self.on_request(ev.stream_id, ev.headers)
                elif isinstance(ev, h2.events.DataReceived):
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    if self.paths.get(ev.stream_id) == "/echo" and ev.data:
                        self.queue(ev.stream_id, ev.data)
                elif isinstance(ev, h2.events.StreamEnded):
                    if self.paths.get(ev.stream_id) == "/echo":
                        self.queue(ev.stream_id, b"", True,
                                   [("grpc-status", "0"), ("x-trailer", "yes")])
                elif isinstance(ev, h2.events.StreamReset):
                    self.out.pop(ev.stream_id, None)
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    return


def serve(sock, no):
    try:
        Conn(sock, no).run()
    finally:
        sock.close()


def main():
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", PORT))
    ls.listen(64)
    print("ready", flush=True)
    while True:
        s, _ = ls.accept()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn_no[0] += 1
        threading.Thread(target=serve, args=(s, conn_no[0]), daemon=True).start()


if __name__ == "__main__":
    import h2.settings  # noqa: F401  (used in Conn.run)
    main()
