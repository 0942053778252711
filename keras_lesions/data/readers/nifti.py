"""NIfTI-1/2 volumes (``.nii``, ``.nii.gz``) through nibabel."""
from __future__ import annotations

import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from keras_lesions.data.readers.base import (
    ImageData,
    ImageReader,
    VolumeGeometry,
    check_declared_shape,
    exception_line,
)
from keras_lesions.errors import ImportSourceError

NIFTI_SUFFIXES = (".nii.gz", ".nii")

# What nibabel raises on a damaged file, while loading the header or (lazily)
# the data: ImageFileError (not an image format it knows), HeaderDataError
# (header values it refuses, e.g. an unknown data type code), OSError (short
# data: "could the file be damaged?"; gzip.BadGzipFile; missing file),
# EOFError and zlib.error (truncated or corrupt gzip stream), OverflowError
# (numpy's memmap, when header dims and offset give an impossible length).
_NIFTI_ERRORS = (ImageFileError, HeaderDataError, OSError, EOFError, zlib.error, OverflowError)


class NiftiReader(ImageReader):
    """NIfTI volumes as (slices, rows, cols).

    The data array (i, j, k) becomes ``volume[k, j, i]``: slices along k, rows
    along j, columns along i (the file's own memory order, i fastest).
    ``scl_slope``/``scl_inter`` are applied as nibabel applies them. A 2-D
    image is one slice; trailing singleton axes beyond the third are dropped.
    """

    name = "nifti"

    def verify_suffix(self, path: Path) -> bool:
        # A folder is a DICOM series whatever its name.
        return path.name.lower().endswith(NIFTI_SUFFIXES) and not path.is_dir()

    def read(self, path: Path) -> nib.Nifti1Image | nib.Nifti2Image:
        """The nibabel image (header read, data not yet).

        Raises:
            ImportSourceError: unreadable or damaged file, or another format
                nibabel knows (e.g. Analyze).
        """
        try:
            image = nib.load(path)
        except _NIFTI_ERRORS as exc:
            raise ImportSourceError(f"unreadable NIfTI ({exception_line(exc, path)})",
                                    path) from None
        if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
            raise ImportSourceError(f"is a {type(image).__name__}, expected NIfTI", path)
        return image

    def get_data(self, image: nib.Nifti1Image | nib.Nifti2Image, path: Path, *,
                 rescale: bool = True) -> ImageData:
        """(slices, rows, cols) volume, spacing and geometry.

        Args:
            image: what :meth:`read` returned.
            path: the file, named in errors.
            rescale: True: float32 through ``get_fdata`` (scaled; unit "HU",
                since CT volumes are stored in HU); False: the stored values
                (label masks), unit None.

        Returns:
            ImageData with (slice, row, col) spacing in mm from the header
            zooms and a :class:`VolumeGeometry` of kind "nifti".

        Raises:
            ImportSourceError: damaged data, or not one 3-D volume.
        """
        check_declared_shape(image.shape, path, "volume")
        try:
            # get_fdata/dataobj apply scl_slope and scl_inter the way nibabel does.
            data = image.get_fdata(dtype=np.float32) if rescale else np.asanyarray(image.dataobj)
        except _NIFTI_ERRORS as exc:
            raise ImportSourceError(f"unreadable NIfTI ({exception_line(exc, path)})",
                                    path) from None
        # Zooms are float32 in the header; rounding to a micrometre drops the
        # float32 noise (0.800000011920929) without losing real precision.
        zooms = [round(float(z), 6) for z in image.header.get_zooms()[:3]]
        while data.ndim > 3 and data.shape[-1] == 1:
            data = data[..., 0]
        if data.ndim == 2:
            data = data[..., None]
        if data.ndim != 3:
            raise ImportSourceError(f"is {data.ndim}-D {data.shape}; expected one 3-D volume",
                                    path)
        zooms += [1.0] * (3 - len(zooms))
        affine = np.asarray(image.affine, np.float64)[:, [2, 1, 0, 3]]
        return ImageData(np.ascontiguousarray(data.transpose(2, 1, 0)),
                         "HU" if rescale else None, (zooms[2], zooms[1], zooms[0]),
                         VolumeGeometry("nifti", affine, {}))
