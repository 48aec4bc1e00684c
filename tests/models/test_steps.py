"""The training step objects: the log's columns, what each family judges, a new family plugs in."""

from __future__ import annotations

import csv

import pytest
import torch

from medsynth.config import from_dict
from medsynth.data.scheme import MODEL_CLASSES
from medsynth.models.config import TrainConfig
from medsynth.models.steps import (
    GENERATOR_STEPS,
    Batch,
    DiscriminatorStep,
    GanStep,
    LossTerm,
    Placement,
    Synthesis,
    VaeStep,
)
from medsynth.models.train import run_train

TINY_NET = {"channels": [4, 4, 8], "z_dim": 4, "spade_channels": 4, "d_channels": 4, "d_layers": 2, "d_scales": 2}
CPU = Placement(torch.device("cpu"))


def tiny(manifest, **overrides) -> TrainConfig:
    data = {"manifest": str(manifest), "network": TINY_NET, "steps": 2, "log_every": 1, "preview_every": 100}
    return from_dict(TrainConfig, {**data, **overrides})


def _header(path) -> list[str]:
    with open(path, newline="") as f:
        return next(csv.reader(f))


@pytest.mark.parametrize(
    ("model", "loss", "columns"),
    [
        ("gan", {}, "d reconstruction_l1 g_adversarial feature_matching g"),
        (
            "gan",
            {"adversarial": "wgan-gp", "diversity_weight": 0.3},
            "gradient_penalty d reconstruction_l1 mode_seeking g_adversarial feature_matching g",
        ),
        (
            "gan",
            {"augment": ["translation", "cutout", "intensity"]},
            "d reconstruction_l1 g_adversarial feature_matching g",
        ),
        ("vae", {"adversarial_weight": 0.0}, "reconstruction_l1 kl g"),
        ("vae", {"diversity_weight": 0.3}, "d reconstruction_l1 mode_seeking kl g_adversarial feature_matching g"),
        (
            "vae",
            {"diversity_weight": 0.3, "augment": ["translation", "cutout"]},  # two judged images per label map
            "d reconstruction_l1 mode_seeking kl g_adversarial feature_matching g",
        ),
    ],
)
def test_log_columns_follow_the_step(prepared_phantoms, tmp_path, model, loss, columns):
    """Discriminator losses, then the generator's terms in the order they are summed, then the total."""
    run_train(tiny(prepared_phantoms, model=model, loss=loss), tmp_path / "run", progress=False)
    header = _header(tmp_path / "run" / "log.csv")
    assert header[0] == "step" and header[-1] == "seconds"
    assert " ".join(header[1:-1]) == columns


@pytest.mark.parametrize(
    ("step", "loss", "copies", "draws"),
    [
        (GanStep, {}, 1, False),
        (GanStep, {"diversity_weight": 0.3}, 1, True),
        (VaeStep, {}, 1, False),
        (VaeStep, {"diversity_weight": 0.3}, 2, True),  # the reconstruction and the first prior draw
    ],
)
def test_what_each_family_judges(prepared_phantoms, step, loss, copies, draws):
    from medsynth.models.data import load_training_set

    config = tiny(prepared_phantoms, model="vae" if step is VaeStep else "gan", loss=loss, batch_size=2)
    data = load_training_set(config.manifest, config.splits)
    torch.manual_seed(0)
    generator = step(config, data, CPU)
    batch = DiscriminatorStep(config, CPU).draw_batch(data)
    synthesis = generator.synthesize(batch)
    assert synthesis.fake.shape == (2, len(data.modalities), *data.grid)
    assert synthesis.copies == copies and synthesis.judged.shape[0] == 2 * copies
    assert synthesis.judged_seg.shape == (2 * copies, MODEL_CLASSES, *data.grid)
    assert (synthesis.draws is not None) == draws
    background = synthesis.judged_seg[:, :1].expand_as(synthesis.judged) == 1
    assert torch.all(synthesis.judged[background] == 0)


def test_no_discriminator_draws_real_cases_and_judges_nothing(prepared_phantoms):
    from medsynth.models.data import load_training_set

    config = tiny(prepared_phantoms, model="vae", loss={"adversarial_weight": 0.0})
    data = load_training_set(config.manifest, config.splits)
    none = DiscriminatorStep(config, CPU)
    batch = none.draw_batch(data)
    assert isinstance(batch, Batch) and batch.images.shape == (1, len(data.modalities), *data.grid)
    fake = torch.zeros_like(batch.images)
    synthesis = Synthesis(fake, fake, batch.seg)
    assert none.update(0, batch, synthesis) == {} and none.generator_terms(batch, synthesis) == []
    assert none.privacy_state() is None and none.privacy_report() is None and none.log_values() == {}


class SmoothGan(GanStep):
    """A family that only adds a term: total variation along the first axis."""

    def family_terms(self, synthesis: Synthesis) -> list[LossTerm]:
        return [LossTerm("total_variation", 0.1, synthesis.fake.diff(dim=2).abs().mean())]


def test_a_new_family_is_a_step_class(prepared_phantoms, tmp_path, monkeypatch):
    monkeypatch.setitem(GENERATOR_STEPS, "gan", SmoothGan)
    run_train(tiny(prepared_phantoms), tmp_path / "run", progress=False)
    header = _header(tmp_path / "run" / "log.csv")
    assert header[1:-1] == ["d", "reconstruction_l1", "total_variation", "g_adversarial", "feature_matching", "g"]
