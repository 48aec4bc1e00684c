"""Benchmark outputs: per-subject CSV, summary JSON, a Markdown report, a plot and forest plots.

Statistics per test family (``in_domain``: each fold's own test subjects; ``external``: the
external set, tested by every fold's segmenter), arm and region (:mod:`medsynth.benchmark.stats`):

- mean over test subjects with a 95% bootstrap CI; a subject's seeds (and folds, on the
  external set) are averaged first, and subjects are resampled;
- against the baseline arm, the paired difference (same fold, same seed, same subject),
  averaged per subject, with its bootstrap CI, a Wilcoxon signed-rank p over subjects, and a
  verdict: ``real`` when the CI excludes 0 and p < 0.05, else ``noise`` (:func:`~medsynth.benchmark.stats.verdict`);
- mean +- sd over every (seed, subject) value, and the seed-to-seed sd, as before.

The pre-declared primary endpoint (``primary`` in the config) is stated first, before any number.
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from medsynth.benchmark.config import ArmConfig, BenchmarkConfig
from medsynth.benchmark.stats import Interval, bootstrap_ci, forest_plot, paired_differences, verdict, wilcoxon_p
from medsynth.config import to_dict
from medsynth.io import atomic_path, write_json
from medsynth.manifest import provenance

REGIONS = ("WT", "TC", "ET")
TESTS = ("in_domain", "external")
FIELDS = ("arm", "fold", "seed", "test", "case_id", "brats_name", "region", "dice", "hd95_mm")
METRICS = {"dice": "Dice", "hd95_mm": "HD95 (mm)"}


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def flatten(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (arm, fold, seed, test family, subject, region)."""
    return [
        {
            "arm": r["arm"]["name"],
            "fold": r.get("fold"),
            "seed": r["seed"],
            "test": m.get("test", "in_domain"),
            **{k: m[k] for k in FIELDS[4:]},
        }
        for r in results
        for m in r["metrics"]
    ]


def _values(rows: list[dict[str, Any]], arm: str, region: str, metric: str) -> dict[tuple[str, str], float]:
    """(subject, replicate) -> value; the replicate is the (fold, seed) segmenter that scored the subject."""
    return {
        (r["case_id"], f"{r['fold']}/{r['seed']}"): r[metric] for r in rows if r["arm"] == arm and r["region"] == region
    }


def _by_subject(values: dict[tuple[str, str], float]) -> dict[str, list[float]]:
    grouped: dict[str, list[float]] = defaultdict(list)
    for (subject, _), value in sorted(values.items()):
        grouped[subject].append(value)
    return grouped


def _ci(interval: Interval) -> list[float]:
    return [interval.low, interval.high]


def compare(rows: list[dict[str, Any]], arm: str, baseline: str, region: str, metric: str) -> dict[str, Any] | None:
    """Paired difference ``arm - baseline`` per subject: mean, bootstrap CI, Wilcoxon p, verdict."""
    differences = paired_differences(_values(rows, arm, region, metric), _values(rows, baseline, region, metric))
    if not differences:
        return None
    interval = bootstrap_ci(differences)
    p = wilcoxon_p([statistics.fmean(v) for v in differences.values()])
    verdict_ = verdict(interval, p)
    return {"mean": interval.mean, "ci": _ci(interval), "subjects": interval.n, "wilcoxon_p": p, "verdict": verdict_}


def _versus(rows: list[dict[str, Any]], arm: str, baseline: str, region: str) -> dict[str, Any]:
    """Paired comparison with ``baseline``: over pairs (mean, sd, wins) and over subjects (CI, p, verdict)."""
    entry: dict[str, Any] = {}
    for metric, key in (("dice", "dice"), ("hd95_mm", "hd95")):
        pairs = paired_differences(_values(rows, arm, region, metric), _values(rows, baseline, region, metric))
        flat = [d for values in pairs.values() for d in values]
        subjects = compare(rows, arm, baseline, region, metric) or {}
        entry |= {
            f"{key}_diff_mean": statistics.fmean(flat),
            f"{key}_diff_sd": _sd(flat),
            f"{key}_diff_subject_mean": subjects.get("mean"),
            f"{key}_diff_ci": subjects.get("ci"),
            f"{key}_wilcoxon_p": subjects.get("wilcoxon_p"),
            f"{key}_verdict": subjects.get("verdict"),
        }
        if metric == "dice":
            entry |= {"pairs": len(flat), "dice_wins": sum(d > 0 for d in flat)}
    return entry


def summarize(rows: list[dict[str, Any]], arms: list[str], baseline: str) -> dict[str, Any]:
    """Per arm and region (regions the test set has): means, CIs, sds, and the paired difference to ``baseline``."""
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
            dice_ci = bootstrap_ci(_by_subject(_values(rows, arm, region, "dice")))
            hd95_ci = bootstrap_ci(_by_subject(_values(rows, arm, region, "hd95_mm")))
            entry = {
                "n": len(mine),
                "seeds": len(per_seed),
                "subjects": dice_ci.n,
                "dice_mean": statistics.fmean(r["dice"] for r in mine),
                "dice_sd": _sd([r["dice"] for r in mine]),
                "dice_seed_sd": _sd([statistics.fmean(v) for v in per_seed.values()]),
                "dice_subject_mean": dice_ci.mean,
                "dice_ci": _ci(dice_ci),
                "hd95_mean": statistics.fmean(r["hd95_mm"] for r in mine),
                "hd95_sd": _sd([r["hd95_mm"] for r in mine]),
                "hd95_ci": _ci(hd95_ci),
            }
            if arm != baseline and compare(rows, arm, baseline, region, "dice"):
                entry["vs_baseline"] = _versus(rows, arm, baseline, region)
            summary[arm][region] = entry
    return summary


def primary_endpoint(config: BenchmarkConfig, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The declared primary comparison: the candidate chosen on the in-domain folds, tested on ``primary.test``."""
    primary = config.primary
    if not primary.candidates:
        return None
    in_domain = [r for r in rows if r["test"] == "in_domain"]
    sign = 1 if primary.metric == "dice" else -1  # higher Dice, lower HD95 is better
    choice: dict[str, float] = {}
    for arm in primary.candidates:
        values = _by_subject(_values(in_domain, arm, primary.region, primary.metric))
        if values:
            choice[arm] = bootstrap_ci(values).mean
    result: dict[str, Any] = {"declared": to_dict(primary), "in_domain_means": choice, "chosen": None}
    if not choice:
        return result
    chosen = max(choice, key=lambda a: sign * choice[a])
    tested = [r for r in rows if r["test"] == primary.test]
    comparison = compare(tested, chosen, primary.baseline, primary.region, primary.metric)
    result |= {"chosen": chosen, "comparison": comparison}
    return result


def _timings(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    grouped = defaultdict(list)
    for r in results:
        grouped[r["arm"]["name"]].append(r["timings"])
    keys = ("train_seconds", "predict_seconds", "external_seconds", "loader_wait_seconds")
    return {
        arm: {key: round(statistics.fmean(t.get(key, 0.0) for t in values), 2) for key in keys} | {"runs": len(values)}
        for arm, values in grouped.items()
    }


def _schedules(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Throughput per thread count: units, processes, wall span (first start to last finish) and units per hour.

    Units of one thread count that ran in several processes at once (``--shard``) share the span, so this
    compares e.g. one two-thread process with two one-thread shards on the same cores, when both did the same
    kind of work (the same arms). Units saved before start/finish times were recorded are left out.
    """
    grouped = defaultdict(list)
    for r in results:
        if "started" in r and "finished" in r:
            grouped[r["machine"]["cpu_threads"]].append(r)
    rows = []
    for threads, mine in sorted(grouped.items()):
        span = max(r["finished"] for r in mine) - min(r["started"] for r in mine)
        processes = {(r["process"]["host"], r["process"]["pid"]) for r in mine}
        rows.append(
            {
                "threads": threads,
                "units": len(mine),
                "processes": len(processes),
                "wall_seconds": round(span, 1),
                "units_per_hour": round(len(mine) / span * 3600, 2) if span > 0 else None,
                "arms": sorted({r["arm"]["name"] for r in mine}),
            }
        )
    return rows


def _preparation(results: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds spent making label maps and cohorts, summed over folds."""
    total: dict[str, float] = defaultdict(float)
    for r in results:
        for part, seconds in r.get("prepare_seconds", {}).items():
            total[part] += seconds
    return {k: round(v, 2) for k, v in sorted(total.items())}


def _interval(mean: float, ci: list[float], digits: int, signed: bool = False) -> str:
    sign = "+" if signed else ""
    return f"{mean:{sign}.{digits}f} [{ci[0]:{sign}.{digits}f}, {ci[1]:{sign}.{digits}f}]"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _primary_lines(config: BenchmarkConfig, primary: dict[str, Any] | None) -> list[str]:
    p = config.primary
    if not p.candidates:
        return ["Primary endpoint: none declared (`primary.candidates` is empty); every comparison is exploratory.", ""]
    lines = [
        "## Primary endpoint (declared in the config before the run)",
        "",
        f"{p.region} {METRICS[p.metric]} on the **{p.test.replace('_', '-')}** test set, paired difference of the "
        f"best of {', '.join(f'`{a}`' for a in p.candidates)} minus `{p.baseline}`; the candidate (synthetic "
        "fraction) is chosen on the in-domain folds' mean, never on the external set. Difference with a 95% "
        "bootstrap CI over test subjects and a Wilcoxon signed-rank p.",
        "",
    ]
    if p.test == "in_domain":
        lines += ["Note: chosen and tested on the same in-domain folds, so the difference is optimistic.", ""]
    if primary and primary.get("comparison"):
        c = primary["comparison"]
        choice = ", ".join(f"{a} {v:.3f}" for a, v in primary["in_domain_means"].items())
        lines += [
            f"Result: chosen `{primary['chosen']}` (in-domain means: {choice}); {p.region} "
            f"{METRICS[p.metric]} difference {_interval(c['mean'], c['ci'], 3, True)} over {c['subjects']} subjects, "
            f"Wilcoxon p {_p(c['wilcoxon_p'])}: **{c['verdict']}** "
            + ("(CI excludes 0, p < 0.05)." if c["verdict"] == "real" else "(not distinguishable from no difference)."),
            "",
        ]
    else:
        lines += ["Result: not available yet (units missing).", ""]
    return lines


def _family_lines(config: BenchmarkConfig, name: str, summary: dict, rows: list[dict], timings: dict) -> list[str]:
    arms = [a for a in config.arms if summary.get(a.name)]
    regions = [r for r in REGIONS if any(summary[a.name].get(r) for a in arms)]
    subjects = sorted({(r["case_id"], r["brats_name"]) for r in rows})
    title = {"in_domain": "In-domain test (each fold's own test subjects)", "external": "External test"}[name]
    lines = [
        f"## {title}",
        "",
        f"Test subjects: {', '.join(f'{c} ({b})' for c, b in subjects)}. Mean over subjects [95% bootstrap CI] "
        "(seeds averaged within subject), scored on the original grid of each test scan"
        + ("; whole-tumor-only references: WT only." if regions == ["WT"] else ":"),
        "",
        "| arm | training data | "
        + " | ".join(f"{r} Dice" for r in regions)
        + " | "
        + " | ".join(f"{r} HD95" for r in regions)
        + " | runs per subject |",
        "|---|---|" + "---|" * (2 * len(regions) + 1),
    ]
    for arm in arms:
        e = summary[arm.name]
        dice = [_interval(e[r]["dice_subject_mean"], e[r]["dice_ci"], 3) if e.get(r) else "-" for r in regions]
        hd = [_interval(e[r]["hd95_mean"], e[r]["hd95_ci"], 1) if e.get(r) else "-" for r in regions]
        runs = e[regions[0]]["n"] // max(1, e[regions[0]]["subjects"]) if e.get(regions[0]) else 0
        lines.append(f"| {arm.name} | {_describe(arm)} | " + " | ".join(dice + hd) + f" | {runs} |")
    lines += [
        "",
        f"Paired difference to `{config.baseline}` (same fold, seed and subject; averaged per subject): mean "
        "[95% CI], Wilcoxon p, and whether it is **real** (CI excludes 0 and p < 0.05) or **noise**:",
        "",
        "| arm | " + " | ".join(f"{r} ΔDice | p | verdict" for r in regions) + " |",
        "|---|" + "---|---|---|" * len(regions),
    ]
    for arm in arms:
        if arm.name == config.baseline:
            continue
        cells = []
        for region in regions:
            v = summary[arm.name].get(region, {}).get("vs_baseline")
            if v:
                cells += [_interval(v["dice_diff_subject_mean"], v["dice_diff_ci"], 3, True), _p(v["dice_wilcoxon_p"])]
                cells.append(v["dice_verdict"])
            else:
                cells += ["-", "-", "-"]
        lines.append(f"| {arm.name} | " + " | ".join(cells) + " |")
    lines += ["", f"Per test subject, Dice mean over seeds ({' / '.join(regions)}):", ""]
    lines += ["| arm | " + " | ".join(c for c, _ in subjects) + " |", "|---|" + "---|" * len(subjects)]
    for arm in arms:
        cells = []
        for case_id, _ in subjects:
            values = []
            for region in regions:
                mine = [
                    r["dice"]
                    for r in rows
                    if r["arm"] == arm.name and r["case_id"] == case_id and r["region"] == region
                ]
                values.append(f"{statistics.fmean(mine):.2f}" if mine else "-")
            cells.append(" / ".join(values))
        lines.append(f"| {arm.name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def markdown(
    config: BenchmarkConfig,
    summaries: dict[str, dict],
    primary: dict | None,
    timings: dict,
    preparation: dict,
    schedules: list[dict],
    rows: list[dict],
    machine: dict,
    missing: list[str],
) -> str:
    """The report: the primary endpoint first, setup, one section per test family, timings, definitions."""
    s = config.segmenter
    folds = "no cross-validation (one train/test split)"
    if config.folds.enabled:
        folds = f"{len({r['fold'] for r in rows}) or '?'} folds by subject (every subject tested once)"
    lines = ["# Segmentation benchmark", "", *_primary_lines(config, primary)]
    lines += [
        "## Setup",
        "",
        f"SegResNet (init_filters {s.init_filters}), region-based (WT/TC/ET sigmoid, DiceCE), {s.steps} steps of "
        f"batch {s.batch_size} x {'x'.join(map(str, s.patch_size))} patches, AdamW lr {s.lr} with poly decay; "
        f"seeds {config.seeds}; {folds}; input modalities {config.data.modalities or 'all'}. Test subjects are "
        f"never seen by the generators or segmenters of their fold (checked before training). Machine: "
        f"{machine['device']}, {machine.get('processor', '?')}, {machine['cpu_threads']} threads, "
        f"torch {machine['torch']}.",
        "",
    ]
    if missing:
        shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        lines += [f"**Incomplete**: {len(missing)} unit(s) missing ({shown}); numbers below use the finished ones.", ""]
    for name in TESTS:
        mine = [r for r in rows if r["test"] == name]
        if mine:
            lines += _family_lines(config, name, summaries[name], mine, timings)
    lines += [
        "## Timings",
        "",
        "Preparation (label maps, cohorts; summed over folds): "
        + (", ".join(f"{k} {v:.0f} s" for k, v in preparation.items()) or "none")
        + ". Per unit, mean seconds:",
        "",
        "| arm | runs | training | in-domain test | external test | loader wait |",
        "|---|---|---|---|---|---|",
    ]
    for arm, t in timings.items():
        lines.append(
            f"| {arm} | {t['runs']} | {t['train_seconds']:.0f} | {t['predict_seconds']:.0f} | "
            f"{t['external_seconds']:.0f} | {t['loader_wait_seconds']:.0f} |"
        )
    if len(schedules) > 1 or any(s["processes"] > 1 for s in schedules):
        lines += [
            "",
            "Schedules (units grouped by threads per process; processes of one group ran at once; "
            "compare only groups that ran the same arms):",
            "",
            "| threads per process | processes | units | wall (first start to last finish) | units per hour |",
            "|---|---|---|---|---|",
        ]
        for s in schedules:
            rate = "-" if s["units_per_hour"] is None else f"{s['units_per_hour']:.1f}"
            lines.append(
                f"| {s['threads']} | {s['processes']} | {s['units']} | {s['wall_seconds'] / 60:.1f} min | {rate} |"
            )
    lines += [
        "",
        "Definitions: WT = NETC+SNFH+ET, TC = NETC+ET, ET (BraTS 2023 labels 1, 2, 3). Dice and HD95 from MONAI; "
        "HD95 is the larger of the two directed 95th-percentile surface distances (mm; the official BraTS-evaluation "
        "package pools both directions, giving values <= these). Both masks empty: Dice 1, "
        "HD95 0; one empty: Dice 0, HD95 373.13 mm (BraTS). CIs: percentile bootstrap over test subjects "
        "(10,000 resamples, seeded), too narrow with a handful of subjects, hence 'real' also needs a Wilcoxon "
        "signed-rank p < 0.05 over subjects (impossible below 6 subjects); 'noise' means 'not shown', not 'no effect'. "
        "Predictions: `predictions/`, references: `references/`.",
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
    regions = [r for r in REGIONS if any(summary[a].get(r) for a in arms)]
    fig = Figure(figsize=(4 + 1.1 * len(arms) * 1.5, 7.5))
    axes = fig.subplots(2, len(regions), sharex=True, squeeze=False)
    rng = np.random.default_rng(0)
    for col, region in enumerate(regions):
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


def _forest(config: BenchmarkConfig, summary: dict, name: str, path: Path) -> Path | None:
    entries = []
    for arm in config.arms:
        for region in REGIONS:
            v = summary.get(arm.name, {}).get(region, {}).get("vs_baseline")
            if v:
                low, high = v["dice_diff_ci"]
                interval = Interval(v["dice_diff_subject_mean"], low, high, 0)
                entries.append((f"{arm.name} {region}", interval, v["dice_verdict"] == "real"))
    if not entries:
        return None
    title = f"{name.replace('_', '-')} test: Dice difference to {config.baseline} (95% CI; blue: real)"
    return forest_plot(entries, "paired Dice difference", title, path)


def write_outputs(
    config: BenchmarkConfig,
    output: Path,
    results: list[dict[str, Any]],
    machine: dict[str, Any],
    missing: list[str] | None = None,
) -> Path:
    """results.csv, results.json, report.md, benchmark.png and forest plots of finished ``results``; returns report.md.

    ``results.json``: ``summary`` (in-domain, per arm and region, as before), ``external`` (same
    shape, when there is an external set), ``primary``, ``timings``, ``preparation``, ``missing``, ``rows``.
    """
    rows = flatten(results)
    arms = [a.name for a in config.arms]
    families = {name: [r for r in rows if r["test"] == name] for name in TESTS}
    summaries = {name: summarize(mine, arms, config.baseline) for name, mine in families.items()}
    primary = primary_endpoint(config, rows)
    timings = _timings(results)
    preparation = _preparation(results)
    schedules = _schedules(results)
    with atomic_path(output / "results.csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    report = {
        "config": to_dict(config),
        "provenance": provenance(
            "benchmark", config=config, inputs=[p for p in (config.data.manifest, config.data.external) if p]
        ),
        "machine": machine,
        "primary": primary,
        "summary": summaries["in_domain"],
        "external": summaries["external"] if families["external"] else None,
        "timings": timings,
        "preparation": preparation,
        "schedules": schedules,
        "missing": list(missing or []),
        "rows": rows,
    }
    write_json(report, output / "results.json")
    with atomic_path(output / "report.md") as tmp:
        tmp.write_text(
            markdown(config, summaries, primary, timings, preparation, schedules, rows, machine, list(missing or []))
        )
    shown = "in_domain" if families["in_domain"] else "external"
    if families[shown]:
        plot(summaries[shown], families[shown], arms, config.baseline, output / "benchmark.png")
    for name in TESTS:
        if families[name]:
            _forest(config, summaries[name], name, output / f"forest_{name}.png")
    return output / "report.md"
