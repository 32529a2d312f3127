#!/usr/bin/env bash
# hyper hello-world served by ringloop (uring, epoll) against the same hyper service on tokio's
# current_thread runtime: requests per second under h2load (h2c, 64 connections x 10 streams) and
# wrk (HTTP/1.1, 64 connections), and the server's CPU time per request at a fixed rate (h2load
# --rps; CPU from /proc/PID/stat). The server is pinned to CPU 0 and the client to CPU 1; servers
# alternate within each round. Prints each round, then medians and ratios to tokio.
#
#   bash benches/scripts/hyper_bench.sh [ROUNDS=3] [SECONDS=5]
#
# Needs h2load (nghttp2-client) and wrk; installs them with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
secs=${2:-5}
for tool in h2load:nghttp2-client wrk:wrk; do
    command -v "${tool%%:*}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${tool#*:}" >/dev/null; }
done
cargo build --release -p ringloop-ecosystem --example hyper_server --example tokio_hyper_server 2>/dev/null
bin=target/release/examples
port=18080
out=$(mktemp -d)
hz=$(getconf CLK_TCK)

start() { # MODE -> pid
    case $1 in
        tokio) taskset -c 0 "$bin/tokio_hyper_server" "127.0.0.1:$port" 2>/dev/null & ;;
        *) RINGLOOP_BACKEND=$1 taskset -c 0 "$bin/hyper_server" "127.0.0.1:$port" 2>/dev/null & ;;
    esac
    pid=$!
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && return; sleep 0.1; done
    echo "server $1 did not start"; exit 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

for round in $(seq "$rounds"); do
    for mode in uring epoll tokio; do
        start "$mode"
        h2=$(taskset -c 1 h2load -c 64 -m 10 -D "$secs" --warm-up-time=1 "http://127.0.0.1:$port/" 2>&1 \
            | sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p')
        w=$(taskset -c 1 wrk -c 64 -t 1 -d "${secs}s" "http://127.0.0.1:$port/" 2>&1 \
            | sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p')
        # Fixed rate: 64 clients x 500 req/s = 32,000 req/s.
        t0=$(cpu_ticks $pid)
        done_n=$(taskset -c 1 h2load -c 64 -m 1 --rps 500 -D "$secs" "http://127.0.0.1:$port/" 2>&1 \
            | sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p')
        t1=$(cpu_ticks $pid)
        cpu=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v n="$done_n" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
        kill $pid; wait $pid 2>/dev/null || true
        echo "round $round $mode: h2load ${h2} req/s, wrk ${w} req/s, ${cpu} us CPU/request at ${done_n} requests" | tee -a "$out/log"
        echo "$mode $h2 $w $cpu" >> "$out/data"
        sleep 0.5
    done
done
python3 - "$out/data" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    mode, h2, w, cpu = line.split()
    rows.setdefault(mode, []).append((float(h2), float(w), float(cpu)))
med = {m: [statistics.median(col) for col in zip(*v)] for m, v in rows.items()}
t = med["tokio"]
print("| server | h2load h2c req/s | wrk HTTP/1.1 req/s | CPU per request at 32k req/s |")
print("|---|---|---|---|")
for m in ["uring", "epoll", "tokio"]:
    h2, w, cpu = med[m]
    print(f"| {m} | {h2:,.0f} ({h2 / t[0]:.2f}x) | {w:,.0f} ({w / t[1]:.2f}x) | {cpu:.2f} us ({cpu / t[2]:.2f}x) |")
PY
