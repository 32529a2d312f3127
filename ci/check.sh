#!/usr/bin/env bash
# Static checks: formatting, lints, docs.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings (default features, then all)"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --workspace --all-targets --all-features -- -D warnings

echo "== cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features
# A link to an item behind a feature breaks when that feature is off: each feature alone too.
for features in "" hyper axum tokio-compat tokio-io futures-io bytes tracing macros; do
    if [ -n "$features" ] && ! grep -q "^$features = " Cargo.toml; then continue; fi
    RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p ringloop --features "$features"
done

echo "== no tokio runtime unless asked for"
# Default features: tokio is not a dependency at all. With `axum` (whose ConnectInfo needs axum's
# tokio feature) tokio is compiled, but its multi-thread runtime only comes with `tokio-compat`.
if cargo tree -e normal -i tokio 2>/dev/null | grep -q '^tokio'; then
    echo "tokio is a dependency with default features:"; cargo tree -e normal -i tokio; exit 1
fi
if cargo tree -e normal,features --features axum -i tokio 2>/dev/null | grep -q 'rt-multi-thread'; then
    echo "the axum feature pulls in tokio's multi-thread runtime"; exit 1
fi
cargo tree -e normal,features --features tokio-compat -i tokio | grep -q 'rt-multi-thread' \
    || { echo "tokio-compat does not enable tokio's runtime (is the check above still right?)"; exit 1; }

echo "== the module graph has no circle (imports between top-level modules go one way)"
python3 ci/module_graph.py --check

echo "== nothing of tracing unless the feature asks for it"
if cargo tree -e normal -i tracing 2>/dev/null | grep -q '^tracing'; then
    echo "tracing is a dependency with default features:"; cargo tree -e normal -i tracing; exit 1
fi
cargo tree -e normal --features tracing -i tracing | grep -q '^tracing' \
    || { echo "the tracing feature does not bring tracing in (is the check above still right?)"; exit 1; }

echo "== the first build stays small"
bash ci/first_build.sh
