"""The cohort stage's k-anonymity fill (end to end with the audit's measure: tests/audit/test_anonymity.py)."""

from __future__ import annotations

import json

import pytest

from medsynth.audit.anonymity import QuasiIdentifiers
from medsynth.cohort.anonymity import fill_seed, fill_to_k
from medsynth.cohort.generate import GenerateConfig, run_generate
from medsynth.errors import MedsynthError


def test_fill_seeds_are_deterministic_and_distinct():
    assert fill_seed(0, 4, 0) == fill_seed(0, 4, 0)
    assert len({fill_seed(0, 4, draw) for draw in range(25)} | {fill_seed(1, 4, 0), fill_seed(0, 5, 0)}) == 27


def test_a_requested_case_after_the_requested_ones_is_not_taken_for_a_fill_case(tiny_generator, tmp_path):
    cohort = tmp_path / "cohort"
    run_generate(GenerateConfig(str(tiny_generator), n=3, seed=0), cohort, progress=False)
    plan = json.loads((cohort / "cohort_plan.json").read_text())

    def never(*args):
        raise AssertionError("nothing is written")

    with pytest.raises(MedsynthError, match="synth_00002: not a k-anonymity case"):
        fill_to_k(cohort, plan, None, 2, 2, QuasiIdentifiers(), None, never, progress=False)
