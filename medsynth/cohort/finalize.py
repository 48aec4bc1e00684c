"""The files that make a folder of cases a shareable cohort.

``manifest.json`` (MONAI/MSD datalist), ``README.md`` (dataset card), ``preview.png``,
``cohort.json`` (cohort provenance), ``config.yaml`` (the resolved config, written by the
cohort stage before these) and ``checksums.sha256`` (every other file).

Hidden entries are medsynth's bookkeeping, not cohort content, and are never listed nor read
as cases: the ownership record ``.medsynth-output.json`` (:func:`medsynth.io.claim_output`)
and the temporaries of writes in progress (``.<name>.<host>-<pid>.*.tmp*``). ``medsynth cohort
verify`` skips hidden files alike.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from medsynth._version import __version__
from medsynth.data.scheme import CLASS_NAMES, TUMOR_CLASSES
from medsynth.io import atomic_path, load_nifti, read_json, sha256, write_json
from medsynth.labels.locations import location_of
from medsynth.manifest import Manifest, write_manifest

CHECKSUMS = "checksums.sha256"


def finalize(
    root: Path,
    plan: dict[str, Any],
    seconds: float,
    command: str,
    run_provenance: dict[str, Any],
    audit: dict | None = None,
    anonymity: dict | None = None,
    copy_check: str | None = None,
) -> None:
    """Write manifest, cohort.json, preview, dataset card and checksums for the cases under ``root``.

    ``copy_check``: how the publication gate was decided (``audit_against``, ``training data found by
    content``, ``training data not found``, ``off``); recorded in cohort.json and said on the card.

    ``run_provenance``: the run's :func:`medsynth.manifest.provenance` record (config, seed, input
    checksums), the same in manifest.json and cohort.json.
    ``audit``: the copy check's result; ``anonymity``: the k-anonymity fill's record (K, k before
    and after, cases added), both recorded in cohort.json and the card.
    """
    modalities = plan["generator"]["modalities"]
    entries: list[dict[str, Any]] = []
    stats = []
    previews = []
    for folder in sorted((root / "cases").iterdir()):
        if folder.name.startswith(".") or not (folder / "provenance.json").exists():
            continue  # a hidden folder is a case being written (or left by a killed run), not a case
        record = read_json(folder / "provenance.json")
        case_id = record["case_id"]
        rel = Path("cases") / case_id
        label_map, affine, _ = load_nifti(folder / f"{case_id}_label_map.nii.gz", dtype=np.int16)
        tumor = np.isin(label_map, TUMOR_CLASSES)
        voxel_ml = float(abs(np.linalg.det(affine[:3, :3]))) / 1000.0
        hemisphere, region = location_of(tumor, label_map > 0, affine) if tumor.any() else ("none", "none")
        stats.append({"volume_ml": float(tumor.sum()) * voxel_ml, "hemisphere": hemisphere, "region": region})
        entry = {
            "case_id": case_id,
            "image": [(rel / f"{case_id}_{m}.nii.gz").as_posix() for m in modalities],
            "label": (rel / f"{case_id}_label_map.nii.gz").as_posix(),
            "split": record["split"],
            "provenance": (rel / "provenance.json").as_posix(),
        }
        if (folder / f"{case_id}_seg.nii.gz").exists():
            entry["seg"] = (rel / f"{case_id}_seg.nii.gz").as_posix()
        entries.append(entry)
        if len(previews) < 4:
            previews.append((case_id, folder, label_map))
    write_manifest(
        root / "manifest.json",
        kind="cohort",
        name=root.name,
        description=f"synthetic brain MRI cohort made by medsynth {__version__}",
        modalities=modalities,
        labels={str(k): v for k, v in CLASS_NAMES.items()},
        entries=entries,
        provenance=run_provenance,
        label_scheme="canonical",
        label_convention=plan["label_convention"],
        plan=plan,
    )
    manifest = Manifest.load(root / "manifest.json").data
    write_json(
        {
            "plan": plan,
            "medsynth": __version__,
            "command": command,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds_last_run": round(seconds, 1),
            "provenance": run_provenance,
            **({"k_anonymity": anonymity} if anonymity else {}),
            **({"copy_check": copy_check} if copy_check else {}),
        },
        root / "cohort.json",
    )
    _preview(root / "preview.png", previews, modalities)
    _card(root / "README.md", manifest, plan, stats, audit, anonymity, copy_check)
    write_checksums(root)


def _listed(root: Path, path: Path) -> bool:
    """Whether ``checksums.sha256`` lists ``path``: every file but itself and hidden entries (or files inside them)."""
    rel = path.relative_to(root)
    return path.is_file() and path.name != CHECKSUMS and not any(part.startswith(".") for part in rel.parts)


def write_checksums(root: Path) -> None:
    files = sorted(p for p in root.rglob("*") if _listed(root, p))
    with atomic_path(root / CHECKSUMS) as tmp:
        tmp.write_text("".join(f"{sha256(p)}  {p.relative_to(root).as_posix()}\n" for p in files))


def _preview(path: Path, cases: list[tuple[str, Path, np.ndarray]], modalities: list[str]) -> None:
    from medsynth.viz import case_tiles, save_grid, tumor_center

    tiles, names = [], []
    for case_id, folder, label_map in cases:
        images = np.stack([load_nifti(folder / f"{case_id}_{m}.nii.gz")[0] for m in modalities])
        center = tumor_center(label_map)
        tiles += case_tiles(images, label_map, center=center)[0]
        names += [*(f"{case_id} {m}" for m in modalities), "label map", f"{modalities[0]} + tumor"]
    save_grid(tiles, 3, path, title="synthetic cases (axial, coronal, sagittal through the tumor)", row_names=names)


def _anonymity_paragraph(anonymity: dict[str, Any]) -> str:
    added = anonymity["added_case_ids"]
    fill = (
        f"the smallest group had {anonymity['k_before']} before {len(added)} case(s) ({added[0]}-{added[-1]}) were "
        "added, each from a label map drawn for an under-filled group"
        if added
        else "no case had to be added"
    )
    return (
        f"k-anonymity of what the cases describe ({', '.join(anonymity['attributes'])}): every group of cases "
        f"sharing these values has at least {anonymity['k_after']} members (requested K = {anonymity['k']}; {fill}; "
        "`k_anonymity.json` lists the groups). This limits what the descriptive attributes alone single out; it "
        "says nothing about the images themselves."
    )


def _privacy_paragraph(privacy: dict[str, Any] | None) -> str:
    """The card's differential-privacy line, from the generator's training record."""
    if not privacy:
        return "Differential privacy: the generator was not trained with differential privacy; no formal guarantee."
    from medsynth.models.privacy import describe

    return f"Differential privacy: the generator's training was {describe(privacy)}"


def _not_checked(gate: str | None) -> str:
    """Why no copy check ran: the card says so plainly."""
    if gate == "training data not found":
        return (
            "**This cohort was not checked for copies**: the generator's training subjects are not on the machine "
            "that made it (give them with `medsynth generate --audit-against PREPARED_MANIFEST`). "
        )
    if gate == "cohort resampled":
        return (
            "**This cohort was not checked for copies**: it was resampled to another voxel size than the "
            "generator's training scans (check it at the generator's grid with `medsynth audit`). "
        )
    if gate == "off":
        return "**This cohort was not checked for copies** (`copy_check=false`). "
    return "No copy check was run on this cohort (`medsynth generate --audit-against PREPARED_MANIFEST`). "


def _anatomy_lines(plan: dict[str, Any]) -> list[str]:
    """Where sampled label maps' brains came from: public healthy anatomies, or (a privacy caveat) patients'."""
    if plan.get("label_maps") != "sampled":
        return []
    anatomies = plan.get("label_config", {}).get("anatomies", "all")
    deformed = plan.get("label_config", {}).get("deformation", {}).get("anatomies", "none") != "none"
    tumors = plan.get("default_sources", {}).get("tumors_from")
    lines = [f"- Tumors: from {tumors}." if tumors else "- Tumors: from the `--from` manifest's training split."]
    if anatomies == "healthy":
        lines.append(
            "- Anatomies: public healthy brains only (SynthSeg label maps, Colin27)"
            + (
                ", each case's randomly deformed (recorded in its provenance): no case has a patient's brain shape "
                "and no two share one."
                if deformed
                else "; not deformed, so cases made from one healthy brain share its shape."
            )
        )
    else:
        lines.append(
            "- Anatomies: **include real patients' brains** (`anatomies: "
            f"{anatomies}`); a brain's shape can identify a patient: check the copy audit before sharing."
        )
    return lines


def _card(
    path: Path,
    manifest: dict[str, Any],
    plan: dict[str, Any],
    stats: list[dict[str, Any]],
    audit: dict | None,
    anonymity: dict | None = None,
    copy_check: str | None = None,
) -> None:
    generator = plan["generator"]
    volumes = np.array([s["volume_ml"] for s in stats])
    sides = {k: sum(s["hemisphere"] == k for s in stats) for k in ("left", "right")}
    regions = {}
    for s in stats:
        regions[s["region"]] = regions.get(s["region"], 0) + 1
    n = len(stats)
    training = generator.get("training", {})
    lines = [
        f"# {manifest['name']}: a synthetic brain MRI cohort with tumor label maps",
        "",
        f"{n} synthetic cases, each with {', '.join(generator['modalities'])} images and a label map of brain "
        "anatomy and tumor sub-regions. **No case is a real patient**: each image was generated by a "
        f"{'conditional GAN' if generator['kind'] == 'gan' else 'conditional VAE'} from a label map that medsynth "
        "made by transforming real tumors and placing them into brain anatomies.",
        "",
        "## Contents",
        "",
        "| file | what |",
        "| --- | --- |",
        "| `cases/<case>/<case>_<modality>.nii.gz` | synthetic images "
        "(float32, z-scored inside the brain, 0 outside) |",
        "| `cases/<case>/<case>_label_map.nii.gz` | label map: 0 background, 1 CSF, 2 GM, 3 WM, 4 non-enhancing core "
        "(NETC), 5 edema (SNFH), 6 enhancing tumor (ET) |",
        "| `cases/<case>/provenance.json` | seeds, generator checksum and the full recipe of the label map |",
        "| `manifest.json` | MONAI/MSD datalist (`monai.data.load_decathlon_datalist(path)` reads it) |",
        "| `checksums.sha256` | SHA-256 of every file (`sha256sum -c checksums.sha256`, or `medsynth cohort verify`) |",
        "| `preview.png` | mid slices of the first cases |",
        "",
        f"Grid: {plan['spacing_mm']} mm voxels, RAS orientation. Tumor regions: whole tumor = labels 4-6, "
        "tumor core = 4 and 6, enhancing = 6.",
        "",
        "## Tumors",
        "",
        f"Whole-tumor volume (ml): min {volumes.min():.1f}, median {np.median(volumes):.1f}, max {volumes.max():.1f}. "
        f"Side: {sides['left']} left, {sides['right']} right. Region: "
        + ", ".join(f"{k} {v}" for k, v in sorted(regions.items()))
        + ".",
        "",
        "## How it was made",
        "",
        f"- Generator: `{Path(generator['path']).name}` (sha256 `{generator['sha256'][:16]}...`), a "
        f"{generator['kind'].upper()} trained on {len(training.get('cases', []))} subject(s): "
        f"{', '.join(training.get('cases', [])) or 'unknown'}.",
        f"- Label maps: {plan['label_maps'] if plan['label_maps'] != 'sampled' else 'sampled by medsynth labels'}; "
        f"cohort seed {plan['seed']}. Every case can be regenerated from its `provenance.json`.",
        *_anatomy_lines(plan),
        f"- Software: medsynth {__version__}.",
        "",
        "## Intended use and limits",
        "",
        "- For research on tumor segmentation (augmenting or replacing real training data) and for sharing "
        "data-shaped examples; not for clinical use.",
        "- Images come from a small model trained on few subjects: textures are smoother than real MRI and the "
        "intensity of some tissue classes can be off (see medsynth's `reports/generators.md`). Check the model's "
        "report before drawing conclusions.",
        "- Tumor shapes come from a handful of real tumors (rotated, rescaled, deformed): shapes are less varied "
        "than in a real cohort.",
        "",
        "## Privacy",
        "",
        *(
            [
                f"Copy check before publication ({audit['verdict']}): the nearest training scan of every case has "
                f"copy similarity {min(c['ncc'] for c in audit['cases']):.3f}-"
                f"{max(c['ncc'] for c in audit['cases']):.3f}; copies are flagged from {audit['threshold_ncc']:.3f} "
                "(calibrated on shifted, rotated, re-contrasted, blurred, partial and one-modality copies of the "
                f"training scans). Flagged and published anyway: {', '.join(audit['flagged']) or 'none'}. "
                "This rules out near-copies, not every leak.",
            ]
            if audit
            else [
                _not_checked(copy_check)
                + "Synthetic data can still copy training scans (memorization); run `medsynth audit` before "
                "sharing outside the group that holds the training data."
            ]
        ),
        *(["", _anonymity_paragraph(anonymity)] if anonymity else []),
        "",
        _privacy_paragraph(training.get("privacy")),
        "",
        "## Licence",
        "",
        "The generator was trained on BraTS data (CC BY-NC-SA 3.0). This cohort is a derivative and carries the "
        "same licence: attribution, non-commercial, share-alike. Cite the BraTS challenge papers when you use it.",
        "",
    ]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
