"""
soap_service.py -- starts the example SOAP service (examples/soap/server.js,
the npm `soap` package) for a test: a free port on 127.0.0.1, waits for its
"listening PORT" line (bounded), stops it at cleanup.
"""
import os
import select
import shutil
import subprocess
import time

import portico_test

EXAMPLE = os.path.join(portico_test.ROOT, "examples", "soap")
NODE_MODULES = os.path.join(EXAMPLE, "node_modules")


def node_env():
    """Environment for node scripts that require('soap')."""
    env = dict(os.environ)
    env["NODE_PATH"] = NODE_MODULES
    return env


class SoapService:
    def __init__(self, timeout=20.0):
        if not os.path.isdir(os.path.join(NODE_MODULES, "soap")):
            raise RuntimeError("examples/soap/node_modules/soap missing: run scripts/test-env.sh")
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not installed")
        self.proc = subprocess.Popen([node, os.path.join(EXAMPLE, "server.js"), "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=node_env())
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline and not line.endswith(b"\n"):
            r, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if r:
                ch = os.read(self.proc.stdout.fileno(), 1)
                if not ch:
                    break
                line += ch
        if not line.startswith(b"listening "):
            self.stop()
            raise RuntimeError("the example SOAP service did not start: %r %r" %
                               (line, self.proc.stderr.read()[-2000:]))
        self.port = int(line.split()[1])
        self.base = "http://127.0.0.1:%d" % self.port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()
