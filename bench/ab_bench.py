#!/usr/bin/python3
"""
ab_bench.py -- before/after figures for a change: two portico binaries (this
build and --baseline, e.g. built from the previous commit in a second build
dir) measured the same way, interleaved run by run, on every scenario of
make bench:

  h1-proxy   wrk HTTP/1.1 keep-alive -> proxy -> nginx upstream (13 bytes)
  h2c-proxy  h2load h2c -> proxy -> the same upstream
  grpc       h2load native gRPC Echo -> passthrough -> bookstore-server
  rest-h2c   h2load JSON POST /v1/echo -> transcoded -> bookstore-server
  rest-h1    wrk JSON POST /v1/echo over HTTP/1.1 -> transcoded

32 requests in flight everywhere (wrk -c32, h2load -c4 -m8), Portico -w 1,
one nginx worker as the upstream, bookstore-server --threads 1. Per run: the
Portico process's CPU (utime + stime from /proc/PID/stat) per request and
requests/s. The order of the two binaries alternates from round to round, so
neither always runs first; prints the medians of `--rounds` rounds and the
after/before ratios. The machine may be shared: trust CPU per request more
than requests/s, and a ratio only when the runs agree (they are printed).

--callgrind: the noise-free view of user-space cost. Each Portico runs under
valgrind's callgrind; every run is a fixed number of requests (h2load, with
--h1 for the HTTP/1.1 scenarios), the counters zeroed after a warm-up and
dumped after the run; prints instructions executed per request (user space
only: the kernel's share, about two thirds of the CPU here, is not counted,
and batching under valgrind is not batching at full speed).
Loopback only; every process is stopped and the temp dir removed at the end.

usage: ab_bench.py --baseline OLD_PORTICO [--build DIR] [--rounds R] [--seconds S]
                   [--only SCENARIO,...] [--callgrind [--requests N]]
"""
import glob
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import cpu_seconds, free_port, nginx_conf, parse_h2load, parse_wrk, wait_port  # noqa: E402
from grpc_bench import BODY, ECHO, start_bookstore  # noqa: E402
import benchlib  # noqa: E402  (bench/benchlib.py: what every bench script shares)

JSON_BODY = b'{"message":"hello"}'
SCENARIOS = ("h1-proxy", "h2c-proxy", "grpc", "rest-h2c", "rest-h1")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--baseline", required=True, help="the portico binary before the change")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--only", default=",".join(SCENARIOS))
    ap.add_argument("--callgrind", action="store_true", help="instructions per request under callgrind")
    ap.add_argument("--requests", type=int, default=4000, help="requests per run with --callgrind")
    args = ap.parse_args()
    only = [s for s in args.only.split(",") if s]
    for s in only:
        if s not in SCENARIOS:
            sys.exit(f"ab_bench: unknown scenario {s} (known: {', '.join(SCENARIOS)})")
    binaries = {"after": os.path.join(args.build, "bin", "portico"), "before": args.baseline}
    for b in binaries.values():
        if not os.access(b, os.X_OK):
            sys.exit(f"ab_bench: {b} is not an executable")
    bookstore = os.path.join(args.build, "bin", "bookstore-server")
    descriptors = os.path.abspath(os.path.join(args.build, "examples", "bookstore", "bookstore.pb"))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    d = tempfile.mkdtemp(prefix="portico-ab-bench-")
    procs = []
    try:
        up_port = free_port()
        procs.append(subprocess.Popen([nginx, "-c", nginx_conf(d, "upstream", f"""
  server {{ listen 127.0.0.1:{up_port}; location / {{ return 200 "hello world!\\n"; }} }}""")]))
        bs, bs_port = start_bookstore(bookstore, 1)
        procs.append(bs)
        wait_port(up_port)
        # one proxy and one gRPC gateway per binary: targets[(binary, kind)] = (process, port)
        targets = {}
        for name, binary in binaries.items():
            for kind, body in (("proxy", f"""
clusters: [ {{ name: web, endpoints: [ "127.0.0.1:{up_port}" ] }} ]
routes: [ {{ match: {{ prefix: / }}, proxy: {{ cluster: web }} }} ]
"""), ("grpc", f"""
descriptors: [ {descriptors} ]
clusters: [ {{ name: books, protocol: grpc, endpoints: [ "http://127.0.0.1:{bs_port}" ] }} ]
routes: [ {{ grpc: {{ cluster: books }} }} ]
""")):
                port = free_port()
                cfg = os.path.join(d, f"{name}-{kind}.yaml")
                with open(cfg, "w") as f:
                    f.write(f'listeners: [ {{ address: "127.0.0.1:{port}" }} ]\n'
                            f"limits: {{ max_requests_per_conn: 100000000 }}\n{body}")
                vg = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" +
                      os.path.join(d, f"cg-{name}-{kind}.out")] if args.callgrind else []
                p = subprocess.Popen(vg + [binary, "-c", cfg, "-w", "1"],
                                     stderr=open(os.path.join(d, f"{name}-{kind}.err"), "w"))
                procs.append(p)
                targets[(name, kind)] = (p, port)
        for _, port in targets.values():
            wait_port(port, 60 if args.callgrind else 10)
        gbody, jbody, lua = (os.path.join(d, x) for x in ("echo.grpc", "echo.json", "post.lua"))
        with open(gbody, "wb") as f:
            f.write(BODY)
        with open(jbody, "wb") as f:
            f.write(JSON_BODY)
        with open(lua, "w") as f:
            f.write('wrk.method = "POST"\nwrk.body = \'%s\'\n'
                    'wrk.headers["Content-Type"] = "application/json"\n' % JSON_BODY.decode())

        def command(scenario, port, seconds):
            base = f"http://127.0.0.1:{port}"
            wrk = ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency"]
            h2 = ["h2load", "-c4", "-m8", f"-D{seconds}"]
            if scenario == "h1-proxy":
                return "wrk", wrk + [base + "/"]
            if scenario == "h2c-proxy":
                return "h2load", h2 + [base + "/"]
            if scenario == "grpc":
                return "h2load", h2 + ["-d", gbody, "-H", "content-type: application/grpc",
                                       "-H", "te: trailers", base + ECHO]
            if scenario == "rest-h2c":
                return "h2load", h2 + ["-d", jbody, "-H", "content-type: application/json",
                                       base + "/v1/echo"]
            return "wrk", wrk + ["-s", lua, base + "/v1/echo"]

        def instructions(name, scenario, n):
            kind = "proxy" if scenario.endswith("proxy") else "grpc"
            p, port = targets[(name, kind)]
            tool, cmd = command(scenario, port, 1)
            if tool == "wrk":  # the same request with a fixed count: h2load over HTTP/1.1, 32 connections
                cmd = ["h2load", "--h1", "-c32"] + (["-d", jbody, "-H", "content-type: application/json"]
                                                   if scenario == "rest-h1" else []) + [cmd[-1]]
            cmd = [x for x in cmd if not x.startswith("-D")]
            subprocess.run(cmd + ["-n", "500"], capture_output=True)  # warm-up
            subprocess.run(["callgrind_control", "-z", str(p.pid)], capture_output=True, check=True)
            out = subprocess.run(cmd + ["-n", str(n)], capture_output=True, text=True).stdout
            before = set(glob.glob(os.path.join(d, f"cg-{name}-{kind}.out.*")))
            subprocess.run(["callgrind_control", "-d", str(p.pid)], capture_output=True, check=True)
            new = set(glob.glob(os.path.join(d, f"cg-{name}-{kind}.out.*"))) - before
            _, ok, errs = parse_h2load(out)
            if errs or ok != n or len(new) != 1:
                raise RuntimeError(f"{name} {scenario}: {ok}/{n} answered, {errs} failed")
            with open(new.pop()) as f:
                total = [int(x.split()[1]) for x in f if x.startswith("totals:")][0]
            return total / n

        if args.callgrind:
            res = {(nm, s): [instructions(nm, s, args.requests) for _ in range(args.rounds)]
                   for s in only for nm in binaries}
            print(f"\nA/B under callgrind: user-space instructions per request, {args.requests} "
                  f"requests per run, {args.rounds} runs (before = {binaries['before']})\n")
            print(f"{'scenario':10} {'before':>9} {'after':>9} {'ratio':>6}")
            for s in only:
                b, a = statistics.median(res[("before", s)]), statistics.median(res[("after", s)])
                print(f"{s:10} {b:9.0f} {a:9.0f} {a / b:6.3f}")
            return

        def run(name, scenario, seconds):
            p, port = targets[(name, "proxy" if scenario.endswith("proxy") else "grpc")]
            tool, cmd = command(scenario, port, seconds)
            c0 = cpu_seconds([p.pid])
            out = subprocess.run(cmd, capture_output=True, text=True).stdout
            cpu = cpu_seconds([p.pid]) - c0
            if tool == "wrk":
                rps, n, _, _, errs, _ = parse_wrk(out)
            else:
                rps, n, errs = parse_h2load(out)
            if errs or n == 0:
                raise RuntimeError(f"{name} {scenario}: {errs} errors, {n} requests")
            return cpu * 1e6 / n, rps

        for name in binaries:  # warm-up: connections, pools, caches
            for s in only:
                run(name, s, 1)
        res = {(n, s): [] for n in binaries for s in only}
        order = list(binaries)
        for r in range(args.rounds):
            for s in only:
                for name in (order if r % 2 == 0 else order[::-1]):
                    res[(name, s)].append(run(name, s, args.seconds))
        print(f"\nA/B: {args.rounds} interleaved rounds of {args.seconds}s per scenario and binary, "
              f"32 in flight, Portico -w 1 (before = {binaries['before']})\n")
        print(f"{'scenario':10} {'CPU us/req before':>18} {'after':>7} {'ratio':>6}   "
              f"{'req/s before':>13} {'after':>8} {'ratio':>6}   runs (after CPU us/req)")
        for s in only:
            b, a = res[("before", s)], res[("after", s)]
            bc, ac = statistics.median(x[0] for x in b), statistics.median(x[0] for x in a)
            br, ar = statistics.median(x[1] for x in b), statistics.median(x[1] for x in a)
            print(f"{s:10} {bc:18.1f} {ac:7.1f} {ac / bc:6.2f}   {br:13.0f} {ar:8.0f} {ar / br:6.2f}   "
                  f"{', '.join(f'{x[0]:.1f}' for x in a)} (before {', '.join(f'{x[0]:.1f}' for x in b)})")
    finally:
        benchlib.stop_all(procs, d)


if __name__ == "__main__":
    main()
