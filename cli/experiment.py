"""``kl experiment``, ``augment``, ``evaluate``, ``evaluate-acgan``: experiments and results."""
from __future__ import annotations

from pathlib import Path

import click

from keras_lesions_cli.common import (
    CONFIG, ProgressBars, config_option, load, note, output_dir_option)


def _executor(jobs, threads, ray, ray_address, retries):
    from keras_lesions.experiments.executors import (
        DEFAULT_RETRIES, ProcessExecutor, RayExecutor, SequentialExecutor)

    ray = ray or ray_address is not None
    if ray and jobs:
        raise click.UsageError("--jobs and --ray are two executors: pass one of them")
    if threads is not None and not jobs:
        raise click.UsageError("--threads sets the threads of each --jobs process: pass --jobs")
    if retries is not None and not (jobs or ray):
        raise click.UsageError("--retries is for runs in other processes: pass --jobs or --ray")
    retries = DEFAULT_RETRIES if retries is None else retries
    if ray:
        return RayExecutor(address=ray_address, retries=retries)
    if jobs:
        return ProcessExecutor(jobs=jobs, threads=threads, retries=retries)
    return SequentialExecutor()


@click.command("experiment")
@click.argument("config_path", metavar="CONFIG", type=CONFIG)
@output_dir_option()
@click.option("--epochs", type=click.IntRange(min=1),
              help="Overrides the epochs of what the kind trains (classic-curve, gan-curve: "
                   "train.epochs; mixture: disentangle.classifier_epochs and "
                   "disentangle.epochs), for smoke runs.")
@click.option("--list", "list_plan", is_flag=True,
              help="Print the plan (run id, state: done / pending / blocked, what it waits "
                   "for) and stop.")
@click.option("--only", "only", metavar="RUN_ID",
              help="Run just this run of the plan; refused unless its dependencies are done.")
@click.option("--report", "report_only", is_flag=True,
              help="Rebuild the report from the finished runs, training nothing.")
@click.option("--jobs", type=click.IntRange(min=1),
              help="Run up to N independent runs at once in N worker processes, each with "
                   "its share of the CPU threads and GPU memory growth, so N runs share a GPU "
                   "(whatever share of one each run asks for: mind the memory).")
@click.option("--threads", type=click.IntRange(min=1),
              help="TensorFlow threads per run with --jobs (default: cores / jobs).")
@click.option("--ray", "ray", is_flag=True,
              help="Submit the runs as Ray tasks with their resource requests and "
                   "dependencies, to a local Ray (pip install \"keras-lesions[ray]\").")
@click.option("--ray-address", metavar="ADDRESS",
              help="Submit them to the Ray cluster at ADDRESS instead (\"auto\", "
                   "\"ray://host:10001\"); the experiment folder and dataset must be on a "
                   "filesystem every node sees at the same path.")
@click.option("--restart", is_flag=True,
              help="Discard the unfinished runs (of --only RUN_ID, if given) and train them "
                   "from the start instead of resuming them; finished runs are kept.")
@click.option("--retries", type=click.IntRange(min=0),
              help="With --jobs or --ray: how often a run whose process dies or crashes is "
                   "started again (default 2; bad input never is).")
def experiment_command(config_path, output_dir, epochs, list_plan, only, report_only, jobs,
                       threads, ray, ray_address, restart, retries):
    """Run a whole experiment from its config, as a plan of runs; resumes where it stopped.

    The config's kind decides the plan. classic-curve: the augmentation groups
    and a classifier per data group, fold and seed, then D_aug optimal and the
    curve (report/classic_curve.*). gan-curve: that, then per-class DCGANs and
    an ACGAN per fold on D_aug optimal, synthetic sets, the classifier on D_aug
    optimal plus growing synthetic (and extra real) sets, Tables 3, 5, 7 and
    generator quality (report/gan_report.md). mixture: Ben-Cohen 2019's
    disentanglement, mixtures and proposed classifier per fold
    (report/mixture_report.md, Tables 2 and 3). Finished runs are never run
    again; an interrupted run continues from its last epoch.
    """
    from keras_lesions.experiments.registry import epoch_overrides
    from keras_lesions.experiments.run import (
        describe_plan, rebuild_report, run_experiment, summary)

    if sum(map(bool, (list_plan, only, report_only))) > 1:
        raise click.UsageError("--list, --only and --report are three different things: pass one")
    if restart and (list_plan or report_only):
        raise click.UsageError("--restart trains; --list and --report do not")
    config = load(config_path, {"output_dir": output_dir})
    if epochs is not None:
        config = load(config_path, {"output_dir": output_dir, **epoch_overrides(config, epochs)})
    if list_plan:
        click.echo(describe_plan(config, log=note))
        return
    if report_only:
        result = rebuild_report(config, log=note)
    else:
        bars = ProgressBars("epoch")
        try:
            result = run_experiment(config, executor=_executor(jobs, threads, ray, ray_address,
                                                               retries),
                                    only=only, log=note, progress=bars, restart=restart)
        finally:
            bars.close()
        if only is not None and only != "report":
            click.echo(f"{only}: done")
            return
    click.echo("\n" + summary(config, result))


@click.command("augment")
@config_option("configs/frid-adar-2018-quick.yaml")
@click.option("--fold", type=click.IntRange(min=0), multiple=True,
              help="Test fold whose training folds are augmented (repeatable; default: the "
                   "config's folds).")
@output_dir_option()
def augment_command(config_path, fold, output_dir):
    """Build the offline classic-augmentation groups D_aug^1..D_aug^9.

    For each test fold, the training folds' lesions are rotated, flipped,
    translated and re-cropped at other scales (Frid-Adar §3.1), and the nested
    groups are stored once (HDF5) for every run to reuse. The same as the
    plan's fold<k>/augment runs.
    """
    from keras_lesions.experiments.manual import build_augmentation_files

    config = load(config_path, {"output_dir": output_dir})
    for f, path in build_augmentation_files(config, list(fold) or None, log=note,
                                            progress=ProgressBars("image")):
        click.echo(f"fold {f}: {path}")


@click.command("evaluate")
@click.argument("runs", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              help="Report folder (default: RUNS/report).")
@click.option("--positive-class", help="Two classes: the class whose sensitivity the operating "
                                       "points give (default: the second class).")
@click.option("--target-sensitivity", type=click.FloatRange(0, 1, min_open=True), default=0.9,
              show_default=True, help="Two classes: the sensitivity a threshold chosen on each "
                                      "run's validation patients aims at.")
def evaluate_command(runs, out, positive_class, target_sensitivity):
    """Cross-validated metrics of the finished classifier runs under RUNS.

    Groups the runs by data group; for each, sums the confusion matrices over
    test folds and reports total accuracy beside the majority-class baseline,
    balanced accuracy and per-class sensitivity/specificity with
    patient-bootstrap CIs, F1 per class and macro, the weighted averages, the
    class counts the runs trained on, per-fold accuracy (mean ± std) and 95% CIs over
    seeds; ROC AUC (two classes; macro one-vs-rest for more) with a
    patient-bootstrap CI; for two classes, sensitivity and specificity at 0.5
    and at a threshold chosen on each run's validation patients; the expected
    calibration error (15 bins). As JSON, Markdown and PNG (confusion matrix,
    reliability diagram).
    """
    from keras_lesions.evaluate.crossval import evaluate_runs
    from keras_lesions.evaluate.report import text_table

    results = evaluate_runs(runs, out, positive_class=positive_class,
                            target_sensitivity=target_sensitivity)
    for group, result in results.items():
        click.echo(f"\n{group}")
        click.echo(text_table(result))
    click.echo(f"\nreport: {out or runs / 'report'}")


@click.command("evaluate-acgan")
@config_option("configs/frid-adar-2018-gan-quick.yaml",
               "Experiment config (YAML); its gan section sets the GAN.")
@click.option("--fold", type=click.IntRange(min=0), multiple=True,
              help="Folds (default: the config's).")
def evaluate_acgan_command(config_path, fold):
    """The ACGAN discriminator used directly as the classifier (Table 5, last row).

    Each fold's trained ACGAN classifies that fold's test lesions with its
    auxiliary class head; the cross-validated table is printed and written to
    OUTPUT_DIR/NAME/report/ACGAN_discriminator.*.
    """
    from keras_lesions.evaluate.report import text_table
    from keras_lesions.experiments.manual import evaluate_acgan

    config = load(config_path, {})
    click.echo(text_table(evaluate_acgan(config, list(fold) or None, log=note)))


@click.command("compare")
@click.argument("baseline_path", metavar="BASELINE_CONFIG", type=CONFIG)
@click.argument("proposed_path", metavar="PROPOSED_CONFIG", type=CONFIG)
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              help="Report folder (default: compare-BASELINE-vs-PROPOSED beside the "
                   "experiments).")
@output_dir_option()
def compare_command(baseline_path, proposed_path, out, output_dir):
    """Compare the CNN-AUG arms of two finished experiments on the same lesions.

    For questions no one experiment asks, e.g. "does class balancing help on
    my data?": two configs that differ in train.class_balance, each run with
    `kl experiment`. Pairs their cells (same repeat, fold, seed and test
    lesions) and gives the verdict on the primary metric with its intervals,
    each class's sensitivity change, and every setting in which they differ.
    """
    from keras_lesions.evaluate.report import side_by_side
    from keras_lesions.experiments.compare import compare_experiments

    where = {"output_dir": output_dir}
    result = compare_experiments(load(baseline_path, where), load(proposed_path, where), out,
                                 log=note)
    click.echo(side_by_side(result["summaries"]["baseline"], result["summaries"]["proposed"],
                            titles=("baseline", "proposed")))
    click.echo("\nsettings that differ: " + ("; ".join(result["differences"]) or "none"))
    click.echo(result["choices"])
    click.echo(f"\n{result['comparison']['verdict']}\n\nreport: {result['report']}")


@click.command("tsne")
@click.argument("runs", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The picture (PNG); the scores go beside it as JSON.")
@click.option("--augmentations", type=click.IntRange(min=0), default=0, show_default=True,
              help="Also embed this many classic augmentations of each test lesion.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of t-SNE and of the augmentations.")
def tsne_command(runs, out, augmentations, seed):
    """Fig. 9: t-SNE of the last hidden layer of classifier RUNS, side by side.

    Embeds each run's own test-fold lesions (e.g. CNN-AUG beside CNN-AUG-GAN
    of the same fold), coloured by class, and scores how well the classes
    separate in the feature space itself (t-SNE distances mean little): the
    silhouette score and the leave-one-out 5-nearest-neighbour accuracy.
    """
    from keras_lesions.tsne import tsne_report

    if out.suffix.lower() != ".png":
        raise click.BadParameter(f"{out} must end in .png", param_hint="'-o'")
    result = tsne_report(runs, out, augmentations=augmentations, seed=seed)
    for panel in result["panels"]:
        s = panel["scores"]
        click.echo(f"{panel['title']}: silhouette {s['silhouette']:.3f}, {s['k']}-NN accuracy "
                   f"{100 * s['knn_accuracy']:.1f}% over {s['n']} real test lesions")
    click.echo(f"picture: {result['png']}\nscores: {result['json']}")


@click.command("baselines")
@click.argument("dataset", required=False,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--config", "config_path", type=CONFIG,
              help="An experiment: its cells (every repeat and fold) instead of the dataset's "
                   "own folds, its class balance and primary metric, and its CNN rows.")
@click.option("--output-dir", help="Overrides the config's output_dir.")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path),
              help="Report folder (default: the experiment's report/baselines, or "
                   "DATASET's folder/baselines).")
@click.option("--method", "methods", multiple=True, metavar="NAME",
              help="Only these methods (repeatable): 'GLCM + SVM', 'Gabor + SVM', "
                   "'BoVW + SVM', 'BoVW-MI single representation', "
                   "'BoVW-MI multi representation'.")
@click.option("--class-weights", type=click.Choice(["none", "balanced"]),
              help="SVM class weights with DATASET (default none); an experiment's follow its "
                   "train.class_balance.")
def baselines_command(dataset, config_path, output_dir, out, methods, class_weights):
    """Table 6: texture and bag-of-words baselines with SVMs (Frid-Adar §4.5).

    GLCM + SVM, Gabor + SVM, BoVW + SVM and BoVW-MI (single and multi-binary
    representations) on patient-level folds: each fitted on a cell's training
    patients only, its SVM's C and gamma chosen by an inner cross-validation
    over them, scored with the experiments' metrics. Give DATASET (its own
    folds) or --config (an experiment's cells, beside its CNN-AUG and
    CNN-AUG-GAN).
    """
    from keras_lesions.baselines.crossval import METHODS
    from keras_lesions.baselines.run import baselines_on_dataset, check_methods
    from keras_lesions.experiments.table6 import baselines_on_experiment

    if (dataset is None) == (config_path is None):
        raise click.UsageError("give DATASET or --config (one of them)")
    if config_path is not None and class_weights is not None:
        raise click.UsageError("--class-weights is for DATASET: an experiment's SVMs follow its "
                               "train.class_balance")
    if dataset is not None and output_dir is not None:
        raise click.UsageError("--output-dir is for --config (where the experiment lives)")
    chosen = check_methods(methods) if methods else list(METHODS)
    bar = ProgressBars("run")
    if config_path is not None:
        result = baselines_on_experiment(load(config_path, {"output_dir": output_dir}), out,
                                         methods=chosen, log=note,
                                         progress=lambda done, total: bar("baselines", done, total))
    else:
        result = baselines_on_dataset(dataset, out or dataset.parent / "baselines",
                                      methods=chosen,
                                      class_weight="balanced" if class_weights == "balanced"
                                      else None, log=note, progress=lambda done, total: bar("baselines", done, total))
    for name, summary in result["summaries"].items():
        pooled = summary["pooled"]
        click.echo(f"{name:<32} sensitivity {100 * pooled['weighted_sensitivity']:5.1f}%  "
                   f"specificity {100 * pooled['weighted_specificity']:5.1f}%  balanced "
                   f"accuracy {100 * pooled['balanced_accuracy']:5.1f}%")
    click.echo(f"Table 6: {result['table']}")


COMMANDS = [experiment_command, augment_command, evaluate_command, evaluate_acgan_command,
            compare_command, tsne_command, baselines_command]
