#!/usr/bin/env bash
# Model checking of the protocols between threads (src/sync/shim.rs lists them and what each
# promises): the crate built with `--cfg ringloop_loom`, so the cross-thread modules take loom's atomics,
# locks and threads, and every `loom_model` test explores all interleavings of its threads.
# A separate target directory keeps the normal build's artifacts.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== loom models (RUSTFLAGS=--cfg ringloop_loom, release)"
start=$(date +%s)
RUSTFLAGS="--cfg ringloop_loom" CARGO_TARGET_DIR=target/loom LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-3} \
    cargo test --lib --release -- loom_model --test-threads=2
echo "loom models: $(( $(date +%s) - start )) s"
