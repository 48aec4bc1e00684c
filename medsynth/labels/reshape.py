"""Target distributions for a cohort's tumors ("reshaping"), loaded from YAML.

Example (``configs/reshape/balanced_sides.yaml``)::

    hemisphere: {left: 0.5, right: 0.5}

Every field is optional; an absent field leaves that attribute as the sources give it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from medsynth.labels.locations import HEMISPHERES, REGIONS


@dataclass
class Range:
    """A closed interval."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ValueError(f"range low ({self.low}) must not exceed high ({self.high})")

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def _check_probabilities(name: str, table: dict[str, float] | None, allowed: tuple[str, ...]) -> None:
    if table is None:
        return
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ValueError(f"{name}: unknown value(s) {unknown}; choose from {list(allowed)}")
    if any(p < 0 for p in table.values()) or abs(sum(table.values()) - 1.0) > 1e-6:
        raise ValueError(f"{name}: probabilities must be >= 0 and sum to 1, got {table}")


@dataclass
class ReshapeSpec:
    """Target distributions of tumor volume, location and composition.

    Args:
        volume_ml: target whole-tumor volume range (ml); sources' volumes when ``None``.
        volume_distribution: ``"uniform"`` or ``"loguniform"`` draws on ``volume_ml``.
        hemisphere: probabilities of ``left`` / ``right``.
        region: probabilities of ``frontal``, ``parietal``, ``temporal``, ``occipital``, ``deep``.
        enhancing_fraction: accepted share of enhancing tumor in the whole tumor.
        volume_tolerance: accepted relative error between target and achieved volume, in (0, 1).

    >>> import numpy as np
    >>> spec = ReshapeSpec(volume_ml=Range(10.0, 40.0), hemisphere={"left": 1.0, "right": 0.0})
    >>> targets = spec.sample_targets(np.random.default_rng(0))
    >>> targets["hemisphere"], 10.0 <= targets["volume_ml"] <= 40.0
    ('left', True)
    """

    volume_ml: Range | None = None  # target whole-tumor volume range (ml)
    volume_distribution: Literal["uniform", "loguniform"] = "uniform"  # shape of the volume target on that range
    hemisphere: dict[str, float] | None = None  # probabilities of 'left' / 'right'
    region: dict[str, float] | None = None  # probabilities of frontal/parietal/temporal/occipital/deep
    enhancing_fraction: Range | None = None  # accepted share of enhancing tumor in the whole tumor
    volume_tolerance: float = 0.15  # accepted relative error between target and achieved volume

    def __post_init__(self) -> None:
        _check_probabilities("hemisphere", self.hemisphere, HEMISPHERES)
        _check_probabilities("region", self.region, REGIONS)
        if self.volume_ml is not None and self.volume_ml.low <= 0:
            raise ValueError("volume_ml.low must be > 0")
        if not 0 < self.volume_tolerance < 1:
            raise ValueError("volume_tolerance must be in (0, 1)")

    def sample_targets(self, rng: np.random.Generator) -> dict[str, float | str]:
        """Draw one tumor's targets (only for the attributes the spec constrains)."""
        targets: dict[str, float | str] = {}
        if self.volume_ml is not None:
            low, high = self.volume_ml.low, self.volume_ml.high
            if self.volume_distribution == "loguniform":
                targets["volume_ml"] = float(np.exp(rng.uniform(np.log(low), np.log(high))))
            else:
                targets["volume_ml"] = float(rng.uniform(low, high))
        for name in ("hemisphere", "region"):
            table = getattr(self, name)
            if table:
                keys = sorted(table)
                targets[name] = str(rng.choice(keys, p=[table[k] for k in keys]))
        return targets
