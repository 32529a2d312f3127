#!/usr/bin/env bash
# The README's test command. io_uring is required: the uring variant of every I/O test fails,
# never skips, when the kernel refuses io_uring.
set -euo pipefail
cd "$(dirname "$0")/.."
unset RINGLOOP_BACKEND

echo "== kernel $(uname -r); kernel.io_uring_disabled=$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo absent)"
echo "== cargo test --workspace --all-features"
cargo test --workspace --all-features
