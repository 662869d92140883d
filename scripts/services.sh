#!/usr/bin/env bash
# Throwaway PostgreSQL + Redis for tests and the demo.
#
#   scripts/services.sh start DIR     start (or reuse) a private PostgreSQL cluster and
#                                     redis-server whose files live under DIR; writes DIR/env
#                                     and prints its two lines:
#                                       export ELT_TEST_PG_URL=postgres://postgres@127.0.0.1:PORT/postgres
#                                       export ELT_TEST_REDIS_URL=redis://127.0.0.1:PORT/0
#   scripts/services.sh stop DIR      stop both and remove their data
#   scripts/services.sh status DIR    exit 0 when both servers of DIR answer
#   scripts/services.sh ensure-redis  install redis-server with apt-get when missing (root only)
#   scripts/services.sh ensure-pgbouncer
#                                     install pgbouncer with apt-get when missing (root only;
#                                     its system service is not started)
#
# Only stdout carries the env lines; progress and errors go to stderr, so
# `eval "$(scripts/services.sh start DIR)"` works too. Safe to call concurrently,
# for the same DIR (serialised by DIR/.lock) and for different DIRs (ports are
# picked under a machine-wide lock and every start is verified to be our own).
set -euo pipefail

PROG=${0##*/}
STARTUP_TIMEOUT=${ELT_SERVICES_TIMEOUT:-60}
GLOBAL_LOCK=${TMPDIR:-/tmp}/elt-services-ports.lock

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}
usage() {
    sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# Run apt-get install for the given packages without starting their system services.
apt_install() {
    is_root || die "need root to install: $* (install it yourself, e.g. sudo apt-get install -y $*)"
    command -v apt-get >/dev/null || die "apt-get not found; install $* by hand"
    local policy=/usr/sbin/policy-rc.d created=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created=1
    fi
    local rc=0
    {
        log "installing $* with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
    } || rc=$?
    [ "$created" = 1 ] && rm -f "$policy"
    [ "$rc" -eq 0 ] || die "apt-get install $* failed"
}

ensure_redis() {
    if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
        return 0
    fi
    apt_install redis-server redis-tools
    command -v redis-server >/dev/null || die "redis-server still missing after install"
}

ensure_pgbouncer() {
    if command -v pgbouncer >/dev/null; then
        return 0
    fi
    # tests call this in parallel: one apt-get at a time, the others find it installed
    local lock=${TMPDIR:-/tmp}/elt-services-apt.lock
    exec 7>>"$lock"
    flock 7
    if ! command -v pgbouncer >/dev/null; then
        apt_install pgbouncer
    fi
    flock -u 7
    exec 7>&-
    command -v pgbouncer >/dev/null || die "pgbouncer still missing after install"
}

# Sets PG_BIN to a directory holding initdb, pg_ctl, pg_isready.
find_pg_bin() {
    local d
    for d in /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -Vr); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
            PG_BIN=$d
            return 0
        fi
    done
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        PG_BIN=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
        return 0
    fi
    apt_install postgresql
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -Vr); do
        [ -x "$d/initdb" ] && PG_BIN=$d && return 0
    done
    die "PostgreSQL server binaries (initdb, pg_ctl) not found"
}

pg_isready_bin() {
    if [ -x "$PG_BIN/pg_isready" ]; then echo "$PG_BIN/pg_isready"; else command -v pg_isready; fi
}

# Run a command as the PostgreSQL OS user (postgres when we are root, ourselves otherwise).
as_pg() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# Run a command with stdin/stdout/stderr on /dev/null and every other inherited file
# descriptor closed, so that a daemon it leaves behind holds none of our locks or pipes.
detached() {
    (
        for fd in $(ls "/proc/$BASHPID/fd" 2>/dev/null); do
            if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        "$@" </dev/null >/dev/null 2>&1
    )
}

ensure_pg_user() {
    is_root || return 0
    id postgres >/dev/null 2>&1 && return 0
    log "creating OS user postgres"
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
}

# A TCP port on 127.0.0.1 that nothing listens on right now.
pick_port() {
    local py
    for py in /usr/bin/python3 python3; do
        if command -v "$py" >/dev/null 2>&1; then
            "$py" - <<'EOF' 2>/dev/null && return 0
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
        fi
    done
    local p i
    for i in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    die "could not find a free TCP port"
}

# --- state file -------------------------------------------------------------------------
# DIR/state holds shell assignments: PG_ROOT PG_DATA PG_PORT PG_BIN PG_TMP REDIS_DIR REDIS_PORT
load_state() {
    PG_ROOT='' PG_DATA='' PG_PORT='' PG_TMP=0 REDIS_DIR='' REDIS_PORT=''
    [ -f "$DIR/state" ] || return 1
    # shellcheck disable=SC1091
    . "$DIR/state"
}

write_state() {
    {
        printf 'PG_BIN=%q\n' "$PG_BIN"
        printf 'PG_ROOT=%q\n' "$PG_ROOT"
        printf 'PG_DATA=%q\n' "$PG_DATA"
        printf 'PG_PORT=%q\n' "$PG_PORT"
        printf 'PG_TMP=%q\n' "$PG_TMP"
        printf 'REDIS_DIR=%q\n' "$REDIS_DIR"
        printf 'REDIS_PORT=%q\n' "$REDIS_PORT"
    } >"$DIR/state.tmp"
    mv "$DIR/state.tmp" "$DIR/state"
}

# --- health checks -----------------------------------------------------------------------
pg_alive() {
    [ -n "${PG_DATA:-}" ] && [ -n "${PG_PORT:-}" ] && [ -f "$PG_DATA/postmaster.pid" ] || return 1
    as_pg "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1 || return 1
    # the postmaster.pid line 4 is the port this cluster listens on
    [ "$(sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null)" = "$PG_PORT" ] || return 1
    "$(pg_isready_bin)" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -t 2 >/dev/null 2>&1
}

redis_pid() { cat "$REDIS_DIR/redis.pid" 2>/dev/null || true; }

redis_alive() {
    [ -n "${REDIS_DIR:-}" ] && [ -n "${REDIS_PORT:-}" ] || return 1
    local pid served
    pid=$(redis_pid)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    # make sure the server answering on the port is ours, not another instance's
    served=$(timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" info server 2>/dev/null |
        tr -d '\r' | sed -n 's/^process_id://p' || true)
    [ "$served" = "$pid" ]
}

write_env() {
    {
        echo "export ELT_TEST_PG_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres"
        echo "export ELT_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
    } >"$DIR/env.tmp"
    mv "$DIR/env.tmp" "$DIR/env"
}

# --- stop --------------------------------------------------------------------------------
stop_pg() {
    if [ -n "${PG_DATA:-}" ] && [ -f "$PG_DATA/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m immediate -w -t 30 >/dev/null 2>&1 || {
            local pid
            pid=$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null || true)
            [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
        }
    fi
    if [ -n "${PG_ROOT:-}" ] && [ -d "$PG_ROOT" ]; then
        rm -rf "$PG_ROOT"
    fi
}

stop_redis() {
    [ -n "${REDIS_DIR:-}" ] || return 0
    local pid i
    pid=$(redis_pid)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        if redis_alive; then
            timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
        fi
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            [ "$i" = 20 ] && kill "$pid" 2>/dev/null || true
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    [ -d "$REDIS_DIR" ] && rm -rf "$REDIS_DIR"
    return 0
}

cmd_stop() {
    find_pg_bin
    if ! load_state; then
        log "nothing to stop in $DIR"
        rm -f "$DIR/env"
        return 0
    fi
    log "stopping services of $DIR"
    stop_redis
    stop_pg
    rm -f "$DIR/env" "$DIR/state"
    # remove DIR itself when nothing else (e.g. demo logs) is left in it
    rm -f "$DIR/.lock"
    rmdir "$DIR" 2>/dev/null || true
}

# --- start -------------------------------------------------------------------------------
init_pg() {
    # Where the cluster lives: DIR/pg when the postgres user can reach it and the socket
    # path stays short, otherwise a private directory under /tmp.
    PG_ROOT="$DIR/pg"
    PG_TMP=0
    mkdir -p "$PG_ROOT"
    if is_root; then chown postgres: "$PG_ROOT"; fi
    chmod 700 "$PG_ROOT"
    if ! as_pg test -w "$PG_ROOT" -a -x "$PG_ROOT" 2>/dev/null || [ "${#PG_ROOT}" -gt 70 ]; then
        rm -rf "$PG_ROOT"
        PG_ROOT=$(mktemp -d /tmp/elt-pg.XXXXXX)
        PG_TMP=1
        if is_root; then chown postgres: "$PG_ROOT"; fi
        chmod 700 "$PG_ROOT"
        log "PostgreSQL data in $PG_ROOT ($DIR is not reachable for the postgres user or too long)"
    fi
    PG_DATA="$PG_ROOT/data"
    as_pg mkdir -p "$PG_ROOT/sock"

    local common=(-D "$PG_DATA" -U postgres --auth=trust -E UTF8 -N)
    if ! as_pg "$PG_BIN/initdb" "${common[@]}" --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1; then
        as_pg rm -rf "$PG_DATA"
        as_pg "$PG_BIN/initdb" "${common[@]}" --locale=C >"$DIR/initdb.log" 2>&1 ||
            die "initdb failed; see $DIR/initdb.log"
    fi
    rm -f "$DIR/initdb.log"
    as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null <<EOF

# --- throwaway settings written by scripts/services.sh ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_ROOT/sock'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 256MB
EOF
}

start_pg_on() {
    local port=$1
    as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null <<<"port = $port"
    PG_PORT=$port
    detached as_pg "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_ROOT/postgresql.log" \
        -w -t "$STARTUP_TIMEOUT" || return 1
    pg_alive
}

start_redis_on() {
    local port=$1
    REDIS_PORT=$port
    rm -f "$REDIS_DIR/redis.pid"
    detached redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
        --dir "$REDIS_DIR" --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" ||
        return 1
    local i
    for i in $(seq 1 $((STARTUP_TIMEOUT * 10))); do
        redis_alive && return 0
        # gave up already (e.g. port taken): pidfile missing and no process
        if [ "$i" -gt 20 ] && [ -z "$(redis_pid)" ]; then return 1; fi
        if [ -n "$(redis_pid)" ] && ! kill -0 "$(redis_pid)" 2>/dev/null; then return 1; fi
        sleep 0.1
    done
    return 1
}

cmd_start() {
    ensure_redis
    ensure_pg_user
    find_pg_bin

    if load_state; then
        if pg_alive && redis_alive; then
            log "reusing running services of $DIR"
            write_env
            cat "$DIR/env"
            return 0
        fi
        log "services of $DIR are not (all) running; starting afresh"
        stop_redis
        stop_pg
        rm -f "$DIR/state" "$DIR/env"
    fi
    rm -f "$DIR/env"

    init_pg
    REDIS_DIR="$DIR/redis"
    mkdir -p "$REDIS_DIR"
    REDIS_PORT=''
    write_state # so that `stop` can clean up even if what follows fails

    local attempt ok
    # Port choice and server start happen under a machine-wide lock so that parallel
    # instances never pick the same port; a failed start is retried on another port.
    [ -e "$GLOBAL_LOCK" ] || (umask 0 && : >>"$GLOBAL_LOCK") 2>/dev/null || true
    exec 8<"$GLOBAL_LOCK"
    flock 8
    ok=0
    for attempt in 1 2 3 4 5; do
        if start_pg_on "$(pick_port)"; then
            ok=1
            break
        fi
        as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m immediate >/dev/null 2>&1 || true
        log "PostgreSQL did not start on port $PG_PORT (attempt $attempt)"
    done
    if [ "$ok" != 1 ]; then
        flock -u 8
        tail -n 20 "$PG_ROOT/postgresql.log" >&2 2>/dev/null || true
        write_state
        die "PostgreSQL failed to start; log: $PG_ROOT/postgresql.log"
    fi
    write_state
    ok=0
    for attempt in 1 2 3 4 5; do
        if start_redis_on "$(pick_port)"; then
            ok=1
            break
        fi
        log "redis-server did not start on port $REDIS_PORT (attempt $attempt)"
        local pid
        pid=$(redis_pid)
        [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    done
    flock -u 8
    exec 8>&-
    write_state
    if [ "$ok" != 1 ]; then
        tail -n 20 "$REDIS_DIR/redis.log" >&2 2>/dev/null || true
        die "redis-server failed to start; log: $REDIS_DIR/redis.log"
    fi

    write_env
    log "PostgreSQL $("$PG_BIN/postgres" -V | awk '{print $3}') on 127.0.0.1:$PG_PORT, redis on 127.0.0.1:$REDIS_PORT (stop: $0 stop $DIR)"
    cat "$DIR/env"
}

cmd_status() {
    find_pg_bin
    load_state || die "no services recorded in $DIR"
    local rc=0
    if pg_alive; then log "PostgreSQL on 127.0.0.1:$PG_PORT is up"; else
        log "PostgreSQL is down"
        rc=1
    fi
    if redis_alive; then log "redis on 127.0.0.1:$REDIS_PORT is up"; else
        log "redis is down"
        rc=1
    fi
    [ "$rc" = 0 ] && cat "$DIR/env"
    return "$rc"
}

# --- main --------------------------------------------------------------------------------
[ $# -ge 1 ] || usage
cmd=$1
shift
case "$cmd" in
ensure-redis)
    [ $# -eq 0 ] || usage
    ensure_redis
    ;;
ensure-pgbouncer)
    [ $# -eq 0 ] || usage
    ensure_pgbouncer
    ;;
start | stop | status)
    [ $# -eq 1 ] && [ -n "$1" ] || usage
    if [ "$cmd" != start ] && [ ! -d "$1" ]; then
        log "no services in $1"
        [ "$cmd" = stop ] && exit 0
        exit 1
    fi
    mkdir -p "$1"
    DIR=$(cd "$1" && pwd -P)
    # let the postgres user traverse DIR (tempfile::tempdir() creates it 0700)
    chmod a+x "$DIR" 2>/dev/null || true
    exec 9>"$DIR/.lock"
    flock 9
    "cmd_$cmd"
    ;;
-h | --help | help) usage ;;
*) usage ;;
esac
