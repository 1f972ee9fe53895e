#!/usr/bin/python3
"""
lb_bench.py -- the cost of each load-balancing policy (cluster `lb:`) against
plain round robin, in one run, on one Portico process.

One nginx upstream process listens on three ports (13-byte answers, never the
bottleneck); one Portico (-w 1) has one cluster per policy over those three
endpoints and a route prefix for each: round_robin, round_robin with weights
1/2/3 (smooth weighted), least_request, random, ring_hash (hash_key
"header:x-user"). wrk (HTTP/1.1 keep-alive, 32 in flight) loads each route in
turn, interleaved over several rounds so that machine noise falls on all
alike; for each policy: the median req/s and CPU microseconds per request of
the Portico process (utime+stime from /proc/PID/stat), and the difference in
CPU us/req to round robin (the aim: <= 0.2 us more).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import cpu_seconds, free_port, nginx_conf, parse_wrk, wait_port  # noqa: E402
import benchlib  # noqa: E402  (bench/benchlib.py: what every bench script shares)

POLICIES = [  # (name, route prefix, cluster keys, endpoint weights)
    ("round_robin", "rr", "", None),
    ("rr weighted", "rrw", "", (1, 2, 3)),
    ("least_request", "lr", "    lb: least_request\n", None),
    ("random", "rnd", "    lb: random\n", None),
    ("ring_hash", "rh", '    lb: ring_hash\n    hash_key: "header:x-user"\n', None),
]


def pick_costs(build):
    """bench/lb_pick.c: the policy's own cost per call (pick + answer + end), best of 7 x 1M."""
    if subprocess.run(["cmake", "--build", build, "--target", "bench_lb_pick"],
                      capture_output=True).returncode != 0:
        print("(bench_lb_pick did not build: no per-pick figures)")
        return
    out = subprocess.run([os.path.join(build, "bin", "bench_lb_pick")], capture_output=True,
                         text=True).stdout
    ns = {line.split()[1]: float(line.split()[2]) for line in out.splitlines()
          if line.startswith("RESULT")}
    print(f"\nThe policy alone (bench_lb_pick: pick + answer report + call end, 3 endpoints, one thread)\n")
    print(f"{'lb':<14} {'ns/call':>8} {'us more than round_robin':>25}")
    for name, v in ns.items():
        print(f"{name:<14} {v:>8.1f} {(v - ns['round_robin']) / 1000:>+25.3f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_SECONDS", "4")))
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")))
    ap.add_argument("--conns", type=int, default=32)
    args = ap.parse_args()
    portico = os.path.join(args.build, "bin", "portico")
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None and not os.path.exists("/usr/sbin/" + tool):
            sys.exit(f"bench: {tool} is missing (scripts/install-deps.sh installs it)")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    d = tempfile.mkdtemp(prefix="portico-lbbench-")
    procs = []
    try:
        ups = [free_port() for _ in range(3)]
        servers = "\n".join(f'  server {{ listen 127.0.0.1:{p}; location / {{ return 200 "hello world!\\n"; }} }}'
                            for p in ups)
        procs.append(subprocess.Popen([nginx, "-c", nginx_conf(d, "upstream", servers)]))
        pt_port = free_port()
        clusters, routes = [], []
        for name, prefix, keys, weights in POLICIES:
            eps = ", ".join(f'{{ address: "127.0.0.1:{p}", weight: {w} }}' if weights else f'"127.0.0.1:{p}"'
                            for p, w in zip(ups, weights or (1, 1, 1)))
            clusters.append(f"  - name: {prefix}\n    endpoints: [ {eps} ]\n{keys}")
            routes.append(f"  - match: {{ prefix: /{prefix}/ }}\n    proxy: {{ cluster: {prefix} }}\n")
        cfg = os.path.join(d, "portico.yaml")
        with open(cfg, "w") as f:
            f.write(f"listeners:\n  - address: 127.0.0.1:{pt_port}\n"
                    "limits: { max_requests_per_conn: 100000000 }\n"
                    "clusters:\n" + "".join(clusters) + "routes:\n" + "".join(routes))
        pt = subprocess.Popen([portico, "-c", cfg, "-w", "1"], stderr=open(os.path.join(d, "pt.err"), "w"))
        procs.append(pt)
        for p in ups + [pt_port]:
            wait_port(p)
        time.sleep(0.3)
        results = {name: [] for name, *_ in POLICIES}
        for rnd in range(args.rounds):
            order = POLICIES if rnd % 2 == 0 else list(reversed(POLICIES))
            for name, prefix, _, _ in order:
                url = f"http://127.0.0.1:{pt_port}/{prefix}/x"
                hdr = ["-H", "X-User: alice"]
                subprocess.run(["wrk", "-t1", f"-c{args.conns}", "-d1s"] + hdr + [url], capture_output=True)
                cpu0 = cpu_seconds([pt.pid])
                out = subprocess.run(["wrk", "-t1", f"-c{args.conns}", f"-d{args.duration}s", "--latency"]
                                     + hdr + [url], capture_output=True, text=True).stdout
                cpu = cpu_seconds([pt.pid]) - cpu0
                rps, reqs, p50, p99, errs, _ = parse_wrk(out)
                if errs:
                    print(f"warning: {name}: {errs} non-2xx answers", file=sys.stderr)
                results[name].append((rps, cpu * 1e6 / reqs))
        print(f"\nLB policy benchmark: Portico -w 1, 3 endpoints (one nginx), wrk {args.conns} in flight, "
              f"{args.duration}s x {args.rounds} interleaved rounds, medians\n")
        print(f"{'lb':<14} {'req/s':>10} {'CPU us/req':>11} {'vs round_robin':>15}")
        base = statistics.median(c for _, c in results["round_robin"])
        for name, *_ in POLICIES:
            rps = statistics.median(r for r, _ in results[name])
            cpu = statistics.median(c for _, c in results[name])
            print(f"{name:<14} {rps:>10.0f} {cpu:>11.2f} {cpu - base:>+14.2f}")
        print("(the aim: <= +0.2 us per request; on a loaded machine the end-to-end figures move by\n"
              " more than that between runs -- the pick on its own, below, is the precise measure)")
        pick_costs(args.build)
    finally:
        benchlib.stop_all(procs, d)


if __name__ == "__main__":
    main()
