#!/usr/bin/env bash
# Measures what crossing the Wasm boundary costs, in ns per record, and prints
# a Markdown table for the README (progress goes to stderr). What is measured
# and how: see host/benches/boundary.rs.
#
#   scripts/bench.sh            # every case (about 15 s after the build)
#   scripts/bench.sh keyed      # only the cases whose name contains `keyed`
#
# Run it on an otherwise idle machine: the figures are wall-clock times.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}"
# The wasm32-wasip2 target, and clang for RocksDB's bindings (host build).
source scripts/setup.sh
weir_setup

# The UDFs are built the way a user's own crate builds them: without the
# workspace's `incremental = true` (a development setting). Built
# incrementally, the SDK's small per-record helpers (record accessors, output
# writers) are left un-inlined and the guest's loop runs about twice as slow,
# which the benchmark would report as boundary cost.
echo "bench: building the UDF components (testkit, wordcount)" >&2
CARGO_PROFILE_RELEASE_INCREMENTAL=false cargo build --release --target wasm32-wasip2 -p testkit -p wordcount

echo "bench: building and running the boundary benchmark" >&2
WEIR_UDF_DIR="$CARGO_TARGET_DIR/wasm32-wasip2/release" cargo bench -p weir --bench boundary -- "$@"
