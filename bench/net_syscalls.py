#!/usr/bin/env python3
"""
net_syscalls.py -- system calls per proxied HTTP/1.1 request and per relayed
WebSocket message, Portico vs nginx on the same load (issues 7 and 8: the net
layer's cost). Counted by the kernel (perf tracepoints, `perf stat -p` on the
proxy's process), so the shared machine's load does not move the figures.

Each target runs a short and a long fixed load; the difference of the counts
divided by the difference in requests (messages) is the cost of one, with
connection set-up and handshakes cancelled out.

  HTTP/1.1: h2load --h1 -c32, an nginx upstream answering 13 bytes; nginx
            proxies with `keepalive 64` upstream connections.
  WebSocket: bench/ws_count.js, 64 sockets x 128-byte binary messages in a
            closed loop, the npm `ws` echo upstream; a message is one frame
            each way.
Both proxies run one worker (Portico -w 1).

Columns: reads (read/readv/recv*), writes (write/writev/send*), epoll_wait
(wakeups of the worker), epoll_ctl (registration churn), all syscalls.

Usage: bench/net_syscalls.py [--build DIR] [--only h1|ws] [--base BUILD]
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import children, free_port, nginx_conf, parse_h2load, wait_port  # noqa: E402
from ws_bench import nginx_ws_conf, portico_ws_conf  # noqa: E402
import benchlib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GROUPS = {
    "reads": ("read", "readv", "recvfrom", "recvmsg"),
    "writes": ("write", "writev", "sendto", "sendmsg"),
    "epoll_wait": ("epoll_wait", "epoll_pwait"),
    "epoll_ctl": ("epoll_ctl",),
}


def counted(pid, load):
    """Runs `load()` (returns the number of requests/messages it made) with the
    syscalls of process `pid` counted; returns ({group: count}, n)."""
    events = ["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{s}" for g in GROUPS.values()
                                           for s in g]
    fd, out = tempfile.mkstemp(suffix=".perf")
    os.close(fd)
    perf = subprocess.Popen(["perf", "stat", "-x", ",", "-o", out, "-e", ",".join(events),
                             "-p", str(pid)], stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # perf attached
    try:
        n = load()
    finally:
        perf.send_signal(signal.SIGINT)
        perf.wait(timeout=30)
    c = {}
    with open(out) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) > 2 and parts[0].isdigit():
                c[parts[2].split(":")[-1].replace("sys_enter_", "")] = int(parts[0])
    os.unlink(out)
    res = {g: sum(c.get(s, 0) for s in names) for g, names in GROUPS.items()}
    res["all"] = c.get("sys_enter", 0)
    return res, n


def per_unit(pid, short_load, long_load):
    a, n1 = counted(pid, short_load)
    b, n2 = counted(pid, long_load)
    return {k: (b[k] - a[k]) / (n2 - n1) for k in a}


def show(title, rows):
    print(f"\n{title}")
    print(f"{'target':<14}" + "".join(f"{k:>11}" for k in list(GROUPS) + ["all"]))
    for name, r in rows:
        print(f"{name:<14}" + "".join(f"{r[k]:>11.2f}" for k in list(GROUPS) + ["all"]))


def start_targets(args, d, procs, write_conf, ng, ng_port):
    """Starts Portico (and the --base build) with write_conf(name, port) -> config file;
    returns [(name, port, pid)] with nginx's worker last."""
    targets = []
    for name, build in [("portico", args.build)] + ([("portico-base", args.base)] if args.base else []):
        port = free_port()
        cfg = write_conf(name, port)
        p = subprocess.Popen([os.path.join(build, "bin", "portico"), "-c", cfg, "-w", "1"],
                             stderr=open(os.path.join(d, f"{name}.{port}.err"), "w"))
        procs.append(p)
        targets.append((name, port, p.pid))
    wait_port(ng_port)
    time.sleep(0.3)
    targets.append(("nginx", ng_port, children(ng.pid)[0]))
    for _, port, _ in targets:
        wait_port(port)
    return targets


def h1_rows(args, d, procs):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    up = free_port()
    procs.append(subprocess.Popen([nginx, "-c", nginx_conf(d, "upstream", f"""
  server {{ listen 127.0.0.1:{up}; location / {{ return 200 "hello world!\\n"; }} }}""")]))
    ng_port = free_port()
    ng = subprocess.Popen([nginx, "-c", nginx_conf(d, "proxy", f"""
  upstream backend {{ server 127.0.0.1:{up}; keepalive 64; }}
  server {{ listen 127.0.0.1:{ng_port};
           location / {{ proxy_pass http://backend; proxy_http_version 1.1;
                        proxy_set_header Connection ""; }} }}""")])
    procs.append(ng)

    def h1_conf(name, port):
        cfg = os.path.join(d, f"{name}.yaml")
        with open(cfg, "w") as f:
            f.write(f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
limits: {{ max_requests_per_conn: 100000000 }}
clusters: [ {{ name: web, endpoints: [ "http://127.0.0.1:{up}" ] }} ]
routes: [ {{ match: {{ prefix: / }}, proxy: {{ cluster: web }} }} ]
""")
        return cfg
    wait_port(up)
    targets = start_targets(args, d, procs, h1_conf, ng, ng_port)
    rows = []
    for name, port, pid in targets:
        def load(n, port=port):
            out = subprocess.run(["h2load", "--h1", "-c32", "-n", str(n),
                                  f"http://127.0.0.1:{port}/"],
                                 capture_output=True, text=True, timeout=300).stdout
            _, ok, errs = parse_h2load(out)
            if errs or ok != n:
                raise RuntimeError(f"{name}: {ok}/{n} answered")
            return n
        load(2000)  # warm-up: upstream pools
        rows.append((name, per_unit(pid, lambda: load(args.requests // 5),
                                    lambda: load(args.requests))))
    show(f"HTTP/1.1 proxy (h2load --h1 -c32, {args.requests // 5} vs {args.requests} requests): "
         "syscalls per request", rows)


def ws_rows(args, d, procs):
    if not os.path.isdir(os.path.join(ROOT, "test", "integration", "node_modules", "ws")):
        sys.exit("net_syscalls: run scripts/test-env.sh first (npm ws)")
    up = subprocess.Popen(["node", os.path.join(ROOT, "test", "integration", "websocket",
                                                "ws_upstream.js")],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    procs.append(up)
    up_port = json.loads(up.stdout.readline())["port"]
    ng_port = free_port()
    ng = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c",
                           nginx_ws_conf(d, ng_port, up_port)])
    procs.append(ng)
    targets = start_targets(args, d, procs,
                            lambda name, port: portico_ws_conf(d, port, up_port, f"{name}-ws.yaml"),
                            ng, ng_port)
    rows = []
    for name, port, pid in targets:
        def load(per, port=port):
            r = subprocess.run(["node", os.path.join(ROOT, "bench", "ws_count.js"),
                                f"ws://127.0.0.1:{port}/echo", "64", "128", str(per)],
                               capture_output=True, text=True, timeout=600)
            res = json.loads(r.stdout.strip().splitlines()[-1])
            if res.get("errors") or res.get("error"):
                raise RuntimeError(f"{name}: load failed: {res}")
            return res["msgs"]
        rows.append((name, per_unit(pid, lambda: load(args.msgs // 5), lambda: load(args.msgs))))
    show(f"WebSocket proxy (64 sockets x 128 B, {args.msgs // 5} vs {args.msgs} messages per "
         "socket): syscalls per message (one frame each way)", rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--base", help="a second build dir to compare (row 'portico-base')")
    ap.add_argument("--only", choices=["h1", "ws"])
    ap.add_argument("--requests", type=int, default=50000)
    ap.add_argument("--msgs", type=int, default=500, help="messages per socket (long load)")
    args = ap.parse_args()
    if shutil.which("perf") is None:
        sys.exit("net_syscalls: needs perf (linux-perf)")
    d = tempfile.mkdtemp(prefix="portico-netsys-")
    procs = []
    try:
        if args.only in (None, "h1"):
            h1_rows(args, d, procs)
        if args.only in (None, "ws"):
            ws_rows(args, d, procs)
    finally:
        benchlib.stop_all(procs, d)


if __name__ == "__main__":
    main()
