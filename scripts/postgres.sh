# Sourced by scripts/test.sh (or by hand): runs a private, throwaway
# PostgreSQL server for the tests of the PostgreSQL sink.
#
#   source scripts/postgres.sh
#   weir_postgres_start   # exports WEIR_TEST_PG (a libpq-style connection string)
#   ...
#   weir_postgres_stop
#
# The server listens on 127.0.0.1 only, on the first free port from 54329 up,
# trusts every local connection (user `postgres`), and allows prepared
# transactions (two-phase commit). Its data folder is
# ${WEIR_PG_DIR:-$HOME/.cache/weir/pg}, recreated at each start. `initdb`
# refuses to run as root: as root the server runs as the `postgres` user
# (through `runuser`), and when that user cannot reach the folder (root's
# home is private) the folder moves to /tmp/weir-pg-root.
#
# If the PostgreSQL server binaries are missing, the `postgresql` package is
# installed with apt-get (through sudo when not root).
#
# Everything it prints goes to stderr. Both functions return non-zero on
# failure and never exit the calling shell.

# Where the PostgreSQL server binaries (initdb, pg_ctl) are, or nothing.
weir_postgres_bindir() {
    local dir
    if command -v pg_config >/dev/null 2>&1; then
        dir="$(pg_config --bindir 2>/dev/null || true)"
        if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    fi
    # Debian and Ubuntu keep one folder per major version: take the newest.
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    for dir in /usr/local/pgsql/bin /usr/pgsql-*/bin; do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    return 1
}

# Runs a server binary as the server's owner: `postgres` when we are root.
weir_postgres_as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Whether something listens on 127.0.0.1:$1.
weir_postgres_port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

weir_postgres_start() {
    local bindir
    if ! bindir="$(weir_postgres_bindir)"; then
        echo "postgres: initdb not found; installing the postgresql package" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq >&2 || return 1
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2 || return 1
        if ! bindir="$(weir_postgres_bindir)"; then
            echo "postgres: initdb still not found after installing postgresql" >&2
            return 1
        fi
    fi

    local dir="${WEIR_PG_DIR:-$HOME/.cache/weir/pg}"
    if [ "$(id -u)" -eq 0 ]; then
        if ! id -u postgres >/dev/null 2>&1; then
            echo "postgres: running as root, but there is no \`postgres\` user to run the server as" >&2
            return 1
        fi
        mkdir -p "$(dirname "$dir")" || return 1
        if ! runuser -u postgres -- test -x "$(dirname "$dir")"; then
            echo "postgres: the postgres user cannot reach $(dirname "$dir"); using /tmp/weir-pg-root instead" >&2
            dir="/tmp/weir-pg-root"
        fi
    fi

    # A server left running in that folder by an interrupted run goes first.
    if [ -f "$dir/postmaster.pid" ]; then
        echo "postgres: stopping the server left running in $dir" >&2
        weir_postgres_as_owner "$bindir/pg_ctl" -D "$dir" -m immediate stop >&2 || true
    fi
    rm -rf "$dir" || return 1
    mkdir -p "$dir" || return 1
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir" || return 1
    fi
    chmod 700 "$dir" || return 1

    echo "postgres: initdb $dir (binaries in $bindir)" >&2
    local out
    if ! out="$(weir_postgres_as_owner "$bindir/initdb" -D "$dir" -A trust -U postgres -E UTF8 --no-sync 2>&1)"; then
        echo "$out" >&2
        echo "postgres: initdb failed" >&2
        return 1
    fi

    local port=54329 started=""
    while [ "$port" -lt 54429 ]; do
        if ! weir_postgres_port_busy "$port"; then
            echo "postgres: starting on 127.0.0.1:$port" >&2
            # fsync off: a throwaway server, durability across OS crashes is moot.
            if weir_postgres_as_owner "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
                -o "-c listen_addresses=127.0.0.1 -c port=$port -c max_prepared_transactions=64 -c unix_socket_directories=$dir -c fsync=off" \
                start >&2; then
                started=1
                break
            fi
            # Someone may have taken the port meanwhile: show why, try the next one.
            tail -n 5 "$dir/server.log" >&2 2>/dev/null || true
        fi
        port=$((port + 1))
    done
    if [ -z "$started" ]; then
        echo "postgres: could not start the server (see $dir/server.log)" >&2
        return 1
    fi

    export WEIR_PG_BINDIR="$bindir"
    export WEIR_PG_DATA="$dir"
    export WEIR_TEST_PG="host=127.0.0.1 port=$port user=postgres dbname=postgres"
    echo "postgres: ready, WEIR_TEST_PG=\"$WEIR_TEST_PG\"" >&2
}

weir_postgres_stop() {
    local dir="${WEIR_PG_DATA:-}" bindir="${WEIR_PG_BINDIR:-}"
    if [ -z "$dir" ] || [ -z "$bindir" ]; then
        return 0
    fi
    if [ -f "$dir/postmaster.pid" ]; then
        echo "postgres: stopping the server in $dir" >&2
        weir_postgres_as_owner "$bindir/pg_ctl" -D "$dir" -m fast -w stop >&2 || return 1
    fi
    unset WEIR_PG_DATA WEIR_PG_BINDIR WEIR_TEST_PG
}
