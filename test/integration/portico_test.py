"""
portico_test.py -- the integration-test harness.

Starts the real build/bin/portico with a config written at test time, real
upstream servers (an in-process threaded HTTP/1.1 echo server, or external
ones), and drives them with real clients (curl, nghttp, h2load, raw sockets).
Only 127.0.0.1, free ports, bounded waits; every process started is stopped.

Environment: PORTICO_BIN (path of the binary; set by ctest), PORTICO_KEEP=1
keeps the temp directory for debugging.
"""
import collections
import http.server
import json
import os
import resource
import shutil
import signal
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
import unittest
import weakref

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("PORTICO_BIN", os.path.join(ROOT, "build", "bin", "portico"))


_handed_out = collections.deque(maxlen=512)


def free_port():
    """A port free now, and not one this process was handed recently: the kernel may give the
    same ephemeral port to two binds in a row once the first socket is closed, and a test that
    asks for a listener port and an admin port would then get one port twice (seen:
    integration.tunnel, "admin address ... conflicts with listener")."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            break
    _handed_out.append(port)
    return port


def wait_port(port, timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s while starting" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d not listening after %.1fs" % (port, timeout))


# ---- the echo upstream ------------------------------------------------------

class EchoHandler(http.server.BaseHTTPRequestHandler):
    """Answers with a JSON description of the request it received.

    Paths with special behaviour:
      /status/NNN       answer with status NNN
      /slow/MS          sleep MS milliseconds first
      /big/N            N bytes of body (streamed in 16 KiB writes)
      /chunked/N        N chunks of 'x' * 1000, chunked encoding
      /truncate         promise Content-Length 1000, send 10 bytes, close
      /headers          echo plus a few response headers (hop-by-hop included)
    """
    protocol_version = "HTTP/1.1"
    server_version = "echo"
    sys_version = ""

    def log_message(self, fmt, *args):
        pass

    def _body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            data = b""
            while True:
                line = self.rfile.readline(65537)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:  # the client went away mid-body
                    self.close_connection = True
                    return data
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline(3)
        n = int(self.headers.get("Content-Length", "0") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _handle(self):
        body = self._body()
        self.server.record(self, body)
        path = self.path.split("?")[0]
        parts = path.strip("/").split("/")
        if parts[0] == "slow" and len(parts) > 1:
            time.sleep(int(parts[1]) / 1000.0)
        if parts[0] == "status" and len(parts) > 1:
            code = int(parts[1])
            payload = json.dumps({"status": code}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            return
        if parts[0] == "big" and len(parts) > 1:
            n = int(parts[1])
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(n))
            self.end_headers()
            chunk = b"b" * 16384
            while n > 0:
                k = min(n, len(chunk))
                self.wfile.write(chunk[:k])
                n -= k
            return
        if parts[0] == "chunked" and len(parts) > 1:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(int(parts[1])):
                self.wfile.write(b"3e8\r\n" + b"x" * 1000 + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        if parts[0] == "truncate":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        payload = json.dumps({
            "method": self.command,
            "path": self.path,
            "version": self.request_version,
            "headers": [[k.lower(), v] for k, v in self.headers.items()],
            "body": body.decode("latin-1"),
            "body_len": len(body),
            "port": self.server.server_address[1],
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if parts[0] == "headers":
            self.send_header("X-Upstream", "yes")
            self.send_header("Keep-Alive", "timeout=5")
            self.send_header("Set-Cookie", "a=1")
            self.send_header("Set-Cookie", "b=2")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


class EchoServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port=0):
        super().__init__(("127.0.0.1", port), EchoHandler)
        self.port = self.server_address[1]
        self.requests = []
        self.connections = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def get_request(self):
        conn, addr = super().get_request()
        with self._lock:
            self.connections += 1
        return conn, addr

    def record(self, handler, body):
        with self._lock:
            # "target": the request-target exactly as received (http.server
            # rewrites a leading "//" in handler.path since Python 3.11.x)
            self.requests.append({"method": handler.command, "path": handler.path,
                                  "target": handler.requestline.split(" ")[1],
                                  "headers": {k.lower(): v for k, v in handler.headers.items()},
                                  "body": body})

    def stop(self):
        self.shutdown()
        self.server_close()


# ---- portico ------------------------------------------------------------------

class Portico:
    """A running portico process with its config in a temp dir."""

    def __init__(self, config_text, workers=1, extra_files=None, args=None, nofile=None):
        self.dir = tempfile.mkdtemp(prefix="portico-test-")
        # Removed by stop(), or at the latest when this object goes away or the
        # interpreter exits (a test that failed before stop(), a start that failed).
        self._rm_dir = weakref.finalize(self, shutil.rmtree, self.dir, True)
        if os.environ.get("PORTICO_KEEP"):
            self._rm_dir.detach()
        self.config_path = os.path.join(self.dir, "portico.yaml")
        for name, content in (extra_files or {}).items():
            with open(os.path.join(self.dir, name), "wb") as f:
                f.write(content if isinstance(content, bytes) else content.encode())
        self.write_config(config_text)
        self.log_path = os.path.join(self.dir, "portico.log")
        self.log = open(self.log_path, "wb")
        cmd = [BIN, "-c", self.config_path, "-w", str(workers)] + (args or [])
        # nofile: a small RLIMIT_NOFILE for the process (fd-exhaustion tests)
        limit = None if nofile is None else (lambda: resource.setrlimit(
            resource.RLIMIT_NOFILE, (nofile, nofile)))
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=self.dir, preexec_fn=limit)

    def write_config(self, text):
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.config_path)

    def wait_ready(self, port, timeout=10.0):
        wait_port(port, timeout, self.proc)
        return self

    def output(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def reload(self):
        self.proc.send_signal(signal.SIGHUP)

    def stop(self, timeout=20.0):
        """SIGTERM, wait for a clean exit; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
        if self._rm_dir.alive:
            self._rm_dir()
        return self.proc.returncode

    def stop_with_output(self, timeout=20.0):
        """stop(), with the process's log read before its temp dir goes: (exit code, log text)."""
        remove = self._rm_dir.detach() is not None  # None: PORTICO_KEEP, or already removed
        rc = self.stop(timeout)
        with open(self.log_path, "rb") as f:
            out = f.read().decode("utf-8", "replace")
        if remove:
            shutil.rmtree(self.dir, True)
        return rc, out


def curl(*args, timeout=20, input_bytes=None):
    """Runs curl; returns (status, headers dict (lowercase, last wins), body bytes, stderr).
    `input_bytes` is curl's standard input (for `--data-binary @-`)."""
    hdr = tempfile.NamedTemporaryFile(delete=False)
    hdr.close()
    try:
        p = subprocess.run(["curl", "-sS", "--max-time", str(timeout), "-D", hdr.name,
                            "-o", "-"] + list(args), capture_output=True, timeout=timeout + 5,
                           input=input_bytes)
        with open(hdr.name, "rb") as f:
            raw = f.read().decode("latin-1")
    finally:
        os.unlink(hdr.name)
    status, headers = 0, {}
    for line in raw.split("\r\n"):
        if line.startswith("HTTP/"):
            parts = line.split(" ")
            status = int(parts[1])
            headers = {}
        elif ":" in line:
            k, v = line.split(":", 1)
            headers.setdefault(k.strip().lower(), [])
            headers[k.strip().lower()].append(v.strip())
    return status, {k: v[-1] if len(v) == 1 else v for k, v in headers.items()}, p.stdout, \
        p.stderr.decode()


def h2_call(port, path, headers, body, authority="x.test", timeout=30):
    """One HTTP/2 request with python3-h2 (header bytes exactly as given:
    curl 7.88 reports a stream error for a RST_STREAM(NO_ERROR) that follows a
    complete early answer). Returns ({head}, data, {trailers}, reset code or None)."""
    import h2.config
    import h2.connection
    import h2.events
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                    header_encoding=None))
        conn.initiate_connection()
        hdrs = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", path.encode()),
                (b":authority", authority.encode())] + \
            [(k.encode() if isinstance(k, str) else k, v.encode() if isinstance(v, str) else v)
             for k, v in headers]
        conn.send_headers(1, hdrs)
        conn.send_data(1, body, end_stream=True)
        sock.sendall(conn.data_to_send())
        head, trailers, data, reset = {}, {}, b"", None
        done = False
        while not done:
            chunk = sock.recv(65536)
            if not chunk:
                break
            for ev in conn.receive_data(chunk):
                if isinstance(ev, h2.events.ResponseReceived):
                    head = {k.decode(): v.decode("latin-1") for k, v in ev.headers}
                elif isinstance(ev, h2.events.TrailersReceived):
                    trailers = {k.decode(): v.decode("latin-1") for k, v in ev.headers}
                elif isinstance(ev, h2.events.DataReceived):
                    data += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, 1)
                elif isinstance(ev, h2.events.StreamReset):
                    reset, done = ev.error_code, True
                elif isinstance(ev, h2.events.StreamEnded):
                    done = True
            sock.sendall(conn.data_to_send())
        return head, data, trailers, reset
    finally:
        sock.close()


def raw_request(port, data, timeout=5.0, read_all=True):
    """Sends raw bytes, returns everything read until close or timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
            if not read_all and b"\r\n\r\n" in out:
                break
        return out


def read_head(s, timeout=10.0):
    """Reads an HTTP/1.1 head (request or response) from socket `s`; returns (head text,
    bytes after the head)."""
    s.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise AssertionError("closed before a head: %r" % buf)
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def read_response_head(s, timeout=10.0):
    """Reads a response head; returns (status, headers dict with lowercase names, the first
    of each kept, bytes after the head)."""
    head, rest = read_head(s, timeout)
    lines = head.split("\r\n")
    hdrs = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        hdrs.setdefault(k.strip().lower(), v.strip())
    return int(lines[0].split(" ")[1]), hdrs, rest


def make_cert(directory, name="server"):
    """A self-signed certificate for 127.0.0.1/localhost made with the openssl CLI."""
    crt = os.path.join(directory, name + ".pem")
    key = os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", crt, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return crt, key


class PorticoTestCase(unittest.TestCase):
    """Base class: self.start(config) starts portico, stopped (and checked) at teardown."""

    def setUp(self):
        self._procs = []
        self._echos = []

    def echo(self):
        e = EchoServer()
        self._echos.append(e)
        return e

    def start(self, config, port, workers=1, **kw):
        p = Portico(config, workers=workers, **kw)
        self._procs.append(p)
        try:
            p.wait_ready(port)
        except Exception:
            print(p.output())
            raise
        return p

    def tearDown(self):
        for p in self._procs:
            if p.proc.poll() is None:
                code = p.stop()
                if code != 0:
                    print(p.output())
                self.assertEqual(code, 0, "portico did not exit cleanly")
            else:
                p.stop()
        for e in self._echos:
            e.stop()
