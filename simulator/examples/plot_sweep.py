#!/usr/bin/env python3
"""Plots a seeder-upload x sites sweep as an SVG (Python standard library only).

    pollen-sim sweep scenario.toml --param seeder.upload_mbit=10,30,100,300,1000 \
        --param site.0.count=10,100,1000 --out sweep/
    python3 simulator/examples/plot_sweep.py sweep/sweep.csv fleet-sweep.svg

Left: completion as a multiple of the lower bound against the seeder's
upload (log axis), one line per site count, with the 1.5 target. Right: the
seeder's bytes as a multiple of the release.
"""

import csv
import math
import sys
from collections import defaultdict


def params(row):
    """The swept parameters: their own columns (`site.0.count` as
    `site_0_count`), or, in CSVs written before those columns, `run` ("k=v,k=v")."""
    if "site_0_count" in row:
        return {"seeder.upload_mbit": row["seeder_upload_mbit"], "site.0.count": row["site_0_count"]}
    return dict(kv.split("=", 1) for kv in row["run"].split(","))


def load(path):
    series = defaultdict(list)  # sites -> [(upload, ratio, seeder multiple)]
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            p = params(row)
            up = float(p["seeder.upload_mbit"])
            sites = int(p["site.0.count"])
            series[sites].append((up, float(row["ratio_to_bound"]), float(row["seeder_multiple"])))
    for pts in series.values():
        pts.sort()
    return dict(sorted(series.items()))


COLOURS = ["#1b6ca8", "#d1495b", "#2e8b57", "#8d6a9f", "#e09f3e"]


def panel(out, x0, series, col, ymax, ylabel, target, title):
    w, h, left, top = 360, 260, 55, 30
    ups = sorted({u for pts in series.values() for u, *_ in pts})
    lo, hi = math.log10(ups[0]), math.log10(ups[-1])

    def sx(u):
        return x0 + left + (math.log10(u) - lo) / (hi - lo or 1) * w

    def sy(v):
        return top + h - v / ymax * h

    out.append(f'<text x="{x0 + left + w / 2}" y="18" text-anchor="middle" font-weight="bold">{title}</text>')
    out.append(f'<rect x="{x0 + left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#888"/>')
    for u in ups:
        out.append(f'<text x="{sx(u)}" y="{top + h + 16}" text-anchor="middle">{u:g}</text>')
    out.append(f'<text x="{x0 + left + w / 2}" y="{top + h + 34}" text-anchor="middle">seeder upload, Mbit/s</text>')
    steps = 5
    for i in range(steps + 1):
        v = ymax * i / steps
        out.append(f'<text x="{x0 + left - 6}" y="{sy(v) + 4}" text-anchor="end">{v:.1f}</text>')
        out.append(f'<line x1="{x0 + left}" x2="{x0 + left + w}" y1="{sy(v)}" y2="{sy(v)}" stroke="#eee"/>')
    out.append(
        f'<text x="{x0 + 14}" y="{top + h / 2}" transform="rotate(-90 {x0 + 14} {top + h / 2})" '
        f'text-anchor="middle">{ylabel}</text>'
    )
    if target is not None:
        out.append(
            f'<line x1="{x0 + left}" x2="{x0 + left + w}" y1="{sy(target)}" y2="{sy(target)}" '
            'stroke="#555" stroke-dasharray="6 4"/>'
        )
    for i, (sites, pts) in enumerate(series.items()):
        c = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{sx(u):.1f},{sy((r, s)[col - 1]):.1f}" for u, r, s in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
        for u, r, s in pts:
            v = (r, s)[col - 1]
            out.append(f'<circle cx="{sx(u):.1f}" cy="{sy(v):.1f}" r="3" fill="{c}"/>')
        out.append(f'<text x="{x0 + left + 8}" y="{top + 16 + 15 * i}" fill="{c}">{sites} sites</text>')


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    series = load(sys.argv[1])
    ratio_max = max(2.0, max(r for pts in series.values() for _, r, _ in pts) * 1.1)
    seeder_max = max(2.0, max(s for pts in series.values() for _, _, s in pts) * 1.1)
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="900" height="340" font-family="sans-serif" font-size="12">']
    out.append('<rect width="100%" height="100%" fill="white"/>')
    panel(out, 0, series, 1, ratio_max, "completion / lower bound", 1.5, "Completion vs the bound")
    panel(out, 450, series, 2, seeder_max, "seeder bytes / release", None, "Seeder bytes")
    out.append("</svg>")
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
