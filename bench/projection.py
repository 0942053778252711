"""Whole-plan projection: how long each bundled config's experiment takes,
from the benchmark's measured FLOPs per image and images/s.

    python bench/projection.py bench/results.json
    python bench/projection.py docs/results/bench-2core-cpu.json --gpu-tflops 19.5 --utilization 0.3

For every config it counts, from the config alone, the training images each
kind of step sees over the whole plan (runs × SGD steps × batch), then

* **this CPU**: images ÷ the suite's measured images/s of that step at that
  size (ours), so a projection, not a measurement: it leaves out what is not
  a training step (augmentation groups, predictions, checkpoints, reports);
* **one GPU**: FLOPs ÷ (the GPU's float32 peak × an assumed utilisation).
  Both numbers are assumptions, printed beside the result: no GPU machine
  ran this project (DEVELOPERS.md), so no figure here is a GPU measurement.

What it cannot know before the run is counted as a range: the GANs train on
each cell's D_aug optimal, chosen during the run, so their images are given
for the smallest and the largest augmentation group.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

# (config, the bench size whose networks and batches it trains; bench/run.py's
# SIZES). The -quick configs (kl demo) are measured whole instead: README.
CONFIGS = (
    ("frid-adar-2018-gan-cpu.yaml", "cpu"),
    ("frid-adar-2018.yaml", "paper"),
    ("ben-cohen-2019-cpu.yaml", "cpu"),
    ("ben-cohen-2019.yaml", "paper"),
)


def fit_lesions(n_lesions: int, folds: int, validation_fraction: float) -> float:
    """Lesions a cell trains on: the training folds less the validation share."""
    return n_lesions * (folds - 1) / folds * (1 - validation_fraction)


def frid_adar_images(config, n_lesions: int, n_classes: int, folds: int) -> dict:
    """Training images per step kind over the plan of a gan-curve (or
    classic-curve) config, with the number of runs and each run's epochs:
    {"classifier": (n, runs, epochs), "dcgan": ((low, high), runs, epochs), ...}."""
    e, t, s, g = config.evaluate, config.train, config.synth, config.gan
    cells = e.repeats * len(e.folds)
    fit = fit_lesions(n_lesions, folds, e.validation_fraction)

    def classifier_images(n_train: float) -> float:
        if t.steps:
            return t.epochs * math.ceil(t.steps / t.epochs) * t.batch_size
        return t.epochs * n_train  # epochs over its own set

    groups = config.augment.group_sizes
    classic = sum(classifier_images(fit + added) for added in groups) * cells * len(e.seeds)
    classifier_runs = len(groups) * cells * len(e.seeds)
    if config.kind != "gan-curve":
        return {"classifier": (classic, classifier_runs, t.epochs)}
    arms_per_size = 1 + int(s.acgan) + int(s.compare_diff_augment) + int(s.more_real_data) + \
        int(s.classic_control)
    base_high = fit + max(groups)
    classic += sum(classifier_images(base_high + n * n_classes)
                   for n in s.per_class_sizes) * arms_per_size * cells * len(e.seeds)
    classifier_runs += len(s.per_class_sizes) * arms_per_size * cells * len(e.seeds)
    images = {"classifier": (classic, classifier_runs, t.epochs)}

    def gan_images(base: float, per_gan_share: float) -> float:
        per_gan = base * per_gan_share
        batch = min(g.batch_size, per_gan)
        return g.epochs * (per_gan // batch) * batch

    dcgans = n_classes * (1 + int(s.compare_diff_augment))
    images["dcgan"] = (tuple(gan_images(fit + added, 1 / n_classes) * dcgans * cells
                             for added in (min(groups), max(groups))), dcgans * cells, g.epochs)
    if s.acgan:
        images["acgan"] = (tuple(gan_images(fit + added, 1.0) * cells
                                 for added in (min(groups), max(groups))), cells, g.epochs)
    return images


def ben_cohen_images(config, n_lesions: int, folds: int) -> dict:
    """Training images per step kind over a mixture config's plan, with the
    number of runs and each run's epochs (as :func:`frid_adar_images`)."""
    d, e = config.disentangle, config.evaluate
    cells = e.repeats * len(e.folds)
    per_epoch = fit_lesions(n_lesions, folds, d.validation_fraction) * d.repeats
    classifiers = 1 + 1 + len(config.mixture.controls)  # step 1 (the baseline), proposed, controls
    runs = cells * len(e.seeds)
    return {"step1": (classifiers * d.classifier_epochs * per_epoch * runs, classifiers * runs,
                      d.classifier_epochs),
            "step2": (d.epochs * per_epoch * runs, runs, d.epochs)}


def plan_images(config) -> dict:
    from keras_lesions.data.registry import PRESETS

    preset = PRESETS[config.data.dataset.split(":", 1)[1]]
    if config.kind == "mixture":
        return ben_cohen_images(config, preset.n_lesions, preset.k_folds)
    return frid_adar_images(config, preset.n_lesions, len(preset.class_names), preset.k_folds)


def _both(value) -> tuple[float, float]:
    return value if isinstance(value, tuple) else (value, value)


def project(bench: dict, gpu_tflops: float, utilization: float) -> list[dict]:
    from keras_lesions.config import load_config, resolve_config_path

    measured = {(r["step"], r["size"]): r for r in bench["steps"] if "ours" in r}
    rows = []
    for name, size in CONFIGS:
        config = load_config(resolve_config_path(REPO / "configs" / name))
        cpu_s, gpu_s, flop = [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]
        known, total_runs, by_step = True, 0, {}
        for step, (images, runs, epochs) in plan_images(config).items():
            total_runs += runs
            r = measured.get((step, size))
            if r is None:
                known = False
                continue
            rate = r["ours"]["images_per_s"]
            for i, n in enumerate(_both(images)):
                f = n * r["flops_per_image"]
                flop[i] += f
                gpu_s[i] += f / (gpu_tflops * 1e12 * utilization)
                cpu_s[i] += n / rate
            by_step[step] = {"runs": runs, "epochs": epochs,
                             "cpu_seconds_per_epoch": [n / (runs * epochs) / rate
                                                       for n in _both(images)]}
        rows.append({"config": name, "bench_size": size, "complete": known,
                     "pflop": [f / 1e15 for f in flop], "cpu_hours": [s / 3600 for s in cpu_s],
                     "gpu_hours": [s / 3600 for s in gpu_s], "runs": total_runs,
                     # runs per hour of training steps: the fewer hours go with more runs/h
                     "cpu_runs_per_hour": [total_runs * 3600 / s if s else None
                                           for s in reversed(cpu_s)],
                     "steps": by_step})
    return rows


def _range(pair, fmt="{:.1f}") -> str:
    low, high = pair
    return fmt.format(low) if math.isclose(low, high, rel_tol=0.01) else \
        f"{fmt.format(low)}–{fmt.format(high)}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench_json", type=Path, help="a JSON written by bench/run.py")
    parser.add_argument("--gpu-tflops", type=float, default=19.5,
                        help="the GPU's float32 peak (19.5: an A100's non-tensor-core float32)")
    parser.add_argument("--utilization", type=float, default=0.3,
                        help="the share of that peak the steps are assumed to reach")
    args = parser.parse_args(argv)
    if not args.bench_json.is_file():
        sys.exit(f"projection: {args.bench_json}: no such file (run bench/run.py first)")
    if not (args.gpu_tflops > 0 and 0 < args.utilization <= 1):
        sys.exit("projection: --gpu-tflops must be > 0 and --utilization in (0, 1]")
    try:
        bench = json.loads(args.bench_json.read_text(encoding="utf-8"))
        rows = project(bench, args.gpu_tflops, args.utilization)
    except (ValueError, KeyError, TypeError) as exc:
        sys.exit(f"projection: {args.bench_json}: not a bench/run.py result ({exc})")
    print(f"training steps only (runs: the trainings of the plan); GPU: {args.gpu_tflops:g} "
          f"TFLOP/s float32 × {args.utilization:.0%} utilisation (assumed, not measured)")
    print_projection(rows)


def print_projection(rows: list[dict]) -> None:
    print(f"{'config':31s} {'runs':>5s} {'PFLOP':>13s} {'CPU hours':>13s} {'CPU runs/h':>11s} "
          f"{'GPU hours':>11s}")
    for r in rows:
        per_hour = [x or 0.0 for x in r["cpu_runs_per_hour"]]
        print(f"{r['config']:31s} {r['runs']:5d} {_range(r['pflop'], '{:.2f}'):>13s} "
              f"{_range(r['cpu_hours']):>13s} {_range(per_hour):>11s} "
              f"{_range(r['gpu_hours'], '{:.2f}'):>11s}" + ("" if r["complete"] else
                                                             "  (a step was not benchmarked)"))
        for step, found in r["steps"].items():
            print(f"    {step}: {found['runs']} runs of {found['epochs']} epochs, "
                  f"{_range(found['cpu_seconds_per_epoch'])} CPU s/epoch")


if __name__ == "__main__":
    main()
