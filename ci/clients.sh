#!/usr/bin/env bash
# The poll-based ecosystem on ringloop, checked by real clients on both backends: curl (HTTP/1.1
# and h2c), h2load and wrk against the hyper_server example; hyper_client; openssl s_client and
# the example's own client against tls_echo; the websocket example's client against its server.
# Then the axum app (curl, h2load, wrk, graceful shutdown) and the gRPC example (its own tonic client
# and Python's grpcio).
# Installs curl, wrk, nghttp2-client (h2load) and openssl from Debian's packages when missing,
# and grpcio from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/lib.sh
need curl curl
need wrk wrk
need h2load nghttp2-client
need openssl openssl

cargo build --workspace --examples --all-features
cargo build -p ringloop-grpc --bins
bin=target/debug/examples
# grpcio: a gRPC client from PyPI, with grpcio-tools to compile the proto for it.
python3 -c 'import grpc, grpc_tools' 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check grpcio grpcio-tools
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

    echo "== axum_app on $backend"
    "$bin/axum_app" 127.0.0.1:0 2>"$tmp/axum.err" &
    server=$!
    wait_port "$tmp/axum.err" axum_app $server
    grep -q "backend: $backend" "$tmp/axum.err" || fail "axum_app did not report $backend"
    url="http://127.0.0.1:$port"
    for proto in --http1.1 --http2-prior-knowledge; do
        [ "$(curl -sS $proto "$url/")" = "Hello, world!" ] || fail "axum GET / with $proto"
        [ "$(curl -sS $proto "$url/users/42")" = '{"id":42}' ] || fail "axum /users/42 with $proto"
        [ "$(curl -sS $proto "$url/search?q=ring&limit=3")" = '{"q":"ring","limit":3}' ] \
            || fail "axum query extractor with $proto"
        got=$(curl -sS $proto -H 'content-type: application/json' -d '{"name":"ada"}' \
            -w ' %{http_code}' "$url/users")
        [[ "$got" =~ ^\{\"id\":[0-9]+,\"name\":\"ada\"\}\ 201$ ]] || fail "axum POST /users: $got"
        [ "$(curl -sS $proto "$url/stream/1000" | wc -l)" = 1000 ] || fail "axum streamed body"
        [ "$(curl -sS $proto --compressed -o /dev/null -w '%{size_download}' "$url/stream/1000")" -lt 5000 ] \
            || fail "axum did not compress /stream for a client that accepts gzip"
        [ "$(curl -sS $proto -o /dev/null -w '%{http_code}' "$url/nowhere")" = 404 ] || fail "axum 404"
    done
    [ "$(curl -sS -o /dev/null -w '%{http_version}' --http2-prior-knowledge "$url/")" = 2 ] \
        || fail "axum_app did not speak HTTP/2"
    # The body limit answers 413 before reading the body. Over HTTP/2 the server then resets the
    # stream (NO_ERROR, as RFC 9113 8.1 allows); curl 7.88 drops the answer then, nghttp shows it.
    [ "$(curl -sS -o /dev/null -w '%{http_code}' --data-binary @"$tmp/body" "$url/echo")" = 413 ] \
        || fail "axum's body limit let 10 MiB through over HTTP/1.1"
    timeout 10 nghttp -v -d "$tmp/body" "$url/echo" > "$tmp/nghttp.out" 2>&1 || true
    grep -q ":status: 413" "$tmp/nghttp.out" || { cat "$tmp/nghttp.out" | head -30; fail "axum's body limit over h2c"; }
    echo "curl: axum routes over HTTP/1.1 and h2c: ok"
    h2load -n 20000 -c 16 -m 10 "$url/users/7" > "$tmp/h2load.out" 2>&1 || true
    grep -q "20000 succeeded, 0 failed, 0 errored" "$tmp/h2load.out" || { cat "$tmp/h2load.out"; fail "h2load on axum"; }
    wrk -c 64 -t 1 -d 2s "$url/users/7" > "$tmp/wrk.out" 2>&1
    if grep -E "Socket errors|Non-2xx" "$tmp/wrk.out"; then fail "wrk saw errors on axum"; fi
    grep -q "requests in" "$tmp/wrk.out" || { cat "$tmp/wrk.out"; fail "wrk did not run"; }
    echo "h2load and wrk on axum: ok"
    # Graceful shutdown: a request in flight when SIGTERM arrives still gets its answer.
    curl -sS "$url/slow/500" > "$tmp/slow.out" &
    slow=$!
    sleep 0.2
    kill -TERM $server
    wait $slow || fail "the request in flight failed on SIGTERM"
    [ "$(cat "$tmp/slow.out")" = "slept 500 ms" ] || fail "the request in flight got '$(cat "$tmp/slow.out")'"
    wait $server || fail "axum_app exited with an error after SIGTERM"
    grep -q "axum_app: stopped" "$tmp/axum.err" || fail "axum_app did not stop gracefully"
    echo "axum graceful shutdown: ok"

    echo "== axum_pool on $backend"
    "$bin/axum_pool" 127.0.0.1:0 --threads 2 2>"$tmp/pool.err" &
    server=$!
    wait_port "$tmp/pool.err" axum_pool $server
    for _ in 1 2 3 4; do
        [ "$(curl -sS "http://127.0.0.1:$port/users/5")" = '{"id":5}' ] || fail "axum_pool /users/5"
    done
    kill -TERM $server
    wait $server || fail "axum_pool exited with an error after SIGTERM"
    grep -q "axum_pool: stopped" "$tmp/pool.err" || fail "axum_pool did not stop"
    echo "axum_pool: ok"

    echo "== grpc_server on $backend"
    target/debug/grpc_server 127.0.0.1:0 2>"$tmp/grpc.err" &
    server=$!
    wait_port "$tmp/grpc.err" grpc_server $server
    grep -q "backend: $backend" "$tmp/grpc.err" || fail "grpc_server did not report $backend"
    timeout 60 target/debug/grpc_client "127.0.0.1:$port" || fail "the tonic client on ringloop"
    timeout 120 python3 ci/grpc_check.py "127.0.0.1:$port" examples/grpc/proto || fail "python grpcio"
    kill -TERM $server; wait $server 2>/dev/null || true
    echo "grpc: ok"

    echo "== file_server on $backend"
    root="$tmp/root"; rm -rf "$root" "$tmp/outside"; mkdir -p "$root/sub" "$tmp/outside"
    echo hello > "$root/a.txt"; head -c 3000000 /dev/urandom > "$root/sub/big.bin"
    echo secret > "$tmp/outside/s"
    ln -s "$tmp/outside/s" "$root/abs_link"; ln -s ../outside/s "$root/rel_link"; ln -s a.txt "$root/in_link"
    mkfifo "$root/fifo"
    "$bin/file_server" "$root" 127.0.0.1:0 --threads 2 --head-timeout 5 --idle-timeout 30 \
        --send-timeout 10 --max-conns 1000 2>"$tmp/fs.err" &
    server=$!
    wait_port "$tmp/fs.err" file_server $server
    url="http://127.0.0.1:$port"
    [ "$(curl -sS "$url/a.txt")" = hello ] || fail "file_server GET"
    cmp <(curl -sS "$url/sub/big.bin") "$root/sub/big.bin" || fail "file_server 3 MB body"
    heads=$(curl -sSI "$url/sub/big.bin" | tr -d '\r')
    grep -q "^Content-Length: 3000000$" <<<"$heads" && grep -q "^Last-Modified: " <<<"$heads" \
        || { echo "$heads"; fail "file_server HEAD"; }
    [ -z "$(curl -sS -X HEAD "$url/a.txt" --max-time 5)" ] || fail "a HEAD answer carried a body"
    code() { curl -sS --path-as-is -o /dev/null -w '%{http_code}' "$@"; }
    for case in "404 /nope" "404 /../outside/s" "404 /sub/../../outside/s" "404 /%2e%2e/outside/s" \
        "404 /abs_link" "404 /rel_link" "200 /in_link" "400 /a%00.txt" "400 /a%zz" "404 /sub" "404 /"; do
        [ "$(code "$url${case#* }")" = "${case%% *}" ] || fail "file_server ${case#* } is not ${case%% *}"
    done
    [ "$(code "$url/$(head -c 2000 /dev/zero | tr '\0' a)")" = 414 ] || fail "an overlong path"
    # A FIFO is never opened (its open would wait for a writer): 404 at once, then still serving.
    [ "$(code --max-time 10 "$url/fifo")" = 404 ] || fail "the FIFO is not 404"
    [ "$(curl -sS --max-time 10 "$url/a.txt")" = hello ] || fail "file_server GET after the FIFO"
    [ "$(code -X DELETE "$url/a.txt")" = 405 ] || fail "DELETE is not 405"
    # Keep-alive: three requests on one connection; a pipeline of three in one write.
    [ "$(curl -sS -o /dev/null -o /dev/null -o /dev/null -w '%{num_connects}' "$url/a.txt" "$url/sub/big.bin" "$url/a.txt" | tr -d '\n')" = 100 ] \
        || fail "curl did not reuse the connection"
    python3 - "$port" <<'PY' || fail "a pipeline of three requests"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\nHEAD /a.txt HTTP/1.1\r\nHost: x\r\n\r\n"
          b"GET /in_link HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
assert data.count(b"HTTP/1.1 200 OK") == 3 and data.count(b"hello\n") == 2, data
PY
    kill -TERM $server; wait $server || fail "file_server exited with an error on SIGTERM"
    echo "file_server: ok"
done
echo "clients: ok"
