"""
bookstore_server.py -- start and stop examples/bookstore's bookstore-server
for tests, and import its generated Python stubs.

Environment (set by ctest for tests under bookstore/):
  BOOKSTORE_BIN  path of bin/bookstore-server
  BOOKSTORE_PB   path of the bookstore.pb descriptor set
  BOOKSTORE_PY   directory of the generated stubs (bookstore_pb2*, google.api/rpc)

Usage:
    from bookstore_server import BookstoreServer, pb, pb_grpc
    srv = BookstoreServer(threads=2).start()
    stub = pb_grpc.BookstoreStub(srv.channel())
    ...
    srv.stop()          # SIGTERM, waits, returns the exit status
"""
import os
import select
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
BIN = os.environ.get("BOOKSTORE_BIN", os.path.join(ROOT, "build", "bin", "bookstore-server"))
PB = os.environ.get("BOOKSTORE_PB",
                    os.path.join(ROOT, "build", "examples", "bookstore", "bookstore.pb"))
PY = os.environ.get("BOOKSTORE_PY", os.path.join(ROOT, "build", "examples", "bookstore", "python"))

if PY not in sys.path:
    sys.path.insert(0, PY)

import grpc  # noqa: E402  (Debian python3-grpcio)
import bookstore_pb2 as pb  # noqa: E402
import bookstore_pb2_grpc as pb_grpc  # noqa: E402


class BookstoreServer:
    """One bookstore-server process on 127.0.0.1 and a free port."""

    def __init__(self, threads=2, grace_ms=None, extra_args=()):
        self.args = [BIN, "--port", "0", "--threads", str(threads)]
        if grace_ms is not None:
            self.args += ["--grace-ms", str(grace_ms)]
        self.args += list(extra_args)
        self.proc = None
        self.port = None
        self._channels = []

    def start(self, timeout=10.0):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # The server prints its address once it serves (it picked the port).
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("bookstore-server did not start: %r" % line)
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                ch = os.read(self.proc.stdout.fileno(), 1)
                if not ch:
                    continue
                line += ch
        self.port = int(line.decode().rsplit(":", 1)[1])
        return self

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def channel(self):
        ch = grpc.insecure_channel(self.address)
        self._channels.append(ch)
        return ch

    def stop(self, timeout=15.0, sig=signal.SIGTERM):
        """Signals the server and waits; returns its exit status."""
        for ch in self._channels:
            ch.close()
        self._channels = []
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.stderr = self.proc.stderr.read().decode(errors="replace")
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc
