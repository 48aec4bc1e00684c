"""On-the-fly synthesis: new cases made inside the data loader, no files written.

Each worker loads its own generator and label-map sampler, makes a case, and serves
``uses_per_case`` random draws (e.g. patches) from it before making the next, holding at
most ``cache_size`` cases (a bounded cache). Cases are a function of (seed, epoch, worker,
case number), so a run is reproducible for a fixed number of workers.

On CPU use worker processes; with the generator on a GPU use ``num_workers=0`` (CUDA
cannot be used in forked workers) and the main process synthesizes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medsynth.loaders.mixed import LeakageError, _seed

if TYPE_CHECKING:
    from monai.transforms import Transform


class SynthesisStream(torch.utils.data.IterableDataset):
    """An endless (or ``cases_per_epoch``-long) stream of synthetic training items.

    Args:
        generator: ``generator.pt``/``checkpoint.pt`` path.
        label_sources: prepared manifests whose *train* tumors and anatomies make label maps.
        healthy: prepared manifests of healthy anatomies.
        random_transform: applied to each draw (e.g. :func:`~medsynth.loaders.patch_transform`).
        uses_per_case: draws served from one synthetic case before it is evicted.
        cache_size: synthetic cases held at once (draws rotate over them).
        cases_per_epoch: cases made per epoch and worker (``None``: endless).
        seed: seed of every label map and synthesis (with the epoch and worker number).
        held_out_subjects: refuse a generator trained on any of them.
        tumor_labels: map the label map to 0/1 NETC/2 SNFH/3 ET as :func:`load_transform` does.
        device: where the generator runs (``"auto"``, ``"cpu"``, ``"cuda"``).

    Needs a prepared manifest (``medsynth prepare``), hence not run as a doctest:

    >>> import medsynth
    >>> stream = SynthesisStream(medsynth.pretrained("gan"), ["prepared/manifest.json"])  # doctest: +SKIP
    >>> item = next(iter(stream))  # doctest: +SKIP
    >>> sorted(item)  # doctest: +SKIP
    ['image', 'label', 'source']
    """

    def __init__(
        self,
        generator: str | Path,
        label_sources: list[str | Path],
        healthy: list[str | Path] | None = None,
        random_transform: Transform | None = None,
        uses_per_case: int = 4,
        cache_size: int = 2,
        cases_per_epoch: int | None = None,
        seed: int = 0,
        held_out_subjects: set[str] | None = None,
        tumor_labels: bool = False,
        device: str = "auto",
    ) -> None:
        from medsynth.models import checkpoint

        state = checkpoint.load(generator)
        leaked = sorted(set(state.get("training", {}).get("cases", [])) & set(held_out_subjects or ()))
        if leaked:
            raise LeakageError(f"{generator}: the generator was trained on held-out subjects {leaked}")
        self.generator_path = Path(generator)
        self.label_sources, self.healthy = list(label_sources), list(healthy or [])
        self.random_transform = random_transform
        self.uses_per_case, self.cache_size = uses_per_case, cache_size
        self.cases_per_epoch, self.seed, self.epoch = cases_per_epoch, seed, 0
        self.tumor_labels, self.device = tumor_labels, device
        self._state: tuple[Any, Any] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _load(self) -> tuple[Any, Any]:
        if self._state is None:
            import medsynth
            from medsynth.labels.generate import LabelConfig, LabelMapSampler
            from medsynth.labels.sources import check_same_grid, read_sources

            anatomies, tumors = read_sources(self.label_sources, splits=("train",))
            if self.healthy:
                anatomies += read_sources(self.healthy, healthy=True)[0]
                check_same_grid(anatomies)
            self._state = (
                medsynth.load_generator(self.generator_path, device=self.device),
                LabelMapSampler(anatomies, tumors, LabelConfig()),
            )
        return self._state

    def _case(self, worker: int, number: int) -> dict[str, torch.Tensor]:
        from medsynth.data.scheme import ET, NETC, SNFH

        generator, sampler = self._load()
        case_seed = _seed(self.seed, self.epoch, worker, number)
        label_map, _, _ = sampler.sample(number, case_seed)
        images = generator.synthesize(label_map, seed=case_seed).images
        label = label_map.astype(np.int64)
        if self.tumor_labels:
            table = np.zeros(16, np.int64)
            table[NETC], table[SNFH], table[ET] = 1, 2, 3
            label = table[label]
        return {"image": torch.from_numpy(images), "label": torch.from_numpy(label[None]), "source": "synthetic"}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        import copy

        info = torch.utils.data.get_worker_info()
        worker = info.id if info else 0
        cache: deque[list[Any]] = deque()  # [case, uses left]
        number = 0
        draw = 0
        while self.cases_per_epoch is None or number < self.cases_per_epoch or cache:
            while len(cache) < self.cache_size and (self.cases_per_epoch is None or number < self.cases_per_epoch):
                cache.append([self._case(worker, number), self.uses_per_case])
                number += 1
            entry = cache[0]
            cache.rotate(-1)  # round-robin over the cached cases; this one is now last
            entry[1] -= 1
            if entry[1] <= 0:
                cache.pop()
            item = dict(entry[0])
            if self.random_transform is not None:
                transform = copy.deepcopy(self.random_transform)
                transform.set_random_state(seed=_seed(self.seed, self.epoch, worker, 10**6 + draw))
                item = transform(item)
            draw += 1
            # croppers return a list of num_samples patches
            yield from item if isinstance(item, list) else [item]
