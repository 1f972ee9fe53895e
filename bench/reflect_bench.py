#!/usr/bin/env python3
"""
reflect_bench.py -- config load time with descriptors from a file vs by gRPC server
reflection (`grpc-reflection://CLUSTER`), issue 13.

A @grpc/grpc-js server with @grpc/reflection (test/integration/reflect/reflect_server.js)
serves a protoc descriptor set; `portico --validate` loads the same config with
`descriptors: [ set.pb ]` and with `descriptors: [ grpc-reflection://shop ]`, interleaved,
ROUNDS times each. Printed: median wall time of the whole `--validate` process, median CPU
of the Portico process (utime+stime from RUSAGE_CHILDREN), and the fetch time Portico logs.
Two sets: the test's shop protos (6 files) and a larger one importing every well-known type.

    python3 bench/reflect_bench.py --build build [--rounds 15]
"""
import argparse
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import benchlib  # noqa: E402  (bench/benchlib.py: what every bench script shares)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RDIR = os.path.join(ROOT, "test", "integration", "reflect")
IMPORTS = [os.path.join(ROOT, "protos"), "/usr/include"]

BIG = """syntax = "proto3";
package big.v1;
import "google/api/annotations.proto";
import "google/protobuf/any.proto";
import "google/protobuf/api.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/empty.proto";
import "google/protobuf/field_mask.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/timestamp.proto";
import "google/protobuf/type.proto";
import "google/protobuf/wrappers.proto";
import "google/rpc/status.proto";
import "google/rpc/error_details.proto";
import "shop/v1/shop.proto";
import "shop/v1/types.proto";
service Big {
  rpc Get(Req) returns (google.protobuf.Struct) { option (google.api.http) = { get: "/v1/big/{id}" }; }
}
message Req {
  string id = 1; google.protobuf.Any any = 2; google.protobuf.Api api = 3;
  google.protobuf.Duration d = 4; google.protobuf.Empty e = 5; google.protobuf.FieldMask m = 6;
  google.protobuf.Timestamp t = 7; google.protobuf.Type ty = 8; google.protobuf.Int64Value w = 9;
  google.rpc.Status s = 10; google.rpc.BadRequest b = 11; shop.v1.Item item = 12;
}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def protoc(out, dirs, protos):
    subprocess.run(["protoc"] + ["-I" + d for d in dirs] +
                   ["--include_imports", "--descriptor_set_out=" + out] + protos,
                   check=True, capture_output=True, timeout=60)


def run_validate(binary, cfg):
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([binary, "--validate", "-c", cfg], capture_output=True, timeout=60)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError("validate failed: " + (r.stdout + r.stderr).decode())
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    m = re.search(rb"files \((\d+) bytes\) from .* in (\d+) ms", r.stderr)
    return wall * 1000, cpu * 1000, (int(m.group(2)) if m else None), (int(m.group(1)) if m else None)


def bench_set(binary, tmp, name, desc, rounds):
    port = free_port()
    srv = subprocess.Popen(["node", os.path.join(RDIR, "reflect_server.js"), desc,
                            "%d:both" % port], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, cwd=RDIR)
    try:
        line = srv.stdout.readline()
        if not line.startswith(b"listening"):
            raise RuntimeError("reflect_server.js: %r" % line)
        cfgs = {}
        for kind, entry in (("file", desc), ("reflection", "grpc-reflection://shop")):
            path = os.path.join(tmp, "%s-%s.yaml" % (name, kind))
            with open(path, "w") as f:
                f.write('listeners: [ { address: "127.0.0.1:%d" } ]\n'
                        'clusters: [ { name: shop, protocol: grpc, endpoints: [ "127.0.0.1:%d" ] } ]\n'
                        'descriptors: [ "%s" ]\nroutes: [ { grpc: { cluster: shop } } ]\n'
                        % (free_port(), port, entry))
            cfgs[kind] = path
        res = {"file": [], "reflection": []}
        run_validate(binary, cfgs["reflection"])  # warm the server (protobufjs encodings are lazy)
        for _ in range(rounds):
            for kind in ("file", "reflection"):
                res[kind].append(run_validate(binary, cfgs[kind]))
        size = os.path.getsize(desc)
        for kind in ("file", "reflection"):
            wall = statistics.median(r[0] for r in res[kind])
            cpu = statistics.median(r[1] for r in res[kind])
            fetch = [r[2] for r in res[kind] if r[2] is not None]
            extra = ("  fetch (logged) median %d ms" % statistics.median(fetch)) if fetch else ""
            print("  %-5s %-10s set %6d bytes: --validate wall %6.1f ms, portico CPU %6.1f ms%s"
                  % (name, kind, size, wall, cpu, extra))
    finally:
        benchlib.stop_all([srv])
        srv.stdout.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--rounds", type=int, default=15)
    a = ap.parse_args()
    binary = os.path.join(a.build, "bin", "portico")
    if shutil.which("node") is None or not os.path.isdir(
            os.path.join(ROOT, "test", "integration", "node_modules", "@grpc", "reflection")):
        print("reflect_bench: skipped (needs node and scripts/test-env.sh)")
        return 0
    with tempfile.TemporaryDirectory(prefix="portico-reflect-bench-") as tmp:
        shop = os.path.join(tmp, "shop.pb")
        protoc(shop, [os.path.join(RDIR, "proto")] + IMPORTS,
               ["shop/v1/shop.proto", "shop/v1/audit.proto"])
        with open(os.path.join(tmp, "big.proto"), "w") as f:
            f.write(BIG)
        big = os.path.join(tmp, "big.pb")
        protoc(big, [tmp, os.path.join(RDIR, "proto")] + IMPORTS, ["big.proto"])
        print("descriptors: file vs grpc-reflection:// (portico --validate, medians of %d "
              "interleaved rounds; shared machine)" % a.rounds)
        bench_set(binary, tmp, "shop", shop, a.rounds)
        bench_set(binary, tmp, "big", big, a.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
