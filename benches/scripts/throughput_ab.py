#!/usr/bin/env python3
"""A/B of builds of examples/throughput.rs (tcp) against tokio_throughput, interleaved per round.

    CONFIGS="base=/tmp/base/throughput new=/tmp/new/throughput,RINGLOOP_DISABLE=wait-batch" \
    BACKENDS="uring epoll" STATS=1 python3 benches/scripts/throughput_ab.py ROUNDS CONNS:CHUNK_KIB

Each config is LABEL=BINARY[,VAR=VALUE...]; every round runs each config on each of BACKENDS
(default uring), then tokio (TOKIO, default target/release/examples/tokio_throughput; "none"
skips it). MIB (2048) is the transfer; ACKS=1 adds --acks (the stream_64KiB bench's shape);
STATS=1 adds --stats and reports each side's sleeps and thread CPU per MiB. Prints each run,
then medians and the median of each round's ratio (to tokio, and of each config to the first):
copy the old build's binary aside to compare it with the new one in one run.
"""
import os
import re
import statistics
import subprocess
import sys

rounds, case = int(sys.argv[1]), sys.argv[2]
configs = []
for c in os.environ["CONFIGS"].split():
    label, rest = c.split("=", 1)
    parts = rest.split(",")
    configs.append((label, parts[0], dict(p.split("=", 1) for p in parts[1:])))
backends = os.environ.get("BACKENDS", "uring").split()
target = os.environ.get("CARGO_TARGET_DIR", "target")
tokio = os.environ.get("TOKIO", f"{target}/release/examples/tokio_throughput")
stats = os.environ.get("STATS") == "1"
conns, chunk = case.split(":")
args = ["--mib", os.environ.get("MIB", "2048"), "--chunk-kib", chunk, "--conns", conns, "--pin"]
if os.environ.get("ACKS") == "1":
    args.append("--acks")
res, sides = {}, {}
for r in range(rounds):
    runs = []
    for label, binary, env in configs:
        for be in backends:
            e = dict(os.environ, **env, RINGLOOP_BACKEND=be)
            runs.append((f"{label}-{be}", [binary, "tcp"] + args + (["--stats"] if stats else []), e))
    if tokio != "none":
        runs.append(("tokio", [tokio] + args, dict(os.environ)))
    for name, cmd, env in runs:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        m = re.search(r"= (\d+) MiB/s, ([0-9.]+) s CPU", p.stdout)
        res.setdefault(name, []).append((float(m.group(1)), float(m.group(2))))
        seen = re.findall(r"(sender|receiver) per MiB:.* ([0-9.]+) sleeps, (\d+) µs CPU", p.stderr)
        for side, sl, cpu in seen:
            sides.setdefault((name, side), []).append((float(sl), float(cpu)))
        print(r, name, m.group(1), m.group(2), *(f"{s}:{sl}sleeps/{c}us" for s, sl, c in seen), flush=True)
ref = res.get("tokio") or next(iter(res.values()))
print(f"== {case}: {rounds} rounds; medians, ratio = median of the per-round ratios")
for name, v in res.items():
    ratios = [a[0] / b[0] for a, b in zip(v, ref)]
    extra = ""
    for side in ["sender", "receiver"]:
        if (name, side) in sides:
            x = sides[(name, side)]
            extra += (f" {side} {statistics.median(a for a, _ in x):.1f} sleeps/MiB"
                      f" {statistics.median(b for _, b in x):.0f} µs/MiB;")
    print(f"  {name:14s} {statistics.median(a for a, _ in v):6.0f} MiB/s"
          f" {statistics.median(ratios):.2f}x (rounds {' '.join(f'{x:.2f}' for x in ratios)})"
          f" {statistics.median(b for _, b in v):.3f} s CPU/GiB;{extra}")
for label, _, _ in configs[1:]:
    for be in backends:
        a, b = res[f"{label}-{be}"], res[f"{configs[0][0]}-{be}"]
        ratios = [x[0] / y[0] for x, y in zip(a, b)]
        print(f"  {label}/{configs[0][0]} {be}: {statistics.median(ratios):.2f}"
              f" (rounds {' '.join(f'{x:.2f}' for x in ratios)})")
