"""
test_tracing.py -- W3C Trace Context and OTLP/HTTP span export
(gateway/observe/trace.c) through the real binary.

A small collector (python http.server) receives the batches, OTLP/HTTP
protobuf (the default; decoded by otlp_pb.py with python3-protobuf) or JSON
(`protocol: json`); a REST echo upstream, a python3-grpcio backend
(bookstore.v1.Bookstore with raw-bytes handlers, behind a grpc REST route,
native gRPC and an aggregate's grpc call) and a SOAP back end answering a
fault record the trace context they got. Checks: a new trace when the client
sends none, continuation of a client's traceparent (same trace id, new span
id, the client's span as the server span's parent), malformed traceparent ->
a new trace and tracestate dropped, unsampled parents propagated but not
exported, the OTLP structure, every upstream call (proxy, grpc, soap route,
aggregate http/grpc/soap sub-calls) carrying a traceparent of its own whose
span is the exported client span (child of the server span), gRPC metadata,
the trace id in the access log, spans queued at shutdown sent before exit,
the drop counter in /metrics when the collector is down.
"""
import http.server
import json
import os
import re
import socketserver
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bookstore"))

from portico_test import EchoServer, Portico, curl, free_port  # noqa: E402
from bookstore_server import PB, grpc  # noqa: E402
import otlp_pb  # noqa: E402

CRM = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(HERE))), "examples", "soap", "crm.wsdl")

TP = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-0([01])$")


class Collector(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):
                pass

            def do_POST(h):
                body = h.rfile.read(int(h.headers.get("Content-Length", "0")))
                ctype = h.headers.get("Content-Type")
                doc = otlp_pb.decode(body) if ctype == "application/x-protobuf" else json.loads(body)
                with self.lock:
                    self.posts.append((h.path, ctype, doc))
                h.send_response(200)
                h.send_header("Content-Type", "application/json")
                h.send_header("Content-Length", "2")
                h.end_headers()
                h.wfile.write(b"{}")

        super().__init__(("127.0.0.1", 0), H)
        self.port = self.server_address[1]
        self.posts = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def spans(self):
        out = []
        with self.lock:
            for _, _, doc in self.posts:
                for rs in doc["resourceSpans"]:
                    svc = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
                    for ss in rs["scopeSpans"]:
                        for s in ss["spans"]:
                            s = dict(s)
                            s["_service"] = svc["service.name"]["stringValue"]
                            s["_attrs"] = {a["key"]: list(a["value"].values())[0] for a in s["attributes"]}
                            out.append(s)
        return out

    def wait(self, trace_id, count, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [s for s in self.spans() if s["traceId"] == trace_id]
            if len(got) >= count:
                return got
            time.sleep(0.05)
        self.fail_spans = self.spans()
        raise AssertionError("spans of %s: %d of %d after %.0fs" % (trace_id, len(got), count, timeout))

    def stop(self):
        self.shutdown()
        self.server_close()


class GrpcBackend:
    """bookstore.v1.Bookstore/GetShelf answering an empty Shelf; records the metadata it got."""

    def __init__(self):
        from concurrent import futures
        self.md = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = {"GetShelf": grpc.unary_unary_rpc_method_handler(self.get_shelf)}
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("bookstore.v1.Bookstore", handlers),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def get_shelf(self, req, ctx):
        self.md.append(dict(ctx.invocation_metadata()))
        return b"\x08\x07"  # Shelf { id: 7 }

    def stop(self):
        self.server.stop(0)


class SoapFaultServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """A SOAP 1.1 back end that answers every call with a soap:Client fault; records the headers."""
    daemon_threads = True
    allow_reuse_address = True
    FAULT = (b'<?xml version="1.0"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
             b"<soap:Body><soap:Fault><faultcode>soap:Client</faultcode><faultstring>no such customer"
             b"</faultstring></soap:Fault></soap:Body></soap:Envelope>")

    def __init__(self):
        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def do_POST(h):
                h.rfile.read(int(h.headers.get("Content-Length", "0")))
                with self.lock:
                    self.headers.append({k.lower(): v for k, v in h.headers.items()})
                h.send_response(500)
                h.send_header("Content-Type", "text/xml; charset=utf-8")
                h.send_header("Content-Length", str(len(SoapFaultServer.FAULT)))
                h.end_headers()
                h.wfile.write(SoapFaultServer.FAULT)

        super().__init__(("127.0.0.1", 0), H)
        self.port = self.server_address[1]
        self.headers = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self):
        self.shutdown()
        self.server_close()


class TracingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.col = Collector()
        cls.echo = EchoServer()
        cls.gb = GrpcBackend()
        cls.soap = SoapFaultServer()
        cls.port, cls.admin = free_port(), free_port()
        cls.gw = Portico(f"""
listeners: [ {{ address: "127.0.0.1:{cls.port}", h2c: true }} ]
admin: {{ address: "127.0.0.1:{cls.admin}" }}
access_log: {{ path: access.log }}
workers: 2
tracing: {{ otlp_endpoint: "http://127.0.0.1:{cls.col.port}/v1/traces", sample: 1.0,
           service_name: edge-test, flush_interval: 100ms }}
descriptors: [ {PB} ]
clusters:
  - {{ name: web, endpoints: [ "127.0.0.1:{cls.echo.port}" ] }}
  - {{ name: books, protocol: grpc, endpoints: [ "127.0.0.1:{cls.gb.port}" ] }}
  - {{ name: crmsvc, endpoints: [ "127.0.0.1:{cls.soap.port}" ] }}
routes:
  - name: agg
    match: {{ path: /agg }}
    aggregate:
      calls:
        - {{ name: h, http: {{ cluster: web, path: "/agg/h" }} }}
        - {{ name: g, grpc: {{ cluster: books, method: bookstore.v1.Bookstore/GetShelf, body: {{ shelf: 7 }} }} }}
        - {{ name: s, optional: true, soap: {{ route: crm, operation: GetCustomer, body: {{ id: 1 }} }} }}
  - name: crm
    match: {{ prefix: /crm/ }}
    soap: {{ cluster: crmsvc, wsdl: {CRM}, port: CustomerSoap }}
  - name: shelves
    match: {{ prefix: /v1/ }}
    grpc: {{ cluster: books }}
  - name: native
    match: {{ prefix: /bookstore.v1.Bookstore/ }}
    grpc: {{ cluster: books }}
  - name: api
    match: {{ prefix: / }}
    proxy: {{ cluster: web }}
""", workers=2)
        try:
            cls.gw.wait_ready(cls.port)
        except Exception:
            print(cls.gw.output())
            raise
        cls.base = f"http://127.0.0.1:{cls.port}"

    @classmethod
    def tearDownClass(cls):
        rc = cls.gw.stop()
        cls.col.stop()
        cls.echo.stop()
        cls.gb.stop()
        cls.soap.stop()
        assert rc == 0, "portico did not exit cleanly"

    def upstream_tp(self, path):
        for r in reversed(self.echo.requests):
            if r["path"] == path:
                return r["headers"]
        self.fail("the upstream never saw " + path)

    def test_new_trace_and_export(self):
        st, h, body, err = curl(f"{self.base}/new/1")
        self.assertEqual(st, 200, err)
        up = self.upstream_tp("/new/1")
        m = TP.match(up["traceparent"])
        self.assertIsNotNone(m, up["traceparent"])
        trace, span, sampled = m.groups()
        self.assertEqual(sampled, "1")
        spans = self.col.wait(trace, 2)
        server = [s for s in spans if s["kind"] == 2]
        client = [s for s in spans if s["kind"] == 3]
        self.assertEqual((len(server), len(client)), (1, 1), spans)
        server, client = server[0], client[0]
        # the upstream's parent is Portico's client span, a child of the server span
        self.assertEqual(client["spanId"], span)
        self.assertNotIn("parentSpanId", server)
        self.assertEqual(client["parentSpanId"], server["spanId"])
        self.assertNotEqual(server["spanId"], span)
        self.assertEqual(server["_service"], "edge-test")
        self.assertEqual(server["name"], "GET api")
        self.assertEqual(server["_attrs"]["http.route"], "api")
        self.assertEqual(server["_attrs"]["http.response.status_code"], "200")
        self.assertEqual(server["_attrs"]["url.path"], "/new/1")
        self.assertEqual(server["_attrs"]["portico.request_id"], h["x-request-id"])
        self.assertEqual(client["_attrs"]["portico.upstream"], "web")
        self.assertEqual(client["_attrs"]["http.response.status_code"], "200")
        self.assertIn(f"127.0.0.1:{self.echo.port}", client["_attrs"]["server.address"])
        for s in (server, client):
            self.assertTrue(re.fullmatch(r"[0-9a-f]{16}", s["spanId"]))
            self.assertLessEqual(int(s["startTimeUnixNano"]), int(s["endTimeUnixNano"]))
            self.assertLess(abs(int(s["startTimeUnixNano"]) / 1e9 - time.time()), 60)
        self.assertLessEqual(int(server["startTimeUnixNano"]), int(client["startTimeUnixNano"]))
        with self.col.lock:
            path, ctype, _ = self.col.posts[-1]
        self.assertEqual((path, ctype), ("/v1/traces", "application/x-protobuf"))
        # the trace id in the access log
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with open(os.path.join(self.gw.dir, "access.log")) as f:
                lines = [json.loads(x) for x in f if '"/new/1"' in x]
            if lines:
                break
            time.sleep(0.05)
        self.assertEqual(lines[-1]["trace_id"], trace)

    def test_continued_trace(self):
        trace, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        st, h, body, err = curl("-H", f"traceparent: 00-{trace}-{parent}-01",
                                "-H", "tracestate: vendor=abc,other=1", f"{self.base}/cont/1")
        self.assertEqual(st, 200, err)
        up = self.upstream_tp("/cont/1")
        t, span, sampled = TP.match(up["traceparent"]).groups()
        self.assertEqual((t, sampled), (trace, "1"))
        self.assertNotEqual(span, parent)
        self.assertEqual(up["tracestate"], "vendor=abc,other=1")
        spans = self.col.wait(trace, 2)
        server = [s for s in spans if s["kind"] == 2][0]
        client = [s for s in spans if s["kind"] == 3][0]
        self.assertEqual(server["parentSpanId"], parent)
        self.assertEqual(client["spanId"], span)
        self.assertEqual(client["parentSpanId"], server["spanId"])

    def test_malformed_starts_new_trace(self):
        bad = ["00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # uppercase
               "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
               "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent
               "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
               "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",  # 00 with more
               "garbage"]
        for i, v in enumerate(bad):
            st, h, body, err = curl("-H", "traceparent: " + v, "-H", "tracestate: a=b",
                                    f"{self.base}/bad/{i}")
            self.assertEqual(st, 200, err)
            up = self.upstream_tp(f"/bad/{i}")
            t, span, sampled = TP.match(up["traceparent"]).groups()
            self.assertNotEqual(t, "4bf92f3577b34da6a3ce929d0e0e4736", v)
            self.assertNotIn("tracestate", up, v)
            server = [s for s in self.col.wait(t, 2) if s["kind"] == 2][0]
            self.assertNotIn("parentSpanId", server)
        # a later version with more fields is read by its first four
        v = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"
        curl("-H", "traceparent: " + v, f"{self.base}/future")
        self.assertEqual(TP.match(self.upstream_tp("/future")["traceparent"]).group(1),
                         "4bf92f3577b34da6a3ce929d0e0e4736")

    def test_unsampled_parent_propagated_not_exported(self):
        trace = "11111111111111111111111111111111"
        curl("-H", f"traceparent: 00-{trace}-2222222222222222-00", f"{self.base}/unsampled")
        t, span, sampled = TP.match(self.upstream_tp("/unsampled")["traceparent"]).groups()
        self.assertEqual((t, sampled), (trace, "0"))
        # a sampled request sent after it is exported; the unsampled one never is
        st, h, body, err = curl(f"{self.base}/after-unsampled")
        t2 = TP.match(self.upstream_tp("/after-unsampled")["traceparent"]).group(1)
        self.col.wait(t2, 2)
        time.sleep(0.3)
        self.assertEqual([s for s in self.col.spans() if s["traceId"] == trace], [])

    def test_grpc_rest_and_native_metadata(self):
        st, h, body, err = curl(f"{self.base}/v1/shelves/7")
        self.assertEqual(st, 200, err + body.decode())
        md = self.gb.md[-1]
        t, span, _ = TP.match(md["traceparent"]).groups()
        spans = self.col.wait(t, 2)
        client = [s for s in spans if s["kind"] == 3][0]
        server = [s for s in spans if s["kind"] == 2][0]
        self.assertEqual(client["_attrs"]["rpc.system"], "grpc")
        self.assertEqual(client["_attrs"]["rpc.method"], "/bookstore.v1.Bookstore/GetShelf")
        self.assertEqual(client["name"], "bookstore.v1.Bookstore/GetShelf")
        self.assertEqual(client["parentSpanId"], server["spanId"])
        self.assertEqual(client["spanId"], span)  # the metadata names the client span
        self.assertEqual(server["_attrs"]["http.route"], "shelves")
        # native gRPC, continuing the client's trace
        trace = "abcdefabcdefabcdefabcdefabcdef12"
        ch = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        try:
            call = ch.unary_unary("/bookstore.v1.Bookstore/GetShelf")
            call(b"\x08\x07", timeout=10,
                 metadata=(("traceparent", f"00-{trace}-1234567812345678-01"),))
        finally:
            ch.close()
        t, span, _ = TP.match(self.gb.md[-1]["traceparent"]).groups()
        self.assertEqual(t, trace)
        self.assertNotEqual(span, "1234567812345678")
        spans = self.col.wait(trace, 2)
        server = [s for s in spans if s["kind"] == 2][0]
        self.assertEqual(server["parentSpanId"], "1234567812345678")
        client = [s for s in spans if s["kind"] == 3][0]
        self.assertEqual(client["parentSpanId"], server["spanId"])
        self.assertEqual(client["spanId"], span)  # the metadata names the client span


    def test_aggregate_subcalls(self):
        trace, parent = "5bf92f3577b34da6a3ce929d0e0e4737", "10f067aa0ba902b7"
        st, h, body, err = curl("-H", f"traceparent: 00-{trace}-{parent}-01", "-H", "tracestate: v=agg",
                                f"{self.base}/agg")
        self.assertEqual(st, 200, err + body.decode())
        got = {"h": self.upstream_tp("/agg/h"), "g": self.gb.md[-1]}
        with self.soap.lock:
            got["s"] = self.soap.headers[-1]
        ids = {}
        for k, hd in got.items():
            t, span, sampled = TP.match(hd["traceparent"]).groups()
            self.assertEqual((t, sampled), (trace, "1"), k)
            self.assertEqual(hd.get("tracestate"), "v=agg", k)
            ids[k] = span
        self.assertEqual(len(set(ids.values())), 3, ids)  # a span of its own for each call
        spans = self.col.wait(trace, 4)
        server = [s for s in spans if s["kind"] == 2]
        self.assertEqual(len(server), 1, spans)
        self.assertEqual(server[0]["parentSpanId"], parent)
        self.assertEqual(server[0]["_attrs"]["http.route"], "agg")
        client = {s["spanId"]: s for s in spans if s["kind"] == 3}
        self.assertEqual(set(client), set(ids.values()), spans)
        for k, span in ids.items():
            self.assertEqual(client[span]["parentSpanId"], server[0]["spanId"], k)
            self.assertNotIn(span, (server[0]["spanId"], parent))
        self.assertEqual(client[ids["h"]]["_attrs"]["portico.upstream"], "web")
        self.assertEqual(client[ids["h"]]["_attrs"]["url.path"], "/agg/h")
        self.assertEqual(client[ids["g"]]["_attrs"]["rpc.method"], "/bookstore.v1.Bookstore/GetShelf")
        self.assertEqual(client[ids["s"]]["_attrs"]["portico.upstream"], "crmsvc")
        self.assertEqual(client[ids["s"]]["_attrs"]["http.response.status_code"], "500")
        self.assertEqual(client[ids["s"]]["status"]["code"], 2)  # the fault: an error span

    def test_soap_route(self):
        before = len(self.soap.headers)
        st, h, body, err = curl("-X", "POST", "-H", "content-type: application/json", "-d", '{"id": 1}',
                                f"{self.base}/crm/GetCustomer")
        self.assertNotEqual(st, 0, err)
        with self.soap.lock:
            self.assertEqual(len(self.soap.headers), before + 1)
            hd = self.soap.headers[-1]
        t, span, sampled = TP.match(hd["traceparent"]).groups()
        spans = self.col.wait(t, 2)
        server = [s for s in spans if s["kind"] == 2][0]
        client = [s for s in spans if s["kind"] == 3][0]
        self.assertEqual(server["_attrs"]["http.route"], "crm")
        self.assertEqual(client["spanId"], span)
        self.assertEqual(client["parentSpanId"], server["spanId"])
        self.assertEqual(client["name"], "POST crmsvc")


def collector_portico(test, col, echo, extra):
    port = free_port()
    gw = Portico(f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
tracing: {{ otlp_endpoint: "http://127.0.0.1:{col.port}/v1/traces", service_name: t2, {extra} }}
clusters: [ {{ name: web, endpoints: [ "127.0.0.1:{echo.port}" ] }} ]
routes: [ {{ name: all, match: {{ prefix: / }}, proxy: {{ cluster: web }} }} ]
""")
    try:
        gw.wait_ready(port)
    except Exception:
        print(gw.output())
        gw.stop()
        raise
    return gw, port


class TracingExportTest(unittest.TestCase):
    def setUp(self):
        self.col = Collector()
        self.addCleanup(self.col.stop)
        self.echo = EchoServer()
        self.addCleanup(self.echo.stop)

    def test_json_protocol(self):
        gw, port = collector_portico(self, self.col, self.echo, "protocol: json, flush_interval: 50ms")
        try:
            st, _, _, err = curl(f"http://127.0.0.1:{port}/json/1")
            self.assertEqual(st, 200, err)
            t = TP.match(self.echo.requests[-1]["headers"]["traceparent"]).group(1)
            spans = self.col.wait(t, 2)
            self.assertEqual(sorted(s["kind"] for s in spans), [2, 3])
            self.assertEqual({s["_service"] for s in spans}, {"t2"})
            with self.col.lock:
                self.assertEqual({c for _, c, _ in self.col.posts}, {"application/json"})
        finally:
            self.assertEqual(gw.stop(), 0)

    def test_shutdown_flushes_queued_spans(self):
        # a flush interval far beyond the test: only the shutdown flush can send these
        gw, port = collector_portico(self, self.col, self.echo, "flush_interval: 60s")
        try:
            traces = []
            for i in range(5):
                st, _, _, err = curl(f"http://127.0.0.1:{port}/late/{i}")
                self.assertEqual(st, 200, err)
                traces.append(TP.match(self.echo.requests[-1]["headers"]["traceparent"]).group(1))
            time.sleep(0.2)
            self.assertEqual(self.col.spans(), [])
        finally:
            self.assertEqual(gw.stop(), 0)
        got = self.col.spans()
        self.assertEqual(sorted({s["traceId"] for s in got}), sorted(traces))
        self.assertEqual(len(got), 10)


class TracingDropsTest(unittest.TestCase):
    def test_collector_down_counts_drops(self):
        echo = EchoServer()
        self.addCleanup(echo.stop)
        port, admin, dead = free_port(), free_port(), free_port()
        gw = Portico(f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
admin: {{ address: "127.0.0.1:{admin}" }}
tracing: {{ otlp_endpoint: "http://127.0.0.1:{dead}/v1/traces", flush_interval: 50ms, queue: 16 }}
clusters: [ {{ name: web, endpoints: [ "127.0.0.1:{echo.port}" ] }} ]
routes: [ {{ match: {{ prefix: / }}, proxy: {{ cluster: web }} }} ]
""")
        try:
            gw.wait_ready(port)
            for i in range(30):
                st, _, _, err = curl(f"http://127.0.0.1:{port}/x/{i}")
                self.assertEqual(st, 200, err)  # requests never wait for the exporter
            deadline = time.monotonic() + 10
            dropped = 0
            while time.monotonic() < deadline:
                _, _, m, _ = curl(f"http://127.0.0.1:{admin}/metrics")
                dropped = int(re.search(rb"portico_trace_spans_dropped_total (\d+)", m).group(1))
                failures = int(re.search(rb"portico_trace_export_failures_total (\d+)", m).group(1))
                if dropped >= 60 and failures >= 1:
                    break
                time.sleep(0.1)
            self.assertEqual(dropped, 60)  # 30 server + 30 client spans, none exported
            self.assertIn(b"portico_trace_spans_exported_total 0", m)
        finally:
            self.assertEqual(gw.stop(), 0)

    def test_bad_config(self):
        for cfg, want in (("{ otlp_endpoint: ftp://x/ }", "expected an http:// or https:// URL"),
                          ("{ otlp_endpoint: http://x/, sample: 1.5 }", "from 0 to 1"),
                          ("{ sample: 0.5 }", "otlp_endpoint"),
                          ("{ otlp_endpoint: http://x/, queue: 1 }", "out of range"),
                          ("{ otlp_endpoint: http://x/, protocol: grpc }", "expected protobuf or json")):
            port = free_port()
            gw = Portico(f"""
listeners: [ {{ address: "127.0.0.1:{port}" }} ]
tracing: {cfg}
""")
            try:
                gw.proc.wait(20)
                out = gw.output()
            finally:
                gw.stop()
            self.assertNotEqual(gw.proc.returncode, 0, cfg)
            self.assertIn(want, out, cfg)
            self.assertRegex(out, r"portico\.yaml:\d+:\d+: ")


if __name__ == "__main__":
    unittest.main()
