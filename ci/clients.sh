#!/usr/bin/env bash
# The poll-based ecosystem on ringloop, checked by real clients on both backends: curl (HTTP/1.1
# and h2c), h2load and wrk against the hyper_server example; hyper_client; openssl s_client and
# the example's own client against tls_echo; the websocket example's client against its server.
# Installs curl, wrk, nghttp2-client (h2load) and openssl from Debian's packages when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/lib.sh
need curl curl
need wrk wrk
need h2load nghttp2-client
need openssl openssl

cargo build --examples --all-features
bin=target/debug/examples
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; kill $(jobs -p) 2>/dev/null || true' EXIT
head -c $((10 << 20)) /dev/urandom > "$tmp/body"
want=$(sha256sum < "$tmp/body")

fail() { echo "FAIL ($backend): $*"; exit 1; }

for backend in uring epoll; do
    export RINGLOOP_BACKEND=$backend
    echo "== hyper_server on $backend"
    "$bin/hyper_server" 127.0.0.1:0 2>"$tmp/server.err" &
    server=$!
    wait_port "$tmp/server.err" hyper_server $server
    grep -q "backend: $backend" "$tmp/server.err" || fail "hyper_server did not report $backend"
    url="http://127.0.0.1:$port"

    [ "$(curl -sS "$url/")" = "Hello, world!" ] || fail "curl GET / over HTTP/1.1"
    [ "$(curl -sS --http2-prior-knowledge "$url/")" = "Hello, world!" ] || fail "curl GET / over h2c"
    [ "$(curl -sS -o /dev/null -w '%{http_version}' --http2-prior-knowledge "$url/")" = 2 ] \
        || fail "curl --http2-prior-knowledge did not speak HTTP/2"
    [ "$(curl -sS "$url/bytes/100000" | wc -c)" = 100000 ] || fail "/bytes/100000"
    [ "$(curl -sS -o /dev/null -w '%{http_code}' "$url/nowhere")" = 404 ] || fail "404"
    for proto in --http1.1 --http2-prior-knowledge; do
        got=$(curl -sS $proto --data-binary @"$tmp/body" "$url/echo" | sha256sum)
        [ "$got" = "$want" ] || fail "POST /echo of 10 MiB with $proto came back different"
    done
    echo "curl: GET and 10 MiB echo over HTTP/1.1 and h2c: ok"

    "$bin/hyper_client" "$url/bytes/12345" > "$tmp/client.out"
    grep -q "200 OK" "$tmp/client.out" && grep -q "body: 12345 bytes" "$tmp/client.out" \
        || { cat "$tmp/client.out"; fail "hyper_client over HTTP/1.1"; }
    "$bin/hyper_client" --http2 "$url/" > "$tmp/client.out"
    grep -q "HTTP/2.0 200 OK" "$tmp/client.out" || { cat "$tmp/client.out"; fail "hyper_client --http2"; }
    if "$bin/hyper_client" "ftp://127.0.0.1/" 2>"$tmp/client.err"; then fail "hyper_client took ftp://"; fi
    grep -q "only http://" "$tmp/client.err" || fail "hyper_client's error for ftp:// is unclear"
    echo "hyper_client: ok"

    h2load -n 50000 -c 32 -m 10 "$url/" > "$tmp/h2load.out" 2>&1 || true
    grep -E "^(finished in|requests:|status codes:)" "$tmp/h2load.out"
    grep -q "50000 succeeded, 0 failed, 0 errored" "$tmp/h2load.out" || fail "h2load had failures"

    wrk -c 256 -t 1 -d 3s "$url/" > "$tmp/wrk.out" 2>&1
    grep -E "Requests/sec|requests in" "$tmp/wrk.out"
    if grep -E "Socket errors|Non-2xx" "$tmp/wrk.out"; then fail "wrk saw errors"; fi
    grep -q "requests in" "$tmp/wrk.out" || { cat "$tmp/wrk.out"; fail "wrk did not run"; }

    kill $server; wait $server 2>/dev/null || true

    echo "== tls_echo on $backend"
    "$bin/tls_echo" | tee "$tmp/tls.out"
    grep -q "message 3: 1048576 bytes echoed intact" "$tmp/tls.out" || fail "tls_echo's own client"
    "$bin/tls_echo" --server 127.0.0.1:0 2>"$tmp/tls.err" &
    server=$!
    wait_port "$tmp/tls.err" tls_echo $server
    got=$( (printf 'hello over tls\n'; sleep 1) | timeout 10 openssl s_client \
        -connect "127.0.0.1:$port" -servername localhost -quiet 2>/dev/null || true)
    [ "$got" = "hello over tls" ] || fail "openssl s_client got '$got'"
    echo "openssl s_client: ok"
    kill $server; wait $server 2>/dev/null || true

    echo "== websocket on $backend"
    "$bin/websocket" 127.0.0.1:0 2>"$tmp/ws.err" &
    server=$!
    wait_port "$tmp/ws.err" websocket $server
    grep -q "100 messages echoed intact" <<<"$("$bin/websocket" --client "ws://127.0.0.1:$port/")" \
        || fail "the websocket client"
    kill $server; wait $server 2>/dev/null || true
    echo "websocket: ok"
done
echo "clients: ok"
