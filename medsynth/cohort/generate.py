"""``medsynth generate``: a synthetic cohort from a trained generator, one case at a time.

    $ medsynth generate --checkpoint medsynth/pretrained/vae_cpu.pt --n 50 --seed 0 -o cohort
    $ medsynth generate --checkpoint gen.pt --labels runs/labels -o cohort --shard 0/4   # 4 processes

Each case is written into a hidden temporary folder and renamed into ``cases/<case_id>/``
when complete, so a killed run leaves no partial case and a re-run skips finished ones; the
re-run also deletes the hidden folders of killed (``kill -9``) runs on this host. The output
folder is claimed for ``generate`` (``.medsynth-output.json``, :func:`medsynth.io.claim_output`):
a folder holding anything else is refused. Memory stays flat: one case is in memory at a
time. Shards take the cases whose index modulo n equals i; whichever run finds every case
present writes the cohort files (manifest, checksums, dataset card, preview).

Refused before anything is written (one line, naming the file where one is involved): ``n``
< 1, a spacing that is not a positive finite number, a negative seed, a checkpoint that fails
its checksum or is not a generator, label maps whose spacing, orientation (from the affine)
or grid differ from the generator's. Each label map's values are checked before its case is
written: whole numbers of the canonical scheme 0..7 with some brain (not all 0).

With ``k_anonymity=K`` (``--k-anonymity K``) that same run then adds cases ``synth_NNNNN``
after the last requested one, drawn by the label-map sampler constrained to each group of
descriptive attributes with fewer than K members, until every populated group has K
(:mod:`medsynth.audit.anonymity`). The fill is sequential, deterministic and resumable: the
next case's target group follows from the cases already on disk.
"""

from __future__ import annotations

import math
import numbers
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medsynth import __version__
from medsynth.config import to_dict
from medsynth.data.scheme import CANONICAL_TO_BRATS2021, CANONICAL_TO_BRATS2023, from_canonical
from medsynth.errors import DataError, MedsynthError
from medsynth.io import (
    atomic_path,
    claim_output,
    load_nifti,
    read_json,
    remove_stale_temporaries,
    save_nifti,
    sha256,
    write_json,
)
from medsynth.manifest import Manifest

LABEL_CONVENTIONS = {"canonical": None, "brats2021": CANONICAL_TO_BRATS2021, "brats2023": CANONICAL_TO_BRATS2023}


@dataclass
class CohortStatus:
    written: int  # cases written by this run
    skipped: int  # cases of this shard already present
    present: int  # cases of the whole cohort present now
    total: int
    finalized: bool  # manifest, checksums and card written
    added: int = 0  # cases added by the k-anonymity fill in this run
    anonymity: dict[str, Any] | None = None  # K, k before/after the fill, cases added in all (k_anonymity only)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise MedsynthError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if not 0 <= index < count:
        raise MedsynthError(f"--shard {text!r}: need 0 <= i < n")
    return index, count


def _check_count(n: Any) -> int | None:
    """``--n``: None (all label maps) or a positive whole number."""
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise MedsynthError(f"--n {n}: the number of cases must be a positive whole number")
    return int(n)


def _check_spacing(spacing_mm: Any) -> float | None:
    """``--spacing``: None (the generator's grid) or a positive, finite voxel size in mm."""
    if spacing_mm is None:
        return None
    try:
        value = float(spacing_mm)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(spacing_mm, bool) or not math.isfinite(value) or value <= 0:
        raise MedsynthError(f"--spacing {spacing_mm}: the voxel size must be a positive, finite number of mm")
    return value


MAX_RESAMPLED_VOXELS = 2**31  # per image: beyond this a single case would not fit in memory


def _check_spacing_size(spacing_mm: float | None, generator) -> None:
    if spacing_mm is None:
        return
    extent = np.asarray(generator.grid) * np.asarray(generator.spacing_mm)
    voxels = float(np.prod(np.ceil(extent / spacing_mm)))
    if voxels > MAX_RESAMPLED_VOXELS:
        raise MedsynthError(
            f"--spacing {spacing_mm:g}: resampling the generator's {generator.grid} grid at "
            f"{generator.spacing_mm} mm would make {voxels:.3g} voxels per image; choose a coarser spacing"
        )


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise MedsynthError(f"--seed {seed}: must be a non-negative whole number")
    return int(seed)


def _check_shard(shard: Any) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in shard)
    except (TypeError, ValueError):
        raise MedsynthError(f"shard {shard!r}: expected (i, n), e.g. (0, 4)") from None
    if not 0 <= index < count:
        raise MedsynthError(f"shard {index}/{count}: need 0 <= i < n")
    return index, count


def _style_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index, 1]).generate_state(1)[0] % (2**31))


def _fill_seed(seed: int, index: int, draw: int) -> int:
    return int(np.random.SeedSequence([seed, index, 2, draw]).generate_state(1)[0] % (2**31))


def _make_sampler(sampler_args: dict[str, Any]):
    """A label-map sampler over the train split of ``sources`` (+ ``healthy`` anatomies)."""
    from medsynth.labels.generate import LabelMapSampler
    from medsynth.labels.sources import check_same_grid, read_sources

    anatomies, tumors = read_sources(sampler_args["sources"], splits=("train",))
    if sampler_args.get("healthy"):
        anatomies += read_sources(sampler_args["healthy"], healthy=True)[0]
        check_same_grid(anatomies)
    return LabelMapSampler(anatomies, tumors, sampler_args["config"], sampler_args.get("reshape"))


def _fill_sampler(sampler_args: dict[str, Any], generator):
    """The k-anonymity fill's sampler (with ``--labels``: from ``--from``), checked against the generator's grid."""
    sampler = _make_sampler(sampler_args)
    _check_sampler_geometry(sampler, generator)
    return sampler


class _LabelSource:
    """Label maps of a cohort: read from a label-map manifest, or sampled on the fly."""

    def __init__(self, labels: Path | None, n: int | None, seed: int, sampler_args: dict[str, Any]) -> None:
        self.seed = seed
        self.sampler = None
        if labels is not None:
            manifest_path = labels / "manifest.json" if labels.is_dir() else labels
            self.cases = Manifest.load(manifest_path).cases()
            if not self.cases:
                raise MedsynthError(f"{manifest_path}: no label maps")
            self.total = len(self.cases) if n is None else min(n, len(self.cases))
            self.description = {"label_maps": str(manifest_path.resolve())}
        else:
            if n is None:
                raise MedsynthError("give --labels DIR or --n N")
            self.sampler = _make_sampler(sampler_args)
            self.total = n
            self.description = {
                "label_maps": "sampled",
                "sources": [str(Path(p).resolve()) for p in sampler_args["sources"]],
                "healthy": [str(Path(p).resolve()) for p in sampler_args.get("healthy") or []],
                "label_config": to_dict(sampler_args["config"]),
                "reshape": to_dict(self.sampler.reshape),
            }

    def check_geometry(self, generator) -> None:
        """Refuse label maps on another grid, spacing or orientation than the generator's, before anything is written.

        Label map files are checked from their headers (cheap); their values are checked as
        each case is made (:meth:`medsynth.models.generator.Generator.check_label_map`).
        """
        if self.sampler is not None:
            _check_sampler_geometry(self.sampler, generator)
            return
        import nibabel as nib

        for case in self.cases[: self.total]:
            try:
                image = nib.load(str(case.label))
                shape, affine = image.shape, image.affine
            except Exception as exc:  # nibabel raises many types for missing, foreign or truncated files
                raise DataError(f"{case.label}: cannot read NIfTI header ({type(exc).__name__}: {exc})") from None
            generator.check_geometry(shape, affine, case.label)

    def get(self, index: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any], str]:
        """Label map, affine, record and the name refusals use (the file, or the sampled case)."""
        if self.sampler is not None:
            return (*self.sampler.sample(index, self.seed), f"sampled label map synth_{index:05d}")
        case = self.cases[index]
        # native dtype: a value such as 5.5 must be refused, not truncated to 5 (edema)
        label_map, affine, _ = load_nifti(case.label, dtype=None)
        record = case.record.get("record", {"label_map": str(case.label), "split": case.split})
        return label_map, affine, record, str(case.label)


def _check_sampler_geometry(sampler, generator) -> None:
    for anatomy in sampler.anatomies:
        generator.check_geometry(anatomy.label_map.shape, anatomy.affine, f"{anatomy.source} ({anatomy.case_id})")


def _provenance(index: int, seed: int, plan: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    return {
        "case_id": f"synth_{index:05d}",
        "index": index,
        "cohort_seed": seed,
        "style_seed": _style_seed(seed, index),
        "generator_sha256": plan["generator"]["sha256"],
        "generator_kind": plan["generator"]["kind"],
        "label_map_record": record,
        "split": record.get("split", "train"),
        "medsynth": __version__,
    }


def _as_saved(label_map: np.ndarray, affine: np.ndarray, spacing_mm: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The label map on the grid it is written on (resampled when ``spacing_mm`` is set)."""
    if not spacing_mm:
        return label_map, affine
    from medsynth.cohort.geometry import resample

    return resample(label_map, affine, spacing_mm, "nearest")


def _write_case(
    output: Path,
    generator,
    label_map: np.ndarray,
    affine: np.ndarray,
    provenance: dict[str, Any],
    spacing_mm: float | None,
    label_convention: str,
    source: str | None = None,
) -> None:
    """Synthesize one case from its label map and write it atomically into ``cases/<case_id>/``.

    The label map is checked first (values, brain, geometry; ``source`` names it in a refusal).
    """
    case_id = provenance["case_id"]
    # whole numbers 0..7 with a brain, on the generator's grid: only then is the int16 cast lossless
    label_map = generator.check_label_map(label_map, affine, source).astype(np.int16)
    images = generator.synthesize(label_map, seed=provenance["style_seed"], affine=affine).images
    if spacing_mm:
        from medsynth.cohort.geometry import resample

        images, _ = resample(images, affine, spacing_mm, "bilinear")
    label_map, affine = _as_saved(label_map, affine, spacing_mm)
    with atomic_path(output / "cases" / case_id) as tmp:
        tmp.mkdir(parents=True)
        for channel, modality in zip(images, generator.modalities, strict=True):
            save_nifti(channel, affine, tmp / f"{case_id}_{modality}.nii.gz", dtype=np.float32)
        save_nifti(label_map, affine, tmp / f"{case_id}_label_map.nii.gz", dtype=np.int16)
        if LABEL_CONVENTIONS[label_convention]:
            seg = from_canonical(label_map, LABEL_CONVENTIONS[label_convention])
            save_nifti(seg, affine, tmp / f"{case_id}_seg.nii.gz", dtype=np.uint8)
        write_json(provenance, tmp / "provenance.json")


def _fill_to_k(
    output: Path,
    generator,
    plan: dict[str, Any],
    base_sampler,
    requested: int,
    k: int,
    quasi_identifiers,
    spacing_mm: float | None,
    label_convention: str,
    progress: bool,
) -> tuple[dict[str, Any], int]:
    """Add cases after the ``requested`` ones until every populated group has ``k`` members.

    Returns ``(record, written)``: the fill's record (K, k before/after, group table, added case ids)
    and the number of cases this call wrote. Each case targets the first under-filled group in
    attribute order, given the cases before it, so a re-run picks up where a killed one stopped.
    A draw that lands in another populated group is kept there; one that would open a new group
    is discarded (that group would need filling in turn).
    """
    from tqdm import tqdm

    from medsynth.audit.anonymity import (
        MAX_DRAWS_PER_GROUP,
        anonymity_summary,
        case_attributes,
        fill_targets,
        folder_attributes,
        group_key,
    )
    from medsynth.labels.generate import LabelMapSampler

    seed = plan["seed"]
    attributes = {
        f"synth_{i:05d}": folder_attributes(output / "cases" / f"synth_{i:05d}", quasi_identifiers)
        for i in range(requested)
    }
    before = anonymity_summary(attributes, quasi_identifiers)
    populated = {group_key(row["attributes"]) for row in before["groups"]}
    draws_spent: dict[tuple, int] = {}
    samplers: dict[tuple, Any] = {}
    written = 0
    index = requested
    bar = tqdm(desc=f"k-anonymity fill to k={k}", unit="case", disable=not progress)
    while True:
        case_id = f"synth_{index:05d}"
        folder = output / "cases" / case_id
        if (folder / "provenance.json").exists():
            fill = read_json(folder / "provenance.json").get("k_anonymity_fill")
            if fill is None:
                raise MedsynthError(f"{folder}: not a k-anonymity case (its provenance has no k_anonymity_fill)")
            target_key = group_key(fill["target_group"])
            draws_spent[target_key] = draws_spent.get(target_key, 0) + fill["draws"]
            attributes[case_id] = folder_attributes(folder, quasi_identifiers)
            index += 1
            continue
        summary = anonymity_summary(attributes, quasi_identifiers)
        target = next(
            fill_targets(summary, k, base_sampler.tumors, base_sampler.config, quasi_identifiers, base_sampler.reshape),
            None,
        )
        if target is None:
            break
        key = group_key(target.group)
        if key not in samplers:
            try:
                samplers[key] = LabelMapSampler(
                    base_sampler.anatomies, target.tumors, base_sampler.config, target.reshape
                )
            except MedsynthError as exc:
                raise MedsynthError(f"k-anonymity group {target.group} cannot be filled: {exc}") from None
        draws = 0
        while True:
            if draws_spent.get(key, 0) >= MAX_DRAWS_PER_GROUP:
                count = next(r["count"] for r in summary["groups"] if group_key(r["attributes"]) == key)
                raise MedsynthError(
                    f"{output}: k-anonymity group {target.group} still has {count} of {k} members after "
                    f"{MAX_DRAWS_PER_GROUP} draws of the sampler constrained to it (draws that leave every populated "
                    "group are discarded); lower --k-anonymity or use coarser quasi-identifiers"
                )
            draws_spent[key] = draws_spent.get(key, 0) + 1
            draw_seed = _fill_seed(seed, index, draws)
            draws += 1
            try:
                label_map, affine, record = samplers[key].sample(index, draw_seed)
            except MedsynthError:
                continue  # no draw met the group's targets within the sampler's attempts: a spent draw
            provenance = _provenance(index, seed, plan, record)
            landed = case_attributes(*_as_saved(label_map, affine, spacing_mm), quasi_identifiers, provenance)
            if group_key(landed) in populated:
                break
        provenance["k_anonymity_fill"] = {
            "k": k,
            "target_group": target.group,
            "group": landed,
            "reshape": to_dict(target.reshape),
            "source_tumors": [t.case_id for t in target.tumors],
            "draw_seed": draw_seed,
            "draws": draws,
        }
        _write_case(
            output, generator, label_map, affine, provenance, spacing_mm, label_convention, f"sampled {case_id}"
        )
        attributes[case_id] = landed
        written += 1
        index += 1
        bar.update()
    bar.close()
    after = anonymity_summary(attributes, quasi_identifiers)
    added = [f"synth_{i:05d}" for i in range(requested, index)]
    record = {
        "k": k,
        "k_before": before["k"],
        "k_after": after["k"],
        "groups_before": len(before["groups"]),
        "groups_after": len(after["groups"]),
        "added": len(added),
        "added_case_ids": added,
        "attributes": after["attributes"],
        "groups": after["groups"],
    }
    return record, written


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
    k_anonymity: int | None = None,
    quasi_identifiers=None,
    precision: str = "auto",
) -> CohortStatus:
    """Generate (this shard of) a cohort into ``output``; see the module docstring.

    ``k_anonymity``: fill groups of descriptive attributes (``quasi_identifiers``, a
    :class:`medsynth.audit.anonymity.QuasiIdentifiers`; default bins when None) to at least
    this many cases. With ``labels`` it needs ``label_sources`` to draw the added label maps from.
    ``precision`` is the generator's (``auto``: bf16 where the hardware runs it natively; recorded in the plan).
    """
    from tqdm import tqdm

    import medsynth
    from medsynth.labels.generate import LabelConfig

    # every argument is checked before anything is written
    n = _check_count(n)
    spacing_mm = _check_spacing(spacing_mm)
    seed = _check_seed(seed)
    shard = _check_shard(shard)
    if label_convention not in LABEL_CONVENTIONS:
        raise MedsynthError(f"label convention must be one of {list(LABEL_CONVENTIONS)}")
    if k_anonymity is not None:
        from medsynth.audit.anonymity import QuasiIdentifiers, check_k

        k_anonymity = check_k(k_anonymity)
        quasi_identifiers = quasi_identifiers or QuasiIdentifiers()
        if labels is not None and not label_sources:
            raise MedsynthError(
                f"--k-anonymity {k_anonymity} with --labels {labels}: the fill draws new label maps, so give their "
                "tumor sources with --from PREPARED_MANIFEST (e.g. the manifest the label maps were made from)"
            )
    checkpoint, output = Path(checkpoint), Path(output)
    generator = medsynth.load_generator(checkpoint, precision=precision)
    training_manifest = generator.training.get("manifest")
    sources = [Path(p) for p in (label_sources or ([training_manifest] if training_manifest else []))]
    if labels is None and not (sources and all(p.is_file() for p in sources)):
        raise MedsynthError(
            f"no label sources for --n: the generator's training manifest ({training_manifest}) is not on this "
            "machine; pass --from PREPARED_MANIFEST (e.g. runs/demo/prepared/brats2013/manifest.json after make demo)"
        )
    sampler_args = {"sources": sources, "healthy": healthy, "config": label_config or LabelConfig(), "reshape": reshape}
    source = _LabelSource(Path(labels) if labels else None, n, seed, sampler_args)
    source.check_geometry(generator)
    _check_spacing_size(spacing_mm, generator)
    fill_sampler = None
    if k_anonymity is not None:
        fill_sampler = source.sampler or _fill_sampler(sampler_args, generator)
    plan = {
        "format_version": 1,
        "generator": {
            "path": str(checkpoint.resolve()),
            "sha256": sha256(checkpoint),
            "kind": generator.kind,
            "modalities": generator.modalities,
            "spacing_mm": list(generator.spacing_mm),
            "training": generator.training,
            "precision": generator.precision,
        },
        "n": source.total,
        "seed": seed,
        "spacing_mm": spacing_mm or list(generator.spacing_mm),
        "label_convention": label_convention,
        **source.description,
    }
    if k_anonymity is not None:
        plan["k_anonymity"] = {"k": k_anonymity, "quasi_identifiers": to_dict(quasi_identifiers)}
        if source.sampler is None:
            plan["k_anonymity"]["fill_sources"] = {
                "sources": [str(Path(p).resolve()) for p in sources],
                "healthy": [str(Path(p).resolve()) for p in healthy or []],
                "label_config": to_dict(sampler_args["config"]),
                "reshape": to_dict(reshape) if reshape else None,
            }
    inputs = [checkpoint, labels, *sources, *(healthy or []), audit_against]
    claim_output(output, "generate", inputs=[p for p in inputs if p is not None])
    remove_stale_temporaries(output / "cases")  # hidden case folders of a killed run (kill -9 skips their clean-up)
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
        label_map, affine, record, name = source.get(index)
        provenance = _provenance(index, seed, plan, record)
        _write_case(output, generator, label_map, affine, provenance, spacing_mm, label_convention, name)
        written += 1
    present = sum((output / "cases" / f"synth_{i:05d}" / "provenance.json").exists() for i in range(source.total))
    finalized = present == source.total
    anonymity, added = None, 0
    if finalized:
        from medsynth.cohort.finalize import finalize

        if k_anonymity is not None:
            anonymity, added = _fill_to_k(
                output,
                generator,
                plan,
                fill_sampler,
                source.total,
                k_anonymity,
                quasi_identifiers,
                spacing_mm,
                label_convention,
                progress,
            )
            write_json(anonymity, output / "k_anonymity.json")  # the full group table, case ids included
            anonymity = {key: value for key, value in anonymity.items() if key != "groups"}
        every_case = source.total + (anonymity["added"] if anonymity else 0)
        audit = _export_gate(output, every_case, generator.modalities, audit_against, allow_flagged)
        finalize(
            output,
            plan,
            seconds=time.perf_counter() - started,
            command=" ".join(sys.argv),
            audit=audit,
            anonymity=anonymity,
        )
    return CohortStatus(written, skipped, present, source.total, finalized, added, anonymity)
