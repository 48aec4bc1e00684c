"""The cohort stage's k-anonymity fill: add sampled cases until every populated group has K members.

The cohort stage fills; the audit measures with the same attributes and groups
(:mod:`medsynth.audit.anonymity`, which also explains the quasi-identifiers). The fill is
sequential, deterministic and resumable: the next case's target group follows from the
cases already on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medsynth.audit.anonymity import QuasiIdentifiers
from medsynth.cohort.case import as_saved, case_id, case_provenance
from medsynth.config import to_dict
from medsynth.errors import MedsynthError
from medsynth.io import read_json

if TYPE_CHECKING:
    from medsynth.labels.generate import LabelMapSampler

# write_case(label_map, affine, provenance, source): synthesize one case and write it into cases/<case_id>/
WriteCase = Callable[[np.ndarray, np.ndarray, dict[str, Any], str], None]


def fill_seed(seed: int, index: int, draw: int) -> int:
    """The label-map sampler's seed of draw ``draw`` for fill case ``index``."""
    return int(np.random.SeedSequence([seed, index, 2, draw]).generate_state(1)[0] % (2**31))


def fill_to_k(
    output: Path,
    plan: dict[str, Any],
    base_sampler: LabelMapSampler,
    requested: int,
    k: int,
    quasi_identifiers: QuasiIdentifiers,
    spacing_mm: float | None,
    write_case: WriteCase,
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
        case_id(i): folder_attributes(output / "cases" / case_id(i), quasi_identifiers) for i in range(requested)
    }
    before = anonymity_summary(attributes, quasi_identifiers)
    populated = {group_key(row["attributes"]) for row in before["groups"]}
    draws_spent: dict[tuple, int] = {}
    samplers: dict[tuple, Any] = {}
    written = 0
    index = requested
    bar = tqdm(desc=f"k-anonymity fill to k={k}", unit="case", disable=not progress)
    while True:
        name = case_id(index)
        folder = output / "cases" / name
        if (folder / "provenance.json").exists():
            fill = read_json(folder / "provenance.json").get("k_anonymity_fill")
            if fill is None:
                raise MedsynthError(f"{folder}: not a k-anonymity case (its provenance has no k_anonymity_fill)")
            target_key = group_key(fill["target_group"])
            draws_spent[target_key] = draws_spent.get(target_key, 0) + fill["draws"]
            attributes[name] = folder_attributes(folder, quasi_identifiers)
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
            draw_seed = fill_seed(seed, index, draws)
            draws += 1
            try:
                label_map, affine, record = samplers[key].sample(index, draw_seed)
            except MedsynthError:
                continue  # no draw met the group's targets within the sampler's attempts: a spent draw
            provenance = case_provenance(index, seed, plan, record)
            landed = case_attributes(*as_saved(label_map, affine, spacing_mm), quasi_identifiers, provenance)
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
        write_case(label_map, affine, provenance, f"sampled {name}")
        attributes[name] = landed
        written += 1
        index += 1
        bar.update()
    bar.close()
    after = anonymity_summary(attributes, quasi_identifiers)
    added = [case_id(i) for i in range(requested, index)]
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
