#!/usr/bin/python3
"""
rest_bench.py -- REST/JSON -> gRPC transcoding through Portico to the bookstore
service: JSON POST /v1/echo (EchoRequest from the body) and GET /v1/shelves/1
(GetShelf from the path), with h2load over h2c and wrk over HTTP/1.1
keep-alive, 32 requests in flight, Portico -w 1, bookstore-server with one
thread (--backend-threads). For each: requests/s, p50/p99, and Portico's and
the backend's CPU microseconds per request. The figures for grpc-gateway (Go)
measured on this kind of machine (issue 4: ~180 us of CPU per transcoded
POST, ~8k req/s) are printed beside them for scale.

Like with like: the same Echo call is also made to the backend directly, with
the same client (h2load), the same 4x8 = 32 calls in flight and the same
message (EchoRequest{message: "hello"}, gRPC framed), and the transcoded h2c
POST's requests/s is given as a ratio of it (issue 7 aims at >= 0.85); the
same call is also passed through Portico as native gRPC, and the transcoded
POST's Portico CPU per request is given as a ratio of that (aim <= 1.3). Each
row also shows how busy each process was (CPU seconds per second of the run:
100% is one core) and the whole machine (from /proc/stat, other users
included), which says what bounded the run: a process at ~100% is the
bottleneck; none near 100% with the machine near 100% means the processes
are competing for the cores (client, Portico and backend share them);
neither means latency.

The peer row passes the same gRPC call through nginx (`grpc_pass`, one
worker; its CPU is in the proxy column): what one proxy hop costs on this
machine. And the CPU budget: client + proxy + backend CPU per request of a
row is what one request costs the machine, so 2 cores carry at most
2 s / that many requests per second even with no idle moment; printed as a
ratio of the direct call's requests/s, it is the most the row could reach.
Loopback only; every process is stopped at the end.
"""
import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import (children, cpu_seconds, free_port, h2load_percentiles,  # noqa: E402
                         nginx_conf, parse_h2load, parse_wrk, wait_port)
from grpc_bench import BODY, ECHO, start_bookstore  # noqa: E402

GRPC_GATEWAY_CPU_US, GRPC_GATEWAY_RPS = 180.0, 8000.0
POST_BODY = b'{"message":"hello"}'


def machine_busy():
    """(busy, total) jiffies of all cores so far, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_SECONDS", "8")))
    ap.add_argument("--backend-threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")),
                    help="interleaved rounds of every scenario; medians are printed")
    args = ap.parse_args()
    portico = os.path.join(args.build, "bin", "portico")
    bookstore = os.path.join(args.build, "bin", "bookstore-server")
    descriptors = os.path.abspath(os.path.join(args.build, "examples", "bookstore", "bookstore.pb"))
    d = tempfile.mkdtemp(prefix="portico-rest-bench-")
    procs = []
    try:
        bs, bs_port = start_bookstore(bookstore, args.backend_threads)
        procs.append(bs)
        pt_port = free_port()
        cfg = os.path.join(d, "portico.yaml")
        with open(cfg, "w") as f:
            f.write(f"""
listeners: [ {{ address: "127.0.0.1:{pt_port}" }} ]
limits: {{ max_requests_per_conn: 100000000 }}
descriptors: [ {descriptors} ]
clusters:
  - {{ name: books, protocol: grpc, endpoints: [ "http://127.0.0.1:{bs_port}" ] }}
routes:
  - grpc: {{ cluster: books }}
""")
        pt = subprocess.Popen([portico, "-c", cfg, "-w", "1"], stderr=open(os.path.join(d, "pt.err"), "w"))
        procs.append(pt)
        ng_port = free_port()
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        ng = subprocess.Popen([nginx, "-c", nginx_conf(d, "grpcpass", f"""
  upstream books {{ server 127.0.0.1:{bs_port}; keepalive 64; }}
  server {{ listen 127.0.0.1:{ng_port} http2; keepalive_requests 100000000;
           location / {{ grpc_pass grpc://books; }} }}""")])
        procs.append(ng)
        wait_port(pt_port)
        wait_port(ng_port)
        time.sleep(0.3)
        ng_pids = children(ng.pid) or [ng.pid]
        base = f"http://127.0.0.1:{pt_port}"
        # both calls must answer correctly before they are timed
        r = urllib.request.urlopen(urllib.request.Request(base + "/v1/echo", data=POST_BODY,
                                                          headers={"content-type": "application/json"}))
        assert json.loads(r.read())["message"] == "hello"
        assert json.loads(urllib.request.urlopen(base + "/v1/shelves/1").read())["id"] == "1"
        body = os.path.join(d, "body.json")
        with open(body, "wb") as f:
            f.write(POST_BODY)
        lua = os.path.join(d, "post.lua")
        with open(lua, "w") as f:
            f.write('wrk.method = "POST"\nwrk.body = \'%s\'\n'
                    'wrk.headers["Content-Type"] = "application/json"\n' % POST_BODY.decode())
        gbody = os.path.join(d, "echo.grpc")
        with open(gbody, "wb") as f:
            f.write(BODY)
        runs = {}  # label -> one result tuple per round

        def measure(label, cmd, parser, log=None):
            proxy = ng_pids if "nginx" in label else [pt.pid]
            cpu0, bcpu0, box0 = cpu_seconds(proxy), cpu_seconds([bs.pid]), machine_busy()
            ru0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
            out = subprocess.run(cmd, capture_output=True, text=True).stdout
            ru1, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic() - t0
            cpu, bcpu = cpu_seconds(proxy) - cpu0, cpu_seconds([bs.pid]) - bcpu0
            box = [b - a for a, b in zip(box0, machine_busy())]
            ccpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
            if parser == "wrk":
                rps, n, p50, p99, errs, _ = parse_wrk(out)
            else:
                rps, n, errs = parse_h2load(out)
                p50, p99 = h2load_percentiles(log)
            busy = tuple(100 * x / wall for x in (ccpu, cpu, bcpu))
            runs.setdefault(label, []).append(
                (rps, p50, p99, cpu * 1e6 / max(n, 1) if "direct" not in label else None,
                 bcpu * 1e6 / max(n, 1), errs, busy, 100 * box[0] / max(box[1], 1),
                 (ccpu + (cpu if "direct" not in label else 0) + bcpu) * 1e6 / max(n, 1)))

        log = os.path.join(d, "h2.log")
        direct = ["h2load", "-c4", "-m8", "-d", gbody, "-H", "content-type: application/grpc",
                  "-H", "te: trailers"]
        direct_url = f"http://127.0.0.1:{bs_port}{ECHO}"
        scenarios = [("h2c  gRPC Echo direct", direct, direct_url, "h2load"),
                     # the same call passed through Portico as native gRPC: the base of issue 7's CPU ratio
                     ("h2c  gRPC Echo via Portico", direct, base + ECHO, "h2load"),
                     # the peer: the same call through nginx grpc_pass (proxy column = nginx)
                     ("h2c  gRPC Echo via nginx", direct, f"http://127.0.0.1:{ng_port}{ECHO}", "h2load")]
        for label, path, post in (("POST /v1/echo", "/v1/echo", True), ("GET /v1/shelves/1", "/v1/shelves/1", False)):
            h2 = ["h2load", "-c4", "-m8"] + (["-d", body, "-H", "content-type: application/json"] if post else [])
            wrk = ["wrk", "-t1", "-c32", "--latency"] + (["-s", lua] if post else [])
            scenarios += [(f"h2c  {label}", h2, base + path, "h2load"), (f"h1.1 {label}", wrk, base + path, "wrk")]
        # Rounds interleave the scenarios (the machine drifts by tens of percent over a minute):
        # the table gives each column's median over the rounds, the ratios are taken inside each
        # round (same minute) and their median and range are printed.
        for rnd in range(args.rounds):
            for label, cmd, url, tool in scenarios:
                if tool == "wrk":
                    if rnd == 0:
                        subprocess.run(cmd + ["-d1s", url], capture_output=True)
                    measure(label, cmd + [f"-d{args.duration}s", url], "wrk")
                else:
                    if rnd == 0:
                        subprocess.run(cmd + ["-D1", url], capture_output=True)
                    measure(label, cmd + [f"-D{args.duration}", "--log-file", log, url], "h2load", log)

        med = statistics.median
        print(f"\nREST/JSON -> gRPC transcoding benchmark: Portico -w 1 -> bookstore-server "
              f"({args.backend_threads} thread{'s' if args.backend_threads > 1 else ''}), "
              f"32 requests in flight, {args.duration}s per run, {args.rounds} interleaved rounds "
              f"(medians), {os.cpu_count()} cores\n")
        print(f"{'load':<26} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'proxy CPU us/req':>17} "
              f"{'backend CPU us/req':>19} {'errors':>6} {'busy % client/proxy/backend':>28} "
              f"{'machine %':>9}")
        for label, rs in runs.items():
            cpu = None if rs[0][3] is None else med(r[3] for r in rs)
            busy = "/".join(f"{med(r[6][i] for r in rs):.0f}" for i in range(3))
            print(f"{label:<26} {med(r[0] for r in rs):>8.0f} {med(r[1] for r in rs):>8.3f} "
                  f"{med(r[2] for r in rs):>8.3f} {(f'{cpu:.1f}' if cpu is not None else '-'):>17} "
                  f"{med(r[4] for r in rs):>19.1f} {sum(r[5] for r in rs):>6} {busy:>28} "
                  f"{med(r[7] for r in rs):>9.0f}")

        def ratio(num, den, col):
            v = [a[col] / b[col] for a, b in zip(runs[num], runs[den])]
            return f"{med(v):.2f}x (rounds {min(v):.2f}-{max(v):.2f})"
        print(f"\ntranscoded h2c POST / the same call made directly (same client, 32 in flight): "
              f"{ratio('h2c  POST /v1/echo', 'h2c  gRPC Echo direct', 0)} req/s (issue 7 aims at >= 0.85)")
        print(f"transcoded h2c POST / the same call passed through as native gRPC: "
              f"{ratio('h2c  POST /v1/echo', 'h2c  gRPC Echo via Portico', 3)} Portico CPU per request "
              f"(issue 7 aims at <= 1.3)")
        cores = os.cpu_count() or 1
        direct_rps = med(r[0] for r in runs["h2c  gRPC Echo direct"])
        print(f"\nCPU budget (client + proxy + backend CPU per request; {cores} cores carry at most "
              f"{cores} s / that per second, with no idle moment):")
        for label in ("h2c  gRPC Echo direct", "h2c  gRPC Echo via nginx", "h2c  gRPC Echo via Portico",
                      "h2c  POST /v1/echo"):
            rs = runs[label]
            tot, rps = med(r[8] for r in rs), med(r[0] for r in rs)
            cap = cores * 1e6 / tot
            print(f"  {label:<26} {tot:5.1f} us/req -> at most {cap:6.0f} req/s = "
                  f"{cap / direct_rps:.2f}x direct; reached {rps / direct_rps:.2f}x "
                  f"({rps / cap:.0%} of its ceiling)")
        best = max((lbl for lbl in runs if "POST" in lbl), key=lambda lbl: med(r[0] for r in runs[lbl]))
        bcpu, brps = med(r[3] for r in runs[best]), med(r[0] for r in runs[best])
        print(f"\nvs grpc-gateway (issue figures: {GRPC_GATEWAY_CPU_US:.0f} us CPU, {GRPC_GATEWAY_RPS:.0f} req/s "
              f"per transcoded POST): CPU {GRPC_GATEWAY_CPU_US / bcpu:.1f}x less, "
              f"throughput {brps / GRPC_GATEWAY_RPS:.1f}x")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
