"""The audit report: ``report.md`` (a summary table of verdicts, then one section per check) and ``report.png``.

Rendering only: every number comes from the summary that :func:`medsynth.audit.run.run_audit`
writes as ``report.json``, so the markdown and the JSON cannot disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from medsynth.audit.fidelity import GROUPS
from medsynth.audit.verdicts import (
    C2ST_FLOOR_WEAK,
    DCR_ALPHA,
    FRACTION_FLOOR,
    FRECHET_RATIO_LIMIT,
    GRID_INDEX_MARGIN,
    INTENSITY_FLOOR,
    MEMBERSHIP_AUC_WARN,
    MEMBERSHIP_MIN_SUBJECTS,
    SSIM_MARGIN,
    VOLUME_FLOOR_SHARE,
)
from medsynth.io import atomic_path


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def write_markdown(path: Path, s: dict[str, Any]) -> None:
    m = s["memorization"]
    lines = [
        "# Audit of a synthetic cohort",
        "",
        f"Cohort `{s['cohort']}` against real `{s['real_manifest']}` (training subjects: "
        f"{', '.join(s['training_subjects'])}; held out: {', '.join(s['held_out_subjects']) or 'none'}).",
        "",
        *_summary_lines(s["verdicts"]),
        "## Memorization (copy check)",
        "",
        f"**{m['verdict']}.** A case is flagged when its copy similarity to a training scan reaches "
        f"{m['threshold_ncc']:.3f}. The similarity is the best correlation of rank-transformed intensities over "
        "each modality alone, the mirror, rotations up to 6 degrees, shifts up to 3 voxels, a blurred view of the "
        "training scan and patches of about a third of the brain (so a partial or one-modality copy counts); the "
        "threshold is the lowest per-disguise 5th percentile of disguised copies of the training scans "
        f"({min(m['augmented_copy_ncc']):.3f}-{max(m['augmented_copy_ncc']):.3f}"
        + (
            "; " + ", ".join(f"{k} {v['median']:.3f}" for k, v in m["calibration"].items()) + " median"
            if isinstance(m.get("calibration"), dict)
            and all(isinstance(v, dict) and "median" in v for v in m["calibration"].values())
            else ""
        )
        + "). Held-out real subjects reach "
        + (", ".join(f"{v:.3f}" for v in m["held_out_nearest_ncc"]) or "-")
        + f" (false-positive rate {_number(m['held_out_flag_rate'], 2)}"
        + (f"; {m['held_out_false_positive_note']}" if m.get("held_out_false_positive_note") else "")
        + ").",
        "",
        "| case | nearest training | similarity | feature distance | flagged |",
        "| --- | --- | --- | --- | --- |",
        *(
            f"| {c['case_id']} | {c['nearest_training']} | {c['ncc']:.3f} | {c.get('feature_distance', '-')} | "
            f"{'**yes**' if c['flagged'] else 'no'} |"
            for c in m["cases"]
        ),
        "",
        "Feature distance: Euclidean distance of the case's feature descriptor (mean and sd of the feature "
        "network's local features) to the nearest training subject's; lower = closer. For comparison, held-out "
        "real subjects: "
        + (", ".join(f"{v:.3f}" for v in m.get("held_out_nearest_feature_distance", [])) or "-")
        + "; augmented copies of training scans: "
        + (
            f"{min(m['augmented_copy_feature_distance']):.3f}-{max(m['augmented_copy_feature_distance']):.3f}"
            if m.get("augmented_copy_feature_distance")
            else "-"
        )
        + ". The verdict uses the copy similarity; the feature distance is a second view to read beside it (it "
        "summarises the whole brain, so a partial copy barely moves it).",
        "",
        "What it proves: no case is a near-copy (up to mirror, small rotation and shift, contrast, blur, a copied "
        "part or a copied modality) of a training "
        "scan. What it does not: that no training information leaks in subtler ways (e.g. a copied tumor shape "
        "in a new brain, or membership signals) - see membership inference, and train with DP for a guarantee.",
        "",
        "## Membership inference",
        "",
    ]
    mi = s["membership_inference"]
    if mi:
        lines += [
            f"AUC {mi['auc']:.2f} (95% bootstrap CI {mi['ci95'][0]:.2f}-{mi['ci95'][1]:.2f}; "
            f"{len(mi['training_scores'])} training vs {len(mi['held_out_scores'])} held-out subjects) for telling "
            "training from held-out subjects by how well the generator reproduces them from their own label maps "
            "(0.5 = no signal, 1.0 = training subjects always reproduced better: a memorization signal). Below ~10 "
            "subjects per group the bootstrap interval is not meaningful (resampling cannot break a perfect "
            "ordering): read the AUC as a warning sign, not a measurement.",
        ]
        lines += _split_control_lines(mi)
    else:
        lines += ["Not run (pass --generator and have held-out subjects)."]
    lines += _closest_record_lines(s.get("distance_to_closest_record"))
    lines += [
        "",
        "## Fidelity: Wasserstein distance of intensities (lower = closer to the training subjects)",
        "",
        "| modality/class | synthetic vs training | held-out vs training (baseline) |",
        "| --- | --- | --- |",
        *(
            f"| {k} | {v['synthetic_vs_training']:.3f} | "
            f"{'-' if v['held_out_vs_training'] is None else format(v['held_out_vs_training'], '.3f')} |"
            for k, v in s["fidelity_wasserstein"].items()
        ),
        "",
        "A synthetic distance near the held-out baseline means the class looks as real as another patient's.",
        "",
        *_feature_lines(s["fidelity_features"]),
        *_tumor_lines(s["fidelity_tumor"]),
        "## Diversity: mean SSIM between pairs (lower = more diverse)",
        "",
        f"Synthetic {_number(s['diversity']['synthetic_mean_ssim'])}, real {_number(s['diversity']['real_mean_ssim'])} "
        "(mean SSIM over every pair of volumes and modality; '-': fewer than two volumes). Synthetic cases much more "
        "alike than real patients point to mode collapse; it says nothing about whether each case is realistic. "
        "Pairs here have different label maps, so most of their difference comes from the label maps; how much a "
        "generator varies for one label map (its latent) is measured by scripts/report_generators.py.",
        "",
        *_k_anonymity_lines(s["k_anonymity"]),
        *_realism_lines(s.get("realism", False)),
        "![Left: copy similarity to the nearest training scan. Right: whole-tumor volume per case](report.png)",
        "",
    ]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))


def _summary_lines(v: dict[str, dict[str, str]]) -> list[str]:
    names = {
        "memorization": "Memorization (copy check)",
        "membership_inference": "Membership inference",
        "distance_to_closest_record": "Membership: distance to closest record",
        "intensity_fidelity": "Fidelity: intensities per class",
        "feature_fidelity": "Fidelity: learned features",
        "tumor_fidelity": "Fidelity: tumor volume and sub-regions",
        "diversity": "Diversity",
        "k_anonymity": "k-anonymity",
        "realism": "Realism (classifier test, texture)",
    }
    return [
        "## Summary",
        "",
        "| check | verdict | basis |",
        "| --- | --- | --- |",
        *(f"| {names.get(key, key)} | **{row['verdict']}** | {row['basis']} |" for key, row in v.items()),
        "",
        "Verdicts are guides with fixed rules, not proofs: PASS means this check found nothing against the cohort, "
        "WARN means look at that section, FAIL means copies of training scans were found. With a handful of "
        "subjects one subject moves every figure. The rules:",
        "",
        "- memorization: FAIL when any synthetic case reaches the copy threshold, else PASS;",
        "- membership inference: WARN when the AUC's 95% CI lies above 0.5, or when the AUC is "
        f">= {MEMBERSHIP_AUC_WARN} with fewer than {MEMBERSHIP_MIN_SUBJECTS} subjects per group (a warning sign, "
        "not a measurement); PASS otherwise; NOT RUN without --generator or held-out subjects; with a split "
        "control (a group of at least 2 subjects): WARN when the AUC exceeds the control, WARN (inconclusive) when "
        f"it does not but is >= {MEMBERSHIP_AUC_WARN}, PASS otherwise;",
        f"- distance to closest record: WARN when p < {DCR_ALPHA} (synthetic cases closer to the training subjects "
        f"than held-out subjects), INFO when no result could reach p < {DCR_ALPHA} at these sizes, PASS otherwise; "
        "NOT RUN without held-out subjects;",
        "- intensities: a modality/class is as close as another patient when its synthetic-vs-training Wasserstein "
        f"distance is <= max(held-out baseline, {INTENSITY_FLOOR}); PASS n/N when all N are, else WARN n/N;",
        f"- learned features: PASS when the synthetic-vs-training Frechet distance is <= {FRECHET_RATIO_LIMIT}x the "
        "held-out baseline, else WARN;",
        "- tumor: whole-tumor volume and each sub-region fraction, same rule as intensities with floors "
        f"{VOLUME_FLOOR_SHARE:.0%} of the mean training volume and {FRACTION_FLOOR}; location is listed, not judged;",
        f"- diversity: PASS when the synthetic mean pairwise SSIM is <= the real one + {SSIM_MARGIN}, else WARN "
        "(less diverse than real patients);",
        "- k-anonymity: INFO, the value of k;",
        "- realism: INFO, the classifier two-sample AUC beside its real-vs-real control and Gaussian floor (with "
        "a few subjects a measurement to read, not a test); WARN only when the synthetic grid-artefact index "
        f"exceeds max(every real subject's, 1) + {GRID_INDEX_MARGIN} (a 2-voxel grid); NOT RUN when switched off.",
        "",
    ]


def _split_control_lines(mi: dict[str, Any]) -> list[str]:
    control = mi.get("split_control")
    if not control:
        return []
    if control["control_auc"] is None:
        return ["", f"Split control {control['reason']}: the AUC cannot be told from an artefact of the split."]
    percentile = f"{control['quantile']:.0%}".replace("%", "th percentile")
    groups = [
        f"{name.replace('_', '-')} {g['halves'][0]} vs {g['halves'][1]}, {g['splits']} splits, {percentile} "
        f"{g['control_auc']:.2f}"
        if g
        else f"{name.replace('_', '-')}: one subject, no split"
        for name, g in control["groups"].items()
    ]
    return [
        "",
        "Split control: the same AUC between two halves of one group, over every split ("
        + "; ".join(groups)
        + f"). A split alone gives up to {control['control_auc']:.2f} ({percentile} of all splits) and reaches "
        f"the attack's {control['attack_auc']:.2f} in {control['share_at_least_attack']:.0%} of splits: the attack "
        + ("exceeds" if control["exceeds_control"] else "does not exceed")
        + f" the control (one-sided Mann-Whitney p of the attack {_number(control['mann_whitney_p'])}). The AUC "
        "ranks subjects, so the control depends on the group sizes only: it is the AUC the split alone produces, "
        "and with a few subjects per group it reaches 1.00, which no attack can exceed.",
    ]


def _closest_record_lines(d: dict[str, Any] | None) -> list[str]:
    if d is None:
        return []
    lines = ["", "### Distance to closest record (Meehan et al. 2020, C_T test with one cell)", ""]
    if d["p_value"] is None:
        return [*lines, f"Not run: {d['reason']}."]
    return [
        *lines,
        f"Distance ({d['representation']}) of each synthetic case and each held-out real subject to its nearest "
        f"training subject: median {d['synthetic_median_distance']:.3f} synthetic ({d['synthetic_cases']} cases) vs "
        f"{d['held_out_median_distance']:.3f} held-out ({d['held_out_subjects']} subjects). P[a synthetic case is "
        f"closer than a held-out subject] = {d['closer_probability']:.2f} (0.5: as close as another patient); "
        f"one-sided Mann-Whitney p = {d['p_value']:.3f}, Z_U = C_T = {d['c_t']:.2f} (<< 0: data-copying).",
        "",
        f"What few subjects can show: with {d['held_out_subjects']} held-out subject(s) and {d['synthetic_cases']} "
        f"cases the smallest possible p is {d['smallest_p']:.3g}, so a cohort that sits closer to the training "
        "subjects than every held-out patient is detectable only when that is below 0.05; a small p says the cohort "
        "as a whole sits closer to the training subjects than these few patients do (or that they are unusual). "
        "What they cannot show: that no case is a copy (a few copies among many cases barely move the test; see the "
        "copy check), or a signal finer than the spread of the held-out distances; cases built on the same "
        "anatomy are not independent, so the p-value is optimistic.",
    ]


def _tumor_lines(t: dict[str, Any]) -> list[str]:
    volume, fractions, location = t["volume_ml"], t["subregion_fractions"], t["location"]
    labels = {"training": "training", "held_out": "held-out (baseline)", "synthetic": "synthetic"}
    lines = [
        "## Fidelity: tumor volume, sub-regions and location",
        "",
        "Per case, from its label map: whole-tumor volume (netc + snfh + et), the share of each sub-region in the "
        "tumor, and the hemisphere and region of the tumor's centre of mass. Wasserstein distances are to the "
        "training subjects; held-out vs training is the real-vs-real baseline.",
        "",
        "| group | cases | whole-tumor volume, mean (min-max) ml | Wasserstein to training (ml) |",
        "| --- | --- | --- | --- |",
    ]
    for name in GROUPS:
        row = volume[name]
        distance = volume["wasserstein"].get(f"{name}_vs_training")
        if row is None:
            lines.append(f"| {labels[name]} | 0 | - | - |")
            continue
        lines.append(
            f"| {labels[name]} | {row['cases']} | {row['mean']:.1f} ({row['min']:.1f}-{row['max']:.1f}) | "
            f"{_number(distance, 2)} |"
        )
    lines += [
        "",
        "| sub-region (mean share of the tumor) | training | held-out | synthetic | synthetic vs training | "
        "held-out vs training (baseline) |",
        "| --- | --- | --- | --- | --- | --- |",
        *(
            f"| {sub} | {_number(v['training'])} | {_number(v['held_out'])} | {_number(v['synthetic'])} | "
            f"{_number(v['wasserstein']['synthetic_vs_training'])} | "
            f"{_number(v['wasserstein']['held_out_vs_training'])} |"
            for sub, v in fractions.items()
        ),
        "",
        "| location (cases) | training | held-out | synthetic |",
        "| --- | --- | --- | --- |",
    ]
    for key, counts in location.items():
        values = sorted({value for group in counts.values() for value in group})
        lines += [
            f"| {key}: {value} | " + " | ".join(str(counts[name].get(value, 0)) for name in GROUPS) + " |"
            for value in values
        ]
    return [
        *lines,
        "",
        "What it shows: whether the cohort's tumors have the sizes, make-up and places of the training tumors. "
        "What it does not: it reads the label maps, the cohort's inputs (sampled or given), so it judges that stage, "
        "not the image generator; whether the images show those tumors convincingly is for the intensity and "
        "feature checks. Location counts of a few cases are listed for reading, not tested.",
        "",
    ]


def _k_anonymity_lines(k: dict[str, Any]) -> list[str]:
    lines = ["## k-anonymity of the cohort's descriptive attributes", ""]
    if not k["available"]:
        return [*lines, f"Not available: {k['reason']}.", ""]
    listed, total = len(k["smallest_groups"]), k["smallest_groups_total"]
    lines += [
        f"**k = {k['k']}** over {k['cases']} cases in {k['groups']} groups: k is the size of the smallest group of "
        "cases sharing the same descriptive attributes, so every case's attributes are shared by at least k cases"
        + (" (k = 1: some case is unique in them)" if k["k"] == 1 else "")
        + ". `medsynth generate --k-anonymity K` fills under-filled groups with newly sampled cases. Attributes:",
        "",
        *(f"- `{name}`: {meaning}" for name, meaning in k["attributes"].items()),
        "",
        f"Smallest groups ({total} of size {k['k']}" + (f", first {listed} listed" if listed < total else "") + "):",
        "",
        "| attributes | cases |",
        "| --- | --- |",
        *(
            f"| {', '.join(f'{a}={v}' for a, v in g['attributes'].items())} | {', '.join(g['case_ids'])} |"
            for g in k["smallest_groups"]
        ),
        "",
        "What it proves: knowing all these attributes of a case narrows the cohort down to no fewer than k cases. "
        "What it does not: anything about the images (see memorization) or about attributes not listed.",
        "",
    ]
    return lines


def _feature_lines(f: dict[str, Any]) -> list[str]:
    fid, mmd = f["frechet"], f["mmd"]
    lines = [
        "## Fidelity: Frechet distance and MMD of learned features (lower = closer)",
        "",
        f"Features: {f['network']}; {f['feature_dim']}-dimensional local features (one per brain position of the "
        f"deepest feature map, or per slice for 2.5D networks), {f['samples']['training']} training, "
        f"{f['samples']['synthetic']} synthetic, {f['samples']['held_out']} held-out samples. MMD is MONAI's "
        "unbiased linear-kernel MMD^2.",
        "",
        "| comparison | Frechet distance | MMD^2 |",
        "| --- | --- | --- |",
        f"| synthetic vs training | {fid['synthetic_vs_training']:.3f} | {mmd['synthetic_vs_training']:.4f} |",
    ]
    if "held_out_vs_training" in fid:
        lines += [
            f"| held-out vs training (real-vs-real baseline) | {fid['held_out_vs_training']:.3f} | "
            f"{mmd['held_out_vs_training']:.4f} |",
            f"| synthetic vs held-out | {fid['synthetic_vs_held_out']:.3f} | {mmd['synthetic_vs_held_out']:.4f} |",
            "",
            f"Synthetic-vs-training Frechet distance is "
            f"{fid['synthetic_vs_training'] / max(fid['held_out_vs_training'], 1e-12):.2f}x "
            "the held-out baseline: below 1 the synthetic cases sit closer to the training subjects than another "
            "patient does (good fidelity, but read it with the memorization section), far above 1 they do not look "
            "like these patients in the network's eyes. The feature network was trained on the training subjects, "
            "so held-out subjects are out-of-sample for it too.",
        ]
    return [*lines, ""]


def write_plot(path: Path, s: dict[str, Any]) -> None:
    # a Figure without pyplot never switches the backend of the user's process (a notebook's inline figures)
    from matplotlib.figure import Figure

    m = s["memorization"]
    fig = Figure(figsize=(11, 3.2))
    ax, tumor_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    ax.hist([c["ncc"] for c in m["cases"]], bins=20, range=(-0.2, 1), alpha=0.7, label="synthetic -> nearest training")
    ax.hist(m["augmented_copy_ncc"], bins=20, range=(-0.2, 1), alpha=0.7, label="disguised copies of training")
    for value in m["held_out_nearest_ncc"]:
        ax.axvline(value, color="tab:green", ls=":", lw=1.5)
    ax.axvline(m["threshold_ncc"], color="k", label="copy threshold")
    ax.set(xlabel="copy similarity (green: held-out real subjects)", ylabel="count")
    ax.legend(fontsize=7)
    # one dot per case: with a handful of subjects a histogram would hide more than it shows;
    # colours as on the left (training orange, held-out green, synthetic blue)
    jitter = np.random.default_rng(0)
    for row, (name, color) in enumerate(zip(GROUPS, ("tab:orange", "tab:green", "tab:blue"), strict=True)):
        volumes = [c["volume_ml"] for c in s["fidelity_tumor"]["cases"][name]]
        tumor_ax.scatter(volumes, row + jitter.uniform(-0.15, 0.15, len(volumes)), s=14, alpha=0.7, color=color)
    tumor_ax.set(yticks=range(len(GROUPS)), yticklabels=["training", "held-out", "synthetic"], ylim=(-0.5, 2.5))
    tumor_ax.set(xlabel="whole-tumor volume (ml)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)


def _auc_cell(run: dict[str, Any] | None, kind: str) -> str:
    if not run or run[kind]["auc"] is None:
        return "-"
    low, high = run[kind]["ci95"]
    return f"{run[kind]['auc']:.2f} ({low:.2f}-{high:.2f})"


def _realism_lines(r: dict[str, Any] | bool | None) -> list[str]:
    if r is False:  # a summary from before the realism section
        return []
    lines = ["## Realism: can a classifier tell synthetic patches from real ones?", ""]
    if r is None:
        return [*lines, "Not run (realism.enabled is false).", ""]
    c2st, texture = r["c2st"], r["texture"]
    test, control, floor = c2st["test"], c2st["control"], c2st["floor"]
    if test is None:
        lines += [f"Classifier two-sample test {c2st['notes'][-1]}.", ""]
    else:
        control_cells = [
            "-"
            if not control or not control[kind]
            else f"{control[kind]['auc_range'][0]:.2f}-{control[kind]['auc_range'][1]:.2f}"
            for kind in ("all", "tumor", "healthy")
        ]
        lines += [
            f"A small 3D CNN learned real (training subjects) vs synthetic {test['patch']}^3-voxel patches "
            f"({test['train_cases'][0]} real vs {test['train_cases'][1]} synthetic cases, {test['steps']} steps) and "
            f"scored patches of other cases ({test['eval_cases'][0]} held-out subject(s) vs {test['eval_cases'][1]} "
            "other synthetic cases): ROC AUC 0.5 = indistinguishable, 1.0 = always told apart. Tumor patches are "
            "centred on netc/snfh/et voxels, healthy ones away from the tumor. Intervals: 95% bootstrap over cases "
            "(not patches) on each side.",
            "",
            "| patches | C2ST AUC (95% CI) | real-vs-real control (range over folds) | Gaussian floor (95% CI) |",
            "| --- | --- | --- | --- |",
            *(
                f"| {kind} | {_auc_cell(test, kind)} | {cell} | {_auc_cell(floor, kind)} |"
                for kind, cell in zip(("all", "tumor", "healthy"), control_cells, strict=True)
            ),
            "",
            "Control: the same test with real subjects on both sides (four disjoint groups of "
            + (f"{control['subjects_per_group']} subject(s), {len(control['folds'])} fold(s)" if control else "-")
            + "): what patient differences alone give. Floor: every synthetic case replaced by its label map "
            "rendered voxel by voxel from N(mean, sd) of each class in the training subjects, an obviously "
            f"unrealistic generator; a floor below {C2ST_FLOOR_WEAK} means the classifier is too weak to judge "
            "(raise realism.steps). Read the test between them: near the control, the cohort's patches pass for "
            "another patient's; near the floor, they are as easy to spot as noise.",
            "",
        ]
    lines += [f"Note: {note}." for note in c2st["notes"][:1]] + [""]
    grid = texture["grid_index"]
    measures = texture["measures"]
    lines += [
        "### Texture: synthetic / real ratios, beside the real-vs-real spread",
        "",
        f"Per case, then averaged per group; ratio = synthetic / training subjects (1 = alike). Real spread: each "
        "real subject's value / the mean of the other training subjects, min-max: a ratio inside it is as close "
        f"as another patient. Voxel size {'x'.join(f'{v:g}' for v in texture['spacing_mm'])} mm.",
        "",
        "| modality/class | gradient magnitude ratio | real spread | local SD (3x3x3) ratio | real spread |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key in (k.split("/", 1)[1] for k in measures if k.startswith("gradient/")):
        gradient, spread = measures[f"gradient/{key}"], measures.get(f"local_sd/{key}", {})
        lines.append(
            f"| {key} | {_number(gradient['ratio'], 2)} | {_spread(gradient)} | {_number(spread.get('ratio'), 2)} | "
            f"{_spread(spread)} |"
        )
    lines += [
        "",
        "| modality/wavelength band | power spectrum ratio | real spread |",
        "| --- | --- | --- |",
        *(
            f"| {key.split('/', 1)[1]} | {_number(m['ratio'], 2)} | {_spread(m)} |"
            for key, m in measures.items()
            if key.startswith("power/")
        ),
        "",
        "Radially averaged power spectrum of the brain (intensity minus its brain mean, zero outside) per "
        "wavelength band; below the real spread in the finest band: too blurry, above: too noisy. "
        f"Grid-artefact index (mean |step| at even over odd positions along each axis within one class, as "
        f"max(r, 1/r)): synthetic "
        f"{_number(grid['synthetic_mean'])} (max {_number(grid['synthetic_max'])}), real "
        + ("-" if grid["real_range"] is None else f"{grid['real_range'][0]:.3f}-{grid['real_range'][1]:.3f}")
        + " (~1.01 in scans; a 2-voxel grid from nearest-neighbour upsampling or transposed convolutions is clearly "
        "above).",
        "",
        "What it shows: whether patches and textures of the cohort can be told from a patient's, measured against "
        "what patients differ by. What it does not: whole-volume anatomy (a plausible patch can sit in an "
        "implausible brain) or clinical usefulness; with few real subjects every figure moves with one subject.",
        "",
    ]
    return lines


def _spread(m: dict[str, Any]) -> str:
    spread = m.get("real_spread")
    return "-" if not spread else f"{spread[0]:.2f}-{spread[1]:.2f}"
