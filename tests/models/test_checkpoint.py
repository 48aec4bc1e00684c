"""Checkpoint integrity: a content checksum checked on load, one-line refusals for every bad file."""

from __future__ import annotations

import os
import shutil
import struct
import zipfile
from pathlib import Path

import pytest
import torch

import medsynth
from medsynth.cli import main
from medsynth.errors import MedsynthError
from medsynth.models import checkpoint

REPO = Path(__file__).resolve().parents[2]


def flip_bit_inside_a_tensor(path: Path) -> None:
    """Flip one bit in the middle of the largest tensor record of a ``torch.save`` zip (it still loads)."""
    with zipfile.ZipFile(path) as archive:
        records = [i for i in archive.infolist() if "/data/" in i.filename]
    info = max(records, key=lambda i: i.file_size)
    assert info.compress_type == zipfile.ZIP_STORED and info.file_size >= 4
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_length + extra_length
    data[start + info.file_size // 2] ^= 0x10
    path.write_bytes(bytes(data))


def _tensors(value, prefix=""):
    if isinstance(value, torch.Tensor):
        yield prefix, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(item, f"{prefix}/{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _tensors(item, f"{prefix}/{index}")


def _flipped_copy(source: Path, target: Path) -> Path:
    """A copy of ``source`` with one tensor bit flipped; asserts torch.load still reads it and a tensor changed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    flip_bit_inside_a_tensor(target)
    before = dict(_tensors(torch.load(source, weights_only=True)))
    after = dict(_tensors(torch.load(target, weights_only=True)))  # still loadable: only the checksum can tell
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    return target


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("medsynth: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err and "weights_only" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def gan_run(prepared_phantoms, tmp_path_factory) -> Path:
    """A 2-step tiny GAN run through the CLI (checkpoint.pt + generator.pt)."""
    run = tmp_path_factory.mktemp("gan_run") / "run"
    config = str(REPO / "configs" / "gan_tiny.yaml")
    assert main(["train", "--config", config, "-o", str(run), f"manifest={prepared_phantoms}", "steps=2"]) == 0
    return run


def _resume(run: Path, prepared_phantoms: Path) -> int:
    config = str(REPO / "configs" / "gan_tiny.yaml")
    return main(["train", "--config", config, "-o", str(run), f"manifest={prepared_phantoms}", "steps=4", "--resume"])


def test_checksum_is_recorded_and_independent_of_layout(tmp_path):
    weights = torch.randn(2, 3, 4, 5, 6).to(memory_format=torch.channels_last_3d)
    state = {"kind": "gan", "spacing_mm": [2.0, 2.0, 2.0], "state_dict": {"w": weights, "b": torch.zeros(3)}}
    checkpoint.save(state, tmp_path / "a.pt")
    raw = torch.load(tmp_path / "a.pt", weights_only=True)
    assert raw[checkpoint.CHECKSUM_KEY] == checkpoint.content_sha256(raw)
    contiguous = {**state, "state_dict": {"w": weights.contiguous(), "b": torch.zeros(3)}}
    assert checkpoint.content_sha256({**raw}) == checkpoint.content_sha256(
        {"format": checkpoint.FORMAT, "version": checkpoint.VERSION, **contiguous}
    )
    assert checkpoint.load(tmp_path / "a.pt")["spacing_mm"] == [2.0, 2.0, 2.0]
    # a value changed after saving (here the spacing, re-written with the old checksum) is caught too
    torch.save({**raw, "spacing_mm": [1.0, 2.0, 2.0]}, tmp_path / "b.pt")
    with pytest.raises(MedsynthError, match="checkpoint is corrupted") as info:
        checkpoint.load(tmp_path / "b.pt")
    assert str(info.value).startswith(f"{tmp_path / 'b.pt'}: ")


def test_bit_flipped_generator_is_refused_by_api_and_generate(tiny_generator, tmp_path, capsys):
    flipped = _flipped_copy(tiny_generator, tmp_path / "flipped" / "generator.pt")
    with pytest.raises(MedsynthError) as info:
        medsynth.load_generator(flipped)
    message = str(info.value)
    assert message.startswith(f"{flipped}: checkpoint is corrupted") and "\n" not in message
    out = tmp_path / "cohort"
    assert main(["generate", "--checkpoint", str(flipped), "--n", "1", "-o", str(out)]) == 1
    assert str(flipped) in _one_error_line(capsys.readouterr().err)
    assert not out.exists()  # refused before anything was written
    medsynth.load_generator(tiny_generator)  # the original still loads


def test_bit_flipped_training_checkpoint_is_refused_on_resume(gan_run, prepared_phantoms, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(gan_run, run)
    _flipped_copy(gan_run / "checkpoint.pt", run / "checkpoint.pt")
    assert _resume(run, prepared_phantoms) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert f"{run / 'checkpoint.pt'}: checkpoint is corrupted" in line
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 2  # nothing was trained on top of it


def test_generator_file_where_a_training_checkpoint_is_needed(gan_run, prepared_phantoms, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(gan_run, run)
    shutil.copyfile(run / "generator.pt", run / "checkpoint.pt")
    assert _resume(run, prepared_phantoms) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert f"{run / 'checkpoint.pt'}: a generator file" in line and "not a training checkpoint" in line
    (run / "checkpoint.pt").unlink()
    assert _resume(run, prepared_phantoms) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert f"{run / 'checkpoint.pt'}: not found" in line and "generator.pt holds the finished generator only" in line
    config = str(REPO / "configs" / "gan_tiny.yaml")
    assert main(["train", "--config", config, "-o", str(run), f"manifest={prepared_phantoms}", "steps=2"]) == 1
    assert f"{run} holds a trained generator.pt" in _one_error_line(capsys.readouterr().err)  # not overwritten
    with pytest.raises(MedsynthError, match="a generator file"):
        checkpoint.load(gan_run / "generator.pt", expect="training")
    assert checkpoint.load(gan_run / "checkpoint.pt", expect="training")["step"] == 2


def test_training_checkpoint_and_foreign_files_where_a_generator_is_needed(gan_run, tmp_path):
    # a training checkpoint holds the generator too: documented to load for synthesis
    assert medsynth.load_generator(gan_run / "checkpoint.pt", device="cpu").kind == "gan"
    checkpoint.save({"step": 1, "config": {}, "generator": {"w": torch.zeros(1)}}, tmp_path / "bare.pt")
    with pytest.raises(MedsynthError, match=r"bare\.pt: checkpoint has no generator metadata"):
        medsynth.load_generator(tmp_path / "bare.pt")
    state = {k: v for k, v in checkpoint.load(gan_run / "generator.pt").items() if k != "state_dict"}
    checkpoint.save(state, tmp_path / "no_weights.pt")
    with pytest.raises(MedsynthError, match=r"no_weights\.pt: not a usable generator \(no generator weights"):
        medsynth.load_generator(tmp_path / "no_weights.pt")
    wrong = checkpoint.load(gan_run / "generator.pt")
    wrong["network"] = {**wrong["network"], "channels": [8, 8, 16]}  # metadata that does not fit the weights
    checkpoint.save(wrong, tmp_path / "mismatch.pt")
    with pytest.raises(MedsynthError, match=r"mismatch\.pt: the weights do not fit the network") as info:
        medsynth.load_generator(tmp_path / "mismatch.pt", device="cpu")
    assert "\n" not in str(info.value)


class _Payload:
    """A pickle that would create a folder if it were ever unpickled unsafely."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty", "malicious", "plain_pickle"])
def test_unreadable_or_unsafe_files_are_one_line(tiny_generator, tmp_path, capsys, kind):
    path = tmp_path / "bad.pt"
    marker = tmp_path / "payload_ran"
    if kind == "truncated":
        data = Path(tiny_generator).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "garbage":
        path.write_bytes(b"garbage, not a checkpoint\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "malicious":
        torch.save({"format": checkpoint.FORMAT, "version": 1, "kind": _Payload(marker)}, path)
    else:
        import pickle

        path.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(MedsynthError) as info:
        medsynth.load_generator(path)
    message = str(info.value)
    assert message.startswith(f"{path}: cannot load checkpoint safely: ")
    assert "\n" not in message and "weights_only" not in message and "Re-running" not in message
    if kind == "malicious":
        assert "os.mkdir" in message or "posix.mkdir" in message
    assert main(["generate", "--checkpoint", str(path), "--n", "1", "-o", str(tmp_path / "out")]) == 1
    assert str(path) in _one_error_line(capsys.readouterr().err)
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_checkpoint_without_checksum_is_accepted_unverified(tiny_generator, tmp_path):
    """Files saved before the checksum existed load as before (documented choice); re-saving adds it."""
    state = torch.load(tiny_generator, weights_only=True)
    old = {k: v for k, v in state.items() if k != checkpoint.CHECKSUM_KEY}
    torch.save(old, tmp_path / "old.pt")
    assert medsynth.load_generator(tmp_path / "old.pt", device="cpu").kind == "vae"
    flip_bit_inside_a_tensor(tmp_path / "old.pt")
    checkpoint.load(tmp_path / "old.pt")  # no checksum: a flipped bit cannot be noticed (the documented limit)
    checkpoint.save(checkpoint.load(tiny_generator), tmp_path / "resaved.pt")
    assert (
        torch.load(tmp_path / "resaved.pt", weights_only=True)[checkpoint.CHECKSUM_KEY]
        == state[checkpoint.CHECKSUM_KEY]
    )


@pytest.mark.parametrize("kind", ["gan", "vae", "gan_flair"])
def test_shipped_checkpoints_carry_a_valid_checksum(kind):
    state = torch.load(medsynth.pretrained(kind), weights_only=True)
    assert state[checkpoint.CHECKSUM_KEY] == checkpoint.content_sha256(state)
    assert state["spacing_mm"] == [2.0, 2.0, 2.0] and state["orientation"] == "RAS"


def test_training_manifest_is_recorded_as_given(prepared_phantoms, tmp_path, monkeypatch):
    # a shared checkpoint carries no folder of the training machine; the data are found again by content
    monkeypatch.chdir(prepared_phantoms.parent)
    config = str(REPO / "configs" / "gan_tiny.yaml")
    run = tmp_path / "run"
    assert main(["train", "--config", config, "-o", str(run), f"manifest={prepared_phantoms.name}", "steps=1"]) == 0
    training = checkpoint.load(run / "generator.pt")["training"]
    assert training["manifest"] == prepared_phantoms.name and training["label_maps"]
