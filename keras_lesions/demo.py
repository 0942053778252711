"""The main job on the built-in data: what ``kl demo`` runs.

Phantoms (Frid-Adar 2018 preset) with their 3-fold patient-level split, a
check and preview of the dataset, then the CNN-AUG baseline (classic
augmentation, 3-fold cross-validation) and CNN-AUG-GAN (small per-class
DCGANs, one synthetic group) with the quick CPU config; then Ben-Cohen
2019's mixture experiment on the 4-class 128×128 phantoms (small
disentanglement networks, baseline vs mixtures of specified factors, with
the swap grid of Fig. 3).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from keras_lesions.config import load_config
from keras_lesions.data.check import CheckReport, check_dataset
from keras_lesions.data.dataset import read_dataset, write_dataset
from keras_lesions.data.preview import write_preview
from keras_lesions.data.registry import PRESETS
from keras_lesions.errors import DatasetError

DEMO_PRESET = "frid-adar-2018"
DEMO_CONFIG = "configs/frid-adar-2018-gan-quick.yaml"
DEMO_MIXTURE_CONFIG = "configs/ben-cohen-2019-quick.yaml"


@dataclass
class DemoResult:
    dataset_path: Path
    preview_path: Path
    report_dir: Path
    check: CheckReport
    class_names: list[str]
    curve: dict  # the classic curve's result
    gan: dict | None  # the CNN-AUG-GAN result (gan-curve configs)
    mixture: dict | None = None  # the mixture experiment's result


def run_demo(
    out_dir: str | Path = "kl-demo",
    seed: int = 0,
    config_path: str | Path = DEMO_CONFIG,
    mixture_config_path: str | Path | None = DEMO_MIXTURE_CONFIG,
    *,
    created_by: str = "keras_lesions.demo",
    log: Callable[[str], None] = print,
    progress=None,
    executor=None,
) -> DemoResult:
    """Run the demo into ``out_dir``; a second call resumes where it stopped.

    ``mixture_config_path`` None skips the Ben-Cohen 2019 part; ``executor``
    runs the experiments' plans (default: one run at a time, here).

    Raises:
        DatasetError: ``out_dir`` holds a phantom dataset of another seed, or
            the generated dataset fails its check.
        ConfigError: bad config.
    """
    from keras_lesions.data.builtin import make_phantom_dataset
    from keras_lesions.experiments.run import run_experiment

    out_dir = Path(out_dir)
    dataset_path = out_dir / "phantoms.h5"
    config = load_config(config_path, {"data.dataset": str(dataset_path),
                                       "output_dir": str(out_dir), "name": "experiment"})
    preset = PRESETS[DEMO_PRESET]
    steps = 4 if mixture_config_path is None else 5
    mixture_config = None
    if mixture_config_path is not None:  # read now: a bad config fails before hours of work
        mixture_config = load_config(mixture_config_path, {
            "output_dir": str(out_dir), "name": "mixture",
            "data.phantom_seed": seed, "data.fold_seed": seed})
    if dataset_path.exists():
        dataset = read_dataset(dataset_path)
        made_with = dataset.extra.get("seed")
        if made_with != seed:
            raise DatasetError(f"was made with seed {made_with}, not {seed}: use another --out",
                               dataset_path)
        log(f"[1/{steps}] using the phantom dataset already in {dataset_path}")
    else:
        log(f"[1/{steps}] generating the {preset.name} phantom dataset "
            f"({preset.n_lesions} lesions)")
        dataset = make_phantom_dataset(
            preset.name, seed, created_by=created_by,
            progress=None if progress is None else
            (lambda done, total: progress("phantoms", done, total)))
        write_dataset(dataset, dataset_path)
        dataset = read_dataset(dataset_path)
    log(f"[2/{steps}] checking {dataset_path}")
    report = check_dataset(dataset, k_expected=preset.k_folds)
    if report.errors:
        raise DatasetError(f"failed its check: {report.errors[0].message}", dataset_path)
    log(f"[3/{steps}] writing the preview grid")
    preview_path = out_dir / "preview.png"
    write_preview(dataset, preview_path, seed=seed)
    log(f"[4/{steps}] {config.kind} with {config_path}: CNN-AUG ({config.train.epochs} epochs, "
        f"groups +{config.augment.group_sizes}, {preset.k_folds}-fold patient-level "
        "cross-validation)" + (f", then CNN-AUG-GAN (DCGANs of width {config.gan.width}, "
                               f"{config.gan.epochs} epochs, +{config.synth.per_class_sizes} "
                               "synthetic per class)" if config.kind == "gan-curve" else ""))
    result = run_experiment(config, executor=executor, log=log, progress=progress)
    gan = result if config.kind == "gan-curve" else None
    curve = result["classic"] if gan is not None else result
    mixture = None
    if mixture_config is not None:
        d = mixture_config.disentangle
        log(f"[5/{steps}] Ben-Cohen 2019 with {mixture_config_path}: 4-class "
            f"{d.input_size}×{d.input_size} phantoms, disentanglement networks of width "
            f"{d.width}, baseline vs mixtures of specified factors, 3-fold cross-validation")
        mixture = run_experiment(mixture_config, executor=executor, log=log, progress=progress)
    return DemoResult(dataset_path=dataset_path, preview_path=preview_path,
                      report_dir=out_dir / config.name / "report", check=report,
                      class_names=list(dataset.class_names), curve=curve, gan=gan,
                      mixture=mixture)
