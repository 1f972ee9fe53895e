#!/usr/bin/python3
"""
h1perf_callgrind.py -- issue 7's hot paths counted in user-space instructions
per request under valgrind's callgrind (load-independent: the machine is
shared, wall-clock figures are noise).

Portico (-w 1) runs under callgrind in front of nginx (a 13-byte answer) and
the bookstore gRPC backend (one thread). Each row is a fixed number of
requests from h2load after a warm-up; the counters are zeroed before and
dumped after, so start-up is not counted.

Rows: HTTP/1.1 proxy GET with no extra header, with one 700-byte
Authorization header (a JWT-sized token, no filter reads it) and with a
4 KB Cookie; the REST->gRPC transcoded POST /v1/echo over h2c and over
HTTP/1.1; and the same Echo call passed through as native gRPC over h2c.
The last line gives the transcoded h2c POST over the native passthrough
(issue 7 aims at <= 1.3x CPU).

  python3 bench/h1perf_callgrind.py [--build build] [--requests 2000] [--rounds 1]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from proxy_bench import free_port, nginx_conf, wait_port  # noqa: E402
from grpc_bench import BODY, ECHO, start_bookstore  # noqa: E402
import benchlib  # noqa: E402

JWT = "Bearer " + "eyJhbGciOiJSUzI1NiJ9." + "A" * 600 + "." + "s" * 72
COOKIE = "; ".join(f"c{i}=" + "v" * 56 for i in range(64))
POST_BODY = b'{"message":"hello"}'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated row names")
    args = ap.parse_args()
    portico = os.path.abspath(os.path.join(args.build, "bin", "portico"))
    bookstore = os.path.abspath(os.path.join(args.build, "bin", "bookstore-server"))
    descriptors = os.path.abspath(os.path.join(args.build, "examples", "bookstore", "bookstore.pb"))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    d = tempfile.mkdtemp(prefix="portico-h1perf-cg-")
    procs = []
    try:
        up, pt_port = free_port(), free_port()
        procs.append(subprocess.Popen([nginx, "-c", nginx_conf(d, "upstream", f"""
  server {{ listen 127.0.0.1:{up}; location / {{ return 200 "hello world!\\n"; }} }}""")]))
        bs, bs_port = start_bookstore(bookstore, 1)
        procs.append(bs)
        cfg = os.path.join(d, "portico.yaml")
        with open(cfg, "w") as f:
            f.write(f"""
listeners: [ {{ address: "127.0.0.1:{pt_port}" }} ]
limits: {{ max_requests_per_conn: 100000000 }}
descriptors: [ {descriptors} ]
clusters:
  - {{ name: web, endpoints: [ "http://127.0.0.1:{up}" ] }}
  - {{ name: books, protocol: grpc, endpoints: [ "http://127.0.0.1:{bs_port}" ] }}
routes:
  - match: {{ host: proxy.bench }}
    proxy: {{ cluster: web }}
  - grpc: {{ cluster: books }}
""")
        with open(os.path.join(d, "body.json"), "wb") as f:
            f.write(POST_BODY)
        with open(os.path.join(d, "echo.grpc"), "wb") as f:
            f.write(BODY)
        wait_port(up)
        pt = subprocess.Popen(["valgrind", "--tool=callgrind", "--compress-strings=no", "--compress-pos=no",
                               "--callgrind-out-file=" + os.path.join(d, "cg.out"),
                               portico, "-c", cfg, "-w", "1"], cwd=d,
                              stderr=open(os.path.join(d, "pt.err"), "w"))
        procs.append(pt)
        wait_port(pt_port, 60)
        base = f"http://127.0.0.1:{pt_port}"
        proxy = ["h2load", "--h1", "-c8", "-H", ":authority: proxy.bench", base + "/"]
        post = ["-d", os.path.join(d, "body.json"), "-H", "content-type: application/json", base + "/v1/echo"]
        rows = [
            ("h1 proxy GET", proxy),
            ("h1 proxy GET + 700 B Authorization", proxy[:-1] + ["-H", "authorization: " + JWT, proxy[-1]]),
            ("h1 proxy GET + 4 KB Cookie", proxy[:-1] + ["-H", "cookie: " + COOKIE, proxy[-1]]),
            ("h2c REST POST /v1/echo", ["h2load", "-c4", "-m8"] + post),
            ("h1 REST POST /v1/echo", ["h2load", "--h1", "-c8"] + post),
            ("h2c native gRPC Echo", ["h2load", "-c4", "-m8", "-d", os.path.join(d, "echo.grpc"),
                                      "-H", "content-type: application/grpc", "-H", "te: trailers",
                                      base + ECHO]),
        ]
        if args.only:
            rows = [r for r in rows if r[0] in args.only.split(",")]

        def instructions(name, cmd, n):
            keep = os.environ.get("H1PERF_KEEP")
            keep = os.path.join(keep, name.replace(" ", "_").replace("/", "")) if keep else None
            return benchlib.callgrind_per_request(pt.pid, cmd, n, d, name, warmup=300, keep=keep)

        res = {name: [] for name, _ in rows}
        for _ in range(args.rounds):
            for name, cmd in rows:
                res[name].append(instructions(name, cmd, args.requests))
        med = {k: sorted(v)[len(v) // 2] for k, v in res.items()}
        print(f"\nPortico -w 1 under callgrind: user-space instructions per request, {args.requests} "
              f"requests per row, {args.rounds} round(s) (median)\n")
        for name, _ in rows:
            print(f"{name:<38} {med[name]:>10.0f}")
        if "h2c REST POST /v1/echo" in med and "h2c native gRPC Echo" in med:
            print(f"\ntranscoded h2c POST / native gRPC passthrough: "
                  f"{med['h2c REST POST /v1/echo'] / med['h2c native gRPC Echo']:.2f}x instructions")
    finally:
        benchlib.stop_all(procs, d)


if __name__ == "__main__":
    main()
