"""The verdict rules: one verdict and its basis per check of an audit summary.

PASS / WARN / FAIL read as "nothing found" / "look here" / "copies found", measured against the
real-vs-real baseline where there is one; NOT RUN / NOT AVAILABLE when a check could not run;
INFO where there is nothing to judge. The report states these rules beside the verdicts.
"""

from __future__ import annotations

from typing import Any

# Verdict rules (see `verdicts`); the floors keep a near-zero real-vs-real baseline from failing everything.
INTENSITY_FLOOR = 0.1  # Wasserstein distance of z-scored intensities below which two classes look alike
VOLUME_FLOOR_SHARE = 0.1  # tumor volume: Wasserstein floor as a share of the mean training volume
FRACTION_FLOOR = 0.05  # sub-region fractions: Wasserstein floor
FRECHET_RATIO_LIMIT = 1.5  # synthetic-vs-training Frechet distance, as a multiple of the held-out baseline
SSIM_MARGIN = 0.05  # synthetic mean pairwise SSIM may exceed the real one by this much
MEMBERSHIP_AUC_WARN = 0.8  # with fewer than MEMBERSHIP_MIN_SUBJECTS per group, an AUC this high is a warning sign
MEMBERSHIP_MIN_SUBJECTS = 10
DCR_ALPHA = 0.05  # distance to closest record: p-value below which synthetic cases sit closer than held-out subjects
GRID_INDEX_MARGIN = 0.05  # realism: a synthetic grid index this far above every real subject's is a 2-voxel grid
C2ST_FLOOR_WEAK = 0.9  # realism: a Gaussian floor below this AUC means the classifier is too weak to judge


def _within(distance: float | None, baseline: float | None, floor: float) -> bool | None:
    """Is ``distance`` as small as the real-vs-real ``baseline`` (or ``floor``, whichever is larger)?"""
    if distance is None:
        return None
    return distance <= max(baseline or 0.0, floor)


def _membership_against_control(auc: float, control: dict[str, Any], described: str) -> dict[str, str]:
    """The attack means something only when its AUC exceeds what splitting one group alone gives."""
    beside = (
        f"{described}; a split of one group alone gives up to {control['control_auc']:.2f} "
        f"({control['quantile']:.0%} of splits at or below), reaching the attack's AUC in "
        f"{control['share_at_least_attack']:.0%}"
    )
    if control["exceeds_control"]:
        return {"verdict": "WARN", "basis": f"{beside}: a membership signal beyond the split control"}
    if auc >= MEMBERSHIP_AUC_WARN:
        return {
            "verdict": "WARN",
            "basis": f"{beside}: inconclusive, the split alone produces an AUC this high with these few subjects",
        }
    return {"verdict": "PASS", "basis": f"{beside}: no membership signal beyond the split control"}


def _closest_record(d: dict[str, Any]) -> dict[str, str]:
    """Synthetic cases closer to the training subjects than held-out subjects are: a copying signal."""
    if d["p_value"] is None:
        return {"verdict": "NOT RUN", "basis": d["reason"]}
    basis = (
        f"one-sided Mann-Whitney p = {d['p_value']:.3f}, P[synthetic closer than held-out] = "
        f"{d['closer_probability']:.2f} ({d['synthetic_cases']} synthetic vs {d['held_out_subjects']} held-out)"
    )
    if d["p_value"] < DCR_ALPHA:
        return {"verdict": "WARN", "basis": f"{basis}: synthetic cases sit closer to the training subjects"}
    if d["smallest_p"] >= DCR_ALPHA:
        return {
            "verdict": "INFO",
            "basis": f"{basis}: too few cases to test (smallest possible p {d['smallest_p']:.3f})",
        }
    return {"verdict": "PASS", "basis": f"{basis}: not closer than held-out subjects"}


def _realism(r: dict[str, Any] | None) -> dict[str, str]:
    """INFO with the numbers to read (a C2ST AUC with a few subjects is a measurement, not a test); WARN only
    for a grid artefact, a concrete defect that real scans do not show."""
    if r is None:
        return {"verdict": "NOT RUN", "basis": "realism.enabled is false"}
    parts, verdict = [], "INFO"
    c2st, grid = r["c2st"], r["texture"]["grid_index"]
    test = c2st["test"]
    if test is None or test["all"]["auc"] is None:
        parts.append("C2ST " + c2st["notes"][-1])
    else:
        auc, (low, high) = test["all"]["auc"], test["all"]["ci95"]
        text = f"C2ST AUC {auc:.2f} (95% CI {low:.2f}-{high:.2f})"
        control = (c2st["control"] or {}).get("all")
        if control:
            c_low, c_high = control["auc_range"]
            text += f", real-vs-real control {c_low:.2f}-{c_high:.2f}"
            if low > c_high:
                text += " (told apart beyond patient differences)"
            elif auc <= c_high:
                text += " (within what patient differences give)"
        floor = c2st["floor"]["all"]["auc"] if c2st["floor"] else None
        if floor is not None:
            text += f", Gaussian floor {floor:.2f}"
            if floor < C2ST_FLOOR_WEAK:
                text += " (classifier too weak to judge: raise realism.steps)"
        parts.append(text)
    if grid["synthetic_mean"] is not None:
        real = grid["real_range"]
        parts.append(
            f"grid index {grid['synthetic_mean']:.3f} (max {grid['synthetic_max']:.3f}; real "
            + ("-" if real is None else f"{real[0]:.3f}-{real[1]:.3f}")
            + ")"
        )
        limit = max(real[1] if real else 1.0, 1.0) + GRID_INDEX_MARGIN
        if grid["synthetic_mean"] > limit:
            verdict = "WARN"
            parts[-1] += f": a 2-voxel grid artefact (above {limit:.3f})"
    return {"verdict": verdict, "basis": "; ".join(parts)}


def verdicts(s: dict[str, Any]) -> dict[str, dict[str, str]]:
    """One verdict and its basis per check of an audit summary; the rules are in the report's Summary.

    PASS / WARN / FAIL read as "nothing found" / "look here" / "copies found", measured against
    the real-vs-real baseline where there is one. They are guides: a PASS is no proof of
    fidelity or privacy, and with a handful of subjects a single subject moves every figure.
    """
    result = {}
    m = s["memorization"]
    result["memorization"] = {
        "verdict": "FAIL" if m["flagged"] else "PASS",
        "basis": f"{len(m['flagged'])}/{len(m['cases'])} synthetic cases reach the copy threshold NCC "
        f"{m['threshold_ncc']:.3f} (highest {max((c['ncc'] for c in m['cases']), default=float('nan')):.3f})",
    }

    mi = s["membership_inference"]
    if not mi:
        result["membership_inference"] = {"verdict": "NOT RUN", "basis": "needs --generator and held-out subjects"}
    else:
        (low, high), subjects = mi["ci95"], min(len(mi["training_scores"]), len(mi["held_out_scores"]))
        auc = f"AUC {mi['auc']:.2f} (95% CI {low:.2f}-{high:.2f}, {subjects} subjects in the smaller group)"
        control = mi.get("split_control")
        if control and control["control_auc"] is not None:
            result["membership_inference"] = _membership_against_control(mi["auc"], control, auc)
        elif low > 0.5:
            result["membership_inference"] = {
                "verdict": "WARN",
                "basis": f"{auc}: training subjects are reproduced better than held-out ones",
            }
        elif mi["auc"] >= MEMBERSHIP_AUC_WARN and subjects < MEMBERSHIP_MIN_SUBJECTS:
            result["membership_inference"] = {
                "verdict": "WARN",
                "basis": f"{auc}: a warning sign; too few subjects for the interval to mean anything",
            }
        else:
            result["membership_inference"] = {"verdict": "PASS", "basis": f"{auc}: no detectable membership signal"}
        if control and control["control_auc"] is None:
            result["membership_inference"]["basis"] += f"; split control {control['reason']}"
    if "distance_to_closest_record" in s:
        result["distance_to_closest_record"] = _closest_record(s["distance_to_closest_record"])

    fidelity = s["fidelity_wasserstein"]
    close = {
        k: _within(v["synthetic_vs_training"], v["held_out_vs_training"], INTENSITY_FLOOR) for k, v in fidelity.items()
    }
    furthest = max(fidelity, key=lambda k: fidelity[k]["synthetic_vs_training"], default=None)
    basis = f"{sum(close.values())}/{len(close)} modality/classes within max(held-out baseline, {INTENSITY_FLOOR})"
    if furthest is not None:
        baseline = fidelity[furthest]["held_out_vs_training"]
        basis += (
            f"; furthest {furthest}: {fidelity[furthest]['synthetic_vs_training']:.3f} "
            f"(baseline {'-' if baseline is None else format(baseline, '.3f')})"
        )
    result["intensity_fidelity"] = {
        "verdict": f"{'PASS' if close and all(close.values()) else 'WARN'} {sum(close.values())}/{len(close)}",
        "basis": basis,
    }

    fid = s["fidelity_features"]["frechet"]
    if "held_out_vs_training" not in fid:
        result["feature_fidelity"] = {"verdict": "NOT RUN", "basis": "no held-out subjects for a baseline"}
    else:
        ratio = fid["synthetic_vs_training"] / max(fid["held_out_vs_training"], 1e-12)
        result["feature_fidelity"] = {
            "verdict": "PASS" if ratio <= FRECHET_RATIO_LIMIT else "WARN",
            "basis": f"Frechet distance synthetic vs training {fid['synthetic_vs_training']:.3f} = {ratio:.2f}x "
            f"the held-out baseline {fid['held_out_vs_training']:.3f} (PASS up to {FRECHET_RATIO_LIMIT}x)",
        }

    tumor = s["fidelity_tumor"]
    volume = tumor["volume_ml"]
    volume_floor = VOLUME_FLOOR_SHARE * volume["training"]["mean"]
    quantities = {
        "volume": _within(
            volume["wasserstein"]["synthetic_vs_training"], volume["wasserstein"]["held_out_vs_training"], volume_floor
        ),
        **{
            f"{sub} fraction": _within(
                v["wasserstein"]["synthetic_vs_training"], v["wasserstein"]["held_out_vs_training"], FRACTION_FLOOR
            )
            for sub, v in tumor["subregion_fractions"].items()
        },
    }
    measured = {k: v for k, v in quantities.items() if v is not None}
    off = [k for k, v in measured.items() if not v]
    result["tumor_fidelity"] = {
        "verdict": f"{'WARN' if off or not measured else 'PASS'} {len(measured) - len(off)}/{len(measured)}",
        "basis": f"whole-tumor volume and sub-region fractions within max(held-out baseline, floor) "
        f"(floors {volume_floor:.1f} ml, {FRACTION_FLOOR})" + (f"; off: {', '.join(off)}" if off else ""),
    }

    d = s["diversity"]
    if d["synthetic_mean_ssim"] is None or d["real_mean_ssim"] is None:
        result["diversity"] = {"verdict": "NOT RUN", "basis": "fewer than two synthetic or real volumes"}
    else:
        diverse = d["synthetic_mean_ssim"] <= d["real_mean_ssim"] + SSIM_MARGIN
        result["diversity"] = {
            "verdict": "PASS" if diverse else "WARN",
            "basis": f"mean pairwise SSIM synthetic {d['synthetic_mean_ssim']:.3f} vs real {d['real_mean_ssim']:.3f}"
            + ("" if diverse else ": less diverse than real patients"),
        }

    k = s["k_anonymity"]
    if k["available"]:
        result["k_anonymity"] = {
            "verdict": f"INFO (k = {k['k']})",
            "basis": f"smallest group of cases sharing all descriptive attributes: {k['k']} of {k['cases']} cases, "
            f"{k['groups']} groups",
        }
    else:
        result["k_anonymity"] = {"verdict": "NOT AVAILABLE", "basis": k["reason"]}
    if "realism" in s:
        result["realism"] = _realism(s["realism"])
    return result
