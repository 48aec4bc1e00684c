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
8      tumor      tumor whose sub-regions are unknown (whole-tumor-only labels)
=====  =========  ==================================================================

Regions (BraTS): whole tumor WT = {netc, snfh, et, tumor}; tumor core TC = {netc, et};
enhancing tumor ET = {et}. The resection cavity belongs to none of them, as in BraTS 2024.

``tumor`` is how a whole-tumor-only label (e.g. ``GT_W.nii.gz`` of ``brats2018_wt``) arrives:
it prepares, previews and evaluates on WT, and every stage that needs sub-regions (generator
training, label maps from tumor sources, TC/ET metrics) refuses it (:func:`require_subregions`)
rather than guess them. Generators are conditioned on values 0-7 only (:data:`MODEL_CLASSES`).

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
wt           tumor        --          --              --
===========  ===========  ==========  ==============  ================

A dataset with another convention declares its own mapping, ``{source value: class name}``
(e.g. ``{1: snfh, 2: netc, 3: et}``), wherever a scheme name is accepted (:func:`mapping`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

BACKGROUND, CSF, GM, WM, NETC, SNFH, ET, RC, TUMOR = range(9)

CLASS_NAMES: dict[int, str] = {
    BACKGROUND: "background",
    CSF: "csf",
    GM: "gm",
    WM: "wm",
    NETC: "netc",
    SNFH: "snfh",
    ET: "et",
    RC: "rc",
    TUMOR: "tumor",
}
ANATOMY_CLASSES: tuple[int, ...] = (CSF, GM, WM)
TUMOR_CLASSES: tuple[int, ...] = (NETC, SNFH, ET)
NUM_CLASSES = len(CLASS_NAMES)
# Values 0-7: the classes a generator is conditioned on (its one-hot input) and the loaders sample by;
# ``tumor`` is not one (whole-tumor-only data are refused there).
MODEL_CLASSES = TUMOR

REGIONS: dict[str, tuple[int, ...]] = {
    "WT": (NETC, SNFH, ET, TUMOR),
    "TC": (NETC, ET),
    "ET": (ET,),
}

# Tumor labels of each source scheme -> canonical value. Value 0 always maps to background.
SOURCE_TO_CANONICAL: dict[str, dict[int, int]] = {
    "brats2013": {1: NETC, 2: SNFH, 3: NETC, 4: ET},
    "brats2021": {1: NETC, 2: SNFH, 4: ET},
    "brats2023": {1: NETC, 2: SNFH, 3: ET, 4: RC},
    "msd": {1: SNFH, 2: NETC, 3: ET},
    "wt": {1: TUMOR},
    "canonical": {v: v for v in CLASS_NAMES if v},
}
SCHEMES: tuple[str, ...] = tuple(SOURCE_TO_CANONICAL)

# Names a dataset's own label table may use for a class (nnU-Net dataset.json, declared layouts).
CLASS_SYNONYMS: dict[int, tuple[str, ...]] = {
    BACKGROUND: ("background", "bg"),
    NETC: (
        "netc",
        "necrosis",
        "necrotic",
        "ncr",
        "net",
        "ncr/net",
        "ncr_net",
        "necrotic core",
        "non-enhancing",
        "non enhancing",
        "non-enhancing tumor",
        "non-enhancing tumour",
        "non-enhancing tumor core",
        "necrotic/non-enhancing tumor core",
    ),
    SNFH: ("snfh", "edema", "oedema", "ed", "peritumoral edema", "peritumoral oedema", "flair hyperintensity"),
    ET: ("et", "enhancing", "enhancing tumor", "enhancing tumour", "gd-enhancing tumor", "enhancing tumor (et)"),
    RC: ("rc", "resection cavity", "cavity"),
    TUMOR: ("tumor", "tumour", "whole tumor", "whole tumour", "wt", "lesion", "glioma", "mask", "foreground"),
}

# Canonical -> export conventions (used when writing cohorts or predictions for BraTS tools).
CANONICAL_TO_BRATS2021: dict[int, int] = {NETC: 1, SNFH: 2, ET: 4}
CANONICAL_TO_BRATS2023: dict[int, int] = {NETC: 1, SNFH: 2, ET: 3, RC: 4}


LabelScheme = str | dict[Any, Any]  # a scheme's name, or a declared {source value: class name or value}


def class_from_name(name: str) -> int | None:
    """The canonical class a dataset's label name means, or None when it is not a known name.

    >>> class_from_name("Edema"), class_from_name("whole tumor"), class_from_name("spleen")
    (5, 8, None)
    """
    key = " ".join(str(name).strip().lower().replace("_", " ").split())
    for value, names in CLASS_SYNONYMS.items():
        if key in names or key.replace(" ", "_") in names or key.replace(" ", "-") in names:
            return value
    return None


def mapping(label_scheme: LabelScheme) -> dict[int, int]:
    """Source value -> canonical class of a scheme name or a declared mapping (0 is always background).

    A declared mapping names each value's class by canonical name (or synonym, see
    :data:`CLASS_SYNONYMS`) or value; anatomy classes cannot come from a tumor label file.

    >>> mapping("wt")
    {1: 8}
    >>> mapping({"1": "edema", "2": "netc", 3: "et"})
    {1: 5, 2: 4, 3: 6}
    >>> mapping({1: "spleen"})
    Traceback (most recent call last):
    ValueError: label value 1: 'spleen' is not a tumor class (netc, snfh, et, rc, tumor, or a synonym)
    """
    if isinstance(label_scheme, str):
        if label_scheme not in SOURCE_TO_CANONICAL:
            raise ValueError(
                f"unknown label scheme {label_scheme!r}; known: {', '.join(SCHEMES)} or a declared mapping"
            )
        return dict(SOURCE_TO_CANONICAL[label_scheme])
    if not isinstance(label_scheme, dict) or not label_scheme:
        raise ValueError(f"label scheme {label_scheme!r}: expected a scheme name or a mapping {{value: class}}")
    table: dict[int, int] = {}
    for key, name in label_scheme.items():
        try:
            value = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"label value {key!r}: not a whole number") from None
        target = name if isinstance(name, int) and not isinstance(name, bool) else class_from_name(str(name))
        if value == 0 and target == BACKGROUND:
            continue
        if value <= 0 or target not in (NETC, SNFH, ET, RC, TUMOR):
            raise ValueError(
                f"label value {key}: {name!r} is not a tumor class (netc, snfh, et, rc, tumor, or a synonym)"
                if value > 0
                else f"label value {key}: 0 is background and cannot be mapped to {name!r}"
            )
        table[value] = target
    return table


def parse_scheme(text: str) -> LabelScheme:
    """A scheme from the command line: a name, or ``VALUE=CLASS,...``.

    >>> parse_scheme("wt"), parse_scheme("1=edema, 2=netc,4=et")
    ('wt', {1: 'edema', 2: 'netc', 4: 'et'})
    """
    if "=" not in text:
        mapping(text.strip())  # an unknown name is refused here, naming the known ones
        return text.strip()
    declared: dict[Any, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, name = part.partition("=")
        if not sep:
            raise ValueError(f"--label-scheme {text!r}: expected VALUE=CLASS pairs, e.g. 1=edema,2=netc,4=et")
        try:
            declared[int(key)] = name.strip()
        except ValueError:
            raise ValueError(f"--label-scheme {text!r}: {key!r} is not a whole number") from None
    mapping(declared)
    return declared


def has_subregions(label_scheme: LabelScheme | None) -> bool:
    """Whether labels in ``label_scheme`` name tumor sub-regions (False for whole-tumor-only schemes).

    >>> has_subregions("brats2021"), has_subregions("wt"), has_subregions({1: "tumor"})
    (True, False, False)
    """
    if label_scheme is None or label_scheme == "canonical":  # canonical maps: made by medsynth, or prepared
        return True  # (a prepared manifest's source_label_scheme says whether its tumors had sub-regions)
    return TUMOR not in mapping(label_scheme).values()


def describe(label_scheme: LabelScheme | None) -> str:
    """A short name of a scheme for messages and reports."""
    if label_scheme is None or isinstance(label_scheme, str):
        return str(label_scheme)
    return "{" + ", ".join(f"{k}: {CLASS_NAMES[v]}" for k, v in sorted(mapping(label_scheme).items())) + "}"


def require_subregions(label_scheme: LabelScheme | None, where: str, why: str) -> None:
    """Refuse whole-tumor-only labels where sub-regions are needed, saying why (never guess them).

    >>> require_subregions("wt", "data.json", "generators need them")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    medsynth.errors.DataError: data.json: whole-tumor-only labels (scheme wt; ...): generators need them
    """
    if not has_subregions(label_scheme):
        from medsynth.errors import DataError

        raise DataError(
            f"{where}: whole-tumor-only labels (scheme {describe(label_scheme)}; tumor sub-regions unknown): {why}"
        )


def manifest_scheme(meta: dict[str, Any]) -> LabelScheme | None:
    """The scheme a manifest's tumor labels came in (``source_label_scheme`` once prepared)."""
    return meta.get("source_label_scheme", meta.get("label_scheme"))


def allowed_values(scheme: LabelScheme) -> set[int]:
    """Label values a file in ``scheme`` may contain (0 included)."""
    return {0, *mapping(scheme)}


def lookup_table(mapping: dict[int, int], size: int | None = None) -> np.ndarray:
    """A dense integer lookup table for ``mapping`` (unmapped values -> 0)."""
    size = size or (max(mapping, default=0) + 1)
    table = np.zeros(size, dtype=np.int16)
    for source, target in mapping.items():
        table[source] = target
    return table


def to_canonical_tumor(labels: np.ndarray, scheme: LabelScheme) -> np.ndarray:
    """Map a source tumor label array to canonical tumor values (background stays 0).

    >>> to_canonical_tumor(np.array([0, 1, 2, 3, 4]), "brats2013").tolist()
    [0, 4, 5, 4, 6]
    """
    labels = np.asarray(labels)
    unknown = set(np.unique(labels).astype(int).tolist()) - allowed_values(scheme)
    if unknown:
        raise ValueError(f"label values {sorted(unknown)} do not belong to scheme {describe(scheme)}")
    table = lookup_table(mapping(scheme), size=max(max(mapping(scheme), default=0) + 1, NUM_CLASSES))
    return table[labels.astype(np.int64)]


def from_canonical(label_map: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Map a canonical label map to an export convention (anatomy classes become 0)."""
    return lookup_table(mapping, size=NUM_CLASSES)[np.asarray(label_map).astype(np.int64)]


def region_masks(label_map: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks of the BraTS regions WT, TC and ET of a canonical label map.

    A map with whole-tumor-only labels (``tumor``) has WT only: its TC and ET are unknown.

    >>> sorted(region_masks(np.array([0, TUMOR])))
    ['WT']
    """
    label_map = np.asarray(label_map)
    names = ("WT",) if np.any(label_map == TUMOR) else tuple(REGIONS)
    return {name: np.isin(label_map, REGIONS[name]) for name in names}
