#!/usr/bin/env bash
# The benches must always build, and run: each criterion bench once in test mode (a few seconds,
# no timing), so a bench that panics or cannot get its backend fails CI.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== cargo bench --no-run"
cargo bench --no-run
echo "== cargo bench -- --test (each bench once, no timing)"
cargo bench -- --test
