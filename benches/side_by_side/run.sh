#!/usr/bin/env bash
# Side-by-side benchmark: `ws echo` against echo servers on tokio-tungstenite,
# fastwebsockets and tokio-websockets, all driven by `ws bench`.
#
#   bash benches/side_by_side/run.sh            # full matrix (~70 min)
#   QUICK=1 bash benches/side_by_side/run.sh    # smoke test (~3 min)
#
# Each server runs alone on a single-threaded runtime pinned to core 0; the
# load generator is pinned to core 1 (SERVER_CPUS, GEN_CPUS below). For every cell (message size S x
# connections C x messages in flight P) the servers take turns, RUNS rounds,
# each run on a freshly started server. `ws bench` verifies every echo, and reads
# the server's CPU time over the measured window from /proc/PID/stat and its
# own from /proc/self/stat. Then idle memory per connection and handshakes
# per second. Results: Markdown on stdout and in results/ (with raw JSON).
#
# Settings (environment):
#   QUICK=1           reduced matrix, 1 s cells, one run, 1000 idle connections
#   DURATION=5        measured seconds per run      WARMUP=1  warm-up seconds
#   RUNS=6            runs per cell and server (in turns); ws is compared
#                     with each peer run by run (ws's run against the peer's
#                     run of the same round), and the median ratio reported
#   SERVER_CPUS=0     CPUs (taskset list) the server is pinned to
#   GEN_CPUS=1        CPUs the load generator is pinned to; with more than
#   GEN_THREADS=      one, give it as many threads (the default) so it is
#                     not the limit: on a machine with 4+ cores,
#                     GEN_CPUS=1-3 leaves the servers as the bottleneck
#   SERVERS="ws tungstenite fastwebsockets tokio-websockets"
#                     (add ws-before, with WS_BEFORE_BIN=path/to/an/older/ws,
#                     to compare two builds of ws in one run: it is
#                     reported as a peer, ws / ws-before per round)
#   FLOOR=1           also run floor-echo in the echo cells (not in the idle
#                     and handshake tests): the least CPU per message an
#                     echo server can spend with these system calls
#   FLOOR_URING=auto  also run floor-uring-echo in the echo cells: the
#                     floor on io_uring (one io_uring_enter for all
#                     connections' receives and sends), which tells whether
#                     the floor's cost is the system calls or the TCP work.
#                     auto: with FLOOR=1, where io_uring works (Linux 6.1+,
#                     not disabled); 1: required; 0: not run
#   CELLS="16:1:1 1k:64:1 ..."  override the matrix (size:connections:pipeline)
#   IDLE_CONNS=10000  IDLE_HOLD=DURATION   (0 skips the idle test)
#   HS_CONNS=64       concurrent open/close loops   HS_DURATION=10
#                     (HS_DURATION=0 skips the handshake test)
#   HS_RUNS=5         handshake rounds, every server once per round (each
#                     run starts with the TIME_WAIT table drained, which
#                     takes up to a minute)
#   GEN_BOUND_PCT=90  generator CPU (% of its cores) from which a result is
#                     flagged as limited by the generator
#   CONTENDED_PCT=5   run-queue wait (% of the window the server or the
#                     generator was runnable but another process had its
#                     core) from which a result is flagged as disturbed
#   PORT=19400        first port tried; the next free one is used
#   CARGO_TARGET_DIR  for ws-cli (default ~/.cache/ws-target)
#   PEER_TARGET_DIR   for the peer servers (default ~/.cache/ws-target-bench)
#   NO_BUILD=1        use the binaries already built
#
# Needs: cargo, bash, awk, coreutils (timeout); taskset (util-linux) for
# pinning, without it everything runs unpinned and the report says so.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

QUICK="${QUICK:-0}"
if [[ "$QUICK" == 1 ]]; then
    DURATION="${DURATION:-1}"
    WARMUP="${WARMUP:-0.5}"
    RUNS="${RUNS:-1}"
    IDLE_CONNS="${IDLE_CONNS:-1000}"
    DEFAULT_CELLS="16:1:1 16:64:1 1k:64:1 64k:64:1 1m:1:1 16:64:16"
else
    DURATION="${DURATION:-5}"
    WARMUP="${WARMUP:-1}"
    RUNS="${RUNS:-6}"
    IDLE_CONNS="${IDLE_CONNS:-10000}"
    DEFAULT_CELLS=""
    for s in 16 1k 64k 1m; do
        for c in 1 64 512; do
            [[ "$s" == 1m && "$c" == 512 ]] && continue
            DEFAULT_CELLS+="$s:$c:1 "
        done
    done
    DEFAULT_CELLS+="16:64:16"
fi
CELLS="${CELLS:-$DEFAULT_CELLS}"
IDLE_HOLD="${IDLE_HOLD:-$DURATION}"
HS_CONNS="${HS_CONNS:-64}"
if [[ "$QUICK" == 1 ]]; then
    HS_DURATION="${HS_DURATION:-$DURATION}"
    HS_RUNS="${HS_RUNS:-1}"
else
    HS_DURATION="${HS_DURATION:-10}"
    HS_RUNS="${HS_RUNS:-5}"
fi
SERVER_CPUS="${SERVER_CPUS:-0}"
GEN_CPUS="${GEN_CPUS:-1}"
GEN_BOUND_PCT="${GEN_BOUND_PCT:-90}"
CONTENDED_PCT="${CONTENDED_PCT:-5}"
SERVERS="${SERVERS:-ws tungstenite fastwebsockets tokio-websockets}"
FLOOR="${FLOOR:-1}"
ECHO_SERVERS="$SERVERS"
[[ "$FLOOR" == 1 ]] && ECHO_SERVERS+=" floor"
FLOOR_URING="${FLOOR_URING:-auto}"
[[ "$FLOOR_URING" == auto && "$FLOOR" != 1 ]] && FLOOR_URING=0
[[ "$FLOOR_URING" == 0 ]] || ECHO_SERVERS+=" floor-uring"
PORT="${PORT:-19400}"
WS_TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/ws-target}"
PEER_TARGET="${PEER_TARGET_DIR:-$HOME/.cache/ws-target-bench}"
WS_BIN="$WS_TARGET/release/ws"
PEER_BIN="$PEER_TARGET/release"

log() { printf '%s\n' "$*" >&2; }
die() { log "run.sh: $*"; exit 1; }

# --- build ------------------------------------------------------------------

# The source measured: the commit (and whether crates/ differed from it)
# when ws-cli is built, not when the report is written, which is long after.
WS_SOURCE="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- crates 2>/dev/null || echo ' + uncommitted changes')"
BUILD_NOTE="not rebuilt (NO_BUILD=1)"
if [[ "${NO_BUILD:-0}" != 1 ]]; then
    log "building ws-cli (release) in $ROOT"
    t0=$SECONDS
    (cd "$ROOT" && CARGO_TARGET_DIR="$WS_TARGET" cargo build --release -p ws-cli) ||
        die "building ws-cli failed"
    t1=$SECONDS
    log "building the peer servers (release) in $HERE"
    (cd "$HERE" && CARGO_TARGET_DIR="$PEER_TARGET" cargo build --release) ||
        die "building the peer servers failed"
    t2=$SECONDS
    BUILD_NOTE="ws-cli $((t1 - t0)) s, peers $((t2 - t1)) s (incremental)"
fi
[[ -x "$WS_BIN" ]] || die "$WS_BIN not found: build it or unset NO_BUILD"

server_cmd() {
    case "$1" in
        ws) echo "$WS_BIN echo --threads 1 --listen" ;;
        ws-before) echo "${WS_BEFORE_BIN:?ws-before needs WS_BEFORE_BIN} echo --threads 1 --listen" ;;
        tungstenite) echo "$PEER_BIN/tungstenite-echo --listen" ;;
        fastwebsockets) echo "$PEER_BIN/fastwebsockets-echo --listen" ;;
        tokio-websockets) echo "$PEER_BIN/tokio-websockets-echo --listen" ;;
        floor) echo "$PEER_BIN/floor-echo --listen" ;;
        floor-uring) echo "$PEER_BIN/floor-uring-echo --listen" ;;
        *) die "unknown server $1 (ws, ws-before, tungstenite, fastwebsockets, tokio-websockets; floor and floor-uring through FLOOR and FLOOR_URING)" ;;
    esac
}
for s in $ECHO_SERVERS; do
    bin="$(server_cmd "$s")"
    [[ -x "${bin%% *}" ]] || die "${bin%% *} not found"
done

# --- pinning, limits ----------------------------------------------------------

# How many CPUs a taskset list ("1", "1-3", "1,3-4") names.
count_cpus() {
    awk -v l="$1" 'BEGIN {
        n = split(l, part, ",")
        for (i = 1; i <= n; i++) {
            if (split(part[i], r, "-") == 2) c += r[2] - r[1] + 1; else c++
        }
        print c
    }'
}
GEN_NCPUS="$(count_cpus "$GEN_CPUS")"
GEN_THREADS="${GEN_THREADS:-$GEN_NCPUS}"
PIN_SERVER=()
PIN_BENCH=()
if command -v taskset >/dev/null && [[ "$(nproc --all 2>/dev/null || echo 1)" -ge 2 ]]; then
    taskset -c "$SERVER_CPUS" true 2>/dev/null || die "SERVER_CPUS=$SERVER_CPUS: no such CPUs"
    taskset -c "$GEN_CPUS" true 2>/dev/null || die "GEN_CPUS=$GEN_CPUS: no such CPUs"
    PIN_SERVER=(taskset -c "$SERVER_CPUS")
    PIN_BENCH=(taskset -c "$GEN_CPUS")
    PIN_NOTE="server on CPU $SERVER_CPUS, generator ($GEN_THREADS thread(s)) on CPU $GEN_CPUS (taskset)"
else
    GEN_NCPUS=1
    PIN_NOTE="UNPINNED: taskset missing or fewer than 2 cores; server and generator share CPUs"
    log "run.sh: warning: $PIN_NOTE"
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ "$IDLE_CONNS" -gt 0 && "$(ulimit -n)" != unlimited && "$(ulimit -n)" -lt $((IDLE_CONNS + 256)) ]]; then
    log "run.sh: warning: open-file limit $(ulimit -n) is below $((IDLE_CONNS + 256)); the idle test may fail (raise ulimit -Hn)"
fi

STAMP="$(date -u +%Y%m%d-%H%M%S)"
RESULTS="$HERE/results"
mkdir -p "$RESULTS"
RAW="$RESULTS/$STAMP.jsonl"
REPORT="$RESULTS/$STAMP.md"
WORK="$(mktemp -d)"
# Run copies of the binaries: the target directories are shared, and a
# rebuild during the run must not swap a binary between cells.
mkdir -p "$WORK/bin"
cp "$WS_BIN" "$WORK/bin/ws"
for s in $ECHO_SERVERS; do
    bin="$(server_cmd "$s")"
    bin="${bin%% *}"
    [[ "$bin" == "$WS_BIN" ]] || cp "$bin" "$WORK/bin/"
done
WS_BIN="$WORK/bin/ws"
PEER_BIN="$WORK/bin"
SERVER_PID=""
SERVER_URL=""
NEXT_PORT="$PORT"

cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Run the server command "$@" with its output in $WORK/server.log and wait
# (up to 5 s) until it says it listens: sets SERVER_PID and succeeds, or
# kills it and fails when it exits or stays silent.
launch() {
    : >"$WORK/server.log"
    "$@" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        grep -q '^listening on' "$WORK/server.log" && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    grep -q '^listening on' "$WORK/server.log" && return 0
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
    return 1
}

# Start server $1 on the next free port: sets SERVER_PID and SERVER_URL.
start_server() {
    local name="$1" cmd attempt port
    read -r -a cmd <<<"$(server_cmd "$name")"
    for attempt in $(seq 1 50); do
        port="$NEXT_PORT"
        NEXT_PORT=$((NEXT_PORT + 1))
        [[ "$NEXT_PORT" -ge $((PORT + 500)) ]] && NEXT_PORT="$PORT"
        if launch "${PIN_SERVER[@]}" "${cmd[@]}" "127.0.0.1:$port"; then
            SERVER_URL="ws://127.0.0.1:$port/"
            return 0
        fi
        grep -qi 'in use' "$WORK/server.log" || {
            cat "$WORK/server.log" >&2
            die "$name did not start"
        }
    done
    die "no free port from $PORT"
}

stop_server() {
    [[ -n "$SERVER_PID" ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    # ws echo gives open connections up to 11 s to close; none should be open.
    for _ in $(seq 1 150); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}

# Whether floor-uring-echo can run here: it sets up its ring before it
# says it listens, and exits where io_uring is missing or disabled.
if [[ "$FLOOR_URING" != 0 ]]; then
    read -r -a cmd <<<"$(server_cmd floor-uring)"
    if launch "${cmd[@]}" 127.0.0.1:0; then
        stop_server
        FLOOR_URING=1
    else
        sed 's/^/    /' "$WORK/server.log" >&2
        [[ "$FLOOR_URING" == 1 ]] && die "floor-uring-echo does not run here (FLOOR_URING=1)"
        log "run.sh: io_uring does not work here: floor-uring-echo left out"
        ECHO_SERVERS="${ECHO_SERVERS/ floor-uring/}"
        FLOOR_URING=0
    fi
fi

# A field of the flat JSON object `ws bench --json` prints.
jget() { sed -n "s/.*\"$2\":\\(\"[^\"]*\"\\|[^,}]*\\).*/\\1/p" <<<"$1" | tr -d '"'; }

# Run `ws bench` against the running server; prints its JSON line, or
# nothing (and the error on stderr) if it failed.
bench() {
    local limit
    limit=$(awk -v d="$DURATION" -v w="$WARMUP" 'BEGIN { printf "%d", d + w + 90 }')
    if timeout "$limit" "${PIN_BENCH[@]}" "$WS_BIN" bench --url "$SERVER_URL" --json \
        --threads "$GEN_THREADS" --server-pid "$SERVER_PID" "$@" >"$WORK/bench.out" 2>"$WORK/bench.err"; then
        tail -n 1 "$WORK/bench.out"
    else
        grep -v '^ws bench: [a-z]*, ' "$WORK/bench.err" | tail -n 3 >&2 || true
        # A failed idle run still reports what it measured.
        grep '^{' "$WORK/bench.out" | tail -n 1 || true
    fi
}

# Numbers for the table.
fmt_rate() { awk -v v="$1" 'BEGIN { if (v == "") print "—"; else if (v >= 1e6) printf "%.2fM", v / 1e6; else if (v >= 1e3) printf "%.1fk", v / 1e3; else printf "%.0f", v }'; }
fmt_num() { awk -v v="$1" 'BEGIN { if (v == "" || v == "null") print "?"; else if (v >= 100) printf "%.0f", v; else printf "%.2f", v }'; }
fmt_pct() { awk -v v="$1" 'BEGIN { if (v == "" || v == "null") print "?"; else printf "%.0f%%", v }'; }
mean() { awk '{ s += $1; n++ } END { if (n) printf "%.6g", s / n }'; }
# The median of the numbers on stdin (the mean of the middle two for an
# even count): one disturbed run does not move it.
median() { sort -g | awk '{ v[n++] = $1 } END { if (n) printf "%.6g", (n % 2) ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2 }'; }
max_of() { awk 'n == 0 || $1 > m { m = $1; n = 1 } END { if (n) print m }'; }

declare -A RATE CPU SYS GEN GSYS WAIT SPREAD FAILED RUN_RATE
ANY_FAIL=0
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
START_TIME=$SECONDS

# --- the matrix ----------------------------------------------------------------

n_cells=$(wc -w <<<"$CELLS")
n_servers=$(wc -w <<<"$ECHO_SERVERS")
step=0
# Per cell, the runs go round the servers (ws, A, B, C, then A, B, C, ws,
# ...) rather than one server's runs back to back, so a slow drift of the
# machine weighs on every server alike; each round starts one server later,
# so no server always runs first or right after the same one. Each run gets
# a fresh server.
declare -A RATES CPUS SYSS GENS GSYSS WAITS
for cell in $CELLS; do
    IFS=: read -r size conns pipe <<<"$cell"
    for run in $(seq 1 "$RUNS"); do
        read -r -a order <<<"$ECHO_SERVERS"
        shift_by=$(((run - 1) % ${#order[@]}))
        order=("${order[@]:shift_by}" "${order[@]:0:shift_by}")
        for server in "${order[@]}"; do
            step=$((step + 1))
            key="$cell|$server"
            start_server "$server"
            json="$(bench -s "$size" -c "$conns" -p "$pipe" -d "$DURATION" --warmup "$WARMUP")"
            stop_server
            if [[ -z "$json" || "$(jget "$json" ok)" != true ]]; then
                log "[$step/$((n_cells * n_servers * RUNS))] $server S=$size C=$conns P=$pipe run $run: FAILED"
                FAILED["$key"]=1
                ANY_FAIL=1
                continue
            fi
            printf '{"cell":"%s","server":"%s","run":%d,"result":%s}\n' \
                "$cell" "$server" "$run" "$json" >>"$RAW"
            r="$(jget "$json" msgs_per_s)"
            RUN_RATE["$key|$run"]="$r"
            RATES["$key"]+="$r"$'\n'
            CPUS["$key"]+="$(jget "$json" server_cpu_us_per_op)"$'\n'
            SYSS["$key"]+="$(jget "$json" server_sys_us_per_op)"$'\n'
            GENS["$key"]+="$(jget "$json" gen_cpu_pct)"$'\n'
            GSYSS["$key"]+="$(jget "$json" gen_sys_pct)"$'\n'
            WAITS["$key"]+="$(jget "$json" server_runq_wait_pct)"$'\n'"$(jget "$json" gen_runq_wait_pct)"$'\n'
            log "[$step/$((n_cells * n_servers * RUNS))] $server S=$size C=$conns P=$pipe run $run: $(fmt_rate "$r") msg/s, server $(fmt_num "$(jget "$json" server_cpu_us_per_op)") µs/msg ($(fmt_num "$(jget "$json" server_sys_us_per_op)") in the kernel), CPU server $(fmt_pct "$(jget "$json" server_cpu_pct)") generator $(fmt_pct "$(jget "$json" gen_cpu_pct)") ($(fmt_pct "$(jget "$json" gen_sys_pct)") in the kernel), waiting for a CPU: server $(fmt_pct "$(jget "$json" server_runq_wait_pct)") generator $(fmt_pct "$(jget "$json" gen_runq_wait_pct)")"
        done
    done
    for server in $ECHO_SERVERS; do
        key="$cell|$server"
        rates="${RATES[$key]:-}"
        [[ -n "$rates" ]] || continue
        RATE["$key"]="$(grep . <<<"$rates" | median)"
        CPU["$key"]="$(grep -v '^null$' <<<"${CPUS[$key]}" | grep . | median || true)"
        SYS["$key"]="$(grep -v '^null$' <<<"${SYSS[$key]}" | grep . | median || true)"
        GEN["$key"]="$(grep -v '^null$' <<<"${GENS[$key]}" | grep . | max_of || true)"
        GSYS["$key"]="$(grep -v '^null$' <<<"${GSYSS[$key]}" | grep . | mean || true)"
        WAIT["$key"]="$(grep -v '^null$' <<<"${WAITS[$key]}" | grep . | max_of || true)"
        SPREAD["$key"]="$(grep . <<<"$rates" | awk '{ v[n++] = $1; s += $1 } END { lo = v[0]; hi = v[0]; for (i in v) { if (v[i] < lo) lo = v[i]; if (v[i] > hi) hi = v[i] } if (s > 0) printf "%.1f", (hi - lo) / (s / n) * 100 }')"
    done
done

# --- idle memory ------------------------------------------------------------------

declare -A IDLE_OPEN IDLE_BEFORE IDLE_HELD IDLE_PER
if [[ "$IDLE_CONNS" -gt 0 ]]; then
    for server in $SERVERS; do
        start_server "$server"
        json="$(bench --mode idle -c "$IDLE_CONNS" -d "$IDLE_HOLD" -s 16)"
        stop_server
        if [[ -z "$json" ]]; then
            log "idle $server: FAILED"
            ANY_FAIL=1
            continue
        fi
        printf '{"cell":"idle","server":"%s","run":1,"result":%s}\n' "$server" "$json" >>"$RAW"
        IDLE_OPEN[$server]="$(jget "$json" open)"
        IDLE_BEFORE[$server]="$(jget "$json" server_rss_before_kb)"
        IDLE_HELD[$server]="$(jget "$json" server_rss_held_kb)"
        IDLE_PER[$server]="$(jget "$json" server_bytes_per_conn)"
        [[ "$(jget "$json" ok)" == true ]] || ANY_FAIL=1
        log "idle $server: ${IDLE_OPEN[$server]}/$IDLE_CONNS open, ${IDLE_PER[$server]} bytes per connection"
    done
fi

# --- handshakes -----------------------------------------------------------------------

# Sockets in TIME_WAIT from earlier connections make every connect() search
# longer for a free port (in the generator's kernel time), so a server
# measured after many handshakes would be measured with a slower generator.
# Start each handshake run with the TIME_WAIT table drained (it empties
# after 60 s), as every server gets the same conditions.
wait_time_wait() {
    local tw waited=0
    while :; do
        tw="$(awk '/^TCP:/ { for (i = 1; i < NF; i++) if ($i == "tw") print $(i + 1) }' /proc/net/sockstat 2>/dev/null || echo 0)"
        [[ -z "$tw" || "$tw" -lt 1000 || "$waited" -ge 70 ]] && break
        sleep 5
        waited=$((waited + 5))
    done
    [[ "$waited" -gt 0 ]] && log "waited ${waited} s for TIME_WAIT sockets to drain (${tw:-0} left)"
    return 0
}

# Like the echo cells, in rounds: every server once per round, each round
# starting one server later, a fresh server per run, so a drift of the
# machine over the minutes this takes weighs on every server alike.
declare -A HS_RATE HS_CPU HS_GEN HS_WAIT
if [[ "$HS_DURATION" != 0 ]]; then
    declare -A hs_rates hs_cpus hs_gens hs_waits
    for run in $(seq 1 "$HS_RUNS"); do
        read -r -a order <<<"$SERVERS"
        shift_by=$(((run - 1) % ${#order[@]}))
        order=("${order[@]:shift_by}" "${order[@]:0:shift_by}")
        for server in "${order[@]}"; do
            wait_time_wait
            start_server "$server"
            json="$(bench --mode handshake -c "$HS_CONNS" -d "$HS_DURATION" --warmup "$WARMUP")"
            stop_server
            if [[ -z "$json" || "$(jget "$json" ok)" != true ]]; then
                log "handshake $server run $run: FAILED"
                ANY_FAIL=1
                continue
            fi
            printf '{"cell":"handshake","server":"%s","run":%d,"result":%s}\n' "$server" "$run" "$json" >>"$RAW"
            RUN_RATE[handshake|$server|$run]="$(jget "$json" handshakes_per_s)"
            hs_rates[$server]+="$(jget "$json" handshakes_per_s)"$'\n'
            hs_cpus[$server]+="$(jget "$json" server_cpu_us_per_op)"$'\n'
            hs_gens[$server]+="$(jget "$json" gen_cpu_pct)"$'\n'
            hs_waits[$server]+="$(jget "$json" server_runq_wait_pct)"$'\n'"$(jget "$json" gen_runq_wait_pct)"$'\n'
            log "handshake $server run $run: $(fmt_rate "$(jget "$json" handshakes_per_s)")/s, server $(fmt_num "$(jget "$json" server_cpu_us_per_op)") µs/handshake, CPU server $(fmt_pct "$(jget "$json" server_cpu_pct)") generator $(fmt_pct "$(jget "$json" gen_cpu_pct)"), waiting for a CPU: server $(fmt_pct "$(jget "$json" server_runq_wait_pct)") generator $(fmt_pct "$(jget "$json" gen_runq_wait_pct)")"
        done
    done
    for server in $SERVERS; do
        rates="${hs_rates[$server]:-}"
        if [[ -n "$rates" ]]; then
            HS_RATE[$server]="$(grep . <<<"$rates" | median)"
            HS_CPU[$server]="$(grep -v '^null$' <<<"${hs_cpus[$server]}" | grep . | median || true)"
            HS_GEN[$server]="$(grep -v '^null$' <<<"${hs_gens[$server]}" | grep . | max_of || true)"
            HS_WAIT[$server]="$(grep -v '^null$' <<<"${hs_waits[$server]}" | grep . | max_of || true)"
        fi
    done
fi

# --- report ------------------------------------------------------------------------------

peer_versions() {
    local lock="$HERE/Cargo.lock"
    [[ -f "$lock" ]] || return 0
    for c in tokio-tungstenite fastwebsockets tokio-websockets tokio; do
        v="$(awk -v n="$c" '$0 == "name = \"" n "\"" { getline; gsub(/version = |"/, ""); print; exit }' "$lock")"
        printf '%s %s, ' "$c" "$v"
    done | sed 's/, $//'
}

# The generator's CPU is in % of one core, summed over its threads.
is_gen_bound() { awk -v g="${1:-0}" -v t="$GEN_BOUND_PCT" -v n="$GEN_NCPUS" 'BEGIN { exit !(g >= t * n) }'; }
is_contended() { awk -v w="${1:-0}" -v t="$CONTENDED_PCT" 'BEGIN { exit !(w >= t) }'; }
CONTENDED_CELLS=0

# User time from total and kernel time (empty if either is missing).
user_part() { awk -v t="$1" -v k="$2" 'BEGIN { if (t != "" && k != "") print t - k }'; }
# a / b.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a == "" || b == "" || b == 0) { print "—"; exit }
        printf "%.2f×", a / b
    }'
}
# ws against peer $2 in cell $1, round by round: ws's run r against the
# peer's run r (they ran one after the other, so a drift of the machine
# weighs on both), the median of those ratios, marked ≈ when ws is behind
# in the median but ahead in at least one round: the rounds disagree, so
# the gap is not a measured difference. $3: the rounds (default RUNS).
paired_ratio() {
    local run ratios
    ratios="$(for run in $(seq 1 "${3:-$RUNS}"); do
        echo "${RUN_RATE[$1|ws|$run]:-} ${RUN_RATE[$1|$2|$run]:-}"
    done | awk 'NF == 2 && $2 > 0 { printf "%.6g\n", $1 / $2 }')"
    [[ -n "$ratios" ]] || { echo "—"; return; }
    awk -v m="$(median <<<"$ratios")" -v hi="$(max_of <<<"$ratios")" 'BEGIN {
        printf "%.2f×", m
        if (m < 1 && hi >= 1) printf " ≈"
    }'
}

{
    echo "# ws side-by-side benchmark, $STAMP"
    echo
    echo "- machine: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //' || echo '?'), $(nproc --all 2>/dev/null || echo '?') CPUs, Linux $(uname -r)"
    echo "- ws at $WS_SOURCE; $(rustc --version 2>/dev/null || echo 'rustc ?'); peers: $(peer_versions)"
    echo "- $PIN_NOTE; every server single-threaded, TCP_NODELAY, backlog 1024"
    echo "- ${DURATION} s measured after ${WARMUP} s warm-up, $RUNS run(s) per cell and server, servers in turns, fresh server per run; binary messages; every echo verified; handshakes: $HS_RUNS round(s) of ${HS_DURATION} s runs, servers in turns"
    echo "- build: $BUILD_NOTE; load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?'); wall time $((SECONDS - START_TIME)) s"
    echo
    echo "## Echo throughput (msgs/s, median of runs)"
    echo
    header="| S | C | P |"
    rule="|---:|---:|---:|"
    for s in $ECHO_SERVERS; do
        header+=" $s |"
        rule+="---:|"
    done
    if [[ " $SERVERS " == *" ws "* ]]; then
        for s in $SERVERS; do
            [[ "$s" == ws ]] && continue
            header+=" ws / $s |"
            rule+="---:|"
        done
    fi
    header+=" server CPU µs/msg ($(tr ' ' '/' <<<"$ECHO_SERVERS")) | spread |"
    rule+="---|---:|"
    echo "$header"
    echo "$rule"
    for cell in $CELLS; do
        IFS=: read -r size conns pipe <<<"$cell"
        row="| $size | $conns | $pipe |"
        cpu_cells=""
        spread=0
        for s in $ECHO_SERVERS; do
            if [[ -n "${FAILED[$cell|$s]:-}" && -z "${RATE[$cell|$s]:-}" ]]; then
                row+=" FAIL |"
            else
                v="$(fmt_rate "${RATE[$cell|$s]:-}")"
                [[ -n "${FAILED[$cell|$s]:-}" ]] && v+=" (a run failed)"
                is_gen_bound "${GEN[$cell|$s]:-}" && v+=" †"
                if is_contended "${WAIT[$cell|$s]:-}"; then
                    v+=" ‡"
                    CONTENDED_CELLS=$((CONTENDED_CELLS + 1))
                fi
                row+=" $v |"
            fi
            c="${CPU[$cell|$s]:-}"
            cpu_cells+="$(awk -v c="$c" 'BEGIN { if (c == "") print "—"; else if (c >= 100) printf "%.0f", c; else printf "%.2f", c }') / "
            spread="$(awk -v a="$spread" -v b="${SPREAD[$cell|$s]:-0}" 'BEGIN { print (b > a ? b : a) }')"
        done
        if [[ " $SERVERS " == *" ws "* ]]; then
            for s in $SERVERS; do
                [[ "$s" == ws ]] && continue
                row+=" $(paired_ratio "$cell" "$s") |"
            done
        fi
        [[ "$RUNS" -gt 1 ]] && spread+="%" || spread="—"
        row+=" ${cpu_cells% / } | $spread |"
        echo "$row"
    done
    echo
    echo "S = message size, C = connections, P = messages in flight per connection."
    echo "ws / peer > 1 means ws echoed more messages per second. Server CPU is"
    echo "user + system time of the server process over the measured window"
    echo "divided by the messages echoed. † = the generator used ≥ ${GEN_BOUND_PCT}% of its"
    echo "$([[ "$GEN_NCPUS" -gt 1 ]] && echo "$GEN_NCPUS cores" || echo core) in a run: the number may be limited by the generator, not the"
    echo "server (compare server CPU per message instead). ‡ = the server or"
    echo "the generator spent ≥ ${CONTENDED_PCT}% of the window runnable but waiting for"
    echo "its core (another process was using it): throughput is disturbed,"
    echo "server CPU per message much less so. spread = largest difference"
    echo "between runs of one server, relative to their mean. ws / peer is the"
    echo "median, over the rounds, of ws's run divided by the peer's run of the"
    echo "same round. ≈ = ws is behind in that median but ahead in at least one"
    echo "round: the rounds disagree, so the gap is not a measured difference."
    if [[ "$FLOOR" == 1 ]]; then
        echo "floor = floor-echo, not a WebSocket library: the least an echo server"
        echo "that hands whole messages on can do with the sockets API (one read per"
        echo "readiness event, one send (writev for several frames) per read, each"
        echo "frame unmasked in place and echoed once whole, no checks, no allocation"
        echo "per message, no timers). Its CPU per message is what the kernel's TCP"
        echo "work for these system calls costs, plus little else."
    fi
    if [[ "$FLOOR_URING" == 1 ]]; then
        echo "floor-uring = floor-uring-echo: the floor's work on io_uring, one"
        echo "operation in flight per connection (a receive, then a send of every"
        echo "frame it completed) and one io_uring_enter per loop for the"
        echo "submissions and completions of all connections, so it makes next to"
        echo "no system calls per message when many connections are busy."
    fi
    if [[ " $SERVERS " == *" ws "* && " $SERVERS " == *" fastwebsockets "* ]]; then
        echo
        echo "## Server CPU per message: user space and kernel (µs, median of runs)"
        echo
        uring_head="" uring_rule=""
        if [[ "$FLOOR_URING" == 1 ]]; then
            uring_head=" floor-uring user | floor-uring kernel | floor-uring / fastwebsockets |"
            uring_rule="---:|---:|---:|"
        fi
        echo "| S | C | P | ws user | ws kernel | fastwebsockets user | fastwebsockets kernel | floor user | floor kernel |$uring_head ws / fastwebsockets | ws / floor | floor / fastwebsockets | generator CPU (kernel) with ws |"
        echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|$uring_rule---:|---:|---:|---:|"
        for cell in $CELLS; do
            IFS=: read -r size conns pipe <<<"$cell"
            wt="${CPU[$cell|ws]:-}" wk="${SYS[$cell|ws]:-}"
            ft="${CPU[$cell|fastwebsockets]:-}" fk="${SYS[$cell|fastwebsockets]:-}"
            lt="${CPU[$cell|floor]:-}" lk="${SYS[$cell|floor]:-}"
            bound="$(ratio "$lt" "$ft")"
            uring=""
            # ¶ holds when every floor run needs 0.8x fastwebsockets' CPU or more.
            least="$lt"
            if [[ "$FLOOR_URING" == 1 ]]; then
                ut="${CPU[$cell|floor-uring]:-}" uk="${SYS[$cell|floor-uring]:-}"
                uring=" $(fmt_num "$(user_part "$ut" "$uk")") | $(fmt_num "$uk") | $(ratio "$ut" "$ft") |"
                least="$(awk -v a="$lt" -v b="$ut" 'BEGIN { if (a == "" || b == "") print ""; else print (b < a ? b : a) }')"
            fi
            awk -v l="$least" -v t="$ft" 'BEGIN { exit !(l != "" && t > 0 && l / t >= 0.8) }' && bound+=" ¶"
            gen="$(fmt_pct "${GEN[$cell|ws]:-}") ($(fmt_pct "${GSYS[$cell|ws]:-}"))"
            echo "| $size | $conns | $pipe | $(fmt_num "$(user_part "$wt" "$wk")") | $(fmt_num "$wk") | $(fmt_num "$(user_part "$ft" "$fk")") | $(fmt_num "$fk") | $(fmt_num "$(user_part "$lt" "$lk")") | $(fmt_num "$lk") |$uring $(ratio "$wt" "$ft") | $(ratio "$wt" "$lt") | $bound | $gen |"
        done
        echo
        echo "From utime and stime in /proc/PID/stat (10 ms ticks). ¶ = the floor"
        echo "server's whole CPU time per message is at least 0.8× fastwebsockets':"
        echo "in that cell no echo server that makes these system calls can use"
        echo "0.8× fastwebsockets' CPU, whatever it does in user space; the kernel's"
        echo "TCP work (at one small message in flight, one receive and one send"
        echo "per message, for every server) sets the bound."
        if [[ "$FLOOR_URING" == 1 ]]; then
            echo "With floor-uring, ¶ needs both floors at 0.8× or more: neither"
            echo "fewer system calls (io_uring) nor less user space (the floor) gets"
            echo "below it."
        fi
        echo "Generator CPU: the most of its core it used in a ws run, and (in"
        echo "parentheses) its mean share spent in the kernel."
    fi
    if [[ "$IDLE_CONNS" -gt 0 ]]; then
        echo
        echo "## Idle connections ($IDLE_CONNS, held ${IDLE_HOLD} s)"
        echo
        echo "| server | open | server RSS before | holding | per connection |"
        echo "|---|---:|---:|---:|---:|"
        for s in $SERVERS; do
            per="${IDLE_PER[$s]:-}"
            per="$(awk -v p="$per" 'BEGIN { if (p == "" || p == "null") print "—"; else printf "%.1f KiB", p / 1024 }')"
            echo "| $s | ${IDLE_OPEN[$s]:-FAIL} | ${IDLE_BEFORE[$s]:-—} KiB | ${IDLE_HELD[$s]:-—} KiB | $per |"
        done
        echo
        echo "Per connection = (VmRSS holding − VmRSS before) / open connections, after one 16-byte echo each."
    fi
    if [[ "$HS_DURATION" != 0 ]]; then
        echo
        echo "## Handshakes ($HS_CONNS concurrent open/close loops, ${HS_DURATION} s)"
        echo
        echo "| server | handshakes/s | ws / server | server CPU µs/handshake | generator CPU |"
        echo "|---|---:|---:|---:|---:|"
        for s in $SERVERS; do
            g="${HS_GEN[$s]:-}"
            flag=""
            is_gen_bound "$g" && flag+=" †"
            is_contended "${HS_WAIT[$s]:-}" && flag+=" ‡"
            echo "| $s | $(fmt_rate "${HS_RATE[$s]:-}")$flag | $(paired_ratio handshake "$s" "$HS_RUNS") | $(awk -v c="${HS_CPU[$s]:-}" 'BEGIN { if (c == "") print "—"; else printf "%.1f", c }') | $(fmt_pct "$g") |"
        done
        echo
        echo "A handshake = TCP connect + opening handshake + closing handshake. Each run"
        echo "starts with no sockets left in TIME_WAIT (they slow the generator's connect)."
        echo "Servers take turns in $HS_RUNS round(s) as in the echo cells; ws / server is"
        echo "the median of the per-round ratios (≈ as there)."
    fi
    if [[ "$CONTENDED_CELLS" -gt 0 ]]; then
        echo
        echo "**The machine was busy**: $CONTENDED_CELLS echo results are marked ‡. Rerun on"
        echo "an otherwise idle machine for throughput numbers."
    fi
    if [[ "$ANY_FAIL" == 1 ]]; then
        echo
        echo "**Some runs failed** (a failed echo run means a verification error, a"
        echo "lost connection or a missing echo; see the log on stderr)."
    fi
    echo
    echo "Raw results: results/$STAMP.jsonl"
} | tee "$REPORT"

log "report: $REPORT"
exit "$ANY_FAIL"
