#!/usr/bin/python3
"""
ws_bridge_bench.py -- the WebSocket <-> gRPC bridge: bidi Chat messages per
second through Portico and Portico's CPU per message.

The same chat (bookstore.v1.Bookstore/Chat, examples/bookstore's
bookstore-server answering each message with one reply) driven two ways
through one Portico (-w 1), interleaved round by round on this shared machine:

  bridge   ws_chat_load.js (npm `ws`): CONNS WebSockets on
           /v1/rooms/bench/chat (body "text"), INFLIGHT messages outstanding
           each, JSON text both ways through the bridge;
  native   h2load: native gRPC passthrough of the same method, each call one
           HTTP/2 stream carrying MSGS framed ChatMessages and getting MSGS
           replies (the gRPC baseline: no transcoding, no WebSocket framing).

Per run: messages/s (replies received) and the Portico process's CPU
(utime + stime from /proc) divided by the messages each way (client messages
+ replies), i.e. "CPU us per message each way"; also per round trip. Median
over the rounds. Aim (issue 8): <= 15 us per message each way. Loopback
only; every process is stopped at the end.

usage: ws_bridge_bench.py [--build DIR] [--rounds R] [--conns C] [--inflight N] [--per-conn M]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import cpu_seconds, free_port, parse_h2load, wait_port  # noqa: E402
from grpc_bench import start_bookstore  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LOAD = os.path.join(HERE, "ws_chat_load.js")
CHAT = "/bookstore.v1.Bookstore/Chat"


def chat_msg(text, room, sender):
    """A ChatMessage{from, text, room} in protobuf, gRPC-framed (5-byte prefix)."""
    def s(field, v):
        b = v.encode()
        return bytes([field << 3 | 2, len(b)]) + b
    m = s(1, sender) + s(2, text) + s(5, room)
    return b"\x00" + len(m).to_bytes(4, "big") + m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--inflight", type=int, default=16)
    ap.add_argument("--per-conn", type=int, default=4000)
    ap.add_argument("--stream-msgs", type=int, default=200, help="messages per native gRPC call")
    args = ap.parse_args()
    if not os.path.isdir(os.path.join(ROOT, "test", "integration", "node_modules", "ws")):
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "test-env.sh")], check=True)
    for tool in ("node", "h2load"):
        if shutil.which(tool) is None:
            sys.exit(f"ws_bridge_bench: {tool} is missing (scripts/install-deps.sh)")
    build = os.path.abspath(args.build)
    bookstore = os.path.join(build, "bin", "bookstore-server")
    portico = os.path.join(build, "bin", "portico")
    descriptors = os.path.join(build, "examples", "bookstore", "bookstore.pb")
    d = tempfile.mkdtemp(prefix="portico-ws-bridge-bench-")
    procs = []
    try:
        bs, bs_port = start_bookstore(bookstore, 2)
        procs.append(bs)
        port = free_port()
        cfg = os.path.join(d, "portico.yaml")
        with open(cfg, "w") as f:
            f.write(f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
limits: {{ max_requests_per_conn: 100000000 }}
descriptors: [ {descriptors} ]
clusters:
  - {{ name: books, protocol: grpc, endpoints: [ "http://127.0.0.1:{bs_port}" ] }}
routes:
  - grpc: {{ cluster: books, timeout: 300s }}
""")
        gw = subprocess.Popen([portico, "-c", cfg, "-w", "1"],
                              stderr=open(os.path.join(d, "portico.err"), "w"))
        procs.append(gw)
        wait_port(port)
        body = os.path.join(d, "chat.grpc")
        with open(body, "wb") as f:
            for i in range(args.stream_msgs):
                f.write(chat_msg("hello through the bridge", "bench", "c%d" % i))
        total = args.conns * args.per_conn
        native_calls = max(1, total // args.stream_msgs)

        def bridge():
            c0 = cpu_seconds([gw.pid])
            p = subprocess.run(["node", LOAD, f"ws://127.0.0.1:{port}/v1/rooms/bench/chat",
                                str(args.conns), str(args.inflight), str(args.per_conn)],
                               capture_output=True, text=True, timeout=600)
            cpu = cpu_seconds([gw.pid]) - c0
            r = json.loads(p.stdout.strip().splitlines()[-1])
            if r["bad"] or r["msgs"] != total:
                sys.exit(f"ws_bridge_bench: bridge run failed: {r} {p.stderr[-500:]}")
            return r["msgs"] / r["seconds"], cpu, r["msgs"]

        def native():
            c0 = cpu_seconds([gw.pid])
            p = subprocess.run(["h2load", "-n", str(native_calls), f"-c{min(args.conns, native_calls)}",
                                "-m1", "-d", body, "-H", "content-type: application/grpc",
                                "-H", "te: trailers", f"http://127.0.0.1:{port}{CHAT}"],
                               capture_output=True, text=True, timeout=600)
            cpu = cpu_seconds([gw.pid]) - c0
            rps, ok, failed = parse_h2load(p.stdout)
            if failed or ok != native_calls:
                sys.exit(f"ws_bridge_bench: native run failed: {p.stdout[-800:]}")
            return rps * args.stream_msgs, cpu, ok * args.stream_msgs

        runs = {"bridge": [], "native": []}
        for _ in range(args.rounds):
            for name, fn in (("bridge", bridge), ("native", native)):
                rate, cpu, msgs = fn()
                runs[name].append((rate, cpu * 1e6 / (2 * msgs), cpu * 1e6 / msgs))
        print(f"\n== WebSocket <-> gRPC bridge: bidi Chat, Portico -w 1, {args.rounds} interleaved "
              f"rounds, medians (shared machine) ==")
        print(f"bridge: {args.conns} WebSockets x {args.inflight} in flight, {total} messages "
              f"per run; native: h2load gRPC passthrough, {args.stream_msgs} messages per call, "
              f"{min(args.conns, native_calls)} connections")
        print(f"{'path':<8} {'replies/s':>11} {'CPU us/msg each way':>20} {'CPU us/round trip':>18}")
        med = {}
        for name in ("bridge", "native"):
            rate = statistics.median(r[0] for r in runs[name])
            each = statistics.median(r[1] for r in runs[name])
            rt = statistics.median(r[2] for r in runs[name])
            med[name] = each
            print(f"{name:<8} {rate:>11.0f} {each:>20.2f} {rt:>18.2f}")
        print(f"bridge/native CPU per message: {med['bridge'] / med['native']:.2f}x; "
              f"aim: bridge <= 15 us per message each way "
              f"({'met' if med['bridge'] <= 15 else 'NOT met'})")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
