#!/usr/bin/python3
"""
trace_bench.py -- what tracing costs per request (issue 13: aim <= 1 us with export).

The upstream is an nginx answering a fixed 64-byte body (keep-alive), a second
nginx stands in for the OTLP collector (200 to every POST). Three Portico
processes (one worker each) proxy the same route: without `tracing:`, with
`tracing: { protocol: protobuf }` (the default) and with `protocol: json`;
sample 1.0, so every request makes a server span and a client span, sends a
traceparent upstream and exports both spans.

Default mode: wrk (HTTP/1.1 keep-alive) against each, interleaved in rounds so
that the shared machine's noise spreads over all three; CPU microseconds per
request of each process (utime+stime from /proc, every thread: the worker and
the exporter) and the difference to the untraced one.

--callgrind N: each configuration in turn under valgrind's callgrind
(--separate-threads), N keep-alive requests from one client, then SIGTERM;
prints instructions per request for the worker thread and the exporter thread
(told apart by the functions they ran) and their sum, each minus the untraced
run. Instructions do not care how busy the machine is.
Loopback only; every process is stopped at the end.
"""
import argparse
import glob
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import cpu_seconds, free_port, nginx_conf, parse_wrk, wait_port  # noqa: E402
import benchlib  # noqa: E402  (bench/benchlib.py: what every bench script shares)

MODES = ("off", "protobuf", "json")


def portico_conf(d, mode, port, up, col, admin, flush="200ms"):
    path = os.path.join(d, f"portico-{mode}.yaml")
    with open(path, "w") as f:
        f.write(f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
admin: {{ address: "127.0.0.1:{admin}" }}
limits: {{ max_requests_per_conn: 100000000 }}
clusters: [ {{ name: web, endpoints: [ "127.0.0.1:{up}" ] }} ]
routes:
  - name: items
    match: {{ prefix: / }}
    proxy: {{ cluster: web }}
""")
        if mode != "off":
            f.write(f"""tracing: {{ otlp_endpoint: "http://127.0.0.1:{col}/v1/traces", sample: 1.0,
           flush_interval: {flush}, protocol: {mode} }}
""")
    return path


def spans_metrics(admin):
    try:
        c = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
    except OSError:
        return {}
    return dict(re.findall(r"^portico_trace_spans_(exported|dropped)_total (\d+)$", text, re.M))


def thread_role(path):
    """'worker', 'exporter' or 'other', from the functions a callgrind thread file names."""
    with open(path, errors="replace") as f:
        text = f.read()
    if "exporter_main" in text:
        return "exporter"
    if "worker_main" in text:
        return "worker"
    return "other"


def thread_ir(path):
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    return 0


def callgrind(args, d, portico, up, col):
    n = args.callgrind
    res = {}
    for mode in args.modes:
        port, admin = free_port(), free_port()
        cfg = portico_conf(d, mode, port, up, col, admin, flush="1s")  # batches as big as under load
        out = os.path.join(d, f"cg-{mode}")
        p = subprocess.Popen(["valgrind", "--tool=callgrind", "--separate-threads=yes", "--compress-strings=no",
                              f"--callgrind-out-file={out}.%p", portico, "-c", cfg, "-w", "1"],
                             stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, f"cg-{mode}.err"), "w"))
        try:
            wait_port(port, 60)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            for _ in range(50):  # warm-up: pools, the ring, the exporter thread
                conn.request("GET", "/doc")
                conn.getresponse().read()
            time.sleep(1.0)
            subprocess.run(["callgrind_control", "--zero", str(p.pid)], capture_output=True)
            for _ in range(n):
                conn.request("GET", "/doc")
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    sys.exit(f"bench: {mode}: status {r.status}")
            conn.close()
            time.sleep(2.5)  # the exporter's flush (every second)
            got = spans_metrics(admin) if mode != "off" else {}
            subprocess.run(["callgrind_control", "--dump", str(p.pid)], capture_output=True)
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(60)
        per = {"worker": 0, "exporter": 0, "other": 0}
        files = [f for f in glob.glob(f"{out}.{p.pid}*") if re.search(r"\.\d+$", f) is None or "-" in f]
        # the dump after zeroing: files named OUT.PID.1-NN (part 1, thread NN)
        dumps = [f for f in glob.glob(f"{out}.{p.pid}.1-*")]
        for f in dumps or files:
            per[thread_role(f)] += thread_ir(f)
        res[mode] = (per, got)
    print(f"\nTracing cost under callgrind: {n} keep-alive GETs through one worker (proxy route, 64-byte "
          f"answer), sample 1.0 (server + client span per request); instructions per request\n")
    print(f"{'tracing':<9} {'worker':>8} {'+worker':>8} {'exporter':>9} {'total+':>8}   spans exported/dropped")
    base = res["off"][0]
    for mode in args.modes:
        per, got = res[mode]
        w, e = per["worker"] / n, per["exporter"] / n
        dw = w - base["worker"] / n
        print(f"{mode:<9} {w:>8.0f} {dw:>8.0f} {e:>9.0f} {dw + e:>8.0f}   "
              f"{got.get('exported', '-')}/{got.get('dropped', '-')}")


def wall(args, d, portico, up, col):
    procs, targets = [], []
    try:
        for mode in args.modes:
            port, admin = free_port(), free_port()
            cfg = portico_conf(d, mode, port, up, col, admin)
            p = subprocess.Popen([portico, "-c", cfg, "-w", "1"], stderr=open(os.path.join(d, f"{mode}.err"), "w"))
            procs.append(p)
            targets.append((mode, port, admin, p.pid))
        for _, port, admin, _ in targets:
            wait_port(port)
            wait_port(admin)
        acc = {t[0]: [0.0, 0, 0.0] for t in targets}
        for _ in range(args.rounds):
            for mode, port, _, pid in targets:
                url = f"http://127.0.0.1:{port}/doc"
                subprocess.run(["wrk", "-t1", f"-c{args.conns}", "-d1s", url], capture_output=True)
                cpu0 = cpu_seconds([pid])
                out = subprocess.run(["wrk", "-t1", f"-c{args.conns}", f"-d{args.seconds}s", "--latency", url],
                                     capture_output=True, text=True).stdout
                cpu = cpu_seconds([pid]) - cpu0
                rps, reqs, _, _, errs, _ = parse_wrk(out)
                if errs:
                    sys.exit(f"bench: {errs} errors from {mode}")
                a = acc[mode]
                a[0] += cpu
                a[1] += reqs
                a[2] += reqs / rps if rps else 0
        time.sleep(0.5)  # the exporters' last flush
        print(f"\nTracing cost: proxy route, 64-byte answer, one worker, wrk -c{args.conns}, {args.rounds} "
              f"interleaved rounds x {args.seconds}s; sample 1.0 (server + client span per request, OTLP/HTTP "
              f"export to a local nginx). Shared, noisy machine: compare rows of the same run.\n")
        print(f"{'tracing':<9} {'req/s':>9} {'CPU us/req':>11} {'+us vs off':>11}   spans exported/dropped")
        base = acc["off"][0] * 1e6 / max(acc["off"][1], 1)
        for mode, _, admin, _ in targets:
            cpu, reqs, wall_s = acc[mode]
            us = cpu * 1e6 / max(reqs, 1)
            got = spans_metrics(admin) if mode != "off" else {}
            print(f"{mode:<9} {reqs / wall_s if wall_s else 0:>9.0f} {us:>11.2f} {us - base:>11.2f}   "
                  f"{got.get('exported', '-')}/{got.get('dropped', '-')}")
    finally:
        benchlib.stop_all(procs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", "3")))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--modes", default=",".join(MODES), help="which of off,protobuf,json to run")
    ap.add_argument("--callgrind", type=int, default=0, metavar="N",
                    help="count instructions of N requests under callgrind instead")
    args = ap.parse_args()
    args.modes = [m for m in MODES if m in args.modes.split(",")]
    if "off" not in args.modes:
        args.modes.insert(0, "off")
    portico = os.path.join(args.build, "bin", "portico")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    for tool in (("valgrind", "callgrind_control") if args.callgrind else ("wrk",)):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} is missing")
    d = tempfile.mkdtemp(prefix="portico-tbench-")
    procs = []
    try:
        up, col = free_port(), free_port()
        procs.append(subprocess.Popen([nginx, "-c", nginx_conf(d, "upstream", f"""
  server {{ listen 127.0.0.1:{up}; location / {{ return 200 "{'x' * 63}\\n"; }} }}
  server {{ listen 127.0.0.1:{col}; client_body_buffer_size 4m;
           location / {{ return 200 ""; }} }}""")]))
        wait_port(up)
        wait_port(col)
        if args.callgrind:
            callgrind(args, d, portico, up, col)
        else:
            wall(args, d, portico, up, col)
    finally:
        keep = os.environ.get("TRACE_BENCH_KEEP")  # a directory: the callgrind files are moved there
        if keep:
            os.makedirs(keep, exist_ok=True)
            for f in glob.glob(os.path.join(d, "cg-*")):
                shutil.move(f, os.path.join(keep, os.path.basename(f)))
        benchlib.stop_all(procs, d)


if __name__ == "__main__":
    main()
