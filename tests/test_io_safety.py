"""Atomic writes: modes from the umask, temporaries that name their target,
leftovers of killed writers swept, SIGTERM undoing a write in progress."""
from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keras_lesions.io import (
    HOST, atomic_path, sweep_stale_temporaries, temporary_target, write_text)


def test_outputs_get_the_modes_of_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        write_text(tmp_path / "a.txt", "x")
        with atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"y")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o640


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_writers_temporary_is_swept_by_the_next_write(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".data.h5.{HOST}-{dead}-abcd1234.tmp"
    stale.write_bytes(b"half")
    alive = tmp_path / f".data.h5.{HOST}-{os.getppid()}-efgh5678.tmp"  # a live writer: kept
    alive.write_bytes(b"busy")
    elsewhere = tmp_path / f".data.h5.0badc0de-{dead}-mnop3456.tmp"  # another host's: kept
    elsewhere.write_bytes(b"busy")
    other = tmp_path / f".other.h5.{HOST}-{dead}-ijkl9012.tmp"
    other.write_bytes(b"half")
    assert temporary_target(stale) == tmp_path / "data.h5"
    assert temporary_target(tmp_path / "data.h5") is None

    write_text(tmp_path / "data.h5", "complete")
    assert not stale.exists() and alive.exists() and elsewhere.exists() and other.exists()
    assert sweep_stale_temporaries(tmp_path) == [other]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, elsewhere.name,
                                                                  "data.h5"])


def test_an_error_inside_names_the_target_not_the_temporary(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OSError) as caught:
        write_text(tmp_path / "file" / "out.json", "{}")
    assert caught.value.filename == str(tmp_path / "file" / "out.json")
    with pytest.raises(OSError) as caught, atomic_path(tmp_path / "x.bin") as tmp:
        raise OSError(28, "No space left on device", str(tmp))
    assert caught.value.filename == str(tmp_path / "x.bin")
    assert list(tmp_path.iterdir()) == [tmp_path / "file"]


def test_an_exclusive_write_never_replaces_a_file_made_meanwhile(tmp_path):
    """Two commands generating the experiment's phantoms at once (a run and a
    `--list` beside it): the second must not replace what the first's runs
    already read, and must leave no temporary."""
    target = tmp_path / "dataset.h5"
    with pytest.raises(FileExistsError), atomic_path(target, exclusive=True) as tmp:
        tmp.write_bytes(b"second")
        target.write_bytes(b"first")  # the other command finished first
    assert target.read_bytes() == b"first"
    assert list(tmp_path.iterdir()) == [target]
    with atomic_path(tmp_path / "new.h5", exclusive=True) as tmp:
        tmp.write_bytes(b"only")
    assert (tmp_path / "new.h5").read_bytes() == b"only"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset.h5", "new.h5"]


@pytest.mark.slow
def test_sigterm_during_a_dataset_write_leaves_nothing(tmp_path):
    """``kl data phantoms`` terminated while its HDF5 file is being written:
    one line, exit 143, neither the file nor its temporary left."""
    out = tmp_path / "p.h5"
    kl = Path(sys.executable).with_name("kl")
    process = subprocess.Popen([str(kl), "data", "phantoms", str(out)], stderr=subprocess.PIPE,
                               text=True)
    seen = None
    while process.poll() is None:
        if glob.glob(str(tmp_path / ".p.h5.*")):  # the write has begun
            seen = time.monotonic()
            process.send_signal(signal.SIGTERM)
            break
        time.sleep(0.002)
    stderr = process.communicate(timeout=120)[1]
    assert seen is not None, "the write was never seen"
    assert process.returncode == 143, stderr
    assert stderr.strip().splitlines() == [
        "kl: error: terminated (SIGTERM); nothing half-written was left behind"]
    assert list(tmp_path.iterdir()) == []
