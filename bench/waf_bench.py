#!/usr/bin/python3
"""
waf_bench.py -- what the `waf` filter (ModSecurity v3 + OWASP CRS 3.3, paranoia 1)
costs per request, next to the plain proxy, and the same for nginx with its
ModSecurity connector (Debian libnginx-mod-http-modsecurity, same libmodsecurity
and the same rules), in one run.

Targets (one worker each, behind them an nginx answering 13 bytes):
  portico        proxy route, no filter
  portico+waf    proxy route with `waf: { paranoia: 1 }`
  nginx          proxy_pass
  nginx+modsec   proxy_pass with `modsecurity on` (skipped when the module is absent)
Loads (wrk, HTTP/1.1 keep-alive, 8 connections): a small GET with a query, and
a POST of a 10 KB JSON document (100 fields). Each (load, target) runs
`--rounds` times, interleaved; the table shows the mean. CPU microseconds per
request are the proxy process's utime+stime from /proc over the run; "added"
is the WAF target minus its plain twin.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import children, cpu_seconds, free_port, nginx_conf, parse_wrk, wait_port  # noqa: E402
import benchlib  # noqa: E402  (bench/benchlib.py: what every bench script shares)

MODSEC_MODULE = "/usr/lib/nginx/modules/ngx_http_modsecurity_module.so"
CRS_SETUP = "/etc/modsecurity/crs/crs-setup.conf"
CRS_RULES = "/usr/share/modsecurity-crs/rules/REQUEST-*.conf"

# What the waf filter generates (plugins/waf.c), for nginx's rules file.
MODSEC_RULES = """SecRuleEngine On
SecRequestBodyAccess On
SecRequestBodyLimit 131072
SecRequestBodyNoFilesLimit 131072
SecRequestBodyLimitAction Reject
SecResponseBodyAccess Off
SecAuditEngine Off
SecRule REQUEST_HEADERS:Content-Type "@rx ^application/(?:[a-z0-9.+-]*\\+)?json" \
  "id:440002,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule REQBODY_ERROR "!@eq 0" "id:440003,phase:2,t:none,log,deny,status:400"
Include {setup}
SecAction "id:440010,phase:1,pass,nolog,t:none,setvar:tx.paranoia_level=1"
Include {rules}
"""


def body_10k():
    doc = {"field%03d" % i: "value %d of a product catalogue entry, plain words only" % i
           for i in range(100)}
    s = json.dumps(doc)
    return s + " " * max(0, 10240 - len(s))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--duration", type=int, default=int(os.environ.get("BENCH_SECONDS", "5")))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--conns", type=int, default=8)
    args = ap.parse_args()
    portico = os.path.join(args.build, "bin", "portico")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if shutil.which("wrk") is None or not os.path.exists(nginx):
        sys.exit("waf_bench: wrk and nginx are needed (scripts/install-deps.sh)")
    d = tempfile.mkdtemp(prefix="portico-wafbench-")
    procs = []
    try:
        up = free_port()
        procs.append(subprocess.Popen([nginx, "-c", nginx_conf(d, "upstream", f"""
  client_body_buffer_size 64k;
  server {{ listen 127.0.0.1:{up}; location / {{ return 200 "hello world!\\n"; }} }}""")]))
        proxy = (f'upstream backend {{ server 127.0.0.1:{up}; keepalive 64; }}\n'
                 '  client_body_buffer_size 64k;\n')
        loc = 'proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection "";'
        ng_port = free_port()
        ng = subprocess.Popen([nginx, "-c", nginx_conf(d, "nginx", proxy + f"""
  server {{ listen 127.0.0.1:{ng_port}; location / {{ {loc} }} }}""")])
        procs.append(ng)
        targets = []
        ngm = None
        if os.path.exists(MODSEC_MODULE):
            rules = os.path.join(d, "modsec.conf")
            with open(rules, "w") as f:
                f.write(MODSEC_RULES.format(setup=CRS_SETUP, rules=CRS_RULES))
            ngm_port = free_port()
            conf = nginx_conf(d, "nginx-modsec", proxy + f"""
  modsecurity on;
  modsecurity_rules_file {rules};
  server {{ listen 127.0.0.1:{ngm_port}; location / {{ {loc} }} }}""")
            with open(conf) as f:
                text = f.read()
            with open(conf, "w") as f:
                f.write(f"load_module {MODSEC_MODULE};\n" + text)
            ngm = subprocess.Popen([nginx, "-c", conf])
            procs.append(ngm)
        pt_port = free_port()
        cfg = os.path.join(d, "portico.yaml")
        with open(cfg, "w") as f:
            f.write(f"""
listeners:
  - address: 127.0.0.1:{pt_port}
limits: {{ max_requests_per_conn: 100000000 }}
clusters:
  - name: web
    endpoints: [ "127.0.0.1:{up}" ]
routes:
  - match: {{ prefix: /waf/ }}
    proxy: {{ cluster: web }}
    filters: [ {{ waf: {{ paranoia: 1 }} }} ]
  - match: {{ prefix: / }}
    proxy: {{ cluster: web }}
""")
        pt = subprocess.Popen([portico, "-c", cfg, "-w", "1"],
                              stderr=open(os.path.join(d, "pt.err"), "w"))
        procs.append(pt)
        for p in [up, ng_port, pt_port] + ([ngm_port] if ngm else []):
            wait_port(p, 30)
        time.sleep(0.5)
        targets = [("portico", pt_port, "/plain/", [pt.pid]),
                   ("portico+waf", pt_port, "/waf/", [pt.pid]),
                   ("nginx", ng_port, "/plain/", children(ng.pid) or [ng.pid])]
        if ngm:
            targets.append(("nginx+modsec", ngm_port, "/waf/", children(ngm.pid) or [ngm.pid]))
        post = os.path.join(d, "post.lua")
        with open(post, "w") as f:
            f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                    'wrk.headers["Host"] = "shop.example.com"\n'
                    "wrk.body = [[%s]]\n" % body_10k())
        get = os.path.join(d, "get.lua")
        with open(get, "w") as f:
            f.write('wrk.headers["Host"] = "shop.example.com"\n'
                    'wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64)"\n'
                    'wrk.headers["Accept"] = "application/json"\n')
        loads = [("GET small", get, "products?category=lamps&page=2"),
                 ("POST 10KB JSON", post, "orders")]
        res = {}
        for _ in range(args.rounds):
            for load, script, path in loads:
                for name, port, prefix, pids in targets:
                    url = f"http://127.0.0.1:{port}{prefix}{path}"
                    subprocess.run(["wrk", "-t1", "-c2", "-d1s", "-s", script, url],
                                   capture_output=True)
                    cpu0 = cpu_seconds(pids)
                    out = subprocess.run(["wrk", "-t1", f"-c{args.conns}", f"-d{args.duration}s",
                                          "--latency", "-s", script, url],
                                         capture_output=True, text=True).stdout
                    cpu = cpu_seconds(pids) - cpu0
                    rps, reqs, p50, p99, errs, _ = parse_wrk(out)
                    res.setdefault((load, name), []).append(
                        (rps, p50, p99, cpu * 1e6 / max(reqs, 1), errs))
        print(f"\nWAF benchmark: ModSecurity 3.0.9 + OWASP CRS 3.3.4 paranoia 1; wrk {args.conns} "
              f"connections, {args.duration}s x {args.rounds} rounds interleaved; one worker each\n")
        print(f"{'load':<15} {'target':<13} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'CPU us/req':>11} {'added us':>9} {'non-2xx':>8}")
        for load, _, _ in loads:
            base = {}
            for name, _, _, _ in targets:
                runs = res[(load, name)]
                n = len(runs)
                rps, p50, p99, cpu = (sum(r[i] for r in runs) / n for i in range(4))
                errs = sum(r[4] for r in runs)
                plain = name.split("+")[0]
                if name == plain:
                    base[plain] = cpu
                added = f"{cpu - base[plain]:.0f}" if name != plain and plain in base else "-"
                print(f"{load:<15} {name:<13} {rps:>9.0f} {p50:>8.3f} {p99:>8.3f} {cpu:>11.1f} "
                      f"{added:>9} {errs:>8}")
        if ngm is None:
            print("nginx+modsec: skipped, %s is not installed" % MODSEC_MODULE)
        print("(the machine is shared: compare rows of one run, not across runs)")
    finally:
        benchlib.stop_all(procs, d)


if __name__ == "__main__":
    main()
