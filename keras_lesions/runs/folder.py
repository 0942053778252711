"""The run folder: what one training produced, and the rules every trainer shares.

A run folder holds everything one training made and is enough to resume,
evaluate and export it::

    RUN/run.json        written when the run starts: its kind, what it trains on,
                        and "settings", everything that changes its result
    RUN/config.yaml     the resolved experiment config
    RUN/checkpoint/     the per-epoch training state (``runs.checkpoint``),
                        removed once the run is done
    RUN/history.csv     one row per finished epoch
    RUN/*.keras         the trained networks, each written atomically
    RUN/predictions.npz test-fold predictions (classifier runs)
    RUN/done.json       written last: the run is complete and never trained again

The rules: a finished run is never trained again; an unfinished one is only
continued when asked (``resume``), and only with the very settings it was
started with, or two trainings would be mixed in one folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import numpy as np

from keras_lesions.errors import KerasLesionsError
from keras_lesions.io import (
    process_alive, sweep_stale_temporaries, temporary_name, temporary_target, write_json)

RUN_INFO = "run.json"
DONE = "done.json"
CHECKPOINT = "checkpoint"
TRAINING = ".training.json"  # the process training in the folder (pid, host)
# What to do about a damaged run folder. A finished run is never discarded by
# --restart (its done.json is the record of the work); delete it by hand.
RESTART_HINT = ("pass --restart (kl experiment: --restart --only <run id>) to train this run "
                "again from the start")


class RunError(KerasLesionsError):
    """A run folder is missing, damaged, of the wrong kind, or in the way."""


def is_done(run_dir: str | os.PathLike) -> bool:
    """Whether the run finished (``done.json`` is written last)."""
    return (Path(run_dir) / DONE).is_file()


def is_started(run_dir: str | os.PathLike) -> bool:
    """Whether a run was started in the folder (its ``run.json`` exists)."""
    return (Path(run_dir) / RUN_INFO).exists()


def read_json_record(path: str | os.PathLike, where: str | os.PathLike | None = None) -> dict:
    """A JSON object the library wrote (a choice, a report's result), read with
    one clear error if it is damaged.

    Raises:
        RunError: the file cannot be read or is not a JSON object.
    """
    path = Path(path)
    return _read_json_object(path, Path(where) if where is not None else path.parent, path.name)


def _read_json_object(path: Path, run_dir: Path, what: str) -> dict:
    # A finished run's record is never discarded by --restart; other records
    # (choices, reports) are remade by the step that wrote them.
    hint = (RESTART_HINT if what == RUN_INFO else "delete the run folder to train it again"
            if what == DONE else "delete it and run the command again to make it anew")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{what} cannot be read ({type(exc).__name__}); {hint}",
                       run_dir) from None
    if not isinstance(payload, dict):
        raise RunError(f"{what} is not a JSON object; {hint}", run_dir)
    return payload


def read_run_info(run_dir: str | os.PathLike, kind: str | tuple[str, ...] | None = None) -> dict:
    """The ``run.json`` of a run folder, optionally of a required kind.

    Raises:
        RunError: no such folder, no run.json, one that cannot be read, or a
            run of another kind than ``kind``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError("no such run folder", run_dir)
    if not is_started(run_dir):
        raise RunError("holds no run.json: not a run folder", run_dir)
    info = _read_json_object(run_dir / RUN_INFO, run_dir, RUN_INFO)
    if kind is not None:
        kinds = (kind,) if isinstance(kind, str) else tuple(kind)
        if info.get("kind") not in kinds:
            raise RunError(f"is a {info.get('kind')!r} run, not a {' or '.join(kinds)} run",
                           run_dir)
    return info


def read_done(run_dir: str | os.PathLike) -> dict:
    """The ``done.json`` of a finished run.

    Raises:
        RunError: the run is not finished, or its done.json is damaged.
    """
    run_dir = Path(run_dir)
    if not is_done(run_dir):
        raise RunError("holds no finished run (no done.json)", run_dir)
    return _read_json_object(run_dir / DONE, run_dir, DONE)


def first_difference(old: Any, new: Any, prefix: str = "") -> str | None:
    """The first setting that differs between two nested JSON-like values, as
    ``"key.sub was OLD, now NEW"``; None when they are equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        old, new = list(old), list(new)
    return None if old == new else f"{prefix.rstrip('.') or 'value'} was {old!r}, now {new!r}"


def _jsonable(value: Any) -> Any:
    """Settings as they read back from run.json (tuples as lists, numpy as Python)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if isinstance(v, np.generic)
                                 else v.tolist() if isinstance(v, np.ndarray) else str(v)))


IDENTITY = ("repeat", "fold", "group", "class")  # what names a run within an experiment


def identity(info: dict | None) -> dict:
    """The facts of ``info`` that say which run it is (fold, group, class):
    part of a run's settings, so resuming it as another fold is refused."""
    return {key: info[key] for key in IDENTITY if key in (info or {})}


def start_run(run_dir: str | os.PathLike, *, kind: str, settings: dict, info: dict | None = None,
              config=None, resume: bool = False) -> bool:
    """Claim a run folder for a training and record what it is.

    A new run gets ``run.json`` (``kind``, ``settings``, and the facts in
    ``info``); a resumed one must have been started with the same kind and
    the same ``settings``, compared key by key. While it trains, the folder
    names its process (``.training.json``), so that no second process trains
    into it and ``--restart`` does not discard it.

    Args:
        run_dir: the run folder (made if missing).
        kind: what is trained ("lesion_classifier", "dcgan", "disentangle" ...).
        settings: everything that changes the run's result (hyper-parameters,
            seed, the identity of its training data); JSON-able.
        info: other facts for run.json (fold, class names, dataset ...).
        config: the resolved ``ExperimentConfig``, saved as config.yaml.
        resume: continue an unfinished run. Without it, a folder holding a
            started run is refused.

    Returns:
        Whether an unfinished run is being resumed.

    Raises:
        RunError: a finished run (never trained again); one being trained by
            a live process; an unfinished one without ``resume``; a
            checkpoint without run.json; or one of another kind or other
            settings, naming the first setting that differs.
    """
    run_dir = Path(run_dir)
    started = check_start(run_dir, kind=kind, settings=settings, resume=resume)
    settings = _jsonable(settings)
    run_dir.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(run_dir)  # what a killed attempt left
    sweep_stale_temporaries(run_dir.parent, run_dir.name)  # a --restart cut short
    write_json(run_dir / TRAINING, {"pid": os.getpid(), "host": socket.gethostname()})
    if config is not None:
        from keras_lesions.config import save_config

        save_config(config, run_dir / "config.yaml")
    if not started:
        from keras_lesions.runtime import environment

        write_json(run_dir / RUN_INFO, {**(info or {}), "kind": kind, "settings": settings,
                                        "environment": environment()})
    return started


def check_start(run_dir: str | os.PathLike, *, kind: str, settings: dict,
                resume: bool = False) -> bool:
    """What :func:`start_run` refuses, checked without writing anything: a
    trainer calls it before it builds its networks, so that a refusal comes
    first and fast.

    Returns:
        Whether the folder holds a started run (to be resumed).

    Raises:
        RunError: as :func:`start_run`.
    """
    run_dir = Path(run_dir)
    if is_done(run_dir):
        raise RunError("holds a finished run; it is never trained again (use a new folder)",
                       run_dir)
    check_run_folder(run_dir, resume=resume)
    started = is_started(run_dir)
    if started:
        previous = read_run_info(run_dir)
        if previous.get("kind") != kind:
            raise RunError(f"holds a {previous.get('kind')!r} run; cannot resume it as "
                           f"{kind!r}", run_dir)
        difference = _settings_difference(previous.get("settings") or {}, _jsonable(settings))
        if difference:
            raise RunError(_other_settings(difference), run_dir)
    return started


def _settings_difference(previous: dict, settings: dict, keys=None) -> str | None:
    """The first setting (of ``keys`` only, if given) that differs between a
    run's recorded ``previous`` settings and ``settings``. A run's identity
    (fold, group, class) is compared only where it was recorded: runs started
    before it was part of the settings are resumed, not refused as if their
    fold had changed."""
    keys = sorted(set(previous) | set(settings)) if keys is None else list(keys)
    for key in keys:
        if key in IDENTITY and key not in previous:
            continue
        difference = first_difference(previous.get(key), settings.get(key), f"{key}.")
        if difference:
            return difference
    return None


def _trainer(run_dir: Path) -> str | None:
    """The live process of this host training in ``run_dir`` (as "process P on
    HOST"), other than this one; None if none."""
    marker = run_dir / TRAINING
    try:
        payload = json.loads(marker.read_text(encoding="utf-8"))
        pid, host = int(payload["pid"]), str(payload["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no marker, or one a kill cut short: nobody to wait for
    if host != socket.gethostname() or pid == os.getpid():
        # Another host's process cannot be asked; a retry of a run whose node
        # died (Ray) must not wait for it forever.
        return None
    return f"process {pid} on {host}" if process_alive(pid, host) else None


def _discard_problem(run_dir: Path) -> str | None:
    """Why ``--restart`` must not remove ``run_dir``; None when it may."""
    if run_dir.is_symlink():
        return "is a symbolic link; --restart only clears real run folders"
    cwd = Path.cwd().resolve()
    if cwd == run_dir.resolve() or run_dir.resolve() in cwd.parents:
        return "is (or holds) the current folder; run --restart from outside it"
    if not run_dir.is_dir():
        return "is not a folder"
    if not (is_started(run_dir) or (run_dir / CHECKPOINT).is_dir()):
        return None if not any(run_dir.iterdir()) else \
            "holds files but no run (no run.json); --restart only clears run folders"
    foreign = sorted(p.name for p in run_dir.iterdir() if not _is_run_entry(p))
    if foreign:
        return (f"holds {foreign[0]!r}, which no training writes; --restart only clears run "
                "folders (delete the folder yourself if it is one)")
    trainer = _trainer(run_dir)
    if trainer:
        return f"is being trained by {trainer}; stop it before --restart"
    return None


# What trainings write into a run folder; --restart removes nothing else.
_RUN_ENTRIES = {RUN_INFO, DONE, "config.yaml", "history.csv", "predictions.npz", "best.json",
                CHECKPOINT, "tensorboard", "samples", "step1", TRAINING}


def _is_run_entry(path: Path) -> bool:
    name = path.name
    return (name in _RUN_ENTRIES or name.endswith(".keras")
            or (name.startswith("best-epoch") and name.endswith(".weights.h5"))
            or temporary_target(path) is not None)


def check_run_folder(run_dir: str | os.PathLike, *, resume: bool = False,
                     restart: bool = False, settings: dict | None = None) -> None:
    """What ``start_run`` (or ``discard_unfinished``) would refuse about a
    folder, checked before a command writes anything: with ``restart``, a
    folder it must not remove; else a run being trained by a live process,
    an unfinished run without ``resume``, a checkpoint without run.json, a
    damaged run.json, or a run started with other ``settings`` (those known
    before the training data are loaded; ``start_run`` compares them all).
    A finished run passes (commands report it).

    Raises:
        RunError: naming the folder and the problem.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists() or is_done(run_dir):
        return
    if restart:
        problem = _discard_problem(run_dir)
        if problem:
            raise RunError(problem, run_dir)
        return
    if not run_dir.is_dir():
        raise RunError("is not a folder", run_dir)
    trainer = _trainer(run_dir)
    if trainer:
        raise RunError(f"is being trained by {trainer}; wait for it, or stop it", run_dir)
    if not is_started(run_dir) and (run_dir / CHECKPOINT).exists():
        # run.json is written before the first checkpoint: training state without
        # it is damage, never a run to restore into a new one (nor to delete).
        raise RunError(f"holds a checkpoint but no {RUN_INFO}, so it cannot be resumed; "
                       f"{RESTART_HINT}", run_dir)
    if is_started(run_dir):
        if not resume:
            raise RunError("holds an unfinished run: pass --resume to continue it, or choose "
                           "another folder", run_dir)
        previous = read_run_info(run_dir).get("settings") or {}
        settings = _jsonable(settings or {})
        difference = _settings_difference(previous, settings, keys=settings)
        if difference:
            raise RunError(_other_settings(difference), run_dir)


def _other_settings(difference: str) -> str:
    return (f"was started with other settings ({difference}); resuming would mix two "
            "trainings: resume with the settings it was started with, or use a new folder")


def discard_unfinished(run_dir: str | os.PathLike) -> bool:
    """``--restart``: remove an unfinished (or damaged) run's folder so that it
    trains again from the start. The folder is renamed away first (to a name
    ``start_run`` sweeps if this removal is cut short), so a crash leaves
    either the whole old run or none of it.

    Returns:
        Whether a run was discarded (False: no run there).

    Raises:
        RunError: a finished run (never discarded), a run a live process
            trains, or a folder holding anything a training does not write.
    """
    run_dir = Path(run_dir).absolute()
    if not run_dir.exists() and not run_dir.is_symlink():
        return False
    if is_done(run_dir):
        raise RunError("holds a finished run; --restart never discards finished work "
                       "(delete the folder yourself to train it again)", run_dir)
    problem = _discard_problem(run_dir)
    if problem:
        raise RunError(problem, run_dir)
    if not (is_started(run_dir) or (run_dir / CHECKPOINT).is_dir()):
        return False
    doomed = run_dir.with_name(temporary_name(run_dir.name, "discarded.tmp"))
    os.replace(run_dir, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
    return True


def discard_for_restart(run_dirs, log) -> list[Path]:
    """``--restart`` for several runs: discard each unfinished one (each
    already checked with ``check_run_folder(restart=True)``), saying so.

    Returns:
        The run folders discarded.
    """
    discarded = []
    for run_dir in map(Path, run_dirs):
        if not is_done(run_dir) and discard_unfinished(run_dir):
            log(f"{run_dir}: discarded its unfinished training (--restart)")
            discarded.append(run_dir)
    return discarded


def finish_run(run_dir: str | os.PathLike, record: dict) -> None:
    """Mark the run finished (``done.json``), then drop its checkpoint.

    In this order: a crash before the marker leaves the checkpoint, so a
    resume restores the final epoch and finishes again without training; a
    crash after it leaves a finished run whose checkpoint is mere litter,
    removed by :func:`tidy_finished`.
    """
    run_dir = Path(run_dir)
    write_json(run_dir / DONE, record)
    tidy_finished(run_dir)


def tidy_finished(run_dir: str | os.PathLike) -> None:
    """Remove what a finished run no longer needs (its checkpoint, its training
    marker, temporaries of killed writers). Only training commands call it:
    reading a run never changes it."""
    run_dir = Path(run_dir)
    if is_done(run_dir):
        shutil.rmtree(run_dir / CHECKPOINT, ignore_errors=True)
        (run_dir / TRAINING).unlink(missing_ok=True)
        sweep_stale_temporaries(run_dir)


def data_fingerprint(*arrays: np.ndarray) -> str:
    """A short hash of training arrays (shapes, dtypes and bytes): two runs with
    the same fingerprint trained on the same numbers."""
    digest = hashlib.sha1()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()[:16]
