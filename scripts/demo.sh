#!/usr/bin/env bash
# Runs the demo job: the built-in traffic generator feeds Q2 (cloned-plate
# detection, a keyed process function in Wasm with keyed state in RocksDB) on
# every core, with a checkpoint every second; progress is printed each second,
# then a summary of what it computed. Alerts are committed exactly once into
# part files in demo-out/alerts/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
weir_setup
echo "demo: building weir and the UDF components (the first build takes several minutes)" >&2
cargo build --release -p weir
weir_build_udfs

rm -rf demo-out
"$CARGO_TARGET_DIR/release/weir" run examples/demo.toml -p out=demo-out "$@"

cat demo-out/alerts/part-* > demo-out/alerts.csv
alerts=$(wc -l < demo-out/alerts.csv)
plates=$(cut -d, -f1 demo-out/alerts.csv | sort -u | wc -l)
checkpoints=$(ls -d demo-out/checkpoints/demo/chk-* | wc -l)
echo
echo "demo: $alerts cloned-plate alerts for $plates distinct plates (committed part files in demo-out/alerts/,"
echo "      concatenated into demo-out/alerts.csv); the last $checkpoints checkpoints are in demo-out/checkpoints/demo/"
echo "demo: the first five (plate, first passing, second passing in another city < 60 s later):"
head -n 5 demo-out/alerts.csv | sed 's/^/  /'
