"""``medsynth train --dry-run``: build a config's networks and run one training step on random data.

    $ medsynth train --config configs/gan_gpu.yaml --dry-run --prepare-config configs/prepare_gpu.yaml
    $ medsynth train --config configs/gan_gpu.yaml --dry-run --json manifest=prepared/manifest.json
    $ medsynth train --config configs/vae_gpu.yaml --dry-run --prepare-config configs/prepare_gpu.yaml \
          --grid 128 128 128 batch_size=1

Says whether a config fits a device, and how long a step takes there, before a cohort is
prepared or a run is started: parameters of the generator and the discriminator, the seconds
of one full step (discriminator update, then generator update, with every loss term of real
training: the step classes of :mod:`medsynth.models.steps` on a batch of random images and
label maps) and the peak memory it took.

The geometry is that of the data the config would train on, without reading it: the grid and
spacing of ``--prepare-config`` (a ``medsynth prepare`` config; ``--grid`` replaces its grid),
else the preprocessing recorded in the config's manifest when that file exists, else the
default preprocessing (:class:`medsynth.data.config.PreprocessConfig`: 2 mm, 80x96x80). The
modalities: ``modalities`` of the config, else the manifest's, else ``t1c, flair`` (those of
the shipped generators).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` (tensors only: not the CUDA context nor
the allocator's cache); on CPU the growth of the process's peak resident set (``VmHWM``, reset
through ``/proc/self/clear_refs``; where that is not possible, ``getrusage``, which only sees a
peak above every earlier one), after glibc's free heap pages are handed back (``malloc_trim``).
Both count the networks, their gradients, Adam's state and the step's activations; not the
training set, which ``run_train`` holds in memory besides (per case, 4 bytes per voxel and
modality, 8 for the label map). Nothing is written. DP-SGD (``privacy.enabled``) is not
modelled: its per-sample gradients depend on the real training set.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import resource
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsynth.config import from_dict, read_config_file
from medsynth.data.config import PreprocessConfig
from medsynth.data.scheme import MODEL_CLASSES
from medsynth.errors import MedsynthError
from medsynth.manifest import Manifest
from medsynth.models.config import TrainConfig
from medsynth.models.data import TrainingSet, select_modalities
from medsynth.models.steps import DiscriminatorStep, GeneratorStep
from medsynth.models.train import build_steps, placement_for, training_step

DEFAULT_MODALITIES = ["t1c", "flair"]  # the shipped generators' (the bundled sample's)


@dataclass
class Geometry:
    """What the networks are built for: grid (voxels), spacing (mm), modalities, and where they came from."""

    grid: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    modalities: list[str]
    source: str


@dataclass
class DryRun:
    """The outcome of :func:`dry_run` (``--json`` prints it as a mapping)."""

    model: str
    grid: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    modalities: list[str]
    batch_size: int
    parameters_generator: int
    parameters_discriminator: int  # 0 without a discriminator
    precision: str  # fp32 or bf16 (autocast)
    device: str
    step_seconds: float  # the first step: includes one-time kernel selection, later steps are faster
    peak_memory_bytes: int
    memory_measure: str  # how peak_memory_bytes was measured
    geometry_source: str
    losses: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        """The human-readable summary ``medsynth train --dry-run`` prints."""
        rows = [
            ("model", self.model),
            ("grid", f"{'x'.join(map(str, self.grid))} ({self.geometry_source})"),
            ("spacing", f"{'x'.join(f'{s:g}' for s in self.spacing_mm)} mm"),
            ("modalities", ", ".join(self.modalities)),
            ("batch size", str(self.batch_size)),
            ("parameters G", f"{self.parameters_generator:,}"),
            ("parameters D", f"{self.parameters_discriminator:,}" if self.parameters_discriminator else "-"),
            ("precision", self.precision),
            ("device", self.device),
            ("step seconds", f"{self.step_seconds:.2f} (first step)"),
            ("peak memory", f"{self.peak_memory_bytes / 2**30:.2f} GiB ({self.memory_measure})"),
            ("losses", ", ".join(f"{k} {v:.3g}" for k, v in self.losses.items())),
        ]
        rows += [("note", note) for note in self.notes]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_geometry(
    config: TrainConfig, prepare_config: str | Path | None = None, grid: tuple[int, int, int] | None = None
) -> Geometry:
    """The grid, spacing and modalities the dry run builds for (see the module docstring for the order)."""
    manifest_path = Path(config.manifest)
    manifest = Manifest.load(manifest_path, kind="prepared") if manifest_path.is_file() else None
    if prepare_config is not None:
        preprocess = from_dict(
            PreprocessConfig, read_config_file(prepare_config).get("preprocess") or {}, where=f"{prepare_config}"
        )
        shape, spacing, source = preprocess.grid, preprocess.spacing_mm, str(prepare_config)
    elif manifest is not None:
        recorded = manifest.meta.get("preprocess") or {}
        if "grid" not in recorded or "spacing_mm" not in recorded:
            raise MedsynthError(f"{manifest_path}: no preprocessing record (grid, spacing_mm); pass --prepare-config")
        shape, spacing, source = recorded["grid"], recorded["spacing_mm"], str(manifest_path)
    else:
        preprocess = PreprocessConfig()
        shape, spacing, source = preprocess.grid, preprocess.spacing_mm, "default preprocessing"
    if grid is not None:
        shape, source = grid, "--grid"
    if manifest is not None:
        available = manifest.modalities
        modalities = [available[i] for i in select_modalities(available, config.modalities, str(manifest_path))]
    else:
        modalities = list(config.modalities) or list(DEFAULT_MODALITIES)
    return Geometry(tuple(int(s) for s in shape), tuple(float(s) for s in spacing), modalities, source)


def random_training_set(geometry: Geometry, cases: int, seed: int = 0) -> TrainingSet:
    """``cases`` random cases on the geometry: an ellipsoid brain of random classes, Gaussian images inside it.

    The values do not matter for time or memory, only the shapes (and a brain mask that is not empty).
    """
    generator = torch.Generator().manual_seed(seed)
    axes = [torch.linspace(-1, 1, s) for s in geometry.grid]
    x, y, z = torch.meshgrid(*axes, indexing="ij")
    brain = (x**2 + y**2 + z**2) < 0.8
    label_maps = torch.randint(1, MODEL_CLASSES, (cases, *geometry.grid), generator=generator) * brain
    images = torch.randn(cases, len(geometry.modalities), *geometry.grid, generator=generator) * brain
    return TrainingSet(
        images=images,
        label_maps=label_maps,
        modalities=list(geometry.modalities),
        case_ids=[f"random_{i}" for i in range(cases)],
        affine=np.diag([*geometry.spacing_mm, 1.0]),
        spacing_mm=geometry.spacing_mm,
        label_digests={},
        preprocess={},
    )


def dry_run(
    config: TrainConfig, prepare_config: str | Path | None = None, grid: tuple[int, int, int] | None = None
) -> DryRun:
    """Build the networks of ``config`` and run one training step on random data; see the module docstring."""
    geometry = resolve_geometry(config, prepare_config, grid)
    placement = placement_for(config)  # as run_train: bf16 autocast on CUDA and on CPUs with native bf16
    device = placement.device
    data = random_training_set(geometry, config.batch_size, config.seed)
    notes = []
    if config.privacy.enabled:
        notes.append("privacy.enabled: DP-SGD not modelled (its per-sample gradients add memory)")
    torch.manual_seed(config.seed)
    with peak_memory(device) as measured:
        generator, discriminator = build_steps(config, data, placement)
        started = time.perf_counter()
        losses = _one_step(config, geometry, data, generator, discriminator)
        seconds = time.perf_counter() - started
    return DryRun(
        model=config.model,
        grid=geometry.grid,
        spacing_mm=geometry.spacing_mm,
        modalities=geometry.modalities,
        batch_size=config.batch_size,
        parameters_generator=count_parameters(generator.network),
        parameters_discriminator=count_parameters(discriminator.network),
        precision="fp32" if placement.dtype is None else "bf16",
        device=str(device),
        step_seconds=seconds,
        peak_memory_bytes=measured["bytes"],
        memory_measure=measured["measure"],
        geometry_source=geometry.source,
        losses=losses,
        notes=notes,
    )


def _one_step(
    config: TrainConfig,
    geometry: Geometry,
    data: TrainingSet,
    generator: GeneratorStep,
    discriminator: DiscriminatorStep,
) -> dict[str, float]:
    """:func:`medsynth.models.train.training_step`, finished on the device; its failures in one line."""
    device = generator.placement.device
    shown = f"{config.model} on {'x'.join(map(str, geometry.grid))} at batch size {config.batch_size}"
    try:
        losses = training_step(0, data, generator, discriminator)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except torch.OutOfMemoryError:
        # the answer a dry run exists to give, not a crash
        raise MedsynthError(f"{shown}: out of memory on {device}; lower batch_size or the grid") from None
    except (RuntimeError, ValueError) as exc:
        # MONAI's shape errors (a 1-voxel map in the deepest discriminator layer) do not name the config
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MedsynthError(
            f"{shown}: one training step failed ({first}); a grid too small for network.d_layers / d_scales?"
        ) from None
    return losses


def count_parameters(network: torch.nn.Module | None) -> int:
    return sum(p.numel() for p in network.parameters()) if network is not None else 0


@contextlib.contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, Any]]:
    """Yields a dict that holds, after the block, the peak memory it took (``bytes``) and how it was measured."""
    measured: dict[str, Any] = {}
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        yield measured
        torch.cuda.synchronize(device)
        measured["bytes"] = torch.cuda.max_memory_allocated(device) - before
        measured["measure"] = "torch.cuda.max_memory_allocated"
        return
    _trim_heap()
    before = _status_kib("VmRSS")
    reset = before is not None and _reset_peak_rss()
    if not reset:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    yield measured
    if reset:
        measured["bytes"] = max(0, _status_kib("VmHWM") - before) * 1024
        measured["measure"] = "CPU peak RSS increase, VmHWM"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        measured["bytes"] = max(0, peak - before) * 1024
        measured["measure"] = "CPU peak RSS increase, getrusage: a lower bound"


def _status_kib(key: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (Linux); None elsewhere."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    return None


def _trim_heap() -> None:
    """Return glibc's free heap pages to the OS: resident but free, they would be reused unseen by the RSS."""
    with contextlib.suppress(OSError, AttributeError):
        name = ctypes.util.find_library("c")
        if name:
            ctypes.CDLL(name).malloc_trim(0)


def _reset_peak_rss() -> bool:
    """Reset the process's peak RSS (``VmHWM``) to its current RSS (Linux >= 4.0); False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True
