"""The lesion dataset format: one HDF5 file per dataset.

Layout (format version 1)::

    /                         attrs: format_version, class_names (JSON list),
                                     intensity_unit ("HU" | "normalized"),
                                     window_level, window_width (HU; NaN when
                                     normalized), input_size, created_by,
                                     created_at, description, extra (JSON)
    /table/<column>           one row per lesion (see ``TABLE_COLUMNS``)
    /images/<i>/roi           float32 (h, w)   the lesion ROI as the papers crop it
    /images/<i>/context       float32 (H, W)   a larger crop around it
    /images/<i>/mask          uint8   (H, W)   lesion mask on the context grid
                                               (absent when the source has none)
    /folds                    int16 (n,) fold of each lesion, attrs k, seed
                                               (absent until ``kl data folds``)
    /soft_labels              float32 (n, classes) class proportions of each
                                               lesion (optional: mixtures of
                                               specified factors, Ben-Cohen 2019
                                               §2.2); ``label`` is then the
                                               class with the largest share

Images keep the source's units: Hounsfield units (float32) whenever the source
has them, else values normalised to [0, 1] with ``intensity_unit="normalized"``.
Nothing is windowed or resampled here; that happens on purpose, later, in the
input pipeline. Pixel spacing is stored per lesion in millimetres.

Writes are atomic: the file is written under a temporary name in the target
folder and renamed over the target only once complete, so an interrupted
command never leaves a half-written dataset.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from keras_lesions.data.hdf5 import open_hdf5, read_array
from keras_lesions.data.registry import (
    DEFAULT_WINDOW_LEVEL, DEFAULT_WINDOW_WIDTH, MAX_IMAGE_SIDE)
from keras_lesions.errors import DatasetError
from keras_lesions.io import atomic_path

FORMAT_VERSION = 1
INTENSITY_UNITS = ("HU", "normalized")
# What a file may declare before anything is allocated: lesions per dataset,
# pixels per image side (the importers' limit, registry.MAX_IMAGE_SIDE).
MAX_LESIONS = 10_000_000
REQUIRED_ATTRS = ("format_version", "class_names", "intensity_unit", "window_level",
                  "window_width", "input_size")
# How a lesion's diameter was obtained: measured on its mask, given in a CSV,
# estimated from the ROI size (the ROI holds the lesion plus a margin), or known
# by construction (phantoms).
DIAMETER_SOURCES = ("mask", "csv", "roi-estimate", "phantom", "unknown")


@dataclass
class Lesion:
    """One lesion (or healthy-parenchyma ROI) with everything needed downstream.

    Attributes:
        lesion_id: unique within the dataset.
        patient_id: lesions of one patient share it; folds never split it.
        label: index into the dataset's ``class_names``.
        roi: float32 (h, w), the ROI as cropped by the papers (lesion plus a
            margin of tissue proportional to its size), in the dataset's units.
        context: float32 (H, W), a larger crop around the ROI so scale
            augmentation can re-crop real surrounding tissue. Equal to ``roi``
            when ``has_context`` is False.
        roi_box: (row0, col0, row1, col1) of the ROI inside ``context``
            (half-open pixel box).
        lesion_box: (row0, col0, row1, col1) of the lesion inside ``context``.
        mask: bool (H, W) lesion mask on the context grid, or None.
        spacing_mm: (row, col) pixel spacing in millimetres; NaN when unknown.
        diameter_px: lesion diameter in context pixels (longest in-plane axis).
        diameter_mm: the same in millimetres; NaN when spacing is unknown.
        diameter_source: one of ``DIAMETER_SOURCES``.
        source: where the lesion came from (file path, volume and label, or a
            phantom generator description).
        has_context: whether ``context`` holds real tissue beyond the ROI.
        slice_index: slice of the source volume, or -1.
        attributes: free-form JSON-able facts (scanner, slice thickness, phantom
            subtype ...), kept for provenance and leave-scanner-out studies.
    """

    lesion_id: str
    patient_id: str
    label: int
    roi: np.ndarray
    context: np.ndarray
    roi_box: tuple[int, int, int, int]
    lesion_box: tuple[int, int, int, int]
    mask: np.ndarray | None = None
    spacing_mm: tuple[float, float] = (float("nan"), float("nan"))
    diameter_px: float = float("nan")
    diameter_mm: float = float("nan")
    diameter_source: str = "unknown"
    source: str = ""
    has_context: bool = True
    slice_index: int = -1
    attributes: dict = field(default_factory=dict)


# Per-lesion table columns: name -> (numpy dtype or "str", Lesion attribute).
TABLE_COLUMNS: dict[str, str] = {
    "lesion_id": "str",
    "patient_id": "str",
    "label": "int32",
    "roi_box": "int32",
    "lesion_box": "int32",
    "has_mask": "bool",
    "spacing_mm": "float64",
    "diameter_px": "float64",
    "diameter_mm": "float64",
    "diameter_source": "str",
    "source": "str",
    "has_context": "bool",
    "slice_index": "int32",
    "attributes": "str",
}


@dataclass
class LesionDataset:
    """A labelled set of lesions plus the facts needed to use it honestly.

    Attributes:
        class_names: ordered class names; ``Lesion.label`` indexes this.
        lesions: the lesions.
        intensity_unit: "HU" or "normalized" (sources without Hounsfield units).
        window_level / window_width: the display/network window in HU (W400/L50
            by default); NaN for normalized datasets.
        input_size: side in pixels of the network input this dataset targets.
        created_by: the command (or call) that made the dataset.
        created_at: ISO timestamp.
        description: one line for humans.
        extra: JSON-able facts (preset, seed, difficulty, importer options).
        folds: int array (n,) of fold indices, or None.
        fold_k / fold_seed: how the folds were made.
        soft_labels: float32 (n, classes) soft targets whose rows sum to 1, or
            None (hard labels only).
    """

    class_names: list[str]
    lesions: list[Lesion]
    intensity_unit: str = "HU"
    window_level: float = DEFAULT_WINDOW_LEVEL
    window_width: float = DEFAULT_WINDOW_WIDTH
    input_size: int = 64
    created_by: str = ""
    created_at: str = ""
    description: str = ""
    extra: dict = field(default_factory=dict)
    folds: np.ndarray | None = None
    fold_k: int = 0
    fold_seed: int = 0
    soft_labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.lesions)

    @property
    def labels(self) -> np.ndarray:
        return np.array([l.label for l in self.lesions], dtype=np.int32)

    @property
    def patient_ids(self) -> np.ndarray:
        return np.array([l.patient_id for l in self.lesions], dtype=object)

    @property
    def lesion_ids(self) -> np.ndarray:
        return np.array([l.lesion_id for l in self.lesions], dtype=object)

    def targets(self) -> np.ndarray:
        """float32 (n, classes) training targets: the soft labels, else one-hot."""
        if self.soft_labels is not None:
            return np.asarray(self.soft_labels, np.float32)
        out = np.zeros((len(self.lesions), len(self.class_names)), np.float32)
        out[np.arange(len(self.lesions)), self.labels] = 1.0
        return out

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts)}

    def subset(self, indices: Sequence[int]) -> "LesionDataset":
        """A new dataset holding the given lesions (folds carried along)."""
        indices = [int(i) for i in indices]
        out = LesionDataset(**{**self.__dict__, "lesions": [self.lesions[i] for i in indices]})
        out.folds = None if self.folds is None else self.folds[indices].copy()
        out.soft_labels = (None if self.soft_labels is None
                           else np.asarray(self.soft_labels)[indices].copy())
        return out

    def validate(self, path: str | os.PathLike | None = None) -> None:
        """Check the invariants every command relies on.

        Raises:
            DatasetError: naming ``path`` and the first problem found.
        """
        where = path if path is not None else "<dataset>"
        if len(self.class_names) < 2:
            raise DatasetError(f"needs at least 2 classes, has {list(self.class_names)}", where)
        if len(set(self.class_names)) != len(self.class_names):
            raise DatasetError(f"class names repeat: {list(self.class_names)}", where)
        if self.intensity_unit not in INTENSITY_UNITS:
            raise DatasetError(
                f"intensity_unit must be one of {INTENSITY_UNITS}, got {self.intensity_unit!r}", where)
        if not self.lesions:
            raise DatasetError("holds no lesions", where)
        seen: set[str] = set()
        for lesion in self.lesions:
            _validate_lesion(lesion, len(self.class_names), self.intensity_unit, where)
            if lesion.lesion_id in seen:
                raise DatasetError(f"duplicate lesion id {lesion.lesion_id!r}", where)
            seen.add(lesion.lesion_id)
        if self.folds is not None:
            if self.folds.shape != (len(self.lesions),):
                raise DatasetError(
                    f"fold array has shape {self.folds.shape}, expected ({len(self.lesions)},)", where)
            if self.fold_k < 2 or self.folds.min() < 0 or self.folds.max() >= self.fold_k:
                raise DatasetError(f"fold indices must lie in [0, {self.fold_k})", where)
            check_no_patient_leak(self.patient_ids, self.folds, where)
        if self.soft_labels is not None:
            _validate_soft_labels(np.asarray(self.soft_labels), self.labels,
                                  len(self.class_names), where)


def _validate_soft_labels(soft: np.ndarray, labels: np.ndarray, n_classes: int, where) -> None:
    if soft.shape != (len(labels), n_classes):
        raise DatasetError(f"soft_labels have shape {soft.shape}, expected "
                           f"({len(labels)}, {n_classes})", where)
    if not np.isfinite(soft).all() or soft.min() < 0:
        raise DatasetError("soft_labels must be finite and non-negative", where)
    sums = soft.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > 1e-4)
    if len(bad):
        raise DatasetError(f"soft_labels of row {bad[0]} sum to {sums[bad[0]]:.6f}, not 1", where)
    dominant = soft[np.arange(len(labels)), labels] < soft.max(axis=1) - 1e-6
    if dominant.any():
        row = int(np.flatnonzero(dominant)[0])
        raise DatasetError(f"row {row}: label {labels[row]} is not the class with the largest "
                           "soft_labels share", where)


def check_no_patient_leak(patient_ids: Sequence[str], folds: np.ndarray, where="<dataset>") -> None:
    """Raise if any patient has lesions in two folds.

    Raises:
        DatasetError: naming the first patient found in several folds.
    """
    first_fold: dict[str, int] = {}
    for pid, fold in zip(patient_ids, np.asarray(folds)):
        if first_fold.setdefault(pid, int(fold)) != int(fold):
            raise DatasetError(
                f"patient {pid!r} has lesions in folds {first_fold[pid]} and {int(fold)}: "
                "a patient must sit in exactly one fold", where)


def _validate_lesion(lesion: Lesion, n_classes: int, unit: str, where) -> None:
    name = f"lesion {lesion.lesion_id!r}"
    if not lesion.lesion_id:
        raise DatasetError("a lesion has an empty lesion id", where)
    if not lesion.patient_id:
        raise DatasetError(f"{name} has an empty patient id", where)
    if not 0 <= lesion.label < n_classes:
        raise DatasetError(f"{name} has label {lesion.label}, outside [0, {n_classes})", where)
    for part in ("roi", "context"):
        image = getattr(lesion, part)
        if not isinstance(image, np.ndarray) or image.ndim != 2:
            shape = getattr(image, "shape", None)
            raise DatasetError(f"{name}: {part} must be a 2-D image, got shape {shape}", where)
        if min(image.shape) < 2:
            raise DatasetError(f"{name}: {part} is too small ({image.shape})", where)
        if not np.isfinite(image).all():
            raise DatasetError(f"{name}: {part} has NaN or infinite pixels", where)
        if unit == "normalized" and (image.min() < 0 or image.max() > 1):
            raise DatasetError(f"{name}: {part} leaves [0, 1] in a normalized dataset", where)
    height, width = lesion.context.shape
    for box_name in ("roi_box", "lesion_box"):
        r0, c0, r1, c1 = (int(v) for v in getattr(lesion, box_name))
        if not (0 <= r0 < r1 <= height and 0 <= c0 < c1 <= width):
            raise DatasetError(
                f"{name}: {box_name} {(r0, c0, r1, c1)} lies outside the context ({height}, {width})",
                where)
    r0, c0, r1, c1 = lesion.roi_box
    if (r1 - r0, c1 - c0) != lesion.roi.shape:
        raise DatasetError(
            f"{name}: roi shape {lesion.roi.shape} differs from its roi_box {(r1 - r0, c1 - c0)}", where)
    if lesion.mask is not None and lesion.mask.shape != lesion.context.shape:
        raise DatasetError(
            f"{name}: mask shape {lesion.mask.shape} differs from context shape "
            f"{lesion.context.shape}", where)
    if lesion.diameter_source not in DIAMETER_SOURCES:
        raise DatasetError(f"{name}: unknown diameter_source {lesion.diameter_source!r}", where)


# --------------------------------------------------------------------------- writing


def write_dataset(dataset: LesionDataset, path: str | os.PathLike,
                  exclusive: bool = False) -> Path:
    """Validate ``dataset`` and write it atomically to ``path`` (HDF5).

    With ``exclusive``, an existing ``path`` is never replaced:
    FileExistsError is raised and nothing is written.

    Raises:
        DatasetError: if the dataset breaks an invariant (nothing is written).
    """
    path = Path(path)
    dataset.validate(path)
    if not dataset.created_at:
        dataset.created_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    with atomic_path(path, exclusive=exclusive) as tmp:
        with h5py.File(tmp, "w") as h5:
            _write_h5(dataset, h5)
    return path


def _write_h5(dataset: LesionDataset, h5: h5py.File) -> None:
    h5.attrs["format_version"] = FORMAT_VERSION
    h5.attrs["class_names"] = json.dumps(list(dataset.class_names))
    h5.attrs["intensity_unit"] = dataset.intensity_unit
    h5.attrs["window_level"] = float(dataset.window_level)
    h5.attrs["window_width"] = float(dataset.window_width)
    h5.attrs["input_size"] = int(dataset.input_size)
    h5.attrs["created_by"] = dataset.created_by
    h5.attrs["created_at"] = dataset.created_at
    h5.attrs["description"] = dataset.description
    h5.attrs["extra"] = json.dumps(dataset.extra, sort_keys=True)
    h5.attrs["n_lesions"] = len(dataset.lesions)

    lesions = dataset.lesions
    table = h5.create_group("table")
    string = h5py.string_dtype()
    columns = {
        "lesion_id": [l.lesion_id for l in lesions],
        "patient_id": [l.patient_id for l in lesions],
        "label": [l.label for l in lesions],
        "roi_box": [list(l.roi_box) for l in lesions],
        "lesion_box": [list(l.lesion_box) for l in lesions],
        "has_mask": [l.mask is not None for l in lesions],
        "spacing_mm": [list(l.spacing_mm) for l in lesions],
        "diameter_px": [l.diameter_px for l in lesions],
        "diameter_mm": [l.diameter_mm for l in lesions],
        "diameter_source": [l.diameter_source for l in lesions],
        "source": [l.source for l in lesions],
        "has_context": [l.has_context for l in lesions],
        "slice_index": [l.slice_index for l in lesions],
        "attributes": [json.dumps(l.attributes, sort_keys=True) for l in lesions],
    }
    for name, dtype in TABLE_COLUMNS.items():
        values = columns[name]
        if dtype == "str":
            table.create_dataset(name, data=np.array(values, dtype=object), dtype=string)
        else:
            table.create_dataset(name, data=np.asarray(values, dtype=dtype))

    images = h5.create_group("images")
    for i, lesion in enumerate(lesions):
        group = images.create_group(f"{i:06d}")
        group.create_dataset("roi", data=lesion.roi.astype(np.float32), compression="gzip",
                             compression_opts=4, shuffle=True)
        if lesion.has_context:
            group.create_dataset("context", data=lesion.context.astype(np.float32),
                                 compression="gzip", compression_opts=4, shuffle=True)
        if lesion.mask is not None:
            group.create_dataset("mask", data=lesion.mask.astype(np.uint8), compression="gzip",
                                 compression_opts=4)

    if dataset.folds is not None:
        folds = h5.create_dataset("folds", data=np.asarray(dataset.folds, dtype=np.int16))
        folds.attrs["k"] = int(dataset.fold_k)
        folds.attrs["seed"] = int(dataset.fold_seed)
    if dataset.soft_labels is not None:
        h5.create_dataset("soft_labels", data=np.asarray(dataset.soft_labels, np.float32))


# --------------------------------------------------------------------------- reading


def read_dataset(path: str | os.PathLike, *, images: bool = True) -> LesionDataset:
    """Read and validate a lesion dataset.

    Args:
        path: the HDF5 file.
        images: read the pixel data; with False, ``roi``/``context`` are tiny
            placeholders and only the table, attributes and folds are real
            (fast, for listing and fold bookkeeping).

    Raises:
        DatasetError: the file is missing, not HDF5, not a lesion dataset, of
            another format version, or breaks an invariant.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError("no such dataset file", path)
    if path.is_dir():
        raise DatasetError("is a folder, expected a lesion dataset file (.h5)", path)
    h5 = open_hdf5(path, DatasetError, "lesion dataset")
    try:
        with h5:
            dataset = _read_h5(h5, path, images)
    except DatasetError:
        raise
    except (KeyError, ValueError, TypeError, OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"damaged lesion dataset ({type(exc).__name__}: {exc})", path) from None
    if images:
        dataset.validate(path)
    return dataset


def _read_h5(h5: h5py.File, path: Path, images: bool) -> LesionDataset:
    if "format_version" not in h5.attrs or "table" not in h5:
        raise DatasetError("is HDF5 but not a keras-lesions dataset (no format_version/table)",
                           path)
    missing_attrs = [name for name in REQUIRED_ATTRS if name not in h5.attrs]
    if missing_attrs:
        raise DatasetError(f"lacks the attribute {missing_attrs[0]!r} of the format", path)
    version = int(h5.attrs["format_version"])
    if version != FORMAT_VERSION:
        raise DatasetError(
            f"has dataset format version {version}; this keras-lesions reads version "
            f"{FORMAT_VERSION}", path)
    table = h5["table"]
    missing = [name for name in TABLE_COLUMNS if name not in table]
    if missing:
        raise DatasetError(f"table lacks columns {missing}", path)

    def column(name):
        data = read_array(table[name], DatasetError, path, max_side=MAX_LESIONS)
        if TABLE_COLUMNS[name] == "str":
            return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in data]
        return data

    cols = {name: column(name) for name in TABLE_COLUMNS}
    n = int(h5.attrs.get("n_lesions", len(cols["lesion_id"])))
    if any(len(c) != n for c in cols.values()):
        raise DatasetError("table columns have different lengths", path)

    def image(group, name):
        return read_array(group[name], DatasetError, path, ndim=2, max_side=MAX_IMAGE_SIDE)

    lesions = []
    placeholder = np.zeros((2, 2), np.float32)
    for i in range(n):
        roi_box = tuple(int(v) for v in cols["roi_box"][i])
        has_context = bool(cols["has_context"][i])
        roi = context = placeholder
        mask = None
        if images:
            group = h5["images"][f"{i:06d}"]
            # Shapes the table fixes, checked before any pixel is read.
            roi_shape = (roi_box[2] - roi_box[0], roi_box[3] - roi_box[1])
            if group["roi"].shape != roi_shape:
                raise DatasetError(f"lesion {cols['lesion_id'][i]!r}: roi shape "
                                   f"{group['roi'].shape} differs from its roi_box {roi_shape}",
                                   path)
            if has_context and bool(cols["has_mask"][i]) \
                    and group["mask"].shape != group["context"].shape:
                raise DatasetError(f"lesion {cols['lesion_id'][i]!r}: mask shape "
                                   f"{group['mask'].shape} differs from its context "
                                   f"{group['context'].shape}", path)
            roi = image(group, "roi").astype(np.float32)
            context = image(group, "context").astype(np.float32) if has_context else roi
            if bool(cols["has_mask"][i]):
                mask = image(group, "mask").astype(bool)
        lesions.append(Lesion(
            lesion_id=cols["lesion_id"][i],
            patient_id=cols["patient_id"][i],
            label=int(cols["label"][i]),
            roi=roi,
            context=context,
            roi_box=roi_box,
            lesion_box=tuple(int(v) for v in cols["lesion_box"][i]),
            mask=mask,
            spacing_mm=tuple(float(v) for v in cols["spacing_mm"][i]),
            diameter_px=float(cols["diameter_px"][i]),
            diameter_mm=float(cols["diameter_mm"][i]),
            diameter_source=cols["diameter_source"][i],
            source=cols["source"][i],
            has_context=has_context,
            slice_index=int(cols["slice_index"][i]),
            attributes=json.loads(cols["attributes"][i]),
        ))

    folds = fold_k = fold_seed = None
    if "folds" in h5:
        folds = read_array(h5["folds"], DatasetError, path, ndim=1,
                           max_side=MAX_LESIONS).astype(np.int64)
        fold_k = int(h5["folds"].attrs["k"])
        fold_seed = int(h5["folds"].attrs["seed"])

    raw_names = h5.attrs["class_names"]
    class_names = json.loads(raw_names) if isinstance(raw_names, (str, bytes)) else raw_names
    if not isinstance(class_names, list) or not all(isinstance(c, str) for c in class_names):
        raise DatasetError("attribute class_names must be a JSON list of names, got "
                           f"{str(class_names)[:60]}", path)
    soft = None
    if "soft_labels" in h5:
        soft = read_array(h5["soft_labels"], DatasetError, path, ndim=2,
                          max_side=MAX_LESIONS).astype(np.float32)
    return LesionDataset(
        class_names=class_names,
        lesions=lesions,
        intensity_unit=str(h5.attrs["intensity_unit"]),
        window_level=float(h5.attrs["window_level"]),
        window_width=float(h5.attrs["window_width"]),
        input_size=int(h5.attrs["input_size"]),
        created_by=str(h5.attrs.get("created_by", "")),
        created_at=str(h5.attrs.get("created_at", "")),
        description=str(h5.attrs.get("description", "")),
        extra=json.loads(h5.attrs.get("extra", "{}")),
        folds=folds,
        fold_k=fold_k or 0,
        fold_seed=fold_seed or 0,
        soft_labels=soft,
    )


def write_folds(path: str | os.PathLike, folds: np.ndarray, k: int, seed: int) -> None:
    """Store a fold assignment inside an existing dataset, atomically.

    The dataset is copied to a temporary file, the folds written there, and the
    copy renamed over the original, so an interruption leaves the old file.

    Raises:
        DatasetError: the dataset cannot be read, or the folds do not fit it or
            would put one patient in two folds.
    """
    path = Path(path)
    dataset = read_dataset(path, images=False)
    folds = np.asarray(folds)
    if folds.shape != (len(dataset),):
        raise DatasetError(f"fold array has shape {folds.shape}, expected ({len(dataset)},)", path)
    check_no_patient_leak(dataset.patient_ids, folds, path)
    with atomic_path(path) as tmp:
        with h5py.File(path, "r") as src, h5py.File(tmp, "w") as dst:
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            for name in src:
                if name != "folds":
                    src.copy(src[name], dst, name=name)
            ds = dst.create_dataset("folds", data=folds.astype(np.int16))
            ds.attrs["k"] = int(k)
            ds.attrs["seed"] = int(seed)
