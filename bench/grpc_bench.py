#!/usr/bin/python3
"""
grpc_bench.py -- native gRPC: the bookstore service directly, through Portico
(passthrough over shared upstream HTTP/2 connections, handlers/grpc_native.c),
and through nginx `grpc_pass`, in one run.

Load: h2load with gRPC framing (a prebuilt body with the 5-byte prefix, a
unary bookstore.v1.Bookstore/Echo call), 4 connections x 8 streams = 32
calls in flight. For each target: calls/s, p50/p99 latency, and CPU
microseconds per call of the proxy process (Portico -w 1, nginx one worker)
and of the backend. Every target is checked first with a real gRPC call
(python3-grpcio) so a run of errors cannot pass for throughput.
Loopback only; every process is stopped at the end.

usage: grpc_bench.py [--build DIR] [--duration S] [--conns N] [--streams M]
"""
import argparse
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import (children, cpu_seconds, free_port, h2load_percentiles,  # noqa: E402
                         parse_h2load, rss_kb, wait_port)

ECHO = "/bookstore.v1.Bookstore/Echo"
# EchoRequest{message: "hello"} behind the gRPC prefix (flag 0, length 7)
BODY = b"\x00\x00\x00\x00\x07" + b"\x0a\x05hello"


def start_bookstore(binary, threads):
    p = subprocess.Popen([binary, "--port", "0", "--threads", str(threads)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = b""
    end = time.monotonic() + 10
    while not line.endswith(b"\n"):
        if time.monotonic() > end or p.poll() is not None:
            raise RuntimeError("bookstore-server did not start")
        r, _, _ = select.select([p.stdout], [], [], 0.5)
        if r:
            line += os.read(p.stdout.fileno(), 1)
    return p, int(line.decode().rsplit(":", 1)[1])


def check_call(port):
    """One real gRPC call; raises when the target does not answer OK."""
    import grpc
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        out = ch.unary_unary(ECHO)(BODY[5:], timeout=5)
    if out != BODY[5:]:
        raise RuntimeError(f"port {port}: unexpected answer {out!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_SECONDS", "8")))
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--backend-threads", type=int, default=2)
    args = ap.parse_args()
    portico = os.path.join(args.build, "bin", "portico")
    bookstore = os.path.join(args.build, "bin", "bookstore-server")
    descriptors = os.path.abspath(os.path.join(args.build, "examples", "bookstore", "bookstore.pb"))
    for tool in ("nginx", "h2load"):
        if shutil.which(tool) is None and not os.path.exists("/usr/sbin/" + tool):
            sys.exit(f"grpc bench: {tool} is missing (scripts/install-deps.sh installs it)")
    if not os.path.exists(bookstore):
        sys.exit(f"grpc bench: {bookstore} not built")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    d = tempfile.mkdtemp(prefix="portico-grpc-bench-")
    procs = []
    try:
        bs, bs_port = start_bookstore(bookstore, args.backend_threads)
        procs.append(bs)
        body = os.path.join(d, "body.bin")
        with open(body, "wb") as f:
            f.write(BODY)

        pt_port, ng_port = free_port(), free_port()
        cfg = os.path.join(d, "portico.yaml")
        with open(cfg, "w") as f:
            f.write(f"""
listeners:
  - address: 127.0.0.1:{pt_port}
limits: {{ max_requests_per_conn: 100000000 }}
descriptors: [ {descriptors} ]
clusters:
  - {{ name: books, protocol: grpc, endpoints: [ "http://127.0.0.1:{bs_port}" ] }}
routes:
  - grpc: {{ cluster: books }}
""")
        pt = subprocess.Popen([portico, "-c", cfg, "-w", "1"],
                              stderr=open(os.path.join(d, "pt.err"), "w"))
        procs.append(pt)
        ngc = os.path.join(d, "nginx.conf")
        with open(ngc, "w") as f:
            f.write(f"""
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx.err;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/cb; proxy_temp_path {d}/pt; fastcgi_temp_path {d}/ft;
  uwsgi_temp_path {d}/ut; scgi_temp_path {d}/st;
  upstream books {{ server 127.0.0.1:{bs_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{ng_port} http2;
    keepalive_requests 100000000;
    location / {{ grpc_pass grpc://books; }}
  }}
}}
""")
        ng = subprocess.Popen([nginx, "-c", ngc])
        procs.append(ng)
        for p in (bs_port, pt_port, ng_port):
            wait_port(p)
        time.sleep(0.3)
        for p in (bs_port, pt_port, ng_port):
            check_call(p)
        ng_pids = children(ng.pid) or [ng.pid]

        rows = []

        def run(name, port, pids):
            url = f"http://127.0.0.1:{port}{ECHO}"
            log = os.path.join(d, f"h2load-{name}.log")
            common = ["h2load", f"-c{args.conns}", f"-m{args.streams}",
                      "-H", "content-type: application/grpc", "-H", "te: trailers", "-d", body]
            subprocess.run(common + ["-D1", url], capture_output=True)  # warm-up
            cpu0, bcpu0 = cpu_seconds(pids), cpu_seconds([bs.pid])
            out = subprocess.run(common + [f"-D{args.duration}", "--log-file", log, url],
                                 capture_output=True, text=True).stdout
            cpu, bcpu = cpu_seconds(pids) - cpu0, cpu_seconds([bs.pid]) - bcpu0
            rps, ok, failed = parse_h2load(out)
            p50, p99 = h2load_percentiles(log)
            check_call(port)  # still answering correctly after the load
            rows.append((name, rps, p50, p99, cpu * 1e6 / max(ok, 1) if pids else None,
                         bcpu * 1e6 / max(ok, 1), rss_kb(pids) if pids else None, failed))

        run("direct", bs_port, [])
        run("portico", pt_port, [pt.pid])
        run("nginx", ng_port, ng_pids)
        conns = subprocess.run(["ss", "-Htn", "state", "established", f"( dport = :{bs_port} )"],
                               capture_output=True, text=True).stdout

        print(f"\ngRPC passthrough benchmark: unary Echo, {args.conns}x{args.streams} = "
              f"{args.conns * args.streams} calls in flight, {args.duration}s per run, one worker "
              f"each (Portico -w 1, nginx grpc_pass worker_processes 1), bookstore-server "
              f"--threads {args.backend_threads}\n")
        print(f"{'target':<8} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'proxy CPU us/call':>18} "
              f"{'backend CPU us/call':>20} {'RSS MB':>7} {'failed':>6}")
        for name, rps, p50, p99, cpu, bcpu, rss, failed in rows:
            print(f"{name:<8} {rps:>9.0f} {p50:>8.3f} {p99:>8.3f} "
                  f"{(f'{cpu:.1f}' if cpu is not None else '-'):>18} {bcpu:>20.1f} "
                  f"{(f'{rss / 1024:.1f}' if rss else '-'):>7} {failed:>6}")
        r = {row[0]: row for row in rows}
        print(f"\nportico/nginx: throughput {r['portico'][1] / r['nginx'][1]:.2f}x, "
              f"p99 {r['portico'][3] / r['nginx'][3]:.2f}x, CPU/call "
              f"{r['portico'][4] / r['nginx'][4]:.2f}x; portico/direct throughput "
              f"{r['portico'][1] / r['direct'][1]:.2f}x")
        print(f"TCP connections to the backend still open after the runs: "
              f"{len([ln for ln in conns.splitlines() if ln.strip()])}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if os.environ.get("BENCH_KEEP"):
            print("kept", d)
        else:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
