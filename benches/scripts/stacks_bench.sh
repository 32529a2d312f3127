#!/usr/bin/env bash
# The stacks users bring, served by ringloop (uring, epoll) against the same code on tokio:
#
# - axum: the `axum_app` Router (JSON route /users/7 through tower-http's trace, compression and
#   body-limit layers) on one ringloop loop vs `axum::serve` on tokio's current_thread runtime.
#   wrk (HTTP/1.1, 64 connections) and h2load (h2c, 64 connections x 10 streams) req/s, and the
#   server's CPU per request at a fixed rate (h2load --rps, 32,000 req/s).
# - gRPC: the tonic echo service's Unary method (a prebuilt 64-byte request) served by
#   compat::axum::serve vs axum::serve on tokio; h2load req/s and CPU per request at a fixed rate.
# - axum on two threads: `axum_pool --threads 2` vs tokio's multi-thread runtime with 2 workers,
#   wrk unpinned (server and client share the two cores: noisy, reported as such).
# - What `tokio-compat` costs: `axum_app` built with it, so tower-http's TimeoutLayer (a
#   tokio::time sleep per request, on the tokio runtime's thread) is on, vs tokio with the same
#   layer ("uring+compat" and "tokio+timeout": the axum single-thread figures only).
#
# Single-thread servers are pinned to CPU 0 and the clients to CPU 1; servers alternate within
# each round. Prints each round, then medians and ratios to tokio.
#
#   bash benches/scripts/stacks_bench.sh [ROUNDS=3] [SECONDS=5]
#
# Needs h2load (nghttp2-client) and wrk; installs them with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
secs=${2:-5}
for tool in h2load:nghttp2-client wrk:wrk; do
    command -v "${tool%%:*}" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${tool#*:}" >/dev/null; }
done
out=$(mktemp -d)
cargo build --release -p ringloop-ecosystem --features tokio-compat --example axum_app 2>/dev/null
cp target/release/examples/axum_app "$out/axum_app_compat"
cargo build --release -p ringloop-ecosystem --example axum_app --example axum_pool --example tokio_axum_app 2>/dev/null
cargo build --release -p ringloop-grpc --bins 2>/dev/null
ex=target/release/examples
bin=target/release
port=18090
hz=$(getconf CLK_TCK)
# One gRPC frame: no compression, length 66, then EchoRequest { message: 64 x "x" }.
printf '\x00\x00\x00\x00\x42\x0a\x40%s' "$(head -c 64 /dev/zero | tr '\0' x)" > "$out/unary.bin"
grpc=(-d "$out/unary.bin" -H 'content-type: application/grpc' -H 'te: trailers')

start() { # PIN CMD... -> $pid; PIN is a taskset CPU list or "-" for none
    local pin=$1; shift
    if [ "$pin" = - ]; then "$@" "127.0.0.1:$port" 2>/dev/null & else taskset -c "$pin" "$@" "127.0.0.1:$port" 2>/dev/null & fi
    pid=$!
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && return; sleep 0.1; done
    echo "server $* did not start"; exit 1
}
stop() { kill -INT $pid 2>/dev/null; sleep 0.2; kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; sleep 0.3; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
h2rate() { taskset -c 1 h2load "$@" 2>&1 | sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p'; }
wrkrate() { taskset -c "$1" wrk -c 64 -t 1 -d "${secs}s" "$2" 2>&1 | sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p'; }
# CPU per request (us) at 64 clients x 500 req/s, with h2load's extra arguments.
cpu_per_request() {
    local t0 t1 n
    t0=$(cpu_ticks $pid)
    n=$(taskset -c 1 h2load -c 64 -m 1 --rps 500 -D "$secs" "$@" 2>&1 | sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p')
    t1=$(cpu_ticks $pid)
    awk -v t="$((t1 - t0))" -v hz="$hz" -v n="$n" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }'
}

for round in $(seq "$rounds"); do
    for mode in uring epoll tokio uring+compat tokio+timeout; do
        case $mode in
            tokio) axum=("$ex/tokio_axum_app" --no-timeout); grpcsrv=("$bin/tokio_grpc_server") ;;
            tokio+timeout) axum=("$ex/tokio_axum_app") ;;
            uring+compat) export RINGLOOP_BACKEND=uring; axum=("$out/axum_app_compat") ;;
            *) export RINGLOOP_BACKEND=$mode; axum=("$ex/axum_app"); grpcsrv=("$bin/grpc_server") ;;
        esac
        url="http://127.0.0.1:$port"
        start 0 "${axum[@]}"
        w=$(wrkrate 1 "$url/users/7")
        h2=$(h2rate -c 64 -m 10 -D "$secs" --warm-up-time=1 "$url/users/7")
        cpu=$(cpu_per_request "$url/users/7")
        stop
        if [[ $mode == *+* ]]; then
            unset RINGLOOP_BACKEND
            echo "round $round $mode: axum wrk $w, h2load $h2 req/s, $cpu us/req" | tee -a "$out/log"
            echo "$mode $w $h2 $cpu" >> "$out/compat"
            continue
        fi
        start 0 "${grpcsrv[@]}"
        g=$(h2rate -c 64 -m 10 -D "$secs" --warm-up-time=1 "${grpc[@]}" "$url/echo.Echo/Unary")
        gcpu=$(cpu_per_request "${grpc[@]}" "$url/echo.Echo/Unary")
        stop
        if [ $mode = tokio ]; then start - "$ex/tokio_axum_app" --no-timeout --threads 2
        else start - "$ex/axum_pool" --threads 2; fi
        w2=$(wrkrate 0,1 "$url/users/7")
        stop
        unset RINGLOOP_BACKEND
        echo "round $round $mode: axum wrk $w, h2load $h2 req/s, $cpu us/req; grpc h2load $g req/s, $gcpu us/req; axum 2 threads wrk $w2 req/s" | tee -a "$out/log"
        echo "$mode $w $h2 $cpu $g $gcpu $w2" >> "$out/data"
    done
done
python3 - "$out/data" "$out/compat" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    mode, *vals = line.split()
    rows.setdefault(mode, []).append([float(v) for v in vals])
med = {m: [statistics.median(col) for col in zip(*v)] for m, v in rows.items()}
t = med["tokio"]
names = ["axum wrk HTTP/1.1 req/s", "axum h2load h2c req/s", "axum CPU/req at 32k req/s (us)",
         "gRPC unary h2load req/s", "gRPC CPU/req at 32k req/s (us)", "axum 2 threads wrk req/s"]
print("| | " + " | ".join(["uring", "epoll", "tokio"]) + " |")
print("|---|---|---|---|")
for i, name in enumerate(names):
    cells = [f"{med[m][i]:,.2f}" if "CPU" in name else f"{med[m][i]:,.0f}" for m in ["uring", "epoll", "tokio"]]
    cells = [f"{c} ({med[m][i] / t[i]:.2f}x)" for c, m in zip(cells, ["uring", "epoll", "tokio"])]
    print(f"| {name} | " + " | ".join(cells) + " |")
comp = {}
for line in open(sys.argv[2]):
    mode, *vals = line.split()
    comp.setdefault(mode, []).append([float(v) for v in vals])
cm = {m: [statistics.median(col) for col in zip(*v)] for m, v in comp.items()}
u, t = cm["uring+compat"], cm["tokio+timeout"]
print()
print("With tower-http's TimeoutLayer (tokio::time through tokio-compat on ringloop):")
print("| | uring+compat | tokio+timeout |")
print("|---|---|---|")
for i, name in enumerate(names[:3]):
    fmt = (lambda v: f"{v:,.2f}") if "CPU" in name else (lambda v: f"{v:,.0f}")
    print(f"| {name} | {fmt(u[i])} ({u[i] / t[i]:.2f}x) | {fmt(t[i])} (1.00x) |")
PY
