"""medsynth's benchmark Dice/HD95 next to the official BraTS evaluation's (BraTS-evaluation, panoptica).

    $ bash scripts/check_brats_evaluation.sh RESULTS       # runs the tool, then this
    $ python3 scripts/compare_brats_evaluation.py RESULTS  # stdlib only, Python 3.9+

Reads RESULTS/results.csv and, for every arm/seed the tool was run on, RESULTS/brats_evaluation/
parsed_<arm>_seed<k>.csv (brats-parse-metrics) and summary_<arm>_seed<k>.json (brats-evaluate, for
PQ, region volumes, errors and missing predictions). Prints and writes comparison.md beside them:
one row per arm, seed, subject and region (WT, TC, ET = the tool's gli groups wt, tc, et).

- medsynth: whole-volume Dice and HD95 (MONAI; HD95 = the larger of the two directed 95th percentiles).
- global: the tool's whole-volume ("legacy") Dice and HD95; its HD95 is the 95th percentile of both
  directions' surface distances pooled, so it is at most medsynth's.
- lesion-wise: the tool's mean over matched lesions (connected components, matched by any overlap);
  unmatched lesions do not enter it, they are counted in TP/FP/FN. PQ = lesion-wise Dice x lesion F1.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

REGIONS = ("WT", "TC", "ET")
DICE_TOLERANCE = 1e-4  # float32 (MONAI) vs float64 (panoptica) round-off


def _float(text: str | None) -> float:
    """A CSV/JSON number; empty or missing -> nan."""
    if text is None or text == "":
        return math.nan
    return float(text)


def _fmt(value: float, digits: int, sign: bool = False) -> str:
    if math.isnan(value):
        return "–"
    if round(value, digits) == 0:
        value = 0.0  # no "-0.0000"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _subject(filename: str) -> str:
    """BraTS-GLI-00000-000-seg.nii.gz -> BraTS-GLI-00000-000 (the tool names subjects by reference file)."""
    return filename.removesuffix(".nii.gz").removesuffix("-seg")


def read_medsynth(results: Path) -> dict[tuple[str, str, str, str], dict[str, float]]:
    """{(arm, seed, brats_name, region): {"dice", "hd95"}} from results.csv."""
    rows = {}
    with open(results / "results.csv", newline="") as f:
        for row in csv.DictReader(f):
            key = (row["arm"], str(row["seed"]), row["brats_name"], row["region"])
            rows[key] = {"dice": _float(row["dice"]), "hd95": _float(row["hd95_mm"])}
    return rows


def read_official(out: Path, tag: str) -> tuple[dict[tuple[str, str], dict[str, float]], list[str]]:
    """{(brats_name, region): metrics} from one arm/seed's parsed CSV and summary JSON, plus problems."""
    official: dict[tuple[str, str], dict[str, float]] = {}
    with open(out / f"parsed_{tag}.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["subject_id"] in ("mean", "std", "median"):
                continue
            for region in REGIONS:
                r = region.lower()
                official[(_subject(row["subject_id"]), region)] = {
                    "dice": _float(row.get(f"global_dsc_{r}")),
                    "hd95": _float(row.get(f"global_hd95_{r}")),
                    "lw_dice": _float(row.get(f"lesionwise_dsc_mean_{r}")),
                    "lw_hd95": _float(row.get(f"lesionwise_hd95_mean_{r}")),
                    "tp": _float(row.get(f"all_instance_tp_{r}")),
                    "fp": _float(row.get(f"all_instance_fp_{r}")),
                    "fn": _float(row.get(f"all_instance_fn_{r}")),
                }
    problems = []
    summary = out / f"summary_{tag}.json"
    if summary.exists():
        data = json.loads(summary.read_text())
        for name in data.get("missings", []):
            problems.append(f"{_subject(name)}: no prediction found (the tool scores it Dice 0, HD95 373)")
            for region in REGIONS:
                official.setdefault((_subject(name), region), {})["missing"] = 1.0
        for subject in data.get("metrics", []):
            name = _subject(subject.get("subject_name", "?"))
            if "error" in subject:
                problems.append(f"{name}: evaluation failed: {subject['error']}")
                continue
            for region in REGIONS:
                group = subject.get(region.lower(), {})
                entry = official.setdefault((name, region), {})
                entry["pq_dice"] = _float(group.get("pq_dsc"))
                entry["vol_pred"] = _float(group.get("global_bin_volume_pred"))
                entry["vol_ref"] = _float(group.get("global_bin_volume_ref"))
    return official, problems


def _note(o: dict[str, float]) -> str:
    if o.get("missing"):
        return "no prediction"
    pred, ref = o.get("vol_pred", math.nan), o.get("vol_ref", math.nan)
    if pred == 0 and ref == 0:
        return "both empty"
    if pred == 0:
        return "prediction empty"
    if ref == 0:
        return "reference empty"
    return ""


def compare(results: Path) -> str:
    out = results / "brats_evaluation"
    tags = sorted(p.name.removeprefix("parsed_").removesuffix(".csv") for p in out.glob("parsed_*_seed*.csv"))
    if not tags:
        sys.exit(
            f"compare_brats_evaluation: no parsed_<arm>_seed<k>.csv in {out}; "
            "run scripts/check_brats_evaluation.sh first"
        )
    medsynth = read_medsynth(results)
    lines = [
        f"# medsynth vs the official BraTS evaluation: {results.name}",
        "",
        "Official = BraTS-evaluation (`brats-evaluate --config gli`, panoptica). Δ = official global − medsynth.",
        "Global = whole-volume; its HD95 pools both directions' surface distances before the 95th percentile",
        "(medsynth: larger of the two directed 95th percentiles). Lesion-wise = mean over matched lesions",
        "(connected components, any overlap); unmatched ones only count in TP/FP/FN. PQ = lesion-wise Dice × F1.",
        "Empty masks: the tool gives Dice NaN (–) when both are empty, HD95 373 when one is (medsynth 1/0 and 373.13).",
    ]
    dice_rows, dice_same, hd_rows, hd_le, hd_diffs = 0, 0, 0, 0, []
    all_problems = []
    body = []
    for tag in tags:
        arm, _, seed = tag.rpartition("_seed")
        official, problems = read_official(out, tag)
        all_problems += [f"{arm} seed {seed}: {p}" for p in problems]
        body += [
            "",
            f"## {arm}, seed {seed}",
            "",
            "| subject | region | Dice medsynth | Dice global | Δ | Dice lesion-wise | PQ | "
            "HD95 medsynth | HD95 global | Δ | HD95 lesion-wise | lesions TP/FP/FN | note |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
        ]
        subjects = sorted({name for (a, s, name, _) in medsynth if (a, s) == (arm, seed)} | {n for n, _ in official})
        for name in subjects:
            for region in REGIONS:
                m = medsynth.get((arm, seed, name, region), {})
                o = official.get((name, region), {})
                md, mh = m.get("dice", math.nan), m.get("hd95", math.nan)
                od, oh = o.get("dice", math.nan), o.get("hd95", math.nan)
                note = _note(o) if o else "not evaluated"
                if not m:
                    note = (note + "; " if note else "") + "not in results.csv"
                if not (math.isnan(md) or math.isnan(od)):
                    dice_rows += 1
                    dice_same += abs(od - md) <= DICE_TOLERANCE
                if not (math.isnan(mh) or math.isnan(oh)) and not note:
                    hd_rows += 1
                    hd_le += oh <= mh + 1e-3
                    hd_diffs.append(oh - mh)
                counts = "/".join(_fmt(o.get(k, math.nan), 0) for k in ("tp", "fp", "fn"))
                body.append(
                    f"| {name} | {region} | {_fmt(md, 4)} | {_fmt(od, 4)} | {_fmt(od - md, 4, True)} | "
                    f"{_fmt(o.get('lw_dice', math.nan), 4)} | {_fmt(o.get('pq_dice', math.nan), 4)} | "
                    f"{_fmt(mh, 2)} | {_fmt(oh, 2)} | {_fmt(oh - mh, 2, True)} | "
                    f"{_fmt(o.get('lw_hd95', math.nan), 2)} | {counts} | {note} |"
                )
    lines += [
        "",
        f"Whole-volume Dice: official = medsynth (±{DICE_TOLERANCE:g}) on {dice_same} of {dice_rows} comparable rows.",
    ]
    if hd_diffs:
        lines.append(
            f"Whole-volume HD95 (both masks non-empty): official ≤ medsynth on {hd_le} of {hd_rows} rows; "
            f"official − medsynth from {min(hd_diffs):+.2f} to {max(hd_diffs):+.2f} mm."
        )
    if all_problems:
        lines += ["", "Problems reported by the tool:", *[f"- {p}" for p in all_problems]]
    return "\n".join(lines + body) + "\n"


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python3 scripts/compare_brats_evaluation.py RESULTS")
    results = Path(sys.argv[1])
    if not (results / "results.csv").is_file():
        sys.exit(f"compare_brats_evaluation: {results} has no results.csv")
    report = compare(results)
    (results / "brats_evaluation" / "comparison.md").write_text(report)
    print(report, end="")


if __name__ == "__main__":
    main()
