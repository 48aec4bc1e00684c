"""``medsynth train``: train the conditional GAN or VAE on a prepared manifest.

    $ medsynth train --config configs/gan_cpu.yaml -o runs/gan
    $ medsynth train --config configs/gan_cpu.yaml -o runs/gan --resume        # continue exactly
    $ torchrun --nproc_per_node 2 -m medsynth.cli train --config configs/gan_cpu.yaml -o runs/gan_ddp
    $ medsynth train --config configs/gan_dp_cpu.yaml -o runs/gan_dp     # DP-SGD (medsynth.models.privacy)
    $ medsynth train --config configs/gan_gpu.yaml --dry-run --prepare-config configs/prepare_gpu.yaml  # will it fit

Every step seeds torch from (seed, rank, step), so data order, noise and the VAE's sampling
are a function of the step alone: a resumed run reproduces the losses of an uninterrupted
one without saving any data-loader state.

:func:`train` builds a step object per side (``medsynth.models.steps``: the generator family's,
and the discriminator's, DP-SGD in ``medsynth.models.privacy``), then loops: draw a batch,
synthesize, update the discriminator, update the generator against it; log, preview, checkpoint.

Outputs: ``config.yaml``, ``checkpoint.pt`` (everything, for --resume), ``generator.pt``
(what synthesis needs), ``log.csv``, ``tensorboard/``, ``previews/step_NNNNNN.png``.
"""

from __future__ import annotations

import contextlib
import csv
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medsynth._version import __version__
from medsynth.config import from_dict, save_config, to_dict
from medsynth.data.scheme import MODEL_CLASSES
from medsynth.errors import MedsynthError
from medsynth.io import claim_output, write_json
from medsynth.manifest import provenance
from medsynth.models import checkpoint
from medsynth.models.config import LEGACY_NETWORK, TrainConfig
from medsynth.models.data import TrainingSet, load_training_set, one_hot
from medsynth.models.steps import (
    GENERATOR_STEPS,
    DiscriminatorStep,
    GeneratorStep,
    PatchDiscriminatorStep,
    Placement,
)
from medsynth.runtime import autocast_dtype, cpu_has_bf16, select_device

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def step_seed(seed: int, rank: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def generator_metadata(config: TrainConfig, data: TrainingSet, privacy: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``load_generator`` needs besides the weights; ``privacy``: the DP record, if trained with DP."""
    import nibabel as nib

    return {
        "kind": config.model,
        "network": to_dict(config.network),
        "modalities": data.modalities,
        "grid": list(data.grid),
        "spacing_mm": list(data.spacing_mm),
        "orientation": "".join(nib.aff2axcodes(data.affine)),  # label maps are checked against it
        "label_channels": MODEL_CLASSES,
        "training": {
            # a hint only: the training data are found again by content (label_maps), on any machine
            "manifest": str(config.manifest),  # as given: a shared checkpoint must not carry the trainer's folders
            "cases": data.case_ids,
            "label_maps": data.label_digests,
            "preprocess": data.preprocess,
            "medsynth": __version__,
            **({"privacy": privacy} if privacy is not None else {}),
        },
    }


def placement_for(config: TrainConfig) -> Placement:
    """The device, autocast dtype and memory format ``config`` trains with."""
    device = select_device(config.device)
    # bf16 on CPUs with native bf16: GAN step 2.4x, VAE step 3.5x faster, same losses and per-class
    # intensities (reports/performance.md). Without native bf16 it emulates and is far slower.
    dtype = autocast_dtype(config.precision, device, cpu_auto=torch.bfloat16 if cpu_has_bf16() else None)
    memory_format = torch.channels_last_3d if config.channels_last else torch.contiguous_format
    return Placement(device, dtype, memory_format)


def build_steps(
    config: TrainConfig, data: TrainingSet, placement: Placement
) -> tuple[GeneratorStep, DiscriminatorStep]:
    """New, untrained generator and discriminator steps for ``data`` (the discriminator's base class when none)."""
    generator = GENERATOR_STEPS[config.model](config, data, placement)
    discriminator = (
        PatchDiscriminatorStep.build(config, data, placement)
        if generator.needs_discriminator
        else DiscriminatorStep(config, placement)
    )
    return generator, discriminator


def training_step(
    step: int, data: TrainingSet, generator: GeneratorStep, discriminator: DiscriminatorStep
) -> dict[str, float]:
    """One step from the global RNG (seeded by the caller): draw a batch, synthesize, update both sides; the losses."""
    batch = discriminator.draw_batch(data)
    synthesis = generator.synthesize(batch)
    # the discriminator learns first; the generator's loss asks the updated one
    losses = discriminator.update(step, batch, synthesis)
    losses.update(generator.generator_step(batch, synthesis, discriminator))
    return losses


def run_train(
    config: TrainConfig, output: str | Path, resume: bool = False, progress: bool = True, stop_at: int | None = None
) -> Path:
    """Train; returns the path of ``generator.pt`` (or of ``checkpoint.pt`` when stopped early).

    Args:
        config: the run (:class:`TrainConfig`); ``output``: the run folder.
        resume: continue from ``output/checkpoint.pt`` exactly.
        progress: show a progress bar; ``stop_at``: see below.

    >>> from medsynth.config import load_config  # doctest: +SKIP
    >>> config = load_config(TrainConfig, "configs/gan_cpu.yaml", ["manifest=prepared/manifest.json"])  # doctest: +SKIP
    >>> run_train(config, "runs/gan")  # doctest: +SKIP
    PosixPath('runs/gan/generator.pt')

    ``stop_at`` ends this invocation after that step with a checkpoint (for time-boxed
    sessions; ``--resume`` continues it as if never stopped).
    """
    from tqdm import tqdm

    output = Path(output)
    rank, world = _distributed()
    placement = placement_for(config)
    device = placement.device
    data = load_training_set(config.manifest, config.splits, config.modalities)
    torch.manual_seed(config.seed)  # same initial weights on every rank
    generator, discriminator = build_steps(config, data, placement)
    checkpoint_path = output / "checkpoint.pt"
    state = _restore(config, output, resume, generator, discriminator, device)
    start = int(state["step"]) if state is not None else 0
    if config.privacy.enabled:
        from medsynth.models.privacy import PrivateDiscriminator

        discriminator = PrivateDiscriminator(
            config, data, discriminator, world, state.get("privacy_state") if resume else None
        )
    if world > 1:
        generator.distribute()
        discriminator.distribute()

    log_path = output / "log.csv"
    writer = _open_run(config, output, resume, start) if rank == 0 else None
    bar = tqdm(range(start, config.steps), desc=f"train {config.model}", disable=not progress or rank != 0)
    started = time.perf_counter()
    for step in bar:
        torch.manual_seed(step_seed(config.seed, rank, step))
        losses = training_step(step, data, generator, discriminator)
        if world > 1:
            losses = _mean_over_ranks(losses, device)
        done = step + 1
        if rank == 0:
            if done % config.log_every == 0 or done == config.steps:
                losses.update(discriminator.log_values())
                _log(log_path, writer, done, losses, time.perf_counter() - started)
                shown = ("g", "d", "reconstruction_l1", "epsilon")
                bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items() if k in shown})
            if done % config.preview_every == 0 or done == config.steps:
                _preview(output / "previews" / f"step_{done:06d}.png", generator, config, data, done)
            if done % config.checkpoint_every == 0 or done in (config.steps, stop_at):
                checkpoint.save(_training_state(done, config, data, generator, discriminator), checkpoint_path)
        if done == stop_at:
            break
    if writer is not None:
        writer.close()
    if stop_at is not None and stop_at < config.steps:
        if world > 1:
            torch.distributed.destroy_process_group()
        return checkpoint_path
    generator_path = output / "generator.pt"
    if rank == 0:
        checkpoint.save(
            {
                "step": config.steps,
                "state_dict": generator.network.state_dict(),
                **generator_metadata(config, data, discriminator.privacy_report()),
            },
            generator_path,
        )
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return generator_path


def _open_run(config: TrainConfig, output: Path, resume: bool, start: int) -> SummaryWriter | None:
    """Claim the run folder, write the config, open TensorBoard (if installed; returned) and the log at ``start``."""
    log_path = output / "log.csv"
    writer = None
    claim_output(output, "train", inputs=[config.manifest])
    save_config(config, output / "config.yaml")
    # one record per (re)start: a resumed run keeps the first run's record beside its own
    record = provenance("train", config=config, seed=config.seed, inputs=[config.manifest])
    write_json(record, output / ("provenance.json" if not resume else f"provenance_resume_{start}.json"))
    with contextlib.suppress(ImportError):
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(output / "tensorboard"), purge_step=start)
    if not resume:
        log_path.unlink(missing_ok=True)
    else:
        _truncate_log(log_path, start)
    return writer


def _restore(
    config: TrainConfig,
    output: Path,
    resume: bool,
    generator: GeneratorStep,
    discriminator: DiscriminatorStep,
    device: torch.device,
) -> dict[str, Any] | None:
    """With ``resume``, load ``checkpoint.pt`` into both steps and return it; else refuse a used folder."""
    checkpoint_path = output / "checkpoint.pt"
    if resume:
        if not checkpoint_path.is_file() and (output / "generator.pt").is_file():
            raise MedsynthError(
                f"{checkpoint_path}: not found; {output / 'generator.pt'} holds the finished generator only (no "
                "optimizer or discriminator state), which cannot resume training"
            )
        # refuses a generator-only file, a changed (checksum) or unsafe file, each in one line naming it
        state = checkpoint.load(checkpoint_path, map_location=device, expect="training")
        # defaults fill keys added since the checkpoint was written (e.g. privacy)
        saved_config = {**state["config"], "network": {**LEGACY_NETWORK, **state["config"].get("network", {})}}
        saved = to_dict(from_dict(TrainConfig, saved_config))
        if saved != {**to_dict(config), "steps": saved["steps"]}:
            raise MedsynthError(f"{checkpoint_path}: made with a different config; only `steps` may change on --resume")
        generator.network.load_state_dict(state["generator"])
        generator.optimizer.load_state_dict(state["opt_g"])
        generator.scheduler.load_state_dict(state["sched_g"])
        if discriminator.network is not None:
            discriminator.network.load_state_dict(state["discriminator"])
            discriminator.optimizer.load_state_dict(state["opt_d"])
            discriminator.scheduler.load_state_dict(state["sched_d"])
        return state
    elif checkpoint_path.exists():
        raise MedsynthError(f"{output} holds a checkpoint: pass --resume to continue it or choose another folder")
    elif (output / "generator.pt").exists():
        raise MedsynthError(
            f"{output} holds a trained generator.pt (without checkpoint.pt it cannot be resumed); choose another folder"
        )
    return None


def _training_state(
    step: int, config: TrainConfig, data: TrainingSet, generator: GeneratorStep, discriminator: DiscriminatorStep
) -> dict[str, Any]:
    """Everything ``--resume`` needs, for ``checkpoint.pt``."""

    def state_of(part: Any) -> dict[str, Any] | None:
        return part.state_dict() if part is not None else None

    return {
        "step": step,
        "config": to_dict(config),
        "generator": generator.network.state_dict(),
        "discriminator": state_of(discriminator.network),
        "opt_g": generator.optimizer.state_dict(),
        "opt_d": state_of(discriminator.optimizer),
        "sched_g": generator.scheduler.state_dict(),
        "sched_d": state_of(discriminator.scheduler),
        "torch_rng": torch.get_rng_state(),
        "privacy_state": discriminator.privacy_state(),
        **generator_metadata(config, data, discriminator.privacy_report()),
    }


def _mean_over_ranks(losses: dict[str, float], device: torch.device) -> dict[str, float]:
    values = torch.tensor(list(losses.values()), device=device, dtype=torch.float64)
    torch.distributed.all_reduce(values)
    return {k: float(v) / torch.distributed.get_world_size() for k, v in zip(losses, values, strict=True)}


def _truncate_log(path: Path, step: int) -> None:
    """On resume, drop log rows after the checkpoint's step (they will be logged again)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if int(r["step"]) <= step)


def _log(path: Path, writer: SummaryWriter | None, step: int, losses: dict[str, float], seconds: float) -> None:
    row = {"step": step, **{k: f"{v:.6g}" for k, v in losses.items()}, "seconds": f"{seconds:.3f}"}
    new = not path.exists()
    with open(path, "a", newline="") as f:
        csv_writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            csv_writer.writeheader()
        csv_writer.writerow(row)
    if writer is not None:
        for key, value in losses.items():
            writer.add_scalar(f"privacy/{key}" if key == "epsilon" else f"loss/{key}", value, step)


@torch.no_grad()
def _preview(path: Path, generator: GeneratorStep, config: TrainConfig, data: TrainingSet, step: int) -> None:
    """Mid slices of the first training case: label map, every synthetic and real modality."""
    from medsynth.viz import case_tiles, save_grid, tumor_center

    device = generator.placement.device
    generator.network.eval()
    label_map = data.label_maps[:1].to(device)
    seg = one_hot(label_map)
    z = torch.randn(1, config.network.z_dim, generator=torch.Generator().manual_seed(0)).to(device)
    fake = (generator.decode(seg, z) * (label_map > 0).unsqueeze(1)).float().cpu().numpy()[0]
    generator.network.train()
    real = data.images[0].numpy()
    label = data.label_maps[0].numpy()
    center = tumor_center(label)
    tiles, columns = case_tiles(None, label, center=center)
    names = ["label map"]
    for index, modality in enumerate(data.modalities):
        for source, name in ((fake, "synthetic"), (real, "real")):
            tiles += case_tiles(source[index : index + 1], None, center=center)[0]
            names.append(f"{name} {modality}")
    save_grid(tiles, columns, path, title=f"{config.model} step {step}: {data.case_ids[0]}", row_names=names)
