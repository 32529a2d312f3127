#!/usr/bin/env bash
# The crate must stay publishable: the package holds only what a user needs (code, examples,
# docs, licenses) and builds on its own. Needs the registry's index, nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== cargo package --list"
list=$(cargo package --list --allow-dirty 2>/dev/null)
for must in LICENSE-MIT LICENSE-APACHE CHANGELOG.md README.md src/lib.rs; do
    grep -qx "$must" <<<"$list" || { echo "the package lacks $must"; exit 1; }
done
if grep -E '^(tests|benches|ci|\.ci)/' <<<"$list"; then
    echo "the package holds files a user does not need (above)"; exit 1
fi
echo "== cargo publish --dry-run (ringloop-macros first: ringloop's \`macros\` feature needs it)"
cargo publish --dry-run --allow-dirty -p ringloop-macros -p ringloop
