"""Benchmark outputs: per-subject CSV, summary JSON, a Markdown report and a plot.

Statistics, per arm and region: mean +- sd over every (seed, test subject) value; the
seed-to-seed sd of the subject mean; and, against the baseline arm, the paired difference
(same seed, same subject) with its mean, sd and how many pairs the arm wins.
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from medsynth.benchmark.config import ArmConfig, BenchmarkConfig
from medsynth.config import to_dict
from medsynth.io import atomic_path, write_json
from medsynth.manifest import provenance

REGIONS = ("WT", "TC", "ET")
FIELDS = ("arm", "seed", "case_id", "brats_name", "region", "dice", "hd95_mm")


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def flatten(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (arm, seed, subject, region)."""
    return [
        {"arm": r["arm"]["name"], "seed": r["seed"], **{k: m[k] for k in FIELDS[2:]}}
        for r in results
        for m in r["metrics"]
    ]


def summarize(rows: list[dict[str, Any]], arms: list[str], baseline: str) -> dict[str, Any]:
    """Per arm and region: mean/sd of Dice and HD95, seed sd, paired difference to ``baseline``."""
    by_key = {(r["arm"], r["seed"], r["case_id"], r["region"]): r for r in rows}
    summary: dict[str, Any] = {}
    for arm in arms:
        summary[arm] = {}
        for region in REGIONS:
            mine = [r for r in rows if r["arm"] == arm and r["region"] == region]
            if not mine:
                continue
            per_seed = defaultdict(list)
            for r in mine:
                per_seed[r["seed"]].append(r["dice"])
            entry = {
                "n": len(mine),
                "seeds": len(per_seed),
                "dice_mean": statistics.fmean(r["dice"] for r in mine),
                "dice_sd": _sd([r["dice"] for r in mine]),
                "dice_seed_sd": _sd([statistics.fmean(v) for v in per_seed.values()]),
                "hd95_mean": statistics.fmean(r["hd95_mm"] for r in mine),
                "hd95_sd": _sd([r["hd95_mm"] for r in mine]),
            }
            pairs = [
                (r, by_key[(baseline, r["seed"], r["case_id"], region)])
                for r in mine
                if (baseline, r["seed"], r["case_id"], region) in by_key
            ]
            if arm != baseline and pairs:
                dice_diff = [a["dice"] - b["dice"] for a, b in pairs]
                hd_diff = [a["hd95_mm"] - b["hd95_mm"] for a, b in pairs]
                entry["vs_baseline"] = {
                    "pairs": len(pairs),
                    "dice_diff_mean": statistics.fmean(dice_diff),
                    "dice_diff_sd": _sd(dice_diff),
                    "dice_wins": sum(d > 0 for d in dice_diff),
                    "hd95_diff_mean": statistics.fmean(hd_diff),
                    "hd95_diff_sd": _sd(hd_diff),
                }
            summary[arm][region] = entry
    return summary


def _timings(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    grouped = defaultdict(list)
    for r in results:
        grouped[r["arm"]["name"]].append(r["timings"])
    return {
        arm: {
            key: round(statistics.fmean(t[key] for t in values), 2)
            for key in ("train_seconds", "predict_seconds", "loader_wait_seconds")
        }
        | {"runs": len(values)}
        for arm, values in grouped.items()
    }


def _cell(entry: dict[str, Any] | None, metric: str, digits: int) -> str:
    if not entry:
        return "-"
    return f"{entry[f'{metric}_mean']:.{digits}f} ± {entry[f'{metric}_sd']:.{digits}f}"


def markdown(config: BenchmarkConfig, summary: dict, timings: dict, rows: list[dict], machine: dict) -> str:
    """The report: setup, main table, paired comparison, per-subject table, definitions."""
    s = config.segmenter
    arms = [a for a in config.arms if summary.get(a.name)]
    subjects = sorted({(r["case_id"], r["brats_name"]) for r in rows})
    lines = [
        "# Segmentation benchmark",
        "",
        f"SegResNet (init_filters {s.init_filters}), region-based (WT/TC/ET sigmoid, DiceCE), {s.steps} steps of "
        f"batch {s.batch_size} x {'x'.join(map(str, s.patch_size))} patches, AdamW lr {s.lr} with poly decay; "
        f"seeds {config.seeds}. Test subjects (never seen by generators or segmenters): "
        + ", ".join(f"{c} ({b})" for c, b in subjects)
        + f". Machine: {machine['device']}, {machine.get('processor', '?')}, {machine['cpu_threads']} threads, "
        f"torch {machine['torch']}.",
        "",
        "Dice (higher is better) and HD95 in mm (lower is better), mean ± sd over seeds x test subjects, "
        "scored on the original 1 mm grid of each test scan:",
        "",
        "| arm | training data | WT Dice | TC Dice | ET Dice | WT HD95 | TC HD95 | ET HD95 | runs | train s/run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in arms:
        e = summary[arm.name]
        data = _describe(arm)
        t = timings.get(arm.name, {})
        lines.append(
            f"| {arm.name} | {data} | "
            + " | ".join(_cell(e.get(r), "dice", 3) for r in REGIONS)
            + " | "
            + " | ".join(_cell(e.get(r), "hd95", 1) for r in REGIONS)
            + f" | {t.get('runs', 0)} | {t.get('train_seconds', 0):.0f} |"
        )
    lines += [
        "",
        f"Paired difference to `{config.baseline}` (same seed, same test subject): Dice difference mean ± sd, "
        "and the pairs where the arm's Dice is higher:",
        "",
        "| arm | WT ΔDice | TC ΔDice | ET ΔDice | WT ΔHD95 mm | TC ΔHD95 mm | ET ΔHD95 mm |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm in arms:
        if arm.name == config.baseline:
            continue
        cells, hd = [], []
        for region in REGIONS:
            v = summary[arm.name].get(region, {}).get("vs_baseline")
            cells.append(
                f"{v['dice_diff_mean']:+.3f} ± {v['dice_diff_sd']:.3f} ({v['dice_wins']}/{v['pairs']})" if v else "-"
            )
            hd.append(f"{v['hd95_diff_mean']:+.1f} ± {v['hd95_diff_sd']:.1f}" if v else "-")
        lines.append(f"| {arm.name} | " + " | ".join(cells + hd) + " |")
    lines += ["", "Per test subject, Dice mean over seeds (WT / TC / ET):", ""]
    lines += ["| arm | " + " | ".join(c for c, _ in subjects) + " |", "|---|" + "---|" * len(subjects)]
    for arm in arms:
        cells = []
        for case_id, _ in subjects:
            values = []
            for region in REGIONS:
                mine = [
                    r["dice"]
                    for r in rows
                    if r["arm"] == arm.name and r["case_id"] == case_id and r["region"] == region
                ]
                values.append(f"{statistics.fmean(mine):.2f}" if mine else "-")
            cells.append(" / ".join(values))
        lines.append(f"| {arm.name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Definitions: WT = NETC+SNFH+ET, TC = NETC+ET, ET (BraTS 2023 labels 1, 2, 3). Dice and HD95 from MONAI; "
        "HD95 is the larger of the two directed 95th-percentile surface distances (mm; the official BraTS-evaluation "
        "package pools both directions, giving values <= these). Both masks empty: Dice 1, "
        "HD95 0; one empty: Dice 0, HD95 373.13 mm (BraTS). Predictions: `predictions/<arm>/seed<k>/`, references: "
        "`references/`.",
        "",
    ]
    return "\n".join(lines)


def _describe(arm: ArmConfig) -> str:
    parts = []
    if arm.real:
        parts.append("real")
    if arm.synthetic:
        share = f"{arm.fraction:.0%} " if arm.real else ""
        parts.append(f"{share}{arm.synthetic}")
    if arm.classical:
        parts.append("classical aug.")
    return " + ".join(parts)


def plot(summary: dict, rows: list[dict], arms: list[str], baseline: str, path: Path) -> Path:
    """Dice and HD95 per region: every (seed, subject) value as a dot, mean ± sd as a bar."""
    # a Figure without pyplot never switches the backend of the user's process (a notebook's inline figures)
    import numpy as np
    from matplotlib.figure import Figure

    arms = [a for a in arms if summary.get(a)]
    fig = Figure(figsize=(4 + 1.1 * len(arms) * 1.5, 7.5))
    axes = fig.subplots(2, 3, sharex=True)
    rng = np.random.default_rng(0)
    for col, region in enumerate(REGIONS):
        for row, (metric, label) in enumerate((("dice", "Dice"), ("hd95_mm", "HD95 (mm)"))):
            ax = axes[row, col]
            key = "dice" if metric == "dice" else "hd95"
            for x, arm in enumerate(arms):
                entry = summary[arm].get(region)
                if not entry:
                    continue
                values = [r[metric] for r in rows if r["arm"] == arm and r["region"] == region]
                color = "tab:gray" if arm == baseline else "tab:blue"
                ax.bar(x, entry[f"{key}_mean"], yerr=entry[f"{key}_sd"], color=color, alpha=0.35, capsize=3)
                ax.scatter(x + rng.uniform(-0.2, 0.2, len(values)), values, s=10, color=color, zorder=3)
            base = summary.get(baseline, {}).get(region)
            if base:
                ax.axhline(base[f"{key}_mean"], color="tab:gray", linestyle="--", linewidth=1)
            ax.set_title(f"{region} {label}")
            if metric == "dice":
                ax.set_ylim(0, 1)
            ax.set_xticks(range(len(arms)), arms, rotation=45, ha="right", fontsize=8)
    fig.suptitle(f"Segmentation on held-out real subjects (dots: seed x subject; dashed: {baseline})")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return path


def write_outputs(
    config: BenchmarkConfig, output: Path, results: list[dict[str, Any]], machine: dict[str, Any]
) -> Path:
    """results.csv, results.json, report.md and benchmark.png from the finished runs' ``results``; returns report.md."""
    rows = flatten(results)
    arms = [a.name for a in config.arms]
    summary = summarize(rows, arms, config.baseline)
    timings = _timings(results)
    with atomic_path(output / "results.csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    report = {
        "config": to_dict(config),
        "provenance": provenance("benchmark", config=config, inputs=[config.data.manifest]),
        "machine": machine,
        "summary": summary,
        "timings": timings,
        "rows": rows,
    }
    write_json(report, output / "results.json")
    with atomic_path(output / "report.md") as tmp:
        tmp.write_text(markdown(config, summary, timings, rows, machine))
    if rows:
        plot(summary, rows, arms, config.baseline, output / "benchmark.png")
    return output / "report.md"
