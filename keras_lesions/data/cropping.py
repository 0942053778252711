"""Cutting a lesion out of a CT slice: context crop, ROI, mask and boxes.

Boxes are half-open ``(row0, col0, row1, col1)`` tuples. The ROI is a square
of side diameter·(1 + 2·roi_margin) centred on the lesion, the context
likewise with ``context_margin`` (both papers crop the lesion plus
surrounding tissue; see :func:`keras_lesions.data.imaging.roi_and_context_boxes`).
Parts outside the slice are filled with air (-1000 HU). Pure numpy: no files,
no errors of their own.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from keras_lesions.data.imaging import AIR_HU, crop_padded, mask_diameter, roi_and_context_boxes

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class LesionCrop:
    """One lesion cut from one slice.

    Attributes:
        context: (h, w) crop of the slice around the lesion, in the slice's
            dtype and unit (HU), air where it runs past the slice.
        roi: the ROI part of ``context`` (a copy).
        mask: bool (h, w) lesion mask of ``context``.
        roi_box: the ROI inside ``context``.
        lesion_box: the lesion's bounding box inside ``context``.
        context_box: the context inside the slice (may extend beyond it).
        diameter_px: longest in-plane diameter of the mask in pixels.
        diameter_mm: the same in mm, from the (row, col) spacing.
        regions: separate regions of the mask on the slice (8-connected).
        context_padded: whether the context runs past the slice.
        roi_padded: whether the ROI runs past the slice.
        at_edge: whether the lesion touches the slice's edge (a lesion cut by
            the edge of the field of view measures too small).
    """

    context: np.ndarray
    roi: np.ndarray
    mask: np.ndarray
    roi_box: Box
    lesion_box: Box
    context_box: Box
    diameter_px: float
    diameter_mm: float
    regions: int
    context_padded: bool
    roi_padded: bool
    at_edge: bool


def crop_lesion(slice_image: np.ndarray, slice_mask: np.ndarray,
                spacing_rc: tuple[float, float], roi_margin: float,
                context_margin: float) -> LesionCrop:
    """Cut the context, ROI and mask of the lesion ``slice_mask`` marks.

    Args:
        slice_image: (rows, cols) slice in HU.
        slice_mask: bool (rows, cols) mask of the lesion on that slice, not
            empty; several regions are taken as one lesion.
        spacing_rc: (row, col) pixel spacing in mm.
        roi_margin: tissue margin on each side of the lesion as a fraction of
            its diameter.
        context_margin: the same for the context (≥ roi_margin).

    Returns:
        The :class:`LesionCrop`.
    """
    regions = cv2.connectedComponents(slice_mask.astype(np.uint8), connectivity=8)[0] - 1
    lesion_box = bounding_box(slice_mask)
    diameter_px = mask_diameter(slice_mask, (1.0, 1.0))
    diameter_mm = mask_diameter(slice_mask, spacing_rc)
    roi_box, context_box = roi_and_context_boxes(lesion_box, diameter_px, roi_margin,
                                                 context_margin)
    # Rounding of the two centred boxes could leave the ROI (or lesion) a pixel
    # outside the context; the union keeps every box inside it.
    context_box = union_box(context_box, roi_box, lesion_box)
    context, context_padded = crop_padded(slice_image, context_box, AIR_HU)
    mask, _ = crop_padded(slice_mask, context_box, False)
    r_off, c_off = context_box[:2]
    roi_in_context = shift_box(roi_box, r_off, c_off)
    roi = context[roi_in_context[0]:roi_in_context[2], roi_in_context[1]:roi_in_context[3]].copy()
    height, width = slice_image.shape
    return LesionCrop(
        context=context,
        roi=roi,
        mask=mask.astype(bool),
        roi_box=roi_in_context,
        lesion_box=shift_box(lesion_box, r_off, c_off),
        context_box=context_box,
        diameter_px=float(diameter_px),
        diameter_mm=float(diameter_mm),
        regions=int(regions),
        context_padded=bool(context_padded),
        roi_padded=not inside(roi_box, height, width),
        at_edge=(lesion_box[0] == 0 or lesion_box[1] == 0
                 or lesion_box[2] == height or lesion_box[3] == width),
    )


def bounding_box(mask: np.ndarray) -> Box:
    """The half-open bounding box of a non-empty 2-D mask."""
    rows, cols = np.nonzero(mask)
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


def inside(box: Box, height: int, width: int) -> bool:
    """Whether ``box`` lies within an image of ``height`` × ``width`` pixels."""
    return box[0] >= 0 and box[1] >= 0 and box[2] <= height and box[3] <= width


def union_box(*boxes: Box) -> Box:
    """The smallest box holding all ``boxes``."""
    return (min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes))


def shift_box(box: Box, dr: int, dc: int) -> Box:
    """``box`` moved by (-dr, -dc): into the frame of a crop whose corner is (dr, dc)."""
    return (box[0] - dr, box[1] - dc, box[2] - dr, box[3] - dc)
