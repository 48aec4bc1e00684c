"""Generate new tumor label maps: real tumors transformed and placed into target anatomies.

    $ medsynth labels --from runs/demo/prepared/brats2013/manifest.json \\
          --healthy runs/demo/prepared/synthseg/manifest.json --n 100 --seed 0 \\
          --reshape configs/reshape/uniform_volume.yaml -o runs/labels

>>> from medsynth.labels.config import LabelsConfig
>>> path = run_labels(LabelsConfig(sources=["prepared/manifest.json"], n=100), "labels")  # doctest: +SKIP

Each label map records its seed and every sampled parameter (source tumor, target anatomy,
rotation, volume scale, elastic seed and magnitude, centre); :func:`regenerate` rebuilds
the identical map from that record. Targets from a :class:`ReshapeSpec` are met by
construction (the volume scale is solved from the target volume, the centre is drawn
among voxels of the target hemisphere/region) and checked after cleanup; a draw that
misses them is rejected and redrawn.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from medsynth._version import __version__
from medsynth.config import save_config, to_dict
from medsynth.data.manifest import file_checksums
from medsynth.data.scheme import CLASS_NAMES, ET, NETC, SNFH, TUMOR_CLASSES
from medsynth.errors import MedsynthError
from medsynth.io import atomic_output, save_nifti
from medsynth.labels.config import LabelConfig, LabelsConfig
from medsynth.labels.deform import DeformationParams, deform_label_map, sample_params
from medsynth.labels.locations import (
    HEMISPHERES,
    REGIONS,
    brain_frame,
    hemisphere_of,
    location_of,
    normalised_coordinates,
    region_of,
)
from medsynth.labels.placement import TumorParams, transform_tumor
from medsynth.labels.reshape import ReshapeSpec
from medsynth.labels.sources import Anatomy, Tumor, check_same_grid, read_sources
from medsynth.manifest import Manifest, provenance, write_manifest

_NAME_TO_CLASS = {name: value for value, name in CLASS_NAMES.items()}
_MIN_DEPTH_RADII = 0.8  # a centre must lie this many equivalent-sphere radii inside the brain
_SPLIT_RANK = {"healthy": 0, "train": 0, "validation": 1, "test": 2}


def _placed_tumor(anatomy: Anatomy, tumor: Tumor, params: TumorParams, min_component_voxels: int) -> np.ndarray:
    return transform_tumor(
        tumor.labels, float(np.mean(tumor.spacing_mm)), params, anatomy.label_map.shape, min_component_voxels
    )


def _compose(anatomy: Anatomy, placed: np.ndarray) -> np.ndarray:
    """Write the tumor over the anatomy, inside the brain only."""
    return np.where((placed > 0) & anatomy.brain, placed, anatomy.label_map).astype(np.int16)


def render(anatomy: Anatomy, tumor: Tumor, params: TumorParams, min_component_voxels: int) -> np.ndarray:
    """The label map of one draw: the transformed tumor written over the anatomy, inside the brain."""
    return _compose(anatomy, _placed_tumor(anatomy, tumor, params, min_component_voxels))


def tumor_stats(
    label_map: np.ndarray, brain: np.ndarray, affine: np.ndarray, spacing_mm: tuple[float, float, float] | np.ndarray
) -> dict[str, Any]:
    """Volume (ml), location and sub-region fractions of the tumor in ``label_map``."""
    tumor = np.isin(label_map, TUMOR_CLASSES)
    voxels = int(tumor.sum())
    hemisphere, region = location_of(tumor, brain, affine) if voxels else ("none", "none")
    return {
        "volume_ml": round(voxels * float(np.prod(spacing_mm)) / 1000.0, 3),
        "hemisphere": hemisphere,
        "region": region,
        "fractions": {CLASS_NAMES[c]: round(float((label_map == c).sum() / max(voxels, 1)), 4) for c in TUMOR_CLASSES},
    }


class LabelMapSampler:
    """Draws label maps from anatomies and tumors, optionally to reshape targets.

    >>> sampler = LabelMapSampler(anatomies, tumors, LabelConfig())  # doctest: +SKIP
    >>> label_map, affine, record = sampler.sample(index=0, seed=0)  # doctest: +SKIP
    """

    def __init__(
        self,
        anatomies: list[Anatomy],
        tumors: list[Tumor],
        config: LabelConfig,
        reshape: ReshapeSpec | None = None,
    ) -> None:
        self.config = config
        self.reshape = reshape or ReshapeSpec()
        wanted = {"all": (True, False), "healthy": (True,), "real": (False,)}[config.anatomies]
        self.anatomies = [a for a in anatomies if (a.split == "healthy") in wanted]
        if not self.anatomies:
            raise MedsynthError(f"no target anatomies ({config.anatomies!r}) among the sources")
        if not tumors:
            raise MedsynthError("no tumors among the sources (the --from manifest has no tumor labels in these splits)")
        self.tumors = tumors
        spec = self.reshape
        if spec.enhancing_fraction is not None:
            self.tumors = [t for t in tumors if spec.enhancing_fraction.contains(t.fraction(ET))]
            if not self.tumors:
                fractions = ", ".join(f"{t.case_id}: {t.fraction(ET):.2f}" for t in tumors)
                raise MedsynthError(
                    f"no source tumor has an enhancing fraction in [{spec.enhancing_fraction.low}, "
                    f"{spec.enhancing_fraction.high}] (sources: {fractions})"
                )
        if spec.volume_ml is not None:
            low, high = config.volume_scale
            reachable = [(t.volume_ml * low, t.volume_ml * high) for t in self.tumors]
            lowest, highest = min(r[0] for r in reachable), max(r[1] for r in reachable)
            if spec.volume_ml.low < lowest * (1 - spec.volume_tolerance) or spec.volume_ml.high > highest * (
                1 + spec.volume_tolerance
            ):
                volumes = ", ".join(f"{t.case_id}: {t.volume_ml:.1f} ml" for t in self.tumors)
                raise MedsynthError(
                    f"target volume range [{spec.volume_ml.low}, {spec.volume_ml.high}] ml cannot be met: with "
                    f"volume_scale {config.volume_scale} the sources reach [{lowest:.1f}, {highest:.1f}] ml "
                    f"(sources: {volumes}); widen volume_scale or narrow the target"
                )
        excluded = [_NAME_TO_CLASS[c] for c in config.exclude_classes]
        # per anatomy and location target: allowed centre voxels and their depth in the brain (voxels)
        self._candidates: dict[tuple[int, str | None, str | None], tuple[np.ndarray, np.ndarray]] = {}
        for index, anatomy in enumerate(self.anatomies):
            allowed = anatomy.brain & ~np.isin(anatomy.label_map, excluded)
            voxels = np.argwhere(allowed).astype(np.int16)  # 15 location subsets per anatomy: keep them small
            depth = ndimage.distance_transform_edt(anatomy.brain)[allowed].astype(np.float32)
            uvw = normalised_coordinates(voxels, anatomy.affine, brain_frame(anatomy.brain, anatomy.affine))
            hemispheres, regions = hemisphere_of(uvw), region_of(uvw)
            for hemisphere in (None, *HEMISPHERES):
                for region in (None, *REGIONS):
                    keep = np.ones(len(voxels), bool)
                    if hemisphere:
                        keep &= hemispheres == hemisphere
                    if region:
                        keep &= regions == region
                    self._candidates[(index, hemisphere, region)] = (voxels[keep], depth[keep])
        self._excluded = excluded

    def _draw_params(
        self, rng: np.random.Generator, anatomy_index: int, tumor: Tumor, targets: dict[str, float | str]
    ) -> TumorParams | None:
        config = self.config
        low, high = config.volume_scale
        if "volume_ml" in targets:
            scale = float(targets["volume_ml"]) / tumor.volume_ml
            if not low <= scale <= high:
                return None
        else:
            scale = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        # centres deep enough in the brain for a sphere of the tumor's volume to mostly fit
        voxels, depth = self._candidates[(anatomy_index, targets.get("hemisphere"), targets.get("region"))]
        radius_voxels = (3 * (tumor.labels > 0).sum() * scale / (4 * np.pi)) ** (1 / 3)
        deep_enough = np.flatnonzero(depth >= _MIN_DEPTH_RADII * radius_voxels)
        if len(deep_enough) == 0:
            return None
        center = voxels[deep_enough[int(rng.integers(len(deep_enough)))]]
        return TumorParams(
            rotation_deg=tuple(float(a) for a in rng.uniform(-config.max_rotation_deg, config.max_rotation_deg, 3)),
            volume_scale=round(scale, 6),
            elastic_seed=int(rng.integers(2**31 - 1)),
            elastic_magnitude_mm=round(float(rng.uniform(*config.elastic_magnitude_mm)), 4),
            elastic_smoothness_mm=config.elastic_smoothness_mm,
            center_voxel=tuple(float(c) for c in center),
        )

    def _acceptable(
        self, placed: np.ndarray, anatomy: Anatomy, tumor: Tumor, stats: dict[str, Any], targets: dict[str, float | str]
    ) -> bool:
        config = self.config
        placed = placed > 0
        if not placed.any():
            return False
        if (placed & ~anatomy.brain).sum() > config.max_outside_brain_fraction * placed.sum():
            return False
        over_excluded = np.isin(anatomy.label_map[placed], self._excluded).mean()
        if over_excluded > config.max_excluded_fraction:
            return False
        return self._meets_targets(stats, tumor, targets)

    def _meets_targets(self, stats: dict[str, Any], tumor: Tumor, targets: dict[str, float | str]) -> bool:
        """Every sub-region of the source still present, and the reshape targets met (also after deformation)."""
        if stats["volume_ml"] <= 0:
            return False
        if not all(stats["fractions"][CLASS_NAMES[c]] > 0 for c in (NETC, SNFH, ET) if tumor.fraction(c) > 0.02):
            return False
        if "volume_ml" in targets:
            error = abs(stats["volume_ml"] - float(targets["volume_ml"])) / float(targets["volume_ml"])
            if error > self.reshape.volume_tolerance:
                return False
        return all(stats[k] == targets[k] for k in ("hemisphere", "region") if k in targets)

    def sample(self, index: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Draw label map ``index`` of a cohort with ``seed``; returns ``(label_map, affine, record)``."""
        rng = np.random.default_rng([seed, index])
        targets = self.reshape.sample_targets(rng)
        for attempt in range(self.config.max_attempts):
            anatomy_index = int(rng.integers(len(self.anatomies)))
            anatomy = self.anatomies[anatomy_index]
            tumor = self.tumors[int(rng.integers(len(self.tumors)))]
            params = self._draw_params(rng, anatomy_index, tumor, targets)
            if params is None:
                continue
            placed = _placed_tumor(anatomy, tumor, params, self.config.min_component_voxels)
            label_map = _compose(anatomy, placed)
            stats = tumor_stats(label_map, anatomy.brain, anatomy.affine, tumor.spacing_mm)
            if not self._acceptable(placed, anatomy, tumor, stats, targets):
                continue
            deformation = None
            if self.config.deformation.enabled_for(anatomy.split):
                # the whole map (anatomy and tumor) moves, so no two cases share a brain; targets re-checked after
                deformation = sample_params(rng, self.config.deformation)
                label_map = deform_label_map(label_map, _mean_spacing(anatomy.affine), deformation)
                stats = tumor_stats(label_map, label_map > 0, anatomy.affine, tumor.spacing_mm)
                if not self._meets_targets(stats, tumor, targets):
                    continue
            split = max((anatomy.split, tumor.split), key=lambda s: _SPLIT_RANK.get(s, 3))
            record = {
                "index": index,
                "seed": seed,
                "attempts": attempt + 1,
                "split": "train" if split == "healthy" else split,
                "anatomy": _source_record(anatomy),
                "tumor": _source_record(tumor),
                "params": params.to_dict(),
                **({"deformation": deformation.to_dict()} if deformation is not None else {}),
                "min_component_voxels": self.config.min_component_voxels,
                "targets": targets,
                "achieved": stats,
            }
            return label_map, anatomy.affine, record
        raise MedsynthError(
            f"label map {index}: no draw met the targets {targets} in {self.config.max_attempts} attempts; "
            "the sources cannot reach them (loosen the reshape spec, volume_scale or exclusions)"
        )


def _source_record(source: Anatomy | Tumor) -> dict[str, str]:
    return {"case_id": source.case_id, "split": source.split, "manifest": source.source, "sha256": source.source_sha256}


def regenerate(record: dict[str, Any]) -> np.ndarray:
    """Rebuild a label map from its record (as written in a label-map manifest); identical output.

    Raises :class:`MedsynthError` when a source file changed since the map was made.

    Args:
        record: the ``record`` of a label-map manifest entry (seed, sources and their checksums, transform).

    >>> from medsynth.manifest import Manifest  # doctest: +SKIP
    >>> entry = Manifest.load("labels", kind="label_maps").entries()[0]  # doctest: +SKIP
    >>> label_map = regenerate(entry["record"])  # identical to the file it names  # doctest: +SKIP
    """
    maps = {}
    for role in ("anatomy", "tumor"):
        source = record[role]
        healthy = source["split"] == "healthy"
        anatomies, tumors = read_sources([source["manifest"]], splits=None, healthy=healthy)
        pool = anatomies if role == "anatomy" else tumors
        match = [s for s in pool if s.case_id == source["case_id"]]
        if not match:
            raise MedsynthError(f"{source['manifest']}: case {source['case_id']} not found")
        if match[0].source_sha256 != source["sha256"]:
            raise MedsynthError(f"{source['manifest']}: case {source['case_id']} changed since the label map was made")
        maps[role] = match[0]
    params = TumorParams.from_dict(record["params"])
    label_map = render(maps["anatomy"], maps["tumor"], params, int(record["min_component_voxels"]))
    if "deformation" in record:
        spacing = _mean_spacing(maps["anatomy"].affine)
        label_map = deform_label_map(label_map, spacing, DeformationParams.from_dict(record["deformation"]))
    return label_map


def _mean_spacing(affine: np.ndarray) -> float:
    return float(np.mean(np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(0))))


def run_labels(config: LabelsConfig, output: str | Path, progress: bool = True) -> Path:
    """Write ``config.n`` label maps, a manifest, a report and previews to ``output`` (atomically).

    Returns the path of the label-map manifest (kind ``label_maps``, with the run's provenance);
    ``config.yaml`` beside it holds the resolved config. The same config gives bit-identical maps.

    Args:
        config: sources, healthy anatomies, how many maps, the seed, source splits, placement and reshape targets.
        output: the folder to write (refused if it holds something medsynth did not write).
        progress: show a progress bar.

    >>> from medsynth.labels import LabelsConfig, ReshapeSpec
    >>> config = LabelsConfig(sources=["prepared/manifest.json"], n=100, reshape=ReshapeSpec(hemisphere={"left": 1.0}))
    >>> run_labels(config, "labels")  # doctest: +SKIP
    PosixPath('.../labels/manifest.json')
    """
    from tqdm import tqdm

    from medsynth.labels.report import write_report

    placement, splits = config.placement, tuple(config.splits)
    inputs = [*config.sources, *config.healthy]
    anatomies, tumors = read_sources(config.sources, splits=splits)
    if config.healthy:
        healthy, _ = read_sources(config.healthy, healthy=True)
        anatomies += healthy
        check_same_grid(anatomies)
    sampler = LabelMapSampler(anatomies, tumors, placement, config.reshape)
    output = Path(output).resolve()
    started = time.perf_counter()
    entries = []
    previews = []
    with atomic_output(output, "labels", inputs=inputs) as tmp:
        for index in tqdm(range(config.n), desc="labels", unit="map", disable=not progress):
            label_map, affine, record = sampler.sample(index, config.seed)
            case_id = f"synth_{index:05d}"
            rel = Path("label_maps") / f"{case_id}_label_map.nii.gz"
            save_nifti(label_map, affine, tmp / rel, dtype=np.int16)
            entries.append({"case_id": case_id, "label": rel.as_posix(), "split": record["split"], "record": record})
            if len(previews) < 8:
                previews.append(label_map)
        seconds = time.perf_counter() - started
        write_manifest(
            tmp / "manifest.json",
            kind="label_maps",
            name=output.name,
            description=f"{config.n} synthetic tumor label maps made by medsynth {__version__}",
            modalities=[],
            labels={str(k): v for k, v in CLASS_NAMES.items()},
            entries=entries,
            provenance=provenance("labels", config=config, seed=config.seed, inputs=inputs),
            label_scheme="canonical",
            seed=config.seed,
            n=config.n,
            sources=[str(Path(p).resolve()) for p in config.sources],
            healthy_sources=[str(Path(p).resolve()) for p in config.healthy],
            source_splits=list(splits),
            config=to_dict(placement),
            reshape=to_dict(sampler.reshape),
            seconds=round(seconds, 2),
            checksums=file_checksums(entries, tmp),
        )
        save_config(config, tmp / "config.yaml")
        write_report(tmp, entries, sampler, seconds)
        _save_montage(tmp / "previews" / "label_maps.png", previews)
    return output / "manifest.json"


def generate_label_maps(
    prepared_manifests: list[str | Path],
    output: str | Path,
    n: int,
    seed: int = 0,
    healthy_manifests: list[str | Path] | None = None,
    config: LabelConfig | None = None,
    reshape: ReshapeSpec | None = None,
    splits: tuple[str, ...] = ("train",),
    progress: bool = True,
) -> dict[str, Any]:
    """:func:`run_labels` with keyword arguments; returns the label-map manifest as a dict.

    Args:
        prepared_manifests: prepared manifest(s) with tumors; ``output``: the label-map folder.
        n, seed: how many maps, and the seed map i is drawn from (``[seed, i]``).
        healthy_manifests: prepared manifest(s) of healthy anatomies.
        config: placement (:class:`LabelConfig`); ``reshape``: target distributions; ``splits``: tumor splits.

    >>> generate_label_maps(["prepared/manifest.json"], "labels", n=100, seed=0)  # doctest: +SKIP
    """
    labels_config = LabelsConfig(
        sources=[str(p) for p in prepared_manifests],
        healthy=[str(p) for p in healthy_manifests or []],
        n=n,
        seed=seed,
        splits=list(splits),
        placement=config or LabelConfig(),
        reshape=reshape,
    )
    return Manifest.load(run_labels(labels_config, output, progress=progress)).data


def _save_montage(path: Path, label_maps: list[np.ndarray]) -> None:
    from medsynth.viz import case_tiles, save_grid

    tiles = []
    for label_map in label_maps:
        tiles += case_tiles(None, label_map)[0]
    save_grid(tiles, 3, path, title="synthetic label maps (rows: cases; axial, coronal, sagittal through the tumor)")
