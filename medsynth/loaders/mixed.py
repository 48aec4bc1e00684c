"""Real + synthetic training data: items, leakage checks, a mixing sampler, a dataset.

Determinism: :class:`MixedSampler` yields ``(index, seed)`` pairs drawn from a generator
seeded by (seed, epoch); :class:`MixedDataset` re-seeds its random (MONAI) transforms from
that pair before applying them. Every sample is therefore a function of (seed, epoch,
position), whatever the number of worker processes -- global seeds alone do not control
MONAI's per-transform random states in workers.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medsynth.data.scheme import ET, MODEL_CLASSES, NETC, SNFH, manifest_scheme, require_subregions
from medsynth.errors import MedsynthError
from medsynth.io import read_json
from medsynth.manifest import Manifest

if TYPE_CHECKING:
    from monai.transforms import Compose, Transform


class LeakageError(MedsynthError):
    """A synthetic case derived from a validation/test subject was offered for training."""


def real_items(manifest: str | Path, splits: Sequence[str] = ("train",)) -> list[dict[str, Any]]:
    """Items (``image`` files, ``label``, ``case_id``, ``source='real'``) of a prepared manifest."""
    loaded = Manifest.load(manifest, kind="prepared")
    require_subregions(
        manifest_scheme(loaded.meta),
        str(manifest),
        "the loader's label maps carry tumor sub-regions (netc, snfh, et), as synthetic cases do",
    )
    return [
        {
            "image": [str(p) for p in c.images],
            "label": str(c.label),
            "case_id": c.case_id,
            "source": "real",
            "split": c.split,
        }
        for c in loaded.cases(splits)
        if c.images
    ]


def _source_subjects(record: dict[str, Any]) -> list[tuple[str, str]]:
    return [(record[role]["case_id"], record[role]["split"]) for role in ("anatomy", "tumor") if role in record]


def _leak(
    case_id: str, split: str, record: dict[str, Any], held_out: set[str], allowed_splits: Sequence[str]
) -> str | None:
    """Why a synthetic case may not be trained on (None when it may)."""
    bad = [
        f"{cid} ({source_split})"
        for cid, source_split in _source_subjects(record)
        if cid in held_out or source_split not in (*allowed_splits, "healthy")
    ]
    if split not in allowed_splits or bad:
        return f"{case_id}: split {split}, sources {', '.join(bad) or '-'}"
    return None


def _refuse(where: str | Path, leaks: list[str]) -> None:
    if leaks:
        raise LeakageError(
            f"{where}: {len(leaks)} synthetic case(s) derive from held-out subjects and would leak into "
            "training:\n  " + "\n  ".join(leaks)
        )


def synthetic_items(
    cohort: str | Path, held_out_subjects: set[str] | None = None, allowed_splits: Sequence[str] = ("train",)
) -> list[dict[str, Any]]:
    """Items of a synthetic cohort, refusing any case derived from a held-out subject.

    A case is refused when its provenance split is not in ``allowed_splits`` (it inherits the
    split of the real subjects its anatomy and tumor came from), or when its anatomy or tumor
    came from one of ``held_out_subjects`` (the real validation/test case ids of your run).
    """
    root = Path(cohort)
    manifest = Manifest.load(root, kind="cohort")
    held_out = set(held_out_subjects or ())
    items, leaks = [], []
    for case in manifest.cases():
        provenance = read_json(root / case.record["provenance"])
        split = provenance.get("split", "train")
        leak = _leak(case.case_id, split, provenance.get("label_map_record", {}), held_out, allowed_splits)
        if leak:
            leaks.append(leak)
            continue
        items.append(
            {
                "image": [str(p) for p in case.images],
                "label": str(case.label),
                "case_id": case.case_id,
                "source": "synthetic",
                "split": split,
            }
        )
    _refuse(cohort, leaks)
    return items


def label_map_items(
    labels: str | Path,
    channels: int,
    held_out_subjects: set[str] | None = None,
    allowed_splits: Sequence[str] = ("train",),
    source: str = "synthseg",
) -> list[dict[str, Any]]:
    """Items of a label-map folder (``medsynth labels``) for a renderer such as ``RandLabelRenderd``.

    There are no images: the label map stands in for each of the ``channels`` image files,
    so the usual loading transform works, and the renderer then replaces the image. The
    same leakage rules as :func:`synthetic_items` apply.
    """
    root = Path(labels)
    manifest = Manifest.load(root, kind="label_maps")
    held_out = set(held_out_subjects or ())
    items, leaks = [], []
    for case in manifest.cases():
        record = case.record.get("record", {})
        leak = _leak(case.case_id, case.split, record, held_out, allowed_splits)
        if leak:
            leaks.append(leak)
            continue
        label = str(case.label)
        items.append(
            {
                "image": [label] * channels,
                "label": label,
                "case_id": case.case_id,
                "source": source,
                "split": case.split,
            }
        )
    _refuse(labels, leaks)
    return items


def load_transform(tumor_labels: bool = False) -> Compose:
    """Deterministic MONAI loading: modalities as channels, label map, float32/int tensors.

    ``tumor_labels=True`` maps the canonical label map to 0 background/anatomy, 1 NETC,
    2 SNFH, 3 ET (a segmentation target).
    """
    from monai.transforms import Compose, EnsureTyped, LoadImaged, MapLabelValued

    transforms = [LoadImaged(keys=["image", "label"], ensure_channel_first=True, image_only=True)]
    if tumor_labels:
        target = [0] * MODEL_CLASSES
        target[NETC], target[SNFH], target[ET] = 1, 2, 3
        transforms.append(MapLabelValued(keys="label", orig_labels=list(range(MODEL_CLASSES)), target_labels=target))
    transforms.append(EnsureTyped(keys=["image", "label"], track_meta=False))
    return Compose(transforms)


def patch_transform(
    patch_size: Sequence[int],
    num_samples: int = 1,
    tumor_ratio: float = 0.5,
    flip: bool = True,
    num_classes: int | None = None,
) -> Compose:
    """Tumor-aware patches (MONAI ``RandCropByLabelClassesd``), the same for real and synthetic.

    Half the patches (``tumor_ratio``) are centred on tumor voxels, the rest on brain or
    background; then a random left-right flip.
    """
    from monai.transforms import Compose, RandCropByLabelClassesd, RandFlipd

    num_classes = num_classes or MODEL_CLASSES
    tumor_classes = [c for c in (NETC, SNFH, ET) if c < num_classes] or list(range(1, num_classes))
    ratios = [0.0] * num_classes
    others = [c for c in range(num_classes) if c not in tumor_classes]
    for c in tumor_classes:
        ratios[c] = tumor_ratio / len(tumor_classes)
    for c in others:
        ratios[c] = (1 - tumor_ratio) / len(others)
    transforms = [
        RandCropByLabelClassesd(
            keys=["image", "label"],
            label_key="label",
            spatial_size=list(patch_size),
            ratios=ratios,
            num_classes=num_classes,
            num_samples=num_samples,
            warn=False,
        )
    ]
    if flip:
        transforms.append(RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=0))
    return Compose(transforms)


@dataclass
class FractionSchedule:
    """Synthetic fraction per epoch: ``start`` linearly to ``end`` over ``epochs`` (then ``end``)."""

    start: float
    end: float | None = None
    epochs: int = 1

    def __call__(self, epoch: int) -> float:
        if self.end is None or self.epochs <= 1:
            return self.start
        t = min(epoch / (self.epochs - 1), 1.0)
        return self.start + t * (self.end - self.start)


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] % (2**31))


class MixedSampler(torch.utils.data.Sampler):
    """Draws ``num_samples`` items per epoch, each synthetic with the scheduled probability.

    Indices address a :class:`MixedDataset` (real items first, then synthetic). With
    ``batch_size`` set, every batch holds ``fraction * batch_size`` synthetic items, rounded
    down or up so that the running total stays exact (0.25 of batches of 2: every other
    batch holds one), in random positions; otherwise each draw is independent. Within each
    source, items are drawn as shuffled passes over all of them. Yields ``(index, seed)``.

    Args:
        n_real: number of real items (indices ``0 .. n_real - 1``).
        n_synthetic: number of synthetic items (the indices after the real ones).
        synthetic_fraction: share of synthetic draws, or a function of the epoch giving it
            (e.g. a :class:`FractionSchedule`).
        num_samples: draws per epoch; all items once when ``None``.
        batch_size: when set, every batch holds the scheduled share of synthetic items.
        seed: seed of the draws; with :meth:`set_epoch`, each epoch draws differently.

    >>> sampler = MixedSampler(n_real=6, n_synthetic=2, synthetic_fraction=0.5, num_samples=4, batch_size=2)
    >>> draws = list(sampler)
    >>> len(draws), sum(index >= 6 for index, _ in draws)
    (4, 2)
    """

    def __init__(
        self,
        n_real: int,
        n_synthetic: int,
        synthetic_fraction: float | Callable[[int], float],
        num_samples: int | None = None,
        batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        self.n_real, self.n_synthetic = n_real, n_synthetic
        self.fraction = synthetic_fraction if callable(synthetic_fraction) else FractionSchedule(synthetic_fraction)
        self.num_samples = num_samples or (n_real + n_synthetic)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0
        if n_real == 0 and n_synthetic == 0:
            raise ValueError("no items to sample from")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def _passes(self, n: int, generator: torch.Generator) -> Iterator[int]:
        while True:
            yield from torch.randperm(n, generator=generator).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        fraction = float(self.fraction(self.epoch))
        if not 0 <= fraction <= 1:
            raise ValueError(f"synthetic fraction {fraction} at epoch {self.epoch} is outside [0, 1]")
        if (fraction > 0 and self.n_synthetic == 0) or (fraction < 1 and self.n_real == 0):
            raise ValueError(f"synthetic fraction {fraction} needs both real and synthetic items")
        generator = torch.Generator().manual_seed(_seed(self.seed, self.epoch))
        real = self._passes(self.n_real, generator) if self.n_real else iter(())
        synthetic = self._passes(self.n_synthetic, generator) if self.n_synthetic else iter(())
        if self.batch_size:
            # batch b gets floor((b+1) f B) - floor(b f B) synthetic items: within one of f B in every
            # batch and exact over the epoch, also when f B is fractional (0.25 x 2 must not round to 0)
            choices, batch = [], 0
            while len(choices) < self.num_samples:
                per_batch = math.floor((batch + 1) * fraction * self.batch_size + 1e-9) - math.floor(
                    batch * fraction * self.batch_size + 1e-9
                )
                mask = torch.zeros(self.batch_size, dtype=torch.bool)
                mask[torch.randperm(self.batch_size, generator=generator)[:per_batch]] = True
                choices.extend(mask.tolist())
                batch += 1
            choices = choices[: self.num_samples]
        else:
            choices = (torch.rand(self.num_samples, generator=generator) < fraction).tolist()
        for position, is_synthetic in enumerate(choices):
            index = self.n_real + next(synthetic) if is_synthetic else next(real)
            yield index, _seed(self.seed, self.epoch, position)


class MixedDataset(torch.utils.data.Dataset):
    """Real then synthetic items behind one index, cached by MONAI, random transforms re-seeded.

    Args:
        real, synthetic: item lists (:func:`real_items`, :func:`synthetic_items`).
        transform: deterministic part (default :func:`load_transform`); cached per ``cache``.
        random_transform: random part (e.g. :func:`patch_transform`), seeded per draw.
        cache: ``"none"`` (MONAI Dataset), ``"memory"`` (CacheDataset), ``"disk"``
            (PersistentDataset in ``cache_dir``).
        cache_dir: folder of the disk cache (``cache="disk"`` only).

    >>> import tempfile, pathlib, numpy as np
    >>> from medsynth.io import save_nifti
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> real, synthetic = [], []
    >>> for items, name in ((real, "real_0"), (synthetic, "synth_0")):
    ...     image = save_nifti(np.ones((8, 8, 8), np.float32), np.eye(4), folder / f"{name}_t1.nii.gz")
    ...     label = save_nifti(np.zeros((8, 8, 8), np.uint8), np.eye(4), folder / f"{name}_label.nii.gz")
    ...     items.append({"image": [str(image)], "label": str(label), "case_id": name})
    >>> dataset = MixedDataset(real, synthetic)
    >>> len(dataset), dataset.n_real, tuple(dataset[1]["image"].shape)
    (2, 1, (1, 8, 8, 8))
    """

    def __init__(
        self,
        real: list[dict[str, Any]],
        synthetic: list[dict[str, Any]],
        transform: Transform | None = None,
        random_transform: Transform | None = None,
        cache: str = "none",
        cache_dir: str | Path | None = None,
    ) -> None:
        from monai.data import CacheDataset, Dataset, PersistentDataset

        items = [*real, *synthetic]
        if not items:
            raise ValueError("no items")
        channels = {len(item["image"]) for item in items}
        if len(channels) > 1:
            raise MedsynthError(f"real and synthetic items have different numbers of modalities: {sorted(channels)}")
        self.n_real, self.n_synthetic = len(real), len(synthetic)
        transform = transform or load_transform()
        if cache == "memory":
            self.base = CacheDataset(items, transform, num_workers=0, progress=False)
        elif cache == "disk":
            if cache_dir is None:
                raise ValueError("cache='disk' needs cache_dir")
            self.base = PersistentDataset(items, transform, cache_dir=cache_dir)
        elif cache == "none":
            self.base = Dataset(items, transform)
        else:
            raise ValueError(f"cache must be none, memory or disk, got {cache!r}")
        self.random_transform = random_transform

    def __len__(self) -> int:
        return self.n_real + self.n_synthetic

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any] | list[dict[str, Any]]:
        index, seed = key if isinstance(key, tuple) else (key, None)
        item = self.base[index]
        if self.random_transform is None:
            return item
        transform = self.random_transform
        if seed is not None:
            transform = copy.deepcopy(transform)  # thread/worker-safe: never share a seeded state
            transform.set_random_state(seed=seed)
        return transform(item)
