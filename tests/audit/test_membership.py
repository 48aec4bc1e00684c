"""Membership inference that means something: the split control and the distance-to-closest-record test.

Tiny seeded volumes built on the fly: a planted leak (synthetic cases = near-copies of the members)
against independent synthetic data; every real subject scored, as the attack does, by its
similarity to the synthetic cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from medsynth.audit.fidelity import tumor_fidelity
from medsynth.audit.membership import c_t_statistic, dcr_test, split_control, zu_statistic
from medsynth.audit.privacy import auc_with_ci, similarity
from medsynth.audit.report import _closest_record_lines, _split_control_lines
from medsynth.audit.verdicts import verdicts


def volumes(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` independent (1, 8, 8, 8) 'scans': smooth random fields, non-zero everywhere."""
    return [rng.normal(size=(1, 8, 8, 8)).cumsum(axis=1).astype(np.float32) + 10 for _ in range(n)]


def cohorts(leak: bool, members: int = 8, non_members: int = 8, seed: int = 0):
    """(members, non-members, synthetic): synthetic = noisy copies of the members, or fresh volumes."""
    rng = np.random.default_rng(seed)
    training, held_out = volumes(members, rng), volumes(non_members, rng)
    if leak:
        synthetic = [v + rng.normal(0, 0.1, v.shape).astype(np.float32) for v in training]
    else:
        synthetic = volumes(members, rng)
    return training, held_out, synthetic


def nearest(volume: np.ndarray, references: list[np.ndarray]) -> tuple[int, float]:
    """(index, NCC) of the reference most similar to ``volume``."""
    scores = [similarity(volume, r) for r in references]
    return int(np.argmax(scores)), float(max(scores))


def attack(training, held_out, synthetic) -> tuple[list[float], list[float], float]:
    """Each real subject's score: NCC to its nearest synthetic case; the attack's AUC."""
    positives = [nearest(v, synthetic)[1] for v in training]
    negatives = [nearest(v, synthetic)[1] for v in held_out]
    return positives, negatives, auc_with_ci(positives, negatives, n_boot=200)[0]


def closest_record(training, held_out, synthetic) -> dict:
    return dcr_test(
        [1 - nearest(v, training)[1] for v in synthetic], [1 - nearest(v, training)[1] for v in held_out], "1 - NCC"
    )


def test_a_planted_leak_exceeds_the_split_control():
    positives, negatives, auc = attack(*cohorts(leak=True))
    control = split_control(positives, negatives, auc)
    assert auc == 1.0
    assert control["exceeds_control"] and control["control_auc"] < 1.0
    assert control["share_at_least_attack"] < 0.05  # a split of 8 into 4 and 4 reaches 1.0 in 2 of 70 splits
    assert control["groups"]["training"]["splits"] == 70 and control["groups"]["training"]["halves"] == [4, 4]
    assert control["mann_whitney_p"] < 0.001


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_independent_synthetic_data_stays_within_the_split_control(seed):
    positives, negatives, auc = attack(*cohorts(leak=False, seed=seed))
    control = split_control(positives, negatives, auc)
    assert not control["exceeds_control"]
    assert control["share_at_least_attack"] > 0.05
    assert 0.7 < control["control_auc"] < 1.0


def test_on_exchangeable_scores_the_control_is_centred_at_chance():
    scores = list(np.random.default_rng(0).normal(size=9))
    control = split_control(scores, scores[:5], attack_auc=0.5)
    assert control["groups"]["training"]["halves"] == [4, 5]
    # every split and its mirror image: a split alone is as often above 0.5 as below
    assert control["share_at_least_attack"] == pytest.approx(0.5, abs=0.1)
    assert control["groups"]["held_out"]["share_at_least_attack"] == pytest.approx(0.5, abs=0.1)


def test_many_subjects_are_split_at_random_up_to_max_splits():
    scores = list(np.random.default_rng(0).normal(size=30))
    control = split_control(scores, scores, attack_auc=0.5, max_splits=300)
    assert control["groups"]["training"]["splits"] == 300
    assert 0.55 < control["control_auc"] < 0.75


def test_a_planted_leak_gives_a_small_dcr_p_value_and_independent_data_a_large_one():
    leak = closest_record(*cohorts(leak=True))
    assert leak["p_value"] < 0.001 and leak["closer_probability"] == 1.0
    assert leak["c_t"] < -3 and leak["smallest_p"] == pytest.approx(1 / 12870, rel=1e-3)
    independent = closest_record(*cohorts(leak=False))
    assert independent["p_value"] > 0.05 and abs(independent["c_t"]) < 2


def test_c_t_is_z_u_in_one_cell_and_a_weighted_average_over_cells():
    held_out, synthetic = [1.0, 1.2, 2.0, 2.2], [0.1, 0.2, 3.0, 3.1]
    assert c_t_statistic(held_out, synthetic) == pytest.approx(zu_statistic(held_out, synthetic))
    cells = [0, 0, 1, 1]  # cell 0 copied (Z_U < 0), cell 1 underfit (Z_U > 0), equal held-out shares
    copied, underfit = zu_statistic(held_out[:2], synthetic[:2]), zu_statistic(held_out[2:], synthetic[2:])
    assert copied < 0 < underfit
    assert c_t_statistic(held_out, synthetic, cells, cells) == pytest.approx((copied + underfit) / 2)
    assert c_t_statistic(held_out, synthetic, cells, cells, tau=0.5) is None  # no cell holds over half the cases
    assert c_t_statistic(held_out[:2], synthetic, [0, 0], cells) == pytest.approx(
        zu_statistic(held_out[:2], synthetic[:2])
    )  # cell 1 has no held-out data: left out


@pytest.mark.parametrize(
    ("members", "non_members", "defined_groups"),
    [(1, 1, []), (1, 3, ["held_out"]), (2, 1, ["training"])],
)
def test_degenerate_sizes_say_undefined_instead_of_raising(members, non_members, defined_groups):
    training, held_out, synthetic = cohorts(leak=True, members=members, non_members=non_members)
    positives, negatives, auc = attack(training, held_out, synthetic)
    control = split_control(positives, negatives, auc)
    assert [g for g, v in control["groups"].items() if v] == defined_groups
    if not defined_groups:
        assert control["control_auc"] is None and control["exceeds_control"] is None
        assert control["reason"].startswith("undefined")
    assert json.dumps(control)  # report.json material
    record = closest_record(training, held_out, synthetic)
    assert record["smallest_p"] == pytest.approx(1 / math.comb(members + non_members, non_members), rel=1e-3)
    nothing = dcr_test([0.1], [], "1 - NCC")
    assert nothing["p_value"] is None and nothing["reason"].startswith("undefined")
    assert _closest_record_lines(nothing)[-1].startswith("Not run: undefined")
    assert any("Split control" in line for line in _split_control_lines({"split_control": control}))


def summary(split: dict | None, record: dict | None, auc: float = 1.0, ci95=(1.0, 1.0)) -> dict:
    """A hand-built audit summary with what `verdicts` reads."""
    case = {"case_id": "c", "volume_ml": 10.0, "hemisphere": "left", "region": "frontal"}
    case["fractions"] = {"netc": 0.1, "snfh": 0.6, "et": 0.3}
    result = {
        "memorization": {"flagged": [], "cases": [{"ncc": 0.1}], "threshold_ncc": 0.9},
        "membership_inference": {
            "auc": auc,
            "ci95": list(ci95),
            "training_scores": [0.0] * 4,
            "held_out_scores": [0.0] * 2,
            "split_control": split,
        },
        "fidelity_wasserstein": {},
        "fidelity_features": {"frechet": {}},
        "fidelity_tumor": tumor_fidelity([case], [case], [case]),
        "diversity": {"synthetic_mean_ssim": None, "real_mean_ssim": None},
        "k_anonymity": {"available": False, "reason": "-"},
    }
    if record is not None:
        result["distance_to_closest_record"] = record
    return result


@pytest.mark.parametrize(
    ("auc", "control_scores", "expected", "said"),
    [
        (1.0, ([0.9, 0.8, 0.7, 0.6], [0.2, 0.1]), "WARN", "inconclusive"),  # 2 v 2: the split alone reaches 1.0
        (0.5, ([0.9, 0.8, 0.7, 0.6], [0.2, 0.1]), "PASS", "no membership signal beyond"),
        (1.0, (list(range(8)), list(range(8))), "WARN", "beyond the split control"),  # 4 v 4 halves: < 1.0
        (1.0, ([0.9], [0.1]), "WARN", "split control undefined"),  # the old rules, and why
    ],
)
def test_the_membership_verdict_reads_the_attack_against_the_control(auc, control_scores, expected, said):
    control = split_control(*control_scores, attack_auc=auc)
    row = verdicts(summary(control, None, auc=auc))["membership_inference"]
    assert row["verdict"] == expected and said in row["basis"]


@pytest.mark.parametrize(
    ("synthetic", "held_out", "expected"),
    [
        ([0.01] * 8, [0.4] * 3, "WARN"),  # every case closer than every held-out subject, p = 1/165
        ([0.5, 0.3, 0.6, 0.2] * 2, [0.4] * 3, "PASS"),
        ([0.01] * 4, [0.4], "INFO"),  # 4 cases vs 1 held-out subject: p cannot go below 1/5
        ([0.01] * 4, [], "NOT RUN"),
    ],
)
def test_the_closest_record_verdict(synthetic, held_out, expected):
    row = verdicts(summary(None, dcr_test(synthetic, held_out, "1 - NCC")))["distance_to_closest_record"]
    assert row["verdict"] == expected
    assert "distance_to_closest_record" not in verdicts(summary(None, None))  # hand-built summaries without it


@pytest.mark.slow  # an audit with a generator, about a minute on 2 cores
def test_the_audit_reports_the_control_and_the_closest_record_test(
    prepared_phantoms, tiny_generator, tiny_cohort, tmp_path
):
    from medsynth.audit.config import AuditConfig
    from medsynth.audit.run import run_audit

    config = AuditConfig(
        real_manifest=str(prepared_phantoms),
        cohort=str(tiny_cohort),
        generator=str(tiny_generator),
        feature_steps=5,
        membership_draws=1,
        bootstrap_samples=50,
    )
    report = run_audit(config, tmp_path / "audit")
    summary = json.loads(report.with_name("report.json").read_text())
    control = summary["membership_inference"]["split_control"]  # 3 training subjects, 1 held-out
    assert control["groups"]["held_out"] is None and control["groups"]["training"]["halves"] == [1, 2]
    assert summary["distance_to_closest_record"]["held_out_subjects"] == 1
    assert summary["verdicts"]["membership_inference"]["verdict"] in {"PASS", "WARN"}
    assert "split of one group alone" in summary["verdicts"]["membership_inference"]["basis"]
    markdown = report.read_text()
    assert "Split control: the same AUC between two halves of one group" in markdown
    assert "### Distance to closest record" in markdown and "smallest possible p is 0.2" in markdown
