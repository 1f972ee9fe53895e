#!/usr/bin/python3
"""
proxy_callgrind.py -- the HTTP/1.1 proxy's user-space cost per request, for
Portico and for nginx in the same conditions, counted by valgrind's callgrind
(load-independent: the shared machine's noise does not move it).

The setup is bench/proxy_bench.py's: an nginx upstream answering 13 bytes,
Portico (-w 1, `proxy: { cluster: web }` on prefix /) and nginx (one worker,
`master_process off`, upstream keepalive 64) proxying it. Each target runs
under callgrind; h2load --h1 (CONNS connections) sends a warm-up, the
counters are zeroed, N requests run, and the dump made right after is read.
Rows: instructions per request, and calls per request of the allocator
(malloc + calloc + realloc, and free) -- the steady state should allocate
nothing. `--access-log` adds a Portico row with `access_log` to a file.

  python3 bench/proxy_callgrind.py [--build build] [--requests 4000] [--conns 8]
        [--only portico,portico+log,nginx] [--keep DIR] [--top 0]

--keep DIR copies the callgrind files (for callgrind_annotate --inclusive=yes);
--top N prints each target's N most expensive functions (inclusive).
"""
import argparse
import collections
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from proxy_bench import free_port, nginx_conf, parse_h2load, wait_port  # noqa: E402
import benchlib  # noqa: E402

ALLOC = ("malloc", "calloc", "realloc")


def read_dump(path):
    """(total instructions, {function: calls}) of a callgrind dump written
    with --compress-strings=no."""
    total, calls, cfn = 0, collections.Counter(), None
    with open(path) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                total = int(line.split()[1])
            elif line.startswith("cfn="):
                cfn = line[4:].strip()
                m = re.match(r"\(\d+\)\s*(.*)", cfn)
                if m and m.group(1):
                    cfn = m.group(1)
            elif line.startswith("calls=") and cfn is not None:
                calls[cfn] += int(line[6:].split()[0])
    return total, calls


def measure(pid, cmd, n, d, warmup):
    subprocess.run(cmd + ["-n", str(warmup)], capture_output=True, timeout=300)
    subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True, check=True)
    out = subprocess.run(cmd + ["-n", str(n)], capture_output=True, text=True, timeout=900).stdout
    before = set(glob.glob(os.path.join(d, "cg.*.out.*")))
    subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=True)
    new = set(glob.glob(os.path.join(d, "cg.*.out.*"))) - before
    _, ok, errs = parse_h2load(out)
    if errs or ok != n or len(new) != 1:
        raise RuntimeError(f"{ok}/{n} answered, {errs} failed, {len(new)} dumps")
    return new.pop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--only", default="portico,portico+log,nginx")
    ap.add_argument("--keep")
    ap.add_argument("--top", type=int, default=0)
    args = ap.parse_args()
    portico = os.path.abspath(os.path.join(args.build, "bin", "portico"))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    d = tempfile.mkdtemp(prefix="portico-proxycg-")
    procs = []
    try:
        up = free_port()
        procs.append(subprocess.Popen([nginx, "-c", nginx_conf(d, "upstream", f"""
  server {{ listen 127.0.0.1:{up}; location / {{ return 200 "hello world!\\n"; }} }}""")]))
        wait_port(up)
        targets = []
        for name in args.only.split(","):
            port = free_port()
            if name.startswith("portico"):
                cfg = os.path.join(d, name + ".yaml")
                log = f"access_log: {{ path: {d}/access.log }}\n" if name.endswith("+log") else ""
                with open(cfg, "w") as f:
                    f.write(f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
limits: {{ max_requests_per_conn: 100000000 }}
{log}clusters:
  - {{ name: web, endpoints: [ "127.0.0.1:{up}" ] }}
routes:
  - match: {{ prefix: / }}
    proxy: {{ cluster: web }}
""")
                argv = [portico, "-c", cfg, "-w", "1"]
            elif name == "nginx":
                argv = [nginx, "-c", nginx_conf(d, "proxy", f"""
  upstream backend {{ server 127.0.0.1:{up}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port};
           location / {{ proxy_pass http://backend; proxy_http_version 1.1;
                        proxy_set_header Connection ""; }} }}"""), "-g", "master_process off;"]
            else:
                sys.exit(f"unknown target {name}")
            targets.append((name, argv, port))
        print(f"callgrind: h2load --h1 -c{args.conns}, {args.requests} proxied GETs per target "
              f"(one worker each; upstream nginx answers 13 bytes)\n")
        print(f"{'target':<12} {'instr/req':>10} {'allocs/req':>11} {'frees/req':>10}")
        for name, argv, port in targets:
            vg = ["valgrind", "--tool=callgrind", "--compress-strings=no", "--compress-pos=no"] + \
                (["--cache-sim=yes"] if os.environ.get("PROXYCG_CACHE") else []) + [
                  f"--callgrind-out-file={d}/cg.{name}.out"]
            p = subprocess.Popen(vg + argv, cwd=d, stdout=subprocess.DEVNULL,
                                 stderr=open(os.path.join(d, name + ".err"), "w"))
            try:
                wait_port(port, 60)
                cmd = ["h2load", "--h1", f"-c{args.conns}", f"http://127.0.0.1:{port}/"]
                path = measure(p.pid, cmd, args.requests, d, 400)
            finally:
                p.send_signal(signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
                p.wait(timeout=120)
            total, calls = read_dump(path)
            n = args.requests
            allocs = sum(c for f, c in calls.items() if f in ALLOC)
            print(f"{name:<12} {total / n:>10.0f} {allocs / n:>11.2f} {calls.get('free', 0) / n:>10.2f}",
                  flush=True)
            if args.keep:
                os.makedirs(args.keep, exist_ok=True)
                shutil.copy(path, os.path.join(args.keep, f"{name}.cg"))
            if args.top:
                out = subprocess.run(["callgrind_annotate", "--inclusive=yes", path],
                                     capture_output=True, text=True).stdout
                rows = [ln for ln in out.splitlines() if re.match(r"\s*[\d,]+ \(", ln)]
                for ln in rows[:args.top]:
                    print("   ", ln.strip())
    finally:
        benchlib.stop_all(procs, d)


if __name__ == "__main__":
    main()
