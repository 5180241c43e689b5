#!/usr/bin/env bash
# Interop tests: our `ws` binary against peers written elsewhere, Python's
# `websockets` and Node's `ws`, in both directions (their client against
# `ws echo`, their servers against `ws connect`).
#
#   bash tests/interop/run.sh            # everything
#   bash tests/interop/run.sh python     # one suite (python | node)
#
# Installs what it needs (idempotent), builds `ws`, prints one line per test
# (`ok NAME` or `FAIL NAME: reason`), ends with `N passed, M failed` and exits
# non-zero if anything failed. Progress and tool output go to stderr.
#
# Environment:
#   CARGO_TARGET_DIR         where `ws` is built (default ~/.cache/ws-target)
#   WS_BIN                   use this `ws` binary instead of building one
#   WS_INTEROP_CACHE         venv and node_modules (default ~/.cache/ws-interop)
#   WS_INTEROP_UPGRADE=1     reinstall the latest websockets / ws@8 anyway
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
python="${PYTHON:-python3}"
suite_limit=240 # seconds; a backstop, each test has its own timeout
install_limit=300

suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(python node)
for s in "${suites[@]}"; do
  case "$s" in
    python | node) ;;
    *) echo "usage: $0 [python] [node]" >&2; exit 2 ;;
  esac
done
want() { local s; for s in "${suites[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

log() { printf '# %s\n' "$*" >&2; }

results="$(mktemp "${TMPDIR:-/tmp}/ws-interop.XXXXXX")"
trap 'rm -f "$results"' EXIT

# A failure that is not a test's own line (setup, crash, suite timeout).
fail() { printf 'FAIL %s\n' "$1" | tee -a "$results"; }

# ---- the ws binary ---------------------------------------------------------
if [ -n "${WS_BIN:-}" ]; then
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

# ---- Node ws@8 ----------------------------------------------------------------
setup_node() {
  command -v node >/dev/null || { fail "node/setup: node not found"; return 1; }
  if [ "${WS_INTEROP_UPGRADE:-0}" != 1 ] &&
    node -e 'process.exit(require(process.argv[1]).version.startsWith("8.") ? 0 : 1)' \
      "$node_dir/node_modules/ws/package.json" 2>/dev/null; then
    return 0
  fi
  command -v npm >/dev/null || { fail "node/setup: npm not found"; return 1; }
  log "installing ws@8 from npm into $node_dir"
  mkdir -p "$node_dir"
  timeout "$install_limit" npm install --prefix "$node_dir" --no-audit --no-fund --loglevel=error ws@8 >&2 ||
    { fail "node/setup: npm install ws@8 failed"; return 1; }
}

# ---- running a suite -----------------------------------------------------------
# run_suite NAME CMD...: stream its ok/FAIL lines; a crash or a run over the
# limit becomes a FAIL line of its own.
run_suite() {
  local name="$1" out status before after
  shift
  out="$(mktemp "${TMPDIR:-/tmp}/ws-interop-$name.XXXXXX")"
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
fi

passed="$(grep -c '^ok ' "$results")"
failed="$(grep -c '^FAIL ' "$results")"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
