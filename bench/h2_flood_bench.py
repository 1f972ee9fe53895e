#!/usr/bin/python3
"""
h2_flood_bench.py -- CPU of Portico under HTTP/2 zero-progress frame floods
(issue 14: 4 connections sending empty frames used 174% CPU).

Four client processes each hold a cleartext HTTP/2 connection to Portico (-w 1,
one `respond` route) and write batches of 2000 frames of one kind in a loop:
WINDOW_UPDATE of 1, PRIORITY, an unknown frame type (0x42), and (on an open
request stream) empty DATA. A client whose connection is closed reconnects
at once. Reported: Portico's CPU (utime + stime) over the run, and how many
connections the flooders had to open (1 each while nothing limits them).
Loopback only; every process is stopped at the end.

usage: h2_flood_bench.py [--build DIR | --bin PATH] [--duration S]
"""
import argparse
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import hpack
from hyperframe.frame import (DataFrame, ExtensionFrame, HeadersFrame, PriorityFrame,
                              SettingsFrame, WindowUpdateFrame)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import cpu_seconds, free_port, wait_port  # noqa: E402

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
KINDS = [
    [WindowUpdateFrame(0, 1)],
    [PriorityFrame(3, depends_on=0, stream_weight=16)],
    [ExtensionFrame(type=0x42, stream_id=0, flag_byte=0, body=b"")],
    [DataFrame(1, b"")],
]


def flooder(port, kind, stop_at, conns):
    batch = b"".join(f.serialize() for f in KINDS[kind]) * 2000
    block = hpack.Encoder().encode([(":method", "POST"), (":scheme", "http"),
                                    (":authority", "bench"), (":path", "/")])
    start = (PREFACE + SettingsFrame(0).serialize() + SettingsFrame(0, flags=["ACK"]).serialize()
             + HeadersFrame(1, block, flags=["END_HEADERS"]).serialize())
    while time.monotonic() < stop_at:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                with conns.get_lock():
                    conns.value += 1
                s.sendall(start)
                while time.monotonic() < stop_at:
                    s.sendall(batch)
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--bin", default=None)
    ap.add_argument("--duration", type=float, default=5.0)
    a = ap.parse_args()
    binary = a.bin or os.path.join(a.build, "bin", "portico")
    d = tempfile.mkdtemp(prefix="h2flood-")
    port = free_port()
    with open(os.path.join(d, "portico.yaml"), "w") as f:
        f.write(f"""
listeners:
  - address: 127.0.0.1:{port}
routes:
  - name: r
    match: {{ prefix: / }}
    respond: {{ body: "ok\\n" }}
""")
    p = subprocess.Popen([binary, "-w", "1", "-c", os.path.join(d, "portico.yaml")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        conns = multiprocessing.Value("i", 0)
        stop_at = time.monotonic() + a.duration
        c0, t0 = cpu_seconds([p.pid]), time.monotonic()
        procs = [multiprocessing.Process(target=flooder, args=(port, k, stop_at, conns))
                 for k in range(4)]
        for q in procs:
            q.start()
        for q in procs:
            q.join(a.duration + 10)
        c1, t1 = cpu_seconds([p.pid]), time.monotonic()
        print(f"{binary}: Portico CPU {100 * (c1 - c0) / (t1 - t0):.0f}% over {t1 - t0:.1f} s; "
              f"the 4 flooders opened {conns.value} connections")
    finally:
        p.terminate()
        p.wait(20)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
