"""Report of a label-map cohort: achieved vs target distributions (Markdown, JSON, PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medsynth.io import atomic_path, write_json
from medsynth.labels.locations import HEMISPHERES, REGIONS

if TYPE_CHECKING:
    from medsynth.labels.generate import LabelMapSampler

VOLUME_BINS = 5


def _shares(values: list[str], keys: tuple[str, ...]) -> dict[str, float]:
    return {k: round(values.count(k) / max(len(values), 1), 4) for k in keys}


def summarise(entries: list[dict[str, Any]], sampler: LabelMapSampler) -> dict[str, Any]:
    """Achieved distributions, the targets, and those of the real source tumors."""
    achieved = [e["record"]["achieved"] for e in entries]
    spec = sampler.reshape
    volumes = np.array([a["volume_ml"] for a in achieved])
    summary: dict[str, Any] = {
        "n": len(entries),
        "volume_ml": {
            "achieved": {"min": float(volumes.min()), "median": float(np.median(volumes)), "max": float(volumes.max())},
            "sources": {t.case_id: round(t.volume_ml, 2) for t in sampler.tumors},
        },
        "hemisphere": {"achieved": _shares([a["hemisphere"] for a in achieved], HEMISPHERES)},
        "region": {"achieved": _shares([a["region"] for a in achieved], REGIONS)},
        "enhancing_fraction": {
            "achieved": {
                "min": float(min(a["fractions"]["et"] for a in achieved)),
                "max": float(max(a["fractions"]["et"] for a in achieved)),
            }
        },
        "mean_attempts": float(np.mean([e["record"]["attempts"] for e in entries])),
    }
    if spec.volume_ml is not None:
        low, high = spec.volume_ml.low, spec.volume_ml.high
        if spec.volume_distribution == "loguniform":
            edges = np.exp(np.linspace(np.log(low), np.log(high), VOLUME_BINS + 1))
        else:
            edges = np.linspace(low, high, VOLUME_BINS + 1)
        counts, _ = np.histogram(np.clip(volumes, low, high), bins=edges)
        summary["volume_ml"]["bins"] = [round(float(e), 2) for e in edges]
        summary["volume_ml"]["achieved_shares"] = [round(float(c) / len(volumes), 4) for c in counts]
        summary["volume_ml"]["target_shares"] = [round(1 / VOLUME_BINS, 4)] * VOLUME_BINS
        summary["volume_ml"]["outside_target_range"] = int(((volumes < low) | (volumes > high)).sum())
    if spec.hemisphere:
        summary["hemisphere"]["target"] = {k: spec.hemisphere.get(k, 0.0) for k in HEMISPHERES}
    if spec.region:
        summary["region"]["target"] = {k: spec.region.get(k, 0.0) for k in REGIONS}
    if spec.enhancing_fraction is not None:
        summary["enhancing_fraction"]["target_range"] = [spec.enhancing_fraction.low, spec.enhancing_fraction.high]
    return summary


def _table(name: str, achieved: dict[str, float], target: dict[str, float] | None) -> list[str]:
    lines = [f"| {name} | achieved | target |", "| --- | --- | --- |"]
    for key, value in achieved.items():
        lines.append(f"| {key} | {value:.3f} | {target[key]:.3f} |" if target else f"| {key} | {value:.3f} | - |")
    return lines


def write_report(root: Path, entries: list[dict[str, Any]], sampler: LabelMapSampler, seconds: float) -> dict[str, Any]:
    """Write ``report.json``, ``report.md`` and ``report.png`` into ``root``."""
    summary = summarise(entries, sampler)
    summary["seconds"] = round(seconds, 2)
    write_json(summary, root / "report.json")
    volume = summary["volume_ml"]
    lines = [
        f"# Label-map cohort: {summary['n']} maps",
        "",
        f"Made in {seconds:.1f} s ({seconds / max(summary['n'], 1):.2f} s per map, "
        f"{summary['mean_attempts']:.1f} draws per accepted map on average).",
        "",
        "## Tumor volume (ml)",
        "",
        f"Achieved: min {volume['achieved']['min']:.1f}, median {volume['achieved']['median']:.1f}, "
        f"max {volume['achieved']['max']:.1f}. Source tumors: "
        + ", ".join(f"{k} {v:.1f}" for k, v in volume["sources"].items())
        + ".",
        "",
    ]
    if "bins" in volume:
        lines += ["| bin (ml) | achieved | target |", "| --- | --- | --- |"]
        for i, (a, t) in enumerate(zip(volume["achieved_shares"], volume["target_shares"], strict=True)):
            lines.append(f"| {volume['bins'][i]:.1f}-{volume['bins'][i + 1]:.1f} | {a:.3f} | {t:.3f} |")
        lines += ["", f"Maps outside the target range (within tolerance): {volume['outside_target_range']}.", ""]
    hemisphere, region = summary["hemisphere"], summary["region"]
    lines += ["## Hemisphere", "", *_table("side", hemisphere["achieved"], hemisphere.get("target"))]
    lines += ["", "## Region", "", *_table("region", region["achieved"], region.get("target"))]
    ef = summary["enhancing_fraction"]
    lines += [
        "",
        "## Enhancing fraction",
        "",
        f"Achieved range {ef['achieved']['min']:.3f}-{ef['achieved']['max']:.3f}"
        + (f"; target range {ef['target_range'][0]}-{ef['target_range'][1]}." if "target_range" in ef else "."),
        "",
        "![distributions](report.png)",
        "",
    ]
    with atomic_path(root / "report.md") as tmp:
        tmp.write_text("\n".join(lines))
    _plot(root / "report.png", entries, summary)
    return summary


def _plot(path: Path, entries: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    # a Figure without pyplot never switches the backend of the user's process (a notebook's inline figures)
    from matplotlib.figure import Figure

    achieved = [e["record"]["achieved"] for e in entries]
    fig = Figure(figsize=(16, 3.6))
    axes = fig.subplots(1, 4)
    volumes = [a["volume_ml"] for a in achieved]
    bins = summary["volume_ml"].get("bins") or 12
    axes[0].hist(volumes, bins=bins, color="tab:blue", alpha=0.8, label="achieved")
    if "target_shares" in summary["volume_ml"]:
        edges = summary["volume_ml"]["bins"]
        target_counts = [s * len(volumes) for s in summary["volume_ml"]["target_shares"]]
        axes[0].stairs(target_counts, edges, color="k", label="target")
    for v in summary["volume_ml"]["sources"].values():
        axes[0].axvline(v, color="tab:red", ls=":", lw=1)
    axes[0].set(title="tumor volume (ml); red: real sources", xlabel="ml", ylabel="maps")
    axes[0].legend(fontsize=8)
    for ax, key, names in ((axes[1], "hemisphere", HEMISPHERES), (axes[2], "region", REGIONS)):
        x = np.arange(len(names))
        ax.bar(x - 0.2, [summary[key]["achieved"][n] for n in names], 0.4, label="achieved")
        if "target" in summary[key]:
            ax.bar(x + 0.2, [summary[key]["target"][n] for n in names], 0.4, color="k", alpha=0.6, label="target")
        ax.set_xticks(x, names, rotation=30 if len(names) > 2 else 0)
        ax.set(title=key, ylabel="share")
        ax.legend(fontsize=8)
    axes[3].hist([a["fractions"]["et"] for a in achieved], bins=12, color="tab:green")
    axes[3].set(title="enhancing fraction of the tumor", xlabel="fraction")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
