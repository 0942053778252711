"""Image readers: one per file format, behind one small interface.

Each reader (:class:`~keras_lesions.data.readers.base.ImageReader`) knows one
format: ``raster`` (PNG/TIFF/JPEG via OpenCV), ``npy``, ``nifti`` (nibabel),
``dicom-image`` (one 2-D CT image) and ``dicom`` (a series folder or an
Enhanced multi-frame file, via pydicom). :func:`reader_for` picks the reader
for a path; :func:`read_roi_image`, :func:`read_volume` and :func:`read_mask`
compose them for the importers.

Readers return numpy and metadata (spacing, unit, geometry) and import no
TensorFlow. Images keep their units: Hounsfield units where the source has
them, otherwise [0, 1]; nothing is windowed or resampled. Problems with a
file raise :class:`~keras_lesions.errors.ImportSourceError` naming it.
"""
from keras_lesions.data.readers.base import ImageData, ImageReader, VolumeGeometry
from keras_lesions.data.readers.lookup import READERS, reader_for
from keras_lesions.data.readers.roi import NPY_UNITS, read_roi_image
from keras_lesions.data.readers.volume import read_mask, read_volume

__all__ = [
    "NPY_UNITS",
    "READERS",
    "ImageData",
    "ImageReader",
    "VolumeGeometry",
    "read_mask",
    "read_roi_image",
    "read_volume",
    "reader_for",
]
