"""Shared file helpers: atomic writes of files, JSON, text and figures.

Everything the library writes goes through :func:`atomic_path`: a temporary
file beside the target, renamed over it only once complete, so a crash or a
kill never leaves a half-written file under the real name.

A temporary file is named ``.TARGET.<host>-<pid>-<random>.tmp<suffix>`` (host:
a short hash of the host name, since a folder may be shared by the nodes of a
cluster). An exception (Ctrl-C, or SIGTERM, which the ``kl`` command turns
into one) removes it; a SIGKILL cannot be caught, so the next write of the
same target, and the start of a run in a folder (``sweep_stale_temporaries``),
remove the temporaries of this host's processes that no longer exist. Outputs
get the modes the user's umask gives (``mkstemp`` alone would make them 0600).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

_TEMPORARY = re.compile(
    r"^\.(?P<target>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[^.]+\.tmp[^/]*$")
HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` would, for a
    moment, for every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def process_alive(pid: int, host: str = HOST) -> bool:
    """Whether process ``pid`` of ``host`` (``HOST`` or a host name) still
    runs; a process of another host is taken as alive (it cannot be asked)."""
    if host not in (HOST, socket.gethostname()):
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def temporary_name(target: str, tag: str = "") -> str:
    """A name beside ``target`` that :func:`sweep_stale_temporaries` knows as
    this process's (a random part is added by ``mkstemp``; ``tag`` replaces
    it for a fixed name)."""
    return f".{target}.{HOST}-{os.getpid()}-{tag}"


def temporary_target(path: str | os.PathLike) -> Path | None:
    """The file a temporary of :func:`atomic_path` stands for; None for any
    other file."""
    path = Path(path)
    found = _TEMPORARY.match(path.name)
    return path.parent / found["target"] if found else None


def sweep_stale_temporaries(folder: str | os.PathLike, target: str | None = None) -> list[Path]:
    """Remove the temporaries in ``folder`` (of ``target`` only, if given)
    whose writing process no longer exists: what a SIGKILL left behind.

    Returns:
        The removed paths.
    """
    folder = Path(folder)
    pattern = f".{target}.*.tmp*" if target else ".*.tmp*"
    removed = []
    try:
        candidates = list(folder.glob(pattern))
    except OSError:
        return removed
    for path in candidates:
        found = _TEMPORARY.match(path.name)
        if found and (target is None or found["target"] == target) \
                and not process_alive(int(found["pid"]), found["host"]):
            try:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(path)
            except OSError:
                pass
    return removed


@contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "",
                exclusive: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success.

    With ``exclusive``, ``target`` is only created, never replaced: if another
    process made it meanwhile, the temporary is removed and FileExistsError
    raised (two processes generating the same file keep the first one's).
    On any exception the temporary file is removed and ``target`` is untouched.
    An ``OSError`` about the temporary file (a read-only folder, a full disk)
    is raised naming ``target``, the file the user asked for.
    """
    target = Path(target)
    if target.exists() and not (target.is_file() or target.is_dir()):
        raise OSError(errno.EINVAL, "is not a regular file (a device, pipe or socket); "
                      "refusing to replace it", str(target))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocking = next(p for p in reversed(target.parents) if p.exists() and not p.is_dir())
        raise NotADirectoryError(errno.ENOTDIR, f"cannot be written: {blocking} is a file, "
                                 "not a folder", str(target)) from None
    except OSError as exc:
        raise _about(exc, target) from None
    try:
        sweep_stale_temporaries(target.parent, target.name)
        fd, tmp_name = tempfile.mkstemp(prefix=temporary_name(target.name),
                                        suffix=f".tmp{suffix}", dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise _about(exc, target) from None
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        yield tmp
        if exclusive:
            _create_from(tmp, target)
        else:
            os.replace(tmp, target)
    except FileExistsError:
        tmp.unlink(missing_ok=True)
        raise
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename in (str(tmp), tmp):
            raise _about(exc, target) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_from(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target`` only if ``target`` does not exist.

    A hard link fails on an existing target, atomically, where a rename would
    replace it; filesystems without hard links get a check-then-rename."""
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
            raise
        if target.exists():
            raise FileExistsError(errno.EEXIST, "exists", str(target)) from None
        os.replace(tmp, target)
        return
    tmp.unlink()


def _about(exc: OSError, target: Path) -> OSError:
    """``exc`` re-addressed to ``target``."""
    code = exc.errno if exc.errno is not None else errno.EIO
    return type(exc)(code, exc.strerror or os.strerror(code), str(target))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically."""
    with atomic_path(path, suffix=Path(path).suffix) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write JSON atomically (sorted keys, numpy scalars and arrays as plain values)."""
    return write_text(path, json.dumps(payload, indent=2, sort_keys=True,
                                       default=_json_default))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def save_figure(figure, path: str | os.PathLike, dpi: int = 110) -> None:
    """Lay out a matplotlib Figure and write it as PNG, atomically."""
    figure.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=dpi, format="png")
