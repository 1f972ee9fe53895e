"""
test_grpc_ws_bridge.py -- the WebSocket <-> gRPC bridge of `grpc` routes
through the real portico binary, against examples/bookstore's bookstore-server
(WatchBooks: server streaming, BulkCreateBooks: client streaming, Chat: bidi)
and, for what the bookstore cannot show (a cancel seen by the backend, a
backend that streams faster than the client reads), a small python3-grpcio
backend.

Clients: the npm `ws` client (ws_bridge_client.js, one plan per run) and a
headless Chromium page driven over the DevTools protocol
(ws_bridge_browser.js).
"""
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "bookstore"))

from portico_test import Portico, curl, free_port  # noqa: E402
from bookstore_server import BookstoreServer, PB, grpc, pb  # noqa: E402

CLIENT = os.path.join(HERE, "ws_bridge_client.js")
BROWSER = os.path.join(HERE, "ws_bridge_browser.js")


class FakeBackend:
    """bookstore.v1.Bookstore's Chat and WatchBooks, observable:
    Chat answers each message and records when its client cancels;
    WatchBooks streams 16 KiB messages as fast as it may and counts them."""

    def __init__(self):
        from concurrent import futures
        self.cancelled = threading.Event()
        self.chat_started = threading.Event()
        self.sent = 0
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handlers = {
            "Chat": grpc.stream_stream_rpc_method_handler(
                self.chat, request_deserializer=pb.ChatMessage.FromString,
                response_serializer=pb.ChatMessage.SerializeToString),
            "WatchBooks": grpc.unary_stream_rpc_method_handler(
                self.watch, request_deserializer=pb.WatchBooksRequest.FromString,
                response_serializer=pb.WatchBooksResponse.SerializeToString),
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("bookstore.v1.Bookstore", handlers),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def chat(self, it, ctx):
        ctx.add_callback(lambda: None if ctx.is_active() else self.cancelled.set())
        self.chat_started.set()
        for m in it:
            yield pb.ChatMessage(**{"from": "fake", "text": m.text, "to": getattr(m, "from")})

    def watch(self, req, ctx):
        self.sent = 0
        book = pb.Book(title="x" * 16384)
        while ctx.is_active() and self.sent < req.count:
            self.sent += 1
            yield pb.WatchBooksResponse(sequence=self.sent, book=book)

    def stop(self):
        self.server.stop(0)


CONFIG = """
listeners:
  - address: 127.0.0.1:{port}
workers: 2
descriptors: [ {pb} ]
clusters:
  - {{ name: books, protocol: grpc, endpoints: [ "127.0.0.1:{bs}" ] }}
  - {{ name: fake, protocol: grpc, endpoints: [ "127.0.0.1:{fake}" ] }}
  - {{ name: doomed, protocol: grpc, endpoints: [ "127.0.0.1:{doomed}" ] }}
limits: {{ max_response_buffer: 64k }}
routes:
  - match: {{ host: fake.test }}
    grpc: {{ cluster: fake }}
  - match: {{ host: doomed.test }}
    grpc: {{ cluster: doomed }}
  - match: {{ host: origin.test }}
    grpc: {{ cluster: books, web_origins: [ "https://app.example" ] }}
  - grpc:
      cluster: books
      websocket: {{ max_message: 4k }}
"""


def run_client(plan, timeout=20):
    p = subprocess.run(["node", CLIENT, json.dumps(plan)], capture_output=True, timeout=timeout)
    if p.returncode != 0 or not p.stdout:
        raise AssertionError("client failed: %r %r" % (p.stdout, p.stderr))
    return json.loads(p.stdout.decode().splitlines()[-1])


def texts(res):
    return [json.loads(m["data"]) for m in res["received"] if m["type"] == "text"]


class WsBridgeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.bs = BookstoreServer(threads=2).start()
        cls.doomed = BookstoreServer(threads=1).start()
        cls.fake = FakeBackend()
        cls.port = free_port()
        cls.portico = Portico(CONFIG.format(port=cls.port, pb=PB, bs=cls.bs.port,
                                            fake=cls.fake.port, doomed=cls.doomed.port),
                              workers=2).wait_ready(cls.port)
        cls.base = "ws://127.0.0.1:%d" % cls.port

    @classmethod
    def tearDownClass(cls):
        cls.portico.stop()
        cls.fake.stop()
        cls.doomed.stop()
        cls.bs.stop()

    def ws(self, path, steps=(), host=None, **kw):
        plan = {"url": self.base + path, "steps": list(steps)}
        if host is not None:
            plan["headers"] = {"Host": "%s:%d" % (host, self.port)}
        plan.update(kw)
        return run_client(plan)

    # ---- the three shapes ------------------------------------------------------------

    def test_server_streaming_watch(self):
        res = self.ws("/v1/shelves/1/books:watch?count=3&interval_ms=5")
        self.assertTrue(res["open"], res)
        msgs = texts(res)
        self.assertEqual([m["sequence"] for m in msgs], ["1", "2", "3"])
        self.assertEqual(msgs[0]["book"]["shelf"], "1")
        self.assertEqual(res["close"]["code"], 1000)

    def test_client_streaming_bulk_create(self):
        tag = str(time.monotonic_ns())
        steps = [{"text": json.dumps({"author": "A", "title": "ws-%s-%d" % (tag, i)})}
                 for i in range(3)] + [{"close": 1000}]
        res = self.ws("/v1/shelves/2/books:bulkCreate", steps)
        msgs = texts(res)
        self.assertEqual(len(msgs), 1, res)
        books = msgs[0]["books"]
        # the path's {shelf} went into every request message
        self.assertEqual([(b["shelf"], b["title"]) for b in books],
                         [("2", "ws-%s-%d" % (tag, i)) for i in range(3)])
        self.assertEqual(res["close"]["code"], 1000)
        # the body "*" binding: each message is a whole CreateBookRequest
        res = self.ws("/v1/books:bulkCreate",
                      [{"text": json.dumps({"shelf": 1, "book": {"author": "B",
                                                                  "title": "star-" + tag}})},
                       {"close": 0}])
        self.assertEqual(texts(res)[0]["books"][0]["shelf"], "1")
        self.assertEqual(res["close"]["code"], 1000)

    def test_bidi_chat_and_half_close(self):
        res = self.ws("/v1/rooms/lobby/chat?from=ann",
                      [{"text": '"hi"'}, {"wait": 1}, {"text": '"there"'}, {"wait": 2}])
        self.assertEqual([(m["text"], m["room"], m["to"]) for m in texts(res)[:2]],
                         [("hi", "lobby", "ann"), ("there", "lobby", "ann")])
        # Messages sent and the close frame right behind them: the close half-closes the
        # call and every reply still arrives before Portico's close.
        steps = [{"text": '"m%d"' % i} for i in range(5)] + [{"close": 1000}]
        res = self.ws("/v1/rooms/r2/chat?from=bob", steps)
        self.assertEqual([m["text"] for m in texts(res)], ["m%d" % i for i in range(5)])
        self.assertEqual([m["sequence"] for m in texts(res)], [str(i) for i in range(1, 6)])
        self.assertEqual(res["close"]["code"], 1000)
        # body "*": the whole ChatMessage per text message
        res = self.ws("/v1/chat", [{"text": json.dumps({"from": "cy", "text": "yo",
                                                        "room": "r3"})}, {"close": 1000}])
        self.assertEqual([(m["text"], m["to"], m["room"]) for m in texts(res)],
                         [("yo", "cy", "r3")])

    def test_binary_protobuf_subprotocol(self):
        msg = pb.ChatMessage(text="bin")
        res = self.ws("/v1/rooms/bin/chat?from=dee",
                      [{"binary_b64": base64.b64encode(msg.SerializeToString()).decode()},
                       {"close": 1000}], protocols=["grpc-ws-proto"])
        self.assertEqual(res["protocol"], "grpc-ws-proto")
        self.assertEqual([m["type"] for m in res["received"]], ["binary"])
        reply = pb.ChatMessage.FromString(base64.b64decode(res["received"][0]["b64"]))
        # path and query values are merged into binary messages too
        self.assertEqual((reply.text, reply.room, reply.to), ("bin", "bin", "dee"))
        # a binary message without the subprotocol: answers stay JSON
        res = self.ws("/v1/rooms/bin/chat?from=dee",
                      [{"binary_b64": base64.b64encode(msg.SerializeToString()).decode()},
                       {"close": 1000}], protocols=["grpc-ws-json"])
        self.assertEqual((res["protocol"], texts(res)[0]["text"]), ("grpc-ws-json", "bin"))

    def test_ping_answered_by_portico(self):
        res = self.ws("/v1/rooms/p/chat?from=p", [{"ping": "are you there"}, {"text": '"x"'},
                                                  {"close": 1000}])
        self.assertEqual(res["pongs"], ["are you there"])
        self.assertEqual(res["close"]["code"], 1000)

    # ---- errors --------------------------------------------------------------------------

    def test_status_before_first_message(self):
        res = self.ws("/v1/shelves/424242/books:watch?count=3")
        self.assertTrue(res["open"])
        self.assertEqual(len(res["received"]), 1)
        err = texts(res)[0]["error"]
        self.assertEqual(err["code"], 5)
        # details rendered as the REST part renders them
        self.assertEqual(err["details"][0]["@type"], "type.googleapis.com/google.rpc.ResourceInfo")
        self.assertEqual(res["close"]["code"], 4005)

    def test_status_after_first_message(self):
        res = self.ws("/v1/shelves/1/books:watch?count=5&interval_ms=5&abort_after=2")
        msgs = texts(res)
        self.assertEqual([m.get("sequence") for m in msgs[:2]], ["1", "2"])
        self.assertEqual(msgs[2]["error"]["code"], 10)
        self.assertEqual(res["close"]["code"], 4010)
        # bidi: the backend refuses the second message (empty text)
        res = self.ws("/v1/rooms/e/chat?from=e", [{"text": '"ok"'}, {"wait": 1}, {"text": '""'},
                                                  {"wait": 2}])
        msgs = texts(res)
        self.assertEqual(msgs[0]["text"], "ok")
        self.assertEqual(msgs[1]["error"]["code"], 3)
        self.assertEqual(res["close"]["code"], 4003)

    def test_bad_client_message_4003(self):
        for bad, field in (('{"text": "x",', ""), ('5', "text")):
            res = self.ws("/v1/chat?", [{"text": bad}, {"wait": 1}])
            err = texts(res)[0]["error"]
            self.assertEqual(err["code"], 3)
            self.assertEqual(err["message"], "message 1 is invalid")
            fv = err["details"][0]["fieldViolations"]
            self.assertTrue(fv and fv[0]["description"], err)
            self.assertEqual(res["close"]["code"], 4003)
        # after a good message: the reply, then the problem of message 2
        res = self.ws("/v1/rooms/b/chat?from=b", [{"text": '"fine"'}, {"wait": 1},
                                                  {"text": '{"no": 1}'}, {"wait": 2}])
        msgs = texts(res)
        self.assertEqual(msgs[0]["text"], "fine")
        self.assertEqual(msgs[1]["error"]["message"], "message 2 is invalid")
        self.assertEqual(res["close"]["code"], 4003)
        # binary that is not the input message
        res = self.ws("/v1/rooms/b/chat?from=b", [{"binary_b64": base64.b64encode(
            b"\x12\x50abc").decode()}, {"wait": 1}])
        self.assertIn("not a protobuf bookstore.v1.ChatMessage", texts(res)[0]["error"]["message"])
        self.assertEqual(res["close"]["code"], 4003)
        # a server stream without body takes no messages
        res = self.ws("/v1/shelves/1/books:watch?count=1000&interval_ms=100",
                      [{"text": "{}"}, {"wait": 1}])
        self.assertEqual(texts(res)[-1]["error"]["code"], 3)
        self.assertEqual(res["close"]["code"], 4003)

    def test_client_message_over_limit_1009(self):
        res = self.ws("/v1/rooms/big/chat?from=b", [{"text": '"%s"' % ("x" * 5000)}, {"wait": 1}])
        self.assertEqual(res["close"]["code"], 1009)  # websocket.max_message: 4k

    def test_handshake_refusals(self):
        res = self.ws("/v1/shelves/1")  # unary method
        self.assertEqual(res["status"], 400)
        self.assertIn("unary method", json.loads(res["body"])["message"])
        res = self.ws("/v1/nowhere")
        self.assertEqual((res["status"], json.loads(res["body"])["code"]), (404, 5))
        res = self.ws("/v1/rooms/x/chat?from=a&bogus=1")  # checked before the upgrade
        self.assertEqual(res["status"], 400)
        fv = json.loads(res["body"])["details"][0]["fieldViolations"]
        self.assertEqual(fv[0]["field"], "bogus")
        res = self.ws("/v1/rooms/x/chat?from=a",
                      headers={"Host": "origin.test:%d" % self.port, "Origin": "https://evil.example"})
        self.assertEqual(res["status"], 403)
        res = self.ws("/v1/rooms/x/chat?from=a", [{"text": '"o"'}, {"close": 1000}],
                      headers={"Host": "origin.test:%d" % self.port,
                               "Origin": "https://app.example"})
        self.assertEqual(texts(res)[0]["text"], "o")

    # ---- cancellation, backend failure, flow control ----------------------------------------

    def test_client_gone_cancels_the_call(self):
        self.fake.cancelled.clear()
        res = self.ws("/v1/rooms/c/chat?from=c", [{"text": '"one"'}, {"wait": 1}, {"drop": True}],
                      host="fake.test")
        self.assertEqual(texts(res)[0]["text"], "one")
        self.assertTrue(self.fake.cancelled.wait(5), "the backend never saw the cancel")
        # a close frame with another code than 1000 gives up the call too
        self.fake.cancelled.clear()
        res = self.ws("/v1/rooms/c/chat?from=c", [{"text": '"two"'}, {"wait": 1},
                                                  {"close": 4321}], host="fake.test")
        self.assertEqual(res["close"]["code"], 4321)
        self.assertTrue(self.fake.cancelled.wait(5), "the backend never saw the cancel")
        # the bookstore: a bulk create whose client vanished creates nothing (no half-close)
        tag = "gone-%d" % time.monotonic_ns()
        self.ws("/v1/shelves/1/books:bulkCreate",
                [{"text": json.dumps({"author": "G", "title": tag})}, {"sleep": 200},
                 {"drop": True}])
        time.sleep(0.3)
        st, _, body, _ = curl("http://127.0.0.1:%d/v1/shelves/1/books?page_size=1000" % self.port)
        self.assertEqual(st, 200)
        self.assertNotIn(tag, body.decode())

    def test_backend_killed_4014(self):
        import queue
        out = queue.Queue()
        plan = {"url": self.base + "/v1/shelves/1/books:watch?count=100000&interval_ms=50",
                "headers": {"Host": "doomed.test:%d" % self.port}, "timeout_ms": 15000}
        t = threading.Thread(target=lambda: out.put(run_client(plan)))
        t.start()
        time.sleep(1.0)  # the stream runs (a message every 50 ms): kill the backend outright
        self.doomed.proc.send_signal(signal.SIGKILL)
        t.join(20)
        res = out.get(timeout=1)
        self.assertGreater(len(res["received"]), 0, res)
        last = texts(res)[-1]
        self.assertEqual(last["error"]["code"], 14, res)
        self.assertEqual(res["close"]["code"], 4014)

    def test_slow_reader_stops_the_backend(self):
        # The client reads nothing: Portico must stop asking the backend for
        # messages (bounded memory), not drain it into its own buffers.
        import queue
        out = queue.Queue()
        plan = {"url": self.base + "/v1/shelves/1/books:watch?count=100000",
                "headers": {"Host": "fake.test:%d" % self.port},
                "steps": [{"wait": 1}, {"pause": True}, {"sleep": 8000}],
                "finish_after_steps": True, "timeout_ms": 20000}
        t = threading.Thread(target=lambda: out.put(run_client(plan)))
        t.start()
        # the backend is stopped by flow control within a few seconds: two equal readings
        # 0.5 s apart (a busy machine may take a moment to fill the buffers)
        prev, deadline = -1, time.monotonic() + 6
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.fake.sent
            if now == prev and now > 0:  # started (the client read one), then stopped
                break
            prev = now
        time.sleep(1.0)
        stalled = self.fake.sent
        t.join(20)
        self.assertTrue(out.get(timeout=1)["open"])
        self.assertEqual(stalled, prev, "the backend kept streaming to a stalled client")
        # 100000 messages of 16 KiB were on offer; only socket buffers, HTTP/2 windows and
        # Portico's bounded output buffer (64 KiB) hold what was produced.
        self.assertLess(stalled, 2000)

    # ---- RFC 8441: the bridge over an HTTP/2 extended CONNECT -------------------------------

    def test_http2_extended_connect(self):
        import socket
        import struct
        import h2.config
        import h2.connection
        import h2.events
        import h2.settings
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.addCleanup(s.close)
        c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                 header_encoding="utf-8"))
        c.initiate_connection()
        s.sendall(c.data_to_send())
        state = {"settings": False, "head": None, "data": b"", "ended": False}

        def pump(until, timeout=10.0):
            deadline = time.monotonic() + timeout
            while not until() and time.monotonic() < deadline:
                s.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    d = s.recv(65536)
                except socket.timeout:
                    break
                if not d:
                    break
                for ev in c.receive_data(d):
                    if isinstance(ev, h2.events.RemoteSettingsChanged):
                        state["settings"] = True
                    elif isinstance(ev, h2.events.ResponseReceived):
                        state["head"] = dict(ev.headers)
                    elif isinstance(ev, h2.events.DataReceived):
                        state["data"] += ev.data
                        c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                        state["ended"] = True
                out = c.data_to_send()
                if out:
                    s.sendall(out)
            return until()

        def frame(op, payload):  # a masked client frame (payload < 126 bytes)
            mask = os.urandom(4)
            return (bytes([0x80 | op, 0x80 | len(payload)]) + mask +
                    bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

        def frames(data):  # unmasked server frames -> [(opcode, payload)]
            out = []
            while len(data) >= 2:
                n, off = data[1] & 0x7F, 2
                if n == 126:
                    n, off = struct.unpack(">H", data[2:4])[0], 4
                if len(data) < off + n:
                    break
                out.append((data[0] & 0x0F, data[off:off + n]))
                data = data[off + n:]
            return out

        self.assertTrue(pump(lambda: state["settings"]))
        self.assertEqual(c.remote_settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL], 1)
        sid = c.get_next_available_stream_id()
        c.send_headers(sid, [(":method", "CONNECT"), (":protocol", "websocket"),
                             (":scheme", "http"), (":path", "/v1/rooms/h2/chat?from=hana"),
                             (":authority", "127.0.0.1:%d" % self.port),
                             ("sec-websocket-version", "13")])
        c.send_data(sid, frame(0x1, b'"over h2"') + frame(0x8, struct.pack(">H", 1000)))
        s.sendall(c.data_to_send())
        self.assertTrue(pump(lambda: state["ended"] or any(
            op == 0x8 for op, _ in frames(state["data"]))))
        self.assertEqual(state["head"][":status"], "200")
        got = frames(state["data"])
        self.assertEqual([op for op, _ in got], [0x1, 0x8])
        msg = json.loads(got[0][1])
        self.assertEqual((msg["text"], msg["room"], msg["to"]), ("over h2", "h2", "hana"))
        self.assertEqual(struct.unpack(">H", got[1][1][:2])[0], 1000)

    # ---- a real browser -----------------------------------------------------------------------

    def test_browser_chat(self):
        chromium = shutil.which("chromium")
        self.assertIsNotNone(chromium, "Debian chromium is missing (scripts/install-deps.sh)")
        tmp = tempfile.TemporaryDirectory(prefix="pt-browser-")
        self.addCleanup(tmp.cleanup)
        p = subprocess.run(["node", BROWSER, chromium, self.base + "/v1/rooms/web/chat?from=page",
                            json.dumps(['"hello from a page"', '"and again"']), "40000"],
                           capture_output=True, timeout=60, env=dict(os.environ, PT_TMPDIR=tmp.name))
        self.assertTrue(p.stdout, p.stderr)
        res = json.loads(p.stdout.decode().splitlines()[-1])
        self.assertTrue(res.get("opened"), res)
        got = [json.loads(m) for m in res["messages"]]
        self.assertEqual([(m["text"], m["room"], m["to"]) for m in got],
                         [("hello from a page", "web", "page"), ("and again", "web", "page")])
        self.assertEqual((res["close"]["code"], res["close"]["wasClean"]), (1000, True))


if __name__ == "__main__":
    unittest.main()
