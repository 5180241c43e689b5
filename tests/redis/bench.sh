#!/usr/bin/env bash
# One room, MEMBERS members: broadcasts delivered per second and delivery
# latency, without Redis (one node, ws-rpc's in-process rooms) and with
# Redis (the members spread over NODES nodes sharing the room through a
# redis-server of this script's own). A benchmark, not a test.
#
#   bash tests/redis/bench.sh [MEMBERS] [MESSAGES] [RATE] [NODES]
#   (defaults: 10000 members, 200 messages at 5/s, 2 nodes; NODE_THREADS=2
#   worker threads per node, as `ws serve` on a 2-core machine)
#
# Everything listens on 127.0.0.1, on free ports; everything it starts is
# stopped at the end. Needs redis-server (apt-get install -y redis-server).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ws-target}"
MEMBERS="${1:-10000}"
MESSAGES="${2:-200}"
RATE="${3:-5}"
NODES="${4:-2}"
THREADS="${NODE_THREADS:-2}"

command -v redis-server >/dev/null || { echo "redis-server not found: apt-get install -y redis-server" >&2; exit 1; }
cargo build --release -q -p ws-rpc-redis --example room_bench
BIN="$CARGO_TARGET_DIR/release/examples/room_bench"

TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# A node: `room_bench node ARGS`; sets NODE_URL once it listens. Its
# standard input is a pipe this shell keeps open (it stops when the pipe
# closes).
start_node() {
  local name="$1"; shift
  mkfifo "$TMP/$name.in"
  "$BIN" node --listen 127.0.0.1:0 --threads "$THREADS" "$@" <"$TMP/$name.in" >"$TMP/$name.out" 2>"$TMP/$name.err" &
  PIDS+=($!)
  exec {fd}>"$TMP/$name.in"
  for _ in $(seq 100); do
    if grep -q '^listening on ' "$TMP/$name.out" 2>/dev/null; then
      NODE_URL="ws://$(sed -n 's/^listening on //p' "$TMP/$name.out")/"
      return
    fi
    sleep 0.1
  done
  echo "node $name did not start: $(cat "$TMP/$name.err")" >&2
  exit 1
}

echo "=== without Redis: 1 node, $MEMBERS members, $MESSAGES messages at $RATE/s"
start_node local
"$BIN" client --url "$NODE_URL" --members "$MEMBERS" --messages "$MESSAGES" --rate "$RATE"
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true

PORT="$("$BIN" free-port)"
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --loglevel warning --logfile "$TMP/redis.log" --dir "$TMP" &
PIDS+=($!)
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$PORT" ping >/dev/null

echo
echo "=== with Redis: $NODES nodes, $MEMBERS members, $MESSAGES messages at $RATE/s"
ARGS=()
for i in $(seq "$NODES"); do
  start_node "node$i" --redis "redis://127.0.0.1:$PORT/"
  ARGS+=(--url "$NODE_URL")
done
"$BIN" client "${ARGS[@]}" --members "$MEMBERS" --messages "$MESSAGES" --rate "$RATE"
