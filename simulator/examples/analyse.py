#!/usr/bin/env python3
"""Reproduces the README's figures from the CSVs committed under
simulator/examples/ with pandas and matplotlib (no Jupyter).

    python3 -m venv .venv && . .venv/bin/activate
    pip install pandas matplotlib
    python3 simulator/examples/analyse.py [--out DIR]    # PNGs into DIR (default analysis/)

Figures:
  fleet-sweep-256k.png, fleet-sweep-1m.png  completion / bound and the seeder's
      bytes against the seeder's upload, one line per site count
      (examples/fleet-sweep/chunks-*.csv; the README's fleet-sweep SVGs)
  factory-cdf.png           completion CDF per strategy (factory-20x50/*/nodes.csv)
  factory-uplink.png        bytes over all site uplinks, and saved vs central
                            (factory-20x50/sweep.csv; uplink_bytes.svg, saved_vs_central.svg)
  churn-aggregate.png       last completion per churn rate: mean and 95 % t-interval
                            over 10 seeds (churn-sweep/aggregate.csv; aggregate.svg)
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

HERE = Path(__file__).resolve().parent


def with_params(df):
    """sweep.csv has one column per swept parameter (`site.0.count` as
    `site_0_count`). CSVs written before that (the fleet-sweep ones) name the
    parameters only in `run` ("k=v,k=v"): recover the columns from it."""
    if "run" in df.columns and df["run"].astype(str).str.contains("=").all():
        pairs = df["run"].str.split(",").apply(lambda kv: dict(p.split("=", 1) for p in kv))
        params = pd.DataFrame(list(pairs), index=df.index)
        params.columns = [c.replace(".", "_") for c in params.columns]
        for c in params.columns:
            numeric = pd.to_numeric(params[c], errors="coerce")
            if numeric.notna().all():
                params[c] = numeric
        df = pd.concat([df, params[[c for c in params.columns if c not in df.columns]]], axis=1)
    return df


def fleet_sweep(csv, png, title):
    df = with_params(pd.read_csv(csv))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for sites, g in df.groupby("site_0_count"):
        g = g.sort_values("seeder_upload_mbit")
        left.plot(g["seeder_upload_mbit"], g["ratio_to_bound"], marker="o", label=f"{sites} sites")
        right.plot(g["seeder_upload_mbit"], g["seeder_multiple"], marker="o", label=f"{sites} sites")
    left.axhline(1.5, color="grey", linestyle="--", linewidth=1, label="1.5 target")
    for ax, ylabel in ((left, "completion / bound"), (right, "seeder sent (x release)")):
        ax.set_xscale("log")
        ax.set_xlabel("seeder upload, Mbit/s")
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def factory(dir_, out):
    sweep = pd.read_csv(dir_ / "sweep.csv")
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for _, row in sweep.iterrows():
        nodes = pd.read_csv(dir_ / row["run"] / "nodes.csv")
        t = nodes["finish_s"].dropna().sort_values().reset_index(drop=True)
        ax.step(t, (t.index + 1) / len(nodes), where="post", label=row["strategy"])
    ax.set_xscale("log")
    ax.set_xlabel("time (s, log scale)")
    ax.set_ylabel("devices done (fraction)")
    ax.set_title(f"Completion, {int(sweep['devices'].iloc[0])} devices")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "factory-cdf.png", dpi=120)
    plt.close(fig)

    # Bytes over all site uplinks: the mean multiple x sites x release size.
    summaries = {r: json.loads((dir_ / r / "summary.json").read_text()) for r in sweep["run"]}
    gb = sweep.apply(
        lambda r: r["uplink_multiple_mean"]
        * summaries[r["run"]]["sites"]
        * summaries[r["run"]]["release_bytes"]
        / 1e9,
        axis=1,
    )
    central = gb[sweep["strategy"] == "central"].iloc[0]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.bar(sweep["strategy"], gb)
    left.set_ylabel("GB over all site uplinks")
    right.bar(sweep["strategy"], 100 * (1 - gb / central))
    right.set_ylabel("% uplink bytes saved vs central")
    for ax in (left, right):
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "factory-uplink.png", dpi=120)
    plt.close(fig)


def churn(dir_, out, metric="completion_max_s"):
    agg = pd.read_csv(dir_ / "aggregate.csv")
    mean, lo, hi = (agg[f"{metric}_{s}"] for s in ("mean", "ci95_lo", "ci95_hi"))
    fig, ax = plt.subplots(figsize=(6, 4))
    x = agg["churn_rate_per_hour"].astype(str)
    ax.bar(x, mean, yerr=[mean - lo, hi - mean], capsize=6)
    ax.set_xlabel("churn: leaves per device and hour")
    ax.set_ylabel(f"{metric} (mean, 95 % t-interval)")
    ax.set_title(f"{int(agg['n'].min())} seeds per rate")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "churn-aggregate.png", dpi=120)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("analysis"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    fleet = HERE / "fleet-sweep"
    fleet_sweep(fleet / "chunks-256k.csv", args.out / "fleet-sweep-256k.png", "256 KiB chunks")
    fleet_sweep(fleet / "chunks-1m.csv", args.out / "fleet-sweep-1m.png", "1 MiB chunks")
    factory(HERE / "factory-20x50", args.out)
    churn(HERE / "churn-sweep", args.out)
    for p in sorted(args.out.glob("*.png")):
        print(p)


if __name__ == "__main__":
    main()
