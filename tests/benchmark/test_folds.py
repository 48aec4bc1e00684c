"""Folds by subject: every subject a test subject exactly once, deterministic, and the generator check."""

import pytest

from medsynth.benchmark.config import FoldsConfig
from medsynth.benchmark.folds import Fold, check_generator, make_folds
from medsynth.errors import ConfigError
from medsynth.loaders import LeakageError

SUBJECTS = [f"pat{i}" for i in range(6)]


@pytest.mark.parametrize(("k", "train_sizes"), [(2, {3}), (3, {4}), (4, {4, 5}), (6, {5})])
def test_every_subject_is_tested_once(k, train_sizes):
    folds = make_folds(SUBJECTS, FoldsConfig(k=k, seed=1))
    tested = [s for fold in folds for s in fold.test]
    assert sorted(tested) == SUBJECTS
    assert all(not set(f.train) & set(f.test) and sorted(f.train + f.test) == SUBJECTS for f in folds)
    assert {len(f.train) for f in folds} == train_sizes
    assert [f.test for f in make_folds(SUBJECTS, FoldsConfig(k=k, seed=1))] == [f.test for f in folds]


def test_explicit_folds_and_errors():
    folds = make_folds(SUBJECTS, FoldsConfig(test=[["pat0", "pat1"], ["pat2"]]))
    assert [f.name for f in folds] == ["fold0", "fold1"]
    assert folds[1].train == ["pat0", "pat1", "pat3", "pat4", "pat5"]
    with pytest.raises(ConfigError, match=r"folds\.test: subject"):
        make_folds(SUBJECTS, FoldsConfig(test=[["nobody"]]))
    with pytest.raises(ConfigError, match="only 6 subjects"):
        make_folds(SUBJECTS, FoldsConfig(k=7))
    with pytest.raises(ValueError, match="no subject may be in two folds"):
        FoldsConfig(test=[["pat0"], ["pat0"]])
    with pytest.raises(ValueError, match=r"folds\.k"):
        FoldsConfig(k=1)


def test_generator_refused_by_id_or_by_content():
    fold = Fold(2, ["pat0"], ["pat1"])
    check_generator("gan", "g.pt", {"cases": ["pat0"], "label_maps": {"pat0": "aaa"}}, {"pat1": "bbb"}, fold)
    with pytest.raises(LeakageError, match=r"fold2: generator 'gan' .* test subject 'pat1'"):
        check_generator("gan", "g.pt", {"cases": ["pat1"]}, {"pat1": "bbb"}, fold)
    with pytest.raises(LeakageError, match="test subject 'pat1'"):  # renamed, same label map
        check_generator("gan", "g.pt", {"cases": ["x"], "label_maps": {"x": "bbb"}}, {"pat1": "bbb"}, fold)
    with pytest.raises(LeakageError, match="cannot prove held-out"):
        check_generator("gan", "g.pt", {}, {"pat1": "bbb"}, fold)
