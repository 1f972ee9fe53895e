#!/usr/bin/python3
"""
cache_bench.py -- the cache filter's HIT path next to a plain proxied request
and to nginx proxy_cache, in one run.

The upstream is an nginx instance serving fixed JSON documents (1 KB and
10 KB) with `Cache-Control: max-age=3600` (keep-alive). Three proxies, one
worker each: Portico proxying plainly (every request goes upstream), Portico
with `cache:` (every request after the first is a HIT from the local tier),
and nginx with `proxy_cache` (a HIT from its cache, served from the page
cache). wrk (HTTP/1.1 keep-alive, 16 connections) asks each; the targets run
interleaved in rounds so that noise from the shared machine spreads over all
of them. For each: requests/s and CPU microseconds per request of the proxy
process (utime+stime from /proc; nginx: its worker and cache processes).
The first answer of each cached target is checked to be a HIT.
Loopback only; every process is stopped at the end.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import children, cpu_seconds, free_port, nginx_conf, parse_wrk, wait_port  # noqa: E402
from compress_bench import json_doc  # noqa: E402
import benchlib  # noqa: E402  (bench/benchlib.py: what every bench script shares)


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
    d = tempfile.mkdtemp(prefix="portico-cachebench-")
    procs = []
    try:
        os.chmod(d, 0o755)  # nginx workers (nobody) read the documents and write their cache
        os.makedirs(os.path.join(d, "www"))
        docs = {"1k.json": json_doc(1024), "10k.json": json_doc(10240)}
        for name, doc in docs.items():
            with open(os.path.join(d, "www", name), "wb") as f:
                f.write(doc)
        os.makedirs(os.path.join(d, "ngcache"))
        os.chmod(os.path.join(d, "ngcache"), 0o777)
        up, ng, pt, ptc = free_port(), free_port(), free_port(), free_port()
        procs.append(subprocess.Popen([nginx, "-c", nginx_conf(d, "upstream", f"""
  types {{ application/json json; }}
  server {{ listen 127.0.0.1:{up}; root {d}/www; etag off;
           add_header Cache-Control "max-age=3600"; }}""")]))
        ngp = subprocess.Popen([nginx, "-c", nginx_conf(d, "proxy", f"""
  upstream backend {{ server 127.0.0.1:{up}; keepalive 64; }}
  proxy_cache_path {d}/ngcache levels=1:2 keys_zone=c:10m max_size=256m inactive=1h use_temp_path=off;
  server {{ listen 127.0.0.1:{ng};
           location / {{ proxy_pass http://backend; proxy_http_version 1.1;
                        proxy_set_header Connection ""; proxy_cache c; proxy_cache_lock on;
                        add_header X-Cache $upstream_cache_status; }} }}""")])
        procs.append(ngp)
        ptps = []
        for port, filt in ((pt, ""), (ptc, "\n    filters: [ { cache: { max_size: 64m, max_object: 1m } } ]")):
            cfg = os.path.join(d, f"portico-{port}.yaml")
            with open(cfg, "w") as f:
                f.write(f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
limits: {{ max_requests_per_conn: 100000000 }}
clusters: [ {{ name: web, endpoints: [ "127.0.0.1:{up}" ] }} ]
routes:
  - match: {{ prefix: / }}
    proxy: {{ cluster: web }}{filt}
""")
            p = subprocess.Popen([portico, "-c", cfg, "-w", "1"], stderr=open(cfg + ".err", "w"))
            procs.append(p)
            ptps.append(p)
        for p in (up, ng, pt, ptc):
            wait_port(p)
        time.sleep(0.3)
        ng_pids = children(ngp.pid) or [ngp.pid]
        targets = [("portico proxy", pt, [ptps[0].pid], None),
                   ("portico cache", ptc, [ptps[1].pid], "x-cache: hit"),
                   ("nginx proxy_cache", ng, ng_pids, "x-cache: hit")]
        for doc in docs:
            for name, port, _, want in targets:
                url = f"http://127.0.0.1:{port}/{doc}"
                subprocess.run(["curl", "-s", "-o", "/dev/null", url], check=True)  # fills the caches
                out = subprocess.run(["curl", "-s", "-D", "-", "-o", os.path.join(d, "body"), url],
                                     capture_output=True, text=True).stdout.lower()
                if not out.startswith("http/1.1 200") or (want and want not in out):
                    sys.exit(f"bench: {name} did not answer {doc} as expected:\n{out}")
                with open(os.path.join(d, "body"), "rb") as f:
                    if f.read() != docs[doc]:
                        sys.exit(f"bench: {name} answered another body for {doc}")

        acc = {(t[0], doc): [0.0, 0, 0.0] for t in targets for doc in docs}  # cpu s, requests, wall s
        for _ in range(args.rounds):
            for doc in docs:
                for name, port, pids, _ in targets:
                    url = f"http://127.0.0.1:{port}/{doc}"
                    subprocess.run(["wrk", "-t1", f"-c{args.conns}", "-d1s", url], capture_output=True)
                    cpu0 = cpu_seconds(pids)
                    res = subprocess.run(["wrk", "-t1", f"-c{args.conns}", f"-d{args.seconds}s", "--latency",
                                          url], capture_output=True, text=True).stdout
                    cpu = cpu_seconds(pids) - cpu0
                    rps, reqs, _, _, errs, _ = parse_wrk(res)
                    if errs:
                        sys.exit(f"bench: {errs} errors from {name} {doc}")
                    a = acc[(name, doc)]
                    a[0] += cpu
                    a[1] += reqs
                    a[2] += reqs / rps if rps else 0

        print(f"\nCache benchmark: JSON documents via one proxy worker, wrk -c{args.conns}, "
              f"{args.rounds} interleaved rounds x {args.seconds}s; upstream nginx says max-age=3600 "
              f"(shared, noisy machine: compare rows of the same run)\n")
        print(f"{'proxy':<18} {'doc':<9} {'req/s':>9} {'CPU us/req':>11} {'vs proxy':>9}")
        rows = []
        for doc in docs:
            base = acc[("portico proxy", doc)]
            base_us = base[0] * 1e6 / max(base[1], 1)
            for name, _, _, _ in targets:
                cpu, reqs, wall = acc[(name, doc)]
                us = cpu * 1e6 / max(reqs, 1)
                rps = reqs / wall if wall else 0
                rows.append({"proxy": name, "doc": doc, "rps": round(rps), "cpu_us": round(us, 1)})
                print(f"{name:<18} {doc:<9} {rps:>9.0f} {us:>11.1f} {us / base_us if base_us else 0:>8.2f}x")
        if os.environ.get("BENCH_JSON"):
            print(json.dumps(rows))
    finally:
        benchlib.stop_all(procs, d)


if __name__ == "__main__":
    main()
