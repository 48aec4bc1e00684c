"""Checkpoints: plain dicts of tensors and primitives, loaded with ``weights_only=True``.

A training checkpoint (``checkpoint.pt``) holds the generator, the discriminator, both
optimizers and schedulers, the step, the torch RNG state, the resolved config and the data
geometry. A generator file (``generator.pt``) holds only what synthesis needs; both load
with :func:`medsynth.load_generator`; ``medsynth train --resume`` needs a training checkpoint.

Integrity: :func:`save` records ``content_sha256``, a SHA-256 over the whole content (every
tensor's dtype, shape and bytes, and every other value, keys in sorted order), and
:func:`load` recomputes it: a file changed after saving (a flipped bit inside a tensor that
``torch.load`` still reads) is refused with one line naming the file. Files written before
the checksum existed (no ``content_sha256`` key; same format version 1) are **accepted
without a check**, so older run folders still resume and generate; re-save one with
``save(load(path), path)`` to add its checksum. Any failure of ``torch.load`` (truncated
file, not a PyTorch file, a pickle that would run code) is one line naming the file.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsynth.errors import MedsynthError, OutputError
from medsynth.io import atomic_path

FORMAT = "medsynth-generator"
VERSION = 1
CHECKSUM_KEY = "content_sha256"

# what each kind of file must hold (``expect`` of :func:`load`)
TRAINING_KEYS = ("step", "config", "generator", "opt_g", "sched_g", "torch_rng")
GENERATOR_KEYS = ("kind", "network", "modalities", "grid", "spacing_mm")


def content_sha256(state: Mapping[str, Any]) -> str:
    """SHA-256 of a checkpoint's content, independent of file layout, device and memory format.

    Walks the nested dicts (keys sorted), lists and tuples; a tensor contributes its path,
    dtype, shape and bytes (row-major), any other value its type and value. The
    ``content_sha256`` entry itself is left out.
    """
    digest = hashlib.sha256()
    _update(digest, "", {k: v for k, v in state.items() if k != CHECKSUM_KEY})
    return digest.hexdigest()


def _update(digest: hashlib._Hash, path: str, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().to("cpu").contiguous()
        digest.update(f"{path}=tensor:{tensor.dtype}:{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, Mapping):
        digest.update(f"{path}=map:{len(value)}\0".encode())
        for key in sorted(value, key=repr):
            _update(digest, f"{path}/{key!r}", value[key])
    elif isinstance(value, list | tuple):
        digest.update(f"{path}=seq:{len(value)}\0".encode())
        for index, item in enumerate(value):
            _update(digest, f"{path}/{index}", item)
    else:
        digest.update(f"{path}={_leaf(value)}\0".encode())


def _leaf(value: Any) -> str:
    if value is None or isinstance(value, bool | str):
        return f"{type(value).__name__}:{value}"
    if isinstance(value, int | np.integer):
        return f"int:{int(value)}"
    if isinstance(value, float | np.floating):
        return f"float:{float(value)!r}"
    return f"{type(value).__name__}:{value!r}"


def save(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` atomically (a crash mid-write leaves the previous checkpoint intact), with its checksum."""
    path = Path(path)
    state = {"format": FORMAT, "version": VERSION, **{k: v for k, v in state.items() if k != CHECKSUM_KEY}}
    state[CHECKSUM_KEY] = content_sha256(state)
    with atomic_path(path) as tmp:
        try:
            torch.save(state, tmp)
        except RuntimeError as exc:  # PyTorch's zip writer reports a failed write (e.g. a full disk) this way
            free = shutil.disk_usage(tmp.parent).free
            reason = "no space left on device" if free < (1 << 20) else str(exc).strip().splitlines()[0]
            raise OutputError(f"{path}: writing the checkpoint failed ({reason})") from None
    return path


PRETRAINED = Path(__file__).resolve().parent.parent / "pretrained"


def resolve(spec: str | Path) -> Path:
    """A checkpoint's path: ``pretrained:gan``, ``pretrained:vae``, ``pretrained:gan_flair`` name the shipped models.

    >>> resolve("pretrained:vae").name, resolve("runs/gan/generator.pt").as_posix()
    ('vae_cpu.pt', 'runs/gan/generator.pt')
    """
    text = str(spec)
    if not text.startswith("pretrained:"):
        return Path(spec)
    kind = text.split(":", 1)[1]
    path = PRETRAINED / f"{kind}_cpu.pt"
    if not path.is_file():
        shipped = sorted(p.name.removesuffix("_cpu.pt") for p in PRETRAINED.glob("*_cpu.pt"))
        raise MedsynthError(f"{text}: no such shipped model; choose {', '.join('pretrained:' + k for k in shipped)}")
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu", expect: str | None = None) -> dict[str, Any]:
    """Load a checkpoint safely (no arbitrary unpickling) and check its content checksum.

    ``expect``: ``"training"`` (``--resume`` needs optimizers and discriminator) or
    ``"generator"`` (synthesis needs the weights and their metadata); ``None`` checks only
    that it is a medsynth checkpoint. Every refusal is a one-line :class:`MedsynthError`
    naming the file. ``path`` may be ``pretrained:gan`` or ``pretrained:vae`` (:func:`resolve`).
    """
    path = resolve(path)
    if not path.is_file():
        raise MedsynthError(f"{path}: checkpoint not found")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the refusal below says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise MedsynthError(f"{path}: cannot load checkpoint safely: {_load_failure(exc)}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise MedsynthError(f"{path}: not a medsynth generator checkpoint")
    version = state.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise MedsynthError(f"{path}: made by a newer medsynth (format {version} > {VERSION})")
    recorded = state.get(CHECKSUM_KEY)
    if recorded is not None and recorded != content_sha256(state):
        raise MedsynthError(
            f"{path}: checkpoint is corrupted: its content no longer matches the SHA-256 recorded when it was saved "
            "(the file changed after saving); restore it from a copy or retrain"
        )
    if expect == "training":
        _check_training(path, state)
    elif expect == "generator":
        _check_generator(path, state)
    elif expect is not None:
        raise ValueError(f"expect must be 'training', 'generator' or None, not {expect!r}")
    return state


def is_training_checkpoint(state: Mapping[str, Any]) -> bool:
    return "opt_g" in state and "generator" in state


def _check_training(path: Path, state: dict[str, Any]) -> None:
    if "state_dict" in state and not is_training_checkpoint(state):
        raise MedsynthError(
            f"{path}: a generator file (generator.pt: the weights synthesis needs, no optimizer or discriminator "
            "state), not a training checkpoint; --resume needs the checkpoint.pt of a run"
        )
    missing = [key for key in TRAINING_KEYS if key not in state]
    if missing:
        raise MedsynthError(f"{path}: not a complete training checkpoint (no {', '.join(missing)}); cannot resume")


def _check_generator(path: Path, state: dict[str, Any]) -> None:
    if "kind" not in state:
        raise MedsynthError(f"{path}: checkpoint has no generator metadata")
    missing = [key for key in GENERATOR_KEYS if key not in state]
    weights = state.get("state_dict") if "state_dict" in state else state.get("generator")
    if not isinstance(weights, Mapping) or not weights:
        missing.append("generator weights (state_dict)")
    if missing:
        raise MedsynthError(f"{path}: not a usable generator (no {', '.join(missing)})")


def _load_failure(exc: Exception) -> str:
    """What went wrong in ``torch.load``, in one line and without torch's advice to load unsafely."""
    text = str(exc)
    module = re.search(r"GLOBAL ([\w.]+)", text)
    if module:
        return (
            f"it holds a Python object ({module[1]}) that only an unsafe load would build, which can run code; "
            "medsynth reads tensors and plain values only and refuses it"
        )
    if isinstance(exc, EOFError) or not text.strip():
        return "the file is empty or ends early (truncated, or not a PyTorch file)"
    detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    if detail:
        reason = detail[1]
    else:
        lines = [line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line]
        reason = lines[0].split(". ")[0] if lines else type(exc).__name__
    reason = reason.rstrip(".")[:200]
    return f"not a readable PyTorch checkpoint (truncated, corrupted or another kind of file: {reason})"
