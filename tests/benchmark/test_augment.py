"""The arms' transforms: SynthSeg-style rendering, region targets, classical augmentation."""

import numpy as np
import torch

from medsynth.benchmark.augment import RandLabelRenderd, RegionTargetd, classical_augmentation


def label_map() -> torch.Tensor:
    label = torch.zeros(1, 24, 24, 24, dtype=torch.long)
    label[0, 2:22, 2:22, 2:22] = 2  # gm
    label[0, 5:19, 5:19, 5:19] = 3  # wm
    label[0, 8:14, 8:14, 8:14] = 5  # snfh
    label[0, 10:12, 10:12, 10:12] = 6  # et
    return label


def render(seed: int, source: str = "synthseg") -> torch.Tensor:
    transform = RandLabelRenderd("image", "label")
    transform.set_random_state(seed=seed)
    return transform({"image": torch.zeros(2, 24, 24, 24), "label": label_map(), "source": source})["image"]


def test_rendering_is_seeded_per_draw_and_varies_between_draws():
    torch.testing.assert_close(render(1), render(1))
    assert not torch.allclose(render(1), render(2))
    image, label = render(3), label_map()[0]
    assert image[:, label == 0].abs().max() == 0  # background stays 0, as in skull-stripped scans
    brain = image[:, label > 0]
    np.testing.assert_allclose(brain.mean(1), 0, atol=1e-4)  # z-scored inside the brain, per channel
    np.testing.assert_allclose(brain.std(1), 1, atol=1e-2)
    wm, snfh = image[0, label == 3].mean(), image[0, label == 5].mean()
    assert abs(wm - snfh) > 0.05  # labels get their own intensities


def test_rendering_touches_only_its_sources():
    real = torch.randn(2, 24, 24, 24)
    out = RandLabelRenderd("image", "label")({"image": real, "label": label_map(), "source": "real"})
    assert out["image"] is real


def test_region_targets_nest():
    target = RegionTargetd("label")({"label": label_map()})["label"]
    wt, tc, et = target.bool()
    assert target.shape == (3, 24, 24, 24)
    assert bool((et <= tc).all() and (tc <= wt).all())
    assert int(wt.sum()) == 6**3 and int(et.sum()) == 2**3 and int(tc.sum()) == 2**3  # TC = NETC + ET


def test_classical_augmentation_keeps_label_values():
    from monai.transforms import Compose

    transform = Compose(classical_augmentation())
    transform.set_random_state(seed=0)
    for _ in range(5):
        out = transform({"image": torch.randn(2, 24, 24, 24), "label": label_map().float()})
        assert set(torch.unique(out["label"]).tolist()) <= {0, 2, 3, 5, 6}
        assert out["image"].shape == (2, 24, 24, 24)
