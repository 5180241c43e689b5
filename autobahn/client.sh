#!/usr/bin/env bash
# Autobahn|Testsuite against our client: wstest -m fuzzingserver (loopback
# only, no web page) listens on 127.0.0.1:9002 and
# `ws autobahn-client --url ws://127.0.0.1:9002 --agent ws-rs` runs every
# case of fuzzingserver.json against it, then asks it to write the reports.
# Exits with check_report.py's status (non-zero on any non-OK case).
#
# Environment: WS_BIN (use this ws binary, skip cargo build),
# WS_AUTOBAHN_RUN_TIMEOUT (default 1800 s), WS_AUTOBAHN_START_TIMEOUT (60 s),
# WS_AUTOBAHN_VENV, CARGO_TARGET_DIR.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRIPT_NAME=client.sh
# shellcheck source=lib.sh
. "$HERE/lib.sh"

SPEC="$HERE/fuzzingserver.json"
OUTDIR="$REPORTS/client"          # = "outdir" in fuzzingserver.json
LOGDIR="$REPORTS/logs"
SUITE_PID=""
t_script=$SECONDS

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    local rc=$?
    stop_pid "$SUITE_PID" "wstest fuzzingserver"
    SUITE_PID=""
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$HERE/install.sh"
build_ws

hostport="$(spec_hostport "$SPEC" url)"
read -r HOST PORT <<<"$hostport"
[ "$HOST" = 127.0.0.1 ] || die "$SPEC: url must be on 127.0.0.1 (got $HOST)"
URL="ws://$HOST:$PORT"
require_free_port "$HOST" "$PORT"

rm -rf "$OUTDIR"
mkdir -p "$OUTDIR" "$LOGDIR"
SUITE_LOG="$LOGDIR/client-wstest.log"
CLIENT_LOG="$LOGDIR/client-ws.log"
# Empty the logs now: the readiness check greps the suite's log, which must
# not still hold the line of an earlier run.
: >"$SUITE_LOG"
: >"$CLIENT_LOG"

# wstest_loopback.py = wstest with every listener bound to 127.0.0.1;
# -u 0 = no report web server (stock wstest would open 0.0.0.0:8080).
say "starting: wstest -m fuzzingserver -s fuzzingserver.json -u 0, loopback only (log: $SUITE_LOG)"
(cd "$HERE" && exec "$VENV/bin/python" -u "$HERE/wstest_loopback.py" -m fuzzingserver -s "$SPEC" -u 0) \
    >"$SUITE_LOG" 2>&1 &
SUITE_PID=$!
wait_for_line "$SUITE_PID" "$SUITE_LOG" "listenTCP bound $HOST:$PORT" "wstest fuzzingserver"
port_listening "$HOST" "$PORT" || die "wstest says it is listening, but nothing listens on $HOST:$PORT"
say "wstest fuzzingserver is ready (pid $SUITE_PID)"

say "running: $WS_BIN autobahn-client --url $URL --agent $AGENT (timeout ${RUN_TIMEOUT}s, log: $CLIENT_LOG)"
t_run=$SECONDS
client_rc=0
no_update=0
timeout --kill-after=10 "$RUN_TIMEOUT" "$WS_BIN" autobahn-client --url "$URL" --agent "$AGENT" \
    >"$CLIENT_LOG" 2>&1 || client_rc=$?
run_secs=$((SECONDS - t_run))
say "ws autobahn-client finished in $(fmt_secs $run_secs) (exit $client_rc)"

if [ "$client_rc" -ne 0 ] || [ ! -f "$OUTDIR/index.json" ]; then
    tail -n 30 "$CLIENT_LOG" >&2 || true
    [ "$client_rc" -eq 124 ] && say "ws autobahn-client hit the ${RUN_TIMEOUT}s timeout"
    if [ ! -f "$OUTDIR/index.json" ]; then
        no_update=1
        say "the client did not call /updateReports"
    fi
    if kill -0 "$SUITE_PID" 2>/dev/null; then
        say "asking wstest to write the reports of the cases that ran (update_reports.py)"
        timeout 120 "$PYTHON3" "$HERE/update_reports.py" "$URL" "$AGENT" || say "update_reports.py failed"
    fi
fi
if ! kill -0 "$SUITE_PID" 2>/dev/null; then
    say "wstest fuzzingserver died during the run; its log:"
    tail -n 30 "$SUITE_LOG" >&2 || true
fi
stop_pid "$SUITE_PID" "wstest fuzzingserver"
SUITE_PID=""

check_rc=0
"$PYTHON3" "$HERE/check_report.py" "$OUTDIR" --spec "$SPEC" --agent "$AGENT" \
    --title "Client (ws autobahn-client → wstest fuzzingserver)" --markdown "$REPORTS/client-summary.md" || check_rc=$?
say "HTML report: $OUTDIR/index.html"
say "timing: client run $(fmt_secs $run_secs), total $(fmt_secs $((SECONDS - t_script)))"
[ "$check_rc" -ne 0 ] && exit "$check_rc"
[ "$client_rc" -ne 0 ] && die "ws autobahn-client exited with $client_rc"
[ "$no_update" -eq 0 ] || die "ws autobahn-client did not call /updateReports (the report above was written by update_reports.py)"
say "PASS"
exit 0
