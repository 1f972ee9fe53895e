#!/usr/bin/python3
"""
h2tls_bench.py -- what an HTTPS HTTP/2 proxied request costs Portico: the
`http2: true` cluster over TLS through our nghttp2 client (upstream/h2.c),
against the same cluster through libcurl 7.88's HTTP/2 (the back end of such
clusters before; --before: a portico binary built from before the change) and
against the same upstream over HTTP/1.1 + TLS through libcurl (`http2: false`,
what the ALPN fallback costs).

One nginx upstream with TLS (h2 and http/1.1 by ALPN, a 13-byte answer); each
binary runs one worker with two routes (http2: true / false clusters). The
client speaks HTTP/1.1 to Portico (h2load --h1, -c16). Rows: req/s and
Portico CPU microseconds per request (utime+stime from /proc), median of
--rounds, every row measured once per round (interleaved: the same machine
noise for all); with --callgrind N also instructions per request.

  python3 bench/h2tls_bench.py --before /tmp/before/build/bin/portico --build build

Without --before (make bench: set H2TLS_BENCH_BEFORE to compare) only this
build's rows are measured.
"""
import argparse
import collections
import glob
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from proxy_bench import cpu_seconds, free_port, nginx_conf, parse_h2load, wait_port  # noqa: E402
import benchlib  # noqa: E402

ROUTES = [("h2 (TLS)", "/"), ("HTTP/1.1 (TLS)", "/h1")]


def config(port, up, crt):
    return f"""
listeners:
  - address: 127.0.0.1:{port}
limits: {{ max_requests_per_conn: 100000000 }}
clusters:
  - {{ name: h2, endpoints: [ "https://127.0.0.1:{up}" ], http2: true, ca_file: {crt} }}
  - {{ name: h1, endpoints: [ "https://127.0.0.1:{up}" ], ca_file: {crt} }}
routes:
  - {{ match: {{ prefix: /h1 }}, proxy: {{ cluster: h1 }} }}
  - {{ match: {{ prefix: / }}, proxy: {{ cluster: h2 }} }}
"""


class Gateway:
    def __init__(self, name, binary, d, up, crt, callgrind):
        self.name, self.port = name, free_port()
        self.dir = os.path.join(d, name + ("-cg" if callgrind else ""))
        os.makedirs(self.dir)
        cfg = os.path.join(self.dir, "portico.yaml")
        with open(cfg, "w") as f:
            f.write(config(self.port, up, crt))
        vg = ["valgrind", "--tool=callgrind",
              "--callgrind-out-file=" + os.path.join(self.dir, "cg.out")] if callgrind else []
        self.proc = subprocess.Popen(vg + [binary, "-c", cfg, "-w", "1"], cwd=self.dir,
                                     stderr=open(os.path.join(self.dir, "pt.err"), "w"))
        wait_port(self.port, 60)

    def h2load(self, path, n):
        cmd = ["h2load", "--h1", "-c16", "-n", str(n), f"http://127.0.0.1:{self.port}{path}"]
        out = subprocess.run(cmd, capture_output=True, text=True).stdout
        rps, ok, errs = parse_h2load(out)
        if errs or ok != n:
            raise RuntimeError(f"{self.name} {path}: {ok}/{n} answered, {errs} failed")
        return rps

    def cpu(self, path, n):
        self.h2load(path, 500)  # warm-up (connections, pools)
        c0 = cpu_seconds([self.proc.pid])
        rps = self.h2load(path, n)
        return rps, (cpu_seconds([self.proc.pid]) - c0) * 1e6 / n

    def instructions(self, path, n):
        self.h2load(path, 200)
        subprocess.run(["callgrind_control", "-z", str(self.proc.pid)], capture_output=True,
                       check=True)
        self.h2load(path, n)
        before = set(glob.glob(os.path.join(self.dir, "cg.out.*")))
        subprocess.run(["callgrind_control", "-d", str(self.proc.pid)], capture_output=True,
                       check=True)
        new = set(glob.glob(os.path.join(self.dir, "cg.out.*"))) - before
        if len(new) != 1:
            raise RuntimeError(f"{self.name}: no callgrind dump")
        with open(new.pop()) as f:
            return [int(x.split()[1]) for x in f if x.startswith("totals:")][0] / n


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--before", default=os.environ.get("H2TLS_BENCH_BEFORE", ""),
                    help="a portico binary whose https HTTP/2 clusters go through libcurl")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=20000, help="requests per row and round")
    ap.add_argument("--callgrind", type=int, default=0,
                    help="also count instructions per request over this many requests")
    args = ap.parse_args()
    after = os.path.abspath(os.path.join(args.build, "bin", "portico"))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    for tool in ["h2load", "openssl"] + (["valgrind", "callgrind_control"] if args.callgrind else []):
        if shutil.which(tool) is None:
            sys.exit(f"h2tls_bench: {tool} is needed (scripts/install-deps.sh)")
    bins = ([("before", os.path.abspath(args.before))] if args.before else []) + [("after", after)]
    d = tempfile.mkdtemp(prefix="portico-h2tlsbench-")
    procs = []
    try:
        crt, key = os.path.join(d, "up.pem"), os.path.join(d, "up.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", crt,
                        "-days", "2", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        up = free_port()
        procs.append(subprocess.Popen([nginx, "-c", nginx_conf(d, "upstream", f"""
  server {{ listen 127.0.0.1:{up} ssl http2; ssl_certificate {crt}; ssl_certificate_key {key};
           location / {{ return 200 "hello world!\\n"; }} }}""")]))
        wait_port(up, 10)
        for callgrind in ([True] if args.callgrind else []) + [False]:
            gws = []
            for name, b in bins:
                gws.append(Gateway(name, b, d, up, crt, callgrind))
                procs.append(gws[-1].proc)
            res = collections.defaultdict(list)
            for _ in range(args.rounds):  # interleaved: every row sees the same machine noise
                for g in gws:
                    for label, path in ROUTES:
                        res[(g.name, label)].append(
                            g.instructions(path, args.callgrind) if callgrind
                            else g.cpu(path, args.requests))
            if callgrind:
                print(f"\nHTTPS upstream under callgrind: instructions per request (whole "
                      f"process), {args.callgrind} requests per row, {args.rounds} rounds (median)\n")
                print(f"{'binary':<8} {'upstream':<16} {'instr/req':>10}")
                for (name, label), v in res.items():
                    print(f"{name:<8} {label:<16} {median(v):>10.0f}")
            else:
                print(f"\nHTTPS upstream (nginx, TLS): {args.requests} requests per row (h2load --h1 "
                      f"-c16 to Portico -w 1), {args.rounds} rounds interleaved (median; the "
                      f"machine may be shared)\n")
                print(f"{'binary':<8} {'upstream':<16} {'req/s':>9} {'CPU us/req':>11}")
                for (name, label), v in res.items():
                    print(f"{name:<8} {label:<16} {median([x[0] for x in v]):>9.0f} "
                          f"{median([x[1] for x in v]):>11.2f}")
            for g in gws:
                benchlib.stop_all([g.proc])
    finally:
        benchlib.stop_all(procs, d)


if __name__ == "__main__":
    main()
