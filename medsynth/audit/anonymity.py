"""k-anonymity of what a cohort describes, reached by generating more cases, not by coarsening.

    $ medsynth generate --checkpoint medsynth/pretrained/gan_cpu.pt --n 12 --seed 0 \\
          --from runs/demo/prepared/brats2013/manifest.json --k-anonymity 2 -o cohort

A synthetic case still describes something: a tumor of some size, on one side, in one
region, made of some sub-regions. Those descriptive attributes are the quasi-identifiers
here. Cases that share all of them form a group; the cohort is k-anonymous when its
smallest populated group has k members. Following the proposal for synthetic data
(generate, do not generalise), an under-filled group is filled by drawing new label maps
from :class:`~medsynth.labels.generate.LabelMapSampler` constrained to that group (a
:class:`~medsynth.labels.reshape.ReshapeSpec` with the group's volume range, hemisphere
and region, and source tumors with the group's sub-region mix). Every draw is re-checked:
constraints are met by construction only up to the volume tolerance, so a draw may land in
another group, where it counts.

Attributes of one case (:func:`case_attributes`), from its label map:

- ``volume_ml``: whole-tumor volume bin, edges :attr:`QuasiIdentifiers.volume_bins_ml`
  (default 25, 50, 100, 200 ml: ``<25``, ``25-50``, ``50-100``, ``100-200``, ``>=200``);
- ``hemisphere``, ``region``: location of the tumor's centre of mass
  (:mod:`medsynth.labels.locations`);
- ``subregions``: the sub-regions making up at least 1% of the tumor, e.g. ``netc+snfh+et``;
- ``enhancing`` (off by default): enhancing-fraction bin, edges ``enhancing_bins``;
- any ``metadata_keys``: fields of the case's ``provenance.json`` (dotted paths), reported
  and re-checked but not targeted by the fill, since the sampler cannot choose them.

A tumor-free label map gets ``none`` for every tumor attribute.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medsynth.data.scheme import CLASS_NAMES, ET, TUMOR_CLASSES
from medsynth.errors import ConfigError, MedsynthError
from medsynth.io import load_nifti, read_json
from medsynth.labels.generate import LabelConfig, tumor_stats
from medsynth.labels.locations import HEMISPHERES, REGIONS
from medsynth.labels.reshape import Range, ReshapeSpec
from medsynth.labels.sources import Tumor

MAX_DRAWS_PER_GROUP = 25  # sampler draws spent on one under-filled group before the fill gives up
_NONE = "none"

GroupKey = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class QuasiIdentifiers:
    """Which descriptive attributes group a cohort's cases, and how finely."""

    volume_bins_ml: tuple[float, ...] = (25.0, 50.0, 100.0, 200.0)  # increasing bin edges (ml); () drops volume
    location: bool = True  # group by hemisphere and region
    subregions: bool = True  # group by the set of sub-regions present
    subregion_min_fraction: float = 0.01  # a sub-region is present from this share of the whole tumor
    enhancing_bins: tuple[float, ...] = ()  # increasing edges of the enhancing fraction, e.g. (0.1, 0.3)
    metadata_keys: tuple[str, ...] = ()  # provenance fields (dotted paths), e.g. "label_map_record.tumor.case_id"

    def __post_init__(self) -> None:
        for name in ("volume_bins_ml", "enhancing_bins"):
            edges = getattr(self, name)
            if any(e <= 0 for e in edges) or list(edges) != sorted(set(edges)):
                raise ConfigError(f"quasi-identifiers: {name} must be strictly increasing and > 0, got {edges}")
        if any(e >= 1 for e in self.enhancing_bins):
            raise ConfigError(f"quasi-identifiers: enhancing_bins are fractions in (0, 1), got {self.enhancing_bins}")
        if not 0 < self.subregion_min_fraction < 1:
            raise ConfigError(
                f"quasi-identifiers: subregion_min_fraction must be in (0, 1), got {self.subregion_min_fraction}"
            )

    def definitions(self) -> dict[str, str]:
        """What each attribute means (JSON-able, for reports and the dataset card)."""
        table = {}
        if self.volume_bins_ml:
            table["volume_ml"] = f"whole-tumor volume bin (ml), one of {_bin_labels(self.volume_bins_ml)}"
        if self.location:
            table["hemisphere"] = f"side of the tumor's centre of mass: {', '.join(HEMISPHERES)}"
            table["region"] = f"coarse region of the tumor's centre of mass: {', '.join(REGIONS)}"
        if self.subregions:
            table["subregions"] = (
                f"tumor sub-regions making up >= {self.subregion_min_fraction:g} of the tumor "
                "(netc non-enhancing core, snfh edema, et enhancing), joined by '+'"
            )
        if self.enhancing_bins:
            table["enhancing"] = f"enhancing share of the tumor, one of {_bin_labels(self.enhancing_bins)}"
        for key in self.metadata_keys:
            table[key] = "provenance field (reported and re-checked; not targeted by the fill)"
        return table


def check_k(k: Any, option: str = "--k-anonymity") -> int:
    """``k`` as an int >= 1, or a :class:`ConfigError` naming ``option``."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"{option} {k!r}: K must be an integer >= 1 (the smallest group size to reach)")
    return int(k)


def _bin_labels(edges: Sequence[float]) -> list[str]:
    if not edges:
        return []
    inner = [f"{low:g}-{high:g}" for low, high in pairwise(edges)]
    return [f"<{edges[0]:g}", *inner, f">={edges[-1]:g}"]


def _bin_of(value: float, edges: Sequence[float]) -> str:
    return _bin_labels(edges)[int(np.searchsorted(edges, value, side="right"))]


def _bin_range(label: str, edges: Sequence[float]) -> tuple[float, float]:
    """The half-open interval ``[low, high)`` of a bin label (``high`` may be ``inf``)."""
    index = _bin_labels(edges).index(label)
    bounds = [0.0, *edges, math.inf]
    return bounds[index], bounds[index + 1]


def _metadata_value(provenance: Mapping[str, Any] | None, dotted: str) -> str:
    node: Any = provenance or {}
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return "unknown"
        node = node[part]
    return str(node)


def case_tumor_stats(label_map: np.ndarray, affine: np.ndarray) -> dict[str, Any]:
    """:func:`~medsynth.labels.generate.tumor_stats` of a case's label map; the brain is every labelled voxel."""
    return tumor_stats(label_map, label_map > 0, affine, nib.affines.voxel_sizes(np.asarray(affine)))


def case_attributes(
    label_map: np.ndarray,
    affine: np.ndarray,
    quasi_identifiers: QuasiIdentifiers | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The descriptive attributes of one case (see the module docstring), in a fixed order."""
    qi = quasi_identifiers or QuasiIdentifiers()
    stats = case_tumor_stats(label_map, affine)
    has_tumor = bool(np.isin(label_map, TUMOR_CLASSES).any())
    attributes = {}
    if qi.volume_bins_ml:
        attributes["volume_ml"] = _bin_of(stats["volume_ml"], qi.volume_bins_ml) if has_tumor else _NONE
    if qi.location:
        attributes["hemisphere"], attributes["region"] = stats["hemisphere"], stats["region"]
    if qi.subregions:
        present = [
            CLASS_NAMES[c] for c in TUMOR_CLASSES if stats["fractions"][CLASS_NAMES[c]] >= qi.subregion_min_fraction
        ]
        attributes["subregions"] = "+".join(present) if has_tumor and present else _NONE
    if qi.enhancing_bins:
        attributes["enhancing"] = _bin_of(stats["fractions"]["et"], qi.enhancing_bins) if has_tumor else _NONE
    for key in qi.metadata_keys:
        attributes[key] = _metadata_value(provenance, key)
    return attributes


def folder_attributes(folder: str | Path, quasi_identifiers: QuasiIdentifiers | None = None) -> dict[str, str]:
    """Attributes of a cohort case folder (``<case>_label_map.nii.gz`` + ``provenance.json``)."""
    folder = Path(folder)
    label_path = folder / f"{folder.name}_label_map.nii.gz"
    if not label_path.is_file():
        raise MedsynthError(f"{label_path}: missing (a cohort case folder holds <case>_label_map.nii.gz)")
    label_map, affine, _ = load_nifti(label_path, dtype=np.int16)
    provenance = read_json(folder / "provenance.json") if (folder / "provenance.json").is_file() else None
    return case_attributes(label_map, affine, quasi_identifiers, provenance)


def group_key(attributes: Mapping[str, str]) -> GroupKey:
    """A hashable, sortable key of a case's attribute values."""
    return tuple(attributes.items())


def anonymity_summary(
    attributes_by_case: Mapping[str, Mapping[str, str]], quasi_identifiers: QuasiIdentifiers | None = None
) -> dict[str, Any]:
    """Group cases by their attributes: ``k`` (smallest populated group), the group table, definitions.

    Groups are listed by attribute values; ``k`` is 0 for an empty cohort.
    """
    qi = quasi_identifiers or QuasiIdentifiers()
    groups: dict[GroupKey, list[str]] = {}
    for case_id in sorted(attributes_by_case):
        groups.setdefault(group_key(attributes_by_case[case_id]), []).append(case_id)
    table = [
        {"attributes": dict(key), "count": len(case_ids), "case_ids": case_ids}
        for key, case_ids in sorted(groups.items())
    ]
    return {
        "k": min((g["count"] for g in table), default=0),
        "cases": len(attributes_by_case),
        "groups": table,
        "attributes": qi.definitions(),
    }


def cohort_anonymity(cohort: str | Path, quasi_identifiers: QuasiIdentifiers | None = None) -> dict[str, Any]:
    """:func:`anonymity_summary` of every finished case of a cohort folder (``cases/<case>/``)."""
    cases = Path(cohort) / "cases"
    if not cases.is_dir():
        raise MedsynthError(f"{cases}: missing (not a cohort folder written by medsynth generate)")
    folders = sorted(f for f in cases.iterdir() if (f / "provenance.json").is_file())
    return anonymity_summary({f.name: folder_attributes(f, quasi_identifiers) for f in folders}, quasi_identifiers)


@dataclass
class FillTarget:
    """One under-filled group and how to draw members for it."""

    group: dict[str, str]  # the group's attribute values
    missing: int  # members still needed to reach K
    reshape: ReshapeSpec  # the sampler's targets: volume range inside the bin, hemisphere, region
    tumors: list[Tumor]  # source tumors whose sub-region mix (and enhancing bin) matches the group


def _subregion_set(tumor: Tumor, min_fraction: float) -> str:
    present = [CLASS_NAMES[c] for c in TUMOR_CLASSES if tumor.fraction(c) >= min_fraction]
    return "+".join(present) or _NONE


def _volume_target(
    group: Mapping[str, str], qi: QuasiIdentifiers, tumors: list[Tumor], config: LabelConfig, tolerance: float
) -> Range:
    low, high = _bin_range(group["volume_ml"], qi.volume_bins_ml)
    reach_low = min(t.volume_ml for t in tumors) * config.volume_scale[0]
    reach_high = max(t.volume_ml for t in tumors) * config.volume_scale[1]
    # the sampler lands within +-tolerance of its target: aim inside the bin by that margin
    target_low, target_high = max(low / (1 - tolerance), reach_low), min(high / (1 + tolerance), reach_high)
    if target_low > target_high:  # a bin narrower than the tolerance: aim anywhere in it, the re-check decides
        target_low, target_high = max(low, reach_low), min(high, reach_high)
    if target_low > target_high:
        raise MedsynthError(
            f"k-anonymity group {dict(group)} cannot be filled: the source tumors reach "
            f"{reach_low:.1f}-{reach_high:.1f} ml with volume_scale {config.volume_scale}, outside the "
            f"{group['volume_ml']} ml bin"
        )
    return Range(round(max(target_low, 1e-3), 3), round(target_high, 3))


def fill_targets(
    summary: Mapping[str, Any],
    k: int,
    tumors: Sequence[Tumor],
    label_config: LabelConfig | None = None,
    quasi_identifiers: QuasiIdentifiers | None = None,
    base_reshape: ReshapeSpec | None = None,
) -> Iterator[FillTarget]:
    """The sampler targets of every group of ``summary`` with fewer than ``k`` members, in group order.

    ``tumors`` are the sampler's source tumors; ``base_reshape`` contributes its enhancing-fraction
    range and volume tolerance. Raises :class:`MedsynthError` naming a group the sources cannot reach.
    """
    k = check_k(k)
    qi = quasi_identifiers or QuasiIdentifiers()
    config = label_config or LabelConfig()
    base = base_reshape or ReshapeSpec()
    for row in summary["groups"]:
        if row["count"] >= k:
            continue
        group = row["attributes"]
        if any(group.get(name) == _NONE for name in ("volume_ml", "subregions", "hemisphere")):
            raise MedsynthError(
                f"k-anonymity group {group} cannot be filled: it holds tumor-free label maps and the sampler "
                "always places a tumor"
            )
        chosen = list(tumors)
        if "subregions" in group:
            chosen = [t for t in chosen if _subregion_set(t, qi.subregion_min_fraction) == group["subregions"]]
        enhancing = base.enhancing_fraction
        if "enhancing" in group:
            low, high = _bin_range(group["enhancing"], qi.enhancing_bins)
            enhancing = Range(low, min(high, 1.0))
        if enhancing is not None:
            chosen = [t for t in chosen if enhancing.contains(t.fraction(ET))]
        if not chosen:
            mixes = ", ".join(
                f"{t.case_id}: {_subregion_set(t, qi.subregion_min_fraction)}, et {t.fraction(ET):.2f}" for t in tumors
            )
            raise MedsynthError(
                f"k-anonymity group {group} cannot be filled: no source tumor has its sub-region mix "
                f"(sources: {mixes or 'none'})"
            )
        spec = ReshapeSpec(
            volume_ml=_volume_target(group, qi, chosen, config, base.volume_tolerance)
            if "volume_ml" in group
            else None,
            hemisphere={group["hemisphere"]: 1.0} if "hemisphere" in group else None,
            region={group["region"]: 1.0} if "region" in group else None,
            enhancing_fraction=enhancing,
            volume_tolerance=base.volume_tolerance,
        )
        yield FillTarget(group=dict(group), missing=k - row["count"], reshape=spec, tumors=chosen)


def k_anonymity_report(cohort: str | Path, listed: int = 10) -> dict[str, Any]:
    """k of the cohort's descriptive attributes and its smallest groups, or why it is not available."""
    try:
        result = cohort_anonymity(cohort)
    except MedsynthError as error:
        return {"available": False, "reason": str(error)}
    smallest = [g for g in result["groups"] if g["count"] == result["k"]]
    return {
        "available": True,
        "k": result["k"],
        "cases": result["cases"],
        "groups": len(result["groups"]),
        "smallest_groups": smallest[:listed],
        "smallest_groups_total": len(smallest),
        "attributes": result["attributes"],
    }
