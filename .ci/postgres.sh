# shellcheck shell=bash
# Start a throwaway PostgreSQL server for the SQL-source tests; meant to be *sourced*
# (by .ci/run, or by hand: `source .ci/postgres.sh`) so that the export below reaches
# the test run and the EXIT trap stops the server when that shell ends.
#
#   exports KRAITER_TEST_POSTGRES_URL=postgresql://kraiter:PASSWORD@127.0.0.1:PORT/kraiter
#
# The cluster lives in a fresh temp dir (data + unix socket), listens on loopback only,
# uses password (SCRAM) auth over TCP so the tests exercise a URL with a password, and is
# removed on exit. PostgreSQL is installed from Debian's packages when missing
# (about 30-60 s with a warm apt mirror). Root cannot run postgres, so as root the
# cluster is owned and run by the `postgres` user the package creates.

_kraiter_pg_log() { echo "postgres.sh: $*" >&2; }

_kraiter_pg_bindir() {
    local dir
    # `|| true`: sourced under `set -euo pipefail`, a failed glob must not end .ci/run
    dir=$( (ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true) | sort -V | tail -n 1)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
        echo "$dir"
    elif command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    fi
}

_kraiter_pg_as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

_kraiter_pg_stop() {
    if [ -n "${_KRAITER_PG_DIR:-}" ] && [ -d "$_KRAITER_PG_DIR" ]; then
        _kraiter_pg_as_owner "$_KRAITER_PG_BIN/pg_ctl" -D "$_KRAITER_PG_DIR/data" \
            -m immediate -w stop >/dev/null 2>&1 || true
        rm -rf "$_KRAITER_PG_DIR"
        _kraiter_pg_log "stopped the test server"
    fi
    _KRAITER_PG_DIR=""
}

_kraiter_pg_start() {
    local started=$SECONDS
    _KRAITER_PG_BIN=$(_kraiter_pg_bindir)
    if [ -z "$_KRAITER_PG_BIN" ]; then
        if [ "$(id -u)" != 0 ]; then
            _kraiter_pg_log "PostgreSQL is not installed and this is not root; skipping"
            return 0
        fi
        _kraiter_pg_log "installing PostgreSQL from Debian packages"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
        _KRAITER_PG_BIN=$(_kraiter_pg_bindir)
        _kraiter_pg_log "installed in $((SECONDS - started)) s"
    fi
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
        useradd --system --home-dir /var/lib/postgresql --shell /bin/sh postgres
    fi

    _KRAITER_PG_DIR=$(mktemp -d /tmp/kraiter-pg.XXXXXX)
    chmod 755 "$_KRAITER_PG_DIR"
    mkdir "$_KRAITER_PG_DIR/socket"
    local password port
    password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    printf '%s\n' "$password" >"$_KRAITER_PG_DIR/pwfile"
    if [ "$(id -u)" = 0 ]; then
        chown -R postgres "$_KRAITER_PG_DIR"
    fi
    trap '_kraiter_pg_stop' EXIT

    _kraiter_pg_as_owner "$_KRAITER_PG_BIN/initdb" -D "$_KRAITER_PG_DIR/data" -U kraiter \
        --pwfile="$_KRAITER_PG_DIR/pwfile" --auth-local=trust --auth-host=scram-sha-256 \
        --no-sync -E UTF8 --locale=C.UTF-8 >"$_KRAITER_PG_DIR/initdb.log" 2>&1 \
        || { cat "$_KRAITER_PG_DIR/initdb.log" >&2; return 1; }
    _kraiter_pg_as_owner "$_KRAITER_PG_BIN/pg_ctl" -D "$_KRAITER_PG_DIR/data" -w -t 60 \
        -l "$_KRAITER_PG_DIR/server.log" \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $_KRAITER_PG_DIR/socket -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >/dev/null \
        || { cat "$_KRAITER_PG_DIR/server.log" >&2; return 1; }
    _kraiter_pg_as_owner "$_KRAITER_PG_BIN/createdb" -h "$_KRAITER_PG_DIR/socket" -p "$port" \
        -U kraiter kraiter
    export KRAITER_TEST_POSTGRES_URL="postgresql://kraiter:${password}@127.0.0.1:${port}/kraiter"
    _kraiter_pg_log "PostgreSQL $("$_KRAITER_PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ready in $((SECONDS - started)) s"
}

_kraiter_pg_start
