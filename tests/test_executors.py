"""Plans of runs and their executors: sequential, processes (--jobs) and Ray."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from keras_lesions.config import load_config
from keras_lesions.data.dataset import write_dataset
from keras_lesions.data.folds import make_patient_folds
from keras_lesions.experiments.plan import BLOCKED, DONE, PENDING, Plan, PlanError, RunSpec

from conftest import make_toy_dataset

# --------------------------------------------------------------------------- plans


def _spec(run_id, *depends_on):
    return RunSpec(id=run_id, step="x", depends_on=tuple(depends_on), output=f"{run_id}.done")


def test_plan_orders_runs_after_their_dependencies_and_tracks_states(tmp_path):
    plan = Plan([_spec("report", "b", "c"), _spec("c", "a"), _spec("b", "a"), _spec("a")])
    order = [s.id for s in plan]
    assert order.index("a") < order.index("b") < order.index("report")
    assert order.index("c") < order.index("report")
    assert plan.states(tmp_path) == {"a": PENDING, "b": BLOCKED, "c": BLOCKED,
                                     "report": BLOCKED}
    (tmp_path / "a.done").touch()
    assert plan.states(tmp_path) == {"a": DONE, "b": PENDING, "c": PENDING, "report": BLOCKED}
    assert [s.id for s in plan.with_dependencies(["b"])] == ["a", "b"]
    listing = plan.describe(tmp_path)
    assert "done     a" in listing and "blocked  report" in listing and "waits for b, c" in listing
    with pytest.raises(PlanError, match="the plan has no run 'z'"):
        plan.get("z")


def test_plan_refuses_cycles_duplicates_and_unknown_dependencies():
    with pytest.raises(ValueError, match="cycle"):
        Plan([_spec("a", "b"), _spec("b", "a")])
    with pytest.raises(ValueError, match="twice"):
        Plan([_spec("a"), _spec("a")])
    with pytest.raises(ValueError, match="depends on 'nope'"):
        Plan([_spec("a", "nope")])


# --------------------------------------------------------------------------- executors


def _toy_dataset(root: Path) -> Path:
    dataset = make_toy_dataset(lesions_per_patient=(1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 2, 1))
    dataset.input_size = 16
    dataset.folds = make_patient_folds(dataset.labels, dataset.patient_ids, k=3, seed=0)
    dataset.fold_k = 3
    return write_dataset(dataset, root / "toy.h5")


def tiny_config(root: Path, dataset_path: Path, name: str, **extra):
    """A classic curve small enough that starting TensorFlow in a worker dominates."""
    return load_config(None, {
        "name": name, "output_dir": str(root / "out"), "data.dataset": str(dataset_path),
        "augment.n_rot": 1, "augment.n_trans": 1, "augment.n_scale": 0, "augment.n_flip": 0,
        "augment.group_sizes": [0, 8], "classifier.input_size": 16,
        "classifier.filters": [2, 2, 2], "classifier.dense_units": 4, "train.epochs": 2,
        "train.batch_size": 8, "evaluate.folds": [0, 1], "evaluate.repeats": 1, **extra})


def report_tables(root: Path, name: str) -> dict[str, str]:
    """The Markdown tables and the curve an experiment wrote."""
    report = root / "out" / name / "report"
    tables = {p.name: p.read_text() for p in sorted(report.glob("*.md"))}
    tables["classic_curve.csv"] = (report / "classic_curve.csv").read_text()
    return tables


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    from keras_lesions.experiments.run import run_experiment

    root = tmp_path_factory.mktemp("executors")
    dataset_path = _toy_dataset(root)
    result = run_experiment(tiny_config(root, dataset_path, "sequential"),
                            log=lambda line: None)
    return {"root": root, "dataset": dataset_path, "result": result,
            "tables": report_tables(root, "sequential")}


def test_sequential_run_writes_the_report(sequential):
    assert set(sequential["tables"]) >= {"D_aug1.md", "D_aug2.md", "classic_curve.csv"}
    assert {c["group"] for c in sequential["result"]["choices"]} <= {"D_aug1", "D_aug2"}


def _kill_first(root: Path, name: str, prefix: str, killed: dict, stop: threading.Event):
    """Kill (SIGKILL) the process of the first run whose id starts with ``prefix``,
    as soon as it is seen running, once."""
    executing = root / "out" / name / ".executing"
    while not stop.is_set():
        for marker in sorted(executing.glob(prefix.replace("/", "__") + "*.json")):
            try:
                info = json.loads(marker.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if info["pid"] == os.getpid():
                continue
            os.kill(info["pid"], signal.SIGKILL)
            killed.update(info, at=time.time())
            return
        time.sleep(0.01)


def _run_with_a_kill(executor, root, dataset_path, name, prefix, lines):
    from keras_lesions.experiments.run import run_experiment

    killed: dict = {}
    stop = threading.Event()
    killer = threading.Thread(target=_kill_first,
                              args=(root, name, prefix, killed, stop), daemon=True)
    killer.start()
    try:
        result = run_experiment(tiny_config(root, dataset_path, name), executor=executor,
                                log=lines.append)
    finally:
        stop.set()
        killer.join()
    return result, killed


@pytest.mark.slow
def test_parallel_processes_give_the_sequential_report_and_retry_a_killed_run(sequential):
    """--jobs 2: the same Markdown tables as one run at a time; a run whose
    process is killed mid-way is started again, the other runs are kept."""
    from keras_lesions.experiments.executors import ProcessExecutor

    root, lines = sequential["root"], []
    result, killed = _run_with_a_kill(ProcessExecutor(jobs=2, threads=1), root,
                                      sequential["dataset"], "parallel",
                                      "fold1__classifier__D_aug2", lines)
    assert killed, "the run to kill was never seen running"
    assert report_tables(root, "parallel") == sequential["tables"]
    assert result["curve"] == sequential["result"]["curve"]
    victim = "fold1/classifier/D_aug2/seed0"
    assert any(line.startswith(f"{victim} was killed (signal 9); starting it again")
               for line in lines), lines
    starts = [line.split()[1] for line in lines if line.startswith("started ")]
    assert starts.count(victim) == 2
    assert all(starts.count(other) == 1 for other in set(starts) - {victim}), starts
    # Two workers, each running run after run; the killed one is replaced once.
    pids = [line.split("(process ")[1].split(",")[0] for line in lines
            if line.startswith("started ")]
    assert len(set(pids)) <= 3 and len(pids) > len(set(pids)), pids
    done = root / "out" / "parallel" / "runs" / victim / "done.json"
    assert done.stat().st_mtime > killed["at"]


@pytest.mark.slow
def test_a_bad_input_in_a_worker_is_one_line_and_not_retried(sequential):
    """A damaged input found by a worker process: its one line comes back to
    the driver, and the run is not started again (retrying cannot fix input)."""
    from keras_lesions.experiments.executors import ExecutionError, ProcessExecutor
    from keras_lesions.experiments.run import run_experiment

    root, lines = sequential["root"], []
    config = tiny_config(root, sequential["dataset"], "damaged")
    run_experiment(config, only="fold0/augment", log=lines.append)
    groups = root / "out" / "damaged" / "augment" / "fold0.h5"
    groups.write_bytes(groups.read_bytes()[:100])  # as a full disk might leave it
    with pytest.raises(ExecutionError) as error:
        run_experiment(config, executor=ProcessExecutor(jobs=2), log=lines.append,
                       only="fold0/classifier/D_aug1/seed0")
    assert str(error.value) == (f"{groups}: not a readable HDF5 file (corrupt, truncated or "
                                "not HDF5; expected an augmentation groups file)")
    assert not any("starting it again" in line for line in lines), lines
    assert not (root / "out" / "damaged" / "runs" / "fold0" / "classifier" / "D_aug1" / "seed0"
                / "done.json").exists()


@pytest.mark.slow
def test_ray_gives_the_sequential_report_and_retries_a_killed_run(sequential):
    """A local Ray of 2 CPUs: the same report; a task whose worker is killed
    is retried by Ray and the others are kept."""
    pytest.importorskip("ray")
    from keras_lesions.experiments.executors import RayExecutor

    root, lines = sequential["root"], []
    result, killed = _run_with_a_kill(RayExecutor(num_cpus=2), root, sequential["dataset"],
                                      "ray", "fold0__classifier__D_aug2", lines)
    assert killed, "the run to kill was never seen running"
    assert report_tables(root, "ray") == sequential["tables"]
    assert result["curve"] == sequential["result"]["curve"]
    victim = "fold0/classifier/D_aug2/seed0"
    assert (root / "out" / "ray" / "runs" / victim / "done.json").stat().st_mtime > killed["at"]
    submitted = [line.split()[1] for line in lines if line.startswith("submitted ")]
    assert len(submitted) == len(set(submitted))  # Ray retried the task; nothing resubmitted


def test_ray_missing_is_one_line(monkeypatch, sequential):
    import builtins

    from keras_lesions.experiments.executors import ExecutionError, RayExecutor
    from keras_lesions.experiments.run import run_experiment

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    config = tiny_config(sequential["root"], sequential["dataset"], "sequential")
    with pytest.raises(ExecutionError, match=r'pip install "keras-lesions\[ray\]"'):
        run_experiment(config, executor=RayExecutor(), log=lambda line: None)


def test_a_run_already_running_elsewhere_is_not_started_twice(sequential):
    import subprocess
    import socket

    from keras_lesions.experiments.executors import ExecutionError
    from keras_lesions.experiments.run import describe_plan, run_experiment

    root = sequential["root"]
    config = tiny_config(root, sequential["dataset"], "busy")
    other = subprocess.Popen(["sleep", "60"])
    try:
        marker = root / "out" / "busy" / ".executing" / "fold0__augment.json"
        marker.parent.mkdir(parents=True)
        marker.write_text(json.dumps({"run": "fold0/augment", "pid": other.pid,
                                      "host": socket.gethostname(), "started": 0}))
        listing = describe_plan(config, log=lambda line: None).splitlines()
        line = next(line for line in listing if " fold0/augment " in line)
        assert line.startswith("running ") and f"process {other.pid} on " in line
        with pytest.raises(ExecutionError, match=f"is being run by process {other.pid}"):
            run_experiment(config, only="fold0/augment", log=lambda line: None)
    finally:
        other.kill()
        other.wait()
    # the process is gone: its marker is litter, and the run goes ahead
    run_experiment(config, only="fold0/augment", log=lambda line: None)
    assert (root / "out" / "busy" / "augment" / "fold0.h5").is_file()


@pytest.mark.parametrize("args, fragment", [
    (["--threads", "1"], "--threads sets the threads of each --jobs process"),
    (["--retries", "1"], "--retries is for runs in other processes"),
    (["--jobs", "2", "--ray"], "--jobs and --ray are two executors"),
])
def test_executor_options_that_do_not_go_together(tmp_path, args, fragment):
    from click.testing import CliRunner

    from keras_lesions_cli.main import cli

    config = tmp_path / "c.yaml"
    config.write_text("name: x\n")
    result = CliRunner().invoke(cli, ["experiment", str(config), *args])
    assert result.exit_code == 2 and fragment in result.output
