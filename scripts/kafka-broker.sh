# Sourced by scripts/test.sh (or by hand): a private, throwaway
# Kafka-compatible broker for the tests of the Kafka source and sink.
#
#   source scripts/kafka-broker.sh
#   weir_kafka_install    # installs nisshi 0.6.0 once; exports WEIR_NISSHI
#   weir_kafka_start      # exports WEIR_TEST_KAFKA (host:port)
#   ...
#   weir_kafka_stop
#
# No real Kafka broker can be installed here (see the README): the broker is
# nisshi (the Kafka-compatible broker in Rust formerly named tansu), release
# 0.6.0, the last one that builds with rustc 1.95, with its dynostore
# feature only. It is installed once into ${WEIR_NISSHI_ROOT:-$HOME/.cache/weir/nisshi}
# (outside the clone, which CI makes afresh) with its own cargo target folder
# under ~/.cache/weir, at low priority; the build takes about 10 minutes on
# two cores.
#
# The broker listens on 127.0.0.1 only, on the first free port from 19092
# up, keeps everything in memory (`memory://`), and logs to
# ${WEIR_KAFKA_DIR:-$HOME/.cache/weir/kafka}/broker.log.
#
# The end-to-end tests also start a broker of their own from WEIR_NISSHI (or
# the default install path) when WEIR_TEST_KAFKA is not set.
#
# Everything it prints goes to stderr. The functions return non-zero on
# failure and never exit the calling shell.

WEIR_NISSHI_VERSION=0.6.0

weir_kafka_install() {
    # socat terminates TLS in front of a test broker (nisshi 0.6.0 cannot
    # serve TLS itself): the TLS test needs it.
    if ! command -v socat >/dev/null 2>&1; then
        echo "kafka: installing socat (the TLS test's proxy)" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq >&2 || return 1
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat >&2 || return 1
    fi
    local root="${WEIR_NISSHI_ROOT:-$HOME/.cache/weir/nisshi}"
    local bin="$root/bin/nisshi"
    if [ -x "$bin" ] && [ -f "$root/.version" ] && [ "$(cat "$root/.version")" = "$WEIR_NISSHI_VERSION" ]; then
        export WEIR_NISSHI="$bin"
        return 0
    fi
    echo "kafka: installing nisshi $WEIR_NISSHI_VERSION into $root (about 10 minutes, once)" >&2
    mkdir -p "$root" || return 1
    # Its own target folder: the project's CARGO_TARGET_DIR stays untouched.
    if ! CARGO_TARGET_DIR="$HOME/.cache/weir/nisshi-target" nice -n 10 \
        cargo install nisshi --version "$WEIR_NISSHI_VERSION" --locked \
        --no-default-features --features dynostore --root "$root" >&2; then
        echo "kafka: installing nisshi failed" >&2
        return 1
    fi
    echo "$WEIR_NISSHI_VERSION" >"$root/.version"
    export WEIR_NISSHI="$bin"
}

# Whether something listens on 127.0.0.1:$1.
weir_kafka_port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

weir_kafka_start() {
    local bin="${WEIR_NISSHI:-${WEIR_NISSHI_ROOT:-$HOME/.cache/weir/nisshi}/bin/nisshi}"
    if [ ! -x "$bin" ]; then
        echo "kafka: $bin not found: run weir_kafka_install first" >&2
        return 1
    fi
    local dir="${WEIR_KAFKA_DIR:-$HOME/.cache/weir/kafka}"
    mkdir -p "$dir" || return 1
    local port=19092
    while [ "$port" -lt 19192 ] && weir_kafka_port_busy "$port"; do
        port=$((port + 1))
    done
    echo "kafka: starting nisshi on 127.0.0.1:$port" >&2
    "$bin" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine "memory://nisshi/" >"$dir/broker.log" 2>&1 &
    local pid=$!
    local waited=0
    until weir_kafka_port_busy "$port"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$dir/broker.log" >&2
            echo "kafka: nisshi exited at start (see $dir/broker.log)" >&2
            return 1
        fi
        if [ "$waited" -ge 300 ]; then
            kill "$pid" 2>/dev/null
            echo "kafka: nisshi did not listen on 127.0.0.1:$port within 30 s" >&2
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    export WEIR_KAFKA_PID="$pid"
    export WEIR_TEST_KAFKA="127.0.0.1:$port"
    echo "kafka: ready, WEIR_TEST_KAFKA=$WEIR_TEST_KAFKA" >&2
}

weir_kafka_stop() {
    local pid="${WEIR_KAFKA_PID:-}"
    if [ -n "$pid" ]; then
        echo "kafka: stopping nisshi ($pid)" >&2
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    unset WEIR_KAFKA_PID WEIR_TEST_KAFKA
}
