#!/usr/bin/python3
"""
grpcweb_call.py URL METHOD_PATH [MESSAGE_HEX] -- one gRPC-Web unary call (binary
mode) as a browser would make it: POST the length-prefixed message, then split
the response body into its message frames and its trailer frame (flag 0x80).
Prints the response messages as hex (pipe them into portico-transcode) and the
trailers. Used by `make demo`.
"""
import sys
import urllib.request


def main():
    url, path = sys.argv[1], sys.argv[2]
    msg = bytes.fromhex(sys.argv[3]) if len(sys.argv) > 3 else b""
    body = b"\x00" + len(msg).to_bytes(4, "big") + msg
    req = urllib.request.Request(url.rstrip("/") + path, data=body, method="POST", headers={
        "content-type": "application/grpc-web+proto", "x-grpc-web": "1", "accept": "application/grpc-web+proto"})
    with urllib.request.urlopen(req, timeout=10) as r:
        data = r.read()
        print(f"HTTP {r.status} {r.headers.get('content-type')}")
    i = 0
    while i + 5 <= len(data):
        flag, n = data[i], int.from_bytes(data[i + 1:i + 5], "big")
        frame = data[i + 5:i + 5 + n]
        if flag & 0x80:
            print("trailers: " + frame.decode().strip().replace("\r\n", "; "))
        else:
            print("message: " + frame.hex())
        i += 5 + n


if __name__ == "__main__":
    main()
