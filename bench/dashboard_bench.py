#!/usr/bin/python3
"""
dashboard_bench.py -- what the live dashboard costs the request path (issue 13,
dash): the per-cluster series (one table lookup per proxied request), the
HTTP/2 stream gauge and the WebSocket counter (one relaxed store each), and an
open /stats/stream (the admin's main thread builds a snapshot a second).

Compares two portico binaries on the plain proxy path in one run: --before
(a build without the dashboard, e.g. of the merge base) and --after (this
build). Each serves one proxy route to an nginx upstream answering 13 bytes,
with one worker.

  callgrind: each binary runs under valgrind's callgrind; each row is a fixed
    number of requests (h2load, HTTP/1.1 keep-alive and HTTP/2 prior knowledge,
    8 connections) and prints user-space instructions per request (all of the
    process's threads, the admin's included), median of --rounds, interleaved.
  cpu: the same rows without valgrind: req/s and Portico CPU microseconds per
    request (utime+stime from /proc), median of --rounds, interleaved.

Without --before only the --after rows are measured (make bench: set
DASH_BENCH_BEFORE to a binary built without the dashboard to compare).

  python3 bench/dashboard_bench.py --before /tmp/before/build/bin/portico --build build
"""
import argparse
import collections
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from proxy_bench import cpu_seconds, free_port, nginx_conf, parse_h2load, wait_port  # noqa: E402
import benchlib  # noqa: E402

MODES = [("HTTP/1.1", ["--h1"]), ("HTTP/2", [])]


def config(port, admin, up):
    return f"""
listeners:
  - address: 127.0.0.1:{port}
admin: {{ address: 127.0.0.1:{admin} }}
limits: {{ max_requests_per_conn: 100000000 }}
clusters:
  - name: web
    endpoints: [ "127.0.0.1:{up}" ]
routes:
  - name: api
    match: {{ prefix: / }}
    proxy: {{ cluster: web }}
"""


class Gateway:
    def __init__(self, name, binary, d, up, callgrind):
        self.name, self.port, self.admin = name, free_port(), free_port()
        self.dir = os.path.join(d, name)
        os.makedirs(self.dir)
        cfg = os.path.join(self.dir, "portico.yaml")
        with open(cfg, "w") as f:
            f.write(config(self.port, self.admin, up))
        vg = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + os.path.join(self.dir, "cg.out")] \
            if callgrind else []
        self.proc = subprocess.Popen(vg + [binary, "-c", cfg, "-w", "1"], cwd=self.dir,
                                     stderr=open(os.path.join(self.dir, "pt.err"), "w"))
        wait_port(self.port, 60)
        wait_port(self.admin, 60)

    def h2load(self, flags, n):
        cmd = ["h2load"] + flags + ["-c8", "-n", str(n), f"http://127.0.0.1:{self.port}/"]
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
        rps, ok, errs = parse_h2load(out)
        if errs or ok != n:
            raise RuntimeError(f"{self.name}: {ok}/{n} answered, {errs} failed")
        return rps

    def instructions(self, flags, n):
        self.h2load(flags, 200)  # warm-up (pools, caches)
        subprocess.run(["callgrind_control", "-z", str(self.proc.pid)], capture_output=True, check=True)
        self.h2load(flags, n)
        before = set(glob.glob(os.path.join(self.dir, "cg.out.*")))
        subprocess.run(["callgrind_control", "-d", str(self.proc.pid)], capture_output=True, check=True)
        new = set(glob.glob(os.path.join(self.dir, "cg.out.*"))) - before
        if len(new) != 1:
            raise RuntimeError(f"{self.name}: no callgrind dump")
        with open(new.pop()) as f:
            return [int(x.split()[1]) for x in f if x.startswith("totals:")][0] / n

    def cpu(self, flags, n):
        self.h2load(flags, 1000)
        c0 = cpu_seconds([self.proc.pid])
        rps = self.h2load(flags, n)
        return rps, (cpu_seconds([self.proc.pid]) - c0) * 1e6 / n

    def open_stream(self):
        """A dashboard client: /stats/stream, read in the background by a reader process."""
        s = socket.create_connection(("127.0.0.1", self.admin))
        s.sendall(b"GET /stats/stream HTTP/1.1\r\nHost: admin\r\n\r\n")
        if not s.recv(4096).startswith(b"HTTP/1.1 200"):
            raise RuntimeError("stream refused")
        return s


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--before", default=os.environ.get("DASH_BENCH_BEFORE", ""),
                    help="a portico binary without the dashboard")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=3000, help="requests per callgrind row")
    ap.add_argument("--cpu-requests", type=int, default=40000, help="requests per cpu row")
    args = ap.parse_args()
    after = os.path.abspath(os.path.join(args.build, "bin", "portico"))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    for tool in ("h2load", "valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"dashboard_bench: {tool} is needed (scripts/install-deps.sh)")
    bins = ([("before", args.before)] if args.before else []) + [("after", after)]
    d = tempfile.mkdtemp(prefix="portico-dashbench-")
    procs = []
    try:
        up = free_port()
        procs.append(subprocess.Popen([nginx, "-c", nginx_conf(d, "upstream", f"""
  server {{ listen 127.0.0.1:{up}; location / {{ return 200 "hello world!\\n"; }} }}""")]))
        wait_port(up, 10)
        for callgrind in (True, False):
            gws = []
            for name, b in bins:
                gws.append(Gateway(name + ("-cg" if callgrind else ""), b, d, up, callgrind))
                procs.append(gws[-1].proc)
            res = collections.defaultdict(list)
            stream = None
            for _ in range(args.rounds):  # interleaved: every row sees the same machine noise
                for g in gws:
                    for mode, flags in MODES:
                        key = (g.name.split("-")[0], mode)
                        res[key].append(g.instructions(flags, args.requests) if callgrind
                                        else g.cpu(flags, args.cpu_requests))
                # the last binary again, with a dashboard stream open (its admin thread at work)
                g = gws[-1]
                stream = stream or g.open_stream()
                key = (g.name.split("-")[0] + " + 1 stream", "HTTP/1.1")
                res[key].append(g.instructions(["--h1"], args.requests) if callgrind
                                else g.cpu(["--h1"], args.cpu_requests))
            stream.close()
            if callgrind:
                print(f"\nDashboard cost under callgrind: instructions per request (whole process), "
                      f"{args.requests} requests per row (h2load -c8), {args.rounds} rounds (median)\n")
                print(f"{'binary':<18} {'protocol':<9} {'instr/req':>10} {'vs before':>10}")
                for (name, mode), v in res.items():
                    base = res.get(("before", mode))
                    diff = f"{median(v) - median(base):+10.0f}" if base else f"{'':>10}"
                    print(f"{name:<18} {mode:<9} {median(v):>10.0f} {diff}")
            else:
                print(f"\nDashboard cost without valgrind: {args.cpu_requests} requests per row "
                      f"(h2load -c8), {args.rounds} rounds (median; the machine may be shared)\n")
                print(f"{'binary':<18} {'protocol':<9} {'req/s':>9} {'CPU us/req':>11}")
                for (name, mode), v in res.items():
                    print(f"{name:<18} {mode:<9} {median([x[0] for x in v]):>9.0f} "
                          f"{median([x[1] for x in v]):>11.2f}")
            for g in gws:
                benchlib.stop_all([g.proc])
    finally:
        benchlib.stop_all(procs, d)


if __name__ == "__main__":
    main()
