"""
Redis on the worker loops (gateway/upstream/redis.c, SDK portico/redis.h),
through the example filter examples/plugins/redis_count.c built as
build/lib/pt_redis_count.so against the SDK headers only.

Each test starts its own redis-server on a free loopback port (never a
system service), with no persistence, and stops it by its pid.
"""
import json
import os
import signal
import socket
import subprocess
import tempfile
import shutil
import time
import unittest
import weakref

from portico_test import PorticoTestCase, curl, free_port, BIN

PLUGIN = os.path.join(os.path.dirname(os.path.dirname(BIN)), "lib", "pt_redis_count.so")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class Redis:
    """A private redis-server and a minimal RESP client for the test's own checks."""

    def __init__(self, password=None, port=None, unix=False):
        self.port = port or free_port()
        self.password = password
        self.dir = tempfile.mkdtemp(prefix="portico-redis-")
        self._rm_dir = weakref.finalize(self, shutil.rmtree, self.dir, True)  # even if start fails
        self.unix = os.path.join(self.dir, "redis.sock") if unix else None
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir, "--daemonize", "no"]
        if self.unix:
            args += ["--unixsocket", self.unix, "--unixsocketperm", "700"]
        if password:
            args += ["--requirepass", password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.cmd("PING") == "PONG":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def cmd(self, *args, db=0):
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            f = s.makefile("rb")
            pre = []
            if self.password:
                pre.append(("AUTH", self.password))
            if db:
                pre.append(("SELECT", str(db)))
            for c in pre + [args]:
                out = b"*%d\r\n" % len(c)
                for a in c:
                    a = a if isinstance(a, bytes) else str(a).encode()
                    out += b"$%d\r\n%s\r\n" % (len(a), a)
                s.sendall(out)
            reply = None
            for _ in pre + [args]:
                reply = self._read(f)
            return reply

    def _read(self, f):
        line = f.readline()
        if not line:
            raise OSError("redis closed the connection")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = f.read(n + 2)[:-2]
            return data.decode("latin-1")
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._read(f) for _ in range(n)]
        raise OSError("bad reply %r" % line)

    def clients(self, name_filter=None):
        """Connections from others than this helper (CLIENT LIST minus ourselves)."""
        lines = [ln for ln in self.cmd("CLIENT", "LIST").splitlines() if ln.strip()]
        return [ln for ln in lines if "cmd=client" not in ln]

    def pause(self):
        """SIGSTOP: connections are still accepted by the kernel, nothing is answered."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_until(pred, timeout=15.0, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


class RedisTest(PorticoTestCase):
    def setUp(self):
        super().setUp()
        self._redis = []

    def tearDown(self):
        try:
            super().tearDown()  # portico first: it must exit cleanly (ASan) with redis in any state
        finally:
            for r in self._redis:  # even when that check fails: no redis-server left behind
                r.stop()

    def redis(self, **kw):
        r = Redis(**kw)
        self._redis.append(r)
        return r

    def config(self, port, redis_block, filters, upstream_port, extra_routes=""):
        return f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
redis: {redis_block}
plugins: [ {{ path: "{PLUGIN}" }} ]
clusters: [ {{ name: web, endpoints: [ "127.0.0.1:{upstream_port}" ] }} ]
routes:{extra_routes}
  - match: {{ prefix: / }}
    proxy: {{ cluster: web }}
    filters:
{filters}
"""

    def test_counts_shared_by_workers_with_auth_and_db(self):
        """INCR per request: exact counts across 2 workers; AUTH, SELECT and prefix applied;
        the count reaches the upstream (request header) and the client (response header);
        over the limit -> 429 without reaching the upstream."""
        up = self.echo()
        r = self.redis(password="s3cret pass")
        port = free_port()
        self.start(self.config(
            port,
            f'{{ main: {{ address: "127.0.0.1:{r.port}", password_file: redis.pass, db: 3, '
            f'prefix: "pt:", timeout: 2s, connections: 2 }} }}',
            "      - redis_count: { redis: main, key_header: x-user, limit: 20, window: 1h }",
            up.port), port, workers=2, extra_files={"redis.pass": "s3cret pass\n"})
        url = f"http://127.0.0.1:{port}/c"
        for i in range(1, 21):
            st, h, body, err = curl(url, "-H", "X-User: alice")  # a new connection each time
            self.assertEqual(st, 200, err)
            self.assertEqual(h.get("x-count"), str(i))
            seen = dict(json.loads(body)["headers"])
            self.assertEqual(seen.get("x-count"), str(i))  # forwarded upstream
        st, h, body, _ = curl(url, "-H", "X-User: alice")
        self.assertEqual(st, 429)
        self.assertEqual(json.loads(body)["error"]["code"], "RATE_LIMITED")
        self.assertEqual(h.get("x-count"), "21")
        self.assertEqual(len(up.requests), 20)  # the refused one never went upstream
        st, h, _, _ = curl(url, "-H", "X-User: bob")
        self.assertEqual(h.get("x-count"), "1")  # keys per header value
        keys = r.cmd("KEYS", "*", db=3)
        self.assertEqual(len(keys), 2, keys)
        self.assertTrue(all(k.startswith("pt:count:") for k in keys), keys)
        self.assertEqual(r.cmd("KEYS", "*"), [])  # nothing in db 0: SELECT ran first
        self.assertGreater(r.cmd("TTL", keys[0], db=3), 0)  # every key expires
        # two connections per worker, each used (round robin): both workers counted in one Redis
        self.assertEqual(len(r.clients()), 4, r.clients())

    def test_redis_down_then_back(self):
        """Redis stopped: fail open at once with x-count-error (or 503 with on_error: deny),
        then the connection comes back by itself once Redis is up again."""
        up = self.echo()
        r = self.redis()
        rport = r.port
        port = free_port()
        extra = """
  - match: { prefix: /strict }
    proxy: { cluster: web }
    filters:
      - redis_count: { redis: main, key_header: x-user, on_error: deny }"""
        p = self.start(self.config(
            port, f'{{ main: {{ address: "127.0.0.1:{rport}", timeout: 1s }} }}',
            "      - redis_count: { redis: main, key_header: x-user }", up.port, extra), port)
        url = f"http://127.0.0.1:{port}/c"
        st, h, _, _ = curl(url, "-H", "X-User: a")
        self.assertEqual((st, h.get("x-count")), (200, "1"))
        r.stop()
        self._redis.remove(r)
        for _ in range(3):
            st, h, _, err = curl(url, "-H", "X-User: a", timeout=10)
            self.assertEqual(st, 200, err)
            self.assertEqual(h.get("x-count-error"), "UNAVAILABLE")
            self.assertNotIn("x-count", h)
        st, h, body, _ = curl(f"http://127.0.0.1:{port}/strict", timeout=10)
        self.assertEqual(st, 503)
        self.assertEqual(json.loads(body)["error"]["code"], "UNAVAILABLE")
        # the same port again: a new, empty Redis
        r2 = self.redis(port=rport)

        def counted():
            st, h, _, _ = curl(url, "-H", "X-User: a", timeout=10)
            return h.get("x-count") if st == 200 else None
        self.assertEqual(wait_until(counted), "1")
        self.assertEqual(r2.cmd("GET", r2.cmd("KEYS", "count:a:*")[0]), "1")
        # one line when it went, one when it came back, none for the retries between
        out = p.output()
        self.assertEqual(out.count("retrying quietly"), 1, out)
        self.assertEqual(out.count("answering again"), 1, out)

    def test_redis_killed_with_command_pending(self):
        """Redis dies while INCR waits (timeout 30 s): the command completes at once with
        UNAVAILABLE when the connection drops, not at its timeout; the loss is logged."""
        up = self.echo()
        r = self.redis()
        port = free_port()
        p = self.start(self.config(
            port, f'{{ main: {{ address: "127.0.0.1:{r.port}", timeout: 30s }} }}',
            "      - redis_count: { redis: main, key_header: x-user }", up.port), port)
        url = f"http://127.0.0.1:{port}/k"
        self.assertEqual(curl(url)[1].get("x-count"), "1")
        r.pause()
        hdr = os.path.join(p.dir, "k.h")
        c = subprocess.Popen(["curl", "-sS", "--max-time", "20", "-D", hdr, "-o", "/dev/null",
                              url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # the request waits on the stopped Redis
        self.assertIsNone(c.poll())
        r.proc.kill()  # the kernel resets its connections
        r.proc.wait(10)
        self.assertEqual(c.wait(25), 0)  # answered well before the 30 s command timeout
        with open(hdr) as f:
            head = f.read().lower()
        self.assertIn("200 ok", head)
        self.assertIn("x-count-error: unavailable", head)
        self.assertIn("connection lost", p.output())

    def test_auth_refused(self):
        """A wrong password: AUTH is refused, the commands queued behind it fail (the filter
        fails open), the failure is logged once per connection however many requests come,
        and a reload with the right password fixes it."""
        up = self.echo()
        r = self.redis(password="right")
        port = free_port()
        filt = "      - redis_count: { redis: main, key_header: x-user }"
        block = f'{{ main: {{ address: "127.0.0.1:{r.port}", password_file: pw }} }}'
        p = self.start(self.config(port, block, filt, up.port), port,
                       extra_files={"pw": "wrong\n"})
        url = f"http://127.0.0.1:{port}/p"
        for _ in range(8):
            st, h, _, err = curl(url, timeout=10)
            self.assertEqual(st, 200, err)
            self.assertEqual(h.get("x-count-error"), "UNAVAILABLE")
            time.sleep(0.15)  # past the first backoffs: several AUTH attempts
        out = p.output()
        self.assertEqual(out.count("AUTH refused"), 1, out)
        self.assertNotIn("right", out)
        self.assertNotIn("wrong", out)  # passwords never reach the log
        with open(os.path.join(p.dir, "pw"), "w") as f:
            f.write("right\n")
        p.reload()  # the password file is read again: a new definition, new connections
        self.assertEqual(wait_until(lambda: curl(url)[1].get("x-count")), "1")

    def test_timeout_then_late_reply_ignored(self):
        """A paused Redis: the command times out (answer well before Redis comes back), the late
        reply is dropped, and later commands work on the same connection set."""
        up = self.echo()
        r = self.redis()
        port = free_port()
        self.start(self.config(
            port, f'{{ main: {{ address: "127.0.0.1:{r.port}", timeout: 300ms }} }}',
            "      - redis_count: { redis: main, key_header: x-user }", up.port), port)
        url = f"http://127.0.0.1:{port}/t"
        st, h, _, _ = curl(url, "-H", "X-User: t")
        self.assertEqual(h.get("x-count"), "1")
        r.pause()
        try:
            # Redis stays stopped until curl has its answer (or gives up after 10 s)
            st, h, _, err = curl(url, "-H", "X-User: t", timeout=10)
            self.assertEqual(st, 200, err)
            self.assertEqual(h.get("x-count-error"), "TIMEOUT")
        finally:
            r.resume()

        def counted():
            st, h, _, _ = curl(url, "-H", "X-User: t", timeout=10)
            return h.get("x-count")
        # the timed-out INCR still ran in Redis (2); the next ones count on from there
        self.assertEqual(wait_until(counted), "3")

    def test_client_abort_while_command_pending(self):
        """Clients that go away while INCR waits: the abort hook cancels the command, the late
        reply is dropped, nothing crashes or leaks (ASan build), Portico keeps serving."""
        up = self.echo()
        r = self.redis()
        port = free_port()
        self.start(self.config(
            port, f'{{ main: {{ address: "127.0.0.1:{r.port}", timeout: 30s }} }}',
            "      - redis_count: { redis: main, key_header: x-user }", up.port), port, workers=2)
        url = f"http://127.0.0.1:{port}/a"
        st, h, _, _ = curl(url, "-H", "X-User: ab")
        self.assertEqual(h.get("x-count"), "1")
        r.pause()
        try:
            socks = []
            for _ in range(6):
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\nX-User: ab\r\n\r\n")
                socks.append(s)
            # HTTP/2 too: the stream is reset while its command is pending
            h2 = subprocess.Popen(["nghttp", "-H", "x-user: ab", f"http://127.0.0.1:{port}/a"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # let the requests reach the filter (they suspend: no answer)
            for s in socks:
                s.settimeout(0.2)
                with self.assertRaises(socket.timeout):
                    s.recv(1)  # still suspended on the paused Redis
                s.close()
            h2.send_signal(signal.SIGKILL)
            h2.wait(5)
            time.sleep(0.3)
        finally:
            r.resume()

        def counted():
            st, h, _, _ = curl(url, "-H", "X-User: ab", timeout=10)
            return int(h.get("x-count", "0"))
        # the canceled INCRs still ran in Redis; the next count is past all of them
        self.assertTrue(wait_until(lambda: counted() >= 8))

    def test_reload_keeps_or_replaces_connections(self):
        """SIGHUP with the target unchanged keeps its connection; a changed definition (db)
        gets a new connection and the old one is closed once idle."""
        up = self.echo()
        r = self.redis()
        port = free_port()
        filt = "      - redis_count: { redis: main, key_header: x-user }"
        p = self.start(self.config(
            port, f'{{ main: {{ address: "127.0.0.1:{r.port}" }} }}', filt, up.port), port)
        url = f"http://127.0.0.1:{port}/r"
        self.assertEqual(curl(url)[1].get("x-count"), "1")
        ids = [ln.split()[0] for ln in r.clients()]
        self.assertEqual(len(ids), 1)
        p.write_config(self.config(
            port, f'{{ main: {{ address: "127.0.0.1:{r.port}", prefix: "v2:" }} }}', filt,
            up.port))
        p.reload()
        self.assertTrue(wait_until(lambda: curl(url)[1].get("x-count") == "1"))  # new prefix
        self.assertEqual([ln.split()[0] for ln in r.clients()], ids)  # same connection
        p.write_config(self.config(
            port, f'{{ main: {{ address: "127.0.0.1:{r.port}", db: 2 }} }}', filt, up.port))
        p.reload()
        self.assertTrue(wait_until(lambda: curl(url)[1].get("x-count") is not None and
                                   r.cmd("KEYS", "*", db=2) != []))
        # the db 0 connection is retired by the worker's once-a-second GC
        self.assertTrue(wait_until(lambda: len(r.clients()) == 1 and
                                   [ln.split()[0] for ln in r.clients()] != ids))

    def test_unix_socket(self):
        up = self.echo()
        r = self.redis(unix=True)
        port = free_port()
        self.start(self.config(
            port, f'{{ main: {{ address: "unix:{r.unix}", prefix: "u:" }} }}',
            "      - redis_count: { redis: main, key_header: x-user }", up.port), port)
        url = f"http://127.0.0.1:{port}/u"
        self.assertEqual(curl(url)[1].get("x-count"), "1")
        self.assertEqual(curl(url)[1].get("x-count"), "2")
        self.assertEqual(len(r.cmd("KEYS", "u:count:*")), 1)

    def test_config_errors(self):
        d = tempfile.mkdtemp()
        try:
            cfg = os.path.join(d, "p.yaml")
            with open(cfg, "w") as f:
                f.write(f"""listeners: [ {{ address: "127.0.0.1:1" }} ]
redis:
  main: {{ address: "127.0.0.1:6379" }}
  slow: {{ address: "127.0.0.1:6379", timeout: 0ms }}
  bad: {{ address: "redis.example:6379", connectionz: 2 }}
  auth: {{ address: "unix:/run/redis.sock", password_file: missing.pass }}
  "no good": {{ address: "[::1]:0" }}
plugins: [ {{ path: "{PLUGIN}" }} ]
routes:
  - match: {{ prefix: / }}
    respond: {{ status: 200 }}
    filters:
      - redis_count: {{ redis: mian, key_header: x-user }}
""")
            p = subprocess.run([BIN, "--validate", "-c", cfg], capture_output=True, text=True)
            self.assertEqual(p.returncode, 1)
            e = p.stderr
            self.assertRegex(e, r"p\.yaml:4:\d+: duration '0ms' out of range")
            self.assertRegex(e, r"p\.yaml:5:\d+: unknown key 'connectionz'")
            self.assertRegex(e, r"p\.yaml:6:\d+: cannot read password_file .*missing\.pass")
            self.assertRegex(e, r"p\.yaml:7:\d+: redis target name 'no good'")
            self.assertRegex(e, r"p\.yaml:13:\d+: unknown redis target 'mian' \(configured: main\)")
            with open(cfg, "w") as f:
                f.write("""listeners: [ { address: "127.0.0.1:1" } ]
redis:
  bad: { address: "redis.example:6379" }
""")
            p = subprocess.run([BIN, "--validate", "-c", cfg], capture_output=True, text=True)
            self.assertEqual(p.returncode, 1)
            self.assertRegex(p.stderr, r"p\.yaml:3:\d+: bad address .*not an IP address")
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
