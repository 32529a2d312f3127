#!/usr/bin/env bash
# The io_uring fast paths, each on and off: examples/echo.rs on uring with everything on, then with
# one fast path switched off through RINGLOOP_DISABLE (and with --owned: owned buffers instead of
# the buffer ring), against tokio's current_thread echo, in the peers harness
# (../shared/peers: compare.sh for CPU per message and msgs/s, idle_mem.sh for memory per idle
# connection). Interleaved rounds; ratios are within one run.
#
#   bash benches/scripts/fast_paths.sh [PEERS_DIR]
#
# Environment: ROUNDS (3), D (3 s per run), SCENARIOS (compare.sh's, default below), IDLE_CONNS
# (10000; 0 skips the memory part), OUTDIR (/tmp/ringloop-fast-paths).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
peers_src=${1:-$root/../shared/peers}
[ -d "$peers_src" ] || { echo "fast_paths.sh: no peers harness at $peers_src" >&2; exit 2; }
outdir=${OUTDIR:-/tmp/ringloop-fast-paths}
mkdir -p "$outdir"
# The harness builds into its own directory: work on a copy.
peers=$outdir/peers
[ -d "$peers" ] || cp -r "$peers_src" "$peers"
(cd "$peers" && cargo build -q --release)
cargo build -q --release -p ringloop -p ringloop-benches --example echo --example tokio_echo
echo_bin=$root/target/release/examples/echo
tokio_bin=$root/target/release/examples/tokio_echo

variants=(
    "all-on=env RINGLOOP_BACKEND=uring $echo_bin"
    "no-multishot-recv=env RINGLOOP_BACKEND=uring RINGLOOP_DISABLE=multishot-recv $echo_bin"
    "no-buf-ring=env RINGLOOP_BACKEND=uring RINGLOOP_DISABLE=buf-ring $echo_bin"
    "owned-bufs=env RINGLOOP_BACKEND=uring $echo_bin --owned"
    "no-multishot-accept=env RINGLOOP_BACKEND=uring RINGLOOP_DISABLE=multishot-accept $echo_bin"
    "no-registered-ring=env RINGLOOP_BACKEND=uring RINGLOOP_DISABLE=registered-ring $echo_bin"
    "no-setup-flags=env RINGLOOP_BACKEND=uring RINGLOOP_DISABLE=setup-flags $echo_bin"
    "epoll=env RINGLOOP_BACKEND=epoll $echo_bin"
)
(cd "$peers" && ROUNDS=${ROUNDS:-3} D=${D:-3} NOBUILD=1 OUTDIR=$outdir PEERS="echo-tokio" \
    SCENARIOS=${SCENARIOS:-"64x64 64x4096 512x64 64x64@100000"} ./compare.sh "${variants[@]}")

idle=${IDLE_CONNS:-10000}
[ "$idle" -gt 0 ] || exit 0
echo "== memory per idle connection ($idle connections)"
servers=("${variants[@]}" "tokio=$tokio_bin" "tokio-shared-buf=$tokio_bin --shared-buf")
port=24100
for entry in "${servers[@]}"; do
    name=${entry%%=*}
    cmd=${entry#*=}
    port=$((port + 1))
    LABEL=$name "$peers/idle_mem.sh" "$cmd" "$idle" "$port" | grep '^IDLE' || echo "IDLE label=$name failed"
done
