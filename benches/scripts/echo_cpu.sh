#!/usr/bin/env bash
# Server CPU time per echoed message: examples/echo.rs on each backend and examples/tokio_echo.rs,
# pinned to core 0, driven by examples/loadgen.rs pinned to core 1. Full load, then a fixed rate.
#
#   bash benches/scripts/echo_cpu.sh [ROUNDS] [SECONDS]
#
# Env: CONNS (64), SIZE (64), INFLIGHT (full load, 4), RATE (fixed rate, 100000),
#      LOADGEN_BACKEND (the generator's own backend, uring), MODES ("full fixed"),
#      SERVERS ("uring epoll tokio"; add "traced", examples/echo.rs on uring built with the
#      feature `tracing` and no subscriber, to see what the feature costs).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
secs=${2:-10}
conns=${CONNS:-64}
size=${SIZE:-64}
inflight=${INFLIGHT:-4}
rate=${RATE:-100000}
cargo build --release -p ringloop -p ringloop-benches --example echo --example tokio_echo --example loadgen >/dev/null 2>&1
bin=target/release/examples
servers=${SERVERS:-uring epoll tokio}
if [[ " $servers " == *" traced "* ]]; then
    CARGO_TARGET_DIR=target/traced cargo build --release --example echo --features tracing >/dev/null 2>&1
fi
port=7310
results=$(mktemp)

start_server() { # name -> sets pid
    case $1 in
        uring|epoll) RINGLOOP_BACKEND=$1 taskset -c 0 "$bin/echo" "$port" 2>/dev/null & ;;
        tokio) taskset -c 0 "$bin/tokio_echo" "$port" 2>/dev/null & ;;
        traced) RINGLOOP_BACKEND=uring taskset -c 0 target/traced/release/examples/echo "$port" 2>/dev/null & ;;
    esac
    for _ in $(seq 1 50); do
        pid=$(pgrep -f "examples/(echo|tokio_echo) $port\$" | head -1 || true)
        if [ -n "$pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return; fi
        sleep 0.1
    done
    echo "server $1 did not start" >&2; exit 1
}
stop_server() { kill "$pid"; wait 2>/dev/null || true; sleep 0.3; }

for mode in ${MODES:-full fixed}; do
    for r in $(seq 1 "$rounds"); do
        for server in $servers; do
            start_server "$server"
            if [ "$mode" = full ]; then extra=(--inflight "$inflight"); else extra=(--rate "$rate"); fi
            out=$(RINGLOOP_BACKEND=${LOADGEN_BACKEND:-uring} taskset -c 1 "$bin/loadgen" "127.0.0.1:$port" \
                --conns "$conns" --size "$size" --duration "$secs" --pid "$pid" "${extra[@]}")
            rts=$(sed -n 's/.*s: \([0-9]*\) round trips\/s.*/\1/p' <<<"$out")
            ns=$(sed -n 's/.* \([0-9]*\) ns CPU per message.*/\1/p' <<<"$out")
            split=$(sed -n 's/.*(\([0-9]*\) user + \([0-9]*\) system).*/\1 + \2/p' <<<"$out")
            p99=$(sed -n 's/.*p99 \([0-9.]*\) us.*/\1/p' <<<"$out")
            printf '%-5s round %d  %-5s %8s rt/s  %6s ns CPU/msg (user + sys: %s)  p99 %s us\n' \
                "$mode" "$r" "$server" "$rts" "$ns" "$split" "$p99"
            echo "$mode $r $server $ns" >>"$results"
            stop_server
        done
    done
done

# Medians over the rounds, and the median of each round's ratio to tokio (the rounds alternate
# servers, so a ratio within one round shares that round's machine noise).
echo
echo "summary (ns of server CPU per message; ratio = median over rounds of server/tokio in the same round)"
python3 - "$results" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
for mode in dict.fromkeys(r[0] for r in rows):
    by = {}
    for m, rnd, server, ns in rows:
        if m == mode and ns.isdigit():
            by.setdefault(server, {})[rnd] = int(ns)
    tokio = by.get("tokio", {})
    for server, vals in by.items():
        ratios = [vals[r] / tokio[r] for r in vals if r in tokio]
        spread = f"{min(vals.values())}..{max(vals.values())}"
        line = f"{mode:5} {server:6} median {statistics.median(vals.values()):7.0f} ns (range {spread})"
        if server != "tokio" and ratios:
            line += f"  {statistics.median(ratios):.3f}x tokio (per-round range {min(ratios):.2f}..{max(ratios):.2f})"
        print(line)
PY
rm -f "$results"
