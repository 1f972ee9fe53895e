#!/usr/bin/env python3
"""
ws_callgrind.py -- instructions per relayed WebSocket message, counted by
valgrind's callgrind (deterministic: the shared machine's load does not move
it), for Portico's `websocket: true` proxy and for nginx's WebSocket proxying
in the same conditions (one worker each, the npm `ws` echo upstream, CONNS
sockets sending SIZE-byte binary messages in a closed loop).

Each proxy runs twice under callgrind, once with a short and once with a long
load (bench/ws_count.js); the difference of the two instruction totals divided
by the difference in messages is the cost of one message (a frame each way),
with start-up, handshakes and shutdown cancelled out.

Usage: bench/ws_callgrind.py [--build DIR] [--conns 64] [--size 128]
       [--msgs 50,250] [--only portico|nginx] [--keep DIR (callgrind files)]
       [--base BUILD (a second Portico build, row 'portico-base')]
       [--cache-sim (L1 data misses per message too)]
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import free_port, wait_port  # noqa: E402
from ws_bench import nginx_ws_conf, portico_ws_conf  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def totals(path):
    """The run's event totals: {"Ir": n} (with --cache-sim also Dr, Dw, D1mr, D1mw, ...)."""
    names = ["Ir"]
    with open(path) as f:
        for line in f:
            if line.startswith("events:"):
                names = line.split()[1:]
            m = re.match(r"(?:summary|totals):\s+([\d ]+)", line)
            if m:
                return dict(zip(names, (int(x) for x in m.group(1).split())))
    raise RuntimeError(f"no totals in {path}")


def run_one(name, argv, port, up_port, d, conns, size, per, cache_sim=False):
    out = os.path.join(d, f"{name}.{per}.cg")
    vg = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--trace-children=no"]
    if cache_sim:
        vg.append("--cache-sim=yes")
    p = subprocess.Popen(vg + argv, stdout=subprocess.DEVNULL, stderr=open(out + ".err", "w"))
    try:
        wait_port(port, timeout=60)
        r = subprocess.run(["node", os.path.join(ROOT, "bench", "ws_count.js"),
                            f"ws://127.0.0.1:{port}/echo", str(conns), str(size), str(per)],
                           capture_output=True, text=True, timeout=900)
        res = json.loads(r.stdout.strip().splitlines()[-1])
        if res.get("errors") or res.get("error"):
            raise RuntimeError(f"{name}: load failed: {res}")
    finally:
        p.send_signal(signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
        p.wait(timeout=120)
    return totals(out), res["msgs"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--msgs", default="50,250", help="messages per socket: short,long")
    ap.add_argument("--only", choices=["portico", "nginx"])
    ap.add_argument("--keep", help="copy the callgrind output files here")
    ap.add_argument("--base", help="a second build dir to compare (row 'portico-base')")
    ap.add_argument("--cache-sim", action="store_true",
                    help="also L1 data misses per message (reads, writes): the cache lines a "
                         "message touches that the simulated 64 KiB L1 no longer held")
    args = ap.parse_args()
    short, long_ = (int(x) for x in args.msgs.split(","))
    if not os.path.isdir(os.path.join(ROOT, "test", "integration", "node_modules", "ws")):
        sys.exit("ws_callgrind: run scripts/test-env.sh first (npm ws)")
    d = tempfile.mkdtemp(prefix="portico-wscg-")
    up = None
    try:
        up = subprocess.Popen(["node", os.path.join(ROOT, "test", "integration", "websocket",
                                                    "ws_upstream.js")],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        up_port = json.loads(up.stdout.readline())["port"]
        targets = []
        if args.only in (None, "portico"):
            pt_port = free_port()
            cfg = portico_ws_conf(d, pt_port, up_port)
            targets.append(("portico", [os.path.join(args.build, "bin", "portico"), "-c", cfg,
                                        "-w", "1"], pt_port))
            if args.base:
                targets.append(("portico-base", [os.path.join(args.base, "bin", "portico"), "-c",
                                                 cfg, "-w", "1"], pt_port))
        if args.only in (None, "nginx"):
            ng_port = free_port()
            conf = nginx_ws_conf(d, ng_port, up_port)
            targets.append(("nginx", [shutil.which("nginx") or "/usr/sbin/nginx", "-c", conf,
                                      "-g", "master_process off;"], ng_port))
        print(f"callgrind: {args.conns} sockets x {args.size}-byte messages, "
              f"{short} vs {long_} messages per socket (one worker each)")
        cols = ["Ir"] + (["D1mr", "D1mw"] if args.cache_sim else [])
        heads = {"Ir": "instr/msg", "D1mr": "D1 rd miss", "D1mw": "D1 wr miss"}
        print(f"{'target':<12}" + "".join(f" {heads[c]:>10}" for c in cols))
        for name, argv, port in targets:
            t1, m1 = run_one(name, argv, port, up_port, d, args.conns, args.size, short,
                             args.cache_sim)
            t2, m2 = run_one(name, argv, port, up_port, d, args.conns, args.size, long_,
                             args.cache_sim)
            print(f"{name:<12}" + "".join(f" {(t2[c] - t1[c]) / (m2 - m1):>10.1f}" for c in cols),
                  flush=True)
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            for fn in os.listdir(d):
                if fn.endswith(".cg"):
                    shutil.copy(os.path.join(d, fn), args.keep)
    finally:
        if up is not None:
            up.terminate()
            up.wait(timeout=10)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
