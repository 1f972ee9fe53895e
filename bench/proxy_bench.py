#!/usr/bin/python3
"""
proxy_bench.py -- Portico vs nginx vs the upstream directly, in one run.

The upstream is an nginx instance answering a fixed 13-byte body (so it is
never the bottleneck); the peer is a second nginx (one worker, upstream
keepalive) proxying it; Portico (one worker) proxies it too. Load: wrk over
HTTP/1.1 keep-alive and h2load over h2c, 32 requests in flight each. For each
target: requests/s, p50/p99 latency, CPU microseconds per request of the
proxy process (from /proc/PID/stat), RSS idle and after load; then ratios.
Loopback only; every process is stopped at the end.
"""
import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import benchlib  # bench/benchlib.py: what every bench script shares

CLK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.3).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} not up")


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime (after pid/comm)
        except FileNotFoundError:
            pass
    return total / CLK


def rss_kb(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def nginx_conf(d, name, body):
    path = os.path.join(d, name + ".conf")
    with open(path, "w") as f:
        f.write(f"""
worker_processes 1;
daemon off;
pid {d}/{name}.pid;
error_log {d}/{name}.err warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/{name}.body;
  proxy_temp_path {d}/{name}.proxy;
  fastcgi_temp_path {d}/{name}.fcgi;
  uwsgi_temp_path {d}/{name}.uwsgi;
  scgi_temp_path {d}/{name}.scgi;
  keepalive_requests 1000000;
  {body}
}}
""")
    return path


def parse_wrk(out):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    lat = {}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+([\d.]+)(us|ms|s)", out, re.M)
        v = float(m.group(1))
        lat[pct] = v / 1000 if m.group(2) == "us" else v if m.group(2) == "ms" else v * 1000
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return rps, reqs, lat["50"], lat["99"], (int(errs.group(1)) if errs else 0), sock


def parse_h2load(out):
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", out)
    # h2load prints per-request time stats (min/max/mean/sd); percentiles come from its log.
    return rps, int(done.group(2)), int(done.group(3))


def h2load_percentiles(logfile):
    vals = []
    with open(logfile) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                vals.append(int(parts[2]) / 1000.0)  # us -> ms
    vals.sort()
    if not vals:
        return 0.0, 0.0
    return vals[len(vals) // 2], vals[min(len(vals) - 1, int(len(vals) * 0.99))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_SECONDS", "8")))
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")),
                    help="interleaved rounds of every target; medians are printed")
    args = ap.parse_args()
    portico = os.path.join(args.build, "bin", "portico")
    for tool in ("nginx", "wrk", "h2load"):
        if shutil.which(tool) is None and not os.path.exists("/usr/sbin/" + tool):
            sys.exit(f"bench: {tool} is missing (scripts/install-deps.sh installs it)")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    d = tempfile.mkdtemp(prefix="portico-bench-")
    up_port, ng_port, pt_port = free_port(), free_port(), free_port()
    procs = []
    try:
        up1 = free_port()  # HTTP/1.1 port of the upstream (what the proxies use)
        up = subprocess.Popen([nginx, "-c", nginx_conf(d, "upstream", f"""
  server {{ listen 127.0.0.1:{up1}; location / {{ return 200 "hello world!\\n"; }} }}
  server {{ listen 127.0.0.1:{up_port} http2; location / {{ return 200 "hello world!\\n"; }} }}""")])
        procs.append(up)
        ng = subprocess.Popen([nginx, "-c", nginx_conf(d, "proxy", f"""
  upstream backend {{ server 127.0.0.1:{up1}; keepalive 64; }}
  server {{ listen 127.0.0.1:{ng_port};
           location / {{ proxy_pass http://backend; proxy_http_version 1.1;
                        proxy_set_header Connection ""; }} }}""")])
        procs.append(ng)
        ng2_port = free_port()
        ng2 = subprocess.Popen([nginx, "-c", nginx_conf(d, "proxy2", f"""
  upstream backend {{ server 127.0.0.1:{up1}; keepalive 64; }}
  server {{ listen 127.0.0.1:{ng2_port} http2;
           location / {{ proxy_pass http://backend; proxy_http_version 1.1;
                        proxy_set_header Connection ""; }} }}""")])
        procs.append(ng2)
        cfg = os.path.join(d, "portico.yaml")
        with open(cfg, "w") as f:
            f.write(f"""
listeners:
  - address: 127.0.0.1:{pt_port}
limits: {{ max_requests_per_conn: 100000000 }}   # as nginx keepalive_requests: no forced reconnects
clusters:
  - name: web
    endpoints: [ "127.0.0.1:{up1}" ]
routes:
  - match: {{ prefix: / }}
    proxy: {{ cluster: web }}
""")
        pt = subprocess.Popen([portico, "-c", cfg, "-w", "1"], stderr=open(os.path.join(d, "pt.err"), "w"))
        procs.append(pt)
        for p in (up1, up_port, ng_port, ng2_port, pt_port):
            wait_port(p)
        time.sleep(0.3)
        ng_pids = children(ng.pid) or [ng.pid]
        ng2_pids = children(ng2.pid) or [ng2.pid]
        idle = {"portico": rss_kb([pt.pid]), "nginx": rss_kb([ng.pid] + ng_pids)}

        rows = []  # (load, target, req/s, p50, p99, CPU us/req, RSS, errors), every round
        c = args.conns
        warm = set()

        def run_wrk(name, port, pids):
            url = f"http://127.0.0.1:{port}/"
            if ("wrk", name) not in warm:
                warm.add(("wrk", name))
                subprocess.run(["wrk", "-t1", f"-c{c}", "-d1s", url], capture_output=True)  # warm-up
            cpu0 = cpu_seconds(pids)
            out = subprocess.run(["wrk", "-t1", f"-c{c}", f"-d{args.duration}s", "--latency", url],
                                 capture_output=True, text=True).stdout
            cpu = cpu_seconds(pids) - cpu0
            rps, reqs, p50, p99, errs, _ = parse_wrk(out)
            rows.append(("http/1.1 wrk", name, rps, p50, p99, cpu * 1e6 / reqs if pids else None,
                         rss_kb(pids) if pids else None, errs))

        def run_h2load(name, port, pids):
            url = f"http://127.0.0.1:{port}/"
            log = os.path.join(d, f"h2load-{name}.log")
            if ("h2", name) not in warm:
                warm.add(("h2", name))
                subprocess.run(["h2load", "-c4", "-m8", "-D1", url], capture_output=True)
            cpu0 = cpu_seconds(pids)
            out = subprocess.run(["h2load", "-c4", "-m8", f"-D{args.duration}", "--log-file", log, url],
                                 capture_output=True, text=True).stdout
            cpu = cpu_seconds(pids) - cpu0
            rps, ok, failed = parse_h2load(out)
            p50, p99 = h2load_percentiles(log)
            rows.append(("h2c h2load", name, rps, p50, p99, cpu * 1e6 / max(ok, 1) if pids else None,
                         rss_kb(pids) if pids else None, failed))

        # Rounds interleave the targets (this VM drifts by tens of percent over a minute): the
        # table gives medians over the rounds, the ratios are taken inside each round.
        for _ in range(args.rounds):
            run_wrk("direct", up1, [])
            run_wrk("portico", pt_port, [pt.pid])
            run_wrk("nginx", ng_port, ng_pids)
        for _ in range(args.rounds):
            run_h2load("direct", up_port, [])
            run_h2load("portico", pt_port, [pt.pid])
            run_h2load("nginx", ng2_port, ng2_pids)

        med = statistics.median
        print(f"\nProxy benchmark: {c} requests in flight, {args.duration}s per run, {args.rounds} "
              f"interleaved rounds (medians), one worker each (Portico -w 1, nginx worker_processes 1), "
              f"upstream nginx returning 13 bytes\n")
        print(f"{'load':<13} {'target':<8} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'CPU us/req':>11} {'RSS MB':>7} {'errors':>6}")
        for load in ("http/1.1 wrk", "h2c h2load"):
            for name in ("direct", "portico", "nginx"):
                rs = [r for r in rows if r[0] == load and r[1] == name]
                cpu = None if rs[0][5] is None else med(r[5] for r in rs)
                rss = rs[-1][6]
                print(f"{load:<13} {name:<8} {med(r[2] for r in rs):>10.0f} {med(r[3] for r in rs):>8.3f} "
                      f"{med(r[4] for r in rs):>8.3f} {(f'{cpu:.1f}' if cpu is not None else '-'):>11} "
                      f"{(f'{rss / 1024:.1f}' if rss else '-'):>7} {sum(r[7] for r in rs):>6}")
        print()
        for load in ("http/1.1 wrk", "h2c h2load"):
            by = {name: [r for r in rows if r[0] == load and r[1] == name]
                  for name in ("direct", "portico", "nginx")}

            def ratio(a, b, col):
                v = [x[col] / y[col] for x, y in zip(by[a], by[b])]
                return f"{med(v):.2f}x ({min(v):.2f}-{max(v):.2f})"
            print(f"{load:<13} portico/nginx: throughput {ratio('portico', 'nginx', 2)}, "
                  f"p99 {ratio('portico', 'nginx', 4)}, CPU/req {ratio('portico', 'nginx', 5)};  "
                  f"portico/direct throughput {ratio('portico', 'direct', 2)}")
        print(f"idle RSS: portico {idle['portico'] / 1024:.1f} MB, nginx (master+worker) "
              f"{idle['nginx'] / 1024:.1f} MB")
    finally:
        benchlib.stop_all(procs, d)


if __name__ == "__main__":
    main()
