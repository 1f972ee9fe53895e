#!/usr/bin/python3
"""
auth_bench.py -- what security filters cost: Portico CPU microseconds per
request over the plain proxy, one row per filter configuration, in one run.

One Portico process (one worker) serves every row on its own route (matched
by Host), in front of an nginx upstream answering 13 bytes; nginx as a plain
proxy is the reference row. wrk (HTTP/1.1 keep-alive, 32 in flight) drives
each row in turn, ROUNDS times interleaved, and the median is printed:
req/s, Portico CPU us/request (utime+stime from /proc), and the difference
to the plain Portico proxy measured in the same rounds.

Adding a filter's rows: append Row(name, filters, headers, files, top) to
ROWS (or to the list a function returns, for rows that need keys made at run
time, like jwt_rows below):
  filters: the YAML of the route's `filters:` list ("" for none)
  headers: request headers wrk sends (a list of "Name: value")
  files:   extra files written next to portico.yaml {name: bytes}
  top:     extra top-level YAML (e.g. a `redis:` section)
  base:    the row this one is compared with (default: the plain proxy). Receiving
           a 700-byte Authorization header costs the codec more than the jwt
           filter's cache hit, so jwt rows compare with the proxy given the same
           header and no filter.

--callgrind: the noise-free view (the machine is shared): Portico runs under
valgrind's callgrind, each row is a fixed number of requests (h2load --h1),
and the user-space instructions per request are printed, with the
difference to the plain proxy also converted to microseconds at the plain
proxy's own measured CPU time per instruction (an estimate).
"""
import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "test", "integration", "auth"))
from proxy_bench import (children, cpu_seconds, free_port, nginx_conf,  # noqa: E402
                         parse_wrk, wait_port)
import benchlib  # noqa: E402  (bench/benchlib.py: what every bench script shares)

Row = collections.namedtuple("Row", "name filters headers files top base",
                             defaults=([], {}, "", None))


def plain_rows():
    return [Row("proxy (no filter)", "")]


def jwt_rows():
    """jwt: RS256 verified every time (cache_size: 0) and cached; ES256, EdDSA, HS256 uncached."""
    import jwt_keys as K
    keys = K.Keys()
    files = {"jwks.json": json.dumps(keys.jwks()).encode(), "secret.txt": K.SECRET}
    base = 'jwks_file: jwks.json, issuer: "%s", audiences: [ %s ], forward_claims: { sub: x-user }' % (
        K.ISSUER, K.AUDIENCE)
    exp = int(time.time()) + 86400

    def auth(alg):
        return ["Authorization: Bearer " + K.token(keys, alg, exp=exp)]
    ref = "proxy + RS256 header"
    return [
        Row(ref, "", auth("RS256")),
        Row("jwt RS256 uncached", "[ { jwt: { %s, cache_size: 0 } } ]" % base, auth("RS256"), files, base=ref),
        Row("jwt RS256 cached", "[ { jwt: { %s } } ]" % base, auth("RS256"), files, base=ref),
        Row("jwt ES256 uncached", "[ { jwt: { %s, cache_size: 0 } } ]" % base, auth("ES256"), files, base=ref),
        Row("jwt EdDSA uncached", "[ { jwt: { %s, cache_size: 0 } } ]" % base, auth("EdDSA"), files, base=ref),
        Row("jwt HS256 uncached", '[ { jwt: { secret_file: secret.txt, issuer: "%s", cache_size: 0 } } ]'
            % K.ISSUER, auth("HS256"), files, base=ref),
    ]


def callgrind_rows(args, d, pt, port, rows):
    def instructions(i, r, n):
        cmd = ["h2load", "--h1", "-c8", "-H", f":authority: row{i}.bench"]
        for h in r.headers:
            cmd += ["-H", h]
        cmd.append(f"http://127.0.0.1:{port}/")
        return benchlib.callgrind_per_request(pt.pid, cmd, n, d, r.name)
    res = collections.defaultdict(list)
    for _ in range(args.rounds):
        for i, r in enumerate(rows):
            res[r.name].append(instructions(i, r, args.requests))
    med = {k: sorted(v)[len(v) // 2] for k, v in res.items()}
    print(f"\nSecurity filters under callgrind: user-space instructions per request, "
          f"{args.requests} requests per row (h2load --h1 -c8), {args.rounds} rounds (median)\n")
    print(f"{'row':<24} {'instr/req':>10} {'over base':>10}  base")
    for r in rows:
        b = r.base or rows[0].name
        print(f"{r.name:<24} {med[r.name]:>10.0f} {med[r.name] - med[b]:>+10.0f}  {b}")


# Every row group; other filters add theirs here.
ROWS = [plain_rows, jwt_rows]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_SECONDS", "4")))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--callgrind", action="store_true", help="instructions per request under callgrind")
    ap.add_argument("--requests", type=int, default=3000, help="requests per row with --callgrind")
    ap.add_argument("--only", default="", help="comma-separated row names: only those rows (and their bases)")
    args = ap.parse_args()
    portico = os.path.abspath(os.path.join(args.build, "bin", "portico"))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if shutil.which("wrk") is None or not os.path.exists(nginx):
        sys.exit("auth_bench: wrk and nginx are needed (scripts/install-deps.sh)")
    rows = [r for group in ROWS for r in group()]
    if args.only:  # the base rows of the rows kept are kept too
        keep = [r for r in rows if r.name in args.only.split(",")]
        need = {rows[0].name} | {r.name for r in keep} | {r.base for r in keep if r.base}
        rows = [r for r in rows if r.name in need]
    d = tempfile.mkdtemp(prefix="portico-authbench-")
    procs = []
    try:
        up1, ng_port, pt_port = free_port(), free_port(), free_port()
        procs.append(subprocess.Popen([nginx, "-c", nginx_conf(d, "upstream", f"""
  server {{ listen 127.0.0.1:{up1}; location / {{ return 200 "hello world!\\n"; }} }}""")]))
        ng = subprocess.Popen([nginx, "-c", nginx_conf(d, "proxy", f"""
  upstream backend {{ server 127.0.0.1:{up1}; keepalive 64; }}
  server {{ listen 127.0.0.1:{ng_port};
           location / {{ proxy_pass http://backend; proxy_http_version 1.1;
                        proxy_set_header Connection ""; }} }}""")])
        procs.append(ng)
        routes, top = [], []
        for i, r in enumerate(rows):
            routes.append(f"  - match: {{ host: row{i}.bench }}\n    proxy: {{ cluster: web }}\n"
                          + (f"    filters: {r.filters}\n" if r.filters else ""))
            for name, content in r.files.items():
                with open(os.path.join(d, name), "wb") as f:
                    f.write(content)
            if r.top and r.top not in top:
                top.append(r.top)
        cfg = os.path.join(d, "portico.yaml")
        with open(cfg, "w") as f:
            f.write(f"""
listeners:
  - address: 127.0.0.1:{pt_port}
limits: {{ max_requests_per_conn: 100000000 }}
clusters:
  - name: web
    endpoints: [ "127.0.0.1:{up1}" ]
{chr(10).join(top)}
routes:
{"".join(routes)}""")
        vg = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + os.path.join(d, "cg.out")] \
            if args.callgrind else []
        pt = subprocess.Popen(vg + [portico, "-c", cfg, "-w", "1"], cwd=d,
                              stderr=open(os.path.join(d, "pt.err"), "w"))
        procs.append(pt)
        for p in (up1, ng_port, pt_port):
            wait_port(p, 60)
        if args.callgrind:
            return callgrind_rows(args, d, pt, pt_port, rows)
        time.sleep(0.3)
        ng_pids = children(ng.pid) or [ng.pid]

        def run(port, pids, host, headers):
            hdrs = ["-H", f"Host: {host}"]
            for h in headers:
                hdrs += ["-H", h]
            url = f"http://127.0.0.1:{port}/"
            subprocess.run(["wrk", "-t1", f"-c{args.conns}", "-d1s"] + hdrs + [url],
                           capture_output=True)
            cpu0 = cpu_seconds(pids)
            out = subprocess.run(["wrk", "-t1", f"-c{args.conns}", f"-d{args.duration}s", "--latency"]
                                 + hdrs + [url], capture_output=True, text=True).stdout
            cpu = cpu_seconds(pids) - cpu0
            rps, reqs, _, p99, errs, _ = parse_wrk(out)
            return rps, cpu * 1e6 / max(reqs, 1), p99, errs

        results = collections.defaultdict(list)
        for _ in range(args.rounds):  # interleaved: every row sees the same machine noise
            results["nginx proxy"].append(run(ng_port, ng_pids, "x", []))
            for i, r in enumerate(rows):
                results[r.name].append(run(pt_port, [pt.pid], f"row{i}.bench", r.headers))

        def median(vals, k):
            v = sorted(x[k] for x in vals)
            return v[len(v) // 2]
        print(f"\nSecurity filters: Portico -w 1 behind wrk -c{args.conns}, {args.duration}s x "
              f"{args.rounds} rounds interleaved (median), upstream nginx returning 13 bytes\n")
        print(f"{'row':<24} {'req/s':>9} {'p99 ms':>8} {'CPU us/req':>11} {'over base':>10} {'non-2xx':>8}  base")
        for name, base in [("nginx proxy", None)] + [(r.name, r.base or rows[0].name) for r in rows]:
            vals = results[name]
            cpu = median(vals, 1)
            over = "-" if base is None else f"{cpu - median(results[base], 1):+.2f}"
            print(f"{name:<24} {median(vals, 0):>9.0f} {median(vals, 2):>8.3f} {cpu:>11.2f} "
                  f"{over:>10} {sum(v[3] for v in vals):>8}  {base or ''}")
    finally:
        benchlib.stop_all(procs, d)


if __name__ == "__main__":
    main()
