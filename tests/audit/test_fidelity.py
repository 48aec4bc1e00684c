"""Tumor fidelity on hand-built per-case stats."""

from __future__ import annotations

from medsynth.audit.fidelity import tumor_fidelity


def test_tumor_fidelity_hand_built(tumor_case):
    synthetic = [tumor_case(20.0, "right", "deep"), tumor_case(0.0, "none", "none")]
    tumor = tumor_fidelity([tumor_case(10.0), tumor_case(30.0)], [], synthetic)
    assert tumor["volume_ml"]["training"] == {"cases": 2, "mean": 20.0, "min": 10.0, "max": 30.0}
    assert tumor["volume_ml"]["held_out"] is None
    assert tumor["volume_ml"]["wasserstein"] == {"synthetic_vs_training": 10.0, "held_out_vs_training": None}
    assert tumor["subregion_fractions"]["et"]["synthetic"] == 0.3  # the tumor-free case does not count
    assert tumor["location"]["hemisphere"]["synthetic"] == {"none": 1, "right": 1}
    assert tumor["location"]["region"]["training"] == {"frontal": 2}
