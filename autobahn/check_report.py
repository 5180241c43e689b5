#!/usr/bin/env python3
"""Check an Autobahn|Testsuite report directory and fail on any non-OK case.

Usage:
    check_report.py REPORT_DIR [--spec SPEC.json | --expected N] [--agent NAME]
                    [--markdown FILE] [--title TEXT] [--python PY2]

REPORT_DIR is a wstest `outdir` (contains index.json plus one JSON file per
case). A case fails when

  * its `behavior` is not OK or INFORMATIONAL (i.e. FAILED, NON-STRICT,
    UNIMPLEMENTED, ...), or
  * its `behaviorClose` is not OK or INFORMATIONAL, or
  * our side closed the TCP connection without a closing handshake
    (RFC 6455 7.1.7: always send a Close frame before closing TCP).
    wstest reports are written from wstest's point of view, so that is:
    the WebSocket connection had been opened, `droppedByMe` is false (wstest
    did not close TCP, so we did) and `wasClean` is false (no complete
    close-frame exchange); wstest then sets `wasNotCleanReason` to
    "peer dropped the TCP connection without previous WebSocket closing
    handshake". Also counted: `wasCloseHandshakeTimeout` (we never answered
    wstest's Close frame, so wstest had to drop the connection).

The run also fails when fewer cases ran than expected. The expected case list
is computed from the spec's cases / exclude-cases / exclude-agent-cases with
wstest's own case registry and pattern matching (run with the venv's Python
2.7), or given as a number with --expected.

Prints a per-section table; --markdown writes the same table as Markdown
(for autobahn/README.md, section "Last run").

Exit status: 0 all good, 1 failures, 2 usage / missing input.
"""
import argparse
import collections
import datetime
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

OK_BEHAVIOR = {"OK", "INFORMATIONAL"}
OK_CLOSE = {"OK", "INFORMATIONAL"}
BEHAVIOR_COLUMNS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
PEER_DROPPED = "peer dropped the TCP connection without previous WebSocket closing handshake"

# Section names of autobahntestsuite 25.10.1 (case.CaseCategories); only
# used when the venv is not available to ask wstest itself.
SECTION_NAMES = {
    "1": "Framing",
    "2": "Pings/Pongs",
    "3": "Reserved Bits",
    "4": "Opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 Handling",
    "7": "Close Handling",
    "9": "Limits/Performance",
    "10": "Misc",
    "12": "WebSocket Compression (different payloads)",
    "13": "WebSocket Compression (different parameters)",
}

# Runs under the wstest venv's Python 2.7: resolve the spec's case patterns
# exactly like wstest does.
PY2_CASES = r"""
import json, sys
from autobahntestsuite.case import Cases, CaseSetname, CaseBasename, CaseCategories, CaseSubCategories
from autobahntestsuite.caseset import CaseSet
cs = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)
spec = json.load(open(sys.argv[1]))
spec.setdefault("cases", ["*"])
ids = cs.parseSpecCases(spec)
excl = cs.parseExcludeAgentCases(spec)
out = {"all": len(Cases), "categories": CaseCategories, "agents": {}}
for agent in sys.argv[2:]:
    out["agents"][agent] = [i for i in ids if not cs.checkAgentCaseExclude(excl, agent, i)]
sys.stdout.write(json.dumps(out))
"""


def die(msg):
    print("check_report: error: %s" % msg, file=sys.stderr)
    sys.exit(2)


def case_key(case_id):
    return tuple(int(x) for x in case_id.split("."))


def default_python2():
    venv = os.environ.get("WS_AUTOBAHN_VENV", os.path.join(HERE, ".venv"))
    return os.path.join(venv, "bin", "python")


def expected_from_spec(spec, agents, python2):
    if not os.path.isfile(spec):
        die("spec file not found: %s" % spec)
    if not os.access(python2, os.X_OK):
        die("cannot compute the expected cases: %s not found (run autobahn/install.sh, "
            "pass --python, or give --expected N)" % python2)
    try:
        out = subprocess.run([python2, "-c", PY2_CASES, spec] + list(agents),
                             check=True, capture_output=True, text=True, timeout=120).stdout
    except subprocess.CalledProcessError as e:
        die("resolving the cases of %s failed:\n%s" % (spec, e.stderr))
    except subprocess.TimeoutExpired:
        die("resolving the cases of %s timed out" % spec)
    return json.loads(out)


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def analyse_case(report_dir, case_id, summary):
    """Return (details dict, list of problems) for one case."""
    problems = []
    behavior = summary.get("behavior")
    behavior_close = summary.get("behaviorClose")
    if behavior not in OK_BEHAVIOR:
        problems.append("behavior %s" % behavior)
    if behavior_close not in OK_CLOSE:
        problems.append("behaviorClose %s" % behavior_close)

    detail = {}
    reportfile = summary.get("reportfile")
    path = os.path.join(report_dir, reportfile) if reportfile else None
    if not path or not os.path.isfile(path):
        problems.append("case report file missing (%s)" % reportfile)
        return detail, problems, False
    detail = load_json(path)

    opened = str(detail.get("httpResponse") or "").startswith("HTTP/1.1 101")
    dropped = False
    if opened and detail.get("droppedByMe") is False and detail.get("wasClean") is False:
        dropped = True
        reason = detail.get("wasNotCleanReason")
        problems.append("we closed TCP without a closing handshake (droppedByMe=false, wasClean=false%s)"
                        % ("" if reason == PEER_DROPPED else ", wasNotCleanReason=%r" % reason))
    elif detail.get("wasNotCleanReason") == PEER_DROPPED:  # belt and braces
        dropped = True
        problems.append("we closed TCP without a closing handshake (wasNotCleanReason=%r)"
                        % PEER_DROPPED)
    if detail.get("wasCloseHandshakeTimeout"):
        dropped = True
        problems.append("we never answered wstest's Close frame (wasCloseHandshakeTimeout=true)")
    return detail, problems, dropped


def fmt_ms(ms):
    return "%.1f s" % (ms / 1000.0) if ms >= 1000 else "%d ms" % ms


def build_rows(results, names):
    sections = collections.OrderedDict()
    for case_id in sorted(results, key=case_key):
        sec = case_id.split(".")[0]
        r = results[case_id]
        s = sections.setdefault(sec, collections.Counter())
        s["cases"] += 1
        s["b:" + str(r["behavior"])] += 1
        if r["behaviorClose"] not in OK_CLOSE:
            s["close_bad"] += 1
        if r["dropped"]:
            s["dropped"] += 1
        if r["problems"]:
            s["failed_cases"] += 1
        s["ms"] += r["duration"] or 0
    rows = []
    total = collections.Counter()
    for sec, s in sections.items():
        total.update(s)
        rows.append((sec, names.get(sec, "?"), s))
    return rows, total


def row_cells(sec, name, s):
    other = s["cases"] - sum(s["b:" + b] for b in BEHAVIOR_COLUMNS)
    cells = [sec, name, str(s["cases"])]
    cells += [str(s["b:" + b]) for b in BEHAVIOR_COLUMNS]
    cells += [str(other), str(s["close_bad"]), str(s["dropped"]), fmt_ms(s["ms"]),
              "pass" if s["failed_cases"] == 0 else "FAIL (%d)" % s["failed_cases"]]
    return cells


HEADER = ["Section", "Name", "Cases"] + BEHAVIOR_COLUMNS + \
    ["Other", "Close not OK", "No close frame", "Time", "Result"]


def text_table(rows, total):
    lines = [HEADER] + [row_cells(*r) for r in rows] + [row_cells("all", "", total)]
    widths = [max(len(l[i]) for l in lines) for i in range(len(HEADER))]
    out = []
    for n, l in enumerate(lines):
        out.append("  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i])
                             for i, c in enumerate(l)))
        if n == 0 or n == len(lines) - 2:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def md_table(rows, total):
    out = ["| " + " | ".join(HEADER) + " |",
           "|" + "|".join(["---", "---"] + ["---:"] * (len(HEADER) - 3) + [":---"]) + "|"]
    for r in rows:
        out.append("| " + " | ".join(row_cells(*r)) + " |")
    cells = ["**%s**" % c if c else c for c in row_cells("all", "", total)]
    out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("report_dir")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--spec", help="wstest spec file; expected cases are computed from it")
    g.add_argument("--expected", type=int, help="expected number of cases per agent")
    ap.add_argument("--agent", action="append",
                    help="agent(s) to check (default: every agent in index.json)")
    ap.add_argument("--markdown", metavar="FILE", help="write a Markdown summary here ('-' = stdout)")
    ap.add_argument("--title", default=None, help="heading for the Markdown summary")
    ap.add_argument("--python", default=default_python2(),
                    help="Python 2.7 with autobahntestsuite (default: the autobahn venv)")
    ap.add_argument("--max-list", type=int, default=50, help="list at most this many failing cases")
    args = ap.parse_args()

    index_path = os.path.join(args.report_dir, "index.json")
    if not os.path.isfile(index_path):
        die("%s not found: wstest wrote no report (did the run crash?)" % index_path)
    index = load_json(index_path)
    agents = args.agent or sorted(index)
    if not agents:
        die("%s lists no agents: no case ran" % index_path)

    names = dict(SECTION_NAMES)
    expected = {}
    if args.spec:
        info = expected_from_spec(args.spec, agents, args.python)
        names.update({k: v for k, v in info["categories"].items()})
        expected = {a: info["agents"][a] for a in agents}
    elif args.expected is not None:
        expected = {a: args.expected for a in agents}

    md = []
    overall_ok = True
    for agent in agents:
        cases = index.get(agent)
        if cases is None:
            print("agent %r not in %s (agents there: %s)" % (agent, index_path, ", ".join(sorted(index))))
            overall_ok = False
            cases = {}
        results = {}
        suite = None
        for case_id, summary in cases.items():
            detail, problems, dropped = analyse_case(args.report_dir, case_id, summary)
            if suite is None:
                m = re.search(r"AutobahnTestSuite/([\w.]+)",
                              "%s %s" % (detail.get("httpRequest"), detail.get("httpResponse")))
                suite = m and m.group(1)
            results[case_id] = {
                "behavior": summary.get("behavior"),
                "behaviorClose": summary.get("behaviorClose"),
                "duration": summary.get("duration") or 0,
                "problems": problems,
                "dropped": dropped,
                "description": detail.get("description", ""),
            }

        rows, total = build_rows(results, names)
        failing = [(c, results[c]) for c in sorted(results, key=case_key) if results[c]["problems"]]

        count_problem = None
        exp = expected.get(agent)
        missing = []
        if isinstance(exp, list):
            missing = [c for c in exp if c not in results]
            extra = [c for c in results if c not in set(exp)]
            if missing:
                count_problem = "%d of %d expected cases ran; missing: %s" % (
                    len(exp) - len(missing), len(exp), " ".join(missing[:args.max_list])
                    + (" ..." if len(missing) > args.max_list else ""))
            if extra:
                print("note: %d case(s) in the report are not in the spec: %s"
                      % (len(extra), " ".join(sorted(extra, key=case_key))))
            exp_n = len(exp)
        elif isinstance(exp, int):
            exp_n = exp
            if len(results) < exp:
                count_problem = "only %d cases ran, expected %d" % (len(results), exp)
        else:
            exp_n = None

        ok = not failing and count_problem is None
        overall_ok = overall_ok and ok

        print()
        print("Autobahn report %s, agent %s: %d cases%s" % (
            args.report_dir, agent, len(results),
            "" if exp_n is None else " (expected %d)" % exp_n))
        print(text_table(rows, total))
        print()
        if failing:
            print("FAILED: %d case(s) not OK:" % len(failing))
            for c, r in failing[:args.max_list]:
                print("  %-8s %-14s %-14s %s" % (c, r["behavior"], r["behaviorClose"], "; ".join(r["problems"])))
            if len(failing) > args.max_list:
                print("  ... and %d more" % (len(failing) - args.max_list))
        if count_problem:
            print("FAILED: " + count_problem)
        if ok:
            print("PASS: all %d cases OK" % len(results))

        md.append("### %s (agent `%s`)" % (args.title or "Autobahn", agent) if len(agents) > 1 or args.title
                  else "### Agent `%s`" % agent)
        md.append("")
        md.append("%s: %d cases%s, %d not OK (wstest %s, %s)." % (
            "PASS" if ok else "FAIL", len(results),
            "" if exp_n is None else " of %d expected" % exp_n, len(failing),
            suite or "?", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")))
        md.append("")
        md.append(md_table(rows, total))
        if failing:
            md.append("")
            md.append("Failing cases: " + ", ".join(c for c, _ in failing[:args.max_list])
                      + (" ..." if len(failing) > args.max_list else ""))
        if count_problem:
            md.append("")
            md.append(count_problem)
        md.append("")

    if args.markdown:
        text = "\n".join(md)
        if args.markdown == "-":
            print()
            print(text)
        else:
            with open(args.markdown, "w", encoding="utf-8") as f:
                f.write(text)
            print("Markdown summary written to %s" % args.markdown)

    return 0 if overall_ok else 1


if __name__ == "__main__":
    sys.exit(main())
