"""``medsynth generate``: a synthetic cohort from a trained generator, one case at a time.

    $ medsynth generate --checkpoint medsynth/pretrained/vae_cpu.pt --n 50 --seed 0 -o cohort
    $ medsynth generate --checkpoint gen.pt --labels runs/labels -o cohort --shard 0/4   # 4 processes

Each case is written into a temporary folder and renamed into ``cases/<case_id>/`` when
complete, so a killed run leaves no partial case and a re-run skips finished ones. Memory
stays flat: one case is in memory at a time. Shards take the cases whose index modulo n
equals i; whichever run finds every case present writes the cohort files (manifest,
checksums, dataset card, preview).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medsynth import __version__
from medsynth.config import to_dict
from medsynth.data.manifest import load_manifest, manifest_cases
from medsynth.data.scheme import CANONICAL_TO_BRATS2021, CANONICAL_TO_BRATS2023, from_canonical
from medsynth.errors import MedsynthError
from medsynth.io import atomic_path, load_nifti, read_json, save_nifti, sha256, write_json

LABEL_CONVENTIONS = {"canonical": None, "brats2021": CANONICAL_TO_BRATS2021, "brats2023": CANONICAL_TO_BRATS2023}


@dataclass
class CohortStatus:
    written: int  # cases written by this run
    skipped: int  # cases of this shard already present
    present: int  # cases of the whole cohort present now
    total: int
    finalized: bool  # manifest, checksums and card written


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise MedsynthError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if not 0 <= index < count:
        raise MedsynthError(f"--shard {text!r}: need 0 <= i < n")
    return index, count


def _style_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index, 1]).generate_state(1)[0] % (2**31))


class _LabelSource:
    """Label maps of a cohort: read from a label-map manifest, or sampled on the fly."""

    def __init__(self, labels: Path | None, n: int | None, seed: int, sampler_args: dict[str, Any]) -> None:
        self.seed = seed
        self.sampler = None
        if labels is not None:
            manifest_path = labels / "manifest.json" if labels.is_dir() else labels
            self.cases = manifest_cases(load_manifest(manifest_path))
            if not self.cases:
                raise MedsynthError(f"{manifest_path}: no label maps")
            self.total = len(self.cases) if n is None else min(n, len(self.cases))
            self.description = {"label_maps": str(manifest_path.resolve())}
        else:
            if not n:
                raise MedsynthError("give --labels DIR or --n N")
            from medsynth.labels.generate import LabelMapSampler
            from medsynth.labels.sources import check_same_grid, read_sources

            anatomies, tumors = read_sources(sampler_args["sources"], splits=("train",))
            if sampler_args.get("healthy"):
                anatomies += read_sources(sampler_args["healthy"], healthy=True)[0]
                check_same_grid(anatomies)
            self.sampler = LabelMapSampler(anatomies, tumors, sampler_args["config"], sampler_args.get("reshape"))
            self.total = n
            self.description = {
                "label_maps": "sampled",
                "sources": [str(Path(p).resolve()) for p in sampler_args["sources"]],
                "healthy": [str(Path(p).resolve()) for p in sampler_args.get("healthy") or []],
                "label_config": to_dict(sampler_args["config"]),
                "reshape": to_dict(self.sampler.reshape),
            }

    def get(self, index: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        if self.sampler is not None:
            return self.sampler.sample(index, self.seed)
        case = self.cases[index]
        label_map, affine, _ = load_nifti(case.label, dtype=np.int16)
        record = case.record.get("record", {"label_map": str(case.label), "split": case.split})
        return label_map, affine, record


def _export_gate(output: Path, total: int, modalities, audit_against, allow_flagged: bool) -> dict[str, Any] | None:
    """Run the copy check before the cohort is published; refuse flagged cases unless allowed."""
    if audit_against is None:
        return None
    from medsynth.audit.run import copy_check_cohort

    folders = [output / "cases" / f"synth_{i:05d}" for i in range(total)]
    result = copy_check_cohort(audit_against, folders, modalities)
    if result["flagged"] and not allow_flagged:
        raise MedsynthError(
            f"{output}: copy check flagged {result['flagged']} as near-copies of training scans "
            f"(NCC >= {result['threshold_ncc']}); the cohort was not finalized. Remove those case folders and "
            "re-run to replace them, or pass --allow-flagged to publish anyway (recorded in provenance)"
        )
    for case_id in result["flagged"]:
        path = output / "cases" / case_id / "provenance.json"
        write_json({**read_json(path), "flagged_copy": True, "published_by": "--allow-flagged"}, path)
    return {"against": str(Path(audit_against).resolve()), **result}


def generate_cohort(
    checkpoint: str | Path,
    output: str | Path,
    labels: str | Path | None = None,
    n: int | None = None,
    seed: int = 0,
    shard: tuple[int, int] = (0, 1),
    spacing_mm: float | None = None,
    label_convention: str = "canonical",
    label_sources: list[str | Path] | None = None,
    healthy: list[str | Path] | None = None,
    label_config=None,
    reshape=None,
    audit_against: str | Path | None = None,
    allow_flagged: bool = False,
    progress: bool = True,
) -> CohortStatus:
    """Generate (this shard of) a cohort into ``output``; see the module docstring."""
    from tqdm import tqdm

    import medsynth
    from medsynth.labels.generate import LabelConfig

    if label_convention not in LABEL_CONVENTIONS:
        raise MedsynthError(f"label convention must be one of {list(LABEL_CONVENTIONS)}")
    checkpoint, output = Path(checkpoint), Path(output)
    generator = medsynth.load_generator(checkpoint)
    training_manifest = generator.training.get("manifest")
    sources = [Path(p) for p in (label_sources or ([training_manifest] if training_manifest else []))]
    if labels is None and not (sources and all(p.is_file() for p in sources)):
        raise MedsynthError(
            f"no label sources for --n: the generator's training manifest ({training_manifest}) is not on this "
            "machine; pass --from PREPARED_MANIFEST (e.g. runs/demo/prepared/brats2013/manifest.json after make demo)"
        )
    source = _LabelSource(
        Path(labels) if labels else None,
        n,
        seed,
        {"sources": sources, "healthy": healthy, "config": label_config or LabelConfig(), "reshape": reshape},
    )
    plan = {
        "format_version": 1,
        "generator": {
            "path": str(checkpoint.resolve()),
            "sha256": sha256(checkpoint),
            "kind": generator.kind,
            "modalities": generator.modalities,
            "spacing_mm": list(generator.spacing_mm),
            "training": generator.training,
        },
        "n": source.total,
        "seed": seed,
        "spacing_mm": spacing_mm or list(generator.spacing_mm),
        "label_convention": label_convention,
        **source.description,
    }
    output.mkdir(parents=True, exist_ok=True)
    plan_path = output / "cohort_plan.json"
    if plan_path.exists():
        previous = read_json(plan_path)
        if previous != plan:
            changed = sorted(k for k in plan if previous.get(k) != plan[k])
            raise MedsynthError(f"{output} holds a different cohort (differs in {changed}); use another folder")
    else:
        write_json(plan, plan_path)

    shard_index, shard_count = shard
    indices = [i for i in range(source.total) if i % shard_count == shard_index]
    written = skipped = 0
    started = time.perf_counter()
    for index in tqdm(indices, desc=f"generate {shard_index}/{shard_count}", unit="case", disable=not progress):
        case_id = f"synth_{index:05d}"
        folder = output / "cases" / case_id
        if (folder / "provenance.json").exists():
            skipped += 1
            continue
        label_map, affine, record = source.get(index)
        style_seed = _style_seed(seed, index)
        images = generator.synthesize(label_map, seed=style_seed, affine=affine).images
        if spacing_mm:
            from medsynth.cohort.geometry import resample

            images, _ = resample(images, affine, spacing_mm, "bilinear")
            label_map, affine = resample(label_map, affine, spacing_mm, "nearest")
        with atomic_path(folder) as tmp:
            tmp.mkdir(parents=True)
            for channel, modality in zip(images, generator.modalities, strict=True):
                save_nifti(channel, affine, tmp / f"{case_id}_{modality}.nii.gz", dtype=np.float32)
            save_nifti(label_map, affine, tmp / f"{case_id}_label_map.nii.gz", dtype=np.int16)
            if LABEL_CONVENTIONS[label_convention]:
                seg = from_canonical(label_map, LABEL_CONVENTIONS[label_convention])
                save_nifti(seg, affine, tmp / f"{case_id}_seg.nii.gz", dtype=np.uint8)
            write_json(
                {
                    "case_id": case_id,
                    "index": index,
                    "cohort_seed": seed,
                    "style_seed": style_seed,
                    "generator_sha256": plan["generator"]["sha256"],
                    "generator_kind": generator.kind,
                    "label_map_record": record,
                    "split": record.get("split", "train"),
                    "medsynth": __version__,
                },
                tmp / "provenance.json",
            )
        written += 1
    present = sum((output / "cases" / f"synth_{i:05d}" / "provenance.json").exists() for i in range(source.total))
    finalized = present == source.total
    if finalized:
        from medsynth.cohort.finalize import finalize

        audit = _export_gate(output, source.total, generator.modalities, audit_against, allow_flagged)
        finalize(output, plan, seconds=time.perf_counter() - started, command=" ".join(sys.argv), audit=audit)
    return CohortStatus(written, skipped, present, source.total, finalized)
