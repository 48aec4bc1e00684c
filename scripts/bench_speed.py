"""Speed of training and generation on this machine: MONAI's fp32 default vs medsynth's options, as ratios.

    .venv/bin/python scripts/bench_speed.py -o reports/performance.json          # ~20 min on 2 cores
    .venv/bin/python scripts/bench_speed.py --quick                              # smoke run, ~2 min

Every measurement runs in its own process (so peak memory is its own, and allocator
settings can differ) after a burn-in; step times are medians over the timed steps.

- GAN and VAE training steps: the real trainer (``medsynth.models.train.run_train``) on the
  bundled sample prepared at the CPU working size (2 mm, 80x96x80) and one size larger
  (1.67 mm, 96x112x96: 1.7x the voxels), per-step times read from its log.
- Segmenter step: the benchmark's SegResNet + DiceCE at its CPU patch (48^3, batch 2) and 64^3.
- Generation: one whole case with the shipped GAN at 2 mm, and an untrained network of the
  same widths at 1 mm (160x192x160; speed does not depend on the weights).

Modes: ``fp32`` (contiguous, as MONAI tutorials run), ``fp32+cl`` (channels_last_3d),
``bf16`` (autocast), ``bf16+cl``, ``fp32+cl+malloc`` (glibc malloc told to keep freed
memory through ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``), ``*+mallopt`` (the same
settings made in-process by ``medsynth.runtime.tune_allocator``, as the ``medsynth`` command
does), and ``bf16+compile`` (``torch.compile``, generation and segmenter only; its compile
time is reported separately). Achieved GFLOP/s come from ``torch.utils.flop_counter`` over one
step, against fp32 and bf16 matmul peaks measured in the same run. ``--only gan,generate``
runs a subset.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

MODES = {
    "fp32": {"precision": "fp32", "channels_last": False},
    "fp32+cl": {"precision": "fp32", "channels_last": True},
    "bf16": {"precision": "bf16", "channels_last": False},
    "bf16+cl": {"precision": "bf16", "channels_last": True},
    "fp32+cl+malloc": {"precision": "fp32", "channels_last": True, "malloc": "env"},
    # medsynth's defaults: the same allocator settings made by the medsynth command at start-up (mallopt)
    "bf16+mallopt": {"precision": "bf16", "channels_last": False, "malloc": "mallopt"},
    "fp32+cl+mallopt": {"precision": "fp32", "channels_last": True, "malloc": "mallopt"},
    "bf16+compile": {"precision": "bf16", "channels_last": False, "malloc": "mallopt", "compile": True},
}
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 31)}
SIZES = {"working": ((2.0, 2.0, 2.0), (80, 96, 80)), "larger": ((1.67, 1.67, 1.67), (96, 112, 96))}
SEGMENTER_SIZES = {"working": (48, 48, 48), "larger": (64, 64, 64)}


def matmul_peak(dtype: torch.dtype, n: int = 2048, seconds: float = 3.0) -> float:
    """Sustained GFLOP/s of an n x n matmul in ``dtype``."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - started) / 1e9


def _autocast(precision: str):
    import contextlib

    return torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def _flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def _median_seconds(fn, steps: int, warmup: int) -> float:
    """Median wall time of ``steps`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    durations = []
    for _ in range(steps):
        started = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations)


def prepare_sample(spacing, grid, root: Path) -> Path:
    from medsynth.data.config import PrepareConfig, PreprocessConfig
    from medsynth.data.manifest import build_manifest
    from medsynth.data.prepare import run_prepare
    from medsynth.demo import sample_data_dir

    build_manifest(sample_data_dir() / "brats2013_2mm", root / "raw.json", name="sample")
    config = PrepareConfig(
        manifest=str(root / "raw.json"),
        preprocess=PreprocessConfig(spacing_mm=tuple(spacing), grid=tuple(grid)),
        cache_dir=str(root / "cache"),
        previews=False,
    )
    return run_prepare(config, root / "prepared", progress=False)


def measure_generator_step(model: str, manifest: str, mode: dict, steps: int, warmup: int) -> dict:
    """Median step time of the real trainer, read from its per-step log."""
    import csv

    from medsynth.config import load_config
    from medsynth.models.config import TrainConfig
    from medsynth.models.train import run_train

    overrides = [
        f"manifest={manifest}",
        f"steps={warmup + steps}",
        "log_every=1",
        "preview_every=100000",
        "checkpoint_every=100000",
        f"precision={mode['precision']}",
        f"channels_last={str(mode['channels_last']).lower()}",
    ]
    config = load_config(TrainConfig, Path(f"configs/{model}_cpu.yaml"), overrides)
    with tempfile.TemporaryDirectory() as tmp:
        run_train(config, tmp, progress=False)
        with open(Path(tmp) / "log.csv") as handle:
            seconds = [float(row["seconds"]) for row in csv.DictReader(handle)]
    durations = [b - a for a, b in itertools.pairwise(seconds)][warmup - 1 :]
    one_step = load_config(TrainConfig, Path(f"configs/{model}_cpu.yaml"), [*overrides[:1], "steps=1", *overrides[2:]])
    with tempfile.TemporaryDirectory() as tmp:
        flops = _flops(lambda: run_train(one_step, tmp, progress=False))
    return {"median_s": statistics.median(durations), "flops": flops}


def _compile(model: torch.nn.Module, mode: dict, first_call) -> tuple[torch.nn.Module, float | None]:
    """``torch.compile`` the model when the mode asks; returns it and the seconds of the first (compiling) call."""
    if not mode.get("compile"):
        return model, None
    compiled = torch.compile(model)
    started = time.perf_counter()
    first_call(compiled)
    return compiled, time.perf_counter() - started


def measure_segmenter_step(patch: tuple[int, int, int], mode: dict, steps: int, warmup: int) -> dict:
    from monai.losses import DiceCELoss

    from medsynth.benchmark.config import SegmenterConfig
    from medsynth.benchmark.segmenter import build_segmenter

    torch.manual_seed(0)
    model = build_segmenter(SegmenterConfig(channels_last=mode["channels_last"]), in_channels=2)
    memory_format = torch.channels_last_3d if mode["channels_last"] else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = DiceCELoss(sigmoid=True)
    images = torch.randn(2, 2, *patch).contiguous(memory_format=memory_format)
    targets = (torch.rand(2, 3, *patch) > 0.8).float()

    def step(network=model):
        with _autocast(mode["precision"]):
            logits = network(images)
        loss = loss_fn(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    flops = _flops(step)  # counted eagerly: the flop counter does not see into compiled graphs
    network, compile_s = _compile(model, mode, step)
    median = _median_seconds(lambda: step(network), steps, warmup)
    return {"median_s": median, "flops": flops, "compile_s": compile_s}


def measure_generation(spacing_mm: float, mode: dict, repeats: int, warmup: int) -> dict:
    import numpy as np

    import medsynth
    from medsynth.data.scheme import NUM_CLASSES
    from medsynth.models.data import one_hot
    from medsynth.models.networks import build_generator

    shipped = medsynth.load_generator(medsynth.pretrained("gan"), device="cpu")
    grid = shipped.grid if spacing_mm == 2.0 else tuple(2 * g for g in shipped.grid)
    model = shipped.model if spacing_mm == 2.0 else build_generator("gan", shipped.network, 2, NUM_CLASSES, grid)
    memory_format = torch.channels_last_3d if mode["channels_last"] else torch.contiguous_format
    model = model.to(memory_format=memory_format).eval()
    labels = torch.as_tensor(np.random.default_rng(0).integers(0, 7, (1, *grid)))
    seg = one_hot(labels).contiguous(memory_format=memory_format)
    z = torch.randn(1, shipped.network.z_dim)

    @torch.no_grad()
    def generate(network=model):
        with _autocast(mode["precision"]):
            return network(seg, z).float()

    flops = _flops(generate)
    network, compile_s = _compile(model, mode, generate)
    median = _median_seconds(lambda: generate(network), repeats, warmup)
    return {"median_s": median, "flops": flops, "grid": list(grid), "compile_s": compile_s}


def child(spec: dict) -> dict:
    if MODES[spec["mode"]].get("malloc") == "mallopt":
        from medsynth.runtime import tune_allocator

        assert tune_allocator(), "mallopt had no effect"
    torch.manual_seed(0)
    burn_in = time.perf_counter()
    while time.perf_counter() - burn_in < spec["burn_in_s"]:  # fresh processes run slow at first
        torch.randn(512, 512) @ torch.randn(512, 512)
    mode = MODES[spec["mode"]]
    if spec["workload"] in ("gan", "vae"):
        result = measure_generator_step(spec["workload"], spec["manifest"], mode, spec["steps"], spec["warmup"])
    elif spec["workload"] == "segmenter":
        result = measure_segmenter_step(tuple(spec["patch"]), mode, spec["steps"], spec["warmup"])
    else:
        result = measure_generation(spec["spacing_mm"], mode, spec["steps"], spec["warmup"])
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def run_child(spec: dict) -> dict:
    env = dict(os.environ)
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    if MODES[spec["mode"]].get("malloc") == "env":
        env.update(MALLOC_ENV)
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{spec}: failed\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, help="write all measurements as JSON here")
    parser.add_argument("--quick", action="store_true", help="few steps, working size only, two modes")
    parser.add_argument("--only", help="comma-separated workloads: gan, vae, segmenter, generate")
    parser.add_argument("--modes", help="comma-separated modes, the first is the baseline of the ratios")
    parser.add_argument("--sizes", help="comma-separated sizes: working, larger")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0

    sizes = args.sizes.split(",") if args.sizes else ["working"] if args.quick else list(SIZES)
    steps, warmup, burn_in = (3, 1, 2.0) if args.quick else (6, 2, 5.0)
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    threads = torch.get_num_threads()
    print(f"matmul peak: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s ({threads} threads)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        manifests = {s: str(prepare_sample(*SIZES[s], Path(tmp) / s)) for s in sizes}
        workloads = []  # (name, size, spec, modes)
        for size in sizes:
            for model in ("gan", "vae"):  # the trainer has no torch.compile path
                modes = ["fp32", "fp32+cl", "fp32+cl+malloc", "bf16", "bf16+mallopt"]
                workloads.append((f"{model} step", size, {"workload": model, "manifest": manifests[size]}, modes))
            spec = {"workload": "segmenter", "patch": SEGMENTER_SIZES[size]}
            modes = ["fp32", "fp32+cl", "bf16", "fp32+cl+malloc", "fp32+cl+mallopt", "bf16+compile"]
            workloads.append(("segmenter step", size, spec, modes))
        for spacing in [2.0] if args.quick else [2.0, 1.0]:
            spec = {"workload": "generate", "spacing_mm": spacing}
            modes = ["fp32", "fp32+cl", "fp32+cl+malloc", "bf16", "bf16+mallopt", "bf16+compile"]
            workloads.append(("generate 1 case", f"{spacing:g} mm", spec, modes))
        if args.only:
            keep = set(args.only.split(","))
            workloads = [w for w in workloads if w[2]["workload"] in keep]
        for name, size, spec, modes in workloads:
            baseline = None
            if args.modes:
                modes = [m for m in args.modes.split(",") if m in MODES]
            for mode in ["fp32", "bf16+mallopt"] if args.quick else modes:
                counts = {"steps": steps, "warmup": warmup}
                result = run_child({**spec, "mode": mode, **counts, "burn_in_s": burn_in})
                baseline = baseline or result["median_s"]
                gflops = result["flops"] / result["median_s"] / 1e9
                peak = peaks["bf16" if mode.startswith("bf16") else "fp32"]
                row = {"workload": name, "size": size, "mode": mode, **result, "gflops": gflops}
                row |= {"speedup_vs_fp32": baseline / result["median_s"], "fraction_of_peak": gflops / peak}
                rows.append(row)
                print(
                    f"{name:16s} {size:8s} {mode:15s} {result['median_s']:8.3f} s  x{row['speedup_vs_fp32']:.2f}  "
                    f"{gflops:7.1f} GFLOP/s ({100 * row['fraction_of_peak']:.0f}% of {peak:.0f})  "
                    f"{result['max_rss_mb']:7.0f} MB"
                    + (f"  (compile {result['compile_s']:.1f} s)" if result.get("compile_s") else ""),
                    flush=True,
                )
    if args.output:
        from medsynth.benchmark.run import cpu_model

        machine = {"platform": platform.platform(), "processor": cpu_model(), "cpus": os.cpu_count()}
        machine |= {"threads": torch.get_num_threads(), "torch": torch.__version__}
        args.output.write_text(json.dumps({"machine": machine, "peaks_gflops": peaks, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
