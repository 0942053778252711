"""Executors: run an experiment's plan here, in parallel processes, or on Ray.

All three follow the same loop: plan, start every run whose dependencies
are done, and plan again when one finishes (a choice, such as D_aug optimal,
makes new runs plannable). A run is done when its output exists, so an
interrupted experiment resumes from its finished runs, and every executor
gives the same results for the same config and seeds: each run seeds itself
and reads only the outputs of the runs it depends on.

- :class:`SequentialExecutor` runs one run at a time in this process.
- :class:`ProcessExecutor` (``kl experiment --jobs N``) runs up to N at once
  in N worker processes, each with its own thread budget and GPU memory
  growth, so N runs can share one GPU. A worker imports TensorFlow once and
  runs one run after another, as the sequential executor does; a run whose
  worker dies (killed, out of memory, a crash) is retried in a fresh worker,
  a bounded number of times, while the others go on.
- :class:`RayExecutor` (``kl experiment --ray [ADDRESS]``) submits the runs
  as Ray tasks with their resource requests, passing the tasks they depend
  on as object references so Ray schedules them in order; Ray retries a task
  whose worker dies.

A bad input (``KerasLesionsError``) is never retried: the runs already going
finish, nothing new starts, and the error is raised as one line.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Iterable

from keras_lesions.errors import KerasLesionsError
from keras_lesions.experiments.context import Experiment
from keras_lesions.experiments.kind import ExperimentKind, StepContext
from keras_lesions.experiments.plan import DONE, PENDING, PlanError, RunSpec
from keras_lesions.io import process_alive, write_json

DEFAULT_RETRIES = 2


class ExecutionError(KerasLesionsError):
    """A run failed and could not be completed (after its retries)."""


# --------------------------------------------------------------------------- one run


def _marker(exp: Experiment, spec: RunSpec):
    return exp.layout.executing / (spec.id.replace("/", "__") + ".json")


def _alive(marker: dict) -> bool:
    """Whether the process a marker names still runs (on this host; a marker of
    another host is taken as alive)."""
    try:
        return process_alive(int(marker["pid"]), str(marker.get("host")))
    except (KeyError, TypeError, ValueError):
        return False  # a damaged marker: no process to wait for


def executing_runs(exp: Experiment) -> dict[str, str]:
    """Run id -> "process N on HOST" of the runs being executed now; markers
    left by killed processes are passed over."""
    running = {}
    for path in sorted(exp.layout.executing.glob("*.json")):
        try:
            marker = json.loads(path.read_text(encoding="utf-8"))
            if _alive(marker):
                running[marker["run"]] = f"process {marker['pid']} on {marker['host']}"
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a marker being written, or litter: nothing runs from it
    return running


def execute(exp: Experiment, kind: ExperimentKind, spec: RunSpec, ctx: StepContext) -> None:
    """Run one spec in this process.

    While it runs, ``.executing/<id>.json`` names the process (pid, host): two
    commands never run one run at once, and ``--list`` shows where it runs.

    Raises:
        ExecutionError: another live process is running the same run.
        KerasLesionsError: bad input, from the step.
        RuntimeError: the step returned without making its output (a bug).
    """
    marker = _marker(exp, spec)
    other = executing_runs(exp).get(spec.id)
    if other and not other.startswith(f"process {os.getpid()} "):
        raise ExecutionError(f"run {spec.id} is being run by {other}; wait for it, or stop "
                             "that process", exp.layout.root)
    write_json(marker, {"run": spec.id, "pid": os.getpid(), "host": socket.gethostname(),
                        "started": time.time()})
    try:
        kind.steps[spec.step](exp, spec, ctx)
    finally:
        marker.unlink(missing_ok=True)
    if not spec.is_done(exp.layout.root):
        raise RuntimeError(f"step {spec.step!r} of {spec.id} finished without writing "
                           f"{spec.output}")


def worker_config(exp: Experiment) -> dict:
    """The config as workers receive it: with absolute paths, so a worker
    started in another folder (or on another node of a shared filesystem)
    finds the same experiment and dataset."""
    from pathlib import Path

    from keras_lesions.experiments.context import PHANTOM_PREFIX

    config = exp.config.to_dict()
    config["output_dir"] = str(Path(config["output_dir"]).resolve())
    if not config["data"]["dataset"].startswith(PHANTOM_PREFIX):
        config["data"]["dataset"] = str(exp.dataset_path)
    return config


def _worker_log(run_id: str):
    def log(message: str) -> None:
        print(f"[{run_id}] {message}", file=sys.stderr, flush=True)
    return log


def run_in_worker(config_dict: dict, spec: RunSpec, threads: int | None,
                  verbose: int | str = 0) -> str:
    """What a Ray task runs: configure TensorFlow, attach to the opened
    experiment, run one spec. Returns its id."""
    from keras_lesions.runtime import configure_tensorflow, quiet_tensorflow_startup

    quiet_tensorflow_startup()
    configure_tensorflow(threads)
    return _run_spec(config_dict, spec, verbose)


def _run_spec(config_dict: dict, spec: RunSpec, verbose: int | str = 0) -> str:
    """Attach to the opened experiment and run one spec, in a process whose
    TensorFlow is configured. Returns its id."""
    from keras_lesions.config import config_from_dict
    from keras_lesions.experiments.registry import kind_of, open_for

    config = config_from_dict(config_dict)
    log = _worker_log(spec.id)
    exp = open_for(config, log, create=False)
    execute(exp, kind_of(config), spec, StepContext(log=log, verbose=verbose))
    return spec.id


def _ready(exp: Experiment, kind: ExperimentKind, allowed: set[str] | None,
           exclude: Iterable[str] = ()) -> tuple[list[RunSpec], object]:
    plan = kind.plan(exp)
    states = plan.states(exp.layout.root)
    exclude = set(exclude)
    ready = [s for s in plan if states[s.id] == PENDING and s.id not in exclude
             and (allowed is None or s.id in allowed)]
    return ready, plan


def _check_finished(exp: Experiment, kind: ExperimentKind, allowed: set[str] | None) -> None:
    """After a loop: every wanted run must be done.

    Raises:
        PlanError: runs left that could not start.
    """
    plan = kind.plan(exp)
    states = plan.states(exp.layout.root)
    left = [s.id for s in plan if states[s.id] != DONE and (allowed is None or s.id in allowed)]
    if left or (allowed is None and plan.later):
        what = left[0] if left else plan.later[0]
        raise PlanError(f"{len(left) or len(plan.later)} run(s) could not start ({what}); "
                        "`kl experiment CONFIG --list` shows what they wait for",
                        exp.layout.root)


# --------------------------------------------------------------------------- executors


@dataclass
class SequentialExecutor:
    """One run at a time, in this process (the default)."""

    def run(self, exp: Experiment, kind: ExperimentKind, ctx: StepContext,
            allowed: set[str] | None = None) -> None:
        while True:
            ready, plan = _ready(exp, kind, allowed)
            if not ready:
                break
            spec = ready[0]
            done = sum(s.is_done(exp.layout.root) for s in plan)
            more = " and more to plan" if plan.later else ""
            ctx.log(f"[{done + 1}/{len(plan)}{more}] {spec.id}: {spec.title}")
            execute(exp, kind, spec, ctx)
        _check_finished(exp, kind, allowed)


def _execute_light(exp, kind, spec: RunSpec, ctx: StepContext, errors: list[str]) -> None:
    """A light run, in the driver; a bad input joins the errors (the workers
    already going finish first)."""
    ctx.log(f"{spec.id}: {spec.title}")
    try:
        execute(exp, kind, spec, ctx)
    except KerasLesionsError as exc:
        errors.append(str(exc))


def _worker_main(connection, config_dict, threads, verbose):
    """A worker process: configure TensorFlow once, then run the specs the
    driver sends, one at a time, answering each through the pipe, until it
    sends None or closes the pipe.

    A bad input is an answer and the worker goes on; a crash or an
    interruption ends the worker (a crashed TensorFlow is not trusted with
    the next run: the retry gets a fresh process).
    """
    from keras_lesions.runtime import (
        configure_tensorflow, quiet_tensorflow_startup, raise_on_sigterm)

    raise_on_sigterm()  # stop() terminates: the write in progress is undone
    try:
        quiet_tensorflow_startup()
        configure_tensorflow(threads)
        while True:
            spec = connection.recv()
            if spec is None:
                return
            try:
                _run_spec(config_dict, spec, verbose)
                answer = ("ok", "")
            except KerasLesionsError as exc:
                answer = ("user-error", str(exc))
            connection.send(answer)
            _forget_models()
    except EOFError:  # the driver has gone
        return
    except KeyboardInterrupt:  # Ctrl-C reaches every worker: the driver reports it once
        _send_last(connection, ("interrupted", ""))
    except BaseException as exc:  # a crash: traceback on stderr, then retried
        traceback.print_exc()
        _send_last(connection, ("crash", f"{type(exc).__name__}: {exc}"))
    finally:
        connection.close()


def _send_last(connection, message) -> None:
    try:
        connection.send(message)
    except OSError:  # the driver closed its end first
        pass


def _forget_models() -> None:
    """Between two runs of a worker: drop the finished run's Keras state, so
    the worker's memory does not grow with the runs it has done (each run
    builds its networks and seeds itself afresh)."""
    import gc

    import keras

    keras.backend.clear_session()
    gc.collect()


@dataclass
class ProcessExecutor:
    """Up to ``jobs`` runs at once, in ``jobs`` worker processes.

    Each worker imports TensorFlow once (several seconds) and then runs one
    run after another; a run whose worker dies is started again in a fresh
    one. Runs' GPU shares (``RunSpec.needs.gpus``) are not budgeted here:
    with a GPU, ``jobs`` runs share it whatever each asks for (Ray budgets
    them).

    Attributes:
        jobs: runs at once.
        threads: TensorFlow threads per run (default: the machine's cores
            shared out among the jobs).
        retries: how many times a run whose process dies is started again.
    """

    jobs: int = 2
    threads: int | None = None
    retries: int = DEFAULT_RETRIES

    def run(self, exp: Experiment, kind: ExperimentKind, ctx: StepContext,
            allowed: set[str] | None = None) -> None:
        import multiprocessing

        spawn = multiprocessing.get_context("spawn")  # TensorFlow does not survive fork
        threads = self.threads or max(1, (os.cpu_count() or 1) // max(1, self.jobs))
        config_dict = worker_config(exp)
        running: dict[str, _Worker] = {}
        idle: list[_Worker] = []
        attempts: dict[str, int] = {}
        errors: list[str] = []
        try:
            while True:
                if not errors:
                    ready, _ = _ready(exp, kind, allowed, exclude=running)
                    light = [s for s in ready if s.light]
                    if light:  # a choice or the report: here, then plan again
                        _execute_light(exp, kind, light[0], ctx, errors)
                        continue
                    for spec in ready[:max(0, self.jobs - len(running))]:
                        attempts[spec.id] = attempts.get(spec.id, 0) + 1
                        worker = idle.pop() if idle else _Worker.start(spawn, config_dict,
                                                                       threads)
                        worker.assign(spec)
                        running[spec.id] = worker
                        ctx.log(f"started {spec.id} (process {worker.process.pid}, "
                                f"{threads} threads" + (f", attempt {attempts[spec.id]}"
                                                        if attempts[spec.id] > 1 else "") + ")")
                if not running:
                    break
                for run_id in _wait_for_any(running):
                    worker = running.pop(run_id)
                    status, message = worker.outcome()
                    if status in ("ok", "user-error") and worker.process.is_alive():
                        idle.append(worker)
                    else:
                        worker.stop()
                    if status == "ok":
                        ctx.log(f"finished {run_id}")
                    elif status == "user-error":
                        errors.append(message)
                    elif attempts[run_id] <= self.retries:
                        ctx.log(f"{run_id} {worker.how_it_ended(status, message)}; starting it "
                                f"again ({attempts[run_id]} of {self.retries + 1} attempts made)")
                    else:
                        errors.append(f"{run_id} {worker.how_it_ended(status, message)} "
                                      f"{attempts[run_id]} times; the other runs were kept")
        finally:
            # Whatever ended the loop (an error here, Ctrl-C), no worker outlives it:
            # an interrupted run resumes from its last epoch checkpoint next time.
            for worker in running.values():
                worker.stop()
            for worker in idle:
                worker.close()
        if errors:
            raise ExecutionError(errors[0])
        _check_finished(exp, kind, allowed)


@dataclass
class _Worker:
    """A worker process, the pipe runs and their outcomes go through, and the
    outcome of the run it was last given."""

    process: object
    connection: object
    message: tuple[str, str] | None = None

    @classmethod
    def start(cls, spawn, config_dict: dict, threads: int) -> "_Worker":
        mine, theirs = spawn.Pipe(duplex=True)
        process = spawn.Process(target=_worker_main, name="kl-worker", daemon=False,
                                args=(theirs, config_dict, threads, 0))
        process.start()
        theirs.close()
        return cls(process, mine)

    def assign(self, spec: RunSpec) -> None:
        self.message = None
        self.connection.send(spec)

    def read(self) -> None:
        """Take the run's outcome off the pipe once it is there."""
        if self.message is None and self.connection.poll():
            try:
                self.message = self.connection.recv()
            except EOFError:  # closed without a message: the process died
                self.message = ("died", "")

    def done(self) -> bool:
        return self.message is not None or not self.process.is_alive()

    def outcome(self) -> tuple[str, str]:
        self.read()
        if self.message is None:  # died without answering
            self.process.join()
            self.message = ("died", "")
        return self.message

    def close(self) -> None:
        """An idle worker: ask it to exit, and make sure it does."""
        try:
            self.connection.send(None)
        except OSError:
            pass
        self.process.join(timeout=30)
        self.stop()

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join()
        self.connection.close()

    def how_it_ended(self, status: str, message: str) -> str:
        if status == "crash":
            return f"failed ({message}; traceback above)"
        code = self.process.exitcode
        if code is not None and code < 0:
            return f"was killed (signal {-code})"
        return f"died (exit code {code})"


def _wait_for_any(running: dict[str, _Worker]) -> list[str]:
    """Ids of the runs whose worker has answered or died, waiting until there
    is one."""
    from multiprocessing.connection import wait

    while True:
        wait([w.process.sentinel for w in running.values()]
             + [w.connection for w in running.values() if w.message is None])
        for worker in running.values():
            worker.read()
        finished = [i for i, w in running.items() if w.done()]
        if finished:
            return finished


def _ray_task(config_dict: dict, spec: RunSpec, threads: int, *dependencies) -> tuple[str, str]:
    """A Ray task: one run. ``dependencies`` are the results of the runs it
    depends on (object references Ray resolves first); only their order matters."""
    if any(status != "ok" for status, _ in dependencies):
        return ("skipped", "")  # a run it needs failed: that failure is reported
    try:
        return ("ok", run_in_worker(config_dict, spec, threads))
    except KerasLesionsError as exc:  # bad input is an answer, not a failure to retry
        return ("user-error", str(exc))


@dataclass
class RayExecutor:
    """Runs as Ray tasks, with their resource requests and dependencies.

    Attributes:
        address: a running cluster ("auto", "ray://host:10001"); None starts a
            local Ray for this experiment.
        num_cpus: CPUs of a local Ray (default: all).
        retries: Ray's ``max_retries`` for a task whose worker dies.
    """

    address: str | None = None
    num_cpus: int | None = None
    retries: int = DEFAULT_RETRIES

    def run(self, exp: Experiment, kind: ExperimentKind, ctx: StepContext,
            allowed: set[str] | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ExecutionError("--ray needs Ray, an optional extra: pip install "
                                 "\"keras-lesions[ray]\"") from None
        started_here = not ray.is_initialized()
        if started_here:
            options = {"include_dashboard": False, "log_to_driver": True}
            if self.address:
                options["address"] = self.address
            elif self.num_cpus:
                options["num_cpus"] = self.num_cpus
            ray.init(**options)
        try:
            self._loop(ray, exp, kind, ctx, allowed)
        finally:
            if started_here:
                ray.shutdown()

    def _loop(self, ray, exp, kind, ctx, allowed) -> None:
        has_gpu = ray.cluster_resources().get("GPU", 0) > 0
        # max_calls=1: a fresh worker process per run, as with --jobs (TensorFlow
        # settings and GPU memory are per process).
        # retry_exceptions: a crash inside the task is retried like a dead worker
        # (bad input comes back as a result, never as an exception).
        task = ray.remote(max_calls=1, retry_exceptions=True)(_ray_task)
        config_dict = worker_config(exp)
        in_flight: dict[str, object] = {}
        errors: list[str] = []
        while True:
            plan = kind.plan(exp)
            states = plan.states(exp.layout.root)
            light = [s for s in plan if s.light and states[s.id] == PENDING and not errors
                     and (allowed is None or s.id in allowed)]
            if light:  # a choice or the report: here, then plan again
                _execute_light(exp, kind, light[0], ctx, errors)
                continue
            for spec in plan if not errors else ():
                if (spec.light or states[spec.id] == DONE or spec.id in in_flight
                        or (allowed is not None and spec.id not in allowed)):
                    continue
                if not all(states[d] == DONE or d in in_flight for d in spec.depends_on):
                    continue
                dependencies = [in_flight[d] for d in spec.depends_on if d in in_flight]
                in_flight[spec.id] = task.options(
                    num_cpus=spec.needs.cpus, num_gpus=spec.needs.gpus if has_gpu else 0,
                    max_retries=self.retries, name=spec.id,
                ).remote(config_dict, spec, spec.needs.cpus, *dependencies)
                ctx.log(f"submitted {spec.id}")
            if not in_flight:
                break
            finished, _ = ray.wait(list(in_flight.values()), num_returns=1)
            for run_id in [i for i, ref in in_flight.items() if ref in finished]:
                ref = in_flight.pop(run_id)
                try:
                    status, message = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    cause = getattr(exc, "cause", None) or exc
                    errors.append(f"{run_id} failed ({type(cause).__name__}: "
                                  f"{str(cause).splitlines()[0] if str(cause) else ''}) after "
                                  f"{self.retries + 1} attempts; the other runs were kept")
                    continue
                if status == "user-error":
                    errors.append(message)
                elif status == "ok":
                    ctx.log(f"finished {run_id}")
        if errors:
            raise ExecutionError(errors[0])
        _check_finished(exp, kind, allowed)
