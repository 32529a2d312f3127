#!/usr/bin/env bash
# Server memory per idle connection: examples/echo.rs on each backend (pooled receives, and
# `--owned` buffers) and examples/tokio_echo.rs (plain, and `--shared-buf`) each get CONNS
# (10,000) connections from examples/loadgen.rs --idle, which prints how much the server's
# resident memory (VmRSS) grew per connection. benches/scripts/fast_paths.sh measures the same
# with the peers harness's independent load generator.
#
#   bash benches/scripts/idle_memory.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-1}
conns=${CONNS:-10000}
cargo build --release -p ringloop -p ringloop-benches --example echo --example tokio_echo --example loadgen >/dev/null 2>&1
bin=target/release/examples
port=7311
for r in $(seq 1 "$rounds"); do
    for server in uring epoll uring-owned epoll-owned tokio tokio-shared-buf; do
        case $server in
            uring|epoll) RINGLOOP_BACKEND=$server "$bin/echo" "$port" 2>/dev/null & ;;
            *-owned) RINGLOOP_BACKEND=${server%-owned} "$bin/echo" --owned "$port" 2>/dev/null & ;;
            tokio) "$bin/tokio_echo" "$port" 2>/dev/null & ;;
            tokio-shared-buf) "$bin/tokio_echo" --shared-buf "$port" 2>/dev/null & ;;
        esac
        pid=""
        for _ in $(seq 1 50); do
            pid=$(pgrep -f "examples/(echo|tokio_echo)( --[a-z-]+)? $port\$" | head -1 || true)
            if [ -n "$pid" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
            sleep 0.1
        done
        out=$("$bin/loadgen" "127.0.0.1:$port" --conns "$conns" --idle --pid "$pid")
        printf 'round %d  %-16s %s\n' "$r" "$server" "$out"
        kill "$pid"; wait 2>/dev/null || true; sleep 0.5
    done
done
