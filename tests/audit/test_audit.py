"""Audit: metric functions on hand-built cases; a planted copy is flagged, an independent cohort is not;
the report's verdicts, tumor fidelity and k-anonymity; a saved feature network is reused."""

from __future__ import annotations

import json
import re
import shutil

import nibabel as nib
import numpy as np
import pytest

from medsynth.audit.privacy import auc_with_ci, ncc, similarity
from medsynth.audit.run import tumor_fidelity, verdicts
from medsynth.cli import main
from medsynth.data.manifest import load_manifest, manifest_cases


def test_ncc_hand_built():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(1, 8, 8, 8))
    mask = np.ones((8, 8, 8), bool)
    assert ncc(a, a, mask) == pytest.approx(1.0)
    assert ncc(a, -a, mask) == pytest.approx(-1.0)
    assert ncc(a, 3 * a + 2, mask) == pytest.approx(1.0)
    assert similarity(a[:, ::-1], a) == pytest.approx(1.0)  # a mirrored copy is still a copy


def test_auc_hand_built():
    assert auc_with_ci([3, 4], [1, 2])[0] == 1.0
    assert auc_with_ci([1, 2], [3, 4])[0] == 0.0
    auc, (low, high) = auc_with_ci([1, 2, 3], [1, 2, 3])
    assert auc == 0.5 and low <= 0.5 <= high


@pytest.fixture(scope="module")
def phantom_audit(prepared_phantoms, tiny_cohort, tmp_path_factory):
    """The CLI audit of the tiny cohort against the phantoms, with a 5-step feature network (kept fast)."""
    output = tmp_path_factory.mktemp("phantom_audit")
    command = ["audit", "--real", str(prepared_phantoms), "--synthetic", str(tiny_cohort), "-o", str(output)]
    assert main([*command, "--feature-steps", "5"]) == 0
    return output


def test_report_has_a_verdict_per_check_tumor_fidelity_and_k_anonymity(phantom_audit):
    report = json.loads((phantom_audit / "report.json").read_text())
    assert report["memorization"]["flagged"] == []
    assert {"fidelity_features", "fidelity_tumor", "k_anonymity", "verdicts"} <= set(report)
    verdicts = report["verdicts"]
    assert list(verdicts) == [
        "memorization",
        "membership_inference",
        "intensity_fidelity",
        "feature_fidelity",
        "tumor_fidelity",
        "diversity",
        "k_anonymity",
    ]
    assert verdicts["memorization"]["verdict"] == "PASS"
    assert verdicts["membership_inference"]["verdict"] == "NOT RUN"  # no --generator
    assert re.fullmatch(r"(PASS|WARN) \d+/12", verdicts["intensity_fidelity"]["verdict"])  # 2 modalities x 6 classes
    assert verdicts["feature_fidelity"]["verdict"] in {"PASS", "WARN"}
    assert "x the held-out baseline" in verdicts["feature_fidelity"]["basis"]
    assert re.fullmatch(r"(PASS|WARN) \d/4", verdicts["tumor_fidelity"]["verdict"])  # volume + 3 sub-regions

    tumor = report["fidelity_tumor"]
    assert [tumor["volume_ml"][g]["cases"] for g in ("training", "held_out", "synthetic")] == [3, 1, 4]
    assert all(tumor["volume_ml"][g]["min"] > 0 for g in ("training", "held_out", "synthetic"))
    assert tumor["volume_ml"]["wasserstein"]["held_out_vs_training"] is not None
    assert set(tumor["subregion_fractions"]) == {"netc", "snfh", "et"}
    assert sum(tumor["location"]["hemisphere"]["synthetic"].values()) == 4

    k = report["k_anonymity"]
    assert k["available"] and k["cases"] == 4 and k["k"] >= 1
    assert all(g["count"] == k["k"] for g in k["smallest_groups"])
    assert verdicts["k_anonymity"]["verdict"] == f"INFO (k = {k['k']})"

    markdown = (phantom_audit / "report.md").read_text()
    assert markdown.index("## Summary") < markdown.index("## Memorization")
    assert "| check | verdict | basis |" in markdown
    assert "## Fidelity: tumor volume, sub-regions and location" in markdown
    assert f"**k = {k['k']}** over 4 cases" in markdown
    diversity = markdown.split("## Diversity", 1)[1].splitlines()[2]
    assert re.match(r"Synthetic \d\.\d{3}, real \d\.\d{3} ", diversity)
    assert (phantom_audit / "report.png").stat().st_size > 0


def test_cli_reuses_a_saved_feature_network_and_a_hand_built_cohort_has_no_k(
    prepared_phantoms, tiny_cohort, phantom_audit, tmp_path
):
    hand_built = tmp_path / "hand_built"  # same cases, but not laid out by medsynth generate (no cases/)
    hand_built.mkdir()
    shutil.copytree(tiny_cohort / "cases", hand_built / "scans")
    manifest = (tiny_cohort / "manifest.json").read_text().replace('"cases/', '"scans/')
    (hand_built / "manifest.json").write_text(manifest)
    saved = phantom_audit / "feature_network.pt"
    command = ["audit", "--real", str(prepared_phantoms), "--synthetic", str(hand_built), "-o", str(tmp_path / "a")]
    assert main([*command, "--features", str(saved)]) == 0

    assert not (tmp_path / "a" / "feature_network.pt").exists()  # reused, not trained again
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    first = json.loads((phantom_audit / "report.json").read_text())
    assert str(saved) in report["fidelity_features"]["network"]
    assert report["fidelity_features"]["frechet"] == first["fidelity_features"]["frechet"]  # same cases, same network
    assert report["k_anonymity"]["available"] is False
    assert "cases: missing" in report["k_anonymity"]["reason"]
    assert report["verdicts"]["k_anonymity"]["verdict"] == "NOT AVAILABLE"
    assert "Not available: " in (tmp_path / "a" / "report.md").read_text()


def _stats(volume_ml: float, hemisphere: str = "left", region: str = "frontal", et: float = 0.3) -> dict:
    """Hand-built tumor stats of one case, as medsynth.labels.generate.tumor_stats returns them."""
    fractions = {"netc": 0.1, "snfh": round(0.9 - et, 4), "et": et}
    if not volume_ml:
        fractions = dict.fromkeys(fractions, 0.0)
    return {"case_id": "c", "volume_ml": volume_ml, "hemisphere": hemisphere, "region": region, "fractions": fractions}


def _summary(membership=None, synthetic_ssim=0.5, real_ssim=0.5, synthetic_volumes=(10.0, 20.0)) -> dict:
    """A hand-built audit summary: what `verdicts` reads, everything else left out."""
    return {
        "memorization": {"flagged": [], "cases": [{"ncc": 0.1}], "threshold_ncc": 0.9},
        "membership_inference": membership,
        "fidelity_wasserstein": {
            "t1c/wm": {"synthetic_vs_training": 0.05, "held_out_vs_training": 0.01},  # under the 0.1 floor
            "t1c/et": {"synthetic_vs_training": 0.30, "held_out_vs_training": 0.40},  # under the baseline
            "flair/et": {"synthetic_vs_training": 0.30, "held_out_vs_training": 0.05},  # over both
        },
        "fidelity_features": {"frechet": {"synthetic_vs_training": 3.0, "held_out_vs_training": 2.0}},
        "fidelity_tumor": tumor_fidelity(
            [_stats(10.0), _stats(20.0)], [_stats(15.0)], [_stats(v, "right") for v in synthetic_volumes]
        ),
        "diversity": {"synthetic_mean_ssim": synthetic_ssim, "real_mean_ssim": real_ssim},
        "k_anonymity": {"available": False, "reason": "x/cases: missing"},
    }


@pytest.mark.parametrize(
    ("auc", "ci95", "subjects", "expected"),
    [
        (0.5, [0.2, 0.8], 3, "PASS"),
        (0.9, [0.6, 1.0], 30, "WARN"),  # the interval lies above 0.5
        (0.85, [0.4, 1.0], 3, "WARN"),  # high AUC from too few subjects: a warning sign
        (0.85, [0.4, 1.0], 10, "PASS"),
        (0.1, [0.0, 0.3], 3, "PASS"),  # held-out reproduced better: no memorization signal
    ],
)
def test_membership_verdict(auc, ci95, subjects, expected):
    membership = {"auc": auc, "ci95": ci95, "training_scores": [0.0] * subjects, "held_out_scores": [0.0] * subjects}
    assert verdicts(_summary(membership))["membership_inference"]["verdict"] == expected


def test_hand_built_verdicts():
    v = verdicts(_summary())
    assert v["memorization"]["verdict"] == "PASS"
    assert v["membership_inference"]["verdict"] == "NOT RUN"
    assert v["intensity_fidelity"]["verdict"] == "WARN 2/3"
    assert "furthest" in v["intensity_fidelity"]["basis"]
    assert v["feature_fidelity"]["verdict"] == "PASS" and "1.50x" in v["feature_fidelity"]["basis"]
    assert v["tumor_fidelity"]["verdict"] == "PASS 4/4"  # same volumes and make-up; the side is not judged
    assert v["diversity"]["verdict"] == "PASS"
    assert v["k_anonymity"] == {"verdict": "NOT AVAILABLE", "basis": "x/cases: missing"}
    assert verdicts(_summary(synthetic_ssim=0.6))["diversity"]["verdict"] == "WARN"
    assert verdicts(_summary(synthetic_ssim=None))["diversity"]["verdict"] == "NOT RUN"
    assert verdicts(_summary(synthetic_volumes=(40.0, 0.0)))["tumor_fidelity"]["verdict"].startswith("WARN")


def test_tumor_fidelity_hand_built():
    synthetic = [_stats(20.0, "right", "deep"), _stats(0.0, "none", "none")]
    tumor = tumor_fidelity([_stats(10.0), _stats(30.0)], [], synthetic)
    assert tumor["volume_ml"]["training"] == {"cases": 2, "mean": 20.0, "min": 10.0, "max": 30.0}
    assert tumor["volume_ml"]["held_out"] is None
    assert tumor["volume_ml"]["wasserstein"] == {"synthetic_vs_training": 10.0, "held_out_vs_training": None}
    assert tumor["subregion_fractions"]["et"]["synthetic"] == 0.3  # the tumor-free case does not count
    assert tumor["location"]["hemisphere"]["synthetic"] == {"none": 1, "right": 1}
    assert tumor["location"]["region"]["training"] == {"frontal": 2}


def test_planted_copy_is_flagged_and_independent_cohort_is_not(prepared_phantoms, tiny_cohort, phantom_audit, tmp_path):
    assert json.loads((phantom_audit / "report.json").read_text())["memorization"]["flagged"] == []
    planted = tmp_path / "planted"
    shutil.copytree(tiny_cohort, planted)
    training = next(c for c in manifest_cases(load_manifest(prepared_phantoms)) if c.split == "train")
    victim = manifest_cases(load_manifest(planted / "manifest.json"))[1]
    rng = np.random.default_rng(0)
    for source, target in zip(training.images, victim.images, strict=True):
        image = nib.load(str(source))
        data = np.asarray(image.dataobj)[::-1]  # mirrored + noise: a lightly augmented copy
        data = (data + rng.normal(0, 0.05, data.shape) * (data != 0)).astype(np.float32)
        nib.save(nib.Nifti1Image(data, image.affine), str(target))
    command = ["audit", "--real", str(prepared_phantoms), "--synthetic", str(planted), "-o", str(tmp_path / "a")]
    assert main([*command, "--features", str(phantom_audit / "feature_network.pt")]) == 1
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["memorization"]["flagged"] == [victim.case_id]
    assert report["verdicts"]["memorization"]["verdict"] == "FAIL"
    assert "| Memorization (copy check) | **FAIL** |" in (tmp_path / "a" / "report.md").read_text()


def test_export_gate(prepared_phantoms, tiny_generator, tmp_path, monkeypatch):
    from medsynth.cohort.generate import generate_cohort
    from medsynth.errors import MedsynthError
    from medsynth.models.generator import Generator

    status = generate_cohort(tiny_generator, tmp_path / "ok", n=2, audit_against=prepared_phantoms, progress=False)
    assert status.finalized
    assert "Copy check before publication (PASS" in (tmp_path / "ok" / "README.md").read_text()

    training = next(c for c in manifest_cases(load_manifest(prepared_phantoms)) if c.split == "train")
    copy = np.stack([np.asarray(nib.load(str(p)).dataobj) for p in training.images])
    original = Generator.synthesize

    def copying(self, label_map, seed=None, affine=None):
        result = original(self, label_map, seed=seed, affine=affine)
        result.images = copy.copy()
        return result

    monkeypatch.setattr(Generator, "synthesize", copying)
    with pytest.raises(MedsynthError, match="not finalized"):
        generate_cohort(tiny_generator, tmp_path / "bad", n=1, audit_against=prepared_phantoms, progress=False)
    assert not (tmp_path / "bad" / "manifest.json").exists()
    status = generate_cohort(
        tiny_generator, tmp_path / "bad", n=1, audit_against=prepared_phantoms, allow_flagged=True, progress=False
    )
    assert status.finalized
    provenance = json.loads((tmp_path / "bad" / "cases" / "synth_00000" / "provenance.json").read_text())
    assert provenance["flagged_copy"] is True
