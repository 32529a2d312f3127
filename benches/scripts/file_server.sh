#!/usr/bin/env bash
# The file_server example (uring, epoll) against nginx serving the same files: one nginx worker
# (sendfile on, tcp_nopush on, access_log off) pinned to CPU 0 like our one loop, wrk pinned to
# CPU 1 with 64 connections, files of 1 KiB, 64 KiB and 1 MiB (in the page cache). Servers
# alternate within each round; prints each round, then medians of req/s and server CPU per
# request (from /proc/PID/stat during the wrk run), with ratios to nginx.
#
#   bash benches/scripts/file_server.sh [ROUNDS=3] [SECONDS=5]
#
# BASE=/path/to/old/file_server adds that build as base-uring and base-epoll (an A/B in one
# interleaved run); MODES (default "uring epoll nginx", plus the base ones) and FILES (default
# "1k 64k 1m") pick a subset. The build is CARGO_TARGET_DIR's (default target/). Each round's
# line also gives wrk's CPU per request and TCP segments per request (both directions); the
# segment count is clean only in a network namespace of the run's own:
#   unshare -n bash -c 'ip link set lo up; bash benches/scripts/file_server.sh 5 3'
# Installs nginx and wrk with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
secs=${2:-5}
for tool in nginx:nginx wrk:wrk; do
    command -v "${tool%%:*}" >/dev/null || [ -x "/usr/sbin/${tool%%:*}" ] \
        || { apt-get update -qq && apt-get install -y -qq "${tool#*:}" >/dev/null; }
done
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release --example file_server 2>/dev/null
bin=${CARGO_TARGET_DIR:-target}/release/examples/file_server
base=${BASE:-}
files=${FILES:-1k 64k 1m}
modes=${MODES:-${base:+base-uring base-epoll }uring epoll nginx}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT
mkdir -p "$out/root"
head -c 1024 /dev/urandom > "$out/root/1k"
head -c 65536 /dev/urandom > "$out/root/64k"
head -c 1048576 /dev/urandom > "$out/root/1m"
cat "$out/root/"* > /dev/null # into the page cache
port=18099
hz=$(getconf CLK_TCK)
cat > "$out/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
worker_cpu_affinity 0001;
pid $out/nginx.pid;
error_log $out/nginx.err;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path $out;
    proxy_temp_path $out;
    fastcgi_temp_path $out;
    uwsgi_temp_path $out;
    scgi_temp_path $out;
    server { listen 127.0.0.1:$port; root $out/root; }
}
CONF

start() { # MODE -> $pid
    case $1 in
        nginx) taskset -c 0 "$nginx_bin" -c "$out/nginx.conf" 2>/dev/null & ;;
        base-*) RINGLOOP_BACKEND=${1#base-} taskset -c 0 "$base" "$out/root" "127.0.0.1:$port" 2>/dev/null & ;;
        *) RINGLOOP_BACKEND=$1 taskset -c 0 "$bin" "$out/root" "127.0.0.1:$port" 2>/dev/null & ;;
    esac
    pid=$!
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && return; sleep 0.1; done
    echo "server $1 did not start"; cat "$out/nginx.err" 2>/dev/null; exit 1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# TCP segments sent, both ways on loopback: only this run's in a network namespace of its own.
out_segs() { awk '/^Tcp:/ && $2 ~ /^[0-9]/ {print $12}' /proc/net/snmp; }

for round in $(seq "$rounds"); do
    for mode in $modes; do
        start $mode
        for f in $files; do
            t0=$(cpu_ticks $pid)
            s0=$(out_segs)
            # wrk's own CPU comes back as the subshell's children's time (cutime + cstime).
            res=$(taskset -c 1 wrk -c 64 -t 1 --timeout 10s -d "${secs}s" "http://127.0.0.1:$port/$f" 2>&1
                  awk '{print "client ticks", $16 + $17}' "/proc/$BASHPID/stat")
            s1=$(out_segs)
            t1=$(cpu_ticks $pid)
            rate=$(sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p' <<<"$res")
            n=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' <<<"$res")
            if grep -qE "Non-2xx|Socket errors" <<<"$res"; then echo "$mode $f: errors"; echo "$res"; exit 1; fi
            cpu=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v n="$n" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
            ct=$(sed -n 's/^client ticks //p' <<<"$res")
            ccpu=$(awk -v t="$ct" -v hz="$hz" -v n="$n" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
            segs=$(awk -v s="$((s1 - s0))" -v n="$n" 'BEGIN { printf "%.2f", s / n }')
            echo "round $round $mode $f: $rate req/s, $cpu us CPU/request, client $ccpu us/request, $segs segments/request"
            echo "$mode $f $rate $cpu $ccpu $segs" >> "$out/data"
        done
        kill $pid; wait $pid 2>/dev/null || true
        sleep 0.5
    done
done
python3 - "$out/data" "$modes" "$files" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    mode, f, *vals = line.split()
    rows.setdefault((mode, f), []).append(tuple(map(float, vals)))
med = {k: [statistics.median(c) for c in zip(*v)] for k, v in rows.items()}
modes, files = sys.argv[2].split(), sys.argv[3].split()
ours = [m for m in modes if m != "nginx"]
ref = "nginx" if "nginx" in modes else None
print("| file | " + " | ".join(f"{m} req/s" for m in modes) + " | "
      + " | ".join(f"{m} CPU/req" for m in modes) + " |")
print("|---" * (2 * len(modes) + 1) + "|")
for f in files:
    cells = []
    for i, unit in [(0, ""), (1, " us")]:
        for m in modes:
            v = med[(m, f)][i]
            txt = f"{v:,.0f}" if i == 0 else f"{v:.2f}{unit}"
            if ref and m != ref:
                txt += f" ({v / med[(ref, f)][i]:.2f}x)"
            cells.append(txt)
    print(f"| {f} | " + " | ".join(cells) + " |")
print()
print("| file | " + " | ".join(f"{m} client CPU/req" for m in modes) + " | "
      + " | ".join(f"{m} segments/req" for m in modes) + " |")
print("|---" * (2 * len(modes) + 1) + "|")
for f in files:
    cells = [f"{med[(m, f)][2]:.2f} us" for m in modes] + [f"{med[(m, f)][3]:.2f}" for m in modes]
    print(f"| {f} | " + " | ".join(cells) + " |")
# Per-round ratios of each build to nginx, and of new to base, where both ran.
per = {k: [r[0] for r in v] for k, v in rows.items()}
for f in files:
    for m in ours:
        if ref:
            r = [a / b for a, b in zip(per[(m, f)], per[(ref, f)])]
            print(f"{f} {m}/nginx per round: " + " ".join(f"{x:.2f}" for x in r))
        if "base-" + m in modes:
            r = [a / b for a, b in zip(per[(m, f)], per[("base-" + m, f)])]
            print(f"{f} {m}/base-{m} per round: " + " ".join(f"{x:.2f}" for x in r))
PY
