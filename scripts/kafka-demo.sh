#!/usr/bin/env bash
# The Kafka demo: traffic passings go through a Kafka-compatible broker.
#
#   1. starts the test broker (nisshi, in memory, on a free loopback port;
#      installed once by scripts/kafka-broker.sh) and creates the topics
#      `passings` (one partition: Q2 needs each plate's passings in order)
#      and `alerts`;
#   2. examples/kafka-passings.toml: the built-in generator writes the
#      passings into `passings`, exactly once;
#   3. examples/kafka-q2.toml: Q2 (cloned plates, the demo's Wasm functions,
#      keyed state in RocksDB) reads `passings` and writes its alerts into
#      `alerts`, exactly once, with a checkpoint every second;
#   4. reads `alerts` back as a read-committed consumer: how many alerts were
#      committed, and the first five.
#
#   ./scripts/kafka-demo.sh                       # 1,000,000 passings
#   WEIR_KAFKA_DEMO_EVENTS=4000000 ./scripts/kafka-demo.sh
#
# The broker is stopped at exit; checkpoints, state and dead letters are in
# kafka-demo-out/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
source scripts/kafka-broker.sh
weir_setup
events="${WEIR_KAFKA_DEMO_EVENTS:-1000000}"

echo "kafka-demo: building weir, the UDF components and the Kafka tool (the first build takes several minutes)" >&2
cargo build --release -p weir
weir_build_udfs
# The tool that creates topics and reads them back (host/benches/kafka_tool.rs).
tool=$(cargo build --release -p weir --bench kafka_tool --message-format=json-render-diagnostics |
    grep -o '"executable":"[^"]*kafka_tool[^"]*"' | tail -n 1 | cut -d'"' -f4)
if [ ! -x "$tool" ]; then
    echo "kafka-demo: cannot find the kafka_tool binary that cargo built" >&2
    exit 1
fi
weir="$CARGO_TARGET_DIR/release/weir"

weir_kafka_install
trap weir_kafka_stop EXIT
weir_kafka_start
servers="$WEIR_TEST_KAFKA"
"$tool" create "$servers" passings:1 alerts:1

rm -rf kafka-demo-out
echo >&2
echo "kafka-demo: writing $events passings into topic passings (examples/kafka-passings.toml)" >&2
"$weir" run examples/kafka-passings.toml -p servers="$servers" -p events="$events" -p out=kafka-demo-out/passings
echo >&2
echo "kafka-demo: Q2 from topic passings to topic alerts (examples/kafka-q2.toml)" >&2
"$weir" run examples/kafka-q2.toml -p servers="$servers" -p out=kafka-demo-out/q2

echo >&2
echo "kafka-demo: reading topic alerts back (read-committed)" >&2
readback=$("$tool" read "$servers" alerts 5)
alerts=$(head -n 1 <<<"$readback")
echo
echo "kafka-demo: $alerts cloned-plate alerts committed to topic alerts from $events passings"
echo "kafka-demo: the first five (plate, first passing, second passing in another city < 60 s later):"
tail -n +2 <<<"$readback" | sed 's/^/  /'
