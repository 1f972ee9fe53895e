#!/usr/bin/python3
"""
aggregate_bench.py -- one aggregate of 3 independent calls (2 REST + 1 gRPC)
against the same 3 calls made by a client one after the other, all through
one Portico (-w 1).

Back ends: nginx answering a fixed JSON object on /a and /b (never the
bottleneck), bookstore-server for bookstore.v1.Bookstore/Echo. Portico routes:

  /agg             aggregate: a (REST /a), b (REST /b), g (gRPC Echo {message: "hello"})
  /a, /b           proxy to nginx                 (the single REST calls)
  /v1/echo/hello   grpc route, REST -> gRPC Echo   (the single gRPC call, JSON both ways)

Load: wrk over HTTP/1.1 keep-alive. Throughput runs (32 connections) give
requests/s and Portico CPU microseconds per request (utime + stime of the
process from /proc over the run); latency runs (1 connection, one request at
a time) give p50/p99. The targets are measured round by round, interleaved
(the machine is shared and noisy), and the median of the rounds is printed.
"Sequential" is the client's view of the 3 single calls one after the other:
CPU the sum of their CPU, latency the sum of their latencies, requests/s
the sequences per second one connection set could do (1 / sum(1 / rps)).

usage: aggregate_bench.py [--build DIR] [--duration S] [--rounds R]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import cpu_seconds, free_port, nginx_conf, parse_wrk, wait_port  # noqa: E402
from grpc_bench import start_bookstore  # noqa: E402

JSON_A = '{\\"id\\":42,\\"name\\":\\"ann\\",\\"city\\":\\"Paris\\"}'
JSON_B = '{\\"orders\\":[{\\"id\\":1},{\\"id\\":2}],\\"total\\":2}'

TARGETS = [("agg", "/agg"), ("a", "/a"), ("b", "/b"), ("g", "/v1/echo/hello")]


def run_wrk(port, path, conns, duration, pid):
    url = f"http://127.0.0.1:{port}{path}"
    c0 = cpu_seconds([pid])
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency", url],
                         capture_output=True, text=True, timeout=duration + 30).stdout
    cpu = cpu_seconds([pid]) - c0
    rps, n, p50, p99, errs, sock = parse_wrk(out)
    if errs or sock:
        raise RuntimeError(f"{path}: {errs} non-2xx, socket errors {sock and sock.group(1)}")
    return {"rps": rps, "n": n, "p50": p50, "p99": p99, "cpu_us": cpu * 1e6 / max(n, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None and not os.path.exists("/usr/sbin/" + tool):
            print(f"aggregate_bench: {tool} not found, skipped")
            return
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    portico = os.path.join(args.build, "bin", "portico")
    descriptors = os.path.abspath(os.path.join(args.build, "examples", "bookstore",
                                               "bookstore.pb"))
    d = tempfile.mkdtemp(prefix="portico-agg-bench-")
    procs = []
    try:
        up = free_port()
        procs.append(subprocess.Popen([nginx, "-c", nginx_conf(d, "upstream", f"""
  server {{ listen 127.0.0.1:{up};
    default_type application/json;
    location = /a {{ return 200 "{JSON_A}"; }}
    location = /b {{ return 200 "{JSON_B}"; }} }}""")]))
        bs, bs_port = start_bookstore(os.path.join(args.build, "bin", "bookstore-server"), 2)
        procs.append(bs)
        port = free_port()
        cfg = os.path.join(d, "portico.yaml")
        with open(cfg, "w") as f:
            f.write(f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
limits: {{ max_requests_per_conn: 100000000 }}
descriptors: [ {descriptors} ]
clusters:
  - {{ name: web, endpoints: [ "127.0.0.1:{up}" ] }}
  - {{ name: books, protocol: grpc, endpoints: [ "127.0.0.1:{bs_port}" ] }}
routes:
  - match: {{ path: /agg }}
    aggregate:
      calls:
        - {{ name: a, http: {{ cluster: web, path: /a }} }}
        - {{ name: b, http: {{ cluster: web, path: /b }} }}
        - {{ name: g, grpc: {{ cluster: books, method: bookstore.v1.Bookstore/Echo,
                              body: {{ message: hello }} }} }}
  - match: {{ prefix: /v1/ }}
    grpc: {{ cluster: books }}
  - proxy: {{ cluster: web }}
""")
        wait_port(up)
        pt = subprocess.Popen([portico, "-c", cfg, "-w", "1"],
                              stderr=open(os.path.join(d, "portico.err"), "w"))
        procs.append(pt)
        wait_port(port)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/agg", timeout=5).read()
        if b'"g":{"message":"hello"}' not in body:
            raise RuntimeError(f"unexpected aggregate answer {body!r}")
        for _, path in TARGETS:  # warm up pools and connections
            run_wrk(port, path, 8, 1, pt.pid)
        thr = {k: [] for k, _ in TARGETS}
        lat = {k: [] for k, _ in TARGETS}
        for _ in range(args.rounds):
            for name, path in TARGETS:
                thr[name].append(run_wrk(port, path, 32, args.duration, pt.pid))
            for name, path in TARGETS:
                lat[name].append(run_wrk(port, path, 1, max(2, args.duration // 2), pt.pid))

        def med(v, key):
            return statistics.median(x[key] for x in v)
        rows = {}
        for name, _ in TARGETS:
            rows[name] = {"rps": med(thr[name], "rps"), "cpu": med(thr[name], "cpu_us"),
                          "p50": med(lat[name], "p50"), "p99": med(lat[name], "p99"),
                          "p50_32": med(thr[name], "p50"), "p99_32": med(thr[name], "p99")}
        singles = [rows[k] for k in ("a", "b", "g")]
        seq = {"rps": 1 / sum(1 / r["rps"] for r in singles),
               "cpu": sum(r["cpu"] for r in singles),
               "p50": sum(r["p50"] for r in singles), "p99": sum(r["p99"] for r in singles),
               "p50_32": sum(r["p50_32"] for r in singles),
               "p99_32": sum(r["p99_32"] for r in singles)}
        print(f"\n== aggregate of 3 calls (2 REST + 1 gRPC) vs the 3 calls one after the other "
              f"(Portico -w 1, wrk HTTP/1.1, {args.rounds} interleaved rounds, medians; "
              f"shared machine) ==")
        print(f"{'':34} {'req/s (c32)':>12} {'p50 c1':>9} {'p99 c1':>9} {'p50 c32':>9} "
              f"{'p99 c32':>9} {'CPU us/req':>11}")
        labels = [("aggregate /agg (3 calls)", rows["agg"]),
                  ("single REST /a", rows["a"]), ("single REST /b", rows["b"]),
                  ("single gRPC (transcoded)", rows["g"]),
                  ("3 singles one after the other", seq)]
        for label, r in labels:
            print(f"{label:34} {r['rps']:12.0f} {r['p50']:8.3f}ms {r['p99']:8.3f}ms "
                  f"{r['p50_32']:8.3f}ms {r['p99_32']:8.3f}ms {r['cpu']:11.1f}")
        slowest = max(r["p50"] for r in singles)
        print(f"CPU per aggregate - sum of the 3 singles: {rows['agg']['cpu'] - seq['cpu']:+.1f} us "
              f"(aim: <= +10 us)")
        print(f"p50 (c1) aggregate - slowest single call: {rows['agg']['p50'] - slowest:+.3f} ms "
              f"(aim: within 1 ms)")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
