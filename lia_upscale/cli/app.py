"""The command group, the console and the options commands share; no business logic."""

from __future__ import annotations

import os
import signal
import sys
import threading

import click
from rich.console import Console
from rich.markup import escape

from .. import __version__
from ..errors import LiaError
from .options import MAX_TILE, ByteSize, Count, FiniteFloat, NonEmptyPath, Threads

#: Exit statuses: 128 + the signal's number, as a shell reports a process the signal killed.
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same clean-up runs (temporary files, summary)."""


#: seconds after which a signal held back during an import is sent again
_RETRY_S = 0.05


def _importing() -> bool:
    """Whether a module is being initialised now: torch's runs C++ that calls back into
    Python, and an exception raised there aborts the process (exit 134) or is swallowed."""
    return any(getattr(getattr(m, "__spec__", None), "_initializing", False) for m in list(sys.modules.values()))


def _stop(signum, frame) -> None:
    """Ctrl-C or SIGTERM: raise KeyboardInterrupt (Terminated for SIGTERM), or, while a module
    is being imported, send the signal again a moment later, when it can be raised."""
    if _importing():
        retry = threading.Timer(_RETRY_S, os.kill, (os.getpid(), signum))
        retry.daemon = True  # a run that ends meanwhile is not held up by it
        retry.start()
        return
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def interrupt_status(exc: BaseException) -> int:
    """The exit status for an interrupt: 143 for SIGTERM, 130 for Ctrl-C."""
    return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED


class DefaultGroup(click.Group):
    """A group whose unknown first word means the default command, ``upscale``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["upscale", *args]
        elif not args:
            args = ["--help"]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        """Run the command; Ctrl-C or SIGTERM at any moment ends it with one line and 130 or 143
        (click's own handling would print "Aborted!" and exit 1)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, _stop)
        try:
            return super().invoke(ctx)
        except click.BadParameter as exc:  # an option's value: one line naming the option
            hint = "/".join(exc.param.opts) if exc.param is not None and exc.param.opts else exc.param_hint
            fail_usage(f"{hint}: {exc.message}" if hint else exc.format_message())
        except click.UsageError as exc:
            fail_usage(f"{exc.format_message()} (see --help)")
        except KeyboardInterrupt as exc:
            say(make_console(), "interrupted")
            sys.exit(interrupt_status(exc))


def make_console(quiet: bool = False) -> Console:
    return Console(stderr=True, quiet=quiet, highlight=False, log_path=False)


def printable(text: str) -> str:
    """``text`` with control characters (a newline in a file name) written as escapes: one line."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def say(console: Console, message: str, prefix: str = "") -> None:
    """Print one line: ``prefix`` is rich markup, ``message`` (paths, reasons) is printed literally."""
    console.print(prefix + escape(printable(message)), soft_wrap=True)


def fail(message: str, status: int) -> None:
    """Print ``error: message`` (literally, one line) and exit with ``status``."""
    say(make_console(), message, "[bold red]error:[/] ")
    sys.exit(status)


def fail_usage(message: str) -> None:
    fail(message, 2)


def no_images(inputs) -> str:
    """The usage error for inputs that hold no image (an empty folder, a glob matching none)."""
    return f"no images in {', '.join(map(str, inputs))} (PNG, JPEG, WEBP, TIFF, BMP, HEIC or AVIF)"


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lia-upscale")
def main() -> None:
    """Upscale photos with PlainUSR/LIA.  lia-upscale INPUT... OUTPUT [--scale 2|4]

    Other commands: eval, models, weights, convert, train, bench.
    """


def model_options(f):
    f = click.option("--denoise", type=FiniteFloat(0, 1), default=None, metavar="S",
                     help="Strength of the photo model, 0 to 1: 0 is the clean network it was fine-tuned "
                          "from, 1 the photo model (default: its card's, see `lia-upscale models`).")(f)
    f = click.option("--weights", type=NonEmptyPath(dir_okay=False), help="A .safetensors or .pth weight file.")(f)
    f = click.option("--model", "model_name", help="A model name from `lia-upscale models`.")(f)
    return f


def engine_options(f):
    f = click.option("--threads", type=Threads(), default=None, metavar="N",
                     help="CPU threads for the network, at most the machine's CPUs (default: all cores).")(f)
    f = click.option("--tta", is_flag=True,
                     help="x8 self-ensemble (rotations and mirrors averaged): 8x the time, a little more fidelity.")(f)
    f = click.option("--tile", type=Count(0, MAX_TILE), default=None,
                     help="Tile edge in input pixels, at least 16 (0: whole image; default: measured, see README).")(f)
    f = click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="auto",
                     show_default=True, help="auto: fp16 on CUDA, fp32 on the CPU.")(f)
    f = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")(f)
    return f


def memory_options(f):
    f = click.option("--max-memory", type=ByteSize(), default=None,
                     help="Memory the run may use, all images in flight together, e.g. 4G (default: 3/4 of the "
                          "memory available); tiles shrink to fit, and an image that cannot fit fails before it runs.")(f)
    f = click.option("--max-pixels", type=Count(1, 2**40), default=None,
                     help="Largest input in pixels (default 89,478,485: decompression-bomb protection).")(f)
    return f


def make_upscaler(console: Console, **kwargs):
    from ..api import Upscaler

    try:
        # say(): one line however long (a path in it), above any progress display
        return Upscaler(on_warning=lambda msg: say(console, msg, "[yellow]warning:[/] "), **kwargs)
    except LiaError as exc:
        fail_usage(str(exc))


