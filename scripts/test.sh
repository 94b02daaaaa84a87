#!/usr/bin/env bash
# Runs the whole test suite: unit tests and the end-to-end tests in tests/,
# which drive the real `weir` binary with the UDF components.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
weir_setup
weir_build_udfs
# Chromium and playwright-core for tests/e2e/dashboard.rs.
weir_browser_setup
source scripts/postgres.sh
source scripts/kafka-broker.sh
trap 'weir_postgres_stop; weir_kafka_stop' EXIT
weir_postgres_start
# The Kafka tests need the broker: install it (once) so that CI runs them.
weir_kafka_install
weir_kafka_start
cargo test --release --workspace --exclude wordcount --exclude traffic --exclude testkit --exclude not-a-udf --exclude counter-v1 --exclude counter-v1b --exclude counter-v2 --exclude counter-v2b
# The UDFs' own unit tests (pure Rust, run on the host).
cargo test --release -p traffic --lib
# The crate docs are the engineers' map: no broken links.
RUSTDOCFLAGS="-D warnings" cargo doc --release -p weir --no-deps --document-private-items
