#!/usr/bin/env bash
# The `ws rpc` commands against the JSON-RPC specification's example server
# (crates/ws-rpc/examples/spec_server.rs), as README shows them: a call, a
# call that gets an error object (on stderr, exit 1), a notification, and a
# subscription printed line by line; then one second of `ws bench --rpc`. 127.0.0.1 only, a port chosen by the
# kernel, every step bounded in time.
#   tests/rpc_smoke.sh [path/to/ws [path/to/spec_server]]
set -euo pipefail
target="${CARGO_TARGET_DIR:-$HOME/.cache/ws-target}"
ws="${1:-${WS_BIN:-$target/release/ws}}"
spec="${2:-$target/release/examples/spec_server}"
log="$(mktemp)"
"$spec" --listen 127.0.0.1:0 >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
url=""
for _ in $(seq 1 100); do
    url="$(sed -n 's/^listening on \(ws:\/\/[^ ]*\).*/\1/p' "$log" | head -n1)"
    [ -n "$url" ] && break
    sleep 0.1
done
[ -n "$url" ] || { echo "spec_server did not start:"; cat "$log"; exit 1; }
fail() { echo "rpc smoke: $*"; exit 1; }

out="$(timeout 10 "$ws" rpc call "$url/" subtract '[42, 23]')"
[ "$out" = 19 ] || fail "subtract [42, 23] printed '$out'"
out="$(timeout 10 "$ws" rpc call "$url/" subtract '{"minuend": 42, "subtrahend": 23}')"
[ "$out" = 19 ] || fail "named subtract printed '$out'"
out="$(timeout 10 "$ws" rpc call "$url/" get_data)"
[ "$out" = '["hello",5]' ] || fail "get_data printed '$out'"
status=0
err="$(timeout 10 "$ws" rpc call "$url/" foobar 2>&1 >/dev/null)" || status=$?
[ "$status" = 1 ] || fail "foobar exited with $status, not 1"
case "$err" in *'"code":-32601'*) ;; *) fail "foobar printed '$err' on stderr" ;; esac
timeout 10 "$ws" rpc notify "$url/" update '[1, 2, 3]' || fail "notify failed"
lines="$(timeout -s INT 1 "$ws" rpc subscribe "$url/" subscribe_ticks || true)"
n="$(grep -c '"n":' <<<"$lines" || true)"
[ "$n" -ge 3 ] || fail "subscribe printed $n items in a second: '$lines'"
grep -q '^{"n":1}$' <<<"$lines" || fail "the first tick is not {\"n\":1}: '$lines'"
# The load generator's JSON-RPC mode, every answer verified (sum [c, k]).
timeout 30 "$ws" bench --rpc --method sum --url "$url/" -c 4 -p 4 -d 1 --warmup 0.2 ||
    fail "ws bench --rpc failed"
echo "rpc smoke: ok (call, error, notify, $n ticks, ws bench --rpc)"
