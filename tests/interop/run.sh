#!/usr/bin/env bash
# Interop tests: our `ws` binary against peers written elsewhere, Python's
# `websockets` and Node's `ws`, in both directions (their client against
# `ws echo`, their servers against `ws connect`; Python's client also
# against ws-net's axum example, an upgrade done by axum), and a real headless
# Chromium whose own `WebSocket` API talks to `ws echo` from a page served
# on a 127.0.0.1 http origin (browsers are the main peer of a server).
# The rpc suite does the same for ws-rpc (JSON-RPC 2.0): jsonrpsee 0.26's
# WebSocket client and Node's `rpc-websockets` client against ws-rpc's
# spec_server example, and ws-rpc's own client against a jsonrpsee server
# (rpc/ is a cargo project of its own, so that jsonrpsee stays out of the
# workspace; rpc_interop.mjs is the Node side).
#
#   bash tests/interop/run.sh            # everything
#   bash tests/interop/run.sh chromium   # one suite (python | node | chromium | rpc)
#
# Installs what it needs (idempotent): websockets in a venv, ws@8,
# playwright-core and rpc-websockets from npm, and Debian's `chromium`
# package with apt-get (as root) when /usr/bin/chromium is missing;
# playwright-core only drives that browser, nothing is downloaded from
# Playwright's CDN. A failed install is a FAIL line, never a skipped suite.
#
# Builds `ws` (for python, node and chromium), or for rpc spec_server and
# the rpc/ project; prints one line per test (`ok NAME` or `FAIL NAME:
# reason`), ends with `N passed, M failed` and exits non-zero if anything
# failed. Progress and tool output go to stderr. Each suite is bounded by
# suite_limit below (the chromium suite takes about 20 s once installed,
# the rpc suite a few seconds once built; building rpc/ the first time
# takes a few minutes).
#
# Environment:
#   CARGO_TARGET_DIR         where `ws` is built (default ~/.cache/ws-target)
#   WS_BIN                   use this `ws` binary instead of building one
#   WS_AXUM_EXAMPLE          use this build of ws-net's axum example (the
#                            Python suite upgrades through it)
#   WS_RPC_SPEC_SERVER       use this build of ws-rpc's spec_server example
#   WS_RPC_INTEROP_TARGET_DIR  where rpc/ is built (default
#                            ~/.cache/ws-rpc-interop-target)
#   WS_INTEROP_CACHE         venv and node_modules (default ~/.cache/ws-interop)
#   WS_INTEROP_UPGRADE=1     reinstall the latest websockets / ws@8 /
#                            playwright-core@1 / rpc-websockets@10 anyway
#                            (not chromium)
#   WS_INTEROP_TEST_TIMEOUT  per-test limit in seconds (default 20)
#   WS_INTEROP_FILTER        run only tests whose name contains this
#   PYTHON                   the python3 used to create the venv
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ws-target}"
cache="${WS_INTEROP_CACHE:-$HOME/.cache/ws-interop}"
venv="$cache/venv"
node_dir="$cache/node"
playwright_dir="$cache/playwright"
rpc_websockets_dir="$cache/rpc-websockets"
rpc_target="${WS_RPC_INTEROP_TARGET_DIR:-$HOME/.cache/ws-rpc-interop-target}"
chromium_bin=/usr/bin/chromium
python="${PYTHON:-python3}"
suite_limit=240 # seconds; a backstop, each test has its own timeout
install_limit=300
build_limit=1200 # building rpc/ (jsonrpsee and ws-rpc) from scratch
apt_limit=900 # apt-get update + install chromium, each

suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(python node chromium rpc)
for s in "${suites[@]}"; do
  case "$s" in
    python | node | chromium | rpc) ;;
    *) echo "usage: $0 [python] [node] [chromium] [rpc]" >&2; exit 2 ;;
  esac
done
want() { local s; for s in "${suites[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

log() { printf '# %s\n' "$*" >&2; }

results="$(mktemp "${TMPDIR:-/tmp}/ws-interop.XXXXXX")"
trap 'rm -f "$results"' EXIT

# A failure that is not a test's own line (setup, crash, suite timeout).
fail() { printf 'FAIL %s\n' "$1" | tee -a "$results"; }

# ---- the ws binary (not needed by the rpc suite) ------------------------------
if ! want python && ! want node && ! want chromium; then
  WS_BIN="" # only rpc: nothing below needs it
elif [ -n "${WS_BIN:-}" ]; then
  log "using WS_BIN=$WS_BIN"
else
  log "building ws (cargo build --release -p ws-cli, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  if (cd "$root" && cargo build --release -p ws-cli >&2); then
    WS_BIN="$CARGO_TARGET_DIR/release/ws"
  else
    fail "build: cargo build --release -p ws-cli failed"
  fi
fi
if [ -n "${WS_BIN:-}" ] && [ ! -x "$WS_BIN" ]; then
  fail "build: $WS_BIN is not an executable"
  WS_BIN=""
fi
export WS_BIN

# ---- ws-net's axum example, for the upgrade through axum -------------------
if [ -z "${WS_AXUM_EXAMPLE:-}" ] && [ -n "$WS_BIN" ]; then
  log "building ws-net's axum example (cargo build --release -p ws-net --features axum --example axum)"
  if (cd "$root" && cargo build --release -p ws-net --features axum --example axum >&2); then
    WS_AXUM_EXAMPLE="$CARGO_TARGET_DIR/release/examples/axum"
  else
    fail "build: cargo build --release -p ws-net --features axum --example axum failed"
  fi
fi
export WS_AXUM_EXAMPLE

# ---- Python websockets in a venv -------------------------------------------
setup_python() {
  if [ "${WS_INTEROP_UPGRADE:-0}" != 1 ] &&
    "$venv/bin/python" -c 'import websockets.asyncio.server' 2>/dev/null; then
    return 0
  fi
  command -v "$python" >/dev/null || { fail "py/setup: $python not found"; return 1; }
  log "installing the latest websockets from PyPI into $venv"
  mkdir -p "$cache"
  if [ ! -x "$venv/bin/python" ]; then
    timeout "$install_limit" "$python" -m venv "$venv" >&2 ||
      { fail "py/setup: cannot create a venv at $venv"; return 1; }
  fi
  timeout "$install_limit" "$venv/bin/python" -m pip install --quiet --upgrade websockets >&2 ||
    { fail "py/setup: pip install websockets failed"; return 1; }
  "$venv/bin/python" -c 'import websockets.asyncio.server' 2>/dev/null ||
    { fail "py/setup: websockets installed but websockets.asyncio cannot be imported (too old?)"; return 1; }
}

# npm_package and chromium_with_playwright.
# shellcheck source=../setup.sh
source "$here/../setup.sh"

# ---- Node ws@8 ----------------------------------------------------------------
setup_node() {
  command -v node >/dev/null || { fail "node/setup: node not found"; return 1; }
  npm_package node "$node_dir" ws 8
}

# ---- Chromium (Debian's package), driven by playwright-core ----------------------
setup_chromium() {
  chromium_with_playwright chromium
}

# ---- ws-rpc against jsonrpsee and rpc-websockets ----------------------------------
# The spec_server example of ws-rpc, which both parts of the suite talk to.
setup_rpc_server() {
  if [ -z "${WS_RPC_SPEC_SERVER:-}" ]; then
    log "building ws-rpc's spec_server (cargo build --release -p ws-rpc --example spec_server)"
    (cd "$root" && cargo build --release -p ws-rpc --example spec_server >&2) ||
      { fail "rpc/setup: cargo build --release -p ws-rpc --example spec_server failed"; return 1; }
    WS_RPC_SPEC_SERVER="$CARGO_TARGET_DIR/release/examples/spec_server"
  fi
  [ -x "$WS_RPC_SPEC_SERVER" ] ||
    { fail "rpc/setup: $WS_RPC_SPEC_SERVER is not an executable"; return 1; }
  export WS_RPC_SPEC_SERVER
}

# rpc/: jsonrpsee (from crates.io) and ws-rpc, in a target dir of its own.
setup_rpc_jsonrpsee() {
  log "building tests/interop/rpc (cargo build --release --manifest-path tests/interop/rpc/Cargo.toml, CARGO_TARGET_DIR=$rpc_target)"
  (cd "$root" && CARGO_TARGET_DIR="$rpc_target" timeout "$build_limit" \
    cargo build --release --manifest-path tests/interop/rpc/Cargo.toml >&2) ||
    { fail "rpc/setup: cargo build --release --manifest-path tests/interop/rpc/Cargo.toml failed"; return 1; }
}

setup_rpc_websockets() {
  command -v node >/dev/null || { fail "rpc/setup: node not found"; return 1; }
  npm_package rpc "$rpc_websockets_dir" rpc-websockets 10
}

# ---- running a suite -----------------------------------------------------------
# run_suite NAME CMD...: stream its ok/FAIL lines; a crash or a run over the
# limit becomes a FAIL line of its own.
run_suite() {
  local name="$1" out status before after
  shift
  out="$(mktemp "${TMPDIR:-/tmp}/ws-interop-${name//\//-}.XXXXXX")"
  before="$(grep -c '' "$results")"
  timeout -k 5 "$suite_limit" "$@" | tee "$out"
  status=${PIPESTATUS[0]}
  grep -E '^(ok|FAIL) ' "$out" >>"$results"
  after="$(grep -c '' "$results")"
  if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    fail "$name/suite: killed after ${suite_limit} s"
  elif [ "$status" -ne 0 ] && ! grep -q '^FAIL ' "$out"; then
    fail "$name/suite: exited with status $status without reporting a failure"
  elif [ "$after" -eq "$before" ] && [ -z "${WS_INTEROP_FILTER:-}" ]; then
    fail "$name/suite: ran no tests"
  fi
  rm -f "$out"
}

if [ -n "$WS_BIN" ]; then
  if want python && setup_python; then
    log "python: $("$venv/bin/python" -c 'import websockets; print("websockets", websockets.__version__)')"
    run_suite py "$venv/bin/python" "$here/python_interop.py"
  fi
  if want node && setup_node; then
    export WS_INTEROP_NODE_DIR="$node_dir"
    run_suite node node "$here/node_interop.mjs"
  fi
  if want chromium && setup_chromium; then
    export WS_INTEROP_PLAYWRIGHT_DIR="$playwright_dir" WS_INTEROP_CHROMIUM="$chromium_bin"
    log "chromium: $("$chromium_bin" --version 2>/dev/null | head -n 1)"
    run_suite chromium node "$here/chromium_interop.mjs"
  fi
fi
if want rpc && setup_rpc_server; then
  if setup_rpc_jsonrpsee; then
    run_suite rpc/jsonrpsee "$rpc_target/release/ws-rpc-interop"
  fi
  if setup_rpc_websockets; then
    export WS_INTEROP_RPC_WEBSOCKETS_DIR="$rpc_websockets_dir"
    log "rpc: rpc-websockets $(node -p 'require(process.argv[1]).version' "$rpc_websockets_dir/node_modules/rpc-websockets/package.json" 2>/dev/null)"
    run_suite rpc/rpc-websockets node "$here/rpc_interop.mjs"
  fi
fi

passed="$(grep -c '^ok ' "$results")"
failed="$(grep -c '^FAIL ' "$results")"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
