"""A labelled picture of a dataset: one row of sample ROIs per class."""
from __future__ import annotations

import os

import numpy as np

from keras_lesions.data.dataset import LesionDataset
from keras_lesions.data.imaging import resize, window
from keras_lesions.errors import KerasLesionsError
from keras_lesions.io import save_figure


def preview_image(dataset: LesionDataset, index: int) -> np.ndarray:
    """A lesion's ROI as a picture: windowed (HU datasets) and resized to the
    network input size, float32 [size, size] in [0, 1].

    The numpy path of ``data.imaging``, not the network input pipeline: a
    picture for people needs no TensorFlow, and bicubic resizing with area
    pre-filtering shows the same image up to interpolation detail.
    """
    lesion = dataset.lesions[index]
    roi = lesion.roi
    if dataset.intensity_unit == "HU":
        roi = window(roi, dataset.window_level, dataset.window_width)
    return np.clip(resize(np.asarray(roi, np.float32), dataset.input_size), 0.0, 1.0)


def write_preview(
    dataset: LesionDataset,
    out_path: str | os.PathLike,
    per_class: int = 8,
    seed: int = 0,
    title: str | None = None,
) -> None:
    """Write a PNG grid: a row per class of ``per_class`` random ROIs.

    Images are windowed W400/L50 (or the dataset's window) and shown at the
    network input size, so the picture shows what the classifier gets. Each
    tile is labelled with its lesion id and diameter.

    Raises:
        KerasLesionsError: per_class < 1, or the output is not a .png path.
    """
    # A bare Figure (no pyplot): no global backend switch, nothing left open.
    from matplotlib.figure import Figure

    if per_class < 1:
        raise KerasLesionsError(f"per_class must be at least 1, got {per_class}")
    if not os.fspath(out_path).lower().endswith(".png"):
        raise KerasLesionsError("the preview is a PNG file: give a path ending in .png", out_path)
    rng = np.random.default_rng(seed)
    labels = dataset.labels
    names = dataset.class_names
    fig = Figure(figsize=(1.3 * per_class, 1.45 * len(names)))
    axes = fig.subplots(len(names), per_class, squeeze=False)
    for c, name in enumerate(names):
        members = np.flatnonzero(labels == c)
        chosen = rng.choice(members, size=min(per_class, len(members)), replace=False) \
            if len(members) else []
        chosen = sorted(chosen, key=lambda i: dataset.lesions[i].diameter_px)
        for j, ax in enumerate(axes[c]):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(chosen):
                lesion = dataset.lesions[chosen[j]]
                ax.imshow(preview_image(dataset, chosen[j]), cmap="gray", vmin=0, vmax=1,
                          interpolation="nearest")
                size = (f"{lesion.diameter_mm:.0f} mm" if np.isfinite(lesion.diameter_mm)
                        else f"{lesion.diameter_px:.0f} px")
                ax.set_title(f"{lesion.lesion_id}\n{size}", fontsize=6)
            if j == 0:
                ax.set_ylabel(f"{name}\n(n={len(members)})", fontsize=9)
    window_text = (f"W{dataset.window_width:.0f}/L{dataset.window_level:.0f}"
                   if dataset.intensity_unit == "HU" else "normalized")
    fig.suptitle(title or f"{len(dataset)} lesions, {window_text}, "
                 f"{dataset.input_size}x{dataset.input_size}", fontsize=10)
    save_figure(fig, out_path)
