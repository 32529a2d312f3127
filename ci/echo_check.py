#!/usr/bin/env python3
"""Checks an echo server byte for byte: CONNS connections each send SIZE random bytes in random
pieces while reading the echo back, and every byte must come back once and in order. Usage:
echo_check.py PORT [CONNS] [SIZE]. Prints "echo_check: N bytes checked"; exits 1 on a mismatch,
2 on a stall of 20 seconds (a hang)."""
import os
import random
import socket
import sys
import threading

port = int(sys.argv[1])
conns = int(sys.argv[2]) if len(sys.argv) > 2 else 16
size = int(sys.argv[3]) if len(sys.argv) > 3 else 1 << 20
errors = []


def one(i):
    rng = random.Random(i)
    data = os.urandom(size)
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    got = bytearray()

    def reader():
        try:
            while len(got) < size:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got.extend(chunk)
        except OSError as e:
            errors.append(f"connection {i}: {e}")

    t = threading.Thread(target=reader)
    t.start()
    at = 0
    try:
        while at < size:
            n = rng.randint(1, 32768)
            s.sendall(data[at:at + n])
            at += n
    except OSError as e:
        errors.append(f"connection {i}: sending: {e}")
    t.join()
    s.close()
    if bytes(got) != data:
        errors.append(f"connection {i}: {len(got)} of {size} bytes came back, "
                      f"first difference at {next((k for k in range(min(len(got), size)) if got[k] != data[k]), min(len(got), size))}")


threads = [threading.Thread(target=one, args=(i,)) for i in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if errors:
    print("echo_check: FAILED\n" + "\n".join(errors))
    sys.exit(2 if any("timed out" in e for e in errors) else 1)
print(f"echo_check: {conns * size} bytes checked")
