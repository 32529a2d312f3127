#!/usr/bin/env bash
# TCP streams over loopback: examples/throughput.rs (tcp) on uring, on uring with zero-copy
# sends, on uring with pooled (bundled) receives, on epoll, and examples/tokio_throughput.rs,
# interleaved per round. Receiver pinned to CPU 0, sender to CPU 1 (`--pin`). Prints each run,
# then per case the median MiB/s and CPU per GiB (both threads), and the median of each round's
# ratio to tokio.
#
#   bash benches/scripts/throughput.sh [ROUNDS] [MIB]
#
# Env: CASES ("1:64 1:1024 4:64", each CONNS:CHUNK_KIB).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-5}
mib=${2:-2048}
cargo build --release -p ringloop -p ringloop-benches --example throughput --example tokio_throughput >/dev/null 2>&1
bin=${CARGO_TARGET_DIR:-target}/release/examples
results=$(mktemp)
trap 'rm -f "$results"' EXIT

for case in ${CASES:-1:64 1:1024 4:64}; do
    conns=${case%%:*}
    chunk=${case##*:}
    args=(--mib "$mib" --chunk-kib "$chunk" --conns "$conns" --pin)
    for r in $(seq 1 "$rounds"); do
        for rt in uring uring-zc uring-pooled epoll tokio; do
            case $rt in
                uring|epoll) out=$(RINGLOOP_BACKEND=$rt "$bin/throughput" tcp "${args[@]}") ;;
                uring-zc) out=$(RINGLOOP_BACKEND=uring "$bin/throughput" tcp "${args[@]}" --zc 1) ;;
                uring-pooled) out=$(RINGLOOP_BACKEND=uring "$bin/throughput" tcp "${args[@]}" --pooled) ;;
                tokio) out=$("$bin/tokio_throughput" "${args[@]}") ;;
            esac
            echo "$out"
            mibs=$(sed -n 's/.* = \([0-9]*\) MiB\/s.*/\1/p' <<<"$out")
            cpu=$(sed -n 's/.*, \([0-9.]*\) s CPU per GiB.*/\1/p' <<<"$out")
            echo "$case $r $rt $mibs $cpu" >>"$results"
        done
    done
done

echo
echo "summary (median over rounds; ratio = median of each round's figure over tokio's in that round)"
python3 - "$results" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for case, r, rt, mibs, cpu in rows:
    by.setdefault((case, rt), {})[r] = (float(mibs), float(cpu))
for case in dict.fromkeys(c for c, *_ in rows):
    conns, chunk = case.split(":")
    print(f"{conns} connection(s), {chunk} KiB chunks:")
    tok = by[(case, "tokio")]
    for rt in ["uring", "uring-zc", "uring-pooled", "epoll", "tokio"]:
        runs = by[(case, rt)]
        mibs = statistics.median(v[0] for v in runs.values())
        cpu = statistics.median(v[1] for v in runs.values())
        rate = statistics.median(runs[r][0] / tok[r][0] for r in runs)
        cpur = statistics.median(runs[r][1] / tok[r][1] for r in runs)
        print(f"  {rt:12s} {mibs:7.0f} MiB/s ({rate:.2f}x tokio)  {cpu:.3f} s CPU/GiB ({cpur:.2f}x tokio)")
PY
