"""``medsynth train``: train the conditional GAN or VAE on a prepared manifest.

    $ medsynth train --config configs/gan_cpu.yaml -o runs/gan
    $ medsynth train --config configs/gan_cpu.yaml -o runs/gan --resume        # continue exactly
    $ torchrun --nproc_per_node 2 -m medsynth.cli train --config configs/gan_cpu.yaml -o runs/gan_ddp
    $ medsynth train --config configs/gan_dp_cpu.yaml -o runs/gan_dp     # DP-SGD (medsynth.models.privacy)

Every step seeds torch from (seed, rank, step), so data order, noise and the VAE's sampling
are a function of the step alone: a resumed run reproduces the losses of an uninterrupted
one without saving any data-loader state.

Outputs: ``config.yaml``, ``checkpoint.pt`` (everything, for --resume), ``generator.pt``
(what synthesis needs), ``log.csv``, ``tensorboard/``, ``previews/step_NNNNNN.png``.
"""

from __future__ import annotations

import contextlib
import csv
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsynth import __version__
from medsynth.config import from_dict, save_config, to_dict
from medsynth.data.scheme import NUM_CLASSES
from medsynth.errors import MedsynthError
from medsynth.models import checkpoint
from medsynth.models.config import TrainConfig
from medsynth.models.data import TrainingSet, draw_batch, load_training_set, one_hot
from medsynth.models.losses import (
    class_balanced_weights,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    gradient_penalty,
    interpolate,
    kl_divergence,
    masked_l1,
    mode_seeking_loss,
)
from medsynth.models.networks import MultiScaleDiscriminator, build_generator


def select_device(name: str = "auto") -> torch.device:
    """CUDA when present (the local rank's GPU under torchrun), else CPU."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def cpu_has_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(precision: str, device: torch.device, cpu_auto: torch.dtype | None = None) -> torch.dtype | None:
    """The autocast dtype: bf16 when asked or on CUDA; for ``auto`` on CPU, ``cpu_auto`` (fp32 if None)."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    if precision == "auto" and device.type == "cpu":
        return cpu_auto
    return None


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend=backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def step_seed(seed: int, rank: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def _linear_decay(total: int, start_fraction: float):
    start = int(total * start_fraction)
    return lambda step: 1.0 if step < start else max(0.0, 1 - (step - start) / max(total - start, 1))


def generator_metadata(config: TrainConfig, data: TrainingSet, privacy: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``load_generator`` needs besides the weights; ``privacy``: the DP record, if trained with DP."""
    return {
        "kind": config.model,
        "network": to_dict(config.network),
        "modalities": data.modalities,
        "grid": list(data.grid),
        "spacing_mm": list(data.spacing_mm),
        "label_channels": NUM_CLASSES,
        "training": {
            "manifest": str(Path(config.manifest).resolve()),
            "cases": data.case_ids,
            "medsynth": __version__,
            **({"privacy": privacy} if privacy is not None else {}),
        },
    }


def train(
    config: TrainConfig, output: str | Path, resume: bool = False, progress: bool = True, stop_at: int | None = None
) -> Path:
    """Train; returns the path of ``generator.pt`` (or of ``checkpoint.pt`` when stopped early).

    ``stop_at`` ends this invocation after that step with a checkpoint (for time-boxed
    sessions; ``--resume`` continues it as if never stopped).
    """
    from tqdm import tqdm

    output = Path(output)
    rank, world = _distributed()
    device = select_device(config.device)
    # bf16 on CPUs with native bf16: GAN step 2.4x, VAE step 3.5x faster, same losses and per-class
    # intensities (reports/performance.md). Without native bf16 it emulates and is far slower.
    dtype = autocast_dtype(config.precision, device, cpu_auto=torch.bfloat16 if cpu_has_bf16() else None)
    data = load_training_set(config.manifest, config.splits)
    n_channels = len(data.modalities)
    torch.manual_seed(config.seed)  # same initial weights on every rank
    generator = build_generator(config.model, config.network, n_channels, NUM_CLASSES, data.grid).to(device)
    use_discriminator = config.model == "gan" or config.loss.adversarial_weight > 0
    discriminator = (
        MultiScaleDiscriminator(n_channels + NUM_CLASSES, config.network).to(device) if use_discriminator else None
    )
    memory_format = torch.channels_last_3d if config.channels_last else torch.contiguous_format
    generator = generator.to(memory_format=memory_format)
    if discriminator is not None:
        discriminator = discriminator.to(memory_format=memory_format)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr_generator, betas=config.betas)
    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, _linear_decay(config.steps, config.lr_decay_start))
    opt_d = sched_d = None
    if discriminator is not None:
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_discriminator, betas=config.betas)
        sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, _linear_decay(config.steps, config.lr_decay_start))

    start = 0
    checkpoint_path = output / "checkpoint.pt"
    if resume:
        state = checkpoint.load(checkpoint_path, map_location=device)
        # defaults fill keys added since the checkpoint was written (e.g. privacy)
        saved = to_dict(from_dict(TrainConfig, state["config"]))
        if saved != {**to_dict(config), "steps": saved["steps"]}:
            raise MedsynthError(f"{checkpoint_path}: made with a different config; only `steps` may change on --resume")
        generator.load_state_dict(state["generator"])
        opt_g.load_state_dict(state["opt_g"])
        sched_g.load_state_dict(state["sched_g"])
        if discriminator is not None:
            discriminator.load_state_dict(state["discriminator"])
            opt_d.load_state_dict(state["opt_d"])
            sched_d.load_state_dict(state["sched_d"])
        start = int(state["step"])
    elif checkpoint_path.exists():
        raise MedsynthError(f"{output} holds a checkpoint: pass --resume to continue it or choose another folder")

    dp = None
    if config.privacy.enabled:
        from medsynth.models.privacy import PrivateDiscriminator

        dp = PrivateDiscriminator(
            config, data, discriminator, opt_d, device, world, state.get("privacy_state") if resume else None
        )
    g_model, d_model = generator, discriminator
    if world > 1:
        g_model = torch.nn.parallel.DistributedDataParallel(generator)
        if discriminator is not None:
            d_model = torch.nn.parallel.DistributedDataParallel(discriminator)

    log_path = output / "log.csv"
    writer = None
    if rank == 0:
        output.mkdir(parents=True, exist_ok=True)
        save_config(config, output / "config.yaml")
        with contextlib.suppress(ImportError):
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(output / "tensorboard"), purge_step=start)
        if not resume:
            log_path.unlink(missing_ok=True)
        else:
            _truncate_log(log_path, start)
    loss_cfg = config.loss
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype is not None else contextlib.nullcontext
    bar = tqdm(range(start, config.steps), desc=f"train {config.model}", disable=not progress or rank != 0)
    started = time.perf_counter()
    for step in bar:
        torch.manual_seed(step_seed(config.seed, rank, step))
        if dp is None:
            images, label_maps = draw_batch(data, config.batch_size, config.flip_probability, torch.default_generator)
            images = images.to(device).contiguous(memory_format=memory_format)
        else:
            # under DP the generator sees no real image, only conditioning label maps drawn
            # independently of the discriminator's private batch
            images, label_maps = None, dp.draw_label_maps(config.batch_size, config.flip_probability)
        label_maps = label_maps.to(device)
        seg = one_hot(label_maps).contiguous(memory_format=memory_format)
        brain = (label_maps > 0).unsqueeze(1).float()
        losses: dict[str, float] = {}
        prior = None

        with autocast():
            if config.model == "gan" and loss_cfg.diversity_weight > 0:
                # one forward over two noise draws per label map (one DDP forward per backward)
                batch = label_maps.shape[0]
                noise = torch.randn(2 * batch, config.network.z_dim, device=device)
                both = g_model(torch.cat([seg, seg]), noise) * torch.cat([brain, brain])
                fake, draws = both[:batch], (both[:batch], both[batch:])
            elif config.model == "gan":
                noise = torch.randn(label_maps.shape[0], config.network.z_dim, device=device)
                fake = g_model(seg, noise) * brain
            elif loss_cfg.diversity_weight > 0:
                # VAE-GAN with a prior branch: two prior draws per label map, pushed apart by mode seeking;
                # the first is trained like the GAN's noise draw (L1, feature matching, discriminator).
                # Without the L1 (BicycleGAN's cLR-GAN), the discriminator won and the draws diverged.
                batch = label_maps.shape[0]
                noise = torch.randn(2 * batch, config.network.z_dim, device=device)
                fake, mu, logvar, prior = g_model(seg, images, noise)
                fake, prior = fake * brain, prior * torch.cat([brain, brain])
                draws = (prior[:batch], prior[batch:])
            else:
                fake, mu, logvar = g_model(seg, images)
                fake = fake * brain
        # what the losses against the real image judge: the synthesis, and the VAE's first prior draw
        judged = torch.cat([fake, prior[: fake.shape[0]]]) if prior is not None else fake
        copies = judged.shape[0] // seg.shape[0]
        judged_seg = seg.repeat(copies, 1, 1, 1, 1)

        if dp is not None:
            losses["d"] = dp.discriminator_step(step, fake, seg, memory_format)
            sched_d.step()
        elif d_model is not None:
            # one discriminator pass over real, fake (and WGAN-GP interpolates): DDP expects one
            # forward per backward
            real_input, fake_input = torch.cat([images, seg], 1), torch.cat([judged.detach(), judged_seg], 1)
            inputs = [real_input, fake_input]
            if loss_cfg.adversarial == "wgan-gp":
                inputs.append(interpolate(real_input, fake_input[: real_input.shape[0]]))
            with autocast():
                logits, _ = d_model(torch.cat(inputs, 0))
            parts = [logit.split([len(i) for i in inputs], 0) for logit in logits]
            d_loss = discriminator_loss(loss_cfg.adversarial, [p[0] for p in parts], [p[1] for p in parts])
            if loss_cfg.adversarial == "wgan-gp":
                penalty = gradient_penalty([p[2] for p in parts], inputs[2])
                d_loss = d_loss + loss_cfg.gradient_penalty_weight * penalty
                losses["gradient_penalty"] = penalty.item()
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            sched_d.step()
            losses["d"] = d_loss.item()

        with autocast():
            g_loss = 0.0
            if images is not None:
                weights = brain
                if loss_cfg.class_balance:
                    weights = class_balanced_weights(label_maps, loss_cfg.class_balance)
                target, weights = images.repeat(copies, 1, 1, 1, 1), weights.repeat(copies, 1, 1, 1, 1)
                g_loss = loss_cfg.reconstruction_weight * masked_l1(judged, target, weights)
                losses["reconstruction_l1"] = masked_l1(fake.detach(), images, brain).item()
            if loss_cfg.diversity_weight > 0:
                seeking = mode_seeking_loss(*draws, noise[:batch], noise[batch:])
                g_loss = g_loss + loss_cfg.diversity_weight * seeking
                losses["mode_seeking"] = seeking.item()
            if config.model == "vae":
                kl = kl_divergence(mu.float(), logvar.float())
                g_loss = g_loss + loss_cfg.kl_weight * kl
                losses["kl"] = kl.item()
            if d_model is not None:
                fake_logits, fake_features = d_model(torch.cat([judged, judged_seg], 1))
                adversarial = generator_adversarial_loss(loss_cfg.adversarial, fake_logits)
                g_loss = g_loss + loss_cfg.adversarial_weight * adversarial
                losses["g_adversarial"] = adversarial.item()
                if loss_cfg.feature_matching_weight > 0:
                    with torch.no_grad():
                        _, real_features = d_model(torch.cat([images, seg], 1))
                    real_features = [f.repeat(copies, *([1] * (f.ndim - 1))) for f in real_features]
                    matching = feature_matching_loss(real_features, fake_features)
                    g_loss = g_loss + loss_cfg.feature_matching_weight * matching
                    losses["feature_matching"] = matching.item()
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        sched_g.step()
        losses["g"] = g_loss.item()

        if world > 1:
            losses = _mean_over_ranks(losses, device)
        done = step + 1
        if rank == 0:
            if done % config.log_every == 0 or done == config.steps:
                if dp is not None:
                    losses["epsilon"] = dp.epsilon()
                _log(log_path, writer, done, losses, time.perf_counter() - started)
                shown = ("g", "d", "reconstruction_l1", "epsilon")
                bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items() if k in shown})
            if done % config.preview_every == 0 or done == config.steps:
                _preview(output / "previews" / f"step_{done:06d}.png", generator, config, data, device, done)
            if done % config.checkpoint_every == 0 or done in (config.steps, stop_at):
                checkpoint.save(
                    {
                        "step": done,
                        "config": to_dict(config),
                        "generator": generator.state_dict(),
                        "discriminator": discriminator.state_dict() if discriminator is not None else None,
                        "opt_g": opt_g.state_dict(),
                        "opt_d": opt_d.state_dict() if opt_d is not None else None,
                        "sched_g": sched_g.state_dict(),
                        "sched_d": sched_d.state_dict() if sched_d is not None else None,
                        "torch_rng": torch.get_rng_state(),
                        "privacy_state": dp.state() if dp is not None else None,
                        **generator_metadata(config, data, dp.report() if dp is not None else None),
                    },
                    checkpoint_path,
                )
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
                "state_dict": generator.state_dict(),
                **generator_metadata(config, data, dp.report() if dp is not None else None),
            },
            generator_path,
        )
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return generator_path


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


def _log(path: Path, writer, step: int, losses: dict[str, float], seconds: float) -> None:
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
def _preview(path: Path, generator, config: TrainConfig, data: TrainingSet, device, step: int) -> None:
    """Mid slices of the first training case: label map, every synthetic and real modality."""
    from medsynth.viz import case_tiles, save_grid

    generator.eval()
    from medsynth.viz import tumor_center

    label_map = data.label_maps[:1].to(device)
    seg = one_hot(label_map)
    z = torch.randn(1, config.network.z_dim, generator=torch.Generator().manual_seed(0)).to(device)
    decoder = generator.decode if config.model == "vae" else generator
    fake = (decoder(seg, z) * (label_map > 0).unsqueeze(1)).float().cpu().numpy()[0]
    generator.train()
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
