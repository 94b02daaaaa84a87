#!/usr/bin/env bash
# Measures checkpoints of keyed state (the pause the record path sees, the
# background write, the bytes stored; full and incremental) and recovery
# time, for the heap and RocksDB backends, and prints a Markdown table
# (progress goes to stderr). What is measured and how: see
# host/benches/checkpoint.rs.
#
#   scripts/bench-checkpoint.sh                  # 1M and 10M keys, every backend (several minutes)
#   scripts/bench-checkpoint.sh 1M               # 1M keys only
#   scripts/bench-checkpoint.sh 1M incremental   # 1M keys, RocksDB incremental only
#
# Key counts can also come from WEIR_BENCH_KEYS=1000000,10000000; the
# temporary folder goes under WEIR_BENCH_DIR (default: the system's temporary
# folder). 10M heap keys take about 10 GB of memory.
#
# Run it on an otherwise idle machine: the figures are wall-clock times.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}"
# clang for RocksDB's bindings (host build).
source scripts/setup.sh
weir_setup

echo "bench-checkpoint: building and running the checkpoint benchmark" >&2
cargo bench -p weir --bench checkpoint -- "$@"
