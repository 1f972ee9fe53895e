#!/usr/bin/python3
"""
authn_bench.py -- Portico CPU per request added by the api_key, ip_access and
cors filters (issue 11) over the plain proxy, in one run.

One Portico (-w 1) with one route per case in front of an nginx upstream
answering 13 bytes: plain proxy; api_key (10 consumers, key in a header: one
SHA-256 and 10 constant-time compares); ip_access (8 allow and 4 deny
networks, v4 and v6); cors (a GET with an allowed Origin: decorated answer);
cors preflight (answered by Portico, no upstream); and the three filters
together. h2load over h2c, 4 connections x 8 streams, a fixed number of
requests per run; the cases interleaved round by round (the machine is
shared and noisy), CPU from /proc/PID/stat (utime + stime) of the Portico
process over each run. Prints the median us CPU per request, the delta over
the plain proxy, and req/s. Loopback only; every process is stopped.

usage: authn_bench.py [--build DIR] [--requests N] [--rounds R]
"""
import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import cpu_seconds, free_port, nginx_conf, parse_h2load, wait_port  # noqa: E402

KEY = "bench-key-0123456789abcdef"
ORIGIN = "https://app.example.com"


def instructions(args, cfg, cases, d, small=500, large=2500):
    """Instructions per request of each case, from callgrind: per case, two
    runs of a fresh Portico under callgrind, one serving `small` requests and
    one `large`; the difference of their totals over the difference of the
    counts is the cost of one request (start-up, warm-up and exit cancel out).
    Deterministic, so not disturbed by the machine's load."""
    port = None
    with open(cfg) as f:
        for line in f:
            if "listeners:" in line:
                port = int(line.split('127.0.0.1:')[1].split('"')[0])
    base = f"http://127.0.0.1:{port}"

    def total(extra, path, n, tag):
        out = os.path.join(d, f"cg.{tag}.out")
        p = subprocess.Popen(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                              os.path.join(args.build, "bin", "portico"), "-c", cfg, "-w", "1"],
                             stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        try:
            wait_port(port, 60)
            r = subprocess.run(["h2load", "-c4", "-m8", "-n", str(n)] + extra + [base + path],
                               capture_output=True, text=True)
            if parse_h2load(r.stdout)[1] != n:
                raise RuntimeError(f"{tag}: not all {n} requests succeeded under callgrind")
        finally:
            p.terminate()
            p.wait(120)
        with open(out) as fh:
            for line in fh:
                if line.startswith("totals:") or line.startswith("summary:"):
                    return int(line.split()[1])
        raise RuntimeError(f"{tag}: no callgrind totals")

    res = {}
    for i, (name, extra, path) in enumerate(cases):
        lo = total(extra, path, small, f"{i}s")
        hi = total(extra, path, large, f"{i}l")
        res[name] = (hi - lo) / (large - small)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--requests", type=int, default=40000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    for tool in ("nginx", "h2load"):
        if shutil.which(tool) is None and not os.path.exists("/usr/sbin/" + tool):
            print(f"authn_bench: {tool} not found, skipped")
            return
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    d = tempfile.mkdtemp(prefix="portico-authn-bench-")
    procs = []
    try:
        up = free_port()
        procs.append(subprocess.Popen([nginx, "-c", nginx_conf(d, "upstream", f"""
  server {{ listen 127.0.0.1:{up}; location / {{ return 200 "hello world!\\n"; }} }}""")]))
        wait_port(up)
        consumers = ",\n".join(
            f'            {{ name: c{i}, key_sha256: "{hashlib.sha256((KEY if i == 9 else f"other-{i}").encode()).hexdigest()}" }}'
            for i in range(10))
        ip = """{ ip_access: { allow: [ 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, "2001:db8::/32",
                                  "fd00::/8", 203.0.113.0/24, "::1", 127.0.0.0/8 ],
                         deny: [ 10.66.0.0/16, 127.0.0.2, "2001:db8:bad::/48", 192.168.66.0/24 ] } }"""
        key = f"""{{ api_key: {{ consumers: [
{consumers} ] }} }}"""
        cors = f"""{{ cors: {{ origins: [ "https://other.example", "{ORIGIN}" ], expose: [ x-request-id ],
                  credentials: true }} }}"""
        port = free_port()
        cfg = os.path.join(d, "portico.yaml")
        with open(cfg, "w") as f:
            f.write(f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
limits: {{ max_requests_per_conn: 100000000 }}
clusters: [ {{ name: up, endpoints: [ "127.0.0.1:{up}" ] }} ]
routes:
  - {{ match: {{ prefix: /plain/ }}, proxy: {{ cluster: up }} }}
  - {{ match: {{ prefix: /key/ }}, proxy: {{ cluster: up }}, filters: [ {key} ] }}
  - {{ match: {{ prefix: /ip/ }}, proxy: {{ cluster: up }}, filters: [ {ip} ] }}
  - {{ match: {{ prefix: /cors/ }}, proxy: {{ cluster: up }}, filters: [ {cors} ] }}
  - {{ match: {{ prefix: /all/ }}, proxy: {{ cluster: up }}, filters: [ {cors}, {ip}, {key} ] }}
""")
        pt = subprocess.Popen([os.path.join(args.build, "bin", "portico"), "-c", cfg, "-w", "1"],
                              stderr=open(os.path.join(d, "portico.err"), "w"))
        procs.append(pt)
        wait_port(port)
        base = f"http://127.0.0.1:{port}"
        cases = [
            ("plain proxy", ["-H", "origin: " + ORIGIN], "/plain/x"),
            ("api_key", ["-H", "x-api-key: " + KEY], "/key/x"),
            ("ip_access", [], "/ip/x"),
            ("cors", ["-H", "origin: " + ORIGIN], "/cors/x"),
            ("cors preflight", ["-H", "origin: " + ORIGIN, "-H", "access-control-request-method: PATCH",
                                "-H", "access-control-request-headers: content-type",
                                "-H", ":method: OPTIONS"], "/cors/x"),
            ("all three", ["-H", "origin: " + ORIGIN, "-H", "x-api-key: " + KEY], "/all/x"),
        ]

        def run(case, n):
            name, extra, path = case
            c0 = cpu_seconds([pt.pid])
            out = subprocess.run(["h2load", "-c4", "-m8", "-n", str(n)] + extra + [base + path],
                                 capture_output=True, text=True).stdout
            cpu = cpu_seconds([pt.pid]) - c0
            rps, ok, failed = parse_h2load(out)
            if ok != n or failed:
                raise RuntimeError(f"{name}: {ok}/{n} succeeded, {failed} failed\n{out}")
            return cpu * 1e6 / n, rps

        for c in cases:  # warm-up
            run(c, 2000)
        res = {c[0]: [] for c in cases}
        for _ in range(args.rounds):
            for c in cases:
                res[c[0]].append(run(c, args.requests))
        pt.terminate()
        pt.wait(10)
        instr = instructions(args, cfg, cases, d) if shutil.which("valgrind") else {}
        print(f"authn filters: {args.requests} requests per run, {args.rounds} rounds interleaved, "
              f"h2c 4x8 in flight, Portico -w 1, nginx upstream (13 bytes)")
        plain = statistics.median(r[0] for r in res["plain proxy"])
        iplain = instr.get("plain proxy")
        print(f"{'case':16} {'us CPU/req':>10} {'vs plain':>9} {'req/s':>8} {'instr/req':>10} "
              f"{'vs plain':>9}   runs (us)")
        for name, rows in res.items():
            us = statistics.median(r[0] for r in rows)
            rps = statistics.median(r[1] for r in rows)
            ins = instr.get(name)
            icol = f"{ins:10.0f} {ins - iplain:+9.0f}" if ins and iplain else f"{'-':>10} {'-':>9}"
            print(f"{name:16} {us:10.2f} {us - plain:+9.2f} {rps:8.0f} {icol}   "
                  + ", ".join(f"{r[0]:.2f}" for r in rows))
        if instr:
            print("instr/req: Portico's instructions per request under callgrind (two runs per case, "
                  "500 and 2500 requests: the difference; not disturbed by the machine's load)")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(d, True)


if __name__ == "__main__":
    main()
