"""make demo, part 4: a raw client breaks the protocol (an unmasked frame); prints Portico's close.
Usage: python3 ws_raw_demo.py PORT"""
import socket
import sys

s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"GET /chat/echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
head, rest = buf.split(b"\r\n\r\n", 1)
print(head.split(b"\r\n")[0].decode())
s.sendall(b"\x81\x05hello")  # text "hello", not masked: a client must mask
while len(rest) < 2 or len(rest) < 2 + rest[1]:
    d = s.recv(4096)
    if not d:
        break
    rest += d
print("close frame from Portico: code %d, reason %r"
      % (int.from_bytes(rest[2:4], "big"), rest[4:2 + rest[1]].decode()))
s.close()
