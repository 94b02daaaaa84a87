#!/usr/bin/env bash
# Takes the README's picture of the dashboard, docs/dashboard.png (1280x800):
# runs a demo-like job (the traffic generator at a capped rate -> parse ->
# cloned-plates over two subtasks, keyed state in RocksDB -> files sink, a
# checkpoint every second) with `weir run --http 0`, opens its dashboard in
# headless Chromium (tests/browser/dashboard.mjs) once the counts move and a
# few checkpoints are done, then stops the job.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
weir_setup
weir_browser_setup
cargo build --release -p weir
weir_build_udfs

work="$(mktemp -d)"
job_pid=""
cleanup() {
    [ -z "$job_pid" ] || kill "$job_pid" 2>/dev/null || true
    [ -z "$job_pid" ] || wait "$job_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/job.toml" <<'TOML'
[job]
name = "demo"
state_backend = "rocksdb"
state_dir = "state"

[checkpoint]
dir = "checkpoints"
interval_ms = 1000

[[source]]
uid = "cameras"
type = "generator"
events_per_second = 20000
seed = 42
parallelism = 1

[[operator]]
uid = "parse"
input = "cameras"
module = "traffic.wasm"
function = "parse"
parallelism = 1

[[operator]]
uid = "cloned-plates"
input = "parse"
module = "traffic.wasm"
function = "cloned_plates"
key_by = { module = "traffic.wasm", function = "plate" }
parallelism = 2

[[sink]]
uid = "alerts"
input = "cloned-plates"
type = "files"
path = "alerts"
TOML

(cd "$work" && WEIR_HOME="$work/home" exec "$CARGO_TARGET_DIR/release/weir" run --quiet job.toml --http 0) &
job_pid=$!

# The job's registry entry names its HTTP address (and its token, if any).
url=""
for _ in $(seq 600); do
    url="$(node -e '
        const fs = require("fs"), dir = process.argv[1];
        for (const f of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
            if (!f.endsWith(".json")) continue;
            try {
                const e = JSON.parse(fs.readFileSync(`${dir}/${f}`, "utf8"));
                if (e.http) { console.log(`http://${e.http}/${e.token ? `#token=${e.token}` : ""}`); break; }
            } catch (_) { /* written meanwhile */ }
        }' "$work/home/jobs")"
    [ -z "$url" ] || break
    kill -0 "$job_pid" 2>/dev/null || { echo "dashboard-screenshot: the job ended" >&2; exit 1; }
    sleep 0.1
done
[ -n "$url" ] || { echo "dashboard-screenshot: the job serves no HTTP address" >&2; exit 1; }

node tests/browser/dashboard.mjs --settle-ms 6000 "$url" "$work/shot" cameras parse cloned-plates alerts
mkdir -p docs
cp "$work/shot/dashboard.png" docs/dashboard.png
echo "dashboard-screenshot: wrote docs/dashboard.png" >&2
