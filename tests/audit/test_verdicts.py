"""The verdict rules on hand-built audit summaries."""

from __future__ import annotations

import pytest

from medsynth.audit.fidelity import tumor_fidelity
from medsynth.audit.verdicts import verdicts


@pytest.fixture
def summary(tumor_case):
    def build(membership=None, synthetic_ssim=0.5, real_ssim=0.5, synthetic_volumes=(10.0, 20.0)) -> dict:
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
                [tumor_case(10.0), tumor_case(20.0)],
                [tumor_case(15.0)],
                [tumor_case(v, "right") for v in synthetic_volumes],
            ),
            "diversity": {"synthetic_mean_ssim": synthetic_ssim, "real_mean_ssim": real_ssim},
            "k_anonymity": {"available": False, "reason": "x/cases: missing"},
        }

    return build


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
def test_membership_verdict(summary, auc, ci95, subjects, expected):
    membership = {"auc": auc, "ci95": ci95, "training_scores": [0.0] * subjects, "held_out_scores": [0.0] * subjects}
    assert verdicts(summary(membership))["membership_inference"]["verdict"] == expected


def test_hand_built_verdicts(summary):
    v = verdicts(summary())
    assert v["memorization"]["verdict"] == "PASS"
    assert v["membership_inference"]["verdict"] == "NOT RUN"
    assert v["intensity_fidelity"]["verdict"] == "WARN 2/3"
    assert "furthest" in v["intensity_fidelity"]["basis"]
    assert v["feature_fidelity"]["verdict"] == "PASS" and "1.50x" in v["feature_fidelity"]["basis"]
    assert v["tumor_fidelity"]["verdict"] == "PASS 4/4"  # same volumes and make-up; the side is not judged
    assert v["diversity"]["verdict"] == "PASS"
    assert v["k_anonymity"] == {"verdict": "NOT AVAILABLE", "basis": "x/cases: missing"}
    assert verdicts(summary(synthetic_ssim=0.6))["diversity"]["verdict"] == "WARN"
    assert verdicts(summary(synthetic_ssim=None))["diversity"]["verdict"] == "NOT RUN"
    assert verdicts(summary(synthetic_volumes=(40.0, 0.0)))["tumor_fidelity"]["verdict"].startswith("WARN")
