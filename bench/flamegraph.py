#!/usr/bin/env python3
"""Folds `perf script` output into stacks and draws a flame graph as a standalone SVG.

    perf record -F 499 -g -p PID -- sleep 10
    perf script | bench/flamegraph.py --title "causalkv 1x3 PUT" > flame.svg

Standard library only (no FlameGraph/inferno install needed). Frames are the symbol names perf
prints (offsets and DSOs dropped); the root is the thread (command) name. Hover a box for its
name and share of samples.
"""

import argparse
import html
import re
import sys
from collections import defaultdict


PID = False


def fold(lines):
    stacks = defaultdict(int)
    comm, frames = None, []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if comm is not None and frames:
                stacks[";".join([comm] + list(reversed(frames)))] += 1
            comm, frames = None, []
            continue
        if not line.startswith((" ", "\t")):
            comm = (" ".join(line.split()[:2]) if PID else line.split()[0]) if line.split() else "?"
            frames = []
            continue
        parts = line.strip().split(None, 1)
        if len(parts) < 2:
            continue
        sym = parts[1]
        sym = re.sub(r"\s+\(\S*\)$", "", sym)          # the DSO
        sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)       # the offset
        sym = re.sub(r"::h[0-9a-f]{16}$", "", sym)     # rustc's hash
        frames.append(sym or "?")
    if comm is not None and frames:
        stacks[";".join([comm] + list(reversed(frames)))] += 1
    return stacks


def tree(stacks):
    root = {"name": "all", "value": 0, "children": {}}
    for stack, n in stacks.items():
        root["value"] += n
        node = root
        for f in stack.split(";"):
            node = node["children"].setdefault(f, {"name": f, "value": 0, "children": {}})
            node["value"] += n
    return root


def color(name):
    h = sum(ord(c) for c in name) % 60
    if "causalkv" in name:
        return f"rgb({200 + h % 55},{90 + h},{40})"
    if "kernel" in name or name.startswith(("__", "do_", "sys_", "tcp_", "ip_", "entry_")):
        return f"rgb({120 + h},{120 + h},{200})"
    return f"rgb({220},{120 + h * 2},{50 + h})"


def svg(root, title, width=1400, row=16):
    total = root["value"] or 1
    depth = [0]

    def measure(n, d):
        depth[0] = max(depth[0], d)
        for c in n["children"].values():
            measure(c, d + 1)

    measure(root, 0)
    height = (depth[0] + 2) * row + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="monospace" font-size="11">',
           f'<rect width="100%" height="100%" fill="#fdfdf6"/>',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="15">{html.escape(title)}'
           f' ({total} samples)</text>']

    def draw(n, x, d):
        w = n["value"] / total * (width - 20)
        if w < 0.3:
            return
        y = height - (d + 1) * row - 10
        pct = 100.0 * n["value"] / total
        label = html.escape(n["name"])
        out.append(f'<g><title>{label} ({n["value"]} samples, {pct:.2f}%)</title>'
                   f'<rect x="{x + 10:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" '
                   f'fill="{color(n["name"])}" rx="2"/>')
        chars = int(w / 7)
        if chars >= 3:
            text = n["name"] if len(n["name"]) <= chars else n["name"][: chars - 2] + ".."
            out.append(f'<text x="{x + 13:.1f}" y="{y + row - 4}">{html.escape(text)}</text>')
        out.append("</g>")
        cx = x
        for c in sorted(n["children"].values(), key=lambda c: c["name"]):
            draw(c, cx, d + 1)
            cx += c["value"] / total * (width - 20)

    draw(root, 0, 0)
    out.append("</svg>")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--title", default="flame graph")
    ap.add_argument("--folded", help="also write the folded stacks here")
    a = ap.parse_args()
    stacks = fold(sys.stdin)
    if a.folded:
        with open(a.folded, "w") as f:
            for s, n in sorted(stacks.items()):
                f.write(f"{s} {n}\n")
    sys.stdout.write(svg(tree(stacks), a.title))


if __name__ == "__main__":
    main()
