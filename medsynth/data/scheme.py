"""medsynth's one canonical label scheme, and the mapping from every supported source scheme.

Canonical label map values (anatomy + tumor sub-regions):

=====  =========  ==================================================================
value  name       meaning
=====  =========  ==================================================================
0      background outside the brain
1      csf        cerebrospinal fluid, ventricles included
2      gm         grey matter (cortex and deep grey nuclei)
3      wm         white matter (brainstem included)
4      netc       non-enhancing tumor core: necrosis and non-enhancing tumor
5      snfh       surrounding non-enhancing FLAIR hyperintensity (edema)
6      et         enhancing tumor
7      rc         resection cavity (BraTS 2024 post-treatment only)
=====  =========  ==================================================================

Regions (BraTS): whole tumor WT = {netc, snfh, et}; tumor core TC = {netc, et};
enhancing tumor ET = {et}. The resection cavity belongs to none of them, as in BraTS 2024.

Necrosis and non-enhancing tumor are merged into ``netc`` because only BraTS 2013/2015
separates them; every later edition (and MSD) does not, so keeping them apart would make
cohorts from different sources incomparable.

Source schemes (what the label file's integers mean), mapped by :data:`SOURCE_TO_CANONICAL`:

===========  ===========  ==========  ==============  ================
source       1            2           3               4
===========  ===========  ==========  ==============  ================
brats2013    necrosis     edema       non-enhancing   enhancing
brats2021    NCR/NET      edema       (unused)        enhancing
brats2023    NETC         SNFH        ET              resection cavity
msd          edema        non-enh.    enhancing       --
===========  ===========  ==========  ==============  ================
"""

from __future__ import annotations

import numpy as np

BACKGROUND, CSF, GM, WM, NETC, SNFH, ET, RC = range(8)

CLASS_NAMES: dict[int, str] = {
    BACKGROUND: "background",
    CSF: "csf",
    GM: "gm",
    WM: "wm",
    NETC: "netc",
    SNFH: "snfh",
    ET: "et",
    RC: "rc",
}
ANATOMY_CLASSES: tuple[int, ...] = (CSF, GM, WM)
TUMOR_CLASSES: tuple[int, ...] = (NETC, SNFH, ET)
NUM_CLASSES = len(CLASS_NAMES)

REGIONS: dict[str, tuple[int, ...]] = {
    "WT": (NETC, SNFH, ET),
    "TC": (NETC, ET),
    "ET": (ET,),
}

# Tumor labels of each source scheme -> canonical value. Value 0 always maps to background.
SOURCE_TO_CANONICAL: dict[str, dict[int, int]] = {
    "brats2013": {1: NETC, 2: SNFH, 3: NETC, 4: ET},
    "brats2021": {1: NETC, 2: SNFH, 4: ET},
    "brats2023": {1: NETC, 2: SNFH, 3: ET, 4: RC},
    "msd": {1: SNFH, 2: NETC, 3: ET},
    "canonical": {v: v for v in CLASS_NAMES if v},
}

# Canonical -> export conventions (used when writing cohorts or predictions for BraTS tools).
CANONICAL_TO_BRATS2021: dict[int, int] = {NETC: 1, SNFH: 2, ET: 4}
CANONICAL_TO_BRATS2023: dict[int, int] = {NETC: 1, SNFH: 2, ET: 3, RC: 4}


def allowed_values(scheme: str) -> set[int]:
    """Label values a file in ``scheme`` may contain (0 included)."""
    if scheme not in SOURCE_TO_CANONICAL:
        raise ValueError(f"unknown label scheme {scheme!r}; known: {sorted(SOURCE_TO_CANONICAL)}")
    return {0, *SOURCE_TO_CANONICAL[scheme]}


def lookup_table(mapping: dict[int, int], size: int | None = None) -> np.ndarray:
    """A dense integer lookup table for ``mapping`` (unmapped values -> 0)."""
    size = size or (max(mapping, default=0) + 1)
    table = np.zeros(size, dtype=np.int16)
    for source, target in mapping.items():
        table[source] = target
    return table


def to_canonical_tumor(labels: np.ndarray, scheme: str) -> np.ndarray:
    """Map a source tumor label array to canonical tumor values (background stays 0).

    >>> to_canonical_tumor(np.array([0, 1, 2, 3, 4]), "brats2013").tolist()
    [0, 4, 5, 4, 6]
    """
    labels = np.asarray(labels)
    unknown = set(np.unique(labels).astype(int).tolist()) - allowed_values(scheme)
    if unknown:
        raise ValueError(f"label values {sorted(unknown)} do not belong to scheme {scheme!r}")
    table = lookup_table(SOURCE_TO_CANONICAL[scheme], size=NUM_CLASSES)
    return table[labels.astype(np.int64)]


def from_canonical(label_map: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Map a canonical label map to an export convention (anatomy classes become 0)."""
    return lookup_table(mapping, size=NUM_CLASSES)[np.asarray(label_map).astype(np.int64)]


def region_masks(label_map: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of the BraTS regions WT, TC and ET of a canonical label map."""
    return {name: np.isin(label_map, values) for name, values in REGIONS.items()}
