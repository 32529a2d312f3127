#!/usr/bin/env bash
# A newcomer's first command, `cargo run --release --example download`, compiles at most 40
# crates: the root package's dev-dependencies are what the core examples and tests need, and the
# heavy stacks live in the workspace members (ecosystem/, benches/, examples/grpc/). Counted in a
# clean target dir, so nothing already built hides a crate.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=40
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
start=$(date +%s)
CARGO_TARGET_DIR=$dir cargo build --release --example download --message-format=json 2>/dev/null \
    | python3 -c '
import json, sys
names = set()
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") in ("compiler-artifact", "build-script-executed"):
        names.add(m["package_id"])
print(len(names))
' >"$dir/count"
took=$(( $(date +%s) - start ))
count=$(cat "$dir/count")
echo "== cargo build --release --example download in a clean target dir: $count crates, ${took} s"
if (( count > limit )); then
    echo "the demo compiles $count crates (limit $limit): a root dev-dependency grew; put what needs it in a workspace member"
    cargo tree -e normal,build,dev --prefix none | sed 's/ (\*)//' | sort -u
    exit 1
fi
