"""Preview images: mid slices of every modality with the label map overlaid.

Tiles are rendered as RGB arrays, laid out with ``torchvision.utils.make_grid`` and
annotated with matplotlib, so the same tiles serve single-case previews, cohort montages
and TensorBoard image grids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsynth.data.scheme import CLASS_NAMES
from medsynth.io import atomic_path

# RGB per canonical class: anatomy in muted tones, tumor sub-regions in saturated ones.
LABEL_COLORS = (
    np.array(
        [
            [0, 0, 0],
            [70, 110, 200],  # csf
            [150, 150, 150],  # gm
            [235, 235, 235],  # wm
            [230, 40, 40],  # netc
            [250, 210, 40],  # snfh
            [40, 200, 60],  # et
            [200, 60, 220],  # rc
            [255, 130, 0],  # tumor (sub-regions unknown)
        ],
        dtype=np.float32,
    )
    / 255.0
)


def _mid_slices(volume: np.ndarray, center: tuple[int, int, int]) -> list[np.ndarray]:
    """Axial, coronal, sagittal slices through ``center`` of a RAS volume, displayed upright."""
    x, y, z = center
    return [
        np.rot90(volume[:, :, z]),
        np.rot90(volume[:, y, :]),
        np.rot90(volume[x, :, :]),
    ]


def _gray(slice_: np.ndarray, low: float, high: float) -> np.ndarray:
    # prepared images are exactly 0 outside the brain: show that as black, not mid-gray
    g = np.where(slice_ != 0, np.clip((slice_ - low) / max(high - low, 1e-6), 0, 1), 0.0)
    return np.repeat(g[..., None], 3, axis=-1)


def _pad_to(tile: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros((*shape, 3), dtype=np.float32)
    h, w = tile.shape[:2]
    out[(shape[0] - h) // 2 : (shape[0] - h) // 2 + h, (shape[1] - w) // 2 : (shape[1] - w) // 2 + w] = tile
    return out


def tumor_center(label_map: np.ndarray) -> tuple[int, int, int]:
    """Centre of mass of the tumor (canonical classes >= 4), or the volume centre without one."""
    if (label_map >= 4).any():
        return tuple(int(round(c)) for c in np.argwhere(label_map >= 4).mean(0))
    return tuple(s // 2 for s in label_map.shape)


def case_tiles(
    image: np.ndarray | None,
    label_map: np.ndarray | None,
    center: tuple[int, int, int] | None = None,
    alpha: float = 0.45,
    windows: list[tuple[float, float]] | None = None,
) -> tuple[list[np.ndarray], int]:
    """RGB tiles (H, W, 3) for one case; returns ``(tiles, columns)``.

    Rows: each modality in gray, the label map alone, then the first modality with the
    tumor overlaid; columns: axial, coronal, sagittal. ``center`` defaults to the tumor's
    centre of mass (or the volume centre). ``windows``: (low, high) gray window per modality
    (default: the image's own 0.5-99.5th percentiles; pass the real scan's to compare images).
    """
    if center is None:
        center = tumor_center(label_map) if label_map is not None else tuple(s // 2 for s in image.shape[1:])
    rows: list[list[np.ndarray]] = []
    if image is not None:
        for index, channel in enumerate(image):
            values = channel[channel != 0]
            low, high = np.percentile(values, [0.5, 99.5]) if values.size else (0.0, 1.0)
            if windows is not None:
                low, high = windows[index]
            rows.append([_gray(s, low, high) for s in _mid_slices(channel, center)])
    if label_map is not None:
        colors = LABEL_COLORS[np.clip(label_map.astype(int), 0, len(LABEL_COLORS) - 1)]
        rows.append(_mid_slices(colors, center))
        if image is not None and (label_map >= 4).any():
            tumor = _mid_slices((label_map >= 4).astype(np.float32), center)
            overlay = []
            for base, color, t in zip(rows[0], rows[-1], tumor, strict=True):
                a = alpha * t[..., None]
                overlay.append(base * (1 - a) + color * a)
            rows.append(overlay)
    size = max(max(t.shape[0] for r in rows for t in r), max(t.shape[1] for r in rows for t in r))
    tiles = [_pad_to(t, (size, size)) for r in rows for t in r]
    return tiles, 3


def save_grid(
    tiles: list[np.ndarray],
    columns: int,
    path: str | Path,
    title: str = "",
    row_names: list[str] | None = None,
    scale: float = 2.0,
) -> Path:
    """Lay ``tiles`` out in a grid with torchvision and save a PNG with a title, atomically."""
    # a Figure without pyplot never switches the backend of the user's process (a notebook's inline figures)
    import torch
    from matplotlib.figure import Figure
    from torchvision.utils import make_grid

    batch = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2)
    grid = make_grid(batch, nrow=columns, padding=2, pad_value=0.2).permute(1, 2, 0).numpy()
    height, width = grid.shape[:2]
    fig_width = scale * width / 100 + 1.2
    fig = Figure(figsize=(fig_width, scale * height / 100 + 0.5), dpi=100)
    left = 1.1 / fig_width if row_names else 0.0  # 1.1 inch for the row names, however narrow the grid
    ax = fig.add_axes((left, 0.0, 1.0 - left, 0.93))
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    if row_names:
        rows = int(np.ceil(len(tiles) / columns))
        for i, name in enumerate(row_names[:rows]):
            ax.text(-4, (i + 0.5) * height / rows, name, ha="right", va="center", fontsize=8)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def save_case_preview(
    path: str | Path,
    image: np.ndarray | None,
    label_map: np.ndarray | None,
    modalities: list[str],
    title: str = "",
) -> Path:
    """One PNG per case: each modality, the label map, and the tumor overlay; three views."""
    tiles, columns = case_tiles(image, label_map)
    names = list(modalities) if image is not None else []
    if label_map is not None:
        names.append("label map")
        if image is not None and (label_map >= 4).any():
            names.append(f"{modalities[0]} + tumor")
    present = sorted(int(v) for v in np.unique(label_map)) if label_map is not None else []
    legend = ", ".join(f"{v}={CLASS_NAMES[v]}" for v in present if v in CLASS_NAMES)
    return save_grid(tiles, columns, path, title=f"{title}\n{legend}" if legend else title, row_names=names)
