#!/usr/bin/env bash
# The README's test command. io_uring is required: the uring variant of every I/O test fails,
# never skips, when the kernel refuses io_uring.
set -euo pipefail
cd "$(dirname "$0")/.."
unset RINGLOOP_BACKEND

echo "== kernel $(uname -r); kernel.io_uring_disabled=$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo absent)"
echo "== cargo test --workspace --all-features"
cargo test --workspace --all-features

# Direct descriptors are opt-in: the socket suites (the cancel-at-every-await harness among
# them) again with every accepted connection in the ring's file table.
echo "== RINGLOOP_DIRECT_FDS=4096: the socket and cancel suites"
RINGLOOP_DIRECT_FDS=4096 cargo test -p ringloop --test tcp --test sockets --test pooled \
    --test cancel --test cancel_sockets --test async_fd --test send_file
