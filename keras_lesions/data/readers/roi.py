"""Reading one 2-D lesion ROI image, whatever its format."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from keras_lesions.data.readers.base import check_finite, squeeze_to_2d
from keras_lesions.data.readers.lookup import reader_for
from keras_lesions.errors import ImportSourceError, KerasLesionsError

NPY_UNITS = ("HU", "normalized")
# An ROI is a PNG/TIFF/JPEG, a .npy array or one DICOM image (see read_roi_image).
ROI_FORMATS = ("raster", "npy", "dicom-image")


def read_roi_image(path: str | os.PathLike, npy_unit: str = "HU",
                   ) -> tuple[np.ndarray, str, tuple[float, float]]:
    """Read one 2-D lesion ROI of a class folder.

    Formats and units:

    * PNG / TIFF / JPEG: 8-bit values are divided by 255 and 16-bit values by
      65535, giving ``"normalized"`` [0, 1]; float TIFFs must already lie in
      [0, 1]. Colour files whose channels are all equal (grey saved as RGB) are
      accepted; a uniform (e.g. fully opaque) alpha channel is dropped.
    * DICOM (``.dcm``, ``.dicom``, or any file with the "DICM" preamble): CT
      only; ``HU = RescaleSlope * stored + RescaleIntercept``, spacing from
      PixelSpacing.
    * ``.npy`` (loaded with ``allow_pickle=False``): taken as is, in
      ``npy_unit``; with "normalized" the values must lie in [0, 1].

    Singleton axes are squeezed, so (1, h, w) and (h, w, 1) arrays are 2-D ROIs.

    Args:
        path: the image file.
        npy_unit: "HU" or "normalized", the unit of ``.npy`` files.

    Returns:
        (image, unit, spacing_mm): float32 (h, w) array with finite values;
        "HU" or "normalized"; (row, col) pixel spacing in mm, NaN when the
        format does not carry it (everything but DICOM).

    Raises:
        ImportSourceError: the file is unreadable, not a supported image, 3-D,
            colour, too small, too large to decode, or has NaN/infinite pixels.
        KerasLesionsError: ``npy_unit`` is not one of ``NPY_UNITS``.
    """
    path = Path(path)
    if npy_unit not in NPY_UNITS:
        raise KerasLesionsError(f"npy_unit must be one of {NPY_UNITS}, got {npy_unit!r}")
    reader = reader_for(path, ROI_FORMATS)
    if reader is None:
        raise ImportSourceError(
            "not a supported ROI image (expected PNG, TIFF, JPEG, .npy or DICOM)", path)
    data = reader.get_data(reader.read(path), path)
    if data.unit is None:  # a .npy array: its unit is the caller's npy_unit
        image, unit = _npy_roi(data.array, npy_unit, path), npy_unit
        spacing = (float("nan"), float("nan"))
    else:
        image, unit, spacing = data.array, data.unit, data.spacing_mm
    if min(image.shape) < 2:
        raise ImportSourceError(f"is too small ({image.shape[0]}x{image.shape[1]} pixels)", path)
    return image, unit, spacing


def _npy_roi(array: np.ndarray, npy_unit: str, path: Path) -> np.ndarray:
    """A ``.npy`` array as a float32 2-D ROI in ``npy_unit``."""
    image = squeeze_to_2d(array, path)
    if image.dtype.kind not in "biuf":
        raise ImportSourceError(f"holds {image.dtype} values, expected numbers", path)
    image = image.astype(np.float32)
    check_finite(image, path)
    if npy_unit == "normalized" and (image.min() < 0 or image.max() > 1):
        raise ImportSourceError(
            f"values span [{image.min():g}, {image.max():g}], outside [0, 1] although "
            "npy_unit is 'normalized' (use npy_unit 'HU' for Hounsfield units)", path)
    return image
