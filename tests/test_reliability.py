"""Nothing lost, nothing silently accepted: each class of bad input or interruption, through the CLI.

Every case asserts the exit code, one line naming the file or folder, and that nothing outside
what the command owns was written or deleted. The stage-specific refusals (corrupt gzip,
duplicate ids, bad label maps, tampered cohorts, audit inputs) are tested beside their modules;
this module keeps the cross-cutting classes: output folders, read-only and full disks, kills.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_dataset

from medsynth.cli import main
from medsynth.io import OWNER_FILE


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its content (hidden ones included)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run(argv: list[str], capsys) -> tuple[int, list[str]]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.startswith("medsynth:")]  # not progress bars


def assert_one_line(err: list[str], *fragments: str) -> None:
    assert len(err) == 1, err
    assert err[0].startswith("medsynth: error: "), err
    assert "Traceback" not in err[0] and "weights_only" not in err[0]
    for fragment in fragments:
        assert fragment in err[0], (fragment, err[0])


@pytest.fixture
def raw(tmp_path) -> Path:
    """A user's data folder: phantom subjects, their notes and a manifest written inside it."""
    root = make_dataset(tmp_path / "mydata", "brats2013", n=3)
    (root / "NOTES.txt").write_text("acquisition notes\n")
    assert main(["manifest", "build", str(root), "-o", str(root / "manifest.json")]) == 0
    return root


PREPARE_TINY = ["spacing_mm=[4,4,4]", "grid=[32,32,32]"]


def test_prepare_into_its_own_input_folder_deletes_nothing(raw, capsys):
    before = snapshot(raw)
    code, err = run(["prepare", raw / "manifest.json", "-o", raw, "--no-previews", *PREPARE_TINY], capsys)
    assert code == 1
    assert_one_line(err, str(raw))
    assert snapshot(raw) == before


def test_stage_outputs_refuse_a_users_folder(raw, tmp_path, capsys):
    """prepare, labels, train and benchmark refuse a non-empty folder medsynth did not write, and touch nothing."""
    prepared = tmp_path / "prepared"
    assert main(["prepare", str(raw / "manifest.json"), "-o", str(prepared), "--no-previews", *PREPARE_TINY]) == 0
    capsys.readouterr()
    users = tmp_path / "users"
    users.mkdir()
    (users / "thesis.tex").write_text("years of work")
    before = snapshot(tmp_path)
    commands = {
        "prepare": ["prepare", raw / "manifest.json", "-o", users, "--no-previews", *PREPARE_TINY],
        "labels": ["labels", "--from", prepared / "manifest.json", "--n", "1", "-o", users],
        "train": ["train", "--config", "configs/gan_tiny.yaml", "-o", users, f"manifest={prepared / 'manifest.json'}"],
        "benchmark": ["benchmark", "-o", users, f"data.manifest={prepared / 'manifest.json'}", "seeds=[0]"],
    }
    for stage, argv in commands.items():
        code, err = run(argv, capsys)
        assert code == 1, stage
        assert_one_line(err, str(users), "medsynth did not write", "thesis.tex")
    assert snapshot(tmp_path) == before


def test_a_stage_replaces_only_its_own_output(raw, tmp_path, capsys):
    prepared = tmp_path / "prepared"
    argv = ["prepare", raw / "manifest.json", "-o", prepared, "--no-previews", *PREPARE_TINY]
    assert run(argv, capsys)[0] == 0
    first = snapshot(prepared)
    (prepared / "config.yaml").write_text("edited")
    assert run(argv, capsys)[0] == 0  # a re-run replaces what prepare wrote
    assert snapshot(prepared).keys() == first.keys() and (prepared / "config.yaml").read_text() != "edited"
    before = snapshot(prepared)
    code, err = run(["labels", "--from", prepared / "manifest.json", "--n", "1", "-o", prepared], capsys)
    assert code == 1
    assert_one_line(err, str(prepared))  # its input is inside, and prepare wrote it
    assert snapshot(prepared) == before


def test_output_path_that_is_a_file(raw, tmp_path, capsys):
    target = tmp_path / "out"
    target.write_text("a user's file")
    code, err = run(["prepare", raw / "manifest.json", "-o", target, *PREPARE_TINY], capsys)
    assert code == 1
    assert_one_line(err, str(target), "not a folder")
    assert target.read_text() == "a user's file"
    directory = tmp_path / "m.json"
    directory.mkdir()
    code, err = run(["manifest", "build", raw, "-o", directory], capsys)
    assert code == 1
    assert_one_line(err, str(directory), "folder is in the way")


@pytest.mark.parametrize(
    "error",
    [(errno.EROFS, "Read-only file system"), (errno.ENOSPC, "No space left on device")],
    ids=["read-only", "disk-full"],
)
def test_write_failures_are_one_line_and_leave_nothing(raw, tmp_path, capsys, monkeypatch, error):
    """An OSError while writing (injected at the NIfTI writer) -> one line, no output, no temporary."""
    import nibabel

    code_number, text = error

    def failing_save(image, filename, *args, **kwargs):
        raise OSError(code_number, text, str(filename))

    out_root = tmp_path / "outputs"
    out_root.mkdir()
    monkeypatch.setattr(nibabel, "save", failing_save)
    code, err = run(["prepare", raw / "manifest.json", "-o", out_root / "prepared", *PREPARE_TINY], capsys)
    assert code == 1
    assert_one_line(err, text, str(out_root))
    assert list(out_root.iterdir()) == []


def test_full_disk_for_real(raw, tmp_path, capsys):
    """A 64 kB tmpfs (when this machine lets us mount one): labels runs out of space cleanly."""
    mount = tmp_path / "small"
    mount.mkdir()
    prepared = tmp_path / "prepared"
    assert main(["prepare", str(raw / "manifest.json"), "-o", str(prepared), "--no-previews", *PREPARE_TINY]) == 0
    capsys.readouterr()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip("cannot mount a tmpfs here; the injected ENOSPC test covers the class")
    try:
        (mount / "keep.txt").write_text("already here")
        code, err = run(["labels", "--from", prepared / "manifest.json", "--n", "40", "-o", mount / "labels"], capsys)
        assert code == 1
        assert_one_line(err, "No space left on device")
        assert sorted(p.name for p in mount.iterdir()) == ["keep.txt"]
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_unexpected_error_is_one_line(raw, tmp_path, capsys, monkeypatch):
    import medsynth.data.prepare

    def broken(*args, **kwargs):
        raise KeyError("t1c")

    monkeypatch.setattr(medsynth.data.prepare, "run_prepare", broken)
    monkeypatch.delenv("MEDSYNTH_DEBUG", raising=False)
    code, err = run(["prepare", raw / "manifest.json", "-o", tmp_path / "p"], capsys)
    assert code == 1
    assert_one_line(err, "internal error (KeyError", "MEDSYNTH_DEBUG=1")


def _kill_when_writing(argv: list[str], watch: Path, pattern: str, timeout: float = 120.0) -> None:
    """Start ``medsynth argv`` and SIGKILL it as soon as a temporary matching ``pattern`` appears in ``watch``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "medsynth.cli", *map(str, argv)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if any(watch.glob(pattern)):
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the command finished before it could be killed mid-write"


@pytest.mark.slow
def test_kill_during_prepare_and_labels_loses_nothing(raw, tmp_path, capsys):
    """kill -9 mid-write keeps the previous output whole; the re-run succeeds and leaves no temporary."""
    prepared, labels = tmp_path / "prepared", tmp_path / "labels"
    prepare_argv = ["prepare", raw / "manifest.json", "-o", prepared, "--no-previews", *PREPARE_TINY]
    labels_argv = ["labels", "--from", prepared / "manifest.json", "--n", "30", "-o", labels]
    for argv, out in ((prepare_argv, prepared), (labels_argv, labels)):
        assert run(argv, capsys)[0] == 0
        before = snapshot(out)
        _kill_when_writing(argv, tmp_path, f".{out.name}.*.tmp*/**/*.nii.gz")
        assert snapshot(out) == before  # the killed run replaced nothing
        assert run(argv, capsys)[0] == 0
        assert (out / OWNER_FILE).is_file()
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_manifest_build_never_writes_over_a_scan_or_a_document(raw, tmp_path, capsys):
    scan = next(raw.rglob("T1c_*.nii.gz"))
    document = tmp_path / "thesis.docx"
    document.write_bytes(b"PK\x03\x04 years of work")
    before = snapshot(tmp_path)
    for target in (scan, document):
        code, err = run(["manifest", "build", raw, "-o", target], capsys)
        assert code == 1
        assert_one_line(err, str(target), "not a medsynth manifest")
    assert snapshot(tmp_path) == before
    assert run(["manifest", "build", raw, "-o", raw / "manifest.json"], capsys)[0] == 0  # a manifest is replaced


def test_files_added_to_a_stage_output_are_not_replaced_silently(raw, tmp_path, capsys):
    prepared = tmp_path / "prepared"
    argv = ["prepare", raw / "manifest.json", "-o", prepared, "--no-previews", *PREPARE_TINY]
    assert run(argv, capsys)[0] == 0
    note = next(prepared.glob("cases/*")) / "my_corrected_seg.nii.gz"
    note.write_text("a radiologist's correction")
    before = snapshot(prepared)
    code, err = run(argv, capsys)
    assert code == 1
    assert_one_line(err, str(prepared), "my_corrected_seg.nii.gz", "medsynth did not write")
    assert snapshot(prepared) == before


def test_a_checkpoint_that_cannot_be_written_is_one_line(raw, tmp_path, capsys, monkeypatch):
    """torch.save reports a failed write (a full disk) as a RuntimeError from its zip writer."""
    import torch

    prepared = tmp_path / "prepared"
    assert run(["prepare", raw / "manifest.json", "-o", prepared, "--no-previews", *PREPARE_TINY], capsys)[0] == 0

    def failing_save(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64704 vs 64624")

    monkeypatch.setattr(torch, "save", failing_save)
    out = tmp_path / "run"
    code, err = run(
        ["train", "--config", "configs/gan_tiny.yaml", "-o", out, f"manifest={prepared / 'manifest.json'}"], capsys
    )
    assert code == 1
    assert_one_line(err, str(out / "checkpoint.pt"), "writing the checkpoint failed")
    assert not any(p.name.startswith(".") and ".tmp" in p.name for p in out.iterdir())


def test_a_nifti_where_json_belongs_is_one_line(raw, tmp_path, capsys):
    scan = next(raw.rglob("T1c_*.nii.gz"))
    code, err = run(
        ["generate", "--checkpoint", "medsynth/pretrained/gan_cpu.pt", "--labels", scan, "-o", tmp_path / "c"], capsys
    )
    assert code == 1
    assert_one_line(err, str(scan))
