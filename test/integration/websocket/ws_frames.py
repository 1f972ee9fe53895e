"""
ws_frames.py -- raw WebSocket frames for the integration tests (RFC 6455 §5.2):
frame() writes one (masked or not, any length encoding, reserved bits, a false length),
Frames reads them from a socket, masked or not, with a deadline.
"""
import os
import struct
import time


def frame(op, payload=b"", fin=True, mask=True, rsv=0, length=None):
    b0 = (0x80 if fin else 0) | (rsv << 4) | op
    n = len(payload) if length is None else length
    if n < 126:
        hdr = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    return hdr + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def close_frame(code, reason=b"", mask=True):
    return frame(8, struct.pack("!H", code) + reason, mask=mask)


class Frames:
    """Reads frames from a socket: (fin, opcode, payload unmasked, was_masked)."""

    def __init__(self, s, have=b""):
        self.s = s
        self.buf = bytearray(have)

    def _need(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame in time")
            self.s.settimeout(left)
            d = self.s.recv(1 << 20)
            if not d:
                raise EOFError("closed")
            self.buf += d

    def read(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        n, off = b1 & 0x7F, 2
        if n == 126:
            self._need(4, deadline)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10, deadline)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        masked = bool(b1 & 0x80)
        key = b""
        if masked:
            self._need(off + 4, deadline)
            key = bytes(self.buf[off:off + 4])
            off += 4
        self._need(off + n, deadline)
        payload = bytes(self.buf[off:off + n])
        del self.buf[:off + n]
        if masked:
            k = (key * (n // 4 + 1))[:n]
            payload = bytes(a ^ b for a, b in zip(payload, k))
        return bool(b0 & 0x80), b0 & 0x0F, payload, masked

    def read_data_until_close(self, timeout=20.0):
        """Payload bytes of the data frames, then the close frame's (code, reason)."""
        deadline = time.monotonic() + timeout
        total = 0
        while True:
            _, op, p, _ = self.read(max(0.1, deadline - time.monotonic()))
            if op == 8:
                return total, (struct.unpack("!H", p[:2])[0] if len(p) >= 2 else None), p[2:]
            if op in (0, 1, 2):
                total += len(p)
