#!/usr/bin/python3
"""
ratelimit_bench.py -- what rate_limit and quota cost (plugins/rate_limit.c),
side by side with the plain proxy, in one run:

  plain        wrk HTTP/1.1 keep-alive -> proxy -> nginx upstream (13 bytes)
  rl-local     the same route with rate_limit (process-local lock-free table)
  quota-local  the same route with a monthly quota (local table)
  rl-redis     the same route with rate_limit in Redis (one EVALSHA per request,
               pipelined per loop iteration on the worker's connection)

Limits are set far above what the run can reach (every answer is a 200, each
request is one decision). Portico -w 1, nginx upstream with one worker,
redis-server started here (no persistence). Per run: Portico's CPU (utime +
stime from /proc/PID/stat) per request, requests/s, and for rl-redis the
redis-server's CPU per request. Scenarios are interleaved round by round
(--rounds, medians printed), so a noisy neighbour hits them alike; the
"added" column is the median minus plain's median. The machine may be
shared: trust CPU per request more than requests/s.

--callgrind: the noise-free view: Portico under valgrind's callgrind, a fixed
number of requests per scenario (h2load --h1 -c32), counters zeroed after a
warm-up and dumped after the run; prints user-space instructions per request
and what each filter adds to the plain proxy (the kernel's share is not
counted; it does not change with a filter that makes no system call -- the
local ones; rl-redis adds its socket I/O there).

usage: ratelimit_bench.py [--build DIR] [--rounds R] [--seconds S] [--conns C]
                          [--callgrind [--requests N]]
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

SCENARIOS = ("plain", "rl-local", "quota-local", "rl-redis")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", "4")))
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--requests", type=int, default=5000)
    args = ap.parse_args()
    portico = os.path.join(args.build, "bin", "portico")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    redis = shutil.which("redis-server") or "/usr/bin/redis-server"
    for tool in (nginx, redis, shutil.which("wrk") or "/usr/bin/wrk", portico):
        if not os.access(tool, os.X_OK):
            sys.exit(f"ratelimit_bench: {tool} is missing")
    d = tempfile.mkdtemp(prefix="portico-rl-bench-")
    procs = []
    try:
        up_port, pt_port, r_port = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen([nginx, "-c", nginx_conf(d, "upstream", f"""
  server {{ listen 127.0.0.1:{up_port}; location / {{ return 200 "hello world!\\n"; }} }}""")]))
        rs = subprocess.Popen([redis, "--port", str(r_port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", d],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(rs)
        big = "requests: 100000000, per: 1000s"  # never reached: every request is allowed
        cfg = os.path.join(d, "portico.yaml")
        with open(cfg, "w") as f:
            f.write(f"""
listeners: [ {{ address: "127.0.0.1:{pt_port}" }} ]
limits: {{ max_requests_per_conn: 100000000 }}
clusters: [ {{ name: web, endpoints: [ "127.0.0.1:{up_port}" ] }} ]
routes:
  - match: {{ prefix: /plain }}
    proxy: {{ cluster: web }}
  - match: {{ prefix: /rl-local }}
    proxy: {{ cluster: web }}
    filters: [ rate_limit: {{ {big} }} ]
  - match: {{ prefix: /quota-local }}
    proxy: {{ cluster: web }}
    filters: [ quota: {{ requests: 1000000000000, per: month, key: client_ip }} ]
  - match: {{ prefix: /rl-redis }}
    proxy: {{ cluster: web }}
    filters: [ rate_limit: {{ {big}, redis: {{ address: "127.0.0.1:{r_port}", timeout: 1s }} }} ]
""")
        cg_out = os.path.join(d, "cg.out")
        vg = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + cg_out] \
            if args.callgrind else []
        pt = subprocess.Popen(vg + [portico, "-c", cfg, "-w", "1"],
                              stderr=open(os.path.join(d, "pt.err"), "w"))
        procs.append(pt)
        for p in (up_port, pt_port, r_port):
            wait_port(p, 60)
        if args.callgrind:
            return callgrind(args, d, pt, pt_port, cg_out)
        res = {s: [] for s in SCENARIOS}
        for s in SCENARIOS:  # warm-up: connections, the script cache
            subprocess.run(["wrk", "-t1", f"-c{args.conns}", "-d1s",
                            f"http://127.0.0.1:{pt_port}/{s}"], capture_output=True)
        for rnd in range(args.rounds):
            order = SCENARIOS if rnd % 2 == 0 else tuple(reversed(SCENARIOS))
            for s in order:
                c0, r0 = cpu_seconds([pt.pid]), cpu_seconds([rs.pid])
                out = subprocess.run(["wrk", "-t1", f"-c{args.conns}", f"-d{args.seconds}s",
                                      "--latency", f"http://127.0.0.1:{pt_port}/{s}"],
                                     capture_output=True, text=True).stdout
                c1, r1 = cpu_seconds([pt.pid]), cpu_seconds([rs.pid])
                rps, reqs, p50, p99, errs, _ = parse_wrk(out)
                if errs:
                    sys.exit(f"ratelimit_bench: {s}: {errs} non-2xx answers")
                res[s].append((rps, (c1 - c0) * 1e6 / reqs, (r1 - r0) * 1e6 / reqs, p50, p99))
        med = {s: [statistics.median(v[i] for v in res[s]) for i in range(5)] for s in SCENARIOS}
        print(f"\nrate_limit / quota cost: wrk -t1 -c{args.conns}, {args.seconds}s x "
              f"{args.rounds} rounds interleaved, Portico -w 1, nginx upstream (medians)")
        print(f"{'scenario':<12} {'req/s':>9} {'vs plain':>8} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'CPU us/req':>10} {'added us':>8} {'redis us/req':>12}")
        base = med["plain"]
        for s in SCENARIOS:
            m = med[s]
            print(f"{s:<12} {m[0]:>9.0f} {m[0] / base[0]:>8.2f} {m[3]:>7.2f} {m[4]:>7.2f} "
                  f"{m[1]:>10.2f} {m[1] - base[1]:>+8.2f} "
                  f"{(f'{m[2]:.2f}' if s == 'rl-redis' else '-'):>12}")
        print("runs (req/s, CPU us/req): " + "; ".join(
            f"{s}: " + ", ".join(f"{v[0]:.0f}/{v[1]:.2f}" for v in res[s]) for s in SCENARIOS))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(d, ignore_errors=True)


def callgrind(args, d, pt, port, cg_out):
    res = {s: [] for s in SCENARIOS}
    for rnd in range(args.rounds):
        for s in SCENARIOS:
            cmd = ["h2load", "--h1", "-c32", f"http://127.0.0.1:{port}/{s}"]
            subprocess.run(cmd + ["-n", "500"], capture_output=True)  # warm-up
            subprocess.run(["callgrind_control", "-z", str(pt.pid)], capture_output=True, check=True)
            out = subprocess.run(cmd + ["-n", str(args.requests)], capture_output=True,
                                 text=True).stdout
            before = set(glob.glob(cg_out + ".*"))
            subprocess.run(["callgrind_control", "-d", str(pt.pid)], capture_output=True, check=True)
            new = set(glob.glob(cg_out + ".*")) - before
            _, ok, errs = parse_h2load(out)
            if errs or ok != args.requests or len(new) != 1:
                sys.exit(f"ratelimit_bench: {s}: {ok}/{args.requests} answered, {errs} failed")
            with open(new.pop()) as f:
                total = [int(x.split()[1]) for x in f if x.startswith("totals:")][0]
            res[s].append(total / args.requests)
    print(f"\nrate_limit / quota under callgrind: user-space instructions per request, "
          f"{args.requests} requests x {args.rounds} runs (h2load --h1 -c32, medians)")
    base = statistics.median(res["plain"])
    print(f"{'scenario':<12} {'instr/req':>10} {'added':>8}")
    for s in SCENARIOS:
        m = statistics.median(res[s])
        print(f"{s:<12} {m:>10.0f} {m - base:>+8.0f}")


if __name__ == "__main__":
    main()
