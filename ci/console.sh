#!/usr/bin/env bash
# tokio-console lists the named tasks of ecosystem/examples/console.rs: builds the example (feature
# `tracing`; console-subscriber wants `--cfg console_without_tokio_unstable` when tokio itself is
# not built with `tokio_unstable`, so it gets a target dir of its own), installs a real
# tokio-console, runs both, tokio-console inside tmux, and reads its screen with
# `tmux capture-pane` until every task name is on it. Run it by hand with `bash ci/console.sh`;
# .ci/run runs it too.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v tmux >/dev/null || { apt-get update -qq && apt-get install -y -qq tmux >/dev/null; }

TOOLS=$PWD/target/tools
CONSOLE_VERSION=0.1.14
if ! "$TOOLS/bin/tokio-console" --version 2>/dev/null | grep -q "$CONSOLE_VERSION"; then
    echo "== cargo install tokio-console $CONSOLE_VERSION"
    cargo install --quiet --locked tokio-console --version "$CONSOLE_VERSION" --root "$TOOLS"
fi
echo "== build ecosystem/examples/console.rs (feature tracing)"
RUSTFLAGS="--cfg console_without_tokio_unstable" CARGO_TARGET_DIR=target/console \
    cargo build --quiet -p ringloop-ecosystem --example console --features tracing

port=$((20000 + RANDOM % 20000))
session=ringloop-console-$$
target/console/debug/examples/console --addr "127.0.0.1:$port" --secs 300 >/tmp/$session.out 2>&1 &
pid=$!
cleanup() {
    tmux kill-session -t "$session" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
}
trap cleanup EXIT
sleep 1
tmux new-session -d -s "$session" -x 200 -y 50 "$TOOLS/bin/tokio-console http://127.0.0.1:$port"

want=(acceptor conn-1 conn-2 client-1 client-2 ticker)
screen=""
for _ in $(seq 1 60); do
    sleep 1
    screen=$(tmux capture-pane -p -t "$session" 2>/dev/null || true)
    missing=()
    for name in "${want[@]}"; do
        grep -q -- "$name" <<<"$screen" || missing+=("$name")
    done
    [ ${#missing[@]} -eq 0 ] && break
done
echo "$screen"
if [ ${#missing[@]} -ne 0 ]; then
    echo "console.sh: tokio-console did not list: ${missing[*]}"
    echo "-- the example's output:"
    cat /tmp/$session.out
    exit 1
fi
# The task list shows where each was spawned, and the tasks were polled.
grep -q "console.rs" <<<"$screen" || { echo "console.sh: no spawn location shown"; exit 1; }
echo "console.sh: tokio-console lists ${want[*]}"
