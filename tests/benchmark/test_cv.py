"""Cross-validation, sharding, external whole-tumor-only tests and `benchmark evaluate`, on phantoms."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from medsynth.benchmark import BenchmarkConfig, run_benchmark
from medsynth.benchmark.run import report_run
from medsynth.cli import main
from medsynth.config import from_dict, save_config
from medsynth.errors import MedsynthError
from medsynth.io import read_json, write_json
from medsynth.loaders import LeakageError
from tests.benchmark.test_benchmark import tiny
from tests.conftest import phantom, save

pytestmark = pytest.mark.slow

WT_LAYOUT = Path(__file__).resolve().parents[2] / "configs" / "layouts" / "brats2018_wt.yaml"


@pytest.fixture(scope="module")
def prepared_external_wt(tmp_path_factory) -> Path:
    """Two subjects in brats2018_wt's shape (FLAIR, T1, whole-tumor mask only), prepared on the phantoms' grid."""
    from medsynth.data.manifest import build_manifest
    from medsynth.data.prepare import prepare
    from medsynth.data.preprocess import PreprocessConfig

    root = tmp_path_factory.mktemp("external_wt")
    for i in (7, 8):  # seeds the phantom subjects 0-3 do not use
        case = phantom(i)
        folder = root / "raw" / f"Brats18_TEST_{i:03d}_1"
        save((case["flair"] * 120 + 400) * case["mask"], folder / "FLAIR.nii.gz")
        save((case["t1c"] * 90 + 600) * case["mask"], folder / "T1.nii.gz")
        save((case["label"] > 0).astype(np.float32), folder / "GT_W.nii.gz")
    build_manifest(root / "raw", root / "m.json", layout=WT_LAYOUT)
    config = PreprocessConfig(spacing_mm=(2.0, 2.0, 2.0), grid=(48, 48, 48))
    prepare(root / "m.json", root / "prepared", config, cache_dir=root / "cache", previews=False, progress=False)
    return root / "prepared" / "manifest.json"


def cv(prepared_phantoms, tiny_generator, external=None, **changes) -> BenchmarkConfig:
    config = tiny(
        prepared_phantoms,
        tiny_generator,
        arms=[{"name": "real"}, {"name": "real_synthseg_50", "synthetic": "synthseg", "fraction": 0.5}],
        **changes,
    )
    config["data"] = {**config["data"], "modalities": ["flair"], "external": str(external or "")}
    config["folds"] = {"k": 2, "seed": 0}
    if external:
        config["primary"] = {"candidates": ["real_synthseg_50"], "baseline": "real", "test": "external"}
    return from_dict(BenchmarkConfig, config)


def test_a_leaked_fold_is_refused(prepared_phantoms, tiny_generator, tmp_path):
    # the tiny VAE was trained on the three train subjects: in a 2-fold CV over all four, each fold tests one
    config = cv(prepared_phantoms, tiny_generator)
    config.arms.append(from_dict(BenchmarkConfig, tiny(prepared_phantoms, tiny_generator)).arms[2])  # mixed_vae_50
    with pytest.raises(LeakageError, match=r"fold\d: generator 'vae' .* was trained on test subject"):
        run_benchmark(config, tmp_path / "cv", progress=False)
    assert not (tmp_path / "cv" / "runs").exists()  # refused before anything was made or trained


def test_shards_union_equals_the_whole_and_external_wt_only(
    prepared_phantoms, tiny_generator, prepared_external_wt, tmp_path, capsys
):
    config = cv(prepared_phantoms, tiny_generator, external=prepared_external_wt)
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    run_benchmark(config, whole, progress=False)
    run_benchmark(config, sharded, progress=False, shard=(0, 2), folds=[0])  # fold 0 in two shards, then fold 1
    save_config(config, tmp_path / "cv.yaml")
    argv = ["benchmark", "--config", str(tmp_path / "cv.yaml"), "-o", str(sharded)]
    assert main([*argv, "--shard", "2/2"]) == 2
    assert "--shard: expected i/n with 0 <= i < n" in capsys.readouterr().err
    assert main([*argv, "--folds", "3"]) == 2
    assert "--folds: no fold(s) [3]; this config has folds 0-1" in capsys.readouterr().err
    assert main([*argv, "--folds", "0", "--shard", "1/2"]) == 0
    assert len(list((sharded / "runs").rglob("result.json"))) == 2  # fold 0 only
    assert main([*argv, "--folds", "1"]) == 0
    report_run(sharded)

    def rows(folder: Path) -> list[dict]:
        return sorted(read_json(folder / "results.json")["rows"], key=lambda r: tuple(map(str, r.values())))

    assert rows(sharded) == rows(whole)
    units = sorted(str(p.parent.relative_to(whole)) for p in (whole / "runs").rglob("result.json"))
    assert units == [f"runs/fold{f}/{a}/seed0" for f in (0, 1) for a in ("real", "real_synthseg_50")]
    tested = [r["case_id"] for r in rows(whole) if r["test"] == "in_domain" and r["region"] == "WT"]
    assert Counter(tested) == dict.fromkeys(set(tested), 2) and len(set(tested)) == 4  # each subject once per arm

    external = [r for r in rows(whole) if r["test"] == "external"]
    assert {r["region"] for r in external} == {"WT"}  # whole-tumor-only references: no TC/ET rows, not zeros
    assert len(external) == 2 * 2 * 2  # folds x arms x subjects
    results = read_json(whole / "results.json")
    assert set(results["external"]["real"]) == {"WT"}
    assert set(results["summary"]["real"]) == {"WT", "TC", "ET"}
    assert "dice_ci" in results["summary"]["real"]["WT"]
    (schedule,) = results["schedules"]  # one process, one thread count: units per hour of the whole run
    assert schedule["units"] == 4 and schedule["processes"] == 1 and schedule["units_per_hour"] > 0
    assert results["external"]["real_synthseg_50"]["WT"]["vs_baseline"]["dice_wilcoxon_p"] is not None
    assert results["primary"]["chosen"] == "real_synthseg_50"
    assert results["primary"]["comparison"]["subjects"] == 2
    report = (whole / "report.md").read_text()
    assert report.index("## Primary endpoint") < report.index("## In-domain") < report.index("## External")
    assert "## External test" in report and "TC Dice" not in report.split("## External test")[1]
    assert (whole / "forest_external.png").stat().st_size > 0
    assert (whole / "folds" / "fold0" / "manifest.json").is_file()

    (sharded / "runs" / "fold1" / "real" / "seed0" / "result.json").unlink()
    assert main(["benchmark", "report", str(sharded)]) == 0
    assert read_json(sharded / "results.json")["missing"] == ["fold1/real/seed0"]
    stale = sharded / "runs" / "fold0" / "real" / "seed0" / "result.json"
    write_json(read_json(stale) | {"key": "another"}, stale)  # e.g. the prepared data were remade since
    before = (sharded / "report.md").read_text()
    assert main(["benchmark", "report", str(sharded)]) == 1
    assert f"{stale}: made with another configuration or other inputs" in capsys.readouterr().err
    assert (sharded / "report.md").read_text() == before  # the last report is kept


def test_evaluate_reproduces_the_run_and_refuses_training_subjects(prepared_phantoms, tiny_generator, tmp_path, capsys):
    config = from_dict(BenchmarkConfig, tiny(prepared_phantoms, tiny_generator, arms=[{"name": "real"}]))
    run_benchmark(config, tmp_path / "run", progress=False)
    out = tmp_path / "evaluated"
    argv = ["benchmark", "evaluate", str(tmp_path / "run"), "--test", str(prepared_phantoms), "-o", str(out)]
    assert main(argv) == 1  # all splits: the training subjects are in it
    assert "is a training subject of the run" in capsys.readouterr().err
    assert main([*argv, "--splits", "validation"]) == 0
    evaluated = read_json(out / "results.json")["rows"]
    own = {(r["case_id"], r["region"]): r["dice"] for r in evaluated if r["test"] == "in_domain"}
    again = {(r["case_id"], r["region"]): r["dice"] for r in evaluated if r["test"] == "external"}
    assert own == pytest.approx(again) and len(own) == 3
    assert (out / "report.md").is_file()


def test_per_fold_generators_see_only_their_folds_training_subjects(prepared_phantoms, tiny_generator, tmp_path):
    from medsynth.models.config import TrainConfig
    from medsynth.models.train import run_train

    out = tmp_path / "cv"
    template = str(tmp_path / "vae_fold{fold}" / "generator.pt")
    config = cv(prepared_phantoms, tiny_generator, synthetic={"generators": {"vae": template}})
    config.arms = [from_dict(BenchmarkConfig, tiny(prepared_phantoms, tiny_generator)).arms[2]]  # mixed_vae_50
    with pytest.raises(MedsynthError, match=r"train it on folds/fold0/manifest\.json"):
        run_benchmark(config, out, progress=False)
    for k in (0, 1):  # trained on the fold manifests the refused run wrote
        train = {
            "model": "vae",
            "manifest": str(out / "folds" / f"fold{k}" / "manifest.json"),
            "network": {"channels": [4, 4, 8], "z_dim": 4, "spade_channels": 4},
            "steps": 2,
            "loss": {"adversarial_weight": 0.0},
        }
        checkpoint = run_train(from_dict(TrainConfig, train), tmp_path / f"vae_fold{k}", progress=False)
        assert checkpoint == Path(template.format(fold=k))
    run_benchmark(config, out, progress=False)
    for k in (0, 1):
        fold = read_json(out / "runs" / f"fold{k}" / "mixed_vae_50" / "seed0" / "result.json")
        cohort = out / "folds" / f"fold{k}" / "synthetic" / "cohort_vae"
        records = [read_json(p)["label_map_record"] for p in cohort.rglob("provenance.json")]
        tumors = {r["tumor"]["case_id"] for r in records}
        anatomies = {r["anatomy"]["case_id"] for r in records if r["anatomy"]["split"] != "healthy"}
        assert tumors and tumors | anatomies <= set(fold["fold_train"])  # nothing of the fold's test subjects
