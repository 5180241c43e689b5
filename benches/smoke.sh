#!/usr/bin/env bash
# Smoke test of the load generator: `ws bench` for one second against
# `ws echo` on 127.0.0.1, verifying every echoed payload. Exits non-zero if
# the bench fails or verifies nothing.
#   benches/smoke.sh [path/to/ws]
set -euo pipefail
ws="${1:-${WS_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/ws-target}/release/ws}}"
log="$(mktemp)"
"$ws" echo --listen 127.0.0.1:0 >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
url=""
for _ in $(seq 1 100); do
    url="$(sed -n 's/^listening on \(ws:\/\/[^ ]*\).*/\1/p' "$log" | head -n1)"
    [ -n "$url" ] && break
    sleep 0.1
done
[ -n "$url" ] || { echo "ws echo did not start:"; cat "$log"; exit 1; }
"$ws" bench --url "$url/" -c 4 -s 1k -d 1 --warmup 0
