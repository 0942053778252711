"""Reading a CT volume or a lesion label mask, whatever its format."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from keras_lesions.data.readers.base import ImageData, VolumeGeometry
from keras_lesions.data.readers.lookup import reader_for
from keras_lesions.errors import ImportSourceError

VOLUME_FORMATS = ("nifti", "dicom")


def read_volume(path: str | os.PathLike,
                ) -> tuple[np.ndarray, tuple[float, float, float], VolumeGeometry]:
    """Read a CT volume in Hounsfield units as (slices, rows, cols).

    Axis order (the importer's convention, which ``.npy`` masks must follow):

    * NIfTI (``.nii``, ``.nii.gz``): the data array (i, j, k) becomes
      ``volume[k, j, i]``: slices along k, rows along j, columns along i (the
      file's own memory order, i fastest). ``scl_slope``/``scl_inter`` are
      applied as nibabel applies them.
    * DICOM series (a folder of single-frame files) and Enhanced multi-frame
      DICOM (one file): rows and columns as stored; slices sorted by
      ImagePositionPatient projected on the slice normal (row cosines ×
      column cosines), ascending, whatever the file names, InstanceNumber or
      frame order. HU = RescaleSlope * stored + RescaleIntercept per slice
      (per frame from the functional groups for Enhanced DICOM).

    Slices must be axial (the slice axis closest to the head–foot axis), since
    lesions are cropped from axial slices.

    Args:
        path: a NIfTI file, a DICOM series folder or an Enhanced DICOM file.

    Returns:
        (volume, spacing_mm, geometry): float32 (slices, rows, cols) in HU;
        (slice, row, col) spacing in mm (slice spacing of DICOM from the
        positions, median gap); the :class:`VolumeGeometry`.

    Raises:
        ImportSourceError: unreadable or unsupported file, non-CT DICOM,
            inconsistent DICOM slices, or slices that are not axial.
    """
    data = _read_volume_like(Path(path), as_mask=False)
    _check_axial(data.geometry, Path(path))
    return data.array.astype(np.float32, copy=False), data.spacing_mm, data.geometry


def read_mask(path: str | os.PathLike) -> tuple[np.ndarray, VolumeGeometry | None]:
    """Read a lesion label mask as integer labels in (slices, rows, cols) order.

    NIfTI and DICOM masks follow :func:`read_volume`'s axis order; DICOM masks
    are read as stored integers (no rescale: labels are not measurements).
    ``.npy`` masks (``allow_pickle=False``) must already be in the importer's
    (slices, rows, cols) order, i.e. the order :func:`read_volume` returns.

    Returns:
        (labels, geometry): integer array (0 = background), and the geometry
        for NIfTI/DICOM masks or None for ``.npy``.

    Raises:
        ImportSourceError: unreadable file, or values that are not
            non-negative integers.
    """
    path = Path(path)
    npy_reader = reader_for(path, ("npy",))
    if npy_reader is not None:
        labels, geometry = npy_reader.read(path), None
        if labels.ndim != 3:
            raise ImportSourceError(
                f"mask has shape {labels.shape}, expected 3-D (slices, rows, cols)", path)
    else:
        data = _read_volume_like(path, as_mask=True)
        labels, geometry = data.array, data.geometry
    return _as_label_map(labels, path), geometry


def _read_volume_like(path: Path, *, as_mask: bool) -> ImageData:
    """A volume or mask file through its reader; arrays in (slices, rows, cols)."""
    if not path.exists():
        raise ImportSourceError("no such file or folder", path)
    reader = reader_for(path, VOLUME_FORMATS)
    if reader is None:
        expected = "NIfTI, a DICOM series folder, DICOM or .npy" if as_mask else \
            "NIfTI (.nii, .nii.gz), a DICOM series folder or an Enhanced DICOM file"
        raise ImportSourceError(
            f"not a supported {'mask' if as_mask else 'volume'} ({expected})", path)
    return reader.get_data(reader.read(path), path, rescale=not as_mask)


def _check_axial(geometry: VolumeGeometry, path: Path) -> None:
    """Raise ImportSourceError unless the slice axis runs closest to head–foot (RAS z)."""
    direction = geometry.affine[:3, 0]
    norm = np.linalg.norm(direction)
    if norm == 0 or np.argmax(np.abs(direction / norm)) != 2:
        pretty = ", ".join(f"{v:.2f}" for v in direction / (norm or 1))
        raise ImportSourceError(
            f"slices are not axial: the slice axis runs along ({pretty}) in RAS; reorient the "
            "volume so slices are axial (e.g. nibabel.as_closest_canonical)", path)


def _as_label_map(labels: np.ndarray, path: Path) -> np.ndarray:
    """Labels as a non-negative integer array (bool -> uint8, integral floats -> int64)."""
    if labels.dtype == bool:
        return labels.astype(np.uint8)
    if labels.dtype.kind in "iu":
        if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
            raise ImportSourceError("mask has negative labels; expected 0 (background) and "
                                    "positive lesion labels", path)
        return labels
    if labels.dtype.kind == "f":
        finite = np.isfinite(labels).all()
        rounded = np.rint(labels)
        off_integer = np.abs(labels - rounded).max(initial=0) if finite else np.inf
        if off_integer > 1e-3 or rounded.min(initial=0) < 0:
            raise ImportSourceError("mask holds non-integer, negative or NaN values; expected an "
                                    "integer label map", path)
        return rounded.astype(np.int64)
    raise ImportSourceError(f"mask has {labels.dtype} values; expected integer labels", path)
