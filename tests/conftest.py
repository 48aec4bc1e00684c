"""Shared fixtures: tiny seeded NIfTI subjects made on the fly, in every supported layout."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two pytest workers (pytest -n): one thread each, so two workers share two cores
    # without oversubscription; subprocesses (CLI, torchrun tests) inherit it.
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SHAPE = (40, 48, 40)
AFFINE = np.diag([-2.0, -2.0, 2.0, 1.0])  # LPS, 2 mm
AFFINE[:3, 3] = [40.0, 48.0, -40.0]


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """Session and module fixtures (made before any test's own cache) never touch the user's cache."""
    before = os.environ.get("MEDSYNTH_CACHE")
    os.environ["MEDSYNTH_CACHE"] = str(tmp_path_factory.mktemp("session_cache"))
    yield
    if before is None:
        os.environ.pop("MEDSYNTH_CACHE", None)
    else:
        os.environ["MEDSYNTH_CACHE"] = before


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MEDSYNTH_CACHE", str(tmp_path_factory.mktemp("cache")))


def phantom(seed: int = 0, tumor: bool = True) -> dict[str, np.ndarray]:
    """A brain-like phantom: spherical brain, WM core, GM shell, CSF rim and ventricles, a tumor.

    Returns float images ``t1c``/``flair``, ``mask`` and BraTS 2013 tumor labels ``label``.
    """
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in SHAPE], indexing="ij"))
    radius = np.sqrt((grid**2).sum(0))
    brain = radius < 0.8
    tissue = np.where(radius < 0.55, 3, np.where(radius < 0.72, 2, 1)) * brain  # WM core, GM shell, CSF rim
    ventricles = (np.abs(grid[0]) < 0.12) & (np.abs(grid[1]) < 0.3) & (np.abs(grid[2]) < 0.15)
    tissue[ventricles & brain] = 1
    label = np.zeros(SHAPE, np.uint8)
    if tumor:
        center = np.array([0.35, 0.1, 0.2]) + 0.05 * rng.standard_normal(3)
        r = np.sqrt(((grid - center[:, None, None, None]) ** 2).sum(0))
        label[r < 0.3] = 2  # edema
        label[r < 0.2] = 4  # enhancing rim
        label[r < 0.12] = 1  # necrosis
        label &= brain.astype(np.uint8) * 255
    t1_means = np.array([0, -2.0, 0.2, 0.9])
    flair_means = np.array([0, -2.0, 0.6, 0.1])
    t1c = t1_means[tissue] + 0.1 * rng.standard_normal(SHAPE)
    flair = flair_means[tissue] + 0.1 * rng.standard_normal(SHAPE)
    t1c[label == 4] = 2.5
    flair[label > 0] = 2.0
    t1c *= brain
    flair *= brain
    return {
        "t1c": t1c.astype(np.float32),
        "flair": flair.astype(np.float32),
        "mask": brain.astype(np.uint8),
        "label": label,
        "tissue": tissue.astype(np.uint8),
    }


def save(array: np.ndarray, path: Path, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


BRATS2021_TO = {1: 1, 2: 2, 3: 1, 4: 4}
BRATS2023_TO = {1: 1, 2: 2, 3: 1, 4: 3}


def _remap(label: np.ndarray, table: dict[int, int]) -> np.ndarray:
    out = np.zeros_like(label)
    for source, target in table.items():
        out[label == source] = target
    return out


def make_dataset(root: Path, layout: str = "brats2013", n: int = 3, split_folders: bool = True) -> Path:
    """Write ``n`` phantom subjects in ``layout`` under ``root``; returns ``root``."""
    for i in range(n):
        p = phantom(seed=i)
        split = ("train" if i < n - 1 else "validation") if split_folders else ""
        if layout == "brats2013":
            folder = root / split / f"brats_2013_pat{i:04d}_1"
            save(p["t1c"], folder / "T1c_subtrMeanDivStd.nii.gz")
            save(p["flair"], folder / "Flair_subtrMeanDivStd.nii.gz")
            save(p["mask"], folder / "brainmask.nii.gz")
            save(p["label"], folder / "OTMultiClass.nii.gz")
        elif layout == "brats2021":
            case = f"BraTS2021_{i:05d}"
            folder = root / split / case
            save(p["t1c"], folder / f"{case}_t1ce.nii.gz")
            save(p["flair"], folder / f"{case}_flair.nii.gz")
            save(_remap(p["label"], BRATS2021_TO), folder / f"{case}_seg.nii.gz")
        elif layout == "brats2023":
            case = f"BraTS-GLI-{i:05d}-000"
            folder = root / split / case
            save(p["t1c"], folder / f"{case}-t1c.nii.gz")
            save(p["flair"], folder / f"{case}-t2f.nii.gz")
            save(_remap(p["label"], BRATS2023_TO), folder / f"{case}-seg.nii.gz")
        else:
            raise ValueError(layout)
    return root


@pytest.fixture
def brats2013_dir(tmp_path) -> Path:
    return make_dataset(tmp_path / "brats2013", "brats2013")


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "brats2013_small").is_dir():
        pytest.skip(f"integration data not found at {SHARED_DATA} (the repo's ../shared/data)")
    return SHARED_DATA.resolve()


@pytest.fixture(scope="session")
def prepared_phantoms(tmp_path_factory) -> Path:
    """A prepared manifest of 4 phantom subjects (3 train, 1 validation) on a 48^3 2 mm grid."""
    from medsynth.data.manifest import build_manifest
    from medsynth.data.prepare import prepare
    from medsynth.data.preprocess import PreprocessConfig

    root = tmp_path_factory.mktemp("prepared_phantoms")
    build_manifest(make_dataset(root / "raw", "brats2013", n=4), root / "m.json")
    config = PreprocessConfig(spacing_mm=(2.0, 2.0, 2.0), grid=(48, 48, 48))
    prepare(root / "m.json", root / "prepared", config, cache_dir=root / "cache", previews=False, progress=False)
    return root / "prepared" / "manifest.json"


@pytest.fixture(scope="session")
def tiny_generator(prepared_phantoms, tmp_path_factory) -> Path:
    """A 2-step VAE trained on the phantoms (enough to exercise every synthesis path)."""
    from medsynth.config import from_dict
    from medsynth.models.config import TrainConfig
    from medsynth.models.train import run_train

    network = {"channels": [4, 4, 8], "z_dim": 4, "spade_channels": 4, "refine_channels": 4}
    config = from_dict(
        TrainConfig,
        {
            "model": "vae",
            "manifest": str(prepared_phantoms),
            "network": network,
            "steps": 2,
            "loss": {"adversarial_weight": 0.0},
        },
    )
    return run_train(config, tmp_path_factory.mktemp("tiny_vae"), progress=False)


@pytest.fixture(scope="session")
def tiny_cohort(tiny_generator, tmp_path_factory) -> Path:
    """A 4-case synthetic cohort from the tiny generator (label maps from the phantoms' train split)."""
    from medsynth.cohort.generate import generate_cohort

    root = tmp_path_factory.mktemp("tiny_cohort") / "cohort"
    generate_cohort(tiny_generator, root, n=4, seed=0, progress=False)
    return root
