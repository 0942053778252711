"""Running an experiment from its config: the library function behind ``kl experiment``."""
from __future__ import annotations

import json

from keras_lesions.config import ExperimentConfig
from keras_lesions.experiments.context import Experiment, Log, Progress, report_settings
from keras_lesions.experiments.executors import (
    ExecutionError, SequentialExecutor, execute, executing_runs)
from keras_lesions.experiments.kind import StepContext
from keras_lesions.experiments.plan import DONE, Plan, PlanError
from keras_lesions.experiments.registry import kind_of, open_for
from keras_lesions.experiments.table4 import reader_study_of
from keras_lesions.runs.folder import check_run_folder, discard_for_restart, tidy_finished


def run_experiment(config: ExperimentConfig, *, executor=None, only: str | None = None,
                   log: Log = print, progress: Progress | None = None,
                   verbose: int | str = 0, restart: bool = False) -> dict | None:
    """Run an experiment's plan (or one run of it); resumable.

    Args:
        config: the experiment.
        executor: ``SequentialExecutor`` (default), ``ProcessExecutor`` or
            ``RayExecutor``.
        only: run just this run id; refused unless its dependencies are done.
        log: one line per step.
        progress: ``progress(label, done, total)`` for bars (this process only).
        verbose: Keras ``fit`` verbosity.
        restart: discard the unfinished runs (of ``only``, if given) and train
            them from the start instead of resuming them (a damaged
            checkpoint); finished runs are kept.

    Returns:
        The report's result (``report/result.json``), or None when ``only``
        ran a run other than the report.

    Raises:
        PlanError: an unknown ``only`` id, or one whose dependencies are not done.
        ExecutionError: a run that failed.
    """
    exp = open_for(config, log, record=False)
    reader_study_of(config, exp.class_names)  # a wrong study path is found now, not at the end
    kind = kind_of(config)
    executor = executor or SequentialExecutor()
    ctx = StepContext(log=log, progress=progress, verbose=verbose)
    plan = kind.plan(exp)
    # Refused before anything is written: an unknown id or one still waiting,
    # a damaged run folder.
    if only is not None:
        spec = plan.get(only)
        states = plan.states(exp.layout.root)
        waiting = [d for d in spec.depends_on if states[d] != DONE]
        if waiting:
            raise PlanError(f"run {only!r} needs {len(waiting)} run(s) not done yet, such as "
                            f"{waiting[0]!r}: run them first (or the whole experiment)",
                            exp.layout.root)
    running = executing_runs(exp)
    for spec in [plan.get(only)] if only is not None else plan.specs:
        run_dir = exp.layout.run_dir(spec.id)
        if spec.is_done(exp.layout.root):
            continue
        if restart and spec.id in running:
            raise ExecutionError(f"run {spec.id} is being run by {running[spec.id]}; it cannot "
                                 "be restarted now", exp.layout.root)
        check_run_folder(run_dir, resume=True, restart=restart)
    exp.record()
    for spec in plan.specs:  # what a kill right after a run finished left
        tidy_finished(exp.layout.run_dir(spec.id))
    if only in (None, "report") and not plan.later and any(s.id == "report" for s in plan.specs):
        reason = stale_report(exp, plan)
        if reason:  # the report is remade from the finished runs, nothing else
            log(f"the report is made again: {reason}")
            exp.layout.result.unlink()
    if restart:
        discard_for_restart([exp.layout.run_dir(s.id) for s in
                             ([plan.get(only)] if only is not None else plan.specs)], log)
    if only is not None:
        if plan.get(only).is_done(exp.layout.root):
            log(f"{only} is already done; finished runs are never run again")
        else:
            executor.run(exp, kind, ctx, allowed={only})
        return load_result(config) if only == "report" else None
    executor.run(exp, kind, ctx)
    return load_result(config)


def stale_report(exp: Experiment, plan: Plan) -> str | None:
    """Why the finished report must be made again, or None: a run it reads
    is not finished or finished after it (``evaluate.baselines`` turned on
    for a finished experiment), a report-only setting changed since, the
    report predates the record of its settings, or the reader study holds
    answers the report did not read. Remaking it is cheap: it reads
    finished runs."""
    report = plan.get("report")
    if not report.is_done(exp.layout.root):
        return None
    made = exp.layout.result.stat().st_mtime
    for run_id in report.depends_on:
        output = exp.layout.root / plan.get(run_id).output
        if not output.exists():
            return f"it does not have run {run_id} yet"
        if output.stat().st_mtime > made:
            return f"run {run_id} finished after it"
    try:
        result = json.loads(exp.layout.result.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return f"{exp.layout.result} is unreadable"
    recorded = result.get("report_settings") if isinstance(result, dict) else None
    if not isinstance(recorded, dict):
        return "it was made before reports recorded their settings"
    now = report_settings(exp.config)
    changed = [key for key in now if recorded.get(key) != now[key]]
    if changed:
        return f"{changed[0]} changed"
    if now["evaluate.reader_study"] is not None:
        answers = reader_study_of(exp.config).answer_count()
        if answers != result.get("reader_study_answers"):
            return "the reader study holds answers it has not read"
    return None


def rebuild_report(config: ExperimentConfig, log: Log = print) -> dict:
    """Write the report again from the finished runs (``kl experiment --report``).

    Raises:
        PlanError: runs the report reads are not finished.
    """
    exp = open_for(config, log)
    reader_study_of(config, exp.class_names)
    kind = kind_of(config)
    plan = kind.plan(exp)
    states = plan.states(exp.layout.root)
    left = [s.id for s in plan if s.step != "report" and states[s.id] != DONE]
    if left or plan.later:
        raise PlanError(f"the report needs every run finished; {len(left) or 'some'} are not "
                        f"(such as {(left or plan.later)[0]!r}): run the experiment first",
                        exp.layout.root)
    execute(exp, kind, plan.get("report"), StepContext(log=log))
    return load_result(config)


def describe_plan(config: ExperimentConfig, log: Log = print) -> str:
    """The plan as a table (``kl experiment --list``), with the runs going on now.

    Looking records nothing: a folder never opened is not fingerprinted by a
    listing (only generated phantoms are written, the plan needs their classes).
    """
    from keras_lesions.experiments.executors import executing_runs

    exp = open_for(config, log, record=False)
    kind = kind_of(config)
    return (f"{kind.name}: {kind.description}\n\n"
            + kind.plan(exp).describe(exp.layout.root, executing_runs(exp)))


def load_result(config: ExperimentConfig) -> dict | None:
    """The report's result, if the report was written."""
    from keras_lesions.experiments.context import experiment_root
    from keras_lesions.experiments.layout import ExperimentLayout

    from keras_lesions.runs.folder import read_json_record

    path = ExperimentLayout(experiment_root(config)).result
    return read_json_record(path) if path.is_file() else None


def summary(config: ExperimentConfig, result: dict) -> str:
    """The result for a terminal, as its kind writes it."""
    return kind_of(config).summary(result)
