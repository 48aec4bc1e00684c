"""Checkpoints: plain dicts of tensors and primitives, loaded with ``weights_only=True``.

A training checkpoint (``checkpoint.pt``) holds the generator, the discriminator, both
optimizers and schedulers, the step, the torch RNG state, the resolved config and the data
geometry. A generator file (``generator.pt``) holds only what synthesis needs; both load
with :func:`medsynth.load_generator`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medsynth.errors import MedsynthError
from medsynth.io import atomic_path

FORMAT = "medsynth-generator"
VERSION = 1


def save(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` atomically (a crash mid-write leaves the previous checkpoint intact)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "version": VERSION, **state}, tmp)
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (no arbitrary unpickling); clear errors for foreign files."""
    path = Path(path)
    if not path.is_file():
        raise MedsynthError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise MedsynthError(f"{path}: cannot load checkpoint safely ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise MedsynthError(f"{path}: not a medsynth generator checkpoint")
    if state.get("version", 0) > VERSION:
        raise MedsynthError(f"{path}: made by a newer medsynth (format {state['version']} > {VERSION})")
    return state
