"""Python's grpcio (a gRPC client no one here wrote) against the ringloop gRPC example.

usage: python3 ci/grpc_check.py HOST:PORT PROTO_DIR

Compiles echo.proto with grpcio-tools into a temporary folder, then calls all four kinds of
method, a call with a deadline shorter than the handler, and checks from the server's counters that
the handler of that call was dropped. Exits non-zero with the reason on any wrong answer.
"""

import importlib
import os
import sys
import tempfile
import time

import grpc
from grpc_tools import protoc


def generate(proto_dir, out):
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}",
                      f"--grpc_python_out={out}", os.path.join(proto_dir, "echo.proto")])
    if rc != 0:
        sys.exit(f"grpc_tools.protoc failed with {rc}")
    sys.path.insert(0, out)
    return importlib.import_module("echo_pb2"), importlib.import_module("echo_pb2_grpc")


def check(ok, what):
    if not ok:
        sys.exit(f"grpcio: wrong: {what}")
    print(f"grpcio: ok: {what}")


def main():
    target, proto_dir = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as out:
        pb, pb_grpc = generate(proto_dir, out)
        with grpc.insecure_channel(target) as channel:
            grpc.channel_ready_future(channel).result(timeout=10)
            stub = pb_grpc.EchoStub(channel)

            reply = stub.Unary(pb.EchoRequest(message="hello from python"), timeout=10)
            check(reply.message == "hello from python", f"unary: {reply.message!r}")

            big = "x" * (1 << 20)
            reply = stub.Unary(pb.EchoRequest(message=big), timeout=10)
            check(reply.message == big, "unary with a 1 MiB message")

            got = [r.message for r in stub.ServerStream(pb.StreamRequest(message="m", count=1000), timeout=10)]
            check(got == [f"m {i}" for i in range(1000)], f"server stream of {len(got)} replies")

            reply = stub.ClientStream(iter([pb.EchoRequest(message=str(i)) for i in range(100)]), timeout=10)
            check(reply.message == ",".join(str(i) for i in range(100)), "client stream of 100 requests")

            got = [r.message for r in stub.Bidi(iter([pb.EchoRequest(message=f"b{i}") for i in range(100)]), timeout=10)]
            check(got == [f"b{i}" for i in range(100)], f"bidi: {len(got)} replies in order")

            try:
                stub.ServerStream(pb.StreamRequest(message="m", count=10**9), timeout=10)
                got = None
            except grpc.RpcError as e:
                got = e.code()
            # A streaming call's error comes when the stream is read.
            if got is None:
                try:
                    list(stub.ServerStream(pb.StreamRequest(message="m", count=10**9), timeout=10))
                except grpc.RpcError as e:
                    got = e.code()
            check(got == grpc.StatusCode.INVALID_ARGUMENT, f"an over-limit request: {got}")

            before = stub.Stats(pb.StatsRequest(), timeout=10).cancelled
            start = time.monotonic()
            try:
                stub.Sleep(pb.SleepRequest(millis=5000), timeout=0.2)
                code = None
            except grpc.RpcError as e:
                code = e.code()
            elapsed = time.monotonic() - start
            check(code == grpc.StatusCode.DEADLINE_EXCEEDED and elapsed < 2,
                  f"deadline: {code} after {elapsed:.2f} s")
            cancelled = before
            for _ in range(50):
                cancelled = stub.Stats(pb.StatsRequest(), timeout=10).cancelled
                if cancelled > before:
                    break
                time.sleep(0.02)
            check(cancelled == before + 1, "the server dropped the handler of the call past its deadline")

            future = stub.Sleep.future(pb.SleepRequest(millis=5000))
            time.sleep(0.1)
            future.cancel()
            for _ in range(50):
                cancelled = stub.Stats(pb.StatsRequest(), timeout=10).cancelled
                if cancelled > before + 1:
                    break
                time.sleep(0.02)
            check(cancelled == before + 2, "the server dropped the handler of a cancelled call")


if __name__ == "__main__":
    main()
