"""medsynth: synthetic brain MRI cohorts with tumor label maps.

The pipeline reads left to right in the package: ``data`` (manifests, preprocessing,
anatomy) -> ``labels`` (new tumor label maps) -> models -> cohorts -> loaders -> evidence.

Heavy dependencies (torch, MONAI) are imported lazily so ``import medsynth`` and
``medsynth --help`` stay fast.
"""

__version__ = "0.1.0"

from medsynth.errors import MedsynthError

__all__ = ["MedsynthError", "__version__"]
