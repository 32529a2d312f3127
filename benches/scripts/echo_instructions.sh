#!/usr/bin/env bash
# User-space instructions per echoed message, counted by callgrind: examples/echo.rs on uring and,
# when the peers harness is there, its hand-written multishot io_uring loop
# (`echo-raw-uring --multishot`), each under a paced load. A count, not a time, so it does not
# move with the machine's noise: it shows what a change to the message path saves when the CPU
# figure (echo_cpu.sh, the peers' compare.sh) cannot see it. The top functions per message are
# printed for ringloop. The load comes from the harness's generator (as in compare.sh), or
# without the harness from examples/loadgen.rs, whose paced connections arrive in bursts: more
# messages per loop turn, so sends queue in the ring rather than go inline, and the counts differ.
#
#   bash benches/scripts/echo_instructions.sh [PEERS_DIR]
#
# Env: RATE (10000 msgs/s: the server runs about 50x slower under callgrind), SECS (5),
#      CONNS (64), SIZE (64), TOP (25 functions), OUTDIR (/tmp/ringloop-instructions),
#      BASE (another build's echo binary, counted in turn with this one), ROUNDS (1).
# Installs valgrind if it is missing. For line-level detail, build with
# CARGO_PROFILE_RELEASE_DEBUG=line-tables-only and run callgrind_annotate --auto=yes on the
# output file.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
peers_src=${1:-$root/../shared/peers}
rate=${RATE:-10000}
secs=${SECS:-5}
conns=${CONNS:-64}
size=${SIZE:-64}
top=${TOP:-25}
outdir=${OUTDIR:-/tmp/ringloop-instructions}
mkdir -p "$outdir"
if ! command -v valgrind >/dev/null; then
    sudo apt-get install -y valgrind >/dev/null 2>&1 || apt-get install -y valgrind >/dev/null
fi
cargo build -q --release --example echo --example loadgen
echo_bin=${CARGO_TARGET_DIR:-$root/target}/release/examples/echo
loadgen=${CARGO_TARGET_DIR:-$root/target}/release/examples/loadgen
raw_bin=""
peers_loadgen=""
if [ -d "$peers_src" ]; then
    peers=$outdir/peers
    [ -d "$peers" ] || cp -r "$peers_src" "$peers"
    (cd "$peers" && cargo build -q --release --bin echo-raw-uring --bin loadgen)
    raw_bin=$peers/target/release/echo-raw-uring
    peers_loadgen=$peers/target/release/loadgen
fi

port=7410
# count NAME COMMAND...: runs COMMAND PORT under callgrind (not through `env`: valgrind would
# count `env`, not what it runs), drives it, prints instructions per message.
count() {
    local name=$1
    shift
    local out=$outdir/$name.callgrind
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
    rm -f "$out" "$out".*
    setsid taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out" "$@" "$port" \
        >"$outdir/$name.log" 2>&1 &
    local spid=$!
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.2
    done
    local pid
    pid=$(pgrep -f "callgrind-out-file=$out" | head -1)
    local lg msgs
    if [ -n "$peers_loadgen" ]; then
        # The harness's own generator, as compare.sh drives it: connections paced evenly.
        lg=$(taskset -c 1 "$peers_loadgen" --port "$port" -c "$conns" -m "$size" -d "$secs" -w 0 \
            --rate "$rate" 2>&1)
        msgs=$(grep -o 'msgs=[0-9]*' <<<"$lg" | head -1 | cut -d= -f2)
    else
        lg=$(taskset -c 1 "$loadgen" "127.0.0.1:$port" --conns "$conns" --size "$size" \
            --inflight 1 --duration "$secs" --rate "$rate" 2>&1)
        msgs=$(grep -o '[0-9]* round trips' <<<"$lg" | head -1 | cut -d' ' -f1)
    fi
    # A dump of the counts so far (the server is idle now; callgrind writes it at its next
    # chance), then a graceful stop, which writes the final counts if the dump did not come.
    timeout 20 callgrind_control -d "$pid" >/dev/null 2>&1 || true
    kill -TERM -- "-$spid" 2>/dev/null || true
    for _ in $(seq 1 150); do
        kill -0 "$spid" 2>/dev/null || break
        sleep 0.2
    done
    kill -KILL -- "-$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    local file
    file=$(ls -t "$out".* 2>/dev/null | head -1 || true)
    [ -n "$file" ] || file=$out
    if [ ! -s "$file" ] || [ -z "$msgs" ] || [ "$msgs" -eq 0 ]; then
        echo "$name: no count (loadgen said: $lg)" >&2
        return 1
    fi
    local total
    total=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    # How the messages batched: loop turns (ring enters) per message, from the last `--stats`
    # line. Fewer messages per turn cost more each (every turn has its fixed cost), so compare
    # counts taken at a similar batching.
    local turns=""
    if [ "$name" != raw-uring ]; then
        turns=$(grep -o 'uring_enters: [0-9]*' "$outdir/$name.log" | tail -1 | grep -o '[0-9]*$' || true)
        [ -n "$turns" ] && turns=$(awk -v t="$turns" -v m="$msgs" 'BEGIN { printf "  %.2f messages per loop turn", m / t }')
    fi
    printf '%-10s %8d messages  %12d instructions  %6d per message%s\n' \
        "$name" "$msgs" "$total" $((total / msgs)) "$turns"
    if [ "$name" = ringloop ]; then
        callgrind_annotate "$file" 2>/dev/null \
            | awk -v m="$msgs" '/^ *[0-9,]+ \(/ && !/PROGRAM TOTALS/ {n=$1; gsub(",", "", n); $2=""; $1=""; printf "  %5d  %s\n", n / m, $0}' \
            | head -n "$top" | cut -c1-150 || true # head closes the pipe early
    fi
    port=$((port + 1))
}

# BASE: an echo binary of another build (say the commit before a change), counted in turn
# with this one, ROUNDS times, for an A/B taken under the same load.
for _ in $(seq 1 "${ROUNDS:-1}"); do
    RINGLOOP_BACKEND=uring count ringloop "$echo_bin" --stats
    if [ -n "${BASE:-}" ]; then
        RINGLOOP_BACKEND=uring count base "$BASE" --stats
    fi
    if [ -n "$raw_bin" ]; then
        count raw-uring "$raw_bin" --multishot
    fi
done
