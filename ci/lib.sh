# Helpers sourced by the CI scripts.

# wait_port LOG NAME PID: waits for a server to print "listening on 127.0.0.1:PORT" into LOG and
# sets $port; fails (killing PID) if it does not within 10 seconds.
wait_port() {
    port=""
    for _ in $(seq 1 100); do
        port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$1")
        [ -n "$port" ] && return 0
        sleep 0.1
    done
    echo "$2 did not start:"; cat "$1"; kill "$3"; exit 1
}

# need COMMAND PACKAGE: installs the Debian package when the command is missing.
need() {
    command -v "$1" >/dev/null && return 0
    if [ -z "${apt_updated:-}" ]; then apt-get update -qq; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    command -v "$1" >/dev/null || { echo "could not install $2 for $1"; exit 1; }
}
