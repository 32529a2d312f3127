#!/usr/bin/env python3
"""A tiny HTTP/1.1 server on 127.0.0.1 that sends fixed, sometimes malformed, responses, for the
download example's checks in ci/examples.sh. Prints "listening on 127.0.0.1:PORT"; stops after
60 seconds or when killed.

Paths: /chunked (a valid chunked body: "hello, chunked world\n"), /negative (Content-Length: -5),
/huge (a Content-Length past 2^64), /bad-chunk (a chunk size that is not hex), /short-chunk (the
connection closes inside a chunk), /big-head (a head over 64 KiB)."""
import socket
import sys
import threading
import time

BODY = b"hello, chunked world\n"


def response(path):
    ok = b"HTTP/1.1 200 OK\r\nConnection: close\r\n"
    if path == "/chunked":
        parts = [BODY[:5], BODY[5:6], BODY[6:]]
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts)
        return ok + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    if path == "/negative":
        return ok + b"Content-Length: -5\r\n\r\nhello"
    if path == "/huge":
        return ok + b"Content-Length: 18446744073709551616\r\n\r\nhello"
    if path == "/bad-chunk":
        return ok + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
    if path == "/short-chunk":
        return ok + b"Transfer-Encoding: chunked\r\n\r\n64\r\nonly ten b"
    if path == "/big-head":
        return ok + b"X-Filler: " + b"x" * (70 * 1024) + b"\r\n\r\n"
    return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def serve(conn):
    with conn:
        head = b""
        while b"\r\n\r\n" not in head:
            data = conn.recv(4096)
            if not data:
                return
            head += data
        path = head.split(b" ")[1].decode()
        try:
            conn.sendall(response(path))
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the client gave up first (the 64 KiB head)


def main():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    print("listening on 127.0.0.1:%d" % srv.getsockname()[1], flush=True)
    srv.settimeout(1.0)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
    sys.exit(0)


if __name__ == "__main__":
    main()
