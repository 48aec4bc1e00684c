"""Datasets and samplers that mix real and synthetic cases in any PyTorch/MONAI training loop::

from monai.data import DataLoader, list_data_collate
from medsynth.loaders import MixedDataset, MixedSampler, patch_transform, real_items, synthetic_items

real = real_items("prepared/manifest.json")                                       # train split
synthetic = synthetic_items("cohort", held_out_subjects={"pat0003", "pat0004"})  # refuses leaks
dataset = MixedDataset(real, synthetic, random_transform=patch_transform((64, 64, 64)), cache="memory")
sampler = MixedSampler(len(real), len(synthetic), synthetic_fraction=0.5, num_samples=200, seed=0)
loader = DataLoader(dataset, batch_size=2, sampler=sampler, num_workers=2, collate_fn=list_data_collate)
for epoch in range(10):
    sampler.set_epoch(epoch)
    for batch in loader:
        ...  # batch["image"], batch["label"]
"""

from medsynth.loaders.mixed import (
    FractionSchedule,
    LeakageError,
    MixedDataset,
    MixedSampler,
    label_map_items,
    load_transform,
    patch_transform,
    real_items,
    synthetic_items,
)
from medsynth.loaders.stream import SynthesisStream

__all__ = [
    "FractionSchedule",
    "LeakageError",
    "MixedDataset",
    "MixedSampler",
    "SynthesisStream",
    "label_map_items",
    "load_transform",
    "patch_transform",
    "real_items",
    "synthetic_items",
]
