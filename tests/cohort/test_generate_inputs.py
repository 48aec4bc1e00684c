"""``medsynth generate`` refuses bad arguments and label maps (naming the file), and survives kill -9."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import medsynth
from medsynth.cli import main
from medsynth.cohort.generate import generate_cohort
from medsynth.cohort.verify import verify_cohort
from medsynth.errors import MedsynthError
from medsynth.io import OWNER_FILE
from medsynth.manifest import Manifest


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("medsynth: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def reference(prepared_phantoms) -> tuple[np.ndarray, np.ndarray]:
    """A canonical label map on the tiny generator's grid (48^3, 2 mm, RAS) and its affine."""
    case = Manifest.load(prepared_phantoms).cases(["train"])[0]
    image = nib.load(str(case.label))
    return np.asarray(image.dataobj).astype(np.int16), image.affine.copy()


def _label_manifest(folder: Path, maps: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """A label-map manifest (what ``--labels`` reads) over the given arrays, written as NIfTI as they are."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, (array, affine) in maps.items():
        nib.save(nib.Nifti1Image(array, affine), str(folder / f"{name}_label_map.nii.gz"))
        entries.append({"case_id": name, "label": f"{name}_label_map.nii.gz", "split": "train"})
    manifest = {"training": entries, "medsynth": {"format_version": 1, "kind": "label_maps", "modalities": []}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder / "manifest.json"


def _bad_label_map(kind: str, good: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if kind == "spacing_1mm":  # same grid, so only the affine shows a brain half the size
        return good, np.diag([1.0, 1.0, 1.0, 1.0])
    if kind == "orientation_lps":
        flipped = affine.copy()
        flipped[:, :2] *= -1
        return good, flipped
    brain = np.argwhere(good > 0)[len(np.argwhere(good > 0)) // 2]
    if kind == "fractional":
        array = good.astype(np.float32)
        array[tuple(brain)] = 5.5  # used to be truncated to 5 (edema)
        return array, affine
    if kind == "nan":
        array = good.astype(np.float32)
        array[tuple(brain)] = np.nan
        return array, affine
    if kind in ("outside_scheme", "negative"):
        array = good.copy()
        array[tuple(brain)] = 9 if kind == "outside_scheme" else -1
        return array, affine
    if kind == "no_brain":
        return np.zeros_like(good), affine
    raise ValueError(kind)


BAD_LABEL_MAPS = {
    "spacing_1mm": "voxel spacing 1x1x1 mm differs from the generator's 2x2x2 mm",
    "orientation_lps": "orientation LPS differs from the generator's RAS",
    "fractional": "label values must be whole numbers (canonical classes 0..7); found 5.5",
    "nan": "label map contains NaN or infinite values",
    "outside_scheme": "label values 9 are outside the canonical scheme 0..7",
    "negative": "label values -1 are outside the canonical scheme 0..7",
    "no_brain": "no brain: every voxel is background (0)",
}
GEOMETRY = ("spacing_1mm", "orientation_lps")


@pytest.mark.parametrize("kind", list(BAD_LABEL_MAPS))
def test_bad_label_maps_are_refused_naming_the_file(tiny_generator, reference, tmp_path, capsys, kind):
    good, affine = reference
    manifest = _label_manifest(tmp_path / "labels", {"bad": _bad_label_map(kind, good, affine), "good": (good, affine)})
    bad_file = manifest.parent / "bad_label_map.nii.gz"
    expected = f"{bad_file}: {BAD_LABEL_MAPS[kind]}"
    out = tmp_path / "cohort"
    assert main(["generate", "--checkpoint", str(tiny_generator), "--labels", str(manifest), "-o", str(out)]) == 1
    assert expected in _one_error_line(capsys.readouterr().err)
    if kind in GEOMETRY:
        assert not out.exists()  # checked from the headers before anything is written
    else:  # checked when the case is made: no case (nor a hidden partial one) is written
        assert not (out / "cases").exists() or not any((out / "cases").iterdir())
    with pytest.raises(MedsynthError) as info:
        generate_cohort(tiny_generator, tmp_path / "api", labels=manifest, progress=False)
    assert expected in str(info.value)
    generator = medsynth.load_generator(tiny_generator, device="cpu")
    with pytest.raises(MedsynthError) as info:
        generator.synthesize(bad_file, seed=0)
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)


def test_synthesize_checks_arrays_too(tiny_generator, reference):
    good, affine = reference
    generator = medsynth.load_generator(tiny_generator, device="cpu")
    with pytest.raises(MedsynthError, match=r"^label map: no brain"):
        generator.synthesize(np.zeros_like(good))
    with pytest.raises(MedsynthError, match=r"label map \(case 1 of the batch\): no brain"):
        generator.synthesize(np.stack([good, np.zeros_like(good)]))
    with pytest.raises(MedsynthError, match=r"found 5\.5"):
        generator.synthesize(_bad_label_map("fractional", good, affine)[0])
    with pytest.raises(MedsynthError, match="voxel spacing 1x1x1 mm"):
        generator.synthesize(good, affine=np.eye(4))
    with pytest.raises(MedsynthError, match=r"^case 7: label values 9"):
        generator.synthesize(_bad_label_map("outside_scheme", good, affine)[0], source="case 7")
    result = generator.synthesize(good.astype(np.float32), seed=0)  # whole-number floats are fine
    assert np.allclose(result.affine, np.diag([2.0, 2.0, 2.0, 1.0]))  # the generator's geometry, not 1 mm


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--n", "0"], "--n 0: the number of cases must be a positive whole number"),
        (["--n", "-1"], "--n -1: the number of cases must be a positive whole number"),
        (["--n", "2", "--spacing", "0"], "--spacing 0.0: the voxel size must be a positive, finite number of mm"),
        (["--n", "2", "--spacing", "-1"], "--spacing -1.0: the voxel size must be a positive"),
        (["--n", "2", "--spacing", "nan"], "--spacing nan: the voxel size must be a positive"),
        (["--n", "2", "--spacing", "inf"], "--spacing inf: the voxel size must be a positive"),
        (["--n", "2", "--spacing", "0.001"], "voxels per image; choose a coarser spacing"),
        (["--n", "2", "--seed", "-3"], "--seed -3: must be a non-negative whole number"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(tiny_generator, tmp_path, capsys, args, expected):
    out = tmp_path / "cohort"
    assert main(["generate", "--checkpoint", str(tiny_generator), "-o", str(out), *args]) == 2
    assert expected in _one_error_line(capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"n": -1}, "--n -1"),
        ({"n": 2.5}, "--n 2.5"),
        ({"n": 2, "spacing_mm": float("nan")}, "--spacing nan"),
        ({"n": 2, "spacing_mm": 0}, "--spacing 0"),
        ({"n": 2, "shard": (2, 2)}, "need 0 <= i < n"),
    ],
)
def test_python_api_refuses_the_same(tiny_generator, tmp_path, kwargs, expected):
    with pytest.raises(MedsynthError, match=expected.replace(".", r"\.")):
        generate_cohort(tiny_generator, tmp_path / "cohort", progress=False, **kwargs)
    assert not (tmp_path / "cohort").exists()


def test_cohort_files_ignore_the_ownership_record_and_live_temporaries(tiny_generator, tmp_path):
    out = tmp_path / "cohort"
    assert not generate_cohort(tiny_generator, out, n=2, seed=0, shard=(0, 2), progress=False).finalized
    # another process (this one: alive) is writing a case: complete in its hidden folder, not renamed yet
    live = out / "cases" / f".synth_00001.{socket.gethostname()}-{os.getpid()}.abcd1234.tmp"
    shutil.copytree(out / "cases" / "synth_00000", live)
    assert generate_cohort(tiny_generator, out, n=2, seed=0, shard=(1, 2), progress=False).finalized
    assert live.is_dir()  # a live writer's temporary is left alone
    manifest = json.loads((out / "manifest.json").read_text())
    assert [entry["case_id"] for entry in manifest["training"]] == ["synth_00000", "synth_00001"]
    listed = [line.split("  ", 1)[1] for line in (out / "checksums.sha256").read_text().splitlines()]
    assert "cases/synth_00001/provenance.json" in listed and "cohort_plan.json" in listed
    assert not any(part.startswith(".") for rel in listed for part in rel.split("/"))
    assert json.loads((out / OWNER_FILE).read_text())["stage"] == "generate"  # kept, not listed
    shutil.rmtree(live)
    assert verify_cohort(out) == []


KILLED_RUN = r"""
import sys, time
from pathlib import Path

import medsynth.cohort.generate as generate

checkpoint, output, marker = sys.argv[1:4]
write_json = generate.write_json


def stalling_write_json(data, path):
    written = write_json(data, path)
    if Path(path).name == "provenance.json" and data["case_id"] == "synth_00001":
        Path(marker).write_text(str(path))  # the case is complete in its hidden folder, not yet renamed
        time.sleep(600)
    return written


generate.write_json = stalling_write_json
generate.generate_cohort(checkpoint, output, n=3, seed=0, progress=False)
"""


def test_kill_9_during_generate_then_rerun_verifies(tiny_generator, tmp_path, capsys):
    out, marker = tmp_path / "cohort", tmp_path / "writing"
    with open(tmp_path / "child.log", "w") as log:
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_RUN, str(tiny_generator), str(out), str(marker)], stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert child.poll() is None, (tmp_path / "child.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the child never reached synth_00001"
            time.sleep(0.2)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    hidden = [p for p in (out / "cases").iterdir() if p.name.startswith(".")]
    assert len(hidden) == 1 and (hidden[0] / "provenance.json").is_file()  # killed mid-case: a hidden folder left
    assert sorted(p.name for p in (out / "cases").iterdir() if not p.name.startswith(".")) == ["synth_00000"]

    command = ["generate", "--checkpoint", str(tiny_generator), "--n", "3", "--seed", "0", "-o", str(out)]
    assert main(command) == 0
    assert "wrote 2, skipped 1 finished; 3/3 cases; cohort finalized" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "cases").iterdir()) == ["synth_00000", "synth_00001", "synth_00002"]
    assert main(["cohort", "verify", str(out)]) == 0
    assert verify_cohort(out) == []


@pytest.fixture(scope="module")
def label_folder(prepared_phantoms, tmp_path_factory) -> Path:
    from medsynth.labels import LabelsConfig, run_labels

    config = LabelsConfig(sources=[str(prepared_phantoms)], n=2, seed=0)
    return run_labels(config, tmp_path_factory.mktemp("labels") / "labels", progress=False).parent


def test_replaced_label_map_is_refused(tiny_generator, prepared_phantoms, label_folder, tmp_path):
    """A held-out subject's real label map planted in a label-map folder is not published as synthetic."""
    tampered = tmp_path / "labels"
    shutil.copytree(label_folder, tampered)
    real = Manifest.load(prepared_phantoms).cases(["validation"])[0].label
    planted = tampered / "label_maps" / "synth_00000_label_map.nii.gz"
    shutil.copyfile(real, planted)
    planted_refused = r"synth_00000_label_map\.nii\.gz: not the label map `medsynth labels` wrote"
    with pytest.raises(MedsynthError, match=planted_refused):
        generate_cohort(tiny_generator, tmp_path / "cohort", labels=tampered, progress=False)
    assert not (tmp_path / "cohort" / "cases" / "synth_00000").exists()


def test_label_map_outside_its_folder_is_refused(tiny_generator, prepared_phantoms, label_folder, tmp_path):
    tampered = tmp_path / "labels"
    shutil.copytree(label_folder, tampered)
    manifest = json.loads((tampered / "manifest.json").read_text())
    real = Manifest.load(prepared_phantoms).cases(["train"])[0].label
    manifest["training"][0]["label"] = os.path.relpath(real, tampered)
    (tampered / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MedsynthError, match="is outside its folder"):
        generate_cohort(tiny_generator, tmp_path / "cohort", labels=tampered, progress=False)


def test_a_case_another_process_finished_is_kept(tiny_generator, tmp_path):
    """A shard started twice: the slower process finds the case finished and keeps it (same seeds, same case)."""
    from medsynth.cohort.generate import _write_case

    generate_cohort(tiny_generator, tmp_path / "c", n=1, seed=0, progress=False)
    case = tmp_path / "c" / "cases" / "synth_00000"
    before = {p.name: p.read_bytes() for p in case.iterdir()}
    label_map = nib.load(str(case / "synth_00000_label_map.nii.gz"))
    record = json.loads((case / "provenance.json").read_text())
    generator = medsynth.load_generator(tiny_generator)
    _write_case(tmp_path / "c", generator, np.asarray(label_map.dataobj), label_map.affine, record, None, "canonical")
    assert {p.name: p.read_bytes() for p in case.iterdir()} == before
    assert sorted(p.name for p in (tmp_path / "c" / "cases").iterdir()) == ["synth_00000"]  # no temporary left
