#!/usr/bin/env python3
"""
ws_bench.py -- WebSocket proxying: an echo upstream directly, through Portico
(`proxy: { websocket: true }`, frames checked on both legs) and through nginx
(proxy_http_version 1.1 + Upgrade/Connection headers, bytes relayed unchecked),
in one run, interleaved (rounds of direct / Portico / nginx).

Load: bench/ws_load.js, 64 sockets each sending a 128-byte binary message and
waiting for its echo (closed loop). Reported: messages/s (round trips), p50/p99
round trip, and the proxy's CPU microseconds per message (utime+stime from
/proc; a message is one frame each way). In a closed loop the client, the
upstream and the proxy share the 2 cores flat out, and a proxy's CPU per
message moves with how much each wake-up finds to do; the `@ RATE` rows give
both proxies the same fixed load (--rate messages/s, ws_load.js's paced mode)
for a CPU per message taken under equal conditions. The upstream is the npm `ws` echo
server of the integration tests (test/integration/websocket/ws_upstream.js),
so run scripts/test-env.sh first. Portico runs with -w 1, nginx with one worker.
--base BUILD adds a second Portico (another build, e.g. of the previous
commit) to the same interleaved rounds, for before/after figures.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import children, cpu_seconds, free_port, nginx_conf, wait_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def nginx_ws_conf(d, ng_port, up_port):
    """nginx's WebSocket proxying of the echo upstream (also bench/ws_callgrind.py)."""
    return nginx_conf(d, "wsproxy", f"""
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  server {{ listen 127.0.0.1:{ng_port};
           location / {{ proxy_pass http://127.0.0.1:{up_port}; proxy_http_version 1.1;
                        proxy_set_header Upgrade $http_upgrade;
                        proxy_set_header Connection $connection_upgrade;
                        proxy_read_timeout 3600s; }} }}""")


def portico_ws_conf(d, pt_port, up_port, name="portico.yaml"):
    """Portico's `websocket: true` proxy of the echo upstream; returns the file."""
    cfg = os.path.join(d, name)
    with open(cfg, "w") as f:
        f.write(f"""
listeners:
  - address: 127.0.0.1:{pt_port}
clusters:
  - name: echo
    endpoints: [ "127.0.0.1:{up_port}" ]
routes:
  - match: {{ prefix: / }}
    proxy: {{ cluster: echo, websocket: true, max_message: 1m }}
""")
    return cfg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_SECONDS", "6")))
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--base", help="a second build dir to compare (row 'portico-base')")
    ap.add_argument("--rate", type=int, default=20000,
                    help="messages/s of the fixed-load rows (0: none)")
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(ROOT, "test", "integration", "node_modules", "ws")):
        sys.exit("ws_bench: run scripts/test-env.sh first (npm ws)")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    portico = os.path.join(args.build, "bin", "portico")
    d = tempfile.mkdtemp(prefix="portico-wsbench-")
    procs = []
    try:
        up = subprocess.Popen(["node", os.path.join(ROOT, "test", "integration", "websocket",
                                                    "ws_upstream.js")],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        procs.append(up)
        up_port = json.loads(up.stdout.readline())["port"]
        ng_port, pt_port = free_port(), free_port()
        ng = subprocess.Popen([nginx, "-c", nginx_ws_conf(d, ng_port, up_port)])
        procs.append(ng)
        cfg = portico_ws_conf(d, pt_port, up_port)
        pt = subprocess.Popen([portico, "-c", cfg, "-w", "1"],
                              stderr=open(os.path.join(d, "pt.err"), "w"))
        procs.append(pt)
        ports = [ng_port, pt_port]
        if args.base:
            base_port = free_port()
            base_cfg = portico_ws_conf(d, base_port, up_port, "portico-base.yaml")
            base = subprocess.Popen([os.path.join(args.base, "bin", "portico"), "-c", base_cfg,
                                     "-w", "1"], stderr=open(os.path.join(d, "base.err"), "w"))
            procs.append(base)
            ports.append(base_port)
        for p in ports:
            wait_port(p)
        time.sleep(0.3)
        ng_pids = children(ng.pid) or [ng.pid]
        targets = [("direct", up_port, [], 0), ("portico", pt_port, [pt.pid], 0),
                   ("nginx", ng_port, ng_pids, 0)]
        if args.base:
            targets.append(("portico-base", base_port, [base.pid], 0))
        if args.rate:
            targets += [(f"{name} @ {args.rate}", port, pids, args.rate)
                        for name, port, pids, _ in targets if pids]
        res = {name: [] for name, _, _, _ in targets}
        for _ in range(args.rounds):
            for name, port, pids, rate in targets:
                cpu0 = cpu_seconds(pids)
                t0 = time.monotonic()
                out = subprocess.run(["node", os.path.join(ROOT, "bench", "ws_load.js"),
                                      f"ws://127.0.0.1:{port}/echo", str(args.conns),
                                      str(args.size), str(args.duration)] + ([str(rate)] if rate else []),
                                     capture_output=True, text=True, timeout=args.duration + 60)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                # CPU over the whole client run (warm-up and connects included), per message of
                # the whole run: the load's rate is steady, so scale by its measured share.
                whole = time.monotonic() - t0
                cpu = cpu_seconds(pids) - cpu0
                total_msgs = r["msgs"] * whole / r["secs"] if r.get("secs") else 0
                r["cpu_us"] = cpu * 1e6 / total_msgs if pids and total_msgs else None
                res[name].append(r)
        print(f"\nWebSocket echo, {args.conns} sockets x {args.size}-byte messages, "
              f"{args.duration}s x {args.rounds} rounds interleaved, medians (Portico -w 1, nginx 1 worker; "
              f"upstream and load: node ws)")
        print(f"{'target':<20} {'msgs/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/msg':>11} {'errors':>7}")
        summary = {}
        for name, _, _, _ in targets:
            rs = res[name]
            mps = statistics.median(r["msgs"] / r["secs"] for r in rs)
            p50 = statistics.median(r["p50_ms"] for r in rs)
            p99 = statistics.median(r["p99_ms"] for r in rs)
            cpus = [r["cpu_us"] for r in rs if r["cpu_us"] is not None]
            cpu = statistics.median(cpus) if cpus else None
            errs = sum(r.get("errors", 0) for r in rs)
            summary[name] = (mps, cpu)
            print(f"{name:<20} {mps:>10.0f} {p50:>8.2f} {p99:>8.2f} "
                  f"{(f'{cpu:.1f}' if cpu is not None else '-'):>11} {errs:>7}")
        pm, pc = summary["portico"]
        nm, nc = summary["nginx"]
        print(f"portico/nginx: throughput {pm / nm:.2f}x, CPU per message {pc / nc:.2f}x "
              f"(a message = one frame each way; the machine is shared)")

        def per_round(key, suffix=""):
            """portico/nginx inside each round (same minute): median and range."""
            v = [a[key] / b[key] for a, b in zip(res["portico" + suffix], res["nginx" + suffix])
                 if a[key] and b[key]]
            return f"{statistics.median(v):.2f}x (rounds {min(v):.2f}-{max(v):.2f})" if v else "-"
        for rs in res.values():
            for r in rs:
                r["mps"] = r["msgs"] / r["secs"]
        print(f"per round: throughput {per_round('mps')}, CPU per message {per_round('cpu_us')}")
        if args.rate:
            at = f" @ {args.rate}"
            print(f"at the same fixed load ({summary['portico' + at][0]:.0f} and "
                  f"{summary['nginx' + at][0]:.0f} msgs/s): CPU per message portico/nginx "
                  f"{summary['portico' + at][1] / summary['nginx' + at][1]:.2f}x, per round "
                  f"{per_round('cpu_us', at)}")
        if args.base:
            bm, bc = summary["portico-base"]
            print(f"portico/portico-base: throughput {pm / bm:.2f}x, CPU per message {pc / bc:.2f}x")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
