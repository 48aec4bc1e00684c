"""Synthetic cohorts: generate (``run_generate``), regenerate one case, verify, export.

>>> from medsynth.cohort import GenerateConfig, run_generate  # doctest: +SKIP
>>> run_generate(GenerateConfig(checkpoint="medsynth/pretrained/vae_cpu.pt", n=4), "cohort")  # doctest: +SKIP
"""

from medsynth.cohort.config import GenerateConfig
from medsynth.cohort.generate import generate_cohort, run_generate
from medsynth.cohort.regenerate import regenerate_case

__all__ = ["GenerateConfig", "generate_cohort", "regenerate_case", "run_generate"]
