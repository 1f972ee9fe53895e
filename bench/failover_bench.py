#!/usr/bin/env python3
"""
failover_bench.py -- what a client sees when one of three endpoints dies
(issue 12): steady GET load through Portico, one upstream process SIGKILLed,
then counted: requests failed, time until the active health check marks the
endpoint down (admin /upstreams), time until the last failed request.

Scenarios, each run against fresh processes:
  passive      no health_check, retries: 0 (only outlier ejection, its defaults)
  active       health_check { interval: 500ms, unhealthy: 2 }, retries: 0
  active+retry the same with retries: 1 (a failed connect goes to another endpoint)

Upstreams are small Python servers (the point is failures and detection time,
not throughput); the load is CLIENTS threads on keep-alive connections.
"""
import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUPPORT = os.path.join(ROOT, "test", "integration", "health")
UPSTREAM = ("import sys, time; sys.path.insert(0, %r); from hc_support import HealthServer; "
            "HealthServer(sys.argv[1], port=int(sys.argv[2])); time.sleep(1e9)" % SUPPORT)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("port %d not up" % port)


def run(binary, scenario, seconds_after, clients):
    ups = [(name, free_port()) for name in ("a", "b", "c")]
    procs = [subprocess.Popen([sys.executable, "-c", UPSTREAM, n, str(p)]) for n, p in ups]
    for _, p in ups:
        wait_port(p)
    port, admin = free_port(), free_port()
    hc = ("    health_check: { path: /healthz, interval: 500ms, timeout: 250ms, unhealthy: 2, healthy: 1 }\n"
          if scenario != "passive" else "")
    retries = 1 if scenario == "active+retry" else 0
    eps = ", ".join('"127.0.0.1:%d"' % p for _, p in ups)
    cfg = (f"listeners:\n  - address: 127.0.0.1:{port}\nadmin: {{ address: 127.0.0.1:{admin} }}\n"
           f"clusters:\n  - name: app\n    endpoints: [{eps}]\n    retries: {retries}\n{hc}"
           f"routes:\n  - match: {{ prefix: / }}\n    proxy: {{ cluster: app }}\n")
    d = tempfile.TemporaryDirectory()
    path = os.path.join(d.name, "p.yaml")
    with open(path, "w") as f:
        f.write(cfg)
    gw = subprocess.Popen([binary, "-c", path, "-w", "2"], stderr=subprocess.DEVNULL)
    wait_port(port)
    stop = threading.Event()
    lock = threading.Lock()
    res = {"ok": 0, "failed": 0, "last_fail": 0.0}

    def client():
        c = None
        while not stop.is_set():
            try:
                if c is None:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/x")
                r = c.getresponse()
                r.read()
                ok = r.status == 200
                if r.getheader("Connection", "").lower() == "close":
                    c.close()
                    c = None
            except (OSError, http.client.HTTPException):
                ok = False
                c = None
            with lock:
                if ok:
                    res["ok"] += 1
                else:
                    res["failed"] += 1
                    res["last_fail"] = time.monotonic()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    with lock:
        before = dict(res)
    t_kill = time.monotonic()
    procs[1].send_signal(signal.SIGKILL)
    detect = None
    while time.monotonic() - t_kill < seconds_after:
        if detect is None and scenario != "passive":
            try:
                c = http.client.HTTPConnection("127.0.0.1", admin, timeout=2)
                c.request("GET", "/upstreams")
                doc = json.loads(c.getresponse().read())
                c.close()
                b = [e for cl in doc["clusters"] for e in cl["endpoints"]
                     if e["address"].endswith(":%d" % ups[1][1])][0]
                if not b["healthy"]:
                    detect = time.monotonic() - t_kill
            except (OSError, ValueError):
                pass
        time.sleep(0.02)
    stop.set()
    for t in threads:
        t.join(10)
    gw.send_signal(signal.SIGTERM)
    gw.wait(30)
    for p in procs:
        p.kill()
        p.wait()
    d.cleanup()
    failed = res["failed"] - before["failed"]
    return {
        "scenario": scenario,
        "requests": res["ok"] + res["failed"] - before["ok"] - before["failed"],
        "failed": failed,
        "detect_s": detect,
        "last_fail_s": (res["last_fail"] - t_kill) if failed else None,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--seconds", type=float, default=3.0, help="load after the kill")
    ap.add_argument("--clients", type=int, default=8)
    a = ap.parse_args()
    binary = os.path.join(a.build, "bin", "portico")
    print("\n== failover: 3 endpoints, one SIGKILLed under load (%d clients, -w 2; shared machine) =="
          % a.clients)
    print("%-14s %9s %8s %16s %18s" % ("scenario", "requests", "failed", "detected after", "last failure after"))
    for sc in ("passive", "active", "active+retry"):
        r = run(binary, sc, a.seconds, a.clients)
        fmt = lambda v: "-" if v is None else "%.3f s" % v
        print("%-14s %9d %8d %16s %18s" % (r["scenario"], r["requests"], r["failed"],
                                          fmt(r["detect_s"]), fmt(r["last_fail_s"])))
    print("(health_check interval 500ms, unhealthy 2: detection is bounded by ~1.0-1.5 s; "
          "passive = outlier ejection with its defaults)")


if __name__ == "__main__":
    main()
