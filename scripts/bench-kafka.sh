#!/usr/bin/env bash
# Kafka -> Weir -> Kafka on the test broker (nisshi 0.6.0, in memory; see
# scripts/kafka-broker.sh), beside the same job on files. Not part of the
# test suite: it prints figures, and asserts only that every record arrived.
#
#   scripts/bench-kafka.sh
#   WEIR_KAFKA_BENCH_EVENTS=2000000 WEIR_KAFKA_BENCH_RATE=20000 WEIR_KAFKA_BENCH_SECONDS=10 scripts/bench-kafka.sh
#
# The job is a pass-through: a source, the identity map in Wasm
# (testkit.wasm `identity`), a sink; parallelism 1, heap state, checkpoints
# every second (or as the row says).
#
# (a) Throughput: the generator writes N passings into a one-partition topic
#     (examples/kafka-passings.toml, exactly once); then the job copies the
#     topic to another one, at-least-once and exactly-once, and the same job
#     copies a CSV file of the same passings into a file. Events/s is N over
#     the wall time of `weir run`, start-up included; CPU is Weir's own
#     (user + system), not the broker's.
# (b) Latency: host/benches/kafka_tool.rs produces RATE messages a second
#     for SECONDS seconds, each carrying its send time, into the job's input
#     topic while it runs, reads the output topic read-committed and reports
#     p50/p99/max of receive time minus send time (the first 2 s, the job
#     warming up, left out). The source's `linger_ms` is 10 ms here, and
#     its librdkafka `fetch.wait.max.ms` 500 (the default) or 5: on nisshi
#     a fetch that found nothing new keeps waiting when records arrive
#     meanwhile (Kafka answers as soon as it has `fetch.min.bytes`), so
#     that wait shows in the latency. The runs are short (10 s) because
#     nisshi's in-memory log slows down as it grows: from about 300k
#     messages in a partition on, fetches with a 5 ms wait come back mostly
#     empty and the readers stall.
#
# Broker, producer, job and consumer share this machine's cores: the
# figures are of that setup, not of Weir alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
source scripts/kafka-broker.sh
weir_setup
events="${WEIR_KAFKA_BENCH_EVENTS:-2000000}"
rate="${WEIR_KAFKA_BENCH_RATE:-20000}"
seconds="${WEIR_KAFKA_BENCH_SECONDS:-10}"
warmup=2
dir="${WEIR_BENCH_DIR:-${TMPDIR:-/tmp}}/weir-bench-kafka"

echo "bench-kafka: building weir, the UDF components and the Kafka tool" >&2
cargo build --release -p weir >&2
weir_build_udfs >&2
tool=$(cargo build --release -p weir --bench kafka_tool --message-format=json-render-diagnostics |
    grep -o '"executable":"[^"]*kafka_tool[^"]*"' | tail -n 1 | cut -d'"' -f4)
if [ ! -x "$tool" ]; then
    echo "bench-kafka: cannot find the kafka_tool binary that cargo built" >&2
    exit 1
fi
weir="$CARGO_TARGET_DIR/release/weir"

rm -rf "$dir"
mkdir -p "$dir"
weir_kafka_install
export WEIR_KAFKA_DIR="$dir/broker"
job_pid=""
cleanup() {
    if [ -n "$job_pid" ]; then
        kill "$job_pid" 2>/dev/null || true
        wait "$job_pid" 2>/dev/null || true
    fi
    weir_kafka_stop
}
trap cleanup EXIT
# Every measurement gets a fresh broker: nisshi's in-memory storage slows
# down as its topics grow.
servers=""
fresh_broker() {
    weir_kafka_stop
    weir_kafka_start
    servers="$WEIR_TEST_KAFKA"
}

# The pass-through job, from Kafka to Kafka and from a file to a file.
cat >"$dir/kafka.toml" <<'TOML'
[job]
name = "bench-kafka"
[checkpoint]
dir = "${out}/checkpoints"
interval_ms = "${interval}"

[[source]]
uid = "in"
type = "kafka"
bootstrap_servers = "${servers}"
topics = ["${input}"]
bounded = "${bounded}"
linger_ms = "${linger}"
properties = { "fetch.wait.max.ms" = "${fetch_wait}" }

[[operator]]
uid = "identity"
input = "in"
module = "testkit.wasm"
function = "identity"

[[sink]]
uid = "out"
input = "identity"
type = "kafka"
bootstrap_servers = "${servers}"
topic = "${output}"
delivery = "${delivery}"
TOML
cat >"$dir/file.toml" <<'TOML'
[job]
name = "bench-file"

[checkpoint]
dir = "${out}/checkpoints"
interval_ms = 1000

[[source]]
uid = "in"
type = "file"
path = "${input}"

[[operator]]
uid = "identity"
input = "in"
module = "testkit.wasm"
function = "identity"

[[sink]]
uid = "out"
input = "identity"
type = "files"
path = "${output}"
TOML
cat >"$dir/csv.toml" <<'TOML'
[job]
name = "bench-csv"

[[source]]
uid = "cameras"
type = "generator"
events = "${events}"
seed = 42
parallelism = 1

[[sink]]
uid = "csv"
input = "cameras"
type = "file"
path = "${output}"
TOML

# Runs `weir run "$@"` at parallelism 1; sets `wall` and `cpu` (Weir's user
# + system seconds). Its output goes to $dir/NAME.log.
timed() {
    local name=$1
    shift
    local TIMEFORMAT='%R %U %S'
    local times
    times=$({ time "$weir" run --quiet --parallelism 1 "$@" >"$dir/$name.log" 2>&1; } 2>&1) || {
        tail -n 20 "$dir/$name.log" >&2
        echo "bench-kafka: $name failed (log: $dir/$name.log)" >&2
        exit 1
    }
    read -r wall user sys <<<"$times"
    cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
}
row() {
    awk -v n="$1" -v e="$events" -v w="$wall" -v c="$cpu" \
        'BEGIN { printf "| %s | %d | %.2f | %.2f | %.2f |\n", n, e, w, c, e / w / 1e6 }'
}
# Asserts that topic $1 holds $events committed records.
check_count() {
    local count
    count=$("$tool" read "$servers" "$1")
    if [ "$count" != "$events" ]; then
        echo "bench-kafka: topic $1 holds $count committed records, expected $events" >&2
        exit 1
    fi
}

echo "bench-kafka: (a) throughput, $events passings" >&2
throughput=()
for delivery in at-least-once exactly-once; do
    fresh_broker
    "$tool" create "$servers" passings:1 out:1
    echo "bench-kafka: generator -> Kafka, $events passings" >&2
    timed "fill-$delivery" examples/kafka-passings.toml -p servers="$servers" -p events="$events" -p out="$dir/fill-$delivery"
    if [ "$delivery" = at-least-once ]; then
        throughput+=("$(row "generator -> Kafka, exactly-once (examples/kafka-passings.toml)")")
        # A plain librdkafka consumer reading the topic (no Weir): what the
        # broker serves to one reader.
        TIMEFORMAT='%R %U %S'
        times=$({ time check_count passings; } 2>&1)
        read -r wall user sys <<<"$times"
        cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
        throughput+=("$(row "Kafka -> plain consumer (kafka_tool read, no Weir; its CPU)")")
    else
        check_count passings
    fi
    echo "bench-kafka: Kafka -> identity -> Kafka, $delivery" >&2
    timed "kafka-$delivery" "$dir/kafka.toml" -p servers="$servers" -p input=passings \
        -p output=out -p delivery="$delivery" -p interval=1000 -p bounded=true -p linger=100 -p fetch_wait=500 \
        -p out="$dir/kafka-$delivery"
    check_count out
    throughput+=("$(row "Kafka -> identity -> Kafka, $delivery")")
done
echo "bench-kafka: file -> identity -> files (exactly-once)" >&2
"$weir" run --quiet "$dir/csv.toml" -p events="$events" -p output="$dir/passings.csv" >/dev/null
timed file "$dir/file.toml" -p input="$dir/passings.csv" -p output="$dir/file-out" -p out="$dir/file"
lines=$(cat "$dir"/file-out/part-* | wc -l)
if [ "$lines" != "$events" ]; then
    echo "bench-kafka: the files sink committed $lines records, expected $events" >&2
    exit 1
fi
throughput+=("$(row "file -> identity -> files, exactly-once")")

echo "bench-kafka: (b) latency at $rate messages/s for $seconds s" >&2
latency=()
run=0
for config in "at-least-once 1000 500" "at-least-once 1000 5" "exactly-once 1000 5" "exactly-once 100 5"; do
    read -r delivery interval fetch_wait <<<"$config"
    run=$((run + 1))
    echo "bench-kafka: latency, $delivery, checkpoints every $interval ms, fetch.wait.max.ms $fetch_wait" >&2
    fresh_broker
    "$tool" create "$servers" "lat-in-$run:1" "lat-out-$run:1"
    "$weir" run --quiet --parallelism 1 "$dir/kafka.toml" -p servers="$servers" -p input="lat-in-$run" \
        -p output="lat-out-$run" -p delivery="$delivery" -p interval="$interval" -p bounded=false \
        -p linger=10 -p fetch_wait="$fetch_wait" -p out="$dir/lat-$run" >"$dir/lat-$run.log" 2>&1 &
    job_pid=$!
    sleep 3
    if ! kill -0 "$job_pid" 2>/dev/null; then
        tail -n 20 "$dir/lat-$run.log" >&2
        echo "bench-kafka: the latency job ended early (log: $dir/lat-$run.log)" >&2
        exit 1
    fi
    result=$("$tool" latency "$servers" "lat-in-$run" "lat-out-$run" "$rate" "$seconds" "$warmup")
    read -r sent received missing duplicates p50 p99 max <<<"$result"
    kill "$job_pid" 2>/dev/null || true
    wait "$job_pid" 2>/dev/null || true
    job_pid=""
    latency+=("| $delivery | $interval ms | $fetch_wait ms | $rate | $received | $missing | $duplicates | $p50 | $p99 | $max |")
done

echo
echo "Throughput, parallelism 1, $events passings (wall time of \`weir run\`, start-up included):"
echo
echo "| job | events | wall s | Weir CPU s | M events/s |"
echo "| --- | ---: | ---: | ---: | ---: |"
printf '%s\n' "${throughput[@]}"
echo
echo "Latency, Kafka -> identity -> Kafka, $rate messages/s for $seconds s (first $warmup s left out), read-committed:"
echo
echo "| delivery | checkpoints | source fetch.wait.max.ms | messages/s | received | missing | duplicates | p50 ms | p99 ms | max ms |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${latency[@]}"
