"""CT DICOM through pydicom: single images, series folders, Enhanced multi-frame files.

Hounsfield units are ``RescaleSlope * stored + RescaleIntercept`` (per frame
from the functional groups for Enhanced DICOM); label masks keep the stored
integers. Volumes are (slices, rows, cols): rows and columns as stored,
slices sorted by ImagePositionPatient projected on the slice normal (row
cosines × column cosines), ascending, whatever the file names,
InstanceNumber or frame order. Geometry is converted from DICOM's LPS to RAS+.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import BytesLengthException, InvalidDicomError

from keras_lesions.data.readers.base import (
    ImageData,
    ImageReader,
    VolumeGeometry,
    check_declared_shape,
    check_finite,
    exception_line,
    squeeze_to_2d,
    visible_entries,
)
from keras_lesions.errors import ImportSourceError

DICOM_SUFFIXES = {".dcm", ".dicom"}

# What pydicom.dcmread raises on a damaged file besides InvalidDicomError (no
# preamble / file meta): EOFError, OSError ("No tag to read") and struct.error
# for a file cut short inside an element; ValueError for text its character-set
# codecs cannot decode; NotImplementedError for an unknown Value Representation;
# BytesLengthException for a file-meta value whose length does not fit its VR.
_DCMREAD_ERRORS = (EOFError, OSError, struct.error, ValueError, NotImplementedError,
                   BytesLengthException)

# What Dataset.pixel_array raises on damaged or unsupported pixel data:
# ValueError (too few bytes, impossible Bits Stored), NotImplementedError (a
# transfer syntax without a decoder), RuntimeError (every decoder plugin
# failed), BytesLengthException (a damaged element converted on access). And,
# genuinely from pydicom's decoder checks, not from our code: AttributeError
# when the file meta lacks the Transfer Syntax UID or a required pixel
# element is missing, TypeError when the Transfer Syntax UID is not text.
_PIXEL_ERRORS = (ValueError, NotImplementedError, RuntimeError, BytesLengthException,
                 AttributeError, TypeError)


class DicomImageReader(ImageReader):
    """One 2-D CT image: a classic single-frame file or a one-frame Enhanced CT.

    Accepts ``.dcm``, ``.dicom`` or any file with the "DICM" preamble. HU from
    the rescale and spacing from PixelSpacing, taken from the frame's
    functional groups for Enhanced CT and from the top level otherwise.
    """

    name = "dicom-image"

    def verify_suffix(self, path: Path) -> bool:
        return path.suffix.lower() in DICOM_SUFFIXES or has_dicm_preamble(path)

    def read(self, path: Path) -> pydicom.Dataset:
        """The pydicom dataset; see :func:`read_dicom_file`."""
        return read_dicom_file(path)

    def get_data(self, image: pydicom.Dataset, path: Path, *,
                 rescale: bool = True) -> ImageData:
        """float32 (rows, cols) in HU with (row, col) spacing in mm (NaN when absent).

        Singleton axes are squeezed. ``rescale`` is ignored: a CT image is
        always converted to HU.

        Raises:
            ImportSourceError: not CT, more than one frame, no or undecodable
                pixel data, colour, not 2-D, or NaN/infinite values.
        """
        require_ct(image, path)
        frames = declared_int(image, "NumberOfFrames", path, 1)
        if frames > 1:
            raise ImportSourceError(
                f"is a 3-D image ({frames} frames) where a 2-D ROI is expected", path)
        stored = squeeze_to_2d(dicom_pixels(image, path), path)
        # A one-frame Enhanced CT keeps rescale and spacing in its functional
        # groups; a classic CT keeps them at the top level.
        transform = frame_macro(image, 0, "PixelValueTransformationSequence")
        measures = frame_macro(image, 0, "PixelMeasuresSequence")
        slope, intercept = rescale_of(transform if transform is not None else image)
        hu = (stored.astype(np.float64) * slope + intercept).astype(np.float32)
        check_finite(hu, path)
        return ImageData(hu, "HU", pixel_spacing(measures if measures is not None else image))


class DicomVolumeReader(ImageReader):
    """A CT volume: a folder holding one series of single-frame files, or one
    DICOM file (Enhanced multi-frame, or a single classic slice)."""

    name = "dicom"

    def verify_suffix(self, path: Path) -> bool:
        return path.is_dir() or path.suffix.lower() in DICOM_SUFFIXES or has_dicm_preamble(path)

    def read(self, path: Path) -> pydicom.Dataset | list[tuple[Path, pydicom.Dataset]]:
        """The dataset of a file, or (file, dataset) pairs of a series folder.

        A series folder's DICOMDIR, dotfiles and operating-system clutter are
        skipped.

        Raises:
            ImportSourceError: an unreadable file; for a folder: empty, holding
                sub-folders, multi-frame files or several series.
        """
        if not path.is_dir():
            return read_dicom_file(path)
        entries = [e for e in visible_entries(path) if e.name.upper() != "DICOMDIR"]
        if not entries:
            raise ImportSourceError("empty folder; expected a DICOM series", path)
        slices = []
        for entry in entries:
            if entry.is_dir():
                raise ImportSourceError("is a folder inside a DICOM series folder; expected one "
                                        "series per folder", entry)
            dataset = read_dicom_file(entry)
            frames = declared_int(dataset, "NumberOfFrames", entry, 1)
            if frames > 1:
                raise ImportSourceError(
                    f"is a multi-frame file ({frames} frames) inside a series folder; pass it "
                    "as its own volume", entry)
            slices.append((entry, dataset))
        series = {str(ds.get("SeriesInstanceUID", "")) for _, ds in slices}
        if len(series) > 1:
            raise ImportSourceError(f"holds {len(series)} DICOM series; put each series in its "
                                    "own folder", path)
        return slices

    def get_data(self, image: pydicom.Dataset | list[tuple[Path, pydicom.Dataset]], path: Path,
                 *, rescale: bool = True) -> ImageData:
        """(slices, rows, cols) volume, spacing and geometry.

        Args:
            image: what :meth:`read` returned.
            path: the file or series folder, named in errors.
            rescale: True: float32 HU (CT only); False: stored integers as
                int32 (label masks), unit None.

        Returns:
            ImageData with (slice, row, col) spacing in mm (slice spacing from
            the positions, median gap) and a :class:`VolumeGeometry` of kind
            "dicom-series" or "dicom-enhanced".

        Raises:
            ImportSourceError: a DICOM SEG, non-CT, inconsistent slices or
                frames, missing geometry, or undecodable pixel data.
        """
        if isinstance(image, list):
            return _dicom_stack(image, path, rescale=rescale)
        if str(image.get("Modality", "")).upper() == "SEG":
            raise ImportSourceError("is a DICOM SEG; export the segmentation as a NIfTI label "
                                    "map or .npy mask", path)
        if "PerFrameFunctionalGroupsSequence" in image \
                or declared_int(image, "NumberOfFrames", path, 1) > 1:
            return _dicom_enhanced(path, image, rescale=rescale)
        return _dicom_stack([(path, image)], path, rescale=rescale)


def has_dicm_preamble(path: Path) -> bool:
    """Whether ``path`` is a file with the "DICM" marker after the 128-byte preamble."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def read_dicom_file(path: Path) -> pydicom.Dataset:
    """``pydicom.dcmread`` with damaged files turned into one-line errors.

    Raises:
        ImportSourceError: not DICOM, or damaged.
    """
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError:
        raise ImportSourceError("not a valid DICOM file (no DICM preamble / file meta)",
                                path) from None
    except _DCMREAD_ERRORS as exc:
        raise ImportSourceError(f"unreadable DICOM ({exception_line(exc, path)})",
                                path) from None


def require_ct(dataset: pydicom.Dataset, path: Path) -> None:
    """Raise ImportSourceError unless the Modality is CT (so values are HU)."""
    modality = str(dataset.get("Modality", "")).upper()
    if modality == "SEG":
        raise ImportSourceError("is a DICOM SEG; export the segmentation as a NIfTI label map "
                                "or .npy mask", path)
    if modality != "CT":
        raise ImportSourceError(
            f"has Modality {modality or 'missing'!r}; expected CT (Hounsfield units)", path)


def dicom_pixels(dataset: pydicom.Dataset, path: Path) -> np.ndarray:
    """The stored pixel values of a greyscale dataset (all frames).

    Raises:
        ImportSourceError: no pixel data, colour, or undecodable.
    """
    if "PixelData" not in dataset and "FloatPixelData" not in dataset:
        raise ImportSourceError("DICOM file holds no pixel data", path)
    if declared_int(dataset, "SamplesPerPixel", path, 1) != 1:
        raise ImportSourceError("is a colour DICOM; expected greyscale CT", path)
    check_declared_shape((declared_int(dataset, "NumberOfFrames", path, 1),
                          declared_int(dataset, "Rows", path),
                          declared_int(dataset, "Columns", path)), path)
    try:
        return dataset.pixel_array
    except _PIXEL_ERRORS as exc:
        raise ImportSourceError(f"cannot decode DICOM pixel data ({exception_line(exc, path)})",
                                path) from None


def declared_int(dataset: pydicom.Dataset, keyword: str, path: Path,
                 default: int | None = None) -> int:
    """An integer attribute of the header (Rows, NumberOfFrames ...).

    Raises:
        ImportSourceError: missing without a default, or not an integer.
    """
    try:
        value = dataset.get(keyword)
        if value in (None, ""):
            if default is None:
                raise ImportSourceError(f"DICOM header lacks {keyword}", path)
            return default
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise ImportSourceError(f"DICOM header has a damaged {keyword} "
                                f"({str(dataset.get(keyword, ''))[:30]!r})", path) from None


def frame_macro(dataset: pydicom.Dataset, index: int, name: str):
    """The first item of functional-group sequence ``name`` for frame ``index``.

    Per-frame groups override shared ones (DICOM PS3.3 C.7.6.16); None when
    neither holds it (and always for classic single-frame files).
    """
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence") or []
    shared = dataset.get("SharedFunctionalGroupsSequence") or []
    candidates = ([per_frame[index]] if index < len(per_frame) else []) + list(shared[:1])
    for groups in candidates:
        if name in groups and len(groups[name].value):
            return groups[name].value[0]
    return None


def rescale_of(item) -> tuple[float, float]:
    """(slope, intercept); absent values mean the identity (stored values are HU)."""
    slope = item.get("RescaleSlope", 1.0)
    intercept = item.get("RescaleIntercept", 0.0)
    return float(1.0 if slope in (None, "") else slope), \
        float(0.0 if intercept in (None, "") else intercept)


def pixel_spacing(item) -> tuple[float, float]:
    """(row, col) PixelSpacing in mm; NaN when absent or malformed."""
    spacing = item.get("PixelSpacing")
    if not spacing or len(spacing) != 2:
        return float("nan"), float("nan")
    return float(spacing[0]), float(spacing[1])


def _orientation(item, path: Path, *, required: bool) -> np.ndarray:
    value = item.get("ImageOrientationPatient")
    if value is None or len(value) != 6:
        if required:
            raise ImportSourceError("lacks ImageOrientationPatient, needed to order slices", path)
        return np.array([1.0, 0, 0, 0, 1.0, 0])
    return np.array([float(v) for v in value])


def _position(item, path: Path, *, required: bool) -> np.ndarray:
    value = item.get("ImagePositionPatient")
    if value is None or len(value) != 3:
        if required:
            raise ImportSourceError("lacks ImagePositionPatient, needed to order slices", path)
        return np.zeros(3)
    return np.array([float(v) for v in value])


def _dicom_attributes(dataset: pydicom.Dataset) -> dict:
    """Scanner facts kept for provenance and leave-scanner-out studies."""
    out = {}
    for keyword, name in (("Manufacturer", "manufacturer"),
                          ("ManufacturerModelName", "scanner_model"),
                          ("ConvolutionKernel", "convolution_kernel"),
                          ("SliceThickness", "slice_thickness_mm")):
        value = dataset.get(keyword)
        if value not in (None, ""):
            out[name] = float(value) if keyword == "SliceThickness" else str(value)
    return out


def _lps_to_ras_affine(origin, step, orientation, spacing_rc) -> np.ndarray:
    """(slice, row, col, 1) -> RAS mm from DICOM geometry (which is LPS).

    DICOM: a pixel at (row r, column c) lies at origin + c·Δc·row_cosines +
    r·Δr·column_cosines, where PixelSpacing = (Δr, Δc).
    """
    row_cosines, column_cosines = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    spacing_r = spacing_rc[0] if np.isfinite(spacing_rc[0]) else 1.0
    spacing_c = spacing_rc[1] if np.isfinite(spacing_rc[1]) else 1.0
    affine = np.eye(4)
    affine[:3, 0] = step
    affine[:3, 1] = column_cosines * spacing_r
    affine[:3, 2] = row_cosines * spacing_c
    affine[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


def _dicom_stack(slices: list[tuple[Path, pydicom.Dataset]], where: Path, *,
                 rescale: bool) -> ImageData:
    """Sort single-frame slices along their normal and stack them."""
    first_path, first = slices[0]
    if rescale:
        require_ct(first, first_path)
    orientation = _orientation(first, first_path, required=len(slices) > 1)
    spacing_rc = pixel_spacing(first)
    shape = (declared_int(first, "Rows", first_path), declared_int(first, "Columns", first_path))
    check_declared_shape((len(slices),) + shape, where, "volume")
    normal = np.cross(orientation[:3], orientation[3:])
    positions = []
    for path, dataset in slices:
        if (declared_int(dataset, "Rows", path), declared_int(dataset, "Columns", path)) != shape:
            raise ImportSourceError(
                f"has {dataset.Rows}x{dataset.Columns} pixels but {first_path.name} has "
                f"{shape[0]}x{shape[1]}; all slices of a series must match", path)
        if not np.allclose(_orientation(dataset, path, required=len(slices) > 1), orientation,
                           atol=1e-4):
            raise ImportSourceError(
                f"ImageOrientationPatient differs from that of {first_path.name}", path)
        if not np.allclose(pixel_spacing(dataset), spacing_rc, atol=1e-4, equal_nan=True):
            raise ImportSourceError(f"PixelSpacing differs from that of {first_path.name}", path)
        positions.append(_position(dataset, path, required=len(slices) > 1))
    positions = np.array(positions)
    order = np.argsort(positions @ normal, kind="stable")
    projected = (positions @ normal)[order]
    gaps = np.diff(projected)
    if len(gaps) and gaps.min() < 1e-3:
        i = int(np.argmin(gaps))
        raise ImportSourceError(
            f"lies at the same position as {slices[order[i]][0].name}; a series needs "
            "distinct slice positions", slices[order[i + 1]][0])
    volume = np.empty((len(slices),) + shape, np.float32 if rescale else np.int32)
    for out_index, in_index in enumerate(order):
        path, dataset = slices[in_index]
        stored = dicom_pixels(dataset, path)
        if stored.ndim != 2:
            raise ImportSourceError(f"has pixel data of shape {stored.shape}, expected 2-D", path)
        if rescale:
            slope, intercept = rescale_of(dataset)
            volume[out_index] = stored.astype(np.float64) * slope + intercept
        else:
            volume[out_index] = stored
    thickness = float(first.get("SliceThickness", float("nan")) or float("nan"))
    slice_spacing = float(np.median(gaps)) if len(gaps) else thickness
    step = ((positions[order[-1]] - positions[order[0]]) / (len(slices) - 1)
            if len(slices) > 1 else normal * (slice_spacing if np.isfinite(slice_spacing) else 1.0))
    affine = _lps_to_ras_affine(positions[order[0]], step, orientation, spacing_rc)
    attributes = _dicom_attributes(first)
    if len(gaps) and np.ptp(gaps) > 0.01 * slice_spacing:
        attributes["uneven_slice_gaps_mm"] = [float(gaps.min()), float(gaps.max())]
    return ImageData(volume, "HU" if rescale else None,
                     (slice_spacing, spacing_rc[0], spacing_rc[1]),
                     VolumeGeometry("dicom-series", affine, attributes))


def _dicom_enhanced(path: Path, dataset: pydicom.Dataset, *, rescale: bool) -> ImageData:
    """An Enhanced (multi-frame) DICOM: geometry and rescale per frame."""
    if rescale:
        require_ct(dataset, path)
    frames = declared_int(dataset, "NumberOfFrames", path, 1)
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence") or []
    if per_frame and len(per_frame) != frames:
        raise ImportSourceError(
            f"has {len(per_frame)} per-frame functional groups for {frames} frames", path)
    orientation, positions, spacing_rc, rescales = _frame_geometry(dataset, frames, path)
    stored = dicom_pixels(dataset, path)
    if stored.ndim == 2:
        stored = stored[None]
    if stored.ndim != 3 or stored.shape[0] != frames:
        raise ImportSourceError(f"has pixel data of shape {stored.shape}, expected "
                                f"({frames}, rows, cols)", path)
    normal = np.cross(orientation[:3], orientation[3:])
    order = np.argsort(positions @ normal, kind="stable")
    gaps = np.diff((positions @ normal)[order])
    if len(gaps) and gaps.min() < 1e-3:
        raise ImportSourceError("has two frames at the same position; expected one stack of "
                                "distinct slices", path)
    volume = np.empty(stored.shape, np.float32 if rescale else np.int32)
    for out_index, in_index in enumerate(order):
        if rescale:
            slope, intercept = rescales[in_index]
            volume[out_index] = stored[in_index].astype(np.float64) * slope + intercept
        else:
            volume[out_index] = stored[in_index]
    thickness_item = frame_macro(dataset, 0, "PixelMeasuresSequence")
    thickness = float(thickness_item.get("SliceThickness", float("nan")) or float("nan"))
    slice_spacing = float(np.median(gaps)) if len(gaps) else thickness
    step = ((positions[order[-1]] - positions[order[0]]) / (frames - 1) if frames > 1
            else normal * (slice_spacing if np.isfinite(slice_spacing) else 1.0))
    affine = _lps_to_ras_affine(positions[order[0]], step, orientation, spacing_rc)
    attributes = _dicom_attributes(dataset)
    attributes["slice_thickness_mm"] = thickness
    return ImageData(volume, "HU" if rescale else None,
                     (slice_spacing, spacing_rc[0], spacing_rc[1]),
                     VolumeGeometry("dicom-enhanced", affine, attributes))


def _frame_geometry(dataset: pydicom.Dataset, frames: int, path: Path,
                    ) -> tuple[np.ndarray, np.ndarray, tuple[float, float], list]:
    """Orientation (6,), positions (frames, 3), (row, col) spacing and per-frame
    (slope, intercept) of an Enhanced DICOM, checked to form one stack."""
    orientations, positions, spacings, rescales = [], [], [], []
    for i in range(frames):
        plane_orientation = frame_macro(dataset, i, "PlaneOrientationSequence")
        plane_position = frame_macro(dataset, i, "PlanePositionSequence")
        measures = frame_macro(dataset, i, "PixelMeasuresSequence")
        if plane_orientation is None or plane_position is None or measures is None:
            raise ImportSourceError(
                f"frame {i + 1} lacks PlaneOrientation, PlanePosition or PixelMeasures "
                "functional groups; cannot place it in the volume", path)
        orientations.append(_orientation(plane_orientation, path, required=True))
        positions.append(_position(plane_position, path, required=True))
        spacings.append(pixel_spacing(measures))
        transform = frame_macro(dataset, i, "PixelValueTransformationSequence")
        rescales.append(rescale_of(transform if transform is not None else dataset))
    orientation = orientations[0]
    for i, (o, s) in enumerate(zip(orientations, spacings)):
        if not np.allclose(o, orientation, atol=1e-4):
            raise ImportSourceError(f"frame {i + 1} has another orientation than frame 1; "
                                    "expected one stack of parallel slices", path)
        if not np.allclose(s, spacings[0], atol=1e-4, equal_nan=True):
            raise ImportSourceError(f"frame {i + 1} has another pixel spacing than frame 1",
                                    path)
    return orientation, np.array(positions), spacings[0], rescales
