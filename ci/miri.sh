#!/usr/bin/env bash
# Miri over the pure buffer code: the `buf` unit tests (src/buf/tests.rs, the pool's tests), which
# play reads and writes the way the kernel does them (raw-pointer writes of `bytes_total()`
# bytes, then `set_init`) after every safe change a user can make to a buffer, plain, sliced and
# nested. Miri reports any access outside an allocation, any use of uninitialised memory, and
# pointers used past what they are good for (Stacked Borrows). The I/O tests cannot run under
# Miri (no io_uring, no epoll); ci/valgrind.sh covers those.
#
# Needs the nightly toolchain's miri component (`rustup component add --toolchain nightly miri
# rust-src`); run it by hand with `bash ci/miri.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo +nightly miri --version >/dev/null 2>&1; then
    echo "== installing Miri: rustup component add --toolchain nightly miri rust-src"
    if ! rustup component add --toolchain nightly miri rust-src; then
        # A machine that cannot reach the toolchain server (no nightly, or no network beyond the
        # package registries) cannot get Miri; say so loudly rather than fail the whole run.
        echo "miri.sh: NOT RUN: Miri cannot be installed on this machine (rustup component add failed)"
        exit 0
    fi
fi
cargo +nightly miri setup >/dev/null
# Every feature, so the bytes::BytesMut impls are checked too.
cargo +nightly miri test --all-features --lib -- buf::
echo "miri: the buf tests found no undefined behaviour"
