"""Make the small sample that ships inside the package (medsynth/sample_data/).

    $ python scripts/make_sample_data.py --shared ../shared/data

From ``../shared/data`` (see its README): the six BraTS 2013 subjects (``brats2013_small``'s
train and validation splits; ``brats2013_test``'s two subjects join the train split, so the
sample's train split is what the shipped generators were trained on and its validation split,
pat0003 and pat0004, stays held out) and the healthy
anatomies (three SynthSeg label maps, Colin27 brain-extracted T1), resampled to 2 mm with
SimpleITK (linear for images, nearest for labels and masks), each in its original
orientation and folder layout so ``medsynth manifest build`` reads them as it reads the
originals. To keep the package a few MB, BraTS images are zeroed outside the brain mask
and stored as int16 with a NIfTI scale factor (resolution 0.001 of the z-scored values).
The licence files of the sources are copied beside the data.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SPACING_MM = 2.0
OUT = Path(__file__).resolve().parents[1] / "medsynth" / "sample_data"


def resample(image: sitk.Image, interpolator: int) -> sitk.Image:
    """Resample to isotropic ``SPACING_MM`` on the same field of view, same direction."""
    spacing = np.array(image.GetSpacing())
    size = np.array(image.GetSize())
    new_size = [int(round(s)) for s in size * spacing / SPACING_MM]
    # keep the physical centre of the first and last voxel span
    origin = np.array(image.GetOrigin()) + np.array(image.GetDirection()).reshape(3, 3) @ ((SPACING_MM - spacing) / 2)
    return sitk.Resample(
        image,
        new_size,
        sitk.Transform(),
        interpolator,
        origin.tolist(),
        [SPACING_MM] * 3,
        image.GetDirection(),
        0,
        image.GetPixelID(),
    )


def write(image: sitk.Image, path: Path, pixel: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.Cast(image, pixel), str(path), useCompression=True)


def brats(shared: Path) -> None:
    source = shared / "brats2013_small"
    target = OUT / "brats2013_2mm"
    folders = [(folder, folder.relative_to(source)) for folder in sorted(source.glob("*/brats_*"))]
    folders += [(folder, Path("train") / folder.name) for folder in sorted((shared / "brats2013_test").glob("brats_*"))]
    for folder, relative in folders:
        out = target / relative
        mask = resample(sitk.ReadImage(str(folder / "brainmask.nii.gz"), sitk.sitkFloat32), sitk.sitkLinear) > 0.5
        write(mask, out / "brainmask.nii.gz", sitk.sitkUInt8)
        label = resample(
            sitk.ReadImage(str(folder / "OTMultiClass.nii.gz"), sitk.sitkUInt8),
            sitk.sitkNearestNeighbor,
        )
        write(label, out / "OTMultiClass.nii.gz", sitk.sitkUInt8)
        for name in ("T1c_subtrMeanDivStd.nii.gz", "Flair_subtrMeanDivStd.nii.gz"):
            image = resample(sitk.ReadImage(str(folder / name), sitk.sitkFloat32), sitk.sitkLinear)
            image = sitk.Mask(image, mask)
            # int16 with slope 0.001: nibabel and SimpleITK both apply the NIfTI scale on read
            scaled = sitk.Cast(sitk.Round(image * 1000.0), sitk.sitkInt16)
            scaled.CopyInformation(image)
            path = out / name
            sitk.WriteImage(scaled, str(path), useCompression=True)
            _set_slope(path, 0.001)
    shutil.copy(source / "LICENSE_CC_BY_NC_SA_3.0.txt", target / "LICENSE_CC_BY_NC_SA_3.0.txt")


def _set_slope(path: Path, slope: float) -> None:
    import nibabel as nib

    image = nib.load(str(path))
    data = np.asanyarray(image.dataobj).astype(np.int16)
    out = nib.Nifti1Image(data, image.affine, image.header)
    out.header.set_slope_inter(slope, 0.0)
    nib.save(out, str(path))


def healthy(shared: Path) -> None:
    synthseg = OUT / "healthy" / "synthseg_2mm"
    for path in sorted((shared / "healthy" / "synthseg_label_maps").glob("*.nii.gz"))[:3]:  # the first three: a few MB
        label = resample(sitk.ReadImage(str(path), sitk.sitkUInt16), sitk.sitkNearestNeighbor)
        write(label, synthseg / path.name, sitk.sitkUInt16)
    shutil.copy(shared / "healthy" / "synthseg_label_maps" / "LICENSE.txt", synthseg / "LICENSE.txt")
    colin = OUT / "healthy" / "colin27_2mm"
    image = resample(
        sitk.ReadImage(str(shared / "healthy" / "colin27" / "ch2bet.nii.gz"), sitk.sitkFloat32),
        sitk.sitkLinear,
    )
    write(sitk.Round(image), colin / "ch2bet.nii.gz", sitk.sitkUInt8)
    shutil.copy(shared / "healthy" / "colin27" / "license.txt", colin / "license.txt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--shared",
        type=Path,
        default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data",
    )
    args = parser.parse_args()
    if OUT.exists():
        shutil.rmtree(OUT)
    brats(args.shared)
    healthy(args.shared)
    (OUT / "README.md").write_text(
        "# medsynth sample data\n\n"
        "Made by `python scripts/make_sample_data.py --shared ../shared/data` from:\n\n"
        "| folder | source | licence |\n| --- | --- | --- |\n"
        "| `brats2013_2mm/` | 6 BraTS 2013 subjects (T1c, FLAIR z-scored, brain mask, OTMultiClass) "
        "| CC BY-NC-SA 3.0 (`LICENSE_CC_BY_NC_SA_3.0.txt`) |\n"
        "| `healthy/synthseg_2mm/` | 3 SynthSeg training label maps (FreeSurfer labels) "
        "| Apache-2.0 (`LICENSE.txt`) |\n"
        "| `healthy/colin27_2mm/` | Colin27 brain-extracted T1 (MRIcron) | BSD (`license.txt`) |\n\n"
        "Everything is resampled to 2 mm with SimpleITK (linear images, nearest labels), in the original "
        "orientation and layout. BraTS images are zeroed outside the brain mask and stored as int16 with a "
        "NIfTI scale of 0.001. Derivatives of the BraTS data inherit CC BY-NC-SA 3.0 (non-commercial, share alike).\n"
    )
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
