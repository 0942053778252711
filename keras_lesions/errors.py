"""Errors that carry one clear, user-facing line.

Every problem with user input (a corrupt file, a wrong shape, an unknown class,
a bad config) is raised as a subclass of :class:`KerasLesionsError` whose
message names the file and the problem. The CLI prints that one line and exits
non-zero; library users can catch the base class.
"""
from __future__ import annotations

import os


class KerasLesionsError(Exception):
    """Base class of every user-facing error of keras-lesions.

    Args:
        problem: what is wrong, in one sentence.
        path: the file or folder the problem is in, if any; it is put first in
            the message so the line reads ``path: problem``.
    """

    def __init__(self, problem: str, path: str | os.PathLike | None = None):
        self.problem = problem
        self.path = None if path is None else os.fspath(path)
        super().__init__(problem if self.path is None else f"{self.path}: {problem}")


class DatasetError(KerasLesionsError):
    """A lesion dataset file is missing, corrupt, or breaks the format."""


class ImportSourceError(KerasLesionsError):
    """An importer's source (images, volumes, masks, mapping CSV) is unusable."""


class FoldError(KerasLesionsError):
    """A fold assignment cannot be made or would leak patients between folds."""


class MixtureError(KerasLesionsError):
    """A bad request for mixtures of specified factors (α, sizes, classes)."""
