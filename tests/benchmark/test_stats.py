"""The benchmark's statistics on hand-made numbers."""

import pytest

from medsynth.benchmark.stats import Interval, bootstrap_ci, paired_differences, verdict, wilcoxon_p


def test_bootstrap_ci_contains_the_mean_and_nests_seeds():
    values = {"a": [0.9, 0.9, 0.9, 0.9], "b": [0.5], "c": [0.7, 0.7]}
    interval = bootstrap_ci(values)
    assert interval.n == 3
    assert interval.mean == pytest.approx(0.7)  # subject means 0.9, 0.5, 0.7: a's four seeds count once
    assert 0.5 <= interval.low <= interval.mean <= interval.high <= 0.9
    assert bootstrap_ci(values) == interval  # seeded: the same report twice
    assert bootstrap_ci({"a": [0.8, 0.6]}) == Interval(0.7, 0.7, 0.7, 1)


@pytest.mark.parametrize(
    ("differences", "p"),
    [
        ([1, 2, 3, 4, 5, 6], 2 / 64),  # all positive: exact two-sided p = 2 * (1 / 2**6)
        ([0.1, -0.2, 0.3, 0.4, 0.5], 6 / 32),  # W- = 2: sign patterns with W <= 2 are {}, {1}, {2}
        ([0.0, 0.0, 0.0], 1.0),
    ],
)
def test_wilcoxon_matches_exact_values(differences, p):
    assert wilcoxon_p(differences) == pytest.approx(p)


def test_wilcoxon_needs_two_subjects():
    assert wilcoxon_p([0.3]) is None


def test_paired_differences_pair_same_subject_and_replicate():
    arm = {("s1", "0/0"): 0.8, ("s1", "0/1"): 0.6, ("s2", "1/0"): 0.5, ("s3", "1/0"): 0.9}
    baseline = {("s1", "0/0"): 0.7, ("s1", "0/1"): 0.7, ("s2", "1/0"): 0.4}
    differences = paired_differences(arm, baseline)
    assert sorted(differences) == ["s1", "s2"]  # s3 has no baseline value: unpaired, left out
    assert differences["s1"] == pytest.approx([0.1, -0.1]) and differences["s2"] == pytest.approx([0.1])


def test_verdict_is_real_only_when_ci_and_wilcoxon_agree():
    assert verdict(Interval(0.05, 0.01, 0.09, 6), 0.03125) == "real"
    assert verdict(Interval(-0.05, -0.09, -0.01, 6), 0.03125) == "real"
    assert verdict(Interval(0.02, -0.01, 0.05, 6), 0.03125) == "noise"
    # two subjects improving: the bootstrap CI excludes 0, but p is 0.5
    two = bootstrap_ci({"a": [0.1], "b": [0.2]})
    assert two.excludes_zero and verdict(two, wilcoxon_p([0.1, 0.2])) == "noise"
