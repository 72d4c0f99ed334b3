#!/usr/bin/env python3
"""Side-by-side benchmark report (bench/compare.sh runs it; see bench/README.md).

    report.py RUNS.jsonl [--out DIR] [--no-plots]
        reads one JSON object per line (the `causalkv bench --json` lines, annotated by
        compare.sh, plus the "meta" and "memory" lines) and writes into DIR (default: the
        directory of RUNS.jsonl):
          results.csv     one row per run, flat columns
          summary.txt     the plain-text table printed on stdout: absolute numbers, ratios,
                          target checks (met / missed / n/a)
          throughput.png  grouped bars: x = mix, bars = system/shape (closed loop)
          latency.png     grouped bars of p50 and p99 (closed loop per mix, plus the open-loop put)
        The charts need matplotlib; without it (or with --no-plots) they are skipped with a note.

    report.py annotate --series S --system SYS --shape SH --variant V --cpus C [--key=value ...]
        used by compare.sh: reads one bench JSON line on stdin, checks it, adds the given fields,
        prints it on stdout (one line) and a one-line human summary on stderr. Exits 1 when the
        input is not one JSON object.

    report.py get RUNS.jsonl LABEL MIX FIELD
        prints one number from the runs (e.g. the ceiling's put throughput), or nothing.

Only the standard library is needed except for the charts.
"""

import csv
import json
import os
import sys

# Display order of the series (label without -open/-lag/-open-self suffix).
SERIES_ORDER = ["ckv-1x3", "ckv-2x3", "ceiling", "etcd"]
MIXES = ["put", "mixed", "read"]

TARGETS = {
    "put_vs_ceiling": 0.70,   # causalkv 3-replica PUT >= 70 % of the ceiling's PUT
    "get_vs_ceiling": 0.85,   # causalkv GET (read mix) >= 85 % of the ceiling's GET
    "p99_ms": 5.0,            # causalkv 1x3 p99 <= 5 ms at CONNS connections
    "vs_etcd_put": 10.0,      # causalkv PUT >= 10x etcd PUT
    "sharded_c32": 0.70,      # 2x3 PUT at one target node >= 70 % of 1x3's, CONNS connections
    "sharded_c1": 0.60,       # the same with one connection
    "lag_p99_ms": 50.0,       # replication lag p99 <= 50 ms
    "bytes_per_key": 300.0,   # memory per key (per replica, value included) <= 300 B
    "generators_agree": 0.20,  # a row where bench and wrk differ by more than this is flagged
}
GENERATORS = ["bench", "wrk"]
# Closed-loop variants: all targets at CONNS connections, one target node ("1t"), one connection
# to one target node ("c1"), and the lag-probe run.
CLOSED_VARIANTS = ["closed", "1t", "c1", "lag"]

CSV_COLUMNS = [
    "label", "series", "system", "shape", "variant", "generator", "cpus", "cpus_servers", "cpus_load",
    "api", "mode", "mix", "concurrency", "rate", "value_size", "keys", "seconds", "warmup",
    "ops", "errors", "throughput", "p50", "p99", "p999", "max", "mean",
    "put_ops", "put_errors", "put_throughput", "put_p50", "put_p99", "put_p999",
    "get_ops", "get_errors", "get_throughput", "get_p50", "get_p99", "get_p999",
    "lag_samples", "lag_p50", "lag_p99", "lag_max", "lag_timeouts",
    "status", "failed", "failure",
    "mem_keys", "bytes_per_key", "overhead_per_key", "bytes_per_key_nodes",
    "rss_before_kb", "rss_after_kb", "key_counts",
    "commit",
]


# ---------------------------------------------------------------- reading

def load_runs(path):
    runs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                print(f"report.py: {path}:{n}: not JSON ({e}); line skipped", file=sys.stderr)
                continue
            if not isinstance(obj, dict):
                print(f"report.py: {path}:{n}: not an object; line skipped", file=sys.stderr)
                continue
            runs.append(fill_defaults(obj))
    return runs


def fill_defaults(r):
    """Derive series/system/shape/variant from the label when compare.sh did not add them."""
    label = str(r.get("label", ""))
    if label in ("meta", "memory"):
        r.setdefault("kind", label)
        return r
    r.setdefault("kind", "run")
    r.setdefault("generator", "bench")
    variant = r.get("variant")
    series = r.get("series")
    if not series:
        series = label
        for suffix in ("-open-self", "-open", "-lag"):
            if label.endswith(suffix):
                series = label[: -len(suffix)]
                variant = variant or suffix[1:]
                break
        r["series"] = series
    if not variant:
        variant = "open" if r.get("mode") == "open" else ("lag" if r.get("lag_ms") else "closed")
    r["variant"] = variant
    if not r.get("system"):
        if series.startswith("ckv"):
            r["system"] = "causalkv"
        elif series.startswith("etcd") or r.get("api") == "etcd":
            r["system"] = "etcd"
        elif series.startswith("ceiling"):
            r["system"] = "ceiling"
        else:
            r["system"] = series
    if not r.get("shape"):
        if series.startswith("ckv-"):
            r["shape"] = series[4:]
        elif r["system"] == "etcd":
            r["shape"] = "3"
        else:
            r["shape"] = "1"
    return r


def num(x):
    if x is None or isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return float(x)
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def lat(r, key):
    return num((r.get("latency_ms") or {}).get(key))


def sub(r, part, key):
    return num((r.get(part) or {}).get(key))


def find(runs, series, variant, mix, generator="bench"):
    """The last successful run of series/variant/mix by `generator` (later lines override
    earlier ones)."""
    found = None
    for r in runs:
        if (r.get("kind") == "run" and r.get("series") == series and r.get("variant") == variant
                and r.get("mix") == mix and r.get("generator", "bench") == generator
                and not r.get("failed")):
            found = r
    return found


def overloaded(r, runs):
    """Why an open-loop run did not measure the server but a queue ("" when it did)."""
    rate = num(r.get("rate"))
    if not rate:
        return ""
    t = num(r.get("throughput"))
    if t is not None and t < 0.95 * rate:
        return "achieved < 95% of the offered rate"
    closed = find(runs, r.get("series"), "closed", "put")
    cap = num(closed.get("throughput")) if closed else None
    if cap is not None and rate > cap:
        return f"rate above its closed-loop PUT capacity ({fmt(cap)} ops/s)"
    return ""


# ---------------------------------------------------------------- formatting

def fmt(x, digits=1):
    if x is None:
        return "-"
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


def fmt_ms(x):
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}x"


def table(headers, rows, align=None):
    cols = len(headers)
    widths = [len(h) for h in headers]
    for row in rows:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(str(c)))
    align = align or ["l"] + ["r"] * (cols - 1)

    def line(cells):
        out = []
        for i, c in enumerate(cells):
            c = str(c)
            out.append(c.ljust(widths[i]) if align[i] == "l" else c.rjust(widths[i]))
        return "  ".join(out).rstrip()

    lines = [line(headers), line(["-" * w for w in widths])]
    lines += [line(r) for r in rows]
    return "\n".join(lines)


def order_key(r):
    s = r.get("series", "")
    si = SERIES_ORDER.index(s) if s in SERIES_ORDER else len(SERIES_ORDER)
    mi = MIXES.index(r.get("mix")) if r.get("mix") in MIXES else len(MIXES)
    order = CLOSED_VARIANTS + ["open", "open-self"]
    vi = order.index(r["variant"]) if r.get("variant") in order else 9
    gi = GENERATORS.index(r.get("generator", "bench")) if r.get("generator", "bench") in GENERATORS else 9
    return (vi, si, s, mi, gi)


# ---------------------------------------------------------------- summary

def summary(runs):
    out = []
    meta = next((r for r in runs if r.get("kind") == "meta"), None)
    mem = [r for r in runs if r.get("kind") == "memory"]
    benches = sorted((r for r in runs if r.get("kind") == "run" and not r.get("failed")), key=order_key)

    out.append("causalkv side-by-side benchmark")
    if meta:
        out.append(
            f"machine: {meta.get('nproc', '?')} CPUs, {meta.get('cpu_model', '?')}, "
            f"kernel {meta.get('kernel', '?')}; commit {meta.get('commit', '?')}"
            + (" (binary OLDER than the sources)" if meta.get("binary_stale") else ""))
        placement = {
            "split": " = every server (all nodes of a cluster, the ceiling, etcd) shares CPU "
                     "0, the load generator runs on CPU 1: the placement of published results",
            "shared": " = nothing pinned: servers and load generator compete for every CPU "
                      "(not comparable with published CPUS=split results)",
        }.get(meta.get("cpus"), "")
        out.append(
            f"placement: CPUS={meta.get('cpus', '?')}{placement} (servers: {meta.get('cpus_servers', '?')}, "
            f"load generator: {meta.get('cpus_load', '?')}); etcd {meta.get('etcd_version') or 'not run'}")
        out.append(
            f"workload: {meta.get('value_size', '?')}-byte values, {meta.get('conns', '?')} connections, "
            f"{meta.get('seconds', '?')} s measured after {meta.get('warmup', '?')} s warm-up, "
            f"{meta.get('keys', '?')} keys; open-loop rate {meta.get('open_rate') or '-'} ops/s"
            f"{' (SMOKE: numbers are meaningless)' if meta.get('smoke') else ''}")
        if meta.get("started"):
            out.append(f"started: {meta['started']}")
    out.append("")

    closed = [r for r in benches if r["variant"] in CLOSED_VARIANTS and r["generator"] == "bench"]
    openr = [r for r in benches if r["variant"] in ("open", "open-self")]
    failed = [r for r in runs if r.get("failed")]

    if closed:
        out.append("Closed loop, causalkv bench (throughput in ops/s, latency in ms; conns = connections;")
        out.append("variant closed = all targets, 1t = the first target node only, c1 = one connection)")
        rows = []
        for r in closed:
            rows.append([
                r["label"], r["system"], r["shape"], r["variant"], fmt(num(r.get("concurrency")), 0),
                r.get("mix", "-"),
                fmt(num(r.get("throughput"))),
                fmt(sub(r, "put", "throughput")), fmt(sub(r, "get", "throughput")),
                fmt_ms(lat(r, "p50")), fmt_ms(lat(r, "p99")), fmt_ms(lat(r, "p999")),
                fmt_ms(lat(r, "max")), fmt(num(r.get("errors")), 0),
            ])
        out.append(table(["label", "system", "shape", "variant", "conns", "mix", "ops/s", "put/s",
                          "get/s", "p50", "p99", "p99.9", "max", "errors"], rows,
                         ["l", "l", "l", "l", "r", "l"] + ["r"] * 8))
        out.append("")

    # Both generators side by side.
    cross = []
    for w in benches:
        if w["generator"] != "wrk":
            continue
        b = find(runs, w["series"], w["variant"], w.get("mix"))
        tb, tw = (num(b.get("throughput")) if b else None), num(w.get("throughput"))
        q = ratio(tw, tb)
        off = q is not None and abs(q - 1) > TARGETS["generators_agree"]
        cross.append([w["series"], w["variant"], w.get("mix", "-"),
                      fmt(num(b.get("concurrency")), 0) if b else "-",
                      fmt(num(w.get("concurrency")), 0), fmt(tb), fmt(tw), fmt_ratio(q),
                      fmt_ms(lat(b, "p99")) if b else "-", fmt_ms(lat(w, "p99")),
                      f"DISAGREE > {TARGETS['generators_agree']:.0%}" if off else ""])
    if cross:
        out.append("Both load generators (causalkv bench: causal sessions; wrk 4: no metadata, same keys,")
        out.append("values and mix; wrk/bench > 1 means wrk measured more)")
        out.append(table(["series", "variant", "mix", "conns bench", "conns wrk", "bench ops/s",
                          "wrk ops/s", "wrk/bench", "bench p99", "wrk p99", "flag"], cross,
                         ["l", "l", "l"] + ["r"] * 7 + ["l"]))
        out.append("")

    # Ratios per causalkv shape and mix.
    ckv_series = [s for s in SERIES_ORDER if s.startswith("ckv")] + sorted(
        {r["series"] for r in closed if r["system"] == "causalkv" and r["series"] not in SERIES_ORDER})
    ratio_rows = []
    for s in ckv_series:
        for mix in MIXES:
            c = find(runs, s, "closed", mix)
            if not c:
                continue
            ceil = find(runs, "ceiling", "closed", mix)
            etcd = find(runs, "etcd", "closed", mix)
            t = num(c.get("throughput"))
            ratio_rows.append([
                s, mix,
                fmt_ratio(ratio(t, num(ceil.get("throughput")) if ceil else None)),
                fmt_ratio(ratio(t, num(etcd.get("throughput")) if etcd else None)),
                fmt_ratio(ratio(lat(c, "p99"), lat(ceil, "p99") if ceil else None)),
                fmt_ratio(ratio(lat(c, "p99"), lat(etcd, "p99") if etcd else None)),
            ])
    if ratio_rows:
        out.append("Ratios, closed loop (throughput: higher is better for causalkv; p99: lower is better)")
        out.append(table(["causalkv", "mix", "ops/s vs ceiling", "ops/s vs etcd",
                          "p99 vs ceiling", "p99 vs etcd"], ratio_rows, ["l", "l", "r", "r", "r", "r"]))
        out.append("")

    if openr:
        out.append("Open loop, put mix (latency measured from the intended send time: no coordinated omission;")
        out.append("an OVERLOADED run measures a growing queue, not the server)")
        rows = []
        for r in openr:
            rate = num(r.get("rate"))
            t = num(r.get("throughput"))
            why = overloaded(r, runs)
            note = f"OVERLOADED: {why}" if why else ""
            rows.append([r["label"], r["system"], r["shape"], fmt(rate), fmt(t),
                         fmt_ms(lat(r, "p50")), fmt_ms(lat(r, "p99")), fmt_ms(lat(r, "p999")),
                         fmt_ms(lat(r, "max")), fmt(num(r.get("errors")), 0), note])
        out.append(table(["label", "system", "shape", "rate", "ops/s", "p50", "p99", "p99.9",
                          "max", "errors", "note"], rows,
                         ["l", "l", "l"] + ["r"] * 7 + ["l"]))
        out.append("")

    lag_runs = [r for r in benches if r.get("lag_ms")]
    for r in lag_runs:
        lg = r["lag_ms"]
        out.append(
            f"Replication lag ({r['label']}, {r.get('mix')} mix): {lg.get('samples', '?')} samples, "
            f"p50 {fmt_ms(num(lg.get('p50')))} ms, p99 {fmt_ms(num(lg.get('p99')))} ms, "
            f"max {fmt_ms(num(lg.get('max')))} ms, timeouts {lg.get('timeouts', '?')}")
    if lag_runs:
        out.append("")

    for m in mem:
        if m.get("failed"):
            continue
        nodes = m.get("bytes_per_key_nodes") or []
        out.append(
            f"Memory ({m.get('shape', '1x3')} causalkv, {m.get('keys')} keys of {m.get('value_size', 100)} B, "
            f"per replica): bytes/key {', '.join(fmt(num(x)) for x in nodes) or fmt(num(m.get('bytes_per_key')))}"
            f" (max {fmt(num(m.get('bytes_per_key')))}); overhead beyond the value "
            f"{fmt(num(m.get('overhead_per_key')))} B/key; RSS before {m.get('rss_before_kb')} kB, "
            f"after {m.get('rss_after_kb')} kB; key counts {m.get('key_counts')}")
    if mem:
        out.append("")

    if failed:
        out.append("FAILED runs")
        for r in failed:
            out.append(f"  {r.get('label')} {r.get('mix', '')}: {r.get('failure', 'failed')}")
        out.append("")

    out.append("Targets")
    out.extend(target_lines(runs, meta))
    return "\n".join(out) + "\n"


def mark(ok):
    return "[n/a]   " if ok is None else ("[met]   " if ok else "[missed]")


def target_lines(runs, meta):
    lines = []
    s = "ckv-1x3"

    def line(ok, text):
        lines.append(f"{mark(ok)} {text}")

    def get_tput(r):
        # wrk does not split by operation: its read-mix figure is all operations (95 % GET)
        if r is None:
            return None
        if r.get("generator") == "wrk":
            return num(r.get("throughput"))
        return sub(r, "get", "throughput")

    for gen in GENERATORS:
        ckv_put = find(runs, s, "closed", "put", gen)
        ceil_put = find(runs, "ceiling", "closed", "put", gen)
        etcd_put = find(runs, "etcd", "closed", "put", gen)
        ckv_read = find(runs, s, "closed", "read", gen)
        ceil_read = find(runs, "ceiling", "closed", "read", gen)
        if gen != "bench" and not any((ckv_put, ceil_put, ckv_read)):
            continue
        # 1. PUT vs ceiling
        a = num(ckv_put.get("throughput")) if ckv_put else None
        b = num(ceil_put.get("throughput")) if ceil_put else None
        q = ratio(a, b)
        line(None if q is None else q >= TARGETS["put_vs_ceiling"],
             f"[{gen}] 3-replica PUT >= {TARGETS['put_vs_ceiling']:.0%} of ceiling PUT: {fmt_ratio(q)} "
             f"({s} {fmt(a)} ops/s vs ceiling {fmt(b)} ops/s, put mix)")
        # 2. GET vs ceiling (read mix, GET throughput)
        a, b = get_tput(ckv_read), get_tput(ceil_read)
        q = ratio(a, b)
        line(None if q is None else q >= TARGETS["get_vs_ceiling"],
             f"[{gen}] GET >= {TARGETS['get_vs_ceiling']:.0%} of ceiling GET: {fmt_ratio(q)} "
             f"({s} {fmt(a)} vs ceiling {fmt(b)}, read mix{', all operations' if gen == 'wrk' else ', get/s'})")
        # 3. 2x3 at one target node vs 1x3 at one target node, CONNS and 1 connection
        for variant, key in (("1t", "sharded_c32"), ("c1", "sharded_c1")):
            r2 = find(runs, "ckv-2x3", variant, "put", gen)
            r1 = find(runs, s, variant, "put", gen)
            a = num(r2.get("throughput")) if r2 else None
            b = num(r1.get("throughput")) if r1 else None
            q = ratio(a, b)
            conns = fmt(num((r2 or r1 or {}).get("concurrency")), 0)
            line(None if q is None else q >= TARGETS[key],
                 f"[{gen}] 2x3 PUT at one target node >= {TARGETS[key]:.0%} of 1x3's, {conns} "
                 f"connection(s): {fmt_ratio(q)} (ckv-2x3 {fmt(a)} ops/s vs {s} {fmt(b)} ops/s)")
        # 4. p99 per closed mix
        for mix in MIXES:
            r = find(runs, s, "closed", mix, gen)
            p = lat(r, "p99") if r else None
            conns = fmt(num(r.get("concurrency")), 0) if r else "?"
            line(None if p is None else p <= TARGETS["p99_ms"],
                 f"[{gen}] p99 <= {TARGETS['p99_ms']:g} ms ({s}, closed loop, {conns} connections, "
                 f"{mix} mix): {fmt_ms(p)} ms")
        # 5. >= 10x etcd PUT
        a = num(ckv_put.get("throughput")) if ckv_put else None
        b = num(etcd_put.get("throughput")) if etcd_put else None
        q = ratio(a, b)
        line(None if q is None else q >= TARGETS["vs_etcd_put"],
             f"[{gen}] >= 10x etcd PUT: {fmt_ratio(q)} ({s} {fmt(a)} ops/s vs etcd {fmt(b)} ops/s, put mix)")
    ceil_put = find(runs, "ceiling", "closed", "put")
    # 6. p99 of the open loop (bench only: wrk has no open loop)
    for variant in ("open", "open-self"):
        r = find(runs, s, variant, "put")
        if r is None and variant == "open-self":
            continue
        p = lat(r, "p99") if r else None
        rate = num(r.get("rate")) if r else None
        why = overloaded(r, runs) if r else ""
        line(None if p is None else p <= TARGETS["p99_ms"],
             f"[bench] p99 <= {TARGETS['p99_ms']:g} ms ({s}, open loop at {fmt(rate)} ops/s"
             f"{' = 50% of its own capacity' if variant == 'open-self' else ''}, put mix): {fmt_ms(p)} ms"
             + (f" (OVERLOADED: {why})" if why else ""))
    # 7. lag
    lag = None
    for r in runs:
        if r.get("kind") == "run" and r.get("series") == s and r.get("lag_ms") and not r.get("failed"):
            lag = r["lag_ms"]
    p = num(lag.get("p99")) if lag else None
    extra = ""
    if lag and lag.get("timeouts"):
        extra = f", {lag['timeouts']} timeouts"
    line(None if p is None else (p <= TARGETS["lag_p99_ms"] and not lag.get("timeouts")),
         f"replication lag p99 <= 50 ms ({s}, put mix): {fmt_ms(p)} ms{extra}")
    # 8. memory
    m = None
    for r in runs:
        if r.get("kind") == "memory" and not r.get("failed"):
            m = r
    b = num(m.get("bytes_per_key")) if m else None
    line(None if b is None else b <= TARGETS["bytes_per_key"],
         f"memory <= 300 B/key per replica (value included): {fmt(b)} B/key "
         f"(worst replica; overhead beyond the value {fmt(num(m.get('overhead_per_key')) if m else None)} B)")
    if meta and meta.get("smoke"):
        lines.append("(smoke run: too short and too small for the targets to mean anything)")
    return lines


# ---------------------------------------------------------------- CSV

def csv_row(r, meta):
    row = {k: "" for k in CSV_COLUMNS}
    for k in ("label", "series", "system", "shape", "variant", "generator", "cpus", "cpus_servers", "cpus_load",
              "api", "mode", "mix", "concurrency", "rate", "value_size", "keys", "seconds", "warmup",
              "ops", "errors", "throughput", "failure"):
        v = r.get(k)
        if v is not None and not isinstance(v, (dict, list)):
            row[k] = v
    row["failed"] = 1 if r.get("failed") else 0
    lm = r.get("latency_ms") or {}
    for k in ("p50", "p99", "p999", "max", "mean"):
        row[k] = "" if lm.get(k) is None else lm[k]
    for part in ("put", "get"):
        d = r.get(part) or {}
        for k in ("ops", "errors", "throughput", "p50", "p99", "p999"):
            row[f"{part}_{k}"] = "" if d.get(k) is None else d[k]
    lg = r.get("lag_ms") or {}
    for k in ("samples", "p50", "p99", "max", "timeouts"):
        row[f"lag_{k}"] = "" if lg.get(k) is None else lg[k]
    st = r.get("status") or {}
    if isinstance(st, dict):
        row["status"] = ";".join(f"{k}={v}" for k, v in sorted(st.items()))
    if r.get("kind") == "memory":
        row["mem_keys"] = r.get("keys", "")
        for k in ("bytes_per_key", "overhead_per_key"):
            row[k] = "" if r.get(k) is None else r[k]
        for k in ("bytes_per_key_nodes", "rss_before_kb", "rss_after_kb", "key_counts"):
            v = r.get(k)
            row[k] = " ".join(str(x) for x in v) if isinstance(v, list) else ("" if v is None else v)
        row["system"] = row["system"] or "causalkv"
        row["shape"] = row["shape"] or "1x3"
    row["commit"] = (meta or {}).get("commit", "")
    if not row["cpus"]:
        row["cpus"] = (meta or {}).get("cpus", "")
    return row


def write_csv(runs, path):
    meta = next((r for r in runs if r.get("kind") == "meta"), None)
    rows = [r for r in runs if r.get("kind") in ("run", "memory")]
    rows = sorted((r for r in rows if r.get("kind") == "run"), key=order_key) + [
        r for r in rows if r.get("kind") == "memory"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow(csv_row(r, meta))
    return len(rows)


# ---------------------------------------------------------------- charts

def plots(runs, outdir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report.py: matplotlib is not installed: charts skipped (compare.sh installs it "
              "into target/bench-venv)", file=sys.stderr)
        return []
    meta = next((r for r in runs if r.get("kind") == "meta"), {}) or {}
    series = [s for s in SERIES_ORDER if any(find(runs, s, "closed", m) for m in MIXES)]
    series += sorted({r["series"] for r in runs if r.get("kind") == "run" and r["variant"] == "closed"
                      and not r.get("failed") and r["series"] not in series})
    if not series:
        print("report.py: no closed-loop runs: charts skipped", file=sys.stderr)
        return []
    colors = {"ckv-1x3": "#1f77b4", "ckv-2x3": "#17becf", "ceiling": "#7f7f7f", "etcd": "#d62728"}
    subtitle = (f"{meta.get('value_size', '?')} B values, {meta.get('conns', '?')} connections, "
                f"{meta.get('seconds', '?')} s, CPUS={meta.get('cpus', '?')}, "
                f"{meta.get('nproc', '?')} CPUs, commit {str(meta.get('commit', '?'))[:10]}"
                + (" — SMOKE" if meta.get("smoke") else ""))
    written = []
    width = 0.8 / len(series)

    # Throughput: x = mix, bars = series.
    fig, ax = plt.subplots(figsize=(9, 5))
    for i, s in enumerate(series):
        xs, ys = [], []
        for j, mix in enumerate(MIXES):
            r = find(runs, s, "closed", mix)
            if r and num(r.get("throughput")) is not None:
                xs.append(j + (i - (len(series) - 1) / 2) * width)
                ys.append(num(r["throughput"]))
        bars = ax.bar(xs, ys, width * 0.95, label=s, color=colors.get(s))
        for b, y in zip(bars, ys):
            ax.annotate(fmt(y), (b.get_x() + b.get_width() / 2, y), ha="center", va="bottom",
                        fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(MIXES)))
    ax.set_xticklabels(["put (100% PUT)", "mixed (50/50)", "read (95% GET)"])
    ax.set_ylabel("throughput, ops/s (closed loop)")
    ax.set_title("Throughput by mix, causalkv bench (wrk's figures: summary.txt)\n" + subtitle, fontsize=10)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    p = os.path.join(outdir, "throughput.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    written.append(p)

    # Latency: p50 and p99, x = mix (closed) + put open loop.
    cats = [(m, "closed", m) for m in MIXES] + [("put", "open", "put, open loop")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    for ax, pct in zip(axes, ("p50", "p99")):
        top = 0
        for i, s in enumerate(series):
            xs, ys, marks = [], [], []
            for j, (mix, variant, _) in enumerate(cats):
                r = find(runs, s, variant, mix)
                v = lat(r, pct) if r else None
                if v is not None:
                    xs.append(j + (i - (len(series) - 1) / 2) * width)
                    ys.append(max(v, 1e-3))
                    marks.append("*" if variant == "open" and overloaded(r, runs) else "")
                    top = max(top, v)
            bars = ax.bar(xs, ys, width * 0.95, label=s, color=colors.get(s))
            for b, y, m in zip(bars, ys, marks):
                ax.annotate(fmt_ms(y) + m, (b.get_x() + b.get_width() / 2, y), ha="center",
                            va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
        ax.set_yscale("log")
        ax.set_xticks(range(len(cats)))
        ax.set_xticklabels([c[2] for c in cats], fontsize=8)
        ax.set_title(f"{pct} latency (ms, log scale)")
        ax.axhline(TARGETS["p99_ms"], color="black", linestyle=":", linewidth=1)
        ax.grid(axis="y", alpha=0.3, which="both")
    axes[0].set_ylabel("ms")
    axes[0].legend()
    open_rate = meta.get("open_rate")
    fig.suptitle(f"Latency by mix, causalkv bench (dotted line: {TARGETS['p99_ms']:g} ms target)" +
                 (f"; open loop at {open_rate} ops/s, * = overloaded at that rate" if open_rate else "")
                 + "\n" + subtitle,
                 fontsize=10)
    fig.tight_layout()
    p = os.path.join(outdir, "latency.png")
    fig.savefig(p, dpi=110)
    plt.close(fig)
    written.append(p)
    return written


# ---------------------------------------------------------------- subcommands

def cmd_annotate(argv):
    extra = {}
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("--"):
            print(f"report.py annotate: unexpected argument {a!r}", file=sys.stderr)
            return 2
        if "=" in a:
            k, v = a[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(argv):
                print(f"report.py annotate: {a} needs a value", file=sys.stderr)
                return 2
            k, v = a[2:], argv[i + 1]
            i += 2
        k = k.replace("-", "_")
        numeric = ("rate", "warmup", "open_rate_common", "concurrency", "value_size", "keys")
        extra[k] = num(v) if k in numeric and num(v) is not None else v
    lines = [ln for ln in sys.stdin.read().splitlines() if ln.strip()]
    objs = []
    for ln in lines:
        try:
            o = json.loads(ln)
        except json.JSONDecodeError:
            continue
        if isinstance(o, dict):
            objs.append(o)
    if len(objs) != 1:
        print(f"report.py annotate: expected one JSON object on stdin, got {len(objs)} "
              f"(of {len(lines)} non-empty lines)", file=sys.stderr)
        return 1
    o = objs[0]
    for k, v in extra.items():
        if k == "rate" and o.get("rate") is not None:
            continue  # the bench's own value wins
        o[k] = v
    fill_defaults(o)
    print(json.dumps(o, separators=(",", ":")))
    lm = o.get("latency_ms") or {}
    msg = (f"{o.get('label')} {o.get('mode')} {o.get('mix')}: {fmt(num(o.get('throughput')))} ops/s, "
           f"p50 {fmt_ms(num(lm.get('p50')))} ms, p99 {fmt_ms(num(lm.get('p99')))} ms, "
           f"errors {o.get('errors')}")
    if o.get("lag_ms"):
        msg += f", lag p99 {fmt_ms(num(o['lag_ms'].get('p99')))} ms"
    print("  -> " + msg, file=sys.stderr)
    return 0


def cmd_get(argv):
    if len(argv) != 4:
        print("usage: report.py get RUNS.jsonl LABEL MIX FIELD", file=sys.stderr)
        return 2
    path, label, mix, field = argv
    if not os.path.exists(path):
        return 0
    val = None
    for r in load_runs(path):
        if r.get("label") == label and r.get("mix") == mix and not r.get("failed"):
            v = r
            for part in field.split("."):
                v = v.get(part) if isinstance(v, dict) else None
            if num(v) is not None:
                val = num(v)
    if val is not None:
        print(f"{val:g}" if val != int(val) else f"{int(val)}")
    return 0


def main(argv):
    if argv and argv[0] == "annotate":
        return cmd_annotate(argv[1:])
    if argv and argv[0] == "get":
        return cmd_get(argv[1:])
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    path = argv[0]
    outdir = None
    no_plots = False
    rest = argv[1:]
    while rest:
        a = rest.pop(0)
        if a == "--out" and rest:
            outdir = rest.pop(0)
        elif a == "--no-plots":
            no_plots = True
        else:
            print(f"report.py: unknown argument {a!r}", file=sys.stderr)
            return 2
    outdir = outdir or os.path.dirname(os.path.abspath(path))
    os.makedirs(outdir, exist_ok=True)
    runs = load_runs(path)
    if not runs:
        print(f"report.py: no runs in {path}", file=sys.stderr)
        return 1
    text = summary(runs)
    with open(os.path.join(outdir, "summary.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    n = write_csv(runs, os.path.join(outdir, "results.csv"))
    print(text, end="")
    written = [] if no_plots else plots(runs, outdir)
    print(f"\nwrote {os.path.join(outdir, 'results.csv')} ({n} rows), "
          f"{os.path.join(outdir, 'summary.txt')}"
          + "".join(f", {p}" for p in written))
    return 0


if __name__ == "__main__":
    # Die of Ctrl-C like any command (no traceback, and the calling shell's trap runs).
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(main(sys.argv[1:]))
