#!/usr/bin/env bash
# Memcheck over the core tests (tests/core.rs, both backends) and a selection of the pooled
# receive tests (tests/pooled.rs, every path): no invalid read or write, no definite leak. Run
# it by hand with `bash ci/valgrind.sh`; .ci/run runs it too.
#
# On the uring backend, tests in which another thread must wake a loop that sleeps in
# io_uring_enter are skipped: valgrind serialises threads and a thread blocked in io_uring_enter
# keeps the others from running, so such a test hangs under valgrind (and only there). The epoll
# variants of those tests do run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }

bins=$(cargo test --no-run --message-format=json 2>/dev/null \
    | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | grep -E '/core-[0-9a-f]+$')
[ -n "$bins" ] || { echo "valgrind.sh: no test binaries found"; exit 1; }

# --fair-sched=yes: valgrind runs one thread at a time, and by default a thread that makes
# non-blocking syscalls in a loop (a task spinning on yield_now, each yield one look at the ring)
# can keep the others from ever running again; the fair lock hands threads turns in order.
vg=(valgrind -q --fair-sched=yes --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite)
skips=(--skip uring::wakes_from --skip uring::spawn_blocking)
for bin in $bins; do
    echo "== valgrind memcheck: $(basename "$bin")"
    timeout 900 "${vg[@]}" "$bin" --test-threads=1 "${skips[@]}"
done

# Pooled receives on every path: buffers the kernel fills from the ring (bundles too), a PooledBuf that
# outlives its loop, streams dropped with their multishot receive armed.
pooled=$(cargo test --no-run --message-format=json 2>/dev/null \
    | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | grep -E '/pooled-[0-9a-f]+$')
[ -n "$pooled" ] || { echo "valgrind.sh: no pooled test binary found"; exit 1; }
echo "== valgrind memcheck: $(basename "$pooled") (selected tests)"
timeout 900 "${vg[@]}" "$pooled" --test-threads=1 a_buffer_outlives_its_stream_and_its_loop \
    end_of_stream_is_an_empty_buffer a_stream_dropped_with_its_receive_armed_closes \
    stats_count_buffers_in_use into_std_after_pooled_receives_and_accepts bundled_receives

# AsyncFd: multishot polls armed, cancelled with the fd's duplicate kept until their last
# completion, fds handed back with into_inner; eventfd, timerfd, inotify. (The eventfd test's
# writer thread must wake a loop asleep in io_uring_enter: skipped on uring, as above.)
async_fd=$(cargo test --no-run --message-format=json 2>/dev/null \
    | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | grep -E '/async_fd-[0-9a-f]+$')
[ -n "$async_fd" ] || { echo "valgrind.sh: no async_fd test binary found"; exit 1; }
echo "== valgrind memcheck: $(basename "$async_fd")"
timeout 900 "${vg[@]}" "$async_fd" --test-threads=1 --skip uring::eventfd_written_from_another_thread

# Direct I/O and registered buffers: fixed-buffer reads and writes, a set dropped with reads in
# flight, buffers that outlive their set and loop. (The test that hands a buffer between two
# loops waits on a uring loop asleep in io_uring_enter from a pool thread: skipped, as above.)
direct_io=$(cargo test --no-run --message-format=json 2>/dev/null \
    | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | grep -E '/direct_io-[0-9a-f]+$')
[ -n "$direct_io" ] || { echo "valgrind.sh: no direct_io test binary found"; exit 1; }
echo "== valgrind memcheck: $(basename "$direct_io")"
timeout 900 "${vg[@]}" "$direct_io" --test-threads=1 --skip a_buffer_of_another_loops_set
# Safe code cannot corrupt memory: every buffer type, sliced and nested, changed through its safe
# API between reads and writes (tests/buffers.rs). On epoll every kernel write is a syscall
# valgrind checks (a receive into memory past an allocation is an error). On uring the kernel
# writes through the ring, which valgrind does not see: the bytes read would be reported as
# uninitialised, so that run checks addressing and leaks only (--undef-value-errors=no).
buffers=$(cargo test --no-run --message-format=json 2>/dev/null \
    | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | grep -E '/buffers-[0-9a-f]+$')
[ -n "$buffers" ] || { echo "valgrind.sh: no buffers test binary found"; exit 1; }
echo "== valgrind memcheck: $(basename "$buffers") (epoll)"
timeout 900 "${vg[@]}" "$buffers" --test-threads=1 epoll::
echo "== valgrind memcheck: $(basename "$buffers") (uring, addressing and leaks)"
timeout 900 "${vg[@]}" --undef-value-errors=no "$buffers" --test-threads=1 uring::
echo "valgrind: no memory errors, no definite leaks"
