"""The nested classic-augmentation data groups D_aug¹ ⊂ … ⊂ D_aug⁹ (Frid-Adar §4.2.1).

"For each original ROI, we produced a large number of augmentations
(N_rot = 30, N_flip = 3, N_trans = 7 and N_scale = 5), resulting in N = 480
augmented images per lesion ROI [...] Then, we selected the images for the data
groups by sampling randomly augmented examples such that for each original
lesion we sampled the same augmentation volume. [...] the number of samples
added to each fold [...] was {0, 500, 1000, 2000, 3000, 5000, 7500, 10000,
15000}." The first group is the original ROIs alone.

Selection. Each training lesion gets its N parameters (``draw_offline_params``)
and a permutation of them, both seeded by (seed, lesion id), so a lesion gets
the same augmentations in every fold it trains in. Samples are then dealt
round-robin: round r visits the lesions in a seeded random order and takes the
r-th augmentation of each lesion's permutation. Group i holds the originals
plus the first ``group_sizes[i]`` samples of that sequence, so the groups nest
and, in every group, per-lesion augmentation counts differ by at most one.
Only the samples the largest group needs are rendered (15 000, not 121·480).

File layout (one HDF5 file per test fold, written atomically)::

    /                     attrs: format, format_version, test_fold, seed, n_rot,
                                 n_flip, n_trans, n_scale, n_per_lesion,
                                 group_sizes (JSON), size, pixel_encoding,
                                 class_names (JSON), intensity_unit,
                                 window_level, window_width, dataset_description,
                                 created_at, notes (JSON list of lines)
    /sources/<column>     one row per training lesion that fed the file:
                          lesion_index (row in the source dataset), lesion_id,
                          patient_id, label, fold, has_context, diameter_px,
                          n_augmented (samples of this lesion in the largest group)
    /originals/images     uint16 (n_train, size, size)  the ROIs, resized
    /originals/source     int32  (n_train,)  row of /sources
    /augmented/images     uint16 (n_max, size, size)  in selection order
    /augmented/source     int32  (n_max,)  row of /sources
    /augmented/<param>    aug_index (position in the lesion's N), kind (uint8,
                          index into attrs "kinds"), angle_deg, flip (uint8,
                          index into attrs "flips"), shift_px (n, 2) (dy, dx),
                          margin_px (NaN: the ROI's own crop), zoom,
                          crop_side_px (after any no-context fallback, rows/cols)

Pixels are stored as uint16 = round(x · 65535) for x in [0, 1]: a step of
1.5e-5, far below the 1/256 of an 8-bit display and exact enough for float32
training (float16 would give steps up to 4.9e-4 near 1 for the same bytes).
Images are chunked by 64 and compressed with gzip (level 4, byte shuffle).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import h5py
import numpy as np

from keras_lesions.augment.classic import (
    FLIP_MODES,
    KINDS,
    AffineParams,
    AugmentationError,
    augment_lesion,
    draw_offline_params,
    lesion_geometry,
    n_offline_augmentations,
    resolve_params,
    windowed_context,
)
from keras_lesions.data.dataset import LesionDataset
from keras_lesions.data.hdf5 import open_hdf5, read_array
from keras_lesions.io import atomic_path
from keras_lesions.data.folds import train_test_indices

GROUPS_FORMAT = "keras-lesions-augmentation-groups"
GROUPS_FORMAT_VERSION = 1
# §4.2.1: samples added to each fold for D_aug¹ … D_aug⁹.
PAPER_GROUP_SIZES: tuple[int, ...] = (0, 500, 1000, 2000, 3000, 5000, 7500, 10000, 15000)
PIXEL_SCALE = 65535  # uint16 code of 1.0
_CHUNK_IMAGES = 64


@dataclass
class GroupsBuildResult:
    """What ``build_augmentation_groups`` wrote.

    Attributes:
        path: the HDF5 file.
        test_fold: the fold left out.
        n_train_lesions: originals in every group.
        group_sizes: augmented samples added per group.
        per_lesion_augmented: (n_train,) samples of each lesion in the largest group.
        notes: lines about fallbacks (no context, missing diameters, crops
            running past the context), also passed to ``log`` and stored.
    """

    path: Path
    test_fold: int
    n_train_lesions: int
    group_sizes: tuple[int, ...]
    per_lesion_augmented: np.ndarray
    notes: list[str] = field(default_factory=list)


def lesion_seed(seed: int, lesion_id: str) -> np.random.Generator:
    """The generator of one lesion's augmentations: keyed by id, not position."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(lesion_id.encode("utf-8"))])


def round_robin_selection(n_lesions: int, n_samples: int, seed: int
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Deal ``n_samples`` augmentations over lesions, one round at a time.

    Returns:
        (lesion, rank): int arrays (n_samples,); sample k is the rank[k]-th
        augmentation (in its own permutation) of training lesion lesion[k].
        Every prefix gives each lesion floor or ceil of prefix/n_lesions.
    """
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x6F72646572])  # "order"
    rounds = math.ceil(n_samples / n_lesions) if n_samples else 0
    lesion = np.concatenate([rng.permutation(n_lesions) for _ in range(rounds)] or [np.zeros(0)])
    rank = np.repeat(np.arange(rounds), n_lesions)
    return lesion[:n_samples].astype(np.int64), rank[:n_samples].astype(np.int64)


def _check_group_sizes(group_sizes) -> tuple[int, ...]:
    sizes = tuple(group_sizes)
    if not sizes:
        raise AugmentationError("group_sizes is empty: give at least one group")
    for value in sizes:
        if isinstance(value, bool) or int(value) != value or value < 0:
            raise AugmentationError(f"group sizes must be integers ≥ 0, got {list(sizes)}")
    sizes = tuple(int(v) for v in sizes)
    if any(b < a for a, b in zip(sizes, sizes[1:])):
        raise AugmentationError(
            f"group sizes must not decrease (the groups nest, D¹ ⊂ D² ⊂ …), got {list(sizes)}")
    return sizes


def build_augmentation_groups(
    dataset: LesionDataset,
    test_fold: int | None,
    group_sizes: Sequence[int] = PAPER_GROUP_SIZES,
    n_rot: int = 30,
    n_flip: int = 3,
    n_trans: int = 7,
    n_scale: int = 5,
    seed: int = 0,
    size: int = 64,
    log: Callable[[str], None] | None = print,
    *,
    path: str | os.PathLike,
    progress: Callable[[int, int], None] | None = None,
    oversample: float = 2.0,
    train_indices: Sequence[int] | None = None,
) -> GroupsBuildResult:
    """Render the nested D_aug groups of one fold's training lesions to HDF5.

    Args:
        dataset: a lesion dataset with folds.
        test_fold: the fold held out; only lesions of the other folds are used
            (None: none is held out, as for a final model on every patient).
        group_sizes: augmented samples added per group (non-decreasing; §4.2.1).
        n_rot, n_flip, n_trans, n_scale: the §3.1 counts; N per lesion is
            n_rot·(1 + n_flip + n_trans + n_scale).
        seed: makes parameters, permutations and order reproducible.
        size: output side in pixels (64 in Frid-Adar).
        log: called with one line per note (None: silent).
        path: the HDF5 file to write (keyword only; written atomically, so an
            existing file is replaced only on success).
        progress: called as ``progress(done, total)`` with images rendered.
        oversample: see ``augment_lesion``.
        train_indices: the lesions to augment, all outside ``test_fold``
            (a cell's fit part, its validation patients held out); default
            every lesion outside ``test_fold``.

    Returns:
        A ``GroupsBuildResult``.

    Raises:
        AugmentationError: no folds, bad counts or sizes, or a largest group
            that needs more samples than the training lesions have (n·N).
        FoldError: ``test_fold`` is not one of the dataset's folds.
    """
    sizes = _check_group_sizes(group_sizes)
    n_per_lesion = n_offline_augmentations(n_rot, n_flip, n_trans, n_scale)
    if dataset.folds is None:
        raise AugmentationError("the dataset has no folds: assign them first (kl data folds)")
    if len(dataset.folds) != len(dataset):
        raise AugmentationError(
            f"the dataset has {len(dataset.folds)} fold entries for {len(dataset)} lesions")
    if test_fold is None:  # a final model: every patient is a training patient
        train, test = np.arange(len(dataset)), np.zeros(0, np.int64)
    else:
        train, test = train_test_indices(dataset.folds, int(test_fold))
    if train_indices is not None:
        train = np.asarray(sorted(set(int(i) for i in train_indices)), np.int64)
        if np.isin(train, test).any():
            raise AugmentationError(f"train_indices include lesions of test fold {test_fold}")
    if len(train) == 0:
        raise AugmentationError(f"no training lesions outside fold {test_fold}")
    n_train = len(train)
    n_max = sizes[-1]
    if n_max > n_train * n_per_lesion:
        raise AugmentationError(
            f"the largest group asks for {n_max} augmented samples, but {n_train} training "
            f"lesions × N = {n_per_lesion} augmentations give only {n_train * n_per_lesion}; "
            "lower group_sizes or raise n_rot/n_flip/n_trans/n_scale")
    # Validate the counts once, before any rendering.
    draw_offline_params(1.0, n_rot, n_flip, n_trans, n_scale, rng=0)
    notes: list[str] = []

    def note(line: str) -> None:
        notes.append(line)
        if log is not None:
            log(line)

    sel_lesion, sel_rank = round_robin_selection(n_train, n_max, seed)
    per_lesion = np.bincount(sel_lesion, minlength=n_train)

    orig_images = np.zeros((n_train, size, size), np.uint16)
    aug_images = np.zeros((n_max, size, size), np.uint16)
    aug_index = np.zeros(n_max, np.int32)
    kind = np.zeros(n_max, np.uint8)
    angle = np.zeros(n_max, np.float32)
    flip = np.zeros(n_max, np.uint8)
    shift = np.zeros((n_max, 2), np.float32)
    margin = np.full(n_max, np.nan, np.float32)
    zoom = np.ones(n_max, np.float32)
    crop_side = np.zeros((n_max, 2), np.float32)
    beyond_context: list[str] = []
    total, done = n_train + n_max, 0

    for j, index in enumerate(train):
        lesion = dataset.lesions[index]
        geometry = lesion_geometry(lesion)
        if not (math.isfinite(lesion.diameter_px) and lesion.diameter_px > 0):
            note(f"lesion {lesion.lesion_id!r}: no diameter; using the lesion box side "
                 f"{geometry.diameter_px:g} px for p and s")
        if not lesion.has_context:
            note(f"lesion {lesion.lesion_id!r} has no context: scale re-crops zoom within "
                 "its ROI and rotated corners are filled by reflection")
        rng = lesion_seed(seed, lesion.lesion_id)
        params = draw_offline_params(geometry.diameter_px, n_rot, n_flip, n_trans, n_scale, rng)
        order = rng.permutation(n_per_lesion)
        slots = np.flatnonzero(sel_lesion == j)          # ascending, so rank 0, 1, 2 …
        chosen = order[sel_rank[slots]]
        chosen_params = [params[i] for i in chosen]
        context = windowed_context(lesion, dataset.window_level, dataset.window_width,
                                   dataset.intensity_unit)
        images = augment_lesion(context, geometry, [AffineParams()] + chosen_params, size=size,
                                oversample=oversample)
        codes = np.round(images[..., 0] * PIXEL_SCALE).astype(np.uint16)
        orig_images[j] = codes[0]
        aug_images[slots] = codes[1:]
        resolved = resolve_params(chosen_params, geometry)
        aug_index[slots] = chosen
        kind[slots] = [KINDS.index(p.kind) for p in chosen_params]
        angle[slots] = [p.angle_deg for p in chosen_params]
        flip[slots] = [FLIP_MODES.index(p.flip) for p in chosen_params]
        shift[slots] = resolved.shifts
        margin[slots] = [np.nan if p.margin is None else p.margin for p in chosen_params]
        zoom[slots] = [p.zoom for p in chosen_params]
        crop_side[slots] = resolved.sides
        if lesion.has_context and len(chosen_params):
            height, width = geometry.context_shape
            bounds = resolved.sampled_bounds()
            tolerance = 0.5  # half a pixel: bilinear sampling at the very edge is real tissue
            outside = int(((bounds[:, 0] < -tolerance) | (bounds[:, 1] < -tolerance)
                           | (bounds[:, 2] > height + tolerance)
                           | (bounds[:, 3] > width + tolerance)).sum())
            if outside:
                beyond_context.append(f"{lesion.lesion_id} ({outside}/{len(chosen_params)})")
        done += 1 + len(slots)
        if progress is not None:
            progress(done, total)
    if beyond_context:
        note(f"{len(beyond_context)} of {n_train} lesions have augmentations that sample beyond "
             "their context (filled by reflection): " + ", ".join(beyond_context[:10])
             + (" …" if len(beyond_context) > 10 else ""))

    lesions = [dataset.lesions[i] for i in train]
    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as h5:
            attrs = {
                "format": GROUPS_FORMAT, "format_version": GROUPS_FORMAT_VERSION,
                # -1: none held out (a final model's groups)
                "test_fold": -1 if test_fold is None else int(test_fold), "seed": int(seed),
                "n_rot": int(n_rot),
                "n_flip": int(n_flip), "n_trans": int(n_trans), "n_scale": int(n_scale),
                "n_per_lesion": int(n_per_lesion), "group_sizes": json.dumps(list(sizes)),
                "size": int(size), "oversample": float(oversample),
                "pixel_encoding": f"uint16 = round(x * {PIXEL_SCALE}), x in [0, 1]",
                "class_names": json.dumps(list(dataset.class_names)),
                "intensity_unit": dataset.intensity_unit,
                "window_level": float(dataset.window_level),
                "window_width": float(dataset.window_width),
                "dataset_description": dataset.description,
                "kinds": json.dumps(list(KINDS)), "flips": json.dumps(list(FLIP_MODES)),
                "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "notes": json.dumps(notes),
            }
            h5.attrs.update(attrs)
            string = h5py.string_dtype()
            src = h5.create_group("sources")
            src.create_dataset("lesion_index", data=np.asarray(train, np.int32))
            src.create_dataset("lesion_id", data=np.array([l.lesion_id for l in lesions], object),
                               dtype=string)
            src.create_dataset("patient_id",
                               data=np.array([l.patient_id for l in lesions], object), dtype=string)
            src.create_dataset("label", data=np.array([l.label for l in lesions], np.int32))
            src.create_dataset("fold", data=np.asarray(dataset.folds)[train].astype(np.int16))
            src.create_dataset("has_context", data=np.array([l.has_context for l in lesions]))
            src.create_dataset("diameter_px", data=np.array([l.diameter_px for l in lesions]))
            src.create_dataset("n_augmented", data=per_lesion.astype(np.int32))
            _write_images(h5, "originals/images", orig_images)
            h5.create_dataset("originals/source", data=np.arange(n_train, dtype=np.int32))
            _write_images(h5, "augmented/images", aug_images)
            aug = h5["augmented"]
            aug.create_dataset("source", data=sel_lesion.astype(np.int32))
            for name, values in (("aug_index", aug_index), ("kind", kind), ("angle_deg", angle),
                                 ("flip", flip), ("shift_px", shift), ("margin_px", margin),
                                 ("zoom", zoom), ("crop_side_px", crop_side)):
                aug.create_dataset(name, data=values)
    return GroupsBuildResult(path=path, test_fold=-1 if test_fold is None else int(test_fold),
                             n_train_lesions=n_train, group_sizes=sizes,
                             per_lesion_augmented=per_lesion, notes=notes)


def _write_images(h5: h5py.File, name: str, images: np.ndarray) -> None:
    if len(images) == 0:  # e.g. group_sizes [0]: the originals alone; HDF5 cannot chunk 0 rows
        h5.create_dataset(name, data=images)
        return
    chunk = (min(_CHUNK_IMAGES, len(images)),) + images.shape[1:]
    h5.create_dataset(name, data=images, chunks=chunk, compression="gzip", compression_opts=4,
                      shuffle=True)


# --------------------------------------------------------------------------- reading


def _open(path) -> h5py.File:
    path = Path(path)
    if not path.is_file():
        raise AugmentationError("no such augmentation groups file", path)
    h5 = open_hdf5(path, AugmentationError, "augmentation groups file", article="an")
    if h5.attrs.get("format") != GROUPS_FORMAT:
        h5.close()
        raise AugmentationError("is HDF5 but not an augmentation groups file", path)
    version = int(h5.attrs.get("format_version", -1))
    if version != GROUPS_FORMAT_VERSION:
        h5.close()
        raise AugmentationError(f"has groups format version {version}; this keras-lesions reads "
                                f"version {GROUPS_FORMAT_VERSION}", path)
    return h5


def _strings(values) -> np.ndarray:
    return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values],
                    dtype=object)


def read_augmentation_sources(path: str | os.PathLike) -> dict:
    """The lesions and patients that fed a groups file, and its settings.

    Returns:
        dict with "lesion_index", "lesion_id", "patient_id", "label", "fold",
        "has_context", "diameter_px", "n_augmented" (arrays, one row per
        training lesion) and "attrs" (the file's attributes, JSON decoded).

    Raises:
        AugmentationError: missing, unreadable or not a groups file.
    """
    with _open(path) as h5:
        src = h5["sources"]
        out = {name: src[name][()] for name in src}
        for name in ("lesion_id", "patient_id"):
            out[name] = _strings(out[name])
        attrs = {}
        for key, value in h5.attrs.items():
            value = value.decode() if isinstance(value, bytes) else value
            if key in ("group_sizes", "class_names", "kinds", "flips", "notes"):
                value = json.loads(value)
            attrs[key] = value.item() if isinstance(value, np.generic) else value
        out["attrs"] = attrs
    return out


def read_augmentation_group(path: str | os.PathLike, group_index: int
                            ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Load D_aug^(group_index + 1): the originals plus the first added samples.

    Args:
        path: a file written by ``build_augmentation_groups``.
        group_index: 0-based index into the file's ``group_sizes`` (0 is D_aug¹).

    Returns:
        (images, labels, meta): images float32 (n, size, size, 1) in [0, 1]
        (originals first, then augmented samples in selection order), labels
        int32 (n,), and meta with per-image arrays "source" (row of the
        sources table), "lesion_index", "lesion_id", "patient_id",
        "is_original", "kind", "aug_index", "angle_deg", "flip", "shift_px",
        "margin_px", "zoom", "crop_side_px" (originals: kind "original", NaN
        or neutral values), plus "group_name", "n_added", "test_fold",
        "class_names" and "sources" (``read_augmentation_sources`` without attrs).

    Raises:
        AugmentationError: missing or foreign file, or a group index out of range.
    """
    sources = read_augmentation_sources(path)
    attrs = sources.pop("attrs")
    sizes = attrs["group_sizes"]
    if isinstance(group_index, bool) or int(group_index) != group_index or \
            not 0 <= int(group_index) < len(sizes):
        raise AugmentationError(f"group index {group_index!r} is out of range: the file holds "
                                f"groups 0..{len(sizes) - 1} (D_aug^1..D_aug^{len(sizes)})", path)
    n_added = int(sizes[int(group_index)])
    with _open(path) as h5:
        originals = read_array(h5["originals/images"], AugmentationError, path, ndim=3)
        added = h5["augmented/images"][:n_added]
        aug = {name: h5["augmented"][name][:n_added] for name in h5["augmented"]
               if name != "images"}
        orig_source = h5["originals/source"][()]
    n_orig = len(originals)
    codes = np.concatenate([originals, added], axis=0)
    images = (codes.astype(np.float32) / PIXEL_SCALE)[..., None]
    source = np.concatenate([orig_source, aug["source"]]).astype(np.int64)
    kinds = attrs["kinds"]
    flips = attrs["flips"]
    meta = {
        "source": source,
        "lesion_index": sources["lesion_index"][source],
        "lesion_id": sources["lesion_id"][source],
        "patient_id": sources["patient_id"][source],
        "is_original": np.arange(len(source)) < n_orig,
        "kind": np.array(["original"] * n_orig + [kinds[k] for k in aug["kind"]], object),
        "aug_index": np.concatenate([np.full(n_orig, -1), aug["aug_index"]]).astype(np.int32),
        "angle_deg": np.concatenate([np.zeros(n_orig), aug["angle_deg"]]).astype(np.float32),
        "flip": np.array(["none"] * n_orig + [flips[k] for k in aug["flip"]], object),
        "shift_px": np.concatenate([np.zeros((n_orig, 2)), aug["shift_px"]]).astype(np.float32),
        "margin_px": np.concatenate([np.full(n_orig, np.nan), aug["margin_px"]]).astype(np.float32),
        "zoom": np.concatenate([np.ones(n_orig), aug["zoom"]]).astype(np.float32),
        "crop_side_px": np.concatenate([np.full((n_orig, 2), np.nan),
                                        aug["crop_side_px"]]).astype(np.float32),
        "group_name": f"D_aug^{int(group_index) + 1}",
        "n_added": n_added,
        "test_fold": int(attrs["test_fold"]),
        "class_names": attrs["class_names"],
        "sources": sources,
    }
    labels = sources["label"][source].astype(np.int32)
    return images, labels, meta
