#!/usr/bin/env bash
# Runs the demo job: the built-in traffic generator feeds Q2 (cloned-plate
# detection, a keyed process function in Wasm with keyed state) on every core;
# progress is printed each second, then a summary of what it computed.
# Alerts land in demo-out/alerts.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
weir_setup
echo "demo: building weir and the UDF components (the first build takes several minutes)" >&2
cargo build --release -p weir
weir_build_udfs

rm -rf demo-out
"$CARGO_TARGET_DIR/release/weir" run examples/demo.toml -p out=demo-out "$@"

alerts=$(wc -l < demo-out/alerts.csv)
plates=$(cut -d, -f1 demo-out/alerts.csv | sort -u | wc -l)
echo
echo "demo: $alerts cloned-plate alerts for $plates distinct plates, in demo-out/alerts.csv"
echo "demo: the first five (plate, first passing, second passing in another city < 60 s later):"
head -n 5 demo-out/alerts.csv | sed 's/^/  /'
