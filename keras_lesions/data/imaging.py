"""Numpy image helpers shared by importers, phantoms and previews.

Windowing and resampling are explicit, named steps: datasets keep Hounsfield
units and native spacing, and these functions are called on purpose where an
image must become network input or a picture.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

# Air in Hounsfield units: what lies outside the scanned body, used to pad
# crops that run past the edge of a CT slice.
AIR_HU = -1000.0


def window(image: np.ndarray, level: float, width: float) -> np.ndarray:
    """Map HU to [0, 1] through a display window.

    Args:
        image: array in HU.
        level: window centre in HU (50 for W400/L50).
        width: window width in HU (400 for W400/L50).

    Returns:
        float32 array in [0, 1]; values below level - width/2 map to 0 and
        above level + width/2 to 1.
    """
    low = level - width / 2.0
    return np.clip((np.asarray(image, np.float32) - low) / float(width), 0.0, 1.0)


def resize(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resize a 2-D image with bicubic interpolation (the papers' choice, §3.1).

    When shrinking by more than 2× the image is first low-pass filtered with
    area averaging, because plain bicubic sampling aliases CT noise into
    spurious texture (PHANTOMS.md §3 step 9).

    Args:
        image: 2-D float array.
        size: output side, or (rows, cols).

    Returns:
        float32 array of the requested size.
    """
    rows, cols = (size, size) if isinstance(size, int) else size
    image = np.asarray(image, np.float32)
    if image.shape[0] > 2 * rows or image.shape[1] > 2 * cols:
        image = cv2.resize(image, (cols * 2, rows * 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (cols, rows), interpolation=cv2.INTER_CUBIC)


def centered_box(center_rc: tuple[float, float], side_rc: tuple[int, int]) -> tuple[int, int, int, int]:
    """Half-open (row0, col0, row1, col1) box of the given side around a centre."""
    r0 = int(round(center_rc[0] - side_rc[0] / 2.0))
    c0 = int(round(center_rc[1] - side_rc[1] / 2.0))
    return r0, c0, r0 + int(side_rc[0]), c0 + int(side_rc[1])


def crop_padded(image: np.ndarray, box: tuple[int, int, int, int], fill: float) -> tuple[np.ndarray, bool]:
    """Crop ``box`` from ``image``, padding with ``fill`` where it leaves the image.

    Returns:
        (crop, padded): the crop, and whether any of it was padding.
    """
    r0, c0, r1, c1 = box
    height, width = image.shape[:2]
    out = np.full((r1 - r0, c1 - c0) + image.shape[2:], fill, dtype=image.dtype)
    sr0, sc0, sr1, sc1 = max(r0, 0), max(c0, 0), min(r1, height), min(c1, width)
    if sr1 > sr0 and sc1 > sc0:
        out[sr0 - r0:sr1 - r0, sc0 - c0:sc1 - c0] = image[sr0:sr1, sc0:sc1]
    padded = (sr0, sc0, sr1, sc1) != (r0, c0, r1, c1)
    return out, padded


def mask_diameter(mask: np.ndarray, spacing_mm: tuple[float, float] = (1.0, 1.0)) -> float:
    """Longest in-plane diameter (maximum Feret diameter) of a 2-D mask.

    Measured between pixel centres of the mask's convex hull, plus one pixel so
    that a single-pixel lesion measures one pixel across.

    Args:
        mask: 2-D boolean mask of one lesion.
        spacing_mm: (row, col) pixel spacing; pass (1, 1) for pixels.

    Returns:
        The diameter in the units of ``spacing_mm``; 0.0 for an empty mask.
    """
    points = np.argwhere(mask)
    if len(points) == 0:
        return 0.0
    if len(points) > 2:
        hull = cv2.convexHull(points[:, ::-1].astype(np.int32)).reshape(-1, 2)[:, ::-1]
    else:
        hull = points
    scaled = hull.astype(np.float64) * np.asarray(spacing_mm, np.float64)
    diffs = scaled[:, None, :] - scaled[None, :, :]
    longest = math.sqrt(float((diffs ** 2).sum(-1).max()))
    return longest + float(np.mean(spacing_mm))


def roi_and_context_boxes(
    lesion_box: tuple[int, int, int, int],
    diameter_px: float,
    roi_margin: float,
    context_margin: float,
) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """Square ROI and context boxes centred on a lesion, in image coordinates.

    The ROI side is ``diameter·(1 + 2·roi_margin)``: a margin of surrounding
    tissue proportional to the lesion size, as both papers crop
    (Frid-Adar §2.1, Ben-Cohen §3.1). The context uses ``context_margin``
    (≥ roi_margin) so scale augmentation can later re-crop real tissue.

    Returns:
        (roi_box, context_box), half-open boxes that may extend beyond the image.
    """
    r0, c0, r1, c1 = lesion_box
    center = ((r0 + r1) / 2.0, (c0 + c1) / 2.0)
    roi_side = max(4, int(round(diameter_px * (1 + 2 * roi_margin))))
    context_side = max(roi_side, int(round(diameter_px * (1 + 2 * context_margin))))
    return (centered_box(center, (roi_side, roi_side)),
            centered_box(center, (context_side, context_side)))
