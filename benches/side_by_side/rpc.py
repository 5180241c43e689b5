#!/usr/bin/env python3
"""Side-by-side JSON-RPC benchmark: a ws-rpc server against a jsonrpsee 0.26
server, both single-threaded, the same `add` method and the same ticker,
driven by `ws bench` (which verifies every answer).

    python3 benches/side_by_side/rpc.py            # full run (~9 minutes)
    QUICK=1 python3 benches/side_by_side/rpc.py    # smoke run (~2 minutes)

Rules as in run.sh: each server pinned to core 0, the generator to core 1
(taskset), the servers in turns, each round starting with another server,
a fresh server per run; results are medians over the rounds, and
ws-rpc / jsonrpsee is the median of the per-round ratios.

Cells:
- calls: C connections x P calls in flight of `add [c, k]`: calls/s,
  server CPU per call, latency; and two floors, what no server can go
  above: floor-echo echoes 48-byte text messages, about an `add` call's
  size, with no JSON and no framework; floor-rpc (floor-echo with
  FLOOR_RPC=1) answers the same calls as the RPC servers doing only what
  any JSON-RPC server must (UTF-8 check, serde_json parse of the whole
  request, the answer written), in floor-echo's loop.
- fan-out: N connections subscribed to the ticker (100 items/s for
  1,000 subscribers, 10 items/s for 10,000: 100,000 deliveries a second
  either way): delivered items/s, server CPU per delivered item, delivery
  latency. ws-rpc as a room (one encoding per item) and as a subscription
  (one encoding per subscriber, jsonrpsee's shape); jsonrpsee as its
  subscription; and the floor (floor-fanout: one encoding, one `send` per
  subscriber, nothing else), what no server can go below.
- idle: 10,000 connected clients, each after one verified call: server
  RSS growth per client; ws-net's echo server (`ws echo`) as the
  baseline of an idle WebSocket connection.

Environment: QUICK=1, RUNS (rounds, default 4), DURATION (s, default 3),
WARMUP (s, default 1), IDLE_CONNS (default 10000), SERVER_CPUS (0),
GEN_CPUS (1), CARGO_TARGET_DIR, PEER_TARGET_DIR, NO_BUILD=1.
Results: Markdown on stdout and in results/rpc-STAMP.md with raw JSON
lines beside it.
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
QUICK = os.environ.get("QUICK") == "1"
RUNS = int(os.environ.get("RUNS", "1" if QUICK else "4"))
DURATION = float(os.environ.get("DURATION", "1" if QUICK else "3"))
WARMUP = float(os.environ.get("WARMUP", "0.5" if QUICK else "1"))
IDLE_CONNS = int(os.environ.get("IDLE_CONNS", "1000" if QUICK else "10000"))
SERVER_CPUS = os.environ.get("SERVER_CPUS", "0")
GEN_CPUS = os.environ.get("GEN_CPUS", "1")
WS_TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/ws-target"))
PEER_TARGET = os.environ.get("PEER_TARGET_DIR", os.path.expanduser("~/.cache/ws-target-bench"))
WS = os.path.join(WS_TARGET, "release", "ws")
PEERS = os.path.join(PEER_TARGET, "release")
TASKSET = shutil.which("taskset")

CALL_CELLS = [(1, 1), (64, 1), (512, 1), (1, 16), (64, 16), (512, 16)]
if QUICK:
    CALL_CELLS = [(1, 1), (64, 16)]
FANOUT = [(1000, 10_000), (10_000, 100_000)]  # (subscribers, tick period in µs)
if QUICK:
    FANOUT = [(1000, 10_000)]

SERVERS = {
    # name: (argv, subscribe method)
    "ws-rpc": ([os.path.join(PEERS, "ws-rpc-server"), "--listen"], "subscribe_ticks"),
    "ws-rpc-sub": ([os.path.join(PEERS, "ws-rpc-server"), "--listen"], "subscribe_each"),
    "jsonrpsee": ([os.path.join(PEERS, "jsonrpsee-rpc"), "--listen"], "subscribe_ticks"),
    "floor": ([os.path.join(PEERS, "floor-fanout"), "--listen"], "subscribe_ticks"),
    "ws-net": ([WS, "echo", "--threads", "1", "--listen"], None),
    "floor-echo": ([os.path.join(PEERS, "floor-echo"), "--listen"], None),
    "floor-rpc": ([os.path.join(PEERS, "floor-echo"), "--listen"], None),
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def pinned(cpus, argv):
    return ([TASKSET, "-c", cpus] if TASKSET else []) + argv


def build():
    if os.environ.get("NO_BUILD") == "1":
        return "not rebuilt (NO_BUILD=1)"
    t0 = time.time()
    env = dict(os.environ, CARGO_TARGET_DIR=WS_TARGET)
    subprocess.run(["cargo", "build", "--release", "-p", "ws-cli"], cwd=ROOT, env=env, check=True)
    t1 = time.time()
    env = dict(os.environ, CARGO_TARGET_DIR=PEER_TARGET)
    subprocess.run(["cargo", "build", "--release", "--bin", "ws-rpc-server", "--bin", "jsonrpsee-rpc",
                    "--bin", "floor-fanout", "--bin", "floor-echo"],
                   cwd=HERE, env=env, check=True)
    return f"ws-cli {t1 - t0:.0f} s, servers {time.time() - t1:.0f} s (incremental)"


class Server:
    """A server pinned to SERVER_CPUS, started fresh for one run."""

    def __init__(self, name, tick_us=None):
        argv, self.subscribe = SERVERS[name]
        env = dict(os.environ)
        if tick_us:
            env["RPC_TICK_US"] = str(tick_us)
        if name == "floor-rpc":
            env["FLOOR_RPC"] = "1"
        self.proc = subprocess.Popen(pinned(SERVER_CPUS, argv + ["127.0.0.1:0"]), env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        m = re.match(r"listening on (ws://\S+)", line)
        if not m:
            self.stop()
            raise RuntimeError(f"{name} printed {line!r}")
        self.url = m.group(1).rstrip("/") + "/"

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def bench(server, args):
    argv = pinned(GEN_CPUS, [WS, "bench", "--url", server.url, "--json",
                             "--server-pid", str(server.proc.pid)] + args)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"ws bench {' '.join(args)} failed: {r.stderr.strip()[-400:]}")
    return json.loads(r.stdout)


def rounds(names, run_one):
    """RUNS rounds, the servers in turns (each round starts one later)."""
    results = {n: [] for n in names}
    for r in range(RUNS):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            results[n].append(run_one(n))
    return results


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ratio_median(a, b, key):
    rs = [x[key] / y[key] for x, y in zip(a, b) if x.get(key) and y.get(key)]
    return (statistics.median(rs), min(rs), max(rs)) if rs else None


def fmt(x, digits=2):
    if x is None:
        return "—"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e4:
        return f"{x / 1e3:.1f}k"
    return f"{x:.{digits}f}"


def main():
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    started = time.time()
    note = build()
    raw = []
    out = []
    cpu = open("/proc/cpuinfo").read()
    model = re.search(r"model name\s*:\s*(.*)", cpu)
    out.append(f"# ws-rpc side-by-side benchmark, {stamp}\n")
    out.append(f"- machine: {model.group(1) if model else '?'}, {os.cpu_count()} CPUs, Linux {os.uname().release}")
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out.append(f"- ws at {head}; servers on CPU {SERVER_CPUS}, generator on CPU {GEN_CPUS} "
               f"({'taskset' if TASKSET else 'not pinned: no taskset'}); every server single-threaded")
    out.append(f"- {DURATION:g} s measured after {WARMUP:g} s warm-up, {RUNS} round(s), servers in turns, "
               f"fresh server per run; every answer verified; build: {note}")
    out.append("")

    # Calls.
    names = ["ws-rpc", "jsonrpsee", "floor-echo", "floor-rpc"]
    out.append("## Calls (`add`, every answer verified)\n")
    out.append("floor: floor-echo echoing 48-byte text messages under the same load "
               "(no JSON, no framework): the most any server can do. floor-rpc: the same "
               "loop answering the calls with only what JSON-RPC requires (UTF-8 check, "
               "serde_json parse, answer written): the most any JSON-RPC server can do "
               "with one write per read.\n")
    out.append("| C | P | ws-rpc calls/s | jsonrpsee calls/s | ws-rpc / jsonrpsee (rounds) | floor / jsonrpsee (rounds) | floor-rpc / jsonrpsee (rounds) | server CPU µs/call ws-rpc, jsonrpsee, floor, floor-rpc | ratio | p99 µs ws-rpc, jsonrpsee | generator CPU % (ws-rpc run) |")
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c, p in CALL_CELLS:
        def one(name):
            s = Server(name)
            try:
                log(f"calls C={c} P={p} {name}")
                load = ["-c", str(c), "-p", str(p), "-d", str(DURATION), "--warmup", str(WARMUP)]
                if name == "floor-echo":
                    r = bench(s, ["--text", "-s", "48"] + load)
                    r["calls_per_s"] = r.get("msgs_per_s")
                else:
                    r = bench(s, ["--rpc"] + load)
            finally:
                s.stop()
            r["server"] = name
            raw.append(r)
            return r
        res = rounds(names, one)
        a, b, f, g = res["ws-rpc"], res["jsonrpsee"], res["floor-echo"], res["floor-rpc"]
        fr = ratio_median(f, b, "calls_per_s")
        gr = ratio_median(g, b, "calls_per_s")
        cpu_f = median([x.get("server_cpu_us_per_op") for x in f])
        cpu_g = median([x.get("server_cpu_us_per_op") for x in g])
        rr = ratio_median(a, b, "calls_per_s")
        cpu_a = median([x.get("server_cpu_us_per_op") for x in a])
        cpu_b = median([x.get("server_cpu_us_per_op") for x in b])
        out.append(
            f"| {c} | {p} | {fmt(median([x['calls_per_s'] for x in a]))} | {fmt(median([x['calls_per_s'] for x in b]))} | "
            f"{rr[0]:.2f}× ({rr[1]:.2f}-{rr[2]:.2f}) | {fr[0]:.2f}× ({fr[1]:.2f}-{fr[2]:.2f}) | "
            f"{gr[0]:.2f}× ({gr[1]:.2f}-{gr[2]:.2f}) | "
            f"{fmt(cpu_a)}, {fmt(cpu_b)}, {fmt(cpu_f)}, {fmt(cpu_g)} | "
            f"{(cpu_a / cpu_b) if cpu_a and cpu_b else float('nan'):.2f}× | "
            f"{fmt(median([x.get('lat_p99_us') for x in a]), 0)}, {fmt(median([x.get('lat_p99_us') for x in b]), 0)} | "
            f"{fmt(max(x.get('gen_cpu_pct') or 0 for x in a), 0)} |")
    out.append("")

    # Fan-out.
    names = ["ws-rpc", "ws-rpc-sub", "jsonrpsee", "floor"]
    out.append("## Fan-out (one ticker to N subscribers, 100,000 deliveries a second)\n")
    out.append("| N | server | items/s delivered | missing | server CPU µs/item | / jsonrpsee (rounds) | p50 ms | p99 ms |")
    out.append("|---:|---|---:|---:|---:|---:|---:|---:|")
    for n, tick in FANOUT:
        def one(name):
            s = Server(name, tick)
            try:
                log(f"fan-out N={n} {name}")
                r = bench(s, ["--subscribe", "--subscribe-method", s.subscribe, "-c", str(n),
                              "-d", str(DURATION), "--warmup", str(max(WARMUP, 1.0))])
            finally:
                s.stop()
            r["server"] = name
            raw.append(r)
            return r
        res = rounds(names, one)
        base = res["jsonrpsee"]
        for name in names:
            a = res[name]
            rr = ratio_median(a, base, "server_cpu_us_per_op") if name != "jsonrpsee" else None
            out.append(
                f"| {n} | {name} | {fmt(median([x['items_per_s'] for x in a]))} | {median([x['lost'] for x in a]):.0f} | "
                f"{fmt(median([x.get('server_cpu_us_per_op') for x in a]))} | "
                f"{f'{rr[0]:.2f}× ({rr[1]:.2f}-{rr[2]:.2f})' if rr else '—'} | "
                f"{fmt((median([x.get('lat_p50_us') for x in a]) or 0) / 1000)} | {fmt((median([x.get('lat_p99_us') for x in a]) or 0) / 1000)} |")
    out.append("")

    # Idle clients.
    if IDLE_CONNS > 0:
        out.append(f"## Idle clients ({IDLE_CONNS}, server RSS growth per client)\n")
        out.append("| server | per client | over ws-net |")
        out.append("|---|---:|---:|")
        names = ["ws-rpc", "jsonrpsee", "ws-net"]

        def one(name):
            s = Server(name)
            try:
                log(f"idle {name}")
                args = ["--mode", "idle", "-c", str(IDLE_CONNS), "-d", str(DURATION)]
                if name != "ws-net":
                    args.append("--idle-rpc")
                r = bench(s, args)
            finally:
                s.stop()
            r["server"] = name
            raw.append(r)
            return r
        res = rounds(names, one)
        per = {n: median([x.get("server_bytes_per_conn") for x in res[n]]) for n in names}
        for name in names:
            over = (per[name] - per["ws-net"]) if per[name] is not None and per["ws-net"] is not None else None
            out.append(f"| {name} | {fmt(per[name] / 1024 if per[name] else None)} KiB | "
                       f"{'—' if name == 'ws-net' or over is None else f'{over / 1024:+.2f} KiB'} |")
        out.append("")
    out.append(f"Wall time {time.time() - started:.0f} s.")
    text = "\n".join(out)
    print(text)
    results = os.path.join(HERE, "results")
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, f"rpc-{stamp}.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(results, f"rpc-{stamp}.jsonl"), "w") as f:
        for r in raw:
            f.write(json.dumps(r) + "\n")
    log(f"report: {os.path.join(results, f'rpc-{stamp}.md')}")


if __name__ == "__main__":
    main()
