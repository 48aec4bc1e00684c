"""Realism measures on phantoms built here: a C2ST of real vs real sits near its control, of noise near 1.0;
the grid index, power spectrum and gradient ratios see the artefacts they are for; the case-level bootstrap
is deterministic and holds its estimate."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

import medsynth.audit.realism as realism
from medsynth.audit.realism import (
    CaseArrays,
    band_power,
    c2st,
    c2st_with_baselines,
    case_bootstrap_auc,
    gaussian_render,
    grid_artifact_index,
    realism_report,
    texture_report,
)
from medsynth.audit.report import _realism_lines
from medsynth.audit.verdicts import _realism

SHAPE = (32, 32, 32)
SPACING = (2.0, 2.0, 2.0)
FAST = {"patch": 16, "patches_per_case": 6, "steps": 100, "bootstrap_samples": 200}  # a few seconds per C2ST


def textured_phantom(seed: int, shape: tuple[int, int, int] = SHAPE) -> CaseArrays:
    """A 2-modality brain: WM core, GM shell, CSF rim, a netc/et/snfh tumor, and smooth texture like a scan's."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    radius = np.sqrt((grid**2).sum(0)) * (1 + 0.05 * rng.standard_normal())
    label = np.where(radius < 0.5, 3, np.where(radius < 0.7, 2, 1)) * (radius < 0.85)
    centre = np.array([0.3, 0.0, 0.1]) + 0.08 * rng.standard_normal(3)
    tumor = np.sqrt(((grid - centre[:, None, None, None]) ** 2).sum(0))
    label[(tumor < 0.3) & (label > 0)] = 5
    label[(tumor < 0.2) & (label > 0)] = 6
    label[(tumor < 0.1) & (label > 0)] = 4
    means = np.array([[0, -1.5, 0.2, 0.9, -0.5, 0.4, 1.8], [0, -1.0, 0.6, 0.1, 0.8, 1.5, 1.0]])
    images = []
    for channel in range(2):
        # as in scans: each subject's own class levels (partial volume at edges), a smooth bias field,
        # fine texture, a little noise
        levels = means[channel] + 0.15 * rng.standard_normal(7)
        bias = gaussian_filter(rng.standard_normal(shape), 6.0)
        texture = gaussian_filter(rng.standard_normal(shape), 1.0)
        fields = gaussian_filter(levels[label], 0.7) + 0.3 * bias / bias.std() + 0.05 * texture / texture.std()
        images.append(fields + 0.02 * rng.standard_normal(shape))
    images = np.stack(images).astype(np.float32) * (label > 0)
    return CaseArrays(f"p{seed}", images, label.astype(np.int64))


@pytest.fixture(scope="module")
def phantoms() -> list[CaseArrays]:
    return [textured_phantom(seed) for seed in range(12)]


def test_real_vs_real_c2st_sits_near_its_control_below_the_gaussian_floor(phantoms):
    real, planted = phantoms[:6], phantoms[6:]
    result = c2st_with_baselines(real[:4], real[4:], planted, control_folds=2, seed=0, **FAST)
    test, floor = result["test"]["all"]["auc"], result["floor"]["all"]["auc"]
    low, high = result["control"]["all"]["auc_range"]  # 1 subject per group: a wide control
    assert abs(test - 0.5) < 0.3 and low - 0.2 < test < high + 0.2, (test, low, high)
    assert floor > 0.9 and floor > test + 0.2, (floor, test)
    assert any("not 0.5" in note for note in result["notes"])


def test_noise_is_told_apart_from_real_patches(phantoms):
    real, planted = phantoms[:6], phantoms[6:]

    noise = [
        CaseArrays(
            f"n{c.case_id}", np.random.default_rng(i).normal(size=c.images.shape).astype(np.float32), c.label_map
        )
        for i, c in enumerate(planted)
    ]
    result = c2st(real[:4], noise[:3], real[4:], noise[3:], seed=0, **FAST)
    assert result["all"]["auc"] > 0.95 and result["tumor"]["auc"] > 0.9 and result["healthy"]["auc"] > 0.9
    assert result["all"]["ci95"][0] <= result["all"]["auc"] <= result["all"]["ci95"][1]


def test_c2st_is_deterministic_and_refuses_a_case_on_both_sides(phantoms):
    first = c2st(phantoms[:2], phantoms[2:4], phantoms[4:5], phantoms[5:7], seed=3, **{**FAST, "steps": 5})
    again = c2st(phantoms[:2], phantoms[2:4], phantoms[4:5], phantoms[5:7], seed=3, **{**FAST, "steps": 5})
    assert first == again
    with pytest.raises(ValueError, match="more than one group"):
        c2st(phantoms[:2], phantoms[1:3], phantoms[4:5], phantoms[5:7], **FAST)


def test_case_bootstrap_interval_holds_the_estimate_and_is_seeded():
    rng = np.random.default_rng(0)
    real = [rng.normal(0, 1, 8) + rng.normal() for _ in range(5)]
    synthetic = [rng.normal(0.7, 1, 8) + rng.normal() for _ in range(6)]
    auc, (low, high) = case_bootstrap_auc(real, synthetic, samples=500, seed=1)
    assert low <= auc <= high and high - low > 0.05  # cases, not patches: a wide interval
    assert case_bootstrap_auc(real, synthetic, samples=500, seed=1) == (auc, (low, high))
    assert case_bootstrap_auc(real, synthetic, samples=500, seed=2) != (auc, (low, high))
    assert case_bootstrap_auc([], synthetic) == (None, None)


def test_grid_index_sees_a_nearest_neighbour_grid_and_not_a_smooth_field():
    rng = np.random.default_rng(0)
    smooth = gaussian_filter(rng.standard_normal((48, 48, 48)), 1.0)
    coarse = gaussian_filter(rng.standard_normal((16, 16, 16)), 1.0)
    upsampled = coarse.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    assert (
        grid_artifact_index(upsampled + 0.01 * rng.standard_normal(upsampled.shape), np.ones(upsampled.shape, bool))
        > 1.05
    )
    mask = np.ones(smooth.shape, bool)
    assert grid_artifact_index(upsampled, np.ones(upsampled.shape, bool)) > 1.05
    assert grid_artifact_index(smooth, mask) == pytest.approx(1.0, abs=0.03)
    assert grid_artifact_index(smooth, np.zeros_like(mask)) is None


def test_a_blurred_copy_has_less_fine_power_and_gradient(phantoms):
    real = phantoms[:4]
    blurred = [
        CaseArrays(f"b{c.case_id}", np.stack([gaussian_filter(i, 1.0) for i in c.images]), c.label_map) for c in real
    ]
    fine, coarse = (
        band_power(real[0].images[0], real[0].brain, SPACING),
        band_power(blurred[0].images[0], real[0].brain, SPACING),
    )
    assert coarse[0] < 0.5 * fine[0]
    report = texture_report(real[:3], real[3:], blurred, SPACING, ["t1c", "flair"])
    measures = report["measures"]
    assert measures["power/t1c/4-8mm"]["ratio"] < 0.5
    assert measures["local_sd/flair/gm"]["ratio"] < 0.8
    assert all(measures[f"gradient/t1c/{c}"]["ratio"] < 1 for c in ("csf", "gm", "wm", "netc", "snfh", "et"))
    low, high = measures["gradient/t1c/wm"]["real_spread"]
    assert low < 1 < high  # each real subject against the other training subjects: the spread to read beside
    assert report["grid_index"]["real_range"][1] < 1.05


def test_gaussian_render_keeps_class_statistics(phantoms):
    rendered = gaussian_render(phantoms[:1], phantoms[:3], seed=0)[0]
    wm = phantoms[0].label_map == 3
    reference = np.concatenate([p.images[0][p.label_map == 3] for p in phantoms[:3]])
    assert rendered.images[0][wm].mean() == pytest.approx(reference.mean(), abs=0.05)
    assert np.all(rendered.images[:, phantoms[0].label_map == 0] == 0)


def test_the_report_section_and_verdict_read_the_numbers(phantoms):
    section = realism_report(
        phantoms[:3], phantoms[3:5], phantoms[5:9], SPACING, ["t1c", "flair"], control_folds=1, seed=0, **FAST
    )
    section = json.loads(json.dumps(section))  # as report.json holds it
    row = _realism(section)
    assert row["verdict"] == "INFO" and "C2ST AUC" in row["basis"] and "Gaussian floor" in row["basis"]
    markdown = "\n".join(_realism_lines(section))
    assert "| all | " in markdown and "| t1c/wm | " in markdown and "| t1c/4-8mm | " in markdown
    assert "not 0.5" in markdown

    blocky = [
        CaseArrays(c.case_id, c.images[:, ::2, ::2, ::2].repeat(2, 1).repeat(2, 2).repeat(2, 3), c.label_map)
        for c in phantoms[5:9]
    ]
    section = realism_report(phantoms[:3], phantoms[3:5], blocky, SPACING, c2st_run=False)
    row = _realism(section)
    assert row["verdict"] == "WARN" and "grid artefact" in row["basis"] and "switched off" in row["basis"]
    assert "switched off" in "\n".join(_realism_lines(section))
    assert _realism(None)["verdict"] == "NOT RUN" and _realism_lines(False) == []


def test_the_c2st_needs_two_held_out_subjects(phantoms):
    result = realism.c2st_with_baselines(phantoms[:3], phantoms[3:4], phantoms[4:8], **FAST)
    assert result["test"] is result["control"] is result["floor"] is None
    assert "needs 2 held-out subjects" in result["notes"][-1]


@pytest.mark.slow  # an audit of the tiny cohort, with the C2ST forced on 1 held-out subject
def test_the_audit_writes_the_realism_section(prepared_phantoms, tiny_cohort, tmp_path, monkeypatch):
    from medsynth.audit.config import AuditConfig, RealismConfig
    from medsynth.audit.run import run_audit

    monkeypatch.setattr(realism, "MIN_HELD_OUT", 1)  # the phantoms hold 1 held-out subject
    config = AuditConfig(
        real_manifest=str(prepared_phantoms),
        cohort=str(tiny_cohort),
        feature_steps=5,
        realism=RealismConfig(patch=16, patches_per_case=4, steps=10, control_folds=1, bootstrap_samples=50),
    )
    report = run_audit(config, tmp_path / "audit")
    summary = json.loads(report.with_name("report.json").read_text())
    c2st = summary["realism"]["c2st"]
    assert c2st["test"]["eval_cases"] == [1, 2] and c2st["control"]["subjects_per_group"] == 1
    assert summary["realism"]["texture"]["grid_index"]["real_range"] is not None
    assert summary["verdicts"]["realism"]["verdict"] in {"INFO", "WARN"}
    markdown = report.read_text()
    assert "## Realism: can a classifier tell synthetic patches from real ones?" in markdown
    assert "| Realism (classifier test, texture) |" in markdown
