# shellcheck shell=bash disable=SC2034
# Shared settings and helpers for the autobahn/*.sh scripts.
# Source it (with HERE set to this directory); do not run it.

# Python 2.7 venv holding wstest (gitignored).
VENV="${WS_AUTOBAHN_VENV:-$HERE/.venv}"
WSTEST="$VENV/bin/wstest"
# The system python2.7. Explicit path: on some machines `python2.7` on PATH is
# a pyenv shim that fails unless a 2.7 version is selected.
PYTHON2="${PYTHON2:-/usr/bin/python2.7}"
PYTHON3="${PYTHON3:-python3}"
REPO_ROOT="$(cd "$HERE/.." && pwd)"
REPORTS="$HERE/reports"
# Agent name our side reports to wstest (fuzzingclient.json "agent",
# `ws autobahn-client --agent`); check_report.py looks for it in index.json.
AGENT=ws-rs
# Bounds for waits (seconds).
START_TIMEOUT="${WS_AUTOBAHN_START_TIMEOUT:-60}"
RUN_TIMEOUT="${WS_AUTOBAHN_RUN_TIMEOUT:-1800}"

say() { printf '==> [%s] %s\n' "${SCRIPT_NAME:-autobahn}" "$*" >&2; }
die() { printf 'ERROR [%s] %s\n' "${SCRIPT_NAME:-autobahn}" "$*" >&2; exit 1; }

# Print "host port" of the ws:// URL at a key path in a JSON spec file.
# usage: spec_hostport SPEC.json KEY[.KEY...]   e.g. url, servers.0.url
spec_hostport() {
    "$PYTHON3" - "$1" "$2" <<'EOF'
import json, sys
from urllib.parse import urlsplit
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v[int(k)] if isinstance(v, list) else v[k]
u = urlsplit(v)
if u.scheme != "ws" or not u.hostname or not u.port:
    sys.exit("%s: need a ws://HOST:PORT url at %s, got %r" % (sys.argv[1], sys.argv[2], v))
print(u.hostname, u.port)
EOF
}

# Fail if something already listens on HOST:PORT (binding with SO_REUSEADDR
# only fails when there is a listener; no connection is made).
require_free_port() {
    "$PYTHON3" - "$1" "$2" <<'EOF' || die "$1:$2 is already in use (a leftover testee or wstest?); stop it first"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind((sys.argv[1], int(sys.argv[2])))
except OSError as e:
    print("bind %s:%s: %s" % (sys.argv[1], sys.argv[2], e), file=sys.stderr)
    sys.exit(1)
EOF
}

# Wait (bounded) until LOGFILE contains PATTERN while PID is alive.
# usage: wait_for_line PID LOGFILE PATTERN WHAT
wait_for_line() {
    local pid=$1 log=$2 pattern=$3 what=$4 deadline=$((SECONDS + START_TIMEOUT))
    while ! grep -q -- "$pattern" "$log" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$log" >&2 || true
            die "$what exited before it was ready (log: $log)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 30 "$log" >&2 || true
            die "$what not ready after ${START_TIMEOUT}s (log: $log)"
        fi
        sleep 0.2
    done
}

# Is HOST:PORT listening? (ss is in iproute2; used as a second readiness
# check). Retries for up to 5 s: the launcher announces the bind as it makes
# it, and a loaded machine may take a moment.
port_listening() {
    local _
    for _ in $(seq 1 50); do
        ss -Hltn "sport = :$2" 2>/dev/null | grep -- "$1:$2" >/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# Stop a process we started (by PID): SIGTERM, bounded wait, then SIGKILL.
stop_pid() {
    local pid=$1 what=$2 _
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    say "stopping $what (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$what did not exit after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# Build `ws` (cargo build --release -p ws-cli) and set WS_BIN to its path.
# Set WS_BIN beforehand to use an existing binary and skip the build.
build_ws() {
    if [ -n "${WS_BIN:-}" ]; then
        [ -x "$WS_BIN" ] || die "WS_BIN=$WS_BIN is not an executable"
        say "using WS_BIN=$WS_BIN (not building)"
        return 0
    fi
    command -v cargo >/dev/null || die "cargo not found"
    local t0=$SECONDS target
    say "cargo build --release -p ws-cli"
    (cd "$REPO_ROOT" && cargo build --release -p ws-cli) || die "cargo build failed"
    # cargo metadata honours CARGO_TARGET_DIR and build.target-dir.
    target="$(cd "$REPO_ROOT" && cargo metadata --format-version 1 --no-deps |
        "$PYTHON3" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')" ||
        die "cargo metadata failed"
    WS_BIN="$target/release/ws"
    [ -x "$WS_BIN" ] || die "built, but $WS_BIN does not exist"
    say "built $WS_BIN in $((SECONDS - t0))s"
}

fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
