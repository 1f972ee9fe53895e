#!/usr/bin/python3
"""
soap_bench.py -- what the JSON <-> SOAP conversion of a `soap:` route costs.

The same call three ways, side by side in one run, interleaved round by
round (the machine is shared and noisy: a quiet spell favours no one):
  direct  wrk POSTs the SOAP envelope to the service itself
  proxy   the same envelope through a Portico `proxy:` route (no conversion)
  soap    JSON through a Portico `soap:` route (JSON -> envelope -> JSON)
for a small answer (GetCustomer, ~0.8 KB of XML, ~0.5 KB of JSON) and a
larger one (FindCustomers limit 40: ~20 KB of repeated elements).

Two upstreams:
  node    the example service (examples/soap, npm `soap`). It is slow (a few
          thousand small calls per second on one core, far fewer large ones),
          so its req/s and p99 are the service's ceiling, not Portico's.
  replay  nginx answering every POST with the bytes the example service gave
          for the same call (recorded at start), so the upstream is not the
          bottleneck.
Portico's cost is its CPU time per request (utime+stime of the Portico
process from /proc over each run, divided by the requests wrk completed),
which does not depend on how fast the upstream is; that is the figure the
aims are stated in (conversion adds <= 25 us per small request and stays
within 2x the raw proxy's CPU for the large one). Portico -w 1, wrk -t1
-c16, loopback only; every process is stopped at the end.

With --before DIR a second Portico, built from another tree (e.g. the
commit before a change), serves the same routes on its own port, and its
soap route runs interleaved with the others as "soap-bef" (before/after in
the same run); --upstreams replay skips the slow node upstream.

usage: soap_bench.py [--build DIR] [--before DIR] [--upstreams node,replay] [--duration S]
                     [--rounds R] [--conns C]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from proxy_bench import cpu_seconds, free_port, nginx_conf, parse_wrk, wait_port  # noqa: E402

EX = os.path.join(ROOT, "examples", "soap")
NS11 = "http://schemas.xmlsoap.org/soap/envelope/"
CALLS = {
    "small": ("GetCustomer", b'{"id":2}', b"<GetCustomer xmlns=\"http://example.com/crm\"><id>2</id></GetCustomer>"),
    "large": ("FindCustomers", b'{"limit":40}',
              b"<FindCustomers xmlns=\"http://example.com/crm\"><limit>40</limit></FindCustomers>"),
}


def envelope(inner):
    return (b'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="' + NS11.encode() +
            b'"><soap:Body>' + inner + b"</soap:Body></soap:Envelope>")


def lua(path, body, headers):
    with open(path, "w") as f:
        f.write('wrk.method = "POST"\n')
        f.write("wrk.body = [==[" + body.decode() + "]==]\n")
        for k, v in headers.items():
            f.write(f'wrk.headers["{k}"] = [==[{v}]==]\n')
    return path


def post(url, body, headers):
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, r.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--before", help="build dir of a second Portico to compare (soap-bef rows)")
    ap.add_argument("--upstreams", default="node,replay")
    args = ap.parse_args()
    upstreams = [u for u in ("node", "replay") if u in args.upstreams.split(",")]
    if not os.path.isdir(os.path.join(EX, "node_modules", "soap")):
        print("soap_bench: examples/soap/node_modules missing (run scripts/test-env.sh); skipped")
        return
    for tool in ("node", "nginx", "wrk"):
        if shutil.which(tool) is None:
            print(f"soap_bench: {tool} not installed; skipped")
            return
    d = tempfile.mkdtemp(prefix="portico-soap-bench-")
    os.chmod(d, 0o755)  # nginx's workers (nobody when started as root) read the recorded answers
    procs = []
    try:
        svc = subprocess.Popen(["node", os.path.join(EX, "server.js"), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=open(os.path.join(d, "svc.err"), "w"))
        procs.append(svc)
        line = svc.stdout.readline().decode()
        if not line.startswith("listening "):
            raise RuntimeError("the example SOAP service did not start")
        svc_port = int(line.split()[1])

        # record the service's answers for the replaying nginx
        soap_headers = {}
        for size, (op, _, inner) in CALLS.items():
            h = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"http://example.com/crm/{op}"'}
            soap_headers[size] = h
            st, answer = post(f"http://127.0.0.1:{svc_port}/crm", envelope(inner), h)
            if st != 200:
                raise RuntimeError(f"{op}: the service answered {st}")
            with open(os.path.join(d, size), "wb") as f:
                f.write(answer)
            os.chmod(os.path.join(d, size), 0o644)
        ng_port = free_port()
        ng = subprocess.Popen(["nginx", "-c", nginx_conf(d, "replay", f"""
  server {{ listen 127.0.0.1:{ng_port}; root {d}; default_type "text/xml; charset=utf-8";
           location / {{ error_page 405 =200 $uri; }} }}"""), "-p", d])
        procs.append(ng)
        wait_port(ng_port)

        crm = os.path.join(EX, "crm.wsdl")

        def start_portico(build, name):
            port = free_port()
            cfg = os.path.join(d, f"{name}.yaml")
            with open(cfg, "w") as f:
                f.write(f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
limits: {{ max_requests_per_conn: 100000000 }}
clusters:
  - {{ name: node, protocol: http, endpoints: [ "127.0.0.1:{svc_port}" ] }}
  - {{ name: replay, protocol: http, endpoints: [ "127.0.0.1:{ng_port}" ] }}
routes:
  - {{ match: {{ prefix: /node/soap/ }}, soap: {{ cluster: node, wsdl: {crm}, port: CustomerSoap }} }}
  - {{ match: {{ prefix: /replay/soap/small/ }},
      soap: {{ cluster: replay, wsdl: {crm}, port: CustomerSoap, path: /small }} }}
  - {{ match: {{ prefix: /replay/soap/large/ }},
      soap: {{ cluster: replay, wsdl: {crm}, port: CustomerSoap, path: /large }} }}
  - {{ match: {{ prefix: /crm }}, proxy: {{ cluster: node }} }}
  - {{ match: {{ prefix: /small }}, proxy: {{ cluster: replay }} }}
  - {{ match: {{ prefix: /large }}, proxy: {{ cluster: replay }} }}
""")
            proc = subprocess.Popen([os.path.join(build, "bin", "portico"), "-c", cfg, "-w", "1"],
                                    stderr=open(os.path.join(d, f"{name}.err"), "w"))
            procs.append(proc)
            wait_port(port)
            return proc, port

        pt, pt_port = start_portico(args.build, "portico")
        kinds = ["direct", "proxy", "soap"]
        if args.before:
            ptb, ptb_port = start_portico(args.before, "portico-before")
            kinds.append("soap-bef")

        # the scripts, and one checked call of each kind
        runs = {}
        sizes = {}
        for size, (op, jbody, inner) in CALLS.items():
            env = envelope(inner)
            sh = soap_headers[size]
            jh = {"Content-Type": "application/json"}
            up_path = {"node": "/crm", "replay": f"/{size}"}
            soap_path = {"node": f"/node/soap/{op}", "replay": f"/replay/soap/{size}/{op}"}
            for upstream, up_port in (("node", svc_port), ("replay", ng_port)):
                if upstream not in upstreams:
                    continue
                runs[(size, upstream, "direct")] = (
                    f"http://127.0.0.1:{up_port}{up_path[upstream]}", lua(os.path.join(d, f"{size}-d.lua"), env, sh), [])
                runs[(size, upstream, "proxy")] = (
                    f"http://127.0.0.1:{pt_port}{up_path[upstream]}", lua(os.path.join(d, f"{size}-d.lua"), env, sh),
                    [pt.pid])
                runs[(size, upstream, "soap")] = (
                    f"http://127.0.0.1:{pt_port}{soap_path[upstream]}", lua(os.path.join(d, f"{size}-j.lua"), jbody, jh),
                    [pt.pid])
                st, xml_answer = post(runs[(size, upstream, "proxy")][0], env, sh)
                st2, json_answer = post(runs[(size, upstream, "soap")][0], jbody, jh)
                if st != 200 or st2 != 200:
                    raise RuntimeError(f"{size} {upstream}: proxy {st}, soap {st2}")
                if args.before:
                    runs[(size, upstream, "soap-bef")] = (
                        f"http://127.0.0.1:{ptb_port}{soap_path[upstream]}",
                        lua(os.path.join(d, f"{size}-j.lua"), jbody, jh), [ptb.pid])
                    st3, json_before = post(runs[(size, upstream, "soap-bef")][0], jbody, jh)
                    if st3 != 200 or json_before != json_answer:
                        raise RuntimeError(f"{size} {upstream}: the two builds answer differently")
                sizes[size] = (len(xml_answer), len(json_answer))

        def run(key, duration):
            url, script, pids = runs[key]
            c0 = cpu_seconds(pids)
            out = subprocess.run(["wrk", "-t1", f"-c{args.conns}", f"-d{duration}s", "--latency", "-s",
                                  script, url], capture_output=True, text=True).stdout
            cpu = cpu_seconds(pids) - c0
            rps, reqs, p50, p99, errs, sock = parse_wrk(out)
            if errs:
                raise RuntimeError(f"{key}: {errs} non-2xx answers")
            return rps, p99, (cpu * 1e6 / reqs if pids else None)

        for key in runs:  # warm-up: connections, pools, the JIT of the service
            run(key, 1)
        res = {key: [] for key in runs}
        for _ in range(args.rounds):
            for key in runs:
                res[key].append(run(key, args.duration))

        print(f"\nSOAP route vs raw proxy vs direct: Portico -w 1, wrk -t1 -c{args.conns}, "
              f"{args.rounds} rounds x {args.duration}s interleaved, medians; shared 2-core machine")
        for size, (xl, jl) in sizes.items():
            print(f"  {size}: {CALLS[size][0]}, answer {xl} B of XML -> {jl} B of JSON")
        print(f"{'answer':6} {'upstream':8} {'path':7} {'req/s':>9} {'p99 ms':>8} {'us CPU/req':>11}")
        for size in CALLS:
            for upstream in upstreams:
                med = {}
                for kind in kinds:
                    rows = res[(size, upstream, kind)]
                    rps = statistics.median(r[0] for r in rows)
                    p99 = statistics.median(r[1] for r in rows)
                    cpu = statistics.median(r[2] for r in rows) if rows[0][2] is not None else None
                    med[kind] = cpu
                    print(f"{size:6} {upstream:8} {kind:7} {rps:9.0f} {p99:8.2f} "
                          f"{(f'{cpu:11.1f}' if cpu is not None else '          -')}")
                for kind in kinds[2:]:
                    print(f"{size:6} {upstream:8} {kind}: conversion adds {med[kind] - med['proxy']:.1f} us "
                          f"CPU per request ({med[kind] / med['proxy']:.2f}x the raw proxy)")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
