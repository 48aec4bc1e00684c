"""Is the synthetic data worth anything? The same segmenter trained on real, synthetic and mixed data.

    $ medsynth benchmark --config configs/benchmark_cpu.yaml -o runs/benchmark
    $ medsynth benchmark --config configs/benchmark_cv.yaml -o runs/cv --shard 0/2   # cross-validated, sharded
    $ medsynth benchmark report runs/cv
    $ medsynth benchmark evaluate runs/cv --test other/manifest.json -o runs/cv_other

>>> from medsynth.benchmark import BenchmarkConfig, run_benchmark
>>> from medsynth.config import load_config
>>> config = load_config(BenchmarkConfig, "configs/benchmark_cpu.yaml")  # doctest: +SKIP
>>> report = run_benchmark(config, "runs/benchmark", arms=["real", "mixed_gan_50"])  # doctest: +SKIP
>>> report.name  # the numbers are in results.json beside it  # doctest: +SKIP
'report.md'
"""

from medsynth.benchmark.config import (
    ArmConfig,
    BenchmarkConfig,
    DataConfig,
    FoldsConfig,
    PrimaryConfig,
    SegmenterConfig,
    SyntheticConfig,
)
from medsynth.benchmark.evaluate import run_evaluate
from medsynth.benchmark.metrics import HD95_EMPTY_MM, dice, hd95, region_metrics
from medsynth.benchmark.run import report_run, run_benchmark

__all__ = [
    "HD95_EMPTY_MM",
    "ArmConfig",
    "BenchmarkConfig",
    "DataConfig",
    "FoldsConfig",
    "PrimaryConfig",
    "SegmenterConfig",
    "SyntheticConfig",
    "dice",
    "hd95",
    "region_metrics",
    "report_run",
    "run_benchmark",
    "run_evaluate",
]
