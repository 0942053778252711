"""Shared plumbing of the ``kl`` commands: errors as one line, progress bars,
config loading and the options several commands share."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from keras_lesions.config import MAX_SEED
from keras_lesions.errors import KerasLesionsError
from keras_lesions.runtime import Terminated


class KLGroup(click.Group):
    """A click group that turns user-facing errors into one line and exit 1.

    A ``KerasLesionsError`` already names the file and the problem; an
    ``OSError`` raised while reading or writing (permissions, a full disk)
    names its file too. Neither shows a Python traceback.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra):
        """As click's, but a usage error (an unknown option, a missing file
        argument) is one line too, with where to find the command's help."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx is not None else "kl"
            _fail(f"{command}: {exc.format_message()} (see '{command} --help')", code=2)
        except click.ClickException as exc:
            _fail(exc.format_message(), code=exc.exit_code)
        except click.Abort:
            _fail("aborted", code=1)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KerasLesionsError as exc:
            _fail(str(exc))
        except OSError as exc:
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            _fail(f"{where}{exc.strerror or exc}")
        except Terminated:
            _fail("terminated (SIGTERM); nothing half-written was left behind", code=143)
        except KeyboardInterrupt:
            _fail("interrupted; nothing half-written was left behind", code=130)


MAX_MESSAGE = 500  # characters of an error line; what a value's repr adds beyond is cut


def _fail(message: str, code: int = 1):
    line = " ".join(message.splitlines())
    if len(line) > MAX_MESSAGE:
        # A very long path first, then the problem: shorten the path, keep the problem.
        where, sep, problem = line.partition(": ")
        if sep and len(where) > 160:
            line = f"{where[:80]}…{where[-79:]}{sep}{problem}"
    if len(line) > MAX_MESSAGE:
        line = line[:MAX_MESSAGE - 1] + "…"
    click.echo(f"kl: error: {line}", err=True)
    sys.exit(code)


def command_line() -> str:
    """The command as the user typed it, recorded in datasets for provenance."""
    ctx = click.get_current_context()
    if sys.argv and sys.argv[0].endswith("kl"):
        return shlex.join(["kl", *sys.argv[1:]])
    args = [ctx.command_path] + [f"--{k.replace('_', '-')}={v}" for k, v in ctx.params.items()]
    return shlex.join(args)


def progress_bar(total: int, description: str):
    """A tqdm bar on stderr, returned with a ``progress(done, total)`` callback."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=description, unit="lesion", file=sys.stderr,
               dynamic_ncols=True, leave=False, disable=None)

    def update(done: int, total_now: int) -> None:
        bar.total = total_now
        bar.update(done - bar.n)

    return bar, update


class ProgressBars:
    """``progress(description, done, total)`` drawn as one tqdm bar per step.

    Library loops report progress through such a plain callable; the bar (on
    stderr, only on a terminal) is the CLI's business.
    """

    def __init__(self, unit: str = "it"):
        self.unit = unit
        self.bar = None
        self.description = None

    def __call__(self, description: str, done: int, total: int) -> None:
        from tqdm.auto import tqdm

        if description != self.description:
            self.close()
            self.description = description
            self.bar = tqdm(total=total, desc=description, unit=self.unit, file=sys.stderr,
                            dynamic_ncols=True, leave=False, disable=None)
        self.bar.total = total
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar, self.description = None, None


def note(message: str) -> None:
    """A progress or warning line for people, on stderr so stdout stays parseable."""
    click.echo(message, err=True)


CONFIG = click.Path(dir_okay=False, path_type=Path)
SEED = click.IntRange(0, MAX_SEED)
RUN = click.Path(file_okay=False, path_type=Path)


def load(config_path, overrides: dict):
    """The config file with the options the user gave (None = not given)."""
    from keras_lesions.config import load_config

    return load_config(config_path, {k: v for k, v in overrides.items() if v is not None})


def config_option(default: str, help: str = "Experiment config (YAML)."):
    return click.option("--config", "config_path", type=CONFIG, default=default,
                        show_default=True, help=help)


def output_dir_option():
    return click.option("--output-dir", help="Overrides the config's output_dir.")
