#!/usr/bin/python3
"""
soap_callgrind.py -- issue 9's large-answer aim counted in user-space
instructions per request under valgrind's callgrind (load-independent: the
machine is shared, wall-clock figures are noise).

The example SOAP service (examples/soap) answers GetCustomer (id 2, ~0.7 KB)
and FindCustomers (limit 40, ~18 KB of repeated elements) once; nginx
replays those bytes for every POST (as soap_bench.py --upstreams replay).
Portico (-w 1) runs under callgrind; each row is a fixed number of requests
from h2load (HTTP/1.1, 8 connections) after a warm-up, the counters zeroed
before and dumped after, so start-up is not counted:
  proxy  the SOAP envelope POSTed through a `proxy:` route (no conversion)
  soap   the JSON body POSTed to a `soap:` route (JSON -> envelope -> JSON)
The last lines give soap / proxy (issue 9 aims at <= 2x CPU for the large
answer) and what the conversion adds for the small one.

  python3 bench/soap_callgrind.py [--build build] [--requests 1000] [--keep DIR]
"""
import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from proxy_bench import free_port, nginx_conf, wait_port  # noqa: E402
from soap_bench import CALLS, EX, envelope, post  # noqa: E402
import benchlib  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--keep", help="directory to copy the callgrind dumps to")
    args = ap.parse_args()
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    portico = os.path.abspath(os.path.join(args.build, "bin", "portico"))
    if not os.path.isdir(os.path.join(EX, "node_modules", "soap")):
        print("soap_callgrind: examples/soap/node_modules missing (run scripts/test-env.sh); skipped")
        return
    d = tempfile.mkdtemp(prefix="portico-soap-cg-")
    os.chmod(d, 0o755)  # nginx's workers read the recorded answers
    procs = []
    try:
        svc = subprocess.Popen(["node", os.path.join(EX, "server.js"), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=open(os.path.join(d, "svc.err"), "w"))
        procs.append(svc)
        line = svc.stdout.readline().decode()
        if not line.startswith("listening "):
            raise RuntimeError("the example SOAP service did not start")
        svc_port = int(line.split()[1])
        heads = {}
        for size, (op, jbody, inner) in CALLS.items():
            h = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"http://example.com/crm/{op}"'}
            heads[size] = h
            st, answer = post(f"http://127.0.0.1:{svc_port}/crm", envelope(inner), h)
            if st != 200:
                raise RuntimeError(f"{op}: the service answered {st}")
            for name, data in ((size, answer), (f"{size}.xml", envelope(inner)), (f"{size}.json", jbody)):
                with open(os.path.join(d, name), "wb") as f:
                    f.write(data)
                os.chmod(os.path.join(d, name), 0o644)
        ng_port, pt_port = free_port(), free_port()
        procs.append(subprocess.Popen(["nginx", "-c", nginx_conf(d, "replay", f"""
  server {{ listen 127.0.0.1:{ng_port}; root {d}; default_type "text/xml; charset=utf-8";
           location / {{ error_page 405 =200 $uri; }} }}"""), "-p", d]))
        wait_port(ng_port)
        crm = os.path.join(EX, "crm.wsdl")
        cfg = os.path.join(d, "portico.yaml")
        with open(cfg, "w") as f:
            f.write(f"""
listeners: [ {{ address: "127.0.0.1:{pt_port}" }} ]
limits: {{ max_requests_per_conn: 100000000 }}
clusters:
  - {{ name: replay, protocol: http, endpoints: [ "127.0.0.1:{ng_port}" ] }}
routes:
  - {{ match: {{ prefix: /replay/soap/small/ }},
      soap: {{ cluster: replay, wsdl: {crm}, port: CustomerSoap, path: /small }} }}
  - {{ match: {{ prefix: /replay/soap/large/ }},
      soap: {{ cluster: replay, wsdl: {crm}, port: CustomerSoap, path: /large }} }}
  - {{ match: {{ prefix: /small }}, proxy: {{ cluster: replay }} }}
  - {{ match: {{ prefix: /large }}, proxy: {{ cluster: replay }} }}
""")
        pt = subprocess.Popen(["valgrind", "--tool=callgrind", "--compress-strings=no", "--compress-pos=no",
                               "--callgrind-out-file=" + os.path.join(d, "cg.out"),
                               portico, "-c", cfg, "-w", "1"], cwd=d,
                              stderr=open(os.path.join(d, "pt.err"), "w"))
        procs.append(pt)
        wait_port(pt_port, 60)
        base = f"http://127.0.0.1:{pt_port}"
        rows = []
        for size, (op, _, _) in CALLS.items():
            h = heads[size]
            rows.append((f"{size} proxy", ["h2load", "--h1", "-c8", "-d", os.path.join(d, f"{size}.xml"),
                                           "-H", "content-type: " + h["Content-Type"],
                                           "-H", "soapaction: " + h["SOAPAction"], f"{base}/{size}"]))
            rows.append((f"{size} soap", ["h2load", "--h1", "-c8", "-d", os.path.join(d, f"{size}.json"),
                                          "-H", "content-type: application/json",
                                          f"{base}/replay/soap/{size}/{op}"]))
        res = {}
        for name, cmd in rows:
            keep = os.path.join(args.keep, name.replace(" ", "_")) if args.keep else None
            res[name] = benchlib.callgrind_per_request(pt.pid, cmd, args.requests, d, name,
                                                       warmup=200, keep=keep)
        sizes = {s: os.path.getsize(os.path.join(d, s)) for s in CALLS}
        print(f"\nPortico -w 1 under callgrind: user-space instructions per request, "
              f"{args.requests} requests per row (h2load --h1 -c8), upstream: nginx replaying the "
              f"example service's answers\n")
        for name, _ in rows:
            print(f"{name:<12} {res[name]:>10.0f}")
        print(f"\nlarge ({sizes['large']} B of XML): soap / proxy = "
              f"{res['large soap'] / res['large proxy']:.2f}x instructions")
        print(f"small ({sizes['small']} B of XML): the conversion adds "
              f"{res['small soap'] - res['small proxy']:.0f} instructions")
    finally:
        benchlib.stop_all(procs, d)


if __name__ == "__main__":
    main()
