"""Atomic writes and checked NIfTI reading."""

import errno
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from medsynth.errors import DataError, OutputError
from medsynth.io import (
    OWNER_FILE,
    atomic_output,
    atomic_path,
    claim_output,
    load_nifti,
    public_path,
    remove_stale_temporaries,
    save_nifti,
    write_json,
)


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.nii.gz") as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_folder_replaces_only_when_asked(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "old").write_text("old")
    with pytest.raises(OutputError, match="a folder is in the way"), atomic_path(tmp_path / "d") as tmp:
        tmp.mkdir()
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["old"]
    with atomic_path(tmp_path / "d", replace=True) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("new")
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # the old folder, moved aside, is gone


def test_file_output_onto_a_folder_is_refused(tmp_path):
    (tmp_path / "out.json").mkdir()
    (tmp_path / "out.json" / "keep").write_text("keep")
    with pytest.raises(OutputError, match=r"out\.json: a folder is in the way"):
        write_json({}, tmp_path / "out.json")
    assert (tmp_path / "out.json" / "keep").read_text() == "keep"


def test_atomic_output_refuses_a_folder_it_did_not_write(tmp_path):
    user = tmp_path / "mydata"
    user.mkdir()
    (user / "NOTES.txt").write_text("mine")
    with (
        pytest.raises(
            OutputError, match=r"mydata: folder exists and holds files medsynth did not write \(NOTES\.txt\)"
        ),
        atomic_output(user, "prepare") as tmp,
    ):
        (tmp / "x").write_text("x")
    assert [p.name for p in user.iterdir()] == ["NOTES.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mydata"]


def test_atomic_output_replaces_its_own_stage_only(tmp_path):
    out = tmp_path / "out"
    with atomic_output(out, "labels") as tmp:
        (tmp / "first").write_text("1")
    with atomic_output(out, "labels") as tmp:
        (tmp / "second").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == [OWNER_FILE, "second"]
    other_stage = r"written by `medsynth labels`, not `medsynth prepare`"
    with pytest.raises(OutputError, match=other_stage), atomic_output(out, "prepare"):
        pass
    assert (out / "second").is_file()


def test_atomic_output_refuses_a_folder_holding_its_input(tmp_path):
    out = tmp_path / "out"
    with atomic_output(out, "prepare") as tmp:
        (tmp / "manifest.json").write_text("{}")
    holds_input = "holds this command's input"
    with pytest.raises(OutputError, match=holds_input), atomic_output(out, "prepare", inputs=[out / "manifest.json"]):
        pass
    assert (out / "manifest.json").is_file()


def test_failed_replacement_keeps_the_old_output(tmp_path):
    out = tmp_path / "out"
    with atomic_output(out, "labels") as tmp:
        (tmp / "old").write_text("old")
    with pytest.raises(OSError), atomic_output(out, "labels") as tmp:
        (tmp / "half").write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "half"))
    assert sorted(p.name for p in out.iterdir()) == [OWNER_FILE, "old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_claim_output(tmp_path):
    out = claim_output(tmp_path / "cohort", "generate")
    (out / "cases").mkdir()
    assert claim_output(out, "generate") == out  # resumable: the same stage may come back
    with pytest.raises(OutputError, match="written by `medsynth generate`, not `medsynth benchmark`"):
        claim_output(out, "benchmark")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="file: exists and is not a folder"):
        claim_output(tmp_path / "file", "generate")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (claim_output(empty, "audit") / OWNER_FILE).is_file()


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    stale = tmp_path / f".synth_00001.{host}-{dead.stdout.strip()}.abc.tmp"
    live = tmp_path / f".synth_00002.{host}-{os.getpid()}.abc.tmp"
    other_host = tmp_path / ".synth_00003.elsewhere-1.abc.tmp"
    user = tmp_path / ".hidden.tmp.user"
    for path in (stale, live, other_host, user):
        path.mkdir()
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (live, other_host, user))


def test_save_and_load_round_trip(tmp_path):
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    array = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    save_nifti(array, affine, tmp_path / "a.nii.gz")
    loaded, loaded_affine, _ = load_nifti(tmp_path / "a.nii.gz", dtype=None)
    assert np.array_equal(loaded, array) and np.allclose(loaded_affine, affine)


def test_missing_file_named(tmp_path):
    with pytest.raises(DataError, match=r"a\.nii\.gz: file not found"):
        load_nifti(tmp_path / "a.nii.gz")


def test_temporaries_of_a_host_with_dots_in_its_name(tmp_path, monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "node1.cluster.local")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".a_t1c.nii.gz.node1.cluster.local-{dead.stdout.strip()}.k2x.tmp.nii.gz"
    stale.write_text("half")
    assert public_path(stale) == str(tmp_path / "a_t1c.nii.gz")
    assert remove_stale_temporaries(tmp_path) == [stale]


def test_a_folder_that_appears_while_writing_is_not_replaced(tmp_path):
    target = tmp_path / "case"
    with pytest.raises(OutputError, match="appeared while"), atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "mine").write_text("new")
        target.mkdir()  # another process finished first
        (target / "theirs").write_text("first")
    assert [p.name for p in target.iterdir()] == ["theirs"]
    assert [p.name for p in tmp_path.iterdir()] == ["case"]
