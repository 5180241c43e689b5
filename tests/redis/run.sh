#!/usr/bin/env bash
# The Redis-backed tests: ws-rpc-redis's unit tests, its integration tests
# against a redis-server of their own (crates/ws-rpc-redis/tests/rooms.rs),
# and the acceptance scenarios with `ws serve --redis` nodes
# (crates/ws-rpc-redis/tests/ws_serve.rs). They fail, never skip, when
# redis-server is missing.
#
#   bash tests/redis/run.sh [WS_BIN]
#
# WS_BIN (argument or environment): the `ws` binary the acceptance tests
# start; without it they build it (cargo build -p ws-cli) in their profile.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ws-target}"
for tool in redis-server redis-cli; do
  command -v "$tool" >/dev/null || { echo "$tool not found: apt-get install -y redis-server" >&2; exit 1; }
done
if [ $# -ge 1 ]; then export WS_BIN="$1"; fi
cargo test -p ws-rpc-redis
