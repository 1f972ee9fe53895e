#!/usr/bin/python3
"""
compress_bench.py -- the compress filter's cost, next to nginx gzip, in one run.

The upstream is an nginx instance serving a fixed 10 KB JSON document (keep-
alive). Portico (one worker) proxies it with the `compress` filter
(gzip 5, br 4, zstd 3); a second nginx (one worker) proxies it with
`gzip on; gzip_comp_level 5`. wrk (HTTP/1.1 keep-alive, 16 connections)
asks each with `Accept-Encoding: identity|gzip|br|zstd`. The targets run
interleaved in rounds so that noise from the shared machine spreads over all
of them. For each: requests/s, CPU microseconds per request of the proxy
process (utime+stime from /proc), the CPU added by the coding (minus the same
proxy's identity row), and the bytes per response (saved vs 10 KB).
A second Portico, configured the same plus `tracing:` (sample 1.0, spans
POSTed to an nginx standing in for the OTLP collector), gives the tracing
rows: CPU microseconds per request with tracing on (server + client span,
traceparent header, export) minus the same without.
Loopback only; every process is stopped at the end.
"""
import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import children, cpu_seconds, free_port, nginx_conf, parse_wrk, wait_port  # noqa: E402
import benchlib  # noqa: E402  (bench/benchlib.py: what every bench script shares)


def json_doc(size=10240):
    rnd = random.Random(13)
    items, out = [], b""
    while True:
        items.append({"id": len(items) + 1000, "sku": "SKU-%06d" % rnd.randrange(10 ** 6),
                      "name": rnd.choice(["lamp", "desk", "chair", "shelf", "sofa"]) + " " +
                      rnd.choice(["oak", "pine", "steel", "glass"]),
                      "price": round(rnd.uniform(5, 500), 2), "stock": rnd.randrange(100),
                      "tags": rnd.sample(["new", "sale", "eco", "top", "gift", "xl"], 2)})
        doc = json.dumps({"items": items}).encode()
        if len(doc) > size:
            break
        out = doc
    return out + b" " * (size - len(out))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", "3")))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=16)
    args = ap.parse_args()
    portico = os.path.join(args.build, "bin", "portico")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    for tool in ("wrk", "curl"):
        if shutil.which(tool) is None:
            sys.exit(f"bench: {tool} is missing (scripts/install-deps.sh installs it)")
    d = tempfile.mkdtemp(prefix="portico-cbench-")
    procs = []
    try:
        doc = json_doc()
        os.chmod(d, 0o755)  # nginx workers (nobody) read the document
        os.makedirs(os.path.join(d, "www"))
        with open(os.path.join(d, "www", "doc.json"), "wb") as f:
            f.write(doc)
        up, ng, pt, pt2, col = free_port(), free_port(), free_port(), free_port(), free_port()
        procs.append(subprocess.Popen([nginx, "-c", nginx_conf(d, "upstream", f"""
  types {{ application/json json; }}
  server {{ listen 127.0.0.1:{up}; root {d}/www; etag off; }}
  server {{ listen 127.0.0.1:{col}; client_body_buffer_size 1m;
           location / {{ return 200 "{{}}"; }} }}""")]))
        ngp = subprocess.Popen([nginx, "-c", nginx_conf(d, "proxy", f"""
  upstream backend {{ server 127.0.0.1:{up}; keepalive 64; }}
  gzip on; gzip_comp_level 5; gzip_types application/json; gzip_proxied any; gzip_min_length 1024;
  server {{ listen 127.0.0.1:{ng};
           location / {{ proxy_pass http://backend; proxy_http_version 1.1;
                        proxy_set_header Connection ""; }} }}""")])
        procs.append(ngp)
        cfg = os.path.join(d, "portico.yaml")
        with open(cfg, "w") as f:
            f.write(f"""
listeners: [ {{ address: "127.0.0.1:{pt}" }} ]
limits: {{ max_requests_per_conn: 100000000 }}
clusters: [ {{ name: web, endpoints: [ "127.0.0.1:{up}" ] }} ]
routes:
  - match: {{ prefix: / }}
    proxy: {{ cluster: web }}
    filters: [ {{ compress: {{ types: [ application/json ], min_size: 1k,
                               level: {{ gzip: 5, br: 4, zstd: 3 }} }} }} ]
""")
        ptp = subprocess.Popen([portico, "-c", cfg, "-w", "1"], stderr=open(os.path.join(d, "pt.err"), "w"))
        procs.append(ptp)
        cfg2 = os.path.join(d, "portico-traced.yaml")
        with open(cfg) as f:
            text = f.read().replace(f"127.0.0.1:{pt}", f"127.0.0.1:{pt2}")
        admin2 = free_port()
        with open(cfg2, "w") as f:
            f.write(text + f"""tracing: {{ otlp_endpoint: "http://127.0.0.1:{col}/v1/traces", sample: 1.0 }}
admin: {{ address: "127.0.0.1:{admin2}" }}
""")
        ptp2 = subprocess.Popen([portico, "-c", cfg2, "-w", "1"], stderr=open(os.path.join(d, "pt2.err"), "w"))
        procs.append(ptp2)
        for p in (up, ng, pt, pt2, col, admin2):
            wait_port(p)
        time.sleep(0.3)
        ng_pids = children(ngp.pid) or [ngp.pid]
        targets = [("portico", pt, [ptp.pid], c) for c in ("identity", "gzip", "br", "zstd")] + \
                  [("nginx", ng, ng_pids, c) for c in ("identity", "gzip")] + \
                  [("portico+trace", pt2, [ptp2.pid], "identity")]

        sizes = {}
        for name, port, _, coding in targets:
            out = subprocess.run(["curl", "-s", "-H", f"Accept-Encoding: {coding}", "-D", "-", "-o",
                                  os.path.join(d, "body"), f"http://127.0.0.1:{port}/doc.json"],
                                 capture_output=True, text=True).stdout.lower()
            want = "" if coding == "identity" else f"content-encoding: {coding}"
            if want not in out or not out.startswith("http/1.1 200"):
                sys.exit(f"bench: {name} did not answer {coding}:\n{out}")
            sizes[(name, coding)] = os.path.getsize(os.path.join(d, "body"))

        acc = {(t[0], t[3]): [0.0, 0, 0.0] for t in targets}  # cpu s, requests, wall s
        for _ in range(args.rounds):
            for name, port, pids, coding in targets:
                url = f"http://127.0.0.1:{port}/doc.json"
                hdr = ["-H", f"Accept-Encoding: {coding}"]
                subprocess.run(["wrk", "-t1", f"-c{args.conns}", "-d1s"] + hdr + [url], capture_output=True)
                cpu0 = cpu_seconds(pids)
                res = subprocess.run(["wrk", "-t1", f"-c{args.conns}", f"-d{args.seconds}s", "--latency"]
                                     + hdr + [url], capture_output=True, text=True).stdout
                cpu = cpu_seconds(pids) - cpu0
                rps, reqs, _, _, errs, _ = parse_wrk(res)
                if errs:
                    sys.exit(f"bench: {errs} errors from {name} {coding}")
                a = acc[(name, coding)]
                a[0] += cpu
                a[1] += reqs
                a[2] += reqs / rps if rps else 0

        print(f"\nCompression benchmark: {len(doc)}-byte JSON via one proxy worker, wrk -c{args.conns}, "
              f"{args.rounds} interleaved rounds x {args.seconds}s; levels gzip 5 / br 4 / zstd 3, nginx "
              f"gzip_comp_level 5 (shared, noisy machine: compare rows of the same run)\n")
        print(f"{'proxy':<13} {'coding':<9} {'req/s':>9} {'CPU us/req':>11} {'+us vs base':>11} "
              f"{'bytes':>7} {'saved':>7} {'ratio':>6}")
        for name, _, _, coding in targets:
            cpu, reqs, wall = acc[(name, coding)]
            us = cpu * 1e6 / max(reqs, 1)
            base = acc[("portico" if name.startswith("portico") else name, "identity")]
            base_us = base[0] * 1e6 / max(base[1], 1)
            size = sizes[(name, coding)]
            print(f"{name:<13} {coding:<9} {reqs / wall if wall else 0:>9.0f} {us:>11.1f} "
                  f"{(us - base_us if base is not acc[(name, coding)] else 0):>11.1f} {size:>7} "
                  f"{len(doc) - size:>7} {size / len(doc):>6.3f}")
        time.sleep(1.5)  # the exporter's last flush
        metrics = subprocess.run(["curl", "-s", f"http://127.0.0.1:{admin2}/metrics"], capture_output=True,
                                 text=True).stdout
        got = dict(re.findall(r"^portico_trace_spans_(exported|dropped)_total (\d+)$", metrics, re.M))
        print(f"\nportico+trace: tracing on (sample 1.0, server + client span per request, OTLP/HTTP JSON "
              f"export to a local nginx); '+us vs base' is against the portico identity row. "
              f"Spans exported {got.get('exported', '?')}, dropped {got.get('dropped', '?')}.")
    finally:
        benchlib.stop_all(procs, d)


if __name__ == "__main__":
    main()
