"""NumPy ``.npy`` arrays, loaded without pickle and returned as stored."""
from __future__ import annotations

import tokenize
from pathlib import Path

import numpy as np

from keras_lesions.data.readers.base import ImageData, ImageReader, exception_line
from keras_lesions.errors import ImportSourceError

# What np.load raises on a damaged file: OSError (unreadable), EOFError (empty
# file), ValueError (bad magic, header or dtype, truncated data, pickled or
# object arrays refused by allow_pickle=False; all documented by np.load).
# tokenize.TokenError: numpy (2.x) parses the header's dict with the tokenize
# module and lets its error through when the header text is cut short.
_NPY_ERRORS = (OSError, EOFError, ValueError, tokenize.TokenError)


class NpyReader(ImageReader):
    """``.npy`` files (``allow_pickle=False``), any shape and dtype.

    The unit and axis order are the caller's to state (the format carries
    neither): :meth:`get_data` returns ``unit=None`` and NaN spacing.
    """

    name = "npy"

    def verify_suffix(self, path: Path) -> bool:
        return path.name.lower().endswith(".npy")

    def read(self, path: Path) -> np.ndarray:
        """The array as stored.

        Raises:
            ImportSourceError: unreadable or damaged file, or not a single
                array (e.g. an ``.npz`` archive).
        """
        try:
            array = np.load(path, allow_pickle=False)
        except _NPY_ERRORS as exc:
            raise ImportSourceError(f"unreadable .npy file ({exception_line(exc, path)})",
                                    path) from None
        if not isinstance(array, np.ndarray):
            if hasattr(array, "close"):
                array.close()  # an .npz archive keeps its file open
            raise ImportSourceError("is not a single .npy array", path)
        return array

    def get_data(self, image: np.ndarray, path: Path, *, rescale: bool = True) -> ImageData:
        """The array unchanged, ``unit=None``, NaN spacing (``rescale`` is ignored)."""
        return ImageData(image, None, (float("nan"),) * image.ndim)
