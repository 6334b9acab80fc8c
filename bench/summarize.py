#!/usr/bin/python3
"""Medians of bench/run.sh's results.jsonl -> Markdown tables and gnuplot data.

usage: summarize.py results.jsonl [--env env.txt] [--ref anchor.jsonl]
                    [--md table.md] [--plot plot.dat]

--ref is ../shared/tools/wsbench/runs/*/merged-with-run1.jsonl: uWS's
figures from the anchor run (another day, same machine type), shown beside
ours for reference only. Every ratio is taken within the same run.
Standard library only.
"""
import argparse
import json
import statistics
from collections import defaultdict

FOREIGN_MAX = 0.10
ECHO_ORDER = ["tcpecho", "uvws", "uvws_gc", "uvws_event", "uvws_lean", "uvws_deflate", "node_ws", "py_websockets"]
NAMES = {
    "tcpecho": "tcpecho", "uvws": "uvws", "uvws_event": "uvws on_message", "uvws_gc": "uvws, GC tuned", "uvws_lean": "uvws on_message, keep_request = false", "uvws_deflate": "uvws --deflate",
    "uvws_hs": "uvws (on_upgrade hook)", "node_ws": "node ws", "py_websockets": "py websockets",
}

ap = argparse.ArgumentParser()
ap.add_argument("raw")
ap.add_argument("--env")
ap.add_argument("--ref")
ap.add_argument("--md")
ap.add_argument("--plot")
args = ap.parse_args()


def load(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, nd=0, suffix=""):
    if v is None:
        return "-"
    return f"{v:,.{nd}f}{suffix}"


def size_name(s):
    return f"{s // 1024} KiB" if s >= 1024 else f"{s} B"


def cpu_per(r, key):
    """Server CPU microseconds per message (or handshake) of one run."""
    rate, cpu = r.get(key), r.get("server_cpu")
    if not rate or cpu is None or cpu < 0:
        return None
    return cpu / rate * 1e6


def group(rows, name_key):
    """(server, mode, conns, size, depth) -> runs; clean runs preferred."""
    g = defaultdict(list)
    for r in rows:
        if r.get("failed") or r.get("skipped"):
            continue
        mode = "echo" if r.get("mode") in ("echo", "tcp") else r.get("mode")
        g[(r.get(name_key) or r.get("label"), mode, r.get("conns"), r.get("size"), r.get("depth"))].append(r)
    out = {}
    for k, runs in g.items():
        clean = [r for r in runs if (r.get("foreign_cpu") or 0) <= FOREIGN_MAX]
        out[k] = {"runs": clean or runs, "dirty": not clean, "all": runs}
    return out


def stats(cell, rate_key="msgs_per_s"):
    runs = cell["runs"]
    cb = [(r.get("core_busy") or [None, None]) + [None, None] for r in runs]
    return {
        "rate": med([r.get(rate_key) for r in runs]),
        "mbps": med([r.get("MB_per_s") for r in runs]),
        "p50": med([r.get("p50_us") for r in runs]),
        "p99": med([r.get("p99_us") for r in runs]),
        "scpu": med([r.get("server_cpu") for r in runs]),
        "ccpu": med([r.get("client_cpu") for r in runs]),
        "core0": med([c[0] for c in cb]),
        "core1": med([c[1] for c in cb]),
        "us": med([cpu_per(r, rate_key) for r in runs]),
        "foreign": max([r.get("foreign_cpu") or 0 for r in runs] or [0]),
        "n": len(runs),
        "dirty": cell["dirty"],
        "errors": sum(r.get("errors") or 0 for r in runs),
        "rss": med([r.get("rss_per_conn_bytes") for r in runs]),
        "rss_before": med([r.get("rss_before_kib") for r in runs]),
        "rss_after": med([r.get("rss_after_kib") for r in runs]),
        "open": med([r.get("open") for r in runs]),
    }


rows = load(args.raw)
G = group(rows, "server")
REF = group(load(args.ref), "label") if args.ref else {}
skipped = [r for r in rows if r.get("skipped")]

echo_keys = sorted({k[2:] for k in G if k[1] == "echo"}, key=lambda c: (c[2], c[0], c[1]))
servers = [s for s in ECHO_ORDER if any(k[0] == s and k[1] == "echo" for k in G)]


def S(server, mode, cfg, rate_key="msgs_per_s"):
    cell = G.get((server, mode) + tuple(cfg))
    return stats(cell, rate_key) if cell else None


def ref(mode, cfg, rate_key="msgs_per_s"):
    cell = REF.get(("uws", mode) + tuple(cfg))
    return stats(cell, rate_key) if cell else None


def ratio(a, b):
    return a / b if a and b else None


out = []
w = out.append
if args.env:
    w("```")
    w(open(args.env).read().rstrip())
    w("```")
    w("")

# --- summary: uvws against the same-run peers ---------------------------------------
w("### Echo, uvws (`examples/echo_server.lua`, Lua handler) — medians, same run\n")
def ref_t(mode, cfg):
    cell = REF.get(("tcpecho", "echo") + tuple(cfg))
    return stats(cell) if cell else None


w("| conns | size | depth | msgs/s | MB/s | server CPU | µs CPU/msg | CPU/msg ÷ tcpecho's | msgs/s × tcpecho | msgs/s × node ws | node ws µs/msg | py µs/msg | tcpecho µs/msg | uWS µs/msg (anchor) | uWS CPU/msg ÷ tcpecho's (anchor) | foreign max |")
w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for c in echo_keys:
    u, t, n, p, rf, rt = (S("uvws", "echo", c), S("tcpecho", "echo", c), S("node_ws", "echo", c),
                          S("py_websockets", "echo", c), ref("echo", c), ref_t("echo", c))
    if not u:
        continue
    w(f"| {c[0]} | {size_name(c[1])} | {c[2]} | {fmt(u['rate'])}{' †' if u['dirty'] else ''} | {fmt(u['mbps'], 1)} | "
      f"{fmt(u['scpu'], 2)} | **{fmt(u['us'], 2)}** | {fmt(ratio(u['us'], t and t['us']), 2)} | "
      f"{fmt(ratio(u['rate'], t and t['rate']), 2)} | "
      f"{fmt(ratio(u['rate'], n and n['rate']), 2)} | {fmt(n and n['us'], 2)} | {fmt(p and p['us'], 2)} | "
      f"{fmt(t and t['us'], 2)} | {fmt(rf and rf['us'], 2)} | {fmt(ratio(rf and rf['us'], rt and rt['us']), 2)} | "
      f"{fmt(max(x['foreign'] for x in (u, t, n, p) if x), 2)} |")
w("")
w("µs CPU/msg = server_cpu / msgs_per_s × 10⁶ (user+system time of the server process; "
  "loopback softirq work is not included). \"÷ tcpecho's\" divides by tcpecho's CPU per message "
  "in the same run: the libuv floor for the same bytes, which other jobs on the machine inflate "
  "about as much as uvws. msgs/s × tcpecho and × node ws are throughput ratios within "
  "the same run. uWS figures come from the wsbench anchor run (RESULTS.md, quiet machine), not "
  "from this run. † = every run of the cell had foreign_cpu > 0.10 (other jobs on the machine).")
w("")

# --- full echo table --------------------------------------------------------------
w("### Echo, every server (medians)\n")
w("| conns | size | depth | server | msgs/s | MB/s | p50 µs | p99 µs | server CPU | client core | µs CPU/msg | × tcpecho | × node ws | runs used | foreign max |")
w("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for c in echo_keys:
    t, n = S("tcpecho", "echo", c), S("node_ws", "echo", c)
    for s in servers:
        x = S(s, "echo", c)
        if not x:
            continue
        w(f"| {c[0]} | {size_name(c[1])} | {c[2]} | {NAMES[s]} | {fmt(x['rate'])}{' †' if x['dirty'] else ''} | "
          f"{fmt(x['mbps'], 1)} | {fmt(x['p50'])} | {fmt(x['p99'])} | {fmt(x['scpu'], 2)} | {fmt(x['core1'], 2)} | "
          f"{fmt(x['us'], 2)} | {fmt(ratio(x['rate'], t and t['rate']), 2)} | {fmt(ratio(x['rate'], n and n['rate']), 2)} | "
          f"{x['n']} | {fmt(x['foreign'], 2)}{' (errors %d)' % x['errors'] if x['errors'] else ''} |")
w("")
w("client core = busy fraction of wsbench's core (softirq included): near 1.00 the load "
  "generator co-limits the run, so msgs/s is a lower bound for the server; µs CPU/msg stays honest. "
  "runs used = the repetitions with foreign_cpu ≤ 0.10 (all of them when none was that quiet, marked †); "
  "foreign max = the most CPU other processes used during a run that was used.")
w("")

# --- handshakes -----------------------------------------------------------------
hs = sorted({k for k in G if k[1] == "handshake"}, key=lambda k: list(NAMES).index(k[0]) if k[0] in NAMES else 99)
if hs:
    w("### Handshakes (32 workers: connect, upgrade, Close, close), medians\n")
    w("| server | handshakes/s | p50 µs | p99 µs | server CPU | client core | µs CPU/handshake | × node ws | runs used | foreign max |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    nref = next((stats(G[k], "handshakes_per_s") for k in hs if k[0] == "node_ws"), None)
    for k in hs:
        x = stats(G[k], "handshakes_per_s")
        w(f"| {NAMES.get(k[0], k[0])} | {fmt(x['rate'])}{' †' if x['dirty'] else ''} | {fmt(x['p50'])} | {fmt(x['p99'])} | "
          f"{fmt(x['scpu'], 2)} | {fmt(x['core1'], 2)} | **{fmt(x['us'], 1)}** | {fmt(ratio(x['rate'], nref and nref['rate']), 2)} | "
          f"{x['n']} | {fmt(x['foreign'], 2)} |")
    rk = next((k for k in REF if k[0] == "uws" and k[1] == "handshake"), None)
    if rk:
        x = stats(REF[rk], "handshakes_per_s")
        w(f"| uWS (anchor run, RESULTS.md) | {fmt(x['rate'])} | {fmt(x['p50'])} | {fmt(x['p99'])} | {fmt(x['scpu'], 2)} | "
          f"{fmt(x['core1'], 2)} | {fmt(x['us'], 1)} | | {x['n']} | |")
    w("")

# --- idle -----------------------------------------------------------------------
idle = sorted({k for k in G if k[1] == "idle"}, key=lambda k: list(NAMES).index(k[0]) if k[0] in NAMES else 99)
if idle:
    w("### Idle connections: user-space RSS per connection, medians\n")
    w("| server | conns | open | RSS before KiB | RSS after KiB | bytes / connection | runs |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    for k in idle:
        x = stats(G[k])
        w(f"| {NAMES.get(k[0], k[0])} | {k[2]} | {fmt(x['open'])} | {fmt(x['rss_before'])} | {fmt(x['rss_after'])} | "
          f"**{fmt(x['rss'])}** | {x['n']} |")
    rk = next((k for k in REF if k[0] == "uws" and k[1] == "idle"), None)
    if rk:
        x = stats(REF[rk])
        w(f"| uWS (anchor run, RESULTS.md) | {rk[2]} | {fmt(x['open'])} | {fmt(x['rss_before'])} | {fmt(x['rss_after'])} | "
          f"{fmt(x['rss'])} | {x['n']} |")
    w("")

for r in skipped:
    w(f"*{NAMES.get(r.get('server'), r.get('server'))}: skipped — {r['skipped']}"
      f"{' (the TLS server itself started)' if r.get('server_started') else ''}.*")
    w("")

text = "\n".join(out) + "\n"
if args.md:
    with open(args.md, "w") as f:
        f.write(text)
else:
    print(text, end="")

# --- gnuplot data: one line per echo configuration ----------------------------------
if args.plot:
    rate_series = ["tcpecho", "uvws", "uvws_deflate", "node_ws", "py_websockets"]
    us_series = ["tcpecho", "uvws", "uvws_deflate", "node_ws", "py_websockets"]
    with open(args.plot, "w") as f:
        f.write("# label " + " ".join(f"rate_{s}" for s in rate_series) + " "
                + " ".join(f"us_{s}" for s in us_series) + " us_uws_anchor\n")
        for c in echo_keys:
            label = f"{c[0]}x{size_name(c[1]).replace(' ', '')}" + (f"xd{c[2]}" if c[2] != 1 else "")
            vals = []
            for s in rate_series:
                x = S(s, "echo", c)
                vals.append(f"{x['rate']:.1f}" if x and x["rate"] else "?")
            for s in us_series:
                x = S(s, "echo", c)
                vals.append(f"{x['us']:.4f}" if x and x["us"] else "?")
            rf = ref("echo", c)
            vals.append(f"{rf['us']:.4f}" if rf and rf["us"] else "?")
            f.write(f'"{label}" ' + " ".join(vals) + "\n")
