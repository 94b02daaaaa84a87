# Sourced by the other scripts: installs what building Weir needs, once, and
# points cargo at a target folder outside the clone (so a fresh clone reuses
# earlier builds).
#
# - the wasm32-wasip2 Rust target (UDF components);
# - clang and libclang (RocksDB's bindings are generated with bindgen);
# - OpenSSL's headers and pkg-config (librdkafka's TLS and SASL).

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}"
export CARGO_TERM_PROGRESS_WHEN=never

weir_setup() {
    if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
        echo "setup: adding the wasm32-wasip2 Rust target" >&2
        rustup target add wasm32-wasip2 >&2
    fi
    if ! ldconfig -p 2>/dev/null | grep -q 'libclang' || ! command -v clang >/dev/null 2>&1 \
        || ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists openssl 2>/dev/null; then
        echo "setup: installing clang, libclang-dev (RocksDB's bindings), libssl-dev and pkg-config (librdkafka's TLS)" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq >&2
        $sudo apt-get install -y -qq clang libclang-dev libssl-dev pkg-config >&2
    fi
}

# Builds the UDF components into $CARGO_TARGET_DIR/wasm32-wasip2/release,
# the way a user's crate builds them: not incrementally (an incremental build
# leaves the SDK's per-record helpers un-inlined, about twice as slow).
weir_build_udfs() {
    CARGO_PROFILE_RELEASE_INCREMENTAL=false \
        cargo build --release --target wasm32-wasip2 -p wordcount -p traffic -p testkit -p not-a-udf -p counter-v1 -p counter-v1b -p counter-v2 -p counter-v2b
    export WEIR_MODULE_PATH="$CARGO_TARGET_DIR/wasm32-wasip2/release"
}

# The dashboard's browser test (tests/browser/): Debian's chromium, driven
# headless by playwright-core from npm at the version that
# tests/browser/package-lock.json pins, installed once into $WEIR_NODE_DIR
# (default ~/.cache/weir/node, outside the clone). Quiet when both are there.
weir_browser_setup() {
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    export WEIR_NODE_DIR="${WEIR_NODE_DIR:-$HOME/.cache/weir/node}"
    if [ ! -x /usr/bin/chromium ] || ! command -v npm >/dev/null 2>&1; then
        echo "setup: installing chromium (the dashboard's browser test)" >&2
        local sudo="" packages="chromium"
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        command -v npm >/dev/null 2>&1 || packages="$packages nodejs npm"
        $sudo apt-get update -qq >&2
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $packages >&2
    fi
    if [ ! -f "$WEIR_NODE_DIR/node_modules/playwright-core/package.json" ] \
        || ! cmp -s "$root/tests/browser/package-lock.json" "$WEIR_NODE_DIR/package-lock.json"; then
        echo "setup: installing playwright-core into $WEIR_NODE_DIR (npm ci)" >&2
        mkdir -p "$WEIR_NODE_DIR"
        cp "$root/tests/browser/package.json" "$root/tests/browser/package-lock.json" "$WEIR_NODE_DIR/"
        (cd "$WEIR_NODE_DIR" && npm ci --silent --no-audit --no-fund >&2)
    fi
}
