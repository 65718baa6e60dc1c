"""The command line: click commands and the rich display; the work happens in the library."""

from __future__ import annotations

import json
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
from rich.table import Table
from rich.text import Text

from . import __version__
from .errors import LiaError

FORMATS = ["same", "png", "jpg", "webp", "tiff"]


class _DefaultGroup(click.Group):
    """A group whose unknown first word means the default command, ``upscale``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["upscale", *args]
        elif not args:
            args = ["--help"]
        return super().parse_args(ctx, args)


def _console(quiet: bool = False) -> Console:
    return Console(stderr=True, quiet=quiet, highlight=False, log_path=False)


def _fail_usage(message: str) -> None:
    _console().print(f"[bold red]error:[/] {message}")
    sys.exit(2)


@click.group(cls=_DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lia-upscale")
def main() -> None:
    """Upscale photos with PlainUSR/LIA.  lia-upscale INPUT... OUTPUT [--scale 2|4]

    Other commands: eval, models, weights, convert, train, bench.
    """


def _model_options(f):
    f = click.option("--weights", type=click.Path(dir_okay=False), help="A .safetensors or .pth weight file.")(f)
    f = click.option("--model", "model_name", help="A model name from `lia-upscale models`.")(f)
    return f


def _engine_options(f):
    f = click.option("--tile", type=click.IntRange(min=0), default=None,
                     help="Tile edge in input pixels (0: whole image; default: measured, see README).")(f)
    f = click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="auto",
                     show_default=True, help="auto: fp16 on CUDA, fp32 on the CPU.")(f)
    f = click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")(f)
    return f


def _make_upscaler(console: Console, **kwargs):
    from .api import Upscaler

    try:
        return Upscaler(on_warning=lambda msg: console.log(f"[yellow]warning:[/] {msg}"), **kwargs)
    except LiaError as exc:
        _fail_usage(str(exc))


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
@_model_options
@click.option("--outscale", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Any final factor: the model's scale, then an antialiased bicubic resample to round(size * F).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="same", show_default=True)
@click.option("--quality", type=click.IntRange(1, 100), default=None, help="JPEG/WebP quality (default 95).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (default: skip them).")
@click.option("--no-recursive", is_flag=True, help="Do not descend into sub-folders.")
@_engine_options
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display or summary.")
def upscale_cmd(paths, scale, weights, model_name, outscale, fmt, quality, overwrite, no_recursive,
                tile, precision, device, as_json, quiet) -> None:
    """Upscale INPUT... (files, folders, globs, or - for stdin) into OUTPUT (folder, file, or -)."""
    from .batch import UsageError, plan_jobs

    if len(paths) < 2:
        raise click.UsageError("give at least one INPUT and the OUTPUT")
    *inputs, output = paths
    console = _console(quiet)
    if scale is None and outscale and not (weights or model_name):
        scale = "2" if outscale <= 2 else "4"  # the default model nearest above the factor
    if "-" in inputs or output == "-":
        _stream(inputs, output, fmt, quality, outscale, console,
                dict(model=model_name, weights=weights, scale=int(scale) if scale else None,
                     device=device, precision=precision, tile=tile))
        return
    try:
        jobs = plan_jobs(inputs, output, fmt=fmt, recursive=not no_recursive)
    except UsageError as exc:
        _fail_usage(str(exc))
    upscaler = _make_upscaler(console, model=model_name, weights=weights, scale=int(scale) if scale else None,
                              device=device, precision=precision, tile=tile)
    sys.exit(_run_batch(jobs, upscaler, console, overwrite, quality, outscale, as_json, quiet))


def _stream(inputs, output, fmt, quality, outscale, console, upscaler_args) -> None:
    from . import imageio
    from .api import save

    if len(inputs) != 1:
        _fail_usage("streaming with - takes exactly one INPUT and one OUTPUT")
    upscaler = _make_upscaler(console, **upscaler_args)
    try:
        src = sys.stdin.buffer.read() if inputs[0] == "-" else Path(inputs[0])
        picture = imageio.decode(src)
        result = upscaler.upscale_picture(picture, outscale)
        if output == "-":
            name = picture.format if fmt == "same" else imageio.format_for_suffix(Path(f"x.{fmt}"))
            imageio.encode(result, sys.stdout.buffer, name, quality=quality,
                           dpi_scale=result.height / picture.height)
            sys.stdout.buffer.flush()
        else:
            name = imageio.format_for_suffix(Path(output)) if fmt == "same" else imageio.format_for_suffix(Path(f"x.{fmt}"))
            save(result, Path(output), name, quality, dpi_scale=result.height / picture.height)
    except LiaError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(1)


def _run_batch(jobs, upscaler, console: Console, overwrite, quality, outscale, as_json, quiet) -> int:
    from .batch import BatchEvents, run_jobs

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
        progress.update(tiles, description=f"  {job.src.name}", completed=0, total=1, visible=True)
        progress.update(files, mp=progress.tasks[files].fields["mp"] + pixels / 1e6)

    def on_tile(done, total):
        progress.update(tiles, completed=done, total=total)

    def on_outcome(outcome):
        counts[outcome.status] += 1
        progress.advance(files)
        if outcome.status == "failed":
            src = str(outcome.job.src)
            line = outcome.error if src in (outcome.error or "") else f"{src}: {outcome.error}"
            if live:
                console.log(Text.assemble(("failed ", "red"), line))
            else:
                _console().print(f"failed {line}", markup=False, highlight=False)
        if as_json:
            print(json.dumps(outcome.as_json()), flush=True)

    started = time.perf_counter()
    interrupted = False
    with progress:
        try:
            run_jobs(jobs, upscaler, overwrite=overwrite, quality=quality, outscale=outscale,
                     events=BatchEvents(on_start, on_tile, on_outcome))
        except KeyboardInterrupt:
            interrupted = True
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
        return 130
    return 1 if counts["failed"] else 0


@main.command("eval")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@_model_options
@_engine_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval_cmd(folder, weights, model_name, tile, precision, device, as_json) -> None:
    """PSNR-Y / SSIM-Y over the *_LR.png / *_HR.png pairs in FOLDER (BasicSR protocol)."""
    from .evaluate import evaluate, find_pairs, pair_scale

    console = _console()
    try:
        pairs = find_pairs(Path(folder))
        scale = pair_scale(pairs)
    except LiaError as exc:
        _fail_usage(str(exc))
    upscaler = _make_upscaler(console, model=model_name, weights=weights,
                              scale=None if (weights or model_name) else scale,
                              device=device, precision=precision, tile=tile)
    if upscaler.scale != scale:
        _fail_usage(f"the pairs in {folder} are x{scale} but the model is x{upscaler.scale}")
    try:
        result = evaluate(pairs, lambda rgb: upscaler.upscale_tensor(rgb).permute(1, 2, 0).numpy(), scale)
    except LiaError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(1)
    if as_json:
        out = result.as_json()
        out["model"] = str(upscaler.model.source)
        out["variant"] = upscaler.model.variant
        print(json.dumps(out))
        return
    table = Table(title=f"{folder}  ({upscaler.model.source}, x{scale})", title_justify="left")
    table.add_column("image")
    table.add_column("PSNR-Y", justify="right")
    table.add_column("SSIM-Y", justify="right")
    for name, p, s in result.per_image:
        table.add_row(name, f"{p:.3f}", f"{s:.4f}")
    table.add_row("[bold]mean", f"[bold]{result.psnr_y:.3f}", f"[bold]{result.ssim_y:.4f}")
    Console().print(table)


@main.command("convert")
@click.argument("src", type=click.Path(exists=True, dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
def convert_cmd(src, dst) -> None:
    """Convert an official PlainUSR .pth checkpoint into our validated .safetensors."""
    from . import models

    try:
        info = models.convert(Path(src), Path(dst))
    except LiaError as exc:
        _fail_usage(str(exc))
    _console().print(f"wrote {dst}: {info}")


@main.command("models")
def models_cmd() -> None:
    """List the models lia-upscale knows and where each one's weights are."""
    from . import models

    table = Table(title="models (use --model NAME)", title_justify="left")
    for col in ("name", "variant", "scale", "licence", "weights"):
        table.add_column(col)
    for card, path in models.list_models():
        table.add_row(card.name, card.variant, f"x{card.scale}", card.licence,
                      str(path) if path else "[dim]missing from this installation[/]" if card.embedded
                      else "[dim]not installed: lia-upscale weights install URL|FILE[/]")
    Console().print(table)


@main.group("weights")
def weights_group() -> None:
    """Manage weight files in your weights folder."""


@weights_group.command("install")
@click.argument("source")
def weights_install(source) -> None:
    """Install SOURCE (a file, a folder or an http(s) URL), checked against its card's sha256."""
    from . import models

    console = _console()
    try:
        paths = models.install(source)
    except LiaError as exc:
        _fail_usage(str(exc))
    for p in paths:
        console.print(f"installed {p}")


@main.command("train")
@click.argument("data", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="The .safetensors to export.")
@click.option("--variant", type=click.Choice(["U", "T", "S", "M", "base", "L"]), default="U", show_default=True)
@click.option("--scale", type=click.Choice(["2", "4"]), default="4", show_default=True)
@click.option("--iterations", type=click.IntRange(min=1), default=30000, show_default=True)
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--patch", type=click.IntRange(min=8), default=None, help="LR patch edge (default 40 at x4, 48 at x2).")
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--eval-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="A folder of *_LR/*_HR pairs (e.g. Set5) scored every --eval-every iterations.")
@click.option("--eval-every", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Resumable checkpoint (default: OUT with .ckpt); an existing one is resumed.")
@click.option("--degradation", type=click.Choice(["bicubic", "photo"]), default="bicubic", show_default=True,
              help="How LR patches are made: MATLAB bicubic (benchmarks) or camera-like blur, noise and JPEG.")
@click.option("--init", "init", default=None,
              help="Weight file or model name to fine-tune (default: start as nearest-neighbour).")
@click.option("--ema", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Decay of a moving average of the weights, scored and exported instead (e.g. 0.999).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads (default: torch's).")
def train_cmd(data, out, variant, scale, iterations, batch, patch, lr, seed, eval_dir, eval_every,
              degradation, init, ema, checkpoint, device, threads) -> None:
    """Train a PlainUSR/LIA network on folders of HR images and export it as .safetensors."""
    import torch

    from . import models
    from .device import choose_device
    from .train import TrainConfig, train

    if threads:
        torch.set_num_threads(threads)
    s = int(scale)
    cfg = TrainConfig(variant=variant, scale=s, iterations=iterations, batch=batch,
                      patch=patch or (40 if s == 4 else 48), lr=lr, seed=seed, eval_every=eval_every,
                      degradation=degradation, init=init or "", ema=ema)
    console = _console()
    ckpt = Path(checkpoint) if checkpoint else Path(out).with_suffix(".ckpt")
    progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                        console=console, disable=not console.is_terminal)
    task = progress.add_task("train", total=iterations, info="")
    best = {"psnr": None}

    def on_status(st):
        if st.psnr is not None:
            best["psnr"] = st.psnr
            progress.console.log(f"iteration {st.iteration}: Set PSNR-Y {st.psnr:.3f} dB")
        psnr = f" psnr {best['psnr']:.2f}" if best["psnr"] is not None else ""
        progress.update(task, completed=st.iteration, info=f"loss {st.loss:.4f} lr {st.lr:.1e}{psnr}")

    try:
        with progress:
            module = train([Path(d) for d in data], ckpt, cfg, eval_dir=Path(eval_dir) if eval_dir else None,
                           device=str(choose_device(device)), on_status=on_status)
        models.save_weights(Path(out), module.cpu(), variant=variant, scale=s)
    except LiaError as exc:
        _fail_usage(str(exc))
    except KeyboardInterrupt:
        console.print(f"interrupted; resume with the same command (checkpoint {ckpt})")
        sys.exit(130)
    console.print(f"wrote {out}")


@main.command("bench")
@click.option("--model", "model_names", multiple=True, help="A model name (repeatable).")
@click.option("--weights", multiple=True, type=click.Path(exists=True),
              help="A weight file, or a folder of them (repeatable).")
@click.option("--size", "sizes", multiple=True, type=click.IntRange(min=7), default=(512,), show_default=True,
              help="Square input edge in pixels (repeatable).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", "precisions", multiple=True, type=click.Choice(["auto", "fp32", "fp16", "bf16"]),
              default=("auto",), show_default=True, help="Repeatable; auto: fp32 on the CPU, fp16 and fp32 on CUDA.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed runs per case (cases alternate; the median counts).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads (default: torch's).")
@click.option("--cases", default="naive,whole,tiled", show_default=True,
              help="Comma-separated subset of naive,whole,tiled, or none.")
@click.option("--tile", type=click.IntRange(min=0), default=None,
              help="Tile edge of the tiled case (default: the engine's default for the device).")
@click.option("--no-memory", is_flag=True, help="Skip the peak-memory measurements.")
@click.option("--tile-search/--no-tile-search", default=None, help="Find the largest tile that fits (default: on CUDA).")
@click.option("--eval-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="A folder with x2/ and x4/ *_LR/*_HR pairs (e.g. Set5): adds PSNR-Y and bicubic.")
@click.option("--pipeline", type=click.Path(exists=True, file_okay=False), default=None,
              help="A folder of images: batch wall time against compute time.")
@click.option("--pipeline-weights", default=None, help="Model for --pipeline (default: the first model).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Write a PNG of throughput against PSNR-Y (needs --eval-dir).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_cmd(model_names, weights, sizes, device, precisions, repeats, threads, cases, tile, no_memory, tile_search,
              eval_dir, pipeline, pipeline_weights, plot, as_json) -> None:
    """Measure throughput, GFLOP/s and memory: the naive forward against ours, whole and tiled."""
    import torch

    from .bench import CASES, run_bench
    from .device import PRECISIONS, choose_device

    console = _console()
    chosen = [c.strip() for c in cases.split(",") if c.strip() and c.strip() != "none"]
    if any(c not in CASES for c in chosen):
        _fail_usage(f"--cases takes a subset of {','.join(CASES)} (or none), not {cases!r}")
    if plot and not eval_dir:
        _fail_usage("--plot needs --eval-dir (PSNR-Y comes from evaluating every model)")
    try:
        dev = choose_device(device)
    except LiaError as exc:
        _fail_usage(str(exc))
    dtypes: list = []
    for p in precisions:
        for d in ([torch.float16, torch.float32] if dev.type == "cuda" else [torch.float32]) if p == "auto" \
                else [PRECISIONS[p]]:
            if d not in dtypes:
                dtypes.append(d)
    try:
        report = run_bench(models=model_names, weights=weights, sizes=sizes, device=dev, dtypes=dtypes,
                           repeats=repeats, cases=chosen, memory=not no_memory, threads=threads, tile=tile,
                           tile_search=tile_search, eval_dir=Path(eval_dir) if eval_dir else None,
                           pipeline=Path(pipeline) if pipeline else None, pipeline_weights=pipeline_weights,
                           on_progress=lambda msg: console.log(msg) if console.is_terminal else None)
        if plot:
            from .benchplot import draw_tradeoff

            draw_tradeoff(report, Path(plot))
            report["plot"] = str(plot)
    except LiaError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(1)
    if as_json:
        print(json.dumps(report))
        return
    out = Console(width=None if sys.stdout.isatty() else 150)
    table = Table(title=f"{report['device_name']} ({report['device']}, {report['threads']} threads, "
                        f"median of {report['repeats']})", title_justify="left")
    for col in ("model", "input", "prec", "case", "seconds", "out MP/s", "GFLOP/s", "vs naive",
                "peak MiB", "max |diff|"):
        table.add_column(col, justify="left" if col in ("model", "case", "prec") else "right")
    for r in report["results"]:
        naive = r["cases"].get("naive")
        for name, c in r["cases"].items():
            speedup = f"{naive['seconds'] / c['seconds']:.2f}x" if naive else ""
            peak = f"{c['peak_mib']:.0f}" if c["peak_mib"] is not None else ""
            diff = f"{c['max_abs_diff']:.1e}" if c["max_abs_diff"] is not None else ""
            label = name if name != "tiled" else f"tiled {c['tile']}"
            table.add_row(Path(r["model"]).stem, f"{r['size'][0]}x{r['size'][1]}",
                          "fp32" if name == "naive" else r["precision"], label, f"{c['seconds']:.3f}",
                          f"{c['output_mp_s']:.2f}", f"{c['gflop_s']:.1f}", speedup, peak, diff)
    if report["results"]:
        out.print(table)
    for entry in report.get("fp16_vs_fp32", []):
        out.print(f"fp16 vs fp32, {Path(entry['model']).name} {entry['size'][0]}px: "
                  + ", ".join(f"{k} {v:.2f}x" for k, v in entry.items() if k in ("whole", "tiled")))
    for entry in report.get("largest_tile", []):
        out.print(f"largest tile, {Path(entry['model']).name} {entry['precision']}: {entry['tile']} px")
    if "pipeline" in report:
        p = report["pipeline"]
        out.print(f"pipeline: {p['images']} images ({p['input_mp']:.1f} MP) with {Path(p['model']).name}: "
                  f"wall {p['wall_s']:.2f}s vs compute {p['compute_s']:.2f}s = {p['ratio']:.3f}x "
                  f"(decode {p['decode_s']:.2f}s, finish {p['finish_s']:.2f}s, encode {p['encode_s']:.2f}s to hide; "
                  f"{p['lanes']} image(s) at once, network in the batch {p['network_in_batch_s']:.2f}s"
                  + (f", waiting {p['waiting_s']:.2f}s)" if p["waiting_s"] is not None else ")"))
    if plot:
        out.print(f"wrote {plot}")
