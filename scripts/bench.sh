#!/usr/bin/env bash
# Measures the Wasm boundary cost (ns per record) and prints a Markdown table
# for the README. See host/benches/boundary.rs for what is measured.
#
# Usage: scripts/bench.sh [case filter...]   e.g. scripts/bench.sh keyed
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}"

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
cargo build --release --target wasm32-wasip2 -p testkit -p wordcount
WEIR_UDF_DIR="$CARGO_TARGET_DIR/wasm32-wasip2/release" cargo bench -p weir --bench boundary -- "$@"
