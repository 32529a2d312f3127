#!/usr/bin/env bash
# Where a paced echo server's CPU goes: for examples/echo.rs on uring and epoll and the peers
# harness's tokio server and hand-written multishot io_uring loop, each pinned to core 0 and
# driven by the harness's generator on core 1 at a fixed rate (64 connections x 64 B at
# 100,000 msgs/s), prints per message over 4 s after a 1 s warm-up: the server's CPU
# (`perf stat` task-clock), the user-space share of it (utime against stime in /proc), the
# syscalls (`raw_syscalls:sys_enter`) and the context switches. It shows whether a gap in CPU
# per message is the runtime's user space or the kernel's work.
#
#   bash benches/scripts/paced_split.sh [PEERS_DIR] [ROUNDS]
#
# Env: RATE (100000), CONNS (64), SIZE (64). Needs `perf` (installs linux-tools if missing) and
# a copy of the peers harness (default ../shared/peers, copied to /tmp/ringloop-paced-peers).
set -euo pipefail
cd "$(dirname "$0")/../.."
peers_src=${1:-../shared/peers}
rounds=${2:-2}
rate=${RATE:-100000}
conns=${CONNS:-64}
size=${SIZE:-64}
if ! command -v perf >/dev/null; then
    sudo apt-get install -y linux-tools-generic >/dev/null 2>&1 || apt-get install -y linux-tools-generic >/dev/null
fi
peers=/tmp/ringloop-paced-peers
[ -d "$peers" ] || cp -r "$peers_src" "$peers"
(cd "$peers" && cargo build -q --release --bin echo-tokio --bin echo-raw-uring --bin loadgen)
cargo build -q --release --example echo
echo_bin=${CARGO_TARGET_DIR:-$(pwd)/target}/release/examples/echo
loadgen=$peers/target/release/loadgen
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
port=24100
for round in $(seq 1 "$rounds"); do
    for server in "tokio=$peers/target/release/echo-tokio" \
        "ringloop-uring=env RINGLOOP_BACKEND=uring $echo_bin" \
        "ringloop-epoll=env RINGLOOP_BACKEND=epoll $echo_bin" \
        "raw-uring=$peers/target/release/echo-raw-uring --multishot"; do
        name=${server%%=*}
        cmd=${server#*=}
        while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
        # shellcheck disable=SC2086 # the command line is word-split on purpose
        setsid taskset -c 0 $cmd "$port" >/dev/null 2>&1 &
        spid=$!
        for _ in $(seq 1 50); do
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
            sleep 0.1
        done
        pid=$(ss -ltnp "sport = :$port" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
        taskset -c 1 "$loadgen" --port "$port" -c "$conns" -m "$size" -d 6 -w 0 --rate "$rate" \
            >"$out/lg" 2>&1 &
        lpid=$!
        sleep 1
        read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
        perf stat -x, -e task-clock,context-switches,raw_syscalls:sys_enter -p "$pid" -- sleep 4 \
            2>"$out/perf"
        read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
        wait "$lpid" || true
        kill -TERM -- "-$spid" 2>/dev/null || true
        wait "$spid" 2>/dev/null || true
        msgs=$(grep -o 'msgs=[0-9]*' "$out/lg" | head -1 | cut -d= -f2)
        clock=$(grep task-clock "$out/perf" | cut -d, -f1)
        switches=$(grep context-switches "$out/perf" | cut -d, -f1)
        syscalls=$(grep sys_enter "$out/perf" | cut -d, -f1)
        # The generator counts 6 s of messages at a steady rate; the window is 4 s of them.
        awk -v r="$round" -v n="$name" -v m="$msgs" -v c="$clock" -v cs="$switches" \
            -v sc="$syscalls" -v u=$((u1 - u0)) -v s=$((s1 - s0)) 'BEGIN {
            w = m * 4 / 6
            printf "round %d %-15s CPU %.2f us/msg  user %2.0f%%  syscalls %.2f/msg  context switches %.3f/msg\n",
                r, n, c * 1000 / w, 100 * u / (u + s + 0.001), sc / w, cs / w }'
        port=$((port + 1))
    done
done
