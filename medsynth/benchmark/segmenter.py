"""The benchmark's segmenter: MONAI SegResNet trained region-based (WT, TC, ET sigmoid outputs).

Every arm trains the same network with the same recipe (steps, patch size, batch size,
AdamW with nnU-Net's polynomial learning-rate decay, DiceCE loss); only the training data
and, for the classical-augmentation arm, the augmentation differ.
"""

from __future__ import annotations

import contextlib
import csv
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from medsynth.benchmark.augment import RandLabelRenderd, RegionTargetd, classical_augmentation
from medsynth.benchmark.config import RENDERERS, ArmConfig, SegmenterConfig
from medsynth.loaders import MixedDataset, MixedSampler, patch_transform
from medsynth.runtime import autocast_dtype, select_device

if TYPE_CHECKING:
    from monai.transforms import Compose


def build_segmenter(config: SegmenterConfig, in_channels: int) -> torch.nn.Module:
    """SegResNet (Myronenko 2018, MONAI) with 3 outputs: whole tumor, tumor core, enhancing tumor."""
    from monai.networks.nets import SegResNet

    return SegResNet(spatial_dims=3, in_channels=in_channels, out_channels=3, init_filters=config.init_filters)


def train_transform(arm: ArmConfig, config: SegmenterConfig) -> Compose:
    """Shared crop (tumor-aware) + left-right flip, the arm's extras, then the region target."""
    from monai.transforms import Compose

    transforms = [patch_transform(config.patch_size, tumor_ratio=config.tumor_ratio)]
    if arm.synthetic in RENDERERS:
        transforms.append(RandLabelRenderd("image", "label", sources=(arm.synthetic,)))
    if arm.classical:
        transforms += classical_augmentation()
    transforms.append(RegionTargetd("label"))
    return Compose(transforms)


def _autocast(config: SegmenterConfig, device: torch.device) -> contextlib.AbstractContextManager:
    dtype = autocast_dtype(config.precision, device)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def train_segmenter(
    dataset: MixedDataset,
    fraction: float,
    config: SegmenterConfig,
    seed: int,
    log_path: Path | None = None,
    progress: bool = True,
    description: str = "train",
) -> tuple[torch.nn.Module, dict[str, float]]:
    """Train one segmenter on ``dataset`` (``fraction`` of every batch synthetic); returns it and timings."""
    from monai.data import DataLoader, list_data_collate
    from monai.losses import DiceCELoss
    from tqdm import tqdm

    torch.manual_seed(seed)
    device = select_device(config.device)
    in_channels = int(dataset.base[0]["image"].shape[0])  # deterministic part: no random crop
    model = build_segmenter(config, in_channels).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    sampler = MixedSampler(
        dataset.n_real,
        dataset.n_synthetic,
        fraction,
        num_samples=config.steps * config.batch_size,
        batch_size=config.batch_size,
        seed=seed,
    )
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=config.num_workers,
        collate_fn=list_data_collate,
        persistent_workers=False,
    )
    loss_fn = DiceCELoss(sigmoid=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (1 - step / config.steps) ** 0.9)
    losses = []
    wait = 0.0
    started = time.perf_counter()
    model.train()
    bar = tqdm(total=config.steps, desc=description, unit="step", disable=not progress, leave=False)
    fetched = time.perf_counter()
    for batch in loader:
        wait += time.perf_counter() - fetched
        images = batch["image"].to(device)
        targets = batch["label"].to(device)
        if config.channels_last:
            images = images.contiguous(memory_format=torch.channels_last_3d)
        with _autocast(config, device):
            logits = model(images)
        loss = loss_fn(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.detach().item())
        bar.update()
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        fetched = time.perf_counter()
    bar.close()
    seconds = time.perf_counter() - started
    if log_path is not None:
        with open(log_path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["step", "loss"])
            writer.writerows((i + 1, f"{v:.5f}") for i, v in enumerate(losses))
    tail = losses[-max(1, len(losses) // 10) :]
    return model, {
        "train_seconds": round(seconds, 2),
        "loader_wait_seconds": round(wait, 2),
        "steps": len(losses),
        "final_loss": round(float(np.mean(tail)), 5),
    }


@torch.no_grad()
def predict(model: torch.nn.Module, image: np.ndarray, config: SegmenterConfig) -> np.ndarray:
    """Sliding-window sigmoid probabilities ``(3, X, Y, Z)`` (WT, TC, ET) for one ``(C, X, Y, Z)`` image."""
    from monai.inferers import sliding_window_inference

    device = next(model.parameters()).device
    model.eval()
    inputs = torch.as_tensor(np.asarray(image, dtype=np.float32))[None].to(device)
    with _autocast(config, device):
        logits = sliding_window_inference(
            inputs, config.patch_size, sw_batch_size=2, predictor=model, overlap=config.sw_overlap, mode="gaussian"
        )
    return torch.sigmoid(logits.float())[0].cpu().numpy()


def regions_to_labels(probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """WT/TC/ET probabilities -> a BraTS 2023 label map (1 NETC, 2 SNFH, 3 ET), nnU-Net's rule.

    Regions are written from the largest to the smallest, so each later one overwrites:
    WT -> 2 (SNFH), then TC -> 1 (NETC), then ET -> 3.

    >>> import numpy as np
    >>> p = np.array([[0.9, 0.9, 0.9, 0.1], [0.1, 0.8, 0.8, 0.1], [0.1, 0.1, 0.7, 0.1]])
    >>> regions_to_labels(p).tolist()
    [2, 1, 3, 0]
    """
    seg = np.zeros(probabilities.shape[1:], dtype=np.uint8)
    for channel, value in ((0, 2), (1, 1), (2, 3)):
        seg[probabilities[channel] > threshold] = value
    return seg
