"""Loader throughput: medsynth's mixed loader (files and on-the-fly) vs MONAI CacheDataset and TorchIO Queue.

    $ make demo && .venv/bin/pip install torchio && .venv/bin/python scripts/bench_loaders.py

Same data (the demo's prepared training subjects + its VAE cohort), same patch size, batch
size and worker count for every loader, in one run. For each: samples/s with no training,
and the time a trainer waits for the next batch when each step costs ``--step-seconds`` of
compute (a matrix multiply loop, so the loader competes for the cores as in real training).
Ratios are against MONAI CacheDataset + DataLoader.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from monai.data import CacheDataset, DataLoader, list_data_collate

import medsynth
from medsynth.loaders import (
    MixedDataset,
    MixedSampler,
    SynthesisStream,
    load_transform,
    patch_transform,
    real_items,
    synthetic_items,
)


def busy(seconds: float) -> None:
    a = torch.randn(256, 256)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        a = torch.tanh(a @ a / 256)


def measure(loader, batches: int, step_seconds: float, warmup: int = 2) -> tuple[float, float]:
    """(samples per second without training, mean wait per batch with a simulated step)."""
    iterator = iter(loader)
    for _ in range(warmup):
        next(iterator)
    started, samples = time.perf_counter(), 0
    for _ in range(batches):
        samples += next(iterator)["image"].shape[0]
    rate = samples / (time.perf_counter() - started)
    waits = []
    for _ in range(batches):
        t = time.perf_counter()
        next(iterator)
        waits.append(time.perf_counter() - t)
        busy(step_seconds)
    return rate, sum(waits) / len(waits)


def forever(loader_factory):
    """Endless iteration over an epoch-based loader (re-creating iterators)."""

    class Endless:
        def __iter__(self):
            while True:
                yield from loader_factory()

    return Endless()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", default="runs/demo/prepared/brats2013/manifest.json")
    parser.add_argument("--cohort", default="runs/demo/cohort_vae")
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--step-seconds", type=float, default=0.5)
    args = parser.parse_args()
    patch = (args.patch,) * 3
    real, synthetic = real_items(args.manifest), synthetic_items(args.cohort)
    transform = load_transform(tumor_labels=True)
    crop = patch_transform(patch, num_samples=1, num_classes=4)
    common = {"batch_size": args.batch_size, "num_workers": args.workers, "collate_fn": list_data_collate}
    results = {}

    from monai.transforms import Compose

    # flat Compose: CacheDataset caches up to the first Randomizable, and a nested Compose counts as one
    monai_ds = CacheDataset(
        [*real, *synthetic], Compose([*transform.transforms, *crop.transforms]), num_workers=0, progress=False
    )
    results["MONAI CacheDataset"] = measure(
        forever(lambda: DataLoader(monai_ds, shuffle=True, persistent_workers=False, **common)),
        args.batches,
        args.step_seconds,
    )
    mixed = MixedDataset(real, synthetic, transform=transform, random_transform=crop, cache="memory")
    sampler = MixedSampler(len(real), len(synthetic), 0.5, num_samples=10_000, seed=0)
    results["medsynth MixedDataset (files)"] = measure(
        DataLoader(mixed, sampler=sampler, **common), args.batches, args.step_seconds
    )
    stream = SynthesisStream(
        medsynth.pretrained("vae"),
        [args.manifest],
        random_transform=crop,
        uses_per_case=4,
        cache_size=2,
        tumor_labels=True,
    )
    results["medsynth SynthesisStream (on the fly)"] = measure(
        DataLoader(stream, **common), args.batches, args.step_seconds
    )
    try:
        import torchio as tio

        subjects = [
            tio.Subject(image=tio.ScalarImage(item["image"]), label=tio.LabelMap(item["label"]))
            for item in [*real, *synthetic]
        ]
        queue = tio.Queue(
            tio.SubjectsDataset(subjects),
            max_length=16,
            samples_per_volume=4,
            sampler=tio.LabelSampler(patch, label_name="label"),
            num_workers=args.workers,
        )

        def collate(batch):
            return {"image": torch.stack([b["image"][tio.DATA] for b in batch])}

        results["TorchIO Queue"] = measure(
            forever(
                lambda: torch.utils.data.DataLoader(
                    queue, batch_size=args.batch_size, num_workers=0, collate_fn=collate
                )
            ),
            args.batches,
            args.step_seconds,
        )
    except ImportError:
        print("torchio not installed: skipping its Queue (pip install torchio)")

    base_rate, base_wait = results["MONAI CacheDataset"]
    print(
        f"# loaders, patch {args.patch}^3, batch {args.batch_size}, {args.workers} workers, "
        f"{platform.machine()} {os.cpu_count()} cores, simulated step {args.step_seconds} s"
    )
    print("| loader | samples/s | x MONAI | wait per batch (s) | x MONAI |")
    print("| --- | --- | --- | --- | --- |")
    for name, (rate, wait) in results.items():
        print(f"| {name} | {rate:.2f} | {rate / base_rate:.2f} | {wait:.3f} | {wait / max(base_wait, 1e-9):.2f} |")


if __name__ == "__main__":
    main()
