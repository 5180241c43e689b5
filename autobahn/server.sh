#!/usr/bin/env bash
# Autobahn|Testsuite against our server: wstest -m fuzzingclient connects to
# `ws echo --listen 127.0.0.1:9001` and runs the cases of fuzzingclient.json.
# Exits with check_report.py's status (non-zero on any non-OK case).
#
# Environment: WS_BIN (use this ws binary, skip cargo build),
# WS_AUTOBAHN_RUN_TIMEOUT (default 1800 s), WS_AUTOBAHN_START_TIMEOUT (60 s),
# WS_AUTOBAHN_VENV, CARGO_TARGET_DIR.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRIPT_NAME=server.sh
# shellcheck source=lib.sh
. "$HERE/lib.sh"

SPEC="$HERE/fuzzingclient.json"
OUTDIR="$REPORTS/server"          # = "outdir" in fuzzingclient.json
LOGDIR="$REPORTS/logs"
TESTEE_PID=""
t_script=$SECONDS

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local rc=$?
    stop_pid "$TESTEE_PID" "ws echo"
    TESTEE_PID=""
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$HERE/install.sh"
build_ws

hostport="$(spec_hostport "$SPEC" servers.0.url)"
read -r HOST PORT <<<"$hostport"
[ "$HOST" = 127.0.0.1 ] || die "$SPEC: the server URL must be on 127.0.0.1 (got $HOST)"
require_free_port "$HOST" "$PORT"

rm -rf "$OUTDIR"
mkdir -p "$OUTDIR" "$LOGDIR"
TESTEE_LOG="$LOGDIR/server-ws-echo.log"
WSTEST_LOG="$LOGDIR/server-wstest.log"
# Empty the log now: the readiness check greps it, and it must not still
# hold the line of an earlier run.
: >"$TESTEE_LOG"

say "starting: $WS_BIN echo --listen $HOST:$PORT (log: $TESTEE_LOG)"
"$WS_BIN" echo --listen "$HOST:$PORT" >"$TESTEE_LOG" 2>&1 &
TESTEE_PID=$!
wait_for_line "$TESTEE_PID" "$TESTEE_LOG" "listening on" "ws echo"
port_listening "$HOST" "$PORT" || die "ws echo says it is listening, but nothing listens on $HOST:$PORT"
say "ws echo is ready (pid $TESTEE_PID)"

say "running: wstest -m fuzzingclient -s fuzzingclient.json (timeout ${RUN_TIMEOUT}s, log: $WSTEST_LOG)"
t_run=$SECONDS
wstest_rc=0
(cd "$HERE" && timeout --kill-after=10 "$RUN_TIMEOUT" "$WSTEST" -m fuzzingclient -s "$SPEC") \
    >"$WSTEST_LOG" 2>&1 || wstest_rc=$?
run_secs=$((SECONDS - t_run))
say "wstest finished in $(fmt_secs $run_secs) (exit $wstest_rc)"
if [ "$wstest_rc" -ne 0 ]; then
    tail -n 30 "$WSTEST_LOG" >&2 || true
    [ "$wstest_rc" -eq 124 ] && say "wstest hit the ${RUN_TIMEOUT}s timeout"
fi
if ! kill -0 "$TESTEE_PID" 2>/dev/null; then
    say "ws echo is no longer running (crashed?); its log:"
    tail -n 30 "$TESTEE_LOG" >&2 || true
fi
stop_pid "$TESTEE_PID" "ws echo"
TESTEE_PID=""

check_rc=0
"$PYTHON3" "$HERE/check_report.py" "$OUTDIR" --spec "$SPEC" --agent "$AGENT" \
    --title "Server (wstest fuzzingclient → ws echo)" --markdown "$REPORTS/server-summary.md" || check_rc=$?
say "HTML report: $OUTDIR/index.html"
say "timing: wstest run $(fmt_secs $run_secs), total $(fmt_secs $((SECONDS - t_script)))"
[ "$check_rc" -ne 0 ] && exit "$check_rc"
[ "$wstest_rc" -ne 0 ] && die "wstest exited with $wstest_rc"
say "PASS"
exit 0
