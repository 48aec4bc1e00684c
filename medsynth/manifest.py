"""The contract between stages: one manifest type, one writer, one provenance record.

Every stage's output folder holds a ``manifest.json``: a MONAI/MSD datalist
(``monai.data.load_decathlon_datalist(path, data_list_key="training")`` reads it unchanged;
keys ``training``, ``validation``, ``test``; paths relative to the manifest) plus a
``medsynth`` section with its ``kind`` (``raw``, ``prepared``, ``label_maps``, ``cohort``),
the modality names, the label scheme and the :func:`provenance` of the run that wrote it.

Splits have one vocabulary everywhere (configs, CLI, Python, each entry's ``split``):
``train``, ``validation``, ``test``. Only the datalist keys follow MSD (``training``), so
MONAI reads the file as it is.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> path = write_manifest(
...     folder / "manifest.json", kind="label_maps", name="demo", description="two maps",
...     modalities=[], labels={"0": "background"},
...     entries=[{"case_id": "a", "split": "train", "label": "a.nii.gz"},
...              {"case_id": "b", "split": "test", "label": "b.nii.gz"}],
...     provenance=provenance("labels", seed=0),
... )
>>> manifest = Manifest.load(path, kind="label_maps")
>>> manifest.kind, [c.case_id for c in manifest.cases(["test"])]
('label_maps', ['b'])
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from medsynth.errors import DataError
from medsynth.io import read_json, sha256, write_json

FORMAT_VERSION = 1
Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
# the MSD datalist key of each split (the JSON file only; MONAI's load_decathlon_datalist reads these)
SPLIT_KEYS: dict[str, str] = {"train": "training", "validation": "validation", "test": "test"}
Kind = Literal["raw", "prepared", "label_maps", "cohort"]
KINDS: tuple[str, ...] = ("raw", "prepared", "label_maps", "cohort")
# what makes each kind, for error messages
MADE_BY = {
    "raw": "medsynth manifest build",
    "prepared": "medsynth prepare",
    "label_maps": "medsynth labels",
    "cohort": "medsynth generate",
}


@dataclass
class Case:
    """One case of a manifest with absolute paths, as every stage consumes it."""

    case_id: str
    split: str
    images: list[Path]  # one file per modality, or one 4D file
    label: Path | None
    mask: Path | None
    record: dict[str, Any]  # the manifest entry as written (relative paths, extra keys)

    @property
    def files(self) -> list[Path]:
        """Absolute paths of the case's files: images, then label, then mask."""
        return [*self.images, *(p for p in (self.label, self.mask) if p is not None)]


class Manifest:
    """A loaded manifest: the datalist JSON, its folder, and typed access to what stages need.

    ``Manifest.load(path, kind="prepared")`` refuses another kind with one line naming the file
    and the command that makes the expected kind. ``manifest.data`` is the JSON as a dict.

    Args:
        data: the manifest JSON as a dict (use :meth:`load` to read a file).
        path: where it lives; relative paths in it are resolved against its folder.

    >>> Manifest({"training": [{"case_id": "a", "split": "train"}], "medsynth": {"kind": "cohort", "modalities": []}},
    ...          "/data/cohort/manifest.json").cases()[0].case_id
    'a'
    """

    def __init__(self, data: dict[str, Any], path: str | os.PathLike) -> None:
        self.data = data
        self.path = Path(path).resolve()

    @classmethod
    def load(cls, path: str | os.PathLike, kind: str | Sequence[str] | None = None) -> Manifest:
        """Read ``path`` and check its structure (not its files: see ``medsynth.data.manifest.check_manifest``).

        Args:
            path: a ``manifest.json`` (or a folder holding one).
            kind: the kind (or kinds) the caller accepts; ``None`` accepts any.
        """
        path = Path(path)
        if path.is_dir():
            path = path / "manifest.json"
        data = read_json(path)
        meta = data.get("medsynth") if isinstance(data, dict) else None
        if not isinstance(meta, dict) or not isinstance(meta.get("modalities"), list):
            raise DataError(f"{path}: not a medsynth manifest (no 'medsynth' section with 'modalities')")
        if not any(isinstance(data.get(k), list) for k in SPLIT_KEYS.values()):
            raise DataError(f"{path}: no 'training', 'validation' or 'test' list")
        manifest = cls(data, path)
        if kind is not None:
            expected = (kind,) if isinstance(kind, str) else tuple(kind)
            if manifest.kind not in expected:
                wanted = " or ".join(f"a {k} manifest (from `{MADE_BY.get(k, k)}`)" for k in expected)
                raise DataError(f"{path}: a {manifest.kind} manifest; expected {wanted}")
        meta["path"] = str(manifest.path)  # older code reads the location from here
        return manifest

    @property
    def meta(self) -> dict[str, Any]:
        """The ``medsynth`` section."""
        return self.data["medsynth"]

    @property
    def kind(self) -> str:
        """``raw``, ``prepared``, ``label_maps`` or ``cohort`` (``raw`` for manifests that predate kinds)."""
        return str(self.meta.get("kind", "raw"))

    @property
    def modalities(self) -> list[str]:
        """Modality names, in channel order."""
        return list(self.meta["modalities"])

    @property
    def label_scheme(self) -> str | None:
        """The label scheme of the label files (``canonical`` after ``prepare``)."""
        return self.meta.get("label_scheme")

    @property
    def folder(self) -> Path:
        """The folder relative paths are resolved against."""
        return self.path.parent

    def entries(self, splits: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The raw entries of the chosen splits (all by default), in split order."""
        chosen = _check_splits(splits, self.path)
        return [entry for split in chosen for entry in self.data.get(SPLIT_KEYS[split], [])]

    def cases(self, splits: Iterable[str] | None = None) -> list[Case]:
        """The cases of the chosen splits (all by default) with absolute paths."""
        cases = []
        for split in _check_splits(splits, self.path):
            for entry in self.data.get(SPLIT_KEYS[split], []):
                image = entry.get("image", [])
                images = [self.folder / p for p in ([image] if isinstance(image, str) else image)]
                cases.append(
                    Case(
                        case_id=entry.get("case_id", Path(images[0]).name if images else "?"),
                        split=entry.get("split", split),
                        images=images,
                        label=self.folder / entry["label"] if entry.get("label") else None,
                        mask=self.folder / entry["mask"] if entry.get("mask") else None,
                        record=entry,
                    )
                )
        return cases


def _check_splits(splits: Iterable[str] | None, where: Path) -> tuple[str, ...]:
    if splits is None:
        return SPLITS
    chosen = tuple(splits)
    unknown = [s for s in chosen if s not in SPLITS]
    if unknown:
        raise DataError(f"{where}: unknown split(s) {unknown}; splits are {list(SPLITS)}")
    return chosen


def write_manifest(
    path: str | os.PathLike,
    *,
    kind: str,
    name: str,
    description: str,
    modalities: Sequence[str],
    labels: Mapping[str, str],
    entries: Iterable[Mapping[str, Any]],
    provenance: Mapping[str, Any],
    **meta: Any,
) -> Path:
    """Write a manifest atomically: the MSD header, the entries by split, and the ``medsynth`` section.

    Args:
        path: where to write (``manifest.json`` in the stage's output folder).
        kind: one of :data:`KINDS`.
        name, description: the MSD header fields.
        modalities: modality names in channel order.
        labels: MSD ``labels`` (value -> name) of the label files.
        entries: one dict per case with at least ``case_id`` and ``split``; kept in order within a split.
        provenance: from :func:`provenance`.
        meta: further ``medsynth`` fields of this kind (``label_scheme``, ``checksums``...).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    sections: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        split = entry.get("split", "train")
        if split not in SPLIT_KEYS:
            raise DataError(f"{path}: case {entry.get('case_id')}: unknown split {split!r}")
        sections.setdefault(SPLIT_KEYS[split], []).append(dict(entry))
    manifest = {
        "name": name,
        "description": description,
        "modality": {str(i): m for i, m in enumerate(modalities)},
        "labels": dict(labels),
        "numTraining": len(sections.get("training", [])),
        **{key: sections[key] for key in SPLIT_KEYS.values() if key in sections},
        "medsynth": {
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "modalities": list(modalities),
            **meta,
            "provenance": dict(provenance),
        },
    }
    return write_json(manifest, path)


def provenance(
    stage: str,
    config: Any = None,
    seed: int | None = None,
    inputs: Iterable[str | os.PathLike] = (),
    checksums: bool = True,
) -> dict[str, Any]:
    """What every stage records beside its output: who, when, with what, from which inputs.

    Args:
        stage: the stage's name (``prepare``, ``labels``, ``generate``, ``audit``...).
        config: the resolved config (a dataclass or a dict), recorded in full.
        seed: the run's seed, when it has one.
        inputs: input files (their SHA-256) or folders (their ``manifest.json``'s SHA-256).
        checksums: False to record input paths only (for inputs too large to hash again).
    """
    from medsynth._version import __version__
    from medsynth.config import to_dict

    recorded: dict[str, str | None] = {}
    for item in inputs:
        item = Path(item)
        target = item / "manifest.json" if item.is_dir() else item
        recorded[str(item.resolve())] = sha256(target) if checksums and target.is_file() else None
    versions = {"medsynth": __version__, "python": platform.python_version()}
    for module in ("torch", "monai", "numpy"):
        if module in sys.modules:  # only what this run imported: recording must not import torch
            versions[module] = getattr(sys.modules[module], "__version__", "?")
    return {
        "stage": stage,
        "versions": versions,
        "command": " ".join(sys.argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"host": socket.gethostname(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "seed": seed,
        "inputs": recorded,
        "config": to_dict(config) if config is not None and not isinstance(config, dict) else config,
    }
