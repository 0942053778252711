"""Importers: class folders of ROI images and CT volumes with masks, good and bad."""
from __future__ import annotations

import csv
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_rescale
from pydicom.uid import generate_uid

from keras_lesions.data.dataset import read_dataset, write_dataset
from keras_lesions.data.imaging import AIR_HU, mask_diameter
from keras_lesions.data.importers import (
    detect_source_kind,
    import_class_folders,
    import_source,
    import_volumes,
    read_mask,
    read_roi_image,
    read_volume,
)
from keras_lesions.errors import ImportSourceError

CT_SMALL = get_testdata_file("CT_small.dcm")
ENHANCED_CT = get_testdata_file("eCT_Supplemental.dcm")
CT_SMALL_SPACING = 0.661468
ENHANCED_SPACING = 0.388672


# --------------------------------------------------------------------------- fixture helpers


def _write_image(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(path.suffix, array)
    assert ok
    encoded.tofile(path)
    return path


def _write_npy(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array)
    return path


def _write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _gradient(shape, dtype, high) -> np.ndarray:
    rows, cols = np.indices(shape)
    return ((rows * 7 + cols * 3) % (high + 1)).astype(dtype)


def _copy_dicom(path: Path, source: str = CT_SMALL, **changes) -> Path:
    """Copy a DICOM file under a new SOPInstanceUID, with changed attributes."""
    dataset = pydicom.dcmread(source)
    uid = generate_uid()
    dataset.SOPInstanceUID = uid
    dataset.file_meta.MediaStorageSOPInstanceUID = uid
    for keyword, value in changes.items():
        setattr(dataset, keyword, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path)
    return path


def _disc(shape, center, radius) -> np.ndarray:
    rows, cols = np.indices(shape)
    return (rows - center[0]) ** 2 + (cols - center[1]) ** 2 <= radius ** 2


def _one_line(exc: ImportSourceError) -> str:
    message = str(exc)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- class folders


def _normalized_folders(root: Path) -> dict[str, np.ndarray]:
    """Class folders of PNG/TIFF/JPEG/.npy ROIs; returns the arrays written."""
    arrays = {
        "Cysts/a8.png": _gradient((40, 36), np.uint8, 255),
        "Cysts/b16.png": _gradient((30, 30), np.uint16, 65535) * 97,
        "mets/c16.tif": _gradient((32, 32), np.uint16, 65535) * 31,
        "mets/d8.tiff": _gradient((20, 24), np.uint8, 255),
        "Haemangioma/e.jpg": np.full((24, 24), 128, np.uint8),
        "Haemangioma/f.npy": np.linspace(0, 1, 28 * 28, dtype=np.float32).reshape(28, 28),
        "fibrosis/g.png": _gradient((16, 16), np.uint8, 255),
    }
    for rel, array in arrays.items():
        if rel.endswith(".npy"):
            _write_npy(root / rel, array)
        elif rel.endswith(".jpg"):
            # Grey saved as three equal channels, as many viewers export it.
            _write_image(root / rel, np.dstack([array] * 3))
        else:
            _write_image(root / rel, array)
    (root / "Cysts" / ".DS_Store").write_bytes(b"\x00junk")
    return arrays


def test_class_folders_raster_formats_and_npy(tmp_path):
    arrays = _normalized_folders(tmp_path / "src")
    notes = []
    dataset = import_source(tmp_path / "src", npy_unit="normalized", roi_margin=0.5,
                            log=notes.append)

    assert detect_source_kind(tmp_path / "src", None) == "class-folders"
    # Canonical classes in registry order, the user's own class after them.
    assert dataset.class_names == ["cyst", "metastasis", "hemangioma", "fibrosis"]
    assert dataset.intensity_unit == "normalized"
    assert np.isnan(dataset.window_level)
    assert dataset.created_by == ""
    assert dataset.extra["importer"] == "class-folders"
    assert dataset.extra["roi_margin"] == 0.5
    by_source = {lesion.source: lesion for lesion in dataset.lesions}
    assert set(by_source) == set(arrays)  # the dotfile was skipped

    np.testing.assert_allclose(by_source["Cysts/a8.png"].roi, arrays["Cysts/a8.png"] / 255.0,
                               atol=1e-7)
    np.testing.assert_allclose(by_source["Cysts/b16.png"].roi,
                               arrays["Cysts/b16.png"] / 65535.0, atol=1e-7)
    np.testing.assert_allclose(by_source["mets/c16.tif"].roi, arrays["mets/c16.tif"] / 65535.0,
                               atol=1e-7)
    np.testing.assert_allclose(by_source["mets/d8.tiff"].roi, arrays["mets/d8.tiff"] / 255.0,
                               atol=1e-7)
    np.testing.assert_allclose(by_source["Haemangioma/e.jpg"].roi, 128 / 255.0, atol=2 / 255)
    np.testing.assert_array_equal(by_source["Haemangioma/f.npy"].roi,
                                  arrays["Haemangioma/f.npy"])

    lesion = by_source["Cysts/a8.png"]
    assert lesion.lesion_id == "cyst/a8"
    assert lesion.patient_id == "Cysts/a8.png"
    assert lesion.label == 0
    assert by_source["fibrosis/g.png"].label == 3
    assert lesion.has_context is False
    assert lesion.context is lesion.roi
    assert lesion.roi_box == (0, 0, 40, 36)
    assert lesion.mask is None
    assert lesion.diameter_source == "roi-estimate"
    assert lesion.diameter_px == pytest.approx(40 / 2.0)
    assert np.isnan(lesion.diameter_mm) and np.isnan(lesion.spacing_mm).all()
    # The lesion box is the centred part the margin leaves: 40/2 x 36/2.
    assert lesion.lesion_box == (10, 9, 30, 27)

    assert any("own patient" in note for note in notes)
    assert any("estimated from the ROI size" in note for note in notes)


def test_read_roi_image_units_and_squeeze(tmp_path):
    npy = _write_npy(tmp_path / "x.npy", np.full((1, 8, 9), -50.0))
    image, unit, spacing = read_roi_image(npy, "HU")
    assert image.shape == (8, 9) and image.dtype == np.float32 and unit == "HU"
    assert np.isnan(spacing).all()
    png = _write_image(tmp_path / "g.png", np.full((6, 5, 4), 200, np.uint8))  # grey + opaque alpha
    image, unit, _ = read_roi_image(png)
    assert unit == "normalized" and image.shape == (6, 5)
    np.testing.assert_allclose(image, 200 / 255.0)


def _hu_folders(root: Path) -> dict[str, Path]:
    paths = {
        "cyst/ct.dcm": _copy_dicom(root / "cyst" / "ct.dcm"),
        # Extension-less DICOM, recognised by its "DICM" preamble.
        "cyst/IM0001": _copy_dicom(root / "cyst" / "IM0001", RescaleIntercept=-1000),
        "metastasis/m1.npy": _write_npy(root / "metastasis" / "m1.npy",
                                        np.full((50, 40), 35.0, np.float32)),
        "metastasis/m2.npy": _write_npy(root / "metastasis" / "m2.npy",
                                        np.linspace(-100, 200, 900).reshape(30, 30)),
    }
    return paths


def test_class_folders_dicom_hu_without_csv(tmp_path):
    _hu_folders(tmp_path / "src")
    notes = []
    dataset = import_class_folders(tmp_path / "src", log=notes.append)
    assert dataset.intensity_unit == "HU"
    assert dataset.window_level == 50.0
    by_source = {lesion.source: lesion for lesion in dataset.lesions}

    reference = pydicom.dcmread(CT_SMALL)
    expected = apply_rescale(reference.pixel_array, reference)
    np.testing.assert_allclose(by_source["cyst/ct.dcm"].roi, expected, atol=1e-3)
    slope = float(reference.RescaleSlope)
    np.testing.assert_allclose(by_source["cyst/IM0001"].roi,
                               reference.pixel_array * slope - 1000.0, atol=1e-3)
    lesion = by_source["cyst/ct.dcm"]
    assert lesion.spacing_mm == pytest.approx((CT_SMALL_SPACING, CT_SMALL_SPACING))
    assert lesion.diameter_source == "roi-estimate"
    assert lesion.diameter_px == pytest.approx(128 / 1.8)
    assert lesion.diameter_mm == pytest.approx(128 / 1.8 * CT_SMALL_SPACING)
    assert by_source["metastasis/m1.npy"].roi.dtype == np.float32
    assert len(set(dataset.patient_ids)) == 4
    assert any("own patient" in note for note in notes)


def test_class_folders_with_mapping_csv_and_round_trip(tmp_path):
    _hu_folders(tmp_path / "src")
    mapping = _write_csv(tmp_path / "mapping.csv", [
        {"file": "cyst/ct.dcm", "patient_id": "P1", "diameter_mm": "20", "lesion_id": ""},
        {"file": "IM0001", "patient_id": "P1", "diameter_mm": "", "lesion_id": ""},
        {"file": "metastasis/m1.npy", "patient_id": "P2", "diameter_mm": "15",
         "lesion_id": "les-m1"},
        {"file": "m2.npy", "patient_id": "P1", "diameter_mm": "", "lesion_id": ""},
    ])
    notes = []
    dataset = import_source(tmp_path / "src", mapping_csv=mapping, log=notes.append)
    by_source = {lesion.source: lesion for lesion in dataset.lesions}

    assert [by_source[s].patient_id for s in sorted(by_source)] == ["P1", "P1", "P2", "P1"]
    dicom = by_source["cyst/ct.dcm"]
    assert dicom.diameter_source == "csv"
    assert dicom.diameter_mm == 20.0
    assert dicom.diameter_px == pytest.approx(20 / CT_SMALL_SPACING)
    assert by_source["cyst/IM0001"].diameter_source == "roi-estimate"
    npy = by_source["metastasis/m1.npy"]
    assert npy.lesion_id == "les-m1"
    assert npy.diameter_source == "csv" and npy.diameter_mm == 15.0
    # No spacing in a .npy: pixels can only be estimated from the ROI.
    assert npy.diameter_px == pytest.approx(50 / 1.8)
    assert npy.attributes["diameter_px_source"] == "roi-estimate"
    assert not any("own patient" in note for note in notes)

    out = write_dataset(dataset, tmp_path / "out.h5")
    again = read_dataset(out)
    assert again.class_names == dataset.class_names
    assert again.intensity_unit == "HU"
    assert list(again.lesion_ids) == list(dataset.lesion_ids)
    assert list(again.patient_ids) == list(dataset.patient_ids)
    for before, after in zip(dataset.lesions, again.lesions):
        np.testing.assert_array_equal(before.roi, after.roi)
        assert after.has_context is False and after.mask is None
        assert after.diameter_source == before.diameter_source


def test_mapping_csv_class_column_disambiguates_file_names(tmp_path):
    _write_image(tmp_path / "src" / "cyst" / "a.png", _gradient((16, 16), np.uint8, 255))
    _write_image(tmp_path / "src" / "metastasis" / "a.png", _gradient((20, 20), np.uint8, 255))
    mapping = _write_csv(tmp_path / "mapping.csv", [
        {"file": "a.png", "patient_id": "p1", "class": "Mets"},
        {"file": "a.png", "patient_id": "p2", "class": "cysts"},
    ])
    dataset = import_source(tmp_path / "src", mapping_csv=mapping, log=lambda _: None)
    patients = {lesion.source: lesion.patient_id for lesion in dataset.lesions}
    assert patients == {"cyst/a.png": "p2", "metastasis/a.png": "p1"}
    # Without the class column the bare name is ambiguous.
    _write_csv(mapping, [{"file": "a.png", "patient_id": "p1"},
                         {"file": "a.png", "patient_id": "p2"}])
    with pytest.raises(ImportSourceError, match="matches cyst/a.png, metastasis/a.png"):
        import_source(tmp_path / "src", mapping_csv=mapping, log=lambda _: None)


def test_classes_option_selects_and_orders_folders(tmp_path):
    _normalized_folders(tmp_path / "src")
    notes = []
    dataset = import_class_folders(tmp_path / "src", classes=["Metastases", "cyst"],
                                   npy_unit="normalized", log=notes.append)
    assert dataset.class_names == ["metastasis", "cyst"]
    assert {lesion.source.split("/")[0] for lesion in dataset.lesions} == {"mets", "Cysts"}
    assert any("skipping folder 'fibrosis'" in note for note in notes)


# --------------------------------------------------------------------------- NIfTI volumes

NIFTI_ZOOMS = (0.7, 0.8, 2.0)          # (i = columns, j = rows, k = slices) in mm
NIFTI_SHAPE = (48, 40, 20)             # nibabel (i, j, k)
SPHERE_CENTER = (10.0, 20.0, 10.2)     # voxels; near the left edge so crops need padding
SPHERE_RADIUS_MM = 6.0


def _nifti_affine(zooms=NIFTI_ZOOMS, shift=(0.0, 0.0, 0.0)) -> np.ndarray:
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = np.array([-10.0, 20.0, -100.0]) + np.asarray(shift)
    return affine


def _nifti_scene(root: Path):
    """A NIfTI volume (HU via scl_inter) with two ball lesions and their label mask."""
    i, j, k = np.indices(NIFTI_SHAPE)
    hu = ((3 * i + 7 * j + 11 * k) % 200 - 100).astype(np.int16)
    sphere = sum(((c - m) * z) ** 2 for c, m, z in zip((i, j, k), SPHERE_CENTER, NIFTI_ZOOMS)) \
        <= SPHERE_RADIUS_MM ** 2
    small = sum(((c - m) * z) ** 2 for c, m, z in zip((i, j, k), (32, 25, 5), NIFTI_ZOOMS)) \
        <= 3.0 ** 2
    hu[sphere] = 500
    hu[small] = 300
    labels = np.zeros(NIFTI_SHAPE, np.uint8)
    labels[sphere] = 3
    labels[small] = 1
    volume = nib.Nifti1Image((hu + 1024).astype(np.int16), _nifti_affine())
    # Stored values are HU + 1024; nibabel applies scl_inter on reading.
    volume.header.set_slope_inter(1.0, -1024.0)
    (root / "ct").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    nib.save(volume, root / "ct" / "case01.nii.gz")
    nib.save(nib.Nifti1Image(labels, _nifti_affine()), root / "masks" / "case01_mask.nii.gz")
    return hu, labels, sphere


def test_read_volume_nifti_axis_order_and_scaling(tmp_path):
    hu, labels, _ = _nifti_scene(tmp_path)
    volume, spacing, geometry = read_volume(tmp_path / "ct" / "case01.nii.gz")
    assert volume.shape == (20, 40, 48) and volume.dtype == np.float32
    assert spacing == pytest.approx((2.0, 0.8, 0.7))
    np.testing.assert_array_equal(volume, hu.transpose(2, 1, 0))
    # Voxel (slice, row, col) = (k, j, i) lands where nibabel puts (i, j, k).
    np.testing.assert_allclose(geometry.affine @ [4, 5, 6, 1], _nifti_affine() @ [6, 5, 4, 1])
    mask, mask_geometry = read_mask(tmp_path / "masks" / "case01_mask.nii.gz")
    np.testing.assert_array_equal(mask, labels.transpose(2, 1, 0))
    np.testing.assert_allclose(mask_geometry.affine, geometry.affine)


def test_nifti_volume_lesions(tmp_path):
    hu, labels, sphere = _nifti_scene(tmp_path / "src")
    # The CSV lives elsewhere: the volume is found under SOURCE, the mask beside the CSV.
    shutil.move(tmp_path / "src" / "masks", tmp_path / "meta" / "masks")
    mapping = _write_csv(tmp_path / "meta" / "lesions.csv", [
        {"volume": "ct/case01.nii.gz", "mask": "masks/case01_mask.nii.gz", "label": "3",
         "class": "Cysts"},
        {"volume": "ct/case01.nii.gz", "mask": "masks/case01_mask.nii.gz", "label": "1",
         "class": "metastasis"},
    ])
    assert detect_source_kind(tmp_path / "src", mapping) == "volumes"
    margin, context_margin = 0.4, 1.0
    dataset = import_source(tmp_path / "src", mapping_csv=mapping, roi_margin=margin,
                            context_margin=context_margin, input_size=32, log=lambda _: None)
    assert dataset.class_names == ["cyst", "metastasis"]
    assert dataset.intensity_unit == "HU" and dataset.input_size == 32
    assert dataset.extra["importer"] == "volumes"
    ball, small = dataset.lesions

    areas = (labels == 3).sum(axis=(0, 1))
    assert ball.slice_index == int(np.argmax(areas)) == 10
    assert ball.lesion_id == "case01-L3"
    assert ball.patient_id == "ct/case01"
    assert ball.source == "ct/case01.nii.gz#label=3"
    assert ball.label == 0 and small.label == 1
    assert ball.spacing_mm == pytest.approx((0.8, 0.7))
    assert ball.diameter_source == "mask"
    assert abs(ball.diameter_mm - 2 * SPHERE_RADIUS_MM) <= 0.8
    slice_mask = (labels[:, :, 10] == 3).T  # (rows, cols)
    assert ball.diameter_px == pytest.approx(mask_diameter(slice_mask))

    roi_side = ball.diameter_px * (1 + 2 * margin)
    assert ball.roi.shape[0] == ball.roi.shape[1]
    assert abs(ball.roi.shape[0] - roi_side) <= 1
    assert abs(ball.context.shape[0] - ball.diameter_px * (1 + 2 * context_margin)) <= 1

    # The context is the slice itself where it lies inside, air outside.
    r0, c0, r1, c1 = ball.attributes["context_box_in_slice"]
    slice_hu = hu[:, :, 10].T
    assert c0 < 0  # the ball sits near the left edge
    assert ball.attributes["padded_with_air"] is True
    np.testing.assert_array_equal(ball.context[:, :-c0], AIR_HU)
    inside = slice_hu[max(r0, 0):r1, 0:c1]
    np.testing.assert_array_equal(ball.context[max(r0, 0) - r0:, -c0:][:inside.shape[0]], inside)
    rr0, rc0, rr1, rc1 = ball.roi_box
    np.testing.assert_array_equal(ball.roi, ball.context[rr0:rr1, rc0:rc1])

    # The mask sits on the context grid and covers exactly the lesion pixels.
    assert ball.mask.shape == ball.context.shape and ball.mask.dtype == bool
    assert ball.mask.sum() == slice_mask.sum()
    assert (ball.context[ball.mask] == 500).all()
    lr0, lc0, lr1, lc1 = ball.lesion_box
    assert ball.mask[lr0:lr1, lc0:lc1].sum() == ball.mask.sum()

    assert small.attributes["padded_with_air"] is False
    assert (small.context[small.mask] == 300).all()

    again = read_dataset(write_dataset(dataset, tmp_path / "volumes.h5"))
    np.testing.assert_array_equal(again.lesions[0].context, ball.context)
    np.testing.assert_array_equal(again.lesions[0].mask, ball.mask)
    assert again.lesions[0].roi_box == ball.roi_box
    assert again.lesions[0].slice_index == 10


# --------------------------------------------------------------------------- DICOM volumes

SERIES_SLICES = 5
SERIES_GAP_MM = 5.0


def _dicom_series(folder: Path, pixels=None) -> list[float]:
    """CT_small copied into a shuffled series; slice k has intercept -1024 + 100k."""
    reference = pydicom.dcmread(CT_SMALL)
    z0 = float(reference.ImagePositionPatient[2])
    intercepts = [-1024.0 + 100 * k for k in range(SERIES_SLICES)]
    names = np.random.default_rng(0).permutation(SERIES_SLICES)
    series_uid = generate_uid()
    for k in range(SERIES_SLICES):
        changes = dict(
            ImagePositionPatient=[*reference.ImagePositionPatient[:2], z0 + SERIES_GAP_MM * k],
            InstanceNumber=SERIES_SLICES - k,  # reversed: sorting must follow position
            RescaleIntercept=intercepts[k],
            SeriesInstanceUID=series_uid,
        )
        if pixels is not None:
            changes["PixelData"] = pixels[k].astype(reference.pixel_array.dtype).tobytes()
        _copy_dicom(folder / f"IMG{names[k]:03d}", **changes)
    return intercepts


def test_dicom_series_volume_with_npy_and_dicom_masks(tmp_path):
    source = tmp_path / "src"
    intercepts = _dicom_series(source / "series")
    stored = pydicom.dcmread(CT_SMALL).pixel_array.astype(np.float64)

    volume, spacing, geometry = read_volume(source / "series")
    assert geometry.kind == "dicom-series"
    assert volume.shape == (SERIES_SLICES, 128, 128)
    assert spacing == pytest.approx((SERIES_GAP_MM, CT_SMALL_SPACING, CT_SMALL_SPACING))
    for k in range(SERIES_SLICES):
        np.testing.assert_allclose(volume[k], stored + intercepts[k], atol=1e-3)

    # The geometry follows DICOM: pixel (r, c) of slice k lies at
    # IPP_k + r·Δr·column_cosines + c·Δc·row_cosines (LPS), reported in RAS.
    reference = pydicom.dcmread(CT_SMALL)
    row_cosines = np.array(reference.ImageOrientationPatient[:3], float)
    column_cosines = np.array(reference.ImageOrientationPatient[3:], float)
    for k, r, c in [(0, 0, 0), (3, 17, 101), (4, 127, 5)]:
        position = np.array([*reference.ImagePositionPatient[:2],
                             float(reference.ImagePositionPatient[2]) + SERIES_GAP_MM * k])
        lps = position + r * CT_SMALL_SPACING * column_cosines + c * CT_SMALL_SPACING * row_cosines
        np.testing.assert_allclose(geometry.affine @ [k, r, c, 1], [-lps[0], -lps[1], lps[2], 1],
                                   atol=1e-4)

    labels = np.zeros(volume.shape, np.uint8)
    labels[3][_disc((128, 128), (60, 70), 10)] = 2
    labels[2][_disc((128, 128), (60, 70), 6)] = 2     # smaller on the next slice
    labels[1][_disc((128, 128), (30, 90), 5)] = 5
    _write_npy(source / "mask.npy", labels)
    # The same labels as a DICOM series with the volume's geometry; its
    # intercepts must be ignored (labels are stored values).
    _dicom_series(source / "mask_series", pixels=labels)

    # And as NIfTI in the volume's geometry: nibabel order (i, j, k) = (col, row, slice).
    nib.save(nib.Nifti1Image(labels.transpose(2, 1, 0), geometry.affine[:, [2, 1, 0, 3]]),
             source / "mask.nii.gz")

    results = []
    for mask in ("mask.npy", "mask_series", "mask.nii.gz"):
        mapping = _write_csv(tmp_path / f"{mask}.csv", [
            {"volume": "series", "mask": mask, "label": "2", "class": "hemangioma",
             "patient_id": "PX", "lesion_id": ""},
            {"volume": "series", "mask": mask, "label": "5", "class": "cyst",
             "patient_id": "PX", "lesion_id": "tiny"},
        ])
        results.append(import_volumes(source, mapping, log=lambda _: None))
    for dataset in results:
        assert dataset.class_names == ["cyst", "hemangioma"]
        lesion = dataset.lesions[0]
        assert lesion.slice_index == 3
        assert lesion.lesion_id == "series-L2" and lesion.patient_id == "PX"
        assert lesion.spacing_mm == pytest.approx((CT_SMALL_SPACING, CT_SMALL_SPACING))
        r0, c0, r1, c1 = lesion.attributes["context_box_in_slice"]
        np.testing.assert_allclose(lesion.context, stored[r0:r1, c0:c1] + intercepts[3],
                                   atol=1e-3)
        assert lesion.diameter_mm == pytest.approx(21 * CT_SMALL_SPACING, abs=CT_SMALL_SPACING)
        assert dataset.lesions[1].slice_index == 1
        assert dataset.lesions[1].lesion_id == "tiny"
    for other in results[1:]:
        np.testing.assert_array_equal(results[0].lesions[0].mask, other.lesions[0].mask)


def test_enhanced_ct_volume(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(ENHANCED_CT, source / "ect.dcm")
    stored = pydicom.dcmread(ENHANCED_CT).pixel_array.astype(np.float64)  # (2, 512, 512)

    volume, spacing, geometry = read_volume(source / "ect.dcm")
    assert geometry.kind == "dicom-enhanced"
    assert spacing == pytest.approx((10.0, ENHANCED_SPACING, ENHANCED_SPACING))
    # Frames lie at z = -159 (frame 1) and -149 (frame 2) with normal (0, 0, -1):
    # ascending along the normal puts frame 2 first.
    np.testing.assert_allclose(volume[0], stored[1] - 1024)
    np.testing.assert_allclose(volume[1], stored[0] - 1024)

    labels = np.zeros(volume.shape, np.uint8)
    labels[1][_disc((512, 512), (256, 256), 20)] = 1
    labels[0][_disc((512, 512), (100, 400), 10)] = 2
    _write_npy(source / "mask.npy", labels)
    mapping = _write_csv(source / "lesions.csv", [
        {"volume": "ect.dcm", "mask": "mask.npy", "label": "1", "class": "metastasis"},
        {"volume": "ect.dcm", "mask": "mask.npy", "label": "2", "class": "cyst"},
    ])
    dataset = import_source(source, mapping_csv=mapping, log=lambda _: None)
    lesion = dataset.lesions[0]
    assert lesion.slice_index == 1
    assert lesion.patient_id == "ect"
    assert lesion.spacing_mm == pytest.approx((ENHANCED_SPACING, ENHANCED_SPACING))
    r0, c0, r1, c1 = lesion.attributes["context_box_in_slice"]
    np.testing.assert_allclose(lesion.context, stored[0][r0:r1, c0:c1] - 1024)
    rr0, rc0, rr1, rc1 = lesion.roi_box
    np.testing.assert_allclose(lesion.roi, stored[0][r0 + rr0:r0 + rr1, c0 + rc0:c0 + rc1] - 1024)
    assert lesion.diameter_mm == pytest.approx(41 * ENHANCED_SPACING, abs=ENHANCED_SPACING)
    assert dataset.lesions[1].slice_index == 0


# --------------------------------------------------------------------------- bad input


def _two_pngs(root: Path) -> None:
    _write_image(root / "cyst" / "a.png", _gradient((16, 16), np.uint8, 255))
    _write_image(root / "metastasis" / "b.png", _gradient((16, 16), np.uint8, 255))


def _small_nifti(root: Path, *, rows=None, mask=None, mask_affine=None, volume_name="v.nii.gz"):
    """A 4-slice NIfTI volume with labels 1 and 2, mask, and CSV; returns (source, csv)."""
    root.mkdir(parents=True, exist_ok=True)
    data = np.zeros((16, 16, 4), np.int16)
    labels = np.zeros((16, 16, 4), np.uint8)
    labels[3:7, 3:7, 1] = 1
    labels[9:13, 9:13, 2] = 2
    nib.save(nib.Nifti1Image(data, np.eye(4)), root / volume_name)
    if mask is None:
        nib.save(nib.Nifti1Image(labels, np.eye(4) if mask_affine is None else mask_affine),
                 root / "m.nii.gz")
    else:
        _write_npy(root / "m.npy", mask)
    mask_name = "m.nii.gz" if mask is None else "m.npy"
    if rows is None:
        rows = [{"volume": volume_name, "mask": mask_name, "label": "1", "class": "cyst"},
                {"volume": volume_name, "mask": mask_name, "label": "2", "class": "metastasis"}]
    return root, _write_csv(root / "lesions.csv", rows)


def _case_truncated_png(root):
    _two_pngs(root)
    data = cv2.imencode(".png", _gradient((32, 32), np.uint8, 255))[1].tobytes()
    (root / "cyst" / "broken.png").write_bytes(data[: len(data) // 2])
    return dict(source=root), "broken.png", "corrupt"


def _case_random_dcm(root):
    _two_pngs(root)
    (root / "metastasis" / "junk.dcm").write_bytes(np.random.default_rng(1).bytes(2000))
    return dict(source=root), "junk.dcm", "not a valid DICOM"


def _case_text_file(root):
    _two_pngs(root)
    (root / "cyst" / "notes.txt").write_text("liver lesions, batch 2\n")
    return dict(source=root), "notes.txt", "not a supported ROI image"


def _case_empty_folder(root):
    _two_pngs(root)
    (root / "hemangioma").mkdir()
    return dict(source=root), "hemangioma", "holds no images"


def _case_single_class(root):
    _write_image(root / "cyst" / "a.png", _gradient((16, 16), np.uint8, 255))
    return dict(source=root), str(root), "only one class"


def _case_nan_pixels(root):
    _two_pngs(root)
    array = np.zeros((16, 16), np.float32)
    array[3, 4] = np.nan
    _write_npy(root / "cyst" / "nan.npy", array)
    return dict(source=root, npy_unit="normalized"), "nan.npy", "NaN or infinite"


def _case_inf_tiff(root):
    _two_pngs(root)
    array = np.full((16, 16), 0.5, np.float32)
    array[0, 0] = np.inf
    _write_image(root / "cyst" / "inf.tif", array)
    return dict(source=root), "inf.tif", "NaN or infinite"


def _case_3d_npy(root):
    _write_npy(root / "cyst" / "stack.npy", np.zeros((3, 64, 64), np.float32))
    _write_npy(root / "metastasis" / "b.npy", np.zeros((64, 64), np.float32))
    return dict(source=root), "stack.npy", "3-D image"


def _case_multiframe_dicom_roi(root):
    _copy_dicom(root / "cyst" / "a.dcm")
    (root / "metastasis").mkdir()
    shutil.copy(ENHANCED_CT, root / "metastasis" / "volume.dcm")
    return dict(source=root), "volume.dcm", "3-D image (2 frames)"


def _case_colour_png(root):
    _two_pngs(root)
    colour = np.zeros((16, 16, 3), np.uint8)
    colour[..., 2] = 255
    _write_image(root / "cyst" / "red.png", colour)
    return dict(source=root), "red.png", "colour"


def _case_mixed_units(root):
    _copy_dicom(root / "cyst" / "ct.dcm")
    _write_image(root / "metastasis" / "b.png", _gradient((16, 16), np.uint8, 255))
    return dict(source=root), "metastasis/b.png", "mixes units"


def _case_duplicate_ids_folders(root):
    _two_pngs(root)
    _write_npy(root / "cyst" / "a.npy", np.zeros((16, 16), np.float32))
    # Units would clash too; make the .npy normalized so the id clash is what fails.
    return dict(source=root, npy_unit="normalized"), "cyst/a", "repeats"


def _case_unknown_class_folders_csv(root):
    _two_pngs(root)
    mapping = _write_csv(root.parent / "mapping.csv", [
        {"file": "a.png", "patient_id": "p1", "class": "cyst"},
        {"file": "b.png", "patient_id": "p2", "class": "fibroma"},
    ])
    return dict(source=root, mapping_csv=mapping), "mapping.csv", "line 3: class 'fibroma'"


def _case_unknown_class_volumes(root):
    source, mapping = _small_nifti(root, rows=[
        {"volume": "v.nii.gz", "mask": "m.nii.gz", "label": "1", "class": "cyst"},
        {"volume": "v.nii.gz", "mask": "m.nii.gz", "label": "2", "class": "adenoma"},
    ])
    return dict(source=source, mapping_csv=mapping), "lesions.csv", "pass classes"


def _case_patient_conflict_file(root):
    _two_pngs(root)
    mapping = _write_csv(root.parent / "mapping.csv", [
        {"file": "cyst/a.png", "patient_id": "p1"},
        {"file": "metastasis/b.png", "patient_id": "p2"},
        {"file": "a.png", "patient_id": "p3"},
    ])
    return dict(source=root, mapping_csv=mapping), "cyst/a.png", "two patient ids"


def _case_file_under_two_classes(root):
    _two_pngs(root)
    mapping = _write_csv(root.parent / "mapping.csv", [
        {"file": "cyst/a.png", "patient_id": "p1", "class": "cyst"},
        {"file": "metastasis/b.png", "patient_id": "p2", "class": "metastasis"},
        {"file": "cyst/a.png", "patient_id": "p1", "class": "metastasis"},
    ])
    return dict(source=root, mapping_csv=mapping), "cyst/a.png", "two classes"


def _case_volume_two_patients(root):
    source, mapping = _small_nifti(root, rows=[
        {"volume": "v.nii.gz", "mask": "m.nii.gz", "label": "1", "class": "cyst",
         "patient_id": "A"},
        {"volume": "v.nii.gz", "mask": "m.nii.gz", "label": "2", "class": "metastasis",
         "patient_id": "B"},
    ])
    return dict(source=source, mapping_csv=mapping), "v.nii.gz", "patient id 'B'"


def _case_duplicate_ids_volumes(root):
    source, mapping = _small_nifti(root, rows=[
        {"volume": "v.nii.gz", "mask": "m.nii.gz", "label": "1", "class": "cyst",
         "lesion_id": "L"},
        {"volume": "v.nii.gz", "mask": "m.nii.gz", "label": "2", "class": "metastasis",
         "lesion_id": "L"},
    ])
    return dict(source=source, mapping_csv=mapping), "lesions.csv", "lesion id 'L' repeats"


def _case_missing_columns_folders(root):
    _two_pngs(root)
    mapping = _write_csv(root.parent / "mapping.csv", [{"file": "a.png", "diameter_mm": "3"}])
    return dict(source=root, mapping_csv=mapping), "mapping.csv", "lacks column(s) ['patient_id']"


def _case_missing_columns_volumes(root):
    source, mapping = _small_nifti(root, rows=[
        {"volume": "v.nii.gz", "mask": "m.nii.gz", "class": "cyst"}])
    return dict(source=source, mapping_csv=mapping), "lesions.csv", "lacks column(s) ['label']"


def _case_missing_file_folders(root):
    _two_pngs(root)
    mapping = _write_csv(root.parent / "mapping.csv", [
        {"file": "cyst/a.png", "patient_id": "p1"},
        {"file": "metastasis/b.png", "patient_id": "p2"},
        {"file": "cyst/gone.png", "patient_id": "p3"},
    ])
    return dict(source=root, mapping_csv=mapping), "cyst/gone.png", "line 4"


def _case_missing_file_volumes(root):
    source, mapping = _small_nifti(root, rows=[
        {"volume": "v.nii.gz", "mask": "m.nii.gz", "label": "1", "class": "cyst"},
        {"volume": "w.nii.gz", "mask": "m.nii.gz", "label": "2", "class": "metastasis"},
    ])
    return dict(source=source, mapping_csv=mapping), "w.nii.gz", "line 3"


def _case_unlisted_file(root):
    _two_pngs(root)
    mapping = _write_csv(root.parent / "mapping.csv", [{"file": "cyst/a.png", "patient_id": "p1"}])
    return dict(source=root, mapping_csv=mapping), "b.png", "not listed"


def _case_mask_shape(root):
    source, mapping = _small_nifti(root, mask=np.zeros((4, 16, 15), np.uint8))
    return dict(source=source, mapping_csv=mapping), "m.npy", "shape"


def _case_label_absent(root):
    source, mapping = _small_nifti(root, rows=[
        {"volume": "v.nii.gz", "mask": "m.nii.gz", "label": "1", "class": "cyst"},
        {"volume": "v.nii.gz", "mask": "m.nii.gz", "label": "7", "class": "metastasis"},
    ])
    return dict(source=source, mapping_csv=mapping), "m.nii.gz", "label 7"


def _case_mask_affine(root):
    shifted = np.eye(4)
    shifted[0, 3] = 3.0
    source, mapping = _small_nifti(root, mask_affine=shifted)
    return dict(source=source, mapping_csv=mapping), "m.nii.gz", "geometry differs"


def _case_corrupt_nifti(root):
    source, mapping = _small_nifti(root)
    data = (source / "v.nii.gz").read_bytes()
    (source / "v.nii.gz").write_bytes(data[: len(data) // 2])
    return dict(source=source, mapping_csv=mapping), "v.nii.gz", "unreadable NIfTI"


def _case_sagittal_nifti(root):
    source, mapping = _small_nifti(root)
    sagittal = np.array([[0, 0, 1.0, 0], [0, 1.0, 0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 4), np.int16), sagittal), source / "v.nii.gz")
    return dict(source=source, mapping_csv=mapping), "v.nii.gz", "not axial"


def _case_duplicate_slice_positions(root):
    _copy_dicom(root / "series" / "a")
    _copy_dicom(root / "series" / "b")
    _write_npy(root / "m.npy", np.ones((2, 128, 128), np.uint8))
    mapping = _write_csv(root / "lesions.csv", [
        {"volume": "series", "mask": "m.npy", "label": "1", "class": "cyst", "lesion_id": "one"},
        {"volume": "series", "mask": "m2.npy", "label": "1", "class": "metastasis",
         "lesion_id": "other"}])
    _write_npy(root / "m2.npy", np.ones((2, 128, 128), np.uint8))
    return dict(source=root, mapping_csv=mapping), "series/", "same position"


def _case_nifti_mask_flipped_for_dicom_volume(root):
    # Rows flipped with a matching affine, as some converters write: a valid
    # NIfTI, but its array no longer lines up with the volume's.
    _dicom_series(root / "series")
    _, _, geometry = read_volume(root / "series")
    labels = np.zeros((SERIES_SLICES, 128, 128), np.uint8)
    labels[2, 10:20, 10:20] = 1
    labels[3, 50:60, 50:60] = 2
    affine = geometry.affine[:, [2, 1, 0, 3]].copy()
    affine[:, 3] += affine[:, 1] * 127
    affine[:, 1] *= -1
    nib.save(nib.Nifti1Image(labels.transpose(2, 1, 0)[:, ::-1], affine), root / "flipped.nii.gz")
    mapping = _write_csv(root / "lesions.csv", [
        {"volume": "series", "mask": "flipped.nii.gz", "label": "1", "class": "cyst"},
        {"volume": "series", "mask": "flipped.nii.gz", "label": "2", "class": "metastasis"}])
    return dict(source=root, mapping_csv=mapping), "flipped.nii.gz", "geometry differs"


def _case_csv_without_known_columns(root):
    _two_pngs(root)
    mapping = _write_csv(root.parent / "mapping.csv", [{"image": "a.png", "patient": "p1"}])
    return dict(source=root, mapping_csv=mapping), "mapping.csv", "expected a 'file' column"


def _case_volumes_without_csv(root):
    source, _ = _small_nifti(root)
    (source / "lesions.csv").unlink()
    return dict(source=source), str(source), "no mapping CSV"


def _case_bad_diameter(root):
    _two_pngs(root)
    mapping = _write_csv(root.parent / "mapping.csv", [
        {"file": "a.png", "patient_id": "p1", "diameter_mm": "-4"},
        {"file": "b.png", "patient_id": "p2", "diameter_mm": "12"},
    ])
    return dict(source=root, mapping_csv=mapping), "mapping.csv", "line 2: diameter_mm '-4'"


def _write_huge_png(path: Path, side: int = 40_000) -> Path:
    """A valid 1-bit greyscale PNG of side x side pixels (all black), about 1 MB.

    1.6e9 pixels exceed OpenCV's CV_IO_MAX_IMAGE_PIXELS (2^30), so imdecode
    raises cv2.error instead of decoding it.
    """
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    compressor = zlib.compressobj(1)
    rows = bytes((1 + (side + 7) // 8) * 1000)  # 1000 rows: filter byte + packed bits
    pixels = b"".join(compressor.compress(rows) for _ in range(side // 1000)) + compressor.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
                     + chunk(b"IEND", b""))
    return path


def _case_huge_png(root):
    _two_pngs(root)
    _write_huge_png(root / "cyst" / "huge.png")
    return dict(source=root), "huge.png", "refused before reading"


def _case_nul_in_mapping_csv(root):
    _two_pngs(root)
    mapping = root.parent / "mapping.csv"
    # A NUL would reach the HDF5 file as part of a patient id, which h5py refuses.
    mapping.write_bytes(b"file,patient_id\ncyst/a.png,p1\nmetastasis/b.png,p\x002\n")
    return dict(source=root, mapping_csv=mapping), "mapping.csv", "line 3 holds a NUL character"


BAD_CASES = {name[len("_case_"):]: fn for name, fn in dict(globals()).items()
             if name.startswith("_case_")}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_raises_one_clear_line(tmp_path, case):
    kwargs, offending, problem = BAD_CASES[case](tmp_path / "src")
    with pytest.raises(ImportSourceError) as caught:
        import_source(log=lambda _: None, **kwargs)
    message = _one_line(caught.value)
    assert offending in message
    assert problem in message


def test_huge_png_and_nul_csv_messages(tmp_path):
    """The two one-line messages, word for word."""
    huge = _write_huge_png(tmp_path / "huge.png")
    with pytest.raises(ImportSourceError) as caught:
        read_roi_image(huge)
    assert _one_line(caught.value) == (
        f"{huge}: declares 1600000000 pixels; an ROI or a CT slice is expected; refused "
        "before reading")

    kwargs, _, _ = _case_nul_in_mapping_csv(tmp_path / "src")
    with pytest.raises(ImportSourceError) as caught:
        import_source(log=lambda _: None, **kwargs)
    assert _one_line(caught.value) == (
        f"{kwargs['mapping_csv']}: line 3 holds a NUL character (\\x00); save the mapping CSV "
        "as UTF-8 text (was it saved as UTF-16?)")


@pytest.mark.parametrize("library_call, suffix", [
    ((np, "load"), ".npy"),
    ((nib, "load"), ".nii.gz"),
    ((pydicom, "dcmread"), ".dcm"),
    ((cv2, "imdecode"), ".png"),
])
@pytest.mark.parametrize("bug", [AttributeError, TypeError, KeyError])
def test_reader_bugs_stay_tracebacks(tmp_path, monkeypatch, library_call, suffix, bug):
    """Readers catch only their library's errors for damaged files; a bug is not
    reported as an unreadable file."""
    path = tmp_path / f"image{suffix}"
    path.write_bytes(b"\0" * 200)

    def broken(*args, **kwargs):
        raise bug("a bug, not a damaged file")

    monkeypatch.setattr(*library_call, broken)
    read = read_volume if suffix == ".nii.gz" else read_roi_image
    with pytest.raises(bug):
        read(path)
