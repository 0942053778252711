"""Options both importers share: margins, input size, ``.npy`` unit, class order."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from keras_lesions.data.readers import NPY_UNITS
from keras_lesions.data.registry import CLASS_NAMES, canonical_class_name
from keras_lesions.errors import KerasLesionsError


def check_options(roi_margin: float, context_margin: float, input_size: int,
                  npy_unit: str) -> None:
    """Refuse invalid importer options.

    Raises:
        KerasLesionsError: a negative or non-finite ``roi_margin``, a
            ``context_margin`` below it, ``input_size`` < 2, or an unknown
            ``npy_unit``.
    """
    if not (np.isfinite(roi_margin) and roi_margin >= 0):
        raise KerasLesionsError(f"roi_margin must be >= 0, got {roi_margin}")
    if not (np.isfinite(context_margin) and context_margin >= roi_margin):
        raise KerasLesionsError(f"context_margin ({context_margin}) must be >= roi_margin "
                                f"({roi_margin})")
    if int(input_size) < 2:
        raise KerasLesionsError(f"input_size must be at least 2 pixels, got {input_size}")
    if npy_unit not in NPY_UNITS:
        raise KerasLesionsError(f"npy_unit must be one of {NPY_UNITS}, got {npy_unit!r}")


def class_order(found: Iterable[str], classes: Sequence[str] | None) -> list[str]:
    """Dataset class order: ``classes`` if given, else canonical then alphabetical.

    Args:
        found: the class names present in the source.
        classes: the caller's classes, in their order, canonical spellings
            applied ("Cysts" -> "cyst"); None for all of ``found``.

    Raises:
        KerasLesionsError: ``classes`` repeats a class or has an empty name.
    """
    if classes is not None:
        wanted = [canonical_class_name(c) or c.strip() for c in classes]
        if len(set(wanted)) != len(wanted) or not all(wanted):
            raise KerasLesionsError(
                f"classes must be distinct, non-empty names, got {list(classes)}")
        return wanted
    found = set(found)
    return ([c for c in CLASS_NAMES if c in found]
            + sorted((c for c in found if c not in CLASS_NAMES), key=lambda c: (c.lower(), c)))
