"""The ``medsynth`` command. Entry points are thin: heavy imports happen inside each command.

$ medsynth manifest build ../shared/data/brats2013_small -o manifest.json
$ medsynth manifest check manifest.json
$ medsynth prepare manifest.json --config configs/prepare_cpu.yaml -o prepared
$ medsynth demo -o runs/demo
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from medsynth._version import __version__
from medsynth.errors import ConfigError, MedsynthError

if TYPE_CHECKING:
    from medsynth.labels import LabelConfig
    from medsynth.models.config import TrainConfig


def _declared_layout(args: argparse.Namespace) -> str | Path | dict | None:
    """The layout of ``manifest build``: a name or file (``--layout``), declared or refined by flags."""
    from medsynth.data.layouts import load_layout
    from medsynth.data.scheme import parse_scheme

    given = {
        "images": dict(_key_value(i, "--image MODALITY=PATTERN") for i in args.image),
        "label": args.label,
        "mask": args.mask,
        "label_scheme": parse_scheme(args.label_scheme) if args.label_scheme else None,
        "channels": args.channels.split(",") if args.channels else None,
    }
    given = {k: v for k, v in given.items() if v}
    if not given:
        return args.layout
    if args.layout is None and (given.get("images") or given.get("label")):
        return {"name": "declared", **given}
    if args.layout is None:  # --label-scheme / --channels refine the detected layout (a datalist for a .json)
        from medsynth.data.find import detect_layout

        data = Path(args.data_dir)
        is_datalist = data.suffix.lower() == ".json" and data.name != "dataset.json"
        layout = "datalist" if is_datalist else detect_layout(data.parent if data.is_file() else data)
        return {**load_layout(layout).to_dict(), **given}
    return {**load_layout(args.layout).to_dict(), **given}


def _key_value(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise MedsynthError(f"{flag}: expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def _manifest_build(args: argparse.Namespace) -> int:
    from medsynth.data.manifest import build_manifest

    manifest = build_manifest(
        args.data_dir,
        args.output,
        layout=_declared_layout(args),
        include=args.include,
        name=args.name,
        seed=args.seed,
        validation_fraction=args.validation_fraction,
    )
    meta = manifest["medsynth"]
    counts = {k: len(manifest[k]) for k in ("training", "validation", "test") if k in manifest}
    print(
        f"wrote {args.output}: layout {meta['layout']}, modalities {meta['modalities'] or '-'}, "
        f"cases {counts}, splits from {meta['split_source']}"
    )
    return 0


def _report_problems(subject: Path, problems: list[str]) -> bool:
    """Print every problem to stderr, one per line; True when there were any."""
    if problems:
        print(f"{subject}: {len(problems)} problem(s)", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
    return bool(problems)


def _manifest_check(args: argparse.Namespace) -> int:
    from medsynth.data.manifest import check_manifest
    from medsynth.manifest import Manifest

    if _report_problems(args.manifest, check_manifest(args.manifest)):
        return 1
    n = len(Manifest.load(args.manifest).cases())
    print(f"{args.manifest}: OK ({n} cases)")
    return 0


def _shorthand(overrides: list[str], section: str, cls: type) -> list[str]:
    """``grid=...`` for ``preprocess.grid=...``: a key of ``cls`` at the top level means ``section.key``."""
    from dataclasses import fields

    inner = {f.name for f in fields(cls)}
    return [f"{section}.{o}" if o.partition("=")[0].split(".")[0] in inner else o for o in overrides]


def _prepare(args: argparse.Namespace) -> int:
    import json

    from medsynth.config import load_config
    from medsynth.data.config import PrepareConfig, PreprocessConfig
    from medsynth.data.prepare import run_prepare
    from medsynth.manifest import Manifest

    flags = [f"manifest={json.dumps(str(args.manifest))}"]
    if args.cache_dir is not None:
        flags.append(f"cache_dir={json.dumps(str(args.cache_dir))}")
    if args.no_previews:
        flags.append("previews=false")
    config = load_config(PrepareConfig, args.config, flags + _shorthand(args.overrides, "preprocess", PreprocessConfig))
    manifest = Manifest.load(run_prepare(config, args.output)).data
    print(
        f"wrote {args.output}: {manifest['numTraining']} training case(s), "
        f"{sum(len(manifest.get(k, [])) for k in ('validation', 'test'))} other, "
        f"in {manifest['medsynth']['seconds']} s"
    )
    return 0


def _labels(args: argparse.Namespace) -> int:
    import json

    from medsynth.config import load_config, to_dict
    from medsynth.labels import LabelConfig, LabelsConfig, ReshapeSpec, run_labels
    from medsynth.manifest import Manifest

    flags = []
    if args.sources is not None:
        flags.append(f"sources={json.dumps([str(p) for p in args.sources])}")
    if args.healthy is not None:
        flags.append(f"healthy={json.dumps([str(p) for p in args.healthy])}")
    for name in ("n", "seed", "splits"):
        if getattr(args, name) is not None:
            flags.append(f"{name}={json.dumps(getattr(args, name))}")
    if args.reshape is not None:
        flags.append(f"reshape={json.dumps(to_dict(load_config(ReshapeSpec, args.reshape)))}")
    config = load_config(LabelsConfig, args.config, flags + _shorthand(args.overrides, "placement", LabelConfig))
    path = run_labels(config, args.output)
    seconds = Manifest.load(path).meta["seconds"]
    print(f"wrote {args.output}: {config.n} label maps in {seconds:.1f} s; report: {args.output / 'report.md'}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from medsynth.config import load_config
    from medsynth.models.config import TrainConfig
    from medsynth.models.train import run_train

    config = load_config(TrainConfig, args.config, args.overrides)
    if args.dry_run:
        return _train_dry_run(args, config)
    if args.output is None:
        raise ConfigError("train: -o/--output is required (only --dry-run runs without one)")
    path = run_train(config, args.output, resume=args.resume)
    if int(os.environ.get("RANK", 0)) == 0:
        print(f"wrote {path}")
        if config.privacy.enabled:
            from medsynth.models.checkpoint import load
            from medsynth.models.privacy import describe

            print(f"privacy: {describe(load(path)['training']['privacy'])}")
            print(f"share {path.name} only: {args.output / 'checkpoint.pt'} holds the secret noise seed")
    return 0


def _train_dry_run(args: argparse.Namespace, config: TrainConfig) -> int:
    import json

    from medsynth.models.dryrun import dry_run

    if args.resume:
        raise ConfigError("train: --dry-run and --resume exclude each other")
    result = dry_run(config, prepare_config=args.prepare_config, grid=tuple(args.grid) if args.grid else None)
    print(json.dumps(result.to_dict(), indent=2) if args.json else result.table())
    return 0


def _placement_config(path: Path) -> LabelConfig:
    """The placement settings of a `medsynth labels` config (its ``placement:`` block), or a flat placement file."""
    from medsynth.config import from_dict, load_config, read_config_file
    from medsynth.labels import LabelConfig

    data = read_config_file(path)
    if "placement" in data:
        return from_dict(LabelConfig, data["placement"] or {}, where=f"{path}: placement")
    return load_config(LabelConfig, path)


def _generate(args: argparse.Namespace) -> int:
    from medsynth.cohort.config import load_generate_config
    from medsynth.cohort.generate import generate_cases
    from medsynth.config import load_config, to_dict
    from medsynth.labels import ReshapeSpec

    # the file, then the flags (shorthands for its fields), then KEY=VALUE overrides
    config = load_generate_config(
        args.config,
        args.overrides,
        checkpoint=args.checkpoint,
        labels=args.labels,
        n=args.n,
        sources=args.sources,
        healthy=args.healthy,
        label_config=to_dict(_placement_config(args.label_config)) if args.label_config else None,
        reshape=to_dict(load_config(ReshapeSpec, args.reshape)) if args.reshape else None,
        seed=args.seed,
        shard=args.shard,
        spacing_mm=args.spacing,
        label_convention=args.label_convention,
        precision=args.precision,
        audit_against=args.audit_against,
        allow_flagged=args.allow_flagged,
        k_anonymity=args.k_anonymity,
    )
    status = generate_cases(config, args.output)
    print(
        f"{args.output}: wrote {status.written}, skipped {status.skipped} finished; {status.present}/{status.total} "
        + ("cases; cohort finalized (manifest, checksums, README.md)" if status.finalized else "cases present")
    )
    if status.anonymity:
        fill = status.anonymity
        print(
            f"{args.output}: k-anonymity K={fill['k']}: smallest group {fill['k_before']} -> {fill['k_after']}, "
            f"{fill['added']} case(s) added ({status.added} by this run), {fill['groups_after']} group(s); "
            f"see {args.output / 'k_anonymity.json'}"
        )
    return 0


def _cohort_verify(args: argparse.Namespace) -> int:
    from medsynth.cohort.verify import verify_cohort

    if _report_problems(args.cohort, verify_cohort(args.cohort)):
        return 1
    print(f"{args.cohort}: OK")
    return 0


def _export(args: argparse.Namespace) -> int:
    from medsynth.cohort.export import export_brats, export_nnunet

    if args.format == "nnunet":
        path = export_nnunet(args.cohort, args.output, args.dataset_id, args.name, anatomy=args.anatomy)
    else:
        path = export_brats(args.cohort, args.output, args.edition)
    print(f"wrote {path}")
    return 0


def _audit(args: argparse.Namespace) -> int:
    import json

    from medsynth.audit.config import AuditConfig
    from medsynth.audit.run import run_audit
    from medsynth.config import from_dict, load_config, to_dict

    # precedence: config file, then the shorthand flags, then KEY=VALUE overrides
    data = to_dict(load_config(AuditConfig, args.config))
    flags = {
        "real_manifest": args.real,
        "cohort": args.synthetic,
        "train_split": args.train_split,
        "generator": args.generator,
        "features": args.features,
        "feature_steps": args.feature_steps,
    }
    data.update({k: str(v) if isinstance(v, Path) else v for k, v in flags.items() if v is not None})
    config = from_dict(AuditConfig, data, args.overrides, where=str(args.config or "audit"))
    report = run_audit(config, args.output)
    summary = json.loads((report.parent / "report.json").read_text())
    for check, verdict in summary["verdicts"].items():
        print(f"{check:22s} {verdict['verdict']:14s} {verdict['basis']}")
    print(f"report: {args.output / 'report.md'} (exit 1 when copies are found)")
    return 1 if summary["memorization"]["flagged"] else 0


def _benchmark(args: argparse.Namespace) -> int:
    # `evaluate RUN` and `report RUN` arrive as the first positional words: argparse sub-commands would
    # swallow KEY=VALUE overrides of the plain `benchmark --config ...` form as unknown command names
    words = list(args.overrides)
    if words and words[0] in ("evaluate", "report"):
        return _benchmark_tool(args, words[0], words[1:])
    from medsynth.benchmark import BenchmarkConfig, run_benchmark
    from medsynth.benchmark.run import parse_folds, parse_shard
    from medsynth.config import load_config

    if args.output is None:
        raise ConfigError("benchmark: -o/--output is required")
    config = load_config(BenchmarkConfig, args.config, args.overrides)
    arms = [a for a in args.arms.split(",") if a] if args.arms else None
    shard, folds = parse_shard(args.shard), parse_folds(args.folds)
    report = run_benchmark(config, args.output, arms=arms, shard=shard, folds=folds)
    print(f"report: {report} (table), {report.parent / 'benchmark.png'} (plot), {report.parent / 'results.json'}")
    return 0


def _benchmark_tool(args: argparse.Namespace, action: str, words: list[str]) -> int:
    if len(words) != 1 or "=" in words[0]:
        raise ConfigError(f"benchmark {action}: expected one run folder, got {words or 'none'}")
    run = Path(words[0])
    if action == "report":
        from medsynth.benchmark.run import report_run

        report = report_run(run)
    else:
        from medsynth.benchmark.evaluate import run_evaluate

        if args.test is None or args.output is None:
            raise ConfigError("benchmark evaluate: --test MANIFEST and -o OUTPUT are required")
        splits = [s for s in args.splits.split(",") if s] if args.splits else None
        report = run_evaluate(run, args.test, args.output, splits=splits)
    print(f"report: {report} (table), {report.parent / 'results.json'}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from medsynth.demo import run_demo

    run_demo(args.output, cache_dir=args.cache_dir)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medsynth",
        description="Synthetic brain MRI cohorts with tumor label maps.",
    )
    parser.add_argument("--version", action="version", version=f"medsynth {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    manifest = commands.add_parser("manifest", help="build and check dataset manifests")
    manifest_commands = manifest.add_subparsers(dest="manifest_command", required=True, metavar="ACTION")
    build = manifest_commands.add_parser(
        "build",
        help="scan a dataset folder and write a MONAI/MSD datalist manifest",
        description="Scan DATA_DIR (BraTS 2013, 2018-2021, 2023+, MSD Task01, nnU-Net v2 raw, a MONAI datalist "
        "JSON, FreeSurfer label maps, healthy T1, or any layout you declare) and write a manifest. Examples: "
        "medsynth manifest build brats2013_small -o manifest.json; "
        "medsynth manifest build mydata --layout configs/layouts/brats2018_wt.yaml -o mine.json; "
        "medsynth manifest build mydata --image flair={case}/FLAIR --label {case}/GT_W --label-scheme wt -o mine.json",
    )
    build.add_argument("data_dir", type=Path, help="dataset folder, or a MONAI datalist JSON")
    build.add_argument("-o", "--output", type=Path, required=True, help="manifest JSON to write")
    build.add_argument(
        "--layout",
        help="brats2013, brats2021, brats2023, msd, nnunet, datalist, freesurfer, t1, or a declaration "
        "file (YAML, see configs/layouts/); detected from file names when omitted",
    )
    build.add_argument(
        "--image",
        action="append",
        default=[],
        metavar="MODALITY=PATTERN",
        help="declare a modality's file pattern, e.g. flair={case}/FLAIR (repeat per modality)",
    )
    build.add_argument("--label", metavar="PATTERN", help="declare the label file's pattern, e.g. {case}/GT_W")
    build.add_argument("--mask", metavar="PATTERN", help="declare the brain mask's pattern (default: derived)")
    build.add_argument(
        "--label-scheme",
        metavar="SCHEME",
        help="what label values mean: brats2013, brats2021, brats2023, msd, wt (whole tumor only), "
        "or VALUE=CLASS,... e.g. 1=edema,2=netc,3=et",
    )
    build.add_argument("--channels", metavar="M1,M2", help="modality names of a datalist's image channels, in order")
    build.add_argument("--include", default="*", help="only files whose name matches this glob (default: all)")
    build.add_argument("--name", help="dataset name (default: the folder name)")
    build.add_argument("--seed", type=int, default=0, help="seed of the split when folders give none")
    build.add_argument("--validation-fraction", type=float, default=0.2, help="of a seeded split (default 0.2)")
    build.set_defaults(func=_manifest_build)

    check = manifest_commands.add_parser(
        "check",
        help="validate every case of a manifest; exits 1 naming each problem",
        description="Check that every file exists and loads, shapes and affines agree, labels belong to the "
        "scheme, there is no NaN/Inf, brain masks are not empty and files match their checksums.",
    )
    check.add_argument("manifest", type=Path)
    check.set_defaults(func=_manifest_check)

    prep = commands.add_parser(
        "prepare",
        help="preprocess a manifest: RAS, spacing, fixed grid, normalisation, anatomy label maps",
        description="Example: medsynth prepare manifest.json --config configs/prepare_cpu.yaml -o prepared "
        "[spacing_mm=[1,1,1] grid=[160,192,160]] (writes the resolved config as prepared/config.yaml)",
    )
    prep.add_argument("manifest", type=Path, help="manifest to prepare (sets manifest=)")
    prep.add_argument("-o", "--output", type=Path, required=True, help="output folder (must not be half-written)")
    prep.add_argument("--config", type=Path, help="YAML prepare config (configs/prepare_*.yaml; default: CPU settings)")
    prep.add_argument("--cache-dir", type=Path, help="cache root (default: $MEDSYNTH_CACHE or ~/.cache/medsynth)")
    prep.add_argument("--no-previews", action="store_true", help="skip the preview PNGs (sets previews=false)")
    prep.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides; keys of the preprocess section may drop the prefix (grid=... is preprocess.grid=...)",
    )
    prep.set_defaults(func=_prepare)

    labels = commands.add_parser(
        "labels",
        help="make new tumor label maps from real tumors and (healthy) anatomies",
        description="Transform real tumors (rotation, volume scale, elastic deformation) and place them into "
        "target anatomies, optionally to target distributions. Example: medsynth labels --from "
        "prepared/brats/manifest.json --healthy prepared/synthseg/manifest.json --n 100 --seed 0 "
        "--reshape configs/reshape/balanced_sides.yaml -o labels",
    )
    labels.add_argument(
        "--from",
        dest="sources",
        type=Path,
        nargs="+",
        metavar="PREPARED_MANIFEST",
        help="prepared manifest(s) with tumors (their subjects' anatomies are targets too); sets sources=",
    )
    labels.add_argument(
        "--healthy",
        type=Path,
        nargs="*",
        metavar="PREPARED_MANIFEST",
        help="prepared manifest(s) of healthy anatomies (SynthSeg, Colin27); sets healthy=",
    )
    labels.add_argument("--n", type=int, help="number of label maps (sets n=)")
    labels.add_argument("--seed", type=int, help="sets seed= (default 0)")
    labels.add_argument("--reshape", type=Path, help="YAML of target distributions (configs/reshape/); sets reshape=")
    labels.add_argument(
        "--config", type=Path, help="YAML labels config (configs/labels_default.yaml); flags and KEY=VALUE override it"
    )
    labels.add_argument(
        "--splits",
        nargs="+",
        choices=["train", "validation", "test"],
        help="source splits to use (sets splits=; default: train)",
    )
    labels.add_argument("-o", "--output", type=Path, required=True)
    labels.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides; keys of the placement section may drop the prefix (max_rotation_deg=90)",
    )
    labels.set_defaults(func=_labels)

    train = commands.add_parser(
        "train",
        help="train the conditional GAN or VAE on a prepared manifest (resumable, torchrun-ready)",
        description="Example: medsynth train --config configs/gan_cpu.yaml -o runs/gan "
        "manifest=runs/demo/prepared/brats2013/manifest.json steps=2000. Multi-process: "
        "torchrun --nproc_per_node 2 -m medsynth.cli train --config ... -o .... Will it fit: "
        "medsynth train --config configs/gan_gpu.yaml --dry-run --prepare-config configs/prepare_gpu.yaml",
    )
    train.add_argument(
        "--config", type=Path, required=True, help="YAML training config (configs/gan_*.yaml, vae_*.yaml)"
    )
    train.add_argument("-o", "--output", type=Path, help="run folder (checkpoints, logs, previews)")
    train.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pt exactly")
    train.add_argument(
        "--dry-run",
        action="store_true",
        help="build the networks, run one training step on random data, print parameters, step time and peak "
        "memory on this device; writes nothing and reads no images (grid: --prepare-config, else the manifest's, "
        "else 2 mm 80x96x80)",
    )
    train.add_argument(
        "--prepare-config", type=Path, help="with --dry-run: take grid and spacing from this `medsynth prepare` config"
    )
    train.add_argument(
        "--grid", type=int, nargs=3, metavar=("X", "Y", "Z"), help="with --dry-run: build for this grid (voxels)"
    )
    train.add_argument("--json", action="store_true", help="with --dry-run: print the result as JSON")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (dotted keys nest)")
    train.set_defaults(func=_train)

    gen = commands.add_parser(
        "generate",
        help="generate a synthetic cohort (NIfTI, manifest, checksums, dataset card) from a generator",
        description="Example: medsynth generate --checkpoint medsynth/pretrained/vae_cpu.pt --n 50 -o cohort, or "
        "medsynth generate --config configs/generate_default.yaml checkpoint=gen.pt n=50 -o cohort. "
        "Flags set the config's fields (configs/generate_default.yaml documents them); KEY=VALUE overrides win. "
        "Re-running skips finished cases; --shard i/n splits a cohort over processes or machines.",
    )
    gen.add_argument("--config", type=Path, help="YAML cohort config (configs/generate_default.yaml)")
    gen.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (dotted keys nest)")
    gen.add_argument("--checkpoint", type=Path, help="generator.pt or checkpoint.pt (config: checkpoint)")
    source = gen.add_mutually_exclusive_group()
    source.add_argument("--labels", type=Path, help="label maps from `medsynth labels` (folder or manifest)")
    source.add_argument(
        "--n", type=int, help="sample N new label maps (from --from, default: the model's training data)"
    )
    gen.add_argument(
        "--from",
        dest="sources",
        type=Path,
        nargs="+",
        metavar="PREPARED_MANIFEST",
        help="tumor sources for --n (default: the manifest the generator was trained on)",
    )
    gen.add_argument("--healthy", type=Path, nargs="*", help="healthy anatomies for --n")
    gen.add_argument("--reshape", type=Path, help="target distributions for --n (configs/reshape/)")
    gen.add_argument("--label-config", type=Path, help="label placement config for --n")
    gen.add_argument("-o", "--output", type=Path, required=True)
    gen.add_argument("--seed", type=int, help="cohort seed (default 0)")
    gen.add_argument("--shard", help="i/n: this process makes cases with index %% n == i (default 0/1)")
    gen.add_argument("--spacing", type=float, help="resample to this isotropic spacing (mm), e.g. 1")
    gen.add_argument(
        "--label-convention",
        choices=["canonical", "brats2021", "brats2023"],
        help="also write <case>_seg.nii.gz in this BraTS convention (default canonical: none)",
    )
    gen.add_argument(
        "--audit-against",
        type=Path,
        metavar="PREPARED_MANIFEST",
        help="copy-check every case against this manifest's training split before publishing",
    )
    gen.add_argument(
        "--allow-flagged", action="store_true", default=None, help="publish flagged cases anyway (recorded)"
    )
    gen.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        help="generator arithmetic (default auto: bf16 on CUDA and on CPUs with native bf16, else fp32; recorded)",
    )
    gen.add_argument(
        "--k-anonymity",
        type=int,
        metavar="K",
        help="add sampled cases until every group of cases sharing tumor volume bin, hemisphere, region and "
        "sub-regions has >= K members (with --labels, needs --from)",
    )
    gen.set_defaults(func=_generate)

    cohort = commands.add_parser("cohort", help="work with generated cohorts")
    cohort_commands = cohort.add_subparsers(dest="cohort_command", required=True, metavar="ACTION")
    verify = cohort_commands.add_parser(
        "verify", help="re-check checksums, geometry and manifest; exit 1 naming each problem"
    )
    verify.add_argument("cohort", type=Path)
    verify.set_defaults(func=_cohort_verify)

    export = commands.add_parser("export", help="export a cohort as an nnU-Net v2 dataset or in BraTS naming")
    export_commands = export.add_subparsers(dest="format", required=True, metavar="FORMAT")
    nnunet = export_commands.add_parser("nnunet", help="nnU-Net v2 raw dataset (imagesTr, labelsTr, dataset.json)")
    nnunet.add_argument("cohort", type=Path)
    nnunet.add_argument("-o", "--output", type=Path, required=True, help="nnUNet_raw folder")
    nnunet.add_argument("--dataset-id", type=int, required=True)
    nnunet.add_argument("--name", default="MedsynthCohort")
    nnunet.add_argument("--anatomy", action="store_true", help="keep CSF/GM/WM labels (default: tumor labels only)")
    nnunet.set_defaults(func=_export)
    brats = export_commands.add_parser("brats", help="BraTS 2021 or 2023 file names and labels")
    brats.add_argument("cohort", type=Path)
    brats.add_argument("-o", "--output", type=Path, required=True)
    brats.add_argument("--edition", choices=["2021", "2023"], required=True)
    brats.set_defaults(func=_export)

    aud = commands.add_parser(
        "audit",
        help="fidelity, diversity and memorization (copy check, membership inference) of a cohort",
        description="Example: medsynth audit --real prepared/manifest.json --synthetic cohort -o audit "
        "--generator medsynth/pretrained/vae_cpu.pt [seed=1 copies_per_scan=10]; or --config "
        "configs/audit_default.yaml with real_manifest=... cohort=... (the flags set those config fields). "
        "Exits 1 when a synthetic case is flagged as a copy.",
    )
    aud.add_argument("--config", type=Path, help="YAML audit config (default: configs/audit_default.yaml's values)")
    aud.add_argument("--real", type=Path, help="prepared manifest of the real subjects (real_manifest=)")
    aud.add_argument("--synthetic", type=Path, help="cohort folder (cohort=)")
    aud.add_argument("--train-split", help="split the generator was trained on (train_split=; default train)")
    aud.add_argument("--generator", type=Path, help="generator, for the membership-inference test (generator=)")
    aud.add_argument(
        "--features",
        help="feature network for Frechet/MMD: a feature_network.pt from an earlier audit (same network = "
        "comparable numbers) or torchvision:resnet50=WEIGHTS.pt (local weights, 2.5D); default: train one on the "
        "training subjects (features=)",
    )
    aud.add_argument(
        "--feature-steps", type=int, help="training steps of the default feature network (feature_steps=; default 200)"
    )
    aud.add_argument("-o", "--output", type=Path, required=True)
    aud.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (see configs/audit_default.yaml)"
    )
    aud.set_defaults(func=_audit)

    bench = commands.add_parser(
        "benchmark",
        help="train one segmenter on real, synthetic and mixed data; test on held-out real subjects",
        description="Example: medsynth benchmark --config configs/benchmark_cpu.yaml -o runs/benchmark "
        "[--arms real,mixed_gan_50] [--folds 0] [--shard 0/2] [segmenter.steps=100]. Finished (fold, arm, seed) "
        "units are "
        "skipped on a re-run. Then: `medsynth benchmark report RUN` merges the finished units of all shards; "
        "`medsynth benchmark evaluate RUN --test MANIFEST -o OUT [--splits test]` scores the run's saved "
        "segmenters on another prepared test set.",
    )
    bench.add_argument("--config", type=Path, help="YAML benchmark config (configs/benchmark_*.yaml)")
    bench.add_argument("-o", "--output", type=Path, help="results folder (resumable); required but for `report`")
    bench.add_argument("--arms", help="comma-separated arm names to run (default: all in the config)")
    bench.add_argument("--shard", metavar="i/n", help="run every n-th (fold, arm, seed) unit from the i-th (0-based)")
    bench.add_argument(
        "--folds", metavar="0,2", help="run only these folds' units (0-based; default: all), e.g. one job per fold"
    )
    bench.add_argument("--test", type=Path, help="evaluate: the prepared manifest of the other test set")
    bench.add_argument("--splits", help="evaluate: comma-separated splits of --test to score (default: all)")
    bench.add_argument(
        "overrides", nargs="*", metavar="[evaluate RUN | report RUN | KEY=VALUE ...]", help="config overrides"
    )
    bench.set_defaults(func=_benchmark)

    demo = commands.add_parser(
        "demo",
        help="run the pipeline on the bundled sample data",
        description="Builds manifests of the bundled sample, checks and prepares them, and writes previews.",
    )
    demo.add_argument("-o", "--output", type=Path, default=Path("runs/demo"), help="output folder")
    demo.add_argument("--cache-dir", type=Path, help="preprocessing cache root")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    from medsynth.runtime import tune_allocator

    tune_allocator()  # before torch allocates anything: keep freed blocks in the heap (MEDSYNTH_MALLOC=default: off)
    parser = build_parser()
    # key=value overrides may come after options (argparse alone accepts them only before)
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    # Exit status: 2 for a usage or config error (as argparse), 1 for bad input data, a refused
    # output or a failed run (as `manifest check` reporting problems), 130 for Ctrl-C.
    try:
        return args.func(args)
    except (ConfigError, ValueError) as exc:  # ValueError: dataclass validation of configs
        return _error(str(exc), status=2)
    except MedsynthError as exc:
        return _error(str(exc), status=1)
    except OSError as exc:  # read-only output, disk full, a folder where a file belongs, unreadable input
        return _error(_describe_os_error(exc), status=1)
    except KeyboardInterrupt:
        print(
            "medsynth: interrupted (finished work is kept; re-run to resume where the stage supports it)",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:  # a bug: one line for the user, the traceback on request
        if os.environ.get("MEDSYNTH_DEBUG"):
            raise
        return _error(
            f"internal error ({type(exc).__name__}: {_first_line(exc)}); "
            "set MEDSYNTH_DEBUG=1 for the traceback and please report it",
            status=1,
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _describe_os_error(exc: OSError) -> str:
    """'PATH: reason' for an OSError, whichever of its fields are set."""
    reason = exc.strerror or _first_line(exc) or type(exc).__name__
    if exc.filename is None:
        return reason
    from medsynth.io import public_path

    names = public_path(exc.filename) + (f" -> {public_path(exc.filename2)}" if exc.filename2 else "")
    return f"{names}: {reason}"


def _error(message: str, status: int) -> int:
    print(f"medsynth: error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
