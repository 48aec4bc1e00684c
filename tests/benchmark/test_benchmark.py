"""The benchmark end to end on phantoms: outputs, resumption, and the held-out guarantee."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from medsynth.benchmark import BenchmarkConfig, run_benchmark
from medsynth.cli import main
from medsynth.config import from_dict
from medsynth.errors import MedsynthError
from medsynth.io import read_json
from medsynth.loaders import LeakageError

pytestmark = pytest.mark.slow


def tiny(manifest: Path, generator: Path, **changes) -> dict:
    config = {
        "data": {"manifest": str(manifest), "train_splits": ["train"], "test_splits": ["validation"]},
        "synthetic": {"generators": {"vae": str(generator)}, "n_cases": 2},
        "segmenter": {"init_filters": 8, "patch_size": [16, 16, 16], "batch_size": 1, "steps": 2},
        "arms": [
            {"name": "real"},
            {"name": "synthetic_vae", "real": False, "synthetic": "vae", "fraction": 1.0},
            {"name": "mixed_vae_50", "synthetic": "vae", "fraction": 0.5},
            {"name": "real_synthseg_50", "synthetic": "synthseg", "fraction": 0.5},
            {"name": "real_classical", "classical": True},
        ],
        "seeds": [0],
    }
    for section, values in changes.items():
        config[section] = {**config[section], **values} if isinstance(values, dict) else values
    return config


def test_benchmark_writes_results_and_resumes(prepared_phantoms, tiny_generator, tmp_path):
    out = tmp_path / "bench"
    config = from_dict(BenchmarkConfig, tiny(prepared_phantoms, tiny_generator))
    run_benchmark(config, out, arms=["real", "synthetic_vae"], progress=False)
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["real", "synthetic_vae"]
    rows = (out / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2 * 1 * 3  # header + arms x test subjects x regions
    names = read_json(out / "references" / "names.json")
    assert names == {"BraTS-GLI-00000-000": "brats_2013_pat0003_1"}
    prediction = nib.load(out / "predictions" / "real" / "seed0" / "BraTS-GLI-00000-000.nii.gz")
    reference = nib.load(out / "references" / "BraTS-GLI-00000-000-seg.nii.gz")
    raw_root = Path(read_json(prepared_phantoms)["medsynth"]["source_manifest"]).parent
    raw = nib.load(next(raw_root.rglob("*pat0003*/OT*")))
    assert prediction.shape == reference.shape == raw.shape  # the original scan's grid, not the working grid
    np.testing.assert_allclose(prediction.affine, raw.affine)
    assert set(np.unique(prediction.get_fdata())) <= {0, 1, 2, 3}
    assert set(np.unique(reference.get_fdata())) == {0, 1, 2, 3}  # BraTS 2023: 1 NETC, 2 SNFH, 3 ET
    assert (out / "config.yaml").is_file() and (out / "benchmark.png").stat().st_size > 0

    finished = out / "runs" / "real" / "seed0" / "result.json"
    before = finished.stat().st_mtime_ns
    report_path = run_benchmark(config, out, progress=False)  # the rest; real and synthetic_vae are skipped
    assert report_path == out / "report.md"
    assert finished.stat().st_mtime_ns == before
    summary = read_json(out / "results.json")
    assert summary["provenance"]["stage"] == "benchmark"
    assert set(summary["summary"]) == {"real", "synthetic_vae", "mixed_vae_50", "real_synthseg_50", "real_classical"}
    assert summary["summary"]["mixed_vae_50"]["WT"]["vs_baseline"]["pairs"] == 1
    result = read_json(out / "runs" / "mixed_vae_50" / "seed0" / "result.json")
    assert (result["n_real"], result["n_synthetic"]) == (3, 2)
    report = report_path.read_text()
    assert "real_synthseg_50" in report and "HD95" in report

    changed = from_dict(BenchmarkConfig, tiny(prepared_phantoms, tiny_generator, segmenter={"steps": 3}))
    with pytest.raises(MedsynthError, match="another configuration"):
        run_benchmark(changed, out, arms=["real"], progress=False)


def test_same_seed_same_result(prepared_phantoms, tiny_generator, tmp_path):
    config = from_dict(BenchmarkConfig, tiny(prepared_phantoms, tiny_generator))
    results = []
    for name in ("a", "b"):
        run_benchmark(config, tmp_path / name, arms=["real_synthseg_50"], progress=False)
        results.append(read_json(tmp_path / name / "runs" / "real_synthseg_50" / "seed0" / "result.json")["metrics"])
    assert results[0] == results[1]


def test_refuses_a_test_subject_in_training(prepared_phantoms, tiny_generator, tmp_path):
    overlapping = tiny(prepared_phantoms, tiny_generator, data={"test_splits": ["validation", "train"]})
    with pytest.raises(LeakageError, match="both the training and the test"):
        run_benchmark(from_dict(BenchmarkConfig, overlapping), tmp_path / "a", progress=False)
    # test on the subjects the generator was trained on: its synthetic cases would leak them
    swapped = tiny(prepared_phantoms, tiny_generator, data={"train_splits": ["validation"], "test_splits": ["train"]})
    with pytest.raises(LeakageError, match="was trained on test subject"):
        run_benchmark(from_dict(BenchmarkConfig, swapped), tmp_path / "b", arms=["mixed_vae_50"], progress=False)
    assert not (tmp_path / "b" / "runs").exists()  # refused before anything was trained


def test_cli_names_unknown_arms(prepared_phantoms, tiny_generator, tmp_path, capsys):
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(tiny(prepared_phantoms, tiny_generator)))
    assert main(["benchmark", "--config", str(path), "-o", str(tmp_path / "out"), "--arms", "real,nope"]) == 2
    assert "unknown arm(s) ['nope']" in capsys.readouterr().err
    assert main(["benchmark", "--config", str(path), "-o", str(tmp_path / "out"), "seeds=[]"]) == 2
    assert "seeds" in capsys.readouterr().err


def test_unit_key_of_a_real_arm_ignores_the_synthetic_settings(prepared_phantoms, tiny_generator):
    from medsynth.benchmark.folds import Fold
    from medsynth.benchmark.run import Unit, run_key

    def keys(**synthetic) -> dict[str, str]:
        config = from_dict(BenchmarkConfig, tiny(prepared_phantoms, tiny_generator, synthetic=synthetic))
        fold = Fold(None, ["a"], ["b"])
        return {arm.name: run_key(config, Unit(fold, arm, 0)) for arm in config.arms}

    before, after = keys(), keys(labels={"anatomies": "real"}, n_cases=3)
    assert before["real"] == after["real"] and before["real_classical"] == after["real_classical"]
    assert before["mixed_vae_50"] != after["mixed_vae_50"] and before["real_synthseg_50"] != after["real_synthseg_50"]
