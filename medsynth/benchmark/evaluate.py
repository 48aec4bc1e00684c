"""``medsynth benchmark evaluate``: score the saved segmenters of a finished run on another test set.

    $ medsynth benchmark evaluate runs/cv --test runs/shared_prepared/brats2018_wt/manifest.json -o runs/cv_brats2018

Every finished (fold, arm, seed) unit's ``model.pt`` predicts every case of the test manifest;
the output folder has the run's layout and outputs (``runs/``, ``predictions/external/``,
``references/external/``, results, report, plots). The new set is reported as the external test
family, and the run's in-domain rows are carried over, so the primary endpoint (chosen on the
in-domain folds) is tested on the new set. A whole-tumor-only test set is scored on WT only.

Refused before any prediction: a test subject that is a training subject of any fold (by case
id or label-map content), or that a fold's generator was trained on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from medsynth.benchmark.config import RENDERERS, BenchmarkConfig
from medsynth.benchmark.folds import label_digests
from medsynth.benchmark.report import write_outputs
from medsynth.benchmark.run import (
    _machine,
    _split_cases,
    all_folds,
    brats_names,
    channel_indices,
    check_held_out,
    evaluate_run,
    finished_units,
    run_key,
    write_references,
)
from medsynth.config import load_config, save_config
from medsynth.errors import DataError
from medsynth.io import atomic_path, claim_output, read_json, write_json
from medsynth.loaders import LeakageError
from medsynth.manifest import Manifest


def run_evaluate(
    run: str | Path, test: str | Path, output: str | Path, splits: list[str] | None = None, progress: bool = True
) -> Path:
    """Score every finished segmenter of ``run`` on the cases (of ``splits``, default all) of ``test``.

    Resumable per unit, like the run. Returns the path of ``report.md`` in ``output``.
    """
    from medsynth.benchmark.segmenter import build_segmenter
    from medsynth.runtime import select_device

    run, output = Path(run), Path(output)
    if not (run / "config.yaml").is_file():
        raise DataError(f"{run}: no config.yaml; not a benchmark run folder")
    config = load_config(BenchmarkConfig, run / "config.yaml")
    finished, missing = finished_units(config, run)
    if not finished:
        raise DataError(f"{run}: no finished (fold, arm, seed) unit to evaluate")
    loaded = Manifest.load(test, kind="prepared")
    cases = [c for c in loaded.cases(splits) if c.images]
    if not cases:
        raise DataError(f"{test}: no cases with images in splits {splits or 'all'}")
    tests = label_digests(cases)
    _, train_cases, test_cases = _split_cases(config)
    subjects = label_digests([*train_cases, *test_cases])
    for fold in all_folds(config, train_cases, test_cases):
        seen = {subjects[s] for s in fold.train}
        for case_id, digest in sorted(tests.items()):
            if case_id in fold.train or digest in seen:
                where = f"of {fold.name}" if fold.name else "of the run"
                raise LeakageError(f"{test}: test subject {case_id!r} is a training subject {where}")
        generators = {u.arm.synthetic for u, _ in finished if u.fold.index == fold.index and u.arm.synthetic}
        check_held_out(config, fold, tests, sorted(generators - set(RENDERERS)))
    # the evaluation is the run with this test set as its external one: same keys, same report
    evaluated = dataclasses.replace(config, data=dataclasses.replace(config.data, external=str(test)))
    claim_output(output, "benchmark", inputs=[str(test)])
    save_config(evaluated, output / "config.yaml")
    source = Manifest.load(config.data.manifest, kind="prepared")
    modalities = [source.modalities[i] for i in channel_indices(source.modalities, config.data.modalities, "data")]
    indices = channel_indices(loaded.modalities, modalities, str(test))
    references = output / "references" / "external"
    cases_by_name = brats_names([c.case_id for c in cases])
    scored = write_references(loaded, cases, references, cases_by_name, indices, "external")
    device = select_device(config.segmenter.device)
    results = []
    for number, (unit, result) in enumerate(finished, start=1):
        key = run_key(evaluated, unit)
        path = output / unit.folder / "result.json"
        if path.is_file() and read_json(path).get("key") == key:
            results.append(read_json(path))
            print(f"[benchmark] evaluate {number}/{len(finished)} {unit.name}: done before, skipped")
            continue
        model = build_segmenter(config.segmenter, len(indices)).to(device)
        model.load_state_dict(torch.load(run / unit.folder / "model.pt", map_location=device, weights_only=True))
        rows, seconds = evaluate_run(model, config, scored, output / "predictions" / "external" / unit.name)
        in_domain = [m for m in result["metrics"] if m.get("test", "in_domain") == "in_domain"]
        timings = {k: v for k, v in result["timings"].items() if k != "external_seconds"}
        new = result | {
            "key": key,
            "evaluated_from": str(run / unit.folder),
            "metrics": in_domain + rows,
            "timings": timings | {"external_seconds": round(seconds, 2)},
            "prepare_seconds": {},
            "machine": _machine(),
        }
        with atomic_path(path) as tmp:
            write_json(new, tmp)
        results.append(new)
        wt = [m["dice"] for m in rows if m["region"] == "WT"]
        print(
            f"[benchmark] evaluate {number}/{len(finished)} {unit.name}: WT Dice {sum(wt) / len(wt):.3f} "
            f"({seconds:.0f} s)"
        )
    return write_outputs(evaluated, output, results, _machine(), missing=missing)
