#!/usr/bin/env python3
"""Turns criterion's output into the chart and the table of BENCHMARKS.md.

    cargo bench
    python3 benches/chart.py                      # reads target/criterion, writes benches/chart.svg
    python3 benches/chart.py CRITERION_DIR OUT.svg

For every criterion group (one scenario) it reads each runtime's mean time per iteration and the
group's throughput per iteration, and prints a Markdown table: throughput per runtime and the
ratios uring/epoll and uring/tokio (above 1 means uring is faster). The SVG shows, per scenario,
each runtime's throughput relative to tokio current_thread on a log scale.

Standard library only, so it runs wherever Python 3 does.
"""

import json
import math
import os
import re
import sys

RUNTIMES = ["uring", "epoll", "tokio", "std_pread"]
COLOURS = {"uring": "#1f77b4", "epoll": "#ff7f0e", "tokio": "#7f7f7f", "std_pread": "#2ca02c"}


def load(criterion_dir):
    """{group: {runtime: (per_second, unit)}}, groups in the order benches run them."""
    groups = {}
    for group in sorted(os.listdir(criterion_dir)):
        gdir = os.path.join(criterion_dir, group)
        if not os.path.isdir(gdir) or group == "report":
            continue
        for rt in RUNTIMES:
            base = os.path.join(gdir, rt, "new")
            try:
                with open(os.path.join(base, "estimates.json")) as f:
                    est = json.load(f)
                with open(os.path.join(base, "benchmark.json")) as f:
                    meta = json.load(f)
            except FileNotFoundError:
                continue
            ns = est["mean"]["point_estimate"]
            tp = meta.get("throughput") or {}
            if "Bytes" in tp:
                per_s, unit = tp["Bytes"] / (ns * 1e-9), "B/s"
            elif "Elements" in tp:
                per_s, unit = tp["Elements"] / (ns * 1e-9), "/s"
            else:
                per_s, unit = 1 / (ns * 1e-9), "/s"
            groups.setdefault(meta.get("group_id", group), {})[rt] = (per_s, unit)
    return groups


ORDER = ["echo", "stream", "op_round_trip", "file", "timers", "tasks"]


def sort_key(name):
    """Scenario order of BENCHMARKS.md, then numbers by value (1conn before 64conn before 512conn)."""
    natural = [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]
    for i, prefix in enumerate(ORDER):
        if name.startswith(prefix):
            return (i, natural)
    return (len(ORDER), natural)


def human(v, unit):
    if unit == "B/s":
        for scale, suffix in ((2**30, "GiB/s"), (2**20, "MiB/s"), (2**10, "KiB/s")):
            if v >= scale:
                return f"{v / scale:.2f} {suffix}"
        return f"{v:.0f} B/s"
    for scale, suffix in ((1e6, "M/s"), (1e3, "k/s")):
        if v >= scale:
            return f"{v / scale:.2f} {suffix}"
    return f"{v:.1f} /s"


def table(groups):
    lines = [
        "| scenario | uring | epoll | tokio | std pread | uring/epoll | uring/tokio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in sorted(groups, key=sort_key):
        g = groups[name]
        cells = [human(*g[rt]) if rt in g else "" for rt in RUNTIMES]
        ratio = lambda a, b: f"{g[a][0] / g[b][0]:.2f}x" if a in g and b in g else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio('uring', 'epoll')} | {ratio('uring', 'tokio')} |")
    return "\n".join(lines)


def svg(groups):
    names = [n for n in sorted(groups, key=sort_key) if "tokio" in groups[n]]
    row_h, bar_h, left, width, top = 46, 12, 250, 560, 50
    lo, hi = -3.0, 5.0  # log2 of the ratio to tokio: 1/8x .. 32x
    height = top + row_h * len(names) + 40
    x = lambda r: left + (min(max(math.log2(r), lo), hi) - lo) / (hi - lo) * width
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 120}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="10" y="22" font-size="15" font-weight="bold">ringloop: throughput relative to '
        'tokio current_thread (log scale, higher is better)</text>',
    ]
    for tick in (0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32):
        tx = x(tick)
        out.append(f'<line x1="{tx:.1f}" y1="{top - 8}" x2="{tx:.1f}" y2="{height - 35}" '
                   f'stroke="{"#000" if tick == 1 else "#ddd"}"/>')
        out.append(f'<text x="{tx:.1f}" y="{height - 20}" text-anchor="middle">{tick:g}x</text>')
    for i, name in enumerate(names):
        g = groups[name]
        y0 = top + i * row_h
        out.append(f'<text x="{left - 8}" y="{y0 + row_h / 2:.0f}" text-anchor="end">{name}</text>')
        bars = [rt for rt in ("uring", "epoll", "std_pread") if rt in g]
        for j, rt in enumerate(bars):
            r = g[rt][0] / g["tokio"][0]
            y = y0 + 4 + j * (bar_h + 2)
            x1, x2 = sorted((x(1), x(r)))
            out.append(f'<rect x="{x1:.1f}" y="{y}" width="{max(x2 - x1, 1):.1f}" height="{bar_h}" '
                       f'fill="{COLOURS[rt]}"><title>{rt}: {r:.2f}x tokio</title></rect>')
            out.append(f'<text x="{x2 + 4:.1f}" y="{y + bar_h - 2}" font-size="10">{r:.2f}x</text>')
    lx = left
    for rt in ("uring", "epoll", "std_pread"):
        out.append(f'<rect x="{lx}" y="30" width="12" height="10" fill="{COLOURS[rt]}"/>')
        out.append(f'<text x="{lx + 16}" y="39">{rt.replace("_", " ")}</text>')
        lx += 110
    out.append("</svg>")
    return "\n".join(out)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    criterion_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "target", "criterion")
    out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "benches", "chart.svg")
    if not os.path.isdir(criterion_dir):
        sys.exit(f"chart.py: {criterion_dir} does not exist; run `cargo bench` first")
    groups = load(criterion_dir)
    if not groups:
        sys.exit(f"chart.py: no criterion results under {criterion_dir}; run `cargo bench` first")
    with open(out_path, "w") as f:
        f.write(svg(groups))
    print(table(groups))
    print(f"\nchart written to {out_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
