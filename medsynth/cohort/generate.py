"""``medsynth generate``: a synthetic cohort from a trained generator, one case at a time.

    $ medsynth generate --checkpoint medsynth/pretrained/vae_cpu.pt --n 50 --seed 0 -o cohort
    $ medsynth generate --checkpoint gen.pt --labels runs/labels -o cohort --shard 0/4   # 4 processes
    $ medsynth generate --config configs/generate_default.yaml checkpoint=gen.pt n=50 -o cohort

In Python: ``run_generate(GenerateConfig(...), output)`` (:mod:`medsynth.cohort.config`).

Each case is written into a hidden temporary folder and renamed into ``cases/<case_id>/``
when complete, so a killed run leaves no partial case and a re-run skips finished ones; the
re-run also deletes the hidden folders of killed (``kill -9``) runs on this host. The output
folder is claimed for ``generate`` (``.medsynth-output.json``, :func:`medsynth.io.claim_output`):
a folder holding anything else is refused. Memory stays flat: one case is in memory at a
time. Shards take the cases whose index modulo n equals i; whichever run finds every case
present writes the cohort files (manifest, checksums, dataset card, preview, the resolved
``config.yaml`` and the run's provenance in ``manifest.json`` and ``cohort.json``).
``cohort_plan.json`` records what the cohort is (generator, label maps, n, seed, grid); a
re-run whose plan differs is refused.

Refused before anything is written (one line, naming the file where one is involved): ``n``
< 1, a spacing that is not a positive finite number, a negative seed, a checkpoint that fails
its checksum or is not a generator, label maps whose spacing, orientation (from the affine)
or grid differ from the generator's. Each label map's values are checked before its case is
written: whole numbers of the canonical scheme 0..7 with some brain (not all 0).

With ``k_anonymity=K`` (``--k-anonymity K``) that same run then adds cases ``synth_NNNNN``
after the last requested one (:mod:`medsynth.cohort.anonymity`). With ``audit_against`` every
case is copy-checked before the cohort is published (:func:`medsynth.audit.memorization.copy_check_cohort`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medsynth.audit.anonymity import QuasiIdentifiers
from medsynth.cohort.case import LABEL_CONVENTIONS, case_id, case_provenance, synthesize_case
from medsynth.cohort.config import GenerateConfig, parse_shard
from medsynth.config import save_config, to_dict
from medsynth.data.scheme import from_canonical
from medsynth.errors import ConfigError, DataError, MedsynthError, OutputError
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
from medsynth.labels.generate import LabelConfig
from medsynth.manifest import Manifest, provenance
from medsynth.models.checkpoint import resolve as resolve_checkpoint

if TYPE_CHECKING:
    from medsynth.labels.generate import LabelMapSampler
    from medsynth.labels.reshape import ReshapeSpec
    from medsynth.models.generator import Generator

__all__ = ["CohortStatus", "GenerateConfig", "generate_cases", "generate_cohort", "parse_shard", "run_generate"]

MAX_RESAMPLED_VOXELS = 2**31  # per image: beyond this a single case would not fit in memory


@dataclass
class CohortStatus:
    written: int  # cases written by this run
    skipped: int  # cases of this shard already present
    present: int  # cases of the whole cohort present now
    total: int
    finalized: bool  # manifest, checksums and card written
    added: int = 0  # cases added by the k-anonymity fill in this run
    anonymity: dict[str, Any] | None = None  # K, k before/after the fill, cases added in all (k_anonymity only)


def _check_spacing_size(spacing_mm: float | None, generator: Generator) -> None:
    if spacing_mm is None:
        return
    extent = np.asarray(generator.grid) * np.asarray(generator.spacing_mm)
    voxels = float(np.prod(np.ceil(extent / spacing_mm)))
    if voxels > MAX_RESAMPLED_VOXELS:
        raise ConfigError(
            f"--spacing {spacing_mm:g}: resampling the generator's {generator.grid} grid at "
            f"{generator.spacing_mm} mm would make {voxels:.3g} voxels per image; choose a coarser spacing"
        )


def _make_sampler(sampler_args: dict[str, Any]) -> LabelMapSampler:
    """A label-map sampler over the train split of ``sources`` (+ ``healthy`` anatomies)."""
    from medsynth.labels.generate import LabelMapSampler
    from medsynth.labels.sources import check_same_grid, read_sources

    anatomies, tumors = read_sources(sampler_args["sources"], splits=("train",))
    if sampler_args.get("healthy"):
        anatomies += read_sources(sampler_args["healthy"], healthy=True)[0]
        check_same_grid(anatomies)
    return LabelMapSampler(anatomies, tumors, sampler_args["config"], sampler_args.get("reshape"))


def _check_sampler_geometry(sampler: LabelMapSampler, generator: Generator) -> None:
    for anatomy in sampler.anatomies:
        generator.check_geometry(anatomy.label_map.shape, anatomy.affine, f"{anatomy.source} ({anatomy.case_id})")


class _LabelSource:
    """Label maps of a cohort: read from a label-map manifest, or sampled on the fly."""

    def __init__(self, labels: Path | None, n: int | None, seed: int, sampler_args: dict[str, Any]) -> None:
        self.seed = seed
        self.sampler = None
        self.checksums: dict[str, str] | None = None
        if labels is not None:
            manifest_path = labels / "manifest.json" if labels.is_dir() else labels
            manifest = Manifest.load(manifest_path)
            self.cases = manifest.cases()
            if not self.cases:
                raise MedsynthError(f"{manifest_path}: no label maps")
            # a label-map folder vouches for its own files only: an entry re-pointed elsewhere (a real
            # subject's label map) or a file replaced since `medsynth labels` wrote it is refused
            self.checksums = manifest.meta.get("checksums") if manifest.kind == "label_maps" else None
            if manifest.kind == "label_maps":
                for case in self.cases:
                    if case.label is None or manifest.folder.resolve() not in case.label.resolve().parents:
                        raise DataError(
                            f"{manifest_path}: case {case.case_id}: label map {case.label} is outside its folder"
                        )
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

    def check_geometry(self, generator: Generator) -> None:
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
            return (*self.sampler.sample(index, self.seed), f"sampled label map {case_id(index)}")
        case = self.cases[index]
        if self.checksums is not None:
            recorded = self.checksums.get(case.record.get("label"))
            if recorded is None or sha256(case.label) != recorded:
                raise DataError(f"{case.label}: not the label map `medsynth labels` wrote (checksum differs)")
        # native dtype: a value such as 5.5 must be refused, not truncated to 5 (edema)
        label_map, affine, _ = load_nifti(case.label, dtype=None)
        record = case.record.get("record", {"label_map": str(case.label), "split": case.split})
        return label_map, affine, record, str(case.label)


def _write_case(
    output: Path,
    generator: Generator,
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
    name = provenance["case_id"]
    folder = output / "cases" / name
    case = synthesize_case(generator, label_map, affine, provenance["style_seed"], spacing_mm, source)
    try:
        with atomic_path(folder) as tmp:
            tmp.mkdir(parents=True)
            for channel, modality in zip(case.images, generator.modalities, strict=True):
                save_nifti(channel, case.affine, tmp / f"{name}_{modality}.nii.gz", dtype=np.float32)
            save_nifti(case.label_map, case.affine, tmp / f"{name}_label_map.nii.gz", dtype=np.int16)
            if LABEL_CONVENTIONS[label_convention]:
                seg = from_canonical(case.label_map, LABEL_CONVENTIONS[label_convention])
                save_nifti(seg, case.affine, tmp / f"{name}_seg.nii.gz", dtype=np.uint8)
            write_json(provenance, tmp / "provenance.json")
    except (OutputError, OSError):
        # a second process on the same shard finished this case first: it is the same case (same seeds)
        if not (folder / "provenance.json").is_file():
            raise


def _export_gate(
    output: Path, total: int, modalities: list[str], audit_against: Path | None, allow_flagged: bool
) -> dict[str, Any] | None:
    """Run the copy check before the cohort is published; refuse flagged cases unless allowed."""
    if audit_against is None:
        return None
    from medsynth.audit.memorization import copy_check_cohort

    folders = [output / "cases" / case_id(i) for i in range(total)]
    result = copy_check_cohort(audit_against, folders, modalities)
    if result["flagged"] and not allow_flagged:
        raise MedsynthError(
            f"{output}: copy check flagged {result['flagged']} as near-copies of training scans "
            f"(copy similarity >= {result['threshold_ncc']}); the cohort was not finalized. Remove those case "
            "folders and re-run to replace them, or pass --allow-flagged to publish anyway (recorded in provenance)"
        )
    for flagged in result["flagged"]:
        path = output / "cases" / flagged / "provenance.json"
        write_json({**read_json(path), "flagged_copy": True, "published_by": "--allow-flagged"}, path)
    return {"against": str(Path(audit_against).resolve()), **result}


def run_generate(config: GenerateConfig, output: str | Path, *, progress: bool = True) -> Path:
    """Generate (this shard of) the cohort of ``config`` into ``output``; see the module docstring.

    Args:
        config: the cohort (:class:`~medsynth.cohort.config.GenerateConfig`).
        output: the cohort folder; a re-run into it resumes (same plan) or is refused (another).
        progress: show progress bars.

    Returns:
        The cohort's ``manifest.json`` when this run finalized the cohort (every case present),
        else the ``output`` folder (other shards still to run). :func:`generate_cases` does the
        same and returns what this run did (:class:`CohortStatus`).

    >>> config = GenerateConfig(checkpoint="medsynth/pretrained/vae_cpu.pt", n=4, seed=0)
    >>> run_generate(config, "cohort")  # doctest: +SKIP
    PosixPath('cohort/manifest.json')
    """
    status = generate_cases(config, output, progress=progress)
    return Path(output) / "manifest.json" if status.finalized else Path(output)


def generate_cases(config: GenerateConfig, output: str | Path, *, progress: bool = True) -> CohortStatus:
    """:func:`run_generate`, returning what this run wrote, skipped and added (for the CLI's summary)."""
    from tqdm import tqdm

    import medsynth
    from medsynth.cohort.anonymity import fill_to_k
    from medsynth.cohort.finalize import finalize

    checkpoint, output = resolve_checkpoint(config.checkpoint), Path(output)
    labels = Path(config.labels) if config.labels is not None else None
    audit_against = Path(config.audit_against) if config.audit_against is not None else None
    spacing_mm, seed, label_convention = config.spacing_mm, config.seed, config.label_convention
    generator = medsynth.load_generator(checkpoint, precision=config.precision)
    sources = [Path(p) for p in config.sources]
    healthy = [Path(p) for p in config.healthy]
    gate = "audit_against" if audit_against is not None else "off"
    resampled = spacing_mm is not None and not np.allclose(spacing_mm, generator.spacing_mm)
    use_defaults = labels is None and not sources  # nothing given: training tumors found by content, healthy anatomies
    training_data: Path | bool | None = False  # looked up once, for the gate and the default sources
    if (audit_against is None and config.copy_check and not resampled) or use_defaults:
        from medsynth.cohort.defaults import find_training_data

        training_data = find_training_data(generator)
    if audit_against is None and config.copy_check and resampled:
        gate = "cohort resampled"  # the training scans are on the generator's grid, the cases are not
    elif audit_against is None and config.copy_check:  # the gate on by default, where the training data are here
        audit_against = training_data or None
        gate = "training data found by content" if audit_against is not None else "training data not found"
    label_config, defaults = config.label_config, None
    if use_defaults:
        from medsynth.cohort.defaults import default_sources

        defaults = default_sources(generator, anatomies=label_config.anatomies, training_data=training_data)
        sources, healthy = defaults.sources, healthy or defaults.healthy
        if label_config.anatomies == "all" and defaults.healthy:
            label_config = replace(label_config, anatomies="healthy")
        for note in defaults.notes:
            print(f"{output}: {note}")
    missing = [p for p in [*sources, *healthy] if not p.is_file()]
    if labels is None and missing:
        raise DataError(f"{missing[0]}: label source not found (--from / --healthy take a prepared manifest)")
    sampler_args = {"sources": sources, "healthy": healthy, "config": label_config, "reshape": config.reshape}
    source = _LabelSource(labels, config.n, seed, sampler_args)
    source.check_geometry(generator)
    _check_spacing_size(spacing_mm, generator)
    fill_sampler = None
    if config.k_anonymity is not None:
        fill_sampler = source.sampler
        if fill_sampler is None:  # with --labels: the fill draws from --from, checked against the generator's grid
            fill_sampler = _make_sampler(sampler_args)
            _check_sampler_geometry(fill_sampler, generator)
    plan = _plan(config, checkpoint, generator, source, sources, healthy)
    if defaults is not None:
        plan["default_sources"] = {**defaults.describe(), "anatomies": label_config.anatomies}
    inputs = [p for p in (checkpoint, labels, *sources, *healthy, audit_against) if p is not None]
    claim_output(output, "generate", inputs=inputs)
    remove_stale_temporaries(output / "cases")  # hidden case folders of a killed run (kill -9 skips their clean-up)
    plan_path = output / "cohort_plan.json"
    if plan_path.exists():
        previous = read_json(plan_path)
        if previous != plan:
            changed = sorted(k for k in plan if previous.get(k) != plan[k])
            raise MedsynthError(f"{output} holds a different cohort (differs in {changed}); use another folder")
    else:
        write_json(plan, plan_path)

    def write_case(label_map: np.ndarray, affine: np.ndarray, record: dict[str, Any], name: str) -> None:
        _write_case(output, generator, label_map, affine, record, spacing_mm, label_convention, name)

    shard_index, shard_count = config.shard
    indices = [i for i in range(source.total) if i % shard_count == shard_index]
    written = skipped = 0
    started = time.perf_counter()
    for index in tqdm(indices, desc=f"generate {shard_index}/{shard_count}", unit="case", disable=not progress):
        if (output / "cases" / case_id(index) / "provenance.json").exists():
            skipped += 1
            continue
        label_map, affine, record, name = source.get(index)
        write_case(label_map, affine, case_provenance(index, seed, plan, record), name)
        written += 1
    present = sum((output / "cases" / case_id(i) / "provenance.json").exists() for i in range(source.total))
    finalized = present == source.total
    anonymity, added = None, 0
    if finalized:
        if config.k_anonymity is not None:
            anonymity, added = fill_to_k(
                output,
                plan,
                fill_sampler,
                source.total,
                config.k_anonymity,
                config.quasi_identifiers,
                spacing_mm,
                write_case,
                progress,
            )
            write_json(anonymity, output / "k_anonymity.json")  # the full group table, case ids included
            anonymity = {key: value for key, value in anonymity.items() if key != "groups"}
        every_case = source.total + (anonymity["added"] if anonymity else 0)
        audit = _export_gate(output, every_case, generator.modalities, audit_against, config.allow_flagged)
        cohort_config = config.for_cohort()
        save_config(cohort_config, output / "config.yaml")
        finalize(
            output,
            plan,
            seconds=time.perf_counter() - started,
            command=" ".join(sys.argv),
            run_provenance=provenance("generate", config=cohort_config, seed=seed, inputs=inputs),
            audit=audit,
            anonymity=anonymity,
            copy_check=gate,  # a publication gate, not part of what the cohort is (the plan)
        )
    return CohortStatus(written, skipped, present, source.total, finalized, added, anonymity)


def _plan(
    config: GenerateConfig,
    checkpoint: Path,
    generator: Generator,
    source: _LabelSource,
    sources: list[Path],
    healthy: list[Path],
) -> dict:
    """What the cohort is; a re-run into the same folder must have the same plan."""
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
        "seed": config.seed,
        "spacing_mm": config.spacing_mm or list(generator.spacing_mm),
        "label_convention": config.label_convention,
        **source.description,
    }
    if config.k_anonymity is not None:
        plan["k_anonymity"] = {"k": config.k_anonymity, "quasi_identifiers": to_dict(config.quasi_identifiers)}
        if source.sampler is None:
            plan["k_anonymity"]["fill_sources"] = {
                "sources": [str(Path(p).resolve()) for p in sources],
                "healthy": [str(Path(p).resolve()) for p in healthy],
                "label_config": to_dict(config.label_config),
                "reshape": to_dict(config.reshape) if config.reshape else None,
            }
    return plan


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
    label_config: LabelConfig | None = None,
    reshape: ReshapeSpec | None = None,
    audit_against: str | Path | None = None,
    allow_flagged: bool = False,
    progress: bool = True,
    k_anonymity: int | None = None,
    quasi_identifiers: QuasiIdentifiers | None = None,
    precision: str = "auto",
) -> CohortStatus:
    """Keyword shorthand for ``generate_cases(GenerateConfig(...), output)``; returns a :class:`CohortStatus`.

    Args:
        checkpoint, output: the generator and the cohort folder.
        label_sources: the config's ``sources``.
        label_config, quasi_identifiers: None gives their defaults.
        progress: show progress bars.
        labels, n, seed, shard, spacing_mm, label_convention, healthy, reshape, audit_against,
            allow_flagged, k_anonymity, precision: the :class:`GenerateConfig` fields of those names.

    >>> status = generate_cohort("medsynth/pretrained/vae_cpu.pt", "cohort", n=4)  # doctest: +SKIP
    >>> status.finalized  # doctest: +SKIP
    True
    """
    config = GenerateConfig(
        checkpoint=str(checkpoint),
        labels=None if labels is None else str(labels),
        n=n,
        sources=[str(p) for p in label_sources or []],
        healthy=[str(p) for p in healthy or []],
        reshape=reshape,
        seed=seed,
        shard=shard,
        spacing_mm=spacing_mm,
        label_convention=label_convention,
        precision=precision,
        audit_against=None if audit_against is None else str(audit_against),
        allow_flagged=allow_flagged,
        k_anonymity=k_anonymity,
        label_config=label_config or LabelConfig(),
        quasi_identifiers=quasi_identifiers or QuasiIdentifiers(),
    )
    return generate_cases(config, output, progress=progress)
