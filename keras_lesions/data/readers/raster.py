"""PNG, TIFF and JPEG images through OpenCV, as greyscale values in [0, 1]."""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from keras_lesions.data.readers.base import (
    ImageData,
    ImageReader,
    check_declared_shape,
    check_finite,
    exception_line,
)
from keras_lesions.errors import ImportSourceError

# Raster formats by suffix; the format name appears in error messages.
RASTER_SUFFIXES = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".jpg": "jpeg",
                   ".jpeg": "jpeg"}


class RasterReader(ImageReader):
    """8/16-bit (or float [0, 1]) greyscale PNG, TIFF and JPEG files.

    8-bit values are divided by 255 and 16-bit values by 65535, giving
    ``"normalized"`` [0, 1]; float TIFFs must already lie in [0, 1]. Colour
    files whose channels are all equal (grey saved as RGB) are accepted; a
    uniform (e.g. fully opaque) alpha channel is dropped. No spacing (NaN).
    """

    name = "raster"

    def verify_suffix(self, path: Path) -> bool:
        return path.suffix.lower() in RASTER_SUFFIXES

    def read(self, path: Path) -> np.ndarray:
        """The decoded pixels as OpenCV stores them ((h, w) or (h, w, channels)).

        Raises:
            ImportSourceError: unreadable or corrupt file, too many pixels for
                OpenCV, or a multi-page TIFF.
        """
        kind = RASTER_SUFFIXES[path.suffix.lower()]
        check_declared_shape(_declared_size(path), path)
        try:
            buffer = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:
            raise ImportSourceError(f"cannot read file ({exception_line(exc, path)})",
                                    path) from None
        image = _decode(cv2.imdecode, buffer, path, kind) if buffer.size else None
        if image is None:
            raise ImportSourceError(f"unreadable or corrupt {kind.upper()} image", path)
        if kind == "tiff":
            ok, pages = _decode(cv2.imdecodemulti, buffer, path, kind)
            if ok and len(pages) > 1:
                raise ImportSourceError(
                    f"is a 3-D image ({len(pages)} TIFF pages) where a 2-D ROI is expected",
                    path)
        return image

    def get_data(self, image: np.ndarray, path: Path, *, rescale: bool = True) -> ImageData:
        """float32 (h, w) in [0, 1], unit "normalized" (``rescale`` is ignored).

        Raises:
            ImportSourceError: colour or transparent pixels, float values
                outside [0, 1] or not finite, or a pixel type other than 8/16-bit
                unsigned or float.
        """
        if image.ndim == 3:
            image = _grey_from_channels(image, path)
        return ImageData(_normalized(image, path), "normalized", (float("nan"), float("nan")))


def _declared_size(path: Path) -> tuple[int, int]:
    """(rows, cols) as the file's header declares them, read without decoding.

    Pillow (matplotlib's own image library) reads headers lazily; OpenCV can
    only decode, allocating first. A header Pillow cannot parse is left to
    OpenCV's decoder to judge (it reads formats Pillow does not).
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                cols, rows = image.size
    except Image.DecompressionBombError as exc:  # Pillow's own limit (179 M pixels)
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        raise ImportSourceError(
            f"declares {pixels[1] if pixels else 'too many'} pixels; an ROI or a CT slice is "
            "expected; refused before reading", path) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return (1, 1)
    return rows, cols


def _decode(decoder, buffer: np.ndarray, path: Path, kind: str):
    """``decoder(buffer, IMREAD_UNCHANGED)`` (cv2.imdecode or imdecodemulti), its
    cv2.error turned into one line naming the file.

    OpenCV returns None (or False) for most damaged files but raises cv2.error
    when a header declares more pixels than its limits allow
    (CV_IO_MAX_IMAGE_PIXELS, _WIDTH, _HEIGHT) or an internal check fails.
    """
    try:
        return decoder(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        if "CV_IO_MAX_IMAGE" in str(exc):
            raise ImportSourceError(
                "image is too large to decode: it has more pixels than OpenCV allows "
                "(CV_IO_MAX_IMAGE_PIXELS, 2^30 by default); expected an ROI cropped "
                "around one lesion", path) from None
        raise ImportSourceError(f"unreadable or corrupt {kind.upper()} image "
                                f"({exception_line(exc, path)})", path) from None


def _normalized(image: np.ndarray, path: Path) -> np.ndarray:
    """Greyscale pixels as float32 in [0, 1]."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535.0
    if image.dtype.kind == "f":
        image = image.astype(np.float32)
        check_finite(image, path)
        if image.min() < 0 or image.max() > 1:
            raise ImportSourceError(
                f"floating-point values span [{image.min():g}, {image.max():g}], outside [0, 1]; "
                "store Hounsfield units as .npy (npy_unit 'HU') or DICOM", path)
        return image
    raise ImportSourceError(
        f"has {image.dtype} pixels; expected 8- or 16-bit unsigned (store Hounsfield units as "
        ".npy or DICOM)", path)


def _grey_from_channels(image: np.ndarray, path: Path) -> np.ndarray:
    """One channel of an (h, w, channels) image whose colour channels are equal."""
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
