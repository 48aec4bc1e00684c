"""``medsynth prepare``: preprocess every case of a manifest into NIfTI files + a manifest.

Example::

    $ medsynth prepare data_manifests/brats2013_small.json --config configs/prepare_cpu.yaml -o runs/prepared

>>> from medsynth.data.config import PrepareConfig
>>> path = run_prepare(PrepareConfig(manifest="manifest.json"), "prepared")  # doctest: +SKIP

Writes ``cases/<case_id>/<case_id>_<modality>.nii.gz`` (z-scored images),
``<case_id>_label_map.nii.gz`` (canonical scheme: anatomy + tumor) and
``<case_id>_mask.nii.gz``, ``previews/<case_id>.png``, ``manifest.json`` (a datalist of the
prepared files, with each case's original geometry, tumor volumes and the run's provenance) and
``config.yaml`` (the resolved :class:`~medsynth.data.config.PrepareConfig`).
The output folder appears only when every case succeeded.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from medsynth._version import __version__
from medsynth.config import save_config, to_dict
from medsynth.data.config import PrepareConfig, PreprocessConfig
from medsynth.data.manifest import (
    check_manifest,
    entry_files,
    file_checksums,
)
from medsynth.data.preprocess import build_transforms, cache_dir_for
from medsynth.data.scheme import CLASS_NAMES, ET, NETC, REGIONS, SNFH, TUMOR
from medsynth.errors import DataError
from medsynth.io import atomic_output, save_nifti, sha256
from medsynth.manifest import Manifest, provenance, write_manifest


def _items(manifest: Manifest) -> list[dict[str, Any]]:
    """Manifest cases as MONAI items; the files' checksums key the persistent cache."""
    sums = manifest.meta.get("checksums", {})
    items = []
    for case in manifest.cases():
        item: dict[str, Any] = {"case_id": case.case_id, "split": case.split}
        if case.images:
            item["image"] = [str(p) for p in case.images] if len(case.images) > 1 else str(case.images[0])
        if case.label is not None:
            item["label"] = str(case.label)
        if case.mask is not None:
            item["mask"] = str(case.mask)
        item["checksums"] = [
            sums.get(rel) or sha256(path) for rel, path in zip(entry_files(case.record), case.files, strict=True)
        ]
        items.append(item)
    return items


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of a chain: MONAI wraps a transform's error in ``applying transform <repr>``."""
    seen = {id(exc)}
    while (inner := exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)) is not None:
        if id(inner) in seen:
            break
        seen.add(id(inner))
        exc = inner
    return exc


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def class_volumes_ml(label_map: np.ndarray, spacing_mm: tuple[float, float, float]) -> dict[str, float]:
    """Volume (ml) of every canonical class and of each BraTS region the labels define.

    Whole-tumor-only labels (class ``tumor``) give ``tumor`` and ``WT`` only: their
    sub-regions, TC and ET are unknown, not zero.

    >>> class_volumes_ml(np.array([[[0, 3, TUMOR, TUMOR]]]), (10.0, 10.0, 10.0))
    {'csf': 0.0, 'gm': 0.0, 'wm': 1.0, 'rc': 0.0, 'tumor': 2.0, 'WT': 2.0}
    """
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    counts = np.bincount(label_map.ravel().astype(np.int64), minlength=len(CLASS_NAMES))
    whole_tumor_only = counts[TUMOR] > 0
    unknown = {NETC, SNFH, ET} if whole_tumor_only else {TUMOR}
    volumes = {CLASS_NAMES[c]: round(float(counts[c]) * voxel_ml, 3) for c in CLASS_NAMES if c and c not in unknown}
    for region, classes in REGIONS.items():
        if region == "WT" or not whole_tumor_only:
            volumes[region] = round(float(sum(counts[c] for c in classes)) * voxel_ml, 3)
    return volumes


def run_prepare(config: PrepareConfig, output: str | Path, progress: bool = True) -> Path:
    """Prepare every case of ``config.manifest`` into ``output``; returns the prepared manifest's path.

    Writes the cases, ``manifest.json`` (kind ``prepared``, with the run's provenance) and the
    resolved config as ``config.yaml``; the folder appears only when every case succeeded.
    Raises :class:`DataError` listing every problem of the input before writing anything.

    Args:
        config: the manifest to prepare, the preprocessing, the cache root and whether to draw previews.
        output: the folder to write (refused if it holds something medsynth did not write).
        progress: show a progress bar.

    >>> from medsynth.data.config import PrepareConfig, PreprocessConfig
    >>> config = PrepareConfig(manifest="brats.json", preprocess=PreprocessConfig(grid=(96, 112, 96)))
    >>> run_prepare(config, "prepared")  # doctest: +SKIP
    PosixPath('.../prepared/manifest.json')
    """
    from monai.data import PersistentDataset
    from tqdm import tqdm

    manifest_path = Path(config.manifest)
    preprocess = config.preprocess
    output = Path(output).resolve()
    problems = check_manifest(manifest_path)
    if problems:
        more = f" (and {len(problems) - 1} more: `medsynth manifest check {manifest_path}` lists them)"
        raise DataError(problems[0] + (more if len(problems) > 1 else ""))  # one line naming the file
    loaded = Manifest.load(manifest_path)
    manifest, meta = loaded.data, loaded.meta
    modalities, label_scheme = meta["modalities"], meta.get("label_scheme")
    items = _items(loaded)
    transforms = build_transforms(
        preprocess,
        modalities,
        label_scheme,
        has_image="image" in items[0],
        has_label="label" in items[0],
        has_mask="mask" in items[0],
    )
    cache = cache_dir_for(preprocess, label_scheme, config.cache_dir)
    dataset = PersistentDataset(items, transform=transforms, cache_dir=cache)

    started = time.perf_counter()
    entries: list[dict[str, Any]] = []
    with atomic_output(output, "prepare", inputs=[manifest_path]) as tmp:
        for index in tqdm(range(len(items)), desc="prepare", unit="case", disable=not progress):
            item = items[index]
            case_id = item["case_id"]
            try:
                prepared = dataset[index]
            except DataError:
                raise
            except Exception as exc:
                cause = _root_cause(exc)
                if isinstance(cause, DataError):
                    raise DataError(str(cause)) from exc
                raise DataError(
                    f"case {case_id} ({item.get('image') or item.get('label')}): preprocessing failed: "
                    f"{_first_line(cause)}"
                ) from exc
            entries.append(_write_case(tmp, case_id, item["split"], prepared, modalities, preprocess, config.previews))
        save_config(config, tmp / "config.yaml")
        write_manifest(
            tmp / "manifest.json",
            kind="prepared",
            name=f"{manifest.get('name', 'dataset')}_prepared",
            description=f"{manifest.get('name', 'dataset')} prepared by medsynth {__version__}",
            modalities=modalities,
            labels={str(k): v for k, v in CLASS_NAMES.items()},
            entries=entries,
            provenance=provenance("prepare", config=config, inputs=[manifest_path]),
            label_scheme="canonical",
            source_label_scheme=label_scheme,
            source_layout=meta.get("layout"),
            preprocess=to_dict(preprocess),
            source_manifest=str(manifest_path.resolve()),
            source_manifest_sha256=sha256(manifest_path),
            checksums=file_checksums(entries, tmp),
            seconds=round(time.perf_counter() - started, 2),
        )
    return output / "manifest.json"


def prepare(
    manifest_path: str | Path,
    output: str | Path,
    config: PreprocessConfig | None = None,
    cache_dir: str | Path | None = None,
    previews: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """:func:`run_prepare` with keyword arguments; returns the prepared manifest as a dict.

    Args:
        manifest_path: the raw manifest (``medsynth manifest build``); ``output``: the prepared folder.
        config: spacing, grid, orientation (:class:`PreprocessConfig`; default: 2 mm, 80x96x80).
        cache_dir: cache root; ``previews``: write preview PNGs; ``progress``: show a progress bar.

    >>> prepared = prepare("manifest.json", "prepared", PreprocessConfig(grid=(96, 112, 96)))  # doctest: +SKIP
    >>> prepared["numTraining"]  # doctest: +SKIP
    """
    prepare_config = PrepareConfig(
        manifest=str(manifest_path),
        preprocess=config or PreprocessConfig(),
        cache_dir=None if cache_dir is None else str(cache_dir),
        previews=previews,
    )
    return Manifest.load(run_prepare(prepare_config, output, progress=progress)).data


def _write_case(
    root: Path,
    case_id: str,
    split: str,
    prepared: dict[str, Any],
    modalities: list[str],
    config: PreprocessConfig,
    previews: bool,
) -> dict[str, Any]:
    folder = Path("cases") / case_id
    affine = prepared["affine"].numpy()
    label_array = prepared["label_map"][0].numpy()
    entry: dict[str, Any] = {"case_id": case_id, "split": split}
    image = None
    if "image" in prepared:
        image = prepared["image"].numpy()
        entry["image"] = []
        for channel, modality in zip(image, modalities, strict=True):
            rel = folder / f"{case_id}_{modality}.nii.gz"
            save_nifti(channel, affine, root / rel, dtype=np.float32)
            entry["image"].append(rel.as_posix())
    rel_label = folder / f"{case_id}_label_map.nii.gz"
    save_nifti(label_array, affine, root / rel_label, dtype=np.int16)
    rel_mask = folder / f"{case_id}_mask.nii.gz"
    save_nifti(prepared["mask"][0].numpy(), affine, root / rel_mask, dtype=np.uint8)
    entry["label"] = rel_label.as_posix()
    entry["mask"] = rel_mask.as_posix()
    entry["original"] = {
        "affine": prepared["original_affine"].tolist(),
        "shape": prepared["original_shape"].tolist(),
    }
    entry["volumes_ml"] = class_volumes_ml(label_array, config.spacing_mm)
    if previews:
        rel_preview = Path("previews") / f"{case_id}.png"
        from medsynth.viz import save_case_preview

        save_case_preview(root / rel_preview, image, label_array, modalities, title=f"{case_id} ({split})")
        entry["preview"] = rel_preview.as_posix()
    return entry
