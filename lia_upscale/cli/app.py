"""The command group, the console and the options commands share; no business logic."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from .. import __version__
from ..errors import LiaError



class DefaultGroup(click.Group):
    """A group whose unknown first word means the default command, ``upscale``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["upscale", *args]
        elif not args:
            args = ["--help"]
        return super().parse_args(ctx, args)


def make_console(quiet: bool = False) -> Console:
    return Console(stderr=True, quiet=quiet, highlight=False, log_path=False)


def fail_usage(message: str) -> None:
    make_console().print(f"[bold red]error:[/] {message}")
    sys.exit(2)


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lia-upscale")
def main() -> None:
    """Upscale photos with PlainUSR/LIA.  lia-upscale INPUT... OUTPUT [--scale 2|4]

    Other commands: eval, models, weights, convert, train, bench.
    """


def model_options(f):
    f = click.option("--weights", type=click.Path(dir_okay=False), help="A .safetensors or .pth weight file.")(f)
    f = click.option("--model", "model_name", help="A model name from `lia-upscale models`.")(f)
    return f


def engine_options(f):
    f = click.option("--tile", type=click.IntRange(min=0), default=None,
                     help="Tile edge in input pixels (0: whole image; default: measured, see README).")(f)
    f = click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="auto",
                     show_default=True, help="auto: fp16 on CUDA, fp32 on the CPU.")(f)
    f = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")(f)
    return f


def make_upscaler(console: Console, **kwargs):
    from ..api import Upscaler

    try:
        return Upscaler(on_warning=lambda msg: console.log(f"[yellow]warning:[/] {msg}"), **kwargs)
    except LiaError as exc:
        fail_usage(str(exc))


