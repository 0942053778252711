"""One run of an experiment by hand: what ``kl augment``, ``train-cnn``,
``train-gan``, ``train-acgan``, ``evaluate-acgan`` and ``train-disentangle`` run.

Each trains the very run the experiment's plan would (same folder, same
settings), so a later ``kl experiment`` reuses it, and refuses what the plan
would refuse. A fold here is a fold of repeat 0, the dataset's own fold
assignment; the repeats beyond it are run by ``kl experiment``.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from keras_lesions.config import ExperimentConfig
from keras_lesions.data.folds import train_test_indices
from keras_lesions.evaluate.crossval import group_name, run_record
from keras_lesions.evaluate.report import write_summary
from keras_lesions.experiments import classic_curve as classic
from keras_lesions.experiments import gan_curve as gan
from keras_lesions.experiments import mixture
from keras_lesions.experiments.executors import execute
from keras_lesions.experiments.kind import StepContext
from keras_lesions.experiments.plan import RunSpec
from keras_lesions.experiments.registry import open_for
from keras_lesions.runs.folder import (
    RunError, discard_for_restart, is_done, read_done, read_run_info, tidy_finished)


def build_augmentation_files(config: ExperimentConfig, folds=None, *, log=print,
                             progress=None) -> list[tuple[int, Path]]:
    """What ``kl augment`` runs: the augmentation groups of the given folds
    (default: the config's), as the plan's ``fold<k>/augment`` runs build them."""
    exp = open_for(config, log, record=False)
    ctx = StepContext(log=log, progress=progress)
    folds = list(folds) if folds is not None else list(config.evaluate.folds)
    for fold in folds:
        exp.split(0, fold)  # fold in range
    exp.record()
    done = []
    for fold in folds:
        done.append((fold, classic.build_augmentation(exp, 0, fold, ctx)))
    return done


def train_cnn(config: ExperimentConfig, fold: int, group_index: int, *, extra_datasets=(),
              run_dir: Path | None = None, resume: bool = False, restart: bool = False,
              log=print, progress=None, verbose: int | str = "auto") -> dict:
    """What ``kl train-cnn`` runs: one classifier on D_aug^(group_index+1) of a
    fold (plus extra datasets), tested on the fold; the augmentation groups are
    built first if missing. A finished run is reported, never trained again.

    Args:
        config: the experiment (``train.seed`` is the run's seed).
        fold: the test fold.
        group_index: 0-based data group.
        extra_datasets: extra training datasets (.h5), e.g. synthetic lesions.
        run_dir: the run folder (default: the plan's, under the experiment).
        resume: continue an interrupted run.
        restart: discard an unfinished run's folder and train it from the start.

    Returns:
        ``{"run_dir", "accuracy", "already_done", "fold"}``.
    """
    exp = open_for(config, log, record=False)
    ctx = StepContext(log=log, progress=progress, verbose=verbose, resume=resume)
    seed = config.train.seed
    split = exp.split(0, fold)  # fold in range
    classic.check_group(exp.config, group_index)
    # runs with extra data never pass for plain CNN-AUG runs
    group = group_name(group_index) + "".join(f"+{Path(p).stem}" for p in extra_datasets)
    additions = tuple({"source": "file", "path": str(Path(p).resolve())} for p in extra_datasets)
    spec = classic.classifier_spec(exp, 0, fold, group_index, seed, group=group,
                                   additions=additions)
    run_dir = Path(run_dir) if run_dir is not None else exp.layout.run_dir(spec.id)
    if is_done(run_dir):
        info = read_run_info(run_dir, kind="lesion_classifier")  # another kind: one line
        if info.get("additions", []) != list(additions):
            recorded = ", ".join(a.get("path", "?") for a in info.get("additions", [])) or "none"
            raise RunError(f"holds a finished run trained with other extra datasets "
                           f"({recorded}); the run id comes from the files' names: rename "
                           "the file or pass --run-dir", run_dir)
        accuracy = read_done(run_dir).get("test_accuracy")
        tidy_finished(run_dir)
        if not isinstance(accuracy, float):
            raise RunError("done.json records no test accuracy; delete the run folder to train "
                           "it again", run_dir)
        return {"run_dir": run_dir, "accuracy": accuracy, "already_done": True, "fold": fold}
    for path in extra_datasets:  # validate every input before anything is written
        classic.extra_training_set(path, exp.dataset, split, exp.config.classifier.input_size)
    from keras_lesions.runs.checkpoint import check_resumable
    from keras_lesions.train.classifier import classifier_config_settings

    check_resumable(run_dir, resume=resume, restart=restart,
                    settings={**classifier_config_settings(exp.config, seed), "fold": fold,
                              "group": group})
    exp.record()
    if restart:
        discard_for_restart([run_dir], log)
    classic.build_augmentation(exp, 0, fold, ctx)
    accuracy = classic.run_classifier(exp, spec, ctx, run_dir)
    return {"run_dir": run_dir, "accuracy": accuracy, "already_done": False, "fold": fold}


def train_gans(config: ExperimentConfig, folds=None, classes=(), acgan: bool = False, *,
               resume: bool = False, restart: bool = False, log=print, progress=None) -> list:
    """What ``kl train-gan`` / ``kl train-acgan`` run: the plan's DCGAN runs of
    ``classes`` (and the ACGAN) of ``folds`` (default: the config's), after
    the augmentation groups they train on. With ``restart``, their unfinished
    runs are discarded and trained from the start.

    Returns:
        The run folders, in order.
    """
    exp = open_for(config, log, record=False)
    classes = exp.class_names if classes is gan.ALL_CLASSES else list(classes)
    ids = gan.gan_runs(exp, folds if folds is not None else config.evaluate.folds, classes, acgan)
    from keras_lesions.runs.checkpoint import check_resumable  # loads TensorFlow

    ctx = StepContext(log=log, progress=progress, resume=resume)
    the_plan = gan.plan(exp)
    for run_id in ids:
        check_resumable(exp.layout.run_dir(run_id), resume=resume, restart=restart,
                        settings={"gan": asdict(exp.config.gan)})
    exp.record()
    if restart:
        discard_for_restart([exp.layout.run_dir(i) for i in ids], log)
    for spec in the_plan.with_dependencies(ids):
        if not spec.is_done(exp.layout.root):
            execute(exp, gan.KIND, spec, ctx)
    return [exp.layout.run_dir(i) for i in ids]


def evaluate_acgan(config: ExperimentConfig, folds=None, log=print) -> dict:
    """Table 5, last row, on its own (``kl evaluate-acgan``): each fold's ACGAN
    discriminator classifies that fold's test lesions.

    Raises:
        RunError: a fold's ACGAN is not trained (``kl train-acgan``).
    """
    exp = open_for(config, log, record=False)
    folds = list(folds) if folds is not None else list(config.evaluate.folds)
    gans = gan.gan_runs(exp, folds, acgan=True)
    for gan_run in gans:  # every fold's ACGAN before anything is written
        if not is_done(exp.layout.run_dir(gan_run)):
            raise RunError("holds no finished ACGAN: train it with kl train-acgan",
                           exp.layout.run_dir(gan_run))
    exp.record()
    records = []
    for fold, gan_run in zip(folds, gans):
        spec = RunSpec(id=gan.discriminator_id(0, fold, group_name(gan.base_index(exp, 0, fold))),
                       step="acgan-discriminator",
                       params={"repeat": 0, "fold": fold, "gan": gan_run})
        if not is_done(exp.layout.run_dir(spec.id)):
            gan.acgan_discriminator_step(exp, spec, StepContext())
        records.append(run_record(exp.layout.run_dir(spec.id)))
    result = exp.summarize(records)
    write_summary(result, exp.layout.report, "ACGAN_discriminator",
                  "ACGAN discriminator as the classifier (Table 5, last row)")
    return result


def disentangle_fold(config: ExperimentConfig, fold: int, *, run_dir=None, resume: bool = False,
                     restart: bool = False, log=print, progress=None) -> dict:
    """What ``kl train-disentangle`` runs: both steps of one fold, into the plan's
    run folder (``fold<k>/disentangle/seed<s>``) unless ``run_dir`` says otherwise.

    Returns:
        ``{"run_dir", "already_done", "baseline_accuracy", "metrics"}``.
    """
    exp = open_for(config, log, record=False)
    train_test_indices(exp.dataset.folds, fold, where=exp.dataset_path)  # fold in range
    run_dir = Path(run_dir) if run_dir is not None else exp.layout.run_dir(
        mixture.disentangle_id(fold, config.disentangle.seed))
    if is_done(run_dir):
        done = read_done(run_dir)
        tidy_finished(run_dir)
        return {"run_dir": run_dir, "already_done": True,
                "baseline_accuracy": done.get("baseline_accuracy"),
                "metrics": done.get("metrics", {})}
    from keras_lesions.runs.checkpoint import check_resumable

    check_resumable(run_dir, resume=resume, restart=restart,
                    settings={"disentangle": asdict(exp.config.disentangle), "fold": fold})
    exp.record()
    if restart:
        discard_for_restart([run_dir], log)
    from keras_lesions.train.disentangle import train_disentangle

    result = train_disentangle(exp.dataset, exp.dataset_path, fold, config, run_dir,
                               resume=resume, log=log, progress=progress)
    return {**result, "run_dir": run_dir, "already_done": False}
