#!/usr/bin/env bash
# Runs each example on both backends, and checks a bad RINGLOOP_BACKEND is refused clearly.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -p ringloop -p ringloop-benches --examples
bin=target/debug/examples
expected=$'starting coroutine\nentering event loop\nin coroutine\nclosing event loop'

source ci/lib.sh
# Output is checked with `grep -q PATTERN <<<"$(command)"`, never `command | grep -q`: grep -q
# stops reading at the first match, and a command still writing then dies of a closed pipe.

for backend in uring epoll; do
    echo "== hello on $backend"
    out=$(RINGLOOP_BACKEND=$backend "$bin/hello" 2>/tmp/ringloop-hello.err)
    cat /tmp/ringloop-hello.err
    if [ "$out" != "$expected" ]; then
        echo "hello printed, on $backend:"; echo "$out"; exit 1
    fi
    grep -q "backend: $backend" /tmp/ringloop-hello.err || { echo "hello did not report $backend"; exit 1; }

    echo "== echo on $backend"
    RINGLOOP_BACKEND=$backend "$bin/echo" 127.0.0.1:0 2>/tmp/ringloop-echo.err &
    pid=$!
    wait_port /tmp/ringloop-echo.err echo $pid
    grep -q "backend: $backend" /tmp/ringloop-echo.err || { echo "echo did not report $backend"; kill $pid; exit 1; }
    for i in 1 2 3; do
        exec 3<>"/dev/tcp/127.0.0.1/$port"
        msg="ping-$backend-$i"
        printf '%s' "$msg" >&3
        reply=""
        IFS= read -r -t 5 -N ${#msg} reply <&3 || true
        exec 3<&-
        [ "$reply" = "$msg" ] || { echo "echo on $backend answered '$reply' to '$msg'"; kill $pid; exit 1; }
    done
    echo "== loadgen on $backend against echo (one second, paced and unpaced)"
    RINGLOOP_BACKEND=$backend "$bin/loadgen" "127.0.0.1:$port" --conns 8 --inflight 2 --duration 1 --warmup 0.2 --pid $pid > /tmp/ringloop-loadgen.out
    cat /tmp/ringloop-loadgen.out
    grep -q "round trips/s" /tmp/ringloop-loadgen.out || { echo "loadgen printed no rate"; kill $pid; exit 1; }
    grep -q "ns CPU per message" /tmp/ringloop-loadgen.out || { echo "loadgen printed no server CPU"; kill $pid; exit 1; }
    grep -q "round trips/s" <<<"$(RINGLOOP_BACKEND=$backend "$bin/loadgen" "127.0.0.1:$port" --conns 4 --rate 2000 --duration 1 --warmup 0.2)"
    kill $pid
    wait $pid 2>/dev/null || true
    echo "echo on $backend: ok"

    echo "== echo --owned and the fast paths switched off on $backend"
    for variant in "--owned" "RINGLOOP_DISABLE=multishot-recv" "RINGLOOP_DISABLE=buf-ring,multishot-accept,registered-ring,setup-flags"; do
        case $variant in
            --*) RINGLOOP_BACKEND=$backend "$bin/echo" "$variant" 127.0.0.1:0 2>/tmp/ringloop-echo.err & ;;
            *) env "$variant" RINGLOOP_BACKEND=$backend "$bin/echo" 127.0.0.1:0 2>/tmp/ringloop-echo.err & ;;
        esac
        pid=$!
        wait_port /tmp/ringloop-echo.err echo $pid
        out=$(RINGLOOP_BACKEND=$backend "$bin/loadgen" "127.0.0.1:$port" --conns 8 --inflight 2 --size 4096 --duration 1 --warmup 0.2)
        grep -q "round trips/s" <<<"$out" || { echo "echo ($variant) on $backend: $out"; kill $pid; exit 1; }
        kill $pid
        wait $pid 2>/dev/null || true
    done
    err=$(RINGLOOP_DISABLE=warp-drive RINGLOOP_BACKEND=$backend "$bin/echo" 127.0.0.1:0 2>&1 || true)
    grep -q 'unknown fast path "warp-drive"' <<<"$err" || { echo "a bad RINGLOOP_DISABLE was not refused: $err"; exit 1; }

    echo "== subprocess on $backend: ls -l and five sleep 1 at once, in about a second"
    start=$(date +%s%N)
    out=$(RINGLOOP_BACKEND=$backend "$bin/subprocess" 2>&1)
    took_ms=$(( ($(date +%s%N) - start) / 1000000 ))
    echo "$out" | tail -3
    [ "$(grep -c '^sleep 1 (#[0-9]): exit status: 0' <<<"$out")" = 5 ] || { echo "subprocess: $out"; exit 1; }
    grep -q '^ls -l: exit status: 0' <<<"$out" || { echo "subprocess: $out"; exit 1; }
    # Five one-second children one after another would take five seconds.
    (( took_ms < 4000 )) || { echo "subprocess took $took_ms ms: the children did not run at once"; exit 1; }
    grep -q 'NotFound\|cannot start "ringloop-no-such"' <<<"$(RINGLOOP_BACKEND=$backend "$bin/subprocess" ringloop-no-such 2>&1 || true)" \
        || { echo "subprocess did not name a missing program"; exit 1; }

    echo "== slow_poll on $backend: RINGLOOP_DEBUG=1 names the task that blocked"
    out=$(RINGLOOP_DEBUG=1 RINGLOOP_BACKEND=$backend "$bin/slow_poll" 2>&1)
    grep -q 'task "blocking-task" (spawned at examples/slow_poll.rs:[0-9]*:[0-9]*) blocked the loop' <<<"$out" \
        || { echo "slow_poll printed no warning: $out"; exit 1; }
    out=$(RINGLOOP_BACKEND=$backend "$bin/slow_poll" 2>&1)
    if grep -q 'blocked the loop' <<<"$out"; then echo "slow_poll warned with debug mode off"; exit 1; fi
    err=$(RINGLOOP_DEBUG=yes RINGLOOP_BACKEND=$backend "$bin/slow_poll" 2>&1 || true)
    grep -q 'RINGLOOP_DEBUG="yes" is not a debug setting' <<<"$err" || { echo "a bad RINGLOOP_DEBUG was not refused: $err"; exit 1; }

    echo "== download on $backend (built-in server, five files)"
    out_dir=$(mktemp -d)
    RINGLOOP_BACKEND=$backend "$bin/download" --out "$out_dir" > /tmp/ringloop-download.out
    cat /tmp/ringloop-download.out
    [ "$(grep -c '^Finish downloading ' /tmp/ringloop-download.out)" = 5 ] || { echo "download did not finish five files"; exit 1; }
    [ "$(grep -c "matches the server's" /tmp/ringloop-download.out)" = 5 ] || { echo "download checksums did not all match"; exit 1; }
    grep -q "backend: $backend" /tmp/ringloop-download.out || { echo "download did not report $backend"; exit 1; }

    echo "== download on $backend: the temporary directory is removed at exit, kept with --keep"
    tmp=$(mktemp -d)
    TMPDIR=$tmp RINGLOOP_BACKEND=$backend "$bin/download" > /dev/null
    [ -z "$(ls -A "$tmp")" ] || { echo "download left files in the temp dir:"; ls -R "$tmp"; exit 1; }
    TMPDIR=$tmp RINGLOOP_BACKEND=$backend "$bin/download" --keep > /dev/null
    [ "$(ls "$tmp"/ringloop-download-*/ | wc -l)" = 5 ] || { echo "--keep did not keep five files"; exit 1; }
    rm -rf "$tmp"
    help=$("$bin/download" --help)
    grep -q -- "--keep" <<<"$help" || { echo "download --help does not mention --keep"; exit 1; }

    echo "== download on $backend against a server sending chunked and malformed responses"
    python3 ci/http_fixture.py > /tmp/ringloop-fixture.log &
    fixture=$!
    wait_port /tmp/ringloop-fixture.log http_fixture $fixture
    RINGLOOP_BACKEND=$backend "$bin/download" --out "$out_dir" "http://127.0.0.1:$port/chunked" > /dev/null
    [ "$(cat "$out_dir/chunked")" = "hello, chunked world" ] || { echo "chunked body came out wrong"; kill $fixture; exit 1; }
    # path:words the error must contain (besides the URL)
    for case in negative:Content-Length huge:Content-Length bad-chunk:chunk short-chunk:closed big-head:64; do
        path=${case%%:*}; word=${case#*:}; url="http://127.0.0.1:$port/$path"
        if RINGLOOP_BACKEND=$backend "$bin/download" --out "$out_dir" "$url" > /dev/null 2>/tmp/ringloop-download.err; then
            echo "download of $path succeeded"; kill $fixture; exit 1
        fi
        grep -q "$url: .*$word" /tmp/ringloop-download.err || { echo "the $path error does not name the URL and $word:"; cat /tmp/ringloop-download.err; kill $fixture; exit 1; }
        cat /tmp/ringloop-download.err
    done
    kill $fixture; wait $fixture 2>/dev/null || true

    echo "== cat on $backend"
    RINGLOOP_BACKEND=$backend "$bin/cat" "$out_dir/f1040sb.pdf" "$out_dir/copy.pdf"
    cmp "$out_dir/f1040sb.pdf" "$out_dir/copy.pdf"
    [ "$(RINGLOOP_BACKEND=$backend "$bin/cat" "$out_dir/f1040.pdf" | wc -c)" = "$(stat -c %s "$out_dir/f1040.pdf")" ]
    if RINGLOOP_BACKEND=$backend "$bin/cat" "$out_dir/missing" 2>/dev/null; then echo "cat of a missing file succeeded"; exit 1; fi
    rm -rf "$out_dir"

    echo "== throughput on $backend (small sizes: this checks it runs, not how fast)"
    grep -q "tcp on $backend" <<<"$(RINGLOOP_BACKEND=$backend "$bin/throughput" tcp --mib 16)"
    grep -q "randread on $backend" <<<"$(RINGLOOP_BACKEND=$backend "$bin/throughput" randread --file-mib 8 --reads 2000 --in-flight 4)"
    grep -q "randread on $backend (O_DIRECT, fixed buffers)" <<<"$(RINGLOOP_BACKEND=$backend "$bin/throughput" randread --dir target --file-mib 8 --reads 2000 --qd 4 --direct --fixed)"
    grep -q "meta on $backend: 200 files" <<<"$(RINGLOOP_BACKEND=$backend "$bin/throughput" meta --dir target --files 200)"
done
echo "== tokio_throughput randread and meta"
data=$(mktemp -p target)
head -c $((8 << 20)) /dev/zero >"$data"
grep -q "randread on tokio (O_DIRECT" <<<"$("$bin/tokio_throughput" randread --file "$data" --secs 1 --qd 4 --direct)"
grep -q "meta on tokio: 200 files" <<<"$("$bin/tokio_throughput" meta --dir target --files 200)"
rm -f "$data"

echo "== wake (round trips across threads on uring, epoll and tokio; small: this checks it runs)"
out=$("$bin/wake" --rounds 1 --trips 200 --pin same)
grep -q "thread: 1 rounds" <<<"$out" && grep -q "blocking: 1 rounds" <<<"$out" && grep -q "uring/epoll" <<<"$out" \
    || { echo "wake printed:"; echo "$out"; exit 1; }
if "$bin/wake" sideways 2>/tmp/ringloop-wake.err; then echo "wake took an unknown case"; exit 1; fi
grep -q "unknown case" /tmp/ringloop-wake.err || { cat /tmp/ringloop-wake.err; exit 1; }

echo "== tokio_echo (the benchmarks' reference server) under loadgen"
"$bin/tokio_echo" 127.0.0.1:0 2>/tmp/ringloop-tokio.err &
pid=$!
wait_port /tmp/ringloop-tokio.err tokio_echo $pid
"$bin/loadgen" "127.0.0.1:$port" --conns 8 --duration 1 --warmup 0.2 | tee /tmp/ringloop-loadgen.out
grep -q "round trips/s" /tmp/ringloop-loadgen.out || { kill $pid; exit 1; }
kill $pid
wait $pid 2>/dev/null || true

echo "== loadgen refuses bad arguments"
if "$bin/loadgen" --conns zero 2>/tmp/ringloop-loadgen.err; then echo "loadgen accepted --conns zero"; exit 1; fi
grep -q "conns" /tmp/ringloop-loadgen.err || { cat /tmp/ringloop-loadgen.err; exit 1; }
if "$bin/loadgen" 127.0.0.1:1 --duration 1 2>/tmp/ringloop-loadgen.err; then echo "loadgen to a closed port succeeded"; exit 1; fi
grep -qi "refused" /tmp/ringloop-loadgen.err || { cat /tmp/ringloop-loadgen.err; exit 1; }

echo "== a bad RINGLOOP_BACKEND is refused"
if RINGLOOP_BACKEND=bogus "$bin/hello" >/dev/null 2>/tmp/ringloop-bad.err; then
    echo "hello accepted RINGLOOP_BACKEND=bogus"; exit 1
fi
for word in auto uring epoll; do
    grep -q "$word" /tmp/ringloop-bad.err || { echo "the error does not name $word:"; cat /tmp/ringloop-bad.err; exit 1; }
done
cat /tmp/ringloop-bad.err
echo "examples: ok"
