#!/usr/bin/env python3
"""
ws_chat.py -- a tiny WebSocket client (python3 stdlib only) for the demo of
the WebSocket <-> gRPC bridge: sends each MESSAGE as a text message, prints
every message it receives, then sends a close frame (1000) and prints the rest
and the close code Portico answers with.

    ws_chat.py ws://127.0.0.1:8080/v1/rooms/lobby/chat?from=ann '"hi"' '"bye"'
    ws_chat.py --wait ws://127.0.0.1:8080/v1/shelves/1/books:watch?count=3   # receive only

With --each, it waits for one reply after each message (a chat); without it,
everything is sent at once and the close frame follows (the replies still
come: the close half-closes the gRPC call).
"""
import base64
import json
import os
import socket
import struct
import sys
import urllib.parse


def frame(op, payload):
    """A masked client frame (RFC 6455 5.2)."""
    head = bytes([0x80 | op])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class Conn:
    def __init__(self, url, timeout=10.0):
        u = urllib.parse.urlsplit(url)
        self.s = socket.create_connection((u.hostname, u.port or 80), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = u.path + ("?" + u.query if u.query else "")
        self.s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n" % (path, u.netloc, key)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            d = self.s.recv(4096)
            if not d:
                raise SystemExit("connection closed during the handshake")
            self.buf += d
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0].decode()
        if " 101 " not in status + " ":
            raise SystemExit("handshake refused: %s\n%s" % (status, self.buf.decode(errors="replace")))

    def _need(self, n):
        while len(self.buf) < n:
            d = self.s.recv(65536)
            if not d:
                raise EOFError
            self.buf += d

    def recv(self):
        """Returns (opcode, payload) of the next whole message (server frames are unmasked)."""
        msg, op = b"", None
        while True:
            self._need(2)
            b0, b1 = self.buf[0], self.buf[1]
            n, off = b1 & 0x7F, 2
            if n == 126:
                self._need(4)
                n, off = struct.unpack(">H", self.buf[2:4])[0], 4
            elif n == 127:
                self._need(10)
                n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
            self._need(off + n)
            payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
            fop = b0 & 0x0F
            if fop == 0x9:  # ping: answer it
                self.s.sendall(frame(0xA, payload))
                continue
            if fop >= 0x8:
                return fop, payload
            if fop != 0:
                op = fop
            msg += payload
            if b0 & 0x80:
                return op, msg

    def send_text(self, text):
        self.s.sendall(frame(0x1, text.encode()))

    def close(self, code=1000):
        self.s.sendall(frame(0x8, struct.pack(">H", code)))


def show(op, payload):
    if op == 0x8:
        code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
        print("<- close %d %s" % (code, payload[2:].decode(errors="replace")))
        return True
    text = payload.decode(errors="replace") if op == 0x1 else "(binary) " + payload.hex()
    try:
        text = json.dumps(json.loads(text))
    except ValueError:
        pass
    print("<- " + text)
    return False


def main(argv):
    each = "--each" in argv
    wait = "--wait" in argv
    args = [a for a in argv if a not in ("--each", "--wait")]
    if not args:
        raise SystemExit(__doc__)
    c = Conn(args[0])
    for m in args[1:]:
        print("-> " + m)
        c.send_text(m)
        if each and show(*c.recv()):
            return
    if not wait:
        print("-> close 1000")
        c.close()
    while True:
        try:
            if show(*c.recv()):
                return
        except EOFError:
            print("(connection closed)")
            return


if __name__ == "__main__":
    main(sys.argv[1:])
