"""Bad input, as an adversarial user gives it, against the ``kl`` command.

Every case must end with exit code ≠ 0, exactly one stderr line
``kl: error: ...`` naming the file (or option) and the problem, no traceback,
and the working folder as it was: nothing half-written, nothing lost (a run
folder that was handed in keeps every file, byte for byte).

Cases run in-process (click's runner) so that the suite stays cheap; the
quiet start-up of a real process is checked once, in a subprocess.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from conftest import make_toy_dataset
from keras_lesions.data.dataset import write_dataset
from keras_lesions.data.folds import make_patient_folds
from keras_lesions_cli.main import cli

# The tiny experiment every run-folder case uses: 16×16 inputs, a 2-epoch CNN.
TINY = {"name": "tiny", "kind": "classic-curve",
        "augment": {"n_rot": 2, "n_flip": 1, "n_trans": 1, "n_scale": 1,
                    "group_sizes": [0, 12]},
        "classifier": {"input_size": 16, "filters": [2, 4, 4], "dense_units": 8},
        "train": {"epochs": 2, "batch_size": 8, "learning_rate": 0.05},
        "evaluate": {"folds": [0, 1, 2]}}


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file and folder under ``root`` with its bytes (None for folders,
    "special" for pipes and devices, which are never read)."""
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() and not p.is_symlink()
                                       else None if p.is_dir() else "special")
            for p in sorted(root.rglob("*"))}


def png_bytes(rows: int, cols: int) -> bytes:
    """A PNG header declaring rows × cols 8-bit grey pixels, with one empty
    data chunk: a few bytes that claim gigabytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", cols, rows, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def write_yaml(path: Path, payload) -> Path:
    path.write_text(yaml.safe_dump(payload) if not isinstance(payload, str) else payload)
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A toy dataset with folds, the tiny config, an interrupted and a
    finished classifier run of it."""
    root = tmp_path_factory.mktemp("bad_inputs")
    dataset = make_toy_dataset(lesions_per_patient=(1, 2, 1, 2, 1, 1, 2, 1, 1, 2, 1, 1))
    dataset.input_size = 16
    dataset.folds = make_patient_folds(dataset.labels, dataset.patient_ids, k=3, seed=0)
    dataset.fold_k = 3
    write_dataset(dataset, root / "toy.h5")
    config = write_yaml(root / "tiny.yaml", {**TINY, "output_dir": str(root / "out"),
                                            "data": {"dataset": str(root / "toy.h5")}})
    finished = root / "finished"
    result = CliRunner().invoke(cli, ["train-cnn", "--config", str(config), "--fold", "0",
                                      "--run-dir", str(finished)])
    assert result.exit_code == 0, result.output
    # An interrupted run: Ctrl-C right after the first epoch's checkpoint.
    from keras_lesions.runs import checkpoint

    original = checkpoint.EpochCheckpoint.on_epoch_end

    def stop(self, epoch, logs=None):
        original(self, epoch, logs)
        raise KeyboardInterrupt

    checkpoint.EpochCheckpoint.on_epoch_end = stop
    try:
        result = CliRunner().invoke(cli, ["train-cnn", "--config", str(config), "--fold", "0",
                                          "--run-dir", str(root / "interrupted")])
    finally:
        checkpoint.EpochCheckpoint.on_epoch_end = original
    assert result.exit_code == 130, result.output
    assert (root / "interrupted" / "checkpoint" / "epoch-1.index").is_file()
    return root


# --------------------------------------------------------------------------- the cases
# Each case: (id, setup(tmp, work) -> argv, fragments the error line must hold).
# ``tmp`` is the case's own folder, snapshotted before and after.

def _classes(tmp: Path, files: dict[str, bytes]) -> Path:
    """A class-folder source: {"cyst/a.png": bytes, ...}."""
    for name, payload in files.items():
        (tmp / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / "src" / name).write_bytes(payload)
    return tmp / "src"


def _good_png() -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".png", np.full((20, 20), 120, np.uint8))
    return encoded.tobytes()


def _npy(array, **kwargs) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, **kwargs)
    return buffer.getvalue()


def importer(files, *extra, mapping: str | bytes | None = None):
    def setup(tmp, work):
        source = _classes(tmp, {"cyst/ok1.png": _good_png(), "cyst/ok2.png": _good_png(),
                                "metastasis/ok3.png": _good_png(), **files})
        argv = ["data", "import", str(source), str(tmp / "out.h5"), *extra]
        if mapping is not None:
            (tmp / "map.csv").write_bytes(mapping.encode() if isinstance(mapping, str)
                                          else mapping)
            argv += ["--mapping", str(tmp / "map.csv")]
        return argv
    return setup


def volumes(volume_bytes: bytes | None, mask_shape=(4, 8, 8), volume_shape=(4, 8, 8)):
    """A NIfTI volume + mask source with a mapping; ``volume_bytes`` replaces
    the volume file's content when given."""
    def setup(tmp, work):
        import nibabel as nib

        source = tmp / "vols"
        source.mkdir()
        volume = np.full(volume_shape, 40.0, np.float32)
        mask = np.zeros(mask_shape, np.uint8)
        mask[1:3, 1:3, 1:3] = 1
        mask[1:3, 4:6, 4:6] = 2
        nib.save(nib.Nifti1Image(volume, np.eye(4)), source / "v.nii.gz")
        nib.save(nib.Nifti1Image(mask, np.eye(4)), source / "m.nii.gz")
        if volume_bytes is not None:
            (source / "v.nii.gz").write_bytes(volume_bytes)
        (tmp / "map.csv").write_text("volume,mask,label,class,patient_id\n"
                                     "v.nii.gz,m.nii.gz,1,cyst,P1\n"
                                     "v.nii.gz,m.nii.gz,2,metastasis,P1\n")
        return ["data", "import", str(source), str(tmp / "out.h5"),
                "--mapping", str(tmp / "map.csv")]
    return setup


def _huge_nifti_header() -> bytes:
    import nibabel as nib

    import gzip

    header = nib.Nifti1Header()
    header.set_data_shape((30000, 30000, 30000))
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    return gzip.compress(header.binaryblock + b"\0" * 4 + b"\0" * 64)


def dataset_file(make):
    """``kl data check`` of a file made by ``make(path, work)``."""
    def setup(tmp, work):
        path = tmp / "d.h5"
        make(path, work)
        return ["data", "check", str(path)]
    return setup


def _copy_toy(path, work):
    shutil.copy(work / "toy.h5", path)


def _edit_toy(edit):
    def make(path, work):
        _copy_toy(path, work)
        with h5py.File(path, "r+") as h5:
            edit(h5)
    return make


def _huge_image(h5):
    del h5["images/000000/roi"]
    h5["images/000000"].create_dataset("roi", shape=(10**6, 10**6), dtype="f4",
                                       chunks=(64, 64))


def _wrong_roi(h5):  # 2 GB declared, within the side limit: refused before it is read
    del h5["images/000000/roi"]
    h5["images/000000"].create_dataset("roi", shape=(16000, 16000), dtype="f8",
                                       chunks=(64, 64))


def _external_link(h5):
    del h5["images/000000/roi"]
    h5["images/000000/roi"] = h5py.ExternalLink("/etc/hostname", "/x")


def _external_storage(h5):
    del h5["images/000000/roi"]
    h5["images/000000"].create_dataset("roi", shape=(4, 4), dtype="f4",
                                       external=[("/etc/hostname", 0, 64)])


def _short_column(h5):
    del h5["table/label"]
    h5["table"].create_dataset("label", data=np.zeros(3, np.int64))


def config_case(payload, *extra, command=("experiment",)):
    """``kl experiment CONFIG --list`` (or another command) with a bad config."""
    def setup(tmp, work):
        body = payload(tmp, work) if callable(payload) else payload
        if isinstance(body, dict):
            body = {**TINY, "output_dir": str(tmp / "out"),
                    "data": {"dataset": str(work / "toy.h5")}, **body}
        path = tmp / "c.yaml"
        if isinstance(body, bytes):
            path.write_bytes(body)
        else:
            write_yaml(path, body)
        if command == ("experiment",):
            return ["experiment", str(path), *extra]
        return [*command, "--config", str(path), *extra]
    return setup


def _bomb(tmp, work):
    rows = ["name: [&a [1,1,1,1,1,1,1,1,1]"]
    previous = "a"
    for name in "bcdefgh":
        rows.append(f", &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = name
    return "".join(rows) + "]\n"


def train(*extra, config: dict | None = None):
    """``kl train-cnn`` with the tiny config (changed by ``config``)."""
    def setup(tmp, work):
        path = write_yaml(tmp / "c.yaml", {**TINY, "output_dir": str(tmp / "out"),
                                           "data": {"dataset": str(work / "toy.h5")},
                                           **(config or {})})
        return ["train-cnn", "--config", str(path), *extra]
    return setup


def run_folder(which: str, damage, *extra, config: dict | None = None):
    """``kl train-cnn --run-dir COPY`` of a copy of the interrupted or finished
    run, damaged by ``damage(copy)``; the copy must come back unchanged."""
    def setup(tmp, work):
        copy = tmp / "run"
        shutil.copytree(work / which, copy)
        damage(copy)
        path = write_yaml(tmp / "c.yaml", {**TINY, "output_dir": str(tmp / "out"),
                                           "data": {"dataset": str(work / "toy.h5")},
                                           **(config or {})})
        return ["train-cnn", "--config", str(path), "--fold", "0", "--run-dir", str(copy),
                *extra]
    return setup


def _write(relative: str, payload: bytes):
    def damage(run: Path):
        (run / relative).write_bytes(payload)
    return damage


def _truncate(relative: str):
    def damage(run: Path):
        path = run / relative
        path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])
    return damage


def _nothing(run: Path):
    pass


def finished_run_command(command, damage):
    def setup(tmp, work):
        copy = tmp / "runs" / "finished"
        shutil.copytree(work / "finished", copy)
        damage(copy)
        return [*command(copy)]
    return setup


def _lambda_model(run: Path):
    import keras

    inputs = keras.Input((16, 16, 1))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    (run / "model.keras").unlink()
    model.save(run / "model.keras")


CASES = [
    # ---------------------------------------------------------------- importers
    ("import: source missing", lambda tmp, work: ["data", "import", str(tmp / "nope"),
                                                   str(tmp / "o.h5")], ["nope"]),
    ("import: empty source", lambda tmp, work: (tmp / "empty").mkdir() or
     ["data", "import", str(tmp / "empty"), str(tmp / "o.h5")], ["empty"]),
    ("import: corrupt PNG", importer({"metastasis/bad.png": b"\x89PNG\r\n\x1a\nrubbish"}),
     ["bad.png", "corrupt"]),
    ("import: PNG declaring 40000x40000", importer({"metastasis/huge.png": png_bytes(40000,
                                                                                    40000)}),
     ["huge.png", "1600000000 pixels"]),
    ("import: colour PNG", importer({"metastasis/colour.png": __import__("cv2").imencode(
        ".png", np.dstack([np.zeros((8, 8), np.uint8), np.full((8, 8), 99, np.uint8),
                           np.zeros((8, 8), np.uint8)]))[1].tobytes()}), ["colour.png", "colour"]),
    ("import: pickled .npy", importer({"metastasis/p.npy": _npy(np.array([{}], object),
                                                                allow_pickle=True)}),
     ["p.npy"]),
    ("import: 3-D .npy ROI", importer({"metastasis/v.npy": _npy(np.zeros((3, 8, 8),
                                                                        np.float32))}),
     ["v.npy"]),
    ("import: not-DICOM .dcm", importer({"metastasis/b.dcm": b"DICM but not really" * 10}),
     ["b.dcm"]),
    ("import: mapping CSV with NUL bytes", importer({}, mapping=b"file,patient_id\n"
                                                    b"cyst/ok1.png,P\x001\n"), ["map.csv"]),
    ("import: mapping CSV lacks columns", importer({}, mapping="name,who\na,b\n"),
     ["map.csv", "'file' column"]),
    ("import: mapping names a missing file", importer(
        {}, mapping="file,patient_id\ncyst/ok1.png,P1\ncyst/ok2.png,P2\nmetastasis/ok3.png,"
                    "P3\ncyst/gone.png,P4\n"), ["gone.png"]),
    ("import: --classes names no folder", importer({}, "--classes", "cyst,unicorn"),
     ["unicorn"]),
    ("import: truncated NIfTI volume", volumes(b"\x1f\x8b" + b"\0" * 40), ["v.nii.gz"]),
    ("import: NIfTI declaring 30000^3 voxels", volumes(_huge_nifti_header()),
     ["v.nii.gz", "30000"]),
    ("import: mask of another shape", volumes(None, mask_shape=(4, 8, 6)), ["m.nii.gz"]),
    ("import: output a named pipe", lambda tmp, work: (
        os.mkfifo(tmp / "out.h5"),
        importer({})(tmp, work))[-1], ["out.h5", "not a regular file"]),
    ("import: mapping CSV a named pipe", lambda tmp, work: (
        importer({})(tmp, work) + (os.mkfifo(tmp / "pipe.csv") or [
            "--mapping", str(tmp / "pipe.csv")])), ["pipe.csv", "not a regular file"]),
    ("import: output under a file, not a folder", lambda tmp, work: (
        (tmp / "plain").write_text("a file"),
        ["data", "import", str(_classes(tmp, {"cyst/a.png": _good_png(),
                                             "cyst/b.png": _good_png(),
                                             "metastasis/c.png": _good_png()})),
         str(tmp / "plain" / "out.h5")])[-1], ["plain/out.h5"]),
    ("import: output is a folder", lambda tmp, work: (
        (tmp / "o.h5").mkdir(),
        ["data", "import", str(_classes(tmp, {"cyst/a.png": _good_png()})),
         str(tmp / "o.h5")])[-1], ["o.h5"]),
    # ----------------------------------------------------------- dataset files
    ("dataset: text file", dataset_file(lambda p, w: p.write_text("hello")), ["d.h5",
                                                                             "HDF5"]),
    ("dataset: truncated", dataset_file(lambda p, w: p.write_bytes(
        (w / "toy.h5").read_bytes()[:3000])), ["d.h5"]),
    ("dataset: foreign HDF5", dataset_file(lambda p, w: h5py.File(p, "w").close()),
     ["d.h5", "not a keras-lesions dataset"]),
    ("dataset: class_names an integer", dataset_file(_edit_toy(
        lambda h5: h5.attrs.__setitem__("class_names", 7))), ["d.h5", "class_names"]),
    ("dataset: image declaring 10^6 x 10^6", dataset_file(_edit_toy(_huge_image)),
     ["d.h5", "1000000"]),
    ("dataset: external link", dataset_file(_edit_toy(_external_link)),
     ["d.h5", "external link"]),
    ("dataset: external storage", dataset_file(_edit_toy(_external_storage)),
     ["d.h5", "external files"]),
    ("dataset: a named pipe", dataset_file(lambda p, w: os.mkfifo(p)),
     ["d.h5", "not a regular file"]),
    ("dataset: class_names a dataset, not an attribute", dataset_file(_edit_toy(
        lambda h5: (h5.attrs.__delitem__("class_names"),
                    h5.create_dataset("class_names", data=np.arange(3))))),
     ["d.h5", "class_names"]),
    ("dataset: roi of another shape than its box", dataset_file(_edit_toy(_wrong_roi)),
     ["d.h5", "P00-L0", "roi_box"]),
    ("dataset: future format version", dataset_file(_edit_toy(
        lambda h5: h5.attrs.__setitem__("format_version", 99))), ["d.h5", "version 99"]),
    ("dataset: columns of different lengths", dataset_file(_edit_toy(_short_column)),
     ["d.h5", "lengths"]),
    ("dataset: folds splitting a patient", dataset_file(_edit_toy(
        lambda h5: h5["folds"].__setitem__(slice(1, 3), np.array([0, 1])))), ["d.h5", "P01"]),
    # ----------------------------------------------------------------- configs
    ("config: missing file", lambda tmp, work: ["experiment", str(tmp / "none.yaml"),
                                                "--list"], ["none.yaml"]),
    ("config: a named pipe", lambda tmp, work: (os.mkfifo(tmp / "c.yaml"), [
        "experiment", str(tmp / "c.yaml"), "--list"])[-1], ["c.yaml", "not a regular file"]),
    ("config: a 2000-character path", lambda tmp, work: [
        "experiment", str(tmp / ("a" * 2000)), "--list"], ["File name too long"]),
    ("config: not YAML", config_case("a: [1, 2\n", "--list"), ["c.yaml", "YAML"]),
    ("config: binary", config_case(b"\xff\xfe\x00\x01" * 8, "--list"), ["c.yaml"]),
    ("config: a list", config_case("- 1\n- 2\n", "--list"), ["c.yaml", "mapping"]),
    ("config: unknown section", config_case({"trian": {"epochs": 2}}, "--list"),
     ["c.yaml", "trian"]),
    ("config: unknown key", config_case({"train": {"epoch": 2}}, "--list"),
     ["c.yaml", "train.epoch"]),
    ("config: wrong type", config_case({"train": {"epochs": "three"}}, "--list"),
     ["c.yaml", "train.epochs"]),
    ("config: gan.batch_size 0", config_case({"gan": {"batch_size": 0}}, "--list"),
     ["c.yaml", "gan.batch_size"]),
    ("config: gan.epochs -1", config_case({"gan": {"epochs": -1}}, "--list"),
     ["c.yaml", "gan.epochs"]),
    ("config: gan.width 0", config_case({"gan": {"width": 0}}, "--list"),
     ["c.yaml", "gan.width"]),
    ("config: name ..", config_case({"name": ".."}, "--list"), ["c.yaml", "name"]),
    ("config: name with a slash", config_case({"name": "a/b"}, "--list"), ["c.yaml", "name"]),
    ("config: diff_augment rotate", config_case({"gan": {"diff_augment": "rotate"}}, "--list"),
     ["c.yaml", "gan.diff_augment"]),
    ("config: learning rate inf", config_case("train:\n  learning_rate: .inf\n", "--list"),
     ["c.yaml", "train.learning_rate"]),
    ("config: negative seed", config_case({"evaluate": {"seeds": [-1]}}, "--list"),
     ["c.yaml", "evaluate.seeds"]),
    ("config: unknown phantom preset", config_case({"data": {"dataset": "phantoms:lidc"}},
                                                   "--list"), ["c.yaml", "phantoms:lidc"]),
    ("config: YAML alias bomb", config_case(_bomb, "--list"), ["c.yaml", "name"]),
    ("config: adv_weight positive (train-disentangle)", config_case(
        {"disentangle": {"adv_weight": 0.5}}, command=("train-disentangle",)),
     ["c.yaml", "negative"]),
    ("config: batch 0 via train-gan", config_case({"gan": {"batch_size": 0}}, "--class",
                                                  "cyst", command=("train-gan",)),
     ["c.yaml", "gan.batch_size"]),
    # ------------------------------------------------------------- CLI options
    ("option: unknown option", lambda tmp, work: ["data", "check", "--bogus"], ["--bogus"]),
    ("option: unknown command", lambda tmp, work: ["trian-cnn"], ["trian-cnn"]),
    ("option: fold out of range", train("--fold", "7"), ["fold", "7"]),
    ("option: group beyond the config", train("--fold", "0", "--group", "9"), ["group"]),
    ("option: --resume with --restart", train("--fold", "0", "--resume", "--restart"),
     ["--restart"]),
    ("option: --extra not a dataset", lambda tmp, work: train(
        "--fold", "0", "--extra", str((tmp / "x.h5").write_text("no") and tmp / "x.h5"))(
        tmp, work), ["x.h5"]),
    ("option: unknown class for train-gan", lambda tmp, work: [
        "train-gan", "--config", str(write_yaml(tmp / "c.yaml", {
            **TINY, "output_dir": str(tmp / "out"), "data": {"dataset": str(work / "toy.h5")}})),
        "--class", "unicorn"], ["unicorn"]),
    ("option: --only an unknown run", config_case({}, "--only", "fold9/nothing"),
     ["fold9/nothing"]),
    ("option: mix --alpha 2", lambda tmp, work: ["mix", "--run", str(work / "finished"),
                                                 "--alpha", "2", "--n", "3", "--out",
                                                 str(tmp / "m.h5")], ["alpha"]),
    ("option: mix on a classifier run", lambda tmp, work: ["mix", "--run",
                                                           str(work / "finished"), "--n", "3",
                                                           "--out", str(tmp / "m.h5")],
     ["finished"]),
    # ------------------------------------------------------------- run folders
    ("run: corrupt done.json", run_folder("finished", _write("done.json", b"{not json")),
     ["run", "done.json"]),
    ("run: corrupt run.json on --resume", run_folder("interrupted", _write("run.json", b"\0\0"),
                                                     "--resume"), ["run", "run.json"]),
    ("run: truncated checkpoint data", run_folder("interrupted", _truncate(
        "checkpoint/epoch-1.data-00000-of-00001"), "--resume"), ["epoch-1", "--restart"]),
    ("run: empty checkpoint index", run_folder("interrupted", _write(
        "checkpoint/checkpoint", b""), "--resume"), ["checkpoint", "--restart"]),
    ("run: checkpoint index naming missing files", run_folder("interrupted", lambda run: (
        run / "checkpoint" / "checkpoint").write_text(
        (run / "checkpoint" / "checkpoint").read_text().replace("epoch-1", "epoch-99")),
        "--resume"), ["epoch-99", "--restart"]),
    ("run: checkpoint without run.json", run_folder(
        "interrupted", lambda run: (run / "run.json").unlink(), "--resume"),
     ["run", "no run.json", "--restart"]),
    ("run: run.json a folder", run_folder("interrupted", lambda run: (
        (run / "run.json").unlink(), (run / "run.json").mkdir()), "--resume"),
     ["run", "run.json", "--restart"]),
    ("run: corrupt history.csv", run_folder("interrupted", _write(
        "history.csv", b"epoch,loss\n0,zero\n"), "--resume"), ["history.csv"]),
    ("run: resumed as another fold", lambda tmp, work: run_folder(
        "interrupted", _nothing, "--resume")(tmp, work)[:3] + [
        "--fold", "1", "--run-dir", str(tmp / "run"), "--resume"], ["fold was 0, now 1"]),
    ("run: resumed with another learning rate", run_folder(
        "interrupted", _nothing, "--resume",
        config={"train": {**TINY["train"], "learning_rate": 0.01}}),
     ["train.learning_rate"]),
    ("run: finished run asked for with other extra data", lambda tmp, work: run_folder(
        "finished", _nothing, "--extra", str(work / "toy.h5"))(tmp, work),
     ["run", "other extra datasets"]),
    ("run: unfinished without --resume", run_folder("interrupted", _nothing),
     ["run", "--resume"]),
    ("run: --restart of a folder holding no run", lambda tmp, work: (
        (tmp / "mine").mkdir(), (tmp / "mine" / "notes.txt").write_text("mine"),
        train("--fold", "0", "--run-dir", str(tmp / "mine"), "--restart")(tmp, work))[-1],
     ["mine", "no run"]),
    ("run: experiment with a damaged run.json in its plan", lambda tmp, work: (
        shutil.copytree(work / "interrupted", tmp / "out/tiny/runs/fold0/classifier/D_aug1/seed0"),
        (tmp / "out/tiny/runs/fold0/classifier/D_aug1/seed0/run.json").write_text("{"),
        config_case({})(tmp, work))[-1], ["seed0", "run.json", "--restart"]),
    ("run: evaluate over a truncated predictions.npz", finished_run_command(
        lambda run: ["evaluate", str(run.parent), "-o", str(run.parent / "report")],
        _truncate("predictions.npz")), ["predictions.npz"]),
    ("run: export of a truncated model", finished_run_command(
        lambda run: ["export", str(run), "--out", str(run.parent / "served" / "1")],
        _truncate("model.keras")), ["model.keras"]),
    ("run: export of a model with a Lambda layer", finished_run_command(
        lambda run: ["export", str(run), "--out", str(run.parent / "served" / "1")], _lambda_model),
     ["model.keras", "safe mode"]),
]


@pytest.mark.parametrize("setup, fragments", [(s, f) for _, s, f in CASES],
                         ids=[name for name, _, _ in CASES])
def test_bad_input_gives_one_line_and_leaves_everything_as_it_was(tmp_path, work, setup,
                                                                  fragments):
    case = tmp_path / "case"
    case.mkdir()
    argv = setup(case, work)
    before = snapshot(case)
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("kl: error: ") and "Traceback" not in result.output, line
    assert len(line) <= 520, len(line)
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert snapshot(case) == before, sorted(set(snapshot(case)) ^ set(before)) or \
        "a file changed"


def test_there_are_at_least_forty_kinds():
    assert len(CASES) >= 40 and len({name for name, _, _ in CASES}) == len(CASES)


def test_a_real_process_prints_one_line_and_no_tensorflow_chatter(tmp_path, work):
    """The start-up notes TensorFlow's libraries write to stderr (oneDNN, CUDA,
    absl) are set aside: a bad input to a command that loads TensorFlow is
    one line."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    run = tmp_path / "run"
    shutil.copytree(work / "finished", run)
    _truncate("model.keras")(run)
    done = subprocess.run([sys.executable, "-m", "keras_lesions_cli.main", "export", str(run),
                           "--out", str(tmp_path / "served" / "1")],
                          capture_output=True, text=True, env=env, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith("kl: error: ") and "model.keras" in lines[0]
    assert not (tmp_path / "served").exists()


def _invoke(argv):
    return CliRunner().invoke(cli, [str(a) for a in argv])


def test_restart_trains_a_damaged_run_again_and_never_touches_finished_or_foreign_work(
        tmp_path, work):
    config = write_yaml(tmp_path / "c.yaml", {**TINY, "output_dir": str(tmp_path / "out"),
                                              "data": {"dataset": str(work / "toy.h5")}})
    train = ["train-cnn", "--config", config, "--fold", "0", "--run-dir"]
    damaged = tmp_path / "damaged"
    shutil.copytree(work / "interrupted", damaged)
    _truncate("checkpoint/epoch-1.data-00000-of-00001")(damaged)
    result = _invoke([*train, damaged, "--restart"])
    assert result.exit_code == 0, result.output
    assert "discarded its unfinished training" in result.stderr
    assert (damaged / "done.json").is_file() and not (damaged / "checkpoint").exists()
    assert len((damaged / "history.csv").read_text().splitlines()) == 1 + TINY["train"]["epochs"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []

    finished = tmp_path / "finished"
    shutil.copytree(work / "finished", finished)
    before = snapshot(finished)
    result = _invoke([*train, finished, "--restart"])
    assert result.exit_code == 0 and "already finished" in result.output, result.output
    assert snapshot(finished) == before

    foreign = tmp_path / "my_tf_model"  # TensorFlow's own checkpoint layout
    foreign.mkdir()
    (foreign / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    (foreign / "ckpt-1.index").write_bytes(b"\0" * 8)
    result = _invoke([*train, foreign, "--restart"])
    assert result.exit_code == 1 and "no run" in result.stderr, result.output
    (foreign / "checkpoint").unlink()  # with names a run folder has, and one it has not
    (foreign / "checkpoint").mkdir()
    (foreign / "run.json").write_text("{}")
    before = snapshot(foreign)
    result = _invoke([*train, foreign, "--restart"])
    assert result.exit_code == 1 and "'ckpt-1.index'" in result.stderr, result.output
    assert snapshot(foreign) == before


def test_a_run_another_process_trains_is_neither_resumed_nor_restarted(tmp_path, work):
    config = write_yaml(tmp_path / "c.yaml", {**TINY, "output_dir": str(tmp_path / "out"),
                                              "data": {"dataset": str(work / "toy.h5")}})
    run = tmp_path / "run"
    shutil.copytree(work / "interrupted", run)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        (run / ".training.json").write_text(json.dumps({"pid": other.pid,
                                                        "host": socket.gethostname()}))
        before = snapshot(tmp_path)
        for flag in ("--resume", "--restart"):
            result = _invoke(["train-cnn", "--config", config, "--fold", "0", "--run-dir", run,
                              flag])
            assert result.exit_code == 1, result.output
            assert f"being trained by process {other.pid}" in result.stderr, result.stderr
        assert snapshot(tmp_path) == before
    finally:
        other.kill()
        other.wait()
    result = _invoke(["train-cnn", "--config", config, "--fold", "0", "--run-dir", run,
                      "--resume"])  # its trainer is gone: the run resumes
    assert result.exit_code == 0, result.output


def test_restart_refuses_the_folder_it_is_run_from(tmp_path, work, monkeypatch):
    config = write_yaml(tmp_path / "c.yaml", {**TINY, "output_dir": str(tmp_path / "out"),
                                              "data": {"dataset": str(work / "toy.h5")}})
    run = tmp_path / "run"
    shutil.copytree(work / "interrupted", run)
    before = snapshot(tmp_path)
    monkeypatch.chdir(run)
    result = _invoke(["train-cnn", "--config", config, "--fold", "0", "--run-dir", ".",
                      "--restart"])
    assert result.exit_code == 1 and "current folder" in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    monkeypatch.chdir(tmp_path)
    assert snapshot(tmp_path) == before
