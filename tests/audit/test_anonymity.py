"""k-anonymity: attributes of hand-built label maps, fill targets, and the fill of a skewed cohort."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from medsynth.audit.anonymity import (
    QuasiIdentifiers,
    anonymity_summary,
    case_attributes,
    check_k,
    cohort_anonymity,
    fill_targets,
)
from medsynth.cli import main
from medsynth.cohort.generate import generate_cohort
from medsynth.cohort.verify import verify_cohort
from medsynth.data.scheme import ET, NETC, SNFH, WM
from medsynth.errors import ConfigError, MedsynthError
from medsynth.labels.generate import LabelConfig
from medsynth.labels.reshape import ReshapeSpec
from medsynth.labels.sources import Tumor
from medsynth.models.generator import Generator

AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])  # RAS, 2 mm: +x is the subject's right, +y anterior
LEFT_SIDE = ReshapeSpec(hemisphere={"left": 1.0})  # a skewed cohort: every tumor on one side


def _label_map(center: tuple[int, int, int], half: int, layers: tuple[int, ...] = (SNFH, ET)) -> np.ndarray:
    """White matter filling voxels 4..35 x 4..43 x 4..35, a cubic tumor of nested sub-region shells."""
    label_map = np.zeros((40, 48, 40), np.int16)
    label_map[4:36, 4:44, 4:36] = WM
    for depth, value in enumerate(layers):
        size = half - depth * max(1, half // len(layers))
        box = tuple(slice(c - size, c + size) for c in center)
        label_map[box] = value
    return label_map


def _case_digests(root):
    lines = (root / "checksums.sha256").read_text().splitlines()
    return {rel: digest for digest, rel in (line.split("  ") for line in lines) if rel.startswith("cases/")}


@pytest.mark.parametrize(
    ("center", "half", "layers", "expected"),
    [
        ((29, 38, 20), 3, (SNFH, ET), ("1-5", "right", "frontal", "snfh+et")),  # 6^3 voxels = 1.7 ml
        ((10, 38, 20), 3, (SNFH, ET), ("1-5", "left", "frontal", "snfh+et")),
        ((10, 8, 20), 5, (SNFH, ET, NETC), (">=5", "left", "occipital", "netc+snfh+et")),  # 10^3 voxels = 8 ml
        ((20, 24, 20), 1, (ET,), ("<1", "right", "deep", "et")),
    ],
)
def test_hand_built_attributes(center, half, layers, expected):
    qi = QuasiIdentifiers(volume_bins_ml=(1.0, 5.0))
    attributes = case_attributes(_label_map(center, half, layers), AFFINE, qi)
    assert tuple(attributes.values()) == expected
    assert list(attributes) == ["volume_ml", "hemisphere", "region", "subregions"]


def test_tumor_free_map_enhancing_bins_and_metadata():
    qi = QuasiIdentifiers(enhancing_bins=(0.1, 0.5), metadata_keys=("label_map_record.tumor.case_id", "missing"))
    healthy = _label_map((20, 24, 20), 0, ())
    assert case_attributes(healthy, AFFINE, qi) == {
        "volume_ml": "none",
        "hemisphere": "none",
        "region": "none",
        "subregions": "none",
        "enhancing": "none",
        "label_map_record.tumor.case_id": "unknown",
        "missing": "unknown",
    }
    provenance = {"label_map_record": {"tumor": {"case_id": "pat0005"}}}
    attributes = case_attributes(_label_map((29, 38, 20), 4, (SNFH, ET)), AFFINE, qi, provenance)
    assert attributes["enhancing"] == "0.1-0.5"  # a 4^3 enhancing core in an 8^3 tumor: 0.125
    assert attributes["label_map_record.tumor.case_id"] == "pat0005"


def test_summary_groups_and_k():
    qi = QuasiIdentifiers(volume_bins_ml=(1.0, 5.0))
    maps = {
        "a": _label_map((29, 38, 20), 3),
        "b": _label_map((28, 37, 21), 3),  # same group as a
        "c": _label_map((10, 38, 20), 3),  # mirrored: left
    }
    summary = anonymity_summary({case: case_attributes(m, AFFINE, qi) for case, m in maps.items()}, qi)
    assert summary["k"] == 1 and summary["cases"] == 3
    assert [(g["attributes"]["hemisphere"], g["count"], g["case_ids"]) for g in summary["groups"]] == [
        ("left", 1, ["c"]),
        ("right", 2, ["a", "b"]),
    ]
    assert set(summary["attributes"]) == {"volume_ml", "hemisphere", "region", "subregions"}
    assert json.loads(json.dumps(summary)) == summary
    assert anonymity_summary({}, qi)["k"] == 0


def _tumor(case_id: str, voxels: int, layers: tuple[int, ...]) -> Tumor:
    labels = np.full(voxels, layers[0], np.int16)
    for position, value in enumerate(layers[1:], 1):
        labels[position * voxels // (2 * len(layers)) :] = value
    return Tumor(case_id, "train", labels.reshape(1, 1, -1), (2.0, 2.0, 2.0), "m.json", "0" * 64)


def test_fill_targets_constrain_the_sampler_to_each_under_filled_group():
    qi = QuasiIdentifiers(volume_bins_ml=(25.0, 50.0))
    tumors = [_tumor("full", 5000, (NETC, SNFH, ET)), _tumor("no_core", 5000, (SNFH, ET))]  # 40 ml each
    groups = [
        {"volume_ml": "25-50", "hemisphere": "left", "region": "frontal", "subregions": "netc+snfh+et"},
        {"volume_ml": ">=50", "hemisphere": "right", "region": "deep", "subregions": "snfh+et"},
        {"volume_ml": "<25", "hemisphere": "left", "region": "temporal", "subregions": "netc+snfh+et"},
    ]
    summary = {
        "groups": [{"attributes": g, "count": c, "case_ids": []} for g, c in zip(groups, (3, 1, 2), strict=True)]
    }
    targets = list(fill_targets(summary, 3, tumors, LabelConfig(volume_scale=(0.5, 2.0)), qi))
    assert [(t.group, t.missing) for t in targets] == [(groups[1], 2), (groups[2], 1)]
    big, small = targets
    assert big.reshape.hemisphere == {"right": 1.0} and big.reshape.region == {"deep": 1.0}
    assert [t.case_id for t in big.tumors] == ["no_core"] and [t.case_id for t in small.tumors] == ["full"]
    tolerance = big.reshape.volume_tolerance
    assert big.reshape.volume_ml.low * (1 - tolerance) >= 50 and big.reshape.volume_ml.high <= 80  # 2x of 40 ml
    assert small.reshape.volume_ml.low >= 20 and small.reshape.volume_ml.high * (1 + tolerance) <= 25


def test_unreachable_group_is_named():
    tumors = [_tumor("full", 5000, (NETC, SNFH, ET))]
    group = {"volume_ml": "<25", "hemisphere": "left", "region": "deep", "subregions": "et"}
    summary = {"groups": [{"attributes": group, "count": 1, "case_ids": ["synth_00000"]}]}
    with pytest.raises(MedsynthError, match=r"group .*'subregions': 'et'.* cannot be filled: no source tumor"):
        next(fill_targets(summary, 2, tumors))
    group = {**group, "volume_ml": ">=200", "subregions": "netc+snfh+et"}
    summary = {"groups": [{"attributes": group, "count": 1, "case_ids": ["synth_00000"]}]}
    with pytest.raises(MedsynthError, match=r"cannot be filled: the source tumors reach 20.0-80.0 ml"):
        next(fill_targets(summary, 2, tumors))


@pytest.mark.parametrize("k", [0, -1, 1.5, True, "2"])
def test_bad_k_is_refused(k):
    with pytest.raises(MedsynthError, match="K must be an integer >= 1"):
        check_k(k)


def test_bad_quasi_identifiers_are_refused():
    with pytest.raises(ConfigError, match="volume_bins_ml must be strictly increasing"):
        QuasiIdentifiers(volume_bins_ml=(50.0, 25.0))
    with pytest.raises(ConfigError, match="enhancing_bins are fractions"):
        QuasiIdentifiers(enhancing_bins=(0.5, 2.0))


@pytest.fixture(autouse=True)
def _isolated_cache() -> None:
    """This module's cohorts share the session cache: their provenance names the bundled anatomies' paths there."""


@pytest.fixture(scope="module")
def filled(tiny_generator, tmp_path_factory):
    """A cohort with every tumor on the left, filled to k >= 2."""
    root = tmp_path_factory.mktemp("filled") / "cohort"
    status = generate_cohort(tiny_generator, root, n=4, seed=3, reshape=LEFT_SIDE, k_anonymity=2, progress=False)
    return root, status


def test_skewed_cohort_is_filled_to_k(filled):
    root, status = filled
    fill = status.anonymity
    assert status.finalized and fill["k_before"] < 2 <= fill["k_after"]
    assert status.added == fill["added"] > 0
    assert cohort_anonymity(root)["k"] >= 2  # re-computed from the label maps on disk
    assert verify_cohort(root) == []
    assert fill["added_case_ids"] == [f"synth_{i:05d}" for i in range(4, 4 + fill["added"])]
    for case_id in fill["added_case_ids"]:
        provenance = json.loads((root / "cases" / case_id / "provenance.json").read_text())
        record = provenance["k_anonymity_fill"]
        assert record["k"] == 2 and record["reshape"]["hemisphere"] == {"left": 1.0}
        assert record["group"]["hemisphere"] == "left" and {"target_group", "draw_seed", "draws"} <= set(record)
        assert provenance["label_map_record"]["seed"] == record["draw_seed"]
    assert len(json.loads((root / "manifest.json").read_text())["training"]) == 4 + fill["added"]
    assert json.loads((root / "cohort_plan.json").read_text())["k_anonymity"]["k"] == 2
    assert json.loads((root / "cohort.json").read_text())["k_anonymity"]["k_after"] == fill["k_after"]
    assert json.loads((root / "k_anonymity.json").read_text())["k_after"] == fill["k_after"]
    card = (root / "README.md").read_text()
    assert f"the smallest group had {fill['k_before']} before {fill['added']} case(s)" in card


def test_same_seed_same_added_cases_through_the_cli(filled, prepared_phantoms, tiny_generator, tmp_path, capsys):
    root, status = filled
    reshape = tmp_path / "left.yaml"
    reshape.write_text(yaml.safe_dump({"hemisphere": {"left": 1.0}}))
    args = [
        "generate",
        "--checkpoint",
        str(tiny_generator),
        "--n",
        "4",
        "--seed",
        "3",
    ]
    assert main([*args, "--reshape", str(reshape), "--k-anonymity", "2", "-o", str(tmp_path / "cli")]) == 0
    assert f"smallest group {status.anonymity['k_before']} -> {status.anonymity['k_after']}" in capsys.readouterr().out
    assert _case_digests(tmp_path / "cli") == _case_digests(root)
    assert main([*args, "--k-anonymity", "0", "-o", str(tmp_path / "bad")]) == 2
    assert "--k-anonymity 0: K must be an integer >= 1" in capsys.readouterr().err


def test_killed_fill_resumes_to_the_same_cohort(filled, tiny_generator, tmp_path, monkeypatch):
    root, status = filled
    assert status.added >= 2  # the kill below hits the second added case
    calls = {"n": 0}
    original = Generator.synthesize

    def dying(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # the second added case
            raise KeyboardInterrupt("killed")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Generator, "synthesize", dying)
    with pytest.raises(KeyboardInterrupt):
        generate_cohort(tiny_generator, tmp_path / "c", n=4, seed=3, reshape=LEFT_SIDE, k_anonymity=2, progress=False)
    assert len(list((tmp_path / "c" / "cases").iterdir())) == 5
    monkeypatch.setattr(Generator, "synthesize", original)
    again = generate_cohort(
        tiny_generator, tmp_path / "c", n=4, seed=3, reshape=LEFT_SIDE, k_anonymity=2, progress=False
    )
    assert again.added == status.added - 1 and again.anonymity == status.anonymity
    assert _case_digests(tmp_path / "c") == _case_digests(root)


def test_shards_fill_once_all_requested_cases_exist(filled, tiny_generator, tmp_path):
    root, status = filled
    kwargs = {"n": 4, "seed": 3, "reshape": LEFT_SIDE, "k_anonymity": 2, "progress": False}
    first = generate_cohort(tiny_generator, tmp_path / "s", shard=(0, 2), **kwargs)
    assert not first.finalized and first.anonymity is None
    second = generate_cohort(tiny_generator, tmp_path / "s", shard=(1, 2), **kwargs)
    assert second.finalized and second.anonymity == status.anonymity
    assert _case_digests(tmp_path / "s") == _case_digests(root)


def test_export_gate_covers_the_added_cases(filled, prepared_phantoms, tiny_generator, tmp_path, monkeypatch):
    import shutil

    import medsynth.audit.memorization

    root, status = filled
    shutil.copytree(root, tmp_path / "c")
    checked = []
    original = medsynth.audit.memorization.copy_check_cohort

    def spy(real_manifest, case_folders, modalities, **kwargs):
        checked.extend(folder.name for folder in case_folders)
        return original(real_manifest, case_folders, modalities, **kwargs)

    monkeypatch.setattr(medsynth.audit.memorization, "copy_check_cohort", spy)
    again = generate_cohort(
        tiny_generator,
        tmp_path / "c",
        n=4,
        seed=3,
        reshape=LEFT_SIDE,
        k_anonymity=2,
        audit_against=prepared_phantoms,
        progress=False,
    )
    assert again.finalized and again.written == again.added == 0
    assert checked == [f"synth_{i:05d}" for i in range(4)] + status.anonymity["added_case_ids"]


def test_fill_that_cannot_reach_k_names_the_group(tiny_generator, tmp_path):
    # the case index is unique per case, so no draw can join an existing group
    qi = QuasiIdentifiers(metadata_keys=("index",))
    with pytest.raises(
        MedsynthError, match=r"k-anonymity group \{.*'index': '[01]'\} still has 1 of 2 members after 25"
    ):
        generate_cohort(
            tiny_generator, tmp_path / "c", n=2, seed=0, k_anonymity=2, quasi_identifiers=qi, progress=False
        )
    assert not (tmp_path / "c" / "manifest.json").exists()


def test_labels_folder_needs_label_sources(prepared_phantoms, tiny_generator, tmp_path):
    with pytest.raises(MedsynthError, match=r"--k-anonymity 2 with --labels .* give their tumor sources with --from"):
        generate_cohort(tiny_generator, tmp_path / "c", labels=tmp_path / "labels", k_anonymity=2, progress=False)
