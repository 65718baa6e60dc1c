"""``lia-upscale [upscale] INPUT... OUTPUT``: the batch display and streaming through - ."""

from __future__ import annotations

import errno
import json
import os
import sys
import time
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..errors import LiaError
from .app import (
    engine_options,
    fail,
    fail_usage,
    interrupt_status,
    main,
    make_console,
    memory_options,
    make_upscaler,
    model_options,
    no_images,
    printable,
    say,
)
from .options import MAX_OUTSCALE, FiniteFloat
from .ray import ray_options, run_on_ray


FORMATS = ["same", "png", "jpg", "webp", "tiff", "heic", "avif"]


class _MegapixelRate(ProgressColumn):
    """Input megapixels per second over the batch."""

    def render(self, task) -> Text:
        if "mp" not in task.fields:
            return Text("")
        mp = task.fields["mp"]
        rate = mp / task.elapsed if task.elapsed else 0.0
        return Text(f"{rate:.2f} MP/s", style="cyan")


@main.command("upscale")
@click.argument("paths", nargs=-1, required=True)
@click.option("--scale", type=click.Choice(["2", "4"]), default=None,
              help="Model scale (default: the model's; 4 for the default model, 2 when --outscale <= 2).")
@model_options
@click.option("--outscale", type=FiniteFloat(min=0, min_open=True, max=MAX_OUTSCALE), default=None,
              help="Any final factor up to 64: the model's scale, then an antialiased bicubic resample to "
                   "round(size * F).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="same", show_default=True)
@click.option("--quality", type=click.IntRange(1, 100), default=None, help="JPEG/WebP/HEIC/AVIF quality (default 95 JPEG/WebP, 90 HEIC/AVIF).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (default: skip them).")
@click.option("--no-recursive", is_flag=True, help="Do not descend into sub-folders.")
@engine_options
@memory_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display or summary.")
@ray_options
def upscale_cmd(paths, scale, weights, model_name, denoise, outscale, fmt, quality, overwrite, no_recursive,
                tile, precision, device, tta, threads, max_memory, max_pixels, as_json, quiet, use_ray,
                **ray_args) -> None:
    """Upscale INPUT... (files, folders, globs, or - for stdin) into OUTPUT (folder, file, or -)."""
    from ..batch import UsageError, plan_jobs
    from ..pipeline import OutputSpec

    if len(paths) < 2:
        raise click.UsageError("give at least one INPUT and the OUTPUT")
    *inputs, output = paths
    console = make_console(quiet)
    if fmt != "same" and (why := _missing_support(fmt)):
        fail_usage(f"--format {fmt}: {why}")  # before any model loads or file is planned
    if scale is None and outscale and not (weights or model_name):
        scale = "2" if outscale <= 2 else "4"  # the default model nearest above the factor
    upscaler_args = dict(model=model_name, weights=weights, scale=int(scale) if scale else None,
                         device=device, precision=precision, tile=tile, tta=tta, max_memory=max_memory,
                         denoise=denoise)
    if threads is not None and (use_ray or ray_args["ray_address"]):
        fail_usage("--threads sets this machine's threads; a Ray batch takes --ray-threads")
    if max_pixels is not None:
        from .. import images

        images.set_max_pixels(max_pixels)
    spec = OutputSpec(fmt=fmt, quality=quality, outscale=outscale, overwrite=overwrite)
    if "-" in inputs or output == "-":
        if use_ray or ray_args["ray_address"]:
            fail_usage("--ray runs a batch of files; streaming through - runs here, without it")
        _stream(inputs, output, spec, console, dict(upscaler_args, threads=threads))
        return
    if use_ray or ray_args["ray_address"]:
        sys.exit(run_on_ray(inputs, output, spec, not no_recursive, upscaler_args, ray_args, console,
                            lambda jobs, run: _run_batch(jobs, run, console, as_json, quiet)))
    try:
        jobs = plan_jobs(inputs, output, spec, recursive=not no_recursive)
    except UsageError as exc:
        fail_usage(str(exc))
    if not jobs:
        fail_usage(no_images(inputs))
    upscaler = make_upscaler(console, **upscaler_args, threads=threads)

    def run(events) -> None:
        from ..batch import run_jobs

        run_jobs(jobs, upscaler, spec=spec, events=events)

    sys.exit(_run_batch(jobs, run, console, as_json, quiet))


def _missing_support(fmt: str) -> str | None:
    from .. import images

    return images.missing_support(images.format_for_suffix(f"x.{fmt}"))


def _check_stream_output(dest: Path, overwrite: bool) -> None:
    """Refuse (usage error) an OUTPUT that is not a regular file, or exists without ``--overwrite``."""
    from ..files import check_writable_target

    try:
        exists = check_writable_target(dest)
    except OSError as exc:
        fail_usage(str(exc))
    if exists and not overwrite:
        fail_usage(f"{dest} exists; pass --overwrite to replace it")


def _stream(inputs, output, spec, console, upscaler_args) -> None:
    from ..pipeline import process

    if len(inputs) != 1:
        fail_usage("streaming with - takes exactly one INPUT and one OUTPUT")
    if output == "-" and (sys.stdout is None or sys.stdout.closed):
        fail("standard output is closed", 1)
    if output == "-" and sys.stdout.isatty():
        fail_usage("standard output is a terminal: an image there would be binary noise; redirect it "
                   "(> out.png) or name an OUTPUT file")
    if output != "-":
        _check_stream_output(Path(output), spec.overwrite)  # before the model loads or stdin is read
    upscaler = make_upscaler(console, **upscaler_args)
    try:
        src = sys.stdin.buffer if inputs[0] == "-" else Path(inputs[0])
        process(upscaler, src, sys.stdout.buffer if output == "-" else Path(output), spec)
    except (LiaError, OSError) as exc:
        if output == "-" and getattr(exc.__cause__ or exc, "errno", None) == errno.EPIPE:
            # nobody reads stdout any more: point it at /dev/null, so the final flush is quiet
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        fail(str(exc), 1)


def _run_batch(jobs, run, console: Console, as_json, quiet) -> int:
    """Show the progress of ``run(events)`` over ``jobs`` (a local or a Ray batch); the exit status."""
    from ..batch import BatchEvents

    live = console.is_terminal and not quiet
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _MegapixelRate(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        disable=not live,
        transient=False,
    )
    files = progress.add_task("files", total=len(jobs), mp=0.0)
    tiles = progress.add_task("tiles", total=1, visible=False)
    counts = {"done": 0, "skipped": 0, "failed": 0}

    def on_start(job, pixels):
        # a file name is text, not markup: "[red]x.png" is shown as it is, on one line
        progress.update(tiles, description="  " + escape(printable(job.src.name)), completed=0, total=1,
                        visible=True)
        progress.update(files, mp=progress.tasks[files].fields["mp"] + pixels / 1e6)

    def on_tile(done, total):
        progress.update(tiles, completed=done, total=total)

    def on_outcome(outcome):
        counts[outcome.status] += 1
        progress.advance(files)
        if outcome.status == "failed":
            src = str(outcome.job.src)
            line = printable(outcome.error if src in (outcome.error or "") else f"{src}: {outcome.error}")
            if live:
                console.log(Text.assemble(("failed ", "red"), line))
            else:  # one line however long: a log reader greps it
                say(make_console(), line, "failed ")
        if as_json:
            print(json.dumps(outcome.as_json()), flush=True)

    started = time.perf_counter()
    interrupted = 0  # or the exit status of the interrupt
    with progress:
        try:
            run(BatchEvents(on_start, on_tile, on_outcome))
        except KeyboardInterrupt as exc:
            interrupted = interrupt_status(exc)
        progress.update(tiles, visible=False)
    if not quiet:
        table = Table(title="interrupted" if interrupted else "summary", title_justify="left")
        for col in ("done", "skipped", "failed", "not run", "time"):
            table.add_column(col, justify="right")
        rest = len(jobs) - sum(counts.values())
        table.add_row(str(counts["done"]), str(counts["skipped"]), str(counts["failed"]), str(rest),
                      f"{time.perf_counter() - started:.1f}s")
        console.print(table)
    if interrupted:
        return interrupted
    return 1 if counts["failed"] else 0
