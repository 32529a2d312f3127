#!/usr/bin/env python3
"""A/B of builds of the criterion `net` bench on one group (stream_64KiB_4conn, say), interleaved.

    CONFIGS="base=/tmp/base/net new=/tmp/new/net" EPOLL=1 \
    python3 benches/scripts/stream_ab.py ROUNDS GROUP

Each config is LABEL=BENCH_BINARY[,VAR=VALUE...] (the binary `cargo bench -p ringloop-benches
--bench net --no-run` prints; copy the old one aside). Every round runs GROUP/uring of each config
(and GROUP/epoll with EPOLL=1), then GROUP/tokio from the first binary, each for MT seconds (2)
after 1 s of warm-up. Prints the median throughput of each and the medians of the per-round
ratios (to tokio, and of the second config to the first on each backend).
"""
import os
import re
import statistics
import subprocess
import sys

rounds, group = int(sys.argv[1]), sys.argv[2]
configs = []
for c in os.environ["CONFIGS"].split():
    label, rest = c.split("=", 1)
    parts = rest.split(",")
    configs.append((label, parts[0], dict(p.split("=", 1) for p in parts[1:])))
measure = os.environ.get("MT", "2")


def run(binary, rt, env):
    out = subprocess.run(
        [binary, "--bench", f"{group}/{rt}", "--measurement-time", measure,
         "--warm-up-time", "1", "--noplot"],
        env=dict(os.environ, **env), capture_output=True, text=True, check=True).stdout
    m = re.search(r"thrpt:\s+\[\S+ \S+ (\S+) (\S+)", out)
    return float(m.group(1)) * (1024 if m.group(2) == "GiB/s" else 1)


res = {}
for r in range(rounds):
    runs = []
    for label, binary, env in configs:
        runs.append((f"{label}-uring", binary, "uring", env))
        if os.environ.get("EPOLL") == "1":
            runs.append((f"{label}-epoll", binary, "epoll", env))
    runs.append(("tokio", configs[0][1], "tokio", {}))
    for name, binary, rt, env in runs:
        v = run(binary, rt, env)
        res.setdefault(name, []).append(v)
        print(r, name, f"{v:.0f}", flush=True)
tok = res["tokio"]
print(f"== {group}: {rounds} rounds, MiB/s medians; ratio = median of per-round ratios")
for name, v in res.items():
    ratios = [a / b for a, b in zip(v, tok)]
    print(f"  {name:16s} {statistics.median(v):6.0f} MiB/s {statistics.median(ratios):.2f}x tokio"
          f" (rounds {' '.join(f'{x:.2f}' for x in ratios)})")
if len(configs) >= 2:
    for be in ["uring", "epoll"]:
        a, b = f"{configs[1][0]}-{be}", f"{configs[0][0]}-{be}"
        if a in res:
            ratios = [x / y for x, y in zip(res[a], res[b])]
            print(f"  {a}/{b}: {statistics.median(ratios):.2f}"
                  f" (rounds {' '.join(f'{x:.2f}' for x in ratios)})")
