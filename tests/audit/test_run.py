"""The audit end to end (``run_audit`` through the CLI): the report's verdicts, tumor fidelity and k-anonymity;
a saved feature network is reused; a planted copy is flagged; the resolved config and provenance are written
beside the report; the report folder appears whole or not at all."""

from __future__ import annotations

import errno
import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

import medsynth.audit.fidelity as fidelity
import medsynth.audit.run as audit_run
from medsynth.audit.config import AuditConfig
from medsynth.audit.run import run_audit
from medsynth.cli import main
from medsynth.errors import OutputError
from medsynth.manifest import Manifest


def _audit(real: Path, cohort: Path, output: Path, *options: str) -> list[str]:
    return ["audit", "--real", str(real), "--synthetic", str(cohort), "-o", str(output), *options]


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
        "distance_to_closest_record",
        "intensity_fidelity",
        "feature_fidelity",
        "tumor_fidelity",
        "diversity",
        "k_anonymity",
        "realism",
    ]
    assert verdicts["memorization"]["verdict"] == "PASS"
    assert verdicts["membership_inference"]["verdict"] == "NOT RUN"  # no --generator
    assert verdicts["distance_to_closest_record"]["verdict"] == "INFO"  # 4 cases vs 1 held-out: p >= 0.2
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


def test_the_resolved_config_and_provenance_are_written_beside_the_report(
    prepared_phantoms, tiny_cohort, phantom_audit
):
    config = yaml.safe_load((phantom_audit / "config.yaml").read_text())
    assert config["real_manifest"] == str(prepared_phantoms) and config["cohort"] == str(tiny_cohort)
    assert config["feature_steps"] == 5 and config["seed"] == 0 and config["train_split"] == "train"
    provenance = json.loads((phantom_audit / "report.json").read_text())["provenance"]
    assert provenance["stage"] == "audit" and provenance["seed"] == 0
    assert provenance["config"] == config
    assert provenance["inputs"][str(prepared_phantoms.resolve())]  # the manifest's SHA-256
    assert str(tiny_cohort.resolve()) in provenance["inputs"]


def test_cli_reuses_a_saved_feature_network_and_a_hand_built_cohort_has_no_k(
    prepared_phantoms, tiny_cohort, phantom_audit, tmp_path
):
    hand_built = tmp_path / "hand_built"  # same cases, but not laid out by medsynth generate (no cases/)
    hand_built.mkdir()
    shutil.copytree(tiny_cohort / "cases", hand_built / "scans")
    manifest = (tiny_cohort / "manifest.json").read_text().replace('"cases/', '"scans/')
    (hand_built / "manifest.json").write_text(manifest)
    saved = phantom_audit / "feature_network.pt"
    config = {"real_manifest": str(prepared_phantoms), "cohort": str(hand_built), "features": str(saved)}
    (tmp_path / "audit.yaml").write_text(yaml.safe_dump(config))  # the config file alone, no shorthand flags
    assert main(["audit", "--config", str(tmp_path / "audit.yaml"), "-o", str(tmp_path / "a")]) == 0

    assert not (tmp_path / "a" / "feature_network.pt").exists()  # reused, not trained again
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    first = json.loads((phantom_audit / "report.json").read_text())
    assert str(saved) in report["fidelity_features"]["network"]
    assert report["fidelity_features"]["frechet"] == first["fidelity_features"]["frechet"]  # same cases, same network
    assert report["k_anonymity"]["available"] is False
    assert "cases: missing" in report["k_anonymity"]["reason"]
    assert report["verdicts"]["k_anonymity"]["verdict"] == "NOT AVAILABLE"
    assert "Not available: " in (tmp_path / "a" / "report.md").read_text()


def test_planted_copy_is_flagged_and_independent_cohort_is_not(prepared_phantoms, tiny_cohort, phantom_audit, tmp_path):
    assert json.loads((phantom_audit / "report.json").read_text())["memorization"]["flagged"] == []
    planted = tmp_path / "planted"
    shutil.copytree(tiny_cohort, planted)
    training = Manifest.load(prepared_phantoms).cases(["train"])[0]
    victim = Manifest.load(planted).cases()[1]
    rng = np.random.default_rng(0)
    for source, target in zip(training.images, victim.images, strict=True):
        image = nib.load(str(source))
        data = np.asarray(image.dataobj)[::-1]  # mirrored + noise: a lightly augmented copy
        data = (data + rng.normal(0, 0.05, data.shape) * (data != 0)).astype(np.float32)
        nib.save(nib.Nifti1Image(data, nib.load(str(target)).affine), str(target))  # in the case's own space
    command = ["audit", "--real", str(prepared_phantoms), "--synthetic", str(planted), "-o", str(tmp_path / "a")]
    assert main([*command, "--features", str(phantom_audit / "feature_network.pt")]) == 1
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["memorization"]["flagged"] == [victim.case_id]
    assert report["verdicts"]["memorization"]["verdict"] == "FAIL"
    assert "| Memorization (copy check) | **FAIL** |" in (tmp_path / "a" / "report.md").read_text()


@pytest.fixture(scope="module")
def first_audit(prepared_phantoms, tiny_cohort, tmp_path_factory) -> Path:
    """One audit that trains and saves its feature network (1 step: fast); tests work on copies of it."""
    output = tmp_path_factory.mktemp("first_audit") / "audit"
    assert main([*_audit(prepared_phantoms, tiny_cohort, output), "--feature-steps", "1"]) == 0
    return output


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_an_interrupted_audit_leaves_no_output_and_no_temporary(
    prepared_phantoms, tiny_cohort, tmp_path, monkeypatch, refused
):
    saved = []
    save = fidelity.save_feature_network
    monkeypatch.setattr(fidelity, "save_feature_network", lambda network, path: saved.append(save(network, path)))
    monkeypatch.setattr(audit_run, "write_plot", _no_space)  # the disk fills up at the last file
    output = tmp_path / "runs" / "audit"
    err = refused([*_audit(prepared_phantoms, tiny_cohort, output), "--feature-steps", "1"])
    assert "No space left on device" in err
    assert len(saved) == 1  # the network was trained and saved before the failure ...
    assert not output.exists()  # ... and went with the rest
    assert list((tmp_path / "runs").iterdir()) == []  # no stray temporary either


def test_an_interrupted_rerun_keeps_the_previous_audit(
    prepared_phantoms, tiny_cohort, first_audit, tmp_path, monkeypatch, refused
):
    output = tmp_path / "audit"
    shutil.copytree(first_audit, output)
    before = {p.name: p.read_bytes() for p in output.iterdir()}
    monkeypatch.setattr(audit_run, "write_plot", _no_space)  # report.json and report.md are written by then
    command = _audit(prepared_phantoms, tiny_cohort, output, "--features", str(output / "feature_network.pt"))
    assert "No space left on device" in refused(command)
    assert {p.name: p.read_bytes() for p in output.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["audit"]


def test_a_second_audit_replaces_the_first_and_keeps_its_feature_network(
    prepared_phantoms, tiny_cohort, first_audit, tmp_path
):
    output = tmp_path / "audit"
    shutil.copytree(first_audit, output)
    network = (output / "feature_network.pt").read_bytes()
    (output / "report.json").write_text("{}")  # what the previous audit wrote, to be replaced
    (output / "scratch.txt").write_text("added by a user")
    with pytest.raises(OutputError, match=r"holds files medsynth did not write \(scratch\.txt\)"):
        run_audit(AuditConfig(real_manifest=str(prepared_phantoms), cohort=str(tiny_cohort)), output)
    (output / "scratch.txt").unlink()
    # the network of the audit being replaced: read before the swap, carried into the new folder
    command = _audit(prepared_phantoms, tiny_cohort, output, "--features", str(output / "feature_network.pt"))
    assert main(command) == 0
    assert sorted(p.name for p in output.iterdir()) == [
        ".medsynth-output.json",
        "config.yaml",
        "feature_network.pt",
        "report.json",
        "report.md",
        "report.png",
    ]
    assert (output / "feature_network.pt").read_bytes() == network
    report = json.loads((output / "report.json").read_text())
    assert str(output / "feature_network.pt") in report["fidelity_features"]["network"]
    first = json.loads((first_audit / "report.json").read_text())
    assert report["fidelity_features"]["frechet"] == first["fidelity_features"]["frechet"]  # the same network
    assert [p.name for p in tmp_path.iterdir()] == ["audit"]


def test_an_audit_into_a_folder_of_user_files_is_refused_and_the_files_kept(
    prepared_phantoms, tiny_cohort, tmp_path, refused
):
    output = tmp_path / "mine"
    output.mkdir()
    (output / "notes.txt").write_text("my notes\n")
    err = refused(_audit(prepared_phantoms, tiny_cohort, output))
    assert f"{output}: folder exists and holds files medsynth did not write (notes.txt)" in err
    assert [p.name for p in output.iterdir()] == ["notes.txt"]
    assert (output / "notes.txt").read_text() == "my notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_an_audit_into_its_own_inputs_is_refused(copies, refused):
    real, cohort = copies
    before = sorted(p.name for p in cohort.iterdir())
    err = refused(_audit(real, cohort, cohort))
    assert f"{cohort}: the output folder holds this command's input" in err
    err = refused(_audit(real, cohort, real.parent))
    assert f"{real.parent}: the output folder holds this command's input" in err
    assert sorted(p.name for p in cohort.iterdir()) == before
