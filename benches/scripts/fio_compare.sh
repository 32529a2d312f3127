#!/usr/bin/env bash
# Random 4 KiB reads of one file on disk, ringloop against fio (the physical limit) and tokio,
# interleaved rounds, medians:
#
#   bash benches/scripts/fio_compare.sh [ROUNDS] [SECS]      (defaults 3 and 5)
#
# Cases: O_DIRECT at queue depth 1 and 32 (fio's io_uring engine with and without fixed buffers;
# `throughput randread --direct` on uring, with and without --fixed, and on epoll, whose reads run
# on the blocking pool; tokio: pread on its blocking pool), then page-cache reads at QD 32 (fio's
# io_uring and psync engines; ringloop on both backends; tokio::fs). Then the metadata case:
# 10,000 files created, stat'ed, renamed and removed (`throughput meta`, tokio::fs).
#
# The file (FILE_MIB, default 1024 MiB) is made under DIR (default target/fio: it must be on a
# disk, not tmpfs, for O_DIRECT) and removed at the end. fio comes from the system's packages if
# it is missing. Prints one table of IOPS (files/s for meta) and the ratios the targets name.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
SECS=${2:-5}
FILE_MIB=${FILE_MIB:-1024}
DIR=${DIR:-target/fio}

command -v fio >/dev/null || { apt-get update -qq && apt-get install -y -qq fio >/dev/null; }
cargo build --release -p ringloop -p ringloop-benches --example throughput --example tokio_throughput 2>&1 | tail -1
mkdir -p "$DIR"
FILE=$(realpath "$DIR")/randread.data
if [ ! -f "$FILE" ] || [ "$(stat -c %s "$FILE")" -ne $((FILE_MIB << 20)) ]; then
    dd if=/dev/urandom of="$FILE" bs=1M count="$FILE_MIB" status=none
    sync
fi
RL=target/release/examples/throughput
TK=target/release/examples/tokio_throughput

fio_iops() { # engine depth direct [extra...]
    local engine=$1 depth=$2 direct=$3
    shift 3
    fio --name=r --filename="$FILE" --size="${FILE_MIB}M" --rw=randread --bs=4k \
        --ioengine="$engine" --iodepth="$depth" --direct="$direct" --runtime="$SECS" \
        --time_based --invalidate=0 "$@" --output-format=json 2>/dev/null |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))'
}
ours() { # backend args...
    local backend=$1
    shift
    RINGLOOP_BACKEND=$backend "$RL" randread --file "$FILE" --secs "$SECS" "$@" | sed -n 's/^IOPS=//p'
}
theirs() { "$TK" randread --file "$FILE" --secs "$SECS" "$@" | sed -n 's/^IOPS=//p'; }
warm() { cat "$FILE" >/dev/null; }

RAW=$(mktemp)
trap 'rm -f "$FILE" "$RAW"' EXIT
add() { printf '%s\t%s\t%s\n' "$round" "$1" "$2" >>"$RAW"; }

for round in $(seq 1 "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    for qd in 1 32; do
        add "direct qd$qd fio io_uring" "$(fio_iops io_uring $qd 1)"
        add "direct qd$qd ringloop uring" "$(ours uring --direct --qd $qd)"
        add "direct qd$qd fio io_uring fixedbufs" "$(fio_iops io_uring $qd 1 --fixedbufs)"
        add "direct qd$qd ringloop uring fixed" "$(ours uring --direct --qd $qd --fixed)"
        add "direct qd$qd ringloop epoll" "$(ours epoll --direct --qd $qd)"
        add "direct qd$qd tokio" "$(theirs --direct --qd $qd)"
    done
    warm
    add "cached qd32 fio io_uring" "$(fio_iops io_uring 32 0)"
    add "cached qd1 fio psync" "$(fio_iops psync 1 0)"
    add "cached qd32 ringloop uring" "$(ours uring --qd 32)"
    add "cached qd32 ringloop epoll" "$(ours epoll --qd 32)"
    add "cached qd32 tokio" "$(theirs --qd 32)"
    for b in uring epoll; do
        add "meta ringloop $b" "$(RINGLOOP_BACKEND=$b "$RL" meta --dir "$DIR" | sed -n 's/^FILES_PER_SEC=//p')"
    done
    add "meta tokio" "$("$TK" meta --dir "$DIR" | sed -n 's/^FILES_PER_SEC=//p')"
done

# Ratios are taken per round (the two runs of a round were seconds apart, so they saw the same
# disk), then their median: this virtual disk's speed drifts between rounds.
python3 - "$RAW" <<'PY'
import sys, statistics
from collections import defaultdict
runs = defaultdict(dict)
for line in open(sys.argv[1]):
    rnd, case, val = line.rstrip("\n").split("\t")
    if val:
        runs[case][int(rnd)] = float(val)
print("\n| case | median | rounds |\n|---|---|---|")
for case in sorted(runs):
    vals = [runs[case][r] for r in sorted(runs[case])]
    print(f"| {case} | {statistics.median(vals):.0f} | {' '.join(f'{v:.0f}' for v in vals)} |")
def ratio(a, b):
    rs = [runs[a][r] / runs[b][r] for r in runs[a] if r in runs[b] and runs[b][r]]
    return f"{statistics.median(rs):.2f}x ({' '.join(f'{x:.2f}' for x in rs)})" if rs else "n/a"
print("\nMedians of the per-round ratios:")
for qd in (1, 32):
    d = f"direct qd{qd}"
    print(f"- {d}: uring / fio = {ratio(d + ' ringloop uring', d + ' fio io_uring')}; "
          f"uring fixed / fio fixedbufs = {ratio(d + ' ringloop uring fixed', d + ' fio io_uring fixedbufs')}; "
          f"uring / tokio = {ratio(d + ' ringloop uring', d + ' tokio')}; "
          f"epoll / tokio = {ratio(d + ' ringloop epoll', d + ' tokio')}")
c = "cached qd32"
print(f"- {c}: uring / fio io_uring = {ratio(c + ' ringloop uring', c + ' fio io_uring')}; "
      f"uring / tokio = {ratio(c + ' ringloop uring', c + ' tokio')}; "
      f"epoll / tokio = {ratio(c + ' ringloop epoll', c + ' tokio')}")
print(f"- meta: uring / epoll (blocking pool) = {ratio('meta ringloop uring', 'meta ringloop epoll')}; "
      f"uring / tokio = {ratio('meta ringloop uring', 'meta tokio')}")
PY
