#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 20), starting from the
# checked-in seeds copied to a scratch corpus (the tree stays clean).
# Exits non-zero if any target crashes, and prints the crash artifact.
#
#   fuzz/run.sh 20
#   FUZZ_TARGETS="frame_decoder roundtrip" fuzz/run.sh 300
#
# Environment:
#   FUZZ_TARGETS      targets to run (default: all of them)
#   FUZZ_TARGET_DIR   cargo target dir (default: $HOME/.cache/ws-fuzz-target,
#                     outside the tree so CI can cache it)
#   FUZZ_SANITIZER    none (default; ws-proto's one unsafe function is
#                     checked by the targets' own assertions) or address
#   FUZZ_KEEP_CORPUS  a directory to copy each grown corpus into, per target
set -euo pipefail

secs="${1:-20}"
case "$secs" in
'' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

# cargo-fuzz needs nightly flags; this lets the stable toolchain take them.
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

all_targets="frame_decoder handshake_request handshake_response server_connection roundtrip deflate rpc_message timers"
read -r -a targets <<<"${FUZZ_TARGETS:-$all_targets}"
target_dir="${FUZZ_TARGET_DIR:-$HOME/.cache/ws-fuzz-target}"
sanitizer="${FUZZ_SANITIZER:-none}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "=== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

flags=(--sanitizer "$sanitizer" --target-dir "$target_dir")

echo "=== build ($(date -u +%H:%M:%S))"
start=$(date +%s)
cargo fuzz build "${flags[@]}"
echo "build took $(($(date +%s) - start)) s"

scratch="$(mktemp -d "${TMPDIR:-/tmp}/ws-fuzz.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

failed=()
summary=()
for t in "${targets[@]}"; do
    echo "=== $t for ${secs}s ($(date -u +%H:%M:%S))"
    corpus="$scratch/$t/corpus"
    log="$scratch/$t/log"
    mkdir -p "$corpus" "$here/artifacts/$t"
    cp "$here/corpus/$t"/seed-* "$corpus/"
    status=0
    cargo fuzz run "${flags[@]}" "$t" "$corpus" -- \
        -max_total_time="$secs" \
        -timeout=10 \
        -print_final_stats=1 \
        -artifact_prefix="$here/artifacts/$t/" \
        >"$log" 2>&1 || status=$?

    execs="$(sed -n 's/^stat::average_exec_per_sec:[[:space:]]*//p' "$log" | tail -n 1)"
    runs="$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*//p' "$log" | tail -n 1)"
    cov="$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 || true)"
    if [ -n "${FUZZ_KEEP_CORPUS:-}" ]; then
        mkdir -p "$FUZZ_KEEP_CORPUS/$t"
        cp "$corpus"/* "$FUZZ_KEEP_CORPUS/$t/"
    fi
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        echo "--- $t FAILED (exit $status); end of its log:"
        tail -n 60 "$log"
        artifact="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)"
        echo "--- crash artifact: ${artifact:-none written}"
        [ -n "$artifact" ] && echo "--- reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer $sanitizer $t $artifact"
        summary+=("$(printf '%-20s FAILED  %s' "$t" "${artifact:-}")")
    else
        summary+=("$(printf '%-20s ok      %10s execs/s %12s runs   %s' "$t" "${execs:-?}" "${runs:-?}" "${cov:-cov: ?}")")
    fi
done

echo
echo "=== summary (${secs}s per target)"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "crashed: ${failed[*]}" >&2
    exit 1
fi
