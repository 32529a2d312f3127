#!/usr/bin/env bash
# The benches must always build, and run: each criterion bench once in test mode (a few seconds,
# no timing), so a bench that panics or cannot get its backend fails CI.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== cargo bench -p ringloop-benches --no-run"
cargo bench -p ringloop-benches --no-run
echo "== cargo bench -p ringloop-benches -- --test (each bench once, no timing)"
cargo bench -p ringloop-benches -- --test
