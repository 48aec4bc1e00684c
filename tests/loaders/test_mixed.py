"""Mixed real/synthetic loading: fractions, schedules, determinism, workers, caches, leakage."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from monai.data import DataLoader, list_data_collate

from medsynth.loaders import (
    FractionSchedule,
    LeakageError,
    MixedDataset,
    MixedSampler,
    load_transform,
    patch_transform,
    real_items,
    synthetic_items,
)


@pytest.fixture(scope="module")
def items(prepared_phantoms, tiny_cohort):
    return real_items(prepared_phantoms), synthetic_items(tiny_cohort)


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.75, 1.0])
def test_fraction_over_many_draws(fraction):
    sampler = MixedSampler(3, 4, fraction, num_samples=20000, seed=0)
    synthetic = np.mean([index >= 3 for index, _ in sampler])
    assert abs(synthetic - fraction) < 0.015  # binomial sd at n=20000 is <= 0.0035


def test_exact_fraction_per_batch():
    sampler = MixedSampler(5, 5, 0.25, num_samples=64, batch_size=8, seed=1)
    draws = [index >= 5 for index, _ in sampler]
    assert all(sum(draws[i : i + 8]) == 2 for i in range(0, 64, 8))


@pytest.mark.parametrize(("fraction", "batch_size"), [(0.25, 2), (0.3, 4), (0.1, 1)])
def test_fractional_per_batch_counts_keep_the_fraction(fraction, batch_size):
    # 0.25 x batch 2 once rounded to 0 synthetic items per batch: a "25%" arm trained on real only
    sampler = MixedSampler(5, 5, fraction, num_samples=400 * batch_size, batch_size=batch_size, seed=0)
    draws = [index >= 5 for index, _ in sampler]
    per_batch = [sum(draws[i : i + batch_size]) for i in range(0, len(draws), batch_size)]
    assert np.mean(draws) == pytest.approx(fraction, abs=1 / len(draws))
    assert all(abs(n - fraction * batch_size) < 1 for n in per_batch)


def test_schedule_decays_and_every_item_is_visited():
    schedule = FractionSchedule(start=0.8, end=0.2, epochs=4)
    assert [round(schedule(e), 2) for e in range(5)] == [0.8, 0.6, 0.4, 0.2, 0.2]
    sampler = MixedSampler(3, 4, schedule, num_samples=4000, seed=0)
    fractions = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        indices = [index for index, _ in sampler]
        fractions.append(np.mean([i >= 3 for i in indices]))
        assert set(indices) == set(range(7))
    assert fractions == sorted(fractions, reverse=True)


def test_sampler_deterministic_per_seed_and_epoch():
    a, b, c = (MixedSampler(3, 4, 0.5, num_samples=50, seed=s) for s in (7, 7, 8))
    assert list(a) == list(b) != list(c)
    a.set_epoch(1)
    assert list(a) != list(b)


def test_leakage_refused(tiny_cohort, tmp_path):
    with pytest.raises(LeakageError, match="held-out"):
        synthetic_items(
            tiny_cohort, held_out_subjects={"brats_2013_pat0000_1", "brats_2013_pat0001_1", "brats_2013_pat0002_1"}
        )
    leaky = tmp_path / "leaky"
    shutil.copytree(tiny_cohort, leaky)
    provenance_path = next(leaky.rglob("provenance.json"))
    provenance = json.loads(provenance_path.read_text())
    provenance["split"] = "validation"
    provenance["label_map_record"]["tumor"]["split"] = "validation"
    provenance_path.write_text(json.dumps(provenance))
    with pytest.raises(LeakageError, match=provenance["case_id"]):
        synthetic_items(leaky)


def _batches(dataset, sampler, workers):
    loader = DataLoader(dataset, batch_size=2, sampler=sampler, num_workers=workers, collate_fn=list_data_collate)
    return [(batch["image"].clone(), batch["label"].clone()) for batch in loader]


@pytest.mark.parametrize("cache", ["none", "memory", "disk"])
def test_same_batches_with_and_without_workers(items, tmp_path, cache):
    real, synthetic = items
    dataset = MixedDataset(
        real,
        synthetic,
        transform=load_transform(tumor_labels=True),
        random_transform=patch_transform((16, 16, 16), num_samples=2),
        cache=cache,
        cache_dir=tmp_path / "c",
    )
    sampler = MixedSampler(len(real), len(synthetic), 0.5, num_samples=6, seed=3)
    serial = _batches(dataset, sampler, workers=0)
    parallel = _batches(dataset, sampler, workers=2)
    assert len(serial) == 3 and serial[0][0].shape == (4, 2, 16, 16, 16)
    for (a_image, a_label), (b_image, b_label) in zip(serial, parallel, strict=True):
        assert torch.equal(a_image, b_image) and torch.equal(a_label, b_label)
    assert set(torch.unique(torch.cat([label for _, label in serial])).tolist()) <= {0, 1, 2, 3}


def test_tumor_patches_for_real_and_synthetic(items):
    real, synthetic = items
    dataset = MixedDataset(
        real,
        synthetic,
        transform=load_transform(tumor_labels=True),
        random_transform=patch_transform((16, 16, 16), num_samples=8, tumor_ratio=1.0, num_classes=4),
    )
    for index in (0, len(real)):  # one real, one synthetic
        patches = dataset[(index, 0)]
        assert all(p["label"].max() > 0 for p in patches)


def test_synthesis_stream_in_workers(tiny_generator, prepared_phantoms):
    from medsynth.loaders.stream import SynthesisStream

    def make():
        return SynthesisStream(
            tiny_generator,
            [prepared_phantoms],
            random_transform=patch_transform((16, 16, 16), num_classes=4),
            uses_per_case=3,
            cache_size=2,
            cases_per_epoch=2,
            seed=5,
            tumor_labels=True,
        )

    items = list(make())
    assert len(items) == 6  # 2 cases x 3 uses
    assert items[0]["image"].shape == (2, 16, 16, 16)
    again = list(make())
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(items, again, strict=True))
    loader = DataLoader(make(), batch_size=3, num_workers=2, collate_fn=list_data_collate)
    batches = list(loader)
    assert sum(b["image"].shape[0] for b in batches) == 12  # each worker streams its own cases
    with pytest.raises(LeakageError, match="trained on held-out"):
        SynthesisStream(tiny_generator, [prepared_phantoms], held_out_subjects={"brats_2013_pat0000_1"})
