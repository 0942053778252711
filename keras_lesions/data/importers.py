"""Readers and importers that turn users' images into a :class:`LesionDataset`.

Two kinds of source are understood (``kl data import SOURCE OUT.h5``):

* **class folders**: ``SOURCE/<class>/<ROI image>``, one folder per class, each
  file an already-cropped lesion ROI (PNG, TIFF, JPEG, ``.npy`` or DICOM). An
  optional mapping CSV gives patient ids (and diameters); without one every
  file is its own patient.
* **volumes**: CT volumes (NIfTI, a DICOM series folder or one Enhanced
  multi-frame DICOM file) with lesion label masks, listed in a mapping CSV with
  one row per lesion. Each lesion is cropped from the axial slice where it is
  largest, with real surrounding tissue as context.

Everything here returns numpy; nothing imports TensorFlow. Images keep their
units: Hounsfield units (float32) where the source has them, otherwise values
in [0, 1] (``intensity_unit="normalized"``). Nothing is windowed or resampled.
Every problem with the user's data raises :class:`ImportSourceError` whose one
line names the offending file (or CSV line) and the problem.
"""
from __future__ import annotations

import csv
import io
import itertools
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import nibabel as nib
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from keras_lesions.data.dataset import Lesion, LesionDataset
from keras_lesions.data.imaging import AIR_HU, crop_padded, mask_diameter, roi_and_context_boxes
from keras_lesions.data.registry import (
    CLASS_NAMES,
    DEFAULT_WINDOW_LEVEL,
    DEFAULT_WINDOW_WIDTH,
    canonical_class_name,
)
from keras_lesions.errors import ImportSourceError, KerasLesionsError

SOURCE_KINDS = ("class-folders", "volumes")
NPY_UNITS = ("HU", "normalized")

# ROI image formats of a class folder, by suffix. Files with any other suffix
# (or none) are accepted only if they carry the DICOM "DICM" preamble.
_RASTER_SUFFIXES = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".jpg": "jpeg",
                    ".jpeg": "jpeg"}
_DICOM_SUFFIXES = {".dcm", ".dicom"}
_NIFTI_SUFFIXES = (".nii.gz", ".nii")
# Files operating systems drop into folders; they are never lesions.
_OS_JUNK = {"thumbs.db", "desktop.ini"}

CLASS_FOLDER_COLUMNS = ("file", "patient_id")
CLASS_FOLDER_OPTIONAL_COLUMNS = ("diameter_mm", "class", "lesion_id")
VOLUME_COLUMNS = ("volume", "mask", "label", "class")
VOLUME_OPTIONAL_COLUMNS = ("patient_id", "lesion_id")

# What pydicom, nibabel and the codecs behind them raise on damaged or
# unsupported files. Each of these means "this file cannot be read", so it is
# turned into an ImportSourceError naming the file; anything else is a bug and
# is left to surface.
_READ_ERRORS = (InvalidDicomError, nib.filebasedimages.ImageFileError, OSError, EOFError,
                ValueError, TypeError, KeyError, IndexError, AttributeError,
                NotImplementedError, RuntimeError, struct.error)


# --------------------------------------------------------------------------- readers


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
            colour, too small, or has NaN/infinite pixels.
        KerasLesionsError: ``npy_unit`` is not one of ``NPY_UNITS``.
    """
    path = Path(path)
    if npy_unit not in NPY_UNITS:
        raise KerasLesionsError(f"npy_unit must be one of {NPY_UNITS}, got {npy_unit!r}")
    kind = _roi_file_kind(path)
    nan_spacing = (float("nan"), float("nan"))
    if kind is None:
        raise ImportSourceError(
            "not a supported ROI image (expected PNG, TIFF, JPEG, .npy or DICOM)", path)
    if kind == "npy":
        image = _squeeze_to_2d(_load_npy(path), path)
        if image.dtype.kind not in "biuf":
            raise ImportSourceError(f"holds {image.dtype} values, expected numbers", path)
        image = image.astype(np.float32)
        _check_finite(image, path)
        if npy_unit == "normalized" and (image.min() < 0 or image.max() > 1):
            raise ImportSourceError(
                f"values span [{image.min():g}, {image.max():g}], outside [0, 1] although "
                "npy_unit is 'normalized' (use npy_unit 'HU' for Hounsfield units)", path)
        unit, spacing = npy_unit, nan_spacing
    elif kind == "dicom":
        dataset = _dcmread(path)
        _require_ct(dataset, path)
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
        if frames > 1:
            raise ImportSourceError(
                f"is a 3-D image ({frames} frames) where a 2-D ROI is expected", path)
        stored = _squeeze_to_2d(_dicom_pixels(dataset, path), path)
        # A one-frame Enhanced CT keeps rescale and spacing in its functional
        # groups; a classic CT keeps them at the top level.
        transform = _frame_macro(dataset, 0, "PixelValueTransformationSequence")
        measures = _frame_macro(dataset, 0, "PixelMeasuresSequence")
        slope, intercept = _rescale_of(transform if transform is not None else dataset)
        image = (stored.astype(np.float64) * slope + intercept).astype(np.float32)
        _check_finite(image, path)
        unit, spacing = "HU", _pixel_spacing(measures if measures is not None else dataset)
    else:
        image, unit, spacing = _read_raster(path, kind), "normalized", nan_spacing
    if min(image.shape) < 2:
        raise ImportSourceError(f"is too small ({image.shape[0]}x{image.shape[1]} pixels)", path)
    return image, unit, spacing


@dataclass(frozen=True)
class VolumeGeometry:
    """Where a volume's voxels lie, for checking that a mask belongs to it.

    Attributes:
        kind: "nifti", "dicom-series" or "dicom-enhanced".
        affine: float64 (4, 4) mapping (slice, row, col, 1) voxel indices to
            patient coordinates in mm, RAS+ (nibabel's convention; DICOM's LPS
            is converted).
        attributes: JSON-able provenance (scanner, slice thickness, uneven
            slice gaps).
    """

    kind: str
    affine: np.ndarray
    attributes: dict = field(default_factory=dict)


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
    volume, spacing, geometry = _read_volume_like(Path(path), as_mask=False)
    _check_axial(geometry, Path(path))
    return volume.astype(np.float32, copy=False), spacing, geometry


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
    if path.name.lower().endswith(".npy"):
        labels, geometry = _load_npy(path), None
        if labels.ndim != 3:
            raise ImportSourceError(
                f"mask has shape {labels.shape}, expected 3-D (slices, rows, cols)", path)
    else:
        labels, _, geometry = _read_volume_like(path, as_mask=True)
    return _as_label_map(labels, path), geometry


# --------------------------------------------------------------------------- source kind


def detect_source_kind(source: str | os.PathLike, mapping_csv: str | os.PathLike | None) -> str:
    """Tell which importer a source needs.

    Rules: a mapping CSV with a ``volume`` or ``mask`` column means "volumes";
    one with a ``file`` column means "class-folders"; without a CSV, a folder
    with sub-folders means "class-folders".

    Returns:
        "class-folders" or "volumes".

    Raises:
        ImportSourceError: the source is missing, or fits neither kind (the
            message says what was expected).
    """
    source = Path(source)
    if not source.exists():
        raise ImportSourceError("no such file or folder", source)
    if mapping_csv is not None:
        header, _ = _read_csv_table(Path(mapping_csv))
        if "volume" in header or "mask" in header:
            kind = "volumes"
        elif "file" in header:
            kind = "class-folders"
        else:
            raise ImportSourceError(
                f"has columns {header}: expected a 'file' column (class folders of ROI images) "
                f"or columns {list(VOLUME_COLUMNS)} (volumes with masks)", mapping_csv)
        if not source.is_dir():
            raise ImportSourceError(
                "expected a folder holding the files the mapping CSV names", source)
        return kind
    if not source.is_dir():
        raise ImportSourceError(
            "expected a folder with one sub-folder of ROI images per class, or a folder of "
            "volumes and masks with a mapping CSV", source)
    entries = _visible_entries(source)
    if any(entry.is_dir() for entry in entries):
        return "class-folders"
    if any(_volume_suffix(entry) for entry in entries):
        raise ImportSourceError(
            "holds volumes but no mapping CSV was given; pass one with columns "
            f"{', '.join(VOLUME_COLUMNS)} (one row per lesion)", source)
    raise ImportSourceError(
        "holds no class sub-folders: expected SOURCE/<class>/<ROI images>, or volumes and "
        "masks with a mapping CSV", source)


def import_source(
    source: str | os.PathLike,
    *,
    mapping_csv: str | os.PathLike | None = None,
    roi_margin: float = 0.4,
    context_margin: float = 1.0,
    input_size: int = 64,
    classes: Sequence[str] | None = None,
    npy_unit: str = "HU",
    log: Callable[[str], None] = print,
) -> LesionDataset:
    """Import class folders or volumes (see :func:`detect_source_kind`).

    Args:
        source: the source folder.
        mapping_csv: the mapping CSV (required for volumes).
        roi_margin: tissue margin on each side of the lesion as a fraction of
            its diameter; ROI side = diameter·(1 + 2·roi_margin) (both papers
            crop the lesion plus surrounding tissue; 0.4 is our default).
        context_margin: the same for the context crop of volumes (≥ roi_margin).
        input_size: network input side the dataset targets (stored only).
        classes: allowed classes and their order (see the two importers).
        npy_unit: unit of ``.npy`` ROIs, "HU" or "normalized".
        log: receives human-readable notes and warnings.

    Returns:
        The dataset, validated, with ``created_by`` empty.

    Raises:
        ImportSourceError: any problem with the source, naming the file.
        KerasLesionsError: invalid options.
    """
    kind = detect_source_kind(source, mapping_csv)
    if kind == "volumes":
        return import_volumes(source, mapping_csv, roi_margin=roi_margin,
                              context_margin=context_margin, input_size=input_size,
                              classes=classes, log=log)
    return import_class_folders(source, mapping_csv=mapping_csv, roi_margin=roi_margin,
                                input_size=input_size, classes=classes, npy_unit=npy_unit,
                                log=log)


# --------------------------------------------------------------------------- class folders


@dataclass
class _RoiFile:
    path: Path
    rel: str          # path relative to SOURCE, posix
    class_name: str
    folder: str


def import_class_folders(
    source: str | os.PathLike,
    *,
    mapping_csv: str | os.PathLike | None = None,
    roi_margin: float = 0.4,
    input_size: int = 64,
    classes: Sequence[str] | None = None,
    npy_unit: str = "HU",
    log: Callable[[str], None] = print,
) -> LesionDataset:
    """Import ``SOURCE/<class>/<ROI image>`` folders of already-cropped ROIs.

    Classes: each folder name maps to its canonical class through
    ``canonical_class_name`` ("Cysts" → "cyst"); other names are kept as the
    user's own classes. Order: canonical order first, then others
    alphabetically; or, when ``classes`` is given, that order: folders of other
    classes are then skipped (and logged), and every given class needs a
    folder. Dotfiles, Thumbs.db and desktop.ini are skipped; any other file
    must be a readable ROI (:func:`read_roi_image`). One dataset has one unit:
    DICOM gives HU, PNG/TIFF/JPEG give "normalized", ``.npy`` gives
    ``npy_unit``; mixing them is an error.

    Mapping CSV (optional): columns ``file`` (path relative to SOURCE, or a
    bare file name when unique, or made unique by ``class``), ``patient_id``,
    optional ``diameter_mm``, ``class`` (must match the file's folder) and
    ``lesion_id``. With a CSV every file must be listed exactly once. Without
    one, every file is its own patient (logged: one patient's lesions could
    then land in different folds).

    A patient conflict is one source item given two identities: the same file
    on two CSV rows with different patient ids, or under two classes. The same
    patient id on files of different classes is allowed (a patient may have a
    cyst and a metastasis).

    Lesions have no context (``has_context=False``, ``context is roi``,
    ``roi_box`` = the whole image, no mask). Diameter: from the CSV
    (``diameter_source="csv"``, pixels via the spacing when known), else
    estimated from the ROI as max(h, w)/(1 + 2·roi_margin)
    (``diameter_source="roi-estimate"``). Lesion id: ``lesion_id`` from the
    CSV, else "<class>/<file stem>".

    Returns:
        The validated dataset (``created_by`` empty, options in ``extra``).

    Raises:
        ImportSourceError: naming the file, folder or CSV line at fault.
        KerasLesionsError: invalid options.
    """
    _check_options(roi_margin, roi_margin, input_size, npy_unit)
    source = Path(source)
    if not source.is_dir():
        raise ImportSourceError("expected a folder with one sub-folder of ROI images per class",
                                source)
    files_by_class, skipped = _collect_class_folders(source, classes, log)
    files = [f for name in files_by_class for f in files_by_class[name]]
    class_names = list(files_by_class)

    rows = (_class_folder_mapping(Path(mapping_csv), source, files, skipped)
            if mapping_csv is not None else None)
    if rows is None:
        log(f"no mapping CSV: each of the {len(files)} images counts as its own patient, so "
            "lesions of one patient could land in different folds (pass a CSV with columns "
            "file,patient_id to keep them together)")

    images = {}
    for roi_file in files:
        images[roi_file.rel] = read_roi_image(roi_file.path, npy_unit)
    unit = _single_unit(files, images, source)
    if unit == "HU" and all(0 <= img.min() and img.max() <= 1 for img, _, _ in images.values()):
        log("warning: every image lies in [0, 1] although the unit is HU; if these .npy files "
            "are normalized, pass npy_unit='normalized'")

    lesions: list[Lesion] = []
    seen_ids: dict[str, str] = {}
    estimated = 0
    for roi_file in files:
        image, _, spacing = images[roi_file.rel]
        row = rows.get(roi_file.rel) if rows is not None else None
        lesion = _roi_lesion(roi_file, image, spacing, row, class_names, roi_margin, log)
        estimated += lesion.diameter_source == "roi-estimate"
        where = roi_file.path if row is None else Path(mapping_csv)
        if lesion.lesion_id in seen_ids:
            line = f"line {row.line}: " if row is not None else ""
            raise ImportSourceError(
                f"{line}lesion id {lesion.lesion_id!r} of {roi_file.rel} repeats that of "
                f"{seen_ids[lesion.lesion_id]}; lesion ids must be unique (give a lesion_id "
                "column or rename one file)", where)
        seen_ids[lesion.lesion_id] = roi_file.rel
        lesions.append(lesion)
    if estimated:
        log(f"{estimated} of {len(lesions)} diameters estimated from the ROI size as "
            f"side/(1 + 2*{roi_margin:g})")

    dataset = LesionDataset(
        class_names=class_names,
        lesions=lesions,
        intensity_unit=unit,
        window_level=float("nan") if unit == "normalized" else DEFAULT_WINDOW_LEVEL,
        window_width=float("nan") if unit == "normalized" else DEFAULT_WINDOW_WIDTH,
        input_size=int(input_size),
        description=f"ROI images imported from class folders of {source.name}",
        extra={"importer": "class-folders", "source": str(source),
               "mapping_csv": None if mapping_csv is None else str(mapping_csv),
               "roi_margin": float(roi_margin), "npy_unit": npy_unit,
               "classes": None if classes is None else list(classes)},
    )
    dataset.validate(source)
    return dataset


def _collect_class_folders(source: Path, classes: Sequence[str] | None,
                           log: Callable[[str], None],
                           ) -> tuple[dict[str, list[_RoiFile]], dict[str, Path]]:
    """Class name -> its files, in dataset class order; and the skipped folders by class."""
    folders: dict[str, Path] = {}
    stray = []
    for entry in _visible_entries(source):
        if not entry.is_dir():
            stray.append(entry.name)
            continue
        name = canonical_class_name(entry.name) or entry.name
        if name in folders:
            raise ImportSourceError(
                f"folders {folders[name].name!r} and {entry.name!r} both mean class {name!r}; "
                "merge them", source)
        folders[name] = entry
    if stray:
        log(f"ignoring files at the top of {source} (only class sub-folders are read): "
            f"{', '.join(sorted(stray)[:5])}{' ...' if len(stray) > 5 else ''}")
    if not folders:
        raise ImportSourceError("holds no class sub-folders: expected SOURCE/<class>/<ROI images>",
                                source)

    wanted = _class_order(folders, classes)
    for name in folders:
        if name not in wanted:
            log(f"skipping folder {folders[name].name!r}: class {name!r} is not among the "
                f"requested classes {wanted}")
    for name in wanted:
        if name not in folders:
            raise ImportSourceError(
                f"requested class {name!r} has no folder (folders: "
                f"{', '.join(sorted(p.name for p in folders.values()))})", source)

    files_by_class: dict[str, list[_RoiFile]] = {}
    for name in wanted:
        folder = folders[name]
        found = []
        for entry in _visible_entries(folder):
            if entry.is_dir():
                raise ImportSourceError(
                    f"is a folder inside class folder {folder.name!r}; expected only ROI image "
                    "files there", entry)
            found.append(_RoiFile(entry, entry.relative_to(source).as_posix(), name, folder.name))
        if not found:
            raise ImportSourceError(f"class folder for {name!r} holds no images", folder)
        files_by_class[name] = found
    if len(files_by_class) < 2:
        only = next(iter(files_by_class))
        raise ImportSourceError(
            f"has only one class ({only!r}); a classifier needs at least two class folders",
            source)
    return files_by_class, {name: folders[name] for name in folders if name not in wanted}


def _class_order(found: Iterable[str], classes: Sequence[str] | None) -> list[str]:
    """Dataset class order: ``classes`` if given, else canonical then alphabetical."""
    if classes is not None:
        wanted = [canonical_class_name(c) or c.strip() for c in classes]
        if len(set(wanted)) != len(wanted) or not all(wanted):
            raise KerasLesionsError(f"classes must be distinct, non-empty names, got {list(classes)}")
        return wanted
    found = set(found)
    return ([c for c in CLASS_NAMES if c in found]
            + sorted((c for c in found if c not in CLASS_NAMES), key=lambda c: (c.lower(), c)))


@dataclass
class _CsvRow:
    line: int
    values: dict[str, str]


def _class_folder_mapping(csv_path: Path, source: Path, files: list[_RoiFile],
                          skipped: dict[str, Path]) -> dict[str, _CsvRow]:
    """File (relative path) -> its CSV row; every file listed exactly once.

    Rows naming files of skipped class folders are ignored.
    """
    rows = _read_mapping_csv(csv_path, CLASS_FOLDER_COLUMNS, CLASS_FOLDER_OPTIONAL_COLUMNS)
    folder_classes = {f.class_name for f in files} | set(skipped)
    by_rel = {f.rel: f for f in files}
    by_name: dict[str, list[_RoiFile]] = {}
    for f in files:
        by_name.setdefault(f.path.name, []).append(f)
    mapping: dict[str, _CsvRow] = {}
    for row in rows:
        at = f"line {row.line}"
        ref = row.values["file"].replace("\\", "/").strip("/")
        if not ref:
            raise ImportSourceError(f"{at}: empty 'file'", csv_path)
        wanted_class = None
        if row.values.get("class"):
            raw = row.values["class"]
            wanted_class = canonical_class_name(raw) or raw
            if wanted_class not in folder_classes:
                raise ImportSourceError(
                    f"{at}: class {raw!r} matches no class folder (classes: "
                    f"{', '.join(sorted(folder_classes))})", csv_path)
        if wanted_class in skipped:
            continue  # a file of a class the caller did not ask for
        if ref in by_rel:
            roi_file = by_rel[ref]
        else:
            matches = by_name.get(ref, []) if "/" not in ref else []
            if wanted_class is not None:
                matches = [m for m in matches if m.class_name == wanted_class]
            if not matches:
                if _in_skipped_folder(ref, source, skipped):
                    continue
                raise ImportSourceError(
                    f"{at}: file {row.values['file']!r} not found in the class folders of "
                    f"{source}", csv_path)
            if len(matches) > 1:
                raise ImportSourceError(
                    f"{at}: file name {ref!r} matches {', '.join(m.rel for m in matches)}; give "
                    "the path relative to SOURCE or a class column", csv_path)
            roi_file = matches[0]
        if roi_file.rel in mapping:
            first = mapping[roi_file.rel]
            first_class = first.values.get("class") or roi_file.class_name
            this_class = row.values.get("class") or roi_file.class_name
            first_class = canonical_class_name(first_class) or first_class
            this_class = canonical_class_name(this_class) or this_class
            if first_class != this_class:
                problem = (f"listed under two classes ({first_class!r} on line {first.line}, "
                           f"{this_class!r} here)")
            elif first.values["patient_id"] != row.values["patient_id"]:
                problem = (f"given two patient ids ({first.values['patient_id']!r} on line "
                           f"{first.line}, {row.values['patient_id']!r} here)")
            else:
                problem = f"listed twice (also on line {first.line})"
            raise ImportSourceError(f"{at}: file {roi_file.rel} is {problem}", csv_path)
        if wanted_class is not None and wanted_class != roi_file.class_name:
            raise ImportSourceError(
                f"{at}: file {roi_file.rel} lies in the folder of class "
                f"{roi_file.class_name!r} but the CSV says {wanted_class!r}", csv_path)
        if not row.values["patient_id"]:
            raise ImportSourceError(f"{at}: empty patient_id for {roi_file.rel}", csv_path)
        if row.values.get("diameter_mm"):
            _positive_float(row.values["diameter_mm"], "diameter_mm", row, csv_path)
        mapping[roi_file.rel] = row
    unlisted = [f for f in files if f.rel not in mapping]
    if unlisted:
        more = f" (and {len(unlisted) - 1} more files)" if len(unlisted) > 1 else ""
        raise ImportSourceError(f"not listed in the mapping CSV {csv_path}{more}; every image "
                                "needs a patient_id", unlisted[0].path)
    return mapping


def _in_skipped_folder(ref: str, source: Path, skipped: dict[str, Path]) -> bool:
    """Whether a CSV ``file`` names a file of a skipped class folder."""
    for folder in skipped.values():
        if "/" in ref:
            if (source / ref).is_file() and (source / ref).parent.resolve() == folder.resolve():
                return True
        elif (folder / ref).is_file():
            return True
    return False


def _single_unit(files: list[_RoiFile], images: dict, source: Path) -> str:
    """The one intensity unit of all images, or an error naming files of each unit."""
    by_unit: dict[str, list[str]] = {}
    for f in files:
        by_unit.setdefault(images[f.rel][1], []).append(f.rel)
    if len(by_unit) == 1:
        return next(iter(by_unit))
    parts = [f"{len(rels)} {unit} images (e.g. {rels[0]})"
             for unit, rels in sorted(by_unit.items())]
    raise ImportSourceError(
        f"mixes units: {' and '.join(parts)}; a dataset has one unit (DICOM gives HU, "
        "PNG/TIFF/JPEG give normalized, .npy gives npy_unit), so convert one group", source)


def _roi_lesion(roi_file: _RoiFile, image: np.ndarray, spacing: tuple[float, float],
                row: _CsvRow | None, class_names: list[str], roi_margin: float,
                log: Callable[[str], None]) -> Lesion:
    height, width = image.shape
    # The ROI holds the lesion plus roi_margin·diameter on each side.
    estimate_px = max(height, width) / (1 + 2 * roi_margin)
    mean_spacing = float(np.mean(spacing))
    attributes = {"folder": roi_file.folder, "file_format": roi_file.path.suffix.lower() or "dicom"}
    diameter_mm = float("nan")
    if row is not None and row.values.get("diameter_mm"):
        diameter_mm = float(row.values["diameter_mm"])  # checked when the CSV was read
    if not np.isnan(diameter_mm):
        source_kind = "csv"
        if np.isfinite(mean_spacing):
            diameter_px = diameter_mm / mean_spacing
            if diameter_px > 1.05 * max(height, width):
                log(f"warning: {roi_file.rel}: CSV diameter {diameter_mm:g} mm is "
                    f"{diameter_px:.0f} px, larger than the {height}x{width} ROI (cm vs mm?)")
        else:
            # No spacing: pixels can only come from the ROI size.
            diameter_px = estimate_px
            attributes["diameter_px_source"] = "roi-estimate"
    else:
        source_kind = "roi-estimate"
        diameter_px = estimate_px
        diameter_mm = estimate_px * mean_spacing  # NaN when spacing is unknown
    if source_kind == "csv" and "diameter_px_source" not in attributes:
        # A measured diameter in pixels places the lesion box directly.
        lesion_h = lesion_w = diameter_px
    else:
        lesion_h, lesion_w = height / (1 + 2 * roi_margin), width / (1 + 2 * roi_margin)
    lesion_h = int(np.clip(round(lesion_h), 1, height))
    lesion_w = int(np.clip(round(lesion_w), 1, width))
    r0, c0 = (height - lesion_h) // 2, (width - lesion_w) // 2
    lesion_id = (row.values.get("lesion_id") if row is not None else "") or \
        f"{roi_file.class_name}/{roi_file.path.stem}"
    return Lesion(
        lesion_id=lesion_id,
        patient_id=row.values["patient_id"] if row is not None else roi_file.rel,
        label=class_names.index(roi_file.class_name),
        roi=image,
        context=image,
        roi_box=(0, 0, height, width),
        lesion_box=(r0, c0, r0 + lesion_h, c0 + lesion_w),
        mask=None,
        spacing_mm=(float(spacing[0]), float(spacing[1])),
        diameter_px=float(diameter_px),
        diameter_mm=float(diameter_mm),
        diameter_source=source_kind,
        source=roi_file.rel,
        has_context=False,
        slice_index=-1,
        attributes=attributes,
    )


# --------------------------------------------------------------------------- volumes


def import_volumes(
    source: str | os.PathLike,
    mapping_csv: str | os.PathLike,
    *,
    roi_margin: float = 0.4,
    context_margin: float = 1.0,
    input_size: int = 64,
    classes: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
) -> LesionDataset:
    """Import lesions from CT volumes and label masks listed in a mapping CSV.

    CSV columns: ``volume``, ``mask``, ``label`` (integer > 0 in the mask),
    ``class``, optional ``patient_id`` (default: the volume's path relative to
    SOURCE without extension) and ``lesion_id`` (default
    "<volume stem>-L<label>"). Paths are relative to SOURCE, else to the CSV's
    folder. One label marks one lesion.

    Mask convention: the mask array must have exactly the volume's shape in
    :func:`read_volume`'s (slices, rows, cols) order. NIfTI and DICOM masks are
    brought to that order by the same rules as volumes, and when both mask and
    volume carry geometry their voxel-to-patient affines must agree (corner
    voxels within a tenth of the smallest spacing), which catches flipped or
    shifted masks. ``.npy`` masks carry no geometry: they must be saved in the
    importer's order (for a NIfTI volume that is the nibabel array transposed
    ``(2, 1, 0)``; for DICOM, slices sorted along the normal).

    Each lesion is taken from the axial slice where ``mask == label`` has the
    largest area (the lowest such slice on ties). Diameter: the longest
    in-plane diameter of that slice's mask (``diameter_source="mask"``). The
    ROI is a square of side diameter·(1 + 2·roi_margin) centred on the lesion,
    the context likewise with ``context_margin``; parts outside the slice are
    filled with air (-1000 HU) and ``attributes["padded_with_air"]`` says so.

    Classes: canonical spellings are applied; each must be in ``classes``
    (default ``registry.CLASS_NAMES``); the dataset keeps the classes present,
    in that order. A volume given two different patient ids is an error.

    Returns:
        The validated dataset (``created_by`` empty, options in ``extra``).

    Raises:
        ImportSourceError: naming the file or CSV line at fault.
        KerasLesionsError: invalid options.
    """
    _check_options(roi_margin, context_margin, input_size, "HU")
    source = Path(source)
    csv_path = Path(mapping_csv)
    allowed = _class_order((), classes) if classes is not None else list(CLASS_NAMES)
    rows = _read_mapping_csv(csv_path, VOLUME_COLUMNS, VOLUME_OPTIONAL_COLUMNS)
    specs = _volume_specs(rows, source, csv_path, allowed, classes is not None)

    present = {spec.class_name for spec in specs}
    class_names = [c for c in allowed if c in present]
    if classes is not None and len(class_names) < len(allowed):
        missing = [c for c in allowed if c not in present]
        raise ImportSourceError(f"requested classes {missing} have no lesion in the CSV", csv_path)
    if len(class_names) < 2:
        raise ImportSourceError(
            f"has only one class ({class_names[0]!r}); a classifier needs at least two", csv_path)

    lesions: dict[int, Lesion] = {}
    by_volume: dict[Path, list[_VolumeSpec]] = {}
    for spec in specs:
        by_volume.setdefault(spec.volume, []).append(spec)
    # One volume and one mask in memory at a time (CT volumes can be hundreds
    # of megabytes); each file is still read only once.
    for volume_path, volume_specs in by_volume.items():
        volume, spacing, geometry = read_volume(volume_path)
        labels, labels_path = None, None
        for spec in sorted(volume_specs, key=lambda spec: str(spec.mask)):
            if spec.mask != labels_path:
                labels, labels_path = None, None
                labels = _mask_for(spec.mask, volume, spacing, geometry, volume_path)
                labels_path = spec.mask
            lesions[spec.line] = _volume_lesion(spec, volume, spacing, geometry, labels,
                                                class_names, roi_margin, context_margin, log)
        del volume, labels
    ordered = [lesions[spec.line] for spec in specs]

    dataset = LesionDataset(
        class_names=class_names,
        lesions=ordered,
        intensity_unit="HU",
        input_size=int(input_size),
        description=f"lesions imported from CT volumes listed in {csv_path.name}",
        extra={"importer": "volumes", "source": str(source), "mapping_csv": str(csv_path),
               "roi_margin": float(roi_margin), "context_margin": float(context_margin),
               "classes": None if classes is None else list(classes)},
    )
    dataset.validate(source)
    return dataset


@dataclass
class _VolumeSpec:
    line: int
    volume: Path
    volume_rel: str
    mask: Path
    label: int
    class_name: str
    patient_id: str
    lesion_id: str


def _volume_specs(rows: list[_CsvRow], source: Path, csv_path: Path, allowed: list[str],
                  explicit_classes: bool) -> list[_VolumeSpec]:
    specs = []
    patient_of: dict[Path, tuple[str, int]] = {}
    lesion_at: dict[tuple[Path, Path, int], int] = {}
    id_at: dict[str, int] = {}
    for row in rows:
        at = f"line {row.line}"
        volume = _resolve(row, "volume", source, csv_path)
        mask = _resolve(row, "mask", source, csv_path)
        raw_label = row.values["label"]
        try:
            label_value = float(raw_label)
        except ValueError:
            label_value = float("nan")
        if not (np.isfinite(label_value) and label_value == int(label_value) and label_value > 0):
            raise ImportSourceError(
                f"{at}: label {raw_label!r} is not a positive integer (0 is background)", csv_path)
        label = int(label_value)
        raw_class = row.values["class"]
        class_name = canonical_class_name(raw_class) or raw_class
        if class_name not in allowed:
            hint = ("" if explicit_classes else
                    "; pass classes (--classes) to use other classes")
            raise ImportSourceError(
                f"{at}: class {raw_class!r} is not one of the allowed classes {allowed}{hint}",
                csv_path)
        volume_rel = _relative_name(volume, source, csv_path)
        stem = _strip_volume_suffix(volume_rel)
        patient_id = row.values.get("patient_id") or stem
        first = patient_of.setdefault(volume, (patient_id, row.line))
        if first[0] != patient_id:
            raise ImportSourceError(
                f"{at}: volume {volume_rel} is given patient id {patient_id!r} but line "
                f"{first[1]} gave {first[0]!r}; one volume belongs to one patient", csv_path)
        key = (volume, mask, label)
        if key in lesion_at:
            raise ImportSourceError(
                f"{at}: label {label} of {volume_rel} with the same mask is already listed on "
                f"line {lesion_at[key]}", csv_path)
        lesion_at[key] = row.line
        lesion_id = row.values.get("lesion_id") or f"{Path(stem).name}-L{label}"
        if lesion_id in id_at:
            raise ImportSourceError(
                f"{at}: lesion id {lesion_id!r} repeats line {id_at[lesion_id]}; lesion ids "
                "must be unique (give a lesion_id column)", csv_path)
        id_at[lesion_id] = row.line
        specs.append(_VolumeSpec(row.line, volume, volume_rel, mask, label, class_name,
                                 patient_id, lesion_id))
    return specs


def _mask_for(mask_path: Path, volume: np.ndarray, spacing: tuple[float, float, float],
              geometry: VolumeGeometry, volume_path: Path) -> np.ndarray:
    """The mask's labels, once its shape (and geometry, if it has one) fit the volume."""
    labels, mask_geometry = read_mask(mask_path)
    if labels.shape != volume.shape:
        raise ImportSourceError(
            f"mask has shape {labels.shape} but volume {volume_path.name} has {volume.shape} "
            "(both as (slices, rows, cols))", mask_path)
    if mask_geometry is not None:
        corners = np.array(list(itertools.product(*[(0, n - 1) for n in volume.shape])), float)
        corners = np.c_[corners, np.ones(len(corners))]
        gap = np.linalg.norm(corners @ geometry.affine.T - corners @ mask_geometry.affine.T,
                             axis=1).max()
        if gap > 0.1 * min(spacing):
            raise ImportSourceError(
                f"mask geometry differs from volume {volume_path.name}: voxels lie up to "
                f"{gap:.3g} mm apart (flipped, reordered or shifted axes?); save the mask in "
                "the volume's geometry", mask_path)
    return labels


def _volume_lesion(spec: _VolumeSpec, volume: np.ndarray, spacing: tuple[float, float, float],
                   geometry: VolumeGeometry, labels: np.ndarray, class_names: list[str],
                   roi_margin: float, context_margin: float,
                   log: Callable[[str], None]) -> Lesion:
    lesion_3d = labels == spec.label
    areas = lesion_3d.sum(axis=(1, 2))
    if not areas.any():
        present = np.unique(labels)
        present = [int(v) for v in present[present > 0][:20]]
        raise ImportSourceError(
            f"label {spec.label} (CSV line {spec.line}) does not occur in this mask; labels "
            f"present: {present}", spec.mask)
    slice_index = int(np.argmax(areas))  # first maximum: the lowest slice on ties
    slice_mask = lesion_3d[slice_index]
    slice_hu = volume[slice_index]
    spacing_rc = (float(spacing[1]), float(spacing[2]))
    n_regions = cv2.connectedComponents(slice_mask.astype(np.uint8), connectivity=8)[0] - 1
    if n_regions > 1:
        log(f"warning: label {spec.label} of {spec.volume_rel} has {n_regions} separate regions "
            f"on slice {slice_index}; all are taken as one lesion (give each lesion its own "
            "label)")

    rows, cols = np.nonzero(slice_mask)
    lesion_box = (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1)
    diameter_px = mask_diameter(slice_mask, (1.0, 1.0))
    diameter_mm = mask_diameter(slice_mask, spacing_rc)
    roi_box, context_box = roi_and_context_boxes(lesion_box, diameter_px, roi_margin,
                                                 context_margin)
    # Rounding of the two centred boxes could leave the ROI (or lesion) a pixel
    # outside the context; the union keeps every box inside it.
    context_box = _union(context_box, roi_box, lesion_box)
    context, context_padded = crop_padded(slice_hu, context_box, AIR_HU)
    if not np.isfinite(context).all():
        raise ImportSourceError(
            f"has NaN or infinite values around label {spec.label} (slice {slice_index})",
            spec.volume)
    mask_context, _ = crop_padded(slice_mask, context_box, False)
    r_off, c_off = context_box[:2]
    roi_in_context = _shift(roi_box, r_off, c_off)
    roi = context[roi_in_context[0]:roi_in_context[2], roi_in_context[1]:roi_in_context[3]].copy()
    height, width = slice_hu.shape
    roi_padded = not (roi_box[0] >= 0 and roi_box[1] >= 0
                      and roi_box[2] <= height and roi_box[3] <= width)
    # A lesion cut by the edge of the field of view measures too small.
    at_edge = (lesion_box[0] == 0 or lesion_box[1] == 0
               or lesion_box[2] == height or lesion_box[3] == width)
    if at_edge:
        log(f"warning: label {spec.label} of {spec.volume_rel} touches the edge of slice "
            f"{slice_index}; its diameter may be underestimated")
    attributes = {
        **geometry.attributes,
        "volume_kind": geometry.kind,
        "volume_spacing_mm": [float(s) for s in spacing],
        "lesion_slices": int((areas > 0).sum()),
        "mask_regions_on_slice": int(n_regions),
        "padded_with_air": bool(context_padded),
        "roi_padded_with_air": bool(roi_padded),
        "lesion_at_slice_edge": bool(at_edge),
        "context_box_in_slice": [int(v) for v in context_box],
    }
    return Lesion(
        lesion_id=spec.lesion_id,
        patient_id=spec.patient_id,
        label=class_names.index(spec.class_name),
        roi=roi,
        context=context,
        roi_box=roi_in_context,
        lesion_box=_shift(lesion_box, r_off, c_off),
        mask=mask_context.astype(bool),
        spacing_mm=spacing_rc,
        diameter_px=float(diameter_px),
        diameter_mm=float(diameter_mm),
        diameter_source="mask",
        source=f"{spec.volume_rel}#label={spec.label}",
        has_context=True,
        slice_index=slice_index,
        attributes=attributes,
    )


def _union(*boxes: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    return (min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes))


def _shift(box: tuple[int, int, int, int], dr: int, dc: int) -> tuple[int, int, int, int]:
    return (box[0] - dr, box[1] - dc, box[2] - dr, box[3] - dc)


def _resolve(row: _CsvRow, column: str, source: Path, csv_path: Path) -> Path:
    """A CSV path: absolute, else under SOURCE, else beside the CSV."""
    ref = row.values[column].replace("\\", "/")
    if not ref:
        raise ImportSourceError(f"line {row.line}: empty {column!r}", csv_path)
    candidates = [Path(ref)] if Path(ref).is_absolute() else [source / ref, csv_path.parent / ref]
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    raise ImportSourceError(
        f"line {row.line}: {column} {ref!r} not found (looked under {source} and beside the CSV)",
        csv_path)


def _relative_name(path: Path, source: Path, csv_path: Path) -> str:
    for base in (source, csv_path.parent):
        try:
            return path.relative_to(base.resolve()).as_posix()
        except ValueError:
            continue
    return path.name


def _strip_volume_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in _NIFTI_SUFFIXES + (".dcm", ".dicom"):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


# --------------------------------------------------------------------------- volume readers


def _read_volume_like(path: Path, *, as_mask: bool,
                      ) -> tuple[np.ndarray, tuple[float, float, float], VolumeGeometry]:
    """Dispatch on the kind of volume file; arrays in (slices, rows, cols)."""
    if not path.exists():
        raise ImportSourceError("no such file or folder", path)
    if path.is_dir():
        return _read_dicom_series(path, rescale=not as_mask)
    if path.name.lower().endswith(_NIFTI_SUFFIXES):
        return _read_nifti(path, as_mask=as_mask)
    if path.suffix.lower() in _DICOM_SUFFIXES or _has_dicm_preamble(path):
        dataset = _dcmread(path)
        if str(dataset.get("Modality", "")).upper() == "SEG":
            raise ImportSourceError("is a DICOM SEG; export the segmentation as a NIfTI label "
                                    "map or .npy mask", path)
        if "PerFrameFunctionalGroupsSequence" in dataset or int(
                dataset.get("NumberOfFrames", 1) or 1) > 1:
            return _read_dicom_enhanced(path, dataset, rescale=not as_mask)
        return _dicom_stack([(path, dataset)], path, rescale=not as_mask)
    expected = "NIfTI, a DICOM series folder, DICOM or .npy" if as_mask else \
        "NIfTI (.nii, .nii.gz), a DICOM series folder or an Enhanced DICOM file"
    raise ImportSourceError(f"not a supported {'mask' if as_mask else 'volume'} ({expected})", path)


def _read_nifti(path: Path, *, as_mask: bool):
    try:
        image = nib.load(path)
        if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
            raise ImportSourceError(f"is a {type(image).__name__}, expected NIfTI", path)
        # get_fdata/dataobj apply scl_slope and scl_inter the way nibabel does.
        data = np.asanyarray(image.dataobj) if as_mask else image.get_fdata(dtype=np.float32)
    except _READ_ERRORS as exc:
        raise ImportSourceError(f"unreadable NIfTI ({_short(exc, path)})", path) from None
    # Zooms are float32 in the header; rounding to a micrometre drops the
    # float32 noise (0.800000011920929) without losing real precision.
    zooms = [round(float(z), 6) for z in image.header.get_zooms()[:3]]
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise ImportSourceError(f"is {data.ndim}-D {data.shape}; expected one 3-D volume", path)
    zooms += [1.0] * (3 - len(zooms))
    affine = np.asarray(image.affine, np.float64)[:, [2, 1, 0, 3]]
    geometry = VolumeGeometry("nifti", affine, {})
    return (np.ascontiguousarray(data.transpose(2, 1, 0)), (zooms[2], zooms[1], zooms[0]),
            geometry)


def _read_dicom_series(folder: Path, *, rescale: bool):
    entries = [e for e in _visible_entries(folder) if e.name.upper() != "DICOMDIR"]
    if not entries:
        raise ImportSourceError("empty folder; expected a DICOM series", folder)
    slices = []
    for entry in entries:
        if entry.is_dir():
            raise ImportSourceError("is a folder inside a DICOM series folder; expected one "
                                    "series per folder", entry)
        dataset = _dcmread(entry)
        frames = int(dataset.get("NumberOfFrames", 1) or 1)
        if frames > 1:
            raise ImportSourceError(
                f"is a multi-frame file ({frames} frames) inside a series folder; pass it "
                "as its own volume", entry)
        slices.append((entry, dataset))
    series = {str(ds.get("SeriesInstanceUID", "")) for _, ds in slices}
    if len(series) > 1:
        raise ImportSourceError(f"holds {len(series)} DICOM series; put each series in its own "
                                "folder", folder)
    return _dicom_stack(slices, folder, rescale=rescale)


def _dicom_stack(slices: list[tuple[Path, pydicom.Dataset]], where: Path, *, rescale: bool):
    """Sort single-frame slices along their normal and stack them."""
    first_path, first = slices[0]
    if rescale:
        _require_ct(first, first_path)
    orientation = _orientation(first, first_path, required=len(slices) > 1)
    spacing_rc = _pixel_spacing(first)
    shape = (int(first.Rows), int(first.Columns))
    normal = np.cross(orientation[:3], orientation[3:])
    positions = []
    for path, dataset in slices:
        if (int(dataset.Rows), int(dataset.Columns)) != shape:
            raise ImportSourceError(
                f"has {dataset.Rows}x{dataset.Columns} pixels but {first_path.name} has "
                f"{shape[0]}x{shape[1]}; all slices of a series must match", path)
        if not np.allclose(_orientation(dataset, path, required=len(slices) > 1), orientation,
                           atol=1e-4):
            raise ImportSourceError(
                f"ImageOrientationPatient differs from that of {first_path.name}", path)
        if not np.allclose(_pixel_spacing(dataset), spacing_rc, atol=1e-4, equal_nan=True):
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
        stored = _dicom_pixels(dataset, path)
        if stored.ndim != 2:
            raise ImportSourceError(f"has pixel data of shape {stored.shape}, expected 2-D", path)
        if rescale:
            slope, intercept = _rescale_of(dataset)
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
    return volume, (slice_spacing, spacing_rc[0], spacing_rc[1]), \
        VolumeGeometry("dicom-series", affine, attributes)


def _read_dicom_enhanced(path: Path, dataset: pydicom.Dataset, *, rescale: bool):
    """An Enhanced (multi-frame) DICOM: geometry and rescale per frame."""
    if rescale:
        _require_ct(dataset, path)
    frames = int(dataset.get("NumberOfFrames", 1) or 1)
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence") or []
    if per_frame and len(per_frame) != frames:
        raise ImportSourceError(
            f"has {len(per_frame)} per-frame functional groups for {frames} frames", path)

    def macro(index: int, name: str):
        return _frame_macro(dataset, index, name)

    orientations, positions, spacings, rescales = [], [], [], []
    for i in range(frames):
        plane_orientation = macro(i, "PlaneOrientationSequence")
        plane_position = macro(i, "PlanePositionSequence")
        measures = macro(i, "PixelMeasuresSequence")
        if plane_orientation is None or plane_position is None or measures is None:
            raise ImportSourceError(
                f"frame {i + 1} lacks PlaneOrientation, PlanePosition or PixelMeasures "
                "functional groups; cannot place it in the volume", path)
        orientations.append(_orientation(plane_orientation, path, required=True))
        positions.append(_position(plane_position, path, required=True))
        spacings.append(_pixel_spacing(measures))
        transform = macro(i, "PixelValueTransformationSequence")
        rescales.append(_rescale_of(transform if transform is not None else dataset))
    orientation = orientations[0]
    for i, (o, s) in enumerate(zip(orientations, spacings)):
        if not np.allclose(o, orientation, atol=1e-4):
            raise ImportSourceError(f"frame {i + 1} has another orientation than frame 1; "
                                    "expected one stack of parallel slices", path)
        if not np.allclose(s, spacings[0], atol=1e-4, equal_nan=True):
            raise ImportSourceError(f"frame {i + 1} has another pixel spacing than frame 1",
                                    path)
    stored = _dicom_pixels(dataset, path)
    if stored.ndim == 2:
        stored = stored[None]
    if stored.ndim != 3 or stored.shape[0] != frames:
        raise ImportSourceError(f"has pixel data of shape {stored.shape}, expected "
                                f"({frames}, rows, cols)", path)
    positions = np.array(positions)
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
    spacing_rc = spacings[0]
    thickness_item = macro(0, "PixelMeasuresSequence")
    thickness = float(thickness_item.get("SliceThickness", float("nan")) or float("nan"))
    slice_spacing = float(np.median(gaps)) if len(gaps) else thickness
    step = ((positions[order[-1]] - positions[order[0]]) / (frames - 1) if frames > 1
            else normal * (slice_spacing if np.isfinite(slice_spacing) else 1.0))
    affine = _lps_to_ras_affine(positions[order[0]], step, orientation, spacing_rc)
    attributes = _dicom_attributes(dataset)
    attributes["slice_thickness_mm"] = thickness
    return volume, (slice_spacing, spacing_rc[0], spacing_rc[1]), \
        VolumeGeometry("dicom-enhanced", affine, attributes)


def _frame_macro(dataset: pydicom.Dataset, index: int, name: str):
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


def _check_axial(geometry: VolumeGeometry, path: Path) -> None:
    direction = geometry.affine[:3, 0]
    norm = np.linalg.norm(direction)
    if norm == 0 or np.argmax(np.abs(direction / norm)) != 2:
        pretty = ", ".join(f"{v:.2f}" for v in direction / (norm or 1))
        raise ImportSourceError(
            f"slices are not axial: the slice axis runs along ({pretty}) in RAS; reorient the "
            "volume so slices are axial (e.g. nibabel.as_closest_canonical)", path)


# --------------------------------------------------------------------------- helpers


def _check_options(roi_margin: float, context_margin: float, input_size: int,
                   npy_unit: str) -> None:
    if not (np.isfinite(roi_margin) and roi_margin >= 0):
        raise KerasLesionsError(f"roi_margin must be >= 0, got {roi_margin}")
    if not (np.isfinite(context_margin) and context_margin >= roi_margin):
        raise KerasLesionsError(f"context_margin ({context_margin}) must be >= roi_margin "
                         f"({roi_margin})")
    if int(input_size) < 2:
        raise KerasLesionsError(f"input_size must be at least 2 pixels, got {input_size}")
    if npy_unit not in NPY_UNITS:
        raise KerasLesionsError(f"npy_unit must be one of {NPY_UNITS}, got {npy_unit!r}")


def _visible_entries(folder: Path) -> list[Path]:
    """Sorted folder entries, without dotfiles and operating-system clutter."""
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise ImportSourceError(f"cannot list folder ({_short(exc, folder)})", folder) from None
    return [e for e in entries
            if not e.name.startswith(".") and e.name.lower() not in _OS_JUNK]


def _volume_suffix(path: Path) -> bool:
    return path.name.lower().endswith(_NIFTI_SUFFIXES) or path.suffix.lower() in _DICOM_SUFFIXES


def _has_dicm_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _roi_file_kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix in _RASTER_SUFFIXES:
        return _RASTER_SUFFIXES[suffix]
    if suffix == ".npy":
        return "npy"
    if suffix in _DICOM_SUFFIXES or _has_dicm_preamble(path):
        return "dicom"
    return None


def _short(exc: BaseException, path: Path | None = None) -> str:
    """An exception as one short line (without repeating ``path``, already named)."""
    text = " ".join(str(exc).split())
    if path is not None:
        text = text.replace(str(path), path.name)
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _load_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise ImportSourceError(f"unreadable .npy file ({_short(exc, path)})", path) from None
    if not isinstance(array, np.ndarray):
        raise ImportSourceError("is not a single .npy array", path)
    return array


def _squeeze_to_2d(array: np.ndarray, path: Path) -> np.ndarray:
    """Drop singleton axes; anything but a 2-D image is an error."""
    if array.size == 0:
        raise ImportSourceError(f"holds an empty array of shape {array.shape}", path)
    squeezed = np.squeeze(array)
    if squeezed.ndim > 2:
        raise ImportSourceError(
            f"is a {squeezed.ndim}-D image of shape {array.shape} where a 2-D ROI is expected",
            path)
    if squeezed.ndim < 2:
        raise ImportSourceError(f"has shape {array.shape}; expected a 2-D ROI", path)
    return squeezed


def _check_finite(image: np.ndarray, path: Path) -> None:
    bad = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
    if bad:
        raise ImportSourceError(f"has {bad} NaN or infinite pixels", path)


def _read_raster(path: Path, kind: str) -> np.ndarray:
    """PNG/TIFF/JPEG as float32 in [0, 1]."""
    try:
        buffer = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImportSourceError(f"cannot read file ({_short(exc, path)})", path) from None
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if buffer.size else None
    if image is None:
        raise ImportSourceError(f"unreadable or corrupt {kind.upper()} image", path)
    if kind == "tiff":
        ok, pages = cv2.imdecodemulti(buffer, cv2.IMREAD_UNCHANGED)
        if ok and len(pages) > 1:
            raise ImportSourceError(
                f"is a 3-D image ({len(pages)} TIFF pages) where a 2-D ROI is expected", path)
    if image.ndim == 3:
        image = _grey_from_channels(image, path)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if image.dtype.kind == "f":
        image = image.astype(np.float32)
        _check_finite(image, path)
        if image.min() < 0 or image.max() > 1:
            raise ImportSourceError(
                f"floating-point values span [{image.min():g}, {image.max():g}], outside [0, 1]; "
                "store Hounsfield units as .npy (npy_unit 'HU') or DICOM", path)
        return image
    raise ImportSourceError(
        f"has {image.dtype} pixels; expected 8- or 16-bit unsigned (store Hounsfield units as "
        ".npy or DICOM)", path)


def _grey_from_channels(image: np.ndarray, path: Path) -> np.ndarray:
    channels = image.shape[2]
    if channels in (2, 4):
        alpha = image[..., -1]
        if alpha.min() != alpha.max():
            raise ImportSourceError("has transparent pixels; expected an opaque greyscale ROI",
                                    path)
        image = image[..., :-1]
    if image.shape[2] == 1 or all(np.array_equal(image[..., 0], image[..., c])
                                  for c in range(1, image.shape[2])):
        return np.ascontiguousarray(image[..., 0])
    raise ImportSourceError("is a colour image (its channels differ); expected a greyscale ROI",
                            path)


def _dcmread(path: Path) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError:
        raise ImportSourceError("not a valid DICOM file (no DICM preamble / file meta)",
                                path) from None
    except _READ_ERRORS as exc:
        raise ImportSourceError(f"unreadable DICOM ({_short(exc, path)})", path) from None


def _require_ct(dataset: pydicom.Dataset, path: Path) -> None:
    modality = str(dataset.get("Modality", "")).upper()
    if modality == "SEG":
        raise ImportSourceError("is a DICOM SEG; export the segmentation as a NIfTI label map "
                                "or .npy mask", path)
    if modality != "CT":
        raise ImportSourceError(
            f"has Modality {modality or 'missing'!r}; expected CT (Hounsfield units)", path)


def _dicom_pixels(dataset: pydicom.Dataset, path: Path) -> np.ndarray:
    if "PixelData" not in dataset and "FloatPixelData" not in dataset:
        raise ImportSourceError("DICOM file holds no pixel data", path)
    if int(dataset.get("SamplesPerPixel", 1) or 1) != 1:
        raise ImportSourceError("is a colour DICOM; expected greyscale CT", path)
    try:
        return dataset.pixel_array
    except _READ_ERRORS as exc:
        raise ImportSourceError(f"cannot decode DICOM pixel data ({_short(exc, path)})",
                                path) from None


def _rescale_of(item) -> tuple[float, float]:
    """(slope, intercept); absent values mean the identity (stored values are HU)."""
    slope = item.get("RescaleSlope", 1.0)
    intercept = item.get("RescaleIntercept", 0.0)
    return float(1.0 if slope in (None, "") else slope), \
        float(0.0 if intercept in (None, "") else intercept)


def _pixel_spacing(item) -> tuple[float, float]:
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


def _as_label_map(labels: np.ndarray, path: Path) -> np.ndarray:
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


def _read_csv_table(path: Path) -> tuple[list[str], list[_CsvRow]]:
    """Header (lower-cased, stripped) and rows of a UTF-8 CSV, with line numbers."""
    if not path.exists():
        raise ImportSourceError("no such mapping CSV", path)
    if not path.is_file():
        raise ImportSourceError("is a folder, expected a mapping CSV file", path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ImportSourceError("is not UTF-8 text; save the mapping CSV as UTF-8", path) from None
    except OSError as exc:
        raise ImportSourceError(f"cannot read mapping CSV ({_short(exc, path)})", path) from None
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    rows: list[_CsvRow] = []
    try:
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            if header is None:
                header = [f.strip().lower() for f in fields]
                if len(header) == 1 and ";" in header[0]:
                    raise ImportSourceError("columns seem separated by ';'; use commas", path)
                if len(set(header)) != len(header):
                    raise ImportSourceError(f"header repeats a column: {header}", path)
                continue
            if len(fields) != len(header):
                raise ImportSourceError(
                    f"line {reader.line_num} has {len(fields)} fields, the header has "
                    f"{len(header)}", path)
            rows.append(_CsvRow(reader.line_num, dict(zip(header, (f.strip() for f in fields)))))
    except csv.Error as exc:
        raise ImportSourceError(f"malformed CSV near line {reader.line_num} ({exc})",
                                path) from None
    if header is None:
        raise ImportSourceError("mapping CSV is empty", path)
    return header, rows


def _read_mapping_csv(path: Path, required: Sequence[str],
                      optional: Sequence[str]) -> list[_CsvRow]:
    header, rows = _read_csv_table(path)
    missing = [c for c in required if c not in header]
    if missing:
        raise ImportSourceError(
            f"lacks column(s) {missing}; has {header} (needs {list(required)}, optionally "
            f"{list(optional)})", path)
    if not rows:
        raise ImportSourceError("mapping CSV has a header but no rows", path)
    return rows


def _positive_float(text: str, column: str, row: _CsvRow, csv_path: Path) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (np.isfinite(value) and value > 0):
        raise ImportSourceError(f"line {row.line}: {column} {text!r} is not a positive number",
                                csv_path)
    return value
