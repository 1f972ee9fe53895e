#!/usr/bin/python3
"""
transcode_cost.py -- Portico's CPU per call for the same unary call
(bookstore.v1.Bookstore/Echo, EchoRequest{message: "hello"}) made two ways:
native gRPC passed through, and REST/JSON transcoded (POST /v1/echo), both
over h2c with h2load, 32 calls in flight, Portico -w 1, one bookstore-server.

A fixed number of calls per run, the two kinds interleaved round by round
(the machine is shared and noisy: a quiet spell favours neither), CPU from
/proc/PID/stat (utime + stime) of the Portico process over each run, and,
where perf may count them, its user+kernel instructions. Prints the median
per call of each kind and their ratio (issue 7 aims at <= 1.3).
`--baseline BIN` measures a second portico binary the same way, interleaved
too (before/after figures from one run). Loopback only; every process is
stopped at the end.

usage: transcode_cost.py [--build DIR] [--baseline PORTICO] [--calls N] [--rounds R]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import cpu_seconds, free_port, parse_h2load, wait_port  # noqa: E402
from grpc_bench import BODY, ECHO, check_call, start_bookstore  # noqa: E402

JSON_BODY = b'{"message":"hello"}'


def perf_ok():
    if shutil.which("perf") is None:
        return False
    p = subprocess.run(["perf", "stat", "-x,", "-e", "instructions", "true"],
                       capture_output=True, text=True)
    return p.returncode == 0 and "not supported" not in p.stderr and "<not" not in p.stderr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--baseline", help="another portico binary to measure the same way")
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    bookstore = os.path.join(args.build, "bin", "bookstore-server")
    descriptors = os.path.abspath(os.path.join(args.build, "examples", "bookstore", "bookstore.pb"))
    binaries = [("this", os.path.join(args.build, "bin", "portico"))]
    if args.baseline:
        binaries.append(("baseline", args.baseline))
    use_perf = perf_ok()
    d = tempfile.mkdtemp(prefix="portico-transcode-cost-")
    procs = []
    try:
        bs, bs_port = start_bookstore(bookstore, 2)
        procs.append(bs)
        gws = {}
        for name, binary in binaries:
            port = free_port()
            cfg = os.path.join(d, f"{name}.yaml")
            with open(cfg, "w") as f:
                f.write(f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
limits: {{ max_requests_per_conn: 100000000 }}
descriptors: [ {descriptors} ]
clusters:
  - {{ name: books, protocol: grpc, endpoints: [ "http://127.0.0.1:{bs_port}" ] }}
routes:
  - grpc: {{ cluster: books }}
""")
            p = subprocess.Popen([binary, "-c", cfg, "-w", "1"],
                                 stderr=open(os.path.join(d, f"{name}.err"), "w"))
            procs.append(p)
            wait_port(port)
            check_call(port)
            gws[name] = (p, port)
        gbody = os.path.join(d, "echo.grpc")
        with open(gbody, "wb") as f:
            f.write(BODY)
        jbody = os.path.join(d, "echo.json")
        with open(jbody, "wb") as f:
            f.write(JSON_BODY)

        def cmd(port, kind, n):
            base = ["h2load", "-c4", "-m8", "-n", str(n)]
            if kind == "native":
                return base + ["-d", gbody, "-H", "content-type: application/grpc",
                               "-H", "te: trailers", f"http://127.0.0.1:{port}{ECHO}"]
            return base + ["-d", jbody, "-H", "content-type: application/json",
                           f"http://127.0.0.1:{port}/v1/echo"]

        def run(name, kind, n):
            p, port = gws[name]
            perf = None
            if use_perf:
                perf = subprocess.Popen(["perf", "stat", "-x,", "-e", "instructions", "-p",
                                         str(p.pid)], stderr=subprocess.PIPE, text=True)
            c0 = cpu_seconds([p.pid])
            out = subprocess.run(cmd(port, kind, n), capture_output=True, text=True).stdout
            cpu = cpu_seconds([p.pid]) - c0
            ins = None
            if perf is not None:
                perf.send_signal(2)
                err = perf.communicate(timeout=10)[1]
                for line in err.splitlines():
                    f = line.split(",")
                    if len(f) > 2 and "instructions" in f[2] and f[0].isdigit():
                        ins = int(f[0])
            rps, ok, failed = parse_h2load(out)
            if ok != n or failed:
                raise RuntimeError(f"{name} {kind}: {ok}/{n} succeeded, {failed} failed")
            return cpu * 1e6 / n, (ins / n if ins else None), rps

        for name in gws:  # warm-up: connections, pools, caches
            for kind in ("native", "rest"):
                run(name, kind, 2000)
        res = {(name, kind): [] for name in gws for kind in ("native", "rest")}
        for _ in range(args.rounds):
            for name in gws:
                for kind in ("native", "rest"):
                    res[(name, kind)].append(run(name, kind, args.calls))
        print(f"{args.calls} calls per run, {args.rounds} rounds, h2c, 32 in flight, Portico -w 1")
        print(f"{'binary':9} {'call':7} {'us CPU/call':>12} {'instr/call':>11} {'calls/s':>9}")
        for name in gws:
            med = {}
            for kind in ("native", "rest"):
                rows = res[(name, kind)]
                us = statistics.median(r[0] for r in rows)
                ins = [r[1] for r in rows if r[1] is not None]
                ins_m = statistics.median(ins) if ins else None
                rps = statistics.median(r[2] for r in rows)
                med[kind] = (us, ins_m)
                print(f"{name:9} {kind:7} {us:12.1f} "
                      f"{(f'{ins_m:11.0f}' if ins_m else '          -')} {rps:9.0f}"
                      f"   (runs: {', '.join(f'{r[0]:.1f}' for r in rows)})")
            ratio = med["rest"][0] / med["native"][0]
            iratio = (med["rest"][1] / med["native"][1]) if med["rest"][1] else None
            print(f"{name:9} transcoded/passthrough: {ratio:.2f}x CPU"
                  + (f", {iratio:.2f}x instructions" if iratio else ""))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
