"""``kl synthesize``, ``swap``, ``mix``: synthetic lesions from trained networks."""
from __future__ import annotations

from pathlib import Path

import click

from keras_lesions_cli.common import RUN, SEED, command_line, note

H5 = click.Path(dir_okay=False, path_type=Path)


@click.command("synthesize")
@click.option("--generator", "generators", type=click.Path(path_type=Path), multiple=True,
              required=True, help="A trained DCGAN or ACGAN run folder (repeatable).")
@click.option("--n", type=int, required=True,
              help="Lesions per DCGAN, or per class for an ACGAN.")
@click.option("--out", type=H5, required=True, help="Dataset file (.h5) to write.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Same seed, same lesions.")
def synthesize_command(generators, n, out, seed):
    """Write synthetic lesions as a dataset (.h5) that `kl train-cnn --extra` takes.

    Every lesion is marked synthetic, with its generator's provenance; patient
    ids are the generator's, so they never collide with real patients.
    """
    from keras_lesions.synth.sample import synthesize_file

    dataset = synthesize_file(generators, n, seed, out)
    counts = ", ".join(f"{k} {name}" for name, k in dataset.class_counts().items())
    click.echo(f"wrote {out}: {len(dataset)} synthetic lesions ({counts})")


@click.command("swap")
@click.option("--run", "run_dir", type=RUN, required=True, help="A finished disentanglement run.")
@click.option("--x", "x_id", required=True, help="Lesion id whose unspecified code r is kept.")
@click.option("--y", "y_ids", required=True, multiple=True,
              help="Lesion id whose specified code c is used (repeatable).")
@click.option("--dataset", "dataset_path", type=H5,
              help="Dataset holding the lesions (default: the run's).")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="PNG to write.")
def swap_command(run_dir, x_id, y_ids, dataset_path, out):
    """Render G_R(E_R(x), E_C(y_i)) beside the inputs (Fig. 3)."""
    from keras_lesions.synth.mixture import swap_from_run

    click.echo(f"wrote {swap_from_run(run_dir, x_id, y_ids, out, dataset_path)}")


@click.command("mix")
@click.option("--run", "run_dir", type=RUN, required=True, help="A finished disentanglement run.")
@click.option("--alpha", default="random", show_default=True,
              help="'random' (proportions uniform on the simplex) or the share in (0, 1] the "
                   "image keeps of its own c.")
@click.option("--n", "count", type=int, required=True, help="Number of mixed images.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Proportions and order.")
@click.option("--dataset", "dataset_path", type=H5,
              help="Dataset the run was trained on (default: the one its run.json names).")
@click.option("--out", type=H5, required=True,
              help="Lesion dataset (.h5) to write, with soft labels.")
def mix_command(run_dir, alpha, count, seed, dataset_path, out):
    """Mixtures of specified factors of the run's training lesions (§2.2, Fig. 4).

    Each mixed image keeps one training lesion's r and mixes its c with the
    nearest (L2) training c of every other class; its soft label holds the
    class proportions. Only the run's fit lesions are used (never its test
    fold or validation patients), so the result may augment that fold's
    training: `kl train-cnn --extra OUT` trains on the soft labels.
    """
    from keras_lesions.synth.mixture import mix_from_run

    mixed = mix_from_run(run_dir, count, alpha, seed, out, dataset_path,
                         created_by=command_line(), log=note)
    shares = mixed.soft_labels.mean(0)
    click.echo(f"wrote {len(mixed)} mixed images with soft labels to {out} (mean class shares: "
               + ", ".join(f"{n} {100 * s:.0f}%" for n, s in zip(mixed.class_names, shares))
               + ")")


COMMANDS = [synthesize_command, swap_command, mix_command]
