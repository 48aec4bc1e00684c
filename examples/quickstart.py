# %% [markdown]
# # medsynth quickstart: from four BraTS subjects to a mixed real + synthetic training loop
#
# Run it as a script, `python examples/quickstart.py`, or open `examples/quickstart.ipynb` (the
# same code, made from this script by `python scripts/make_notebook.py`). Every output goes into
# one work folder: `$MEDSYNTH_EXAMPLE_DIR` when set, otherwise a new temporary folder (its path
# is printed below). Under a minute on 2 CPU cores; no GPU, no download.
#
# The steps, each one call of medsynth's public API and one `medsynth` command:
#
# 1. build a manifest of the bundled sample and prepare it (`medsynth manifest build`, `medsynth prepare`);
# 2. make new tumor label maps from the training subjects (`medsynth labels`);
# 3. turn them into a synthetic cohort with the shipped GAN (`medsynth generate`);
# 4. look at real and synthetic cases side by side;
# 5. train a small MONAI segmenter on real + synthetic cases mixed 50/50 (`medsynth.MixedDataset`).

# %%
import os
import sys
import tempfile
from pathlib import Path

import matplotlib
import nibabel as nib
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from monai.data import DataLoader, list_data_collate
from monai.losses import DiceCELoss
from monai.networks.nets import UNet

import medsynth
from medsynth.loaders import load_transform, patch_transform, real_items, synthetic_items

WORK = Path(os.environ.get("MEDSYNTH_EXAMPLE_DIR") or tempfile.mkdtemp(prefix="medsynth_quickstart_"))
WORK.mkdir(parents=True, exist_ok=True)
SEED = 0
N_SYNTHETIC = 4
print(f"medsynth {medsynth.__version__}, torch {torch.__version__}; work folder: {WORK}")

# %% [markdown]
# ## 1. The bundled sample: manifest and preparation
#
# `medsynth/sample_data/brats2013_2mm` holds four BraTS 2013 subjects at 2 mm (T1c, FLAIR, brain
# mask, tumor labels), already split into `train/` (2) and `validation/` (2).
#
# - `build_manifest` scans the folder, detects the layout from the file names and writes a
#   MONAI/MSD datalist (`manifest.json`, with a checksum of every file).
# - `run_prepare` reorients to RAS, resamples to 2 mm, normalises intensities inside the brain,
#   crops to an 80x96x80 grid, maps the labels to medsynth's canonical scheme and adds anatomy
#   (CSF, grey and white matter) to each label map. It writes `prepared/manifest.json`, one
#   folder per case, previews and the resolved `config.yaml`.
#
# The same from a shell:
#
# ```bash
# medsynth manifest build medsynth/sample_data/brats2013_2mm -o WORK/manifest.json
# medsynth prepare WORK/manifest.json -o WORK/prepared
# ```

# %%
sample = Path(medsynth.__file__).parent / "sample_data" / "brats2013_2mm"
raw_manifest = WORK / "manifest.json"
medsynth.build_manifest(sample, raw_manifest)
problems = medsynth.check_manifest(raw_manifest)
if problems:
    raise medsynth.MedsynthError("; ".join(problems))

prepare_config = medsynth.PrepareConfig(manifest=str(raw_manifest), cache_dir=str(WORK / "cache"))
prepared_manifest = medsynth.run_prepare(prepare_config, WORK / "prepared", progress=False)

prepared = medsynth.Manifest.load(prepared_manifest, kind="prepared")
print(f"{prepared_manifest}: {len(prepared.cases())} cases, modalities {prepared.modalities}")
print(f"{'case':<24} {'split':<11} {'WT ml':>7} {'TC ml':>7} {'ET ml':>7}")
for case in prepared.cases():
    volumes = case.record["volumes_ml"]
    print(f"{case.case_id:<24} {case.split:<11} {volumes['WT']:>7.1f} {volumes['TC']:>7.1f} {volumes['ET']:>7.1f}")

# %% [markdown]
# ## 2. New tumor label maps
#
# `run_labels` takes the tumors of the prepared *training* subjects (never validation ones, so
# every map is safe to train on), rotates, rescales and elastically deforms them, and places
# them into a subject's anatomy. Each map records its seed, sources and sampled parameters, so
# `medsynth.regenerate(record)` rebuilds it bit for bit. Outputs in `WORK/labels/`:
# `label_maps/*.nii.gz`, `manifest.json`, `report.md` and `previews/label_maps.png`.
#
# ```bash
# medsynth labels --from WORK/prepared/manifest.json --n 4 --seed 0 -o WORK/labels
# ```

# %%
labels_config = medsynth.LabelsConfig(sources=[str(prepared_manifest)], n=N_SYNTHETIC, seed=SEED)
labels_manifest = medsynth.run_labels(labels_config, WORK / "labels", progress=False)

print(f"{labels_manifest}")
print(f"{'label map':<12} {'WT ml':>7} {'hemisphere':<11} {'region':<10} {'tumor from':<22} {'anatomy of'}")
for case in medsynth.Manifest.load(labels_manifest, kind="label_maps").cases():
    record = case.record["record"]
    achieved = record["achieved"]
    print(
        f"{case.case_id:<12} {achieved['volume_ml']:>7.1f} {achieved['hemisphere']:<11} {achieved['region']:<10} "
        f"{record['tumor']['case_id']:<22} {record['anatomy']['case_id']}"
    )

# %% [markdown]
# ## 3. A synthetic cohort from the shipped GAN
#
# `medsynth.pretrained("gan")` is a small conditional GAN trained on the two training subjects
# (a demonstration model, not a realistic generator). `run_generate` gives it each label map
# and writes T1c + FLAIR for each into `WORK/cohort/cases/<case>/`, with the label map,
# `provenance.json` (seeds, generator checksum, the label map's recipe), plus the cohort's
# `manifest.json`, `checksums.sha256` and a dataset card `README.md`.
#
# ```bash
# medsynth generate --checkpoint medsynth/pretrained/gan_cpu.pt --labels WORK/labels --seed 0 -o WORK/cohort
# ```

# %%
generate_config = medsynth.GenerateConfig(
    checkpoint=str(medsynth.pretrained("gan")), labels=str(WORK / "labels"), n=N_SYNTHETIC, seed=SEED
)
cohort_manifest = medsynth.run_generate(generate_config, WORK / "cohort", progress=False)

cohort = medsynth.Manifest.load(cohort_manifest, kind="cohort")
print(f"{cohort_manifest}: {len(cohort.cases())} synthetic cases, modalities {cohort.modalities}")
print(f"dataset card: {WORK / 'cohort' / 'README.md'}")

# %% [markdown]
# ## 4. Real beside synthetic
#
# One row per case: T1c, FLAIR, and the label map over T1c (anatomy and tumor classes, named as
# in the manifest's `labels`). Each row shows the axial slice with the most tumor. The figure is
# saved as `WORK/real_vs_synthetic.png`.

# %%
class_names = {int(value): name for value, name in prepared.data["labels"].items()}
tumor_classes = [value for value, name in class_names.items() if name in ("netc", "snfh", "et")]


def axial_views(images: list[Path], label: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """Images and label map on the axial slice (RAS: last axis) holding the most tumor."""
    label_map = np.asarray(nib.load(label).dataobj).astype(int)
    tumor_per_slice = np.isin(label_map, tumor_classes).sum(axis=(0, 1))
    z = int(tumor_per_slice.argmax()) if tumor_per_slice.any() else label_map.shape[2] // 2
    return [np.asarray(nib.load(path).dataobj)[:, :, z] for path in images], label_map[:, :, z]


colors = matplotlib.colormaps["tab10"]
rows = [("real", case) for case in prepared.cases(["train"])] + [("synthetic", case) for case in cohort.cases()]
shown_classes = set()
fig = Figure(figsize=(7.5, 2.6 * len(rows)))  # no pyplot: renders with Agg, needs no display
axes = fig.subplots(len(rows), 3, squeeze=False)
for (source, case), row in zip(rows, axes, strict=True):
    (t1c, flair), label_slice = axial_views(case.images, case.label)
    overlay = np.zeros((*label_slice.shape, 4))
    for value in np.unique(label_slice[label_slice > 0]).tolist():
        alpha = 0.75 if value in tumor_classes else 0.3  # tumor strong, anatomy faint
        overlay[label_slice == value] = (*colors(value % 10)[:3], alpha)
        shown_classes.add(value)
    for ax, image, title in zip(row, (t1c, flair, t1c), ("T1c", "FLAIR", "label map"), strict=True):
        ax.imshow(np.rot90(image), cmap="gray")  # RAS x-y turned: anterior up, patient's right on the right
        ax.set_title(f"{source} {case.case_id}\n{title}" if title == "T1c" else title, fontsize=8)
        ax.axis("off")
    row[2].imshow(np.rot90(overlay))
handles = [Patch(color=colors(value % 10), label=class_names[value]) for value in sorted(shown_classes)]
fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
fig.tight_layout(rect=(0, 0.03, 1, 1))
figure_path = WORK / "real_vs_synthetic.png"
fig.savefig(figure_path, dpi=80)
print(f"figure: {figure_path}")
if "ipykernel" in sys.modules:  # in Jupyter, show it here
    from IPython.display import Image, display

    display(Image(filename=figure_path))

# %% [markdown]
# ## 5. Real + synthetic cases in a MONAI training loop
#
# - `real_items` lists the prepared training cases; `synthetic_items` lists the cohort and
#   refuses (`LeakageError`) any case whose anatomy or tumor came from a held-out subject.
# - `medsynth.MixedDataset` loads both behind one index (modalities as channels; with
#   `tumor_labels=True` the label is 0 background/anatomy, 1 NETC, 2 SNFH, 3 ET) and applies the
#   same tumor-aware random patch crop to both.
# - `medsynth.MixedSampler` makes exactly half of every batch synthetic
#   (`synthetic_fraction=0.5`; a `FractionSchedule` changes it per epoch) and seeds every draw,
#   so batches are the same with any number of workers.
#
# The segmenter is a tiny MONAI `UNet` on the three BraTS regions (whole tumor, tumor core,
# enhancing tumor), trained for a few steps only: this shows the plumbing, not a result.
# `medsynth benchmark` runs the real comparison (real vs mixed arms, several seeds, Dice and
# HD95 on held-out subjects).

# %%
held_out = {case.case_id for case in prepared.cases(["validation", "test"])}
real = real_items(prepared_manifest)
synthetic = synthetic_items(WORK / "cohort", held_out_subjects=held_out)
dataset = medsynth.MixedDataset(
    real,
    synthetic,
    transform=load_transform(tumor_labels=True),
    random_transform=patch_transform((48, 48, 48), num_classes=4),
    cache="memory",
)
BATCH_SIZE = 2
sampler = medsynth.MixedSampler(
    len(real), len(synthetic), synthetic_fraction=0.5, num_samples=4, batch_size=BATCH_SIZE, seed=SEED
)
loader = DataLoader(dataset, batch_size=BATCH_SIZE, sampler=sampler, num_workers=0, collate_fn=list_data_collate)


def brats_regions(label: torch.Tensor) -> torch.Tensor:
    """Whole tumor, tumor core and enhancing tumor as three channels, from labels 1 NETC, 2 SNFH, 3 ET."""
    return torch.cat([label > 0, (label == 1) | (label == 3), label == 3], dim=1).float()


torch.manual_seed(SEED)
model = UNet(spatial_dims=3, in_channels=len(prepared.modalities), out_channels=3, channels=(8, 16, 32), strides=(2, 2))
loss_function = DiceCELoss(sigmoid=True)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(2):
    sampler.set_epoch(epoch)
    for step, batch in enumerate(loader):
        optimizer.zero_grad()
        loss = loss_function(model(batch["image"]), brats_regions(batch["label"]))
        loss.backward()
        optimizer.step()
        n_synthetic = sum(source == "synthetic" for source in batch["source"])
        print(f"epoch {epoch} step {step}: {n_synthetic}/{len(batch['source'])} synthetic, loss {loss.item():.3f}")

# %% [markdown]
# ## Where to go next
#
# - Everything above is in the work folder printed at the top: `prepared/`, `labels/`
#   (`report.md`), `cohort/` (`README.md`), `real_vs_synthetic.png`.
# - Your own data: `medsynth manifest build /data/BraTS2021 -o brats.json` (layouts: see the
#   README), then the same steps with `n` in the hundreds.
# - Train your own generator (`medsynth train --config configs/gan_cpu.yaml`), audit a cohort
#   for copies and membership leaks (`medsynth audit`), and measure whether synthetic cases
#   help a segmenter (`medsynth benchmark --config configs/benchmark_cpu.yaml`).
