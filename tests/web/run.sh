#!/usr/bin/env bash
# The web tests of `ws serve`: the browser client's tests under Node's test
# runner (tests/web/ws-rpc.test.mjs, against a real `ws serve` and a mock
# server) and the chat page's tests in a real headless Chromium
# (tests/web/chat_chromium.mjs: two tabs talking, presence, a server killed
# and restarted under the page, a wrong token, 50 pages in one room, a
# screenshot).
#
#   bash tests/web/run.sh            # both suites
#   bash tests/web/run.sh node       # only ws-rpc.test.mjs
#   bash tests/web/run.sh chromium   # only chat_chromium.mjs
#
# Builds `ws` (cargo build --release -p ws-cli) unless WS_BIN is set, and
# installs what is missing (idempotent): the npm packages ws@8 (for the
# Node tests) and playwright-core@1 (which only drives the browser: nothing
# is downloaded from Playwright's CDN), and Debian's `chromium` package with
# apt-get when /usr/bin/chromium is missing (as root). The same places as
# tests/interop/run.sh, so either script's installs serve both. A failed
# build or install is a FAIL line, never a skipped suite.
#
# Prints the Chromium suite's lines (`ok web/NAME` or `FAIL web/NAME:
# reason`), one line per failed Node test, then `N passed, M failed` (Node
# tests and Chromium tests together), and exits non-zero if anything failed.
# Progress and tool output go to stderr. Each suite is bounded (suite_limit
# below; the Node tests take about 5 s, the Chromium tests about a minute),
# uses only 127.0.0.1 with ports chosen at run time, and kills every process
# it started (the suites kill their `ws serve`s and the browser; `timeout`
# kills a suite that overruns, with its process group).
#
# The screenshots (the page with a conversation going, light, dark and
# narrow; and the page while reconnecting and when refused) are written to
# ${TMPDIR:-/tmp}/ws-chat*.png, or next to WS_WEB_SCREENSHOT.
#
# Environment:
#   WS_BIN                 use this `ws` binary instead of building one
#   CARGO_TARGET_DIR       where `ws` is built (default ~/.cache/ws-target)
#   WS_INTEROP_CACHE       node_modules (default ~/.cache/ws-interop: node/
#                          for ws, playwright/ for playwright-core)
#   WS_INTEROP_UPGRADE=1   reinstall the latest ws@8 / playwright-core@1
#   WS_WEB_SCREENSHOT      the screenshot's path (default ${TMPDIR:-/tmp}/ws-chat.png)
#   WS_WEB_TEST_TIMEOUT    per-test limit of the Chromium suite, s (default 90)
#   WS_WEB_FILTER          run only the Chromium tests whose name contains this
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ws-target}"
cache="${WS_INTEROP_CACHE:-$HOME/.cache/ws-interop}"
node_dir="$cache/node"
playwright_dir="$cache/playwright"
chromium_bin=/usr/bin/chromium
suite_limit=300 # seconds per suite; a backstop, every test has its own limit
install_limit=300
build_limit=1800
apt_limit=900 # apt-get update + install chromium, each

suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(node chromium)
for s in "${suites[@]}"; do
  case "$s" in
    node | chromium) ;;
    *) echo "usage: $0 [node] [chromium]" >&2; exit 2 ;;
  esac
done
want() { local s; for s in "${suites[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

log() { printf '# %s\n' "$*" >&2; }

started=$SECONDS
passed=0
failed=0
tmp="$(mktemp -d "${TMPDIR:-/tmp}/ws-web.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# A failure that is not a test's own line (setup, crash, suite timeout).
fail() { printf 'FAIL %s\n' "$1"; failed=$((failed + 1)); }

# ---- the ws binary -------------------------------------------------------------
if [ -n "${WS_BIN:-}" ]; then
  log "using WS_BIN=$WS_BIN"
else
  log "building ws (cargo build --release -p ws-cli, CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  if (cd "$root" && timeout "$build_limit" cargo build --release -p ws-cli >&2); then
    WS_BIN="$CARGO_TARGET_DIR/release/ws"
  else
    fail "web/build: cargo build --release -p ws-cli failed"
    WS_BIN=""
  fi
fi
if [ -n "$WS_BIN" ] && [ ! -x "$WS_BIN" ]; then
  fail "web/build: $WS_BIN is not an executable"
  WS_BIN=""
fi
export WS_BIN

# npm_package and chromium_with_playwright.
# shellcheck source=../setup.sh
source "$here/../setup.sh"

setup_node() {
  command -v node >/dev/null || { fail "web/node/setup: node not found"; return 1; }
  npm_package web/node "$node_dir" ws 8
}

setup_chromium() {
  chromium_with_playwright web/chromium
}

# ---- the client's tests under node --test ---------------------------------------
# TAP from the test runner: its `# pass N` / `# fail M` lines count, and each
# failing test (a `not ok` line) is named.
run_node_tests() {
  local out="$tmp/node.tap" status n_pass n_fail
  ( cd "$root" && timeout -k 5 "$suite_limit" node --test --test-reporter=tap tests/web/ws-rpc.test.mjs ) >"$out" 2>"$tmp/node.err"
  status=$?
  n_pass="$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$out" | tail -n 1)"
  n_fail="$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$out" | tail -n 1)"
  # The innermost `not ok` lines are the tests (a suite fails with its tests).
  grep -E '^ *not ok [0-9]+ - ' "$out" | sed -E 's/^ *not ok [0-9]+ - /FAIL web\/ws-rpc.test.mjs: /' | sort -u | head -n 20
  if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    fail "web/ws-rpc.test.mjs: killed after ${suite_limit} s"
  fi
  if [ -z "$n_pass" ] || [ -z "$n_fail" ]; then
    fail "web/ws-rpc.test.mjs: no summary from node --test (exit $status): $(tail -c 400 "$tmp/node.err" | tr '\n' ' ')"
    return
  fi
  log "node --test tests/web/ws-rpc.test.mjs: $n_pass passed, $n_fail failed"
  passed=$((passed + n_pass))
  failed=$((failed + n_fail))
  if [ "$status" -ne 0 ] && [ "$n_fail" -eq 0 ] && [ "$status" -ne 124 ] && [ "$status" -ne 137 ]; then
    fail "web/ws-rpc.test.mjs: exited with status $status without reporting a failure"
  fi
}

# ---- the chat page in Chromium ---------------------------------------------------------
run_chromium_tests() {
  local out="$tmp/chromium.out" status ok bad
  timeout -k 5 "$suite_limit" node "$here/chat_chromium.mjs" | tee "$out"
  status=${PIPESTATUS[0]}
  ok="$(grep -c '^ok ' "$out")"
  bad="$(grep -c '^FAIL ' "$out")"
  passed=$((passed + ok))
  failed=$((failed + bad))
  if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    fail "web/chromium: killed after ${suite_limit} s"
  elif [ "$status" -ne 0 ] && [ "$bad" -eq 0 ]; then
    fail "web/chromium: exited with status $status without reporting a failure"
  elif [ "$ok" -eq 0 ] && [ "$bad" -eq 0 ] && [ -z "${WS_WEB_FILTER:-}" ]; then
    fail "web/chromium: ran no tests"
  fi
}

if [ -n "$WS_BIN" ]; then
  if want node && setup_node; then
    export WS_INTEROP_NODE_DIR="$node_dir"
    run_node_tests
  fi
  if want chromium && setup_chromium; then
    export WS_WEB_PLAYWRIGHT_DIR="$playwright_dir" WS_WEB_CHROMIUM="$chromium_bin"
    log "chromium: $("$chromium_bin" --version 2>/dev/null | head -n 1)"
    run_chromium_tests
  fi
fi

log "web tests took $((SECONDS - started)) s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
