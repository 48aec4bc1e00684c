"""medsynth: synthetic brain MRI cohorts with tumor label maps.

The pipeline reads left to right in the package: ``data`` (manifests, preprocessing,
anatomy) -> ``labels`` (new tumor label maps) -> models -> cohorts -> loaders -> evidence.

Heavy dependencies (torch, MONAI) are imported lazily so ``import medsynth`` and
``medsynth --help`` stay fast.
"""

__version__ = "0.1.0"

from pathlib import Path

from medsynth.errors import MedsynthError

__all__ = ["MedsynthError", "__version__", "load_generator", "pretrained"]


def load_generator(path, device="auto", precision="auto"):
    """Load a trained generator (``generator.pt`` or ``checkpoint.pt``); see ``medsynth.models.generator``."""
    from medsynth.models.generator import load_generator as _load

    return _load(path, device=device, precision=precision)


def pretrained(kind: str) -> Path:
    """Path of the small CPU checkpoint shipped with medsynth: ``kind`` is ``"gan"`` or ``"vae"``."""
    path = Path(__file__).resolve().parent / "pretrained" / f"{kind}_cpu.pt"
    if not path.is_file():
        raise MedsynthError(f"no shipped checkpoint {path.name}; choose 'gan' or 'vae'")
    return path
